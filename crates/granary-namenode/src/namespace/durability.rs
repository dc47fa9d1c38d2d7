//! When a mutation counts as done: every change is one WriteBatch written
//! under the namespace lock and made durable by the group commit, either
//! waited for at once or handed to an async caller ([`deferring_durability`]).

use std::sync::atomic::Ordering;

use rocksdb::{DB, WriteBatch, WriteOptions};

use super::{Effects, Namespace};
use crate::error::{NnError, Result};
use crate::group_commit::Durable;

/// A write whose durability the caller awaits (see [`deferring_durability`]):
/// fsynced by this namenode's group commit when it runs alone, committed by
/// a majority of its group (and applied here) when it is a Raft leader.
pub enum PendingWrite {
    Local(Durable<rocksdb::Error>),
    Replicated(Commit),
}

/// A change proposed to the namenode group, in proposal order `seq`.
pub struct Commit {
    pub seq: u64,
    /// Told once the change is committed and applied here, or why not.
    pub outcome: tokio::sync::oneshot::Receiver<Result<()>>,
    /// Where [`PendingWrite::then`] waits.
    pub rt: tokio::runtime::Handle,
}

fn lost() -> NnError {
    NnError::NotCommitted("the namenode stopped replicating before the change was committed".into())
}

impl PendingWrite {
    /// The later of two writes: once it is durable, so is the earlier (one
    /// fsync covers every earlier write; one log covers every earlier entry).
    pub fn latest(self, other: Self) -> Self {
        match (self, other) {
            (Self::Local(a), Self::Local(b)) => Self::Local(a.latest(b)),
            (Self::Replicated(a), Self::Replicated(b)) => Self::Replicated(if b.seq > a.seq { b } else { a }),
            (_, other) => other,
        }
    }

    pub fn seq(&self) -> u64 {
        match self {
            Self::Local(d) => d.seq(),
            Self::Replicated(c) => c.seq,
        }
    }

    /// Waits, without blocking a thread, until the write is durable.
    pub async fn wait(self) -> Result<()> {
        match self {
            Self::Local(d) => d.wait().await.map_err(NnError::from),
            Self::Replicated(c) => c.outcome.await.unwrap_or_else(|_| Err(lost())),
        }
    }

    /// Blocks this (non-async) thread until the write is durable.
    fn wait_blocking(self) -> Result<()> {
        match self {
            Self::Local(d) => {
                let (tx, rx) = std::sync::mpsc::channel();
                d.then(move |r| drop(tx.send(r)));
                rx.recv()
                    .map_err(|_| NnError::Internal("the WAL sync thread stopped".into()))?
                    .map_err(NnError::from)
            }
            Self::Replicated(c) => c.outcome.blocking_recv().unwrap_or_else(|_| Err(lost())),
        }
    }

    /// Calls `f` with the outcome once known; it must be short.
    pub fn then(self, f: impl FnOnce(Result<()>) + Send + 'static) {
        match self {
            Self::Local(d) => d.then(move |r| f(r.map_err(NnError::from))),
            Self::Replicated(c) => {
                let outcome = c.outcome;
                c.rt.spawn(async move { f(outcome.await.unwrap_or_else(|_| Err(lost()))) });
            }
        }
    }
}

/// How a Raft leader's namespace hands its changes to its group.
pub trait Replication: Send + Sync + 'static {
    /// Fails (naming the leader) when this namenode may not change the
    /// namespace now.
    fn check_leader(&self) -> Result<()>;
    /// Writes `effects` into `db` ahead of their commit, with what undoes
    /// them should the group not commit them, and proposes them, in the
    /// order of calls. Called under the namespace lock.
    fn propose(&self, db: &DB, effects: Effects) -> Result<Commit>;
}

/// Work that acts on a mutation beyond the namenode's memory (queueing a
/// deleted file's replicas for deletion on datanodes, say), which must not
/// happen for a change that a crash could still undo.
pub struct AfterDurable {
    /// Long enough to keep off an async executor (thousands of blocks).
    pub heavy: bool,
    pub run: Box<dyn FnOnce() + Send>,
}

thread_local! {
    /// Set while [`deferring_durability`] runs on this thread: the latest
    /// write its mutations made, which its caller waits for instead, and
    /// what runs once that write is durable.
    static DEFERRED: std::cell::RefCell<Option<Deferred>> = const { std::cell::RefCell::new(None) };
}

/// What a [`deferring_durability`] run leaves its caller, who must await
/// `pending` before telling anyone the mutations happened, and then run
/// `after` (never when the sync failed: the change may be lost).
#[must_use]
#[derive(Default)]
pub struct Deferred {
    pub pending: Option<PendingWrite>,
    pub after: Vec<AfterDurable>,
}

/// Runs `f`, whose namespace mutations return as soon as they are written
/// instead of blocking until durable, and whose
/// [`Namespace::after_durable`] work is handed back instead of waiting.
/// This is how async callers avoid parking a thread per fsync.
pub fn deferring_durability<R>(f: impl FnOnce() -> R) -> (R, Deferred) {
    /// Restores the enclosing deferral's state, also when `f` panics: a
    /// pooled thread must not go on skipping the wait.
    struct Reset(Option<Deferred>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let outer = self.0.take();
            DEFERRED.with(|d| *d.borrow_mut() = outer);
        }
    }
    let reset = Reset(DEFERRED.with(|d| d.borrow_mut().replace(Deferred::default())));
    let r = f();
    let deferred = DEFERRED.with(|d| d.borrow_mut().take()).unwrap_or_default();
    drop(reset);
    (r, deferred)
}

