//! Pre-trade limits: `FUTURES_AUTOPILOT_MAX_POSITION_SIZE`, `FUTURES_AUTOPILOT_MAX_DAILY_LOSS`, leverage, open
//! orders, order rate, symbol allowlist and the exchange's filters (tick size, step size, min quantity, min
//! notional).
//!
//! Entries face every check. Exits (reduce-only) must always be able to leave a position, so they skip the
//! allowlist (a symbol may have left it while a position was open), position size, daily loss, leverage, the
//! open-order cap and the min-notional filter (Binance waives it for reduce-only orders); they still must be on
//! the tick/step grid (the exchange would refuse them) and still count against and obey the order rate, since a
//! rate-limit ban (HTTP 418) would block every later exit for far longer.
//!
//! The daily loss is the UTC day's net realized PnL (after fees). Once its loss reaches the limit, entries stop
//! until 00:00 UTC; [`Limits::record_pnl`] reports that as a global [`TripReason::DailyLoss`] breaker event that
//! lasts until midnight, so the journal keeps it across a restart. Because the check runs before each entry, a
//! day's loss can pass the limit by at most what the positions already open lose.
//!
//! Everything is fixed-size: the order-rate window is a ring of send times, the filter table a small array.

use aegis_shared::event::{BreakerChange, BreakerEvent, BreakerScope, TimestampMs, TripReason};
use aegis_shared::num::{Notional, Price, Qty};
use aegis_shared::symbol::Symbol;
use serde::{Deserialize, Serialize};

/// Length of the order-rate window.
pub const RATE_WINDOW_MS: u64 = 10_000;
/// Largest configurable order rate (orders per 10 s); Binance USD-M allows 300.
pub const MAX_RATE: usize = 1024;
/// Most symbols with filters (and on the allowlist).
pub const MAX_SYMBOLS: usize = 32;
const DAY_MS: u64 = 86_400_000;

/// The exchange's trading rules for one symbol (`exchangeInfo` filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolFilters {
    /// `PRICE_FILTER.tickSize`.
    pub tick_size: Price,
    /// `LOT_SIZE.stepSize`.
    pub step_size: Qty,
    /// `LOT_SIZE.minQty`.
    pub min_qty: Qty,
    /// `MIN_NOTIONAL.notional`.
    pub min_notional: Notional,
}

/// Limit settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsConfig {
    /// `FUTURES_AUTOPILOT_MAX_POSITION_SIZE`: most USD notional in one position.
    pub max_position_usd: Notional,
    /// `FUTURES_AUTOPILOT_MAX_DAILY_LOSS`: USD net loss per UTC day after which entries stop.
    pub max_daily_loss_usd: Notional,
    /// Highest leverage an entry may use.
    pub max_leverage: u32,
    /// `MAX_OPEN_ORDERS`: most open (working) orders at once, for entries.
    pub max_open_orders: u32,
    /// `MAX_ORDERS_PER_10S`: most orders sent per 10 s (capped at [`MAX_RATE`]).
    pub max_orders_per_10s: u32,
}

impl Default for LimitsConfig {
    /// The guide's week-1 values ($50 per position, $20 per day), leverage 5, 10 open orders, 50 orders/10 s:
    /// the defaults of the matching settings in `aegis_shared::config`, so a run without them behaves the same.
    fn default() -> Self {
        Self {
            max_position_usd: Notional::from_int(50),
            max_daily_loss_usd: Notional::from_int(20),
            max_leverage: 5,
            max_open_orders: 10,
            max_orders_per_10s: 50,
        }
    }
}

/// Why [`Limits`] refused an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum LimitDenial {
    /// The symbol is not on the allowlist.
    #[error("symbol not on the allowlist")]
    SymbolNotAllowed,
    /// No exchange filters are known for the symbol, so the order cannot be validated.
    #[error("no exchange filters known for the symbol")]
    UnknownSymbol,
    /// The price is not a multiple of the tick size (or not positive).
    #[error("price not on the tick size")]
    PriceNotOnTick,
    /// The quantity is not a multiple of the step size (or not positive).
    #[error("quantity not on the step size")]
    QtyNotOnStep,
    /// The quantity is below the minimum.
    #[error("quantity below the minimum")]
    BelowMinQty,
    /// The notional is below the minimum.
    #[error("notional below the minimum")]
    BelowMinNotional,
    /// The position would exceed `FUTURES_AUTOPILOT_MAX_POSITION_SIZE`.
    #[error("position would exceed the maximum position size")]
    PositionTooLarge,
    /// The UTC day's loss reached `FUTURES_AUTOPILOT_MAX_DAILY_LOSS`.
    #[error("daily loss limit reached")]
    DailyLossReached,
    /// The leverage is above the maximum.
    #[error("leverage above the maximum")]
    LeverageTooHigh,
    /// Too many open orders.
    #[error("too many open orders")]
    TooManyOpenOrders,
    /// Too many orders in the last 10 s.
    #[error("order rate limit reached")]
    RateLimited,
}

