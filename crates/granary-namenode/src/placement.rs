//! Choosing datanodes for replicas (HDFS's default policy): the writer's
//! node first when it is a datanode, the second replica on another rack, the
//! third on the second's rack on another node; never two replicas on one
//! node, at most two per rack while other racks have room. Racks come from
//! each datanode's `--rack`.

use std::collections::HashMap;

use rand::seq::SliceRandom;

use granary_proto as pb;

/// What the policy knows about the block being placed.
#[derive(Debug, Default, Clone)]
pub struct PlacementContext {
    /// Host (IP) of the client asking, to place the first replica locally.
    pub writer_host: Option<String>,
    /// Nodes already holding the block (re-replication).
    pub existing: Vec<pb::DatanodeInfo>,
}

/// A pluggable placement policy.
pub trait PlacementPolicy: Send + Sync {
    /// Up to `count` distinct targets from `candidates`, skipping `excluded`
    /// (rpc addrs or uuids) and the context's existing holders, in pipeline
    /// order. Fewer are returned when fewer are eligible.
    fn choose(
        &self,
        count: usize,
        candidates: Vec<pb::DatanodeInfo>,
        excluded: &[String],
        ctx: &PlacementContext,
    ) -> Vec<pb::DatanodeInfo>;

    /// Which `n` of `holders` lose their replica when a block has too many.
    fn choose_excess(&self, holders: Vec<pb::DatanodeInfo>, n: usize) -> Vec<pb::DatanodeInfo>;
}

fn rack(i: &pb::DatanodeInfo) -> &str {
    i.id.as_ref().map_or("", |d| d.rack.as_str())
}

fn uuid(i: &pb::DatanodeInfo) -> &str {
    i.id.as_ref().map_or("", |d| d.uuid.as_str())
}

#[derive(Default)]
pub struct RackAwarePlacement;

impl RackAwarePlacement {
    /// Picks the least busy of a random shuffle among nodes passing `ok`.
    fn pick(
        pool: &mut Vec<pb::DatanodeInfo>,
        ok: impl Fn(&pb::DatanodeInfo) -> bool,
    ) -> Option<pb::DatanodeInfo> {
        let idx = pool
            .iter()
            .enumerate()
            .filter(|(_, c)| ok(c))
            .min_by_key(|(_, c)| c.xceiver_count)
            .map(|(i, _)| i)?;
        Some(pool.remove(idx))
    }
}

impl PlacementPolicy for RackAwarePlacement {
    fn choose(
        &self,
        count: usize,
        candidates: Vec<pb::DatanodeInfo>,
        excluded: &[String],
        ctx: &PlacementContext,
    ) -> Vec<pb::DatanodeInfo> {
        let existing: Vec<&str> = ctx.existing.iter().map(uuid).collect();
        let mut pool: Vec<pb::DatanodeInfo> = candidates
            .into_iter()
            .filter(|c| {
                c.id.as_ref().is_some_and(|id| {
                    !excluded.iter().any(|e| *e == id.rpc_addr || *e == id.uuid)
                        && !existing.contains(&id.uuid.as_str())
                })
            })
            .collect();
        pool.shuffle(&mut rand::thread_rng());
        let racks_total = {
            let mut r: Vec<&str> = pool
                .iter()
                .map(rack)
                .chain(ctx.existing.iter().map(rack))
                .collect();
            r.sort_unstable();
            r.dedup();
            r.len()
        };
        let mut chosen: Vec<pb::DatanodeInfo> = Vec::new();
        let mut per_rack: HashMap<String, usize> = HashMap::new();
        for e in &ctx.existing {
            *per_rack.entry(rack(e).to_string()).or_default() += 1;
        }
        let total = ctx.existing.len() + count;
        // At most this many replicas per rack while other racks exist (HDFS: (n-1)/racks + 2).
        let max_per_rack = if racks_total <= 1 {
            usize::MAX
        } else {
            (total - 1) / racks_total + 2
        };
        while chosen.len() < count && !pool.is_empty() {
            let all: Vec<&pb::DatanodeInfo> = ctx.existing.iter().chain(chosen.iter()).collect();
            let under_cap = |c: &pb::DatanodeInfo| per_rack.get(rack(c)).copied().unwrap_or(0) < max_per_rack;
            let pick = match all.len() {
                0 => {
                    let local = ctx.writer_host.as_deref();
                    Self::pick(&mut pool, |c| {
                        local.is_some_and(|h| {
                            c.id.as_ref()
                                .is_some_and(|id| granary_common::net::host_of(&id.rpc_addr) == h)
                        })
                    })
                    .or_else(|| Self::pick(&mut pool, |_| true))
                }
                1 => {
                    let first = rack(all[0]).to_string();
                    Self::pick(&mut pool, |c| rack(c) != first).or_else(|| Self::pick(&mut pool, |_| true))
                }
                2 => {
                    let (r0, r1) = (rack(all[0]).to_string(), rack(all[1]).to_string());
                    if r0 == r1 {
                        Self::pick(&mut pool, |c| rack(c) != r0).or_else(|| Self::pick(&mut pool, |_| true))
                    } else {
                        Self::pick(&mut pool, |c| rack(c) == r1 && under_cap(c))
                            .or_else(|| Self::pick(&mut pool, |c| under_cap(c)))
                            .or_else(|| Self::pick(&mut pool, |_| true))
                    }
                }
                _ => Self::pick(&mut pool, |c| under_cap(c)).or_else(|| Self::pick(&mut pool, |_| true)),
            };
            let Some(p) = pick else { break };
            *per_rack.entry(rack(&p).to_string()).or_default() += 1;
            chosen.push(p);
        }
        chosen
    }

