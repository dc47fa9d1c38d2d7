//! Directory quotas, as HDFS's: a name quota (files and directories) and a
//! space quota (bytes times replication) per directory.
//!
//! A quota'd directory's inode keeps what its subtree uses. Usage changes
//! with every mutation, worked out from what the mutation writes: once a
//! mutation has made its changes (as data, an [`Effects`]), each inode it
//! creates, deletes, changes or moves is compared with the stored one and
//! the difference is charged to the quota'd directories above it (above
//! its old place for what leaves, above its new place for what arrives).
//! So no call carries accounting of its own (create, mkdirs, addBlock,
//! complete, append, setrep, rename, delete and lease recovery are all
//! covered the same way), a call that would cross a quota fails before
//! anything is written, and a Raft group's followers apply exactly the
//! usage their leader worked out. While no directory has a quota, none of
//! this runs.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::{Effects, Namespace, Written, decode_inode};
use crate::error::{NnError, Result};
use crate::inode::*;
use crate::permission::Caller;

/// A quota asked for: a limit, or [`QUOTA_RESET`] to remove it.
pub const QUOTA_RESET: i64 = -1;

/// Inodes by id as a mutation leaves them (`None`: deleted).
type Overlay = HashMap<u64, Option<Inode>>;

/// The quota'd directories above a directory (itself included), root
/// first, worked out once per directory per mutation.
#[derive(Default)]
struct Chains {
    memo: HashMap<u64, Vec<u64>>,
}

impl Chains {
    /// The chain of directory `dir`, in the stored tree or, with an
    /// overlay, in the tree as the mutation leaves it.
    fn of(&mut self, ns: &Namespace, overlay: Option<&Overlay>, dir: u64) -> Result<Vec<u64>> {
        let mut walked = Vec::new();
        let mut cur = dir;
        let mut base = Vec::new();
        while cur != 0 {
            if let Some(known) = self.memo.get(&cur) {
                base = known.clone();
                break;
            }
            let inode = match overlay.and_then(|o| o.get(&cur)) {
                Some(Some(inode)) => inode.clone(),
                _ => ns
                    .get_inode(cur)?
                    .ok_or_else(|| NnError::Corrupt(format!("inode {cur} on a path is missing")))?,
            };
            walked.push((cur, inode.quota.is_some()));
            if walked.len() > 100_000 {
                return Err(NnError::Corrupt(format!(
                    "inode {dir} has a cycle among its parents"
                )));
            }
            cur = inode.parent;
        }
        for (id, quota) in walked.into_iter().rev() {
            if quota {
                base.push(id);
            }
            self.memo.insert(id, base.clone());
        }
        Ok(base)
    }
}

/// Usage changes per quota'd directory: (names, bytes), wide enough that
/// no sum of u64 charges wraps; and whether anything arrived in its tree
/// (names, bytes), which only then may be refused.
#[derive(Default)]
struct Deltas {
    usage: HashMap<u64, (i128, i128)>,
    arrived: HashMap<u64, (bool, bool)>,
}

impl Deltas {
    fn charge(&mut self, chain: &[u64], (names, bytes): (u64, u64), sign: i64) {
        self.held(chain, (names, bytes), sign);
        if sign > 0 {
            for q in chain {
                let g = self.arrived.entry(*q).or_default();
                g.0 |= names > 0;
                g.1 |= bytes > 0;
            }
        }
    }

    /// A change of what snapshots alone hold: counted, never refused (it
    /// comes from a delete, a lower replication or a snapshot's deletion,
    /// none of which HDFS refuses, even where it moves a hold from one
    /// quota'd tree to another).
    fn held(&mut self, chain: &[u64], (names, bytes): (u64, u64), sign: i64) {
        for q in chain {
            let d = self.usage.entry(*q).or_default();
            d.0 += i128::from(sign) * i128::from(names);
            d.1 += i128::from(sign) * i128::from(bytes);
        }
    }
}

