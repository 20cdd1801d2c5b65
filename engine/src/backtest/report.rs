//! The backtest report: what [`super::run`] returns, its JSON form (byte-identical for the same input), its text
//! summary ([`std::fmt::Display`]) and the accumulator that builds it from the engine's events.

use super::scan::{Scan, SymbolScan};
use crate::engine::{Engine, EngineParams, EngineReport, SymbolSpec};
use crate::risk::gate::Denial;
use aegis_shared::event::{BreakerChange, BreakerScope, TripReason};
use aegis_shared::quote::RunUnits;
use aegis_shared::{ClientOrderId, EngineEvent, Market, Notional, Price, StrategyMode};
use serde::ser::{SerializeMap, SerializeTuple};
use serde::{Serialize, Serializer};
use std::collections::HashSet;
use std::fmt;

/// Exact amounts go into the JSON as decimal strings (`"12.5"`), never floats.
fn amount<S: Serializer>(v: &Notional, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Stable snake_case name of a denial reason.
pub fn denial_name(d: Denial) -> &'static str {
    match d {
        Denial::Halted => "halted",
        Denial::KillSwitch => "kill_switch",
        Denial::Backpressure => "backpressure",
        Denial::Breaker => "breaker",
        Denial::Allocation => "allocation",
        Denial::ReduceOnly => "reduce_only",
        Denial::Symbol => "symbol",
        Denial::PriceNotOnTick => "price_not_on_tick",
        Denial::QtyNotOnStep => "qty_not_on_step",
        Denial::BelowMinQty => "below_min_qty",
        Denial::BelowMinNotional => "below_min_notional",
        Denial::PositionTooLarge => "position_too_large",
        Denial::DailyLoss => "daily_loss",
        Denial::Leverage => "leverage",
        Denial::MaxOpenOrders => "max_open_orders",
        Denial::RateLimited => "rate_limited",
        Denial::OppositeNet => "opposite_to_net",
        Denial::SpotShort => "spot_short",
    }
}

/// UTC `YYYY-MM-DDTHH:MM:SS.mmmZ` of a ms timestamp (civil-from-days, no time-zone database needed).
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// One point of an equity curve: the last state in its time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurvePoint {
    /// Engine time of the bucket's last message, ms.
    pub t_ms: u64,
    /// Realized net PnL (after fees) so far.
    pub realized: Notional,
    /// Realized net PnL plus the open positions marked at the mid.
    pub equity: Notional,
    /// Largest drawdown of `equity` from its running peak within the bucket (≥ 0).
    pub drawdown: Notional,
}

impl Serialize for CurvePoint {
    /// Compact: `[t_ms, "realized", "equity", "drawdown"]`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(4)?;
        t.serialize_element(&self.t_ms)?;
        t.serialize_element(&self.realized.to_string())?;
        t.serialize_element(&self.equity.to_string())?;
        t.serialize_element(&self.drawdown.to_string())?;
        t.end()
    }
}

