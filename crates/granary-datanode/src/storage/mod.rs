//! Replicas on local disks. Each finalized replica is two files under a
//! hashed directory (`current/finalized/subdirA/subdirB/`): `blk_<id>` with
//! the data and `blk_<id>_<gs>.meta` with a header and one CRC32C per chunk.
//! Replicas being written live in `current/rbw/` until finalized by rename, so
//! a crash never leaves a half-written replica that looks finished. A
//! replica whose writer went away (or that a restart found in `rbw/`) is
//! kept "waiting for recovery" (HDFS's RWR) and reported with the length
//! its checksums cover, until the namenode's lease recovery finalizes it at
//! the length every surviving replica holds, or invalidates it.

mod disk_balance;
mod load;
mod writer;

pub use disk_balance::DiskBalance;

pub use writer::{ReplicaReader, ReplicaWriter};

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::RwLock;

use granary_common::{ErrorCode, HasErrorCode};
use granary_proto as pb;

const META_VERSION: u16 = 1;
const CHECKSUM_TYPE_CRC32C: u8 = 2;
pub const META_HEADER_LEN: u64 = 7;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("no space left for block {block} on any data dir")]
    NoSpace { block: u64 },
    #[error("every data dir has failed")]
    AllVolumesFailed,
    #[error("block {block} already has a finalized replica with generation stamp {gs}")]
    ReplicaExists { block: u64, gs: u64 },
    #[error("no replica of block {block} with generation stamp {gs}")]
    NotFound { block: u64, gs: u64 },
    #[error("replica metadata {path} is invalid: {reason}")]
    BadMeta { path: PathBuf, reason: String },
    #[error("replica of block {block} is damaged: {reason}")]
    Damaged { block: u64, reason: String },
}

impl HasErrorCode for StorageError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::NoSpace { .. } | Self::AllVolumesFailed => ErrorCode::Unavailable,
            Self::ReplicaExists { .. } => ErrorCode::FileAlreadyExists,
            Self::NotFound { .. } => ErrorCode::FileNotFound,
            Self::BadMeta { .. } | Self::Damaged { .. } => ErrorCode::Checksum,
            Self::Io { .. } => ErrorCode::Internal,
        }
    }
}

