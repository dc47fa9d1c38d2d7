//! What [`DfsClient`](crate::DfsClient) answers, in the client's own types:
//! plain structs built `From` the wire messages, with typed ids, real enums
//! instead of `i32`, and no `Option` around sub-messages the namenode always
//! sends. A program using the client never handles generated protobuf types;
//! the protocol can change under them without breaking it.

use std::collections::HashMap;
use std::fmt;

use granary_proto as pb;

/// An inode's id (HDFS `fileId`): it names a file across renames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u64);

/// A block's id; with a generation stamp it names one version of the block
/// ([`Block`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockId(pub u64);

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As HDFS names blocks (blk_1073741825) in fsck and logs.
        write!(f, "blk_{}", self.0)
    }
}

/// What `stat` shows about one file or directory. Times are milliseconds
/// since the Unix epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileStatus {
    /// The last path component ("" for the root).
    pub name: String,
    pub file_id: FileId,
    pub is_dir: bool,
    pub length: u64,
    pub replication: u32,
    pub block_size: u64,
    pub owner: String,
    pub group: String,
    /// POSIX mode bits (e.g. 0o755), no file-type bits.
    pub permission: u32,
    pub modification_time: i64,
    pub access_time: i64,
    /// Entries in a directory; 0 for files.
    pub children_num: u64,
    /// True while a writer holds the file open.
    pub under_construction: bool,
}

impl FileStatus {
    pub fn is_file(&self) -> bool {
        !self.is_dir
    }
}

impl From<pb::FileStatus> for FileStatus {
    fn from(s: pb::FileStatus) -> Self {
        Self {
            is_dir: s.is_dir(),
            name: s.name,
            file_id: FileId(s.file_id),
            length: s.length,
            replication: s.replication,
            block_size: s.block_size,
            owner: s.owner,
            group: s.group,
            permission: s.permission,
            modification_time: s.modification_time,
            access_time: s.access_time,
            children_num: s.children_num,
            under_construction: s.under_construction,
        }
    }
}

/// One page of a directory listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListingPage {
    pub entries: Vec<FileStatus>,
    /// True when more entries follow the last one.
    pub has_more: bool,
}

impl From<pb::GetListingResponse> for ListingPage {
    fn from(r: pb::GetListingResponse) -> Self {
        Self {
            entries: r.entries.into_iter().map(FileStatus::from).collect(),
            has_more: r.has_more,
        }
    }
}

/// Sizes and counts under a path (`du`, `count`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContentSummary {
    pub length: u64,
    pub file_count: u64,
    pub directory_count: u64,
    /// Bytes including all replicas.
    pub space_consumed: u64,
    /// The directory's name quota (files and directories, itself included).
    pub name_quota: Option<u64>,
    /// The directory's space quota (bytes, all replicas counted).
    pub space_quota: Option<u64>,
}

impl From<pb::GetContentSummaryResponse> for ContentSummary {
    fn from(r: pb::GetContentSummaryResponse) -> Self {
        Self {
            length: r.length,
            file_count: r.file_count,
            directory_count: r.directory_count,
            space_consumed: r.space_consumed,
            name_quota: r.name_quota,
            space_quota: r.space_quota,
        }
    }
}

/// What [`crate::DfsClient::set_quota`] does with one of a directory's quotas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaSetting {
    /// Leave it as it is.
    Keep,
    /// Remove it.
    Clear,
    /// Make it this limit: names (at least 1), or bytes with all replicas.
    Limit(u64),
}

impl QuotaSetting {
    pub(crate) fn to_wire(self) -> Option<i64> {
        match self {
            Self::Keep => None,
            Self::Clear => Some(-1),
            Self::Limit(n) => Some(i64::try_from(n).unwrap_or(i64::MAX)),
        }
    }
}

/// One version of a block: the generation stamp rises whenever its replica
/// set changes, so stale replicas can be told apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Block {
    pub id: BlockId,
    pub generation_stamp: u64,
    pub num_bytes: u64,
}

impl From<pb::ExtendedBlock> for Block {
    fn from(b: pb::ExtendedBlock) -> Self {
        Self {
            id: BlockId(b.block_id),
            generation_stamp: b.generation_stamp,
            num_bytes: b.num_bytes,
        }
    }
}

/// For requests built by hand over [`DfsClient::rpc`](crate::DfsClient::rpc).
impl From<Block> for pb::ExtendedBlock {
    fn from(b: Block) -> Self {
        Self {
            block_id: b.id.0,
            generation_stamp: b.generation_stamp,
            num_bytes: b.num_bytes,
        }
    }
}

/// Where a datanode is and how to reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DatanodeId {
    /// Stable identity, stored in every data dir of the datanode.
    pub uuid: String,
    pub hostname: String,
    /// host:port of its data transfer (gRPC) service.
    pub rpc_addr: String,
    /// host:port of its HTTP server (web UI, WebHDFS data).
    pub http_addr: String,
    pub rack: String,
}

