//! When a mutation counts as done: every change is one WriteBatch written
//! under the namespace lock (or one entry proposed to the namenode group),
//! and the mutation returns [`Written`]: its value and the write that must
//! be durable before anyone hears of it. A caller waits for that itself or
//! collects it in its call's [`Deferred`], which the gRPC layer awaits
//! without holding a thread; nothing decides this behind the caller's back.

use std::sync::atomic::Ordering;

use rocksdb::{DB, WriteBatch, WriteOptions};

use super::{Effects, Namespace};
use crate::error::{NnError, Result};
use crate::group_commit::Durable;
use crate::inode::{CF_META, META_QUOTA_DIRS, decode_u64};

/// A write whose durability the caller awaits (see [`Written`]):
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
            Self::Local(d) => d.wait_blocking().map_err(NnError::from),
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
    /// What commits once every change proposed so far has, and fails if
    /// one of them did not; None when none is waiting. Called under the
    /// namespace lock.
    fn barrier(&self, db: &DB) -> Result<Option<Commit>>;
}

/// Work that acts on a mutation beyond the namenode's memory (queueing a
/// deleted file's replicas for deletion on datanodes, say), which must not
/// happen for a change that a crash could still undo.
pub struct AfterDurable {
    /// Long enough to keep off an async executor (thousands of blocks).
    pub heavy: bool,
    pub run: Box<dyn FnOnce() + Send>,
}

/// What a namespace mutation returns: its value, and the write that must be
/// durable before anyone is told of the change (none when it changed
/// nothing). The caller waits for it ([`Written::wait`], on a thread that
/// may block) or collects it into its call's [`Deferred`] and awaits that
/// without holding a thread.
#[must_use = "a change must be durable before anyone is told of it: wait for it or hand it to a Deferred"]
pub struct Written<T> {
    value: T,
    pending: Option<PendingWrite>,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Written<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Written")
            .field("value", &self.value)
            .field("pending", &self.pending.as_ref().map(PendingWrite::seq))
            .finish()
    }
}

impl<T> Written<T> {
    /// A value no write stands behind (nothing changed).
    pub(crate) fn unchanged(value: T) -> Self {
        Self { value, pending: None }
    }

    /// A value that stands only once `pending` is durable.
    pub(super) fn after(value: T, pending: Option<PendingWrite>) -> Self {
        Self { value, pending }
    }

    /// Whether the mutation wrote anything.
    pub fn changed(&self) -> bool {
        self.pending.is_some()
    }

    /// Blocks this (non-async) thread until the write is durable.
    pub fn wait(self) -> Result<T> {
        if let Some(p) = self.pending {
            p.wait_blocking()?;
        }
        Ok(self.value)
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Written<U> {
        Written {
            value: f(self.value),
            pending: self.pending,
        }
    }
}

/// A call's writes not yet known durable, and the work that waits for
/// them: whoever tells a client of the call's changes first awaits
/// `pending`, then runs `after` (never when the sync failed: the change may
/// be lost). The gRPC layer awaits it without holding a thread.
#[must_use]
#[derive(Default)]
pub struct Deferred {
    pub pending: Option<PendingWrite>,
    pub after: Vec<AfterDurable>,
}

impl Deferred {
    /// Takes `written`'s write into this call's, and gives its value.
    pub fn take<T>(&mut self, written: Written<T>) -> T {
        if let Some(p) = written.pending {
            self.pending = Some(match self.pending.take() {
                Some(earlier) => earlier.latest(p),
                None => p,
            });
        }
        written.value
    }

    /// Runs `run` once this call's writes are durable.
    pub fn after(&mut self, heavy: bool, run: impl FnOnce() + Send + 'static) {
        self.after.push(AfterDurable {
            heavy,
            run: Box::new(run),
        });
    }

    /// Blocks this (non-async) thread until the writes are durable, then
    /// runs the work that waited for them.
    pub fn wait(self) -> Result<()> {
        if let Some(p) = self.pending {
            p.wait_blocking()?;
        }
        self.after.into_iter().for_each(|a| (a.run)());
        Ok(())
    }
}

/// A [`Written`] result waited for on this thread: for callers that may
/// block (background tasks, tests).
pub trait WaitDurable<T> {
    fn durably(self) -> Result<T>;
}

impl<T> WaitDurable<T> for Result<Written<T>> {
    fn durably(self) -> Result<T> {
        self.and_then(Written::wait)
    }
}

impl Namespace {
    /// Runs one mutation under the namespace lock; what it returns says
    /// when it is durable.
    pub(super) fn mutate<T>(&self, f: impl FnOnce(&mut Effects) -> Result<T>) -> Result<Written<T>> {
        self.mutate_marked(|batch| f(batch).map(|out| (out, true)))
    }

