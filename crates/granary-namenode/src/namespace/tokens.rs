//! The delegation tokens' records in the metadata store (crate::delegation):
//! master keys (`dt_key/ID` → created, expiry, key) and live tokens
//! (`dt_token/SEQ` → expiry). Changes are namespace changes: durable and,
//! in a group, replicated like any other.

use rocksdb::{Direction, IteratorMode};

use super::{Namespace, Written};
use crate::delegation::MasterKey;
use crate::error::Result;
use crate::inode::CF_META;

const KEY: &[u8] = b"dt_key/";
const TOKEN: &[u8] = b"dt_token/";

impl Namespace {
    /// Every master key held.
    pub fn dt_keys(&self) -> Result<Vec<MasterKey>> {
        let mut keys = Vec::new();
        let from = IteratorMode::From(KEY, Direction::Forward);
        for item in self.db.iterator_cf(self.cf(CF_META)?, from) {
            let (k, v) = item?;
            let Some(id) = k.strip_prefix(KEY) else { break };
            let Ok(id) = <[u8; 4]>::try_from(id) else { continue };
            if let Some(m) = MasterKey::decode(u32::from_be_bytes(id), &v) {
                keys.push(m);
            }
        }
        Ok(keys)
    }

    /// Adds `key` and forgets the keys in `expired`.
    pub fn dt_rotate(&self, key: &MasterKey, expired: &[u32]) -> Result<Written<()>> {
        self.mutate_marked(|batch| {
            batch.put_cf(CF_META, [KEY, &key.id.to_be_bytes()[..]].concat(), key.encode());
            for id in expired {
                batch.delete_cf(CF_META, [KEY, &id.to_be_bytes()[..]].concat());
            }
            Ok(((), false))
        })
    }

    /// A live token's expiry; None when cancelled or never issued here.
    pub fn dt_token_expiry(&self, seq: u64) -> Result<Option<i64>> {
        let key = [TOKEN, &seq.to_be_bytes()[..]].concat();
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_META)?, key)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes))
    }

    /// Sets a token's expiry (issue, renew), or forgets it (`None`: cancel).
    pub fn dt_set_token(&self, seq: u64, expiry: Option<i64>) -> Result<Written<()>> {
        let key = [TOKEN, &seq.to_be_bytes()[..]].concat();
        self.mutate_marked(|batch| {
            match expiry {
                Some(e) => batch.put_cf(CF_META, key, e.to_be_bytes()),
                None => batch.delete_cf(CF_META, key),
            }
            Ok(((), false))
        })
    }

    /// Forgets the tokens whose expiry passed before `now_ms` among `limit`
    /// looked at, starting at a random place (each call costs the same,
    /// however many tokens live).
    pub fn dt_sweep(&self, now_ms: i64, limit: usize) -> Result<Written<()>> {
        let mut gone = Vec::new();
        let start = [TOKEN, &rand::random::<u64>().to_be_bytes()[..]].concat();
        let from = IteratorMode::From(&start, Direction::Forward);
        for (seen, item) in self.db.iterator_cf(self.cf(CF_META)?, from).enumerate() {
            let (k, v) = item?;
            if !k.starts_with(TOKEN) || seen >= limit {
                break;
            }
            let expiry = <[u8; 8]>::try_from(v.as_ref())
                .map(i64::from_be_bytes)
                .unwrap_or(0);
            if expiry < now_ms {
                gone.push(k.to_vec());
            }
        }
        self.mutate_marked(|batch| {
            for k in gone {
                batch.delete_cf(CF_META, k);
            }
            Ok(((), false))
        })
    }
}
