//! Moving averages.

/// Exponential moving average, `alpha = 2 / (n + 1)`, seeded with the first value.
#[derive(Debug, Clone, Copy)]
pub struct Ema {
    alpha: f64,
    period: u32,
    count: u32,
    value: f64,
}

impl Ema {
    /// An EMA over `period` values (`period` ≥ 1; 0 is treated as 1).
    pub fn new(period: u32) -> Self {
        let period = period.max(1);
        Self {
            alpha: 2.0 / (period as f64 + 1.0),
            period,
            count: 0,
            value: 0.0,
        }
    }

    /// Adds a value; returns the EMA once `period` values have been seen.
    #[inline]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        if self.count == 0 {
            self.value = x;
        } else {
            self.value += self.alpha * (x - self.value);
        }
        self.count = self.count.saturating_add(1);
        self.value()
    }

    /// The current EMA, once ready.
    #[inline]
    pub fn value(&self) -> Option<f64> {
        (self.count >= self.period).then_some(self.value)
    }

    /// The period.
    pub fn period(&self) -> u32 {
        self.period
    }
}

/// Simple moving average over a fixed window, with a compensated running sum (O(1) per update, no drift).
#[derive(Debug, Clone)]
pub struct Sma {
    ring: Box<[f64]>,
    head: usize,
    count: usize,
    sum: f64,
    comp: f64,
}

impl Sma {
    /// An SMA over `period` values (`period` ≥ 1; 0 is treated as 1). Allocates its window once, here.
    pub fn new(period: usize) -> Self {
        Self {
            ring: vec![0.0; period.max(1)].into_boxed_slice(),
            head: 0,
            count: 0,
            sum: 0.0,
            comp: 0.0,
        }
    }

    #[inline]
    fn add(&mut self, x: f64) {
        // Neumaier summation keeps the running sum exact enough over millions of updates.
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.comp += (self.sum - t) + x;
        } else {
            self.comp += (x - t) + self.sum;
        }
        self.sum = t;
    }

    /// Adds a value; returns the mean of the last `period` values once the window is full.
    #[inline]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        let n = self.ring.len();
        if self.count == n {
            let old = self.ring[self.head];
            self.add(-old);
        } else {
            self.count += 1;
        }
        self.ring[self.head] = x;
        self.head = (self.head + 1) % n;
        self.add(x);
        self.value()
    }

    /// The current mean, once the window is full.
    #[inline]
    pub fn value(&self) -> Option<f64> {
        let n = self.ring.len();
        (self.count == n).then(|| (self.sum + self.comp) / n as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_and_sma_basics() {
        let mut e = Ema::new(3);
        assert_eq!(e.update(1.0), None);
        assert_eq!(e.update(2.0), None);
        // 1 -> 1.5 -> 2.25 with alpha 0.5
        assert_eq!(e.update(3.0), Some(2.25));
        let mut s = Sma::new(3);
        assert_eq!(s.update(1.0), None);
        assert_eq!(s.update(2.0), None);
        assert_eq!(s.update(3.0), Some(2.0));
        assert_eq!(s.update(7.0), Some(4.0));
    }
}
