//! The Granary wire protocol (`granary.v1`), generated from `proto/` at build time.
//! See `docs/protocol.md` for what each RPC does.

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("granary.v1");
}

pub use v1::*;

impl FileStatus {
    /// True for a directory (`file_type` is an `i32` on the wire).
    pub fn is_dir(&self) -> bool {
        self.file_type == FileType::Directory as i32
    }
}
