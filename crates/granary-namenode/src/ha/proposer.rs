//! The leader's proposer: hands the namespace's changes to Raft in the
//! order they were written, as few log entries as the log's pace allows,
//! and tells each caller its outcome.
//!
//! openraft 0.9 appends one entry at a time and waits for its fsync before
//! it takes the next, so what bounds a leader is how full each entry is and
//! whether the log ever stands idle. An entry goes to Raft once the log has
//! room for it: at most [`DEPTH`] entries not yet flushed here (one being
//! flushed, one waiting behind it). Changes that come meanwhile wait in the
//! queue and all go together in the next entry. Room is made by the log's
//! own flushes ([`LogStore::flushes`](super::log_store::LogStore::flushes)),
//! not by commits: the entry behind is then proposed while the one before
//! travels to the followers, and the log never waits for a round trip.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::state_machine::{Proposal, Replicator};
use super::{NnRaft, NsBatch, NsCommand};
use crate::error::NnError;

/// Entries handed to Raft and not yet flushed to this namenode's log.
const DEPTH: usize = 2;
/// Entries handed to Raft and not yet answered (committed or refused): a
/// leader cut off from its followers stops proposing here.
const MAX_UNANSWERED: usize = 64;
/// At most this many keys changed per entry (many changes, or one large
/// one), which keeps a batch of entries within a Raft message.
const BATCH_KEYS: usize = 4096;
/// How long a caller waits for its change to commit before being told it
/// did not (the change is then undone or applied by the log, never both).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a batch was not committed, for each of its callers.
enum Failed {
    Standby(Option<String>),
    NotCommitted(String),
}

/// Entries proposed and not yet known to be flushed, oldest first.
#[derive(Default)]
struct Unflushed {
    entries: Mutex<VecDeque<u64>>,
    room: Notify,
}

impl Unflushed {
    fn push(&self, id: u64) {
        self.entries.lock().push_back(id);
    }

    /// `n` more flushes of the log: the oldest `n` entries are on disk. (An
    /// entry Raft wrote itself, a blank one at a new term, counts too and
    /// frees room early; the answers below set that right.)
    fn flushed(&self, n: u64) {
        {
            let mut e = self.entries.lock();
            for _ in 0..n {
                if e.pop_front().is_none() {
                    break;
                }
            }
        }
        self.room.notify_waiters();
    }

    /// Entry `id` was answered (or never reached Raft): it and every
    /// entry before it are past the log.
    fn answered(&self, id: u64) {
        self.entries.lock().retain(|e| *e > id);
        self.room.notify_waiters();
    }

    async fn wait_for_room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a flush in between still wakes us.
            notified.as_mut().enable();
            if self.entries.lock().len() < DEPTH {
                return;
            }
            notified.await;
        }
    }
}

pub fn spawn_proposer(
    raft: NnRaft,
    rep: Arc<Replicator>,
    mut proposals: mpsc::UnboundedReceiver<Proposal>,
    mut flushes: watch::Receiver<u64>,
    token: CancellationToken,
) {
    let unflushed = Arc::new(Unflushed::default());
    let u = unflushed.clone();
    let t = token.clone();
    tokio::spawn(async move {
        let mut seen = *flushes.borrow_and_update();
        loop {
            tokio::select! {
                _ = t.cancelled() => return,
                r = flushes.changed() => if r.is_err() { return },
            }
            let now = *flushes.borrow_and_update();
            u.flushed(now.saturating_sub(seen));
            seen = now;
        }
    });
    let unanswered = Arc::new(Semaphore::new(MAX_UNANSWERED));
    tokio::spawn(async move {
        let mut next_id = 0u64;
        loop {
            let permit = tokio::select! {
                _ = token.cancelled() => return,
                p = unanswered.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            };
            tokio::select! {
                _ = token.cancelled() => return,
                () = unflushed.wait_for_room() => {}
            }
            let first = tokio::select! {
                _ = token.cancelled() => return,
                p = proposals.recv() => match p { Some(p) => p, None => return },
            };
            let mut keys = first.cmd.effects.ops().len();
            let mut batch = vec![first];
            while keys < BATCH_KEYS {
                match proposals.try_recv() {
                    Ok(p) => {
                        keys += p.cmd.effects.ops().len();
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            let (changes, dones): (Vec<NsCommand>, Vec<_>) =
                batch.into_iter().map(|p| (p.cmd, p.done)).unzip();
            let id = next_id;
            next_id += 1;
            unflushed.push(id);
            let answer = match raft.client_write_ff(NsBatch { changes }).await {
                Ok(answer) => answer,
                Err(e) => {
                    unflushed.answered(id);
                    for done in dones {
                        let _ = done.send(Err(NnError::NotCommitted(format!("raft stopped: {e}"))));
                    }
                    continue;
                }
            };
            let (rep, unflushed) = (rep.clone(), unflushed.clone());
            tokio::spawn(async move {
                let _slot = permit;
                let out = match tokio::time::timeout(COMMIT_TIMEOUT, answer).await {
                    Ok(Ok(Ok(resp))) => Ok(resp.data.applied),
                    Ok(Ok(Err(openraft::error::ClientWriteError::ForwardToLeader(f)))) => {
                        Err(Failed::Standby(f.leader_node.map(|n| n.rpc_addr)))
                    }
                    Ok(Ok(Err(e))) => Err(Failed::NotCommitted(e.to_string())),
                    Ok(Err(_)) => Err(Failed::NotCommitted("raft stopped".into())),
                    Err(_) => Err(Failed::NotCommitted(format!(
                        "no majority committed it within {} s",
                        COMMIT_TIMEOUT.as_secs()
                    ))),
                };
                unflushed.answered(id);
                for (i, done) in dones.into_iter().enumerate() {
                    let r = match &out {
                        Ok(applied) if applied.get(i).copied().unwrap_or(false) => Ok(()),
                        Ok(_) => Err(NnError::NotCommitted("a leader change overtook it".into())),
                        Err(Failed::Standby(leader)) => Err(rep.standby(leader.clone())),
                        Err(Failed::NotCommitted(why)) => Err(NnError::NotCommitted(why.clone())),
                    };
                    let _ = done.send(r);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Room for the next entry comes with the log's flushes, oldest entry
    /// first, or with an answer (which clears every entry up to it).
    #[tokio::test]
    async fn the_next_entry_waits_for_a_flush_or_an_answer() {
        let u = Arc::new(Unflushed::default());
        let has_room = |u: &Arc<Unflushed>| {
            let u = u.clone();
            async move {
                tokio::time::timeout(Duration::from_millis(50), u.wait_for_room())
                    .await
                    .is_ok()
            }
        };
        assert!(has_room(&u).await);
        u.push(0);
        assert!(has_room(&u).await, "one flushing, one may wait behind it");
        u.push(1);
        assert!(!has_room(&u).await, "two not flushed: no room");
        // A flush frees the oldest; a waiter is woken by it.
        let waiter = tokio::spawn({
            let u = u.clone();
            async move { u.wait_for_room().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        u.flushed(1);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by the flush")
            .expect("waiter");
        assert_eq!(*u.entries.lock(), [1]);
        u.push(2);
        assert!(!has_room(&u).await);
        // An answer for entry 2 clears 1 and 2; more flushes than entries
        // leave nothing behind.
        u.answered(2);
        assert!(u.entries.lock().is_empty());
        u.flushed(5);
        u.push(3);
        u.push(4);
        u.flushed(1);
        assert_eq!(*u.entries.lock(), [4]);
    }
}
