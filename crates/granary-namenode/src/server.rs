//! Starting and stopping a namenode on given listeners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::NamenodeConfig;
use crate::layout;
use crate::namespace::{Namespace, StartupScan};
use crate::state::NamenodeState;
use granary_common::conn_guard::Gate;
use granary_common::daemon_auth::ClusterSecret;
use granary_common::net::Net;
use granary_common::tls::{ConnListener, Port};
use granary_proto::block_report_protocol_server::BlockReportProtocolServer;
use granary_proto::client_protocol_server::ClientProtocolServer;
use granary_proto::datanode_protocol_server::DatanodeProtocolServer;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    #[error("cannot open the namespace in {path}: {source}")]
    Open {
        path: String,
        source: crate::error::NnError,
    },
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("rpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("startup task failed: {0}")]
    Join(String),
    #[error(transparent)]
    Secret(#[from] granary_common::daemon_auth::SecretError),
    #[error("namenode group: {0}")]
    Ha(String),
    #[error("tls: {0}")]
    Tls(#[from] granary_common::tls::TlsError),
}

/// Formats `config.data_dir` for a new cluster.
pub fn format(
    config: &NamenodeConfig,
    force: bool,
    cluster_id: Option<String>,
) -> Result<layout::VersionFile, ServeError> {
    if config.ha.enabled() && cluster_id.is_none() {
        return Err(ServeError::Ha(
            "the members of a namenode group share one cluster id: pass --cluster-id (the same on each)"
                .into(),
        ));
    }
    let v = layout::format(&config.data_dir, force, cluster_id)?;
    let ns_dir = layout::namespace_dir(&config.data_dir);
    let open_err = |source| ServeError::Open {
        path: ns_dir.display().to_string(),
        source,
    };
    if config.ha.enabled() {
        // Every member starts from the same bytes; the log does the rest.
        Namespace::create_at(&ns_dir, config.namespace.clone(), &config.groups, 0).map_err(open_err)?;
        layout::store_ha(&config.data_dir, &config.ha)?;
    } else {
        Namespace::create_new(&ns_dir, config.namespace.clone(), &config.groups).map_err(open_err)?;
    }
    let secret = config.cluster_secret_path();
    if !secret.exists() {
        ClusterSecret::generate(&secret)?;
    }
    Ok(v)
}

/// The cluster secret, made (with a warning) when missing: for a metadata
/// dir formatted before datanodes had to prove they hold one, or a secret
/// kept apart from the metadata (a container volume) that is new.
fn load_secret(config: &NamenodeConfig) -> Result<ClusterSecret, ServeError> {
    let path = config.cluster_secret_path();
    if !path.exists() {
        let s = ClusterSecret::generate(&path)?;
        tracing::warn!(path = %path.display(), "no cluster secret found; wrote a new one: give every datanode a copy (cluster_secret_file)");
        return Ok(s);
    }
    Ok(ClusterSecret::load(&path)?)
}

/// A namenode serving in this process.
pub struct RunningNamenode {
    pub rpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub state: Arc<NamenodeState>,
    token: CancellationToken,
    task: JoinHandle<Result<(), ServeError>>,
    /// Raised once the namespace and its RocksDB are closed.
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl RunningNamenode {
    /// Stops serving and waits until the metadata store is closed.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.token.cancel();
        self.wait().await
    }

    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Waits until the server stops by itself (its token was cancelled).
    /// Also waits for the metadata store to close: tasks that outlive the
    /// servers (a connection still being told apart, a call's blocking
    /// half) let go of it moments later, and a caller reopening the same
    /// dir must not find RocksDB's lock still held.
    pub async fn wait(self) -> Result<(), ServeError> {
        let RunningNamenode {
            state, task, closed, ..
        } = self;
        drop(state);
        let served = match task.await {
            Ok(r) => r,
            Err(e) => Err(ServeError::Join(e.to_string())),
        };
        let t = std::time::Instant::now();
        while !closed.load(std::sync::atomic::Ordering::SeqCst) {
            if t.elapsed() > STORE_CLOSE_WAIT {
                tracing::warn!("the namespace is still open after shutdown; not waiting longer");
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        served
    }
}

/// How long a shutdown waits for the last holder of the namespace.
const STORE_CLOSE_WAIT: Duration = Duration::from_secs(30);

/// Opens the metadata in `config.data_dir` and serves on the given listeners
/// until `token` is cancelled.
pub async fn start(
    mut config: NamenodeConfig,
    rpc: TcpListener,
    http: TcpListener,
    token: CancellationToken,
) -> Result<RunningNamenode, ServeError> {
    let version = layout::check(&config.data_dir)?;
    if !config.ha.enabled()
        && let Some(stored) = layout::load_ha(&config.data_dir)?
    {
        // The group `format` was given, when not given again (the other
        // [ha] settings stay as configured).
        config.ha.peers = stored.peers;
        if config.ha.node_id.is_empty() {
            config.ha.node_id = stored.node_id;
        }
        config
            .ha
            .validate()
            .map_err(|e| ServeError::Ha(format!("the group recorded in the data dir: {e}")))?;
    }
    let secret = load_secret(&config)?;
    // Certificates are checked before the namespace opens: a wrong path
    // fails the start at once, naming the file.
    let tls = config.tls.load(config.auth)?;
    if let Some(p) = tls.as_ref().and_then(|t| t.identity()) {
        let named = |what: &str| {
            granary_common::tls::TlsError::Config(format!(
                "[tls] cert {} names {}, not {what}",
                config.tls.cert.display(),
                p.uri()
            ))
        };
        if p.role != granary_common::tls::Role::Namenode {
            return Err(named("a namenode").into());
        }
        if config.ha.enabled() && p.name != config.ha.node_id {
            return Err(named(&format!("namenode {}", config.ha.node_id)).into());
        }
    }
    let net = Net::new(tls.clone());
    let ns_dir = layout::namespace_dir(&config.data_dir);
    let (ns_cfg, groups) = (config.namespace.clone(), config.groups.clone());
    let mut ns = tokio::task::spawn_blocking(move || {
        Namespace::open(&ns_dir, ns_cfg, &groups).map_err(|source| ServeError::Open {
            path: ns_dir.display().to_string(),
            source,
        })
    })
    .await
    .map_err(|e| ServeError::Join(e.to_string()))??;
    // Counting blocks (for safe mode) and finding open files (for leases)
    // reads the whole namespace. Small namespaces are scanned before serving;
    // large ones while already serving reads in safe mode, so a restart with
    // millions of files answers in about the time RocksDB takes to open.
    let inline = ns
        .estimated_objects()
        .map_or(true, |n| n < config.startup_scan_inline_objects);
    let scanned = if inline {
        let (opened, scan) = tokio::task::spawn_blocking(move || {
            let scan = ns.startup_scan(&|| false);
            (ns, scan)
        })
        .await
        .map_err(|e| ServeError::Join(e.to_string()))?;
        ns = opened;
        Some(scan.map_err(|source| ServeError::Open {
            path: config.data_dir.display().to_string(),
            source,
        })?)
    } else {
        None
    };
    let closed = ns.closed_flag();
    let ns = Arc::new(ns);
    let ha = if config.ha.enabled() {
        let dir = layout::raft_dir(&config.data_dir);
        let ha = crate::ha::Ha::start(
            &config.ha,
            &dir,
            ns.clone(),
            secret.clone(),
            net,
            token.child_token(),
        )
        .await
        .map_err(|e| ServeError::Ha(e.to_string()))?;
        ns.replicate_through(ha.replicator().clone());
        Some(ha)
    } else {
        None
    };
    let audit = match state_audit_path(&config) {
        None => crate::audit::AuditLog::off(),
        Some(path) => crate::audit::AuditLog::open(&path)?,
    };
    let state = NamenodeState::new(
        config,
        version.cluster_id.clone(),
        ns,
        ha.clone(),
        scanned.as_ref().map(|s| s.committed_blocks),
        secret.clone(),
    );
    state.set_audit(audit);
    if let Some(ha) = &ha {
        spawn_leader_duties(state.clone(), ha.clone(), token.child_token());
    }
    let out_of_service = state.ns().out_of_service().map_err(|source| ServeError::Open {
        path: state.config().data_dir.display().to_string(),
        source,
    })?;
    state.datanodes().remember_out_of_service(out_of_service);
    match scanned {
        Some(s) => adopt_startup_scan(&state, s),
        None => {
            let st = state.clone();
            // A shutdown stops the scan, so it never holds the store open.
            let stop = token.child_token();
            tokio::spawn(async move {
                let t = std::time::Instant::now();
                let (scan, counting) = (st.clone(), stop.clone());
                let res =
                    tokio::task::spawn_blocking(move || scan.ns().startup_scan(&|| counting.is_cancelled()))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()));
                match res {
                    Ok(_) if stop.is_cancelled() => {}
                    Ok(s) => {
                        tracing::info!(seconds = t.elapsed().as_secs_f64(), "start-up scan done");
                        adopt_startup_scan(&st, s);
                    }
                    Err(e) => tracing::error!(error = %e, "start-up scan failed; staying in safe mode"),
                }
            });
        }
    }
    let rpc_addr = rpc.local_addr()?;
    let http_addr = http.local_addr()?;
    if let Some(ha) = &ha {
        ha.set_http_addr(http_addr);
    }

    let monitor = spawn_liveness_monitor(state.clone(), token.child_token());
    let redundancy = spawn_redundancy_monitor(state.clone(), token.child_token());
    let emptier = crate::trash::spawn_emptier(state.clone(), token.child_token());
    let balancer = crate::balancer::spawn_background(state.clone(), token.child_token());
    let activity = Arc::new(crate::activity::Activity::new(&state.config().web_ui));
    let sampler = crate::activity::spawn_sampler(state.clone(), activity.clone(), token.child_token());

    let rpc_token = token.child_token();
    // Message limits: client calls carry paths and small lists; datanode
    // calls other than full block reports carry batches of at most 10,000
    // replicas; only a full block report (sent by an authenticated
    // datanode, checked before its body is read) may be large.
    let active = state.clone();
    let client = ClientProtocolServer::new(crate::rpc::audited::Audited::new(state.clone()))
        .max_decoding_message_size(4 << 20)
        .max_encoding_message_size(64 << 20);
    // A namenode that does not lead its group serves no client call (HDFS's
    // standby): the client is told where the leader is.
    let client =
        tonic::service::interceptor::InterceptedService::new(client, move |req: tonic::Request<()>| {
            active.check_active().map_err(tonic::Status::from)?;
            Ok(req)
        });
    let raft = granary_proto::raft_protocol_server::RaftProtocolServer::new(crate::ha::RaftService::new(
        ha.clone(),
        secret,
    ))
    .max_decoding_message_size(crate::ha::MAX_RAFT_MESSAGE)
    .max_encoding_message_size(crate::ha::MAX_RAFT_MESSAGE);
    let datanode =
        DatanodeProtocolServer::new(crate::rpc::datanode_service::DatanodeService::new(state.clone()))
            .max_decoding_message_size(4 << 20)
            .max_encoding_message_size(64 << 20);
    let reports = BlockReportProtocolServer::new(crate::rpc::datanode_service::BlockReportService::new(
        state.clone(),
    ))
    .max_decoding_message_size(256 << 20)
    .max_encoding_message_size(1 << 20);
    let metrics = crate::metrics::NamenodeMetrics::new();
    // Accepted sockets get TCP_NODELAY (without it Nagle holds back small
    // replies while earlier ones on the same connection are unacknowledged),
    // a keepalive, and the connection limits.
    // HDFS clients' Hadoop IPC connections (`hrpc`) are served apart.
    let incoming = granary_common::tls::incoming(crate::hadoop_ipc::split(
        granary_common::tls::listen(
            rpc,
            Gate::new("rpc", state.config().limits, metrics.connections.clone()),
            tls.clone(),
            Port::Rpc,
            rpc_token.clone(),
        ),
        state.config().limits.handshake_timeout(),
        state.clone(),
        rpc_token.clone(),
    ));
    let rpc_server = tonic::transport::Server::builder()
        .layer(granary_common::metrics::RpcMetricsLayer(metrics.rpc.clone()))
        .layer(crate::datanode_auth::DatanodeAuthLayer(state.sessions().clone()))
        // Bounded HTTP/2 buffering per connection and stream.
        .initial_connection_window_size(4 << 20)
        .initial_stream_window_size(2 << 20)
        .max_concurrent_streams(256)
        .http2_max_header_list_size(64 << 10)
        .add_service(client)
        .add_service(datanode)
        .add_service(reports)
        .add_service(raft)
        .serve_with_incoming_shutdown(incoming, rpc_token.cancelled_owned());
    let http_token = token.child_token();
    let http = ConnListener::new(
        http,
        Gate::new("http", state.config().limits, metrics.connections.clone()),
        tls.clone(),
        http_token.clone(),
    )?;
    if let Some(tls) = &tls {
        granary_common::tls::reload_on_sighup(tls.clone(), token.child_token());
    }
    let router = crate::http::router(state.clone(), metrics, activity, rpc_addr.to_string()).layer(
        axum::middleware::from_fn_with_state(state.config().auth, granary_common::tls::http_auth::certified),
    );
    let http_server = axum::serve(
        http,
        router.into_make_service_with_connect_info::<granary_common::tls::ConnInfo>(),
    )
    .with_graceful_shutdown(http_token.cancelled_owned());

    tracing::info!(%rpc_addr, %http_addr, cluster_id = %version.cluster_id, "namenode serving");
    let task = tokio::spawn(async move {
        let (rpc_res, http_res) = tokio::join!(rpc_server, http_server);
        let _ = monitor.await;
        let _ = redundancy.await;
        for task in [emptier, balancer].into_iter().flatten() {
            let _ = task.await;
        }
        let _ = sampler.await;
        rpc_res?;
        http_res?;
        tracing::info!("namenode stopped");
        Ok(())
    });
    Ok(RunningNamenode {
        rpc_addr,
        http_addr,
        state,
        token,
        task,
        closed,
    })
}

/// Where the audit log goes, if anywhere.
fn state_audit_path(config: &NamenodeConfig) -> Option<std::path::PathBuf> {
    let f = &config.audit.file;
    (!f.as_os_str().is_empty()).then(|| f.clone())
}

/// What a namenode takes up when it becomes its group's leader: the
/// leases of files open in the namespace it now serves (their writers get
/// a fresh lease period, as after a restart).
fn spawn_leader_duties(state: Arc<NamenodeState>, ha: Arc<crate::ha::Ha>, token: CancellationToken) {
    let mut metrics = ha.raft().metrics();
    tokio::spawn(async move {
        let mut led_term = None;
        loop {
            let (term, ready) = {
                let m = metrics.borrow_and_update();
                (m.current_term, state.is_active())
            };
            state.blocks().set_deleting(ready);
            if ready && led_term != Some(term) {
                led_term = Some(term);
                let st = state.clone();
                let scanned = tokio::task::spawn_blocking(move || st.ns().startup_scan(&|| false)).await;
                match scanned {
                    Ok(Ok(scan)) => {
                        restore_leases(&state, &scan);
                        tracing::info!(
                            term,
                            open_files = scan.open_files.len(),
                            "leading the namenode group"
                        );
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "cannot scan the namespace for open files"),
                    Err(e) => tracing::error!(error = %e, "namespace scan task failed"),
                }
            }
            tokio::select! {
                _ = token.cancelled() => return,
                r = metrics.changed() => if r.is_err() { return },
                // The role flips to ready after the metrics that made it so.
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    });
}

/// Writers of files open in the namespace (before a restart, or under the
/// previous leader) get a fresh lease period to renew.
fn restore_leases(state: &NamenodeState, scan: &StartupScan) {
    for (inode, client, user) in &scan.open_files {
        state.leases().add(client, user, *inode);
    }
}

fn adopt_startup_scan(state: &NamenodeState, scan: StartupScan) {
    restore_leases(state, &scan);
    state.safe_mode().set_total(scan.committed_blocks);
    if state.safe_mode().is_on() {
        tracing::info!(
            total_blocks = scan.committed_blocks,
            "in safe mode until datanodes report enough blocks"
        );
    }
}

/// Forgets the replicas of datanodes that stopped heartbeating.
fn spawn_liveness_monitor(state: Arc<NamenodeState>, token: CancellationToken) -> JoinHandle<()> {
    let period = Duration::from_millis((state.config().datanodes.heartbeat_interval_ms / 2).max(100));
    tokio::spawn(async move {
        let mut removed = std::collections::HashSet::new();
        let mut next_expiry = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            for uuid in state.datanodes().dead_nodes() {
                if removed.insert(uuid.clone()) {
                    state.declare_dead(&uuid);
                }
            }
            removed
                .retain(|u| state.datanodes().liveness(u) == Some(crate::datanode_manager::Liveness::Dead));
            // Datanodes get the new set with their next heartbeat.
            state.block_keys().roll();
            // Finalize commands of recovered blocks not yet confirmed.
            state.recovery().resend_due();
            state.update_safe_mode();
            if tokio::time::Instant::now() >= next_expiry && state.is_active() && !state.safe_mode().is_on() {
                next_expiry = tokio::time::Instant::now() + Duration::from_secs(30);
                let st = state.clone();
                match tokio::task::spawn_blocking(move || st.ns().expire_retry_cache(100_000)).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => tracing::debug!(calls = n, "retry cache entries expired"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot expire retry cache entries"),
                    Err(e) => tracing::warn!(error = %e, "retry cache expiry task failed"),
                }
            }
            let expired = state.leases().expired();
            if !expired.is_empty() && !state.safe_mode().is_on() && state.is_active() {
                let st = state.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    // One wait for every recovery's writes, then what followed them.
                    let mut writes = crate::namespace::Deferred::default();
                    for (client, files) in expired {
                        for inode in files {
                            tracing::warn!(client = %client, inode, "lease expired (hard limit); recovering the file");
                            match st.recover_file(&mut writes, inode) {
                                Ok(_) => {}
                                Err(e) => tracing::error!(inode, error = %e, "lease recovery failed"),
                            }
                        }
                    }
                    if let Err(e) = writes.wait() {
                        tracing::error!(error = %e, "lease recoveries were not made durable");
                    }
                })
                .await;
            }
        }
    })
}

/// Runs the redundancy monitor's rounds, and its periodic full scans.
fn spawn_redundancy_monitor(state: Arc<NamenodeState>, token: CancellationToken) -> JoinHandle<()> {
    let period = state.config().redundancy.interval();
    let scan_every = state.config().redundancy.scan_interval();
    tokio::spawn(async move {
        // The first scan waits until datanodes have had time to report.
        let mut next_scan = tokio::time::Instant::now() + state.config().datanodes.dead_after();
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            if !state.is_active() {
                // Only the leader moves replicas; a new one scans first.
                next_scan = tokio::time::Instant::now();
                continue;
            }
            let st = state.clone();
            let scan = tokio::time::Instant::now() >= next_scan;
            if scan {
                next_scan = tokio::time::Instant::now() + scan_every;
            }
            let res = tokio::task::spawn_blocking(move || st.redundancy_round(scan)).await;
            match res {
                Ok(Ok(s)) if s.scheduled + s.excess_removed + s.missing > 0 => {
                    tracing::info!(
                        checked = s.checked,
                        scheduled = s.scheduled,
                        excess_removed = s.excess_removed,
                        missing = s.missing,
                        "redundancy round"
                    );
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "redundancy round failed"),
                Err(e) => tracing::error!(error = %e, "redundancy task failed"),
            }
        }
    })
}
