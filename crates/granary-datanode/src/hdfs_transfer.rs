//! HDFS's DataTransferProtocol on the data port, for unmodified HDFS
//! clients (docs/hdfs-compat.md). A connection without TLS that starts with
//! the protocol's version (28, big-endian u16) is one (`listener`); it
//! carries one operation after another, as HDFS clients reuse sockets.
//! Served: READ_BLOCK, with the CRC32C checksums stored beside each
//! replica (512-byte chunks, big-endian, as HDFS's), WRITE_BLOCK of a new
//! block (crate::hdfs_write), BLOCK_CHECKSUM (MD5 of the chunk CRCs) and
//! TRANSFER_BLOCK (a writer adding a datanode to its pipeline has this
//! one copy its replica there). Other operations are answered
//! ERROR_UNSUPPORTED.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};

use tokio_util::sync::CancellationToken;

use crate::context::DatanodeContext;
use crate::data_transfer::open_read;
use crate::error::{DatanodeError, blocking};
use granary_common::HasErrorCode;
use granary_proto::hadoop::hdfs;

/// The DataTransferProtocol version HDFS 2 and 3 speak: a connection's
/// first two bytes.
pub const VERSION: [u8; 2] = 28u16.to_be_bytes();
const WRITE_BLOCK: u8 = 80;
const READ_BLOCK: u8 = 81;
const BLOCK_CHECKSUM: u8 = 85;
const TRANSFER_BLOCK: u8 = 86;
/// Data per packet (HDFS's `dfs.client-write-packet-size`, whole chunks).
const PACKET: u64 = 64 << 10;
/// Replica bytes read from disk ahead of the socket, per read.
const READ_AHEAD: u64 = 1 << 20;
/// The largest operation message taken (they name a block and a token).
const MAX_OP: usize = 64 << 10;
/// How long a connection may wait between operations (HDFS's
/// `dfs.datanode.socket.reuse.keepalive`).
const KEEPALIVE: Duration = Duration::from_secs(4);

/// Serves one connection's operations until it closes or breaks the protocol.
pub async fn serve<S>(ctx: Arc<DatanodeContext>, stream: S, peer: String, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (rd, wr) = tokio::io::split(stream);
    let (mut rd, mut wr) = (BufReader::new(rd), BufWriter::new(wr));
    let mut first = true;
    loop {
        let mut head = [0u8; 3];
        let wait = if first { ctx.socket_timeout } else { KEEPALIVE };
        match tokio::time::timeout(wait, rd.read_exact(&mut head)).await {
            Ok(Ok(_)) => {}
            // Closed, or idle between operations: done.
            _ => return,
        }
        first = false;
        if head[..2] != VERSION {
            tracing::debug!(%peer, version = u16::from_be_bytes([head[0], head[1]]), "hdfs data transfer of another version; closed");
            return;
        }
        let op = match read_delimited(&mut rd, ctx.socket_timeout).await {
            Ok(op) => op,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "hdfs data transfer request broken; closed");
                return;
            }
        };
        let served = match head[2] {
            READ_BLOCK => read_block(&ctx, &op, &mut rd, &mut wr).await,
            WRITE_BLOCK => crate::hdfs_write::write_block(&ctx, &op, &mut rd, &mut wr, &peer, &stop).await,
            BLOCK_CHECKSUM => block_checksum(&ctx, &op, &mut wr).await,
            TRANSFER_BLOCK => transfer_block(&ctx, &op, &mut wr, &stop).await,
            other => {
                let _ = respond(
                    &mut wr,
                    failure(
                        hdfs::Status::ErrorUnsupported,
                        format!("operation {other} is not served by Granary yet"),
                    ),
                )
                .await;
                return;
            }
        };
        if let Err(e) = served {
            tracing::debug!(%peer, error = %e, "hdfs data transfer ended");
            return;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(String),
    #[error(transparent)]
    Datanode(#[from] DatanodeError),
}

/// A varint-delimited message's bytes.
async fn read_delimited(
    rd: &mut (impl AsyncRead + Unpin),
    within: Duration,
) -> Result<Vec<u8>, TransferError> {
    let read = async {
        let mut len: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = rd.read_u8().await?;
            len |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > MAX_OP {
                    return Err(TransferError::Protocol(format!(
                        "an operation of {len} bytes is over the limit of {MAX_OP}"
                    )));
                }
                let mut buf = vec![0u8; len];
                rd.read_exact(&mut buf).await?;
                return Ok(buf);
            }
        }
        Err(TransferError::Protocol(
            "a length varint runs past 64 bits".into(),
        ))
    };
    tokio::time::timeout(within, read)
        .await
        .map_err(|_| TransferError::Protocol("the request stalled".into()))?
}

