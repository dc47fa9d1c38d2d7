//! Failures with real processes: `granary-namenode`, `granary-datanode` and
//! `granary` binaries on loopback, killed with SIGKILL or restarted, and
//! every byte checked afterwards. Liveness is fast (stale 1 s, dead 3 s).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use granary_client::{CreateOptions, DatanodeState, SafeModeAction};
use granary_testkit::binaries::{FAST_LIVENESS, ProcessCluster, bin_path, find_replica};
use granary_testkit::fixtures::{get, holders, pseudo_random, put, wait_for};

const BLOCK: u64 = 64 * 1024;
const DEAD_AFTER_S: u64 = 3;

const FAST: &[&str] = FAST_LIVENESS;

fn runtime() -> tokio::runtime::Runtime {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("granary_client=info")
        .try_init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs the `granary` CLI as the superuser against the cluster.
fn granary(c: &ProcessCluster, args: &[&str]) -> std::process::Output {
    Command::new(bin_path("granary"))
        .args(["--namenode", &c.rpc])
        .args(args)
        .env("GRANARY_USER", "hdfs")
        .output()
        .unwrap()
}

/// Block replica data files (not meta files) under a datanode's data dir.
fn replica_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if name.starts_with("blk_") && !name.ends_with(".meta") {
                n += 1;
            }
        }
    }
    n
}

/// The index of the datanode holding the most of `hs`' replicas.
fn busiest(c: &ProcessCluster, hs: &[HashSet<String>]) -> usize {
    (0..c.datanodes.len())
        .max_by_key(|i| {
            let u = c.datanode_uuid(*i);
            hs.iter().filter(|h| h.contains(&u)).count()
        })
        .unwrap()
}

