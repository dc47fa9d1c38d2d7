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
/// Replica verifications outstanding at most, cluster-wide; reports beyond
/// are dropped (the block scanner still checks every replica).
const MAX_VERIFYING: usize = 100_000;
/// A verification not answered within this long may be asked again.
const VERIFY_AGAIN: Duration = Duration::from_secs(600);

struct Recovering {
    /// The file whose last block this is.
    inode: u64,
    /// Datanodes asked, and when last.
    asked: HashMap<String, Instant>,
    /// Datanodes that said they hold no replica of the block.
    not_held: HashSet<String>,
}

/// A recovered last block its holders are told to finalize.
#[derive(Debug, Clone)]
pub struct Committing {
    pub block_id: u64,
    pub new_gs: u64,
    pub length: u64,
    /// Each holder and its replica (at the stamp it reported).
    pub holders: Vec<(String, pb::ExtendedBlock)>,
    sent: Option<Instant>,
}

impl Committing {
    pub fn new(block_id: u64, new_gs: u64, length: u64, holders: Vec<(String, pb::ExtendedBlock)>) -> Self {
        Self {
            block_id,
            new_gs,
            length,
            holders,
            sent: None,
        }
    }
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
    /// The block as the namespace has it (its current generation stamp).
    pub block: pb::ExtendedBlock,
    /// Replicas being written (or finalized at an older stamp) that
    /// datanodes reported, with their stamps and lengths.
    pub being_written: Vec<(String, pb::ExtendedBlock)>,
    /// Datanodes the block was sent to (empty for blocks allocated before
    /// targets were recorded: then every live datanode is asked).
    pub targets: Vec<String>,
    /// Every live datanode.
    pub all_live: Vec<String>,
    /// Whether a datanode is registered and not dead.
    pub alive: &'a dyn Fn(&str) -> bool,
    /// Datanodes have had time to report since the namenode started.
    pub settled: bool,
}

#[derive(Default)]
pub struct BlockRecovery {
    recovering: Mutex<HashMap<u64, Recovering>>,
    /// Files closed by a recovery whose holders were told to finalize the
    /// last block, until one reports it finalized.
    committing: Mutex<HashMap<u64, Committing>>,
    /// Commands for each datanode's next heartbeat reply.
    commands: Mutex<HashMap<String, Vec<pb::DatanodeCommand>>>,
    /// Verify commands sent and not answered yet, by (datanode, block):
    /// a replica is asked about once, however often readers report it.
    verifying: Mutex<HashMap<(String, u64), Instant>>,
    /// Files a caller is recovering right now, and whether another caller
    /// asked meanwhile (the holder then goes again).
    turns: Mutex<HashMap<u64, bool>>,
}

/// One caller's exclusive turn at recovering a file. Callers (`recoverLease`,
/// a create or append taking the file over, the lease monitor, a datanode's
/// report) each decide from the file as they read it; two at once could act
/// on a file the other just closed, leaving a record that says it is still
/// being recovered (and its next writer refused). Released when dropped.
pub struct Turn<'a> {
    recovery: &'a BlockRecovery,
    inode: u64,
    ended: bool,
}

impl Turn<'_> {
    /// Ends the turn, unless another caller asked for one meanwhile: then the
    /// holder keeps it and should recover the file again (true), so what
    /// that caller came to do (a datanode's answer) is not lost.
    pub fn go_again(&mut self) -> bool {
        let mut turns = self.recovery.turns.lock();
        match turns.get_mut(&self.inode) {
            Some(asked) if *asked => {
                *asked = false;
                true
            }
            _ => {
                turns.remove(&self.inode);
                self.ended = true;
                false
            }
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.recovery.turns.lock().remove(&self.inode);
        }
    }
}

