//! `aegis backtest --data FILE[,FILE…] [--report out.json] [--plot equity.svg]`: the engine's own strategies,
//! gate, breakers and paper venue over recorded combined-stream JSON lines, as fast as they run.
//!
//! The engine parameters come from the same configuration mapping as `aegis run` (modes, allocation, limits,
//! breakers, fees), started flat: a backtest never reads or writes the journal.

pub mod svg;

use crate::cli::BacktestArgs;
use crate::engine_link::StartContext;
use crate::journal::Ledger;
use aegis_engine::backtest::{self, BacktestOptions};
use aegis_shared::config::Config;
use std::io::IsTerminal;
use std::time::Instant;

/// Runs the backtest and writes the report/plot; returns the process exit code (0 ok, 1 run failed, 2 bad input).
pub fn run(cfg: &Config, args: &BacktestArgs) -> u8 {
    let files = &args.data;
    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
        eprintln!(
            "aegis: --data {}: no such file; give files of combined-stream JSON lines, comma-separated",
            missing.display()
        );
        return 2;
    }
    let ledger = Ledger::default();
    let ctx = StartContext {
        config: cfg,
        ledger: &ledger,
        session_id: 1,
        live: None,
    };
    let (params, _feed) = match crate::engine_link::params(&ctx) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("aegis: {e}");
            return 2;
        }
    };
    let mut quote_usd = cfg.quote_usd.clone();
    for q in &args.quote_usd {
        quote_usd.retain(|c| c.asset != q.asset);
        quote_usd.push(*q);
    }
    let opts = BacktestOptions {
        flatten_at_end: args.flatten_at_end,
        quote_usd,
        ..BacktestOptions::default()
    };
    // A progress bar only on a terminal: logs and CI output stay clean.
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} backtest [{bar:40}] {bytes}/{total_bytes} ({eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let started = Instant::now();
    let result = backtest::run(params, files, &opts, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        // Data the USD limits cannot apply to is bad input, like a missing file.
        Err(e @ backtest::BacktestError::Quote(_)) => {
            eprintln!("aegis: {e}");
            return 2;
        }
        Err(e) => {
            eprintln!("aegis: backtest failed: {e}");
            return 1;
        }
    };
    println!("{report}");
    println!("(ran in {:.2} s)", started.elapsed().as_secs_f64());
    if let Some(p) = &args.report {
        if let Err(e) = std::fs::write(p, report.to_json()) {
            eprintln!("aegis: cannot write the report to {}: {e}", p.display());
            return 1;
        }
        println!("report: {}", p.display());
    }
    if let Some(p) = &args.plot {
        if let Err(e) = std::fs::write(p, svg::render(&report)) {
            eprintln!("aegis: cannot write the plot to {}: {e}", p.display());
            return 1;
        }
        println!("plot: {}", p.display());
    }
    0
}
