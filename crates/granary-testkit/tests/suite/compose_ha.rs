//! The namenode group of deploy/docker-compose.ha.yml (three namenodes,
//! three datanodes) with a real partition: the leader's container is cut
//! off the network with `docker network disconnect`. A write on its side
//! cannot complete; the other two elect a leader and serve; reconnected,
//! the old leader follows, holds exactly what the others hold, and its
//! uncommitted write is gone.
//!
//! Needs Docker and the image `scripts/docker-image.sh` builds
//! (`scripts/test.sh` builds it as granary:test before the tests run).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use granary_client::ha::group_status;
use granary_client::{DfsClient, Identity};
use granary_testkit::fixtures::{get, pseudo_random, put};

use super::compose::{Compose, compose_program, docker};

const BLOCK: u64 = 64 * 1024;

fn up_ha(image: &str) -> (Compose, Vec<String>) {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/docker-compose.ha.yml");
    let pid = std::process::id();
    let mut last = String::new();
    for attempt in 0..5u32 {
        let net = format!(
            "172.{}.{}",
            20 + (pid + attempt + 5) % 11,
            (pid / 7 + attempt * 41) % 250
        );
        let ips: Vec<String> = (11..14).map(|h| format!("{net}.{h}")).collect();
        let env: Vec<(String, String)> = [
            ("GRANARY_IMAGE", image.to_string()),
            ("GRANARY_HA_SUBNET", format!("{net}.0/24")),
            ("GRANARY_NN1_IP", ips[0].clone()),
            ("GRANARY_NN2_IP", ips[1].clone()),
            ("GRANARY_NN3_IP", ips[2].clone()),
            ("GRANARY_HEARTBEAT_INTERVAL_MS", "300".into()),
            ("GRANARY_STALE_AFTER_MS", "1000".into()),
            ("GRANARY_DEAD_AFTER_MS", "3000".into()),
            ("GRANARY_SAFEMODE_EXTENSION_MS", "500".into()),
            ("GRANARY_MIN_BLOCK_SIZE", BLOCK.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let c = Compose {
            project: format!("granaryha{pid}x{attempt}"),
            file: file.clone(),
            env,
            program: compose_program(),
        };
        let out = c.run(&["up", "-d", "--scale", "datanode=3"]);
        if out.status.success() {
            return (c, ips);
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        drop(c);
    }
    panic!("docker compose up failed: {last}");
}

/// The address of the namenode that says it leads, as seen from the host.
async fn leader(ips: &[String], skip: Option<&str>) -> Option<String> {
    for ip in ips.iter().filter(|ip| Some(ip.as_str()) != skip) {
        let addr = format!("{ip}:8020");
        if let Ok(s) = group_status(&Default::default(), &addr).await
            && !s.node_id.is_empty()
            && s.leader_id == s.node_id
        {
            return Some(addr);
        }
    }
    None
}

async fn wait_leader(ips: &[String], skip: Option<&str>, c: &Compose) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(l) = leader(ips, skip).await {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no leader: {}",
            c.ok(&["logs", "--no-color", "--tail", "40", "nn1", "nn2", "nn3"])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The container of the namenode at `ip`.
fn namenode_at(c: &Compose, ip: &str) -> String {
    ["nn1", "nn2", "nn3"]
        .into_iter()
        .flat_map(|s| c.containers(s))
        .find(|id| super::compose::ip_of(c, id) == ip)
        .unwrap_or_else(|| panic!("no namenode container at {ip}"))
}

/// (last log index, applied index) namenode `addr` reports of itself.
async fn indexes(addr: &str) -> Option<(u64, u64)> {
    let s = group_status(&Default::default(), addr).await.ok()?;
    let me = s.members.iter().find(|m| m.node_id == s.node_id)?;
    Some((me.last_log_index, me.last_applied_index))
}

#[test]
fn a_partitioned_leader_cannot_write_and_follows_after_healing() {
    let image = std::env::var("GRANARY_TEST_IMAGE").unwrap_or_else(|_| "granary:test".into());
    let found = Command::new("docker")
        .args(["image", "inspect", &image])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "image {image} is missing: run scripts/docker-image.sh --debug --tag {image} (scripts/test.sh does)"
    );
    let (c, ips) = up_ha(&image);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let first = wait_leader(&ips, None, &c).await;
        let all = ips
            .iter()
            .map(|ip| format!("{ip}:8020"))
            .collect::<Vec<_>>()
            .join(",");
        let client = DfsClient::connect_lazy(&all, Identity::new("hdfs")).unwrap();
        // Datanodes register with every namenode; wait until writes go through.
        let a = pseudo_random((3 * BLOCK) as usize, 1);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let opts = granary_client::CreateOptions {
                create_parent: true,
                overwrite: true,
                block_size: BLOCK,
                ..Default::default()
            };
            let done = async {
                use tokio::io::AsyncWriteExt;
                let mut w = client.create("/ha/a", opts).await?;
                w.write_all(&a).await?;
                w.close().await
            }
            .await;
            if done.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "cannot write: {done:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        // Cut the leader off.
        let leader_ip = first.trim_end_matches(":8020").to_string();
        let leader_id = namenode_at(&c, &leader_ip);
        docker(&["network", "disconnect", "-f", &c.network(), &leader_id]);
        // On its side: a write from inside its container does not complete.
        let exec = {
            let id = leader_id.clone();
            std::thread::spawn(move || {
                Command::new("docker")
                    .args([
                        "exec",
                        &id,
                        "granary",
                        "--namenode",
                        "127.0.0.1:8020",
                        "fs",
                        "mkdir",
                        "/partitioned",
                    ])
                    .output()
            })
        };
        // The majority elects a leader and serves.
        let next = wait_leader(&ips, Some(&leader_ip), &c).await;
        assert_ne!(next, first);
        let b = pseudo_random((2 * BLOCK) as usize, 2);
        put(&client, "/ha/b", &b, BLOCK).await;
        assert!(get(&client, "/ha/a").await == a, "/ha/a differs");
        std::thread::sleep(Duration::from_secs(5));
        let mut exec = Some(exec);
        let finished_cut_off = exec.as_ref().is_some_and(|e| e.is_finished());
        if finished_cut_off {
            let out = exec.take().unwrap().join().unwrap().expect("docker exec");
            assert!(
                !out.status.success(),
                "a write on the partitioned leader's side completed: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        // Healed: the old leader follows and catches up.
        docker(&["network", "connect", "--ip", &leader_ip, &c.network(), &leader_id]);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now_leader = leader(&ips, None).await;
            let old = indexes(&first).await;
            let lead = match &now_leader {
                Some(l) => indexes(l).await,
                None => None,
            };
            if let (Some(l), Some(o), Some(ld)) = (&now_leader, old, lead)
                && *l != first
                && o.1 >= ld.1
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the old leader did not catch up: leader {now_leader:?} {lead:?}, old {old:?}\n{}",
                c.ok(&["logs", "--no-color", "--tail", "40", "nn1", "nn2", "nn3"])
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The cut-off leader's change was undone. Its client, still
        // retrying, may have made it again through the new leader after
        // the partition healed: then, and only then, it exists.
        let retried = match exec.take() {
            Some(e) => e.join().unwrap().expect("docker exec").status.success(),
            None => false,
        };
        assert_eq!(
            client.get_file_info("/partitioned").await.unwrap().is_some(),
            retried,
            "/partitioned exists only if its client's retry after healing succeeded"
        );
        // Identical everywhere: each namenode in turn is the only one of the
        // first two left with the third, and serves the same files.
        for ip in &ips {
            let addr = format!("{ip}:8020");
            let id = namenode_at(&c, ip);
            docker(&["stop", "-t", "5", &id]);
            wait_leader(&ips, Some(ip), &c).await;
            assert!(get(&client, "/ha/a").await == a, "/ha/a differs without {addr}");
            assert!(get(&client, "/ha/b").await == b, "/ha/b differs without {addr}");
            docker(&["start", &id]);
            let deadline = Instant::now() + Duration::from_secs(60);
            while indexes(&addr).await.is_none() {
                assert!(Instant::now() < deadline, "{addr} did not come back");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
}
