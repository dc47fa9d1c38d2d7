//! The secure compose cluster of deploy/docker-compose.secure.yml: TLS on
//! every port, `auth = "tls"`, certificates written by `granary admin certs
//! init` for the addresses the containers have. The CLI on the host writes
//! and reads a file through the published namenode port and the datanodes'
//! container addresses, with its certificate; without one it is refused.
//!
//! Needs Docker and the image `scripts/docker-image.sh` builds
//! (`scripts/test.sh` builds it as granary:test before the tests run).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use granary_testkit::binaries::{bin_path, client_files, free_port, https_get};
use granary_testkit::fixtures::pseudo_random;

use super::compose::{Compose, compose_program};

/// Certificates for the cluster on `prefix` (three octets), then the cluster.
fn up_secure(image: &str, certs: &std::path::Path) -> (Compose, String, String) {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/docker-compose.secure.yml");
    let pid = std::process::id();
    let mut last = String::new();
    for attempt in 0..5u32 {
        let prefix = format!(
            "172.{}.{}",
            20 + (pid + attempt + 5) % 11,
            (pid / 7 + attempt * 41) % 250
        );
        let dir = certs.join(format!("try{attempt}"));
        let hosts: Vec<String> = (11..=13).map(|i| format!("{prefix}.{i}")).collect();
        let mut args = vec![
            "admin".to_string(),
            "certs".into(),
            "init".into(),
            "--dir".into(),
            dir.to_str().unwrap().into(),
            "--nn".into(),
            "nn1=namenode,localhost,127.0.0.1".into(),
            "--datanodes".into(),
            "3".into(),
            "--client".into(),
            "hdfs".into(),
        ];
        for h in &hosts {
            args.extend(["--datanode-host".to_string(), h.clone()]);
        }
        let out = Command::new(bin_path("granary")).args(&args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let (rpc, http) = (free_port(), free_port());
        let env: Vec<(String, String)> = [
            ("GRANARY_IMAGE", image.to_string()),
            ("GRANARY_CERTS", dir.to_str().unwrap().to_string()),
            ("GRANARY_SUBNET_PREFIX", prefix.clone()),
            ("GRANARY_RPC_PORT", rpc.to_string()),
            ("GRANARY_HTTP_PORT", http.to_string()),
            ("GRANARY_HEARTBEAT_INTERVAL_MS", "300".into()),
            ("GRANARY_SAFEMODE_EXTENSION_MS", "500".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let c = Compose {
            project: format!("granarysecure{pid}x{attempt}"),
            file: file.clone(),
            env,
            program: compose_program(),
        };
        let out = c.run(&["up", "-d"]);
        if out.status.success() {
            let http_addr = format!("127.0.0.1:{http}");
            let files = client_files(&dir, "hdfs");
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let ready = https_get(&http_addr, "/readyz", &files)
                    .is_some_and(|(s, b)| s == 200 && b.lines().any(|l| l == "datanodes 3"));
                if ready {
                    return (c, format!("127.0.0.1:{rpc}"), dir.to_str().unwrap().to_string());
                }
                assert!(
                    Instant::now() < deadline,
                    "secure compose cluster not ready: {}",
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

#[test]
fn secure_compose_cluster_serves_certificate_holders_only() {
    let image = std::env::var("GRANARY_TEST_IMAGE").unwrap_or_else(|_| "granary:test".into());
    let tmp = tempfile::tempdir().unwrap();
    let (_c, rpc, certs) = up_secure(&image, tmp.path());
    let files = client_files(std::path::Path::new(&certs), "hdfs");
    let data = pseudo_random(3 << 20, 21);
    let local = tmp.path().join("in.bin");
    std::fs::write(&local, &data).unwrap();
    let cli = |tls: bool, args: &[&str]| {
        let mut cmd = Command::new(bin_path("granary"));
        cmd.args(args)
            .env("GRANARY_NAMENODE", &rpc)
            .env_remove("GRANARY_TLS_CA")
            .env_remove("GRANARY_TLS_CERT")
            .env_remove("GRANARY_TLS_KEY");
        if tls {
            cmd.env("GRANARY_TLS_CA", &files.ca)
                .env("GRANARY_TLS_CERT", &files.cert)
                .env("GRANARY_TLS_KEY", &files.key);
        }
        cmd.output().unwrap()
    };
    let out = cli(true, &["fs", "put", local.to_str().unwrap(), "/in.bin"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(true, &["fs", "cat", "/in.bin"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.stdout == data,
        "read back {} bytes, not the file",
        out.stdout.len()
    );
    let out = cli(false, &["fs", "ls", "/"]);
    assert!(!out.status.success(), "served a client in the clear");
}
