use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use granary_namenode::config::{Cli, Command};

// RPCs and packets allocate per call; mimalloc beat glibc's malloc at that
// side by side (docs/performance.md, ninth round).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (config, moved) = cli.opts.resolve_noting_moved()?;
    if cli.check_config {
        print!("{}", toml::to_string(&config)?);
        for m in &moved {
            eprintln!("warning: {m}");
        }
        eprintln!("configuration is valid");
        return Ok(());
    }
    granary_common::logging::init(config.log_format);
    for m in &moved {
        tracing::warn!("config file: {m}; the old key still works");
    }
    match cli.command {
        Some(Command::Format { force, cluster_id }) => {
            let v = granary_namenode::format(&config, force, cluster_id)?;
            println!(
                "formatted {} for cluster {}",
                config.data_dir.display(),
                v.cluster_id
            );
            Ok(())
        }
        None => {
            if cli.format_if_empty && granary_namenode::layout::is_empty_or_missing(&config.data_dir)? {
                // A group member needs the group's cluster id (GRANARY_CLUSTER_ID).
                let cluster_id = std::env::var("GRANARY_CLUSTER_ID").ok().filter(|c| !c.is_empty());
                let v = granary_namenode::format(&config, false, cluster_id)?;
                tracing::info!(dir = %config.data_dir.display(), cluster_id = %v.cluster_id, "formatted an empty metadata directory");
            }
            // Signals are handled before the ports answer: a SIGTERM right after
            // bind is a graceful stop, never the default kill.
            let token = CancellationToken::new();
            granary_common::shutdown::cancel_on_signal(token.clone());
            let rpc = tokio::net::TcpListener::bind(config.rpc_addr)
                .await
                .with_context(|| format!("cannot listen on rpc_addr {}", config.rpc_addr))?;
            let http = tokio::net::TcpListener::bind(config.http_addr)
                .await
                .with_context(|| format!("cannot listen on http_addr {}", config.http_addr))?;
            let nn = granary_namenode::start(config, rpc, http, token).await?;
            nn.wait().await?;
            Ok(())
        }
    }
}
