//! Generates the wire protocol with protox, so no `protoc` is needed to build.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "granary/v1/common.proto",
    "granary/v1/namenode.proto",
    "granary/v1/datanode.proto",
    "granary/v1/datatransfer.proto",
    "granary/v1/raft.proto",
    // HDFS's own protocol (Hadoop IPC and ClientNamenodeProtocol), for
    // unmodified HDFS clients: docs/hdfs-compat.md.
    "hadoop/rpc.proto",
    "hadoop/security.proto",
    "hadoop/ha_service.proto",
    "hadoop/hdfs.proto",
    "hadoop/acl.proto",
    "hadoop/client_namenode.proto",
    "hadoop/datatransfer.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not baked in when it is compiled: a build
    // script binary reused from a checkout elsewhere (a shared target dir)
    // would otherwise look for the protos there.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    // tonic-prost-build does not forward rerun hints, so print them here.
    for p in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    let fds = protox::compile(PROTOS, [&root])?;
    tonic_prost_build::configure()
        .bytes(".granary.v1.Packet.data")
        .bytes(".granary.v1.ReadPacket.data")
        .compile_fds(fds)?;
    Ok(())
}
