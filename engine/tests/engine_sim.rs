//! The engine end to end on the simulated market and on a replay: orders and fills happen, positions and PnL add
//! up, runs are deterministic, commands / kill file / backpressure behave.

mod engine_support;

use aegis_engine::engine::FeedEnd;
use aegis_engine::feed::sim::{SimConfig, SimMarket};
use aegis_engine::queues::QueueConfig;
use aegis_engine::risk::limits::SymbolFilters;
use aegis_engine::risk::Denial;
use aegis_engine::strategy::scalp::ScalpParams;
use aegis_engine::{spawn, Engine, EngineParams, FeedSource, PinOutcome, SymbolSpec};
use aegis_shared::event::{
    AlertKind, EngineState, FeedState, Fill, HaltReason, OrderIntent, OrderStatus, PositionUpdate,
};
use aegis_shared::{Command, EngineEvent, Notional, Price, Qty, StrategyMode, Symbol};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn sim_source(seed: u64, limit: u64) -> FeedSource {
    FeedSource::Sim {
        seed,
        // Effectively unpaced (the engine runs as fast as it can); 50 ms of market time per message.
        rate: 2_000_000.0,
        speed: 100_000.0,
        symbols: vec![
            Symbol::new("BTCUSDT").unwrap(),
            Symbol::new("ETHUSDT").unwrap(),
        ],
        limit: Some(limit),
    }
}

fn params() -> EngineParams {
    EngineParams {
        session: 42,
        pin: false,
        on_feed_end: FeedEnd::Stop,
        sim_start_ms: Some(1_704_067_200_000),
        ..EngineParams::default()
    }
}

/// Collects every critical event until `Stopped`.
fn collect_until_stopped(h: &aegis_engine::EngineHandle) -> Vec<EngineEvent> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
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
        out.push(e);
        if stop {
            return out;
        }
    }
}

fn fills(ev: &[EngineEvent]) -> Vec<Fill> {
    ev.iter()
        .filter_map(|e| match e {
            EngineEvent::Fill(f) => Some(*f),
            _ => None,
        })
        .collect()
}

fn run_sim(seed: u64) -> (Vec<EngineEvent>, aegis_engine::EngineReport) {
    let h = spawn(params(), sim_source(seed, 500_000)).unwrap();
    assert_eq!(h.pinned, PinOutcome::Disabled);
    let ev = collect_until_stopped(&h);
    let report = h.join.join().unwrap();
    (ev, report)
}

#[test]
fn sim_trades_and_positions_add_up_deterministically() {
    let (ev, report) = run_sim(11);
    let f = fills(&ev);
    assert_eq!(report.counters.messages, 500_000);
    assert_eq!(report.counters.parse_errors, 0);
    assert!(
        report.counters.orders >= 4,
        "orders happen: {:?}",
        report.counters
    );
    assert_eq!(f.len() as u64, report.counters.fills);
    assert!(f.iter().any(|x| x.intent == OrderIntent::Entry));
    assert!(f.iter().any(|x| x.intent.is_exit()));
    assert_eq!(report.undeliverable, 0);

    // Per (symbol, mode): Σ fill realized == position realized, Σ fees == position fees, Σ signed qty == size.
    let mut sums: HashMap<(Symbol, StrategyMode), (Notional, Notional, Qty)> = HashMap::new();
    for x in &f {
        let s =
            sums.entry((x.symbol, x.mode))
                .or_insert((Notional::ZERO, Notional::ZERO, Qty::ZERO));
        s.0 += x.realized_pnl;
        s.1 += x.fee;
        s.2 += Qty::from_units(x.side.sign() * x.qty.units());
        // Trades are on the tick/step grid.
        let spec = if x.symbol.as_str() == "BTCUSDT" {
            SymbolSpec::btcusdt()
        } else {
            SymbolSpec::ethusdt()
        };
        assert!(
            x.price.is_multiple_of(spec.filters.tick_size)
                && x.qty.is_multiple_of(spec.filters.step_size)
        );
    }
    let mut last: HashMap<(Symbol, StrategyMode), PositionUpdate> = HashMap::new();
    for e in &ev {
        if let EngineEvent::Position(p) = e {
            last.insert((p.symbol, p.mode), *p);
        }
    }
    assert_eq!(sums.len(), last.len());
    for (k, (realized, fees, qty)) in &sums {
        let p = last[k];
        assert_eq!(p.realized_pnl, *realized, "{k:?}");
        assert_eq!(p.fees, *fees, "{k:?}");
        assert_eq!(p.qty, *qty, "{k:?}");
    }
    // Trade ids are unique per symbol; client ids unique.
    let mut ids = std::collections::HashSet::new();
    for x in &f {
        assert!(ids.insert((x.symbol, x.trade_id)));
    }
    // Every order reached a final state after NEW.
    let finals = ev
        .iter()
        .filter(|e| matches!(e, EngineEvent::Order(o) if o.status.is_final()))
        .count();
    assert_eq!(finals as u64, report.counters.orders);

    // Same seed, same fills (bit for bit); another seed trades differently.
    let (ev2, _) = run_sim(11);
    assert_eq!(fills(&ev2), f);
    let (ev3, _) = run_sim(12);
    assert_ne!(fills(&ev3), f);
}

