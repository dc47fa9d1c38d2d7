//! The datanode's side of `DatanodeProtocol` with one namenode: register
//! (proving it holds the cluster secret), heartbeat, send full and
//! incremental block reports, and carry out the namenode's commands when it
//! is the active namenode of the newest term ([`crate::command_fence`]).
//!
//! A datanode runs one actor per configured namenode. Every call of this
//! protocol goes to each namenode: each keeps its own map of replicas (a
//! standby must know them all to take over at once), issues its own
//! session, and learns that this datanode is alive from its heartbeats.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::command_fence::Verdict;
use crate::context::{DatanodeContext, ReplicaEvent};
use crate::namenode_link::{EVENT_QUEUE, NamenodeLink};
use granary_common::daemon_auth::{self, ClusterSecret};
use granary_proto as pb;
use granary_proto::block_report_protocol_client::BlockReportProtocolClient;
use granary_proto::datanode_command::Command;
use granary_proto::datanode_protocol_client::DatanodeProtocolClient;

/// An incremental report carries at most this many entries per call.
const INCREMENTAL_BATCH: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    #[error("namenode {namenode} refused this datanode: {reason}")]
    Refused { namenode: String, reason: String },
    #[error("invalid namenode address: {0}")]
    Address(String),
}

pub struct Actor {
    pub ctx: Arc<DatanodeContext>,
    /// The namenode this actor talks to.
    pub link: Arc<NamenodeLink>,
    pub heartbeat: Duration,
    pub data_dirs: Vec<std::path::PathBuf>,
    pub secret: ClusterSecret,
    /// This datanode's own key (its data dirs' VERSION), bound to its uuid by the namenode.
    pub node_key: Vec<u8>,
}

/// Puts the session this actor's namenode issued on every call to it.
#[derive(Clone)]
pub struct SessionInterceptor(Arc<NamenodeLink>);

impl tonic::service::Interceptor for SessionInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let session = self.0.session();
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

fn is_reregister(c: &pb::DatanodeCommand) -> bool {
    matches!(c.command, Some(Command::Reregister(_)))
}

