//! The balancer (HDFS's): moves replicas from datanodes fuller than the
//! cluster's mean utilization to emptier ones until every node is within
//! a threshold of the mean.
//!
//! A move is a copy, then a delete: the source sends the replica to the
//! target (a replicate command, paced by the datanode's balancer
//! bandwidth); once the target reports it, the block has one replica too
//! many and the redundancy monitor removes the source's (its hint), so a
//! block is never below its replication. Moves keep rack rules: a move
//! never leaves a block on fewer racks. Only moves in flight are kept
//! (in memory): stopping the balancer, or a namenode restart, loses
//! nothing, and a new run starts from the replicas the nodes hold.
//! `granary balancer` drives rounds through the `Balance` call; with
//! `[balancer] enabled` the namenode runs them itself.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::datanode_manager::Liveness;
use crate::error::Result;
use crate::redundancy::{Cluster, Redundancy};
use granary_common::block_token::BlockAccess;
use granary_common::config::ConfigError;
use granary_proto as pb;

/// `[balancer]` of the namenode configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BalancerConfig {
    /// Run balancing rounds in the namenode itself (the group's leader).
    pub enabled: bool,
    /// How far (percentage points) a node's utilization may be from the
    /// cluster mean (HDFS's `-threshold`, default 10).
    pub threshold_percent: f64,
    /// Per datanode, the bytes per second balancing copies may take
    /// (HDFS's `dfs.datanode.balance.bandwidthPerSec`, 100 MiB/s).
    pub bandwidth_mib_per_sec: f64,
    /// Moves in flight per datanode, as source or target.
    pub max_moves_per_node: u32,
    /// Between the namenode's own rounds.
    pub interval_ms: u64,
    /// A move not reported done by then is given up (and may be tried again).
    pub move_timeout_ms: u64,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            threshold_percent: 10.0,
            bandwidth_mib_per_sec: 100.0,
            // HDFS's dfs.datanode.balance.max.concurrent.moves.
            max_moves_per_node: 50,
            interval_ms: 10_000,
            move_timeout_ms: 5 * 60 * 1000,
        }
    }
}

impl BalancerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.threshold_percent > 0.0 && self.threshold_percent <= 100.0) {
            return Err(ConfigError::Invalid(format!(
                "[balancer] threshold_percent = {}: from above 0 to 100",
                self.threshold_percent
            )));
        }
        if !(self.bandwidth_mib_per_sec > 0.0 && self.bandwidth_mib_per_sec.is_finite()) {
            return Err(ConfigError::Invalid(format!(
                "[balancer] bandwidth_mib_per_sec = {}: above 0",
                self.bandwidth_mib_per_sec
            )));
        }
        if self.max_moves_per_node == 0 || self.max_moves_per_node > 1000 {
            return Err(ConfigError::Invalid(format!(
                "[balancer] max_moves_per_node = {}: 1 to 1000",
                self.max_moves_per_node
            )));
        }
        Ok(())
    }

    /// Round options from this configuration.
    pub fn options(&self) -> BalanceOptions {
        BalanceOptions {
            threshold: self.threshold_percent / 100.0,
            bandwidth: (self.bandwidth_mib_per_sec * (1 << 20) as f64) as u64,
            exclude: Vec::new(),
        }
    }
}

/// What one round is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceOptions {
    /// A fraction (0.1 for 10 %).
    pub threshold: f64,
    /// Bytes per second per datanode.
    pub bandwidth: u64,
    /// Nodes neither given nor taken from: uuid, host, or host:port.
    pub exclude: Vec<String>,
}

/// What a round found and did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BalanceRound {
    /// Every node considered is within the threshold of the mean.
    pub balanced: bool,
    /// Nodes considered (live, in service, not excluded).
    pub nodes: usize,
    pub over_utilized: usize,
    pub under_utilized: usize,
    /// Cluster mean utilization (a fraction).
    pub mean: f64,
    /// Bytes still to move for every node to reach the mean's neighbourhood.
    pub bytes_left: u64,
    /// Bytes of moves in flight.
    pub bytes_being_moved: u64,
    /// Moves started by this round.
    pub scheduled: usize,
    /// Since the namenode started: bytes and blocks moved, moves given up.
    pub bytes_moved: u64,
    pub blocks_moved: u64,
    pub moves_failed: u64,
    /// Each node considered and its utilization as reported (a fraction).
    pub utilization: Vec<(pb::DatanodeId, f64)>,
}

struct Move {
    source: String,
    target: String,
    bytes: u64,
    deadline: Instant,
}