pub(crate) fn failure(status: hdfs::Status, message: String) -> hdfs::BlockOpResponseProto {
    hdfs::BlockOpResponseProto {
        status: status as i32,
        message: Some(message),
        ..Default::default()
    }
}

pub(crate) async fn respond(
    wr: &mut (impl AsyncWrite + Unpin),
    r: hdfs::BlockOpResponseProto,
) -> std::io::Result<()> {
    wr.write_all(&r.encode_length_delimited_to_vec()).await?;
    wr.flush().await
}

/// READ_BLOCK: the block's bytes from the chunk holding `offset`, in
/// packets with their checksums, an empty last packet, then the reader's
/// status.
async fn read_block(
    ctx: &Arc<DatanodeContext>,
    op: &[u8],
    rd: &mut (impl AsyncRead + Unpin),
    wr: &mut (impl AsyncWrite + Unpin),
) -> Result<(), TransferError> {
    let req = hdfs::OpReadBlockProto::decode(op)
        .map_err(|e| TransferError::Protocol(format!("OpReadBlockProto: {e}")))?;
    let base = req.header.base_header;
    let block = base.block.clone();
    let (reader, _xceiver) = match open(ctx, &base, Some(req.offset)).await {
        Ok(r) => r,
        Err(e) => {
            respond(wr, refusal(&e)).await?;
            return Err(e.into());
        }
    };
    let reader = Arc::new(reader);
    let bpc = u64::from(reader.bpc);
    let start = req.offset / bpc * bpc;
    let end = req.offset.saturating_add(req.len).min(reader.len);
    let limit = end.div_ceil(bpc).saturating_mul(bpc).min(reader.len);
    respond(
        wr,
        hdfs::BlockOpResponseProto {
            status: hdfs::Status::Success as i32,
            read_op_checksum_info: Some(hdfs::ReadOpChecksumInfoProto {
                checksum: hdfs::ChecksumProto {
                    r#type: hdfs::ChecksumTypeProto::ChecksumCrc32c as i32,
                    bytes_per_checksum: reader.bpc,
                },
                chunk_offset: start,
            }),
            ..Default::default()
        },
    )
    .await?;
    // The disk is read a MiB ahead of the socket, in its own task; each MiB
    // goes out as 64 KiB packets.
    let packet = ((PACKET / bpc).max(1) * bpc) as usize;
    let read_ahead = ((READ_AHEAD / bpc).max(1) * bpc) as usize;
    let (tx, mut chunks) = tokio::sync::mpsc::channel(2);
    let r = reader.clone();
    let prefetch = tokio::spawn(async move {
        let mut pos = start;
        while pos < limit {
            let n = (limit - pos).min(read_ahead as u64) as usize;
            let rd = r.clone();
            let chunk = blocking(move || rd.read(pos, n))
                .await
                .and_then(|c| c.map_err(DatanodeError::from));
            let stop = !matches!(&chunk, Ok((data, _)) if !data.is_empty());
            if let Ok((data, _)) = &chunk {
                pos += data.len() as u64;
            }
            if tx.send(chunk).await.is_err() || stop {
                return;
            }
        }
    });
    let _prefetch = tokio_util::task::AbortOnDropHandle::new(prefetch);
    let sum_size = granary_common::checksum::CHECKSUM_SIZE;
    let (mut pos, mut seqno) = (start, 0i64);
    while let Some(chunk) = chunks.recv().await {
        let (data, sums) = chunk?;
        if data.is_empty() {
            break;
        }
        for (i, part) in data.chunks(packet).enumerate() {
            let first = i * packet / bpc as usize * sum_size;
            let count = granary_common::checksum::chunks(part.len(), bpc as usize) * sum_size;
            let part_sums = &sums[first..first + count];
            write_packet(wr, pos, seqno, false, part_sums, part, ctx.socket_timeout).await?;
            pos += part.len() as u64;
            seqno += 1;
        }
        ctx.metrics.bytes_read.inc_by(data.len() as u64);
    }
    write_packet(wr, pos, seqno, true, &[], &[], ctx.socket_timeout).await?;
    // The reader's verdict (CHECKSUM_OK, or ERROR_CHECKSUM, which it also
    // reports to the namenode): read so the connection can carry the next
    // operation. A reader that hangs up here is done.
    if let Ok(status) = read_delimited(rd, KEEPALIVE).await
        && let Ok(s) = hdfs::ClientReadStatusProto::decode(status.as_slice())
        && s.status == hdfs::Status::ErrorChecksum as i32
    {
        tracing::warn!(block_id = block.block_id, "an hdfs reader found a checksum error");
    }
    Ok(())
}

