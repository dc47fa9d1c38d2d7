//! WebHDFS data operations on the datanode's HTTP port, where the namenode
//! redirects OPEN, CREATE, APPEND and GETFILECHECKSUM. The data goes through
//! the client library: reads verify every chunk's CRC32C and fail over
//! between replicas; writes go through the normal replicated pipeline.

use std::io::SeekFrom;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use granary_client::{ClientError, CreateOptions, DfsClient, FileWriter, Identity};
use granary_common::webhdfs::{self as web, Params, WebError, WebResult};
use granary_common::{ErrorCode, HasErrorCode};

use crate::context::DatanodeContext;
use crate::error::DatanodeError;

/// Bytes per chunk of an OPEN response body.
const READ_CHUNK: usize = 1 << 20;

pub struct DataGateway {
    ctx: Arc<DatanodeContext>,
    /// A client of each namenode (in the order of `ctx.namenodes`) and its
    /// address; connected lazily: the datanode may start before the namenodes.
    clients: Vec<(DfsClient, String)>,
}

impl DataGateway {
    pub fn new(ctx: Arc<DatanodeContext>) -> Result<Arc<Self>, ClientError> {
        let clients = ctx
            .namenodes
            .iter()
            .map(|nn| {
                let options = granary_client::ClientOptions {
                    tls: ctx.net().tls().cloned(),
                    ..Default::default()
                };
                let c = DfsClient::connect_lazy_with(&nn.addr, Identity::new("granary-datanode"), options)?;
                Ok((c, nn.addr.clone()))
            })
            .collect::<Result<_, ClientError>>()?;
        Ok(Arc::new(Self { ctx, clients }))
    }

    /// The client of the namenode to ask, and its address. File operations
    /// only make sense on the active namenode (a standby refuses them), so
    /// they go to the one this datanode last saw active in the newest term;
    /// before any heartbeat said so, to the first one listed.
    fn namenode(&self) -> WebResult<&(DfsClient, String)> {
        let active = self.ctx.active_namenode();
        let i = active
            .and_then(|a| self.ctx.namenodes.iter().position(|nn| Arc::ptr_eq(nn, &a)))
            .unwrap_or(0);
        self.clients
            .get(i)
            .ok_or_else(|| WebError::new(ErrorCode::Unavailable, "this datanode knows no namenode"))
    }
}

pub fn routes(gw: Arc<DataGateway>) -> Router {
    Router::new()
        .route(&format!("{}/{{*path}}", web::PREFIX), any(handle))
        .with_state(gw)
}

fn web_err(e: ClientError) -> WebError {
    WebError::remote(e.code(), &e.to_string())
}

async fn handle(
    State(gw): State<Arc<DataGateway>>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let params = web::params_of(query);
    match dispatch(&gw, &method, &uri, &params, &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, path = uri.path(), error = %e, "webhdfs data request failed");
            e.into_response()
        }
    }
}

