//! What the datanode's services and its namenode actor share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::RwLock;
use tokio::sync::mpsc;

use crate::storage::Storage;
use granary_proto as pb;

/// A change to report to the namenode promptly (incremental block report).
#[derive(Debug, Clone)]
pub enum ReplicaEvent {
    Received(pb::ExtendedBlock),
    Deleted(pb::ExtendedBlock),
    /// A replica set aside for recovery, with the length its checksums cover.
    Waiting(pb::ExtendedBlock),
    /// Lease recovery asked for a block this node does not hold.
    NotHeld(u64),
    /// A replica found damaged (block scanner, a verify command).
    Corrupt(pb::ExtendedBlock, String),
    /// A replica a verify command found intact.
    Verified(pb::ExtendedBlock),
}

pub struct DatanodeContext {
    pub storage: Arc<Storage>,
    pub id: pb::DatanodeId,
    /// Block token keys from the namenode; empty until registered.
    pub block_keys: RwLock<granary_common::block_token::BlockKeys>,
    /// The session the namenode gave at registration, sent on every call.
    pub session: RwLock<String>,
    /// Write pipelines in progress, by block: lease recovery stops them.
    pub active_writes:
        parking_lot::Mutex<std::collections::HashMap<u64, (u64, tokio_util::sync::CancellationToken)>>,
    /// At most this many write pipelines and block reads at once.
    pub max_transfers: u32,
    /// Replica verifications (a reader reported corruption) run one at a time.
    pub verify_turn: parking_lot::Mutex<()>,
    pub cluster_id: RwLock<String>,
    pub events: mpsc::UnboundedSender<ReplicaEvent>,
    xceivers: AtomicU32,
    pub metrics: Arc<crate::metrics::DatanodeMetrics>,
    /// Replicas whose writer vanished mid-block, kept for pipeline recovery.
    pub recoverable: parking_lot::Mutex<
        std::collections::HashMap<u64, (crate::storage::ReplicaWriter, std::time::Instant)>,
    >,
    /// How long to wait for the next node of a write pipeline to answer.
    pub socket_timeout: std::time::Duration,
}

impl DatanodeContext {
    pub fn new(
        storage: Arc<Storage>,
        id: pb::DatanodeId,
        cluster_id: String,
        events: mpsc::UnboundedSender<ReplicaEvent>,
        socket_timeout: std::time::Duration,
        max_transfers: u32,
    ) -> Arc<Self> {
        Arc::new(Self {
            storage,
            id,
            block_keys: RwLock::new(Default::default()),
            session: RwLock::new(String::new()),
            active_writes: Default::default(),
            max_transfers,
            verify_turn: Default::default(),
            cluster_id: RwLock::new(cluster_id),
            events,
            xceivers: AtomicU32::new(0),
            metrics: crate::metrics::DatanodeMetrics::new(),
            recoverable: Default::default(),
            socket_timeout,
        })
    }

    pub fn report(&self, e: ReplicaEvent) {
        // The actor outlives every sender during a run; a send can only fail at shutdown.
        let _ = self.events.send(e);
    }

    /// Sets a half-written replica aside for a later pipeline recovery, and
    /// tells the namenode it holds it (lease recovery may need its bytes).
    pub fn keep_for_recovery(&self, w: crate::storage::ReplicaWriter) {
        self.report(ReplicaEvent::Waiting(pb::ExtendedBlock {
            block_id: w.block_id,
            generation_stamp: w.gs,
            num_bytes: w.written(),
        }));
        self.recoverable
            .lock()
            .insert(w.block_id, (w, std::time::Instant::now()));
    }

    /// Half-written replicas no pipeline recovery took within `max_age`
    /// close their files and wait on disk for the namenode's lease recovery
    /// (which finalizes or invalidates them); their bytes may be synced data.
    pub fn sweep_recoverable(&self, max_age: std::time::Duration) {
        let mut m = self.recoverable.lock();
        let old: Vec<u64> = m
            .iter()
            .filter(|(_, (_, t))| t.elapsed() >= max_age)
            .map(|(id, _)| *id)
            .collect();
        for id in old {
            if let Some((w, _)) = m.remove(&id) {
                tracing::info!(
                    block_id = id,
                    bytes = w.written(),
                    "half-written replica parked for lease recovery"
                );
                self.storage.park(w);
            }
        }
    }

    /// The namenode's keys, for checking block access tokens.
    pub fn verify_token(
        &self,
        token: &[u8],
        block_id: u64,
        access: granary_common::block_token::BlockAccess,
    ) -> Result<u64, granary_common::block_token::TokenError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.block_keys.read().verify(token, block_id, access, now)
    }

    pub fn xceivers(&self) -> u32 {
        self.xceivers.load(Ordering::Relaxed)
    }

    /// Counts an active transfer until the guard drops.
    pub fn xceiver(self: &Arc<Self>) -> XceiverGuard {
        self.xceivers.fetch_add(1, Ordering::Relaxed);
        XceiverGuard(self.clone())
    }

    /// Like [`DatanodeContext::xceiver`], or None when `max_transfers` are
    /// already running (HDFS's dfs.datanode.max.transfer.threads).
    pub fn try_xceiver(self: &Arc<Self>) -> Option<XceiverGuard> {
        let max = self.max_transfers;
        self.xceivers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| XceiverGuard(self.clone()))
    }
}

pub struct XceiverGuard(Arc<DatanodeContext>);

impl Drop for XceiverGuard {
    fn drop(&mut self) {
        self.0.xceivers.fetch_sub(1, Ordering::Relaxed);
    }
}