#[test]
fn replay_of_a_recording_runs_to_the_end() {
    let path = engine_support::data("xrpeth-aggtrade-2019-10-11.jsonl");
    let p = EngineParams {
        symbols: vec![SymbolSpec {
            symbol: Symbol::new("XRPETH").unwrap(),
            filters: SymbolFilters {
                tick_size: Price::from_units(1),
                step_size: Qty::ONE,
                min_qty: Qty::ONE,
                min_notional: Notional::ZERO,
            },
        }],
        ..params()
    };
    let h = spawn(p, FeedSource::Replay { path, speed: None }).unwrap();
    let ev = collect_until_stopped(&h);
    let report = h.join.join().unwrap();
    assert_eq!(report.counters.messages, 12_477);
    assert_eq!(report.counters.parse_errors, 0);
    assert_eq!(report.counters.unknown_symbol, 0);
    assert!(matches!(
        ev[0],
        EngineEvent::State {
            state: EngineState::Running,
            ..
        }
    ));
    let ended = h.stats.try_iter().any(|e| matches!(e, EngineEvent::Stats(s) if s.feed == FeedState::Ended && s.messages == 12_477));
    assert!(ended, "FeedState::Ended reported");
    assert!(spawn(
        params(),
        FeedSource::Replay {
            path: "/nonexistent.jsonl".into(),
            speed: None
        }
    )
    .is_err());
}

fn drive_until(
    engine: &mut Engine,
    sim: &mut SimMarket,
    max: u64,
    mut done: impl FnMut(&Engine) -> bool,
) -> bool {
    for _ in 0..max {
        engine.on_message(sim.next_message());
        if done(engine) {
            return true;
        }
    }
    false
}

fn busy_scalp() -> ScalpParams {
    // Short indicators so a test sees entries within seconds of market time.
    ScalpParams {
        ema_fast: 3,
        ema_slow: 8,
        rsi_period: 5,
        volume_period: 5,
        volume_mult: 0.5,
        ..ScalpParams::default()
    }
}

fn sim() -> SimMarket {
    let mut cfg = SimConfig::new(5);
    cfg.speed = 50.0;
    SimMarket::new(cfg).unwrap()
}

