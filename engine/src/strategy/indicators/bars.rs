//! OHLCV bars: built from trades by event time, taken from kline stream messages ([`Bar::from_kline`]; the
//! feed parser reads them), or aggregated from smaller
//! bars (e.g. 5-minute klines into 15-minute or 4-hour bars). Prices stay exact; indicators read them as `f64`.

use crate::feed::parse::Kline;
use aegis_shared::event::TimestampMs;
use aegis_shared::num::{Price, Qty};

/// One bar. Times are Binance-style: `open_ms` is the bucket start, `close_ms` the bucket's last millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// Bucket start (ms since epoch).
    pub open_ms: TimestampMs,
    /// Last millisecond of the bucket.
    pub close_ms: TimestampMs,
    /// First price.
    pub open: Price,
    /// Highest price.
    pub high: Price,
    /// Lowest price.
    pub low: Price,
    /// Last price.
    pub close: Price,
    /// Traded base quantity.
    pub volume: Qty,
    /// Number of trades (0 when the source does not say).
    pub trades: u32,
}

impl Bar {
    /// A kline (from a `<symbol>@kline_<interval>` stream) as a bar. Only closed klines (`k.x`) should be fed
    /// to indicators; an open one is still changing.
    #[inline]
    pub fn from_kline(k: &Kline) -> Self {
        Self {
            open_ms: k.start_time,
            close_ms: k.close_time,
            open: k.open,
            high: k.high,
            low: k.low,
            close: k.close,
            volume: k.volume,
            trades: k.trades.min(u32::MAX as u64) as u32,
        }
    }

    /// Close as `f64` (for indicators only).
    #[inline]
    pub fn close_f64(&self) -> f64 {
        self.close.to_f64_lossy()
    }
    /// High as `f64` (for indicators only).
    #[inline]
    pub fn high_f64(&self) -> f64 {
        self.high.to_f64_lossy()
    }
    /// Low as `f64` (for indicators only).
    #[inline]
    pub fn low_f64(&self) -> f64 {
        self.low.to_f64_lossy()
    }
}

/// Builds fixed-interval bars. Buckets are aligned to the epoch (`ts - ts % interval`), like Binance klines.
/// Intervals without any trade produce no bar (the next bar simply starts later).
#[derive(Debug, Clone, Copy)]
pub struct BarBuilder {
    interval_ms: u64,
    cur: Option<Bar>,
}

impl BarBuilder {
    /// A builder for `interval_ms` bars (at least 1 ms).
    pub fn new(interval_ms: u64) -> Self {
        Self {
            interval_ms: interval_ms.max(1),
            cur: None,
        }
    }

