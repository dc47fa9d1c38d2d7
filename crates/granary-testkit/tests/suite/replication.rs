//! Replication management on an in-process cluster with fast liveness
//! settings (stale 1 s, dead 3 s): dead datanodes' blocks are copied back to
//! full replication, returning nodes' excess replicas are removed, and
//! setReplication takes effect both ways.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use granary_client::DfsClient;
use granary_testkit::MiniCluster;
use granary_testkit::fixtures::{self, get, holders, pseudo_random, wait_for};

const BLOCK: u64 = 64 * 1024;

fn data(len: usize) -> Vec<u8> {
    pseudo_random(len, 7)
}

async fn put(c: &DfsClient, path: &str, bytes: &[u8]) {
    fixtures::put(c, path, bytes, BLOCK).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_datanodes_blocks_return_to_full_replication_and_excess_goes_when_it_returns() {
    let mut cl = MiniCluster::builder().datanodes(4).start().await.unwrap();
    let c = cl.client().await.unwrap();
    let bytes = data(100 * BLOCK as usize);
    put(&c, "/hundred", &bytes).await;
    let before = holders(&c, "/hundred").await;
    assert_eq!(before.len(), 100);
    assert!(before.iter().all(|h| h.len() == 3));
    // Kill the node holding the most replicas.
    let victim = (0..4)
        .max_by_key(|i| {
            before
                .iter()
                .filter(|h| h.contains(cl.datanode(*i).uuid()))
                .count()
        })
        .unwrap();
    let victim_uuid = cl.datanode(victim).uuid().to_string();
    let held = before.iter().filter(|h| h.contains(&victim_uuid)).count();
    assert!(held >= 60, "victim holds {held} blocks");
    cl.stop_datanode(victim).await.unwrap();

    // dead after 3 s, then copies: well within 3 s + a few seconds.
    wait_for(15, "every block back to 3 live replicas", || async {
        holders(&c, "/hundred")
            .await
            .iter()
            .all(|h| h.len() == 3 && !h.contains(&victim_uuid))
    })
    .await;
    assert_eq!(get(&c, "/hundred").await, bytes);

    // The node comes back with its old replicas: the excess is removed, none lost.
    cl.restart_datanode(victim).await.unwrap();
    wait_for(20, "excess replicas removed", || async {
        let on_disk: usize = (0..4).map(|i| cl.datanode(i).ctx.storage.replica_count()).sum();
        on_disk == 300 && holders(&c, "/hundred").await.iter().all(|h| h.len() == 3)
    })
    .await;
    assert_eq!(get(&c, "/hundred").await, bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_replication_takes_effect_both_ways() {
    let cl = MiniCluster::builder().datanodes(3).start().await.unwrap();
    let c = cl.client().await.unwrap();
    let bytes = data(5 * BLOCK as usize + 10);
    put(&c, "/r", &bytes).await;
    c.set_replication("/r", 1).await.unwrap();
    wait_for(15, "replication lowered to 1", || async {
        let on_disk: usize = (0..3).map(|i| cl.datanode(i).ctx.storage.replica_count()).sum();
        on_disk == 6 && holders(&c, "/r").await.iter().all(|h| h.len() == 1)
    })
    .await;
    assert_eq!(get(&c, "/r").await, bytes);
    c.set_replication("/r", 3).await.unwrap();
    wait_for(15, "replication raised to 3", || async {
        holders(&c, "/r").await.iter().all(|h| h.len() == 3)
    })
    .await;
    assert_eq!(get(&c, "/r").await, bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_block_scanner_finds_rot_and_missing_files_and_replication_repairs_them() {
    let cl = MiniCluster::builder()
        .datanodes(3)
        .block_scan_period(300)
        .start()
        .await
        .unwrap();
    let c = cl.client().await.unwrap();
    let bytes = data(3 * BLOCK as usize);
    put(&c, "/rot", &bytes).await;
    let lb = c.block_locations("/rot", 0, 0).await.unwrap();
    let (b0, b1) = (lb.blocks[0].block, lb.blocks[1].block);
    // Rot: flip a byte of block 0 on datanode 0. Loss: delete block 1's files on datanode 1.
    let (rotten, _) = cl.datanode(0).ctx.storage.replica_paths(b0.id.0).unwrap();
    let mut raw = std::fs::read(&rotten).unwrap();
    raw[1000] ^= 0x01;
    std::fs::write(&rotten, &raw).unwrap();
    let (lost, lost_meta) = cl.datanode(1).ctx.storage.replica_paths(b1.id.0).unwrap();
    std::fs::remove_file(&lost).unwrap();
    std::fs::remove_file(&lost_meta).unwrap();

    let expect0 = bytes[..BLOCK as usize].to_vec();
    let expect1 = bytes[BLOCK as usize..2 * BLOCK as usize].to_vec();
    wait_for(20, "both blocks repaired on the nodes that lost them", || async {
        let good = |dn: usize, id: u64, want: &[u8]| {
            cl.datanode(dn)
                .ctx
                .storage
                .replica_paths(id)
                .and_then(|(p, _)| std::fs::read(p).ok())
                .is_some_and(|d| d == want)
        };
        good(0, b0.id.0, &expect0)
            && good(1, b1.id.0, &expect1)
            && holders(&c, "/rot").await.iter().all(|h| h.len() == 3)
    })
    .await;
    assert_eq!(get(&c, "/rot").await, bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_span_two_racks_before_and_after_a_failure() {
    let mut cl = MiniCluster::builder()
        .datanodes(5)
        .racks(&["/r1", "/r2"])
        .start()
        .await
        .unwrap();
    let c = cl.client().await.unwrap();
    put(&c, "/racks", &data(20 * BLOCK as usize)).await;
    let rack_of = |cl: &MiniCluster, u: &str| {
        (0..5)
            .find(|i| cl.datanode(*i).uuid() == u)
            .map(|i| if i % 2 == 0 { "/r1" } else { "/r2" })
    };
    let spread_ok = |cl: &MiniCluster, hs: &[HashSet<String>]| {
        hs.iter().all(|h| {
            let racks: Vec<_> = h.iter().filter_map(|u| rack_of(cl, u)).collect();
            let r1 = racks.iter().filter(|r| **r == "/r1").count();
            h.len() == 3 && (1..=2).contains(&r1)
        })
    };
    let before = holders(&c, "/racks").await;
    assert!(spread_ok(&cl, &before), "{before:?}");
    cl.stop_datanode(4).await.unwrap();
    wait_for(15, "re-replicated with rack spread", || async {
        let hs = holders(&c, "/racks").await;
        // Datanode 4 is stopped: rack_of cannot name it, so 3 named holders means it is out.
        hs.iter().all(|h| {
            h.iter()
                .filter(|u| (0..4).any(|i| cl.datanode(i).uuid() == u.as_str()))
                .count()
                == 3
        }) && hs.iter().all(|h| {
            let racks: Vec<_> = h
                .iter()
                .filter_map(|u| (0..4).find(|i| cl.datanode(*i).uuid() == u.as_str()))
                .collect();
            let r1 = racks.iter().filter(|i| *i % 2 == 0).count();
            racks.len() == 3 && (1..=2).contains(&r1)
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decommissioning_moves_every_block_elsewhere_before_the_node_goes() {
    use granary_client::{DatanodeAdminAction, DatanodeState};
    let mut cl = MiniCluster::builder().datanodes(4).start().await.unwrap();
    let c = cl.client().await.unwrap();
    let bytes = data(30 * BLOCK as usize);
    put(&c, "/decom", &bytes).await;
    let before = holders(&c, "/decom").await;
    let node = (0..4)
        .max_by_key(|i| {
            before
                .iter()
                .filter(|h| h.contains(cl.datanode(*i).uuid()))
                .count()
        })
        .unwrap();
    let uuid = cl.datanode(node).uuid().to_string();
    let addr = cl.datanode(node).ctx.id.rpc_addr.clone();
    // Only the superuser may, and unknown nodes are named.
    let alice = cl.client_as("alice").await.unwrap();
    assert!(
        alice
            .set_datanode_admin_state(&addr, DatanodeAdminAction::Decommission)
            .await
            .is_err()
    );
    let e = c
        .set_datanode_admin_state("10.9.9.9:1", DatanodeAdminAction::Decommission)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no datanode \"10.9.9.9:1\""), "{e}");

    let info = c
        .set_datanode_admin_state(&addr, DatanodeAdminAction::Decommission)
        .await
        .unwrap();
    assert_eq!(info.state, DatanodeState::Decommissioning);
    wait_for(20, "node decommissioned", || async {
        c.datanode_report()
            .await
            .unwrap()
            .iter()
            .any(|d| d.id.uuid == uuid && d.state == DatanodeState::Decommissioned)
    })
    .await;
    // No new block goes to it while it is out of service.
    put(&c, "/after", &data(5 * BLOCK as usize)).await;
    assert!(holders(&c, "/after").await.iter().all(|h| !h.contains(&uuid)));
    // A restarted namenode remembers the operator's decision: the node
    // comes back out of service when it registers again.
    cl.restart_namenode().await.unwrap();
    cl.wait_for_datanodes(3).await.unwrap();
    cl.wait_for_safe_mode_exit().await.unwrap();
    let c = cl.client().await.unwrap();
    let state_of = |uuid: String| {
        let c = c.clone();
        async move {
            c.datanode_report()
                .await
                .unwrap()
                .iter()
                .find(|d| d.id.uuid == uuid)
                .map(|d| d.state)
        }
    };
    wait_for(20, "node registered again", || {
        let s = state_of(uuid.clone());
        async move { s.await.is_some() }
    })
    .await;
    assert_ne!(
        state_of(uuid.clone()).await,
        Some(DatanodeState::Live),
        "back in service after a restart"
    );
    wait_for(20, "node decommissioned again", || {
        let s = state_of(uuid.clone());
        async move { s.await == Some(DatanodeState::Decommissioned) }
    })
    .await;
    put(&c, "/after-restart", &data(5 * BLOCK as usize)).await;
    assert!(
        holders(&c, "/after-restart")
            .await
            .iter()
            .all(|h| !h.contains(&uuid))
    );
    // Stopping it now leaves every block with 3 replicas on the other nodes.
    cl.stop_datanode(node).await.unwrap();
    let others: HashSet<String> = (0..4)
        .filter(|i| *i != node)
        .map(|i| cl.datanode(i).uuid().to_string())
        .collect();
    for h in holders(&c, "/decom").await {
        assert_eq!(h.iter().filter(|u| others.contains(*u)).count(), 3, "{h:?}");
    }
    assert_eq!(get(&c, "/decom").await, bytes);
}
