//! `SimMarket`: a seeded, deterministic market generator speaking Binance USD-M futures wire format.
//!
//! It emits `bookTicker` and `aggTrade` JSON (exactly the futures payload shapes of binance-protocol.md §5) into
//! one reusable buffer, so producing a message never allocates after construction. The same seed and config
//! always produce the same bytes.
//!
//! Dynamics, per symbol:
//! - the fair price follows a geometric random walk whose volatility switches between a calm and a volatile
//!   regime (a two-state Markov chain in market time, mean regime lengths [`SimSymbol::calm_secs`] /
//!   [`SimSymbol::volatile_secs`]);
//! - the quoted spread is 1–3 ticks (wider in the volatile regime), best bid/ask are on the tick grid and their
//!   sizes on the step grid;
//! - each message is a trade with a fixed probability, so trade arrivals in market time are (approximately) a
//!   Poisson process; sizes are log-normal in steps; the aggressor side leans with the recent move (momentum);
//!   buys lift the ask, sells hit the bid.
//!
//! Market time is a simulated clock: every message advances it by `speed / rate` seconds, where `rate` is
//! messages per wall second and `speed` market seconds per wall second. Pacing against the wall clock is the
//! consumer's job (the engine does it; the generator itself never looks at a clock).

use crate::sign::Num;
use aegis_shared::num::{decimals_of, write_units};
use aegis_shared::{Price, Qty, Symbol};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One simulated instrument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimSymbol {
    /// Symbol.
    pub symbol: Symbol,
    /// Tick size (price grid).
    pub tick: Price,
    /// Step size (quantity grid).
    pub step: Qty,
    /// Starting price.
    pub start_price: Price,
    /// Calm-regime volatility as a fraction per √second (0.00008 ≈ 45 % a year).
    pub calm_vol: f64,
    /// Volatile-regime multiplier of `calm_vol`.
    pub volatile_mult: f64,
    /// Mean length of a calm regime, market seconds.
    pub calm_secs: f64,
    /// Mean length of a volatile regime, market seconds.
    pub volatile_secs: f64,
    /// Median trade size in steps.
    pub median_trade_steps: f64,
    /// Median best-level size in steps.
    pub median_level_steps: f64,
}

impl SimSymbol {
    /// BTCUSDT: tick 0.10, step 0.001, starting at 60,000.
    pub fn btcusdt() -> Self {
        Self {
            symbol: sym(b"BTCUSDT"),
            tick: Price::from_units(10_000_000),
            step: Qty::from_units(100_000),
            start_price: Price::from_int(60_000),
            calm_vol: 0.000_08,
            volatile_mult: 3.0,
            calm_secs: 900.0,
            volatile_secs: 180.0,
            median_trade_steps: 20.0,
            median_level_steps: 800.0,
        }
    }
    /// ETHUSDT: tick 0.01, step 0.001, starting at 3,000.
    pub fn ethusdt() -> Self {
        Self {
            symbol: sym(b"ETHUSDT"),
            tick: Price::from_units(1_000_000),
            step: Qty::from_units(100_000),
            start_price: Price::from_int(3_000),
            calm_vol: 0.000_1,
            volatile_mult: 3.0,
            calm_secs: 900.0,
            volatile_secs: 180.0,
            median_trade_steps: 400.0,
            median_level_steps: 15_000.0,
        }
    }
    /// The built-in instrument for a symbol name (BTCUSDT, ETHUSDT), if any.
    pub fn builtin(symbol: Symbol) -> Option<Self> {
        [Self::btcusdt(), Self::ethusdt()]
            .into_iter()
            .find(|s| s.symbol == symbol)
    }
}

fn sym(b: &[u8]) -> Symbol {
    // Invariant: the literals passed here are valid symbols.
    Symbol::from_bytes(b).unwrap_or_else(|_| unreachable!("built-in symbol literal"))
}

/// Generator settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// RNG seed.
    pub seed: u64,
    /// Messages per wall second (the consumer paces to it); also sets the market-time step with `speed`.
    pub rate: f64,
    /// Market seconds per wall second.
    pub speed: f64,
    /// Market time of the first message, ms since the epoch.
    pub start_ms: u64,
    /// Instruments (at least one).
    pub symbols: Vec<SimSymbol>,
    /// Probability that a message is a trade (the rest are bookTicker updates).
    pub trade_prob: f64,
}

impl SimConfig {
    /// BTCUSDT and ETHUSDT at 1000 messages/s, speed 1, from 2024-01-01T00:00:00Z.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            rate: 1000.0,
            speed: 1.0,
            start_ms: 1_704_067_200_000,
            symbols: vec![SimSymbol::btcusdt(), SimSymbol::ethusdt()],
            trade_prob: 0.35,
        }
    }
}

