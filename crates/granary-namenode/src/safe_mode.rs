//! Safe mode: after a start the namenode serves reads but refuses changes
//! until datanodes have reported enough blocks (`safemode_threshold` of all
//! blocks with at least `min_replication` replicas), then waits
//! `safemode_extension_ms` more and leaves by itself. Operators can also enter
//! and leave it by hand; a manual safe mode is only left by hand.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Debug)]
struct Inner {
    /// Entered at start, left automatically.
    automatic: bool,
    /// Entered by an operator, left only by an operator.
    manual: bool,
    /// When the threshold was first reached.
    reached_at: Option<Instant>,
    total_blocks: u64,
    reported_blocks: u64,
}

pub struct SafeMode {
    inner: Mutex<Inner>,
    threshold: f64,
    extension: Duration,
}

impl SafeMode {
    /// Starts in safe mode unless there are no blocks to wait for.
    pub fn new(total_blocks: u64, threshold: f64, extension: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                automatic: total_blocks > 0 && threshold > 0.0,
                manual: false,
                reached_at: None,
                total_blocks,
                reported_blocks: 0,
            }),
            threshold,
            extension,
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
        let needed = (g.total_blocks as f64 * self.threshold).ceil() as u64;
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
        (g.reported_blocks, g.total_blocks)
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
        let needed = (g.total_blocks as f64 * self.threshold).ceil() as u64;
        if g.reported_blocks < needed {
            format!(
                "safe mode is ON: the reported blocks {} need {} more to reach the threshold {:.4} of total blocks {}; it turns off automatically",
                g.reported_blocks,
                needed - g.reported_blocks,
                self.threshold,
                g.total_blocks
            )
        } else {
            format!(
                "safe mode is ON: the reported blocks {} reached the threshold {:.4} of total blocks {}; it turns off in {} s",
                g.reported_blocks,
                self.threshold,
                g.total_blocks,
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
        let sm = SafeMode::new(1000, 0.999, Duration::from_millis(50));
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
        let sm = SafeMode::new(0, 0.999, Duration::ZERO);
        assert!(!sm.is_on());
        sm.enter();
        assert!(!sm.update(0));
        assert!(sm.is_on());
        assert!(sm.status().contains("manually"));
        sm.leave();
        assert!(!sm.is_on());
    }
}
