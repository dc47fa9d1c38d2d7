//! Granary's integration suite: in-process MiniCluster tests, tests that spawn
//! the real binaries, the WebHDFS clients from PyPI, the web UI in headless
//! Chromium and the docker-compose cluster.
//!
//! One test binary whose modules are the suites (as garage's `tests/lib.rs`):
//! RocksDB and both daemons are linked once instead of once per file.
//! nextest still runs every test in its own process, so tests share no state.

mod bad_input;
mod balancer;
mod compose;
mod compose_ha;
mod compose_secure;
mod crash;
mod daemon;
mod data_path;
mod ha;
mod hdfs_compat;
mod integrity;
mod leases;
mod metrics;
mod multi_namenode;
mod namespace;
mod process_failures;
mod quota;
mod replication;
mod safe_mode;
mod secure;
mod snapshot;
mod trash;
mod web_ui;
mod webhdfs;
