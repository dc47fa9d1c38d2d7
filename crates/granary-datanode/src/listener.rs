//! The RPC port's accept loop. Write pipelines and gRPC (block reads) share
//! the port: a connection that starts with the data-transfer preamble is a
//! write pipeline, any other (HTTP/2 starts with "PRI * HTTP/2.0") goes to
//! the gRPC server. Over TLS the handshake's ALPN says which it is. Every
//! connection counts against the port's connection limit and must send its
//! first bytes (or finish its TLS handshake) within the handshake timeout.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::context::DatanodeContext;
use granary_common::conn_guard::Gate;
use granary_common::data_transfer::{PREAMBLE, RequestReader};
use granary_common::tls::{Conn, Port, Tls};

/// Accepts connections until `stop`; serves write pipelines itself and
/// returns the stream of gRPC connections for tonic. With `tls`, every
/// connection is TLS and says what it is in its handshake (ALPN: a write
/// pipeline or h2); without, its first bytes say.
pub fn split(
    listener: TcpListener,
    gate: Gate,
    tls: Option<Arc<Tls>>,
    ctx: Arc<DatanodeContext>,
    stop: CancellationToken,
) -> ReceiverStream<io::Result<Conn>> {
    let handshake = gate.limits().handshake_timeout();
    let mut conns = granary_common::tls::listen(listener, gate, tls, Port::Rpc, stop.clone());
    let (grpc, incoming) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(conn) = conns.recv().await {
            let (grpc, ctx, stop) = (grpc.clone(), ctx.clone(), stop.clone());
            tokio::spawn(async move {
                let kind = match conn.plain_tcp() {
                    Some(tcp) => first_bytes(tcp, handshake).await,
                    None if conn.is_data() => Kind::WritePipeline,
                    None => Kind::Grpc,
                };
                match kind {
                    Kind::WritePipeline => serve_pipeline(ctx, conn, handshake, stop).await,
                    Kind::Grpc => {
                        let _ = grpc.send(Ok(conn)).await;
                    }
                    Kind::Closed => {}
                }
            });
        }
    });
    ReceiverStream::new(incoming)
}

/// Reads a write pipeline's preamble and serves it. The pipeline keeps time
/// itself (its socket timeout); the connection keeps its slot until it ends.
async fn serve_pipeline(ctx: Arc<DatanodeContext>, conn: Conn, within: Duration, stop: CancellationToken) {
    let peer = conn.info().remote.map(|a| a.to_string()).unwrap_or_default();
    let mut preamble = [0u8; PREAMBLE.len()];
    match conn.into_plain() {
        Ok(guarded) => {
            let (mut stream, slot) = guarded.into_parts();
            // first_bytes saw the whole preamble arrive.
            if stream.read_exact(&mut preamble).await.is_ok() {
                let (requests, replies) = RequestReader::accept(stream);
                crate::data_transfer::serve_write(ctx, requests, replies, None, stop).await;
            }
            drop(slot);
        }
        Err(mut conn) => {
            conn.stop_timing();
            match tokio::time::timeout(within, conn.read_exact(&mut preamble)).await {
                Ok(Ok(_)) if preamble == *PREAMBLE => {}
                _ => {
                    tracing::debug!(%peer, "write pipeline over tls without its preamble; closed");
                    return;
                }
            }
            let user = conn.info().user().map(str::to_string);
            let (rd, wr) = tokio::io::split(*conn);
            let requests = RequestReader::new(Box::new(rd), peer);
            crate::data_transfer::serve_write(ctx, requests, Box::new(wr), user, stop).await;
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    WritePipeline,
    Grpc,
    Closed,
}

/// Looks at a connection's first bytes without taking them. A connection
/// that sends nothing, or only part of the preamble, within `deadline` is
/// closed (`peek` keeps returning bytes already received after the peer's
/// FIN, so the deadline is checked on every turn, not only while waiting).
async fn first_bytes(stream: &TcpStream, within: Duration) -> Kind {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; PREAMBLE.len()];
    let mut pause = Duration::from_millis(1);
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Err(_) => return Kind::Closed,
            Ok(Ok(0) | Err(_)) => return Kind::Closed,
            Ok(Ok(n)) => n,
        };
        if buf[..n] != PREAMBLE[..n] {
            return Kind::Grpc;
        }
        if n == PREAMBLE.len() {
            return Kind::WritePipeline;
        }
        // Part of the preamble so far; peek returns at once while bytes are
        // waiting, so give the rest a moment (backing off, up to 50 ms).
        if tokio::time::Instant::now() >= deadline {
            return Kind::Closed;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    #[tokio::test]
    async fn a_partial_preamble_then_silence_or_close_is_closed_at_the_deadline() {
        // One byte of the preamble, then the peer closes: peek keeps
        // returning that byte; the deadline must still end the wait.
        let (mut c, s) = pair().await;
        c.write_all(&PREAMBLE[..1]).await.unwrap();
        c.shutdown().await.unwrap();
        drop(c);
        let t = std::time::Instant::now();
        let kind = first_bytes(&s, Duration::from_millis(300)).await;
        assert_eq!(kind, Kind::Closed);
        assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
        // Silence from the start is closed too, not handed on.
        let (_c, s) = pair().await;
        assert_eq!(first_bytes(&s, Duration::from_millis(200)).await, Kind::Closed);
        // The whole preamble is a pipeline; anything else is gRPC.
        let (mut c, s) = pair().await;
        c.write_all(PREAMBLE).await.unwrap();
        assert_eq!(first_bytes(&s, Duration::from_secs(5)).await, Kind::WritePipeline);
        let (mut c, s) = pair().await;
        c.write_all(b"PRI * HTTP/2.0").await.unwrap();
        assert_eq!(first_bytes(&s, Duration::from_secs(5)).await, Kind::Grpc);
    }
}