    fn choose_excess(&self, holders: Vec<pb::DatanodeInfo>, n: usize) -> Vec<pb::DatanodeInfo> {
        let mut left = holders;
        let mut out = Vec::new();
        while out.len() < n && !left.is_empty() {
            let mut per_rack: HashMap<String, usize> = HashMap::new();
            for h in &left {
                *per_rack.entry(rack(h).to_string()).or_default() += 1;
            }
            // From a rack holding more than one replica if any, keeping rack spread;
            // among those, the node with the least free space.
            let crowded = |h: &pb::DatanodeInfo| per_rack.get(rack(h)).copied().unwrap_or(0) > 1;
            let any_crowded = left.iter().any(crowded);
            let idx = left
                .iter()
                .enumerate()
                .filter(|(_, h)| !any_crowded || crowded(h))
                .min_by_key(|(_, h)| h.remaining)
                .map(|(i, _)| i);
            let Some(i) = idx else { break };
            out.push(left.remove(i));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn node(n: u32, rack: &str) -> pb::DatanodeInfo {
        pb::DatanodeInfo {
            id: Some(pb::DatanodeId {
                uuid: format!("u{n}"),
                rpc_addr: format!("10.0.0.{n}:9866"),
                rack: rack.into(),
                ..Default::default()
            }),
            remaining: 1000 + u64::from(n),
            ..Default::default()
        }
    }

    fn racks(v: &[pb::DatanodeInfo]) -> Vec<String> {
        v.iter().map(|n| rack(n).to_string()).collect()
    }

    #[test]
    fn three_replicas_span_two_racks_writer_first() {
        let p = RackAwarePlacement;
        let nodes: Vec<_> = (1..=6)
            .map(|n| node(n, if n <= 3 { "/a" } else { "/b" }))
            .collect();
        for _ in 0..100 {
            let ctx = PlacementContext {
                writer_host: Some("10.0.0.2".into()),
                existing: vec![],
            };
            let got = p.choose(3, nodes.clone(), &[], &ctx);
            assert_eq!(uuid(&got[0]), "u2", "writer's node first");
            let r = racks(&got);
            assert_ne!(r[0], r[1], "second replica on another rack");
            assert_eq!(r[1], r[2], "third on the second's rack");
            let ids: HashSet<_> = got.iter().map(uuid).collect();
            assert_eq!(ids.len(), 3);
        }
    }

    #[test]
    fn one_rack_and_exclusions_still_give_distinct_nodes() {
        let p = RackAwarePlacement;
        let nodes: Vec<_> = (1..=4).map(|n| node(n, "/only")).collect();
        let got = p.choose(3, nodes.clone(), &["u1".into()], &PlacementContext::default());
        let ids: HashSet<_> = got.iter().map(uuid).collect();
        assert_eq!(ids.len(), 3);
        assert!(!ids.contains("u1"));
        assert_eq!(p.choose(5, nodes, &[], &PlacementContext::default()).len(), 4);
    }

    #[test]
    fn re_replication_adds_rack_spread_and_excess_keeps_it() {
        let p = RackAwarePlacement;
        let nodes: Vec<_> = (1..=6)
            .map(|n| node(n, if n <= 3 { "/a" } else { "/b" }))
            .collect();
        let ctx = PlacementContext {
            writer_host: None,
            existing: vec![nodes[0].clone(), nodes[1].clone()],
        };
        for _ in 0..50 {
            let got = p.choose(1, nodes.clone(), &[], &ctx);
            assert_eq!(
                racks(&got),
                vec!["/b"],
                "two replicas on /a: the third goes to /b"
            );
        }
        // Four holders on /a,/a,/a,/b: drop from /a, never the lone /b.
        let holders = vec![
            nodes[0].clone(),
            nodes[1].clone(),
            nodes[2].clone(),
            nodes[3].clone(),
        ];
        let drop = p.choose_excess(holders, 2);
        assert_eq!(racks(&drop), vec!["/a", "/a"]);
    }
}
