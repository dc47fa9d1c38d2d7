//! One thread that runs the RPC handlers' namespace mutations back to back.
//!
//! Mutations serialize on the namespace lock anyway. On the blocking pool,
//! every call woke a pooled thread and most then parked on the lock and were
//! woken again when it came free: two thread switches per mutation, the top
//! of the profile with 64 clients on 2 cores. This thread takes the next job
//! without being woken while it is busy and never contends for the lock
//! with another handler. Nothing here waits for an fsync: a job collects
//! its writes in its call's [`Deferred`], and the answer goes to the caller only
//! once the job's writes are durable, sent by the syncer thread
//! ([`Durable::then`](crate::group_commit::Durable::then)), so the caller
//! is woken once per mutation, not once for the answer and again for the
//! fsync.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::error::NnError;
use crate::namespace::{AfterDurable, Deferred};

type Job = Box<dyn FnOnce() + Send>;

/// A mutation's outcome once its writes are durable: its result and the
/// work that waited for them, for the caller to run.
pub(crate) type Done<T> = (Result<T, NnError>, Vec<AfterDurable>);

/// The answer to one job: its outcome, or why its writes may be lost.
type Answer<T> = oneshot::Receiver<Result<Done<T>, NnError>>;

pub struct MutationQueue {
    /// `None` when the thread could not be started: jobs use the blocking pool.
    jobs: Option<mpsc::UnboundedSender<Job>>,
    load: Arc<Load>,
}

/// What `/metrics` shows of the thread: whether it is the bottleneck.
#[derive(Default)]
struct Load {
    /// Jobs sent and not yet finished (waiting or running).
    queued: AtomicU64,
    busy_nanos: AtomicU64,
}

impl MutationQueue {
    pub fn start() -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let load = Arc::new(Load::default());
        let l = load.clone();
        let spawned = std::thread::Builder::new()
            .name("nn-mutations".into())
            .spawn(move || {
                // Ends when the namenode state (the only sender) is dropped.
                while let Some(job) = rx.blocking_recv() {
                    let start = std::time::Instant::now();
                    // A panicking handler fails its own call (its reply is
                    // dropped), not every later mutation.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    let took = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    l.busy_nanos.fetch_add(took, Ordering::Relaxed);
                    l.queued.fetch_sub(1, Ordering::Relaxed);
                }
            });
        match spawned {
            Ok(_) => Self { jobs: Some(tx), load },
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the mutation thread; mutations run on the blocking pool");
                Self { jobs: None, load }
            }
        }
    }

    /// Mutations waiting for the thread or running on it.
    pub fn queued(&self) -> u64 {
        self.load.queued.load(Ordering::Relaxed)
    }

    /// Seconds the thread has spent running mutations since start; its rate
    /// near 1 means the thread is saturated.
    pub fn busy_seconds(&self) -> f64 {
        self.load.busy_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Runs `f` on the mutation thread; returns once its writes are durable.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<Done<T>, tonic::Status>
    where
        F: FnOnce(&mut Deferred) -> Result<T, NnError> + Send + 'static,
        T: Send + 'static,
    {
        let (job, answer) = job(f);
        match &self.jobs {
            Some(jobs) => {
                self.load.queued.fetch_add(1, Ordering::Relaxed);
                jobs.send(job).map_err(|_| {
                    self.load.queued.fetch_sub(1, Ordering::Relaxed);
                    NnError::ShuttingDown
                })?;
            }
            // Answered the same way from the blocking pool.
            None => drop(tokio::task::spawn_blocking(job)),
        }
        // A failed fsync outranks the answer: the change may be lost.
        Ok(answer.await.map_err(|_| dropped())??)
    }
}

/// `f` as a job, and where its answer arrives once its writes are durable.
fn job<T, F>(f: F) -> (Job, Answer<T>)
where
    F: FnOnce(&mut Deferred) -> Result<T, NnError> + Send + 'static,
    T: Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let rt = tokio::runtime::Handle::try_current().ok();
    let job: Job = Box::new(move || {
        let mut deferred = Deferred::default();
        let r = f(&mut deferred);
        let after = deferred.after;
        let tell = move |synced: Result<(), NnError>| {
            if let Err(Ok((_, after))) = reply.send(synced.map(|()| (r, after))) {
                // The caller is gone (its client cancelled the call), but
                // the change happened: what had to follow it still must.
                run_orphaned(rt, after);
            }
        };
        match deferred.pending {
            Some(p) => p.then(tell),
            None => tell(Ok(())),
        }
    });
    (job, answer)
}

