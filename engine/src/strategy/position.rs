//! `position` mode: 4-hour to daily bars (default 4 hours); slow trend following with wide stops and low
//! leverage.
//!
//! Rules (evaluated on each finished bar, per symbol):
//! - **Long entry** (when flat): EMA(20) above EMA(50) and the MACD(12, 26, 9) histogram positive, on the bar
//!   where either the EMAs cross upwards or the histogram turns positive (entries at the start of a move, not in
//!   its middle).
//! - **Short entry** (when flat): the mirror (EMA(20) below EMA(50), histogram negative, one of them just turned).
//! - **Signal exit**: EMA(20) crosses back over EMA(50) against the position.
//! - **Exits on every price**: stop-loss 6 %, take-profit 15 %, max holding time 30 days.
//! - Sizing: `notional` USD (default 750, the guide's per-position cap for this mode); leverage 1.
//!
//! Bars come from trades, from closed klines (aggregated), or ready-made, as in [`super::swing`].

use super::exits::{entry_order, exit_order, held_of, ExitRules};
use super::indicators::{Bar, BarBuilder, Ema, Macd};
use super::{PosView, Signal, SymbolInfo};
use crate::book::TopOfBook;
use crate::feed::parse::{AggTrade, Kline};
use aegis_shared::event::{OrderIntent, TimestampMs};
use aegis_shared::num::{Notional, Price, Rate};
use aegis_shared::Side;

/// Position-mode settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PositionParams {
    /// USD notional per entry.
    pub notional: Notional,
    /// Bar length, ms (4 h … 1 day).
    pub bar_ms: u64,
    /// Fast trend EMA period.
    pub ema_fast: u32,
    /// Slow trend EMA period.
    pub ema_slow: u32,
    /// Stop, target, max hold.
    pub exits: ExitRules,
    /// Leverage of this mode's positions.
    pub leverage: u32,
}

impl Default for PositionParams {
    fn default() -> Self {
        Self {
            notional: Notional::from_int(750),
            bar_ms: 4 * 3_600_000,
            ema_fast: 20,
            ema_slow: 50,
            exits: ExitRules {
                stop_loss: Rate::from_units(6_000_000),
                take_profit: Rate::from_units(15_000_000),
                max_hold_ms: 30 * 86_400_000,
            },
            leverage: 1,
        }
    }
}

#[derive(Debug, Clone)]
struct SymState {
    info: SymbolInfo,
    bars: BarBuilder,
    fast: Ema,
    slow: Ema,
    macd: Macd,
    prev: Option<(f64, f64)>,
}

/// The position-mode strategy over all symbols. See the module docs.
#[derive(Debug, Clone)]
pub struct PositionMode {
    p: PositionParams,
    syms: Vec<SymState>,
}

impl PositionMode {
    /// A strategy for the engine's symbols (index order).
    pub fn new(p: PositionParams, symbols: &[SymbolInfo]) -> Self {
        Self {
            p,
            syms: symbols
                .iter()
                .map(|&info| SymState {
                    info,
                    bars: BarBuilder::new(p.bar_ms),
                    fast: Ema::new(p.ema_fast),
                    slow: Ema::new(p.ema_slow),
                    macd: Macd::standard(),
                    prev: None,
                })
                .collect(),
        }
    }

    /// Parameters.
    pub fn params(&self) -> &PositionParams {
        &self.p
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
        on_bar(st, &self.p, &bar, top, pos)
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
        on_bar(st, &self.p, &bar, top, pos)
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
            out = on_bar(st, &self.p, &bar, top, pos).or(out);
        }
        out
    }

    /// A finished bar of this mode's interval for `sym`.
    #[inline]
    pub fn on_bar(
        &mut self,
        sym: usize,
        bar: &Bar,
        top: &TopOfBook,
        pos: &PosView,
    ) -> Option<Signal> {
        let st = self.syms.get_mut(sym)?;
        on_bar(st, &self.p, bar, top, pos)
    }
}

#[inline]
fn price_exit(
    p: &PositionParams,
    px: Option<Price>,
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
    st: &mut SymState,
    p: &PositionParams,
    b: &Bar,
    top: &TopOfBook,
    pos: &PosView,
) -> Option<Signal> {
    let c = b.close_f64();
    let (f, s, m) = (st.fast.update(c), st.slow.update(c), st.macd.update(c));
    let (f, s, m) = (f?, s?, m?);
    let spread = f - s;
    let (prev_spread, prev_hist) = st.prev.replace((spread, m.hist))?;
    if pos.pending {
        return None;
    }
    let q = pos.qty.units();
    let ema_up = prev_spread <= 0.0 && spread > 0.0;
    let ema_down = prev_spread >= 0.0 && spread < 0.0;
    if (q > 0 && ema_down) || (q < 0 && ema_up) {
        return Some(exit_order(pos, OrderIntent::SignalExit));
    }
    if q != 0 {
        return None;
    }
    let up_turn = ema_up || (prev_hist <= 0.0 && m.hist > 0.0);
    let down_turn = ema_down || (prev_hist >= 0.0 && m.hist < 0.0);
    let side = if spread > 0.0 && m.hist > 0.0 && up_turn {
        Side::Buy
    } else if spread < 0.0 && m.hist < 0.0 && down_turn {
        Side::Sell
    } else {
        return None;
    };
    entry_order(side, p.notional, top, st.info.step)
}
