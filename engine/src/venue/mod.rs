//! Where orders go: the paper venue ([`paper::PaperVenue`]) or the live Binance venue
//! ([`binance::LiveVenue`]), both behind [`Venue`] and both taking the same [`OrderRequest`]s.

mod any;
pub mod binance;
pub mod paper;

pub use any::Venue;

use aegis_shared::event::{OrderIntent, OrderType, TimeInForce};
use aegis_shared::{Notional, Price, Qty, Side, StrategyMode, Symbol};

/// An order the engine wants to place (before it has a client id: ids are only spent on approved orders).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderRequest {
    /// Symbol.
    pub symbol: Symbol,
    /// Index of the symbol in the engine's symbol table.
    pub sym: usize,
    /// Mode that owns the order.
    pub mode: StrategyMode,
    /// Why.
    pub intent: OrderIntent,
    /// Side.
    pub side: Side,
    /// Market or limit.
    pub order_type: OrderType,
    /// Time in force (limit orders).
    pub tif: Option<TimeInForce>,
    /// Limit price (zero for market orders).
    pub price: Price,
    /// Price used for notional checks: the limit price, or for a market order the touch it would take.
    pub ref_price: Price,
    /// Quantity (positive, on the step grid).
    pub qty: Qty,
    /// Reduce-only.
    pub reduce_only: bool,
}

/// Fee rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeRates {
    /// Maker (resting order filled), default 0.02 %.
    pub maker: aegis_shared::num::Rate,
    /// Taker (order took liquidity), default 0.04 %.
    pub taker: aegis_shared::num::Rate,
}

impl Default for FeeRates {
    fn default() -> Self {
        Self {
            maker: aegis_shared::num::Rate::from_units(20_000),
            taker: aegis_shared::num::Rate::from_units(40_000),
        }
    }
}

/// What a venue did with an order, for the engine's bookkeeping (risk counters, breakers, strategy state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecReport {
    /// Symbol index.
    pub sym: usize,
    /// Mode.
    pub mode: StrategyMode,
    /// When.
    pub ts_ms: u64,
    /// Filled quantity in this report (zero for a report without a fill).
    pub qty: Qty,
    /// Realized PnL minus fee of this fill.
    pub net: Notional,
    /// Net result of a trade this fill closed.
    pub closed_trade: Option<Notional>,
    /// The order reached a final state (filled, cancelled, expired, rejected).
    pub order_final: bool,
}
