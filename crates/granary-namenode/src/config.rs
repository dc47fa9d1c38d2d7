//! Namenode configuration: TOML file (`--config`), then `GRANARY_*`
//! environment variables, then flags; later layers win.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

use granary_common::config::ConfigError;
use granary_common::defaults;
use granary_common::logging::LogFormat;

/// Every namenode setting, with its TOML key. See docs/configuration.md.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NamenodeConfig {
    /// Metadata directory (VERSION file + RocksDB namespace).
    pub data_dir: PathBuf,
    pub rpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub log_format: LogFormat,
    /// The user with every permission; defaults to the OS user running the namenode.
    pub superuser: String,
    pub supergroup: String,
    pub default_replication: u32,
    pub max_replication: u32,
    pub min_replication: u32,
    pub default_block_size: u64,
    pub min_block_size: u64,
    pub bytes_per_checksum: u32,
    pub listing_limit: u32,
    pub max_directory_items: u64,
    pub block_cache_mb: u64,
    /// Namespaces with fewer inodes + blocks are scanned at start before
    /// serving; larger ones while serving reads in safe mode.
    pub startup_scan_inline_objects: u64,
    pub heartbeat_interval_ms: u64,
    pub stale_after_ms: u64,
    pub dead_after_ms: u64,
    /// How often datanodes send full block reports (HDFS: 6 h).
    pub block_report_interval_ms: u64,
    /// How often the redundancy monitor checks queued blocks (HDFS: 3 s).
    pub redundancy_interval_ms: u64,
    /// Full scan of every block for wrong replica counts (first one one dead
    /// interval after start, once datanodes had time to report).
    pub redundancy_scan_interval_ms: u64,
    /// Copies a datanode is asked to send at once (HDFS: 2).
    pub max_replication_streams: u32,
    /// A scheduled copy not reported by then is scheduled again (HDFS: 300 s).
    pub pending_replication_timeout_ms: u64,
    /// Fraction of blocks that must have min_replication replicas reported
    /// before safe mode ends by itself (HDFS: 0.999).
    pub safemode_threshold: f64,
    /// How long safe mode lasts after the threshold is reached (HDFS: 30 s).
    pub safemode_extension_ms: u64,
    /// Until a writer's lease is this old, no other client can take its file (HDFS: 60 s).
    pub lease_soft_limit_ms: u64,
    /// After this long without renewal the namenode recovers the file itself (HDFS: 20 min).
    pub lease_hard_limit_ms: u64,
    /// Users who may act for others through WebHDFS's `doas` (Hadoop's proxy users).
    pub proxy_users: Vec<String>,
    /// The secret datanodes prove they hold when registering; empty means
    /// `<data_dir>/cluster-secret`. `format` writes it when missing; copy it
    /// to every datanode (their `cluster_secret_file`).
    pub cluster_secret_file: PathBuf,
    /// Where `Checkpoint` writes metadata copies (each a new directory in
    /// it); empty means `checkpoints` next to `data_dir`.
    pub checkpoint_dir: PathBuf,
    /// How often a new block-token signing key is made (HDFS: 10 h).
    pub block_key_update_interval_ms: u64,
    /// How long a block access token is valid (HDFS: 10 h).
    pub block_token_lifetime_ms: u64,
    /// Connection limits of the RPC and HTTP ports.
    pub limits: granary_common::conn_guard::Limits,
    /// Users' groups: a static mapping, else the OS's (see the `groups` module).
    pub groups: crate::groups::GroupsConfig,
}

impl Default for NamenodeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./granary-data/name"),
            rpc_addr: SocketAddr::from(([0, 0, 0, 0], defaults::NAMENODE_RPC_PORT)),
            http_addr: SocketAddr::from(([0, 0, 0, 0], defaults::NAMENODE_HTTP_PORT)),
            log_format: LogFormat::Text,
            superuser: granary_common::identity::Identity::current_os_user(),
            supergroup: defaults::SUPERGROUP.into(),
            default_replication: defaults::REPLICATION,
            max_replication: defaults::MAX_REPLICATION,
            min_replication: 1,
            default_block_size: defaults::BLOCK_SIZE,
            min_block_size: defaults::MIN_BLOCK_SIZE,
            bytes_per_checksum: defaults::BYTES_PER_CHECKSUM,
            listing_limit: defaults::LISTING_LIMIT,
            max_directory_items: 1_048_576,
            block_cache_mb: 128,
            startup_scan_inline_objects: 500_000,
            heartbeat_interval_ms: 3_000,
            stale_after_ms: 15_000,
            dead_after_ms: 60_000,
            block_report_interval_ms: 6 * 60 * 60 * 1000,
            redundancy_interval_ms: 3_000,
            redundancy_scan_interval_ms: 10 * 60 * 1000,
            max_replication_streams: 2,
            pending_replication_timeout_ms: 60_000,
            safemode_threshold: 0.999,
            safemode_extension_ms: 10_000,
            lease_soft_limit_ms: 60_000,
            lease_hard_limit_ms: 20 * 60 * 1000,
            proxy_users: Vec::new(),
            cluster_secret_file: PathBuf::new(),
            checkpoint_dir: PathBuf::new(),
            block_key_update_interval_ms: 10 * 60 * 60 * 1000,
            block_token_lifetime_ms: 10 * 60 * 60 * 1000,
            limits: Default::default(),
            groups: Default::default(),
        }
    }
}

