//! When a mutation counts as done: every change is one WriteBatch written
//! under the namespace lock and made durable by the group commit, either
//! waited for at once or handed to an async caller ([`deferring_durability`]).

use std::sync::atomic::Ordering;

use rocksdb::{WriteBatch, WriteOptions};

use super::Namespace;
use crate::error::Result;
use crate::group_commit::Durable;

/// A write whose durability the caller awaits (see [`deferring_durability`]).
pub type PendingWrite = Durable<rocksdb::Error>;

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
    pub(super) fn mutate<T>(&self, f: impl FnOnce(&mut WriteBatch) -> Result<T>) -> Result<T> {
        self.mutate_marked(|batch| f(batch).map(|out| (out, true)))
    }

    /// Like [`Namespace::mutate`] for changes to one file's inode (and its
    /// blocks), which no other path's resolution depends on.
    pub(super) fn mutate_file<T>(&self, f: impl FnOnce(&mut WriteBatch) -> Result<T>) -> Result<T> {
        self.mutate_marked(|batch| f(batch).map(|out| (out, false)))
    }

    /// `f` says whether its change was structural (see `structure`).
    pub(super) fn mutate_marked<T>(&self, f: impl FnOnce(&mut WriteBatch) -> Result<(T, bool)>) -> Result<T> {
        // A panic under the lock leaves no half-made change behind (the batch
        // is written whole or not at all), so a poisoned lock is still usable.
        let guard = self
            .write_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut batch = WriteBatch::default();
        let (out, structural) = f(&mut batch)?;
        if batch.is_empty() {
            return Ok(out);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(false);
        self.db.write_opt(batch, &wo)?;
        if structural {
            self.structure.fetch_add(1, Ordering::SeqCst);
        }
        let seq = self.commit.note_write();
        drop(guard);
        if !self.defer(seq) {
            self.commit.wait_durable(seq)?;
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

    /// Hands write `seq` to the caller's [`deferring_durability`], if it runs.
    fn defer(&self, seq: u64) -> bool {
        DEFERRED.with(|d| match &mut *d.borrow_mut() {
            Some(deferral) => {
                let w = self.commit.durable(seq);
                deferral.pending = Some(match deferral.pending.take() {
                    Some(l) => l.latest(w),
                    None => w,
                });
                true
            }
            None => false,
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
