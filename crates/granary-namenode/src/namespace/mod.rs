//! The namespace: directories, files and their blocks, kept in RocksDB so it
//! is bounded by disk, not RAM. Inodes are found by (parent id, name); every
//! mutation is one atomic WriteBatch made durable (WAL fsync, group commit)
//! before the caller is answered. Mutations are serialized by one lock, which
//! is what keeps concurrent renames and deletes from making cycles or orphans.

mod attrs;
mod config;
mod durability;
mod effects;
mod files;
mod quota;
mod resolve;
pub mod retry;
mod scan;
pub mod snapshot;
mod tokens;
mod tree;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prost::Message;
use rocksdb::{BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, Options, WriteBatch};

use crate::error::{NnError, Result};
use crate::group_commit::GroupCommit;
use crate::groups::{GroupMapping, GroupsConfig};
use crate::inode::*;
use crate::permission::Caller;
use granary_common::defaults;
use granary_proto as pb;

pub use config::NamespaceConfig;
pub use durability::{AfterDurable, Commit, Deferred, PendingWrite, Replication, WaitDurable, Written};
pub use effects::Effects;
pub use quota::QUOTA_RESET;
pub use resolve::{Prefix, Resolved};
pub use snapshot::{DOT_SNAPSHOT, DiffEntry, DiffKind, SnapState, SnapshottableDir, snapshot_path};

/// What a directory listing page holds.
pub struct Listing {
    pub entries: Vec<pb::FileStatus>,
    pub has_more: bool,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ContentSummary {
    pub length: u64,
    pub file_count: u64,
    pub directory_count: u64,
    pub space_consumed: u64,
    /// The directory's quotas and kept usage, when it has any.
    pub quota: Option<DirQuota>,
}

impl ContentSummary {
    fn add_file(&mut self, file: &Inode) {
        let len = file.length();
        self.file_count += 1;
        self.length += len;
        self.space_consumed += len * u64::from(file.replication);
    }

    fn add_held(&mut self, held: snapshot::Held) {
        self.file_count += held.files;
        self.directory_count += held.dirs;
        self.length = self.length.saturating_add(held.length);
        self.space_consumed = self.space_consumed.saturating_add(held.space);
    }
}

/// What a namenode start needs from a walk over the whole namespace.
#[derive(Debug, Default)]
pub struct StartupScan {
    /// The blocks safe mode waits for. As HDFS, a file's last block still
    /// being written is not counted: datanodes report only finalized replicas.
    pub committed_blocks: u64,
    /// Every open file, its writer and the writer's user (to restore leases).
    pub open_files: Vec<(u64, String, String)>,
}

/// What lease recovery does with a file's uncommitted last block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastBlockFate {
    /// Commit it at `length`; under a new generation stamp when `new_gs`
    /// (replicas being written were cut to that length).
    Commit { length: u64, new_gs: bool },
    /// No datanode holds any of it.
    Drop,
}

/// A file lease recovery closed.
#[derive(Debug)]
pub struct Recovered {
    /// The client that held the lease.
    pub holder: String,
    /// Blocks dropped from the file.
    pub dropped: Vec<BlockRecord>,
    /// The last block as committed by the recovery.
    pub committed: Option<BlockRecord>,
}

/// A newly allocated block and where it starts in its file.
#[derive(Debug)]
pub struct AllocatedBlock {
    pub block: BlockRecord,
    pub offset: u64,
}

