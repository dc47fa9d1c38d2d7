//! The datanode's side of `DatanodeProtocol`: register (proving it holds
//! the cluster secret), heartbeat, send full and incremental block reports,
//! and carry out the namenode's commands.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::context::{DatanodeContext, ReplicaEvent};
use granary_common::daemon_auth::{self, ClusterSecret};
use granary_proto as pb;
use granary_proto::block_report_protocol_client::BlockReportProtocolClient;
use granary_proto::datanode_command::Command;
use granary_proto::datanode_protocol_client::DatanodeProtocolClient;

/// An incremental report carries at most this many entries per call.
const INCREMENTAL_BATCH: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    #[error("namenode refused this datanode: {0}")]
    Refused(String),
    #[error("invalid namenode address: {0}")]
    Address(String),
}

pub struct Actor {
    pub ctx: Arc<DatanodeContext>,
    pub namenode: String,
    pub heartbeat: Duration,
    pub data_dirs: Vec<std::path::PathBuf>,
    pub secret: ClusterSecret,
    /// This datanode's own key (its data dirs' VERSION), bound to its uuid by the namenode.
    pub node_key: Vec<u8>,
}

/// Puts the datanode's session on every call to the namenode.
#[derive(Clone)]
pub struct SessionInterceptor(Arc<DatanodeContext>);

impl tonic::service::Interceptor for SessionInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let session = self.0.session.read().clone();
        if !session.is_empty()
            && let Ok(v) = session.parse()
        {
            req.metadata_mut().insert(daemon_auth::SESSION_METADATA, v);
        }
        Ok(req)
    }
}

type Nn = DatanodeProtocolClient<InterceptedService<Channel, SessionInterceptor>>;
type Reports = BlockReportProtocolClient<InterceptedService<Channel, SessionInterceptor>>;

/// Whether a failed call means the namenode no longer knows this session
/// (it restarted, or declared this node dead): register again.
fn lost_session(st: &tonic::Status) -> bool {
    st.code() == tonic::Code::Unauthenticated
}

