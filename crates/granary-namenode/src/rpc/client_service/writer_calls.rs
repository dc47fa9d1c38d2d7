//! Calls a writer makes about the block it is writing, beyond allocating
//! and committing it: adding datanodes to a pipeline that lost one, and
//! recording how far the block is flushed.

use tonic::{Request, Response, Status};

use super::ClientService;
use crate::error::NnError;
use crate::rpc::{blocking, mutating};
use granary_common::block_token::BlockAccess;
use granary_proto as pb;

/// The most datanodes a writer may ask to add at once (HDFS adds one per
/// failure; a pipeline is never longer than the maximum replication).
const MAX_ADDITIONAL: u32 = 16;

impl ClientService {
    pub(super) async fn get_additional_datanode_call(
        &self,
        req: Request<pb::GetAdditionalDatanodeRequest>,
    ) -> Result<Response<pb::GetAdditionalDatanodeResponse>, Status> {
        self.state.check_writable()?;
        let (st, caller) = self.ctx(&req).await?;
        let writer_host = granary_common::tls::ConnInfo::remote_of(&req).map(|a| a.ip().to_string());
        let r = req.into_inner();
        let block = r.block.ok_or_else(|| {
            Status::from(NnError::InvalidArgument(
                "getAdditionalDatanode needs a block".into(),
            ))
        })?;
        if r.count == 0 || r.count > MAX_ADDITIONAL {
            return Err(NnError::InvalidArgument(format!(
                "getAdditionalDatanode: {} datanodes asked for, 1 to {MAX_ADDITIONAL} may be",
                r.count
            ))
            .into());
        }
        let located = blocking(move |_| {
            let file = st
                .ns()
                .file_for_writer(&caller, &r.path, r.file_id, &r.client_name)?;
            st.check_not_recovering(&r.path, file.id)?;
            // Only for the block being written. The writer may name an older
            // stamp than the namespace's: Hadoop's client takes a new stamp
            // for each recovery attempt but keeps its own until one works.
            // The token is for the stamp it names, as its replicas have.
            let offset: u64 = file.blocks.iter().rev().skip(1).map(|b| b.num_bytes).sum();
            match file.blocks.last() {
                Some(b)
                    if b.id == block.block_id
                        && !b.committed
                        && b.generation_stamp >= block.generation_stamp => {}
                _ => {
                    return Err(NnError::InvalidArgument(format!(
                        "{}: block {} at generation stamp {} is not the block being written",
                        r.path, block.block_id, block.generation_stamp
                    )));
                }
            }
            let nodes = st.additional_targets(
                file.block_size,
                &r.existing,
                &r.excluded,
                r.count as usize,
                writer_host,
            )?;
            tracing::info!(
                block_id = block.block_id,
                path = %r.path,
                existing = r.existing.len(),
                added = nodes.len() - r.existing.len(),
                "datanodes added to a write pipeline"
            );
            let access_token = st.token(&block, BlockAccess::Write, caller.user());
            Ok(pb::LocatedBlock {
                block: Some(block),
                offset,
                locations: nodes,
                corrupt: false,
                access_token,
            })
        })
        .await?;
        Ok(Response::new(pb::GetAdditionalDatanodeResponse {
            block: Some(located),
        }))
    }

    pub(super) async fn fsync_call(
        &self,
        req: Request<pb::FsyncRequest>,
    ) -> Result<Response<pb::FsyncResponse>, Status> {
        self.state.check_writable()?;
        let (st, caller) = self.ctx(&req).await?;
        let r = req.into_inner();
        mutating(&self.state, move |writes| {
            st.check_not_recovering(&r.path, r.file_id)?;
            writes.take(
                st.ns()
                    .fsync(&caller, &r.path, r.file_id, &r.client_name, r.last_block_length)?,
            );
            Ok(())
        })
        .await?;
        Ok(Response::new(pb::FsyncResponse {}))
    }
}
