//! Running the real, built binaries from tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The path of a workspace binary next to the running test executable.
pub fn bin_path(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| if d.ends_with("deps") { d.parent() } else { Some(d) })
        .expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built; run the tests through `cargo nextest run --workspace` or `cargo test --workspace`",
        p.display()
    );
    p
}

/// Namenode flags for failure tests: stale after 1 s, dead after 3 s,
/// heartbeats every 300 ms, quick redundancy rounds and retries, 64 KiB
/// blocks allowed, half a second of safe-mode extension.
pub const FAST_LIVENESS: &[&str] = &[
    "--stale-after-ms",
    "1000",
    "--dead-after-ms",
    "3000",
    "--heartbeat-interval-ms",
    "300",
    "--redundancy-interval-ms",
    "300",
    "--min-block-size",
    "65536",
    "--pending-replication-timeout-ms",
    "3000",
    "--safemode-extension-ms",
    "500",
];

/// A free loopback port (bound then released; fine for spawned daemons).
///
/// Chosen below Linux's ephemeral range (32768-60999): a port from `bind(0)`
/// is free only until a daemon binds it, and meanwhile any outgoing
/// connection of a concurrently running test could take it as its local
/// port ("datanode 2 did not start" seen once in a suite run). Ports under
/// 32768 are never handed out that way; each test process walks its own
/// sequence through them.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(2_654_435_761);
    for _ in 0..4096 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(n.wrapping_mul(7_919)) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A spawned daemon, killed (SIGKILL) when dropped.
pub struct Daemon {
    pub child: Child,
    pub name: String,
}

