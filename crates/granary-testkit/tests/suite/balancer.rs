//! The balancer on real processes: two empty datanodes join three holding
//! about a GiB; `granary balancer` brings every node within the threshold
//! of the mean while a watcher checks, all along, that no block is ever
//! below its replication; every file then reads back byte for byte. And
//! the namenode's own background balancer does the same for a node added
//! to a running cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use granary_client::{CreateOptions, DfsClient};
use granary_testkit::binaries::{FAST_LIVENESS, ProcessCluster, bin_path};
use granary_testkit::fixtures::{get, pseudo_random, put};
use tokio::io::AsyncWriteExt;

const MIB: u64 = 1 << 20;

/// Each node's utilization (dfs_used / capacity), as the namenode reports it.
async fn utilization(c: &DfsClient) -> Vec<(String, f64)> {
    c.datanode_report()
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.capacity > 0)
        .map(|d| (d.id.rpc_addr, d.dfs_used as f64 / d.capacity as f64))
        .collect()
}

/// Whether every node is within `threshold` of the mean of `nodes` nodes.
fn within(u: &[(String, f64)], nodes: usize, threshold: f64) -> bool {
    let mean = u.iter().map(|(_, x)| x).sum::<f64>() / u.len().max(1) as f64;
    u.len() == nodes && u.iter().all(|(_, x)| (x - mean).abs() <= threshold)
}

