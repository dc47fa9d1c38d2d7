//! What a namenode says of its group (`granary admin ha status`).

use std::time::Duration;

use crate::{ClientError, Result};
use granary_common::net::Net;
use granary_proto as pb;
use granary_proto::raft_protocol_client::RaftProtocolClient;

/// One member of a namenode group, as a namenode sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub node_id: String,
    pub rpc_addr: String,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub role: String,
    /// Known for the answering namenode itself (0 for the others).
    pub term: u64,
    /// The answering namenode's own last log index; for another member, the
    /// last index the leader knows it holds (0 when not known).
    pub last_log_index: u64,
    pub last_applied_index: u64,
    /// Entries the leader holds that this member has not acknowledged.
    pub lag: u64,
    pub voter: bool,
}

/// A namenode's view of its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    /// The address asked.
    pub asked: String,
    /// Empty when the namenode runs alone.
    pub node_id: String,
    pub leader_id: String,
    pub term: u64,
    pub leader_changes: u64,
    pub members: Vec<GroupMember>,
}

impl GroupStatus {
    /// Whether the namenode asked runs alone (no group).
    pub fn alone(&self) -> bool {
        self.node_id.is_empty()
    }
}

/// Asks the namenode at `addr` (`host:port`) about its group, reaching it
/// as `net` says.
pub async fn group_status(net: &Net, addr: &str) -> Result<GroupStatus> {
    let endpoint = granary_common::net::endpoint(addr)
        .map_err(|e| ClientError::InvalidArgument(format!("namenode: {e}")))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5));
    let channel = net
        .connect(&endpoint)
        .await
        .map_err(|source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let s = RaftProtocolClient::new(channel)
        .status(pb::HaStatusRequest {})
        .await?
        .into_inner();
    Ok(GroupStatus {
        asked: addr.to_string(),
        node_id: s.node_id,
        leader_id: s.leader_id,
        term: s.term,
        leader_changes: s.elections,
        members: s
            .members
            .into_iter()
            .map(|m| GroupMember {
                node_id: m.node_id,
                rpc_addr: m.rpc_addr,
                role: m.role,
                term: m.term,
                last_log_index: m.last_log_index,
                last_applied_index: m.last_applied_index,
                lag: m.lag,
                voter: m.voter,
            })
            .collect(),
    })
}
