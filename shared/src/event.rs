//! Events the engine hands to the control plane over bounded lock-free queues.
//!
//! Every event is a fixed-size `Copy` value, so sending one never allocates. Two classes exist, and the queue
//! policy differs (see `engine::queues`):
//! - **critical** ([`EngineEvent::is_critical`]): orders, fills, position changes, breaker and kill-switch events,
//!   alerts. Never dropped. If their queue is ever full, the engine stops opening positions until it drains.
//! - **statistics**: heartbeats, counters, latency snapshots. Dropped (and counted) when their queue is full.
//!
//! These types are also the journal's record payloads, so they derive serde.

use crate::ids::ClientOrderId;
use crate::mode::{Side, StrategyMode};
use crate::num::{Notional, Price, Qty};
use crate::symbol::Symbol;
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (exchange and journal time).
pub type TimestampMs = u64;

/// Order type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OrderType {
    /// Limit order.
    Limit,
    /// Market order.
    Market,
}

/// Time in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TimeInForce {
    /// Good till cancelled.
    Gtc,
    /// Immediate or cancel.
    Ioc,
    /// Fill or kill.
    Fok,
    /// Post only (Good Till Crossing).
    Gtx,
}

/// Order status, with Binance's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Sent, no answer yet.
    PendingNew,
    /// Accepted and resting (or about to fill).
    New,
    /// Partly filled, still working.
    PartiallyFilled,
    /// Completely filled.
    Filled,
    /// Cancelled.
    Canceled,
    /// Expired (IOC/FOK remainder, GTX that would take).
    Expired,
    /// Refused by the exchange or by the venue.
    Rejected,
    /// The exchange's answer was lost (HTTP 503, timeout): must be queried by client id before anything else.
    Unknown,
}

impl OrderStatus {
    /// True when the order can no longer fill.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            Self::Filled | Self::Canceled | Self::Expired | Self::Rejected
        )
    }
}

/// Why an order was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderIntent {
    /// Opens or adds to a position.
    Entry,
    /// Stop-loss exit.
    StopLoss,
    /// Take-profit exit.
    TakeProfit,
    /// Exit after the mode's maximum holding time.
    MaxHold,
    /// Strategy's own exit signal.
    SignalExit,
    /// Kill-switch flatten.
    Flatten,
    /// An operator's manual order.
    Manual,
}

impl OrderIntent {
    /// True for orders that can only reduce a position (they pass a tripped breaker).
    pub const fn is_exit(self) -> bool {
        !matches!(self, Self::Entry | Self::Manual)
    }
}

/// An order's state changed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OrderEvent {
    /// When (ms since epoch).
    pub ts_ms: TimestampMs,
    /// Symbol.
    pub symbol: Symbol,
    /// Our id.
    pub client_id: ClientOrderId,
    /// The exchange's id, once known.
    pub exchange_id: Option<u64>,
    /// Which mode placed it.
    pub mode: StrategyMode,
    /// Why it was placed.
    pub intent: OrderIntent,
    /// Side.
    pub side: Side,
    /// Type.
    pub order_type: OrderType,
    /// Time in force (limit orders).
    pub tif: Option<TimeInForce>,
    /// Limit price (zero for market orders).
    pub price: Price,
    /// Original quantity.
    pub qty: Qty,
    /// Cumulative filled quantity.
    pub filled: Qty,
    /// Reduce-only flag.
    pub reduce_only: bool,
    /// New status.
    pub status: OrderStatus,
    /// Exchange error code for a rejection (e.g. -2019), 0 otherwise.
    pub reject_code: i32,
}

/// Maker or taker side of a fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Liquidity {
    /// Our order was resting.
    Maker,
    /// Our order took liquidity.
    Taker,
}

