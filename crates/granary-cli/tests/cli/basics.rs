//! The `granary` CLI against a real namenode process: output shapes like
//! `hdfs dfs`, error messages and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use granary_testkit::binaries::{Daemon, bin_path, free_port, wait_for_port};

struct Cluster {
    _tmp: tempfile::TempDir,
    nn: Daemon,
    rpc: String,
}

fn cluster() -> Cluster {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("name");
    let d = d.to_str().unwrap();
    let out = Command::new(bin_path("granary-namenode"))
        .args(["format", "--data-dir", d, "--superuser", "hdfs"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let rpc = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let nn = Daemon::spawn(
        "granary-namenode",
        &[
            "--data-dir",
            d,
            "--rpc-addr",
            &rpc,
            "--http-addr",
            &http,
            "--superuser",
            "hdfs",
        ],
        &tmp.path().join("nn.log"),
    )
    .unwrap();
    assert!(wait_for_port(&rpc, Duration::from_secs(20)));
    Cluster { _tmp: tmp, nn, rpc }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn of(o: std::process::Output) -> Self {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Cluster {
    fn cmd(&self, user: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_granary"));
        cmd.args(["--namenode", &self.rpc])
            .args(args)
            .env("GRANARY_USER", user);
        cmd
    }

    fn run_as(&self, user: &str, args: &[&str]) -> Out {
        Out::of(self.cmd(user, args).output().unwrap())
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run_as("hdfs", args);
        assert_eq!(o.code, 0, "{args:?}: {}", o.stderr);
        o.stdout
    }

    fn fails(&self, args: &[&str]) -> String {
        let o = self.run_as("hdfs", args);
        assert_ne!(o.code, 0, "{args:?} should fail: {}", o.stdout);
        o.stderr
    }
}

#[test]
fn namespace_commands_work_like_hdfs_dfs() {
    let c = cluster();
    c.ok(&["fs", "mkdir", "-p", "/data/raw", "/data/clean"]);
    assert!(
        c.fails(&["fs", "mkdir", "/data/raw"])
            .contains("granary: /data/raw: File exists")
    );
    assert!(
        c.fails(&["fs", "mkdir", "/no/parent"])
            .contains("granary: /no: No such file or directory")
    );
    c.ok(&["fs", "touchz", "/data/raw/a.csv"]);

    let ls = c.ok(&["fs", "ls", "/data"]);
    let lines: Vec<&str> = ls.lines().collect();
    assert_eq!(lines[0], "Found 2 items");
    assert!(lines[1].starts_with("drwxr-xr-x   - hdfs supergroup"), "{ls}");
    assert!(lines[1].ends_with(" /data/clean"), "{ls}");
    let ls_r = c.ok(&["fs", "ls", "-R", "/data"]);
    assert!(
        ls_r.lines()
            .any(|l| l.starts_with("-rw-r--r--   3 hdfs supergroup") && l.ends_with(" /data/raw/a.csv")),
        "{ls_r}"
    );

    assert_eq!(
        c.ok(&["fs", "stat", "%F %u:%g %a %r %n", "/data/raw/a.csv"])
            .trim(),
        "regular empty file hdfs:supergroup 644 3 a.csv"
    );
    c.ok(&["fs", "mv", "/data/raw/a.csv", "/data/clean"]);
    assert_eq!(c.run_as("hdfs", &["fs", "test", "-e", "/data/raw/a.csv"]).code, 1);
    assert_eq!(
        c.run_as("hdfs", &["fs", "test", "-f", "/data/clean/a.csv"]).code,
        0
    );
    assert_eq!(
        c.run_as("hdfs", &["fs", "test", "-d", "/data/clean/a.csv"]).code,
        1
    );
    assert_eq!(c.run_as("hdfs", &["fs", "test", "-d", "/data/clean"]).code, 0);
    assert_eq!(
        c.run_as("hdfs", &["fs", "test", "-z", "/data/clean/a.csv"]).code,
        0
    );

    c.ok(&["fs", "chmod", "-R", "go-rx", "/data/clean"]);
    assert_eq!(c.ok(&["fs", "stat", "%a", "/data/clean/a.csv"]).trim(), "600");
    assert_eq!(c.ok(&["fs", "stat", "%a", "/data/clean"]).trim(), "700");
    c.ok(&["fs", "chmod", "755", "/data/clean"]);
    c.ok(&["fs", "chown", "alice:eng", "/data/clean/a.csv"]);
    assert_eq!(
        c.ok(&["fs", "stat", "%u %g", "/data/clean/a.csv"]).trim(),
        "alice eng"
    );
    c.ok(&["fs", "chgrp", "ops", "/data/clean/a.csv"]);
    assert!(
        c.ok(&["fs", "setrep", "2", "/data/clean/a.csv"])
            .contains("Replication 2 set: /data/clean/a.csv")
    );
    assert_eq!(c.ok(&["fs", "stat", "%r", "/data/clean/a.csv"]).trim(), "2");

    let count = c.ok(&["fs", "count", "/data"]);
    let cols: Vec<&str> = count.split_whitespace().collect();
    assert_eq!(cols, ["3", "1", "0", "/data"]);
    let du = c.ok(&["fs", "du", "-s", "/data"]);
    assert!(du.trim_end().ends_with("/data") && du.starts_with('0'), "{du}");

    assert!(c.fails(&["fs", "rm", "/data"]).contains("/data: Is a directory"));
    assert!(
        c.fails(&["fs", "rm", "/nothing"])
            .contains("granary: /nothing: No such file or directory")
    );
    c.ok(&["fs", "rm", "-f", "/nothing"]);
    assert!(
        c.fails(&["fs", "rmdir", "/data"])
            .contains("Directory is not empty")
    );
    // The trash is on by default (a day): rm moves, as HDFS's shell says.
    let moved = c.run_as("hdfs", &["fs", "rm", "-r", "/data"]);
    assert_eq!(
        (moved.code, moved.stdout.as_str()),
        (0, "Moved: '/data' to trash at: /user/hdfs/.Trash/Current/data\n"),
        "{}",
        moved.stderr
    );
    assert_eq!(c.run_as("hdfs", &["fs", "test", "-e", "/data"]).code, 1);
    let trashed = "/user/hdfs/.Trash/Current/data/clean/a.csv";
    assert_eq!(c.run_as("hdfs", &["fs", "test", "-e", trashed]).code, 0);
    // Deleting it again from the trash deletes it; -skipTrash deletes at once.
    assert!(
        c.ok(&["fs", "rm", "-r", "/user/hdfs/.Trash/Current/data"])
            .contains("Deleted /user/hdfs/.Trash/Current/data")
    );
    c.ok(&["fs", "mkdir", "/gone"]);
    assert!(
        c.ok(&["fs", "rm", "-r", "-skipTrash", "/gone"])
            .contains("Deleted /gone")
    );
    assert_eq!(
        c.run_as("hdfs", &["fs", "test", "-e", "/user/hdfs/.Trash/Current/gone"])
            .code,
        1
    );
    // A path holding the trash is not moved into it.
    let o = c.run_as("hdfs", &["fs", "rm", "-r", "/user"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("as it contains the trash"), "{}", o.stderr);
}

/// `ls` of a directory of several listing pages prints every entry once,
/// in name order, page after page, in aligned columns.
#[test]
fn ls_prints_a_large_directory_page_by_page() {
    let c = cluster();
    let dirs: Vec<String> = (0..1005).map(|i| format!("/big/d{i:04}")).collect();
    let mut args = vec!["fs", "mkdir", "-p"];
    args.extend(dirs.iter().map(String::as_str));
    c.ok(&args);
    let ls = c.ok(&["fs", "ls", "/big"]);
    let lines: Vec<&str> = ls.lines().collect();
    assert_eq!(lines[0], "Found 1005 items");
    let shown: Vec<&str> = lines[1..].iter().map(|l| l.rsplit(' ').next().unwrap()).collect();
    assert_eq!(shown, dirs);
    assert!(lines[1..].iter().all(|l| l.len() == lines[1].len()), "{ls}");
}

#[test]
fn errors_name_the_path_and_exit_non_zero() {
    let c = cluster();
    c.ok(&["fs", "mkdir", "-p", "/secure"]);
    c.ok(&["fs", "chmod", "700", "/secure"]);
    let o = c.run_as("mallory", &["fs", "ls", "/secure"]);
    assert_eq!(o.code, 4, "permission denied");
    assert_eq!(o.stdout, "", "no count before the refusal");
    assert!(
        o.stderr.contains("Permission denied: user=mallory"),
        "{}",
        o.stderr
    );
    let o = c.run_as("mallory", &["fs", "touchz", "/secure/x"]);
    assert!(o.stderr.contains("Permission denied"), "{}", o.stderr);
    assert!(c.fails(&["fs", "mkdir", "/a/../b"]).contains("invalid path"));
    assert!(
        c.fails(&["fs", "chmod", "u+q", "/secure"])
            .contains("invalid mode")
    );
    // Relative paths resolve under /user/NAME, like HDFS.
    c.ok(&["fs", "mkdir", "-p", "/user/hdfs"]);
    c.ok(&["fs", "mkdir", "rel"]);
    assert_eq!(c.run_as("hdfs", &["fs", "test", "-d", "/user/hdfs/rel"]).code, 0);
    // Safe mode by hand, as an operator does it.
    assert!(c.ok(&["admin", "safemode", "get"]).contains("Safe mode is OFF"));
    assert!(c.ok(&["admin", "safemode", "enter"]).contains("Safe mode is ON"));
    assert!(c.fails(&["fs", "mkdir", "/during"]).contains("safe mode is ON"));
    let o = c.run_as("mallory", &["admin", "safemode", "leave"]);
    assert!(
        o.stderr.contains("Superuser privilege is required"),
        "{}",
        o.stderr
    );
    assert!(c.ok(&["admin", "safemode", "leave"]).contains("Safe mode is OFF"));
    assert!(c.ok(&["admin", "safemode", "wait"]).contains("Safe mode is OFF"));
    assert!(
        c.ok(&["admin", "report"])
            .contains("Datanodes: 0 live, 0 stale, 0 dead")
    );
    // The datanode report is the superuser's, as in HDFS; fsck of what a
    // user may read works without it.
    let o = c.run_as("mallory", &["admin", "report"]);
    assert_eq!(o.code, 4, "permission denied");
    assert!(
        o.stderr
            .contains("Access denied for user mallory. Superuser privilege is required"),
        "{}",
        o.stderr
    );
    let o = c.run_as("mallory", &["fsck", "/user"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains("is HEALTHY") && !o.stdout.contains("data-nodes"),
        "{}",
        o.stdout
    );
    assert!(c.ok(&["fsck", "/user"]).contains("Number of data-nodes:\t0"));
    // No namenode: a clear message.
    let o = Command::new(env!("CARGO_BIN_EXE_granary"))
        .args([
            "--namenode",
            &format!("127.0.0.1:{}", free_port()),
            "fs",
            "ls",
            "/",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(7), "unavailable");
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot connect to namenode"));
}

/// The exit status says what went wrong, and stderr names the path and the
/// reason, whichever command failed (the table in `granary --help`).
#[test]
fn exit_status_says_what_went_wrong() {
    let mut c = cluster();
    c.ok(&["fs", "mkdir", "-p", "/secure", "/open"]);
    c.ok(&["fs", "chmod", "700", "/secure"]);

    // A missing path: 3.
    let o = c.run_as("hdfs", &["fs", "ls", "/nope"]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert_eq!(o.stderr, "granary: /nope: No such file or directory\n");
    let o = c.run_as("hdfs", &["fs", "cat", "/nope"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (3, "granary: /nope: No such file or directory\n")
    );
    let o = c.run_as("hdfs", &["fs", "rm", "/nope"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (3, "granary: /nope: No such file or directory\n")
    );
    // One path failing among others: the others are done, the status is the failure's.
    let o = c.run_as("hdfs", &["fs", "ls", "/nope", "/open"]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert!(o.stdout.contains("Found 0 items"), "{}", o.stdout);

    // A permission denial: 4.
    let o = c.run_as("mallory", &["fs", "ls", "/secure"]);
    assert_eq!(o.code, 4, "{}", o.stderr);
    assert!(
        o.stderr
            .starts_with("granary: Permission denied: user=mallory, access=READ_EXECUTE"),
        "{}",
        o.stderr
    );
    let o = c.run_as("mallory", &["fs", "touchz", "/secure/x"]);
    assert_eq!(o.code, 4, "{}", o.stderr);
    assert!(
        o.stderr.contains("Permission denied: user=mallory"),
        "{}",
        o.stderr
    );

    // Exists already: 5.
    let o = c.run_as("hdfs", &["fs", "mkdir", "/open"]);
    assert_eq!((o.code, o.stderr.as_str()), (5, "granary: /open: File exists\n"));

    // Safe mode: 6.
    c.ok(&["admin", "safemode", "enter"]);
    let o = c.run_as("hdfs", &["fs", "mkdir", "/during"]);
    assert_eq!(o.code, 6, "{}", o.stderr);
    assert!(o.stderr.contains("safe mode is ON"), "{}", o.stderr);
    c.ok(&["admin", "safemode", "leave"]);

    // Bad usage: 2, from clap or from an argument the CLI checks.
    let o = c.run_as("hdfs", &["fs", "chmod", "u+q", "/open"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.starts_with("granary: invalid mode \"u+q\""),
        "{}",
        o.stderr
    );
    assert_eq!(c.run_as("hdfs", &["fs", "frobnicate", "/"]).code, 2);
    assert_eq!(c.run_as("hdfs", &["fs", "setrep", "0", "/open"]).code, 2);
    // Other failures: 1.
    let o = c.run_as("hdfs", &["fs", "rm", "/open"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (1, "granary: /open: Is a directory\n")
    );
    // `fs test` keeps 1 for "does not hold".
    assert_eq!(c.run_as("hdfs", &["fs", "test", "-e", "/nope"]).code, 1);
    assert_eq!(c.run_as("mallory", &["fs", "test", "-e", "/secure/x"]).code, 4);

    // The table is in the help.
    let help = c.ok(&["--help"]);
    assert!(
        help.contains("Exit status:") && help.contains("7  unavailable"),
        "{help}"
    );

    // An HA group's namenodes, comma-separated: a dead first one is skipped.
    assert!(help.contains("comma-separated addresses"), "{help}");
    let list = format!("127.0.0.1:{},{}", free_port(), c.rpc);
    let o = Out::of(
        Command::new(env!("CARGO_BIN_EXE_granary"))
            .args(["fs", "test", "-d", "/"])
            .env("GRANARY_NAMENODE", &list)
            .env("GRANARY_USER", "hdfs")
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);

    // A stopped namenode: 7.
    c.nn.terminate(Duration::from_secs(20));
    let o = c.run_as("hdfs", &["fs", "ls", "/"]);
    assert_eq!(o.code, 7, "{}", o.stderr);
    assert!(
        o.stderr
            .starts_with(&format!("granary: cannot connect to namenode at {}", c.rpc)),
        "{}",
        o.stderr
    );
    assert_eq!(o.stdout, "");
}

/// Runs `cmd` with stdout a pipe whose reader is already gone.
fn into_closed_pipe(mut cmd: Command) -> Out {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Out::of(cmd.stdout(writer).stderr(Stdio::piped()).output().unwrap())
}

/// `granary admin report | head` and the like: when the reader of stdout
/// goes away the command ends quietly, exit 0, as `hdfs dfs` does; no
/// panic, no "Broken pipe".
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let c = cluster();
    let dirs: Vec<String> = (0..1500).map(|i| format!("/many/d{i:04}")).collect();
    let mut args = vec!["fs", "mkdir", "-p"];
    args.extend(dirs.iter().map(String::as_str));
    c.ok(&args);
    for args in [
        &["admin", "report"][..],
        &["admin", "safemode", "get"],
        &["fs", "ls", "/many"],
        &["fs", "ls", "-R", "/"],
        &["fs", "stat", "/many"],
        &["fs", "count", "/many"],
        &["fsck", "/", "-files"],
    ] {
        let o = into_closed_pipe(c.cmd("hdfs", args));
        assert_eq!(o.code, 0, "{args:?}: {}", o.stderr);
        assert_eq!(o.stderr, "", "{args:?}");
    }
    // A reader that takes the first lines and goes (`| head -3`).
    let mut child = c
        .cmd("hdfs", &["fs", "ls", "/many"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let o = Out::of(child.wait_with_output().unwrap());
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert!(first.starts_with(b"Found 1500 items"));
    // Failures still say so when stdout is closed.
    let o = into_closed_pipe(c.cmd("hdfs", &["fs", "ls", "/nope"]));
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (3, "granary: /nope: No such file or directory\n")
    );
    // rm goes on deleting when nobody reads what it did.
    let o = into_closed_pipe(c.cmd("hdfs", &["fs", "rm", "-r", "/many/d0000", "/many/d0001"]));
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert_eq!(c.run_as("hdfs", &["fs", "test", "-e", "/many/d0001"]).code, 1);
}
