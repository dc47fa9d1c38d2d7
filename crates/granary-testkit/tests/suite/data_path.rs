//! The data path on an in-process cluster of a namenode and three
//! datanodes: replicated writes, verified reads, failover, restarts, and
//! datanodes refusing bad pipeline input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use granary_client::{CreateOptions, DfsClient};
use granary_common::ErrorCode;
use granary_proto as pb;
use granary_testkit::MiniCluster;
use granary_testkit::fixtures::{get, pseudo_random};

const BLOCK: u64 = 256 * 1024;

async fn put(c: &DfsClient, path: &str, bytes: &[u8]) {
    let mut w = c
        .create(
            path,
            CreateOptions {
                block_size: BLOCK,
                create_parent: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Uneven writes, as real callers make them.
    for part in bytes.chunks(100_003) {
        w.write_all(part).await.unwrap();
    }
    w.shutdown().await.unwrap();
}

/// Every block of `path` has `n` replicas on `n` distinct datanodes.
async fn assert_replicas(c: &DfsClient, path: &str, n: usize) {
    let lb = c.block_locations(path, 0, 0).await.unwrap();
    for b in &lb.blocks {
        let nodes: HashSet<String> = b.locations.iter().map(|l| l.id.uuid.clone()).collect();
        assert_eq!(
            nodes.len(),
            n,
            "block at {} of {path}: {:?}",
            b.offset,
            b.locations
        );
    }
}

async fn cluster() -> MiniCluster {
    MiniCluster::builder().datanodes(3).start().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_of_every_size_with_three_replicas() {
    let cl = cluster().await;
    let c = cl.client().await.unwrap();
    let sizes = [
        0usize,
        1,
        511,
        512,
        BLOCK as usize,
        BLOCK as usize + 1,
        3 * BLOCK as usize + 12345,
    ];
    for (i, size) in sizes.into_iter().enumerate() {
        let path = format!("/rt/f{i}");
        let bytes = pseudo_random(size, i as u64);
        put(&c, &path, &bytes).await;
        let st = c.stat(&path).await.unwrap();
        assert_eq!(st.length, size as u64, "{path}");
        assert!(!st.under_construction);
        assert_eq!(get(&c, &path).await, bytes, "{path} ({size} bytes) differs");
        let lb = c.block_locations(&path, 0, 0).await.unwrap();
        assert_eq!(lb.blocks.len(), (size as u64).div_ceil(BLOCK) as usize, "{path}");
        assert_replicas(&c, &path, 3).await;
    }
}

/// Writes far larger and smaller than a packet, in every mix, with blocks
/// that are not a whole number of packets: the client cuts packets out of
/// large writes without copying them and completes packets begun by
/// earlier writes; every byte lands once, in order, in the right block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_small_writes_mixed_round_trip() {
    let cl = cluster().await;
    let c = cl.client().await.unwrap();
    let block = (1 << 20) + 3 * 512;
    let bytes = pseudo_random(5 * block as usize + 4321, 5);
    let mut w = c
        .create(
            "/mixed",
            CreateOptions {
                block_size: block,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let sizes = [1usize, 700_001, 300_000, 2_000_003, 5, 524_288, 1_048_577, 17];
    let mut at = 0;
    for n in sizes.iter().cycle() {
        if at == bytes.len() {
            break;
        }
        let end = (at + n).min(bytes.len());
        w.write_all(&bytes[at..end]).await.unwrap();
        at = end;
    }
    w.shutdown().await.unwrap();
    assert_eq!(c.stat("/mixed").await.unwrap().length, bytes.len() as u64);
    assert_eq!(get(&c, "/mixed").await, bytes, "/mixed differs");
    let lb = c.block_locations("/mixed", 0, 0).await.unwrap();
    let lens: Vec<u64> = lb.blocks.iter().map(|b| b.block.num_bytes).collect();
    assert_eq!(lens, vec![block, block, block, block, block, 4321]);
    assert_replicas(&c, "/mixed", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_positional_reads_and_flushes() {
    let cl = cluster().await;
    let c = cl.client().await.unwrap();
    let bytes = pseudo_random(2 * BLOCK as usize + 777, 9);
    let mut w = c
        .create(
            "/s",
            CreateOptions {
                block_size: BLOCK,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Flushes that end mid-chunk: the chunk is rewritten when more data follows.
    w.write_all(&bytes[..1000]).await.unwrap();
    w.hflush().await.unwrap();
    w.write_all(&bytes[1000..70_000]).await.unwrap();
    w.hsync().await.unwrap();
    w.write_all(&bytes[70_000..]).await.unwrap();
    assert_eq!(w.close().await.unwrap(), bytes.len() as u64);
    assert_eq!(get(&c, "/s").await, bytes);

    let mut r = c.open("/s").await.unwrap();
    for pos in [0u64, 1, 511, 512, BLOCK - 3, BLOCK, 2 * BLOCK + 700] {
        r.seek(std::io::SeekFrom::Start(pos)).await.unwrap();
        let mut buf = vec![0u8; 64];
        let n = r.read(&mut buf).await.unwrap();
        assert!(n > 0);
        assert_eq!(&buf[..n], &bytes[pos as usize..pos as usize + n], "at {pos}");
    }
    let mid = r.read_at(BLOCK - 10, 20).await.unwrap();
    assert_eq!(&mid[..], &bytes[BLOCK as usize - 10..BLOCK as usize + 10]);
    r.seek(std::io::SeekFrom::End(-5)).await.unwrap();
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).await.unwrap();
    assert_eq!(tail, &bytes[bytes.len() - 5..]);
    assert!(r.seek(std::io::SeekFrom::Current(-1_000_000_000)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_replica_is_never_returned_and_is_reported() {
    let cl = cluster().await;
    let c = cl.client().await.unwrap();
    let bytes = pseudo_random(100_000, 3);
    put(&c, "/c", &bytes).await;
    let lb = c.block_locations("/c", 0, 0).await.unwrap();
    let blk = lb.blocks[0].block;
    // Flip a byte in the replica the reader tries first.
    let first = lb.blocks[0].locations[0].id.uuid.clone();
    let dn = (0..3).find(|i| cl.datanode(*i).uuid() == first).unwrap();
    let (data_path, _) = cl.datanode(dn).ctx.storage.replica_paths(blk.id.0).unwrap();
    let mut raw = std::fs::read(&data_path).unwrap();
    raw[50_000] ^= 0xFF;
    std::fs::write(&data_path, &raw).unwrap();

    assert_eq!(
        get(&c, "/c").await,
        bytes,
        "the read must come from a good replica"
    );
    // The namenode was told: that replica is no longer offered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let holders: Vec<String> = c.block_locations("/c", 0, 0).await.unwrap().blocks[0]
            .locations
            .iter()
            .map(|l| l.id.uuid.clone())
            .collect();
        if !holders.contains(&first) {
            assert_eq!(holders.len(), 2);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "corrupt replica still offered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_a_stopped_datanode() {
    let mut cl = cluster().await;
    let c = cl.client().await.unwrap();
    let bytes = pseudo_random(3 * BLOCK as usize, 4);
    put(&c, "/d", &bytes).await;
    cl.stop_datanode(0).await.unwrap();
    assert_eq!(get(&c, "/d").await, bytes);
    cl.stop_datanode(1).await.unwrap();
    assert_eq!(get(&c, "/d").await, bytes, "one replica left is enough");
}

/// Polls until every block of `path` has a known location (after restarts).
async fn wait_located(c: &DfsClient, path: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(lb) = c.block_locations(path, 0, 0).await
            && lb.blocks.iter().all(|b| !b.locations.is_empty())
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path}: blocks never reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_datanodes_and_the_namenode_loses_nothing() {
    let mut cl = cluster().await;
    let c = cl.client().await.unwrap();
    let a = pseudo_random(2 * BLOCK as usize + 5, 5);
    let b = pseudo_random(1234, 6);
    put(&c, "/keep/a", &a).await;
    put(&c, "/keep/b", &b).await;
    for i in 0..3 {
        cl.restart_datanode(i).await.unwrap();
    }
    cl.restart_namenode().await.unwrap();
    cl.wait_for_datanodes(3).await.unwrap();
    cl.wait_for_safe_mode_exit().await.unwrap();
    let c = cl.client().await.unwrap();
    wait_located(&c, "/keep/a").await;
    wait_located(&c, "/keep/b").await;
    assert_eq!(get(&c, "/keep/a").await, a);
    assert_eq!(get(&c, "/keep/b").await, b);
    // And the cluster still takes new writes.
    put(&c, "/keep/c", &b).await;
    assert_eq!(get(&c, "/keep/c").await, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_files_are_removed_from_datanodes() {
    let cl = cluster().await;
    let c = cl.client().await.unwrap();
    put(&c, "/del", &pseudo_random(BLOCK as usize * 2, 8)).await;
    let ids: Vec<u64> = c
        .block_locations("/del", 0, 0)
        .await
        .unwrap()
        .blocks
        .iter()
        .map(|b| b.block.id.0)
        .collect();
    c.delete("/del", false).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while (0..3).any(|i| ids.iter().any(|id| cl.datanode(i).ctx.storage.get(*id).is_some())) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replicas of a deleted file remain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

mod bad_input {
    use super::*;
    use granary_common::data_transfer;

    /// Allocates a real block (and token) for a one-node pipeline.
    async fn allocate(cl: &MiniCluster, c: &DfsClient, path: &str) -> pb::LocatedBlock {
        let st = c
            .rpc()
            .create(c.request(pb::CreateRequest {
                path: path.into(),
                client_name: c.client_name().into(),
                replication: 1,
                block_size: BLOCK,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        let _ = cl;
        c.rpc()
            .add_block(c.request(pb::AddBlockRequest {
                path: path.into(),
                file_id: st.file_id,
                client_name: c.client_name().into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .block
            .unwrap()
    }

    /// A pipeline header as a writer sends it, naming the nodes after the
    /// receiving one.
    fn header(
        block: Option<pb::ExtendedBlock>,
        token: Vec<u8>,
        stage: pb::PipelineStage,
        downstream: &[&str],
    ) -> pb::WriteBlockHeader {
        pb::WriteBlockHeader {
            block,
            downstream: downstream
                .iter()
                .map(|a| pb::DatanodeId {
                    rpc_addr: a.to_string(),
                    ..Default::default()
                })
                .collect(),
            client_name: "test".into(),
            stage: stage as i32,
            bytes_per_checksum: 512,
            access_token: token,
        }
    }

    /// Sends a header and `packets`; returns the first error status seen.
    async fn send(lb: &pb::LocatedBlock, token: Vec<u8>, packets: Vec<pb::Packet>) -> Option<tonic::Status> {
        let target = lb.locations[0].id.clone().unwrap();
        let header = header(lb.block, token, pb::PipelineStage::Create, &[]);
        let (tx, mut acks) = match data_transfer::open_pipeline(
            &Default::default(),
            &target.rpc_addr,
            header,
            16,
            data_transfer::REPLY_TIMEOUT,
        )
        .await
        {
            Ok(p) => p,
            Err(st) => return Some(st),
        };
        for p in packets {
            let _ = tx.send(p).await;
        }
        drop(tx);
        loop {
            match acks.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(st) => return Some(st),
            }
        }
    }

    fn packet(seqno: u64, offset: u64, bytes: &[u8], last: bool) -> pb::Packet {
        pb::Packet {
            seqno,
            offset_in_block: offset,
            data: bytes.to_vec().into(),
            checksums: granary_common::checksum::compute(bytes, 512),
            last_packet_in_block: last,
            sync: false,
            heartbeat: false,
        }
    }

    fn assert_no_replica(cl: &MiniCluster, lb: &pb::LocatedBlock) {
        let id = lb.block.as_ref().unwrap().block_id;
        for i in 0..cl.datanode_count() {
            assert!(
                cl.datanode(i).ctx.storage.get(id).is_none(),
                "a replica of rejected block {id} was kept"
            );
            let rbw = cl.base_dir().join(format!("dn{i}/current/rbw"));
            assert_eq!(
                std::fs::read_dir(rbw).unwrap().count(),
                0,
                "partial replica left in rbw"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn datanodes_reject_bad_packets_and_keep_nothing() {
        let cl = cluster().await;
        let c = cl.client().await.unwrap();
        let d = pseudo_random(2048, 1);

        let lb = allocate(&cl, &c, "/bad1").await;
        let mut p = packet(0, 0, &d, false);
        p.checksums[2] ^= 1;
        let st = send(&lb, lb.access_token.clone(), vec![p, packet(1, 2048, &[], true)])
            .await
            .expect("must fail");
        assert_eq!(ErrorCode::from_status(&st), ErrorCode::Checksum, "{st:?}");
        assert!(st.message().contains("checksum mismatch"), "{}", st.message());
        assert_no_replica(&cl, &lb);

        let lb = allocate(&cl, &c, "/bad2").await;
        let st = send(
            &lb,
            lb.access_token.clone(),
            vec![
                packet(0, 0, &d[..512], false),
                packet(2, 512, &d[512..1024], true),
            ],
        )
        .await
        .expect("must fail");
        assert!(
            st.message()
                .contains("out-of-order packet: expected seqno 1, got 2"),
            "{}",
            st.message()
        );
        assert_no_replica(&cl, &lb);

        let lb = allocate(&cl, &c, "/bad3").await;
        let mut p = packet(0, 0, &d, true);
        p.checksums.truncate(4);
        let st = send(&lb, lb.access_token.clone(), vec![p])
            .await
            .expect("must fail");
        assert!(st.message().contains("checksum bytes"), "{}", st.message());
        assert_no_replica(&cl, &lb);

        // A heartbeat carrying data: refused, not written.
        let lb = allocate(&cl, &c, "/bad3b").await;
        let mut beat = packet(0, 0, &d[..512], false);
        beat.heartbeat = true;
        let st = send(&lb, lb.access_token.clone(), vec![beat, packet(0, 0, &d, true)])
            .await
            .expect("must fail");
        assert!(
            st.message().contains("a heartbeat packet carries data"),
            "{}",
            st.message()
        );
        assert_no_replica(&cl, &lb);
        // Heartbeats between packets take no seqno and are not acked.
        let lb = allocate(&cl, &c, "/beats").await;
        let beat = pb::Packet {
            heartbeat: true,
            ..Default::default()
        };
        let st = send(
            &lb,
            lb.access_token.clone(),
            vec![
                beat.clone(),
                packet(0, 0, &d, false),
                beat,
                packet(1, 2048, &[], true),
            ],
        )
        .await;
        assert!(st.is_none(), "{st:?}");

        // A block the namenode never allocated: no valid token.
        let lb = allocate(&cl, &c, "/bad4").await;
        let mut forged = lb.clone();
        forged.block.as_mut().unwrap().block_id += 1000;
        let st = send(&forged, lb.access_token.clone(), vec![packet(0, 0, &d, true)])
            .await
            .expect("must fail");
        assert_eq!(st.code(), tonic::Code::PermissionDenied, "{st:?}");
        let st = send(&lb, vec![], vec![packet(0, 0, &d, true)])
            .await
            .expect("must fail");
        assert!(st.message().contains("no block access token"), "{}", st.message());
        assert_no_replica(&cl, &forged);

        // A stream that ends before the last packet leaves nothing finalized:
        // the half-written replica is only kept aside for pipeline recovery.
        let lb = allocate(&cl, &c, "/bad5").await;
        let st = send(&lb, lb.access_token.clone(), vec![packet(0, 0, &d, false)]).await;
        assert!(st.is_some());
        let id = lb.block.as_ref().unwrap().block_id;
        for i in 0..cl.datanode_count() {
            assert!(
                cl.datanode(i).ctx.storage.get(id).is_none(),
                "an unfinished replica was finalized"
            );
        }
        assert!((0..cl.datanode_count()).any(|i| cl.datanode(i).ctx.recoverable.lock().contains_key(&id)));
        // Nobody recovers it: it waits on disk for lease recovery (its
        // bytes may be all a writer's hsync left), still not readable...
        for i in 0..cl.datanode_count() {
            cl.datanode(i).ctx.sweep_recoverable(std::time::Duration::ZERO);
        }
        assert!((0..cl.datanode_count()).any(|i| cl.datanode(i).ctx.storage.waiting(id).is_some()));
        assert!((0..cl.datanode_count()).all(|i| cl.datanode(i).ctx.storage.get(id).is_none()));
        // ...until its file goes: then the namenode has it deleted.
        c.delete("/bad5", false).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while (0..cl.datanode_count()).any(|i| cl.datanode(i).ctx.storage.waiting(id).is_some()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the parked replica of a deleted file was kept"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_no_replica(&cl, &lb);

        // The same tools that failed above succeed with good input.
        let lb = allocate(&cl, &c, "/good").await;
        assert!(
            send(
                &lb,
                lb.access_token.clone(),
                vec![packet(0, 0, &d, false), packet(1, 2048, &[], true)]
            )
            .await
            .is_none()
        );
        let id = lb.block.as_ref().unwrap().block_id;
        assert!((0..3).any(|i| cl.datanode(i).ctx.storage.get(id).is_some()));
    }

    /// Opens a pipeline connection, sends `bytes` after the preamble, and
    /// returns the datanode's error reply.
    async fn refusal(addr: std::net::SocketAddr, bytes: Vec<u8>) -> pb::TransferError {
        use prost::Message;
        use tokio_stream::StreamExt;
        let (rd, mut wr) = tokio::net::TcpStream::connect(addr).await.unwrap().into_split();
        wr.write_all(data_transfer::PREAMBLE).await.unwrap();
        wr.write_all(&bytes).await.unwrap();
        let mut frames = tokio_util::codec::FramedRead::new(rd, data_transfer::FrameCodec::default());
        let f = tokio::time::timeout(Duration::from_secs(10), frames.next())
            .await
            .expect("an answer in time")
            .expect("an answer before the connection closes")
            .unwrap();
        match pb::WriteBlockReply::decode(f.message).unwrap().msg {
            Some(pb::write_block_reply::Msg::Error(e)) => e,
            other => panic!("expected an error reply, got {other:?}"),
        }
    }

    /// The framed header of a one-node pipeline for `lb`'s block.
    fn header_frame(lb: &pb::LocatedBlock, stage: pb::PipelineStage) -> Vec<u8> {
        use prost::Message;
        let h = header(lb.block, lb.access_token.clone(), stage, &[]);
        let req = pb::WriteBlockRequest {
            msg: Some(pb::write_block_request::Msg::Header(h)),
        };
        frame(&req.encode_to_vec(), &[])
    }

    fn frame(message: &[u8], data: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&(message.len() as u32).to_be_bytes());
        f.extend_from_slice(&(data.len() as u32).to_be_bytes());
        f.extend_from_slice(message);
        f.extend_from_slice(data);
        f
    }

    /// A connection that breaks the pipeline's framing or message order is
    /// answered with an error naming the problem, and the port goes on
    /// serving writes and (gRPC) reads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_pipeline_connections_are_refused_with_the_reason() {
        use prost::Message;
        let cl = cluster().await;
        let addr = cl.datanode(0).rpc_addr;

        let e = refusal(addr, [0u32.to_be_bytes(), u32::MAX.to_be_bytes()].concat()).await;
        assert_eq!(e.code, ErrorCode::InvalidArgument.name());
        assert!(e.message.contains("over the limit"), "{}", e.message);

        let e = refusal(addr, frame(&[0xff; 5], &[])).await;
        assert_eq!(e.code, ErrorCode::InvalidArgument.name());
        assert!(e.message.contains("undecodable write request"), "{}", e.message);

        let mut p = packet(0, 0, b"x", true);
        p.data = Default::default();
        let first = pb::WriteBlockRequest {
            msg: Some(pb::write_block_request::Msg::Packet(p)),
        };
        let e = refusal(addr, frame(&first.encode_to_vec(), b"x")).await;
        assert!(e.message.contains("must be a header"), "{}", e.message);

        let c = cl.client().await.unwrap();
        let lb = allocate(&cl, &c, "/too-early").await;
        let target: std::net::SocketAddr = lb.locations[0].id.as_ref().unwrap().rpc_addr.parse().unwrap();
        let mut p = packet(0, 0, &[7; 512], false);
        let data = std::mem::take(&mut p.data);
        let first = frame(
            &pb::WriteBlockRequest {
                msg: Some(pb::write_block_request::Msg::Packet(p)),
            }
            .encode_to_vec(),
            &data,
        );
        // A packet before the datanode said ready (here it would wait up to
        // 30 s for a half-written replica to recover).
        let mut bytes = header_frame(&lb, pb::PipelineStage::Recovery);
        bytes.extend(&first);
        let e = refusal(target, bytes).await;
        assert!(
            e.message.contains("before the pipeline was ready"),
            "{}",
            e.message
        );

        // Mid-block: a frame over the limit after a good header and packet.
        // The half-written replica goes, as for any bad packet.
        let lb = allocate(&cl, &c, "/oversized").await;
        let target: std::net::SocketAddr = lb.locations[0].id.as_ref().unwrap().rpc_addr.parse().unwrap();
        let (rd, mut wr) = tokio::net::TcpStream::connect(target).await.unwrap().into_split();
        wr.write_all(data_transfer::PREAMBLE).await.unwrap();
        wr.write_all(&header_frame(&lb, pb::PipelineStage::Create))
            .await
            .unwrap();
        let mut frames = tokio_util::codec::FramedRead::new(rd, data_transfer::FrameCodec::default());
        let e = loop {
            let f = tokio::time::timeout(
                Duration::from_secs(10),
                tokio_stream::StreamExt::next(&mut frames),
            )
            .await
            .expect("an answer in time")
            .expect("an error reply before the connection closes")
            .unwrap();
            match pb::WriteBlockReply::decode(f.message).unwrap().msg {
                Some(pb::write_block_reply::Msg::Ready(_)) => {
                    wr.write_all(&first).await.unwrap();
                    wr.write_all(&[0u32.to_be_bytes(), u32::MAX.to_be_bytes()].concat())
                        .await
                        .unwrap();
                }
                Some(pb::write_block_reply::Msg::Ack(_)) => continue,
                Some(pb::write_block_reply::Msg::Error(e)) => break e,
                None => panic!("an empty reply"),
            }
        };
        assert!(e.message.contains("over the limit"), "{}", e.message);
        let id = lb.block.as_ref().unwrap().block_id;
        granary_testkit::fixtures::wait_for(10, "the partial replica removed", || {
            let gone = (0..cl.datanode_count()).all(|i| {
                !cl.datanode(i).ctx.recoverable.lock().contains_key(&id)
                    && cl.datanode(i).ctx.storage.get(id).is_none()
            });
            async move { gone }
        })
        .await;
        assert_no_replica(&cl, &lb);

        let d = pseudo_random(300_000, 9);
        put(&c, "/after-bad-connections", &d).await;
        assert_eq!(get(&c, "/after-bad-connections").await, d);
    }

    /// A writer with nothing to send keeps a two-node pipeline open past
    /// the datanodes' socket timeout by heartbeat packets, which the first
    /// node passes to the second; then the block completes on both.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn heartbeats_keep_an_idle_pipeline_open_on_every_node() {
        let cl = MiniCluster::builder()
            .datanodes(2)
            .datanode_socket_timeout(500)
            .start()
            .await
            .unwrap();
        let c = cl.client().await.unwrap();
        let lb = allocate(&cl, &c, "/idle").await;
        let first = lb.locations[0].id.as_ref().unwrap().rpc_addr.clone();
        let second = (0..2)
            .map(|i| cl.datanode(i).rpc_addr.to_string())
            .find(|a| *a != first)
            .unwrap();
        let (tx, mut acks) = data_transfer::open_pipeline(
            &Default::default(),
            &first,
            header(
                lb.block,
                lb.access_token.clone(),
                pb::PipelineStage::Create,
                &[&second],
            ),
            16,
            data_transfer::REPLY_TIMEOUT,
        )
        .await
        .unwrap();
        let d = pseudo_random(1024, 3);
        tx.send(packet(0, 0, &d, false)).await.unwrap();
        // Three socket timeouts of nothing but heartbeats.
        for _ in 0..10 {
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            let beat = pb::Packet {
                heartbeat: true,
                ..Default::default()
            };
            tx.send(beat).await.unwrap();
        }
        tx.send(packet(1, 1024, &[], true)).await.unwrap();
        for seqno in 0..2 {
            let ack = acks.message().await.unwrap().expect("an ack");
            assert_eq!(ack.seqno, seqno, "heartbeats are not acked: {ack:?}");
            assert_eq!(ack.replies, vec![pb::AckStatus::Success as i32; 2], "{ack:?}");
        }
        let id = lb.block.unwrap().block_id;
        for i in 0..2 {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while cl.datanode(i).ctx.storage.get(id).is_none() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no finalized replica on datanode {i}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }

    /// A pipeline node that stops answering while its host still does (a
    /// stopped process) is reported by the node above it once that node's
    /// socket timeout passes, by address, so the writer drops the right
    /// node: one silent from the start, and one that goes silent after
    /// saying it is ready.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_pipeline_node_is_named_once_the_socket_timeout_passes() {
        use prost::Message;
        let cl = MiniCluster::builder()
            .datanodes(1)
            .datanode_socket_timeout(500)
            .start()
            .await
            .unwrap();
        let c = cl.client().await.unwrap();
        let lb = allocate(&cl, &c, "/silent").await;
        let target = lb.locations[0].id.as_ref().unwrap().rpc_addr.clone();

        // Takes connections (the kernel does) and never reads them.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap().to_string();
        let t = std::time::Instant::now();
        let err = data_transfer::open_pipeline(
            &Default::default(),
            &target,
            header(
                lb.block,
                lb.access_token.clone(),
                pb::PipelineStage::Create,
                &[&silent_addr],
            ),
            4,
            data_transfer::REPLY_TIMEOUT,
        )
        .await
        .err()
        .expect("the set-up fails");
        assert!(
            err.message().contains(&silent_addr) && err.message().contains("no answer in 500ms"),
            "{}",
            err.message()
        );
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

        // Says it is ready, then never acks.
        let lb = allocate(&cl, &c, "/goes-silent").await;
        let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake_addr = fake.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            use tokio_stream::StreamExt;
            let (s, _) = fake.accept().await.unwrap();
            let (mut rd, mut wr) = s.into_split();
            let mut preamble = [0u8; 8];
            rd.read_exact(&mut preamble).await.unwrap();
            let mut frames = tokio_util::codec::FramedRead::new(rd, data_transfer::FrameCodec::default());
            let header = frames.next().await.unwrap().unwrap();
            assert!(pb::WriteBlockRequest::decode(header.message).is_ok());
            let ready = pb::WriteBlockReply {
                msg: Some(pb::write_block_reply::Msg::Ready(pb::PipelineReady {})),
            };
            data_transfer::send_reply(&mut wr, &ready).await.unwrap();
            while frames.next().await.is_some() {}
        });
        let (tx, mut acks) = data_transfer::open_pipeline(
            &Default::default(),
            &target,
            header(
                lb.block,
                lb.access_token.clone(),
                pb::PipelineStage::Create,
                &[&fake_addr],
            ),
            4,
            data_transfer::REPLY_TIMEOUT,
        )
        .await
        .unwrap();
        tx.send(packet(0, 0, &[1; 1024], false)).await.unwrap();
        let ack = tokio::time::timeout(Duration::from_secs(10), acks.message())
            .await
            .expect("an answer well before the writer's own timeout")
            .unwrap()
            .expect("an ack");
        assert_eq!(
            ack.replies,
            vec![pb::AckStatus::Success as i32, pb::AckStatus::Error as i32]
        );
        assert!(
            ack.message.contains(&fake_addr) && ack.message.contains("no answer in 500ms"),
            "{}",
            ack.message
        );
    }

    /// A new generation stamp for `lb`'s block from the namenode, as a
    /// writer recovering its pipeline gets one.
    async fn new_stamp(c: &DfsClient, path: &str, lb: &pb::LocatedBlock) -> (pb::ExtendedBlock, Vec<u8>) {
        let file_id = c
            .rpc()
            .get_file_info(c.request(pb::GetFileInfoRequest { path: path.into() }))
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
            .file_id;
        let r = c
            .rpc()
            .update_block_for_pipeline(c.request(pb::UpdateBlockForPipelineRequest {
                path: path.into(),
                file_id,
                client_name: c.client_name().into(),
                block: lb.block,
            }))
            .await
            .unwrap()
            .into_inner();
        (r.block.unwrap(), r.access_token)
    }

    /// A recovery call cancelled while it holds the half-written replica
    /// (here: waiting for a downstream node that never answers) gives the
    /// replica back, so the writer's next recovery attempt still finds it
    /// and completes the block.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_recovery_keeps_the_replica_for_the_next_attempt() {
        let cl = cluster().await;
        let c = cl.client().await.unwrap();
        let d = pseudo_random(2048, 1);
        let lb = allocate(&cl, &c, "/recovered").await;
        let id = lb.block.as_ref().unwrap().block_id;
        // The first stream ends after one packet: the replica is set aside.
        assert!(
            send(&lb, lb.access_token.clone(), vec![packet(0, 0, &d, false)])
                .await
                .is_some()
        );
        let dn = (0..cl.datanode_count())
            .find(|&i| cl.datanode(i).ctx.recoverable.lock().contains_key(&id))
            .expect("the replica is kept for recovery");
        let target = lb.locations[0].id.as_ref().unwrap().rpc_addr.clone();

        // A downstream node that takes connections and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap().to_string();
        let (mut block, token) = new_stamp(&c, "/recovered", &lb).await;
        block.num_bytes = d.len() as u64;
        let plain = granary_common::net::Net::default();
        let call = data_transfer::open_pipeline(
            &plain,
            &target,
            header(Some(block), token, pb::PipelineStage::Recovery, &[&silent_addr]),
            4,
            data_transfer::REPLY_TIMEOUT,
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), call)
                .await
                .is_err(),
            "the recovery waits for its silent downstream"
        );
        // The writer went away while the datanode held the replica.
        let ctx = cl.datanode(dn).ctx.clone();
        granary_testkit::fixtures::wait_for(10, "the replica back in the recoverable set", || {
            let ctx = ctx.clone();
            async move { ctx.recoverable.lock().contains_key(&id) }
        })
        .await;

        // The next attempt, without the silent node, completes the block.
        let (mut block, token) = new_stamp(&c, "/recovered", &lb).await;
        block.num_bytes = d.len() as u64;
        let (tx, mut acks) = data_transfer::open_pipeline(
            &Default::default(),
            &target,
            header(Some(block), token, pb::PipelineStage::Recovery, &[]),
            4,
            data_transfer::REPLY_TIMEOUT,
        )
        .await
        .unwrap();
        tx.send(packet(0, d.len() as u64, &[], true)).await.unwrap();
        let ack = acks.message().await.unwrap().expect("the last packet is acked");
        assert_eq!(ack.replies, vec![pb::AckStatus::Success as i32]);
        let r = cl
            .datanode(dn)
            .ctx
            .storage
            .get(id)
            .expect("the replica is finalized");
        assert_eq!((r.gs, r.len), (block.generation_stamp, d.len() as u64));
    }
}
