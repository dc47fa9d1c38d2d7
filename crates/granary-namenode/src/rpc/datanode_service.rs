//! `DatanodeProtocol`: registration, heartbeats and block reports.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::blocking;
use crate::block_manager::ReplicaCheck;
use crate::state::NamenodeState;
use granary_common::ErrorCode;
use granary_common::error::status;
use granary_proto as pb;
use granary_proto::datanode_protocol_server::DatanodeProtocol;

/// At most this many deletions go out per heartbeat reply (HDFS's default).
const INVALIDATE_PER_HEARTBEAT: usize = 1000;

pub struct DatanodeService {
    state: Arc<NamenodeState>,
}

impl DatanodeService {
    pub fn new(state: Arc<NamenodeState>) -> Self {
        Self { state }
    }

    fn require_registered(&self, uuid: &str) -> Result<(), Status> {
        if self.state.datanodes.is_registered(uuid) {
            Ok(())
        } else {
            Err(status(
                ErrorCode::Unavailable,
                format!("datanode {uuid} is not registered; register first"),
            ))
        }
    }
}

fn reregister() -> pb::DatanodeCommand {
    pb::DatanodeCommand {
        command: Some(pb::datanode_command::Command::Reregister(
            pb::ReregisterCommand {},
        )),
    }
}

#[tonic::async_trait]
impl DatanodeProtocol for DatanodeService {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = req.into_inner();
        let id =
            r.id.ok_or_else(|| status(ErrorCode::InvalidArgument, "register needs a datanode id"))?;
        if id.uuid.is_empty() || id.rpc_addr.is_empty() {
            return Err(status(
                ErrorCode::InvalidArgument,
                "register needs a uuid and an rpc_addr",
            ));
        }
        if !r.cluster_id.is_empty() && r.cluster_id != self.state.cluster_id {
            return Err(status(
                ErrorCode::InvalidArgument,
                format!(
                    "datanode {} belongs to cluster {}, this namenode serves {}",
                    id.rpc_addr, r.cluster_id, self.state.cluster_id
                ),
            ));
        }
        let fresh = self.state.datanodes.register(id.clone(), r.storages);
        tracing::info!(dn = %id.rpc_addr, uuid = %id.uuid, rack = %id.rack, fresh, "datanode registered");
        Ok(Response::new(pb::RegisterResponse {
            cluster_id: self.state.cluster_id.clone(),
            heartbeat_interval_secs: (self.state.config.heartbeat_interval_ms / 1000).max(1) as u32,
            block_token_key: self.state.block_key.clone(),
            block_report_interval_ms: self.state.config.block_report_interval_ms,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = req.into_inner();
        if !self
            .state
            .datanodes
            .heartbeat(&r.datanode_uuid, r.storages, r.xceiver_count)
        {
            return Ok(Response::new(pb::HeartbeatResponse {
                commands: vec![reregister()],
            }));
        }
        let mut commands = Vec::new();
        let max = self.state.config.max_replication_streams as usize;
        for r in self.state.redundancy.take_commands(&r.datanode_uuid, max) {
            commands.push(pb::DatanodeCommand {
                command: Some(pb::datanode_command::Command::Replicate(r)),
            });
        }
        let del = self
            .state
            .blocks
            .take_invalidations(&r.datanode_uuid, INVALIDATE_PER_HEARTBEAT);
        if !del.is_empty() {
            commands.push(pb::DatanodeCommand {
                command: Some(pb::datanode_command::Command::Invalidate(pb::InvalidateCommand {
                    blocks: del,
                })),
            });
        }
        Ok(Response::new(pb::HeartbeatResponse { commands }))
    }

    async fn block_report(
        &self,
        req: Request<pb::BlockReportRequest>,
    ) -> Result<Response<pb::BlockReportResponse>, Status> {
        let r = req.into_inner();
        if !self.state.datanodes.is_registered(&r.datanode_uuid) {
            return Ok(Response::new(pb::BlockReportResponse {
                commands: vec![reregister()],
            }));
        }
        let st = self.state.clone();
        let (valid, invalid) = blocking(move || {
            // A node that comes back may make blocks over-replicated.
            st.redundancy.check(r.blocks.iter().map(|b| b.block_id));
            let checks = st.check_replicas(&r.blocks).unwrap_or_else(|e| {
                tracing::error!(error = %e, "block report checked against a failing metadata store");
                // Unknown because the store failed: keep, never delete on doubt.
                vec![ReplicaCheck::Valid; r.blocks.len()]
            });
            Ok(st.blocks.full_report(&r.datanode_uuid, &r.blocks, &checks))
        })
        .await?;
        tracing::debug!(valid, invalid, "full block report processed");
        Ok(Response::new(pb::BlockReportResponse { commands: Vec::new() }))
    }

    async fn incremental_block_report(
        &self,
        req: Request<pb::IncrementalBlockReportRequest>,
    ) -> Result<Response<pb::IncrementalBlockReportResponse>, Status> {
        let r = req.into_inner();
        self.require_registered(&r.datanode_uuid)?;
        let st = self.state.clone();
        blocking(move || {
            for b in &r.received {
                match st.check_replica(b)? {
                    ReplicaCheck::Valid => {
                        st.blocks.add_replica(&r.datanode_uuid, b.block_id);
                        st.blocks.note_length(b.block_id, b.num_bytes);
                        st.redundancy.received(b.block_id, &r.datanode_uuid);
                    }
                    ReplicaCheck::Invalid => st.blocks.invalidate(&r.datanode_uuid, *b),
                }
            }
            for b in &r.deleted {
                st.blocks.remove_replica(&r.datanode_uuid, b.block_id);
            }
            Ok(())
        })
        .await?;
        Ok(Response::new(pb::IncrementalBlockReportResponse {}))
    }
}
