//! Latency samples and the one-line results every benchmark prints.

use std::time::Duration;

/// Per-operation latencies of one phase, in microseconds.
#[derive(Default)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        self.0.push(d.as_micros().min(u32::MAX as u128) as u32);
    }

    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// The q-quantile in milliseconds (q in 0..=1).
    pub fn quantile_ms(&mut self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() - 1) as f64 * q).round() as usize;
        f64::from(self.0[i]) / 1000.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// `name: ops=N threads=T seconds=S ops_per_sec=X p50_ms=Y p99_ms=Z`
pub fn report(name: &str, threads: usize, mut lat: Latencies, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    let ops = lat.len();
    println!(
        "{name}: ops={ops} threads={threads} seconds={secs:.2} ops_per_sec={:.0} p50_ms={:.3} p99_ms={:.3}",
        ops as f64 / secs.max(1e-9),
        lat.quantile_ms(0.50),
        lat.quantile_ms(0.99)
    );
}

/// VmRSS and VmHWM of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Bytes in the files under `dir`.
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// `len` bytes no compressor shrinks (xorshift from `seed`): what the
/// data benchmarks write.
pub fn incompressible(len: usize, seed: u64) -> bytes::Bytes {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// The middle value (the mean of the two middle ones for an even count);
/// 0 for none.
pub fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_known_samples() {
        let mut l = Latencies::default();
        for us in 1..=100u64 {
            l.record(Duration::from_micros(us * 1000));
        }
        assert_eq!(l.quantile_ms(0.5), 51.0);
        assert_eq!(l.quantile_ms(0.99), 99.0);
    }
}
