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
use crate::mode::{Market, Side, StrategyMode};
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
    /// Market the symbol trades on. Absent in journals written before markets existed (= futures).
    #[serde(default)]
    pub market: Market,
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
    /// Market the symbol trades on. Absent in journals written before markets existed (= futures).
    #[serde(default)]
    pub market: Market,
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
    /// How `fee` was turned into the quote asset for PnL, the daily loss and the breakers. Absent in journals
    /// written before fee conversion existed: those fees were all in the quote asset.
    #[serde(default)]
    pub fee_conv: FeeConversion,
}

impl Fill {
    /// The fee in the symbol's quote asset, as PnL counts it (zero for an unconvertible fee, which is flagged).
    #[inline]
    pub fn quote_fee(&self) -> Notional {
        self.fee_conv.quote_fee(self.fee)
    }
}

/// How a commission paid in some asset was valued in the symbol's quote asset (USDT for `BTCUSDT`).
///
/// A fee in a non-quote asset (BNB with "pay fees with BNB") is converted at the asset's price at fill time.
/// When no price could be had, the fee is *not* guessed: it is `Unconvertible`, counts zero in PnL, is kept per
/// asset, and raises [`AlertKind::FeeUnconverted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FeeConversion {
    /// The fee asset is the quote asset: `fee` is already in it.
    #[default]
    Quote,
    /// Converted: `quote` = `fee` × `price`, rounded half away from zero to 10⁻⁸.
    Converted {
        /// Price of one unit of the fee asset in the quote asset (e.g. BNBUSDT's mark price).
        price: Price,
        /// The fee in the quote asset.
        quote: Notional,
    },
    /// No price for the fee asset was available: left out of PnL and flagged.
    Unconvertible,
}

impl FeeConversion {
    /// Converts `fee` (in the fee asset) at `price` (quote per unit of the fee asset), exactly rounded.
    pub fn convert(fee: Notional, price: Price) -> Self {
        let v = fee.units() as i128 * price.units() as i128;
        let s = crate::num::SCALE as i128;
        // Half away from zero, like every other rounding of money here.
        let q = (v.abs() + s / 2) / s * v.signum();
        Self::Converted {
            price,
            quote: Notional::from_units(q.clamp(i64::MIN as i128, i64::MAX as i128) as i64),
        }
    }

    /// The quote-asset value of `fee` under this conversion (zero when unconvertible).
    #[inline]
    pub fn quote_fee(self, fee: Notional) -> Notional {
        match self {
            Self::Quote => fee,
            Self::Converted { quote, .. } => quote,
            Self::Unconvertible => Notional::ZERO,
        }
    }
}

/// A funding payment settled by the exchange on a (symbol, mode) position (`FUNDING_FEE` income).
///
/// Binance books funding per symbol; the engine splits it over the modes holding the symbol in proportion to
/// their signed size (the parts always add up to the exchange's amount exactly).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FundingEvent {
    /// Settlement time (the income record's `time`, ms).
    pub ts_ms: TimestampMs,
    /// Symbol.
    pub symbol: Symbol,
    /// Mode this part is attributed to.
    pub mode: StrategyMode,
    /// The income's `tranId`: with `symbol` the key that makes funding exactly-once.
    pub tran_id: u64,
    /// Asset the funding was paid in (the margin asset, e.g. `USDT`).
    pub asset: Symbol,
    /// This mode's part, signed: received > 0, paid < 0, in `asset`.
    pub amount: Notional,
    /// This part in the symbol's quote asset, as PnL counts it (equal to `amount` when `asset` is the quote
    /// asset; zero when it could not be priced, flagged with [`AlertKind::FeeUnconverted`]).
    pub quote: Notional,
    /// The whole settlement of the symbol as the exchange reported it (the sum over modes).
    pub total: Notional,
}

/// Why the exchange closed a position by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForcedCloseKind {
    /// Liquidation (client id `autoclose-…`).
    Liquidation,
    /// Auto-deleveraging (client id `adl_autoclose…`).
    Adl,
}

impl ForcedCloseKind {
    /// Recognises the exchange's client ids for forced closes.
    pub fn of_client_id(cid: &str) -> Option<Self> {
        if cid.starts_with("autoclose-") {
            Some(Self::Liquidation)
        } else if cid.starts_with("adl_autoclose") {
            Some(Self::Adl)
        } else {
            None
        }
    }
}

/// A fill of a liquidation or ADL order on a (symbol, mode) position. The matching [`Fill`] (intent
/// `Manual`) carries the same trade and is what PnL sums; this event marks it and raises
/// [`AlertKind::Liquidation`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LiquidationEvent {
    /// When.
    pub ts_ms: TimestampMs,
    /// Symbol.
    pub symbol: Symbol,
    /// Mode whose position was closed.
    pub mode: StrategyMode,
    /// Liquidation or ADL.
    pub kind: ForcedCloseKind,
    /// The exchange's client id (`autoclose-…`, `adl_autoclose`).
    pub client_id: ClientOrderId,
    /// The exchange's trade id.
    pub trade_id: u64,
    /// Side of the forced order.
    pub side: Side,
    /// Price.
    pub price: Price,
    /// Quantity closed on this mode.
    pub qty: Qty,
    /// PnL realized by it, before fees.
    pub realized_pnl: Notional,
    /// Fee in the quote asset.
    pub fee: Notional,
    /// The mode's position after it.
    pub position_after: Qty,
}

