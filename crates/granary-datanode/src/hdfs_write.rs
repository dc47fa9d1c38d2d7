//! HDFS's WRITE_BLOCK (DataTransferProtocol op 80) for a new block, or for
//! the rebuilt pipeline of a block being written (streaming or close
//! recovery, after a datanode failed): an HDFS client's packets go into Granary's
//! own write pipeline (the same code
//! Granary's writers use: tokens, checksums, replicas, acks, the copies to
//! the datanodes after this one), and its acks come back as HDFS's
//! `PipelineAckProto`. Between datanodes the pipeline speaks Granary's
//! protocol; only the first hop is HDFS's.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::context::DatanodeContext;
use crate::hdfs_transfer::{TransferError, failure, respond, status_of};
use granary_common::checksum;
use granary_common::data_transfer::{FrameCodec, RequestReader, write_frame};
use granary_proto as pb;
use granary_proto::hadoop::hdfs;
use granary_proto::write_block_reply::Msg as Reply;
use granary_proto::write_block_request::Msg as Request;

/// An HDFS client's keepalive packet while it has nothing to send: acked
/// with the same seqno, not written.
const HEARTBEAT_SEQNO: i64 = -1;
/// The largest packet data taken: what Granary's pipeline carries in one
/// frame (HDFS clients send 64 KiB by default).
const MAX_PACKET_DATA: usize = granary_common::data_transfer::MAX_DATA;
/// The largest packet header (a handful of fixed-width fields).
const MAX_PACKET_HEADER: usize = 256;
/// Room reserved for a packet before its bytes arrive.
const FIRST_READ: usize = 128 << 10;
/// Packets sent down the pipeline and not yet acked, at most: Granary's
/// pipeline holds 256 per connection (HDFS clients keep 80 in flight).
const MAX_IN_FLIGHT: usize = 1024;

