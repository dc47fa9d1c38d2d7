//! A namenode group: several namenodes replicate one namespace with Raft
//! (openraft), so no one machine's disk or process holds the cluster.
//!
//! Every namespace change is computed once, by the leader, as [`Effects`]
//! (keys to put and delete, with ids, generation stamps and times already
//! chosen) and shipped in a log entry; every namenode applies the same
//! bytes in log order. The leader writes a change into its store as soon as
//! it computes it (so the next change sees it, as HDFS's edit log and
//! FSNamesystem do), together with what undoes it, and answers its caller
//! only once a majority has the entry durable and it is applied. A change
//! the group does not commit (the leader was deposed first) is undone
//! ([`state_machine`]). A namenode with no peers runs alone, as before.

mod election_gate;
mod log_store;
mod network;
mod snapshot;
mod state_machine;
mod transfer;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::{NnError, Result};
use crate::namespace::{Effects, Namespace};
use granary_common::daemon_auth::ClusterSecret;
use granary_proto as pb;

pub use network::{MAX_MESSAGE as MAX_RAFT_MESSAGE, RaftService};
pub use state_machine::Replicator;

openraft::declare_raft_types!(
    /// The namenode group's Raft types.
    pub TypeConfig:
        D = NsBatch,
        R = NsResponse,
        Node = NnNode,
        SnapshotData = tokio::fs::File,
);

pub type NodeId = u64;
pub type NnRaft = openraft::Raft<TypeConfig>;

/// A member of the group: its name (`nn1`) and client RPC address, which
/// is also where the other namenodes send it Raft messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NnNode {
    pub name: String,
    pub rpc_addr: String,
}

impl fmt::Display for NnNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.rpc_addr)
    }
}

/// The Raft id of the member named `name`: stable, and the same on every
/// namenode (the first 8 bytes of its SHA-256, never 0).
pub fn node_id(name: &str) -> NodeId {
    let h = sha2::Sha256::digest(name.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    u64::from_be_bytes(b).max(1)
}

/// One namespace change, as the leader computed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsCommand {
    /// The leader process that computed it (random at each start).
    pub origin: u64,
    /// Its order among that process's changes.
    pub seq: u64,
    /// The change of the same process it was computed on top of, when
    /// that one was not yet applied.
    pub after: Option<u64>,
    /// Else the log index of the last change applied when it was computed.
    pub base: u64,
    pub effects: Effects,
}

impl fmt::Display for NsCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "change {:x}/{} ({} keys)",
            self.origin,
            self.seq,
            self.effects.ops().len()
        )
    }
}

/// The changes one log entry carries, applied in order: every change the
/// leader had waiting when the entry was proposed. openraft 0.9 waits for
/// each entry's fsync before it takes the next, so one change per entry
/// would mean one fsync per change on the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsBatch {
    pub changes: Vec<NsCommand>,
}

impl fmt::Display for NsBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.changes.as_slice() {
            [one] => write!(f, "{one}"),
            many => write!(f, "{} changes", many.len()),
        }
    }
}

/// Whether each of an entry's changes was applied: a change computed on a
/// state the log did not reach (its leader was deposed meanwhile) is
/// skipped, the same way on every namenode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsResponse {
    pub applied: Vec<bool>,
}

/// `[ha]`: this namenode's place in its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HaConfig {
    /// This namenode's name in the group (`nn1`); empty runs alone.
    pub node_id: String,
    /// Every member, this one included: `nn1=host:8020,nn2=host:8020,...`.
    /// Empty runs alone.
    pub peers: String,
    /// How often the leader tells followers it is alive.
    pub heartbeat_ms: u64,
    /// A follower that hears no leader for a random time in
    /// `[election_timeout_ms, 2 * election_timeout_ms)` stands for election.
    pub election_timeout_ms: u64,
    /// A snapshot of the namespace is taken every this many log entries;
    /// the log is then truncated behind it.
    pub snapshot_every: u64,
    /// Log entries kept behind the latest snapshot, so a follower a little
    /// behind catches up from the log rather than a whole snapshot.
    pub keep_log_entries: u64,
}

