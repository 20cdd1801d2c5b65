//! Stop-loss, take-profit and maximum holding time shared by the modes of `ultra_fast`, `swing` and `position`.
//!
//! Levels are computed exactly: `entry × (1 ∓ rate)` in integer units of 10⁻⁸, so the exit decision never
//! depends on float rounding.

use super::{PosView, Signal};
use crate::book::TopOfBook;
use aegis_shared::event::{OrderIntent, TimestampMs};
use aegis_shared::num::{Notional, Price, Qty, Rate};
use aegis_shared::Side;

/// A mode's exit rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitRules {
    /// Stop-loss distance as a fraction of the entry price (0.02 = 2 %).
    pub stop_loss: Rate,
    /// Take-profit distance as a fraction of the entry price.
    pub take_profit: Rate,
    /// Longest time a position is held, ms.
    pub max_hold_ms: u64,
}

/// The position a mode holds in one symbol, as the engine's fills reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Long (`Buy`) or short (`Sell`).
    pub side: Side,
    /// Average entry price.
    pub entry: Price,
    /// When it was opened (ms).
    pub opened_ms: TimestampMs,
}

#[inline]
fn offset(entry: Price, rate: Rate) -> i64 {
    Notional::from_units(entry.units()).mul_rate(rate).units()
}

impl ExitRules {
    /// The stop price for a position.
    #[inline]
    pub fn stop_price(&self, h: &Held) -> Price {
        let d = offset(h.entry, self.stop_loss);
        Price::from_units(match h.side {
            Side::Buy => h.entry.units() - d,
            Side::Sell => h.entry.units() + d,
        })
    }

    /// The take-profit price for a position.
    #[inline]
    pub fn target_price(&self, h: &Held) -> Price {
        let d = offset(h.entry, self.take_profit);
        Price::from_units(match h.side {
            Side::Buy => h.entry.units() + d,
            Side::Sell => h.entry.units() - d,
        })
    }

    /// Which exit (if any) the price `px` at `now` calls for. The stop wins over the target and the time limit.
    #[inline]
    pub fn check(&self, h: &Held, px: Price, now: TimestampMs) -> Option<OrderIntent> {
        let (stop, target) = (self.stop_price(h), self.target_price(h));
        let (hit_stop, hit_target) = match h.side {
            Side::Buy => (px <= stop, px >= target),
            Side::Sell => (px >= stop, px <= target),
        };
        if hit_stop {
            Some(OrderIntent::StopLoss)
        } else if hit_target {
            Some(OrderIntent::TakeProfit)
        } else if now.saturating_sub(h.opened_ms) >= self.max_hold_ms {
            Some(OrderIntent::MaxHold)
        } else {
            None
        }
    }
}

/// The held position of a [`PosView`], if any.
#[inline]
pub fn held_of(pos: &PosView) -> Option<Held> {
    let q = pos.qty.units();
    (q != 0).then_some(Held {
        side: if q > 0 { Side::Buy } else { Side::Sell },
        entry: pos.entry,
        opened_ms: pos.opened_ms,
    })
}

/// A reduce-only market order closing the whole position.
#[inline]
pub fn exit_order(pos: &PosView, intent: OrderIntent) -> Signal {
    Signal {
        side: if pos.qty.units() > 0 {
            Side::Sell
        } else {
            Side::Buy
        },
        intent,
        qty: pos.qty.abs(),
        reduce_only: true,
    }
}

/// An entry of `notional` USD at the touch the order would take, floored to the step (`None` if that is zero
/// or the book is not valid).
#[inline]
pub fn entry_order(side: Side, notional: Notional, top: &TopOfBook, step: Qty) -> Option<Signal> {
    if !top.is_valid() {
        return None;
    }
    let touch = match side {
        Side::Buy => top.ask,
        Side::Sell => top.bid,
    };
    let qty = notional.qty_at(touch, step)?;
    (qty.units() > 0).then_some(Signal {
        side,
        intent: OrderIntent::Entry,
        qty,
        reduce_only: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_exact_and_side_aware() {
        let r = ExitRules {
            stop_loss: Rate::parse("0.02").unwrap(),
            take_profit: Rate::parse("0.05").unwrap(),
            max_hold_ms: 1000,
        };
        let long = Held {
            side: Side::Buy,
            entry: Price::parse("1.2345").unwrap(),
            opened_ms: 0,
        };
        assert_eq!(r.stop_price(&long), Price::parse("1.20981").unwrap());
        assert_eq!(r.target_price(&long), Price::parse("1.296225").unwrap());
        assert_eq!(
            r.check(&long, Price::parse("1.20981").unwrap(), 1),
            Some(OrderIntent::StopLoss)
        );
        assert_eq!(r.check(&long, Price::parse("1.20982").unwrap(), 1), None);
        assert_eq!(
            r.check(&long, Price::parse("1.3").unwrap(), 1),
            Some(OrderIntent::TakeProfit)
        );
        assert_eq!(
            r.check(&long, Price::parse("1.25").unwrap(), 1000),
            Some(OrderIntent::MaxHold)
        );
        let short = Held {
            side: Side::Sell,
            ..long
        };
        assert_eq!(
            r.check(&short, Price::parse("1.26").unwrap(), 1),
            Some(OrderIntent::StopLoss)
        );
        assert_eq!(
            r.check(&short, Price::parse("1.17").unwrap(), 1),
            Some(OrderIntent::TakeProfit)
        );
    }
}
