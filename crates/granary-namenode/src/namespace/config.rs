//! `[namespace]` of the namenode configuration: the limits and defaults the
//! namespace applies to requests. [`Namespace`](super::Namespace) takes this
//! section whole; each setting and its default are declared only here.

use serde::{Deserialize, Serialize};

use granary_common::config::ConfigError;
use granary_common::defaults;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceConfig {
    /// The user with every permission; defaults to the OS user running the namenode.
    pub superuser: String,
    /// Its members are superusers too.
    pub supergroup: String,
    pub default_replication: u32,
    pub max_replication: u32,
    /// Replicas a block needs before its file can close (and before safe
    /// mode counts it as reported).
    pub min_replication: u32,
    pub default_block_size: u64,
    pub min_block_size: u64,
    pub bytes_per_checksum: u32,
    /// Entries per listing page.
    pub listing_limit: u32,
    pub max_directory_items: u64,
    /// RocksDB block cache, in MiB: the namespace's only large memory use.
    pub block_cache_mb: u64,
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        Self {
            superuser: granary_common::identity::Identity::current_os_user(),
            supergroup: defaults::SUPERGROUP.to_string(),
            default_replication: defaults::REPLICATION,
            max_replication: defaults::MAX_REPLICATION,
            min_replication: 1,
            default_block_size: defaults::BLOCK_SIZE,
            min_block_size: defaults::MIN_BLOCK_SIZE,
            bytes_per_checksum: defaults::BYTES_PER_CHECKSUM,
            listing_limit: defaults::LISTING_LIMIT,
            max_directory_items: 1_048_576,
            block_cache_mb: 128,
        }
    }
}

impl NamespaceConfig {
    pub fn block_cache_bytes(&self) -> usize {
        usize::try_from(self.block_cache_mb << 20).unwrap_or(usize::MAX)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.default_replication == 0 || self.default_replication > self.max_replication {
            return bad(format!(
                "default_replication {} must be between 1 and max_replication {}",
                self.default_replication, self.max_replication
            ));
        }
        if self.min_replication == 0 || self.min_replication > self.default_replication {
            return bad(format!(
                "min_replication {} must be between 1 and default_replication",
                self.min_replication
            ));
        }
        if self.bytes_per_checksum == 0
            || !self
                .default_block_size
                .is_multiple_of(u64::from(self.bytes_per_checksum))
        {
            return bad("default_block_size must be a multiple of bytes_per_checksum".into());
        }
        if self.default_block_size < self.min_block_size {
            return bad("default_block_size is below min_block_size".into());
        }
        if self.listing_limit == 0 {
            return bad("listing_limit must be positive".into());
        }
        Ok(())
    }
}
