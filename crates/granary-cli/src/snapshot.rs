//! Snapshot commands, shaped like HDFS's: `fs create-snapshot DIR [NAME]`,
//! `delete-snapshot DIR NAME`, `rename-snapshot DIR OLD NEW`,
//! `snapshot-diff DIR FROM TO` (`hdfs snapshotDiff`) and
//! `ls-snapshottable-dir` (`hdfs lsSnapshottableDir`); `admin
//! allow-snapshot` / `disallow-snapshot` (dfsadmin's). Snapshots are read
//! with the other commands at `DIR/.snapshot/NAME/...`.

use clap::Subcommand;

use crate::error::CliResult;
use crate::format;
use crate::fs::abs;
use crate::out::outln;
use granary_client::DfsClient;

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot of snapshottable directory DIR (its owner), named
    /// NAME or, by default, sYYYYMMDD-HHMMSS.mmm; prints its path.
    #[command(alias = "createSnapshot")]
    CreateSnapshot { dir: String, name: Option<String> },
    /// Delete snapshot NAME of DIR; blocks only it kept are freed.
    #[command(alias = "deleteSnapshot")]
    DeleteSnapshot { dir: String, name: String },
    /// Rename snapshot OLD of DIR to NEW.
    #[command(alias = "renameSnapshot")]
    RenameSnapshot { dir: String, old: String, new: String },
    /// What changed under DIR from snapshot FROM to snapshot TO ("." is
    /// the directory as it is now): M modified, + created, - deleted,
    /// R renamed (HDFS's snapshotDiff).
    #[command(alias = "snapshotDiff")]
    SnapshotDiff { dir: String, from: String, to: String },
    /// The snapshottable directories you own (all, for the superuser).
    #[command(alias = "lsSnapshottableDir")]
    LsSnapshottableDir,
}

impl SnapshotCommand {
    pub async fn execute(&self, c: &DfsClient) -> CliResult {
        match self {
            Self::CreateSnapshot { dir, name } => create(c, &abs(c, dir), name.as_deref()).await,
            Self::DeleteSnapshot { dir, name } => Ok(c.delete_snapshot(&abs(c, dir), name).await?),
            Self::RenameSnapshot { dir, old, new } => Ok(c.rename_snapshot(&abs(c, dir), old, new).await?),
            Self::SnapshotDiff { dir, from, to } => diff(c, &abs(c, dir), from, to).await,
            Self::LsSnapshottableDir => ls_snapshottable(c).await,
        }
    }
}

async fn create(c: &DfsClient, dir: &str, name: Option<&str>) -> CliResult {
    let path = c.create_snapshot(dir, name).await?;
    outln!("Created snapshot {path}")?;
    Ok(())
}

/// How HDFS names a version in a diff's heading.
fn version(name: &str) -> String {
    if name.is_empty() || name == "." {
        "current directory".to_string()
    } else {
        format!("snapshot {name}")
    }
}

/// A diff path as HDFS prints it: `.` for the directory, `./a/b` below it.
fn rel(p: &str) -> String {
    if p.is_empty() {
        ".".to_string()
    } else {
        format!("./{p}")
    }
}

async fn diff(c: &DfsClient, dir: &str, from: &str, to: &str) -> CliResult {
    let entries = c.snapshot_diff(dir, from, to).await?;
    outln!(
        "Difference between {} and {} under directory {dir}:",
        version(from),
        version(to)
    )?;
    for e in entries {
        match &e.target {
            Some(t) => outln!("{}\t{} -> {}", e.kind.letter(), rel(&e.path), rel(t))?,
            None => outln!("{}\t{}", e.kind.letter(), rel(&e.path))?,
        }
    }
    Ok(())
}

/// `hdfs lsSnapshottableDir`'s rows: permission, replication (0), owner,
/// group, size (0), date, snapshot count, snapshot limit, path.
async fn ls_snapshottable(c: &DfsClient) -> CliResult {
    for d in c.snapshottable_dirs().await? {
        let s = &d.status;
        outln!(
            "{} 0 {} {} 0 {} {} {} {}",
            format::permission_string(s),
            s.owner,
            s.group,
            format::date(s.modification_time),
            d.snapshots,
            d.snapshot_limit,
            d.path
        )?;
    }
    Ok(())
}

/// `granary admin allow-snapshot DIR` / `disallow-snapshot DIR`.
pub async fn allow(c: &DfsClient, dir: &str, allow: bool) -> CliResult {
    let dir = abs(c, dir);
    if allow {
        c.allow_snapshot(&dir).await?;
        outln!("Allowing snapshot on {dir} succeeded")?;
    } else {
        c.disallow_snapshot(&dir).await?;
        outln!("Disallowing snapshot on {dir} succeeded")?;
    }
    Ok(())
}
