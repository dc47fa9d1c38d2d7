//! Where block replicas live. Like HDFS, this map is not persisted: it is
//! rebuilt from datanodes' block reports after every namenode start.

use std::collections::HashMap;

use parking_lot::RwLock;
use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;

use granary_proto as pb;

/// A datanode's index in [`Inner::nodes`]: maps keyed by block hold these
/// instead of uuid strings, which keeps a full report free of per-block
/// allocations (the maps hold one entry per block of the cluster).
type NodeIx = u32;

/// Holders of one block; three (the default replication) fit inline.
type Holders = SmallVec<[NodeIx; 3]>;

#[derive(Default)]
struct Inner {
    /// Every datanode uuid seen since start; its position is its [`NodeIx`].
    nodes: Vec<String>,
    node_ix: HashMap<String, NodeIx>,
    /// block id -> datanodes holding a finalized replica.
    locations: FxHashMap<u64, Holders>,
    /// datanode -> block ids it holds.
    by_node: FxHashMap<NodeIx, FxHashSet<u64>>,
    /// datanode uuid -> replicas it should delete.
    invalidate: HashMap<String, Vec<pb::ExtendedBlock>>,
    /// block id -> shortest finalized length any replica reported.
    lengths: FxHashMap<u64, u64>,
    /// block id -> replicas datanodes found (or a length check showed)
    /// corrupt: not served while a good one exists, never counted as live,
    /// deleted only once enough good replicas exist.
    corrupt: FxHashMap<u64, SmallVec<[(NodeIx, pb::ExtendedBlock); 1]>>,
    /// block id -> replicas being written or left by a writer (RBW/RWR),
    /// with the length their checksums cover: what lease recovery keeps.
    being_written: FxHashMap<u64, SmallVec<[(NodeIx, pb::ExtendedBlock); 3]>>,
}

impl Inner {
    fn intern(&mut self, uuid: &str) -> NodeIx {
        if let Some(&ix) = self.node_ix.get(uuid) {
            return ix;
        }
        let ix = self.nodes.len() as NodeIx;
        self.nodes.push(uuid.to_string());
        self.node_ix.insert(uuid.to_string(), ix);
        ix
    }

    /// Blocks a node holds, if it reported any.
    fn held(&self, uuid: &str) -> Option<&FxHashSet<u64>> {
        self.by_node.get(self.node_ix.get(uuid)?)
    }

    /// Replicas by datanode uuid instead of index.
    fn named(&self, list: Option<&[(NodeIx, pb::ExtendedBlock)]>) -> Vec<(String, pb::ExtendedBlock)> {
        list.unwrap_or_default()
            .iter()
            .map(|(n, b)| (self.nodes[*n as usize].clone(), *b))
            .collect()
    }

    fn uuids(&self, holders: &Holders) -> Vec<String> {
        holders.iter().map(|&n| self.nodes[n as usize].clone()).collect()
    }

    /// Drops `node` from a block's holders, and the block once none is left.
    fn unlocate(&mut self, block_id: u64, node: NodeIx) {
        if let Some(holders) = self.locations.get_mut(&block_id) {
            holders.retain(|n| *n != node);
            if holders.is_empty() {
                self.locations.remove(&block_id);
            }
        }
    }

    fn locate(&mut self, block_id: u64, node: NodeIx) {
        let holders = self.locations.entry(block_id).or_default();
        if !holders.contains(&node) {
            holders.push(node);
        }
    }

    fn add_corrupt(&mut self, node: NodeIx, b: pb::ExtendedBlock) {
        self.unlocate(b.block_id, node);
        if let Some(set) = self.by_node.get_mut(&node) {
            set.remove(&b.block_id);
        }
        let list = self.corrupt.entry(b.block_id).or_default();
        list.retain(|(n, _)| *n != node);
        list.push((node, b));
    }

    fn drop_corrupt(&mut self, block_id: u64, node: NodeIx) {
        if let Some(list) = self.corrupt.get_mut(&block_id) {
            list.retain(|(n, _)| *n != node);
            if list.is_empty() {
                self.corrupt.remove(&block_id);
            }
        }
    }