impl Default for HaConfig {
    fn default() -> Self {
        Self {
            node_id: String::new(),
            peers: String::new(),
            heartbeat_ms: 150,
            election_timeout_ms: 500,
            snapshot_every: 100_000,
            keep_log_entries: 10_000,
        }
    }
}

impl HaConfig {
    /// The members, by name, in the order given; empty when running alone.
    pub fn members(&self) -> std::result::Result<Vec<NnNode>, String> {
        let mut out: Vec<NnNode> = Vec::new();
        for part in self.peers.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, addr) = part
                .split_once('=')
                .ok_or_else(|| format!("peer {part:?} is not NAME=HOST:PORT"))?;
            let (name, addr) = (name.trim(), addr.trim());
            if name.is_empty() || addr.is_empty() || !addr.contains(':') {
                return Err(format!("peer {part:?} is not NAME=HOST:PORT"));
            }
            if out.iter().any(|n| n.name == name) {
                return Err(format!("peer {name} is named twice"));
            }
            if out.iter().any(|n| n.rpc_addr == addr) {
                return Err(format!("address {addr} is given to two peers"));
            }
            out.push(NnNode {
                name: name.to_string(),
                rpc_addr: addr.to_string(),
            });
        }
        Ok(out)
    }

    /// Whether this namenode is one of a group.
    pub fn enabled(&self) -> bool {
        !self.peers.trim().is_empty()
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        let members = self.members()?;
        if self.node_id.is_empty() {
            return Err("peers is set but node_id is not: name this namenode (node_id = \"nn1\")".into());
        }
        if !members.iter().any(|m| m.name == self.node_id) {
            return Err(format!("node_id {} is not among the peers", self.node_id));
        }
        let mut ids = std::collections::HashSet::new();
        if !members.iter().all(|m| ids.insert(node_id(&m.name))) {
            return Err("two peer names hash to one id; rename one".into());
        }
        if self.heartbeat_ms == 0 || self.election_timeout_ms < 3 * self.heartbeat_ms {
            return Err(format!(
                "election_timeout_ms ({}) must be at least 3 x heartbeat_ms ({})",
                self.election_timeout_ms, self.heartbeat_ms
            ));
        }
        Ok(())
    }
}

/// This namenode's membership in its group, while it serves.
pub struct Ha {
    raft: NnRaft,
    me: NnNode,
    replicator: Arc<Replicator>,
    elections: Arc<std::sync::atomic::AtomicU64>,
    secret: ClusterSecret,
    /// How this namenode reaches the others (TLS or not).
    net: granary_common::net::Net,
    /// How long members refuse to vote after hearing from a leader
    /// (openraft's leader lease: the longest election timeout).
    lease: Duration,
    /// Held while leadership is being handed over.
    transfer: tokio::sync::Mutex<()>,
    /// A handle on the Raft log (for its last entry's id).
    log: log_store::LogStore,
    /// When a leader's AppendEntries or InstallSnapshot last reached this
    /// namenode (ms since [`Ha::epoch`]; 0: never).
    heard: std::sync::atomic::AtomicU64,
    epoch: std::time::Instant,
    /// This namenode's HTTP address as the others reach it.
    http_addr: std::sync::OnceLock<String>,
    /// The leader's HTTP address, asked of it: (its RPC address, its HTTP
    /// address, when asked).
    leader_http: parking_lot::Mutex<Option<(String, String, std::time::Instant)>>,
}

