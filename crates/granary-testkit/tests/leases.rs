//! Leases: a live writer keeps its file; a dead writer's file is recovered
//! (by hand or at the hard limit) at a consistent, readable length; append.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use granary_client::{CreateOptions, DfsClient};
use granary_common::{ErrorCode, HasErrorCode};
use granary_testkit::MiniCluster;
use granary_testkit::fixtures::get;

const BLOCK: u64 = 64 * 1024;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

/// Writes `bytes` and then "crashes": drops the writer without closing.
async fn write_and_crash(c: &DfsClient, path: &str, bytes: &[u8]) {
    let mut w = c
        .create(
            path,
            CreateOptions {
                block_size: BLOCK,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    w.write_all(bytes).await.unwrap();
    w.hflush().await.unwrap();
    drop(w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_writer_keeps_its_file_past_the_soft_limit() {
    let cl = MiniCluster::builder().datanodes(3).start().await.unwrap();
    let a = cl.client().await.unwrap();
    let b = cl.client().await.unwrap();
    let mut w = a
        .create(
            "/held",
            CreateOptions {
                block_size: BLOCK,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    w.write_all(&data(1000, 1)).await.unwrap();
    // Renewals keep the lease fresh across several soft limits (1 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let e = b
        .create(
            "/held",
            CreateOptions {
                overwrite: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::LeaseConflict);
    assert!(e.to_string().contains("being written by"), "{e}");
    w.write_all(&data(1000, 2)).await.unwrap();
    assert_eq!(w.close().await.unwrap(), 2000);
    assert_eq!(a.stat("/held").await.unwrap().length, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_writers_file_is_recovered_at_a_consistent_length() {
    let cl = MiniCluster::builder().datanodes(3).start().await.unwrap();
    let c = cl.client().await.unwrap();
    // 2 full blocks and a partial third that never finished.
    let bytes = data(2 * BLOCK as usize + 5000, 3);
    write_and_crash(&c, "/dead", &bytes).await;
    assert!(c.stat("/dead").await.unwrap().under_construction);

    // The hard limit (3 s) passes: the namenode closes it by itself.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while c.stat("/dead").await.unwrap().under_construction {
        assert!(tokio::time::Instant::now() < deadline, "file never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st = c.stat("/dead").await.unwrap();
    assert_eq!(
        st.length,
        bytes.len() as u64,
        "committed blocks kept, and the flushed bytes of the unfinished one"
    );
    assert_eq!(get(&c, "/dead").await, bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_lease_by_hand_then_takeover_and_append() {
    let cl = MiniCluster::builder()
        .datanodes(3)
        .namenode_config(|c| c.lease_hard_limit_ms = 600_000)
        .start()
        .await
        .unwrap();
    let c = cl.client().await.unwrap();
    let bytes = data(BLOCK as usize, 4);
    let mut w = c
        .create(
            "/r",
            CreateOptions {
                block_size: BLOCK,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    w.write_all(&bytes).await.unwrap();
    // One whole block (finalized on the datanodes before the crash) and 10
    // flushed bytes of the next, which lease recovery keeps.
    w.write_all(&data(10, 5)).await.unwrap();
    w.hflush().await.unwrap();
    drop(w);
    // Recovery asks the datanodes what they hold: "not yet" until they answered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !c.recover_lease("/r").await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "recoverLease never closed /r"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st = c.stat("/r").await.unwrap();
    assert!(!st.under_construction);
    assert_eq!(st.length, BLOCK + 10);
    let mut bytes = bytes;
    bytes.extend_from_slice(&data(10, 5));
    assert_eq!(get(&c, "/r").await, bytes);

    // Another client takes over a dead writer's file once the soft limit passed.
    let other = cl.client().await.unwrap();
    write_and_crash(&c, "/t", &data(100, 6)).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut w = other
        .create(
            "/t",
            CreateOptions {
                overwrite: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    w.write_all(b"new owner").await.unwrap();
    w.close().await.unwrap();
    assert_eq!(get(&other, "/t").await, b"new owner");

    // Append to a closed file: new data after the old, readable as one file.
    let mut w = c.append("/r").await.unwrap();
    let more = data(3 * BLOCK as usize / 2, 7);
    w.write_all(&more).await.unwrap();
    w.close().await.unwrap();
    let mut want = bytes.clone();
    want.extend_from_slice(&more);
    assert_eq!(c.stat("/r").await.unwrap().length, want.len() as u64);
    assert_eq!(get(&c, "/r").await, want);
    // Appending to an open file is refused while its writer is alive.
    let _w = c.append("/r").await.unwrap();
    let e = other.append("/r").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::LeaseConflict);
}
