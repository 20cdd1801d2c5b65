//! The plumbing shared by the bar-driven modes (swing, position): bars built from trades, closed klines or
//! ready-made bars, price exits checked on every price, and one call per finished bar into the mode's own rules.
//!
//! A mode supplies [`BarRules`] (its parameters, per-symbol indicator state and the decision on a finished bar);
//! [`BarMode`] does the rest. Per-symbol state is allocated in [`BarMode::with_symbols`]; every update is O(1) and
//! allocation-free.

use super::exits::{exit_order, held_of, ExitRules};
use super::indicators::{Bar, BarBuilder};
use super::{PosView, Signal, SymbolInfo};
use crate::book::TopOfBook;
use crate::feed::parse::{AggTrade, Kline};
use aegis_shared::event::TimestampMs;
use aegis_shared::num::Price;

/// A bar-driven mode's own part: parameters, indicator state per symbol, and the decision on each finished bar.
pub trait BarRules {
    /// Indicator state of one symbol.
    type Sym;
    /// Bar length, ms.
    fn bar_ms(&self) -> u64;
    /// Stop, target and max hold, checked on every price.
    fn exits(&self) -> &ExitRules;
    /// Fresh state for a symbol.
    fn new_sym(&self, info: SymbolInfo) -> Self::Sym;
    /// A finished bar: updates the indicators and may enter or exit on a signal.
    fn on_bar(&self, st: &mut Self::Sym, b: &Bar, top: &TopOfBook, pos: &PosView)
        -> Option<Signal>;
}

/// The [`BarRules`] items every mode's parameters answer alike: the symbol state type, and the bar length and
/// exits read straight from their `bar_ms` and `exits` fields.
macro_rules! bar_rules_fields {
    ($sym:ty) => {
        type Sym = $sym;

        fn bar_ms(&self) -> u64 {
            self.bar_ms
        }

        fn exits(&self) -> &$crate::strategy::exits::ExitRules {
            &self.exits
        }
    };
}
pub(crate) use bar_rules_fields;

/// A bar-driven strategy over all symbols, with rules `R`.
#[derive(Debug, Clone)]
pub struct BarMode<R: BarRules> {
    p: R,
    syms: Vec<(BarBuilder, R::Sym)>,
}

impl<R: BarRules> BarMode<R> {
    /// A strategy for the engine's symbols (index order).
    pub fn with_symbols(p: R, symbols: &[SymbolInfo]) -> Self {
        let syms = symbols
            .iter()
            .map(|&info| (BarBuilder::new(p.bar_ms()), p.new_sym(info)))
            .collect();
        Self { p, syms }
    }

    /// Parameters.
    pub fn params(&self) -> &R {
        &self.p
    }

    /// A symbol's indicator state.
    pub(crate) fn sym(&self, sym: usize) -> Option<&R::Sym> {
        self.syms.get(sym).map(|(_, s)| s)
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
        let (bars, st) = self.syms.get_mut(sym)?;
        let bar = bars.on_trade(t.event_time, t.price, t.qty)?;
        self.p.on_bar(st, &bar, top, pos)
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
        let (bars, st) = self.syms.get_mut(sym)?;
        if let Some(s) = price_exit(
            self.p.exits(),
            top.is_valid().then(|| top.mid()),
            now_ms,
            pos,
        ) {
            return Some(s);
        }
        let bar = bars.on_time(now_ms)?;
        self.p.on_bar(st, &bar, top, pos)
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
        let (bars, st) = self.syms.get_mut(sym)?;
        let now = if k.event_time > 0 {
            k.event_time
        } else {
            k.close_time
        };
        if let Some(s) = price_exit(self.p.exits(), Some(k.close), now, pos) {
            return Some(s);
        }
        if !k.closed {
            return None;
        }
        let mut out = None;
        for bar in bars.on_bar(&Bar::from_kline(k)).into_iter().flatten() {
            out = self.p.on_bar(st, &bar, top, pos).or(out);
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
        let (_, st) = self.syms.get_mut(sym)?;
        self.p.on_bar(st, bar, top, pos)
    }
}

/// Stop, target or max hold hit at `px` (none while an order is pending or without a position).
#[inline]
fn price_exit(
    exits: &ExitRules,
    px: Option<Price>,
    now: TimestampMs,
    pos: &PosView,
) -> Option<Signal> {
    if pos.pending {
        return None;
    }
    let h = held_of(pos)?;
    let intent = exits.check(&h, px?, now)?;
    Some(exit_order(pos, intent))
}
