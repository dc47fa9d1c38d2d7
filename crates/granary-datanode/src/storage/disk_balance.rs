//! The disk balancer (HDFS's `hdfs diskbalancer`): moves finalized
//! replicas from this datanode's fullest data dirs to its emptiest until
//! every one is within a threshold of the mean utilization, e.g. after a
//! disk was added.
//!
//! A move copies the replica's files into the other volume's finalized
//! directory (under temporary names, fsynced, then renamed: meta first, as
//! a finalize does), switches the replica map to the new volume only if
//! the replica is still the one copied (same generation, same volume; an
//! append, a recovery or a delete in the meantime wins and the copy is
//! dropped), and only then removes the old files. A crash leaves at worst
//! a second identical copy, which the next start indexes instead of the
//! first. Readers holding the old files open read on.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::{Replica, Storage, StorageError, data_name, io, meta_name};

/// What a disk balancing run did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DiskBalance {
    pub moved: u64,
    pub bytes: u64,
    /// Replicas that could not be moved (left where they were).
    pub failed: u64,
    /// Each working volume's utilization afterwards (a fraction).
    pub utilization: Vec<(String, f64)>,
}

/// Gives up after this many moves in one run (a bound, not a goal).
const MAX_MOVES: u64 = 1_000_000;

impl Storage {
    /// Each working volume: (index, used, capacity).
    fn volume_usage(&self) -> Vec<(usize, u64, u64)> {
        let replicas = self.replicas.read();
        let mut used = vec![0u64; self.volumes.len()];
        for r in replicas.values() {
            if let Some(u) = used.get_mut(r.volume) {
                *u += r.len;
            }
        }
        drop(replicas);
        self.volumes
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_failed())
            .filter_map(|(i, v)| {
                let (cap, _) = v.space()?;
                let mut cap = cap.saturating_sub(self.reserved);
                if self.capacity_limit > 0 {
                    cap = cap.min(self.capacity_limit);
                }
                (cap > 0).then_some((i, used[i], cap))
            })
            .collect()
    }

    /// Moves replicas between volumes until each is within `threshold` (a
    /// fraction) of the mean utilization, at most `rate` bytes per second
    /// (0: unpaced), stopping early when `stop` says so.
    pub fn balance_volumes(
        &self,
        threshold: f64,
        rate: u64,
        stop: &dyn Fn() -> bool,
    ) -> Result<DiskBalance, StorageError> {
        let mut out = DiskBalance::default();
        let started = std::time::Instant::now();
        // Each pass plans a batch between the fullest and the emptiest dir
        // from one look at the replica map, then moves it.
        while out.moved < MAX_MOVES && !stop() {
            let usage = self.volume_usage();
            if usage.len() < 2 {
                break;
            }
            let total_used: u64 = usage.iter().map(|u| u.1).sum();
            let total_cap: u64 = usage.iter().map(|u| u.2).sum();
            let mean = total_used as f64 / total_cap as f64;
            let util = |&(_, used, cap): &(usize, u64, u64)| used as f64 / cap as f64;
            let (Some(&src), Some(&dst)) = (
                usage.iter().max_by(|a, b| util(a).total_cmp(&util(b))),
                usage.iter().min_by(|a, b| util(a).total_cmp(&util(b))),
            ) else {
                break;
            };
            if util(&src) - mean <= threshold && mean - util(&dst) <= threshold {
                break;
            }
            let batch = self.plan(src, dst, mean, threshold);
            let mut moved_any = false;
            for (id, r) in batch {
                if stop() {
                    break;
                }
                match self.move_replica(id, r, dst.0) {
                    Ok(true) => {
                        moved_any = true;
                        out.moved += 1;
                        out.bytes += r.len;
                    }
                    Ok(false) => {}
                    // One replica's trouble (a bad sector, a full disk) does
                    // not end the run; it stays where it is.
                    Err(e) => {
                        tracing::warn!(block_id = id, error = %e, "disk balancer could not move a replica; it stays");
                        out.failed += 1;
                    }
                }
                if rate > 0 {
                    // Paced: the run never gets ahead of `rate`.
                    let due = std::time::Duration::from_secs_f64(out.bytes as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
            if !moved_any {
                break;
            }
        }
        out.utilization = self
            .volume_usage()
            .into_iter()
            .map(|(i, used, cap)| {
                (
                    self.volumes[i].root.display().to_string(),
                    used as f64 / cap as f64,
                )
            })
            .collect();
        Ok(out)
    }

    /// Replicas to move from `src` to `dst` ((volume, used, capacity)
    /// each), largest first, each narrowing the gap between the two, until
    /// both are within `threshold` of `mean` (at most 10,000 per batch).
    fn plan(
        &self,
        (sv, mut s_used, s_cap): (usize, u64, u64),
        (_, mut d_used, d_cap): (usize, u64, u64),
        mean: f64,
        threshold: f64,
    ) -> Vec<(u64, Replica)> {
        let mut on_src: Vec<(u64, Replica)> = {
            // The map's lock before the damage list's, as everywhere.
            let replicas = self.replicas.read();
            let damaged = self.damaged.read();
            replicas
                .iter()
                .filter(|(id, r)| r.volume == sv && !damaged.contains_key(id))
                .map(|(id, r)| (*id, *r))
                .collect()
        };
        on_src.sort_unstable_by_key(|(_, r)| std::cmp::Reverse(r.len));
        let util = |used: u64, cap: u64| used as f64 / cap as f64;
        let mut batch = Vec::new();
        for (id, r) in on_src {
            if batch.len() >= 10_000
                || (util(s_used, s_cap) - mean <= threshold && mean - util(d_used, d_cap) <= threshold)
            {
                break;
            }
            let gap = util(s_used, s_cap) - util(d_used, d_cap);
            let after = util(s_used.saturating_sub(r.len), s_cap) - util(d_used + r.len, d_cap);
            // Only moves that narrow the gap: never back and forth.
            if after.abs() < gap {
                s_used = s_used.saturating_sub(r.len);
                d_used += r.len;
                batch.push((id, r));
            }
        }
        batch
    }

    /// Moves replica `id` (as `r`) to volume `to`; false when it changed
    /// meanwhile (the copy is dropped), or `to` has no room for it.
    fn move_replica(&self, id: u64, r: Replica, to: usize) -> Result<bool, StorageError> {
        let to_vol = &self.volumes[to];
        if to_vol
            .space()
            .is_none_or(|(_, avail)| avail < self.reserved.saturating_add(r.len).saturating_add(1 << 20))
        {
            return Ok(false);
        }
        let from_dir = self.volumes[r.volume].finalized_dir(id);
        let to_dir = to_vol.finalized_dir(id);
        std::fs::create_dir_all(&to_dir).map_err(io(&to_dir))?;
        let (data, meta) = (data_name(id), meta_name(id, r.gs));
        let tmp = |name: &str| to_dir.join(format!("{name}{MOVING}"));
        let drop_copy = || {
            for p in [tmp(&meta), tmp(&data)] {
                let _ = std::fs::remove_file(p);
            }
        };
        // Copied under temporary names, without the block's lock: readers
        // and writers of the replica go on meanwhile.
        let copied = copy_synced(&from_dir.join(&meta), &tmp(&meta))
            .and_then(|()| copy_synced(&from_dir.join(&data), &tmp(&data)));
        if let Err(e) = copied {
            drop_copy();
            // Deleted or replaced meanwhile: nothing to move.
            return if self.get(id) == Some(r) {
                Err(e)
            } else {
                Ok(false)
            };
        }
        // Switched under it: the replica is still the one copied, or the
        // copy goes.
        let _block = self.block_lock(id);
        if self.get(id) != Some(r) || self.damage(id).is_some() {
            drop_copy();
            return Ok(false);
        }
        let placed = std::fs::rename(tmp(&meta), to_dir.join(&meta))
            .and_then(|()| std::fs::rename(tmp(&data), to_dir.join(&data)))
            .and_then(|()| File::open(&to_dir).and_then(|d| d.sync_all()));
        if let Err(e) = placed {
            drop_copy();
            for p in [to_dir.join(&meta), to_dir.join(&data)] {
                let _ = std::fs::remove_file(p);
            }
            return Err(io(&to_dir)(e));
        }
        if let Some(now) = self.replicas.write().get_mut(&id) {
            now.volume = to;
        }
        for p in [from_dir.join(&data), from_dir.join(&meta)] {
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(block_id = id, path = %p.display(), error = %e, "old copy of a moved replica not removed");
            }
        }
        Ok(true)
    }
}

/// The suffix of a replica's files being copied to another data dir; a
/// start removes any a crash left.
pub(super) const MOVING: &str = ".moving";

/// Copies `from` to a new file `to` and fsyncs it.
fn copy_synced(from: &Path, to: &Path) -> Result<(), StorageError> {
    let mut src = File::open(from).map_err(io(from))?;
    let mut dst = File::create(to).map_err(io(to))?;
    std::io::copy(&mut src, &mut dst).map_err(io(to))?;
    dst.flush().map_err(io(to))?;
    dst.sync_all().map_err(io(to))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{open_with, write};
    use super::*;
    use std::path::PathBuf;

    /// Volumes of 4 MiB each (they share the test's file system).
    fn open(dirs: &[PathBuf]) -> Storage {
        let cfg = crate::config::StorageConfig {
            capacity_bytes: 4 << 20,
            ..Default::default()
        };
        open_with(dirs, &cfg)
    }

    #[test]
    fn replicas_move_to_an_added_disk_until_both_are_near_the_mean() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let s = open(std::slice::from_ref(&a));
        let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
        for id in 1..=20u64 {
            write(&s, id, 1000 + id, &data).expect("write");
        }
        drop(s);
        // A second disk is added; everything is on the first.
        let s = open(&[a.clone(), b.clone()]);
        let before = s.volume_usage();
        assert_eq!(before[1].1, 0);
        let done = s.balance_volumes(0.01, 0, &|| false).expect("balance");
        assert!(done.moved >= 9 && done.moved <= 11, "{done:?}");
        assert_eq!(done.utilization.len(), 2);
        let after = s.volume_usage();
        assert!(after[0].1.abs_diff(after[1].1) <= 64 * 1024, "{after:?}");
        // Every replica reads back whole, from wherever it is, also after a restart.
        drop(s);
        let s = open(&[a, b]);
        for id in 1..=20u64 {
            let r = s.open_read(id, 1000 + id).expect("readable");
            let (bytes, _) = r.read(0, data.len()).expect("read");
            assert_eq!(bytes, data, "block {id}");
        }
        assert_eq!(s.replica_count(), 20);
    }
}
