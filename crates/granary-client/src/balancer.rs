//! Balancer rounds (`granary balancer`): the namenode plans and starts the
//! moves; a client drives rounds and shows progress.

use granary_proto as pb;

use crate::types::DatanodeId;
use crate::{DfsClient, Result};

/// What a round is asked to do; `None`: the namenode's `[balancer]` setting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BalanceOptions {
    /// Percentage points from the mean utilization a node may be.
    pub threshold_percent: Option<f64>,
    /// Bytes per second per datanode the moves started may take.
    pub bandwidth_bytes_per_sec: Option<u64>,
    /// Datanodes neither given to nor taken from: uuid, host or host:port.
    pub exclude: Vec<String>,
}

/// What a round found and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BalanceReport {
    /// Every node considered is within the threshold of the mean.
    pub balanced: bool,
    pub nodes: u32,
    pub over_utilized: u32,
    pub under_utilized: u32,
    /// A fraction.
    pub mean_utilization: f64,
    pub bytes_left_to_move: u64,
    pub bytes_being_moved: u64,
    pub moves_scheduled: u32,
    /// Since the namenode started.
    pub bytes_moved: u64,
    pub blocks_moved: u64,
    pub moves_failed: u64,
    /// Each node considered, with its utilization (a fraction) as reported.
    pub utilization: Vec<(DatanodeId, f64)>,
}

impl From<pb::BalanceResponse> for BalanceReport {
    fn from(r: pb::BalanceResponse) -> Self {
        Self {
            balanced: r.balanced,
            nodes: r.nodes,
            over_utilized: r.over_utilized,
            under_utilized: r.under_utilized,
            mean_utilization: r.mean_utilization,
            bytes_left_to_move: r.bytes_left_to_move,
            bytes_being_moved: r.bytes_being_moved,
            moves_scheduled: r.moves_scheduled,
            bytes_moved: r.bytes_moved,
            blocks_moved: r.blocks_moved,
            moves_failed: r.moves_failed,
            utilization: r
                .utilization
                .into_iter()
                .filter_map(|u| Some((DatanodeId::from(u.id?), u.utilization)))
                .collect(),
        }
    }
}

impl DfsClient {
    /// One balancer round (superuser).
    pub async fn balance(&self, opts: &BalanceOptions) -> Result<BalanceReport> {
        let req = pb::BalanceRequest {
            threshold_percent: opts.threshold_percent.unwrap_or(0.0),
            bandwidth_bytes_per_sec: opts.bandwidth_bytes_per_sec.unwrap_or(0),
            exclude: opts.exclude.clone(),
        };
        Ok(nn_call!(self, balance, req).await?.into())
    }
}

/// One data dir of a datanode, as its last heartbeat reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Volume {
    pub path: String,
    pub capacity: u64,
    pub dfs_used: u64,
    pub remaining: u64,
    pub failed: bool,
}

impl Volume {
    /// dfs_used / capacity (0 for no capacity).
    pub fn utilization(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            self.dfs_used as f64 / self.capacity as f64
        }
    }
}

/// A datanode's data dirs (`granary admin diskbalancer`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiskBalanceStatus {
    pub datanode: Option<crate::DatanodeInfo>,
    pub volumes: Vec<Volume>,
}

impl DfsClient {
    /// The data dirs of `datanode` (uuid or host:port); with `start`, its
    /// disk balancer is started first, to bring every dir within
    /// `threshold_percent` (None: 10) of their mean (superuser).
    pub async fn disk_balance(
        &self,
        datanode: &str,
        start: bool,
        threshold_percent: Option<f64>,
        bandwidth_bytes_per_sec: Option<u64>,
    ) -> Result<DiskBalanceStatus> {
        let req = pb::DiskBalanceRequest {
            datanode: datanode.into(),
            start,
            threshold_percent: threshold_percent.unwrap_or(0.0),
            bandwidth_bytes_per_sec: bandwidth_bytes_per_sec.unwrap_or(0),
        };
        let r = nn_call!(self, disk_balance, req).await?;
        Ok(DiskBalanceStatus {
            datanode: r.datanode.map(Into::into),
            volumes: r
                .volumes
                .into_iter()
                .map(|v| Volume {
                    path: v.path,
                    capacity: v.capacity,
                    dfs_used: v.dfs_used,
                    remaining: v.remaining,
                    failed: v.failed,
                })
                .collect(),
        })
    }
}