/// A fill (execution). Journaled before anything else happens to it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fill {
    /// When (ms since epoch).
    pub ts_ms: TimestampMs,
    /// Symbol.
    pub symbol: Symbol,
    /// Our order id.
    pub client_id: ClientOrderId,
    /// The exchange's order id (0 on the paper venue before one exists).
    pub exchange_order_id: u64,
    /// The exchange's trade id (Binance: unique per symbol; paper: unique across sessions, seeded above every
    /// journaled id). Kept as the exchange sent it, for reconciliation against `GET /fapi/v1/userTrades`.
    pub trade_id: u64,
    /// Index of this part when one exchange trade is booked to several modes (a liquidation or manual fill split
    /// across modes' positions); 0 for an unsplit fill. `(symbol, trade_id, split_part)` is the fill's unique key.
    /// Absent in journals written before it existed (= 0).
    #[serde(default)]
    pub split_part: u16,
    /// Mode that owns the order.
    pub mode: StrategyMode,
    /// Why the order was placed.
    pub intent: OrderIntent,
    /// Side.
    pub side: Side,
    /// Execution price.
    pub price: Price,
    /// Executed quantity (positive).
    pub qty: Qty,
    /// Commission charged (positive = paid).
    pub fee: Notional,
    /// Commission asset (e.g. `USDT`).
    pub fee_asset: Symbol,
    /// Maker or taker.
    pub liquidity: Liquidity,
    /// PnL realized by this fill, before fees.
    pub realized_pnl: Notional,
}

/// A position after a change.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PositionUpdate {
    /// When (ms since epoch).
    pub ts_ms: TimestampMs,
    /// Symbol.
    pub symbol: Symbol,
    /// Mode that owns the position.
    pub mode: StrategyMode,
    /// Signed size: long > 0, short < 0, flat = 0.
    pub qty: Qty,
    /// Average entry price (zero when flat).
    pub entry_price: Price,
    /// Realized PnL of this (symbol, mode) since the start of records, before fees.
    pub realized_pnl: Notional,
    /// Fees paid by this (symbol, mode) since the start of records.
    pub fees: Notional,
}

/// Which breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "scope", content = "mode")]
pub enum BreakerScope {
    /// The account-wide breaker.
    Global,
    /// One mode's own breaker.
    Mode(StrategyMode),
}

/// Why a breaker tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripReason {
    /// Realized loss over the rolling last 60 minutes reached `CIRCUIT_MAX_LOSS_PER_HOUR`.
    HourlyLoss,
    /// Consecutive losing trades reached `CIRCUIT_MAX_CONSECUTIVE_LOSSES`.
    ConsecutiveLosses,
    /// The UTC day's loss reached `FUTURES_AUTOPILOT_MAX_DAILY_LOSS`.
    DailyLoss,
}

/// A breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BreakerChange {
    /// Tripped; new entries stop until `until_ms`.
    Tripped {
        /// Why.
        reason: TripReason,
        /// When trading resumes by itself.
        until_ms: TimestampMs,
    },
    /// The cooldown ended and trading resumed by itself.
    Resumed,
    /// An operator reset it (audited by the control plane).
    Reset,
}

/// Breaker event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerEvent {
    /// When.
    pub ts_ms: TimestampMs,
    /// Which breaker.
    pub scope: BreakerScope,
    /// What happened.
    pub change: BreakerChange,
}

/// Why the engine halted new entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HaltReason {
    /// An operator command.
    Operator,
    /// The kill switch (command or `DATA_DIR/KILL` file).
    KillSwitch,
    /// The critical event queue was full: nothing new opens until it drains.
    Backpressure,
    /// The exchange refused the key (-2014/-2015).
    KeyRejected,
    /// Local and exchange state disagree.
    ReconcileMismatch,
    /// The market data feed is stale beyond the hard limit.
    FeedStale,
    /// Rate limited (429/418) until the exchange's `Retry-After`.
    RateLimited,
    /// Shutting down.
    Shutdown,
}

/// Engine-wide state changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum EngineState {
    /// Trading normally.
    Running,
    /// New entries halted; exits still work.
    Halted {
        /// Why.
        reason: HaltReason,
    },
    /// The engine thread has finished; no more events follow.
    Stopped,
}

