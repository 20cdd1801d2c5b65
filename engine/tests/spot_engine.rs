//! The engine on spot (`EngineParams::market = Spot`), on the paper venue and the simulated market: long only,
//! a buy's fee taken in the base asset shrinks the holding, what is left below the step size is dust the modes
//! and the kill switch leave alone, and a journal of the other market is refused.

mod engine_support;

use aegis_engine::engine::FeedEnd;
use aegis_engine::feed::sim::{SimConfig, SimMarket};
use aegis_engine::risk::limits::SymbolFilters;
use aegis_engine::risk::Denial;
use aegis_engine::strategy::scalp::ScalpParams;
use aegis_engine::venue::FeeRates;
use aegis_engine::{spawn, Engine, EngineError, EngineParams, FeedSource, SymbolSpec};
use aegis_shared::event::{EngineState, FeeConversion, PositionUpdate};
use aegis_shared::{
    Command, EngineEvent, Market, Notional, Price, Qty, Side, StrategyMode, Symbol,
};
use engine_support::{fills, positions};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn spec(symbol: &str, tick: &str, step: &str) -> SymbolSpec {
    SymbolSpec {
        symbol: Symbol::new(symbol).unwrap(),
        filters: SymbolFilters {
            tick_size: Price::parse(tick).unwrap(),
            step_size: Qty::parse(step).unwrap(),
            min_qty: Qty::parse(step).unwrap(),
            min_notional: Notional::from_int(5),
        },
    }
}

/// Binance spot's BTCUSDT and ETHUSDT filters (tick 0.01, steps 0.00001 and 0.0001, NOTIONAL 5).
fn spot_specs() -> Vec<SymbolSpec> {
    vec![
        spec("BTCUSDT", "0.01", "0.00001"),
        spec("ETHUSDT", "0.01", "0.0001"),
    ]
}

fn params(market: Market, symbols: Vec<SymbolSpec>) -> EngineParams {
    // Binance spot's base rate, 0.1 % maker and taker (the control plane sets it from FEE_* / MARKETS).
    let spot = aegis_shared::num::Rate::from_units(100_000);
    EngineParams {
        market,
        fees: FeeRates {
            maker: spot,
            taker: spot,
        },
        symbols,
        session: 42,
        pin: false,
        on_feed_end: FeedEnd::Stop,
        sim_start_ms: Some(1_704_067_200_000),
        ..EngineParams::default()
    }
}

fn source(seed: u64) -> FeedSource {
    FeedSource::Sim {
        seed,
        rate: 2_000_000.0,
        speed: 100_000.0,
        symbols: vec![
            Symbol::new("BTCUSDT").unwrap(),
            Symbol::new("ETHUSDT").unwrap(),
        ],
        limit: Some(500_000),
    }
}

