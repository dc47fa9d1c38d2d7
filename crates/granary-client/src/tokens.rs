//! Delegation tokens (HDFS's `getDelegationToken` and friends): a user with
//! a certificate gets one; a job acting for the user carries it
//! ([`ClientOptions::token`](crate::ClientOptions::token)).

use granary_proto as pb;

use crate::{DfsClient, Result};

/// A delegation token and how long it lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationToken {
    /// Opaque, URL-safe text.
    pub token: String,
    /// Until when it works unless renewed (ms since the epoch).
    pub expiry_ms: i64,
    /// When it stops working, renewed or not.
    pub max_date_ms: i64,
}

impl DfsClient {
    /// A token for this client's user that `renewer` may renew (empty: the
    /// user itself).
    pub async fn get_delegation_token(&self, renewer: &str) -> Result<DelegationToken> {
        let req = pb::GetDelegationTokenRequest {
            renewer: renewer.to_string(),
        };
        let r = nn_call!(self, get_delegation_token, req).await?;
        Ok(DelegationToken {
            token: r.token,
            expiry_ms: r.expiry_ms,
            max_date_ms: r.max_date_ms,
        })
    }

    /// Renews `token` (as its renewer); its new expiry.
    pub async fn renew_delegation_token(&self, token: &str) -> Result<i64> {
        let req = pb::RenewDelegationTokenRequest {
            token: token.to_string(),
        };
        Ok(nn_call!(self, renew_delegation_token, req).await?.expiry_ms)
    }

    /// Cancels `token` (as its owner or renewer): it works no more.
    pub async fn cancel_delegation_token(&self, token: &str) -> Result<()> {
        let req = pb::CancelDelegationTokenRequest {
            token: token.to_string(),
        };
        nn_call!(self, cancel_delegation_token, req).await?;
        Ok(())
    }
}
