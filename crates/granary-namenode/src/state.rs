//! Everything a running namenode holds, shared by its services.

use std::sync::Arc;
use std::time::Instant;

use crate::block_manager::{BlockManager, ReplicaCheck};
use crate::config::NamenodeConfig;
use crate::datanode_manager::DatanodeManager;
use crate::error::{NnError, Result};
use crate::namespace::Namespace;
use crate::placement::{PlacementContext, PlacementPolicy, RackAwarePlacement};
use granary_common::block_token::{self, BlockAccess};
use granary_proto as pb;

pub struct NamenodeState {
    pub config: NamenodeConfig,
    pub cluster_id: String,
    pub ns: Namespace,
    pub blocks: BlockManager,
    pub datanodes: DatanodeManager,
    pub placement: Box<dyn PlacementPolicy>,
    pub started: Instant,
    /// Signs block access tokens; handed to datanodes at registration. New at
    /// every start, so tokens die with the namenode that issued them.
    pub block_key: Vec<u8>,
    pub redundancy: crate::redundancy::Redundancy,
    pub safe_mode: crate::safe_mode::SafeMode,
    pub leases: crate::lease::LeaseManager,
    /// Runs RPC handlers' namespace mutations (see its module).
    pub mutations: crate::rpc::mutation_queue::MutationQueue,
}

/// Above this many blocks, forgetting deleted blocks is kept off the async
/// executor (about a microsecond each under the block map's lock).
const HEAVY_BLOCKS: usize = 1000;

/// How long a block access token is valid (HDFS: 600 minutes).
pub const TOKEN_LIFETIME_MS: i64 = 10 * 60 * 60 * 1000;

impl NamenodeState {
    /// `total_blocks` is `None` while the start-up scan is still counting.
    pub fn new(
        config: NamenodeConfig,
        cluster_id: String,
        ns: Namespace,
        total_blocks: Option<u64>,
    ) -> Arc<Self> {
        let datanodes = DatanodeManager::new(config.stale_after(), config.dead_after());
        let leases = crate::lease::LeaseManager::new(
            std::time::Duration::from_millis(config.lease_soft_limit_ms),
            std::time::Duration::from_millis(config.lease_hard_limit_ms),
        );
        let safe_mode = crate::safe_mode::SafeMode::new(
            total_blocks,
            config.safemode_threshold,
            std::time::Duration::from_millis(config.safemode_extension_ms),
        );
        Arc::new(Self {
            config,
            cluster_id,
            ns,
            blocks: BlockManager::default(),
            datanodes,
            placement: Box::new(RackAwarePlacement),
            started: Instant::now(),
            block_key: granary_common::block_token::new_key(),
            redundancy: Default::default(),
            safe_mode,
            leases,
            mutations: crate::rpc::mutation_queue::MutationQueue::start(),
        })
    }

    /// Replica holders of a block as clients see them; live nodes first.
    pub fn located(&self, offset: u64, block: pb::ExtendedBlock) -> pb::LocatedBlock {
        let mut locations: Vec<_> = self
            .blocks
            .locations(block.block_id)
            .iter()
            .filter_map(|u| self.datanodes.info(u))
            .filter(|i| i.state != pb::DatanodeState::Dead as i32)
            .collect();
        locations.sort_by_key(|i| (i.state, i.xceiver_count));
        let access_token = self.token(&block, BlockAccess::Read);
        pb::LocatedBlock {
            block: Some(block),
            offset,
            locations,
            corrupt: false,
            access_token,
        }
    }

