//! What the datanode holds per namenode it talks to: the session that
//! namenode issued, its block keys, what its last heartbeat reply said,
//! and the queue of replica events waiting for its incremental report.
//!
//! Each namenode has its own bounded queue: a namenode that is down (or
//! slow) cannot make the datanode's memory grow. When its queue overflows
//! the events are dropped and the namenode's actor sends a full block
//! report instead, which covers everything the dropped events said.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;

use crate::context::ReplicaEvent;
use granary_common::block_token::BlockKeys;
use granary_proto as pb;

/// Replica events queued per namenode before they are dropped in favour
/// of a full block report.
pub const EVENT_QUEUE: usize = 100_000;

/// What this datanode knows of one namenode's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// Holds a session from it (registered, and not told to register again).
    pub registered: bool,
    /// Its last heartbeat reply said it is the active namenode.
    pub active: bool,
    /// The term its last heartbeat reply gave.
    pub term: u64,
    pub last_heartbeat: Option<Instant>,
}

pub struct NamenodeLink {
    /// Its RPC address, as configured.
    pub addr: String,
    session: RwLock<String>,
    /// Its block token keys; empty until it registered this datanode.
    block_keys: RwLock<BlockKeys>,
    status: Mutex<LinkStatus>,
    events: mpsc::Sender<ReplicaEvent>,
    overflowed: AtomicBool,
}

impl NamenodeLink {
    /// A link to the namenode at `addr`, and the receiving end of its event
    /// queue (for its actor).
    pub fn new(addr: String) -> (Arc<Self>, mpsc::Receiver<ReplicaEvent>) {
        let (events, rx) = mpsc::channel(EVENT_QUEUE);
        let link = Arc::new(Self {
            addr,
            session: RwLock::new(String::new()),
            block_keys: RwLock::new(BlockKeys::default()),
            status: Mutex::new(LinkStatus::default()),
            events,
            overflowed: AtomicBool::new(false),
        });
        (link, rx)
    }

    pub fn session(&self) -> String {
        self.session.read().clone()
    }

    /// Registered with a fresh session and keys.
    pub fn registered(&self, session: String, keys: Vec<pb::BlockKey>) {
        *self.session.write() = session;
        self.set_block_keys(keys);
        self.status.lock().registered = true;
    }

    /// The namenode no longer knows (or never knew) this datanode's session;
    /// what it said of itself is out of date too.
    pub fn unregistered(&self) {
        self.session.write().clear();
        let mut s = self.status.lock();
        s.registered = false;
        s.active = false;
    }

    pub fn set_block_keys(&self, keys: Vec<pb::BlockKey>) {
        *self.block_keys.write() = BlockKeys::new(keys);
    }

    pub fn has_block_keys(&self) -> bool {
        !self.block_keys.read().is_empty()
    }

    pub fn block_keys(&self) -> Vec<pb::BlockKey> {
        self.block_keys.read().keys().to_vec()
    }

    /// Checks a block access token against this namenode's keys.
    pub fn verify_token(
        &self,
        token: &[u8],
        block_id: u64,
        access: granary_common::block_token::BlockAccess,
        now_ms: i64,
        user: Option<&str>,
    ) -> Result<u64, granary_common::block_token::TokenError> {
        self.block_keys
            .read()
            .verify_for(token, block_id, access, now_ms, user)
    }

    /// Notes what a heartbeat reply said.
    pub fn heartbeat_answered(&self, active: bool, term: u64) {
        let mut s = self.status.lock();
        s.active = active;
        s.term = term;
        s.last_heartbeat = Some(Instant::now());
    }

    pub fn status(&self) -> LinkStatus {
        *self.status.lock()
    }

    /// Queues `e` for this namenode's incremental report; when the queue is
    /// full, drops it and asks for a full report instead.
    pub fn offer(&self, e: ReplicaEvent) {
        match self.events.try_send(e) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.overflowed.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        namenode = %self.addr,
                        queued = EVENT_QUEUE,
                        "replica events for this namenode overflowed; a full block report follows"
                    );
                }
            }
            // Its actor stopped: the datanode is shutting down.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Events for this namenode were dropped: a full report is due.
    pub fn mark_overflow(&self) {
        self.overflowed.store(true, Ordering::Release);
    }

    /// Whether events were dropped and the full report that replaces them
    /// is not sent yet.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// Whether events were dropped since the last call (a full report is due).
    pub fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: u64) -> ReplicaEvent {
        ReplicaEvent::NotHeld(id)
    }

    #[test]
    fn a_full_queue_drops_events_and_asks_for_a_full_report() {
        let (link, mut rx) = NamenodeLink::new("nn:8020".into());
        for i in 0..EVENT_QUEUE as u64 {
            link.offer(ev(i));
        }
        assert!(!link.take_overflow());
        link.offer(ev(u64::MAX));
        link.offer(ev(u64::MAX));
        assert!(link.take_overflow());
        assert!(!link.take_overflow(), "taken once");
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, EVENT_QUEUE);
    }

    #[test]
    fn sessions_and_status_follow_registration() {
        let (link, _rx) = NamenodeLink::new("nn:8020".into());
        assert!(!link.status().registered && !link.has_block_keys());
        let key = pb::BlockKey {
            id: 1,
            key: vec![7; 32],
            expiry_ms: i64::MAX,
        };
        link.registered("s1".into(), vec![key]);
        assert_eq!(link.session(), "s1");
        assert!(link.status().registered && link.has_block_keys());
        link.heartbeat_answered(true, 3);
        let s = link.status();
        assert!(s.active && s.term == 3 && s.last_heartbeat.is_some());
        link.unregistered();
        assert_eq!(link.session(), "");
        // Tokens its keys signed stay valid until they expire.
        assert!(!link.status().registered && link.has_block_keys());
    }
}
