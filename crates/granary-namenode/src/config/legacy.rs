//! Settings that were top-level keys before the configuration had
//! sections. A file naming them still works; the namenode warns once at
//! start and says where each one lives now.

use granary_common::config::Moved;

const fn moved(old: &'static str, section: &'static str, key: &'static str) -> Moved {
    Moved { old, section, key }
}

pub(super) const MOVED: &[Moved] = &[
    moved("superuser", "namespace", "superuser"),
    moved("supergroup", "namespace", "supergroup"),
    moved("default_replication", "namespace", "default_replication"),
    moved("max_replication", "namespace", "max_replication"),
    moved("min_replication", "namespace", "min_replication"),
    moved("default_block_size", "namespace", "default_block_size"),
    moved("min_block_size", "namespace", "min_block_size"),
    moved("bytes_per_checksum", "namespace", "bytes_per_checksum"),
    moved("listing_limit", "namespace", "listing_limit"),
    moved("max_directory_items", "namespace", "max_directory_items"),
    moved("block_cache_mb", "namespace", "block_cache_mb"),
    moved("heartbeat_interval_ms", "datanodes", "heartbeat_interval_ms"),
    moved("stale_after_ms", "datanodes", "stale_after_ms"),
    moved("dead_after_ms", "datanodes", "dead_after_ms"),
    moved(
        "block_report_interval_ms",
        "datanodes",
        "block_report_interval_ms",
    ),
    moved("redundancy_interval_ms", "redundancy", "interval_ms"),
    moved("redundancy_scan_interval_ms", "redundancy", "scan_interval_ms"),
    moved("max_replication_streams", "redundancy", "max_replication_streams"),
    moved(
        "pending_replication_timeout_ms",
        "redundancy",
        "pending_replication_timeout_ms",
    ),
    moved("safemode_threshold", "safemode", "threshold"),
    moved("safemode_extension_ms", "safemode", "extension_ms"),
    moved("lease_soft_limit_ms", "leases", "soft_limit_ms"),
    moved("lease_hard_limit_ms", "leases", "hard_limit_ms"),
    moved(
        "block_key_update_interval_ms",
        "block_tokens",
        "key_update_interval_ms",
    ),
    moved("block_token_lifetime_ms", "block_tokens", "lifetime_ms"),
    moved("proxy_users", "webhdfs", "proxy_users"),
];
