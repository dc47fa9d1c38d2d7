//! Granary's messages as HDFS's and back: file statuses, located blocks,
//! datanodes.

use granary_common::net::{host_of, port_of};
use granary_proto as pb;
use granary_proto::hadoop::common as rpc;
use granary_proto::hadoop::hdfs;

use crate::state::NamenodeState;

/// Granary's block for HDFS's (the pool is the cluster's; not checked).
pub(super) fn block(b: &hdfs::ExtendedBlockProto) -> pb::ExtendedBlock {
    pb::ExtendedBlock::from(b)
}

/// A datanode's data-transfer address (`ip:xferPort`), as Granary names
/// datanodes in excluded and existing lists.
pub(super) fn xfer_addr(d: &hdfs::DatanodeInfoProto) -> String {
    format!("{}:{}", d.id.ip_addr, d.id.xfer_port)
}

pub(super) fn child(dir: &str, name: &str) -> String {
    match dir.ends_with('/') {
        true => format!("{dir}{name}"),
        false => format!("{dir}/{name}"),
    }
}

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// HDFS's status of a file or directory; `path` is empty for a status of
/// the path asked for, the entry's name in a listing.
pub(super) fn file_status(
    s: &pb::FileStatus,
    path: Vec<u8>,
    locations: Option<hdfs::LocatedBlocksProto>,
) -> hdfs::HdfsFileStatusProto {
    let dir = s.is_dir();
    let file_type = match dir {
        true => hdfs::hdfs_file_status_proto::FileType::IsDir,
        false => hdfs::hdfs_file_status_proto::FileType::IsFile,
    };
    hdfs::HdfsFileStatusProto {
        file_type: file_type as i32,
        path,
        length: if dir { 0 } else { s.length },
        permission: hdfs::FsPermissionProto { perm: s.permission },
        owner: s.owner.clone(),
        group: s.group.clone(),
        modification_time: s.modification_time.max(0) as u64,
        access_time: s.access_time.max(0) as u64,
        block_replication: Some(if dir { 0 } else { s.replication }),
        blocksize: Some(if dir { 0 } else { s.block_size }),
        locations,
        file_id: Some(s.file_id),
        children_num: Some(if dir {
            i32::try_from(s.children_num).unwrap_or(i32::MAX)
        } else {
            0
        }),
        storage_policy: Some(0),
        flags: Some(0),
        ..Default::default()
    }
}

/// HDFS's block locations of a file: datanodes by the addresses HDFS
/// clients reach them at, block tokens in HDFS's token message.
pub(super) fn located_blocks(st: &NamenodeState, b: &pb::LocatedBlocks) -> hdfs::LocatedBlocksProto {
    let pool = st.cluster_id();
    let block = |lb: &pb::LocatedBlock| located_block(pool, lb);
    hdfs::LocatedBlocksProto {
        file_length: b.file_length,
        blocks: b.blocks.iter().map(block).collect(),
        under_construction: b.under_construction,
        last_block: b.last_block.as_ref().map(block),
        is_last_block_complete: b.is_last_block_complete,
        ..Default::default()
    }
}

pub(super) fn located_block(pool: &str, lb: &pb::LocatedBlock) -> hdfs::LocatedBlockProto {
    let blk = lb.block.unwrap_or_default();
    let locs: Vec<_> = lb.locations.iter().map(datanode_info).collect();
    hdfs::LocatedBlockProto {
        b: hdfs::ExtendedBlockProto {
            pool_id: pool.to_string(),
            block_id: blk.block_id,
            generation_stamp: blk.generation_stamp,
            num_bytes: Some(blk.num_bytes),
        },
        offset: lb.offset,
        storage_types: vec![hdfs::StorageTypeProto::Disk as i32; locs.len()],
        storage_i_ds: lb
            .locations
            .iter()
            .map(|d| format!("DS-{}", d.id.as_ref().map_or("", |i| i.uuid.as_str())))
            .collect(),
        is_cached: vec![false; locs.len()],
        locs,
        corrupt: lb.corrupt,
        block_token: rpc::TokenProto {
            identifier: lb.access_token.clone(),
            password: Vec::new(),
            kind: "HDFS_BLOCK_TOKEN".into(),
            service: String::new(),
        },
        ..Default::default()
    }
}

pub(super) fn datanode_info(d: &pb::DatanodeInfo) -> hdfs::DatanodeInfoProto {
    let id = d.id.clone().unwrap_or_default();
    let admin = match pb::DatanodeState::try_from(d.state) {
        Ok(pb::DatanodeState::Decommissioning) => {
            hdfs::datanode_info_proto::AdminState::DecommissionInprogress
        }
        Ok(pb::DatanodeState::Decommissioned) => hdfs::datanode_info_proto::AdminState::Decommissioned,
        _ => hdfs::datanode_info_proto::AdminState::Normal,
    };
    hdfs::DatanodeInfoProto {
        id: hdfs::DatanodeIdProto {
            ip_addr: host_of(&id.rpc_addr).to_string(),
            host_name: if id.hostname.is_empty() {
                host_of(&id.rpc_addr).to_string()
            } else {
                id.hostname.clone()
            },
            datanode_uuid: id.uuid.clone(),
            xfer_port: port_of(&id.rpc_addr).into(),
            info_port: port_of(&id.http_addr).into(),
            ipc_port: port_of(&id.rpc_addr).into(),
            info_secure_port: Some(0),
        },
        capacity: Some(d.capacity),
        dfs_used: Some(d.dfs_used),
        remaining: Some(d.remaining),
        last_update: Some(d.last_heartbeat_ms.max(0) as u64),
        xceiver_count: Some(d.xceiver_count),
        location: Some(if id.rack.is_empty() {
            "/default-rack".into()
        } else {
            id.rack.clone()
        }),
        admin_state: Some(admin as i32),
        ..Default::default()
    }
}
