//! Walking paths to inodes, and the execute checks on the way.

use std::fmt;
use std::sync::atomic::Ordering;

use super::Namespace;
use super::snapshot::DOT_SNAPSHOT;
use crate::error::{NnError, Result};
use crate::inode::*;
use crate::permission::{Access, Caller};
use granary_common::path as gpath;

/// A path resolved as far as it exists: `inodes[0]` is the root and
/// `inodes[i]` is `comps[i - 1]`.
pub struct Resolved {
    pub path: String,
    pub comps: Vec<String>,
    pub inodes: Vec<Inode>,
    /// The snapshot the path's last inodes were read at (a read of
    /// `DIR/.snapshot/NAME/...`); None: as they are now.
    pub at: Option<u64>,
    /// Set when the path is `DIR/.snapshot` itself: the directory whose
    /// snapshots it lists.
    pub snapshots_of: Option<u64>,
}

impl Resolved {
    /// The inode the whole path names, if it exists.
    pub fn last(&self) -> Option<&Inode> {
        if self.inodes.len() == self.comps.len() + 1 {
            self.inodes.last()
        } else {
            None
        }
    }

    /// The parent directory of the path's last component, if it exists.
    pub fn parent(&self) -> Option<&Inode> {
        if self.comps.is_empty() {
            return None;
        }
        self.inodes.get(self.comps.len() - 1)
    }

    /// The path of `inodes[i]`, formatted only when shown: checks pass
    /// it for the error they might make, and building a path at every
    /// level of a walk costs its depth squared.
    pub fn prefix(&self, i: usize) -> Prefix<'_> {
        Prefix(&self.comps[..i])
    }

    pub(super) fn existing(&self) -> Result<&Inode> {
        self.last().ok_or_else(|| NnError::NotFound(self.path.clone()))
    }
}

/// The first components of a [`Resolved`] path, displayed as a path.
#[derive(Clone, Copy)]
pub struct Prefix<'a>(&'a [String]);

impl fmt::Display for Prefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for c in self.0 {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

/// Where a walk over a subtree is: the directories it entered, each with
/// its name and the directory it was entered from, so that an entry's path
/// is formatted only for an error that names it rather than joined for
/// every entry (which costs the depth each time).
pub(super) struct SubtreePaths<'a> {
    top: &'a str,
    dirs: Vec<(Within, String)>,
}

/// The entered directory (an index into a [`SubtreePaths`]) an entry of a
/// subtree walk is in; none for the walk's top.
pub(super) type Within = Option<usize>;

impl<'a> SubtreePaths<'a> {
    /// A walk whose top is at `top`.
    pub(super) fn new(top: &'a str) -> Self {
        Self {
            top,
            dirs: Vec::new(),
        }
    }

    /// Notes that the walk enters directory `name` (in `within`); the
    /// entries found in it are within the returned index.
    pub(super) fn enter(&mut self, within: Within, name: &str) -> usize {
        self.dirs.push((within, name.to_string()));
        self.dirs.len() - 1
    }

    /// The path of entry `name` in `within`, formatted when shown.
    pub(super) fn path<'p>(&'p self, within: Within, name: &'p str) -> impl fmt::Display + 'p {
        SubtreePath {
            paths: self,
            within,
            name,
        }
    }
}

struct SubtreePath<'p> {
    paths: &'p SubtreePaths<'p>,
    within: Within,
    name: &'p str,
}

