//! Starting and stopping a datanode on given listeners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::DatanodeConfig;
use crate::context::DatanodeContext;
use crate::layout;
use crate::namenode_actor::{Actor, ActorError};
use crate::namenode_link::NamenodeLink;
use crate::storage::{Storage, StorageError};
use granary_common::conn_guard::Gate;
use granary_common::net::Net;
use granary_common::tls::ConnListener;
use granary_proto as pb;
use granary_proto::data_transfer_server::DataTransferServer;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Actor(#[from] ActorError),
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("rpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("webhdfs gateway: {0}")]
    Gateway(#[from] granary_client::ClientError),
    #[error(transparent)]
    Secret(#[from] granary_common::daemon_auth::SecretError),
    #[error(transparent)]
    Config(#[from] granary_common::config::ConfigError),
    #[error("tls: {0}")]
    Tls(#[from] granary_common::tls::TlsError),
}

pub struct RunningDatanode {
    pub rpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub ctx: Arc<DatanodeContext>,
    token: CancellationToken,
    task: JoinHandle<Result<(), ServeError>>,
}

impl RunningDatanode {
    pub fn uuid(&self) -> &str {
        &self.ctx.id.uuid
    }

    /// Stops serving and waits for the tasks to end.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.token.cancel();
        self.wait().await
    }

    /// Waits until the datanode stops (token cancelled or a fatal error).
    pub async fn wait(self) -> Result<(), ServeError> {
        let RunningDatanode { ctx, task, .. } = self;
        drop(ctx);
        match task.await {
            Ok(r) => r,
            Err(e) => Err(ServeError::Join(e)),
        }
    }
}

pub async fn start(
    config: DatanodeConfig,
    rpc: TcpListener,
    http: TcpListener,
    token: CancellationToken,
) -> Result<RunningDatanode, ServeError> {
    let namenodes = config.namenodes()?;
    let secret = granary_common::daemon_auth::ClusterSecret::load(&config.cluster_secret_file)?;
    let tls = config.tls.load(config.auth)?;
    // A datanode's certificate names its uuid: it is who the certificate
    // says, or it does not start.
    let certified = match tls.as_ref().and_then(|t| t.identity()) {
        None => None,
        Some(p) if p.role == granary_common::tls::Role::Datanode => Some(p.name),
        Some(p) => {
            return Err(ServeError::Config(granary_common::config::ConfigError::Invalid(
                format!(
                    "[tls] cert {} names {}, not a datanode",
                    config.tls.cert.display(),
                    p.uri()
                ),
            )));
        }
    };
    let dirs = config.data_dirs.clone();
    let storage_cfg = config.storage.clone();
    let (versions, storage) = tokio::task::spawn_blocking(move || -> Result<_, ServeError> {
        let versions = layout::load_all(&dirs, certified.as_deref())?;
        let vols: Vec<_> = dirs
            .iter()
            .cloned()
            .zip(versions.iter().map(|v| v.storage_id.clone()))
            .collect();
        let storage = Storage::open(&vols, &storage_cfg)?;
        Ok((versions, storage))
    })
    .await??;
    let rpc_addr = rpc.local_addr()?;
    let http_addr = http.local_addr()?;
    let host = config.advertised_host();
    let id = pb::DatanodeId {
        uuid: versions[0].datanode_uuid.clone(),
        hostname: host.clone(),
        rpc_addr: format!("{host}:{}", rpc_addr.port()),
        http_addr: format!("{host}:{}", http_addr.port()),
        rack: config.rack.clone(),
    };
    let cluster_id = versions
        .iter()
        .map(|v| v.cluster_id.clone())
        .find(|c| !c.is_empty())
        .unwrap_or_default();
    let (links, queues): (Vec<_>, Vec<_>) = namenodes.into_iter().map(NamenodeLink::new).unzip();
    let ctx = DatanodeContext::new(
        Arc::new(storage),
        id.clone(),
        cluster_id,
        links.clone(),
        &config.transfer,
        Net::new(tls.clone()),
        token.child_token(),
    );
    // One actor per namenode, each with its own event queue and session.
    let actors: Vec<_> = links
        .into_iter()
        .zip(queues)
        .map(|(link, events)| {
            let actor = Actor {
                ctx: ctx.clone(),
                link,
                heartbeat: Duration::from_millis(config.heartbeat_interval_ms),
                data_dirs: config.data_dirs.clone(),
                secret: secret.clone(),
                node_key: versions[0].node_key.as_bytes().to_vec(),
            };
            (actor, events)
        })
        .collect();
    tokio::spawn(crate::block_scanner::run(
        ctx.clone(),
        config.block_scanner.clone(),
        token.child_token(),
    ));
    {
        // Half-written replicas no pipeline recovery took within 10 minutes
        // close their files and wait on disk for lease recovery.
        let ctx = ctx.clone();
        let stop = token.child_token();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(30)) => ctx.sweep_recoverable(Duration::from_secs(600)),
                }
            }
        });
    }
    let actor_token = token.child_token();
    let server_token = token.clone();
    let rpc_server = tonic::transport::Server::builder()
        .layer(granary_common::metrics::RpcMetricsLayer(ctx.metrics.rpc.clone()))
        // These windows bound what a peer may send this datanode unread;
        // block reads flow the other way (the reader's channel sets their
        // windows, granary_common::net), and ReadBlock requests are tiny.
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(2 << 20)
        .max_concurrent_streams(256)
        .http2_max_header_list_size(64 << 10)
        // A read packet goes as one HTTP/2 frame instead of h2's default
        // 16 KiB frames.
        .max_frame_size(granary_common::net::MAX_FRAME_SIZE)
        .add_service(
            DataTransferServer::new(crate::data_transfer::DataTransferService::new(ctx.clone()))
                .max_decoding_message_size(1 << 20)
                .max_encoding_message_size(64 << 20),
        )
        .serve_with_incoming_shutdown(
            crate::listener::split(
                rpc,
                Gate::new("rpc", config.limits, ctx.metrics.connections.clone()),
                tls.clone(),
                ctx.clone(),
                token.child_token(),
            ),
            token.child_token().cancelled_owned(),
        );
    let gateway = crate::webhdfs::DataGateway::new(ctx.clone())?;
    let http = ConnListener::new(
        http,
        Gate::new("http", config.limits, ctx.metrics.connections.clone()),
        tls.clone(),
        token.child_token(),
    )?;
    if let Some(tls) = &tls {
        granary_common::tls::reload_on_sighup(tls.clone(), token.child_token());
    }
    let router = crate::http::router(ctx.clone(), gateway).layer(axum::middleware::from_fn_with_state(
        config.auth,
        granary_common::tls::http_auth::certified,
    ));
    let http_server = axum::serve(
        http,
        router.into_make_service_with_connect_info::<granary_common::tls::ConnInfo>(),
    )
    .with_graceful_shutdown(token.child_token().cancelled_owned());
    tracing::info!(uuid = %id.uuid, rpc = %id.rpc_addr, rack = %id.rack, namenode = %config.namenode, "datanode serving");
    let task = tokio::spawn(async move {
        let mut actor_tasks = JoinSet::new();
        for (actor, events) in actors {
            actor_tasks.spawn(actor.run(events, actor_token.clone()));
        }
        let (rpc_res, http_res, actor_res) = tokio::join!(rpc_server, http_server, async {
            let mut first_err = None;
            while let Some(r) = actor_tasks.join_next().await {
                let failed = match r {
                    Ok(Ok(())) => None,
                    // A datanode a namenode refuses (another cluster, a
                    // wrong secret) is misconfigured: it stops rather than
                    // serve some namenodes of its group and not others.
                    Ok(Err(e)) => {
                        server_token.cancel();
                        Some(ServeError::Actor(e))
                    }
                    Err(e) => Some(ServeError::Join(e)),
                };
                if let Some(e) = failed {
                    first_err.get_or_insert(e);
                }
            }
            first_err
        });
        if let Some(e) = actor_res {
            return Err(e);
        }
        rpc_res?;
        http_res?;
        tracing::info!("datanode stopped");
        Ok(())
    });
    Ok(RunningDatanode {
        rpc_addr,
        http_addr,
        ctx,
        token,
        task,
    })
}
