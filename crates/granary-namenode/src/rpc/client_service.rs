//! `ClientProtocol`: the namespace as clients see it.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{blocking, mutating};
use crate::error::NnError;
use crate::inode::BlockRecord;
use crate::namespace::retry;
use crate::state::NamenodeState;
use granary_common::identity::Identity;
use granary_proto as pb;
use granary_proto::client_protocol_server::ClientProtocol;

mod admin_calls;
mod snapshot_calls;
mod writer_calls;

pub struct ClientService {
    state: Arc<NamenodeState>,
}

impl ClientService {
    pub fn new(state: Arc<NamenodeState>) -> Self {
        Self { state }
    }

    /// The state and the judged caller of a request: its user, in the
    /// groups the namenode's mapping gives that user (any groups the
    /// request claims are not read). An OS lookup, when the user's groups
    /// are not cached, runs on the blocking pool.
    async fn ctx<T>(
        &self,
        req: &Request<T>,
    ) -> Result<(Arc<NamenodeState>, crate::permission::Caller), Status> {
        let id = super::authn::request_user(&self.state, req)?;
        let st = self.state.clone();
        let caller = match st.ns().known_caller(&id) {
            Some(c) => c,
            None => {
                let s = st.clone();
                blocking(move |_| Ok(s.ns().caller(id))).await?
            }
        };
        Ok((st, caller))
    }
}

/// A request made on behalf of `id` (simple auth), as a gRPC client's would be.
pub fn as_user<T>(id: &Identity, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    id.apply(r.metadata_mut());
    r
}

/// Refuses callers other than the superuser (admin operations).
pub(super) fn require_super(caller: &crate::permission::Caller) -> Result<(), Status> {
    if caller.is_super {
        return Ok(());
    }
    Err(granary_common::error::status(
        granary_common::ErrorCode::AccessControl,
        format!(
            "Access denied for user {}. Superuser privilege is required",
            caller.user()
        ),
    ))
}

fn extended(blocks: Vec<BlockRecord>) -> Vec<pb::ExtendedBlock> {
    blocks.iter().map(BlockRecord::to_extended).collect()
}

#[tonic::async_trait]
impl ClientProtocol for ClientService {
    async fn mkdirs(&self, req: Request<pb::MkdirsRequest>) -> Result<Response<pb::MkdirsResponse>, Status> {
        self.state.check_writable()?;
        let (st, caller) = self.ctx(&req).await?;
        let call = retry::call_of(req.metadata());
        let r = req.into_inner();
        mutating(&self.state, move |writes| {
            if writes.take(st.ns().recorded(call.as_ref())?).is_some() {
                return Ok(());
            }
            retry::recording(call.as_ref(), 0, || {
                st.ns().mkdirs(&caller, &r.path, r.permission, r.create_parent)
            })
            .map(|done| writes.take(done))
        })
        .await?;
        Ok(Response::new(pb::MkdirsResponse {}))
    }

    async fn create(&self, req: Request<pb::CreateRequest>) -> Result<Response<pb::CreateResponse>, Status> {
        self.state.check_writable()?;
        let (st, caller) = self.ctx(&req).await?;
        let call = retry::call_of(req.metadata());
        let r = req.into_inner();
        let file = mutating(&self.state, move |writes| {
            // A retry of a create that happened: the file it made.
            if let Some(rec) = writes.take(st.ns().recorded(call.as_ref())?) {
                return st
                    .ns()
                    .get_inode(rec.value)?
                    .ok_or_else(|| NnError::NotFound(r.path.clone()));
            }
            st.take_over(writes, &caller, &r.path, &r.client_name, false, r.overwrite)?;
            let created = retry::recording(call.as_ref(), 0, || {
                st.ns().create(
                    &caller,
                    &r.path,
                    r.permission,
                    &r.client_name,
                    r.overwrite,
                    r.create_parent,
                    r.replication,
                    r.block_size,
                )
            })?;
            let (file, removed) = writes.take(created);
            st.remove_deleted(writes, extended(removed));
            st.leases().add(&r.client_name, caller.user(), file.id);
            Ok(file)
        })
        .await?;
        Ok(Response::new(pb::CreateResponse {
            status: Some(file.to_status()),
        }))
    }