impl Actor {
    pub async fn run(
        self,
        mut events: mpsc::UnboundedReceiver<ReplicaEvent>,
        token: CancellationToken,
    ) -> Result<(), ActorError> {
        let ch = granary_common::net::lazy_channel(&self.namenode).map_err(ActorError::Address)?;
        let auth = SessionInterceptor(self.ctx.clone());
        let mut nn = DatanodeProtocolClient::with_interceptor(ch.clone(), auth.clone())
            .max_encoding_message_size(16 << 20)
            .max_decoding_message_size(64 << 20);
        let mut reports = BlockReportProtocolClient::with_interceptor(ch, auth)
            .max_encoding_message_size(256 << 20)
            .max_decoding_message_size(16 << 20);
        let mut pending: Vec<ReplicaEvent> = Vec::new();
        'register: loop {
            let Some(reg) = self.register(&mut nn, &token).await? else {
                return Ok(());
            };
            let report_every = Duration::from_millis(reg.block_report_interval_ms.max(1000));
            // Everything known so far is in the full report.
            pending.clear();
            while events.try_recv().is_ok() {}
            if let Err(e) = self.full_report(&mut reports).await {
                tracing::warn!(error = %e.message(), "full block report failed; registering again");
                if sleep_or_cancel(&token, self.heartbeat).await {
                    return Ok(());
                }
                continue 'register;
            }
            let mut next_report = Instant::now() + report_every;
            let mut tick = tokio::time::interval(self.heartbeat);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return Ok(()),
                    ev = events.recv() => {
                        let Some(ev) = ev else { return Ok(()) };
                        pending.push(ev);
                        while let Ok(ev) = events.try_recv() {
                            pending.push(ev);
                        }
                        if let Err(e) = self.send_incremental(&mut nn, &mut pending).await
                            && lost_session(&e)
                        {
                            continue 'register;
                        }
                    }
                    _ = tick.tick() => {
                        if !pending.is_empty()
                            && let Err(e) = self.send_incremental(&mut nn, &mut pending).await
                            && lost_session(&e)
                        {
                            continue 'register;
                        }
                        match self.heartbeat(&mut nn).await {
                            Ok(resp) => {
                                self.ctx.metrics.heartbeat_answered();
                                if !resp.block_keys.is_empty() {
                                    *self.ctx.block_keys.write() =
                                        granary_common::block_token::BlockKeys::new(resp.block_keys);
                                }
                                for c in resp.commands {
                                    if matches!(c.command, Some(Command::Reregister(_))) {
                                        tracing::info!("namenode asked to re-register");
                                        continue 'register;
                                    }
                                    self.execute(c);
                                }
                            }
                            Err(e) if lost_session(&e) => {
                                tracing::info!(error = %e.message(), "namenode does not know this session; registering again");
                                continue 'register;
                            }
                            Err(e) => tracing::warn!(error = %e.message(), "heartbeat failed"),
                        }
                        if Instant::now() >= next_report {
                            if let Err(e) = self.full_report(&mut reports).await {
                                tracing::warn!(error = %e.message(), "periodic block report failed");
                            }
                            next_report = Instant::now() + report_every;
                        }
                    }
                }
            }
        }
    }

    /// Registers, retrying until the namenode answers; `None` when cancelled.
    async fn register(
        &self,
        nn: &mut Nn,
        token: &CancellationToken,
    ) -> Result<Option<pb::RegisterResponse>, ActorError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            self.ctx.session.write().clear();
            match self.try_register(nn).await {
                Ok(r) => {
                    self.adopt_cluster(&r.cluster_id)?;
                    *self.ctx.block_keys.write() =
                        granary_common::block_token::BlockKeys::new(r.block_keys.clone());
                    *self.ctx.session.write() = r.session.clone();
                    tracing::info!(namenode = %self.namenode, cluster_id = %r.cluster_id, "registered with namenode");
                    return Ok(Some(r));
                }
                Err(st)
                    if matches!(
                        st.code(),
                        tonic::Code::InvalidArgument
                            | tonic::Code::PermissionDenied
                            | tonic::Code::Unauthenticated
                    ) =>
                {
                    return Err(ActorError::Refused(st.message().to_string()));
                }
                Err(st) => {
                    tracing::warn!(namenode = %self.namenode, error = %st.message(), "namenode not reachable; retrying");
                }
            }
            if sleep_or_cancel(token, backoff).await {
                return Ok(None);
            }
            backoff = (backoff * 2).min(self.heartbeat);
        }
    }

    async fn try_register(&self, nn: &mut Nn) -> Result<pb::RegisterResponse, tonic::Status> {
        let mut cluster_id = self.ctx.cluster_id.read().clone();
        if cluster_id.is_empty() {
            // Fresh data dirs: the cluster is the namenode's (the proof covers it).
            cluster_id = nn.version(pb::VersionRequest {}).await?.into_inner().cluster_id;
        }
        let now = crate::data_transfer::now_ms();
        let proof = daemon_auth::prove(&self.secret, &cluster_id, &self.ctx.id, &self.node_key, now);
        let req = pb::RegisterRequest {
            id: Some(self.ctx.id.clone()),
            cluster_id,
            storages: self.ctx.storage.storage_reports(),
            software_version: granary_common::VERSION.into(),
            proof: Some(proof),
            node_key: self.node_key.clone(),
        };
        Ok(nn.register(req).await?.into_inner())
    }

    /// Records the cluster id in every data dir on first registration.
    fn adopt_cluster(&self, cluster_id: &str) -> Result<(), ActorError> {
        let current = self.ctx.cluster_id.read().clone();
        if current == cluster_id {
            return Ok(());
        }
        if !current.is_empty() {
            return Err(ActorError::Refused(format!(
                "data dirs belong to cluster {current}, but the namenode serves {cluster_id}"
            )));
        }
        for dir in &self.data_dirs {
            if let Ok(Some(mut v)) = crate::layout::read(dir) {
                v.cluster_id = cluster_id.to_string();
                crate::layout::write(dir, &v).map_err(|e| ActorError::Refused(e.to_string()))?;
            }
        }
        *self.ctx.cluster_id.write() = cluster_id.to_string();
        Ok(())
    }

    async fn full_report(&self, reports: &mut Reports) -> Result<(), tonic::Status> {
        let storage = self.ctx.storage.clone();
        let report = crate::error::blocking(move || storage.block_report()).await?;
        let mut being_written = report.waiting;
        being_written.extend(
            self.ctx
                .recoverable
                .lock()
                .iter()
                .map(|(id, (w, _))| pb::ExtendedBlock {
                    block_id: *id,
                    generation_stamp: w.gs,
                    num_bytes: w.written(),
                }),
        );
        let (n, w, c) = (report.finalized.len(), being_written.len(), report.damaged.len());
        reports
            .block_report(pb::BlockReportRequest {
                datanode_uuid: self.ctx.id.uuid.clone(),
                blocks: report.finalized,
                being_written,
                corrupt: report.damaged,
            })
            .await?;
        tracing::info!(
            blocks = n,
            being_written = w,
            corrupt = c,
            "full block report sent"
        );
        Ok(())
    }

    async fn send_incremental(
        &self,
        nn: &mut Nn,
        pending: &mut Vec<ReplicaEvent>,
    ) -> Result<(), tonic::Status> {
        while !pending.is_empty() {
            let n = pending.len().min(INCREMENTAL_BATCH);
            let mut req = pb::IncrementalBlockReportRequest {
                datanode_uuid: self.ctx.id.uuid.clone(),
                ..Default::default()
            };
            for e in &pending[..n] {
                match e {
                    ReplicaEvent::Received(b) => req.received.push(*b),
                    ReplicaEvent::Deleted(b) => req.deleted.push(*b),
                    ReplicaEvent::Waiting(b) => req.being_written.push(*b),
                    ReplicaEvent::NotHeld(id) => req.not_held.push(*id),
                    ReplicaEvent::Verified(b) => req.verified.push(*b),
                    ReplicaEvent::Corrupt(b, why) => req.corrupt.push(pb::CorruptReplica {
                        block: Some(*b),
                        reason: why.clone(),
                    }),
                }
            }
            match nn.incremental_block_report(req).await {
                Ok(_) => {
                    pending.drain(..n);
                }
                // Kept and sent again with the next heartbeat.
                Err(e) => {
                    tracing::warn!(error = %e.message(), pending = pending.len(), "incremental block report failed");
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn heartbeat(&self, nn: &mut Nn) -> Result<pb::HeartbeatResponse, tonic::Status> {
        let req = pb::HeartbeatRequest {
            datanode_uuid: self.ctx.id.uuid.clone(),
            storages: self.ctx.storage.storage_reports(),
            xceiver_count: self.ctx.xceivers(),
        };
        // Bounded: across a partition a call can hang until TCP gives up
        // (minutes), and the actor must keep trying (and re-register) instead.
        let limit = (self.heartbeat * 3).max(Duration::from_secs(5));
        match tokio::time::timeout(limit, nn.heartbeat(req)).await {
            Ok(r) => Ok(r?.into_inner()),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "heartbeat unanswered after {} ms",
                limit.as_millis()
            ))),
        }
    }

    fn execute(&self, cmd: pb::DatanodeCommand) {
        let ctx = self.ctx.clone();
        match cmd.command {
            Some(Command::Invalidate(inv)) => {
                tokio::task::spawn_blocking(move || crate::commands::invalidate(&ctx, inv.blocks));
            }
            Some(Command::Replicate(r)) => {
                tokio::spawn(async move {
                    let id = r.block.as_ref().map(|b| b.block_id).unwrap_or_default();
                    if let Err(e) = crate::transfer::send_replica(ctx, r).await {
                        tracing::warn!(block_id = id, error = %e, "replica transfer failed");
                    }
                });
            }
            Some(Command::Verify(v)) => {
                tokio::task::spawn_blocking(move || crate::commands::verify(&ctx, v.blocks));
            }
            Some(Command::RecoverBlock(r)) => {
                if let Some(b) = r.block {
                    tokio::spawn(crate::commands::recover_block(ctx, b));
                }
            }
            Some(Command::CommitReplica(c)) => {
                if let Some(b) = c.block {
                    tokio::task::spawn_blocking(move || {
                        crate::commands::commit_replica(&ctx, b, c.new_generation_stamp, c.length)
                    });
                }
            }
            Some(Command::Reregister(_)) | None => {}
        }
    }
}

/// Sleeps; true when cancelled first.
async fn sleep_or_cancel(token: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = token.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
