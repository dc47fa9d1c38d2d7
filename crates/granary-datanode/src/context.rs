//! What the datanode's services and its namenode actors share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::RwLock;

use crate::command_fence::CommandFence;
use crate::namenode_link::NamenodeLink;
use crate::storage::Storage;
use granary_proto as pb;

/// A change to report to the namenodes promptly (incremental block report).
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
    /// One per configured namenode, in the configured order: its session,
    /// block keys, state and event queue.
    pub namenodes: Vec<Arc<NamenodeLink>>,
    /// Whose commands are carried out (the active namenode of the newest term).
    pub fence: parking_lot::Mutex<CommandFence>,
    /// Write pipelines in progress, by block: lease recovery stops them.
    pub active_writes:
        parking_lot::Mutex<std::collections::HashMap<u64, (u64, tokio_util::sync::CancellationToken)>>,
    /// At most this many write pipelines and block reads at once.
    pub max_transfers: u32,
    /// Replica verifications (a reader reported corruption) run one at a time.
    pub verify_turn: parking_lot::Mutex<()>,
    pub cluster_id: RwLock<String>,
    xceivers: AtomicU32,
    pub metrics: Arc<crate::metrics::DatanodeMetrics>,
    /// Replicas whose writer vanished mid-block, kept for pipeline recovery.
    pub recoverable: parking_lot::Mutex<
        std::collections::HashMap<u64, (crate::storage::ReplicaWriter, std::time::Instant)>,
    >,
    /// How long to wait for the next node of a write pipeline to answer.
    pub socket_timeout: std::time::Duration,
    /// Paces balancer copies, all of them together (HDFS's balancer bandwidth).
    pub balancer_pace: crate::transfer::Pacer,
    /// Set while the disk balancer runs (one run at a time).
    pub disk_balancing: std::sync::atomic::AtomicBool,
    /// Cancelled when the datanode stops.
    pub stop: tokio_util::sync::CancellationToken,
    /// How this datanode reaches namenodes and other datanodes.
    net: granary_common::net::Net,
}

impl DatanodeContext {
    pub fn new(
        storage: Arc<Storage>,
        id: pb::DatanodeId,
        cluster_id: String,
        namenodes: Vec<Arc<NamenodeLink>>,
        transfer: &crate::config::TransferConfig,
        net: granary_common::net::Net,
        stop: tokio_util::sync::CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            storage,
            id,
            namenodes,
            fence: Default::default(),
            active_writes: Default::default(),
            max_transfers: transfer.max_transfers,
            verify_turn: Default::default(),
            cluster_id: RwLock::new(cluster_id),
            xceivers: AtomicU32::new(0),
            metrics: crate::metrics::DatanodeMetrics::new(),
            recoverable: Default::default(),
            socket_timeout: transfer.socket_timeout(),
            balancer_pace: Default::default(),
            disk_balancing: Default::default(),
            stop,
            net,
        })
    }

    /// How this datanode reaches namenodes and other datanodes (TLS or not).
    pub fn net(&self) -> &granary_common::net::Net {
        &self.net
    }

    /// Queues `e` for every namenode's incremental report.
    pub fn report(&self, e: ReplicaEvent) {
        if let Some((last, others)) = self.namenodes.split_last() {
            for nn in others {
                nn.offer(e.clone());
            }
            last.offer(e);
        }
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

    /// Whether some namenode has given this datanode block keys (it
    /// registered at least once), so it can check block access tokens.
    pub fn has_block_keys(&self) -> bool {
        self.namenodes.iter().any(|nn| nn.has_block_keys())
    }

    /// Every namenode's current block keys.
    pub fn block_keys(&self) -> Vec<pb::BlockKey> {
        self.namenodes.iter().flat_map(|nn| nn.block_keys()).collect()
    }

    /// Checks a block access token against every namenode's keys: any of
    /// them may have signed it. Each namenode's set is checked on its own
    /// (two namenodes may use the same key id for different keys).
    pub fn verify_token(
        &self,
        token: &[u8],
        block_id: u64,
        access: granary_common::block_token::BlockAccess,
        user: Option<&str>,
    ) -> Result<u64, granary_common::block_token::TokenError> {
        use granary_common::block_token::TokenError;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut refusal = None;
        for nn in &self.namenodes {
            match nn.verify_token(token, block_id, access, now, user) {
                Ok(gs) => return Ok(gs),
                // The most telling refusal: a namenode that holds the key
                // says more than one that does not.
                Err(e @ TokenError::UnknownKey(_)) => {
                    refusal.get_or_insert(e);
                }
                Err(e) => refusal = Some(e),
            }
        }
        Err(refusal.unwrap_or(TokenError::UnknownKey(0)))
    }

    /// The namenode this datanode last saw active in the newest term, if any.
    pub fn active_namenode(&self) -> Option<Arc<NamenodeLink>> {
        let highest = self.fence.lock().highest();
        self.namenodes
            .iter()
            .find(|nn| {
                let s = nn.status();
                s.registered && s.active && s.term == highest
            })
            .cloned()
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
