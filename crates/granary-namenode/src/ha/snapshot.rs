//! Snapshots of the namespace for the group: a RocksDB checkpoint (hard
//! links to its files, taken under the namespace lock) packed into one tar
//! file, which a lagging, new or wiped namenode installs. The log is
//! truncated behind the latest snapshot.
//!
//! In `<data_dir>/snapshots`: `current.tar` and `current.meta` (the latest
//! snapshot, built here or received), `incoming.tar` while one arrives,
//! and `installing` while one is copied into the namespace store: a crash
//! then redoes the copy at the next start.

use std::path::{Path, PathBuf};

use openraft::{LogId, SnapshotMeta, StoredMembership};
use rocksdb::{DB, IteratorMode, Options, WriteBatch};

use super::{NnNode, NodeId, decode, encode};
use crate::error::{NnError, Result};
use crate::inode::ALL_CFS;

const CURRENT: &str = "current.tar";
const CURRENT_META: &str = "current.meta";
const INCOMING: &str = "incoming.tar";
const INSTALLING: &str = "installing";

pub type Meta = SnapshotMeta<NodeId, NnNode>;

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> NnError {
    let at = format!("{what} {}", path.display());
    move |e| NnError::Internal(format!("{at}: {e}"))
}

/// Where snapshots are kept.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
}

impl Snapshots {
    pub fn open(dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
        Ok(Self { dir })
    }

    pub fn incoming_path(&self) -> PathBuf {
        self.dir.join(INCOMING)
    }

    pub fn current_path(&self) -> PathBuf {
        self.dir.join(CURRENT)
    }

    /// The latest snapshot's description, if there is one.
    pub fn current_meta(&self) -> Result<Option<Meta>> {
        let p = self.dir.join(CURRENT_META);
        match std::fs::read(&p) {
            Ok(b) if self.current_path().exists() => Ok(Some(decode("snapshot meta", &b)?)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("cannot read", &p)(e)),
        }
    }

    /// Whether a copy into the store was cut short (by a crash).
    pub fn install_interrupted(&self) -> bool {
        self.dir.join(INSTALLING).exists()
    }

