//! Per-stage benches of the hot path — book update, each mode's signal update, the risk gate — plus the whole
//! tick → signed order bytes step and the throughput of the engine's message path.

use aegis_benches::fixtures;
use aegis_engine::book::TopOfBook;
use aegis_engine::feed::parse::{BookTicker, MarketMsg, Parser};
use aegis_engine::risk::breaker::BreakerConfig;
use aegis_engine::risk::gate::{RiskContext, RiskGate};
use aegis_engine::risk::limits::LimitsConfig;
use aegis_engine::strategy::{
    position::PositionMode, scalp::Scalp, swing::Swing, ultra_fast::UltraFast, ModeStrategy,
    PosView, SymbolInfo,
};
use aegis_engine::SymbolSpec;
use aegis_shared::event::{OrderIntent, OrderType};
use aegis_shared::{Price, Qty, Side, StrategyMode};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::time::Duration;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

/// Sim messages pre-parsed (bookTicker and aggTrade are `Copy` and borrow nothing).
enum Ev {
    Book(usize, BookTicker),
    Trade(usize, aegis_engine::feed::parse::AggTrade),
}

fn events(msgs: &[Vec<u8>]) -> Vec<Ev> {
    let btc = SymbolSpec::btcusdt().symbol;
    let mut p = Parser::new();
    msgs.iter()
        .filter_map(|m| match p.parse(m).ok()? {
            MarketMsg::BookTicker(t) => Some(Ev::Book(usize::from(t.symbol != btc), t)),
            MarketMsg::AggTrade(t) => Some(Ev::Trade(usize::from(t.symbol != btc), t)),
            _ => None,
        })
        .collect()
}

fn book(c: &mut Criterion) {
    let mut g = c.benchmark_group("book");
    let mut p = Parser::new();
    let Ok(MarketMsg::BookTicker(t0)) = p.parse(fixtures::BOOK_TICKER) else {
        unreachable!("fixture parses")
    };
    let mut top = TopOfBook::default();
    let mut t = t0;
    g.bench_function("top_of_book_update", |b| {
        b.iter(|| {
            t.update_id += 1;
            t.bid = Price::from_units(t.bid.units() ^ 1_000_000);
            top.update(black_box(&t))
        })
    });

    // L2: a 10-level-a-side diff applied to a 1000-level book, ids chained so every apply is accepted.
    let Ok(MarketMsg::Depth(d0)) = p.parse(fixtures::DEPTH_UPDATE_10) else {
        unreachable!("fixture parses")
    };
    let mut l2 = aegis_engine::book::l2::L2Book::new(1000);
    let bids = (0..1000).map(|i| {
        (
            Price::from_units(5_000_010_000_000 - i * 10_000_000),
            Qty::ONE,
        )
    });
    let asks = (0..1000).map(|i| {
        (
            Price::from_units(5_000_020_000_000 + i * 10_000_000),
            Qty::ONE,
        )
    });
    l2.load_snapshot(d0.final_update_id, bids, asks);
    let mut d = d0;
    g.bench_function("l2_apply_10_levels", |b| {
        b.iter(|| {
            let r = l2.apply(black_box(&d));
            d.prev_final_update_id = Some(d.final_update_id);
            d.first_update_id = d.final_update_id + 1;
            d.final_update_id += 3;
            r
        })
    });
    g.finish();
}

fn strategies(c: &mut Criterion) {
    let evs = events(&fixtures::sim_messages(200_000));
    let syms: Vec<SymbolInfo> = [SymbolSpec::btcusdt(), SymbolSpec::ethusdt()]
        .iter()
        .map(|s| SymbolInfo {
            step: s.filters.step_size,
            tick: s.filters.tick_size,
        })
        .collect();
    let mut g = c.benchmark_group("signal");
    let modes = [
        (
            "scalp",
            ModeStrategy::Scalp(Scalp::new(Default::default(), &syms)),
        ),
        (
            "ultra_fast_scalp",
            ModeStrategy::UltraFastScalp(UltraFast::new(Default::default(), &syms)),
        ),
        (
            "swing",
            ModeStrategy::Swing(Swing::new(Default::default(), &syms)),
        ),
        (
            "position",
            ModeStrategy::Position(PositionMode::new(Default::default(), &syms)),
        ),
    ];
    for (name, mut s) in modes {
        let mut tops = [TopOfBook::default(); 2];
        let mut i = 0usize;
        let pos = PosView::default();
        g.bench_function(format!("{name}_update"), |b| {
            b.iter(|| {
                i = (i + 1) % evs.len();
                match &evs[i] {
                    Ev::Book(sym, t) => {
                        tops[*sym].update(t);
                        s.on_book(*sym, &tops[*sym], t.event_time, &pos)
                    }
                    Ev::Trade(sym, t) => s.on_trade(*sym, t, &tops[*sym], &pos),
                }
            })
        });
    }
    g.finish();
}

