//! Datanode configuration: TOML file (`--config`), then `GRANARY_*`
//! environment variables, then flags; later layers win.
//!
//! The file has the node's identity and addresses at the top level and a
//! section per subsystem: `[storage]`, `[transfer]`, `[block_scanner]`,
//! `[limits]`, `[tls]`. Settings from before the sections are still read at the top
//! level ([`MOVED`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};

use granary_common::config::{AuthMode, ConfigError, Moved, TlsConfig};
use granary_common::defaults;
use granary_common::logging::LogFormat;

/// Every datanode setting. See docs/configuration.md.
///
/// Top-level values come before the sections: TOML needs them there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatanodeConfig {
    /// Namenode RPC address, host:port; with HA namenodes, every one of
    /// them, comma separated ([`DatanodeConfig::namenodes`]).
    pub namenode: String,
    /// One directory per disk.
    pub data_dirs: Vec<PathBuf>,
    pub rpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Host name or address other nodes and clients reach this datanode at;
    /// empty means the rpc_addr's IP, or the machine's host name when that is 0.0.0.0.
    pub advertise_host: String,
    pub rack: String,
    pub log_format: LogFormat,
    pub heartbeat_interval_ms: u64,
    /// A copy of the namenode's cluster secret (`<namenode data dir>/cluster-secret`):
    /// the datanode proves it holds it when registering.
    pub cluster_secret_file: PathBuf,
    /// How callers prove who they are: `simple` or `tls` (docs/security.md).
    pub auth: AuthMode,
    /// TLS on every port and connection (`[tls]` cert, key, ca).
    pub tls: TlsConfig,
    pub storage: StorageConfig,
    pub transfer: TransferConfig,
    pub block_scanner: BlockScannerConfig,
    /// Connection limits of the RPC and HTTP ports.
    pub limits: granary_common::conn_guard::Limits,
}

/// `[storage]`: how replicas are kept on the data dirs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Space left untouched on each disk for other uses.
    pub reserved_bytes: u64,
    /// At most this much of each data dir's disk is this datanode's
    /// capacity (0: the whole disk less `reserved_bytes`): for disks shared
    /// with other uses, or several datanodes on one disk. Its remaining
    /// space is then what is left of it, so the namenode stops placing
    /// replicas on the node when that is below a block.
    pub capacity_bytes: u64,
    /// Fsync every finalized replica (HDFS default: off; hsync forces it per packet).
    pub sync_on_close: bool,
}

/// `[transfer]`: write pipelines and block reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TransferConfig {
    /// How long this datanode waits for the next node of a write pipeline
    /// to answer (ready, or the next ack) before reporting it failed; 5 s
    /// more per node after that one (HDFS: dfs.client.socket-timeout, 60 s).
    /// Also how long a writer may leave a pipeline without its header or its
    /// next packet.
    pub socket_timeout_ms: u64,
    /// Write pipelines and block reads served at once; more are refused
    /// with "busy" (HDFS: dfs.datanode.max.transfer.threads, 4096).
    pub max_transfers: u32,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            socket_timeout_ms: 60_000,
            max_transfers: 4096,
        }
    }
}

impl TransferConfig {
    pub fn socket_timeout(&self) -> Duration {
        Duration::from_millis(self.socket_timeout_ms)
    }
}

/// `[block_scanner]`: the background verification of every replica.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BlockScannerConfig {
    /// Every replica is verified once per this period (HDFS: 3 weeks).
    pub period_ms: u64,
    /// Read rate of the scanner per datanode (HDFS: 1 MiB/s per volume).
    pub bytes_per_sec: u64,
}

impl Default for BlockScannerConfig {
    fn default() -> Self {
        Self {
            period_ms: 21 * 24 * 60 * 60 * 1000,
            bytes_per_sec: 1 << 20,
        }
    }
}

impl BlockScannerConfig {
    pub fn period(&self) -> Duration {
        Duration::from_millis(self.period_ms.max(100))
    }
}

/// Settings that were top-level keys before the sections; a file naming
/// them still works, with a warning at start.
pub const MOVED: &[Moved] = &[
    Moved::new("reserved_bytes", "storage", "reserved_bytes"),
    Moved::new("sync_on_close", "storage", "sync_on_close"),
    Moved::new("socket_timeout_ms", "transfer", "socket_timeout_ms"),
    Moved::new("max_transfers", "transfer", "max_transfers"),
    Moved::new("block_scan_period_ms", "block_scanner", "period_ms"),
    Moved::new("block_scan_bytes_per_sec", "block_scanner", "bytes_per_sec"),
];

