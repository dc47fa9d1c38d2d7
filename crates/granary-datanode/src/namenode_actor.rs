//! The datanode's side of `DatanodeProtocol`: register, heartbeat, send full
//! and incremental block reports, and carry out the namenode's commands.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::context::{DatanodeContext, ReplicaEvent};
use granary_proto as pb;
use granary_proto::datanode_command::Command;
use granary_proto::datanode_protocol_client::DatanodeProtocolClient;

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
}

type Nn = DatanodeProtocolClient<tonic::transport::Channel>;

impl Actor {
    pub async fn run(
        self,
        mut events: mpsc::UnboundedReceiver<ReplicaEvent>,
        token: CancellationToken,
    ) -> Result<(), ActorError> {
        let ch = granary_common::net::lazy_channel(&self.namenode).map_err(ActorError::Address)?;
        let mut nn = DatanodeProtocolClient::new(ch)
            .max_encoding_message_size(256 << 20)
            .max_decoding_message_size(64 << 20);
        let mut pending: Vec<ReplicaEvent> = Vec::new();
        'register: loop {
            let Some(reg) = self.register(&mut nn, &token).await? else {
                return Ok(());
            };
            let report_every = Duration::from_millis(reg.block_report_interval_ms.max(1000));
            // Everything received so far is in the full report.
            pending.clear();
            while events.try_recv().is_ok() {}
            if let Err(e) = self.full_report(&mut nn).await {
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
                        self.send_incremental(&mut nn, &mut pending).await;
                    }
                    _ = tick.tick() => {
                        if !pending.is_empty() {
                            self.send_incremental(&mut nn, &mut pending).await;
                        }
                        match self.heartbeat(&mut nn).await {
                            Ok(cmds) => {
                                self.ctx.metrics.heartbeat_answered();
                                for c in cmds {
                                    if matches!(c.command, Some(Command::Reregister(_))) {
                                        tracing::info!("namenode asked to re-register");
                                        continue 'register;
                                    }
                                    self.execute(c);
                                }
                            }
                            Err(e) => tracing::warn!(error = %e.message(), "heartbeat failed"),
                        }
                        if Instant::now() >= next_report {
                            if let Err(e) = self.full_report(&mut nn).await {
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
            let req = pb::RegisterRequest {
                id: Some(self.ctx.id.clone()),
                cluster_id: self.ctx.cluster_id.read().clone(),
                storages: self.ctx.storage.storage_reports(),
                software_version: granary_common::VERSION.into(),
            };
            match nn.register(req).await {
                Ok(r) => {
                    let r = r.into_inner();
                    self.adopt_cluster(&r.cluster_id)?;
                    *self.ctx.block_key.write() = r.block_token_key.clone();
                    tracing::info!(namenode = %self.namenode, cluster_id = %r.cluster_id, "registered with namenode");
                    return Ok(Some(r));
                }
                Err(st) if st.code() == tonic::Code::InvalidArgument => {
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

    async fn full_report(&self, nn: &mut Nn) -> Result<(), tonic::Status> {
        let blocks = self.ctx.storage.block_report();
        let n = blocks.len();
        nn.block_report(pb::BlockReportRequest {
            datanode_uuid: self.ctx.id.uuid.clone(),
            blocks,
        })
        .await?;
        tracing::info!(blocks = n, "full block report sent");
        Ok(())
    }

    async fn send_incremental(&self, nn: &mut Nn, pending: &mut Vec<ReplicaEvent>) {
        let mut req = pb::IncrementalBlockReportRequest {
            datanode_uuid: self.ctx.id.uuid.clone(),
            ..Default::default()
        };
        for e in pending.iter() {
            match e {
                ReplicaEvent::Received(b) => req.received.push(*b),
                ReplicaEvent::Deleted(b) => req.deleted.push(*b),
            }
        }
        match nn.incremental_block_report(req).await {
            Ok(_) => pending.clear(),
            // Kept and sent again with the next heartbeat.
            Err(e) => {
                tracing::warn!(error = %e.message(), pending = pending.len(), "incremental block report failed")
            }
        }
    }

    async fn heartbeat(&self, nn: &mut Nn) -> Result<Vec<pb::DatanodeCommand>, tonic::Status> {
        let req = pb::HeartbeatRequest {
            datanode_uuid: self.ctx.id.uuid.clone(),
            storages: self.ctx.storage.storage_reports(),
            xceiver_count: self.ctx.xceivers(),
        };
        // Bounded: across a partition a call can hang until TCP gives up
        // (minutes), and the actor must keep trying (and re-register) instead.
        let limit = (self.heartbeat * 3).max(Duration::from_secs(5));
        match tokio::time::timeout(limit, nn.heartbeat(req)).await {
            Ok(r) => Ok(r?.into_inner().commands),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "heartbeat unanswered after {} ms",
                limit.as_millis()
            ))),
        }
    }

    fn execute(&self, cmd: pb::DatanodeCommand) {
        match cmd.command {
            Some(Command::Invalidate(inv)) => {
                let ctx = self.ctx.clone();
                tokio::task::spawn_blocking(move || {
                    for b in inv.blocks {
                        match ctx.storage.delete(&b) {
                            Ok(true) => ctx.report(ReplicaEvent::Deleted(b)),
                            Ok(false) => {}
                            Err(e) => {
                                tracing::warn!(block_id = b.block_id, error = %e, "cannot delete replica")
                            }
                        }
                    }
                });
            }
            Some(Command::Replicate(r)) => {
                let ctx = self.ctx.clone();
                tokio::spawn(async move {
                    let id = r.block.as_ref().map(|b| b.block_id).unwrap_or_default();
                    if let Err(e) = crate::transfer::send_replica(ctx, r).await {
                        tracing::warn!(block_id = id, error = %e, "replica transfer failed");
                    }
                });
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
