//! Which datanodes exist and whether they are alive: registration and
//! heartbeats, from which each node is live, stale or dead.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::inode::now_ms;
use granary_proto as pb;

/// `[datanodes]` of the namenode configuration: how often datanodes are
/// heard from, and when silence makes one stale or dead.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatanodesConfig {
    /// Heartbeat period told to datanodes.
    pub heartbeat_interval_ms: u64,
    /// A datanode silent this long gets no new replicas.
    pub stale_after_ms: u64,
    /// Silent this long: dead, its replicas forgotten and copied elsewhere.
    pub dead_after_ms: u64,
    /// How often datanodes send full block reports (HDFS: 6 h).
    pub block_report_interval_ms: u64,
}

impl Default for DatanodesConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 3_000,
            stale_after_ms: 15_000,
            dead_after_ms: 60_000,
            block_report_interval_ms: 6 * 60 * 60 * 1000,
        }
    }
}

impl DatanodesConfig {
    pub fn stale_after(&self) -> Duration {
        Duration::from_millis(self.stale_after_ms)
    }

    pub fn dead_after(&self) -> Duration {
        Duration::from_millis(self.dead_after_ms)
    }

    pub fn validate(&self) -> Result<(), granary_common::config::ConfigError> {
        if !(self.heartbeat_interval_ms < self.stale_after_ms && self.stale_after_ms < self.dead_after_ms) {
            return Err(granary_common::config::ConfigError::Invalid(
                "need heartbeat_interval_ms < stale_after_ms < dead_after_ms".into(),
            ));
        }
        Ok(())
    }
}

/// An operator's choice for a datanode, independent of its liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdminState {
    #[default]
    Normal,
    /// Serves reads, takes no new replicas; its blocks are copied elsewhere.
    Decommissioning,
    /// Every block it held has its replicas elsewhere; safe to stop.
    Decommissioned,
}

pub struct Datanode {
    pub admin: AdminState,
    pub id: pb::DatanodeId,
    pub storages: Vec<pb::StorageReport>,
    pub xceivers: u32,
    pub last_heartbeat: Instant,
    pub last_heartbeat_ms: i64,
    pub registered_at: Instant,
    /// Declared dead and its replicas forgotten: heartbeats are answered
    /// with a re-register command until it registers again.
    pub declared_dead: bool,
    /// Block bytes read and written since the datanode started, as its
    /// last heartbeat said; None before its first heartbeat here.
    pub io: Option<(u64, u64)>,
}