    async fn add_block(
        &self,
        req: Request<pb::AddBlockRequest>,
    ) -> Result<Response<pb::AddBlockResponse>, Status> {
        self.state.check_writable()?;
        let (st, caller) = self.ctx(&req).await?;
        let writer_host = granary_common::tls::ConnInfo::remote_of(&req).map(|a| a.ip().to_string());
        let r = req.into_inner();
        let located = mutating(&self.state, move |writes| {
            let file = st
                .ns()
                .file_for_writer(&caller, &r.path, r.file_id, &r.client_name)?;
            st.check_not_recovering(&r.path, file.id)?;
            let targets =
                st.choose_targets(file.replication, file.block_size, &r.excluded_nodes, writer_host)?;
            let uuids: Vec<String> = targets
                .iter()
                .filter_map(|t| t.id.as_ref().map(|i| i.uuid.clone()))
                .collect();
            let alloc = writes.take(st.ns().add_block_to(
                &caller,
                &r.path,
                r.file_id,
                &r.client_name,
                r.previous.as_ref(),
                &uuids,
            )?);
            let block = alloc.block.to_extended();
            let access_token = st.token(
                &block,
                granary_common::block_token::BlockAccess::Write,
                caller.user(),
            );
            Ok(pb::LocatedBlock {
                block: Some(block),
                offset: alloc.offset,
                locations: targets,
                corrupt: false,
                access_token,
            })
        })
        .await?;
        Ok(Response::new(pb::AddBlockResponse { block: Some(located) }))
    }

    async fn abandon_block(
        &self,
        req: Request<pb::AbandonBlockRequest>,
    ) -> Result<Response<pb::AbandonBlockResponse>, Status> {
        self.state.check_writable()?;
        let (st, caller) = self.ctx(&req).await?;
        let r = req.into_inner();
        let block = r.block.ok_or_else(|| {
            granary_common::error::status(
                granary_common::ErrorCode::InvalidArgument,
                "abandonBlock needs a block",
            )
        })?;
        mutating(&self.state, move |writes| {
            st.check_not_recovering(&r.path, r.file_id)?;
            writes.take(st.ns().abandon_block(
                &caller,
                &r.path,
                r.file_id,
                &r.client_name,
                block.block_id,
            )?);
            st.blocks().written(block.block_id);
            Ok(())
        })
        .await?;
        Ok(Response::new(pb::AbandonBlockResponse {}))
    }

    async fn complete(
        &self,
        req: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        self.state.check_writable()?;
        let (st, caller) = self.ctx(&req).await?;
        let r = req.into_inner();
        let completed = mutating(&self.state, move |writes| {
            st.check_not_recovering(&r.path, r.file_id)?;
            let min = st.config().namespace.min_replication as usize;
            let blocks = std::cell::RefCell::new(Vec::new());
            let done = writes.take(st.ns().complete(
                &caller,
                &r.path,
                r.file_id,
                &r.client_name,
                r.last.as_ref(),
                |b| {
                    blocks.borrow_mut().push(b.id);
                    st.blocks().replica_count(b.id) >= min
                },
            )?);
            // A file closed with fewer replicas than it wants gets them now.
            if done {
                let blocks = blocks.into_inner();
                for id in &blocks {
                    st.blocks().written(*id);
                }
                st.redundancy().check(blocks);
                st.leases().remove(&r.client_name, r.file_id);
            }
            Ok(done)
        })
        .await?;
        Ok(Response::new(pb::CompleteResponse { completed }))
    }

    async fn get_file_info(
        &self,
        req: Request<pb::GetFileInfoRequest>,
    ) -> Result<Response<pb::GetFileInfoResponse>, Status> {
        let (st, caller) = self.ctx(&req).await?;
        let r = req.into_inner();
        // Inline, not on the blocking pool: a few point lookups served from
        // the block cache take microseconds, less than the hop would cost.
        let inode = st.ns().get_file_info(&caller, &r.path)?;
        Ok(Response::new(pb::GetFileInfoResponse {
            status: Some(inode.to_status()),
        }))
    }

    async fn get_listing(
        &self,
        req: Request<pb::GetListingRequest>,
    ) -> Result<Response<pb::GetListingResponse>, Status> {
        let (st, caller) = self.ctx(&req).await?;
        let r = req.into_inner();
        let l = blocking(move |_| st.ns().list(&caller, &r.path, &r.start_after, r.limit)).await?;
        Ok(Response::new(pb::GetListingResponse {
            entries: l.entries,
            has_more: l.has_more,
        }))
    }

