//! What quota accounting costs: gRPC namenode operations against two local
//! namenodes, one with name and space quotas on `/` and on `/nnbench`'s
//! parent, one with none (then accounting is skipped altogether), rounds
//! alternating between them (docs/performance.md).

use granary_client::QuotaSetting;

use crate::local;
use crate::side_by_side::{self, Comparison};

pub async fn run(ops: u64, threads: usize, connections: usize, rounds: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut nns = Vec::new();
    for name in ["none", "quotas"] {
        let cfg = local::config(&tmp.path().join(name));
        granary_namenode::format(&cfg, false, None)?;
        nns.push(local::open(cfg).await?);
    }
    let nns: [_; 2] = nns.try_into().map_err(|_| anyhow::anyhow!("two namenodes"))?;
    let cmp = Comparison {
        what: "quota",
        sides: ["none", "quotas"],
    };
    // Limits far above what the phases use: every call is accounted and
    // checked, none refused.
    let limits = (QuotaSetting::Limit(1 << 40), QuotaSetting::Limit(1 << 60));
    side_by_side::run(
        &cmp,
        &nns,
        (ops, threads, connections, rounds),
        |c, side| async move {
            if side == 1 {
                c.set_quota("/", limits.0, limits.1).await?;
            }
            Ok(())
        },
    )
    .await?;
    for nn in nns {
        nn.shutdown().await?;
    }
    Ok(())
}
