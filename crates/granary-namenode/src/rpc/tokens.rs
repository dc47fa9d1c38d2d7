//! The delegation token calls (crate::delegation): get, renew, cancel, and
//! checking a token a call comes with.

use std::sync::Arc;

use rand::Rng;

use super::mutating;
use crate::delegation::{self, MasterKey, TokenId};
use crate::error::{NnError, Result};
use crate::inode::now_ms;
use crate::permission::Caller;
use crate::state::NamenodeState;
use granary_proto as pb;

/// The token's identifier when this cluster signed it (live or not).
fn genuine(st: &NamenodeState, token: &str) -> Result<TokenId> {
    let (id, body, sig) = delegation::parse(token)?;
    let key = st
        .ns()
        .dt_keys()?
        .into_iter()
        .find(|k| k.id == id.key_id)
        .ok_or_else(|| {
            NnError::Unauthenticated(
                "delegation token signed with an unknown master key (expired, or another cluster's)".into(),
            )
        })?;
    if !delegation::signed(&key.key, &body, &sig) {
        return Err(NnError::Unauthenticated(
            "delegation token signature is invalid (forged or altered)".into(),
        ));
    }
    Ok(id)
}

/// The token's identifier when it is genuine, live and not cancelled.
pub fn verify(st: &NamenodeState, token: &str) -> Result<TokenId> {
    let id = genuine(st, token)?;
    let expiry = st.ns().dt_token_expiry(id.seq)?.ok_or_else(|| {
        NnError::Unauthenticated(format!(
            "delegation token {} of {} was cancelled (or expired)",
            id.seq, id.owner
        ))
    })?;
    let now = now_ms();
    if now > expiry.min(id.max_ms) {
        return Err(NnError::Unauthenticated(format!(
            "delegation token {} of {} expired at {} ms",
            id.seq,
            id.owner,
            expiry.min(id.max_ms)
        )));
    }
    Ok(id)
}

pub async fn get(
    st: &Arc<NamenodeState>,
    caller: Caller,
    by_token: bool,
    r: pb::GetDelegationTokenRequest,
) -> Result<pb::GetDelegationTokenResponse, tonic::Status> {
    if by_token {
        return Err(NnError::AccessDenied(
            "a delegation token (or a daemon acting for a user) cannot get a token: use the user's certificate".into(),
        )
        .into());
    }
    let s = st.clone();
    mutating(st, move |writes| {
        let cfg = s.config().delegation_tokens.clone();
        let now = now_ms();
        let keys = s.ns().dt_keys()?;
        let current = keys
            .iter()
            .filter(|k| k.created_ms + cfg.key_update_interval_ms as i64 > now && k.expiry_ms > now)
            .max_by_key(|k| k.created_ms)
            .cloned();
        let key = match current {
            Some(k) => k,
            None => {
                let mut rng = rand::thread_rng();
                let mut id: u32 = rng.r#gen();
                while keys.iter().any(|k| k.id == id) {
                    id = rng.r#gen();
                }
                let k = MasterKey {
                    id,
                    created_ms: now,
                    expiry_ms: now + (cfg.key_update_interval_ms + cfg.max_lifetime_ms) as i64,
                    key: granary_common::block_token::new_key(),
                };
                let expired: Vec<u32> = keys.iter().filter(|k| k.expiry_ms < now).map(|k| k.id).collect();
                writes.take(s.ns().dt_rotate(&k, &expired)?);
                k
            }
        };
        let renewer = if r.renewer.is_empty() {
            caller.user().to_string()
        } else {
            r.renewer.clone()
        };
        let id = TokenId {
            key_id: key.id,
            seq: rand::thread_rng().r#gen(),
            owner: caller.user().to_string(),
            renewer,
            issue_ms: now,
            max_ms: now + cfg.max_lifetime_ms as i64,
        };
        let token = delegation::token_string(&id, &key.key)?;
        let expiry = (now + cfg.renew_interval_ms as i64).min(id.max_ms);
        writes.take(s.ns().dt_set_token(id.seq, Some(expiry))?);
        // Tokens past their expiry are forgotten a few at a time.
        writes.take(s.ns().dt_sweep(now, 100)?);
        Ok(pb::GetDelegationTokenResponse {
            token,
            expiry_ms: expiry,
            max_date_ms: id.max_ms,
        })
    })
    .await
}

pub async fn renew(
    st: &Arc<NamenodeState>,
    caller: Caller,
    r: pb::RenewDelegationTokenRequest,
) -> Result<pb::RenewDelegationTokenResponse, tonic::Status> {
    let s = st.clone();
    mutating(st, move |writes| {
        let id = verify(&s, &r.token)?;
        if caller.user() != id.renewer {
            return Err(NnError::AccessDenied(format!(
                "{} tried to renew a token whose renewer is {}",
                caller.user(),
                id.renewer
            )));
        }
        let expiry = (now_ms() + s.config().delegation_tokens.renew_interval_ms as i64).min(id.max_ms);
        writes.take(s.ns().dt_set_token(id.seq, Some(expiry))?);
        Ok(pb::RenewDelegationTokenResponse { expiry_ms: expiry })
    })
    .await
}

pub async fn cancel(
    st: &Arc<NamenodeState>,
    caller: Caller,
    r: pb::CancelDelegationTokenRequest,
) -> Result<pb::CancelDelegationTokenResponse, tonic::Status> {
    let s = st.clone();
    mutating(st, move |writes| {
        let id = genuine(&s, &r.token)?;
        if caller.user() != id.owner && caller.user() != id.renewer && !caller.is_super {
            return Err(NnError::AccessDenied(format!(
                "{} may not cancel a token of {} (renewer {})",
                caller.user(),
                id.owner,
                id.renewer
            )));
        }
        writes.take(s.ns().dt_set_token(id.seq, None)?);
        Ok(pb::CancelDelegationTokenResponse {})
    })
    .await
}
