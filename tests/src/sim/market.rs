//! The simulated market: a price source (behind [`PriceSource`]) drives each symbol's top of book, and a
//! [`Book`] adds synthetic depth below the top that takers consume and resting orders are matched against.

use super::symbols::SymbolSpec;
use aegis_shared::num::{Price, Qty};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

/// A new top of book for a symbol.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    /// Symbol (upper case).
    pub symbol: String,
    /// Best bid.
    pub bid: Price,
    /// Quantity at the best bid.
    pub bid_qty: Qty,
    /// Best ask.
    pub ask: Price,
    /// Quantity at the best ask.
    pub ask_qty: Qty,
}

/// A public trade of the simulated market (published as aggTrade).
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    /// Symbol.
    pub symbol: String,
    /// Price.
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
    /// The buyer was the maker (a sell aggressor).
    pub buyer_maker: bool,
}

/// What a price source produces.
#[derive(Debug, Clone, PartialEq)]
pub enum MarketEvent {
    /// New top of book.
    Quote(Quote),
    /// A trade.
    Trade(Trade),
}

/// Anything that moves the simulated market. The simulator calls `step` every tick.
pub trait PriceSource: Send {
    /// Advances one tick, appending what happened to `out`.
    fn step(&mut self, now_ms: u64, out: &mut Vec<MarketEvent>);
}

/// A seeded random walk of the mid price, a spread of one or two ticks and random top quantities.
pub struct RandomWalk {
    rng: StdRng,
    state: Vec<(SymbolSpec, Price)>,
}

impl RandomWalk {
    /// A walk over `symbols` starting at their `start_price`, deterministic for a seed.
    pub fn new(symbols: &[SymbolSpec], seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            state: symbols.iter().map(|s| (s.clone(), s.start_price)).collect(),
        }
    }
}

impl PriceSource for RandomWalk {
    fn step(&mut self, _now_ms: u64, out: &mut Vec<MarketEvent>) {
        for (spec, mid) in self.state.iter_mut() {
            let ticks: i64 = self.rng.gen_range(-3..=3);
            let tick = spec.tick.units();
            let floor = spec.min_price.units() * 2;
            let next = (mid.units() + ticks * tick).max(floor);
            *mid = Price::from_units(next - next.rem_euclid(tick));
            let spread = self.rng.gen_range(1..=2);
            let bid = Price::from_units(mid.units() - tick * (spread / 2));
            let ask = Price::from_units(bid.units() + tick * spread.max(1));
            let step = spec.step.units();
            let bid_qty = Qty::from_units(step * self.rng.gen_range(100..2000));
            let ask_qty = Qty::from_units(step * self.rng.gen_range(100..2000));
            out.push(MarketEvent::Quote(Quote {
                symbol: spec.symbol.clone(),
                bid,
                bid_qty,
                ask,
                ask_qty,
            }));
            if self.rng.gen_bool(0.5) {
                let buyer_maker = self.rng.gen_bool(0.5);
                out.push(MarketEvent::Trade(Trade {
                    symbol: spec.symbol.clone(),
                    price: if buyer_maker { bid } else { ask },
                    qty: Qty::from_units(step * self.rng.gen_range(1..50)),
                    buyer_maker,
                }));
            }
        }
    }
}

/// A source that never moves: the book only changes through the admin API (deterministic tests).
pub struct Frozen;

impl PriceSource for Frozen {
    fn step(&mut self, _now_ms: u64, _out: &mut Vec<MarketEvent>) {}
}

/// Number of synthetic levels on each side.
pub const DEPTH_LEVELS: usize = 20;

/// One symbol's book: the top from the source plus synthetic depth, minus what takers consumed since the top
/// last changed.
#[derive(Debug, Clone)]
pub struct Book {
    /// Spec of the symbol.
    pub spec: SymbolSpec,
    /// Best bid.
    pub bid: Price,
    /// Qty at best bid.
    pub bid_qty: Qty,
    /// Best ask.
    pub ask: Price,
    /// Qty at best ask.
    pub ask_qty: Qty,
    /// Depth update id (`u` of the depth stream, `lastUpdateId` of the snapshot).
    pub update_id: u64,
    /// Set by the admin API: the source's quotes are ignored until released.
    pub pinned: bool,
    /// Last trade price (for aggTrade / tickers).
    pub last_price: Price,
    consumed: HashMap<i64, Qty>,
}

impl Book {
    /// A book around the symbol's start price.
    pub fn new(spec: SymbolSpec) -> Self {
        let tick = spec.tick.units();
        let mid = spec.start_price.units();
        let q = Qty::from_units(spec.step.units() * 1000);
        Self {
            bid: Price::from_units(mid - tick),
            ask: Price::from_units(mid),
            bid_qty: q,
            ask_qty: q,
            update_id: 1,
            pinned: false,
            last_price: spec.start_price,
            consumed: HashMap::new(),
            spec,
        }
    }

