//! Reads over many entries: listings, content summaries, block ranges, and
//! whole-namespace walks (start-up scan, block lookups, consistency check).

use rocksdb::{Direction, IteratorMode, ReadOptions};

use super::resolve::SubtreePaths;
use super::{ContentSummary, Listing, Namespace, StartupScan, decode_inode};
use crate::error::{NnError, Result};
use crate::inode::*;
use crate::permission::{Access, Caller};

impl Namespace {
    /// One page of `path`'s entries after `start_after`. A file lists as itself.
    pub fn list(&self, caller: &Caller, path: &str, start_after: &str, limit: u32) -> Result<Listing> {
        let r = self.resolve_view(path)?;
        self.check_traverse(caller, &r)?;
        let dir = r.existing()?;
        if !dir.is_dir {
            return Ok(Listing {
                entries: vec![dir.to_status()],
                has_more: false,
            });
        }
        caller.check(dir, Access::ReadExecute, path)?;
        let limit = if limit == 0 || limit > self.cfg.listing_limit {
            self.cfg.listing_limit
        } else {
            limit
        } as usize;
        if let Some(of) = r.snapshots_of {
            return self.list_snapshots(of, dir, start_after, limit);
        }
        if let Some(snap) = r.at {
            let (children, has_more) = self.children_at(dir.id, snap, start_after, limit)?;
            let mut entries = Vec::with_capacity(children.len());
            for (name, id) in children {
                let child = self.inode_at(id, Some(snap))?.ok_or_else(|| {
                    NnError::Corrupt(format!("snapshot entry {name:?} points at missing inode {id}"))
                })?;
                entries.push(child.to_status());
            }
            return Ok(Listing { entries, has_more });
        }
        let prefix = id_key(dir.id);
        let start = dirent_key(dir.id, start_after);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(id_key(dir.id + 1).to_vec());
        let snapshot = self.db.snapshot();
        ro.set_snapshot(&snapshot);
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_DIRENTS)?,
            ro,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut entries = Vec::new();
        let mut has_more = false;
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let name = &k[8..];
            if !start_after.is_empty() && name == start_after.as_bytes() {
                continue;
            }
            if entries.len() == limit {
                has_more = true;
                break;
            }
            let id = decode_u64(&v).ok_or_else(|| NnError::Corrupt("bad directory entry".into()))?;
            let child = match snapshot.get_cf(self.cf(CF_INODES)?, id_key(id))? {
                Some(b) => decode_inode(&b)?,
                None => return Err(NnError::Corrupt(format!("entry points at missing inode {id}"))),
            };
            entries.push(child.to_status());
        }
        Ok(Listing { entries, has_more })
    }

    /// `DIR/.snapshot`: each snapshot as a directory (the snapshottable
    /// directory's attributes, the snapshot's time).
    fn list_snapshots(&self, dir: u64, listing: &Inode, start_after: &str, limit: usize) -> Result<Listing> {
        let mut entries = Vec::new();
        let mut has_more = false;
        for rec in self.snapshots_of(dir)? {
            if rec.name.as_str() <= start_after {
                continue;
            }
            if entries.len() == limit {
                has_more = true;
                break;
            }
            let mut top = self
                .inode_at(dir, Some(rec.id))?
                .unwrap_or_else(|| listing.clone());
            top.name = rec.name;
            top.mtime = rec.ctime;
            entries.push(top.to_status());
        }
        Ok(Listing { entries, has_more })
    }

    /// Ids of a directory's children, in name order.
    pub(super) fn child_ids(&self, dir: u64) -> Result<Vec<u64>> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(id_key(dir + 1).to_vec());
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_DIRENTS)?,
            ro,
            IteratorMode::From(&id_key(dir), Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (_, v) = item?;
            out.push(decode_u64(&v).ok_or_else(|| NnError::Corrupt("bad directory entry".into()))?);
        }
        Ok(out)
    }

    /// What is below `path`. As HDFS (its `subAccess`), the caller needs
    /// read and execute on every directory of the subtree, not only its top.
    pub fn content_summary(&self, caller: &Caller, path: &str) -> Result<ContentSummary> {
        let r = self.resolve_view(path)?;
        self.check_traverse(caller, &r)?;
        let top = r.existing()?.clone();
        let at = r.at;
        if r.snapshots_of.is_some() {
            return Ok(ContentSummary {
                directory_count: 1,
                ..Default::default()
            });
        }
        let mut sum = ContentSummary {
            quota: top.quota,
            ..Default::default()
        };
        let mut paths = SubtreePaths::new(path);
        let snapshots = self.snap_state();
        let mut stack = vec![(top, None)];
        while let Some((n, within)) = stack.pop() {
            if n.is_dir {
                caller.check(&n, Access::ReadExecute, paths.path(within, &n.name))?;
                sum.directory_count += 1;
                // As HDFS's (without `du -x`): what the directory's
                // snapshots alone hold counts too.
                if at.is_none() && snapshots.has_snapshots(n.id) {
                    sum.add_held(self.held_in(n.id)?);
                }
                let here = paths.enter(within, &n.name);
                // Files are counted as they are met and only directories
                // wait on the stack: a directory of a million files costs
                // one inode at a time, not a million.
                let mut add = |child: Inode| {
                    if child.is_dir {
                        stack.push((child, Some(here)));
                    } else {
                        sum.add_file(&child);
                    }
                };
                match at {
                    None => self.for_each_child(n.id, add)?,
                    // A page at a time: memory stays bounded by the page.
                    Some(snap) => {
                        let mut after = String::new();
                        loop {
                            let (page, more) = self.children_at(n.id, snap, &after, 1000)?;
                            for (name, id) in page {
                                if let Some(child) = self.inode_at(id, at)? {
                                    add(child);
                                }
                                after = name;
                            }
                            if !more {
                                break;
                            }
                        }
                    }
                }
            } else {
                sum.add_file(&n);
            }
        }
        Ok(sum)
    }

    /// Calls `f` with each child inode of directory `dir`, in name order,
    /// reading them one at a time.
    pub(super) fn for_each_child(&self, dir: u64, mut f: impl FnMut(Inode)) -> Result<()> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(id_key(dir + 1).to_vec());
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_DIRENTS)?,
            ro,
            IteratorMode::From(&id_key(dir), Direction::Forward),
        );
        for item in iter {
            let (_, v) = item?;
            let id = decode_u64(&v).ok_or_else(|| NnError::Corrupt("bad directory entry".into()))?;
            if let Some(child) = self.get_inode(id)? {
                f(child);
            }
        }
        Ok(())
    }

    /// The file and its blocks that overlap `[offset, offset + length)`, with their offsets.
    pub fn block_range(
        &self,
        caller: &Caller,
        path: &str,
        offset: u64,
        length: u64,
    ) -> Result<(Inode, Vec<(u64, BlockRecord)>)> {
        let r = self.resolve_view(path)?;
        self.check_traverse(caller, &r)?;
        let file = r.existing()?.clone();
        if file.is_dir {
            return Err(NnError::IsDirectory(path.to_string()));
        }
        caller.check(&file, Access::Read, path)?;
        let end = if length == 0 {
            u64::MAX
        } else {
            offset.saturating_add(length)
        };
        let mut out = Vec::new();
        let mut pos = 0u64;
        for b in &file.blocks {
            let b_end = pos + b.num_bytes;
            // An uncommitted last block has no known length yet; include it.
            if (b_end > offset || !b.committed) && pos < end {
                out.push((pos, b.clone()));
            }
            pos = b_end;
        }
        Ok((file, out))
    }

    /// RocksDB's estimate of how many inodes and blocks are stored: decides
    /// whether the start-up scan runs before serving or beside it.
    pub fn estimated_objects(&self) -> Result<u64> {
        let mut n = 0;
        for name in [CF_INODES, CF_BLOCKS] {
            n += self
                .db
                .property_int_value_cf(self.cf(name)?, "rocksdb.estimate-num-keys")?
                .unwrap_or(0);
        }
        Ok(n)
    }

    /// One pass over every inode for what a start needs. `stop` is asked
    /// every 64 Ki inodes and ends the walk early (incomplete) when true.
    pub fn startup_scan(&self, stop: &dyn Fn() -> bool) -> Result<StartupScan> {
        let mut scan = StartupScan::default();
        for (i, item) in self
            .db
            .iterator_cf(self.cf(CF_INODES)?, IteratorMode::Start)
            .enumerate()
        {
            if i % 65_536 == 0 && stop() {
                break;
            }
            let (_, v) = item?;
            let inode = decode_inode(&v)?;
            scan.committed_blocks += inode.blocks.iter().filter(|b| b.committed).count() as u64;
            if let (Some(uc), Some(user)) = (&inode.under_construction, inode.writer_user()) {
                scan.open_files
                    .push((inode.id, uc.client_name.clone(), user.to_string()));
            }
        }
        scan.committed_blocks += self.blocks_only_snapshots_hold()?;
        Ok(scan)
    }

    /// The file a block belongs to, the block's current generation stamp
    /// and, once committed, its length.
    pub fn block_owner(&self, block_id: u64) -> Result<Option<BlockOwner>> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_BLOCKS)?, id_key(block_id))?
            .and_then(|v| decode_block_value(&v)))
    }

    /// [`Namespace::block_owner`] for many blocks at once (a full block
    /// report), answered in `ids` order. The ids are visited in key order
    /// with one iterator: neighbouring blocks (a datanode holds runs of
    /// consecutive ids) cost an iterator step instead of a point lookup.
    pub fn block_owners(&self, ids: &[u64]) -> Result<Vec<Option<BlockOwner>>> {
        // Steps taken before falling back to a seek; a seek costs about as
        // much as a point lookup, a step a small fraction of one.
        const MAX_STEPS: usize = 8;
        let mut order: Vec<u32> = (0..ids.len() as u32).collect();
        order.sort_unstable_by_key(|&i| ids[i as usize]);
        let mut out = vec![None; ids.len()];
        let mut ro = ReadOptions::default();
        // One report reads each block once: leave the cache to the namespace.
        ro.fill_cache(false);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_BLOCKS)?, ro);
        let mut positioned = false;
        for i in order {
            let id = ids[i as usize];
            let key = id_key(id);
            let mut steps = 0;
            while positioned && it.valid() && it.key().is_some_and(|k| k < &key[..]) && steps < MAX_STEPS {
                it.next();
                steps += 1;
            }
            if !positioned || steps == MAX_STEPS {
                it.seek(key);
                positioned = true;
            }
            if !it.valid() {
                it.status()?;
                continue;
            }
            if it.key() == Some(&key[..]) {
                out[i as usize] = it.value().and_then(decode_block_value);
            }
        }
        it.status()?;
        Ok(out)
    }

    /// Every block of every file, for rebuilding in-memory block state at start.
    pub fn for_each_block(&self, mut f: impl FnMut(u64, u64, u64)) -> Result<()> {
        for item in self.db.iterator_cf(self.cf(CF_BLOCKS)?, IteratorMode::Start) {
            let (k, v) = item?;
            if let (Some(id), Some(o)) = (decode_u64(&k), decode_block_value(&v)) {
                f(id, o.inode, o.gs);
            }
        }
        Ok(())
    }

    /// Checks the tree: every entry points at an inode whose parent and name
    /// match, every inode but the root is reachable, child counts are right.
    pub fn check_consistency(&self) -> Result<u64> {
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![ROOT_ID];
        while let Some(dir) = stack.pop() {
            if !seen.insert(dir) {
                return Err(NnError::Corrupt(format!("inode {dir} reachable twice (cycle)")));
            }
            let inode = self
                .get_inode(dir)?
                .ok_or_else(|| NnError::Corrupt(format!("inode {dir} missing")))?;
            if !inode.is_dir {
                continue;
            }
            let children = self.child_ids(dir)?;
            if children.len() as u64 != inode.children {
                return Err(NnError::Corrupt(format!(
                    "directory {dir} counts {} children but has {}",
                    inode.children,
                    children.len()
                )));
            }
            for cid in children {
                let child = self
                    .get_inode(cid)?
                    .ok_or_else(|| NnError::Corrupt(format!("entry points at missing inode {cid}")))?;
                if child.parent != dir {
                    return Err(NnError::Corrupt(format!("inode {cid} parent mismatch")));
                }
                stack.push(cid);
            }
        }
        let total = self
            .db
            .iterator_cf(self.cf(CF_INODES)?, IteratorMode::Start)
            .count() as u64;
        if total != seen.len() as u64 {
            return Err(NnError::Corrupt(format!(
                "{} inodes stored but {} reachable (orphans)",
                total,
                seen.len()
            )));
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::WaitDurable;
    use crate::namespace::tests::{closed_file, namespace};
    use granary_common::identity::Identity;
    use granary_proto as pb;

    /// As HDFS, a content summary needs read and execute on every directory
    /// of the subtree: another user's private directory inside alice's tree
    /// keeps her from counting it, and the refusal names that directory.
    #[test]
    fn a_content_summary_needs_read_execute_on_every_directory_below() {
        let (_tmp, ns, su) = namespace();
        let alice = ns.caller(Identity::new("alice"));
        ns.mkdirs(&su, "/a", 0, false).durably().expect("mkdirs");
        ns.set_owner(&su, "/a", Some("alice"), None)
            .durably()
            .expect("chown");
        ns.mkdirs(&alice, "/a/pub/x", 0o777, true)
            .durably()
            .expect("mkdirs");
        closed_file(&ns, &alice, "/a/pub/f");
        let open = ns.content_summary(&alice, "/a").expect("all readable");
        assert_eq!((open.directory_count, open.file_count), (3, 1));

        ns.mkdirs(&su, "/a/pub/secret/deeper", 0, true)
            .durably()
            .expect("mkdirs");
        ns.set_owner(&su, "/a/pub/secret", Some("bob"), None)
            .durably()
            .expect("chown");
        ns.set_permission(&su, "/a/pub/secret", 0o700)
            .durably()
            .expect("chmod");
        for top in ["/a", "/a/pub"] {
            match ns.content_summary(&alice, top) {
                Err(NnError::PermissionDenied { user, access, inode }) => {
                    assert_eq!((user.as_str(), access.as_str()), ("alice", "READ_EXECUTE"));
                    assert_eq!(inode, "\"/a/pub/secret\":bob:supergroup:drwx------");
                }
                other => panic!("alice summed bob's private directory: {other:?}"),
            }
        }
        // What she may read in full she still sums; the superuser sums all.
        let x = ns.content_summary(&alice, "/a/pub/x").expect("readable");
        assert_eq!(x.directory_count, 1);
        let all = ns.content_summary(&su, "/a").expect("the superuser");
        assert_eq!((all.directory_count, all.file_count), (5, 1));
        let root = ns.content_summary(&su, "/").expect("the superuser");
        assert_eq!(root.directory_count, 6);
    }

    /// A full report's batched lookup answers exactly as one lookup per
    /// block would, whatever the order and gaps of the reported ids.
    #[test]
    fn batched_block_lookups_match_single_lookups() {
        let (_tmp, ns, su) = namespace();
        let mut known = Vec::new();
        for f in 0..3 {
            let path = format!("/f{f}");
            let (file, _) = ns
                .create(&su, &path, 0, "w", false, false, 1, 0)
                .durably()
                .expect("create");
            let mut prev: Option<pb::ExtendedBlock> = None;
            for _ in 0..30 {
                let b = ns
                    .add_block(&su, &path, file.id, "w", prev.as_ref())
                    .durably()
                    .expect("add block")
                    .block;
                let mut e = b.to_extended();
                e.num_bytes = 1;
                known.push(e.block_id);
                prev = Some(e);
            }
            ns.complete(&su, &path, file.id, "w", prev.as_ref(), |_| true)
                .durably()
                .expect("complete");
        }
        // Deleted blocks leave gaps longer than the iterator's step budget.
        ns.delete(&su, "/f1", false).durably().expect("delete");
        let max = known.iter().copied().max().expect("blocks");
        let mut ids: Vec<u64> = known.iter().rev().step_by(2).copied().collect();
        ids.extend([0, 1, max + 1, max + 1000, u64::MAX]);
        ids.extend(known.iter().step_by(3).copied());
        ids.push(known[0]);
        let batched = ns.block_owners(&ids).expect("batched lookups");
        let mut found = 0;
        for (id, got) in ids.iter().zip(&batched) {
            assert_eq!(*got, ns.block_owner(*id).expect("lookup"), "block {id}");
            found += usize::from(got.is_some());
        }
        assert!(found > 20, "only {found} reported blocks were found");
        assert!(ns.block_owners(&[]).expect("empty report").is_empty());
    }
}
