//! Choosing datanodes for new replicas.

use rand::seq::SliceRandom;

use granary_proto as pb;

/// Picks where a block's replicas go. A trait so rack-aware and other
/// policies can replace the default.
pub trait PlacementPolicy: Send + Sync {
    /// Up to `count` distinct targets from `candidates`, skipping `excluded`
    /// (rpc addrs or uuids). Fewer are returned when fewer are eligible.
    fn choose(
        &self,
        count: usize,
        candidates: Vec<pb::DatanodeInfo>,
        excluded: &[String],
    ) -> Vec<pb::DatanodeInfo>;
}

/// Random among eligible nodes, least busy first among equals: spreads load
/// without a central counter. At most one replica per node.
#[derive(Default)]
pub struct RandomPlacement;

impl PlacementPolicy for RandomPlacement {
    fn choose(
        &self,
        count: usize,
        candidates: Vec<pb::DatanodeInfo>,
        excluded: &[String],
    ) -> Vec<pb::DatanodeInfo> {
        let mut eligible: Vec<_> = candidates
            .into_iter()
            .filter(|c| {
                c.id.as_ref()
                    .is_some_and(|id| !excluded.iter().any(|e| *e == id.rpc_addr || *e == id.uuid))
            })
            .collect();
        eligible.shuffle(&mut rand::thread_rng());
        eligible.sort_by_key(|c| c.xceiver_count);
        eligible.truncate(count);
        eligible
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u32) -> pb::DatanodeInfo {
        pb::DatanodeInfo {
            id: Some(pb::DatanodeId {
                uuid: format!("u{n}"),
                rpc_addr: format!("127.0.0.1:{n}"),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn distinct_targets_and_exclusions_honoured() {
        let p = RandomPlacement;
        for _ in 0..50 {
            let got = p.choose(
                3,
                (0..5).map(node).collect(),
                &["127.0.0.1:2".into(), "u4".into()],
            );
            assert_eq!(got.len(), 3);
            let mut ids: Vec<_> = got.iter().map(|g| g.id.clone().unwrap().uuid).collect();
            ids.sort();
            assert_eq!(ids, vec!["u0", "u1", "u3"]);
        }
        assert_eq!(p.choose(3, vec![node(1)], &[]).len(), 1);
    }
}
