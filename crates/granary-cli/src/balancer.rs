//! `granary balancer [-threshold PCT] [-max-bandwidth MiB/s] [-exclude H,..]`
//! (HDFS's `hdfs balancer`): runs balancer rounds on the namenode until
//! every datanode is within the threshold of the mean utilization,
//! printing progress each iteration. Stopping it (Ctrl-C) is safe: moves
//! in flight finish or are given up by the namenode, and a new run starts
//! from the replicas the datanodes hold.

use std::time::{Duration, Instant};

use clap::Args;
use granary_client::{BalanceOptions, DfsClient};

use crate::error::{CliError, CliResult, exit};
use crate::format;
use crate::out::outln;
use granary_common::ErrorCode;

#[derive(Debug, Args)]
pub struct BalancerArgs {
    /// Percentage points a datanode's utilization may be from the cluster
    /// mean (default: the namenode's `[balancer] threshold_percent`, 10).
    #[arg(long, value_name = "PCT")]
    threshold: Option<f64>,
    /// MiB per second each datanode's moves may take (default: the
    /// namenode's `[balancer] bandwidth_mib_per_sec`).
    #[arg(long = "max-bandwidth", value_name = "MiB/s")]
    max_bandwidth: Option<f64>,
    /// Datanodes to leave alone: hosts, host:port or uuids, comma separated.
    #[arg(long, value_name = "H,..", value_delimiter = ',')]
    exclude: Vec<String>,
    /// Give up after this many iterations in a row that moved nothing.
    #[arg(long = "idle-iterations", default_value_t = 5)]
    idle_iterations: u32,
    /// Milliseconds between iterations.
    #[arg(long = "interval-ms", default_value_t = 2000)]
    interval_ms: u64,
}

/// "1.50 GB", "0 B": sizes as HDFS's balancer prints them (`byteDesc`).
fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KB", "MB", "GB", "TB", "PB", "EB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = UNITS[0];
    for u in UNITS {
        v /= 1024.0;
        unit = u;
        if v < 1024.0 {
            break;
        }
    }
    format!("{v:.2} {unit}")
}

pub async fn run(c: &DfsClient, a: &BalancerArgs) -> CliResult<u8> {
    if let Some(t) = a.threshold
        && !(t > 0.0 && t <= 100.0)
    {
        return Err(CliError::usage(format!(
            "-threshold {t}: a percentage above 0, at most 100"
        )));
    }
    let bandwidth = match a.max_bandwidth {
        Some(m) if !(m > 0.0 && m.is_finite()) => {
            return Err(CliError::usage(format!("-max-bandwidth {m}: MiB/s above 0")));
        }
        Some(m) => Some((m * (1u64 << 20) as f64).max(1.0) as u64),
        None => None,
    };
    let opts = BalanceOptions {
        threshold_percent: a.threshold,
        bandwidth_bytes_per_sec: bandwidth,
        exclude: a
            .exclude
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect(),
    };
    let started = Instant::now();
    let mut first_moved = None;
    let mut last_moved = 0;
    let mut idle = 0;
    let mut balanced_for = 0;
    outln!(
        "Time Stamp               Iteration#  Bytes Already Moved  Bytes Left To Move  Bytes Being Moved"
    )?;
    for iteration in 0u64.. {
        let r = c.balance(&opts).await?;
        let base = *first_moved.get_or_insert(r.bytes_moved);
        let moved = r.bytes_moved.saturating_sub(base);
        outln!(
            "{:<24} {:>10}  {:>19}  {:>18}  {:>17}",
            format::date_utc(chrono::Utc::now().timestamp_millis()),
            iteration,
            bytes(moved),
            bytes(r.bytes_left_to_move),
            bytes(r.bytes_being_moved)
        )?;
        // Balanced, with the last moves done (or still going after as many
        // iterations as an idle run is given: they finish on their own).
        balanced_for = if r.balanced { balanced_for + 1 } else { 0 };
        if r.balanced && (r.bytes_being_moved == 0 || balanced_for > a.idle_iterations) {
            outln!("The cluster is balanced. Exiting...")?;
            break;
        }
        if r.moves_scheduled == 0 && r.bytes_being_moved == 0 && moved == last_moved {
            idle += 1;
            if idle >= a.idle_iterations {
                outln!("No block can be moved. Exiting...")?;
                outln!("Balancing took {:.1} seconds", started.elapsed().as_secs_f64())?;
                return Err(CliError::refused(
                    ErrorCode::Unavailable,
                    format!(
                        "no block can be moved: {} datanodes over and {} under the threshold, and none of their blocks may move (rack rules, replication, or excluded nodes)",
                        r.over_utilized, r.under_utilized
                    ),
                ));
            }
        } else {
            idle = 0;
        }
        last_moved = moved;
        tokio::time::sleep(Duration::from_millis(a.interval_ms.max(100))).await;
    }
    outln!("Balancing took {:.1} seconds", started.elapsed().as_secs_f64())?;
    Ok(exit::OK)
}

