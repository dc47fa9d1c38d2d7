//! What every Granary crate shares. Without features: error codes, path
//! rules, caller identity, the retry-cache keys of namenode calls,
//! checksums, the write pipeline's framed connection and channels to
//! datanodes, TLS material, all a client needs. With `daemon`: configuration loading,
//! logging, metrics, connection limits, shutdown plumbing, block tokens,
//! daemon authentication and the WebHDFS helpers.

#[cfg(feature = "daemon")]
pub mod block_token;
pub mod checksum;
#[cfg(feature = "daemon")]
pub mod config;
#[cfg(feature = "daemon")]
pub mod conn_guard;
#[cfg(feature = "daemon")]
pub mod daemon_auth;
pub mod data_transfer;
pub mod error;
pub mod format;
pub mod identity;
#[cfg(feature = "daemon")]
pub mod logging;
#[cfg(feature = "daemon")]
pub mod metrics;
pub mod net;
pub mod path;
pub mod retry;
#[cfg(feature = "daemon")]
pub mod shutdown;
#[cfg(feature = "daemon")]
pub mod sniff;
pub mod tls;
pub mod trash;
#[cfg(feature = "daemon")]
pub mod webhdfs;

pub use error::{ErrorCode, HasErrorCode};

/// Defaults that mirror HDFS (`hdfs-default.xml`).
pub mod defaults {
    pub const BLOCK_SIZE: u64 = 128 * 1024 * 1024;
    pub const MIN_BLOCK_SIZE: u64 = 1024 * 1024;
    pub const REPLICATION: u32 = 3;
    pub const MAX_REPLICATION: u32 = 512;
    pub const BYTES_PER_CHECKSUM: u32 = 512;
    /// HDFS: 64 KiB. Larger packets cut the pipeline's per-packet costs
    /// (acks, task hand-offs, disk writes; docs/performance.md); WebHDFS
    /// reports it.
    pub const WRITE_PACKET_SIZE: u32 = 512 * 1024;
    pub const LISTING_LIMIT: u32 = 1000;
    /// Bytes in one path component (`dfs.namenode.fs-limits.max-component-length`).
    pub const MAX_COMPONENT_LENGTH: usize = 255;
    /// Characters in a whole path (HDFS `HdfsServerConstants.MAX_PATH_LENGTH`).
    pub const MAX_PATH_LENGTH: usize = 8000;
    /// Components in a path (HDFS `HdfsServerConstants.MAX_PATH_DEPTH`).
    pub const MAX_PATH_DEPTH: usize = 1000;
    pub const NAMENODE_RPC_PORT: u16 = 8020;
    pub const NAMENODE_HTTP_PORT: u16 = 9870;
    pub const DATANODE_RPC_PORT: u16 = 9866;
    pub const DATANODE_HTTP_PORT: u16 = 9864;
    pub const FILE_PERMISSION: u32 = 0o644;
    pub const DIR_PERMISSION: u32 = 0o755;
    pub const SUPERGROUP: &str = "supergroup";
}

/// The version every daemon reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
