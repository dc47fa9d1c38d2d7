//! `granary-bench ha`: a group of three namenode processes (the binaries
//! beside this one) on loopback against one namenode process, in the same
//! run: gRPC create throughput on each (the group's leader answers only once
//! a majority has the change on disk), then how long the group is without a
//! leader that acknowledges writes, from the moment its leader is killed
//! (SIGKILL) to the first write acknowledged after, over several kills.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use granary_client::{DfsClient, Identity};
use granary_common::daemon_auth::ClusterSecret;

struct Member {
    data: String,
    rpc: String,
    http: String,
    child: Option<Child>,
}

fn sibling(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe().context("where is granary-bench")?;
    let p = exe.with_file_name(name);
    if !p.exists() {
        bail!(
            "{} not found beside granary-bench (build the workspace's binaries)",
            p.display()
        );
    }
    Ok(p)
}

fn port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One namenode alone, for comparison: its RPC address and process.
fn single(nn: &std::path::Path, dir: &std::path::Path) -> anyhow::Result<(String, Child)> {
    let data = dir.join("alone").to_string_lossy().to_string();
    let out = Command::new(nn)
        .args(["format", "--data-dir", &data, "--superuser", "hdfs"])
        .output()?;
    if !out.status.success() {
        bail!("format failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let rpc = format!("127.0.0.1:{}", port()?);
    let http = format!("127.0.0.1:{}", port()?);
    let child = Command::new(nn)
        .args([
            "--data-dir",
            &data,
            "--rpc-addr",
            &rpc,
            "--http-addr",
            &http,
            "--superuser",
            "hdfs",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok((rpc, child))
}

/// Waits until a client call on `addr` is answered.
async fn serving(addr: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(c) = DfsClient::connect(addr, Identity::new("hdfs")).await
            && c.get_file_info("/").await.is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr} not serving within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn run(ops: u64, threads: usize, connections: usize, kills: usize) -> anyhow::Result<()> {
    let nn = sibling("granary-namenode")?;
    let dir = tempfile::tempdir()?;
    let (alone, mut alone_child) = single(&nn, dir.path())?;
    let secret = dir.path().join("secret");
    ClusterSecret::generate(&secret)?;
    let secret = secret.to_string_lossy().to_string();
    let mut members = Vec::new();
    for i in 1..=3 {
        members.push(Member {
            data: dir.path().join(format!("nn{i}")).to_string_lossy().to_string(),
            rpc: format!("127.0.0.1:{}", port()?),
            http: format!("127.0.0.1:{}", port()?),
            child: None,
        });
    }
    let peers = members
        .iter()
        .enumerate()
        .map(|(i, m)| format!("nn{}={}", i + 1, m.rpc))
        .collect::<Vec<_>>()
        .join(",");
    for (i, m) in members.iter().enumerate() {
        let node = format!("nn{}", i + 1);
        let out = Command::new(&nn)
            .args([
                "format",
                "--data-dir",
                &m.data,
                "--cluster-id",
                "CID-bench",
                "--node-id",
                &node,
            ])
            .args([
                "--peers",
                &peers,
                "--cluster-secret-file",
                &secret,
                "--superuser",
                "hdfs",
            ])
            .output()?;
        if !out.status.success() {
            bail!("format failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let start = |m: &mut Member| -> anyhow::Result<()> {
        m.child = Some(
            Command::new(&nn)
                .args([
                    "--data-dir",
                    &m.data,
                    "--rpc-addr",
                    &m.rpc,
                    "--http-addr",
                    &m.http,
                ])
                .args(["--cluster-secret-file", &secret, "--superuser", "hdfs"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        Ok(())
    };
    for m in members.iter_mut() {
        start(m)?;
    }
    let addrs = members
        .iter()
        .map(|m| m.rpc.clone())
        .collect::<Vec<_>>()
        .join(",");
    serving(&alone).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let leader = loop {
        if let Some(l) = leader_of(&members).await {
            break l;
        }
        if Instant::now() > deadline {
            bail!("no leader within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    serving(&members[leader].rpc).await?;
    // Alternating, so drift of a noisy machine hits both alike.
    for round in 1..=2 {
        println!("round {round}: one namenode alone");
        crate::nnbench::over_grpc(&alone, "hdfs", ops, threads, connections).await?;
        println!("round {round}: leader of a group of three (nn{})", leader + 1);
        crate::nnbench::over_grpc(&members[leader].rpc, "hdfs", ops, threads, connections).await?;
    }
    let _ = alone_child.kill();
    let _ = alone_child.wait();
    let c = DfsClient::connect_lazy(&addrs, Identity::new("hdfs"))?;
    let mut gaps = Vec::new();
    let mut n = 0u64;
    for k in 0..kills {
        // Serving before the kill, and which one leads.
        let deadline = Instant::now() + Duration::from_secs(60);
        let leader = loop {
            n += 1;
            if c.mkdirs(&format!("/failover/before{n}"), None, true)
                .await
                .is_ok()
                && let Some(l) = leader_of(&members).await
            {
                break l;
            }
            if Instant::now() > deadline {
                bail!("no leader serving within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if let Some(ch) = members[leader].child.as_mut() {
            ch.kill()?;
            ch.wait()?;
        }
        let killed = Instant::now();
        loop {
            n += 1;
            if c.mkdirs(&format!("/failover/after{n}"), None, true).await.is_ok() {
                break;
            }
            if killed.elapsed() > Duration::from_secs(60) {
                bail!("no write acknowledged within 60 s of the kill");
            }
        }
        let gap = killed.elapsed();
        println!(
            "kill {}: nn{} killed, next write acknowledged after {:.3} s",
            k + 1,
            leader + 1,
            gap.as_secs_f64()
        );
        gaps.push(gap.as_secs_f64());
        start(&mut members[leader])?;
        // One failure at a time: the restarted member follows and has caught
        // up before the next kill (two members down, or one still replaying
        // its log, is a different measurement).
        caught_up(&members, leader).await?;
    }
    for m in members.iter_mut() {
        if let Some(ch) = m.child.as_mut() {
            let _ = ch.kill();
            let _ = ch.wait();
        }
    }
    gaps.sort_by(f64::total_cmp);
    let median = gaps.get(gaps.len() / 2).copied().unwrap_or(0.0);
    println!(
        "failover (leader SIGKILL -> first acknowledged write), {kills} kills: median {median:.3} s, min {:.3} s, max {:.3} s",
        gaps.first().copied().unwrap_or(0.0),
        gaps.last().copied().unwrap_or(0.0)
    );
    Ok(())
}

/// The member that says it leads.
/// The last log index member `i` says it applied, as it reports itself.
async fn applied(members: &[Member], i: usize) -> Option<(u64, String, String)> {
    let s = granary_client::ha::group_status(&Default::default(), &members[i].rpc)
        .await
        .ok()?;
    let own = s.members.iter().find(|m| m.node_id == s.node_id)?;
    Some((own.last_applied_index, s.node_id.clone(), s.leader_id.clone()))
}

/// Waits until restarted member `i` follows a leader and applied its log to
/// within 1,000 entries of it (at most 60 s).
async fn caught_up(members: &[Member], i: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((mine, me, leader)) = applied(members, i).await
            && !leader.is_empty()
            && leader != me
            && let Some(l) = leader_of(members).await
            && let Some((theirs, _, _)) = applied(members, l).await
            && mine + 1000 >= theirs
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nn{} did not catch up within 60 s of its restart", i + 1);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the namenode at `addr` itself answers a client call.
async fn serves(addr: &str) -> bool {
    let Ok(ep) = tonic::transport::Endpoint::from_shared(format!("http://{addr}")) else {
        return false;
    };
    let Ok(ch) = ep
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
    else {
        return false;
    };
    let mut c = granary_proto::client_protocol_client::ClientProtocolClient::new(ch);
    let mut req = tonic::Request::new(granary_proto::GetFileInfoRequest { path: "/".into() });
    Identity::new("hdfs").apply(req.metadata_mut());
    c.get_file_info(req).await.is_ok()
}

async fn leader_of(members: &[Member]) -> Option<usize> {
    for (i, m) in members.iter().enumerate() {
        if m.child.is_none() {
            continue;
        }
        // Says it leads, and serves a call sent to it alone: a namenode just
        // restarted may name itself leader from its stored vote while it
        // refuses calls, and a client following its standby hint would be
        // answered by the real leader (the "0.002 s" kills of earlier runs).
        if let Ok(s) = granary_client::ha::group_status(&Default::default(), &m.rpc).await
            && !s.node_id.is_empty()
            && s.leader_id == s.node_id
            && serves(&m.rpc).await
        {
            return Some(i);
        }
    }
    None
}
