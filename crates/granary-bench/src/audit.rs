//! What the audit log costs: gRPC namenode operations against two local
//! namenodes, one writing an audit line per operation and one not, rounds
//! alternating between them (docs/performance.md).

use crate::local;
use crate::stats::median;

pub async fn run(ops: u64, threads: usize, connections: usize, rounds: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let audit_file = tmp.path().join("hdfs-audit.log");
    let mut nns = Vec::new();
    for (name, audited) in [("off", false), ("on", true)] {
        let dir = tmp.path().join(name);
        let mut cfg = local::config(&dir);
        if audited {
            cfg.audit.file = audit_file.clone();
        }
        granary_namenode::format(&cfg, false, None)?;
        nns.push(local::open(cfg).await?);
    }
    // Per mode, per phase: the ops/s of each round.
    let mut rates: [Vec<(&'static str, Vec<f64>)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            println!("audit round={round} log={}", ["off", "on"][i]);
            let addr = nns[i].rpc_addr.to_string();
            // A fresh tree per round: the phases create what they measure.
            let c =
                granary_client::DfsClient::connect(&addr, granary_client::Identity::new(local::SUPERUSER))
                    .await?;
            let _ = c.delete("/nnbench", true).await;
            for (phase, rate) in
                crate::nnbench::over_grpc(&addr, local::SUPERUSER, ops, threads, connections).await?
            {
                match rates[i].iter_mut().find(|(p, _)| *p == phase) {
                    Some((_, v)) => v.push(rate),
                    None => rates[i].push((phase, vec![rate])),
                }
            }
        }
    }
    let [off_rates, on_rates] = &mut rates;
    for (phase, off) in off_rates.iter_mut() {
        let Some((_, on)) = on_rates.iter_mut().find(|(p, _)| p == phase) else {
            continue;
        };
        let (off, on) = (median(off), median(on));
        println!(
            "audit summary: phase={phase} rounds={rounds} ops_per_sec_off={off:.0} ops_per_sec_on={on:.0} ratio={:.3}",
            on / off
        );
    }
    for nn in nns {
        nn.shutdown().await?;
    }
    // The writer flushes within a second of the last line.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let lines = std::fs::read_to_string(&audit_file)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    println!("audit log: lines={lines}");
    Ok(())
}
