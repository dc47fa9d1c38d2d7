//! The RPC port's accept loop. Write pipelines and gRPC (block reads) share
//! the port: a connection that starts with the data-transfer preamble is a
//! write pipeline, any other (HTTP/2 starts with "PRI * HTTP/2.0") goes to
//! the gRPC server.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::context::DatanodeContext;
use granary_common::data_transfer::PREAMBLE;

/// How long a new connection may take to send its first bytes before it is
/// handed to the gRPC server, which times it out as it would any connection.
const FIRST_BYTES: Duration = Duration::from_secs(10);

/// Accepts connections until `stop`; serves write pipelines itself and
/// returns the stream of gRPC connections for tonic.
pub fn split(
    listener: TcpListener,
    ctx: Arc<DatanodeContext>,
    stop: CancellationToken,
) -> ReceiverStream<io::Result<TcpStream>> {
    let (grpc, incoming) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // Out of file descriptors, say: do not spin on it.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (grpc, ctx, stop) = (grpc.clone(), ctx.clone(), stop.clone());
            tokio::spawn(async move {
                match first_bytes(&stream).await {
                    Kind::WritePipeline => {
                        let mut stream = stream;
                        let mut preamble = [0u8; PREAMBLE.len()];
                        if stream.read_exact(&mut preamble).await.is_ok() {
                            crate::data_transfer::serve_write(ctx, stream, stop).await;
                        }
                    }
                    Kind::Grpc => {
                        let _ = stream.set_nodelay(true);
                        let _ = grpc.send(Ok(stream)).await;
                    }
                    Kind::Closed => {}
                }
            });
        }
    });
    ReceiverStream::new(incoming)
}

enum Kind {
    WritePipeline,
    Grpc,
    Closed,
}

/// Looks at a connection's first bytes without taking them.
async fn first_bytes(stream: &TcpStream) -> Kind {
    let deadline = tokio::time::Instant::now() + FIRST_BYTES;
    let mut buf = [0u8; PREAMBLE.len()];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Err(_) => return Kind::Grpc,
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
        // waiting, so give the rest a moment.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
