//! Position math per (symbol, mode): signed size, average entry, realized and unrealized PnL, fees.
//!
//! Exactness: the cost basis and realized PnL are kept in 128-bit integers at 10⁻¹⁶ (price units × qty units),
//! so no rounding happens while a position is open or reduced. Rounding to the 10⁻⁸ of [`Notional`] happens
//! only when a value is reported, and a fill's realized PnL is reported as the difference of the rounded running
//! total before and after it — so the sum of all fills' `realized_pnl` always equals the position's realized PnL
//! exactly, and a round trip to flat realizes exactly Σ sells − Σ buys.

use aegis_shared::event::{PositionUpdate, TimestampMs};
use aegis_shared::num::SCALE;
use aegis_shared::{Market, Notional, Price, Qty, Side, StrategyMode, Symbol};

const S: i128 = SCALE as i128;

fn round_div(num: i128, den: i128) -> i128 {
    // Half away from zero; `den` > 0 at every call site.
    let q = num / den;
    let r = num % den;
    if 2 * r.abs() >= den {
        q + num.signum()
    } else {
        q
    }
}

fn to_notional(v_e16: i128) -> Notional {
    let v = round_div(v_e16, S);
    Notional::from_units(v.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

/// One (symbol, mode) position. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    qty: Qty,
    /// Σ price × signed qty of the open quantity, at 10⁻¹⁶.
    cost: i128,
    /// Realized PnL before fees, at 10⁻¹⁶.
    realized: i128,
    fees: Notional,
    funding: Notional,
    opened_ms: TimestampMs,
    /// Net result (realized − fees) of the trade currently open, for the breakers.
    trade_net: Notional,
}

/// What one fill did to a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillResult {
    /// PnL this fill realized, before fees.
    pub realized: Notional,
    /// Net result (realized − fees since it opened) of the trade this fill closed, if it went flat or flipped.
    pub closed_trade: Option<Notional>,
}

impl Position {
    /// Restores a position from its last journaled update.
    pub fn restore(u: &PositionUpdate) -> Self {
        Self {
            qty: u.qty,
            cost: u.entry_price.units() as i128 * u.qty.units() as i128,
            realized: u.realized_pnl.units() as i128 * S,
            fees: u.fees,
            funding: u.funding,
            opened_ms: u.ts_ms,
            trade_net: Notional::ZERO,
        }
    }

    /// Signed size (long > 0).
    #[inline]
    pub fn qty(&self) -> Qty {
        self.qty
    }

    /// True when flat.
    #[inline]
    pub fn is_flat(&self) -> bool {
        self.qty.is_zero()
    }

    /// When the current position was opened from flat (ms; the restore time for a restored position).
    #[inline]
    pub fn opened_ms(&self) -> TimestampMs {
        self.opened_ms
    }

    /// Average entry price, rounded half away from zero to 10⁻⁸ (zero when flat). For display and exit
    /// thresholds; the PnL math uses the exact cost basis.
    #[inline]
    pub fn entry_price(&self) -> Price {
        if self.qty.is_zero() {
            return Price::ZERO;
        }
        let q = self.qty.units() as i128;
        // round_div wants a positive divisor: move the sign to the numerator.
        Price::from_units(
            round_div(self.cost * q.signum(), q.abs()).clamp(0, i64::MAX as i128) as i64,
        )
    }

    /// Realized PnL before fees.
    #[inline]
    pub fn realized(&self) -> Notional {
        to_notional(self.realized)
    }

    /// Fees paid.
    #[inline]
    pub fn fees(&self) -> Notional {
        self.fees
    }

    /// Funding received (> 0) or paid (< 0), in the quote asset.
    #[inline]
    pub fn funding(&self) -> Notional {
        self.funding
    }

    /// Books a funding settlement (quote asset, received > 0). It belongs to the open trade: it enters that
    /// trade's net result (so the breakers see it when the trade closes), while the daily loss sees it at once
    /// through the caller's report.
    #[inline]
    pub fn apply_funding(&mut self, amount: Notional) {
        self.funding += amount;
        self.trade_net += amount;
    }

    /// Removes `qty` from a long without a trade: a spot commission taken in the base asset, which the account
    /// never receives. The quantity leaves at the average entry (its share of the cost basis goes with it), so
    /// it realizes nothing; its value is booked as the fill's fee by the caller. Clamped to the long held; a
    /// flat or short position is left alone (spot holds no shorts).
    pub fn deduct_held(&mut self, qty: Qty) {
        let q = self.qty.units() as i128;
        let d = (qty.units() as i128).min(q);
        if q <= 0 || d <= 0 {
            return;
        }
        let removed = if d == q {
            self.cost
        } else {
            round_div(self.cost * d, q)
        };
        self.cost -= removed;
        self.qty = Qty::from_units((q - d) as i64);
    }