    fn drop_being_written(&mut self, block_id: u64, node: NodeIx) {
        if let Some(list) = self.being_written.get_mut(&block_id) {
            list.retain(|(n, _)| *n != node);
            if list.is_empty() {
                self.being_written.remove(&block_id);
            }
        }
    }
}

pub struct BlockManager {
    inner: RwLock<Inner>,
    /// Whether queued deletions go out (this namenode commands datanodes).
    /// A follower of a namenode group decides on a namespace that lags the
    /// leader's: what it queued is dropped, never sent, when it leads.
    deleting: std::sync::atomic::AtomicBool,
}

impl Default for BlockManager {
    fn default() -> Self {
        Self {
            inner: Default::default(),
            deleting: std::sync::atomic::AtomicBool::new(true),
        }
    }
}

/// How the namespace knows a reported replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaCheck {
    /// Belongs to a file at this generation stamp.
    Valid,
    /// Unknown block or outdated generation stamp: delete it.
    Invalid,
    /// The right generation but not the block's committed length: the
    /// replica lost (or gained) bytes.
    WrongLength { committed: u64 },
    /// A finalized replica of an older generation of a block still being
    /// written (its writer got a new stamp, then died): lease recovery may
    /// need its bytes, so it is handled as a replica being written.
    OlderWhileWriting,
}

impl BlockManager {
    pub fn add_replica(&self, uuid: &str, block_id: u64) {
        let mut g = self.inner.write();
        let node = g.intern(uuid);
        g.locate(block_id, node);
        g.by_node.entry(node).or_default().insert(block_id);
        g.drop_corrupt(block_id, node);
        g.drop_being_written(block_id, node);
    }

    /// A replica found corrupt on `uuid` (by the datanode, or by a length
    /// check): no longer a live location.
    pub fn mark_corrupt(&self, uuid: &str, block: pb::ExtendedBlock) {
        let mut g = self.inner.write();
        let node = g.intern(uuid);
        g.add_corrupt(node, block);
    }

    /// Corrupt replicas of a block: (datanode uuid, the replica as reported).
    pub fn corrupt_replicas(&self, block_id: u64) -> Vec<(String, pb::ExtendedBlock)> {
        let g = self.inner.read();
        g.named(g.corrupt.get(&block_id).map(|l| l.as_slice()))
    }

    /// Blocks with at least one corrupt replica.
    pub fn corrupt_block_count(&self) -> usize {
        self.inner.read().corrupt.len()
    }

    /// Deletes a corrupt replica (enough good ones exist elsewhere).
    pub fn invalidate_corrupt(&self, uuid: &str, block_id: u64) {
        let mut g = self.inner.write();
        let Some(&node) = g.node_ix.get(uuid) else {
            return;
        };
        let found = g
            .corrupt
            .get(&block_id)
            .and_then(|l| l.iter().find(|(n, _)| *n == node).map(|(_, b)| *b));
        if let Some(b) = found {
            g.drop_corrupt(block_id, node);
            g.invalidate.entry(uuid.to_string()).or_default().push(b);
        }
    }

    /// A replica being written (or left by its writer) on `uuid`, with the
    /// length its checksums cover.
    pub fn note_being_written(&self, uuid: &str, block: pb::ExtendedBlock) {
        let mut g = self.inner.write();
        let node = g.intern(uuid);
        let list = g.being_written.entry(block.block_id).or_default();
        list.retain(|(n, _)| *n != node);
        list.push((node, block));
    }

    /// Replicas being written of a block: (datanode uuid, replica).
    pub fn being_written(&self, block_id: u64) -> Vec<(String, pb::ExtendedBlock)> {
        let g = self.inner.read();
        g.named(g.being_written.get(&block_id).map(|l| l.as_slice()))
    }

    /// Forgets `uuid`'s replica-being-written of a block (it holds none).
    pub fn forget_being_written(&self, uuid: &str, block_id: u64) {
        let mut g = self.inner.write();
        if let Some(&node) = g.node_ix.get(uuid) {
            g.drop_being_written(block_id, node);
        }
    }