#[test]
fn halt_kill_flatten_resume_and_shutdown() {
    let p = EngineParams {
        scalp: ScalpParams {
            max_hold_ms: u64::MAX,
            stop_loss: aegis_shared::num::Rate::ONE,
            take_profit: aegis_shared::num::Rate::ONE,
            ..busy_scalp()
        },
        ..params()
    };
    let (mut e, ctl) = Engine::with_channels(p).unwrap();
    let mut s = sim();
    let open = |e: &Engine| (0..2).any(|i| !e.positions().get(i, StrategyMode::Scalp).is_flat());
    assert!(
        drive_until(&mut e, &mut s, 2_000_000, open),
        "a position opened"
    );
    assert!(!e.on_command(Command::Halt));
    assert!(!e.on_command(Command::Kill { flatten: true }));
    assert!(!open(&e), "kill switch flattened everything");
    assert!(!e.on_command(Command::Resume));
    // Still halted by the kill switch: entries are refused with its code.
    let before = e.counters().denials[Denial::KillSwitch.code() as usize];
    drive_until(&mut e, &mut s, 400_000, |e| {
        e.counters().denials[Denial::KillSwitch.code() as usize] > before
    });
    assert!(
        e.counters().denials[Denial::KillSwitch.code() as usize] > before,
        "{:?}",
        e.counters()
    );
    assert!(!open(&e));
    assert!(e.on_command(Command::Shutdown));
    let report = e.shutdown();
    let ev: Vec<EngineEvent> = ctl.events.try_iter().collect();
    let states: Vec<EngineState> = ev
        .iter()
        .filter_map(|x| match x {
            EngineEvent::State { state, .. } => Some(*state),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        vec![
            EngineState::Running,
            EngineState::Halted {
                reason: HaltReason::Operator
            },
            EngineState::Halted {
                reason: HaltReason::KillSwitch
            },
            EngineState::Halted {
                reason: HaltReason::KillSwitch
            },
            EngineState::Halted {
                reason: HaltReason::KillSwitch
            },
            EngineState::Stopped,
        ]
    );
    assert!(ev.iter().any(|x| matches!(
        x,
        EngineEvent::Alert {
            kind: AlertKind::KillSwitch,
            ..
        }
    )));
    assert!(fills(&ev).iter().any(|f| f.intent == OrderIntent::Flatten));
    assert_eq!(report.counters.fills, fills(&ev).len() as u64);
}

#[test]
fn backpressure_halts_entries_and_loses_nothing() {
    let p = EngineParams {
        scalp: busy_scalp(),
        queues: QueueConfig {
            critical: 8,
            overflow: 100_000,
            stats: 16,
            commands: 4,
        },
        ..params()
    };
    let (mut e, ctl) = Engine::with_channels(p).unwrap();
    let mut s = sim();
    assert!(drive_until(&mut e, &mut s, 2_000_000, |e| e
        .sink()
        .backpressure()));
    assert!(
        e.gate().is_halted_for(HaltReason::Backpressure) || {
            e.housekeeping();
            e.gate().is_halted_for(HaltReason::Backpressure)
        }
    );
    let code = Denial::Backpressure.code() as usize;
    assert!(
        drive_until(&mut e, &mut s, 2_000_000, |e| e.counters().denials[code]
            > 0),
        "entries refused while backed up: {:?}",
        e.counters()
    );
    // The consumer catches up: everything arrives, in order, and entries resume.
    let mut got = Vec::new();
    for _ in 0..100 {
        got.extend(ctl.events.try_iter());
        e.housekeeping();
    }
    got.extend(ctl.events.try_iter());
    assert!(!e.sink().backpressure());
    assert!(!e.gate().is_halted_for(HaltReason::Backpressure));
    assert_eq!(fills(&got).len() as u64, e.counters().fills);
    let orders = got
        .iter()
        .filter(|x| matches!(x, EngineEvent::Order(o) if o.status == OrderStatus::New))
        .count();
    assert_eq!(orders as u64, e.counters().orders);
    assert!(matches!(
        got.last(),
        Some(EngineEvent::State {
            state: EngineState::Running,
            ..
        })
    ));
}

#[test]
fn kill_file_triggers_the_kill_switch_on_a_pinned_thread() {
    let dir = std::env::temp_dir().join(format!("aegis-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _ = std::fs::remove_file(dir.join("KILL"));
    let p = EngineParams {
        data_dir: Some(dir.clone()),
        pin: true,
        on_feed_end: FeedEnd::KeepRunning,
        ..params()
    };
    let h = spawn(p, FeedSource::default_sim()).unwrap();
    assert!(matches!(
        h.pinned,
        PinOutcome::Pinned { .. } | PinOutcome::Failed { .. } | PinOutcome::Unsupported
    ));
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(dir.join("KILL"), b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut killed = false;
    while Instant::now() < deadline && !killed {
        if let Ok(e) = h.events.recv_timeout(Duration::from_millis(50)) {
            killed = matches!(
                e,
                EngineEvent::Alert {
                    kind: AlertKind::KillSwitch,
                    ..
                }
            );
        }
    }
    assert!(killed, "KILL file noticed");
    // Heartbeats and stats (every ~1 s) flow on the droppable queue.
    let (mut hb, mut stats) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !(hb && stats) {
        if let Ok(e) = h.stats.recv_timeout(Duration::from_millis(50)) {
            hb |= matches!(e, EngineEvent::Heartbeat { .. });
            stats |=
                matches!(e, EngineEvent::Stats(s) if s.messages > 0 && s.feed == FeedState::Live);
        }
    }
    assert!(hb && stats);
    h.commands.send(Command::Shutdown).unwrap();
    let _ = collect_until_stopped(&h);
    h.join.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn feed_stale_beyond_the_hard_limit_fires_the_kill_switch_once() {
    let p = EngineParams {
        heartbeat_ms: 1,
        feed_stale_ms: 20,
        // Wide gaps between the limits so a loaded CI machine's scheduling cannot blur them.
        feed_kill_ms: 400,
        ..params()
    };
    let (mut e, ctl) = Engine::with_channels(p).unwrap();
    let mut s = sim();
    for _ in 0..1_000 {
        let m = s.next_message().to_vec();
        e.on_message(&m);
    }
    e.housekeeping();
    let alerts = |ev: &[EngineEvent], k: AlertKind| {
        ev.iter()
            .filter(|x| matches!(x, EngineEvent::Alert { kind, .. } if *kind == k))
            .count()
    };
    let mut ev: Vec<EngineEvent> = ctl.events.try_iter().collect();
    assert_eq!(
        alerts(&ev, AlertKind::KillSwitch),
        0,
        "a live feed kills nothing"
    );
    // Silence past the soft limit: halted as stale, not killed yet.
    std::thread::sleep(Duration::from_millis(35));
    e.housekeeping();
    ev.extend(ctl.events.try_iter());
    assert_eq!(alerts(&ev, AlertKind::FeedStale), 1);
    assert_eq!(alerts(&ev, AlertKind::KillSwitch), 0);
    // Past the hard limit: the kill switch, exactly once however long the silence lasts.
    std::thread::sleep(Duration::from_millis(420));
    for _ in 0..5 {
        e.housekeeping();
        std::thread::sleep(Duration::from_millis(2));
    }
    ev.extend(ctl.events.try_iter());
    assert_eq!(alerts(&ev, AlertKind::KillSwitch), 1, "{ev:?}");
    assert!(ev.iter().any(|x| matches!(
        x,
        EngineEvent::State {
            state: EngineState::Halted {
                reason: HaltReason::KillSwitch
            },
            ..
        }
    )));
}
