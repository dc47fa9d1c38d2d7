//! The audit log: one line per namespace operation, in HDFS's format
//! (`FSNamesystem.audit`), to its own file (`[audit] file`):
//!
//! `<time> INFO FSNamesystem.audit: allowed=true ugi=alice (auth:TLS)
//! ip=/127.0.0.1 cmd=create src=/a dst=null perm=null proto=rpc`, the
//! fields separated by tabs.
//!
//! A call that succeeds is logged `allowed=true`, one refused for lack of
//! permission `allowed=false`; other failures (no such file, ...) are not
//! logged, as in HDFS. Calls hand their line to a bounded queue and go on;
//! a thread of its own takes the queue every 50 ms, formats and writes
//! (off the hot path). When the
//! queue is full, lines are counted as dropped, never waited for.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// `[audit]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Where the lines go (appended); empty: no audit log.
    pub file: PathBuf,
}

/// Lines waiting for the writer at most.
const QUEUE: usize = 65_536;

/// One audited operation.
pub struct Event {
    pub allowed: bool,
    pub user: String,
    /// The proxy user acting for `user` (doas), if any: HDFS writes
    /// `ugi=bob (auth:PROXY) via alice (auth:TLS)`.
    pub via: Option<String>,
    /// `SIMPLE` (the user as claimed) or `TLS` (as its certificate names).
    pub auth: &'static str,
    pub ip: Option<IpAddr>,
    pub cmd: &'static str,
    pub src: String,
    pub dst: Option<String>,
    pub perm: Option<String>,
    /// `rpc` (gRPC) or `webhdfs`.
    pub proto: &'static str,
}

/// The namenode's audit log; [`AuditLog::off`] when none is configured.
pub struct AuditLog {
    tx: Option<SyncSender<(SystemTime, Event)>>,
    dropped: AtomicU64,
}

impl AuditLog {
    pub fn off() -> Self {
        Self {
            tx: None,
            dropped: AtomicU64::new(0),
        }
    }

