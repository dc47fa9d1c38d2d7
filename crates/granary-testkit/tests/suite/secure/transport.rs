//! TLS on every port: encrypted traffic, refusals in the clear and without
//! a certificate, stalled handshakes.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{MARK, plaintext};
use granary_client::{ClientOptions, CreateOptions, DfsClient, Identity};
use granary_common::data_transfer::PREAMBLE;
use granary_common::tls::{Tls, TlsFiles};
use granary_testkit::binaries::{
    Daemon, ProcessCluster, bin_path, client_files, free_port, http_get, https_get, https_request,
};
use granary_testkit::fixtures::get;

/// A TCP relay from `127.0.0.2:PORT` to `127.0.0.1:PORT` keeping every byte
/// that crosses it, both ways (at most `CAP`).
struct Relay {
    seen: Arc<Mutex<Vec<u8>>>,
}

const CAP: usize = 64 << 20;

impl Relay {
    async fn start(target: &str) -> Self {
        let port = target.rsplit_once(':').unwrap().1;
        let l = TcpListener::bind(format!("127.0.0.2:{port}"))
            .await
            .expect("bind 127.0.0.2");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (target, kept) = (target.to_string(), seen.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = l.accept().await {
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(copy(cr, sw, kept.clone()));
                tokio::spawn(copy(sr, cw, kept.clone()));
            }
        });
        Self { seen }
    }

    fn len(&self) -> usize {
        self.seen.lock().len()
    }

    fn saw(&self, needle: &[u8]) -> bool {
        self.seen.lock().windows(needle.len()).any(|w| w == needle)
    }
}

async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    kept: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut k = kept.lock();
            let room = CAP.saturating_sub(k.len()).min(n);
            k.extend_from_slice(&buf[..room]);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Writes `data` with one replica (the cluster's one datanode) and reads it
/// back, through a relay in front of that datanode: the datanode advertises
/// 127.0.0.2, where the relay listens.
async fn write_and_read_through_relay(c: &ProcessCluster, data: &[u8]) -> Relay {
    let relay = Relay::start(&c.datanode_addr(0)).await;
    let client = c.client().await;
    let mut w = client
        .create(
            "/secret.txt",
            CreateOptions {
                replication: 1,
                ..Default::default()
            },
        )
        .await
        .expect("create");
    w.write_all(data).await.expect("write");
    w.shutdown().await.expect("close");
    assert_eq!(get(&client, "/secret.txt").await, data, "read back");
    relay
}

/// A put and a get of a file cross the data port encrypted: the capture of
/// everything that went to and from the datanode holds the file's size in
/// bytes and none of its text. The same capture of a cluster without TLS
/// shows the text (the capture works).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_crosses_the_network_encrypted() {
    let data = plaintext(3 << 20);
    let via = ["--advertise-host", "127.0.0.2"];
    {
        let plain = ProcessCluster::start_with(1, &[], &via);
        let relay = write_and_read_through_relay(&plain, &data).await;
        assert!(
            relay.len() >= data.len(),
            "the relay carried {} bytes",
            relay.len()
        );
        assert!(relay.saw(MARK), "in the clear the capture shows the text");
    }
    let secure = ProcessCluster::start_tls(1, &[], &via, &["127.0.0.2"]);
    let relay = write_and_read_through_relay(&secure, &data).await;
    assert!(
        relay.len() >= 2 * data.len(),
        "the write and the read crossed the relay: {} bytes",
        relay.len()
    );
    assert!(
        !relay.saw(MARK),
        "the capture of a TLS cluster shows the file's text"
    );
}

/// A client at `addr` with these TLS settings (None: in the clear).
async fn connect(addr: &str, tls: Option<Arc<Tls>>) -> Result<DfsClient, granary_client::ClientError> {
    let options = ClientOptions {
        tls,
        failover_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let c = DfsClient::connect_with(addr, Identity::new("hdfs"), options).await?;
    c.get_file_info("/").await?;
    Ok(c)
}

/// Whether the datanode at `addr` answers a write pipeline's first bytes,
/// sent in the clear, with anything but closing the connection.
async fn data_port_answers_in_the_clear(addr: &str) -> bool {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(PREAMBLE).await;
    let _ = s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 1, 2, 3, 4]).await;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => false,
        Ok(Ok(n)) => {
            // A TLS alert is all a server that only speaks TLS may send.
            buf[0] != 0x15 || n > 7
        }
        Err(_) => panic!("the datanode neither answered nor closed in 15 s"),
    }
}

