//! `DatanodeProtocol` and `BlockReportProtocol`: registration (checked
//! against the cluster secret, the cluster id and the node key the uuid is
//! bound to), heartbeats and block reports. Every call but Version and
//! Register carries a session ([`crate::datanode_auth`]) that must belong to
//! the datanode the call names.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{blocking, mutating};
use crate::block_manager::ReplicaCheck;
use crate::datanode_auth::DatanodeSession;
use crate::state::NamenodeState;
use granary_common::ErrorCode;
use granary_common::daemon_auth;
use granary_common::error::status;
use granary_proto as pb;
use granary_proto::block_report_protocol_server::BlockReportProtocol;
use granary_proto::datanode_protocol_server::DatanodeProtocol;

/// At most this many deletions go out per heartbeat reply (HDFS's default).
const INVALIDATE_PER_HEARTBEAT: usize = 1000;
/// At most this many verify/recover/commit commands per heartbeat reply.
const COMMANDS_PER_HEARTBEAT: usize = 1000;
/// Longest uuid, host name, address or rack a datanode may register with.
const MAX_ID_FIELD: usize = 255;

pub struct DatanodeService {
    state: Arc<NamenodeState>,
}

impl DatanodeService {
    pub fn new(state: Arc<NamenodeState>) -> Self {
        Self { state }
    }
}

/// The session's datanode, which must be the one the call names.
fn caller<T>(req: &Request<T>, named: &str) -> Result<String, Status> {
    let Some(s) = req.extensions().get::<DatanodeSession>() else {
        return Err(status(
            ErrorCode::Unauthenticated,
            "datanode call without a valid session: register first",
        ));
    };
    if s.uuid != named {
        return Err(status(
            ErrorCode::AccessControl,
            format!(
                "the session belongs to datanode {}, the call names {named}",
                s.uuid
            ),
        ));
    }
    Ok(s.uuid.clone())
}

fn reregister() -> pb::DatanodeCommand {
    pb::DatanodeCommand {
        command: Some(pb::datanode_command::Command::Reregister(
            pb::ReregisterCommand {},
        )),
    }
}

