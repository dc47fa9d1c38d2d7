//! HDFS's own wire protocol, driven by real, unmodified HDFS clients
//! against real namenode and datanode processes: the Python side is
//! tests/python_hdfs (`hdfs-native` and Spark from PyPI; `scripts/test.sh`
//! installs them and Java, and sets GRANARY_PYTHON), the Java side Hadoop's
//! FsShell from the jars pyspark bundles.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use granary_testkit::binaries::{ProcessCluster, bin_path, pytest, python};

#[test]
fn hdfs_native_client_works_unchanged() {
    // 1 MiB blocks: a few MiB make files of several blocks.
    let c = ProcessCluster::start(
        3,
        &["--min-block-size", "65536", "--default-block-size", "1048576"],
    );
    let cli = bin_path("granary");
    let (passed, report) = pytest(
        "python_hdfs",
        &c.dir.path().join("pytest"),
        &[
            ("GRANARY_NN_RPC", c.rpc.as_ref()),
            ("GRANARY_CLI", cli.as_os_str()),
            ("HADOOP_USER_NAME", "hdfs".as_ref()),
        ],
    );
    if !passed {
        eprintln!("namenode log:\n{}", c.log("namenode.log"));
    }
    assert!(passed, "the hdfs-native tests failed:\n{report}");
    assert!(report.contains("10 passed"), "{report}");
}