impl Ha {
    /// Opens the Raft log in `dir`, joins the group and, on a fresh group,
    /// proposes its first membership (every namenode does; one wins).
    pub async fn start(
        cfg: &HaConfig,
        dir: &std::path::Path,
        ns: Arc<Namespace>,
        secret: ClusterSecret,
        net: granary_common::net::Net,
        token: tokio_util::sync::CancellationToken,
    ) -> Result<Arc<Self>> {
        let members = cfg.members().map_err(NnError::InvalidArgument)?;
        let me = members
            .iter()
            .find(|m| m.name == cfg.node_id)
            .cloned()
            .ok_or_else(|| {
                NnError::InvalidArgument(format!("node_id {} is not among the peers", cfg.node_id))
            })?;
        let raft_cfg = openraft::Config {
            cluster_name: "granary-namenodes".into(),
            heartbeat_interval: cfg.heartbeat_ms,
            election_timeout_min: cfg.election_timeout_ms,
            election_timeout_max: cfg.election_timeout_ms * 2,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: cfg.keep_log_entries,
            // An entry carries a batch of changes (up to 4096 keys).
            max_payload_entries: 64,
            install_snapshot_timeout: 60_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| NnError::InvalidArgument(format!("raft settings: {e}")))?;
        let log = log_store::LogStore::open(&dir.join("log"))?;
        let (replicator, proposals) = Replicator::new(me.name.clone());
        let snaps = snapshot::Snapshots::open(dir.join("snapshots"))?;
        let sm = state_machine::StateMachine::open(ns.clone(), replicator.clone(), snaps)?;
        let network = network::Network::new(secret.clone(), net.clone());
        let log_handle = log.clone();
        let raft = NnRaft::new(node_id(&me.name), Arc::new(raft_cfg), network, log, sm)
            .await
            .map_err(|e| NnError::Internal(format!("cannot start raft: {e}")))?;
        if !raft
            .is_initialized()
            .await
            .map_err(|e| NnError::Internal(format!("raft: {e}")))?
            && !network::group_running(&net, &members, &me.name).await
        {
            let all: BTreeMap<NodeId, NnNode> =
                members.iter().map(|m| (node_id(&m.name), m.clone())).collect();
            match raft.initialize(all).await {
                Ok(()) => tracing::info!(node = %me.name, "namenode group initialized"),
                // Another member's proposal got there first: fine.
                Err(e) => tracing::info!(node = %me.name, error = %e, "group not initialized from here"),
            }
        }
        let elections = Arc::new(std::sync::atomic::AtomicU64::new(0));
        state_machine::spawn_role_watch(
            raft.clone(),
            replicator.clone(),
            ns,
            elections.clone(),
            Duration::from_millis(cfg.election_timeout_ms * 2),
            token.clone(),
        );
        state_machine::spawn_proposer(raft.clone(), replicator.clone(), proposals, token.clone());
        let ha = Arc::new(Self {
            raft: raft.clone(),
            me,
            replicator,
            elections,
            secret,
            net,
            lease: Duration::from_millis(cfg.election_timeout_ms * 2),
            transfer: tokio::sync::Mutex::new(()),
            log: log_handle,
            heard: std::sync::atomic::AtomicU64::new(0),
            epoch: std::time::Instant::now(),
            http_addr: std::sync::OnceLock::new(),
            leader_http: parking_lot::Mutex::new(None),
        });
        election_gate::spawn(ha.clone(), token.clone());
        tokio::spawn(async move {
            token.cancelled().await;
            if let Err(e) = raft.shutdown().await {
                tracing::warn!(error = %e, "raft shutdown");
            }
        });
        Ok(ha)
    }