fn run(p: EngineParams, seed: u64) -> (Vec<EngineEvent>, aegis_engine::EngineReport) {
    let h = spawn(p, source(seed)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ev = Vec::new();
    loop {
        let e = h
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("engine stopped in time");
        let stop = matches!(
            e,
            EngineEvent::State {
                state: EngineState::Stopped,
                ..
            }
        );
        ev.push(e);
        if stop {
            break;
        }
    }
    (ev, h.join.join().unwrap())
}

#[test]
fn spot_is_long_only_and_a_buys_base_fee_shrinks_the_holding() {
    // The same market on futures goes short: the rule is what keeps spot long.
    let (fut, _) = run(params(Market::Futures, spot_specs()), 11);
    assert!(
        positions(&fut).iter().any(|p| p.qty.units() < 0),
        "the futures run shorts this market"
    );
    assert!(fills(&fut).iter().all(|f| f.market == Market::Futures));

    let (ev, report) = run(params(Market::Spot, spot_specs()), 11);
    let f = fills(&ev);
    assert!(f.iter().any(|x| x.side == Side::Buy) && f.iter().any(|x| x.side == Side::Sell));
    assert!(
        report.counters.denials[Denial::SpotShort.code() as usize] > 0,
        "the modes wanted to short and were refused: {:?}",
        report.counters.denials
    );
    let pos = positions(&ev);
    assert!(
        pos.iter().all(|p| p.qty.units() >= 0),
        "never short on spot"
    );
    assert!(pos.iter().all(|p| p.market == Market::Spot));
    assert!(ev
        .iter()
        .all(|e| !matches!(e, EngineEvent::Order(o) if o.market != Market::Spot)));

    let rate = Notional::from_units(100_000); // 0.1 % at 10⁻⁸
    let mut held: HashMap<(Symbol, StrategyMode), (Qty, Notional)> = HashMap::new();
    for x in &f {
        assert_eq!(x.market, Market::Spot);
        let base = x.symbol.base_asset().unwrap();
        let h = held
            .entry((x.symbol, x.mode))
            .or_insert((Qty::ZERO, Notional::ZERO));
        match x.side {
            Side::Buy => {
                // 0.1 % of the quantity, in the base asset, valued at the fill price.
                assert_eq!(x.fee_asset, base, "{x:?}");
                let want = Notional::from_units(x.qty.units())
                    .mul_rate(aegis_shared::num::Rate::from_units(rate.units()));
                assert_eq!(x.fee, want, "{x:?}");
                assert_eq!(
                    x.fee_conv,
                    FeeConversion::Converted {
                        price: x.price,
                        quote: x.price.notional(Qty::from_units(x.fee.units()))
                    }
                );
                h.0 = h.0 + x.qty - Qty::from_units(x.fee.units());
            }
            Side::Sell => {
                assert_eq!(x.fee_asset.as_str(), "USDT", "{x:?}");
                assert_eq!(x.fee_conv, FeeConversion::Quote);
                h.0 -= x.qty;
            }
        }
        h.1 += x.quote_fee();
        assert!(h.0.units() >= 0, "sold more than held: {x:?}");
    }
    let mut last: HashMap<(Symbol, StrategyMode), PositionUpdate> = HashMap::new();
    for p in pos {
        last.insert((p.symbol, p.mode), p);
    }
    for (k, (qty, fees)) in &held {
        // What the account holds is what was bought less the fees taken from it, less what was sold.
        assert_eq!(last[k].qty, *qty, "{k:?}");
        assert_eq!(last[k].fees, *fees, "{k:?}");
    }
}

#[test]
fn dust_below_the_step_is_left_and_the_kill_switch_flatten_finishes() {
    // A coarse step (0.001 BTC) so every base fee leaves dust: buy 0.010, fee 0.00001, hold 0.00999, sell 0.009.
    let p = EngineParams {
        scalp: ScalpParams {
            ema_fast: 3,
            ema_slow: 8,
            rsi_period: 5,
            volume_period: 5,
            volume_mult: 0.5,
            max_hold_ms: u64::MAX,
            stop_loss: aegis_shared::num::Rate::ONE,
            take_profit: aegis_shared::num::Rate::ONE,
            ..ScalpParams::default()
        },
        ..params(
            Market::Spot,
            vec![
                spec("BTCUSDT", "0.1", "0.001"),
                spec("ETHUSDT", "0.01", "0.001"),
            ],
        )
    };
    let (mut e, ctl) = Engine::with_channels(p).unwrap();
    let mut cfg = SimConfig::new(5);
    cfg.speed = 50.0;
    let mut sim = SimMarket::new(cfg).unwrap();
    let held = |e: &Engine| {
        (0..2).any(|i| {
            StrategyMode::ALL
                .iter()
                .any(|m| e.positions().get(i, *m).qty().units() > 0)
        })
    };
    let mut opened = false;
    for _ in 0..2_000_000 {
        e.on_message(sim.next_message());
        if held(&e) {
            opened = true;
            break;
        }
    }
    assert!(opened, "a spot position opened");
    assert!(!e.on_command(Command::Kill { flatten: true }));
    // The flatten sold what could be sold; the rest is dust below the step, and nothing keeps trying.
    for _ in 0..20_000 {
        e.on_message(sim.next_message());
    }
    let orders_after_kill = e.counters().orders;
    for _ in 0..20_000 {
        e.on_message(sim.next_message());
    }
    assert_eq!(
        e.counters().orders,
        orders_after_kill,
        "no endless flatten of dust"
    );
    let mut dust = Qty::ZERO;
    for i in 0..2 {
        let step = Qty::parse("0.001").unwrap();
        for m in StrategyMode::ALL {
            let q = e.positions().get(i, m).qty();
            assert!(q.units() >= 0 && q.units() < step.units(), "{m:?}: {q}");
            dust += q;
        }
    }
    assert!(dust.units() > 0, "the base fee left dust");
    e.on_command(Command::Shutdown);
    e.shutdown();
    let ev: Vec<EngineEvent> = ctl.events.try_iter().collect();
    let f = fills(&ev);
    assert!(f.iter().any(|x| x.side == Side::Sell), "the flatten sold");
    assert!(f
        .iter()
        .filter(|x| x.side == Side::Sell)
        .all(|x| x.qty.is_multiple_of(Qty::parse("0.001").unwrap())));
}

#[test]
fn a_spot_trade_sold_down_to_dust_is_a_closed_trade_for_the_losing_streak_breaker() {
    // Every exit leaves the base fee's dust, so the position never reaches zero; the losing-streak breaker must
    // still see each closed trade. One loss trips it.
    let p = EngineParams {
        breakers: aegis_engine::risk::breaker::BreakerConfig {
            max_consecutive_losses: 1,
            ..Default::default()
        },
        ..params(Market::Spot, spot_specs())
    };
    let (ev, _) = run(p, 11);
    assert!(
        fills(&ev).iter().any(|f| f.side == Side::Sell),
        "the spot run exited a trade"
    );
    assert!(
        positions(&ev)
            .iter()
            .any(|p| p.qty.units() > 0 && p.qty.units() < 1_000),
        "an exit left dust below the step"
    );
    assert!(
        ev.iter().any(|e| matches!(e, EngineEvent::Breaker(_))),
        "the losing streak breaker tripped on a spot trade"
    );
}

#[test]
fn a_journal_of_the_other_market_or_a_spot_short_is_refused() {
    let u = PositionUpdate {
        ts_ms: 1,
        symbol: Symbol::new("BTCUSDT").unwrap(),
        market: Market::Futures,
        mode: StrategyMode::Scalp,
        qty: Qty::parse("0.5").unwrap(),
        entry_price: Price::from_int(50_000),
        realized_pnl: Notional::ZERO,
        fees: Notional::ZERO,
        funding: Notional::ZERO,
    };
    let with = |u: PositionUpdate| EngineParams {
        restored_positions: vec![u],
        ..params(Market::Spot, spot_specs())
    };
    let Err(e) = Engine::with_channels(with(u)) else {
        panic!("a futures journal restored into a spot run");
    };
    assert!(matches!(
        e,
        EngineError::OtherMarket(Market::Futures, _, Market::Spot)
    ));
    assert!(e.to_string().contains("DATA_DIR"), "{e}");
    let short = PositionUpdate {
        market: Market::Spot,
        qty: Qty::parse("-0.5").unwrap(),
        ..u
    };
    assert!(matches!(
        Engine::with_channels(with(short)).err(),
        Some(EngineError::SpotShort(_))
    ));
    let spot = PositionUpdate {
        market: Market::Spot,
        ..u
    };
    let (e, _ctl) = Engine::with_channels(with(spot)).unwrap();
    assert_eq!(e.positions().get(0, StrategyMode::Scalp).qty(), spot.qty);
}

/// Spot with the live venue is a valid engine now (it used to be refused as `SpotLive`): the live Binance venue
/// trades spot too.
#[test]
fn spot_with_a_live_link_starts_on_the_live_venue() {
    let (live, _gateway) = aegis_engine::venue::binance::link();
    let p = EngineParams {
        live: Some(live),
        ..params(Market::Spot, spot_specs())
    };
    let (mut e, ctl) = Engine::with_channels(p).expect("spot on the live venue");
    // Nothing reached the exchange, so nothing is working; the engine runs.
    e.poll_venue();
    assert!(ctl.events.try_iter().any(|ev| matches!(
        ev,
        EngineEvent::State {
            state: EngineState::Running,
            ..
        }
    )));
}