/// Hadoop's own Java client (`org.apache.hadoop.fs.FsShell` from the
/// Hadoop client jars PyPI's pyspark bundles, run by Debian's Java), with
/// a core-site.xml naming only `fs.defaultFS`: each command's output is
/// checked against the file's bytes and what Granary's CLI says.
#[test]
fn hadoop_fs_shell_works_unchanged() {
    let c = ProcessCluster::start(
        3,
        &["--min-block-size", "65536", "--default-block-size", "1048576"],
    );
    let classpath = hadoop_classpath(&c);
    let fs_url = format!("hdfs://{}", c.rpc);
    let hadoop = |args: &[&str]| {
        let out = Command::new("java")
            .arg("-cp")
            .arg(&classpath)
            .arg("org.apache.hadoop.fs.FsShell")
            .args(["-fs", &fs_url])
            .args(args)
            .env("HADOOP_USER_NAME", "hdfs")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hadoop fs {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let granary = |args: &[&str]| {
        let out = Command::new(bin_path("granary"))
            .args(args)
            .env("GRANARY_NAMENODE", &c.rpc)
            .env("GRANARY_USER", "hdfs")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    // A file of several blocks, with a tail inside a chunk.
    let data: Vec<u8> = (0..3 * (1u32 << 20) + 777)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let local = c.dir.path().join("java.bin");
    std::fs::write(&local, &data).unwrap();
    hadoop(&["-mkdir", "-p", "/java/a"]);
    hadoop(&["-put", local.to_str().unwrap(), "/java/a/f.bin"]);
    let ls = String::from_utf8(hadoop(&["-ls", "/java/a"])).unwrap();
    assert!(
        ls.contains("/java/a/f.bin") && ls.contains(&data.len().to_string()),
        "{ls}"
    );
    assert!(hadoop(&["-cat", "/java/a/f.bin"]) == data, "-cat differs");
    let back = c.dir.path().join("back.bin");
    hadoop(&["-get", "/java/a/f.bin", back.to_str().unwrap()]);
    assert!(std::fs::read(&back).unwrap() == data, "-get differs");
    hadoop(&["-mv", "/java/a/f.bin", "/java/a/g.bin"]);
    hadoop(&["-chmod", "600", "/java/a/g.bin"]);
    assert_eq!(
        granary(&["fs", "stat", "%a %n", "/java/a/g.bin"]).trim(),
        "600 g.bin"
    );
    // The checksum HDFS clients compute from datanodes' block checksums is
    // the one Granary's client computes from the data.
    let sum = String::from_utf8(hadoop(&["-checksum", "/java/a/g.bin"])).unwrap();
    let ours = granary(&["fs", "checksum", "/java/a/g.bin"]);
    let hex = ours.split_whitespace().last().unwrap();
    assert!(
        sum.contains("MD5-of-") && sum.contains(hex),
        "hadoop: {sum}\ngranary: {ours}"
    );
    // `-appendToFile`: appended bytes read back after the old ones.
    let more = c.dir.path().join("more.bin");
    std::fs::write(&more, b"appended by hadoop").unwrap();
    hadoop(&["-appendToFile", more.to_str().unwrap(), "/java/a/g.bin"]);
    let mut all = data.clone();
    all.extend_from_slice(b"appended by hadoop");
    assert!(
        hadoop(&["-cat", "/java/a/g.bin"]) == all,
        "-appendToFile then -cat differs"
    );
    // `-df` (getFsStats): the datanodes' capacity, some of it used.
    let df = String::from_utf8(hadoop(&["-df", "/"])).unwrap();
    let size: Vec<u64> = df
        .lines()
        .nth(1)
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(3)
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(size.len() == 3 && size[0] > 0 && size[1] > 0, "{df}");
    // A quota set with Granary's CLI, shown and enforced by Hadoop's client
    // (getContentSummary's quota fields; HDFS's exception class).
    granary(&["admin", "set-quota", "3", "/java/a"]);
    let count = String::from_utf8(hadoop(&["-count", "-q", "/java/a"])).unwrap();
    let cols: Vec<&str> = count.split_whitespace().collect();
    assert_eq!(cols[..4], ["3", "1", "none", "inf"], "{count}");
    hadoop(&["-mkdir", "/java/a/b"]);
    let refused = Command::new("java")
        .arg("-cp")
        .arg(&classpath)
        .arg("org.apache.hadoop.fs.FsShell")
        .args(["-fs", &fs_url, "-mkdir", "/java/a/c"])
        .env("HADOOP_USER_NAME", "hdfs")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && err.contains("The NameSpace quota (directories and files) of directory /java/a is exceeded"),
        "{err}"
    );
    granary(&["admin", "clr-quota", "/java/a"]);
    hadoop(&["-mkdir", "/java/a/c"]);
    // Snapshots through Hadoop's client: taken and renamed by FsShell, a
    // deleted file read back under .snapshot.
    granary(&["admin", "allow-snapshot", "/java/a"]);
    let made = String::from_utf8(hadoop(&["-createSnapshot", "/java/a", "j1"])).unwrap();
    assert!(made.contains("Created snapshot /java/a/.snapshot/j1"), "{made}");
    hadoop(&["-rm", "-skipTrash", "/java/a/g.bin"]);
    hadoop(&["-renameSnapshot", "/java/a", "j1", "j2"]);
    assert!(
        hadoop(&["-cat", "/java/a/.snapshot/j2/g.bin"]) == all,
        "the snapshot's copy differs"
    );
    let ls = String::from_utf8(hadoop(&["-ls", "/java/a/.snapshot"])).unwrap();
    assert!(ls.contains("/java/a/.snapshot/j2"), "{ls}");
    hadoop(&["-deleteSnapshot", "/java/a", "j2"]);
    granary(&["admin", "disallow-snapshot", "/java/a"]);
    // Into the trash, which the namenode keeps by default (a day): Hadoop's
    // client learns it from getServerDefaults and moves the tree there.
    hadoop(&["-rm", "-r", "/java"]);
    assert!(granary(&["fs", "ls", "/"]).lines().all(|l| !l.contains("/java")));
    granary(&["fs", "test", "-d", "/user/hdfs/.Trash/Current/java/a/c"]);
    hadoop(&["-rm", "-r", "-skipTrash", "/user/hdfs/.Trash"]);
    assert!(
        granary(&["fs", "ls", "/user/hdfs"])
            .lines()
            .all(|l| !l.contains(".Trash"))
    );
}

/// Where Hadoop's Java client finds itself: a configuration directory as
/// HADOOP_CONF_DIR would give, saying only where the file system is, and
/// the Hadoop client jars PyPI's pyspark bundles.
fn hadoop_classpath(c: &ProcessCluster) -> String {
    let jars = String::from_utf8(
        Command::new(python())
            .args([
                "-c",
                "import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), 'jars'))",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let conf = c.dir.path().join("hadoop-conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("core-site.xml"),
        format!(
            "<configuration><property><name>fs.defaultFS</name><value>hdfs://{}</value></property></configuration>",
            c.rpc
        ),
    )
    .unwrap();
    // The client's own log (warnings and what it retries) on stderr, which
    // a failing test shows.
    std::fs::write(
        conf.join("log4j2.properties"),
        "rootLogger.level = info\nrootLogger.appenderRef.err.ref = err\n\
         appender.err.type = Console\nappender.err.name = err\nappender.err.target = SYSTEM_ERR\n\
         appender.err.layout.type = PatternLayout\nappender.err.layout.pattern = %p %c{1}: %m%n\n",
    )
    .unwrap();
    format!("{}:{}/*", conf.display(), jars.trim())
}

/// A datanode killed (kill -9) in the middle of an `hdfs://` write:
/// Hadoop's own client rebuilds its pipeline (updateBlockForPipeline, a
/// WRITE_BLOCK in streaming recovery to the survivors, updatePipeline) and
/// the write completes with every byte. Three times, a different datanode
/// each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hdfs_client_recovers_its_pipeline_when_a_datanode_dies() {
    for victim in 0..3 {
        let mut c = ProcessCluster::start(
            3,
            &["--min-block-size", "65536", "--default-block-size", "1048576"],
        );
        let classpath = hadoop_classpath(&c);
        let data: Vec<u8> = (0..48u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(victim) >> 11) as u8)
            .collect();
        // The data comes through stdin, the second part only after the
        // kill: the client is mid-block when the datanode dies.
        let mut put = Command::new("java")
            .arg("-cp")
            .arg(&classpath)
            .arg("org.apache.hadoop.fs.FsShell")
            .args(["-D", "dfs.blocksize=33554432", "-put", "-", "/k.bin"])
            .env("HADOOP_USER_NAME", "hdfs")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(c.dir.path().join("put.err")).unwrap())
            .spawn()
            .unwrap();
        let mut stdin = put.stdin.take().unwrap();
        let half = 20 << 20;
        stdin.write_all(&data[..half]).unwrap();
        stdin.flush().unwrap();
        let hdfs = c.client().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while hdfs.stat("/k.bin._COPYING_").await.is_err() {
            assert!(std::time::Instant::now() < deadline, "the put never got going");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let the first part reach the datanodes.
        tokio::time::sleep(Duration::from_secs(2)).await;
        c.datanodes[victim as usize].kill9();
        let _ = stdin.write_all(&data[half..]);
        drop(stdin);
        let status = put.wait().unwrap();
        let err = std::fs::read_to_string(c.dir.path().join("put.err")).unwrap_or_default();
        let logs: String = (0..3)
            .map(|i| c.log(&format!("datanode{i}.log")))
            .chain([c.log("namenode.log")])
            .flat_map(|l| {
                l.lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("recover"))
                    .map(|l| format!("{l}\n"))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            status.success(),
            "victim {victim}: the put failed:\n{err}\n{logs}"
        );
        // It did recover (not finish before the kill bit).
        assert!(
            c.log("namenode.log")
                .contains("new generation stamp for pipeline recovery"),
            "victim {victim}: no pipeline recovery:\n{err}"
        );
        let back = granary_testkit::fixtures::get(&hdfs, "/k.bin").await;
        assert!(
            back == data,
            "victim {victim}: {} bytes back of {}",
            back.len(),
            data.len()
        );
    }
}

/// A writer that flushed (hflush) and then loses a pipeline datanode gets
/// a replacement, as Hadoop's client asks for one then (its DEFAULT
/// replace-datanode-on-failure policy): getAdditionalDatanode, a survivor
/// copies the replica there (TRANSFER_BLOCK), and the rebuilt pipeline has
/// three nodes again. hsync with UPDATE_LENGTH (the namenode's fsync)
/// makes the flushed length what getFileInfo says of the open file. Three
/// rounds, killing the first, second and third node of the pipeline; every
/// byte reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hdfs_writer_gets_a_replacement_datanode_after_hflush() {
    use std::io::BufRead;
    for round in 0..3usize {
        let mut c = ProcessCluster::start(
            4,
            &["--min-block-size", "65536", "--default-block-size", "1048576"],
        );
        let copy = c.dir.path().join("written.bin");
        let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/python_hdfs/java_hflush_writer.py");
        let mut writer = Command::new(python())
            .arg(&script)
            .args([c.rpc.as_str(), "/flushed.bin", &round.to_string()])
            .arg(&copy)
            .env("HADOOP_USER_NAME", "hdfs")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(c.dir.path().join("writer.err")).unwrap())
            .spawn()
            .unwrap();
        let mut stdin = writer.stdin.take().unwrap();
        let mut lines = std::io::BufReader::new(writer.stdout.take().unwrap()).lines();
        let err = |c: &ProcessCluster| {
            format!(
                "{}\nnamenode:\n{}",
                std::fs::read_to_string(c.dir.path().join("writer.err")).unwrap_or_default(),
                c.log("namenode.log")
            )
        };
        let mut next = |what: &str, c: &ProcessCluster| -> String {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("round {round}: the writer ended before {what}:\n{}", err(c)))
                .unwrap();
            line.strip_prefix(what)
                .unwrap_or_else(|| panic!("round {round}: {line:?} is not {what}"))
                .trim()
                .to_string()
        };
        let hdfs = c.client().await;
        let mut pipelines = Vec::new();
        for step in 0..3 {
            let nodes: Vec<String> = next("pipeline", &c).split(',').map(str::to_string).collect();
            let flushed: u64 = next("flushed", &c).parse().unwrap();
            assert_eq!(nodes.len(), 3, "round {round} step {step}: pipeline {nodes:?}");
            // fsync recorded the flushed length of the file still open.
            let st = hdfs.stat("/flushed.bin").await.unwrap();
            assert_eq!(
                st.length, flushed,
                "round {round} step {step}: length of the open file"
            );
            pipelines.push(nodes);
            if step == 0 {
                let victim = &pipelines[0][round];
                let i = (0..4).find(|i| c.datanode_addr(*i) == *victim).unwrap();
                c.datanodes[i].kill9();
            }
            if step < 2 {
                writeln!(stdin, "go").unwrap();
            }
        }
        let total: u64 = next("closed", &c).parse().unwrap();
        assert!(writer.wait().unwrap().success(), "round {round}: {}", err(&c));
        // The dead node was replaced by the one that had no replica.
        let victim = &pipelines[0][round];
        let spare = (0..4)
            .map(|i| c.datanode_addr(i))
            .find(|a| !pipelines[0].contains(a))
            .unwrap();
        assert!(
            !pipelines[1].contains(victim) && pipelines[1].contains(&spare),
            "round {round}: pipeline {:?} after {victim} died, spare {spare}",
            pipelines[1]
        );
        assert!(
            c.log("namenode.log")
                .contains("datanodes added to a write pipeline"),
            "round {round}: no getAdditionalDatanode"
        );
        let back = granary_testkit::fixtures::get(&hdfs, "/flushed.bin").await;
        let want = std::fs::read(&copy).unwrap();
        assert_eq!(back.len() as u64, total);
        assert!(back == want, "round {round}: the bytes read back differ");
    }
}

