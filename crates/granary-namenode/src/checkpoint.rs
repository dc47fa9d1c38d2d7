//! Metadata checkpoints (`Checkpoint` RPC): a consistent copy of the
//! namespace written while the namenode serves, always into the directory
//! the operator configured (`checkpoint_dir`), never anywhere a caller names.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{NnError, Result};
use crate::state::NamenodeState;

impl NamenodeState {
    /// Writes a consistent copy of the metadata into a new directory of the
    /// checkpoint directory: the VERSION file and a RocksDB checkpoint of the
    /// namespace, which a namenode can start from as its data dir.
    /// `requested` is the new directory's name, or its absolute path inside
    /// the checkpoint directory. Everything in it is readable by the
    /// namenode's user only. Returns where it went and the bytes written.
    pub fn checkpoint(&self, requested: &str) -> Result<(PathBuf, u64)> {
        let root = self.config().checkpoint_path();
        let internal = |what: &str, p: &Path, e: std::io::Error| {
            NnError::Internal(format!("checkpoint {what} {}: {e}", p.display()))
        };
        // The whole namespace goes in there: its owner only.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(|e| internal("directory", &root, e))?;
        let root = std::fs::canonicalize(&root).map_err(|e| internal("directory", &root, e))?;
        let dir = root.join(checkpoint_name(requested, &root)?);
        // Not recursive: fails on anything already there, a symlink included.
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(NnError::AlreadyExists(dir.display().to_string()));
            }
            Err(e) => return Err(internal("directory", &dir, e)),
        }
        let io = |e: std::io::Error| internal("directory", &dir, e);
        let ns_dir = crate::layout::namespace_dir(&dir);
        rocksdb::checkpoint::Checkpoint::new(self.ns().db())
            .and_then(|c| c.create_checkpoint(&ns_dir))
            .map_err(|e| NnError::Internal(format!("rocksdb checkpoint: {e}")))?;
        // RocksDB makes its files as the umask says. (Its hard links share
        // their mode with the live files, which are the namenode's alone too.)
        set_mode(&ns_dir, 0o700).map_err(io)?;
        let mut bytes = 0;
        for e in std::fs::read_dir(&ns_dir).map_err(io)? {
            let e = e.map_err(io)?;
            set_mode(&e.path(), 0o600).map_err(io)?;
            bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
        // The cluster secret, when kept with the metadata: a namenode started
        // on the checkpoint must still admit the cluster's datanodes.
        let secret = self.config().data_dir.join("cluster-secret");
        if self.config().cluster_secret_path() == secret && secret.exists() {
            let to = dir.join("cluster-secret");
            std::fs::copy(&secret, &to).map_err(io)?;
            set_mode(&to, 0o600).map_err(io)?;
        }
        // VERSION last: a directory with it is a complete checkpoint.
        let version = dir.join("VERSION");
        std::fs::copy(self.config().data_dir.join("VERSION"), &version).map_err(io)?;
        set_mode(&version, 0o600).map_err(io)?;
        Ok((dir, bytes))
    }
}

fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

/// The name of the new checkpoint directory `requested` names inside
/// `root` (canonical): a single path component, or an absolute path whose
/// parent, symlinks resolved, is `root`.
fn checkpoint_name(requested: &str, root: &Path) -> Result<String> {
    let outside = || {
        NnError::InvalidArgument(format!(
            "checkpoint {requested:?}: give a name, or an absolute path in the checkpoint directory {}",
            root.display()
        ))
    };
    let p = Path::new(requested);
    let comps: Vec<Component> = p.components().collect();
    if requested.is_empty()
        || requested.contains('\0')
        || comps
            .iter()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(outside());
    }
    let name = match comps.as_slice() {
        [Component::Normal(n)] => n,
        [Component::RootDir, .., Component::Normal(n)] => {
            let parent = p.parent().ok_or_else(outside)?;
            match std::fs::canonicalize(parent) {
                Ok(c) if c == root => n,
                _ => return Err(outside()),
            }
        }
        _ => return Err(outside()),
    };
    name.to_str().map(str::to_string).ok_or_else(outside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_named_inside_the_checkpoint_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(tmp.path()).expect("canonical");
        let outside = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path(), root.join("link")).expect("symlink");
        let inside = root.join("b").display().to_string();
        assert_eq!(checkpoint_name("nightly", &root).expect("a name"), "nightly");
        assert_eq!(checkpoint_name(&inside, &root).expect("inside"), "b");
        let escapes = [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/etc/granary",
            &format!("{}/../x", root.display()),
            &format!("{}/link/x", root.display()),
            &format!("{}/x", outside.path().display()),
        ];
        for bad in escapes {
            let e = checkpoint_name(bad, &root).expect_err(bad);
            assert!(matches!(e, NnError::InvalidArgument(_)), "{bad}: {e}");
        }
    }
}