impl Default for DatanodeConfig {
    fn default() -> Self {
        Self {
            namenode: format!("127.0.0.1:{}", defaults::NAMENODE_RPC_PORT),
            data_dirs: vec![PathBuf::from("./granary-data/data")],
            rpc_addr: SocketAddr::from(([0, 0, 0, 0], defaults::DATANODE_RPC_PORT)),
            http_addr: SocketAddr::from(([0, 0, 0, 0], defaults::DATANODE_HTTP_PORT)),
            advertise_host: String::new(),
            rack: "/default-rack".into(),
            log_format: LogFormat::Text,
            heartbeat_interval_ms: 3_000,
            cluster_secret_file: PathBuf::new(),
            auth: AuthMode::Simple,
            tls: Default::default(),
            storage: Default::default(),
            transfer: Default::default(),
            block_scanner: Default::default(),
            limits: Default::default(),
        }
    }
}

impl DatanodeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dirs.is_empty() {
            return Err(ConfigError::Invalid("at least one data dir is needed".into()));
        }
        if !self.rack.starts_with('/') {
            return Err(ConfigError::Invalid(format!(
                "rack {:?} must start with '/'",
                self.rack
            )));
        }
        self.tls.validate(self.auth)?;
        if self.heartbeat_interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "heartbeat_interval_ms must be positive".into(),
            ));
        }
        if self.transfer.socket_timeout_ms == 0 {
            return Err(ConfigError::Invalid("socket_timeout_ms must be positive".into()));
        }
        self.namenodes()?;
        if self.cluster_secret_file.as_os_str().is_empty() {
            return Err(ConfigError::Invalid(
                "cluster_secret_file is not set: give the datanode a copy of the namenode's \
                 <data dir>/cluster-secret (--cluster-secret-file, GRANARY_CLUSTER_SECRET_FILE)"
                    .into(),
            ));
        }
        if self.transfer.max_transfers == 0 {
            return Err(ConfigError::Invalid("max_transfers must be positive".into()));
        }
        self.limits.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// The namenode RPC addresses `namenode` lists: one, or every
    /// namenode of an HA group (comma separated). The datanode registers
    /// with, heartbeats to and reports its blocks to each.
    pub fn namenodes(&self) -> Result<Vec<String>, ConfigError> {
        parse_namenodes(&self.namenode)
    }

    /// The host others use to reach this datanode.
    pub fn advertised_host(&self) -> String {
        if !self.advertise_host.is_empty() {
            return self.advertise_host.clone();
        }
        if self.rpc_addr.ip().is_unspecified() {
            let host = nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into());
            // The address the host name resolves to, unless that is loopback
            // (Debian maps it to 127.0.1.1): clients outside this machine or
            // container must reach it, and they may not resolve its name.
            use std::net::ToSocketAddrs;
            (host.as_str(), 0)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.find(|a| a.is_ipv4() && !a.ip().is_loopback()))
                .map_or(host, |a| a.ip().to_string())
        } else {
            self.rpc_addr.ip().to_string()
        }
    }
}

/// Splits a comma-separated namenode list; an empty entry or an address
/// given twice (host names compared case-insensitively) is an error.
pub fn parse_namenodes(list: &str) -> Result<Vec<String>, ConfigError> {
    if list.trim().is_empty() {
        return Err(ConfigError::Invalid("namenode address is empty".into()));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, entry) in list.split(',').enumerate() {
        let addr = entry.trim();
        if addr.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "namenode list {list:?} has an empty entry (number {})",
                i + 1
            )));
        }
        if out.iter().any(|a| a.eq_ignore_ascii_case(addr)) {
            return Err(ConfigError::Invalid(format!(
                "namenode {addr} is listed twice in {list:?}"
            )));
        }
        out.push(addr.to_string());
    }
    Ok(out)
}

