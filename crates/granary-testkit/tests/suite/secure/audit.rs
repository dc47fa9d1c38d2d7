//! The audit log, from a running cluster.

use std::time::Duration;

use granary_testkit::binaries::{ProcessCluster, bin_path, client_files, https_request};

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
        vec!["fs", "rm", "-skipTrash", "/user/alice/b.txt"],
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