    /// The block is complete (closed or recovered): forget how it was written.
    pub fn written(&self, block_id: u64) {
        self.inner.write().being_written.remove(&block_id);
    }

    pub fn remove_replica(&self, uuid: &str, block_id: u64) {
        let mut g = self.inner.write();
        let Some(&node) = g.node_ix.get(uuid) else {
            return;
        };
        g.unlocate(block_id, node);
        if let Some(set) = g.by_node.get_mut(&node) {
            set.remove(&block_id);
        }
    }

    /// Applies a full report (`checks[i]` says how the namespace knows
    /// `blocks[i]`): replicas the node no longer lists are forgotten, valid
    /// ones recorded, invalid ones queued for deletion on the node.
    pub fn full_report(
        &self,
        uuid: &str,
        blocks: &[pb::ExtendedBlock],
        checks: &[ReplicaCheck],
    ) -> (usize, usize) {
        let mut valid = FxHashSet::with_capacity_and_hasher(blocks.len(), Default::default());
        let mut invalid = Vec::new();
        let mut wrong = Vec::new();
        for (b, check) in blocks.iter().zip(checks) {
            match check {
                ReplicaCheck::Valid => {
                    valid.insert(b.block_id);
                }
                ReplicaCheck::Invalid => invalid.push(*b),
                ReplicaCheck::WrongLength { .. } => wrong.push(*b),
                ReplicaCheck::OlderWhileWriting => {}
            }
        }
        let mut g = self.inner.write();
        let node = g.intern(uuid);
        for b in wrong {
            g.add_corrupt(node, b);
        }
        let previous = g.by_node.remove(&node).unwrap_or_default();
        for gone in previous.difference(&valid) {
            g.unlocate(*gone, node);
        }
        for (b, check) in blocks.iter().zip(checks) {
            if *check == ReplicaCheck::Valid {
                g.locate(b.block_id, node);
                let e = g.lengths.entry(b.block_id).or_insert(b.num_bytes);
                *e = (*e).min(b.num_bytes);
            }
        }
        let counts = (valid.len(), invalid.len());
        for id in &valid {
            g.drop_corrupt(*id, node);
        }
        g.by_node.insert(node, valid);
        g.invalidate.entry(uuid.to_string()).or_default().extend(invalid);
        counts
    }

    /// A full report's replicas-being-written replace what `uuid` held before.
    pub fn report_being_written(&self, uuid: &str, blocks: &[pb::ExtendedBlock]) {
        let mut g = self.inner.write();
        let node = g.intern(uuid);
        let ids: Vec<u64> = g
            .being_written
            .iter()
            .filter(|(_, l)| l.iter().any(|(n, _)| *n == node))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            g.drop_being_written(id, node);
        }
        for b in blocks {
            g.being_written.entry(b.block_id).or_default().push((node, *b));
        }
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

    /// Up to `max` of the blocks `uuid` holds (a bounded look at a node
    /// that may hold millions).
    pub fn some_node_blocks(&self, uuid: &str, max: usize) -> Vec<u64> {
        let g = self.inner.read();
        g.held(uuid)
            .map(|ids| ids.iter().take(max).copied().collect())
            .unwrap_or_default()
    }

    /// Bytes of the replicas `uuid` is known to hold (their reported
    /// lengths): what it holds as of the last report or change, without
    /// waiting for its next heartbeat.
    pub fn node_bytes(&self, uuid: &str) -> u64 {
        let g = self.inner.read();
        g.held(uuid)
            .map(|ids| ids.iter().filter_map(|id| g.lengths.get(id)).sum())
            .unwrap_or(0)
    }

    /// Blocks with at least one known replica.
    pub fn block_count(&self) -> usize {
        self.inner.read().locations.len()
    }

    pub fn locations(&self, block_id: u64) -> Vec<String> {
        let g = self.inner.read();
        g.locations.get(&block_id).map(|h| g.uuids(h)).unwrap_or_default()
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
        self.inner
            .read()
            .locations
            .get(&block_id)
            .map_or(0, SmallVec::len)
    }

