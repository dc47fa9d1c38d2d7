//! LISTSTATUS and LISTSTATUS_BATCH: directory listings, one page at a time.
//!
//! LISTSTATUS streams its JSON as HDFS does (its namenode writes the
//! listing to the response as it reads it): `{"FileStatuses":{"FileStatus":[`,
//! then each page of `listing_limit` entries as it is fetched, through the
//! same paged `GetListing` (and so the same permission checks) as gRPC
//! clients, then `]}}`. The next page is fetched only when the previous one
//! was handed to the connection, so a listing holds one page, whatever the
//! directory's size. Errors found before the first byte (no such path, no
//! permission) are answered with their status and `RemoteException`; one
//! after the answer began (the directory deleted or its permission changed
//! between pages) can only cut the answer short, which the client sees as
//! truncated JSON (and, over HTTP/1.1, as a chunked body without its end).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::request;
use super::{WebHdfs, json as answer};
use crate::rpc::audited::Audited;
use crate::rpc::authn::Authenticated;
use granary_common::ErrorCode;
use granary_common::webhdfs::{self as web, Params, WebError, WebResult};
use granary_proto as pb;
use granary_proto::client_protocol_server::ClientProtocol;

/// LISTSTATUS answers of more than one page streamed at once. Each holds a
/// page (and what the connection buffers of it, about 1 MiB in all), and
/// reads the namespace until its client has taken every page; the limit
/// keeps many of them, on many connections, from adding up to gigabytes
/// and from taking every blocking thread. Single-page listings and
/// LISTSTATUS_BATCH need no slot.
pub(super) const MAX_LISTING_STREAMS: usize = 64;

/// How long a LISTSTATUS waits for a stream slot before it is answered
/// 503 RetriableException.
const STREAM_SLOT_WAIT: Duration = Duration::from_secs(30);

const OPEN: &[u8] = br#"{"FileStatuses":{"FileStatus":["#;
const CLOSE: &[u8] = b"]}}";

/// The slots of [`MAX_LISTING_STREAMS`].
pub(super) fn stream_slots() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_LISTING_STREAMS))
}

impl WebHdfs {
    /// LISTSTATUS: every entry, streamed page by page; a file lists itself.
    pub(super) async fn list_status(&self, id: &Authenticated, path: &str) -> WebResult<Response> {
        let st = self.stat(id, path).await?;
        if !st.is_dir() {
            return Ok(answer(
                json!({ "FileStatuses": { "FileStatus": [web::file_status(&st, "")] } }),
            ));
        }
        // A slot before the first page, so waiting listings hold no page.
        let slot = if st.children_num > u64::from(self.st.config().namespace.listing_limit) {
            Some(stream_slot(&self.listing_streams, STREAM_SLOT_WAIT, path).await?)
        } else {
            None
        };
        let first = page(&self.svc, id, path, "").await?;
        let after = next_after(&first);
        let first = serialize_page(&first.entries, Part::First, after.is_none())?;
        let Some(after) = after else {
            return Ok(([(header::CONTENT_TYPE, "application/json")], first).into_response());
        };
        let (svc, id, path) = (self.svc.clone(), id.clone(), path.to_string());
        let pages = {
            let (id, path) = (id.clone(), path.clone());
            move |after: String| {
                let (svc, id, path) = (svc.clone(), id.clone(), path.clone());
                async move { page(&svc, &id, &path, &after).await }
            }
        };
        let body = rest_of_listing(first, after, pages, slot).map_err(move |e| {
            tracing::warn!(path = %path, user = %id.user.user, error = %e, "liststatus cut short after it began streaming: the client gets truncated json");
            std::io::Error::other(e.to_string())
        });
        Ok((
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(body),
        )
            .into_response())
    }

