//! The write pipeline's own connection: plain TCP to a datanode's RPC port,
//! framed, as HDFS's DataTransferProtocol runs beside its RPC.
//!
//! A connection starts with [`PREAMBLE`], which lets the datanode tell it
//! from an HTTP/2 (gRPC) connection on the same port. Then frames go both
//! ways: the length of a protobuf message (4 bytes, big endian), the length
//! of raw data (4 bytes, big endian), the message, the data. The writer sends
//! `WriteBlockRequest`s: the header, then packets whose data is the frame's
//! data. The datanode answers `WriteBlockReply`s: ready, acks, or an error
//! that ends the connection. A packet's bytes are read from the socket once,
//! into a buffer of their own, and forwarded downstream from there; over
//! gRPC each hop also copied them through HTTP/2 and protobuf buffers
//! (docs/performance.md).

use std::io;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::StreamExt;
use prost::Message;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::task::AbortOnDropHandle;

use crate::ErrorCode;
use crate::error::status;
use crate::net::{Net, ReadHalf, WriteHalf};
use crate::tls::Dial;
use granary_proto as pb;
use granary_proto::write_block_reply::Msg as Reply;
use granary_proto::write_block_request::Msg as Request;

/// The first bytes of a data-transfer connection. An HTTP/2 connection
/// starts with "PRI * HTTP/2.0".
pub const PREAMBLE: &[u8; 8] = b"GRNYDT01";
/// Largest protobuf message in a frame: a header, or a packet's checksums
/// (4 bytes per chunk).
pub const MAX_MESSAGE: usize = 1 << 20;
/// Largest packet data in a frame (writers send 512 KiB packets).
pub const MAX_DATA: usize = 4 << 20;
/// A connection's read buffer starts this small and grows with the bytes
/// that arrive, never by more than it holds already: a frame that announces
/// megabytes and sends none costs no more than this.
const FIRST_READ: usize = 64 << 10;
const FRAME_HEAD: usize = 8;

/// How long a writer waits by default for the node it sends to (ready or
/// the next ack) before giving it up: HDFS's `dfs.client.socket-timeout`.
/// A node that stops answering while its kernel still does (a stopped
/// process) is found this way; a dead host or a cut network sooner, by TCP
/// (see [`tune`]).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// Added to the reply timeout per node further down the pipeline, so the
/// node just above a silent one gives up first and names it, rather than
/// the writer blaming the first node (HDFS adds 5 s per node the same way).
pub const REPLY_TIMEOUT_PER_NODE: Duration = Duration::from_secs(5);

/// One frame: a protobuf message and the raw data after it.
pub struct Frame {
    pub message: Bytes,
    pub data: Bytes,
}

/// Cuts frames out of the bytes read from a connection.
#[derive(Default)]
pub struct FrameCodec {
    /// The peer proved it may write here (a valid token): room for a whole
    /// frame is reserved as soon as its head arrives, so the socket reads
    /// straight into it. Until then the buffer grows only with the bytes
    /// that arrived.
    trusted: bool,
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Frame>> {
        if src.len() < FRAME_HEAD {
            return Ok(None);
        }
        let message = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        let data = u32::from_be_bytes([src[4], src[5], src[6], src[7]]) as usize;
        if message > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame message of {message} bytes is over the limit of {MAX_MESSAGE}"),
            ));
        }
        if data > MAX_DATA {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame data of {data} bytes is over the limit of {MAX_DATA}"),
            ));
        }
        let total = FRAME_HEAD + message + data;
        if src.len() < total {
            // Room for more of the frame, so the socket reads straight into
            // it; from an unproven peer growing with what arrived rather than
            // with what the frame claims (a lying or stalled peer must not
            // cost its claim).
            let target = if self.trusted {
                total
            } else {
                total.min(FIRST_READ.max(src.len() * 4))
            };
            if target > src.capacity() {
                src.reserve(target - src.len());
            }
            return Ok(None);
        }
        src.advance(FRAME_HEAD);
        let message = src.split_to(message).freeze();
        let data = src.split_to(data).freeze();
        Ok(Some(Frame { message, data }))
    }
}

/// Writes one frame; `data` goes to the socket from where it is (one
/// vectored write with the message), not through a buffer.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    message: &impl Message,
    data: Bytes,
) -> io::Result<()> {
    let len = message.encoded_len();
    let mut head = BytesMut::with_capacity(FRAME_HEAD + len);
    head.put_u32(len as u32);
    head.put_u32(data.len() as u32);
    message.encode(&mut head).map_err(io::Error::other)?;
    w.write_all_buf(&mut head.chain(data)).await?;
    // Over TLS a write can leave whole records in the session's buffer when
    // the socket is full; without a flush they would wait for the next
    // frame, which may never come (the last packet, an ack), and the
    // pipeline would stall until its timeout. On plain TCP this is free.
    w.flush().await
}

