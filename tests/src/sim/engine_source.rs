//! The engine's simulated market (`aegis_engine::feed::sim::SimMarket`) as the simulator's price source, so the
//! bot's offline market and the simulator's book move the same way.

use super::market::{MarketEvent, PriceSource, Quote, Trade};
use super::symbols::SymbolSpec;
use aegis_engine::feed::sim::{SimConfig as MarketConfig, SimError, SimMarket, SimSymbol, SimTop};
use aegis_shared::num::{Price, Qty};
use aegis_shared::Symbol;
use std::collections::HashMap;

/// Drives the books from `SimMarket`: each tick generates a batch of its messages, publishes its trades as
/// trades and the resulting top of book of each symbol as a quote.
pub struct EngineMarket {
    market: SimMarket,
    per_tick: usize,
    names: Vec<(Symbol, String)>,
    last: HashMap<Symbol, SimTop>,
}

impl EngineMarket {
    /// A generator over `specs` (built-in dynamics for BTCUSDT/ETHUSDT, ETH-like ones for others) that
    /// produces `per_tick` messages every `tick_ms`, in market time that runs at wall speed.
    pub fn new(
        specs: &[SymbolSpec],
        seed: u64,
        tick_ms: u64,
        per_tick: usize,
    ) -> Result<Self, SimError> {
        let mut symbols = Vec::new();
        let mut names = Vec::new();
        for s in specs {
            let Ok(sym) = Symbol::new(&s.symbol) else {
                continue;
            };
            let mut m = SimSymbol::builtin(sym).unwrap_or_else(SimSymbol::ethusdt);
            m.symbol = sym;
            m.tick = s.tick;
            m.step = s.step;
            m.start_price = s.start_price.floor_to(s.tick);
            symbols.push(m);
            names.push((sym, s.symbol.clone()));
        }
        let per_tick = per_tick.max(1);
        let mut cfg = MarketConfig::new(seed);
        cfg.symbols = symbols;
        cfg.rate = per_tick as f64 * 1000.0 / tick_ms.max(1) as f64;
        cfg.speed = 1.0;
        Ok(Self {
            market: SimMarket::new(cfg)?,
            per_tick,
            names,
            last: HashMap::new(),
        })
    }
}

fn field<'a>(v: &'a serde_json::Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(|x| x.as_str())
}

impl PriceSource for EngineMarket {
    fn step(&mut self, _now_ms: u64, out: &mut Vec<MarketEvent>) {
        for _ in 0..self.per_tick {
            let msg = self.market.next_message();
            // Only trades need reading back; quotes are taken from `top()` after the batch.
            if !msg.windows(10).any(|w| w == b"\"aggTrade\"") {
                continue;
            }
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(msg) else {
                continue;
            };
            let (Some(s), Some(p), Some(q)) = (field(&v, "s"), field(&v, "p"), field(&v, "q"))
            else {
                continue;
            };
            let (Ok(price), Ok(qty)) = (Price::parse(p), Qty::parse(q)) else {
                continue;
            };
            out.push(MarketEvent::Trade(Trade {
                symbol: s.to_string(),
                price,
                qty,
                buyer_maker: v.get("m").and_then(|m| m.as_bool()).unwrap_or(false),
            }));
        }
        for (sym, name) in &self.names {
            let Some(top) = self.market.top(*sym) else {
                continue;
            };
            if self.last.get(sym) == Some(&top) || top.bid >= top.ask {
                continue;
            }
            self.last.insert(*sym, top);
            out.push(MarketEvent::Quote(Quote {
                symbol: name.clone(),
                bid: top.bid,
                bid_qty: top.bid_qty,
                ask: top.ask,
                ask_qty: top.ask_qty,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drives_quotes_and_trades_on_the_grid() {
        let specs = SymbolSpec::defaults();
        let mut m = EngineMarket::new(&specs, 3, 100, 50).unwrap();
        let mut out = Vec::new();
        for t in 0..20 {
            m.step(t, &mut out);
        }
        let quotes = out
            .iter()
            .filter(|e| matches!(e, MarketEvent::Quote(_)))
            .count();
        let trades = out
            .iter()
            .filter(|e| matches!(e, MarketEvent::Trade(_)))
            .count();
        assert!(
            quotes >= 20 && trades > 50,
            "quotes {quotes} trades {trades}"
        );
        for e in &out {
            if let MarketEvent::Quote(q) = e {
                let spec = specs.iter().find(|s| s.symbol == q.symbol).unwrap();
                assert!(
                    q.bid < q.ask
                        && q.bid.is_multiple_of(spec.tick)
                        && q.ask.is_multiple_of(spec.tick)
                );
                assert!(q.bid_qty.is_multiple_of(spec.step));
            }
        }
    }
}
