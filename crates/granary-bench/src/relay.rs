//! What this machine allows a replicated write at most: the same bytes sent
//! through chains of plain loopback TCP hops, each hop keeping its copy in a
//! file (page cache, no fsync, as datanodes by default), with no protocol,
//! checksums or acks. dfsio sets Granary's write rate beside it, measured in
//! the same run (docs/performance.md).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Instant;

/// Read and write size of each hop, the size of a write packet.
const CHUNK: usize = 512 << 10;

/// Sends `data` once per chain, `chains` chains at once, through `hops`
/// relays each; returns the seconds until every copy of every chain is written.
pub fn run(data: &bytes::Bytes, chains: usize, hops: usize, dir: &Path) -> anyhow::Result<f64> {
    anyhow::ensure!(hops >= 1, "a relay chain needs at least one hop");
    let mut firsts = Vec::new();
    let mut relays = Vec::new();
    for c in 0..chains {
        let listeners = (0..hops)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<Vec<_>>>()?;
        let addrs = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<std::io::Result<Vec<_>>>()?;
        firsts.push(addrs[0]);
        for (h, l) in listeners.into_iter().enumerate() {
            let next = addrs.get(h + 1).copied();
            let path = dir.join(format!("granary-relay-{}-{c}-{h}", std::process::id()));
            relays.push(std::thread::spawn(move || relay(&l, next, &path)));
        }
    }
    let start = Instant::now();
    let senders: Vec<_> = firsts
        .into_iter()
        .map(|addr| {
            // Shared, not copied: a copy per chain would be timed too.
            let data = data.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut s = TcpStream::connect(addr)?;
                s.set_nodelay(true)?;
                for chunk in data.chunks(CHUNK) {
                    s.write_all(chunk)?;
                }
                Ok(())
            })
        })
        .collect();
    for t in senders.into_iter().chain(relays) {
        t.join().map_err(|_| anyhow::anyhow!("relay thread panicked"))??;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// One hop: takes one connection, forwards everything to `next` and writes
/// it to `path`; the file is removed at the end.
fn relay(l: &TcpListener, next: Option<std::net::SocketAddr>, path: &Path) -> anyhow::Result<()> {
    let (mut inbound, _) = l.accept()?;
    let mut out = next.map(TcpStream::connect).transpose()?;
    if let Some(o) = &out {
        o.set_nodelay(true)?;
    }
    let mut file = std::fs::File::create(path)?;
    let mut buf = vec![0u8; CHUNK];
    let res = (|| -> anyhow::Result<()> {
        loop {
            let n = inbound.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            if let Some(o) = &mut out {
                o.write_all(&buf[..n])?;
            }
            file.write_all(&buf[..n])?;
        }
    })();
    drop(file);
    let _ = std::fs::remove_file(path);
    res
}