    /// Opens (appends to) `path` and starts the writer thread, which ends
    /// when the log is dropped.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("audit log {}: {e}", path.display())))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_lines(rx, std::io::BufWriter::with_capacity(256 << 10, file), &shown))?;
        Ok(Self {
            tx: Some(tx),
            dropped: AtomicU64::new(0),
        })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues `e`; never waits.
    pub fn log(&self, e: Event) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send((SystemTime::now(), e)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n + 1, "audit log queue full: lines dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn write_lines(rx: Receiver<(SystemTime, Event)>, mut out: impl Write, path: &str) {
    let mut failing = false;
    let mut clock = Clock::new();
    loop {
        // Takes what is queued, then sleeps: the thread never waits on the
        // queue itself, so a call that queues a line never has to wake it
        // (a wake-up per line was a futex call and a context switch per
        // operation). Lines reach the file within about 50 ms.
        let mut wrote = false;
        let r = loop {
            match rx.try_recv() {
                Ok((at, e)) => {
                    wrote = true;
                    if let Err(e) = write_line(&mut out, clock.stamp(at), &e) {
                        break Err(e);
                    }
                }
                Err(TryRecvError::Empty) => break if wrote { out.flush() } else { Ok(()) },
                Err(TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        };
        match r {
            Err(e) if !failing => {
                failing = true;
                tracing::error!(file = %path, error = %e, "cannot write the audit log");
            }
            Ok(()) => failing = false,
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Lines' times (`2026-12-02 11:20:00,123`, local time): the part up to
/// the second is formatted once per second, not per line (formatting a
/// date was as costly as the rest of the line). The local offset is read
/// when the writer starts; a daylight saving change shows from the next start.
struct Clock {
    offset: chrono::FixedOffset,
    second: i64,
    prefix: String,
    stamp: String,
}

impl Clock {
    fn new() -> Self {
        Self {
            offset: *chrono::Local::now().offset(),
            second: i64::MIN,
            prefix: String::new(),
            stamp: String::new(),
        }
    }

    fn stamp(&mut self, at: SystemTime) -> &str {
        let t = chrono::DateTime::<chrono::Utc>::from(at).with_timezone(&self.offset);
        let second = t.timestamp();
        if second != self.second {
            self.second = second;
            self.prefix = t.format("%Y-%m-%d %H:%M:%S").to_string();
        }
        use std::fmt::Write as _;
        self.stamp.clear();
        let _ = write!(self.stamp, "{},{:03}", self.prefix, t.timestamp_subsec_millis());
        &self.stamp
    }
}

/// One line, as HDFS writes it, stamped `time`.
fn write_line(out: &mut impl Write, time: &str, e: &Event) -> std::io::Result<()> {
    let null = std::borrow::Cow::Borrowed("null");
    write!(out, "{time} INFO FSNamesystem.audit: allowed={}\tugi=", e.allowed)?;
    match &e.via {
        Some(real) => write!(
            out,
            "{} (auth:PROXY) via {} (auth:{})",
            clean(&e.user),
            clean(real),
            e.auth
        )?,
        None => write!(out, "{} (auth:{})", clean(&e.user), e.auth)?,
    }
    out.write_all(b"\tip=")?;
    match e.ip {
        Some(ip) => write!(out, "/{ip}")?,
        None => out.write_all(b"null")?,
    }
    writeln!(
        out,
        "\tcmd={}\tsrc={}\tdst={}\tperm={}\tproto={}",
        e.cmd,
        clean(&e.src),
        e.dst.as_deref().map_or_else(|| null.clone(), clean),
        e.perm.as_deref().map_or(null, clean),
        e.proto
    )
}

/// One line, as HDFS writes it (local time).
pub fn format_line(at: SystemTime, e: &Event) -> String {
    let mut out = Vec::new();
    let _ = write_line(&mut out, Clock::new().stamp(at), e);
    String::from_utf8_lossy(&out).into_owned()
}

/// A path or name as one field: tabs and line breaks would split lines or
/// fields, so they are escaped.
fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['\\', '\t', '\n', '\r']) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
            .replace('\r', "\\r"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(src: &str) -> Event {
        Event {
            allowed: true,
            user: "alice".into(),
            via: None,
            auth: "TLS",
            ip: Some("127.0.0.1".parse().unwrap()),
            cmd: "rename",
            src: src.into(),
            dst: Some("/b".into()),
            perm: None,
            proto: "rpc",
        }
    }

    #[test]
    fn lines_are_in_hdfs_format_and_stay_one_line() {
        let l = format_line(SystemTime::now(), &event("/a"));
        let (_, fields) = l.split_once("INFO FSNamesystem.audit: ").unwrap();
        assert_eq!(
            fields,
            "allowed=true\tugi=alice (auth:TLS)\tip=/127.0.0.1\tcmd=rename\tsrc=/a\tdst=/b\tperm=null\tproto=rpc\n"
        );
        let proxied = Event {
            user: "bob".into(),
            via: Some("alice".into()),
            ..event("/a")
        };
        let l = format_line(SystemTime::now(), &proxied);
        assert!(
            l.contains("\tugi=bob (auth:PROXY) via alice (auth:TLS)\tip="),
            "{l}"
        );
        let l = format_line(SystemTime::now(), &event("/x\ny\tz"));
        assert_eq!(l.matches('\n').count(), 1, "{l}");
        assert!(l.contains("src=/x\\ny\\tz\t"), "{l}");
    }

    #[test]
    fn stamps_keep_their_milliseconds_across_seconds() {
        let mut c = Clock::new();
        let t0 = std::time::UNIX_EPOCH + Duration::from_millis(1_764_670_000_123);
        let a = c.stamp(t0).to_string();
        let b = c.stamp(t0 + Duration::from_millis(900)).to_string();
        assert!(a.ends_with(",123") && b.ends_with(",023"), "{a} {b}");
        assert_ne!(a[..19], b[..19], "the next second is formatted anew");
        assert_eq!(a.len(), "2025-12-02 11:20:00,123".len());
    }

    #[test]
    fn the_writer_appends_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        {
            let log = AuditLog::open(&path).unwrap();
            for i in 0..100 {
                log.log(event(&format!("/f{i}")));
            }
            assert_eq!(log.dropped(), 0);
        }
        // The writer flushes once the log is dropped.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() == 100 {
                assert!(text.lines().last().unwrap().contains("src=/f99\t"));
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
