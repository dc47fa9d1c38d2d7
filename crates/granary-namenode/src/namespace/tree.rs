//! The tree's shape: making directories, linking and unlinking entries,
//! deleting and renaming.

use std::sync::atomic::Ordering;

use super::Effects;

use super::resolve::{SubtreePaths, Within};
use super::{Namespace, Resolved, Written};
use crate::error::{NnError, Result};
use crate::inode::*;
use crate::permission::{Access, Caller};
use granary_common::defaults;
use granary_common::path as gpath;

impl Namespace {
    /// Adds `child` under `parent` (whose count and mtime change) in `batch`.
    pub(super) fn link(&self, batch: &mut Effects, parent: &mut Inode, child: &Inode) -> Result<()> {
        if parent.children >= self.cfg.max_directory_items {
            return Err(NnError::InvalidArgument(format!(
                "directory {:?} already holds the maximum of {} items",
                parent.name, self.cfg.max_directory_items
            )));
        }
        batch.put_cf(CF_DIRENTS, dirent_key(parent.id, &child.name), id_key(child.id));
        parent.children += 1;
        parent.mtime = now_ms();
        Ok(())
    }

    pub(super) fn new_inode(
        &self,
        batch: &mut Effects,
        caller: &Caller,
        parent: &Inode,
        name: &str,
    ) -> Result<Inode> {
        let now = now_ms();
        Ok(Inode {
            id: self.alloc_inode_id(batch)?,
            parent: parent.id,
            name: name.to_string(),
            owner: caller.user().to_string(),
            // BSD rule, as HDFS: a new inode takes its parent's group.
            group: parent.group.clone(),
            mtime: now,
            atime: now,
            ..Default::default()
        })
    }

    /// Creates missing directories along `r` from index `from` on (mkdir -p).
    pub(super) fn create_dirs(
        &self,
        batch: &mut Effects,
        caller: &Caller,
        r: &Resolved,
        upto: usize,
        mode: u32,
    ) -> Result<Inode> {
        let mut parent = r
            .inodes
            .last()
            .cloned()
            .ok_or_else(|| NnError::Corrupt("empty resolution".into()))?;
        let first_missing = r.inodes.len() - 1;
        for i in first_missing..upto {
            let name = &r.comps[i];
            let mut dir = self.new_inode(batch, caller, &parent, name)?;
            dir.is_dir = true;
            // Intermediate directories stay writable for their creator (HDFS: u+wx).
            dir.mode = if i + 1 == r.comps.len() {
                mode
            } else {
                mode | 0o300
            };
            self.link(batch, &mut parent, &dir)?;
            self.put_inode(batch, &parent)?;
            parent = dir;
        }
        self.put_inode(batch, &parent)?;
        Ok(parent)
    }

    pub fn mkdirs(&self, caller: &Caller, path: &str, mode: u32, create_parent: bool) -> Result<Written<()>> {
        let mode = if mode == 0 {
            defaults::DIR_PERMISSION
        } else {
            mode & 0o7777
        };
        self.mutate(|batch| {
            let r = self.resolve(path)?;
            self.check_traverse(caller, &r)?;
            if let Some(existing) = r.last() {
                return if existing.is_dir {
                    Ok(())
                } else {
                    Err(NnError::AlreadyExists(path.to_string()))
                };
            }
            let deepest = r.inodes.len() - 1;
            if !create_parent && deepest + 1 < r.comps.len() {
                return Err(NnError::NotFound(r.prefix(r.comps.len() - 1).to_string()));
            }
            caller.check(&r.inodes[deepest], Access::WriteExecute, r.prefix(deepest))?;
            self.create_dirs(batch, caller, &r, r.comps.len(), mode)?;
            Ok(())
        })
    }

    /// Removes `node` (and, for a directory, everything below it) from `parent`
    /// in `batch`; returns the blocks that no longer belong to any file.
    pub(super) fn unlink_subtree(
        &self,
        batch: &mut Effects,
        caller: &Caller,
        parent: &mut Inode,
        node: &Inode,
        path: &str,
        check_sub_access: bool,
    ) -> Result<Vec<BlockRecord>> {
        batch.delete_cf(CF_DIRENTS, dirent_key(parent.id, &node.name));
        parent.children = parent.children.saturating_sub(1);
        parent.mtime = now_ms();
        let mut blocks = Vec::new();
        let mut paths = SubtreePaths::new(path);
        let mut stack: Vec<(Inode, Within)> = vec![(node.clone(), None)];
        while let Some((n, within)) = stack.pop() {
            if n.is_dir {
                if check_sub_access {
                    caller.check(&n, Access::All, paths.path(within, &n.name))?;
                }
                self.check_no_snapshots(n.id, &paths.path(within, &n.name))?;
                self.forget_snapshottable(batch, n.id);
                let here = paths.enter(within, &n.name);
                for cid in self.child_ids(n.id)? {
                    let child = self.get_inode(cid)?.ok_or_else(|| {
                        NnError::Corrupt(format!(
                            "entry under {} points at missing inode {cid}",
                            paths.path(within, &n.name)
                        ))
                    })?;
                    batch.delete_cf(CF_DIRENTS, dirent_key(n.id, &child.name));
                    stack.push((child, Some(here)));
                }
            }
            for b in &n.blocks {
                batch.delete_cf(CF_BLOCKS, id_key(b.id));
            }
            blocks.extend(n.blocks);
            batch.delete_cf(CF_INODES, id_key(n.id));
        }
        Ok(blocks)
    }

