//! WebHDFS driven by real, unmodified clients from PyPI (HdfsCLI, fsspec,
//! Dask) and raw HTTP, against real namenode and datanode processes; every
//! result is compared with what the `granary` CLI reads. The Python side is
//! tests/python/test_webhdfs.py; `scripts/test.sh` installs its clients and
//! sets GRANARY_PYTHON.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use granary_testkit::binaries::{ProcessCluster, bin_path};

fn python() -> PathBuf {
    let p = std::env::var_os("GRANARY_PYTHON")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/granary-venv/bin/python")))
        .expect("GRANARY_PYTHON or HOME is set");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test.sh, which installs the Python WebHDFS clients",
        p.display()
    );
    p
}

#[test]
fn python_webhdfs_clients_work_unchanged() {
    let c = ProcessCluster::start(3, &["--min-block-size", "65536"]);
    let tests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let scratch = c.dir.path().join("pytest");
    let out = Command::new(python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp"])
        .arg(&scratch)
        .arg(&tests)
        .env("GRANARY_NN_HTTP", &c.http)
        .env("GRANARY_NN_RPC", &c.rpc)
        .env("GRANARY_CLI", bin_path("granary"))
        .output()
        .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    if !out.status.success() {
        eprintln!("namenode log:\n{}", c.log("namenode.log"));
    }
    assert!(out.status.success(), "the Python WebHDFS tests failed:\n{report}");
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
        .namenode_config(|c| c.proxy_users = vec!["gateway".into()])
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
