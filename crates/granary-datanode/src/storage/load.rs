//! What a datanode start finds on its disks: finalized replicas (checked
//! that their data and checksum files agree) and replicas a writer left in
//! `rbw/` (kept, cut to the bytes their checksums cover: HDFS's RWR state).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{CHECKSUM_TYPE_CRC32C, META_HEADER_LEN, META_VERSION, Replica, StorageError, io};
use granary_common::checksum::CHECKSUM_SIZE;

/// The files of one replica found in a directory.
struct Found {
    data_len: u64,
    /// Generation stamp -> meta file length; normally one entry.
    metas: Vec<(u64, u64)>,
    /// Generation stamps marked damaged (`blk_<id>_<gs>.damaged`).
    damaged: Vec<u64>,
}

/// `blk_<id>` and `blk_<id>_<gs>.meta` files directly in `d`; subdirectories go to `dirs`.
fn list(d: &Path, dirs: &mut Vec<PathBuf>) -> Result<HashMap<u64, Found>, StorageError> {
    let mut found: HashMap<u64, Found> = HashMap::new();
    for e in std::fs::read_dir(d).map_err(io(d))? {
        let e = e.map_err(io(d))?;
        let p = e.path();
        let ft = e.file_type().map_err(io(&p))?;
        if ft.is_dir() {
            dirs.push(p);
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(super::disk_balance::MOVING) {
            // A disk balancer copy a stop or crash cut short.
            if let Err(e) = std::fs::remove_file(&p) {
                tracing::warn!(path = %p.display(), error = %e, "unfinished disk balancer copy not removed");
            }
            continue;
        }
        let Some(rest) = name.strip_prefix("blk_") else {
            continue;
        };
        let len = e.metadata().map_err(io(&p))?.len();
        let new = || Found {
            data_len: u64::MAX,
            metas: Vec::new(),
            damaged: Vec::new(),
        };
        if let Some(stem) = rest.strip_suffix(".damaged") {
            if let Some((id, gs)) = stem.split_once('_')
                && let (Ok(id), Ok(gs)) = (id.parse::<u64>(), gs.parse::<u64>())
            {
                found.entry(id).or_insert_with(new).damaged.push(gs);
            }
        } else if let Some(stem) = rest.strip_suffix(".meta") {
            if let Some((id, gs)) = stem.split_once('_')
                && let (Ok(id), Ok(gs)) = (id.parse::<u64>(), gs.parse::<u64>())
            {
                found.entry(id).or_insert_with(new).metas.push((gs, len));
            }
        } else if let Ok(id) = rest.parse::<u64>() {
            found.entry(id).or_insert_with(new).data_len = len;
        }
    }
    Ok(found)
}

/// The bytes per checksum a meta file's header declares.
pub(super) fn read_header(meta: &Path) -> Result<u32, StorageError> {
    let mut h = [0u8; META_HEADER_LEN as usize];
    File::open(meta)
        .and_then(|m| m.read_exact_at(&mut h, 0))
        .map_err(io(meta))?;
    let bpc = u32::from_be_bytes([h[3], h[4], h[5], h[6]]);
    if u16::from_be_bytes([h[0], h[1]]) != META_VERSION || h[2] != CHECKSUM_TYPE_CRC32C || bpc == 0 {
        return Err(StorageError::BadMeta {
            path: meta.to_path_buf(),
            reason: "unknown header".into(),
        });
    }
    Ok(bpc)
}

/// Chunks a meta file of `meta_len` bytes holds checksums for.
fn chunks_in(meta_len: u64) -> u64 {
    meta_len.saturating_sub(META_HEADER_LEN) / CHECKSUM_SIZE as u64
}

/// Indexes finalized replicas below `dir`. A replica whose data and
/// checksum files disagree (truncated, or grown, by something other than
/// Granary) is indexed too, with the reason in `corrupt`: it is reported
/// as corrupt, never served, and never deleted here.
pub(super) fn scan_finalized(
    dir: &Path,
    volume: usize,
    out: &mut HashMap<u64, Replica>,
    corrupt: &mut HashMap<u64, String>,
) -> Result<(), StorageError> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for (id, f) in list(&d, &mut stack)? {
            if f.data_len == u64::MAX {
                continue;
            }
            let Some(&(gs, meta_len)) = f.metas.iter().max() else {
                tracing::warn!(block_id = id, dir = %d.display(), "replica without checksum file ignored");
                continue;
            };
            // Checksums for exactly the data's chunks, assuming the usual
            // 512-byte chunk; the header is read only when that does not fit.
            let whole_sums = meta_len >= META_HEADER_LEN
                && (meta_len - META_HEADER_LEN).is_multiple_of(CHECKSUM_SIZE as u64);
            let mut agrees = whole_sums && chunks_in(meta_len) == f.data_len.div_ceil(512);
            if !agrees && whole_sums {
                let meta = d.join(super::meta_name(id, gs));
                agrees = read_header(&meta)
                    .is_ok_and(|bpc| chunks_in(meta_len) == f.data_len.div_ceil(u64::from(bpc)));
            }
            if !agrees {
                let why = format!(
                    "replica file holds {} bytes but its checksum file covers {} chunks",
                    f.data_len,
                    chunks_in(meta_len)
                );
                tracing::error!(block_id = id, dir = %d.display(), error = %why, "finalized replica is damaged; reporting it corrupt");
                corrupt.insert(id, why);
            } else if f.damaged.contains(&gs) {
                let marker = d.join(super::damage_name(id, gs));
                let why = std::fs::read_to_string(&marker)
                    .unwrap_or_else(|_| "found corrupt before a restart".into());
                corrupt.insert(id, why);
            }
            // Two data dirs may hold a replica (a disk balancer move cut
            // short after its copy was in place): the newer generation wins.
            if let Some(prev) = out.get(&id)
                && prev.gs >= gs
            {
                tracing::warn!(block_id = id, dir = %d.display(), "replica also held in another data dir; keeping that one");
                continue;
            }
            out.insert(
                id,
                Replica {
                    gs,
                    len: f.data_len,
                    volume,
                },
            );
        }
    }
    Ok(())
}