    /// Deletes `path`; returns the blocks to remove from datanodes.
    pub fn delete(&self, caller: &Caller, path: &str, recursive: bool) -> Result<Written<Vec<BlockRecord>>> {
        self.mutate(|batch| {
            let r = self.resolve(path)?;
            self.check_traverse(caller, &r)?;
            let node = r.existing()?.clone();
            let Some(parent) = r.parent() else {
                return Err(NnError::InvalidArgument(
                    "cannot delete the root directory".into(),
                ));
            };
            let mut parent = parent.clone();
            let parent_path = r.prefix(r.comps.len() - 1);
            caller.check(&parent, Access::WriteExecute, parent_path)?;
            caller.check_sticky(&parent, parent_path, &node, path)?;
            if node.is_dir && node.children > 0 && !recursive {
                return Err(NnError::NotEmpty(path.to_string()));
            }
            let blocks = self.unlink_subtree(batch, caller, &mut parent, &node, path, recursive)?;
            self.put_inode(batch, &parent)?;
            Ok(blocks)
        })
    }

    /// Moves `src` to `dst`, or into `dst` when that is a directory.
    /// Returns blocks of a file replaced with `overwrite`.
    pub fn rename(
        &self,
        caller: &Caller,
        src: &str,
        dst: &str,
        overwrite: bool,
    ) -> Result<Written<Vec<BlockRecord>>> {
        // As in create: both paths are walked before the lock, and under it
        // only their parents and last components are read again, unless a
        // structural change (which a file's rename is not) came in between.
        let seen = self.structure.load(Ordering::SeqCst);
        let walked_src = self.resolve(src).ok();
        let walked_dst = self.resolve(dst).ok();
        // Tests change the namespace here, between the walks and the lock.
        fail::fail_point!("namespace::after_walk");
        self.mutate_marked(|batch| {
            let rs = self.resolve_under_lock(walked_src, seen, src)?;
            self.check_traverse(caller, &rs)?;
            let node = rs.existing()?.clone();
            let Some(src_parent) = rs.parent().cloned() else {
                return Err(NnError::InvalidArgument(
                    "cannot rename the root directory".into(),
                ));
            };
            let mut rd = self.resolve_under_lock(walked_dst, seen, dst)?;
            self.check_traverse(caller, &rd)?;
            // Into an existing directory, under the source's name.
            if let Some(d) = rd.last()
                && d.is_dir
                && d.id != node.id
            {
                let into = gpath::join(dst, &node.name);
                rd = self.resolve(&into)?;
            }
            let dst_path = rd.path.clone();
            if dst_path == src {
                return Ok((Vec::new(), false));
            }
            let Some(dst_parent) = rd.parent().cloned() else {
                return Err(NnError::NotFound(
                    rd.prefix(rd.comps.len().saturating_sub(1)).to_string(),
                ));
            };
            if !dst_parent.is_dir {
                return Err(NnError::ParentNotDirectory(
                    rd.prefix(rd.comps.len() - 1).to_string(),
                ));
            }
            // No cycles: the destination's parent must not be the source or
            // below it. A file has nothing below it.
            if node.is_dir {
                let mut cur = dst_parent.clone();
                loop {
                    if cur.id == node.id {
                        return Err(NnError::RenameIntoSubtree {
                            src: src.to_string(),
                            dst: dst.to_string(),
                        });
                    }
                    if cur.id == ROOT_ID {
                        break;
                    }
                    cur = self
                        .get_inode(cur.parent)?
                        .ok_or_else(|| NnError::Corrupt(format!("inode {} has no parent", cur.id)))?;
                }
            }
            if node.is_dir {
                self.check_snapshot_nesting(&node, &rd, src, dst)?;
            }
            let src_parent_path = rs.prefix(rs.comps.len() - 1);
            let dst_parent_path = rd.prefix(rd.comps.len() - 1);
            caller.check(&src_parent, Access::WriteExecute, src_parent_path)?;
            caller.check_sticky(&src_parent, src_parent_path, &node, src)?;
            caller.check(&dst_parent, Access::WriteExecute, dst_parent_path)?;
            let same_parent = src_parent.id == dst_parent.id;
            let mut src_parent = src_parent;
            let mut dst_parent = dst_parent;
            let mut removed = Vec::new();
            if let Some(existing) = rd.last().cloned() {
                let replaceable = overwrite
                    && existing.is_dir == node.is_dir
                    && (!existing.is_dir || existing.children == 0);
                if !replaceable {
                    return Err(NnError::AlreadyExists(dst_path));
                }
                caller.check_sticky(&dst_parent, dst_parent_path, &existing, &dst_path)?;
                let target = if same_parent {
                    &mut src_parent
                } else {
                    &mut dst_parent
                };
                removed = self.unlink_subtree(batch, caller, target, &existing, &dst_path, false)?;
            }
            let new_name = rd.comps[rd.comps.len() - 1].clone();
            batch.delete_cf(CF_DIRENTS, dirent_key(src_parent.id, &node.name));
            src_parent.children = src_parent.children.saturating_sub(1);
            src_parent.mtime = now_ms();
            let mut moved = node;
            moved.name = new_name;
            moved.parent = dst_parent.id;
            if same_parent {
                self.link(batch, &mut src_parent, &moved)?;
                self.put_inode(batch, &src_parent)?;
            } else {
                self.link(batch, &mut dst_parent, &moved)?;
                self.put_inode(batch, &src_parent)?;
                self.put_inode(batch, &dst_parent)?;
            }
            self.put_inode(batch, &moved)?;
            // Moving a file changes no directory, so walks to other paths'
            // parents stay valid; moving a directory changes every path below it.
            Ok((removed, moved.is_dir))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::WaitDurable;
    use crate::namespace::tests::{closed_file, namespace};
    use granary_common::defaults::MAX_PATH_DEPTH;
    use granary_common::identity::Identity;

    /// HDFS's depth limit: a path of 1000 components is made, listed and
    /// renamed into; one of 1001 is refused with the limit in the message.
    #[test]
    fn paths_as_deep_as_the_limit_work_and_deeper_ones_are_refused() {
        let (_tmp, ns, su) = namespace();
        let dir = "/d".repeat(MAX_PATH_DEPTH - 1);
        ns.mkdirs(&su, &dir, 0, true).durably().expect("999 levels");
        let at = format!("{dir}/f");
        let file = closed_file(&ns, &su, &at);
        assert_eq!(ns.get_file_info(&su, &at).expect("stat").id, file.id);
        assert_eq!(ns.list(&su, &dir, "", 0).expect("list").entries.len(), 1);
        let moved = format!("{dir}/g");
        ns.rename(&su, &at, &moved, false)
            .durably()
            .expect("rename at the limit");
        let last_dir = format!("{dir}/e");
        ns.mkdirs(&su, &last_dir, 0, false)
            .durably()
            .expect("1000 levels");

        let over = format!("{last_dir}/h");
        for r in [
            ns.mkdirs(&su, &over, 0, true).durably(),
            ns.create(&su, &over, 0, "w", false, true, 1, 0)
                .durably()
                .map(|_| ()),
            ns.rename(&su, &moved, &over, false).durably().map(|_| ()),
            ns.rename(&su, &moved, &last_dir, false).durably().map(|_| ()),
            ns.get_file_info(&su, &over).map(|_| ()),
        ] {
            match r {
                Err(NnError::Path(e)) => assert_eq!(
                    e.reason, "path is 1001 components deep, over the limit of 1000",
                    "{e}"
                ),
                other => panic!("a path 1001 deep was not refused: {other:?}"),
            }
        }
        ns.check_consistency().expect("consistent");
    }

    /// A recursive delete that meets a directory it may not empty names it.
    #[test]
    fn a_refused_recursive_delete_names_the_directory_in_the_way() {
        let (_tmp, ns, su) = namespace();
        let alice = ns.caller(Identity::new("alice"));
        ns.mkdirs(&su, "/a", 0, false).durably().expect("mkdirs");
        ns.set_owner(&su, "/a", Some("alice"), None)
            .durably()
            .expect("chown");
        ns.mkdirs(&alice, "/a/b/c/locked/inner", 0, true)
            .durably()
            .expect("mkdirs");
        ns.set_permission(&alice, "/a/b/c/locked", 0o500)
            .durably()
            .expect("chmod");
        match ns.delete(&alice, "/a/b", true).durably() {
            Err(NnError::PermissionDenied { access, inode, .. }) => {
                assert_eq!(access, "ALL");
                assert!(inode.starts_with("\"/a/b/c/locked\":alice:"), "{inode}");
            }
            other => panic!("not refused: {other:?}"),
        }
        ns.get_file_info(&alice, "/a/b/c/locked/inner")
            .expect("nothing was deleted");
        ns.delete(&su, "/a", true).durably().expect("the superuser may");
        ns.check_consistency().expect("consistent");
    }

    /// HDFS's sticky bit: in a 1777 directory everybody creates entries,
    /// but only an entry's owner, the directory's owner or the superuser
    /// deletes or moves one away, or replaces one by a rename.
    #[test]
    fn a_sticky_directory_keeps_entries_to_their_owners() {
        let (_tmp, ns, su) = namespace();
        let alice = ns.caller(Identity::new("alice"));
        let bob = ns.caller(Identity::new("bob"));
        let carol = ns.caller(Identity::new("carol"));
        ns.mkdirs(&su, "/tmp", 0o1777, false).durably().expect("mkdirs");
        closed_file(&ns, &alice, "/tmp/a");
        closed_file(&ns, &bob, "/tmp/b");
        ns.mkdirs(&alice, "/tmp/dir", 0, false).durably().expect("mkdirs");

        let sticky = |r: Result<Vec<BlockRecord>>, what: &str| match r {
            Err(e @ NnError::StickyBit { .. }) => e.to_string(),
            other => panic!("{what} was not refused by the sticky bit: {other:?}"),
        };
        let m = sticky(ns.delete(&bob, "/tmp/a", false).durably(), "bob's delete");
        assert_eq!(
            m,
            "Permission denied by sticky bit: user=bob, \
             path=\"/tmp/a\":alice:supergroup:-rw-r--r--, \
             parent=\"/tmp\":hdfs:supergroup:drwxrwxrwt"
        );
        sticky(
            ns.delete(&bob, "/tmp/dir", true).durably(),
            "bob's delete of a directory",
        );
        sticky(
            ns.rename(&bob, "/tmp/a", "/tmp/mine", false).durably(),
            "bob's rename",
        );
        sticky(
            ns.rename(&bob, "/tmp/dir", "/tmp/b2", false).durably(),
            "bob's rename of a directory",
        );
        let m = sticky(
            ns.rename(&bob, "/tmp/b", "/tmp/a", true).durably(),
            "bob's rename over alice's file",
        );
        assert!(m.contains("path=\"/tmp/a\":alice"), "{m}");
        ns.mkdirs(&su, "/home/bob", 0o777, true)
            .durably()
            .expect("mkdirs");
        sticky(
            ns.rename(&bob, "/tmp/a", "/home/bob", false).durably(),
            "bob's move of alice's file",
        );
        assert_eq!(
            ns.get_file_info(&su, "/tmp/a").expect("still there").owner,
            "alice"
        );

        // Bob still makes, moves and deletes his own entries there.
        closed_file(&ns, &bob, "/tmp/b3");
        ns.rename(&bob, "/tmp/b3", "/tmp/b4", false)
            .durably()
            .expect("bob's own");
        ns.delete(&bob, "/tmp/b4", false).durably().expect("bob's own");
        ns.mkdirs(&bob, "/tmp/bobdir", 0, false)
            .durably()
            .expect("bob's own");
        ns.rename(&bob, "/tmp/bobdir", "/home/bob", false)
            .durably()
            .expect("bob's own directory");
        // Alice, the entry's owner, may; so may the superuser.
        ns.rename(&alice, "/tmp/a", "/tmp/a2", false)
            .durably()
            .expect("alice's own");
        ns.rename(&su, "/tmp/a2", "/tmp/a", false)
            .durably()
            .expect("the superuser");
        closed_file(&ns, &alice, "/tmp/a3");
        ns.rename(&alice, "/tmp/a3", "/tmp/a", true)
            .durably()
            .expect("alice replaces her own file");
        sticky(
            ns.rename(&alice, "/tmp/a", "/tmp/b", true).durably(),
            "alice's rename over bob's file",
        );
        ns.delete(&su, "/tmp/dir", true).durably().expect("the superuser");
        // So may the directory's owner.
        ns.set_owner(&su, "/tmp", Some("carol"), None)
            .durably()
            .expect("chown");
        closed_file(&ns, &bob, "/tmp/c");
        ns.rename(&carol, "/tmp/c", "/tmp/c2", false)
            .durably()
            .expect("carol owns the directory");
        ns.delete(&carol, "/tmp/b", false)
            .durably()
            .expect("carol owns the directory");
        // Without the bit, write permission on the directory is enough.
        ns.set_permission(&su, "/tmp", 0o777).durably().expect("chmod");
        ns.delete(&bob, "/tmp/c2", false).durably().expect("not sticky");
        ns.check_consistency().expect("consistent");
    }
}
