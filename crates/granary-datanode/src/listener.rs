//! The RPC port's accept loop. Write pipelines and gRPC (block reads) share
//! the port: a connection that starts with the data-transfer preamble is a
//! write pipeline, one that starts with HDFS's DataTransferProtocol version
//! is an HDFS client's (crate::hdfs_transfer), any other (HTTP/2 starts
//! with "PRI * HTTP/2.0") goes to the gRPC server. Over TLS the handshake's ALPN says which it is. Every
//! connection counts against the port's connection limit and must send its
//! first bytes (or finish its TLS handshake) within the handshake timeout.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::context::DatanodeContext;
use crate::hdfs_transfer::VERSION as HDFS_VERSION;
use granary_common::conn_guard::Gate;
use granary_common::data_transfer::{PREAMBLE, RequestReader};
use granary_common::sniff::{Sniffed, sniff};
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
                    Some(tcp) => sniff(tcp, handshake, &[&PREAMBLE[..], &HDFS_VERSION[..]]).await,
                    None if conn.is_data() => Sniffed::Preamble(0),
                    None => Sniffed::Other,
                };
                match kind {
                    Sniffed::Preamble(0) => serve_pipeline(ctx, conn, handshake, stop).await,
                    Sniffed::Preamble(_) => {
                        let peer = conn.info().remote.map(|a| a.to_string()).unwrap_or_default();
                        if let Ok(plain) = conn.into_plain() {
                            crate::hdfs_transfer::serve(ctx, plain, peer, stop).await;
                        }
                    }
                    Sniffed::Other => {
                        let _ = grpc.send(Ok(conn)).await;
                    }
                    Sniffed::Closed => {}
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
            // sniff saw the whole preamble arrive.
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
