//! The records the namespace keeps in RocksDB and how they are keyed.
//!
//! Column families:
//! - `inodes`:  inode id (u64 BE) -> [`Inode`]
//! - `dirents`: parent id (u64 BE) ++ name bytes -> child inode id (u64 BE);
//!   a directory's entries are one contiguous, name-ordered key range
//! - `blocks`:  block id (u64 BE) -> owning inode id (u64 BE) ++ generation stamp (u64 BE)
//!   (++ committed length (u64 BE) once the block is committed)
//! - `meta`:    id counters and the layout version
//! - `snapshots`: snapshots and the inode and directory-entry values they
//!   keep (see `namespace::snapshot`)

use granary_proto as pb;

pub const ROOT_ID: u64 = 1;

pub const CF_INODES: &str = "inodes";
pub const CF_DIRENTS: &str = "dirents";
pub const CF_BLOCKS: &str = "blocks";
pub const CF_META: &str = "meta";
pub const CF_SNAPSHOTS: &str = "snapshots";
/// In this order: a Raft log entry names a column family by its index.
pub const ALL_CFS: [&str; 5] = [CF_INODES, CF_DIRENTS, CF_BLOCKS, CF_META, CF_SNAPSHOTS];

pub const META_NEXT_INODE: &[u8] = b"next_inode_id";
pub const META_NEXT_BLOCK: &[u8] = b"next_block_id";
pub const META_NEXT_GS: &[u8] = b"next_generation_stamp";
/// Followed by a datanode uuid: an operator took that node out of service.
pub const META_OUT_OF_SERVICE: &[u8] = b"out_of_service/";
/// Followed by a datanode uuid: SHA-256 of the node key that uuid is bound to.
pub const META_DATANODE_KEY: &[u8] = b"datanode_key/";
/// How many directories have a quota (u64 BE): while none has, mutations
/// skip quota accounting altogether.
pub const META_QUOTA_DIRS: &[u8] = b"quota_dirs";

#[derive(Clone, PartialEq, prost::Message)]
pub struct Inode {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub parent: u64,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(bool, tag = "4")]
    pub is_dir: bool,
    #[prost(string, tag = "5")]
    pub owner: String,
    #[prost(string, tag = "6")]
    pub group: String,
    #[prost(uint32, tag = "7")]
    pub mode: u32,
    #[prost(int64, tag = "8")]
    pub mtime: i64,
    #[prost(int64, tag = "9")]
    pub atime: i64,
    /// Number of directory entries (directories only).
    #[prost(uint64, tag = "10")]
    pub children: u64,
    #[prost(uint32, tag = "11")]
    pub replication: u32,
    #[prost(uint64, tag = "12")]
    pub block_size: u64,
    #[prost(message, repeated, tag = "13")]
    pub blocks: Vec<BlockRecord>,
    /// Set while the file is open for writing.
    #[prost(message, optional, tag = "14")]
    pub under_construction: Option<UnderConstruction>,
    /// A directory's quotas and what its subtree uses (set only on
    /// directories an operator gave a quota).
    #[prost(message, optional, tag = "15")]
    pub quota: Option<DirQuota>,
}

/// One snapshot of a snapshottable directory.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SnapshotRecord {
    /// Snapshot ids count up across the whole namespace.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub dir: u64,
    #[prost(string, tag = "3")]
    pub name: String,
    /// When it was taken (ms since the epoch).
    #[prost(int64, tag = "4")]
    pub ctime: i64,
    /// The next inode id when it was taken: no inode from this id on is
    /// in the snapshot.
    #[prost(uint64, tag = "5")]
    pub watermark: u64,
}

