//! TestDFSIO's shape: K files of S MiB written concurrently through the real
//! client (replication R) against a running cluster, then read back; the
//! write rate is set beside `dd`-like writes of the same data R times to a
//! local disk with fsync, and beside the same bytes relayed through plain
//! loopback TCP hops that each keep a copy (`relay`), measured in the same run.
//!
//! The relay runs before Granary's write, and both start after a pause
//! (`settle`): on this project's VMs memory freed a few seconds earlier is
//! handed back to the host (virtio-balloon free page reporting), and the
//! page-cache copy into such pages costs several times a copy into pages
//! freed just before, so both writers must meet memory in the same state
//! (docs/performance.md).

use std::io::Write;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use granary_client::{CreateOptions, DfsClient, Identity};

pub struct Args {
    pub files: usize,
    pub size_mib: usize,
    pub replication: u32,
    pub block_mib: u64,
    pub dd_dir: std::path::PathBuf,
    /// Pause before the relay and before the write (see the module doc).
    pub settle: std::time::Duration,
}

pub async fn run(addr: &str, user: &str, a: &Args) -> anyhow::Result<()> {
    let client = DfsClient::connect(addr, Identity::new(user)).await?;
    let size = a.size_mib << 20;
    // One buffer of incompressible data, written by every file.
    let data = crate::stats::incompressible(size, 0x9e3779b97f4a7c15);
    let _ = client.delete("/dfsio", true).await;
    client.mkdirs("/dfsio", None, true).await?;
    let total_mib = (a.files * a.size_mib) as f64;
    let copies = a.replication.max(1) as usize;

    // The machine's limit for R copies over R loopback hops, without Granary
    // (printed after the write, with the ratio).
    tokio::time::sleep(a.settle).await;
    let relay_s = crate::relay::run(&data, a.files, copies, &a.dd_dir)?;
    let relay_rate = total_mib / relay_s;

    tokio::time::sleep(a.settle).await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for f in 0..a.files {
        let (c, data) = (client.clone(), data.clone());
        let opts = CreateOptions {
            replication: a.replication,
            block_size: a.block_mib << 20,
            ..Default::default()
        };
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let mut w = c.create(&format!("/dfsio/f{f}"), opts).await?;
            for chunk in data.chunks(4 << 20) {
                w.write_all(chunk).await?;
            }
            w.shutdown().await?;
            Ok::<_, anyhow::Error>(t.elapsed().as_secs_f64())
        }));
    }
    let mut per_file = Vec::new();
    for t in tasks {
        per_file.push(t.await??);
    }
    let write_s = start.elapsed().as_secs_f64();
    let write_rate = total_mib / write_s;
    let avg_file = per_file.iter().map(|s| a.size_mib as f64 / s).sum::<f64>() / per_file.len().max(1) as f64;
    println!(
        "dfsio write: files={} size_mib={} replication={} seconds={write_s:.2} aggregate_mib_per_s={write_rate:.1} avg_file_mib_per_s={avg_file:.1}",
        a.files, a.size_mib, a.replication
    );

    let dropped = std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for f in 0..a.files {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = c.open(&format!("/dfsio/f{f}")).await?;
            let mut buf = vec![0u8; 4 << 20];
            let mut n = 0usize;
            loop {
                let k = r.read(&mut buf).await?;
                if k == 0 {
                    return Ok::<_, anyhow::Error>(n);
                }
                n += k;
            }
        }));
    }
    for t in tasks {
        let n = t.await??;
        anyhow::ensure!(n == size, "read {n} bytes of a {size}-byte file");
    }
    let read_s = start.elapsed().as_secs_f64();
    println!(
        "dfsio read: files={} size_mib={} seconds={read_s:.2} aggregate_mib_per_s={:.1} page_cache_dropped={dropped}",
        a.files,
        a.size_mib,
        total_mib / read_s
    );

    // The same bytes, replication times, to one local disk with fsync (dd conv=fsync).
    let path = a.dd_dir.join(format!("granary-dfsio-dd-{}", std::process::id()));
    let start = Instant::now();
    {
        let mut f = std::fs::File::create(&path)?;
        for _ in 0..copies * a.files {
            f.write_all(&data)?;
        }
        f.sync_all()?;
    }
    let dd_s = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    let dd_rate = total_mib / dd_s;
    println!(
        "dd {copies} copies to {}: seconds={dd_s:.2} data_mib_per_s={dd_rate:.1} granary_write_vs_dd={:.2}",
        a.dd_dir.display(),
        write_rate / dd_rate
    );

    println!(
        "relay {} chains of {copies} loopback hops, each keeping a copy in {} (page cache): seconds={relay_s:.2} data_mib_per_s={relay_rate:.1} granary_write_vs_relay={:.2}",
        a.files,
        a.dd_dir.display(),
        write_rate / relay_rate
    );
    client.delete("/dfsio", true).await?;
    Ok(())
}
