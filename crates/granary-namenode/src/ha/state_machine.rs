//! The namespace as the group's state machine, and the leader's side of it:
//! changes written ahead of their commit, and undone when not committed.
//!
//! Which entries apply is decided from the log alone, so every namenode
//! decides alike: a change names what it was computed on (the change of
//! the same leader before it, or the last applied change); if the log
//! applied something else in between, the change is skipped. A leader's own
//! change that is applied in order is already in its store: only its undo
//! record is dropped. Anything else first undoes the leader's changes still
//! pending (it was deposed), newest first.

// openraft's StorageError, which its traits return, is large.
#![allow(clippy::result_large_err)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, ServerState, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use parking_lot::{Mutex, RwLock};
use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::snapshot::{self, Snapshots};
use super::{NnNode, NnRaft, NodeId, NsBatch, NsCommand, NsResponse, TypeConfig, decode, encode};
use crate::error::{NnError, Result};
use crate::inode::CF_META;
use crate::namespace::{Commit, Effects, Namespace, Replication};

const KEY_APPLIED: &[u8] = b"raft/applied";
const KEY_MEMBERSHIP: &[u8] = b"raft/membership";
const KEY_LAST_CHANGE: &[u8] = b"raft/last_change";
const UNDO_PREFIX: &[u8] = b"raft/undo/";

/// How long a caller waits for its change to commit before being told it
/// did not (the change is then undone or applied by the log, never both).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The last applied log id and membership.
type AppliedState = (Option<LogId<NodeId>>, StoredMembership<NodeId, NnNode>);

fn undo_key(seq: u64) -> Vec<u8> {
    [UNDO_PREFIX, &seq.to_be_bytes()].concat()
}

type StErr = StorageError<NodeId>;

fn sm_err(e: impl std::error::Error + 'static) -> StErr {
    StorageIOError::write_state_machine(&e).into()
}

/// What this namenode knows of its role, for serving or refusing clients.
#[derive(Debug, Clone, Default)]
struct Role {
    leader: bool,
    /// A leader serves once it applied its log up to its own term.
    ready: bool,
    leader_addr: Option<String>,
    /// Until when no other member can have been elected: the leader lease
    /// from the last heartbeat a majority acknowledged (timed from when it
    /// was sent). `None` for a group of one.
    lease_until: Option<std::time::Instant>,
}

/// The changes written ahead of their commit, and what the log applied last.
#[derive(Debug, Default)]
struct Spec {
    pending: VecDeque<u64>,
    next_seq: u64,
    /// The last applied change, by (origin, seq), and its log index.
    last_change: Option<(u64, u64)>,
    last_change_index: u64,
    /// While leadership is handed to another member (its client address):
    /// no change is proposed, callers are sent there.
    handing_to: Option<String>,
}

impl Spec {
    /// Whether `cmd` was computed on what the log applied last: on its
    /// leader's previous change, or on the last applied change's index.
    fn computed_on_applied(&self, cmd: &NsCommand) -> bool {
        match cmd.after {
            Some(prev) => self.last_change == Some((cmd.origin, prev)),
            None => self.last_change_index == cmd.base,
        }
    }
}

/// A change on its way to the log.
pub struct Proposal {
    cmd: NsCommand,
    done: oneshot::Sender<Result<()>>,
}

/// The leader's end: implements the namespace's [`Replication`].
pub struct Replicator {
    origin: u64,
    name: String,
    role: RwLock<Role>,
    spec: Mutex<Spec>,
    proposals: mpsc::UnboundedSender<Proposal>,
    rt: tokio::runtime::Handle,
}

impl Replicator {
    pub fn new(name: String) -> (Arc<Self>, mpsc::UnboundedReceiver<Proposal>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let r = Arc::new(Self {
            origin: rand::random::<u64>(),
            name,
            role: RwLock::new(Role::default()),
            spec: Mutex::new(Spec::default()),
            proposals: tx,
            rt: tokio::runtime::Handle::current(),
        });
        (r, rx)
    }

    fn standby(&self, leader: Option<String>) -> NnError {
        NnError::Standby {
            node: self.name.clone(),
            leader,
        }
    }