pub struct Namespace {
    /// Shared with the group commit's syncer thread.
    db: Arc<DB>,
    cfg: NamespaceConfig,
    /// std's futex mutex, not parking_lot's: with dozens of writers on two
    /// cores, parking_lot's spin-then-`sched_yield` before parking turned
    /// this lock into a convoy (measured: create+complete 7 K -> 17 K ops/s
    /// at 64 threads, docs/performance.md).
    write_lock: Mutex<()>,
    /// Bumped (under `write_lock`, after the write) by every mutation that
    /// can change how a path resolves or who may traverse it; mutations of
    /// one file's inode, and renames of a file, leave it alone (they change
    /// no directory, and walks re-read their last component under the lock).
    /// Lets creates and renames walk their paths before taking the lock and
    /// re-read only parents and last components under it.
    structure: AtomicU64,
    commit: GroupCommit<rocksdb::Error>,
    next_inode: AtomicU64,
    next_block: AtomicU64,
    next_gs: AtomicU64,
    /// How many directories have a quota (as stored in `META_QUOTA_DIRS`):
    /// while none has, mutations skip quota accounting.
    quota_dirs: AtomicU64,
    /// Callers' groups: decided here, never taken from the caller.
    groups: GroupMapping,
    /// Set when this namenode is one of a Raft group: changes go to the
    /// group's log instead of this namenode's own group commit.
    replication: OnceLock<Arc<dyn Replication>>,
    /// Snapshottable directories and snapshots (as stored), reloaded
    /// (under `write_lock`) by every change to them.
    snapshots: std::sync::RwLock<Arc<SnapState>>,
    /// Last, so it drops after the store and the group commit's thread:
    /// says RocksDB is closed (its lock released).
    closed: Closed,
}

/// Raised when dropped.
struct Closed(Arc<AtomicBool>);

impl Drop for Closed {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn db_options(cfg: &NamespaceConfig, create: bool) -> (Options, Vec<ColumnFamilyDescriptor>) {
    let mut opts = Options::default();
    opts.create_if_missing(create);
    // Also when opening: a namespace made before a column family existed
    // (`snapshots`) gets it empty.
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    opts.set_bytes_per_sync(1 << 20);
    opts.set_max_open_files(512);
    // Writes are already serialized by the namespace lock; RocksDB's own
    // write-thread spinning only burns the other core.
    opts.set_enable_write_thread_adaptive_yield(false);
    // The WAL is written by the syncer thread, once per fsync group
    // (`flush_wal`), not by every mutation under the namespace lock.
    opts.set_manual_wal_flush(true);
    let cache = Cache::new_lru_cache(cfg.block_cache_bytes());
    let cfs = ALL_CFS
        .iter()
        .map(|name| {
            let mut bbo = BlockBasedOptions::default();
            bbo.set_block_cache(&cache);
            bbo.set_bloom_filter(10.0, false);
            // Index and filter blocks stay in the table readers, outside the
            // block cache: once the namespace outgrows the cache, data blocks
            // would otherwise evict them and every lookup of a name that does
            // not exist yet (each create's first step) would reload a whole
            // file's filter. They take about 2 bytes per key.
            bbo.set_cache_index_and_filter_blocks(false);
            let mut o = Options::default();
            o.set_memtable_prefix_bloom_ratio(0.05);
            o.set_memtable_whole_key_filtering(true);
            o.set_block_based_table_factory(&bbo);
            o.set_write_buffer_size(32 << 20);
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(*name, o)
        })
        .collect();
    (opts, cfs)
}

fn start_group_commit(db: &Arc<DB>) -> Result<GroupCommit<rocksdb::Error>> {
    let db = db.clone();
    GroupCommit::start(move || db.flush_wal(true))
        .map_err(|e| NnError::Internal(format!("cannot start the WAL sync thread: {e}")))
}

/// The id counters (next inode, block, generation stamp) as stored.
fn read_counters(db: &DB) -> Result<[u64; 3]> {
    let cf = db
        .cf_handle(CF_META)
        .ok_or_else(|| NnError::Corrupt("meta column family missing".into()))?;
    let read = |key: &[u8]| -> Result<u64> {
        db.get_cf(cf, key)?
            .as_deref()
            .and_then(decode_u64)
            .ok_or_else(|| NnError::Corrupt(format!("counter {} missing", String::from_utf8_lossy(key))))
    };
    Ok([
        read(META_NEXT_INODE)?,
        read(META_NEXT_BLOCK)?,
        read(META_NEXT_GS)?,
    ])
}

fn decode_inode(bytes: &[u8]) -> Result<Inode> {
    Inode::decode(bytes).map_err(|e| NnError::Corrupt(format!("undecodable inode: {e}")))
}

impl Namespace {
    /// Creates a new, empty namespace (the root directory owned by the superuser).
    pub fn create_new(db_dir: &Path, cfg: NamespaceConfig, groups: &GroupsConfig) -> Result<Self> {
        Self::create_at(db_dir, cfg, groups, now_ms())
    }

