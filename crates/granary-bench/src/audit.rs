//! What the audit log costs: gRPC namenode operations against two local
//! namenodes, one writing an audit line per operation and one not, rounds
//! alternating between them (docs/performance.md).

use crate::local;
use crate::side_by_side::{self, Comparison};

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
    let nns: [_; 2] = nns.try_into().map_err(|_| anyhow::anyhow!("two namenodes"))?;
    let cmp = Comparison {
        what: "audit",
        sides: ["off", "on"],
    };
    side_by_side::run(&cmp, &nns, (ops, threads, connections, rounds), |_, _| async {
        Ok(())
    })
    .await?;
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
