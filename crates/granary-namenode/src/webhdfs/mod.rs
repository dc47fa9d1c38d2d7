//! WebHDFS on the namenode's HTTP port: `/webhdfs/v1/PATH?op=...`.
//!
//! Namespace operations go through the same `ClientProtocol` service as
//! gRPC clients (same checks, same errors); OPEN, CREATE, APPEND and
//! GETFILECHECKSUM are redirected (307) to a datanode's HTTP port, which
//! moves the data through the normal pipeline, as in HDFS.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};

use crate::permission::Access;
use crate::rpc::audited::Audited;
use crate::rpc::authn::Authenticated;
use crate::state::NamenodeState;
use granary_common::ErrorCode;
use granary_common::identity::Identity;
use granary_common::webhdfs::{self as web, Params, WebError, WebResult};
use granary_proto as pb;
use granary_proto::client_protocol_server::ClientProtocol;

mod listing;
mod locations;
mod snapshots;
mod tokens;

/// `[webhdfs]` of the namenode configuration.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebHdfsConfig {
    /// Users who may act for others through `doas` (Hadoop's proxy users).
    pub proxy_users: Vec<String>,
}

pub struct WebHdfs {
    svc: Arc<Audited>,
    st: Arc<NamenodeState>,
    rpc_addr: String,
    /// Slots of LISTSTATUS answers being streamed (`listing::MAX_LISTING_STREAMS`).
    listing_streams: Arc<tokio::sync::Semaphore>,
}

pub fn routes(st: Arc<NamenodeState>, rpc_addr: String) -> Router {
    let w = Arc::new(WebHdfs {
        svc: Arc::new(Audited::new(st.clone())),
        st,
        rpc_addr,
        listing_streams: listing::stream_slots(),
    });
    Router::new()
        .route(web::PREFIX, any(handle))
        .route(&format!("{}/", web::PREFIX), any(handle))
        .route(&format!("{}/{{*path}}", web::PREFIX), any(handle))
        .layer(axum::middleware::from_fn_with_state(w.clone(), standby))
        .with_state(w)
}

/// A namenode that does not lead its group sends WebHDFS requests to the
/// leader's HTTP address (307, same path and query, so clients that know
/// one namenode only keep working); when no leader is known, it answers as
/// HDFS's standby does: 403 StandbyException, naming the leader if it can.
async fn standby(
    State(w): State<Arc<WebHdfs>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Err(e) = w.st.check_active() else {
        return next.run(req).await;
    };
    if let Some(ha) = w.st.ha()
        && let Some(leader) = ha.leader_http_addr().await
    {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let to = format!("{}://{leader}{pq}", w.st.http_scheme());
        if let Ok(v) = axum::http::HeaderValue::from_str(&to) {
            return (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, v)],
            )
                .into_response();
        }
    }
    WebError::new(ErrorCode::Standby, e.to_string()).into_response()
}

async fn handle(
    State(w): State<Arc<WebHdfs>>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = web::params_of(query);
    match w.dispatch(&method, &uri, &params, &headers).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, path = uri.path(), error = %e, "webhdfs request failed");
            e.into_response()
        }
    }
}

/// A call of the client service by `id` (in-process: the service takes
/// who it acts as, and the proxy user acting for it, from here).
pub(super) fn request<T>(id: &Authenticated, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    id.user.apply(r.metadata_mut());
    r.extensions_mut().insert(id.clone());
    r
}

fn json(v: Value) -> Response {
    Json(v).into_response()
}

fn boolean(b: bool) -> Response {
    json(json!({ "boolean": b }))
}

fn empty_ok() -> Response {
    (StatusCode::OK, [(header::CONTENT_LENGTH, "0")]).into_response()
}

/// True when the request carries a body (data ops take theirs on the datanode).
fn has_body(headers: &HeaderMap) -> bool {
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    len > 0 || headers.contains_key(header::TRANSFER_ENCODING)
}