/// TRANSFER_BLOCK: a writer whose pipeline lost a node and got another
/// (getAdditionalDatanode) has this node, one of the survivors, copy its
/// replica there before it rebuilds the pipeline. The copy goes through
/// Granary's pipeline under the writer's write token, which the target
/// checks again; the answer comes when it is done.
async fn transfer_block(
    ctx: &Arc<DatanodeContext>,
    op: &[u8],
    wr: &mut (impl AsyncWrite + Unpin),
    stop: &CancellationToken,
) -> Result<(), TransferError> {
    let req = hdfs::OpTransferBlockProto::decode(op)
        .map_err(|e| TransferError::Protocol(format!("OpTransferBlockProto: {e}")))?;
    let base = req.header.base_header;
    let block = granary_proto::ExtendedBlock::from(&base.block);
    let token = base.token.map(|t| t.identifier).unwrap_or_default();
    let copied = async move {
        // The token is checked here too: nothing is read for a caller without one.
        crate::data_transfer::check_write_token(ctx, &token, &block, None)?;
        let targets = req.targets.iter().map(crate::hdfs_write::downstream).collect();
        let copy = crate::transfer::copy_for_pipeline(ctx, block, token, req.header.client_name, targets);
        tokio::select! {
            r = copy => r,
            () = stop.cancelled() => Err(DatanodeError::Unavailable("the datanode is stopping".into())),
        }
    }
    .await;
    match copied {
        Ok(_) => {
            let ok = hdfs::BlockOpResponseProto {
                status: hdfs::Status::Success as i32,
                ..Default::default()
            };
            respond(wr, ok).await?;
            Ok(())
        }
        Err(e) => {
            respond(wr, refusal(&e)).await?;
            Err(e.into())
        }
    }
}

/// The replica an operation names, opened for reading
/// (`data_transfer::open_read`: token, transfer slot, length, offset).
async fn open(
    ctx: &Arc<DatanodeContext>,
    base: &hdfs::BaseHeaderProto,
    offset: Option<u64>,
) -> Result<(crate::storage::ReplicaReader, crate::context::XceiverGuard), DatanodeError> {
    let block = granary_proto::ExtendedBlock::from(&base.block);
    let token = base
        .token
        .as_ref()
        .map(|t| t.identifier.as_slice())
        .unwrap_or_default();
    open_read(ctx, &block, token, None, offset).await
}

/// The response refusing an operation for `e`.
fn refusal(e: &DatanodeError) -> hdfs::BlockOpResponseProto {
    failure(status_of(e.code()), e.to_string())
}

/// HDFS's status for a refusal: a token (or certificate) that does not
/// allow it is ERROR_ACCESS_TOKEN, which clients answer by fetching new
/// tokens; anything else is ERROR.
pub(crate) fn status_of(code: granary_common::ErrorCode) -> hdfs::Status {
    use granary_common::ErrorCode;
    match code {
        ErrorCode::AccessControl | ErrorCode::Unauthenticated => hdfs::Status::ErrorAccessToken,
        _ => hdfs::Status::Error,
    }
}

