//! Snapshots, as HDFS's: an operator allows snapshots of a directory; its
//! owner takes read-only, named images of it, read under
//! `DIR/.snapshot/NAME/...`, compared with `snapshot-diff`, renamed and
//! deleted.
//!
//! Taking one writes one record (O(1)): the snapshot id (ids count up
//! across the namespace) and the next inode id then (its watermark). From
//! then on every mutation keeps, before it changes an inode or directory
//! entry that may be in a snapshot, its old value under the latest
//! snapshot id, once per key per snapshot (`versions`); a file deleted or
//! overwritten keeps its `blocks` entries, and so its replicas, while a
//! kept value holds them. Deleting a snapshot hands each kept value the
//! previous snapshot still needs to it, drops the rest, and deletes the
//! blocks no current or kept inode holds any more.
//!
//! Keys in the `snapshots` column family, beside `versions`' ones:
//! - `D` ++ directory id -> nothing: the directory is snapshottable
//! - `S` ++ directory id ++ name -> [`SnapshotRecord`]

mod diff;
mod usage;
mod versions;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use prost::Message;

pub use diff::{DiffEntry, DiffKind};
pub use usage::Held;

use super::{Effects, Namespace, Written};
use crate::error::{NnError, Result};
use crate::inode::*;
use crate::permission::Caller;

const SNAPSHOTTABLE: u8 = b'D';
const RECORD: u8 = b'S';
/// The next snapshot id (u64 BE), in `meta`.
const META_NEXT_SNAPSHOT: &[u8] = b"next_snapshot_id";
/// Most snapshots of one directory (HDFS's limit).
pub const MAX_SNAPSHOTS: usize = 65_536;
/// The name of the read-only directory that holds a directory's snapshots.
pub const DOT_SNAPSHOT: &str = ".snapshot";

/// What the namespace keeps in memory of its snapshots (a few records):
/// reloaded whenever a change touches them.
#[derive(Debug, Default)]
pub struct SnapState {
    snapshottable: HashSet<u64>,
    /// Directories with snapshots, and how many each has.
    taken: HashMap<u64, usize>,
    /// Each directory's latest snapshot id.
    latest: HashMap<u64, u64>,
    by_id: BTreeMap<u64, SnapshotRecord>,
}

impl SnapState {
    pub fn any(&self) -> bool {
        !self.by_id.is_empty()
    }

    fn latest(&self) -> Option<&SnapshotRecord> {
        self.by_id.values().next_back()
    }

    /// Directory `dir`'s latest snapshot, if it has any.
    fn latest_of(&self, dir: u64) -> Option<u64> {
        self.latest.get(&dir).copied()
    }

    pub fn is_snapshottable(&self, dir: u64) -> bool {
        self.snapshottable.contains(&dir)
    }

    pub fn has_snapshots(&self, dir: u64) -> bool {
        self.taken.contains_key(&dir)
    }

    /// The name of snapshot `id`, while it exists.
    pub fn name_of(&self, id: u64) -> Option<&str> {
        self.by_id.get(&id).map(|r| r.name.as_str())
    }
}

fn snapshottable_key(dir: u64) -> Vec<u8> {
    let mut k = vec![SNAPSHOTTABLE];
    k.extend_from_slice(&dir.to_be_bytes());
    k
}

