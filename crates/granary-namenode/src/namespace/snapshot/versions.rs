//! Kept values: what an inode or a directory entry was when a snapshot was
//! taken, written the first time a mutation changes it afterwards, and read
//! back by paths under `DIR/.snapshot/NAME`.
//!
//! Keys in the `snapshots` column family:
//! - `K` ++ cf ++ key ++ 0x00 ++ snapshot id (u64 BE) -> the value `key` of
//!   column family `cf` (inodes or dirents) had when that snapshot was
//!   taken: `[0]` absent, `[1] ++ value` present. A key's entries are one
//!   contiguous range (names hold no NUL), ordered by snapshot id.
//! - `X` ++ snapshot id ++ cf ++ key -> nothing: which keys a snapshot keeps,
//!   for deleting it and for diffs.
//!
//! The value of a key at snapshot S is its first kept value at an id ≥ S,
//! else its current one: a value is kept under the latest snapshot by the
//! first change after that snapshot, so any later kept value (or the
//! current one) is what it was when S was taken.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use rocksdb::{Direction, IteratorMode, ReadOptions};

use super::super::{Effects, Namespace, decode_inode};
use super::SnapState;
use crate::error::{NnError, Result};
use crate::inode::*;

/// One key and value of an iteration, or why it stopped.
pub(super) type KeyValue = std::result::Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>;

pub(super) const KEPT: u8 = b'K';
pub(super) const KEPT_INDEX: u8 = b'X';
/// Column family numbers in kept keys (as in [`ALL_CFS`]).
pub(super) const INODES: u8 = 0;
pub(super) const DIRENTS: u8 = 1;

/// `K` ++ cf ++ key ++ 0x00: the prefix of every kept value of one key.
pub(super) fn kept_prefix(cf: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 11);
    k.push(KEPT);
    k.push(cf);
    k.extend_from_slice(key);
    k.push(0);
    k
}

pub(super) fn kept_key(cf: u8, key: &[u8], snap: u64) -> Vec<u8> {
    let mut k = kept_prefix(cf, key);
    k.extend_from_slice(&snap.to_be_bytes());
    k
}

pub(super) fn index_key(snap: u64, cf: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 10);
    k.push(KEPT_INDEX);
    k.extend_from_slice(&snap.to_be_bytes());
    k.push(cf);
    k.extend_from_slice(key);
    k
}

/// (cf, key) of an index key of snapshot `snap`.
pub(super) fn parse_index_key(k: &[u8]) -> Option<(u64, u8, &[u8])> {
    if k.len() < 10 || k[0] != KEPT_INDEX {
        return None;
    }
    Some((decode_u64(&k[1..9])?, k[9], &k[10..]))
}

pub(super) fn encode_kept(v: Option<&[u8]>) -> Vec<u8> {
    match v {
        None => vec![0],
        Some(v) => {
            let mut out = Vec::with_capacity(v.len() + 1);
            out.push(1);
            out.extend_from_slice(v);
            out
        }
    }
}

pub(super) fn decode_kept(v: &[u8]) -> Result<Option<Vec<u8>>> {
    match v.first() {
        Some(0) => Ok(None),
        Some(1) => Ok(Some(v[1..].to_vec())),
        _ => Err(NnError::Corrupt("undecodable kept snapshot value".into())),
    }
}

/// Which snapshots may hold an inode, worked out from the stored tree as a
/// mutation found it: those of the directories with snapshots among its
/// ancestors now or in any kept value (a directory moved out of a
/// snapshotted tree keeps its old parent in a kept value, so what is below
/// it still leads back to that tree). The answer is the latest snapshot of
/// those directories: the one a changed value is kept under.
struct Coverage<'a> {
    st: &'a SnapState,
    memo: HashMap<u64, Option<u64>>,
}

impl Coverage<'_> {
    fn latest(&mut self, ns: &Namespace, id: u64) -> Result<Option<u64>> {
        if let Some(v) = self.memo.get(&id) {
            return Ok(*v);
        }
        let mut seen = HashSet::from([id]);
        let mut todo = vec![id];
        let mut best: Option<u64> = None;
        while let Some(cur) = todo.pop() {
            if let Some(l) = self.st.latest_of(cur) {
                best = best.max(Some(l));
            }
            if cur == ROOT_ID {
                continue;
            }
            let mut parents: Vec<u64> = ns.get_inode(cur)?.map(|i| i.parent).into_iter().collect();
            parents.extend(ns.kept_versions(cur, None)?.iter().map(|i| i.parent));
            for p in parents {
                if p != 0 && seen.insert(p) {
                    todo.push(p);
                }
            }
        }
        self.memo.insert(id, best);
        Ok(best)
    }
}