    pub(super) fn check_leader_now(&self) -> Result<()> {
        if let Some(next) = self.spec.lock().handing_to.clone() {
            return Err(self.standby(Some(next)));
        }
        let role = self.role.read();
        // Past its lease a leader may have been replaced without knowing:
        // it serves nothing (not even reads) until a majority answers again.
        let in_lease = role.lease_until.is_none_or(|u| std::time::Instant::now() < u);
        if role.leader && role.ready && in_lease {
            Ok(())
        } else {
            Err(self.standby(role.leader_addr.clone()))
        }
    }

    /// Stops proposing (callers are sent to `next`, a client address) until
    /// [`Self::resume`]; changes already proposed go on to their commit.
    pub(super) fn hand_over(&self, next: String) {
        self.spec.lock().handing_to = Some(next);
    }

    pub(super) fn resume(&self) {
        self.spec.lock().handing_to = None;
    }

    /// How many of this leader's changes still wait for their commit.
    pub(super) fn pending(&self) -> usize {
        self.spec.lock().pending.len()
    }

    /// The leader's client address as this namenode knows it.
    pub fn leader_addr(&self) -> Option<String> {
        self.role.read().leader_addr.clone()
    }

    /// Undoes every change written ahead and not yet applied, newest first
    /// (into `batch`); under the namespace lock.
    fn undo_pending(&self, db: &DB, spec: &mut Spec, batch: &mut WriteBatch) -> Result<()> {
        let cf = meta_cf(db)?;
        for seq in spec.pending.iter().rev() {
            let key = undo_key(*seq);
            let undo: Effects = match db.get_cf(cf, &key)? {
                Some(b) => decode("undo record", &b)?,
                None => return Err(NnError::Corrupt(format!("undo record of change {seq} missing"))),
            };
            undo.write_to(db, batch)?;
            batch.delete_cf(cf, &key);
        }
        if !spec.pending.is_empty() {
            tracing::warn!(
                changes = spec.pending.len(),
                "undoing changes the group did not commit"
            );
        }
        spec.pending.clear();
        Ok(())
    }
}

fn meta_cf(db: &DB) -> Result<&rocksdb::ColumnFamily> {
    db.cf_handle(CF_META)
        .ok_or_else(|| NnError::Corrupt("meta column family missing".into()))
}

fn unsynced() -> WriteOptions {
    // The Raft log is the durable record; the namespace store is rebuilt
    // from it past whatever a crash lost.
    let mut wo = WriteOptions::default();
    wo.set_sync(false);
    wo
}

impl Replication for Replicator {
    fn check_leader(&self) -> Result<()> {
        self.check_leader_now()
    }

    fn propose(&self, db: &DB, effects: Effects) -> Result<Commit> {
        if self.proposals.is_closed() {
            return Err(NnError::ShuttingDown);
        }
        let mut spec = self.spec.lock();
        if let Some(next) = spec.handing_to.clone() {
            return Err(self.standby(Some(next)));
        }
        let seq = spec.next_seq;
        let after = spec.pending.back().copied();
        let undo = effects.undo(db)?;
        let mut batch = WriteBatch::default();
        effects.write_to(db, &mut batch)?;
        batch.put_cf(meta_cf(db)?, undo_key(seq), encode("undo record", &undo)?);
        db.write_opt(batch, &unsynced())?;
        spec.next_seq += 1;
        spec.pending.push_back(seq);
        let cmd = NsCommand {
            origin: self.origin,
            seq,
            after,
            base: if after.is_none() {
                spec.last_change_index
            } else {
                0
            },
            effects,
        };
        let (done, outcome) = oneshot::channel();
        if self.proposals.send(Proposal { cmd, done }).is_err() {
            // Undone by the next start (its undo record is stored).
            return Err(NnError::ShuttingDown);
        }
        Ok(Commit {
            seq,
            outcome,
            rt: self.rt.clone(),
        })
    }

    /// A change of nothing after the last pending one: it applies only if
    /// every change before it did (each names the one before it), so its
    /// commit says they all did.
    fn barrier(&self, db: &DB) -> Result<Option<Commit>> {
        if self.spec.lock().pending.is_empty() {
            return Ok(None);
        }
        self.propose(db, Effects::default()).map(Some)
    }
}