/// Until stopped, checks every 100 ms that each block of `files` has at
/// least `replication` replicas; counts the checks that found one short.
fn watch_replication(
    client: DfsClient,
    files: Vec<String>,
    replication: usize,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<()>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let short = Arc::new(AtomicUsize::new(0));
    let rounds = Arc::new(AtomicUsize::new(0));
    let (s, r) = (short.clone(), rounds.clone());
    let task = tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            for f in &files {
                let l = client.block_locations(f, 0, 0).await.unwrap();
                for b in &l.blocks {
                    if b.locations.len() < replication {
                        eprintln!("{f}: block {:?} has {} replicas", b.block.id, b.locations.len());
                        s.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            r.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (task, short, rounds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancer_spreads_a_gibibyte_onto_two_new_datanodes_without_a_block_short() {
    // 2 GiB of capacity per node: three holding 1 GiB each are at 50 %;
    // with two empty ones the mean is 30 %. Quick rounds, but a datanode
    // is dead only after 30 s: five of them copying a GiB on two cores may
    // miss a few heartbeats, and a node declared dead is not what this
    // test is about.
    let nn = [
        "--heartbeat-interval-ms",
        "300",
        "--stale-after-ms",
        "5000",
        "--dead-after-ms",
        "30000",
        "--redundancy-interval-ms",
        "300",
        "--min-block-size",
        "65536",
        "--pending-replication-timeout-ms",
        "10000",
        "--safemode-extension-ms",
        "500",
        "--default-block-size",
        "8388608",
    ];
    let mut c = ProcessCluster::start_with(3, &nn, &["--capacity-bytes", "2147483648"]);
    let client = c.client().await;
    let files: Vec<String> = (0..8).map(|i| format!("/data/part-{i}")).collect();
    for (i, f) in files.iter().enumerate() {
        put(&client, f, &pseudo_random(128 * MIB as usize, i as u64), 8 * MIB).await;
    }
    c.add_datanode();
    c.add_datanode();
    c.wait_registered(5);
    // The new nodes' first heartbeats.
    let deadline = Instant::now() + Duration::from_secs(30);
    while utilization(&client).await.len() < 5 {
        assert!(Instant::now() < deadline, "the new datanodes never reported");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = utilization(&client).await;
    assert!(!within(&before, 5, 0.10), "unbalanced to begin with: {before:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let (watcher, short, rounds) = watch_replication(c.client().await, files.clone(), 3, stop.clone());

    let mut child = Command::new(bin_path("granary"))
        .args([
            "--namenode",
            &c.rpc,
            "--user",
            "hdfs",
            "balancer",
            "-threshold",
            "10",
        ])
        .args(["-max-bandwidth", "200", "--interval-ms", "500"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the balancer did not finish in 300 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{stdout}");
    assert!(
        status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("Time Stamp               Iteration#  Bytes Already Moved"),
        "{stdout}"
    );
    assert!(stdout.contains("The cluster is balanced. Exiting..."), "{stdout}");
    assert!(
        stdout.lines().count() >= 4,
        "progress printed as it went: {stdout}"
    );

    // The reports catch up with the last moves and deletions.
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let u = utilization(&client).await;
        if within(&u, 5, 0.10) {
            break u;
        }
        assert!(
            Instant::now() < deadline,
            "not within 10 % of the mean: {u:?} (before: {before:?})"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    stop.store(true, Ordering::SeqCst);
    watcher.await.unwrap();
    assert!(
        rounds.load(Ordering::SeqCst) >= 5,
        "the watcher looked only {} times",
        rounds.load(Ordering::SeqCst)
    );
    assert_eq!(
        short.load(Ordering::SeqCst),
        0,
        "a block was below its replication during the run"
    );
    println!("utilization before {before:?}\nafter {after:?}");
    for (i, f) in files.iter().enumerate() {
        assert!(
            get(&client, f).await == pseudo_random(128 * MIB as usize, i as u64),
            "{f} changed"
        );
    }
    // Run again: nothing left to do.
    let again = Command::new(bin_path("granary"))
        .args(["--namenode", &c.rpc, "--user", "hdfs", "balancer"])
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("The cluster is balanced."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namenode_balances_in_the_background_when_enabled() {
    let mut nn: Vec<&str> = FAST_LIVENESS.to_vec();
    nn.extend([
        "--default-block-size",
        "1048576",
        "--balancer",
        "true",
        "--balancer-interval-ms",
        "300",
    ]);
    let mut c = ProcessCluster::start_with(2, &nn, &["--capacity-bytes", "268435456"]);
    let client = c.client().await;
    let files: Vec<String> = (0..4).map(|i| format!("/bg/f{i}")).collect();
    // One replica each, so only the balancer (not re-replication) fills
    // the node that joins: 96 MiB on two nodes of 256 MiB (18.75 % each);
    // with a third the mean is 12.5 %.
    for (i, f) in files.iter().enumerate() {
        let opts = CreateOptions {
            replication: 1,
            block_size: MIB,
            create_parent: true,
            ..Default::default()
        };
        let mut w = client.create(f, opts).await.unwrap();
        w.write_all(&pseudo_random(24 * MIB as usize, 100 + i as u64))
            .await
            .unwrap();
        w.shutdown().await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (watcher, short, _) = watch_replication(c.client().await, files.clone(), 1, stop.clone());
    c.add_datanode();
    c.wait_registered(3);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let u = utilization(&client).await;
        if u.len() == 3 && within(&u, 3, 0.10) && u.iter().all(|(_, x)| *x > 0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "never balanced: {u:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::SeqCst);
    watcher.await.unwrap();
    assert_eq!(short.load(Ordering::SeqCst), 0);
    for (i, f) in files.iter().enumerate() {
        assert!(
            get(&client, f).await == pseudo_random(24 * MIB as usize, 100 + i as u64),
            "{f} changed"
        );
    }
}

/// Block files (`blk_<id>`, not meta) under `dir`.
fn block_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if name.starts_with("blk_") && !name.ends_with(".meta") {
                n += 1;
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_balancer_spreads_a_datanode_over_an_added_disk() {
    let mut nn: Vec<&str> = FAST_LIVENESS.to_vec();
    nn.extend(["--default-block-size", "1048576"]);
    let mut c = ProcessCluster::start_with(1, &nn, &["--capacity-bytes", "268435456"]);
    let client = c.client().await;
    let data = pseudo_random(40 * MIB as usize, 7);
    let opts = CreateOptions {
        replication: 1,
        block_size: MIB,
        create_parent: true,
        ..Default::default()
    };
    let mut w = client.create("/disk/f", opts).await.unwrap();
    w.write_all(&data).await.unwrap();
    w.shutdown().await.unwrap();
    let added = c.add_disk(0);
    assert_eq!(block_files(&added), 0);
    let addr = c.datanode_addr(0);
    // The namenode hears of the second dir with the restarted node's reports.
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .disk_balance(&addr, false, None, None)
        .await
        .unwrap()
        .volumes
        .len()
        < 2
    {
        assert!(Instant::now() < deadline, "the added data dir was never reported");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = Command::new(bin_path("granary"))
        .args([
            "--namenode",
            &c.rpc,
            "--user",
            "hdfs",
            "admin",
            "diskbalancer",
            &addr,
            "--threshold",
            "2",
            "--wait",
            "120",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("are balanced"), "{stdout}");
    let moved = block_files(&added);
    assert!(
        (15..=25).contains(&moved),
        "{moved} of 40 replicas on the added disk:\n{stdout}"
    );
    assert!(get(&client, "/disk/f").await == data, "the file changed");
    // They stay where they are across a restart.
    c.restart_datanode(0);
    c.wait_registered(1);
    assert_eq!(block_files(&added), moved);
    assert!(
        get(&client, "/disk/f").await == data,
        "the file changed after a restart"
    );
    // Only the superuser runs it.
    let out = Command::new(bin_path("granary"))
        .args([
            "--namenode",
            &c.rpc,
            "--user",
            "alice",
            "admin",
            "diskbalancer",
            &addr,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Superuser privilege is required"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balancer_calls_refuse_bad_arguments_and_other_users() {
    use granary_client::{BalanceOptions, Identity, SafeModeAction};
    use granary_common::{ErrorCode, HasErrorCode};
    let c = ProcessCluster::start(1, FAST_LIVENESS);
    let su = c.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while su.safe_mode(SafeModeAction::Get).await.unwrap().on {
        assert!(Instant::now() < deadline, "still in safe mode");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in [f64::NAN, -1.0, 101.0, f64::INFINITY] {
        let opts = BalanceOptions {
            threshold_percent: Some(t),
            ..Default::default()
        };
        let e = su.balance(&opts).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument, "threshold {t}: {e}");
    }
    let many = BalanceOptions {
        exclude: vec!["x".to_string(); 10_001],
        ..Default::default()
    };
    assert_eq!(
        su.balance(&many).await.unwrap_err().code(),
        ErrorCode::InvalidArgument
    );
    let addr = c.datanode_addr(0);
    let e = su.disk_balance("nowhere:1", true, None, None).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::FileNotFound, "{e}");
    let e = su
        .disk_balance(&addr, true, Some(f64::NAN), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    let alice = DfsClient::connect(&c.rpc, Identity::new("alice")).await.unwrap();
    assert_eq!(
        alice
            .balance(&BalanceOptions::default())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::AccessControl
    );
    let e = alice.disk_balance(&addr, true, None, None).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::AccessControl, "{e}");
    // One node: balanced as it is, nothing to move.
    let r = su.balance(&BalanceOptions::default()).await.unwrap();
    assert!(r.balanced && r.moves_scheduled == 0 && r.nodes == 1, "{r:?}");
}