/// The kept inode values a mutation writes or deletes, by inode, indexed
/// once per mutation (a recursive delete's thousands of files would
/// otherwise scan its every change once per file).
#[derive(Default)]
pub(super) struct KeptOverlay(HashMap<u64, Vec<KeptChange>>);

/// A kept-value key and what a mutation sets it to (None: deletes it).
type KeptChange = (Vec<u8>, Option<Vec<u8>>);

impl KeptOverlay {
    pub(super) fn of(effects: &Effects) -> Self {
        let mut o = Self::default();
        for op in effects.ops_in(CF_SNAPSHOTS) {
            if op.key.len() == 2 + 8 + 1 + 8
                && op.key[0] == KEPT
                && op.key[1] == INODES
                && let Some(id) = decode_u64(&op.key[2..10])
            {
                o.0.entry(id)
                    .or_default()
                    .push((op.key.clone(), op.value.clone()));
            }
        }
        o
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The inodes whose kept values change.
    pub(super) fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.keys().copied()
    }
}

/// An inode's kept values, each with the snapshot id it is kept under.
pub(super) type KeptInodes = Vec<(u64, Inode)>;

/// Kept inode values by key (None: deleted), decoded with the snapshot id
/// each is kept under, oldest first; "absent" values left out.
fn decode_kept_inodes(values: BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> Result<Vec<(u64, Inode)>> {
    let mut out = Vec::new();
    for (k, v) in values {
        let (Some(v), Some(snap)) = (v, k.len().checked_sub(8).and_then(|at| decode_u64(&k[at..]))) else {
            continue;
        };
        if let Some(bytes) = decode_kept(&v)? {
            out.push((snap, decode_inode(&bytes)?));
        }
    }
    Ok(out)
}

impl Namespace {
    /// The kept value of `key` (column family `cf`) that stands for
    /// snapshot `snap`, if any: `Some(None)` when the key was absent then.
    fn kept_at(&self, cf: u8, key: &[u8], snap: u64) -> Result<Option<Option<Vec<u8>>>> {
        let prefix = kept_prefix(cf, key);
        let mut ro = ReadOptions::default();
        let mut upper = prefix.clone();
        upper.extend_from_slice(&[0xff; 9]);
        ro.set_iterate_upper_bound(upper);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_SNAPSHOTS)?, ro);
        it.seek(kept_key(cf, key, snap));
        if !it.valid() {
            it.status()?;
            return Ok(None);
        }
        match (it.key(), it.value()) {
            (Some(k), Some(v)) if k.len() == prefix.len() + 8 && k.starts_with(&prefix) => {
                Ok(Some(decode_kept(v)?))
            }
            _ => Ok(None),
        }
    }

    /// Inode `id` as it is (`at` None) or was when snapshot `at` was taken.
    pub(crate) fn inode_at(&self, id: u64, at: Option<u64>) -> Result<Option<Inode>> {
        if let Some(snap) = at
            && let Some(kept) = self.kept_at(INODES, &id_key(id), snap)?
        {
            return kept.map(|v| decode_inode(&v)).transpose();
        }
        self.get_inode(id)
    }

    /// The child named `name` of directory `parent`, now or at snapshot `at`.
    pub(crate) fn lookup_at(&self, parent: u64, name: &str, at: Option<u64>) -> Result<Option<u64>> {
        if let Some(snap) = at
            && let Some(kept) = self.kept_at(DIRENTS, &dirent_key(parent, name), snap)?
        {
            return Ok(kept.as_deref().and_then(decode_u64));
        }
        self.lookup(parent, name)
    }

    /// Names and ids of directory `dir`'s children at snapshot `snap`,
    /// after `start_after`, in name order; at most `limit` (and whether
    /// there are more).
    pub(crate) fn children_at(
        &self,
        dir: u64,
        snap: u64,
        start_after: &str,
        limit: usize,
    ) -> Result<(Vec<(String, u64)>, bool)> {
        // Names with a kept entry under this directory: they may be absent
        // now, or present now and absent then.
        let mut kept = BTreeSet::new();
        let prefix = kept_prefix(DIRENTS, &id_key(dir));
        let prefix = &prefix[..prefix.len() - 1];
        for item in self.prefix_iter(CF_SNAPSHOTS, prefix)? {
            let (k, _) = item?;
            if let Some(name) = k
                .get(prefix.len()..k.len().saturating_sub(9))
                .and_then(|n| std::str::from_utf8(n).ok())
                && name > start_after
            {
                kept.insert(name.to_string());
            }
        }
        // A name present now and absent then has a kept entry: at most
        // `kept.len()` current names are skipped.
        let mut names = kept.clone();
        let want = limit.saturating_add(1).saturating_add(kept.len());
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(id_key(dir + 1).to_vec());
        let start = dirent_key(dir, start_after);
        for item in self.db.iterator_cf_opt(
            self.cf(CF_DIRENTS)?,
            ro,
            IteratorMode::From(&start, Direction::Forward),
        ) {
            let (k, _) = item?;
            let Some(name) = k.get(8..).and_then(|n| std::str::from_utf8(n).ok()) else {
                continue;
            };
            if name <= start_after {
                continue;
            }
            if names.len() >= want && names.last().is_some_and(|l| l.as_str() < name) {
                break;
            }
            names.insert(name.to_string());
        }
        let mut out = Vec::new();
        for name in names {
            if let Some(id) = self.lookup_at(dir, &name, Some(snap))? {
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push((name, id));
            }
        }
        Ok((out, false))
    }

    pub(super) fn prefix_iter<'a>(
        &'a self,
        cf: &str,
        prefix: &[u8],
    ) -> Result<impl Iterator<Item = KeyValue> + 'a> {
        let mut ro = ReadOptions::default();
        let mut upper = prefix.to_vec();
        // Every key under `prefix` sorts below `prefix ++ 0xff..`: keys are
        // shorter than 64 KiB past it.
        upper.extend_from_slice(&[0xff; 8]);
        ro.set_iterate_upper_bound(upper);
        let prefix = prefix.to_vec();
        Ok(self
            .db
            .iterator_cf_opt(
                self.cf(cf)?,
                ro,
                IteratorMode::From(&prefix.clone(), Direction::Forward),
            )
            .take_while(move |r| r.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix))))
    }

    /// Every kept value of inode `id` that is present (not "absent"), as
    /// stored, with a mutation's not yet written changes to them applied.
    pub(super) fn kept_versions(&self, id: u64, overlay: Option<&KeptOverlay>) -> Result<Vec<Inode>> {
        Ok(self
            .kept_inodes(id, overlay)?
            .into_iter()
            .map(|(_, inode)| inode)
            .collect())
    }

    /// Like [`Namespace::kept_versions`], each with the snapshot id it is
    /// kept under, oldest first.
    pub(super) fn kept_inodes(&self, id: u64, overlay: Option<&KeptOverlay>) -> Result<Vec<(u64, Inode)>> {
        let mut values = self.stored_kept_inodes(id)?;
        if let Some(changes) = overlay.and_then(|o| o.0.get(&id)) {
            for (k, v) in changes {
                values.insert(k.clone(), v.clone());
            }
        }
        decode_kept_inodes(values)
    }

    /// Inode `id`'s kept values as stored and as `overlay` leaves them,
    /// from one scan.
    pub(super) fn kept_inodes_changed(
        &self,
        id: u64,
        overlay: &KeptOverlay,
    ) -> Result<(KeptInodes, KeptInodes)> {
        let stored = self.stored_kept_inodes(id)?;
        let Some(changes) = overlay.0.get(&id) else {
            let before = decode_kept_inodes(stored)?;
            return Ok((before.clone(), before));
        };
        let mut after = stored.clone();
        for (k, v) in changes {
            after.insert(k.clone(), v.clone());
        }
        Ok((decode_kept_inodes(stored)?, decode_kept_inodes(after)?))
    }

    fn stored_kept_inodes(&self, id: u64) -> Result<BTreeMap<Vec<u8>, Option<Vec<u8>>>> {
        let mut values = BTreeMap::new();
        for item in self.prefix_iter(CF_SNAPSHOTS, &kept_prefix(INODES, &id_key(id)))? {
            let (k, v) = item?;
            values.insert(k.to_vec(), Some(v.to_vec()));
        }
        Ok(values)
    }

    /// How many committed blocks only kept values hold (their files were
    /// deleted or changed since): datanodes report them too, so safe mode
    /// counts them.
    pub(in crate::namespace) fn blocks_only_snapshots_hold(&self) -> Result<u64> {
        let mut only: HashSet<u64> = HashSet::new();
        let mut current: HashMap<u64, HashSet<u64>> = HashMap::new();
        for item in self.prefix_iter(CF_SNAPSHOTS, &[KEPT, INODES])? {
            let (_, v) = item?;
            let Some(bytes) = decode_kept(&v)? else {
                continue;
            };
            let inode = decode_inode(&bytes)?;
            let now = match current.entry(inode.id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(
                    self.get_inode(inode.id)?
                        .iter()
                        .flat_map(|i| i.blocks.iter().map(|b| b.id))
                        .collect(),
                ),
            };
            for b in inode.blocks.iter().filter(|b| b.committed) {
                if !now.contains(&b.id) && self.block_owner(b.id)?.is_some_and(|o| o.inode == inode.id) {
                    only.insert(b.id);
                }
            }
        }
        Ok(only.len() as u64)
    }

    /// The inode `id` that holds block `block`: the current one, or else
    /// the newest kept value that does (a block kept only by snapshots),
    /// for what the block needs (its replication).
    pub fn inode_holding(&self, id: u64, block: u64) -> Result<Option<Inode>> {
        let now = self.get_inode(id)?;
        if now
            .as_ref()
            .is_some_and(|i| i.blocks.iter().any(|b| b.id == block))
            || !self.snap_state().any()
        {
            return Ok(now);
        }
        Ok(self
            .kept_versions(id, None)?
            .into_iter()
            .rev()
            .find(|i| i.blocks.iter().any(|b| b.id == block))
            .or(now))
    }

    /// Run by every mutation while a snapshot exists, after it has made its
    /// changes: keeps the value before the change of every inode and
    /// directory entry it changes that may be in a snapshot (once per key
    /// per latest snapshot), and leaves alone the blocks of files that a
    /// kept value still holds (their `blocks` entries stay; so do their
    /// replicas). With `only`, keeps just those inodes' values (changed
    /// since by quota accounting) and leaves blocks alone. A value already
    /// kept, in the store or in `effects`, is not kept again.
    pub(in crate::namespace) fn keep_for_snapshots(
        &self,
        effects: &mut Effects,
        only: Option<&[u64]>,
    ) -> Result<()> {
        let st = self.snap_state();
        let Some(newest) = st.latest() else {
            return Ok(());
        };
        let newest_watermark = newest.watermark;
        let mut coverage = Coverage {
            st: &st,
            memo: HashMap::new(),
        };
        let mut adds = Effects::default();
        let inodes: Vec<Vec<u8>> = effects
            .final_values(CF_INODES)
            .into_iter()
            .map(|(k, _)| k.to_vec())
            .filter(|k| only.is_none_or(|ids| decode_u64(k).is_some_and(|id| ids.contains(&id))))
            .collect();
        let dirents: Vec<Vec<u8>> = match only {
            Some(_) => Vec::new(),
            None => effects
                .final_values(CF_DIRENTS)
                .into_iter()
                .map(|(k, _)| k.to_vec())
                .collect(),
        };
        let snapshots = self.cf(CF_SNAPSHOTS)?;
        for (cf, cf_name, keys) in [(INODES, CF_INODES, inodes), (DIRENTS, CF_DIRENTS, dirents)] {
            for key in keys {
                // An inode, or a directory's entries, made after a snapshot
                // is in none of it.
                let Some(owner) = decode_u64(&key) else {
                    continue;
                };
                if owner >= newest_watermark {
                    continue;
                }
                let Some(snap) = coverage.latest(self, owner)? else {
                    continue;
                };
                if st.by_id.get(&snap).is_none_or(|r| owner >= r.watermark) {
                    continue;
                }
                let kk = kept_key(cf, &key, snap);
                if (only.is_some() && effects.last_change(CF_SNAPSHOTS, &kk).is_some())
                    || self.db.get_pinned_cf(snapshots, &kk)?.is_some()
                {
                    continue;
                }
                let old = self.db.get_cf(self.cf(cf_name)?, &key)?;
                if cf == INODES && old.is_none() {
                    continue;
                }
                adds.put_cf(CF_SNAPSHOTS, &kk, encode_kept(old.as_deref()));
                adds.put_cf(CF_SNAPSHOTS, index_key(snap, cf, &key), []);
            }
        }
        effects.extend(adds);
        match only {
            Some(_) => Ok(()),
            None => self.spare_kept_blocks(effects),
        }
    }

    /// Takes back a mutation's deletions of `blocks` entries that a kept
    /// inode value still holds.
    fn spare_kept_blocks(&self, effects: &mut Effects) -> Result<()> {
        let deleted: Vec<Vec<u8>> = effects
            .final_values(CF_BLOCKS)
            .into_iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_vec())
            .collect();
        if deleted.is_empty() {
            return Ok(());
        }
        let mut held: HashMap<u64, HashSet<u64>> = HashMap::new();
        let mut spared = HashSet::new();
        let overlay = KeptOverlay::of(effects);
        for key in deleted {
            let Some(owner) = self
                .db
                .get_pinned_cf(self.cf(CF_BLOCKS)?, &key)?
                .and_then(|v| decode_block_value(&v))
            else {
                continue;
            };
            let blocks = match held.entry(owner.inode) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(
                    self.kept_versions(owner.inode, Some(&overlay))?
                        .iter()
                        .flat_map(|i| i.blocks.iter().map(|b| b.id))
                        .collect(),
                ),
            };
            if decode_u64(&key).is_some_and(|b| blocks.contains(&b)) {
                spared.insert(key);
            }
        }
        if !spared.is_empty() {
            effects.retain(|cf, key, value| !(cf == CF_BLOCKS && value.is_none() && spared.contains(key)));
        }
        Ok(())
    }
}
