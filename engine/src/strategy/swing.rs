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
//! aggregated into this mode's bars ([`Swing::on_kline`]), or ready-made ([`Swing::on_bar`]). Per-symbol state is
//! allocated in [`Swing::new`]; updates are O(1) and allocation-free.

use super::exits::{entry_order, exit_order, held_of, ExitRules};
use super::indicators::{Adx, Bar, BarBuilder, Ema, Macd, Rsi};
use super::{PosView, Signal, SymbolInfo};
use crate::book::TopOfBook;
use crate::feed::parse::{AggTrade, Kline};
use aegis_shared::event::{OrderIntent, TimestampMs};
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

#[derive(Debug, Clone)]
struct SymState {
    info: SymbolInfo,
    bars: BarBuilder,
    ema: Ema,
    rsi: Rsi,
    macd: Macd,
    adx: Adx,
    prev_hist: Option<f64>,
    readings: Option<SwingReadings>,
}

/// The swing strategy over all symbols. See the module docs.
#[derive(Debug, Clone)]
pub struct Swing {
    p: SwingParams,
    syms: Vec<SymState>,
}

impl Swing {
    /// A strategy for the engine's symbols (index order).
    pub fn new(p: SwingParams, symbols: &[SymbolInfo]) -> Self {
        Self {
            p,
            syms: symbols
                .iter()
                .map(|&info| SymState {
                    info,
                    bars: BarBuilder::new(p.bar_ms),
                    ema: Ema::new(p.ema_period),
                    rsi: Rsi::new(p.rsi_period),
                    macd: Macd::standard(),
                    adx: Adx::new(14),
                    prev_hist: None,
                    readings: None,
                })
                .collect(),
        }
    }

    /// Parameters.
    pub fn params(&self) -> &SwingParams {
        &self.p
    }

    /// Readings of a symbol's last finished bar, once every indicator is warm.
    pub fn readings(&self, sym: usize) -> Option<SwingReadings> {
        self.syms.get(sym)?.readings
    }

    /// A trade: feeds the bar builder by event time; a finished bar may produce an entry or a signal exit.
    #[inline]
    pub fn on_trade(
        &mut self,
        sym: usize,
        t: &AggTrade,
        top: &TopOfBook,
        pos: &PosView,
    ) -> Option<Signal> {
        let st = self.syms.get_mut(sym)?;
        let bar = st.bars.on_trade(t.event_time, t.price, t.qty)?;
        on_bar(&self.p, st, &bar, top, pos)
    }

    /// A book change: exits first, then a bar that finished by time alone.
    #[inline]
    pub fn on_book(
        &mut self,
        sym: usize,
        top: &TopOfBook,
        now_ms: TimestampMs,
        pos: &PosView,
    ) -> Option<Signal> {
        let st = self.syms.get_mut(sym)?;
        if let Some(s) = price_exit(&self.p, top.is_valid().then(|| top.mid()), now_ms, pos) {
            return Some(s);
        }
        let bar = st.bars.on_time(now_ms)?;
        on_bar(&self.p, st, &bar, top, pos)
    }

    /// A kline: its close is checked for exits; a closed kline is folded into this mode's bars.
    #[inline]
    pub fn on_kline(
        &mut self,
        sym: usize,
        k: &Kline,
        top: &TopOfBook,
        pos: &PosView,
    ) -> Option<Signal> {
        let st = self.syms.get_mut(sym)?;
        let now = if k.event_time > 0 {
            k.event_time
        } else {
            k.close_time
        };
        if let Some(s) = price_exit(&self.p, Some(k.close), now, pos) {
            return Some(s);
        }
        if !k.closed {
            return None;
        }
        let mut out = None;
        for bar in st.bars.on_bar(&Bar::from_kline(k)).into_iter().flatten() {
            out = on_bar(&self.p, st, &bar, top, pos).or(out);
        }
        out
    }

    /// A finished bar of this mode's interval for `sym` (e.g. from an external bar source).
    #[inline]
    pub fn on_bar(
        &mut self,
        sym: usize,
        bar: &Bar,
        top: &TopOfBook,
        pos: &PosView,
    ) -> Option<Signal> {
        let st = self.syms.get_mut(sym)?;
        on_bar(&self.p, st, bar, top, pos)
    }
}

#[inline]
fn price_exit(
    p: &SwingParams,
    px: Option<aegis_shared::Price>,
    now: TimestampMs,
    pos: &PosView,
) -> Option<Signal> {
    if pos.pending {
        return None;
    }
    let h = held_of(pos)?;
    let intent = p.exits.check(&h, px?, now)?;
    Some(exit_order(pos, intent))
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
