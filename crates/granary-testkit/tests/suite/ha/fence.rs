//! A deposed leader's commands: a namenode that led in an older term and
//! never learned of its fall (cut off from the other namenodes, still
//! reaching datanodes) keeps telling datanodes it is active. Datanodes talk
//! to every namenode and remember the newest term that claimed leadership;
//! they must drop such a namenode's commands, above all its deletions.
//!
//! The group's leader is made to step down for real (a hand-over raises the
//! term); an in-process namenode then plays the deposed leader to a real
//! datanode process, claiming the old term and ordering the deletion of a
//! replica that datanode holds.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;

use granary_proto::block_report_protocol_server::{BlockReportProtocol, BlockReportProtocolServer};
use granary_proto::datanode_protocol_server::{DatanodeProtocol, DatanodeProtocolServer};
use tonic::{Request, Response, Status};

use super::*;

/// A namenode that registers any datanode and claims, in every heartbeat
/// reply, to lead in the term the test sets, with the commands it queued.
#[derive(Clone, Default)]
struct Impostor {
    cluster_id: String,
    term: Arc<AtomicU64>,
    commands: Arc<std::sync::Mutex<Vec<pb::DatanodeCommand>>>,
    /// Heartbeat replies that carried commands.
    sent: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl DatanodeProtocol for Impostor {
    async fn version(&self, _: Request<pb::VersionRequest>) -> Result<Response<pb::VersionResponse>, Status> {
        Ok(Response::new(pb::VersionResponse {
            cluster_id: self.cluster_id.clone(),
        }))
    }

    async fn register(
        &self,
        _: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        Ok(Response::new(pb::RegisterResponse {
            cluster_id: self.cluster_id.clone(),
            heartbeat_interval_secs: 1,
            block_report_interval_ms: 3_600_000,
            session: "impostor-session".into(),
            ..Default::default()
        }))
    }

    async fn heartbeat(
        &self,
        _: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let commands = self.commands.lock().expect("lock").clone();
        if !commands.is_empty() {
            self.sent.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Response::new(pb::HeartbeatResponse {
            commands,
            block_keys: Vec::new(),
            active: true,
            term: self.term.load(Ordering::SeqCst),
        }))
    }

    async fn incremental_block_report(
        &self,
        _: Request<pb::IncrementalBlockReportRequest>,
    ) -> Result<Response<pb::IncrementalBlockReportResponse>, Status> {
        Ok(Response::new(pb::IncrementalBlockReportResponse {}))
    }
}

#[tonic::async_trait]
impl BlockReportProtocol for Impostor {
    async fn block_report(
        &self,
        _: Request<pb::BlockReportRequest>,
    ) -> Result<Response<pb::BlockReportResponse>, Status> {
        Ok(Response::new(pb::BlockReportResponse::default()))
    }
}

impl Impostor {
    async fn serve(&self) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let router = tonic::transport::Server::builder()
            .add_service(DatanodeProtocolServer::new(self.clone()))
            .add_service(BlockReportProtocolServer::new(self.clone()));
        tokio::spawn(router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)));
        addr
    }
}

/// Whether the datanode at `rpc` holds a replica of `path`'s first block,
/// as the group's leader knows from block reports.
async fn holds(c: &DfsClient, path: &str, rpc: &str) -> Option<pb::ExtendedBlock> {
    let locs = c.block_locations(path, 0, 1).await.expect("locations");
    let b = locs.blocks.first()?;
    b.locations
        .iter()
        .any(|d| d.id.rpc_addr == rpc)
        .then_some(pb::ExtendedBlock {
            block_id: b.block.id.0,
            generation_stamp: b.block.generation_stamp,
            num_bytes: b.block.num_bytes,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datanodes_drop_a_deposed_leaders_deletions() {
    let g = Group::start(3);
    let (first, _) = g.wait_leader(Duration::from_secs(30)).await;
    let old_term = g.status(first).await.expect("leader answers").term;
    let addrs = g.rpcs.join(",");
    let c = DfsClient::connect_lazy(&addrs, Identity::new("hdfs")).expect("client");

    // A real step-down: leadership moves on, and the term with it.
    let next = (first + 1) % 3;
    c.transfer_leadership(&format!("nn{}", next + 1))
        .await
        .expect("hand-over");
    let new_term = g.status(next).await.expect("new leader answers").term;
    assert!(new_term > old_term, "term {old_term} -> {new_term}");

    let impostor = Impostor {
        cluster_id: "CID-ha-test".into(),
        term: Arc::new(AtomicU64::new(old_term)),
        ..Default::default()
    };
    let fake = impostor.serve().await;

    // A fourth datanode, reporting to the group and to the impostor.
    let (_dn, rpc) = g.spawn_datanode("dn-fenced", &format!("{addrs},{fake}"));
    let t = Instant::now();
    while !c
        .datanode_report()
        .await
        .expect("report")
        .iter()
        .any(|d| d.id.rpc_addr == rpc)
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the datanode never registered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A file with a replica on every datanode, the fourth included.
    let path = "/fence/f";
    let opts = CreateOptions {
        create_parent: true,
        replication: 4,
        ..Default::default()
    };
    let data = content(9, 9);
    let mut w = c.create(path, opts).await.expect("create");
    w.write_all(&data).await.expect("write");
    w.close().await.expect("close");
    let t = Instant::now();
    let block = loop {
        if let Some(b) = holds(&c, path, &rpc).await {
            break b;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the fourth datanode never reported its replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The deposed leader orders the replica deleted, heartbeat after heartbeat.
    *impostor.commands.lock().expect("lock") = vec![pb::DatanodeCommand {
        command: Some(pb::datanode_command::Command::Invalidate(pb::InvalidateCommand {
            blocks: vec![block],
        })),
    }];
    let t = Instant::now();
    while impostor.sent.load(Ordering::SeqCst) < 4 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the datanode stopped heartbeating to the impostor"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        holds(&c, path, &rpc).await.is_some(),
        "a deposed leader (term {old_term}, the group is at {new_term}) had a replica deleted"
    );
    let r = c.open(path).await.expect("open");
    assert_eq!(
        r.read_at(0, data.len()).await.expect("read").as_ref(),
        data.as_slice()
    );

    // The same order from a namenode claiming the newest term is obeyed:
    // what kept the replica was the term, nothing else.
    impostor.term.store(new_term + 1, Ordering::SeqCst);
    let t = Instant::now();
    while holds(&c, path, &rpc).await.is_some() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "an order claiming the newest term was not obeyed either: the test proves nothing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
