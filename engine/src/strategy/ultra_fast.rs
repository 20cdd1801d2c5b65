//! `ultra_fast_scalp` mode: book level; holds seconds to minutes.
//!
//! Inputs are top-of-book changes. Per change, in O(1) and without allocating:
//! - **imbalance** `(bidQty − askQty) / (bidQty + askQty)` in [−1, 1], smoothed by an EMA over 10 updates;
//! - **microprice** `(bid·askQty + ask·bidQty) / (bidQty + askQty)`, the size-weighted fair price; its
//!   **momentum** is EMA(20 updates) − EMA(100 updates) of the microprice, in basis points of the mid.
//!
//! Rules (per symbol):
//! - **Long entry** (when flat): smoothed imbalance ≥ 0.35 and momentum ≥ +0.5 bp, spread ≤ 5 bp, warm (100
//!   updates seen), and 5 s since this mode's last position in the symbol closed. **Short entry**: the mirror.
//! - **Exits** against the mid on every change: stop-loss 0.15 %, take-profit 0.25 %, max holding time 2 minutes,
//!   and a signal exit when the smoothed imbalance flips to ≤ −0.35 against a long (≥ 0.35 against a short).
//! - Sizing: `notional` USD (default 200, the guide's per-position cap for this mode); leverage 3.

use super::exits::{entry_order, exit_order, held_of, ExitRules};
use super::indicators::Ema;
use super::{PosView, Signal, SymbolInfo};
use crate::book::TopOfBook;
use aegis_shared::event::{OrderIntent, TimestampMs};
use aegis_shared::num::{Notional, Rate};
use aegis_shared::Side;

/// Ultra-fast scalp settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UltraFastParams {
    /// USD notional per entry.
    pub notional: Notional,
    /// Smoothed imbalance needed to enter (and, reversed, to exit).
    pub imbalance: f64,
    /// Microprice momentum needed to enter, basis points.
    pub momentum_bps: f64,
    /// Widest spread to enter at, basis points.
    pub max_spread_bps: f64,
    /// Imbalance EMA period (updates).
    pub imbalance_period: u32,
    /// Fast microprice EMA period (updates).
    pub fast_period: u32,
    /// Slow microprice EMA period (updates); also the warm-up.
    pub slow_period: u32,
    /// Pause after a position closes before the next entry, ms.
    pub reentry_ms: u64,
    /// Stop, target, max hold.
    pub exits: ExitRules,
    /// Leverage of this mode's positions.
    pub leverage: u32,
}

impl Default for UltraFastParams {
    fn default() -> Self {
        Self {
            notional: Notional::from_int(200),
            imbalance: 0.35,
            momentum_bps: 0.5,
            max_spread_bps: 5.0,
            imbalance_period: 10,
            fast_period: 20,
            slow_period: 100,
            reentry_ms: 5_000,
            exits: ExitRules {
                stop_loss: Rate::from_units(150_000),
                take_profit: Rate::from_units(250_000),
                max_hold_ms: 120_000,
            },
            leverage: 3,
        }
    }
}

/// A symbol's readings after its last book change.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UltraFastReadings {
    /// Smoothed imbalance.
    pub imbalance: f64,
    /// Microprice momentum, bp.
    pub momentum_bps: f64,
    /// Spread, bp.
    pub spread_bps: f64,
}

#[derive(Debug, Clone)]
struct SymState {
    info: SymbolInfo,
    imb: Ema,
    fast: Ema,
    slow: Ema,
    readings: Option<UltraFastReadings>,
    was_holding: bool,
    last_close_ms: Option<TimestampMs>,
}

/// The ultra-fast scalp strategy over all symbols. See the module docs.
#[derive(Debug, Clone)]
pub struct UltraFast {
    p: UltraFastParams,
    syms: Vec<SymState>,
}

impl UltraFast {
    /// A strategy for the engine's symbols (index order).
    pub fn new(p: UltraFastParams, symbols: &[SymbolInfo]) -> Self {
        Self {
            p,
            syms: symbols
                .iter()
                .map(|&info| SymState {
                    info,
                    imb: Ema::new(p.imbalance_period),
                    fast: Ema::new(p.fast_period),
                    slow: Ema::new(p.slow_period),
                    readings: None,
                    was_holding: false,
                    last_close_ms: None,
                })
                .collect(),
        }
    }

    /// Parameters.
    pub fn params(&self) -> &UltraFastParams {
        &self.p
    }

    /// A symbol's readings after its last book change, once warm.
    pub fn readings(&self, sym: usize) -> Option<UltraFastReadings> {
        self.syms.get(sym)?.readings
    }

    /// A top-of-book change at engine time `now_ms`: exits, then entries.
    #[inline]
    pub fn on_book(
        &mut self,
        sym: usize,
        top: &TopOfBook,
        now_ms: TimestampMs,
        pos: &PosView,
    ) -> Option<Signal> {
        let p = &self.p;
        let st = self.syms.get_mut(sym)?;
        let holding = pos.qty.units() != 0;
        if st.was_holding && !holding {
            st.last_close_ms = Some(now_ms);
        }
        st.was_holding = holding;
        if !top.is_valid() {
            return None;
        }
        let (b, a) = (top.bid.to_f64_lossy(), top.ask.to_f64_lossy());
        let (bq, aq) = (top.bid_qty.to_f64_lossy(), top.ask_qty.to_f64_lossy());
        let depth = bq + aq;
        if depth <= 0.0 {
            return None;
        }
        let mid = 0.5 * (a + b);
        let micro = (b * aq + a * bq) / depth;
        let imb = st.imb.update((bq - aq) / depth);
        let fast = st.fast.update(micro);
        let slow = st.slow.update(micro);
        let (imb, fast, slow) = (imb?, fast?, slow?);
        let r = UltraFastReadings {
            imbalance: imb,
            momentum_bps: (fast - slow) / mid * 1e4,
            spread_bps: (a - b) / mid * 1e4,
        };
        st.readings = Some(r);
        if pos.pending {
            return None;
        }
        if let Some(h) = held_of(pos) {
            let against = match h.side {
                Side::Buy => r.imbalance <= -p.imbalance,
                Side::Sell => r.imbalance >= p.imbalance,
            };
            let intent = p
                .exits
                .check(&h, top.mid(), now_ms)
                .or(against.then_some(OrderIntent::SignalExit))?;
            return Some(exit_order(pos, intent));
        }
        let pausing = st
            .last_close_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < p.reentry_ms);
        if pausing || r.spread_bps > p.max_spread_bps {
            return None;
        }
        let side = if r.imbalance >= p.imbalance && r.momentum_bps >= p.momentum_bps {
            Side::Buy
        } else if r.imbalance <= -p.imbalance && r.momentum_bps <= -p.momentum_bps {
            Side::Sell
        } else {
            return None;
        };
        entry_order(side, p.notional, top, st.info.step)
    }
}
