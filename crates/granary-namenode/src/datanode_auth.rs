//! Which callers are datanodes. A datanode registers with a proof that it
//! holds the cluster secret (checked by the Register handler, together with
//! the cluster id and the node key its uuid is bound to) and gets a session;
//! every other DatanodeProtocol and BlockReportProtocol call must carry a
//! live session, checked by [`DatanodeAuthLayer`] before the call's message
//! is read, so an unauthenticated caller cannot make the namenode buffer a
//! block report, let alone act on one.

use std::collections::HashMap;

use parking_lot::{Mutex, RwLock};

pub use granary_common::daemon_auth::{DatanodeAuthLayer, DatanodeSession};
use granary_common::daemon_auth::{MAX_CLOCK_SKEW_MS, hex};

#[derive(Default)]
pub struct DatanodeSessions {
    /// session -> datanode uuid.
    by_session: RwLock<HashMap<String, String>>,
    /// datanode uuid -> its current session.
    by_uuid: RwLock<HashMap<String, String>>,
    /// Registration nonces seen within the clock-skew window, with their time.
    nonces: Mutex<HashMap<Vec<u8>, i64>>,
}

impl DatanodeSessions {
    /// A new session for `uuid`, replacing the one it had.
    pub fn open(&self, uuid: &str) -> String {
        let session = hex(&granary_common::block_token::new_key());
        let mut by_uuid = self.by_uuid.write();
        let mut by_session = self.by_session.write();
        if let Some(old) = by_uuid.insert(uuid.to_string(), session.clone()) {
            by_session.remove(&old);
        }
        by_session.insert(session.clone(), uuid.to_string());
        session
    }

    /// Ends `uuid`'s session (it was declared dead: it must register again).
    pub fn close(&self, uuid: &str) {
        if let Some(s) = self.by_uuid.write().remove(uuid) {
            self.by_session.write().remove(&s);
        }
    }

    pub fn uuid_of(&self, session: &str) -> Option<String> {
        self.by_session.read().get(session).cloned()
    }

    /// True the first time a registration nonce is seen (within the window a
    /// proof is accepted); a replayed registration is refused.
    pub fn first_use(&self, nonce: &[u8], now_ms: i64) -> bool {
        let mut n = self.nonces.lock();
        n.retain(|_, t| now_ms.saturating_sub(*t) <= 2 * MAX_CLOCK_SKEW_MS);
        if n.contains_key(nonce) {
            return false;
        }
        n.insert(nonce.to_vec(), now_ms);
        true
    }
}

impl granary_common::daemon_auth::SessionLookup for DatanodeSessions {
    fn datanode_of(&self, session: &str) -> Option<String> {
        self.uuid_of(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_replace_each_other_and_nonces_are_used_once() {
        let s = DatanodeSessions::default();
        let a = s.open("dn1");
        assert_eq!(s.uuid_of(&a).as_deref(), Some("dn1"));
        let b = s.open("dn1");
        assert_eq!(s.uuid_of(&a), None, "a re-registration ends the old session");
        assert_eq!(s.uuid_of(&b).as_deref(), Some("dn1"));
        s.close("dn1");
        assert_eq!(s.uuid_of(&b), None);
        assert!(s.first_use(b"n1", 1_000));
        assert!(!s.first_use(b"n1", 2_000));
        assert!(
            s.first_use(b"n1", 1_000 + 3 * MAX_CLOCK_SKEW_MS),
            "forgotten once outside the window"
        );
    }
}