impl Actor {
    pub async fn run(
        self,
        mut events: mpsc::Receiver<ReplicaEvent>,
        token: CancellationToken,
    ) -> Result<(), ActorError> {
        let ch = self
            .ctx
            .net()
            .lazy_channel(&self.link.addr)
            .map_err(ActorError::Address)?;
        let auth = SessionInterceptor(self.link.clone());
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
            if let Err(e) = self.catch_up(&mut reports, &mut events, &mut pending).await {
                tracing::warn!(namenode = %self.link.addr, error = %e.message(), "full block report failed; registering again");
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
                        self.queue(&mut pending, ev);
                        while let Ok(ev) = events.try_recv() {
                            self.queue(&mut pending, ev);
                        }
                        if let Err(e) = self.send_incremental(&mut nn, &mut pending).await
                            && lost_session(&e)
                        {
                            continue 'register;
                        }
                    }
                    _ = tick.tick() => {
                        if let Err(e) = self.send_incremental(&mut nn, &mut pending).await
                            && lost_session(&e)
                        {
                            continue 'register;
                        }
                        match self.heartbeat(&mut nn).await {
                            Ok(resp) => {
                                if self.answered(resp) {
                                    tracing::info!(namenode = %self.link.addr, "namenode asked to re-register");
                                    continue 'register;
                                }
                                // Events were dropped while it did not answer; it does now.
                                if self.link.overflowed() {
                                    match self.catch_up(&mut reports, &mut events, &mut pending).await {
                                        Ok(()) => next_report = Instant::now() + report_every,
                                        Err(e) if lost_session(&e) => continue 'register,
                                        Err(e) => {
                                            tracing::warn!(namenode = %self.link.addr, error = %e.message(), "full block report after dropped events failed");
                                            self.link.mark_overflow();
                                        }
                                    }
                                }
                            }
                            Err(e) if lost_session(&e) => {
                                tracing::info!(namenode = %self.link.addr, error = %e.message(), "namenode does not know this session; registering again");
                                continue 'register;
                            }
                            Err(e) => tracing::warn!(namenode = %self.link.addr, error = %e.message(), "heartbeat failed"),
                        }
                        if Instant::now() >= next_report {
                            if let Err(e) = self.full_report(&mut reports).await {
                                tracing::warn!(namenode = %self.link.addr, error = %e.message(), "periodic block report failed");
                            }
                            next_report = Instant::now() + report_every;
                        }
                    }
                }
            }
        }
    }

    /// Takes in a heartbeat reply: notes the namenode's state and keys, and
    /// carries out its commands if it is the active namenode of the newest
    /// term. True when it asks this datanode to register again (always
    /// obeyed: it is about this actor's own session).
    fn answered(&self, resp: pb::HeartbeatResponse) -> bool {
        self.ctx.metrics.heartbeat_answered();
        self.link.heartbeat_answered(resp.active, resp.term);
        if !resp.block_keys.is_empty() {
            self.link.set_block_keys(resp.block_keys);
        }
        let reregister = resp.commands.iter().any(is_reregister);
        let orders: Vec<_> = resp.commands.into_iter().filter(|c| !is_reregister(c)).collect();
        let verdict = self.ctx.fence.lock().admit(resp.active, resp.term);
        match verdict {
            Verdict::Obey => orders.into_iter().for_each(|c| self.execute(c)),
            _ if orders.is_empty() => {}
            Verdict::NotActive => tracing::warn!(
                namenode = %self.link.addr,
                term = resp.term,
                commands = orders.len(),
                "commands from a standby namenode dropped"
            ),
            Verdict::StaleTerm { highest } => tracing::warn!(
                namenode = %self.link.addr,
                term = resp.term,
                highest_term = highest,
                commands = orders.len(),
                "commands from a namenode deposed by a newer term dropped"
            ),
        }
        reregister
    }

    /// Adds an event to the incremental report. Past [`EVENT_QUEUE`]
    /// waiting events (the namenode is not answering) they are dropped and
    /// a full report is due instead; until it is sent, events are moot.
    fn queue(&self, pending: &mut Vec<ReplicaEvent>, ev: ReplicaEvent) {
        if self.link.overflowed() {
            return;
        }
        if pending.len() >= EVENT_QUEUE {
            tracing::warn!(
                namenode = %self.link.addr,
                pending = pending.len(),
                "unsent replica events dropped; a full block report follows"
            );
            pending.clear();
            self.link.mark_overflow();
            return;
        }
        pending.push(ev);
    }

    /// A full report in place of every event so far: the events are
    /// dropped first, so whatever they said is in the replicas it lists
    /// (an event is queued after its change is on disk).
    async fn catch_up(
        &self,
        reports: &mut Reports,
        events: &mut mpsc::Receiver<ReplicaEvent>,
        pending: &mut Vec<ReplicaEvent>,
    ) -> Result<(), tonic::Status> {
        self.link.take_overflow();
        pending.clear();
        while events.try_recv().is_ok() {}
        self.full_report(reports).await
    }

    /// Registers, retrying until the namenode answers; `None` when cancelled.
    async fn register(
        &self,
        nn: &mut Nn,
        token: &CancellationToken,
    ) -> Result<Option<pb::RegisterResponse>, ActorError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            self.link.unregistered();
            match self.try_register(nn).await {
                Ok(r) => {
                    self.adopt_cluster(&r.cluster_id)?;
                    self.link.registered(r.session.clone(), r.block_keys.clone());
                    tracing::info!(namenode = %self.link.addr, cluster_id = %r.cluster_id, "registered with namenode");
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
                    return Err(self.refused(st.message().to_string()));
                }
                Err(st) => {
                    tracing::warn!(namenode = %self.link.addr, error = %granary_common::error::with_causes(&st), "namenode not reachable; retrying");
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

    fn refused(&self, reason: String) -> ActorError {
        ActorError::Refused {
            namenode: self.link.addr.clone(),
            reason,
        }
    }

    /// Records the cluster id in every data dir on first registration. The
    /// lock is held throughout: the first namenode to answer sets the
    /// cluster, and every other must serve the same one.
    fn adopt_cluster(&self, cluster_id: &str) -> Result<(), ActorError> {
        let mut current = self.ctx.cluster_id.write();
        if *current == cluster_id {
            return Ok(());
        }
        if !current.is_empty() {
            return Err(self.refused(format!(
                "data dirs belong to cluster {current}, but the namenode serves {cluster_id}"
            )));
        }
        for dir in &self.data_dirs {
            if let Ok(Some(mut v)) = crate::layout::read(dir) {
                v.cluster_id = cluster_id.to_string();
                crate::layout::write(dir, &v).map_err(|e| self.refused(e.to_string()))?;
            }
        }
        *current = cluster_id.to_string();
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
            namenode = %self.link.addr,
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
        if self.link.overflowed() {
            // A full report is due: it says all these events say.
            pending.clear();
            return Ok(());
        }
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
                    tracing::warn!(namenode = %self.link.addr, error = %e.message(), pending = pending.len(), "incremental block report failed");
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
            bytes_read: self.ctx.metrics.bytes_read.get(),
            bytes_written: self.ctx.metrics.bytes_written.get(),
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
            Some(Command::DiskBalance(d)) => crate::commands::disk_balance(ctx, d),
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