/// Serves one WRITE_BLOCK whose operation message is `op`.
pub async fn write_block<R, W>(
    ctx: &Arc<DatanodeContext>,
    op: &[u8],
    rd: &mut R,
    wr: &mut W,
    peer: &str,
    stop: &CancellationToken,
) -> Result<(), TransferError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let req = hdfs::OpWriteBlockProto::decode(op)
        .map_err(|e| TransferError::Protocol(format!("OpWriteBlockProto: {e}")))?;
    use hdfs::op_write_block_proto::BlockConstructionStage as Stage;
    // A new block, or the pipeline of one being written rebuilt by the
    // client after a node failed (the survivors continue their replicas
    // from what was acked, under the new generation stamp).
    let (stage, gs, from) = match Stage::try_from(req.stage) {
        Ok(Stage::PipelineSetupCreate) => (
            pb::PipelineStage::Create,
            req.header.base_header.block.generation_stamp,
            0,
        ),
        // After a node failed while the block was closing, the survivors'
        // replicas (finalized or not) continue the same way; the client
        // sends its last packet again.
        Ok(Stage::PipelineSetupStreamingRecovery | Stage::PipelineCloseRecovery) => (
            pb::PipelineStage::Recovery,
            req.latest_generation_stamp,
            req.min_bytes_rcvd,
        ),
        other => {
            let stage = other.map_or("unknown", |s| s.as_str_name());
            let msg = format!(
                "write stage {stage} is not served yet: Granary takes new blocks and streaming recovery from HDFS clients"
            );
            respond(wr, failure(hdfs::Status::ErrorUnsupported, msg.clone())).await?;
            return Err(TransferError::Protocol(msg));
        }
    };
    let ck = &req.requested_checksum;
    if ck.r#type != hdfs::ChecksumTypeProto::ChecksumCrc32c as i32 || ck.bytes_per_checksum == 0 {
        let msg = format!(
            "checksum type {} is not served: Granary keeps CRC32C (dfs.checksum.type = CRC32C)",
            ck.r#type
        );
        respond(wr, failure(hdfs::Status::ErrorUnsupported, msg.clone())).await?;
        return Err(TransferError::Protocol(msg));
    }
    let bpc = ck.bytes_per_checksum;
    let base = req.header.base_header;
    let header = pb::WriteBlockHeader {
        block: Some(pb::ExtendedBlock {
            generation_stamp: gs,
            num_bytes: from,
            ..pb::ExtendedBlock::from(&base.block)
        }),
        downstream: req.targets.iter().map(downstream).collect(),
        client_name: req.header.client_name,
        stage: stage as i32,
        bytes_per_checksum: bpc,
        access_token: base.token.map(|t| t.identifier).unwrap_or_default(),
    };
    let nodes = 1 + header.downstream.len();

    // Granary's pipeline on this datanode, fed through in-memory pipes.
    let (mut to_pipeline, requests) = tokio::io::duplex(1 << 20);
    let (replies_w, replies_r) = tokio::io::duplex(64 << 10);
    let requests = RequestReader::new(Box::new(requests), peer.to_string());
    tokio::spawn(crate::data_transfer::serve_write(
        ctx.clone(),
        requests,
        Box::new(replies_w),
        None,
        stop.clone(),
    ));
    let mut replies = FramedRead::new(replies_r, FrameCodec::default());
    let header = pb::WriteBlockRequest {
        msg: Some(Request::Header(header)),
    };
    write_frame(&mut to_pipeline, &header, Bytes::new()).await?;
    match next_reply(&mut replies).await {
        Some(Reply::Ready(_)) => {
            let ready = hdfs::BlockOpResponseProto {
                status: hdfs::Status::Success as i32,
                first_bad_link: Some(String::new()),
                ..Default::default()
            };
            respond(wr, ready).await?;
        }
        Some(Reply::Error(e)) => {
            let status = granary_common::ErrorCode::from_name(&e.code).map_or(hdfs::Status::Error, status_of);
            // The node the pipeline could not reach, so the client leaves
            // that one out (not this one) when it asks for another.
            let mut refused = failure(status, e.message.clone());
            refused.first_bad_link = Some(first_bad_link(&e.message).unwrap_or_default().to_string());
            respond(wr, refused).await?;
            return Err(TransferError::Protocol(e.message));
        }
        _ => {
            let msg = "the write pipeline ended before it was ready".to_string();
            respond(wr, failure(hdfs::Status::Error, msg.clone())).await?;
            return Err(TransferError::Protocol(msg));
        }
    }

    let timeout = ctx.socket_timeout;
    let (beats, mut beat_rx) = mpsc::channel::<()>(8);
    // HDFS's seqnos rise but may skip (a client discards a packet an
    // hflush made needless, and numbers run on after a recovery); Granary's
    // pipeline counts each connection's packets 0, 1, 2, ... The client's
    // seqnos, in the order sent, name the acks that come back in order.
    let sent = Arc::new(parking_lot::Mutex::new(VecDeque::<i64>::new()));
    let sent_in = sent.clone();
    let mut next_seqno = 0u64;
    let mut last_hdfs = i64::MIN;
    // The client's packets into the pipeline; it owns the pipe, so the
    // pipeline sees the end when the client's stream ends.
    let inbound = async move {
        loop {
            let (h, sums, data) = read_packet(rd, bpc, timeout).await?;
            if h.seqno == HEARTBEAT_SEQNO {
                // Never waits: an answer to an earlier one pending is enough.
                let _ = beats.try_send(());
                // The nodes after this one wait for packets too.
                let beat = pb::WriteBlockRequest {
                    msg: Some(Request::Packet(pb::Packet {
                        heartbeat: true,
                        ..Default::default()
                    })),
                };
                write_frame(&mut to_pipeline, &beat, Bytes::new()).await?;
                continue;
            }
            if h.seqno < 0 {
                return Err(TransferError::Protocol(format!(
                    "packet seqno {} is negative",
                    h.seqno
                )));
            }
            if h.seqno <= last_hdfs {
                return Err(TransferError::Protocol(format!(
                    "packet seqno {} after {last_hdfs}",
                    h.seqno
                )));
            }
            last_hdfs = h.seqno;
            {
                let mut q = sent_in.lock();
                if q.len() >= MAX_IN_FLIGHT {
                    return Err(TransferError::Protocol(format!(
                        "over {MAX_IN_FLIGHT} packets in flight"
                    )));
                }
                q.push_back(h.seqno);
            }
            let seqno = next_seqno;
            next_seqno += 1;
            let offset = u64::try_from(h.offset_in_block).map_err(|_| {
                TransferError::Protocol(format!("packet offset {} is negative", h.offset_in_block))
            })?;
            let last = h.last_packet_in_block;
            let p = pb::Packet {
                seqno,
                offset_in_block: offset,
                data: Bytes::new(),
                checksums: sums.to_vec(),
                last_packet_in_block: last,
                sync: h.sync_block.unwrap_or(false),
                heartbeat: false,
            };
            let frame = pb::WriteBlockRequest {
                msg: Some(Request::Packet(p)),
            };
            write_frame(&mut to_pipeline, &frame, data).await?;
            if last {
                return Ok::<_, TransferError>(());
            }
        }
    };
    // The pipeline's acks (and heartbeats' answers) back to the client.
    let outbound = async {
        loop {
            let ack = tokio::select! {
                r = next_reply(&mut replies) => match r {
                    Some(Reply::Ack(a)) => {
                        let Some(hdfs_seqno) = sent.lock().pop_front() else {
                            return Err(TransferError::Protocol(format!("an ack for packet {} never sent", a.seqno)));
                        };
                        hdfs_ack(&a, hdfs_seqno)
                    }
                    Some(Reply::Error(e)) => {
                        // This node's own part failed: say so in an ack
                        // (HDFS clients drop the node an ack blames; a
                        // closed connection alone blames the first node).
                        let oldest = sent.lock().front().copied();
                        if let Some(hdfs_seqno) = oldest {
                            let blame = ack_of(hdfs_seqno, &[hdfs::Status::Error]);
                            let _ = send_ack(wr, &blame, timeout).await;
                        }
                        return Err(TransferError::Protocol(e.message));
                    }
                    // The pipeline is done: the last packet was acked.
                    Some(Reply::Ready(_)) | None => return Ok(()),
                },
                Some(()) = beat_rx.recv() => ack_of(HEARTBEAT_SEQNO, &vec![hdfs::Status::Success; nodes]),
            };
            send_ack(wr, &ack, timeout).await?;
        }
    };
    // Either side failing ends the write (the client learns from the
    // closed connection); the acks end it when the last packet is in. When
    // the packets stop going in because the pipeline broke (a node after
    // this one died), the pipeline's ack naming that node is relayed
    // before the connection closes, so the client drops that node from
    // its pipeline and not this one.
    tokio::pin!(inbound, outbound);
    let mut sent = false;
    loop {
        tokio::select! {
            r = &mut inbound, if !sent => {
                if let Err(e) = r {
                    // The inbound side is over, so the pipeline sees the end
                    // of its packets and ends too: the wait is short.
                    let _ = tokio::time::timeout(timeout, &mut outbound).await;
                    return Err(e);
                }
                sent = true;
            }
            r = &mut outbound => {
                r?;
                return if sent {
                    Ok(())
                } else {
                    Err(TransferError::Protocol("the pipeline ended before the last packet".into()))
                };
            }
        }
    }
}