impl From<pb::DatanodeId> for DatanodeId {
    fn from(d: pb::DatanodeId) -> Self {
        Self {
            uuid: d.uuid,
            hostname: d.hostname,
            rpc_addr: d.rpc_addr,
            http_addr: d.http_addr,
            rack: d.rack,
        }
    }
}

/// A datanode's state as the namenode sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DatanodeState {
    Live,
    /// Heartbeats are late; still used, last in line.
    Stale,
    Dead,
    Decommissioning,
    Decommissioned,
    /// A state this client does not know (a newer namenode).
    #[default]
    Unknown,
}

impl DatanodeState {
    /// As people read it ("live", "decommissioning", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Stale => "stale",
            Self::Dead => "dead",
            Self::Decommissioning => "decommissioning",
            Self::Decommissioned => "decommissioned",
            Self::Unknown => "unknown",
        }
    }

    /// Live or stale: it answers reads.
    pub fn is_alive(self) -> bool {
        matches!(self, Self::Live | Self::Stale)
    }
}

impl fmt::Display for DatanodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<i32> for DatanodeState {
    fn from(s: i32) -> Self {
        match pb::DatanodeState::try_from(s) {
            Ok(pb::DatanodeState::Live) => Self::Live,
            Ok(pb::DatanodeState::Stale) => Self::Stale,
            Ok(pb::DatanodeState::Dead) => Self::Dead,
            Ok(pb::DatanodeState::Decommissioning) => Self::Decommissioning,
            Ok(pb::DatanodeState::Decommissioned) => Self::Decommissioned,
            Ok(pb::DatanodeState::Unspecified) | Err(_) => Self::Unknown,
        }
    }
}

/// A datanode, its space and its state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatanodeInfo {
    pub id: DatanodeId,
    pub capacity: u64,
    pub dfs_used: u64,
    pub remaining: u64,
    pub xceiver_count: u32,
    pub last_heartbeat_ms: i64,
    pub state: DatanodeState,
}

impl From<pb::DatanodeInfo> for DatanodeInfo {
    fn from(d: pb::DatanodeInfo) -> Self {
        Self {
            id: d.id.map(DatanodeId::from).unwrap_or_default(),
            capacity: d.capacity,
            dfs_used: d.dfs_used,
            remaining: d.remaining,
            xceiver_count: d.xceiver_count,
            last_heartbeat_ms: d.last_heartbeat_ms,
            state: DatanodeState::from(d.state),
        }
    }
}

/// A block of a file and the datanodes holding it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocatedBlock {
    pub block: Block,
    /// Offset of the block's first byte in the file.
    pub offset: u64,
    /// Replica holders, closest to the caller first.
    pub locations: Vec<DatanodeInfo>,
    pub corrupt: bool,
}

impl From<pb::LocatedBlock> for LocatedBlock {
    fn from(b: pb::LocatedBlock) -> Self {
        Self {
            block: b.block.map(Block::from).unwrap_or_default(),
            offset: b.offset,
            locations: b.locations.into_iter().map(DatanodeInfo::from).collect(),
            corrupt: b.corrupt,
        }
    }
}

/// The blocks of (part of) a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockLocations {
    pub file_length: u64,
    pub blocks: Vec<LocatedBlock>,
    pub under_construction: bool,
    /// The block being written, when the file is under construction.
    pub last_block: Option<LocatedBlock>,
    pub is_last_block_complete: bool,
}

impl From<pb::LocatedBlocks> for BlockLocations {
    fn from(l: pb::LocatedBlocks) -> Self {
        Self {
            file_length: l.file_length,
            blocks: l.blocks.into_iter().map(LocatedBlock::from).collect(),
            under_construction: l.under_construction,
            last_block: l.last_block.map(LocatedBlock::from),
            is_last_block_complete: l.is_last_block_complete,
        }
    }
}

/// What [`DfsClient::safe_mode`](crate::DfsClient::safe_mode) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SafeModeAction {
    /// Only report.
    Get,
    Enter,
    Leave,
}

impl From<SafeModeAction> for pb::SafeModeAction {
    fn from(a: SafeModeAction) -> Self {
        match a {
            SafeModeAction::Get => Self::Get,
            SafeModeAction::Enter => Self::Enter,
            SafeModeAction::Leave => Self::Leave,
        }
    }
}

/// Whether the namenode is in safe mode, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SafeModeStatus {
    pub on: bool,
    /// Why it is on (or "safe mode is off").
    pub status: String,
    pub reported_blocks: u64,
    pub total_blocks: u64,
}

impl From<pb::SetSafeModeResponse> for SafeModeStatus {
    fn from(r: pb::SetSafeModeResponse) -> Self {
        Self {
            on: r.on,
            status: r.status,
            reported_blocks: r.reported_blocks,
            total_blocks: r.total_blocks,
        }
    }
}

