//! A namenode started inside the benchmark process, on loopback ports and a
//! fresh metadata directory, with durability on (WAL fsync, group commit).

use granary_namenode::{NamenodeConfig, RunningNamenode};
use tokio_util::sync::CancellationToken;

pub const SUPERUSER: &str = "bench";

pub struct LocalNamenode {
    pub dir: std::path::PathBuf,
    pub nn: RunningNamenode,
    _tmp: Option<tempfile::TempDir>,
}

pub fn config(data_dir: &std::path::Path) -> NamenodeConfig {
    let mut c = NamenodeConfig {
        data_dir: data_dir.to_path_buf(),
        rpc_addr: "127.0.0.1:0".parse().expect("loopback address"),
        http_addr: "127.0.0.1:0".parse().expect("loopback address"),
        ..Default::default()
    };
    c.namespace.superuser = SUPERUSER.into();
    c.safemode.extension_ms = 0;
    c
}

/// Formats `data_dir` (or a temp dir) when empty and starts a namenode on it.
pub async fn start(data_dir: Option<&std::path::Path>) -> anyhow::Result<LocalNamenode> {
    let (tmp, dir) = match data_dir {
        Some(d) => (None, d.to_path_buf()),
        None => {
            let t = tempfile::tempdir()?;
            let d = t.path().join("name");
            (Some(t), d)
        }
    };
    let cfg = config(&dir);
    if granary_namenode::layout::is_empty_or_missing(&dir)? {
        granary_namenode::format(&cfg, false, None)?;
    }
    let nn = open(cfg).await?;
    Ok(LocalNamenode { dir, nn, _tmp: tmp })
}

/// Starts a namenode on an existing metadata directory.
pub async fn open(cfg: NamenodeConfig) -> anyhow::Result<RunningNamenode> {
    let rpc = tokio::net::TcpListener::bind(cfg.rpc_addr).await?;
    let http = tokio::net::TcpListener::bind(cfg.http_addr).await?;
    Ok(granary_namenode::start(cfg, rpc, http, CancellationToken::new()).await?)
}
