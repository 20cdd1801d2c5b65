//! Moving average convergence/divergence.

use super::Ema;

/// One MACD reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MacdValue {
    /// EMA(fast) − EMA(slow).
    pub macd: f64,
    /// EMA(signal) of the MACD line.
    pub signal: f64,
    /// `macd − signal`.
    pub hist: f64,
}

/// MACD(fast, slow, signal), e.g. (12, 26, 9).
#[derive(Debug, Clone, Copy)]
pub struct Macd {
    fast: Ema,
    slow: Ema,
    signal: Ema,
    last: Option<MacdValue>,
}

impl Macd {
    /// A MACD with the given periods.
    pub fn new(fast: u32, slow: u32, signal: u32) -> Self {
        Self {
            fast: Ema::new(fast),
            slow: Ema::new(slow),
            signal: Ema::new(signal),
            last: None,
        }
    }

    /// The usual (12, 26, 9).
    pub fn standard() -> Self {
        Self::new(12, 26, 9)
    }

    /// Adds a close; returns the reading once the signal line is ready.
    #[inline]
    pub fn update(&mut self, close: f64) -> Option<MacdValue> {
        let f = self.fast.update(close);
        let s = self.slow.update(close);
        if let (Some(f), Some(s)) = (f, s) {
            let m = f - s;
            if let Some(sig) = self.signal.update(m) {
                self.last = Some(MacdValue {
                    macd: m,
                    signal: sig,
                    hist: m - sig,
                });
            }
        }
        self.last
    }

    /// The latest reading, once ready.
    #[inline]
    pub fn value(&self) -> Option<MacdValue> {
        self.last
    }
}
