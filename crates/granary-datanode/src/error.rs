//! Datanode failures and their one mapping onto [`ErrorCode`]: what a block
//! read, a write pipeline or a replica transfer answers when it fails.

use granary_common::block_token::TokenError;
use granary_common::checksum::ChecksumError;
use granary_common::{ErrorCode, HasErrorCode};

use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum DatanodeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("datanode is not registered with a namenode yet")]
    NotRegistered,
    #[error("block {block_id}: {source}")]
    Token { block_id: u64, source: TokenError },
    #[error("block {block_id}: token is for generation {granted}, not {wanted}")]
    TokenGeneration {
        block_id: u64,
        granted: u64,
        wanted: u64,
    },
    #[error("datanode is busy: {max} transfers are running, its limit (max_transfers)")]
    Busy { max: u32 },
    /// A request or packet that breaks the protocol (bad input from a peer).
    #[error("{0}")]
    BadRequest(String),
    #[error("block {block_id}: {source}")]
    Checksum { block_id: u64, source: ChecksumError },
    #[error("block {block_id}: this replica holds {held} bytes, the block has {wanted}")]
    ShortReplica { block_id: u64, held: u64, wanted: u64 },
    #[error("block {0}: no half-written replica here to recover")]
    NothingToRecover(u64),
    /// The peer went away or stalled, or a node downstream cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// A failure another node reported (a downstream datanode, the write
    /// pipeline's framing), passed on with its code.
    #[error("{message}")]
    Peer { code: ErrorCode, message: String },
    #[error("{0}")]
    Internal(String),
    #[error("blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl HasErrorCode for DatanodeError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Storage(e) => e.code(),
            Self::NotRegistered | Self::Busy { .. } | Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Token { .. } | Self::TokenGeneration { .. } => ErrorCode::AccessControl,
            Self::BadRequest(_) => ErrorCode::InvalidArgument,
            Self::Checksum { .. } | Self::ShortReplica { .. } => ErrorCode::Checksum,
            Self::NothingToRecover(_) => ErrorCode::FileNotFound,
            Self::Peer { code, .. } => *code,
            Self::Internal(_) | Self::Task(_) => ErrorCode::Internal,
        }
    }
}

impl From<tonic::Status> for DatanodeError {
    fn from(st: tonic::Status) -> Self {
        Self::Peer {
            code: ErrorCode::from_status(&st),
            message: st.message().to_string(),
        }
    }
}

impl From<DatanodeError> for tonic::Status {
    fn from(e: DatanodeError) -> Self {
        granary_common::error::to_status(e)
    }
}

impl From<DatanodeError> for granary_common::webhdfs::WebError {
    fn from(e: DatanodeError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

pub type Result<T, E = DatanodeError> = std::result::Result<T, E>;

/// Runs disk work on the blocking pool; a task that panicked or was
/// cancelled is [`DatanodeError::Task`].
pub async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Ok(tokio::task::spawn_blocking(f).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_code_and_message_through_a_status() {
        let e = DatanodeError::Busy { max: 4 };
        let st = tonic::Status::from(e);
        assert_eq!(ErrorCode::from_status(&st), ErrorCode::Unavailable);
        assert_eq!(
            st.message(),
            "datanode is busy: 4 transfers are running, its limit (max_transfers)"
        );
        let back = DatanodeError::from(st);
        assert_eq!(back.code(), ErrorCode::Unavailable);
        let e = DatanodeError::Storage(StorageError::NotFound { block: 7, gs: 1 });
        assert_eq!(tonic::Status::from(e).code(), tonic::Code::NotFound);
        let e = DatanodeError::Token {
            block_id: 7,
            source: TokenError::Expired,
        };
        assert_eq!(e.to_string(), "block 7: block access token expired");
        assert_eq!(e.code(), ErrorCode::AccessControl);
    }

    #[tokio::test]
    async fn a_panicking_blocking_task_is_an_internal_error() {
        let err = blocking(|| -> u32 { panic!("boom") }).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::Internal);
        assert_eq!(blocking(|| 7).await.unwrap(), 7);
    }
}
