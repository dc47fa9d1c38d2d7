//! Group commit: mutations are appended to RocksDB's WAL (its buffer in
//! memory, with `manual_wal_flush`) under the namespace lock, then each
//! caller waits, outside the lock, until one sync (the buffer written out
//! and fsynced) covers its write. Concurrent writers share fsyncs, so throughput
//! grows with concurrency instead of being capped at one fsync per op
//! (the same split as HDFS's logEdit / logSync).
//!
//! The fsyncs run on one syncer thread, back to back while writes keep
//! coming: the next fsync starts the moment the last one ends, instead of
//! after a woken writer thread gets a core to lead it (docs/performance.md).
//!
//! Async callers (the gRPC handlers) do not park a thread for the fsync:
//! they take a [`Durable`] for their write and await it; a finished sync
//! wakes their tasks, a few executor threads at most, not one thread each.
//! A caller that must not wait at all (the mutation thread) leaves a
//! callback with [`Durable::then`], which the syncer runs: the one who
//! waits for the mutation's answer is then woken once, when it is durable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{JoinHandle, Thread};

use parking_lot::{Condvar, Mutex};

/// Told the outcome of the sync that covers its write; runs on the syncer
/// thread, so it must be short (a channel send).
type Callback<E> = Box<dyn FnOnce(Result<(), E>) + Send>;

struct State<E> {
    written: u64,
    /// Threads blocked in `Durable::wait_blocking`, with the write each waits for.
    waiters: Vec<(u64, Thread)>,
    /// Left by [`Durable::then`], with the write each waits for.
    callbacks: Vec<(u64, Callback<E>)>,
    /// The last failed sync: the writes it was to cover, and why.
    failed: Option<(u64, E)>,
    /// The syncer waits for writes.
    idle: bool,
    stop: bool,
}

/// A finished sync unparks exactly the threads it made durable, all at
/// once; they see that from `durable` without taking the state lock again.
/// (A condition variable would wake them one after another, each waiting
/// for the one before to release the lock: a chain of context switches.)
struct Shared<E> {
    state: Mutex<State<E>>,
    /// Writes made durable so far. Stored only by the syncer, under the
    /// state lock; read without it by woken waiters.
    durable: AtomicU64,
    work: Condvar,
    /// Async waiters, woken after every sync.
    tasks: tokio::sync::Notify,
}

impl<E: Clone> Shared<E> {
    /// Whether write `seq` is durable (or its sync failed); if not yet, makes
    /// sure the syncer is running.
    fn outcome(&self, s: &mut State<E>, seq: u64) -> Option<Result<(), E>> {
        if self.durable.load(Ordering::Acquire) >= seq {
            return Some(Ok(()));
        }
        if let Some((upto, e)) = &s.failed
            && *upto >= seq
        {
            return Some(Err(e.clone()));
        }
        if s.idle {
            s.idle = false;
            self.work.notify_one();
        }
        None
    }
}

/// One write whose durability its caller awaits (see [`GroupCommit::durable`]).
pub struct Durable<E> {
    shared: Arc<Shared<E>>,
    seq: u64,
}

