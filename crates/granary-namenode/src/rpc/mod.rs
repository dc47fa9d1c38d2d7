//! The namenode's gRPC services.

pub mod client_service;
pub mod datanode_service;
pub mod mutation_queue;

use granary_common::ErrorCode;
use granary_common::error::status;

use crate::error::NnError;
use crate::namespace::{AfterDurable, Deferred, deferring_durability};
use crate::state::NamenodeState;
use mutation_queue::Done;

/// Runs blocking namespace work off the async executor. Its mutations'
/// fsync is awaited here, after the pooled thread is released, so a call
/// waiting for the disk holds no thread (docs/performance.md); then the
/// work that had to wait for it runs.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, tonic::Status>
where
    F: FnOnce() -> Result<T, NnError> + Send + 'static,
    T: Send + 'static,
{
    let (r, deferred) = on_pool(f).await?;
    finish(when_durable(r, deferred).await?).await
}

/// Runs `f` on tokio's blocking pool inside [`deferring_durability`].
async fn on_pool<T, F>(f: F) -> Result<(Result<T, NnError>, Deferred), tonic::Status>
where
    F: FnOnce() -> Result<T, NnError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || deferring_durability(f))
        .await
        .map_err(task_failed)
}

/// Like [`blocking`] for short namespace mutations, which run on the
/// namenode's mutation thread instead of the blocking pool.
pub(crate) async fn mutating<T, F>(st: &NamenodeState, f: F) -> Result<T, tonic::Status>
where
    F: FnOnce() -> Result<T, NnError> + Send + 'static,
    T: Send + 'static,
{
    finish(st.mutations.run(f).await?).await
}

/// Awaits the writes a call left pending.
async fn when_durable<T>(r: Result<T, NnError>, deferred: Deferred) -> Result<Done<T>, tonic::Status> {
    if let Some(p) = deferred.pending {
        // A failed fsync outranks the answer: the change may be lost.
        p.wait().await.map_err(NnError::from)?;
    }
    Ok((r, deferred.after))
}

/// Runs the work that waited for a call's durable writes, then answers.
async fn finish<T>((r, after): Done<T>) -> Result<T, tonic::Status> {
    run_after(after).await?;
    r.map_err(Into::into)
}

/// Runs work that waited for durability; heavy work on the blocking pool.
async fn run_after(after: Vec<AfterDurable>) -> Result<(), tonic::Status> {
    if after.iter().any(|a| a.heavy) {
        tokio::task::spawn_blocking(move || after.into_iter().for_each(|a| (a.run)()))
            .await
            .map_err(task_failed)
    } else {
        after.into_iter().for_each(|a| (a.run)());
        Ok(())
    }
}

fn task_failed(e: tokio::task::JoinError) -> tonic::Status {
    status(ErrorCode::Internal, format!("namenode task failed: {e}"))
}