/// Hadoop IPC from a client that lies, stalls or speaks out of turn: each
/// connection is ended (or answered with an error), and the namenode keeps
/// serving gRPC and Hadoop IPC on the same port.
#[test]
fn hadoop_ipc_refuses_garbage_and_keeps_serving() {
    let c = ProcessCluster::start(1, &[]);
    let send = |bytes: &[u8]| send_raw(&c.rpc, bytes);
    // Another IPC version, an unknown auth protocol, a frame length far
    // over the limit, a frame cut short: closed without an answer.
    for bad in [
        &b"hrpc\x07\x00\x00"[..],
        &b"hrpc\x09\x00\x05"[..],
        &b"hrpc\x09\x00\x00\xff\xff\xff\xff"[..],
        &b"hrpc\x09\x00\x00\x00\x00\x10\x00\x01\x02"[..],
    ] {
        assert!(send(bad).is_empty(), "{bad:02x?}");
    }
    // A call before the connection context: a FATAL answer naming it.
    let call = frame(&[
        &delimited(&[0x18, 0x00]), // RpcRequestHeaderProto { callId: 0 }
        &delimited(b"\x0a\x0bgetFileInfo"),
    ]);
    let mut req = b"hrpc\x09\x00\x00".to_vec();
    req.extend_from_slice(&call);
    let answer = String::from_utf8_lossy(&send(&req)).into_owned();
    assert!(answer.contains("connection context"), "{answer:?}");
    // Still serving: a Granary client on the same port.
    let out = Command::new(bin_path("granary"))
        .args(["fs", "mkdir", "/after-garbage"])
        .env("GRANARY_NAMENODE", &c.rpc)
        .env("GRANARY_USER", "hdfs")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// HDFS's DataTransferProtocol from a client that lies: an oversized
/// operation is cut off, an operation not served and forged block tokens
/// (read and write) are refused with HDFS's status codes, and the datanode
/// keeps serving.
#[test]
fn hdfs_data_transfer_refuses_bad_requests() {
    use granary_proto::hadoop::{common as rpc, hdfs};
    use prost::Message;

    let c = ProcessCluster::start(1, &[]);
    let dn = c.datanode_addr(0);
    let send = |bytes: &[u8]| send_raw(&dn, bytes);
    let status = |answer: &[u8]| {
        let mut b = answer;
        hdfs::BlockOpResponseProto::decode_length_delimited(&mut b)
            .map(|r| (r.status, r.message.unwrap_or_default()))
            .unwrap_or_else(|e| panic!("no response in {answer:02x?}: {e}"))
    };
    // A length of 2^28 bytes for the operation: closed, nothing read.
    assert!(send(&[0x00, 0x1c, 81, 0x80, 0x80, 0x80, 0x80, 0x01]).is_empty());
    // COPY_BLOCK is not served: ERROR_UNSUPPORTED, saying so.
    let (st, msg) = status(&send(&[0x00, 0x1c, 84, 0x00]));
    assert_eq!(st, hdfs::Status::ErrorUnsupported as i32, "{msg}");
    // READ_BLOCK with a forged token: ERROR_ACCESS_TOKEN.
    let op = hdfs::OpReadBlockProto {
        header: hdfs::ClientOperationHeaderProto {
            base_header: hdfs::BaseHeaderProto {
                block: hdfs::ExtendedBlockProto {
                    pool_id: "p".into(),
                    block_id: 1 << 30,
                    generation_stamp: 1001,
                    num_bytes: Some(10),
                },
                token: Some(rpc::TokenProto {
                    identifier: b"forged".to_vec(),
                    kind: "HDFS_BLOCK_TOKEN".into(),
                    ..Default::default()
                }),
                trace_info: None,
            },
            client_name: "attacker".into(),
        },
        offset: 0,
        len: 10,
        send_checksums: Some(true),
        caching_strategy: None,
    };
    let mut req = vec![0x00, 0x1c, 81];
    req.extend_from_slice(&op.encode_length_delimited_to_vec());
    let (st, msg) = status(&send(&req));
    assert_eq!(st, hdfs::Status::ErrorAccessToken as i32, "{msg}");
    // WRITE_BLOCK with the same forged token: refused before any replica.
    let write = hdfs::OpWriteBlockProto {
        header: op.header.clone(),
        stage: hdfs::op_write_block_proto::BlockConstructionStage::PipelineSetupCreate as i32,
        pipeline_size: 1,
        requested_checksum: hdfs::ChecksumProto {
            r#type: hdfs::ChecksumTypeProto::ChecksumCrc32c as i32,
            bytes_per_checksum: 512,
        },
        ..Default::default()
    };
    let mut req = vec![0x00, 0x1c, 80];
    req.extend_from_slice(&write.encode_length_delimited_to_vec());
    let (st, msg) = status(&send(&req));
    assert_eq!(st, hdfs::Status::ErrorAccessToken as i32, "{msg}");
    // TRANSFER_BLOCK with it, to an address of the attacker's: refused
    // before any replica is read or any connection made.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut target = hdfs::DatanodeInfoProto::default();
    target.id.ip_addr = "127.0.0.1".into();
    target.id.xfer_port = listener.local_addr().unwrap().port().into();
    let transfer = hdfs::OpTransferBlockProto {
        header: op.header.clone(),
        targets: vec![target],
        ..Default::default()
    };
    let mut req = vec![0x00, 0x1c, 86];
    req.extend_from_slice(&transfer.encode_length_delimited_to_vec());
    let (st, msg) = status(&send(&req));
    assert_eq!(st, hdfs::Status::ErrorAccessToken as i32, "{msg}");
    assert!(
        listener.accept().is_err(),
        "the datanode connected to the attacker's address"
    );
    // Still serving: a write and a read through Granary's own client.
    let local = c.dir.path().join("after.bin");
    std::fs::write(&local, b"still serving").unwrap();
    for args in [
        vec!["fs", "put", local.to_str().unwrap(), "/after.bin"],
        vec!["fs", "cat", "/after.bin"],
    ] {
        let out = Command::new(bin_path("granary"))
            .args(&args)
            .env("GRANARY_NAMENODE", &c.rpc)
            .env("GRANARY_USER", "hdfs")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // TRANSFER_BLOCK of a real block with a genuine read token (anyone who
    // may read the file has one): not a write token, so refused, and the
    // replica goes nowhere.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let located = rt.block_on(async {
        let client = c.client().await;
        let req = client.request(granary_proto::GetBlockLocationsRequest {
            path: "/after.bin".into(),
            offset: 0,
            length: 1 << 20,
        });
        client.rpc().get_block_locations(req).await.unwrap().into_inner()
    });
    let lb = located.blocks.unwrap().blocks.remove(0);
    let blk = lb.block.unwrap();
    let mut real = transfer.clone();
    real.header.base_header.block = hdfs::ExtendedBlockProto {
        pool_id: "p".into(),
        block_id: blk.block_id,
        generation_stamp: blk.generation_stamp,
        num_bytes: Some(blk.num_bytes),
    };
    real.header.base_header.token = Some(rpc::TokenProto {
        identifier: lb.access_token.clone(),
        kind: "HDFS_BLOCK_TOKEN".into(),
        ..Default::default()
    });
    let mut req = vec![0x00, 0x1c, 86];
    req.extend_from_slice(&real.encode_length_delimited_to_vec());
    let (st, msg) = status(&send(&req));
    assert_eq!(st, hdfs::Status::ErrorAccessToken as i32, "{msg}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        listener.accept().is_err(),
        "the replica was sent with a read token"
    );
    // The same request with no token at all: refused as well.
    real.header.base_header.token = None;
    let mut req = vec![0x00, 0x1c, 86];
    req.extend_from_slice(&real.encode_length_delimited_to_vec());
    let (st, msg) = status(&send(&req));
    assert_eq!(st, hdfs::Status::ErrorAccessToken as i32, "{msg}");
    assert!(listener.accept().is_err(), "the replica was sent without a token");
}