impl NamenodeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.default_replication == 0 || self.default_replication > self.max_replication {
            return bad(format!(
                "default_replication {} must be between 1 and max_replication {}",
                self.default_replication, self.max_replication
            ));
        }
        if self.min_replication == 0 || self.min_replication > self.default_replication {
            return bad(format!(
                "min_replication {} must be between 1 and default_replication",
                self.min_replication
            ));
        }
        if self.bytes_per_checksum == 0
            || !self
                .default_block_size
                .is_multiple_of(u64::from(self.bytes_per_checksum))
        {
            return bad("default_block_size must be a multiple of bytes_per_checksum".into());
        }
        if self.default_block_size < self.min_block_size {
            return bad("default_block_size is below min_block_size".into());
        }
        if !(0.0..=1.0).contains(&self.safemode_threshold) {
            return bad(format!(
                "safemode_threshold {} must be between 0 and 1",
                self.safemode_threshold
            ));
        }
        if self.listing_limit == 0 {
            return bad("listing_limit must be positive".into());
        }
        if !(self.heartbeat_interval_ms < self.stale_after_ms && self.stale_after_ms < self.dead_after_ms) {
            return bad("need heartbeat_interval_ms < stale_after_ms < dead_after_ms".into());
        }
        if self.block_key_update_interval_ms == 0 || self.block_token_lifetime_ms == 0 {
            return bad("block_key_update_interval_ms and block_token_lifetime_ms must be positive".into());
        }
        if !self.data_dir.as_os_str().is_empty() && self.checkpoint_path().starts_with(&self.data_dir) {
            return bad(format!(
                "checkpoint_dir {} must be outside data_dir {}",
                self.checkpoint_path().display(),
                self.data_dir.display()
            ));
        }
        self.limits.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// Where checkpoints go (see `checkpoint_dir`): by default beside the
    /// metadata, on its file system, so RocksDB can hard-link its files.
    pub fn checkpoint_path(&self) -> PathBuf {
        if !self.checkpoint_dir.as_os_str().is_empty() {
            return self.checkpoint_dir.clone();
        }
        match self.data_dir.parent() {
            Some(parent) => parent.join("checkpoints"),
            None => PathBuf::from("checkpoints"),
        }
    }

    /// Where the cluster secret is (see `cluster_secret_file`).
    pub fn cluster_secret_path(&self) -> PathBuf {
        if self.cluster_secret_file.as_os_str().is_empty() {
            self.data_dir.join("cluster-secret")
        } else {
            self.cluster_secret_file.clone()
        }
    }

    pub fn namespace_config(&self) -> crate::namespace::NamespaceConfig {
        crate::namespace::NamespaceConfig {
            superuser: self.superuser.clone(),
            supergroup: self.supergroup.clone(),
            default_replication: self.default_replication,
            max_replication: self.max_replication,
            default_block_size: self.default_block_size,
            min_block_size: self.min_block_size,
            bytes_per_checksum: self.bytes_per_checksum,
            listing_limit: self.listing_limit,
            max_directory_items: self.max_directory_items,
            block_cache_bytes: (self.block_cache_mb << 20) as usize,
            groups: self.groups.clone(),
        }
    }

    pub fn stale_after(&self) -> Duration {
        Duration::from_millis(self.stale_after_ms)
    }

    pub fn dead_after(&self) -> Duration {
        Duration::from_millis(self.dead_after_ms)
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "granary-namenode",
    version,
    about = "Granary namenode: the namespace and block map"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub opts: Overrides,
    /// Print the effective configuration and exit.
    #[arg(long, global = true)]
    pub check_config: bool,
    /// Format the metadata directory first when it is missing or empty (for
    /// containers and first starts; a directory with anything in it is never touched).
    #[arg(long, env = "GRANARY_FORMAT_IF_EMPTY")]
    pub format_if_empty: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Initialise an empty metadata directory (a new cluster).
    Format {
        /// Erase a non-empty directory.
        #[arg(long)]
        force: bool,
        /// Use this cluster id instead of a random one.
        #[arg(long, env = "GRANARY_CLUSTER_ID")]
        cluster_id: Option<String>,
    },
}