impl Namespace {
    /// Runs one mutation under the namespace lock and returns once it is durable.
    pub(super) fn mutate<T>(&self, f: impl FnOnce(&mut Effects) -> Result<T>) -> Result<T> {
        self.mutate_marked(|batch| f(batch).map(|out| (out, true)))
    }

    /// Like [`Namespace::mutate`] for changes to one file's inode (and its
    /// blocks), which no other path's resolution depends on.
    pub(super) fn mutate_file<T>(&self, f: impl FnOnce(&mut Effects) -> Result<T>) -> Result<T> {
        self.mutate_marked(|batch| f(batch).map(|out| (out, false)))
    }

    /// `f` says whether its change was structural (see `structure`).
    pub(super) fn mutate_marked<T>(&self, f: impl FnOnce(&mut Effects) -> Result<(T, bool)>) -> Result<T> {
        // A panic under the lock leaves no half-made change behind (the batch
        // is written whole or not at all), so a poisoned lock is still usable.
        let guard = self
            .write_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let replication = self.replication.get();
        if let Some(r) = replication {
            r.check_leader()?;
        }
        let mut effects = Effects::default();
        let (out, structural) = f(&mut effects)?;
        if effects.is_empty() {
            return Ok(out);
        }
        super::retry::record(&mut effects);
        let pending = match replication {
            Some(r) => PendingWrite::Replicated(r.propose(&self.db, effects)?),
            None => {
                let mut batch = WriteBatch::default();
                effects.write_to(&self.db, &mut batch)?;
                let mut wo = WriteOptions::default();
                wo.set_sync(false);
                self.db.write_opt(batch, &wo)?;
                PendingWrite::Local(self.commit.durable(self.commit.note_write()))
            }
        };
        if structural {
            self.structure.fetch_add(1, Ordering::SeqCst);
        }
        drop(guard);
        match self.defer(pending) {
            None => {}
            Some(PendingWrite::Local(d)) => self.commit.wait_durable(d.seq())?,
            Some(p) => p.wait_blocking()?,
        }
        Ok(out)
    }

    /// Runs `run` once this thread's mutations so far are durable: at once
    /// outside [`deferring_durability`] (each mutation waited for its own
    /// fsync), else handed to its caller, who runs it after awaiting them.
    pub fn after_durable(&self, heavy: bool, run: impl FnOnce() + Send + 'static) {
        let run: Box<dyn FnOnce() + Send> = Box::new(run);
        let left = DEFERRED.with(|d| match &mut *d.borrow_mut() {
            Some(deferral) => {
                deferral.after.push(AfterDurable { heavy, run });
                None
            }
            None => Some(run),
        });
        if let Some(run) = left {
            run();
        }
    }

    /// Hands `pending` to the caller's [`deferring_durability`], if it
    /// runs; else gives it back to be waited for here.
    fn defer(&self, pending: PendingWrite) -> Option<PendingWrite> {
        DEFERRED.with(|d| match &mut *d.borrow_mut() {
            Some(deferral) => {
                deferral.pending = Some(match deferral.pending.take() {
                    Some(l) => l.latest(pending),
                    None => pending,
                });
                None
            }
            None => Some(pending),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::NnError;
    use crate::namespace::tests::namespace;
    use std::sync::Arc;

    /// Inside `deferring_durability` a mutation hands its write to the caller
    /// (the gRPC layer awaits it), and so does work that must wait for it;
    /// outside, or after the deferring code panicked, mutations wait for
    /// their fsync themselves again and such work runs at once.
    #[test]
    fn deferred_mutations_hand_their_write_to_the_caller() {
        let (_tmp, ns, su) = namespace();
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, deferred) = deferring_durability(|| {
            ns.mkdirs(&su, "/a", 0, false)?;
            ns.mkdirs(&su, "/b", 0, false)?;
            let ran = ran.clone();
            ns.after_durable(false, move || ran.store(true, Ordering::SeqCst));
            Ok::<_, NnError>(())
        });
        r.expect("mkdirs");
        assert!(!ran.load(Ordering::SeqCst), "ran before its write was durable");
        let pending = deferred.pending.expect("the writes were handed over");
        assert_eq!(pending.seq(), 2, "the later of the two writes");
        assert_eq!(deferred.after.len(), 1, "the waiting work was handed over");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(pending.wait()).expect("durable");

        let (r, deferred) = deferring_durability(|| ns.get_file_info(&su, "/a").map(|_| ()));
        r.expect("stat");
        assert!(deferred.pending.is_none(), "a read writes nothing");

        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        ns.after_durable(false, move || flag.store(true, Ordering::SeqCst));
        assert!(
            ran.load(Ordering::SeqCst),
            "outside a deferral the work runs at once"
        );

        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            deferring_durability(|| {
                ns.mkdirs(&su, "/c", 0, false).expect("mkdirs");
                panic!("handler bug");
            })
        }));
        assert!(panicked.is_err());
        assert!(
            DEFERRED.with(|d| d.borrow().is_none()),
            "the thread still defers after a panic"
        );
        ns.mkdirs(&su, "/d", 0, false).expect("mkdirs waits for itself");
        assert!(DEFERRED.with(|d| d.borrow().is_none()));
    }
}