/// Results of one mode (or of all modes together: [`BacktestReport::total`]). Amounts are in the quote asset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModeReport {
    /// Mode name, or `total`.
    pub mode: String,
    /// Round trips: positions that went back to flat (or flipped).
    pub trades: u64,
    /// Round trips with a positive net result (after both fills' fees).
    pub wins: u64,
    /// Round trips with a negative net result.
    pub losses: u64,
    /// `wins / trades` (0 without trades), rounded to 4 decimals.
    pub win_rate: f64,
    /// Sum of the fills' realized PnL, before fees.
    #[serde(serialize_with = "amount")]
    pub gross_pnl: Notional,
    /// Sum of the fills' fees.
    #[serde(serialize_with = "amount")]
    pub fees: Notional,
    /// `gross_pnl − fees`.
    #[serde(serialize_with = "amount")]
    pub net_pnl: Notional,
    /// Open positions at the end, marked at the last mid.
    #[serde(serialize_with = "amount")]
    pub unrealized_pnl: Notional,
    /// `net_pnl + unrealized_pnl`.
    #[serde(serialize_with = "amount")]
    pub equity_end: Notional,
    /// Largest peak-to-trough fall of the realized net PnL curve.
    #[serde(serialize_with = "amount")]
    pub max_drawdown_realized: Notional,
    /// Largest peak-to-trough fall of the mark-to-market equity (checked after every message).
    #[serde(serialize_with = "amount")]
    pub max_drawdown: Notional,
    /// Breaker trips: the mode's own breaker; for `total`, the global breaker's trips plus every mode's.
    pub breaker_trips: u64,
    /// Orders the gate approved and the venue received.
    pub orders: u64,
    /// Fills.
    pub fills: u64,
    /// Largest `fill price × |position after the fill|` seen (what the max-position limit bounds).
    #[serde(serialize_with = "amount")]
    pub max_position_notional: Notional,
    /// Most positions (symbols) this mode held open at once; for `total`, across all modes.
    pub max_open_positions: u32,
    /// Positions still open at the end.
    pub open_positions_end: u32,
    /// Time of the first fill, ms.
    pub first_fill_ms: Option<u64>,
    /// Time of the last fill, ms.
    pub last_fill_ms: Option<u64>,
    /// Equity curve, at most one point per time bucket (≤ 2,000 points).
    pub curve: Vec<CurvePoint>,
}

/// A data file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// Path as given.
    pub path: String,
    /// Size, bytes.
    pub bytes: u64,
    /// Non-empty lines.
    pub lines: u64,
    /// Lines that did not parse.
    pub parse_errors: u64,
}

/// A traded symbol: filters used, streams seen, results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SymbolReport {
    /// Symbol.
    pub symbol: String,
    /// Market of this symbol's fills, as the fill events name it (`null` when it never filled). Read from the
    /// events rather than the run's settings so the report shows what the venue actually booked.
    pub market: Option<Market>,
    /// Quote asset (the unit of every amount for this symbol), if recognized.
    pub quote_asset: Option<String>,
    /// Tick size used.
    pub tick_size: String,
    /// Step size used.
    pub step_size: String,
    /// Minimum quantity used.
    pub min_qty: String,
    /// Minimum notional used.
    pub min_notional: String,
    /// `derived` (from the data) or `option` ([`super::BacktestOptions::symbols`]).
    pub filters_from: &'static str,
    /// aggTrade messages.
    pub agg_trades: u64,
    /// bookTicker messages.
    pub book_tickers: u64,
    /// kline messages.
    pub klines: u64,
    /// depth messages (unused).
    pub depth: u64,
    /// A one-tick quote was synthesized before each trade/kline (no bookTicker in the data).
    pub synthetic_book: bool,
    /// Fills in this symbol.
    pub fills: u64,
    /// Realized PnL before fees.
    #[serde(serialize_with = "amount")]
    pub gross_pnl: Notional,
    /// Fees.
    #[serde(serialize_with = "amount")]
    pub fees: Notional,
}

impl SymbolReport {
    pub(super) fn new(
        s: &SymbolScan,
        quote: Option<&str>,
        spec: &SymbolSpec,
        from: &'static str,
    ) -> Self {
        Self {
            symbol: s.symbol.as_str().to_owned(),
            market: None,
            quote_asset: quote.map(str::to_owned),
            tick_size: spec.filters.tick_size.to_string(),
            step_size: spec.filters.step_size.to_string(),
            min_qty: spec.filters.min_qty.to_string(),
            min_notional: spec.filters.min_notional.to_string(),
            filters_from: from,
            agg_trades: s.agg_trades,
            book_tickers: s.book_tickers,
            klines: s.klines,
            depth: s.depth,
            synthetic_book: s.book_tickers == 0,
            fills: 0,
            gross_pnl: Notional::ZERO,
            fees: Notional::ZERO,
        }
    }
}

/// A mode that did not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedMode {
    /// The mode.
    pub mode: StrategyMode,
    /// Why.
    pub reason: &'static str,
}

/// Gate denials of one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenialCount {
    /// The reason.
    pub reason: Denial,
    /// How many.
    pub count: u64,
}

