//! The namenode's command line: subcommands, and the settings flags (each
//! with a `GRANARY_*` environment twin) that override the file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use granary_common::config::{AuthMode, ConfigError};
use granary_common::logging::LogFormat;

use super::NamenodeConfig;

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
    /// This namenode's name in its group (`nn1`); with --peers.
    #[arg(long, global = true, env = "GRANARY_NODE_ID")]
    pub node_id: Option<String>,
    /// Every namenode of the group, this one included:
    /// `nn1=HOST:8020,nn2=HOST:8020,nn3=HOST:8020`. Without it the
    /// namenode runs alone (unless `format` stored a group in data_dir).
    #[arg(long, global = true, env = "GRANARY_PEERS")]
    pub peers: Option<String>,
    /// Append an audit line per namespace operation to this file.
    #[arg(long, global = true, env = "GRANARY_AUDIT_FILE")]
    pub audit_file: Option<PathBuf>,
    /// Minutes deleted paths stay in their users' trash (0: off).
    #[arg(long, global = true, env = "GRANARY_TRASH_INTERVAL")]
    pub trash_interval: Option<f64>,
    /// Run the balancer in the namenode (true/false; `[balancer] enabled`).
    #[arg(long, global = true, env = "GRANARY_BALANCER")]
    pub balancer: Option<bool>,
    /// Percentage points from the mean utilization a datanode may be.
    #[arg(long, global = true, env = "GRANARY_BALANCER_THRESHOLD")]
    pub balancer_threshold: Option<f64>,
    /// Milliseconds between the namenode's own balancer rounds.
    #[arg(long, global = true, env = "GRANARY_BALANCER_INTERVAL_MS")]
    pub balancer_interval_ms: Option<u64>,
    /// How callers prove who they are: simple or tls.
    #[arg(long, global = true, env = "GRANARY_AUTH")]
    pub auth: Option<AuthMode>,
    /// This namenode's TLS certificate (PEM).
    #[arg(long, global = true, env = "GRANARY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, global = true, env = "GRANARY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The cluster CA (PEM) every peer's certificate must chain to.
    #[arg(long, global = true, env = "GRANARY_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

/// `*setting = flag` when the flag was given.
fn set<T: Clone>(setting: &mut T, flag: &Option<T>) {
    if let Some(v) = flag {
        *setting = v.clone();
    }
}

impl Overrides {
    /// The file's settings with these applied on top, validated.
    pub fn resolve(&self) -> Result<NamenodeConfig, ConfigError> {
        Ok(self.resolve_noting_moved()?.0)
    }

