//! Block data: the write pipeline (on its own framed TCP connections to the
//! RPC port, `granary_common::data_transfer`) and the `DataTransfer` gRPC
//! service's block reads.
//!
//! Writes: the first message names the block and the nodes after this one.
//! Each packet is checked (sequence number, offset, checksum count; the last
//! node also verifies every CRC32C), forwarded downstream, written to the
//! replica in `rbw/`, and acked once the downstream ack for the same packet
//! arrived, carrying one status per node from here to the end of the pipeline.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use granary_common::net::WriteHalf;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::context::{DatanodeContext, ReplicaEvent};
use crate::error::{DatanodeError, blocking};
use crate::storage::ReplicaWriter;
use granary_common::block_token::BlockAccess;
use granary_common::checksum;
use granary_common::data_transfer::{self, AckReader, RequestReader};
use granary_common::{ErrorCode, HasErrorCode};
use granary_proto as pb;
use granary_proto::data_transfer_server::DataTransfer;
use granary_proto::write_block_request::Msg;

/// How long a pipeline recovery waits for the broken stream to set its
/// half-written replica aside.
const RECOVERY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Read packets carry this much data at most. HDFS uses 64 KiB; over gRPC
/// each message and blocking-pool hop costs more, and 1 MiB reads let the
/// disk stream (docs/performance.md).
const READ_PACKET: usize = 1 << 20;
/// Largest packet accepted from a writer.
const MAX_PACKET: usize = data_transfer::MAX_DATA;

pub struct DataTransferService {
    ctx: Arc<DatanodeContext>,
}

impl DataTransferService {
    pub fn new(ctx: Arc<DatanodeContext>) -> Self {
        Self { ctx }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Checks the token presented for `block`; returns the generation stamp it
/// grants. `user`: who presents it, when a user's certificate says so (the
/// token must then be issued to that user).
fn check_token(
    ctx: &DatanodeContext,
    token: &[u8],
    block_id: u64,
    access: BlockAccess,
    user: Option<&str>,
) -> Result<u64, DatanodeError> {
    if !ctx.has_block_keys() {
        return Err(DatanodeError::NotRegistered);
    }
    ctx.verify_token(token, block_id, access, user)
        .map_err(|source| DatanodeError::Token { block_id, source })
}

/// Checks a write token for `block` at its generation stamp (what a
/// pipeline's header, or a copy for one, presents).
pub(crate) fn check_write_token(
    ctx: &DatanodeContext,
    token: &[u8],
    block: &pb::ExtendedBlock,
    user: Option<&str>,
) -> Result<(), DatanodeError> {
    let granted = check_token(ctx, token, block.block_id, BlockAccess::Write, user)?;
    if granted != block.generation_stamp {
        return Err(DatanodeError::TokenGeneration {
            block_id: block.block_id,
            granted,
            wanted: block.generation_stamp,
        });
    }
    Ok(())
}

/// The finalized replica of `block` opened for reading, with a transfer
/// slot: after `token` is checked (read access, for `user` when a
/// certificate names one), the replica is at least as long as the block
/// the reader knows (else it lost bytes: the reader reports it and reads
/// another), and `offset` (if any) lies inside it. Granary's reads and
/// HDFS clients' (crate::hdfs_transfer) both open replicas here.
pub(crate) async fn open_read(
    ctx: &Arc<DatanodeContext>,
    block: &pb::ExtendedBlock,
    token: &[u8],
    user: Option<&str>,
    offset: Option<u64>,
) -> Result<(crate::storage::ReplicaReader, crate::context::XceiverGuard), DatanodeError> {
    check_token(ctx, token, block.block_id, BlockAccess::Read, user)?;
    let xceiver = ctx.try_xceiver().ok_or(DatanodeError::Busy {
        max: ctx.max_transfers,
    })?;
    let storage = ctx.storage.clone();
    let (id, gs) = (block.block_id, block.generation_stamp);
    let reader = blocking(move || storage.open_read(id, gs)).await??;
    if block.num_bytes > reader.len {
        return Err(DatanodeError::ShortReplica {
            block_id: id,
            held: reader.len,
            wanted: block.num_bytes,
        });
    }
    if let Some(offset) = offset
        && offset > reader.len
    {
        return Err(DatanodeError::BadRequest(format!(
            "block {id}: offset {offset} is beyond the replica's {} bytes",
            reader.len
        )));
    }
    Ok((reader, xceiver))
}

/// A replica this call holds before its packets start. If the call ends
/// first (an error, or the client cancelling it, which drops the handler
/// wherever it waits), dropping this keeps a recovering replica for the next
/// recovery attempt and removes a new one, instead of losing track of it.
struct HeldReplica {
    ctx: Arc<DatanodeContext>,
    writer: Option<ReplicaWriter>,
    recovering: bool,
    /// A copy for a writer's pipeline (TRANSFER_RBW): kept unfinished at
    /// its end, for the writer's recovery, not finalized.
    unfinished: bool,
}

impl HeldReplica {
    fn new(ctx: &Arc<DatanodeContext>, w: ReplicaWriter, recovering: bool) -> Self {
        Self {
            ctx: ctx.clone(),
            writer: Some(w),
            recovering,
            unfinished: false,
        }
    }

    fn gs(&self) -> u64 {
        self.writer.as_ref().map_or(0, |w| w.gs)
    }

    fn recover_to(&mut self, gs: u64, len: u64) -> Result<(), crate::storage::StorageError> {
        match self.writer.as_mut() {
            Some(w) => w.recover_to(gs, len),
            None => Ok(()),
        }
    }

    /// Hands the replica to the write pipeline, which owns it from here.
    fn release(mut self) -> Option<ReplicaWriter> {
        self.writer.take()
    }
}

impl Drop for HeldReplica {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            if self.recovering {
                self.ctx.keep_for_recovery(w);
            } else {
                w.abort();
            }
        }
    }
}