/// Best bid/ask of a simulated symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimTop {
    /// Best bid.
    pub bid: Price,
    /// Size at the best bid.
    pub bid_qty: Qty,
    /// Best ask.
    pub ask: Price,
    /// Size at the best ask.
    pub ask_qty: Qty,
}

#[derive(Debug, Clone)]
struct SymState {
    spec: SimSymbol,
    price_dec: u32,
    qty_dec: u32,
    fair: f64,
    volatile: bool,
    last_ns: u64,
    momentum: f64,
    bid_ticks: i64,
    spread_ticks: i64,
    bid_qty_steps: i64,
    ask_qty_steps: i64,
    update_id: u64,
    agg_id: u64,
    trade_id: u64,
}

/// The simulated market. See the module docs.
#[derive(Debug, Clone)]
pub struct SimMarket {
    rng: ChaCha8Rng,
    trade_prob: f64,
    start_ms: u64,
    step_ns: u64,
    market_ns: u64,
    messages: u64,
    syms: Vec<SymState>,
    buf: Vec<u8>,
}

/// Why a simulator config was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// No symbols.
    #[error("the simulated market needs at least one symbol")]
    NoSymbols,
    /// `rate`/`speed` not positive and finite, or they give a step under 1 ns.
    #[error("sim rate and speed must be positive and finite (rate up to 1e9 × speed)")]
    BadRate,
    /// Tick, step or start price not positive, or the start price is off the tick grid.
    #[error("sim symbol {0}: tick, step and start price must be positive and the price on the tick grid")]
    BadSymbol(Symbol),
}

impl SimMarket {
    /// A generator; validates the config.
    pub fn new(cfg: SimConfig) -> Result<Self, SimError> {
        if cfg.symbols.is_empty() {
            return Err(SimError::NoSymbols);
        }
        let step_s = cfg.speed / cfg.rate;
        let sane =
            cfg.rate.is_finite() && cfg.speed.is_finite() && cfg.rate > 0.0 && cfg.speed > 0.0;
        // The step must be at least 1 ns and at most an hour of market time per message.
        if !(sane && step_s * 1e9 >= 1.0 && step_s < 3600.0) {
            return Err(SimError::BadRate);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut syms = Vec::with_capacity(cfg.symbols.len());
        for s in &cfg.symbols {
            if s.tick.units() <= 0
                || s.step.units() <= 0
                || s.start_price.units() <= 0
                || !s.start_price.is_multiple_of(s.tick)
            {
                return Err(SimError::BadSymbol(s.symbol));
            }
            let mut st = SymState {
                spec: *s,
                price_dec: decimals_of(s.tick.units()),
                qty_dec: decimals_of(s.step.units()),
                fair: s.start_price.to_f64_lossy(),
                volatile: false,
                last_ns: 0,
                momentum: 0.0,
                bid_ticks: 0,
                spread_ticks: 1,
                bid_qty_steps: 1,
                ask_qty_steps: 1,
                update_id: 1_000_000,
                agg_id: 100_000,
                trade_id: 1_000_000,
            };
            requote(&mut rng, &mut st);
            syms.push(st);
        }
        Ok(Self {
            rng,
            trade_prob: cfg.trade_prob.clamp(0.0, 1.0),
            start_ms: cfg.start_ms,
            step_ns: (step_s * 1e9).round() as u64,
            market_ns: 0,
            messages: 0,
            syms,
            buf: Vec::with_capacity(512),
        })
    }

    /// Generates the next message into the internal buffer and returns it. No allocation.
    pub fn next_message(&mut self) -> &[u8] {
        self.market_ns += self.step_ns;
        self.messages += 1;
        let n = self.syms.len();
        let idx = if n == 1 { 0 } else { self.rng.gen_range(0..n) };
        let now_ms = self.market_time_ms();
        let market_ns = self.market_ns;
        let trade_prob = self.trade_prob;
        let rng = &mut self.rng;
        let st = &mut self.syms[idx];
        let dt = (market_ns - st.last_ns) as f64 * 1e-9;
        st.last_ns = market_ns;
        evolve(rng, st, dt);
        self.buf.clear();
        let p_trade = if st.volatile {
            (trade_prob * 1.3).min(1.0)
        } else {
            trade_prob
        };
        if rng.gen_bool(p_trade) {
            write_trade(rng, st, now_ms, &mut self.buf);
        } else {
            requote(rng, st);
            write_book(rng, st, now_ms, &mut self.buf);
        }
        &self.buf
    }

    /// The last message generated (empty before the first).
    pub fn last_message(&self) -> &[u8] {
        &self.buf
    }

    /// Current market time, ms since the epoch (the `E` of the last message).
    pub fn market_time_ms(&self) -> u64 {
        self.start_ms + self.market_ns / 1_000_000
    }

    /// Market nanoseconds each message advances the clock by.
    pub fn step_ns(&self) -> u64 {
        self.step_ns
    }

    /// Messages generated so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// The simulated symbols.
    pub fn symbols(&self) -> impl Iterator<Item = Symbol> + '_ {
        self.syms.iter().map(|s| s.spec.symbol)
    }

