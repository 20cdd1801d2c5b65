//! Backtests over the recorded data in `../shared/data/`: they run to the end, and their reports add up against
//! the raw engine events (fills → PnL and fees, per-mode sums → totals, no limit exceeded), reproducibly.

mod engine_support;

use aegis_engine::backtest::{self, BacktestOptions, BacktestReport};
use aegis_engine::EngineParams;
use aegis_shared::event::{Fill, PositionUpdate};
use aegis_shared::quote::{QuoteError, QuoteUsd};
use aegis_shared::{EngineEvent, Notional, StrategyMode};
use engine_support::{data, limits, short_bars, xrpusdc};
use std::collections::HashMap;
use std::path::PathBuf;

fn xrpeth() -> PathBuf {
    data("xrpeth-aggtrade-2019-10-11.jsonl")
}
fn xrpusdt() -> PathBuf {
    data("xrpusdt-perp-kline5m-2021-11-15.jsonl")
}

/// ETH's USD price around the XRPETH recording (2019-10-11), for the runs that convert the USD settings.
fn eth() -> QuoteUsd {
    QuoteUsd::parse("ETH=180").unwrap()
}

fn eth_opts() -> BacktestOptions {
    BacktestOptions {
        quote_usd: vec![eth()],
        ..BacktestOptions::default()
    }
}

/// Settings that make every bar mode trade on a few days of data (shorter bars than the defaults), with
/// limits loose enough for the strategies to run but tight enough to be exercised.
fn params() -> EngineParams {
    short_bars(EngineParams {
        limits: limits(500, 1_000),
        pin: false,
        ..EngineParams::default()
    })
}

struct Run {
    report: BacktestReport,
    events: Vec<EngineEvent>,
    progress: Vec<(u64, u64)>,
}

fn run(files: &[PathBuf], p: EngineParams, opts: &BacktestOptions) -> Run {
    let mut events = Vec::new();
    let mut progress = Vec::new();
    let report = backtest::run_with_events(
        p,
        files,
        opts,
        |d, t| progress.push((d, t)),
        |e| events.push(*e),
    )
    .expect("backtest runs");
    Run {
        report,
        events,
        progress,
    }
}

fn fills(events: &[EngineEvent]) -> Vec<Fill> {
    events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Fill(f) => Some(*f),
            _ => None,
        })
        .collect()
}

