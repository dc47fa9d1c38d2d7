//! Delegation tokens with real processes.

use std::time::Duration;

use granary_testkit::binaries::{ProcessCluster, bin_path, client_files};

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

    // A token cannot renew itself (a thief would keep it alive).
    let out = run(&c.rpc, false, Some(&t1), &["admin", "token", "renew", &t1]);
    assert!(!out.status.success(), "a token renewed itself");
    // A datanode's WebHDFS with a token that is no token: refused, never
    // served as the datanode's own user.
    let no_cert = granary_common::tls::TlsFiles {
        ca: hdfs.ca.clone(),
        ..Default::default()
    };
    for bad in ["%0A", "zz", "%C3%A9"] {
        let path = format!("/webhdfs/v1/sneaky?op=CREATE&user.name=hdfs&delegation={bad}");
        let (status, body) =
            granary_testkit::binaries::https_request("PUT", &c.datanode_http(0), &path, &no_cert).unwrap();
        assert_eq!(status, 401, "{bad}: {body}");
    }
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

/// HdfsCLI (PyPI), unmodified, against WebHDFS with TLS and `auth =
/// "token"`: its TokenClient with a delegation token, its Client with a
/// certificate acting for another user (tests/python_secure/test_tokens.py).
#[test]
fn hdfscli_works_with_a_delegation_token() {
    let conf = tempfile::tempdir().unwrap();
    let toml = conf.path().join("nn.toml");
    std::fs::write(&toml, "[webhdfs]\nproxy_users = [\"hdfs\"]\n").unwrap();
    let c = ProcessCluster::start_tls(
        3,
        &["--auth", "token", "--config", toml.to_str().unwrap()],
        &["--auth", "token"],
        &[],
    );
    let files = client_files(c.certs_dir().unwrap(), "hdfs");
    let alice = client_files(c.certs_dir().unwrap(), "alice");
    let (passed, report) = granary_testkit::binaries::pytest(
        "python_secure",
        &c.dir.path().join("pytest"),
        &[
            ("GRANARY_NN_HTTP", c.http.as_ref()),
            ("GRANARY_TLS_CA", files.ca.as_os_str()),
            ("GRANARY_TLS_CERT", files.cert.as_os_str()),
            ("GRANARY_TLS_KEY", files.key.as_os_str()),
            ("GRANARY_ALICE_CERT", alice.cert.as_os_str()),
            ("GRANARY_ALICE_KEY", alice.key.as_os_str()),
        ],
    );
    assert!(passed, "the Python token tests failed:\n{report}");
    assert!(report.contains("6 passed"), "{report}");
}
