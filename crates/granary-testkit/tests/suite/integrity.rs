//! Holes that lost, destroyed or exposed data (issue 18's findings 1-6),
//! each tried the way an attacker or an unlucky operator tried it: a
//! stranger registering as a datanode, corrupt-replica reports that lie,
//! the only copy of a block found corrupt, hsync'd bytes across datanode
//! restarts and kill -9, replicas truncated on disk, and a reader that
//! exits right after finding a corrupt replica.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use granary_client::{CreateOptions, DfsClient};
use granary_common::daemon_auth::{self, ClusterSecret, SESSION_METADATA};
use granary_proto as pb;
use granary_proto::block_report_protocol_client::BlockReportProtocolClient;
use granary_proto::datanode_protocol_client::DatanodeProtocolClient;
use granary_testkit::MiniCluster;
use granary_testkit::fixtures::{get, holders, located_blocks, pseudo_random, put, wait_for};

const BLOCK: u64 = 64 * 1024;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn stranger_id(uuid: &str) -> pb::DatanodeId {
    pb::DatanodeId {
        uuid: uuid.into(),
        hostname: "evil".into(),
        rpc_addr: "127.0.0.1:9".into(),
        http_addr: "127.0.0.1:10".into(),
        rack: "/default-rack".into(),
    }
}

fn register_request(
    secret: Option<&ClusterSecret>,
    cluster_id: &str,
    id: pb::DatanodeId,
    node_key: &[u8],
) -> pb::RegisterRequest {
    pb::RegisterRequest {
        proof: secret.map(|s| daemon_auth::prove(s, cluster_id, &id, node_key, now_ms())),
        id: Some(id),
        cluster_id: cluster_id.into(),
        storages: vec![],
        software_version: "test".into(),
        node_key: node_key.to_vec(),
    }
}

async fn datanode_rpc(cl: &MiniCluster) -> DatanodeProtocolClient<tonic::transport::Channel> {
    DatanodeProtocolClient::connect(format!("http://{}", cl.namenode_addr()))
        .await
        .unwrap()
}

fn with_session<T>(session: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert(SESSION_METADATA, session.parse().unwrap());
    r
}