impl WebHdfs {
    async fn dispatch(
        &self,
        method: &Method,
        uri: &Uri,
        p: &Params,
        headers: &HeaderMap,
    ) -> WebResult<Response> {
        let path = web::path_of_uri(uri.path())?;
        let op = p.op()?;
        let id = self.effective_user(p)?;
        let user = id.user.user.clone();
        let data_op = matches!(op.as_str(), "CREATE" | "APPEND");
        if !data_op && has_body(headers) {
            return Err(WebError::new(
                ErrorCode::InvalidArgument,
                format!("op={op} takes no request body"),
            ));
        }
        match (method, op.as_str()) {
            (&Method::GET, "OPEN") => self.open(&id, &path, p).await,
            (&Method::GET, "GETDELEGATIONTOKEN") => self.get_token(&id, p).await,
            (&Method::PUT, "RENEWDELEGATIONTOKEN") => self.renew_token(&id, p).await,
            (&Method::PUT, "CANCELDELEGATIONTOKEN") => self.cancel_token(&id, p).await,
            (&Method::GET, "GETFILESTATUS") => {
                let st = self.stat(&id, &path).await?;
                Ok(json(json!({ "FileStatus": web::file_status(&st, "") })))
            }
            (&Method::GET, "LISTSTATUS") => self.list_status(&id, &path).await,
            (&Method::GET, "LISTSTATUS_BATCH") => self.list_batch(&id, &path, p).await,
            (&Method::GET, "GETCONTENTSUMMARY") => {
                let s = self.summary(&id, &path).await?;
                Ok(json(json!({ "ContentSummary": {
                    "directoryCount": s.directory_count,
                    "fileCount": s.file_count,
                    "length": s.length,
                    "quota": s.name_quota.map_or(-1, |q| q as i64),
                    "spaceConsumed": s.space_consumed,
                    "spaceQuota": s.space_quota.map_or(-1, |q| q as i64),
                    "typeQuota": {},
                }})))
            }
            (&Method::GET, "GETQUOTAUSAGE") => {
                let s = self.summary(&id, &path).await?;
                Ok(json(json!({ "QuotaUsage": {
                    "fileAndDirectoryCount": s.file_count + s.directory_count,
                    "quota": s.name_quota.map_or(-1, |q| q as i64),
                    "spaceConsumed": s.space_consumed,
                    "spaceQuota": s.space_quota.map_or(-1, |q| q as i64),
                    "typeQuota": {},
                }})))
            }
            (&Method::GET, "GETFILECHECKSUM") => {
                let st = self.stat(&id, &path).await?;
                if st.is_dir() {
                    return Err(WebError::new(
                        ErrorCode::FileNotFound,
                        format!("Path is not a file: {path}"),
                    ));
                }
                let dn = self.any_datanode()?;
                self.redirect(&dn, &path, &id, p, &[])
            }
            (&Method::GET, "GETHOMEDIRECTORY") => Ok(json(json!({ "Path": format!("/user/{user}") }))),
            (&Method::GET, "GETTRASHROOT") => Ok(json(json!({ "Path": format!("/user/{user}/.Trash") }))),
            (&Method::GET, "GETFILEBLOCKLOCATIONS") => self.file_block_locations(&id, &path, p).await,
            (&Method::GET, "GET_BLOCK_LOCATIONS") => self.located_blocks(&id, &path, p).await,
            (&Method::GET, "GETSERVERDEFAULTS") => {
                let d = self.svc_defaults().await?;
                Ok(json(json!({ "FsServerDefaults": {
                    "blockSize": d.block_size,
                    "bytesPerChecksum": d.bytes_per_checksum,
                    "writePacketSize": d.write_packet_size,
                    "replication": d.replication,
                    "fileBufferSize": 4096,
                    "encryptDataTransfer": false,
                    "trashInterval": 0,
                    "checksumType": "CRC32C",
                    "keyProviderUri": "",
                    "defaultStoragePolicyId": 7,
                }})))
            }
            (&Method::GET, "CHECKACCESS") => self.check_access(&user, &path, p).await,
            (&Method::GET, "GETACLSTATUS") => {
                let st = self.stat(&id, &path).await?;
                Ok(json(json!({ "AclStatus": {
                    "entries": [],
                    "group": st.group,
                    "owner": st.owner,
                    "permission": format!("{:o}", st.permission & 0o1777),
                    "stickyBit": st.permission & 0o1000 != 0,
                }})))
            }
            (&Method::PUT, "CREATE") => {
                let dn = self.writer_datanode(p)?;
                self.redirect(&dn, &path, &id, p, &[])
            }
            (&Method::POST, "APPEND") => {
                // Fail early, as HDFS does, when the file is not there.
                let st = self.stat(&id, &path).await?;
                if st.is_dir() {
                    return Err(WebError::new(
                        ErrorCode::FileNotFound,
                        format!("Failed to append to non-existent file {path}: it is a directory"),
                    ));
                }
                let dn = self.any_datanode()?;
                self.redirect(&dn, &path, &id, p, &[])
            }
            (&Method::PUT, "MKDIRS") => {
                let req = pb::MkdirsRequest {
                    path: path.clone(),
                    permission: p.permission()?.unwrap_or(0),
                    create_parent: true,
                };
                self.svc.mkdirs(request(&id, req)).await?;
                Ok(boolean(true))
            }
            (&Method::PUT, "RENAME") => self.rename(&id, &path, p).await,
            (&Method::PUT, "SETREPLICATION") => {
                let st = self.stat(&id, &path).await?;
                if st.is_dir() {
                    return Ok(boolean(false));
                }
                let replication = match p.replication()? {
                    Some(r) => r,
                    None => self.svc_defaults().await?.replication,
                };
                let req = pb::SetReplicationRequest { path, replication };
                self.svc.set_replication(request(&id, req)).await?;
                Ok(boolean(true))
            }
            (&Method::PUT, "SETQUOTA") => {
                // Hadoop's: Long.MAX_VALUE (the default) leaves a quota, -1 removes it.
                let quota = |name: &str| -> WebResult<Option<i64>> {
                    match p.get(name) {
                        None => Ok(None),
                        Some(v) => match v.parse::<i64>() {
                            Ok(i64::MAX) => Ok(None),
                            Ok(n) => Ok(Some(n)),
                            Err(_) => Err(WebError::bad_param(
                                name,
                                v,
                                "must be a whole number; -1 removes the quota",
                            )),
                        },
                    }
                };
                let req = pb::SetQuotaRequest {
                    path,
                    name_quota: quota("namespacequota")?,
                    space_quota: quota("storagespacequota")?,
                };
                self.svc.set_quota(request(&id, req)).await?;
                Ok(empty_ok())
            }
            (&Method::PUT, "SETOWNER") => {
                let owner = p.get("owner").filter(|s| !s.is_empty()).map(str::to_string);
                let group = p.get("group").filter(|s| !s.is_empty()).map(str::to_string);
                if owner.is_none() && group.is_none() {
                    return Err(WebError::new(
                        ErrorCode::InvalidArgument,
                        "Both owner and group are empty.",
                    ));
                }
                let req = pb::SetOwnerRequest { path, owner, group };
                self.svc.set_owner(request(&id, req)).await?;
                Ok(empty_ok())
            }
            (&Method::PUT, "SETPERMISSION") => {
                let req = pb::SetPermissionRequest {
                    path,
                    permission: p.permission()?.unwrap_or(0o755),
                };
                self.svc.set_permission(request(&id, req)).await?;
                Ok(empty_ok())
            }
            (&Method::PUT, "SETTIMES") => {
                let keep = |v: Option<i64>| v.filter(|t| *t >= 0);
                let req = pb::SetTimesRequest {
                    path,
                    modification_time: keep(p.i64("modificationtime")?),
                    access_time: keep(p.i64("accesstime")?),
                };
                self.svc.set_times(request(&id, req)).await?;
                Ok(empty_ok())
            }
            (&Method::DELETE, "DELETE") => {
                let recursive = p.bool("recursive")?.unwrap_or(false);
                let req = pb::DeleteRequest { path, recursive };
                match self.svc.delete(request(&id, req)).await {
                    Ok(_) => Ok(boolean(true)),
                    Err(e) if ErrorCode::from_status(&e) == ErrorCode::FileNotFound => Ok(boolean(false)),
                    Err(e) => Err(e.into()),
                }
            }
            (m, op) if snapshots::is_snapshot_op(m, op) => self.snapshot_op(&id, op, &path, p).await,
            (_, op) if unsupported(method, op) => Err(WebError::new(
                ErrorCode::Unsupported,
                format!("op={op} is not supported by Granary"),
            )),
            (m, op) => Err(WebError::unknown_op(m, op)),
        }
    }

