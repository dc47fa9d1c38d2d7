//! POSIX-style permission checks (HDFS `FSPermissionChecker`): owner, group
//! and other bits, and the sticky bit; the superuser and members of the
//! supergroup pass every check.

use std::fmt::Display;
use std::sync::Arc;

use crate::error::{NnError, Result};
use crate::inode::Inode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Execute,
    ReadWrite,
    ReadExecute,
    WriteExecute,
    All,
}

impl Access {
    /// The rwx bits this access needs, as in the "other" triplet.
    fn bits(self) -> u32 {
        match self {
            Self::Read => 0o4,
            Self::Write => 0o2,
            Self::Execute => 0o1,
            Self::ReadWrite => 0o6,
            Self::ReadExecute => 0o5,
            Self::WriteExecute => 0o3,
            Self::All => 0o7,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Read => "READ",
            Self::Write => "WRITE",
            Self::Execute => "EXECUTE",
            Self::ReadWrite => "READ_WRITE",
            Self::ReadExecute => "READ_EXECUTE",
            Self::WriteExecute => "WRITE_EXECUTE",
            Self::All => "ALL",
        }
    }
}

/// The caller as the namenode judges it: the user the request names, in
/// the groups the namenode's group mapping gives that user
/// ([`Namespace::caller`](crate::namespace::Namespace::caller)).
#[derive(Debug, Clone)]
pub struct Caller {
    user: String,
    groups: Arc<[String]>,
    pub is_super: bool,
}