/// Every port of a secure cluster serves a client with a certificate of the
/// cluster CA (library, CLI, HTTPS) and refuses one in the clear or without
/// a certificate; a datanode with another CA's certificate never registers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_port_refuses_clients_without_tls_or_a_certificate() {
    let c = ProcessCluster::start_tls(3, &[], &[], &[]);
    let certs = c.certs_dir().unwrap().to_path_buf();
    let data = plaintext(1 << 20);

    // The library and the CLI, with certificates.
    let client = c.client().await;
    let mut w = client
        .create("/f", CreateOptions::default())
        .await
        .expect("create over tls");
    w.write_all(&data).await.expect("write");
    w.shutdown().await.expect("close");
    assert_eq!(get(&client, "/f").await, data);
    let local = c.dir.path().join("local.txt");
    std::fs::write(&local, &data).unwrap();
    let files = client_files(&certs, "alice");
    let cli = |args: &[&str]| {
        std::process::Command::new(bin_path("granary"))
            .args(args)
            .env("GRANARY_NAMENODE", &c.rpc)
            .env("GRANARY_USER", "alice")
            .env("GRANARY_TLS_CA", &files.ca)
            .env("GRANARY_TLS_CERT", &files.cert)
            .env("GRANARY_TLS_KEY", &files.key)
            .output()
            .expect("run granary")
    };
    client.mkdirs("/user/alice", None, true).await.expect("mkdirs");
    client
        .set_owner("/user/alice", Some("alice"), None)
        .await
        .expect("chown");
    let out = cli(&["fs", "put", local.to_str().unwrap(), "/user/alice/a.txt"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&["fs", "cat", "/user/alice/a.txt"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, data, "the CLI read back what it wrote");

    // The namenode's RPC port: no client in the clear, none without a
    // certificate (the CA alone), none of another CA.
    let e = connect(&c.rpc, None).await.err().expect("in the clear");
    assert!(!e.to_string().is_empty());
    let ca_only = Tls::client(TlsFiles {
        ca: files.ca.clone(),
        ..Default::default()
    })
    .unwrap();
    assert!(
        connect(&c.rpc, Some(ca_only.clone())).await.is_err(),
        "a client without a certificate"
    );
    let other = c.dir.path().join("other-ca");
    let out = std::process::Command::new(bin_path("granary"))
        .args([
            "admin",
            "certs",
            "init",
            "--dir",
            other.to_str().unwrap(),
            "--client",
            "hdfs",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stranger = Tls::client(TlsFiles {
        ca: files.ca.clone(),
        cert: other.join("hdfs.crt"),
        key: other.join("hdfs.key"),
    })
    .unwrap();
    assert!(
        connect(&c.rpc, Some(stranger)).await.is_err(),
        "a client whose certificate another CA signed"
    );

    // The datanodes' data ports: a write pipeline in the clear is closed
    // unanswered (no ready, no error message).
    for i in 0..3 {
        assert!(
            !data_port_answers_in_the_clear(&c.datanode_addr(i)).await,
            "datanode {i} answered in the clear"
        );
    }

    // The HTTP ports: nothing in the clear; over TLS /healthz answers
    // anyone, everything else only a caller with a certificate.
    let no_cert = TlsFiles {
        ca: files.ca.clone(),
        ..Default::default()
    };
    for addr in [c.http.clone(), c.datanode_http(0)] {
        assert_eq!(http_get(&addr, "/healthz"), None, "{addr} in the clear");
        let status = |path: &str, f: &TlsFiles| https_get(&addr, path, f).expect("https").0;
        assert_eq!(status("/healthz", &no_cert), 200, "{addr} /healthz");
        assert_eq!(
            status("/metrics", &no_cert),
            401,
            "{addr} /metrics without a certificate"
        );
        assert_eq!(status("/metrics", &files), 200, "{addr} /metrics with one");
    }
    let (status, _) = https_get(&c.http, "/", &no_cert).unwrap();
    assert_eq!(status, 401, "the web UI without a certificate");
    let (status, body) = https_get(&c.http, "/webhdfs/v1/f?op=OPEN&user.name=hdfs", &no_cert).unwrap();
    assert_eq!(status, 401, "WebHDFS without a certificate: {body}");
    // WebHDFS: alice's certificate claiming hdfs is alice.
    let (status, body) = https_request(
        "PUT",
        &c.http,
        "/webhdfs/v1/by-alice?op=MKDIRS&user.name=hdfs",
        &files,
    )
    .unwrap();
    assert_eq!(status, 403, "alice made a directory in / over WebHDFS: {body}");
    assert!(body.contains("user=alice"), "{body}");
    // Parameter names are read in any case: another spelling of user.name
    // does not make alice hdfs either, on the namenode or a datanode.
    for (addr, path) in [
        (c.http.clone(), "/webhdfs/v1/by-alice?User.Name=hdfs&op=MKDIRS"),
        (
            c.datanode_http(0),
            "/webhdfs/v1/by-alice2?USER.NAME=hdfs&op=CREATE&namenoderpcaddress=x",
        ),
    ] {
        let (status, body) = https_request("PUT", &addr, path, &files).unwrap();
        assert!(
            status == 403 && body.contains("user=alice"),
            "{addr}{path}: {status} {body}"
        );
    }
    let (status, body) = https_request(
        "PUT",
        &c.http,
        "/webhdfs/v1/user/alice/w?op=MKDIRS&user.name=hdfs",
        &files,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = https_request(
        "PUT",
        &c.http,
        "/webhdfs/v1/user/alice/w2?op=MKDIRS&doas=hdfs",
        &files,
    )
    .unwrap();
    assert!(
        status == 403 && body.contains("alice is not allowed to impersonate hdfs"),
        "alice is no proxy user here: {status} {body}"
    );

    // A datanode with a certificate of another CA never registers, even
    // trusting the cluster's CA (ca.crt is no secret): the namenode refuses
    // its certificate in the handshake.
    let out = std::process::Command::new(bin_path("granary"))
        .args([
            "admin",
            "certs",
            "issue",
            "--dir",
            other.to_str().unwrap(),
            "datanode",
            "6f1c0a9e-0000-4000-8000-00000000beef",
            "--host",
            "127.0.0.1",
            "--out",
            "dn",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dn_dir = c.dir.path().join("foreign-dn");
    let (rpc, http) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let p = |name: &str| other.join(name).to_str().unwrap().to_string();
    let log = c.dir.path().join("foreign-datanode.log");
    let _foreign = Daemon::spawn(
        "granary-datanode",
        &[
            "--namenode",
            &c.rpc,
            "--cluster-secret-file",
            c.secret_file().to_str().unwrap(),
            "--data-dir",
            dn_dir.to_str().unwrap(),
            "--rpc-addr",
            &rpc,
            "--http-addr",
            &http,
            "--heartbeat-interval-ms",
            "300",
            "--auth",
            "tls",
            "--tls-cert",
            &p("dn.crt"),
            "--tls-key",
            &p("dn.key"),
            "--tls-ca",
            files.ca.to_str().unwrap(),
        ],
        &log,
    )
    .expect("spawn");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ready = c.get(&c.http, "/readyz").expect("readyz");
    assert!(
        ready.lines().any(|l| l == "datanodes 3"),
        "the foreign datanode registered: {ready}"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.to_lowercase().contains("certificate") || text.to_lowercase().contains("tls"),
        "the foreign datanode's log says why: {text}"
    );
}

/// Clients that connect to a TLS port and stall in the handshake (nothing,
/// or half a ClientHello) hold up no one: a real client is served
/// meanwhile, and each stalled connection is closed after the handshake
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_tls_handshakes_hold_up_no_one() {
    let c = ProcessCluster::start_tls(1, &["--handshake-timeout-ms", "1000"], &[], &[]);
    let mut stalled = Vec::new();
    for i in 0..40 {
        let mut s = TcpStream::connect(&c.rpc).await.expect("connect");
        if i % 2 == 1 {
            // The first bytes of a TLS ClientHello record, then nothing.
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();
        }
        stalled.push(s);
    }
    let t = std::time::Instant::now();
    let client = c.client().await;
    client
        .mkdirs("/served", None, true)
        .await
        .expect("served meanwhile");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "a client waited {:?} behind stalled handshakes",
        t.elapsed()
    );
    for (i, mut s) in stalled.into_iter().enumerate() {
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "stalled connection {i} still open after 10 s");
    }
}

/// The certificate a TLS server at `addr` presents, as DER.
fn presented(addr: &str, ca: &std::path::Path, alpn: &[u8]) -> Vec<u8> {
    let files = TlsFiles {
        ca: ca.to_path_buf(),
        ..Default::default()
    };
    let cfg = granary_common::tls::Material::load_client(&files)
        .unwrap()
        .client_config(&[alpn])
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    conn.peer_certificates().unwrap()[0].as_ref().to_vec()
}

/// SIGHUP rereads the certificate files: new connections get the rotated
/// certificate, without a restart; a file that does not load leaves the
/// one in use serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_reloads_a_rotated_certificate() {
    let c = ProcessCluster::start_tls(1, &[], &[], &[]);
    let certs = c.certs_dir().unwrap().to_path_buf();
    let ca = certs.join("ca.crt");
    let before = presented(&c.http, &ca, granary_common::tls::ALPN_HTTP1);
    // A new certificate for the same namenode, written over the old files.
    let out = std::process::Command::new(bin_path("granary"))
        .args([
            "admin",
            "certs",
            "issue",
            "--dir",
            certs.to_str().unwrap(),
            "namenode",
            "nn1",
        ])
        .args(["--host", "127.0.0.1", "--host", "localhost", "--out", "rotated"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::copy(certs.join("rotated.crt"), certs.join("namenode.crt")).unwrap();
    std::fs::copy(certs.join("rotated.key"), certs.join("namenode.key")).unwrap();
    assert_eq!(
        presented(&c.http, &ca, granary_common::tls::ALPN_HTTP1),
        before,
        "changed before any SIGHUP"
    );
    let hup = |pid: i32| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP).unwrap()
    };
    hup(c.namenode.pid());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while presented(&c.http, &ca, granary_common::tls::ALPN_HTTP1) == before {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not rotate the certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rotated = presented(&c.rpc, &ca, granary_common::tls::ALPN_H2);
    assert_ne!(rotated, before, "the RPC port rotated too");
    // A broken key: the reload fails, the rotated certificate keeps serving.
    std::fs::write(certs.join("namenode.key"), b"not a key").unwrap();
    hup(c.namenode.pid());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(presented(&c.rpc, &ca, granary_common::tls::ALPN_H2), rotated);
    let client = c.client().await;
    client
        .mkdirs("/still", None, true)
        .await
        .expect("served after a failed reload");
    assert!(c.log("namenode.log").contains("tls reload failed"));
}
