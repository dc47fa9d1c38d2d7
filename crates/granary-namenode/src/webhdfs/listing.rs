//! LISTSTATUS and LISTSTATUS_BATCH: directory listings.

use axum::response::Response;
use serde_json::{Value, json};

use super::{WebHdfs, json as answer};
use crate::rpc::client_service::as_user as request;
use granary_common::identity::Identity;
use granary_common::webhdfs::{self as web, Params, WebResult};
use granary_proto as pb;
use granary_proto::client_protocol_server::ClientProtocol;

impl WebHdfs {
    async fn listing(
        &self,
        id: &Identity,
        path: &str,
        start_after: &str,
    ) -> WebResult<pb::GetListingResponse> {
        let req = pb::GetListingRequest {
            path: path.into(),
            start_after: start_after.into(),
            limit: 0,
        };
        Ok(self.svc.get_listing(request(id, req)).await?.into_inner())
    }

    pub(super) async fn list_all(&self, id: &Identity, path: &str) -> WebResult<Response> {
        let st = self.stat(id, path).await?;
        if st.file_type != pb::FileType::Directory as i32 {
            return Ok(answer(
                json!({ "FileStatuses": { "FileStatus": [web::file_status(&st, "")] } }),
            ));
        }
        let all: Vec<Value> = self
            .svc
            .whole_listing(id, path)
            .await?
            .iter()
            .map(|e| web::file_status(e, &e.name))
            .collect();
        Ok(answer(json!({ "FileStatuses": { "FileStatus": all } })))
    }

    pub(super) async fn list_batch(&self, id: &Identity, path: &str, p: &Params) -> WebResult<Response> {
        let st = self.stat(id, path).await?;
        let (entries, remaining): (Vec<Value>, u64) = if st.file_type != pb::FileType::Directory as i32 {
            (vec![web::file_status(&st, "")], 0)
        } else {
            let page = self.listing(id, path, p.get("startafter").unwrap_or("")).await?;
            let shown = page.entries.len() as u64;
            // The exact count is only known for a first page; later pages say
            // at least one remains, which is all clients test.
            let remaining = match (page.has_more, p.get("startafter")) {
                (false, _) => 0,
                (true, None | Some("")) => st.children_num.saturating_sub(shown).max(1),
                (true, Some(_)) => 1,
            };
            (
                page.entries
                    .iter()
                    .map(|e| web::file_status(e, &e.name))
                    .collect(),
                remaining,
            )
        };
        Ok(answer(json!({ "DirectoryListing": {
            "partialListing": { "FileStatuses": { "FileStatus": entries } },
            "remainingEntries": remaining,
        }})))
    }
}
