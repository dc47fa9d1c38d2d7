//! The `ClientNamenodeProtocol` calls HDFS clients make, each mapped onto
//! the same client service gRPC and WebHDFS use (the same checks, errors,
//! audit lines and retry cache), with HDFS's messages translated to and
//! from Granary's.

use std::net::SocketAddr;

use bytes::Bytes;
use prost::Message;
use tonic::{Request, Status};

use super::convert::{
    block, child, datanode_info, file_status, hex, located_block, located_blocks, xfer_addr,
};
use super::frame::{FrameError, next};
use crate::rpc::audited::Audited;
use crate::state::NamenodeState;
use granary_common::ErrorCode;
use granary_common::error::status;
use granary_common::identity::{DOAS_METADATA, Identity};
use granary_common::retry::CallKey;
use granary_common::tls::ConnInfo;
use granary_proto as pb;
use granary_proto::client_protocol_server::ClientProtocol;
use granary_proto::hadoop::common as rpc;
use granary_proto::hadoop::hdfs;

/// The protocol HDFS clients call the namenode by.
pub const CLIENT_PROTOCOL: &str = "org.apache.hadoop.hdfs.protocol.ClientProtocol";

/// Entries per getListing answer (HDFS's `dfs.ls.limit`).
const LISTING_LIMIT: u32 = 1000;

/// Who calls on one connection, as its connection context says (SIMPLE
/// authentication: the user is whom the client names; a real user acting
/// for another is a proxy user, allowed as `doas` is).
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub real_user: Option<String>,
    pub remote: Option<SocketAddr>,
}

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// The service refused it (its code names the Java exception).
    Status(Status),
    /// No such method in `ClientProtocol` here.
    NoSuchMethod(String),
    /// Its request does not decode.
    Malformed(FrameError),
}

impl From<Status> for CallError {
    fn from(s: Status) -> Self {
        Self::Status(s)
    }
}

impl From<FrameError> for CallError {
    fn from(e: FrameError) -> Self {
        Self::Malformed(e)
    }
}

pub(super) type CallResult = Result<Vec<u8>, CallError>;

/// One call's context: the service, who calls, and the retry key.
pub struct Call<'a> {
    pub svc: &'a Audited,
    pub st: &'a NamenodeState,
    pub caller: &'a Caller,
    pub header: &'a rpc::RpcRequestHeaderProto,
}

pub(super) fn reply(m: impl Message) -> CallResult {
    Ok(m.encode_length_delimited_to_vec())
}

