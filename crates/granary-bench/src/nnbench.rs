//! NNThroughputBenchmark's shape: T threads calling namenode operations for
//! M files, phase by phase (mkdirs, create+complete, getFileInfo, listing,
//! rename, delete), in-process and over gRPC (64 clients by default).
//! Durability stays on in all modes.
//!
//! In-process, as NNThroughputBenchmark calls the namenode's RPC server
//! methods without the wire, each thread calls the namenode's
//! `ClientProtocol` service directly: the same handlers a gRPC call runs
//! (mutations on the mutation thread), without HTTP/2 and protobuf.
//! `direct` mode calls the namespace itself from each thread instead
//! (every thread takes the namespace lock and waits for its own fsync).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use granary_client::{DfsClient, Identity};
use granary_namenode::namespace::Namespace;
use granary_namenode::permission::Caller;
use granary_namenode::rpc::client_service::{ClientService, as_user};
use granary_namenode::state::NamenodeState;
use granary_proto as pb;
use granary_proto::client_protocol_server::ClientProtocol;

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

/// The directory the mkdirs phase's `i`th call creates.
fn mkdirs_path(i: u64) -> String {
    format!("/nnbench/dirs/d{}/x{i}", i / PER_DIR)
}

/// The directory of files the listing phase's `i`th call lists.
fn listing_path(i: u64) -> String {
    format!("/nnbench/files/d{i}")
}

/// How in-process threads reach the namenode.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Its `ClientProtocol` service, as a gRPC call would after decoding.
    Service,
    /// Its namespace, each thread taking the lock itself.
    Direct,
}

/// Runs every phase in-process with `threads` OS threads.
pub fn in_process(
    st: Arc<NamenodeState>,
    caller: Caller,
    ops: u64,
    threads: usize,
    route: Route,
) -> anyhow::Result<()> {
    let ns = st.ns();
    let svc = Arc::new(ClientService::new(st.clone()));
    let rt = tokio::runtime::Handle::current();
    let label = match route {
        Route::Service => "in-process",
        Route::Direct => "direct",
    };
    for d in 0..ops.div_ceil(PER_DIR) {
        for kind in ["files", "renamed"] {
            ns.mkdirs(&caller, &format!("/nnbench/{kind}/d{d}"), 0, true)?
                .wait()?;
        }
    }
    for phase in PHASES {
        let total = phase_ops(phase, ops);
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (st, caller, next) = (st.clone(), caller.clone(), next.clone());
                let (svc, rt) = (svc.clone(), rt.clone());
                std::thread::spawn(move || -> anyhow::Result<Latencies> {
                    let mut lat = Latencies::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            return Ok(lat);
                        }
                        let t = Instant::now();
                        match route {
                            Route::Service => rt.block_on(one_via_service(&svc, phase, i))?,
                            Route::Direct => one_in_process(st.ns(), &caller, phase, i)?,
                        }
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
            &format!("namenode {label} {phase}"),
            threads,
            lat,
            start.elapsed(),
        );
    }
    Ok(())
}

fn one_in_process(ns: &Namespace, caller: &Caller, phase: &str, i: u64) -> anyhow::Result<()> {
    match phase {
        "mkdirs" => ns.mkdirs(caller, &mkdirs_path(i), 0, true)?.wait()?,
        "create" => {
            let p = path("files", i);
            let (file, _) = ns.create(caller, &p, 0, "nnbench", false, false, 1, 0)?.wait()?;
            ns.complete(caller, &p, file.id, "nnbench", None, |_| true)?
                .wait()?;
        }
        "getfileinfo" => {
            ns.get_file_info(caller, &path("files", i))?;
        }
        "listing" => {
            ns.list(caller, &listing_path(i), "", 0)?;
        }
        "rename" => {
            ns.rename(caller, &path("files", i), &path("renamed", i), false)?
                .wait()?;
        }
        "delete" => {
            ns.delete(caller, &path("renamed", i), false)?.wait()?;
        }
        other => anyhow::bail!("unknown phase {other}"),
    }
    Ok(())
}

/// One call of `phase` on the namenode's client service, as the superuser.
async fn one_via_service(svc: &ClientService, phase: &str, i: u64) -> anyhow::Result<()> {
    let id = Identity::new(crate::local::SUPERUSER);
    match phase {
        "mkdirs" => {
            let path = mkdirs_path(i);
            let r = pb::MkdirsRequest {
                path,
                permission: 0,
                create_parent: true,
            };
            svc.mkdirs(as_user(&id, r)).await?;
        }
        "create" => {
            let path = path("files", i);
            let r = pb::CreateRequest {
                path: path.clone(),
                client_name: "nnbench".into(),
                replication: 1,
                ..Default::default()
            };
            let created = svc.create(as_user(&id, r)).await?.into_inner();
            let file_id = created
                .status
                .ok_or_else(|| anyhow::anyhow!("create of {path} returned no status"))?
                .file_id;
            let r = pb::CompleteRequest {
                path,
                file_id,
                client_name: "nnbench".into(),
                last: None,
            };
            anyhow::ensure!(
                svc.complete(as_user(&id, r)).await?.into_inner().completed,
                "an empty file did not complete"
            );
        }
        "getfileinfo" => {
            let r = pb::GetFileInfoRequest {
                path: path("files", i),
            };
            svc.get_file_info(as_user(&id, r)).await?;
        }
        "listing" => {
            let r = pb::GetListingRequest {
                path: listing_path(i),
                start_after: String::new(),
                limit: 0,
            };
            svc.get_listing(as_user(&id, r)).await?;
        }
        "rename" => {
            let r = pb::RenameRequest {
                src: path("files", i),
                dst: path("renamed", i),
                overwrite: false,
            };
            svc.rename(as_user(&id, r)).await?;
        }
        "delete" => {
            let r = pb::DeleteRequest {
                path: path("renamed", i),
                recursive: false,
            };
            svc.delete(as_user(&id, r)).await?;
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
) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let mut rates = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..connections.max(1) {
        conns.push(DfsClient::connect(addr, Identity::new(user)).await?);
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
                        "mkdirs" => c.mkdirs(&mkdirs_path(i), None, true).await?,
                        "create" => c.create_empty(&path("files", i), None).await?,
                        "getfileinfo" => {
                            c.stat(&path("files", i)).await?;
                        }
                        "listing" => {
                            c.list(&listing_path(i)).await?;
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
        let elapsed = start.elapsed();
        rates.push((phase, total as f64 / elapsed.as_secs_f64().max(1e-9)));
        report(&format!("namenode grpc {phase}"), clients, lat, elapsed);
    }
    Ok(rates)
}
