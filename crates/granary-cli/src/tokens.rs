//! `granary admin token get|renew|cancel`: delegation tokens (HDFS's
//! `hdfs fetchdt`), for jobs that act as a user without its certificate.

use clap::Subcommand;
use granary_client::DfsClient;

use crate::error::CliResult;
use crate::out::outln;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// A new token for the calling user: prints it, then its expiry and
    /// maximum date (ms since the epoch) on stderr.
    Get {
        /// Who may renew it (a scheduler's user); default: the caller.
        #[arg(long, default_value = "")]
        renewer: String,
    },
    /// Extends TOKEN's life (its renewer only); prints the new expiry.
    Renew {
        // Not `token`: that is the global --token's id, which would take
        // this value too and send it as the call's credential.
        #[arg(value_name = "TOKEN")]
        renewed: String,
    },
    /// Ends TOKEN at once (its owner or renewer).
    Cancel {
        #[arg(value_name = "TOKEN")]
        cancelled: String,
    },
}

impl TokenCommand {
    pub async fn execute(&self, c: &DfsClient) -> CliResult {
        match self {
            Self::Get { renewer } => get(c, renewer).await,
            Self::Renew { renewed } => renew(c, renewed).await,
            Self::Cancel { cancelled } => cancel(c, cancelled).await,
        }
    }
}

async fn get(c: &DfsClient, renewer: &str) -> CliResult {
    let t = c.get_delegation_token(renewer).await?;
    outln!("{}", t.token)?;
    eprintln!("expiry_ms {} max_date_ms {}", t.expiry_ms, t.max_date_ms);
    Ok(())
}

async fn renew(c: &DfsClient, token: &str) -> CliResult {
    let expiry = c.renew_delegation_token(token).await?;
    outln!("{expiry}")?;
    Ok(())
}

async fn cancel(c: &DfsClient, token: &str) -> CliResult {
    c.cancel_delegation_token(token).await?;
    Ok(())
}
