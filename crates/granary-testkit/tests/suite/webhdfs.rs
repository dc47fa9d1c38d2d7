//! WebHDFS driven by real, unmodified clients from PyPI (HdfsCLI, fsspec,
//! Dask) and raw HTTP, against real namenode and datanode processes; every
//! result is compared with what the `granary` CLI reads. The Python side is
//! tests/python/test_webhdfs.py; `scripts/test.sh` installs its clients and
//! sets GRANARY_PYTHON.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use granary_testkit::binaries::{ProcessCluster, bin_path, rss_mib};

#[test]
fn python_webhdfs_clients_work_unchanged() {
    let c = ProcessCluster::start(3, &["--min-block-size", "65536"]);
    let cli = bin_path("granary");
    let (passed, report) = granary_testkit::binaries::pytest(
        "python",
        &c.dir.path().join("pytest"),
        &[
            ("GRANARY_NN_HTTP", c.http.as_ref()),
            ("GRANARY_NN_RPC", c.rpc.as_ref()),
            ("GRANARY_CLI", cli.as_os_str()),
        ],
    );
    println!("{report}");
    if !passed {
        eprintln!("namenode log:\n{}", c.log("namenode.log"));
    }
    assert!(passed, "the Python WebHDFS tests failed:\n{report}");
    assert!(report.contains(" passed"), "{report}");
}

/// Apache OpenDAL's webhdfs service, unmodified: write, read, stat, list,
/// delete, checked against what the library client reads.
#[test]
fn opendal_webhdfs_service_works_unchanged() {
    use granary_testkit::fixtures::{get, pseudo_random};
    use opendal::{ErrorKind, Operator, services::Webhdfs};

    let c = ProcessCluster::start(3, &["--min-block-size", "65536"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let builder = Webhdfs::default()
            .endpoint(&format!("http://{}", c.http))
            .root("/opendal")
            .user_name("hdfs");
        let op = Operator::new(builder).unwrap().finish();
        let bytes = pseudo_random(3 * 1024 * 1024 + 17, 9);
        op.write("dir/a.bin", bytes.clone()).await.unwrap();
        op.write("dir/b.txt", "hello").await.unwrap();

        assert_eq!(op.read("dir/a.bin").await.unwrap().to_vec(), bytes);
        let part = op
            .read_with("dir/a.bin")
            .range(1_000_000..1_000_100)
            .await
            .unwrap();
        assert_eq!(part.to_vec(), bytes[1_000_000..1_000_100]);
        let client = c.client().await;
        assert_eq!(get(&client, "/opendal/dir/a.bin").await, bytes);

        let meta = op.stat("dir/a.bin").await.unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.content_length(), bytes.len() as u64);
        let mut names: Vec<String> = op
            .list("dir/")
            .await
            .unwrap()
            .iter()
            .map(|e| e.name().to_string())
            .filter(|n| !n.is_empty() && n != "dir/")
            .collect();
        names.sort();
        assert_eq!(names, ["a.bin", "b.txt"]);

        op.delete("dir/a.bin").await.unwrap();
        let e = op.stat("dir/a.bin").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(
            client
                .get_file_info("/opendal/dir/a.bin")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(get(&client, "/opendal/dir/b.txt").await, b"hello");
    });
}

/// `doas` works for configured proxy users only; everyone else is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doas_is_allowed_for_proxy_users_only() {
    use granary_testkit::MiniCluster;
    use granary_testkit::binaries::http_get;
    let cl = MiniCluster::builder()
        .namenode_config(|c| c.webhdfs.proxy_users = vec!["gateway".into()])
        .start()
        .await
        .unwrap();
    let http = cl.namenode_http_addr().to_string();
    let home = |q: &'static str| {
        let http = http.clone();
        tokio::task::spawn_blocking(move || http_get(&http, &format!("/webhdfs/v1/?op=GETHOMEDIRECTORY&{q}")))
    };
    let as_alice = home("user.name=gateway&doas=alice").await.unwrap();
    assert_eq!(as_alice.as_deref(), Some(r#"{"Path":"/user/alice"}"#));
    assert_eq!(
        home("user.name=bob&doas=alice").await.unwrap(),
        None,
        "bob is no proxy user"
    );
    let own = home("user.name=bob").await.unwrap();
    assert_eq!(own.as_deref(), Some(r#"{"Path":"/user/bob"}"#));
}

/// An HTTP/1.0 GET read to the end: the status and the whole body.
fn get_all(addr: &str, path_and_query: &str) -> (u16, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..at]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, out[at + 4..].to_vec())
}

/// The `pathSuffix`es of a LISTSTATUS answer, which must be complete JSON.
fn listed_names(body: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        let tail = String::from_utf8_lossy(&body[body.len().saturating_sub(200)..]).to_string();
        panic!("not complete JSON ({e}); {} bytes ending {tail:?}", body.len())
    });
    v["FileStatuses"]["FileStatus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["pathSuffix"].as_str().unwrap().to_string())
        .collect()
}