/// What [`DfsClient::set_datanode_admin_state`](crate::DfsClient::set_datanode_admin_state) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatanodeAdminAction {
    /// Stop placing replicas there, copy its blocks elsewhere, then report
    /// it decommissioned.
    Decommission,
    /// Back to normal service.
    Recommission,
}

impl From<DatanodeAdminAction> for pb::DatanodeAdminAction {
    fn from(a: DatanodeAdminAction) -> Self {
        match a {
            DatanodeAdminAction::Decommission => Self::Decommission,
            DatanodeAdminAction::Recommission => Self::Recommission,
        }
    }
}

/// A checkpoint the namenode wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub dir: String,
    /// Bytes in the checkpoint (hard links count in full).
    pub bytes: u64,
    pub created_ms: i64,
}

impl From<pb::CheckpointResponse> for Checkpoint {
    fn from(r: pb::CheckpointResponse) -> Self {
        Self {
            dir: r.dir,
            bytes: r.bytes,
            created_ms: r.created_ms,
        }
    }
}

/// Block health across the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterHealth {
    /// Blocks with at least one reported replica.
    pub blocks_total: u64,
    /// Blocks with fewer live replicas than their file's replication.
    pub under_replicated: u64,
    /// Blocks with no live replica at all.
    pub missing: u64,
    /// Corrupt replicas reported (by readers and block scanners) since start.
    pub corrupt_replicas: u64,
    /// Copies scheduled and not yet confirmed.
    pub pending_replications: u64,
    pub safe_mode: bool,
}

impl From<pb::ClusterHealth> for ClusterHealth {
    fn from(h: pb::ClusterHealth) -> Self {
        Self {
            blocks_total: h.blocks_total,
            under_replicated: h.under_replicated,
            missing: h.missing,
            corrupt_replicas: h.corrupt_replicas,
            pending_replications: h.pending_replications,
            safe_mode: h.safe_mode,
        }
    }
}

/// Datanodes, their replica counts, and block health.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterReport {
    pub datanodes: Vec<DatanodeInfo>,
    /// Replicas each datanode holds, by uuid (from block reports).
    pub block_counts: HashMap<String, u64>,
    pub health: ClusterHealth,
}

impl From<pb::GetDatanodeReportResponse> for ClusterReport {
    fn from(r: pb::GetDatanodeReportResponse) -> Self {
        Self {
            datanodes: r.datanodes.into_iter().map(DatanodeInfo::from).collect(),
            block_counts: r.block_counts,
            health: r.health.map(ClusterHealth::from).unwrap_or_default(),
        }
    }
}

/// The namenode's defaults for new files and writers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerDefaults {
    pub block_size: u64,
    pub replication: u32,
    pub bytes_per_checksum: u32,
    pub write_packet_size: u32,
    pub cluster_id: String,
    /// Writers renew their lease at half this.
    pub lease_soft_limit_ms: u64,
    /// How long deleted paths stay in the trash; 0: off (rm deletes).
    pub trash_interval_ms: u64,
}

impl From<pb::GetServerDefaultsResponse> for ServerDefaults {
    fn from(r: pb::GetServerDefaultsResponse) -> Self {
        Self {
            block_size: r.block_size,
            replication: r.replication,
            bytes_per_checksum: r.bytes_per_checksum,
            write_packet_size: r.write_packet_size,
            cluster_id: r.cluster_id,
            lease_soft_limit_ms: r.lease_soft_limit_ms,
            trash_interval_ms: r.trash_interval_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_status_from_the_wire() {
        let st = FileStatus::from(pb::FileStatus {
            name: "d".into(),
            file_id: 7,
            file_type: pb::FileType::Directory as i32,
            permission: 0o755,
            ..Default::default()
        });
        assert!(st.is_dir && !st.is_file());
        assert_eq!((st.file_id, st.permission), (FileId(7), 0o755));
        let f = FileStatus::from(pb::FileStatus {
            file_type: pb::FileType::File as i32,
            ..Default::default()
        });
        assert!(f.is_file());
    }

    #[test]
    fn datanode_states_and_missing_submessages() {
        assert_eq!(
            DatanodeState::from(pb::DatanodeState::Stale as i32),
            DatanodeState::Stale
        );
        assert_eq!(DatanodeState::from(99), DatanodeState::Unknown);
        assert_eq!(DatanodeState::Decommissioning.to_string(), "decommissioning");
        let b = LocatedBlock::from(pb::LocatedBlock {
            block: Some(pb::ExtendedBlock {
                block_id: 5,
                generation_stamp: 2,
                num_bytes: 10,
            }),
            locations: vec![pb::DatanodeInfo::default()],
            ..Default::default()
        });
        assert_eq!(b.block.id, BlockId(5));
        assert_eq!(b.block.id.to_string(), "blk_5");
        assert_eq!(b.locations[0].id, DatanodeId::default());
        assert_eq!(
            ClusterReport::from(pb::GetDatanodeReportResponse::default()).health,
            ClusterHealth::default()
        );
    }
}
