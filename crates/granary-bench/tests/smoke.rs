//! Every benchmark runs end to end at tiny sizes, so the tool never rots;
//! the figures themselves are measured by hand (docs/performance.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use granary_testkit::binaries::ProcessCluster;

fn bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_granary-bench"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The numeric value of `key=` on the line starting with `prefix`.
fn field(out: &str, prefix: &str, key: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in {out}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

#[test]
fn namenode_benchmark_runs_every_phase_every_way() {
    let mut out = bench(&["namenode", "--ops", "300", "--threads", "4", "--connections", "2"]);
    out += &bench(&["namenode", "--ops", "300", "--threads", "4", "--mode", "direct"]);
    for mode in ["in-process", "grpc", "direct"] {
        for phase in ["mkdirs", "create", "getfileinfo", "listing", "rename", "delete"] {
            let p = format!("namenode {mode} {phase}:");
            let ops = field(&out, &p, "ops");
            assert_eq!(ops, if phase == "listing" { 1.0 } else { 300.0 }, "{p}");
            assert!(field(&out, &p, "ops_per_sec") > 0.0);
        }
    }
}

#[test]
fn blockreport_and_scale_benchmarks_run() {
    let out = bench(&["blockreport", "--blocks", "2500", "--threads", "4"]);
    assert_eq!(field(&out, "blockreport first:", "blocks"), 2500.0);
    assert!(field(&out, "blockreport repeated:", "blocks_per_sec") > 0.0);
    let out = bench(&["scale", "--files", "2000", "--threads", "4"]);
    assert_eq!(field(&out, "scale create:", "files"), 2000.0);
    assert!(field(&out, "scale create:", "process_rss_mib") > 0.0);
    assert!(field(&out, "scale rocksdb:", "bytes_on_disk") > 0.0);
    assert!(field(&out, "scale restart:", "seconds_to_serving_getfileinfo") > 0.0);
}

#[test]
fn dfsio_writes_reads_and_compares_with_dd_and_a_plain_relay() {
    let c = ProcessCluster::start(3, &[]);
    let dd = c.dir.path().to_str().unwrap().to_string();
    let out = bench(&[
        "dfsio",
        "--namenode",
        &c.rpc,
        "--files",
        "2",
        "--size-mib",
        "3",
        "--block-mib",
        "1",
        "--dd-dir",
        &dd,
        "--settle-secs",
        "0",
    ]);
    assert!(field(&out, "dfsio write:", "aggregate_mib_per_s") > 0.0);
    assert!(field(&out, "dfsio read:", "aggregate_mib_per_s") > 0.0);
    assert!(field(&out, "dd 3 copies", "granary_write_vs_dd") > 0.0);
    assert!(field(&out, "relay 2 chains of 3", "granary_write_vs_relay") > 0.0);
    let left: Vec<_> = std::fs::read_dir(&dd)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("granary-"))
        .collect();
    assert!(left.is_empty(), "comparison files left behind: {left:?}");
}

#[test]
fn tls_on_against_off_writes_and_reads_on_both() {
    let out = bench(&["tls", "--files", "1", "--size-mib", "2", "--rounds", "1"]);
    for key in ["put_plain", "put_tls", "get_plain", "get_tls"] {
        assert!(field(&out, "tls summary:", key) > 0.0, "{key} in {out}");
    }
}

#[test]
fn audit_on_against_off_runs_and_writes_lines() {
    let out = bench(&[
        "audit",
        "--ops",
        "200",
        "--threads",
        "4",
        "--connections",
        "2",
        "--rounds",
        "1",
    ]);
    assert!(
        field(&out, "audit summary: phase=create", "ops_per_sec_on") > 0.0,
        "{out}"
    );
    assert!(field(&out, "audit log:", "lines") > 0.0, "{out}");
}
