//! Leases: a live writer keeps its file; a dead writer's file is recovered
//! (by hand or at the hard limit) at a consistent, readable length; append.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use granary_client::{CreateOptions, DfsClient};
use granary_common::{ErrorCode, HasErrorCode};
use granary_proto as pb;
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
        .namenode_config(|c| c.leases.hard_limit_ms = 600_000)
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
    // Until a holder confirmed the recovered last block, the namenode says
    // "recovery in progress; try again later" (as HDFS's
    // RecoveryInProgressException): a client tries again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut w = loop {
        match c.append("/r").await {
            Ok(w) => break w,
            Err(e) if e.to_string().contains("recovery is in progress") => {
                assert!(tokio::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("append: {e}"),
        }
    };
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

/// `path` opened for writing by `c` with a bare create (no writer, so no
/// renewals): its lease goes stale after the soft limit.
async fn open_raw(c: &DfsClient, path: &str) -> pb::FileStatus {
    c.rpc()
        .create(c.request(pb::CreateRequest {
            path: path.into(),
            client_name: c.client_name().into(),
            permission: 0o644,
            replication: 1,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

/// A user who may not open a file cannot close its writer out of it: create
/// and append check permissions before taking a stale lease over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_users_who_may_open_a_file_take_it_over() {
    let cl = MiniCluster::start().await.unwrap();
    let admin = cl.client().await.unwrap();
    admin.mkdirs("/home/alice", None, true).await.unwrap();
    admin.set_owner("/home/alice", Some("alice"), None).await.unwrap();
    let alice = cl.client_as("alice").await.unwrap();
    let bob = cl.client_as("bob").await.unwrap();
    open_raw(&alice, "/home/alice/a").await;
    open_raw(&alice, "/home/alice/b").await;
    // Alice's writer went silent past the soft limit (1 s).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let e = bob
        .rpc()
        .create(bob.request(pb::CreateRequest {
            path: "/home/alice/a".into(),
            client_name: bob.client_name().into(),
            overwrite: true,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(ErrorCode::from_status(&e), ErrorCode::AccessControl, "{e:?}");
    assert!(e.message().contains("user=bob, access=WRITE"), "{}", e.message());
    let e = bob
        .rpc()
        .append(bob.request(pb::AppendRequest {
            path: "/home/alice/b".into(),
            client_name: bob.client_name().into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(ErrorCode::from_status(&e), ErrorCode::AccessControl, "{e:?}");
    for f in ["/home/alice/a", "/home/alice/b"] {
        assert!(
            alice.stat(f).await.unwrap().under_construction,
            "bob's refused call recovered {f}"
        );
    }
    // Who may open it takes it over.
    let again = cl.client_as("alice").await.unwrap();
    again
        .rpc()
        .create(again.request(pb::CreateRequest {
            path: "/home/alice/a".into(),
            client_name: again.client_name().into(),
            overwrite: true,
            ..Default::default()
        }))
        .await
        .unwrap();
}

/// addBlock, updateBlockForPipeline, abandonBlock and complete need the
/// user who opened the file, not just its id and its writer's client name,
/// and other users are not told that name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_an_open_file_need_its_writers_user() {
    let cl = MiniCluster::builder().datanodes(1).start().await.unwrap();
    let admin = cl.client().await.unwrap();
    admin.mkdirs("/shared", Some(0o777), true).await.unwrap();
    let alice = cl.client_as("alice").await.unwrap();
    let bob = cl.client_as("bob").await.unwrap();
    let f = open_raw(&alice, "/shared/f").await;
    let stolen = alice.client_name().to_string();
    let add = |c: &DfsClient| {
        c.request(pb::AddBlockRequest {
            path: "/shared/f".into(),
            file_id: f.file_id,
            client_name: stolen.clone(),
            previous: None,
            excluded_nodes: vec![],
        })
    };
    let located = alice
        .rpc()
        .add_block(add(&alice))
        .await
        .unwrap()
        .into_inner()
        .block
        .unwrap();
    let block = located.block.unwrap();
    let refused = |r: Result<(), tonic::Status>| {
        let e = r.unwrap_err();
        assert_eq!(ErrorCode::from_status(&e), ErrorCode::LeaseConflict, "{e:?}");
        assert_eq!(e.message(), "/shared/f: file is being written by another client");
    };
    let nn = bob.rpc();
    refused(nn.clone().add_block(add(&bob)).await.map(|_| ()));
    refused(
        nn.clone()
            .update_block_for_pipeline(bob.request(pb::UpdateBlockForPipelineRequest {
                path: "/shared/f".into(),
                file_id: f.file_id,
                client_name: stolen.clone(),
                block: Some(block),
            }))
            .await
            .map(|_| ()),
    );
    refused(
        nn.clone()
            .abandon_block(bob.request(pb::AbandonBlockRequest {
                path: "/shared/f".into(),
                file_id: f.file_id,
                client_name: stolen.clone(),
                block: Some(block),
            }))
            .await
            .map(|_| ()),
    );
    let complete = |c: &DfsClient, last: Option<pb::ExtendedBlock>| {
        c.request(pb::CompleteRequest {
            path: "/shared/f".into(),
            file_id: f.file_id,
            client_name: stolen.clone(),
            last,
        })
    };
    refused(nn.clone().complete(complete(&bob, Some(block))).await.map(|_| ()));
    refused(
        nn.clone()
            .create(bob.request(pb::CreateRequest {
                path: "/shared/f".into(),
                client_name: bob.client_name().into(),
                overwrite: true,
                ..Default::default()
            }))
            .await
            .map(|_| ()),
    );
    // Nothing of it happened; alice goes on and closes her file.
    let st = alice.stat("/shared/f").await.unwrap();
    assert!(st.under_construction && st.length == 0);
    alice
        .rpc()
        .abandon_block(alice.request(pb::AbandonBlockRequest {
            path: "/shared/f".into(),
            file_id: f.file_id,
            client_name: stolen.clone(),
            block: Some(block),
        }))
        .await
        .unwrap();
    assert!(
        alice
            .rpc()
            .complete(complete(&alice, None))
            .await
            .unwrap()
            .into_inner()
            .completed
    );
}

/// A lease is its user's: another user's renewLease with its client name
/// is refused (it would keep a dead writer's file from recovery), and so is
/// opening a file under that name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_its_user_renews_a_lease() {
    let cl = MiniCluster::start().await.unwrap();
    let admin = cl.client().await.unwrap();
    admin.mkdirs("/shared", Some(0o777), true).await.unwrap();
    let alice = cl.client_as("alice").await.unwrap();
    let bob = cl.client_as("bob").await.unwrap();
    open_raw(&alice, "/shared/f").await;
    let renew = |c: &DfsClient| {
        c.request(pb::RenewLeaseRequest {
            client_name: alice.client_name().into(),
        })
    };
    let e = bob.rpc().renew_lease(renew(&bob)).await.unwrap_err();
    assert_eq!(ErrorCode::from_status(&e), ErrorCode::AccessControl, "{e:?}");
    assert!(e.message().contains("user=bob"), "{}", e.message());
    let e = bob
        .rpc()
        .create(bob.request(pb::CreateRequest {
            path: "/shared/g".into(),
            client_name: alice.client_name().into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(ErrorCode::from_status(&e), ErrorCode::AccessControl, "{e:?}");
    assert!(bob.get_file_info("/shared/g").await.unwrap().is_none());
    alice.rpc().renew_lease(renew(&alice)).await.unwrap();
    admin.rpc().renew_lease(renew(&admin)).await.unwrap();
}
