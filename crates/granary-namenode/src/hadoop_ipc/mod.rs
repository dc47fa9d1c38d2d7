//! HDFS's own RPC protocol (Hadoop IPC, version 9, protobuf engine) on the
//! namenode's RPC port, so unmodified HDFS clients (`hdfs://` in Hadoop's
//! Java client, Spark, `hdfs-native`) reach the namespace. A connection
//! that starts with `hrpc` is Hadoop IPC; any other is gRPC. Calls run on
//! the same client service as gRPC and WebHDFS (`calls`).
//!
//! Authentication is SIMPLE, as HDFS's default: the user is whom the
//! connection context names; a client that asks for SASL is told SIMPLE
//! suffices. Clusters in secure mode (TLS on the RPC port) take no Hadoop
//! IPC. Each connection runs up to [`MAX_IN_FLIGHT`] calls at once (Hadoop
//! clients multiplex threads over one connection) and answers each when it
//! is done, with its call id.

mod calls;
mod convert;
mod frame;
mod snapshot_calls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::rpc::audited::Audited;
use crate::state::NamenodeState;
use calls::{Call, CallError, Caller};
use frame::FrameError;
use granary_common::ErrorCode;
use granary_common::sniff::{Sniffed, sniff};
use granary_common::tls::Conn;
use granary_proto::hadoop::common as rpc;
use rpc::rpc_response_header_proto::{RpcErrorCodeProto, RpcStatusProto};

pub use frame::PREAMBLE;

/// The largest request frame taken (Hadoop's `ipc.maximum.data.length` is
/// 128 MiB for block reports; client calls are a few KiB): the same as
/// the gRPC client service takes.
pub const MAX_FRAME: usize = 4 << 20;
/// Calls of one connection running at once; further frames wait.
pub const MAX_IN_FLIGHT: usize = 32;

/// Takes the Hadoop IPC connections out of `conns` (those without TLS that
/// start with `hrpc`) and serves them; the rest (gRPC) come out of the
/// returned channel. A connection that sends nothing within `within` is
/// closed.
pub fn split(
    mut conns: mpsc::Receiver<Conn>,
    within: Duration,
    st: Arc<NamenodeState>,
    stop: CancellationToken,
) -> mpsc::Receiver<Conn> {
    let (grpc, rest) = mpsc::channel(64);
    let svc = Arc::new(Audited::new(st.clone()));
    tokio::spawn(async move {
        // Nothing here outlives the stop: a shutdown's namespace closes.
        while let Some(conn) = tokio::select! {
            c = conns.recv() => c,
            () = stop.cancelled() => None,
        } {
            let (grpc, st, svc, stop) = (grpc.clone(), st.clone(), svc.clone(), stop.clone());
            tokio::spawn(async move {
                let kind = match conn.plain_tcp() {
                    Some(tcp) => tokio::select! {
                        k = sniff(tcp, within, &[PREAMBLE]) => k,
                        () = stop.cancelled() => Sniffed::Closed,
                    },
                    None => Sniffed::Other,
                };
                match kind {
                    Sniffed::Preamble(_) => {
                        let remote = conn.info().remote;
                        if let Ok(plain) = conn.into_plain() {
                            serve(plain, remote, st, svc, stop).await;
                        }
                    }
                    Sniffed::Other => {
                        let _ = grpc.send(conn).await;
                    }
                    Sniffed::Closed => {}
                }
            });
        }
    });
    rest
}

/// Serves one Hadoop IPC connection until it closes, breaks the protocol,
/// or `stop`.
pub async fn serve<S>(
    stream: S,
    remote: Option<SocketAddr>,
    st: Arc<NamenodeState>,
    svc: Arc<Audited>,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = remote.map(|a| a.to_string()).unwrap_or_default();
    let (rd, wr) = tokio::io::split(stream);
    let (out, replies) = mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(write_replies(wr, replies));
    let mut conn = Connection {
        rd: BufReader::new(rd),
        out,
        remote,
        caller: None,
        st,
        svc,
        slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
    };
    let ended = tokio::select! {
        r = conn.run() => r,
        () = stop.cancelled() => Ok(()),
    };
    match ended {
        Ok(()) | Err(FrameError::Closed) => {}
        Err(e) => tracing::debug!(%peer, error = %e, "hadoop ipc connection ended"),
    }
    // Calls still running hold senders: the writer ends after their replies.
    drop(conn);
    let _ = writer.await;
}

