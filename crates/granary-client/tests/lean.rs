//! A program embedding `DfsClient` must not pull in a web server, Prometheus
//! or tracing-subscriber (issue 19). Those live behind granary-common's
//! `daemon` feature and tonic's `server`/`router` features, which only the
//! daemons enable; a new dependency or a feature turned on by default would
//! bring them back unnoticed, so this asks cargo what the client depends on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// Crates a client never needs.
const FORBIDDEN_CRATES: &[&str] = &[
    "axum",
    "axum-core",
    "prometheus-client",
    "tracing-subscriber",
    "maud",
];

/// Features that turn a client-side crate into a server.
const FORBIDDEN_FEATURES: &[(&str, &str)] = &[
    ("hyper", "server"),
    ("hyper-util", "server"),
    ("hyper-util", "server-auto"),
    ("tonic", "server"),
    ("tonic", "router"),
    ("granary-common", "daemon"),
];

#[test]
fn the_client_pulls_in_no_server_metrics_or_logging_setup() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--package",
            "granary-client",
            "--edges",
            "normal,features",
            "--prefix",
            "none",
            "--offline",
            "--locked",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).unwrap();
    assert!(
        tree.contains("granary-client v"),
        "unexpected cargo tree output:\n{tree}"
    );
    let mut found = Vec::new();
    for line in tree.lines() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(second)) = (words.next(), words.next()) else {
            continue;
        };
        if FORBIDDEN_CRATES.contains(&name) && second.starts_with('v') {
            found.push(line.to_string());
        }
        // `hyper feature "server"`
        if second == "feature" {
            let feature = words.next().unwrap_or_default().trim_matches('"');
            if FORBIDDEN_FEATURES.contains(&(name, feature)) {
                found.push(line.to_string());
            }
        }
    }
    found.sort();
    found.dedup();
    assert!(
        found.is_empty(),
        "granary-client depends on server-side code:\n{}",
        found.join("\n")
    );
}
