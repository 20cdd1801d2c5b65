//! One gate for every order source: a strategy's entry, an operator's manual order and the kill switch's
//! flatten orders each pass `RiskGate::check`, and each is denied when it breaks a limit.

mod engine_support;

use aegis_engine::backtest::{self, BacktestOptions};
use aegis_engine::risk::gate::Denial;
use aegis_engine::risk::limits::LimitsConfig;
use aegis_engine::strategy::Signal;
use aegis_engine::{Engine, EngineParams};
use aegis_shared::event::{EngineState, HaltReason, OrderIntent};
use aegis_shared::num::{Notional, Qty};
use aegis_shared::{Command, EngineEvent, Side, StrategyMode};
use engine_support::{data, limits, xrp};

const T0: u64 = 1_636_934_700_000;

fn engine(
    max_position: i64,
    max_orders_per_10s: u32,
) -> (Engine, aegis_engine::queues::ControlEnds) {
    let p = EngineParams {
        symbols: vec![xrp()],
        // No strategy: only the orders this test places reach the gate.
        scalp_enabled: false,
        limits: LimitsConfig {
            max_orders_per_10s,
            ..limits(max_position, 1_000)
        },
        session: 1,
        pin: false,
        ..EngineParams::default()
    };
    Engine::with_channels(p).unwrap()
}

/// A quote 1.0000 / 1.0001 at engine time `t`.
fn book(e: &mut Engine, u: u64, t: u64) {
    let line = format!(
        r#"{{"stream":"xrpusdt@bookTicker","data":{{"e":"bookTicker","u":{u},"s":"XRPUSDT","b":"1.0000","B":"5000","a":"1.0001","A":"5000","T":{t},"E":{t}}}}}"#
    );
    e.on_message(line.as_bytes());
}

fn manual(side: Side, qty: &str) -> Signal {
    Signal {
        side,
        intent: OrderIntent::Manual,
        qty: Qty::parse(qty).unwrap(),
        reduce_only: false,
    }
}

fn denials(e: &Engine, d: Denial) -> u64 {
    e.counters().denials[d.code() as usize]
}

fn sent_orders(ctl: &aegis_engine::queues::ControlEnds) -> usize {
    ctl.events
        .try_iter()
        .filter(|ev| matches!(ev, EngineEvent::Order(o) if o.status == aegis_shared::event::OrderStatus::New))
        .count()
}

#[test]
fn strategy_entries_over_the_position_limit_are_denied() {
    // Scalp asks for $200 per entry; the limit is $30: the gate denies every such entry.
    let p = EngineParams {
        limits: limits(30, 1_000),
        pin: false,
        ..EngineParams::default()
    };
    let file = data("xrpeth-aggtrade-2019-10-11.jsonl");
    let opts = BacktestOptions {
        modes: Some(vec![StrategyMode::Scalp]),
        // ETH's USD price at the recording: $200 entries are 1.11 ETH, the $30 limit 0.17 ETH.
        quote_usd: vec![aegis_shared::quote::QuoteUsd::parse("ETH=180").unwrap()],
        ..BacktestOptions::default()
    };
    let mut entry_fills = 0;
    let r = backtest::run_with_events(
        p,
        &[file],
        &opts,
        |_, _| {},
        |e| {
            if matches!(e, EngineEvent::Fill(f) if f.intent == OrderIntent::Entry) {
                entry_fills += 1;
            }
        },
    )
    .unwrap();
    let too_large = r.run.denials[Denial::PositionTooLarge.code() as usize];
    assert_eq!(too_large.reason, Denial::PositionTooLarge);
    assert!(too_large.count > 0, "{r}");
    assert_eq!(entry_fills, 0);
    assert_eq!(r.run.orders, 0);
}