    async fn rename(&self, req: Request<pb::RenameRequest>) -> Result<Response<pb::RenameResponse>, Status> {
        self.state.check_writable()?;
        let (st, caller) = self.ctx(&req).await?;
        let call = retry::call_of(req.metadata());
        let r = req.into_inner();
        mutating(&self.state, move |writes| {
            if writes.take(st.ns().recorded(call.as_ref())?).is_some() {
                return Ok(());
            }
            let removed = retry::recording(call.as_ref(), 0, || {
                st.ns().rename(&caller, &r.src, &r.dst, r.overwrite)
            })?;
            let removed = writes.take(removed);
            st.remove_deleted(writes, extended(removed));
            Ok(())
        })
        .await?;
        Ok(Response::new(pb::RenameResponse {}))
    }

    async fn delete(&self, req: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        self.state.check_writable()?;
        let (st, caller) = self.ctx(&req).await?;
        let call = retry::call_of(req.metadata());
        let r = req.into_inner();
        mutating(&self.state, move |writes| {
            if writes.take(st.ns().recorded(call.as_ref())?).is_some() {
                return Ok(());
            }
            let removed =
                retry::recording(call.as_ref(), 0, || st.ns().delete(&caller, &r.path, r.recursive))?;
            let removed = writes.take(removed);
            st.remove_deleted(writes, extended(removed));
            Ok(())
        })
        .await?;
        Ok(Response::new(pb::DeleteResponse {}))
    }

    async fn set_replication(
        &self,
        req: Request<pb::SetReplicationRequest>,
    ) -> Result<Response<pb::SetReplicationResponse>, Status> {
        self.state.check_writable()?;
        let (st, caller) = self.ctx(&req).await?;
        let r = req.into_inner();
        mutating(&self.state, move |writes| {
            let file = writes.take(st.ns().set_replication(&caller, &r.path, r.replication)?);
            st.check_redundancy_when_durable(writes, &file);
            Ok(())
        })
        .await?;
        Ok(Response::new(pb::SetReplicationResponse {}))
    }

    async fn set_permission(
        &self,
        req: Request<pb::SetPermissionRequest>,
    ) -> Result<Response<pb::SetPermissionResponse>, Status> {
        self.state.check_writable()?;
        let (st, caller) = self.ctx(&req).await?;
        let r = req.into_inner();
        mutating(&self.state, move |writes| {
            st.ns()
                .set_permission(&caller, &r.path, r.permission)
                .map(|done| writes.take(done))
        })
        .await?;
        Ok(Response::new(pb::SetPermissionResponse {}))
    }

    async fn set_owner(
        &self,
        req: Request<pb::SetOwnerRequest>,
    ) -> Result<Response<pb::SetOwnerResponse>, Status> {
        self.state.check_writable()?;
        let (st, caller) = self.ctx(&req).await?;
        let r = req.into_inner();
        mutating(&self.state, move |writes| {
            st.ns()
                .set_owner(&caller, &r.path, r.owner.as_deref(), r.group.as_deref())
                .map(|done| writes.take(done))
        })
        .await?;
        Ok(Response::new(pb::SetOwnerResponse {}))
    }

    async fn set_times(
        &self,
        req: Request<pb::SetTimesRequest>,
    ) -> Result<Response<pb::SetTimesResponse>, Status> {
        self.state.check_writable()?;
        let (st, caller) = self.ctx(&req).await?;
        let r = req.into_inner();
        mutating(&self.state, move |writes| {
            st.ns()
                .set_times(&caller, &r.path, r.modification_time, r.access_time)
                .map(|done| writes.take(done))
        })
        .await?;
        Ok(Response::new(pb::SetTimesResponse {}))
    }

    async fn get_content_summary(
        &self,
        req: Request<pb::GetContentSummaryRequest>,
    ) -> Result<Response<pb::GetContentSummaryResponse>, Status> {
        let (st, caller) = self.ctx(&req).await?;
        let r = req.into_inner();
        let s = blocking(move |_| st.ns().content_summary(&caller, &r.path)).await?;
        Ok(Response::new(pb::GetContentSummaryResponse {
            length: s.length,
            file_count: s.file_count,
            directory_count: s.directory_count,
            space_consumed: s.space_consumed,
            name_quota: s.quota.and_then(|q| u64::try_from(q.ns_quota).ok()),
            space_quota: s.quota.and_then(|q| u64::try_from(q.ss_quota).ok()),
        }))
    }

