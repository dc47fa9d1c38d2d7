//! Data commands of the real `granary` binary against a cluster of real
//! namenode and datanode processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use granary_testkit::binaries::{FAST_LIVENESS, ProcessCluster};
use granary_testkit::fixtures::pseudo_random;

fn granary(c: &ProcessCluster, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_granary"))
        .args(["--namenode", &c.rpc])
        .args(args)
        .env("GRANARY_USER", "hdfs")
        .output()
        .unwrap()
}

fn ok(c: &ProcessCluster, args: &[&str]) -> String {
    let o = granary(c, args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn put_get_cat_cp_checksum_with_real_processes() {
    let c = ProcessCluster::start(3, &["--min-block-size", "65536"]);
    let tmp = c.dir.path();
    let local = tmp.join("in.bin");
    let bytes = pseudo_random(3 * 1024 * 1024 + 17, 1);
    std::fs::write(&local, &bytes).unwrap();
    ok(&c, &["fs", "mkdir", "-p", "/up"]);
    ok(&c, &["fs", "put", local.to_str().unwrap(), "/up/"]);
    // put refuses to overwrite without -f, with the path in the message.
    let o = granary(&c, &["fs", "put", local.to_str().unwrap(), "/up/in.bin"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/up/in.bin: File exists"));
    ok(&c, &["fs", "put", "-f", local.to_str().unwrap(), "/up/in.bin"]);

    let back = tmp.join("back.bin");
    ok(&c, &["fs", "get", "/up/in.bin", back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&back).unwrap(), bytes);
    let o = granary(&c, &["fs", "get", "/up/in.bin", back.to_str().unwrap()]);
    assert!(
        !o.status.success(),
        "get must not overwrite a local file without -f"
    );

    // stdin and stdout.
    let mut child = Command::new(env!("CARGO_BIN_EXE_granary"))
        .args(["--namenode", &c.rpc, "fs", "put", "-", "/up/stdin.txt"])
        .env("GRANARY_USER", "hdfs")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"line one\nline two\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(ok(&c, &["fs", "cat", "/up/stdin.txt"]), "line one\nline two\n");
    assert_eq!(ok(&c, &["fs", "tail", "/up/stdin.txt"]), "line one\nline two\n");

    // cp makes an identical copy: same bytes, same checksum.
    ok(&c, &["fs", "cp", "/up/in.bin", "/up/copy.bin"]);
    let sum1 = ok(&c, &["fs", "checksum", "/up/in.bin"]);
    let sum2 = ok(&c, &["fs", "checksum", "/up/copy.bin"]);
    assert!(sum1.contains("MD5-of-0MD5-of-512CRC32C"), "{sum1}");
    assert_eq!(sum1.split('\t').nth(2), sum2.split('\t').nth(2));
    assert_ne!(
        ok(&c, &["fs", "checksum", "/up/stdin.txt"]).split('\t').nth(2),
        sum1.split('\t').nth(2)
    );

    // Directories, recursively, both ways.
    let tree = tmp.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("a.txt"), b"alpha").unwrap();
    std::fs::write(tree.join("sub/b.txt"), b"beta").unwrap();
    ok(&c, &["fs", "put", "-r", tree.to_str().unwrap(), "/up/tree"]);
    assert_eq!(ok(&c, &["fs", "cat", "/up/tree/sub/b.txt"]), "beta");
    let down = tmp.join("down");
    ok(&c, &["fs", "get", "/up/tree", down.to_str().unwrap()]);
    assert_eq!(std::fs::read(down.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(std::fs::read(down.join("sub/b.txt")).unwrap(), b"beta");

    // appendToFile adds at the end (and creates missing files).
    ok(
        &c,
        &[
            "fs",
            "appendToFile",
            tree.join("a.txt").to_str().unwrap(),
            tree.join("sub/b.txt").to_str().unwrap(),
            "/up/stdin.txt",
        ],
    );
    assert_eq!(
        ok(&c, &["fs", "cat", "/up/stdin.txt"]),
        "line one\nline two\nalphabeta"
    );
    ok(
        &c,
        &[
            "fs",
            "appendToFile",
            tree.join("a.txt").to_str().unwrap(),
            "/up/fresh.txt",
        ],
    );
    assert_eq!(ok(&c, &["fs", "cat", "/up/fresh.txt"]), "alpha");
    let o = granary(&c, &["fs", "cat", "/up/missing"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("granary: /up/missing: No such file or directory"));
}

#[test]
fn one_gib_round_trip_with_three_replicas() {
    let c = ProcessCluster::start(3, &[]);
    let tmp = c.dir.path();
    let local = tmp.join("big.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&local).unwrap());
        for i in 0..64u64 {
            f.write_all(&pseudo_random(16 << 20, i + 7)).unwrap();
        }
        f.flush().unwrap();
    }
    use std::io::Write;
    ok(&c, &["fs", "put", local.to_str().unwrap(), "/big.bin"]);
    assert_eq!(
        ok(&c, &["fs", "stat", "%b %r", "/big.bin"]).trim(),
        "1073741824 3"
    );
    let back = tmp.join("big.back");
    ok(&c, &["fs", "get", "/big.bin", back.to_str().unwrap()]);
    let same = Command::new("cmp")
        .args([&local, &back])
        .status()
        .unwrap()
        .success();
    assert!(same, "1 GiB file read back differs");
    // 8 blocks of 128 MiB, each on three distinct datanodes.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = granary_client::DfsClient::connect(&c.rpc, granary_client::Identity::new("hdfs"))
            .await
            .unwrap();
        let lb = client.block_locations("/big.bin", 0, 0).await.unwrap();
        assert_eq!(lb.blocks.len(), 8);
        for b in lb.blocks {
            let nodes: std::collections::HashSet<_> = b.locations.iter().map(|l| l.id.uuid.clone()).collect();
            assert_eq!(nodes.len(), 3);
        }
    });
}

#[test]
fn a_datanode_refuses_a_data_dir_of_another_cluster() {
    let mut a = ProcessCluster::start(1, &[]);
    let dn_dir = a.datanode_dir(0);
    // The data dir records its cluster once the namenode accepted it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let v = std::fs::read_to_string(dn_dir.join("VERSION")).unwrap();
        if v.contains("cluster_id = \"CID-") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cluster id never recorded: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    a.datanodes[0].kill9();
    // A new cluster (fresh format) must not adopt that data dir.
    let b = ProcessCluster::start(0, &[]);
    let rpc = format!("127.0.0.1:{}", granary_testkit::binaries::free_port());
    let out = Command::new(granary_testkit::binaries::bin_path("granary-datanode"))
        .args([
            "--namenode",
            &b.rpc,
            "--cluster-secret-file",
            b.secret_file().to_str().unwrap(),
            "--data-dir",
            dn_dir.to_str().unwrap(),
            "--rpc-addr",
            &rpc,
            "--http-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("belongs to cluster") && err.contains("CID-"),
        "{err}"
    );
}

#[test]
fn a_killed_writer_leaves_a_consistent_readable_file_after_lease_recovery() {
    let c = ProcessCluster::start(
        3,
        &[
            "--lease-soft-limit-ms",
            "1000",
            "--lease-hard-limit-ms",
            "3000",
            "--default-block-size",
            "1048576",
        ],
    );
    let bytes = pseudo_random(3 * 1024 * 1024 + 512 * 1024, 9);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt
        .block_on(granary_client::DfsClient::connect(
            &c.rpc,
            granary_client::Identity::new("hdfs"),
        ))
        .unwrap();
    for round in 0..3 {
        let path = format!("/crash{round}.bin");
        let mut child = Command::new(env!("CARGO_BIN_EXE_granary"))
            .args(["--namenode", &c.rpc, "fs", "put", "-", &path])
            .env("GRANARY_USER", "hdfs")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(&bytes).unwrap();
            stdin.flush().unwrap();
            // Keep stdin open: the writer is mid-file when it dies.
            std::thread::sleep(std::time::Duration::from_millis(1500 + 200 * round));
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let st = loop {
            let st = rt.block_on(client.stat(&path)).unwrap();
            if !st.under_construction {
                break st;
            }
            assert!(std::time::Instant::now() < deadline, "{path} never recovered");
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        // Lease recovery keeps every byte all replicas received, so the
        // length need not be whole blocks: only a prefix of what was sent.
        assert!(st.length > 0, "{path}: recovered empty");
        let back = c.dir.path().join(format!("crash{round}.back"));
        ok(&c, &["fs", "get", &path, back.to_str().unwrap()]);
        let got = std::fs::read(&back).unwrap();
        assert_eq!(
            got,
            &bytes[..got.len()],
            "{path}: recovered content is not a prefix of what was written"
        );
    }
}

/// `granary fsck` and `granary admin report` tell healthy, under-replicated
/// and missing blocks apart, with HDFS's verdicts and exit codes.
#[test]
fn fsck_and_report_follow_block_health() {
    let mut c = ProcessCluster::start(3, FAST_LIVENESS);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("f");
    std::fs::write(&local, pseudo_random(200_000, 3)).unwrap();
    ok(&c, &["fs", "mkdir", "/h"]);
    ok(&c, &["fs", "put", local.to_str().unwrap(), "/h/f"]);
    let out = ok(&c, &["fsck", "/h", "-files", "-blocks", "-locations"]);
    assert!(
        out.contains("/h/f 200000 bytes, replicated: replication=3, 1 block(s):  OK"),
        "{out}"
    );
    assert!(out.contains("Live_repl=3"), "{out}");
    assert!(out.contains("The filesystem under path '/h' is HEALTHY"), "{out}");
    assert!(out.contains(" Total files:\t1"), "{out}");

    // One of three nodes dies: every block is under-replicated, nothing lost.
    c.datanodes[0].kill9();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let report = ok(&c, &["admin", "report"]);
        if report.contains("Under replicated blocks: 1") && report.contains("1 dead") {
            assert!(report.contains("Missing blocks: 0"), "{report}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{report}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = ok(&c, &["fsck", "/h"]);
    assert!(out.contains("Under-replicated blocks:\t1 (100.0 %)"), "{out}");
    assert!(out.contains("is HEALTHY"), "{out}");

    // All replicas gone: CORRUPT, exit 1, the file and block named.
    c.datanodes[1].kill9();
    c.datanodes[2].kill9();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let o = granary(&c, &["fsck", "/h"]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        if !o.status.success() {
            assert!(out.contains("/h/f 200000 bytes"), "{out}");
            assert!(out.contains("MISSING!"), "{out}");
            assert!(out.contains("is CORRUPT"), "{out}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{out}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let report = ok(&c, &["admin", "report"]);
    assert!(report.contains("3 dead"), "{report}");
}

/// `granary admin checkpoint` backs the metadata up consistently; a namenode
/// started on the copy serves what existed then.
#[test]
fn a_metadata_checkpoint_restores_the_namespace() {
    let mut c = ProcessCluster::start(3, &["--safemode-extension-ms", "0"]);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("f");
    let bytes = pseudo_random(300_000, 8);
    std::fs::write(&local, &bytes).unwrap();
    ok(&c, &["fs", "put", local.to_str().unwrap(), "/keep"]);

    // Checkpoints go into the namenode's checkpoint_dir (by default
    // `checkpoints` beside its data dir), named by the caller.
    let root = std::fs::canonicalize(c.dir.path()).unwrap().join("checkpoints");
    let backup = root.join("backup");
    let alice = Command::new(env!("CARGO_BIN_EXE_granary"))
        .args(["--namenode", &c.rpc, "admin", "checkpoint", "backup"])
        .env("GRANARY_USER", "alice")
        .output()
        .unwrap();
    assert!(!alice.status.success());
    assert!(String::from_utf8_lossy(&alice.stderr).contains("Superuser privilege"));
    let out = ok(&c, &["admin", "checkpoint", "backup"]);
    assert!(
        out.contains(&format!("checkpoint written to {}", backup.display())),
        "{out}"
    );
    let again = granary(&c, &["admin", "checkpoint", backup.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("File exists"));
    // Nowhere else: not an absolute path outside it, not `..`, not through
    // a symlink inside it pointing out.
    std::os::unix::fs::symlink(dir.path(), root.join("out")).unwrap();
    let elsewhere = dir.path().join("stolen");
    for bad in [
        elsewhere.to_str().unwrap(),
        "../stolen",
        "rel/dir",
        &format!("{}/out/stolen", root.display()),
    ] {
        let o = granary(&c, &["admin", "checkpoint", bad]);
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("in the checkpoint directory"),
            "{bad}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert!(!elsewhere.exists() && !c.dir.path().join("stolen").exists());
    // The copy is the namenode user's alone.
    let mut todo = vec![backup.clone()];
    while let Some(p) = todo.pop() {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(
            m.permissions().mode() & 0o077,
            0,
            "{} is open to others",
            p.display()
        );
        if m.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    ok(&c, &["fs", "put", local.to_str().unwrap(), "/after"]);

    // Restore: the namenode starts on the checkpoint as its data dir.
    c.stop_namenode();
    let name = c.namenode_dir();
    std::fs::rename(&name, dir.path().join("old-name")).unwrap();
    std::fs::rename(&backup, &name).unwrap();
    c.start_namenode();
    let wait = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_granary"))
        .args(["--namenode", &c.rpc, "admin", "safemode", "wait"])
        .env("GRANARY_USER", "hdfs")
        .output()
        .unwrap();
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stderr));
    let got = granary(&c, &["fs", "cat", "/keep"]);
    assert!(got.status.success() && got.stdout == bytes);
    let after = granary(&c, &["fs", "stat", "/after"]);
    assert!(!after.status.success(), "/after was written after the checkpoint");
    let fsck = ok(&c, &["fsck", "/"]);
    assert!(fsck.contains("is HEALTHY"), "{fsck}");
}

/// `granary fs cat big | head`: once the reader of stdout goes away the
/// command stops quietly with exit 0, as `hdfs dfs -cat` does, instead of
/// printing "Broken pipe" (or panicking).
#[test]
fn cat_into_a_closed_pipe_ends_quietly() {
    let c = ProcessCluster::start(1, &[]);
    let local = c.dir.path().join("big.bin");
    let bytes = pseudo_random(4 * 1024 * 1024, 7);
    std::fs::write(&local, &bytes).unwrap();
    ok(&c, &["fs", "put", local.to_str().unwrap(), "/big.bin"]);
    let run = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_granary"));
        cmd.args(["--namenode", &c.rpc])
            .args(args)
            .env("GRANARY_USER", "hdfs");
        cmd
    };
    // The reader is gone before the first byte.
    for args in [
        &["fs", "cat", "/big.bin"][..],
        &["fs", "cat", "/big.bin", "/big.bin"],
        &["fs", "get", "/big.bin", "-"],
        &["fs", "tail", "/big.bin"],
        &["admin", "report"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = run(args).stdout(writer).stderr(Stdio::piped()).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert_eq!(err, "", "{args:?}");
    }
    // The reader takes the first bytes and goes (`| head -c 1000`).
    let mut child = run(&["fs", "cat", "/big.bin"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = vec![0u8; 1000];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut head).unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(head, bytes[..1000]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
}
