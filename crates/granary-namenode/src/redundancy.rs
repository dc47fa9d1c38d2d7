//! Keeping every block at its target replication: a queue of blocks to
//! check, fed by events (datanode death, setReplication, corrupt replicas,
//! files closing short of replicas, returning datanodes) and a periodic full
//! scan. Under-replicated blocks get a copy scheduled from a live holder to
//! new targets through heartbeat commands; over-replicated ones lose their
//! excess replicas.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::block_keys::BlockKeyManager;
use crate::block_manager::BlockManager;
use crate::datanode_manager::{AdminState, DatanodeManager, Liveness};
use crate::error::Result;
use crate::namespace::Namespace;
use crate::placement::PlacementPolicy;
use granary_common::block_token::BlockAccess;
use granary_proto as pb;

/// Blocks checked per monitor round, so one round never runs long.
const BLOCKS_PER_ROUND: usize = 20_000;

/// `[redundancy]` of the namenode configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedundancyConfig {
    /// How often the monitor checks queued blocks (HDFS: 3 s).
    pub interval_ms: u64,
    /// Full scan of every block for wrong replica counts (the first one a
    /// dead interval after start, once datanodes had time to report).
    pub scan_interval_ms: u64,
    /// Copies a datanode is asked to send at once (HDFS: 2).
    pub max_replication_streams: u32,
    /// A scheduled copy not reported by then is scheduled again (HDFS: 300 s).
    pub pending_replication_timeout_ms: u64,
}

impl Default for RedundancyConfig {
    fn default() -> Self {
        Self {
            interval_ms: 3_000,
            scan_interval_ms: 10 * 60 * 1000,
            max_replication_streams: 2,
            pending_replication_timeout_ms: 60_000,
        }
    }
}

impl RedundancyConfig {
    /// Copies one datanode is asked to send at once.
    pub fn max_streams(&self) -> usize {
        self.max_replication_streams as usize
    }

    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.max(50))
    }

    pub fn scan_interval(&self) -> Duration {
        Duration::from_millis(self.scan_interval_ms.max(1000))
    }

    fn pending_timeout(&self) -> Duration {
        Duration::from_millis(self.pending_replication_timeout_ms)
    }
}

/// The parts of the namenode a monitor round reads and changes besides its
/// own queues; lent by the namenode's state for each round.
pub struct Cluster<'a> {
    pub ns: &'a Namespace,
    pub blocks: &'a BlockManager,
    pub datanodes: &'a DatanodeManager,
    pub placement: &'a dyn PlacementPolicy,
    pub block_keys: &'a BlockKeyManager,
}

struct Pending {
    targets: Vec<String>,
    deadline: Instant,
}

pub struct Redundancy {
    cfg: RedundancyConfig,
    /// Blocks to look at, lowest id first.
    queue: Mutex<BTreeSet<u64>>,
    /// Copies scheduled and not yet reported, by block.
    pending: Mutex<HashMap<u64, Pending>>,
    /// Replicate commands waiting for their source's next heartbeat.
    commands: Mutex<HashMap<String, VecDeque<pb::ReplicateCommand>>>,
    /// Blocks last seen short of replicas, and with none at all.
    health: Mutex<Health>,
    /// The replica to drop first when a block has one too many: the
    /// source of a balancer move.
    excess_hints: Mutex<HashMap<u64, (String, Instant)>>,
    corrupt_replicas: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Health {
    under: std::collections::HashSet<u64>,
    missing: std::collections::HashSet<u64>,
}

/// (under-replicated, missing) block counts.
pub type HealthCounts = (u64, u64);

/// What one monitor round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundStats {
    pub checked: usize,
    pub scheduled: usize,
    pub excess_removed: usize,
    pub missing: usize,
}

impl Redundancy {
    pub fn new(cfg: RedundancyConfig) -> Self {
        Self {
            cfg,
            queue: Default::default(),
            pending: Default::default(),
            commands: Default::default(),
            health: Default::default(),
            excess_hints: Default::default(),
            corrupt_replicas: Default::default(),
        }
    }