    /// [`Namespace::create_new`] with the root's times given: every member
    /// of a namenode group formats the same namespace (time 0), byte for byte.
    pub fn create_at(db_dir: &Path, cfg: NamespaceConfig, groups: &GroupsConfig, now: i64) -> Result<Self> {
        let (opts, cfs) = db_options(&cfg, true);
        let db = Arc::new(DB::open_cf_descriptors(&opts, db_dir, cfs)?);
        let commit = start_group_commit(&db)?;
        let root = Inode {
            id: ROOT_ID,
            parent: 0,
            name: String::new(),
            is_dir: true,
            owner: cfg.superuser.clone(),
            group: cfg.supergroup.clone(),
            mode: defaults::DIR_PERMISSION,
            mtime: now,
            atime: now,
            ..Default::default()
        };
        let ns = Self {
            db,
            groups: GroupMapping::new(groups),
            cfg,
            write_lock: Mutex::new(()),
            structure: AtomicU64::new(0),
            commit,
            next_inode: AtomicU64::new(ROOT_ID + 1),
            // Block ids start high so they never look like inode ids in logs.
            next_block: AtomicU64::new(1 << 30),
            next_gs: AtomicU64::new(1000),
            quota_dirs: AtomicU64::new(0),
            replication: OnceLock::new(),
            snapshots: Default::default(),
            closed: Closed(Arc::default()),
        };
        let mut first = Effects::default();
        first.put_cf(CF_INODES, id_key(ROOT_ID), root.encode_to_vec());
        first.put_cf(CF_META, META_NEXT_INODE, id_key(ROOT_ID + 1));
        first.put_cf(CF_META, META_NEXT_BLOCK, id_key(1 << 30));
        first.put_cf(CF_META, META_NEXT_GS, id_key(1000));
        let mut batch = WriteBatch::default();
        first.write_to(&ns.db, &mut batch)?;
        ns.db.write(batch)?;
        ns.db.flush_wal(true)?;
        Ok(ns)
    }

    /// Opens an existing namespace.
    pub fn open(db_dir: &Path, cfg: NamespaceConfig, groups: &GroupsConfig) -> Result<Self> {
        let (opts, cfs) = db_options(&cfg, false);
        let db = Arc::new(DB::open_cf_descriptors(&opts, db_dir, cfs)?);
        let [next_inode, next_block, next_gs] = read_counters(&db)?;
        let commit = start_group_commit(&db)?;
        let ns = Self {
            db,
            groups: GroupMapping::new(groups),
            cfg,
            write_lock: Mutex::new(()),
            structure: AtomicU64::new(0),
            commit,
            next_inode: AtomicU64::new(next_inode),
            next_block: AtomicU64::new(next_block),
            next_gs: AtomicU64::new(next_gs),
            quota_dirs: AtomicU64::new(0),
            replication: OnceLock::new(),
            snapshots: Default::default(),
            closed: Closed(Arc::default()),
        };
        ns.quota_dirs.store(ns.stored_quota_dirs()?, Ordering::SeqCst);
        ns.load_snapshots()?;
        if ns.get_inode(ROOT_ID)?.is_none() {
            return Err(NnError::Corrupt("root inode missing".into()));
        }
        Ok(ns)
    }

    /// True once this namespace (and its RocksDB) is closed.
    pub fn closed_flag(&self) -> Arc<AtomicBool> {
        self.closed.0.clone()
    }

    pub fn config(&self) -> &NamespaceConfig {
        &self.cfg
    }

    /// The caller a request names, judged with the groups the group
    /// mapping gives its user (HDFS's); every door (gRPC, WebHDFS, the web
    /// UI) comes through here. May ask the OS: async callers try
    /// [`Namespace::known_caller`] first and call this off the executor.
    pub fn caller(&self, id: granary_common::identity::Identity) -> Caller {
        let groups = self.groups.groups(&id.user);
        Caller::new(id.user, groups, &self.cfg.superuser, &self.cfg.supergroup)
    }