    /// The owner of a `delegation=` token; else `user.name`, or `doas`
    /// when the namenode lets that user act for others.
    fn effective_user(&self, p: &Params) -> WebResult<Authenticated> {
        if let Some(owner) = self.token_user(p)? {
            return Ok(Authenticated::itself(Identity::new(owner)));
        }
        let user = p.user()?;
        match p.get("doas") {
            None => Ok(Authenticated::itself(Identity::new(user))),
            Some(d) if d == user => Ok(Authenticated::itself(Identity::new(user))),
            Some(d) => {
                let proxy_users = &self.st.config().webhdfs.proxy_users;
                crate::rpc::authn::proxied(proxy_users, &user, d)?;
                let doas = Params::new(vec![("user.name".into(), d.to_string())]).user()?;
                Ok(Authenticated {
                    user: Identity::new(doas),
                    via: Some(user),
                })
            }
        }
    }

    async fn stat(&self, id: &Authenticated, path: &str) -> WebResult<pb::FileStatus> {
        let req = pb::GetFileInfoRequest { path: path.into() };
        let r = self.svc.get_file_info(request(id, req)).await?.into_inner();
        r.status
            .ok_or_else(|| WebError::new(ErrorCode::FileNotFound, format!("File does not exist: {path}")))
    }

    async fn summary(&self, id: &Authenticated, path: &str) -> WebResult<pb::GetContentSummaryResponse> {
        let req = pb::GetContentSummaryRequest { path: path.into() };
        Ok(self.svc.get_content_summary(request(id, req)).await?.into_inner())
    }