    /// Notes that the leader was heard (its AppendEntries or
    /// InstallSnapshot was taken).
    pub(super) fn heard_leader(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.heard.store(ms.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a leader was heard within `d`.
    fn heard_within(&self, d: Duration) -> bool {
        let at = self.heard.load(std::sync::atomic::Ordering::Relaxed);
        at != 0 && self.epoch.elapsed().as_millis() as u64 <= at + d.as_millis() as u64
    }

    /// Records the address the HTTP server listens on; an unspecified IP
    /// (0.0.0.0) is given as the host of this member's RPC address.
    pub fn set_http_addr(&self, bound: std::net::SocketAddr) {
        let addr = if bound.ip().is_unspecified() {
            let host = self
                .me
                .rpc_addr
                .rsplit_once(':')
                .map_or(self.me.rpc_addr.as_str(), |(h, _)| h);
            format!("{host}:{}", bound.port())
        } else {
            bound.to_string()
        };
        let _ = self.http_addr.set(addr);
    }

    /// The leader's HTTP address, when another member leads and says it
    /// (asked once per leader, again after a minute).
    pub async fn leader_http_addr(&self) -> Option<String> {
        let leader = self.replicator.leader_addr()?;
        if leader == self.me.rpc_addr {
            return None;
        }
        if let Some((rpc, http, at)) = self.leader_http.lock().clone()
            && rpc == leader
            && at.elapsed() < Duration::from_secs(60)
        {
            return Some(http);
        }
        let s = network::peer_status(&self.net, &leader, Duration::from_millis(300)).await?;
        if s.http_addr.is_empty() || s.leader_id != s.node_id {
            return None;
        }
        *self.leader_http.lock() = Some((leader, s.http_addr.clone(), std::time::Instant::now()));
        Some(s.http_addr)
    }

    pub fn raft(&self) -> &NnRaft {
        &self.raft
    }

    pub fn replicator(&self) -> &Arc<Replicator> {
        &self.replicator
    }

    pub fn node_name(&self) -> &str {
        &self.me.name
    }

    /// Whether this namenode leads its group and may serve clients.
    pub fn is_leader(&self) -> bool {
        self.replicator.check_leader_now().is_ok()
    }

    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// Fails with [`NnError::Standby`] (naming the leader) unless this
    /// namenode leads its group.
    pub fn check_leader(&self) -> Result<()> {
        self.replicator.check_leader_now()
    }

    /// Adds the namenode `name` at `rpc_addr` to the group: it is sent the
    /// log (or a snapshot) as a learner, and votes once caught up. Returns
    /// the voters after the change.
    pub async fn add_member(&self, name: &str, rpc_addr: &str) -> Result<Vec<String>> {
        if name.is_empty() || name.contains([',', '=', ' ']) || !rpc_addr.contains(':') {
            return Err(NnError::InvalidArgument(format!(
                "a namenode is added as NAME HOST:PORT (got {name:?} {rpc_addr:?})"
            )));
        }
        let id = node_id(name);
        let m = self.raft.metrics().borrow().membership_config.clone();
        if m.membership().get_node(&id).is_some() {
            return Err(NnError::AlreadyExists(format!(
                "namenode {name} is already a member"
            )));
        }
        let node = NnNode {
            name: name.to_string(),
            rpc_addr: rpc_addr.to_string(),
        };
        self.raft
            .add_learner(id, node, true)
            .await
            .map_err(|e| NnError::NotCommitted(format!("adding {name} as a learner: {e}")))?;
        let mut voters: std::collections::BTreeSet<NodeId> = m.membership().voter_ids().collect();
        voters.insert(id);
        self.change_voters(voters).await
    }

    /// Removes the namenode `name` from the group.
    pub async fn remove_member(&self, name: &str) -> Result<Vec<String>> {
        let id = node_id(name);
        let m = self.raft.metrics().borrow().membership_config.clone();
        let mut voters: std::collections::BTreeSet<NodeId> = m.membership().voter_ids().collect();
        if !voters.remove(&id) {
            return Err(NnError::InvalidArgument(format!(
                "namenode {name} is not a voting member"
            )));
        }
        if voters.is_empty() {
            return Err(NnError::InvalidArgument(
                "cannot remove the last namenode of the group".into(),
            ));
        }
        self.change_voters(voters).await
    }

    async fn change_voters(&self, voters: std::collections::BTreeSet<NodeId>) -> Result<Vec<String>> {
        let r = self
            .raft
            .change_membership(voters, false)
            .await
            .map_err(|e| NnError::NotCommitted(format!("membership change: {e}")))?;
        let names = r
            .membership
            .map(|m| {
                m.voter_ids()
                    .filter_map(|id| m.get_node(&id).map(|n| n.name.clone()))
                    .collect()
            })
            .unwrap_or_default();
        tracing::info!(voters = ?names, "namenode group membership changed");
        Ok(names)
    }

    /// What `granary admin ha status` shows.
    pub fn status(&self) -> pb::HaStatusResponse {
        let m = self.raft.metrics().borrow().clone();
        let leader_id = m.current_leader;
        let names: BTreeMap<NodeId, &NnNode> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n))
            .collect();
        let last_index = m.last_log_index.unwrap_or(0);
        // This member's own last entry, term and index from one read of
        // its log (what the election gate compares on both sides).
        let (own_last_term, own_last_index) = match self.log.last_log_id() {
            Ok(id) => id.map_or((0, 0), |l| (l.leader_id.term, l.index)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the raft log's last entry");
                (0, last_index)
            }
        };
        let voters: std::collections::BTreeSet<NodeId> =
            m.membership_config.membership().voter_ids().collect();
        let members = names
            .iter()
            .map(|(id, node)| {
                let me = *id == m.id;
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned())
                    .flatten()
                    .map(|l| l.index);
                let role = if me {
                    role_name(m.state)
                } else if Some(*id) == leader_id {
                    "leader"
                } else {
                    "follower"
                };
                pb::HaNamenode {
                    node_id: node.name.clone(),
                    rpc_addr: node.rpc_addr.clone(),
                    role: role.into(),
                    term: if me { m.current_term } else { 0 },
                    last_log_index: if me { own_last_index } else { matched.unwrap_or(0) },
                    last_applied_index: if me {
                        m.last_applied.map(|l| l.index).unwrap_or(0)
                    } else {
                        0
                    },
                    lag: match matched {
                        Some(i) => last_index.saturating_sub(i),
                        None => 0,
                    },
                    voter: voters.contains(id),
                    last_log_term: if me { own_last_term } else { 0 },
                }
            })
            .collect();
        pb::HaStatusResponse {
            node_id: self.me.name.clone(),
            leader_id: leader_id
                .and_then(|l| names.get(&l).map(|n| n.name.clone()))
                .unwrap_or_default(),
            term: m.current_term,
            members,
            elections: self.elections.load(std::sync::atomic::Ordering::Relaxed),
            http_addr: self.http_addr.get().cloned().unwrap_or_default(),
        }
    }
}

