//! Copying a local replica to other datanodes (re-replication), through the
//! same write pipeline clients use.

use std::sync::Arc;

use crate::context::DatanodeContext;
use crate::error::{DatanodeError, Result, blocking};
use granary_common::data_transfer;
use granary_proto as pb;

const PACKET: usize = 64 * 1024;

pub async fn send_replica(ctx: Arc<DatanodeContext>, cmd: pb::ReplicateCommand) -> Result<()> {
    let block = cmd
        .block
        .ok_or_else(|| DatanodeError::BadRequest("replicate command names no block".into()))?;
    let first = cmd
        .targets
        .first()
        .ok_or_else(|| DatanodeError::BadRequest("replicate command names no targets".into()))?
        .clone();
    let storage = ctx.storage.clone();
    let (id, gs) = (block.block_id, block.generation_stamp);
    let reader = Arc::new(blocking(move || storage.open_read(id, gs)).await??);
    let _x = ctx.xceiver();
    let header = pb::WriteBlockHeader {
        block: Some(pb::ExtendedBlock {
            num_bytes: reader.len,
            ..block
        }),
        downstream: cmd.targets[1..].to_vec(),
        client_name: format!("datanode-{}", ctx.id.uuid),
        stage: pb::PipelineStage::Transfer as i32,
        bytes_per_checksum: reader.bpc,
        access_token: cmd.access_token,
    };
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
        let p = pb::Packet {
            seqno,
            offset_in_block: pos,
            data: data.into(),
            checksums,
            last_packet_in_block: last,
            sync: false,
        };
        if tx.send(p).await.is_err() {
            return Err(DatanodeError::Unavailable(format!(
                "transfer of block {id}: the pipeline to {} closed",
                first.rpc_addr
            )));
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
    tracing::info!(block_id = id, targets = cmd.targets.len(), "replica transferred");
    Ok(())
}
