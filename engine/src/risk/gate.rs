//! The pre-trade gate: every order — strategy entries and exits, kill-switch flattens, manual orders — passes
//! [`RiskGate::check`] before it reaches a venue. The answer is "yes" or a typed [`Denial`] whose stable
//! [`Denial::code`] (< 18) indexes `EngineStats::denials`.
//!
//! Order of checks (first failure wins):
//! 0. long-only markets (spot): a sell larger than what the (symbol, mode) holds is refused
//!    ([`Denial::SpotShort`]), entry or exit: spot cannot go short, and selling another mode's coins would leave
//!    that mode's books holding coins the account no longer has;
//! 1. reduce-only sanity: a reduce-only order must shrink the (symbol, mode) position and not flip it;
//! 2. entries only: engine halts (operator, kill switch, backpressure, shutdown, …), then the circuit breakers
//!    (global and the mode's own);
//! 3. [`Limits::check`]: exchange filters (tick, step, min qty, min notional), max position USD, daily loss,
//!    leverage, open orders, order rate — exits skip the ones that could trap a position (see [`limits`]);
//! 4. entries only: the mode's capital allocation ([`AllocationTracker`]: open positions, USD per position, share
//!    of capital).
//!
//! Modes are netted per symbol, because the Binance account runs in one-way (netted) position mode: an entry
//! opposite in sign to the net position the *other* modes hold on the symbol is refused ([`Denial::OppositeNet`]),
//! so every mode's position has the net's sign and is at most |net|, and a mode's reduce-only exit can never be
//! refused by Binance against the net position. The max position size holds per (symbol, mode) position and for
//! the symbol's net across all modes. Both rules are proptested in `engine/tests/netting_props.rs`.
//!
//! Reduce-only exits pass while halted or tripped: an open position must always be able to close.
//!
//! [`limits`]: super::limits

use super::allocation::{Allocation, AllocationTracker};
use super::breaker::{BreakerBank, BreakerConfig};
use super::limits::{LimitDenial, Limits, LimitsConfig, OrderCheck};
use crate::venue::OrderRequest;
use aegis_shared::event::{HaltReason, OrderType, TimestampMs};
use aegis_shared::{Notional, Qty};

/// Why the gate refused an order. `#[repr(u8)]`; the discriminant is the stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[repr(u8)]
pub enum Denial {
    /// New entries are halted (operator halt, shutdown, stale feed, key rejected, reconcile mismatch, rate limit),
    /// or the order's symbol has no fresh data of its own (the engine's per-symbol stale-data guard).
    #[error("entries halted")]
    Halted = 0,
    /// The kill switch is engaged.
    #[error("kill switch engaged")]
    KillSwitch = 1,
    /// The critical event queue is backed up.
    #[error("event queue backpressure")]
    Backpressure = 2,
    /// A circuit breaker (global or the mode's) is tripped.
    #[error("circuit breaker tripped")]
    Breaker = 3,
    /// The mode's allocation is used up (its positions or its capital share).
    #[error("mode allocation exhausted")]
    Allocation = 4,
    /// A reduce-only order would not reduce the position (nothing to reduce, wrong side, or larger than it).
    #[error("reduce-only order would not reduce the position")]
    ReduceOnly = 5,
    /// The symbol is not allowed or has no known filters.
    #[error("symbol not tradable")]
    Symbol = 6,
    /// The price is off the tick grid (or not positive).
    #[error("price not on the tick size")]
    PriceNotOnTick = 7,
    /// The quantity is off the step grid (or not positive).
    #[error("quantity not on the step size")]
    QtyNotOnStep = 8,
    /// The quantity is below the minimum.
    #[error("quantity below the minimum")]
    BelowMinQty = 9,
    /// The notional is below the minimum.
    #[error("notional below the minimum")]
    BelowMinNotional = 10,
    /// The position would exceed `FUTURES_AUTOPILOT_MAX_POSITION_SIZE`.
    #[error("position would exceed the maximum position size")]
    PositionTooLarge = 11,
    /// The UTC day's loss reached `FUTURES_AUTOPILOT_MAX_DAILY_LOSS`.
    #[error("daily loss limit reached")]
    DailyLoss = 12,
    /// Leverage above the maximum.
    #[error("leverage above the maximum")]
    Leverage = 13,
    /// Too many open orders.
    #[error("too many open orders")]
    MaxOpenOrders = 14,
    /// Order rate limit reached.
    #[error("order rate limit reached")]
    RateLimited = 15,
    /// The entry is opposite in sign to the symbol's net position held by the other modes: modes are netted per
    /// symbol on the one-way account, so such an entry could later make a mode's reduce-only exit larger than
    /// the net, which Binance refuses (see the module docs and docs/POSITION_MODES.md).
    #[error("entry opposite to the symbol's net position held by the other modes")]
    OppositeNet = 16,
    /// A sell on a long-only market (spot) larger than the (symbol, mode)'s holding: it would go short.
    #[error("sell larger than the spot holding: spot cannot go short")]
    SpotShort = 17,
}

