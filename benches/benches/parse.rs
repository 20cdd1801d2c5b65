//! Parser benches: Aegis's zero-allocation parser against serde_json into owned `String` structs.

use aegis_benches::{fixtures, usual};
use aegis_engine::feed::parse::{MarketMsg, Parser};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::time::Duration;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    let mut p = Parser::new();

    g.bench_function("aegis_book_ticker", |b| {
        b.iter(|| match p.parse(black_box(fixtures::BOOK_TICKER)) {
            Ok(MarketMsg::BookTicker(t)) => t.bid.units() ^ t.ask.units(),
            _ => 0,
        })
    });
    g.bench_function("usual_book_ticker", |b| {
        b.iter(|| usual::parse_book_ticker(black_box(fixtures::BOOK_TICKER)).map(|t| t.1 + t.2))
    });

    g.bench_function("aegis_agg_trade", |b| {
        b.iter(|| match p.parse(black_box(fixtures::AGG_TRADE)) {
            Ok(MarketMsg::AggTrade(t)) => t.price.units() ^ t.qty.units(),
            _ => 0,
        })
    });
    g.bench_function("usual_agg_trade", |b| {
        b.iter(|| usual::parse_agg_trade(black_box(fixtures::AGG_TRADE)).map(|t| t.1 + t.2))
    });

    for (name, msg) in [
        ("depth_update_1", fixtures::DEPTH_UPDATE),
        ("depth_update_10", fixtures::DEPTH_UPDATE_10),
    ] {
        // Both sides walk every level, so the in-place level iterator is not credited with skipped work.
        g.bench_function(format!("aegis_{name}"), |b| {
            b.iter(|| match p.parse(black_box(msg)) {
                Ok(MarketMsg::Depth(d)) => d
                    .bids
                    .iter()
                    .chain(d.asks.iter())
                    .fold(0i64, |a, (px, q)| a ^ px.units() ^ q.units()),
                _ => 0,
            })
        });
        g.bench_function(format!("usual_{name}"), |b| {
            b.iter(|| {
                usual::parse_depth(black_box(msg)).map(|d| {
                    d.b.iter()
                        .chain(d.a.iter())
                        .map(|[px, q]| {
                            px.parse::<f64>().unwrap_or(0.0) + q.parse::<f64>().unwrap_or(0.0)
                        })
                        .sum::<f64>()
                })
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = parse
}
criterion_main!(benches);
