//! The shipped namenode binary: format, refusal of bad dirs, config, shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use granary_testkit::binaries::{Daemon, bin_path, free_port, wait_for_port};

fn nn(args: &[&str]) -> std::process::Output {
    Command::new(bin_path("granary-namenode"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn format_then_serve_then_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("meta");
    let d = dir.to_str().unwrap();
    let out = nn(&["format", "--data-dir", d]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("CID-"));
    // A second format would destroy the namespace: refused without --force.
    let out = nn(&["format", "--data-dir", d]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));

    let rpc = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let log = tmp.path().join("nn.log");
    let mut daemon = Daemon::spawn(
        "granary-namenode",
        &["--data-dir", d, "--rpc-addr", &rpc, "--http-addr", &http],
        &log,
    )
    .unwrap();
    assert!(wait_for_port(&rpc, Duration::from_secs(20)));
    assert!(wait_for_port(&http, Duration::from_secs(5)));
    assert_eq!(
        daemon.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("namenode stopped"), "{logs}");
}

#[test]
fn refuses_unformatted_and_foreign_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let port = free_port().to_string();
    let rpc = format!("127.0.0.1:{port}");
    let out = nn(&["--data-dir", d, "--rpc-addr", &rpc, "--http-addr", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not formatted") && err.contains("granary-namenode format"),
        "{err}"
    );
    std::fs::write(
        tmp.path().join("VERSION"),
        "layout = \"granary-datanode\"\nlayout_version = 1\ncluster_id = \"x\"\ncreated_ms = 0\n",
    )
    .unwrap();
    let out = nn(&["--data-dir", d, "--rpc-addr", &rpc, "--http-addr", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a Granary namenode"));
}

#[test]
fn check_config_layers_file_env_and_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("nn.toml");
    std::fs::write(
        &cfg,
        "rpc_addr = \"127.0.0.1:18020\"\ndefault_replication = 2\nlisting_limit = 500\n",
    )
    .unwrap();
    let out = Command::new(bin_path("granary-namenode"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--check-config",
            "--default-replication",
            "1",
        ])
        .env("GRANARY_HTTP_ADDR", "127.0.0.1:19870")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("rpc_addr = \"127.0.0.1:18020\""), "{s}");
    assert!(s.contains("http_addr = \"127.0.0.1:19870\""), "{s}");
    assert!(s.contains("default_replication = 1"), "{s}");
    assert!(s.contains("listing_limit = 500"), "{s}");
    // Those two keys are in [namespace] now: still read at the top level, with a warning.
    assert!(s.contains("[namespace]"), "{s}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`listing_limit` is now `listing_limit` in [namespace]"),
        "{err}"
    );
    std::fs::write(&cfg, "[namespace]\nlisting_limt = 5\n").unwrap();
    let out = Command::new(bin_path("granary-namenode"))
        .args(["--config", cfg.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listing_limt"));
}

/// deploy/config/*.toml are valid and name every option the daemons have,
/// so operators who copy them see everything they can set.
#[test]
fn sample_configs_are_valid_and_complete() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config");
    for daemon in ["namenode", "datanode"] {
        let sample = root.join(format!("{daemon}.toml"));
        let out = Command::new(bin_path(&format!("granary-{daemon}")))
            .arg("--config")
            .arg(&sample)
            .arg("--check-config")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{daemon}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(
            !warnings.contains("warning"),
            "{daemon}.toml uses former keys: {warnings}"
        );
        let text = std::fs::read_to_string(&sample).unwrap();
        let effective = String::from_utf8(out.stdout).unwrap();
        for key in effective
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim()))
        {
            assert!(
                text.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{key} "))),
                "{daemon}.toml does not show option {key}"
            );
        }
    }
}
