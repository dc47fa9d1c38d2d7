//! Block access tokens: the namenode signs (block, access, expiry) with a key
//! it hands to datanodes at registration, so a datanode only accepts writes
//! and reads of blocks the namenode allocated or located for that caller.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const BODY_LEN: usize = 8 + 8 + 1 + 8;
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
    #[error("block access token signature is invalid (namenode restarted or token forged)")]
    BadSignature,
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

pub fn issue(
    key: &[u8],
    block_id: u64,
    generation_stamp: u64,
    access: BlockAccess,
    expiry_ms: i64,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(TOKEN_LEN);
    body.extend_from_slice(&block_id.to_be_bytes());
    body.extend_from_slice(&generation_stamp.to_be_bytes());
    body.push(access as u8);
    body.extend_from_slice(&expiry_ms.to_be_bytes());
    let mut m = mac(key);
    m.update(&body);
    body.extend_from_slice(&m.finalize().into_bytes());
    body
}

/// Checks a token for `block_id` and `access` at time `now_ms`; returns the
/// generation stamp it was issued for.
pub fn verify(
    key: &[u8],
    token: &[u8],
    block_id: u64,
    access: BlockAccess,
    now_ms: i64,
) -> Result<u64, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    if token.len() != TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let (body, sig) = token.split_at(BODY_LEN);
    let mut m = mac(key);
    m.update(body);
    m.verify_slice(sig).map_err(|_| TokenError::BadSignature)?;
    let u64_at = |i: usize| u64::from_be_bytes(body[i..i + 8].try_into().unwrap_or([0; 8]));
    let token_block = u64_at(0);
    let gs = u64_at(8);
    let mode = body[16];
    let expiry = u64_at(17) as i64;
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
    Ok(gs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_grant_exactly_what_they_say() {
        let key = new_key();
        let t = issue(&key, 7, 100, BlockAccess::Write, 1_000);
        assert_eq!(verify(&key, &t, 7, BlockAccess::Write, 999), Ok(100));
        assert_eq!(
            verify(&key, &t, 7, BlockAccess::Read, 999),
            Err(TokenError::WrongAccess(BlockAccess::Read))
        );
        assert!(matches!(
            verify(&key, &t, 8, BlockAccess::Write, 999),
            Err(TokenError::WrongBlock { .. })
        ));
        assert_eq!(
            verify(&key, &t, 7, BlockAccess::Write, 1_001),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify(&new_key(), &t, 7, BlockAccess::Write, 0),
            Err(TokenError::BadSignature)
        );
        let mut forged = t.clone();
        forged[7] ^= 1;
        assert_eq!(
            verify(&key, &forged, 6, BlockAccess::Write, 0),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify(&key, &[], 7, BlockAccess::Write, 0),
            Err(TokenError::Missing)
        );
        assert_eq!(
            verify(&key, &[1, 2], 7, BlockAccess::Write, 0),
            Err(TokenError::Malformed)
        );
    }
}
