//! Telling protocols apart on one port by a connection's first bytes,
//! without taking them: the datanode's data port (write pipelines vs gRPC)
//! and the namenode's RPC port (Hadoop IPC vs gRPC).

use std::time::Duration;

use tokio::net::TcpStream;

/// What a connection's first bytes said.
#[derive(Debug, PartialEq, Eq)]
pub enum Sniffed {
    /// It began with the `i`-th of the preambles looked for.
    Preamble(usize),
    /// It began with something else (HTTP/2's preface, for gRPC).
    Other,
    /// It sent nothing, or only part of a preamble, in time, or closed.
    Closed,
}

/// Looks at `stream`'s first bytes for one of `preambles` (none a prefix of
/// another). A connection that sends nothing, or only part of a preamble,
/// within `within` is [`Sniffed::Closed`] (`peek` keeps returning bytes
/// already received after the peer's FIN, so the deadline is checked on
/// every turn, not only while waiting).
pub async fn sniff(stream: &TcpStream, within: Duration, preambles: &[&[u8]]) -> Sniffed {
    let deadline = tokio::time::Instant::now() + within;
    let longest = preambles.iter().map(|p| p.len()).max().unwrap_or(0);
    let mut buf = vec![0u8; longest.max(1)];
    let mut pause = Duration::from_millis(1);
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Err(_) | Ok(Ok(0) | Err(_)) => return Sniffed::Closed,
            Ok(Ok(n)) => n,
        };
        let got = &buf[..n];
        if let Some(i) = preambles.iter().position(|p| got.starts_with(p)) {
            return Sniffed::Preamble(i);
        }
        // Could it still become one of them?
        if !preambles.iter().any(|p| p.starts_with(got)) {
            return Sniffed::Other;
        }
        // Part of a preamble so far; peek returns at once while bytes are
        // waiting, so give the rest a moment (backing off, up to 50 ms).
        if tokio::time::Instant::now() >= deadline {
            return Sniffed::Closed;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    const A: &[u8] = b"GRANARY-DT";
    const B: &[u8] = b"hrpc";

    #[tokio::test]
    async fn first_bytes_tell_the_protocol_and_silence_is_closed() {
        // One byte of a preamble, then the peer closes: peek keeps
        // returning that byte; the deadline must still end the wait.
        let (mut c, s) = pair().await;
        c.write_all(&A[..1]).await.unwrap();
        c.shutdown().await.unwrap();
        drop(c);
        let t = std::time::Instant::now();
        assert_eq!(
            sniff(&s, Duration::from_millis(300), &[A, B]).await,
            Sniffed::Closed
        );
        assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
        // Silence from the start is closed too, not handed on.
        let (_c, s) = pair().await;
        assert_eq!(sniff(&s, Duration::from_millis(200), &[A]).await, Sniffed::Closed);
        // Each whole preamble is told apart; anything else is other.
        let (mut c, s) = pair().await;
        c.write_all(A).await.unwrap();
        assert_eq!(
            sniff(&s, Duration::from_secs(5), &[A, B]).await,
            Sniffed::Preamble(0)
        );
        let (mut c, s) = pair().await;
        c.write_all(b"hrpc\x09\x00\x00").await.unwrap();
        assert_eq!(
            sniff(&s, Duration::from_secs(5), &[A, B]).await,
            Sniffed::Preamble(1)
        );
        let (mut c, s) = pair().await;
        c.write_all(b"PRI * HTTP/2.0").await.unwrap();
        assert_eq!(sniff(&s, Duration::from_secs(5), &[A, B]).await, Sniffed::Other);
        // A preamble's start, the rest arriving later, is still that one.
        let (mut c, s) = pair().await;
        c.write_all(b"hr").await.unwrap();
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            c.write_all(b"pc").await.unwrap();
            c
        });
        assert_eq!(
            sniff(&s, Duration::from_secs(5), &[A, B]).await,
            Sniffed::Preamble(1)
        );
        drop(late.await);
    }
}