/// Everything that must hold for any report, checked against the raw events.
fn check_consistency(r: &Run, p: &EngineParams) {
    let rep = &r.report;
    let fl = fills(&r.events);
    assert_eq!(rep.total.fills as usize, fl.len(), "fills counted");
    assert_eq!(rep.run.fills as usize, fl.len());
    let gross: Notional = fl
        .iter()
        .map(|f| f.realized_pnl)
        .fold(Notional::ZERO, |a, b| a + b);
    let fees: Notional = fl
        .iter()
        .map(|f| f.quote_fee())
        .fold(Notional::ZERO, |a, b| a + b);
    assert_eq!(
        rep.total.gross_pnl, gross,
        "sum of fills' realized PnL == gross PnL"
    );
    assert_eq!(rep.total.fees, fees, "sum of fill fees == fees");
    assert_eq!(rep.total.net_pnl, rep.total.gross_pnl - rep.total.fees);

    // Issue 14: the report names the market each symbol's fills were booked on, as the fill events say.
    let mut markets = Vec::new();
    for x in &fl {
        if !markets.contains(&x.market) {
            markets.push(x.market);
        }
    }
    assert_eq!(rep.run.markets, markets, "run markets from the fills");
    for s in &rep.symbols {
        let mine = fl.iter().find(|x| x.symbol.as_str() == s.symbol);
        assert_eq!(s.market, mine.map(|x| x.market), "{} market", s.symbol);
    }

    // Per mode: the same sums over that mode's fills, and the modes add up to the total.
    let (mut g, mut f, mut n, mut t, mut w, mut o, mut fc) =
        (Notional::ZERO, Notional::ZERO, Notional::ZERO, 0, 0, 0, 0);
    for m in &rep.modes {
        let mine: Vec<&Fill> = fl.iter().filter(|x| x.mode.as_str() == m.mode).collect();
        assert_eq!(m.fills as usize, mine.len(), "{}", m.mode);
        assert_eq!(
            m.gross_pnl,
            mine.iter().fold(Notional::ZERO, |a, x| a + x.realized_pnl),
            "{}",
            m.mode
        );
        assert_eq!(
            m.fees,
            mine.iter().fold(Notional::ZERO, |a, x| a + x.quote_fee()),
            "{}",
            m.mode
        );
        assert_eq!(m.net_pnl, m.gross_pnl - m.fees);
        assert_eq!(m.equity_end, m.net_pnl + m.unrealized_pnl);
        assert!(m.wins + m.losses <= m.trades);
        assert!(m.max_drawdown >= Notional::ZERO && m.max_drawdown_realized >= Notional::ZERO);
        assert!(m.curve.len() <= backtest::MAX_CURVE_POINTS);
        assert!(
            m.curve.windows(2).all(|w| w[0].t_ms <= w[1].t_ms),
            "curve in time order"
        );
        // On spot what is left below the step or the minimums counts as flat but still holds coins marked to
        // market, so only futures' flat means no unrealized PnL.
        if m.open_positions_end == 0 && p.market == aegis_shared::Market::Futures {
            assert_eq!(m.unrealized_pnl, Notional::ZERO);
        }
        g += m.gross_pnl;
        f += m.fees;
        n += m.net_pnl;
        t += m.trades;
        w += m.wins;
        o += m.orders;
        fc += m.fills;
    }
    assert_eq!(
        (g, f, n),
        (rep.total.gross_pnl, rep.total.fees, rep.total.net_pnl),
        "per-mode sums == totals"
    );
    assert_eq!(
        (t, w, o, fc),
        (
            rep.total.trades,
            rep.total.wins,
            rep.total.orders,
            rep.total.fills
        )
    );
    assert_eq!(
        rep.total.orders, rep.run.orders,
        "orders seen as events == orders the engine counted"
    );
    let trips: u64 =
        rep.modes.iter().map(|m| m.breaker_trips).sum::<u64>() + rep.run.global_breaker_trips;
    assert_eq!(rep.total.breaker_trips, trips);
    assert_eq!(
        rep.run.trips_hourly_loss + rep.run.trips_consecutive_losses + rep.run.trips_daily_loss,
        trips
    );
    assert_eq!(
        rep.run.denials_total,
        rep.run.denials.iter().map(|d| d.count).sum::<u64>()
    );
    let sym_gross = rep
        .symbols
        .iter()
        .fold(Notional::ZERO, |a, s| a + s.gross_pnl);
    assert_eq!(sym_gross, rep.total.gross_pnl, "per-symbol sums == totals");

    // Round trips recounted independently from the position updates.
    let mut sign: HashMap<(String, StrategyMode), i64> = HashMap::new();
    let mut trades = 0u64;
    for e in &r.events {
        if let EngineEvent::Position(u) = e {
            // On spot less than one step is dust the engine cannot sell: the trade closed there.
            let step = rep
                .symbols
                .iter()
                .find(|s| s.symbol == u.symbol.as_str())
                .map(|s| aegis_shared::Qty::parse(&s.step_size).unwrap())
                .unwrap();
            let q = if p.market == aegis_shared::Market::Spot {
                u.qty.floor_to(step)
            } else {
                u.qty
            };
            let s = sign
                .entry((u.symbol.as_str().to_owned(), u.mode))
                .or_insert(0);
            if *s != 0 && q.signum() != *s {
                trades += 1;
            }
            *s = q.signum();
        }
    }
    assert_eq!(rep.total.trades, trades, "round trips");

    // No limit exceeded at fill time: each position's notional at its fill price stays within the max position
    // size, and no mode ever holds more positions than its allocation allows.
    let mut last_fill: Option<Fill> = None;
    let mut open: HashMap<(String, StrategyMode), bool> = HashMap::new();
    for e in &r.events {
        match e {
            EngineEvent::Fill(f) => last_fill = Some(*f),
            EngineEvent::Position(u) => {
                let f = last_fill.expect("a position update follows a fill");
                check_position_limit(&f, u, p);
                open.insert((u.symbol.as_str().to_owned(), u.mode), !u.qty.is_zero());
                let held = open.iter().filter(|(k, v)| k.1 == u.mode && **v).count() as u32;
                assert!(held <= p.allocation.mode(u.mode).max_positions, "{u:?}");
            }
            _ => {}
        }
    }
    for m in &rep.modes {
        assert!(
            m.max_position_notional <= p.limits.max_position_usd,
            "{}",
            m.mode
        );
        let mode = StrategyMode::parse(&m.mode).expect("mode name");
        assert!(m.max_open_positions <= p.allocation.mode(mode).max_positions);
    }
    assert!(!r.progress.is_empty());
    let (d, t) = *r.progress.last().expect("progress");
    assert_eq!(d, t, "progress ends at 100 %");
    assert!(
        r.progress.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress never goes back"
    );
}

