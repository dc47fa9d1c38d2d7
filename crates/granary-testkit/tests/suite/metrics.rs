//! Prometheus `/metrics` on the namenode and datanode HTTP ports report
//! what the cluster did: calls per RPC, datanodes by state, blocks, bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use granary_testkit::MiniCluster;
use granary_testkit::binaries::http_get;
use granary_testkit::fixtures::{get, pseudo_random, put, wait_for};

/// The value of the sample named exactly `series` (name plus labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    tokio::task::spawn_blocking(move || http_get(&addr.to_string(), "/metrics"))
        .await
        .unwrap()
        .expect("/metrics answers 200")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_what_the_cluster_does() {
    let mut cl = MiniCluster::builder().datanodes(3).start().await.unwrap();
    let c = cl.client().await.unwrap();
    let bytes = pseudo_random(3 * 65536 + 5, 1);
    put(&c, "/m/f", &bytes, 65536).await;
    assert_eq!(get(&c, "/m/f").await, bytes);

    let nn = scrape(cl.namenode_http_addr()).await;
    assert!(
        sample(&nn, "granary_rpc_requests_total{method=\"Create\"}").unwrap() >= 1.0,
        "{nn}"
    );
    assert!(
        sample(&nn, "granary_rpc_requests_total{method=\"AddBlock\"}").unwrap() >= 4.0,
        "{nn}"
    );
    assert!(sample(&nn, "granary_rpc_duration_seconds_count{method=\"Complete\"}").unwrap() >= 1.0);
    assert_eq!(
        sample(&nn, "granary_datanodes{state=\"live\"}"),
        Some(3.0),
        "{nn}"
    );
    assert_eq!(sample(&nn, "granary_blocks"), Some(4.0), "{nn}");
    assert_eq!(sample(&nn, "granary_safe_mode"), Some(0.0));
    // The create, addBlock and complete calls ran on the mutation thread,
    // which is idle again.
    assert!(
        sample(&nn, "granary_mutation_thread_busy_seconds").unwrap() > 0.0,
        "{nn}"
    );
    assert_eq!(sample(&nn, "granary_mutation_queue_jobs"), Some(0.0), "{nn}");
    assert!(
        sample(&nn, "granary_rocksdb_estimated_keys{cf=\"inodes\"}").is_some(),
        "{nn}"
    );

    // Every replica written landed on some datanode: 3 x the file.
    let mut written = 0.0;
    for i in 0..3 {
        let dn = scrape(cl.datanode(i).http_addr).await;
        written += sample(&dn, "granary_datanode_bytes_written_total").unwrap();
        assert!(
            sample(&dn, "granary_datanode_heartbeat_lag_seconds").unwrap() < 5.0,
            "{dn}"
        );
        assert_eq!(sample(&dn, "granary_datanode_replicas"), Some(4.0), "{dn}");
        // Each datanode was in every block's pipeline, and none failed.
        assert_eq!(
            sample(&dn, "granary_datanode_write_blocks_total{outcome=\"completed\"}"),
            Some(4.0),
            "{dn}"
        );
        assert_eq!(
            sample(&dn, "granary_datanode_write_blocks_total{outcome=\"failed\"}"),
            None,
            "{dn}"
        );
    }
    assert_eq!(written, 3.0 * bytes.len() as f64);

    // A stopped datanode shows up as dead and its blocks as under-replicated.
    cl.stop_datanode(2).await.unwrap();
    let http = cl.namenode_http_addr();
    wait_for(
        15,
        "one dead datanode and 4 under-replicated blocks",
        || async move {
            let nn = scrape(http).await;
            sample(&nn, "granary_datanodes{state=\"dead\"}") == Some(1.0)
                && sample(&nn, "granary_blocks_under_replicated") == Some(4.0)
        },
    )
    .await;
}
