//! `scalp` mode: 1-minute bars built from aggTrades by event time.
//!
//! Rule (evaluated when a bar closes, per symbol):
//! - **Long entry** (when flat): EMA(9) crosses above EMA(21) on the close, RSI(7) is below 70 (not already
//!   overbought), and the bar's volume is above `volume_mult` × the average volume of the previous 20 bars.
//! - **Short entry** (when flat): EMA(9) crosses below EMA(21), RSI(7) above 30, same volume condition.
//! - **Signal exit**: the opposite cross while in a position.
//!
//! Exits checked on every top-of-book change, against the mid price:
//! - stop-loss at `entry × (1 ∓ stop_loss)` (default 0.6 %), take-profit at `entry × (1 ± take_profit)`
//!   (default 1.2 %), computed in exact integer arithmetic;
//! - maximum holding time (default 30 minutes of engine time).
//!
//! Sizing: `notional` (default 200 USD) at the touch the entry would take, rounded down to the step size with
//! [`Notional::qty_at`]. Indicators use `f64` (signals only); order quantities are exact.
//! Everything per symbol is allocated in [`Scalp::new`]; updates are O(1) and allocation-free.

use super::indicators::{Bar, BarBuilder, Ema, Rsi, Sma};
use super::{PosView, Signal, SymbolInfo};
use crate::book::TopOfBook;
use crate::feed::parse::AggTrade;
use aegis_shared::event::{OrderIntent, TimestampMs};
use aegis_shared::num::{Rate, SCALE};
use aegis_shared::{Notional, Price, Qty, Side};

/// Scalp parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalpParams {
    /// USD notional per entry (default 200).
    pub notional: Notional,
    /// Stop-loss distance as a fraction of entry (default 0.006).
    pub stop_loss: Rate,
    /// Take-profit distance as a fraction of entry (default 0.012).
    pub take_profit: Rate,
    /// Maximum holding time, ms (default 30 min).
    pub max_hold_ms: u64,
    /// Bar length, ms (default 60,000).
    pub bar_ms: u64,
    /// Fast EMA period (default 9).
    pub ema_fast: u32,
    /// Slow EMA period (default 21).
    pub ema_slow: u32,
    /// RSI period (default 7).
    pub rsi_period: u32,
    /// No long entry at or above this RSI (default 70).
    pub rsi_overbought: f64,
    /// No short entry at or below this RSI (default 30).
    pub rsi_oversold: f64,
    /// Bars in the volume average (default 20).
    pub volume_period: usize,
    /// Bar volume must exceed this multiple of the average (default 1.0).
    pub volume_mult: f64,
}

impl Default for ScalpParams {
    fn default() -> Self {
        Self {
            notional: Notional::from_int(200),
            stop_loss: Rate::from_units(600_000),
            take_profit: Rate::from_units(1_200_000),
            max_hold_ms: 30 * 60_000,
            bar_ms: 60_000,
            ema_fast: 9,
            ema_slow: 21,
            rsi_period: 7,
            rsi_overbought: 70.0,
            rsi_oversold: 30.0,
            volume_period: 20,
            volume_mult: 1.0,
        }
    }
}

#[derive(Debug, Clone)]
struct SymState {
    info: SymbolInfo,
    bars: BarBuilder,
    fast: Ema,
    slow: Ema,
    rsi: Rsi,
    vol: Sma,
    prev_diff: Option<f64>,
    bars_closed: u64,
}

/// Decision counters (for stats and tuning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScalpCounters {
    /// EMA crosses seen (with indicators ready).
    pub crosses: u64,
    /// Crosses not taken because RSI was against the direction.
    pub rsi_vetoes: u64,
    /// Crosses not taken because volume was not above average.
    pub volume_vetoes: u64,
    /// Entry signals.
    pub entries: u64,
    /// Exit signals.
    pub exits: u64,
}

/// The scalp strategy over all symbols. See the module docs.
#[derive(Debug, Clone)]
pub struct Scalp {
    p: ScalpParams,
    syms: Vec<SymState>,
    counters: ScalpCounters,
}

impl Scalp {
    /// A strategy for the engine's symbols (index order).
    pub fn new(p: ScalpParams, symbols: &[SymbolInfo]) -> Self {
        Self {
            p,
            syms: symbols
                .iter()
                .map(|&info| SymState {
                    info,
                    bars: BarBuilder::new(p.bar_ms),
                    fast: Ema::new(p.ema_fast),
                    slow: Ema::new(p.ema_slow),
                    rsi: Rsi::new(p.rsi_period),
                    vol: Sma::new(p.volume_period.max(1)),
                    prev_diff: None,
                    bars_closed: 0,
                })
                .collect(),
            counters: ScalpCounters::default(),
        }
    }

    /// Decision counters.
    pub fn counters(&self) -> &ScalpCounters {
        &self.counters
    }

    /// Parameters.
    pub fn params(&self) -> &ScalpParams {
        &self.p
    }