/// The namespace store, applying the group's log.
#[derive(Clone)]
pub struct StateMachine {
    ns: Arc<Namespace>,
    rep: Arc<Replicator>,
    snaps: Snapshots,
}

/// Undoes changes written ahead of a commit that a previous run (or the
/// leader a snapshot came from) never saw applied; they are replayed from
/// the log if they were committed. Whether there were any.
fn undo_leftovers(db: &DB) -> Result<bool> {
    let cf = meta_cf(db)?;
    let mut undos = Vec::new();
    for kv in db.iterator_cf(cf, IteratorMode::From(UNDO_PREFIX, Direction::Forward)) {
        let (k, v) = kv?;
        if !k.starts_with(UNDO_PREFIX) {
            break;
        }
        undos.push((k.to_vec(), decode::<Effects>("undo record", &v)?));
    }
    let mut batch = WriteBatch::default();
    for (k, undo) in undos.iter().rev() {
        undo.write_to(db, &mut batch)?;
        batch.delete_cf(cf, k);
    }
    if !undos.is_empty() {
        tracing::info!(
            changes = undos.len(),
            "undid changes written ahead of a commit that never came"
        );
        db.write_opt(batch, &unsynced())?;
    }
    Ok(!undos.is_empty())
}

/// What the store says the log applied last, into `spec` (nothing pending).
fn load_last_change(db: &DB, spec: &mut Spec) -> Result<()> {
    let (last_change, last_change_index): (Option<(u64, u64)>, u64) =
        match db.get_cf(meta_cf(db)?, KEY_LAST_CHANGE)? {
            Some(b) => decode("last change", &b)?,
            None => (None, 0),
        };
    spec.pending.clear();
    spec.last_change = last_change;
    spec.last_change_index = last_change_index;
    Ok(())
}

impl StateMachine {
    /// Finishes a snapshot install a crash cut short, and undoes changes
    /// a previous run wrote ahead and never saw applied.
    pub fn open(ns: Arc<Namespace>, rep: Arc<Replicator>, snaps: Snapshots) -> Result<Self> {
        ns.with_write_lock(|db| {
            let mut changed = false;
            if snaps.install_interrupted() {
                tracing::warn!("a snapshot install was cut short; installing it again");
                snaps.install_current(db)?;
                changed = true;
            }
            changed |= undo_leftovers(db)?;
            load_last_change(db, &mut rep.spec.lock())?;
            Ok(((), changed))
        })?;
        Ok(Self { ns, rep, snaps })
    }

    /// Applies one entry; whether each of its changes took effect.
    fn apply_one(&self, entry: &openraft::Entry<TypeConfig>) -> Result<Vec<bool>> {
        let log_id = entry.log_id;
        match &entry.payload {
            // Only the last change records the entry applied: after a
            // crash between two of them the entry is applied again, and
            // the changes already in are skipped (the last applied change
            // moved past what they were computed on).
            EntryPayload::Normal(NsBatch { changes }) if !changes.is_empty() => changes
                .iter()
                .enumerate()
                .map(|(i, cmd)| {
                    let last = i + 1 == changes.len();
                    match self.apply_own_next(log_id, cmd, last)? {
                        true => Ok(true),
                        false => self.apply_change(log_id, cmd, last),
                    }
                })
                .collect(),
            payload => self.ns.with_write_lock(|db| {
                let cf = meta_cf(db)?;
                let mut batch = WriteBatch::default();
                if let EntryPayload::Membership(m) = payload {
                    let stored = StoredMembership::new(Some(log_id), m.clone());
                    batch.put_cf(cf, KEY_MEMBERSHIP, encode("membership", &stored)?);
                }
                batch.put_cf(cf, KEY_APPLIED, encode("applied log id", &Some(log_id))?);
                db.write_opt(batch, &unsynced())?;
                Ok((Vec::new(), false))
            }),
        }
    }