    /// Like [`Namespace::mutate`] for changes to one file's inode (and its
    /// blocks), which no other path's resolution depends on.
    pub(super) fn mutate_file<T>(&self, f: impl FnOnce(&mut Effects) -> Result<T>) -> Result<Written<T>> {
        self.mutate_marked(|batch| f(batch).map(|out| (out, false)))
    }

    /// Every write made so far, as one to wait for: what a caller answering
    /// from a change it did not make (a retried call's record) waits for
    /// before it says the change happened. None when nothing is waiting.
    pub(super) fn barrier(&self) -> Result<Option<PendingWrite>> {
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(match self.replication.get() {
            Some(r) => r.barrier(&self.db)?.map(PendingWrite::Replicated),
            None => match self.commit.last_write() {
                0 => None,
                seq => Some(PendingWrite::Local(self.commit.durable(seq))),
            },
        })
    }

    /// `f` says whether its change was structural (see `structure`).
    pub(super) fn mutate_marked<T>(
        &self,
        f: impl FnOnce(&mut Effects) -> Result<(T, bool)>,
    ) -> Result<Written<T>> {
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
            return Ok(Written::unchanged(out));
        }
        // Values are kept before quotas are worked out (what snapshots hold
        // counts too), then the quota'd directories' own changed values
        // (not when snapshots come or go in this change: the state in
        // memory still names a snapshot being deleted).
        let snapshots = self.snap_state().any();
        let snapshots_changed = super::snapshot::changes_state(&effects);
        if snapshots {
            self.keep_for_snapshots(&mut effects, None)?;
        }
        let quota_dirs_written = self.account_quotas(&mut effects)?;
        if snapshots && !snapshots_changed && !quota_dirs_written.is_empty() {
            self.keep_for_snapshots(&mut effects, Some(quota_dirs_written.as_slice()))?;
        }
        let quota_dirs = effects
            .last_change(CF_META, META_QUOTA_DIRS)
            .map(|v| v.and_then(decode_u64).unwrap_or(0));
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
        if let Some(n) = quota_dirs {
            self.quota_dirs.store(n, Ordering::SeqCst);
        }
        if snapshots_changed {
            self.load_snapshots()?;
        }
        drop(guard);
        Ok(Written {
            value: out,
            pending: Some(pending),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::NnError;
    use crate::namespace::tests::namespace;
    use std::sync::Arc;

    /// A mutation hands back its write: collected into a call's `Deferred`
    /// (as the gRPC layer does), the latest write stands for all, and work
    /// queued after it runs only once they are durable; a read writes
    /// nothing; waited for on the spot, it is durable when it returns.
    #[test]
    fn mutations_say_when_they_are_durable() {
        let (_tmp, ns, su) = namespace();
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut call = Deferred::default();
        let r = (|| {
            call.take(ns.mkdirs(&su, "/a", 0, false)?);
            call.take(ns.mkdirs(&su, "/b", 0, false)?);
            let ran = ran.clone();
            call.after(false, move || ran.store(true, Ordering::SeqCst));
            Ok::<_, NnError>(())
        })();
        r.expect("mkdirs");
        assert!(!ran.load(Ordering::SeqCst), "ran before its write was durable");
        let pending = call.pending.take().expect("the writes were handed over");
        assert_eq!(pending.seq(), 2, "the later of the two writes");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(pending.wait()).expect("durable");
        call.wait().expect("nothing left to wait for");
        assert!(ran.load(Ordering::SeqCst), "the waiting work ran");

        let existing = ns.mkdirs(&su, "/a", 0, true).expect("mkdirs -p");
        assert!(!existing.changed(), "an existing directory writes nothing");
        existing.wait().expect("nothing to wait for");

        let w = ns.mkdirs(&su, "/c", 0, false).expect("mkdirs");
        assert!(w.changed());
        let seq = w.pending.as_ref().map(PendingWrite::seq).expect("a write");
        w.wait().expect("durable");
        ns.commit.wait_durable(seq).expect("already durable");
    }
}