/// BLOCK_CHECKSUM: the MD5 of the block's chunk CRCs (over the length the
/// client names, or the whole replica), as HDFS's MD5CRC block checksum;
/// every chunk is checked against its CRC on the way.
async fn block_checksum(
    ctx: &Arc<DatanodeContext>,
    op: &[u8],
    wr: &mut (impl AsyncWrite + Unpin),
) -> Result<(), TransferError> {
    let req = hdfs::OpBlockChecksumProto::decode(op)
        .map_err(|e| TransferError::Protocol(format!("OpBlockChecksumProto: {e}")))?;
    if req
        .block_checksum_options
        .as_ref()
        .and_then(|o| o.block_checksum_type)
        .is_some_and(|t| t != hdfs::BlockChecksumTypeProto::Md5crc as i32)
    {
        let msg =
            "only MD5CRC block checksums are served (dfs.checksum.combine.mode = MD5MD5CRC)".to_string();
        respond(wr, failure(hdfs::Status::ErrorUnsupported, msg.clone())).await?;
        return Err(TransferError::Protocol(msg));
    }
    let summed = async {
        let (reader, _xceiver) = open(ctx, &req.header, None).await?;
        let len = req
            .header
            .block
            .num_bytes
            .filter(|n| *n > 0)
            .unwrap_or(reader.len);
        let (bpc, block_id) = (reader.bpc, req.header.block.block_id);
        blocking(move || {
            use md5::{Digest, Md5};
            let mut md5 = Md5::new();
            // About a MiB per step, whole chunks.
            let bpc64 = u64::from(bpc);
            let step = ((1u64 << 20) / bpc64).max(1) * bpc64;
            let mut pos = 0;
            while pos < len {
                let n = (len - pos).min(step);
                // Verified up to the end of the chunk holding the last byte
                // asked for; a length inside a chunk gets that part's CRC,
                // as HDFS computes it.
                let end = (pos + n).div_ceil(bpc64).saturating_mul(bpc64).min(reader.len);
                let (data, sums) = reader.read(pos, (end - pos) as usize)?;
                granary_common::checksum::verify(&data, &sums, bpc as usize, pos)
                    .map_err(|source| DatanodeError::Checksum { block_id, source })?;
                let n = (n as usize).min(data.len());
                if n == data.len() {
                    md5.update(&sums);
                } else {
                    md5.update(granary_common::checksum::compute(&data[..n], bpc as usize));
                }
                if n == 0 {
                    break;
                }
                pos += n as u64;
            }
            let chunks = len.div_ceil(u64::from(bpc));
            Ok::<_, DatanodeError>((md5.finalize().to_vec(), chunks, bpc))
        })
        .await?
    }
    .await;
    let (digest, chunks, bpc) = match summed {
        Ok(s) => s,
        Err(e) => {
            respond(wr, refusal(&e)).await?;
            return Err(e.into());
        }
    };
    respond(
        wr,
        hdfs::BlockOpResponseProto {
            status: hdfs::Status::Success as i32,
            checksum_response: Some(hdfs::OpBlockChecksumResponseProto {
                bytes_per_crc: bpc,
                crc_per_block: chunks,
                block_checksum: digest,
                crc_type: Some(hdfs::ChecksumTypeProto::ChecksumCrc32c as i32),
                block_checksum_options: None,
            }),
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}

/// One packet: lengths, header, checksums, data.
async fn write_packet(
    wr: &mut (impl AsyncWrite + Unpin),
    offset: u64,
    seqno: i64,
    last: bool,
    sums: &[u8],
    data: &[u8],
    within: Duration,
) -> Result<(), TransferError> {
    let header = hdfs::PacketHeaderProto {
        offset_in_block: offset as i64,
        seqno,
        last_packet_in_block: last,
        data_len: data.len() as i32,
        sync_block: Some(false),
    }
    .encode_to_vec();
    let mut head = BytesMut::with_capacity(6 + header.len());
    head.put_u32((4 + sums.len() + data.len()) as u32);
    head.put_u16(header.len() as u16);
    head.put_slice(&header);
    let write = async {
        wr.write_all(&head).await?;
        wr.write_all(sums).await?;
        wr.write_all(data).await?;
        wr.flush().await
    };
    tokio::time::timeout(within, write)
        .await
        .map_err(|_| TransferError::Protocol("the reader took no packet for the socket timeout".into()))??;
    Ok(())
}
