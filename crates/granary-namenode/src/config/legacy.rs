//! Settings that were top-level keys before the configuration had
//! sections. A file naming them still works; the namenode warns once at
//! start and says where each one lives now.

use granary_common::config::Moved;

pub(super) const MOVED: &[Moved] = &[
    Moved::new("superuser", "namespace", "superuser"),
    Moved::new("supergroup", "namespace", "supergroup"),
    Moved::new("default_replication", "namespace", "default_replication"),
    Moved::new("max_replication", "namespace", "max_replication"),
    Moved::new("min_replication", "namespace", "min_replication"),
    Moved::new("default_block_size", "namespace", "default_block_size"),
    Moved::new("min_block_size", "namespace", "min_block_size"),
    Moved::new("bytes_per_checksum", "namespace", "bytes_per_checksum"),
    Moved::new("listing_limit", "namespace", "listing_limit"),
    Moved::new("max_directory_items", "namespace", "max_directory_items"),
    Moved::new("block_cache_mb", "namespace", "block_cache_mb"),
    Moved::new("heartbeat_interval_ms", "datanodes", "heartbeat_interval_ms"),
    Moved::new("stale_after_ms", "datanodes", "stale_after_ms"),
    Moved::new("dead_after_ms", "datanodes", "dead_after_ms"),
    Moved::new(
        "block_report_interval_ms",
        "datanodes",
        "block_report_interval_ms",
    ),
    Moved::new("redundancy_interval_ms", "redundancy", "interval_ms"),
    Moved::new("redundancy_scan_interval_ms", "redundancy", "scan_interval_ms"),
    Moved::new("max_replication_streams", "redundancy", "max_replication_streams"),
    Moved::new(
        "pending_replication_timeout_ms",
        "redundancy",
        "pending_replication_timeout_ms",
    ),
    Moved::new("safemode_threshold", "safemode", "threshold"),
    Moved::new("safemode_extension_ms", "safemode", "extension_ms"),
    Moved::new("lease_soft_limit_ms", "leases", "soft_limit_ms"),
    Moved::new("lease_hard_limit_ms", "leases", "hard_limit_ms"),
    Moved::new(
        "block_key_update_interval_ms",
        "block_tokens",
        "key_update_interval_ms",
    ),
    Moved::new("block_token_lifetime_ms", "block_tokens", "lifetime_ms"),
    Moved::new("proxy_users", "webhdfs", "proxy_users"),
];