/// Socket options for a data-transfer connection. Acks are small and on the
/// critical path, so no Nagle delay. TCP keepalive (2 s idle, then 1 s
/// probes) and a 10 s user timeout find a dead host or a cut network while
/// a pipeline is idle or while its data waits for TCP acks, as the gRPC
/// channels' HTTP/2 pings do for calls (`net::lazy_channel`).
pub fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let sock = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(2))
        .with_interval(Duration::from_secs(1))
        .with_retries(3);
    let _ = sock.set_tcp_keepalive(&keepalive);
    #[cfg(target_os = "linux")]
    let _ = sock.set_tcp_user_timeout(Some(Duration::from_secs(10)));
}

fn lost(peer: &str, e: impl std::fmt::Display) -> tonic::Status {
    status(
        ErrorCode::Unavailable,
        format!("connection to datanode {peer}: {e}"),
    )
}

/// What an error reply carries: the status's code and message.
pub fn error_reply(st: &tonic::Status) -> pb::WriteBlockReply {
    pb::WriteBlockReply {
        msg: Some(Reply::Error(pb::TransferError {
            code: ErrorCode::from_status(st).name().to_string(),
            message: st.message().to_string(),
        })),
    }
}

fn error_status(e: pb::TransferError) -> tonic::Status {
    let code = ErrorCode::from_name(&e.code).unwrap_or(ErrorCode::Internal);
    status(code, e.message)
}

/// The datanode's side of a connection whose preamble was read: requests in.
pub struct RequestReader {
    frames: FramedRead<ReadHalf, FrameCodec>,
    peer: String,
}

impl RequestReader {
    /// Splits an accepted connection (its preamble already read) into the
    /// request reader and the half that replies go out on.
    pub fn accept(stream: TcpStream) -> (Self, WriteHalf) {
        tune(&stream);
        let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        let (rd, wr) = stream.into_split();
        (Self::new(Box::new(rd), peer), Box::new(wr))
    }

    /// The request reader of a connection already split (a TLS one), from
    /// `peer`.
    pub fn new(rd: ReadHalf, peer: String) -> Self {
        let frames = FramedRead::with_capacity(rd, FrameCodec::default(), FIRST_READ);
        Self { frames, peer }
    }

    /// The writer proved it may write (the pipeline is ready): its packets
    /// get whole-frame buffers from now on.
    pub fn trust(&mut self) {
        self.frames.decoder_mut().trusted = true;
    }

    /// The next request; `Ok(None)` when the writer closed the connection.
    /// A packet gets its data from the frame.
    pub async fn message(&mut self) -> Result<Option<pb::WriteBlockRequest>, tonic::Status> {
        let frame = match self.frames.next().await {
            None => return Ok(None),
            Some(Ok(f)) => f,
            Some(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(status(ErrorCode::InvalidArgument, e.to_string()));
            }
            Some(Err(e)) => {
                return Err(status(
                    ErrorCode::Unavailable,
                    format!("connection from {}: {e}", self.peer),
                ));
            }
        };
        let mut req = pb::WriteBlockRequest::decode(frame.message).map_err(|e| {
            status(
                ErrorCode::InvalidArgument,
                format!("undecodable write request: {e}"),
            )
        })?;
        match &mut req.msg {
            Some(Request::Packet(p)) => p.data = frame.data,
            _ if !frame.data.is_empty() => {
                return Err(status(ErrorCode::InvalidArgument, "only a packet carries data"));
            }
            _ => {}
        }
        Ok(Some(req))
    }
}

/// Sends one reply to the writer.
pub async fn send_reply<W: AsyncWrite + Unpin>(w: &mut W, reply: &pb::WriteBlockReply) -> io::Result<()> {
    write_frame(w, reply, Bytes::new()).await
}

/// The writer's side: acks (and a final error) from the first datanode.
/// Dropping it gives the pipeline up: the task sending its packets stops
/// too, even if it was stuck on a node that stopped reading.
pub struct AckReader {
    frames: FramedRead<ReadHalf, FrameCodec>,
    peer: String,
    timeout: Duration,
    _sender: AbortOnDropHandle<()>,
}

impl AckReader {
    async fn reply(&mut self) -> Result<Option<Reply>, tonic::Status> {
        let frame = match tokio::time::timeout(self.timeout, self.frames.next()).await {
            Err(_) => {
                return Err(lost(&self.peer, format!("no answer in {:?}", self.timeout)));
            }
            Ok(None) => return Ok(None),
            Ok(Some(Ok(f))) => f,
            Ok(Some(Err(e))) => return Err(lost(&self.peer, e)),
        };
        let reply = pb::WriteBlockReply::decode(frame.message)
            .map_err(|e| lost(&self.peer, format!("undecodable reply: {e}")))?;
        match reply.msg {
            Some(Reply::Error(e)) => Err(error_status(e)),
            other => Ok(other),
        }
    }

