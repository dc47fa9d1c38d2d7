//! WebHDFS's delegation token calls (GETDELEGATIONTOKEN,
//! RENEWDELEGATIONTOKEN, CANCELDELEGATIONTOKEN) and `delegation=` on any
//! call, as HDFS serves them (crate::delegation).

use super::request;
use super::{WebHdfs, empty_ok};
use crate::rpc::authn::Authenticated;
use axum::response::Response;
use granary_common::ErrorCode;
use granary_common::webhdfs::{Params, WebError, WebResult};
use granary_proto as pb;
use granary_proto::client_protocol_server::ClientProtocol;

impl WebHdfs {
    /// The owner of the `delegation=` token, when the call carries one (it
    /// must be genuine and live).
    pub(super) fn token_user(&self, p: &Params) -> WebResult<Option<String>> {
        let Some(token) = p.get("delegation") else {
            return Ok(None);
        };
        if p.get("doas").is_some() {
            return Err(WebError::new(
                ErrorCode::AccessControl,
                "doas cannot be used with a delegation token",
            ));
        }
        let id = crate::rpc::tokens::verify(&self.st, token).map_err(tonic::Status::from)?;
        Ok(Some(id.owner))
    }

    pub(super) async fn get_token(&self, id: &Authenticated, p: &Params) -> WebResult<Response> {
        if p.get("delegation").is_some() {
            return Err(WebError::new(
                ErrorCode::AccessControl,
                "a delegation token cannot be used to get another: use a certificate",
            ));
        }
        let req = pb::GetDelegationTokenRequest {
            renewer: p.get("renewer").unwrap_or_default().to_string(),
        };
        let t = self
            .svc
            .get_delegation_token(request(id, req))
            .await?
            .into_inner();
        Ok(super::json(
            serde_json::json!({ "Token": { "urlString": t.token } }),
        ))
    }

    pub(super) async fn renew_token(&self, id: &Authenticated, p: &Params) -> WebResult<Response> {
        if p.get("delegation").is_some() {
            return Err(WebError::new(
                ErrorCode::AccessControl,
                "a delegation token cannot be renewed by a call made with a token: use a certificate",
            ));
        }
        let req = pb::RenewDelegationTokenRequest {
            token: token_param(p)?,
        };
        let r = self
            .svc
            .renew_delegation_token(request(id, req))
            .await?
            .into_inner();
        Ok(super::json(serde_json::json!({ "long": r.expiry_ms })))
    }

    pub(super) async fn cancel_token(&self, id: &Authenticated, p: &Params) -> WebResult<Response> {
        let req = pb::CancelDelegationTokenRequest {
            token: token_param(p)?,
        };
        self.svc.cancel_delegation_token(request(id, req)).await?;
        Ok(empty_ok())
    }
}

fn token_param(p: &Params) -> WebResult<String> {
    p.get("token")
        .map(str::to_string)
        .ok_or_else(|| WebError::new(ErrorCode::InvalidArgument, "token= is missing"))
}
