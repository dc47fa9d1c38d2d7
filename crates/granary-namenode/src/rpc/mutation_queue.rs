//! One thread that runs the RPC handlers' namespace mutations back to back.
//!
//! Mutations serialize on the namespace lock anyway. On the blocking pool,
//! every call woke a pooled thread and most then parked on the lock and were
//! woken again when it came free: two thread switches per mutation, the top
//! of the profile with 64 clients on 2 cores. This thread takes the next job
//! without being woken while it is busy and never contends for the lock
//! with another handler. Nothing here waits for an fsync: the jobs run
//! inside [`deferring_durability`] and the handler awaits it (see
//! [`super::blocking`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::error::NnError;
use crate::namespace::{Deferred, deferring_durability};

type Job = Box<dyn FnOnce() + Send>;

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

    /// Runs `f` on the mutation thread; returns its result and the writes
    /// (and work) it left for the caller to await.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<(Result<T, NnError>, Deferred), tonic::Status>
    where
        F: FnOnce() -> Result<T, NnError> + Send + 'static,
        T: Send + 'static,
    {
        let Some(jobs) = &self.jobs else {
            return super::on_pool(f).await;
        };
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(deferring_durability(f));
        });
        self.load.queued.fetch_add(1, Ordering::Relaxed);
        jobs.send(job).map_err(|_| {
            self.load.queued.fetch_sub(1, Ordering::Relaxed);
            granary_common::error::status(
                granary_common::ErrorCode::Unavailable,
                "the namenode is shutting down",
            )
        })?;
        answer.await.map_err(|_| {
            granary_common::error::status(
                granary_common::ErrorCode::Internal,
                "namenode mutation failed (a handler panicked)",
            )
        })
    }
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
        let first = q.run(move || {
            o.lock().push(1);
            Ok(1)
        });
        let panicking = q.run(|| -> Result<u32, NnError> { panic!("handler bug") });
        let o = order.clone();
        let last = q.run(move || {
            o.lock().push(3);
            Ok(3)
        });
        let (first, panicking, last) = tokio::join!(first, panicking, last);
        let (r, deferred) = first.expect("first mutation ran");
        assert_eq!(r.expect("ok"), 1);
        assert!(deferred.pending.is_none(), "nothing was written");
        let err = panicking.err().expect("the panicking call fails");
        assert_eq!(err.code(), tonic::Code::Internal);
        assert!(err.message().contains("panicked"), "{}", err.message());
        assert_eq!(last.expect("later mutation ran").0.expect("ok"), 3);
        assert_eq!(*order.lock(), vec![1, 3]);
    }
}
