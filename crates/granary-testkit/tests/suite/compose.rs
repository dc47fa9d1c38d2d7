//! The docker-compose cluster of deploy/docker-compose.yml, with real
//! container faults: `docker kill` of a datanode, a real partition with
//! `docker network disconnect`, and `docker restart` of the namenode. Data is
//! written and read from the host through the published namenode port and
//! the datanodes' container addresses, and compared byte for byte after
//! every step.
//!
//! Needs Docker and the image `scripts/docker-image.sh` builds
//! (`scripts/test.sh` builds it as granary:test before the tests run).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use granary_client::{DatanodeState, DfsClient, Identity, SafeModeAction};
use granary_testkit::binaries::{free_port, http_get};
use granary_testkit::fixtures::{get, holders, pseudo_random, put, wait_for};

const BLOCK: u64 = 64 * 1024;

pub(super) struct Compose {
    pub(super) project: String,
    pub(super) file: PathBuf,
    pub(super) env: Vec<(String, String)>,
    /// `docker compose` (v2 plugin) or `docker-compose` (v1).
    pub(super) program: Vec<String>,
}

impl Compose {
    pub(super) fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.program[0]);
        cmd.args(&self.program[1..])
            .args(["-p", &self.project, "-f"])
            .arg(&self.file)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.output().expect("run docker compose")
    }

    pub(super) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker compose {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(super) fn containers(&self, service: &str) -> Vec<String> {
        self.ok(&["ps", "-q", service])
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    pub(super) fn network(&self) -> String {
        format!("{}_default", self.project)
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.run(&["down", "-v", "--timeout", "5"]);
    }
}

pub(super) fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub(super) fn compose_program() -> Vec<String> {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if v2 {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

/// Container IP on the project's network.
pub(super) fn ip_of(c: &Compose, id: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        &format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            c.network()
        ),
        id,
    ])
}