    /// Takes a checkpoint of `db` (the caller holds the namespace lock, so
    /// `applied` and `membership` describe it) into a fresh directory.
    pub fn checkpoint(&self, db: &DB, id: &str) -> Result<PathBuf> {
        let dir = self.dir.join(format!("build-{id}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io("cannot remove", &dir))?;
        }
        rocksdb::checkpoint::Checkpoint::new(db)?.create_checkpoint(&dir)?;
        Ok(dir)
    }

    /// Packs a checkpoint into the current snapshot, described by `meta`.
    pub fn pack(&self, checkpoint: &Path, meta: &Meta) -> Result<()> {
        let tmp = self.dir.join("packing.tar");
        {
            let f = std::fs::File::create(&tmp).map_err(io("cannot create", &tmp))?;
            let mut t = tar::Builder::new(std::io::BufWriter::new(f));
            t.append_dir_all("db", checkpoint)
                .map_err(io("cannot pack", checkpoint))?;
            let w = t.into_inner().map_err(io("cannot write", &tmp))?;
            let f = w
                .into_inner()
                .map_err(|e| io("cannot write", &tmp)(e.into_error()))?;
            f.sync_all().map_err(io("cannot sync", &tmp))?;
        }
        std::fs::remove_dir_all(checkpoint).map_err(io("cannot remove", checkpoint))?;
        self.make_current(&tmp, meta)
    }

    /// Makes the tar file at `from` the current snapshot.
    pub fn make_current(&self, from: &Path, meta: &Meta) -> Result<()> {
        let meta_tmp = self.dir.join("current.meta.tmp");
        std::fs::write(&meta_tmp, encode("snapshot meta", meta)?).map_err(io("cannot write", &meta_tmp))?;
        // The tar first: a meta file never describes another snapshot's tar
        // for long, and a crash in between leaves the older pair readable
        // only by its meta (checked by id at install).
        std::fs::rename(from, self.current_path()).map_err(io("cannot rename", from))?;
        std::fs::rename(&meta_tmp, self.dir.join(CURRENT_META)).map_err(io("cannot rename", &meta_tmp))?;
        sync_dir(&self.dir)
    }

    /// Copies the current snapshot into `db`, replacing everything in it
    /// (the caller holds the namespace lock). Marked while it runs, so a
    /// crash redoes it.
    pub fn install_current(&self, db: &DB) -> Result<()> {
        let marker = self.dir.join(INSTALLING);
        std::fs::write(&marker, b"").map_err(io("cannot write", &marker))?;
        sync_dir(&self.dir)?;
        let unpacked = self.dir.join("unpacked");
        if unpacked.exists() {
            std::fs::remove_dir_all(&unpacked).map_err(io("cannot remove", &unpacked))?;
        }
        let f = std::fs::File::open(self.current_path()).map_err(io("cannot open", &self.current_path()))?;
        tar::Archive::new(std::io::BufReader::new(f))
            .unpack(&unpacked)
            .map_err(io("cannot unpack", &self.current_path()))?;
        let src_dir = unpacked.join("db");
        // A snapshot made before a column family existed lacks it: it is
        // installed empty.
        let present = DB::list_cf(&Options::default(), &src_dir)?;
        let src = DB::open_cf_for_read_only(&Options::default(), &src_dir, &present, false)?;
        for name in ALL_CFS {
            let Some(to) = db.cf_handle(name) else {
                return Err(NnError::Corrupt(format!("store lacks column family {name}")));
            };
            let from = src.cf_handle(name);
            if from.is_none() && !matches!(name, crate::inode::CF_SNAPSHOTS) {
                return Err(NnError::Corrupt(format!("snapshot lacks column family {name}")));
            }
            // Clear the live column family.
            let mut clear = WriteBatch::default();
            if let (Some(first), Some(last)) = (
                db.iterator_cf(to, IteratorMode::Start).next().transpose()?,
                db.iterator_cf(to, IteratorMode::End).next().transpose()?,
            ) {
                clear.delete_range_cf(to, &*first.0, &*last.0);
                clear.delete_cf(to, &*last.0);
            }
            db.write(clear)?;
            let Some(from) = from else {
                continue;
            };
            let mut batch = WriteBatch::default();
            for kv in src.iterator_cf(from, IteratorMode::Start) {
                let (k, v) = kv?;
                batch.put_cf(to, k, v);
                if batch.size_in_bytes() > 4 << 20 {
                    db.write(std::mem::take(&mut batch))?;
                }
            }
            db.write(batch)?;
        }
        drop(src);
        db.flush_wal(true)?;
        db.flush()?;
        std::fs::remove_dir_all(&unpacked).map_err(io("cannot remove", &unpacked))?;
        std::fs::remove_file(&marker).map_err(io("cannot remove", &marker))?;
        sync_dir(&self.dir)
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot sync", dir))
}

/// A snapshot id: unique per build, naming what it holds.
pub fn snapshot_id(applied: Option<LogId<NodeId>>) -> String {
    format!(
        "{}-{}-{:08x}",
        applied.map(|l| l.leader_id.term).unwrap_or(0),
        applied.map(|l| l.index).unwrap_or(0),
        rand::random::<u32>()
    )
}

/// What a snapshot's description says of a store's applied state.
pub fn meta(applied: Option<LogId<NodeId>>, membership: StoredMembership<NodeId, NnNode>) -> Meta {
    SnapshotMeta {
        last_log_id: applied,
        last_membership: membership,
        snapshot_id: snapshot_id(applied),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::{Namespace, NamespaceConfig, WaitDurable};
    use granary_common::identity::Identity;

    /// A snapshot of one namespace, installed into another, replaces it
    /// whole; an install cut short is seen as such.
    #[test]
    fn a_snapshot_installed_elsewhere_replaces_the_namespace() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = NamespaceConfig {
            superuser: "hdfs".into(),
            ..Default::default()
        };
        let a = Namespace::create_at(&tmp.path().join("a"), cfg.clone(), &Default::default(), 0).expect("a");
        let b = Namespace::create_at(&tmp.path().join("b"), cfg, &Default::default(), 0).expect("b");
        let su = a.caller(Identity::new("hdfs"));
        for d in ["/x", "/x/y", "/z"] {
            a.mkdirs(&su, d, 0, false).durably().expect("mkdirs");
        }
        b.mkdirs(&su, "/only-in-b", 0, false).durably().expect("mkdirs");

        let from = Snapshots::open(tmp.path().join("snaps-a")).expect("snaps");
        let m = meta(None, StoredMembership::default());
        let dir = from.checkpoint(a.db(), &m.snapshot_id).expect("checkpoint");
        from.pack(&dir, &m).expect("pack");
        assert_eq!(
            from.current_meta().expect("meta").map(|x| x.snapshot_id),
            Some(m.snapshot_id.clone())
        );

        let to = Snapshots::open(tmp.path().join("snaps-b")).expect("snaps");
        std::fs::copy(from.current_path(), to.incoming_path()).expect("copy");
        to.make_current(&to.incoming_path(), &m).expect("current");
        b.with_write_lock(|db| to.install_current(db).map(|()| ((), true)))
            .expect("install");
        assert!(!to.install_interrupted());
        for d in ["/x", "/x/y", "/z"] {
            assert!(b.get_file_info(&su, d).is_ok(), "{d} missing after install");
        }
        assert!(
            b.get_file_info(&su, "/only-in-b").is_err(),
            "old content survived"
        );
        // Ids go on from the snapshot's counters.
        b.mkdirs(&su, "/after", 0, false)
            .durably()
            .expect("mkdirs after install");
        assert_eq!(b.list(&su, "/", "", 100).expect("list").entries.len(), 3);
    }
}
