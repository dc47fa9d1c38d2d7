//! The keys that sign block access tokens, rolled as HDFS's
//! BlockTokenSecretManager rolls them: datanodes always hold the *current*
//! key (which signs new tokens) and the *next* one, made a whole update
//! interval (HDFS: 10 hours) before it starts signing, so a datanode has it
//! long before the first token it signs arrives. Every key stays valid for
//! verifying until the last token it could have signed expires. Keys live
//! only in memory: a restarted namenode makes new ones, and tokens from
//! before the restart are refused.

use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::inode::now_ms;
use granary_common::block_token::{self, BlockAccess, BlockKeys};
use granary_proto as pb;

/// `[block_tokens]` of the namenode configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BlockTokenConfig {
    /// How often a new block-token signing key is made (HDFS: 10 h).
    pub key_update_interval_ms: u64,
    /// How long a block access token is valid (HDFS: 10 h).
    pub lifetime_ms: u64,
}

impl Default for BlockTokenConfig {
    fn default() -> Self {
        Self {
            key_update_interval_ms: 10 * 60 * 60 * 1000,
            lifetime_ms: 10 * 60 * 60 * 1000,
        }
    }
}

impl BlockTokenConfig {
    pub fn validate(&self) -> Result<(), granary_common::config::ConfigError> {
        if self.key_update_interval_ms == 0 || self.lifetime_ms == 0 {
            return Err(granary_common::config::ConfigError::Invalid(
                "block_tokens key_update_interval_ms and lifetime_ms must be positive".into(),
            ));
        }
        Ok(())
    }
}

struct Keys {
    /// Oldest first; the last is the next key, the one before it signs.
    keys: Vec<pb::BlockKey>,
    /// When the current key started signing.
    current_since: i64,
}

pub struct BlockKeyManager {
    inner: RwLock<Keys>,
    update_interval: i64,
    token_lifetime: i64,
}

impl BlockKeyManager {
    pub fn from_config(cfg: &BlockTokenConfig) -> Self {
        Self::new(
            Duration::from_millis(cfg.key_update_interval_ms),
            Duration::from_millis(cfg.lifetime_ms),
        )
    }

    pub fn new(update_interval: Duration, token_lifetime: Duration) -> Self {
        let m = Self {
            inner: RwLock::new(Keys {
                keys: Vec::new(),
                current_since: 0,
            }),
            update_interval: update_interval.as_millis() as i64,
            token_lifetime: token_lifetime.as_millis() as i64,
        };
        let now = now_ms();
        {
            // Ids start at a random point so two namenode lives rarely share one.
            let first = rand::random::<u32>();
            let mut k = m.inner.write();
            k.keys.push(m.new_key(first, now));
            k.keys
                .push(m.new_key(first.wrapping_add(1), now + m.update_interval));
            k.current_since = now;
        }
        m
    }

    /// A key that starts signing at `starts`: it signs for one update
    /// interval, and its tokens live a token lifetime after that.
    fn new_key(&self, id: u32, starts: i64) -> pb::BlockKey {
        pb::BlockKey {
            id,
            key: block_token::new_key(),
            expiry_ms: starts + self.update_interval + self.token_lifetime,
        }
    }

    /// Once the current key has signed for an update interval, the next one
    /// takes over and a new next one is made; expired keys are forgotten.
    /// True when the set changed (datanodes get it with their heartbeats).
    pub fn roll(&self) -> bool {
        self.roll_at(now_ms())
    }

    fn roll_at(&self, now: i64) -> bool {
        let mut k = self.inner.write();
        let before = k.keys.len();
        let due = now >= k.current_since + self.update_interval;
        if due {
            k.current_since = now;
            let id = k.keys.last().map_or(0, |l| l.id.wrapping_add(1));
            let next = self.new_key(id, now + self.update_interval);
            k.keys.push(next);
            tracing::info!(key_id = id.wrapping_sub(1), "block access key rolled");
        }
        k.keys.retain(|key| key.expiry_ms >= now);
        due || k.keys.len() != before
    }

    /// The keys datanodes need: still-valid older ones, the current one and the next.
    pub fn all(&self) -> Vec<pb::BlockKey> {
        self.inner.read().keys.clone()
    }

    /// Signs a token for `block` with the current key, for any holder (a
    /// datanode's).
    pub fn token(&self, block: &pb::ExtendedBlock, access: BlockAccess) -> Vec<u8> {
        self.token_for(block, access, "")
    }

    /// Signs a token for `block` with the current key, issued to `user`.
    pub fn token_for(&self, block: &pb::ExtendedBlock, access: BlockAccess, user: &str) -> Vec<u8> {
        let k = self.inner.read();
        let expiry = now_ms() + self.token_lifetime;
        // The current key is the one before the next (there are always both).
        match k.keys.len().checked_sub(2).and_then(|i| k.keys.get(i)) {
            Some(key) => {
                block_token::issue_for(key, block.block_id, block.generation_stamp, access, expiry, user)
            }
            None => Vec::new(),
        }
    }

    /// Checks a token the namenode issued (e.g. the read token a client
    /// presents with a corrupt-replica report); returns its generation stamp.
    pub fn verify(
        &self,
        token: &[u8],
        block_id: u64,
        access: BlockAccess,
    ) -> Result<u64, block_token::TokenError> {
        BlockKeys::new(self.all()).verify(token, block_id, access, now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_key_is_known_before_it_signs_and_old_ones_verify_until_their_tokens_expire() {
        let m = BlockKeyManager::new(Duration::from_millis(1_000), Duration::from_millis(2_000));
        let b = pb::ExtendedBlock {
            block_id: 9,
            generation_stamp: 4,
            num_bytes: 0,
        };
        let first = m.all();
        assert_eq!(first.len(), 2, "current and next");
        let t0 = m.token(&b, BlockAccess::Read);
        let start = now_ms();
        assert!(!m.roll_at(start + 500), "not due yet");
        assert!(m.roll_at(start + 1_100), "due after the update interval");
        // The key that signs now is the one datanodes were given as next.
        let t1 = m.token(&b, BlockAccess::Read);
        assert_eq!(t1[..4], first[1].id.to_be_bytes());
        assert_eq!(
            BlockKeys::new(first.clone()).verify(&t1, 9, BlockAccess::Read, now_ms()),
            Ok(4)
        );
        // Tokens of the old key still verify.
        assert_eq!(m.verify(&t0, 9, BlockAccess::Read), Ok(4));
        assert_eq!(m.all().len(), 3);
        // Past its signing interval and the token lifetime, the first key is gone.
        m.roll_at(start + 2_200);
        m.roll_at(start + 3_300);
        assert!(m.all().iter().all(|k| k.id != first[0].id));
    }
}