impl Namespace {
    /// Sets or clears a directory's quotas (superuser only). `None` leaves
    /// a quota as it is, [`QUOTA_RESET`] removes it. A name quota is at
    /// least 1 (the directory itself counts); a space quota at least 0.
    /// As HDFS, a quota below what the directory already uses is taken:
    /// only growth is refused from then on.
    pub fn set_quota(
        &self,
        caller: &Caller,
        path: &str,
        ns_quota: Option<i64>,
        ss_quota: Option<i64>,
    ) -> Result<Written<()>> {
        Self::superuser_only(caller)?;
        if let Some(n) = ns_quota.filter(|n| *n != QUOTA_RESET && *n < 1) {
            return Err(NnError::InvalidArgument(format!(
                "{path}: invalid name quota {n}: it must be at least 1 (the directory itself counts)"
            )));
        }
        if let Some(n) = ss_quota.filter(|n| *n != QUOTA_RESET && *n < 0) {
            return Err(NnError::InvalidArgument(format!(
                "{path}: invalid space quota {n}: it must not be negative"
            )));
        }
        self.mutate(|batch| {
            let (_, mut dir) = self.resolve_dir(caller, path)?;
            let had = dir.quota.is_some();
            let mut q = match dir.quota {
                Some(q) => q,
                None => {
                    let (ns_used, ss_used) = self.subtree_usage(&dir)?;
                    DirQuota {
                        ns_quota: QUOTA_RESET,
                        ss_quota: QUOTA_RESET,
                        ns_used,
                        ss_used,
                    }
                }
            };
            if let Some(n) = ns_quota {
                q.ns_quota = n;
            }
            if let Some(n) = ss_quota {
                q.ss_quota = n;
            }
            let has = q.ns_quota >= 0 || q.ss_quota >= 0;
            if !had && !has {
                return Ok(());
            }
            dir.quota = has.then_some(q);
            self.put_inode(batch, &dir)?;
            if had != has {
                let count = self.stored_quota_dirs()?;
                let count = if has { count + 1 } else { count.saturating_sub(1) };
                batch.put_cf(CF_META, META_QUOTA_DIRS, id_key(count));
            }
            Ok(())
        })
    }

    /// How many directories have a quota, as stored.
    pub(super) fn stored_quota_dirs(&self) -> Result<u64> {
        Ok(self
            .db
            .get_cf(self.cf(CF_META)?, META_QUOTA_DIRS)?
            .as_deref()
            .and_then(decode_u64)
            .unwrap_or(0))
    }

    /// What `top` and everything below it count against quotas. A quota'd
    /// directory below is taken at its kept usage, not walked.
    pub(super) fn subtree_usage(&self, top: &Inode) -> Result<(u64, u64)> {
        if let Some(q) = top.quota {
            return Ok((q.ns_used, q.ss_used));
        }
        let mut total = top.quota_charge();
        if !top.is_dir {
            return Ok(total);
        }
        let snapshots = self.snap_state();
        let mut stack = vec![top.id];
        while let Some(dir) = stack.pop() {
            // What this directory's snapshots alone hold counts too.
            if snapshots.has_snapshots(dir) {
                let (names, bytes) = self.held_in(dir)?.charge();
                total.0 += names;
                total.1 = total.1.saturating_add(bytes);
            }
            self.for_each_child(dir, |child| {
                let (names, bytes) = match child.quota {
                    Some(q) => (q.ns_used, q.ss_used),
                    None => {
                        if child.is_dir {
                            stack.push(child.id);
                        }
                        child.quota_charge()
                    }
                };
                total.0 += names;
                total.1 += bytes;
            })?;
        }
        Ok(total)
    }

