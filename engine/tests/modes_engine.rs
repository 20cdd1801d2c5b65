//! The swing and position modes running inside the engine over the real XRPUSDT 5-minute klines, through the one
//! risk gate (allocation included) and the paper venue.

mod engine_support;

use aegis_engine::risk::allocation::Allocation;
use aegis_engine::risk::gate::Denial;
use aegis_engine::{Engine, EngineParams};
use aegis_shared::event::EngineEvent;
use aegis_shared::num::{Notional, Price};
use aegis_shared::StrategyMode;
use engine_support::{data, limits, short_bars, xrp};

/// Kline lines, each preceded by a bookTicker one tick wide around the kline's close (the recording has no
/// book, and market orders need a touch to fill at).
fn feed() -> Vec<String> {
    let p = data("xrpusdt-perp-kline5m-2021-11-15.jsonl");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let k = &v["data"]["k"];
        let close = Price::parse(k["c"].as_str().unwrap()).unwrap();
        let ask = close + Price::parse("0.0001").unwrap();
        let t = k["T"].as_u64().unwrap();
        out.push(format!(
            r#"{{"stream":"xrpusdt@bookTicker","data":{{"e":"bookTicker","u":{},"s":"XRPUSDT","b":"{close}","B":"50000","a":"{ask}","A":"50000","T":{t},"E":{t}}}}}"#,
            i + 1
        ));
        out.push(line.to_string());
    }
    out
}

fn params(alloc: Allocation) -> EngineParams {
    short_bars(EngineParams {
        symbols: vec![xrp()],
        scalp_enabled: false,
        allocation: alloc,
        limits: limits(500, 10_000),
        session: 1,
        pin: false,
        ..EngineParams::default()
    })
}

fn run(p: EngineParams) -> (Engine, Vec<EngineEvent>) {
    let (mut e, ctl) = Engine::with_channels(p).unwrap();
    let mut events = vec![];
    for line in feed() {
        e.on_message(line.as_bytes());
        events.extend(ctl.events.try_iter());
    }
    (e, events)
}

#[test]
fn swing_and_position_trade_through_the_gate() {
    let (_engine, events) = run(params(Allocation::default()));
    let fills: Vec<_> = events
        .iter()
        .filter_map(|ev| match ev {
            EngineEvent::Fill(f) => Some(*f),
            _ => None,
        })
        .collect();
    assert!(
        fills.iter().any(|f| f.mode == StrategyMode::Swing),
        "swing traded"
    );
    assert!(
        fills.iter().any(|f| f.mode == StrategyMode::Position),
        "position traded"
    );
    for f in &fills {
        // Entries were capped at the limit's $500 (position mode asks for $750 by default).
        if !f.intent.is_exit() {
            assert!(f.price.notional(f.qty) <= Notional::from_int(500), "{f:?}");
        }
    }
}

#[test]
fn a_mode_without_allocation_never_opens_a_position() {
    let mut alloc = Allocation::default();
    alloc.modes[StrategyMode::Swing.index()].max_positions = 0;
    let (e, events) = run(params(alloc));
    assert!(
        e.counters().denials[Denial::Allocation.code() as usize] > 0,
        "swing entries were denied"
    );
    assert!(!events
        .iter()
        .any(|ev| matches!(ev, EngineEvent::Fill(f) if f.mode == StrategyMode::Swing)));
    assert!(events
        .iter()
        .any(|ev| matches!(ev, EngineEvent::Fill(f) if f.mode == StrategyMode::Position)));
    assert!(e.positions().get(0, StrategyMode::Swing).qty().is_zero());
}

/// During a stream rollover both connections deliver for a moment: a trade seen twice (or an older one arriving
/// late) must reach the strategies once.
#[test]
fn a_repeated_or_older_aggregate_trade_is_ignored() {
    let (mut e, _ctl) = Engine::with_channels(params(Allocation::default())).unwrap();
    let trade = |a: u64| {
        format!(
            r#"{{"stream":"xrpusdt@aggTrade","data":{{"e":"aggTrade","E":1637000000000,"s":"XRPUSDT","a":{a},"p":"1.0500","q":"10.0","f":{a},"l":{a},"T":1637000000000,"m":false}}}}"#
        )
    };
    for a in [100u64, 101, 101, 100, 102, 102] {
        e.on_message(trade(a).as_bytes());
    }
    assert_eq!(e.counters().duplicate_trades, 3);
    assert_eq!(e.counters().messages, 6);
    assert_eq!(e.counters().parse_errors, 0);
}
