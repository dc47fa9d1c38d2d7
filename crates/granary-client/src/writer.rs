//! Writing a file: [`FileWriter`] hands bytes to a background streamer that
//! cuts them into packets with CRC32C checksums and streams them
//! through each block's datanode pipeline, many packets in flight.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::PollSender;

use crate::{ClientError, DfsClient, Result};
use granary_common::checksum;
use granary_common::data_transfer::{self, AckReader};
use granary_common::{ErrorCode, HasErrorCode};
use granary_proto as pb;

/// How a new file is created.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub overwrite: bool,
    pub create_parent: bool,
    /// 0: the namenode's default.
    pub replication: u32,
    /// 0: the namenode's default.
    pub block_size: u64,
    /// None: 0644.
    pub permission: Option<u32>,
}

/// Bytes in flight per pipeline before the writer waits: HDFS's 80 packets
/// of 64 KiB, whatever the packet size.
const IN_FLIGHT_BYTES: usize = 80 * 64 * 1024;
/// Attempts to set up a block's pipeline, excluding a failed node each time.
const PIPELINE_ATTEMPTS: usize = 3;

enum Msg2 {
    Data(Bytes),
    Flush {
        sync: bool,
        reply: oneshot::Sender<Result<()>>,
    },
    Close,
}

/// A file being written. Implements [`AsyncWrite`]: `flush` is `hflush`
/// (data readable by new readers), `shutdown` closes the file. Dropping it
/// without shutting down leaves the file open until its lease expires.
pub struct FileWriter {
    tx: PollSender<Msg2>,
    done: Option<oneshot::Receiver<Result<u64>>>,
    flushing: Option<oneshot::Receiver<Result<()>>>,
    close_sent: bool,
    path: String,
    pipeline: Pipeline,
}

/// The datanodes of the block being written, in pipeline order.
type Pipeline = Arc<parking_lot::Mutex<Vec<pb::DatanodeId>>>;

fn to_io(e: ClientError) -> io::Error {
    let kind = match e.code() {
        ErrorCode::FileNotFound => io::ErrorKind::NotFound,
        ErrorCode::AccessControl => io::ErrorKind::PermissionDenied,
        ErrorCode::FileAlreadyExists => io::ErrorKind::AlreadyExists,
        ErrorCode::InvalidArgument | ErrorCode::InvalidPath => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

fn closed_err(path: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        format!("{path}: writer already failed or closed"),
    )
}

impl std::fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileWriter {
    pub(crate) fn spawn(
        client: DfsClient,
        path: String,
        status: pb::FileStatus,
        defaults: crate::ServerDefaults,
        previous: Option<pb::ExtendedBlock>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(16);
        let (done_tx, done_rx) = oneshot::channel();
        // Renew the lease at half the soft limit for as long as the file is open.
        let renewing = tokio_util::sync::CancellationToken::new();
        {
            let client = client.clone();
            let stop = renewing.clone();
            let every = Duration::from_millis((defaults.lease_soft_limit_ms / 2).max(100));
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    let req = pb::RenewLeaseRequest {
                        client_name: client.client_name().to_string(),
                    };
                    if let Err(e) = nn_call!(client, renew_lease, req).await {
                        tracing::warn!(error = %e, "lease renewal failed");
                    }
                }
            });
        }
        let streamer = Streamer {
            client,
            path: path.clone(),
            file_id: status.file_id,
            block_size: status.block_size,
            bpc: defaults.bytes_per_checksum.max(1) as usize,
            packet_size: (defaults.write_packet_size as usize / defaults.bytes_per_checksum.max(1) as usize)
                .max(1)
                * defaults.bytes_per_checksum.max(1) as usize,
            pending: BytesMut::new(),
            block: None,
            previous,
            written: 0,
            recoveries: 0,
            pipeline: Pipeline::default(),
        };
        let pipeline = streamer.pipeline.clone();
        tokio::spawn(async move {
            let r = streamer.run(rx).await;
            renewing.cancel();
            let _ = done_tx.send(r);
        });
        Self {
            tx: PollSender::new(tx),
            done: Some(done_rx),
            flushing: None,
            close_sent: false,
            path,
            pipeline,
        }
    }

    /// The datanodes the block being written goes to, first to last (empty
    /// between blocks); changes when a pipeline recovery drops a node.
    pub fn pipeline(&self) -> Vec<crate::DatanodeId> {
        self.pipeline
            .lock()
            .iter()
            .cloned()
            .map(crate::DatanodeId::from)
            .collect()
    }

    /// Makes everything written so far visible to new readers (HDFS hflush).
    pub async fn hflush(&mut self) -> Result<()> {
        self.flush_with(false).await
    }

    /// Like [`hflush`](Self::hflush), and every datanode fsyncs it (HDFS hsync).
    pub async fn hsync(&mut self) -> Result<()> {
        self.flush_with(true).await
    }

    async fn flush_with(&mut self, sync: bool) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        let sender = self
            .tx
            .get_ref()
            .ok_or_else(|| ClientError::Io(closed_err(&self.path)))?
            .clone();
        sender
            .send(Msg2::Flush { sync, reply })
            .await
            .map_err(|_| ClientError::Io(closed_err(&self.path)))?;
        rx.await.map_err(|_| ClientError::Io(closed_err(&self.path)))?
    }

    /// Closes the file; returns its length.
    pub async fn close(mut self) -> Result<u64> {
        if let Some(s) = self.tx.get_ref() {
            let _ = s.clone().send(Msg2::Close).await;
        }
        self.tx.close();
        match self.done.take() {
            Some(rx) => rx.await.map_err(|_| ClientError::Io(closed_err(&self.path)))?,
            None => Err(ClientError::Io(closed_err(&self.path))),
        }
    }
}

