use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use granary_datanode::config::Cli;

// RPCs and packets allocate per call; mimalloc beat glibc's malloc at that
// side by side (docs/performance.md, ninth round).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (config, moved) = cli.resolve_noting_moved()?;
    if cli.check_config {
        print!("{}", toml::to_string(&config)?);
        let namenodes = config.namenodes()?;
        if namenodes.len() > 1 {
            eprintln!(
                "namenodes: {} ({}; the datanode registers with each and obeys the active one)",
                namenodes.join(", "),
                namenodes.len()
            );
        }
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
    let dn = granary_datanode::start(config, rpc, http, token).await?;
    dn.wait().await?;
    Ok(())
}