/// Quotas of a directory and the usage of its subtree (itself included),
/// kept up to date by every mutation (see `namespace::quota`).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct DirQuota {
    /// Most names (files and directories) the subtree may hold; -1: none.
    #[prost(int64, tag = "1")]
    pub ns_quota: i64,
    /// Most bytes (all replicas counted) the subtree may take; -1: none.
    #[prost(int64, tag = "2")]
    pub ss_quota: i64,
    #[prost(uint64, tag = "3")]
    pub ns_used: u64,
    #[prost(uint64, tag = "4")]
    pub ss_used: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BlockRecord {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub generation_stamp: u64,
    #[prost(uint64, tag = "3")]
    pub num_bytes: u64,
    /// The writer reported its final length (committed).
    #[prost(bool, tag = "4")]
    pub committed: bool,
    /// While the block is being written: the datanodes (uuids) it was sent
    /// to, whom lease recovery asks what they hold, also after a namenode
    /// restart. Cleared when the block is committed.
    #[prost(string, repeated, tag = "5")]
    pub targets: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UnderConstruction {
    #[prost(string, tag = "1")]
    pub client_name: String,
    /// The user who opened the file for writing; only they (or the
    /// superuser) may write it. Empty in records made before it was kept:
    /// the file's owner stands in (see [`Inode::writer_user`]).
    #[prost(string, tag = "2")]
    pub user: String,
}

impl Inode {
    /// The user writing this open file: the one who opened it, or, for
    /// records that predate keeping it, the file's owner.
    pub fn writer_user(&self) -> Option<&str> {
        self.under_construction.as_ref().map(|uc| {
            if uc.user.is_empty() {
                self.owner.as_str()
            } else {
                uc.user.as_str()
            }
        })
    }

    /// What this inode alone counts against its ancestors' quotas: one
    /// name, and for a file its bytes times its replication, a block
    /// still being written counted at the full block size (as HDFS).
    pub fn quota_charge(&self) -> (u64, u64) {
        if self.is_dir {
            return (1, 0);
        }
        let bytes: u64 = self.blocks.iter().map(|b| self.charged_bytes(b)).sum();
        (1, bytes.saturating_mul(u64::from(self.replication)))
    }

    /// The bytes block `b` of this file counts for (before replication):
    /// its length, or the full block size while it is being written.
    pub fn charged_bytes(&self, b: &BlockRecord) -> u64 {
        if b.committed {
            b.num_bytes
        } else {
            b.num_bytes.max(self.block_size)
        }
    }

    pub fn length(&self) -> u64 {
        self.blocks.iter().map(|b| b.num_bytes).sum()
    }

    pub fn to_status(&self) -> pb::FileStatus {
        pb::FileStatus {
            name: self.name.clone(),
            file_id: self.id,
            file_type: if self.is_dir {
                pb::FileType::Directory
            } else {
                pb::FileType::File
            } as i32,
            length: if self.is_dir { 0 } else { self.length() },
            replication: self.replication,
            block_size: self.block_size,
            owner: self.owner.clone(),
            group: self.group.clone(),
            permission: self.mode,
            modification_time: self.mtime,
            access_time: self.atime,
            children_num: self.children,
            under_construction: self.under_construction.is_some(),
        }
    }
}

impl BlockRecord {
    pub fn to_extended(&self) -> pb::ExtendedBlock {
        pb::ExtendedBlock {
            block_id: self.id,
            generation_stamp: self.generation_stamp,
            num_bytes: self.num_bytes,
        }
    }
}

pub fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

pub fn dirent_key(parent: u64, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + name.len());
    k.extend_from_slice(&parent.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn decode_u64(bytes: &[u8]) -> Option<u64> {
    bytes.get(..8)?.try_into().ok().map(u64::from_be_bytes)
}

/// What the `blocks` column family says of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockOwner {
    pub inode: u64,
    pub gs: u64,
    /// The block's length once committed (None while being written, and for
    /// records written before lengths were kept).
    pub committed_len: Option<u64>,
}

/// The `blocks` value: owning inode and generation stamp, then the
/// committed length for a committed block (24 bytes; 16 before).
pub fn block_value(inode: u64, gs: u64, committed_len: Option<u64>) -> Vec<u8> {
    let mut v = Vec::with_capacity(24);
    v.extend_from_slice(&inode.to_be_bytes());
    v.extend_from_slice(&gs.to_be_bytes());
    if let Some(len) = committed_len {
        v.extend_from_slice(&len.to_be_bytes());
    }
    v
}

/// The [`BlockOwner`] a [`block_value`] holds.
pub fn decode_block_value(v: &[u8]) -> Option<BlockOwner> {
    Some(BlockOwner {
        inode: decode_u64(v)?,
        gs: decode_u64(v.get(8..)?)?,
        committed_len: v.get(16..).and_then(decode_u64),
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