    async fn svc_defaults(&self) -> WebResult<pb::GetServerDefaultsResponse> {
        let req = tonic::Request::new(pb::GetServerDefaultsRequest {});
        Ok(self.svc.get_server_defaults(req).await?.into_inner())
    }

    async fn open(&self, id: &Authenticated, path: &str, p: &Params) -> WebResult<Response> {
        let offset = p.u64("offset")?.unwrap_or(0);
        p.u64("length")?;
        let st = self.stat(id, path).await?;
        if st.is_dir() {
            return Err(WebError::new(
                ErrorCode::FileNotFound,
                format!("Path is not a file: {path}"),
            ));
        }
        if offset > st.length {
            return Err(WebError::new(
                ErrorCode::InvalidArgument,
                format!("Offset={offset} out of the range [0, {}]; path={path}", st.length),
            ));
        }
        // Send the reader to a node holding the first block it wants.
        let req = pb::GetBlockLocationsRequest {
            path: path.into(),
            offset,
            length: 1,
        };
        let lb = self
            .svc
            .get_block_locations(request(id, req))
            .await?
            .into_inner()
            .blocks
            .unwrap_or_default();
        let holder = lb
            .blocks
            .first()
            .and_then(|b| b.locations.first())
            .and_then(|l| l.id.as_ref())
            .filter(|i| !i.http_addr.is_empty())
            .map(|i| i.http_addr.clone());
        let dn = match holder {
            Some(a) => a,
            None => self.any_datanode()?,
        };
        self.redirect(&dn, path, id, p, &[])
    }

    fn live_datanodes(&self) -> Vec<pb::DatanodeInfo> {
        self.st
            .datanodes()
            .report()
            .into_iter()
            .filter(|d| d.state == pb::DatanodeState::Live as i32)
            .filter(|d| d.id.as_ref().is_some_and(|i| !i.http_addr.is_empty()))
            .collect()
    }