    /// Bars closed so far for a symbol.
    pub fn bars_closed(&self, sym: usize) -> u64 {
        self.syms.get(sym).map_or(0, |s| s.bars_closed)
    }

    /// A trade: feeds the bar builder; a closed bar may produce an entry or signal exit.
    #[inline]
    pub fn on_trade(
        &mut self,
        sym: usize,
        t: &AggTrade,
        top: &TopOfBook,
        pos: &PosView,
    ) -> Option<Signal> {
        let st = self.syms.get_mut(sym)?;
        let bar = st.bars.on_trade(t.event_time, t.price, t.qty)?;
        let sig = on_bar(&self.p, st, &mut self.counters, &bar, top, pos);
        self.count(sig)
    }

    /// A book change: exits first, then a bar that closed by time alone.
    #[inline]
    pub fn on_book(
        &mut self,
        sym: usize,
        top: &TopOfBook,
        now_ms: TimestampMs,
        pos: &PosView,
    ) -> Option<Signal> {
        let st = self.syms.get_mut(sym)?;
        if let Some(s) = exit_check(&self.p, top, now_ms, pos) {
            return self.count(Some(s));
        }
        let bar = st.bars.on_time(now_ms)?;
        let sig = on_bar(&self.p, st, &mut self.counters, &bar, top, pos);
        self.count(sig)
    }

    #[inline]
    fn count(&mut self, s: Option<Signal>) -> Option<Signal> {
        match s {
            Some(x) if x.reduce_only => self.counters.exits += 1,
            Some(_) => self.counters.entries += 1,
            None => {}
        }
        s
    }
}

fn on_bar(
    p: &ScalpParams,
    st: &mut SymState,
    c: &mut ScalpCounters,
    bar: &Bar,
    top: &TopOfBook,
    pos: &PosView,
) -> Option<Signal> {
    let (close, volume) = (bar.close_f64(), bar.volume.to_f64_lossy());
    st.bars_closed += 1;
    let avg_vol = st.vol.value();
    st.vol.update(volume);
    let f = st.fast.update(close);
    let s = st.slow.update(close);
    let r = st.rsi.update(close);
    let (f, s, r) = (f?, s?, r?);
    let diff = f - s;
    let prev = st.prev_diff.replace(diff);
    let prev = prev?;
    let up = prev <= 0.0 && diff > 0.0;
    let down = prev >= 0.0 && diff < 0.0;
    if up || down {
        c.crosses += 1;
    }
    if pos.pending || !top.is_valid() {
        return None;
    }
    let q = pos.qty.units();
    if q > 0 && down {
        return Some(exit(Side::Sell, pos.qty, OrderIntent::SignalExit));
    }
    if q < 0 && up {
        return Some(exit(Side::Buy, pos.qty, OrderIntent::SignalExit));
    }
    if q != 0 {
        return None;
    }
    if !(up || down) {
        return None;
    }
    let rsi_ok = if up {
        r < p.rsi_overbought
    } else {
        r > p.rsi_oversold
    };
    if !rsi_ok {
        c.rsi_vetoes += 1;
        return None;
    }
    if !avg_vol.is_some_and(|a| volume > a * p.volume_mult) {
        c.volume_vetoes += 1;
        return None;
    }
    let side = if up { Side::Buy } else { Side::Sell };
    let touch = match side {
        Side::Buy => top.ask,
        Side::Sell => top.bid,
    };
    let qty = p.notional.qty_at(touch, st.info.step)?;
    Some(Signal {
        side,
        intent: OrderIntent::Entry,
        qty,
        reduce_only: false,
    })
}

#[inline]
fn exit(side: Side, pos_qty: Qty, intent: OrderIntent) -> Signal {
    Signal {
        side,
        intent,
        qty: pos_qty.abs(),
        reduce_only: true,
    }
}

/// `entry × (1 + sign × frac)` exactly (truncated toward zero at 10⁻⁸).
#[inline]
fn offset(entry: Price, frac: Rate, sign: i64) -> Price {
    let e = entry.units() as i128;
    let d = e * frac.units() as i128 / SCALE as i128;
    Price::from_units((e + sign as i128 * d) as i64)
}

