//! Limits on the connections a daemon accepts, for its gRPC and HTTP
//! listeners: at most `max_connections` at once (more are closed at once),
//! a connection must send its first bytes within `handshake_timeout`, and
//! one with no bytes either way for `idle_timeout` is closed. Granary's own
//! clients ping every few seconds, so only dead or hostile peers go quiet.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Connection limits of a daemon's listeners (each listener has its own
/// `max_connections`). The `[limits]` section of both daemons' TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Connections a listener holds at once; more are closed on arrival.
    pub max_connections: usize,
    /// A connection that sends nothing this long after connecting is closed.
    pub handshake_timeout_ms: u64,
    /// A connection with no bytes either way this long is closed.
    pub idle_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            handshake_timeout_ms: 10_000,
            idle_timeout_ms: 120_000,
        }
    }
}

impl Limits {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 || self.handshake_timeout_ms == 0 || self.idle_timeout_ms == 0 {
            return Err(
                "limits: max_connections, handshake_timeout_ms and idle_timeout_ms must be positive".into(),
            );
        }
        Ok(())
    }
}

/// Counts connections a listener refused (for logs).
#[derive(Debug, Default)]
pub struct Refused(AtomicU64);

impl Refused {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ListenerLabel {
    listener: String,
}

/// `granary_connections_open{listener}` and
/// `granary_connections_refused_total{listener}` of a daemon's listeners.
#[derive(Default)]
pub struct ConnectionMetrics {
    open: prometheus_client::metrics::family::Family<ListenerLabel, prometheus_client::metrics::gauge::Gauge>,
    refused: prometheus_client::metrics::family::Family<
        ListenerLabel,
        prometheus_client::metrics::counter::Counter,
    >,
}

impl ConnectionMetrics {
    pub fn register(r: &mut prometheus_client::registry::Registry) -> Arc<Self> {
        let m = Self::default();
        r.register(
            "granary_connections_open",
            "Connections held open, by listener (rpc, http)",
            m.open.clone(),
        );
        r.register(
            "granary_connections_refused",
            "Connections closed on arrival because the listener held max_connections",
            m.refused.clone(),
        );
        Arc::new(m)
    }