impl<E: Clone> Durable<E> {
    /// The later of two writes (of one group commit): once it is durable,
    /// so is the earlier.
    pub fn latest(self, other: Self) -> Self {
        debug_assert!(Arc::ptr_eq(&self.shared, &other.shared));
        if other.seq > self.seq { other } else { self }
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Waits, without blocking a thread, until the write is durable, or
    /// returns why the sync meant to cover it failed.
    pub async fn wait(self) -> Result<(), E> {
        loop {
            let notified = self.shared.tasks.notified();
            tokio::pin!(notified);
            // Registered before the check, so a sync ending in between still wakes us.
            notified.as_mut().enable();
            let done = {
                let mut s = self.shared.state.lock();
                self.shared.outcome(&mut s, self.seq)
            };
            if let Some(r) = done {
                return r;
            }
            notified.await;
        }
    }

    /// Blocks this (non-async) thread until the write is durable, or
    /// returns why the sync meant to cover it failed.
    pub fn wait_blocking(&self) -> Result<(), E> {
        let mut listed = false;
        loop {
            {
                let mut s = self.shared.state.lock();
                if let Some(r) = self.shared.outcome(&mut s, self.seq) {
                    return r;
                }
                // The syncer unlists a waiter only with the sync that decides
                // it (outcome then answers), so a stale or spurious unpark
                // brings it back here still listed.
                if !listed {
                    s.waiters.push((self.seq, std::thread::current()));
                    listed = true;
                }
            }
            std::thread::park();
            if self.shared.durable.load(Ordering::Acquire) >= self.seq {
                return Ok(());
            }
        }
    }

    /// Calls `f` with the outcome once the write is durable (or its sync
    /// failed): at once if that is known, else on the syncer thread.
    pub fn then(self, f: impl FnOnce(Result<(), E>) + Send + 'static) {
        let mut s = self.shared.state.lock();
        match self.shared.outcome(&mut s, self.seq) {
            Some(r) => {
                drop(s);
                f(r);
            }
            None => s.callbacks.push((self.seq, Box::new(f))),
        }
    }
}

pub struct GroupCommit<E> {
    shared: Arc<Shared<E>>,
    syncer: Option<JoinHandle<()>>,
}

impl<E: Clone + Send + 'static> GroupCommit<E> {
    /// Starts the syncer thread, which calls `sync` to make every write noted
    /// so far durable.
    pub fn start(sync: impl Fn() -> Result<(), E> + Send + 'static) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                written: 0,
                waiters: Vec::new(),
                callbacks: Vec::new(),
                failed: None,
                idle: false,
                stop: false,
            }),
            durable: AtomicU64::new(0),
            work: Condvar::new(),
            tasks: tokio::sync::Notify::new(),
        });
        let s = shared.clone();
        let syncer = std::thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || run_syncer(&s, sync))?;
        Ok(Self {
            shared,
            syncer: Some(syncer),
        })
    }

    /// Records one more write; call under the lock that orders writes.
    pub fn note_write(&self) -> u64 {
        let mut s = self.shared.state.lock();
        s.written += 1;
        s.written
    }

    /// The last write noted so far (0 before the first).
    pub fn last_write(&self) -> u64 {
        self.shared.state.lock().written
    }

    /// Blocks until write `seq` is durable, or returns why the sync meant to
    /// cover it failed.
    pub fn wait_durable(&self, seq: u64) -> Result<(), E> {
        self.durable(seq).wait_blocking()
    }

    /// Write `seq`, for a caller that awaits its durability instead of
    /// blocking in [`Durable::wait_blocking`].
    pub fn durable(&self, seq: u64) -> Durable<E> {
        Durable {
            shared: self.shared.clone(),
            seq,
        }
    }
}

fn run_syncer<E: Clone>(shared: &Shared<E>, sync: impl Fn() -> Result<(), E>) {
    let mut woken = Vec::new();
    let mut told = Vec::new();
    let mut s = shared.state.lock();
    loop {
        let synced = shared.durable.load(Ordering::Acquire);
        if s.written == synced || s.failed.as_ref().is_some_and(|(upto, _)| *upto == s.written) {
            if s.stop {
                return;
            }
            s.idle = true;
            shared.work.wait(&mut s);
            continue;
        }
        let target = s.written;
        drop(s);
        let res = sync();
        s = shared.state.lock();
        let outcome = match res {
            Ok(()) => {
                shared.durable.store(target, Ordering::Release);
                s.failed = None;
                Ok(())
            }
            Err(e) => {
                s.failed = Some((target, e.clone()));
                Err(e)
            }
        };
        woken.extend(
            s.waiters
                .extract_if(.., |(seq, _)| *seq <= target)
                .map(|(_, t)| t),
        );
        told.extend(
            s.callbacks
                .extract_if(.., |(seq, _)| *seq <= target)
                .map(|(_, f)| f),
        );
        drop(s);
        for t in woken.drain(..) {
            t.unpark();
        }
        for f in told.drain(..) {
            f(outcome.clone());
        }
        shared.tasks.notify_waiters();
        s = shared.state.lock();
    }
}

