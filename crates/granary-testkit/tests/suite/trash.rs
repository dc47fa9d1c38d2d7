//! The trash, end to end on real processes: `granary fs rm` moves into the
//! user's trash, `mv` restores, the namenode's emptier checkpoints and
//! expires it (its replicas then go from the datanodes' disks),
//! `-skipTrash` deletes at once, `expunge -immediate` empties it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use granary_client::DfsClient;
use granary_testkit::binaries::{ProcessCluster, find_replica};
use granary_testkit::fixtures::get;

/// The cluster's block size (`--default-block-size`).
const BLOCK: u64 = 1 << 20;

async fn put(client: &DfsClient, path: &str, data: &[u8]) {
    granary_testkit::fixtures::put(client, path, data, BLOCK).await;
}

const TRASH: &str = "/user/hdfs/.Trash";

/// Where `rel` (e.g. `/data/a`) is in the trash now: in Current or in a
/// checkpoint (the emptier may have taken one since).
async fn in_trash(client: &DfsClient, rel: &str) -> Option<String> {
    let entries = client.list(TRASH).await.unwrap_or_default();
    for e in entries {
        let p = format!("{TRASH}/{}{rel}", e.name);
        if client.get_file_info(&p).await.unwrap().is_some() {
            return Some(p);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rm_goes_to_the_trash_which_is_restored_checkpointed_and_expired() {
    // 0.1 minutes: a checkpoint every 6 s, expired 6 s after.
    let c = ProcessCluster::start(
        3,
        &[
            "--trash-interval",
            "0.1",
            "--min-block-size",
            "65536",
            "--default-block-size",
            "1048576",
        ],
    );
    let client = c.client().await;
    let data: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
        .collect();
    put(&client, "/data/a.bin", &data).await;

    // rm moves it; mv (from wherever the emptier left it) restores it.
    let out = c.cli_ok(&["fs", "rm", "/data/a.bin"]);
    assert_eq!(
        out,
        format!("Moved: '/data/a.bin' to trash at: {TRASH}/Current/data/a.bin\n")
    );
    assert!(client.get_file_info("/data/a.bin").await.unwrap().is_none());
    let mut restored = false;
    for _ in 0..5 {
        let Some(at) = in_trash(&client, "/data/a.bin").await else {
            panic!("a.bin is not in the trash");
        };
        if client.rename(&at, "/data/a.bin", false).await.is_ok() {
            restored = true;
            break;
        }
    }
    assert!(restored, "could not move a.bin back");
    assert!(get(&client, "/data/a.bin").await == data, "restored bytes differ");

    // rm again, and wait: checkpointed, then expired, then its replicas go.
    let blocks: Vec<u64> = client
        .block_locations("/data/a.bin", 0, 0)
        .await
        .unwrap()
        .blocks
        .iter()
        .map(|b| b.block.id.0)
        .collect();
    assert_eq!(blocks.len(), 3);
    c.cli_ok(&["fs", "rm", "/data/a.bin"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut checkpointed = false;
    loop {
        match in_trash(&client, "/data/a.bin").await {
            Some(p) => checkpointed |= !p.starts_with(&format!("{TRASH}/Current/")),
            None => break,
        }
        assert!(Instant::now() < deadline, "the trash never expired a.bin");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(checkpointed, "a.bin left the trash without a checkpoint");
    let log = c.log("namenode.log");
    assert!(log.contains("trash emptied"), "{log}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while (0..3).any(|i| {
        blocks
            .iter()
            .any(|b| find_replica(&c.datanode_dir(i), *b).is_some())
    }) {
        assert!(
            Instant::now() < deadline,
            "the expired file's replicas stayed on disk"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // -skipTrash deletes at once.
    put(&client, "/data/b.bin", b"b").await;
    let out = c.cli_ok(&["fs", "rm", "-skipTrash", "/data/b.bin"]);
    assert_eq!(out, "Deleted /data/b.bin\n");
    assert!(in_trash(&client, "/data/b.bin").await.is_none());

    // A file of the name of a directory on the way in the trash (/data/f,
    // then /data/f/g deleted): stepped around, nothing overwritten.
    put(&client, "/data/f", b"file f").await;
    c.cli_ok(&["fs", "rm", "/data/f"]);
    put(&client, "/data/f/g", b"file g").await;
    let out = c.cli_ok(&["fs", "rm", "/data/f/g"]);
    assert!(out.starts_with("Moved: '/data/f/g' to trash at: "), "{out}");
    let g = out.trim().rsplit(' ').next().unwrap().to_string();
    assert!(get(&client, &g).await == b"file g", "{g}");
    if let Some(f) = in_trash(&client, "/data/f").await {
        assert!(get(&client, &f).await == b"file f", "{f}");
    }

    // expunge -immediate empties the trash now.
    put(&client, "/data/c.bin", b"c").await;
    c.cli_ok(&["fs", "rm", "/data/c.bin"]);
    assert!(in_trash(&client, "/data/c.bin").await.is_some());
    c.cli_ok(&["fs", "expunge", "-immediate"]);
    assert!(in_trash(&client, "/data/c.bin").await.is_none());
}
