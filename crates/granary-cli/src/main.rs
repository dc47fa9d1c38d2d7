//! `granary`: the command line for a Granary cluster, shaped like `hdfs dfs`.

mod admin;
mod data;
mod format;
mod fs;

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
    /// Act as this user (default: the OS user).
    #[arg(long, global = true, env = "GRANARY_USER")]
    user: Option<String>,
    /// Comma-separated groups of the user.
    #[arg(long, global = true, env = "GRANARY_GROUPS")]
    groups: Option<String>,
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
}

fn identity(cli: &Cli) -> Identity {
    let user = cli.user.clone().unwrap_or_else(Identity::current_os_user);
    let groups = cli
        .groups
        .as_deref()
        .map(|g| {
            g.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Identity::new(user, groups)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
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
    };
    std::process::exit(code);
}
