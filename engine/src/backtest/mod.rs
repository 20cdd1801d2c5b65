//! Backtests: the same engine code as live trading — strategies, the one risk gate, the breakers and the paper
//! venue — run synchronously over recorded combined-stream JSON lines (`{"stream":"…","data":{…}}`, the format
//! of `../shared/data/*.jsonl`) as fast as the machine allows.
//!
//! [`run`] makes two passes over the files:
//! 1. a scan ([`scan`]): symbols, streams, time span, and the price/quantity grid the data shows;
//! 2. the run: lines of all files **merged by event time** (a k-way merge; ties and lines without an event
//!    time keep file order, so a single file runs exactly in its own order) go through
//!    [`Engine::on_message`]; the critical events are drained after every message (the queue can never fill,
//!    so backpressure never distorts a backtest) and folded into the [`BacktestReport`].
//!
//! Engine time is the data's event time (the engine's clock follows the market), so UTC days, holding times,
//! breaker windows and cooldowns are those of the recording. Breaker cooldowns are advanced after every
//! message with the engine's own `poll` calls, at engine time — the live loop's wall-clock housekeeping (heartbeats,
//! stats, feed staleness, the KILL file) is not run, which is what keeps the report byte-identical from run to
//! run.
//!
//! **No book in the data.** The strategies and the paper venue need a top of book. For a symbol whose data has
//! no `bookTicker`, a one-tick-wide quote is synthesized right before each trade or kline and fed through the
//! same parser: for an aggTrade at `p` the quote is `p / p + tick` when the buyer was the maker (the trade hit
//! the bid), else `p − tick / p`; for a kline it is `close / close + tick`. `ultra_fast_scalp` reads depth
//! imbalance, which a synthesized quote does not have, so that mode only runs when the data has real
//! `bookTicker`s.
//!
//! **Symbol filters.** For each symbol the tick size and step size are derived from the data (the largest power
//! of ten dividing every price / quantity seen, capped at 1; from kline volumes the step can only come out
//! coarser than the real one, never off the grid); min qty = step; min notional from the quote asset (5 for
//! USD stablecoins, 0.01 for ETH, 0.0001 for BTC, else 0). [`BacktestOptions::symbols`] overrides any of
//! this per symbol. On the bundled data the derivation gives XRPETH tick 0.00000001 / step 1 and XRPUSDT tick
//! 0.0001 / step 0.1 / min notional 5.
//!
//! **Money units.** Every amount — sizes, limits, PnL, fees — is in the symbols' *quote asset*. The settings are
//! USD, so for dollar-quoted data (USDT, USDC, …) they apply as they are; data quoted in another asset (ETH for
//! XRPETH) needs that asset's USD price ([`BacktestOptions::quote_usd`], `--quote-usd ETH=180.5`), which converts
//! the USD settings into it, or the run is refused with [`BacktestError::Quote`]: a $500 position is never
//! 500 ETH. Symbols with different quote assets cannot share a run (the account-wide limits need one unit).
//!
//! **Modes.** By default all four run where the data allows: `scalp` needs aggTrades; `swing` and `position`
//! take aggTrades or klines; `ultra_fast_scalp` needs bookTickers. Skipped modes are listed with the reason.
//! Mode parameters not set in the [`EngineParams`] get their defaults.

mod report;
pub mod scan;

pub use report::{
    utc, BacktestReport, CurvePoint, DenialCount, FileReport, ModeReport, RunReport,
    SettingsReport, SkippedMode, SymbolReport,
};

use crate::engine::{Engine, EngineError, EngineParams, FeedEnd, SymbolSpec};
use crate::feed::parse::{MarketMsg, Parser};
use crate::risk::limits::SymbolFilters;
use aegis_shared::quote::{self, QuoteError, QuoteUsd, RunUnits};
use aegis_shared::{EngineEvent, Notional, Price, Qty, StrategyMode};
use report::Accumulator;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Progress is reported at least every this many bytes.
const PROGRESS_STEP: u64 = 1 << 20;
/// Most equity-curve points per mode.
pub const MAX_CURVE_POINTS: usize = 2_000;

/// How to run a backtest (besides the engine's own [`EngineParams`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestOptions {
    /// Modes to run; `None` (default) = all four, where the data allows (see the module docs).
    pub modes: Option<Vec<StrategyMode>>,
    /// Symbol filters that replace the ones derived from the data (matched by symbol; symbols not in the data
    /// are ignored).
    pub symbols: Vec<SymbolSpec>,
    /// At the end of the data, flatten every open position through the gate (the kill switch's reduce-only
    /// market orders) so all PnL is realized. Default false: open positions are reported, marked to market.
    pub flatten_at_end: bool,
    /// Equity-curve points per mode (time buckets over the data's span), at most [`MAX_CURVE_POINTS`].
    pub curve_points: usize,
    /// USD prices of non-dollar quote assets (`--quote-usd ETH=180.5`): a run over XRPETH needs ETH's, or it is
    /// refused (see [`aegis_shared::quote`]).
    pub quote_usd: Vec<QuoteUsd>,
}