impl AsyncWrite for FileWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if ready!(self.tx.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(closed_err(&self.path)));
        }
        let data = Bytes::copy_from_slice(buf);
        if self.tx.send_item(Msg2::Data(data)).is_err() {
            return Poll::Ready(Err(closed_err(&self.path)));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.close_sent {
            return Poll::Ready(Ok(()));
        }
        if self.flushing.is_none() {
            if ready!(self.tx.poll_reserve(cx)).is_err() {
                return Poll::Ready(Err(closed_err(&self.path)));
            }
            let (reply, rx) = oneshot::channel();
            if self.tx.send_item(Msg2::Flush { sync: false, reply }).is_err() {
                return Poll::Ready(Err(closed_err(&self.path)));
            }
            self.flushing = Some(rx);
        }
        let Some(rx) = self.flushing.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let r = ready!(Pin::new(rx).poll(cx));
        self.flushing = None;
        Poll::Ready(match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(to_io(e)),
            Err(_) => Err(closed_err(&self.path)),
        })
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.close_sent {
            if ready!(self.tx.poll_reserve(cx)).is_ok() {
                let _ = self.tx.send_item(Msg2::Close);
            }
            self.close_sent = true;
            self.tx.close();
        }
        let Some(rx) = self.done.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let r = ready!(Pin::new(rx).poll(cx));
        self.done = None;
        Poll::Ready(match r {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(to_io(e)),
            Err(_) => Err(closed_err(&self.path)),
        })
    }
}

use std::future::Future;

/// One block's open pipeline.
struct BlockStream {
    located: pb::LocatedBlock,
    /// Pipeline order; shrinks as nodes fail.
    targets: Vec<pb::DatanodeId>,
    tx: mpsc::Sender<pb::Packet>,
    acks: AckReader,
    /// Packets sent and not yet acked by every node, in order (resent after a recovery).
    unacked: VecDeque<pb::Packet>,
    next_seqno: u64,
    /// Bytes of this block sent so far.
    offset: u64,
    /// Bytes every node acknowledged.
    acked_offset: u64,
    /// Bytes of the last, partial chunk already sent (resent with the next packet).
    partial: Bytes,
}