fn check_position_limit(f: &Fill, u: &PositionUpdate, p: &EngineParams) {
    assert_eq!((f.symbol, f.mode), (u.symbol, u.mode));
    let after = f.price.notional(u.qty.abs());
    if !f.intent.is_exit() {
        assert!(
            after <= p.limits.max_position_usd,
            "entry {f:?} left {after} open"
        );
    }
}

#[test]
fn xrpusdt_klines_run_to_the_end_and_add_up() {
    let p = params();
    let r = run(&[xrpusdt()], p.clone(), &BacktestOptions::default());
    let rep = &r.report;
    assert_eq!(rep.run.messages, 1999, "every line processed");
    assert_eq!(rep.run.parse_errors, 0);
    assert_eq!(
        rep.run.synthetic_quotes, 1999,
        "one synthesized quote per kline"
    );
    let s = &rep.symbols[0];
    assert_eq!(
        (
            s.symbol.as_str(),
            s.tick_size.as_str(),
            s.step_size.as_str(),
            s.min_notional.as_str()
        ),
        ("XRPUSDT", "0.0001", "0.1", "5")
    );
    assert_eq!(s.quote_asset.as_deref(), Some("USDT"));
    // Klines only: swing and position run; scalp needs trades and ultra_fast a real book.
    let ran: Vec<&str> = rep.modes.iter().map(|m| m.mode.as_str()).collect();
    assert_eq!(ran, ["swing", "position"]);
    let skipped: Vec<StrategyMode> = rep.modes_skipped.iter().map(|s| s.mode).collect();
    assert_eq!(skipped, [StrategyMode::UltraFastScalp, StrategyMode::Scalp]);
    assert!(
        rep.total.fills > 0 && rep.total.trades > 0,
        "the strategies traded: {rep}"
    );
    assert_eq!(rep.run.first_event_utc, "2021-11-15T00:05:00.000Z");
    check_consistency(&r, &p);
}

/// Issue 14: a spot run's report says spot on the run and on every traded symbol (the JSON too), taken from the
/// fills the paper venue booked, not from a constant.
#[test]
fn a_spot_run_reports_its_market() {
    let p = EngineParams {
        market: aegis_shared::Market::Spot,
        ..params()
    };
    let r = run(&[xrpusdt()], p.clone(), &BacktestOptions::default());
    let rep = &r.report;
    assert!(rep.total.fills > 0, "the strategies traded spot: {rep}");
    assert!(fills(&r.events)
        .iter()
        .all(|f| f.market == aegis_shared::Market::Spot));
    assert_eq!(rep.run.markets, [aegis_shared::Market::Spot]);
    assert_eq!(rep.symbols[0].market, Some(aegis_shared::Market::Spot));
    let v: serde_json::Value = serde_json::from_str(&rep.to_json()).unwrap();
    assert_eq!(v["run"]["markets"], serde_json::json!(["spot"]));
    assert_eq!(v["symbols"][0]["market"], "spot");
    assert!(rep.to_string().contains("Market: spot"), "{rep}");
    check_consistency(&r, &p);
}

