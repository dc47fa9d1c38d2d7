//! A group of three namenodes (Raft) with three datanodes, as real
//! processes on loopback: whoever leads is killed with SIGKILL, again and
//! again, while eight writers keep writing; every file whose close was
//! acknowledged must read back byte for byte, and a new leader must be
//! serving within twice the election timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fence;
mod restart;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use granary_client::{CreateOptions, DfsClient, Identity};
use granary_common::HasErrorCode;
use granary_common::daemon_auth::ClusterSecret;
use granary_proto as pb;
use granary_testkit::binaries::{Daemon, bin_path, free_port, http_request as http, wait_for_port};
use tokio::io::AsyncWriteExt;

/// The namenodes' `election_timeout_ms` (the default), t. A follower stands
/// for election once the dead leader's lease (2t) ran out and then a random
/// time in [t, 2t) passed: at most 4t without a leader before it stands. A
/// new leader must serve within twice that, measured from the kill to a
/// client call answered.
const ELECTION_TIMEOUT_MS: u64 = 500;
const WRITERS: usize = 8;

struct Group {
    dir: tempfile::TempDir,
    namenodes: Vec<Option<Daemon>>,
    format_args: Vec<Vec<String>>,
    nn_args: Vec<Vec<String>>,
    rpcs: Vec<String>,
    _datanodes: Vec<Daemon>,
}

impl Group {
    fn start(datanodes: usize) -> Self {
        Self::start_with(datanodes, &[])
    }

    /// Formats namenode `i`'s metadata dir (again, after it was wiped).
    fn format(&self, i: usize) {
        let out = std::process::Command::new(bin_path("granary-namenode"))
            .args(&self.format_args[i])
            .output()
            .expect("run format");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    fn data_dir(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("name{}", i + 1))
    }

    fn start_with(datanodes: usize, extra_nn_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = dir.path().join("cluster-secret");
        ClusterSecret::generate(&secret).expect("secret");
        let secret = secret.to_str().expect("utf-8").to_string();
        let rpcs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let peers = rpcs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("nn{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut nn_args = Vec::new();
        let mut format_args = Vec::new();
        for (i, rpc) in rpcs.iter().enumerate() {
            let data = dir.path().join(format!("name{}", i + 1));
            let data = data.to_str().expect("utf-8").to_string();
            let node = format!("nn{}", i + 1);
            format_args.push(
                [
                    "format",
                    "--data-dir",
                    &data,
                    "--cluster-id",
                    "CID-ha-test",
                    "--node-id",
                    &node,
                    "--peers",
                    &peers,
                    "--cluster-secret-file",
                    &secret,
                    "--superuser",
                    "hdfs",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            );
            let http = format!("127.0.0.1:{}", free_port());
            // node id and peers come from what format stored.
            nn_args.push(
                [
                    "--data-dir",
                    &data,
                    "--rpc-addr",
                    rpc,
                    "--http-addr",
                    &http,
                    "--superuser",
                    "hdfs",
                    "--cluster-secret-file",
                    &secret,
                    "--heartbeat-interval-ms",
                    "300",
                ]
                .iter()
                .map(|s| s.to_string())
                .chain(extra_nn_args.iter().map(|s| s.to_string()))
                .collect::<Vec<_>>(),
            );
        }
        let mut g = Self {
            dir,
            namenodes: Vec::new(),
            format_args,
            nn_args,
            rpcs,
            _datanodes: Vec::new(),
        };
        for i in 0..3 {
            g.format(i);
        }
        for i in 0..3 {
            let d = g.spawn_namenode(i);
            g.namenodes.push(Some(d));
        }
        let all = g.rpcs.join(",");
        for i in 0..datanodes {
            let (dn, _) = g.spawn_datanode(&format!("dn{i}"), &all);
            g._datanodes.push(dn);
        }
        g
    }

    /// Starts a datanode with data dir `name` in the group's dir, reporting
    /// to `namenodes` (comma-separated); it and its RPC address, once it
    /// listens.
    fn spawn_datanode(&self, name: &str, namenodes: &str) -> (Daemon, String) {
        let d = self.dir.path().join(name);
        let secret = self.dir.path().join("cluster-secret");
        let (rpc, http) = (
            format!("127.0.0.1:{}", free_port()),
            format!("127.0.0.1:{}", free_port()),
        );
        let args = [
            "--namenode",
            namenodes,
            "--cluster-secret-file",
            secret.to_str().expect("utf-8"),
            "--data-dir",
            d.to_str().expect("utf-8"),
            "--rpc-addr",
            &rpc,
            "--http-addr",
            &http,
            "--heartbeat-interval-ms",
            "300",
        ];
        let dn = Daemon::spawn(
            "granary-datanode",
            &args,
            &self.dir.path().join(format!("{name}.log")),
        )
        .expect("spawn datanode");
        assert!(
            wait_for_port(&rpc, Duration::from_secs(30)),
            "datanode {name} did not start"
        );
        (dn, rpc)
    }

    fn spawn_namenode(&self, i: usize) -> Daemon {
        let args: Vec<&str> = self.nn_args[i].iter().map(String::as_str).collect();
        let d = Daemon::spawn(
            "granary-namenode",
            &args,
            &self.dir.path().join(format!("namenode{}.log", i + 1)),
        )
        .expect("spawn namenode");
        assert!(
            wait_for_port(&self.rpcs[i], Duration::from_secs(30)),
            "namenode {} did not start:\n{}",
            i + 1,
            self.log(i)
        );
        d
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("namenode{}.log", i + 1))).unwrap_or_default()
    }

