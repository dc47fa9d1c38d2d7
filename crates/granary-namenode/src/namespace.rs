//! The namespace: directories, files and their blocks, kept in RocksDB so it
//! is bounded by disk, not RAM. Inodes are found by (parent id, name); every
//! mutation is one atomic WriteBatch made durable (WAL fsync, group commit)
//! before the caller is answered. Mutations are serialized by one lock, which
//! is what keeps concurrent renames and deletes from making cycles or orphans.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prost::Message;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options,
    ReadOptions, WriteBatch, WriteOptions,
};

use crate::error::{NnError, Result};
use crate::group_commit::{Durable, GroupCommit};
use crate::inode::*;
use crate::permission::{Access, Caller};
use granary_common::defaults;
use granary_common::path as gpath;
use granary_proto as pb;

/// A write whose durability the caller awaits (see [`deferring_durability`]).
pub type PendingWrite = Durable<rocksdb::Error>;

/// Work that acts on a mutation beyond the namenode's memory (queueing a
/// deleted file's replicas for deletion on datanodes, say), which must not
/// happen for a change that a crash could still undo.
pub struct AfterDurable {
    /// Long enough to keep off an async executor (thousands of blocks).
    pub heavy: bool,
    pub run: Box<dyn FnOnce() + Send>,
}

thread_local! {
    /// Set while [`deferring_durability`] runs on this thread: the latest
    /// write its mutations made, which its caller waits for instead, and
    /// what runs once that write is durable.
    static DEFERRED: std::cell::RefCell<Option<Deferred>> = const { std::cell::RefCell::new(None) };
}

/// What a [`deferring_durability`] run leaves its caller, who must await
/// `pending` before telling anyone the mutations happened, and then run
/// `after` (never when the sync failed: the change may be lost).
#[must_use]
#[derive(Default)]
pub struct Deferred {
    pub pending: Option<PendingWrite>,
    pub after: Vec<AfterDurable>,
}

/// Runs `f`, whose namespace mutations return as soon as they are written
/// instead of blocking until durable, and whose
/// [`Namespace::after_durable`] work is handed back instead of waiting.
/// This is how async callers avoid parking a thread per fsync.
pub fn deferring_durability<R>(f: impl FnOnce() -> R) -> (R, Deferred) {
    /// Restores the enclosing deferral's state, also when `f` panics: a
    /// pooled thread must not go on skipping the wait.
    struct Reset(Option<Deferred>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let outer = self.0.take();
            DEFERRED.with(|d| *d.borrow_mut() = outer);
        }
    }
    let reset = Reset(DEFERRED.with(|d| d.borrow_mut().replace(Deferred::default())));
    let r = f();
    let deferred = DEFERRED.with(|d| d.borrow_mut().take()).unwrap_or_default();
    drop(reset);
    (r, deferred)
}

/// Limits and defaults the namespace applies to requests.
#[derive(Debug, Clone)]
pub struct NamespaceConfig {
    pub superuser: String,
    pub supergroup: String,
    pub default_replication: u32,
    pub max_replication: u32,
    pub default_block_size: u64,
    pub min_block_size: u64,
    pub bytes_per_checksum: u32,
    pub listing_limit: u32,
    pub max_directory_items: u64,
    /// RocksDB block cache; the namespace's only large memory use.
    pub block_cache_bytes: usize,
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        Self {
            superuser: granary_common::identity::Identity::current_os_user(),
            supergroup: defaults::SUPERGROUP.to_string(),
            default_replication: defaults::REPLICATION,
            max_replication: defaults::MAX_REPLICATION,
            default_block_size: defaults::BLOCK_SIZE,
            min_block_size: defaults::MIN_BLOCK_SIZE,
            bytes_per_checksum: defaults::BYTES_PER_CHECKSUM,
            listing_limit: defaults::LISTING_LIMIT,
            max_directory_items: 1_048_576,
            block_cache_bytes: 128 << 20,
        }
    }
}

/// A path resolved as far as it exists: `inodes[0]` is the root and
/// `inodes[i]` is `comps[i - 1]`.
pub struct Resolved {
    pub path: String,
    pub comps: Vec<String>,
    pub inodes: Vec<Inode>,
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

    /// The path of `inodes[i]`.
    pub fn prefix(&self, i: usize) -> String {
        if i == 0 {
            "/".to_string()
        } else {
            format!("/{}", self.comps[..i].join("/"))
        }
    }

    fn existing(&self) -> Result<&Inode> {
        self.last().ok_or_else(|| NnError::NotFound(self.path.clone()))
    }
}

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
}

/// What a namenode start needs from a walk over the whole namespace.
#[derive(Debug, Default)]
pub struct StartupScan {
    /// The blocks safe mode waits for. As HDFS, a file's last block still
    /// being written is not counted: datanodes report only finalized replicas.
    pub committed_blocks: u64,
    /// Every open file and its writer (to restore leases).
    pub open_files: Vec<(u64, String)>,
}

/// A newly allocated block and where it starts in its file.
pub struct AllocatedBlock {
    pub block: BlockRecord,
    pub offset: u64,
}

#[cfg(test)]
type WalkHook = Box<dyn FnOnce(&Namespace) + Send>;

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
    /// Runs between a create's or rename's walk and its lock (tests of that window).
    #[cfg(test)]
    after_walk: parking_lot::Mutex<Option<WalkHook>>,
    commit: GroupCommit<rocksdb::Error>,
    next_inode: AtomicU64,
    next_block: AtomicU64,
    next_gs: AtomicU64,
}

