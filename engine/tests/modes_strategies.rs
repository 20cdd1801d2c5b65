//! The swing, position and ultra-fast scalp modes: their documented rules, checked on the real XRPUSDT 5-minute
//! klines in ../shared/data/ and on constructed book streams.

mod engine_support;

use aegis_engine::book::TopOfBook;
use aegis_engine::feed::parse::{parse, Kline, MarketMsg};
use aegis_engine::strategy::position::{PositionMode, PositionParams};
use aegis_engine::strategy::swing::Swing;
use aegis_engine::strategy::ultra_fast::{UltraFast, UltraFastParams};
use aegis_engine::strategy::{PosView, Signal, SymbolInfo};
use aegis_shared::event::OrderIntent;
use aegis_shared::num::{Notional, Price, Qty};
use aegis_shared::Side;

fn klines() -> Vec<Kline> {
    let p = engine_support::data("xrpusdt-perp-kline5m-2021-11-15.jsonl");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    text.lines()
        .map(|l| match parse(l.as_bytes()).unwrap() {
            MarketMsg::Kline(k) => k,
            o => panic!("{o:?}"),
        })
        .collect()
}

fn xrp() -> SymbolInfo {
    SymbolInfo {
        step: Qty::parse("0.1").unwrap(),
        tick: Price::parse("0.0001").unwrap(),
    }
}

fn top_at(px: Price) -> TopOfBook {
    TopOfBook {
        bid: px,
        bid_qty: Qty::from_int(1000),
        ask: px + Price::parse("0.0001").unwrap(),
        ask_qty: Qty::from_int(1000),
        update_id: 1,
        event_time: 0,
    }
}

/// One simulated round trip: (side, entry price, entry ms, exit reason, exit price, exit ms).
type Trip = (Side, Price, u64, OrderIntent, Price, u64);

/// Drives a bar mode over the klines, filling every signal at the touch of a book around the kline's close;
/// `on_entry` sees each entry.
fn drive(
    ks: &[Kline],
    mut step: impl FnMut(&Kline, &TopOfBook, &PosView) -> Option<Signal>,
    mut on_entry: impl FnMut(&Signal),
) -> Vec<Trip> {
    let mut pos = PosView::default();
    let mut trips = vec![];
    for k in ks {
        let top = top_at(k.close);
        let Some(s) = step(k, &top, &pos) else {
            continue;
        };
        let fill = if s.side == Side::Buy {
            top.ask
        } else {
            top.bid
        };
        if s.intent == OrderIntent::Entry {
            assert!(pos.qty.is_zero() && !s.reduce_only, "entry while holding");
            on_entry(&s);
            pos = PosView {
                qty: Qty::from_units(s.side.sign() * s.qty.units()),
                entry: fill,
                opened_ms: k.close_time,
                pending: false,
            };
        } else {
            assert!(
                s.reduce_only && s.qty == pos.qty.abs(),
                "exit must close exactly the position"
            );
            let side = if pos.qty.units() > 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            assert_eq!(s.side, side.opposite());
            trips.push((
                side,
                pos.entry,
                pos.opened_ms,
                s.intent,
                k.close,
                k.close_time,
            ));
            pos = PosView::default();
        }
    }
    trips
}

fn check_exit_levels(trips: &[Trip], sl: f64, tp: f64, max_hold_ms: u64) {
    for &(side, entry, t0, why, px, t1) in trips {
        let dir = if side == Side::Buy { 1.0 } else { -1.0 };
        let r = (px.to_f64_lossy() / entry.to_f64_lossy() - 1.0) * dir;
        match why {
            OrderIntent::StopLoss => assert!(r <= -sl + 1e-9, "stop at {r}"),
            OrderIntent::TakeProfit => assert!(r >= tp - 1e-9, "target at {r}"),
            OrderIntent::MaxHold => assert!(t1 - t0 >= max_hold_ms),
            OrderIntent::SignalExit => {}
            other => panic!("unexpected exit {other:?}"),
        }
        if why != OrderIntent::StopLoss {
            assert!(r > -sl, "a loss beyond the stop was not stopped: {r}");
        }
        // Exits are checked on every 5-minute kline.
        assert!(t1 - t0 <= max_hold_ms + 300_000);
    }
}