/// Writes replies in the order calls finish.
async fn write_replies(mut wr: impl AsyncWrite + Unpin, mut replies: mpsc::Receiver<Vec<u8>>) {
    while let Some(r) = replies.recv().await {
        if wr.write_all(&r).await.is_err() {
            return;
        }
        // Batch what is ready into one flush.
        while let Ok(more) = replies.try_recv() {
            if wr.write_all(&more).await.is_err() {
                return;
            }
        }
        if wr.flush().await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

struct Connection<R> {
    rd: BufReader<R>,
    out: mpsc::Sender<Vec<u8>>,
    remote: Option<SocketAddr>,
    /// Set by the connection context, the first frame after any SASL.
    caller: Option<Arc<Caller>>,
    st: Arc<NamenodeState>,
    svc: Arc<Audited>,
    slots: Arc<Semaphore>,
}

impl<R: AsyncRead + Unpin> Connection<R> {
    async fn run(&mut self) -> Result<(), FrameError> {
        let header = frame::read_header(&mut self.rd).await?;
        if header.auth != frame::AUTH_NONE && header.auth != frame::AUTH_SASL {
            return Err(FrameError::Malformed(format!(
                "auth protocol {} is neither none (0) nor SASL (-33)",
                header.auth as i8
            )));
        }
        loop {
            let mut f = frame::read_frame(&mut self.rd, MAX_FRAME).await?;
            let hdr: rpc::RpcRequestHeaderProto = frame::next(&mut f, "RpcRequestHeaderProto")?;
            match hdr.call_id {
                frame::SASL_CALL_ID => self.sasl(&hdr, f).await?,
                frame::CONTEXT_CALL_ID => self.context(&hdr, f)?,
                frame::PING_CALL_ID => {}
                id if id >= 0 => self.call(hdr, f).await?,
                id => return Err(FrameError::Malformed(format!("call id {id} means nothing"))),
            }
        }
    }

    async fn send(&self, reply: Vec<u8>) -> Result<(), FrameError> {
        self.out.send(reply).await.map_err(|_| FrameError::Closed)
    }

    /// A SASL negotiation: this namenode takes SIMPLE authentication, so
    /// the answer is SUCCESS at once (as Hadoop's SIMPLE-only servers do);
    /// the client then sends its connection context.
    async fn sasl(&mut self, hdr: &rpc::RpcRequestHeaderProto, mut f: Bytes) -> Result<(), FrameError> {
        let msg: rpc::RpcSaslProto = frame::next(&mut f, "RpcSaslProto")?;
        use rpc::rpc_sasl_proto::SaslState;
        if msg.state != SaslState::Negotiate as i32 || self.caller.is_some() {
            self.send(frame::error(
                hdr,
                RpcStatusProto::Fatal,
                RpcErrorCodeProto::FatalUnauthorized,
                "org.apache.hadoop.security.AccessControlException",
                "this namenode takes SIMPLE authentication only; no SASL exchange beyond NEGOTIATE",
            ))
            .await?;
            return Err(FrameError::Malformed("unexpected SASL message".into()));
        }
        let ok = rpc::RpcSaslProto {
            state: SaslState::Success as i32,
            ..Default::default()
        };
        let h = frame::header(hdr, RpcStatusProto::Success);
        self.send(frame::response(&h, Some(&ok.encode_length_delimited_to_vec())))
            .await
    }

    /// The connection context: who calls, over which protocol.
    fn context(&mut self, _hdr: &rpc::RpcRequestHeaderProto, mut f: Bytes) -> Result<(), FrameError> {
        let ctx: rpc::IpcConnectionContextProto = frame::next(&mut f, "IpcConnectionContextProto")?;
        let info = ctx.user_info.unwrap_or_default();
        let user = info
            .effective_user
            .filter(|u| !u.is_empty())
            .ok_or_else(|| FrameError::Malformed("the connection context names no user".into()))?;
        if let Some(p) = ctx.protocol.as_deref()
            && p != calls::CLIENT_PROTOCOL
        {
            tracing::debug!(protocol = p, "hadoop ipc connection for another protocol");
        }
        self.caller = Some(Arc::new(Caller {
            user,
            real_user: info.real_user.filter(|u| !u.is_empty()),
            remote: self.remote,
        }));
        Ok(())
    }

    /// A call: run on its own task (up to MAX_IN_FLIGHT at once), answered
    /// when it is done.
    async fn call(&mut self, hdr: rpc::RpcRequestHeaderProto, mut f: Bytes) -> Result<(), FrameError> {
        let Some(caller) = self.caller.clone() else {
            self.send(frame::error(
                &hdr,
                RpcStatusProto::Fatal,
                RpcErrorCodeProto::FatalInvalidRpcHeader,
                "org.apache.hadoop.ipc.IpcException",
                "a call before the connection context",
            ))
            .await?;
            return Err(FrameError::Malformed(
                "a call before the connection context".into(),
            ));
        };
        let method: rpc::RequestHeaderProto = frame::next(&mut f, "RequestHeaderProto")?;
        if method.declaring_class_protocol_name != calls::CLIENT_PROTOCOL {
            return self
                .send(frame::error(
                    &hdr,
                    RpcStatusProto::Error,
                    RpcErrorCodeProto::ErrorNoSuchProtocol,
                    "org.apache.hadoop.ipc.RpcNoSuchProtocolException",
                    &format!(
                        "unknown protocol: {} (this namenode serves {})",
                        method.declaring_class_protocol_name,
                        calls::CLIENT_PROTOCOL
                    ),
                ))
                .await;
        }
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| FrameError::Closed)?;
        let (st, svc, out) = (self.st.clone(), self.svc.clone(), self.out.clone());
        tokio::spawn(async move {
            let c = Call {
                svc: &svc,
                st: &st,
                caller: &caller,
                header: &hdr,
            };
            let reply = match c.run(&method.method_name, f).await {
                Ok(body) => frame::response(&frame::header(&hdr, RpcStatusProto::Success), Some(&body)),
                Err(e) => failure(&hdr, &method.method_name, e),
            };
            let _ = out.send(reply).await;
            drop(slot);
        });
        Ok(())
    }
}

/// A failed call's response, naming the Java exception HDFS would throw.
fn failure(hdr: &rpc::RpcRequestHeaderProto, method: &str, e: CallError) -> Vec<u8> {
    match e {
        CallError::Status(st) => {
            let code = ErrorCode::from_status(&st);
            tracing::debug!(method, code = code.name(), error = %st.message(), "hadoop ipc call refused");
            frame::error(
                hdr,
                RpcStatusProto::Error,
                RpcErrorCodeProto::ErrorApplication,
                code.java_class_name(),
                st.message(),
            )
        }
        CallError::NoSuchMethod(m) => frame::error(
            hdr,
            RpcStatusProto::Error,
            RpcErrorCodeProto::ErrorNoSuchMethod,
            "org.apache.hadoop.ipc.RpcNoSuchMethodException",
            &format!(
                "Unknown method {m} called on {} protocol (Granary does not serve it yet)",
                calls::CLIENT_PROTOCOL
            ),
        ),
        CallError::Malformed(err) => frame::error(
            hdr,
            RpcStatusProto::Error,
            RpcErrorCodeProto::ErrorRpcServer,
            "java.io.IOException",
            &format!("{method}: {err}"),
        ),
    }
}
