//! `granary`: the command line for a Granary cluster, shaped like `hdfs dfs`.

mod admin;
mod data;
mod format;
mod fs;
mod fsck;

use clap::{Parser, Subcommand};

use granary_client::{DfsClient, Identity};

#[derive(Debug, Parser)]
#[command(name = "granary", version, about = "Granary distributed file system client")]
struct Cli {
    /// Namenode RPC address.
    #[arg(
        long,
        global = true,
        env = "GRANARY_NAMENODE",
        default_value = "127.0.0.1:8020"
    )]
    namenode: String,
    /// Act as this user (default: the OS user). The namenode decides the
    /// user's groups (its group mapping); a client cannot name them.
    #[arg(long, global = true, env = "GRANARY_USER")]
    user: Option<String>,
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// File system commands (ls, mkdir, rm, mv, ...).
    Fs {
        #[command(subcommand)]
        cmd: fs::FsCommand,
    },
    /// Cluster administration (safemode, report).
    Admin {
        #[command(subcommand)]
        cmd: admin::AdminCommand,
    },
    /// Check block health under a path (HDFS fsck): exit 0 HEALTHY, 1 CORRUPT.
    Fsck(fsck::FsckArgs),
    /// Exit 0 when URL answers 200 (container health checks: the image has no curl).
    Probe {
        url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
}

/// `hdfs fsck / -files -blocks -locations` habits: fsck's single-dash long
/// options are read as the double-dash ones.
fn hdfs_style_args(args: impl Iterator<Item = String>) -> Vec<String> {
    let args: Vec<String> = args.collect();
    let fsck = args.iter().any(|a| a == "fsck");
    args.into_iter()
        .map(|a| match a.as_str() {
            "-files" | "-blocks" | "-locations" if fsck => format!("-{a}"),
            _ => a,
        })
        .collect()
}

/// `granary probe URL`: 0 on HTTP 200, 1 otherwise, with the reason on stderr.
async fn probe(url: &str, timeout: u64) -> i32 {
    let client = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(timeout))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("granary: {e}");
            return 1;
        }
    };
    match client.get(url).send().await {
        Ok(r) if r.status() == reqwest::StatusCode::OK => 0,
        Ok(r) => {
            eprintln!("granary: {url} answered {}", r.status());
            1
        }
        Err(e) => {
            eprintln!("granary: {url}: {e}");
            1
        }
    }
}

fn identity(cli: &Cli) -> Identity {
    Identity::new(cli.user.clone().unwrap_or_else(Identity::current_os_user))
}

// RPCs and packets allocate per call; mimalloc beat glibc's malloc at that
// side by side (docs/performance.md, ninth round).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse_from(hdfs_style_args(std::env::args()));
    if let Top::Probe { url, timeout } = &cli.command {
        std::process::exit(probe(url, *timeout).await);
    }
    let id = identity(&cli);
    let client = match DfsClient::connect(&cli.namenode, id).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("granary: {e}");
            std::process::exit(1);
        }
    };
    let code = match &cli.command {
        Top::Fs { cmd } => fs::run(&client, cmd).await,
        Top::Admin { cmd } => admin::run(&client, cmd).await,
        Top::Fsck(a) => fsck::run(&client, a).await,
        Top::Probe { .. } => 0,
    };
    std::process::exit(code);
}