#[test]
fn swing_on_fifteen_minute_bars_follows_its_rules() {
    let ks = klines();
    let p = engine_support::short_swing();
    let m = std::cell::RefCell::new(Swing::new(p, &[xrp()]));
    let mut entries = 0;
    let trips = drive(
        &ks,
        |k, top, pos| m.borrow_mut().on_kline(0, k, top, pos),
        |s| {
            entries += 1;
            let r = m.borrow().readings(0).expect("entries only when warm");
            let (hist, prev) = r.hist;
            assert!(r.adx >= 20.0, "ADX filter: {r:?}");
            match s.side {
                Side::Buy => {
                    assert!(r.close > r.ema && prev <= 0.0 && hist > 0.0, "{r:?}");
                    assert!((45.0..=70.0).contains(&r.rsi), "{r:?}");
                }
                Side::Sell => {
                    assert!(r.close < r.ema && prev >= 0.0 && hist < 0.0, "{r:?}");
                    assert!((30.0..=55.0).contains(&r.rsi), "{r:?}");
                }
            }
            // Sized at 500 USD at the touch, floored to the step.
            let touch = r.close;
            let usd = touch * s.qty.to_f64_lossy();
            assert!(usd <= 500.0 + 1e-6 && usd > 499.0, "{usd}");
        },
    );
    assert!(
        entries >= 3,
        "only {entries} swing entries in 7 days of 15m bars"
    );
    assert!(trips.iter().any(|t| t.3 == OrderIntent::TakeProfit));
    assert!(trips.iter().any(|t| t.3 == OrderIntent::SignalExit));
    check_exit_levels(&trips, 0.02, 0.04, p.exits.max_hold_ms);
}

#[test]
fn position_mode_follows_its_rules() {
    let ks = klines();
    // 7 days hold only 42 four-hour bars, fewer than EMA(50) needs: the same rules on 1-hour bars.
    let p = engine_support::short_position();
    let m = std::cell::RefCell::new(PositionMode::new(p, &[xrp()]));
    let mut entries = 0;
    let trips = drive(
        &ks,
        |k, top, pos| m.borrow_mut().on_kline(0, k, top, pos),
        |_| entries += 1,
    );
    assert!(entries >= 1, "no position entries");
    assert!(!trips.is_empty());
    check_exit_levels(&trips, 0.06, 0.15, p.exits.max_hold_ms);
    // The default timescale is 4 h and needs 50 bars before it trades.
    let mut slow = PositionMode::new(PositionParams::default(), &[xrp()]);
    assert!(ks.iter().all(|k| slow
        .on_kline(0, k, &top_at(k.close), &PosView::default())
        .is_none()));
}

fn book(bid_units: i64, bid_qty: i64, ask_units: i64, ask_qty: i64) -> TopOfBook {
    TopOfBook {
        bid: Price::from_units(bid_units),
        bid_qty: Qty::from_int(bid_qty),
        ask: Price::from_units(ask_units),
        ask_qty: Qty::from_int(ask_qty),
        update_id: 1,
        event_time: 0,
    }
}

