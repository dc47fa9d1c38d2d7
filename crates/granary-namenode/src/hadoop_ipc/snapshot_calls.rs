//! Hadoop's snapshot calls (allowSnapshot, disallowSnapshot,
//! createSnapshot, renameSnapshot, deleteSnapshot: what `hdfs dfs
//! -createSnapshot` and `hdfs dfsadmin -allowSnapshot` send). Snapshots are
//! read through `DIR/.snapshot/NAME` paths with the ordinary calls.

use bytes::Bytes;

use super::calls::{Call, CallError, CallResult, reply};
use super::frame::next;
use granary_proto as pb;
use granary_proto::client_protocol_server::ClientProtocol;
use granary_proto::hadoop::hdfs;

/// Whether `method` is one of these.
pub(super) fn is_snapshot_call(method: &str) -> bool {
    matches!(
        method,
        "allowSnapshot" | "disallowSnapshot" | "createSnapshot" | "renameSnapshot" | "deleteSnapshot"
    )
}

impl Call<'_> {
    async fn change_snapshot(
        &self,
        path: String,
        action: pb::SnapshotAction,
        name: String,
        new_name: String,
    ) -> Result<String, CallError> {
        let req = pb::ChangeSnapshotRequest {
            path,
            action: action as i32,
            name,
            new_name,
        };
        Ok(self
            .svc
            .change_snapshot(self.req(req))
            .await?
            .into_inner()
            .snapshot_path)
    }

    pub(super) async fn snapshot_call(&self, method: &str, b: &mut Bytes) -> CallResult {
        use pb::SnapshotAction as A;
        match method {
            "allowSnapshot" => {
                let r: hdfs::AllowSnapshotRequestProto = next(b, method)?;
                self.change_snapshot(r.snapshot_root, A::Allow, String::new(), String::new())
                    .await?;
                reply(hdfs::AllowSnapshotResponseProto {})
            }
            "disallowSnapshot" => {
                let r: hdfs::DisallowSnapshotRequestProto = next(b, method)?;
                self.change_snapshot(r.snapshot_root, A::Disallow, String::new(), String::new())
                    .await?;
                reply(hdfs::DisallowSnapshotResponseProto {})
            }
            "createSnapshot" => {
                let r: hdfs::CreateSnapshotRequestProto = next(b, method)?;
                let snapshot_path = self
                    .change_snapshot(
                        r.snapshot_root,
                        A::Create,
                        r.snapshot_name.unwrap_or_default(),
                        String::new(),
                    )
                    .await?;
                reply(hdfs::CreateSnapshotResponseProto { snapshot_path })
            }
            "renameSnapshot" => {
                let r: hdfs::RenameSnapshotRequestProto = next(b, method)?;
                self.change_snapshot(
                    r.snapshot_root,
                    A::Rename,
                    r.snapshot_old_name,
                    r.snapshot_new_name,
                )
                .await?;
                reply(hdfs::RenameSnapshotResponseProto {})
            }
            _ => {
                let r: hdfs::DeleteSnapshotRequestProto = next(b, method)?;
                self.change_snapshot(r.snapshot_root, A::Delete, r.snapshot_name, String::new())
                    .await?;
                reply(hdfs::DeleteSnapshotResponseProto {})
            }
        }
    }
}
