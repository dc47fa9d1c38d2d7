//! Snapshot calls: allow, disallow, take, delete and rename snapshots, and
//! what the read side needs beyond `.snapshot` paths (diffs, the list of
//! snapshottable directories).

use tonic::{Request, Response, Status};

use super::{ClientService, extended};
use crate::error::NnError;
use crate::namespace::{DiffKind, retry, snapshot::MAX_SNAPSHOTS, snapshot_path};
use crate::rpc::{blocking, mutating};
use granary_proto as pb;

impl ClientService {
    pub(super) async fn change_snapshot_call(
        &self,
        req: Request<pb::ChangeSnapshotRequest>,
    ) -> Result<Response<pb::ChangeSnapshotResponse>, Status> {
        self.state.check_writable()?;
        let (st, caller) = self.ctx(&req).await?;
        let call = retry::call_of(req.metadata());
        let r = req.into_inner();
        let action = pb::SnapshotAction::try_from(r.action).unwrap_or(pb::SnapshotAction::Unspecified);
        let snapshot_path = mutating(&self.state, move |writes| {
            let ns = st.ns();
            match action {
                pb::SnapshotAction::Allow => writes.take(ns.allow_snapshot(&caller, &r.path)?),
                pb::SnapshotAction::Disallow => writes.take(ns.disallow_snapshot(&caller, &r.path)?),
                // A retried create, delete or rename (its first try done,
                // its answer lost) is answered from the retry cache, not
                // refused or done twice.
                pb::SnapshotAction::Create => {
                    if let Some(done) = writes.take(ns.recorded(call.as_ref())?) {
                        return match ns.snap_state().name_of(done.value) {
                            Some(name) => Ok(snapshot_path(&r.path, name)),
                            None => Err(NnError::Snapshot(format!(
                                "the snapshot of {} this call took has been deleted since",
                                r.path
                            ))),
                        };
                    }
                    let name = (!r.name.is_empty()).then_some(r.name.as_str());
                    let made =
                        retry::recording(call.as_ref(), 0, || ns.create_snapshot(&caller, &r.path, name))?;
                    return Ok(writes.take(made));
                }
                pb::SnapshotAction::Delete => {
                    if writes.take(ns.recorded(call.as_ref())?).is_none() {
                        let freed = retry::recording(call.as_ref(), 0, || {
                            ns.delete_snapshot(&caller, &r.path, &r.name)
                        })?;
                        let freed = writes.take(freed);
                        st.remove_deleted(writes, extended(freed));
                    }
                }
                pb::SnapshotAction::Rename => {
                    if writes.take(ns.recorded(call.as_ref())?).is_none() {
                        let done = retry::recording(call.as_ref(), 0, || {
                            ns.rename_snapshot(&caller, &r.path, &r.name, &r.new_name)
                        })?;
                        writes.take(done);
                    }
                }
                pb::SnapshotAction::Unspecified => {
                    return Err(NnError::InvalidArgument(format!(
                        "snapshot action {} is not one of allow, disallow, create, delete, rename",
                        r.action
                    )));
                }
            }
            Ok(String::new())
        })
        .await?;
        Ok(Response::new(pb::ChangeSnapshotResponse { snapshot_path }))
    }

    pub(super) async fn get_snapshot_diff_call(
        &self,
        req: Request<pb::GetSnapshotDiffRequest>,
    ) -> Result<Response<pb::GetSnapshotDiffResponse>, Status> {
        let (st, caller) = self.ctx(&req).await?;
        let r = req.into_inner();
        let entries = blocking(move |_| st.ns().snapshot_diff(&caller, &r.path, &r.from, &r.to)).await?;
        Ok(Response::new(pb::GetSnapshotDiffResponse {
            entries: entries
                .into_iter()
                .map(|e| pb::SnapshotDiffEntry {
                    kind: match e.kind {
                        DiffKind::Modify => pb::SnapshotDiffKind::Modify,
                        DiffKind::Create => pb::SnapshotDiffKind::Create,
                        DiffKind::Delete => pb::SnapshotDiffKind::Delete,
                        DiffKind::Rename => pb::SnapshotDiffKind::Rename,
                    } as i32,
                    path: e.path,
                    target: e.target,
                })
                .collect(),
        }))
    }

    pub(super) async fn get_snapshottable_dirs_call(
        &self,
        req: Request<pb::GetSnapshottableDirsRequest>,
    ) -> Result<Response<pb::GetSnapshottableDirsResponse>, Status> {
        let (st, caller) = self.ctx(&req).await?;
        let dirs = blocking(move |_| st.ns().snapshottable_dirs(&caller)).await?;
        Ok(Response::new(pb::GetSnapshottableDirsResponse {
            dirs: dirs
                .into_iter()
                .map(|d| pb::SnapshottableDir {
                    path: d.path,
                    status: Some(d.inode.to_status()),
                    snapshots: d.snapshots as u32,
                    snapshot_limit: MAX_SNAPSHOTS as u32,
                })
                .collect(),
        }))
    }
}