    /// Adds to `effects` the usage changes of the quota'd directories
    /// above whatever `effects` changes (what snapshots alone hold
    /// included), or fails (writing nothing) when a quota would be crossed.
    /// Shrinking is always allowed. Gives the quota'd directories whose
    /// values it changed.
    pub(super) fn account_quotas(&self, effects: &mut Effects) -> Result<Vec<u64>> {
        if self.quota_dirs.load(Ordering::SeqCst) == 0 {
            return Ok(Vec::new());
        }
        let mut order = Vec::new();
        let mut after: Overlay = HashMap::new();
        for (key, value) in effects.final_values(CF_INODES) {
            let Some(id) = decode_u64(key) else { continue };
            order.push(id);
            after.insert(id, value.map(decode_inode).transpose()?);
        }
        let (mut old, mut new) = (Chains::default(), Chains::default());
        let mut deltas = Deltas::default();
        let mut quota_dirs_deleted = 0u64;
        for id in order {
            let before = self.get_inode(id)?;
            match (before, after.get(&id).and_then(Option::as_ref)) {
                (None, None) => {}
                (None, Some(a)) => {
                    let to = new.of(self, Some(&after), a.parent)?;
                    deltas.charge(&to, a.quota_charge(), 1);
                }
                (Some(b), None) => {
                    let from = old.of(self, None, b.parent)?;
                    deltas.charge(&from, b.quota_charge(), -1);
                    if b.quota.is_some() {
                        quota_dirs_deleted += 1;
                    }
                }
                (Some(b), Some(a)) if b.parent == a.parent => {
                    if b.quota_charge() != a.quota_charge() {
                        let chain = old.of(self, None, b.parent)?;
                        deltas.charge(&chain, b.quota_charge(), -1);
                        deltas.charge(&chain, a.quota_charge(), 1);
                    }
                }
                (Some(b), Some(a)) => {
                    let from = old.of(self, None, b.parent)?;
                    let to = new.of(self, Some(&after), a.parent)?;
                    if from != to {
                        let leaving = self.subtree_usage(&b)?;
                        let arriving = if a.is_dir { leaving } else { a.quota_charge() };
                        deltas.charge(&from, leaving, -1);
                        deltas.charge(&to, arriving, 1);
                    }
                }
            }
        }
        // What snapshots alone hold counts under a snapshottable directory,
        // at its place as the mutation leaves it: a directory moved above
        // took its whole hold along (`subtree_usage`).
        for h in self.held_changes(effects)? {
            let chain = new.of(self, Some(&after), h.dir)?;
            deltas.held(&chain, h.charge, h.sign);
        }
        let Deltas { usage, arrived } = deltas;
        let mut changes: Vec<_> = usage.into_iter().filter(|(_, d)| *d != (0, 0)).collect();
        let mut written = Vec::new();
        changes.sort_unstable();
        for (id, (names, bytes)) in changes {
            let mut dir = match after.get(&id) {
                Some(None) => continue,
                Some(Some(inode)) => inode.clone(),
                None => match self.get_inode(id)? {
                    Some(inode) => inode,
                    None => continue,
                },
            };
            let Some(mut q) = dir.quota else { continue };
            let ns_after = i128::from(q.ns_used) + names;
            let ss_after = i128::from(q.ss_used) + bytes;
            let wide = |n: i128| i64::try_from(n).unwrap_or(i64::MAX);
            let (names_in, bytes_in) = arrived.get(&id).copied().unwrap_or_default();
            if names > 0 && names_in && q.ns_quota >= 0 && ns_after > i128::from(q.ns_quota) {
                return Err(NnError::NsQuotaExceeded {
                    path: self.path_of(&dir)?,
                    quota: q.ns_quota,
                    count: wide(ns_after),
                });
            }
            if bytes > 0 && bytes_in && q.ss_quota >= 0 && ss_after > i128::from(q.ss_quota) {
                return Err(NnError::DsQuotaExceeded {
                    path: self.path_of(&dir)?,
                    quota: q.ss_quota,
                    consumed: wide(ss_after),
                });
            }
            let narrow = |n: i128| u64::try_from(n.max(0)).unwrap_or(u64::MAX);
            q.ns_used = narrow(ns_after);
            q.ss_used = narrow(ss_after);
            dir.quota = Some(q);
            self.put_inode(effects, &dir)?;
            written.push(id);
        }
        // A quota'd directory deleted: one fewer to account for.
        if quota_dirs_deleted > 0 {
            let count = self.stored_quota_dirs()?.saturating_sub(quota_dirs_deleted);
            effects.put_cf(CF_META, META_QUOTA_DIRS, id_key(count));
        }
        Ok(written)
    }

