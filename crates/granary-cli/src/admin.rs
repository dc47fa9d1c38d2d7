//! `granary admin ...`: cluster administration.

use clap::{Subcommand, ValueEnum};

use crate::error::CliResult;
use crate::out::outln;
use crate::quota::{self, QuotaChange::*};
use granary_client::{DatanodeAdminAction, DatanodeState, DfsClient, QuotaSetting, SafeModeAction};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Safe mode: get, enter, leave, or wait until it is off.
    Safemode {
        #[arg(value_enum)]
        action: SafeModeArg,
    },
    /// Datanodes with their state and usage.
    Report,
    /// Move a datanode's blocks elsewhere so it can be stopped (HOST:PORT or uuid).
    Decommission { datanode: String },
    /// Return a decommissioning or decommissioned datanode to service.
    Recommission { datanode: String },
    /// Close a file whose writer died, at the length its replicas agree on
    /// (HDFS's `hdfs debug recoverLease`): asks again while the datanodes
    /// are still reporting, up to RETRIES times, a second apart.
    RecoverLease {
        path: String,
        #[arg(long, default_value_t = 30)]
        retries: u32,
    },
    /// Limit the names (files and directories, DIR itself included) under
    /// each DIR (HDFS's `dfsadmin -setQuota`; superuser).
    SetQuota {
        #[arg(value_parser = crate::quota::parse_names)]
        quota: u64,
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<String>,
    },
    /// Remove each DIR's name quota.
    ClrQuota {
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<String>,
    },
    /// Limit the bytes under each DIR, all replicas counted: bytes or
    /// 10g, 1.5t, ... (HDFS's `dfsadmin -setSpaceQuota`; superuser).
    SetSpaceQuota {
        #[arg(value_parser = crate::quota::parse_size)]
        quota: u64,
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<String>,
    },
    /// Remove each DIR's space quota.
    ClrSpaceQuota {
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<String>,
    },
    /// Let snapshots of DIR be taken (HDFS's `dfsadmin -allowSnapshot`;
    /// superuser). Snapshottable directories do not nest.
    #[command(alias = "allowSnapshot")]
    AllowSnapshot { dir: String },
    /// Take that back; DIR must have no snapshots left.
    #[command(alias = "disallowSnapshot")]
    DisallowSnapshot { dir: String },
    /// Move replicas between a datanode's own data dirs (after a disk was
    /// added) until each is within the threshold of their mean
    /// utilization; waits and shows them (HOST:PORT or uuid; superuser).
    Diskbalancer {
        datanode: String,
        /// Percentage points from the mean (default 10).
        #[arg(long)]
        threshold: Option<f64>,
        /// Seconds to wait for the dirs to be balanced.
        #[arg(long, default_value_t = 3600)]
        wait: u64,
        /// MiB per second the moves may copy (HDFS's disk balancer: 10).
        #[arg(long = "max-bandwidth", default_value_t = 10.0)]
        max_bandwidth: f64,
    },
    /// Back up the namenode metadata: a consistent copy written into NAME, a
    /// new directory in the namenode's `checkpoint_dir` (or NAME's absolute
    /// path there); start a namenode on it to restore. Superuser only.
    Checkpoint {
        #[arg(value_name = "NAME")]
        dir: String,
    },
    /// A group of namenodes: `ha status` (each one's role, term, log and
    /// applied index, lag), `ha add NAME HOST:PORT`, `ha remove NAME`.
    Ha {
        #[command(subcommand)]
        cmd: crate::ha::HaCommand,
    },
    /// Secure mode's cluster CA and certificates, written locally:
    /// `certs init --dir DIR` (a CA, a namenode, a datanode and a user),
    /// `certs issue --dir DIR ROLE NAME --host HOST` (one more).
    Certs {
        #[command(subcommand)]
        cmd: crate::certs::CertsCommand,
    },
    /// Delegation tokens: `token get [--renewer USER]`, `token renew
    /// TOKEN`, `token cancel TOKEN` (HDFS's fetchdt). Use one with
    /// --token / GRANARY_TOKEN.
    Token {
        #[command(subcommand)]
        cmd: crate::tokens::TokenCommand,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SafeModeArg {
    Get,
    Enter,
    Leave,
    Wait,
}

impl AdminCommand {
    pub async fn execute(&self, c: &DfsClient) -> CliResult {
        match self {
            Self::Safemode { action } => safemode(c, *action).await,
            Self::Ha { cmd } => cmd.execute(c).await,
            Self::Certs { cmd } => cmd.execute(),
            Self::Token { cmd } => cmd.execute(c).await,
            Self::Decommission { datanode } => {
                set_admin_state(c, datanode, DatanodeAdminAction::Decommission).await
            }
            Self::Recommission { datanode } => {
                set_admin_state(c, datanode, DatanodeAdminAction::Recommission).await
            }
            Self::RecoverLease { path, retries } => recover_lease(c, path, *retries).await,
            Self::Checkpoint { dir } => checkpoint(c, dir).await,
            Self::Diskbalancer {
                datanode,
                threshold,
                wait,
                max_bandwidth,
            } => crate::balancer::disk_balance(c, datanode, *threshold, *max_bandwidth, *wait).await,
            Self::SetQuota { quota, dirs } => quota::set(c, Names(QuotaSetting::Limit(*quota)), dirs).await,
            Self::ClrQuota { dirs } => quota::set(c, Names(QuotaSetting::Clear), dirs).await,
            Self::SetSpaceQuota { quota, dirs } => {
                quota::set(c, Space(QuotaSetting::Limit(*quota)), dirs).await
            }
            Self::ClrSpaceQuota { dirs } => quota::set(c, Space(QuotaSetting::Clear), dirs).await,
            Self::AllowSnapshot { dir } => crate::snapshot::allow(c, dir, true).await,
            Self::DisallowSnapshot { dir } => crate::snapshot::allow(c, dir, false).await,
            Self::Report => report(c).await,
        }
    }
}

async fn safemode(c: &DfsClient, action: SafeModeArg) -> CliResult {
    let act = match action {
        SafeModeArg::Enter => SafeModeAction::Enter,
        SafeModeArg::Leave => SafeModeAction::Leave,
        SafeModeArg::Get | SafeModeArg::Wait => SafeModeAction::Get,
    };
    let mut r = c.safe_mode(act).await?;
    if matches!(action, SafeModeArg::Wait) {
        // Bounded by the caller (e.g. `timeout`); polls twice a second.
        while r.on {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            r = c.safe_mode(SafeModeAction::Get).await?;
        }
    }
    outln!("Safe mode is {}", if r.on { "ON" } else { "OFF" })?;
    if r.on {
        outln!("{}", r.status)?;
    }
    Ok(())
}

async fn set_admin_state(c: &DfsClient, datanode: &str, action: DatanodeAdminAction) -> CliResult {
    let info = c.set_datanode_admin_state(datanode, action).await?;
    let id = info.id;
    outln!("{} ({}): {}", id.rpc_addr, id.uuid, info.state)
}

async fn recover_lease(c: &DfsClient, path: &str, retries: u32) -> CliResult {
    let mut closed = c.recover_lease(path).await?;
    for _ in 0..retries {
        if closed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        closed = c.recover_lease(path).await?;
    }
    let st = c.stat(path).await?;
    outln!(
        "recoverLease {}: {path} length {}",
        if closed { "SUCCEEDED" } else { "FAILED" },
        st.length
    )
}

async fn checkpoint(c: &DfsClient, dir: &str) -> CliResult {
    let r = c.checkpoint(dir).await?;
    outln!(
        "checkpoint written to {} ({}) at {}",
        r.dir,
        crate::format::human(r.bytes),
        crate::format::date_utc(r.created_ms)
    )
}

async fn report(c: &DfsClient) -> CliResult {
    let report = c.cluster_report().await?;
    let nodes = &report.datanodes;
    let health = report.health;
    let (cap, used, rem): (u64, u64, u64) = nodes.iter().fold((0, 0, 0), |(a, b, c), n| {
        (a + n.capacity, b + n.dfs_used, c + n.remaining)
    });
    let count = |s: DatanodeState| nodes.iter().filter(|n| n.state == s).count();
    outln!("Configured Capacity: {cap} ({})", crate::format::human(cap))?;
    outln!("DFS Used: {used} ({})", crate::format::human(used))?;
    outln!("DFS Remaining: {rem} ({})", crate::format::human(rem))?;
    outln!("Safe mode: {}", if health.safe_mode { "ON" } else { "OFF" })?;
    outln!("Blocks: {}", health.blocks_total)?;
    outln!("Under replicated blocks: {}", health.under_replicated)?;
    outln!("Missing blocks: {}", health.missing)?;
    outln!("Corrupt replicas reported: {}", health.corrupt_replicas)?;
    outln!("Pending replications: {}", health.pending_replications)?;
    outln!(
        "Datanodes: {} live, {} stale, {} dead, {} decommissioning, {} decommissioned",
        count(DatanodeState::Live),
        count(DatanodeState::Stale),
        count(DatanodeState::Dead),
        count(DatanodeState::Decommissioning),
        count(DatanodeState::Decommissioned)
    )?;
    for n in nodes {
        let id = &n.id;
        outln!()?;
        outln!("Name: {} ({})", id.rpc_addr, id.hostname)?;
        outln!("Uuid: {}", id.uuid)?;
        outln!("Rack: {}", id.rack)?;
        outln!("State: {}", n.state)?;
        outln!("Capacity: {} ({})", n.capacity, crate::format::human(n.capacity))?;
        outln!("DFS Used: {} ({})", n.dfs_used, crate::format::human(n.dfs_used))?;
        outln!(
            "DFS Remaining: {} ({})",
            n.remaining,
            crate::format::human(n.remaining)
        )?;
        outln!(
            "Blocks: {}",
            report.block_counts.get(&id.uuid).copied().unwrap_or(0)
        )?;
        outln!("Xceivers: {}", n.xceiver_count)?;
        outln!("Last contact: {}", crate::format::date_utc(n.last_heartbeat_ms))?;
    }
    Ok(())
}
