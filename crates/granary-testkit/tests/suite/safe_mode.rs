//! Safe mode: a restarted namenode refuses changes until datanodes have
//! reported its blocks, then leaves by itself; operators can enter and leave
//! it by hand.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tokio::io::AsyncWriteExt;

use granary_client::{CreateOptions, SafeModeAction};
use granary_common::{ErrorCode, HasErrorCode};
use granary_testkit::MiniCluster;
use granary_testkit::fixtures::{get, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_enters_safe_mode_until_blocks_are_reported() {
    let mut cl = MiniCluster::builder().datanodes(3).start().await.unwrap();
    let c = cl.client().await.unwrap();
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let mut w = c
        .create(
            "/sm/f",
            CreateOptions {
                block_size: 65536,
                create_parent: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    w.write_all(&bytes).await.unwrap();
    w.shutdown().await.unwrap();
    for i in 0..3 {
        cl.stop_datanode(i).await.unwrap();
    }
    cl.restart_namenode().await.unwrap();
    let c = cl.client().await.unwrap();
    let st = c.safe_mode(SafeModeAction::Get).await.unwrap();
    assert!(st.on);
    assert_eq!((st.reported_blocks, st.total_blocks), (0, 5));
    // Reads of metadata work; changes are refused with a clear reason.
    assert_eq!(c.stat("/sm/f").await.unwrap().length, 300_000);
    let e = c.mkdirs("/sm/new", None, false).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::SafeMode);
    assert!(
        e.to_string().contains("safe mode is ON") && e.to_string().contains("total blocks 5"),
        "{e}"
    );
    assert_eq!(
        c.delete("/sm/f", false).await.unwrap_err().code(),
        ErrorCode::SafeMode
    );
    assert!(
        c.get_file_info("/sm/f").await.unwrap().is_some(),
        "nothing deleted in safe mode"
    );

    for i in 0..3 {
        cl.restart_datanode(i).await.unwrap();
    }
    cl.wait_for_safe_mode_exit().await.unwrap();
    let st = c.safe_mode(SafeModeAction::Get).await.unwrap();
    assert!(!st.on && st.reported_blocks == 5, "{st:?}");
    assert_eq!(get(&c, "/sm/f").await, bytes);
    c.mkdirs("/sm/new", None, false).await.unwrap();
}

/// A namespace too large to scan before serving (forced here with a limit of
/// 0) is counted while reads are already served; safe mode cannot end before
/// the count, and the open file's writer keeps its lease across the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_namespace_serves_reads_while_its_blocks_are_counted() {
    let mut cl = MiniCluster::builder()
        .datanodes(3)
        .namenode_config(|c| c.startup_scan_inline_objects = 0)
        .start()
        .await
        .unwrap();
    let c = cl.client().await.unwrap();
    let opts = || CreateOptions {
        block_size: 65536,
        create_parent: true,
        ..Default::default()
    };
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut w = c.create("/count/closed", opts()).await.unwrap();
    w.write_all(&bytes).await.unwrap();
    w.shutdown().await.unwrap();
    let mut open = c.create("/count/open", opts()).await.unwrap();
    open.write_all(b"still being written").await.unwrap();
    open.hflush().await.unwrap();

    cl.restart_namenode().await.unwrap();
    let other = cl.client().await.unwrap();
    assert_eq!(other.stat("/count/closed").await.unwrap().length, 200_000);
    wait_for(10, "the start-up count of 4 blocks", || async {
        other.safe_mode(SafeModeAction::Get).await.unwrap().total_blocks == 4
    })
    .await;
    cl.wait_for_safe_mode_exit().await.unwrap();
    let taken = other
        .create(
            "/count/open",
            CreateOptions {
                overwrite: true,
                ..opts()
            },
        )
        .await;
    let Err(e) = taken else {
        panic!("the writer's lease must outlive the restart");
    };
    assert_eq!(e.code(), ErrorCode::LeaseConflict, "{e}");
    assert_eq!(get(&other, "/count/closed").await, bytes);
    drop(open);
}

#[tokio::test]
async fn operators_enter_and_leave_safe_mode_by_hand() {
    let cl = MiniCluster::start().await.unwrap();
    let admin = cl.client().await.unwrap();
    let user = cl.client_as("alice").await.unwrap();
    assert!(
        !admin.safe_mode(SafeModeAction::Get).await.unwrap().on,
        "an empty namespace starts writable"
    );
    let e = user.safe_mode(SafeModeAction::Enter).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::AccessControl);
    assert!(e.to_string().contains("Superuser privilege is required"));
    assert!(admin.safe_mode(SafeModeAction::Enter).await.unwrap().on);
    let e = admin.mkdirs("/x", None, false).await.unwrap_err();
    assert!(e.to_string().contains("turned on manually"), "{e}");
    // A manual safe mode does not end by itself.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(user.safe_mode(SafeModeAction::Get).await.unwrap().on);
    assert!(!admin.safe_mode(SafeModeAction::Leave).await.unwrap().on);
    admin.mkdirs("/x", None, false).await.unwrap();
}