fn check_id(id: &pb::DatanodeId) -> Result<(), Status> {
    if id.uuid.is_empty() || id.rpc_addr.is_empty() {
        return Err(status(
            ErrorCode::InvalidArgument,
            "register needs a uuid and an rpc_addr",
        ));
    }
    for (what, v) in [
        ("uuid", &id.uuid),
        ("hostname", &id.hostname),
        ("rpc_addr", &id.rpc_addr),
        ("http_addr", &id.http_addr),
        ("rack", &id.rack),
    ] {
        if v.len() > MAX_ID_FIELD || v.chars().any(char::is_control) {
            return Err(status(
                ErrorCode::InvalidArgument,
                format!("register: {what} is over {MAX_ID_FIELD} bytes or holds control characters"),
            ));
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl DatanodeProtocol for DatanodeService {
    async fn version(
        &self,
        _req: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        Ok(Response::new(pb::VersionResponse {
            cluster_id: self.state.cluster_id().to_string(),
        }))
    }

    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let peer = granary_common::tls::ConnInfo::remote_of(&req);
        let proven = req
            .get_ref()
            .id
            .as_ref()
            .map(|id| super::authn::datanode(self.state.config().auth, &req, &id.uuid));
        let r = req.into_inner();
        let id =
            r.id.ok_or_else(|| status(ErrorCode::InvalidArgument, "register needs a datanode id"))?;
        check_id(&id)?;
        let st = &self.state;
        if r.cluster_id != st.cluster_id() {
            return Err(status(
                ErrorCode::InvalidArgument,
                format!(
                    "datanode {} belongs to cluster {:?}, this namenode serves {}",
                    id.rpc_addr,
                    r.cluster_id,
                    st.cluster_id()
                ),
            ));
        }
        if !(16..=1024).contains(&r.node_key.len()) {
            return Err(status(
                ErrorCode::InvalidArgument,
                "register needs a node key of 16 to 1024 bytes",
            ));
        }
        let now = crate::inode::now_ms();
        let refuse = |why: String| {
            tracing::warn!(uuid = %id.uuid, dn = %id.rpc_addr, ?peer, reason = %why, "datanode registration refused");
            status(ErrorCode::AccessControl, why)
        };
        if let Some(Err(why)) = proven {
            return Err(refuse(why));
        }
        daemon_auth::verify(
            st.secret(),
            st.cluster_id(),
            &id,
            &r.node_key,
            r.proof.as_ref(),
            now,
        )
        .map_err(|e| refuse(e.to_string()))?;
        let nonce = r.proof.as_ref().map(|p| p.nonce.clone()).unwrap_or_default();
        if !st.sessions().first_use(&nonce, now) {
            return Err(refuse("registration proof was already used (a replay)".into()));
        }
        // The uuid belongs to the node key it first registered with.
        let fingerprint = daemon_auth::node_key_fingerprint(&r.node_key);
        let (s, uuid) = (st.clone(), id.uuid.clone());
        let bound = mutating(st, move |writes| {
            s.ns()
                .bind_datanode(&uuid, &fingerprint)
                .map(|done| writes.take(done))
        })
        .await?;
        if !bound {
            return Err(refuse(format!(
                "datanode uuid {} is bound to another node key: another daemon registered it first (its data dirs hold the key)",
                id.uuid
            )));
        }
        let fresh = st.datanodes().register(id.clone(), r.storages);
        let session = st.sessions().open(&id.uuid);
        tracing::info!(dn = %id.rpc_addr, uuid = %id.uuid, rack = %id.rack, fresh, "datanode registered");
        Ok(Response::new(pb::RegisterResponse {
            cluster_id: st.cluster_id().to_string(),
            heartbeat_interval_secs: (st.config().datanodes.heartbeat_interval_ms / 1000).max(1) as u32,
            block_report_interval_ms: st.config().datanodes.block_report_interval_ms,
            session,
            block_keys: st.block_keys().all(),
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let uuid = caller(&req, &req.get_ref().datanode_uuid)?;
        let r = req.into_inner();
        let st = &self.state;
        st.datanodes().note_io(&uuid, r.bytes_read, r.bytes_written);
        if !st.datanodes().heartbeat(&uuid, r.storages, r.xceiver_count) {
            return Ok(Response::new(pb::HeartbeatResponse {
                commands: vec![reregister()],
                block_keys: Vec::new(),
                active: st.is_active(),
                term: st.term(),
            }));
        }
        if !st.is_active() {
            // Commands come from the leader alone.
            return Ok(Response::new(pb::HeartbeatResponse {
                commands: Vec::new(),
                block_keys: st.block_keys().all(),
                active: false,
                term: st.term(),
            }));
        }
        let mut commands = Vec::new();
        let max = st.redundancy().config().max_streams();
        let moves = st.balancer().take_commands(&uuid);
        for r in st.redundancy().take_commands(&uuid, max).into_iter().chain(moves) {
            commands.push(pb::DatanodeCommand {
                command: Some(pb::datanode_command::Command::Replicate(r)),
            });
        }
        commands.extend(st.recovery().take_commands(&uuid, COMMANDS_PER_HEARTBEAT));
        if let Some(d) = st.balancer().take_disk_command(&uuid) {
            commands.push(pb::DatanodeCommand {
                command: Some(pb::datanode_command::Command::DiskBalance(d)),
            });
        }
        let del = st.blocks().take_invalidations(&uuid, INVALIDATE_PER_HEARTBEAT);
        if !del.is_empty() {
            commands.push(pb::DatanodeCommand {
                command: Some(pb::datanode_command::Command::Invalidate(pb::InvalidateCommand {
                    blocks: del,
                })),
            });
        }
        Ok(Response::new(pb::HeartbeatResponse {
            commands,
            block_keys: st.block_keys().all(),
            active: st.is_active(),
            term: st.term(),
        }))
    }

    async fn incremental_block_report(
        &self,
        req: Request<pb::IncrementalBlockReportRequest>,
    ) -> Result<Response<pb::IncrementalBlockReportResponse>, Status> {
        let uuid = caller(&req, &req.get_ref().datanode_uuid)?;
        if !self.state.datanodes().is_registered(&uuid) {
            return Err(status(
                ErrorCode::Unavailable,
                format!("datanode {uuid} is not registered; register first"),
            ));
        }
        let r = req.into_inner();
        let st = self.state.clone();
        blocking(move |writes| {
            for b in &r.received {
                match st.check_replica(b)? {
                    ReplicaCheck::Valid => {
                        st.blocks().add_replica(&uuid, b.block_id);
                        st.blocks().note_length(b.block_id, b.num_bytes);
                        st.redundancy().received(b.block_id, &uuid);
                        st.recovery().committed(b.block_id);
                    }
                    ReplicaCheck::Invalid => st.blocks().invalidate(&uuid, *b),
                    ReplicaCheck::WrongLength { committed } => {
                        tracing::warn!(block_id = b.block_id, dn = %uuid, bytes = b.num_bytes, committed, "replica length differs from the committed block; marked corrupt");
                        st.mark_corrupt(&uuid, *b);
                    }
                    ReplicaCheck::OlderWhileWriting => {
                        st.note_being_written(&uuid, *b)?;
                        st.advance_recovery(writes, b.block_id);
                    }
                }
            }
            for b in &r.deleted {
                st.blocks().remove_replica(&uuid, b.block_id);
                st.blocks().forget_being_written(&uuid, b.block_id);
                st.recovery().verified(&uuid, b.block_id);
            }
            for b in &r.being_written {
                st.note_being_written(&uuid, *b)?;
                st.advance_recovery(writes, b.block_id);
            }
            for id in &r.not_held {
                st.blocks().forget_being_written(&uuid, *id);
                st.recovery().not_held(&uuid, *id);
                st.advance_recovery(writes, *id);
            }
            for c in &r.corrupt {
                if let Some(b) = c.block {
                    tracing::warn!(block_id = b.block_id, dn = %uuid, reason = %c.reason, "datanode reports a corrupt replica");
                    st.mark_corrupt(&uuid, b);
                    st.recovery().verified(&uuid, b.block_id);
                }
            }
            for b in &r.verified {
                tracing::info!(block_id = b.block_id, dn = %uuid, "reported replica verified intact by its datanode");
                st.recovery().verified(&uuid, b.block_id);
            }
            Ok(())
        })
        .await?;
        Ok(Response::new(pb::IncrementalBlockReportResponse {}))
    }
}

/// `BlockReportProtocol`: the large full reports, in a service of their own.
pub struct BlockReportService {
    state: Arc<NamenodeState>,
}

impl BlockReportService {
    pub fn new(state: Arc<NamenodeState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl BlockReportProtocol for BlockReportService {
    async fn block_report(
        &self,
        req: Request<pb::BlockReportRequest>,
    ) -> Result<Response<pb::BlockReportResponse>, Status> {
        let uuid = caller(&req, &req.get_ref().datanode_uuid)?;
        let r = req.into_inner();
        if !self.state.datanodes().is_registered(&uuid) {
            return Ok(Response::new(pb::BlockReportResponse {
                commands: vec![reregister()],
            }));
        }
        let st = self.state.clone();
        let (valid, invalid) = blocking(move |_| {
            let checks = st.check_replicas(&r.blocks).unwrap_or_else(|e| {
                tracing::error!(error = %e, "block report checked against a failing metadata store");
                // Unknown because the store failed: keep, never delete on doubt.
                vec![ReplicaCheck::Valid; r.blocks.len()]
            });
            let counts = st.blocks().full_report(&uuid, &r.blocks, &checks);
            // A node that comes back may make blocks over-replicated. Queued
            // only once its replicas are in the map: a round between the two
            // would find the blocks at their old count and not look again.
            st.redundancy().check(r.blocks.iter().map(|b| b.block_id));
            st.blocks().report_being_written(&uuid, &[]);
            for (b, c) in r.blocks.iter().zip(&checks) {
                match c {
                    ReplicaCheck::WrongLength { committed } => {
                        tracing::warn!(block_id = b.block_id, dn = %uuid, bytes = b.num_bytes, committed, "replica length differs from the committed block; marked corrupt");
                        st.redundancy().check([b.block_id]);
                    }
                    ReplicaCheck::OlderWhileWriting => st.note_being_written(&uuid, *b)?,
                    _ => {}
                }
            }
            for b in &r.being_written {
                st.note_being_written(&uuid, *b)?;
            }
            for c in &r.corrupt {
                if let Some(b) = c.block {
                    tracing::warn!(block_id = b.block_id, dn = %uuid, reason = %c.reason, "datanode reports a damaged replica");
                    st.mark_corrupt(&uuid, b);
                }
            }
            Ok(counts)
        })
        .await?;
        tracing::debug!(valid, invalid, "full block report processed");
        Ok(Response::new(pb::BlockReportResponse { commands: Vec::new() }))
    }
}