    /// The instrument definition of a symbol.
    pub fn spec(&self, symbol: Symbol) -> Option<SimSymbol> {
        self.syms
            .iter()
            .find(|s| s.spec.symbol == symbol)
            .map(|s| s.spec)
    }

    /// Current best bid/ask of a symbol (what the last bookTicker or trade showed).
    pub fn top(&self, symbol: Symbol) -> Option<SimTop> {
        self.syms
            .iter()
            .find(|s| s.spec.symbol == symbol)
            .map(top_of)
    }
}

fn top_of(s: &SymState) -> SimTop {
    let tick = s.spec.tick.units();
    let step = s.spec.step.units();
    SimTop {
        bid: Price::from_units(s.bid_ticks * tick),
        bid_qty: Qty::from_units(s.bid_qty_steps * step),
        ask: Price::from_units((s.bid_ticks + s.spread_ticks) * tick),
        ask_qty: Qty::from_units(s.ask_qty_steps * step),
    }
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller; `1 - u` keeps the logarithm's argument in (0, 1].
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn evolve(rng: &mut ChaCha8Rng, st: &mut SymState, dt: f64) {
    let mean = if st.volatile {
        st.spec.volatile_secs
    } else {
        st.spec.calm_secs
    };
    if dt > 0.0 && rng.gen::<f64>() < 1.0 - (-dt / mean).exp() {
        st.volatile = !st.volatile;
    }
    let sigma = st.spec.calm_vol
        * if st.volatile {
            st.spec.volatile_mult
        } else {
            1.0
        };
    let ret = sigma * dt.sqrt() * normal(rng);
    st.fair *= ret.exp();
    // Keep the walk away from zero/absurd values so the tick grid stays meaningful.
    let start = st.spec.start_price.to_f64_lossy();
    st.fair = st.fair.clamp(start * 0.05, start * 20.0);
    st.momentum = 0.95 * st.momentum + 0.05 * ret / st.spec.calm_vol.max(1e-12);
}

fn lognormal_steps(rng: &mut ChaCha8Rng, median: f64, sigma: f64) -> i64 {
    let v = median * (sigma * normal(rng)).exp();
    (v.round() as i64).clamp(1, 1_000_000_000)
}

fn requote(rng: &mut ChaCha8Rng, st: &mut SymState) {
    let r: f64 = rng.gen();
    st.spread_ticks = match (st.volatile, r) {
        (false, r) if r < 0.75 => 1,
        (false, r) if r < 0.95 => 2,
        (false, _) => 3,
        (true, r) if r < 0.4 => 1,
        (true, r) if r < 0.8 => 2,
        (true, _) => 3,
    };
    let tick = st.spec.tick.to_f64_lossy();
    let centre = st.fair / tick;
    st.bid_ticks = ((centre - st.spread_ticks as f64 / 2.0).round() as i64).max(1);
    st.bid_qty_steps = lognormal_steps(rng, st.spec.median_level_steps, 0.8);
    st.ask_qty_steps = lognormal_steps(rng, st.spec.median_level_steps, 0.8);
    st.update_id += 1 + rng.gen_range(0..4u64);
}

fn write_trade(rng: &mut ChaCha8Rng, st: &mut SymState, now_ms: u64, out: &mut Vec<u8>) {
    let p_buy = (0.5 + 0.08 * st.momentum).clamp(0.15, 0.85);
    let buy = rng.gen_bool(p_buy);
    let steps = lognormal_steps(rng, st.spec.median_trade_steps, 1.0);
    let tick = st.spec.tick.units();
    let price_ticks = if buy {
        st.bid_ticks + st.spread_ticks
    } else {
        st.bid_ticks
    };
    // The trade eats the touched level; a fully consumed level is replaced by a fresh quote next time.
    if buy {
        st.ask_qty_steps = (st.ask_qty_steps - steps).max(1);
    } else {
        st.bid_qty_steps = (st.bid_qty_steps - steps).max(1);
    }
    st.agg_id += 1;
    let first = st.trade_id + 1;
    let fills = 1 + rng.gen_range(0..3u64);
    st.trade_id += fills;
    let price = price_ticks * tick;
    let qty = steps * st.spec.step.units();
    out.extend_from_slice(b"{\"e\":\"aggTrade\",\"E\":");
    push_u64(out, now_ms);
    out.extend_from_slice(b",\"s\":\"");
    out.extend_from_slice(st.spec.symbol.as_bytes());
    out.extend_from_slice(b"\",\"a\":");
    push_u64(out, st.agg_id);
    out.extend_from_slice(b",\"p\":\"");
    push_dec(out, price, st.price_dec);
    out.extend_from_slice(b"\",\"q\":\"");
    push_dec(out, qty, st.qty_dec);
    out.extend_from_slice(b"\",\"nq\":\"");
    push_dec(out, qty, st.qty_dec);
    out.extend_from_slice(b"\",\"f\":");
    push_u64(out, first);
    out.extend_from_slice(b",\"l\":");
    push_u64(out, st.trade_id);
    out.extend_from_slice(b",\"T\":");
    push_u64(out, now_ms);
    out.extend_from_slice(if buy {
        b",\"m\":false}".as_slice()
    } else {
        b",\"m\":true}".as_slice()
    });
}

fn write_book(rng: &mut ChaCha8Rng, st: &mut SymState, now_ms: u64, out: &mut Vec<u8>) {
    let t = top_of(st);
    out.extend_from_slice(b"{\"e\":\"bookTicker\",\"u\":");
    push_u64(out, st.update_id);
    out.extend_from_slice(b",\"E\":");
    push_u64(out, now_ms);
    out.extend_from_slice(b",\"T\":");
    push_u64(out, now_ms.saturating_sub(rng.gen_range(0..3u64)));
    out.extend_from_slice(b",\"s\":\"");
    out.extend_from_slice(st.spec.symbol.as_bytes());
    out.extend_from_slice(b"\",\"b\":\"");
    push_dec(out, t.bid.units(), st.price_dec);
    out.extend_from_slice(b"\",\"B\":\"");
    push_dec(out, t.bid_qty.units(), st.qty_dec);
    out.extend_from_slice(b"\",\"a\":\"");
    push_dec(out, t.ask.units(), st.price_dec);
    out.extend_from_slice(b"\",\"A\":\"");
    push_dec(out, t.ask_qty.units(), st.qty_dec);
    out.extend_from_slice(b"\"}");
}

/// Appends a decimal integer.
pub(crate) fn push_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(Num::int(v).as_bytes());
}