    /// Applies one change of the entry `log_id` (not this leader's next
    /// own one); whether it took effect.
    fn apply_change(&self, log_id: LogId<NodeId>, cmd: &NsCommand, last: bool) -> Result<bool> {
        self.ns.with_write_lock(|db| {
            let cf = meta_cf(db)?;
            let mut batch = WriteBatch::default();
            let mut changed = false;
            let mut spec = self.rep.spec.lock();
            let valid = spec.computed_on_applied(cmd);
            let own_next = cmd.origin == self.rep.origin && spec.pending.front() == Some(&cmd.seq);
            if own_next && valid {
                // Already in the store since it was proposed.
                batch.delete_cf(cf, undo_key(cmd.seq));
                spec.pending.pop_front();
            } else {
                if !spec.pending.is_empty() {
                    self.rep.undo_pending(db, &mut spec, &mut batch)?;
                    changed = true;
                }
                if valid {
                    cmd.effects.write_to(db, &mut batch)?;
                    changed = true;
                } else {
                    tracing::info!(index = log_id.index, change = %cmd, "skipping a change computed on a state the log did not reach");
                }
            }
            if valid {
                spec.last_change = Some((cmd.origin, cmd.seq));
                spec.last_change_index = log_id.index;
                batch.put_cf(
                    cf,
                    KEY_LAST_CHANGE,
                    encode("last change", &(spec.last_change, spec.last_change_index))?,
                );
            }
            if last {
                batch.put_cf(cf, KEY_APPLIED, encode("applied log id", &Some(log_id))?);
            }
            db.write_opt(batch, &unsynced())?;
            Ok((valid, changed))
        })
    }

    /// The common case on a leader: the change is its own next one,
    /// computed on what the log applied, so already in the store. Only the
    /// bookkeeping is written, under the replicator's lock alone: the
    /// namespace lock stays with the mutations (taking it for every change
    /// made applies queue behind them). False when the change is anything
    /// else; nothing is written then.
    fn apply_own_next(&self, log_id: LogId<NodeId>, cmd: &NsCommand, last: bool) -> Result<bool> {
        if cmd.origin != self.rep.origin {
            return Ok(false);
        }
        let mut spec = self.rep.spec.lock();
        let valid = spec.computed_on_applied(cmd);
        if !valid || spec.pending.front() != Some(&cmd.seq) {
            return Ok(false);
        }
        let db = self.ns.db();
        let cf = meta_cf(db)?;
        let last_change = (Some((cmd.origin, cmd.seq)), log_id.index);
        let mut batch = WriteBatch::default();
        batch.delete_cf(cf, undo_key(cmd.seq));
        batch.put_cf(cf, KEY_LAST_CHANGE, encode("last change", &last_change)?);
        if last {
            batch.put_cf(cf, KEY_APPLIED, encode("applied log id", &Some(log_id))?);
        }
        db.write_opt(batch, &unsynced())?;
        spec.pending.pop_front();
        (spec.last_change, spec.last_change_index) = last_change;
        Ok(true)
    }

