//! Raft messages between namenodes, over their RPC port: openraft's
//! messages postcard-encoded in a [`pb::RaftMessage`], each with an HMAC
//! under the cluster secret, so nothing without the secret is heard.

use std::sync::Arc;

use granary_common::net::Net;
use hmac::Mac;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use super::{Ha, NnNode, NodeId, RPC_TIMEOUT, TypeConfig, decode, encode};
use granary_common::ErrorCode;
use granary_common::daemon_auth::ClusterSecret;
use granary_common::error::status;
use granary_proto as pb;
use granary_proto::raft_protocol_client::RaftProtocolClient;

/// Largest Raft message a namenode sends or takes (a batch of entries).
pub const MAX_MESSAGE: usize = 64 << 20;

/// The MAC of one Raft message: over the method and the body.
fn message_mac(secret: &ClusterSecret, method: &str, body: &[u8]) -> granary_common::daemon_auth::HmacSha256 {
    let mut m = secret.mac();
    m.update(b"granary-raft-v1\0");
    m.update(method.as_bytes());
    m.update(&[0]);
    m.update(body);
    m
}

fn proof(secret: &ClusterSecret, method: &str, body: &[u8]) -> Vec<u8> {
    message_mac(secret, method, body).finalize().into_bytes().to_vec()
}

fn verify(secret: &ClusterSecret, method: &str, msg: &pb::RaftMessage) -> Result<(), Status> {
    message_mac(secret, method, &msg.body)
        .verify_slice(&msg.proof)
        .map_err(|_| {
            status(
                ErrorCode::Unauthenticated,
                "raft message without a valid proof of the cluster secret: only namenodes of this cluster may send them",
            )
        })
}

pub struct Network {
    secret: ClusterSecret,
    net: Net,
}

impl Network {
    pub fn new(secret: ClusterSecret, net: Net) -> Self {
        Self { secret, net }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &NnNode) -> Peer {
        Peer {
            target,
            node: node.clone(),
            secret: self.secret.clone(),
            net: self.net.clone(),
            client: None,
        }
    }
}

pub struct Peer {
    target: NodeId,
    node: NnNode,
    secret: ClusterSecret,
    net: Net,
    client: Option<RaftProtocolClient<Channel>>,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, NnNode, RaftError<NodeId, E>>;

impl Peer {
    fn client(&mut self) -> Result<RaftProtocolClient<Channel>, Unreachable> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let ep = Endpoint::from_shared(format!("http://{}", self.node.rpc_addr))
            .map_err(|e| Unreachable::new(&e))?
            .connect_timeout(std::time::Duration::from_secs(2))
            .tcp_nodelay(true);
        let c = RaftProtocolClient::new(self.net.lazy(&ep))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        self.client = Some(c.clone());
        Ok(c)
    }

    async fn call<Req, Resp, E>(
        &mut self,
        method: &'static str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = encode(method, req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let msg = pb::RaftMessage {
            proof: proof(&self.secret, method, &body),
            body,
        };
        let mut client = self.client().map_err(RPCError::Unreachable)?;
        let mut request = Request::new(msg);
        request.set_timeout(option.hard_ttl().min(RPC_TIMEOUT));
        let answer = match method {
            "append_entries" => client.append_entries(request).await,
            "vote" => client.vote(request).await,
            _ => client.install_snapshot(request).await,
        };
        let answer = match answer {
            Ok(a) => a.into_inner(),
            Err(st) => {
                // Drop the channel: the next call reconnects.
                self.client = None;
                return Err(if st.code() == tonic::Code::Unavailable {
                    RPCError::Unreachable(Unreachable::new(&st))
                } else {
                    RPCError::Network(NetworkError::new(&st))
                });
            }
        };
        let r: Result<Resp, RaftError<NodeId, E>> =
            decode(method, &answer.body).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        self.call("append_entries", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.call("install_snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.call("vote", &rpc, &option).await
    }
}

/// Whether another member answers as part of a running group (a term
/// above 0). A member whose log is empty (new, or wiped) then must not
/// propose a first membership (its election would only disturb the
/// leader): it waits, and the leader brings it up to date.
pub async fn group_running(net: &Net, members: &[NnNode], me: &str) -> bool {
    for m in members.iter().filter(|m| m.name != me) {
        if peer_status(net, &m.rpc_addr, std::time::Duration::from_millis(500))
            .await
            .is_some_and(|s| s.term > 0)
        {
            return true;
        }
    }
    false
}

/// What the member at `addr` says of the group, if it answers within
/// `within` (twice that for the answer).
pub(super) async fn peer_status(
    net: &Net,
    addr: &str,
    within: std::time::Duration,
) -> Option<pb::HaStatusResponse> {
    let ep = Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(within)
        .timeout(2 * within);
    let ch = net.connect(&ep).await.ok()?;
    let r = RaftProtocolClient::new(ch)
        .status(pb::HaStatusRequest {})
        .await
        .ok()?;
    Some(r.into_inner())
}

/// Sends the hand-over's last step to the member at `addr`.
pub(super) async fn send_take_over(
    secret: &ClusterSecret,
    net: &Net,
    addr: &str,
    req: &super::transfer::TakeOver,
) -> crate::error::Result<()> {
    const METHOD: &str = "take_leadership";
    let body = encode(METHOD, req)?;
    let msg = pb::RaftMessage {
        proof: proof(secret, METHOD, &body),
        body,
    };
    let unreachable = |e: &dyn std::fmt::Display| {
        crate::error::NnError::HandOver(format!(
            "namenode {} at {addr} was not asked to take over: {e}",
            req.node
        ))
    };
    let ep = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| unreachable(&e))?
        .connect_timeout(std::time::Duration::from_secs(1))
        .timeout(std::time::Duration::from_secs(2));
    let ch = net.connect(&ep).await.map_err(|e| unreachable(&e))?;
    RaftProtocolClient::new(ch)
        .take_leadership(msg)
        .await
        .map_err(|st| unreachable(&st.message()))?;
    Ok(())
}

