//! The block scanner: re-reads every finalized replica once per period at a
//! bounded rate and verifies its checksums, so rot on idle data is found
//! before a reader needs it. Corrupt replicas are no longer served and are
//! reported to the namenode (which re-replicates from a good copy and has
//! this one deleted once enough good ones exist); replicas whose files
//! vanished are dropped and reported as deleted.

use crate::config::BlockScannerConfig;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::context::{DatanodeContext, ReplicaEvent};
use crate::storage::StorageError;
use granary_proto as pb;

const CHUNK: usize = 1 << 20;

/// What scanning one replica found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Good,
    Corrupt(String),
    Missing,
    /// Replaced or deleted while scanning: nothing to say.
    Gone,
    /// An I/O error other than missing or short data (too many open files,
    /// a failing disk): not proof of corruption, so nothing is marked.
    Unreadable(String),
}

/// What a read error says about a replica: short data is corruption, a
/// missing file is a missing replica, anything else proves nothing.
fn read_error(e: StorageError) -> Verdict {
    match e {
        StorageError::Damaged { reason, .. } => Verdict::Corrupt(reason),
        StorageError::BadMeta { .. } => Verdict::Corrupt(e.to_string()),
        StorageError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            Verdict::Corrupt(format!("replica is shorter than recorded: {e}"))
        }
        StorageError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Verdict::Missing
        }
        StorageError::NotFound { .. } => Verdict::Gone,
        e => Verdict::Unreadable(e.to_string()),
    }
}

/// Verifies one replica (blocking I/O), sleeping to keep to `bytes_per_sec`.
pub fn scan_replica(ctx: &DatanodeContext, id: u64, bytes_per_sec: u64) -> Verdict {
    let Some(rep) = ctx.storage.get(id) else {
        return Verdict::Gone;
    };
    let reader = match ctx.storage.open_read(id, rep.gs) {
        Ok(r) => r,
        Err(e) => return read_error(e),
    };
    let bpc = reader.bpc as usize;
    let step = (CHUNK / bpc).max(1) * bpc;
    let mut pos = 0u64;
    let started = Instant::now();
    while pos < reader.len {
        let n = ((reader.len - pos) as usize).min(step);
        match reader.read(pos, n) {
            Ok((data, sums)) => {
                if let Err(e) = granary_common::checksum::verify(&data, &sums, bpc, pos) {
                    return Verdict::Corrupt(e.to_string());
                }
            }
            Err(e) => return read_error(e),
        }
        pos += n as u64;
        // Rate limit: never ahead of bytes_per_sec.
        let due = Duration::from_secs_f64(pos as f64 / bytes_per_sec.max(1) as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    // A file shorter than recorded is as bad as a flipped bit.
    match ctx
        .storage
        .replica_paths(id)
        .map(|(d, _)| std::fs::metadata(d).map(|m| m.len()))
    {
        Some(Ok(len)) if len != reader.len => {
            Verdict::Corrupt(format!("replica is {len} bytes, {} expected", reader.len))
        }
        Some(Err(_)) => Verdict::Missing,
        _ => Verdict::Good,
    }
}

/// Runs the scanner with its `[block_scanner]` section until `token` is cancelled.
pub async fn run(ctx: Arc<DatanodeContext>, cfg: BlockScannerConfig, token: CancellationToken) {
    let (period, bytes_per_sec) = (cfg.period(), cfg.bytes_per_sec);
    loop {
        let pass_start = tokio::time::Instant::now();
        let mut ids: Vec<u64> = ctx.storage.finalized().iter().map(|b| b.block_id).collect();
        ids.sort_unstable();
        let (mut good, mut bad) = (0usize, 0usize);
        for id in ids {
            if token.is_cancelled() {
                return;
            }
            let c = ctx.clone();
            let verdict = match tokio::task::spawn_blocking(move || scan_replica(&c, id, bytes_per_sec)).await
            {
                Ok(v) => v,
                Err(_) => continue,
            };
            let Some(rep) = ctx.storage.get(id) else { continue };
            let block = pb::ExtendedBlock {
                block_id: id,
                generation_stamp: rep.gs,
                num_bytes: rep.len,
            };
            match verdict {
                Verdict::Good => good += 1,
                Verdict::Gone => {}
                Verdict::Unreadable(why) => {
                    tracing::error!(block_id = id, error = %why, "block scanner cannot read a replica");
                }
                Verdict::Missing => {
                    bad += 1;
                    tracing::warn!(block_id = id, "replica files are missing; reporting it deleted");
                    if ctx.storage.forget(id) {
                        ctx.report(ReplicaEvent::Deleted(block));
                    }
                }
                Verdict::Corrupt(why) => {
                    bad += 1;
                    // Reported once: a damaged replica is not scanned again.
                    if ctx.storage.damage(id).is_none() {
                        tracing::warn!(block_id = id, error = %why, "block scanner found a corrupt replica");
                        ctx.storage.mark_damaged(id, why.clone());
                        ctx.report(ReplicaEvent::Corrupt(block, why));
                    }
                }
            }
        }
        tracing::debug!(good, bad, "block scan pass finished");
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep_until(pass_start + period) => {}
        }
    }
}