    /// Applies a new top of book. Consumed liquidity is forgotten: the market refilled.
    pub fn set_quote(&mut self, q: &Quote) {
        self.bid = q.bid;
        self.bid_qty = q.bid_qty;
        self.ask = q.ask;
        self.ask_qty = q.ask_qty;
        self.consumed.clear();
        self.update_id += 1;
    }

    /// Mark price: the mid.
    pub fn mark(&self) -> Price {
        Price::mid(self.bid, self.ask).floor_to(self.spec.tick)
    }

    fn level_qty(&self, top: Qty, i: usize) -> Qty {
        if i == 0 {
            top
        } else {
            Qty::from_units(self.spec.step.units() * 500 * (i as i64 + 1))
        }
    }

    /// Levels on one side, best first, net of consumed liquidity (`asks` = the side a buyer takes).
    pub fn levels(&self, asks: bool) -> Vec<(Price, Qty)> {
        let tick = self.spec.tick.units();
        (0..DEPTH_LEVELS)
            .filter_map(|i| {
                let (px, top) = if asks {
                    (self.ask.units() + tick * i as i64, self.ask_qty)
                } else {
                    (self.bid.units() - tick * i as i64, self.bid_qty)
                };
                if px <= 0 {
                    return None;
                }
                let full = self.level_qty(top, i);
                let used = self.consumed.get(&px).copied().unwrap_or(Qty::ZERO);
                let left = full - used;
                (left.units() > 0).then_some((Price::from_units(px), left))
            })
            .collect()
    }

    /// Quantity a taker on `buy` side could get at prices no worse than `limit` (None = any).
    pub fn available(&self, buy: bool, limit: Option<Price>) -> Qty {
        self.levels(buy)
            .into_iter()
            .filter(|(p, _)| within(buy, *p, limit))
            .fold(Qty::ZERO, |a, (_, q)| a + q)
    }

    /// Takes up to `qty` for a taker, best prices first, no worse than `limit`; returns the fills.
    pub fn take(&mut self, buy: bool, limit: Option<Price>, qty: Qty) -> Vec<(Price, Qty)> {
        let mut left = qty;
        let mut fills = Vec::new();
        for (p, avail) in self.levels(buy) {
            if left.is_zero() || !within(buy, p, limit) {
                break;
            }
            let q = left.min(avail);
            *self.consumed.entry(p.units()).or_insert(Qty::ZERO) += q;
            left -= q;
            fills.push((p, q));
        }
        fills
    }

    /// Consumes liquidity at levels up to `limit` for a resting order the market moved through (maker fill at
    /// its own price). Returns how much was available.
    pub fn take_for_maker(&mut self, buy: bool, limit: Price, qty: Qty) -> Qty {
        self.take(buy, Some(limit), qty)
            .into_iter()
            .fold(Qty::ZERO, |a, (_, q)| a + q)
    }
}

fn within(buy: bool, p: Price, limit: Option<Price>) -> bool {
    match limit {
        None => true,
        Some(l) => {
            if buy {
                p <= l
            } else {
                p >= l
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_walk_is_seeded_and_stays_on_ticks() {
        let specs = SymbolSpec::defaults();
        let mut a = RandomWalk::new(&specs, 7);
        let mut b = RandomWalk::new(&specs, 7);
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        for t in 0..200 {
            a.step(t, &mut ea);
            b.step(t, &mut eb);
        }
        assert_eq!(ea, eb);
        for e in &ea {
            if let MarketEvent::Quote(q) = e {
                let spec = specs.iter().find(|s| s.symbol == q.symbol).unwrap();
                assert!(q.bid < q.ask);
                assert!(q.bid.is_multiple_of(spec.tick) && q.ask.is_multiple_of(spec.tick));
            }
        }
    }

    #[test]
    fn takers_walk_the_synthetic_depth_and_consume_it() {
        let mut b = Book::new(SymbolSpec::btcusdt());
        b.set_quote(&Quote {
            symbol: "BTCUSDT".into(),
            bid: Price::parse("59999.9").unwrap(),
            bid_qty: Qty::parse("0.2").unwrap(),
            ask: Price::parse("60000").unwrap(),
            ask_qty: Qty::parse("0.2").unwrap(),
        });
        let fills = b.take(true, None, Qty::parse("0.5").unwrap());
        assert_eq!(
            fills,
            vec![
                (Price::parse("60000").unwrap(), Qty::parse("0.2").unwrap()),
                (Price::parse("60000.1").unwrap(), Qty::parse("0.3").unwrap()),
            ]
        );
        // The top is gone until the quote changes.
        assert_eq!(b.levels(true)[0].0, Price::parse("60000.1").unwrap());
        assert_eq!(
            b.available(true, Some(Price::parse("60000").unwrap())),
            Qty::ZERO
        );
        assert_eq!(
            b.available(false, Some(Price::parse("59999.9").unwrap())),
            Qty::parse("0.2").unwrap()
        );
    }
}