    pub fn config(&self) -> &RedundancyConfig {
        &self.cfg
    }

    /// Under-replicated and missing blocks, as of each block's last check.
    pub fn health(&self) -> HealthCounts {
        let h = self.health.lock();
        (h.under.len() as u64, h.missing.len() as u64)
    }

    /// Counts a corrupt replica (the block map keeps it apart from live ones).
    pub fn note_corrupt(&self) {
        self.corrupt_replicas
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn corrupt_replicas(&self) -> u64 {
        self.corrupt_replicas.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records what a check found about block `id`.
    fn record(&self, id: u64, under: bool, missing: bool) {
        let mut h = self.health.lock();
        if under {
            h.under.insert(id);
        } else {
            h.under.remove(&id);
        }
        if missing {
            h.missing.insert(id);
        } else {
            h.missing.remove(&id);
        }
    }

    /// Queues blocks to be checked on the next round.
    pub fn check(&self, blocks: impl IntoIterator<Item = u64>) {
        self.queue.lock().extend(blocks);
    }

    pub fn queued(&self) -> usize {
        self.queue.lock().len()
    }

    pub fn pending(&self) -> usize {
        self.pending.lock().len()
    }

    /// Up to `max` copies for `uuid` to start (sent in its heartbeat reply).
    pub fn take_commands(&self, uuid: &str, max: usize) -> Vec<pb::ReplicateCommand> {
        let mut m = self.commands.lock();
        let Some(q) = m.get_mut(uuid) else {
            return Vec::new();
        };
        let n = q.len().min(max);
        q.drain(..n).collect()
    }

    /// A target reported the replica: that copy is done. The block is
    /// checked again, since a copy may have landed where a replica already was.
    pub fn received(&self, block_id: u64, uuid: &str) {
        let mut p = self.pending.lock();
        if let Some(entry) = p.get_mut(&block_id) {
            entry.targets.retain(|t| t != uuid);
            if entry.targets.is_empty() {
                p.remove(&block_id);
            }
            drop(p);
            self.check([block_id]);
        }
    }

    /// Whether a copy of block `id` is scheduled and not yet reported.
    pub fn is_pending(&self, id: u64) -> bool {
        self.pending.lock().contains_key(&id)
    }

    /// When block `id` next has a replica too many, `uuid`'s goes (if the
    /// block stays on as many racks without it).
    pub fn prefer_excess(&self, id: u64, uuid: &str) {
        let mut hints = self.excess_hints.lock();
        // A hint whose excess never came (a replica lost meanwhile) goes
        // after an hour; the map stays bounded by the moves of an hour.
        if hints.len() > 10_000 {
            let now = Instant::now();
            hints.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(3600));
        }
        hints.insert(id, (uuid.to_string(), Instant::now()));
    }

    pub fn forget_excess_hint(&self, id: u64) {
        self.excess_hints.lock().remove(&id);
    }

    fn queued_for(&self, uuid: &str) -> usize {
        self.commands.lock().get(uuid).map_or(0, VecDeque::len)
    }

    /// One pass over the queue (not in safe mode: replica counts mean
    /// little until datanodes have reported; the caller sees to that).
    pub fn run_round(&self, st: &Cluster<'_>) -> Result<RoundStats> {
        let now = Instant::now();
        // Copies that never arrived are tried again.
        let expired: Vec<u64> = {
            let mut p = self.pending.lock();
            let ids: Vec<u64> = p
                .iter()
                .filter(|(_, e)| e.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in &ids {
                p.remove(id);
            }
            ids
        };
        self.check(expired);
        let batch: Vec<u64> = {
            let mut q = self.queue.lock();
            let take: Vec<u64> = q.iter().take(BLOCKS_PER_ROUND).copied().collect();
            for id in &take {
                q.remove(id);
            }
            take
        };
        // Blocks closest to loss first: fewest live replicas.
        let mut batch: Vec<(usize, u64)> = batch
            .into_iter()
            .map(|id| (st.blocks.replica_count(id), id))
            .collect();
        batch.sort_unstable();
        self.check_decommissioning(st)?;
        let mut stats = RoundStats::default();
        let mut retry = Vec::new();
        for (_, id) in batch {
            stats.checked += 1;
            match self.check_block(st, id, now, &mut stats)? {
                Outcome::Done => {}
                Outcome::Retry => retry.push(id),
            }
        }
        self.check(retry);
        Ok(stats)
    }

    /// Marks decommissioning nodes decommissioned once every block they
    /// hold has its replicas (as many as the cluster can give) elsewhere.
    fn check_decommissioning(&self, st: &Cluster<'_>) -> Result<()> {
        for uuid in st.datanodes.decommissioning() {
            let normal_nodes = st
                .datanodes
                .report()
                .iter()
                .filter(|i| i.state == pb::DatanodeState::Live as i32)
                .count();
            let mut done = true;
            for id in st.blocks.node_blocks(&uuid) {
                let Some(owner) = st.ns.block_owner(id)? else {
                    continue;
                };
                let Some(file) = st.ns.inode_holding(owner.inode, id)? else {
                    continue;
                };
                let want = (file.replication as usize).min(normal_nodes);
                let elsewhere = st
                    .blocks
                    .locations(id)
                    .iter()
                    .filter(|u| {
                        st.datanodes.admin_state(u) == AdminState::Normal
                            && st.datanodes.liveness(u) == Some(Liveness::Live)
                    })
                    .count();
                if elsewhere < want {
                    done = false;
                    self.check([id]);
                }
            }
            if done
                && st
                    .datanodes
                    .set_admin_state(&uuid, AdminState::Decommissioned)
                    .is_some()
            {
                tracing::info!(uuid = %uuid, "datanode decommissioned: every block it held is replicated elsewhere");
            }
        }
        Ok(())
    }

    fn check_block(
        &self,
        st: &Cluster<'_>,
        id: u64,
        now: Instant,
        stats: &mut RoundStats,
    ) -> Result<Outcome> {
        // Gone (or still being written) blocks count as neither.
        self.record(id, false, false);
        let Some(owner) = st.ns.block_owner(id)? else {
            return Ok(Outcome::Done);
        };
        let (inode_id, gs) = (owner.inode, owner.gs);
        let Some(file) = st.ns.inode_holding(inode_id, id)? else {
            return Ok(Outcome::Done);
        };
        let Some(rec) = file.blocks.iter().find(|b| b.id == id) else {
            return Ok(Outcome::Done);
        };
        // A block still being written is the writer's business.
        if !rec.committed {
            return Ok(Outcome::Done);
        }
        let target = file.replication as usize;
        // Every reachable replica can be copied from; only those on nodes in
        // normal service count toward the target (decommissioning ones go away).
        let all_holders: Vec<String> = st
            .blocks
            .locations(id)
            .into_iter()
            .filter(|u| matches!(st.datanodes.liveness(u), Some(Liveness::Live | Liveness::Stale)))
            .collect();
        let holders: Vec<String> = all_holders
            .iter()
            .filter(|u| st.datanodes.admin_state(u) == AdminState::Normal)
            .cloned()
            .collect();
        let pending: Vec<String> = self
            .pending
            .lock()
            .get(&id)
            .map(|p| p.targets.clone())
            .unwrap_or_default();
        let have = holders.len() + pending.len();
        let block = pb::ExtendedBlock {
            block_id: id,
            generation_stamp: gs,
            num_bytes: rec.num_bytes,
        };
        self.record(id, holders.len() < target, all_holders.is_empty());
        // Corrupt replicas go once enough good ones exist; the last copy of
        // a block is never deleted, even corrupt (a reader may still want
        // most of its bytes).
        let corrupt: Vec<String> = st
            .blocks
            .corrupt_replicas(id)
            .into_iter()
            .map(|(u, _)| u)
            .collect();
        if holders.len() >= target {
            for uuid in &corrupt {
                tracing::info!(block_id = id, dn = %uuid, "deleting a corrupt replica: enough good ones exist");
                st.blocks.invalidate_corrupt(uuid, id);
            }
        }
        if all_holders.is_empty() {
            stats.missing += 1;
            tracing::warn!(block_id = id, file = inode_id, "block has no live replica");
            return Ok(Outcome::Done);
        }
        if have < target {
            let max_streams = self.cfg.max_streams();
            let Some(source) = all_holders
                .iter()
                .filter(|u| st.datanodes.liveness(u) == Some(Liveness::Live))
                .min_by_key(|u| {
                    (
                        st.datanodes.admin_state(u) != AdminState::Normal,
                        self.queued_for(u),
                    )
                })
                .filter(|u| self.queued_for(u) < max_streams)
                .cloned()
            else {
                return Ok(Outcome::Retry);
            };
            let mut excluded = all_holders.clone();
            excluded.extend(pending.iter().cloned());
            // A node holding a corrupt replica cannot take a good one until
            // the corrupt one is gone.
            excluded.extend(corrupt.iter().cloned());
            let existing: Vec<pb::DatanodeInfo> =
                holders.iter().filter_map(|u| st.datanodes.info(u)).collect();
            let ctx = crate::placement::PlacementContext {
                writer_host: None,
                existing,
            };
            let targets = st.placement.choose(
                target - have,
                st.datanodes.writable(rec.num_bytes),
                &excluded,
                &ctx,
            );
            if targets.is_empty() {
                // No other node can take a copy (a small cluster): make room
                // on nodes holding a corrupt replica, as long as a good
                // replica remains elsewhere; the copy follows next round.
                for uuid in &corrupt {
                    tracing::info!(block_id = id, dn = %uuid, "deleting a corrupt replica to make room for a good copy");
                    st.blocks.invalidate_corrupt(uuid, id);
                }
                return Ok(Outcome::Retry);
            }
            let ids: Vec<pb::DatanodeId> = targets.iter().filter_map(|t| t.id.clone()).collect();
            let uuids: Vec<String> = ids.iter().map(|i| i.uuid.clone()).collect();
            tracing::info!(block_id = id, have, target, source = %source, targets = ?uuids, "scheduling re-replication");
            let cmd = pb::ReplicateCommand {
                block: Some(block),
                targets: ids,
                access_token: st.block_keys.token(&block, BlockAccess::Write),
                balancer_bandwidth: 0,
            };
            self.commands.lock().entry(source).or_default().push_back(cmd);
            let timeout = self.cfg.pending_timeout();
            let mut p = self.pending.lock();
            let entry = p.entry(id).or_insert_with(|| Pending {
                targets: Vec::new(),
                deadline: now + timeout,
            });
            entry.targets.extend(uuids);
            entry.deadline = now + timeout;
            stats.scheduled += 1;
        } else if holders.len() > target && pending.is_empty() {
            // Placement decides which go: keep rack spread, drop from the
            // fullest nodes; a balancer move's source first.
            let mut infos: Vec<pb::DatanodeInfo> =
                holders.iter().filter_map(|u| st.datanodes.info(u)).collect();
            let mut excess = Vec::new();
            if let Some((hint, _)) = self.excess_hints.lock().remove(&id)
                && let Some(at) = infos
                    .iter()
                    .position(|i| i.id.as_ref().is_some_and(|d| d.uuid == hint))
            {
                let racks = |l: &[pb::DatanodeInfo]| {
                    l.iter()
                        .filter_map(|i| i.id.as_ref().map(|d| d.rack.clone()))
                        .collect::<std::collections::HashSet<_>>()
                        .len()
                };
                let mut without = infos.clone();
                without.remove(at);
                if racks(&without) >= racks(&infos) {
                    excess.push(infos.remove(at));
                }
            }
            let more = holders.len() - target - excess.len();
            excess.extend(st.placement.choose_excess(infos, more));
            for uuid in excess.into_iter().filter_map(|i| i.id.map(|d| d.uuid)) {
                tracing::info!(block_id = id, dn = %uuid, target, "removing an excess replica");
                st.blocks.remove_replica(&uuid, id);
                st.blocks.invalidate(&uuid, block);
                stats.excess_removed += 1;
            }
        }
        Ok(Outcome::Done)
    }
}

enum Outcome {
    Done,
    Retry,
}