fn role_name(s: ServerState) -> &'static str {
    match s {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "stopped",
    }
}

/// How long a namenode waits for a peer's answer to one Raft message.
pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// postcard, with the failure named.
pub(crate) fn encode<T: Serialize>(what: &str, v: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(v).map_err(|e| NnError::Internal(format!("cannot encode {what}: {e}")))
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(what: &str, b: &[u8]) -> Result<T> {
    postcard::from_bytes(b).map_err(|e| NnError::Corrupt(format!("undecodable {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_bad_lists_are_named() {
        let cfg = HaConfig {
            node_id: "nn2".into(),
            peers: "nn1=a:8020, nn2=b:8020,nn3=c:8020".into(),
            ..Default::default()
        };
        cfg.validate().expect("valid");
        let m = cfg.members().expect("members");
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].rpc_addr, "b:8020");
        assert_ne!(node_id("nn1"), node_id("nn2"));
        for (peers, want) in [
            ("nn1=a:8020,nn1=b:8020", "named twice"),
            ("nn1=a:8020,nn2=a:8020", "two peers"),
            ("nn1", "NAME=HOST:PORT"),
            ("nn1=a:8020", "not among the peers"),
        ] {
            let bad = HaConfig {
                node_id: "nn2".into(),
                peers: peers.into(),
                ..Default::default()
            };
            let e = bad.validate().expect_err(peers);
            assert!(e.contains(want), "{peers}: {e}");
        }
        assert!(HaConfig::default().validate().is_ok(), "alone is valid");
    }

    #[test]
    fn commands_survive_encoding() {
        let mut effects = Effects::default();
        effects.put_cf(crate::inode::CF_META, b"k", b"v");
        effects.delete_cf(crate::inode::CF_INODES, b"gone");
        let cmd = NsCommand {
            origin: 7,
            seq: 3,
            after: Some(2),
            base: 0,
            effects,
        };
        let bytes = encode("command", &cmd).expect("encode");
        assert_eq!(decode::<NsCommand>("command", &bytes).expect("decode"), cmd);
        assert!(decode::<NsCommand>("command", &bytes[..bytes.len() - 1]).is_err());
    }
}