/// A writer of a new file with `BLOCK`-sized blocks.
async fn writer_of(c: &DfsClient, path: &str) -> granary_client::FileWriter {
    c.create(
        path,
        CreateOptions {
            block_size: BLOCK,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

fn cluster_secret(cl: &MiniCluster) -> ClusterSecret {
    ClusterSecret::load(&cl.namenode_data_dir().join("cluster-secret")).unwrap()
}

/// Finding 1: anyone could register as a datanode (and get the block-token
/// key), or take a live datanode's uuid over with another address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_holders_of_the_cluster_secret_register_and_a_uuid_stays_with_its_node() {
    let cl = MiniCluster::builder().datanodes(3).start().await.unwrap();
    let c = cl.client().await.unwrap();
    let bytes = pseudo_random(100_000, 1);
    put(&c, "/kept", &bytes, BLOCK).await;
    let cid = c.server_defaults().await.unwrap().cluster_id;
    let secret = cluster_secret(&cl);
    let mut nn = datanode_rpc(&cl).await;
    let code = |r: Result<tonic::Response<pb::RegisterResponse>, tonic::Status>| r.map(|_| ()).unwrap_err();

    // No proof, a wrong secret, no cluster id: refused, and no keys handed out.
    let e = code(
        nn.register(register_request(
            None,
            &cid,
            stranger_id("s1"),
            b"0123456789abcdef",
        ))
        .await,
    );
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("no proof"), "{}", e.message());
    let wrong = ClusterSecret::from_bytes(vec![b'x'; 64]);
    let e = code(
        nn.register(register_request(
            Some(&wrong),
            &cid,
            stranger_id("s1"),
            b"0123456789abcdef",
        ))
        .await,
    );
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(e.message().contains("does not match"), "{}", e.message());
    let e = code(
        nn.register(register_request(
            Some(&secret),
            "",
            stranger_id("s1"),
            b"0123456789abcdef",
        ))
        .await,
    );
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("belongs to cluster"), "{}", e.message());

    // A daemon with the secret registers; replaying its exact request is refused.
    let req = register_request(Some(&secret), &cid, stranger_id("s1"), b"0123456789abcdef");
    let reg = nn.register(req.clone()).await.unwrap().into_inner();
    assert!(!reg.session.is_empty() && !reg.block_keys.is_empty());
    let e = code(nn.register(req).await);
    assert!(e.message().contains("already used"), "{}", e.message());

    // Even with the secret, a live datanode's uuid cannot be taken by another node key.
    let victim = cl.datanode(0).uuid().to_string();
    let mut moved = stranger_id(&victim);
    moved.http_addr = "127.0.0.1:11".into();
    let e = code(
        nn.register(register_request(Some(&secret), &cid, moved, b"another-node-key"))
            .await,
    );
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(
        e.message().contains("bound to another node key"),
        "{}",
        e.message()
    );
    let report = c.datanode_report().await.unwrap();
    let info = report.iter().find(|d| d.id.uuid == victim).unwrap();
    assert_eq!(info.id.http_addr, cl.datanode(0).ctx.id.http_addr);

    // Calls without a session are refused before their message is read; a
    // session speaks only for its own datanode.
    let e = nn
        .heartbeat(pb::HeartbeatRequest {
            datanode_uuid: victim.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let mut reports = BlockReportProtocolClient::connect(format!("http://{}", cl.namenode_addr()))
        .await
        .unwrap();
    let e = reports
        .block_report(pb::BlockReportRequest {
            datanode_uuid: victim.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let e = nn
        .incremental_block_report(with_session(
            &reg.session,
            pb::IncrementalBlockReportRequest {
                datanode_uuid: victim.clone(),
                received: vec![pb::ExtendedBlock {
                    block_id: 1,
                    generation_stamp: u64::MAX,
                    num_bytes: 0,
                }],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(e.message().contains("belongs to datanode s1"), "{}", e.message());

    // Nothing stored changed.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(holders(&c, "/kept").await.iter().all(|h| h.len() == 3));
    assert_eq!(get(&c, "/kept").await, bytes);
}

/// Block keys roll (here every 400 ms): datanodes get each new key with
/// their heartbeats and keep accepting tokens of keys still valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_keys_roll_without_breaking_reads_or_writes() {
    let cl = MiniCluster::builder()
        .datanodes(3)
        .namenode_config(|c| {
            c.block_tokens.key_update_interval_ms = 400;
            c.block_tokens.lifetime_ms = 1_500;
        })
        .start()
        .await
        .unwrap();
    let c = cl.client().await.unwrap();
    let started = tokio::time::Instant::now();
    let first_keys = cl.datanode(0).ctx.block_keys();
    for round in 0..8 {
        let bytes = pseudo_random(3 * BLOCK as usize + 7, round);
        let path = format!("/roll{round}");
        put(&c, &path, &bytes, BLOCK).await;
        assert_eq!(get(&c, &path).await, bytes);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The first key signed for 400 ms and its tokens lived 1.5 s more.
    tokio::time::sleep_until(started + Duration::from_millis(2_500)).await;
    let now_keys = cl.datanode(0).ctx.block_keys();
    let ids = |k: &[pb::BlockKey]| k.iter().map(|k| k.id).collect::<Vec<_>>();
    assert!(
        now_keys.iter().all(|k| k.id != first_keys[0].id)
            && now_keys
                .iter()
                .filter(|k| first_keys.iter().all(|f| f.id != k.id))
                .count()
                >= 3,
        "keys did not roll on the datanodes: {:?} then {:?}",
        ids(&first_keys),
        ids(&now_keys)
    );
}

/// Finding 2: a ReportBadBlocks from anyone deleted every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_block_reports_need_a_read_token_and_never_delete_good_replicas() {
    let cl = MiniCluster::builder().datanodes(3).start().await.unwrap();
    let c = cl.client().await.unwrap();
    let bytes = pseudo_random(200_000, 2);
    put(&c, "/victim", &bytes, BLOCK).await;
    let lb = located_blocks(&c, "/victim").await;
    let mut nn = c.rpc();
    for b in &lb.blocks {
        for l in &b.locations {
            let uuid = l.id.as_ref().unwrap().uuid.clone();
            // No token, a later generation stamp: refused.
            let mut forged = b.block.unwrap();
            forged.generation_stamp = u64::MAX;
            let e = nn
                .report_bad_blocks(c.request(pb::ReportBadBlocksRequest {
                    replicas: vec![pb::BadReplica {
                        block: Some(forged),
                        datanode_uuid: uuid.clone(),
                        reason: "attack".into(),
                        access_token: vec![],
                    }],
                }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
            // The genuine read token but a generation it was not issued for: refused.
            let e = nn
                .report_bad_blocks(c.request(pb::ReportBadBlocksRequest {
                    replicas: vec![pb::BadReplica {
                        block: Some(forged),
                        datanode_uuid: uuid.clone(),
                        reason: "attack".into(),
                        access_token: b.access_token.clone(),
                    }],
                }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
            // A reader that may read the block lies: accepted, verified by the datanode, kept.
            nn.report_bad_blocks(c.request(pb::ReportBadBlocksRequest {
                replicas: vec![pb::BadReplica {
                    block: b.block,
                    datanode_uuid: uuid,
                    reason: "a lie".into(),
                    access_token: b.access_token.clone(),
                }],
            }))
            .await
            .unwrap();
        }
    }
    // Several heartbeats and redundancy rounds later, every replica is still there.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let on_disk: usize = (0..3).map(|i| cl.datanode(i).ctx.storage.replica_count()).sum();
    assert_eq!(on_disk, 3 * lb.blocks.len());
    assert!(holders(&c, "/victim").await.iter().all(|h| h.len() == 3));
    assert_eq!(get(&c, "/victim").await, bytes);
}

/// Finding 3: one flipped byte in the only replica, then a read: the block
/// was deleted. The last replica is kept, marked corrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_replica_is_kept_when_it_is_found_corrupt() {
    let cl = MiniCluster::builder().datanodes(3).start().await.unwrap();
    let c = cl.client().await.unwrap();
    let bytes = pseudo_random(50_000, 3);
    let mut w = c
        .create(
            "/single",
            CreateOptions {
                replication: 1,
                block_size: BLOCK,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    w.write_all(&bytes).await.unwrap();
    w.shutdown().await.unwrap();
    let lb = c.block_locations("/single", 0, 0).await.unwrap();
    let blk = lb.blocks[0].block;
    let holder = lb.blocks[0].locations[0].id.uuid.clone();
    let dn = (0..3).find(|i| cl.datanode(*i).uuid() == holder).unwrap();
    let (data, meta) = cl.datanode(dn).ctx.storage.replica_paths(blk.id.0).unwrap();
    let mut raw = std::fs::read(&data).unwrap();
    raw[20_000] ^= 0x10;
    std::fs::write(&data, &raw).unwrap();

    let mut out = Vec::new();
    let err = c.open("/single").await.unwrap().read_to_end(&mut out).await;
    assert!(err.is_err(), "a corrupt only replica must not read as good");
    // The datanode verifies the report and the namenode marks the replica corrupt...
    wait_for(10, "replica marked corrupt", || async {
        c.block_locations("/single", 0, 0).await.unwrap().blocks[0].corrupt
    })
    .await;
    // ...and never deletes it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(data.exists() && meta.exists(), "the only replica was deleted");
    let lb = c.block_locations("/single", 0, 0).await.unwrap();
    assert!(lb.blocks[0].corrupt);
    assert_eq!(lb.blocks[0].locations[0].id.uuid, holder);
    assert_eq!(std::fs::read(&data).unwrap(), raw);
}

/// Finding 4: 4 KiB hsync'd to three datanodes, every datanode restarted,
/// recoverLease closed the file at length 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsynced_bytes_survive_a_restart_of_every_datanode() {
    let mut cl = MiniCluster::builder()
        .datanodes(3)
        .namenode_config(|c| c.leases.hard_limit_ms = 600_000)
        .start()
        .await
        .unwrap();
    let writer = cl.client().await.unwrap();
    let bytes = pseudo_random(4096, 4);
    let mut w = writer_of(&writer, "/synced").await;
    w.write_all(&bytes).await.unwrap();
    w.hsync().await.unwrap();
    for i in 0..3 {
        cl.restart_datanode(i).await.unwrap();
    }
    drop(w);
    cl.wait_for_datanodes(3).await.unwrap();
    let other = cl.client().await.unwrap();
    // Past the soft limit (1 s) another client recovers the lease.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    wait_for(20, "recoverLease closes /synced", || async {
        other.recover_lease("/synced").await.unwrap()
    })
    .await;
    assert_eq!(other.stat("/synced").await.unwrap().length, 4096);
    assert_eq!(get(&other, "/synced").await, bytes);
    wait_for(10, "three finalized replicas", || async {
        holders(&other, "/synced").await.iter().all(|h| h.len() == 3)
    })
    .await;
}

/// Finding 5: a finalized replica truncated on disk was served as good and
/// counted live. Both a cut data file (its checksums disagree) and a replica
/// cut consistently (only the namenode's length check can tell) are found
/// corrupt, never read, and replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_replicas_are_corrupt_and_replaced_not_served() {
    let mut cl = MiniCluster::builder().datanodes(4).start().await.unwrap();
    let c = cl.client().await.unwrap();
    for (path, cut_meta) in [("/cut-data", false), ("/cut-both", true)] {
        let bytes = pseudo_random(5000, 5);
        put(&c, path, &bytes, BLOCK).await;
        let lb = c.block_locations(path, 0, 0).await.unwrap();
        let blk = lb.blocks[0].block;
        // The replica readers try first.
        let victim = lb.blocks[0].locations[0].id.uuid.clone();
        let dn = (0..4).find(|i| cl.datanode(*i).uuid() == victim).unwrap();
        let (data, meta) = cl.datanode(dn).ctx.storage.replica_paths(blk.id.0).unwrap();
        cl.stop_datanode(dn).await.unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&data)
            .unwrap()
            .set_len(1024)
            .unwrap();
        if cut_meta {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&meta)
                .unwrap()
                .set_len(7 + 2 * 4)
                .unwrap();
        }
        cl.restart_datanode(dn).await.unwrap();
        wait_for(15, "the cut replica replaced by a good one elsewhere", || async {
            let h = &holders(&c, path).await[0];
            h.len() == 3 && !h.contains(&victim)
        })
        .await;
        assert_eq!(get(&c, path).await, bytes, "{path}");
        // With three good replicas, the corrupt one is deleted.
        wait_for(15, "the cut replica deleted", || async { !data.exists() }).await;
    }
}

/// Finding 6: a reader's report of a corrupt replica died with the reading
/// process. `granary fs cat` hits the only (corrupt) replica and exits; the
/// report must already have reached the namenode.
#[test]
fn a_reader_reports_a_corrupt_replica_before_it_exits() {
    use granary_testkit::binaries::{ProcessCluster, bin_path, find_replica};
    let c = ProcessCluster::start(
        1,
        &["--default-replication", "1", "--heartbeat-interval-ms", "300"],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(c.client());
    let bytes = pseudo_random(30_000, 6);
    rt.block_on(put(&client, "/one", &bytes, 1 << 20));
    let blk = rt.block_on(client.block_locations("/one", 0, 0)).unwrap().blocks[0].block;
    let data = find_replica(&c.datanode_dir(0), blk.id.0).unwrap();
    let mut raw = std::fs::read(&data).unwrap();
    raw[100] ^= 0x01;
    std::fs::write(&data, &raw).unwrap();
    let out = std::process::Command::new(bin_path("granary"))
        .args(["--namenode", &c.rpc, "fs", "cat", "/one"])
        .env("GRANARY_USER", "hdfs")
        .output()
        .unwrap();
    assert!(!out.status.success(), "cat of a corrupt only replica succeeded");
    // Nobody reads it again: only the report the exited reader sent can
    // make the datanode verify the replica and the namenode mark it.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let lb = rt.block_on(client.block_locations("/one", 0, 0)).unwrap();
        if lb.blocks[0].corrupt {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reader's report never arrived; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(data.exists(), "the only replica must be kept");
}

/// Finding 4 with real processes: hsync'd bytes survive every datanode being
/// killed with SIGKILL and started again, three times over.
#[test]
fn hsynced_bytes_survive_kill_9_of_every_datanode() {
    use granary_testkit::binaries::ProcessCluster;
    let mut c = ProcessCluster::start(
        3,
        &["--lease-soft-limit-ms", "1000", "--lease-hard-limit-ms", "600000"],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    for round in 0..3u64 {
        let writer = rt.block_on(c.client());
        let path = format!("/synced{round}");
        let bytes = pseudo_random(4096 + 1000 * round as usize, round);
        let mut w = rt
            .block_on(writer.create(
                &path,
                CreateOptions {
                    block_size: 1 << 20,
                    ..Default::default()
                },
            ))
            .unwrap();
        rt.block_on(async {
            w.write_all(&bytes).await.unwrap();
            w.hsync().await.unwrap();
        });
        for i in 0..3 {
            c.datanodes[i].kill9();
        }
        drop(w);
        for i in 0..3 {
            c.restart_datanode(i);
        }
        c.wait_registered(3);
        let other = rt.block_on(c.client());
        std::thread::sleep(Duration::from_millis(1100));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !rt.block_on(other.recover_lease(&path)).unwrap() {
            assert!(
                std::time::Instant::now() < deadline,
                "{path}: recoverLease never closed it"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(
            rt.block_on(other.stat(&path)).unwrap().length,
            bytes.len() as u64,
            "{path}"
        );
        assert_eq!(rt.block_on(get(&other, &path)), bytes, "{path}");
    }
}

/// A client that is still alive but stalled: recoverLease by another client
/// stops its pipelines, keeps what the datanodes hold, and closes the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_lease_of_a_stalled_writer_keeps_its_flushed_bytes() {
    let cl = MiniCluster::builder()
        .datanodes(3)
        .namenode_config(|c| c.leases.hard_limit_ms = 600_000)
        .start()
        .await
        .unwrap();
    let writer = cl.client().await.unwrap();
    let bytes = pseudo_random(BLOCK as usize + 3000, 8);
    let mut w = writer_of(&writer, "/stalled").await;
    w.write_all(&bytes).await.unwrap();
    w.hflush().await.unwrap();
    // The writer still holds its pipeline open (it hangs, say); recoverLease
    // (as HDFS's, it does not wait for the lease to expire) stops it.
    let c: DfsClient = cl.client().await.unwrap();
    wait_for(20, "recoverLease closes /stalled", || async {
        c.recover_lease("/stalled").await.unwrap()
    })
    .await;
    assert_eq!(c.stat("/stalled").await.unwrap().length, bytes.len() as u64);
    assert_eq!(get(&c, "/stalled").await, bytes);
    // The old writer cannot go on writing into the recovered file.
    let more = w.write_all(&[1u8; 1000]).await.and(w.shutdown().await);
    assert!(more.is_err(), "the recovered file took more writes");
    assert_eq!(get(&c, "/stalled").await, bytes);
}

/// A writer got a new generation stamp for a pipeline recovery and died
/// before any datanode took it: the namespace is a stamp ahead of every
/// replica. Lease recovery still keeps the synced bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsynced_bytes_survive_a_writer_dying_in_pipeline_recovery() {
    let cl = MiniCluster::builder()
        .datanodes(3)
        .namenode_config(|c| c.leases.hard_limit_ms = 600_000)
        .start()
        .await
        .unwrap();
    let writer = cl.client().await.unwrap();
    let bytes = pseudo_random(4096, 9);
    let mut w = writer_of(&writer, "/bumped").await;
    w.write_all(&bytes).await.unwrap();
    w.hsync().await.unwrap();
    let lb = writer.block_locations("/bumped", 0, 0).await.unwrap();
    let last = lb.last_block.as_ref().or(lb.blocks.last()).unwrap().block;
    let file_id = writer.stat("/bumped").await.unwrap().file_id.0;
    writer
        .rpc()
        .update_block_for_pipeline(writer.request(pb::UpdateBlockForPipelineRequest {
            path: "/bumped".into(),
            file_id,
            client_name: writer.client_name().into(),
            block: Some(last.into()),
        }))
        .await
        .unwrap();
    drop(w);
    let other = cl.client().await.unwrap();
    wait_for(20, "recoverLease closes /bumped", || async {
        other.recover_lease("/bumped").await.unwrap()
    })
    .await;
    assert_eq!(other.stat("/bumped").await.unwrap().length, 4096);
    assert_eq!(get(&other, "/bumped").await, bytes);
}

/// The namenode restarts while a writer is alive mid-block; then its lease
/// is recovered. The targets the block was sent to are kept with the
/// namespace, so the datanodes are asked and the synced bytes stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_after_a_namenode_restart_asks_the_blocks_targets() {
    let mut cl = MiniCluster::builder()
        .datanodes(3)
        .namenode_config(|c| c.leases.hard_limit_ms = 600_000)
        .start()
        .await
        .unwrap();
    let writer = cl.client().await.unwrap();
    let bytes = pseudo_random(BLOCK as usize + 5000, 10);
    let mut w = writer_of(&writer, "/alive").await;
    w.write_all(&bytes).await.unwrap();
    w.hsync().await.unwrap();
    cl.restart_namenode().await.unwrap();
    cl.wait_for_datanodes(3).await.unwrap();
    cl.wait_for_safe_mode_exit().await.unwrap();
    let other = cl.client().await.unwrap();
    wait_for(30, "recoverLease closes /alive", || async {
        other.recover_lease("/alive").await.unwrap()
    })
    .await;
    assert_eq!(other.stat("/alive").await.unwrap().length, bytes.len() as u64);
    assert_eq!(get(&other, "/alive").await, bytes);
    drop(w);
}
