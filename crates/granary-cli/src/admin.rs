//! `granary admin ...`: cluster administration.

use clap::{Subcommand, ValueEnum};

use granary_client::{DatanodeAdminAction, DatanodeState, DfsClient, SafeModeAction};

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
    /// Back up the namenode metadata: a consistent copy written into NAME, a
    /// new directory in the namenode's `checkpoint_dir` (or NAME's absolute
    /// path there); start a namenode on it to restore. Superuser only.
    Checkpoint {
        #[arg(value_name = "NAME")]
        dir: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SafeModeArg {
    Get,
    Enter,
    Leave,
    Wait,
}

pub async fn run(c: &DfsClient, cmd: &AdminCommand) -> i32 {
    match run_inner(c, cmd).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("granary: {e}");
            1
        }
    }
}

async fn run_inner(c: &DfsClient, cmd: &AdminCommand) -> Result<(), String> {
    match cmd {
        AdminCommand::Safemode { action } => {
            let act = match action {
                SafeModeArg::Enter => SafeModeAction::Enter,
                SafeModeArg::Leave => SafeModeAction::Leave,
                SafeModeArg::Get | SafeModeArg::Wait => SafeModeAction::Get,
            };
            let mut r = c.safe_mode(act).await.map_err(|e| e.to_string())?;
            if matches!(action, SafeModeArg::Wait) {
                // Bounded by the caller (e.g. `timeout`); polls twice a second.
                while r.on {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    r = c
                        .safe_mode(SafeModeAction::Get)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            println!("Safe mode is {}", if r.on { "ON" } else { "OFF" });
            if r.on {
                println!("{}", r.status);
            }
            Ok(())
        }
        AdminCommand::Decommission { datanode } | AdminCommand::Recommission { datanode } => {
            let action = if matches!(cmd, AdminCommand::Decommission { .. }) {
                DatanodeAdminAction::Decommission
            } else {
                DatanodeAdminAction::Recommission
            };
            let info = c
                .set_datanode_admin_state(datanode, action)
                .await
                .map_err(|e| e.to_string())?;
            let id = info.id;
            println!("{} ({}): {}", id.rpc_addr, id.uuid, info.state);
            Ok(())
        }
        AdminCommand::RecoverLease { path, retries } => {
            let mut closed = c.recover_lease(path).await.map_err(|e| e.to_string())?;
            for _ in 0..*retries {
                if closed {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                closed = c.recover_lease(path).await.map_err(|e| e.to_string())?;
            }
            let st = c.stat(path).await.map_err(|e| e.to_string())?;
            println!(
                "recoverLease {}: {path} length {}",
                if closed { "SUCCEEDED" } else { "FAILED" },
                st.length
            );
            Ok(())
        }
        AdminCommand::Checkpoint { dir } => {
            let r = c.checkpoint(dir).await.map_err(|e| e.to_string())?;
            println!(
                "checkpoint written to {} ({}) at {}",
                r.dir,
                crate::format::human(r.bytes),
                crate::format::date_utc(r.created_ms)
            );
            Ok(())
        }
        AdminCommand::Report => {
            let report = c.cluster_report().await.map_err(|e| e.to_string())?;
            let nodes = &report.datanodes;
            let health = report.health;
            let (cap, used, rem): (u64, u64, u64) = nodes.iter().fold((0, 0, 0), |(a, b, c), n| {
                (a + n.capacity, b + n.dfs_used, c + n.remaining)
            });
            let count = |s: DatanodeState| nodes.iter().filter(|n| n.state == s).count();
            println!("Configured Capacity: {cap} ({})", crate::format::human(cap));
            println!("DFS Used: {used} ({})", crate::format::human(used));
            println!("DFS Remaining: {rem} ({})", crate::format::human(rem));
            println!("Safe mode: {}", if health.safe_mode { "ON" } else { "OFF" });
            println!("Blocks: {}", health.blocks_total);
            println!("Under replicated blocks: {}", health.under_replicated);
            println!("Missing blocks: {}", health.missing);
            println!("Corrupt replicas reported: {}", health.corrupt_replicas);
            println!("Pending replications: {}", health.pending_replications);
            println!(
                "Datanodes: {} live, {} stale, {} dead, {} decommissioning, {} decommissioned",
                count(DatanodeState::Live),
                count(DatanodeState::Stale),
                count(DatanodeState::Dead),
                count(DatanodeState::Decommissioning),
                count(DatanodeState::Decommissioned)
            );
            for n in nodes {
                let id = &n.id;
                println!();
                println!("Name: {} ({})", id.rpc_addr, id.hostname);
                println!("Uuid: {}", id.uuid);
                println!("Rack: {}", id.rack);
                println!("State: {}", n.state);
                println!("Capacity: {} ({})", n.capacity, crate::format::human(n.capacity));
                println!("DFS Used: {} ({})", n.dfs_used, crate::format::human(n.dfs_used));
                println!(
                    "DFS Remaining: {} ({})",
                    n.remaining,
                    crate::format::human(n.remaining)
                );
                println!(
                    "Blocks: {}",
                    report.block_counts.get(&id.uuid).copied().unwrap_or(0)
                );
                println!("Xceivers: {}", n.xceiver_count);
                println!("Last contact: {}", crate::format::date_utc(n.last_heartbeat_ms));
            }
            Ok(())
        }
    }
}
