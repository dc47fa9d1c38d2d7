//! The namenode's Prometheus metrics (`/metrics` on the HTTP port): RPC
//! counts and latency, datanodes by state, block health, safe mode and
//! RocksDB sizes. Gauges are read from the live state at each scrape.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::state::NamenodeState;
use granary_common::metrics::{RpcMetrics, register};
use granary_proto as pb;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CfLabel {
    cf: String,
}

pub struct NamenodeMetrics {
    registry: Registry,
    pub rpc: Arc<RpcMetrics>,
    pub connections: Arc<granary_common::conn_guard::ConnectionMetrics>,
    datanodes: Family<StateLabel, Gauge>,
    blocks: Gauge,
    under_replicated: Gauge,
    missing: Gauge,
    corrupt_replicas: Gauge,
    pending: Gauge,
    safe_mode: Gauge,
    uptime: Gauge<f64, AtomicU64>,
    mutation_queue: Gauge,
    mutation_busy: Gauge<f64, AtomicU64>,
    rocksdb_keys: Family<CfLabel, Gauge>,
    rocksdb_sst_bytes: Family<CfLabel, Gauge>,
    rocksdb_memtable_bytes: Gauge,
    rocksdb_block_cache_bytes: Gauge,
    ha_leader: Gauge,
    ha_term: Gauge,
    ha_last_log_index: Gauge,
    ha_applied_index: Gauge,
    ha_elections: Gauge,
    ha_follower_lag: Family<PeerLabel, Gauge>,
}

impl NamenodeMetrics {
    pub fn new() -> Arc<Self> {
        let mut r = Registry::default();
        let rpc = RpcMetrics::register(&mut r);
        let connections = granary_common::conn_guard::ConnectionMetrics::register(&mut r);
        Arc::new(Self {
            rpc,
            connections,
            datanodes: register(
                &mut r,
                "granary_datanodes",
                "Datanodes by state",
                Family::default(),
            ),
            blocks: register(
                &mut r,
                "granary_blocks",
                "Blocks with at least one reported replica",
                Gauge::default(),
            ),
            under_replicated: register(
                &mut r,
                "granary_blocks_under_replicated",
                "Blocks with fewer live replicas than their replication",
                Gauge::default(),
            ),
            missing: register(
                &mut r,
                "granary_blocks_missing",
                "Blocks with no live replica",
                Gauge::default(),
            ),
            corrupt_replicas: register(
                &mut r,
                "granary_corrupt_replicas_reported",
                "Corrupt replicas reported since start",
                Gauge::default(),
            ),
            pending: register(
                &mut r,
                "granary_pending_replications",
                "Copies scheduled and not yet confirmed",
                Gauge::default(),
            ),
            safe_mode: register(
                &mut r,
                "granary_safe_mode",
                "1 while in safe mode",
                Gauge::default(),
            ),
            uptime: register(
                &mut r,
                "granary_uptime_seconds",
                "Seconds since the namenode started",
                Gauge::default(),
            ),
            mutation_queue: register(
                &mut r,
                "granary_mutation_queue_jobs",
                "Namespace mutations waiting for the mutation thread or running on it",
                Gauge::default(),
            ),
            mutation_busy: register(
                &mut r,
                "granary_mutation_thread_busy_seconds",
                "Seconds the mutation thread spent running mutations since start (a rate near 1 means it is saturated)",
                Gauge::default(),
            ),
            rocksdb_keys: register(
                &mut r,
                "granary_rocksdb_estimated_keys",
                "RocksDB's estimate of keys per column family",
                Family::default(),
            ),
            rocksdb_sst_bytes: register(
                &mut r,
                "granary_rocksdb_sst_bytes",
                "Size of RocksDB's SST files per column family",
                Family::default(),
            ),
            rocksdb_memtable_bytes: register(
                &mut r,
                "granary_rocksdb_memtable_bytes",
                "RocksDB memtables, all column families",
                Gauge::default(),
            ),
            rocksdb_block_cache_bytes: register(
                &mut r,
                "granary_rocksdb_block_cache_bytes",
                "RocksDB block cache in use",
                Gauge::default(),
            ),
            ha_leader: register(
                &mut r,
                "granary_ha_leader",
                "1 while this namenode serves (leads its group, or runs alone)",
                Gauge::default(),
            ),
            ha_term: register(
                &mut r,
                "granary_ha_term",
                "Raft term (0 when alone)",
                Gauge::default(),
            ),
            ha_last_log_index: register(
                &mut r,
                "granary_ha_last_log_index",
                "Index of the last Raft log entry here",
                Gauge::default(),
            ),
            ha_applied_index: register(
                &mut r,
                "granary_ha_applied_index",
                "Index of the last Raft log entry applied to the namespace here",
                Gauge::default(),
            ),
            ha_elections: register(
                &mut r,
                "granary_ha_leader_changes",
                "Leader changes this namenode has seen since start",
                Gauge::default(),
            ),
            ha_follower_lag: register(
                &mut r,
                "granary_ha_follower_lag_entries",
                "On the leader: log entries each follower has yet to acknowledge",
                Family::default(),
            ),
            registry: r,
        })
    }

