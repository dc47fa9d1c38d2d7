//! Reading a file: [`FileReader`] streams each block from one replica,
//! verifies every chunk's CRC32C, and on a bad checksum or a failed datanode
//! reports it and continues from another replica at the same position, so
//! corrupt bytes are never returned.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};

use crate::{ClientError, DfsClient, Result};
use granary_common::ErrorCode;
use granary_common::checksum;
use granary_proto as pb;
use granary_proto::data_transfer_client::DataTransferClient;

type OpenFuture = Pin<Box<dyn Future<Output = Result<Active>> + Send>>;

struct Active {
    stream: tonic::Streaming<pb::ReadPacket>,
    block: usize,
    node: pb::DatanodeId,
    /// Verified bytes at `pos` not yet returned.
    buf: Bytes,
}

/// Times a reader asks the namenode for a block's locations again when no
/// replica it knows can be read (HDFS: dfs.client.max.block.acquire.failures),
/// waiting 0.5, 1 and 2 s first: a replica may be being finalized (lease
/// recovery), re-replicated, or its datanode restarting.
const REFETCHES: u32 = 3;

type LocateFuture = Pin<Box<dyn Future<Output = Result<pb::LocatedBlocks>> + Send>>;

enum State {
    Idle,
    /// Asking the namenode again where the blocks are.
    Refetching(LocateFuture),
    /// Reporting a corrupt replica before reading another (or failing).
    Reporting(futures::future::BoxFuture<'static, ()>),
    Opening {
        fut: OpenFuture,
        block: usize,
        node: pb::DatanodeId,
    },
    Active(Box<Active>),
}

/// An open file. Implements [`AsyncRead`] and [`AsyncSeek`].
pub struct FileReader {
    client: DfsClient,
    path: String,
    located: pb::LocatedBlocks,
    pos: u64,
    state: State,
    /// (block id, datanode uuid) pairs that failed.
    failed: HashSet<(u64, String)>,
    /// Location refetches since the last progress.
    refetches: u32,
}

impl FileReader {
    pub(crate) fn new(client: DfsClient, path: String, located: pb::LocatedBlocks) -> Self {
        Self {
            client,
            path,
            located,
            pos: 0,
            state: State::Idle,
            failed: HashSet::new(),
            refetches: 0,
        }
    }

    /// The file's length when opened.
    pub fn len(&self) -> u64 {
        self.located.file_length
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Reads up to `len` bytes at `offset` without moving this reader.
    pub async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut r = FileReader::new(self.client.clone(), self.path.clone(), self.located.clone());
        r.seek(io::SeekFrom::Start(offset)).await?;
        let mut out = Vec::with_capacity(len.min(64 << 20));
        (&mut r).take(len as u64).read_to_end(&mut out).await?;
        Ok(out.into())
    }

    fn block_index(&self, pos: u64) -> Option<usize> {
        self.located.blocks.iter().position(|b| {
            let n = b.block.as_ref().map_or(0, |x| x.num_bytes);
            b.offset <= pos && pos < b.offset + n
        })
    }

    /// Starts streaming the block holding `pos` from a replica not yet failed.
    fn open(&mut self) -> io::Result<()> {
        let Some(i) = self.block_index(self.pos) else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: no block holds offset {}", self.path, self.pos),
            ));
        };
        let lb = &self.located.blocks[i];
        let blk = lb.block.unwrap_or_default();
        let (offset, replicas) = (lb.offset, lb.locations.len());
        let node = lb
            .locations
            .iter()
            .filter_map(|l| l.id.clone())
            .find(|id| !self.failed.contains(&(blk.block_id, id.uuid.clone())));
        let Some(node) = node else {
            if self.refetches < REFETCHES {
                let wait = std::time::Duration::from_millis(500 << self.refetches);
                self.refetches += 1;
                self.failed.clear();
                let (client, path) = (self.client.clone(), self.path.clone());
                self.state = State::Refetching(Box::pin(async move {
                    tokio::time::sleep(wait).await;
                    client.located_blocks(&path, 0, 0).await
                }));
                return Ok(());
            }
            return Err(io::Error::other(ClientError::Remote {
                code: ErrorCode::Unavailable,
                message: format!(
                    "{}: could not read block {} (offset {offset}) from any of its {replicas} replicas",
                    self.path, blk.block_id,
                ),
            }));
        };
        let in_block = self.pos - lb.offset;
        let req = pb::ReadBlockRequest {
            block: Some(blk),
            offset: in_block,
            length: blk.num_bytes - in_block,
            access_token: lb.access_token.clone(),
        };
        let client = self.client.clone();
        let n2 = node.clone();
        let fut = async move {
            let ch = client.datanode_channel(&n2.rpc_addr)?;
            let mut dt = DataTransferClient::new(ch).max_decoding_message_size(64 << 20);
            let stream = dt.read_block(req).await?.into_inner();
            Ok(Active {
                stream,
                block: i,
                node: n2,
                buf: Bytes::new(),
            })
        };
        self.state = State::Opening {
            fut: Box::pin(fut),
            block: i,
            node,
        };
        Ok(())
    }

    fn fail_node(&mut self, block: usize, node: &pb::DatanodeId, why: &str) {
        let id = self.located.blocks[block]
            .block
            .as_ref()
            .map_or(0, |b| b.block_id);
        tracing::warn!(path = %self.path, block_id = id, dn = %node.rpc_addr, error = why, "replica read failed; trying another");
        self.failed.insert((id, node.uuid.clone()));
        self.state = State::Idle;
    }

    /// Reports a corrupt replica; reading resumes (or fails) once the
    /// namenode has the report.
    fn report(&mut self, block: usize, node: &pb::DatanodeId, why: String) {
        let fut = self
            .client
            .report_bad_replica(&self.located.blocks[block], node.uuid.clone(), why);
        self.state = State::Reporting(fut);
    }

    /// Verifies a packet and keeps the part at and after `pos`.
    fn accept(&mut self, a: &Active, p: pb::ReadPacket) -> std::result::Result<Bytes, String> {
        let lb = &self.located.blocks[a.block];
        let bpc = p.bytes_per_checksum.max(1) as usize;
        if let Err(e) = checksum::verify(&p.data, &p.checksums, bpc, p.offset) {
            return Err(e.to_string());
        }
        let file_off = lb.offset + p.offset;
        if file_off > self.pos {
            return Err(format!(
                "packet at {file_off} skips past the read position {}",
                self.pos
            ));
        }
        let skip = (self.pos - file_off) as usize;
        if skip > p.data.len() {
            return Err("packet ends before the read position".into());
        }
        let block_end = lb.offset + lb.block.as_ref().map_or(0, |b| b.num_bytes);
        let keep = ((block_end - self.pos) as usize).min(p.data.len() - skip);
        Ok(p.data.slice(skip..skip + keep))
    }
}

