//! Lease recovery of a file's last block when no replica of it was
//! finalized: the writer went away mid-block. As HDFS's block recovery,
//! every datanode the block was written to is asked to stop writing it and
//! report the length its replica holds (`RecoverBlock`); once every live
//! one has answered, the block is committed at the shortest length any
//! surviving replica holds (so every byte all of them acknowledged, and
//! every hsync'd byte, is kept) under a new generation stamp, and the
//! holders cut their replicas to it and finalize them (`CommitReplica`).
//! Commands travel in heartbeat replies, so recovery takes a few heartbeats;
//! `recoverLease` answers "not yet closed" meanwhile, as HDFS does.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use granary_proto as pb;

/// A datanode that has not answered is asked again after this long.
const ASK_AGAIN: Duration = Duration::from_secs(5);

struct Recovering {
    /// The file whose last block this is.
    inode: u64,
    /// Datanodes asked, and when last.
    asked: HashMap<String, Instant>,
    /// Datanodes that said they hold no replica of the block.
    not_held: HashSet<String>,
}

/// What to do with the last block of a file being recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Some datanode that may hold bytes has not answered yet.
    Wait,
    /// Commit at `length`; these datanodes hold replicas to cut and finalize.
    Commit {
        length: u64,
        holders: Vec<(String, pb::ExtendedBlock)>,
    },
    /// No datanode holds any of it: the block was never written.
    Drop,
}

/// What the namenode knows about one block being recovered.
pub struct BlockFacts<'a> {
    pub block: pb::ExtendedBlock,
    /// Replicas being written reported by datanodes (any generation).
    pub being_written: Vec<(String, pb::ExtendedBlock)>,
    /// Datanodes the block was sent to (empty after a namenode restart).
    pub expected: Vec<String>,
    /// Whether a datanode is registered and not dead.
    pub alive: &'a dyn Fn(&str) -> bool,
    /// Datanodes have had time to report since the namenode started.
    pub settled: bool,
}

#[derive(Default)]
pub struct BlockRecovery {
    recovering: Mutex<HashMap<u64, Recovering>>,
    /// Files closed by a recovery whose holders were told to finalize the
    /// last block (inode -> block, holders), until one reports it.
    committing: Mutex<HashMap<u64, (u64, Vec<String>)>>,
    /// Commands for each datanode's next heartbeat reply.
    commands: Mutex<HashMap<String, Vec<pb::DatanodeCommand>>>,
}

impl BlockRecovery {
    /// Queues a command for a datanode's next heartbeat reply.
    pub fn send(&self, uuid: &str, command: pb::datanode_command::Command) {
        self.commands
            .lock()
            .entry(uuid.to_string())
            .or_default()
            .push(pb::DatanodeCommand {
                command: Some(command),
            });
    }

    /// Up to `max` queued commands for `uuid`.
    pub fn take_commands(&self, uuid: &str, max: usize) -> Vec<pb::DatanodeCommand> {
        let mut m = self.commands.lock();
        let Some(q) = m.get_mut(uuid) else {
            return Vec::new();
        };
        let n = q.len().min(max);
        let out: Vec<_> = q.drain(..n).collect();
        if q.is_empty() {
            m.remove(uuid);
        }
        out
    }

    /// A datanode answered a RecoverBlock: it holds no replica of `block_id`.
    pub fn not_held(&self, uuid: &str, block_id: u64) {
        if let Some(r) = self.recovering.lock().get_mut(&block_id) {
            r.not_held.insert(uuid.to_string());
        }
    }

    /// The file whose last block `block_id` is being recovered, if it is.
    pub fn file_of(&self, block_id: u64) -> Option<u64> {
        self.recovering.lock().get(&block_id).map(|r| r.inode)
    }

    /// Whether file `inode` is being recovered: its writer may not go on.
    pub fn is_recovering(&self, inode: u64) -> bool {
        self.recovering.lock().values().any(|r| r.inode == inode)
    }

    /// File `inode` was closed with its last block `block_id` committed
    /// under a new stamp; `holders` were told to finalize their replicas.
    pub fn committing(&self, inode: u64, block_id: u64, holders: Vec<String>) {
        self.committing.lock().insert(inode, (block_id, holders));
    }

    /// The block and holders file `inode` waits for, if it does.
    pub fn awaiting(&self, inode: u64) -> Option<(u64, Vec<String>)> {
        self.committing.lock().get(&inode).cloned()
    }

    /// A holder finalized `block_id` (or the wait was given up).
    pub fn committed(&self, block_id: u64) {
        self.committing.lock().retain(|_, (b, _)| *b != block_id);
    }

    /// Recovery of `block_id` ended (committed, dropped, or the file went away).
    pub fn finish(&self, block_id: u64) {
        self.recovering.lock().remove(&block_id);
    }