    /// Forgets where a block's replicas are without deleting them (their
    /// generation changed; holders report again, stale ones are invalidated then).
    pub fn forget_locations(&self, block_id: u64) {
        let mut g = self.inner.write();
        g.lengths.remove(&block_id);
        if let Some(holders) = g.locations.remove(&block_id) {
            for node in holders {
                if let Some(set) = g.by_node.get_mut(&node) {
                    set.remove(&block_id);
                }
            }
        }
    }

    /// Blocks deleted from the namespace: forget them and ask holders to
    /// delete their replicas (each at the generation it reported).
    pub fn remove_blocks(&self, blocks: &[pb::ExtendedBlock]) {
        let mut g = self.inner.write();
        for b in blocks {
            g.lengths.remove(&b.block_id);
            if let Some(holders) = g.locations.remove(&b.block_id) {
                for node in holders {
                    if let Some(set) = g.by_node.get_mut(&node) {
                        set.remove(&b.block_id);
                    }
                    let uuid = g.nodes[node as usize].clone();
                    g.invalidate.entry(uuid).or_default().push(*b);
                }
            }
            let others: Vec<(NodeIx, pb::ExtendedBlock)> = g
                .corrupt
                .remove(&b.block_id)
                .into_iter()
                .flatten()
                .chain(g.being_written.remove(&b.block_id).into_iter().flatten())
                .collect();
            for (node, replica) in others {
                let uuid = g.nodes[node as usize].clone();
                g.invalidate.entry(uuid).or_default().push(replica);
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

    /// Turns sending deletions on (this namenode now commands datanodes) or
    /// off; a change drops every queued deletion, decided in the other role.
    pub fn set_deleting(&self, on: bool) {
        use std::sync::atomic::Ordering;
        if self.deleting.swap(on, Ordering::SeqCst) != on {
            self.inner.write().invalidate.clear();
        }
    }

    /// Up to `max` pending deletions for a node (HDFS sends ≤ 1000 per heartbeat).
    pub fn take_invalidations(&self, uuid: &str, max: usize) -> Vec<pb::ExtendedBlock> {
        if !self.deleting.load(std::sync::atomic::Ordering::SeqCst) {
            return Vec::new();
        }
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
        g.invalidate.remove(uuid);
        let Some(&node) = g.node_ix.get(uuid) else {
            return Vec::new();
        };
        let held = g.by_node.remove(&node).unwrap_or_default();
        for id in &held {
            g.unlocate(*id, node);
        }
        let corrupt: Vec<u64> = g.corrupt.keys().copied().collect();
        for id in corrupt {
            g.drop_corrupt(id, node);
        }
        let writing: Vec<u64> = g.being_written.keys().copied().collect();
        for id in writing {
            g.drop_being_written(id, node);
        }
        held.into_iter().collect()
    }

    /// Blocks a node holds.
    pub fn node_blocks(&self, uuid: &str) -> Vec<u64> {
        let g = self.inner.read();
        g.held(uuid)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn node_block_count(&self, uuid: &str) -> usize {
        self.inner.read().held(uuid).map_or(0, |s| s.len())
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
        let (valid, invalid) = bm.full_report(
            "a",
            &[blk(2), blk(3), blk(9)],
            &[ReplicaCheck::Valid, ReplicaCheck::Valid, ReplicaCheck::Invalid],
        );
        assert_eq!((valid, invalid), (2, 1));
        assert_eq!(bm.locations(1), vec!["b".to_string()]);
        assert_eq!(bm.replica_count(3), 1);
        assert_eq!(bm.take_invalidations("a", 10), vec![blk(9)]);
        assert!(bm.take_invalidations("a", 10).is_empty());
    }

    #[test]
    fn deletions_decided_in_another_role_are_never_sent() {
        let bm = BlockManager::default();
        bm.invalidate("a", blk(1));
        bm.set_deleting(false);
        bm.invalidate("a", blk(2));
        assert!(bm.take_invalidations("a", 10).is_empty(), "a follower sends none");
        bm.set_deleting(true);
        assert!(
            bm.take_invalidations("a", 10).is_empty(),
            "queued as follower: dropped"
        );
        bm.invalidate("a", blk(3));
        assert_eq!(bm.take_invalidations("a", 10), vec![blk(3)]);
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