fn risk(c: &mut Criterion) {
    let spec = SymbolSpec::btcusdt();
    let mut gate = RiskGate::new(
        LimitsConfig {
            max_position_usd: aegis_shared::Notional::from_int(500),
            ..LimitsConfig::default()
        },
        BreakerConfig::default(),
    );
    // Invariant: one symbol fits the filter table.
    gate.limits
        .set_filters(spec.symbol, spec.filters)
        .expect("filters");
    let req = aegis_engine::venue::OrderRequest {
        symbol: spec.symbol,
        sym: 0,
        mode: StrategyMode::Scalp,
        intent: OrderIntent::Entry,
        side: Side::Buy,
        order_type: OrderType::Market,
        tif: None,
        price: Price::ZERO,
        ref_price: Price::from_int(50_000),
        qty: Qty::from_units(200_000),
        reduce_only: false,
    };
    let mut now = 1_704_067_200_000u64;
    let mut g = c.benchmark_group("risk");
    g.bench_function("gate_check_entry", |b| {
        b.iter(|| {
            now += 1;
            let ctx = RiskContext {
                now_ms: now,
                position_qty: Qty::ZERO,
                symbol_net_qty: Qty::ZERO,
                leverage: 1,
                long_only: false,
            };
            gate.check(black_box(&req), &ctx)
        })
    });
    g.finish();
}

fn tick_to_order(c: &mut Criterion) {
    let mut g = c.benchmark_group("tick_to_order");
    let mut t = fixtures::TickToOrder::default();

    // Aegis: parse (reused parser) → top of book → order at the touch → signed REST query in a reused buffer.
    g.bench_function("aegis_parse_book_sign_rest", |b| b.iter(|| t.aegis(false)));

    // The path the bot uses for order entry: the WebSocket API after `session.logon` (Ed25519, once per
    // connection), so `order.place` carries no per-request signature.
    g.bench_function("aegis_parse_book_ws_session", |b| b.iter(|| t.aegis(true)));

    // The usual way: serde_json into Strings, floats, format!, re-keyed HMAC, hex::encode.
    g.bench_function("usual_parse_book_sign_rest", |b| b.iter(|| t.usual()));

    // The real engine's message path (parse → book → every mode's signals → gate → paper venue) followed by
    // signing an order at the new touch: what a tick costs when a signal fires on it.
    let msgs = fixtures::sim_messages(100_000);
    let (mut engine, ctl) = fixtures::bench_engine();
    let mut i = 0usize;
    g.bench_function("aegis_engine_on_message_then_sign", |b| {
        b.iter(|| {
            i = (i + 1) % msgs.len();
            if i.is_multiple_of(1024) {
                fixtures::drain(&ctl);
            }
            engine.on_message(black_box(&msgs[i]));
            let top = engine.top(0).copied().unwrap_or_default();
            t.order_at(&top, false)
        })
    });
    g.finish();
}

fn throughput(c: &mut Criterion) {
    // Messages per second through the engine's whole message path on one core (parse, book, all four modes'
    // signals, the gate for any signal, the paper venue).
    const BATCH: usize = 10_000;
    let msgs = fixtures::sim_messages(BATCH * 20);
    let mut g = c.benchmark_group("throughput");
    g.throughput(Throughput::Elements(BATCH as u64));
    let (mut engine, ctl) = fixtures::bench_engine();
    let mut chunk = 0usize;
    g.bench_function("engine_on_message_batch_10k", |b| {
        b.iter_batched(
            || {
                fixtures::drain(&ctl);
                chunk = (chunk + 1) % 20;
                chunk
            },
            |k| {
                for m in &msgs[k * BATCH..(k + 1) * BATCH] {
                    engine.on_message(m);
                }
            },
            BatchSize::SmallInput,
        )
    });
    let mut p = Parser::new();
    g.bench_function("parse_only_batch_10k", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for m in &msgs[..BATCH] {
                n += u64::from(p.parse(m).is_ok());
            }
            n
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = book, strategies, risk, tick_to_order, throughput
}
criterion_main!(benches);
