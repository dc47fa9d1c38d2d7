//! What can go wrong in a `granary` command, and what its exit status says
//! about it. Every failure keeps its [`ErrorCode`] from where it happened
//! (the namenode, a datanode, the local disk) to the exit status.

use std::io;

use granary_client::ClientError;
use granary_common::{ErrorCode, HasErrorCode};

/// Exit statuses, one per kind of failure a script may want to tell apart.
pub mod exit {
    pub const OK: u8 = 0;
    /// A failure not listed below; also `fsck`'s CORRUPT and a `fs test` that does not hold.
    pub const FAILED: u8 = 1;
    /// Bad usage: an unknown command or flag (clap), an invalid argument, path or mode.
    pub const USAGE: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
    pub const PERMISSION_DENIED: u8 = 4;
    pub const ALREADY_EXISTS: u8 = 5;
    pub const SAFE_MODE: u8 = 6;
    /// The namenode cannot be reached or is shutting down, or too few
    /// datanodes can take or serve a block: try again later.
    pub const UNAVAILABLE: u8 = 7;
}

/// `granary --help`'s account of the exit statuses (docs/operations.md says the same).
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success (also when the reader of the output went away: `granary fs cat F | head`)
  1  failure not listed below; fsck found the tree CORRUPT; `fs test` does not hold
  2  usage: unknown command or flag, invalid argument, path or mode
  3  no such file or directory
  4  permission denied
  5  file exists
  6  the namenode is in safe mode
  7  unavailable: the namenode cannot be reached or is shutting down, or too few datanodes
When several paths fail, the status is the first failure's.";

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The namenode or a datanode refused the call, or could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A check the CLI makes itself, worded as `hdfs dfs` words it
    /// (`/data: Is a directory`).
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
    /// Reading or writing `what` (a local file, a cluster file being
    /// copied, stdin, stdout) failed.
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    /// Standard output is a pipe whose reader went away (`| head`): the
    /// command stops without a word, as `hdfs dfs` does.
    #[error("standard output closed")]
    BrokenPipe,
    /// Certificates or keys (`admin certs`).
    #[error(transparent)]
    Tls(#[from] granary_common::tls::TlsError),
    /// `source`, said of `context` (`fsck /data: ...`).
    #[error("{context}: {source}")]
    Context { context: String, source: Box<CliError> },
}

pub type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Refused {
            code,
            message: message.into(),
        }
    }

    /// An invalid argument on the command line (exit status 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::refused(ErrorCode::InvalidArgument, message)
    }

    /// An I/O failure on `what`.
    pub fn io(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> CliError {
        let what = what.to_string();
        move |source| Self::Io { what, source }
    }

    /// An I/O failure writing standard output: a closed pipe is [`CliError::BrokenPipe`].
    pub fn stdout(source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::BrokenPipe {
            Self::BrokenPipe
        } else {
            Self::Io {
                what: "stdout".to_string(),
                source,
            }
        }
    }

    /// Standard output closed, maybe said of some context.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Self::BrokenPipe => true,
            Self::Context { source, .. } => source.is_broken_pipe(),
            _ => false,
        }
    }

    /// The exit status for this failure.
    pub fn exit_status(&self) -> u8 {
        match self {
            Self::BrokenPipe => exit::OK,
            Self::Context { source, .. } => source.exit_status(),
            _ => exit_status(self.code()),
        }
    }
}

impl HasErrorCode for CliError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Client(e) => e.code(),
            Self::Refused { code, .. } => *code,
            Self::Io { source, .. } => io_code(source),
            Self::BrokenPipe => ErrorCode::Internal,
            Self::Tls(e) => e.code(),
            Self::Context { source, .. } => source.code(),
        }
    }
}