#[derive(Default)]
pub struct Balancer {
    /// One round at a time (the CLI's and the namenode's own may overlap).
    round: Mutex<()>,
    moves: Mutex<HashMap<u64, Move>>,
    /// Moves done whose source's replica is not yet removed (the block's
    /// excess, by the redundancy monitor): block -> (source, bytes, until).
    removing: Mutex<HashMap<u64, (String, u64, Instant)>>,
    /// Copies waiting for their source's next heartbeat.
    commands: Mutex<HashMap<String, VecDeque<pb::ReplicateCommand>>>,
    bytes_moved: AtomicU64,
    blocks_moved: AtomicU64,
    moves_failed: AtomicU64,
    /// Disk balancer runs waiting for their datanode's next heartbeat.
    disk_commands: Mutex<HashMap<String, pb::DiskBalanceCommand>>,
}

/// What a round's pairing works with.
#[derive(Clone, Copy)]
struct Plan<'a, 'c> {
    st: &'a Cluster<'c>,
    redundancy: &'a Redundancy,
    opts: &'a BalanceOptions,
    max_moves: usize,
    deadline: Instant,
}

/// A node's place in a round.
struct Node {
    info: pb::DatanodeInfo,
    uuid: String,
    rack: String,
    /// Bytes it should give (above the mean) or take (below), as planned.
    budget: f64,
}

/// A node's usage as a round sees it: the replicas the block map says it
/// holds (changed at once by reports and removals, where heartbeats lag),
/// plus moves in flight.
fn projected(st: &Cluster<'_>, info: &pb::DatanodeInfo, delta: &HashMap<String, i64>) -> f64 {
    let uuid = info.id.as_ref().map_or("", |i| i.uuid.as_str());
    (st.blocks.node_bytes(uuid) as i64 + delta.get(uuid).copied().unwrap_or(0)).max(0) as f64
}

fn excluded(info: &pb::DatanodeInfo, exclude: &[String]) -> bool {
    let Some(id) = &info.id else { return true };
    let host = id
        .rpc_addr
        .rsplit_once(':')
        .map_or(id.rpc_addr.as_str(), |(h, _)| h);
    exclude
        .iter()
        .any(|e| *e == id.uuid || *e == id.rpc_addr || *e == id.hostname || *e == host)
}

impl Balancer {
    /// Copies for `uuid` to start (sent in its heartbeat reply).
    pub fn take_commands(&self, uuid: &str) -> Vec<pb::ReplicateCommand> {
        self.commands
            .lock()
            .remove(uuid)
            .map(Vec::from)
            .unwrap_or_default()
    }

    /// Asks datanode `uuid` to balance its data dirs (at its next heartbeat).
    pub fn start_disk_balance(&self, uuid: &str, cmd: pb::DiskBalanceCommand) {
        self.disk_commands.lock().insert(uuid.to_string(), cmd);
    }

    /// The disk balancer run for `uuid` to start, if one was asked for.
    pub fn take_disk_command(&self, uuid: &str) -> Option<pb::DiskBalanceCommand> {
        self.disk_commands.lock().remove(uuid)
    }

    /// Settles moves: a target holding its copy is done (the source's
    /// replica is then the block's excess, removed by the redundancy
    /// monitor); one past its deadline is given up.
    fn settle(&self, st: &Cluster<'_>, redundancy: &Redundancy, now: Instant) {
        let mut done = Vec::new();
        self.moves.lock().retain(|id, m| {
            if st.blocks.locations(*id).contains(&m.target) {
                done.push((*id, m.source.clone(), m.bytes));
                false
            } else if m.deadline <= now {
                tracing::info!(block_id = id, source = %m.source, target = %m.target, "balancer move given up: the target never reported the copy");
                self.moves_failed.fetch_add(1, Ordering::Relaxed);
                redundancy.forget_excess_hint(*id);
                // Not sent yet: never sent.
                if let Some(q) = self.commands.lock().get_mut(&m.source) {
                    q.retain(|c| c.block.is_none_or(|b| b.block_id != *id));
                }
                false
            } else {
                true
            }
        });
        let mut removing = self.removing.lock();
        // Gone from the source (or waited for long enough).
        removing.retain(|id, (source, _, until)| *until > now && st.blocks.locations(*id).contains(source));
        for (id, source, bytes) in done {
            removing.insert(id, (source, bytes, now + REMOVAL_WAIT));
            self.bytes_moved.fetch_add(bytes, Ordering::Relaxed);
            self.blocks_moved.fetch_add(1, Ordering::Relaxed);
            redundancy.check([id]);
        }
    }

