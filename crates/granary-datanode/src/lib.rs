//! The Granary datanode: block replicas on local disks with CRC32C
//! checksums, the streaming write pipeline, reads, and its conversation with
//! each namenode (registration, heartbeats, block reports, commands).

pub mod block_scanner;
pub mod command_fence;
pub mod commands;
pub mod config;
pub mod context;
pub mod data_transfer;
pub mod error;
pub mod hdfs_transfer;
pub mod hdfs_write;
pub mod http;
pub mod layout;
pub mod listener;
pub mod metrics;
pub mod namenode_actor;
pub mod namenode_link;
pub mod server;
pub mod storage;
pub mod transfer;
pub mod webhdfs;

pub use config::DatanodeConfig;
pub use server::{RunningDatanode, start};
