//! `snapshot-diff`: what changed under a snapshottable directory between
//! two of its snapshots, or a snapshot and now. Worked out from the keys
//! kept between the two (every key changed in between has a kept value
//! under a snapshot taken in between), not from a walk of the tree.

use std::collections::{BTreeSet, HashMap, HashSet};

use rocksdb::{Direction, IteratorMode, ReadOptions};

use super::super::Namespace;
use super::versions::{self, DIRENTS, INODES, KEPT_INDEX};
use crate::error::{NnError, Result};
use crate::inode::*;
use crate::permission::{Access, Caller};

/// HDFS's diff report kinds, in its letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiffKind {
    /// `M`: the file's or directory's content or attributes changed.
    Modify,
    /// `+`
    Create,
    /// `-`
    Delete,
    /// `R`: moved within the directory.
    Rename,
}

/// One line of a diff; paths are relative to the snapshottable directory
/// ("" is the directory itself).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DiffEntry {
    pub path: String,
    pub kind: DiffKind,
    /// Where a renamed entry went.
    pub target: Option<String>,
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// What a diff compares of an inode: not its access time, nor its place
/// (a move is a rename), nor a quota's usage.
fn comparable(mut i: Inode) -> Inode {
    i.atime = 0;
    i.name.clear();
    i.parent = 0;
    i.quota = None;
    i
}

impl Namespace {
    /// Which snapshot `name` of directory `dir` is; "" or "." is now (None).
    fn version(&self, dir: u64, path: &str, name: &str) -> Result<Option<u64>> {
        if name.is_empty() || name == "." {
            return Ok(None);
        }
        match self.record(dir, name)? {
            Some(r) => Ok(Some(r.id)),
            None => Err(NnError::Snapshot(format!(
                "Cannot find the snapshot of directory {path} with name {name}"
            ))),
        }
    }

    /// Fails unless `caller` may list directory `dir` as it is at `at`
    /// (`rel`: its path below the snapshottable directory `top`).
    fn check_listable(
        &self,
        caller: &Caller,
        dir: u64,
        at: Option<u64>,
        top: &str,
        rel: &str,
        checked: &mut HashSet<(u64, Option<u64>)>,
    ) -> Result<()> {
        if !checked.insert((dir, at)) {
            return Ok(());
        }
        let Some(inode) = self.inode_at(dir, at)? else {
            return Ok(());
        };
        let shown = if rel.is_empty() {
            top.to_string()
        } else {
            format!("{top}/{rel}")
        };
        caller.check(&inode, Access::ReadExecute, shown)
    }

    /// What changed under snapshottable directory `path` from snapshot
    /// `from` to snapshot `to` ("." for now), HDFS's `snapshotDiff`.
    pub fn snapshot_diff(&self, caller: &Caller, path: &str, from: &str, to: &str) -> Result<Vec<DiffEntry>> {
        let dir = self.snapshot_dir(caller, path)?;
        if !self.snap_state().is_snapshottable(dir.id) {
            return Err(NnError::Snapshot(format!(
                "Directory is not a snapshottable directory: {path}"
            )));
        }
        caller.check(&dir, Access::ReadExecute, path)?;
        let (a, b) = (self.version(dir.id, path, from)?, self.version(dir.id, path, to)?);
        if a == b {
            return Ok(Vec::new());
        }
        // Kept keys of the snapshots from the earlier version on, up to
        // (not including) the later one.
        let (lo, hi) = match (a, b) {
            (Some(x), Some(y)) => (x.min(y), Some(x.max(y))),
            (Some(x), None) | (None, Some(x)) => (x, None),
            (None, None) => return Ok(Vec::new()),
        };
        let mut keys: BTreeSet<(u8, Vec<u8>)> = BTreeSet::new();
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(vec![KEPT_INDEX + 1]);
        let mut start = vec![KEPT_INDEX];
        start.extend_from_slice(&lo.to_be_bytes());
        for item in self.db.iterator_cf_opt(
            self.cf(CF_SNAPSHOTS)?,
            ro,
            IteratorMode::From(&start, Direction::Forward),
        ) {
            let (k, _) = item?;
            let Some((snap, cf, key)) = versions::parse_index_key(&k) else {
                continue;
            };
            if hi.is_some_and(|h| snap >= h) {
                break;
            }
            keys.insert((cf, key.to_vec()));
        }

        let mut listable: HashSet<(u64, Option<u64>)> = HashSet::new();
        let mut created: HashMap<u64, String> = HashMap::new();
        let mut deleted: HashMap<u64, String> = HashMap::new();
        let mut modified: Vec<(u64, String)> = Vec::new();
        for (cf, key) in keys {
            match cf {
                DIRENTS => {
                    let (Some(parent), Some(name)) = (
                        decode_u64(&key),
                        key.get(8..).and_then(|n| std::str::from_utf8(n).ok()),
                    ) else {
                        continue;
                    };
                    let (pa, pb) = (
                        self.path_below(parent, dir.id, a)?,
                        self.path_below(parent, dir.id, b)?,
                    );
                    let ca = match &pa {
                        Some(_) => self.lookup_at(parent, name, a)?,
                        None => None,
                    };
                    let cb = match &pb {
                        Some(_) => self.lookup_at(parent, name, b)?,
                        None => None,
                    };
                    if ca == cb {
                        continue;
                    }
                    // As HDFS: the caller must be able to list every
                    // directory whose entries the diff names.
                    if let (Some(x), Some(p)) = (ca, &pa) {
                        self.check_listable(caller, parent, a, path, p, &mut listable)?;
                        deleted.insert(x, join(p, name));
                    }
                    if let (Some(y), Some(p)) = (cb, &pb) {
                        self.check_listable(caller, parent, b, path, p, &mut listable)?;
                        created.insert(y, join(p, name));
                    }
                }
                INODES => {
                    let Some(id) = decode_u64(&key) else {
                        continue;
                    };
                    let (Some(ia), Some(ib)) = (self.inode_at(id, a)?, self.inode_at(id, b)?) else {
                        continue;
                    };
                    if comparable(ia) == comparable(ib.clone()) || self.path_below(id, dir.id, a)?.is_none() {
                        continue;
                    }
                    if let Some(p) = self.path_below(id, dir.id, b)? {
                        if id != dir.id {
                            let parent_path = p.rsplit_once('/').map_or("", |(d, _)| d);
                            self.check_listable(caller, ib.parent, b, path, parent_path, &mut listable)?;
                        }
                        modified.push((id, p));
                    }
                }
                _ => {}
            }
        }
        let mut out = BTreeSet::new();
        for (id, from) in &deleted {
            match created.remove(id) {
                Some(to) => out.insert(DiffEntry {
                    path: from.clone(),
                    kind: DiffKind::Rename,
                    target: Some(to),
                }),
                None => out.insert(DiffEntry {
                    path: from.clone(),
                    kind: DiffKind::Delete,
                    target: None,
                }),
            };
        }
        for (_, to) in created {
            out.insert(DiffEntry {
                path: to,
                kind: DiffKind::Create,
                target: None,
            });
        }
        for (_, p) in modified {
            out.insert(DiffEntry {
                path: p,
                kind: DiffKind::Modify,
                target: None,
            });
        }
        Ok(out.into_iter().collect())
    }
}