impl Denial {
    /// Stable code, `< 18` (= `aegis_shared::event::DENIAL_REASONS`), the index into `EngineStats::denials`.
    #[inline]
    pub const fn code(self) -> u8 {
        self as u8
    }
    /// All denials in code order.
    pub const ALL: [Denial; 18] = [
        Self::Halted,
        Self::KillSwitch,
        Self::Backpressure,
        Self::Breaker,
        Self::Allocation,
        Self::ReduceOnly,
        Self::Symbol,
        Self::PriceNotOnTick,
        Self::QtyNotOnStep,
        Self::BelowMinQty,
        Self::BelowMinNotional,
        Self::PositionTooLarge,
        Self::DailyLoss,
        Self::Leverage,
        Self::MaxOpenOrders,
        Self::RateLimited,
        Self::OppositeNet,
        Self::SpotShort,
    ];
}

impl From<LimitDenial> for Denial {
    fn from(d: LimitDenial) -> Self {
        match d {
            LimitDenial::SymbolNotAllowed | LimitDenial::UnknownSymbol => Self::Symbol,
            LimitDenial::PriceNotOnTick => Self::PriceNotOnTick,
            LimitDenial::QtyNotOnStep => Self::QtyNotOnStep,
            LimitDenial::BelowMinQty => Self::BelowMinQty,
            LimitDenial::BelowMinNotional => Self::BelowMinNotional,
            LimitDenial::PositionTooLarge => Self::PositionTooLarge,
            LimitDenial::DailyLossReached => Self::DailyLoss,
            LimitDenial::LeverageTooHigh => Self::Leverage,
            LimitDenial::TooManyOpenOrders => Self::MaxOpenOrders,
            LimitDenial::RateLimited => Self::RateLimited,
        }
    }
}

/// What the gate needs to know besides the order itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RiskContext {
    /// Now (engine time, ms).
    pub now_ms: TimestampMs,
    /// Signed size of the order's (symbol, mode) position before the order.
    pub position_qty: Qty,
    /// Signed net size of the order's symbol across all modes before the order (includes `position_qty`).
    pub symbol_net_qty: Qty,
    /// Leverage the position uses.
    pub leverage: u32,
    /// The market cannot hold a short (spot): `position_qty` is then what the mode holds and may sell.
    pub long_only: bool,
}

const fn bit(r: HaltReason) -> u16 {
    1 << (r as u16)
}

/// The one pre-trade gate. See the module docs.
#[derive(Debug, Clone)]
pub struct RiskGate {
    /// Limits and exchange filters.
    pub limits: Limits,
    /// Circuit breakers.
    pub breakers: BreakerBank,
    /// Per-mode capital allocation (guide §5.2); default: the guide's example over $10,000 of capital. The
    /// engine keeps its usage current ([`AllocationTracker::sync`]) before each entry.
    pub allocation: AllocationTracker,
    halts: u16,
}

impl RiskGate {
    /// A gate with these limits and breaker settings (add symbol filters through `limits.set_filters`).
    pub fn new(limits: LimitsConfig, breakers: BreakerConfig) -> Self {
        Self {
            limits: Limits::new(limits),
            breakers: BreakerBank::new(breakers),
            allocation: AllocationTracker::new(Allocation::default(), Notional::from_int(10_000)),
            halts: 0,
        }
    }

    /// Halts new entries for `reason`. Returns true if this reason was not active before.
    pub fn halt(&mut self, reason: HaltReason) -> bool {
        let was = self.halts & bit(reason) != 0;
        self.halts |= bit(reason);
        !was
    }

    /// Clears one halt reason. Returns true if it was active.
    pub fn clear(&mut self, reason: HaltReason) -> bool {
        let was = self.halts & bit(reason) != 0;
        self.halts &= !bit(reason);
        was
    }

    /// True if `reason` is active.
    #[inline]
    pub fn is_halted_for(&self, reason: HaltReason) -> bool {
        self.halts & bit(reason) != 0
    }

    /// The most important active halt reason, if any.
    pub fn halt_reason(&self) -> Option<HaltReason> {
        use HaltReason::*;
        [
            KillSwitch,
            Shutdown,
            Backpressure,
            KeyRejected,
            FleetLease,
            ReconcileMismatch,
            RateLimited,
            FeedStale,
            Operator,
        ]
        .into_iter()
        .find(|r| self.is_halted_for(*r))
    }