#[test]
fn ultra_fast_enters_on_imbalance_with_momentum_and_exits_on_its_levels() {
    let info = SymbolInfo {
        step: Qty::parse("0.001").unwrap(),
        tick: Price::parse("0.01").unwrap(),
    };
    let mut m = UltraFast::new(UltraFastParams::default(), &[info]);
    let flat = PosView::default();
    let cent = 1_000_000i64;
    let mut t = 1_000_000u64;
    // Balanced, flat book: warm-up, no signal.
    for _ in 0..200 {
        t += 100;
        assert_eq!(
            m.on_book(0, &book(10_000 * cent, 5, 10_001 * cent, 5), t, &flat),
            None
        );
    }
    // Bids stack up and the price climbs: a long.
    let mut sig = None;
    let mut bid = 10_000i64;
    for _ in 0..50 {
        t += 100;
        bid += 1;
        sig = m.on_book(0, &book(bid * cent, 20, (bid + 1) * cent, 2), t, &flat);
        if sig.is_some() {
            break;
        }
    }
    let s = sig.expect("a long entry");
    assert_eq!(
        (s.side, s.intent, s.reduce_only),
        (Side::Buy, OrderIntent::Entry, false)
    );
    let ask = Price::from_units((bid + 1) * cent);
    assert_eq!(
        s.qty,
        Notional::from_int(200).qty_at(ask, info.step).unwrap()
    );
    let r = m.readings(0).unwrap();
    assert!(
        r.imbalance >= 0.35 && r.momentum_bps >= 0.5 && r.spread_bps <= 5.0,
        "{r:?}"
    );
    // Nothing while the order is pending.
    let pending = PosView {
        pending: true,
        ..flat
    };
    assert_eq!(
        m.on_book(
            0,
            &book(bid * cent, 20, (bid + 1) * cent, 2),
            t + 1,
            &pending
        ),
        None
    );
    let long = PosView {
        qty: s.qty,
        entry: ask,
        opened_ms: t,
        pending: false,
    };
    // A mid 0.15 % below the entry hits the stop.
    let stop = ask.units() - ask.units() * 15 / 10_000;
    let b = (stop / cent - 1) * cent;
    let x = m
        .on_book(0, &book(b, 20, b + cent, 20), t + 10, &long)
        .unwrap();
    assert_eq!(
        (x.side, x.intent, x.qty, x.reduce_only),
        (Side::Sell, OrderIntent::StopLoss, s.qty, true)
    );
    // Flat again: re-entry waits 5 s.
    let mut t2 = t + 20;
    for i in 0..40 {
        t2 = t + 20 + i * 100;
        let bb = (bid + 2 + i as i64) * cent;
        assert_eq!(
            m.on_book(0, &book(bb, 20, bb + cent, 2), t2, &flat),
            None,
            "entered during the pause"
        );
    }
    let mut re = None;
    for i in 0..200 {
        let t3 = t2 + 5_000 + i * 100;
        let bb = (bid + 50 + i as i64) * cent;
        re = m.on_book(0, &book(bb, 20, bb + cent, 2), t3, &flat);
        if re.is_some() {
            break;
        }
    }
    assert!(re.is_some(), "entries resume after the pause");
    // Max hold: a quiet book after an entry.
    let mut m = UltraFast::new(UltraFastParams::default(), &[info]);
    let short = PosView {
        qty: Qty::parse("-0.002").unwrap(),
        entry: Price::from_int(100),
        opened_ms: 0,
        pending: false,
    };
    let mut last = None;
    for i in 0..2_000u64 {
        last = m.on_book(
            0,
            &book(100 * 100_000_000, 5, 100 * 100_000_000 + cent, 5),
            i * 100,
            &short,
        );
        if last.is_some() {
            assert_eq!(i * 100, 120_000);
            break;
        }
    }
    let last = last.unwrap();
    assert_eq!(
        (last.intent, last.side, last.qty),
        (
            OrderIntent::MaxHold,
            Side::Buy,
            Qty::parse("0.002").unwrap()
        )
    );
}

#[test]
fn ultra_fast_stays_out_of_wide_spreads() {
    let info = SymbolInfo {
        step: Qty::parse("0.001").unwrap(),
        tick: Price::parse("0.01").unwrap(),
    };
    let mut m = UltraFast::new(UltraFastParams::default(), &[info]);
    for i in 0..400i64 {
        // 10 bp spread with strong bid imbalance and rising prices.
        let bid = (100_000 + i) * 100_000;
        let top = book(bid, 50, bid + 10_000_000, 1);
        assert_eq!(
            m.on_book(0, &top, i as u64 * 100, &PosView::default()),
            None
        );
    }
    assert!(m.readings(0).unwrap().spread_bps > 5.0);
}