#[test]
fn xrpeth_trades_run_to_the_end_and_add_up() {
    let p = params();
    let r = run(&[xrpeth()], p.clone(), &eth_opts());
    let rep = &r.report;
    assert_eq!(rep.run.messages, 12_477);
    assert_eq!(rep.run.parse_errors, 0);
    let s = &rep.symbols[0];
    assert_eq!(
        (
            s.symbol.as_str(),
            s.tick_size.as_str(),
            s.step_size.as_str()
        ),
        ("XRPETH", "0.00000001", "1")
    );
    assert_eq!(s.quote_asset.as_deref(), Some("ETH"));
    let ran: Vec<&str> = rep.modes.iter().map(|m| m.mode.as_str()).collect();
    assert_eq!(ran, ["scalp", "swing", "position"]);
    assert!(rep.total.fills > 0, "the strategies traded: {rep}");
    // The USD settings were held in ETH: $500 per position is 2.77777777 ETH, not 500 ETH.
    let in_eth = p.clone().usd_in_quote_units(eth().usd).unwrap();
    assert_eq!(
        in_eth.limits.max_position_usd,
        Notional::parse("2.77777777").unwrap()
    );
    assert_eq!(rep.settings.max_position, in_eth.limits.max_position_usd);
    assert_eq!(
        rep.settings.usd_settings_converted_at.as_deref(),
        Some("1 ETH = 180 USD")
    );
    assert!(
        rep.to_string().contains("converted at 1 ETH = 180 USD"),
        "{rep}"
    );
    check_consistency(&r, &in_eth);
}

#[test]
fn non_dollar_data_without_a_price_and_mixed_quotes_are_refused() {
    let e = backtest::run(
        params(),
        &[xrpeth()],
        &BacktestOptions::default(),
        |_, _| {},
    )
    .expect_err("XRPETH needs ETH's USD price");
    assert!(
        matches!(
            e,
            backtest::BacktestError::Quote(QuoteError::NeedsPrice { asset: "ETH", .. })
        ),
        "{e}"
    );
    let m = e.to_string();
    assert!(
        m.contains("--quote-usd ETH=") && m.contains("500 ETH"),
        "{m}"
    );
    let e = backtest::run(params(), &[xrpusdt(), xrpeth()], &eth_opts(), |_, _| {})
        .expect_err("ETH and USD amounts cannot share one run");
    assert!(
        matches!(e, backtest::BacktestError::Quote(QuoteError::Mixed { .. })),
        "{e}"
    );
}

#[test]
fn both_files_merge_by_event_time_and_reports_are_byte_identical() {
    let p = params();
    let files = [xrpusdt(), xrpusdc()];
    let a = run(&files, p.clone(), &BacktestOptions::default());
    check_consistency(&a, &p);
    assert_eq!(a.report.run.messages, 12_477 + 1999);
    assert!(a.report.run.mixed_quote_assets);
    assert_eq!(a.report.run.quote_assets, ["USDC", "USDT"]);
    // Merged by event time: the 2019 fills come before the 2021 ones although the 2021 file was given first.
    let fl = fills(&a.events);
    assert!(
        fl.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms),
        "fills in event-time order"
    );
    assert_eq!(fl.first().map(|f| f.symbol.as_str()), Some("XRPUSDC"));
    let b = run(&files, p.clone(), &BacktestOptions::default());
    let (ja, jb) = (a.report.to_json(), b.report.to_json());
    assert_eq!(ja, jb, "same input → byte-identical JSON");
    assert_eq!(a.report.to_string(), b.report.to_string());
    let v: serde_json::Value = serde_json::from_str(&ja).expect("valid JSON");
    assert_eq!(
        v["run"]["denials"].as_object().map(|m| m.len()),
        Some(aegis_shared::event::DENIAL_REASONS),
        "denials by name"
    );
    assert!(v["run"]["denials"].get("position_too_large").is_some());
    assert!(
        v["total"]["gross_pnl"].is_string(),
        "amounts are exact decimal strings"
    );
}