    /// Usage changes by node the block map does not show yet: moves in
    /// flight, and done moves' source replicas still to be removed.
    fn pending_usage(&self) -> HashMap<String, i64> {
        let mut delta: HashMap<String, i64> = HashMap::new();
        for m in self.moves.lock().values() {
            *delta.entry(m.source.clone()).or_default() -= m.bytes as i64;
            *delta.entry(m.target.clone()).or_default() += m.bytes as i64;
        }
        for (source, bytes, _) in self.removing.lock().values() {
            *delta.entry(source.clone()).or_default() -= *bytes as i64;
        }
        delta
    }

    /// One round: settles moves, works out who is over and under the
    /// mean, and starts moves between them (at most `max_moves` in flight
    /// per node).
    pub fn round(
        &self,
        st: &Cluster<'_>,
        redundancy: &Redundancy,
        opts: &BalanceOptions,
        max_moves: usize,
        move_timeout: Duration,
    ) -> Result<BalanceRound> {
        let _one = self.round.lock();
        let now = Instant::now();
        self.settle(st, redundancy, now);
        let delta = self.pending_usage();
        let nodes: Vec<pb::DatanodeInfo> = st
            .datanodes
            .report()
            .into_iter()
            .filter(|i| i.state == pb::DatanodeState::Live as i32 && i.capacity > 0)
            .filter(|i| !excluded(i, &opts.exclude))
            .collect();
        let used: Vec<f64> = nodes.iter().map(|i| projected(st, i, &delta)).collect();
        let total_used: f64 = used.iter().sum();
        let capacity: f64 = nodes.iter().map(|i| i.capacity as f64).sum();
        let mean = if capacity > 0.0 {
            total_used / capacity
        } else {
            0.0
        };
        let t = opts.threshold;
        // (over, above, below, under) the mean, as HDFS sorts them.
        let mut classes: [Vec<Node>; 4] = Default::default();
        let mut utilization = Vec::new();
        for (info, used) in nodes.iter().cloned().zip(used) {
            let Some(id) = info.id.clone() else { continue };
            let cap = info.capacity as f64;
            let util = used / cap;
            utilization.push((id.clone(), info.dfs_used as f64 / cap));
            let class = match util - mean {
                d if d > t => 0,
                d if d > 0.0 => 1,
                d if d >= -t => 2,
                _ => 3,
            };
            classes[class].push(Node {
                uuid: id.uuid,
                rack: id.rack,
                budget: (util - mean).abs() * cap,
                info,
            });
        }
        let [mut over, mut above, mut below, mut under] = classes;
        let mut out = BalanceRound {
            balanced: over.is_empty() && under.is_empty(),
            nodes: nodes.len(),
            over_utilized: over.len(),
            under_utilized: under.len(),
            mean,
            utilization,
            ..Default::default()
        };
        if !out.balanced {
            let give: f64 = over.iter().chain(&above).map(|n| n.budget).sum();
            let take: f64 = under.iter().chain(&below).map(|n| n.budget).sum();
            out.bytes_left = give.min(take) as u64;
            let mut inflight = self.inflight_by_node();
            // Over to under first, then over to below the mean, then
            // above the mean to under (HDFS's order).
            let plan = Plan {
                st,
                redundancy,
                opts,
                max_moves,
                deadline: now + move_timeout,
            };
            out.scheduled += self.pair(&plan, &mut over, &mut under, &mut inflight)?;
            out.scheduled += self.pair(&plan, &mut over, &mut below, &mut inflight)?;
            out.scheduled += self.pair(&plan, &mut above, &mut under, &mut inflight)?;
        }
        out.bytes_being_moved = self.moves.lock().values().map(|m| m.bytes).sum();
        out.bytes_moved = self.bytes_moved.load(Ordering::Relaxed);
        out.blocks_moved = self.blocks_moved.load(Ordering::Relaxed);
        out.moves_failed = self.moves_failed.load(Ordering::Relaxed);
        Ok(out)
    }

    /// Moves and their bytes in flight, by node (as source or target).
    fn inflight_by_node(&self) -> HashMap<String, (usize, u64)> {
        let mut n: HashMap<String, (usize, u64)> = HashMap::new();
        for m in self.moves.lock().values() {
            for node in [&m.source, &m.target] {
                let e = n.entry(node.clone()).or_default();
                e.0 += 1;
                e.1 += m.bytes;
            }
        }
        n
    }

