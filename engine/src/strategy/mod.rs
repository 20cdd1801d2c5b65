//! Strategy modes. Each mode turns market events into [`Signal`]s; the engine sizes nothing itself — a signal
//! carries its exact quantity — and sends every signal through the risk gate.
//!
//! Dispatch is static: [`ModeStrategy`] is an enum with one variant per implemented mode, and the engine calls
//! its methods in a plain `match` (no trait objects on the hot path). Adding a mode = adding a variant and one arm
//! in each method below.

pub mod bar_mode;
pub mod exits;
pub mod indicators;
pub mod position;
pub mod scalp;
pub mod swing;
pub mod ultra_fast;

use crate::book::TopOfBook;
use crate::feed::parse::{AggTrade, Kline};
use aegis_shared::event::{OrderIntent, TimestampMs};
use aegis_shared::{Price, Qty, Side, StrategyMode};

/// An order a strategy wants (always a market order for now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    /// Side.
    pub side: Side,
    /// Why.
    pub intent: OrderIntent,
    /// Exact quantity on the step grid.
    pub qty: Qty,
    /// Exits are reduce-only.
    pub reduce_only: bool,
}

/// What a strategy sees of its own position in a symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PosView {
    /// Signed size.
    pub qty: Qty,
    /// Average entry.
    pub entry: Price,
    /// When it was opened (ms).
    pub opened_ms: TimestampMs,
    /// An order for this (symbol, mode) is in flight: do not send another.
    pub pending: bool,
}

/// Per-symbol facts a strategy needs for sizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolInfo {
    /// Step size.
    pub step: Qty,
    /// Tick size.
    pub tick: Price,
}

/// One implemented mode (static dispatch).
#[derive(Debug, Clone)]
pub enum ModeStrategy {
    /// 1-minute-bar scalping ([`scalp::Scalp`]).
    Scalp(scalp::Scalp),
    /// Book-level scalping ([`ultra_fast::UltraFast`]).
    UltraFastScalp(ultra_fast::UltraFast),
    /// 15-minute to 4-hour bars ([`swing::Swing`]).
    Swing(swing::Swing),
    /// 4-hour to daily bars ([`position::PositionMode`]).
    Position(position::PositionMode),
}

impl ModeStrategy {
    /// Which mode.
    #[inline]
    pub fn mode(&self) -> StrategyMode {
        match self {
            Self::Scalp(_) => StrategyMode::Scalp,
            Self::UltraFastScalp(_) => StrategyMode::UltraFastScalp,
            Self::Swing(_) => StrategyMode::Swing,
            Self::Position(_) => StrategyMode::Position,
        }
    }

    /// The scalp strategy, if this is it (tests, stats).
    pub fn as_scalp(&self) -> Option<&scalp::Scalp> {
        match self {
            Self::Scalp(s) => Some(s),
            _ => None,
        }
    }

    /// A trade in symbol `sym` (bars, indicators, entry signals).
    #[inline]
    pub fn on_trade(
        &mut self,
        sym: usize,
        t: &AggTrade,
        top: &TopOfBook,
        pos: &PosView,
    ) -> Option<Signal> {
        match self {
            Self::Scalp(s) => s.on_trade(sym, t, top, pos),
            Self::UltraFastScalp(_) => None,
            Self::Swing(s) => s.on_trade(sym, t, top, pos),
            Self::Position(s) => s.on_trade(sym, t, top, pos),
        }
    }

    /// A top-of-book change in symbol `sym` at engine time `now_ms` (exits: stop-loss, take-profit, max hold).
    #[inline]
    pub fn on_book(
        &mut self,
        sym: usize,
        top: &TopOfBook,
        now_ms: TimestampMs,
        pos: &PosView,
    ) -> Option<Signal> {
        match self {
            Self::Scalp(s) => s.on_book(sym, top, now_ms, pos),
            Self::UltraFastScalp(s) => s.on_book(sym, top, now_ms, pos),
            Self::Swing(s) => s.on_book(sym, top, now_ms, pos),
            Self::Position(s) => s.on_book(sym, top, now_ms, pos),
        }
    }

    /// A kline in symbol `sym` (bar modes take their bars from klines when a kline stream is given; its close is
    /// also checked for exits).
    #[inline]
    pub fn on_kline(
        &mut self,
        sym: usize,
        k: &Kline,
        top: &TopOfBook,
        pos: &PosView,
    ) -> Option<Signal> {
        match self {
            Self::Scalp(_) | Self::UltraFastScalp(_) => None,
            Self::Swing(s) => s.on_kline(sym, k, top, pos),
            Self::Position(s) => s.on_kline(sym, k, top, pos),
        }
    }
}