/// Runs the after-durability work of a call whose caller is gone, off the
/// thread that noticed (the syncer or the mutation thread).
fn run_orphaned(rt: Option<tokio::runtime::Handle>, after: Vec<AfterDurable>) {
    if after.is_empty() {
        return;
    }
    let run = move || after.into_iter().for_each(|a| (a.run)());
    match rt {
        Some(rt) => drop(rt.spawn_blocking(run)),
        None => run(),
    }
}

/// The job's answer was dropped unsent: it panicked, or the namenode
/// stopped before its writes were synced.
fn dropped() -> NnError {
    NnError::Internal("namenode mutation failed (a handler panicked or the namenode is stopping)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler that panics fails its own call with a clear status, and
    /// the mutations queued after it still run, in order.
    #[tokio::test]
    async fn a_panicking_mutation_fails_alone_and_later_ones_run_in_order() {
        let q = MutationQueue::start();
        let order = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let o = order.clone();
        let first = q.run(move |_| {
            o.lock().push(1);
            Ok(1)
        });
        let panicking = q.run(|_| -> Result<u32, NnError> { panic!("handler bug") });
        let o = order.clone();
        let last = q.run(move |_| {
            o.lock().push(3);
            Ok(3)
        });
        let (first, panicking, last) = tokio::join!(first, panicking, last);
        let (r, after) = first.expect("first mutation ran");
        assert_eq!(r.expect("ok"), 1);
        assert!(after.is_empty(), "nothing waited for durability");
        let err = panicking.err().expect("the panicking call fails");
        assert_eq!(err.code(), tonic::Code::Internal);
        assert!(err.message().contains("panicked"), "{}", err.message());
        assert_eq!(last.expect("later mutation ran").0.expect("ok"), 3);
        assert_eq!(*order.lock(), vec![1, 3]);
    }

    /// The answer comes once the mutation is durable, with the work that
    /// waited for it; and when the caller is gone before that (its client
    /// cancelled the call), that work still runs: a deleted file's replicas
    /// must still be deleted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_after_a_durable_mutation_runs_also_when_its_caller_is_gone() {
        use crate::namespace::{Namespace, NamespaceConfig};
        use granary_common::identity::Identity;
        use std::sync::atomic::AtomicBool;

        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = NamespaceConfig {
            superuser: "hdfs".into(),
            ..Default::default()
        };
        let ns = Arc::new(Namespace::create_new(tmp.path(), cfg, &Default::default()).expect("namespace"));
        let su = ns.caller(Identity::new("hdfs"));
        let mutation =
            |path: &'static str, ran: Arc<AtomicBool>, gate: Option<std::sync::mpsc::Receiver<()>>| {
                let (ns, su) = (ns.clone(), su.clone());
                move |call: &mut Deferred| {
                    if let Some(g) = gate {
                        g.recv().expect("gate");
                    }
                    call.take(ns.mkdirs(&su, path, 0, false)?);
                    call.after(false, move || ran.store(true, Ordering::SeqCst));
                    Ok(path)
                }
            };

        // On the mutation thread, and on the blocking pool (the fallback
        // when the thread cannot start).
        let queues = [
            ("/a", "/b", MutationQueue::start()),
            (
                "/c",
                "/d",
                MutationQueue {
                    jobs: None,
                    load: Default::default(),
                },
            ),
        ];
        for (a, b, q) in queues {
            let ran = Arc::new(AtomicBool::new(false));
            let (r, after) = q.run(mutation(a, ran.clone(), None)).await.expect("ran");
            assert_eq!(r.expect("mkdirs"), a);
            assert!(ns.get_file_info(&su, a).is_ok());
            assert_eq!(after.len(), 1, "the waiting work comes with the answer");
            assert!(!ran.load(Ordering::SeqCst), "left for the caller to run");

            let ran = Arc::new(AtomicBool::new(false));
            let (open, gate) = std::sync::mpsc::channel();
            let call = q.run(mutation(b, ran.clone(), Some(gate)));
            // Polled once (the job is queued), then dropped, as tonic drops a
            // cancelled call's handler.
            let cancelled = tokio::time::timeout(std::time::Duration::ZERO, call).await;
            assert!(cancelled.is_err(), "the call was still running");
            open.send(()).expect("open the gate");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !ran.load(Ordering::SeqCst) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the cancelled call's waiting work never ran"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert!(ns.get_file_info(&su, b).is_ok());
        }
    }
}
