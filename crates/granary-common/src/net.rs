//! Connections to peers: gRPC channels (cached per address) and write
//! pipeline streams, in the clear or over TLS as this process's [`Net`]
//! says.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::tls::{Dial, Tls};

/// Largest HTTP/2 frame a datanode or a peer's channel accepts: a whole
/// read packet (up to 1 MiB) in one frame rather than h2's default 16 KiB.
pub const MAX_FRAME_SIZE: u32 = (1 << 20) + (64 << 10);

/// How long a connection may take to open (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How this process reaches others: in the clear, or over TLS with its
/// certificate (cheap to clone).
#[derive(Clone, Default, Debug)]
pub struct Net {
    tls: Option<Arc<Tls>>,
}

/// The endpoint for `addr`, `host:port` or a URL (`http://` even over TLS:
/// [`Net`] opens the TLS itself).
pub fn endpoint(addr: &str) -> Result<Endpoint, String> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Endpoint::from_shared(uri).map_err(|e| format!("invalid address {addr:?}: {e}"))
}

impl Net {
    pub fn new(tls: Option<Arc<Tls>>) -> Self {
        Self { tls }
    }

    pub fn tls(&self) -> Option<&Arc<Tls>> {
        self.tls.as_ref()
    }

    /// A channel on `ep` that connects at its first call.
    pub fn lazy(&self, ep: &Endpoint) -> Channel {
        match &self.tls {
            None => ep.connect_lazy(),
            Some(tls) => ep.connect_with_connector_lazy(grpc_connector(tls.clone())),
        }
    }

    /// A channel on `ep`, connected now.
    pub async fn connect(&self, ep: &Endpoint) -> Result<Channel, tonic::transport::Error> {
        match &self.tls {
            None => ep.connect().await,
            Some(tls) => ep.connect_with_connector(grpc_connector(tls.clone())).await,
        }
    }

    /// A lazily connecting channel to a peer daemon at `host:port`.
    pub fn lazy_channel(&self, addr: &str) -> Result<Channel, String> {
        let ep = endpoint(addr)?;
        // HTTP/2 pings find a connection a partition silently broke within
        // seconds; without them calls queue on it until TCP's retransmissions
        // give up (minutes), even after the network is back.
        let ep = ep
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(3))
            .keep_alive_while_idle(true)
            .tcp_nodelay(true)
            // Fixed large flow-control windows, not hyper's adaptive window:
            // adaptive mode ignores these sizes and, on loopback, kept block
            // reads at 400-480 MiB/s; fixed windows gave 970-1160. Limits, not
            // allocations (docs/performance.md).
            .initial_stream_window_size(16 << 20)
            .initial_connection_window_size(64 << 20)
            .max_frame_size(MAX_FRAME_SIZE);
        Ok(self.lazy(&ep))
    }

    /// A connection to `addr` (`host:port`) for `dial`, within
    /// [`CONNECT_TIMEOUT`] (TCP and TLS handshake together).
    pub async fn stream(&self, addr: &str, dial: Dial) -> io::Result<Stream> {
        let open = async {
            let tcp = TcpStream::connect(addr).await?;
            match dial {
                Dial::Data => crate::data_transfer::tune(&tcp),
                Dial::Grpc => tune(&tcp),
            }
            match &self.tls {
                None => Ok(Stream::Plain(tcp)),
                Some(tls) => Ok(Stream::Tls(Box::new(tls.connect(dial, addr, tcp).await?))),
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, open).await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection in {} s", CONNECT_TIMEOUT.as_secs()),
            )
        })?
    }
}

/// TCP_NODELAY (small acks and replies go out at once) and a keepalive.
fn tune(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
    let _ = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive);
}

type Connecting = Pin<Box<dyn std::future::Future<Output = io::Result<TokioIo<Traced<TlsTcp>>>> + Send>>;
type TlsTcp = tokio_rustls::client::TlsStream<TcpStream>;

/// Opens gRPC connections over TLS for tonic.
fn grpc_connector(
    tls: Arc<Tls>,
) -> impl tower::Service<Uri, Response = TokioIo<Traced<TlsTcp>>, Error = io::Error, Future = Connecting>
+ Send
+ Clone
+ 'static {
    tower::service_fn(move |uri: Uri| {
        let tls = tls.clone();
        Box::pin(async move {
            let addr = uri
                .authority()
                .map(|a| a.to_string())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} has no host")))?;
            let tcp = TcpStream::connect(&addr).await?;
            tune(&tcp);
            let stream = tls.connect(Dial::Grpc, &addr, tcp).await.inspect_err(|e| {
                tracing::warn!(%addr, error = %e, "tls connection failed");
            })?;
            Ok(TokioIo::new(Traced {
                inner: stream,
                addr,
                told: false,
                answered: false,
            }))
        }) as Connecting
    })
}

/// A gRPC connection over TLS that logs its first failure: tonic's status
/// for a broken connection says only "transport error", and a server that
/// refuses this process's certificate says why in an alert read after the
/// handshake.
pub struct Traced<S> {
    inner: S,
    addr: String,
    told: bool,
    answered: bool,
}

impl<S> Traced<S> {
    fn tell<T>(&mut self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(e)) = &r
            && !self.told
        {
            self.told = true;
            tracing::warn!(addr = %self.addr, error = %e, "tls connection failed");
        }
        r
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Traced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            if buf.filled().len() > before {
                self.answered = true;
            } else if !self.answered && !self.told {
                self.told = true;
                tracing::warn!(
                    addr = %self.addr,
                    "tls connection closed before the server answered: does it accept this process's certificate?"
                );
            }
        }
        self.tell(r)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Traced<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        self.tell(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.tell(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.tell(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection opened by [`Net::stream`].
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsTcp>),
}

/// A connection's halves, to read and write from separate tasks.
pub type ReadHalf = Box<dyn AsyncRead + Send + Sync + Unpin>;
pub type WriteHalf = Box<dyn AsyncWrite + Send + Sync + Unpin>;

impl Stream {
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Self::Plain(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Self::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (Box::new(r), Box::new(w))
            }
        }
    }
}

/// One channel per peer address, shared by every call to that peer.
#[derive(Default)]
pub struct ChannelPool {
    net: Net,
    channels: Mutex<HashMap<String, Channel>>,
}

impl ChannelPool {
    pub fn new(net: Net) -> Self {
        Self {
            net,
            channels: Default::default(),
        }
    }

    pub fn get(&self, addr: &str) -> Result<Channel, String> {
        let mut m = self.channels.lock();
        if let Some(c) = m.get(addr) {
            return Ok(c.clone());
        }
        let c = self.net.lazy_channel(addr)?;
        m.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Forgets a peer's channel so the next call reconnects.
    pub fn evict(&self, addr: &str) {
        self.channels.lock().remove(addr);
    }
}

/// The host part of `host:port` (all of it when there is no port).
pub fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

/// The port of `host:port`; 0 when there is none.
pub fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(0)
}