impl BlockStream {
    /// Numbers a packet, keeps it until acked, and sends it; false when the
    /// pipeline's stream is closed.
    async fn send(&mut self, mut p: pb::Packet) -> bool {
        p.seqno = self.next_seqno;
        self.next_seqno += 1;
        self.unacked.push_back(p.clone());
        self.tx.send(p).await.is_ok()
    }
}

/// A pipeline node failed: which one (index in pipeline order) and why.
struct PipelineFailure {
    bad: usize,
    why: String,
}

/// Pipeline recoveries allowed per block before the write fails.
const MAX_RECOVERIES: usize = 5;

struct Streamer {
    client: DfsClient,
    path: String,
    file_id: u64,
    block_size: u64,
    bpc: usize,
    packet_size: usize,
    /// Data not yet sent.
    pending: BytesMut,
    block: Option<BlockStream>,
    /// The last finished block, with its final length.
    previous: Option<pb::ExtendedBlock>,
    written: u64,
    recoveries: usize,
    pipeline: Pipeline,
}

impl Streamer {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg2>) -> Result<u64> {
        let mut failure: Option<ClientError> = None;
        let mut closing = false;
        while let Some(msg) = rx.recv().await {
            if let Some(e) = &failure {
                if let Msg2::Flush { reply, .. } = msg {
                    let _ = reply.send(Err(ClientError::Protocol(e.to_string())));
                }
                continue;
            }
            let r = match msg {
                Msg2::Data(d) => {
                    self.written += d.len() as u64;
                    self.take_data(d).await
                }
                Msg2::Flush { sync, reply } => {
                    let r = self.flush(sync).await;
                    let failed = r.as_ref().err().map(|e| ClientError::Protocol(e.to_string()));
                    let _ = reply.send(r);
                    match failed {
                        Some(e) => Err(e),
                        None => Ok(()),
                    }
                }
                Msg2::Close => {
                    closing = true;
                    break;
                }
            };
            if let Err(e) = r {
                tracing::warn!(path = %self.path, error = %e, "write failed");
                failure = Some(e);
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if !closing {
            // Dropped without close, like a crashed writer: the file stays
            // open until its lease expires and the namenode recovers it.
            tracing::warn!(path = %self.path, "writer dropped without close; leaving the file to lease recovery");
            return Err(ClientError::Protocol(format!(
                "{}: writer dropped without close",
                self.path
            )));
        }
        self.close().await
    }

    /// Sends every whole packet of `pending` followed by `d`. Packets are
    /// cut from `d` itself where they fall inside it, so only the bytes that
    /// wait for more (a packet begun by an earlier write, the tail) are
    /// copied into `pending`.
    async fn take_data(&mut self, mut d: Bytes) -> Result<()> {
        loop {
            let room = self.room_in_block();
            let n = self.packet_size.min(room as usize);
            if n == 0 {
                self.end_block().await?;
                continue;
            }
            let data = if self.pending.len() >= n {
                self.pending.split_to(n).freeze()
            } else if self.pending.is_empty() && d.len() >= n {
                d.split_to(n)
            } else if self.pending.len() + d.len() >= n {
                let take = n - self.pending.len();
                self.pending.extend_from_slice(&d[..take]);
                d.advance(take);
                self.pending.split_to(n).freeze()
            } else {
                self.pending.extend_from_slice(&d);
                return Ok(());
            };
            self.send_packet(data, false).await?;
        }
    }

    /// Sends every whole packet in `pending`.
    async fn send_full_packets(&mut self) -> Result<()> {
        self.take_data(Bytes::new()).await
    }

    fn room_in_block(&self) -> u64 {
        match &self.block {
            Some(b) => self.block_size - b.offset,
            None => self.block_size,
        }
    }

    async fn send_packet(&mut self, data: Bytes, sync: bool) -> Result<()> {
        if self.block.is_none() {
            let b = self.open_block().await?;
            *self.pipeline.lock() = b.targets.clone();
            self.block = Some(b);
        }
        let bpc = self.bpc;
        let b = self
            .block
            .as_mut()
            .ok_or_else(|| ClientError::Protocol("no open block".into()))?;
        // A partial chunk sent by a flush is resent whole, from its chunk start.
        let (start, payload) = if b.partial.is_empty() {
            (b.offset, data.clone())
        } else {
            let mut p = BytesMut::with_capacity(b.partial.len() + data.len());
            p.extend_from_slice(&b.partial);
            p.extend_from_slice(&data);
            (b.offset - b.partial.len() as u64, p.freeze())
        };
        let sums = checksum::compute(&payload, bpc);
        let tail = payload.len() % bpc;
        b.partial = if tail == 0 {
            Bytes::new()
        } else {
            payload.slice(payload.len() - tail..)
        };
        let p = pb::Packet {
            seqno: 0,
            offset_in_block: start,
            data: payload,
            checksums: sums,
            last_packet_in_block: false,
            sync,
            heartbeat: false,
        };
        b.offset += data.len() as u64;
        self.push_packet(p).await
    }

    /// Packets sent but not yet acked before the writer waits.
    fn max_in_flight(&self) -> usize {
        (IN_FLIGHT_BYTES / self.packet_size.max(1)).max(4)
    }

    /// Sends one packet, waiting for window room, recovering the pipeline
    /// (and resending what was not acked) when a node fails.
    async fn push_packet(&mut self, p: pb::Packet) -> Result<()> {
        let window = self.max_in_flight();
        loop {
            let b = self
                .block
                .as_mut()
                .ok_or_else(|| ClientError::Protocol("no open block".into()))?;
            if b.unacked.len() < window {
                break;
            }
            if let Err(f) = Self::take_ack(b).await {
                self.recover(f).await?;
            }
        }
        let b = self
            .block
            .as_mut()
            .ok_or_else(|| ClientError::Protocol("no open block".into()))?;
        if !b.send(p).await {
            let why = "the first datanode closed the pipeline".to_string();
            self.recover(PipelineFailure { bad: 0, why }).await?;
        }
        Ok(())
    }

    /// Waits until every sent packet is acked, recovering from failures.
    async fn drain(&mut self) -> Result<()> {
        loop {
            let Some(b) = self.block.as_mut() else {
                return Ok(());
            };
            match Self::drain_acks(b).await {
                Ok(()) => return Ok(()),
                Err(f) => self.recover(f).await?,
            }
        }
    }

    /// Rebuilds the pipeline without the failed node: a new generation stamp
    /// from the namenode (so the failed node's replica is stale), the
    /// survivors continue their replica from what all of them acknowledged,
    /// and every unacknowledged packet is sent again.
    async fn recover(&mut self, mut failure: PipelineFailure) -> Result<()> {
        let mut b = self
            .block
            .take()
            .ok_or_else(|| ClientError::Protocol("no open block".into()))?;
        // End the old stream so the survivors set their replicas aside for recovery.
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut b.tx, closed));
        // What broke the pipeline first (a full disk, say) is what the user
        // needs to hear, not only why the last recovery attempt failed.
        let first_why = failure.why.clone();
        loop {
            self.recoveries += 1;
            let bad = failure.bad.min(b.targets.len().saturating_sub(1));
            let gone = b.targets.remove(bad);
            self.client.forget_datanode(&gone.rpc_addr);
            tracing::warn!(path = %self.path, dn = %gone.rpc_addr, error = %failure.why, survivors = b.targets.len(), "pipeline node failed; recovering");
            if b.targets.is_empty() || self.recoveries > MAX_RECOVERIES {
                let why = if failure.why == first_why {
                    first_why
                } else {
                    format!("{} (first failure: {first_why})", failure.why)
                };
                return Err(ClientError::Remote {
                    code: ErrorCode::Unavailable,
                    message: format!("{}: write pipeline failed and cannot recover: {why}", self.path),
                });
            }
            let req = pb::UpdateBlockForPipelineRequest {
                path: self.path.clone(),
                file_id: self.file_id,
                client_name: self.client.client_name().to_string(),
                block: b.located.block,
            };
            let resp = nn_call!(self.client, update_block_for_pipeline, req).await?;
            let mut block = resp
                .block
                .ok_or_else(|| ClientError::Protocol("no block in recovery answer".into()))?;
            block.num_bytes = b.acked_offset;
            match self
                .connect_pipeline(
                    block,
                    &b.targets,
                    resp.access_token.clone(),
                    pb::PipelineStage::Recovery,
                )
                .await
            {
                Ok((tx, acks)) => {
                    b.located.block = Some(block);
                    b.located.access_token = resp.access_token;
                    let keep: Vec<String> = b.targets.iter().map(|t| t.uuid.clone()).collect();
                    b.located
                        .locations
                        .retain(|l| l.id.as_ref().is_some_and(|i| keep.contains(&i.uuid)));
                    b.tx = tx;
                    b.acks = acks;
                    b.next_seqno = 0;
                    let resend: Vec<pb::Packet> = b.unacked.drain(..).collect();
                    let mut sent_all = true;
                    for p in resend {
                        sent_all &= b.send(p).await;
                    }
                    if sent_all {
                        *self.pipeline.lock() = b.targets.clone();
                        self.block = Some(b);
                        return Ok(());
                    }
                    failure = PipelineFailure {
                        bad: 0,
                        why: "pipeline closed while resending".into(),
                    };
                }
                Err((bad, e)) => {
                    failure = PipelineFailure {
                        bad,
                        why: e.to_string(),
                    }
                }
            }
        }
    }

    async fn take_ack(b: &mut BlockStream) -> Result<(), PipelineFailure> {
        let want = b.unacked.front().map(|p| p.seqno).unwrap_or_default();
        let ack = match b.acks.message().await {
            Ok(Some(a)) => a,
            Ok(None) => {
                return Err(PipelineFailure {
                    bad: 0,
                    why: format!("pipeline closed before acking packet {want}"),
                });
            }
            Err(st) => {
                return Err(PipelineFailure {
                    bad: 0,
                    why: st.message().to_string(),
                });
            }
        };
        if let Some(bad) = ack
            .replies
            .iter()
            .position(|r| *r != pb::AckStatus::Success as i32)
        {
            return Err(PipelineFailure {
                bad,
                why: format!("datanode #{bad} of the pipeline failed: {}", ack.message),
            });
        }
        if ack.seqno != want || ack.replies.len() < b.targets.len() {
            return Err(PipelineFailure {
                bad: 0,
                why: format!("ack for seqno {} while waiting for {want}", ack.seqno),
            });
        }
        if let Some(p) = b.unacked.pop_front() {
            b.acked_offset = p.offset_in_block + p.data.len() as u64;
        }
        Ok(())
    }

    async fn drain_acks(b: &mut BlockStream) -> Result<(), PipelineFailure> {
        while !b.unacked.is_empty() {
            Self::take_ack(b).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, sync: bool) -> Result<()> {
        self.send_full_packets().await?;
        if !self.pending.is_empty() {
            let data = self.pending.split().freeze();
            self.send_packet(data, sync).await?;
        } else if sync && self.block.is_some() {
            self.send_packet(Bytes::new(), true).await?;
        }
        self.drain().await
    }

    /// Sends the block's last packet and waits until every node finalized it.
    async fn end_block(&mut self) -> Result<()> {
        let Some(b) = self.block.as_ref() else {
            return Ok(());
        };
        let p = pb::Packet {
            seqno: 0,
            offset_in_block: b.offset,
            data: Bytes::new(),
            checksums: Vec::new(),
            last_packet_in_block: true,
            sync: false,
            heartbeat: false,
        };
        self.push_packet(p).await?;
        self.drain().await?;
        let b = self
            .block
            .take()
            .ok_or_else(|| ClientError::Protocol("no open block".into()))?;
        let mut blk = b.located.block.unwrap_or_default();
        blk.num_bytes = b.offset;
        self.previous = Some(blk);
        self.pipeline.lock().clear();
        self.recoveries = 0;
        Ok(())
    }

    /// Asks for the next block and connects its pipeline, excluding nodes that fail.
    async fn open_block(&mut self) -> Result<BlockStream> {
        let mut excluded: Vec<String> = Vec::new();
        let mut last_err = None;
        for _ in 0..PIPELINE_ATTEMPTS {
            let req = pb::AddBlockRequest {
                path: self.path.clone(),
                file_id: self.file_id,
                client_name: self.client.client_name().to_string(),
                previous: self.previous,
                excluded_nodes: excluded.clone(),
            };
            let located = nn_call!(self.client, add_block, req)
                .await?
                .block
                .ok_or_else(|| ClientError::Protocol("addBlock answered without a block".into()))?;
            match self.connect(&located).await {
                Ok(s) => return Ok(s),
                Err((bad, e)) => {
                    tracing::warn!(path = %self.path, node = %bad, error = %e, "pipeline setup failed; abandoning block");
                    let block = located.block;
                    let req = pb::AbandonBlockRequest {
                        path: self.path.clone(),
                        file_id: self.file_id,
                        client_name: self.client.client_name().to_string(),
                        block,
                    };
                    nn_call!(self.client, abandon_block, req).await?;
                    excluded.push(bad);
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| ClientError::Protocol("no pipeline could be set up".into())))
    }

    /// Opens the pipeline; on failure names the node to exclude.
    async fn connect(&self, located: &pb::LocatedBlock) -> Result<BlockStream, (String, ClientError)> {
        let targets: Vec<pb::DatanodeId> = located.locations.iter().filter_map(|l| l.id.clone()).collect();
        let block = located.block.unwrap_or_default();
        match self
            .connect_pipeline(
                block,
                &targets,
                located.access_token.clone(),
                pb::PipelineStage::Create,
            )
            .await
        {
            Ok((tx, acks)) => Ok(BlockStream {
                located: located.clone(),
                targets,
                tx,
                acks,
                unacked: VecDeque::new(),
                next_seqno: 0,
                offset: 0,
                acked_offset: 0,
                partial: Bytes::new(),
            }),
            Err((bad, e)) => Err((
                targets.get(bad).map(|t| t.rpc_addr.clone()).unwrap_or_default(),
                e,
            )),
        }
    }

    /// Opens a pipeline through `targets`; on failure names the index of the
    /// node to blame.
    async fn connect_pipeline(
        &self,
        block: pb::ExtendedBlock,
        targets: &[pb::DatanodeId],
        access_token: Vec<u8>,
        stage: pb::PipelineStage,
    ) -> Result<(mpsc::Sender<pb::Packet>, AckReader), (usize, ClientError)> {
        let first = targets
            .first()
            .ok_or_else(|| (0, ClientError::Protocol("no datanodes for the pipeline".into())))?
            .rpc_addr
            .clone();
        let header = pb::WriteBlockHeader {
            block: Some(block),
            downstream: targets[1..].to_vec(),
            client_name: self.client.client_name().to_string(),
            stage: stage as i32,
            bytes_per_checksum: self.bpc as u32,
            access_token,
        };
        match data_transfer::open_pipeline(
            self.client.net(),
            &first,
            header,
            self.max_in_flight(),
            data_transfer::REPLY_TIMEOUT,
        )
        .await
        {
            Ok(pipeline) => Ok(pipeline),
            Err(st) => {
                // Each node wraps its downstream's error, so the deepest node
                // named (the last in pipeline order) is the one that failed.
                let bad = (1..targets.len())
                    .rev()
                    .find(|i| st.message().contains(&targets[*i].rpc_addr))
                    .unwrap_or(0);
                self.client.forget_datanode(&targets[bad].rpc_addr);
                Err((bad, st.into()))
            }
        }
    }

    async fn close(mut self) -> Result<u64> {
        self.send_full_packets().await?;
        if !self.pending.is_empty() {
            let data = self.pending.split().freeze();
            self.send_packet(data, false).await?;
        }
        self.end_block().await?;
        self.client
            .complete_file(&self.path, self.file_id, self.previous)
            .await?;
        Ok(self.written)
    }
}