/// What Granary's pipeline says it could not reach, innermost first: the
/// address in the last "cannot reach downstream datanode ADDR: ...".
fn first_bad_link(message: &str) -> Option<&str> {
    const UNREACHABLE: &str = "cannot reach downstream datanode ";
    let at = message.rfind(UNREACHABLE)? + UNREACHABLE.len();
    let rest = &message[at..];
    Some(rest.split(": ").next().unwrap_or(rest)).filter(|a| !a.is_empty())
}

/// A target of the HDFS pipeline as Granary's pipeline names the next node.
pub(crate) fn downstream(t: &hdfs::DatanodeInfoProto) -> pb::DatanodeId {
    pb::DatanodeId {
        uuid: t.id.datanode_uuid.clone(),
        hostname: t.id.host_name.clone(),
        rpc_addr: format!("{}:{}", t.id.ip_addr, t.id.xfer_port),
        http_addr: format!("{}:{}", t.id.ip_addr, t.id.info_port),
        rack: t.location.clone().unwrap_or_default(),
    }
}

/// HDFS's ack for a Granary one: one status per node that answered.
fn hdfs_ack(a: &pb::PipelineAck, seqno: i64) -> hdfs::PipelineAckProto {
    let status = |s: &i32| match pb::AckStatus::try_from(*s) {
        Ok(pb::AckStatus::Success) => hdfs::Status::Success,
        Ok(pb::AckStatus::ErrorChecksum) => hdfs::Status::ErrorChecksum,
        _ => hdfs::Status::Error,
    };
    // As many statuses as nodes answered: after a failed node there are
    // none (HDFS clients blame the last node with an error status).
    let reply: Vec<hdfs::Status> = a.replies.iter().map(status).collect();
    ack_of(seqno, &reply)
}

