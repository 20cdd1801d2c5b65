//! Funding on the paper venue (`Command::PaperFunding`, what the control plane sends in paper mode on Binance's
//! real market): every mode's paper position pays `qty × mark × rate` as the exchange would settle it, booked as
//! funding events and counted in the day's PnL; flat modes pay nothing.

mod engine_support;

use aegis_engine::strategy::Signal;
use aegis_engine::{Engine, EngineParams};
use aegis_shared::event::OrderIntent;
use aegis_shared::num::{Notional, Price, Qty, Rate};
use aegis_shared::{Command, EngineEvent, Side, StrategyMode, Symbol};
use engine_support::{limits, xrp};

const T0: u64 = 1_636_934_700_000;

fn book(e: &mut Engine, u: u64, t: u64) {
    let line = format!(
        r#"{{"stream":"xrpusdt@bookTicker","data":{{"e":"bookTicker","u":{u},"s":"XRPUSDT","b":"1.0000","B":"5000","a":"1.0001","A":"5000","T":{t},"E":{t}}}}}"#
    );
    e.on_message(line.as_bytes());
}

fn order(side: Side, qty: &str) -> Signal {
    Signal {
        side,
        intent: OrderIntent::Manual,
        qty: Qty::parse(qty).unwrap(),
        reduce_only: false,
    }
}

#[test]
fn paper_positions_pay_qty_times_mark_times_rate_once_per_mode() {
    let p = EngineParams {
        symbols: vec![xrp()],
        scalp_enabled: false,
        limits: limits(1_000, 1_000),
        session: 1,
        pin: false,
        ..EngineParams::default()
    };
    let (mut e, ctl) = Engine::with_channels(p).unwrap();
    book(&mut e, 1, T0);
    e.place(0, StrategyMode::Scalp, order(Side::Buy, "40"))
        .unwrap();
    e.place(0, StrategyMode::Swing, order(Side::Buy, "60"))
        .unwrap();
    let _ = ctl.events.try_iter().count();
    let before = e.positions().get(0, StrategyMode::Scalp).funding();
    let sym = Symbol::new("XRPUSDT").unwrap();
    e.on_command(Command::PaperFunding {
        symbol: sym,
        rate: Rate::parse("0.0001").unwrap(),
        mark: Price::parse("1.2345").unwrap(),
        ts_ms: T0 + 1000,
    });
    let funding: Vec<_> = ctl
        .events
        .try_iter()
        .filter_map(|ev| match ev {
            EngineEvent::Funding(f) => Some(f),
            _ => None,
        })
        .collect();
    // Longs pay a positive rate: 40 × 1.2345 × 0.0001 = 0.004938 and 60 × … = 0.007407.
    let got: Vec<(StrategyMode, Notional)> = funding.iter().map(|f| (f.mode, f.amount)).collect();
    assert_eq!(
        got,
        [
            (StrategyMode::Scalp, Notional::parse("-0.004938").unwrap()),
            (StrategyMode::Swing, Notional::parse("-0.007407").unwrap()),
        ]
    );
    assert!(funding
        .iter()
        .all(|f| f.total == Notional::parse("-0.012345").unwrap()
            && f.tran_id == T0 + 1000
            && f.asset.as_str() == "USDT"
            && f.quote == f.amount));
    assert_eq!(
        e.positions().get(0, StrategyMode::Scalp).funding() - before,
        Notional::parse("-0.004938").unwrap()
    );
    // A short receives a positive rate.
    let close = |qty: &str| Signal {
        reduce_only: true,
        ..order(Side::Sell, qty)
    };
    e.place(0, StrategyMode::Swing, close("60")).unwrap();
    e.place(0, StrategyMode::Scalp, close("40")).unwrap();
    e.place(0, StrategyMode::Scalp, order(Side::Sell, "10"))
        .unwrap();
    let _ = ctl.events.try_iter().count();
    e.on_command(Command::PaperFunding {
        symbol: sym,
        rate: Rate::parse("0.0001").unwrap(),
        mark: Price::parse("2").unwrap(),
        ts_ms: T0 + 2000,
    });
    let got: Vec<(StrategyMode, Notional)> = ctl
        .events
        .try_iter()
        .filter_map(|ev| match ev {
            EngineEvent::Funding(f) => Some((f.mode, f.amount)),
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        [(StrategyMode::Scalp, Notional::parse("0.002").unwrap())]
    );
}