impl fmt::Display for SubtreePath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names from the entry up to (not including) the top, then written top down.
        let mut names = Vec::new();
        let mut within = self.within;
        if within.is_some() {
            names.push(self.name);
        }
        while let Some(i) = within {
            let (up, name) = &self.paths.dirs[i];
            if up.is_some() {
                names.push(name);
            }
            within = *up;
        }
        f.write_str(self.paths.top)?;
        for (i, name) in names.iter().rev().enumerate() {
            if i > 0 || self.paths.top != "/" {
                f.write_str("/")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

impl Namespace {
    pub(super) fn lookup(&self, parent: u64, name: &str) -> Result<Option<u64>> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_DIRENTS)?, dirent_key(parent, name))?
            .as_deref()
            .and_then(decode_u64))
    }

    /// Walks `path` from the root as far as it exists, for a change: a
    /// path into a snapshot (through `.snapshot`) is refused. A file met
    /// before the last component is an error: a file cannot have children.
    pub fn resolve(&self, path: &str) -> Result<Resolved> {
        let comps: Vec<String> = gpath::components(path)?.into_iter().map(String::from).collect();
        if comps.iter().any(|c| c == DOT_SNAPSHOT) {
            return Err(NnError::SnapshotReadOnly(path.to_string()));
        }
        self.walk(path, comps)
    }

    /// Walks `path` for a read: as [`Namespace::resolve`], and under a
    /// snapshottable directory `.snapshot` leads into its snapshots:
    /// `DIR/.snapshot` is a read-only directory of them, and what follows
    /// `DIR/.snapshot/NAME` is read as it was when the snapshot was taken.
    pub fn resolve_view(&self, path: &str) -> Result<Resolved> {
        let comps: Vec<String> = gpath::components(path)?.into_iter().map(String::from).collect();
        self.walk(path, comps)
    }

    /// The walk of [`Namespace::resolve_view`] (a `.snapshot` component
    /// never reaches it from [`Namespace::resolve`]).
    fn walk(&self, path: &str, comps: Vec<String>) -> Result<Resolved> {
        let root = self
            .get_inode(ROOT_ID)?
            .ok_or_else(|| NnError::Corrupt("root inode missing".into()))?;
        let mut inodes = vec![root];
        let mut at = None;
        let mut snapshots_of = None;
        for (i, c) in comps.iter().enumerate() {
            let cur = &inodes[i];
            if let Some(dir) = snapshots_of.take() {
                // A snapshot's name: the directory as it was then.
                let Some(rec) = self.record(dir, c)? else {
                    break;
                };
                let mut top = self
                    .inode_at(dir, Some(rec.id))?
                    .ok_or_else(|| NnError::Corrupt(format!("snapshot {c:?} lost its directory")))?;
                top.name = c.clone();
                top.mtime = rec.ctime;
                inodes.push(top);
                at = Some(rec.id);
                continue;
            }
            if !cur.is_dir {
                return Err(NnError::ParentNotDirectory(Prefix(&comps[..i]).to_string()));
            }
            if c == DOT_SNAPSHOT && at.is_none() && self.snap_state().is_snapshottable(cur.id) {
                let listing = Inode {
                    name: DOT_SNAPSHOT.to_string(),
                    children: self.snapshots_of(cur.id)?.len() as u64,
                    quota: None,
                    ..cur.clone()
                };
                snapshots_of = Some(cur.id);
                inodes.push(listing);
                continue;
            }
            let Some(child) = self.lookup_at(cur.id, c, at)? else {
                break;
            };
            let inode = self.inode_at(child, at)?.ok_or_else(|| {
                NnError::Corrupt(format!("directory entry {c:?} points at missing inode {child}"))
            })?;
            inodes.push(inode);
        }
        // `.snapshot` as the last component: its listing.
        let snapshots_of = snapshots_of.filter(|_| inodes.len() == comps.len() + 1);
        Ok(Resolved {
            path: path.to_string(),
            comps,
            inodes,
            at,
            snapshots_of,
        })
    }

    /// `path` walked (for a change) to an existing directory the caller
    /// may reach: the walk and the directory.
    pub(super) fn resolve_dir(&self, caller: &Caller, path: &str) -> Result<(Resolved, Inode)> {
        let r = self.resolve(path)?;
        self.check_traverse(caller, &r)?;
        let dir = r.existing()?.clone();
        if !dir.is_dir {
            return Err(NnError::NotDirectory(path.to_string()));
        }
        Ok((r, dir))
    }

    /// Execute permission on every directory walked through to reach the path's last component.
    pub(super) fn check_traverse(&self, caller: &Caller, r: &Resolved) -> Result<()> {
        let n = r.inodes.len().min(r.comps.len());
        for i in 0..n {
            caller.check(&r.inodes[i], Access::Execute, r.prefix(i))?;
        }
        Ok(())
    }

    /// `path` resolved under the namespace lock, from its walk before the
    /// lock (made when `structure` was `seen`) if no structural change came
    /// in between, else from the root.
    pub(super) fn resolve_under_lock(
        &self,
        walked: Option<Resolved>,
        seen: u64,
        path: &str,
    ) -> Result<Resolved> {
        match walked {
            Some(w) if self.structure.load(Ordering::SeqCst) == seen => self.refresh_parent(w),
            _ => self.resolve(path),
        }
    }

    /// A path walked outside the lock, with its parent directory and last
    /// component read again: valid under the lock when no structural change
    /// happened since the walk. Walks again when the parent was missing (the
    /// deepest existing directory may be written then).
    fn refresh_parent(&self, walked: Resolved) -> Result<Resolved> {
        let n = walked.comps.len();
        if n == 0 || walked.inodes.len() < n {
            return self.resolve(&walked.path);
        }
        let mut inodes = walked.inodes;
        let parent_id = inodes[n - 1].id;
        inodes.truncate(n - 1);
        let parent = match self.get_inode(parent_id)? {
            Some(p) if p.is_dir => p,
            _ => return self.resolve(&walked.path),
        };
        let child = self.lookup(parent.id, &walked.comps[n - 1])?;
        inodes.push(parent);
        if let Some(id) = child {
            let inode = self.get_inode(id)?.ok_or_else(|| {
                NnError::Corrupt(format!(
                    "directory entry {:?} points at missing inode {id}",
                    walked.comps[n - 1]
                ))
            })?;
            inodes.push(inode);
        }
        Ok(Resolved {
            path: walked.path,
            comps: walked.comps,
            inodes,
            at: None,
            snapshots_of: None,
        })
    }

    pub fn get_file_info(&self, caller: &Caller, path: &str) -> Result<Inode> {
        let r = self.resolve_view(path)?;
        self.check_traverse(caller, &r)?;
        r.existing().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::WaitDurable;
    use crate::namespace::tests::namespace;
    use granary_common::identity::Identity;
    use std::sync::Arc;

    /// Runs `f` once, in this thread's next create or rename, between its
    /// walk and the namespace lock (the failpoint `namespace::after_walk`).
    /// Other threads' calls pass through: tests may share the process.
    fn in_walk_window(ns: &Arc<Namespace>, f: impl FnOnce(&Namespace) + Send + 'static) {
        let ns = Arc::downgrade(ns);
        let me = std::thread::current().id();
        let f = parking_lot::Mutex::new(Some(f));
        fail::cfg_callback("namespace::after_walk", move || {
            if std::thread::current().id() != me {
                return;
            }
            // Taken first: f's own renames and creates come back here.
            let Some(f) = f.lock().take() else {
                return;
            };
            if let Some(ns) = ns.upgrade() {
                f(&ns);
            }
        })
        .expect("failpoint");
    }

    /// Paths in a subtree walk come out as joining every name on the way would make them.
    #[test]
    fn subtree_paths_are_the_joined_names() {
        for top in ["/", "/t"] {
            let mut paths = SubtreePaths::new(top);
            assert_eq!(paths.path(None, "ignored").to_string(), top);
            let t = paths.enter(None, "ignored");
            let a = paths.enter(Some(t), "a");
            let b = paths.enter(Some(a), "b");
            assert_eq!(paths.path(Some(t), "a").to_string(), gpath::join(top, "a"));
            assert_eq!(paths.path(Some(b), "c").to_string(), gpath::join(top, "a/b/c"));
        }
        let r = Resolved {
            path: "/x/y".into(),
            comps: vec!["x".into(), "y".into()],
            inodes: Vec::new(),
            at: None,
            snapshots_of: None,
        };
        assert_eq!(r.prefix(0).to_string(), "/");
        assert_eq!(r.prefix(2).to_string(), "/x/y");
    }

    /// A create walks its path before taking the namespace lock; a rename
    /// in that window must not make it create the file elsewhere.
    #[test]
    fn a_create_lands_at_its_path_when_the_parent_moves_during_its_walk() {
        let (_tmp, ns, su) = namespace();
        let ns = Arc::new(ns);
        ns.mkdirs(&su, "/a/b", 0, true).durably().expect("mkdirs");
        let hook_su = su.clone();
        in_walk_window(&ns, move |ns| {
            ns.rename(&hook_su, "/a/b", "/a/moved", false)
                .durably()
                .expect("rename");
            ns.mkdirs(&hook_su, "/a/b", 0, false)
                .durably()
                .expect("mkdirs again");
        });
        let (file, _) = ns
            .create(&su, "/a/b/f", 0, "writer", false, false, 1, 0)
            .durably()
            .expect("create");
        assert_eq!(ns.get_file_info(&su, "/a/b/f").expect("stat").id, file.id);
        assert!(
            ns.get_file_info(&su, "/a/moved/f").is_err(),
            "created in the moved directory"
        );
        ns.check_consistency().expect("consistent");

        // The parent deleted in the window: the create fails, nothing is orphaned.
        in_walk_window(&ns, move |ns| {
            ns.delete(&su, "/a/b", true).durably().expect("delete");
        });
        let su = ns.caller(Identity::new("hdfs"));
        assert!(matches!(
            ns.create(&su, "/a/b/g", 0, "writer", false, false, 1, 0)
                .durably(),
            Err(NnError::NotFound(_))
        ));
        ns.check_consistency().expect("consistent");
        fail::remove("namespace::after_walk");
    }

    /// A rename walks both paths before taking the namespace lock; what
    /// changes in that window must decide its outcome, not the walk.
    #[test]
    fn a_rename_acts_on_the_namespace_as_it_is_under_the_lock() {
        let (_tmp, ns, su) = namespace();
        let ns = Arc::new(ns);
        ns.mkdirs(&su, "/d/sub", 0, true).durably().expect("mkdirs");
        let f = ns
            .create(&su, "/d/sub/f", 0, "w", false, false, 1, 0)
            .durably()
            .expect("create")
            .0;

        // Another caller's rename, run between the walk and the lock.
        let rename_in_window = |from: &'static str, to: &'static str| {
            let h = su.clone();
            in_walk_window(&ns, move |ns| {
                ns.rename(&h, from, to, false)
                    .durably()
                    .expect("rename in the window");
            });
        };

        // The source's directory moves in the window: the old path is gone.
        rename_in_window("/d/sub", "/d/moved");
        assert!(matches!(
            ns.rename(&su, "/d/sub/f", "/d/g", false).durably(),
            Err(NnError::NotFound(_))
        ));
        assert_eq!(ns.get_file_info(&su, "/d/moved/f").expect("stat").id, f.id);

        // Another file rename takes the source away in the window.
        rename_in_window("/d/moved/f", "/d/moved/f2");
        assert!(matches!(
            ns.rename(&su, "/d/moved/f", "/d/moved/g", false).durably(),
            Err(NnError::NotFound(_))
        ));

        // A file appears at the destination in the window: no overwrite.
        let other = ns
            .create(&su, "/d/other", 0, "w", false, false, 1, 0)
            .durably()
            .expect("create")
            .0;
        rename_in_window("/d/other", "/d/moved/g");
        assert!(matches!(
            ns.rename(&su, "/d/moved/f2", "/d/moved/g", false).durably(),
            Err(NnError::AlreadyExists(_))
        ));
        assert_eq!(ns.get_file_info(&su, "/d/moved/g").expect("stat").id, other.id);
        assert_eq!(ns.get_file_info(&su, "/d/moved/f2").expect("stat").id, f.id);

        // The destination's directory moves away in the window.
        ns.mkdirs(&su, "/x/y", 0, true).durably().expect("mkdirs");
        rename_in_window("/x", "/d/x");
        assert!(matches!(
            ns.rename(&su, "/d/moved/f2", "/x/y/f", false).durably(),
            Err(NnError::NotFound(_))
        ));
        assert_eq!(ns.get_file_info(&su, "/d/moved/f2").expect("stat").id, f.id);
        ns.check_consistency().expect("consistent");
        fail::remove("namespace::after_walk");
    }
}
