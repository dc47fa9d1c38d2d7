//! Block access tokens: the namenode signs (block, generation stamp, access,
//! expiry) with its current block key and hands its keys to authenticated
//! datanodes, so a datanode only accepts writes and reads of blocks the
//! namenode allocated or located for that caller. Keys are rolled (HDFS:
//! every 10 hours) and an old key is kept until the last token it signed
//! has expired; a token names the key that signed it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use granary_proto as pb;

type HmacSha256 = Hmac<Sha256>;

/// key id, block id, generation stamp, access, expiry, user tag.
const BODY_LEN: usize = 4 + 8 + 8 + 1 + 8 + 8;
const TOKEN_LEN: usize = BODY_LEN + 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockAccess {
    Read = 1,
    Write = 2,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("no block access token presented")]
    Missing,
    #[error("malformed block access token")]
    Malformed,
    #[error("block access token is for block {token_block}, not {block}")]
    WrongBlock { token_block: u64, block: u64 },
    #[error("block access token does not grant {0:?} access")]
    WrongAccess(BlockAccess),
    #[error("block access token expired")]
    Expired,
    #[error(
        "block access token was signed with key {0}, which this datanode does not hold (expired, or from another namenode)"
    )]
    UnknownKey(u32),
    #[error("block access token signature is invalid (forged or altered)")]
    BadSignature,
    #[error("block access token was issued to another user than {0}")]
    WrongUser(String),
}

/// Who a token was issued to, as it carries it: the first 8 bytes of the
/// user name's SHA-256; zeros for a daemon's token (re-replication).
fn user_tag(user: &str) -> [u8; 8] {
    use sha2::Digest;
    if user.is_empty() {
        return [0; 8];
    }
    let d = Sha256::digest(user.as_bytes());
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&d[..8]);
    tag
}

/// A fresh random signing key.
pub fn new_key() -> Vec<u8> {
    use rand::RngCore;
    let mut k = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut k);
    k
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("hmac takes any key length"))
}

/// A token for `block_id` at `generation_stamp`, signed with `key`, for
/// any holder (a daemon's).
pub fn issue(
    key: &pb::BlockKey,
    block_id: u64,
    generation_stamp: u64,
    access: BlockAccess,
    expiry_ms: i64,
) -> Vec<u8> {
    issue_for(key, block_id, generation_stamp, access, expiry_ms, "")
}

/// A token as [`issue`] makes, issued to `user`: a datanode that knows who
/// presents it (a user's certificate) refuses it from anyone else.
pub fn issue_for(
    key: &pb::BlockKey,
    block_id: u64,
    generation_stamp: u64,
    access: BlockAccess,
    expiry_ms: i64,
    user: &str,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(TOKEN_LEN);
    body.extend_from_slice(&key.id.to_be_bytes());
    body.extend_from_slice(&block_id.to_be_bytes());
    body.extend_from_slice(&generation_stamp.to_be_bytes());
    body.push(access as u8);
    body.extend_from_slice(&expiry_ms.to_be_bytes());
    body.extend_from_slice(&user_tag(user));
    let mut m = mac(&key.key);
    m.update(&body);
    body.extend_from_slice(&m.finalize().into_bytes());
    body
}

/// The block keys a datanode (or the namenode) checks tokens with.
#[derive(Debug, Clone, Default)]
pub struct BlockKeys {
    keys: Vec<pb::BlockKey>,
}

