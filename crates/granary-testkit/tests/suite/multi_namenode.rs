//! A datanode given several namenodes (`--namenode a,b`, as for HA
//! namenodes) registers with, heartbeats to and reports to each of them.
//! Here the two are independent namenodes of one cluster (same cluster id,
//! same secret): enough to see the datanode's side.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use granary_client::{DatanodeInfo, DatanodeState, DfsClient, Identity};
use granary_testkit::binaries::{Daemon, bin_path, free_port, http_get, wait_for_port};

const CLUSTER_ID: &str = "CID-multi-namenode-test";

struct Namenode {
    daemon: Daemon,
    args: Vec<String>,
    rpc: String,
    http: String,
    log: std::path::PathBuf,
}

/// Formats `root/name` as a namenode of [`CLUSTER_ID`].
fn format(root: &Path, name: &str) {
    let out = Command::new(bin_path("granary-namenode"))
        .args(["format", "--cluster-id", CLUSTER_ID, "--superuser", "hdfs"])
        .arg("--data-dir")
        .arg(root.join(name))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

impl Namenode {
    fn start(root: &Path, name: &str) -> Self {
        let d = root.join(name).to_str().unwrap().to_string();
        let rpc = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let args: Vec<String> = [
            "--data-dir",
            &d,
            "--rpc-addr",
            &rpc,
            "--http-addr",
            &http,
            "--superuser",
            "hdfs",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let log = root.join(format!("{name}.log"));
        Self {
            daemon: spawn(&args, &log, &rpc),
            args,
            rpc,
            http,
            log,
        }
    }

    fn restart(&mut self) {
        assert_eq!(self.daemon.terminate(Duration::from_secs(20)), Some(0));
        self.daemon = spawn(&self.args, &self.log, &self.rpc);
    }

    /// Waits until the namenode's /readyz counts `n` datanodes.
    fn wait_datanodes(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(body) = http_get(&self.http, "/readyz")
                && body.lines().any(|l| l == format!("datanodes {n}"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "namenode {} never saw {n} datanodes; its log:\n{}",
            self.rpc,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    async fn datanodes(&self) -> Vec<DatanodeInfo> {
        let c = DfsClient::connect(&self.rpc, Identity::new("hdfs"))
            .await
            .unwrap();
        c.datanode_report().await.unwrap()
    }
}

fn spawn(args: &[String], log: &Path, rpc: &str) -> Daemon {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let d = Daemon::spawn("granary-namenode", &args, log).unwrap();
    assert!(
        wait_for_port(rpc, Duration::from_secs(30)),
        "namenode did not start"
    );
    d
}

/// The value of a sample line `name{labels} value` of a /metrics page.
fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datanode_registers_with_and_heartbeats_to_every_namenode() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    format(root, "nnA");
    format(root, "nnB");
    // Both namenodes must accept the datanode's proof: one secret.
    let secret = root.join("nnA/cluster-secret");
    std::fs::copy(&secret, root.join("nnB/cluster-secret")).unwrap();
    let a = Namenode::start(root, "nnA");
    let mut b = Namenode::start(root, "nnB");

    let dn_rpc = format!("127.0.0.1:{}", free_port());
    let dn_http = format!("127.0.0.1:{}", free_port());
    let namenodes = format!("{},{}", a.rpc, b.rpc);
    let data = root.join("dn0");
    let _dn = Daemon::spawn(
        "granary-datanode",
        &[
            "--namenode",
            &namenodes,
            "--cluster-secret-file",
            secret.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--rpc-addr",
            &dn_rpc,
            "--http-addr",
            &dn_http,
            "--heartbeat-interval-ms",
            "200",
        ],
        &root.join("datanode.log"),
    )
    .unwrap();
    a.wait_datanodes(1);
    b.wait_datanodes(1);

    // Both see it live, and its heartbeats keep reaching both.
    let first: Vec<i64> = {
        let mut v = Vec::new();
        for nn in [&a, &b] {
            let dns = nn.datanodes().await;
            assert_eq!(dns.len(), 1, "{dns:?}");
            assert_eq!(dns[0].state, DatanodeState::Live, "{dns:?}");
            assert_eq!(dns[0].id.rpc_addr, dn_rpc);
            v.push(dns[0].last_heartbeat_ms);
        }
        v
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    for (nn, before) in [&a, &b].into_iter().zip(first) {
        let dns = nn.datanodes().await;
        assert!(
            dns[0].last_heartbeat_ms > before,
            "no heartbeat reached {}",
            nn.rpc
        );
    }

    // The datanode shows each namenode's state.
    let metrics = http_get(&dn_http, "/metrics").expect("datanode metrics");
    for nn in [&a, &b] {
        let label = format!("{{namenode=\"{}\"}}", nn.rpc);
        for m in ["registered", "active"] {
            let name = format!("granary_datanode_namenode_{m}{label}");
            assert_eq!(sample(&metrics, &name), Some(1.0), "{name} in {metrics}");
        }
        let term = format!("granary_datanode_namenode_term{label}");
        assert_eq!(sample(&metrics, &term), Some(0.0), "{metrics}");
    }
    let page = http_get(&dn_http, "/").expect("datanode status page");
    assert!(page.contains(&a.rpc) && page.contains(&b.rpc), "{page}");

    // A namenode that restarts (forgetting the session) gets the datanode
    // back; the other one never lost it.
    b.restart();
    b.wait_datanodes(1);
    let dns = b.datanodes().await;
    assert_eq!(dns[0].state, DatanodeState::Live, "{dns:?}");
    assert_eq!(a.datanodes().await[0].state, DatanodeState::Live);
}

/// `--check-config` shows the list as the datanode reads it and names
/// what is wrong with a bad one.
#[test]
fn check_config_reads_namenode_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let check = |list: &str| {
        Command::new(bin_path("granary-datanode"))
            .args(["--check-config", "--namenode", list, "--cluster-secret-file"])
            .arg(tmp.path().join("secret"))
            .output()
            .unwrap()
    };
    let out = check("nn1:8020, nn2:8020,nn3:8020");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("namenode = \"nn1:8020,nn2:8020,nn3:8020\""), "{s}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("namenodes: nn1:8020, nn2:8020, nn3:8020 (3;"),
        "{err}"
    );
    let out = check("nn1:8020");
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("namenodes:"));
    let out = check("nn1:8020,nn1:8020");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("namenode nn1:8020 is listed twice"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check("nn1:8020,,nn2:8020");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty entry"));
}
