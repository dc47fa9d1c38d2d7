//! Delegation tokens, as HDFS has them: a user with a certificate asks for
//! a token; a job carries it to machines without that certificate and acts
//! as the user with it (`authorization: Bearer TOKEN` on gRPC,
//! `delegation=TOKEN` on WebHDFS). A token names its owner, its renewer and
//! its maximum date; it works until its expiry, which the renewer pushes
//! forward (up to the maximum), or until it is cancelled.
//!
//! A token is the hex of its identifier followed by an HMAC-SHA256 of it
//! with a master key. Master keys and the tokens' expiries live in the
//! namespace's metadata (they are namespace changes: durable, replicated to
//! every namenode of a group), so tokens survive restarts and failovers.
//! A new master key is made when the newest is older than
//! `key_update_interval_ms`; keys are forgotten once every token they
//! signed is past its maximum date.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{NnError, Result};

/// `[delegation_tokens]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DelegationConfig {
    /// A new master key this often (HDFS: 1 day).
    pub key_update_interval_ms: u64,
    /// A token's expiry, at issue and at each renewal (HDFS: 1 day).
    pub renew_interval_ms: u64,
    /// A token's life, renewed or not (HDFS: 7 days).
    pub max_lifetime_ms: u64,
}

impl Default for DelegationConfig {
    fn default() -> Self {
        Self {
            key_update_interval_ms: 86_400_000,
            renew_interval_ms: 86_400_000,
            max_lifetime_ms: 7 * 86_400_000,
        }
    }
}

impl DelegationConfig {
    pub fn validate(&self) -> std::result::Result<(), granary_common::config::ConfigError> {
        if self.key_update_interval_ms == 0 || self.renew_interval_ms == 0 || self.max_lifetime_ms == 0 {
            return Err(granary_common::config::ConfigError::Invalid(
                "[delegation_tokens] intervals must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// What a token says (its signed part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenId {
    pub key_id: u32,
    pub seq: u64,
    pub owner: String,
    pub renewer: String,
    pub issue_ms: i64,
    pub max_ms: i64,
}

const VERSION: u8 = 1;
/// The longest owner or renewer name a token carries.
const MAX_NAME: usize = 255;

impl TokenId {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(40 + self.owner.len() + self.renewer.len());
        b.push(VERSION);
        b.extend_from_slice(&self.key_id.to_be_bytes());
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.issue_ms.to_be_bytes());
        b.extend_from_slice(&self.max_ms.to_be_bytes());
        for s in [&self.owner, &self.renewer] {
            b.push(s.len() as u8);
            b.extend_from_slice(s.as_bytes());
        }
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let (&v, rest) = b.split_first()?;
        if v != VERSION || rest.len() < 28 {
            return None;
        }
        let u = |r: &[u8]| -> Option<u64> { Some(u64::from_be_bytes(r.get(..8)?.try_into().ok()?)) };
        let key_id = u32::from_be_bytes(rest[..4].try_into().ok()?);
        let seq = u(&rest[4..])?;
        let issue_ms = u(&rest[12..])? as i64;
        let max_ms = u(&rest[20..])? as i64;
        let mut at = 28;
        let mut names = Vec::new();
        for _ in 0..2 {
            let n = *rest.get(at)? as usize;
            let s = std::str::from_utf8(rest.get(at + 1..at + 1 + n)?).ok()?;
            names.push(s.to_string());
            at += 1 + n;
        }
        if at != rest.len() {
            return None;
        }
        let renewer = names.pop()?;
        let owner = names.pop()?;
        Some(Self {
            key_id,
            seq,
            owner,
            renewer,
            issue_ms,
            max_ms,
        })
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("hmac takes any key length"))
}

/// The token text for `id`, signed with `key`.
pub fn token_string(id: &TokenId, key: &[u8]) -> Result<String> {
    if id.owner.len() > MAX_NAME || id.renewer.len() > MAX_NAME {
        return Err(NnError::InvalidArgument(format!(
            "a delegation token names users of at most {MAX_NAME} bytes"
        )));
    }
    let mut b = id.encode();
    let mut m = mac(key);
    m.update(&b);
    b.extend_from_slice(&m.finalize().into_bytes());
    Ok(granary_common::daemon_auth::hex(&b))
}

/// A token's identifier and the bytes its signature covers, unchecked.
pub fn parse(token: &str) -> Result<(TokenId, Vec<u8>, Vec<u8>)> {
    let bad = || NnError::Unauthenticated("malformed delegation token".into());
    if !token.len().is_multiple_of(2) || token.len() > 4096 {
        return Err(bad());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<std::result::Result<Vec<u8>, _>>()
        .map_err(|_| bad())?;
    if bytes.len() < 32 {
        return Err(bad());
    }
    let (body, sig) = bytes.split_at(bytes.len() - 32);
    let id = TokenId::decode(body).ok_or_else(bad)?;
    Ok((id, body.to_vec(), sig.to_vec()))
}

/// Whether `sig` is `body`'s signature with `key` (constant time).
pub fn signed(key: &[u8], body: &[u8], sig: &[u8]) -> bool {
    let mut m = mac(key);
    m.update(body);
    m.verify_slice(sig).is_ok()
}

/// A master key as stored: when it was made, until when it is kept, the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKey {
    pub id: u32,
    pub created_ms: i64,
    pub expiry_ms: i64,
    pub key: Vec<u8>,
}

impl MasterKey {
    pub fn encode(&self) -> Vec<u8> {
        [
            &self.created_ms.to_be_bytes()[..],
            &self.expiry_ms.to_be_bytes()[..],
            &self.key,
        ]
        .concat()
    }

    pub fn decode(id: u32, v: &[u8]) -> Option<Self> {
        if v.len() < 16 + 16 {
            return None;
        }
        Some(Self {
            id,
            created_ms: i64::from_be_bytes(v[..8].try_into().ok()?),
            expiry_ms: i64::from_be_bytes(v[8..16].try_into().ok()?),
            key: v[16..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_lies_are_caught() {
        let id = TokenId {
            key_id: 7,
            seq: 42,
            owner: "alice".into(),
            renewer: "yarn".into(),
            issue_ms: 1000,
            max_ms: 9000,
        };
        let t = token_string(&id, b"k1").unwrap();
        let (back, body, sig) = parse(&t).unwrap();
        assert_eq!(back, id);
        assert!(signed(b"k1", &body, &sig));
        assert!(!signed(b"k2", &body, &sig), "another key");
        // A changed owner breaks the signature.
        let other = token_string(
            &TokenId {
                owner: "bob".into(),
                ..id.clone()
            },
            b"k1",
        )
        .unwrap();
        let (_, body2, _) = parse(&other).unwrap();
        assert!(!signed(b"k1", &body2, &sig));
        for bad in ["", "zz", "abc", &"00".repeat(40), &t[..t.len() - 2]] {
            if let Ok((_, b, s)) = parse(bad) {
                assert!(!signed(b"k1", &b, &s), "{bad}");
            }
        }
        assert!(parse(&"ab".repeat(3000)).is_err(), "too long");
    }
}
