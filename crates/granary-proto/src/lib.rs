//! The Granary wire protocol (`granary.v1`), and HDFS's (`hadoop`), generated
//! from `proto/` at build time.
//! See `docs/protocol.md` for what each RPC does.

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("granary.v1");
}

pub use v1::*;

/// HDFS's own wire protocol (package `hadoop.common` and `hadoop.hdfs`),
/// written from Hadoop's field numbers: Hadoop IPC's headers and the
/// messages of `ClientNamenodeProtocol` Granary serves.
pub mod hadoop {
    pub mod common {
        tonic::include_proto!("hadoop.common");
    }
    pub mod hdfs {
        tonic::include_proto!("hadoop.hdfs");
    }
}

/// HDFS's block as Granary's (the block pool is the cluster's: dropped).
impl From<&hadoop::hdfs::ExtendedBlockProto> for ExtendedBlock {
    fn from(b: &hadoop::hdfs::ExtendedBlockProto) -> Self {
        Self {
            block_id: b.block_id,
            generation_stamp: b.generation_stamp,
            num_bytes: b.num_bytes.unwrap_or(0),
        }
    }
}

impl FileStatus {
    /// True for a directory (`file_type` is an `i32` on the wire).
    pub fn is_dir(&self) -> bool {
        self.file_type == FileType::Directory as i32
    }
}