#[derive(Debug, Parser, Default)]
#[command(
    name = "granary-datanode",
    version,
    about = "Granary datanode: stores block replicas"
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "GRANARY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Namenode RPC address (host:port); for HA namenodes all of them,
    /// comma separated: the datanode talks to each.
    #[arg(long, env = "GRANARY_NAMENODE")]
    pub namenode: Option<String>,
    /// Data directory; repeat once per disk (env: comma separated).
    #[arg(long = "data-dir", env = "GRANARY_DATA_DIR", value_delimiter = ',')]
    pub data_dirs: Vec<PathBuf>,
    #[arg(long, env = "GRANARY_RPC_ADDR")]
    pub rpc_addr: Option<SocketAddr>,
    #[arg(long, env = "GRANARY_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    #[arg(long, env = "GRANARY_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,
    /// Rack, e.g. /rack1.
    #[arg(long, env = "GRANARY_RACK")]
    pub rack: Option<String>,
    #[arg(long, env = "GRANARY_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    #[arg(long, env = "GRANARY_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Bytes per disk kept free for other users of the disk.
    #[arg(long, env = "GRANARY_RESERVED_BYTES")]
    pub reserved_bytes: Option<u64>,
    /// At most this many bytes per disk are the datanode's capacity (0: all).
    #[arg(long, env = "GRANARY_CAPACITY_BYTES")]
    pub capacity_bytes: Option<u64>,
    /// The block scanner verifies every replica once per this period.
    #[arg(long, env = "GRANARY_BLOCK_SCAN_PERIOD_MS")]
    pub block_scan_period_ms: Option<u64>,
    #[arg(long, env = "GRANARY_BLOCK_SCAN_BYTES_PER_SEC")]
    pub block_scan_bytes_per_sec: Option<u64>,
    /// How long to wait for the next pipeline node to answer.
    #[arg(long, env = "GRANARY_SOCKET_TIMEOUT_MS")]
    pub socket_timeout_ms: Option<u64>,
    /// A copy of the namenode's cluster secret file.
    #[arg(long, env = "GRANARY_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Write pipelines and block reads served at once.
    #[arg(long, env = "GRANARY_MAX_TRANSFERS")]
    pub max_transfers: Option<u32>,
    /// Connections each port holds at once.
    #[arg(long, env = "GRANARY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// A connection silent this long after connecting is closed.
    #[arg(long, env = "GRANARY_HANDSHAKE_TIMEOUT_MS")]
    pub handshake_timeout_ms: Option<u64>,
    /// A connection with no traffic this long is closed.
    #[arg(long, env = "GRANARY_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// How callers prove who they are: simple or tls.
    #[arg(long, env = "GRANARY_AUTH")]
    pub auth: Option<AuthMode>,
    /// This datanode's TLS certificate (PEM).
    #[arg(long, env = "GRANARY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, env = "GRANARY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The cluster CA (PEM) every peer's certificate must chain to.
    #[arg(long, env = "GRANARY_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub check_config: bool,
}

/// `*setting = flag` when the flag was given.
fn set<T: Clone>(setting: &mut T, flag: &Option<T>) {
    if let Some(v) = flag {
        *setting = v.clone();
    }
}

impl Cli {
    /// The file's settings with the flags applied on top, validated.
    pub fn resolve(&self) -> Result<DatanodeConfig, ConfigError> {
        Ok(self.resolve_noting_moved()?.0)
    }