fn record_key(dir: u64, name: &str) -> Vec<u8> {
    let mut k = vec![RECORD];
    k.extend_from_slice(&dir.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

/// Whether `effects` change which directories are snapshottable or which
/// snapshots exist (the in-memory [`SnapState`] must then be reloaded).
pub(super) fn changes_state(effects: &Effects) -> bool {
    effects
        .ops_in(CF_SNAPSHOTS)
        .any(|op| matches!(op.key.first(), Some(&SNAPSHOTTABLE | &RECORD)))
}

/// A snapshot's path: `DIR/.snapshot/NAME`.
pub fn snapshot_path(dir: &str, name: &str) -> String {
    granary_common::path::join(&granary_common::path::join(dir, DOT_SNAPSHOT), name)
}

/// HDFS's default snapshot name: `s` and the time, `s20261203-041503.123`.
fn default_name(now_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .format("s%Y%m%d-%H%M%S%.3f")
        .to_string()
}

fn check_name(name: &str) -> Result<()> {
    if name == DOT_SNAPSHOT {
        return Err(NnError::Snapshot(format!(
            "Invalid snapshot name: {name:?} is a reserved name"
        )));
    }
    if name.contains('/') {
        return Err(NnError::Snapshot(format!(
            "Invalid snapshot name {name:?}: it contains '/'"
        )));
    }
    granary_common::path::validate_component(name)
        .map_err(|why| NnError::Snapshot(format!("Invalid snapshot name {name:?}: {why}")))
}

/// A snapshottable directory, as `lsSnapshottableDir` shows it.
#[derive(Debug, Clone)]
pub struct SnapshottableDir {
    pub path: String,
    pub inode: Inode,
    pub snapshots: usize,
}

impl Namespace {
    pub(super) fn load_snapshots(&self) -> Result<()> {
        let mut st = SnapState::default();
        for item in self.prefix_iter(CF_SNAPSHOTS, &[SNAPSHOTTABLE])? {
            let (k, _) = item?;
            if let Some(id) = k.get(1..).and_then(decode_u64) {
                st.snapshottable.insert(id);
            }
        }
        for item in self.prefix_iter(CF_SNAPSHOTS, &[RECORD])? {
            let (_, v) = item?;
            let rec = SnapshotRecord::decode(&*v)
                .map_err(|e| NnError::Corrupt(format!("undecodable snapshot record: {e}")))?;
            *st.taken.entry(rec.dir).or_default() += 1;
            let l = st.latest.entry(rec.dir).or_default();
            *l = (*l).max(rec.id);
            st.by_id.insert(rec.id, rec);
        }
        *self
            .snapshots
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(st);
        Ok(())
    }

    pub fn snap_state(&self) -> Arc<SnapState> {
        self.snapshots
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Refuses callers other than the superuser (HDFS's message).
    pub(in crate::namespace) fn superuser_only(caller: &Caller) -> Result<()> {
        if caller.is_super {
            Ok(())
        } else {
            Err(NnError::AccessDenied(format!(
                "Access denied for user {}. Superuser privilege is required",
                caller.user()
            )))
        }
    }

    /// The directory at `path`, for a snapshot call.
    fn snapshot_dir(&self, caller: &Caller, path: &str) -> Result<Inode> {
        Ok(self.resolve_dir(caller, path)?.1)
    }

    /// A snapshottable directory its owner (or the superuser) acts on.
    fn owned_snapshottable(&self, caller: &Caller, path: &str) -> Result<Inode> {
        let dir = self.snapshot_dir(caller, path)?;
        if !self.snap_state().is_snapshottable(dir.id) {
            return Err(NnError::Snapshot(format!(
                "Directory is not a snapshottable directory: {path}"
            )));
        }
        caller.check_owner(&dir, path)?;
        Ok(dir)
    }

    /// The path of inode `id` now (`at` None) or at snapshot `at`, relative
    /// to directory `top` ("" for `top` itself); None when it is not below
    /// `top` then.
    pub(super) fn path_below(&self, id: u64, top: u64, at: Option<u64>) -> Result<Option<String>> {
        let mut names = Vec::new();
        let mut cur = id;
        while cur != top {
            if cur == ROOT_ID || names.len() > granary_common::defaults::MAX_PATH_DEPTH {
                return Ok(None);
            }
            let Some(inode) = self.inode_at(cur, at)? else {
                return Ok(None);
            };
            // The entry must lead here too (an inode's parent field alone
            // may be older than the entry that names it).
            if self.lookup_at(inode.parent, &inode.name, at)? != Some(cur) {
                return Ok(None);
            }
            names.push(inode.name);
            cur = inode.parent;
        }
        names.reverse();
        Ok(Some(names.join("/")))
    }

    /// Lets snapshots be taken of directory `path` (superuser only). As
    /// HDFS, snapshottable directories do not nest.
    pub fn allow_snapshot(&self, caller: &Caller, path: &str) -> Result<Written<()>> {
        Self::superuser_only(caller)?;
        self.mutate(|batch| {
            let (r, dir) = self.resolve_dir(caller, path)?;
            let st = self.snap_state();
            if st.is_snapshottable(dir.id) {
                return Ok(());
            }
            for (i, a) in r.inodes[..r.inodes.len() - 1].iter().enumerate() {
                if st.is_snapshottable(a.id) {
                    return Err(NnError::Snapshot(format!(
                        "Nested snapshottable directories not allowed: path={path}, the ancestor {} is already a snapshottable directory.",
                        r.prefix(i)
                    )));
                }
            }
            for other in &st.snapshottable {
                if self.path_below(*other, dir.id, None)?.is_some() {
                    let below = self.path_below(*other, ROOT_ID, None)?.unwrap_or_default();
                    return Err(NnError::Snapshot(format!(
                        "Nested snapshottable directories not allowed: path={path}, the subdirectory /{below} is already a snapshottable directory."
                    )));
                }
            }
            batch.put_cf(CF_SNAPSHOTS, snapshottable_key(dir.id), []);
            Ok(())
        })
    }

    /// Takes back [`Namespace::allow_snapshot`]; refused while the
    /// directory has snapshots.
    pub fn disallow_snapshot(&self, caller: &Caller, path: &str) -> Result<Written<()>> {
        Self::superuser_only(caller)?;
        self.mutate(|batch| {
            let dir = self.snapshot_dir(caller, path)?;
            let st = self.snap_state();
            if st.has_snapshots(dir.id) {
                return Err(NnError::Snapshot(format!(
                    "The directory {path} has snapshot(s). Please redo the operation after removing all the snapshots."
                )));
            }
            if !st.is_snapshottable(dir.id) {
                return Ok(());
            }
            batch.delete_cf(CF_SNAPSHOTS, snapshottable_key(dir.id));
            Ok(())
        })
    }

    /// Takes a snapshot of `path` named `name` (by default HDFS's
    /// `sYYYYMMDD-HHMMSS.mmm`); returns its path.
    pub fn create_snapshot(
        &self,
        caller: &Caller,
        path: &str,
        name: Option<&str>,
    ) -> Result<Written<String>> {
        self.mutate(|batch| {
            let dir = self.owned_snapshottable(caller, path)?;
            let now = now_ms();
            let name = name.map_or_else(|| default_name(now), str::to_string);
            check_name(&name)?;
            if self.db.get_pinned_cf(self.cf(CF_SNAPSHOTS)?, record_key(dir.id, &name))?.is_some() {
                return Err(NnError::Snapshot(format!(
                    "Failed to add snapshot: there is already a snapshot with the same name \"{name}\"."
                )));
            }
            let count = self.snap_state().taken.get(&dir.id).copied().unwrap_or(0);
            if count >= MAX_SNAPSHOTS {
                return Err(NnError::Snapshot(format!(
                    "Failed to add snapshot: there are already {count} snapshot(s) and the snapshot limit is {MAX_SNAPSHOTS}"
                )));
            }
            let id = self
                .db
                .get_cf(self.cf(CF_META)?, META_NEXT_SNAPSHOT)?
                .as_deref()
                .and_then(decode_u64)
                .unwrap_or(1);
            batch.put_cf(CF_META, META_NEXT_SNAPSHOT, id_key(id + 1));
            let rec = SnapshotRecord {
                id,
                dir: dir.id,
                name: name.clone(),
                ctime: now,
                watermark: self.next_inode.load(std::sync::atomic::Ordering::SeqCst),
            };
            batch.put_cf(CF_SNAPSHOTS, record_key(dir.id, &name), rec.encode_to_vec());
            // A retried call finds its snapshot (its name may be the default).
            super::retry::set_value(id);
            Ok(snapshot_path(path, &name))
        })
    }

    pub(in crate::namespace) fn record(&self, dir: u64, name: &str) -> Result<Option<SnapshotRecord>> {
        self.db
            .get_pinned_cf(self.cf(CF_SNAPSHOTS)?, record_key(dir, name))?
            .map(|v| {
                SnapshotRecord::decode(&*v)
                    .map_err(|e| NnError::Corrupt(format!("undecodable snapshot record: {e}")))
            })
            .transpose()
    }

    /// Renames snapshot `from` of `path` to `to`.
    pub fn rename_snapshot(&self, caller: &Caller, path: &str, from: &str, to: &str) -> Result<Written<()>> {
        self.mutate(|batch| {
            let dir = self.owned_snapshottable(caller, path)?;
            check_name(to)?;
            let Some(mut rec) = self.record(dir.id, from)? else {
                return Err(NnError::Snapshot(format!(
                    "The snapshot {from} does not exist for directory {path}"
                )));
            };
            if from == to {
                return Ok(());
            }
            if self.record(dir.id, to)?.is_some() {
                return Err(NnError::Snapshot(format!(
                    "The snapshot {to} already exists for directory {path}"
                )));
            }
            batch.delete_cf(CF_SNAPSHOTS, record_key(dir.id, from));
            rec.name = to.to_string();
            batch.put_cf(CF_SNAPSHOTS, record_key(dir.id, to), rec.encode_to_vec());
            Ok(())
        })
    }

    /// Deletes snapshot `name` of `path`; returns the blocks nothing holds
    /// any more (to delete from datanodes once the change is durable).
    pub fn delete_snapshot(
        &self,
        caller: &Caller,
        path: &str,
        name: &str,
    ) -> Result<Written<Vec<BlockRecord>>> {
        self.mutate(|batch| {
            let dir = self.owned_snapshottable(caller, path)?;
            let Some(rec) = self.record(dir.id, name)? else {
                return Err(NnError::Snapshot(format!(
                    "Cannot delete snapshot {name} from path {path}: the snapshot does not exist."
                )));
            };
            let st = self.snap_state();
            let snapshots = self.cf(CF_SNAPSHOTS)?;
            let mut dropped: Vec<Inode> = Vec::new();
            let mut index = vec![versions::KEPT_INDEX];
            index.extend_from_slice(&rec.id.to_be_bytes());
            for item in self.prefix_iter(CF_SNAPSHOTS, &index)? {
                let (ik, _) = item?;
                let Some((_, cf, key)) = versions::parse_index_key(&ik) else {
                    continue;
                };
                let kk = versions::kept_key(cf, key, rec.id);
                batch.delete_cf(CF_SNAPSHOTS, &ik);
                let Some(value) = self.db.get_cf(snapshots, &kk)? else {
                    continue;
                };
                batch.delete_cf(CF_SNAPSHOTS, &kk);
                // An earlier snapshot that reads this value (it kept none of
                // its own for the key since) and holds the key gets it.
                if let Some(to) = self.heir(&st, rec.id, cf, key)? {
                    batch.put_cf(CF_SNAPSHOTS, versions::kept_key(cf, key, to), &value);
                    batch.put_cf(CF_SNAPSHOTS, versions::index_key(to, cf, key), []);
                    continue;
                }
                if cf == versions::INODES
                    && let Some(bytes) = versions::decode_kept(&value)?
                {
                    let inode = super::decode_inode(&bytes)?;
                    if !inode.blocks.is_empty() {
                        dropped.push(inode);
                    }
                }
            }
            let overlay = versions::KeptOverlay::of(batch);
            let mut freed = Vec::new();
            let mut seen = HashSet::new();
            for inode in dropped {
                let mut held: HashSet<u64> = self
                    .kept_versions(inode.id, Some(&overlay))?
                    .iter()
                    .flat_map(|i| i.blocks.iter().map(|b| b.id))
                    .collect();
                if let Some(now) = self.get_inode(inode.id)? {
                    held.extend(now.blocks.iter().map(|b| b.id));
                }
                for mut b in inode.blocks {
                    if held.contains(&b.id) || !seen.insert(b.id) {
                        continue;
                    }
                    // Deleted at the stamp the namespace knows (it may have
                    // moved on since the value was kept).
                    if let Some(o) = self.block_owner(b.id)?.filter(|o| o.inode == inode.id) {
                        b.generation_stamp = o.gs;
                        batch.delete_cf(CF_BLOCKS, id_key(b.id));
                        freed.push(b);
                    }
                }
            }
            batch.delete_cf(CF_SNAPSHOTS, record_key(dir.id, name));
            Ok(freed)
        })
    }

    /// Which snapshot a kept value of `key` (column family `cf`) kept
    /// under snapshot `id` passes to when `id` is deleted: the latest
    /// snapshot before `id` that reads it (no kept value of the key lies
    /// between them) and holds the key (it existed then, below that
    /// snapshot's directory). None: no snapshot needs it any more.
    fn heir(&self, st: &SnapState, id: u64, cf: u8, key: &[u8]) -> Result<Option<u64>> {
        let Some(owner) = decode_u64(key) else {
            return Ok(None);
        };
        // The key's latest kept value before `id`: snapshots up to it read that one.
        let mut floor = 0;
        for item in self.prefix_iter(CF_SNAPSHOTS, &versions::kept_prefix(cf, key))? {
            let (k, _) = item?;
            if let Some(s) = k.len().checked_sub(8).and_then(|at| decode_u64(&k[at..]))
                && s < id
            {
                floor = floor.max(s);
            }
        }
        for (sid, rec) in st.by_id.range(floor + 1..id).rev() {
            if owner >= rec.watermark {
                continue;
            }
            if self.path_below(owner, rec.dir, Some(*sid))?.is_some() {
                return Ok(Some(*sid));
            }
        }
        Ok(None)
    }

    /// The snapshots of directory `dir`, in name order.
    pub fn snapshots_of(&self, dir: u64) -> Result<Vec<SnapshotRecord>> {
        let mut prefix = vec![RECORD];
        prefix.extend_from_slice(&dir.to_be_bytes());
        let mut out = Vec::new();
        for item in self.prefix_iter(CF_SNAPSHOTS, &prefix)? {
            let (_, v) = item?;
            out.push(
                SnapshotRecord::decode(&*v)
                    .map_err(|e| NnError::Corrupt(format!("undecodable snapshot record: {e}")))?,
            );
        }
        Ok(out)
    }

    /// The snapshottable directories `caller` owns (all of them for the
    /// superuser), in path order.
    pub fn snapshottable_dirs(&self, caller: &Caller) -> Result<Vec<SnapshottableDir>> {
        let st = self.snap_state();
        let mut out = Vec::new();
        for id in &st.snapshottable {
            let Some(inode) = self.get_inode(*id)? else {
                continue;
            };
            if !caller.acts_as(&inode.owner) {
                continue;
            }
            let Some(rel) = self.path_below(*id, ROOT_ID, None)? else {
                continue;
            };
            out.push(SnapshottableDir {
                path: format!("/{rel}"),
                snapshots: st.taken.get(id).copied().unwrap_or(0),
                inode,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Refuses to move directory `node` to `dst` (resolved as `rd`) when
    /// that would put a snapshottable directory below another one.
    pub(in crate::namespace) fn check_snapshot_nesting(
        &self,
        node: &Inode,
        rd: &super::Resolved,
        src: &str,
        dst: &str,
    ) -> Result<()> {
        let st = self.snap_state();
        if st.snapshottable.is_empty() {
            return Ok(());
        }
        let parents = &rd.inodes[..rd.comps.len().min(rd.inodes.len())];
        let Some(above) = parents.iter().find(|i| st.is_snapshottable(i.id)) else {
            return Ok(());
        };
        for s in &st.snapshottable {
            if self.path_below(*s, node.id, None)?.is_some() {
                return Err(NnError::Snapshot(format!(
                    "Nested snapshottable directories not allowed: cannot rename {src} to {dst}: {src} is or holds a snapshottable directory and {dst} would be below the snapshottable directory {:?}",
                    above.name
                )));
            }
        }
        Ok(())
    }

    /// A deleted directory is no longer snapshottable.
    pub(in crate::namespace) fn forget_snapshottable(&self, batch: &mut Effects, dir: u64) {
        if self.snap_state().is_snapshottable(dir) {
            batch.delete_cf(CF_SNAPSHOTS, snapshottable_key(dir));
        }
    }

    /// Refuses to delete (or replace) directory `dir` at `path` while it has snapshots.
    pub(super) fn check_no_snapshots(&self, dir: u64, path: &dyn std::fmt::Display) -> Result<()> {
        if self.snap_state().has_snapshots(dir) {
            return Err(NnError::Snapshot(format!(
                "The directory {path} cannot be deleted since {path} is snapshottable and already has snapshots"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod usage_tests;
