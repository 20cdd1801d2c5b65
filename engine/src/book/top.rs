//! Best bid/ask per symbol, from bookTicker messages.

use crate::feed::parse::BookTicker;
use aegis_shared::{Price, Qty};

/// Best bid/ask of one symbol. `Copy`, updated in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopOfBook {
    /// Best bid (zero until the first update).
    pub bid: Price,
    /// Size at the best bid.
    pub bid_qty: Qty,
    /// Best ask (zero until the first update).
    pub ask: Price,
    /// Size at the best ask.
    pub ask_qty: Qty,
    /// Last applied update id `u`.
    pub update_id: u64,
    /// Event time of the last update, ms.
    pub event_time: u64,
}

impl TopOfBook {
    /// Applies a bookTicker. Returns `false` (and changes nothing) for an out-of-order update (smaller `u` than
    /// the last applied one) or a crossed/empty quote.
    #[inline]
    pub fn update(&mut self, t: &BookTicker) -> bool {
        if t.update_id < self.update_id || t.bid.units() <= 0 || t.ask <= t.bid {
            return false;
        }
        *self = Self {
            bid: t.bid,
            bid_qty: t.bid_qty,
            ask: t.ask,
            ask_qty: t.ask_qty,
            update_id: t.update_id,
            event_time: t.event_time,
        };
        true
    }

    /// True once both sides are known.
    #[inline]
    pub fn is_valid(&self) -> bool {
        self.bid.units() > 0 && self.ask > self.bid
    }

    /// Mid price (the mark used for unrealized PnL). Zero before the first update.
    #[inline]
    pub fn mid(&self) -> Price {
        Price::mid(self.bid, self.ask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_shared::Symbol;

    fn bt(u: u64, b: i64, a: i64) -> BookTicker {
        BookTicker {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            update_id: u,
            event_time: u * 10,
            tx_time: 0,
            bid: Price::from_int(b),
            bid_qty: Qty::ONE,
            ask: Price::from_int(a),
            ask_qty: Qty::ONE,
        }
    }

    #[test]
    fn applies_in_order_and_refuses_stale_or_crossed() {
        let mut t = TopOfBook::default();
        assert!(!t.is_valid());
        assert!(t.update(&bt(5, 100, 102)));
        assert_eq!(t.mid(), Price::from_int(101));
        assert!(!t.update(&bt(4, 90, 91)), "older update id");
        assert!(!t.update(&bt(6, 103, 102)), "crossed");
        assert!(t.update(&bt(6, 101, 102)));
        assert_eq!(t.bid, Price::from_int(101));
        assert_eq!(t.event_time, 60);
    }
}