#[inline]
fn exit_check(
    p: &ScalpParams,
    top: &TopOfBook,
    now_ms: TimestampMs,
    pos: &PosView,
) -> Option<Signal> {
    let q = pos.qty.units();
    if q == 0 || pos.pending || !top.is_valid() {
        return None;
    }
    let mark = top.mid();
    let long = q > 0;
    let dir = if long { 1 } else { -1 };
    let sl = offset(pos.entry, p.stop_loss, -dir);
    let tp = offset(pos.entry, p.take_profit, dir);
    let close_side = if long { Side::Sell } else { Side::Buy };
    let hit_sl = if long { mark <= sl } else { mark >= sl };
    let hit_tp = if long { mark >= tp } else { mark <= tp };
    if hit_sl {
        Some(exit(close_side, pos.qty, OrderIntent::StopLoss))
    } else if hit_tp {
        Some(exit(close_side, pos.qty, OrderIntent::TakeProfit))
    } else if now_ms.saturating_sub(pos.opened_ms) >= p.max_hold_ms {
        Some(exit(close_side, pos.qty, OrderIntent::MaxHold))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_shared::Symbol;

    fn info() -> SymbolInfo {
        SymbolInfo {
            step: Qty::parse("0.001").unwrap(),
            tick: Price::parse("0.1").unwrap(),
        }
    }
    fn top(mid: i64) -> TopOfBook {
        TopOfBook {
            bid: Price::from_int(mid) - Price::parse("0.1").unwrap(),
            bid_qty: Qty::ONE,
            ask: Price::from_int(mid) + Price::parse("0.1").unwrap(),
            ask_qty: Qty::ONE,
            update_id: 1,
            event_time: 0,
        }
    }
    fn trade(ts: u64, price: i64, qty: &str) -> AggTrade {
        AggTrade {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            event_time: ts,
            agg_id: 0,
            price: Price::from_int(price),
            qty: Qty::parse(qty).unwrap(),
            first_id: 0,
            last_id: 0,
            trade_time: ts,
            buyer_is_maker: false,
        }
    }

    /// Feeds one trade per bar with the given closes; returns the signals.
    fn run(closes: &[i64], vols: &[&str]) -> Vec<(usize, Signal)> {
        let mut s = Scalp::new(ScalpParams::default(), &[info()]);
        let mut out = Vec::new();
        for (i, (&c, v)) in closes.iter().zip(vols.iter().cycle()).enumerate() {
            let t = trade(i as u64 * 60_000 + 5, c, v);
            if let Some(sig) = s.on_trade(0, &t, &top(c), &PosView::default()) {
                out.push((i, sig));
            }
        }
        out
    }

    /// 30 bars drifting one way, then 30 bars zig-zagging the other way (so RSI stays moderate).
    fn turn(dir: i64) -> Vec<i64> {
        let mut closes: Vec<i64> = (0..30).map(|i| 50_000 - dir * i * 10).collect();
        let mut c = *closes.last().unwrap();
        for i in 0..30 {
            c += dir * if i % 2 == 0 { 40 } else { -25 };
            closes.push(c);
        }
        closes
    }

    #[test]
    fn long_entry_on_an_upward_cross_with_volume() {
        let closes = turn(1);
        let mut vols = vec!["1"; 30];
        vols.extend(vec!["3"; 30]);
        let sigs = run(&closes, &vols);
        assert!(!sigs.is_empty(), "a cross happened");
        let (_, s) = sigs[0];
        assert_eq!(s.side, Side::Buy);
        assert_eq!(s.intent, OrderIntent::Entry);
        assert!(!s.reduce_only);
        // 200 USD at ~49,750 → 0.00402 BTC, floored to the step.
        assert_eq!(s.qty, Qty::parse("0.004").unwrap());
    }

    #[test]
    fn no_entry_without_volume_confirmation() {
        let mut vols = vec!["5"; 30];
        vols.extend(vec!["1"; 30]);
        assert!(run(&turn(1), &vols).is_empty());
    }

    #[test]
    fn short_entry_mirrors() {
        let mut vols = vec!["1"; 30];
        vols.extend(vec!["3"; 30]);
        let sigs = run(&turn(-1), &vols);
        assert!(!sigs.is_empty());
        assert_eq!(sigs[0].1.side, Side::Sell);
        assert_eq!(sigs[0].1.intent, OrderIntent::Entry);
    }

    #[test]
    fn exits_stop_loss_take_profit_and_max_hold() {
        let mut s = Scalp::new(ScalpParams::default(), &[info()]);
        let long = PosView {
            qty: Qty::parse("0.004").unwrap(),
            entry: Price::from_int(50_000),
            opened_ms: 0,
            pending: false,
        };
        assert_eq!(s.on_book(0, &top(49_800), 1_000, &long), None);
        // 0.6 % below 50,000 = 49,700.
        let sl = s.on_book(0, &top(49_700), 1_000, &long).unwrap();
        assert_eq!(
            (sl.side, sl.intent, sl.qty, sl.reduce_only),
            (Side::Sell, OrderIntent::StopLoss, long.qty, true)
        );
        let tp = s.on_book(0, &top(50_600), 1_000, &long).unwrap();
        assert_eq!(tp.intent, OrderIntent::TakeProfit);
        let mh = s.on_book(0, &top(50_000), 30 * 60_000, &long).unwrap();
        assert_eq!(mh.intent, OrderIntent::MaxHold);
        let short = PosView {
            qty: Qty::parse("-0.004").unwrap(),
            ..long
        };
        let sl = s.on_book(0, &top(50_300), 1_000, &short).unwrap();
        assert_eq!(
            (sl.side, sl.intent, sl.qty),
            (Side::Buy, OrderIntent::StopLoss, long.qty)
        );
        let pending = PosView {
            pending: true,
            ..long
        };
        assert_eq!(s.on_book(0, &top(49_000), 1_000, &pending), None);
    }
}
