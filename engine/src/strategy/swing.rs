//! `swing` mode: 15-minute to 4-hour bars (default 1 hour).
//!
//! Rules (evaluated on each finished bar, per symbol):
//! - **Long entry** (when flat): close above EMA(50) (uptrend), the MACD(12, 26, 9) histogram crosses from ≤ 0
//!   to > 0, RSI(14) between 45 and 70 (momentum, not yet overbought), ADX(14) ≥ 20 (a trend worth trading).
//! - **Short entry** (when flat): the mirror: close below EMA(50), histogram crosses from ≥ 0 to < 0, RSI(14)
//!   between 30 and 55, ADX(14) ≥ 20.
//! - **Signal exit**: the MACD histogram crosses against the position on a finished bar.
//! - **Exits on every price** (top-of-book mid, or a kline's close): stop-loss 2 %, take-profit 4 %, max
//!   holding time 3 days (exact integer levels, see [`super::exits`]).
//! - Sizing: `notional` USD (default 500, the guide's per-position cap for swing) at the touch; leverage 2.
//!
//! Bars come from trades by event time ([`Swing::on_trade`]), from closed klines of any shorter interval
//! aggregated into this mode's bars ([`Swing::on_kline`]), or ready-made ([`Swing::on_bar`]); that plumbing is
//! [`super::bar_mode`], shared with the position mode. Per-symbol state is allocated in [`Swing::new`]; updates
//! are O(1) and allocation-free.

use super::bar_mode::{bar_rules_fields, BarMode, BarRules};
use super::exits::{entry_order, exit_order, ExitRules};
use super::indicators::{Adx, Bar, Ema, Macd, Rsi};
use super::{PosView, Signal, SymbolInfo};
use crate::book::TopOfBook;
use aegis_shared::event::OrderIntent;
use aegis_shared::num::{Notional, Rate};
use aegis_shared::Side;

/// Swing settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SwingParams {
    /// USD notional per entry.
    pub notional: Notional,
    /// Bar length, ms (15 min … 4 h).
    pub bar_ms: u64,
    /// Trend EMA period.
    pub ema_period: u32,
    /// RSI period.
    pub rsi_period: u32,
    /// RSI band for longs (low, high).
    pub rsi_long: (f64, f64),
    /// RSI band for shorts (low, high).
    pub rsi_short: (f64, f64),
    /// Least ADX(14) to enter.
    pub adx_min: f64,
    /// Stop, target, max hold.
    pub exits: ExitRules,
    /// Leverage of this mode's positions.
    pub leverage: u32,
}

impl Default for SwingParams {
    fn default() -> Self {
        Self {
            notional: Notional::from_int(500),
            bar_ms: 3_600_000,
            ema_period: 50,
            rsi_period: 14,
            rsi_long: (45.0, 70.0),
            rsi_short: (30.0, 55.0),
            adx_min: 20.0,
            exits: ExitRules {
                stop_loss: Rate::from_units(2_000_000),
                take_profit: Rate::from_units(4_000_000),
                max_hold_ms: 3 * 86_400_000,
            },
            leverage: 2,
        }
    }
}

/// The indicator readings of a symbol's last finished bar.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SwingReadings {
    /// Close of the bar.
    pub close: f64,
    /// EMA(trend).
    pub ema: f64,
    /// RSI.
    pub rsi: f64,
    /// ADX.
    pub adx: f64,
    /// MACD histogram of this bar and of the previous one.
    pub hist: (f64, f64),
}

/// A symbol's indicator state.
#[derive(Debug, Clone)]
pub struct SymState {
    info: SymbolInfo,
    ema: Ema,
    rsi: Rsi,
    macd: Macd,
    adx: Adx,
    prev_hist: Option<f64>,
    readings: Option<SwingReadings>,
}

/// The swing strategy over all symbols. See the module docs.
pub type Swing = BarMode<SwingParams>;

impl Swing {
    /// A strategy for the engine's symbols (index order).
    pub fn new(p: SwingParams, symbols: &[SymbolInfo]) -> Self {
        Self::with_symbols(p, symbols)
    }

    /// Readings of a symbol's last finished bar, once every indicator is warm.
    pub fn readings(&self, sym: usize) -> Option<SwingReadings> {
        self.sym(sym)?.readings
    }
}

impl BarRules for SwingParams {
    bar_rules_fields!(SymState);

    fn new_sym(&self, info: SymbolInfo) -> SymState {
        SymState {
            info,
            ema: Ema::new(self.ema_period),
            rsi: Rsi::new(self.rsi_period),
            macd: Macd::standard(),
            adx: Adx::new(14),
            prev_hist: None,
            readings: None,
        }
    }

    #[inline]
    fn on_bar(&self, st: &mut SymState, b: &Bar, top: &TopOfBook, pos: &PosView) -> Option<Signal> {
        on_bar(self, st, b, top, pos)
    }
}

fn on_bar(
    p: &SwingParams,
    st: &mut SymState,
    b: &Bar,
    top: &TopOfBook,
    pos: &PosView,
) -> Option<Signal> {
    let (h, l, c) = (b.high_f64(), b.low_f64(), b.close_f64());
    let ema = st.ema.update(c);
    let rsi = st.rsi.update(c);
    let adx = st.adx.update(h, l, c);
    let m = st.macd.update(c);
    let prev = st.prev_hist;
    st.prev_hist = m.map(|m| m.hist);
    let (ema, rsi, adx, m, prev) = (ema?, rsi?, adx?, m?, prev?);
    st.readings = Some(SwingReadings {
        close: c,
        ema,
        rsi,
        adx,
        hist: (m.hist, prev),
    });
    let cross_up = prev <= 0.0 && m.hist > 0.0;
    let cross_down = prev >= 0.0 && m.hist < 0.0;
    if pos.pending {
        return None;
    }
    let q = pos.qty.units();
    if (q > 0 && cross_down) || (q < 0 && cross_up) {
        return Some(exit_order(pos, OrderIntent::SignalExit));
    }
    if q != 0 || adx < p.adx_min {
        return None;
    }
    let in_band = |(lo, hi): (f64, f64)| rsi >= lo && rsi <= hi;
    let side = if cross_up && c > ema && in_band(p.rsi_long) {
        Side::Buy
    } else if cross_down && c < ema && in_band(p.rsi_short) {
        Side::Sell
    } else {
        return None;
    };
    entry_order(side, p.notional, top, st.info.step)
}