impl Daemon {
    /// Starts `name` with `args`, appending its output to `log`.
    pub fn spawn(name: &str, args: &[&str], log: &std::path::Path) -> std::io::Result<Self> {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let child = Command::new(bin_path(name))
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("GRANARY_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Ok(Self {
            child,
            name: name.to_string(),
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `timeout` for a clean exit; returns its status code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

/// Polls until a TCP connect to `addr` succeeds or `timeout` passes.
pub fn wait_for_port(addr: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// A namenode and datanodes running as real processes on loopback.
pub struct ProcessCluster {
    pub dir: tempfile::TempDir,
    pub namenode: Daemon,
    pub datanodes: Vec<Daemon>,
    pub rpc: String,
    pub http: String,
    nn_args: Vec<String>,
    dn_extra: Vec<String>,
    /// Each datanode's full argument list, so a restart reuses its ports and dirs.
    dn_args: Vec<Vec<String>>,
    /// With TLS on every port: where `granary admin certs init` wrote the
    /// CA and certificates, and the superuser's client settings.
    tls: Option<(PathBuf, std::sync::Arc<granary_common::tls::Tls>)>,
}

impl ProcessCluster {
    /// `granary` as `user` against this (plain, not TLS) cluster.
    pub fn cli_as(&self, user: &str, args: &[&str]) -> std::process::Output {
        Command::new(bin_path("granary"))
            .args(["--namenode", &self.rpc, "--user", user])
            .args(args)
            .output()
            .expect("granary runs")
    }

    /// `granary` as the superuser: its stdout, after checking it succeeded.
    pub fn cli_out(&self, args: &[&str]) -> Vec<u8> {
        let out = self.cli_as("hdfs", args);
        assert!(
            out.status.success(),
            "granary {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// [`ProcessCluster::cli_out`] as text.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        String::from_utf8(self.cli_out(args)).expect("UTF-8 output")
    }

    /// `granary` as the superuser: its stderr, after checking it failed.
    pub fn cli_err(&self, args: &[&str]) -> String {
        let out = self.cli_as("hdfs", args);
        assert!(!out.status.success(), "granary {args:?} should have failed");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Formats and starts a namenode (superuser `hdfs`) and `n` datanodes,
    /// and waits until all datanodes have registered.
    pub fn start(n: usize, extra_nn_args: &[&str]) -> Self {
        Self::start_with(n, extra_nn_args, &[])
    }

    /// Like [`ProcessCluster::start`], with extra arguments for every datanode.
    pub fn start_with(n: usize, extra_nn_args: &[&str], extra_dn_args: &[&str]) -> Self {
        Self::start_in(
            tempfile::tempdir().expect("temp dir"),
            n,
            extra_nn_args,
            extra_dn_args,
            None,
        )
    }

    /// A secure cluster: `granary admin certs init` writes a CA and
    /// certificates (`certs/` in the cluster's dir: namenode, a datanode
    /// each, users `hdfs` and `alice`, valid for 127.0.0.1 and the
    /// `dn_hosts`), and every daemon runs with TLS on every port and
    /// `--auth tls` (unless the extra arguments give another `--auth`).
    /// [`client`](Self::client) is `hdfs` with its certificate.
    pub fn start_tls(n: usize, extra_nn_args: &[&str], extra_dn_args: &[&str], dn_hosts: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = dir.path().join("certs");
        let certs_s = certs.to_str().expect("utf-8 path");
        let datanodes = n.to_string();
        let mut args = vec![
            "admin",
            "certs",
            "init",
            "--dir",
            certs_s,
            "--datanodes",
            &datanodes,
            "--client",
            "hdfs",
            "--client",
            "alice",
            "--datanode-host",
            "127.0.0.1",
        ];
        for h in dn_hosts {
            args.extend(["--datanode-host", h]);
        }
        let out = Command::new(bin_path("granary"))
            .args(&args)
            .output()
            .expect("run granary admin certs init");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let client =
            granary_common::tls::Tls::client(client_files(&certs, "hdfs")).expect("hdfs certificate");
        Self::start_in(dir, n, extra_nn_args, extra_dn_args, Some((certs, client)))
    }

    fn start_in(
        dir: tempfile::TempDir,
        n: usize,
        extra_nn_args: &[&str],
        extra_dn_args: &[&str],
        tls: Option<(PathBuf, std::sync::Arc<granary_common::tls::Tls>)>,
    ) -> Self {
        let name = dir.path().join("name");
        let name_s = name.to_str().expect("utf-8 path").to_string();
        let out = Command::new(bin_path("granary-namenode"))
            .args(["format", "--data-dir", &name_s, "--superuser", "hdfs"])
            .output()
            .expect("run format");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let rpc = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let mut nn_args: Vec<String> = [
            "--data-dir",
            &name_s,
            "--rpc-addr",
            &rpc,
            "--http-addr",
            &http,
            "--superuser",
            "hdfs",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some((certs, _)) = &tls {
            nn_args.extend(tls_args(certs, "namenode"));
            if !extra_nn_args.contains(&"--auth") {
                nn_args.extend(["--auth".to_string(), "tls".to_string()]);
            }
        }
        nn_args.extend(extra_nn_args.iter().map(|s| s.to_string()));
        let namenode = spawn_namenode(dir.path(), &nn_args, &rpc);
        let mut c = Self {
            dir,
            namenode,
            datanodes: Vec::new(),
            rpc,
            http,
            nn_args,
            dn_extra: extra_dn_args.iter().map(|s| s.to_string()).collect(),
            dn_args: Vec::new(),
            tls,
        };
        for _ in 0..n {
            c.add_datanode();
        }
        c.wait_registered(n);
        c
    }

    pub fn datanode_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("dn{i}"))
    }

    /// The stable uuid datanode `i` registered with (from its data dir).
    pub fn datanode_uuid(&self, i: usize) -> String {
        granary_datanode::layout::read(&self.datanode_dir(i))
            .ok()
            .flatten()
            .map(|v| v.datanode_uuid)
            .unwrap_or_else(|| panic!("datanode {i} has no VERSION yet"))
    }

    /// The `host:port` datanode `i` serves data transfer on.
    pub fn datanode_addr(&self, i: usize) -> String {
        let a = &self.dn_args[i];
        let at = a.iter().position(|x| x == "--rpc-addr").expect("rpc addr arg");
        a[at + 1].clone()
    }

    /// The `host:port` of datanode `i`'s HTTP server.
    pub fn datanode_http(&self, i: usize) -> String {
        let a = &self.dn_args[i];
        let at = a.iter().position(|x| x == "--http-addr").expect("http addr arg");
        a[at + 1].clone()
    }

    /// Starts another datanode process; returns its index.
    pub fn add_datanode(&mut self) -> usize {
        let i = self.dn_args.len();
        let d = self.datanode_dir(i);
        let d = d.to_str().expect("utf-8 path").to_string();
        let rpc = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let secret = self.secret_file();
        let mut args: Vec<String> = [
            "--namenode",
            &self.rpc,
            "--cluster-secret-file",
            secret.to_str().expect("utf-8 path"),
            "--data-dir",
            &d,
            "--rpc-addr",
            &rpc,
            "--http-addr",
            &http,
            "--heartbeat-interval-ms",
            "300",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some((certs, _)) = &self.tls {
            // `certs init --datanodes N` names them datanode1..N (datanode
            // alone for one).
            let stem = if certs.join("datanode.crt").exists() {
                "datanode".to_string()
            } else {
                format!("datanode{}", i + 1)
            };
            args.extend(tls_args(certs, &stem));
            if !self.dn_extra.iter().any(|a| a == "--auth") {
                args.extend(["--auth".to_string(), "tls".to_string()]);
            }
        }
        args.extend(self.dn_extra.iter().cloned());
        self.dn_args.push(args);
        let dn = self.spawn_datanode(i);
        self.datanodes.push(dn);
        i
    }

    fn spawn_datanode(&self, i: usize) -> Daemon {
        let args: Vec<&str> = self.dn_args[i].iter().map(String::as_str).collect();
        let dn = Daemon::spawn(
            "granary-datanode",
            &args,
            &self.dir.path().join(format!("datanode{i}.log")),
        )
        .expect("spawn datanode");
        assert!(
            wait_for_port(&self.datanode_addr(i), Duration::from_secs(30)),
            "datanode {i} did not start"
        );
        dn
    }

    /// Gives datanode `i` another (empty) data dir, as when a disk is
    /// added: stops it, then starts it on its dirs and the new one.
    pub fn add_disk(&mut self, i: usize) -> PathBuf {
        let n = self.dn_args[i].iter().filter(|a| *a == "--data-dir").count();
        let d = self.dir.path().join(format!("dn{i}-disk{n}"));
        self.datanodes[i].terminate(Duration::from_secs(20));
        self.dn_args[i].extend([
            "--data-dir".to_string(),
            d.to_str().expect("utf-8 path").to_string(),
        ]);
        self.datanodes[i] = self.spawn_datanode(i);
        d
    }

    /// Starts datanode `i` again (after a kill) on the same ports and disks.
    pub fn restart_datanode(&mut self, i: usize) {
        self.datanodes[i].kill9();
        self.datanodes[i] = self.spawn_datanode(i);
    }

    /// Stops the namenode with SIGTERM and starts it again on the same metadata.
    pub fn restart_namenode(&mut self) {
        self.stop_namenode();
        self.start_namenode();
    }

    /// SIGTERM; asserts a clean exit.
    pub fn stop_namenode(&mut self) {
        let code = self.namenode.terminate(Duration::from_secs(20));
        assert_eq!(code, Some(0), "namenode did not exit cleanly on SIGTERM");
    }

    /// Starts the namenode (after [`stop_namenode`](Self::stop_namenode)) on its data dir.
    pub fn start_namenode(&mut self) {
        self.namenode = spawn_namenode(self.dir.path(), &self.nn_args, &self.rpc);
    }

    /// The namenode's metadata directory.
    pub fn namenode_dir(&self) -> PathBuf {
        self.dir.path().join("name")
    }

    /// The cluster secret `format` wrote, which datanodes are given.
    pub fn secret_file(&self) -> PathBuf {
        self.namenode_dir().join("cluster-secret")
    }

    /// Polls the namenode's /readyz until it counts `n` datanodes.
    pub fn wait_registered(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(body) = self.get(&self.http, "/readyz")
                && body.lines().any(|l| l == format!("datanodes {n}"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("namenode never saw {n} datanodes");
    }

    /// A library client acting as the superuser (with its certificate in a
    /// secure cluster).
    pub async fn client(&self) -> granary_client::DfsClient {
        let options = granary_client::ClientOptions {
            tls: self.tls.as_ref().map(|(_, t)| t.clone()),
            ..Default::default()
        };
        granary_client::DfsClient::connect_with(&self.rpc, granary_client::Identity::new("hdfs"), options)
            .await
            .expect("connect to the namenode")
    }

    /// Where the CA and certificates of a secure cluster are.
    pub fn certs_dir(&self) -> Option<&std::path::Path> {
        self.tls.as_ref().map(|(d, _)| d.as_path())
    }

    /// GET `path` of an HTTP port of this cluster: the body of a 200 answer
    /// (over TLS with the superuser's certificate in a secure cluster).
    pub fn get(&self, addr: &str, path: &str) -> Option<String> {
        match &self.tls {
            None => http_get(addr, path),
            Some((certs, _)) => https_get(addr, path, &client_files(certs, "hdfs"))
                .filter(|(status, _)| *status == 200)
                .map(|(_, body)| body),
        }
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

/// Daemon log lines shown when a test fails.
const LOG_TAIL_LINES: usize = 150;

impl Drop for ProcessCluster {
    /// A failing test's temp dir goes away with it: show the end of every
    /// daemon's log first, so a failure that only happens under load can be
    /// read from the CI output.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return;
        };
        let mut logs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for p in logs {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(LOG_TAIL_LINES);
            eprintln!("----- {} (last {} lines) -----", p.display(), lines.len() - from);
            for l in &lines[from..] {
                eprintln!("{l}");
            }
        }
    }
}

fn spawn_namenode(dir: &std::path::Path, args: &[String], rpc: &str) -> Daemon {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let namenode =
        Daemon::spawn("granary-namenode", &args, &dir.join("namenode.log")).expect("spawn namenode");
    assert!(
        wait_for_port(rpc, Duration::from_secs(30)),
        "namenode did not start"
    );
    namenode
}

/// The data file of block `block_id` under a datanode's data dir, if it holds one.
pub fn find_replica(dir: &std::path::Path, block_id: u64) -> Option<PathBuf> {
    let want = format!("blk_{block_id}");
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == want.as_str()) {
                return Some(p);
            }
        }
    }
    None
}

/// Resident memory of a process, in MiB (`VmRSS` of /proc/PID/status).
pub fn rss_mib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS in the process status");
    kb / 1024
}

/// A minimal HTTP/1.0 GET returning the body of a 200 answer.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?;
    (status == "200").then(|| body.to_string())
}

/// Where a WebHDFS redirect sends the client: `http://HOST:PORT/PATH?Q`
/// as (`HOST:PORT`, `/PATH?Q`).
pub fn redirect_target(location: &str) -> (String, String) {
    let (host, path) = location
        .strip_prefix("http://")
        .and_then(|l| l.split_once('/'))
        .unwrap_or_else(|| panic!("not an http:// redirect: {location}"));
    (host.to_string(), format!("/{path}"))
}

/// One HTTP/1.0 request: the status, the `Location` header if any, the body.
pub fn http_request(addr: &str, method: &str, path_and_query: &str) -> (u16, Option<String>, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "{method} {path_and_query} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("send");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .expect("status")
        .parse()
        .expect("number");
    let location = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .map(str::to_string);
    (status, location, body.to_string())
}

/// The flags giving a daemon the certificate `stem` of `certs`.
fn tls_args(certs: &std::path::Path, stem: &str) -> Vec<String> {
    let f = |name: String| certs.join(name).to_str().expect("utf-8 path").to_string();
    vec![
        "--tls-cert".into(),
        f(format!("{stem}.crt")),
        "--tls-key".into(),
        f(format!("{stem}.key")),
        "--tls-ca".into(),
        f("ca.crt".into()),
    ]
}

/// The client files of user `user` (`USER.crt`, `USER.key`, `ca.crt`) in `certs`.
pub fn client_files(certs: &std::path::Path, user: &str) -> granary_common::tls::TlsFiles {
    granary_common::tls::TlsFiles {
        cert: certs.join(format!("{user}.crt")),
        key: certs.join(format!("{user}.key")),
        ca: certs.join("ca.crt"),
    }
}

/// A minimal HTTP/1.0 GET over TLS: the status and the body. `files` may
/// leave the certificate and key empty (a client without one).
pub fn https_get(addr: &str, path: &str, files: &granary_common::tls::TlsFiles) -> Option<(u16, String)> {
    https_request("GET", addr, path, files)
}

/// [`https_get`] with another method (an empty body).
pub fn https_request(
    method: &str,
    addr: &str,
    path: &str,
    files: &granary_common::tls::TlsFiles,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let cfg = granary_common::tls::Material::load_client(files)
        .ok()?
        .client_config(&[granary_common::tls::ALPN_HTTP1])
        .ok()?;
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
    let name = rustls::pki_types::ServerName::try_from(host).ok()?;
    let conn = rustls::ClientConnection::new(cfg, name).ok()?;
    let sock = std::net::TcpStream::connect(addr).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    write!(
        tls,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    // A server may close without TLS's close_notify: keep what came.
    let _ = tls.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The Python with the WebHDFS clients from PyPI (HdfsCLI, fsspec, ...):
/// `GRANARY_PYTHON`, else the venv `scripts/test.sh` installs.
pub fn python() -> PathBuf {
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

/// Runs the pytest files of `tests` (a directory under the testkit's
/// `tests/`) with [`python`], scratch files under `basetemp`, and `env`
/// added to the environment: whether they passed, and their output.
pub fn pytest(tests: &str, basetemp: &std::path::Path, env: &[(&str, &std::ffi::OsStr)]) -> (bool, String) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(tests);
    let out = Command::new(python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp"])
        .arg(basetemp)
        .arg(&dir)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .output()
        .expect("run pytest");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report)
}
