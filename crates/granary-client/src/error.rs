use granary_common::{ErrorCode, HasErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to namenode at {addr}: {source}")]
    Connect {
        addr: String,
        source: tonic::transport::Error,
    },
    /// The server refused the call; `message` names the path and the reason.
    #[error("{message}")]
    Remote { code: ErrorCode, message: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl HasErrorCode for ClientError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Connect { .. } => ErrorCode::Unavailable,
            Self::Remote { code, .. } => *code,
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Self::Protocol(_) | Self::Io(_) => ErrorCode::Internal,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(st: tonic::Status) -> Self {
        let code = ErrorCode::from_status(&st);
        let message = match st.code() {
            tonic::Code::Unavailable
                if st
                    .metadata()
                    .get(granary_common::error::ERROR_CODE_METADATA)
                    .is_none() =>
            {
                format!("unavailable: {}", st.message())
            }
            _ => st.message().to_string(),
        };
        Self::Remote { code, message }
    }
}