    fn label(name: &str) -> ListenerLabel {
        ListenerLabel {
            listener: name.into(),
        }
    }
}

/// Counts a connection as open until dropped.
struct OpenCount {
    metrics: Arc<ConnectionMetrics>,
    name: &'static str,
}

impl Drop for OpenCount {
    fn drop(&mut self) {
        self.metrics
            .open
            .get_or_create(&ConnectionMetrics::label(self.name))
            .dec();
    }
}

/// A connection counted against its listener's limit until dropped, closed
/// by its handshake and idle timeouts.
pub struct Guarded<S> {
    inner: S,
    _permit: (OwnedSemaphorePermit, OpenCount),
    timer: Pin<Box<Sleep>>,
    idle: Duration,
    started: bool,
    timing: bool,
}

impl<S> Guarded<S> {
    fn new(inner: S, permit: (OwnedSemaphorePermit, OpenCount), limits: &Limits) -> Self {
        Self {
            inner,
            _permit: permit,
            timer: Box::pin(tokio::time::sleep(limits.handshake_timeout())),
            idle: limits.idle_timeout(),
            started: false,
            timing: true,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The connection without its timeouts, and its slot (held until dropped),
    /// for a protocol that keeps time itself.
    pub fn into_parts(self) -> (S, Slot) {
        (self.inner, Slot(self._permit))
    }

    /// Leaves timing to the protocol spoken on the connection (a write
    /// pipeline keeps time itself), keeping its slot: for a connection
    /// wrapped in TLS, which [`into_parts`](Self::into_parts) cannot unwrap.
    pub fn stop_timing(&mut self) {
        self.timing = false;
    }

    fn activity(&mut self) {
        self.started = true;
        let next = Instant::now() + self.idle;
        // Resetting a timer costs a timer-wheel update: only when it moved
        // by more than an eighth of the idle timeout.
        if next.saturating_duration_since(self.timer.deadline()) > self.idle / 8 {
            self.timer.as_mut().reset(next);
        }
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if self.timing && self.timer.as_mut().poll(cx).is_ready() {
            let what = if self.started {
                format!("no bytes for {} s", self.idle.as_secs())
            } else {
                "nothing sent after connecting".to_string()
            };
            return Some(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connection closed: {what}"),
            ));
        }
        None
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.activity();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.expired(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
        }
    }
}

impl<S> Guarded<S> {
    /// A write's outcome, counting bytes written as activity and the timer
    /// while the peer does not take any.
    fn wrote(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                if n > 0 && self.started {
                    self.activity();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => match self.expired(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        self.wrote(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Guarded<TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// A connection's place under its listener's limit.
pub struct Slot(#[allow(dead_code)] (OwnedSemaphorePermit, OpenCount));

/// Hands out connection slots of one listener.
#[derive(Clone)]
pub struct Gate {
    slots: Arc<Semaphore>,
    limits: Limits,
    refused: Arc<Refused>,
    last_warning: Arc<parking_lot::Mutex<Option<Instant>>>,
    name: &'static str,
    metrics: Arc<ConnectionMetrics>,
}

impl Gate {
    /// `name` says which listener it guards in logs and metrics ("rpc", "http").
    pub fn new(name: &'static str, limits: Limits, metrics: Arc<ConnectionMetrics>) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            refused: Default::default(),
            last_warning: Default::default(),
            name,
            metrics,
        }
    }

    pub fn refused(&self) -> Arc<Refused> {
        self.refused.clone()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Admits a connection, or None (it is to be closed) when all slots are taken.
    pub fn admit<S>(&self, stream: S, peer: Option<SocketAddr>) -> Option<Guarded<S>> {
        let label = ConnectionMetrics::label(self.name);
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                self.metrics.open.get_or_create(&label).inc();
                let count = OpenCount {
                    metrics: self.metrics.clone(),
                    name: self.name,
                };
                Some(Guarded::new(stream, (permit, count), &self.limits))
            }
            Err(_) => {
                self.refused.0.fetch_add(1, Ordering::Relaxed);
                self.metrics.refused.get_or_create(&label).inc();
                let mut last = self.last_warning.lock();
                if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    *last = Some(Instant::now());
                    tracing::warn!(
                        listener = self.name,
                        peer = ?peer,
                        limit = self.limits.max_connections,
                        refused_total = self.refused.get(),
                        "connection refused: too many connections"
                    );
                }
                None
            }
        }
    }

    /// Accepts the next connection this gate admits (others are closed),
    /// with TCP_NODELAY and a TCP keepalive.
    pub async fn accept(&self, listener: &TcpListener) -> (Guarded<TcpStream>, SocketAddr) {
        loop {
            match listener.accept().await {
                Ok((s, peer)) => {
                    let _ = s.set_nodelay(true);
                    let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
                    let _ = socket2::SockRef::from(&s).set_tcp_keepalive(&keepalive);
                    if let Some(g) = self.admit(s, Some(peer)) {
                        return (g, peer);
                    }
                }
                Err(e) => {
                    // Out of file descriptors, say: do not spin on it.
                    tracing::warn!(listener = self.name, error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn connections_over_the_limit_are_closed_and_silent_ones_time_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = ConnectionMetrics::register(&mut registry);
        let gate = Gate::new(
            "test",
            Limits {
                max_connections: 2,
                handshake_timeout_ms: 300,
                idle_timeout_ms: 600,
            },
            metrics,
        );
        let server = {
            let gate = gate.clone();
            tokio::spawn(async move {
                loop {
                    let (mut c, _) = gate.accept(&listener).await;
                    tokio::spawn(async move {
                        let mut buf = [0u8; 16];
                        loop {
                            match c.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    let _ = c.write_all(&buf[..n]).await;
                                }
                            }
                        }
                    });
                }
            })
        };
        let mut talker = TcpStream::connect(addr).await.unwrap();
        let mut silent = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The third is over the limit: closed at once.
        let mut third = TcpStream::connect(addr).await.unwrap();
        let mut b = [0u8; 4];
        assert_eq!(third.read(&mut b).await.unwrap_or(0), 0);
        assert_eq!(gate.refused().get(), 1);
        let text = crate::metrics::encode(&registry);
        assert!(
            text.contains("granary_connections_refused_total{listener=\"test\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("granary_connections_open{listener=\"test\"} 2"),
            "{text}"
        );
        // One that talks stays; one that says nothing is closed after the handshake timeout.
        for _ in 0..4 {
            talker.write_all(b"ping").await.unwrap();
            talker.read_exact(&mut b).await.unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        assert_eq!(
            silent.read(&mut b).await.unwrap_or(0),
            0,
            "silent connection still open"
        );
        // Its slot is free again.
        let mut again = TcpStream::connect(addr).await.unwrap();
        again.write_all(b"pong").await.unwrap();
        again.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"pong");
        // An idle one goes after the idle timeout.
        let t = Instant::now();
        assert_eq!(talker.read(&mut b).await.unwrap_or(0), 0);
        assert!(t.elapsed() >= Duration::from_millis(300));
        server.abort();
    }
}