/// The code of an I/O error: the cluster's own when it carries a client
/// error (a read or write of a cluster file), else from its kind.
fn io_code(e: &io::Error) -> ErrorCode {
    if let Some(c) = ClientError::inside(e) {
        return c.code();
    }
    match e.kind() {
        io::ErrorKind::NotFound => ErrorCode::FileNotFound,
        io::ErrorKind::PermissionDenied => ErrorCode::AccessControl,
        io::ErrorKind::AlreadyExists => ErrorCode::FileAlreadyExists,
        io::ErrorKind::IsADirectory => ErrorCode::PathIsDirectory,
        io::ErrorKind::NotADirectory => ErrorCode::ParentNotDirectory,
        io::ErrorKind::InvalidInput => ErrorCode::InvalidArgument,
        _ => ErrorCode::Internal,
    }
}

/// The exit status for a failure of class `code` (the [`exit`] table).
pub fn exit_status(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::FileNotFound => exit::NOT_FOUND,
        ErrorCode::AccessControl | ErrorCode::Unauthenticated | ErrorCode::SnapshotAccess => {
            exit::PERMISSION_DENIED
        }
        ErrorCode::FileAlreadyExists => exit::ALREADY_EXISTS,
        ErrorCode::SafeMode => exit::SAFE_MODE,
        ErrorCode::Unavailable | ErrorCode::NotEnoughReplicas | ErrorCode::Standby => exit::UNAVAILABLE,
        ErrorCode::InvalidPath | ErrorCode::InvalidArgument => exit::USAGE,
        ErrorCode::ParentNotDirectory
        | ErrorCode::PathIsDirectory
        | ErrorCode::PathIsNotEmptyDirectory
        | ErrorCode::LeaseConflict
        | ErrorCode::Checksum
        | ErrorCode::NsQuotaExceeded
        | ErrorCode::DsQuotaExceeded
        | ErrorCode::Snapshot
        | ErrorCode::Unsupported
        | ErrorCode::Internal => exit::FAILED,
    }
}

/// Prints `granary: MESSAGE` on stderr, unless the failure is a closed
/// stdout; returns the exit status. A closed stderr is not an error of its own.
pub fn report(e: &CliError) -> u8 {
    if !e.is_broken_pipe() {
        use std::io::Write;
        let _ = writeln!(io::stderr().lock(), "granary: {e}");
    }
    e.exit_status()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_class_has_its_status() {
        let remote = |code| {
            CliError::Client(ClientError::Remote {
                code,
                message: "m".into(),
            })
        };
        assert_eq!(remote(ErrorCode::FileNotFound).exit_status(), exit::NOT_FOUND);
        assert_eq!(
            remote(ErrorCode::AccessControl).exit_status(),
            exit::PERMISSION_DENIED
        );
        assert_eq!(remote(ErrorCode::SafeMode).exit_status(), exit::SAFE_MODE);
        assert_eq!(remote(ErrorCode::Unavailable).exit_status(), exit::UNAVAILABLE);
        assert_eq!(
            remote(ErrorCode::FileAlreadyExists).exit_status(),
            exit::ALREADY_EXISTS
        );
        assert_eq!(remote(ErrorCode::Internal).exit_status(), exit::FAILED);
        assert_eq!(CliError::usage("bad").exit_status(), exit::USAGE);
        assert_eq!(CliError::BrokenPipe.exit_status(), exit::OK);
    }

    #[test]
    fn io_errors_keep_the_cluster_code_they_carry() {
        let wrapped = io::Error::other(ClientError::Remote {
            code: ErrorCode::AccessControl,
            message: "denied".into(),
        });
        let e = CliError::io("/f")(wrapped);
        assert_eq!(e.exit_status(), exit::PERMISSION_DENIED);
        assert_eq!(e.to_string(), "/f: denied");
        let local = CliError::io("x.txt")(io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(local.exit_status(), exit::NOT_FOUND);
        assert!(matches!(
            CliError::stdout(io::Error::from(io::ErrorKind::BrokenPipe)),
            CliError::BrokenPipe
        ));
    }
}