impl From<StorageError> for tonic::Status {
    fn from(e: StorageError) -> Self {
        granary_common::error::to_status(e)
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct Volume {
    pub root: PathBuf,
    pub storage_id: String,
    failed: AtomicBool,
}

impl Volume {
    fn finalized_dir(&self, id: u64) -> PathBuf {
        self.root
            .join("current/finalized")
            .join(format!("subdir{}", (id >> 16) & 0x1f))
            .join(format!("subdir{}", (id >> 8) & 0x1f))
    }

    fn rbw_dir(&self) -> PathBuf {
        self.root.join("current/rbw")
    }

    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    fn mark_failed(&self, why: &dyn std::fmt::Display) {
        if !self.failed.swap(true, Ordering::Relaxed) {
            tracing::error!(dir = %self.root.display(), error = %why, "data dir failed; no new replicas go there");
        }
    }

    /// (capacity, available) of the file system holding this volume.
    fn space(&self) -> Option<(u64, u64)> {
        let st = nix::sys::statvfs::statvfs(&self.root).ok()?;
        let frag = st.fragment_size() as u64;
        Some((st.blocks() as u64 * frag, st.blocks_available() as u64 * frag))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replica {
    pub gs: u64,
    pub len: u64,
    pub volume: usize,
}

pub struct Storage {
    volumes: Vec<Volume>,
    /// Finalized replicas.
    replicas: RwLock<HashMap<u64, Replica>>,
    /// Finalized replicas whose files disagree, with why: never served.
    damaged: RwLock<HashMap<u64, String>>,
    /// Replicas in `rbw/` waiting for recovery (their files closed).
    waiting: RwLock<HashMap<u64, Replica>>,
    next_volume: AtomicUsize,
    reserved: u64,
    /// `[storage] capacity_bytes`: 0, or the most of each disk counted.
    capacity_limit: u64,
    sync_on_close: bool,
    /// Striped by block id: held while a finalized replica's files and map
    /// entry change together (finalize, delete, reopen, forget, a disk
    /// balancer move), so none sees another half done.
    block_locks: Vec<parking_lot::Mutex<()>>,
}

/// Stripes of [`Storage::block_locks`].
const BLOCK_LOCK_STRIPES: usize = 64;

/// What a full block report says about this datanode's replicas.
#[derive(Debug, Default)]
pub struct Report {
    pub finalized: Vec<pb::ExtendedBlock>,
    pub waiting: Vec<pb::ExtendedBlock>,
    pub damaged: Vec<pb::CorruptReplica>,
}

fn data_name(id: u64) -> String {
    format!("blk_{id}")
}

fn meta_name(id: u64, gs: u64) -> String {
    format!("blk_{id}_{gs}.meta")
}

/// A marker beside a finalized replica found damaged, holding why: the
/// mark survives a restart (until the namenode has the replica deleted).
fn damage_name(id: u64, gs: u64) -> String {
    format!("blk_{id}_{gs}.damaged")
}

fn extended(id: u64, r: &Replica) -> pb::ExtendedBlock {
    pb::ExtendedBlock {
        block_id: id,
        generation_stamp: r.gs,
        num_bytes: r.len,
    }
}

fn meta_header(bpc: u32) -> [u8; META_HEADER_LEN as usize] {
    let mut h = [0u8; META_HEADER_LEN as usize];
    h[..2].copy_from_slice(&META_VERSION.to_be_bytes());
    h[2] = CHECKSUM_TYPE_CRC32C;
    h[3..].copy_from_slice(&bpc.to_be_bytes());
    h
}

impl Storage {
    /// Opens the volumes and indexes finalized replicas and the replicas
    /// writers left in `rbw/` (kept for recovery, never dropped here).
    /// `cfg` is the datanode's `[storage]` section.
    pub fn open(
        dirs: &[(PathBuf, String)],
        cfg: &crate::config::StorageConfig,
    ) -> Result<Self, StorageError> {
        let (reserved, sync_on_close) = (cfg.reserved_bytes, cfg.sync_on_close);
        let capacity_limit = cfg.capacity_bytes;
        let mut volumes = Vec::new();
        let mut replicas = HashMap::new();
        let mut damaged = HashMap::new();
        let mut waiting = HashMap::new();
        for (i, (root, storage_id)) in dirs.iter().enumerate() {
            let v = Volume {
                root: root.clone(),
                storage_id: storage_id.clone(),
                failed: AtomicBool::new(false),
            };
            let rbw = v.rbw_dir();
            std::fs::create_dir_all(&rbw).map_err(io(&rbw))?;
            load::scan_rbw(&rbw, i, &mut waiting)?;
            let fin = root.join("current/finalized");
            std::fs::create_dir_all(&fin).map_err(io(&fin))?;
            load::scan_finalized(&fin, i, &mut replicas, &mut damaged)?;
            volumes.push(v);
        }
        // A finalized replica supersedes a half-written one of the same block.
        waiting.retain(|id, w: &mut Replica| match replicas.get(id) {
            Some(f) if f.gs >= w.gs => {
                let v = &volumes[w.volume];
                let _ = std::fs::remove_file(v.rbw_dir().join(data_name(*id)));
                let _ = std::fs::remove_file(v.rbw_dir().join(meta_name(*id, w.gs)));
                false
            }
            _ => true,
        });
        tracing::info!(
            replicas = replicas.len(),
            waiting = waiting.len(),
            damaged = damaged.len(),
            volumes = volumes.len(),
            "replica map rebuilt from disk"
        );
        Ok(Self {
            volumes,
            replicas: RwLock::new(replicas),
            damaged: RwLock::new(damaged),
            waiting: RwLock::new(waiting),
            next_volume: AtomicUsize::new(0),
            reserved,
            capacity_limit,
            block_locks: (0..BLOCK_LOCK_STRIPES).map(|_| Default::default()).collect(),
            sync_on_close,
        })
    }

    /// The stripe of [`Storage::block_locks`] block `id` is under.
    fn block_lock(&self, id: u64) -> parking_lot::MutexGuard<'_, ()> {
        self.block_locks[(id as usize) % BLOCK_LOCK_STRIPES].lock()
    }

    pub fn volumes(&self) -> &[Volume] {
        &self.volumes
    }

    pub fn get(&self, id: u64) -> Option<Replica> {
        self.replicas.read().get(&id).copied()
    }

    pub fn replica_count(&self) -> usize {
        self.replicas.read().len()
    }

    /// Every finalized replica (the block scanner's list).
    pub fn finalized(&self) -> Vec<pb::ExtendedBlock> {
        self.replicas
            .read()
            .iter()
            .map(|(id, r)| extended(*id, r))
            .collect()
    }

    /// Every replica, for a full block report: finalized, waiting for
    /// recovery, and damaged (reported apart, as corrupt).
    pub fn block_report(&self) -> Report {
        let damaged = self.damaged.read();
        let mut report = Report::default();
        for (id, r) in self.replicas.read().iter() {
            match damaged.get(id) {
                Some(why) => report.damaged.push(pb::CorruptReplica {
                    block: Some(extended(*id, r)),
                    reason: why.clone(),
                }),
                None => report.finalized.push(extended(*id, r)),
            }
        }
        report.waiting = self
            .waiting
            .read()
            .iter()
            .map(|(id, r)| extended(*id, r))
            .collect();
        report
    }

    /// A replica waiting for recovery, if this datanode holds one of `id`.
    pub fn waiting(&self, id: u64) -> Option<Replica> {
        self.waiting.read().get(&id).copied()
    }

    /// Why a finalized replica is not served, if it is damaged.
    pub fn damage(&self, id: u64) -> Option<String> {
        self.damaged.read().get(&id).cloned()
    }

    /// Marks a finalized replica damaged (the block scanner found it bad):
    /// it is no longer served, and is deleted only when the namenode says so.
    pub fn mark_damaged(&self, id: u64, why: String) {
        let Some(r) = self.get(id) else { return };
        let marker = self.volumes[r.volume]
            .finalized_dir(id)
            .join(damage_name(id, r.gs));
        if let Err(e) = std::fs::write(&marker, why.as_bytes()) {
            tracing::warn!(block_id = id, path = %marker.display(), error = %e, "cannot record a damaged replica on disk");
        }
        self.damaged.write().insert(id, why);
    }

    /// Removes a replica's damage marker, if any.
    fn clear_damage(&self, id: u64, r: &Replica) {
        if self.damaged.write().remove(&id).is_some() {
            let _ = std::fs::remove_file(
                self.volumes[r.volume]
                    .finalized_dir(id)
                    .join(damage_name(id, r.gs)),
            );
        }
    }

    pub fn storage_reports(&self) -> Vec<pb::StorageReport> {
        let replicas = self.replicas.read();
        self.volumes
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let used: u64 = replicas.values().filter(|r| r.volume == i).map(|r| r.len).sum();
                let (capacity, avail) = v.space().unwrap_or((0, 0));
                let (mut capacity, mut remaining) = (
                    capacity.saturating_sub(self.reserved),
                    avail.saturating_sub(self.reserved),
                );
                if self.capacity_limit > 0 {
                    capacity = capacity.min(self.capacity_limit);
                    remaining = remaining.min(capacity.saturating_sub(used));
                }
                pb::StorageReport {
                    storage_id: v.storage_id.clone(),
                    path: v.root.display().to_string(),
                    capacity,
                    dfs_used: used,
                    remaining,
                    failed: v.is_failed(),
                }
            })
            .collect()
    }

    /// Starts a replica in `rbw/` on the next volume with room.
    pub fn create_rbw(
        &self,
        block: &pb::ExtendedBlock,
        bpc: u32,
        expected_len: u64,
    ) -> Result<ReplicaWriter, StorageError> {
        if let Some(r) = self.get(block.block_id)
            && r.gs >= block.generation_stamp
        {
            return Err(StorageError::ReplicaExists {
                block: block.block_id,
                gs: r.gs,
            });
        }
        if let Some(w) = self.waiting(block.block_id) {
            if w.gs >= block.generation_stamp {
                return Err(StorageError::ReplicaExists {
                    block: block.block_id,
                    gs: w.gs,
                });
            }
            // An older generation's half-written replica is superseded.
            self.remove_waiting(block.block_id, w.gs);
        }
        let n = self.volumes.len();
        let start = self.next_volume.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let vi = (start + k) % n;
            let v = &self.volumes[vi];
            if v.is_failed() {
                continue;
            }
            if let Some((_, avail)) = v.space()
                && avail < self.reserved.saturating_add(expected_len)
            {
                continue;
            }
            let data_path = v.rbw_dir().join(data_name(block.block_id));
            let meta_path = v
                .rbw_dir()
                .join(meta_name(block.block_id, block.generation_stamp));
            // Readable too: lease recovery reads a cut chunk back to checksum it.
            let create = |p: &Path| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(p)
            };
            let open = || -> std::io::Result<(File, File)> {
                let data = create(&data_path)?;
                let mut meta = create(&meta_path)?;
                meta.write_all(&meta_header(bpc))?;
                Ok((data, meta))
            };
            match open() {
                Ok((data, meta)) => {
                    return Ok(ReplicaWriter {
                        block_id: block.block_id,
                        gs: block.generation_stamp,
                        volume: vi,
                        data,
                        meta,
                        data_path,
                        meta_path,
                        written: 0,
                        bpc,
                    });
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => continue,
                Err(e) => {
                    let _ = std::fs::remove_file(&data_path);
                    let _ = std::fs::remove_file(&meta_path);
                    v.mark_failed(&e);
                }
            }
        }
        if self.volumes.iter().all(Volume::is_failed) {
            Err(StorageError::AllVolumesFailed)
        } else {
            Err(StorageError::NoSpace {
                block: block.block_id,
            })
        }
    }

