//! Who a caller is: a user's certificate, a datanode's uuid, a block
//! token's user.

use granary_common::tls::Tls;
use granary_testkit::binaries::{ProcessCluster, bin_path, client_files, free_port, https_request};

use super::plaintext;

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

/// `[tls] user_rules` (HDFS's auth_to_local): the namenode maps a user
/// certificate's name to the user it acts as.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_rules_map_certificate_names_to_users() {
    let conf = tempfile::tempdir().unwrap();
    let toml = conf.path().join("nn.toml");
    std::fs::write(
        &toml,
        "[tls]\nuser_rules = [{ pattern = \"al(.*)\", user = \"ext_al$1\" }]\n",
    )
    .unwrap();
    let c = ProcessCluster::start_tls(1, &["--config", toml.to_str().unwrap()], &[], &[]);
    let certs = c.certs_dir().unwrap().to_path_buf();
    let hdfs = c.client().await;
    hdfs.mkdirs("/user/ext_alice", None, true).await.unwrap();
    hdfs.set_owner("/user/ext_alice", Some("ext_alice"), None)
        .await
        .unwrap();
    let files = client_files(&certs, "alice");
    let out = std::process::Command::new(bin_path("granary"))
        .args(["fs", "mkdir", "/user/ext_alice/mine"])
        .env("GRANARY_NAMENODE", &c.rpc)
        .env("GRANARY_TLS_CA", &files.ca)
        .env("GRANARY_TLS_CERT", &files.cert)
        .env("GRANARY_TLS_KEY", &files.key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st = hdfs.stat("/user/ext_alice/mine").await.unwrap();
    assert_eq!(
        st.owner, "ext_alice",
        "the mapped user owns what alice's certificate made"
    );
}

/// Proxy users (HDFS's doas), over gRPC and WebHDFS with certificates: a
/// proxy user named in `[webhdfs] proxy_users` acts for another user (the
/// audit log says so); anyone else asking to is refused, naming both, at
/// the namenode and at a datanode.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_proxy_users_act_for_others() {
    let conf = tempfile::tempdir().unwrap();
    let toml = conf.path().join("nn.toml");
    std::fs::write(&toml, "[webhdfs]\nproxy_users = [\"alice\"]\n").unwrap();
    let log = conf.path().join("hdfs-audit.log");
    let c = ProcessCluster::start_tls(
        1,
        &[
            "--config",
            toml.to_str().unwrap(),
            "--audit-file",
            log.to_str().unwrap(),
        ],
        &[],
        &[],
    );
    let certs = c.certs_dir().unwrap().to_path_buf();
    let run = |user: &str, doas: &str, args: &[&str]| {
        let files = client_files(&certs, user);
        std::process::Command::new(bin_path("granary"))
            .args(args)
            .env("GRANARY_NAMENODE", &c.rpc)
            .env("GRANARY_DOAS", doas)
            .env("GRANARY_TLS_CA", &files.ca)
            .env("GRANARY_TLS_CERT", &files.cert)
            .env("GRANARY_TLS_KEY", &files.key)
            .output()
            .unwrap()
    };
    // alice (a proxy user) for hdfs: a directory in / owned by hdfs.
    let out = run("alice", "hdfs", &["fs", "mkdir", "/for-hdfs"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st = c.client().await.stat("/for-hdfs").await.unwrap();
    assert_eq!(st.owner, "hdfs");
    // hdfs is no proxy user: refused, naming both.
    let out = run("hdfs", "alice", &["fs", "mkdir", "/for-alice"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hdfs is not allowed to impersonate alice"), "{err}");

    // WebHDFS: the namenode sends alice on to a datanode as herself,
    // acting for hdfs; the datanode's gateway passes that on and the
    // namenode allows it again.
    let alice = client_files(&certs, "alice");
    let (status, body) = https_request(
        "PUT",
        &c.http,
        "/webhdfs/v1/web-for-hdfs?op=CREATE&doas=hdfs&user.name=hdfs&noredirect=true",
        &alice,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let to: serde_json::Value = serde_json::from_str(&body).unwrap();
    let to = to["Location"].as_str().unwrap().strip_prefix("https://").unwrap();
    let (dn, pq) = to.split_at(to.find('/').unwrap());
    assert!(pq.contains("user.name=alice") && pq.contains("doas=hdfs"), "{pq}");
    let (status, body) = https_request("PUT", dn, pq, &alice).unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, body) =
        https_request("PUT", &c.http, "/webhdfs/v1/web-dir?op=MKDIRS&doas=hdfs", &alice).unwrap();
    assert_eq!(status, 200, "{body}");
    let hdfs = c.client().await;
    for made in ["/web-for-hdfs", "/web-dir"] {
        assert_eq!(hdfs.stat(made).await.unwrap().owner, "hdfs", "{made}");
    }
    // hdfs is no proxy user, at the namenode or at a datanode (whose
    // gateway leaves the decision to the namenode).
    let hdfs_files = client_files(&certs, "hdfs");
    for (addr, path) in [
        (c.http.clone(), "/webhdfs/v1/x?op=MKDIRS&doas=alice"),
        (
            c.datanode_http(0),
            "/webhdfs/v1/y?op=CREATE&doas=alice&namenoderpcaddress=x",
        ),
    ] {
        let (status, body) = https_request("PUT", &addr, path, &hdfs_files).unwrap();
        assert!(
            status == 403 && body.contains("hdfs is not allowed to impersonate alice"),
            "{addr}{path}: {status} {body}"
        );
    }
    assert!(hdfs.stat("/x").await.is_err() && hdfs.stat("/y").await.is_err());

    // The audit log names both users of each proxied call, as HDFS's does.
    let want = [
        ("mkdirs", "/for-hdfs", "rpc"),
        ("create", "/web-for-hdfs", "rpc"),
        ("mkdirs", "/web-dir", "webhdfs"),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let found = want.iter().all(|(cmd, src, proto)| {
            text.lines().any(|l| {
                l.contains("\tugi=hdfs (auth:PROXY) via alice (auth:TLS)\t")
                    && l.contains(&format!("\tcmd={cmd}\tsrc={src}\t"))
                    && l.ends_with(&format!("\tproto={proto}"))
            })
        });
        if found {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "proxied calls not audited as such: {want:?} in\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