/// Settings given on the command line or in the environment.
#[derive(Debug, Args, Default)]
pub struct Overrides {
    /// TOML configuration file.
    #[arg(long, global = true, env = "GRANARY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Metadata directory.
    #[arg(long, global = true, env = "GRANARY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address for clients and datanodes.
    #[arg(long, global = true, env = "GRANARY_RPC_ADDR")]
    pub rpc_addr: Option<SocketAddr>,
    /// HTTP listen address (health, web UI, WebHDFS).
    #[arg(long, global = true, env = "GRANARY_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// text or json.
    #[arg(long, global = true, env = "GRANARY_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    #[arg(long, global = true, env = "GRANARY_SUPERUSER")]
    pub superuser: Option<String>,
    #[arg(long, global = true, env = "GRANARY_DEFAULT_REPLICATION")]
    pub default_replication: Option<u32>,
    #[arg(long, global = true, env = "GRANARY_DEFAULT_BLOCK_SIZE")]
    pub default_block_size: Option<u64>,
    #[arg(long, global = true, env = "GRANARY_MIN_BLOCK_SIZE")]
    pub min_block_size: Option<u64>,
    #[arg(long, global = true, env = "GRANARY_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    #[arg(long, global = true, env = "GRANARY_STALE_AFTER_MS")]
    pub stale_after_ms: Option<u64>,
    #[arg(long, global = true, env = "GRANARY_DEAD_AFTER_MS")]
    pub dead_after_ms: Option<u64>,
    #[arg(long, global = true, env = "GRANARY_PENDING_REPLICATION_TIMEOUT_MS")]
    pub pending_replication_timeout_ms: Option<u64>,
    #[arg(long, global = true, env = "GRANARY_LEASE_SOFT_LIMIT_MS")]
    pub lease_soft_limit_ms: Option<u64>,
    #[arg(long, global = true, env = "GRANARY_LEASE_HARD_LIMIT_MS")]
    pub lease_hard_limit_ms: Option<u64>,
    #[arg(long, global = true, env = "GRANARY_SAFEMODE_THRESHOLD")]
    pub safemode_threshold: Option<f64>,
    #[arg(long, global = true, env = "GRANARY_SAFEMODE_EXTENSION_MS")]
    pub safemode_extension_ms: Option<u64>,
    #[arg(long, global = true, env = "GRANARY_REDUNDANCY_INTERVAL_MS")]
    pub redundancy_interval_ms: Option<u64>,
    /// The cluster secret datanodes must hold (default: <data-dir>/cluster-secret).
    #[arg(long, global = true, env = "GRANARY_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Where metadata checkpoints are written (default: checkpoints beside the data dir).
    #[arg(long, global = true, env = "GRANARY_CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Connections each port holds at once.
    #[arg(long, global = true, env = "GRANARY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// A connection silent this long after connecting is closed.
    #[arg(long, global = true, env = "GRANARY_HANDSHAKE_TIMEOUT_MS")]
    pub handshake_timeout_ms: Option<u64>,
    /// A connection with no traffic this long is closed.
    #[arg(long, global = true, env = "GRANARY_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
}

impl Overrides {
    /// The file's settings with these applied on top, validated.
    pub fn resolve(&self) -> Result<NamenodeConfig, ConfigError> {
        let mut c: NamenodeConfig = granary_common::config::load_toml(self.config.as_deref())?;
        macro_rules! over {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { c.$f = v.clone(); } )* };
        }
        over!(
            data_dir,
            rpc_addr,
            http_addr,
            log_format,
            superuser,
            default_replication,
            default_block_size,
            min_block_size,
            heartbeat_interval_ms,
            stale_after_ms,
            dead_after_ms,
            lease_soft_limit_ms,
            lease_hard_limit_ms,
            pending_replication_timeout_ms,
            safemode_threshold,
            safemode_extension_ms,
            redundancy_interval_ms,
            cluster_secret_file,
            checkpoint_dir
        );
        macro_rules! over_limits {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { c.limits.$f = v; } )* };
        }
        over_limits!(max_connections, handshake_timeout_ms, idle_timeout_ms);
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags_override() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("nn.toml");
        std::fs::write(&f, "rpc_addr = \"127.0.0.1:1234\"\ndefault_replication = 2\n").unwrap();
        let o = Overrides {
            config: Some(f.clone()),
            default_replication: Some(1),
            ..Default::default()
        };
        let c = o.resolve().unwrap();
        assert_eq!(c.rpc_addr.port(), 1234);
        assert_eq!(c.default_replication, 1);
        assert_eq!(c.http_addr.port(), 9870);
    }

    #[test]
    fn typos_and_bad_values_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("nn.toml");
        std::fs::write(&f, "rpc_adr = \"127.0.0.1:1\"\n").unwrap();
        let e = Overrides {
            config: Some(f.clone()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("rpc_adr"), "{e}");
        std::fs::write(&f, "default_replication = 0\n").unwrap();
        let e = Overrides {
            config: Some(f),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("default_replication"), "{e}");
    }
}