    /// Takes a finalized replica of an older generation back into `rbw/` so a
    /// pipeline recovery can continue it (the writer never saw its last ack).
    pub fn reopen_finalized(&self, id: u64, newer_gs: u64) -> Result<ReplicaWriter, StorageError> {
        let _block = self.block_lock(id);
        let r = self
            .get(id)
            .filter(|r| r.gs < newer_gs)
            .ok_or(StorageError::NotFound {
                block: id,
                gs: newer_gs,
            })?;
        let v = &self.volumes[r.volume];
        let dir = v.finalized_dir(id);
        let (data_src, meta_src) = (dir.join(data_name(id)), dir.join(meta_name(id, r.gs)));
        let data_path = v.rbw_dir().join(data_name(id));
        let meta_path = v.rbw_dir().join(meta_name(id, r.gs));
        self.replicas.write().remove(&id);
        self.clear_damage(id, &r);
        std::fs::rename(&data_src, &data_path).map_err(io(&data_path))?;
        std::fs::rename(&meta_src, &meta_path).map_err(io(&meta_path))?;
        self.open_writer(id, r, data_path, meta_path)
    }

    /// Takes a replica waiting for recovery of generation `gs` back as a
    /// writer (to continue it, or to finalize it where lease recovery says).
    pub fn reopen_waiting(&self, id: u64, gs: u64) -> Result<ReplicaWriter, StorageError> {
        let r = self
            .take_waiting(id, gs)
            .ok_or(StorageError::NotFound { block: id, gs })?;
        let v = &self.volumes[r.volume];
        let data_path = v.rbw_dir().join(data_name(id));
        let meta_path = v.rbw_dir().join(meta_name(id, r.gs));
        self.open_writer(id, r, data_path, meta_path).inspect_err(|_| {
            // Still on disk: keep it known.
            self.waiting.write().insert(id, r);
        })
    }