#[test]
fn mode_selection_and_flatten_at_end() {
    let p = params();
    let opts = BacktestOptions {
        modes: Some(vec![StrategyMode::Swing]),
        flatten_at_end: true,
        ..BacktestOptions::default()
    };
    let r = run(&[xrpusdt()], p.clone(), &opts);
    let ran: Vec<&str> = r.report.modes.iter().map(|m| m.mode.as_str()).collect();
    assert_eq!(ran, ["swing"]);
    assert!(r.report.modes_skipped.is_empty());
    assert!(fills(&r.events)
        .iter()
        .all(|f| f.mode == StrategyMode::Swing));
    assert_eq!(r.report.total.open_positions_end, 0, "flattened");
    assert_eq!(r.report.total.unrealized_pnl, Notional::ZERO);
    assert_eq!(r.report.total.equity_end, r.report.total.net_pnl);
    check_consistency(&r, &p);

    let only_fast = BacktestOptions {
        modes: Some(vec![StrategyMode::UltraFastScalp]),
        ..BacktestOptions::default()
    };
    let err =
        backtest::run(p, &[xrpusdt()], &only_fast, |_, _| {}).expect_err("no book in the data");
    assert!(err.to_string().contains("bookTicker"), "{err}");
}

#[test]
fn tight_limits_are_enforced_and_denials_reported() {
    // $30 per position: every entry the strategies ask for ($200–$750) is too large.
    let mut p = params();
    p.limits.max_position_usd = Notional::from_int(30);
    p.scalp.notional = Notional::from_int(200);
    let r = run(&[xrpusdt()], p.clone(), &BacktestOptions::default());
    // Swing/position entries are capped to the limit by the engine; whatever filled respects it.
    check_consistency(&r, &p);
    let mut p2 = params();
    p2.limits.max_position_usd = Notional::from_int(30);
    let r2 = run(&[xrpeth()], p2.clone(), &eth_opts());
    check_consistency(&r2, &p2.clone().usd_in_quote_units(eth().usd).unwrap());
    let denied = r2
        .report
        .run
        .denials
        .iter()
        .find(|d| aegis_engine::risk::gate::Denial::PositionTooLarge == d.reason)
        .map(|d| d.count);
    assert!(
        denied > Some(0),
        "scalp's $200 entries (1.11 ETH) over the $30 limit (0.17 ETH) were denied: {}",
        r2.report
    );
    assert!(
        r2.report
            .mode(StrategyMode::Scalp)
            .is_some_and(|m| m.fills == 0),
        "no scalp entry got through"
    );
}

#[test]
fn bad_input_gives_clear_errors() {
    let p = params();
    let o = BacktestOptions::default();
    let e = backtest::run(p.clone(), &[], &o, |_, _| {}).expect_err("no files");
    assert!(e.to_string().contains("no data files"));
    let e = backtest::run(p.clone(), &[data("nope.jsonl")], &o, |_, _| {}).expect_err("missing");
    assert!(e.to_string().contains("nope.jsonl"), "{e}");
    let dir = std::env::temp_dir().join(format!("aegis-bt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let junk = dir.join("junk.jsonl");
    std::fs::write(&junk, "hello\n{\"not\":\"binance\"}\n").expect("write");
    let e = backtest::run(p, &[junk], &o, |_, _| {}).expect_err("no market data");
    assert!(e.to_string().contains("no market data"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
