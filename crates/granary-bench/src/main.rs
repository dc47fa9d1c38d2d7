//! `granary-bench`: the benchmarks behind docs/performance.md.
//!
//! - `namenode`: NNThroughputBenchmark-style phases, in-process and over gRPC.
//! - `dfsio`: TestDFSIO-style write and read against a running cluster, with
//!   a `dd`-like local write and a plain-TCP relay of the same copies
//!   measured in the same run.
//! - `blockreport`: a synthetic datanode's full block report.
//! - `scale`: many files; memory, RocksDB size, restart time.

mod audit;
mod blockreport;
mod dfsio;
mod ha;
mod local;
mod nnbench;
mod quota;
mod relay;
mod scale;
mod side_by_side;
mod stats;
mod tls;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "granary-bench",
    about = "Granary benchmarks (see docs/performance.md)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Namenode operations per second: mkdirs, create+complete, getFileInfo,
    /// listing, rename, delete. Starts its own namenode (durable, on a temp
    /// dir) unless --namenode names a running one (then gRPC only).
    Namenode {
        /// Operations per phase.
        #[arg(long, default_value_t = 100_000)]
        ops: u64,
        /// Threads (in-process) and concurrent clients (gRPC).
        #[arg(long, default_value_t = 64)]
        threads: usize,
        /// HTTP/2 connections the gRPC clients share.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// in-process (the namenode's client service called without the
        /// wire), grpc, both, or direct (the namespace itself from each thread).
        #[arg(long, default_value = "both")]
        mode: String,
        /// A running namenode to measure over gRPC instead of a local one
        /// (or an HA group's, comma-separated).
        #[arg(long)]
        namenode: Option<String>,
        /// The user for --namenode (a superuser, or one allowed to write /nnbench).
        #[arg(long, default_value = "hdfs")]
        user: String,
    },
    /// Write then read K files of S MiB through the client against a running cluster.
    Dfsio {
        /// Namenode RPC address, or an HA group's, comma-separated.
        #[arg(long, env = "GRANARY_NAMENODE", default_value = "127.0.0.1:8020")]
        namenode: String,
        #[arg(long, default_value = "hdfs")]
        user: String,
        #[arg(long, default_value_t = 4)]
        files: usize,
        #[arg(long, default_value_t = 256)]
        size_mib: usize,
        #[arg(long, default_value_t = 3)]
        replication: u32,
        #[arg(long, default_value_t = 128)]
        block_mib: u64,
        /// Where the `dd` comparison writes (the datanodes' disk).
        #[arg(long, default_value = "/tmp")]
        dd_dir: std::path::PathBuf,
        /// Seconds to pause before the relay and before the write, so both
        /// write into memory the VM's host has taken back (see dfsio.rs).
        #[arg(long, default_value_t = 5.0)]
        settle_secs: f64,
    },
    /// A full block report of B existing blocks from a synthetic datanode.
    Blockreport {
        #[arg(long, default_value_t = 1_000_000)]
        blocks: u64,
        /// Threads creating the blocks first.
        #[arg(long, default_value_t = 32)]
        threads: usize,
    },
    /// F files: memory, RocksDB size, restart-to-serving time.
    Scale {
        #[arg(long, default_value_t = 10_000_000)]
        files: u64,
        #[arg(long, default_value_t = 64)]
        threads: usize,
        /// Metadata dir to use (kept); a temp dir by default.
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
    },
    /// gRPC namenode operations with the audit log on against off, in one
    /// run: two local namenodes, rounds alternating between them.
    Audit {
        #[arg(long, default_value_t = 20_000)]
        ops: u64,
        #[arg(long, default_value_t = 64)]
        threads: usize,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// gRPC namenode operations with quotas on the root against none, in
    /// one run: two local namenodes, rounds alternating between them.
    Quota {
        #[arg(long, default_value_t = 20_000)]
        ops: u64,
        #[arg(long, default_value_t = 64)]
        threads: usize,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Put and get with TLS on against off, in one run: two in-process
    /// clusters (a namenode and three datanodes each), one in secure mode.
    Tls {
        #[arg(long, default_value_t = 4)]
        files: usize,
        #[arg(long, default_value_t = 64)]
        size_mib: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// A group of three namenode processes against one alone, in one run:
    /// gRPC create (+ the other phases) on each, then failover time (leader
    /// SIGKILL -> first acknowledged write) over --kills kills.
    Ha {
        #[arg(long, default_value_t = 20_000)]
        ops: u64,
        #[arg(long, default_value_t = 64)]
        threads: usize,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        kills: usize,
    },
}

// RPCs and packets allocate per call; mimalloc beat glibc's malloc at that
// side by side (docs/performance.md, ninth round).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    granary_common::logging::init(granary_common::logging::LogFormat::Text);
    match Cli::parse().cmd {
        Cmd::Namenode {
            ops,
            threads,
            connections,
            mode,
            namenode,
            user,
        } => {
            if let Some(addr) = namenode {
                return nnbench::over_grpc(&addr, &user, ops, threads, connections)
                    .await
                    .map(|_| ());
            }
            anyhow::ensure!(
                matches!(mode.as_str(), "in-process" | "grpc" | "both" | "direct"),
                "--mode must be in-process, grpc, both or direct"
            );
            if mode != "grpc" {
                let route = if mode == "direct" {
                    nnbench::Route::Direct
                } else {
                    nnbench::Route::Service
                };
                let nn = local::start(None).await?;
                let st = nn.nn.state.clone();
                let caller = st
                    .ns()
                    .caller(granary_common::identity::Identity::new(local::SUPERUSER));
                tokio::task::spawn_blocking(move || nnbench::in_process(st, caller, ops, threads, route))
                    .await??;
                nn.nn.shutdown().await?;
            }
            if mode == "grpc" || mode == "both" {
                let nn = local::start(None).await?;
                let addr = nn.nn.rpc_addr.to_string();
                nnbench::over_grpc(&addr, local::SUPERUSER, ops, threads, connections).await?;
                nn.nn.shutdown().await?;
            }
            Ok(())
        }
        Cmd::Dfsio {
            namenode,
            user,
            files,
            size_mib,
            replication,
            block_mib,
            dd_dir,
            settle_secs,
        } => {
            let settle = std::time::Duration::try_from_secs_f64(settle_secs)
                .map_err(|e| anyhow::anyhow!("--settle-secs {settle_secs}: {e}"))?;
            let a = dfsio::Args {
                files,
                size_mib,
                replication,
                block_mib,
                dd_dir,
                settle,
            };
            dfsio::run(&namenode, &user, &a).await
        }
        Cmd::Blockreport { blocks, threads } => {
            let nn = local::start(None).await?;
            let st = nn.nn.state.clone();
            let t = std::time::Instant::now();
            let list =
                tokio::task::spawn_blocking(move || blockreport::populate(st, blocks, threads)).await??;
            eprintln!(
                "created {} blocks in {:.1} s",
                list.len(),
                t.elapsed().as_secs_f64()
            );
            let st = &nn.nn.state;
            blockreport::run(&nn.nn.rpc_addr.to_string(), list, st.secret(), st.cluster_id()).await?;
            nn.nn.shutdown().await?;
            Ok(())
        }
        Cmd::Scale {
            files,
            threads,
            data_dir,
        } => {
            let nn = local::start(data_dir.as_deref()).await?;
            scale::run(nn, files, threads).await
        }
        Cmd::Audit {
            ops,
            threads,
            connections,
            rounds,
        } => audit::run(ops, threads, connections, rounds).await,
        Cmd::Quota {
            ops,
            threads,
            connections,
            rounds,
        } => quota::run(ops, threads, connections, rounds).await,
        Cmd::Tls {
            files,
            size_mib,
            rounds,
        } => tls::run(files, size_mib, rounds).await,
        Cmd::Ha {
            ops,
            threads,
            connections,
            kills,
        } => ha::run(ops, threads, connections, kills).await,
    }
}