fn push_dec(out: &mut Vec<u8>, units: i64, decimals: u32) {
    let mut tmp = [0u8; 40];
    // Invariant: `units` is a multiple of the grid whose decimals we pass, and 40 bytes hold any i64.
    let n = write_units(units, decimals, &mut tmp).unwrap_or(0);
    out.extend_from_slice(&tmp[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::parse::{parse, MarketMsg};

    #[test]
    fn same_seed_same_bytes_different_seed_different_bytes() {
        let mut a = SimMarket::new(SimConfig::new(7)).unwrap();
        let mut b = SimMarket::new(SimConfig::new(7)).unwrap();
        let mut c = SimMarket::new(SimConfig::new(8)).unwrap();
        let mut differs = false;
        for _ in 0..20_000 {
            let x = a.next_message().to_vec();
            assert_eq!(x, b.next_message());
            differs |= x != c.next_message();
        }
        assert!(differs);
    }

    #[test]
    fn messages_parse_and_respect_tick_step_and_spread() {
        let mut cfg = SimConfig::new(42);
        cfg.speed = 50.0;
        let mut m = SimMarket::new(cfg).unwrap();
        let (mut books, mut trades, mut buys) = (0, 0, 0);
        let mut last_e = 0;
        let mut prices = std::collections::HashMap::new();
        for _ in 0..100_000 {
            let bytes = m.next_message().to_vec();
            let msg = parse(&bytes)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
            let spec = m.spec(msg.symbol()).unwrap();
            assert!(msg.event_time() >= last_e, "event time never goes back");
            last_e = msg.event_time();
            match msg {
                MarketMsg::BookTicker(t) => {
                    books += 1;
                    assert!(t.bid < t.ask);
                    assert!((t.ask - t.bid).units() <= 3 * spec.tick.units());
                    assert!(t.bid.is_multiple_of(spec.tick) && t.ask.is_multiple_of(spec.tick));
                    assert!(t.bid_qty.is_multiple_of(spec.step) && t.bid_qty > Qty::ZERO);
                    let top = m.top(t.symbol).unwrap();
                    assert_eq!((top.bid, top.ask), (t.bid, t.ask));
                }
                MarketMsg::AggTrade(t) => {
                    trades += 1;
                    assert!(t.price.is_multiple_of(spec.tick));
                    assert!(t.qty.is_multiple_of(spec.step) && t.qty > Qty::ZERO);
                    let top = m.top(t.symbol).unwrap();
                    if t.buyer_is_maker {
                        assert_eq!(t.price, top.bid);
                    } else {
                        buys += 1;
                        assert_eq!(t.price, top.ask);
                    }
                    prices.insert(t.symbol, t.price);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(books > 50_000 && trades > 25_000, "{books} {trades}");
        assert!(
            buys > trades / 5 && buys < trades * 4 / 5,
            "aggressor sides mixed: {buys}/{trades}"
        );
        // 100k messages at speed 50 = 5000 market seconds: prices moved but stayed believable.
        for (s, p) in prices {
            let start = m.spec(s).unwrap().start_price;
            let r = p.to_f64_lossy() / start.to_f64_lossy();
            assert!(r > 0.8 && r < 1.25 && p != start, "{s}: {p}");
        }
        assert_eq!(m.market_time_ms(), 1_704_067_200_000 + 5_000_000);
    }

    #[test]
    fn no_allocation_growth_in_the_buffer() {
        let mut m = SimMarket::new(SimConfig::new(1)).unwrap();
        let cap = m.buf.capacity();
        for _ in 0..10_000 {
            m.next_message();
        }
        assert_eq!(
            m.buf.capacity(),
            cap,
            "messages fit the preallocated buffer"
        );
    }

    /// Issue 2.4: over a long seeded run the regime switches, and the quoted mid moves clearly more per window in
    /// the volatile regime than in the calm one.
    #[test]
    fn regimes_switch_and_change_the_volatility_of_the_quoted_price() {
        const WINDOW: usize = 100;
        let mut cfg = SimConfig::new(11);
        cfg.symbols = vec![SimSymbol::btcusdt()];
        // 0.1 market s per message: 300k messages = 30,000 market s, dozens of regimes of ~900 s / ~180 s.
        cfg.speed = 100.0;
        let mut m = SimMarket::new(cfg).unwrap();
        let btc = SimSymbol::btcusdt().symbol;
        let mid = |m: &SimMarket| {
            let t = m.top(btc).unwrap();
            (t.bid.to_f64_lossy() + t.ask.to_f64_lossy()) / 2.0
        };
        let mut switches = 0;
        // Log returns of the mid over windows that stayed in one regime: [calm, volatile].
        let mut returns: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let mut regime = m.syms[0].volatile;
        for _ in 0..3_000 {
            let from = mid(&m);
            let mut mixed = false;
            for _ in 0..WINDOW {
                m.next_message();
                let now = m.syms[0].volatile;
                if now != regime {
                    switches += 1;
                    mixed = true;
                    regime = now;
                }
            }
            if !mixed {
                returns[usize::from(regime)].push((mid(&m) / from).ln());
            }
        }
        assert!(switches >= 2, "regime switched {switches} times");
        let std_dev = |r: &[f64]| {
            let mean = r.iter().sum::<f64>() / r.len() as f64;
            (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / r.len() as f64).sqrt()
        };
        let [calm, volatile] = &returns;
        assert!(
            calm.len() > 100 && volatile.len() > 100,
            "windows per regime: {} calm, {} volatile",
            calm.len(),
            volatile.len()
        );
        // The volatile regime is configured at 3× the calm volatility; 2× leaves room for sampling noise.
        let ratio = std_dev(volatile) / std_dev(calm);
        assert!(
            ratio > 2.0 && ratio < 4.5,
            "volatile/calm std-dev ratio {ratio}"
        );
    }

    #[test]
    fn bad_configs_are_refused() {
        let mut c = SimConfig::new(1);
        c.symbols.clear();
        assert_eq!(SimMarket::new(c).unwrap_err(), SimError::NoSymbols);
        let mut c = SimConfig::new(1);
        c.rate = 0.0;
        assert_eq!(SimMarket::new(c).unwrap_err(), SimError::BadRate);
        let mut c = SimConfig::new(1);
        c.symbols[0].start_price = Price::parse("60000.05").unwrap();
        assert!(matches!(SimMarket::new(c), Err(SimError::BadSymbol(_))));
    }
}
