//! Block locations: GETFILEBLOCKLOCATIONS (Hadoop's `BlockLocation`s) and
//! GET_BLOCK_LOCATIONS (HDFS's `LocatedBlocks` JSON).

use axum::response::Response;
use serde_json::{Value, json};

use super::request;
use super::{WebHdfs, json as answer};
use crate::rpc::authn::Authenticated;
use granary_common::ErrorCode;
use granary_common::net::{host_of, port_of};
use granary_common::webhdfs::{Params, WebError, WebResult};
use granary_proto as pb;
use granary_proto::client_protocol_server::ClientProtocol;

impl WebHdfs {
    async fn blocks(&self, id: &Authenticated, path: &str, p: &Params) -> WebResult<pb::LocatedBlocks> {
        let req = pb::GetBlockLocationsRequest {
            path: path.into(),
            offset: p.u64("offset")?.unwrap_or(0),
            length: p.u64("length")?.unwrap_or(0),
        };
        self.svc
            .get_block_locations(request(id, req))
            .await?
            .into_inner()
            .blocks
            .ok_or_else(|| WebError::new(ErrorCode::Internal, "no block list in the answer"))
    }

    pub(super) async fn file_block_locations(
        &self,
        id: &Authenticated,
        path: &str,
        p: &Params,
    ) -> WebResult<Response> {
        let lb = self.blocks(id, path, p).await?;
        let locs: Vec<Value> = lb
            .blocks
            .iter()
            .map(|b| {
                let ids: Vec<&pb::DatanodeId> = b.locations.iter().filter_map(|l| l.id.as_ref()).collect();
                json!({
                    "cachedHosts": [],
                    "corrupt": b.corrupt,
                    "hosts": ids.iter().map(|i| host_of(&i.rpc_addr)).collect::<Vec<_>>(),
                    "length": b.block.map(|x| x.num_bytes).unwrap_or(0),
                    "names": ids.iter().map(|i| i.rpc_addr.clone()).collect::<Vec<_>>(),
                    "offset": b.offset,
                    "storageIds": ids.iter().map(|i| format!("DS-{}", i.uuid)).collect::<Vec<_>>(),
                    "storageTypes": ids.iter().map(|_| "DISK").collect::<Vec<_>>(),
                    "topologyPaths": ids.iter().map(|i| format!("{}/{}", i.rack, i.rpc_addr)).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(answer(json!({ "BlockLocations": { "BlockLocation": locs } })))
    }

    pub(super) async fn located_blocks(
        &self,
        id: &Authenticated,
        path: &str,
        p: &Params,
    ) -> WebResult<Response> {
        let lb = self.blocks(id, path, p).await?;
        let cluster = self.st.cluster_id().to_string();
        let one = |b: &pb::LocatedBlock| {
            let blk = b.block.unwrap_or_default();
            json!({
                "block": {
                    "blockId": blk.block_id,
                    "blockPoolId": cluster,
                    "generationStamp": blk.generation_stamp,
                    "numBytes": blk.num_bytes,
                },
                "blockToken": { "urlString": "" },
                "cachedLocations": [],
                "isCorrupt": b.corrupt,
                "locations": b.locations.iter().map(datanode_json).collect::<Vec<_>>(),
                "startOffset": b.offset,
                "storageTypes": b.locations.iter().map(|_| "DISK").collect::<Vec<_>>(),
            })
        };
        Ok(answer(json!({ "LocatedBlocks": {
            "fileLength": lb.file_length,
            "isLastBlockComplete": lb.is_last_block_complete,
            "isUnderConstruction": lb.under_construction,
            "lastLocatedBlock": lb.last_block.as_ref().or(lb.blocks.last()).map(one),
            "locatedBlocks": lb.blocks.iter().map(one).collect::<Vec<_>>(),
        }})))
    }
}

fn datanode_json(d: &pb::DatanodeInfo) -> Value {
    let id = d.id.clone().unwrap_or_default();
    json!({
        "adminState": match pb::DatanodeState::try_from(d.state) {
            Ok(pb::DatanodeState::Decommissioning) => "DECOMMISSION_INPROGRESS",
            Ok(pb::DatanodeState::Decommissioned) => "DECOMMISSIONED",
            _ => "NORMAL",
        },
        "capacity": d.capacity,
        "dfsUsed": d.dfs_used,
        "hostName": id.hostname,
        "infoPort": port_of(&id.http_addr),
        "ipAddr": host_of(&id.rpc_addr),
        "lastUpdate": d.last_heartbeat_ms,
        "name": id.rpc_addr,
        "networkLocation": id.rack,
        "remaining": d.remaining,
        "storageID": format!("DS-{}", id.uuid),
        "xceiverCount": d.xceiver_count,
        "xferPort": port_of(&id.rpc_addr),
    })
}
