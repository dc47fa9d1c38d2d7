//! Namenode configuration: TOML file (`--config`), then `GRANARY_*`
//! environment variables, then flags; later layers win.
//!
//! The file has a few top-level settings and one section per subsystem,
//! each declared (with its defaults) by the subsystem that takes it whole:
//! `[namespace]`, `[datanodes]`, `[redundancy]`, `[safemode]`, `[leases]`,
//! `[block_tokens]`, `[webhdfs]`, `[limits]`, `[groups]`, `[tls]`, `[ha]`,
//! `[audit]`, `[delegation_tokens]`, `[trash]`, `[web_ui]`, `[balancer]`. Settings from
//! before the sections are still read at the top level ([`legacy`]).

mod flags;
mod legacy;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use granary_common::config::{AuthMode, ConfigError, TlsConfig};
use granary_common::defaults;
use granary_common::logging::LogFormat;

use crate::block_keys::BlockTokenConfig;
use crate::datanode_manager::DatanodesConfig;
use crate::groups::GroupsConfig;
use crate::lease::LeaseConfig;
use crate::namespace::NamespaceConfig;
use crate::redundancy::RedundancyConfig;
use crate::safe_mode::SafeModeConfig;
use crate::webhdfs::WebHdfsConfig;

pub use flags::{Cli, Command, Overrides};

/// Every namenode setting. See docs/configuration.md.
///
/// Top-level values come before the sections: TOML needs them there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NamenodeConfig {
    /// Metadata directory (VERSION file + RocksDB namespace).
    pub data_dir: PathBuf,
    pub rpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub log_format: LogFormat,
    /// The secret datanodes prove they hold when registering; empty means
    /// `<data_dir>/cluster-secret`. `format` writes it when missing; copy it
    /// to every datanode (their `cluster_secret_file`).
    pub cluster_secret_file: PathBuf,
    /// Where `Checkpoint` writes metadata copies (each a new directory in
    /// it); empty means `checkpoints` next to `data_dir`.
    pub checkpoint_dir: PathBuf,
    /// Namespaces with fewer inodes + blocks are scanned at start before
    /// serving; larger ones while serving reads in safe mode.
    pub startup_scan_inline_objects: u64,
    /// How callers prove who they are: `simple` or `tls` (docs/security.md).
    pub auth: AuthMode,
    /// TLS on every port and connection (`[tls]` cert, key, ca).
    pub tls: TlsConfig,
    pub namespace: NamespaceConfig,
    pub datanodes: DatanodesConfig,
    pub redundancy: RedundancyConfig,
    pub safemode: SafeModeConfig,
    pub leases: LeaseConfig,
    pub block_tokens: BlockTokenConfig,
    pub webhdfs: WebHdfsConfig,
    /// Connection limits of the RPC and HTTP ports.
    pub limits: granary_common::conn_guard::Limits,
    /// Users' groups: a static mapping, else the OS's (see the `groups` module).
    pub groups: GroupsConfig,
    /// A group of namenodes replicating the namespace with Raft (`[ha]`).
    pub ha: crate::ha::HaConfig,
    /// The audit log (`[audit]`).
    pub audit: crate::audit::AuditConfig,
    /// Delegation tokens' lifetimes (`[delegation_tokens]`).
    pub delegation_tokens: crate::delegation::DelegationConfig,
    /// How long deleted paths stay in their users' trash (`[trash]`).
    pub trash: crate::trash::TrashConfig,
    /// The web UI's activity charts (`[web_ui]`).
    pub web_ui: crate::activity::WebUiConfig,
    /// Balancing datanodes' usage (`[balancer]`).
    pub balancer: crate::balancer::BalancerConfig,
}

impl Default for NamenodeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./granary-data/name"),
            rpc_addr: SocketAddr::from(([0, 0, 0, 0], defaults::NAMENODE_RPC_PORT)),
            http_addr: SocketAddr::from(([0, 0, 0, 0], defaults::NAMENODE_HTTP_PORT)),
            log_format: LogFormat::Text,
            cluster_secret_file: PathBuf::new(),
            checkpoint_dir: PathBuf::new(),
            startup_scan_inline_objects: 500_000,
            auth: AuthMode::Simple,
            tls: Default::default(),
            namespace: Default::default(),
            datanodes: Default::default(),
            redundancy: Default::default(),
            safemode: Default::default(),
            leases: Default::default(),
            block_tokens: Default::default(),
            webhdfs: Default::default(),
            limits: Default::default(),
            groups: Default::default(),
            ha: Default::default(),
            audit: Default::default(),
            delegation_tokens: Default::default(),
            trash: Default::default(),
            web_ui: Default::default(),
            balancer: Default::default(),
        }
    }
}

impl NamenodeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.namespace.validate()?;
        self.datanodes.validate()?;
        self.safemode.validate()?;
        self.block_tokens.validate()?;
        self.limits.validate().map_err(ConfigError::Invalid)?;
        self.tls.validate(self.auth)?;
        self.delegation_tokens.validate()?;
        self.trash.validate()?;
        self.web_ui.validate()?;
        self.balancer.validate()?;
        self.ha
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("[ha]: {e}")))?;
        if !self.data_dir.as_os_str().is_empty() && self.checkpoint_path().starts_with(&self.data_dir) {
            return Err(ConfigError::Invalid(format!(
                "checkpoint_dir {} must be outside data_dir {}",
                self.checkpoint_path().display(),
                self.data_dir.display()
            )));
        }
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
}
