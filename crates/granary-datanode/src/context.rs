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
}

pub struct DatanodeContext {
    pub storage: Arc<Storage>,
    pub id: pb::DatanodeId,
    /// Block token key from the namenode; empty until registered.
    pub block_key: RwLock<Vec<u8>>,
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
    ) -> Arc<Self> {
        Arc::new(Self {
            storage,
            id,
            block_key: RwLock::new(Vec::new()),
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

    /// Sets a half-written replica aside for a later pipeline recovery.
    pub fn keep_for_recovery(&self, w: crate::storage::ReplicaWriter) {
        self.recoverable
            .lock()
            .insert(w.block_id, (w, std::time::Instant::now()));
    }

    /// Drops half-written replicas nobody recovered within `max_age`.
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
                    "discarding a half-written replica nobody recovered"
                );
                w.abort();
            }
        }
    }

    pub fn xceivers(&self) -> u32 {
        self.xceivers.load(Ordering::Relaxed)
    }

    /// Counts an active transfer until the guard drops.
    pub fn xceiver(self: &Arc<Self>) -> XceiverGuard {
        self.xceivers.fetch_add(1, Ordering::Relaxed);
        XceiverGuard(self.clone())
    }
}

pub struct XceiverGuard(Arc<DatanodeContext>);

impl Drop for XceiverGuard {
    fn drop(&mut self) {
        self.0.xceivers.fetch_sub(1, Ordering::Relaxed);
    }
}
