//! Everything a running namenode holds, shared by its services.
//!
//! [`NamenodeState`] owns each subsystem; its fields are private. Services
//! reach a subsystem through the accessor of the same name, and work that
//! spans several subsystems (lease recovery, redundancy rounds, replica
//! checks) is a method here, so the subsystems themselves never need the
//! whole state: the redundancy monitor, for one, is handed a [`Cluster`]
//! view of the parts it reads.

use std::sync::Arc;
use std::time::Instant;

use crate::block_keys::BlockKeyManager;
use crate::block_manager::{BlockManager, ReplicaCheck};
use crate::block_recovery::{BlockFacts, BlockRecovery, Committing, Decision};
use crate::config::NamenodeConfig;
use crate::datanode_auth::DatanodeSessions;
use crate::datanode_manager::{DatanodeManager, Liveness};
use crate::error::{NnError, Result};
use crate::inode::BlockOwner;
use crate::lease::LeaseManager;
use crate::namespace::{Deferred, LastBlockFate, Namespace};
use crate::permission::Caller;
use crate::placement::{PlacementContext, PlacementPolicy, RackAwarePlacement};
use crate::redundancy::{Cluster, Redundancy, RoundStats};
use crate::rpc::mutation_queue::MutationQueue;
use crate::safe_mode::SafeMode;
use granary_common::block_token::BlockAccess;
use granary_common::daemon_auth::ClusterSecret;
use granary_proto as pb;

pub struct NamenodeState {
    config: NamenodeConfig,
    cluster_id: String,
    ns: Arc<Namespace>,
    /// This namenode's group, when it is one of several.
    ha: Option<Arc<crate::ha::Ha>>,
    blocks: BlockManager,
    datanodes: DatanodeManager,
    placement: Box<dyn PlacementPolicy>,
    started: Instant,
    /// Client calls served since start (gRPC, Hadoop IPC, WebHDFS).
    client_ops: std::sync::atomic::AtomicU64,
    /// Sign block access tokens; handed to authenticated datanodes. New at
    /// every start, so tokens die with the namenode that issued them.
    block_keys: BlockKeyManager,
    /// What datanodes prove they hold when registering.
    secret: ClusterSecret,
    /// Registered datanodes' sessions.
    sessions: Arc<DatanodeSessions>,
    /// The audit log, set once at start when configured (crate::audit).
    audit: std::sync::OnceLock<crate::audit::AuditLog>,
    /// Lease recovery of last blocks nobody finalized.
    recovery: BlockRecovery,
    redundancy: Redundancy,
    /// Balancer moves in flight and their totals.
    balancer: crate::balancer::Balancer,
    safe_mode: SafeMode,
    leases: LeaseManager,
    /// Runs RPC handlers' namespace mutations (see its module).
    mutations: MutationQueue,
}

/// Above this many blocks, forgetting deleted blocks is kept off the async
/// executor (about a microsecond each under the block map's lock).
const HEAVY_BLOCKS: usize = 1000;

/// What lease recovery did with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The file is closed (now, or it already was).
    Closed,
    /// The file is closed, but no holder has finalized its last block at the
    /// recovered length yet: readers would find no replica for a moment.
    Finalizing,
    /// Datanodes are still reporting what they hold; try again later.
    InProgress,
}

impl NamenodeState {
    /// `total_blocks` is `None` while the start-up scan is still counting.
    pub fn new(
        config: NamenodeConfig,
        cluster_id: String,
        ns: Arc<Namespace>,
        ha: Option<Arc<crate::ha::Ha>>,
        total_blocks: Option<u64>,
        secret: ClusterSecret,
    ) -> Arc<Self> {
        let datanodes = DatanodeManager::from_config(&config.datanodes);
        let leases = LeaseManager::from_config(&config.leases);
        let safe_mode = SafeMode::from_config(total_blocks, &config.safemode);
        let block_keys = BlockKeyManager::from_config(&config.block_tokens);
        let redundancy = Redundancy::new(config.redundancy.clone());
        let blocks = BlockManager::default();
        // A group member sends deletions only once it leads.
        blocks.set_deleting(ha.is_none());
        Arc::new(Self {
            config,
            cluster_id,
            ns,
            ha,
            blocks,
            datanodes,
            placement: Box::new(RackAwarePlacement),
            started: Instant::now(),
            client_ops: Default::default(),
            block_keys,
            secret,
            sessions: Default::default(),
            audit: Default::default(),
            recovery: Default::default(),
            redundancy,
            balancer: Default::default(),
            safe_mode,
            leases,
            mutations: MutationQueue::start(),
        })
    }