    /// A consistent copy of the metadata in `dir` (new, absolute): the
    /// VERSION file and a RocksDB checkpoint of the namespace, which a
    /// namenode can start from as its data dir. Returns the bytes written.
    pub fn checkpoint(&self, dir: &std::path::Path) -> Result<u64> {
        let bad = |m: String| NnError::InvalidArgument(m);
        if !dir.is_absolute() {
            return Err(bad(format!(
                "checkpoint dir {} must be an absolute path",
                dir.display()
            )));
        }
        if dir.exists() {
            return Err(NnError::AlreadyExists(dir.display().to_string()));
        }
        let io = |e: std::io::Error| bad(format!("checkpoint dir {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let ns_dir = crate::layout::namespace_dir(dir);
        rocksdb::checkpoint::Checkpoint::new(self.ns.db())
            .and_then(|c| c.create_checkpoint(&ns_dir))
            .map_err(|e| NnError::Internal(format!("rocksdb checkpoint: {e}")))?;
        // VERSION last: a directory with it is a complete checkpoint.
        std::fs::copy(self.config.data_dir.join("VERSION"), dir.join("VERSION")).map_err(io)?;
        let mut bytes = 0;
        for e in std::fs::read_dir(&ns_dir).map_err(io)?.flatten() {
            bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
        Ok(bytes)
    }

    /// Block health for reports, metrics and the web UI.
    pub fn health(&self) -> pb::ClusterHealth {
        let (under_replicated, missing) = self.redundancy.health();
        pb::ClusterHealth {
            blocks_total: self.blocks.block_count() as u64,
            under_replicated,
            missing,
            corrupt_replicas: self.redundancy.corrupt_replicas(),
            pending_replications: self.redundancy.pending() as u64,
            safe_mode: self.safe_mode.is_on(),
        }
    }

    /// Closes file `inode` whose writer is gone (lease recovery): keeps the
    /// last block at the length its replicas report, or drops it.
    pub fn recover_file(self: &Arc<Self>, inode: u64) -> Result<bool> {
        let Some((holder, dropped)) = self
            .ns
            .recover_file(inode, |b| self.blocks.reported_length(b.id))?
        else {
            return Ok(false);
        };
        self.leases.remove(&holder, inode);
        let dropped: Vec<pb::ExtendedBlock> = dropped
            .iter()
            .map(crate::inode::BlockRecord::to_extended)
            .collect();
        let n_dropped = dropped.len();
        self.remove_deleted(dropped);
        if let Some(file) = self.ns.get_inode(inode)? {
            self.check_redundancy_when_durable(&file);
            tracing::info!(inode, holder = %holder, length = file.length(), dropped = n_dropped, "lease recovered; file closed");
        }
        Ok(true)
    }

    /// Forgets the blocks of deleted files and queues their replicas for
    /// deletion, once the deletion is durable
    /// ([`Namespace::after_durable`](crate::namespace::Namespace::after_durable)).
    pub fn remove_deleted(self: &Arc<Self>, blocks: Vec<pb::ExtendedBlock>) {
        if blocks.is_empty() {
            return;
        }
        let st = self.clone();
        self.ns.after_durable(blocks.len() > HEAVY_BLOCKS, move || {
            st.blocks.remove_blocks(&blocks)
        });
    }

    /// Queues `file`'s blocks for the redundancy monitor once this thread's
    /// change to the file is durable: after lowering its replication, the
    /// monitor deletes replicas, which a crash must not be able to undo.
    pub fn check_redundancy_when_durable(self: &Arc<Self>, file: &crate::inode::Inode) {
        let st = self.clone();
        let blocks: Vec<u64> = file.blocks.iter().map(|b| b.id).collect();
        self.ns.after_durable(false, move || st.redundancy.check(blocks));
    }

    /// Before another client takes over `path`: recovers it if its writer's
    /// lease passed the soft limit; a fresh lease is a conflict.
    pub fn take_over(self: &Arc<Self>, path: &str, client: &str) -> Result<()> {
        let Ok(r) = self.ns.resolve(path) else {
            return Ok(());
        };
        let Some(file) = r.last() else { return Ok(()) };
        let Some(uc) = &file.under_construction else {
            return Ok(());
        };
        if uc.client_name == client || self.leases.is_fresh(&uc.client_name) {
            return Err(NnError::LeaseConflict {
                path: path.to_string(),
                holder: uc.client_name.clone(),
            });
        }
        self.recover_file(file.id).map(|_| ())
    }

    /// Fails while the namenode is in safe mode.
    pub fn check_writable(&self) -> Result<()> {
        if self.safe_mode.is_on() {
            return Err(NnError::SafeMode(self.safe_mode.status()));
        }
        Ok(())
    }

    /// Recounts reported blocks; may end automatic safe mode.
    pub fn update_safe_mode(&self) {
        if !self.safe_mode.is_on() {
            return;
        }
        let reported = self
            .blocks
            .count_with_at_least(self.config.min_replication as usize);
        if self.safe_mode.update(reported) {
            tracing::info!(reported, "leaving safe mode: enough blocks reported");
        }
    }

    pub fn token(&self, block: &pb::ExtendedBlock, access: BlockAccess) -> Vec<u8> {
        block_token::issue(
            &self.block_key,
            block.block_id,
            block.generation_stamp,
            access,
            crate::inode::now_ms() + TOKEN_LIFETIME_MS,
        )
    }

    /// How a reported replica compares with what the namespace expects.
    pub fn check_replica(&self, b: &pb::ExtendedBlock) -> Result<ReplicaCheck> {
        Ok(replica_check(b, self.ns.block_owner(b.block_id)?))
    }

    /// [`NamenodeState::check_replica`] for every block of a full report.
    pub fn check_replicas(&self, blocks: &[pb::ExtendedBlock]) -> Result<Vec<ReplicaCheck>> {
        let ids: Vec<u64> = blocks.iter().map(|b| b.block_id).collect();
        let owners = self.ns.block_owners(&ids)?;
        Ok(blocks
            .iter()
            .zip(owners)
            .map(|(b, owner)| replica_check(b, owner))
            .collect())
    }

    /// Targets for a new block of a file with `replication` copies.
    pub fn choose_targets(
        &self,
        replication: u32,
        block_size: u64,
        excluded: &[String],
        writer_host: Option<String>,
    ) -> Result<Vec<pb::DatanodeInfo>> {
        let candidates = self.datanodes.writable(block_size);
        let ctx = PlacementContext {
            writer_host,
            existing: Vec::new(),
        };
        let chosen = self
            .placement
            .choose(replication as usize, candidates, excluded, &ctx);
        if (chosen.len() as u32) < self.config.min_replication {
            // Counted only here: addBlock is a hot path, this is its error case.
            let total = self.datanodes.report().len();
            return Err(NnError::NotEnoughReplicas(format!(
                "could only be written to {} of the {} minReplication nodes: {total} datanode(s) known, {} excluded",
                chosen.len(),
                self.config.min_replication,
                excluded.len()
            )));
        }
        Ok(chosen)
    }
}

/// A reported replica is valid when its block belongs to a file
/// (`owner`: inode, generation stamp) at the generation stamp reported.
fn replica_check(b: &pb::ExtendedBlock, owner: Option<(u64, u64)>) -> ReplicaCheck {
    match owner {
        Some((_, gs)) if gs == b.generation_stamp => ReplicaCheck::Valid,
        _ => ReplicaCheck::Invalid,
    }
}