impl BlockKeys {
    pub fn new(keys: Vec<pb::BlockKey>) -> Self {
        Self { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &[pb::BlockKey] {
        &self.keys
    }

    /// Checks a token for `block_id` and `access` at time `now_ms`; returns
    /// the generation stamp it was issued for.
    pub fn verify(
        &self,
        token: &[u8],
        block_id: u64,
        access: BlockAccess,
        now_ms: i64,
    ) -> Result<u64, TokenError> {
        self.verify_for(token, block_id, access, now_ms, None)
    }

    /// [`verify`](Self::verify), and when the presenter is known to be
    /// `user` (its certificate says so), that the token was issued to it.
    pub fn verify_for(
        &self,
        token: &[u8],
        block_id: u64,
        access: BlockAccess,
        now_ms: i64,
        user: Option<&str>,
    ) -> Result<u64, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() != TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (body, sig) = token.split_at(BODY_LEN);
        let key_id = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        let key = self
            .keys
            .iter()
            .find(|k| k.id == key_id && k.expiry_ms >= now_ms)
            .ok_or(TokenError::UnknownKey(key_id))?;
        let mut m = mac(&key.key);
        m.update(body);
        m.verify_slice(sig).map_err(|_| TokenError::BadSignature)?;
        let u64_at = |i: usize| u64::from_be_bytes(body[i..i + 8].try_into().unwrap_or([0; 8]));
        let token_block = u64_at(4);
        let gs = u64_at(12);
        let mode = body[20];
        let expiry = u64_at(21) as i64;
        if token_block != block_id {
            return Err(TokenError::WrongBlock {
                token_block,
                block: block_id,
            });
        }
        if mode != access as u8 {
            return Err(TokenError::WrongAccess(access));
        }
        if expiry < now_ms {
            return Err(TokenError::Expired);
        }
        if let Some(user) = user
            && body[29..37] != user_tag(user)
        {
            return Err(TokenError::WrongUser(user.to_string()));
        }
        Ok(gs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32, expiry_ms: i64) -> pb::BlockKey {
        pb::BlockKey {
            id,
            key: new_key(),
            expiry_ms,
        }
    }

    /// A token issued to alice is refused from bob (when the datanode knows
    /// who presents it), and so is a daemon's token; from an unknown
    /// presenter it is checked as before.
    #[test]
    fn a_users_token_is_refused_from_anyone_else() {
        let k = key(1, 10_000);
        let keys = BlockKeys::new(vec![k.clone()]);
        let t = issue_for(&k, 7, 100, BlockAccess::Read, 1_000, "alice");
        assert_eq!(
            keys.verify_for(&t, 7, BlockAccess::Read, 0, Some("alice")),
            Ok(100)
        );
        assert_eq!(
            keys.verify_for(&t, 7, BlockAccess::Read, 0, Some("bob")),
            Err(TokenError::WrongUser("bob".into()))
        );
        assert_eq!(keys.verify_for(&t, 7, BlockAccess::Read, 0, None), Ok(100));
        let daemons = issue(&k, 7, 100, BlockAccess::Read, 1_000);
        assert!(
            keys.verify_for(&daemons, 7, BlockAccess::Read, 0, Some("alice"))
                .is_err()
        );
        // The user is under the signature: changing it forges the token.
        let mut forged = t.clone();
        forged[BODY_LEN - 1] ^= 1;
        assert_eq!(
            keys.verify_for(&forged, 7, BlockAccess::Read, 0, Some("alice")),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tokens_grant_exactly_what_they_say() {
        let k = key(1, 10_000);
        let keys = BlockKeys::new(vec![k.clone()]);
        let t = issue(&k, 7, 100, BlockAccess::Write, 1_000);
        assert_eq!(keys.verify(&t, 7, BlockAccess::Write, 999), Ok(100));
        assert_eq!(
            keys.verify(&t, 7, BlockAccess::Read, 999),
            Err(TokenError::WrongAccess(BlockAccess::Read))
        );
        assert!(matches!(
            keys.verify(&t, 8, BlockAccess::Write, 999),
            Err(TokenError::WrongBlock { .. })
        ));
        assert_eq!(
            keys.verify(&t, 7, BlockAccess::Write, 1_001),
            Err(TokenError::Expired)
        );
        // Another key under the same id: a forged or foreign token.
        let other = BlockKeys::new(vec![key(1, 10_000)]);
        assert_eq!(
            other.verify(&t, 7, BlockAccess::Write, 0),
            Err(TokenError::BadSignature)
        );
        let mut forged = t.clone();
        forged[11] ^= 1;
        assert_eq!(
            keys.verify(&forged, 6, BlockAccess::Write, 0),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            keys.verify(&[], 7, BlockAccess::Write, 0),
            Err(TokenError::Missing)
        );
        assert_eq!(
            keys.verify(&[1, 2], 7, BlockAccess::Write, 0),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn old_keys_verify_until_they_expire_and_unknown_keys_never() {
        let (old, new) = (key(1, 5_000), key(2, 50_000));
        let keys = BlockKeys::new(vec![old.clone(), new.clone()]);
        let t_old = issue(&old, 7, 1, BlockAccess::Read, 4_000);
        let t_new = issue(&new, 7, 1, BlockAccess::Read, 40_000);
        assert_eq!(keys.verify(&t_old, 7, BlockAccess::Read, 3_000), Ok(1));
        assert_eq!(keys.verify(&t_new, 7, BlockAccess::Read, 3_000), Ok(1));
        // Past the old key's expiry its tokens are refused even if the token says otherwise.
        assert_eq!(
            keys.verify(&t_old, 7, BlockAccess::Read, 5_001),
            Err(TokenError::UnknownKey(1))
        );
        let stranger = key(9, 50_000);
        let t = issue(&stranger, 7, 1, BlockAccess::Read, 40_000);
        assert_eq!(
            keys.verify(&t, 7, BlockAccess::Read, 0),
            Err(TokenError::UnknownKey(9))
        );
    }
}
