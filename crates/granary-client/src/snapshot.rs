//! Snapshots: allowing them on a directory, taking, deleting and renaming
//! them, diffs and the snapshottable directories. A snapshot's files are
//! read with the ordinary calls at `DIR/.snapshot/NAME/...`.

use granary_proto as pb;

use crate::types::FileStatus;
use crate::{DfsClient, Result};

/// How an entry differs between two versions of a directory (HDFS's
/// `M`, `+`, `-`, `R`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffKind {
    Modify,
    Create,
    Delete,
    Rename,
}

impl DiffKind {
    /// HDFS's letter for it.
    pub fn letter(self) -> &'static str {
        match self {
            Self::Modify => "M",
            Self::Create => "+",
            Self::Delete => "-",
            Self::Rename => "R",
        }
    }
}

/// One line of a snapshot diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffEntry {
    pub kind: DiffKind,
    /// Relative to the snapshottable directory; "" is the directory itself.
    pub path: String,
    /// Where a renamed entry went.
    pub target: Option<String>,
}

/// A snapshottable directory (`lsSnapshottableDir`).
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshottableDir {
    pub path: String,
    pub status: FileStatus,
    pub snapshots: u32,
    pub snapshot_limit: u32,
}

impl DfsClient {
    async fn change_snapshot(
        &self,
        path: &str,
        action: pb::SnapshotAction,
        name: &str,
        new_name: &str,
    ) -> Result<String> {
        let req = pb::ChangeSnapshotRequest {
            path: path.into(),
            action: action as i32,
            name: name.into(),
            new_name: new_name.into(),
        };
        Ok(nn_call!(self, change_snapshot, req).await?.snapshot_path)
    }

    /// Lets snapshots of directory `path` be taken (superuser).
    pub async fn allow_snapshot(&self, path: &str) -> Result<()> {
        self.change_snapshot(path, pb::SnapshotAction::Allow, "", "")
            .await?;
        Ok(())
    }

    /// Takes back [`allow_snapshot`](Self::allow_snapshot) (superuser); the
    /// directory must have no snapshots left.
    pub async fn disallow_snapshot(&self, path: &str) -> Result<()> {
        self.change_snapshot(path, pb::SnapshotAction::Disallow, "", "")
            .await?;
        Ok(())
    }

    /// Takes a snapshot of `path` (None: HDFS's default name); returns its
    /// path, `path/.snapshot/NAME`.
    pub async fn create_snapshot(&self, path: &str, name: Option<&str>) -> Result<String> {
        self.change_snapshot(path, pb::SnapshotAction::Create, name.unwrap_or(""), "")
            .await
    }

    /// Deletes snapshot `name` of `path`; blocks only it held are freed.
    pub async fn delete_snapshot(&self, path: &str, name: &str) -> Result<()> {
        self.change_snapshot(path, pb::SnapshotAction::Delete, name, "")
            .await?;
        Ok(())
    }

    pub async fn rename_snapshot(&self, path: &str, from: &str, to: &str) -> Result<()> {
        self.change_snapshot(path, pb::SnapshotAction::Rename, from, to)
            .await?;
        Ok(())
    }

    /// What changed under `path` from snapshot `from` to `to` ("." is now).
    pub async fn snapshot_diff(&self, path: &str, from: &str, to: &str) -> Result<Vec<DiffEntry>> {
        let req = pb::GetSnapshotDiffRequest {
            path: path.into(),
            from: from.into(),
            to: to.into(),
        };
        let r = nn_call!(self, get_snapshot_diff, req).await?;
        Ok(r.entries
            .into_iter()
            .map(|e| DiffEntry {
                kind: match e.kind() {
                    pb::SnapshotDiffKind::Create => DiffKind::Create,
                    pb::SnapshotDiffKind::Delete => DiffKind::Delete,
                    pb::SnapshotDiffKind::Rename => DiffKind::Rename,
                    pb::SnapshotDiffKind::Modify | pb::SnapshotDiffKind::Unspecified => DiffKind::Modify,
                },
                path: e.path,
                target: e.target,
            })
            .collect())
    }

    /// The snapshottable directories the caller owns (all, for the superuser).
    pub async fn snapshottable_dirs(&self) -> Result<Vec<SnapshottableDir>> {
        let r = nn_call!(self, get_snapshottable_dirs, pb::GetSnapshottableDirsRequest {}).await?;
        Ok(r.dirs
            .into_iter()
            .map(|d| SnapshottableDir {
                path: d.path,
                status: d.status.unwrap_or_default().into(),
                snapshots: d.snapshots,
                snapshot_limit: d.snapshot_limit,
            })
            .collect())
    }
}
