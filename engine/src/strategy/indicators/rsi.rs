//! Relative strength index with Wilder's smoothing.

/// RSI(n) with Wilder's smoothing, seeded with the average gain/loss of the first `n` changes.
#[derive(Debug, Clone, Copy)]
pub struct Rsi {
    period: u32,
    prev: Option<f64>,
    changes: u32,
    avg_gain: f64,
    avg_loss: f64,
}

impl Rsi {
    /// An RSI over `period` changes (`period` ≥ 1; 0 is treated as 1).
    pub fn new(period: u32) -> Self {
        Self {
            period: period.max(1),
            prev: None,
            changes: 0,
            avg_gain: 0.0,
            avg_loss: 0.0,
        }
    }

    /// Adds a close; returns the RSI (0–100) once `period` changes have been seen.
    #[inline]
    pub fn update(&mut self, close: f64) -> Option<f64> {
        let prev = self.prev.replace(close)?;
        let d = close - prev;
        let (g, l) = if d > 0.0 { (d, 0.0) } else { (0.0, -d) };
        let n = self.period as f64;
        self.changes = self.changes.saturating_add(1);
        if self.changes <= self.period {
            // Seed phase: accumulate a plain mean of the first n changes.
            self.avg_gain += g / n;
            self.avg_loss += l / n;
        } else {
            self.avg_gain = (self.avg_gain * (n - 1.0) + g) / n;
            self.avg_loss = (self.avg_loss * (n - 1.0) + l) / n;
        }
        self.value()
    }

    /// The current RSI, once ready. A window without losses reads 100.
    #[inline]
    pub fn value(&self) -> Option<f64> {
        if self.changes < self.period {
            return None;
        }
        if self.avg_loss == 0.0 {
            return Some(100.0);
        }
        Some(100.0 - 100.0 / (1.0 + self.avg_gain / self.avg_loss))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rising_series_reads_100_and_falling_reads_0() {
        let mut r = Rsi::new(3);
        for i in 0..10 {
            r.update(i as f64);
        }
        assert_eq!(r.value(), Some(100.0));
        let mut r = Rsi::new(3);
        assert_eq!(r.update(10.0), None);
        for i in 1..10 {
            r.update(10.0 - i as f64);
        }
        assert_eq!(r.value(), Some(0.0));
    }

    #[test]
    fn wilder_seed_is_the_mean_of_the_first_changes() {
        let mut r = Rsi::new(2);
        r.update(1.0);
        r.update(2.0); // +1
                       // -0.5: avg gain 0.5, avg loss 0.25 -> RS 2 -> RSI 66.67
        let v = r.update(1.5).unwrap();
        assert!((v - 200.0 / 3.0).abs() < 1e-12);
    }
}
