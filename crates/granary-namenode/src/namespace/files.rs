//! Files: creating, writing (blocks, generation stamps), closing, appending
//! and recovering them.

use std::sync::atomic::Ordering;

use super::Effects;

use super::{AllocatedBlock, LastBlockFate, Namespace, Recovered, Written};
use crate::error::{NnError, Result};
use crate::inode::*;
use crate::permission::{Access, Caller};
use granary_common::defaults;
use granary_proto as pb;

impl Namespace {
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &self,
        caller: &Caller,
        path: &str,
        mode: u32,
        client_name: &str,
        overwrite: bool,
        create_parent: bool,
        replication: u32,
        block_size: u64,
    ) -> Result<Written<(Inode, Vec<BlockRecord>)>> {
        let mode = if mode == 0 {
            defaults::FILE_PERMISSION
        } else {
            mode & 0o7777
        };
        let replication = self.check_replication(path, replication)?;
        let block_size = if block_size == 0 {
            self.cfg.default_block_size
        } else {
            block_size
        };
        if block_size < self.cfg.min_block_size {
            return Err(NnError::InvalidArgument(format!(
                "{path}: block size {block_size} is below the minimum of {}",
                self.cfg.min_block_size
            )));
        }
        if block_size % u64::from(self.cfg.bytes_per_checksum) != 0 {
            return Err(NnError::InvalidArgument(format!(
                "{path}: block size {block_size} is not a multiple of the checksum chunk {}",
                self.cfg.bytes_per_checksum
            )));
        }
        if client_name.is_empty() {
            return Err(NnError::InvalidArgument(format!(
                "{path}: create needs a client name"
            )));
        }
        // The walk down to the parent happens outside the lock; under it only
        // the parent and the new name are read again, unless the tree's shape
        // changed meanwhile.
        let seen = self.structure.load(Ordering::SeqCst);
        let walked = self.resolve(path).ok();
        // Tests change the namespace here, between the walk and the lock.
        fail::fail_point!("namespace::after_walk");
        self.mutate_marked(|batch| {
            let r = self.resolve_under_lock(walked, seen, path)?;
            if r.comps.is_empty() {
                return Err(NnError::IsDirectory(path.to_string()));
            }
            self.check_traverse(caller, &r)?;
            let mut removed = Vec::new();
            let mut made_dirs = false;
            let mut parent = match r.parent() {
                Some(p) => p.clone(),
                None if create_parent => {
                    let deepest = r.inodes.len() - 1;
                    caller.check(&r.inodes[deepest], Access::WriteExecute, r.prefix(deepest))?;
                    made_dirs = true;
                    self.create_dirs(batch, caller, &r, r.comps.len() - 1, defaults::DIR_PERMISSION)?
                }
                None => return Err(NnError::NotFound(r.prefix(r.comps.len() - 1).to_string())),
            };
            let parent_path = r.prefix(r.comps.len() - 1);
            caller.check(&parent, Access::Write, parent_path)?;
            if let Some(existing) = r.last() {
                if existing.is_dir {
                    return Err(NnError::IsDirectory(path.to_string()));
                }
                if existing.under_construction.is_some() {
                    return Err(caller.lease_conflict(existing, path));
                }
                if !overwrite {
                    return Err(NnError::AlreadyExists(path.to_string()));
                }
                caller.check_sticky(&parent, parent_path, existing, path)?;
                removed = self.unlink_subtree(batch, caller, &mut parent, existing, path, false)?;
            }
            let name = &r.comps[r.comps.len() - 1];
            let mut file = self.new_inode(batch, caller, &parent, name)?;
            super::retry::set_value(file.id);
            file.mode = mode;
            file.replication = replication;
            file.block_size = block_size;
            file.under_construction = Some(UnderConstruction {
                client_name: client_name.to_string(),
                user: caller.user().to_string(),
            });
            self.link(batch, &mut parent, &file)?;
            self.put_inode(batch, &parent)?;
            self.put_inode(batch, &file)?;
            Ok(((file, removed), made_dirs))
        })
    }

    pub(super) fn check_replication(&self, path: &str, replication: u32) -> Result<u32> {
        let r = if replication == 0 {
            self.cfg.default_replication
        } else {
            replication
        };
        if r > self.cfg.max_replication {
            return Err(NnError::InvalidArgument(format!(
                "{path}: replication {r} exceeds the maximum of {}",
                self.cfg.max_replication
            )));
        }
        Ok(r)
    }

    /// The file `path` as its lease holder `client` sees it. Writers name
    /// their file by id (as HDFS's fileId): one lookup instead of a path walk
    /// under the namespace lock, and the file stays theirs if renamed. The
    /// caller must be the user who opened the file (or the superuser): a
    /// client name and a file id alone prove nothing.
    fn leased_file(&self, caller: &Caller, path: &str, file_id: u64, client: &str) -> Result<Inode> {
        let file = if file_id != 0 {
            self.get_inode(file_id)?.ok_or_else(|| NnError::NoLease {
                path: path.to_string(),
                client: client.to_string(),
                reason: "was replaced or deleted".into(),
            })?
        } else {
            let r = self.resolve(path)?;
            self.check_traverse(caller, &r)?;
            r.existing()?.clone()
        };
        if file.is_dir {
            return Err(NnError::IsDirectory(path.to_string()));
        }
        match (&file.under_construction, file.writer_user()) {
            (Some(uc), Some(writer)) if uc.client_name == client && caller.acts_as(writer) => Ok(file),
            (Some(_), _) => Err(caller.lease_conflict(&file, path)),
            (None, _) => Err(NnError::NoLease {
                path: path.to_string(),
                client: client.to_string(),
                reason: "is closed".into(),
            }),
        }
    }

    /// The open file a writer is adding to, for choosing targets.
    pub fn file_for_writer(&self, caller: &Caller, path: &str, file_id: u64, client: &str) -> Result<Inode> {
        self.leased_file(caller, path, file_id, client)
    }

    /// Before `caller`'s client takes over `path` by create (or by append,
    /// `append`): the open file a takeover would recover, if any, once the
    /// caller passed the checks the create or append itself makes (execute
    /// on the way; write on the parent, and the sticky bit for an
    /// overwrite; write on the file to append). A caller who may not open
    /// the file must not be able to close another user's writer out of it.
    pub fn open_file_to_take_over(
        &self,
        caller: &Caller,
        path: &str,
        append: bool,
        overwrite: bool,
    ) -> Result<Option<Inode>> {
        // A path that does not resolve has nothing to take over; the create
        // or append itself reports why.
        let Ok(r) = self.resolve(path) else {
            return Ok(None);
        };
        let Some(file) = r.last().filter(|f| f.under_construction.is_some()) else {
            return Ok(None);
        };
        self.check_traverse(caller, &r)?;
        if append {
            caller.check(file, Access::Write, path)?;
        } else if let Some(parent) = r.parent() {
            let parent_path = r.prefix(r.comps.len() - 1);
            caller.check(parent, Access::Write, parent_path)?;
            if overwrite {
                caller.check_sticky(parent, parent_path, file, path)?;
            }
        }
        Ok(Some(file.clone()))
    }

    /// Sets the writer's reported length on the file's last block, and
    /// records it with the block (block reports are checked against it).
    fn commit_last(
        &self,
        batch: &mut Effects,
        path: &str,
        file: &mut Inode,
        last: Option<&pb::ExtendedBlock>,
    ) -> Result<()> {
        Self::commit_last_in(path, file, last)?;
        if let Some(b) = file.blocks.last_mut().filter(|b| b.committed) {
            b.targets.clear();
            batch.put_cf(
                CF_BLOCKS,
                id_key(b.id),
                block_value(file.id, b.generation_stamp, Some(b.num_bytes)),
            );
        }
        Ok(())
    }

    fn commit_last_in(path: &str, file: &mut Inode, last: Option<&pb::ExtendedBlock>) -> Result<()> {
        match (file.blocks.last_mut(), last) {
            (None, None) => Ok(()),
            (Some(b), Some(l)) if b.id == l.block_id => {
                if b.committed && b.num_bytes != l.num_bytes {
                    return Err(NnError::InvalidArgument(format!(
                        "{path}: block {} was committed with {} bytes, not {}",
                        b.id, b.num_bytes, l.num_bytes
                    )));
                }
                if l.num_bytes > file.block_size {
                    return Err(NnError::InvalidArgument(format!(
                        "{path}: block {} length {} exceeds the block size {}",
                        b.id, l.num_bytes, file.block_size
                    )));
                }
                b.num_bytes = l.num_bytes;
                b.committed = true;
                Ok(())
            }
            (Some(b), l) => Err(NnError::InvalidArgument(format!(
                "{path}: the last block is {}, but the writer named {}",
                b.id,
                l.map_or_else(|| "none".to_string(), |l| l.block_id.to_string())
            ))),
            (None, Some(l)) => Err(NnError::InvalidArgument(format!(
                "{path}: the file has no blocks, but the writer named block {}",
                l.block_id
            ))),
        }
    }

    pub fn add_block(
        &self,
        caller: &Caller,
        path: &str,
        file_id: u64,
        client: &str,
        previous: Option<&pb::ExtendedBlock>,
    ) -> Result<Written<AllocatedBlock>> {
        self.add_block_to(caller, path, file_id, client, previous, &[])
    }

    /// [`Namespace::add_block`] recording the datanodes (uuids) the new
    /// block goes to, for lease recovery.
    pub fn add_block_to(
        &self,
        caller: &Caller,
        path: &str,
        file_id: u64,
        client: &str,
        previous: Option<&pb::ExtendedBlock>,
        targets: &[String],
    ) -> Result<Written<AllocatedBlock>> {
        self.mutate_file(|batch| {
            let mut file = self.leased_file(caller, path, file_id, client)?;
            // A retried call whose first attempt succeeded gets the same block back.
            if let (Some(prev), [.., before, last]) = (previous, file.blocks.as_slice())
                && before.id == prev.block_id
                && !last.committed
            {
                let offset = file.blocks[..file.blocks.len() - 1]
                    .iter()
                    .map(|b| b.num_bytes)
                    .sum();
                return Ok(AllocatedBlock {
                    block: last.clone(),
                    offset,
                });
            }
            self.commit_last(batch, path, &mut file, previous)?;
            let offset = file.length();
            let (id, gs) = self.alloc_block(batch)?;
            let block = BlockRecord {
                id,
                generation_stamp: gs,
                num_bytes: 0,
                committed: false,
                targets: targets.to_vec(),
            };
            file.blocks.push(block.clone());
            batch.put_cf(CF_BLOCKS, id_key(id), block_value(file.id, gs, None));
            self.put_inode(batch, &file)?;
            Ok(AllocatedBlock { block, offset })
        })
    }

    pub fn abandon_block(
        &self,
        caller: &Caller,
        path: &str,
        file_id: u64,
        client: &str,
        block_id: u64,
    ) -> Result<Written<()>> {
        self.mutate(|batch| {
            let mut file = self.leased_file(caller, path, file_id, client)?;
            match file.blocks.last() {
                Some(b) if b.id == block_id && !b.committed => {}
                _ => {
                    return Err(NnError::InvalidArgument(format!(
                        "{path}: block {block_id} is not the file's uncommitted last block"
                    )));
                }
            }
            file.blocks.pop();
            batch.delete_cf(CF_BLOCKS, id_key(block_id));
            self.put_inode(batch, &file)
        })
    }

    /// Commits the last block and closes the file when every block has its
    /// minimum replicas (`replicated`). Returns whether the file is closed.
    pub fn complete(
        &self,
        caller: &Caller,
        path: &str,
        file_id: u64,
        client: &str,
        last: Option<&pb::ExtendedBlock>,
        replicated: impl Fn(&BlockRecord) -> bool,
    ) -> Result<Written<bool>> {
        self.mutate_file(|batch| {
            let mut file = match self.leased_file(caller, path, file_id, client) {
                Ok(f) => f,
                Err(NnError::NoLease { .. }) => {
                    // A retry after a success: closed, same file, same last
                    // block at the same length (not a file lease recovery
                    // closed at another length under its old writer).
                    let r = self.resolve(path)?;
                    let f = r.existing()?;
                    let same_last = f.blocks.last().map(|b| (b.id, b.num_bytes))
                        == last.map(|l| (l.block_id, l.num_bytes));
                    if f.under_construction.is_none() && f.id == file_id && same_last {
                        return Ok(true);
                    }
                    return self.leased_file(caller, path, file_id, client).map(|_| false);
                }
                Err(e) => return Err(e),
            };
            self.commit_last(batch, path, &mut file, last)?;
            if file.blocks.iter().any(|b| !b.committed) {
                return Err(NnError::InvalidArgument(format!(
                    "{path}: a block before the last was never committed"
                )));
            }
            let closed = file.blocks.iter().all(&replicated);
            if closed {
                file.under_construction = None;
                file.mtime = now_ms();
            }
            self.put_inode(batch, &file)?;
            Ok(closed)
        })
    }

    /// A writer's hflush/hsync (HDFS's fsync): the file is still its own,
    /// and its block being written holds at least `last_len` bytes, which
    /// readers asking the namenode (getFileInfo) see from now on. A length
    /// past the block's size is refused; a smaller one than recorded (a
    /// late call) changes nothing.
    pub fn fsync(
        &self,
        caller: &Caller,
        path: &str,
        file_id: u64,
        client: &str,
        last_len: Option<u64>,
    ) -> Result<Written<()>> {
        self.mutate_file(|batch| {
            let mut file = self.leased_file(caller, path, file_id, client)?;
            let Some(len) = last_len else {
                return Ok(());
            };
            let size = file.block_size;
            let Some(last) = file.blocks.last_mut().filter(|b| !b.committed) else {
                return Ok(());
            };
            if len > size {
                return Err(NnError::InvalidArgument(format!(
                    "{path}: fsync of {len} bytes in block {} of at most {size}",
                    last.id
                )));
            }
            if len > last.num_bytes {
                last.num_bytes = len;
                self.put_inode(batch, &file)?;
            }
            Ok(())
        })
    }

    /// A new generation stamp for the uncommitted last block of an open file
    /// (pipeline recovery). Returns the new stamp.
    pub fn bump_generation(
        &self,
        caller: &Caller,
        path: &str,
        file_id: u64,
        client: &str,
        block_id: u64,
    ) -> Result<Written<u64>> {
        self.mutate(|batch| {
            let mut file = self.leased_file(caller, path, file_id, client)?;
            let Some(last) = file
                .blocks
                .last_mut()
                .filter(|b| b.id == block_id && !b.committed)
            else {
                return Err(NnError::InvalidArgument(format!(
                    "{path}: block {block_id} is not the block being written"
                )));
            };
            let gs = self.next_gs.fetch_add(1, Ordering::SeqCst);
            batch.put_cf(CF_META, META_NEXT_GS, id_key(gs + 1));
            last.generation_stamp = gs;
            batch.put_cf(CF_BLOCKS, id_key(block_id), block_value(file.id, gs, None));
            self.put_inode(batch, &file)?;
            Ok(gs)
        })
    }

    /// Reopens a closed file for `client` to write at its end (new data goes
    /// into new blocks). Returns the file.
    pub fn append(&self, caller: &Caller, path: &str, client: &str) -> Result<Written<Inode>> {
        if client.is_empty() {
            return Err(NnError::InvalidArgument(format!(
                "{path}: append needs a client name"
            )));
        }
        self.mutate(|batch| {
            let r = self.resolve(path)?;
            self.check_traverse(caller, &r)?;
            let mut file = r.existing()?.clone();
            if file.is_dir {
                return Err(NnError::IsDirectory(path.to_string()));
            }
            caller.check(&file, Access::Write, path)?;
            if file.under_construction.is_some() {
                return Err(caller.lease_conflict(&file, path));
            }
            file.under_construction = Some(UnderConstruction {
                client_name: client.to_string(),
                user: caller.user().to_string(),
            });
            self.put_inode(batch, &file)?;
            Ok(file)
        })
    }

    /// Closes an open file whose writer is gone; `fate` says what becomes of
    /// an uncommitted last block (lease recovery decides from what datanodes
    /// hold). Committing under a new generation stamp makes replicas of the
    /// old one stale. Returns None if the file was not open.
    pub fn recover_file(
        &self,
        inode_id: u64,
        fate: Option<LastBlockFate>,
    ) -> Result<Written<Option<Recovered>>> {
        self.mutate(|batch| {
            let Some(mut file) = self.get_inode(inode_id)? else {
                return Ok(None);
            };
            let Some(uc) = file.under_construction.take() else {
                return Ok(None);
            };
            let mut dropped = Vec::new();
            let mut committed = None;
            let block_size = file.block_size;
            let file_id = file.id;
            if let Some(last) = file.blocks.last_mut().filter(|b| !b.committed) {
                match fate {
                    Some(LastBlockFate::Commit { length, new_gs }) if length <= block_size => {
                        if new_gs {
                            let gs = self.next_gs.fetch_add(1, Ordering::SeqCst);
                            batch.put_cf(CF_META, META_NEXT_GS, id_key(gs + 1));
                            last.generation_stamp = gs;
                        }
                        last.num_bytes = length;
                        last.committed = true;
                        last.targets.clear();
                        batch.put_cf(CF_BLOCKS,
                            id_key(last.id),
                            block_value(file_id, last.generation_stamp, Some(length)),
                        );
                        committed = Some(last.clone());
                    }
                    Some(LastBlockFate::Commit { length, .. }) => {
                        return Err(NnError::Internal(format!(
                            "lease recovery of inode {inode_id}: length {length} is over the block size {block_size}"
                        )));
                    }
                    None => {
                        return Err(NnError::Internal(format!(
                            "lease recovery of inode {inode_id}: the last block's fate was not decided"
                        )));
                    }
                    Some(LastBlockFate::Drop) => {
                        if let Some(b) = file.blocks.pop() {
                            batch.delete_cf(CF_BLOCKS, id_key(b.id));
                            dropped.push(b);
                        }
                    }
                }
            }
            file.mtime = now_ms();
            self.put_inode(batch, &file)?;
            Ok(Some(Recovered {
                holder: uc.client_name,
                dropped,
                committed,
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::error::NnError;
    use crate::namespace::WaitDurable;
    use crate::namespace::tests::{closed_file, namespace};
    use granary_common::identity::Identity;

    /// Overwriting by create is deleting: in a sticky directory only the
    /// file's owner, the directory's owner or the superuser may.
    #[test]
    fn a_create_overwrites_in_a_sticky_directory_only_what_it_may_delete() {
        let (_tmp, ns, su) = namespace();
        let alice = ns.caller(Identity::new("alice"));
        let bob = ns.caller(Identity::new("bob"));
        ns.mkdirs(&su, "/tmp", 0o1777, false).durably().expect("mkdirs");
        let a = closed_file(&ns, &alice, "/tmp/a");
        match ns.create(&bob, "/tmp/a", 0, "bob", true, false, 1, 0).durably() {
            Err(e @ NnError::StickyBit { .. }) => {
                let m = e.to_string();
                assert!(
                    m.contains("user=bob") && m.contains("path=\"/tmp/a\":alice:"),
                    "{m}"
                );
            }
            other => panic!("bob overwrote alice's file: {other:?}"),
        }
        assert_eq!(ns.get_file_info(&su, "/tmp/a").expect("stat").id, a.id);
        // Without overwrite it is just there already.
        assert!(matches!(
            ns.create(&bob, "/tmp/a", 0, "bob", false, false, 1, 0).durably(),
            Err(NnError::AlreadyExists(_))
        ));
        // His own file bob overwrites; alice hers; the superuser anybody's.
        closed_file(&ns, &bob, "/tmp/b");
        ns.create(&bob, "/tmp/b", 0, "bob", true, false, 1, 0)
            .durably()
            .expect("bob's own");
        ns.create(&alice, "/tmp/a", 0, "alice", true, false, 1, 0)
            .durably()
            .expect("alice's own");
        closed_file(&ns, &alice, "/tmp/a2");
        ns.create(&su, "/tmp/a2", 0, "hdfs", true, false, 1, 0)
            .durably()
            .expect("the superuser");
        ns.check_consistency().expect("consistent");
    }

    /// A client name and a file id are not enough to write a file: the
    /// caller must be the user who opened it (or the superuser), and other
    /// users are not told which client holds it.
    #[test]
    fn only_the_user_who_opened_a_file_writes_it() {
        let (_tmp, ns, su) = namespace();
        let alice = ns.caller(Identity::new("alice"));
        let bob = ns.caller(Identity::new("bob"));
        ns.mkdirs(&su, "/shared", 0o777, false).durably().expect("mkdirs");
        let (f, _) = ns
            .create(&alice, "/shared/f", 0o666, "alice-client", false, false, 1, 0)
            .durably()
            .expect("create");
        let theirs = "/shared/f: file is being written by another client";
        let refused = |r: Result<(), NnError>| match r {
            Err(e @ NnError::LeaseConflict { .. }) => assert_eq!(e.to_string(), theirs),
            other => panic!("bob wrote alice's file: {other:?}"),
        };
        refused(
            ns.add_block(&bob, "/shared/f", f.id, "alice-client", None)
                .durably()
                .map(|_| ()),
        );
        refused(
            ns.file_for_writer(&bob, "/shared/f", 0, "alice-client")
                .map(|_| ()),
        );
        let b = ns
            .add_block(&alice, "/shared/f", f.id, "alice-client", None)
            .durably()
            .expect("her block")
            .block;
        refused(
            ns.bump_generation(&bob, "/shared/f", f.id, "alice-client", b.id)
                .durably()
                .map(|_| ()),
        );
        refused(
            ns.abandon_block(&bob, "/shared/f", f.id, "alice-client", b.id)
                .durably(),
        );
        refused(
            ns.fsync(&bob, "/shared/f", f.id, "alice-client", Some(10))
                .durably(),
        );
        // Her hflush'd length is the open file's length; a late, shorter
        // one changes nothing; one past the block size is refused.
        let len =
            |ns: &crate::namespace::Namespace| ns.get_inode(f.id).expect("read").expect("file").length();
        ns.fsync(&alice, "/shared/f", f.id, "alice-client", Some(1000))
            .durably()
            .expect("fsync");
        assert_eq!(len(&ns), 1000);
        ns.fsync(&alice, "/shared/f", f.id, "alice-client", Some(10))
            .durably()
            .expect("late fsync");
        ns.fsync(&alice, "/shared/f", f.id, "alice-client", None)
            .durably()
            .expect("fsync without a length");
        assert_eq!(len(&ns), 1000);
        let block_size = ns.get_inode(f.id).expect("read").expect("file").block_size;
        let e = ns
            .fsync(&alice, "/shared/f", f.id, "alice-client", Some(block_size + 1))
            .durably()
            .expect_err("past the block");
        assert!(e.to_string().contains("at most"), "{e}");
        assert_eq!(len(&ns), 1000);
        let last = b.to_extended();
        refused(
            ns.complete(&bob, "/shared/f", f.id, "alice-client", Some(&last), |_| true)
                .durably()
                .map(|_| ()),
        );
        refused(
            ns.create(&bob, "/shared/f", 0, "bob-client", true, false, 1, 0)
                .durably()
                .map(|_| ()),
        );
        // Her own other client, and the superuser, hear who holds it.
        let e = ns
            .create(&alice, "/shared/f", 0, "alice-2", true, false, 1, 0)
            .durably()
            .expect_err("open");
        assert!(e.to_string().ends_with("being written by alice-client"), "{e}");
        let e = ns
            .create(&su, "/shared/f", 0, "su", true, false, 1, 0)
            .durably()
            .expect_err("open");
        assert!(e.to_string().ends_with("being written by alice-client"), "{e}");
        ns.bump_generation(&su, "/shared/f", f.id, "alice-client", b.id)
            .durably()
            .expect("the superuser may");

        // A record from before writers' users were kept is its owner's.
        ns.mutate(|batch| {
            let mut g = ns.get_inode(f.id)?.expect("file");
            if let Some(uc) = g.under_construction.as_mut() {
                uc.user.clear();
            }
            ns.put_inode(batch, &g)
        })
        .durably()
        .expect("old record");
        assert_eq!(
            ns.get_inode(f.id).expect("read").expect("file").writer_user(),
            Some("alice")
        );
        refused(
            ns.add_block(&bob, "/shared/f", f.id, "alice-client", None)
                .durably()
                .map(|_| ()),
        );
        ns.file_for_writer(&alice, "/shared/f", f.id, "alice-client")
            .expect("the owner's");
        ns.check_consistency().expect("consistent");
    }
}
