//! The parser against real recorded Binance data (`../shared/data/*.jsonl`) and the replay reader.

mod engine_support;

use aegis_engine::feed::parse::{Interval, MarketMsg, Parser};
use aegis_engine::feed::replay::{Replay, ReplayPoll};
use aegis_shared::{Price, Qty, Symbol};
use engine_support::data;

#[test]
fn every_aggtrade_line_of_the_xrpeth_recording_parses() {
    let text = std::fs::read_to_string(data("xrpeth-aggtrade-2019-10-11.jsonl")).unwrap();
    let mut p = Parser::new();
    let xrpeth = Symbol::new("XRPETH").unwrap();
    let mut n = 0;
    let mut last_id = None;
    let mut vol = Qty::ZERO;
    for line in text.lines() {
        let m = p
            .parse(line.as_bytes())
            .unwrap_or_else(|e| panic!("line {}: {e}: {line}", n + 1));
        let MarketMsg::AggTrade(t) = m else {
            panic!("line {}: not an aggTrade", n + 1)
        };
        assert_eq!(t.symbol, xrpeth);
        assert!(t.price > Price::ZERO && t.qty > Qty::ZERO);
        assert!(t.first_id <= t.last_id);
        if let Some(prev) = last_id {
            assert!(t.agg_id > prev, "aggregate ids increase");
        }
        last_id = Some(t.agg_id);
        // The recording is spot: it carries "M", which must be tolerated; its E equals T.
        assert_eq!(t.event_time, t.trade_time);
        vol += t.qty;
        n += 1;
    }
    assert_eq!(n, 12_477);
    // Exact values of the first line.
    let first = text.lines().next().unwrap();
    let MarketMsg::AggTrade(t) = p.parse(first.as_bytes()).unwrap() else {
        unreachable!()
    };
    assert_eq!(t.event_time, 1_570_752_011_620);
    assert_eq!(t.agg_id, 13_519_807);
    assert_eq!(t.price, Price::parse("0.00141342").unwrap());
    assert_eq!(t.qty, Qty::parse("23").unwrap());
    assert_eq!((t.first_id, t.last_id), (15_373_518, 15_373_518));
    assert!(t.buyer_is_maker);
    assert!(vol > Qty::ZERO);
}

#[test]
fn every_kline_line_of_the_xrpusdt_recording_parses() {
    let text = std::fs::read_to_string(data("xrpusdt-perp-kline5m-2021-11-15.jsonl")).unwrap();
    let mut p = Parser::new();
    let mut n = 0;
    let mut prev_start = 0;
    for line in text.lines() {
        let m = p
            .parse(line.as_bytes())
            .unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
        let MarketMsg::Kline(k) = m else {
            panic!("not a kline")
        };
        assert_eq!(k.symbol, Symbol::new("XRPUSDT").unwrap());
        assert_eq!(k.interval, Interval(300));
        assert_eq!(k.close_time, k.start_time + 300_000 - 1);
        assert!(k.closed);
        assert!(k.low <= k.open && k.low <= k.close && k.high >= k.open && k.high >= k.close);
        assert_eq!((k.first_trade_id, k.last_trade_id), (-1, -1));
        assert!(k.start_time > prev_start);
        prev_start = k.start_time;
        n += 1;
    }
    assert_eq!(n, 1_999);
    let MarketMsg::Kline(k) = p.parse(text.lines().next().unwrap().as_bytes()).unwrap() else {
        unreachable!()
    };
    assert_eq!(k.open, Price::parse("1.1893").unwrap());
    assert_eq!(k.close, Price::parse("1.1941").unwrap());
    assert_eq!(k.high, Price::parse("1.1954").unwrap());
    assert_eq!(k.low, Price::parse("1.1891").unwrap());
    assert_eq!(k.volume, Qty::parse("9289043.5").unwrap());
    assert_eq!(k.start_time, 1_636_934_400_000);
}

#[test]
fn replay_reader_yields_every_line_unpaced() {
    let mut r = Replay::open(&data("xrpeth-aggtrade-2019-10-11.jsonl"), None).unwrap();
    let mut p = Parser::new();
    let mut n = 0;
    while let ReplayPoll::Line(l) = r.poll(0) {
        assert!(p.parse(l).is_ok());
        n += 1;
    }
    assert_eq!(n, 12_477);
}

#[test]
fn replay_reader_paces_by_event_time() {
    // At 1000× speed the 59-hour recording would take ~3.5 minutes; check the first lines' release times instead.
    let mut r = Replay::open(&data("xrpeth-aggtrade-2019-10-11.jsonl"), Some(1000.0)).unwrap();
    let mut p = Parser::new();
    let ReplayPoll::Line(first) = r.poll(0) else {
        panic!()
    };
    let e0 = p.parse(first).unwrap().event_time();
    let mut released = 0;
    let mut t = 0u64;
    while released < 50 {
        match r.poll(t) {
            ReplayPoll::Line(l) => {
                let e = p.parse(l).unwrap().event_time();
                let due_ns = (e - e0) * 1_000_000 / 1000;
                assert!(due_ns <= t, "released early: due {due_ns} at {t}");
                assert!(due_ns + 1_000_000 > t, "released late");
                released += 1;
            }
            ReplayPoll::NotYet => t += 1_000_000,
            ReplayPoll::End => panic!("ended early"),
        }
    }
}
