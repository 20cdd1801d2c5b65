//! The backtest chart (`aegis backtest --plot`, [`aegis_control::backtest_cmd::svg`]) over the recorded data in
//! `../shared/data/`: well formed, one equity and one drawdown path per mode, byte-identical for the same input.
//! (Moved with the renderer from `aegis-engine`, which only produces the report.)

// The engine tests' helpers (data path, limits, short bars), shared rather than copied.
#[path = "../../engine/tests/engine_support/mod.rs"]
mod engine_support;

use aegis_control::backtest_cmd::svg;
use aegis_engine::backtest::{self, BacktestOptions, BacktestReport};
use aegis_engine::EngineParams;
use engine_support::{data, limits, short_bars, xrpusdc};
use std::path::PathBuf;

fn xrpusdt() -> PathBuf {
    data("xrpusdt-perp-kline5m-2021-11-15.jsonl")
}

/// The settings of the engine's backtest tests: every bar mode trades on a few days of data.
fn params() -> EngineParams {
    short_bars(EngineParams {
        limits: limits(500, 1_000),
        pin: false,
        ..EngineParams::default()
    })
}

fn report(files: &[PathBuf]) -> BacktestReport {
    backtest::run_with_events(
        params(),
        files,
        &BacktestOptions::default(),
        |_, _| {},
        |_| {},
    )
    .expect("backtest runs")
}

/// A tiny well-formedness check: one root `<svg>`, every tag closed in order, attribute quotes balanced.
fn check_svg(svg: &str) {
    assert!(svg.starts_with("<svg "), "starts with <svg");
    let mut stack: Vec<String> = Vec::new();
    let mut rest = svg;
    let mut roots = 0;
    while let Some(i) = rest.find('<') {
        let j = rest[i..].find('>').expect("tag closed") + i;
        let tag = &rest[i + 1..j];
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "quotes balanced in <{tag}>"
        );
        assert!(!tag.contains('<'), "no '<' inside a tag");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.trim()),
                "closing tag matches"
            );
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().expect("tag name").to_owned();
            if stack.is_empty() {
                roots += 1;
            }
            stack.push(name);
        } else if stack.is_empty() {
            panic!("element outside the root");
        }
        rest = &rest[j + 1..];
    }
    assert!(stack.is_empty(), "all tags closed: {stack:?}");
    assert_eq!(roots, 1);
    assert!(rest.trim().is_empty());
}

#[test]
fn same_input_gives_a_byte_identical_svg() {
    let files = [xrpusdt(), xrpusdc()];
    assert_eq!(svg::render(&report(&files)), svg::render(&report(&files)));
}

#[test]
fn svg_is_well_formed_with_a_path_per_mode() {
    let r = report(&[xrpusdc(), xrpusdt()]);
    let svg = svg::render(&r);
    check_svg(&svg);
    for m in r.modes.iter().map(|m| m.mode.as_str()).chain(["total"]) {
        for kind in ["equity", "drawdown"] {
            let tag = format!(r#"<path class="{kind}" data-mode="{m}" d="M"#);
            assert_eq!(svg.matches(&tag).count(), 1, "{kind} path for {m}");
        }
        assert!(
            svg.contains(&format!(">{m}</text>")),
            "legend entry for {m}"
        );
    }
    assert!(svg.contains("time (UTC)") && svg.contains("Drawdown"));
}