/// `granary admin diskbalancer HOST`: starts the datanode's disk balancer
/// and shows its data dirs until each is within the threshold of their
/// mean (or `--no-wait`).
pub async fn disk_balance(
    c: &DfsClient,
    node: &str,
    threshold: Option<f64>,
    max_bandwidth: f64,
    wait_secs: u64,
) -> CliResult {
    if let Some(t) = threshold
        && !(t > 0.0 && t <= 100.0)
    {
        return Err(CliError::usage(format!(
            "-threshold {t}: a percentage above 0, at most 100"
        )));
    }
    if !(max_bandwidth > 0.0 && max_bandwidth.is_finite()) {
        return Err(CliError::usage(format!(
            "--max-bandwidth {max_bandwidth}: MiB/s above 0"
        )));
    }
    let t = threshold.unwrap_or(10.0) / 100.0;
    let rate = (max_bandwidth * (1u64 << 20) as f64).max(1.0) as u64;
    let before = c.disk_balance(node, true, threshold, Some(rate)).await?;
    let name = before
        .datanode
        .as_ref()
        .map_or(node.to_string(), |d| d.id.rpc_addr.clone());
    show_volumes(&name, "before", &before.volumes)?;
    if before.volumes.len() < 2 {
        outln!("{name} has one data dir: nothing to balance")?;
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(wait_secs);
    let mut seen = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = c.disk_balance(node, false, None, None).await?;
        let working: Vec<_> = now
            .volumes
            .iter()
            .filter(|v| !v.failed && v.capacity > 0)
            .collect();
        let used: u64 = working.iter().map(|v| v.dfs_used).sum();
        let cap: u64 = working.iter().map(|v| v.capacity).sum();
        let mean = used as f64 / cap.max(1) as f64;
        // Twice in a row: a heartbeat may come from before the run began.
        if working.iter().all(|v| (v.utilization() - mean).abs() <= t) {
            seen += 1;
            if seen >= 2 {
                show_volumes(&name, "after", &now.volumes)?;
                outln!("The data dirs of {name} are balanced.")?;
                return Ok(());
            }
        } else {
            seen = 0;
        }
        if Instant::now() >= deadline {
            show_volumes(&name, "now", &now.volumes)?;
            return Err(CliError::refused(
                ErrorCode::Unavailable,
                format!(
                    "the data dirs of {name} are not balanced after {wait_secs} s; the disk balancer goes on"
                ),
            ));
        }
    }
}

fn show_volumes(node: &str, when: &str, volumes: &[granary_client::Volume]) -> CliResult {
    outln!("{node} {when}:")?;
    for v in volumes {
        outln!(
            "  {:<50} {:>10} of {:>10} used ({:.1} %){}",
            v.path,
            bytes(v.dfs_used),
            bytes(v.capacity),
            v.utilization() * 100.0,
            if v.failed { " FAILED" } else { "" }
        )?;
    }
    Ok(())
}
