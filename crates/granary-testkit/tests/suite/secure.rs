//! Secure mode (issue 21) with real processes: TLS on every port and
//! connection, `auth = "tls"`. What crosses the data port is encrypted;
//! nothing is served to a client that does not speak TLS or has no
//! certificate of the cluster CA; a datanode of another CA cannot join.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use granary_client::{ClientOptions, CreateOptions, DfsClient, Identity};
use granary_common::data_transfer::PREAMBLE;
use granary_common::tls::{Tls, TlsFiles};
use granary_testkit::binaries::{
    Daemon, ProcessCluster, bin_path, client_files, free_port, http_get, https_get, https_request,
};
use granary_testkit::fixtures::get;

/// Text no encrypted stream shows: every line says it is the plaintext.
const MARK: &[u8] = b"granary-plaintext";

fn plaintext(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("granary-plaintext line {i:08}\n").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

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
    assert_eq!(status, 403, "doas without delegation tokens: {body}");

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

/// With `auth = "tls"` a user is the name in its certificate, whatever it
/// claims: alice claiming to be the superuser is still alice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_is_who_its_certificate_names() {
    let c = ProcessCluster::start_tls(1, &[], &[], &[]);
    let certs = c.certs_dir().unwrap().to_path_buf();
    let run = |user: &str, claims: &str, args: &[&str]| {
        let files = client_files(&certs, user);
        std::process::Command::new(bin_path("granary"))
            .args(args)
            .env("GRANARY_NAMENODE", &c.rpc)
            .env("GRANARY_USER", claims)
            .env("GRANARY_TLS_CA", &files.ca)
            .env("GRANARY_TLS_CERT", &files.cert)
            .env("GRANARY_TLS_KEY", &files.key)
            .output()
            .expect("run granary")
    };
    let out = run("alice", "hdfs", &["fs", "mkdir", "/claimed"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "alice claiming hdfs made a directory in /: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("user=alice"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("hdfs", "alice", &["fs", "mkdir", "/by-hdfs"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run("hdfs", "someone", &["fs", "ls", "/"]);
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = listing
        .lines()
        .find(|l| l.ends_with("/by-hdfs"))
        .unwrap_or_else(|| panic!("no /by-hdfs in {listing}"));
    assert!(
        line.split_whitespace().any(|w| w == "hdfs") && !line.contains("alice"),
        "/by-hdfs belongs to the certificate's user, not the claimed one: {line}"
    );
}

/// A datanode is the uuid its certificate names: it takes that uuid when
/// its data dir is new, refuses to start on another datanode's data dir,
/// and the namenode refuses a registration whose uuid is not the
/// certificate's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_datanode_is_the_uuid_its_certificate_names() {
    use granary_common::daemon_auth::{ClusterSecret, prove};
    use granary_proto as pb;
    use granary_proto::datanode_protocol_client::DatanodeProtocolClient;

    let mut c = ProcessCluster::start_tls(2, &[], &[], &[]);
    let certs = c.certs_dir().unwrap().to_path_buf();
    let named = |stem: &str| {
        let m = granary_common::tls::Material::load(&client_files(&certs, stem)).unwrap();
        m.identity().unwrap().name.clone()
    };
    assert_eq!(c.datanode_uuid(0), named("datanode1"));
    assert_eq!(c.datanode_uuid(1), named("datanode2"));

    // datanode1's certificate on datanode2's data dir: no start.
    c.datanodes[1].kill9();
    let files = client_files(&certs, "datanode1");
    let out = std::process::Command::new(bin_path("granary-datanode"))
        .args([
            "--namenode",
            &c.rpc,
            "--cluster-secret-file",
            c.secret_file().to_str().unwrap(),
            "--data-dir",
            c.datanode_dir(1).to_str().unwrap(),
            "--rpc-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--http-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--auth",
            "tls",
            "--tls-cert",
            files.cert.to_str().unwrap(),
            "--tls-key",
            files.key.to_str().unwrap(),
            "--tls-ca",
            files.ca.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "started on another datanode's data dir");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&named("datanode2")) && err.contains(&named("datanode1")),
        "the refusal names both: {err}"
    );

    // datanode1's certificate registering as datanode2 (with the cluster
    // secret, even): refused by the namenode.
    let net = granary_common::net::Net::new(Some(Tls::client(files).unwrap()));
    let ch = net
        .connect(&granary_common::net::endpoint(&c.rpc).unwrap())
        .await
        .expect("connect with datanode1's certificate");
    let secret = ClusterSecret::load(&c.secret_file()).unwrap();
    let cluster_id = granary_namenode::layout::check(&c.namenode_dir())
        .unwrap()
        .cluster_id;
    let id = pb::DatanodeId {
        uuid: named("datanode2"),
        hostname: "127.0.0.1".into(),
        rpc_addr: "127.0.0.1:9".into(),
        http_addr: "127.0.0.1:10".into(),
        rack: "/default-rack".into(),
    };
    let node_key = vec![7u8; 32];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let err = DatanodeProtocolClient::new(ch)
        .register(pb::RegisterRequest {
            proof: Some(prove(&secret, &cluster_id, &id, &node_key, now)),
            id: Some(id),
            cluster_id,
            storages: vec![],
            software_version: "test".into(),
            node_key,
        })
        .await
        .expect_err("registered as another datanode");
    assert!(
        err.message().contains("not datanode"),
        "the refusal says why: {}",
        err.message()
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

/// The audit log has a line per namespace operation in HDFS's format: who
/// (the certificate's user), from where, what, on which paths, allowed or
/// not, over gRPC and WebHDFS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_log_has_a_line_per_operation() {
    let audit = tempfile::tempdir().unwrap();
    let log = audit.path().join("hdfs-audit.log");
    let c = ProcessCluster::start_tls(1, &["--audit-file", log.to_str().unwrap()], &[], &[]);
    let certs = c.certs_dir().unwrap().to_path_buf();
    let client = c.client().await;
    client.mkdirs("/user/alice", None, true).await.unwrap();
    client
        .set_owner("/user/alice", Some("alice"), None)
        .await
        .unwrap();
    let files = client_files(&certs, "alice");
    let cli = |args: &[&str]| {
        std::process::Command::new(bin_path("granary"))
            .args(args)
            .env("GRANARY_NAMENODE", &c.rpc)
            .env("GRANARY_TLS_CA", &files.ca)
            .env("GRANARY_TLS_CERT", &files.cert)
            .env("GRANARY_TLS_KEY", &files.key)
            .output()
            .expect("run granary")
    };
    let local = c.dir.path().join("a.txt");
    std::fs::write(&local, b"audited").unwrap();
    for args in [
        vec!["fs", "put", local.to_str().unwrap(), "/user/alice/a.txt"],
        vec!["fs", "cat", "/user/alice/a.txt"],
        vec!["fs", "mv", "/user/alice/a.txt", "/user/alice/b.txt"],
        vec!["fs", "chmod", "600", "/user/alice/b.txt"],
        vec!["fs", "ls", "/user/alice"],
        vec!["fs", "rm", "/user/alice/b.txt"],
    ] {
        let out = cli(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = cli(&["fs", "mkdir", "/not-hers"]);
    assert!(!out.status.success(), "alice made a directory in /");
    let (status, _) = https_request("PUT", &c.http, "/webhdfs/v1/user/alice/web?op=MKDIRS", &files).unwrap();
    assert_eq!(status, 200);

    let want = [
        "allowed=true\tugi=alice (auth:TLS)\tip=/127.0.0.1\tcmd=create\tsrc=/user/alice/a.txt\tdst=null",
        "allowed=true\tugi=alice (auth:TLS)\tip=/127.0.0.1\tcmd=open\tsrc=/user/alice/a.txt\tdst=null",
        "allowed=true\tugi=alice (auth:TLS)\tip=/127.0.0.1\tcmd=rename\tsrc=/user/alice/a.txt\tdst=/user/alice/b.txt",
        "allowed=true\tugi=alice (auth:TLS)\tip=/127.0.0.1\tcmd=setPermission\tsrc=/user/alice/b.txt\tdst=null\tperm=600",
        "allowed=true\tugi=alice (auth:TLS)\tip=/127.0.0.1\tcmd=listStatus\tsrc=/user/alice\tdst=null",
        "allowed=true\tugi=alice (auth:TLS)\tip=/127.0.0.1\tcmd=delete\tsrc=/user/alice/b.txt\tdst=null",
        "allowed=false\tugi=alice (auth:TLS)\tip=/127.0.0.1\tcmd=mkdirs\tsrc=/not-hers\tdst=null",
        "allowed=true\tugi=alice (auth:TLS)\tip=null\tcmd=mkdirs\tsrc=/user/alice/web\tdst=null",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let missing: Vec<&str> = want.iter().copied().filter(|w| !text.contains(w)).collect();
        if missing.is_empty() {
            assert!(
                text.lines()
                    .all(|l| l.contains(" INFO FSNamesystem.audit: allowed=")),
                "{text}"
            );
            assert!(
                text.lines()
                    .any(|l| l.ends_with("proto=webhdfs") && l.contains("src=/user/alice/web")),
                "{text}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "missing audit lines {missing:#?} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A block token is issued to a user: presented over another user's
/// certificate, the datanode refuses it (a leaked token reads nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_block_token_serves_only_the_user_it_was_issued_to() {
    use granary_proto as pb;
    use granary_proto::data_transfer_client::DataTransferClient;

    let c = ProcessCluster::start_tls(1, &[], &[], &[]);
    let certs = c.certs_dir().unwrap().to_path_buf();
    let hdfs = c.client().await;
    let data = plaintext(100_000);
    granary_testkit::fixtures::put(&hdfs, "/secret", &data, 1 << 20).await;
    let located = granary_testkit::fixtures::located_blocks(&hdfs, "/secret").await;
    let lb = located.blocks.first().expect("a block").clone();
    let dn = lb.locations[0].id.as_ref().unwrap().rpc_addr.clone();
    let read_as = |user: &'static str| {
        let (certs, dn, lb) = (certs.clone(), dn.clone(), lb.clone());
        async move {
            let net = granary_common::net::Net::new(Some(Tls::client(client_files(&certs, user)).unwrap()));
            let mut dt = DataTransferClient::new(net.lazy_channel(&dn).unwrap());
            let mut stream = dt
                .read_block(pb::ReadBlockRequest {
                    block: lb.block,
                    offset: 0,
                    length: 1000,
                    access_token: lb.access_token.clone(),
                })
                .await?
                .into_inner();
            stream.message().await.map(|m| m.map(|p| p.data.len()))
        }
    };
    let own = read_as("hdfs").await.expect("the token's user reads");
    assert!(own.unwrap_or(0) > 0, "no data for the token's user");
    let stolen = read_as("alice").await.expect_err("alice read with hdfs's token");
    assert!(
        stolen.message().contains("another user"),
        "the refusal says why: {}",
        stolen.message()
    );
}

/// Delegation tokens (`auth = "token"`): a user with a certificate gets
/// one; a client with only the CA and the token acts as that user; the
/// token works after a namenode restart, renews, and stops at cancel and
/// at expiry; a token cannot get another; an altered one proves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delegation_tokens_survive_restarts_and_end_at_cancel_and_expiry() {
    let conf = tempfile::tempdir().unwrap();
    let toml = conf.path().join("nn.toml");
    std::fs::write(&toml, "[delegation_tokens]\nrenew_interval_ms = 8000\n").unwrap();
    let mut c = ProcessCluster::start_tls(
        1,
        &["--auth", "token", "--config", toml.to_str().unwrap()],
        &["--auth", "token"],
        &[],
    );
    let certs = c.certs_dir().unwrap().to_path_buf();
    let hdfs = client_files(&certs, "hdfs");
    let run = |rpc: &str, cert: bool, token: Option<&str>, args: &[&str]| {
        let mut cmd = std::process::Command::new(bin_path("granary"));
        cmd.args(args)
            .env("GRANARY_NAMENODE", rpc)
            .env("GRANARY_USER", "mallory")
            .env("GRANARY_TLS_CA", &hdfs.ca)
            .env_remove("GRANARY_TLS_CERT")
            .env_remove("GRANARY_TLS_KEY")
            .env_remove("GRANARY_TOKEN");
        if cert {
            cmd.env("GRANARY_TLS_CERT", &hdfs.cert)
                .env("GRANARY_TLS_KEY", &hdfs.key);
        }
        if let Some(t) = token {
            cmd.env("GRANARY_TOKEN", t);
        }
        cmd.output().expect("run granary")
    };
    let get = |rpc: &str| {
        let out = run(rpc, true, None, &["admin", "token", "get", "--renewer", "hdfs"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let expiry: i64 = err
            .split_whitespace()
            .skip_while(|w| *w != "expiry_ms")
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no expiry in {err}"));
        (token, expiry)
    };
    let (t1, _) = get(&c.rpc);
    let (t2, t2_expiry) = get(&c.rpc);
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // The CA and the token: acts as hdfs (not the claimed mallory).
    let out = run(&c.rpc, false, Some(&t1), &["fs", "mkdir", "/by-token"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&c.rpc, false, Some(&t1), &["fs", "ls", "/"]);
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = listing
        .lines()
        .find(|l| l.ends_with("/by-token"))
        .expect("listed");
    assert!(line.contains("hdfs") && !line.contains("mallory"), "{line}");
    // Neither certificate nor token: refused, saying what is needed.
    let out = run(&c.rpc, false, None, &["fs", "ls", "/"]);
    assert!(!out.status.success(), "served without credentials");
    assert!(stderr(&out).contains("delegation token"), "{}", stderr(&out));
    // A token cannot get another; an altered token proves nothing.
    let out = run(&c.rpc, false, Some(&t1), &["admin", "token", "get"]);
    assert!(!out.status.success(), "a token got a token");
    let mut altered = t1.clone().into_bytes();
    let i = altered.len() / 3;
    altered[i] = if altered[i] == b'0' { b'1' } else { b'0' };
    let altered = String::from_utf8(altered).unwrap();
    let out = run(&c.rpc, false, Some(&altered), &["fs", "ls", "/"]);
    assert!(!out.status.success(), "an altered token was taken");

    // After a restart, the token still works (keys and tokens are in the
    // namespace), and renews.
    c.restart_namenode();
    let out = run(&c.rpc, false, Some(&t1), &["fs", "ls", "/by-token"]);
    assert!(out.status.success(), "after the restart: {}", stderr(&out));
    let out = run(&c.rpc, true, None, &["admin", "token", "renew", &t1]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Cancelled: refused at once.
    let out = run(&c.rpc, true, None, &["admin", "token", "cancel", &t1]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&c.rpc, false, Some(&t1), &["fs", "ls", "/"]);
    assert!(!out.status.success(), "a cancelled token was taken");
    assert!(stderr(&out).contains("cancelled"), "{}", stderr(&out));
    // Past its expiry (not renewed): refused.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    if t2_expiry + 300 > now {
        tokio::time::sleep(Duration::from_millis((t2_expiry + 300 - now) as u64)).await;
    }
    let out = run(&c.rpc, false, Some(&t2), &["fs", "ls", "/"]);
    assert!(!out.status.success(), "an expired token was taken");
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
}