    async fn set_quota(
        &self,
        req: Request<pb::SetQuotaRequest>,
    ) -> Result<Response<pb::SetQuotaResponse>, Status> {
        self.set_quota_call(req).await
    }

    async fn change_snapshot(
        &self,
        req: Request<pb::ChangeSnapshotRequest>,
    ) -> Result<Response<pb::ChangeSnapshotResponse>, Status> {
        self.change_snapshot_call(req).await
    }

    async fn get_snapshot_diff(
        &self,
        req: Request<pb::GetSnapshotDiffRequest>,
    ) -> Result<Response<pb::GetSnapshotDiffResponse>, Status> {
        self.get_snapshot_diff_call(req).await
    }

    async fn get_snapshottable_dirs(
        &self,
        req: Request<pb::GetSnapshottableDirsRequest>,
    ) -> Result<Response<pb::GetSnapshottableDirsResponse>, Status> {
        self.get_snapshottable_dirs_call(req).await
    }

    async fn balance(
        &self,
        req: Request<pb::BalanceRequest>,
    ) -> Result<Response<pb::BalanceResponse>, Status> {
        self.balance_call(req).await
    }

    async fn disk_balance(
        &self,
        req: Request<pb::DiskBalanceRequest>,
    ) -> Result<Response<pb::DiskBalanceResponse>, Status> {
        self.disk_balance_call(req).await
    }

    async fn get_block_locations(
        &self,
        req: Request<pb::GetBlockLocationsRequest>,
    ) -> Result<Response<pb::GetBlockLocationsResponse>, Status> {
        let (st, caller) = self.ctx(&req).await?;
        let r = req.into_inner();
        let blocks = blocking(move |_| {
            let (file, range) = st.ns().block_range(&caller, &r.path, r.offset, r.length)?;
            let uc = file.under_construction.is_some();
            let mut located: Vec<pb::LocatedBlock> = range
                .into_iter()
                .map(|(off, b)| st.located(off, b.to_extended(), caller.user()))
                .collect();
            let last_incomplete = file.blocks.last().is_some_and(|b| !b.committed);
            let last_block = if uc && last_incomplete {
                located.pop()
            } else {
                None
            };
            Ok(pb::LocatedBlocks {
                file_length: file
                    .blocks
                    .iter()
                    .filter(|b| b.committed)
                    .map(|b| b.num_bytes)
                    .sum(),
                blocks: located,
                under_construction: uc,
                last_block,
                is_last_block_complete: !last_incomplete,
            })
        })
        .await?;
        Ok(Response::new(pb::GetBlockLocationsResponse {
            blocks: Some(blocks),
        }))
    }

    async fn renew_lease(
        &self,
        req: Request<pb::RenewLeaseRequest>,
    ) -> Result<Response<pb::RenewLeaseResponse>, Status> {
        let (st, caller) = self.ctx(&req).await?;
        let client = &req.get_ref().client_name;
        if client.is_empty() {
            return Err(granary_common::error::status(
                granary_common::ErrorCode::InvalidArgument,
                "renewLease needs a client name",
            ));
        }
        st.leases().renew(client, &caller)?;
        Ok(Response::new(pb::RenewLeaseResponse {}))
    }

    async fn append(&self, req: Request<pb::AppendRequest>) -> Result<Response<pb::AppendResponse>, Status> {
        self.state.check_writable()?;
        let (st, caller) = self.ctx(&req).await?;
        let r = req.into_inner();
        let file = mutating(&self.state, move |writes| {
            st.take_over(writes, &caller, &r.path, &r.client_name, true, false)?;
            let file = writes.take(st.ns().append(&caller, &r.path, &r.client_name)?);
            st.leases().add(&r.client_name, caller.user(), file.id);
            Ok(file)
        })
        .await?;
        Ok(Response::new(pb::AppendResponse {
            last_block: file.blocks.last().map(crate::inode::BlockRecord::to_extended),
            status: Some(file.to_status()),
        }))
    }

