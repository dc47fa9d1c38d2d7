//! Data commands of the real `granary` binary against a cluster of real
//! namenode and datanode processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use granary_testkit::binaries::ProcessCluster;

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

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
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
        let client =
            granary_client::DfsClient::connect(&c.rpc, granary_client::Identity::new("hdfs", vec![]))
                .await
                .unwrap();
        let lb = client.block_locations("/big.bin", 0, 0).await.unwrap();
        assert_eq!(lb.blocks.len(), 8);
        for b in lb.blocks {
            let nodes: std::collections::HashSet<_> =
                b.locations.iter().map(|l| l.id.clone().unwrap().uuid).collect();
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
            granary_client::Identity::new("hdfs", vec![]),
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
        assert!(
            st.length > 0 && st.length % (1024 * 1024) == 0,
            "{path}: length {} is not whole blocks",
            st.length
        );
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

/// Writes through the library while one pipeline datanode is killed -9
/// mid-block; the write must succeed, read back byte for byte, and the
/// namenode must restore three replicas using the fourth datanode.
#[test]
#[ignore = "pipeline recovery after a datanode kill passes most runs but not all yet (issue 4): a survivor sometimes has no replica to continue"]
fn killing_a_pipeline_datanode_mid_write_loses_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Runtime::new().unwrap();
    for round in 0..5u64 {
        let mut c = ProcessCluster::start(
            4,
            &[
                "--stale-after-ms",
                "1000",
                "--dead-after-ms",
                "3000",
                "--heartbeat-interval-ms",
                "300",
                "--min-block-size",
                "65536",
                "--pending-replication-timeout-ms",
                "3000",
            ],
        );
        let bytes = pseudo_random(6 * 256 * 1024 + 777, round + 11);
        let client = rt
            .block_on(granary_client::DfsClient::connect(
                &c.rpc,
                granary_client::Identity::new("hdfs", vec![]),
            ))
            .unwrap();
        let victim_uuid = rt.block_on(async {
            let mut w = client
                .create(
                    "/f",
                    granary_client::CreateOptions {
                        block_size: 256 * 1024,
                        replication: 3,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            // First block and a half, flushed so the second block's pipeline is live.
            w.write_all(&bytes[..384 * 1024]).await.unwrap();
            w.hflush().await.unwrap();
            // Kill a node holding the first block: it is in this pipeline most of the time.
            let lb = client.block_locations("/f", 0, 0).await.unwrap();
            let victim = lb.blocks[0].locations[(round as usize) % 3].id.clone().unwrap();
            let idx = (0..4)
                .find(|i| {
                    let log = c.log(&format!("datanode{i}.log"));
                    log.contains(&victim.uuid)
                })
                .expect("victim's log names its uuid");
            c.datanodes[idx].kill9();
            w.write_all(&bytes[384 * 1024..]).await.unwrap();
            w.close().await.unwrap();
            victim.uuid
        });
        let mut back = Vec::new();
        rt.block_on(async {
            client
                .open("/f")
                .await
                .unwrap()
                .read_to_end(&mut back)
                .await
                .unwrap()
        });
        assert_eq!(back.len(), bytes.len(), "round {round}");
        assert!(back == bytes, "round {round}: content differs");
        // Full replication comes back on the surviving three nodes.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let lb = rt.block_on(client.block_locations("/f", 0, 0)).unwrap();
            let ok = lb.blocks.iter().all(|b| {
                b.locations
                    .iter()
                    .filter(|l| l.id.as_ref().unwrap().uuid != victim_uuid)
                    .count()
                    == 3
            });
            if ok {
                break;
            }
            if std::time::Instant::now() >= deadline {
                std::fs::write("/tmp/nn-fail.log", c.log("namenode.log")).ok();
                for i in 0..4 {
                    std::fs::write(format!("/tmp/dn{i}-fail.log"), c.log(&format!("datanode{i}.log"))).ok();
                }
                panic!("round {round}: replication not restored");
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}
