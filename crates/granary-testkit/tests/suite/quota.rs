//! Directory quotas end to end on real processes: set with the CLI (and
//! WebHDFS), enforced on gRPC, CLI and WebHDFS calls with HDFS's
//! exceptions, nothing past a quota written, usage right after renames
//! across quota'd trees and after a namenode restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use granary_client::{ClientError, ContentSummary, CreateOptions, DfsClient};
use granary_common::{ErrorCode, HasErrorCode};
use granary_testkit::binaries::{ProcessCluster, http_request, redirect_target};
use granary_testkit::fixtures::{get, pseudo_random, wait_out_of_safe_mode};
use tokio::io::AsyncWriteExt;

const MIB: u64 = 1 << 20;

/// Writes `bytes` to `path` at replication `repl` in 1 MiB blocks; the
/// error code of the first failure, if any.
async fn put(c: &DfsClient, path: &str, bytes: &[u8], repl: u32) -> Result<(), ErrorCode> {
    let opts = CreateOptions {
        block_size: MIB,
        replication: repl,
        ..Default::default()
    };
    let code = |e: std::io::Error| match ClientError::inside(&e) {
        Some(c) => c.code(),
        None => panic!("not a cluster error: {e}"),
    };
    let mut w = c.create(path, opts).await.map_err(|e| e.code())?;
    w.write_all(bytes).await.map_err(code)?;
    w.shutdown().await.map_err(code)
}

async fn summary(c: &DfsClient, path: &str) -> ContentSummary {
    c.content_summary(path).await.unwrap()
}