    /// The bar length.
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }

    /// The bar being built, if any.
    pub fn current(&self) -> Option<&Bar> {
        self.cur.as_ref()
    }

    #[inline]
    fn bucket(&self, ts: TimestampMs) -> TimestampMs {
        ts - ts % self.interval_ms
    }

    /// Adds a trade at event time `ts_ms`. Returns the previous bar when this trade opens a later bucket.
    /// A trade older than the current bucket (out of order) is folded into the current bar's range and volume
    /// without moving its close.
    #[inline]
    pub fn on_trade(&mut self, ts_ms: TimestampMs, price: Price, qty: Qty) -> Option<Bar> {
        let b = self.bucket(ts_ms);
        match &mut self.cur {
            Some(c) if b == c.open_ms => {
                c.high = c.high.max(price);
                c.low = c.low.min(price);
                c.close = price;
                c.volume += qty;
                c.trades = c.trades.saturating_add(1);
                None
            }
            Some(c) if b < c.open_ms => {
                c.high = c.high.max(price);
                c.low = c.low.min(price);
                c.volume += qty;
                c.trades = c.trades.saturating_add(1);
                None
            }
            _ => {
                let done = self.cur.take();
                self.cur = Some(Bar {
                    open_ms: b,
                    close_ms: b + self.interval_ms - 1,
                    open: price,
                    high: price,
                    low: price,
                    close: price,
                    volume: qty,
                    trades: 1,
                });
                done
            }
        }
    }

    /// Closes the current bar if event time `now_ms` is past its bucket (so a quiet market does not hold a
    /// finished bar back until the next trade).
    #[inline]
    pub fn on_time(&mut self, now_ms: TimestampMs) -> Option<Bar> {
        match self.cur {
            Some(c) if now_ms > c.close_ms => self.cur.take(),
            _ => None,
        }
    }

    /// Returns the current bar, finished or not, and starts afresh (end of a finite input).
    pub fn flush(&mut self) -> Option<Bar> {
        self.cur.take()
    }

    /// Adds a smaller finished bar (a closed kline, or a bar of a shorter builder). Returns up to two finished
    /// bars: the previous bucket's if `bar` starts a later bucket (a gap in the input), and this bucket's if
    /// `bar` completes it.
    #[inline]
    pub fn on_bar(&mut self, bar: &Bar) -> [Option<Bar>; 2] {
        let b = self.bucket(bar.open_ms);
        let mut out = [None, None];
        match &mut self.cur {
            Some(c) if b <= c.open_ms => {
                c.high = c.high.max(bar.high);
                c.low = c.low.min(bar.low);
                if b == c.open_ms {
                    c.close = bar.close;
                }
                c.volume += bar.volume;
                c.trades = c.trades.saturating_add(bar.trades);
            }
            _ => {
                out[0] = self.cur.take();
                self.cur = Some(Bar {
                    open_ms: b,
                    close_ms: b + self.interval_ms - 1,
                    ..*bar
                });
            }
        }
        if let Some(c) = self.cur {
            if bar.close_ms >= c.close_ms {
                out[1] = self.cur.take();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Price {
        Price::parse(s).unwrap()
    }

    #[test]
    fn trades_make_bars_by_event_time() {
        let mut b = BarBuilder::new(60_000);
        assert_eq!(b.on_trade(60_000, p("10"), Qty::ONE), None);
        assert_eq!(b.on_trade(60_500, p("12"), Qty::ONE), None);
        assert_eq!(b.on_trade(119_999, p("9"), Qty::ONE), None);
        assert_eq!(b.on_time(119_999), None);
        let done = b.on_time(120_000).unwrap();
        assert_eq!(
            (done.open, done.high, done.low, done.close),
            (p("10"), p("12"), p("9"), p("9"))
        );
        assert_eq!(done.volume, Qty::from_int(3));
        assert_eq!(done.trades, 3);
        assert_eq!(b.on_trade(300_001, p("11"), Qty::ONE), None);
        assert_eq!(b.flush().unwrap().open_ms, 300_000);
    }

    #[test]
    fn small_bars_aggregate_into_large_ones() {
        let mut agg = BarBuilder::new(900_000);
        let mk = |i: u64, c: &str| Bar {
            open_ms: i * 300_000,
            close_ms: i * 300_000 + 299_999,
            open: p(c),
            high: p(c),
            low: p(c),
            close: p(c),
            volume: Qty::ONE,
            trades: 1,
        };
        assert_eq!(agg.on_bar(&mk(0, "1")), [None, None]);
        assert_eq!(agg.on_bar(&mk(1, "3")), [None, None]);
        let [a, b] = agg.on_bar(&mk(2, "2"));
        assert_eq!(a, None);
        let b = b.unwrap();
        assert_eq!(
            (b.open, b.high, b.low, b.close),
            (p("1"), p("3"), p("1"), p("2"))
        );
        assert_eq!(
            (b.open_ms, b.close_ms, b.volume),
            (0, 899_999, Qty::from_int(3))
        );
        // A gap: bar 4 starts the next bucket while bar 3 alone is still open.
        assert_eq!(agg.on_bar(&mk(3, "5")), [None, None]);
        let [a, b] = agg.on_bar(&mk(7, "6"));
        assert_eq!(a.unwrap().open_ms, 900_000);
        assert_eq!(b, None);
    }
}