    /// Starts moves from `sources` to `targets` while both have budget.
    fn pair(
        &self,
        plan: &Plan<'_, '_>,
        sources: &mut [Node],
        targets: &mut [Node],
        inflight: &mut HashMap<String, (usize, u64)>,
    ) -> Result<usize> {
        let Plan {
            st,
            redundancy,
            opts,
            max_moves,
            deadline,
        } = *plan;
        let mut scheduled = 0;
        // No more bytes in flight per node than its pace sends in half the
        // move timeout: a move waits its turn, never times out in line.
        let window = deadline.saturating_duration_since(Instant::now()).as_secs_f64() / 2.0;
        let max_bytes = ((opts.bandwidth as f64) * window).max(1.0) as u64;
        let room = |inflight: &HashMap<String, (usize, u64)>, node: &str| {
            let (n, b) = inflight.get(node).copied().unwrap_or_default();
            n < max_moves && (n == 0 || b < max_bytes)
        };
        for s in sources.iter_mut() {
            if s.budget <= 0.0 {
                continue;
            }
            // The source's blocks, a bounded number looked at per round.
            let mut candidates = st
                .blocks
                .some_node_blocks(&s.uuid, CANDIDATES_PER_SOURCE)
                .into_iter();
            for t in targets.iter_mut() {
                while s.budget > 0.0 && t.budget > 0.0 && room(inflight, &s.uuid) && room(inflight, &t.uuid) {
                    let Some((block, holders)) = self.next_movable(st, redundancy, &mut candidates, s, t)?
                    else {
                        break;
                    };
                    let bytes = block.num_bytes;
                    let Some(target_id) = t.info.id.clone() else { break };
                    let cmd = pb::ReplicateCommand {
                        block: Some(block),
                        targets: vec![target_id],
                        access_token: st.block_keys.token(&block, BlockAccess::Write),
                        balancer_bandwidth: opts.bandwidth.max(1),
                    };
                    tracing::debug!(block_id = block.block_id, source = %s.uuid, target = %t.uuid, bytes, holders, "balancer move scheduled");
                    {
                        let mut moves = self.moves.lock();
                        if moves.contains_key(&block.block_id) {
                            continue;
                        }
                        moves.insert(
                            block.block_id,
                            Move {
                                source: s.uuid.clone(),
                                target: t.uuid.clone(),
                                bytes,
                                deadline,
                            },
                        );
                    }
                    redundancy.prefer_excess(block.block_id, &s.uuid);
                    self.commands
                        .lock()
                        .entry(s.uuid.clone())
                        .or_default()
                        .push_back(cmd);
                    for node in [&s.uuid, &t.uuid] {
                        let e = inflight.entry(node.clone()).or_default();
                        e.0 += 1;
                        e.1 += bytes;
                    }
                    s.budget -= bytes as f64;
                    t.budget -= bytes as f64;
                    scheduled += 1;
                }
            }
        }
        Ok(scheduled)
    }

    /// The next of `candidates` that may move from `s` to `t`: complete
    /// and committed, not moving or being re-replicated already, fully
    /// replicated on live nodes in service, not on `t`, and not left on
    /// fewer racks by the move. With the number of its holders.
    fn next_movable(
        &self,
        st: &Cluster<'_>,
        redundancy: &Redundancy,
        candidates: &mut impl Iterator<Item = u64>,
        s: &Node,
        t: &Node,
    ) -> Result<Option<(pb::ExtendedBlock, usize)>> {
        // Never two moves of one block at once (a block just moved has a
        // replica too many until the source's goes: skipped below).
        let moving: HashSet<u64> = self.moves.lock().keys().copied().collect();
        let mut skipped = [0usize; 6];
        for id in candidates.by_ref() {
            if moving.contains(&id) || redundancy.is_pending(id) {
                skipped[0] += 1;
                continue;
            }
            let holders = st.blocks.locations(id);
            if holders.contains(&t.uuid)
                || !holders.contains(&s.uuid)
                || !st.blocks.corrupt_replicas(id).is_empty()
            {
                skipped[1] += 1;
                continue;
            }
            let Some(owner) = st.ns.block_owner(id)? else {
                continue;
            };
            let Some(len) = owner.committed_len else {
                skipped[2] += 1;
                continue;
            };
            let Some(file) = st.ns.inode_holding(owner.inode, id)? else {
                continue;
            };
            let live: Vec<pb::DatanodeInfo> = holders
                .iter()
                .filter(|u| st.datanodes.liveness(u) == Some(Liveness::Live))
                .filter(|u| st.datanodes.admin_state(u) == crate::datanode_manager::AdminState::Normal)
                .filter_map(|u| st.datanodes.info(u))
                .collect();
            // Exactly replicated: a block short of replicas is the
            // redundancy monitor's, one with a replica too many is about to
            // lose one.
            if live.len() != file.replication as usize || holders.len() != live.len() {
                skipped[3] += 1;
                continue;
            }
            let racks_now: HashSet<&str> = live
                .iter()
                .filter_map(|i| i.id.as_ref())
                .map(|i| i.rack.as_str())
                .collect();
            let mut racks_after: HashSet<&str> = live
                .iter()
                .filter_map(|i| i.id.as_ref())
                .filter(|i| i.uuid != s.uuid)
                .map(|i| i.rack.as_str())
                .collect();
            racks_after.insert(t.rack.as_str());
            if racks_after.len() < racks_now.len() {
                skipped[4] += 1;
                continue;
            }
            let block = pb::ExtendedBlock {
                block_id: id,
                generation_stamp: owner.gs,
                num_bytes: len,
            };
            return Ok(Some((block, live.len())));
        }
        tracing::debug!(source = %s.uuid, target = %t.uuid, ?skipped, "no block of the source may move to the target: [moving, placement or corrupt, uncommitted, replication, racks]");
        Ok(None)
    }
}

