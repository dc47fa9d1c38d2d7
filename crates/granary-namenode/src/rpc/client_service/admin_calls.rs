//! Operators' calls on the namespace and the cluster: quotas and balancer
//! rounds.

use tonic::{Request, Response, Status};

use super::{ClientService, require_super};
use crate::error::NnError;
use crate::rpc::{blocking, mutating};
use granary_proto as pb;

/// The most datanodes one balancer call may exclude.
const MAX_EXCLUDED: usize = 10_000;

impl ClientService {
    pub(super) async fn set_quota_call(
        &self,
        req: Request<pb::SetQuotaRequest>,
    ) -> Result<Response<pb::SetQuotaResponse>, Status> {
        self.state.check_writable()?;
        let (st, caller) = self.ctx(&req).await?;
        let r = req.into_inner();
        mutating(&self.state, move |writes| {
            st.ns()
                .set_quota(&caller, &r.path, r.name_quota, r.space_quota)
                .map(|done| writes.take(done))
        })
        .await?;
        Ok(Response::new(pb::SetQuotaResponse {}))
    }

    pub(super) async fn balance_call(
        &self,
        req: Request<pb::BalanceRequest>,
    ) -> Result<Response<pb::BalanceResponse>, Status> {
        let (st, caller) = self.ctx(&req).await?;
        require_super(&caller)?;
        let r = req.into_inner();
        let mut opts = st.config().balancer.options();
        if r.threshold_percent != 0.0 {
            if !(r.threshold_percent > 0.0 && r.threshold_percent <= 100.0) {
                return Err(NnError::InvalidArgument(format!(
                    "balancer threshold {}: a percentage above 0, at most 100",
                    r.threshold_percent
                ))
                .into());
            }
            opts.threshold = r.threshold_percent / 100.0;
        }
        if r.bandwidth_bytes_per_sec != 0 {
            opts.bandwidth = r.bandwidth_bytes_per_sec;
        }
        if r.exclude.len() > MAX_EXCLUDED {
            return Err(NnError::InvalidArgument(format!(
                "{} datanodes excluded: at most {MAX_EXCLUDED}",
                r.exclude.len()
            ))
            .into());
        }
        opts.exclude = r.exclude;
        let round = blocking(move |_| st.balance_round(&opts)).await?;
        Ok(Response::new(pb::BalanceResponse {
            balanced: round.balanced,
            nodes: round.nodes as u32,
            over_utilized: round.over_utilized as u32,
            under_utilized: round.under_utilized as u32,
            mean_utilization: round.mean,
            bytes_left_to_move: round.bytes_left,
            bytes_being_moved: round.bytes_being_moved,
            moves_scheduled: round.scheduled as u32,
            bytes_moved: round.bytes_moved,
            blocks_moved: round.blocks_moved,
            moves_failed: round.moves_failed,
            utilization: round
                .utilization
                .into_iter()
                .map(|(id, utilization)| pb::NodeUtilization {
                    id: Some(id),
                    utilization,
                })
                .collect(),
        }))
    }

    pub(super) async fn disk_balance_call(
        &self,
        req: Request<pb::DiskBalanceRequest>,
    ) -> Result<Response<pb::DiskBalanceResponse>, Status> {
        let (st, caller) = self.ctx(&req).await?;
        require_super(&caller)?;
        let r = req.into_inner();
        let uuid = st.datanodes().uuid_of(&r.datanode).ok_or_else(|| {
            Status::from(NnError::NotFound(format!(
                "datanode {:?} (no such datanode is registered)",
                r.datanode
            )))
        })?;
        if r.start {
            let threshold = match r.threshold_percent {
                0.0 => 10.0,
                t if t > 0.0 && t <= 100.0 => t,
                t => {
                    return Err(NnError::InvalidArgument(format!(
                        "disk balancer threshold {t}: a percentage above 0, at most 100"
                    ))
                    .into());
                }
            };
            let cmd = pb::DiskBalanceCommand {
                threshold_percent: threshold,
                bandwidth_bytes_per_sec: r.bandwidth_bytes_per_sec,
            };
            tracing::info!(uuid = %uuid, user = %caller.user(), threshold, "disk balancer asked for");
            st.balancer().start_disk_balance(&uuid, cmd);
        }
        Ok(Response::new(pb::DiskBalanceResponse {
            datanode: st.datanodes().info(&uuid),
            volumes: st.datanodes().storages(&uuid),
        }))
    }
}