/// What [`Limits::check`] needs to know about an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderCheck {
    /// Symbol.
    pub symbol: Symbol,
    /// True for reduce-only exits.
    pub exit: bool,
    /// Limit price, or for a market order the price it is expected to fill at (for the notional checks; market
    /// orders skip the tick check by passing `tick_checked: false`).
    pub price: Price,
    /// Whether `price` is sent to the exchange and must be on the tick grid (limit orders).
    pub tick_checked: bool,
    /// Quantity (positive).
    pub qty: Qty,
    /// Absolute notional of the (symbol, mode) position if this order fills completely.
    pub position_notional_after: Notional,
    /// Leverage the position uses.
    pub leverage: u32,
}

/// Limit state: filter table, open-order count, order-rate ring and the UTC day's PnL.
#[derive(Debug, Clone)]
pub struct Limits {
    cfg: LimitsConfig,
    filters: [(Symbol, SymbolFilters); MAX_SYMBOLS],
    n_filters: usize,
    allow: [Symbol; MAX_SYMBOLS],
    n_allow: usize,
    open_orders: u32,
    sent: [TimestampMs; MAX_RATE],
    sent_head: usize,
    sent_len: usize,
    day: u64,
    day_pnl: i64,
    /// The UTC day whose loss stopped entries, until a `Resumed` has been emitted for it.
    blocked_day: Option<u64>,
}

/// A limits setup error (only at construction, never on the hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// More than [`MAX_SYMBOLS`] symbols.
    #[error("too many symbols: at most {MAX_SYMBOLS} are supported; trade fewer symbols")]
    TooManySymbols,
}

