//! A datanode that exists only as DatanodeProtocol calls: it registers
//! properly (with the cluster's secret) and reports what a test says, so a
//! test sees the namenode's side without a real data path.

use granary_common::daemon_auth::{self, ClusterSecret, SESSION_METADATA};
use granary_proto as pb;
use granary_proto::block_report_protocol_client::BlockReportProtocolClient;
use granary_proto::datanode_protocol_client::DatanodeProtocolClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::MiniCluster;

/// Adds a datanode's session to every call.
#[derive(Clone)]
pub struct Session(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Session {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert(SESSION_METADATA, self.0.clone());
        Ok(r)
    }
}

pub struct FakeDatanode {
    pub uuid: String,
    pub rpc: DatanodeProtocolClient<InterceptedService<Channel, Session>>,
    pub reports: BlockReportProtocolClient<InterceptedService<Channel, Session>>,
}

impl FakeDatanode {
    /// Registers datanode `uuid` (data address `rpc_addr`) with the cluster's namenode.
    pub async fn register(cl: &MiniCluster, uuid: &str, rpc_addr: &str) -> anyhow::Result<Self> {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", cl.namenode_addr()))?
            .connect()
            .await?;
        let mut plain = DatanodeProtocolClient::new(ch.clone());
        let cluster_id = plain
            .version(pb::VersionRequest {})
            .await?
            .into_inner()
            .cluster_id;
        let secret = ClusterSecret::load(&cl.namenode_data_dir().join("cluster-secret"))?;
        let id = pb::DatanodeId {
            uuid: uuid.into(),
            hostname: "localhost".into(),
            rpc_addr: rpc_addr.into(),
            http_addr: String::new(),
            rack: "/default-rack".into(),
        };
        let node_key = format!("fake-node-key-of-{uuid}").into_bytes();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64;
        let reg = plain
            .register(pb::RegisterRequest {
                proof: Some(daemon_auth::prove(&secret, &cluster_id, &id, &node_key, now)),
                id: Some(id),
                cluster_id,
                storages: vec![pb::StorageReport {
                    storage_id: "s1".into(),
                    path: "/data".into(),
                    capacity: 1 << 40,
                    dfs_used: 0,
                    remaining: 1 << 40,
                    failed: false,
                }],
                software_version: "test".into(),
                node_key,
            })
            .await?
            .into_inner();
        let session = Session(reg.session.parse()?);
        Ok(Self {
            uuid: uuid.into(),
            rpc: DatanodeProtocolClient::with_interceptor(ch.clone(), session.clone()),
            reports: BlockReportProtocolClient::with_interceptor(ch, session),
        })
    }

    /// Reports replicas finalized here.
    pub async fn received(&mut self, blocks: Vec<pb::ExtendedBlock>) -> anyhow::Result<()> {
        self.rpc
            .incremental_block_report(pb::IncrementalBlockReportRequest {
                datanode_uuid: self.uuid.clone(),
                received: blocks,
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// A heartbeat; returns the commands in its reply.
    pub async fn heartbeat(&mut self) -> anyhow::Result<Vec<pb::DatanodeCommand>> {
        Ok(self
            .rpc
            .heartbeat(pb::HeartbeatRequest {
                datanode_uuid: self.uuid.clone(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .commands)
    }

    /// A full block report of finalized replicas.
    pub async fn full_report(&mut self, blocks: Vec<pb::ExtendedBlock>) -> anyhow::Result<()> {
        self.reports
            .block_report(pb::BlockReportRequest {
                datanode_uuid: self.uuid.clone(),
                blocks,
                ..Default::default()
            })
            .await?;
        Ok(())
    }
}
