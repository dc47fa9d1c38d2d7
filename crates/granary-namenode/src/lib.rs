//! The Granary namenode: the namespace in RocksDB, the in-memory block map
//! rebuilt from block reports, datanode liveness, and the gRPC/HTTP services.

pub mod activity;
pub mod audit;
pub mod balancer;
pub mod block_keys;
pub mod block_manager;
pub mod block_recovery;
pub mod charts;
pub mod checkpoint;
pub mod config;
pub mod datanode_auth;
pub mod datanode_manager;
pub mod delegation;
pub mod error;
pub mod group_commit;
pub mod groups;
pub mod ha;
pub mod hadoop_ipc;
pub mod http;
pub mod inode;
pub mod layout;
pub mod lease;
pub mod metrics;
pub mod namespace;
pub mod permission;
pub mod placement;
pub mod redundancy;
pub mod rpc;
pub mod safe_mode;
pub mod server;
pub mod state;
pub mod trash;
pub mod web_ui;
pub mod webhdfs;

pub use config::NamenodeConfig;
pub use server::{RunningNamenode, format, start};
