//! Snapshots end to end on real processes: taken with the CLI, files
//! deleted, overwritten and renamed after it, the old bytes read back
//! through `.snapshot` (CLI, client, WebHDFS) also after a namenode
//! restart, the diff listing the changes, what it alone holds counted
//! against a quota, and deleting the snapshot freeing the blocks it alone
//! held on the datanodes' disks, and the quota.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use granary_client::DfsClient;
use granary_testkit::binaries::{ProcessCluster, find_replica, http_request, redirect_target};
use granary_testkit::fixtures::{get, pseudo_random, put, wait_out_of_safe_mode};

const MIB: usize = 1 << 20;

/// Bytes of block files under every datanode's data dir.
fn disk_usage(c: &ProcessCluster) -> u64 {
    let mut total = 0;
    for i in 0..c.datanodes.len() {
        let mut stack = vec![c.datanode_dir(i)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("blk_"))
                {
                    total += e.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
        }
    }
    total
}

async fn block_ids(c: &DfsClient, path: &str) -> Vec<u64> {
    c.block_locations(path, 0, 0)
        .await
        .unwrap()
        .blocks
        .iter()
        .map(|b| b.block.id.0)
        .collect()
}

fn replicas_left(c: &ProcessCluster, blocks: &[u64]) -> usize {
    (0..c.datanodes.len())
        .map(|i| {
            blocks
                .iter()
                .filter(|b| find_replica(&c.datanode_dir(i), **b).is_some())
                .count()
        })
        .sum()
}

async fn web(c: &ProcessCluster, method: &'static str, path: String) -> (u16, Option<String>, String) {
    let http = c.http.clone();
    tokio::task::spawn_blocking(move || http_request(&http, method, &path))
        .await
        .unwrap()
}

