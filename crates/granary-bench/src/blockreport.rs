//! A synthetic datanode sends the namenode a full block report of B blocks
//! that exist in the namespace (created in-process first); reports how many
//! blocks per second the namenode processes, for a first report and for a
//! repeated one (the steady state of the 6-hourly reports).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use granary_common::daemon_auth::{self, ClusterSecret, SESSION_METADATA};
use granary_namenode::state::NamenodeState;
use granary_proto as pb;
use granary_proto::block_report_protocol_client::BlockReportProtocolClient;
use granary_proto::datanode_protocol_client::DatanodeProtocolClient;

/// Blocks per file while populating.
const PER_FILE: u64 = 1000;

/// Creates files holding `blocks` complete blocks; returns them.
pub fn populate(
    st: Arc<NamenodeState>,
    blocks: u64,
    threads: usize,
) -> anyhow::Result<Vec<pb::ExtendedBlock>> {
    let caller = st
        .ns()
        .caller(granary_common::identity::Identity::new(crate::local::SUPERUSER));
    st.ns().mkdirs(&caller, "/blockreport", 0, true)?.wait()?;
    let next = Arc::new(AtomicU64::new(0));
    let files = blocks.div_ceil(PER_FILE);
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (st, caller, next) = (st.clone(), caller.clone(), next.clone());
            std::thread::spawn(move || -> anyhow::Result<Vec<pb::ExtendedBlock>> {
                let mut out = Vec::new();
                loop {
                    let f = next.fetch_add(1, Ordering::Relaxed);
                    if f >= files {
                        return Ok(out);
                    }
                    let n = PER_FILE.min(blocks - f * PER_FILE);
                    let path = format!("/blockreport/f{f}");
                    let (file, _) = st
                        .ns()
                        .create(&caller, &path, 0, "bench", false, false, 1, 0)?
                        .wait()?;
                    let mut prev: Option<pb::ExtendedBlock> = None;
                    for _ in 0..n {
                        let a = st
                            .ns()
                            .add_block(&caller, &path, file.id, "bench", prev.as_ref())?
                            .wait()?;
                        let mut b = a.block.to_extended();
                        b.num_bytes = 1;
                        out.push(b);
                        prev = Some(b);
                    }
                    st.ns()
                        .complete(&caller, &path, file.id, "bench", prev.as_ref(), |_| true)?
                        .wait()?;
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(
            h.join()
                .map_err(|_| anyhow::anyhow!("populate thread panicked"))??,
        );
    }
    Ok(all)
}

pub async fn run(
    rpc_addr: &str,
    blocks: Vec<pb::ExtendedBlock>,
    secret: &ClusterSecret,
    cluster_id: &str,
) -> anyhow::Result<()> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{rpc_addr}"))?
        .connect()
        .await?;
    let mut nn = DatanodeProtocolClient::new(ch.clone());
    let uuid = "blockreport-bench".to_string();
    let id = pb::DatanodeId {
        uuid: uuid.clone(),
        hostname: "bench".into(),
        rpc_addr: "127.0.0.1:1".into(),
        http_addr: "127.0.0.1:2".into(),
        rack: "/default-rack".into(),
    };
    let node_key = b"blockreport-bench-node-key".to_vec();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let session = nn
        .register(pb::RegisterRequest {
            proof: Some(daemon_auth::prove(secret, cluster_id, &id, &node_key, now)),
            id: Some(id),
            cluster_id: cluster_id.to_string(),
            storages: vec![pb::StorageReport {
                storage_id: "DS-bench".into(),
                path: "/bench".into(),
                capacity: 1 << 50,
                dfs_used: 0,
                remaining: 1 << 50,
                failed: false,
            }],
            software_version: granary_common::VERSION.into(),
            node_key,
        })
        .await?
        .into_inner()
        .session;
    let session: tonic::metadata::MetadataValue<_> = session.parse()?;
    let mut reports = BlockReportProtocolClient::with_interceptor(ch, move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert(SESSION_METADATA, session.clone());
        Ok(r)
    })
    .max_encoding_message_size(512 << 20)
    .max_decoding_message_size(64 << 20);
    let n = blocks.len();
    for round in ["first", "repeated"] {
        let req = pb::BlockReportRequest {
            datanode_uuid: uuid.clone(),
            blocks: blocks.clone(),
            ..Default::default()
        };
        let t = Instant::now();
        reports.block_report(req).await?;
        let s = t.elapsed().as_secs_f64();
        println!(
            "blockreport {round}: blocks={n} seconds={s:.3} blocks_per_sec={:.0}",
            n as f64 / s.max(1e-9)
        );
    }
    Ok(())
}