    /// Reads the gauges from `st` and renders everything.
    pub fn render(&self, st: &NamenodeState) -> String {
        let mut by_state = std::collections::HashMap::<&str, i64>::new();
        for s in ["live", "stale", "dead", "decommissioning", "decommissioned"] {
            by_state.insert(s, 0);
        }
        for d in st.datanodes().report() {
            let s = match pb::DatanodeState::try_from(d.state) {
                Ok(pb::DatanodeState::Stale) => "stale",
                Ok(pb::DatanodeState::Dead) => "dead",
                Ok(pb::DatanodeState::Decommissioning) => "decommissioning",
                Ok(pb::DatanodeState::Decommissioned) => "decommissioned",
                _ => "live",
            };
            *by_state.entry(s).or_default() += 1;
        }
        for (s, n) in by_state {
            self.datanodes
                .get_or_create(&StateLabel { state: s.into() })
                .set(n);
        }
        let h = st.health();
        self.blocks.set(h.blocks_total as i64);
        self.under_replicated.set(h.under_replicated as i64);
        self.missing.set(h.missing as i64);
        self.corrupt_replicas.set(h.corrupt_replicas as i64);
        self.pending.set(h.pending_replications as i64);
        self.safe_mode.set(i64::from(h.safe_mode));
        self.uptime.set(st.started().elapsed().as_secs_f64());
        self.mutation_queue
            .set(i64::try_from(st.mutations().queued()).unwrap_or(i64::MAX));
        self.mutation_busy.set(st.mutations().busy_seconds());
        let db = st.ns().db();
        let mut memtables = 0;
        for cf in crate::inode::ALL_CFS {
            let Some(h) = db.cf_handle(cf) else { continue };
            let prop = |p: &str| db.property_int_value_cf(&h, p).ok().flatten().unwrap_or(0) as i64;
            let l = CfLabel { cf: cf.to_string() };
            self.rocksdb_keys
                .get_or_create(&l)
                .set(prop("rocksdb.estimate-num-keys"));
            self.rocksdb_sst_bytes
                .get_or_create(&l)
                .set(prop("rocksdb.total-sst-files-size"));
            memtables += prop("rocksdb.cur-size-all-mem-tables");
            self.rocksdb_block_cache_bytes
                .set(prop("rocksdb.block-cache-usage"));
        }
        self.rocksdb_memtable_bytes.set(memtables);
        self.ha_leader.set(i64::from(st.is_active()));
        if let Some(ha) = st.ha() {
            let s = ha.status();
            let to_i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            self.ha_term.set(to_i(s.term));
            self.ha_elections.set(to_i(s.elections));
            for m in &s.members {
                if m.node_id == s.node_id {
                    self.ha_last_log_index.set(to_i(m.last_log_index));
                    self.ha_applied_index.set(to_i(m.last_applied_index));
                } else if s.leader_id == s.node_id {
                    self.ha_follower_lag
                        .get_or_create(&PeerLabel {
                            peer: m.node_id.clone(),
                        })
                        .set(to_i(m.lag));
                }
            }
        }
        granary_common::metrics::encode(&self.registry)
    }
}
