//! The retry cache (HDFS's RetryCache): a non-idempotent call (create,
//! mkdirs, rename, delete, complete) that changed the namespace records its
//! client id and call id in the same change, so it travels to every
//! namenode of a group with it. A client that lost the answer (the leader
//! died, the connection broke) retries with the same ids, and is answered
//! from the record instead of the call running twice ("file exists" for a
//! create that did happen). Records expire after [`RETRY_EXPIRY_MS`].

use std::cell::RefCell;

use rocksdb::{Direction, IteratorMode};
use serde::{Deserialize, Serialize};

use super::{Effects, Namespace, Written};
use crate::error::Result;
use crate::inode::{CF_META, now_ms};
use granary_common::retry::CallKey;

const PREFIX: &[u8] = b"retry/";

/// How long a call is remembered: longer than a client's failover takes.
pub const RETRY_EXPIRY_MS: i64 = 120_000;

/// Longest client id remembered (longer ones are not cached).
const MAX_CLIENT_ID: usize = 128;

/// A client's call, as it names it on every retry: the ids the client
/// library sends ([`CallKey`]), when the client id is short enough to keep.
pub fn call_of(md: &tonic::metadata::MetadataMap) -> Option<CallKey> {
    CallKey::from_metadata(md).filter(|k| k.client_id.len() <= MAX_CLIENT_ID)
}

fn record_key(call: &CallKey) -> Vec<u8> {
    [
        PREFIX,
        call.client_id.as_bytes(),
        b"/",
        &call.call_id.to_be_bytes(),
    ]
    .concat()
}

/// What a call left: when, and a value it answered with (a created file's id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub at_ms: i64,
    pub value: u64,
}

thread_local! {
    static CALL: RefCell<Option<(CallKey, u64)>> = const { RefCell::new(None) };
}

/// Runs `f`, whose namespace change (if it makes one) records `call` with
/// `value` (see [`Namespace::recorded`]).
pub fn recording<R>(call: Option<&CallKey>, value: u64, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CALL.with(|c| *c.borrow_mut() = None);
        }
    }
    let Some(call) = call else { return f() };
    CALL.with(|c| *c.borrow_mut() = Some((call.clone(), value)));
    let _reset = Reset;
    f()
}

/// Sets the value recorded by the change being made (a create's new file id).
pub(super) fn set_value(value: u64) {
    CALL.with(|c| {
        if let Some((_, v)) = c.borrow_mut().as_mut() {
            *v = value;
        }
    });
}

/// Adds the record of the running call, if any, to a change.
pub(super) fn record(effects: &mut Effects) {
    CALL.with(|c| {
        if let Some((call, value)) = c.borrow().as_ref() {
            let rec = Recorded {
                at_ms: now_ms(),
                value: *value,
            };
            if let Ok(v) = postcard::to_stdvec(&rec) {
                effects.put_cf(CF_META, record_key(call), v);
            }
        }
    });
}

impl Namespace {
    /// What an earlier attempt of `call` recorded, if it changed the
    /// namespace. A record is answered from only once every write so far is
    /// durable (the [`Written`] says so): the earlier attempt may still be
    /// waiting for its fsync or its commit, and a retry must not be told of
    /// a change a crash or a lost election could still undo.
    pub fn recorded(&self, call: Option<&CallKey>) -> Result<Written<Option<Recorded>>> {
        let Some(call) = call else {
            return Ok(Written::unchanged(None));
        };
        let found = self
            .db
            .get_pinned_cf(self.cf(CF_META)?, record_key(call))?
            .and_then(|v| postcard::from_bytes(&v).ok())
            .filter(|r: &Recorded| now_ms() - r.at_ms <= RETRY_EXPIRY_MS);
        Ok(match found {
            Some(rec) => Written::after(Some(rec), self.barrier()?),
            None => Written::unchanged(None),
        })
    }

    /// Forgets calls older than [`RETRY_EXPIRY_MS`] (at most `max` per run);
    /// how many it forgot.
    pub fn expire_retry_cache(&self, max: usize) -> Result<usize> {
        let cf = self.cf(CF_META)?;
        let now = now_ms();
        let mut old = Vec::new();
        for kv in self
            .db
            .iterator_cf(cf, IteratorMode::From(PREFIX, Direction::Forward))
        {
            let (k, v) = kv?;
            if !k.starts_with(PREFIX) || old.len() >= max {
                break;
            }
            let expired =
                postcard::from_bytes::<Recorded>(&v).map_or(true, |r| now - r.at_ms > RETRY_EXPIRY_MS);
            if expired {
                old.push(k.to_vec());
            }
        }
        if old.is_empty() {
            return Ok(0);
        }
        let n = old.len();
        self.mutate_file(|batch| {
            for k in &old {
                batch.delete_cf(CF_META, k);
            }
            Ok(())
        })?
        .wait()?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::WaitDurable;
    use crate::namespace::tests::namespace;

    /// A call that changed the namespace is found again by its ids; one
    /// that failed left nothing; another client's call is its own.
    #[test]
    fn a_call_that_changed_the_namespace_is_remembered() {
        let (_tmp, ns, su) = namespace();
        let call = CallKey {
            client_id: "c1".into(),
            call_id: 7,
        };
        assert_eq!(ns.recorded(Some(&call)).durably().expect("lookup"), None);
        let made = recording(Some(&call), 0, || ns.mkdirs(&su, "/a", 0, false)).expect("mkdirs");
        // Found while its own write may not be durable yet: the answer from
        // it waits for that write.
        let found = ns.recorded(Some(&call)).expect("lookup");
        assert!(found.changed(), "a found record waits for the writes so far");
        made.wait().expect("durable");
        assert!(found.wait().expect("durable").is_some());
        let other = CallKey {
            client_id: "c2".into(),
            call_id: 7,
        };
        let none = ns.recorded(Some(&other)).expect("lookup");
        assert!(!none.changed(), "nothing found, nothing to wait for");
        assert_eq!(none.wait().expect("lookup"), None);
        let failed = CallKey {
            client_id: "c1".into(),
            call_id: 8,
        };
        recording(Some(&failed), 0, || {
            ns.mkdirs(&su, "/missing/b", 0, false).durably()
        })
        .expect_err("no parent");
        assert_eq!(ns.recorded(Some(&failed)).durably().expect("lookup"), None);
        // Outside `recording`, nothing is recorded.
        ns.mkdirs(&su, "/c", 0, false).durably().expect("mkdirs");
        assert_eq!(
            ns.expire_retry_cache(100).expect("expire"),
            0,
            "nothing is old yet"
        );
    }
}
