//! One set of error codes for gRPC, HTTP (web UI, WebHDFS) and the CLI, so a
//! failure is reported the same way whichever door it came through.

use std::fmt;

/// Metadata key carrying [`ErrorCode::name`] on every error status.
pub const ERROR_CODE_METADATA: &str = "x-granary-error";

/// Metadata key a namenode that is not the leader of its group puts on a
/// [`ErrorCode::Standby`] status: the client RPC address (`host:port`) of
/// the leader it knows of, if any. Clients retry there.
pub const LEADER_METADATA: &str = "x-granary-leader";

/// A failure class. Each maps to one gRPC code, one HTTP status and the Java
/// exception name HDFS clients (WebHDFS) expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidPath,
    InvalidArgument,
    FileNotFound,
    FileAlreadyExists,
    ParentNotDirectory,
    PathIsDirectory,
    PathIsNotEmptyDirectory,
    AccessControl,
    SafeMode,
    LeaseConflict,
    NotEnoughReplicas,
    /// A directory's name quota (files and directories) would be crossed.
    NsQuotaExceeded,
    /// A directory's space quota (bytes times replication) would be crossed.
    DsQuotaExceeded,
    /// A snapshot call that cannot be done (no such snapshot, not a
    /// snapshottable directory, a name taken, ...).
    Snapshot,
    /// A change asked of a path inside a read-only snapshot.
    SnapshotAccess,
    Checksum,
    Unsupported,
    Unavailable,
    /// The caller did not prove who it is (a datanode without a session).
    Unauthenticated,
    /// A namenode that is not its group's leader was asked to serve a
    /// client (HDFS's StandbyException): retry on the leader.
    Standby,
    Internal,
}

impl ErrorCode {
    const ALL: [ErrorCode; 21] = [
        Self::InvalidPath,
        Self::InvalidArgument,
        Self::FileNotFound,
        Self::FileAlreadyExists,
        Self::ParentNotDirectory,
        Self::PathIsDirectory,
        Self::PathIsNotEmptyDirectory,
        Self::AccessControl,
        Self::SafeMode,
        Self::LeaseConflict,
        Self::NotEnoughReplicas,
        Self::NsQuotaExceeded,
        Self::DsQuotaExceeded,
        Self::Snapshot,
        Self::SnapshotAccess,
        Self::Checksum,
        Self::Unsupported,
        Self::Unavailable,
        Self::Unauthenticated,
        Self::Standby,
        Self::Internal,
    ];