    /// [`Namespace::caller`] when the user's groups are known without
    /// asking the OS (statically mapped, or cached).
    pub fn known_caller(&self, id: &granary_common::identity::Identity) -> Option<Caller> {
        let groups = self.groups.known(&id.user)?;
        Some(Caller::new(
            id.user.clone(),
            groups,
            &self.cfg.superuser,
            &self.cfg.supergroup,
        ))
    }

    pub fn db(&self) -> &DB {
        &self.db
    }

    /// Makes this namespace one of a Raft group's (once, before serving).
    pub fn replicate_through(&self, r: Arc<dyn Replication>) {
        if self.replication.set(r).is_err() {
            tracing::warn!("namespace replication set twice; keeping the first");
        }
    }

    /// Whether changes go through a namenode group.
    pub fn is_replicated(&self) -> bool {
        self.replication.get().is_some()
    }

    /// Runs `f` (which writes the store directly: a replicated change, or
    /// undoing one) under the namespace lock. When `f` says it changed the
    /// namespace, what the namespace cached of the store is forgotten:
    /// walks and id counters start afresh.
    pub fn with_write_lock<R>(&self, f: impl FnOnce(&DB) -> Result<(R, bool)>) -> Result<R> {
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (r, changed) = f(&self.db)?;
        if changed {
            self.structure.fetch_add(1, Ordering::SeqCst);
            let [inode, block, gs] = read_counters(&self.db)?;
            self.next_inode.store(inode, Ordering::SeqCst);
            self.next_block.store(block, Ordering::SeqCst);
            self.next_gs.store(gs, Ordering::SeqCst);
            self.quota_dirs.store(self.stored_quota_dirs()?, Ordering::SeqCst);
            self.load_snapshots()?;
        }
        Ok(r)
    }

    fn cf(&self, name: &str) -> Result<&ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| NnError::Corrupt(format!("column family {name} missing")))
    }

    pub fn get_inode(&self, id: u64) -> Result<Option<Inode>> {
        match self.db.get_pinned_cf(self.cf(CF_INODES)?, id_key(id))? {
            Some(v) => Ok(Some(decode_inode(&v)?)),
            None => Ok(None),
        }
    }

    fn put_inode(&self, batch: &mut Effects, inode: &Inode) -> Result<()> {
        batch.put_cf(CF_INODES, id_key(inode.id), inode.encode_to_vec());
        Ok(())
    }

    fn alloc_inode_id(&self, batch: &mut Effects) -> Result<u64> {
        let id = self.next_inode.fetch_add(1, Ordering::SeqCst);
        batch.put_cf(CF_META, META_NEXT_INODE, id_key(id + 1));
        Ok(id)
    }

    fn alloc_block(&self, batch: &mut Effects) -> Result<(u64, u64)> {
        let id = self.next_block.fetch_add(1, Ordering::SeqCst);
        let gs = self.next_gs.fetch_add(1, Ordering::SeqCst);
        batch.put_cf(CF_META, META_NEXT_BLOCK, id_key(id + 1));
        batch.put_cf(CF_META, META_NEXT_GS, id_key(gs + 1));
        Ok((id, gs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::WaitDurable;
    use granary_common::identity::Identity;

    /// A new namespace in a temporary directory (kept alive by the first
    /// element, which drops last), and its superuser.
    pub(super) fn namespace() -> (tempfile::TempDir, Namespace, Caller) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = NamespaceConfig {
            superuser: "hdfs".into(),
            ..Default::default()
        };
        let ns = Namespace::create_new(tmp.path(), cfg, &Default::default()).expect("new namespace");
        let su = ns.caller(Identity::new("hdfs"));
        (tmp, ns, su)
    }

    /// A closed, empty file at `path`, made by `caller`.
    pub(super) fn closed_file(ns: &Namespace, caller: &Caller, path: &str) -> Inode {
        let (file, _) = ns
            .create(caller, path, 0, "w", false, false, 1, 0)
            .durably()
            .expect("create");
        assert!(
            ns.complete(caller, path, file.id, "w", None, |_| true)
                .durably()
                .expect("complete")
        );
        file
    }
}