    /// LISTSTATUS_BATCH: one page after `startAfter`, and how many remain.
    pub(super) async fn list_batch(&self, id: &Authenticated, path: &str, p: &Params) -> WebResult<Response> {
        let st = self.stat(id, path).await?;
        if !st.is_dir() {
            return Ok(batch(&[web::file_status(&st, "")], 0));
        }
        let after = p.get("startafter").unwrap_or("");
        let page = page(&self.svc, id, path, after).await?;
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

/// A slot to stream a listing in, waiting up to `wait` for one.
async fn stream_slot(slots: &Arc<Semaphore>, wait: Duration, path: &str) -> WebResult<OwnedSemaphorePermit> {
    match tokio::time::timeout(wait, slots.clone().acquire_owned()).await {
        Ok(Ok(slot)) => Ok(slot),
        Ok(Err(_closed)) => Err(WebError::new(ErrorCode::Internal, "listing slots are closed")),
        Err(_elapsed) => {
            tracing::warn!(path = %path, limit = MAX_LISTING_STREAMS, "liststatus refused: every stream slot stayed busy");
            Err(WebError::new(
                ErrorCode::Unavailable,
                format!(
                    "{MAX_LISTING_STREAMS} directory listings are being streamed; retry, or page with LISTSTATUS_BATCH"
                ),
            ))
        }
    }
}

/// One page of `path`'s entries after `start_after`, as `id` may see them
/// (gRPC's `GetListing`, with its checks).
async fn page(
    svc: &Audited,
    id: &Authenticated,
    path: &str,
    start_after: &str,
) -> WebResult<pb::GetListingResponse> {
    let req = pb::GetListingRequest {
        path: path.into(),
        start_after: start_after.into(),
        limit: 0,
    };
    Ok(svc.get_listing(request(id, req)).await?.into_inner())
}

/// Where the next page starts, or `None` when this page was the last.
fn next_after(page: &pb::GetListingResponse) -> Option<String> {
    if !page.has_more {
        return None;
    }
    page.entries.last().map(|e| e.name.clone())
}

/// Where a page's JSON goes in the answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Part {
    /// Opens the answer.
    First,
    /// Follows entries already sent.
    Later,
}

/// A page's entries as JSON array elements, with the answer's opening or a
/// separating comma before them and, for the last page, its closing after.
/// Written straight from the statuses (no intermediate `Value`s), which
/// keeps a page cheap enough for the async thread.
fn serialize_page(entries: &[pb::FileStatus], part: Part, last: bool) -> WebResult<Bytes> {
    let mut out = Vec::with_capacity(entries.len() * 320 + OPEN.len() + CLOSE.len());
    if part == Part::First {
        out.extend_from_slice(OPEN);
    }
    for (i, e) in entries.iter().enumerate() {
        if i > 0 || part == Part::Later {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, &web::file_status(e, &e.name))
            .map_err(|e| WebError::new(ErrorCode::Internal, format!("listing json: {e}")))?;
    }
    if last {
        out.extend_from_slice(CLOSE);
    }
    Ok(Bytes::from(out))
}

/// The answer's `first` bytes (the opening and the first, non-empty page),
/// then every page from `pages(start_after)` as the connection asks for
/// more, the last one closing the JSON. Ends with the error of a page that
/// fails. `slot` is held until the last page is made, the stream fails or
/// the client goes away (the stream is dropped).
fn rest_of_listing<F, Fut>(
    first: Bytes,
    after: String,
    pages: F,
    slot: Option<OwnedSemaphorePermit>,
) -> impl Stream<Item = WebResult<Bytes>>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = WebResult<pb::GetListingResponse>>,
{
    let rest = stream::try_unfold(
        (pages, Some(after), slot),
        |(mut pages, after, slot)| async move {
            let Some(after) = after else {
                return Ok(None);
            };
            let page = pages(after).await?;
            let next = next_after(&page);
            let bytes = serialize_page(&page.entries, Part::Later, next.is_none())?;
            Ok(Some((bytes, (pages, next, slot))))
        },
    );
    stream::once(async { Ok(first) }).chain(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn entry(name: &str) -> pb::FileStatus {
        pb::FileStatus {
            name: name.into(),
            file_type: pb::FileType::Directory as i32,
            ..Default::default()
        }
    }

    fn listing(names: &[&str], has_more: bool) -> pb::GetListingResponse {
        pb::GetListingResponse {
            entries: names.iter().map(|n| entry(n)).collect(),
            has_more,
        }
    }

    /// Pages after the first as `pages` says, recording what was asked.
    async fn body(pages: Vec<WebResult<pb::GetListingResponse>>) -> (Vec<u8>, Option<WebError>, Vec<String>) {
        let first = serialize_page(&[entry("a"), entry("b")], Part::First, false).unwrap();
        let asked = std::sync::Mutex::new(Vec::new());
        let mut pages = pages.into_iter();
        let slots = Arc::new(Semaphore::new(1));
        let slot = slots.clone().try_acquire_owned().unwrap();
        let s = rest_of_listing(
            first,
            "b".into(),
            |after| {
                asked.lock().unwrap().push(after);
                let p = pages.next().expect("no page asked for after the last");
                async move { p }
            },
            Some(slot),
        );
        let mut s = std::pin::pin!(s);
        let (mut out, mut err) = (Vec::new(), None);
        while let Some(chunk) = s.next().await {
            match chunk {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => err = Some(e),
            }
        }
        assert_eq!(
            slots.available_permits(),
            1,
            "an ended stream gives its slot back"
        );
        let asked = asked.lock().unwrap().clone();
        (out, err, asked)
    }

    fn names(body: &[u8]) -> Vec<String> {
        let v: Value = serde_json::from_slice(body).unwrap();
        v["FileStatuses"]["FileStatus"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["pathSuffix"].as_str().unwrap().to_string())
            .collect()
    }

    #[tokio::test]
    async fn pages_join_into_one_json_answer() {
        let (out, err, asked) = body(vec![Ok(listing(&["c", "d"], true)), Ok(listing(&["e"], false))]).await;
        assert!(err.is_none());
        assert_eq!(names(&out), ["a", "b", "c", "d", "e"]);
        assert_eq!(asked, ["b", "d"]);
        // An empty last page (its entries deleted meanwhile) still closes it.
        let (out, _, _) = body(vec![Ok(listing(&[], false))]).await;
        assert_eq!(names(&out), ["a", "b"]);
        // A page that says "more" but has nothing ends the listing, not a loop.
        let (out, _, asked) = body(vec![Ok(listing(&[], true))]).await;
        assert_eq!(names(&out), ["a", "b"]);
        assert_eq!(asked.len(), 1);
    }

    #[tokio::test]
    async fn a_failing_page_ends_the_stream_with_its_error() {
        let gone = WebError::new(ErrorCode::FileNotFound, "File does not exist: /d");
        let (out, err, _) = body(vec![Ok(listing(&["c"], true)), Err(gone)]).await;
        assert_eq!(err.map(|e| e.code), Some(ErrorCode::FileNotFound));
        assert!(serde_json::from_slice::<Value>(&out).is_err(), "truncated");
        assert!(
            out.ends_with(br#""DIRECTORY"}"#),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }

    #[test]
    fn a_single_page_is_whole() {
        let one = serialize_page(&[], Part::First, true).unwrap();
        assert_eq!(&one[..], br#"{"FileStatuses":{"FileStatus":[]}}"#);
    }

    #[tokio::test]
    async fn a_listing_waits_for_a_slot_then_is_told_to_retry() {
        let slots = Arc::new(Semaphore::new(1));
        let held = stream_slot(&slots, Duration::from_millis(10), "/d")
            .await
            .unwrap();
        let e = stream_slot(&slots, Duration::from_millis(10), "/d")
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert!(e.message.contains("LISTSTATUS_BATCH"), "{}", e.message);
        drop(held);
        let _again = stream_slot(&slots, Duration::from_millis(10), "/d")
            .await
            .unwrap();
    }
}