/// The state of the market data feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedState {
    /// Not started yet.
    Connecting,
    /// Messages flowing.
    Live,
    /// No message for longer than the stale threshold.
    Stale,
    /// A finite source (replay) reached its end.
    Ended,
}

/// Number of distinct denial reasons counted in [`EngineStats::denials`].
pub const DENIAL_REASONS: usize = 16;

/// Periodic engine counters (droppable).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EngineStats {
    /// When.
    pub ts_ms: TimestampMs,
    /// Market messages processed since start.
    pub messages: u64,
    /// Messages that failed to parse since start.
    pub parse_errors: u64,
    /// Orders sent since start.
    pub orders: u64,
    /// Fills since start.
    pub fills: u64,
    /// Risk-gate denials since start, indexed by the engine's denial reason code.
    pub denials: [u64; DENIAL_REASONS],
    /// Statistics events dropped because their queue was full.
    pub dropped_stats: u64,
    /// Age of the newest market message in ms.
    pub feed_age_ms: u64,
    /// Feed state.
    pub feed: FeedState,
    /// Tick-to-decision latency quantiles over the last interval, nanoseconds: p50, p99, p99.9, max.
    pub latency_ns: [u64; 4],
}

/// An alert the control plane must deliver (webhooks etc.).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The exchange refused the API key.
    KeyInvalid,
    /// The key's restrictions changed (withdrawals enabled, IP restriction removed).
    KeyRestrictionsChanged,
    /// The daily loss limit was reached.
    DailyLossLimit,
    /// Local and exchange state disagree.
    ReconcileMismatch,
    /// The feed is stale.
    FeedStale,
    /// Exchange errors above normal.
    ExchangeErrors,
    /// The kill switch fired.
    KillSwitch,
}

/// Everything the engine tells the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum EngineEvent {
    /// An order changed state. Critical.
    Order(OrderEvent),
    /// A fill. Critical.
    Fill(Fill),
    /// A position changed. Critical.
    Position(PositionUpdate),
    /// A breaker changed state. Critical.
    Breaker(BreakerEvent),
    /// The engine's overall state changed. Critical.
    State {
        /// When.
        ts_ms: TimestampMs,
        /// New state.
        state: EngineState,
    },
    /// An alert. Critical.
    Alert {
        /// When.
        ts_ms: TimestampMs,
        /// What.
        kind: AlertKind,
    },
    /// Liveness signal. Droppable.
    Heartbeat {
        /// When.
        ts_ms: TimestampMs,
        /// Increments every beat.
        seq: u64,
    },
    /// Counters. Droppable.
    Stats(EngineStats),
}

impl EngineEvent {
    /// True for events that must never be dropped (see module docs).
    #[inline]
    pub const fn is_critical(&self) -> bool {
        !matches!(self, Self::Heartbeat { .. } | Self::Stats(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_small_and_copy() {
        // They cross a lock-free queue by value: keep them modest.
        assert!(std::mem::size_of::<EngineEvent>() <= 256);
        fn is_copy<T: Copy>() {}
        is_copy::<EngineEvent>();
    }

    #[test]
    fn journal_round_trip() {
        let f = Fill {
            ts_ms: 1,
            symbol: Symbol::new("BTCUSDT").unwrap(),
            client_id: ClientOrderId::new("ag1-1").unwrap(),
            exchange_order_id: 7,
            trade_id: 9,
            split_part: 0,
            mode: StrategyMode::Scalp,
            intent: OrderIntent::Entry,
            side: Side::Buy,
            price: Price::parse("100.5").unwrap(),
            qty: Qty::parse("0.01").unwrap(),
            fee: Notional::parse("0.000402").unwrap(),
            fee_asset: Symbol::new("USDT").unwrap(),
            liquidity: Liquidity::Taker,
            realized_pnl: Notional::ZERO,
        };
        let e = EngineEvent::Fill(f);
        let j = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<EngineEvent>(&j).unwrap(), e);
        assert!(e.is_critical());
        assert!(!EngineEvent::Heartbeat { ts_ms: 0, seq: 0 }.is_critical());
    }
}
