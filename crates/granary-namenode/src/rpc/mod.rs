//! The namenode's gRPC services.

pub mod client_service;
pub mod datanode_service;

use granary_common::ErrorCode;
use granary_common::error::status;

/// Runs blocking namespace work off the async executor.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, tonic::Status>
where
    F: FnOnce() -> Result<T, crate::error::NnError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Into::into),
        Err(e) => Err(status(ErrorCode::Internal, format!("namenode task failed: {e}"))),
    }
}