impl BlockRecovery {
    /// The turn at recovering file `inode`, or None while another caller
    /// has it (that caller then goes again before it ends).
    pub fn take_turn(&self, inode: u64) -> Option<Turn<'_>> {
        let mut turns = self.turns.lock();
        if let Some(asked) = turns.get_mut(&inode) {
            *asked = true;
            return None;
        }
        turns.insert(inode, false);
        Some(Turn {
            recovery: self,
            inode,
            ended: false,
        })
    }

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

    /// Asks `uuid` to re-verify its replica of `block` (a reader reported
    /// it), unless that is already asked; false when not sent.
    pub fn verify(&self, uuid: &str, block: pb::ExtendedBlock) -> bool {
        {
            let mut v = self.verifying.lock();
            // A datanode that never answered (it restarted, the replica went):
            // ask again after a while.
            v.retain(|_, asked| asked.elapsed() < VERIFY_AGAIN);
            let key = (uuid.to_string(), block.block_id);
            if v.len() >= MAX_VERIFYING || v.contains_key(&key) {
                return false;
            }
            v.insert(key, Instant::now());
        }
        self.send(
            uuid,
            pb::datanode_command::Command::Verify(pb::VerifyCommand { blocks: vec![block] }),
        );
        true
    }

    /// `uuid` answered about its replica of `block_id` (verified, corrupt, gone).
    pub fn verified(&self, uuid: &str, block_id: u64) {
        self.verifying.lock().remove(&(uuid.to_string(), block_id));
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

    /// File `inode` was closed with its last block committed under a new
    /// stamp; its holders are told (now, and again every few seconds until
    /// one reports it: a command can be lost with a heartbeat reply or a
    /// datanode restart) to finalize their replicas.
    pub fn committing(&self, inode: u64, c: Committing) {
        self.committing.lock().insert(inode, c);
        self.resend_commit(inode);
    }

    /// Sends the finalize commands of file `inode` again when they are due.
    pub fn resend_commit(&self, inode: u64) {
        let due = {
            let mut m = self.committing.lock();
            match m.get_mut(&inode) {
                Some(c) if c.sent.is_none_or(|t| t.elapsed() >= ASK_AGAIN) => {
                    c.sent = Some(Instant::now());
                    Some(c.clone())
                }
                _ => None,
            }
        };
        let Some(c) = due else { return };
        for (uuid, replica) in c.holders {
            self.send(
                &uuid,
                pb::datanode_command::Command::CommitReplica(pb::CommitReplicaCommand {
                    block: Some(replica),
                    new_generation_stamp: c.new_gs,
                    length: c.length,
                }),
            );
        }
    }

    /// Sends every finalize command that is due again (the namenode's
    /// monitor calls this: nobody may ask about the file any more).
    pub fn resend_due(&self) {
        let inodes: Vec<u64> = self.committing.lock().keys().copied().collect();
        for inode in inodes {
            self.resend_commit(inode);
        }
    }

    /// The block and holders file `inode` waits for, if it does.
    pub fn awaiting(&self, inode: u64) -> Option<(u64, Vec<String>)> {
        self.committing
            .lock()
            .get(&inode)
            .map(|c| (c.block_id, c.holders.iter().map(|(u, _)| u.clone()).collect()))
    }

    /// A holder finalized `block_id` (or the wait was given up).
    pub fn committed(&self, block_id: u64) {
        self.committing.lock().retain(|_, c| c.block_id != block_id);
    }

    /// Recovery of `block_id` ended (committed, dropped, or the file went away).
    pub fn finish(&self, block_id: u64) {
        self.recovering.lock().remove(&block_id);
    }

    /// Decides the fate of file `inode`'s last block from what datanodes
    /// reported, asking those that have not answered.
    ///
    /// Every live target must answer (a replica, or none). Replicas of any
    /// stamp up to the namespace's count: a writer may have got a new stamp
    /// for a pipeline recovery and died before the survivors took it. The
    /// block is committed from the replicas of the highest stamp reported,
    /// at the shortest of their lengths: every byte all of them
    /// acknowledged, which includes every hsync'd byte.
    pub fn decide(&self, inode: u64, f: &BlockFacts<'_>) -> Decision {
        let id = f.block.block_id;
        let now = Instant::now();
        let mut rec = self.recovering.lock();
        let r = rec.entry(id).or_insert_with(|| Recovering {
            inode,
            asked: HashMap::new(),
            not_held: HashSet::new(),
        });
        let replies: Vec<(String, pb::ExtendedBlock)> = f
            .being_written
            .iter()
            .filter(|(_, b)| b.generation_stamp <= f.block.generation_stamp)
            .cloned()
            .collect();
        let ask_all = if f.targets.is_empty() {
            &f.all_live
        } else {
            &f.targets
        };
        let answered = |u: &str| r.not_held.contains(u) || replies.iter().any(|(h, _)| h == u);
        let mut waiting = false;
        let mut ask = Vec::new();
        for u in ask_all {
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
            replies.into_iter().filter(|(u, _)| (f.alive)(u)).collect();
        if let Some(top) = live.iter().map(|(_, b)| b.generation_stamp).max() {
            let holders: Vec<(String, pb::ExtendedBlock)> = live
                .into_iter()
                .filter(|(_, b)| b.generation_stamp == top)
                .collect();
            let length = holders.iter().map(|(_, b)| b.num_bytes).min().unwrap_or(0);
            return Decision::Commit { length, holders };
        }
        let all_said_none = !ask_all.is_empty() && ask_all.iter().all(|u| r.not_held.contains(u));
        if all_said_none && (f.settled || !f.targets.is_empty()) {
            Decision::Drop
        } else {
            // The only datanodes that may hold it are dead, or the namenode
            // just started and datanodes are still reporting: keep the file
            // open and try again later.
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

    fn facts<'a>(
        alive: &'a dyn Fn(&str) -> bool,
        targets: &[&str],
        replies: Vec<(&str, pb::ExtendedBlock)>,
    ) -> BlockFacts<'a> {
        BlockFacts {
            block: blk(5, 0),
            being_written: replies.into_iter().map(|(u, b)| (u.to_string(), b)).collect(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
            all_live: vec!["a".into(), "b".into(), "c".into()],
            alive,
            settled: true,
        }
    }

    #[test]
    fn waits_for_every_live_target_then_keeps_the_shortest_replica_of_the_newest_stamp() {
        let br = BlockRecovery::default();
        let alive = |u: &str| u != "dead";
        let mut f = facts(&alive, &["a", "b", "dead"], vec![("a", blk(5, 4096))]);
        // b has not answered: it is asked (RecoverBlock), a is not.
        assert_eq!(br.decide(1, &f), Decision::Wait);
        assert_eq!(br.take_commands("b", 10).len(), 1);
        assert!(br.take_commands("a", 10).is_empty());
        assert!(br.take_commands("dead", 10).is_empty());
        // Asked once, not at every call.
        assert_eq!(br.decide(1, &f), Decision::Wait);
        assert!(br.take_commands("b", 10).is_empty());
        // b answers with a shorter replica: committed at its length.
        f.being_written.push(("b".into(), blk(5, 1000)));
        assert_eq!(
            br.decide(1, &f),
            Decision::Commit {
                length: 1000,
                holders: vec![("a".into(), blk(5, 4096)), ("b".into(), blk(5, 1000))]
            }
        );
    }

    #[test]
    fn replicas_left_at_an_older_stamp_count_when_the_writer_died_mid_recovery() {
        // The writer got stamp 5 for a pipeline recovery and died before the
        // survivors took it: they hold stamp 4, and their bytes are kept.
        let br = BlockRecovery::default();
        let alive = |_: &str| true;
        let f = facts(
            &alive,
            &["a", "b"],
            vec![("a", blk(4, 3000)), ("b", blk(4, 2500)), ("c", blk(3, 9999))],
        );
        assert_eq!(
            br.decide(1, &f),
            Decision::Commit {
                length: 2500,
                holders: vec![("a".into(), blk(4, 3000)), ("b".into(), blk(4, 2500))]
            }
        );
        // A newer stamp than the namespace's is not trusted.
        let br = BlockRecovery::default();
        let f = facts(&alive, &["a"], vec![("a", blk(9, 3000))]);
        assert_eq!(br.decide(1, &f), Decision::Wait);
    }

    #[test]
    fn one_caller_at_a_time_recovers_a_file_and_goes_again_when_asked() {
        let r = BlockRecovery::default();
        let mut first = r.take_turn(7).unwrap();
        // Another file is independent.
        assert!(r.take_turn(8).is_some());
        // A second caller is turned away, and the holder is told to go again.
        assert!(r.take_turn(7).is_none());
        assert!(r.take_turn(7).is_none());
        assert!(first.go_again());
        // Asked once more since: nothing; the turn ends.
        assert!(!first.go_again());
        let mut second = r.take_turn(7).unwrap();
        drop(first);
        // Dropping an ended turn leaves the next holder's alone.
        assert!(r.take_turn(7).is_none());
        assert!(second.go_again());
        assert!(!second.go_again());
        // A turn dropped without ending (an error, a panic) is released.
        let third = r.take_turn(7).unwrap();
        drop(third);
        assert!(r.take_turn(7).is_some());
    }

    #[test]
    fn drops_only_a_block_nobody_holds() {
        let br = BlockRecovery::default();
        let alive = |_: &str| true;
        let f = facts(&alive, &["a"], vec![]);
        assert_eq!(br.decide(1, &f), Decision::Wait);
        br.not_held("a", 7);
        assert_eq!(br.decide(1, &f), Decision::Drop);
        // Targets all dead, nothing reported: wait (they may come back with the bytes).
        let br = BlockRecovery::default();
        let none_alive = |_: &str| false;
        let f = facts(&none_alive, &["a"], vec![]);
        assert_eq!(br.decide(1, &f), Decision::Wait);
        // Targets unknown: every live datanode is asked, and must say it has none.
        let br = BlockRecovery::default();
        let f = facts(&alive, &[], vec![]);
        assert_eq!(br.decide(1, &f), Decision::Wait);
        assert_eq!(br.take_commands("c", 10).len(), 1);
        for u in ["a", "b", "c"] {
            br.not_held(u, 7);
        }
        assert_eq!(br.decide(1, &f), Decision::Drop);
        let br = BlockRecovery::default();
        let f = BlockFacts {
            settled: false,
            ..facts(&alive, &[], vec![])
        };
        for u in ["a", "b", "c"] {
            let _ = br.decide(1, &f);
            br.not_held(u, 7);
        }
        assert_eq!(
            br.decide(1, &f),
            Decision::Wait,
            "not before datanodes had time to report"
        );
    }
}