    fn open_writer(
        &self,
        id: u64,
        r: Replica,
        data_path: PathBuf,
        meta_path: PathBuf,
    ) -> Result<ReplicaWriter, StorageError> {
        let bpc = load::read_header(&meta_path)?;
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .map_err(io(p))
        };
        let mut data = open(&data_path)?;
        let mut meta = open(&meta_path)?;
        use std::io::{Seek, SeekFrom};
        data.seek(SeekFrom::End(0)).map_err(io(&data_path))?;
        meta.seek(SeekFrom::End(0)).map_err(io(&meta_path))?;
        Ok(ReplicaWriter {
            block_id: id,
            gs: r.gs,
            volume: r.volume,
            data,
            meta,
            data_path,
            meta_path,
            written: r.len,
            bpc,
        })
    }

    /// Sets a half-written replica aside until the namenode recovers it:
    /// its files stay in `rbw/`, it is reported as waiting for recovery.
    pub fn park(&self, mut w: ReplicaWriter) {
        let _ = w.data.flush();
        let _ = w.meta.flush();
        let r = Replica {
            gs: w.gs,
            len: w.written,
            volume: w.volume,
        };
        self.waiting.write().insert(w.block_id, r);
    }

    /// Takes the waiting replica of `id` out of the map if it is of generation `gs`.
    fn take_waiting(&self, id: u64, gs: u64) -> Option<Replica> {
        let mut w = self.waiting.write();
        match w.get(&id) {
            Some(r) if r.gs == gs => w.remove(&id),
            _ => None,
        }
    }

    /// Removes a waiting replica's files if it is of generation `gs`.
    fn remove_waiting(&self, id: u64, gs: u64) -> bool {
        let Some(r) = self.take_waiting(id, gs) else {
            return false;
        };
        let v = &self.volumes[r.volume];
        let _ = std::fs::remove_file(v.rbw_dir().join(data_name(id)));
        let _ = std::fs::remove_file(v.rbw_dir().join(meta_name(id, gs)));
        true
    }

    /// Moves a complete replica into `finalized/` and makes it readable.
    pub fn finalize(&self, mut w: ReplicaWriter, sync: bool) -> Result<pb::ExtendedBlock, StorageError> {
        let _block = self.block_lock(w.block_id);
        let v = &self.volumes[w.volume];
        let res = (|| {
            w.data.flush().map_err(io(&w.data_path))?;
            w.meta.flush().map_err(io(&w.meta_path))?;
            if sync || self.sync_on_close {
                w.data.sync_all().map_err(io(&w.data_path))?;
                w.meta.sync_all().map_err(io(&w.meta_path))?;
            }
            let dir = v.finalized_dir(w.block_id);
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            // An older generation of this block is superseded.
            if let Some(old) = self.get(w.block_id) {
                let ov = &self.volumes[old.volume];
                let od = ov.finalized_dir(w.block_id);
                let _ = std::fs::remove_file(od.join(data_name(w.block_id)));
                let _ = std::fs::remove_file(od.join(meta_name(w.block_id, old.gs)));
                self.clear_damage(w.block_id, &old);
            }
            // Meta first: a data file without meta is ignored by the scan.
            let meta_dst = dir.join(meta_name(w.block_id, w.gs));
            std::fs::rename(&w.meta_path, &meta_dst).map_err(io(&meta_dst))?;
            let data_dst = dir.join(data_name(w.block_id));
            std::fs::rename(&w.data_path, &data_dst).map_err(io(&data_dst))?;
            if sync || self.sync_on_close {
                File::open(&dir).and_then(|d| d.sync_all()).map_err(io(&dir))?;
            }
            Ok(())
        })();
        if let Err(e) = res {
            w.abort();
            return Err(e);
        }
        self.replicas.write().insert(
            w.block_id,
            Replica {
                gs: w.gs,
                len: w.written,
                volume: w.volume,
            },
        );
        Ok(pb::ExtendedBlock {
            block_id: w.block_id,
            generation_stamp: w.gs,
            num_bytes: w.written,
        })
    }

    /// Lease recovery's outcome for a replica this node holds at generation
    /// `block.generation_stamp` (waiting for recovery, or one a broken
    /// pipeline handed over as `writer`): cut to `len`, restamped `new_gs`,
    /// finalized, and fsynced.
    pub fn commit(
        &self,
        writer: Option<ReplicaWriter>,
        block: &pb::ExtendedBlock,
        new_gs: u64,
        len: u64,
    ) -> Result<pb::ExtendedBlock, StorageError> {
        let mut w = match writer {
            Some(w) => w,
            None => self.reopen_waiting(block.block_id, block.generation_stamp)?,
        };
        if w.written < len {
            let have = w.written;
            self.park(w);
            return Err(StorageError::Damaged {
                block: block.block_id,
                reason: format!("recovery wants {len} bytes but the replica holds {have}"),
            });
        }
        let res = w.truncate_to(len).and_then(|()| w.restamp(new_gs));
        if let Err(e) = res {
            self.park(w);
            return Err(e);
        }
        self.finalize(w, true)
    }

    /// Deletes a replica of exactly the named generation (finalized, damaged
    /// or waiting for recovery); true if removed. A replica of another
    /// generation is never touched: the namenode names what it saw.
    pub fn delete(&self, block: &pb::ExtendedBlock) -> Result<bool, StorageError> {
        let (id, gs) = (block.block_id, block.generation_stamp);
        if self.remove_waiting(id, gs) {
            return Ok(true);
        }
        let _block = self.block_lock(id);
        let r = {
            let mut m = self.replicas.write();
            match m.get(&id) {
                Some(r) if r.gs == gs => {
                    let r = *r;
                    m.remove(&id);
                    r
                }
                _ => return Ok(false),
            }
        };
        self.clear_damage(id, &r);
        let dir = self.volumes[r.volume].finalized_dir(id);
        for p in [dir.join(data_name(id)), dir.join(meta_name(id, r.gs))] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&p)(e)),
            }
        }
        Ok(true)
    }

    /// Forgets a replica whose files vanished; true if it was known and
    /// its files are still not where the map says (a replica moved to
    /// another data dir meanwhile is kept).
    pub fn forget(&self, id: u64) -> bool {
        let _block = self.block_lock(id);
        let Some(r) = self.get(id) else { return false };
        let dir = self.volumes[r.volume].finalized_dir(id);
        if dir.join(data_name(id)).exists() && dir.join(meta_name(id, r.gs)).exists() {
            return false;
        }
        let removed = self.replicas.write().remove(&id);
        match removed {
            Some(r) => {
                self.clear_damage(id, &r);
                true
            }
            None => false,
        }
    }

    /// The files of a finalized replica, for tests and tools that inspect disks.
    pub fn replica_paths(&self, id: u64) -> Option<(PathBuf, PathBuf)> {
        let r = self.get(id)?;
        let dir = self.volumes[r.volume].finalized_dir(id);
        Some((dir.join(data_name(id)), dir.join(meta_name(id, r.gs))))
    }

    /// The files of a replica waiting for recovery, for tests.
    pub fn waiting_paths(&self, id: u64) -> Option<(PathBuf, PathBuf)> {
        let r = self.waiting(id)?;
        let dir = self.volumes[r.volume].rbw_dir();
        Some((dir.join(data_name(id)), dir.join(meta_name(id, r.gs))))
    }

    /// Opens a replica waiting for recovery (parked in `rbw/`) of
    /// generation `gs` or newer for reading, as far as it was written.
    pub fn open_waiting_read(&self, id: u64, gs: u64) -> Result<ReplicaReader, StorageError> {
        let r = self
            .waiting(id)
            .filter(|r| r.gs >= gs)
            .ok_or(StorageError::NotFound { block: id, gs })?;
        let paths = self
            .waiting_paths(id)
            .ok_or(StorageError::NotFound { block: id, gs })?;
        reader(paths, r.len)
    }

    /// Opens a finalized replica of generation `gs` (or newer) for reading.
    pub fn open_read(&self, id: u64, gs: u64) -> Result<ReplicaReader, StorageError> {
        let r = self
            .get(id)
            .filter(|r| r.gs >= gs)
            .ok_or(StorageError::NotFound { block: id, gs })?;
        if let Some(reason) = self.damage(id) {
            return Err(StorageError::Damaged { block: id, reason });
        }
        let paths = self
            .replica_paths(id)
            .ok_or(StorageError::NotFound { block: id, gs })?;
        reader(paths, r.len)
    }
}

