//! `granary`: the command line for a Granary cluster, shaped like `hdfs dfs`.
//! Its exit status says what went wrong ([`error::exit`]).

mod admin;
mod balancer;
mod certs;
mod data;
mod error;
mod format;
mod fs;
mod fsck;
mod ha;
mod out;
mod quota;
mod snapshot;
mod tokens;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use error::{CliError, CliResult, exit};
use granary_client::{ClientOptions, DfsClient, Identity};
use granary_common::ErrorCode;
use granary_common::tls::{Tls, TlsFiles};

#[derive(Debug, Parser)]
#[command(
    name = "granary",
    version,
    about = "Granary distributed file system client",
    after_help = error::EXIT_STATUS_HELP
)]
struct Cli {
    /// Namenode RPC address (host:port), or the comma-separated addresses
    /// of an HA group's namenodes (nn1:8020,nn2:8020,nn3:8020): calls go to
    /// the leader and fail over when it changes or goes down.
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
    /// The cluster CA (PEM): with it, every connection uses TLS and the
    /// namenodes and datanodes must prove themselves with certificates it
    /// signed (docs/security.md).
    #[arg(long, global = true, env = "GRANARY_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// This user's certificate (PEM), for clusters that require one.
    #[arg(long, global = true, env = "GRANARY_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, global = true, env = "GRANARY_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// A delegation token to act with (`granary admin token get`): calls
    /// act as its owner.
    #[arg(long, global = true, env = "GRANARY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Act for this user (HDFS's doas): allowed when the caller is one of
    /// the namenode's proxy users.
    #[arg(long, global = true, env = "GRANARY_DOAS")]
    doas: Option<String>,
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
    /// Move replicas from fuller to emptier datanodes until every one is
    /// within the threshold of the mean utilization (HDFS's balancer).
    Balancer(balancer::BalancerArgs),
    /// Exit 0 when URL answers 200 (container health checks: the image has no curl).
    Probe {
        url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
}

/// `hdfs fsck / -files -blocks -locations`, `hadoop fs -rm -skipTrash` and
/// `hdfs balancer -threshold 5` habits: those single-dash long options are read as the double-dash ones.
fn hdfs_style_args(args: impl Iterator<Item = String>) -> Vec<String> {
    let args: Vec<String> = args.collect();
    let fsck = args.iter().any(|a| a == "fsck");
    let rm = args.iter().any(|a| a == "rm");
    let expunge = args.iter().any(|a| a == "expunge");
    let balancer = args.iter().any(|a| a == "balancer");
    args.into_iter()
        .map(|a| match a.as_str() {
            "-files" | "-blocks" | "-locations" if fsck => format!("-{a}"),
            "-skipTrash" if rm => format!("-{a}"),
            "-immediate" if expunge => format!("-{a}"),
            "-threshold" | "-max-bandwidth" | "-exclude" | "-idle-iterations" if balancer => format!("-{a}"),
            _ => a,
        })
        .collect()
}

/// `granary probe URL`: 0 on HTTP 200, 1 otherwise, with the reason on stderr.
async fn probe(url: &str, timeout: u64) -> CliResult {
    let failed = |message: String| CliError::refused(ErrorCode::Internal, message);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(timeout))
        .build()
        .map_err(|e| failed(e.to_string()))?;
    match client.get(url).send().await {
        Ok(r) if r.status() == reqwest::StatusCode::OK => Ok(()),
        Ok(r) => Err(failed(format!("{url} answered {}", r.status()))),
        Err(e) => Err(failed(format!("{url}: {e}"))),
    }
}

/// How to reach the cluster: over TLS when a CA is given.
fn options(cli: &Cli) -> CliResult<ClientOptions> {
    let tls = match &cli.tls_ca {
        None if cli.tls_cert.is_some() => {
            return Err(CliError::usage("--tls-cert needs --tls-ca (the cluster CA)"));
        }
        None => None,
        Some(ca) => Some(Tls::client(TlsFiles {
            ca: ca.clone(),
            cert: cli.tls_cert.clone().unwrap_or_default(),
            key: cli.tls_key.clone().unwrap_or_default(),
        })?),
    };
    Ok(ClientOptions {
        tls,
        token: cli.token.clone(),
        doas: cli.doas.clone(),
        ..Default::default()
    })
}

fn identity(cli: &Cli) -> Identity {
    Identity::new(cli.user.clone().unwrap_or_else(Identity::current_os_user))
}

// RPCs and packets allocate per call; mimalloc beat glibc's malloc at that
// side by side (docs/performance.md, ninth round).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs the command; the exit status when it ran to its end.
async fn run(cli: &Cli) -> CliResult<u8> {
    if let Top::Probe { url, timeout } = &cli.command {
        // Reachable or not, nothing else: any failure is 1 (container health checks).
        return match probe(url, *timeout).await {
            Ok(()) => Ok(exit::OK),
            Err(e) => {
                error::report(&e);
                Ok(exit::FAILED)
            }
        };
    }
    if let Top::Admin {
        cmd: admin::AdminCommand::Certs { cmd },
    } = &cli.command
    {
        // Local files only: no namenode to reach.
        return cmd.execute().map(|()| exit::OK);
    }
    let client = DfsClient::connect_with(&cli.namenode, identity(cli), options(cli)?).await?;
    match &cli.command {
        Top::Fs { cmd } => cmd.execute(&client).await,
        Top::Admin { cmd } => cmd.execute(&client).await.map(|()| exit::OK),
        Top::Fsck(a) => fsck::run(&client, a).await,
        Top::Balancer(a) => balancer::run(&client, a).await,
        Top::Probe { .. } => Ok(exit::OK),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse_from(hdfs_style_args(std::env::args()));
    let status = match run(&cli).await {
        Ok(status) => status,
        Err(e) => error::report(&e),
    };
    ExitCode::from(status)
}