    /// Approves or denies an order (see the module docs). Does not record anything; the engine records a sent
    /// order with `limits.record_sent`.
    #[inline]
    pub fn check(&mut self, o: &OrderRequest, ctx: &RiskContext) -> Result<(), Denial> {
        let signed = Qty::from_units(o.side.sign() * o.qty.units());
        let pos = ctx.position_qty;
        if ctx.long_only && o.side == aegis_shared::Side::Sell && o.qty.units() > pos.units() {
            return Err(Denial::SpotShort);
        }
        if o.reduce_only {
            let pu = pos.units();
            if pu == 0 || pu.signum() == signed.units().signum() || o.qty.units() > pu.abs() {
                return Err(Denial::ReduceOnly);
            }
        } else {
            if let Some(r) = self.halt_reason() {
                return Err(match r {
                    HaltReason::KillSwitch => Denial::KillSwitch,
                    HaltReason::Backpressure => Denial::Backpressure,
                    _ => Denial::Halted,
                });
            }
            if self.breakers.check_entry(o.mode, ctx.now_ms).is_err() {
                return Err(Denial::Breaker);
            }
            let others = (ctx.symbol_net_qty - pos).units();
            if others != 0 && others.signum() != signed.units().signum() {
                return Err(Denial::OppositeNet);
            }
        }
        // Entries are capped on the larger of the mode's position and the symbol's net after the order; exits
        // skip the size check in `Limits`, so this only ever tightens entries.
        let after = if o.reduce_only {
            (pos + signed).abs()
        } else {
            let own = (pos + signed).abs();
            let net = (ctx.symbol_net_qty + signed).abs();
            if net.units() > own.units() {
                net
            } else {
                own
            }
        };
        let check = OrderCheck {
            symbol: o.symbol,
            exit: o.reduce_only,
            price: o.ref_price,
            tick_checked: o.order_type == OrderType::Limit,
            qty: o.qty,
            position_notional_after: o.ref_price.notional(after),
            leverage: ctx.leverage,
        };
        self.limits.check(ctx.now_ms, &check)?;
        if !o.reduce_only {
            let usd = o.ref_price.notional(o.qty);
            let alloc = if pos.is_zero() {
                self.allocation.check(o.mode, usd)
            } else {
                self.allocation.check_add(o.mode, usd)
            };
            if alloc.is_err() {
                return Err(Denial::Allocation);
            }
        }
        Ok(())
    }

