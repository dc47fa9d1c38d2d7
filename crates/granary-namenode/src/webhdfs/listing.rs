//! LISTSTATUS and LISTSTATUS_BATCH: directory listings.

use axum::response::Response;
use serde_json::json;

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
        let all = self.svc.whole_listing(id, path).await?;
        let entries: Vec<_> = all.iter().map(|e| web::file_status(e, &e.name)).collect();
        Ok(answer(json!({ "FileStatuses": { "FileStatus": entries } })))
    }

    /// LISTSTATUS_BATCH: one page after `startAfter`, and how many remain.
    pub(super) async fn list_batch(&self, id: &Identity, path: &str, p: &Params) -> WebResult<Response> {
        let st = self.stat(id, path).await?;
        if st.file_type != pb::FileType::Directory as i32 {
            return Ok(batch(&[web::file_status(&st, "")], 0));
        }
        let after = p.get("startafter").unwrap_or("");
        let page = self.listing(id, path, after).await?;
        let shown = page.entries.len() as u64;
        // The exact count is only known for a first page; later pages say
        // at least one remains, which is all clients test.
        let remaining = match (page.has_more, after) {
            (false, _) => 0,
            (true, "") => st.children_num.saturating_sub(shown).max(1),
            (true, _) => 1,
        };
        let entries: Vec<_> = page
            .entries
            .iter()
            .map(|e| web::file_status(e, &e.name))
            .collect();
        Ok(batch(&entries, remaining))
    }
}

/// HDFS's `DirectoryListing` answer to LISTSTATUS_BATCH.
fn batch(entries: &[web::FileStatusJson], remaining: u64) -> Response {
    answer(json!({ "DirectoryListing": {
        "partialListing": { "FileStatuses": { "FileStatus": entries } },
        "remainingEntries": remaining,
    }}))
}