/// The denials, as a JSON object `{reason: count}` in the gate's code order.
fn denials_map<S: Serializer>(v: &[DenialCount], s: S) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(v.len()))?;
    for d in v {
        m.serialize_entry(denial_name(d.reason), &d.count)?;
    }
    m.end()
}

/// Run-wide numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// Data lines fed to the engine.
    pub messages: u64,
    /// Synthesized one-tick quotes fed to the engine (symbols without bookTicker data).
    pub synthetic_quotes: u64,
    /// Lines the engine could not parse.
    pub parse_errors: u64,
    /// Messages for symbols the engine does not trade.
    pub unknown_symbol: u64,
    /// Book updates ignored as stale or crossed.
    pub stale_book: u64,
    /// First event time in the data, ms.
    pub first_event_ms: u64,
    /// Last event time in the data, ms.
    pub last_event_ms: u64,
    /// `first_event_ms` as UTC.
    pub first_event_utc: String,
    /// `last_event_ms` as UTC.
    pub last_event_utc: String,
    /// Orders sent (all modes).
    pub orders: u64,
    /// Fills (all modes).
    pub fills: u64,
    /// Markets of the fills (from each fill event), in the order first seen: one entry for a run that traded,
    /// none for a run without fills.
    pub markets: Vec<Market>,
    /// Gate denials by reason (all modes: the engine counts denials per reason, not per mode).
    #[serde(serialize_with = "denials_map")]
    pub denials: Vec<DenialCount>,
    /// Sum of `denials`.
    pub denials_total: u64,
    /// Trips of the global breaker (hourly loss, losing streak, daily loss).
    pub global_breaker_trips: u64,
    /// All trips (global and per mode) by reason: hourly loss.
    pub trips_hourly_loss: u64,
    /// All trips by reason: consecutive losses.
    pub trips_consecutive_losses: u64,
    /// All trips by reason: daily loss limit.
    pub trips_daily_loss: u64,
    /// Breakers that resumed by themselves after their cooldown (within the data's time span).
    pub breaker_resumes: u64,
    /// Quote assets of the traded symbols (the units of the amounts).
    pub quote_assets: Vec<String>,
    /// True when the amounts in `total` add up different quote assets.
    pub mixed_quote_assets: bool,
}

/// One mode's settings as run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModeSettings {
    /// The mode.
    pub mode: StrategyMode,
    /// Bar length, ms (none for the book-level mode).
    pub bar_ms: Option<u64>,
    /// Entry size asked by the strategy, quote units (the engine caps it at the limits).
    #[serde(serialize_with = "amount")]
    pub notional: Notional,
    /// Allocation: most open positions.
    pub max_positions: u32,
    /// Allocation: most per position.
    #[serde(serialize_with = "amount")]
    pub max_per_position: Notional,
}

/// The settings the run used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingsReport {
    /// How files were combined.
    pub merge: &'static str,
    /// The USD price the USD settings were converted at (`1 ETH = 180.5 USD`) when the data is quoted in a
    /// non-dollar asset; `None` when every amount is USD.
    pub usd_settings_converted_at: Option<String>,
    /// Capital the allocation applies to.
    #[serde(serialize_with = "amount")]
    pub capital: Notional,
    /// Max position size.
    #[serde(serialize_with = "amount")]
    pub max_position: Notional,
    /// Max daily loss.
    #[serde(serialize_with = "amount")]
    pub max_daily_loss: Notional,
    /// Most open orders.
    pub max_open_orders: u32,
    /// Orders per 10 s.
    pub max_orders_per_10s: u32,
    /// Leverage used / allowed.
    pub leverage: u32,
    /// Maker fee rate.
    pub fee_maker: String,
    /// Taker fee rate.
    pub fee_taker: String,
    /// Breakers enabled.
    pub breaker_enabled: bool,
    /// Breaker: hourly loss.
    #[serde(serialize_with = "amount")]
    pub breaker_max_loss_per_hour: Notional,
    /// Breaker: losing streak.
    pub breaker_max_consecutive_losses: u32,
    /// Breaker cooldown, ms.
    pub breaker_cooldown_ms: u64,
    /// Flattened at the end of the data.
    pub flatten_at_end: bool,
    /// Modes run.
    pub modes: Vec<ModeSettings>,
}