    /// The path of a stored inode, from its parents.
    fn path_of(&self, inode: &Inode) -> Result<String> {
        let mut names = Vec::new();
        let mut cur = inode.clone();
        while cur.id != ROOT_ID && names.len() <= 100_000 {
            names.push(cur.name.clone());
            cur = self
                .get_inode(cur.parent)?
                .ok_or_else(|| NnError::Corrupt(format!("inode {} has no parent", cur.id)))?;
        }
        names.reverse();
        Ok(format!("/{}", names.join("/")))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::namespace::WaitDurable;
    use crate::namespace::tests::{closed_file, namespace};
    use granary_common::identity::Identity;
    use granary_proto as pb;

    const MIB: u64 = 1 << 20;

    fn quota(ns: &Namespace, path: &str) -> DirQuota {
        let r = ns.resolve(path).expect("resolve");
        r.existing().expect("exists").quota.expect("a quota")
    }

    /// Every quota'd directory's kept usage equals a walk of its subtree
    /// (what its snapshots alone hold included).
    pub(in crate::namespace) fn assert_usage_matches_a_walk(ns: &Namespace, paths: &[&str]) {
        for p in paths {
            let mut dir = ns
                .resolve(p)
                .expect("resolve")
                .existing()
                .expect("exists")
                .clone();
            let kept = dir.quota.take().expect("a quota");
            assert_eq!(
                ns.subtree_usage(&dir).expect("walk"),
                (kept.ns_used, kept.ss_used),
                "usage kept for {p}"
            );
        }
    }

    /// A file of `blocks` full blocks, written and closed.
    fn file_of(ns: &Namespace, su: &Caller, path: &str, repl: u32, blocks: u64) -> Result<Inode> {
        let (f, _) = ns.create(su, path, 0, "w", false, false, repl, MIB).durably()?;
        let mut prev: Option<pb::ExtendedBlock> = None;
        for _ in 0..blocks {
            let b = ns.add_block(su, path, f.id, "w", prev.as_ref()).durably()?;
            let mut e = b.block.to_extended();
            e.num_bytes = MIB;
            prev = Some(e);
        }
        ns.complete(su, path, f.id, "w", prev.as_ref(), |_| true)
            .durably()?;
        Ok(f)
    }

    #[test]
    fn a_name_quota_counts_files_and_directories_and_refuses_the_one_too_many() {
        let (_tmp, ns, su) = namespace();
        ns.mkdirs(&su, "/q/sub", 0, true).durably().expect("mkdirs");
        closed_file(&ns, &su, "/q/sub/f");
        ns.set_quota(&su, "/q", Some(4), None)
            .durably()
            .expect("set quota");
        assert_eq!(quota(&ns, "/q").ns_used, 3, "/q, /q/sub and /q/sub/f");
        closed_file(&ns, &su, "/q/g");
        let e = ns.mkdirs(&su, "/q/sub/d", 0, false).durably().expect_err("over");
        assert!(
            matches!(
                e,
                NnError::NsQuotaExceeded {
                    quota: 4,
                    count: 5,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "The NameSpace quota (directories and files) of directory /q is exceeded: quota=4 file count=5"
        );
        assert!(
            ns.resolve("/q/sub/d").expect("resolve").last().is_none(),
            "nothing past the quota"
        );
        let e = ns
            .create(&su, "/q/h", 0, "w", false, false, 1, 0)
            .durably()
            .expect_err("over");
        assert!(matches!(e, NnError::NsQuotaExceeded { .. }), "{e}");
        // mkdir -p of two levels is refused whole.
        ns.delete(&su, "/q/g", false).durably().expect("delete");
        let e = ns.mkdirs(&su, "/q/x/y", 0, true).durably().expect_err("two more");
        assert!(matches!(e, NnError::NsQuotaExceeded { .. }), "{e}");
        assert!(ns.resolve("/q/x").expect("resolve").last().is_none());
        ns.mkdirs(&su, "/q/x", 0, true).durably().expect("one more fits");
        assert_usage_matches_a_walk(&ns, &["/q"]);
        // Outside the quota'd tree nothing is limited.
        ns.mkdirs(&su, "/free/a/b/c", 0, true).durably().expect("free");
    }

    #[test]
    fn a_space_quota_charges_blocks_being_written_at_full_size_and_replication() {
        let (_tmp, ns, su) = namespace();
        ns.mkdirs(&su, "/s", 0, false).durably().expect("mkdirs");
        ns.set_quota(&su, "/s", None, Some((5 * MIB) as i64))
            .durably()
            .expect("quota");
        // Two full blocks at replication 2: 4 MiB.
        file_of(&ns, &su, "/s/a", 2, 2).expect("4 MiB fits");
        assert_eq!(quota(&ns, "/s").ss_used, 4 * MIB);
        // A third block would charge 2 MiB more while being written.
        let (f, _) = ns
            .create(&su, "/s/b", 0, "w", false, false, 2, MIB)
            .durably()
            .expect("create");
        let e = ns
            .add_block(&su, "/s/b", f.id, "w", None)
            .durably()
            .expect_err("over");
        assert!(matches!(e, NnError::DsQuotaExceeded { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("The DiskSpace quota of /s is exceeded: quota = 5242880 B = 5 M"),
            "{e}"
        );
        let b = ns
            .resolve("/s/b")
            .expect("resolve")
            .existing()
            .expect("b")
            .clone();
        assert!(b.blocks.is_empty(), "no block past the quota");
        // setrep up crosses it too; down frees.
        let e = ns.set_replication(&su, "/s/a", 3).durably().expect_err("6 MiB");
        assert!(matches!(e, NnError::DsQuotaExceeded { .. }), "{e}");
        ns.set_replication(&su, "/s/a", 1).durably().expect("down");
        assert_eq!(quota(&ns, "/s").ss_used, 2 * MIB);
        let blk = ns
            .add_block(&su, "/s/b", f.id, "w", None)
            .durably()
            .expect("fits now");
        assert_eq!(
            quota(&ns, "/s").ss_used,
            4 * MIB,
            "a block being written counts whole"
        );
        let mut last = blk.block.to_extended();
        last.num_bytes = 1000;
        ns.complete(&su, "/s/b", f.id, "w", Some(&last), |_| true)
            .durably()
            .expect("complete");
        assert_eq!(
            quota(&ns, "/s").ss_used,
            2 * MIB + 2000,
            "completed at its length"
        );
        assert_usage_matches_a_walk(&ns, &["/s"]);
        ns.delete(&su, "/s/a", false).durably().expect("delete");
        assert_eq!(quota(&ns, "/s").ss_used, 2000);
    }

    #[test]
    fn renames_move_usage_between_quota_trees_and_refuse_to_overfill_one() {
        let (_tmp, ns, su) = namespace();
        for d in ["/a/in/deep", "/b", "/c"] {
            ns.mkdirs(&su, d, 0, true).durably().expect("mkdirs");
        }
        file_of(&ns, &su, "/a/in/deep/f", 3, 1).expect("file");
        file_of(&ns, &su, "/a/in/g", 1, 2).expect("file");
        ns.set_quota(&su, "/a", Some(100), Some((100 * MIB) as i64))
            .durably()
            .expect("quota");
        ns.set_quota(&su, "/b", Some(100), Some((100 * MIB) as i64))
            .durably()
            .expect("quota");
        ns.set_quota(&su, "/b", Some(4), None)
            .durably()
            .expect("names only changed");
        assert_eq!(quota(&ns, "/b").ss_quota, (100 * MIB) as i64, "space quota kept");
        // /a/in holds 4 names: too many for /b (1 used, 4 allowed).
        let e = ns
            .rename(&su, "/a/in", "/b/in", false)
            .durably()
            .expect_err("over");
        assert!(matches!(e, NnError::NsQuotaExceeded { .. }), "{e}");
        assert!(
            ns.resolve("/a/in/g").expect("resolve").last().is_some(),
            "nothing moved"
        );
        ns.set_quota(&su, "/b", Some(5), None).durably().expect("quota");
        ns.rename(&su, "/a/in", "/b/in", false).durably().expect("fits");
        assert_eq!((quota(&ns, "/a").ns_used, quota(&ns, "/a").ss_used), (1, 0));
        assert_eq!((quota(&ns, "/b").ns_used, quota(&ns, "/b").ss_used), (5, 5 * MIB));
        // A file moves on its own; a quota'd directory moves with its usage.
        ns.rename(&su, "/b/in/g", "/c/g", false)
            .durably()
            .expect("file out");
        ns.set_quota(&su, "/b/in", Some(10), None)
            .durably()
            .expect("nested quota");
        ns.rename(&su, "/b/in", "/a/in", false).durably().expect("back");
        assert_eq!((quota(&ns, "/a").ns_used, quota(&ns, "/a").ss_used), (4, 3 * MIB));
        assert_eq!((quota(&ns, "/b").ns_used, quota(&ns, "/b").ss_used), (1, 0));
        // Overwriting a file counts the one replaced as gone.
        file_of(&ns, &su, "/c/h", 1, 1).expect("file");
        ns.rename(&su, "/c/h", "/a/in/deep/f", true)
            .durably()
            .expect("overwrite");
        assert_eq!((quota(&ns, "/a").ns_used, quota(&ns, "/a").ss_used), (4, MIB));
        assert_usage_matches_a_walk(&ns, &["/a", "/b", "/a/in"]);
        // A recursive delete takes the whole subtree off every quota above,
        // and a quota'd directory deleted no longer counts as one.
        assert_eq!(ns.stored_quota_dirs().expect("count"), 3);
        ns.delete(&su, "/a/in", true).durably().expect("delete");
        assert_eq!((quota(&ns, "/a").ns_used, quota(&ns, "/a").ss_used), (1, 0));
        assert_eq!(ns.stored_quota_dirs().expect("count"), 2);
        ns.delete(&su, "/a", true).durably().expect("delete");
        ns.delete(&su, "/b", true).durably().expect("delete");
        assert_eq!(ns.stored_quota_dirs().expect("count"), 0);
        assert_eq!(ns.quota_dirs.load(Ordering::SeqCst), 0, "accounting off again");
    }

    #[test]
    fn quotas_are_the_superusers_and_survive_a_restart_and_clearing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = crate::namespace::NamespaceConfig {
            superuser: "hdfs".into(),
            ..Default::default()
        };
        {
            let ns = Namespace::create_new(tmp.path(), cfg.clone(), &Default::default()).expect("ns");
            let su = ns.caller(Identity::new("hdfs"));
            let alice = ns.caller(Identity::new("alice"));
            ns.mkdirs(&su, "/q", 0o777, false).durably().expect("mkdirs");
            let e = ns
                .set_quota(&alice, "/q", Some(10), None)
                .durably()
                .expect_err("not super");
            assert!(matches!(e, NnError::AccessDenied(_)), "{e}");
            for bad in [(Some(0), None), (Some(-5), None), (None, Some(-2))] {
                let e = ns
                    .set_quota(&su, "/q", bad.0, bad.1)
                    .durably()
                    .expect_err("invalid");
                assert!(matches!(e, NnError::InvalidArgument(_)), "{e}");
            }
            closed_file(&ns, &su, "/f");
            let e = ns
                .set_quota(&su, "/f", Some(3), None)
                .durably()
                .expect_err("a file");
            assert!(matches!(e, NnError::NotDirectory(_)), "{e}");
            ns.set_quota(&su, "/q", Some(3), None).durably().expect("quota");
            closed_file(&ns, &alice, "/q/1");
            closed_file(&ns, &alice, "/q/2");
        }
        let ns = Namespace::open(tmp.path(), cfg, &Default::default()).expect("reopen");
        let su = ns.caller(Identity::new("hdfs"));
        assert_eq!(quota(&ns, "/q").ns_used, 3, "kept across the restart");
        let e = ns
            .mkdirs(&su, "/q/3", 0, false)
            .durably()
            .expect_err("still enforced");
        assert!(matches!(e, NnError::NsQuotaExceeded { .. }), "{e}");
        ns.set_quota(&su, "/q", Some(QUOTA_RESET), None)
            .durably()
            .expect("clear");
        assert!(
            ns.resolve("/q")
                .expect("r")
                .existing()
                .expect("q")
                .quota
                .is_none()
        );
        assert_eq!(ns.stored_quota_dirs().expect("count"), 0);
        assert_eq!(ns.quota_dirs.load(Ordering::SeqCst), 0, "accounting off again");
        ns.mkdirs(&su, "/q/3", 0, false).durably().expect("no quota left");
    }
}