impl Caller {
    pub fn new(
        user: impl Into<String>,
        groups: impl Into<Arc<[String]>>,
        superuser: &str,
        supergroup: &str,
    ) -> Self {
        let (user, groups) = (user.into(), groups.into());
        let is_super = user == superuser || groups.iter().any(|g| g == supergroup);
        Self {
            user,
            groups,
            is_super,
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// Whether the caller is `user` or the superuser (who may act for anyone).
    pub fn acts_as(&self, user: &str) -> bool {
        self.is_super || self.user() == user
    }

    /// The lease conflict on open file `file` as this caller is told of
    /// it: the holder (a client name) is named only to the user writing
    /// the file and to the superuser.
    pub fn lease_conflict(&self, file: &Inode, path: impl Display) -> NnError {
        let holder = file.under_construction.as_ref().map(|uc| uc.client_name.clone());
        let writer = file.writer_user().unwrap_or_default();
        let named = self.acts_as(writer);
        if !named {
            tracing::debug!(user = %self.user(), writer, holder = ?holder, path = %path, "write call on a file another user is writing refused");
        }
        NnError::LeaseConflict {
            path: path.to_string(),
            holder: holder.filter(|_| named),
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Fails unless the caller has `access` on `inode` (shown as `path`,
    /// which is formatted only when the check fails).
    pub fn check(&self, inode: &Inode, access: Access, path: impl Display) -> Result<()> {
        if self.is_super {
            return Ok(());
        }
        let need = access.bits();
        let granted = if inode.owner == self.user {
            (inode.mode >> 6) & 0o7
        } else if self.in_group(&inode.group) {
            (inode.mode >> 3) & 0o7
        } else {
            inode.mode & 0o7
        };
        if granted & need == need {
            Ok(())
        } else {
            Err(self.denied(inode, access.name(), path))
        }
    }

    /// Fails unless the caller owns `inode` or is the superuser.
    pub fn check_owner(&self, inode: &Inode, path: &str) -> Result<()> {
        if self.is_super || inode.owner == self.user {
            Ok(())
        } else {
            Err(NnError::PermissionDenied {
                user: self.user.clone(),
                access: "OWNER".into(),
                inode: format!("\"{path}\":{}:{}", inode.owner, inode.group),
            })
        }
    }

    /// HDFS's sticky bit: in a directory whose mode has 0o1000, an entry may
    /// be deleted, moved away or replaced only by its owner, the directory's
    /// owner or the superuser. The paths are formatted only on failure.
    pub fn check_sticky(
        &self,
        parent: &Inode,
        parent_path: impl Display,
        child: &Inode,
        child_path: impl Display,
    ) -> Result<()> {
        if self.is_super || parent.mode & STICKY == 0 || parent.owner == self.user || child.owner == self.user
        {
            return Ok(());
        }
        Err(NnError::StickyBit {
            user: self.user.clone(),
            inode: describe(child, child_path),
            parent: describe(parent, parent_path),
        })
    }

    fn denied(&self, inode: &Inode, access: &str, path: impl Display) -> NnError {
        NnError::PermissionDenied {
            user: self.user.clone(),
            access: access.into(),
            inode: describe(inode, path),
        }
    }
}

/// The sticky bit (restricted deletion) of a directory's mode.
pub const STICKY: u32 = 0o1000;

/// `"/path":owner:group:drwxr-xr-x`, as HDFS names an inode in a denial.
fn describe(inode: &Inode, path: impl Display) -> String {
    format!(
        "\"{path}\":{}:{}:{}{}",
        inode.owner,
        inode.group,
        if inode.is_dir { "d" } else { "-" },
        mode_string(inode.mode)
    )
}

/// "rwxr-xr-x" for 0o755; the sticky bit shows as HDFS shows it, in the
/// last place: "rwxrwxrwt" for 0o1777, "rwxrwxrwT" without execute for others.
pub fn mode_string(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    for shift in [6, 3, 0] {
        let t = (mode >> shift) & 0o7;
        s.push(if t & 4 != 0 { 'r' } else { '-' });
        s.push(if t & 2 != 0 { 'w' } else { '-' });
        s.push(if t & 1 != 0 { 'x' } else { '-' });
    }
    if mode & STICKY != 0 {
        s.pop();
        s.push(if mode & 0o1 != 0 { 't' } else { 'T' });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inode(owner: &str, group: &str, mode: u32) -> Inode {
        Inode {
            owner: owner.into(),
            group: group.into(),
            mode,
            is_dir: true,
            ..Default::default()
        }
    }

    #[test]
    fn owner_group_and_other_bits_apply_in_order() {
        let eng = || vec!["eng".to_string()];
        let alice = Caller::new("alice", eng(), "root", "supergroup");
        let bob = Caller::new("bob", eng(), "root", "supergroup");
        let eve = Caller::new("eve", vec![], "root", "supergroup");
        let d = inode("alice", "eng", 0o750);
        assert!(alice.check(&d, Access::Write, "/d").is_ok());
        assert!(bob.check(&d, Access::ReadExecute, "/d").is_ok());
        assert!(bob.check(&d, Access::Write, "/d").is_err());
        let err = eve.check(&d, Access::Execute, "/d").unwrap_err().to_string();
        assert!(
            err.contains("user=eve") && err.contains("EXECUTE") && err.contains("/d"),
            "{err}"
        );
        // The owner triplet decides for the owner even when "other" would allow more.
        let odd = inode("alice", "eng", 0o007);
        assert!(alice.check(&odd, Access::Read, "/o").is_err());
    }

    #[test]
    fn superuser_and_supergroup_pass() {
        let root = Caller::new("root", vec![], "root", "supergroup");
        let admin = Caller::new("x", vec!["supergroup".to_string()], "root", "supergroup");
        let d = inode("alice", "eng", 0o000);
        assert!(root.check(&d, Access::Write, "/d").is_ok());
        assert!(admin.check_owner(&d, "/d").is_ok());
    }

    #[test]
    fn mode_strings() {
        assert_eq!(mode_string(0o755), "rwxr-xr-x");
        assert_eq!(mode_string(0o640), "rw-r-----");
        assert_eq!(mode_string(0o1777), "rwxrwxrwt");
        assert_eq!(mode_string(0o1770), "rwxrwx--T");
    }

    #[test]
    fn sticky_directories_keep_entries_to_their_owners() {
        let bob = Caller::new("bob", vec![], "root", "supergroup");
        let root = Caller::new("root", vec![], "root", "supergroup");
        let tmp = inode("hdfs", "supergroup", 0o1777);
        let mut f = inode("alice", "supergroup", 0o644);
        f.is_dir = false;
        let err = bob
            .check_sticky(&tmp, "/tmp", &f, "/tmp/a")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "Permission denied by sticky bit: user=bob, \
             path=\"/tmp/a\":alice:supergroup:-rw-r--r--, \
             parent=\"/tmp\":hdfs:supergroup:drwxrwxrwt"
        );
        assert!(root.check_sticky(&tmp, "/tmp", &f, "/tmp/a").is_ok());
        let open = inode("hdfs", "supergroup", 0o777);
        assert!(bob.check_sticky(&open, "/tmp", &f, "/tmp/a").is_ok());
        f.owner = "bob".into();
        assert!(bob.check_sticky(&tmp, "/tmp", &f, "/tmp/a").is_ok());
        let bobs = inode("bob", "supergroup", 0o1777);
        f.owner = "alice".into();
        assert!(bob.check_sticky(&bobs, "/tmp", &f, "/tmp/a").is_ok());
    }
}
