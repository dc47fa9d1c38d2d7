//! The last hour of the cluster's activity, kept in memory for the web
//! UI's charts: every sample interval, the namenode's client calls per
//! second and the datanodes' block bytes read and written per second (from
//! the counters their heartbeats carry). Nothing here is persisted: a
//! restarted namenode starts a new history.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::state::NamenodeState;
use granary_common::config::ConfigError;

/// `[web_ui]` of the namenode configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebUiConfig {
    /// How often the charts get a point.
    pub sample_interval_ms: u64,
    /// How far back the charts go.
    pub history_minutes: u64,
}

impl Default for WebUiConfig {
    fn default() -> Self {
        Self {
            sample_interval_ms: 10_000,
            history_minutes: 60,
        }
    }
}

impl WebUiConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(100..=3_600_000).contains(&self.sample_interval_ms) {
            return Err(ConfigError::Invalid(format!(
                "[web_ui] sample_interval_ms = {}: from 100 to 3600000",
                self.sample_interval_ms
            )));
        }
        if !(1..=24 * 60).contains(&self.history_minutes) {
            return Err(ConfigError::Invalid(format!(
                "[web_ui] history_minutes = {}: from 1 to 1440",
                self.history_minutes
            )));
        }
        Ok(())
    }

    /// Samples kept (at most 10,000 whatever the settings).
    fn capacity(&self) -> usize {
        ((self.history_minutes * 60_000 / self.sample_interval_ms) as usize).clamp(2, 10_000)
    }
}

/// One point of the charts: rates over the interval before `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Milliseconds since the epoch.
    pub at_ms: i64,
    pub ops_per_sec: f64,
    pub read_bytes_per_sec: f64,
    pub write_bytes_per_sec: f64,
}

/// Counters as last seen, to take differences from.
#[derive(Default)]
struct Seen {
    at: Option<Instant>,
    ops: u64,
    /// Per datanode: (read, written).
    io: HashMap<String, (u64, u64)>,
}

pub struct Activity {
    capacity: usize,
    samples: Mutex<VecDeque<Sample>>,
    seen: Mutex<Seen>,
}

impl Activity {
    pub fn new(cfg: &WebUiConfig) -> Self {
        Self {
            capacity: cfg.capacity(),
            samples: Mutex::new(VecDeque::new()),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// The history, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().iter().copied().collect()
    }

    /// Takes a sample from the counters now: client calls so far and each
    /// datanode's (uuid, read, written). The first call only notes them. A
    /// counter that went down (a datanode restarted) counts from zero.
    pub fn sample(&self, now: Instant, at_ms: i64, ops: u64, io: &[(String, u64, u64)]) {
        let mut seen = self.seen.lock();
        let since = |old: u64, new: u64| if new >= old { new - old } else { new };
        let (mut read, mut written) = (0u64, 0u64);
        for (uuid, r, w) in io {
            let (or, ow) = seen.io.get(uuid).copied().unwrap_or((*r, *w));
            read = read.saturating_add(since(or, *r));
            written = written.saturating_add(since(ow, *w));
        }
        let prev = seen.at.replace(now);
        let prev_ops = std::mem::replace(&mut seen.ops, ops);
        seen.io = io.iter().map(|(u, r, w)| (u.clone(), (*r, *w))).collect();
        let Some(prev) = prev else { return };
        let secs = now.duration_since(prev).as_secs_f64().max(1e-3);
        let s = Sample {
            at_ms,
            ops_per_sec: since(prev_ops, ops) as f64 / secs,
            read_bytes_per_sec: read as f64 / secs,
            write_bytes_per_sec: written as f64 / secs,
        };
        let mut samples = self.samples.lock();
        if samples.len() == self.capacity {
            samples.pop_front();
        }
        samples.push_back(s);
    }
}

/// Samples the namenode's counters every interval while it serves.
pub fn spawn_sampler(
    state: Arc<NamenodeState>,
    activity: Arc<Activity>,
    token: CancellationToken,
) -> JoinHandle<()> {
    let every = Duration::from_millis(state.config().web_ui.sample_interval_ms);
    tokio::spawn(async move {
        loop {
            activity.sample(
                Instant::now(),
                chrono::Utc::now().timestamp_millis(),
                state.client_ops(),
                &state.datanodes().io_counters(),
            );
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_counter_differences_and_the_history_is_bounded() {
        let a = Activity::new(&WebUiConfig {
            sample_interval_ms: 30_000,
            history_minutes: 1,
        });
        let t = Instant::now();
        let io = |r, w| vec![("dn1".to_string(), r, w), ("dn2".to_string(), 10, 10)];
        a.sample(t, 0, 100, &io(1000, 0));
        assert!(a.samples().is_empty(), "the first call only notes the counters");
        a.sample(t + Duration::from_secs(2), 2000, 300, &io(3000, 4000));
        let s = a.samples()[0];
        assert_eq!(
            (s.ops_per_sec, s.read_bytes_per_sec, s.write_bytes_per_sec),
            (100.0, 1000.0, 2000.0)
        );
        // dn1 restarted (its counters fell): counted from zero; a new dn3 from now.
        let io = vec![("dn1".to_string(), 500, 0), ("dn3".to_string(), 7, 7)];
        a.sample(t + Duration::from_secs(3), 3000, 300, &io);
        let s = a.samples()[1];
        assert_eq!(
            (s.ops_per_sec, s.read_bytes_per_sec, s.write_bytes_per_sec),
            (0.0, 500.0, 0.0)
        );
        a.sample(t + Duration::from_secs(4), 4000, 300, &io);
        assert_eq!(a.samples().len(), 2, "one minute at 30 s keeps two");
        assert_eq!(a.samples()[1].at_ms, 4000);
    }
}