    /// The next ack; `Ok(None)` when the datanode closed the connection.
    pub async fn message(&mut self) -> Result<Option<pb::PipelineAck>, tonic::Status> {
        match self.reply().await? {
            None => Ok(None),
            Some(Reply::Ack(a)) => Ok(Some(a)),
            Some(_) => Err(lost(&self.peer, "expected an ack")),
        }
    }
}

/// Opens a write pipeline at the datanode `addr` (host:port): sends the
/// header and waits until that node and every node after it are ready.
/// Each answer is awaited `timeout` plus [`REPLY_TIMEOUT_PER_NODE`] for
/// every node after `addr`.
/// Packets sent on the returned channel go out in order (their data after
/// each frame's message); dropping it ends the stream, which tells the
/// datanodes to keep their half-written replicas for a recovery.
pub async fn open_pipeline(
    net: &Net,
    addr: &str,
    header: pb::WriteBlockHeader,
    window: usize,
    timeout: Duration,
) -> Result<(mpsc::Sender<pb::Packet>, AckReader), tonic::Status> {
    let stream = net.stream(addr, Dial::Data).await.map_err(|e| lost(addr, e))?;
    let (rd, mut wr) = stream.into_split();
    let timeout = timeout + REPLY_TIMEOUT_PER_NODE * header.downstream.len() as u32;
    let header = pb::WriteBlockRequest {
        msg: Some(Request::Header(header)),
    };
    wr.write_all(PREAMBLE).await.map_err(|e| lost(addr, e))?;
    write_frame(&mut wr, &header, Bytes::new())
        .await
        .map_err(|e| lost(addr, e))?;
    // Nothing reaches the sender before this returns, i.e. before ready.
    let (tx, mut rx) = mpsc::channel::<pb::Packet>(window.max(1));
    let peer = addr.to_string();
    let sender = tokio::spawn(async move {
        while let Some(mut p) = rx.recv().await {
            let data = std::mem::take(&mut p.data);
            let req = pb::WriteBlockRequest {
                msg: Some(Request::Packet(p)),
            };
            if let Err(e) = write_frame(&mut wr, &req, data).await {
                // The ack reader sees the connection fail too.
                tracing::debug!(dn = %peer, error = %e, "sending packets failed");
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut acks = AckReader {
        frames: FramedRead::with_capacity(rd, FrameCodec { trusted: true }, 64 << 10),
        peer: addr.to_string(),
        timeout,
        _sender: AbortOnDropHandle::new(sender),
    };
    match acks.reply().await? {
        Some(Reply::Ready(_)) => Ok((tx, acks)),
        None => Err(lost(addr, "closed before the pipeline was ready")),
        Some(_) => Err(lost(addr, "answered the header with an ack")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(message: &[u8], data: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u32(message.len() as u32);
        b.put_u32(data.len() as u32);
        b.put_slice(message);
        b.put_slice(data);
        b
    }

    #[test]
    fn frames_are_cut_whole_however_the_bytes_arrive() {
        let mut wire = frame(b"meta", b"0123456789");
        wire.extend_from_slice(&frame(b"", b"x"));
        let mut codec = FrameCodec::default();
        let mut src = BytesMut::new();
        let mut got = Vec::new();
        // One byte at a time: nothing is cut before its frame is complete.
        for b in wire.iter() {
            src.put_u8(*b);
            while let Some(f) = codec.decode(&mut src).unwrap() {
                got.push((f.message, f.data));
            }
        }
        assert_eq!(
            got,
            vec![
                (Bytes::from_static(b"meta"), Bytes::from_static(b"0123456789")),
                (Bytes::new(), Bytes::from_static(b"x")),
            ]
        );
        assert!(src.is_empty());
    }

    #[test]
    fn oversized_frames_are_refused_before_anything_is_buffered() {
        let mut codec = FrameCodec::default();
        let mut src = BytesMut::new();
        src.put_u32(0);
        src.put_u32((MAX_DATA + 1) as u32);
        let err = codec.decode(&mut src).err().expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("over the limit"), "{err}");
        assert!(src.capacity() < MAX_DATA);
        let mut src = BytesMut::new();
        src.put_u32((MAX_MESSAGE + 1) as u32);
        src.put_u32(0);
        assert!(codec.decode(&mut src).is_err());
    }

    #[test]
    fn a_frame_announcing_much_and_sending_little_reserves_little() {
        let mut codec = FrameCodec::default();
        let mut src = BytesMut::new();
        src.put_u32(16);
        src.put_u32(MAX_DATA as u32);
        src.put_slice(b"a few bytes");
        assert!(codec.decode(&mut src).unwrap().is_none());
        assert!(
            src.capacity() <= 2 * FIRST_READ,
            "reserved {} for 19 bytes",
            src.capacity()
        );
        // As bytes arrive the buffer grows with them, up to the whole frame.
        let mut sent = src.len();
        while sent < FRAME_HEAD + 16 + MAX_DATA {
            let n = (64 << 10).min(FRAME_HEAD + 16 + MAX_DATA - sent);
            src.extend_from_slice(&vec![0u8; n]);
            sent += n;
            let done = codec.decode(&mut src).unwrap();
            // Proportional to what arrived (growth doubles at most), never the claim.
            assert!(
                src.capacity() <= 8 * sent + 2 * FIRST_READ,
                "{} for {sent} bytes",
                src.capacity()
            );
            if let Some(f) = done {
                assert_eq!(f.data.len(), MAX_DATA);
                return;
            }
        }
        panic!("frame never completed");
    }

    #[test]
    fn an_error_reply_keeps_its_code() {
        let st = status(ErrorCode::Checksum, "block 7: bad chunk");
        let Some(Reply::Error(e)) = error_reply(&st).msg else {
            panic!("not an error reply");
        };
        let back = error_status(e);
        assert_eq!(ErrorCode::from_status(&back), ErrorCode::Checksum);
        assert_eq!(back.message(), "block 7: bad chunk");
    }

    /// A transport that takes `BUDGET` bytes, then is full until a timer
    /// frees it again (a socket whose reader is busy): it wakes the writer
    /// that found it full, as a socket does.
    #[cfg(feature = "certs")]
    struct Budgeted {
        inner: tokio::io::DuplexStream,
        left: usize,
        refill: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    }

    #[cfg(feature = "certs")]
    const BUDGET: usize = 40_000;

    #[cfg(feature = "certs")]
    impl tokio::io::AsyncRead for Budgeted {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    #[cfg(feature = "certs")]
    impl tokio::io::AsyncWrite for Budgeted {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            data: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            use std::task::Poll;
            if self.left == 0 {
                let timer = self
                    .refill
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(20))));
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.refill = None;
                self.left = BUDGET;
            }
            let n = data.len().min(self.left);
            match std::pin::Pin::new(&mut self.inner).poll_write(cx, &data[..n]) {
                Poll::Ready(Ok(k)) => {
                    self.left -= k;
                    Poll::Ready(Ok(k))
                }
                other => other,
            }
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A frame written over TLS into a transport that is full at the moment
    /// the frame's last records go out reaches the reader whole, with
    /// nothing written after it: they are in the TLS session's buffer, and
    /// the frame's flush sends them (without it, a block's last packet
    /// waited for the pipeline's 60 s reply timeout: granary-bench tls).
    #[cfg(feature = "certs")]
    #[tokio::test]
    async fn a_frame_over_tls_arrives_whole_when_nothing_follows() {
        use crate::tls::issue::Authority;
        use crate::tls::{ClientAuth, Peer, Port, Role, Tls, TlsFiles};
        use tokio::io::AsyncReadExt;

        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Authority::new("test").expect("ca");
        ca.write(dir.path()).expect("ca");
        ca.issue(
            &Peer::new(Role::Datanode, "d1").expect("peer"),
            &["127.0.0.1".into()],
        )
        .expect("issue")
        .write(dir.path(), "dn")
        .expect("write");
        let files = TlsFiles {
            cert: dir.path().join("dn.crt"),
            key: dir.path().join("dn.key"),
            ca: dir.path().join("ca.crt"),
        };
        let server = Tls::daemon(files.clone(), ClientAuth::Optional, Default::default()).expect("server");
        let client = Tls::client(files).expect("client");
        let (near, far) = tokio::io::duplex(1 << 20);
        let size = (1 << 20) + 12_345;
        let reader = tokio::spawn(async move {
            let acceptor = server.acceptor(Port::Rpc).expect("acceptor");
            let mut tls = acceptor.accept(far).await.expect("handshake");
            let mut got = vec![0u8; FRAME_HEAD + 2 + size];
            tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut got))
                .await
                .map(|r| r.map(|_| ()))
        });
        let transport = Budgeted {
            inner: near,
            left: BUDGET,
            refill: None,
        };
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let cfg = crate::tls::Material::load_client(client.files())
            .expect("material")
            .client_config(&[crate::tls::ALPN_DATA])
            .expect("config");
        let mut tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, transport)
            .await
            .expect("connect");
        let msg = pb::Packet {
            seqno: 1,
            ..Default::default()
        };
        write_frame(&mut tls, &msg, Bytes::from(vec![7u8; size]))
            .await
            .expect("write");
        // Nothing more is written, and the connection stays open.
        let got = reader.await.expect("reader");
        assert!(
            matches!(got, Ok(Ok(()))),
            "the frame's end never arrived: {got:?}"
        );
        drop(tls);
    }
}