/// A position after a change.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PositionUpdate {
    /// When (ms since epoch).
    pub ts_ms: TimestampMs,
    /// Symbol.
    pub symbol: Symbol,
    /// Market the symbol trades on. Absent in journals written before markets existed (= futures).
    #[serde(default)]
    pub market: Market,
    /// Mode that owns the position.
    pub mode: StrategyMode,
    /// Signed size: long > 0, short < 0, flat = 0.
    pub qty: Qty,
    /// Average entry price (zero when flat).
    pub entry_price: Price,
    /// Realized PnL of this (symbol, mode) since the start of records, before fees.
    pub realized_pnl: Notional,
    /// Fees paid by this (symbol, mode) since the start of records, in the quote asset.
    pub fees: Notional,
    /// Funding received (> 0) or paid (< 0) by this (symbol, mode) since the start of records, in the quote
    /// asset. Net PnL is `realized_pnl − fees + funding`. Absent (zero) in journals from before funding.
    #[serde(default)]
    pub funding: Notional,
}

impl PositionUpdate {
    /// A flat position of `symbol` on `market` held by `mode` at `ts_ms`, with nothing realized, paid or received
    /// (a position correction's zero, or the start a change is added to).
    pub fn flat(ts_ms: TimestampMs, symbol: Symbol, market: Market, mode: StrategyMode) -> Self {
        Self {
            ts_ms,
            symbol,
            market,
            mode,
            qty: Qty::ZERO,
            entry_price: Price::ZERO,
            realized_pnl: Notional::ZERO,
            fees: Notional::ZERO,
            funding: Notional::ZERO,
        }
    }
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
    /// This bot cannot prove it still holds its API key's fleet lease (taken over by another instance, or not
    /// renewed within the lease time); cleared when it holds the lease again.
    FleetLease,
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
pub const DENIAL_REASONS: usize = 18;

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
    /// The exchange liquidated or auto-deleveraged a position.
    Liquidation,
    /// A fee was charged in an asset that could not be priced in the quote asset: it is left out of PnL.
    FeeUnconverted,
    /// An open position has no protective stop resting on the exchange (placing, moving or cancelling it failed).
    ProtectiveStopFailed,
    /// Spot: the account holds less of a pair's base asset than the bot's position (sold or moved outside the
    /// bot); the position was set down to the balance.
    SoldOutsideBot,
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
    /// Funding settled on a position. Critical.
    Funding(FundingEvent),
    /// A liquidation or ADL fill. Critical.
    Liquidation(LiquidationEvent),
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
            market: crate::Market::Futures,
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
            fee_conv: FeeConversion::Quote,
        };
        let e = EngineEvent::Fill(f);
        let j = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<EngineEvent>(&j).unwrap(), e);
        assert!(e.is_critical());
        assert!(!EngineEvent::Heartbeat { ts_ms: 0, seq: 0 }.is_critical());
        // A fill journaled before fee conversion existed reads as a quote-asset fee.
        let mut v: serde_json::Value = serde_json::from_str(&j).unwrap();
        v.as_object_mut().unwrap().remove("fee_conv");
        let old: EngineEvent = serde_json::from_value(v).unwrap();
        assert_eq!(old, e);
    }

    #[test]
    fn fee_conversion_rounds_half_away_and_never_guesses() {
        let bnb = Notional::parse("0.00041234").unwrap();
        let c = FeeConversion::convert(bnb, Price::parse("612.35").unwrap());
        // 0.00041234 × 612.35 = 0.252496399 → 0.25249640
        assert_eq!(c.quote_fee(bnb), Notional::parse("0.2524964").unwrap());
        assert_eq!(FeeConversion::Unconvertible.quote_fee(bnb), Notional::ZERO);
        assert_eq!(FeeConversion::Quote.quote_fee(bnb), bnb);
        assert_eq!(
            ForcedCloseKind::of_client_id("autoclose-1700000000"),
            Some(ForcedCloseKind::Liquidation)
        );
        assert_eq!(
            ForcedCloseKind::of_client_id("adl_autoclose"),
            Some(ForcedCloseKind::Adl)
        );
        assert_eq!(ForcedCloseKind::of_client_id("ag1-1"), None);
    }

    proptest::proptest! {
        #[test]
        fn conversion_is_the_exact_product_rounded_half_away(
            fee in -1_000_000_000_000i64..1_000_000_000_000,
            price in 1i64..10_000_000_000_000,
        ) {
            let q = FeeConversion::convert(Notional::from_units(fee), Price::from_units(price))
                .quote_fee(Notional::from_units(fee))
                .units() as i128;
            let exact = fee as i128 * price as i128; // at 1e-16
            let s = crate::num::SCALE as i128;
            // Within half a unit, and a tie rounds away from zero.
            proptest::prop_assert!((q * s - exact).abs() * 2 <= s);
            if (q * s - exact).abs() * 2 == s {
                proptest::prop_assert!(q.abs() * s > exact.abs());
            }
        }
    }
}
