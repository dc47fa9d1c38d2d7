//! Where block replicas live. Like HDFS, this map is not persisted: it is
//! rebuilt from datanodes' block reports after every namenode start.

use std::collections::{HashMap, HashSet};

use parking_lot::RwLock;

use granary_proto as pb;

#[derive(Default)]
struct Inner {
    /// block id -> datanode uuids holding a finalized replica.
    locations: HashMap<u64, Vec<String>>,
    /// datanode uuid -> block ids it holds.
    by_node: HashMap<String, HashSet<u64>>,
    /// datanode uuid -> replicas it should delete.
    invalidate: HashMap<String, Vec<pb::ExtendedBlock>>,
    /// block id -> shortest finalized length any replica reported.
    lengths: HashMap<u64, u64>,
}

#[derive(Default)]
pub struct BlockManager {
    inner: RwLock<Inner>,
}

/// How the namespace knows a reported replica.
pub enum ReplicaCheck {
    /// Belongs to a file at this generation stamp.
    Valid,
    /// Unknown block or outdated generation stamp: delete it.
    Invalid,
}

impl BlockManager {
    pub fn add_replica(&self, uuid: &str, block_id: u64) {
        let mut g = self.inner.write();
        let locs = g.locations.entry(block_id).or_default();
        if !locs.iter().any(|u| u == uuid) {
            locs.push(uuid.to_string());
        }
        g.by_node.entry(uuid.to_string()).or_default().insert(block_id);
    }

    pub fn remove_replica(&self, uuid: &str, block_id: u64) {
        let mut g = self.inner.write();
        if let Some(locs) = g.locations.get_mut(&block_id) {
            locs.retain(|u| u != uuid);
            if locs.is_empty() {
                g.locations.remove(&block_id);
            }
        }
        if let Some(set) = g.by_node.get_mut(uuid) {
            set.remove(&block_id);
        }
    }

    /// Applies a full report: replicas the node no longer lists are forgotten,
    /// valid ones recorded, invalid ones queued for deletion on the node.
    pub fn full_report(
        &self,
        uuid: &str,
        blocks: &[pb::ExtendedBlock],
        mut check: impl FnMut(&pb::ExtendedBlock) -> ReplicaCheck,
    ) -> (usize, usize) {
        let mut valid = HashSet::with_capacity(blocks.len());
        let mut lengths = Vec::with_capacity(blocks.len());
        let mut invalid = Vec::new();
        for b in blocks {
            match check(b) {
                ReplicaCheck::Valid => {
                    valid.insert(b.block_id);
                    lengths.push((b.block_id, b.num_bytes));
                }
                ReplicaCheck::Invalid => invalid.push(*b),
            }
        }
        let mut g = self.inner.write();
        let previous = g.by_node.remove(uuid).unwrap_or_default();
        for gone in previous.difference(&valid) {
            if let Some(locs) = g.locations.get_mut(gone) {
                locs.retain(|u| u != uuid);
                if locs.is_empty() {
                    g.locations.remove(gone);
                }
            }
        }
        for id in &valid {
            let locs = g.locations.entry(*id).or_default();
            if !locs.iter().any(|u| u == uuid) {
                locs.push(uuid.to_string());
            }
        }
        for (id, len) in lengths {
            let e = g.lengths.entry(id).or_insert(len);
            *e = (*e).min(len);
        }
        let counts = (valid.len(), invalid.len());
        g.by_node.insert(uuid.to_string(), valid);
        g.invalidate.entry(uuid.to_string()).or_default().extend(invalid);
        counts
    }

    /// Records a replica's finalized length.
    pub fn note_length(&self, block_id: u64, len: u64) {
        let mut g = self.inner.write();
        let e = g.lengths.entry(block_id).or_insert(len);
        *e = (*e).min(len);
    }

    /// The length replicas of a block agree on (the shortest reported), if any.
    pub fn reported_length(&self, block_id: u64) -> Option<u64> {
        let g = self.inner.read();
        g.locations.get(&block_id).filter(|l| !l.is_empty())?;
        g.lengths.get(&block_id).copied()
    }

    /// Blocks with at least one known replica.
    pub fn block_count(&self) -> usize {
        self.inner.read().locations.len()
    }

