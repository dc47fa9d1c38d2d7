//! The client service with an audit line for every namespace operation
//! (crate::audit): gRPC clients and WebHDFS both call it. Calls that are
//! part of writing a file (addBlock, complete, renewLease, ...) are not
//! audited, as in HDFS; the create or append that opened the file is.

use std::sync::Arc;

use granary_common::ErrorCode;
use granary_common::config::AuthMode;
use granary_common::tls::{ConnInfo, Role};
use granary_proto as pb;
use granary_proto::client_protocol_server::ClientProtocol;
use tonic::{Request, Response, Status};

use super::client_service::ClientService;
use crate::audit::Event;
use crate::state::NamenodeState;

pub struct Audited {
    inner: ClientService,
    state: Arc<NamenodeState>,
}

impl Audited {
    pub fn new(state: Arc<NamenodeState>) -> Self {
        Self {
            inner: ClientService::new(state.clone()),
            state,
        }
    }

    /// Who calls, from where, over what (before the call consumes it).
    /// The user worked out is left in the request for the service.
    fn caller<T>(&self, req: &mut Request<T>) -> Option<Caller> {
        if !self.state.audit().enabled() {
            return None;
        }
        let found = super::authn::authenticate(&self.state, req);
        if let Ok(a) = &found {
            req.extensions_mut().insert(a.clone());
        }
        let (user, via) = found.map_or_else(|_| (String::new(), None), |a| (a.user.user, a.via));
        let conn = ConnInfo::of(req);
        let certified = conn
            .and_then(|c| c.peer.as_ref())
            .is_some_and(|p| p.role == Role::User);
        let token = granary_common::identity::bearer(req.metadata()).is_some();
        let auth = if token {
            "TOKEN"
        } else if certified || self.state.config().auth != AuthMode::Simple {
            "TLS"
        } else {
            "SIMPLE"
        };
        // In-process calls come from WebHDFS on this namenode.
        let (ip, proto) = match conn {
            Some(c) => (c.remote.map(|a| a.ip()), "rpc"),
            None => (None, "webhdfs"),
        };
        Some(Caller {
            user,
            via,
            auth,
            ip,
            proto,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn record<T>(
        &self,
        caller: Option<Caller>,
        cmd: &'static str,
        src: String,
        dst: Option<String>,
        perm: Option<String>,
        out: &Result<T, Status>,
    ) {
        let Some(Caller {
            user,
            via,
            auth,
            ip,
            proto,
        }) = caller
        else {
            return;
        };
        let allowed = match out {
            Ok(_) => true,
            Err(st) if ErrorCode::from_status(st) == ErrorCode::AccessControl => false,
            Err(_) => return,
        };
        self.state.audit().log(Event {
            allowed,
            user,
            via,
            auth,
            ip,
            cmd,
            src,
            dst,
            perm,
            proto,
        });
    }
}

/// Who called, from where, over what: an audit line's fields besides the
/// operation's own.
struct Caller {
    user: String,
    /// The proxy user acting for `user`, if any.
    via: Option<String>,
    auth: &'static str,
    ip: Option<std::net::IpAddr>,
    proto: &'static str,
}

fn mode(p: u32) -> String {
    format!("{:o}", p & 0o7777)
}

macro_rules! client_protocol {
    (
        audited { $( $m:ident ( $req:ident, $resp:ident ) $cmd:literal |$r:ident| ($src:expr, $dst:expr, $perm:expr); )* }
        passed { $( $p:ident ( $preq:ident, $presp:ident ); )* }
    ) => {
        #[tonic::async_trait]
        impl ClientProtocol for Audited {
            $(
                async fn $m(&self, mut req: Request<pb::$req>) -> Result<Response<pb::$resp>, Status> {
                    self.state.note_client_op();
                    let caller = self.caller(&mut req);
                    let fields = caller.as_ref().map(|_| {
                        let $r = req.get_ref();
                        ($src, $dst, $perm)
                    });
                    let out = self.inner.$m(req).await;
                    if let Some((src, dst, perm)) = fields {
                        self.record(caller, $cmd, src, dst, perm, &out);
                    }
                    out
                }
            )*
            $(
                async fn $p(&self, req: Request<pb::$preq>) -> Result<Response<pb::$presp>, Status> {
                    self.state.note_client_op();
                    self.inner.$p(req).await
                }
            )*
        }
    };
}

client_protocol! {
    audited {
        mkdirs(MkdirsRequest, MkdirsResponse) "mkdirs" |r| (r.path.clone(), None, (r.permission != 0).then(|| mode(r.permission)));
        create(CreateRequest, CreateResponse) "create" |r| (r.path.clone(), None, (r.permission != 0).then(|| mode(r.permission)));
        append(AppendRequest, AppendResponse) "append" |r| (r.path.clone(), None, None);
        get_file_info(GetFileInfoRequest, GetFileInfoResponse) "getfileinfo" |r| (r.path.clone(), None, None);
        get_listing(GetListingRequest, GetListingResponse) "listStatus" |r| (r.path.clone(), None, None);
        get_block_locations(GetBlockLocationsRequest, GetBlockLocationsResponse) "open" |r| (r.path.clone(), None, None);
        get_content_summary(GetContentSummaryRequest, GetContentSummaryResponse) "contentSummary" |r| (r.path.clone(), None, None);
        rename(RenameRequest, RenameResponse) "rename" |r| (r.src.clone(), Some(r.dst.clone()), None);
        delete(DeleteRequest, DeleteResponse) "delete" |r| (r.path.clone(), None, None);
        set_replication(SetReplicationRequest, SetReplicationResponse) "setReplication" |r| (r.path.clone(), None, None);
        set_permission(SetPermissionRequest, SetPermissionResponse) "setPermission" |r| (r.path.clone(), None, Some(mode(r.permission)));
        set_owner(SetOwnerRequest, SetOwnerResponse) "setOwner" |r| (r.path.clone(), None, Some(format!("{}:{}", r.owner.as_deref().unwrap_or(""), r.group.as_deref().unwrap_or(""))));
        set_times(SetTimesRequest, SetTimesResponse) "setTimes" |r| (r.path.clone(), None, None);
        set_quota(SetQuotaRequest, SetQuotaResponse) "setQuota" |r| (r.path.clone(), None, Some(format!("names={:?} space={:?}", r.name_quota, r.space_quota)));
        change_snapshot(ChangeSnapshotRequest, ChangeSnapshotResponse) "snapshot" |r| (r.path.clone(), None, Some(format!("{:?} {} {}", r.action(), r.name, r.new_name)));
        get_snapshot_diff(GetSnapshotDiffRequest, GetSnapshotDiffResponse) "computeSnapshotDiff" |r| (r.path.clone(), None, Some(format!("from={} to={}", r.from, r.to)));
        get_snapshottable_dirs(GetSnapshottableDirsRequest, GetSnapshottableDirsResponse) "listSnapshottableDirectory" |_r| (String::new(), None, None);
        recover_lease(RecoverLeaseRequest, RecoverLeaseResponse) "recoverLease" |r| (r.path.clone(), None, None);
        checkpoint(CheckpointRequest, CheckpointResponse) "checkpoint" |r| (r.dir.clone(), None, None);
        set_safe_mode(SetSafeModeRequest, SetSafeModeResponse) "safemode" |r| (format!("{:?}", r.action()), None, None);
        disk_balance(DiskBalanceRequest, DiskBalanceResponse) "diskBalance" |r| (r.datanode.clone(), None, Some(format!("start={}", r.start)));
        balance(BalanceRequest, BalanceResponse) "balance" |r| (String::new(), None, Some(format!("threshold={} exclude={}", r.threshold_percent, r.exclude.len())));
        set_datanode_admin_state(SetDatanodeAdminStateRequest, SetDatanodeAdminStateResponse) "datanodeAdminState" |r| (r.datanode.clone(), None, Some(format!("{:?}", r.action())));
        change_namenodes(ChangeNamenodesRequest, ChangeNamenodesResponse) "changeNamenodes" |r| (r.node_id.clone(), Some(r.rpc_addr.clone()), Some(if r.remove { "remove".to_string() } else { "add".to_string() }));
        transfer_leadership(TransferLeadershipRequest, TransferLeadershipResponse) "transferLeadership" |r| (r.node_id.clone(), None, None);
        get_delegation_token(GetDelegationTokenRequest, GetDelegationTokenResponse) "getDelegationToken" |r| (String::new(), None, Some(format!("renewer={}", r.renewer)));
        renew_delegation_token(RenewDelegationTokenRequest, RenewDelegationTokenResponse) "renewDelegationToken" |_r| (String::new(), None, None);
        cancel_delegation_token(CancelDelegationTokenRequest, CancelDelegationTokenResponse) "cancelDelegationToken" |_r| (String::new(), None, None);
    }
    passed {
        add_block(AddBlockRequest, AddBlockResponse);
        abandon_block(AbandonBlockRequest, AbandonBlockResponse);
        complete(CompleteRequest, CompleteResponse);
        renew_lease(RenewLeaseRequest, RenewLeaseResponse);
        update_block_for_pipeline(UpdateBlockForPipelineRequest, UpdateBlockForPipelineResponse);
        get_additional_datanode(GetAdditionalDatanodeRequest, GetAdditionalDatanodeResponse);
        fsync(FsyncRequest, FsyncResponse);
        report_bad_blocks(ReportBadBlocksRequest, ReportBadBlocksResponse);
        get_server_defaults(GetServerDefaultsRequest, GetServerDefaultsResponse);
        get_datanode_report(GetDatanodeReportRequest, GetDatanodeReportResponse);
    }
}
