//! What snapshots alone hold, counted as HDFS counts it: a file deleted,
//! overwritten or cut short while a snapshot keeps it still uses its name
//! and its space, in quotas and in content summaries, until the last
//! snapshot that holds it is deleted.
//!
//! Nothing is stored for it: what one inode's kept values hold beyond its
//! current value ([`Held`]) follows from the values themselves, and it
//! counts under one snapshottable directory, that of the latest snapshot
//! keeping a value of the inode. A mutation compares, for each inode whose
//! current or kept values it changes, what is held before and after, and
//! the quota'd directories above the directory it counts under are charged
//! the difference ([`Namespace::held_changes`]). A snapshottable
//! directory's whole hold ([`Namespace::held_in`]) is summed from its
//! snapshots' kept values when a walk needs it (a quota set on an
//! ancestor, a directory moved between quota'd trees, a content summary).

use std::collections::{BTreeSet, HashMap};

use super::super::{Effects, Namespace, decode_inode};
use super::SnapState;
use super::versions::{INODES, KEPT_INDEX, KeptOverlay, parse_index_key};
use crate::error::Result;
use crate::inode::*;

/// What the kept values of inodes hold beyond their current values.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Files and directories that are gone now but kept.
    pub files: u64,
    pub dirs: u64,
    /// Bytes of blocks (or of the part of blocks) no current file holds.
    pub length: u64,
    /// The same bytes times the replication they were kept at.
    pub space: u64,
}

impl Held {
    /// (names, bytes) against quotas.
    pub fn charge(&self) -> (u64, u64) {
        (self.files + self.dirs, self.space)
    }

    pub fn add(&mut self, other: Held) {
        self.files += other.files;
        self.dirs += other.dirs;
        self.length = self.length.saturating_add(other.length);
        self.space = self.space.saturating_add(other.space);
    }
}

/// What an inode's kept values (snapshot id, value) hold beyond its current
/// value, and the snapshottable directory that counts it: that of the
/// latest snapshot keeping a value. None when nothing keeps it.
///
/// A block counts at the largest length and replication any value gives
/// it, less what the current value charges for it: an append after a
/// snapshot adds nothing held, a truncation or a lower replication holds
/// the difference, a deleted file holds all of it and its name. A block
/// being written counts in the current value at a whole block (as quotas
/// charge it), in a kept value at the length it had.
pub(super) fn held_of(st: &SnapState, current: Option<&Inode>, kept: &[(u64, Inode)]) -> Option<(u64, Held)> {
    let (snap, newest) = kept.iter().max_by_key(|(s, _)| *s)?;
    let dir = st.by_id.get(snap)?.dir;
    let mut held = Held::default();
    if current.is_none() {
        if newest.is_dir {
            held.dirs = 1;
        } else {
            held.files = 1;
        }
    }
    let mut most: HashMap<u64, (u64, u64)> = HashMap::new();
    for (_, k) in kept {
        for b in &k.blocks {
            let e = most.entry(b.id).or_default();
            e.0 = e.0.max(b.num_bytes);
            e.1 = e.1.max(b.num_bytes.saturating_mul(u64::from(k.replication)));
        }
    }
    let now: HashMap<u64, (u64, u64)> = current
        .iter()
        .flat_map(|c| {
            c.blocks.iter().map(|b| {
                let charged = c.charged_bytes(b).saturating_mul(u64::from(c.replication));
                (b.id, (b.num_bytes, charged))
            })
        })
        .collect();
    for (id, (len, space)) in most {
        let (len_now, space_now) = now.get(&id).copied().unwrap_or_default();
        held.length = held.length.saturating_add(len.saturating_sub(len_now));
        held.space = held.space.saturating_add(space.saturating_sub(space_now));
    }
    Some((dir, held))
}

/// A change of what snapshots hold: charged (+1) or taken off (-1) the
/// quota'd directories above directory `dir`.
pub(crate) struct HeldChange {
    pub dir: u64,
    pub charge: (u64, u64),
    pub sign: i64,
}

impl Namespace {
    /// Everything snapshottable directory `dir`'s snapshots hold that no
    /// current value does (and that counts under `dir`), as stored.
    pub(crate) fn held_in(&self, dir: u64) -> Result<Held> {
        let st = self.snap_state();
        let mut total = Held::default();
        if !st.has_snapshots(dir) {
            return Ok(total);
        }
        let mut ids = BTreeSet::new();
        for rec in st.by_id.values().filter(|r| r.dir == dir) {
            let mut prefix = vec![KEPT_INDEX];
            prefix.extend_from_slice(&rec.id.to_be_bytes());
            prefix.push(INODES);
            for item in self.prefix_iter(CF_SNAPSHOTS, &prefix)? {
                let (k, _) = item?;
                if let Some(id) = parse_index_key(&k).and_then(|(_, _, key)| decode_u64(key)) {
                    ids.insert(id);
                }
            }
        }
        for id in ids {
            let current = self.get_inode(id)?;
            let kept = self.kept_inodes(id, None)?;
            if let Some((d, held)) = held_of(&st, current.as_ref(), &kept)
                && d == dir
            {
                total.add(held);
            }
        }
        Ok(total)
    }

    /// How `effects` change what snapshots hold: for each inode whose
    /// current or kept values they change, what was held (and where it
    /// counted) before, and what is after.
    pub(crate) fn held_changes(&self, effects: &Effects) -> Result<Vec<HeldChange>> {
        let st = self.snap_state();
        let overlay = KeptOverlay::of(effects);
        if !st.any() && overlay.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: BTreeSet<u64> = overlay.ids().collect();
        ids.extend(
            effects
                .final_values(CF_INODES)
                .into_iter()
                .filter_map(|(k, _)| decode_u64(k)),
        );
        // Values are kept only of inodes older than a snapshot: a newer one
        // has none, and nothing is held of it.
        let watermark = st.latest().map_or(0, |r| r.watermark);
        let mut out = Vec::new();
        for id in ids.into_iter().filter(|id| *id < watermark) {
            let (kept_before, kept_after) = self.kept_inodes_changed(id, &overlay)?;
            if kept_before.is_empty() && kept_after.is_empty() {
                continue;
            }
            let stored = self.get_inode(id)?;
            let before = held_of(&st, stored.as_ref(), &kept_before);
            let current = match effects.last_change(CF_INODES, &id_key(id)) {
                Some(v) => v.map(decode_inode).transpose()?,
                None => stored,
            };
            let after = held_of(&st, current.as_ref(), &kept_after);
            if before == after {
                continue;
            }
            for (was, sign) in [(before, -1), (after, 1)] {
                if let Some((dir, held)) = was
                    && held.charge() != (0, 0)
                {
                    out.push(HeldChange {
                        dir,
                        charge: held.charge(),
                        sign,
                    });
                }
            }
        }
        Ok(out)
    }
}