#[test]
fn manual_orders_pass_the_same_gate() {
    let (mut e, ctl) = engine(50, 50);
    book(&mut e, 1, T0);
    let _ = ctl.events.try_iter().count();
    // 100 XRP at 1.0001 = 100 > 50: denied, nothing sent.
    assert_eq!(
        e.place(0, StrategyMode::Scalp, manual(Side::Buy, "100")),
        Err(Denial::PositionTooLarge)
    );
    assert_eq!(denials(&e, Denial::PositionTooLarge), 1);
    assert_eq!(sent_orders(&ctl), 0);
    // Inside the limit: sent and filled.
    assert_eq!(
        e.place(0, StrategyMode::Scalp, manual(Side::Buy, "40")),
        Ok(())
    );
    assert_eq!(sent_orders(&ctl), 1);
    assert_eq!(
        e.positions().get(0, StrategyMode::Scalp).qty(),
        Qty::parse("40").unwrap()
    );
    // Adding 20 would hold 60 > 50.
    assert_eq!(
        e.place(0, StrategyMode::Scalp, manual(Side::Buy, "20")),
        Err(Denial::PositionTooLarge)
    );
    // Off the step grid, below the minimum notional.
    assert_eq!(
        e.place(0, StrategyMode::Scalp, manual(Side::Buy, "1.05")),
        Err(Denial::QtyNotOnStep)
    );
    assert_eq!(
        e.place(0, StrategyMode::Scalp, manual(Side::Buy, "1")),
        Err(Denial::BelowMinNotional)
    );
    // A manual order is an entry: an operator halt stops it.
    e.on_command(Command::Halt);
    assert_eq!(
        e.place(0, StrategyMode::Scalp, manual(Side::Buy, "1")),
        Err(Denial::Halted)
    );
    assert_eq!(sent_orders(&ctl), 0);
    assert_eq!(
        e.positions().get(0, StrategyMode::Scalp).qty(),
        Qty::parse("40").unwrap()
    );
}

#[test]
fn kill_switch_flatten_passes_the_gate_and_obeys_its_limits() {
    // Rate limit 3 orders per 10 s.
    let (mut e, ctl) = engine(50, 3);
    book(&mut e, 1, T0);
    assert_eq!(
        e.place(0, StrategyMode::Scalp, manual(Side::Buy, "40")),
        Ok(())
    );
    // Modes are netted per symbol (one-way account): swing adds on the net's side, within the $50 net cap.
    assert_eq!(
        e.place(0, StrategyMode::Swing, manual(Side::Sell, "30")),
        Err(Denial::OppositeNet)
    );
    assert_eq!(
        e.place(0, StrategyMode::Swing, manual(Side::Buy, "9")),
        Ok(())
    );
    // The operator lowers the limit below what is held: exits must still be able to leave.
    e.on_command(Command::SetLimits {
        max_position_usd: Notional::from_int(10),
        max_daily_loss_usd: Notional::from_int(1_000),
    });
    let _ = ctl.events.try_iter().count();
    let before_rate = denials(&e, Denial::RateLimited);
    e.kill(true);
    let evs: Vec<EngineEvent> = ctl.events.try_iter().collect();
    assert!(evs.iter().any(|ev| matches!(
        ev,
        EngineEvent::State {
            state: EngineState::Halted {
                reason: HaltReason::KillSwitch
            },
            ..
        }
    )));
    // One order left in the rate window: the first flatten (reduce-only, over the new position limit) passes;
    // the second breaks the order rate and is denied — flatten orders get no bypass.
    assert!(
        e.positions().get(0, StrategyMode::Scalp).is_flat(),
        "scalp flattened"
    );
    assert_eq!(
        e.positions().get(0, StrategyMode::Swing).qty(),
        Qty::parse("9").unwrap()
    );
    assert_eq!(
        denials(&e, Denial::RateLimited),
        before_rate + 1,
        "flatten order over the rate limit denied"
    );
    let flatten_fills = evs
        .iter()
        .filter(|ev| matches!(ev, EngineEvent::Fill(f) if f.intent == OrderIntent::Flatten))
        .count();
    assert_eq!(flatten_fills, 1);
    // Nothing new opens while killed, whatever its size.
    assert_eq!(
        e.place(0, StrategyMode::Scalp, manual(Side::Buy, "5")),
        Err(Denial::KillSwitch)
    );
    // Still inside the 10 s window: the retry on the next quote is denied again.
    book(&mut e, 2, T0 + 5_000);
    assert_eq!(
        e.positions().get(0, StrategyMode::Swing).qty(),
        Qty::parse("9").unwrap()
    );
    // Once the window has passed, the pending flatten completes on the next quote.
    book(&mut e, 3, T0 + 10_001);
    assert!(
        e.positions().get(0, StrategyMode::Swing).is_flat(),
        "swing flattened once the rate allowed"
    );
    // A "flatten" that would flip the position is not reduce-only-valid: denied.
    let flip = Signal {
        side: Side::Sell,
        intent: OrderIntent::Flatten,
        qty: Qty::parse("1").unwrap(),
        reduce_only: true,
    };
    assert_eq!(
        e.place(0, StrategyMode::Scalp, flip),
        Err(Denial::ReduceOnly)
    );
}
