//! `aegis backtest` end to end: the real binary over the shared recorded data.

use std::path::{Path, PathBuf};
use std::process::Command;

fn data(name: &str) -> PathBuf {
    // `AEGIS_SHARED_DATA` points elsewhere when the checkout is not beside `shared/` (a git worktree).
    std::env::var_os("AEGIS_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
        .join(name)
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aegis-bt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn backtest(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_aegis"))
        .current_dir(dir)
        // No .env of the developer's may leak in; the data dir must not be touched by a backtest.
        .args(["--env-file", "none.env", "backtest"])
        .args(args)
        .env("DATA_DIR", dir.join("data"))
        .env("LOG_LEVEL", "warn")
        .output()
        .unwrap()
}

#[test]
fn backtest_writes_a_deterministic_consistent_report_and_plot() {
    let dir = temp_dir("ok");
    // XRPETH is quoted in ETH: the USD settings are converted at ETH's price of the recording's day.
    let files = data("xrpeth-aggtrade-2019-10-11.jsonl")
        .display()
        .to_string();
    let mut reports = Vec::new();
    for i in 0..2 {
        let report = dir.join(format!("r{i}.json"));
        let plot = dir.join(format!("p{i}.svg"));
        let out = backtest(
            &dir,
            &[
                "--data",
                &files,
                "--report",
                report.to_str().unwrap(),
                "--plot",
                plot.to_str().unwrap(),
                "--quote-usd",
                "ETH=180",
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("scalp"), "{stdout}");
        let svg = std::fs::read_to_string(&plot).unwrap();
        assert!(
            svg.starts_with("<svg") || svg.starts_with("<?xml"),
            "{}",
            &svg[..40.min(svg.len())]
        );
        reports.push(std::fs::read(&report).unwrap());
    }
    assert_eq!(
        reports[0], reports[1],
        "same input must give a byte-identical report"
    );
    let v: serde_json::Value = serde_json::from_slice(&reports[0]).unwrap();
    let total = &v["total"];
    let fills = total["fills"].as_u64().unwrap();
    assert!(
        fills > 0,
        "the configured modes must trade the recorded data: {total}"
    );
    // Issue 14: the CLI's report names the market the fills were booked on (a default run trades futures).
    assert_eq!(
        v["run"]["markets"],
        serde_json::json!(["futures"]),
        "{}",
        v["run"]
    );
    assert_eq!(v["symbols"][0]["market"], "futures", "{}", v["symbols"]);
    // Internal consistency of what the CLI wrote: net = gross - fees, exactly (decimal strings, not floats).
    let dec = |k: &str| aegis_shared::Notional::parse(total[k].as_str().unwrap()).unwrap();
    assert_eq!(dec("net_pnl"), dec("gross_pnl") - dec("fees"));
    // The configured limit (FUTURES_AUTOPILOT_MAX_POSITION_SIZE, default $50 = 0.27777777 ETH at $180) was
    // never exceeded: positions were sized in ETH worth $50, never 50 ETH.
    assert_eq!(
        v["settings"]["usd_settings_converted_at"],
        "1 ETH = 180 USD"
    );
    assert_eq!(v["settings"]["max_position"], "0.27777777");
    assert!(dec("max_position_notional") <= aegis_shared::Notional::parse("0.27777777").unwrap());
    assert!(dec("max_position_notional") > aegis_shared::Notional::ZERO);
    assert!(
        !dir.join("data").join("journal").exists(),
        "a backtest never writes the journal"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn backtest_missing_file_exits_2_naming_it() {
    let dir = temp_dir("missing");
    let out = backtest(&dir, &["--data", "nope.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.jsonl"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn backtest_of_eth_quoted_data_without_its_usd_price_exits_2_saying_what_to_do() {
    let dir = temp_dir("quote");
    let eth = data("xrpeth-aggtrade-2019-10-11.jsonl")
        .display()
        .to_string();
    let out = backtest(&dir, &["--data", &eth]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("XRPETH is quoted in ETH") && err.contains("--quote-usd ETH="),
        "{err}"
    );
    let both = format!(
        "{eth},{}",
        data("xrpusdt-perp-kline5m-2021-11-15.jsonl").display()
    );
    let out = backtest(&dir, &["--data", &both, "--quote-usd", "ETH=180"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run them separately"), "{err}");
    let out = backtest(&dir, &["--data", &eth, "--quote-usd", "ETH=0"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a zero price is refused by the parser"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
