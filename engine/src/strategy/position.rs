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
//! Bars come from trades, from closed klines (aggregated), or ready-made, as in [`super::swing`] (the shared
//! plumbing is [`super::bar_mode`]).

use super::bar_mode::{bar_rules_fields, BarMode, BarRules};
use super::exits::{entry_order, exit_order, ExitRules};
use super::indicators::{Bar, Ema, Macd};
use super::{PosView, Signal, SymbolInfo};
use crate::book::TopOfBook;
use aegis_shared::event::OrderIntent;
use aegis_shared::num::{Notional, Rate};
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

/// A symbol's indicator state.
#[derive(Debug, Clone)]
pub struct SymState {
    info: SymbolInfo,
    fast: Ema,
    slow: Ema,
    macd: Macd,
    prev: Option<(f64, f64)>,
}

/// The position-mode strategy over all symbols. See the module docs.
pub type PositionMode = BarMode<PositionParams>;

impl PositionMode {
    /// A strategy for the engine's symbols (index order).
    pub fn new(p: PositionParams, symbols: &[SymbolInfo]) -> Self {
        Self::with_symbols(p, symbols)
    }
}

impl BarRules for PositionParams {
    bar_rules_fields!(SymState);

    fn new_sym(&self, info: SymbolInfo) -> SymState {
        SymState {
            info,
            fast: Ema::new(self.ema_fast),
            slow: Ema::new(self.ema_slow),
            macd: Macd::standard(),
            prev: None,
        }
    }

    #[inline]
    fn on_bar(&self, st: &mut SymState, b: &Bar, top: &TopOfBook, pos: &PosView) -> Option<Signal> {
        on_bar(st, self, b, top, pos)
    }
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