    fn any_datanode(&self) -> WebResult<String> {
        let live = self.live_datanodes();
        let pick = live.iter().min_by_key(|d| d.xceiver_count);
        pick.and_then(|d| d.id.as_ref())
            .map(|i| i.http_addr.clone())
            .ok_or_else(|| {
                WebError::new(
                    ErrorCode::Unavailable,
                    "Failed to find datanode, suggest to check cluster health.",
                )
            })
    }

    /// The node that will head the write pipeline, chosen by the placement policy.
    fn writer_datanode(&self, p: &Params) -> WebResult<String> {
        let block_size = p
            .u64("blocksize")?
            .unwrap_or(self.st.config().namespace.default_block_size);
        p.replication()?;
        p.permission()?;
        p.bool("overwrite")?;
        p.bool("createparent")?;
        let chosen = self.st.choose_targets(1, block_size, &[], None).ok();
        chosen
            .and_then(|v| v.into_iter().next())
            .and_then(|d| d.id)
            .filter(|i| !i.http_addr.is_empty())
            .map(|i| i.http_addr)
            .map_or_else(|| self.any_datanode(), Ok)
    }

    /// 307 to the datanode (or `200 {"Location"}` with `noredirect=true`).
    fn redirect(
        &self,
        dn_http: &str,
        path: &str,
        id: &Authenticated,
        p: &Params,
        extra: &[(&str, &str)],
    ) -> WebResult<Response> {
        let noredirect = p.bool("noredirect")?.unwrap_or(false);
        let mut pairs: Vec<(String, String)> = p
            .pairs()
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "user.name" | "doas" | "noredirect" | "namenoderpcaddress"
                )
            })
            .cloned()
            .collect();
        // A proxy user's call goes on as theirs, acting for its user: the
        // datanode's gateway passes doas on, and the namenode decides again.
        match &id.via {
            Some(real) => {
                pairs.push(("user.name".into(), real.clone()));
                pairs.push(("doas".into(), id.user.user.clone()));
            }
            None => pairs.push(("user.name".into(), id.user.user.clone())),
        }
        pairs.push(("namenoderpcaddress".into(), self.rpc_addr.clone()));
        pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let location = format!(
            "{}://{dn_http}{}{}?{}",
            self.st.http_scheme(),
            web::PREFIX,
            web::encode_path(path),
            web::query_string(&pairs)
        );
        if noredirect {
            return Ok(json(json!({ "Location": location })));
        }
        Ok((
            StatusCode::TEMPORARY_REDIRECT,
            [
                (header::LOCATION, location),
                (header::CONTENT_LENGTH, "0".to_string()),
            ],
        )
            .into_response())
    }

    async fn rename(&self, id: &Authenticated, path: &str, p: &Params) -> WebResult<Response> {
        let dst = p.get("destination").filter(|d| !d.is_empty()).ok_or_else(|| {
            WebError::new(ErrorCode::InvalidArgument, "RENAME needs a destination parameter")
        })?;
        if !dst.starts_with('/') {
            return Err(WebError::bad_param(
                "destination",
                dst,
                "must be an absolute path",
            ));
        }
        let options = p.get("renameoptions").unwrap_or("");
        let overwrite = options
            .split(',')
            .any(|o| o.trim().eq_ignore_ascii_case("OVERWRITE"));
        let req = pb::RenameRequest {
            src: path.into(),
            dst: dst.into(),
            overwrite,
        };
        let r = self.svc.rename(request(id, req)).await;
        if !options.is_empty() {
            // rename2 (with options) answers failures with exceptions, success with nothing.
            r?;
            return Ok(empty_ok());
        }
        match r {
            Ok(_) => Ok(boolean(true)),
            Err(e)
                if matches!(
                    ErrorCode::from_status(&e),
                    ErrorCode::FileNotFound | ErrorCode::FileAlreadyExists | ErrorCode::ParentNotDirectory
                ) =>
            {
                Ok(boolean(false))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn check_access(&self, user: &str, path: &str, p: &Params) -> WebResult<Response> {
        let action = p.get("fsaction").unwrap_or("---");
        let access = parse_fsaction(action)?;
        let st = self.st.clone();
        let (user, path) = (user.to_string(), path.to_string());
        tokio::task::spawn_blocking(move || {
            let caller = st.ns().caller(Identity::new(user));
            // Resolving checks traversal (execute on every ancestor).
            let inode = st.ns().get_file_info(&caller, &path)?;
            if let Some(a) = access {
                caller.check(&inode, a, &path)?;
            }
            Ok::<_, crate::error::NnError>(())
        })
        .await
        .map_err(|e| WebError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| WebError::new(granary_common::HasErrorCode::code(&e), e.to_string()))?;
        Ok(empty_ok())
    }
}

/// `rwx`-style action (Hadoop's `FsAction` symbol) to the access it needs.
fn parse_fsaction(s: &str) -> WebResult<Option<Access>> {
    let b = s.as_bytes();
    let ok = b.len() == 3
        && matches!(b[0], b'r' | b'-')
        && matches!(b[1], b'w' | b'-')
        && matches!(b[2], b'x' | b'-');
    if !ok {
        return Err(WebError::bad_param("fsaction", s, "must match [r-][w-][x-]"));
    }
    Ok(match (b[0] == b'r', b[1] == b'w', b[2] == b'x') {
        (false, false, false) => None,
        (true, false, false) => Some(Access::Read),
        (false, true, false) => Some(Access::Write),
        (false, false, true) => Some(Access::Execute),
        (true, false, true) => Some(Access::ReadExecute),
        (false, true, true) => Some(Access::WriteExecute),
        (true, true, false) => Some(Access::ReadWrite),
        (true, true, true) => Some(Access::All),
    })
}

/// HDFS operations Granary knows of but does not implement, by method
/// (other names are simply unknown to HDFS too).
fn unsupported(method: &Method, op: &str) -> bool {
    const GET: &[&str] = &[
        "GETXATTRS",
        "LISTXATTRS",
        "GETSNAPSHOTLIST",
        "GETSTORAGEPOLICY",
        "GETALLSTORAGEPOLICY",
        "GETECPOLICY",
        "GETSTATUS",
    ];
    const PUT: &[&str] = &[
        "CREATESYMLINK",
        "SETXATTR",
        "REMOVEXATTR",
        "MODIFYACLENTRIES",
        "REMOVEACLENTRIES",
        "REMOVEDEFAULTACL",
        "REMOVEACL",
        "SETACL",
        "SETSTORAGEPOLICY",
        "SATISFYSTORAGEPOLICY",
        "SETQUOTA",
        "SETQUOTABYSTORAGETYPE",
        "ENABLEECPOLICY",
        "DISABLEECPOLICY",
        "SETECPOLICY",
    ];
    const POST: &[&str] = &["CONCAT", "TRUNCATE", "UNSETSTORAGEPOLICY", "UNSETECPOLICY"];
    const DELETE: &[&str] = &[];
    let ops = match *method {
        Method::GET => GET,
        Method::PUT => PUT,
        Method::POST => POST,
        Method::DELETE => DELETE,
        _ => &[],
    };
    ops.contains(&op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsaction_symbols() {
        assert!(parse_fsaction("---").unwrap().is_none());
        assert!(matches!(
            parse_fsaction("r-x").unwrap(),
            Some(Access::ReadExecute)
        ));
        assert!(parse_fsaction("rwxr").is_err());
        assert!(parse_fsaction("x--").is_err());
    }

    #[test]
    fn unsupported_ops_are_told_from_unknown_ones() {
        assert!(unsupported(&Method::POST, "CONCAT"));
        assert!(!unsupported(&Method::GET, "CONCAT"));
        assert!(unsupported(&Method::PUT, "SETACL"));
        assert!(!unsupported(&Method::PUT, "NOSUCHOP"));
    }
}