impl AsyncRead for FileReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.pos >= self.located.file_length || out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            match std::mem::replace(&mut self.state, State::Idle) {
                State::Idle => self.open()?,
                State::Refetching(mut fut) => match fut.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.state = State::Refetching(fut);
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(located)) => self.located.blocks = located.blocks,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                },
                State::Reporting(mut fut) => {
                    if fut.as_mut().poll(cx).is_pending() {
                        self.state = State::Reporting(fut);
                        return Poll::Pending;
                    }
                }
                State::Opening { mut fut, block, node } => match fut.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.state = State::Opening { fut, block, node };
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(a)) => self.state = State::Active(Box::new(a)),
                    Poll::Ready(Err(e)) => {
                        self.client.forget_datanode(&node.rpc_addr);
                        self.fail_node(block, &node, &e.to_string());
                    }
                },
                State::Active(mut a) => {
                    if !a.buf.is_empty() {
                        let n = a.buf.len().min(out.remaining());
                        out.put_slice(&a.buf[..n]);
                        a.buf = a.buf.slice(n..);
                        self.pos += n as u64;
                        self.state = State::Active(a);
                        return Poll::Ready(Ok(()));
                    }
                    match Pin::new(&mut a.stream).poll_next(cx) {
                        Poll::Pending => {
                            self.state = State::Active(a);
                            return Poll::Pending;
                        }
                        Poll::Ready(Some(Ok(p))) => match self.accept(&a, p) {
                            Ok(data) => {
                                self.refetches = 0;
                                a.buf = data;
                                self.state = State::Active(a);
                            }
                            Err(why) => {
                                let (b, n) = (a.block, a.node.clone());
                                self.fail_node(b, &n, &why);
                                self.report(b, &n, why);
                            }
                        },
                        Poll::Ready(Some(Err(st))) => {
                            let (b, n) = (a.block, a.node.clone());
                            self.fail_node(b, &n, st.message());
                            if st.code() == tonic::Code::DataLoss {
                                self.report(b, &n, st.message().to_string());
                            }
                        }
                        Poll::Ready(None) => {
                            let lb = &self.located.blocks[a.block];
                            let end = lb.offset + lb.block.as_ref().map_or(0, |b| b.num_bytes);
                            if self.pos < end {
                                // A replica shorter than its block lost bytes.
                                let (b, n) = (a.block, a.node.clone());
                                let why = format!("replica ended at {} of {end} bytes", self.pos - lb.offset);
                                self.fail_node(b, &n, &why);
                                self.report(b, &n, why);
                            }
                            // Otherwise the next block opens on the next turn.
                        }
                    }
                }
            }
        }
    }
}

impl AsyncSeek for FileReader {
    fn start_seek(mut self: Pin<&mut Self>, pos: io::SeekFrom) -> io::Result<()> {
        let len = self.located.file_length as i128;
        let target = match pos {
            io::SeekFrom::Start(p) => p as i128,
            io::SeekFrom::End(d) => len + d as i128,
            io::SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if target < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: cannot seek before the start", self.path),
            ));
        }
        let target = target as u64;
        if target != self.pos {
            self.pos = target;
            self.state = State::Idle;
        }
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}