impl Limits {
    /// Limits with no symbols known yet (add filters with [`Limits::set_filters`]). An empty allowlist allows
    /// every symbol whose filters are known.
    pub fn new(cfg: LimitsConfig) -> Self {
        let placeholder =
            Symbol::from_bytes(b"X").unwrap_or_else(|_| unreachable!("X is a valid symbol"));
        let f = SymbolFilters {
            tick_size: Price::ZERO,
            step_size: Qty::ZERO,
            min_qty: Qty::ZERO,
            min_notional: Notional::ZERO,
        };
        Self {
            cfg,
            filters: [(placeholder, f); MAX_SYMBOLS],
            n_filters: 0,
            allow: [placeholder; MAX_SYMBOLS],
            n_allow: 0,
            open_orders: 0,
            sent: [0; MAX_RATE],
            sent_head: 0,
            sent_len: 0,
            day: 0,
            day_pnl: 0,
            blocked_day: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> LimitsConfig {
        self.cfg
    }

    /// [`aegis_shared::Command::SetLimits`]: new position size and daily loss limits.
    pub fn set_limits(&mut self, max_position_usd: Notional, max_daily_loss_usd: Notional) {
        self.cfg.max_position_usd = max_position_usd;
        self.cfg.max_daily_loss_usd = max_daily_loss_usd;
    }

    /// Adds or replaces a symbol's exchange filters.
    pub fn set_filters(&mut self, symbol: Symbol, f: SymbolFilters) -> Result<(), LimitsError> {
        if let Some(e) = self.filters[..self.n_filters]
            .iter_mut()
            .find(|e| e.0 == symbol)
        {
            e.1 = f;
            return Ok(());
        }
        if self.n_filters == MAX_SYMBOLS {
            return Err(LimitsError::TooManySymbols);
        }
        self.filters[self.n_filters] = (symbol, f);
        self.n_filters += 1;
        Ok(())
    }

    /// Filters of a symbol.
    #[inline]
    pub fn filters(&self, symbol: Symbol) -> Option<&SymbolFilters> {
        self.filters[..self.n_filters]
            .iter()
            .find(|e| e.0 == symbol)
            .map(|e| &e.1)
    }

    /// Replaces the allowlist.
    pub fn set_allowlist(&mut self, symbols: &[Symbol]) -> Result<(), LimitsError> {
        if symbols.len() > MAX_SYMBOLS {
            return Err(LimitsError::TooManySymbols);
        }
        self.allow[..symbols.len()].copy_from_slice(symbols);
        self.n_allow = symbols.len();
        Ok(())
    }

    #[inline]
    fn allowed(&self, s: Symbol) -> bool {
        self.n_allow == 0 || self.allow[..self.n_allow].contains(&s)
    }

    #[inline]
    fn evict_rate(&mut self, now: TimestampMs) {
        while self.sent_len > 0 && self.sent[self.sent_head] + RATE_WINDOW_MS <= now {
            self.sent_head = (self.sent_head + 1) % MAX_RATE;
            self.sent_len -= 1;
        }
    }

    /// Orders sent in the 10 s up to `now`.
    pub fn orders_in_window(&mut self, now: TimestampMs) -> u32 {
        self.evict_rate(now);
        self.sent_len as u32
    }

    #[inline]
    fn roll_day(&mut self, now: TimestampMs) {
        let d = now / DAY_MS;
        if d != self.day {
            self.day = d;
            self.day_pnl = 0;
        }
    }

    /// The UTC day's net realized PnL at `now`.
    pub fn day_pnl(&mut self, now: TimestampMs) -> Notional {
        self.roll_day(now);
        Notional::from_units(self.day_pnl)
    }

    /// True when the UTC day's loss has reached the limit (entries stop until midnight).
    #[inline]
    pub fn daily_loss_reached(&mut self, now: TimestampMs) -> bool {
        self.roll_day(now);
        let max = self.cfg.max_daily_loss_usd.units();
        max > 0 && -self.day_pnl >= max
    }

    /// Checks an order at `now` against every limit that applies to it. Does not record anything: call
    /// [`Limits::record_sent`] once the order is actually sent.
    #[inline]
    pub fn check(&mut self, now: TimestampMs, o: &OrderCheck) -> Result<(), LimitDenial> {
        let f = *self.filters(o.symbol).ok_or(LimitDenial::UnknownSymbol)?;
        if !o.exit && !self.allowed(o.symbol) {
            return Err(LimitDenial::SymbolNotAllowed);
        }
        if o.price.units() <= 0 || (o.tick_checked && !o.price.is_multiple_of(f.tick_size)) {
            return Err(LimitDenial::PriceNotOnTick);
        }
        if o.qty.units() <= 0 || !o.qty.is_multiple_of(f.step_size) {
            return Err(LimitDenial::QtyNotOnStep);
        }
        if o.qty < f.min_qty {
            return Err(LimitDenial::BelowMinQty);
        }
        if !o.exit {
            if o.price.notional(o.qty) < f.min_notional {
                return Err(LimitDenial::BelowMinNotional);
            }
            if o.position_notional_after > self.cfg.max_position_usd {
                return Err(LimitDenial::PositionTooLarge);
            }
            if self.daily_loss_reached(now) {
                return Err(LimitDenial::DailyLossReached);
            }
            if o.leverage > self.cfg.max_leverage {
                return Err(LimitDenial::LeverageTooHigh);
            }
            if self.open_orders >= self.cfg.max_open_orders {
                return Err(LimitDenial::TooManyOpenOrders);
            }
        }
        self.evict_rate(now);
        let cap = (self.cfg.max_orders_per_10s as usize).min(MAX_RATE);
        if self.sent_len >= cap {
            return Err(LimitDenial::RateLimited);
        }
        Ok(())
    }

    /// Records that an order was sent at `now` (rate window and open-order count).
    #[inline]
    pub fn record_sent(&mut self, now: TimestampMs) {
        self.evict_rate(now);
        if self.sent_len == MAX_RATE {
            self.sent_head = (self.sent_head + 1) % MAX_RATE;
            self.sent_len -= 1;
        }
        self.sent[(self.sent_head + self.sent_len) % MAX_RATE] = now;
        self.sent_len += 1;
        self.open_orders = self.open_orders.saturating_add(1);
    }

    /// Records that a working order reached a final state.
    #[inline]
    pub fn record_done(&mut self) {
        self.open_orders = self.open_orders.saturating_sub(1);
    }

    /// Open (working) orders.
    pub fn open_orders(&self) -> u32 {
        self.open_orders
    }

    /// Records realized net PnL (after fees) at `now`. Emits a global `DailyLoss` trip lasting until the next
    /// 00:00 UTC when the day's loss reaches the limit.
    pub fn record_pnl(
        &mut self,
        now: TimestampMs,
        net: Notional,
        sink: &mut impl FnMut(BreakerEvent),
    ) {
        self.poll(now, sink);
        self.day_pnl = self.day_pnl.saturating_add(net.units());
        if self.blocked_day.is_none() && self.daily_loss_reached(now) {
            self.blocked_day = Some(self.day);
            sink(BreakerEvent {
                ts_ms: now,
                scope: BreakerScope::Global,
                change: BreakerChange::Tripped {
                    reason: TripReason::DailyLoss,
                    until_ms: (now / DAY_MS + 1) * DAY_MS,
                },
            });
        }
    }

    /// Advances time: at the first call of a new UTC day after a daily-loss stop, emits `Resumed` (stamped
    /// 00:00 UTC) and resets the day.
    #[inline]
    pub fn poll(&mut self, now: TimestampMs, sink: &mut impl FnMut(BreakerEvent)) {
        self.roll_day(now);
        if let Some(bd) = self.blocked_day {
            if self.day > bd {
                self.blocked_day = None;
                sink(BreakerEvent {
                    ts_ms: self.day * DAY_MS,
                    scope: BreakerScope::Global,
                    change: BreakerChange::Resumed,
                });
            }
        }
    }

    /// Restores the UTC day's PnL after a restart (from the journal), without emitting events.
    pub fn restore_day(&mut self, now: TimestampMs, day_pnl: Notional) {
        self.roll_day(now);
        self.day_pnl = day_pnl.units();
        self.blocked_day = self.daily_loss_reached(now).then_some(self.day);
    }
}
