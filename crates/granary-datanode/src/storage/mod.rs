//! Replicas on local disks. Each finalized replica is two files under a
//! hashed directory (`current/finalized/subdirA/subdirB/`): `blk_<id>` with
//! the data and `blk_<id>_<gs>.meta` with a header and one CRC32C per chunk.
//! Replicas being written live in `current/rbw/` until finalized by rename, so
//! a crash never leaves a half-written replica that looks finished.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::RwLock;

use granary_common::checksum::CHECKSUM_SIZE;
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
}

impl HasErrorCode for StorageError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::NoSpace { .. } | Self::AllVolumesFailed => ErrorCode::Unavailable,
            Self::ReplicaExists { .. } => ErrorCode::FileAlreadyExists,
            Self::NotFound { .. } => ErrorCode::FileNotFound,
            Self::BadMeta { .. } => ErrorCode::Checksum,
            Self::Io { .. } => ErrorCode::Internal,
        }
    }
}

impl From<StorageError> for tonic::Status {
    fn from(e: StorageError) -> Self {
        granary_common::error::to_status(e)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
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
    replicas: RwLock<HashMap<u64, Replica>>,
    next_volume: AtomicUsize,
    reserved: u64,
    sync_on_close: bool,
}

fn data_name(id: u64) -> String {
    format!("blk_{id}")
}

fn meta_name(id: u64, gs: u64) -> String {
    format!("blk_{id}_{gs}.meta")
}

fn meta_header(bpc: u32) -> [u8; META_HEADER_LEN as usize] {
    let mut h = [0u8; META_HEADER_LEN as usize];
    h[..2].copy_from_slice(&META_VERSION.to_be_bytes());
    h[2] = CHECKSUM_TYPE_CRC32C;
    h[3..].copy_from_slice(&bpc.to_be_bytes());
    h
}

impl Storage {
    /// Opens the volumes, drops half-written replicas, and indexes finalized ones.
    pub fn open(
        dirs: &[(PathBuf, String)],
        reserved: u64,
        sync_on_close: bool,
    ) -> Result<Self, StorageError> {
        let mut volumes = Vec::new();
        let mut replicas = HashMap::new();
        for (i, (root, storage_id)) in dirs.iter().enumerate() {
            let v = Volume {
                root: root.clone(),
                storage_id: storage_id.clone(),
                failed: AtomicBool::new(false),
            };
            let rbw = v.rbw_dir();
            if rbw.exists() {
                let mut dropped = 0;
                for e in std::fs::read_dir(&rbw).map_err(io(&rbw))? {
                    let p = e.map_err(io(&rbw))?.path();
                    std::fs::remove_file(&p).map_err(io(&p))?;
                    dropped += 1;
                }
                if dropped > 0 {
                    tracing::warn!(dir = %rbw.display(), files = dropped, "discarded replicas left half-written by a crash");
                }
            }
            std::fs::create_dir_all(&rbw).map_err(io(&rbw))?;
            let fin = root.join("current/finalized");
            std::fs::create_dir_all(&fin).map_err(io(&fin))?;
            scan(&fin, i, &mut replicas)?;
            volumes.push(v);
        }
        tracing::info!(
            replicas = replicas.len(),
            volumes = volumes.len(),
            "replica map rebuilt from disk"
        );
        Ok(Self {
            volumes,
            replicas: RwLock::new(replicas),
            next_volume: AtomicUsize::new(0),
            reserved,
            sync_on_close,
        })
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

    /// Every finalized replica, for a full block report.
    pub fn block_report(&self) -> Vec<pb::ExtendedBlock> {
        self.replicas
            .read()
            .iter()
            .map(|(id, r)| pb::ExtendedBlock {
                block_id: *id,
                generation_stamp: r.gs,
                num_bytes: r.len,
            })
            .collect()
    }

    pub fn storage_reports(&self) -> Vec<pb::StorageReport> {
        let replicas = self.replicas.read();
        self.volumes
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let used: u64 = replicas.values().filter(|r| r.volume == i).map(|r| r.len).sum();
                let (capacity, avail) = v.space().unwrap_or((0, 0));
                pb::StorageReport {
                    storage_id: v.storage_id.clone(),
                    path: v.root.display().to_string(),
                    capacity: capacity.saturating_sub(self.reserved),
                    dfs_used: used,
                    remaining: avail.saturating_sub(self.reserved),
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
            let open = || -> std::io::Result<(File, File)> {
                let data = File::create(&data_path)?;
                let mut meta = File::create(&meta_path)?;
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
        let mut h = [0u8; META_HEADER_LEN as usize];
        File::open(&meta_src)
            .and_then(|m| m.read_exact_at(&mut h, 0))
            .map_err(io(&meta_src))?;
        let bpc = u32::from_be_bytes([h[3], h[4], h[5], h[6]]);
        let data_path = v.rbw_dir().join(data_name(id));
        let meta_path = v.rbw_dir().join(meta_name(id, r.gs));
        self.replicas.write().remove(&id);
        std::fs::rename(&data_src, &data_path).map_err(io(&data_path))?;
        std::fs::rename(&meta_src, &meta_path).map_err(io(&meta_path))?;
        let open = |p: &Path| std::fs::OpenOptions::new().write(true).open(p).map_err(io(p));
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

    /// Moves a complete replica into `finalized/` and makes it readable.
    pub fn finalize(&self, mut w: ReplicaWriter, sync: bool) -> Result<pb::ExtendedBlock, StorageError> {
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

    /// Deletes a replica if it is the named generation or older; true if removed.
    pub fn delete(&self, block: &pb::ExtendedBlock) -> Result<bool, StorageError> {
        let Some(r) = self.get(block.block_id) else {
            return Ok(false);
        };
        if r.gs > block.generation_stamp {
            return Ok(false);
        }
        self.replicas.write().remove(&block.block_id);
        let dir = self.volumes[r.volume].finalized_dir(block.block_id);
        for p in [
            dir.join(data_name(block.block_id)),
            dir.join(meta_name(block.block_id, r.gs)),
        ] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&p)(e)),
            }
        }
        Ok(true)
    }

    /// Forgets a replica whose files vanished; true if it was known.
    pub fn forget(&self, id: u64) -> bool {
        self.replicas.write().remove(&id).is_some()
    }

    /// The files of a finalized replica, for tests and tools that inspect disks.
    pub fn replica_paths(&self, id: u64) -> Option<(PathBuf, PathBuf)> {
        let r = self.get(id)?;
        let dir = self.volumes[r.volume].finalized_dir(id);
        Some((dir.join(data_name(id)), dir.join(meta_name(id, r.gs))))
    }

    /// Opens a finalized replica of generation `gs` (or newer) for reading.
    pub fn open_read(&self, id: u64, gs: u64) -> Result<ReplicaReader, StorageError> {
        let r = self
            .get(id)
            .filter(|r| r.gs >= gs)
            .ok_or(StorageError::NotFound { block: id, gs })?;
        let (data_path, meta_path) = self
            .replica_paths(id)
            .ok_or(StorageError::NotFound { block: id, gs })?;
        let data = File::open(&data_path).map_err(io(&data_path))?;
        let meta = File::open(&meta_path).map_err(io(&meta_path))?;
        let mut h = [0u8; META_HEADER_LEN as usize];
        meta.read_exact_at(&mut h, 0).map_err(io(&meta_path))?;
        let bpc = u32::from_be_bytes([h[3], h[4], h[5], h[6]]);
        if u16::from_be_bytes([h[0], h[1]]) != META_VERSION || h[2] != CHECKSUM_TYPE_CRC32C || bpc == 0 {
            return Err(StorageError::BadMeta {
                path: meta_path,
                reason: "unknown header".into(),
            });
        }
        Ok(ReplicaReader {
            data,
            meta,
            len: r.len,
            bpc,
            data_path,
        })
    }
}

/// Indexes `blk_<id>` + `blk_<id>_<gs>.meta` pairs below `dir`.
fn scan(dir: &Path, volume: usize, out: &mut HashMap<u64, Replica>) -> Result<(), StorageError> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut metas: HashMap<u64, u64> = HashMap::new();
        let mut datas: HashMap<u64, u64> = HashMap::new();
        for e in std::fs::read_dir(&d).map_err(io(&d))? {
            let e = e.map_err(io(&d))?;
            let p = e.path();
            let ft = e.file_type().map_err(io(&p))?;
            if ft.is_dir() {
                stack.push(p);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("blk_") else {
                continue;
            };
            if let Some(stem) = rest.strip_suffix(".meta") {
                if let Some((id, gs)) = stem.split_once('_')
                    && let (Ok(id), Ok(gs)) = (id.parse(), gs.parse())
                {
                    metas.insert(id, gs);
                }
            } else if let Ok(id) = rest.parse::<u64>() {
                datas.insert(id, e.metadata().map_err(io(&p))?.len());
            }
        }
        for (id, len) in datas {
            match metas.get(&id) {
                Some(gs) => {
                    out.insert(id, Replica { gs: *gs, len, volume });
                }
                None => {
                    tracing::warn!(block_id = id, dir = %d.display(), "replica without checksum file ignored")
                }
            }
        }
    }
    Ok(())
}

/// A replica being written, in `rbw/`.
pub struct ReplicaWriter {
    pub block_id: u64,
    pub gs: u64,
    volume: usize,
    data: File,
    meta: File,
    data_path: PathBuf,
    meta_path: PathBuf,
    written: u64,
    bpc: u32,
}

impl ReplicaWriter {
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn bytes_per_checksum(&self) -> u32 {
        self.bpc
    }