/// How long a done move's source replica is counted as gone before the
/// block map shows it (the redundancy monitor removes it within a round).
const REMOVAL_WAIT: Duration = Duration::from_secs(60);

/// Blocks of one source looked at per round: bounds a round's work on a
/// node holding millions.
const CANDIDATES_PER_SOURCE: usize = 20_000;

/// Runs balancer rounds in the namenode while `[balancer] enabled` (on a
/// group's leader, outside safe mode); nothing otherwise.
pub fn spawn_background(
    state: std::sync::Arc<crate::state::NamenodeState>,
    token: tokio_util::sync::CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let cfg = state.config().balancer.clone();
    if !cfg.enabled {
        return None;
    }
    let every = Duration::from_millis(cfg.interval_ms.max(100));
    let opts = cfg.options();
    Some(tokio::spawn(async move {
        let mut was_balanced = true;
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if !state.is_active() || state.safe_mode().is_on() {
                continue;
            }
            let st = state.clone();
            let opts = opts.clone();
            match tokio::task::spawn_blocking(move || st.balance_round(&opts)).await {
                Ok(Ok(r)) if r.scheduled > 0 || !r.balanced || !was_balanced => {
                    was_balanced = r.balanced;
                    tracing::info!(
                        balanced = r.balanced,
                        over = r.over_utilized,
                        under = r.under_utilized,
                        bytes_left = r.bytes_left,
                        bytes_being_moved = r.bytes_being_moved,
                        bytes_moved = r.bytes_moved,
                        scheduled = r.scheduled,
                        "balancer round"
                    );
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "balancer round failed; trying again next round"),
                Err(e) => tracing::error!(error = %e, "balancer task failed"),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excluded_nodes_are_named_by_uuid_host_or_host_and_port() {
        let info = pb::DatanodeInfo {
            id: Some(pb::DatanodeId {
                uuid: "u-1".into(),
                hostname: "dn1.example".into(),
                rpc_addr: "10.0.0.5:9866".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        for e in ["u-1", "dn1.example", "10.0.0.5:9866", "10.0.0.5"] {
            assert!(excluded(&info, &[e.to_string()]), "{e}");
        }
        for e in ["u-2", "dn1", "10.0.0.5:9867", "10.0.0.50", ""] {
            assert!(!excluded(&info, &[e.to_string()]), "{e}");
        }
        assert!(!excluded(&info, &[]));
    }

    #[test]
    fn the_configuration_is_checked() {
        assert!(BalancerConfig::default().validate().is_ok());
        let bad = [
            BalancerConfig {
                threshold_percent: 0.0,
                ..Default::default()
            },
            BalancerConfig {
                threshold_percent: 101.0,
                ..Default::default()
            },
            BalancerConfig {
                bandwidth_mib_per_sec: 0.0,
                ..Default::default()
            },
            BalancerConfig {
                max_moves_per_node: 0,
                ..Default::default()
            },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?}");
        }
        let o = BalancerConfig::default().options();
        assert_eq!((o.threshold, o.bandwidth), (0.1, 100 << 20));
    }
}
