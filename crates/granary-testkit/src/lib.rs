//! Test harnesses: an in-process [`MiniCluster`] over pre-bound port-0
//! listeners, and helpers to run the real binaries.

pub mod binaries;
pub mod fake_datanode;
pub mod fixtures;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use granary_client::{DfsClient, Identity};
use granary_datanode::{DatanodeConfig, RunningDatanode};
use granary_namenode::{NamenodeConfig, RunningNamenode};

/// The superuser of every MiniCluster namenode.
pub const SUPERUSER: &str = "hdfs";

/// Builds a [`MiniCluster`].
pub struct MiniClusterBuilder {
    config: NamenodeConfig,
    datanodes: usize,
    block_scan_period_ms: u64,
    socket_timeout_ms: u64,
    racks: Vec<String>,
}

impl Default for MiniClusterBuilder {
    fn default() -> Self {
        let mut config = NamenodeConfig::default();
        let ns = &mut config.namespace;
        ns.superuser = SUPERUSER.into();
        ns.min_block_size = 512;
        ns.block_cache_mb = 16;
        ns.default_replication = 3;
        let dn = &mut config.datanodes;
        dn.heartbeat_interval_ms = 200;
        dn.stale_after_ms = 1_000;
        dn.dead_after_ms = 3_000;
        config.redundancy.interval_ms = 200;
        config.redundancy.pending_replication_timeout_ms = 5_000;
        config.safemode.extension_ms = 0;
        config.leases.soft_limit_ms = 1_000;
        config.leases.hard_limit_ms = 3_000;
        // The scanner stays out of the way unless a test asks for it.
        Self {
            config,
            datanodes: 0,
            block_scan_period_ms: 3_600_000,
            socket_timeout_ms: granary_datanode::config::TransferConfig::default().socket_timeout_ms,
            racks: Vec::new(),
        }
    }
}