    /// The configuration the namenode was started with.
    pub fn config(&self) -> &NamenodeConfig {
        &self.config
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// When this namenode started.
    /// The audit log (off unless `[audit] file` is set).
    pub fn audit(&self) -> &crate::audit::AuditLog {
        static OFF: std::sync::OnceLock<crate::audit::AuditLog> = std::sync::OnceLock::new();
        self.audit
            .get()
            .unwrap_or_else(|| OFF.get_or_init(crate::audit::AuditLog::off))
    }

    /// Installs the audit log (once, at start).
    pub fn set_audit(&self, log: crate::audit::AuditLog) {
        let _ = self.audit.set(log);
    }

    /// `https` when the cluster's HTTP ports use TLS, else `http` (the
    /// scheme of the URLs WebHDFS redirects to).
    pub fn http_scheme(&self) -> &'static str {
        if self.config().tls.enabled() {
            "https"
        } else {
            "http"
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Counts one client call (the web UI charts their rate).
    pub fn note_client_op(&self) {
        self.client_ops.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Client calls served since start.
    pub fn client_ops(&self) -> u64 {
        self.client_ops.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Directories, files and their blocks (RocksDB).
    pub fn ns(&self) -> &Namespace {
        &self.ns
    }

    /// Where each block's replicas are, as datanodes report them.
    /// This namenode's group, when it is one of several.
    pub fn ha(&self) -> Option<&Arc<crate::ha::Ha>> {
        self.ha.as_ref()
    }

    /// Whether this namenode serves clients and commands datanodes: it
    /// runs alone, or leads its group.
    pub fn is_active(&self) -> bool {
        self.ha.as_ref().is_none_or(|h| h.is_leader())
    }

    /// Fails with a Standby error naming the leader unless [`Self::is_active`].
    pub fn check_active(&self) -> Result<()> {
        match &self.ha {
            Some(h) => h.check_leader(),
            None => Ok(()),
        }
    }

    /// The Raft term (0 for a namenode that runs alone).
    pub fn term(&self) -> u64 {
        self.ha.as_ref().map_or(0, |h| h.term())
    }

    pub fn blocks(&self) -> &BlockManager {
        &self.blocks
    }

    /// Registered datanodes and their liveness.
    pub fn datanodes(&self) -> &DatanodeManager {
        &self.datanodes
    }

    pub fn block_keys(&self) -> &BlockKeyManager {
        &self.block_keys
    }

    /// What datanodes prove they hold when registering.
    pub fn secret(&self) -> &ClusterSecret {
        &self.secret
    }

    /// Registered datanodes' sessions (shared with the RPC auth layer).
    pub fn sessions(&self) -> &Arc<DatanodeSessions> {
        &self.sessions
    }

    pub fn recovery(&self) -> &BlockRecovery {
        &self.recovery
    }

    pub fn redundancy(&self) -> &Redundancy {
        &self.redundancy
    }

    pub fn safe_mode(&self) -> &SafeMode {
        &self.safe_mode
    }

    pub fn leases(&self) -> &LeaseManager {
        &self.leases
    }

    pub fn mutations(&self) -> &MutationQueue {
        &self.mutations
    }

    /// What the redundancy monitor reads and changes besides its own queues.
    fn cluster(&self) -> Cluster<'_> {
        Cluster {
            ns: &self.ns,
            blocks: &self.blocks,
            datanodes: &self.datanodes,
            placement: self.placement.as_ref(),
            block_keys: &self.block_keys,
        }
    }

    /// Datanode `uuid` stopped heartbeating: its session ends (it must
    /// prove itself again), its replicas are forgotten and their blocks
    /// checked for re-replication.
    pub fn declare_dead(&self, uuid: &str) {
        self.datanodes.declare_dead(uuid);
        self.sessions.close(uuid);
        let held = self.blocks.remove_node(uuid);
        tracing::warn!(uuid = %uuid, replicas = held.len(), "datanode dead; its replicas are forgotten");
        self.redundancy.check(held);
    }

    /// One redundancy monitor round; with `full_scan`, every block of the
    /// namespace is queued first. Nothing is done in safe mode: replica
    /// counts mean little until datanodes have reported.
    pub fn redundancy_round(&self, full_scan: bool) -> Result<RoundStats> {
        if full_scan {
            let mut all = Vec::new();
            self.ns.for_each_block(|id, _, _| all.push(id))?;
            self.redundancy.check(all);
        }
        if self.safe_mode.is_on() {
            return Ok(RoundStats::default());
        }
        self.redundancy.run_round(&self.cluster())
    }

    pub fn balancer(&self) -> &crate::balancer::Balancer {
        &self.balancer
    }

    /// One balancer round (see `crate::balancer`). Refused in safe mode:
    /// replica counts mean little until datanodes have reported.
    pub fn balance_round(
        &self,
        opts: &crate::balancer::BalanceOptions,
    ) -> Result<crate::balancer::BalanceRound> {
        if self.safe_mode.is_on() {
            return Err(NnError::SafeMode(
                "cannot balance: the namenode is in safe mode".into(),
            ));
        }
        let cfg = &self.config.balancer;
        self.balancer.round(
            &self.cluster(),
            &self.redundancy,
            opts,
            cfg.max_moves_per_node as usize,
            std::time::Duration::from_millis(cfg.move_timeout_ms.max(1000)),
        )
    }

    /// Replica holders of a block as clients see them; live nodes first.
    /// When every replica is corrupt they are all given, marked corrupt (as
    /// HDFS does: a reader may still want most of the bytes).
    pub fn located(&self, offset: u64, block: pb::ExtendedBlock, user: &str) -> pb::LocatedBlock {
        let live = |uuids: Vec<String>| -> Vec<pb::DatanodeInfo> {
            let mut l: Vec<_> = uuids
                .iter()
                .filter_map(|u| self.datanodes.info(u))
                .filter(|i| i.state != pb::DatanodeState::Dead as i32)
                .collect();
            l.sort_by_key(|i| (i.state, i.xceiver_count));
            l
        };
        let mut locations = live(self.blocks.locations(block.block_id));
        let mut corrupt = false;
        if locations.is_empty() {
            let bad: Vec<String> = self
                .blocks
                .corrupt_replicas(block.block_id)
                .into_iter()
                .map(|(u, _)| u)
                .collect();
            corrupt = !bad.is_empty();
            locations = live(bad);
        }
        let access_token = self.token(&block, BlockAccess::Read, user);
        pb::LocatedBlock {
            block: Some(block),
            offset,
            locations,
            corrupt,
            access_token,
        }
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

    /// Closes file `inode` whose writer is gone (lease recovery). A last
    /// block with finalized replicas keeps their length; one whose replicas
    /// are all still being written is recovered with the datanodes first
    /// ([`BlockRecovery`]): committed at the length every surviving replica
    /// holds, under a new generation stamp. Only a block no datanode holds
    /// any byte of is dropped.
    ///
    /// One caller at a time per file ([`Turn`](crate::block_recovery::Turn)):
    /// another caller meanwhile hears "in progress" and the holder goes again.
    ///
    /// Its writes go into `call`, to be durable before anyone is told.
    pub fn recover_file(self: &Arc<Self>, call: &mut Deferred, inode: u64) -> Result<Recovery> {
        let Some(mut turn) = self.recovery.take_turn(inode) else {
            return Ok(Recovery::InProgress);
        };
        loop {
            let outcome = self.recover_file_in_turn(call, inode)?;
            if !turn.go_again() {
                return Ok(outcome);
            }
        }
    }

    fn recover_file_in_turn(self: &Arc<Self>, call: &mut Deferred, inode: u64) -> Result<Recovery> {
        let Some(file) = self.ns.get_inode(inode)? else {
            return Ok(Recovery::Closed);
        };
        if file.under_construction.is_none() {
            // Closed by a recovery: done once a holder finalized the last
            // block (readers can read it), or none of them is alive to.
            if let Some((block, holders)) = self.recovery.awaiting(inode) {
                let alive = holders
                    .iter()
                    .any(|u| matches!(self.datanodes.liveness(u), Some(Liveness::Live | Liveness::Stale)));
                if self.blocks.replica_count(block) == 0 && alive {
                    self.recovery.resend_commit(inode);
                    return Ok(Recovery::Finalizing);
                }
                self.recovery.committed(block);
            }
            return Ok(Recovery::Closed);
        }
        let fate = match file.blocks.last().filter(|b| !b.committed) {
            None => None,
            Some(last) => match self.blocks.reported_length(last.id) {
                Some(len) => Some(LastBlockFate::Commit {
                    length: len,
                    new_gs: false,
                }),
                None => {
                    let alive = |u: &str| {
                        matches!(self.datanodes.liveness(u), Some(Liveness::Live | Liveness::Stale))
                            && self.datanodes.is_registered(u)
                    };
                    let all_live: Vec<String> = self
                        .datanodes
                        .report()
                        .iter()
                        .filter(|d| d.state != pb::DatanodeState::Dead as i32)
                        .filter_map(|d| d.id.as_ref().map(|i| i.uuid.clone()))
                        .collect();
                    let facts = BlockFacts {
                        block: last.to_extended(),
                        being_written: self.blocks.being_written(last.id),
                        targets: last.targets.clone(),
                        all_live,
                        alive: &alive,
                        settled: self.started.elapsed() >= self.config.datanodes.dead_after(),
                    };
                    match self.recovery.decide(inode, &facts) {
                        Decision::Wait => {
                            tracing::info!(
                                inode,
                                block_id = last.id,
                                "lease recovery waits for datanodes to report the last block"
                            );
                            return Ok(Recovery::InProgress);
                        }
                        Decision::Drop => Some(LastBlockFate::Drop),
                        Decision::Commit { length, holders } => {
                            let fate = LastBlockFate::Commit { length, new_gs: true };
                            return self.close_recovered(call, inode, Some(fate), holders);
                        }
                    }
                }
            },
        };
        self.close_recovered(call, inode, fate, Vec::new())
    }

    /// Closes a recovered file in the namespace and tells the holders of a
    /// restamped last block to finalize their replicas at its length.
    fn close_recovered(
        self: &Arc<Self>,
        call: &mut Deferred,
        inode: u64,
        fate: Option<LastBlockFate>,
        holders: Vec<(String, pb::ExtendedBlock)>,
    ) -> Result<Recovery> {
        let Some(rec) = call.take(self.ns.recover_file(inode, fate)?) else {
            return Ok(Recovery::Closed);
        };
        self.leases.remove(&rec.holder, inode);
        let finalizing = match &rec.committed {
            Some(b) => {
                self.recovery.finish(b.id);
                self.blocks.written(b.id);
                if holders.is_empty() {
                    false
                } else {
                    // Told only once the new stamp and length are durable: a
                    // crash before must not leave replicas the namespace disowns.
                    let c = Committing::new(b.id, b.generation_stamp, b.num_bytes, holders);
                    let st = self.clone();
                    call.after(false, move || st.recovery.committing(inode, c));
                    self.blocks.replica_count(b.id) == 0
                }
            }
            None => false,
        };
        let dropped: Vec<pb::ExtendedBlock> = rec
            .dropped
            .iter()
            .map(crate::inode::BlockRecord::to_extended)
            .collect();
        for b in &dropped {
            self.recovery.finish(b.block_id);
        }
        let n_dropped = dropped.len();
        self.remove_deleted(call, dropped);
        if let Some(file) = self.ns.get_inode(inode)? {
            self.check_redundancy_when_durable(call, &file);
            tracing::info!(inode, holder = %rec.holder, length = file.length(), dropped = n_dropped, "lease recovered; file closed");
        }
        // Not done for the caller until a holder has finalized the block.
        Ok(if finalizing {
            Recovery::Finalizing
        } else {
            Recovery::Closed
        })
    }

    /// Forgets the blocks of deleted files and queues their replicas for
    /// deletion once the deletion is durable (with the rest of `call`).
    /// Blocks a snapshot still holds keep their `blocks` entry and stay.
    pub fn remove_deleted(self: &Arc<Self>, call: &mut Deferred, mut blocks: Vec<pb::ExtendedBlock>) {
        if self.ns.snap_state().any() {
            blocks.retain(|b| matches!(self.ns.block_owner(b.block_id), Ok(None)));
        }
        if blocks.is_empty() {
            return;
        }
        for b in &blocks {
            self.recovery.finish(b.block_id);
            self.recovery.committed(b.block_id);
        }
        let st = self.clone();
        call.after(blocks.len() > HEAVY_BLOCKS, move || {
            st.blocks.remove_blocks(&blocks)
        });
    }

    /// Queues `file`'s blocks for the redundancy monitor once `call`'s
    /// change to the file is durable: after lowering its replication, the
    /// monitor deletes replicas, which a crash must not be able to undo.
    pub fn check_redundancy_when_durable(self: &Arc<Self>, call: &mut Deferred, file: &crate::inode::Inode) {
        let st = self.clone();
        let blocks: Vec<u64> = file.blocks.iter().map(|b| b.id).collect();
        call.after(false, move || st.redundancy.check(blocks));
    }

    /// Before `caller`'s client `client` opens `path` for writing, by create
    /// (or append, `append`): recovers an open file there whose writer's
    /// lease passed the soft limit; a fresh lease is a conflict. Only after
    /// the caller passed the checks the create or append makes, and only
    /// for a client name that is not another user's.
    pub fn take_over(
        self: &Arc<Self>,
        call: &mut Deferred,
        caller: &Caller,
        path: &str,
        client: &str,
        append: bool,
        overwrite: bool,
    ) -> Result<()> {
        self.leases.check_holder(client, caller)?;
        let Some(file) = self.ns.open_file_to_take_over(caller, path, append, overwrite)? else {
            return Ok(());
        };
        let Some(uc) = &file.under_construction else {
            return Ok(());
        };
        if uc.client_name == client || self.leases.is_fresh(&uc.client_name) {
            return Err(caller.lease_conflict(&file, path));
        }
        match self.recover_file(call, file.id)? {
            // Closed in the namespace: the file can be taken over.
            Recovery::Closed | Recovery::Finalizing => Ok(()),
            Recovery::InProgress => Err(NnError::RecoveryInProgress(path.to_string())),
        }
    }

    /// A datanode reported on a block whose file is being recovered: go on
    /// with the recovery now rather than at the next recoverLease call.
    pub fn advance_recovery(self: &Arc<Self>, call: &mut Deferred, block_id: u64) {
        if let Some(inode) = self.recovery.file_of(block_id)
            && let Err(e) = self.recover_file(call, inode)
        {
            tracing::warn!(inode, block_id, error = %e, "lease recovery failed");
        }
    }

    /// Fails when file `file_id` (or `path`, for callers naming no id) is
    /// being recovered: its former writer may not add to it.
    pub fn check_not_recovering(&self, path: &str, file_id: u64) -> Result<()> {
        let id = if file_id != 0 {
            file_id
        } else {
            match self.ns.resolve(path).ok().and_then(|r| r.last().map(|f| f.id)) {
                Some(id) => id,
                None => return Ok(()),
            }
        };
        if self.recovery.is_recovering(id) {
            return Err(NnError::RecoveryInProgress(path.to_string()));
        }
        Ok(())
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
            .count_with_at_least(self.config.namespace.min_replication as usize);
        if self.safe_mode.update(reported) {
            tracing::info!(reported, "leaving safe mode: enough blocks reported");
        }
    }

    pub fn token(&self, block: &pb::ExtendedBlock, access: BlockAccess, user: &str) -> Vec<u8> {
        self.block_keys.token_for(block, access, user)
    }

    /// A replica found corrupt on `uuid`: no longer live, kept until enough
    /// good replicas exist elsewhere (never deleted while it is the last).
    pub fn mark_corrupt(&self, uuid: &str, b: pb::ExtendedBlock) {
        self.blocks.mark_corrupt(uuid, b);
        self.redundancy.note_corrupt();
        self.redundancy.check([b.block_id]);
    }

    /// A replica being written (or left by its writer) reported by `uuid`:
    /// kept for lease recovery while its block is being written; finalized
    /// at the committed length when the block was committed meanwhile;
    /// deleted when stale, unless it may be the block's last bytes.
    pub fn note_being_written(self: &Arc<Self>, uuid: &str, b: pb::ExtendedBlock) -> Result<()> {
        let has_good = self.blocks.replica_count(b.block_id) > 0;
        match self.ns.block_owner(b.block_id)? {
            None => self.blocks.invalidate(uuid, b),
            Some(o) if b.generation_stamp < o.gs => match o.committed_len {
                _ if has_good => self.blocks.invalidate(uuid, b),
                // Committed (by a recovery whose finalize command was lost,
                // say) with no replica anywhere: its bytes are the same
                // stream's, so finalize this one at the committed length.
                Some(len) if b.num_bytes >= len => self.recovery.send(
                    uuid,
                    pb::datanode_command::Command::CommitReplica(pb::CommitReplicaCommand {
                        block: Some(b),
                        new_generation_stamp: o.gs,
                        length: len,
                    }),
                ),
                _ => self.blocks.note_being_written(uuid, b),
            },
            Some(o) if b.generation_stamp > o.gs => {
                tracing::warn!(block_id = b.block_id, dn = %uuid, gs = b.generation_stamp, namespace_gs = o.gs, "replica being written is newer than the namespace knows; kept");
                self.blocks.note_being_written(uuid, b);
            }
            Some(o) => match o.committed_len {
                None => self.blocks.note_being_written(uuid, b),
                Some(len) if b.num_bytes >= len => {
                    // Committed while this replica was still being written: finalize it there.
                    self.recovery.send(
                        uuid,
                        pb::datanode_command::Command::CommitReplica(pb::CommitReplicaCommand {
                            block: Some(b),
                            new_generation_stamp: o.gs,
                            length: len,
                        }),
                    );
                }
                Some(_) if has_good => self.blocks.invalidate(uuid, b),
                Some(_) => self.mark_corrupt(uuid, b),
            },
        }
        Ok(())
    }

    /// How a reported replica compares with what the namespace expects.
    pub fn check_replica(&self, b: &pb::ExtendedBlock) -> Result<ReplicaCheck> {
        Ok(self.as_follower(replica_check(b, self.ns.block_owner(b.block_id)?)))
    }

    /// [`NamenodeState::check_replica`] for every block of a full report.
    pub fn check_replicas(&self, blocks: &[pb::ExtendedBlock]) -> Result<Vec<ReplicaCheck>> {
        let ids: Vec<u64> = blocks.iter().map(|b| b.block_id).collect();
        let owners = self.ns.block_owners(&ids)?;
        Ok(blocks
            .iter()
            .zip(owners)
            .map(|(b, owner)| self.as_follower(replica_check(b, owner)))
            .collect())
    }

    /// A follower of a namenode group judges replicas against a namespace
    /// that may lag the leader's (a block the leader just allocated, a
    /// generation stamp it just bumped, a snapshot not yet installed): it
    /// records where every reported replica is, so that as the next leader
    /// it can serve reads at once, and decides nothing against one.
    fn as_follower(&self, check: ReplicaCheck) -> ReplicaCheck {
        match check {
            ReplicaCheck::Invalid | ReplicaCheck::WrongLength { .. } if !self.is_active() => {
                ReplicaCheck::Valid
            }
            c => c,
        }
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
        if (chosen.len() as u32) < self.config.namespace.min_replication {
            // Counted only here: addBlock is a hot path, this is its error case.
            let total = self.datanodes.report().len();
            return Err(NnError::NotEnoughReplicas(format!(
                "could only be written to {} of the {} minReplication nodes: {total} datanode(s) known, {} excluded",
                chosen.len(),
                self.config.namespace.min_replication,
                excluded.len()
            )));
        }
        Ok(chosen)
    }

    /// Up to `count` datanodes to add to a pipeline that still has
    /// `existing` (rpc addrs or uuids), none of them `excluded`, placed
    /// beside the existing ones by the same rules as a new block's. The
    /// existing nodes come first, in the order given; fewer new ones when
    /// fewer are eligible (the writer decides whether that is enough, as
    /// HDFS's does).
    pub fn additional_targets(
        &self,
        block_size: u64,
        existing: &[String],
        excluded: &[String],
        count: usize,
        writer_host: Option<String>,
    ) -> Result<Vec<pb::DatanodeInfo>> {
        let mut nodes = Vec::with_capacity(existing.len() + count);
        for e in existing {
            let info = self
                .datanodes
                .uuid_of(e)
                .and_then(|u| self.datanodes.info(&u))
                .ok_or_else(|| {
                    NnError::InvalidArgument(format!("pipeline node {e} is not a known datanode"))
                })?;
            nodes.push(info);
        }
        let mut skip: Vec<String> = excluded.to_vec();
        skip.extend(existing.iter().cloned());
        let ctx = PlacementContext {
            writer_host,
            existing: nodes.clone(),
        };
        let chosen = self
            .placement
            .choose(count, self.datanodes.writable(block_size), &skip, &ctx);
        nodes.extend(chosen);
        Ok(nodes)
    }
}

/// A reported finalized replica is valid when its block belongs to a file
/// at the generation stamp reported and, once the block is committed, has
/// exactly its committed length.
fn replica_check(b: &pb::ExtendedBlock, owner: Option<BlockOwner>) -> ReplicaCheck {
    match owner {
        Some(o) if o.gs == b.generation_stamp => match o.committed_len {
            Some(len) if len != b.num_bytes => ReplicaCheck::WrongLength { committed: len },
            _ => ReplicaCheck::Valid,
        },
        Some(o) if o.committed_len.is_none() && b.generation_stamp < o.gs => ReplicaCheck::OlderWhileWriting,
        _ => ReplicaCheck::Invalid,
    }
}