impl Default for BacktestOptions {
    fn default() -> Self {
        Self {
            modes: None,
            symbols: Vec::new(),
            flatten_at_end: false,
            curve_points: MAX_CURVE_POINTS,
            quote_usd: Vec::new(),
        }
    }
}

/// Why a backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// No data files given.
    #[error("no data files given; pass at least one recorded .jsonl file")]
    NoFiles,
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A path is a directory or other non-file.
    #[error("{0} is not a file; pass recorded .jsonl files")]
    NotAFile(PathBuf),
    /// Nothing in the files parsed as market data.
    #[error("no market data in the given files ({lines} lines, none parsed as a Binance stream message); pass combined-stream JSON lines like ../shared/data/*.jsonl")]
    NoMarketData {
        /// Lines read.
        lines: u64,
    },
    /// None of the requested modes can run on this data.
    #[error("none of the requested modes can run on this data: {0}")]
    NoModes(String),
    /// The engine refused the setup (e.g. more symbols than it supports).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The data's symbols cannot be held to the USD limits as given (a non-dollar quote without a price, or
    /// quotes mixed).
    #[error(transparent)]
    Quote(#[from] QuoteError),
}

/// Streams the non-empty lines of a file without holding it in memory.
pub(crate) struct LineReader {
    r: BufReader<File>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    consumed: u64,
    size: u64,
}

