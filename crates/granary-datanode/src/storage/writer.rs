//! A replica being written ([`ReplicaWriter`], in `rbw/`) and a finalized
//! replica open for reading ([`ReplicaReader`]).

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::{META_HEADER_LEN, StorageError, io, meta_name};
use granary_common::checksum::CHECKSUM_SIZE;

/// A replica being written, in `rbw/`.
pub struct ReplicaWriter {
    pub block_id: u64,
    pub gs: u64,
    pub(super) volume: usize,
    pub(super) data: File,
    pub(super) meta: File,
    pub(super) data_path: PathBuf,
    pub(super) meta_path: PathBuf,
    pub(super) written: u64,
    pub(super) bpc: u32,
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
        self.truncate_to(len)?;
        self.restamp(gs)
    }

    /// Cuts the replica to `len` bytes, recomputing the checksum of a last
    /// chunk that ends up partial from the bytes on disk.
    pub fn truncate_to(&mut self, len: u64) -> Result<(), StorageError> {
        if len > self.written {
            return Err(StorageError::BadMeta {
                path: self.data_path.clone(),
                reason: format!("cannot cut to {len} bytes: only {} are held", self.written),
            });
        }
        let bpc = u64::from(self.bpc);
        let full_chunks = len / bpc;
        let tail = len % bpc;
        let mut meta_len = META_HEADER_LEN + full_chunks * CHECKSUM_SIZE as u64;
        self.data.set_len(len).map_err(io(&self.data_path))?;
        self.meta.set_len(meta_len).map_err(io(&self.meta_path))?;
        if tail > 0 {
            let mut chunk = vec![0u8; tail as usize];
            let start = full_chunks * bpc;
            self.data
                .read_exact_at(&mut chunk, start)
                .map_err(io(&self.data_path))?;
            let sum = crc32c::crc32c(&chunk).to_be_bytes();
            self.meta
                .write_all_at(&sum, meta_len)
                .map_err(io(&self.meta_path))?;
            meta_len += CHECKSUM_SIZE as u64;
        }
        self.data
            .seek(SeekFrom::Start(len))
            .map_err(io(&self.data_path))?;
        self.meta
            .seek(SeekFrom::Start(meta_len))
            .map_err(io(&self.meta_path))?;
        self.written = len;
        Ok(())
    }

    /// Gives the replica another generation stamp (its meta file's name).
    pub fn restamp(&mut self, gs: u64) -> Result<(), StorageError> {
        let new_meta = self.meta_path.with_file_name(meta_name(self.block_id, gs));
        std::fs::rename(&self.meta_path, &new_meta).map_err(io(&new_meta))?;
        self.meta_path = new_meta;
        self.gs = gs;
        Ok(())
    }

    /// Positions the replica at `offset`, the start of its last partial
    /// chunk, so that chunk is written again whole (with more data). The
    /// bytes are overwritten in place, not cut first: a crash in between
    /// leaves the old chunk's bytes, which its stored checksum still covers.
    pub fn rewind_to(&mut self, offset: u64) -> Result<(), StorageError> {
        let bpc = u64::from(self.bpc);
        if offset > self.written || !offset.is_multiple_of(bpc) {
            return Err(StorageError::BadMeta {
                path: self.data_path.clone(),
                reason: format!("cannot rewind to {offset}"),
            });
        }
        let meta_pos = META_HEADER_LEN + offset / bpc * CHECKSUM_SIZE as u64;
        self.data
            .seek(SeekFrom::Start(offset))
            .map_err(io(&self.data_path))?;
        self.meta
            .seek(SeekFrom::Start(meta_pos))
            .map_err(io(&self.meta_path))?;
        self.written = offset;
        Ok(())
    }

    /// hsync: data and checksums on disk before the ack.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.data.sync_data().map_err(io(&self.data_path))?;
        self.meta.sync_data().map_err(io(&self.meta_path))
    }

    /// Its bytes so far, opened apart for reading (a copy to a node a
    /// writer adds to its pipeline); the writer is left as it is.
    pub fn reader(&self) -> Result<ReplicaReader, StorageError> {
        Ok(ReplicaReader {
            data: File::open(&self.data_path).map_err(io(&self.data_path))?,
            meta: File::open(&self.meta_path).map_err(io(&self.meta_path))?,
            len: self.written,
            bpc: self.bpc,
            data_path: self.data_path.clone(),
        })
    }

    /// Drops the half-written replica.
    pub fn abort(self) {
        let _ = std::fs::remove_file(&self.data_path);
        let _ = std::fs::remove_file(&self.meta_path);
    }
}

/// A replica open for reading: finalized, or a copy's view of one being
/// written.
pub struct ReplicaReader {
    pub(super) data: File,
    pub(super) meta: File,
    pub len: u64,
    pub bpc: u32,
    pub(super) data_path: PathBuf,
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
