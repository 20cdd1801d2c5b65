//! Wilder's average directional index and average true range.

/// ADX(n) (Wilder), with +DI/−DI.
#[derive(Debug, Clone, Copy)]
pub struct Adx {
    period: u32,
    prev: Option<(f64, f64, f64)>,
    changes: u32,
    tr_s: f64,
    pdm_s: f64,
    mdm_s: f64,
    dx_count: u32,
    adx: f64,
    plus_di: f64,
    minus_di: f64,
}

impl Adx {
    /// An ADX over `period` bars (`period` ≥ 1; 0 is treated as 1).
    pub fn new(period: u32) -> Self {
        Self {
            period: period.max(1),
            prev: None,
            changes: 0,
            tr_s: 0.0,
            pdm_s: 0.0,
            mdm_s: 0.0,
            dx_count: 0,
            adx: 0.0,
            plus_di: 0.0,
            minus_di: 0.0,
        }
    }

    /// Adds a bar; returns the ADX (0–100) once `2n − 1` bars have been seen.
    #[inline]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let (ph, pl, pc) = self.prev.replace((high, low, close))?;
        let tr = high.max(pc) - low.min(pc);
        let up = high - ph;
        let down = pl - low;
        let pdm = if up > down && up > 0.0 { up } else { 0.0 };
        let mdm = if down > up && down > 0.0 { down } else { 0.0 };
        let n = self.period as f64;
        self.changes = self.changes.saturating_add(1);
        if self.changes <= self.period {
            self.tr_s += tr;
            self.pdm_s += pdm;
            self.mdm_s += mdm;
            if self.changes < self.period {
                return None;
            }
        } else {
            self.tr_s = self.tr_s - self.tr_s / n + tr;
            self.pdm_s = self.pdm_s - self.pdm_s / n + pdm;
            self.mdm_s = self.mdm_s - self.mdm_s / n + mdm;
        }
        let (pdi, mdi) = if self.tr_s != 0.0 {
            (
                100.0 * self.pdm_s / self.tr_s,
                100.0 * self.mdm_s / self.tr_s,
            )
        } else {
            (0.0, 0.0)
        };
        self.plus_di = pdi;
        self.minus_di = mdi;
        let dx = if pdi + mdi != 0.0 {
            100.0 * (pdi - mdi).abs() / (pdi + mdi)
        } else {
            0.0
        };
        self.dx_count = self.dx_count.saturating_add(1);
        if self.dx_count <= self.period {
            self.adx += dx / n;
        } else {
            self.adx = (self.adx * (n - 1.0) + dx) / n;
        }
        self.value()
    }

    /// The current ADX, once ready.
    #[inline]
    pub fn value(&self) -> Option<f64> {
        (self.dx_count >= self.period).then_some(self.adx)
    }

    /// +DI and −DI of the latest bar, once `n` changes have been seen.
    #[inline]
    pub fn di(&self) -> Option<(f64, f64)> {
        (self.changes >= self.period).then_some((self.plus_di, self.minus_di))
    }
}

/// ATR(n) (Wilder). The first bar's true range is its high − low.
#[derive(Debug, Clone, Copy)]
pub struct Atr {
    period: u32,
    prev_close: Option<f64>,
    count: u32,
    atr: f64,
}

impl Atr {
    /// An ATR over `period` bars (`period` ≥ 1; 0 is treated as 1).
    pub fn new(period: u32) -> Self {
        Self {
            period: period.max(1),
            prev_close: None,
            count: 0,
            atr: 0.0,
        }
    }

    /// Adds a bar; returns the ATR once `n` bars have been seen.
    #[inline]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let tr = match self.prev_close.replace(close) {
            Some(pc) => high.max(pc) - low.min(pc),
            None => high - low,
        };
        let n = self.period as f64;
        self.count = self.count.saturating_add(1);
        if self.count <= self.period {
            self.atr += tr / n;
        } else {
            self.atr = (self.atr * (n - 1.0) + tr) / n;
        }
        self.value()
    }

    /// The current ATR, once ready.
    #[inline]
    pub fn value(&self) -> Option<f64> {
        (self.count >= self.period).then_some(self.atr)
    }
}