impl MiniClusterBuilder {
    /// Changes namenode settings before start.
    pub fn namenode_config(mut self, f: impl FnOnce(&mut NamenodeConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Puts `user` in exactly `groups` (the namenode's static group mapping;
    /// other users get their OS groups, which test users do not have).
    pub fn groups(mut self, user: &str, groups: &[&str]) -> Self {
        self.config
            .groups
            .static_mapping
            .insert(user.to_string(), groups.iter().map(|g| g.to_string()).collect());
        self
    }

    /// Starts this many datanodes (each with its own data dir).
    pub fn datanodes(mut self, n: usize) -> Self {
        self.datanodes = n;
        self
    }

    /// Racks of the datanodes, assigned in turn (datanode i gets racks[i % len]).
    pub fn racks(mut self, racks: &[&str]) -> Self {
        self.racks = racks.iter().map(|r| r.to_string()).collect();
        self
    }

    /// How often datanodes' block scanners re-verify every replica.
    pub fn block_scan_period(mut self, ms: u64) -> Self {
        self.block_scan_period_ms = ms;
        self
    }

    /// How long datanodes wait for the next node of a write pipeline.
    pub fn datanode_socket_timeout(mut self, ms: u64) -> Self {
        self.socket_timeout_ms = ms;
        self
    }

    pub async fn start(self) -> anyhow::Result<MiniCluster> {
        let dir = tempfile::tempdir()?;
        let mut config = self.config;
        config.data_dir = dir.path().join("name");
        granary_namenode::format(&config, false, None)?;
        let rpc = TcpListener::bind("127.0.0.1:0").await?;
        let http = TcpListener::bind("127.0.0.1:0").await?;
        config.rpc_addr = rpc.local_addr()?;
        config.http_addr = http.local_addr()?;
        let root = CancellationToken::new();
        let nn = granary_namenode::start(config.clone(), rpc, http, root.child_token()).await?;
        let mut cluster = MiniCluster {
            dir,
            config,
            root,
            namenode: Some(nn),
            datanodes: Vec::new(),
            block_scan_period_ms: self.block_scan_period_ms,
            socket_timeout_ms: self.socket_timeout_ms,
            racks: self.racks,
        };
        for _ in 0..self.datanodes {
            cluster.add_datanode().await?;
        }
        cluster.wait_for_datanodes(self.datanodes).await?;
        Ok(cluster)
    }
}

/// A namenode (and, as they land, datanodes) running inside the test process.
pub struct MiniCluster {
    dir: tempfile::TempDir,
    config: NamenodeConfig,
    root: CancellationToken,
    namenode: Option<RunningNamenode>,
    datanodes: Vec<MiniDatanode>,
    block_scan_period_ms: u64,
    socket_timeout_ms: u64,
    racks: Vec<String>,
}

struct MiniDatanode {
    config: DatanodeConfig,
    running: Option<RunningDatanode>,
}

impl MiniCluster {
    pub fn builder() -> MiniClusterBuilder {
        MiniClusterBuilder::default()
    }

    pub async fn start() -> anyhow::Result<Self> {
        Self::builder().start().await
    }

    pub fn namenode_addr(&self) -> SocketAddr {
        self.config.rpc_addr
    }

    pub fn namenode_http_addr(&self) -> SocketAddr {
        self.config.http_addr
    }

    pub fn base_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn namenode_data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    /// The running namenode; panics in a test that stopped it.
    pub fn namenode(&self) -> &RunningNamenode {
        self.namenode.as_ref().expect("namenode is stopped")
    }

    /// A client acting as `user`, in the groups the namenode gives it
    /// ([`MiniClusterBuilder::groups`]).
    pub async fn client_as(&self, user: &str) -> anyhow::Result<DfsClient> {
        Ok(DfsClient::connect(&self.namenode_addr().to_string(), Identity::new(user)).await?)
    }

    /// A client acting as the superuser.
    pub async fn client(&self) -> anyhow::Result<DfsClient> {
        self.client_as(SUPERUSER).await
    }

    /// Stops the namenode and waits until its metadata store is closed.
    pub async fn stop_namenode(&mut self) -> anyhow::Result<()> {
        if let Some(nn) = self.namenode.take() {
            nn.shutdown().await?;
        }
        Ok(())
    }

    /// Restarts the namenode on the same addresses and metadata.
    pub async fn restart_namenode(&mut self) -> anyhow::Result<()> {
        self.stop_namenode().await?;
        let rpc = bind_again(self.config.rpc_addr).await?;
        let http = bind_again(self.config.http_addr).await?;
        let nn = granary_namenode::start(self.config.clone(), rpc, http, self.root.child_token()).await?;
        self.namenode = Some(nn);
        Ok(())
    }

    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        for i in 0..self.datanodes.len() {
            self.stop_datanode(i).await?;
        }
        self.stop_namenode().await
    }

    /// Starts one more datanode on fresh loopback ports; returns its index.
    pub async fn add_datanode(&mut self) -> anyhow::Result<usize> {
        let i = self.datanodes.len();
        let rpc = TcpListener::bind("127.0.0.1:0").await?;
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let config = DatanodeConfig {
            namenode: self.namenode_addr().to_string(),
            data_dirs: vec![self.dir.path().join(format!("dn{i}"))],
            rpc_addr: rpc.local_addr()?,
            http_addr: http.local_addr()?,
            heartbeat_interval_ms: self.config.datanodes.heartbeat_interval_ms,
            block_scanner: granary_datanode::config::BlockScannerConfig {
                period_ms: self.block_scan_period_ms,
                bytes_per_sec: 256 << 20,
            },
            transfer: granary_datanode::config::TransferConfig {
                socket_timeout_ms: self.socket_timeout_ms,
                ..Default::default()
            },
            cluster_secret_file: self.config.cluster_secret_path(),
            rack: if self.racks.is_empty() {
                "/default-rack".into()
            } else {
                self.racks[i % self.racks.len()].clone()
            },
            ..Default::default()
        };
        let running = granary_datanode::start(config.clone(), rpc, http, self.root.child_token()).await?;
        self.datanodes.push(MiniDatanode {
            config,
            running: Some(running),
        });
        Ok(i)
    }

    /// The running datanode `i`; panics if it is stopped.
    pub fn datanode(&self, i: usize) -> &RunningDatanode {
        self.datanodes[i].running.as_ref().expect("datanode is stopped")
    }

    pub fn datanode_count(&self) -> usize {
        self.datanodes.len()
    }

    /// Stops datanode `i` (its data stays on disk).
    pub async fn stop_datanode(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(dn) = self.datanodes[i].running.take() {
            dn.shutdown().await?;
        }
        Ok(())
    }

    /// Starts datanode `i` again on its old addresses and data.
    pub async fn restart_datanode(&mut self, i: usize) -> anyhow::Result<()> {
        self.stop_datanode(i).await?;
        let mut config = self.datanodes[i].config.clone();
        config.namenode = self.namenode_addr().to_string();
        let rpc = bind_again(config.rpc_addr).await?;
        let http = bind_again(config.http_addr).await?;
        let running = granary_datanode::start(config, rpc, http, self.root.child_token()).await?;
        self.datanodes[i].running = Some(running);
        Ok(())
    }

    /// Waits (bounded) until the namenode has left safe mode.
    pub async fn wait_for_safe_mode_exit(&self) -> anyhow::Result<()> {
        let c = self.client().await?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while c.safe_mode(granary_client::SafeModeAction::Get).await?.on {
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("namenode still in safe mode");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Waits (bounded) until the namenode sees `n` live datanodes.
    pub async fn wait_for_datanodes(&self, n: usize) -> anyhow::Result<()> {
        let c = self.client().await?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let live = c
                .datanode_report()
                .await?
                .iter()
                .filter(|d| d.state == granary_client::DatanodeState::Live)
                .count();
            if live >= n {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("only {live} of {n} datanodes registered");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for MiniCluster {
    fn drop(&mut self) {
        self.root.cancel();
    }
}

/// Binds an address a stopped server just released (briefly retrying).
async fn bind_again(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let mut last = None;
    for _ in 0..50 {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(anyhow::anyhow!("cannot rebind {addr}: {last:?}"))
}
