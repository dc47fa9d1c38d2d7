//! Copying a local replica to other datanodes, through the same write
//! pipeline clients use: a finalized one for re-replication, and one still
//! being written for a writer adding nodes to its pipeline.

use std::sync::Arc;
use std::time::Duration;

use crate::context::DatanodeContext;
use crate::error::{DatanodeError, Result, blocking};
use crate::storage::ReplicaReader;
use granary_common::data_transfer;
use granary_proto as pb;

const PACKET: usize = 64 * 1024;
/// How long a copy for a pipeline waits for the old stream on the block
/// to wind down and leave its replica (as a recovery waits).
const WIND_DOWN: Duration = Duration::from_secs(30);
/// The most nodes one copy goes to.
pub const MAX_TARGETS: usize = 16;

/// Shares a rate among copies: each takes its turn for its bytes, so all
/// of them together send at most the rate (the latest one asked for).
#[derive(Default)]
pub struct Pacer {
    next_free: parking_lot::Mutex<Option<tokio::time::Instant>>,
}

impl Pacer {
    /// Waits until `bytes` may go at `rate` bytes per second.
    pub async fn take(&self, bytes: u64, rate: u64) {
        if rate == 0 {
            return;
        }
        let now = tokio::time::Instant::now();
        let at = {
            let mut next = self.next_free.lock();
            // An idle pacer does not save up a burst.
            let at = next.filter(|t| *t > now).unwrap_or(now);
            *next = Some(at + Duration::from_secs_f64(bytes as f64 / rate as f64));
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

pub async fn send_replica(ctx: Arc<DatanodeContext>, cmd: pb::ReplicateCommand) -> Result<()> {
    let block = cmd
        .block
        .ok_or_else(|| DatanodeError::BadRequest("replicate command names no block".into()))?;
    let storage = ctx.storage.clone();
    let (id, gs) = (block.block_id, block.generation_stamp);
    let reader = blocking(move || storage.open_read(id, gs)).await??;
    let header = pb::WriteBlockHeader {
        block: Some(pb::ExtendedBlock {
            num_bytes: reader.len,
            ..block
        }),
        downstream: Vec::new(),
        client_name: format!("datanode-{}", ctx.id.uuid),
        stage: pb::PipelineStage::Transfer as i32,
        bytes_per_checksum: reader.bpc,
        access_token: cmd.access_token,
    };
    let _x = ctx.xceiver();
    stream(&ctx, reader, header, &cmd.targets, cmd.balancer_bandwidth).await?;
    tracing::info!(block_id = id, targets = cmd.targets.len(), "replica transferred");
    Ok(())
}

/// For a writer adding `targets` to the pipeline of a block it is writing
/// (HDFS's TRANSFER_BLOCK): this node's replica as far as it is written
/// (at least the `block.num_bytes` the writer had acknowledged), kept
/// unfinished on the targets for the writer's recovery of the pipeline.
/// Returns the bytes copied.
pub async fn copy_for_pipeline(
    ctx: &Arc<DatanodeContext>,
    block: pb::ExtendedBlock,
    access_token: Vec<u8>,
    client_name: String,
    targets: Vec<pb::DatanodeId>,
) -> Result<u64> {
    if targets.is_empty() || targets.len() > MAX_TARGETS {
        return Err(DatanodeError::BadRequest(format!(
            "a copy of block {} for a pipeline goes to 1 to {MAX_TARGETS} datanodes, not {}",
            block.block_id,
            targets.len()
        )));
    }
    // A writer's request takes a transfer slot only when one is free.
    let Some(_x) = ctx.try_xceiver() else {
        return Err(DatanodeError::Busy {
            max: ctx.max_transfers,
        });
    };
    let reader = open_being_written(ctx, block.block_id, block.generation_stamp).await?;
    if reader.len < block.num_bytes {
        return Err(DatanodeError::BadRequest(format!(
            "block {}: this datanode holds {} bytes, fewer than the {} the writer had acknowledged",
            block.block_id, reader.len, block.num_bytes
        )));
    }
    let len = reader.len;
    let header = pb::WriteBlockHeader {
        block: Some(pb::ExtendedBlock {
            num_bytes: len,
            ..block
        }),
        downstream: Vec::new(),
        client_name,
        stage: pb::PipelineStage::TransferRbw as i32,
        bytes_per_checksum: reader.bpc,
        access_token,
    };
    // A target that takes the bytes ever so slowly must not hold the slot
    // for ever: ten socket timeouts for the whole copy (a block of 128 MiB
    // at 1 MiB/s takes two).
    let limit = ctx.socket_timeout * 10;
    tokio::time::timeout(limit, stream(ctx, reader, header, &targets, 0))
        .await
        .map_err(|_| {
            DatanodeError::Unavailable(format!(
                "copy of block {} for a pipeline took over {} s",
                block.block_id,
                limit.as_secs()
            ))
        })??;
    tracing::info!(
        block_id = block.block_id,
        bytes = len,
        targets = targets.len(),
        "replica being written copied for a pipeline"
    );
    Ok(len)
}

/// The replica of block `id` (generation `gs` or newer) a writer's broken
/// pipeline left here, opened for reading: kept for recovery, parked on
/// disk, or finalized by the old stream. The old stream may still be
/// winding down: it is waited for.
async fn open_being_written(ctx: &Arc<DatanodeContext>, id: u64, gs: u64) -> Result<ReplicaReader> {
    let deadline = tokio::time::Instant::now() + WIND_DOWN;
    loop {
        let c = ctx.clone();
        let opened = blocking(move || {
            if let Some((w, _)) = c.recoverable.lock().get(&id).filter(|(w, _)| w.gs >= gs) {
                return w.reader().map(Some);
            }
            if c.storage.waiting(id).is_some_and(|r| r.gs >= gs) {
                return c.storage.open_waiting_read(id, gs).map(Some);
            }
            if c.storage.get(id).is_some_and(|r| r.gs >= gs) {
                return c.storage.open_read(id, gs).map(Some);
            }
            Ok(None)
        })
        .await??;
        if let Some(r) = opened {
            return Ok(r);
        }
        let streaming = ctx.active_writes.lock().contains_key(&id);
        if !streaming || tokio::time::Instant::now() >= deadline {
            return Err(DatanodeError::BadRequest(format!(
                "block {id}: no replica at generation stamp {gs} or newer to copy here{}",
                if streaming {
                    " (its write stream never ended)"
                } else {
                    ""
                }
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `reader`'s bytes down a pipeline through `targets` under
/// `header` (its downstream is filled in from the targets after the
/// first), checking every chunk before it leaves, and waits for the acks.
async fn stream(
    ctx: &Arc<DatanodeContext>,
    reader: ReplicaReader,
    mut header: pb::WriteBlockHeader,
    targets: &[pb::DatanodeId],
    pace: u64,
) -> Result<()> {
    let first = targets
        .first()
        .ok_or_else(|| DatanodeError::BadRequest("a replica copy names no targets".into()))?
        .clone();
    header.downstream = targets[1..].to_vec();
    let id = header.block.as_ref().map_or(0, |b| b.block_id);
    let reader = Arc::new(reader);
    let (tx, mut acks) =
        data_transfer::open_pipeline(ctx.net(), &first.rpc_addr, header, 16, ctx.socket_timeout).await?;
    let bpc = reader.bpc as usize;
    let packet = (PACKET / bpc).max(1) * bpc;
    let mut pos = 0u64;
    let mut seqno = 0u64;
    loop {
        let n = ((reader.len - pos) as usize).min(packet);
        let rd = reader.clone();
        let (data, checksums) = blocking(move || rd.read(pos, n)).await??;
        // Verify before sending: never spread a corrupt replica.
        granary_common::checksum::verify(&data, &checksums, bpc, pos)
            .map_err(|source| DatanodeError::Checksum { block_id: id, source })?;
        let last = pos + n as u64 == reader.len;
        ctx.balancer_pace.take(n as u64, pace).await;
        let p = pb::Packet {
            seqno,
            offset_in_block: pos,
            data: data.into(),
            checksums,
            last_packet_in_block: last,
            sync: false,
            heartbeat: false,
        };
        // A target that stops reading is given up after the socket timeout.
        match tokio::time::timeout(ctx.socket_timeout, tx.send(p)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                return Err(DatanodeError::Unavailable(format!(
                    "transfer of block {id}: the pipeline to {} closed",
                    first.rpc_addr
                )));
            }
            Err(_) => {
                return Err(DatanodeError::Unavailable(format!(
                    "transfer of block {id}: {} took nothing for {} ms",
                    first.rpc_addr,
                    ctx.socket_timeout.as_millis()
                )));
            }
        }
        pos += n as u64;
        seqno += 1;
        if last {
            break;
        }
    }
    for expect in 0..seqno {
        let ack = acks
            .message()
            .await?
            .ok_or_else(|| DatanodeError::Unavailable("ack stream ended early".into()))?;
        if ack.seqno != expect || ack.replies.iter().any(|r| *r != pb::AckStatus::Success as i32) {
            return Err(DatanodeError::Unavailable(format!(
                "transfer of block {id} failed: {}",
                ack.message
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Pacer;

    /// Copies sharing a pacer together keep to its rate; rate 0 is unpaced.
    #[tokio::test]
    async fn a_pacer_holds_all_its_copies_to_the_rate() {
        let p = std::sync::Arc::new(Pacer::default());
        let start = tokio::time::Instant::now();
        p.take(1_000_000, 0).await;
        assert!(start.elapsed() < std::time::Duration::from_millis(100));
        // Four takes of 100 KB at 1 MB/s, from two tasks: the last may
        // start only 300 ms after the first.
        let a = tokio::spawn({
            let p = p.clone();
            async move {
                p.take(100_000, 1_000_000).await;
                p.take(100_000, 1_000_000).await;
            }
        });
        p.take(100_000, 1_000_000).await;
        p.take(100_000, 1_000_000).await;
        a.await.expect("task");
        assert!(
            start.elapsed() >= std::time::Duration::from_millis(300),
            "{:?}",
            start.elapsed()
        );
    }
}
