//! Hostile and broken input on every port of real daemons: the data-transfer
//! port, the namenode's and datanodes' gRPC, and both HTTP ports get
//! truncated, oversized, garbage and stalled input and connection floods.
//! Each time the processes stay up, their memory stays bounded (RSS read
//! from /proc), connections are closed by the limits and timeouts, and
//! nothing stored changes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use granary_common::data_transfer::{MAX_DATA, MAX_MESSAGE, PREAMBLE};
use granary_proto as pb;
use granary_testkit::binaries::{ProcessCluster, find_replica, rss_mib};
use granary_testkit::fixtures::{get, pseudo_random, put};

/// CPU seconds (user + system) a process used so far.
fn cpu_secs(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Sockets of `pid` in a TCP state (hex code from /proc/net/tcp) on local `port`.
fn sockets_in_state(pid: i32, port: u16, state: &str) -> usize {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3
                && f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port)
                && f[3] == state
        })
        .count()
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

fn port(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// Whether the peer closed `s` (read returns 0 or an error) within `within`.
fn closed_within(s: &TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 64];
    let deadline = Instant::now() + within;
    let mut r = s;
    loop {
        match r.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

const DN_ARGS: &[&str] = &[
    "--handshake-timeout-ms",
    "1000",
    "--socket-timeout-ms",
    "2000",
    "--max-connections",
    "300",
    "--max-transfers",
    "100",
];
const NN_ARGS: &[&str] = &[
    "--handshake-timeout-ms",
    "1000",
    "--idle-timeout-ms",
    "4000",
    "--max-connections",
    "300",
];

/// A cluster with short limits and one file written before the attacks.
fn cluster_with_data() -> (ProcessCluster, tokio::runtime::Runtime, Vec<u8>, Vec<Vec<u8>>) {
    let c = ProcessCluster::start_with(1, NN_ARGS, DN_ARGS);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(c.client());
    let bytes = pseudo_random(300_000, 42);
    rt.block_on(async {
        let mut w = client
            .create(
                "/precious",
                granary_client::CreateOptions {
                    replication: 1,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut w, &bytes).await.unwrap();
        tokio::io::AsyncWriteExt::shutdown(&mut w).await.unwrap();
    });
    let replicas = on_disk(&c, &rt);
    (c, rt, bytes, replicas)
}

/// The bytes of every replica file of /precious.
fn on_disk(c: &ProcessCluster, rt: &tokio::runtime::Runtime) -> Vec<Vec<u8>> {
    let client = rt.block_on(c.client());
    rt.block_on(client.block_locations("/precious", 0, 0))
        .unwrap()
        .blocks
        .iter()
        .map(|b| std::fs::read(find_replica(&c.datanode_dir(0), b.block.id.0).unwrap()).unwrap())
        .collect()
}

fn assert_unchanged(c: &ProcessCluster, rt: &tokio::runtime::Runtime, bytes: &[u8], replicas: &[Vec<u8>]) {
    assert!(alive(c.namenode.pid()), "namenode died");
    assert!(alive(c.datanodes[0].pid()), "datanode died");
    let client = rt.block_on(c.client());
    assert_eq!(rt.block_on(get(&client, "/precious")), bytes);
    assert_eq!(on_disk(c, rt), replicas, "stored replicas changed");
    // And it still takes writes.
    rt.block_on(put(&client, "/after", b"still writable", 1 << 20));
}

#[test]
fn the_data_transfer_port_survives_partial_preambles_lying_frames_and_garbage() {
    let (c, rt, bytes, replicas) = cluster_with_data();
    let dn = c.datanodes[0].pid();
    let addr = c.datanode_addr(0);
    let rss0 = rss_mib(dn);

    // One byte of the preamble, then the client goes away: the listener must
    // neither spin on it nor leave sockets in CLOSE-WAIT.
    for _ in 0..1000 {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(&PREAMBLE[..1]).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    std::thread::sleep(Duration::from_millis(2500));
    let cpu0 = cpu_secs(dn);
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_secs(dn) - cpu0;
    assert!(
        spent < 0.5,
        "datanode burned {spent:.2} CPU seconds in 2 s after the clients left"
    );
    let close_wait = sockets_in_state(dn, port(&addr), "08");
    assert_eq!(close_wait, 0, "{close_wait} sockets left in CLOSE-WAIT");

    // Frames announcing the largest message and data, then silence: held
    // connections cost what they sent, not what they claimed, and go after
    // the timeouts. More than the connection limit are opened.
    let mut held = Vec::new();
    for _ in 0..600 {
        let Ok(mut s) = TcpStream::connect(&addr) else {
            continue;
        };
        let mut head = PREAMBLE.to_vec();
        head.extend_from_slice(&(MAX_MESSAGE as u32).to_be_bytes());
        head.extend_from_slice(&(MAX_DATA as u32).to_be_bytes());
        head.extend_from_slice(&[0u8; 100]);
        let _ = s.write_all(&head);
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let grown = rss_mib(dn).saturating_sub(rss0);
    assert!(grown < 150, "600 lying frames grew the datanode by {grown} MiB");
    let closed = held
        .iter()
        .filter(|s| closed_within(s, Duration::from_secs(6)))
        .count();
    assert_eq!(closed, held.len(), "stalled pipeline connections were kept open");

    // Garbage: not the preamble, so it is taken for HTTP/2 and refused.
    for seed in 0..50 {
        let mut s = TcpStream::connect(&addr).unwrap();
        let _ = s.write_all(&pseudo_random(10_000, seed));
        assert!(
            closed_within(&s, Duration::from_secs(5)),
            "garbage connection kept open"
        );
    }
    // A truncated header: a frame cut short, then the writer leaves.
    for cut in [3usize, 9, 20] {
        let mut s = TcpStream::connect(&addr).unwrap();
        let mut msg = PREAMBLE.to_vec();
        msg.extend_from_slice(&40u32.to_be_bytes());
        msg.extend_from_slice(&0u32.to_be_bytes());
        msg.extend_from_slice(&[7u8; 40]);
        let _ = s.write_all(&msg[..PREAMBLE.len() + cut]);
        drop(s);
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sockets_in_state(dn, port(&addr), "08"), 0);
    assert_unchanged(&c, &rt, &bytes, &replicas);
}

#[test]
fn namenode_ports_survive_connection_floods_garbage_and_unauthenticated_reports() {
    let (c, rt, bytes, replicas) = cluster_with_data();
    let nn = c.namenode.pid();
    let rss0 = rss_mib(nn);

    // 2,000 idle connections: those over the limit are closed at once, the
    // rest once the handshake timeout passes. Datanodes keep heartbeating.
    let idle: Vec<TcpStream> = (0..2000)
        .filter_map(|_| TcpStream::connect(&c.rpc).ok())
        .collect();
    let http_idle: Vec<TcpStream> = (0..500)
        .filter_map(|_| TcpStream::connect(&c.http).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let closed = idle
        .iter()
        .chain(http_idle.iter())
        .filter(|s| closed_within(s, Duration::from_secs(4)))
        .count();
    assert_eq!(closed, idle.len() + http_idle.len(), "idle connections kept open");
    drop((idle, http_idle));
    // What an operator sees.
    let metrics = granary_testkit::binaries::http_get(&c.http, "/metrics").unwrap();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("granary_connections_refused_total{listener=\"rpc\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(refused > 0, "refused connections not counted");
    assert!(
        c.log("namenode.log")
            .contains("connection refused: too many connections")
    );

    // Unauthenticated full block reports of ~40 MB each are refused before
    // their body is read: the namenode does not grow by what they carry.
    let blocks: Vec<pb::ExtendedBlock> = (0..2_000_000u64)
        .map(|i| pb::ExtendedBlock {
            block_id: i,
            generation_stamp: u64::MAX,
            num_bytes: u64::MAX,
        })
        .collect();
    for _ in 0..3 {
        let mut reports = rt
            .block_on(
                granary_proto::block_report_protocol_client::BlockReportProtocolClient::connect(format!(
                    "http://{}",
                    c.rpc
                )),
            )
            .unwrap()
            .max_encoding_message_size(512 << 20);
        let e = rt
            .block_on(reports.block_report(pb::BlockReportRequest {
                datanode_uuid: c.datanode_uuid(0),
                blocks: blocks.clone(),
                ..Default::default()
            }))
            .unwrap_err();
        // Refused before the body is read: the answer is UNAUTHENTICATED, or,
        // when it overtakes the upload, the sender sees its stream cut.
        assert!(
            e.code() == tonic::Code::Unauthenticated || e.message().contains("transport error"),
            "{e:?}"
        );
    }
    // An oversized client call is refused by size, not decoded.
    let client = rt.block_on(c.client());
    let e = rt
        .block_on(client.rpc().mkdirs(client.request(pb::MkdirsRequest {
            path: format!("/{}", "x".repeat(8 << 20)),
            ..Default::default()
        })))
        .unwrap_err();
    assert!(
        matches!(e.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted),
        "{e:?}"
    );
    // A long path of multi-byte characters that does not exist: the error
    // names the problem in a message short enough for an HTTP/2 header.
    let long = format!("/{}", "ééé/".repeat(900).trim_end_matches('/'));
    let e = rt.block_on(client.stat(&long)).unwrap_err();
    assert_eq!(
        granary_common::HasErrorCode::code(&e),
        granary_common::ErrorCode::FileNotFound,
        "{e}"
    );
    assert!(e.to_string().len() < 4096, "{}", e.to_string().len());
    // Garbage on the RPC and HTTP ports.
    for addr in [&c.rpc, &c.http] {
        for seed in 0..30 {
            let mut s = TcpStream::connect(addr).unwrap();
            let _ = s.write_all(&pseudo_random(20_000, seed));
            assert!(
                closed_within(&s, Duration::from_secs(6)),
                "garbage on {addr} kept open"
            );
        }
    }
    let grown = rss_mib(nn).saturating_sub(rss0);
    assert!(grown < 150, "the namenode grew by {grown} MiB");
    assert_unchanged(&c, &rt, &bytes, &replicas);
}