    /// Appends one packet's data and checksums (blocking I/O).
    pub fn write(&mut self, data: &[u8], sums: &[u8]) -> Result<(), StorageError> {
        self.data.write_all(data).map_err(io(&self.data_path))?;
        self.meta.write_all(sums).map_err(io(&self.meta_path))?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Takes over this half-written replica for pipeline recovery: cut back to
    /// `len` bytes (what every surviving node acknowledged) under a new
    /// generation stamp.
    pub fn recover_to(&mut self, gs: u64, len: u64) -> Result<(), StorageError> {
        use std::io::{Seek, SeekFrom};
        if len > self.written {
            return Err(StorageError::BadMeta {
                path: self.data_path.clone(),
                reason: format!("recovery length {len} is beyond the {} bytes held", self.written),
            });
        }
        let bpc = u64::from(self.bpc);
        let meta_len = META_HEADER_LEN + len.div_ceil(bpc) * CHECKSUM_SIZE as u64;
        self.data.set_len(len).map_err(io(&self.data_path))?;
        self.data
            .seek(SeekFrom::Start(len))
            .map_err(io(&self.data_path))?;
        self.meta.set_len(meta_len).map_err(io(&self.meta_path))?;
        self.meta
            .seek(SeekFrom::Start(meta_len))
            .map_err(io(&self.meta_path))?;
        let new_meta = self.meta_path.with_file_name(meta_name(self.block_id, gs));
        std::fs::rename(&self.meta_path, &new_meta).map_err(io(&new_meta))?;
        self.meta_path = new_meta;
        self.gs = gs;
        self.written = len;
        Ok(())
    }

    /// Cuts the replica back to `offset`, the start of its last partial
    /// chunk, so that chunk can be rewritten with more data.
    pub fn rewind_to(&mut self, offset: u64) -> Result<(), StorageError> {
        use std::io::{Seek, SeekFrom};
        let bpc = u64::from(self.bpc);
        if offset > self.written || !offset.is_multiple_of(bpc) {
            return Err(StorageError::BadMeta {
                path: self.data_path.clone(),
                reason: format!("cannot rewind to {offset}"),
            });
        }
        let meta_len = META_HEADER_LEN + offset / bpc * CHECKSUM_SIZE as u64;
        self.data.set_len(offset).map_err(io(&self.data_path))?;
        self.data
            .seek(SeekFrom::Start(offset))
            .map_err(io(&self.data_path))?;
        self.meta.set_len(meta_len).map_err(io(&self.meta_path))?;
        self.meta
            .seek(SeekFrom::Start(meta_len))
            .map_err(io(&self.meta_path))?;
        self.written = offset;
        Ok(())
    }

    /// hsync: data and checksums on disk before the ack.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.data.sync_data().map_err(io(&self.data_path))?;
        self.meta.sync_data().map_err(io(&self.meta_path))
    }

