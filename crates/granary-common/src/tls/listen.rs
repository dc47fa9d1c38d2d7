//! A daemon's listeners with or without TLS: connections are admitted by
//! the port's [`Gate`], their TLS handshakes run each in its own task under
//! the handshake timeout (a client that stalls holds no one else up), and
//! what comes out is a [`Conn`] that knows who is at the other end.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::{ALPN_DATA, Peer, Port, Tls};
use crate::conn_guard::{Gate, Guarded};

/// Who is at the other end of a connection: its address and, over TLS with
/// a client certificate of the cluster CA, the name the certificate gives.
/// gRPC handlers find it among a request's extensions.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    pub remote: Option<SocketAddr>,
    /// The verified certificate's holder; None without TLS or a certificate.
    pub peer: Option<Peer>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The protocol agreed in the TLS handshake (ALPN).
    pub alpn: Option<Vec<u8>>,
}

impl ConnInfo {
    /// The connection a gRPC request came on.
    pub fn of<T>(req: &tonic::Request<T>) -> Option<&ConnInfo> {
        req.extensions().get::<ConnInfo>()
    }

    /// The user a client certificate names (None: no certificate, or a
    /// daemon's).
    pub fn user(&self) -> Option<&str> {
        self.peer
            .as_ref()
            .filter(|p| p.role == super::Role::User)
            .map(|p| p.name.as_str())
    }

    /// The caller's address, if known.
    pub fn remote_of<T>(req: &tonic::Request<T>) -> Option<SocketAddr> {
        Self::of(req).and_then(|c| c.remote)
    }
}

enum Io {
    Plain(Guarded<TcpStream>),
    Tls(Box<TlsStream<Guarded<TcpStream>>>),
}

/// An accepted connection, after its TLS handshake if the port has TLS.
pub struct Conn {
    io: Io,
    info: ConnInfo,
}

impl Conn {
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    /// Whether the client asked for a write pipeline in its TLS handshake.
    pub fn is_data(&self) -> bool {
        self.info.alpn.as_deref() == Some(ALPN_DATA)
    }

    /// The TCP stream of a connection without TLS (to peek at its first
    /// bytes), None over TLS.
    pub fn plain_tcp(&self) -> Option<&TcpStream> {
        match &self.io {
            Io::Plain(g) => Some(g.get_ref()),
            Io::Tls(_) => None,
        }
    }

    /// The connection without TLS, or itself back.
    pub fn into_plain(self) -> Result<Guarded<TcpStream>, Box<Self>> {
        match self.io {
            Io::Plain(g) => Ok(g),
            io => Err(Box::new(Self { io, info: self.info })),
        }
    }

    /// Leaves timeouts to the protocol spoken on the connection (see
    /// [`Guarded::stop_timing`]).
    pub fn stop_timing(&mut self) {
        match &mut self.io {
            Io::Plain(g) => g.stop_timing(),
            Io::Tls(t) => t.get_mut().0.stop_timing(),
        }
    }

    /// Accepts `conn` as `port` does: a TLS handshake within the gate's
    /// handshake timeout when `tls` is set, nothing otherwise.
    pub async fn accept(
        tls: Option<&Tls>,
        port: Port,
        conn: Guarded<TcpStream>,
        remote: SocketAddr,
        gate: &Gate,
    ) -> io::Result<Self> {
        let Some(acceptor) = tls.and_then(|t| t.acceptor(port)) else {
            return Ok(Self {
                io: Io::Plain(conn),
                info: ConnInfo {
                    remote: Some(remote),
                    ..Default::default()
                },
            });
        };
        let within = gate.limits().handshake_timeout();
        let stream = tokio::time::timeout(within, acceptor.accept(conn))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no TLS handshake within {} ms", within.as_millis()),
                )
            })??;
        let (_, session) = stream.get_ref();
        // The verifier already checked the chain against the cluster CA; a
        // certificate that names no granary identity is no one.
        let peer = session
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| Peer::of_certificate(c).ok())
            // A user is who `[tls] user_rules` make of the certificate's name.
            .and_then(|p| match p.role {
                super::Role::User => tls
                    .and_then(|t| t.user_of(&p.name))
                    .map(|name| Peer { name, ..p }),
                _ => Some(p),
            });
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        Ok(Self {
            io: Io::Tls(Box::new(stream)),
            info: ConnInfo {
                remote: Some(remote),
                peer,
                tls: true,
                alpn,
            },
        })
    }
}

/// Accepts connections on `listener` until `stop`, each admitted by `gate`
/// and, with `tls`, after its handshake (a failed one is logged and
/// closed). Handshakes run in their own tasks.
pub fn listen(
    listener: TcpListener,
    gate: Gate,
    tls: Option<Arc<Tls>>,
    port: Port,
    stop: CancellationToken,
) -> mpsc::Receiver<Conn> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (conn, remote) = tokio::select! {
                _ = stop.cancelled() => return,
                _ = tx.closed() => return,
                c = gate.accept(&listener) => c,
            };
            let Some(tls) = tls.clone() else {
                let conn = Conn::accept(None, port, conn, remote, &gate).await;
                if let Ok(conn) = conn
                    && tx.send(conn).await.is_err()
                {
                    return;
                }
                continue;
            };
            let (tx, gate) = (tx.clone(), gate.clone());
            tokio::spawn(async move {
                match Conn::accept(Some(&tls), port, conn, remote, &gate).await {
                    Ok(conn) => {
                        let _ = tx.send(conn).await;
                    }
                    Err(e) => {
                        tracing::debug!(%remote, ?port, error = %e, "tls handshake failed");
                    }
                }
            });
        }
    });
    rx
}

/// An HTTP port's connections, for `axum::serve`.
pub struct ConnListener {
    rx: mpsc::Receiver<Conn>,
    local: SocketAddr,
}

impl ConnListener {
    pub fn new(
        listener: TcpListener,
        gate: Gate,
        tls: Option<Arc<Tls>>,
        stop: CancellationToken,
    ) -> io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(Self {
            rx: listen(listener, gate, tls, Port::Http, stop),
            local,
        })
    }
}

impl axum::serve::Listener for ConnListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => {
                let addr = conn.info.remote.unwrap_or(self.local);
                (conn, addr)
            }
            // The accept loop stopped (shutdown): wait for the server's
            // graceful shutdown to stop calling.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, data),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// `listen`'s connections as tonic's `serve_with_incoming` takes them.
pub fn incoming(rx: mpsc::Receiver<Conn>) -> impl futures::Stream<Item = io::Result<Conn>> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        let conn = rx.recv().await?;
        Some((Ok(conn), rx))
    })
}

/// Reads the TLS files again on every SIGHUP until `stop`: new connections
/// get the rotated certificate; a failed reload keeps the old one, logged.
pub fn reload_on_sighup(tls: Arc<Tls>, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot watch SIGHUP: certificates reload only with a restart");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                got = hup.recv() => if got.is_none() { return },
            }
            match tls.reload() {
                Ok(()) => tracing::info!(cert = %tls.files().cert.display(), "tls certificate reloaded"),
                Err(e) => tracing::error!(error = %e, "tls reload failed; keeping the certificate in use"),
            }
        }
    });
}