/// Calls the namenode's Hadoop IPC as `user` with raw frames (what a
/// client library does): the answer's header and body.
fn ipc_call(
    addr: &str,
    user: &str,
    method: &str,
    request: &impl prost::Message,
) -> (granary_proto::hadoop::common::RpcResponseHeaderProto, Vec<u8>) {
    use granary_proto::hadoop::common as rpc;
    use prost::Message;
    let header = |call_id: i32| rpc::RpcRequestHeaderProto {
        rpc_kind: Some(rpc::RpcKindProto::RpcProtocolBuffer as i32),
        rpc_op: Some(0),
        call_id,
        client_id: vec![7; 16],
        retry_count: Some(-1),
        ..Default::default()
    };
    let context = rpc::IpcConnectionContextProto {
        user_info: Some(rpc::UserInformationProto {
            effective_user: Some(user.into()),
            real_user: None,
        }),
        protocol: Some("org.apache.hadoop.hdfs.protocol.ClientProtocol".into()),
    };
    let call = rpc::RequestHeaderProto {
        method_name: method.into(),
        declaring_class_protocol_name: "org.apache.hadoop.hdfs.protocol.ClientProtocol".into(),
        client_protocol_version: 1,
    };
    let mut wire = b"hrpc\x09\x00\x00".to_vec();
    for parts in [
        vec![
            header(-3).encode_length_delimited_to_vec(),
            context.encode_length_delimited_to_vec(),
        ],
        vec![
            header(0).encode_length_delimited_to_vec(),
            call.encode_length_delimited_to_vec(),
            request.encode_length_delimited_to_vec(),
        ],
    ] {
        let body = parts.concat();
        wire.extend_from_slice(&(body.len() as u32).to_be_bytes());
        wire.extend_from_slice(&body);
    }
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&wire).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut frame).unwrap();
    let mut b = frame.as_slice();
    let h = rpc::RpcResponseHeaderProto::decode_length_delimited(&mut b).unwrap();
    (h, b.to_vec())
}