    /// Drops the half-written replica.
    pub fn abort(self) {
        let _ = std::fs::remove_file(&self.data_path);
        let _ = std::fs::remove_file(&self.meta_path);
    }
}

/// A finalized replica open for reading.
pub struct ReplicaReader {
    data: File,
    meta: File,
    pub len: u64,
    pub bpc: u32,
    data_path: PathBuf,
}

impl ReplicaReader {
    /// Up to `max` bytes from chunk-aligned `offset`, with their checksums (blocking I/O).
    pub fn read(&self, offset: u64, max: usize) -> Result<(Vec<u8>, Vec<u8>), StorageError> {
        let n = (self.len.saturating_sub(offset) as usize).min(max);
        let mut data = vec![0u8; n];
        self.data
            .read_exact_at(&mut data, offset)
            .map_err(io(&self.data_path))?;
        let bpc = u64::from(self.bpc);
        let first = offset / bpc;
        let count = granary_common::checksum::chunks(n, self.bpc as usize);
        let mut sums = vec![0u8; count * CHECKSUM_SIZE];
        self.meta
            .read_exact_at(&mut sums, META_HEADER_LEN + first * CHECKSUM_SIZE as u64)
            .map_err(io(&self.data_path))?;
        Ok((data, sums))
    }
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
        let vols: Vec<_> = dirs
            .iter()
            .enumerate()
            .map(|(i, d)| (d.clone(), format!("DS-{i}")))
            .collect();
        Storage::open(&vols, 0, false).unwrap()
    }

    fn write(s: &Storage, id: u64, gs: u64, data: &[u8]) -> Result<pb::ExtendedBlock, StorageError> {
        let mut w = s.create_rbw(&blk(id, gs), 512, 0)?;
        w.write(data, &granary_common::checksum::compute(data, 512))?;
        s.finalize(w, false)
    }

    #[test]
    fn replicas_survive_a_restart_and_half_written_ones_do_not() {
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
        drop(s);
        let s = open(&dirs);
        assert_eq!(s.get(1).map(|r| (r.gs, r.len)), Some((10, 1500)));
        assert!(s.get(3).is_none(), "a replica never finalized must not come back");
        let r = s.open_read(1, 10).unwrap();
        let (d, sums) = r.read(512, 4096).unwrap();
        assert_eq!(d.len(), 988);
        granary_common::checksum::verify(&d, &sums, 512, 512).unwrap();
        assert!(s.delete(&blk(2, 10)).unwrap());
        assert!(s.get(2).is_none());
        assert!(matches!(s.open_read(2, 10), Err(StorageError::NotFound { .. })));
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
