//! Indicators and bar builders checked against an independent reference: the `ta` Python library run over the
//! real data in `../shared/data/` by `tests/reference/make_reference.py` (expected values committed beside it).
//!
//! Tolerances: EMA, SMA, MACD, ATR and ADX use the same conventions as `ta` and must agree to 1e-9 relative.
//! RSI differs only in its seed (Wilder's mean of the first n changes vs. `ta`'s first change), a difference
//! that decays as (1 − 1/n)^k, so it is compared from bar 300 on (where it is far below 1e-6).

use aegis_engine::feed::parse::{parse, MarketMsg};
use aegis_engine::strategy::indicators::{Adx, Atr, Bar, BarBuilder, Ema, Macd, Rsi, Sma};
use aegis_shared::num::{Price, Qty};
use serde_json::Value;
use std::collections::BTreeMap;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn reference(name: &str) -> Value {
    let p = root().join("tests/reference").join(name);
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).unwrap()
}

fn data(name: &str) -> String {
    let p = root().join("../shared/data").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn kline(line: &str) -> aegis_engine::feed::parse::Kline {
    match parse(line.as_bytes()).expect("real kline parses") {
        MarketMsg::Kline(k) => k,
        other => panic!("not a kline: {other:?}"),
    }
}

/// Runs every indicator over the bars; series name → value per bar index (None during warm-up).
fn compute(bars: &[Bar]) -> BTreeMap<&'static str, Vec<Option<f64>>> {
    let mut out: BTreeMap<&'static str, Vec<Option<f64>>> = BTreeMap::new();
    let (mut e9, mut e21, mut e50) = (Ema::new(9), Ema::new(21), Ema::new(50));
    let mut s20 = Sma::new(20);
    let (mut r14, mut r7) = (Rsi::new(14), Rsi::new(7));
    let mut macd = Macd::standard();
    let mut adx = Adx::new(14);
    let mut atr = Atr::new(14);
    for b in bars {
        let (h, l, c) = (b.high_f64(), b.low_f64(), b.close_f64());
        let m = macd.update(c);
        let rows: [(&'static str, Option<f64>); 11] = [
            ("ema9", e9.update(c)),
            ("ema21", e21.update(c)),
            ("ema50", e50.update(c)),
            ("sma20", s20.update(c)),
            ("rsi14", r14.update(c)),
            ("rsi7", r7.update(c)),
            ("macd", m.map(|m| m.macd)),
            ("macd_signal", m.map(|m| m.signal)),
            ("macd_hist", m.map(|m| m.hist)),
            ("adx14", adx.update(h, l, c)),
            ("atr14", atr.update(h, l, c)),
        ];
        for (k, v) in rows {
            out.entry(k).or_default().push(v);
        }
    }
    out
}

fn check(reference: &Value, bars: &[Bar]) {
    assert_eq!(
        reference["bars"].as_u64().unwrap() as usize,
        bars.len(),
        "bar count"
    );
    let ours = compute(bars);
    let series = reference["series"].as_object().unwrap();
    assert_eq!(series.len(), ours.len());
    let mut compared = 0;
    for (name, pairs) in series {
        let mine = &ours[name.as_str()];
        let warmup = if name.starts_with("rsi") { 300 } else { 0 };
        for pair in pairs.as_array().unwrap() {
            let i = pair[0].as_u64().unwrap() as usize;
            let want = pair[1].as_f64().unwrap();
            // ta marks warm-up with NaN (left out of the file) except for ADX/ATR, which it reports as 0.0.
            let Some(got) = mine[i] else {
                assert!(
                    want == 0.0,
                    "{name}[{i}]: reference has {want}, we are still warming up"
                );
                continue;
            };
            if i < warmup {
                continue;
            }
            let tol = if name.starts_with("rsi") {
                1e-6
            } else {
                1e-9 * want.abs().max(1e-6)
            };
            assert!(
                (got - want).abs() <= tol,
                "{name}[{i}]: got {got}, want {want} (tol {tol})"
            );
            compared += 1;
        }
        // The last value must be ready and compared.
        assert!(mine.last().unwrap().is_some(), "{name} never became ready");
    }
    assert!(compared > 300, "only {compared} values compared");
}

#[test]
fn kline_5m_indicators_match_the_reference() {
    let text = data("xrpusdt-perp-kline5m-2021-11-15.jsonl");
    let mut bars = Vec::new();
    for line in text.lines() {
        let k = kline(line);
        assert!(k.closed);
        assert_eq!(k.interval.millis(), 300_000);
        bars.push(Bar::from_kline(&k));
    }
    check(&reference("kline5m_indicators.json"), &bars);
}

#[test]
fn trade_1m_bars_and_indicators_match_the_reference() {
    let text = data("xrpeth-aggtrade-2019-10-11.jsonl");
    let mut builder = BarBuilder::new(60_000);
    let mut bars = Vec::new();
    for line in text.lines() {
        let MarketMsg::AggTrade(a) = parse(line.as_bytes()).unwrap() else {
            panic!("not a trade")
        };
        let (p, q, t) = (a.price, a.qty, a.trade_time);
        // Event time also closes a finished bar on its own; the next trade then opens a fresh one.
        if let Some(b) = builder.on_time(t) {
            bars.push(b);
        }
        if let Some(b) = builder.on_trade(t, p, q) {
            bars.push(b);
        }
    }
    bars.extend(builder.flush());
    let r = reference("trades1m_indicators.json");
    for s in r["bar_samples"].as_array().unwrap() {
        let i = s[0].as_u64().unwrap() as usize;
        let b = &bars[i];
        let px = |j: usize| Price::parse(s[j].as_str().unwrap()).unwrap();
        assert_eq!(b.open_ms, s[1].as_u64().unwrap(), "bar {i} time");
        assert_eq!(
            (b.open, b.high, b.low, b.close),
            (px(2), px(3), px(4), px(5)),
            "bar {i} OHLC"
        );
        assert_eq!(
            b.volume,
            Qty::parse(s[6].as_str().unwrap()).unwrap(),
            "bar {i} volume"
        );
        assert_eq!(b.trades as u64, s[7].as_u64().unwrap(), "bar {i} trades");
    }
    check(&r, &bars);
}

#[test]
fn five_minute_klines_aggregate_into_four_hour_bars() {
    let text = data("xrpusdt-perp-kline5m-2021-11-15.jsonl");
    let mut agg = BarBuilder::new(4 * 3_600_000);
    let mut small = Vec::new();
    let mut big = Vec::new();
    for line in text.lines() {
        let b = Bar::from_kline(&kline(line));
        small.push(b);
        big.extend(agg.on_bar(&b).into_iter().flatten());
    }
    assert!(big.len() >= 40, "{} 4h bars", big.len());
    // Each 4h bar is exactly its 48 five-minute bars folded together.
    for b in &big {
        let parts: Vec<&Bar> = small
            .iter()
            .filter(|s| s.open_ms >= b.open_ms && s.close_ms <= b.close_ms)
            .collect();
        assert_eq!(parts.len(), 48);
        assert_eq!(b.open, parts[0].open);
        assert_eq!(b.close, parts[47].close);
        assert_eq!(b.high, parts.iter().map(|p| p.high).max().unwrap());
        assert_eq!(b.low, parts.iter().map(|p| p.low).min().unwrap());
        assert_eq!(b.volume, parts.iter().fold(Qty::ZERO, |a, p| a + p.volume));
    }
}