/// (names used, bytes used) as `count -q` shows them: quota minus remaining.
fn count_q(c: &ProcessCluster, path: &str) -> Vec<String> {
    let out = c.cli_ok(&["fs", "count", "-q", path]);
    out.split_whitespace().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_refuse_what_crosses_them_on_every_door_and_survive_renames_and_a_restart() {
    let mut c = ProcessCluster::start(
        3,
        &["--min-block-size", "65536", "--default-block-size", "1048576"],
    );
    let client = c.client().await;
    for d in ["/names", "/space", "/other"] {
        client.mkdirs(d, None, true).await.unwrap();
    }
    c.cli_ok(&["admin", "set-quota", "3", "/names"]);
    c.cli_ok(&["admin", "set-space-quota", "4m", "/space"]);
    // Only the superuser sets quotas.
    let out = c.cli_as("alice", &["admin", "set-quota", "9", "/names"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Superuser privilege is required"));
    assert_eq!(
        count_q(&c, "/names"),
        ["3", "2", "none", "inf", "1", "0", "0", "/names"]
    );

    // Name quota: /names, a and b fill it.
    put(&client, "/names/a", b"a", 3).await.unwrap();
    client.mkdirs("/names/b", None, false).await.unwrap();
    // gRPC.
    let e = client.mkdirs("/names/c", None, false).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::NsQuotaExceeded, "{e}");
    assert!(
        e.to_string()
            .contains("of directory /names is exceeded: quota=3 file count=4"),
        "{e}"
    );
    assert_eq!(
        put(&client, "/names/b/f", b"x", 3).await,
        Err(ErrorCode::NsQuotaExceeded)
    );
    // CLI.
    let err = c.cli_err(&["fs", "mkdir", "/names/c"]);
    assert!(
        err.contains("The NameSpace quota (directories and files) of directory /names is exceeded"),
        "{err}"
    );
    let err = c.cli_err(&["fs", "touchz", "/names/b/t"]);
    assert!(err.contains("NameSpace quota"), "{err}");
    // WebHDFS, with HDFS's exception.
    let (status, _, body) = tokio::task::spawn_blocking({
        let http = c.http.clone();
        move || http_request(&http, "PUT", "/webhdfs/v1/names/c?op=MKDIRS&user.name=hdfs")
    })
    .await
    .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("\"exception\":\"NSQuotaExceededException\""),
        "{body}"
    );
    assert!(
        body.contains("org.apache.hadoop.hdfs.protocol.NSQuotaExceededException"),
        "{body}"
    );
    // Nothing past the quota was made.
    for p in ["/names/c", "/names/b/f", "/names/b/t"] {
        assert!(client.get_file_info(p).await.unwrap().is_none(), "{p} exists");
    }

    // Space quota: 4 MiB holds one 1 MiB block at replication 3, not two.
    let one = pseudo_random(MIB as usize, 1);
    put(&client, "/space/one", &one, 3).await.unwrap();
    let two = pseudo_random(2 * MIB as usize, 2);
    assert_eq!(
        put(&client, "/space/two", &two, 3).await,
        Err(ErrorCode::DsQuotaExceeded)
    );
    let two_len = client
        .get_file_info("/space/two")
        .await
        .unwrap()
        .map_or(0, |s| s.length);
    assert_eq!(two_len, 0, "no byte of the block past the quota is kept");
    client.delete("/space/two", false).await.unwrap();
    // CLI.
    let local = c.dir.path().join("two.bin");
    std::fs::write(&local, &two).unwrap();
    let err = c.cli_err(&["fs", "put", local.to_str().unwrap(), "/space/cli"]);
    assert!(err.contains("The DiskSpace quota of /space is exceeded"), "{err}");
    let _ = client.delete("/space/cli", false).await;
    // WebHDFS: a create through a datanode is refused at its block.
    let (status, location, body) = tokio::task::spawn_blocking({
        let http = c.http.clone();
        move || {
            http_request(
                &http,
                "PUT",
                "/webhdfs/v1/space/web?op=CREATE&user.name=hdfs&replication=3&blocksize=1048576",
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(status, 307, "{body}");
    let (dn, path) = redirect_target(&location.unwrap());
    let web = web_put(&dn, &path, &two).await;
    assert!(web.contains("DSQuotaExceededException"), "{web}");
    let _ = client.delete("/space/web", false).await;
    assert_eq!(summary(&client, "/space").await.space_consumed, 3 * MIB);
    assert_eq!(get(&client, "/space/one").await, one);

    // Renames across quota'd trees move usage; one that would overfill is refused.
    put(&client, "/other/small", b"0123456789", 2).await.unwrap();
    let e = client
        .rename("/other/small", "/names/small", false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NsQuotaExceeded, "{e}");
    client.rename("/names/a", "/other/a", false).await.unwrap();
    client
        .rename("/other/small", "/names/small", false)
        .await
        .unwrap();
    let e = client
        .rename("/space/one", "/names/b/one", false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NsQuotaExceeded, "{e}");
    client
        .rename("/names/small", "/space/small", false)
        .await
        .unwrap();
    assert_eq!(summary(&client, "/space").await.space_consumed, 3 * MIB + 20);
    let before = (count_q(&c, "/names"), count_q(&c, "/space"));
    assert_eq!(before.0[..2], ["3".to_string(), "1".to_string()]);
    assert_eq!(before.1[2..4], ["4194304".to_string(), (MIB - 20).to_string()]);

    // A restart keeps quotas and usage, and they are still enforced.
    c.restart_namenode();
    let client = c.client().await;
    wait_out_of_safe_mode(&client).await;
    assert_eq!((count_q(&c, "/names"), count_q(&c, "/space")), before);
    client.mkdirs("/names/d", None, false).await.unwrap();
    let e = client.mkdirs("/names/e", None, false).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::NsQuotaExceeded, "{e}");
    let human = c.cli_ok(&["fs", "count", "-q", "-h", "-v", "/space"]);
    assert!(
        human.starts_with("       QUOTA       REM_QUOTA     SPACE_QUOTA REM_SPACE_QUOTA"),
        "{human}"
    );
    assert!(human.contains(" 4 M "), "{human}");

    // Cleared (CLI and WebHDFS), nothing is limited any more.
    c.cli_ok(&["admin", "clr-quota", "/names"]);
    let (status, _, body) = tokio::task::spawn_blocking({
        let http = c.http.clone();
        move || {
            http_request(
                &http,
                "PUT",
                "/webhdfs/v1/space?op=SETQUOTA&storagespacequota=-1&user.name=hdfs",
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(count_q(&c, "/names")[..4], ["none", "inf", "none", "inf"]);
    assert_eq!(count_q(&c, "/space")[..4], ["none", "inf", "none", "inf"]);
    client.mkdirs("/names/e", None, false).await.unwrap();
    put(&client, "/space/two", &two, 3).await.unwrap();
}

/// Sends `body` to a datanode's WebHDFS create; the response as text.
async fn web_put(addr: &str, path_and_query: &str, body: &[u8]) -> String {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {path_and_query} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // The datanode may answer (and close) before taking the whole body.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