impl LineReader {
    pub(crate) fn open(path: &Path) -> Result<Self, BacktestError> {
        scan::check_file(path)?;
        let io = |source| BacktestError::Io {
            path: path.to_path_buf(),
            source,
        };
        let f = File::open(path).map_err(io)?;
        let size = f.metadata().map_err(io)?.len();
        Ok(Self {
            r: BufReader::with_capacity(1 << 20, f),
            buf: Vec::with_capacity(4096),
            start: 0,
            end: 0,
            consumed: 0,
            size,
        })
    }
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }
    /// Advances to the next non-empty line; false at the end of the file.
    pub(crate) fn next_line(&mut self, path: &Path) -> Result<bool, BacktestError> {
        loop {
            self.buf.clear();
            let n =
                self.r
                    .read_until(b'\n', &mut self.buf)
                    .map_err(|source| BacktestError::Io {
                        path: path.to_path_buf(),
                        source,
                    })?;
            if n == 0 {
                return Ok(false);
            }
            self.consumed += n as u64;
            let mut end = self.buf.len();
            while end > 0 && matches!(self.buf[end - 1], b'\n' | b'\r') {
                end -= 1;
            }
            let mut start = 0;
            while start < end && self.buf[start].is_ascii_whitespace() {
                start += 1;
            }
            if start < end {
                self.start = start;
                self.end = end;
                return Ok(true);
            }
        }
    }
    pub(crate) fn line(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

/// One file in the merge: its reader and the event time of its current line.
struct Source {
    path: PathBuf,
    r: LineReader,
    /// Sort key of the current line; `None` when the file is exhausted.
    key: Option<u64>,
    last: u64,
}

impl Source {
    fn advance(&mut self, p: &mut Parser) -> Result<(), BacktestError> {
        if self.r.next_line(&self.path)? {
            // A line without an event time (or that does not parse) sorts with the line before it.
            let et = p.parse(self.r.line()).map(|m| m.event_time()).unwrap_or(0);
            if et > 0 {
                self.last = et;
            }
            self.key = Some(self.last);
        } else {
            self.key = None;
        }
        Ok(())
    }
}

/// Runs a backtest and returns its report. `progress(done, total)` is called with bytes read over both passes
/// (`total` = 2 × the files' size), at least every MiB and once at the end. See the module docs.
pub fn run(
    params: EngineParams,
    files: &[PathBuf],
    opts: &BacktestOptions,
    progress: impl FnMut(u64, u64),
) -> Result<BacktestReport, BacktestError> {
    run_with_events(params, files, opts, progress, |_| {})
}

/// [`run`], also handing every critical engine event (orders, fills, positions, breaker and state changes), in
/// order, to `on_event` — for audits and tests that check the report against the raw fills.
pub fn run_with_events(
    params: EngineParams,
    files: &[PathBuf],
    opts: &BacktestOptions,
    mut progress: impl FnMut(u64, u64),
    mut on_event: impl FnMut(&EngineEvent),
) -> Result<BacktestReport, BacktestError> {
    if files.is_empty() {
        return Err(BacktestError::NoFiles);
    }
    for f in files {
        scan::check_file(f)?;
    }
    let mut total = 0u64;
    for f in files {
        total += std::fs::metadata(f)
            .map_err(|source| BacktestError::Io {
                path: f.clone(),
                source,
            })?
            .len();
    }
    let total2 = total * 2;
    let sc = scan::scan_files(files, &mut |d| progress(d.min(total), total2))?;
    let lines: u64 = sc.files.iter().map(|f| f.lines).sum();
    if sc.symbols.is_empty() {
        return Err(BacktestError::NoMarketData { lines });
    }

    // The unit of every amount: refused before any work when the USD limits cannot apply.
    let all: Vec<_> = sc.symbols.iter().map(|s| s.symbol).collect();
    let units = quote::run_units(&all, &opts.quote_usd)?;

    // Symbols and filters.
    let mut specs = Vec::with_capacity(sc.symbols.len());
    let mut sym_reports = Vec::with_capacity(sc.symbols.len());
    for s in &sc.symbols {
        let quote = scan::quote_asset(s.symbol.as_str());
        let (spec, source) = match opts.symbols.iter().find(|o| o.symbol == s.symbol) {
            Some(o) => (*o, "option"),
            None => {
                let step = Qty::from_units(s.qty_grid);
                (
                    SymbolSpec {
                        symbol: s.symbol,
                        filters: SymbolFilters {
                            tick_size: Price::from_units(s.price_grid),
                            step_size: step,
                            min_qty: step,
                            min_notional: default_min_notional(quote),
                        },
                    },
                    "derived",
                )
            }
        };
        specs.push(spec);
        sym_reports.push(SymbolReport::new(s, quote, &spec, source));
    }

    // Modes.
    let has_book = sc.symbols.iter().any(|s| s.book_tickers > 0);
    let has_trades = sc.symbols.iter().any(|s| s.agg_trades > 0);
    let has_klines = sc.symbols.iter().any(|s| s.klines > 0);
    let wanted: Vec<StrategyMode> = match &opts.modes {
        Some(m) => StrategyMode::ALL
            .into_iter()
            .filter(|x| m.contains(x))
            .collect(),
        None => StrategyMode::ALL.to_vec(),
    };
    let mut active = Vec::new();
    let mut skipped = Vec::new();
    for m in wanted {
        let why = match m {
            StrategyMode::UltraFastScalp if !has_book => {
                Some("needs bookTicker data (order-book imbalance); the data has none")
            }
            StrategyMode::Scalp if !has_trades => {
                Some("builds its bars from aggTrades; the data has none")
            }
            StrategyMode::Swing | StrategyMode::Position if !has_trades && !has_klines => {
                Some("needs aggTrades or klines; the data has neither")
            }
            _ => None,
        };
        match why {
            Some(reason) => skipped.push(SkippedMode { mode: m, reason }),
            None => active.push(m),
        }
    }
    if active.is_empty() {
        let why: Vec<String> = skipped
            .iter()
            .map(|s| format!("{}: {}", s.mode, s.reason))
            .collect();
        return Err(BacktestError::NoModes(why.join("; ")));
    }

    let mut p = match units {
        RunUnits::Usd => params,
        // Proven invariant: `QuoteUsd` prices are positive (checked when parsed), the only `None` case.
        RunUnits::Converted(q) => params
            .usd_in_quote_units(q.usd)
            .ok_or(QuoteError::BadPrice(q.to_string()))?,
    };
    p.symbols = specs.clone();
    p.scalp_enabled = active.contains(&StrategyMode::Scalp);
    p.ultra_fast = active
        .contains(&StrategyMode::UltraFastScalp)
        .then(|| p.ultra_fast.unwrap_or_default());
    p.swing = active
        .contains(&StrategyMode::Swing)
        .then(|| p.swing.unwrap_or_default());
    p.position = active
        .contains(&StrategyMode::Position)
        .then(|| p.position.unwrap_or_default());
    // A backtest starts flat, talks to no exchange and has no control plane: fixed ids, no restored state, no
    // KILL file, no pinning.
    // New entries in exactly the symbols the data holds (a config built for live trading lists others).
    p.allowlist = specs.iter().map(|s| s.symbol).collect();
    p.session = 1;
    p.restored_positions.clear();
    p.restored_day_pnl = Notional::ZERO;
    p.data_dir = None;
    p.pin = false;
    p.on_feed_end = FeedEnd::Stop;
    let settings = SettingsReport::new(&p, &active, opts.flatten_at_end, units);

    let (mut engine, ctl) = Engine::with_channels(p)?;
    let mut acc = Accumulator::new(
        &engine,
        &active,
        sc.first_ms,
        sc.last_ms,
        opts.curve_points.clamp(1, MAX_CURVE_POINTS),
    );
    let drain =
        |engine: &mut Engine, acc: &mut Accumulator, on_event: &mut dyn FnMut(&EngineEvent)| {
            for e in ctl.events.try_iter() {
                on_event(&e);
                acc.on_event(engine, &e);
            }
            // Statistics are wall-clock data: they are not part of a reproducible report.
            for _ in ctl.stats.try_iter() {}
            let now = engine.now_ms();
            let mut polled = Vec::new();
            let gate = engine.gate_mut();
            gate.breakers.poll(now, &mut |e| polled.push(e));
            gate.limits.poll(now, &mut |e| polled.push(e));
            for b in polled {
                let e = EngineEvent::Breaker(b);
                on_event(&e);
                acc.on_event(engine, &e);
            }
        };
    drain(&mut engine, &mut acc, &mut on_event);

    let synth: Vec<bool> = sc.symbols.iter().map(|s| s.book_tickers == 0).collect();
    let mut synth_ids = vec![0u64; specs.len()];
    let mut synth_buf = String::with_capacity(256);
    let mut parser = Parser::new();
    let mut sources = Vec::with_capacity(files.len());
    for f in files {
        let mut s = Source {
            path: f.clone(),
            r: LineReader::open(f)?,
            key: None,
            last: 0,
        };
        s.advance(&mut parser)?;
        sources.push(s);
    }
    let mut last_progress = 0u64;
    // Smallest key wins; ties go to the earlier file (min_by_key keeps the first minimum).
    while let Some(i) = sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.key.map(|k| (i, k)))
        .min_by_key(|&(_, k)| k)
        .map(|(i, _)| i)
    {
        let line = sources[i].r.line();
        acc.messages += 1;
        if let Ok(m) = parser.parse(line) {
            if let Some(sym) = engine.sym_index(m.symbol()).filter(|&s| synth[s]) {
                if synth_quote(
                    &m,
                    specs[sym].filters.tick_size,
                    &mut synth_ids[sym],
                    &mut synth_buf,
                ) {
                    engine.on_message(synth_buf.as_bytes());
                    acc.synthetic_quotes += 1;
                    drain(&mut engine, &mut acc, &mut on_event);
                }
            }
        }
        engine.on_message(sources[i].r.line());
        drain(&mut engine, &mut acc, &mut on_event);
        acc.mark(&engine);
        sources[i].advance(&mut parser)?;
        let done = total + sources.iter().map(|s| s.r.consumed()).sum::<u64>();
        if done - last_progress >= PROGRESS_STEP {
            last_progress = done;
            progress(done.min(total2), total2);
        }
    }
    if opts.flatten_at_end {
        engine.kill(true);
        drain(&mut engine, &mut acc, &mut on_event);
        acc.mark(&engine);
    }
    engine.on_feed_end();
    let end = engine.shutdown();
    drain(&mut engine, &mut acc, &mut on_event);
    progress(total2, total2);
    Ok(acc.finish(&engine, &end, sc, sym_reports, skipped, settings))
}

