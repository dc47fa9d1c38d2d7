use std::time::Duration;

use granary_common::{ErrorCode, HasErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to namenode at {addr}: {source}")]
    Connect {
        addr: String,
        source: tonic::transport::Error,
    },
    /// None of several namenodes accepted a connection within the failover
    /// timeout; `last` is the last one's failure, with its causes.
    #[error("cannot connect to namenode at {} (tried for {:.1} s): {last}", .addrs.join(", "), .waited.as_secs_f64())]
    ConnectAny {
        addrs: Vec<String>,
        waited: Duration,
        last: String,
    },
    /// No namenode of several served a call within the failover timeout:
    /// each was unreachable or a standby.
    #[error("no namenode served the call (tried {} for {:.1} s); last error, from {last_addr}: {last}", .tried.join(", "), .waited.as_secs_f64())]
    NoNamenode {
        tried: Vec<String>,
        waited: Duration,
        last_addr: String,
        last: Box<ClientError>,
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

impl ClientError {
    /// The cluster error an I/O error from a file reader or writer carries,
    /// if it carries one (the namenode refused a block, a quota, ...).
    pub fn inside(e: &std::io::Error) -> Option<&ClientError> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<ClientError>())
    }
}

impl HasErrorCode for ClientError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Connect { .. } | Self::ConnectAny { .. } => ErrorCode::Unavailable,
            // Still only standbys: no leader yet.
            Self::NoNamenode { last, .. } if last.code() == ErrorCode::Standby => ErrorCode::Standby,
            Self::NoNamenode { .. } => ErrorCode::Unavailable,
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

/// `e` and its causes, `: `-separated (a transport error alone says only
/// "transport error").
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_str = c.to_string();
        if !s.ends_with(&c_str) {
            s.push_str(": ");
            s.push_str(&c_str);
        }
        cause = c.source();
    }
    s
}
