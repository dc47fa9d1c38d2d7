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

/// A free loopback port (bound then released; fine for spawned daemons).
pub fn free_port() -> u16 {
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
    pub fn spawn(name: &str, args: &[&str], log: &std::path::Path) -> std::io::Result<Self> {
        let out = std::fs::File::create(log)?;
        let child = Command::new(bin_path(name))
            .args(args)
            .env("RUST_LOG", "info")
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
}

impl ProcessCluster {
    /// Formats and starts a namenode (superuser `hdfs`) and `n` datanodes,
    /// and waits until all datanodes have registered.
    pub fn start(n: usize, extra_nn_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let name = dir.path().join("name");
        let name_s = name.to_str().expect("utf-8 path").to_string();
        let out = Command::new(bin_path("granary-namenode"))
            .args(["format", "--data-dir", &name_s, "--superuser", "hdfs"])
            .output()
            .expect("run format");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let rpc = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "--data-dir",
            &name_s,
            "--rpc-addr",
            &rpc,
            "--http-addr",
            &http,
            "--superuser",
            "hdfs",
        ];
        args.extend_from_slice(extra_nn_args);
        let namenode = Daemon::spawn("granary-namenode", &args, &dir.path().join("namenode.log"))
            .expect("spawn namenode");
        assert!(
            wait_for_port(&rpc, Duration::from_secs(30)),
            "namenode did not start"
        );
        let mut c = Self {
            dir,
            namenode,
            datanodes: Vec::new(),
            rpc,
            http,
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

    /// Starts another datanode process; returns its index.
    pub fn add_datanode(&mut self) -> usize {
        let i = self.datanodes.len();
        let d = self.datanode_dir(i);
        let d = d.to_str().expect("utf-8 path").to_string();
        let rpc = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let args = [
            "--namenode",
            &self.rpc,
            "--data-dir",
            &d,
            "--rpc-addr",
            &rpc,
            "--http-addr",
            &http,
            "--heartbeat-interval-ms",
            "300",
        ];
        let dn = Daemon::spawn(
            "granary-datanode",
            &args,
            &self.dir.path().join(format!("datanode{i}.log")),
        )
        .expect("spawn datanode");
        assert!(
            wait_for_port(&rpc, Duration::from_secs(30)),
            "datanode {i} did not start"
        );
        self.datanodes.push(dn);
        i
    }

    /// Polls the namenode's /readyz until it counts `n` datanodes.
    pub fn wait_registered(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(body) = http_get(&self.http, "/readyz")
                && body.lines().any(|l| l == format!("datanodes {n}"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("namenode never saw {n} datanodes");
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
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