    pub fn grpc(self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::InvalidPath | Self::InvalidArgument => Code::InvalidArgument,
            Self::FileNotFound => Code::NotFound,
            Self::FileAlreadyExists => Code::AlreadyExists,
            Self::ParentNotDirectory
            | Self::PathIsDirectory
            | Self::PathIsNotEmptyDirectory
            | Self::LeaseConflict
            | Self::Snapshot => Code::FailedPrecondition,
            Self::AccessControl | Self::SnapshotAccess => Code::PermissionDenied,
            Self::SafeMode | Self::NotEnoughReplicas | Self::Unavailable | Self::Standby => Code::Unavailable,
            Self::Checksum => Code::DataLoss,
            Self::NsQuotaExceeded | Self::DsQuotaExceeded => Code::ResourceExhausted,
            Self::Unsupported => Code::Unimplemented,
            Self::Unauthenticated => Code::Unauthenticated,
            Self::Internal => Code::Internal,
        }
    }

    /// The status WebHDFS answers with (Hadoop's `ExceptionHandler`).
    pub fn http(self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Self::InvalidPath | Self::InvalidArgument | Self::Unsupported => StatusCode::BAD_REQUEST,
            Self::FileNotFound => StatusCode::NOT_FOUND,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// The Java exception HDFS raises for the same failure.
    pub fn java_exception(self) -> &'static str {
        match self {
            Self::InvalidPath => "InvalidPathException",
            Self::InvalidArgument => "IllegalArgumentException",
            Self::FileNotFound => "FileNotFoundException",
            Self::FileAlreadyExists => "FileAlreadyExistsException",
            Self::ParentNotDirectory => "ParentNotDirectoryException",
            Self::PathIsDirectory => "PathIsDirectoryException",
            Self::PathIsNotEmptyDirectory => "PathIsNotEmptyDirectoryException",
            Self::AccessControl => "AccessControlException",
            Self::SafeMode => "SafeModeException",
            Self::LeaseConflict => "AlreadyBeingCreatedException",
            Self::NotEnoughReplicas => "NotReplicatedYetException",
            Self::Checksum => "ChecksumException",
            Self::NsQuotaExceeded => "NSQuotaExceededException",
            Self::DsQuotaExceeded => "DSQuotaExceededException",
            Self::Snapshot => "SnapshotException",
            Self::SnapshotAccess => "SnapshotAccessControlException",
            Self::Unsupported => "UnsupportedOperationException",
            Self::Unavailable => "RetriableException",
            Self::Unauthenticated => "SecurityException",
            Self::Standby => "StandbyException",
            Self::Internal => "IOException",
        }
    }

    /// The fully qualified class of [`java_exception`](Self::java_exception),
    /// as WebHDFS puts it in `RemoteException.javaClassName`.
    pub fn java_class_name(self) -> &'static str {
        match self {
            Self::InvalidPath => "org.apache.hadoop.fs.InvalidPathException",
            Self::InvalidArgument => "java.lang.IllegalArgumentException",
            Self::FileNotFound => "java.io.FileNotFoundException",
            Self::FileAlreadyExists => "org.apache.hadoop.fs.FileAlreadyExistsException",
            Self::ParentNotDirectory => "org.apache.hadoop.fs.ParentNotDirectoryException",
            Self::PathIsDirectory => "org.apache.hadoop.fs.PathIsDirectoryException",
            Self::PathIsNotEmptyDirectory => "org.apache.hadoop.fs.PathIsNotEmptyDirectoryException",
            Self::AccessControl => "org.apache.hadoop.security.AccessControlException",
            Self::SafeMode => "org.apache.hadoop.hdfs.server.namenode.SafeModeException",
            Self::LeaseConflict => "org.apache.hadoop.hdfs.protocol.AlreadyBeingCreatedException",
            Self::NotEnoughReplicas => "org.apache.hadoop.hdfs.server.namenode.NotReplicatedYetException",
            Self::Checksum => "org.apache.hadoop.fs.ChecksumException",
            Self::NsQuotaExceeded => "org.apache.hadoop.hdfs.protocol.NSQuotaExceededException",
            Self::DsQuotaExceeded => "org.apache.hadoop.hdfs.protocol.DSQuotaExceededException",
            Self::Snapshot => "org.apache.hadoop.hdfs.protocol.SnapshotException",
            Self::SnapshotAccess => "org.apache.hadoop.hdfs.protocol.SnapshotAccessControlException",
            Self::Unsupported => "java.lang.UnsupportedOperationException",
            Self::Unavailable => "org.apache.hadoop.ipc.RetriableException",
            Self::Unauthenticated => "java.lang.SecurityException",
            Self::Standby => "org.apache.hadoop.ipc.StandbyException",
            Self::Internal => "java.io.IOException",
        }
    }

    pub fn name(self) -> &'static str {
        self.java_exception()
    }

    /// The code whose [`name`](Self::name) this is.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.name() == name)
    }

    /// Recovers the code from a status built by [`status`]; statuses from
    /// elsewhere fall back on their gRPC code.
    pub fn from_status(status: &tonic::Status) -> ErrorCode {
        if let Some(code) = status
            .metadata()
            .get(ERROR_CODE_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(Self::from_name)
        {
            return code;
        }
        use tonic::Code;
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange => Self::InvalidArgument,
            Code::NotFound => Self::FileNotFound,
            Code::AlreadyExists => Self::FileAlreadyExists,
            Code::PermissionDenied => Self::AccessControl,
            Code::Unauthenticated => Self::Unauthenticated,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => Self::Unavailable,
            Code::Unimplemented => Self::Unsupported,
            Code::DataLoss => Self::Checksum,
            _ => Self::Internal,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Implemented by every library error enum: its one mapping onto [`ErrorCode`].
pub trait HasErrorCode: std::error::Error {
    fn code(&self) -> ErrorCode;
}

/// Longest error message sent: it travels in an HTTP/2 header (percent
/// encoded, up to three times longer), and a message quoting a huge path
/// would otherwise break the response itself.
pub const MAX_MESSAGE: usize = 2048;

/// `message` cut to [`MAX_MESSAGE`] bytes (on a character boundary), saying so.
pub fn bounded_message(message: String) -> String {
    if message.len() <= MAX_MESSAGE {
        return message;
    }
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes cut)", &message[..end], message.len() - end)
}

/// A gRPC status for `code` with the code's name in metadata.
pub fn status(code: ErrorCode, message: impl Into<String>) -> tonic::Status {
    let mut st = tonic::Status::new(code.grpc(), bounded_message(message.into()));
    st.metadata_mut().insert(
        ERROR_CODE_METADATA,
        tonic::metadata::MetadataValue::from_static(code.name()),
    );
    st
}

/// A [`ErrorCode::Standby`] status naming the leader's client address
/// when the namenode knows it.
pub fn standby_status(message: impl Into<String>, leader: Option<&str>) -> tonic::Status {
    let mut st = status(ErrorCode::Standby, message);
    if let Some(v) = leader.and_then(|l| tonic::metadata::MetadataValue::try_from(l).ok()) {
        st.metadata_mut().insert(LEADER_METADATA, v);
    }
    st
}

/// The leader address a [`standby_status`] names.
pub fn leader_hint(status: &tonic::Status) -> Option<String> {
    let v = status.metadata().get(LEADER_METADATA)?.to_str().ok()?;
    (!v.is_empty()).then(|| v.to_string())
}

/// Converts any library error into a status that keeps its code.
pub fn to_status<E: HasErrorCode>(err: E) -> tonic::Status {
    status(err.code(), err.to_string())
}

/// A status's message with the errors that caused it ("transport error:
/// TLS with nn1:8020: received fatal alert: ..."): a status made from a
/// connection failure says only "transport error" itself.
pub fn with_causes(st: &tonic::Status) -> String {
    let mut out = st.message().to_string();
    let mut next = std::error::Error::source(st);
    while let Some(e) = next {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_survives_a_round_trip_through_a_status() {
        for code in ErrorCode::ALL {
            let st = status(code, "x");
            assert_eq!(ErrorCode::from_status(&st), code, "{code}");
            assert_eq!(st.code(), code.grpc());
        }
    }

    #[test]
    fn a_standby_status_names_the_leader() {
        let st = standby_status("nn2 is not the leader", Some("10.0.0.1:8020"));
        assert_eq!(ErrorCode::from_status(&st), ErrorCode::Standby);
        assert_eq!(leader_hint(&st).as_deref(), Some("10.0.0.1:8020"));
        assert_eq!(leader_hint(&standby_status("no leader yet", None)), None);
    }

    #[test]
    fn huge_messages_are_cut_on_a_character_boundary() {
        let m = format!("/{}: No such file or directory", "é".repeat(20_000));
        let st = status(ErrorCode::FileNotFound, m);
        assert!(st.message().len() < MAX_MESSAGE + 40, "{}", st.message().len());
        assert!(
            st.message().ends_with("bytes cut)"),
            "{}",
            &st.message()[st.message().len() - 30..]
        );
        assert_eq!(status(ErrorCode::Internal, "short").message(), "short");
    }

    #[test]
    fn foreign_statuses_fall_back_on_grpc_code() {
        let st = tonic::Status::not_found("gone");
        assert_eq!(ErrorCode::from_status(&st), ErrorCode::FileNotFound);
        assert_eq!(ErrorCode::FileNotFound.http(), http::StatusCode::NOT_FOUND);
    }
}