impl SettingsReport {
    pub(super) fn new(
        p: &EngineParams,
        active: &[StrategyMode],
        flatten_at_end: bool,
        units: RunUnits,
    ) -> Self {
        let modes = active
            .iter()
            .map(|&m| {
                let (bar_ms, notional) = match m {
                    StrategyMode::UltraFastScalp => {
                        (None, p.ultra_fast.map_or(Notional::ZERO, |x| x.notional))
                    }
                    StrategyMode::Scalp => (Some(p.scalp.bar_ms), p.scalp.notional),
                    StrategyMode::Swing => p
                        .swing
                        .map_or((None, Notional::ZERO), |x| (Some(x.bar_ms), x.notional)),
                    StrategyMode::Position => p
                        .position
                        .map_or((None, Notional::ZERO), |x| (Some(x.bar_ms), x.notional)),
                };
                let a = p.allocation.mode(m);
                ModeSettings {
                    mode: m,
                    bar_ms,
                    notional,
                    max_positions: a.max_positions,
                    max_per_position: a.max_usd_per_position,
                }
            })
            .collect();
        Self {
            merge: "event_time",
            usd_settings_converted_at: match units {
                RunUnits::Usd => None,
                RunUnits::Converted(q) => Some(q.to_string()),
            },
            capital: p.capital,
            max_position: p.limits.max_position_usd,
            max_daily_loss: p.limits.max_daily_loss_usd,
            max_open_orders: p.limits.max_open_orders,
            max_orders_per_10s: p.limits.max_orders_per_10s,
            leverage: p.leverage,
            fee_maker: p.fees.maker.to_string(),
            fee_taker: p.fees.taker.to_string(),
            breaker_enabled: p.breakers.enabled,
            breaker_max_loss_per_hour: p.breakers.max_loss_per_hour,
            breaker_max_consecutive_losses: p.breakers.max_consecutive_losses,
            breaker_cooldown_ms: p.breakers.cooldown_ms,
            flatten_at_end,
            modes,
        }
    }
}

/// Everything a backtest found. Field order is fixed, so [`BacktestReport::to_json`] is byte-identical for the
/// same input and settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacktestReport {
    /// Report format tag.
    pub format: &'static str,
    /// The data files, in the order given.
    pub files: Vec<FileReport>,
    /// The traded symbols (sorted by name).
    pub symbols: Vec<SymbolReport>,
    /// Settings used.
    pub settings: SettingsReport,
    /// Modes that could not run on this data.
    pub modes_skipped: Vec<SkippedMode>,
    /// Run-wide numbers.
    pub run: RunReport,
    /// Per mode that ran, in [`StrategyMode::ALL`] order.
    pub modes: Vec<ModeReport>,
    /// All modes together.
    pub total: ModeReport,
}

impl BacktestReport {
    /// Pretty JSON (deterministic).
    pub fn to_json(&self) -> String {
        // Serializing plain structs, strings and integers into a String cannot fail.
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| unreachable!("report serialization: {e}"))
    }

    /// The report of one mode, if it ran.
    pub fn mode(&self, m: StrategyMode) -> Option<&ModeReport> {
        self.modes.iter().find(|r| r.mode == m.as_str())
    }
}