impl<E> Drop for GroupCommit<E> {
    /// Syncs what is still pending, then stops the syncer.
    fn drop(&mut self) {
        {
            let mut s = self.shared.state.lock();
            s.stop = true;
            s.idle = false;
            self.shared.work.notify_one();
        }
        if let Some(t) = self.syncer.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn concurrent_writers_share_syncs_and_all_become_durable() {
        let syncs = Arc::new(AtomicU64::new(0));
        let counted = syncs.clone();
        let gc = Arc::new(
            GroupCommit::<()>::start(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_micros(200));
                Ok(())
            })
            .unwrap(),
        );
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let gc = gc.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        let seq = gc.note_write();
                        gc.wait_durable(seq).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(gc.shared.durable.load(Ordering::SeqCst), 1600);
        assert!(syncs.load(Ordering::SeqCst) < 1600, "no sharing of syncs");
    }

    #[test]
    fn a_failed_sync_is_reported_and_a_later_one_covers_the_write() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let f = fail.clone();
        let gc = GroupCommit::start(move || {
            if f.load(Ordering::SeqCst) {
                Err("disk gone")
            } else {
                Ok(())
            }
        })
        .unwrap();
        let seq = gc.note_write();
        assert_eq!(gc.wait_durable(seq), Err("disk gone"));
        fail.store(false, Ordering::SeqCst);
        let later = gc.note_write();
        assert_eq!(gc.wait_durable(later), Ok(()));
        assert_eq!(
            gc.wait_durable(seq),
            Ok(()),
            "the later sync covers the earlier write"
        );
    }

    /// A write made while a sync runs is not covered by it: the next sync,
    /// started as soon as that one ends, covers it.
    #[test]
    fn a_write_made_during_a_sync_is_synced_by_the_next_one() {
        let (running, started) = std::sync::mpsc::channel();
        let syncs = Arc::new(AtomicU64::new(0));
        let counted = syncs.clone();
        let gc = Arc::new(
            GroupCommit::<()>::start(move || {
                if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                    running.send(()).expect("signal");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Ok(())
            })
            .unwrap(),
        );
        let first = gc.note_write();
        let later = {
            let gc = gc.clone();
            std::thread::spawn(move || {
                started.recv().expect("first sync started");
                let seq = gc.note_write();
                gc.wait_durable(seq).expect("durable");
            })
        };
        gc.wait_durable(first).expect("durable");
        later.join().expect("later writer");
        assert_eq!(gc.shared.durable.load(Ordering::SeqCst), 2);
        assert_eq!(syncs.load(Ordering::SeqCst), 2);
    }

    /// An async caller's wait ends with the sync that covers its write, not
    /// before, and reports a failed sync; no thread blocks meanwhile.
    #[test]
    fn an_async_wait_ends_when_a_sync_covers_the_write() {
        let (release, gate) = std::sync::mpsc::channel::<Result<(), &'static str>>();
        let gate = Mutex::new(gate);
        let gc = GroupCommit::start(move || gate.lock().recv().unwrap_or(Ok(()))).expect("start");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let first = gc.note_write();
            let wait = tokio::spawn(gc.durable(first).wait());
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            assert!(!wait.is_finished(), "durable before any sync ended");
            release.send(Ok(())).expect("release");
            let r = tokio::time::timeout(std::time::Duration::from_secs(10), wait).await;
            assert_eq!(r.expect("woken").expect("task"), Ok(()));

            let second = gc.note_write();
            release.send(Err("disk gone")).expect("release");
            let r = tokio::time::timeout(std::time::Duration::from_secs(10), gc.durable(second).wait()).await;
            assert_eq!(r.expect("woken"), Err("disk gone"));
            assert_eq!(
                gc.durable(first).wait().await,
                Ok(()),
                "an earlier durable write stays durable"
            );
        });
        drop(release);
    }

    /// A callback left for a write is told by the sync that covers it, not
    /// before; a failed sync tells it so; a write known durable is told at once.
    #[test]
    fn a_callback_is_told_when_a_sync_covers_its_write() {
        let (release, gate) = std::sync::mpsc::channel::<Result<(), &'static str>>();
        let gate = Mutex::new(gate);
        let gc = GroupCommit::start(move || gate.lock().recv().unwrap_or(Ok(()))).expect("start");
        let (tell, told) = std::sync::mpsc::channel();
        let first = gc.note_write();
        let t = tell.clone();
        gc.durable(first).then(move |r| t.send(r).expect("send"));
        let wait = std::time::Duration::from_millis(100);
        assert!(told.recv_timeout(wait).is_err(), "told before any sync ended");
        release.send(Ok(())).expect("release");
        let ten = std::time::Duration::from_secs(10);
        assert_eq!(told.recv_timeout(ten).expect("told"), Ok(()));

        let second = gc.note_write();
        let t = tell.clone();
        gc.durable(second).then(move |r| t.send(r).expect("send"));
        release.send(Err("disk gone")).expect("release");
        assert_eq!(told.recv_timeout(ten).expect("told"), Err("disk gone"));

        gc.durable(first).then(move |r| tell.send(r).expect("send"));
        assert_eq!(
            told.try_recv().expect("told at once"),
            Ok(()),
            "an earlier durable write stays durable"
        );
        drop(release);
    }

    #[test]
    fn dropping_it_syncs_pending_writes_and_stops_the_thread() {
        let syncs = Arc::new(AtomicU64::new(0));
        let counted = syncs.clone();
        let gc = GroupCommit::<()>::start(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        gc.note_write();
        drop(gc);
        assert_eq!(syncs.load(Ordering::SeqCst), 1);
    }
}