    /// Ends the open trade without the position reaching zero and returns its net result (realized − fees since
    /// it opened): a spot position sold down to dust it cannot sell. What a later buy adds starts a new trade.
    pub fn close_dust_trade(&mut self) -> Notional {
        std::mem::replace(&mut self.trade_net, Notional::ZERO)
    }

    /// Unrealized PnL at `mark`.
    #[inline]
    pub fn unrealized(&self, mark: Price) -> Notional {
        to_notional(mark.units() as i128 * self.qty.units() as i128 - self.cost)
    }

    /// Applies a fill; returns the PnL it realized (before fees). `qty` must be positive (non-positive fills are
    /// ignored and realize nothing).
    pub fn apply_fill(
        &mut self,
        side: Side,
        price: Price,
        qty: Qty,
        fee: Notional,
        ts_ms: TimestampMs,
    ) -> Notional {
        self.apply(side, price, qty, fee, ts_ms).realized
    }

    /// Applies a fill (see [`Position::apply_fill`]) and reports a closed trade.
    pub fn apply(
        &mut self,
        side: Side,
        price: Price,
        qty: Qty,
        fee: Notional,
        ts_ms: TimestampMs,
    ) -> FillResult {
        let was = self.qty.signum();
        let realized = self.apply_inner(side, price, qty, fee, ts_ms);
        let closed_trade = if was != 0 && self.qty.signum() != was {
            // A flip closes one trade and opens the next with one fill: the fee is shared by quantity, so the
            // closed trade (what the breakers judge) carries only its own part and the new one starts with the rest.
            let opened = self.qty.units().unsigned_abs() as i128;
            let total = qty.units() as i128;
            let opening_fee = if opened > 0 && total > 0 {
                Notional::from_units(round_div(fee.units() as i128 * opened, total) as i64)
            } else {
                Notional::ZERO
            };
            let net = self.trade_net + realized - (fee - opening_fee);
            self.trade_net = -opening_fee;
            Some(net)
        } else {
            self.trade_net += realized - fee;
            None
        };
        FillResult {
            realized,
            closed_trade,
        }
    }

    fn apply_inner(
        &mut self,
        side: Side,
        price: Price,
        qty: Qty,
        fee: Notional,
        ts_ms: TimestampMs,
    ) -> Notional {
        if qty.units() <= 0 {
            return Notional::ZERO;
        }
        let before = self.realized();
        self.fees += fee;
        let p = price.units() as i128;
        let d = side.sign() as i128 * qty.units() as i128;
        let q = self.qty.units() as i128;
        if q == 0 || q.signum() == d.signum() {
            if q == 0 {
                self.opened_ms = ts_ms;
            }
            self.cost += p * d;
            self.qty = Qty::from_units((q + d) as i64);
        } else {
            let closing = d.abs().min(q.abs());
            let removed = if closing == q.abs() {
                self.cost
            } else {
                round_div(self.cost * closing, q.abs())
            };
            self.realized += q.signum() * p * closing - removed;
            self.cost -= removed;
            let rest = d.abs() - closing;
            let new_q = q + d.signum() * closing;
            if rest > 0 {
                // Flipped through zero: the remainder opens a fresh position at this price.
                self.opened_ms = ts_ms;
                self.cost = p * d.signum() * rest;
                self.qty = Qty::from_units((d.signum() * rest) as i64);
            } else {
                self.qty = Qty::from_units(new_q as i64);
            }
        }
        self.realized() - before
    }

    /// The journal record of this position, on `market`.
    pub fn update(
        &self,
        ts_ms: TimestampMs,
        symbol: Symbol,
        mode: StrategyMode,
        market: Market,
    ) -> PositionUpdate {
        PositionUpdate {
            ts_ms,
            symbol,
            market,
            mode,
            qty: self.qty,
            entry_price: self.entry_price(),
            realized_pnl: self.realized(),
            fees: self.fees,
            funding: self.funding,
        }
    }
}

/// All positions, indexed by (symbol index, mode). Allocated once.
#[derive(Debug, Clone)]
pub struct Positions {
    slots: Vec<Position>,
    nsym: usize,
}