    async fn update_block_for_pipeline(
        &self,
        req: Request<pb::UpdateBlockForPipelineRequest>,
    ) -> Result<Response<pb::UpdateBlockForPipelineResponse>, Status> {
        self.state.check_writable()?;
        let (st, caller) = self.ctx(&req).await?;
        let r = req.into_inner();
        let mut block = r.block.ok_or_else(|| {
            granary_common::error::status(
                granary_common::ErrorCode::InvalidArgument,
                "updateBlockForPipeline needs a block",
            )
        })?;
        let resp = mutating(&self.state, move |writes| {
            st.check_not_recovering(&r.path, r.file_id)?;
            let old = block;
            let gs = writes.take(st.ns().bump_generation(
                &caller,
                &r.path,
                r.file_id,
                &r.client_name,
                block.block_id,
            )?);
            block.generation_stamp = gs;
            // Replicas finalized under the old stamp are stale now: forget them.
            // They are not deleted here, since a survivor may be about to continue
            // one; holders report again and stale stamps are invalidated then.
            st.blocks().forget_locations(old.block_id);
            let access_token = st.token(&block, granary_common::block_token::BlockAccess::Write, caller.user());
            tracing::info!(block_id = block.block_id, gs, path = %r.path, "new generation stamp for pipeline recovery");
            Ok(pb::UpdateBlockForPipelineResponse { block: Some(block), access_token })
        })
        .await?;
        Ok(Response::new(resp))
    }

    async fn get_additional_datanode(
        &self,
        req: Request<pb::GetAdditionalDatanodeRequest>,
    ) -> Result<Response<pb::GetAdditionalDatanodeResponse>, Status> {
        self.get_additional_datanode_call(req).await
    }

    async fn fsync(&self, req: Request<pb::FsyncRequest>) -> Result<Response<pb::FsyncResponse>, Status> {
        self.fsync_call(req).await
    }

    async fn recover_lease(
        &self,
        req: Request<pb::RecoverLeaseRequest>,
    ) -> Result<Response<pb::RecoverLeaseResponse>, Status> {
        self.state.check_writable()?;
        let (st, caller) = self.ctx(&req).await?;
        let r = req.into_inner();
        let closed = mutating(&self.state, move |writes| {
            let file = st.ns().get_file_info(&caller, &r.path)?;
            if file.is_dir {
                return Err(crate::error::NnError::IsDirectory(r.path.clone()));
            }
            caller.check(&file, crate::permission::Access::Write, &r.path)?;
            Ok(st.recover_file(writes, file.id)? == crate::state::Recovery::Closed)
        })
        .await?;
        Ok(Response::new(pb::RecoverLeaseResponse { closed }))
    }

    async fn report_bad_blocks(
        &self,
        req: Request<pb::ReportBadBlocksRequest>,
    ) -> Result<Response<pb::ReportBadBlocksResponse>, Status> {
        // A reader's word is not enough to touch a replica: it must hold a
        // read token for that block at that generation, and then the
        // replica's own datanode re-verifies it (Verify) and reports it
        // corrupt only if it is. A replica is deleted only once enough good
        // ones exist (the redundancy monitor), never the last one.
        let st = &self.state;
        let replicas = req.into_inner().replicas;
        if replicas.len() > 1000 {
            return Err(granary_common::error::status(
                granary_common::ErrorCode::InvalidArgument,
                format!(
                    "reportBadBlocks names {} replicas; at most 1000 per call",
                    replicas.len()
                ),
            ));
        }
        for r in replicas {
            let Some(b) = r.block else { continue };
            match st.block_keys().verify(
                &r.access_token,
                b.block_id,
                granary_common::block_token::BlockAccess::Read,
            ) {
                Ok(gs) if gs == b.generation_stamp => {}
                Ok(gs) => {
                    return Err(granary_common::error::status(
                        granary_common::ErrorCode::AccessControl,
                        format!(
                            "reportBadBlocks: the token is for generation {gs} of block {}, not {}",
                            b.block_id, b.generation_stamp
                        ),
                    ));
                }
                Err(e) => {
                    return Err(granary_common::error::status(
                        granary_common::ErrorCode::AccessControl,
                        format!("reportBadBlocks: block {}: {e}", b.block_id),
                    ));
                }
            }
            if !st.blocks().locations(b.block_id).contains(&r.datanode_uuid) {
                continue;
            }
            if st.recovery().verify(&r.datanode_uuid, b) {
                tracing::warn!(block_id = b.block_id, dn = %r.datanode_uuid, reason = %r.reason, "client reported a corrupt replica; asking its datanode to verify it");
            }
        }
        Ok(Response::new(pb::ReportBadBlocksResponse {}))
    }