    /// [`Overrides::resolve`], and a note for each setting the file gives
    /// at its former top-level key.
    pub fn resolve_noting_moved(&self) -> Result<(NamenodeConfig, Vec<String>), ConfigError> {
        let (mut c, moved): (NamenodeConfig, _) =
            granary_common::config::load_toml_moving(self.config.as_deref(), super::legacy::MOVED)?;
        set(&mut c.data_dir, &self.data_dir);
        set(&mut c.rpc_addr, &self.rpc_addr);
        set(&mut c.http_addr, &self.http_addr);
        set(&mut c.log_format, &self.log_format);
        set(&mut c.cluster_secret_file, &self.cluster_secret_file);
        set(&mut c.checkpoint_dir, &self.checkpoint_dir);
        let ns = &mut c.namespace;
        set(&mut ns.superuser, &self.superuser);
        set(&mut ns.default_replication, &self.default_replication);
        set(&mut ns.default_block_size, &self.default_block_size);
        set(&mut ns.min_block_size, &self.min_block_size);
        let dn = &mut c.datanodes;
        set(&mut dn.heartbeat_interval_ms, &self.heartbeat_interval_ms);
        set(&mut dn.stale_after_ms, &self.stale_after_ms);
        set(&mut dn.dead_after_ms, &self.dead_after_ms);
        set(&mut c.redundancy.interval_ms, &self.redundancy_interval_ms);
        set(
            &mut c.redundancy.pending_replication_timeout_ms,
            &self.pending_replication_timeout_ms,
        );
        set(&mut c.safemode.threshold, &self.safemode_threshold);
        set(&mut c.safemode.extension_ms, &self.safemode_extension_ms);
        set(&mut c.leases.soft_limit_ms, &self.lease_soft_limit_ms);
        set(&mut c.leases.hard_limit_ms, &self.lease_hard_limit_ms);
        set(&mut c.limits.max_connections, &self.max_connections);
        set(&mut c.limits.handshake_timeout_ms, &self.handshake_timeout_ms);
        set(&mut c.limits.idle_timeout_ms, &self.idle_timeout_ms);
        set(&mut c.ha.node_id, &self.node_id);
        set(&mut c.ha.peers, &self.peers);
        set(&mut c.auth, &self.auth);
        set(&mut c.audit.file, &self.audit_file);
        set(&mut c.trash.interval_minutes, &self.trash_interval);
        set(&mut c.balancer.enabled, &self.balancer);
        set(&mut c.balancer.threshold_percent, &self.balancer_threshold);
        set(&mut c.balancer.interval_ms, &self.balancer_interval_ms);
        set(&mut c.tls.cert, &self.tls_cert);
        set(&mut c.tls.key, &self.tls_key);
        set(&mut c.tls.ca, &self.tls_ca);
        c.validate()?;
        Ok((c, moved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_file(text: &str) -> Result<(NamenodeConfig, Vec<String>), ConfigError> {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("nn.toml");
        std::fs::write(&f, text).unwrap();
        Overrides {
            config: Some(f),
            ..Default::default()
        }
        .resolve_noting_moved()
    }

    #[test]
    fn file_then_flags_override() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("nn.toml");
        std::fs::write(
            &f,
            "rpc_addr = \"127.0.0.1:1234\"\n[namespace]\ndefault_replication = 2\nlisting_limit = 7\n",
        )
        .unwrap();
        let o = Overrides {
            config: Some(f.clone()),
            default_replication: Some(1),
            ..Default::default()
        };
        let c = o.resolve().unwrap();
        assert_eq!(c.rpc_addr.port(), 1234);
        assert_eq!(c.namespace.default_replication, 1);
        assert_eq!(c.namespace.listing_limit, 7);
        assert_eq!(c.http_addr.port(), 9870);
    }

    #[test]
    fn typos_and_bad_values_are_named() {
        let e = resolve_file("rpc_adr = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(e.to_string().contains("rpc_adr"), "{e}");
        let e = resolve_file("[redundancy]\nintervl_ms = 5\n").unwrap_err();
        assert!(e.to_string().contains("intervl_ms"), "{e}");
        let e = resolve_file("[namespace]\ndefault_replication = 0\n").unwrap_err();
        assert!(e.to_string().contains("default_replication"), "{e}");
        let e = resolve_file("[safemode]\nthreshold = 2.0\n").unwrap_err();
        assert!(e.to_string().contains("threshold"), "{e}");
    }

    /// Files written before the sections keep working, with a note per key.
    #[test]
    fn former_top_level_keys_are_read_into_their_sections() {
        let (c, moved) = resolve_file(
            "default_replication = 2\nsafemode_threshold = 0.5\nredundancy_interval_ms = 700\n\
             [limits]\nmax_connections = 9\n",
        )
        .unwrap();
        assert_eq!(c.namespace.default_replication, 2);
        assert_eq!(c.safemode.threshold, 0.5);
        assert_eq!(c.redundancy.interval_ms, 700);
        assert_eq!(c.limits.max_connections, 9);
        assert_eq!(moved.len(), 3, "{moved:?}");
        assert!(
            moved
                .iter()
                .any(|m| m.contains("safemode_threshold") && m.contains("[safemode]"))
        );
        // Typos are still errors on this path, and a setting given both ways is refused.
        let e = resolve_file("default_replication = 2\nlisting_limt = 5\n").unwrap_err();
        assert!(e.to_string().contains("listing_limt"), "{e}");
        let e = resolve_file("listing_limit = 5\n[namespace]\nlisting_limit = 6\n").unwrap_err();
        assert!(e.to_string().contains("listing_limit"), "{e}");
    }

    /// What `--check-config` prints is a valid file giving the same settings.
    #[test]
    fn effective_config_round_trips() {
        let c = NamenodeConfig::default();
        let text = toml::to_string(&c).unwrap();
        let (back, moved) = resolve_file(&text).unwrap();
        assert_eq!(back, c);
        assert!(moved.is_empty());
    }
}