/// Minimum order notional by quote asset when the data cannot tell (Binance's usual values).
fn default_min_notional(quote: Option<&str>) -> Notional {
    match quote {
        Some("USDT" | "USDC" | "BUSD" | "FDUSD" | "TUSD" | "DAI" | "USD") => Notional::from_int(5),
        Some("ETH") => Notional::from_units(1_000_000),
        Some("BTC") => Notional::from_units(10_000),
        _ => Notional::ZERO,
    }
}

/// Writes a one-tick-wide bookTicker for a trade or kline into `buf` (see the module docs). False for other
/// messages.
fn synth_quote(m: &MarketMsg<'_>, tick: Price, id: &mut u64, buf: &mut String) -> bool {
    use std::fmt::Write;
    let (bid, ask, sym, t) = match m {
        MarketMsg::AggTrade(a) => {
            let p = a.price;
            if a.buyer_is_maker || p <= tick {
                (p, p + tick, a.symbol, a.event_time)
            } else {
                (p - tick, p, a.symbol, a.event_time)
            }
        }
        MarketMsg::Kline(k) => (
            k.close,
            k.close + tick,
            k.symbol,
            k.event_time.max(k.close_time),
        ),
        _ => return false,
    };
    if bid.units() <= 0 {
        return false;
    }
    *id += 1;
    buf.clear();
    // Writing to a String cannot fail.
    let _ = write!(
        buf,
        r#"{{"stream":"{s}@bookTicker","data":{{"e":"bookTicker","u":{id},"s":"{s}","b":"{bid}","B":"1000000","a":"{ask}","A":"1000000","T":{t},"E":{t}}}}}"#,
        s = sym.as_str(),
        id = *id,
    );
    true
}