impl fmt::Display for BacktestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.run;
        let syms: Vec<&str> = self.symbols.iter().map(|s| s.symbol.as_str()).collect();
        writeln!(
            f,
            "Aegis backtest: {} messages ({} files), {} .. {}, symbols {}",
            r.messages,
            self.files.len(),
            r.first_event_utc,
            r.last_event_utc,
            syms.join(", ")
        )?;
        writeln!(f, "Amounts in quote asset: {}", r.quote_assets.join(", "))?;
        if !r.markets.is_empty() {
            let m: Vec<&str> = r.markets.iter().map(|m| m.as_str()).collect();
            writeln!(f, "Market: {}", m.join(", "))?;
        }
        if let Some(at) = &self.settings.usd_settings_converted_at {
            writeln!(
                f,
                "USD settings (sizes, limits, breakers) converted at {at}: max position {}, max daily loss {}",
                self.settings.max_position, self.settings.max_daily_loss
            )?;
        }
        if r.mixed_quote_assets {
            writeln!(f, "WARNING: the totals add amounts in different quote assets; compare per symbol instead")?;
        }
        for s in &self.symbols {
            if s.synthetic_book {
                writeln!(
                    f,
                    "  {}: no bookTicker in the data; fills at a synthesized one-tick quote (tick {})",
                    s.symbol, s.tick_size
                )?;
            }
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<17} {:>6} {:>5} {:>6} {:>14} {:>12} {:>14} {:>14} {:>12} {:>5} {:>6} {:>6}",
            "mode",
            "trades",
            "wins",
            "win%",
            "gross",
            "fees",
            "net",
            "equity(mtm)",
            "max DD",
            "trips",
            "orders",
            "fills"
        )?;
        for m in self.modes.iter().chain(std::iter::once(&self.total)) {
            writeln!(
                f,
                "{:<17} {:>6} {:>5} {:>6.1} {:>14} {:>12} {:>14} {:>14} {:>12} {:>5} {:>6} {:>6}",
                m.mode,
                m.trades,
                m.wins,
                m.win_rate * 100.0,
                short(m.gross_pnl),
                short(m.fees),
                short(m.net_pnl),
                short(m.equity_end),
                short(m.max_drawdown),
                m.breaker_trips,
                m.orders,
                m.fills
            )?;
        }
        for s in &self.modes_skipped {
            writeln!(f, "{:<17} skipped: {}", s.mode.as_str(), s.reason)?;
        }
        writeln!(f)?;
        let nz: Vec<String> = r
            .denials
            .iter()
            .filter(|d| d.count > 0)
            .map(|d| format!("{} {}", denial_name(d.reason), d.count))
            .collect();
        writeln!(
            f,
            "Gate denials: {}",
            if nz.is_empty() {
                "none".to_owned()
            } else {
                nz.join(", ")
            }
        )?;
        writeln!(
            f,
            "Breaker trips: {} global; by reason: hourly loss {}, losing streak {}, daily loss {}; resumed {}",
            r.global_breaker_trips, r.trips_hourly_loss, r.trips_consecutive_losses, r.trips_daily_loss, r.breaker_resumes
        )?;
        write!(
            f,
            "Parse errors: {}; synthesized quotes: {}; open positions at end: {}",
            r.parse_errors, r.synthetic_quotes, self.total.open_positions_end
        )
    }
}

/// An amount rounded to 4 decimals for the text table (the JSON keeps it exact).
fn short(v: Notional) -> String {
    let u = v.units();
    let r = (u.abs() + 5_000) / 10_000;
    let sign = if u < 0 && r != 0 { "-" } else { "" };
    format!("{sign}{}.{:04}", r / 10_000, r % 10_000)
}

#[derive(Debug, Clone, Default)]
struct ModeAcc {
    trades: u64,
    wins: u64,
    losses: u64,
    gross: Notional,
    fees: Notional,
    orders: u64,
    fills: u64,
    trips: u64,
    max_pos: Notional,
    max_open: u32,
    first_fill: Option<u64>,
    last_fill: Option<u64>,
    realized: Notional,
    equity: Notional,
    peak_realized: Notional,
    peak_equity: Notional,
    dd_realized: Notional,
    dd_equity: Notional,
    curve: Vec<CurvePoint>,
    bucket: Option<u64>,
}

