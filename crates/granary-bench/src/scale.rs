//! F files in one namespace: the namenode's memory (its process hosts the
//! namenode here), RocksDB's size on disk, and the time from a restart to
//! answering getFileInfo over gRPC.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use granary_client::{DfsClient, Identity};

use crate::local::{self, LocalNamenode};
use crate::stats::{dir_bytes, rss_kib};

const PER_DIR: u64 = 10_000;

fn path(i: u64) -> String {
    format!("/scale/d{}/f{i}", i / PER_DIR)
}

pub async fn run(nn: LocalNamenode, files: u64, threads: usize) -> anyhow::Result<()> {
    let st = nn.nn.state.clone();
    let caller = st.ns().caller(Identity::new(local::SUPERUSER));
    for d in 0..files.div_ceil(PER_DIR) {
        st.ns()
            .mkdirs(&caller, &format!("/scale/d{d}"), 0, true)?
            .wait()?;
    }
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (st, caller, next) = (st.clone(), caller.clone(), next.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= files {
                        return Ok(());
                    }
                    let p = path(i);
                    let (file, _) = st
                        .ns()
                        .create(&caller, &p, 0, "scale", false, false, 1, 0)?
                        .wait()?;
                    st.ns()
                        .complete(&caller, &p, file.id, "scale", None, |_| true)?
                        .wait()?;
                    if i > 0 && i % 1_000_000 == 0 {
                        let rss = rss_kib(std::process::id()).map_or(0, |(r, _)| r / 1024);
                        eprintln!(
                            "progress files={i} seconds={:.0} rss_mib={rss}",
                            start.elapsed().as_secs_f64()
                        );
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("create thread panicked"))??;
    }
    let secs = start.elapsed().as_secs_f64();
    let (rss, hwm) = rss_kib(std::process::id()).unwrap_or((0, 0));
    println!(
        "scale create: files={files} threads={threads} seconds={secs:.1} files_per_sec={:.0} process_rss_mib={} peak_rss_mib={}",
        files as f64 / secs,
        rss / 1024,
        hwm / 1024
    );

    // The namespace closes when its last holder lets go.
    drop(st);
    let dir = nn.dir.clone();
    let keep = nn; // holds the temp dir alive
    let running = keep.nn;
    running.shutdown().await?;
    println!(
        "scale rocksdb: bytes_on_disk={} mib={}",
        dir_bytes(&dir),
        dir_bytes(&dir) >> 20
    );
    let t = Instant::now();
    let restarted = local::open(local::config(&dir)).await?;
    let addr = restarted.rpc_addr.to_string();
    let client = DfsClient::connect(&addr, Identity::new(local::SUPERUSER)).await?;
    let last = path(files.saturating_sub(1));
    loop {
        if client.stat(&last).await.is_ok() {
            break;
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(600),
            "namenode never served {last}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "scale restart: seconds_to_serving_getfileinfo={:.2}",
        t.elapsed().as_secs_f64()
    );
    restarted.shutdown().await?;
    Ok(())
}