    /// Records a fill's net result (realized − fee) for the daily loss; emits a breaker event when the daily
    /// limit is reached.
    pub fn on_fill_pnl(
        &mut self,
        now: TimestampMs,
        net: Notional,
        sink: &mut impl FnMut(aegis_shared::event::BreakerEvent),
    ) {
        self.limits.record_pnl(now, net, sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::limits::SymbolFilters;
    use aegis_shared::event::{OrderIntent, TimeInForce};
    use aegis_shared::{Price, Side, StrategyMode, Symbol};

    fn gate() -> RiskGate {
        let mut g = RiskGate::new(
            LimitsConfig {
                max_position_usd: Notional::from_int(1000),
                max_daily_loss_usd: Notional::from_int(50),
                max_leverage: 5,
                max_open_orders: 2,
                max_orders_per_10s: 100,
            },
            BreakerConfig::default(),
        );
        g.limits
            .set_filters(
                Symbol::new("BTCUSDT").unwrap(),
                SymbolFilters {
                    tick_size: Price::parse("0.1").unwrap(),
                    step_size: Qty::parse("0.001").unwrap(),
                    min_qty: Qty::parse("0.001").unwrap(),
                    min_notional: Notional::from_int(100),
                },
            )
            .unwrap();
        g
    }

    fn order(side: Side, qty: &str, reduce_only: bool) -> OrderRequest {
        OrderRequest {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            sym: 0,
            mode: StrategyMode::Scalp,
            intent: if reduce_only {
                OrderIntent::StopLoss
            } else {
                OrderIntent::Entry
            },
            side,
            order_type: OrderType::Market,
            tif: None,
            price: Price::ZERO,
            ref_price: Price::from_int(50_000),
            qty: Qty::parse(qty).unwrap(),
            reduce_only,
        }
    }

    fn ctx(pos: &str) -> RiskContext {
        RiskContext {
            now_ms: 1_700_000_000_000,
            position_qty: Qty::parse(pos).unwrap(),
            symbol_net_qty: Qty::parse(pos).unwrap(),
            leverage: 1,
            long_only: false,
        }
    }

    #[test]
    fn codes_are_stable_and_below_sixteen() {
        for (i, d) in Denial::ALL.iter().enumerate() {
            assert_eq!(d.code() as usize, i);
            assert!((d.code() as usize) < aegis_shared::event::DENIAL_REASONS);
        }
    }

    #[test]
    fn entries_pass_filters_and_limits() {
        let mut g = gate();
        assert_eq!(
            g.check(&order(Side::Buy, "0.002", false), &ctx("0")),
            Ok(())
        );
        assert_eq!(
            g.check(&order(Side::Buy, "0.0015", false), &ctx("0")),
            Err(Denial::QtyNotOnStep)
        );
        assert_eq!(
            g.check(&order(Side::Buy, "0.001", false), &ctx("0")),
            Err(Denial::BelowMinNotional)
        );
        assert_eq!(
            g.check(&order(Side::Buy, "0.021", false), &ctx("0")),
            Err(Denial::PositionTooLarge)
        );
        assert_eq!(
            g.check(&order(Side::Sell, "0.021", false), &ctx("0.02")),
            Ok(()),
            "net after is tiny"
        );
        let mut lim = order(Side::Buy, "0.002", false);
        lim.order_type = OrderType::Limit;
        lim.tif = Some(TimeInForce::Gtc);
        lim.ref_price = Price::parse("50000.05").unwrap();
        assert_eq!(g.check(&lim, &ctx("0")), Err(Denial::PriceNotOnTick));
        let mut other = order(Side::Buy, "0.002", false);
        other.symbol = Symbol::new("ETHUSDT").unwrap();
        assert_eq!(g.check(&other, &ctx("0")), Err(Denial::Symbol));
    }

    #[test]
    fn halts_block_entries_but_not_reduce_only_exits() {
        let mut g = gate();
        assert!(g.halt(HaltReason::Operator));
        assert!(!g.halt(HaltReason::Operator));
        assert_eq!(
            g.check(&order(Side::Buy, "0.002", false), &ctx("0")),
            Err(Denial::Halted)
        );
        g.halt(HaltReason::KillSwitch);
        assert_eq!(
            g.check(&order(Side::Buy, "0.002", false), &ctx("0")),
            Err(Denial::KillSwitch)
        );
        // A reduce-only exit below min notional still passes while halted.
        assert_eq!(
            g.check(&order(Side::Sell, "0.001", true), &ctx("0.001")),
            Ok(())
        );
        assert_eq!(
            g.check(&order(Side::Sell, "0.002", true), &ctx("0.001")),
            Err(Denial::ReduceOnly)
        );
        assert_eq!(
            g.check(&order(Side::Buy, "0.001", true), &ctx("0.001")),
            Err(Denial::ReduceOnly)
        );
        assert_eq!(
            g.check(&order(Side::Sell, "0.001", true), &ctx("0")),
            Err(Denial::ReduceOnly)
        );
        g.clear(HaltReason::KillSwitch);
        g.clear(HaltReason::Operator);
        g.halt(HaltReason::Backpressure);
        assert_eq!(
            g.check(&order(Side::Buy, "0.002", false), &ctx("0")),
            Err(Denial::Backpressure)
        );
        g.clear(HaltReason::Backpressure);
        assert_eq!(g.halt_reason(), None);
        assert_eq!(
            g.check(&order(Side::Buy, "0.002", false), &ctx("0")),
            Ok(())
        );
    }

    #[test]
    fn daily_loss_stops_entries_until_the_next_utc_day() {
        let mut g = gate();
        let now = 1_700_000_000_000u64;
        let mut events = Vec::new();
        g.on_fill_pnl(now, Notional::from_int(-50), &mut |e| events.push(e));
        assert_eq!(events.len(), 1, "daily loss trip reported");
        assert_eq!(
            g.check(&order(Side::Buy, "0.002", false), &ctx("0")),
            Err(Denial::DailyLoss)
        );
        assert_eq!(
            g.check(&order(Side::Sell, "0.001", true), &ctx("0.001")),
            Ok(())
        );
        let mut next = ctx("0");
        next.now_ms = (now / 86_400_000 + 1) * 86_400_000;
        assert_eq!(g.check(&order(Side::Buy, "0.002", false), &next), Ok(()));
    }

    #[test]
    fn open_order_cap_and_breaker() {
        let mut g = gate();
        let c = ctx("0");
        g.limits.record_sent(c.now_ms);
        g.limits.record_sent(c.now_ms);
        assert_eq!(
            g.check(&order(Side::Buy, "0.002", false), &c),
            Err(Denial::MaxOpenOrders)
        );
        g.limits.record_done();
        assert_eq!(g.check(&order(Side::Buy, "0.002", false), &c), Ok(()));
        let mut ev = Vec::new();
        for _ in 0..10 {
            g.breakers.record_trade(
                c.now_ms,
                StrategyMode::Scalp,
                Notional::from_int(-1),
                &mut |e| ev.push(e),
            );
        }
        assert!(!ev.is_empty());
        assert_eq!(
            g.check(&order(Side::Buy, "0.002", false), &c),
            Err(Denial::Breaker)
        );
        assert_eq!(
            g.check(&order(Side::Sell, "0.001", true), &ctx("0.001")),
            Ok(())
        );
    }
}