/// Indexes the replicas a writer left in `rbw/`, each at the longest length
/// its stored checksums vouch for: the data's length bounded by the chunks
/// checksummed, and the last chunk cut back to the bytes its checksum
/// covers (a crash between a packet's data write and its checksum write
/// leaves data the checksum does not cover). Files are cut to that length.
pub(super) fn scan_rbw(
    dir: &Path,
    volume: usize,
    out: &mut HashMap<u64, Replica>,
) -> Result<(), StorageError> {
    let mut ignored = Vec::new();
    for (id, f) in list(dir, &mut ignored)? {
        let Some(&(gs, meta_len)) = f.metas.iter().max() else {
            tracing::warn!(block_id = id, dir = %dir.display(), "half-written replica without checksum file left alone");
            continue;
        };
        if f.data_len == u64::MAX {
            continue;
        }
        for (old, _) in f.metas.iter().filter(|(g, _)| *g != gs) {
            let _ = std::fs::remove_file(dir.join(super::meta_name(id, *old)));
        }
        let data = dir.join(super::data_name(id));
        let meta = dir.join(super::meta_name(id, gs));
        match recover_length(&data, &meta, f.data_len, meta_len) {
            Ok(len) => {
                tracing::info!(
                    block_id = id,
                    gs,
                    bytes = len,
                    "kept a half-written replica for recovery"
                );
                out.insert(id, Replica { gs, len, volume });
            }
            Err(e) => {
                tracing::error!(block_id = id, error = %e, "half-written replica unreadable; left on disk, not indexed")
            }
        }
    }
    Ok(())
}

/// The length a half-written replica's checksums vouch for; cuts both files to it.
fn recover_length(data: &Path, meta: &Path, data_len: u64, meta_len: u64) -> Result<u64, StorageError> {
    let bpc = u64::from(read_header(meta)?);
    let chunks = chunks_in(meta_len);
    let mut len = data_len.min(chunks * bpc);
    if len > 0 {
        let last = (len - 1) / bpc;
        let start = last * bpc;
        let d = File::open(data).map_err(io(data))?;
        let m = File::open(meta).map_err(io(meta))?;
        let mut chunk = vec![0u8; (len - start) as usize];
        d.read_exact_at(&mut chunk, start).map_err(io(data))?;
        let mut sum = [0u8; CHECKSUM_SIZE];
        m.read_exact_at(&mut sum, META_HEADER_LEN + last * CHECKSUM_SIZE as u64)
            .map_err(io(meta))?;
        let want = u32::from_be_bytes(sum);
        // The longest prefix of the chunk its checksum covers (an hflush
        // may have stored the sum of a shorter chunk than the data now holds).
        let mut crc = 0u32;
        let mut covered = None;
        for (i, b) in chunk.iter().enumerate() {
            crc = crc32c::crc32c_append(crc, std::slice::from_ref(b));
            if crc == want {
                covered = Some(i + 1);
            }
        }
        len = start + covered.unwrap_or(0) as u64;
    }
    let full = len.div_ceil(bpc);
    let w = std::fs::OpenOptions::new()
        .write(true)
        .open(data)
        .map_err(io(data))?;
    w.set_len(len).map_err(io(data))?;
    let wm = std::fs::OpenOptions::new()
        .write(true)
        .open(meta)
        .map_err(io(meta))?;
    wm.set_len(META_HEADER_LEN + full * CHECKSUM_SIZE as u64)
        .map_err(io(meta))?;
    Ok(len)
}