    /// Decides the fate of file `inode`'s last block from what datanodes
    /// reported, asking those that have not answered.
    pub fn decide(&self, inode: u64, f: &BlockFacts<'_>) -> Decision {
        let id = f.block.block_id;
        let now = Instant::now();
        let mut rec = self.recovering.lock();
        let r = rec.entry(id).or_insert_with(|| Recovering {
            inode,
            asked: HashMap::new(),
            not_held: HashSet::new(),
        });
        // Replicas of this generation count; older ones were left by a
        // pipeline recovery and are stale.
        let current: Vec<(String, pb::ExtendedBlock)> = f
            .being_written
            .iter()
            .filter(|(_, b)| b.generation_stamp == f.block.generation_stamp)
            .cloned()
            .collect();
        let answered = |u: &str| r.not_held.contains(u) || current.iter().any(|(h, _)| h == u);
        let mut waiting = false;
        let mut ask = Vec::new();
        for u in &f.expected {
            if answered(u) || !(f.alive)(u) {
                continue;
            }
            waiting = true;
            if r.asked.get(u).is_none_or(|t| now.duration_since(*t) >= ASK_AGAIN) {
                ask.push(u.clone());
            }
        }
        for u in ask {
            r.asked.insert(u.clone(), now);
            self.send(
                &u,
                pb::datanode_command::Command::RecoverBlock(pb::RecoverBlockCommand { block: Some(f.block) }),
            );
        }
        if waiting {
            return Decision::Wait;
        }
        let live: Vec<(String, pb::ExtendedBlock)> =
            current.into_iter().filter(|(u, _)| (f.alive)(u)).collect();
        if let Some(length) = live.iter().map(|(_, b)| b.num_bytes).min() {
            return Decision::Commit {
                length,
                holders: live,
            };
        }
        let every_expected_said_none = f.expected.iter().all(|u| r.not_held.contains(u));
        if (f.expected.is_empty() && f.settled) || (!f.expected.is_empty() && every_expected_said_none) {
            Decision::Drop
        } else {
            // The only datanodes that may hold it are dead, or the namenode
            // just started: keep the file open and try again later.
            Decision::Wait
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blk(gs: u64, len: u64) -> pb::ExtendedBlock {
        pb::ExtendedBlock {
            block_id: 7,
            generation_stamp: gs,
            num_bytes: len,
        }
    }

    #[test]
    fn waits_for_every_live_target_then_keeps_the_shortest_replica() {
        let br = BlockRecovery::default();
        let alive = |u: &str| u != "dead";
        let mut f = BlockFacts {
            block: blk(5, 0),
            being_written: vec![("a".into(), blk(5, 4096))],
            expected: vec!["a".into(), "b".into(), "dead".into()],
            alive: &alive,
            settled: true,
        };
        // b has not answered: it is asked (RecoverBlock), a is not.
        assert_eq!(br.decide(1, &f), Decision::Wait);
        assert_eq!(br.take_commands("b", 10).len(), 1);
        assert!(br.take_commands("a", 10).is_empty());
        assert!(br.take_commands("dead", 10).is_empty());
        // Asked once, not at every call.
        assert_eq!(br.decide(1, &f), Decision::Wait);
        assert!(br.take_commands("b", 10).is_empty());
        // b answers with a shorter replica; an older generation's replica does not count.
        f.being_written.push(("b".into(), blk(5, 1000)));
        f.being_written.push(("c".into(), blk(4, 10)));
        assert_eq!(
            br.decide(1, &f),
            Decision::Commit {
                length: 1000,
                holders: vec![("a".into(), blk(5, 4096)), ("b".into(), blk(5, 1000))]
            }
        );
    }

    #[test]
    fn drops_only_a_block_nobody_holds() {
        let br = BlockRecovery::default();
        let alive = |_: &str| true;
        let none_alive = |_: &str| false;
        let f = BlockFacts {
            block: blk(5, 0),
            being_written: vec![],
            expected: vec!["a".into()],
            alive: &alive,
            settled: true,
        };
        assert_eq!(br.decide(1, &f), Decision::Wait);
        br.not_held("a", 7);
        assert_eq!(br.decide(1, &f), Decision::Drop);
        // Targets all dead, nothing reported: wait (they may come back with the bytes).
        let br = BlockRecovery::default();
        let f = BlockFacts {
            alive: &none_alive,
            ..f
        };
        assert_eq!(br.decide(1, &f), Decision::Wait);
        // After a namenode restart (no targets known): wait until datanodes had time to report.
        let f = BlockFacts {
            expected: vec![],
            settled: false,
            ..f
        };
        assert_eq!(br.decide(1, &f), Decision::Wait);
        let f = BlockFacts { settled: true, ..f };
        assert_eq!(br.decide(1, &f), Decision::Drop);
    }
}
