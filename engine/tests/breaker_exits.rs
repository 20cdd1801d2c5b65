//! Issue 5.4: while a circuit breaker is tripped, open positions keep their stops and targets. A mode holds a
//! position, a losing trade trips the breaker, and the strategy's own stop-loss / take-profit exit is still placed,
//! passes the gate as reduce-only and fills, while new entries are refused.

use aegis_engine::risk::breaker::BreakerConfig;
use aegis_engine::risk::Denial;
use aegis_engine::strategy::Signal;
use aegis_engine::{Engine, EngineParams};
use aegis_shared::event::{BreakerChange, BreakerScope, OrderIntent, TripReason};
use aegis_shared::num::Qty;
use aegis_shared::{EngineEvent, Side, StrategyMode};

const BTC: usize = 0;
const ETH: usize = 1;
const T0: u64 = 1_704_067_200_000;

/// The `n`th bookTicker of the test, in the exchange's raw (non-combined) form, at engine time `T0 + n` ms.
fn book(e: &mut Engine, n: u64, name: &str, bid: &str, ask: &str) {
    let t = T0 + n;
    e.on_message(
        format!(
            r#"{{"e":"bookTicker","u":{n},"E":{t},"T":{t},"s":"{name}","b":"{bid}","B":"50","a":"{ask}","A":"50"}}"#
        )
        .as_bytes(),
    );
}

fn signal(side: Side, qty: &str, intent: OrderIntent) -> Signal {
    Signal {
        side,
        intent,
        qty: Qty::parse(qty).unwrap(),
        reduce_only: intent != OrderIntent::Entry,
    }
}

fn qty(e: &Engine, sym: usize) -> Qty {
    e.positions().get(sym, StrategyMode::Scalp).qty()
}

fn denials(e: &Engine, d: Denial) -> u64 {
    e.counters().denials[d.code() as usize]
}

/// Holds a scalp long in BTCUSDT, trips the breakers with one losing ETHUSDT round trip, then moves BTCUSDT's book
/// to `bid`/`ask` and checks that the scalp strategy's exit with `intent` is placed and fills.
fn exit_fills_while_tripped(bid: &str, ask: &str, intent: OrderIntent) {
    let p = EngineParams {
        // Scalp runs: its exit checks on every book update are what must still act. Its entries need warmed-up
        // indicators, so none come from it here; the test opens positions itself.
        scalp_enabled: true,
        session: 9,
        pin: false,
        sim_start_ms: Some(T0),
        // One losing trade trips the breaker, and the cooldown outlasts the test.
        breakers: BreakerConfig {
            max_consecutive_losses: 1,
            ..BreakerConfig::default()
        },
        ..EngineParams::default()
    };
    let (mut e, ctl) = Engine::with_channels(p).unwrap();
    book(&mut e, 1, "BTCUSDT", "30000.0", "30000.1");
    book(&mut e, 2, "ETHUSDT", "2000.00", "2000.01");

    let scalp = StrategyMode::Scalp;
    let entry = |side, q| signal(side, q, OrderIntent::Entry);
    assert_eq!(e.place(BTC, scalp, entry(Side::Buy, "0.004")), Ok(()));
    assert_eq!(qty(&e, BTC), Qty::parse("0.004").unwrap());
    // Buy at the ask, sell at the bid, pay fees: a loss, which trips the scalp and global breakers.
    assert_eq!(e.place(ETH, scalp, entry(Side::Buy, "0.060")), Ok(()));
    assert_eq!(
        e.place(ETH, scalp, signal(Side::Sell, "0.060", OrderIntent::Manual)),
        Ok(())
    );
    assert!(qty(&e, ETH).is_zero());
    assert!(e
        .gate()
        .breakers
        .check_entry(scalp, e.now_ms())
        .is_err_and(|b| b.trip.reason == TripReason::ConsecutiveLosses));
    assert_eq!(
        e.place(ETH, scalp, entry(Side::Buy, "0.060")),
        Err(Denial::Breaker),
        "no new entries while tripped"
    );
    assert_eq!(denials(&e, Denial::Breaker), 1);
    assert_eq!(qty(&e, BTC), Qty::parse("0.004").unwrap(), "still held");

    // The market reaches the position's stop or target: the strategy's exit goes through.
    let orders = e.counters().orders;
    book(&mut e, 3, "BTCUSDT", bid, ask);
    assert!(
        qty(&e, BTC).is_zero(),
        "{intent:?} exit filled while tripped"
    );
    assert_eq!(e.counters().orders, orders + 1, "exactly one exit order");
    assert_eq!(denials(&e, Denial::Breaker), 1, "the exit was not denied");
    assert!(
        e.gate().breakers.check_entry(scalp, e.now_ms()).is_err(),
        "the breaker is still tripped after the exit"
    );

    e.shutdown();
    let ev: Vec<EngineEvent> = ctl.events.try_iter().collect();
    let exits: Vec<_> = ev
        .iter()
        .filter_map(|x| match x {
            EngineEvent::Fill(f) if f.symbol.as_str() == "BTCUSDT" && f.intent.is_exit() => {
                Some(*f)
            }
            _ => None,
        })
        .collect();
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(
        (exits[0].intent, exits[0].side, exits[0].mode, exits[0].qty),
        (intent, Side::Sell, scalp, Qty::parse("0.004").unwrap())
    );
    // The trip happened before the exit: both breakers' trip events precede its fill.
    let trip_at = |scope| {
        ev.iter().position(|x| {
            matches!(x, EngineEvent::Breaker(b) if b.scope == scope
                && matches!(b.change, BreakerChange::Tripped { .. }))
        })
    };
    let exit_at = ev
        .iter()
        .position(|x| matches!(x, EngineEvent::Fill(f) if f.intent == intent));
    for scope in [BreakerScope::Global, BreakerScope::Mode(scalp)] {
        assert!(
            trip_at(scope).is_some() && trip_at(scope) < exit_at,
            "{scope:?}"
        );
    }
}

#[test]
fn stop_loss_exit_fills_while_the_breaker_is_tripped() {
    // Entry 30000.1; the 0.6 % stop is at 29820.0994 and the mid here is 29800.05.
    exit_fills_while_tripped("29800.0", "29800.1", OrderIntent::StopLoss);
}

#[test]
fn take_profit_exit_fills_while_the_breaker_is_tripped() {
    // Entry 30000.1; the 1.2 % target is at 30360.1012 and the mid here is 30400.05.
    exit_fills_while_tripped("30400.0", "30400.1", OrderIntent::TakeProfit);
}
