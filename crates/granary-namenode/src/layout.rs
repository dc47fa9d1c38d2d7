//! The metadata directory: a `VERSION` file naming the cluster and layout,
//! and the RocksDB namespace under `namespace/`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const LAYOUT_NAME: &str = "granary-namenode";
pub const LAYOUT_VERSION: u32 = 1;
const VERSION_FILE: &str = "VERSION";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionFile {
    pub layout: String,
    pub layout_version: u32,
    pub cluster_id: String,
    pub created_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("metadata directory {0} is not formatted; run `granary-namenode format --data-dir {0}` first")]
    NotFormatted(PathBuf),
    #[error("refusing to format {0}: it is not empty (pass --force to erase its contents)")]
    NotEmpty(PathBuf),
    #[error("{path} is not a Granary namenode metadata directory: {reason}")]
    Foreign { path: PathBuf, reason: String },
    #[error("metadata directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn namespace_dir(dir: &Path) -> PathBuf {
    dir.join("namespace")
}

/// The Raft log of a namenode that is one of a group.
pub fn raft_dir(dir: &Path) -> PathBuf {
    dir.join("raft")
}

const HA_FILE: &str = "ha.toml";

/// Records the group `format` was given (node id and peers), so a start
/// without those flags finds them.
pub fn store_ha(dir: &Path, ha: &crate::ha::HaConfig) -> Result<(), LayoutError> {
    let path = dir.join(HA_FILE);
    let text = toml::to_string(ha).map_err(|e| LayoutError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&path, text).map_err(io(&path))
}

/// The group `format` recorded, if any.
pub fn load_ha(dir: &Path) -> Result<Option<crate::ha::HaConfig>, LayoutError> {
    let path = dir.join(HA_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map(Some).map_err(|e| LayoutError::Foreign {
            path: path.clone(),
            reason: format!("unreadable {HA_FILE}: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// Prepares `dir` for a new namespace and writes its VERSION file. The
/// caller then creates the RocksDB under [`namespace_dir`].
/// True when `dir` does not exist or holds nothing (safe to format).
pub fn is_empty_or_missing(dir: &Path) -> Result<bool, LayoutError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io(dir)(e)),
    }
}

pub fn format(dir: &Path, force: bool, cluster_id: Option<String>) -> Result<VersionFile, LayoutError> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io(dir))?;
        if entries.next().is_some() {
            if !force {
                return Err(LayoutError::NotEmpty(dir.to_path_buf()));
            }
            for e in std::fs::read_dir(dir).map_err(io(dir))? {
                let p = e.map_err(io(dir))?.path();
                if p.is_dir() {
                    std::fs::remove_dir_all(&p).map_err(io(&p))?;
                } else {
                    std::fs::remove_file(&p).map_err(io(&p))?;
                }
            }
        }
    } else {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let v = VersionFile {
        layout: LAYOUT_NAME.into(),
        layout_version: LAYOUT_VERSION,
        cluster_id: cluster_id.unwrap_or_else(|| format!("CID-{}", uuid::Uuid::new_v4())),
        created_ms: crate::inode::now_ms(),
    };
    let text = toml::to_string(&v).map_err(|e| LayoutError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    // Written last and atomically: a VERSION file means the format finished.
    let tmp = dir.join("VERSION.tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, dir.join(VERSION_FILE)).map_err(io(dir))?;
    Ok(v)
}

/// Reads and checks the VERSION file of a formatted directory.
pub fn check(dir: &Path) -> Result<VersionFile, LayoutError> {
    let path = dir.join(VERSION_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LayoutError::NotFormatted(dir.to_path_buf()));
        }
        Err(e) => return Err(io(&path)(e)),
    };
    let v: VersionFile = toml::from_str(&text).map_err(|e| LayoutError::Foreign {
        path: dir.to_path_buf(),
        reason: format!("unreadable VERSION file: {e}"),
    })?;
    if v.layout != LAYOUT_NAME {
        return Err(LayoutError::Foreign {
            path: dir.to_path_buf(),
            reason: format!("it holds a {:?} layout", v.layout),
        });
    }
    if v.layout_version > LAYOUT_VERSION {
        return Err(LayoutError::Foreign {
            path: dir.to_path_buf(),
            reason: format!(
                "layout version {} is newer than this binary's {LAYOUT_VERSION}",
                v.layout_version
            ),
        });
    }
    if !namespace_dir(dir).is_dir() {
        return Err(LayoutError::Foreign {
            path: dir.to_path_buf(),
            reason: "the namespace database is missing".into(),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_refuses_non_empty_dirs_unless_forced() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("precious"), b"x").unwrap();
        assert!(matches!(
            format(tmp.path(), false, None),
            Err(LayoutError::NotEmpty(_))
        ));
        assert!(tmp.path().join("precious").exists());
        let v = format(tmp.path(), true, Some("CID-x".into())).unwrap();
        assert_eq!(v.cluster_id, "CID-x");
        assert!(!tmp.path().join("precious").exists());
    }

    #[test]
    fn check_names_the_problem() {
        let tmp = tempfile::tempdir().unwrap();
        let e = check(tmp.path()).unwrap_err().to_string();
        assert!(
            e.contains("not formatted") && e.contains("granary-namenode format"),
            "{e}"
        );
        std::fs::write(
            tmp.path().join("VERSION"),
            "layout = \"granary-datanode\"\nlayout_version = 1\ncluster_id = \"c\"\ncreated_ms = 0\n",
        )
        .unwrap();
        let e = check(tmp.path()).unwrap_err().to_string();
        assert!(
            e.contains("not a Granary namenode") && e.contains("granary-datanode"),
            "{e}"
        );
    }
}
