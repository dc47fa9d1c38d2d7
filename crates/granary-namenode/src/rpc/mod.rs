//! The namenode's gRPC services.

pub mod audited;
pub mod authn;
pub mod client_service;
pub mod datanode_service;
pub mod mutation_queue;
pub mod tokens;

use granary_common::ErrorCode;
use granary_common::error::status;

use crate::error::NnError;
use crate::namespace::{AfterDurable, Deferred};
use crate::state::NamenodeState;
use mutation_queue::Done;

/// Runs blocking namespace work off the async executor. The work collects
/// its mutations' writes in the call's [`Deferred`], awaited here after the
/// pooled thread is released, so a call waiting for the disk (or the
/// namenode group) holds no thread (docs/performance.md); then the work
/// that had to wait for them runs.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, tonic::Status>
where
    F: FnOnce(&mut Deferred) -> Result<T, NnError> + Send + 'static,
    T: Send + 'static,
{
    let (r, deferred) = tokio::task::spawn_blocking(move || {
        let mut deferred = Deferred::default();
        let r = f(&mut deferred);
        (r, deferred)
    })
    .await
    .map_err(task_failed)?;
    if let Some(p) = deferred.pending {
        // A failed fsync outranks the answer: the change may be lost.
        p.wait().await?;
    }
    finish((r, deferred.after)).await
}

/// Like [`blocking`] for short namespace mutations, which run on the
/// namenode's mutation thread instead of the blocking pool.
pub(crate) async fn mutating<T, F>(st: &NamenodeState, f: F) -> Result<T, tonic::Status>
where
    F: FnOnce(&mut Deferred) -> Result<T, NnError> + Send + 'static,
    T: Send + 'static,
{
    finish(st.mutations().run(f).await?).await
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