enum Local {
    Ok { seqno: u64, last: bool },
    Fail(DatanodeError),
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<pb::ReadPacket, Status>> + Send>>;

#[tonic::async_trait]
impl DataTransfer for DataTransferService {
    type ReadBlockStream = ReadStream;

    async fn read_block(
        &self,
        req: Request<pb::ReadBlockRequest>,
    ) -> Result<Response<Self::ReadBlockStream>, Status> {
        let user = granary_common::tls::ConnInfo::of(&req)
            .and_then(|c| c.user())
            .map(str::to_string);
        let r = req.into_inner();
        let block = r
            .block
            .ok_or_else(|| DatanodeError::BadRequest("readBlock names no block".into()))?;
        let (reader, xceiver) = open_read(
            &self.ctx,
            &block,
            &r.access_token,
            user.as_deref(),
            Some(r.offset),
        )
        .await?;
        let reader = Arc::new(reader);
        let id = block.block_id;
        let end = if r.length == 0 {
            reader.len
        } else {
            r.offset.saturating_add(r.length).min(reader.len)
        };
        let bpc = u64::from(reader.bpc);
        let start = r.offset / bpc * bpc;
        // Whole chunks only, so every packet can be verified.
        let limit = end.div_ceil(bpc).saturating_mul(bpc).min(reader.len);
        let packet = (READ_PACKET as u64 / bpc).max(1) * bpc;
        // Four packets ahead of the reader at most; a reader that stops
        // taking them for socket_timeout gives its slot up.
        let (tx, rx) = mpsc::channel(4);
        let stall = self.ctx.socket_timeout;
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let _x = xceiver;
            let mut pos = start;
            while pos < limit {
                let n = (limit - pos).min(packet) as usize;
                let rd = reader.clone();
                let item = blocking(move || rd.read(pos, n))
                    .await
                    .and_then(|r| r.map_err(DatanodeError::from))
                    .map(|(data, checksums)| pb::ReadPacket {
                        offset: pos,
                        data: data.into(),
                        checksums,
                        bytes_per_checksum: reader.bpc,
                    })
                    .map_err(Status::from);
                let failed = item.is_err();
                let sent = tokio::time::timeout(stall, tx.send(item)).await;
                if !matches!(sent, Ok(Ok(()))) || failed {
                    if sent.is_err() {
                        tracing::warn!(
                            block_id = id,
                            "reader took no packet for the socket timeout; read ended"
                        );
                    }
                    return;
                }
                ctx.metrics.bytes_read.inc_by(n as u64);
                pos += n as u64;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Serves one write pipeline connection (its preamble already read) until
/// the block's last packet is acked, the pipeline fails, or the datanode
/// stops, which cuts the connection as a crash would: the writer recovers
/// without this node.
pub async fn serve_write(
    ctx: Arc<DatanodeContext>,
    mut requests: RequestReader,
    mut replies: WriteHalf,
    user: Option<String>,
    stop: CancellationToken,
) {
    let Some(_x) = ctx.try_xceiver() else {
        tracing::warn!(
            limit = ctx.max_transfers,
            "write pipeline refused: too many transfers"
        );
        let st = Status::from(DatanodeError::Busy {
            max: ctx.max_transfers,
        });
        let _ = data_transfer::send_reply(&mut replies, &data_transfer::error_reply(&st)).await;
        return;
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = write_pipeline(ctx, &mut requests, &mut replies, user.as_deref()) => {}
    }
}

/// A write pipeline in [`DatanodeContext::active_writes`] until dropped;
/// lease recovery cancels its token to stop it.
struct ActiveWrite {
    ctx: Arc<DatanodeContext>,
    block_id: u64,
    serial: u64,
    stop: CancellationToken,
}

impl ActiveWrite {
    fn new(ctx: &Arc<DatanodeContext>, block_id: u64) -> Self {
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stop = CancellationToken::new();
        ctx.active_writes.lock().insert(block_id, (serial, stop.clone()));
        Self {
            ctx: ctx.clone(),
            block_id,
            serial,
            stop,
        }
    }
}

impl Drop for ActiveWrite {
    fn drop(&mut self) {
        let mut m = self.ctx.active_writes.lock();
        // A later pipeline of the same block (a recovery) may own the entry now.
        if m.get(&self.block_id).is_some_and(|(s, _)| *s == self.serial) {
            m.remove(&self.block_id);
        }
    }
}

async fn write_pipeline(
    ctx: Arc<DatanodeContext>,
    requests: &mut RequestReader,
    replies: &mut WriteHalf,
    user: Option<&str>,
) {
    let completed = run_pipeline(&ctx, requests, replies, user).await;
    ctx.metrics.write_block_done(completed);
}

/// True when the block's last packet was acked upstream.
async fn run_pipeline(
    ctx: &Arc<DatanodeContext>,
    requests: &mut RequestReader,
    replies: &mut WriteHalf,
    user: Option<&str>,
) -> bool {
    let (held, bpc, downstream) = match accept(ctx, requests, user).await {
        Ok(s) => s,
        Err(Some(e)) => {
            let st = Status::from(e);
            let _ = data_transfer::send_reply(replies, &data_transfer::error_reply(&st)).await;
            return false;
        }
        Err(None) => return false,
    };
    let ready = pb::WriteBlockReply {
        msg: Some(pb::write_block_reply::Msg::Ready(pb::PipelineReady {})),
    };
    if data_transfer::send_reply(replies, &ready).await.is_err() {
        return false;
    }
    // The header carried a valid write token: whole-frame buffers from here.
    requests.trust();
    let unfinished = held.unfinished;
    let Some(writer) = held.release() else {
        return false;
    };
    let active = ActiveWrite::new(ctx, writer.block_id);
    let (local_tx, local_rx) = mpsc::channel(256);
    let (down_tx, down_acks) = match downstream {
        Some((tx, acks, addr)) => (Some(tx), Some((acks, addr))),
        None => (None, None),
    };
    let down_failed = CancellationToken::new();
    let ((), completed) = tokio::join!(
        receive(
            ctx.clone(),
            requests,
            Receiving {
                writer,
                unfinished,
                bpc,
                down_tx,
                local_tx,
                down_failed: down_failed.clone(),
                stop: active.stop.clone(),
            },
        ),
        respond(local_rx, down_acks, replies, down_failed),
    );
    drop(active);
    completed
}

/// Reads a pipeline's header and sets the pipeline up. `Err(None)`: the
/// writer went away, there is no one to answer.
async fn accept(
    ctx: &Arc<DatanodeContext>,
    requests: &mut RequestReader,
    user: Option<&str>,
) -> Result<(HeldReplica, u32, Option<Downstream>), Option<DatanodeError>> {
    let first = tokio::time::timeout(ctx.socket_timeout, requests.message())
        .await
        .map_err(|_| {
            Some(DatanodeError::BadRequest(format!(
                "no write pipeline header within {} ms",
                ctx.socket_timeout.as_millis()
            )))
        })?;
    let header = match first {
        Ok(Some(pb::WriteBlockRequest {
            msg: Some(Msg::Header(h)),
        })) => h,
        Ok(None) => return Err(None),
        Ok(Some(_)) => {
            return Err(Some(DatanodeError::BadRequest(
                "the first message of a write pipeline must be a header".into(),
            )));
        }
        Err(st) => return Err(Some(st.into())),
    };
    // The writer sends nothing until it is told the pipeline is ready, so a
    // message (or the connection closing) during set-up means it is gone or
    // broken: stop waiting on disks and downstream nodes for it. Dropping
    // the set-up keeps a recovering replica for the next attempt.
    tokio::select! {
        r = set_up(ctx, header, user) => r.map_err(Some),
        early = requests.message() => Err(match early {
            Ok(Some(_)) => Some(DatanodeError::BadRequest(
                "a message came before the pipeline was ready".into(),
            )),
            Err(st) if ErrorCode::from_status(&st) != ErrorCode::Unavailable => Some(st.into()),
            _ => None,
        }),
    }
}

type Downstream = (mpsc::Sender<pb::Packet>, AckReader, String);

/// Checks a pipeline's header, opens (or, in a recovery, takes back) the
/// replica, and connects the rest of the pipeline, so a dead next node fails
/// the set-up. Every early return drops the held replica, which keeps a
/// recovering one for the writer's next attempt (it retries without the
/// failed node) and removes a new one.
async fn set_up(
    ctx: &Arc<DatanodeContext>,
    header: pb::WriteBlockHeader,
    user: Option<&str>,
) -> Result<(HeldReplica, u32, Option<Downstream>), DatanodeError> {
    let block = header
        .block
        .ok_or_else(|| DatanodeError::BadRequest("write pipeline header names no block".into()))?;
    check_write_token(ctx, &header.access_token, &block, user)?;
    let bpc = if header.bytes_per_checksum == 0 {
        512
    } else {
        header.bytes_per_checksum
    };
    if bpc > 1 << 20 {
        return Err(DatanodeError::BadRequest(format!(
            "bytes_per_checksum {bpc} is too large"
        )));
    }
    let recovering = header.stage == pb::PipelineStage::Recovery as i32;
    let held = if recovering {
        // Continue the half-written replica under the new generation stamp.
        // The old stream may still be winding down here, its last write
        // held up by a busy disk for seconds: wait for it as HDFS waits for
        // the old writer (dfs.datanode.xceiver.stop.timeout.millis, 60 s).
        let deadline = tokio::time::Instant::now() + RECOVERY_WAIT;
        let (id, gs) = (block.block_id, block.generation_stamp);
        let kept = loop {
            if let Some((w, _)) = ctx.recoverable.lock().remove(&id) {
                break Some(HeldReplica::new(ctx, w, true));
            }
            // Or one a restart found in rbw/, or that waited too long in memory.
            if let Some(w) = ctx.storage.waiting(id).filter(|r| r.gs < gs) {
                let ctx = ctx.clone();
                let reopened = blocking(move || {
                    ctx.storage
                        .reopen_waiting(id, w.gs)
                        .map(|w| HeldReplica::new(&ctx, w, true))
                });
                break Some(reopened.await??);
            }
            // Or the old stream finalized the replica here before the
            // writer saw the last ack: nothing more will come, reopen it.
            if ctx.storage.get(id).is_some_and(|r| r.gs < gs) {
                let ctx = ctx.clone();
                let reopened = blocking(move || {
                    ctx.storage
                        .reopen_finalized(id, gs)
                        .map(|w| HeldReplica::new(&ctx, w, true))
                });
                break Some(reopened.await??);
            }
            if tokio::time::Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let Some(mut held) = kept else {
            return Err(DatanodeError::NothingToRecover(block.block_id));
        };
        let kept_bpc = held.writer.as_ref().map_or(bpc, |w| w.bytes_per_checksum());
        if kept_bpc != bpc {
            // Its checksums would not fit the packets: the replica stays.
            return Err(DatanodeError::BadRequest(format!(
                "block {}: the replica is checksummed in {kept_bpc}-byte chunks, the recovery asks for {bpc}",
                block.block_id
            )));
        }
        if held.gs() >= block.generation_stamp {
            // A late request from an older recovery: the replica stays
            // (dropping `held` keeps it) for the current one.
            return Err(DatanodeError::BadRequest(
                "recovery needs a newer generation stamp".into(),
            ));
        }
        let (gs, len) = (block.generation_stamp, block.num_bytes);
        let (held, res) = blocking(move || {
            let r = held.recover_to(gs, len);
            (held, r)
        })
        .await?;
        res?;
        held
    } else {
        // A half-written replica of an older generation is superseded.
        if let Some((stale, _)) = ctx.recoverable.lock().remove(&block.block_id) {
            stale.abort();
        }
        let ctx = ctx.clone();
        blocking(move || {
            ctx.storage
                .create_rbw(&block, bpc, 0)
                .map(|w| HeldReplica::new(&ctx, w, false))
        })
        .await??
    };
    let mut held = held;
    held.unfinished = header.stage == pb::PipelineStage::TransferRbw as i32;

    let Some(next) = header.downstream.first() else {
        return Ok((held, bpc, None));
    };
    let mut h = header.clone();
    h.downstream.remove(0);
    match data_transfer::open_pipeline(ctx.net(), &next.rpc_addr, h, 64, ctx.socket_timeout).await {
        Ok((tx, acks)) => Ok((held, bpc, Some((tx, acks, next.rpc_addr.clone())))),
        Err(e) => Err(DatanodeError::Unavailable(format!(
            "cannot reach downstream datanode {}: {}",
            next.rpc_addr,
            e.message()
        ))),
    }
}

/// What [`receive`] works with.
struct Receiving {
    writer: ReplicaWriter,
    /// Kept unfinished at the last packet (a copy for a writer's pipeline).
    unfinished: bool,
    bpc: u32,
    down_tx: Option<mpsc::Sender<pb::Packet>>,
    local_tx: mpsc::Sender<Local>,
    down_failed: CancellationToken,
    /// Cancelled by lease recovery: stop, keeping the replica.
    stop: CancellationToken,
}

/// Takes packets until the last one, writing and forwarding each.
async fn receive(ctx: Arc<DatanodeContext>, inbound: &mut RequestReader, r: Receiving) {
    let Receiving {
        writer,
        unfinished,
        bpc,
        mut down_tx,
        local_tx,
        down_failed,
        stop,
    } = r;
    let last_node = down_tx.is_none();
    let block_id = writer.block_id;
    let mut expected_seq = 0u64;
    let mut offset = writer.written();
    let mut writer = Some(writer);
    // The writer (or the node upstream) vanished: keep the replica for recovery.
    let mut lost = false;
    let outcome: Result<(), DatanodeError> = async {
        loop {
            let next = tokio::select! {
                m = tokio::time::timeout(ctx.socket_timeout, inbound.message()) => m,
                _ = stop.cancelled() => {
                    lost = true;
                    return Err(DatanodeError::Unavailable(format!(
                        "block {block_id}: write stopped by lease recovery"
                    )));
                }
            };
            let Ok(next) = next else {
                // A writer that stalls is treated as gone: its replica is kept.
                lost = true;
                return Err(DatanodeError::Unavailable(format!(
                    "block {block_id}: no packet from the writer for {} ms",
                    ctx.socket_timeout.as_millis()
                )));
            };
            let msg = match next {
                Ok(Some(m)) => m,
                Ok(None) => {
                    lost = true;
                    return Err(DatanodeError::BadRequest(format!(
                        "block {block_id}: stream ended before the last packet"
                    )));
                }
                Err(e) => {
                    // A broken connection may be recovered; a malformed frame
                    // is bad input, whose partial replica goes.
                    let e = DatanodeError::from(e);
                    lost = e.code() == ErrorCode::Unavailable;
                    return Err(e);
                }
            };
            let p = match msg.msg {
                Some(Msg::Packet(p)) => p,
                _ => {
                    return Err(DatanodeError::BadRequest(
                        "the write pipeline got a second header".into(),
                    ));
                }
            };
            if p.heartbeat {
                // A writer with nothing to send: passed on, so every node's
                // wait for the next packet starts again; never acked.
                if !p.data.is_empty() || !p.checksums.is_empty() || p.last_packet_in_block {
                    return Err(DatanodeError::BadRequest(format!(
                        "block {block_id}: a heartbeat packet carries data"
                    )));
                }
                if let Some(tx) = &down_tx {
                    // Never waits: a full channel means packets are flowing.
                    let _ = tx.try_send(p);
                }
                continue;
            }
            if p.seqno != expected_seq {
                return Err(DatanodeError::BadRequest(format!(
                    "block {block_id}: out-of-order packet: expected seqno {expected_seq}, got {}",
                    p.seqno
                )));
            }
            // After an hflush that ended mid-chunk, the writer resends that chunk whole.
            let chunk_start = offset - offset % u64::from(bpc);
            if p.offset_in_block != offset && p.offset_in_block != chunk_start {
                return Err(DatanodeError::BadRequest(format!(
                    "block {block_id}: packet {} starts at offset {}, expected {offset}",
                    p.seqno, p.offset_in_block
                )));
            }
            let rewind = p.offset_in_block != offset;
            if p.data.len() > MAX_PACKET {
                return Err(DatanodeError::BadRequest(format!(
                    "packet of {} bytes is too large",
                    p.data.len()
                )));
            }
            let want = checksum::chunks(p.data.len(), bpc as usize) * checksum::CHECKSUM_SIZE;
            if p.checksums.len() != want {
                return Err(DatanodeError::BadRequest(format!(
                    "block {block_id}: packet {} has {} checksum bytes, expected {want}",
                    p.seqno,
                    p.checksums.len()
                )));
            }
            if last_node {
                checksum::verify(&p.data, &p.checksums, bpc as usize, offset)
                    .map_err(|source| DatanodeError::Checksum { block_id, source })?;
            }
            if let Some(tx) = &down_tx {
                // A dead downstream stops draining its channel: never wait on it
                // once the responder has seen it fail (it reports that upstream).
                let sent = tokio::select! {
                    r = tx.send(p.clone()) => r.is_ok(),
                    _ = down_failed.cancelled() => false,
                };
                if !sent {
                    down_tx = None;
                }
            }
            let mut w = writer
                .take()
                .ok_or_else(|| DatanodeError::Internal("replica writer lost".into()))?;
            let data = p.data.clone();
            let sums = p.checksums.clone();
            let sync = p.sync;
            let at = p.offset_in_block;
            let (w, res) = blocking(move || {
                let r = (if rewind { w.rewind_to(at) } else { Ok(()) })
                    .and_then(|()| w.write(&data, &sums))
                    .and_then(|()| if sync { w.sync() } else { Ok(()) });
                (w, r)
            })
            .await?;
            writer = Some(w);
            res?;
            ctx.metrics.bytes_written.inc_by(p.data.len() as u64);
            offset = p.offset_in_block + p.data.len() as u64;
            expected_seq += 1;
            if p.last_packet_in_block {
                let w = writer
                    .take()
                    .ok_or_else(|| DatanodeError::Internal("replica writer lost".into()))?;
                if unfinished {
                    tracing::debug!(
                        block_id,
                        bytes = w.written(),
                        "copy for a writer's pipeline received"
                    );
                    ctx.keep_for_recovery(w);
                } else {
                    let storage = ctx.storage.clone();
                    let fin = blocking(move || storage.finalize(w, sync)).await??;
                    tracing::debug!(block_id, bytes = fin.num_bytes, "replica finalized");
                    ctx.report(ReplicaEvent::Received(fin));
                }
                let _ = local_tx
                    .send(Local::Ok {
                        seqno: p.seqno,
                        last: true,
                    })
                    .await;
                return Ok(());
            }
            if local_tx
                .send(Local::Ok {
                    seqno: p.seqno,
                    last: false,
                })
                .await
                .is_err()
            {
                // The pipeline broke (here or downstream): keep the replica for recovery.
                lost = true;
                return Err(DatanodeError::Unavailable(
                    "pipeline broke before the last packet".into(),
                ));
            }
        }
    }
    .await;
    if let Err(e) = outcome {
        if let Some(w) = writer.take() {
            if lost && !unfinished {
                tracing::warn!(block_id, bytes = w.written(), error = %e, "writer vanished; replica kept for pipeline recovery");
                ctx.keep_for_recovery(w);
            } else {
                tracing::warn!(block_id, error = %e, "write pipeline aborted; partial replica removed");
                w.abort();
            }
        }
        let _ = local_tx.send(Local::Fail(e)).await;
    }
}

/// Pairs local results with downstream acks, in order, and acks upstream;
/// true when the last packet's ack was sent.
async fn respond(
    mut local: mpsc::Receiver<Local>,
    mut downstream: Option<(AckReader, String)>,
    upstream: &mut WriteHalf,
    down_failed: CancellationToken,
) -> bool {
    // However this ends, the receiver must stop forwarding downstream.
    let _guard = down_failed.drop_guard();
    use pb::AckStatus;
    let ack_reply = |ack| pb::WriteBlockReply {
        msg: Some(pb::write_block_reply::Msg::Ack(ack)),
    };
    while let Some(item) = local.recv().await {
        let (seqno, last) = match item {
            Local::Ok { seqno, last } => (seqno, last),
            Local::Fail(e) => {
                let st = Status::from(e);
                let _ = data_transfer::send_reply(upstream, &data_transfer::error_reply(&st)).await;
                return false;
            }
        };
        let mut ack = pb::PipelineAck {
            seqno,
            replies: vec![AckStatus::Success as i32],
            message: String::new(),
        };
        if let Some((acks, addr)) = &mut downstream {
            match acks.message().await {
                Ok(Some(d)) if d.seqno == seqno => {
                    let bad = d.replies.iter().any(|r| *r != AckStatus::Success as i32);
                    ack.replies.extend(d.replies);
                    ack.message = d.message;
                    if bad {
                        let _ = data_transfer::send_reply(upstream, &ack_reply(ack)).await;
                        return false;
                    }
                }
                other => {
                    let why = match other {
                        Ok(Some(d)) => format!("acked seqno {} for {seqno}", d.seqno),
                        Ok(None) => "closed its ack stream".to_string(),
                        Err(e) => e.message().to_string(),
                    };
                    ack.replies.push(AckStatus::Error as i32);
                    ack.message = format!("downstream datanode {addr} failed: {why}");
                    let _ = data_transfer::send_reply(upstream, &ack_reply(ack)).await;
                    return false;
                }
            }
        }
        if data_transfer::send_reply(upstream, &ack_reply(ack))
            .await
            .is_err()
        {
            return false;
        }
        if last {
            return true;
        }
    }
    false
}
