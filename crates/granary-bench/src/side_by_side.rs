//! Two local namenodes that differ in one setting, measured in one run:
//! the nnbench phases over gRPC, rounds alternating between the two, and
//! the median ops/s of each phase side by side (docs/performance.md).

use granary_namenode::server::RunningNamenode;

use crate::local;
use crate::stats::median;

/// What is compared: its name in the output, the two sides' names.
pub struct Comparison {
    pub what: &'static str,
    pub sides: [&'static str; 2],
}

/// Runs `rounds` rounds on `nns` (side 0, then side 1; the order swaps
/// every round). Before each round `prepare(client, side)` readies the
/// namespace (the phases then create what they measure in `/nnbench`).
pub async fn run<F, Fut>(
    cmp: &Comparison,
    nns: &[RunningNamenode; 2],
    (ops, threads, connections, rounds): (u64, usize, usize, usize),
    prepare: F,
) -> anyhow::Result<()>
where
    F: Fn(granary_client::DfsClient, usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    // Per side, per phase: the ops/s of each round.
    let mut rates: [Vec<(&'static str, Vec<f64>)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            println!("{} round={round} side={}", cmp.what, cmp.sides[i]);
            let addr = nns[i].rpc_addr.to_string();
            let c =
                granary_client::DfsClient::connect(&addr, granary_client::Identity::new(local::SUPERUSER))
                    .await?;
            let _ = c.delete("/nnbench", true).await;
            prepare(c, i).await?;
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
    let [a_rates, b_rates] = &mut rates;
    let [a, b] = cmp.sides;
    for (phase, av) in a_rates.iter_mut() {
        let Some((_, bv)) = b_rates.iter_mut().find(|(p, _)| p == phase) else {
            continue;
        };
        let (x, y) = (median(av), median(bv));
        println!(
            "{} summary: phase={phase} rounds={rounds} ops_per_sec_{a}={x:.0} ops_per_sec_{b}={y:.0} ratio={:.3}",
            cmp.what,
            y / x
        );
    }
    Ok(())
}