fn db_options(cfg: &NamespaceConfig, create: bool) -> (Options, Vec<ColumnFamilyDescriptor>) {
    let mut opts = Options::default();
    opts.create_if_missing(create);
    opts.create_missing_column_families(create);
    opts.set_max_background_jobs(2);
    opts.set_bytes_per_sync(1 << 20);
    opts.set_max_open_files(512);
    // Writes are already serialized by the namespace lock; RocksDB's own
    // write-thread spinning only burns the other core.
    opts.set_enable_write_thread_adaptive_yield(false);
    // The WAL is written by the syncer thread, once per fsync group
    // (`flush_wal`), not by every mutation under the namespace lock.
    opts.set_manual_wal_flush(true);
    let cache = Cache::new_lru_cache(cfg.block_cache_bytes);
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

fn decode_inode(bytes: &[u8]) -> Result<Inode> {
    Inode::decode(bytes).map_err(|e| NnError::Corrupt(format!("undecodable inode: {e}")))
}

impl Namespace {
    /// Creates a new, empty namespace (the root directory owned by the superuser).
    pub fn create_new(db_dir: &Path, cfg: NamespaceConfig) -> Result<Self> {
        let (opts, cfs) = db_options(&cfg, true);
        let db = Arc::new(DB::open_cf_descriptors(&opts, db_dir, cfs)?);
        let commit = start_group_commit(&db)?;
        let now = now_ms();
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
            cfg,
            write_lock: Mutex::new(()),
            structure: AtomicU64::new(0),
            #[cfg(test)]
            after_walk: parking_lot::Mutex::new(None),
            commit,
            next_inode: AtomicU64::new(ROOT_ID + 1),
            // Block ids start high so they never look like inode ids in logs.
            next_block: AtomicU64::new(1 << 30),
            next_gs: AtomicU64::new(1000),
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(ns.cf(CF_INODES)?, id_key(ROOT_ID), root.encode_to_vec());
        batch.put_cf(ns.cf(CF_META)?, META_NEXT_INODE, id_key(ROOT_ID + 1));
        batch.put_cf(ns.cf(CF_META)?, META_NEXT_BLOCK, id_key(1 << 30));
        batch.put_cf(ns.cf(CF_META)?, META_NEXT_GS, id_key(1000));
        ns.db.write(batch)?;
        ns.db.flush_wal(true)?;
        Ok(ns)
    }

    /// Opens an existing namespace.
    pub fn open(db_dir: &Path, cfg: NamespaceConfig) -> Result<Self> {
        let (opts, cfs) = db_options(&cfg, false);
        let db = Arc::new(DB::open_cf_descriptors(&opts, db_dir, cfs)?);
        let read_counter = |key: &[u8]| -> Result<u64> {
            let cf = db
                .cf_handle(CF_META)
                .ok_or_else(|| NnError::Corrupt("meta column family missing".into()))?;
            db.get_cf(cf, key)?
                .as_deref()
                .and_then(decode_u64)
                .ok_or_else(|| NnError::Corrupt(format!("counter {} missing", String::from_utf8_lossy(key))))
        };
        let next_inode = read_counter(META_NEXT_INODE)?;
        let next_block = read_counter(META_NEXT_BLOCK)?;
        let next_gs = read_counter(META_NEXT_GS)?;
        let commit = start_group_commit(&db)?;
        let ns = Self {
            db,
            cfg,
            write_lock: Mutex::new(()),
            structure: AtomicU64::new(0),
            #[cfg(test)]
            after_walk: parking_lot::Mutex::new(None),
            commit,
            next_inode: AtomicU64::new(next_inode),
            next_block: AtomicU64::new(next_block),
            next_gs: AtomicU64::new(next_gs),
        };
        if ns.get_inode(ROOT_ID)?.is_none() {
            return Err(NnError::Corrupt("root inode missing".into()));
        }
        Ok(ns)
    }

    pub fn config(&self) -> &NamespaceConfig {
        &self.cfg
    }

    pub fn caller(&self, id: granary_common::identity::Identity) -> Caller {
        Caller::new(id, &self.cfg.superuser, &self.cfg.supergroup)
    }

    pub fn db(&self) -> &DB {
        &self.db
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

    fn lookup(&self, parent: u64, name: &str) -> Result<Option<u64>> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_DIRENTS)?, dirent_key(parent, name))?
            .as_deref()
            .and_then(decode_u64))
    }

    /// Walks `path` from the root as far as it exists. A file met before the
    /// last component is an error: a file cannot have children.
    pub fn resolve(&self, path: &str) -> Result<Resolved> {
        let comps: Vec<String> = gpath::components(path)?.into_iter().map(String::from).collect();
        let root = self
            .get_inode(ROOT_ID)?
            .ok_or_else(|| NnError::Corrupt("root inode missing".into()))?;
        let mut inodes = vec![root];
        for (i, c) in comps.iter().enumerate() {
            let cur = &inodes[i];
            if !cur.is_dir {
                let r = Resolved {
                    path: path.to_string(),
                    comps: comps.clone(),
                    inodes: Vec::new(),
                };
                return Err(NnError::ParentNotDirectory(r.prefix(i)));
            }
            let Some(child) = self.lookup(cur.id, c)? else {
                break;
            };
            let inode = self.get_inode(child)?.ok_or_else(|| {
                NnError::Corrupt(format!("directory entry {c:?} points at missing inode {child}"))
            })?;
            inodes.push(inode);
        }
        Ok(Resolved {
            path: path.to_string(),
            comps,
            inodes,
        })
    }

    /// Execute permission on every directory walked through to reach the path's last component.
    fn check_traverse(&self, caller: &Caller, r: &Resolved) -> Result<()> {
        let n = r.inodes.len().min(r.comps.len());
        for i in 0..n {
            caller.check(&r.inodes[i], Access::Execute, &r.prefix(i))?;
        }
        Ok(())
    }

    /// Runs one mutation under the namespace lock and returns once it is durable.
    fn mutate<T>(&self, f: impl FnOnce(&mut WriteBatch) -> Result<T>) -> Result<T> {
        self.mutate_marked(|batch| f(batch).map(|out| (out, true)))
    }

    /// Like [`Namespace::mutate`] for changes to one file's inode (and its
    /// blocks), which no other path's resolution depends on.
    fn mutate_file<T>(&self, f: impl FnOnce(&mut WriteBatch) -> Result<T>) -> Result<T> {
        self.mutate_marked(|batch| f(batch).map(|out| (out, false)))
    }

    /// `f` says whether its change was structural (see `structure`).
    fn mutate_marked<T>(&self, f: impl FnOnce(&mut WriteBatch) -> Result<(T, bool)>) -> Result<T> {
        // A panic under the lock leaves no half-made change behind (the batch
        // is written whole or not at all), so a poisoned lock is still usable.
        let guard = self
            .write_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut batch = WriteBatch::default();
        let (out, structural) = f(&mut batch)?;
        if batch.is_empty() {
            return Ok(out);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(false);
        self.db.write_opt(batch, &wo)?;
        if structural {
            self.structure.fetch_add(1, Ordering::SeqCst);
        }
        let seq = self.commit.note_write();
        drop(guard);
        if !self.defer(seq) {
            self.commit.wait_durable(seq)?;
        }
        Ok(out)
    }

    /// Runs `run` once this thread's mutations so far are durable: at once
    /// outside [`deferring_durability`] (each mutation waited for its own
    /// fsync), else handed to its caller, who runs it after awaiting them.
    pub fn after_durable(&self, heavy: bool, run: impl FnOnce() + Send + 'static) {
        let run: Box<dyn FnOnce() + Send> = Box::new(run);
        let left = DEFERRED.with(|d| match &mut *d.borrow_mut() {
            Some(deferral) => {
                deferral.after.push(AfterDurable { heavy, run });
                None
            }
            None => Some(run),
        });
        if let Some(run) = left {
            run();
        }
    }

    /// Hands write `seq` to the caller's [`deferring_durability`], if it runs.
    fn defer(&self, seq: u64) -> bool {
        DEFERRED.with(|d| match &mut *d.borrow_mut() {
            Some(deferral) => {
                let w = self.commit.durable(seq);
                deferral.pending = Some(match deferral.pending.take() {
                    Some(l) => l.latest(w),
                    None => w,
                });
                true
            }
            None => false,
        })
    }

    fn put_inode(&self, batch: &mut WriteBatch, inode: &Inode) -> Result<()> {
        batch.put_cf(self.cf(CF_INODES)?, id_key(inode.id), inode.encode_to_vec());
        Ok(())
    }

    fn alloc_inode_id(&self, batch: &mut WriteBatch) -> Result<u64> {
        let id = self.next_inode.fetch_add(1, Ordering::SeqCst);
        batch.put_cf(self.cf(CF_META)?, META_NEXT_INODE, id_key(id + 1));
        Ok(id)
    }

    fn alloc_block(&self, batch: &mut WriteBatch) -> Result<(u64, u64)> {
        let id = self.next_block.fetch_add(1, Ordering::SeqCst);
        let gs = self.next_gs.fetch_add(1, Ordering::SeqCst);
        batch.put_cf(self.cf(CF_META)?, META_NEXT_BLOCK, id_key(id + 1));
        batch.put_cf(self.cf(CF_META)?, META_NEXT_GS, id_key(gs + 1));
        Ok((id, gs))
    }

    /// Adds `child` under `parent` (whose count and mtime change) in `batch`.
    fn link(&self, batch: &mut WriteBatch, parent: &mut Inode, child: &Inode) -> Result<()> {
        if parent.children >= self.cfg.max_directory_items {
            return Err(NnError::InvalidArgument(format!(
                "directory {:?} already holds the maximum of {} items",
                parent.name, self.cfg.max_directory_items
            )));
        }
        batch.put_cf(
            self.cf(CF_DIRENTS)?,
            dirent_key(parent.id, &child.name),
            id_key(child.id),
        );
        parent.children += 1;
        parent.mtime = now_ms();
        Ok(())
    }

    fn new_inode(
        &self,
        batch: &mut WriteBatch,
        caller: &Caller,
        parent: &Inode,
        name: &str,
    ) -> Result<Inode> {
        let now = now_ms();
        Ok(Inode {
            id: self.alloc_inode_id(batch)?,
            parent: parent.id,
            name: name.to_string(),
            owner: caller.user().to_string(),
            // BSD rule, as HDFS: a new inode takes its parent's group.
            group: parent.group.clone(),
            mtime: now,
            atime: now,
            ..Default::default()
        })
    }

    /// Creates missing directories along `r` from index `from` on (mkdir -p).
    fn create_dirs(
        &self,
        batch: &mut WriteBatch,
        caller: &Caller,
        r: &Resolved,
        upto: usize,
        mode: u32,
    ) -> Result<Inode> {
        let mut parent = r
            .inodes
            .last()
            .cloned()
            .ok_or_else(|| NnError::Corrupt("empty resolution".into()))?;
        let first_missing = r.inodes.len() - 1;
        for i in first_missing..upto {
            let name = &r.comps[i];
            let mut dir = self.new_inode(batch, caller, &parent, name)?;
            dir.is_dir = true;
            // Intermediate directories stay writable for their creator (HDFS: u+wx).
            dir.mode = if i + 1 == r.comps.len() {
                mode
            } else {
                mode | 0o300
            };
            self.link(batch, &mut parent, &dir)?;
            self.put_inode(batch, &parent)?;
            parent = dir;
        }
        self.put_inode(batch, &parent)?;
        Ok(parent)
    }

    pub fn mkdirs(&self, caller: &Caller, path: &str, mode: u32, create_parent: bool) -> Result<()> {
        let mode = if mode == 0 {
            defaults::DIR_PERMISSION
        } else {
            mode & 0o7777
        };
        self.mutate(|batch| {
            let r = self.resolve(path)?;
            self.check_traverse(caller, &r)?;
            if let Some(existing) = r.last() {
                return if existing.is_dir {
                    Ok(())
                } else {
                    Err(NnError::AlreadyExists(path.to_string()))
                };
            }
            let deepest = r.inodes.len() - 1;
            if !create_parent && deepest + 1 < r.comps.len() {
                return Err(NnError::NotFound(r.prefix(r.comps.len() - 1)));
            }
            caller.check(&r.inodes[deepest], Access::WriteExecute, &r.prefix(deepest))?;
            self.create_dirs(batch, caller, &r, r.comps.len(), mode)?;
            Ok(())
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &self,
        caller: &Caller,
        path: &str,
        mode: u32,
        client_name: &str,
        overwrite: bool,
        create_parent: bool,
        replication: u32,
        block_size: u64,
    ) -> Result<(Inode, Vec<BlockRecord>)> {
        let mode = if mode == 0 {
            defaults::FILE_PERMISSION
        } else {
            mode & 0o7777
        };
        let replication = self.check_replication(path, replication)?;
        let block_size = if block_size == 0 {
            self.cfg.default_block_size
        } else {
            block_size
        };
        if block_size < self.cfg.min_block_size {
            return Err(NnError::InvalidArgument(format!(
                "{path}: block size {block_size} is below the minimum of {}",
                self.cfg.min_block_size
            )));
        }
        if block_size % u64::from(self.cfg.bytes_per_checksum) != 0 {
            return Err(NnError::InvalidArgument(format!(
                "{path}: block size {block_size} is not a multiple of the checksum chunk {}",
                self.cfg.bytes_per_checksum
            )));
        }
        if client_name.is_empty() {
            return Err(NnError::InvalidArgument(format!(
                "{path}: create needs a client name"
            )));
        }
        // The walk down to the parent happens outside the lock; under it only
        // the parent and the new name are read again, unless the tree's shape
        // changed meanwhile.
        let seen = self.structure.load(Ordering::SeqCst);
        let walked = self.resolve(path).ok();
        self.run_after_walk_hook();
        self.mutate_marked(|batch| {
            let r = self.resolve_under_lock(walked, seen, path)?;
            if r.comps.is_empty() {
                return Err(NnError::IsDirectory(path.to_string()));
            }
            self.check_traverse(caller, &r)?;
            let mut removed = Vec::new();
            let mut made_dirs = false;
            let mut parent = match r.parent() {
                Some(p) => p.clone(),
                None if create_parent => {
                    let deepest = r.inodes.len() - 1;
                    caller.check(&r.inodes[deepest], Access::WriteExecute, &r.prefix(deepest))?;
                    made_dirs = true;
                    self.create_dirs(batch, caller, &r, r.comps.len() - 1, defaults::DIR_PERMISSION)?
                }
                None => return Err(NnError::NotFound(r.prefix(r.comps.len() - 1))),
            };
            let parent_path = r.prefix(r.comps.len() - 1);
            caller.check(&parent, Access::Write, &parent_path)?;
            if let Some(existing) = r.last() {
                if existing.is_dir {
                    return Err(NnError::IsDirectory(path.to_string()));
                }
                if let Some(uc) = &existing.under_construction {
                    return Err(NnError::LeaseConflict {
                        path: path.to_string(),
                        holder: uc.client_name.clone(),
                    });
                }
                if !overwrite {
                    return Err(NnError::AlreadyExists(path.to_string()));
                }
                removed = self.unlink_subtree(batch, caller, &mut parent, existing, path, false)?;
            }
            let name = &r.comps[r.comps.len() - 1];
            let mut file = self.new_inode(batch, caller, &parent, name)?;
            file.mode = mode;
            file.replication = replication;
            file.block_size = block_size;
            file.under_construction = Some(UnderConstruction {
                client_name: client_name.to_string(),
            });
            self.link(batch, &mut parent, &file)?;
            self.put_inode(batch, &parent)?;
            self.put_inode(batch, &file)?;
            Ok(((file, removed), made_dirs))
        })
    }

    /// Tests change the namespace here, between a walk and the lock.
    fn run_after_walk_hook(&self) {
        #[cfg(test)]
        {
            // Taken first: the hook's own renames and creates come back here.
            let hook = self.after_walk.lock().take();
            if let Some(hook) = hook {
                hook(self);
            }
        }
    }

    /// `path` resolved under the namespace lock, from its walk before the
    /// lock (made when `structure` was `seen`) if no structural change came
    /// in between, else from the root.
    fn resolve_under_lock(&self, walked: Option<Resolved>, seen: u64, path: &str) -> Result<Resolved> {
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
        })
    }

    fn check_replication(&self, path: &str, replication: u32) -> Result<u32> {
        let r = if replication == 0 {
            self.cfg.default_replication
        } else {
            replication
        };
        if r > self.cfg.max_replication {
            return Err(NnError::InvalidArgument(format!(
                "{path}: replication {r} exceeds the maximum of {}",
                self.cfg.max_replication
            )));
        }
        Ok(r)
    }

    /// The file `path` as its lease holder `client` sees it. Writers name
    /// their file by id (as HDFS's fileId): one lookup instead of a path walk
    /// under the namespace lock, and the file stays theirs if renamed.
    fn leased_file(&self, path: &str, file_id: u64, client: &str) -> Result<Inode> {
        let file = if file_id != 0 {
            self.get_inode(file_id)?.ok_or_else(|| NnError::NoLease {
                path: path.to_string(),
                client: client.to_string(),
                reason: "was replaced or deleted".into(),
            })?
        } else {
            self.resolve(path)?.existing()?.clone()
        };
        if file.is_dir {
            return Err(NnError::IsDirectory(path.to_string()));
        }
        match &file.under_construction {
            Some(uc) if uc.client_name == client => Ok(file),
            Some(uc) => Err(NnError::LeaseConflict {
                path: path.to_string(),
                holder: uc.client_name.clone(),
            }),
            None => Err(NnError::NoLease {
                path: path.to_string(),
                client: client.to_string(),
                reason: "is closed".into(),
            }),
        }
    }

    /// The open file a writer is adding to, for choosing targets.
    pub fn file_for_writer(&self, path: &str, file_id: u64, client: &str) -> Result<Inode> {
        self.leased_file(path, file_id, client)
    }

    /// Sets the writer's reported length on the file's last block.
    fn commit_last(path: &str, file: &mut Inode, last: Option<&pb::ExtendedBlock>) -> Result<()> {
        match (file.blocks.last_mut(), last) {
            (None, None) => Ok(()),
            (Some(b), Some(l)) if b.id == l.block_id => {
                if b.committed && b.num_bytes != l.num_bytes {
                    return Err(NnError::InvalidArgument(format!(
                        "{path}: block {} was committed with {} bytes, not {}",
                        b.id, b.num_bytes, l.num_bytes
                    )));
                }
                if l.num_bytes > file.block_size {
                    return Err(NnError::InvalidArgument(format!(
                        "{path}: block {} length {} exceeds the block size {}",
                        b.id, l.num_bytes, file.block_size
                    )));
                }
                b.num_bytes = l.num_bytes;
                b.committed = true;
                Ok(())
            }
            (Some(b), l) => Err(NnError::InvalidArgument(format!(
                "{path}: the last block is {}, but the writer named {}",
                b.id,
                l.map_or_else(|| "none".to_string(), |l| l.block_id.to_string())
            ))),
            (None, Some(l)) => Err(NnError::InvalidArgument(format!(
                "{path}: the file has no blocks, but the writer named block {}",
                l.block_id
            ))),
        }
    }

    pub fn add_block(
        &self,
        path: &str,
        file_id: u64,
        client: &str,
        previous: Option<&pb::ExtendedBlock>,
    ) -> Result<AllocatedBlock> {
        self.mutate_file(|batch| {
            let mut file = self.leased_file(path, file_id, client)?;
            // A retried call whose first attempt succeeded gets the same block back.
            if let (Some(prev), [.., before, last]) = (previous, file.blocks.as_slice())
                && before.id == prev.block_id
                && !last.committed
            {
                let offset = file.blocks[..file.blocks.len() - 1]
                    .iter()
                    .map(|b| b.num_bytes)
                    .sum();
                return Ok(AllocatedBlock {
                    block: last.clone(),
                    offset,
                });
            }
            Self::commit_last(path, &mut file, previous)?;
            let offset = file.length();
            let (id, gs) = self.alloc_block(batch)?;
            let block = BlockRecord {
                id,
                generation_stamp: gs,
                num_bytes: 0,
                committed: false,
            };
            file.blocks.push(block.clone());
            batch.put_cf(self.cf(CF_BLOCKS)?, id_key(id), block_value(file.id, gs));
            self.put_inode(batch, &file)?;
            Ok(AllocatedBlock { block, offset })
        })
    }

    pub fn abandon_block(&self, path: &str, file_id: u64, client: &str, block_id: u64) -> Result<()> {
        self.mutate(|batch| {
            let mut file = self.leased_file(path, file_id, client)?;
            match file.blocks.last() {
                Some(b) if b.id == block_id && !b.committed => {}
                _ => {
                    return Err(NnError::InvalidArgument(format!(
                        "{path}: block {block_id} is not the file's uncommitted last block"
                    )));
                }
            }
            file.blocks.pop();
            batch.delete_cf(self.cf(CF_BLOCKS)?, id_key(block_id));
            self.put_inode(batch, &file)
        })
    }

    /// Commits the last block and closes the file when every block has its
    /// minimum replicas (`replicated`). Returns whether the file is closed.
    pub fn complete(
        &self,
        path: &str,
        file_id: u64,
        client: &str,
        last: Option<&pb::ExtendedBlock>,
        replicated: impl Fn(&BlockRecord) -> bool,
    ) -> Result<bool> {
        self.mutate_file(|batch| {
            let mut file = match self.leased_file(path, file_id, client) {
                Ok(f) => f,
                Err(NnError::NoLease { .. }) => {
                    // A retry after a success: closed, same file, same last block.
                    let r = self.resolve(path)?;
                    let f = r.existing()?;
                    let same_last = f.blocks.last().map(|b| b.id) == last.map(|l| l.block_id);
                    if f.under_construction.is_none() && f.id == file_id && same_last {
                        return Ok(true);
                    }
                    return self.leased_file(path, file_id, client).map(|_| false);
                }
                Err(e) => return Err(e),
            };
            Self::commit_last(path, &mut file, last)?;
            if file.blocks.iter().any(|b| !b.committed) {
                return Err(NnError::InvalidArgument(format!(
                    "{path}: a block before the last was never committed"
                )));
            }
            let closed = file.blocks.iter().all(&replicated);
            if closed {
                file.under_construction = None;
                file.mtime = now_ms();
            }
            self.put_inode(batch, &file)?;
            Ok(closed)
        })
    }

    pub fn get_file_info(&self, caller: &Caller, path: &str) -> Result<Inode> {
        let r = self.resolve(path)?;
        self.check_traverse(caller, &r)?;
        r.existing().cloned()
    }

    /// One page of `path`'s entries after `start_after`. A file lists as itself.
    pub fn list(&self, caller: &Caller, path: &str, start_after: &str, limit: u32) -> Result<Listing> {
        let r = self.resolve(path)?;
        self.check_traverse(caller, &r)?;
        let dir = r.existing()?;
        if !dir.is_dir {
            return Ok(Listing {
                entries: vec![dir.to_status()],
                has_more: false,
            });
        }
        caller.check(dir, Access::ReadExecute, path)?;
        let limit = if limit == 0 || limit > self.cfg.listing_limit {
            self.cfg.listing_limit
        } else {
            limit
        } as usize;
        let prefix = id_key(dir.id);
        let start = dirent_key(dir.id, start_after);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(id_key(dir.id + 1).to_vec());
        let snapshot = self.db.snapshot();
        ro.set_snapshot(&snapshot);
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_DIRENTS)?,
            ro,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut entries = Vec::new();
        let mut has_more = false;
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let name = &k[8..];
            if !start_after.is_empty() && name == start_after.as_bytes() {
                continue;
            }
            if entries.len() == limit {
                has_more = true;
                break;
            }
            let id = decode_u64(&v).ok_or_else(|| NnError::Corrupt("bad directory entry".into()))?;
            let child = match snapshot.get_cf(self.cf(CF_INODES)?, id_key(id))? {
                Some(b) => decode_inode(&b)?,
                None => return Err(NnError::Corrupt(format!("entry points at missing inode {id}"))),
            };
            entries.push(child.to_status());
        }
        Ok(Listing { entries, has_more })
    }

    /// Ids of a directory's children, in name order.
    fn child_ids(&self, dir: u64) -> Result<Vec<u64>> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(id_key(dir + 1).to_vec());
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_DIRENTS)?,
            ro,
            IteratorMode::From(&id_key(dir), Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (_, v) = item?;
            out.push(decode_u64(&v).ok_or_else(|| NnError::Corrupt("bad directory entry".into()))?);
        }
        Ok(out)
    }

    /// Removes `node` (and, for a directory, everything below it) from `parent`
    /// in `batch`; returns the blocks that no longer belong to any file.
    fn unlink_subtree(
        &self,
        batch: &mut WriteBatch,
        caller: &Caller,
        parent: &mut Inode,
        node: &Inode,
        path: &str,
        check_sub_access: bool,
    ) -> Result<Vec<BlockRecord>> {
        batch.delete_cf(self.cf(CF_DIRENTS)?, dirent_key(parent.id, &node.name));
        parent.children = parent.children.saturating_sub(1);
        parent.mtime = now_ms();
        let mut blocks = Vec::new();
        let mut stack = vec![(node.clone(), path.to_string())];
        while let Some((n, p)) = stack.pop() {
            if n.is_dir {
                if check_sub_access {
                    caller.check(&n, Access::All, &p)?;
                }
                for cid in self.child_ids(n.id)? {
                    let child = self.get_inode(cid)?.ok_or_else(|| {
                        NnError::Corrupt(format!("entry under {p} points at missing inode {cid}"))
                    })?;
                    batch.delete_cf(self.cf(CF_DIRENTS)?, dirent_key(n.id, &child.name));
                    let cp = gpath::join(&p, &child.name);
                    stack.push((child, cp));
                }
            }
            for b in &n.blocks {
                batch.delete_cf(self.cf(CF_BLOCKS)?, id_key(b.id));
            }
            blocks.extend(n.blocks);
            batch.delete_cf(self.cf(CF_INODES)?, id_key(n.id));
        }
        Ok(blocks)
    }

    /// Deletes `path`; returns the blocks to remove from datanodes.
    pub fn delete(&self, caller: &Caller, path: &str, recursive: bool) -> Result<Vec<BlockRecord>> {
        self.mutate(|batch| {
            let r = self.resolve(path)?;
            self.check_traverse(caller, &r)?;
            let node = r.existing()?.clone();
            let Some(parent) = r.parent() else {
                return Err(NnError::InvalidArgument(
                    "cannot delete the root directory".into(),
                ));
            };
            let mut parent = parent.clone();
            caller.check(&parent, Access::WriteExecute, &r.prefix(r.comps.len() - 1))?;
            if node.is_dir && node.children > 0 && !recursive {
                return Err(NnError::NotEmpty(path.to_string()));
            }
            let blocks = self.unlink_subtree(batch, caller, &mut parent, &node, path, recursive)?;
            self.put_inode(batch, &parent)?;
            Ok(blocks)
        })
    }

    /// Moves `src` to `dst`, or into `dst` when that is a directory.
    /// Returns blocks of a file replaced with `overwrite`.
    pub fn rename(&self, caller: &Caller, src: &str, dst: &str, overwrite: bool) -> Result<Vec<BlockRecord>> {
        // As in create: both paths are walked before the lock, and under it
        // only their parents and last components are read again, unless a
        // structural change (which a file's rename is not) came in between.
        let seen = self.structure.load(Ordering::SeqCst);
        let walked_src = self.resolve(src).ok();
        let walked_dst = self.resolve(dst).ok();
        self.run_after_walk_hook();
        self.mutate_marked(|batch| {
            let rs = self.resolve_under_lock(walked_src, seen, src)?;
            self.check_traverse(caller, &rs)?;
            let node = rs.existing()?.clone();
            let Some(src_parent) = rs.parent().cloned() else {
                return Err(NnError::InvalidArgument(
                    "cannot rename the root directory".into(),
                ));
            };
            let mut rd = self.resolve_under_lock(walked_dst, seen, dst)?;
            self.check_traverse(caller, &rd)?;
            // Into an existing directory, under the source's name.
            if let Some(d) = rd.last()
                && d.is_dir
                && d.id != node.id
            {
                let into = gpath::join(dst, &node.name);
                rd = self.resolve(&into)?;
            }
            let dst_path = rd.path.clone();
            if dst_path == src {
                return Ok((Vec::new(), false));
            }
            let Some(dst_parent) = rd.parent().cloned() else {
                return Err(NnError::NotFound(rd.prefix(rd.comps.len().saturating_sub(1))));
            };
            if !dst_parent.is_dir {
                return Err(NnError::ParentNotDirectory(rd.prefix(rd.comps.len() - 1)));
            }
            // No cycles: the destination's parent must not be the source or
            // below it. A file has nothing below it.
            if node.is_dir {
                let mut cur = dst_parent.clone();
                loop {
                    if cur.id == node.id {
                        return Err(NnError::RenameIntoSubtree {
                            src: src.to_string(),
                            dst: dst.to_string(),
                        });
                    }
                    if cur.id == ROOT_ID {
                        break;
                    }
                    cur = self
                        .get_inode(cur.parent)?
                        .ok_or_else(|| NnError::Corrupt(format!("inode {} has no parent", cur.id)))?;
                }
            }
            caller.check(&src_parent, Access::WriteExecute, &rs.prefix(rs.comps.len() - 1))?;
            caller.check(&dst_parent, Access::WriteExecute, &rd.prefix(rd.comps.len() - 1))?;
            let same_parent = src_parent.id == dst_parent.id;
            let mut src_parent = src_parent;
            let mut dst_parent = dst_parent;
            let mut removed = Vec::new();
            if let Some(existing) = rd.last().cloned() {
                let replaceable = overwrite
                    && existing.is_dir == node.is_dir
                    && (!existing.is_dir || existing.children == 0);
                if !replaceable {
                    return Err(NnError::AlreadyExists(dst_path));
                }
                let target = if same_parent {
                    &mut src_parent
                } else {
                    &mut dst_parent
                };
                removed = self.unlink_subtree(batch, caller, target, &existing, &dst_path, false)?;
            }
            let new_name = rd.comps[rd.comps.len() - 1].clone();
            batch.delete_cf(self.cf(CF_DIRENTS)?, dirent_key(src_parent.id, &node.name));
            src_parent.children = src_parent.children.saturating_sub(1);
            src_parent.mtime = now_ms();
            let mut moved = node;
            moved.name = new_name;
            moved.parent = dst_parent.id;
            if same_parent {
                self.link(batch, &mut src_parent, &moved)?;
                self.put_inode(batch, &src_parent)?;
            } else {
                self.link(batch, &mut dst_parent, &moved)?;
                self.put_inode(batch, &src_parent)?;
                self.put_inode(batch, &dst_parent)?;
            }
            self.put_inode(batch, &moved)?;
            // Moving a file changes no directory, so walks to other paths'
            // parents stay valid; moving a directory changes every path below it.
            Ok((removed, moved.is_dir))
        })
    }

    /// Runs `f` on the inode at `path` and stores the result.
    fn update(
        &self,
        caller: &Caller,
        path: &str,
        f: impl FnOnce(&Caller, &mut Inode) -> Result<()>,
    ) -> Result<Inode> {
        self.mutate(|batch| {
            let r = self.resolve(path)?;
            self.check_traverse(caller, &r)?;
            let mut inode = r.existing()?.clone();
            f(caller, &mut inode)?;
            self.put_inode(batch, &inode)?;
            Ok(inode)
        })
    }

    /// Returns the file with its new replication.
    pub fn set_replication(&self, caller: &Caller, path: &str, replication: u32) -> Result<Inode> {
        if replication == 0 {
            return Err(NnError::InvalidArgument(format!(
                "{path}: replication must be at least 1"
            )));
        }
        let replication = self.check_replication(path, replication)?;
        self.update(caller, path, |c, inode| {
            if inode.is_dir {
                return Err(NnError::IsDirectory(path.to_string()));
            }
            c.check(inode, Access::Write, path)?;
            inode.replication = replication;
            Ok(())
        })
    }

    pub fn set_permission(&self, caller: &Caller, path: &str, mode: u32) -> Result<()> {
        if mode > 0o7777 {
            return Err(NnError::InvalidArgument(format!(
                "{path}: invalid permission {mode:o}"
            )));
        }
        self.update(caller, path, |c, inode| {
            c.check_owner(inode, path)?;
            inode.mode = mode;
            Ok(())
        })
        .map(|_| ())
    }

    pub fn set_owner(
        &self,
        caller: &Caller,
        path: &str,
        owner: Option<&str>,
        group: Option<&str>,
    ) -> Result<()> {
        for n in [owner, group].into_iter().flatten() {
            if n.is_empty() || n.contains([':', '\0', '\n']) {
                return Err(NnError::InvalidArgument(format!(
                    "{path}: invalid user or group name {n:?}"
                )));
            }
        }
        self.update(caller, path, |c, inode| {
            c.check_owner(inode, path)?;
            if let Some(o) = owner {
                if !c.is_super && o != inode.owner {
                    return Err(NnError::PermissionDenied {
                        user: c.user().to_string(),
                        access: "CHOWN (superuser only)".into(),
                        inode: format!("\"{path}\""),
                    });
                }
                inode.owner = o.to_string();
            }
            if let Some(g) = group {
                if !c.is_super && !c.in_group(g) {
                    return Err(NnError::PermissionDenied {
                        user: c.user().to_string(),
                        access: format!("CHGRP to {g} (not a member)"),
                        inode: format!("\"{path}\""),
                    });
                }
                inode.group = g.to_string();
            }
            Ok(())
        })
        .map(|_| ())
    }

    /// Datanodes (by uuid) an operator decommissioned and did not return to
    /// service. Kept with the namespace, as HDFS keeps them in its exclude
    /// file, so a restarted namenode does not place replicas on them again.
    pub fn out_of_service(&self) -> Result<Vec<String>> {
        let mut uuids = Vec::new();
        let from = IteratorMode::From(META_OUT_OF_SERVICE, Direction::Forward);
        for item in self.db.iterator_cf(self.cf(CF_META)?, from) {
            let (k, _) = item?;
            let Some(uuid) = k.strip_prefix(META_OUT_OF_SERVICE) else {
                break;
            };
            uuids.push(String::from_utf8_lossy(uuid).into_owned());
        }
        Ok(uuids)
    }

    /// Records that datanode `uuid` is out of service (decommissioned or
    /// being decommissioned), or back in service.
    pub fn set_out_of_service(&self, uuid: &str, out: bool) -> Result<()> {
        let key = [META_OUT_OF_SERVICE, uuid.as_bytes()].concat();
        self.mutate_marked(|batch| {
            let cf = self.cf(CF_META)?;
            if out {
                batch.put_cf(cf, key, b"");
            } else {
                batch.delete_cf(cf, key);
            }
            Ok(((), false))
        })
    }

    pub fn set_times(
        &self,
        caller: &Caller,
        path: &str,
        mtime: Option<i64>,
        atime: Option<i64>,
    ) -> Result<()> {
        self.update(caller, path, |c, inode| {
            c.check(inode, Access::Write, path)?;
            if let Some(m) = mtime {
                inode.mtime = m;
            }
            if let Some(a) = atime {
                inode.atime = a;
            }
            Ok(())
        })
        .map(|_| ())
    }

    pub fn content_summary(&self, caller: &Caller, path: &str) -> Result<ContentSummary> {
        let r = self.resolve(path)?;
        self.check_traverse(caller, &r)?;
        let top = r.existing()?.clone();
        if top.is_dir {
            caller.check(&top, Access::ReadExecute, path)?;
        }
        let mut sum = ContentSummary::default();
        let mut stack = vec![top];
        while let Some(n) = stack.pop() {
            if n.is_dir {
                sum.directory_count += 1;
                for cid in self.child_ids(n.id)? {
                    if let Some(child) = self.get_inode(cid)? {
                        stack.push(child);
                    }
                }
            } else {
                let len = n.length();
                sum.file_count += 1;
                sum.length += len;
                sum.space_consumed += len * u64::from(n.replication);
            }
        }
        Ok(sum)
    }

    /// The file and its blocks that overlap `[offset, offset + length)`, with their offsets.
    pub fn block_range(
        &self,
        caller: &Caller,
        path: &str,
        offset: u64,
        length: u64,
    ) -> Result<(Inode, Vec<(u64, BlockRecord)>)> {
        let r = self.resolve(path)?;
        self.check_traverse(caller, &r)?;
        let file = r.existing()?.clone();
        if file.is_dir {
            return Err(NnError::IsDirectory(path.to_string()));
        }
        caller.check(&file, Access::Read, path)?;
        let end = if length == 0 {
            u64::MAX
        } else {
            offset.saturating_add(length)
        };
        let mut out = Vec::new();
        let mut pos = 0u64;
        for b in &file.blocks {
            let b_end = pos + b.num_bytes;
            // An uncommitted last block has no known length yet; include it.
            if (b_end > offset || !b.committed) && pos < end {
                out.push((pos, b.clone()));
            }
            pos = b_end;
        }
        Ok((file, out))
    }

    /// A new generation stamp for the uncommitted last block of an open file
    /// (pipeline recovery). Returns the new stamp.
    pub fn bump_generation(&self, path: &str, file_id: u64, client: &str, block_id: u64) -> Result<u64> {
        self.mutate(|batch| {
            let mut file = self.leased_file(path, file_id, client)?;
            let Some(last) = file
                .blocks
                .last_mut()
                .filter(|b| b.id == block_id && !b.committed)
            else {
                return Err(NnError::InvalidArgument(format!(
                    "{path}: block {block_id} is not the block being written"
                )));
            };
            let gs = self.next_gs.fetch_add(1, Ordering::SeqCst);
            batch.put_cf(self.cf(CF_META)?, META_NEXT_GS, id_key(gs + 1));
            last.generation_stamp = gs;
            batch.put_cf(self.cf(CF_BLOCKS)?, id_key(block_id), block_value(file.id, gs));
            self.put_inode(batch, &file)?;
            Ok(gs)
        })
    }

    /// Reopens a closed file for `client` to write at its end (new data goes
    /// into new blocks). Returns the file.
    pub fn append(&self, caller: &Caller, path: &str, client: &str) -> Result<Inode> {
        if client.is_empty() {
            return Err(NnError::InvalidArgument(format!(
                "{path}: append needs a client name"
            )));
        }
        self.mutate(|batch| {
            let r = self.resolve(path)?;
            self.check_traverse(caller, &r)?;
            let mut file = r.existing()?.clone();
            if file.is_dir {
                return Err(NnError::IsDirectory(path.to_string()));
            }
            caller.check(&file, Access::Write, path)?;
            if let Some(uc) = &file.under_construction {
                return Err(NnError::LeaseConflict {
                    path: path.to_string(),
                    holder: uc.client_name.clone(),
                });
            }
            file.under_construction = Some(UnderConstruction {
                client_name: client.to_string(),
            });
            self.put_inode(batch, &file)?;
            Ok(file)
        })
    }

    /// Closes an open file whose writer is gone. The last block, if never
    /// committed, keeps the length its finalized replicas report
    /// (`replica_len`), or is dropped when none has one. Returns the former
    /// holder and the dropped blocks, or None if the file was not open.
    pub fn recover_file(
        &self,
        inode_id: u64,
        replica_len: impl Fn(&BlockRecord) -> Option<u64>,
    ) -> Result<Option<(String, Vec<BlockRecord>)>> {
        self.mutate(|batch| {
            let Some(mut file) = self.get_inode(inode_id)? else {
                return Ok(None);
            };
            let Some(uc) = file.under_construction.take() else {
                return Ok(None);
            };
            let mut dropped = Vec::new();
            if let Some(last) = file.blocks.last_mut().filter(|b| !b.committed) {
                match replica_len(last) {
                    Some(len) if len <= file.block_size => {
                        last.num_bytes = len;
                        last.committed = true;
                    }
                    _ => {
                        if let Some(b) = file.blocks.pop() {
                            batch.delete_cf(self.cf(CF_BLOCKS)?, id_key(b.id));
                            dropped.push(b);
                        }
                    }
                }
            }
            file.mtime = now_ms();
            self.put_inode(batch, &file)?;
            Ok(Some((uc.client_name, dropped)))
        })
    }

    /// RocksDB's estimate of how many inodes and blocks are stored: decides
    /// whether the start-up scan runs before serving or beside it.
    pub fn estimated_objects(&self) -> Result<u64> {
        let mut n = 0;
        for name in [CF_INODES, CF_BLOCKS] {
            n += self
                .db
                .property_int_value_cf(self.cf(name)?, "rocksdb.estimate-num-keys")?
                .unwrap_or(0);
        }
        Ok(n)
    }

    /// One pass over every inode for what a start needs. `stop` is asked
    /// every 64 Ki inodes and ends the walk early (incomplete) when true.
    pub fn startup_scan(&self, stop: &dyn Fn() -> bool) -> Result<StartupScan> {
        let mut scan = StartupScan::default();
        for (i, item) in self
            .db
            .iterator_cf(self.cf(CF_INODES)?, IteratorMode::Start)
            .enumerate()
        {
            if i % 65_536 == 0 && stop() {
                break;
            }
            let (_, v) = item?;
            let inode = decode_inode(&v)?;
            scan.committed_blocks += inode.blocks.iter().filter(|b| b.committed).count() as u64;
            if let Some(uc) = inode.under_construction {
                scan.open_files.push((inode.id, uc.client_name));
            }
        }
        Ok(scan)
    }

    /// The file a block belongs to and the block's current generation stamp.
    pub fn block_owner(&self, block_id: u64) -> Result<Option<(u64, u64)>> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_BLOCKS)?, id_key(block_id))?
            .and_then(|v| decode_block_value(&v)))
    }

    /// [`Namespace::block_owner`] for many blocks at once (a full block
    /// report), answered in `ids` order. The ids are visited in key order
    /// with one iterator: neighbouring blocks (a datanode holds runs of
    /// consecutive ids) cost an iterator step instead of a point lookup.
    pub fn block_owners(&self, ids: &[u64]) -> Result<Vec<Option<(u64, u64)>>> {
        // Steps taken before falling back to a seek; a seek costs about as
        // much as a point lookup, a step a small fraction of one.
        const MAX_STEPS: usize = 8;
        let mut order: Vec<u32> = (0..ids.len() as u32).collect();
        order.sort_unstable_by_key(|&i| ids[i as usize]);
        let mut out = vec![None; ids.len()];
        let mut ro = ReadOptions::default();
        // One report reads each block once: leave the cache to the namespace.
        ro.fill_cache(false);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_BLOCKS)?, ro);
        let mut positioned = false;
        for i in order {
            let id = ids[i as usize];
            let key = id_key(id);
            let mut steps = 0;
            while positioned && it.valid() && it.key().is_some_and(|k| k < &key[..]) && steps < MAX_STEPS {
                it.next();
                steps += 1;
            }
            if !positioned || steps == MAX_STEPS {
                it.seek(key);
                positioned = true;
            }
            if !it.valid() {
                it.status()?;
                continue;
            }
            if it.key() == Some(&key[..]) {
                out[i as usize] = it.value().and_then(decode_block_value);
            }
        }
        it.status()?;
        Ok(out)
    }

    /// Every block of every file, for rebuilding in-memory block state at start.
    pub fn for_each_block(&self, mut f: impl FnMut(u64, u64, u64)) -> Result<()> {
        for item in self.db.iterator_cf(self.cf(CF_BLOCKS)?, IteratorMode::Start) {
            let (k, v) = item?;
            if let (Some(id), Some((inode, gs))) = (decode_u64(&k), decode_block_value(&v)) {
                f(id, inode, gs);
            }
        }
        Ok(())
    }

    /// Checks the tree: every entry points at an inode whose parent and name
    /// match, every inode but the root is reachable, child counts are right.
    pub fn check_consistency(&self) -> Result<u64> {
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![ROOT_ID];
        while let Some(dir) = stack.pop() {
            if !seen.insert(dir) {
                return Err(NnError::Corrupt(format!("inode {dir} reachable twice (cycle)")));
            }
            let inode = self
                .get_inode(dir)?
                .ok_or_else(|| NnError::Corrupt(format!("inode {dir} missing")))?;
            if !inode.is_dir {
                continue;
            }
            let children = self.child_ids(dir)?;
            if children.len() as u64 != inode.children {
                return Err(NnError::Corrupt(format!(
                    "directory {dir} counts {} children but has {}",
                    inode.children,
                    children.len()
                )));
            }
            for cid in children {
                let child = self
                    .get_inode(cid)?
                    .ok_or_else(|| NnError::Corrupt(format!("entry points at missing inode {cid}")))?;
                if child.parent != dir {
                    return Err(NnError::Corrupt(format!("inode {cid} parent mismatch")));
                }
                stack.push(cid);
            }
        }
        let total = self
            .db
            .iterator_cf(self.cf(CF_INODES)?, IteratorMode::Start)
            .count() as u64;
        if total != seen.len() as u64 {
            return Err(NnError::Corrupt(format!(
                "{} inodes stored but {} reachable (orphans)",
                total,
                seen.len()
            )));
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use granary_common::identity::Identity;

    /// A new namespace in a temporary directory (kept alive by the first
    /// element, which drops last), and its superuser.
    fn namespace() -> (tempfile::TempDir, Namespace, Caller) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = NamespaceConfig {
            superuser: "hdfs".into(),
            ..Default::default()
        };
        let ns = Namespace::create_new(tmp.path(), cfg).expect("new namespace");
        let su = ns.caller(Identity::new("hdfs", vec![]));
        (tmp, ns, su)
    }

    /// Inside `deferring_durability` a mutation hands its write to the caller
    /// (the gRPC layer awaits it), and so does work that must wait for it;
    /// outside, or after the deferring code panicked, mutations wait for
    /// their fsync themselves again and such work runs at once.
    #[test]
    fn deferred_mutations_hand_their_write_to_the_caller() {
        let (_tmp, ns, su) = namespace();
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, deferred) = deferring_durability(|| {
            ns.mkdirs(&su, "/a", 0, false)?;
            ns.mkdirs(&su, "/b", 0, false)?;
            let ran = ran.clone();
            ns.after_durable(false, move || ran.store(true, Ordering::SeqCst));
            Ok::<_, NnError>(())
        });
        r.expect("mkdirs");
        assert!(!ran.load(Ordering::SeqCst), "ran before its write was durable");
        let pending = deferred.pending.expect("the writes were handed over");
        assert_eq!(pending.seq(), 2, "the later of the two writes");
        assert_eq!(deferred.after.len(), 1, "the waiting work was handed over");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(pending.wait()).expect("durable");

        let (r, deferred) = deferring_durability(|| ns.get_file_info(&su, "/a").map(|_| ()));
        r.expect("stat");
        assert!(deferred.pending.is_none(), "a read writes nothing");

        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        ns.after_durable(false, move || flag.store(true, Ordering::SeqCst));
        assert!(
            ran.load(Ordering::SeqCst),
            "outside a deferral the work runs at once"
        );

        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            deferring_durability(|| {
                ns.mkdirs(&su, "/c", 0, false).expect("mkdirs");
                panic!("handler bug");
            })
        }));
        assert!(panicked.is_err());
        assert!(
            DEFERRED.with(|d| d.borrow().is_none()),
            "the thread still defers after a panic"
        );
        ns.mkdirs(&su, "/d", 0, false).expect("mkdirs waits for itself");
        assert!(DEFERRED.with(|d| d.borrow().is_none()));
    }

    /// Decommissioned datanodes are kept in the metadata store until they
    /// are returned to service; other metadata keys are not mistaken for them.
    #[test]
    fn out_of_service_datanodes_are_kept_until_recommissioned() {
        let (_tmp, ns, _su) = namespace();
        assert!(ns.out_of_service().expect("read").is_empty());
        ns.set_out_of_service("dn-b", true).expect("decommission");
        ns.set_out_of_service("dn-a", true).expect("decommission");
        ns.set_out_of_service("dn-a", true).expect("again");
        assert_eq!(ns.out_of_service().expect("read"), ["dn-a", "dn-b"]);
        ns.set_out_of_service("dn-a", false).expect("recommission");
        ns.set_out_of_service("dn-never", false)
            .expect("unknown: nothing to forget");
        assert_eq!(ns.out_of_service().expect("read"), ["dn-b"]);
    }

    /// A create walks its path before taking the namespace lock; a rename
    /// in that window must not make it create the file elsewhere.
    #[test]
    fn a_create_lands_at_its_path_when_the_parent_moves_during_its_walk() {
        let (_tmp, ns, su) = namespace();
        ns.mkdirs(&su, "/a/b", 0, true).expect("mkdirs");
        let hook_su = su.clone();
        *ns.after_walk.lock() = Some(Box::new(move |ns: &Namespace| {
            ns.rename(&hook_su, "/a/b", "/a/moved", false).expect("rename");
            ns.mkdirs(&hook_su, "/a/b", 0, false).expect("mkdirs again");
        }));
        let (file, _) = ns
            .create(&su, "/a/b/f", 0, "writer", false, false, 1, 0)
            .expect("create");
        assert_eq!(ns.get_file_info(&su, "/a/b/f").expect("stat").id, file.id);
        assert!(
            ns.get_file_info(&su, "/a/moved/f").is_err(),
            "created in the moved directory"
        );
        ns.check_consistency().expect("consistent");

        // The parent deleted in the window: the create fails, nothing is orphaned.
        *ns.after_walk.lock() = Some(Box::new(move |ns: &Namespace| {
            ns.delete(&su, "/a/b", true).expect("delete");
        }));
        let su = ns.caller(Identity::new("hdfs", vec![]));
        assert!(matches!(
            ns.create(&su, "/a/b/g", 0, "writer", false, false, 1, 0),
            Err(NnError::NotFound(_))
        ));
        ns.check_consistency().expect("consistent");
    }

    /// A rename walks both paths before taking the namespace lock; what
    /// changes in that window must decide its outcome, not the walk.
    #[test]
    fn a_rename_acts_on_the_namespace_as_it_is_under_the_lock() {
        let (_tmp, ns, su) = namespace();
        ns.mkdirs(&su, "/d/sub", 0, true).expect("mkdirs");
        let f = ns
            .create(&su, "/d/sub/f", 0, "w", false, false, 1, 0)
            .expect("create")
            .0;

        // Another caller's rename, run between the walk and the lock.
        let rename_in_window = |from: &'static str, to: &'static str| {
            let h = su.clone();
            *ns.after_walk.lock() = Some(Box::new(move |ns: &Namespace| {
                ns.rename(&h, from, to, false).expect("rename in the window");
            }));
        };

        // The source's directory moves in the window: the old path is gone.
        rename_in_window("/d/sub", "/d/moved");
        assert!(matches!(
            ns.rename(&su, "/d/sub/f", "/d/g", false),
            Err(NnError::NotFound(_))
        ));
        assert_eq!(ns.get_file_info(&su, "/d/moved/f").expect("stat").id, f.id);

        // Another file rename takes the source away in the window.
        rename_in_window("/d/moved/f", "/d/moved/f2");
        assert!(matches!(
            ns.rename(&su, "/d/moved/f", "/d/moved/g", false),
            Err(NnError::NotFound(_))
        ));

        // A file appears at the destination in the window: no overwrite.
        let other = ns
            .create(&su, "/d/other", 0, "w", false, false, 1, 0)
            .expect("create")
            .0;
        rename_in_window("/d/other", "/d/moved/g");
        assert!(matches!(
            ns.rename(&su, "/d/moved/f2", "/d/moved/g", false),
            Err(NnError::AlreadyExists(_))
        ));
        assert_eq!(ns.get_file_info(&su, "/d/moved/g").expect("stat").id, other.id);
        assert_eq!(ns.get_file_info(&su, "/d/moved/f2").expect("stat").id, f.id);

        // The destination's directory moves away in the window.
        ns.mkdirs(&su, "/x/y", 0, true).expect("mkdirs");
        rename_in_window("/x", "/d/x");
        assert!(matches!(
            ns.rename(&su, "/d/moved/f2", "/x/y/f", false),
            Err(NnError::NotFound(_))
        ));
        assert_eq!(ns.get_file_info(&su, "/d/moved/f2").expect("stat").id, f.id);
        ns.check_consistency().expect("consistent");
    }

    /// A full report's batched lookup answers exactly as one lookup per
    /// block would, whatever the order and gaps of the reported ids.
    #[test]
    fn batched_block_lookups_match_single_lookups() {
        let (_tmp, ns, su) = namespace();
        let mut known = Vec::new();
        for f in 0..3 {
            let path = format!("/f{f}");
            let (file, _) = ns.create(&su, &path, 0, "w", false, false, 1, 0).expect("create");
            let mut prev: Option<pb::ExtendedBlock> = None;
            for _ in 0..30 {
                let b = ns
                    .add_block(&path, file.id, "w", prev.as_ref())
                    .expect("add block")
                    .block;
                let mut e = b.to_extended();
                e.num_bytes = 1;
                known.push(e.block_id);
                prev = Some(e);
            }
            ns.complete(&path, file.id, "w", prev.as_ref(), |_| true)
                .expect("complete");
        }
        // Deleted blocks leave gaps longer than the iterator's step budget.
        ns.delete(&su, "/f1", false).expect("delete");
        let max = known.iter().copied().max().expect("blocks");
        let mut ids: Vec<u64> = known.iter().rev().step_by(2).copied().collect();
        ids.extend([0, 1, max + 1, max + 1000, u64::MAX]);
        ids.extend(known.iter().step_by(3).copied());
        ids.push(known[0]);
        let batched = ns.block_owners(&ids).expect("batched lookups");
        let mut found = 0;
        for (id, got) in ids.iter().zip(&batched) {
            assert_eq!(*got, ns.block_owner(*id).expect("lookup"), "block {id}");
            found += usize::from(got.is_some());
        }
        assert!(found > 20, "only {found} reported blocks were found");
        assert!(ns.block_owners(&[]).expect("empty report").is_empty());
    }
}