#[test]
fn a_killed_datanodes_hundred_blocks_come_back_to_three_replicas_and_its_return_removes_the_excess() {
    let rt = runtime();
    let mut c = ProcessCluster::start(4, FAST);
    let client = rt.block_on(c.client());
    let bytes = pseudo_random(100 * BLOCK as usize, 1);
    rt.block_on(put(&client, "/hundred", &bytes, BLOCK));
    let before = rt.block_on(holders(&client, "/hundred"));
    assert_eq!(before.len(), 100);
    assert!(before.iter().all(|h| h.len() == 3), "{before:?}");
    let victim = busiest(&c, &before);
    let victim_uuid = c.datanode_uuid(victim);
    let held = before.iter().filter(|h| h.contains(&victim_uuid)).count();
    assert!(held >= 75, "the busiest of 4 nodes holds {held} of 100 blocks");

    c.datanodes[victim].kill9();
    let killed = Instant::now();
    rt.block_on(wait_for(
        DEAD_AFTER_S + 12,
        "every block back to 3 live replicas",
        || async {
            holders(&client, "/hundred")
                .await
                .iter()
                .all(|h| h.len() == 3 && !h.contains(&victim_uuid))
        },
    ));
    eprintln!(
        "{held} blocks re-replicated {:.1} s after the kill (dead after {DEAD_AFTER_S} s)",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(rt.block_on(get(&client, "/hundred")), bytes);

    // The node returns with its old replicas: the excess goes, nothing is lost.
    c.restart_datanode(victim);
    rt.block_on(wait_for(30, "exactly 300 replicas, 3 per block", || async {
        let on_disk: usize = (0..4).map(|i| replica_files(&c.datanode_dir(i))).sum();
        on_disk == 300 && holders(&client, "/hundred").await.iter().all(|h| h.len() == 3)
    }));
    assert_eq!(rt.block_on(get(&client, "/hundred")), bytes);
}

#[test]
fn a_replica_with_flipped_bytes_is_found_by_the_scanner_and_replaced() {
    let rt = runtime();
    let c = ProcessCluster::start_with(4, FAST, &["--block-scan-period-ms", "500"]);
    let client = rt.block_on(c.client());
    let bytes = pseudo_random(3 * BLOCK as usize, 2);
    rt.block_on(put(&client, "/rot", &bytes, BLOCK));
    let lb = rt.block_on(client.block_locations("/rot", 0, 0)).unwrap();
    let id = lb.blocks[1].block.id.0;
    let holder = lb.blocks[1].locations[0].id.uuid.clone();
    let bad = (0..4).find(|i| c.datanode_uuid(*i) == holder).unwrap();
    let path = find_replica(&c.datanode_dir(bad), id).unwrap();
    let mut raw = std::fs::read(&path).unwrap();
    raw[4321] ^= 0x40;
    std::fs::write(&path, &raw).unwrap();

    let want = &bytes[BLOCK as usize..2 * BLOCK as usize];
    rt.block_on(wait_for(30, "3 good replicas and no bad one on disk", || async {
        let copies: Vec<Vec<u8>> = (0..4)
            .filter_map(|i| find_replica(&c.datanode_dir(i), id))
            .filter_map(|p| std::fs::read(p).ok())
            .collect();
        copies.len() == 3 && copies.iter().all(|d| d == want) && holders(&client, "/rot").await[1].len() == 3
    }));
    assert_eq!(rt.block_on(get(&client, "/rot")), bytes);
}

#[test]
fn a_restarted_namenode_stays_in_safe_mode_until_datanodes_report_then_serves_every_file() {
    let rt = runtime();
    let mut c = ProcessCluster::start(3, FAST);
    let client = rt.block_on(c.client());
    let files: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("/sm/f{i}"), pseudo_random(i * 50_000 + 1, 10 + i as u64)))
        .collect();
    rt.block_on(async {
        client.mkdirs("/sm", None, true).await.unwrap();
        for (p, b) in &files {
            put(&client, p, b, BLOCK).await;
        }
    });
    for d in &mut c.datanodes {
        d.kill9();
    }
    c.restart_namenode();
    let client = rt.block_on(c.client());
    let st = rt.block_on(client.safe_mode(SafeModeAction::Get)).unwrap();
    assert!(st.on, "{}", st.status);
    assert_eq!(st.reported_blocks, 0);
    // Writes are refused by name; metadata reads work.
    let out = granary(&c, &["fs", "mkdir", "/sm/new"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("safe mode"), "{err}");
    assert_eq!(
        rt.block_on(client.stat("/sm/f4")).unwrap().length,
        files[4].1.len() as u64
    );

    for i in 0..3 {
        c.restart_datanode(i);
    }
    let out = Command::new("timeout")
        .arg("30")
        .arg(bin_path("granary"))
        .args(["--namenode", &c.rpc, "admin", "safemode", "wait"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    rt.block_on(async {
        for (p, b) in &files {
            assert!(get(&client, p).await == *b, "{p} differs after the restart");
        }
        client.mkdirs("/sm/new", None, false).await.unwrap();
    });
}

#[test]
fn decommissioning_with_the_cli_moves_every_block_before_the_node_stops() {
    let rt = runtime();
    let mut c = ProcessCluster::start(4, FAST);
    let client = rt.block_on(c.client());
    let bytes = pseudo_random(30 * BLOCK as usize, 3);
    rt.block_on(put(&client, "/decom", &bytes, BLOCK));
    let node = busiest(&c, &rt.block_on(holders(&client, "/decom")));
    let uuid = c.datanode_uuid(node);
    let addr = c.datanode_addr(node);

    let out = granary(&c, &["admin", "decommission", &addr]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    rt.block_on(wait_for(30, "node decommissioned", || async {
        client
            .datanode_report()
            .await
            .unwrap()
            .iter()
            .any(|d| d.id.uuid == uuid && d.state == DatanodeState::Decommissioned)
    }));
    let report = granary(&c, &["admin", "report"]);
    let report = String::from_utf8_lossy(&report.stdout);
    assert!(report.contains("decommissioned"), "{report}");

    c.datanodes[node].kill9();
    let others: HashSet<String> = (0..4)
        .filter(|i| *i != node)
        .map(|i| c.datanode_uuid(i))
        .collect();
    for h in rt.block_on(holders(&client, "/decom")) {
        assert_eq!(h.iter().filter(|u| others.contains(*u)).count(), 3, "{h:?}");
    }
    assert_eq!(rt.block_on(get(&client, "/decom")), bytes);
}

/// Writes through the library while one pipeline datanode is killed -9
/// mid-block, five times over; each write must succeed, read back byte for
/// byte, and the namenode must restore three replicas using the fourth node.
#[test]
fn killing_a_pipeline_datanode_mid_write_loses_nothing() {
    let rt = runtime();
    for round in 0..5u64 {
        let mut c = ProcessCluster::start(4, FAST);
        let client = rt.block_on(c.client());
        let bytes = pseudo_random(6 * 256 * 1024 + 777, round + 11);
        let victim_uuid = rt.block_on(async {
            let mut w = client
                .create(
                    "/f",
                    CreateOptions {
                        block_size: 256 * 1024,
                        replication: 3,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            // A block and a half, flushed so the second block's pipeline is live.
            w.write_all(&bytes[..384 * 1024]).await.unwrap();
            w.hflush().await.unwrap();
            let pipeline = w.pipeline();
            assert_eq!(pipeline.len(), 3, "the second block's pipeline is open");
            // Each round kills another position: head, middle, tail.
            let addr = &pipeline[(round as usize) % 3].rpc_addr;
            let victim = (0..4).find(|i| c.datanode_addr(*i) == *addr).unwrap();
            let uuid = c.datanode_uuid(victim);
            c.datanodes[victim].kill9();
            w.write_all(&bytes[384 * 1024..]).await.unwrap();
            w.shutdown().await.unwrap();
            uuid
        });
        let mut back = Vec::new();
        rt.block_on(async {
            client
                .open("/f")
                .await
                .unwrap()
                .read_to_end(&mut back)
                .await
                .unwrap()
        });
        assert_eq!(back.len(), bytes.len(), "round {round}");
        assert!(back == bytes, "round {round}: content differs");
        rt.block_on(wait_for(30, "3 live replicas of every block", || async {
            holders(&client, "/f")
                .await
                .iter()
                .all(|h| h.len() == 3 && !h.contains(&victim_uuid))
        }));
    }
}

/// Every namespace change the namenode answered survives its crash: writers
/// keep creating directories while the namenode is killed with SIGKILL, and
/// after a restart each directory whose mkdirs succeeded is there.
#[test]
fn every_answered_mutation_survives_a_namenode_crash() {
    let rt = runtime();
    let mut c = ProcessCluster::start(1, FAST);
    let client = rt.block_on(c.client());
    rt.block_on(client.mkdirs("/crash", None, true)).unwrap();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let client = client.clone();
            rt.spawn(async move {
                let mut answered = Vec::new();
                // Bounded: stops at the first failure (the crash) or 20,000 dirs.
                for i in 0..20_000 {
                    let p = format!("/crash/w{w}-{i}");
                    if client.mkdirs(&p, None, false).await.is_err() {
                        break;
                    }
                    answered.push(p);
                }
                answered
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    c.namenode.kill9();
    let answered: Vec<String> = writers
        .into_iter()
        .flat_map(|w| rt.block_on(w).unwrap())
        .collect();
    assert!(
        answered.len() > 100,
        "only {} mkdirs before the crash",
        answered.len()
    );
    c.start_namenode();
    let client = rt.block_on(c.client());
    let listed: HashSet<String> = rt
        .block_on(client.list("/crash"))
        .unwrap()
        .into_iter()
        .map(|s| format!("/crash/{}", s.name))
        .collect();
    let lost: Vec<&String> = answered.iter().filter(|p| !listed.contains(*p)).collect();
    assert!(
        lost.is_empty(),
        "{} answered mkdirs lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
}