/// An HDFS ack of packet `seqno` with one status per node, in `reply` and
/// in `flag` (newer clients read the flags; a status is its low bits).
fn ack_of(seqno: i64, statuses: &[hdfs::Status]) -> hdfs::PipelineAckProto {
    hdfs::PipelineAckProto {
        seqno,
        reply: statuses.iter().map(|s| *s as i32).collect(),
        flag: statuses.iter().map(|s| *s as u32).collect(),
        ..Default::default()
    }
}

/// Writes an ack to the HDFS writer, within the socket timeout.
async fn send_ack<W: AsyncWrite + Unpin>(
    wr: &mut W,
    ack: &hdfs::PipelineAckProto,
    within: Duration,
) -> Result<(), TransferError> {
    let bytes = ack.encode_length_delimited_to_vec();
    tokio::time::timeout(within, async {
        wr.write_all(&bytes).await?;
        wr.flush().await
    })
    .await
    .map_err(|_| TransferError::Protocol("the writer took no ack for the socket timeout".into()))??;
    Ok(())
}

async fn next_reply(replies: &mut FramedRead<tokio::io::DuplexStream, FrameCodec>) -> Option<Reply> {
    let frame = replies.next().await?.ok()?;
    pb::WriteBlockReply::decode(frame.message).ok()?.msg
}

/// One packet from an HDFS writer: its header, checksums and data, each
/// checked against the lengths the others give.
async fn read_packet<R: AsyncRead + Unpin>(
    rd: &mut R,
    bpc: u32,
    within: Duration,
) -> Result<(hdfs::PacketHeaderProto, Bytes, Bytes), TransferError> {
    let read = async {
        let plen = rd.read_u32().await? as usize;
        let hlen = rd.read_u16().await? as usize;
        if hlen > MAX_PACKET_HEADER {
            return Err(TransferError::Protocol(format!(
                "a packet header of {hlen} bytes"
            )));
        }
        let mut hb = vec![0u8; hlen];
        rd.read_exact(&mut hb).await?;
        let h = hdfs::PacketHeaderProto::decode(hb.as_slice())
            .map_err(|e| TransferError::Protocol(format!("PacketHeaderProto: {e}")))?;
        let data_len = usize::try_from(h.data_len)
            .ok()
            .filter(|n| *n <= MAX_PACKET_DATA)
            .ok_or_else(|| TransferError::Protocol(format!("packet data of {} bytes", h.data_len)))?;
        let sums_len = checksum::chunks(data_len, bpc as usize) * checksum::CHECKSUM_SIZE;
        if sums_len > granary_common::data_transfer::MAX_MESSAGE / 2 {
            return Err(TransferError::Protocol(format!(
                "a packet of {data_len} bytes in {bpc}-byte chunks has too many checksums"
            )));
        }
        if plen != 4 + sums_len + data_len {
            return Err(TransferError::Protocol(format!(
                "packet length {plen} does not match {data_len} data bytes and {sums_len} checksum bytes"
            )));
        }
        // The buffer grows as bytes arrive: a header that lies about its
        // length costs nothing until the bytes come.
        let want = sums_len + data_len;
        let mut body = Vec::with_capacity(want.min(FIRST_READ));
        let got = (&mut *rd).take(want as u64).read_to_end(&mut body).await?;
        if got < want {
            return Err(TransferError::Protocol(format!(
                "a packet of {want} bytes broke off after {got}"
            )));
        }
        let body = Bytes::from(body);
        Ok((h, body.slice(..sums_len), body.slice(sums_len..)))
    };
    tokio::time::timeout(within, read)
        .await
        .map_err(|_| TransferError::Protocol("no packet from the writer for the socket timeout".into()))?
}

#[cfg(test)]
mod tests {
    use super::first_bad_link;

    #[test]
    fn the_first_bad_link_is_the_innermost_unreachable_node() {
        let m = "cannot reach downstream datanode 127.0.0.1:30729: cannot reach downstream datanode \
                 127.0.0.1:26405: connection to datanode 127.0.0.1:26405: Connection refused";
        assert_eq!(first_bad_link(m), Some("127.0.0.1:26405"));
        assert_eq!(first_bad_link("block 7: token expired"), None);
    }
}
