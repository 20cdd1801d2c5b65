//! Time for the engine: a monotonic nanosecond clock, the wall clock in ms, and a fixed-bucket latency histogram.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Monotonic nanoseconds since the clock was created.
#[derive(Debug, Clone, Copy)]
pub struct MonoClock {
    start: Instant,
}

impl Default for MonoClock {
    fn default() -> Self {
        Self::new()
    }
}

impl MonoClock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
    /// Nanoseconds since creation (a vDSO call, no syscall).
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before 1970).
#[inline]
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

const SUB: usize = 8;
const BUCKETS: usize = SUB + 61 * SUB;

/// Log-linear histogram of nanosecond values: exact below 8, then 8 buckets per power of two (≤ 12.5 % relative
/// error). Fixed array, no allocation; [`LatencyHist::quantiles`] reports bucket upper bounds.
#[derive(Clone)]
pub struct LatencyHist {
    buckets: [u64; BUCKETS],
    count: u64,
    max: u64,
}

impl std::fmt::Debug for LatencyHist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHist")
            .field("count", &self.count)
            .field("max", &self.max)
            .finish()
    }
}

impl Default for LatencyHist {
    fn default() -> Self {
        Self::new()
    }
}

#[inline]
fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros() as usize; // >= 3
    let m = ((v >> (e - 3)) & 7) as usize;
    SUB + (e - 3) * SUB + m
}

#[inline]
fn upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let e = (i - SUB) / SUB + 3;
    let m = ((i - SUB) % SUB) as u64;
    let v = ((8 + m as u128 + 1) << (e - 3)) - 1;
    v.min(u64::MAX as u128) as u64
}

impl LatencyHist {
    /// An empty histogram.
    pub const fn new() -> Self {
        Self {
            buckets: [0; BUCKETS],
            count: 0,
            max: 0,
        }
    }
    /// Records one value.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.buckets[index(ns)] += 1;
        self.count += 1;
        self.max = self.max.max(ns);
    }
    /// Number of values.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// p50, p99, p99.9 (bucket upper bounds, capped at the max) and the exact max; zeros when empty.
    pub fn quantiles(&self) -> [u64; 4] {
        if self.count == 0 {
            return [0; 4];
        }
        let targets =
            [0.5, 0.99, 0.999].map(|q: f64| ((self.count as f64 * q).ceil() as u64).max(1));
        let mut out = [0u64; 4];
        let mut cum = 0u64;
        let mut t = 0;
        for (i, &b) in self.buckets.iter().enumerate() {
            cum += b;
            while t < 3 && cum >= targets[t] {
                out[t] = upper(i).min(self.max);
                t += 1;
            }
            if t == 3 {
                break;
            }
        }
        out[3] = self.max;
        out
    }
    /// Empties the histogram (start of a stats interval).
    pub fn reset(&mut self) {
        self.buckets = [0; BUCKETS];
        self.count = 0;
        self.max = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_and_quantiles_are_close() {
        for v in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            100,
            1_000,
            123_456,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let i = index(v);
            assert!(i < BUCKETS);
            assert!(upper(i) >= v, "{v}");
            if i > 0 {
                assert!(upper(i - 1) < v, "{v}");
            }
        }
        let mut h = LatencyHist::new();
        assert_eq!(h.quantiles(), [0; 4]);
        for v in 1..=10_000u64 {
            h.record(v * 10);
        }
        let [p50, p99, p999, max] = h.quantiles();
        assert!((50_000..=56_300).contains(&p50), "{p50}");
        assert!((99_000..=100_000).contains(&p99), "{p99}");
        assert!((99_900..=100_000).contains(&p999), "{p999}");
        assert_eq!(max, 100_000);
        h.reset();
        assert_eq!(h.count(), 0);
    }
}
