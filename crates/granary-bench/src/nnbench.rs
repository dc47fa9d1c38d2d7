//! NNThroughputBenchmark's shape: T threads calling namenode operations for
//! M files, phase by phase (mkdirs, create+complete, getFileInfo, listing,
//! rename, delete), in-process (direct calls on the namespace) and over gRPC
//! (64 clients by default). Durability stays on in both.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use granary_client::{DfsClient, Identity};
use granary_namenode::namespace::Namespace;
use granary_namenode::permission::Caller;
use granary_namenode::state::NamenodeState;

use crate::stats::{Latencies, report};

pub const PHASES: [&str; 6] = ["mkdirs", "create", "getfileinfo", "listing", "rename", "delete"];
/// Files per directory: listings stay one page long.
const PER_DIR: u64 = 1000;

/// Calls a phase makes: one listing per directory, else one per file.
fn phase_ops(phase: &str, ops: u64) -> u64 {
    if phase == "listing" {
        ops.div_ceil(PER_DIR)
    } else {
        ops
    }
}

fn path(kind: &str, i: u64) -> String {
    format!("/nnbench/{kind}/d{}/f{i}", i / PER_DIR)
}

/// Runs every phase in-process with `threads` OS threads.
pub fn in_process(st: Arc<NamenodeState>, caller: Caller, ops: u64, threads: usize) -> anyhow::Result<()> {
    let ns = &st.ns;
    for d in 0..ops.div_ceil(PER_DIR) {
        for kind in ["files", "renamed"] {
            ns.mkdirs(&caller, &format!("/nnbench/{kind}/d{d}"), 0, true)?;
        }
    }
    for phase in PHASES {
        let total = phase_ops(phase, ops);
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (st, caller, next) = (st.clone(), caller.clone(), next.clone());
                std::thread::spawn(move || -> anyhow::Result<Latencies> {
                    let mut lat = Latencies::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            return Ok(lat);
                        }
                        let t = Instant::now();
                        one_in_process(&st.ns, &caller, phase, i)?;
                        lat.record(t.elapsed());
                    }
                })
            })
            .collect();
        let mut lat = Latencies::default();
        for h in handles {
            lat.merge(
                h.join()
                    .map_err(|_| anyhow::anyhow!("benchmark thread panicked"))??,
            );
        }
        report(
            &format!("namenode in-process {phase}"),
            threads,
            lat,
            start.elapsed(),
        );
    }
    Ok(())
}

fn one_in_process(ns: &Namespace, caller: &Caller, phase: &str, i: u64) -> anyhow::Result<()> {
    match phase {
        "mkdirs" => ns.mkdirs(caller, &format!("/nnbench/dirs/d{}/x{i}", i / PER_DIR), 0, true)?,
        "create" => {
            let p = path("files", i);
            let (file, _) = ns.create(caller, &p, 0, "nnbench", false, false, 1, 0)?;
            ns.complete(&p, file.id, "nnbench", None, |_| true)?;
        }
        "getfileinfo" => {
            ns.get_file_info(caller, &path("files", i))?;
        }
        "listing" => {
            ns.list(caller, &format!("/nnbench/files/d{i}"), "", 0)?;
        }
        "rename" => {
            ns.rename(caller, &path("files", i), &path("renamed", i), false)?;
        }
        "delete" => {
            ns.delete(caller, &path("renamed", i), false)?;
        }
        other => anyhow::bail!("unknown phase {other}"),
    }
    Ok(())
}

/// Runs every phase over gRPC with `clients` concurrent callers sharing
/// `connections` HTTP/2 connections.
pub async fn over_grpc(
    addr: &str,
    user: &str,
    ops: u64,
    clients: usize,
    connections: usize,
) -> anyhow::Result<()> {
    let mut conns = Vec::new();
    for _ in 0..connections.max(1) {
        conns.push(DfsClient::connect(addr, Identity::new(user, vec![])).await?);
    }
    let c0 = conns[0].clone();
    for d in 0..ops.div_ceil(PER_DIR) {
        for kind in ["files", "renamed"] {
            c0.mkdirs(&format!("/nnbench/{kind}/d{d}"), None, true).await?;
        }
    }
    for phase in PHASES {
        let total = phase_ops(phase, ops);
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for k in 0..clients {
            let (c, next) = (conns[k % conns.len()].clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Latencies::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok::<_, anyhow::Error>(lat);
                    }
                    let t = Instant::now();
                    match phase {
                        "mkdirs" => {
                            c.mkdirs(&format!("/nnbench/dirs/d{}/x{i}", i / PER_DIR), None, true)
                                .await?
                        }
                        "create" => c.create_empty(&path("files", i), None).await?,
                        "getfileinfo" => {
                            c.stat(&path("files", i)).await?;
                        }
                        "listing" => {
                            c.list(&format!("/nnbench/files/d{i}")).await?;
                        }
                        "rename" => c.rename(&path("files", i), &path("renamed", i), false).await?,
                        "delete" => c.delete(&path("renamed", i), false).await?,
                        other => anyhow::bail!("unknown phase {other}"),
                    }
                    lat.record(t.elapsed());
                }
            }));
        }
        let mut lat = Latencies::default();
        for t in tasks {
            lat.merge(t.await??);
        }
        report(&format!("namenode grpc {phase}"), clients, lat, start.elapsed());
    }
    Ok(())
}
