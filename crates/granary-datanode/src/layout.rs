//! A data directory's identity: `VERSION` names the datanode (stable uuid),
//! the storage, and — once registered — the cluster it belongs to.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const LAYOUT_NAME: &str = "granary-datanode";
pub const LAYOUT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DataDirVersion {
    pub layout: String,
    pub layout_version: u32,
    pub datanode_uuid: String,
    pub storage_id: String,
    /// Empty until the first successful registration.
    #[serde(default)]
    pub cluster_id: String,
    /// This datanode's own secret (hex), the same in every data dir: the
    /// namenode binds the uuid to it, so no other daemon can register as
    /// this datanode. Made when missing (also in dirs of older versions).
    #[serde(default)]
    pub node_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("data dir {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a Granary datanode data dir: {reason}")]
    Foreign { path: PathBuf, reason: String },
    #[error("data dirs disagree: {a} belongs to datanode {ua}, {b} to {ub}")]
    MixedDatanodes {
        a: PathBuf,
        ua: String,
        b: PathBuf,
        ub: String,
    },
    #[error(
        "data dir {path} belongs to datanode {found}, but this datanode's certificate names {certificate}: \
         give it the certificate issued for {found} (or an empty data dir)"
    )]
    NotTheCertificates {
        path: PathBuf,
        found: String,
        certificate: String,
    },
    #[error("data dir {path} belongs to cluster {found}, but {expected} was expected")]
    WrongCluster {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads `dir/VERSION`, or `None` for a fresh (empty or missing) dir.
pub fn read(dir: &Path) -> Result<Option<DataDirVersion>, LayoutError> {
    let path = dir.join("VERSION");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let v: DataDirVersion = toml::from_str(&text).map_err(|e| LayoutError::Foreign {
                path: dir.to_path_buf(),
                reason: format!("unreadable VERSION: {e}"),
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
                    reason: format!("layout version {} is newer than this binary's", v.layout_version),
                });
            }
            Ok(Some(v))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.exists() {
                let non_empty = std::fs::read_dir(dir).map_err(io(dir))?.next().is_some();
                if non_empty {
                    return Err(LayoutError::Foreign {
                        path: dir.to_path_buf(),
                        reason: "it has files but no VERSION".into(),
                    });
                }
            }
            Ok(None)
        }
        Err(e) => Err(io(&path)(e)),
    }
}

/// Writes `dir/VERSION` (owner-readable only: it holds the node key).
pub fn write(dir: &Path, v: &DataDirVersion) -> Result<(), LayoutError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let text = toml::to_string(v).map_err(|e| io(dir)(std::io::Error::other(e)))?;
    let tmp = dir.join("VERSION.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, dir.join("VERSION")).map_err(io(dir))
}

/// Loads or initialises every data dir; all must name the same datanode.
///
/// `certified`: the uuid this datanode's certificate names (secure mode): a
/// fresh datanode takes it, and data dirs of another datanode are refused.
pub fn load_all(dirs: &[PathBuf], certified: Option<&str>) -> Result<Vec<DataDirVersion>, LayoutError> {
    let existing: Vec<Option<DataDirVersion>> = dirs.iter().map(|d| read(d)).collect::<Result<_, _>>()?;
    if let Some(certificate) = certified
        && let Some((dir, v)) = dirs.iter().zip(&existing).find_map(|(d, v)| {
            v.as_ref()
                .filter(|v| v.datanode_uuid != certificate)
                .map(|v| (d, v))
        })
    {
        return Err(LayoutError::NotTheCertificates {
            path: dir.clone(),
            found: v.datanode_uuid.clone(),
            certificate: certificate.to_string(),
        });
    }
    let uuid = existing
        .iter()
        .flatten()
        .map(|v| v.datanode_uuid.clone())
        .next()
        .or_else(|| certified.map(str::to_string))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let cluster = existing
        .iter()
        .flatten()
        .map(|v| v.cluster_id.clone())
        .find(|c| !c.is_empty())
        .unwrap_or_default();
    let node_key = existing
        .iter()
        .flatten()
        .map(|v| v.node_key.clone())
        .find(|k| !k.is_empty())
        .unwrap_or_else(|| granary_common::daemon_auth::hex(&granary_common::block_token::new_key()));
    let mut out = Vec::new();
    for (dir, v) in dirs.iter().zip(existing) {
        let v = match v {
            Some(v) => {
                if v.datanode_uuid != uuid {
                    return Err(LayoutError::MixedDatanodes {
                        a: dirs[0].clone(),
                        ua: uuid,
                        b: dir.clone(),
                        ub: v.datanode_uuid,
                    });
                }
                if !v.cluster_id.is_empty() && !cluster.is_empty() && v.cluster_id != cluster {
                    return Err(LayoutError::WrongCluster {
                        path: dir.clone(),
                        found: v.cluster_id,
                        expected: cluster,
                    });
                }
                if v.node_key != node_key {
                    let v = DataDirVersion {
                        node_key: node_key.clone(),
                        ..v
                    };
                    write(dir, &v)?;
                    v
                } else {
                    v
                }
            }
            None => {
                let v = DataDirVersion {
                    layout: LAYOUT_NAME.into(),
                    layout_version: LAYOUT_VERSION,
                    datanode_uuid: uuid.clone(),
                    storage_id: format!("DS-{}", uuid::Uuid::new_v4()),
                    cluster_id: cluster.clone(),
                    node_key: node_key.clone(),
                };
                write(dir, &v)?;
                v
            }
        };
        out.push(v);
    }
    Ok(out)
}