/// Brings the cluster up with `datanodes` datanodes and fast liveness, on a
/// fresh subnet (retried when one is taken by another network).
fn up(datanodes: usize, image: &str) -> (Compose, String, String) {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/docker-compose.yml");
    let pid = std::process::id();
    let mut last = String::new();
    for attempt in 0..5u32 {
        let rpc = free_port();
        let http = free_port();
        let subnet = format!(
            "172.{}.{}.0/24",
            20 + (pid + attempt) % 11,
            (pid / 11 + attempt * 37) % 250
        );
        let env: Vec<(String, String)> = [
            ("GRANARY_IMAGE", image.to_string()),
            ("GRANARY_RPC_PORT", rpc.to_string()),
            ("GRANARY_HTTP_PORT", http.to_string()),
            ("GRANARY_SUBNET", subnet),
            ("GRANARY_HEARTBEAT_INTERVAL_MS", "300".into()),
            ("GRANARY_STALE_AFTER_MS", "1000".into()),
            ("GRANARY_DEAD_AFTER_MS", "3000".into()),
            ("GRANARY_REDUNDANCY_INTERVAL_MS", "300".into()),
            ("GRANARY_PENDING_REPLICATION_TIMEOUT_MS", "3000".into()),
            ("GRANARY_SAFEMODE_EXTENSION_MS", "500".into()),
            ("GRANARY_MIN_BLOCK_SIZE", BLOCK.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let c = Compose {
            project: format!("granarytest{pid}x{attempt}"),
            file: file.clone(),
            env,
            program: compose_program(),
        };
        let scale = format!("datanode={datanodes}");
        let out = c.run(&["up", "-d", "--scale", &scale]);
        if out.status.success() {
            let http_addr = format!("127.0.0.1:{http}");
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let ready = http_get(&http_addr, "/readyz")
                    .is_some_and(|b| b.lines().any(|l| l == format!("datanodes {datanodes}")));
                if ready {
                    return (c, format!("127.0.0.1:{rpc}"), http_addr);
                }
                assert!(
                    Instant::now() < deadline,
                    "compose cluster not ready: {}",
                    c.ok(&["logs", "--tail", "50"])
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        drop(c);
    }
    panic!("docker compose up failed: {last}");
}

/// Datanode uuid → container id, matched by container IP.
async fn containers_by_uuid(c: &Compose, client: &DfsClient) -> HashMap<String, String> {
    let ips: HashMap<String, String> = c
        .containers("datanode")
        .into_iter()
        .map(|id| (ip_of(c, &id), id))
        .collect();
    client
        .datanode_report()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|d| {
            let id = d.id;
            let ip = id.rpc_addr.rsplit_once(':')?.0.to_string();
            Some((id.uuid, ips.get(&ip)?.clone()))
        })
        .collect()
}

/// Replica files each running datanode reports holding (its /readyz).
fn replicas_on(ip: &str) -> Option<usize> {
    http_get(&format!("{ip}:9864"), "/readyz")?
        .lines()
        .find_map(|l| l.strip_prefix("replicas ")?.parse().ok())
}

#[test]
fn compose_cluster_survives_kill_partition_and_namenode_restart() {
    let image = std::env::var("GRANARY_TEST_IMAGE").unwrap_or_else(|_| "granary:test".into());
    let found = Command::new("docker")
        .args(["image", "inspect", &image])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "image {image} is missing: run scripts/docker-image.sh --debug --tag {image} (scripts/test.sh does)"
    );
    let (c, rpc, _http) = up(5, &image);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = DfsClient::connect(&rpc, Identity::new("hdfs")).await.unwrap();
        let files: Vec<(String, Vec<u8>)> = (0..4u64)
            .map(|i| {
                (
                    format!("/compose/f{i}"),
                    pseudo_random((10 * BLOCK + i * 999) as usize, 40 + i),
                )
            })
            .collect();
        for (p, b) in &files {
            put(&client, p, b, BLOCK).await;
        }
        let all_blocks = |client: DfsClient, files: Vec<String>| async move {
            let mut hs = Vec::new();
            for p in &files {
                hs.extend(holders(&client, p).await);
            }
            hs
        };
        let names: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
        let nblocks = all_blocks(client.clone(), names.clone()).await.len();
        let check_data = || async {
            for (p, b) in &files {
                assert!(get(&client, p).await == *b, "{p} differs");
            }
        };
        let by_uuid = containers_by_uuid(&c, &client).await;
        assert_eq!(by_uuid.len(), 5, "{by_uuid:?}");
        let busiest = |hs: &[std::collections::HashSet<String>], skip: &[String]| {
            by_uuid
                .keys()
                .filter(|u| !skip.contains(u))
                .max_by_key(|u| hs.iter().filter(|h| h.contains(*u)).count())
                .unwrap()
                .clone()
        };

        // 1. docker kill a datanode: its blocks are copied to the others.
        let hs = all_blocks(client.clone(), names.clone()).await;
        let killed = busiest(&hs, &[]);
        docker(&["kill", &by_uuid[&killed]]);
        wait_for(40, "3 live replicas without the killed datanode", || {
            let (client, names, killed) = (client.clone(), names.clone(), killed.clone());
            async move {
                all_blocks(client, names)
                    .await
                    .iter()
                    .all(|h| h.len() == 3 && !h.contains(&killed))
            }
        })
        .await;
        check_data().await;

        // 2. A real partition: disconnected, declared dead, re-replicated;
        //    reconnected (same address), its excess replicas are removed.
        let hs = all_blocks(client.clone(), names.clone()).await;
        let cut = busiest(&hs, std::slice::from_ref(&killed));
        let cut_id = by_uuid[&cut].clone();
        let cut_ip = ip_of(&c, &cut_id);
        docker(&["network", "disconnect", "-f", &c.network(), &cut_id]);
        wait_for(40, "3 live replicas without the partitioned datanode", || {
            let (client, names, cut) = (client.clone(), names.clone(), cut.clone());
            async move {
                all_blocks(client, names)
                    .await
                    .iter()
                    .all(|h| h.len() == 3 && !h.contains(&cut))
            }
        })
        .await;
        check_data().await;
        docker(&["network", "connect", "--ip", &cut_ip, &c.network(), &cut_id]);
        let live_ips: Vec<String> = by_uuid
            .iter()
            .filter(|(u, _)| **u != killed)
            .map(|(_, id)| ip_of(&c, id))
            .collect();
        // Which replica of an over-replicated block goes is the placement
        // policy's choice, so the returning node may keep none: what must
        // hold is that it is live again and every block has exactly three
        // replicas, in the namenode's map and on the datanodes' disks.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let hs = all_blocks(client.clone(), names.clone()).await;
            let cut_state = client
                .datanode_report()
                .await
                .unwrap()
                .into_iter()
                .find(|d| d.id.uuid == cut)
                .map(|d| d.state);
            let ips = live_ips.clone();
            let on_disk: Vec<Option<usize>> =
                tokio::task::spawn_blocking(move || ips.iter().map(|ip| replicas_on(ip)).collect())
                    .await
                    .unwrap();
            let total: Option<usize> = on_disk.iter().copied().sum();
            if cut_state == Some(DatanodeState::Live)
                && hs.iter().all(|h| h.len() == 3)
                && total == Some(3 * nblocks)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "after 60 s the partitioned node is {cut_state:?}, replicas per block {:?}, \
                 replica files per node {on_disk:?} (want {} in all); namenode log:\n{}",
                hs.iter().map(|h| h.len()).collect::<Vec<_>>(),
                3 * nblocks,
                c.ok(&["logs", "--no-color", "--tail", "80", "namenode"]),
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        check_data().await;

        // 3. docker restart the namenode: safe mode until datanodes report, then serving.
        let nn = c.containers("namenode").remove(0);
        docker(&["restart", "-t", "10", &nn]);
        wait_for(60, "the namenode out of safe mode after its restart", || {
            let client = client.clone();
            async move { matches!(client.safe_mode(SafeModeAction::Get).await, Ok(st) if !st.on) }
        })
        .await;
        let log = c.ok(&["logs", "--no-color", "namenode"]);
        assert_eq!(
            log.matches("in safe mode until datanodes report").count(),
            1,
            "the restarted namenode had blocks to wait for: {log}"
        );
        assert!(log.contains("leaving safe mode"), "{log}");
        check_data().await;
        put(&client, "/compose/after-restart", b"still writable", BLOCK).await;
        assert_eq!(get(&client, "/compose/after-restart").await, b"still writable");
    });
}