    async fn get_server_defaults(
        &self,
        req: Request<pb::GetServerDefaultsRequest>,
    ) -> Result<Response<pb::GetServerDefaultsResponse>, Status> {
        let c = self.state.config();
        // Anyone may ask; who the caller is, when it can be told.
        let caller = super::authn::authenticate(&self.state, &req)
            .map(|a| a.user.user)
            .unwrap_or_default();
        Ok(Response::new(pb::GetServerDefaultsResponse {
            block_size: c.namespace.default_block_size,
            replication: c.namespace.default_replication,
            bytes_per_checksum: c.namespace.bytes_per_checksum,
            write_packet_size: granary_common::defaults::WRITE_PACKET_SIZE,
            cluster_id: self.state.cluster_id().to_string(),
            lease_soft_limit_ms: c.leases.soft_limit_ms,
            trash_interval_ms: c.trash.interval().as_millis() as u64,
            caller,
        }))
    }

    async fn checkpoint(
        &self,
        req: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::CheckpointResponse>, Status> {
        let (st, caller) = self.ctx(&req).await?;
        require_super(&caller)?;
        let requested = req.into_inner().dir;
        let (dir, bytes) = blocking(move |_| st.checkpoint(&requested)).await?;
        tracing::info!(dir = %dir.display(), bytes, user = %caller.user(), "metadata checkpoint written");
        Ok(Response::new(pb::CheckpointResponse {
            dir: dir.display().to_string(),
            bytes,
            created_ms: crate::inode::now_ms(),
        }))
    }

    async fn change_namenodes(
        &self,
        req: Request<pb::ChangeNamenodesRequest>,
    ) -> Result<Response<pb::ChangeNamenodesResponse>, Status> {
        let (st, caller) = self.ctx(&req).await?;
        require_super(&caller)?;
        let r = req.into_inner();
        let ha = st.ha().ok_or_else(|| {
            NnError::InvalidArgument("this namenode runs alone (no peers): it has no group to change".into())
        })?;
        let voters = if r.remove {
            ha.remove_member(&r.node_id).await?
        } else {
            ha.add_member(&r.node_id, &r.rpc_addr).await?
        };
        tracing::info!(node = %r.node_id, remove = r.remove, user = %caller.user(), "namenode group changed");
        Ok(Response::new(pb::ChangeNamenodesResponse { voters }))
    }

    async fn transfer_leadership(
        &self,
        req: Request<pb::TransferLeadershipRequest>,
    ) -> Result<Response<pb::TransferLeadershipResponse>, Status> {
        let (st, caller) = self.ctx(&req).await?;
        require_super(&caller)?;
        let to = req.into_inner().node_id;
        let ha = st.ha().ok_or_else(|| {
            NnError::InvalidArgument(
                "this namenode runs alone (no peers): there is no other namenode to lead".into(),
            )
        })?;
        let started = std::time::Instant::now();
        let leader = ha.transfer_leader(&to).await?;
        tracing::info!(to = %to, user = %caller.user(), "leadership transferred by hand");
        Ok(Response::new(pb::TransferLeadershipResponse {
            leader,
            took_ms: started.elapsed().as_millis() as u64,
        }))
    }

    async fn set_safe_mode(
        &self,
        req: Request<pb::SetSafeModeRequest>,
    ) -> Result<Response<pb::SetSafeModeResponse>, Status> {
        let (st, caller) = self.ctx(&req).await?;
        let action = req.get_ref().action();
        if action != pb::SafeModeAction::Get {
            require_super(&caller)?;
        }
        match action {
            pb::SafeModeAction::Enter => {
                st.safe_mode().enter();
                tracing::warn!(user = %caller.user(), "safe mode entered by hand");
            }
            pb::SafeModeAction::Leave => {
                st.safe_mode().leave();
                tracing::warn!(user = %caller.user(), "safe mode left by hand");
            }
            pb::SafeModeAction::Get => st.update_safe_mode(),
        }
        let (reported, total) = st.safe_mode().counts();
        Ok(Response::new(pb::SetSafeModeResponse {
            on: st.safe_mode().is_on(),
            status: st.safe_mode().status(),
            reported_blocks: reported,
            total_blocks: total,
        }))
    }

    async fn set_datanode_admin_state(
        &self,
        req: Request<pb::SetDatanodeAdminStateRequest>,
    ) -> Result<Response<pb::SetDatanodeAdminStateResponse>, Status> {
        let (st, caller) = self.ctx(&req).await?;
        require_super(&caller)?;
        let r = req.into_inner();
        let state = match r.action() {
            pb::DatanodeAdminAction::Decommission => crate::datanode_manager::AdminState::Decommissioning,
            pb::DatanodeAdminAction::Recommission => crate::datanode_manager::AdminState::Normal,
            pb::DatanodeAdminAction::Unspecified => {
                return Err(granary_common::error::status(
                    granary_common::ErrorCode::InvalidArgument,
                    "action must be DECOMMISSION or RECOMMISSION",
                ));
            }
        };
        let unknown = || {
            granary_common::error::status(
                granary_common::ErrorCode::FileNotFound,
                format!("no datanode {:?} is known to this namenode", r.datanode),
            )
        };
        let uuid = st.datanodes().uuid_of(&r.datanode).ok_or_else(unknown)?;
        // Recorded in the metadata store, so a restarted namenode keeps the
        // node out of service; on the mutation thread, so concurrent calls
        // leave memory and store agreeing on the last one.
        let (s, u) = (st.clone(), uuid.clone());
        let out = state != crate::datanode_manager::AdminState::Normal;
        let known = mutating(&self.state, move |writes| {
            writes.take(s.ns().set_out_of_service(&u, out)?);
            Ok(s.datanodes().set_admin_state(&u, state).is_some())
        })
        .await?;
        if !known {
            return Err(unknown());
        }
        tracing::warn!(uuid = %uuid, user = %caller.user(), ?state, "datanode admin state changed");
        // Its blocks need copies elsewhere (decommission) or may now be in excess (recommission).
        st.redundancy().check(st.blocks().node_blocks(&uuid));
        Ok(Response::new(pb::SetDatanodeAdminStateResponse {
            datanode: st.datanodes().info(&uuid),
        }))
    }

    async fn get_datanode_report(
        &self,
        req: Request<pb::GetDatanodeReportRequest>,
    ) -> Result<Response<pb::GetDatanodeReportResponse>, Status> {
        // The cluster's machines and addresses: the superuser's (as HDFS).
        let (_, caller) = self.ctx(&req).await?;
        require_super(&caller)?;
        let datanodes = self.state.datanodes().report();
        let block_counts = datanodes
            .iter()
            .filter_map(|d| d.id.as_ref())
            .map(|i| {
                (
                    i.uuid.clone(),
                    self.state.blocks().node_block_count(&i.uuid) as u64,
                )
            })
            .collect();
        Ok(Response::new(pb::GetDatanodeReportResponse {
            datanodes,
            block_counts,
            health: Some(self.state.health()),
        }))
    }
    async fn get_delegation_token(
        &self,
        req: Request<pb::GetDelegationTokenRequest>,
    ) -> Result<Response<pb::GetDelegationTokenResponse>, Status> {
        // A token, or a daemon acting for a user, cannot get a token: only
        // the user's own certificate (or simple mode's claim) can.
        let by_token = granary_common::identity::bearer(req.metadata()).is_some()
            || granary_common::tls::ConnInfo::of(&req)
                .and_then(|c| c.peer.as_ref())
                .is_some_and(|p| p.role != granary_common::tls::Role::User);
        let (st, caller) = self.ctx(&req).await?;
        super::tokens::get(&st, caller, by_token, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn renew_delegation_token(
        &self,
        req: Request<pb::RenewDelegationTokenRequest>,
    ) -> Result<Response<pb::RenewDelegationTokenResponse>, Status> {
        if granary_common::identity::bearer(req.metadata()).is_some() {
            // A stolen token must not keep itself alive.
            return Err(NnError::AccessDenied(
                "a delegation token cannot be renewed by a call made with a token: use a certificate".into(),
            )
            .into());
        }
        let (st, caller) = self.ctx(&req).await?;
        super::tokens::renew(&st, caller, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn cancel_delegation_token(
        &self,
        req: Request<pb::CancelDelegationTokenRequest>,
    ) -> Result<Response<pb::CancelDelegationTokenResponse>, Status> {
        let (st, caller) = self.ctx(&req).await?;
        super::tokens::cancel(&st, caller, req.into_inner())
            .await
            .map(Response::new)
    }
}