impl ModeAcc {
    fn mark(&mut self, realized: Notional, equity: Notional, t: u64, bucket: u64) {
        self.realized = realized;
        self.equity = equity;
        self.peak_realized = self.peak_realized.max(realized);
        self.peak_equity = self.peak_equity.max(equity);
        self.dd_realized = self.dd_realized.max(self.peak_realized - realized);
        let dd = self.peak_equity - equity;
        self.dd_equity = self.dd_equity.max(dd);
        let p = CurvePoint {
            t_ms: t,
            realized,
            equity,
            drawdown: dd,
        };
        match self.curve.last_mut() {
            Some(last) if self.bucket == Some(bucket) => {
                let worst = last.drawdown.max(dd);
                *last = CurvePoint {
                    drawdown: worst,
                    ..p
                };
            }
            _ => {
                self.curve.push(p);
                self.bucket = Some(bucket);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct SlotAcc {
    trade_net: Notional,
    qty_sign: i64,
    last_fill_price: Price,
}

/// Folds engine events and marks into the report.
pub(super) struct Accumulator {
    nsym: usize,
    active: Vec<StrategyMode>,
    modes: [ModeAcc; 4],
    total: ModeAcc,
    slots: Vec<SlotAcc>,
    sym_fills: Vec<(u64, Notional, Notional)>,
    /// Market of each symbol's fills (the last fill's; one process trades one market).
    sym_market: Vec<Option<Market>>,
    markets: Vec<Market>,
    seen_orders: HashSet<ClientOrderId>,
    global_trips: u64,
    trips_by_reason: [u64; 3],
    resumes: u64,
    first_ms: u64,
    span: u64,
    buckets: u64,
    max_open_total: u32,
    /// Data lines fed to the engine.
    pub(super) messages: u64,
    /// Synthesized quotes fed to the engine.
    pub(super) synthetic_quotes: u64,
}

impl Accumulator {
    pub(super) fn new(
        engine: &Engine,
        active: &[StrategyMode],
        first_ms: u64,
        last_ms: u64,
        buckets: usize,
    ) -> Self {
        let nsym = engine.positions().symbols();
        Self {
            nsym,
            active: active.to_vec(),
            modes: Default::default(),
            total: ModeAcc::default(),
            slots: vec![SlotAcc::default(); nsym * 4],
            sym_fills: vec![(0, Notional::ZERO, Notional::ZERO); nsym],
            sym_market: vec![None; nsym],
            markets: Vec::new(),
            seen_orders: HashSet::new(),
            global_trips: 0,
            trips_by_reason: [0; 3],
            resumes: 0,
            first_ms,
            span: last_ms.saturating_sub(first_ms) + 1,
            buckets: buckets as u64,
            max_open_total: 0,
            messages: 0,
            synthetic_quotes: 0,
        }
    }

    pub(super) fn on_event(&mut self, engine: &Engine, e: &EngineEvent) {
        match e {
            // An order counts once, at its first event (NEW, or REJECTED when the venue refused it outright).
            EngineEvent::Order(o) if self.seen_orders.insert(o.client_id) => {
                self.modes[o.mode.index()].orders += 1;
            }
            EngineEvent::Fill(f) => {
                let Some(sym) = engine.sym_index(f.symbol) else {
                    return;
                };
                // Fees in the quote asset: a spot buy's fee is charged in the base asset (XRP of XRPETH), and
                // only its value at the fill price can be added to PnL.
                let fee = f.quote_fee();
                let m = &mut self.modes[f.mode.index()];
                m.fills += 1;
                m.gross += f.realized_pnl;
                m.fees += fee;
                m.first_fill.get_or_insert(f.ts_ms);
                m.last_fill = Some(f.ts_ms);
                let s = &mut self.slots[sym * 4 + f.mode.index()];
                s.trade_net += f.realized_pnl - fee;
                s.last_fill_price = f.price;
                let sf = &mut self.sym_fills[sym];
                sf.0 += 1;
                sf.1 += f.realized_pnl;
                sf.2 += fee;
                self.sym_market[sym] = Some(f.market);
                if !self.markets.contains(&f.market) {
                    self.markets.push(f.market);
                }
            }
            EngineEvent::Position(u) => {
                let Some(sym) = engine.sym_index(u.symbol) else {
                    return;
                };
                let mi = u.mode.index();
                let s = &mut self.slots[sym * 4 + mi];
                // Spot dust (below what can be sold) counts as flat, as the engine's breakers count it.
                let sign = engine.tradable(sym, u.qty).signum();
                // Same rule as the engine's breakers: a trade closes when the position goes flat or flips.
                if s.qty_sign != 0 && sign != s.qty_sign {
                    let net = s.trade_net;
                    s.trade_net = Notional::ZERO;
                    let m = &mut self.modes[mi];
                    m.trades += 1;
                    if net.units() > 0 {
                        m.wins += 1;
                    } else if net.units() < 0 {
                        m.losses += 1;
                    }
                }
                s.qty_sign = sign;
                let held = s.last_fill_price.notional(u.qty.abs());
                let m = &mut self.modes[mi];
                m.max_pos = m.max_pos.max(held);
                let open = (0..self.nsym)
                    .filter(|&i| self.slots[i * 4 + mi].qty_sign != 0)
                    .count() as u32;
                m.max_open = m.max_open.max(open);
                let all = self.slots.iter().filter(|s| s.qty_sign != 0).count() as u32;
                self.max_open_total = self.max_open_total.max(all);
            }
            EngineEvent::Breaker(b) => match b.change {
                BreakerChange::Tripped { reason, .. } => {
                    match b.scope {
                        BreakerScope::Global => self.global_trips += 1,
                        BreakerScope::Mode(m) => self.modes[m.index()].trips += 1,
                    }
                    let i = match reason {
                        TripReason::HourlyLoss => 0,
                        TripReason::ConsecutiveLosses => 1,
                        TripReason::DailyLoss => 2,
                    };
                    self.trips_by_reason[i] += 1;
                }
                BreakerChange::Resumed => self.resumes += 1,
                BreakerChange::Reset => {}
            },
            _ => {}
        }
    }

    /// Marks every mode's equity after a message (full resolution for the drawdowns, bucketed for the curve).
    pub(super) fn mark(&mut self, engine: &Engine) {
        let t = engine.now_ms();
        let bucket = (t.saturating_sub(self.first_ms) as u128 * self.buckets as u128
            / self.span as u128)
            .min(self.buckets as u128 - 1) as u64;
        let (mut tr, mut te) = (Notional::ZERO, Notional::ZERO);
        for m in StrategyMode::ALL {
            let (r, e) = equity_of(engine, self.nsym, m);
            tr += r;
            te += e;
            if self.active.contains(&m) {
                self.modes[m.index()].mark(r, e, t, bucket);
            }
        }
        self.total.mark(tr, te, t, bucket);
    }

    pub(super) fn finish(
        mut self,
        engine: &Engine,
        end: &EngineReport,
        sc: Scan,
        mut symbols: Vec<SymbolReport>,
        modes_skipped: Vec<SkippedMode>,
        settings: SettingsReport,
    ) -> BacktestReport {
        let c = &end.counters;
        let denials: Vec<DenialCount> = Denial::ALL
            .iter()
            .map(|&d| DenialCount {
                reason: d,
                count: c.denials[d.code() as usize],
            })
            .collect();
        for (i, s) in symbols.iter_mut().enumerate() {
            if let Some(sym) = engine.sym_index(sc.symbols[i].symbol) {
                let (n, g, fee) = self.sym_fills[sym];
                s.fills = n;
                s.gross_pnl = g;
                s.fees = fee;
                s.market = self.sym_market[sym];
            }
        }
        let mut quotes: Vec<String> = symbols
            .iter()
            .map(|s| s.quote_asset.clone().unwrap_or_else(|| "?".to_owned()))
            .collect();
        quotes.sort();
        quotes.dedup();
        let run = RunReport {
            messages: self.messages,
            synthetic_quotes: self.synthetic_quotes,
            parse_errors: c.parse_errors,
            unknown_symbol: c.unknown_symbol,
            stale_book: c.stale_book,
            first_event_ms: sc.first_ms,
            last_event_ms: sc.last_ms,
            first_event_utc: utc(sc.first_ms),
            last_event_utc: utc(sc.last_ms),
            orders: c.orders,
            fills: c.fills,
            markets: std::mem::take(&mut self.markets),
            denials_total: denials.iter().map(|d| d.count).sum(),
            denials,
            global_breaker_trips: self.global_trips,
            trips_hourly_loss: self.trips_by_reason[0],
            trips_consecutive_losses: self.trips_by_reason[1],
            trips_daily_loss: self.trips_by_reason[2],
            breaker_resumes: self.resumes,
            mixed_quote_assets: quotes.len() > 1,
            quote_assets: quotes,
        };
        let mut modes = Vec::new();
        let mut total = std::mem::take(&mut self.total);
        for m in StrategyMode::ALL {
            let a = &self.modes[m.index()];
            total.trades += a.trades;
            total.wins += a.wins;
            total.losses += a.losses;
            total.gross += a.gross;
            total.fees += a.fees;
            total.orders += a.orders;
            total.fills += a.fills;
            total.trips += a.trips;
            total.max_pos = total.max_pos.max(a.max_pos);
            total.first_fill = match (total.first_fill, a.first_fill) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
            total.last_fill = total.last_fill.max(a.last_fill);
        }
        total.trips += self.global_trips;
        total.max_open = self.max_open_total;
        for &m in &self.active {
            let open = (0..self.nsym)
                .filter(|&s| self.slots[s * 4 + m.index()].qty_sign != 0)
                .count() as u32;
            modes.push(mode_report(
                m.as_str(),
                std::mem::take(&mut self.modes[m.index()]),
                open,
            ));
        }
        let open_all = self.slots.iter().filter(|s| s.qty_sign != 0).count() as u32;
        BacktestReport {
            format: "aegis-backtest/1",
            files: sc
                .files
                .iter()
                .map(|f| FileReport {
                    path: f.path.display().to_string(),
                    bytes: f.bytes,
                    lines: f.lines,
                    parse_errors: f.parse_errors,
                })
                .collect(),
            symbols,
            settings,
            modes_skipped,
            run,
            modes,
            total: mode_report("total", total, open_all),
        }
    }
}

fn equity_of(engine: &Engine, nsym: usize, m: StrategyMode) -> (Notional, Notional) {
    let (mut r, mut u) = (Notional::ZERO, Notional::ZERO);
    for s in 0..nsym {
        let p = engine.positions().get(s, m);
        r += p.realized() - p.fees();
        if !p.is_flat() {
            if let Some(top) = engine.top(s).filter(|t| t.is_valid()) {
                u += p.unrealized(top.mid());
            }
        }
    }
    (r, r + u)
}

fn mode_report(name: &str, a: ModeAcc, open: u32) -> ModeReport {
    let net = a.gross - a.fees;
    let win_rate = if a.trades == 0 {
        0.0
    } else {
        (a.wins as f64 / a.trades as f64 * 10_000.0).round() / 10_000.0
    };
    ModeReport {
        mode: name.to_owned(),
        trades: a.trades,
        wins: a.wins,
        losses: a.losses,
        win_rate,
        gross_pnl: a.gross,
        fees: a.fees,
        net_pnl: net,
        unrealized_pnl: a.equity - a.realized,
        equity_end: net + (a.equity - a.realized),
        max_drawdown_realized: a.dd_realized,
        max_drawdown: a.dd_equity,
        breaker_trips: a.trips,
        orders: a.orders,
        fills: a.fills,
        max_position_notional: a.max_pos,
        max_open_positions: a.max_open,
        open_positions_end: open,
        first_fill_ms: a.first_fill,
        last_fill_ms: a.last_fill,
        curve: a.curve,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_and_short() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(1_570_752_011_620), "2019-10-11T00:00:11.620Z");
        assert_eq!(utc(1_636_934_700_000), "2021-11-15T00:05:00.000Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(short(Notional::parse("-1.23456").unwrap()), "-1.2346");
        assert_eq!(short(Notional::parse("0.00001").unwrap()), "0.0000");
        assert_eq!(short(Notional::from_int(12)), "12.0000");
    }
}
