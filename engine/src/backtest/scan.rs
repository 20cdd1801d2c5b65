//! First pass over the recorded files: which symbols and streams they hold, the time span, and the exchange
//! grid (tick and step size) the data itself shows.
//!
//! Why a separate pass: the engine needs its symbol table and filters before the first message, the modes that
//! can run depend on the streams present (no `bookTicker` → no `ultra_fast_scalp`), and the equity curve is
//! bucketed over the whole time span. Parsing is cheap next to running the strategies, so reading the data twice
//! costs little and keeps memory flat (lines are streamed, never loaded whole).

use super::{BacktestError, LineReader};
use crate::feed::parse::{MarketMsg, Parser};
use aegis_shared::num::SCALE;
use aegis_shared::Symbol;
use std::path::{Path, PathBuf};

/// What the first pass found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileScan {
    /// The path as given.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// Non-empty lines.
    pub lines: u64,
    /// Lines that did not parse as a market message.
    pub parse_errors: u64,
}

/// What the first pass found for one symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolScan {
    /// Symbol.
    pub symbol: Symbol,
    /// `aggTrade` messages.
    pub agg_trades: u64,
    /// `bookTicker` messages.
    pub book_tickers: u64,
    /// `kline` messages.
    pub klines: u64,
    /// Depth messages (not used by the strategies).
    pub depth: u64,
    /// Largest power of ten (in 10⁻⁸ units, at most one whole unit) dividing every price seen.
    pub price_grid: i64,
    /// Largest power of ten (in 10⁻⁸ units, at most one whole unit) dividing every quantity seen.
    pub qty_grid: i64,
}

/// Result of the first pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Per file, in the order given.
    pub files: Vec<FileScan>,
    /// Per symbol, sorted by name.
    pub symbols: Vec<SymbolScan>,
    /// Smallest event time seen (0 when none).
    pub first_ms: u64,
    /// Largest event time seen (0 when none).
    pub last_ms: u64,
}

/// Largest power of ten ≤ `cap` that divides `units` (`units` = 0 divides by everything).
fn pow10_grid(units: i64, cap: i64) -> i64 {
    let mut g = cap;
    while g > 1 && units % g != 0 {
        g /= 10;
    }
    g
}

impl SymbolScan {
    fn new(symbol: Symbol) -> Self {
        Self {
            symbol,
            agg_trades: 0,
            book_tickers: 0,
            klines: 0,
            depth: 0,
            price_grid: SCALE,
            qty_grid: SCALE,
        }
    }
    fn price(&mut self, units: i64) {
        if units > 0 {
            self.price_grid = pow10_grid(units, self.price_grid);
        }
    }
    fn qty(&mut self, units: i64) {
        if units > 0 {
            self.qty_grid = pow10_grid(units, self.qty_grid);
        }
    }
}

/// Scans every file. `progress(bytes)` is called with bytes read so far (this pass only).
pub fn scan_files(files: &[PathBuf], progress: &mut dyn FnMut(u64)) -> Result<Scan, BacktestError> {
    let mut parser = Parser::new();
    let mut out = Scan {
        files: Vec::with_capacity(files.len()),
        symbols: Vec::new(),
        first_ms: 0,
        last_ms: 0,
    };
    let (mut first, mut last) = (u64::MAX, 0u64);
    let mut done = 0u64;
    for path in files {
        let mut r = LineReader::open(path)?;
        let mut fs = FileScan {
            path: path.clone(),
            bytes: r.size(),
            lines: 0,
            parse_errors: 0,
        };
        while r.next_line(path)? {
            fs.lines += 1;
            match parser.parse(r.line()) {
                Ok(m) => {
                    let et = m.event_time();
                    if et > 0 {
                        first = first.min(et);
                        last = last.max(et);
                    }
                    record(&mut out.symbols, &m);
                }
                Err(_) => fs.parse_errors += 1,
            }
            if r.consumed() - done >= super::PROGRESS_STEP {
                done = r.consumed();
                progress(done_total(&out.files, done));
            }
        }
        done = 0;
        out.files.push(fs);
        progress(done_total(&out.files, 0));
    }
    if last > 0 {
        out.first_ms = first;
        out.last_ms = last;
    }
    out.symbols
        .sort_by(|a, b| a.symbol.as_str().cmp(b.symbol.as_str()));
    Ok(out)
}

fn done_total(files: &[FileScan], partial: u64) -> u64 {
    files.iter().map(|f| f.bytes).sum::<u64>() + partial
}

fn record(syms: &mut Vec<SymbolScan>, m: &MarketMsg<'_>) {
    let s = m.symbol();
    let i = match syms.iter().position(|x| x.symbol == s) {
        Some(i) => i,
        None => {
            syms.push(SymbolScan::new(s));
            syms.len() - 1
        }
    };
    let e = &mut syms[i];
    match m {
        MarketMsg::AggTrade(t) => {
            e.agg_trades += 1;
            e.price(t.price.units());
            e.qty(t.qty.units());
        }
        MarketMsg::BookTicker(t) => {
            e.book_tickers += 1;
            e.price(t.bid.units());
            e.price(t.ask.units());
            e.qty(t.bid_qty.units());
            e.qty(t.ask_qty.units());
        }
        MarketMsg::Kline(k) => {
            e.klines += 1;
            for p in [k.open, k.high, k.low, k.close] {
                e.price(p.units());
            }
            // A kline's volume is a sum of trade sizes: its grid is never finer than the step, so at worst this
            // derives a coarser step (still on the real grid).
            e.qty(k.volume.units());
        }
        MarketMsg::Depth(_) => e.depth += 1,
    }
}

/// The quote asset of a symbol, from a list of common Binance quote assets (longest match first); `None` if
/// the symbol ends in none of them.
pub fn quote_asset(symbol: &str) -> Option<&'static str> {
    aegis_shared::quote::QUOTE_ASSETS
        .into_iter()
        .find(|q| symbol.len() > q.len() && symbol.ends_with(q))
}

/// Whether a path exists and is a file (for a clear error before the scan).
pub(super) fn check_file(path: &Path) -> Result<(), BacktestError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(BacktestError::NotAFile(path.to_path_buf())),
        Err(source) => Err(BacktestError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_and_quotes() {
        assert_eq!(pow10_grid(141_342, SCALE), 1);
        assert_eq!(pow10_grid(23 * SCALE, SCALE), SCALE);
        assert_eq!(pow10_grid(118_930_000, SCALE), 10_000);
        assert_eq!(pow10_grid(928_904_350_000_000, SCALE), 10_000_000);
        assert_eq!(quote_asset("XRPETH"), Some("ETH"));
        assert_eq!(quote_asset("XRPUSDT"), Some("USDT"));
        assert_eq!(quote_asset("USDT"), None);
    }
}
