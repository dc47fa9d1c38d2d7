//! `granary-bench`: load generators for measuring a running cluster.
//! See docs/performance.md for the commands behind each published figure.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use granary_client::{DfsClient, Identity};

#[derive(Debug, Parser)]
#[command(name = "granary-bench", about = "Granary benchmarks")]
struct Cli {
    #[arg(
        long,
        env = "GRANARY_NAMENODE",
        default_value = "127.0.0.1:8020",
        global = true
    )]
    namenode: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create empty files over gRPC (create + complete, durable), then report
    /// ops/s and, with --namenode-pid, the namenode's resident memory.
    Create {
        /// Files to create in total.
        #[arg(long, default_value_t = 10_000)]
        files: u64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 64)]
        threads: u64,
        /// Files per directory.
        #[arg(long, default_value_t = 10_000)]
        per_dir: u64,
        /// Directory to create the files under.
        #[arg(long, default_value = "/bench/create")]
        base: String,
        /// Namenode process id, to read its RSS from /proc.
        #[arg(long)]
        namenode_pid: Option<u32>,
    },
}

/// VmRSS and VmHWM of a process, in KiB.
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Create {
            files,
            threads,
            per_dir,
            base,
            namenode_pid,
        } => {
            let id = Identity::new(Identity::current_os_user(), vec![]);
            let client = DfsClient::connect(&cli.namenode, id).await?;
            let dirs = files.div_ceil(per_dir.max(1));
            for d in 0..dirs {
                client.mkdirs(&format!("{base}/d{d}"), None, true).await?;
            }
            let next = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..threads.max(1) {
                let c = client.clone();
                let next = next.clone();
                let base = base.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= files {
                            return Ok::<(), anyhow::Error>(());
                        }
                        c.create_empty(&format!("{base}/d{}/f{i}", i / per_dir), None)
                            .await?;
                    }
                }));
            }
            let reporter = {
                let next = next.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        let done = next.load(Ordering::Relaxed).min(files);
                        let rss = namenode_pid.and_then(rss_kib).map(|(r, _)| r / 1024).unwrap_or(0);
                        eprintln!(
                            "progress files={done} elapsed_s={:.0} namenode_rss_mib={rss}",
                            start.elapsed().as_secs_f64()
                        );
                    }
                })
            };
            for t in tasks {
                t.await??;
            }
            reporter.abort();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "create files={files} threads={threads} seconds={secs:.1} ops_per_sec={:.0}",
                files as f64 / secs
            );
            if let Some(pid) = namenode_pid {
                match rss_kib(pid) {
                    Some((rss, hwm)) => println!(
                        "namenode pid={pid} rss_mib={} peak_rss_mib={}",
                        rss / 1024,
                        hwm / 1024
                    ),
                    None => println!("namenode pid={pid}: cannot read /proc/{pid}/status"),
                }
            }
            let st = client.content_summary(&base).await?;
            println!(
                "namespace under {base}: files={} directories={}",
                st.file_count, st.directory_count
            );
        }
    }
    Ok(())
}