/// A replica's data and meta files opened for reading its first `len` bytes.
fn reader((data_path, meta_path): (PathBuf, PathBuf), len: u64) -> Result<ReplicaReader, StorageError> {
    let data = File::open(&data_path).map_err(io(&data_path))?;
    let meta = File::open(&meta_path).map_err(io(&meta_path))?;
    let bpc = load::read_header(&meta_path)?;
    Ok(ReplicaReader {
        data,
        meta,
        len,
        bpc,
        data_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blk(id: u64, gs: u64) -> pb::ExtendedBlock {
        pb::ExtendedBlock {
            block_id: id,
            generation_stamp: gs,
            num_bytes: 0,
        }
    }

    fn open(dirs: &[PathBuf]) -> Storage {
        open_with(dirs, &crate::config::StorageConfig::default())
    }

    /// A storage on `dirs` (one volume each) with `[storage]` `cfg`.
    pub(super) fn open_with(dirs: &[PathBuf], cfg: &crate::config::StorageConfig) -> Storage {
        let vols: Vec<_> = dirs
            .iter()
            .enumerate()
            .map(|(i, d)| (d.clone(), format!("DS-{i}")))
            .collect();
        Storage::open(&vols, cfg).unwrap()
    }

    pub(super) fn write(
        s: &Storage,
        id: u64,
        gs: u64,
        data: &[u8],
    ) -> Result<pb::ExtendedBlock, StorageError> {
        let mut w = s.create_rbw(&blk(id, gs), 512, 0)?;
        w.write(data, &granary_common::checksum::compute(data, 512))?;
        s.finalize(w, false)
    }

    #[test]
    fn replicas_survive_a_restart_and_half_written_ones_wait_for_recovery() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = vec![tmp.path().join("d1"), tmp.path().join("d2")];
        let s = open(&dirs);
        let data = vec![7u8; 1500];
        assert_eq!(write(&s, 1, 10, &data).unwrap().num_bytes, 1500);
        write(&s, 2, 10, b"x").unwrap();
        // A replica of the same generation cannot be written twice.
        assert!(matches!(
            s.create_rbw(&blk(1, 10), 512, 0),
            Err(StorageError::ReplicaExists { .. })
        ));
        let mut half = s.create_rbw(&blk(3, 10), 512, 0).unwrap();
        half.write(&data, &granary_common::checksum::compute(&data, 512))
            .unwrap();
        half.sync().unwrap();
        drop(s);
        let s = open(&dirs);
        assert_eq!(s.get(1).map(|r| (r.gs, r.len)), Some((10, 1500)));
        assert!(s.get(3).is_none(), "a replica never finalized is not readable");
        assert_eq!(
            s.waiting(3).map(|r| (r.gs, r.len)),
            Some((10, 1500)),
            "a half-written replica is kept, whole"
        );
        let report = s.block_report();
        assert_eq!(report.finalized.len(), 2);
        assert_eq!(
            report.waiting,
            vec![pb::ExtendedBlock {
                num_bytes: 1500,
                ..blk(3, 10)
            }]
        );
        let r = s.open_read(1, 10).unwrap();
        let (d, sums) = r.read(512, 4096).unwrap();
        assert_eq!(d.len(), 988);
        granary_common::checksum::verify(&d, &sums, 512, 512).unwrap();
        assert!(s.delete(&blk(2, 10)).unwrap());
        assert!(s.get(2).is_none());
        assert!(matches!(s.open_read(2, 10), Err(StorageError::NotFound { .. })));
    }

    #[test]
    fn deletes_name_the_exact_generation() {
        let tmp = tempfile::tempdir().unwrap();
        let s = open(&[tmp.path().join("d")]);
        write(&s, 1, 10, b"data").unwrap();
        // A request naming a later (or earlier) generation deletes nothing.
        assert!(!s.delete(&blk(1, u64::MAX)).unwrap());
        assert!(!s.delete(&blk(1, 9)).unwrap());
        assert!(s.get(1).is_some());
        assert!(s.delete(&blk(1, 10)).unwrap());
        let mut w = s.create_rbw(&blk(2, 5), 512, 0).unwrap();
        w.write(b"ab", &granary_common::checksum::compute(b"ab", 512))
            .unwrap();
        s.park(w);
        assert!(!s.delete(&blk(2, 6)).unwrap());
        assert!(s.waiting(2).is_some());
        assert!(s.delete(&blk(2, 5)).unwrap());
        assert!(s.waiting(2).is_none());
    }

    #[test]
    fn a_half_written_replica_keeps_the_bytes_its_checksums_cover() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = vec![tmp.path().join("d")];
        let s = open(&dirs);
        let data: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
        let mut w = s.create_rbw(&blk(4, 3), 512, 0).unwrap();
        // 1100 bytes with their checksums (the last chunk partial), as an hflush leaves them...
        w.write(
            &data[..1100],
            &granary_common::checksum::compute(&data[..1100], 512),
        )
        .unwrap();
        // ...then data whose checksums never reached the disk (a crash between the two writes).
        w.data.write_all(&data[1100..2000]).unwrap();
        let (dp, mp) = (w.data_path.clone(), w.meta_path.clone());
        drop(w);
        drop(s);
        let s = open(&dirs);
        assert_eq!(s.waiting(4).map(|r| r.len), Some(1100));
        assert_eq!(std::fs::metadata(&dp).unwrap().len(), 1100);
        assert_eq!(std::fs::metadata(&mp).unwrap().len(), META_HEADER_LEN + 3 * 4);
        // Recovery finalizes it at a shorter length, with a right checksum for the cut chunk.
        let fin = s.commit(None, &blk(4, 3), 7, 700).unwrap();
        assert_eq!((fin.generation_stamp, fin.num_bytes), (7, 700));
        let r = s.open_read(4, 7).unwrap();
        let (d, sums) = r.read(0, 4096).unwrap();
        assert_eq!(d, &data[..700]);
        granary_common::checksum::verify(&d, &sums, 512, 0).unwrap();
        assert!(s.waiting(4).is_none());
        // A writer handed over straight from a broken pipeline (never reopened).
        let mut w = s.create_rbw(&blk(9, 3), 512, 0).unwrap();
        w.write(
            &data[..1000],
            &granary_common::checksum::compute(&data[..1000], 512),
        )
        .unwrap();
        let fin = s.commit(Some(w), &blk(9, 3), 4, 600).unwrap();
        assert_eq!(fin.num_bytes, 600);
        let (d, sums) = s.open_read(9, 4).unwrap().read(0, 4096).unwrap();
        granary_common::checksum::verify(&d, &sums, 512, 0).unwrap();
        // Asking for more than a replica holds fails and keeps it.
        let mut w = s.create_rbw(&blk(5, 3), 512, 0).unwrap();
        w.write(b"abc", &granary_common::checksum::compute(b"abc", 512))
            .unwrap();
        s.park(w);
        assert!(matches!(
            s.commit(None, &blk(5, 3), 8, 10),
            Err(StorageError::Damaged { .. })
        ));
        assert_eq!(s.waiting(5).map(|r| r.len), Some(3));
    }

    #[test]
    fn a_truncated_finalized_replica_is_damaged_not_served() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = vec![tmp.path().join("d")];
        let s = open(&dirs);
        write(&s, 6, 1, &vec![1u8; 5000]).unwrap();
        let (data_path, _) = s.replica_paths(6).unwrap();
        drop(s);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&data_path)
            .unwrap()
            .set_len(1024)
            .unwrap();
        let s = open(&dirs);
        assert!(s.damage(6).is_some());
        assert!(matches!(s.open_read(6, 1), Err(StorageError::Damaged { .. })));
        let report = s.block_report();
        assert!(report.finalized.is_empty());
        assert_eq!(report.damaged.len(), 1);
        assert!(
            report.damaged[0].reason.contains("1024 bytes"),
            "{}",
            report.damaged[0].reason
        );
        // Still on disk until the namenode says otherwise.
        assert!(data_path.exists());
        // A replica the block scanner found bad stays marked across a restart...
        write(&s, 8, 2, b"fine bytes").unwrap();
        s.mark_damaged(8, "checksum mismatch in the chunk at offset 0".into());
        drop(s);
        let s = open(&dirs);
        assert_eq!(
            s.damage(8).as_deref(),
            Some("checksum mismatch in the chunk at offset 0")
        );
        assert!(matches!(s.open_read(8, 2), Err(StorageError::Damaged { .. })));
        // ...until the namenode has it deleted.
        assert!(s.delete(&blk(8, 2)).unwrap());
        drop(s);
        let s = open(&dirs);
        assert!(s.get(8).is_none() && s.damage(8).is_none());
    }

    #[test]
    fn a_failed_disk_is_skipped_and_all_failed_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = vec![tmp.path().join("good"), tmp.path().join("bad")];
        let s = open(&dirs);
        // Break the second disk: its rbw directory becomes a file.
        let rbw = dirs[1].join("current/rbw");
        std::fs::remove_dir_all(&rbw).unwrap();
        std::fs::write(&rbw, b"not a dir").unwrap();
        for id in 0..4 {
            write(&s, id, 1, b"data").unwrap();
        }
        assert!(s.volumes()[1].is_failed());
        assert!(!s.volumes()[0].is_failed());
        let reports = s.storage_reports();
        assert!(reports[1].failed && !reports[0].failed);
        // Break the first as well: writers get an error that says so.
        let rbw0 = dirs[0].join("current/rbw");
        std::fs::remove_dir_all(&rbw0).unwrap();
        std::fs::write(&rbw0, b"x").unwrap();
        let e = write(&s, 99, 1, b"data").unwrap_err();
        assert!(matches!(e, StorageError::AllVolumesFailed), "{e}");
        assert_eq!(e.code(), ErrorCode::Unavailable);
        assert!(e.to_string().contains("every data dir has failed"));
    }
}