/// Calls HDFS's admin tools make, with raw frames: the datanode report
/// (superuser only, by kind), the HA state and msync.
#[test]
fn hadoop_ipc_admin_calls() {
    use granary_proto::hadoop::{common as rpc, hdfs};
    use prost::Message;

    let c = ProcessCluster::start(3, &[]);
    let all = hdfs::GetDatanodeReportRequestProto {
        r#type: hdfs::DatanodeReportTypeProto::All as i32,
    };
    let (h, body) = ipc_call(&c.rpc, "hdfs", "getDatanodeReport", &all);
    assert_eq!(h.status, 0, "{h:?}");
    let report = hdfs::GetDatanodeReportResponseProto::decode_length_delimited(body.as_slice()).unwrap();
    assert_eq!(report.di.len(), 3);
    let ports: Vec<u32> = report.di.iter().map(|d| d.id.xfer_port).collect();
    for i in 0..3 {
        let port: u32 = c.datanode_addr(i).rsplit_once(':').unwrap().1.parse().unwrap();
        assert!(ports.contains(&port), "{ports:?}");
    }
    assert!(report.di.iter().all(|d| d.capacity.unwrap_or(0) > 0));
    let dead = hdfs::GetDatanodeReportRequestProto {
        r#type: hdfs::DatanodeReportTypeProto::Dead as i32,
    };
    let (_, body) = ipc_call(&c.rpc, "hdfs", "getDatanodeReport", &dead);
    let report = hdfs::GetDatanodeReportResponseProto::decode_length_delimited(body.as_slice()).unwrap();
    assert!(report.di.is_empty());
    // Not the superuser: refused, naming HDFS's exception.
    let (h, _) = ipc_call(&c.rpc, "alice", "getDatanodeReport", &all);
    assert_eq!(
        h.exception_class_name.as_deref(),
        Some("org.apache.hadoop.security.AccessControlException"),
        "{h:?}"
    );
    let (h, body) = ipc_call(
        &c.rpc,
        "alice",
        "getHAServiceState",
        &hdfs::HaServiceStateRequestProto {},
    );
    assert_eq!(h.status, 0);
    let state = hdfs::HaServiceStateResponseProto::decode_length_delimited(body.as_slice()).unwrap();
    assert_eq!(state.state, rpc::HaServiceStateProto::Active as i32);
    let (h, body) = ipc_call(&c.rpc, "alice", "msync", &hdfs::MsyncRequestProto {});
    assert_eq!((h.status, body.as_slice()), (0, &[0u8][..]));
    // A method Granary does not serve: RpcNoSuchMethodException, named.
    let (h, _) = ipc_call(&c.rpc, "alice", "getStoragePolicies", &hdfs::MsyncRequestProto {});
    assert_eq!(
        h.exception_class_name.as_deref(),
        Some("org.apache.hadoop.ipc.RpcNoSuchMethodException"),
        "{h:?}"
    );
    assert!(h.error_msg.unwrap_or_default().contains("getStoragePolicies"));
}

/// Sends `bytes` to `addr`, ends the stream (so a frame cut short is cut
/// short), and returns whatever comes back before the server closes.
fn send_raw(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(bytes).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn delimited(msg: &[u8]) -> Vec<u8> {
    assert!(msg.len() < 128);
    let mut v = vec![msg.len() as u8];
    v.extend_from_slice(msg);
    v
}

fn frame(parts: &[&[u8]]) -> Vec<u8> {
    let body: Vec<u8> = parts.concat();
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(&body);
    v
}
