//! WebHDFS's snapshot operations, as HDFS serves them: ALLOWSNAPSHOT,
//! DISALLOWSNAPSHOT, CREATESNAPSHOT, RENAMESNAPSHOT, DELETESNAPSHOT,
//! GETSNAPSHOTDIFF and GETSNAPSHOTTABLEDIRECTORYLIST. Snapshots are read
//! through `DIR/.snapshot/NAME/...` with the ordinary read operations.

use axum::http::Method;
use axum::response::Response;
use serde_json::json;

use super::{WebHdfs, empty_ok, request};
use crate::rpc::authn::Authenticated;
use granary_common::webhdfs::{Params, WebResult, file_status};
use granary_proto as pb;
use granary_proto::client_protocol_server::ClientProtocol;

/// Whether `op` (with `method`) is one of these.
pub(super) fn is_snapshot_op(method: &Method, op: &str) -> bool {
    matches!(
        (method, op),
        (
            &Method::PUT,
            "ALLOWSNAPSHOT" | "DISALLOWSNAPSHOT" | "CREATESNAPSHOT" | "RENAMESNAPSHOT"
        ) | (&Method::DELETE, "DELETESNAPSHOT")
            | (&Method::GET, "GETSNAPSHOTDIFF" | "GETSNAPSHOTTABLEDIRECTORYLIST")
    )
}

fn diff_type(kind: i32) -> &'static str {
    match pb::SnapshotDiffKind::try_from(kind).unwrap_or(pb::SnapshotDiffKind::Modify) {
        pb::SnapshotDiffKind::Create => "CREATE",
        pb::SnapshotDiffKind::Delete => "DELETE",
        pb::SnapshotDiffKind::Rename => "RENAME",
        pb::SnapshotDiffKind::Modify | pb::SnapshotDiffKind::Unspecified => "MODIFY",
    }
}

impl WebHdfs {
    async fn change_snapshot(
        &self,
        id: &Authenticated,
        path: &str,
        action: pb::SnapshotAction,
        name: &str,
        new_name: &str,
    ) -> WebResult<String> {
        let req = pb::ChangeSnapshotRequest {
            path: path.to_string(),
            action: action as i32,
            name: name.to_string(),
            new_name: new_name.to_string(),
        };
        Ok(self
            .svc
            .change_snapshot(request(id, req))
            .await?
            .into_inner()
            .snapshot_path)
    }

    pub(super) async fn snapshot_op(
        &self,
        id: &Authenticated,
        op: &str,
        path: &str,
        p: &Params,
    ) -> WebResult<Response> {
        use pb::SnapshotAction as A;
        let name = p.get("snapshotname").unwrap_or_default();
        let old = p.get("oldsnapshotname").unwrap_or_default();
        match op {
            "ALLOWSNAPSHOT" => {
                self.change_snapshot(id, path, A::Allow, "", "").await?;
                Ok(empty_ok())
            }
            "DISALLOWSNAPSHOT" => {
                self.change_snapshot(id, path, A::Disallow, "", "").await?;
                Ok(empty_ok())
            }
            "CREATESNAPSHOT" => {
                let at = self.change_snapshot(id, path, A::Create, name, "").await?;
                Ok(super::json(json!({ "Path": at })))
            }
            "RENAMESNAPSHOT" => {
                self.change_snapshot(id, path, A::Rename, old, name).await?;
                Ok(empty_ok())
            }
            "DELETESNAPSHOT" => {
                self.change_snapshot(id, path, A::Delete, name, "").await?;
                Ok(empty_ok())
            }
            "GETSNAPSHOTDIFF" => {
                for (param, v) in [
                    ("oldsnapshotname", p.get("oldsnapshotname")),
                    ("snapshotname", p.get("snapshotname")),
                ] {
                    if v.is_none() {
                        return Err(granary_common::webhdfs::WebError::new(
                            granary_common::ErrorCode::InvalidArgument,
                            format!(
                                "GETSNAPSHOTDIFF needs {param} (a snapshot name, or . for the directory now)"
                            ),
                        ));
                    }
                }
                let req = pb::GetSnapshotDiffRequest {
                    path: path.to_string(),
                    from: old.to_string(),
                    to: name.to_string(),
                };
                let r = self.svc.get_snapshot_diff(request(id, req)).await?.into_inner();
                let list: Vec<_> = r
                    .entries
                    .iter()
                    .map(|e| match &e.target {
                        Some(t) => {
                            json!({ "sourcePath": e.path, "targetPath": t, "type": diff_type(e.kind) })
                        }
                        None => json!({ "sourcePath": e.path, "type": diff_type(e.kind) }),
                    })
                    .collect();
                Ok(super::json(json!({ "SnapshotDiffReport": {
                    "diffList": list,
                    "fromSnapshot": old,
                    "snapshotRoot": path,
                    "toSnapshot": name,
                }})))
            }
            _ => {
                let r = self
                    .svc
                    .get_snapshottable_dirs(request(id, pb::GetSnapshottableDirsRequest {}))
                    .await?
                    .into_inner();
                let list: Vec<_> = r
                    .dirs
                    .iter()
                    .map(|d| {
                        let status = d.status.clone().unwrap_or_default();
                        let (parent, name) = match d.path.rsplit_once('/') {
                            Some(("", n)) => ("/".to_string(), n.to_string()),
                            Some((p, n)) => (p.to_string(), n.to_string()),
                            None => ("/".to_string(), String::new()),
                        };
                        json!({
                            "dirStatus": file_status(&status, &name),
                            "parentFullPath": parent,
                            "snapshotNumber": d.snapshots,
                            "snapshotQuota": d.snapshot_limit,
                        })
                    })
                    .collect();
                Ok(super::json(json!({ "SnapshottableDirectoryList": list })))
            }
        }
    }
}
