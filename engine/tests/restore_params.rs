//! `EngineParams::restored_breakers` and `EngineParams::allowlist` take effect in `Engine::new`: a trip journaled
//! before a restart still refuses entries (exits pass), and a symbol outside the allowlist only takes exits.

use aegis_engine::risk::breaker::BreakerBankSnapshot;
use aegis_engine::risk::limits::{LimitDenial, OrderCheck};
use aegis_engine::{Engine, EngineParams, SymbolSpec};
use aegis_shared::event::{BreakerChange, BreakerEvent, BreakerScope, TripReason};
use aegis_shared::{Notional, Price, Qty, StrategyMode};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn a_restored_trip_blocks_entries_until_its_end() {
    let t = now();
    let until = t + 3_600_000;
    let events = [
        BreakerEvent {
            ts_ms: t - 10,
            scope: BreakerScope::Mode(StrategyMode::Swing),
            change: BreakerChange::Tripped {
                reason: TripReason::HourlyLoss,
                until_ms: until,
            },
        },
        BreakerEvent {
            ts_ms: t - 5,
            scope: BreakerScope::Mode(StrategyMode::Swing),
            change: BreakerChange::Reset,
        },
        BreakerEvent {
            ts_ms: t - 1,
            scope: BreakerScope::Global,
            change: BreakerChange::Tripped {
                reason: TripReason::ConsecutiveLosses,
                until_ms: until,
            },
        },
    ];
    let (e, _ctl) = Engine::with_channels(EngineParams {
        pin: false,
        restored_breakers: BreakerBankSnapshot::from_events(events.iter()),
        ..EngineParams::default()
    })
    .unwrap();
    let b = e
        .gate()
        .breakers
        .check_entry(StrategyMode::Scalp, t)
        .unwrap_err();
    assert_eq!(b.scope, BreakerScope::Global);
    assert_eq!(b.trip.until_ms, until);
    assert!(e
        .gate()
        .breakers
        .check_entry(StrategyMode::Scalp, until)
        .is_ok());
    // The swing trip was reset before the restart: only the global one remains.
    assert!(e
        .gate()
        .breakers
        .breaker(BreakerScope::Mode(StrategyMode::Swing))
        .trip()
        .is_none());

    // Without restored state nothing is tripped.
    let (fresh, _c) = Engine::with_channels(EngineParams {
        pin: false,
        ..EngineParams::default()
    })
    .unwrap();
    assert!(fresh
        .gate()
        .breakers
        .check_entry(StrategyMode::Scalp, t)
        .is_ok());
}

#[test]
fn symbols_outside_the_allowlist_only_take_exits() {
    let eth = SymbolSpec::ethusdt();
    let btc = SymbolSpec::btcusdt();
    let (mut e, _ctl) = Engine::with_channels(EngineParams {
        pin: false,
        symbols: vec![btc, eth],
        allowlist: vec![eth.symbol],
        ..EngineParams::default()
    })
    .unwrap();
    let order = |symbol, exit| OrderCheck {
        symbol,
        exit,
        price: Price::from_int(30_000),
        tick_checked: false,
        qty: Qty::parse("0.01").unwrap(),
        position_notional_after: Notional::from_int(300),
        leverage: 1,
    };
    let t = now();
    let limits = &mut e.gate_mut().limits;
    assert_eq!(
        limits.check(t, &order(btc.symbol, false)),
        Err(LimitDenial::SymbolNotAllowed)
    );
    assert_eq!(limits.check(t, &order(btc.symbol, true)), Ok(()));
    assert_eq!(limits.check(t, &order(eth.symbol, false)), Ok(()));
}