    /// [`Cli::resolve`], and a note for each setting the file gives at its
    /// former top-level key.
    pub fn resolve_noting_moved(&self) -> Result<(DatanodeConfig, Vec<String>), ConfigError> {
        let (mut c, moved): (DatanodeConfig, _) =
            granary_common::config::load_toml_moving(self.config.as_deref(), MOVED)?;
        set(&mut c.namenode, &self.namenode);
        set(&mut c.rpc_addr, &self.rpc_addr);
        set(&mut c.http_addr, &self.http_addr);
        set(&mut c.advertise_host, &self.advertise_host);
        set(&mut c.rack, &self.rack);
        set(&mut c.log_format, &self.log_format);
        set(&mut c.heartbeat_interval_ms, &self.heartbeat_interval_ms);
        set(&mut c.cluster_secret_file, &self.cluster_secret_file);
        set(&mut c.storage.reserved_bytes, &self.reserved_bytes);
        set(&mut c.storage.capacity_bytes, &self.capacity_bytes);
        set(&mut c.transfer.socket_timeout_ms, &self.socket_timeout_ms);
        set(&mut c.transfer.max_transfers, &self.max_transfers);
        set(&mut c.block_scanner.period_ms, &self.block_scan_period_ms);
        set(&mut c.block_scanner.bytes_per_sec, &self.block_scan_bytes_per_sec);
        set(&mut c.limits.max_connections, &self.max_connections);
        set(&mut c.limits.handshake_timeout_ms, &self.handshake_timeout_ms);
        set(&mut c.limits.idle_timeout_ms, &self.idle_timeout_ms);
        set(&mut c.auth, &self.auth);
        set(&mut c.tls.cert, &self.tls_cert);
        set(&mut c.tls.key, &self.tls_key);
        set(&mut c.tls.ca, &self.tls_ca);
        if !self.data_dirs.is_empty() {
            c.data_dirs = self.data_dirs.clone();
        }
        c.validate()?;
        // As the datanode reads it: "a:8020, b:8020" prints as "a:8020,b:8020".
        c.namenode = c.namenodes()?.join(",");
        Ok((c, moved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_file(text: &str) -> Result<(DatanodeConfig, Vec<String>), ConfigError> {
        let tmp = tempfile::tempdir().expect("tempdir");
        let f = tmp.path().join("dn.toml");
        std::fs::write(&f, text).expect("write");
        Cli {
            config: Some(f),
            cluster_secret_file: Some("/x/cluster-secret".into()),
            ..Default::default()
        }
        .resolve_noting_moved()
    }

    #[test]
    fn sections_flags_and_former_top_level_keys() {
        let (c, moved) = resolve_file(
            "[transfer]
max_transfers = 7
[block_scanner]
period_ms = 500
",
        )
        .expect("valid");
        assert_eq!(c.transfer.max_transfers, 7);
        assert_eq!(c.block_scanner.period_ms, 500);
        assert!(moved.is_empty());
        let (c, moved) = resolve_file(
            "reserved_bytes = 9
block_scan_bytes_per_sec = 3
",
        )
        .expect("valid");
        assert_eq!(c.storage.reserved_bytes, 9);
        assert_eq!(c.block_scanner.bytes_per_sec, 3);
        assert_eq!(moved.len(), 2, "{moved:?}");
        let e = resolve_file(
            "[storage]
reserved_byte = 1
",
        )
        .expect_err("typo");
        assert!(e.to_string().contains("reserved_byte"), "{e}");
    }

    #[test]
    fn namenode_lists() {
        let one = parse_namenodes("nn1:8020").expect("valid");
        assert_eq!(one, ["nn1:8020"]);
        let three = parse_namenodes("nn1:8020, nn2:8020 ,nn3:8020").expect("valid");
        assert_eq!(three, ["nn1:8020", "nn2:8020", "nn3:8020"]);
        let e = parse_namenodes("nn1:8020,,nn2:8020").expect_err("empty entry");
        assert!(e.to_string().contains("empty entry (number 2)"), "{e}");
        let e = parse_namenodes("nn1:8020,").expect_err("trailing comma");
        assert!(e.to_string().contains("empty entry"), "{e}");
        let e = parse_namenodes("nn1:8020,NN1:8020").expect_err("duplicate");
        assert!(e.to_string().contains("NN1:8020 is listed twice"), "{e}");
        let e = parse_namenodes(" ").expect_err("empty");
        assert!(e.to_string().contains("namenode address is empty"), "{e}");
        let (c, _) = resolve_file("namenode = \"a:1, b:2\"\n").expect("valid");
        assert_eq!(c.namenode, "a:1,b:2");
        let e = resolve_file("namenode = \"a:1,a:1\"\n").expect_err("duplicate");
        assert!(e.to_string().contains("a:1 is listed twice"), "{e}");
    }

    /// What `--check-config` prints is a valid file giving the same settings.
    #[test]
    fn effective_config_round_trips() {
        let c = DatanodeConfig {
            cluster_secret_file: "/x/cluster-secret".into(),
            ..Default::default()
        };
        let text = toml::to_string(&c).expect("serializes");
        let (back, moved) = resolve_file(&text).expect("valid");
        assert_eq!(back, c);
        assert!(moved.is_empty());
    }
}