impl Call<'_> {
    /// A request to the client service as this call's caller: its user
    /// (or the real user acting for it), the connection it came on, and
    /// HDFS's client and call ids as the retry cache's key.
    pub(super) fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        match &self.caller.real_user {
            Some(real) if *real != self.caller.user => {
                // A user who cannot be named in metadata goes as nobody,
                // never as the proxy user itself.
                let v = self.caller.user.parse().unwrap_or_else(|_| {
                    tonic::metadata::MetadataValue::from_static(granary_common::identity::ANONYMOUS)
                });
                Identity::new(real.clone()).apply(r.metadata_mut());
                r.metadata_mut().insert(DOAS_METADATA, v);
            }
            _ => Identity::new(self.caller.user.clone()).apply(r.metadata_mut()),
        }
        if !self.header.client_id.is_empty() && self.header.call_id >= 0 {
            CallKey {
                client_id: hex(&self.header.client_id),
                call_id: self.header.call_id as u64,
            }
            .apply(r.metadata_mut());
        }
        r.extensions_mut().insert(ConnInfo {
            remote: self.caller.remote,
            ..Default::default()
        });
        r
    }

    /// Runs `method` with the request in `body`; the encoded response.
    pub async fn run(&self, method: &str, mut body: Bytes) -> CallResult {
        // A namenode that does not lead its group serves no client call
        // (StandbyException: HDFS's failover proxies move on), but says
        // what it is.
        if method != "getHAServiceState" {
            self.st.check_active().map_err(Status::from)?;
        }
        let b = &mut body;
        match method {
            "getServerDefaults" => self.server_defaults().await,
            "getFileInfo" => {
                self.file_info(next::<hdfs::GetFileInfoRequestProto>(b, method)?.src)
                    .await
            }
            "getFileLinkInfo" => {
                // No symbolic links: a link's own status is the file's.
                let r = next::<hdfs::GetFileLinkInfoRequestProto>(b, method)?;
                let st = self.stat(&r.src).await?;
                reply(hdfs::GetFileLinkInfoResponseProto {
                    fs: st.map(|s| file_status(&s, Vec::new(), None)),
                })
            }
            "getListing" => self.listing(next(b, method)?).await,
            "getBlockLocations" => {
                let r: hdfs::GetBlockLocationsRequestProto = next(b, method)?;
                let blocks = self.blocks(&r.src, r.offset, r.length).await?;
                reply(hdfs::GetBlockLocationsResponseProto {
                    locations: Some(located_blocks(self.st, &blocks)),
                })
            }
            "mkdirs" => {
                let r: hdfs::MkdirsRequestProto = next(b, method)?;
                let req = pb::MkdirsRequest {
                    path: r.src,
                    permission: r.masked.perm & 0o7777,
                    create_parent: r.create_parent,
                };
                self.svc.mkdirs(self.req(req)).await?;
                reply(hdfs::MkdirsResponseProto { result: true })
            }
            "rename" => {
                // The old rename answers false where rename2 throws.
                let r: hdfs::RenameRequestProto = next(b, method)?;
                let req = pb::RenameRequest {
                    src: r.src,
                    dst: r.dst,
                    overwrite: false,
                };
                let result = quietly(self.svc.rename(self.req(req)).await)?;
                reply(hdfs::RenameResponseProto { result })
            }
            "rename2" => {
                // HDFS's rename2 never moves into an existing directory:
                // an existing destination is refused, or with OVERWRITE
                // replaced (files only here).
                let r: hdfs::Rename2RequestProto = next(b, method)?;
                if let Some(d) = self.stat(&r.dst).await? {
                    if !r.overwrite_dest {
                        return Err(status(
                            ErrorCode::FileAlreadyExists,
                            format!("rename destination {} already exists", r.dst),
                        )
                        .into());
                    }
                    if d.is_dir() {
                        return Err(status(
                            ErrorCode::Unsupported,
                            format!(
                                "rename with OVERWRITE onto the directory {} is not supported",
                                r.dst
                            ),
                        )
                        .into());
                    }
                }
                let req = pb::RenameRequest {
                    src: r.src,
                    dst: r.dst,
                    overwrite: r.overwrite_dest,
                };
                self.svc.rename(self.req(req)).await?;
                reply(hdfs::Rename2ResponseProto {})
            }
            "delete" => {
                let r: hdfs::DeleteRequestProto = next(b, method)?;
                let req = pb::DeleteRequest {
                    path: r.src,
                    recursive: r.recursive,
                };
                let result = match self.svc.delete(self.req(req)).await {
                    Ok(_) => true,
                    Err(st) if ErrorCode::from_status(&st) == ErrorCode::FileNotFound => false,
                    Err(st) => return Err(st.into()),
                };
                reply(hdfs::DeleteResponseProto { result })
            }
            "setPermission" => {
                let r: hdfs::SetPermissionRequestProto = next(b, method)?;
                let req = pb::SetPermissionRequest {
                    path: r.src,
                    permission: r.permission.perm & 0o7777,
                };
                self.svc.set_permission(self.req(req)).await?;
                reply(hdfs::SetPermissionResponseProto {})
            }
            "setOwner" => {
                let r: hdfs::SetOwnerRequestProto = next(b, method)?;
                let req = pb::SetOwnerRequest {
                    path: r.src,
                    owner: r.username.filter(|u| !u.is_empty()),
                    group: r.groupname.filter(|g| !g.is_empty()),
                };
                self.svc.set_owner(self.req(req)).await?;
                reply(hdfs::SetOwnerResponseProto {})
            }
            "setReplication" => {
                let r: hdfs::SetReplicationRequestProto = next(b, method)?;
                let req = pb::SetReplicationRequest {
                    path: r.src,
                    replication: r.replication,
                };
                let result = match self.svc.set_replication(self.req(req)).await {
                    Ok(_) => true,
                    // HDFS: false for a path that is no file.
                    Err(st) if ErrorCode::from_status(&st) == ErrorCode::FileNotFound => false,
                    Err(st) => return Err(st.into()),
                };
                reply(hdfs::SetReplicationResponseProto { result })
            }
            "setTimes" => {
                let r: hdfs::SetTimesRequestProto = next(b, method)?;
                // -1 (all bits set, sent as uint64): leave that time alone.
                let time = |t: u64| (t != u64::MAX).then_some(t as i64);
                let req = pb::SetTimesRequest {
                    path: r.src,
                    modification_time: time(r.mtime),
                    access_time: time(r.atime),
                };
                self.svc.set_times(self.req(req)).await?;
                reply(hdfs::SetTimesResponseProto {})
            }
            "getContentSummary" => {
                let r: hdfs::GetContentSummaryRequestProto = next(b, method)?;
                let req = pb::GetContentSummaryRequest { path: r.path };
                let s = self.svc.get_content_summary(self.req(req)).await?.into_inner();
                reply(hdfs::GetContentSummaryResponseProto {
                    summary: hdfs::ContentSummaryProto {
                        length: s.length,
                        file_count: s.file_count,
                        directory_count: s.directory_count,
                        // -1 (as uint64) is HDFS's "none".
                        quota: s.name_quota.unwrap_or(u64::MAX),
                        space_consumed: s.space_consumed,
                        space_quota: s.space_quota.unwrap_or(u64::MAX),
                        ..Default::default()
                    },
                })
            }
            "setQuota" => {
                let r: hdfs::SetQuotaRequestProto = next(b, method)?;
                if r.storage_type.is_some() {
                    return Err(status(
                        ErrorCode::Unsupported,
                        "quotas by storage type are not served: every replica counts against the space quota",
                    )
                    .into());
                }
                // Long.MAX_VALUE leaves a quota, -1 removes it.
                let quota = |v: u64| (v as i64 != i64::MAX).then_some(v as i64);
                let req = pb::SetQuotaRequest {
                    path: r.path,
                    name_quota: quota(r.namespace_quota),
                    space_quota: quota(r.storagespace_quota),
                };
                self.svc.set_quota(self.req(req)).await?;
                reply(hdfs::SetQuotaResponseProto {})
            }
            "create" => self.create(next(b, method)?).await,
            "addBlock" => {
                let r: hdfs::AddBlockRequestProto = next(b, method)?;
                // After an append (into a new block) an HDFS client names no
                // previous block; Granary's addBlock wants the file's last,
                // complete block named.
                let previous = match &r.previous {
                    Some(p) => Some(block(p)),
                    None => {
                        // A last block still being written (a retried
                        // first addBlock) is not one to close.
                        let located = self.blocks(&r.src, 0, u64::MAX >> 1).await?;
                        match located.is_last_block_complete {
                            true => located.blocks.last().and_then(|lb| lb.block),
                            false => None,
                        }
                    }
                };
                let req = pb::AddBlockRequest {
                    path: r.src,
                    file_id: r.file_id.unwrap_or(0),
                    client_name: r.client_name,
                    previous,
                    excluded_nodes: r.exclude_nodes.iter().map(xfer_addr).collect(),
                };
                let out = self.svc.add_block(self.req(req)).await?.into_inner();
                let lb = out
                    .block
                    .ok_or_else(|| Status::internal("addBlock answered no block"))?;
                reply(hdfs::AddBlockResponseProto {
                    block: located_block(self.st.cluster_id(), &lb),
                })
            }
            "complete" => {
                let r: hdfs::CompleteRequestProto = next(b, method)?;
                let req = pb::CompleteRequest {
                    path: r.src,
                    file_id: r.file_id.unwrap_or(0),
                    client_name: r.client_name,
                    last: r.last.as_ref().map(block),
                };
                let out = self.svc.complete(self.req(req)).await?.into_inner();
                reply(hdfs::CompleteResponseProto {
                    result: out.completed,
                })
            }
            "abandonBlock" => {
                let r: hdfs::AbandonBlockRequestProto = next(b, method)?;
                let req = pb::AbandonBlockRequest {
                    path: r.src,
                    file_id: r.file_id.unwrap_or(0),
                    client_name: r.holder,
                    block: Some(block(&r.b)),
                };
                self.svc.abandon_block(self.req(req)).await?;
                reply(hdfs::AbandonBlockResponseProto {})
            }
            "append" => {
                // Granary appends into a new block (HDFS's NEW_BLOCK): no
                // last block comes back, so the client asks for one.
                let r: hdfs::AppendRequestProto = next(b, method)?;
                let req = pb::AppendRequest {
                    path: r.src,
                    client_name: r.client_name,
                };
                let out = self.svc.append(self.req(req)).await?.into_inner();
                reply(hdfs::AppendResponseProto {
                    block: None,
                    stat: out.status.map(|s| file_status(&s, Vec::new(), None)),
                })
            }
            "getDatanodeReport" => {
                // The superuser's, as the service checks.
                let r: hdfs::GetDatanodeReportRequestProto = next(b, method)?;
                let out = self
                    .svc
                    .get_datanode_report(self.req(pb::GetDatanodeReportRequest {}))
                    .await?
                    .into_inner();
                use hdfs::DatanodeReportTypeProto as Kind;
                let wanted = |d: &pb::DatanodeInfo| {
                    let state = pb::DatanodeState::try_from(d.state).unwrap_or_default();
                    match Kind::try_from(r.r#type).unwrap_or(Kind::All) {
                        Kind::All => true,
                        Kind::Live => state != pb::DatanodeState::Dead,
                        Kind::Dead => state == pb::DatanodeState::Dead,
                        Kind::Decommissioning => state == pb::DatanodeState::Decommissioning,
                        Kind::EnteringMaintenance | Kind::InMaintenance => false,
                    }
                };
                reply(hdfs::GetDatanodeReportResponseProto {
                    di: out
                        .datanodes
                        .iter()
                        .filter(|d| wanted(d))
                        .map(datanode_info)
                        .collect(),
                })
            }
            "updateBlockForPipeline" => {
                // A writer rebuilding its pipeline after a datanode failed:
                // a new generation stamp (and token) for its block. HDFS
                // names the block only; its file is the block's owner.
                let r: hdfs::UpdateBlockForPipelineRequestProto = next(b, method)?;
                let owner = self.owner(r.block.block_id)?;
                let req = pb::UpdateBlockForPipelineRequest {
                    path: format!("(block {})", r.block.block_id),
                    file_id: owner,
                    client_name: r.client_name,
                    block: Some(block(&r.block)),
                };
                let out = self
                    .svc
                    .update_block_for_pipeline(self.req(req))
                    .await?
                    .into_inner();
                let lb = pb::LocatedBlock {
                    block: out.block,
                    access_token: out.access_token,
                    ..Default::default()
                };
                reply(hdfs::UpdateBlockForPipelineResponseProto {
                    block: located_block(self.st.cluster_id(), &lb),
                })
            }
            "updatePipeline" => {
                // The new stamp is in the namespace already (above); the
                // nodes holding the block report it under that stamp.
                let r: hdfs::UpdatePipelineRequestProto = next(b, method)?;
                let current = self
                    .st
                    .ns()
                    .block_owner(r.new_block.block_id)
                    .map_err(Status::from)?
                    .map(|o| o.gs);
                if current != Some(r.new_block.generation_stamp) {
                    return Err(status(
                        ErrorCode::InvalidArgument,
                        format!(
                            "updatePipeline: block {} is not at generation stamp {}",
                            r.new_block.block_id, r.new_block.generation_stamp
                        ),
                    )
                    .into());
                }
                reply(hdfs::UpdatePipelineResponseProto {})
            }
            "getAdditionalDatanode" => {
                // A writer whose pipeline lost a node (and whose policy
                // wants it replaced: after hflush, or when few are left)
                // asks for another; it then has a survivor copy the
                // replica there (TRANSFER_BLOCK) before the recovery.
                let r: hdfs::GetAdditionalDatanodeRequestProto = next(b, method)?;
                let req = pb::GetAdditionalDatanodeRequest {
                    path: r.src,
                    file_id: r.file_id.unwrap_or(0),
                    client_name: r.client_name,
                    block: Some(block(&r.blk)),
                    existing: r.existings.iter().map(xfer_addr).collect(),
                    excluded: r.excludes.iter().map(xfer_addr).collect(),
                    count: r.num_additional_nodes,
                };
                let out = self
                    .svc
                    .get_additional_datanode(self.req(req))
                    .await?
                    .into_inner();
                let lb = out
                    .block
                    .ok_or_else(|| Status::internal("getAdditionalDatanode answered no block"))?;
                reply(hdfs::GetAdditionalDatanodeResponseProto {
                    block: located_block(self.st.cluster_id(), &lb),
                })
            }
            "fsync" => {
                // hflush/hsync: the writer's lease is checked, and the
                // flushed length of its block recorded (-1: not known).
                let r: hdfs::FsyncRequestProto = next(b, method)?;
                let req = pb::FsyncRequest {
                    path: r.src,
                    file_id: r.file_id.unwrap_or(0),
                    client_name: r.client,
                    last_block_length: r.last_block_length.and_then(|l| u64::try_from(l).ok()),
                };
                self.svc.fsync(self.req(req)).await?;
                reply(hdfs::FsyncResponseProto {})
            }
            "renewLease" => {
                let r: hdfs::RenewLeaseRequestProto = next(b, method)?;
                let req = pb::RenewLeaseRequest {
                    client_name: r.client_name,
                };
                self.svc.renew_lease(self.req(req)).await?;
                reply(hdfs::RenewLeaseResponseProto {})
            }
            "recoverLease" => {
                let r: hdfs::RecoverLeaseRequestProto = next(b, method)?;
                let req = pb::RecoverLeaseRequest { path: r.src };
                let out = self.svc.recover_lease(self.req(req)).await?.into_inner();
                reply(hdfs::RecoverLeaseResponseProto { result: out.closed })
            }
            "getFsStats" => {
                // Over live datanodes, as HDFS's; anyone may ask (`hadoop fs -df`).
                let (capacity, used, remaining) = self
                    .st
                    .datanodes()
                    .report()
                    .iter()
                    .filter(|d| d.state == pb::DatanodeState::Live as i32)
                    .fold((0u64, 0u64, 0u64), |(c, u, r), d| {
                        (
                            c.saturating_add(d.capacity),
                            u.saturating_add(d.dfs_used),
                            r.saturating_add(d.remaining),
                        )
                    });
                let h = self.st.health();
                reply(hdfs::GetFsStatsResponseProto {
                    capacity,
                    used,
                    remaining,
                    under_replicated: h.under_replicated,
                    corrupt_blocks: h.corrupt_replicas,
                    missing_blocks: h.missing,
                    ..Default::default()
                })
            }
            // Every namenode of a group answers from the one namespace its
            // leader serves (followers send clients on): nothing to wait for.
            "msync" => reply(hdfs::MsyncResponseProto {}),
            "getHAServiceState" => {
                let state = match self.st.check_active() {
                    Ok(()) => rpc::HaServiceStateProto::Active,
                    Err(_) => rpc::HaServiceStateProto::Standby,
                };
                reply(hdfs::HaServiceStateResponseProto { state: state as i32 })
            }
            other if super::snapshot_calls::is_snapshot_call(other) => self.snapshot_call(other, b).await,
            other => Err(CallError::NoSuchMethod(other.to_string())),
        }
    }

    /// create: CREATE with or without OVERWRITE; appending through create
    /// (its APPEND flag) is refused, as the append call is not served yet.
    async fn create(&self, r: hdfs::CreateRequestProto) -> CallResult {
        use hdfs::CreateFlagProto as Flag;
        if r.create_flag & Flag::Append as u32 != 0 {
            return Err(status(ErrorCode::Unsupported, "create with APPEND is not served yet").into());
        }
        if r.ec_policy_name.as_deref().is_some_and(|p| !p.is_empty()) {
            return Err(status(ErrorCode::Unsupported, "erasure coding is not served").into());
        }
        let req = pb::CreateRequest {
            path: r.src,
            permission: r.masked.perm & 0o7777,
            client_name: r.client_name,
            overwrite: r.create_flag & Flag::Overwrite as u32 != 0,
            create_parent: r.create_parent,
            replication: r.replication,
            block_size: r.block_size,
        };
        let out = self.svc.create(self.req(req)).await?.into_inner();
        reply(hdfs::CreateResponseProto {
            fs: out.status.map(|s| file_status(&s, Vec::new(), None)),
        })
    }

    async fn server_defaults(&self) -> CallResult {
        let d = self
            .svc
            .get_server_defaults(self.req(pb::GetServerDefaultsRequest {}))
            .await?
            .into_inner();
        reply(hdfs::GetServerDefaultsResponseProto {
            server_defaults: hdfs::FsServerDefaultsProto {
                block_size: d.block_size,
                bytes_per_checksum: d.bytes_per_checksum,
                write_packet_size: d.write_packet_size,
                replication: d.replication,
                file_buffer_size: 4096,
                encrypt_data_transfer: Some(false),
                // Whole minutes, as HDFS's; a shorter interval than one
                // minute still says the trash is on.
                trash_interval: Some(match d.trash_interval_ms {
                    0 => 0,
                    ms => ms.div_ceil(60_000),
                }),
                checksum_type: Some(hdfs::ChecksumTypeProto::ChecksumCrc32c as i32),
                ..Default::default()
            },
        })
    }

    /// The file (inode id) block `id` belongs to.
    fn owner(&self, id: u64) -> Result<u64, Status> {
        self.st
            .ns()
            .block_owner(id)
            .map_err(Status::from)?
            .map(|o| o.inode)
            .ok_or_else(|| status(ErrorCode::FileNotFound, format!("block {id} belongs to no file")))
    }

    /// A path's status; None when it is not there (HDFS answers that
    /// with an empty response, not an exception).
    async fn stat(&self, path: &str) -> Result<Option<pb::FileStatus>, Status> {
        let req = pb::GetFileInfoRequest { path: path.into() };
        match self.svc.get_file_info(self.req(req)).await {
            Ok(r) => Ok(r.into_inner().status),
            // A path through a file is not there either, for HDFS reads.
            Err(st)
                if matches!(
                    ErrorCode::from_status(&st),
                    ErrorCode::FileNotFound | ErrorCode::ParentNotDirectory
                ) =>
            {
                Ok(None)
            }
            Err(st) => Err(st),
        }
    }

    /// getFileInfo: no status (not an error) for a path that is not there.
    async fn file_info(&self, src: String) -> CallResult {
        let st = self.stat(&src).await?;
        reply(hdfs::GetFileInfoResponseProto {
            fs: st.map(|s| file_status(&s, Vec::new(), None)),
        })
    }

    async fn blocks(&self, path: &str, offset: u64, length: u64) -> Result<pb::LocatedBlocks, Status> {
        let req = pb::GetBlockLocationsRequest {
            path: path.into(),
            offset,
            length,
        };
        Ok(self
            .svc
            .get_block_locations(self.req(req))
            .await?
            .into_inner()
            .blocks
            .unwrap_or_default())
    }

    /// getListing, a page after `startAfter`; entries carry their names.
    /// With `needLocation` (listLocatedStatus: Spark, MapReduce) each file
    /// carries its block locations.
    async fn listing(&self, r: hdfs::GetListingRequestProto) -> CallResult {
        let start_after = String::from_utf8(r.start_after)
            .map_err(|_| Status::invalid_argument("startAfter is not UTF-8"))?;
        let req = pb::GetListingRequest {
            path: r.src.clone(),
            start_after,
            limit: LISTING_LIMIT,
        };
        let page = match self.svc.get_listing(self.req(req)).await {
            Ok(p) => p.into_inner(),
            // A path through a file is not there, as HDFS reads say
            // (Spark probes `FILE/_spark_metadata`).
            Err(st) if ErrorCode::from_status(&st) == ErrorCode::ParentNotDirectory => {
                return Err(
                    status(ErrorCode::FileNotFound, format!("File {} does not exist.", r.src)).into(),
                );
            }
            Err(st) => return Err(st.into()),
        };
        // A file lists as itself, an entry with an empty name (HDFS's
        // answer). Only one entry named as the path's last component can
        // be that, or the one file of a directory of the same name.
        let itself = match page.entries.as_slice() {
            [e] if !e.is_dir() && !page.has_more && r.src.rsplit('/').next() == Some(e.name.as_str()) => {
                self.stat(&r.src).await?.is_some_and(|s| !s.is_dir())
            }
            _ => false,
        };
        let mut entries = Vec::with_capacity(page.entries.len());
        for e in &page.entries {
            let path = if itself {
                r.src.clone()
            } else {
                child(&r.src, &e.name)
            };
            let locations = match r.need_location && !e.is_dir() {
                true => Some(located_blocks(
                    self.st,
                    &self.blocks(&path, 0, u64::MAX >> 1).await?,
                )),
                false => None,
            };
            let name = if itself {
                Vec::new()
            } else {
                e.name.as_bytes().to_vec()
            };
            entries.push(file_status(e, name, locations));
        }
        reply(hdfs::GetListingResponseProto {
            dir_list: Some(hdfs::DirectoryListingProto {
                partial_listing: entries,
                // HDFS clients only ask whether it is above zero.
                remaining_entries: u32::from(page.has_more),
            }),
        })
    }
}

/// Old-style calls answer false for a missing or existing path, true when
/// done; other refusals (permissions, safe mode) stay errors.
fn quietly<T>(out: Result<T, Status>) -> Result<bool, Status> {
    match out {
        Ok(_) => Ok(true),
        Err(st)
            if matches!(
                ErrorCode::from_status(&st),
                ErrorCode::FileNotFound | ErrorCode::FileAlreadyExists | ErrorCode::ParentNotDirectory
            ) =>
        {
            Ok(false)
        }
        Err(st) => Err(st),
    }
}