    fn read_applied(&self) -> Result<AppliedState> {
        let db = self.ns.db();
        let cf = meta_cf(db)?;
        let applied = match db.get_cf(cf, KEY_APPLIED)? {
            Some(b) => decode("applied log id", &b)?,
            None => None,
        };
        let membership = match db.get_cf(cf, KEY_MEMBERSHIP)? {
            Some(b) => decode("membership", &b)?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }
}

fn snap_err(e: impl std::error::Error + 'static) -> StErr {
    StorageIOError::write_snapshot(None, &e).into()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> std::result::Result<Snapshot<TypeConfig>, StErr> {
        let sm = self.clone();
        let meta = tokio::task::spawn_blocking(move || -> Result<snapshot::Meta> {
            let (meta, dir) = sm.ns.with_write_lock(|db| {
                // No entry is applied meanwhile (the leader's own entries
                // are applied under this lock alone): the checkpoint holds
                // exactly what the applied id says.
                let _applying = sm.rep.spec.lock();
                let (applied, membership) = sm.read_applied()?;
                let meta = snapshot::meta(applied, membership);
                let dir = sm.snaps.checkpoint(db, &meta.snapshot_id)?;
                Ok(((meta, dir), false))
            })?;
            sm.snaps.pack(&dir, &meta)?;
            Ok(meta)
        })
        .await
        .map_err(snap_err)?
        .map_err(snap_err)?;
        let file = tokio::fs::File::open(self.snaps.current_path())
            .await
            .map_err(snap_err)?;
        tracing::info!(snapshot = %meta.snapshot_id, "namespace snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> std::result::Result<AppliedState, StErr> {
        let sm = self.clone();
        tokio::task::spawn_blocking(move || sm.read_applied())
            .await
            .map_err(sm_err)?
            .map_err(|e| StorageIOError::read_state_machine(&e).into())
    }

    async fn apply<I>(&mut self, entries: I) -> std::result::Result<Vec<NsResponse>, StErr>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let sm = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(entries.len());
            for e in &entries {
                let applied = sm
                    .apply_one(e)
                    .map_err(|err| StErr::from(StorageIOError::apply(e.log_id, &err)))?;
                out.push(NsResponse { applied });
            }
            Ok(out)
        })
        .await
        .map_err(sm_err)?
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> std::result::Result<Box<tokio::fs::File>, StErr> {
        let f = tokio::fs::File::create(self.snaps.incoming_path())
            .await
            .map_err(snap_err)?;
        Ok(Box::new(f))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NnNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> std::result::Result<(), StErr> {
        snapshot.sync_all().await.map_err(snap_err)?;
        drop(snapshot);
        let (sm, meta) = (self.clone(), meta.clone());
        tokio::task::spawn_blocking(move || -> Result<()> {
            sm.snaps.make_current(&sm.snaps.incoming_path(), &meta)?;
            sm.ns.with_write_lock(|db| {
                sm.snaps.install_current(db)?;
                undo_leftovers(db)?;
                load_last_change(db, &mut sm.rep.spec.lock())?;
                Ok(((), true))
            })?;
            tracing::info!(snapshot = %meta.snapshot_id, "namespace snapshot installed");
            Ok(())
        })
        .await
        .map_err(snap_err)?
        .map_err(snap_err)
    }

    async fn get_current_snapshot(&mut self) -> std::result::Result<Option<Snapshot<TypeConfig>>, StErr> {
        let Some(meta) = self.snaps.current_meta().map_err(snap_err)? else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(self.snaps.current_path())
            .await
            .map_err(snap_err)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}

/// Keeps the replicator's view of the role current; when this namenode
/// stops leading, undoes what it wrote ahead and the group did not commit.
pub fn spawn_role_watch(
    raft: NnRaft,
    rep: Arc<Replicator>,
    ns: Arc<Namespace>,
    elections: Arc<AtomicU64>,
    lease: Duration,
    token: CancellationToken,
) {
    let mut rx = raft.metrics();
    tokio::spawn(async move {
        let (mut last_term, mut was_leader, mut known_leader) = (0u64, false, None);
        loop {
            let m = rx.borrow_and_update().clone();
            let leader = m.state == ServerState::Leader;
            // A leader serves once it applied its log up to its own term and
            // a majority acknowledged it: a member restarted from a vote
            // that made it leader names itself leader until it hears of a
            // newer term, and must not serve meanwhile.
            let alone = m.membership_config.membership().voter_ids().count() <= 1;
            let ready = leader
                && m.last_applied.map(|l| l.leader_id.term) == Some(m.current_term)
                && (alone || m.millis_since_quorum_ack.is_some());
            let leader_addr = m.current_leader.and_then(|id| {
                m.membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| n.rpc_addr.clone())
            });
            // A leader change: a leader known, in a term not seen led before.
            if let Some(l) = m.current_leader
                && known_leader != Some((m.current_term, l))
            {
                if known_leader.is_some() {
                    elections.fetch_add(1, Ordering::Relaxed);
                }
                known_leader = Some((m.current_term, l));
            }
            if (was_leader && !leader) || (leader && m.current_term != last_term) {
                let (ns, rep2) = (ns.clone(), rep.clone());
                let undone = tokio::task::spawn_blocking(move || {
                    ns.with_write_lock(|db| {
                        let mut spec = rep2.spec.lock();
                        let had = !spec.pending.is_empty();
                        let mut batch = WriteBatch::default();
                        rep2.undo_pending(db, &mut spec, &mut batch)?;
                        db.write_opt(batch, &unsynced())?;
                        Ok(((), had))
                    })
                })
                .await;
                if let Ok(Err(e)) | Err(e) = undone.map_err(|e| NnError::Internal(e.to_string())) {
                    tracing::error!(error = %e, "cannot undo uncommitted changes");
                }
            }
            if leader != was_leader || m.current_term != last_term {
                tracing::info!(term = m.current_term, leader, leader_addr = ?leader_addr, "namenode group role");
            }
            let lease_until = if alone {
                None
            } else {
                // A lease the engine has not renewed yet is already over.
                Some(match m.millis_since_quorum_ack {
                    Some(ms) => std::time::Instant::now() - Duration::from_millis(ms) + lease,
                    None => std::time::Instant::now(),
                })
            };
            *rep.role.write() = Role {
                leader,
                ready,
                leader_addr,
                lease_until,
            };
            (last_term, was_leader) = (m.current_term, leader);
            tokio::select! {
                _ = token.cancelled() => return,
                r = rx.changed() => if r.is_err() { return },
            }
        }
    });
}

/// Log entries proposed and not yet answered. openraft 0.9 takes the next
/// entry only after the last one's fsync; while these are on their way the
/// changes that come in wait here and go together in the next entry.
const IN_FLIGHT: usize = 2;
/// At most this many keys changed per entry (many changes, or one large
/// one), which keeps a batch of entries within a Raft message.
const BATCH_KEYS: usize = 4096;

/// Why a batch was not committed, for each of its callers.
enum Failed {
    Standby(Option<String>),
    NotCommitted(String),
}

/// Hands proposals to Raft in the order they were written, as few entries
/// as the log's pace allows, and each caller its outcome.
pub fn spawn_proposer(
    raft: NnRaft,
    rep: Arc<Replicator>,
    mut proposals: mpsc::UnboundedReceiver<Proposal>,
    token: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                _ = token.cancelled() => return,
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            };
            let first = tokio::select! {
                _ = token.cancelled() => return,
                p = proposals.recv() => match p { Some(p) => p, None => return },
            };
            let mut keys = first.cmd.effects.ops().len();
            let mut batch = vec![first];
            while keys < BATCH_KEYS {
                match proposals.try_recv() {
                    Ok(p) => {
                        keys += p.cmd.effects.ops().len();
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            let (changes, dones): (Vec<NsCommand>, Vec<_>) =
                batch.into_iter().map(|p| (p.cmd, p.done)).unzip();
            let answer = match raft.client_write_ff(NsBatch { changes }).await {
                Ok(answer) => answer,
                Err(e) => {
                    for done in dones {
                        let _ = done.send(Err(NnError::NotCommitted(format!("raft stopped: {e}"))));
                    }
                    continue;
                }
            };
            let rep = rep.clone();
            tokio::spawn(async move {
                let _slot = permit;
                let out = match tokio::time::timeout(COMMIT_TIMEOUT, answer).await {
                    Ok(Ok(Ok(resp))) => Ok(resp.data.applied),
                    Ok(Ok(Err(openraft::error::ClientWriteError::ForwardToLeader(f)))) => {
                        Err(Failed::Standby(f.leader_node.map(|n| n.rpc_addr)))
                    }
                    Ok(Ok(Err(e))) => Err(Failed::NotCommitted(e.to_string())),
                    Ok(Err(_)) => Err(Failed::NotCommitted("raft stopped".into())),
                    Err(_) => Err(Failed::NotCommitted(format!(
                        "no majority committed it within {} s",
                        COMMIT_TIMEOUT.as_secs()
                    ))),
                };
                for (i, done) in dones.into_iter().enumerate() {
                    let r = match &out {
                        Ok(applied) if applied.get(i).copied().unwrap_or(false) => Ok(()),
                        Ok(_) => Err(NnError::NotCommitted("a leader change overtook it".into())),
                        Err(Failed::Standby(leader)) => Err(rep.standby(leader.clone())),
                        Err(Failed::NotCommitted(why)) => Err(NnError::NotCommitted(why.clone())),
                    };
                    let _ = done.send(r);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::NamespaceConfig;
    use granary_common::identity::Identity;
    use openraft::{CommittedLeaderId, Entry};

    fn entry(index: u64, cmd: NsCommand) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(NsBatch { changes: vec![cmd] }),
        }
    }

    /// A group member's namespace, replicator (its proposals come out of
    /// `proposals`) and state machine, not leading yet.
    struct Member {
        _tmp: tempfile::TempDir,
        ns: Arc<Namespace>,
        su: crate::permission::Caller,
        snaps: Snapshots,
        rep: Arc<Replicator>,
        proposals: mpsc::UnboundedReceiver<Proposal>,
        sm: StateMachine,
    }

    fn member() -> Member {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = NamespaceConfig {
            superuser: "hdfs".into(),
            ..Default::default()
        };
        let ns =
            Arc::new(Namespace::create_at(&tmp.path().join("ns"), cfg, &Default::default(), 0).expect("ns"));
        let su = ns.caller(Identity::new("hdfs"));
        let snaps = Snapshots::open(tmp.path().join("snapshots")).expect("snapshots");
        let (rep, proposals) = Replicator::new("nn1".into());
        let sm = StateMachine::open(ns.clone(), rep.clone(), snaps.clone()).expect("sm");
        ns.replicate_through(rep.clone());
        Member {
            _tmp: tmp,
            ns,
            su,
            snaps,
            rep,
            proposals,
            sm,
        }
    }

    /// Makes `rep` a ready leader within its lease.
    fn lead(rep: &Replicator) {
        *rep.role.write() = Role {
            leader: true,
            ready: true,
            leader_addr: None,
            lease_until: None,
        };
    }

    /// The leader's changes are in its store as soon as made; applied in
    /// order they stay; a change from elsewhere first undoes the pending
    /// ones (newest first); a change computed on an undone one is skipped;
    /// a restart undoes what was pending.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uncommitted_changes_are_undone_and_the_log_decides_alike() {
        let Member {
            _tmp,
            ns,
            su,
            snaps,
            rep,
            mut proposals,
            sm,
        } = member();
        let exists = |p: &str| ns.get_file_info(&su, p).is_ok();

        // Not leading: no change is made.
        let r = ns.mkdirs(&su, "/refused", 0, false);
        assert!(matches!(r, Err(NnError::Standby { .. })), "{r:?}");
        lead(&rep);

        let d1 = ns.mkdirs(&su, "/a", 0, false).expect("mkdirs /a");
        let d2 = ns.mkdirs(&su, "/a/b", 0, false).expect("mkdirs /a/b");
        let c1 = proposals.recv().await.expect("proposal").cmd;
        let c2 = proposals.recv().await.expect("proposal").cmd;
        assert_eq!((c1.after, c2.after), (None, Some(c1.seq)));
        assert!(exists("/a/b"), "a leader's change is visible at once");
        assert!(d1.changed() && d2.changed(), "both wait for their commit");

        // Its own first change, in order: already there.
        assert_eq!(sm.apply_one(&entry(1, c1.clone())).expect("apply"), [true]);
        assert!(exists("/a") && exists("/a/b"));

        // Another leader's change: /a/b (not committed) is undone first.
        let mut other = Effects::default();
        other.put_cf(CF_META, b"other-leader", b"1");
        let foreign = NsCommand {
            origin: rep.origin.wrapping_add(1),
            seq: 0,
            after: None,
            base: 1,
            effects: other,
        };
        assert_eq!(sm.apply_one(&entry(2, foreign)).expect("apply"), [true]);
        assert!(exists("/a"), "the committed change stays");
        assert!(!exists("/a/b"), "the uncommitted change is undone");
        let meta = ns.db().cf_handle(CF_META).expect("cf");
        assert!(ns.db().get_cf(meta, b"other-leader").expect("get").is_some());

        // Should the log still carry /a/b after that, it was computed on a
        // state the log did not reach: skipped, here as on every namenode.
        assert_eq!(sm.apply_one(&entry(3, c2)).expect("apply"), [false]);
        assert!(!exists("/a/b"));

        // A change made and never applied is undone by the next start.
        let _d3 = ns.mkdirs(&su, "/c", 0, false).expect("mkdirs /c");
        assert!(exists("/c"));
        drop(sm);
        let (rep2, _rx) = Replicator::new("nn1".into());
        let _sm = StateMachine::open(ns.clone(), rep2, snaps).expect("reopen");
        assert!(!exists("/c"), "undone at start");
        assert!(exists("/a"));
    }

    /// A retried call found in the retry cache while the change that
    /// recorded it is still pending is answered only after a change of
    /// nothing, proposed behind it, commits: which it does only if that
    /// change applied. With nothing pending there is nothing to wait for.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retry_answered_from_a_pending_record_waits_for_its_commit() {
        use crate::namespace::retry::recording;
        use granary_common::retry::CallKey;

        let Member {
            _tmp,
            ns,
            su,
            rep,
            mut proposals,
            sm,
            ..
        } = member();
        lead(&rep);
        let call = CallKey {
            client_id: "c1".into(),
            call_id: 1,
        };
        let _made = recording(Some(&call), 0, || ns.mkdirs(&su, "/a", 0, false)).expect("mkdirs");
        let made = proposals.recv().await.expect("proposal");
        let found = ns.recorded(Some(&call)).expect("lookup");
        assert!(found.changed(), "the record's change is pending: wait");
        let barrier = proposals.recv().await.expect("a barrier is proposed");
        assert!(barrier.cmd.effects.is_empty());
        assert_eq!(barrier.cmd.after, Some(made.cmd.seq), "behind the pending change");
        // Both commit: the barrier applies, and nothing is pending after it.
        assert_eq!(sm.apply_one(&entry(1, made.cmd)).expect("apply"), [true]);
        assert_eq!(sm.apply_one(&entry(2, barrier.cmd)).expect("apply"), [true]);
        let again = ns.recorded(Some(&call)).expect("lookup");
        assert!(!again.changed(), "nothing pending: answered at once");
        assert!(again.wait().expect("found").is_some());
    }

    /// An entry of two changes whose first was applied when the process
    /// died: the entry is not recorded applied, so it is applied again
    /// after the restart, and only its second change takes effect.
    #[tokio::test]
    async fn a_batch_cut_short_by_a_crash_is_finished_not_doubled() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ns = Arc::new(
            Namespace::create_at(
                &tmp.path().join("ns"),
                NamespaceConfig::default(),
                &Default::default(),
                0,
            )
            .expect("ns"),
        );
        let snaps = Snapshots::open(tmp.path().join("snapshots")).expect("snapshots");
        let (rep, _rx) = Replicator::new("nn2".into());
        let sm = StateMachine::open(ns.clone(), rep.clone(), snaps.clone()).expect("sm");
        let meta = ns.db().cf_handle(CF_META).expect("cf");
        let change = |seq: u64, after: Option<u64>, key: &[u8], value: &[u8]| {
            let mut e = Effects::default();
            e.put_cf(CF_META, key, value);
            NsCommand {
                origin: 7,
                seq,
                after,
                base: 0,
                effects: e,
            }
        };
        // The first change puts k=1; the second, computed on it, k=2.
        let first = change(0, None, b"k", b"1");
        let second = change(1, Some(0), b"k", b"2");
        let e = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), 1),
            payload: EntryPayload::Normal(NsBatch {
                changes: vec![first.clone(), second.clone()],
            }),
        };
        assert!(sm.apply_change(e.log_id, &first, false).expect("apply"));
        assert_eq!(
            sm.read_applied().expect("applied").0,
            None,
            "not recorded applied"
        );
        drop(sm);

        let (rep2, _rx2) = Replicator::new("nn2".into());
        let sm = StateMachine::open(ns.clone(), rep2, snaps).expect("reopen");
        assert_eq!(sm.apply_one(&e).expect("apply again"), [false, true]);
        assert_eq!(sm.read_applied().expect("applied").0, Some(e.log_id));
        let k = ns.db().get_cf(meta, b"k").expect("get");
        assert_eq!(k.as_deref(), Some(&b"2"[..]));
        drop(rep);
    }
}