impl Positions {
    /// Flat positions for `nsym` symbols × 4 modes.
    pub fn new(nsym: usize) -> Self {
        Self {
            slots: vec![Position::default(); nsym * StrategyMode::ALL.len()],
            nsym,
        }
    }
    /// Number of symbols.
    pub fn symbols(&self) -> usize {
        self.nsym
    }
    /// The position of (symbol index, mode). Panics only on an out-of-range symbol index (a caller bug).
    #[inline]
    pub fn get(&self, sym: usize, mode: StrategyMode) -> &Position {
        &self.slots[sym * StrategyMode::ALL.len() + mode.index()]
    }
    /// Mutable access (see [`Positions::get`]).
    #[inline]
    pub fn get_mut(&mut self, sym: usize, mode: StrategyMode) -> &mut Position {
        &mut self.slots[sym * StrategyMode::ALL.len() + mode.index()]
    }
    /// Net size of a symbol across modes (what the exchange sees in one-way mode).
    #[inline]
    pub fn net_qty(&self, sym: usize) -> Qty {
        StrategyMode::ALL
            .iter()
            .fold(Qty::ZERO, |a, m| a + self.get(sym, *m).qty())
    }
    /// Σ realized PnL − Σ fees + Σ funding over everything.
    pub fn total_net_realized(&self) -> Notional {
        self.slots.iter().fold(Notional::ZERO, |a, p| {
            a + p.realized() - p.fees() + p.funding()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(v: i64) -> Price {
        Price::from_int(v)
    }
    fn q(v: &str) -> Qty {
        Qty::parse(v).unwrap()
    }

    #[test]
    fn average_entry_partial_close_and_flip() {
        let mut pos = Position::default();
        pos.apply_fill(Side::Buy, p(100), q("1"), Notional::ZERO, 1);
        pos.apply_fill(Side::Buy, p(110), q("1"), Notional::ZERO, 2);
        assert_eq!(pos.entry_price(), p(105));
        assert_eq!(pos.opened_ms(), 1);
        assert_eq!(pos.unrealized(p(120)), Notional::from_int(30));
        let r = pos.apply_fill(Side::Sell, p(120), q("0.5"), Notional::ZERO, 3);
        assert_eq!(r, Notional::parse("7.5").unwrap());
        assert_eq!(pos.qty(), q("1.5"));
        assert_eq!(pos.entry_price(), p(105));
        // Flip: sell 2.5 at 90 closes 1.5 (loss 22.5) and opens 1 short at 90.
        let r = pos.apply_fill(
            Side::Sell,
            p(90),
            q("2.5"),
            Notional::parse("0.1").unwrap(),
            4,
        );
        assert_eq!(r, Notional::parse("-22.5").unwrap());
        assert_eq!(pos.qty(), q("-1"));
        assert_eq!(pos.entry_price(), p(90));
        assert_eq!(pos.opened_ms(), 4);
        assert_eq!(pos.unrealized(p(80)), Notional::from_int(10));
        assert_eq!(pos.realized(), Notional::from_int(-15));
        assert_eq!(pos.fees(), Notional::parse("0.1").unwrap());
        let u = pos.update(
            5,
            Symbol::new("BTCUSDT").unwrap(),
            StrategyMode::Scalp,
            Market::Futures,
        );
        let back = Position::restore(&u);
        assert_eq!(back.qty(), pos.qty());
        assert_eq!(back.realized(), pos.realized());
        assert_eq!(back.unrealized(p(80)), pos.unrealized(p(80)));
    }

    #[test]
    fn thirds_stay_exact_in_total() {
        let mut pos = Position::default();
        pos.apply_fill(
            Side::Buy,
            Price::parse("100.01").unwrap(),
            q("0.003"),
            Notional::ZERO,
            0,
        );
        let mut sum = Notional::ZERO;
        for _ in 0..3 {
            sum += pos.apply_fill(
                Side::Sell,
                Price::parse("100.02").unwrap(),
                q("0.001"),
                Notional::ZERO,
                0,
            );
        }
        assert!(pos.is_flat());
        assert_eq!(sum, Notional::parse("0.00003").unwrap());
        assert_eq!(sum, pos.realized());
    }

    #[test]
    fn a_flip_shares_its_fee_between_the_closed_and_the_new_trade() {
        let mut pos = Position::default();
        pos.apply(Side::Buy, p(100), q("1"), Notional::from_int(1), 1);
        // Sell 4: 1 closes the long (+10), 3 open a short; the 4 USD fee is 1 for the close, 3 for the open.
        let r = pos.apply(Side::Sell, p(110), q("4"), Notional::from_int(4), 2);
        assert_eq!(r.realized, Notional::from_int(10));
        assert_eq!(r.closed_trade, Some(Notional::from_int(10 - 1 - 1)));
        // The short's own result includes the 3 USD of opening fee: closed flat at its entry, it lost exactly that.
        let r = pos.apply(Side::Buy, p(110), q("3"), Notional::ZERO, 3);
        assert_eq!(r.closed_trade, Some(Notional::from_int(-3)));
        assert_eq!(pos.fees(), Notional::from_int(5));
    }

    proptest! {
        /// A spot base-asset fee leaves a long smaller by exactly the fee (never below zero), at the same average
        /// entry (to rounding of 10⁻⁸), realizing nothing; selling the rest then closes the position to zero cost.
        #[test]
        fn a_base_fee_shrinks_the_long_at_its_entry_and_realizes_nothing(
            buys in proptest::collection::vec((1i64..10_000_000_000, 1i64..100_000_000_000), 1..6),
            fee_bp in 0i64..100,
            exit in 1i64..100_000_000_000,
        ) {
            let mut pos = Position::default();
            for (q, px) in &buys {
                let q = Qty::from_units(*q);
                pos.apply_fill(Side::Buy, Price::from_units(*px), q, Notional::ZERO, 1);
                let fee = Qty::from_units(q.units() * fee_bp / 10_000);
                let (before_q, before_e, before_r) = (pos.qty(), pos.entry_price(), pos.realized());
                pos.deduct_held(fee);
                prop_assert_eq!(pos.qty(), before_q - fee);
                prop_assert!(pos.qty().units() >= 0);
                prop_assert_eq!(pos.realized(), before_r);
                if !pos.is_flat() {
                    prop_assert!((pos.entry_price().units() - before_e.units()).abs() <= 1);
                }
            }
            let left = pos.qty();
            if left.units() > 0 {
                pos.apply_fill(Side::Sell, Price::from_units(exit), left, Notional::ZERO, 2);
            }
            prop_assert!(pos.is_flat());
            prop_assert_eq!(pos.cost, 0);
            // More than the holding is clamped, and a flat position is left alone.
            pos.deduct_held(Qty::ONE);
            prop_assert!(pos.is_flat());
        }

        /// Closed trades and the open one together carry every fee and every realized unit, whatever flips occur.
        #[test]
        fn trade_results_add_up_to_realized_minus_fees(
            fills in proptest::collection::vec((any::<bool>(), 1i64..2_000_000_000_000, 1i64..1_000_000_000, 0i64..10_000_000_000), 1..40),
        ) {
            let mut pos = Position::default();
            let mut closed = Notional::ZERO;
            for (buy, price, qty, fee) in fills {
                let side = if buy { Side::Buy } else { Side::Sell };
                let r = pos.apply(side, Price::from_units(price), Qty::from_units(qty), Notional::from_units(fee), 0);
                closed += r.closed_trade.unwrap_or(Notional::ZERO);
                prop_assert_eq!(closed + pos.trade_net, pos.realized() - pos.fees());
            }
        }

        #[test]
        fn realized_plus_unrealized_matches_cash_flow(
            fills in proptest::collection::vec((any::<bool>(), 1i64..2_000_000_000_000, 1i64..1_000_000_000), 1..40),
            mark in 1i64..2_000_000_000_000,
        ) {
            let mut pos = Position::default();
            let mut cash: i128 = 0;
            let mut sum_fill_realized = Notional::ZERO;
            let mut net: i64 = 0;
            for (buy, price, qty) in fills {
                let side = if buy { Side::Buy } else { Side::Sell };
                let (pr, qt) = (Price::from_units(price), Qty::from_units(qty));
                sum_fill_realized += pos.apply_fill(side, pr, qt, Notional::ZERO, 0);
                cash -= side.sign() as i128 * price as i128 * qty as i128;
                net += side.sign() * qty;
                prop_assert_eq!(pos.qty().units(), net);
                prop_assert_eq!(sum_fill_realized, pos.realized());
                let equity = to_notional(cash + mark as i128 * net as i128);
                let ours = pos.realized() + pos.unrealized(Price::from_units(mark));
                prop_assert!((ours - equity).units().abs() <= 1, "{:?} vs {:?}", ours, equity);
                if net == 0 {
                    prop_assert_eq!(pos.realized(), to_notional(cash));
                    prop_assert_eq!(pos.unrealized(Price::from_units(mark)), Notional::ZERO);
                }
            }
        }
    }
}
