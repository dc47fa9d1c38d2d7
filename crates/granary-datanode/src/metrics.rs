//! The datanode's Prometheus metrics (`/metrics` on its HTTP port): RPC
//! counts and latency, bytes moved, replicas, transfers in progress, disk
//! space per volume, how long ago a namenode last answered a heartbeat, and
//! each namenode's state (registered, active, term).
//!
//! The context owns the metrics; the metrics know only what they are shown
//! (the storage, the transfer count, the namenode links), not the context.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::namenode_link::NamenodeLink;
use crate::storage::Storage;
use granary_common::metrics::{RpcMetrics, register};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VolumeLabel {
    path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamenodeLabel {
    namenode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

pub struct DatanodeMetrics {
    registry: Registry,
    pub rpc: Arc<RpcMetrics>,
    pub connections: Arc<granary_common::conn_guard::ConnectionMetrics>,
    pub bytes_written: Counter,
    pub bytes_read: Counter,
    write_blocks: Family<OutcomeLabel, Counter>,
    replicas: Gauge,
    xceivers: Gauge,
    capacity: Family<VolumeLabel, Gauge>,
    remaining: Family<VolumeLabel, Gauge>,
    failed_volumes: Gauge,
    heartbeat_lag: Gauge<f64, AtomicU64>,
    nn_registered: Family<NamenodeLabel, Gauge>,
    nn_active: Family<NamenodeLabel, Gauge>,
    nn_term: Family<NamenodeLabel, Gauge>,
    last_heartbeat: Mutex<Option<Instant>>,
    started: Instant,
}

impl DatanodeMetrics {
    pub fn new() -> Arc<Self> {
        let mut r = Registry::default();
        let rpc = RpcMetrics::register(&mut r);
        let connections = granary_common::conn_guard::ConnectionMetrics::register(&mut r);
        Arc::new(Self {
            rpc,
            connections,
            bytes_written: register(
                &mut r,
                "granary_datanode_bytes_written",
                "Block data written to local replicas",
                Counter::default(),
            ),
            bytes_read: register(
                &mut r,
                "granary_datanode_bytes_read",
                "Block data sent to readers",
                Counter::default(),
            ),
            // The write pipeline is not gRPC, so the RPC metrics miss it.
            write_blocks: register(
                &mut r,
                "granary_datanode_write_blocks",
                "Write pipelines served: completed when the block's last packet was acked, failed otherwise",
                Family::default(),
            ),
            replicas: register(
                &mut r,
                "granary_datanode_replicas",
                "Finalized replicas held",
                Gauge::default(),
            ),
            xceivers: register(
                &mut r,
                "granary_datanode_xceivers",
                "Block transfers in progress",
                Gauge::default(),
            ),
            capacity: register(
                &mut r,
                "granary_datanode_capacity_bytes",
                "Capacity per volume",
                Family::default(),
            ),
            remaining: register(
                &mut r,
                "granary_datanode_remaining_bytes",
                "Free space per volume",
                Family::default(),
            ),
            failed_volumes: register(
                &mut r,
                "granary_datanode_failed_volumes",
                "Volumes taken out of service",
                Gauge::default(),
            ),
            heartbeat_lag: register(
                &mut r,
                "granary_datanode_heartbeat_lag_seconds",
                "Seconds since a namenode last answered a heartbeat (since start when never)",
                Gauge::default(),
            ),
            nn_registered: register(
                &mut r,
                "granary_datanode_namenode_registered",
                "1 while this datanode holds a session from the namenode",
                Family::default(),
            ),
            nn_active: register(
                &mut r,
                "granary_datanode_namenode_active",
                "1 when the namenode's last heartbeat reply said it is active",
                Family::default(),
            ),
            nn_term: register(
                &mut r,
                "granary_datanode_namenode_term",
                "The term the namenode's last heartbeat reply gave",
                Family::default(),
            ),
            last_heartbeat: Mutex::new(None),
            started: Instant::now(),
            registry: r,
        })
    }

    pub fn write_block_done(&self, completed: bool) {
        let outcome = if completed { "completed" } else { "failed" };
        self.write_blocks.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn heartbeat_answered(&self) {
        *self.last_heartbeat.lock() = Some(Instant::now());
    }

    /// The Prometheus text, with the gauges read from `storage`, the
    /// `xceivers` (transfers) now in progress and the `namenodes`.
    pub fn render(&self, storage: &Storage, xceivers: u32, namenodes: &[Arc<NamenodeLink>]) -> String {
        self.replicas.set(storage.replica_count() as i64);
        self.xceivers.set(i64::from(xceivers));
        let mut failed = 0;
        for s in storage.storage_reports() {
            let l = VolumeLabel { path: s.path.clone() };
            self.capacity.get_or_create(&l).set(s.capacity as i64);
            self.remaining.get_or_create(&l).set(s.remaining as i64);
            failed += i64::from(s.failed);
        }
        self.failed_volumes.set(failed);
        let since = (*self.last_heartbeat.lock()).unwrap_or(self.started);
        self.heartbeat_lag.set(since.elapsed().as_secs_f64());
        for nn in namenodes {
            let l = NamenodeLabel {
                namenode: nn.addr.clone(),
            };
            let st = nn.status();
            self.nn_registered.get_or_create(&l).set(i64::from(st.registered));
            self.nn_active.get_or_create(&l).set(i64::from(st.active));
            self.nn_term
                .get_or_create(&l)
                .set(i64::try_from(st.term).unwrap_or(i64::MAX));
        }
        granary_common::metrics::encode(&self.registry)
    }
}
