//! Safe mode: after a start the namenode serves reads but refuses changes
//! until datanodes have reported enough blocks (`[safemode] threshold` of all
//! blocks with at least `min_replication` replicas), then waits
//! `extension_ms` more and leaves by itself. Operators can also enter
//! and leave it by hand; a manual safe mode is only left by hand.
//!
//! The number of blocks to wait for comes from a scan of the namespace that
//! runs while the namenode already serves reads; until it is known, automatic
//! safe mode cannot end.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// `[safemode]` of the namenode configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SafeModeConfig {
    /// Fraction of blocks that must have `min_replication` replicas
    /// reported before safe mode ends by itself (HDFS: 0.999).
    pub threshold: f64,
    /// How long safe mode lasts after the threshold is reached (HDFS: 30 s).
    pub extension_ms: u64,
}

impl Default for SafeModeConfig {
    fn default() -> Self {
        Self {
            threshold: 0.999,
            extension_ms: 10_000,
        }
    }
}

impl SafeModeConfig {
    pub fn validate(&self) -> Result<(), granary_common::config::ConfigError> {
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(granary_common::config::ConfigError::Invalid(format!(
                "safemode threshold {} must be between 0 and 1",
                self.threshold
            )));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Inner {
    /// Entered at start, left automatically.
    automatic: bool,
    /// Entered by an operator, left only by an operator.
    manual: bool,
    /// When the threshold was first reached.
    reached_at: Option<Instant>,
    /// `None` while the start-up scan is still counting.
    total_blocks: Option<u64>,
    reported_blocks: u64,
}

pub struct SafeMode {
    inner: Mutex<Inner>,
    threshold: f64,
    extension: Duration,
}

impl SafeMode {
    /// Starts in safe mode unless there are no blocks to wait for (a total
    /// of `None` is not counted yet: see [`SafeMode::set_total`]).
    pub fn from_config(total_blocks: Option<u64>, cfg: &SafeModeConfig) -> Self {
        Self::new(
            total_blocks,
            cfg.threshold,
            Duration::from_millis(cfg.extension_ms),
        )
    }

    pub fn new(total_blocks: Option<u64>, threshold: f64, extension: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                automatic: total_blocks.is_none_or(|t| t > 0) && threshold > 0.0,
                manual: false,
                reached_at: None,
                total_blocks,
                reported_blocks: 0,
            }),
            threshold,
            extension,
        }
    }

    /// Records the counted total; with nothing to wait for, leaves
    /// automatic safe mode.
    pub fn set_total(&self, total_blocks: u64) {
        let mut g = self.inner.lock();
        g.total_blocks = Some(total_blocks);
        if total_blocks == 0 {
            g.automatic = false;
        }
    }

    pub fn is_on(&self) -> bool {
        let g = self.inner.lock();
        g.automatic || g.manual
    }

    /// Feeds the current count of blocks with enough replicas; may leave
    /// automatic safe mode. Returns true when this call left it.
    pub fn update(&self, reported_blocks: u64) -> bool {
        let mut g = self.inner.lock();
        g.reported_blocks = reported_blocks;
        if !g.automatic {
            return false;
        }
        let Some(total) = g.total_blocks else {
            return false;
        };
        let needed = (total as f64 * self.threshold).ceil() as u64;
        if reported_blocks < needed {
            g.reached_at = None;
            return false;
        }
        let at = *g.reached_at.get_or_insert_with(Instant::now);
        if at.elapsed() >= self.extension {
            g.automatic = false;
            return true;
        }
        false
    }

    pub fn enter(&self) {
        self.inner.lock().manual = true;
    }

    pub fn leave(&self) {
        let mut g = self.inner.lock();
        g.manual = false;
        g.automatic = false;
    }

    pub fn counts(&self) -> (u64, u64) {
        let g = self.inner.lock();
        (g.reported_blocks, g.total_blocks.unwrap_or(0))
    }

    /// A sentence saying why writes are refused, as HDFS's safe mode tip.
    pub fn status(&self) -> String {
        let g = self.inner.lock();
        if g.manual {
            return "safe mode is ON: it was turned on manually; use `granary admin safemode leave` to turn it off".into();
        }
        if !g.automatic {
            return "safe mode is OFF".into();
        }
        let Some(total) = g.total_blocks else {
            return format!(
                "safe mode is ON: the namenode is still counting its blocks (reported so far: {}); it turns off automatically",
                g.reported_blocks
            );
        };
        let needed = (total as f64 * self.threshold).ceil() as u64;
        if g.reported_blocks < needed {
            format!(
                "safe mode is ON: the reported blocks {} need {} more to reach the threshold {:.4} of total blocks {total}; it turns off automatically",
                g.reported_blocks,
                needed - g.reported_blocks,
                self.threshold,
            )
        } else {
            format!(
                "safe mode is ON: the reported blocks {} reached the threshold {:.4} of total blocks {total}; it turns off in {} s",
                g.reported_blocks,
                self.threshold,
                self.extension
                    .saturating_sub(g.reached_at.map_or(Duration::ZERO, |a| a.elapsed()))
                    .as_secs()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_after_threshold_and_extension() {
        let sm = SafeMode::new(Some(1000), 0.999, Duration::from_millis(50));
        assert!(sm.is_on());
        assert!(!sm.update(998));
        assert!(sm.status().contains("need 1 more"), "{}", sm.status());
        assert!(!sm.update(999));
        assert!(sm.is_on(), "the extension keeps it on");
        std::thread::sleep(Duration::from_millis(60));
        assert!(sm.update(999));
        assert!(!sm.is_on());
    }

    #[test]
    fn empty_namespaces_start_out_of_safe_mode_and_manual_mode_stays() {
        let sm = SafeMode::new(Some(0), 0.999, Duration::ZERO);
        assert!(!sm.is_on());
        sm.enter();
        assert!(!sm.update(0));
        assert!(sm.is_on());
        assert!(sm.status().contains("manually"));
        sm.leave();
        assert!(!sm.is_on());
    }

    #[test]
    fn stays_on_until_the_start_up_count_is_known() {
        let sm = SafeMode::new(None, 0.999, Duration::ZERO);
        assert!(sm.is_on());
        assert!(!sm.update(1_000_000), "no total yet: nothing to compare with");
        assert!(sm.status().contains("still counting"), "{}", sm.status());
        sm.set_total(10);
        assert!(sm.is_on());
        assert!(sm.update(10));
        assert!(!sm.is_on());

        let empty = SafeMode::new(None, 0.999, Duration::ZERO);
        empty.set_total(0);
        assert!(!empty.is_on(), "nothing to wait for");

        let by_hand = SafeMode::new(None, 0.999, Duration::ZERO);
        by_hand.leave();
        by_hand.set_total(5);
        assert!(!by_hand.is_on(), "an operator's leave is not undone by the count");
    }
}
