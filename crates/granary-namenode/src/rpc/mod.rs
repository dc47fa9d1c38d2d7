//! The namenode's gRPC services.

pub mod client_service;
pub mod datanode_service;

use granary_common::ErrorCode;
use granary_common::error::status;

use crate::error::NnError;
use crate::namespace::deferring_durability;

/// Runs blocking namespace work off the async executor. Its mutations'
/// fsync is awaited here, after the pooled thread is released, so a call
/// waiting for the disk holds no thread (docs/performance.md).
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, tonic::Status>
where
    F: FnOnce() -> Result<T, NnError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(move || deferring_durability(f)).await {
        Ok((r, pending)) => {
            if let Some(p) = pending {
                // A failed fsync outranks the answer: the change may be lost.
                p.wait().await.map_err(NnError::from)?;
            }
            r.map_err(Into::into)
        }
        Err(e) => Err(status(ErrorCode::Internal, format!("namenode task failed: {e}"))),
    }
}