async fn dispatch(
    gw: &DataGateway,
    method: &Method,
    uri: &Uri,
    p: &Params,
    headers: &HeaderMap,
    body: Body,
) -> WebResult<Response> {
    let path = web::path_of_uri(uri.path())?;
    let op = p.op()?;
    let (client, namenode) = gw.namenode()?;
    // The namenode put the caller in user.name (and whom it acts for in
    // doas), or a certificate did (crate::http's middleware). A request with a delegation token carries it on: the namenode checks
    // it and acts as its owner (this datanode cannot check it, and must not
    // take user.name on its word).
    let c = match p.get("delegation") {
        Some(_) if p.get("doas").is_some() => {
            return Err(WebError::new(
                ErrorCode::AccessControl,
                "doas cannot be used with a delegation token",
            ));
        }
        Some(token) => {
            // The namenode's tokens are hex; anything else would not reach
            // it as a token at all, and the call must never go out as this
            // datanode's own user instead.
            if token.is_empty() || token.len() > 4096 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(WebError::new(
                    ErrorCode::Unauthenticated,
                    "malformed delegation token",
                ));
            }
            client
                .as_user(Identity::new(granary_common::identity::ANONYMOUS))
                .with_token(Some(token))
        }
        // doas goes on for the namenode to allow (to proxy users) or refuse.
        None => client.as_user(Identity::new(p.user()?)).with_doas(p.get("doas")),
    };
    match (method, op.as_str()) {
        (&Method::GET, "OPEN") => open(&c, &path, p).await,
        (&Method::GET, "GETFILECHECKSUM") => {
            let sum = c.file_checksum(&path).await.map_err(web_err)?;
            Ok(Json(json!({ "FileChecksum": {
                "algorithm": sum.algorithm,
                "bytes": sum.hex(),
                "length": sum.bytes.len(),
            }}))
            .into_response())
        }
        (&Method::PUT, "CREATE") => {
            let opts = CreateOptions {
                overwrite: p.bool("overwrite")?.unwrap_or(false),
                create_parent: p.bool("createparent")?.unwrap_or(true),
                replication: p.replication()?.unwrap_or(0),
                block_size: p.u64("blocksize")?.unwrap_or(0),
                permission: p.permission()?,
            };
            let declared = content_length(headers);
            let target = path.clone();
            // Its own task: when the uploader hangs up, this request's future
            // is dropped, but the cleanup below must still run.
            let upload = tokio::spawn(async move {
                let w = c.create(&target, opts).await.map_err(web_err)?;
                if let Err(e) = copy_body(w, body, declared).await {
                    // Never leave a half-uploaded file behind looking complete.
                    tracing::warn!(path = %target, error = %e, "webhdfs upload failed; removing the file");
                    if let Err(d) = c.delete(&target, false).await {
                        tracing::warn!(path = %target, error = %d, "could not remove a failed upload");
                    }
                    return Err(e);
                }
                Ok(())
            });
            upload.await.map_err(DatanodeError::from)??;
            let location = format!("hdfs://{}{}", namenode, web::encode_path(&path));
            Ok((
                StatusCode::CREATED,
                [
                    (header::LOCATION, location),
                    (header::CONTENT_LENGTH, "0".to_string()),
                ],
            )
                .into_response())
        }
        (&Method::POST, "APPEND") => {
            let w = c.append(&path).await.map_err(web_err)?;
            copy_body(w, body, content_length(headers)).await?;
            Ok((StatusCode::OK, [(header::CONTENT_LENGTH, "0")]).into_response())
        }
        (m, op) => Err(WebError::new(
            ErrorCode::InvalidArgument,
            format!("op={op} with {m} is not served by datanodes; send it to the namenode"),
        )),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Streams the request body into `w` and closes the file; a body that
/// breaks off (or is shorter than its Content-Length) fails the write.
async fn copy_body(mut w: FileWriter, body: Body, declared: Option<u64>) -> WebResult<()> {
    let mut got = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| WebError::new(ErrorCode::InvalidArgument, format!("request body broke off: {e}")))?;
        got += chunk.len() as u64;
        w.write_all(&chunk)
            .await
            .map_err(|e| match ClientError::inside(&e) {
                // Refused by the namenode (a quota, safe mode, ...): its exception.
                Some(c) => WebError::remote(c.code(), &c.to_string()),
                None => WebError::new(ErrorCode::Internal, e.to_string()),
            })?;
    }
    if let Some(want) = declared
        && want != got
    {
        return Err(WebError::new(
            ErrorCode::InvalidArgument,
            format!("request body has {got} bytes, Content-Length said {want}"),
        ));
    }
    w.close().await.map_err(web_err)?;
    Ok(())
}

async fn open(c: &DfsClient, path: &str, p: &Params) -> WebResult<Response> {
    let offset = p.u64("offset")?.unwrap_or(0);
    let length = p.u64("length")?;
    let mut r = c.open(path).await.map_err(web_err)?;
    let len = r.len();
    if offset > len {
        return Err(WebError::new(
            ErrorCode::InvalidArgument,
            format!("Offset={offset} out of the range [0, {len}]; path={path}"),
        ));
    }
    let want = length.map_or(len - offset, |l| l.min(len - offset));
    r.seek(SeekFrom::Start(offset))
        .await
        .map_err(|e| WebError::new(ErrorCode::Internal, e.to_string()))?;
    let reader = r.take(want);
    let stream = futures::stream::unfold(Some(reader), |rd| async move {
        let mut rd = rd?;
        let mut buf = vec![0u8; READ_CHUNK];
        match rd.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), Some(rd)))
            }
            // A failure mid-body can only cut the response short: the
            // client sees fewer bytes than Content-Length.
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, want.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