/// The namenode's RaftProtocol service: hands verified messages to Raft.
pub struct RaftService {
    ha: Option<Arc<Ha>>,
    secret: ClusterSecret,
}

impl RaftService {
    /// `ha` is `None` for a namenode that runs alone.
    pub fn new(ha: Option<Arc<Ha>>, secret: ClusterSecret) -> Self {
        Self { ha, secret }
    }

    fn ha(&self) -> Result<&Arc<Ha>, Status> {
        self.ha.as_ref().ok_or_else(|| {
            status(
                ErrorCode::Unsupported,
                "this namenode runs alone (no peers): it takes no raft messages",
            )
        })
    }

    fn open<T: DeserializeOwned>(&self, method: &str, req: Request<pb::RaftMessage>) -> Result<T, Status> {
        // Over TLS only another namenode may speak Raft: the cluster secret
        // alone (every datanode holds it) is not enough.
        if let Some(conn) = granary_common::tls::ConnInfo::of(&req)
            && conn.tls
            && conn
                .peer
                .as_ref()
                .is_none_or(|p| p.role != granary_common::tls::Role::Namenode)
        {
            return Err(status(
                ErrorCode::AccessControl,
                format!(
                    "raft {method} needs a namenode's certificate, not {}",
                    conn.peer.as_ref().map_or("none".to_string(), |p| p.uri())
                ),
            ));
        }
        let msg = req.into_inner();
        verify(&self.secret, method, &msg)?;
        decode(method, &msg.body).map_err(Status::from)
    }
}

fn reply<T: Serialize>(method: &str, v: &T) -> Result<Response<pb::RaftMessage>, Status> {
    Ok(Response::new(pb::RaftMessage {
        body: encode(method, v)?,
        proof: Vec::new(),
    }))
}

#[tonic::async_trait]
impl pb::raft_protocol_server::RaftProtocol for RaftService {
    async fn append_entries(
        &self,
        req: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        let ha = self.ha()?;
        let rpc: AppendEntriesRequest<TypeConfig> = self.open("append_entries", req)?;
        let r = ha.raft().append_entries(rpc).await;
        if matches!(&r, Ok(a) if !matches!(a, AppendEntriesResponse::HigherVote(_))) {
            ha.heard_leader();
        }
        reply("append_entries", &r)
    }

    async fn vote(&self, req: Request<pb::RaftMessage>) -> Result<Response<pb::RaftMessage>, Status> {
        let ha = self.ha()?;
        let rpc: VoteRequest<NodeId> = self.open("vote", req)?;
        reply("vote", &ha.raft().vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        let ha = self.ha()?;
        let rpc: InstallSnapshotRequest<TypeConfig> = self.open("install_snapshot", req)?;
        let r = ha.raft().install_snapshot(rpc).await;
        if r.is_ok() {
            ha.heard_leader();
        }
        reply("install_snapshot", &r)
    }

    async fn take_leadership(
        &self,
        req: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        let ha = self.ha()?;
        let rpc: super::transfer::TakeOver = self.open("take_leadership", req)?;
        ha.take_over(rpc).await?;
        Ok(Response::new(pb::RaftMessage::default()))
    }

    async fn status(
        &self,
        _req: Request<pb::HaStatusRequest>,
    ) -> Result<Response<pb::HaStatusResponse>, Status> {
        Ok(Response::new(match &self.ha {
            Some(ha) => ha.status(),
            None => pb::HaStatusResponse::default(),
        }))
    }
}