impl Datanode {
    fn totals(&self) -> (u64, u64, u64) {
        self.storages
            .iter()
            .filter(|s| !s.failed)
            .fold((0, 0, 0), |(c, u, r), s| {
                (c + s.capacity, u + s.dfs_used, r + s.remaining)
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Live,
    Stale,
    Dead,
}

pub struct DatanodeManager {
    nodes: RwLock<HashMap<String, Datanode>>,
    /// Nodes decommissioned before a restart, by uuid, not yet registered
    /// again: they come back out of service.
    remembered_out: RwLock<std::collections::HashSet<String>>,
    stale_after: Duration,
    dead_after: Duration,
}

impl DatanodeManager {
    pub fn from_config(cfg: &DatanodesConfig) -> Self {
        Self::new(cfg.stale_after(), cfg.dead_after())
    }

    pub fn new(stale_after: Duration, dead_after: Duration) -> Self {
        Self {
            nodes: RwLock::new(HashMap::new()),
            remembered_out: RwLock::new(Default::default()),
            stale_after,
            dead_after,
        }
    }

    /// Records a (re-)registration; returns true for a node not seen before.
    pub fn register(&self, id: pb::DatanodeId, storages: Vec<pb::StorageReport>) -> bool {
        let now = Instant::now();
        let mut nodes = self.nodes.write();
        let fresh = !nodes.contains_key(&id.uuid);
        // A re-registering node keeps the operator's decision about it, also
        // one made before the namenode restarted. Decommissioning is judged
        // again (blocks are known only from this start's reports).
        // Its counters run on across a re-registration.
        let io = nodes.get(&id.uuid).and_then(|n| n.io);
        let admin = match nodes.get(&id.uuid) {
            Some(n) => n.admin,
            None if self.remembered_out.write().remove(&id.uuid) => AdminState::Decommissioning,
            None => AdminState::Normal,
        };
        nodes.insert(
            id.uuid.clone(),
            Datanode {
                admin,
                id,
                storages,
                xceivers: 0,
                last_heartbeat: now,
                last_heartbeat_ms: now_ms(),
                registered_at: now,
                declared_dead: false,
                io,
            },
        );
        fresh
    }

    /// Records a heartbeat; false when the node must register again first
    /// (unknown, or declared dead: its replicas were forgotten, so only a
    /// new registration and full block report bring them back).
    pub fn heartbeat(&self, uuid: &str, storages: Vec<pb::StorageReport>, xceivers: u32) -> bool {
        let mut nodes = self.nodes.write();
        let Some(n) = nodes.get_mut(uuid) else {
            return false;
        };
        if n.declared_dead {
            return false;
        }
        n.storages = storages;
        n.xceivers = xceivers;
        n.last_heartbeat = Instant::now();
        n.last_heartbeat_ms = now_ms();
        true
    }

    /// Notes a datanode's read and written byte counters (its heartbeat's).
    pub fn note_io(&self, uuid: &str, read: u64, written: u64) {
        if let Some(n) = self.nodes.write().get_mut(uuid) {
            n.io = Some((read, written));
        }
    }

    /// Every datanode's (uuid, bytes read, bytes written) counters, for
    /// those that sent them.
    pub fn io_counters(&self) -> Vec<(String, u64, u64)> {
        self.nodes
            .read()
            .values()
            .filter_map(|n| n.io.map(|(r, w)| (n.id.uuid.clone(), r, w)))
            .collect()
    }

    pub fn is_registered(&self, uuid: &str) -> bool {
        self.nodes.read().contains_key(uuid)
    }

    fn liveness_of(&self, n: &Datanode, now: Instant) -> Liveness {
        let since = now.saturating_duration_since(n.last_heartbeat);
        if since >= self.dead_after {
            Liveness::Dead
        } else if since >= self.stale_after {
            Liveness::Stale
        } else {
            Liveness::Live
        }
    }

    pub fn liveness(&self, uuid: &str) -> Option<Liveness> {
        let now = Instant::now();
        self.nodes.read().get(uuid).map(|n| self.liveness_of(n, now))
    }

    fn info_of(&self, n: &Datanode, now: Instant) -> pb::DatanodeInfo {
        let (capacity, dfs_used, remaining) = n.totals();
        pb::DatanodeInfo {
            id: Some(n.id.clone()),
            capacity,
            dfs_used,
            remaining,
            xceiver_count: n.xceivers,
            last_heartbeat_ms: n.last_heartbeat_ms,
            state: match (self.liveness_of(n, now), n.admin) {
                (Liveness::Dead, _) => pb::DatanodeState::Dead,
                (_, AdminState::Decommissioning) => pb::DatanodeState::Decommissioning,
                (_, AdminState::Decommissioned) => pb::DatanodeState::Decommissioned,
                (Liveness::Live, AdminState::Normal) => pb::DatanodeState::Live,
                (Liveness::Stale, AdminState::Normal) => pb::DatanodeState::Stale,
            } as i32,
        }
    }

    pub fn info(&self, uuid: &str) -> Option<pb::DatanodeInfo> {
        let now = Instant::now();
        self.nodes.read().get(uuid).map(|n| self.info_of(n, now))
    }

    /// Every known datanode, live or not.
    pub fn report(&self) -> Vec<pb::DatanodeInfo> {
        let now = Instant::now();
        let mut v: Vec<_> = self.nodes.read().values().map(|n| self.info_of(n, now)).collect();
        v.sort_by(|a, b| {
            let key = |i: &pb::DatanodeInfo| i.id.as_ref().map(|d| d.rpc_addr.clone());
            key(a).cmp(&key(b))
        });
        v
    }

    /// Nodes that can take new replicas: live and with room for `min_free` bytes.
    pub fn writable(&self, min_free: u64) -> Vec<pb::DatanodeInfo> {
        self.report()
            .into_iter()
            .filter(|i| i.state == pb::DatanodeState::Live as i32 && i.remaining >= min_free)
            .collect()
    }

    pub fn admin_state(&self, uuid: &str) -> AdminState {
        self.nodes.read().get(uuid).map(|n| n.admin).unwrap_or_default()
    }

    /// Sets the admin state of node `uuid` (see [`DatanodeManager::uuid_of`]
    /// for a node named by address); None when no such node is known.
    pub fn set_admin_state(&self, uuid: &str, state: AdminState) -> Option<()> {
        self.nodes.write().get_mut(uuid)?.admin = state;
        Some(())
    }

    /// Nodes an operator took out of service before the namenode started
    /// (see [`Namespace::out_of_service`](crate::namespace::Namespace::out_of_service)).
    pub fn remember_out_of_service(&self, uuids: impl IntoIterator<Item = String>) {
        self.remembered_out.write().extend(uuids);
    }

    /// A node's data dirs as its last heartbeat reported them.
    pub fn storages(&self, uuid: &str) -> Vec<pb::StorageReport> {
        self.nodes
            .read()
            .get(uuid)
            .map(|n| n.storages.clone())
            .unwrap_or_default()
    }

    /// The uuid of a registered node named by uuid or `host:port`.
    pub fn uuid_of(&self, node: &str) -> Option<String> {
        self.nodes
            .read()
            .values()
            .find(|n| n.id.uuid == node || n.id.rpc_addr == node)
            .map(|n| n.id.uuid.clone())
    }

    /// Nodes being decommissioned.
    pub fn decommissioning(&self) -> Vec<String> {
        self.nodes
            .read()
            .values()
            .filter(|n| n.admin == AdminState::Decommissioning)
            .map(|n| n.id.uuid.clone())
            .collect()
    }

    /// Marks a dead node whose replicas were forgotten; it stays listed (as
    /// dead) until it registers again.
    pub fn declare_dead(&self, uuid: &str) {
        if let Some(n) = self.nodes.write().get_mut(uuid) {
            n.declared_dead = true;
        }
    }

    /// Nodes whose heartbeats stopped longer than the dead interval ago.
    pub fn dead_nodes(&self) -> Vec<String> {
        let now = Instant::now();
        self.nodes
            .read()
            .values()
            .filter(|n| self.liveness_of(n, now) == Liveness::Dead)
            .map(|n| n.id.uuid.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(uuid: &str) -> pb::DatanodeId {
        pb::DatanodeId {
            uuid: uuid.into(),
            rpc_addr: format!("127.0.0.1:{}", uuid.len()),
            ..Default::default()
        }
    }

    #[test]
    fn nodes_go_stale_then_dead_without_heartbeats() {
        let dm = DatanodeManager::new(Duration::from_millis(40), Duration::from_millis(120));
        assert!(dm.register(id("a"), vec![]));
        assert!(!dm.register(id("a"), vec![]));
        assert_eq!(dm.liveness("a"), Some(Liveness::Live));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(dm.liveness("a"), Some(Liveness::Stale));
        assert!(dm.heartbeat("a", vec![], 0));
        assert_eq!(dm.liveness("a"), Some(Liveness::Live));
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(dm.dead_nodes(), vec!["a".to_string()]);
        assert!(!dm.heartbeat("unknown", vec![], 0));
    }

    #[test]
    fn a_node_declared_dead_must_register_again() {
        let dm = DatanodeManager::new(Duration::from_secs(1), Duration::from_secs(2));
        dm.register(id("a"), vec![]);
        dm.declare_dead("a");
        // Its heartbeats (e.g. after a partition heals) do not revive it...
        assert!(!dm.heartbeat("a", vec![], 0));
        assert!(!dm.heartbeat("a", vec![], 0));
        // ...registering (followed by a full block report) does.
        assert!(!dm.register(id("a"), vec![]));
        assert!(dm.heartbeat("a", vec![], 0));
    }
}