fn local(c: &ProcessCluster, name: &str) -> std::path::PathBuf {
    c.dir.path().join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_keeps_old_bytes_readable_and_its_deletion_frees_their_blocks() {
    let mut c = ProcessCluster::start(
        3,
        &["--min-block-size", "65536", "--default-block-size", "1048576"],
    );
    let client = c.client().await;
    let keep = pseudo_random(2 * MIB, 1);
    let gone = pseudo_random(3 * MIB + 7, 2);
    let old_text = "the old version\n".repeat(4096);
    put(&client, "/data/keep", &keep, MIB as u64).await;
    put(&client, "/data/gone", &gone, MIB as u64).await;
    put(&client, "/data/over", old_text.as_bytes(), MIB as u64).await;

    // Only the superuser allows snapshots; the owner takes them.
    let out = c.cli_as("alice", &["admin", "allow-snapshot", "/data"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Superuser privilege is required"));
    let allowed = c.cli_ok(&["admin", "allow-snapshot", "/data"]);
    assert_eq!(allowed.trim(), "Allowing snapshot on /data succeeded");
    let made = c.cli_ok(&["fs", "create-snapshot", "/data", "s1"]);
    assert_eq!(made.trim(), "Created snapshot /data/.snapshot/s1");

    // After the snapshot: delete, overwrite, rename, create.
    let gone_blocks = block_ids(&client, "/data/gone").await;
    let over_blocks = block_ids(&client, "/data/over").await;
    assert_eq!(gone_blocks.len(), 4);
    c.cli_out(&["fs", "rm", "-skipTrash", "/data/gone"]);
    std::fs::write(local(&c, "new-over"), b"the new version\n").unwrap();
    c.cli_out(&[
        "fs",
        "put",
        "-f",
        local(&c, "new-over").to_str().unwrap(),
        "/data/over",
    ]);
    c.cli_out(&["fs", "mv", "/data/keep", "/data/kept"]);
    put(&client, "/data/new", b"made after s1", MIB as u64).await;
    let err = c.cli_err(&["fs", "rm", "-r", "-skipTrash", "/data"]);
    assert!(err.contains("snapshottable and already has snapshots"), "{err}");

    // A namenode restart: the snapshot and what it keeps are durable.
    c.restart_namenode();
    let client = c.client().await;
    wait_out_of_safe_mode(&client).await;

    // The old bytes, through .snapshot: client, CLI cat and get, WebHDFS.
    assert_eq!(get(&client, "/data/.snapshot/s1/gone").await, gone);
    assert_eq!(get(&client, "/data/.snapshot/s1/keep").await, keep);
    assert_eq!(
        c.cli_out(&["fs", "cat", "/data/.snapshot/s1/over"]),
        old_text.as_bytes()
    );
    c.cli_out(&[
        "fs",
        "get",
        "/data/.snapshot/s1/gone",
        local(&c, "gone").to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(local(&c, "gone")).unwrap(), gone);
    let (status, location, body) = web(
        &c,
        "GET",
        "/webhdfs/v1/data/.snapshot/s1/over?op=OPEN&user.name=hdfs".into(),
    )
    .await;
    assert_eq!(status, 307, "{body}");
    let (dn, path) = redirect_target(&location.unwrap());
    let (status, _, body) = tokio::task::spawn_blocking(move || http_request(&dn, "GET", &path))
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, old_text.as_str()));
    assert_eq!(get(&client, "/data/over").await, b"the new version\n");
    assert_eq!(get(&client, "/data/kept").await, keep);

    // Listings.
    let ls = c.cli_ok(&["fs", "ls", "/data/.snapshot"]);
    assert!(ls.contains("/data/.snapshot/s1"), "{ls}");
    let ls = c.cli_ok(&["fs", "ls", "/data/.snapshot/s1"]);
    for name in ["gone", "keep", "over"] {
        assert!(ls.contains(&format!("/data/.snapshot/s1/{name}")), "{ls}");
    }
    assert!(!ls.contains("new") && !ls.contains("kept"), "{ls}");
    let (status, _, body) = web(
        &c,
        "GET",
        "/webhdfs/v1/data/.snapshot/s1?op=LISTSTATUS&user.name=hdfs".into(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"pathSuffix\":\"gone\""), "{body}");

    // Nothing under .snapshot changes, on any door.
    let err = c.cli_err(&["fs", "mkdir", "/data/.snapshot/s1/x"]);
    assert!(err.contains("read-only snapshot"), "{err}");
    let err = c.cli_err(&["fs", "rm", "-skipTrash", "/data/.snapshot/s1/keep"]);
    assert!(err.contains("read-only snapshot"), "{err}");
    let (status, _, body) = web(
        &c,
        "PUT",
        "/webhdfs/v1/data/.snapshot/s1/x?op=MKDIRS&user.name=hdfs".into(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("SnapshotAccessControlException"), "{body}");
    assert_eq!(get(&client, "/data/.snapshot/s1/keep").await, keep);

    // The diff, as HDFS prints it; and through WebHDFS.
    let diff = c.cli_ok(&["fs", "snapshot-diff", "/data", "s1", "."]);
    assert!(
        diff.starts_with("Difference between snapshot s1 and current directory under directory /data:"),
        "{diff}"
    );
    for line in [
        "M\t.",
        "-\t./gone",
        "+\t./new",
        "R\t./keep -> ./kept",
        "+\t./over",
        "-\t./over",
    ] {
        assert!(diff.lines().any(|l| l == line), "{line:?} missing from:\n{diff}");
    }
    assert_eq!(diff.lines().count(), 7, "nothing else changed:\n{diff}");
    let (status, _, body) = web(
        &c,
        "GET",
        "/webhdfs/v1/data?op=GETSNAPSHOTDIFF&oldsnapshotname=s1&snapshotname=.&user.name=hdfs".into(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("{\"sourcePath\":\"gone\",\"type\":\"DELETE\"}"),
        "{body}"
    );
    let (status, _, body) = web(
        &c,
        "GET",
        "/webhdfs/v1/data?op=GETSNAPSHOTDIFF&user.name=hdfs".into(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("oldsnapshotname"), "{body}");
    let (status, _, body) = web(
        &c,
        "GET",
        "/webhdfs/v1/?op=GETSNAPSHOTTABLEDIRECTORYLIST&user.name=hdfs".into(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"pathSuffix\":\"data\"") && body.contains("\"snapshotNumber\":1"),
        "{body}"
    );
    let listed = c.cli_ok(&["fs", "ls-snapshottable-dir"]);
    assert!(listed.trim_end().ends_with(" 1 65536 /data"), "{listed}");

    // The deleted and overwritten files' replicas are still on disk.
    let held: Vec<u64> = gone_blocks.iter().chain(&over_blocks).copied().collect();
    assert_eq!(
        replicas_left(&c, &held),
        3 * held.len(),
        "replicas kept for the snapshot"
    );

    // As in HDFS, what the snapshot alone holds counts against quotas and
    // in `count`: 4 names are current (data, kept, over, new), 2 are held
    // (gone and the old over).
    c.cli_out(&["admin", "set-quota", "6", "/data"]);
    let count = c.cli_ok(&["fs", "count", "-q", "/data"]);
    let cols: Vec<&str> = count.split_whitespace().collect();
    assert_eq!(
        (cols[0], cols[1], cols[4], cols[5]),
        ("6", "0", "1", "5"),
        "quota, remaining, directories, files: {count}"
    );
    let err = c.cli_err(&["fs", "mkdir", "/data/x"]);
    assert!(err.contains("quota=6 file count=7"), "{err}");

    // Deleting the snapshot frees them: the datanodes' disk usage drops.
    let before = disk_usage(&c);
    c.cli_out(&["fs", "delete-snapshot", "/data", "s1"]);
    let freed = 3 * (gone.len() + old_text.len()) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = disk_usage(&c);
        if before.saturating_sub(now) >= freed && replicas_left(&c, &held) == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a minute after the snapshot's deletion the datanodes hold {now} bytes of block files (were {before}; {freed} should go), {} replicas left",
            replicas_left(&c, &held)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let err = c.cli_err(&["fs", "ls", "/data/.snapshot/s1"]);
    assert!(err.contains("No such file or directory"), "{err}");
    // And the quota they used.
    c.cli_out(&["fs", "mkdir", "/data/x"]);
    // What is current is untouched.
    assert_eq!(get(&client, "/data/kept").await, keep);
    assert_eq!(get(&client, "/data/over").await, b"the new version\n");
    c.cli_out(&["admin", "disallow-snapshot", "/data"]);
    c.cli_out(&["fs", "rm", "-r", "-skipTrash", "/data"]);
}