    /// The last lines of every namenode's log (openraft's chatter left out).
    fn logs(&self) -> String {
        (0..3)
            .map(|i| {
                let log = self.log(i);
                let lines: Vec<&str> = log
                    .lines()
                    .filter(|l| !l.contains(" openraft::") && !l.starts_with("  "))
                    .collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                format!("--- nn{} ---\n{tail}\n", i + 1)
            })
            .collect()
    }

    /// Every namenode's election chatter (openraft's own lines on standing,
    /// voting and winning), to show why an election was slow.
    fn elections(&self) -> String {
        const MARKS: [&str; 8] = [
            "holding back from elections",
            "may stand for election again",
            "do trigger election",
            "reject vote-request",
            "handle vote request result",
            "a quorum granted",
            "seen a greater log",
            "namenode group role",
        ];
        (0..3)
            .map(|i| {
                let log = self.log(i);
                let lines: Vec<&str> = log
                    .lines()
                    .filter(|l| MARKS.iter().any(|m| l.contains(m)))
                    .collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                format!("--- nn{} ---\n{tail}\n", i + 1)
            })
            .collect()
    }

    /// What namenode `i` says of the group, if it answers.
    async fn status(&self, i: usize) -> Option<pb::HaStatusResponse> {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", self.rpcs[i]))
            .ok()?
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .ok()?;
        let mut c = pb::raft_protocol_client::RaftProtocolClient::new(ch);
        c.status(pb::HaStatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// The last log index namenode `i` says it applied (0 before it knows
    /// the group), if it answers.
    async fn applied(&self, i: usize) -> Option<u64> {
        let s = self.status(i).await?;
        Some(
            s.members
                .iter()
                .find(|m| m.node_id == s.node_id)
                .map_or(0, |m| m.last_applied_index),
        )
    }

    /// The live namenode that says it leads (and serves clients), if any.
    async fn leader(&self) -> Option<usize> {
        for i in 0..3 {
            if self.namenodes[i].is_none() {
                continue;
            }
            // Serving: a client call to it alone answers. (A member started
            // a moment ago may name itself leader from its stored vote while
            // it refuses calls, and a client that follows its standby hint
            // would be answered by the real leader.)
            if let Some(s) = self.status(i).await
                && !s.node_id.is_empty()
                && s.leader_id == s.node_id
                && stat_at(&self.rpcs[i], "/").await.is_ok()
            {
                return Some(i);
            }
        }
        None
    }

    async fn wait_leader(&self, within: Duration) -> (usize, Duration) {
        let t = Instant::now();
        loop {
            if let Some(l) = self.leader().await {
                return (l, t.elapsed());
            }
            assert!(
                t.elapsed() < within,
                "no leader serving within {within:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `path`'s status as namenode `addr` alone answers it (no failover, no
/// following of a standby's hint).
async fn stat_at(addr: &str, path: &str) -> Result<pb::GetFileInfoResponse, tonic::Status> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut c = pb::client_protocol_client::ClientProtocolClient::new(ch);
    let mut req = tonic::Request::new(pb::GetFileInfoRequest { path: path.into() });
    Identity::new("hdfs").apply(req.metadata_mut());
    c.get_file_info(req).await.map(tonic::Response::into_inner)
}

/// The bytes writer `w`'s `n`th file holds.
fn content(w: usize, n: u64) -> Vec<u8> {
    let len = 1000 + ((w as u64 * 7919 + n * 104_729) % 200_000) as usize;
    let mut x = (w as u64) << 32 | n;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

async fn write_file(c: &DfsClient, path: &str, data: &[u8]) -> granary_client::Result<()> {
    let opts = CreateOptions {
        create_parent: true,
        ..Default::default()
    };
    let mut w = c.create(path, opts).await?;
    w.write_all(data)
        .await
        .map_err(granary_client::ClientError::from)?;
    w.close().await?;
    Ok(())
}

/// Writes files until told to stop; returns the ones whose close was acknowledged.
async fn writer(addrs: String, w: usize, stop: Arc<AtomicBool>) -> Vec<(String, u64)> {
    let c = DfsClient::connect_lazy(&addrs, Identity::new("hdfs")).expect("client");
    let mut acked = Vec::new();
    // Bounded: the test stops the writers long before.
    for n in 0..10_000u64 {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let path = format!("/ha/w{w}/f{n}");
        match write_file(&c, &path, &content(w, n)).await {
            Ok(()) => acked.push((path, n)),
            Err(e) => {
                tracing::info!(writer = w, path, error = %e, "write failed; going on with the next file");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_whoever_leads_loses_no_acknowledged_file() {
    let mut g = Group::start(3);
    let (first, _) = g.wait_leader(Duration::from_secs(30)).await;

    // A follower serves no client: it names the leader.
    let follower = (first + 1) % 3;
    let c = DfsClient::connect(&g.rpcs[follower], Identity::new("hdfs"))
        .await
        .expect("connect");
    let st = c
        .rpc()
        .get_file_info(c.request(pb::GetFileInfoRequest { path: "/".into() }))
        .await;
    let st = st.expect_err("a follower answered a client");
    assert_eq!(
        granary_common::ErrorCode::from_status(&st),
        granary_common::ErrorCode::Standby,
        "{st:?}"
    );
    assert_eq!(
        granary_common::error::leader_hint(&st).as_deref(),
        Some(g.rpcs[first].as_str())
    );

    let addrs = g.rpcs.join(",");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(addrs.clone(), w, stop.clone())))
        .collect();
    let mut failovers = Vec::new();
    for round in 0..5 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (leader, _) = g.wait_leader(Duration::from_secs(30)).await;
        g.namenodes[leader].as_mut().expect("running").kill9();
        g.namenodes[leader] = None;
        let (next, took) = g.wait_leader(Duration::from_secs(30)).await;
        assert_ne!(next, leader);
        failovers.push(took);
        eprintln!(
            "round {round}: killed nn{}, nn{} leads after {took:?}",
            leader + 1,
            next + 1
        );
        assert!(
            took <= Duration::from_millis(2 * 4 * ELECTION_TIMEOUT_MS),
            "round {round}: a new leader took {took:?}:\n{}",
            g.elections()
        );
        g.namenodes[leader] = Some(g.spawn_namenode(leader));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    for (w, h) in writers.into_iter().enumerate() {
        for (path, n) in h.await.expect("writer task") {
            acked.push((w, path, n));
        }
    }
    assert!(acked.len() >= WRITERS * 5, "only {} files written", acked.len());
    let c = DfsClient::connect_lazy(&addrs, Identity::new("hdfs")).expect("client");
    for (w, path, n) in &acked {
        let r = c
            .open(path)
            .await
            .unwrap_or_else(|e| panic!("{path} (acknowledged) is lost: {e}"));
        let got = r.read_at(0, r.len() as usize).await.expect("read");
        assert!(
            got.as_ref() == content(*w, *n).as_slice(),
            "{path} reads back different bytes"
        );
    }
    eprintln!(
        "{} acknowledged files read back; failovers {failovers:?}",
        acked.len()
    );
}

/// `msg` as a call of one client, with its call id (as a client sends it).
fn with_ids<T>(c: &DfsClient, call: u64, msg: T) -> tonic::Request<T> {
    let mut req = c.request(msg);
    req.metadata_mut()
        .insert("x-granary-client-id", "retry-test-client".parse().expect("ascii"));
    req.metadata_mut()
        .insert("x-granary-call-id", call.to_string().parse().expect("ascii"));
    req
}

/// A call sent again with the same client and call ids (as a client does
/// when the answer was lost in a failover) is answered, not applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_call_is_applied_once_across_a_failover() {
    let mut g = Group::start(0);
    let (leader, _) = g.wait_leader(Duration::from_secs(30)).await;
    let c = DfsClient::connect(&g.rpcs[leader], Identity::new("hdfs"))
        .await
        .expect("connect");
    let create = |path: &str| pb::CreateRequest {
        path: path.into(),
        client_name: "retry-test".into(),
        create_parent: true,
        ..Default::default()
    };
    let first = c
        .rpc()
        .create(with_ids(&c, 1, create("/r/f")))
        .await
        .expect("create")
        .into_inner();
    c.rpc()
        .mkdirs(with_ids(
            &c,
            2,
            pb::MkdirsRequest {
                path: "/r/d".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("mkdirs");
    c.rpc()
        .rename(with_ids(
            &c,
            3,
            pb::RenameRequest {
                src: "/r/d".into(),
                dst: "/r/moved".into(),
                overwrite: false,
            },
        ))
        .await
        .expect("rename");
    c.rpc()
        .create(with_ids(&c, 4, create("/r/gone")))
        .await
        .expect("create");
    c.rpc()
        .delete(with_ids(
            &c,
            5,
            pb::DeleteRequest {
                path: "/r/gone".into(),
                recursive: false,
            },
        ))
        .await
        .expect("delete");

    g.namenodes[leader].as_mut().expect("running").kill9();
    g.namenodes[leader] = None;
    let (next, _) = g.wait_leader(Duration::from_secs(30)).await;
    let c = DfsClient::connect(&g.rpcs[next], Identity::new("hdfs"))
        .await
        .expect("connect");
    // The same calls again on the new leader: each answers as the first did.
    let again = c
        .rpc()
        .create(with_ids(&c, 1, create("/r/f")))
        .await
        .expect("retried create")
        .into_inner();
    assert_eq!(
        again.status.as_ref().map(|s| s.file_id),
        first.status.as_ref().map(|s| s.file_id),
        "the retried create answers with the file the first made"
    );
    c.rpc()
        .rename(with_ids(
            &c,
            3,
            pb::RenameRequest {
                src: "/r/d".into(),
                dst: "/r/moved".into(),
                overwrite: false,
            },
        ))
        .await
        .expect("retried rename");
    c.rpc()
        .delete(with_ids(
            &c,
            5,
            pb::DeleteRequest {
                path: "/r/gone".into(),
                recursive: false,
            },
        ))
        .await
        .expect("retried delete");
    // A new call id is a new call: the file exists now (and is still open).
    let e = c
        .rpc()
        .create(with_ids(&c, 6, create("/r/f")))
        .await
        .expect_err("a second create");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("being written"), "{e:?}");
    let names: Vec<String> = c
        .list("/r")
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["f".to_string(), "moved".to_string()]);
}

/// A follower whose metadata dir is wiped is formatted and started again:
/// it catches up by installing a snapshot (the log behind it is gone);
/// then the other two are killed in turn, and every file is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_follower_catches_up_by_snapshot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("nn.toml");
    std::fs::write(&cfg, "[ha]\nsnapshot_every = 20\nkeep_log_entries = 5\n").expect("config");
    let cfg = cfg.to_str().expect("utf-8").to_string();
    let mut g = Group::start_with(3, &["--config", &cfg]);
    let (leader, _) = g.wait_leader(Duration::from_secs(30)).await;
    let addrs = g.rpcs.join(",");
    let c = DfsClient::connect_lazy(&addrs, Identity::new("hdfs")).expect("client");
    for n in 0..30 {
        write_file(&c, &format!("/snap/f{n}"), &content(0, n))
            .await
            .expect("write");
    }
    let f = (leader + 1) % 3;
    g.namenodes[f].as_mut().expect("running").kill9();
    g.namenodes[f] = None;
    std::fs::remove_dir_all(g.data_dir(f)).expect("wipe");
    g.format(f);
    g.namenodes[f] = Some(g.spawn_namenode(f));
    // Caught up: it applied what the leader has.
    let t = Instant::now();
    loop {
        let (want, got) = (g.applied(leader).await, g.applied(f).await);
        if let (Some(w), Some(h)) = (want, got)
            && h >= w
            && w > 0
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "nn{} never caught up:\n{}",
            f + 1,
            g.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        g.log(f).contains("namespace snapshot installed"),
        "nn{} caught up without a snapshot:\n{}",
        f + 1,
        g.logs()
    );
    // The other two die in turn: what f holds must be everything.
    for victim in [leader, 3 - leader - f] {
        g.namenodes[victim].as_mut().expect("running").kill9();
        g.namenodes[victim] = None;
        g.wait_leader(Duration::from_secs(30)).await;
        for n in 0..30 {
            let path = format!("/snap/f{n}");
            let r = c.open(&path).await.unwrap_or_else(|e| panic!("{path} lost: {e}"));
            let got = r.read_at(0, r.len() as usize).await.expect("read");
            assert!(got.as_ref() == content(0, n).as_slice(), "{path} differs");
        }
        g.namenodes[victim] = Some(g.spawn_namenode(victim));
    }
}

/// A fourth namenode is added online (it catches up, then votes), one of
/// the first three is removed; the group serves throughout and the new
/// member holds the namespace: with it, one more may die.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namenodes_are_added_and_removed_online() {
    let mut g = Group::start(0);
    let (leader, _) = g.wait_leader(Duration::from_secs(30)).await;
    let addrs = g.rpcs.join(",");
    let c = DfsClient::connect_lazy(&addrs, Identity::new("hdfs")).expect("client");
    c.mkdirs("/before", None, true).await.expect("mkdirs");

    // nn4: formatted with the group's id and peers (itself included), started.
    let rpc4 = format!("127.0.0.1:{}", free_port());
    let http4 = format!("127.0.0.1:{}", free_port());
    let data4 = g.dir.path().join("name4");
    let data4 = data4.to_str().expect("utf-8").to_string();
    let mut fmt = g.format_args[0].clone();
    let at = |args: &[String], flag: &str| args.iter().position(|a| a == flag).expect(flag) + 1;
    let (d, n, p) = (at(&fmt, "--data-dir"), at(&fmt, "--node-id"), at(&fmt, "--peers"));
    fmt[d] = data4.clone();
    fmt[n] = "nn4".into();
    fmt[p] = format!("{},nn4={rpc4}", fmt[p]);
    let out = std::process::Command::new(bin_path("granary-namenode"))
        .args(&fmt)
        .output()
        .expect("format nn4");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut args = g.nn_args[0].clone();
    let (d, r, h) = (
        at(&args, "--data-dir"),
        at(&args, "--rpc-addr"),
        at(&args, "--http-addr"),
    );
    args[d] = data4;
    args[r] = rpc4.clone();
    args[h] = http4;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _nn4 =
        Daemon::spawn("granary-namenode", &args, &g.dir.path().join("namenode4.log")).expect("spawn nn4");
    assert!(wait_for_port(&rpc4, Duration::from_secs(30)), "nn4 did not start");

    let voters = c.add_namenode("nn4", &rpc4).await.expect("add nn4");
    assert_eq!(voters.len(), 4, "{voters:?}");
    assert!(voters.contains(&"nn4".to_string()));
    let again = c.add_namenode("nn4", &rpc4).await.expect_err("added twice");
    assert!(again.to_string().contains("already"), "{again}");
    // Not the superuser: refused.
    let alice = DfsClient::connect_lazy(&addrs, Identity::new("alice")).expect("client");
    alice
        .remove_namenode("nn4")
        .await
        .expect_err("alice may not change the group");

    // Remove one of the first three that does not lead.
    let gone = (leader + 1) % 3;
    let voters = c
        .remove_namenode(&format!("nn{}", gone + 1))
        .await
        .expect("remove");
    assert_eq!(voters.len(), 3, "{voters:?}");
    g.namenodes[gone].as_mut().expect("running").kill9();
    g.namenodes[gone] = None;
    c.mkdirs("/after-remove", None, true)
        .await
        .expect("serving with three");

    // nn4 holds everything: with the leader gone too, nn4 and the third
    // member are a majority of the three voters.
    g.namenodes[leader].as_mut().expect("running").kill9();
    g.namenodes[leader] = None;
    let c4 = DfsClient::connect_lazy(&format!("{addrs},{rpc4}"), Identity::new("hdfs")).expect("client");
    let t = Instant::now();
    loop {
        if c4.get_file_info("/after-remove").await.ok().flatten().is_some() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no leader among nn4 and the third:\n{}",
            g.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(c4.get_file_info("/before").await.expect("stat").is_some());
    c4.mkdirs("/with-nn4", None, true).await.expect("writes go on");
}

/// Raft messages without a proof of the cluster secret (forged, garbage,
/// or signed with another secret) are refused before Raft sees them: the
/// group keeps its leader and term, and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_messages_without_the_cluster_secret_are_refused() {
    let g = Group::start(0);
    let (leader, _) = g.wait_leader(Duration::from_secs(30)).await;
    let before = g.status(leader).await.expect("status");
    let other_secret = granary_common::daemon_auth::ClusterSecret::from_bytes(vec![7u8; 32]);
    for i in 0..3 {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", g.rpcs[i]))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        let mut c = pb::raft_protocol_client::RaftProtocolClient::new(ch);
        let garbage = pb::RaftMessage {
            body: vec![0xff; 1 << 20],
            proof: vec![1, 2, 3],
        };
        for r in [
            c.append_entries(garbage.clone()).await,
            c.vote(garbage.clone()).await,
            c.install_snapshot(garbage.clone()).await,
        ] {
            let e = r.expect_err("a forged raft message was taken");
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
        }
        // Signed with another cluster's secret: refused alike.
        use hmac::Mac;
        let mut m = other_secret.mac();
        m.update(b"granary-raft-v1\0vote\0");
        m.update(b"x");
        let signed = pb::RaftMessage {
            body: b"x".to_vec(),
            proof: m.finalize().into_bytes().to_vec(),
        };
        let e = c
            .vote(signed)
            .await
            .expect_err("another cluster's vote was taken");
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    }
    let after = g.status(leader).await.expect("status");
    assert_eq!((after.term, &after.leader_id), (before.term, &before.leader_id));
    let c = DfsClient::connect(&g.rpcs[leader], Identity::new("hdfs"))
        .await
        .expect("connect");
    c.mkdirs("/still-serving", None, true).await.expect("serving");
}

/// `granary admin ha transfer-leader`: leadership moves to the member
/// named and back, while a writer keeps making directories; every one it
/// was told exists survives. Strangers to the group and users other than
/// the superuser are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_is_handed_to_the_member_named() {
    let mut g = Group::start(0);
    let (first, _) = g.wait_leader(Duration::from_secs(30)).await;
    let addrs = g.rpcs.join(",");
    let c = DfsClient::connect_lazy(&addrs, Identity::new("hdfs")).expect("client");

    let alice = DfsClient::connect_lazy(&addrs, Identity::new("alice")).expect("client");
    let e = alice
        .transfer_leadership("nn1")
        .await
        .expect_err("alice transferred leadership");
    assert_eq!(e.code(), granary_common::ErrorCode::AccessControl, "{e}");
    let e = c
        .transfer_leadership("nn9")
        .await
        .expect_err("a stranger got the lead");
    assert_eq!(e.code(), granary_common::ErrorCode::InvalidArgument, "{e}");
    assert!(e.to_string().contains("nn9"), "{e}");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (c, stop) = (c.clone(), stop.clone());
        tokio::spawn(async move {
            let mut made = Vec::new();
            for n in 0..2_000u32 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let p = format!("/handover/d{n}");
                match c.mkdirs(&p, None, true).await {
                    Ok(()) => made.push(p),
                    Err(e) => tracing::info!(path = p, error = %e, "mkdirs failed"),
                }
            }
            made
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut at = first;
    for _ in 0..2 {
        let next = (at + 1) % 3;
        let name = format!("nn{}", next + 1);
        let (leader, took) = c.transfer_leadership(&name).await.expect("transfer");
        assert_eq!(leader, name);
        eprintln!("nn{} handed over to {name} in {took:?}", at + 1);
        let s = g.status(next).await.expect("new leader answers");
        assert_eq!(s.leader_id, name, "{s:?}");
        let (serving, _) = g.wait_leader(Duration::from_secs(10)).await;
        assert_eq!(serving, next);
        at = next;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Handing it to the leader itself changes nothing.
    let (leader, _) = c
        .transfer_leadership(&format!("nn{}", at + 1))
        .await
        .expect("transfer to itself");
    assert_eq!(leader, format!("nn{}", at + 1));

    stop.store(true, Ordering::SeqCst);
    let made = writer.await.expect("writer");
    assert!(made.len() >= 10, "only {} directories made", made.len());
    for p in &made {
        assert!(
            c.get_file_info(p).await.expect("stat").is_some(),
            "{p} (acknowledged) is lost"
        );
    }
    eprintln!("{} directories made across two hand-overs", made.len());

    // A member that is down: refused before writes pause, and at once (not
    // retried by the client); the leader leads on and takes writes.
    let down = (at + 1) % 3;
    g.namenodes[down].as_mut().expect("running").kill9();
    g.namenodes[down] = None;
    let t = Instant::now();
    let e = c
        .transfer_leadership(&format!("nn{}", down + 1))
        .await
        .expect_err("leadership handed to a dead member");
    assert!(e.to_string().contains(&format!("nn{}", down + 1)), "{e}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "refused only after {:?}",
        t.elapsed()
    );
    let (serving, _) = g.wait_leader(Duration::from_secs(10)).await;
    assert_eq!(serving, at);
    c.mkdirs("/handover/after", None, true)
        .await
        .expect("writes go on");
}

/// WebHDFS clients that know one namenode keep working when it does not
/// lead: it sends them to the leader's HTTP address, path and query kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhdfs_on_a_follower_sends_clients_to_the_leader() {
    let g = Group::start(0);
    let (leader, _) = g.wait_leader(Duration::from_secs(30)).await;
    let http_of = |i: usize| {
        let a = &g.nn_args[i];
        let at = a.iter().position(|x| x == "--http-addr").expect("--http-addr");
        a[at + 1].clone()
    };
    let follower = (leader + 1) % 3;
    let pq = "/webhdfs/v1/?op=GETFILESTATUS&user.name=hdfs";
    let (st, location, body) = tokio::task::spawn_blocking({
        let addr = http_of(follower);
        move || http(&addr, "GET", pq)
    })
    .await
    .expect("request");
    assert_eq!(st, 307, "{body}");
    assert_eq!(
        location.as_deref(),
        Some(format!("http://{}{pq}", http_of(leader)).as_str())
    );

    // A write sent to the follower and followed to the leader.
    let mk = "/webhdfs/v1/via-follower?op=MKDIRS&user.name=hdfs";
    let (st, location, _) = tokio::task::spawn_blocking({
        let addr = http_of(follower);
        move || http(&addr, "PUT", mk)
    })
    .await
    .expect("request");
    assert_eq!(st, 307);
    let to = location.expect("location");
    let to = to.strip_prefix("http://").expect("http");
    let (host, path) = to.split_at(to.find('/').expect("path"));
    let (host, path) = (host.to_string(), path.to_string());
    let (st, _, body) = tokio::task::spawn_blocking(move || http(&host, "PUT", &path))
        .await
        .expect("request");
    assert_eq!((st, body.as_str()), (200, r#"{"boolean":true}"#));
    let c = DfsClient::connect_lazy(&g.rpcs.join(","), Identity::new("hdfs")).expect("client");
    assert!(c.get_file_info("/via-follower").await.expect("stat").is_some());
}