/// Issue 18, finding 10: LISTSTATUS of a huge directory is streamed page by
/// page (as HDFS does), so concurrent listings of it do not hold the
/// directory in the namenode's memory: its RSS stays bounded while every
/// answer is complete, valid JSON with every entry in name order.
#[test]
fn liststatus_of_a_huge_directory_streams_in_bounded_memory() {
    const ENTRIES: usize = 50_000;
    const WRITERS: usize = 64;
    const READERS: usize = 8;
    let c = ProcessCluster::start(0, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = std::time::Instant::now();
    rt.block_on(async {
        let client = c.client().await;
        client.mkdirs("/huge", None, false).await.unwrap();
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let client = client.clone();
            writers.spawn(async move {
                for i in (w..ENTRIES).step_by(WRITERS) {
                    client
                        .mkdirs(&format!("/huge/d{i:06}"), None, false)
                        .await
                        .unwrap();
                }
            });
        }
        while let Some(r) = writers.join_next().await {
            r.unwrap();
        }
    });
    println!("{ENTRIES} entries made in {:?}", started.elapsed());
    let want: Vec<String> = (0..ENTRIES).map(|i| format!("d{i:06}")).collect();

    // LISTSTATUS_BATCH pages through it (HDFS's startAfter); this also warms
    // the namenode's caches, so the baseline below includes them.
    let mut batched = Vec::new();
    loop {
        let after = batched.last().cloned().unwrap_or_default();
        let (status, body) = get_all(
            &c.http,
            &format!("/webhdfs/v1/huge?op=LISTSTATUS_BATCH&user.name=hdfs&startAfter={after}"),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let d = &v["DirectoryListing"];
        let page = d["partialListing"]["FileStatuses"]["FileStatus"]
            .as_array()
            .unwrap();
        assert!(page.len() <= 1000);
        batched.extend(page.iter().map(|s| s["pathSuffix"].as_str().unwrap().to_string()));
        let remaining = d["remainingEntries"].as_u64().unwrap();
        if batched.len() == 1000 {
            assert_eq!(remaining, (ENTRIES - 1000) as u64, "exact on the first page");
        }
        if remaining == 0 {
            break;
        }
    }
    assert!(batched == want, "LISTSTATUS_BATCH pages lost or repeated entries");

    let pid = c.namenode.pid();
    let before = rss_mib(pid);
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_mib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let http = c.http.clone();
            std::thread::spawn(move || get_all(&http, "/webhdfs/v1/huge?op=LISTSTATUS&user.name=hdfs"))
        })
        .collect();
    let answers: Vec<(u16, Vec<u8>)> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    println!(
        "namenode RSS: {before} MiB before, {peak} MiB at most during {READERS} concurrent LISTSTATUS of {ENTRIES} entries"
    );
    for (status, body) in &answers {
        assert_eq!(*status, 200);
        assert!(
            listed_names(body) == want,
            "a LISTSTATUS answer lost or repeated entries"
        );
    }
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 100,
        "{READERS} concurrent listings of {ENTRIES} entries grew the namenode by {grown} MiB"
    );

    // Errors found before the first byte keep their status and RemoteException.
    rt.block_on(async { c.client().await.set_permission("/huge", 0o700).await.unwrap() });
    let (status, body) = get_all(&c.http, "/webhdfs/v1/huge?op=LISTSTATUS&user.name=mallory");
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["RemoteException"]["exception"], "AccessControlException");
    let (status, _) = get_all(&c.http, "/webhdfs/v1/nothing?op=LISTSTATUS&user.name=hdfs");
    assert_eq!(status, 404);
}