    pub fn locations(&self, block_id: u64) -> Vec<String> {
        self.inner
            .read()
            .locations
            .get(&block_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Blocks with at least `min` known replicas (for safe mode).
    pub fn count_with_at_least(&self, min: usize) -> u64 {
        self.inner
            .read()
            .locations
            .values()
            .filter(|l| l.len() >= min)
            .count() as u64
    }

    pub fn replica_count(&self, block_id: u64) -> usize {
        self.inner.read().locations.get(&block_id).map_or(0, Vec::len)
    }

    /// Forgets where a block's replicas are without deleting them (their
    /// generation changed; holders report again, stale ones are invalidated then).
    pub fn forget_locations(&self, block_id: u64) {
        let mut g = self.inner.write();
        g.lengths.remove(&block_id);
        if let Some(locs) = g.locations.remove(&block_id) {
            for uuid in locs {
                if let Some(set) = g.by_node.get_mut(&uuid) {
                    set.remove(&block_id);
                }
            }
        }
    }

    /// Blocks deleted from the namespace: forget them and ask holders to delete.
    pub fn remove_blocks(&self, blocks: &[pb::ExtendedBlock]) {
        let mut g = self.inner.write();
        for b in blocks {
            g.lengths.remove(&b.block_id);
            if let Some(locs) = g.locations.remove(&b.block_id) {
                for uuid in locs {
                    if let Some(set) = g.by_node.get_mut(&uuid) {
                        set.remove(&b.block_id);
                    }
                    g.invalidate.entry(uuid).or_default().push(*b);
                }
            }
        }
    }

    /// Queues one replica for deletion on one node.
    pub fn invalidate(&self, uuid: &str, block: pb::ExtendedBlock) {
        self.inner
            .write()
            .invalidate
            .entry(uuid.to_string())
            .or_default()
            .push(block);
    }

    /// Up to `max` pending deletions for a node (HDFS sends ≤ 1000 per heartbeat).
    pub fn take_invalidations(&self, uuid: &str, max: usize) -> Vec<pb::ExtendedBlock> {
        let mut g = self.inner.write();
        let Some(q) = g.invalidate.get_mut(uuid) else {
            return Vec::new();
        };
        let n = q.len().min(max);
        q.drain(..n).collect()
    }

    /// Forgets every replica on a node that died; returns the blocks it held.
    pub fn remove_node(&self, uuid: &str) -> Vec<u64> {
        let mut g = self.inner.write();
        let held = g.by_node.remove(uuid).unwrap_or_default();
        for id in &held {
            if let Some(locs) = g.locations.get_mut(id) {
                locs.retain(|u| u != uuid);
                if locs.is_empty() {
                    g.locations.remove(id);
                }
            }
        }
        g.invalidate.remove(uuid);
        held.into_iter().collect()
    }

    /// Blocks a node holds.
    pub fn node_blocks(&self, uuid: &str) -> Vec<u64> {
        self.inner
            .read()
            .by_node
            .get(uuid)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn node_block_count(&self, uuid: &str) -> usize {
        self.inner.read().by_node.get(uuid).map_or(0, HashSet::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blk(id: u64) -> pb::ExtendedBlock {
        pb::ExtendedBlock {
            block_id: id,
            generation_stamp: 1,
            num_bytes: 0,
        }
    }

    #[test]
    fn full_report_replaces_what_a_node_holds() {
        let bm = BlockManager::default();
        bm.add_replica("a", 1);
        bm.add_replica("a", 2);
        bm.add_replica("b", 1);
        let (valid, invalid) = bm.full_report("a", &[blk(2), blk(3), blk(9)], |b| {
            if b.block_id == 9 {
                ReplicaCheck::Invalid
            } else {
                ReplicaCheck::Valid
            }
        });
        assert_eq!((valid, invalid), (2, 1));
        assert_eq!(bm.locations(1), vec!["b".to_string()]);
        assert_eq!(bm.replica_count(3), 1);
        assert_eq!(bm.take_invalidations("a", 10), vec![blk(9)]);
        assert!(bm.take_invalidations("a", 10).is_empty());
    }

    #[test]
    fn deleted_blocks_are_invalidated_on_their_holders() {
        let bm = BlockManager::default();
        bm.add_replica("a", 1);
        bm.add_replica("b", 1);
        bm.remove_blocks(&[blk(1)]);
        assert_eq!(bm.replica_count(1), 0);
        assert_eq!(bm.take_invalidations("a", 10), vec![blk(1)]);
        assert_eq!(bm.take_invalidations("b", 10), vec![blk(1)]);
        bm.add_replica("c", 5);
        assert_eq!(bm.remove_node("c"), vec![5]);
        assert_eq!(bm.replica_count(5), 0);
    }
}
