//! Namenode failures and their one mapping onto [`ErrorCode`].

use granary_common::path::PathError;
use granary_common::{ErrorCode, HasErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum NnError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("{0}: No such file or directory")]
    NotFound(String),
    #[error("{0}: File exists")]
    AlreadyExists(String),
    #[error("{0}: Not a directory (a parent path component is a file)")]
    ParentNotDirectory(String),
    #[error("{0}: Is a directory")]
    IsDirectory(String),
    #[error("{0}: Not a directory")]
    NotDirectory(String),
    #[error("{0}: Directory is not empty")]
    NotEmpty(String),
    #[error("Permission denied: user={user}, access={access}, inode={inode}")]
    PermissionDenied {
        user: String,
        access: String,
        /// `"/path":owner:group:drwxr-xr-x`, as HDFS prints it.
        inode: String,
    },
    #[error("Permission denied by sticky bit: user={user}, path={inode}, parent={parent}")]
    StickyBit {
        user: String,
        /// The entry, as in [`NnError::PermissionDenied`].
        inode: String,
        /// Its sticky directory, likewise.
        parent: String,
    },
    #[error("cannot rename {src} to {dst}: a directory cannot move into its own subtree")]
    RenameIntoSubtree { src: String, dst: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{path}: no lease held by {client} (file {reason})")]
    NoLease {
        path: String,
        client: String,
        reason: String,
    },
    /// The holder is named only to its own user and the superuser.
    #[error("{path}: file is being written by {}", holder.as_deref().unwrap_or("another client"))]
    LeaseConflict { path: String, holder: Option<String> },
    #[error(
        "Permission denied: user={user} may not act for client {client}: its leases belong to another user"
    )]
    NotLeaseOwner { user: String, client: String },
    #[error("{0}: lease recovery is in progress (datanodes are reporting the last block); try again later")]
    RecoveryInProgress(String),
    #[error("{0}")]
    NotEnoughReplicas(String),
    #[error("name node is in safe mode: {0}")]
    SafeMode(String),
    #[error("metadata store error: {0}")]
    Store(#[from] rocksdb::Error),
    #[error("metadata is corrupt: {0}")]
    Corrupt(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("the namenode is shutting down")]
    ShuttingDown,
    /// This namenode does not lead its group; `leader` is the leader's
    /// client RPC address when known.
    #[error("namenode {node} is not the leader{}", leader.as_deref().map(|l| format!(" (the leader is at {l})")).unwrap_or_else(|| " (no leader is known yet; an election may be running)".into()))]
    Standby { node: String, leader: Option<String> },
    /// A change this leader made was not committed by its group (it lost
    /// its leadership first); it is undone and may be retried.
    #[error("the change was not committed: {0}; retry")]
    NotCommitted(String),
    /// A leadership transfer did not happen; the leader leads on.
    #[error("leadership not handed over: {0}")]
    HandOver(String),
    /// A credential (a delegation token) that proves no one.
    #[error("{0}")]
    Unauthenticated(String),
    #[error(
        "The NameSpace quota (directories and files) of directory {path} is exceeded: quota={quota} file count={count}"
    )]
    NsQuotaExceeded { path: String, quota: i64, count: i64 },
    #[error(
        "The DiskSpace quota of {path} is exceeded: quota = {quota} B = {} but diskspace consumed = {consumed} B = {}",
        granary_common::format::human(*quota as u64),
        granary_common::format::human(*consumed as u64)
    )]
    DsQuotaExceeded { path: String, quota: i64, consumed: i64 },
    /// A snapshot call that cannot be done (HDFS's SnapshotException).
    #[error("{0}")]
    Snapshot(String),
    #[error("{0}: Modification on a read-only snapshot is disallowed (\".snapshot\" is a reserved name)")]
    SnapshotReadOnly(String),
    /// Not allowed to do this (not the superuser, not a token's renewer, ...).
    #[error("{0}")]
    AccessDenied(String),
}

impl HasErrorCode for NnError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Path(_) => ErrorCode::InvalidPath,
            Self::NotFound(_) | Self::NoLease { .. } => ErrorCode::FileNotFound,
            Self::AlreadyExists(_) => ErrorCode::FileAlreadyExists,
            Self::ParentNotDirectory(_) | Self::NotDirectory(_) => ErrorCode::ParentNotDirectory,
            Self::IsDirectory(_) => ErrorCode::PathIsDirectory,
            Self::NotEmpty(_) => ErrorCode::PathIsNotEmptyDirectory,
            Self::PermissionDenied { .. }
            | Self::StickyBit { .. }
            | Self::NotLeaseOwner { .. }
            | Self::AccessDenied(_) => ErrorCode::AccessControl,
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::RenameIntoSubtree { .. } | Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Self::LeaseConflict { .. } | Self::RecoveryInProgress(_) => ErrorCode::LeaseConflict,
            Self::NotEnoughReplicas(_) => ErrorCode::NotEnoughReplicas,
            Self::SafeMode(_) => ErrorCode::SafeMode,
            Self::NsQuotaExceeded { .. } => ErrorCode::NsQuotaExceeded,
            Self::DsQuotaExceeded { .. } => ErrorCode::DsQuotaExceeded,
            Self::Snapshot(_) => ErrorCode::Snapshot,
            Self::SnapshotReadOnly(_) => ErrorCode::SnapshotAccess,
            Self::ShuttingDown | Self::NotCommitted(_) => ErrorCode::Unavailable,
            Self::Standby { .. } => ErrorCode::Standby,
            // Not retried by clients (as HDFS's FailoverFailedException):
            // the message says why, and the old leader leads on.
            Self::Store(_) | Self::Corrupt(_) | Self::Internal(_) | Self::HandOver(_) => ErrorCode::Internal,
        }
    }
}

impl From<NnError> for tonic::Status {
    fn from(e: NnError) -> Self {
        if let NnError::Standby { leader, .. } = &e {
            return granary_common::error::standby_status(e.to_string(), leader.as_deref());
        }
        granary_common::error::to_status(e)
    }
}

pub type Result<T, E = NnError> = std::result::Result<T, E>;
