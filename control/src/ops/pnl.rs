//! `aegis reconcile --pnl [--since T] [--json]`: the bot's money records against the exchange's own books.
//!
//! **The bot's side** is the journal in `DATA_DIR` (the primary record, written before anything else happens
//! with an event; Postgres is a mirror of it): every `Fill` and `Funding` event. A trade booked to several modes
//! (a liquidation or a manual fill split over modes) is one exchange trade: its parts are summed by
//! `(symbol, trade_id)`; a funding settlement split over modes is summed by `(symbol, tranId)`.
//!
//! **The exchange's side** is `GET /fapi/v1/userTrades` per symbol (every configured symbol and every symbol in
//! either side's records) and `GET /fapi/v1/income` (all types) over the same window, read with the key of the
//! `TRADING_MODE`.
//!
//! **Compared**, per symbol: trades missing on either side (by trade id), fields that differ (side, price, qty,
//! commission, commission asset, realized PnL), funding settlements missing on either side (by tranId) or with
//! another amount, and the totals: fills, fees per asset (trades and `COMMISSION` income), fees in the quote
//! asset, funding, realized PnL (trades and `REALIZED_PNL` income). `INSURANCE_CLEAR` (the liquidation
//! clearance fee) is a cash flow the bot has no record of: any is a difference. Fees in another asset than the
//! quote asset have no quote value on the exchange; the exchange's column values them at the bot's recorded
//! fill-time price of the same trade, so the column checks the arithmetic, and the per-asset line checks the
//! amount. All numbers are exact decimals (10⁻⁸).
//!
//! Exit codes: 0 equal, 1 any difference, 2 an error (settings, no key, journal unreadable, exchange unreachable).

use crate::exchange::funding::quote_asset;
use crate::exchange::trades::{IncomeRow, UserTrade};
use crate::journal::{JournalError, JournalReader, JournalRecord};
use aegis_shared::event::{EngineEvent, FeeConversion};
use aegis_shared::{Notional, Price, Qty, Side, Symbol};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// One exchange trade as the bot booked it (split parts summed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotTrade {
    /// Side.
    pub side: Side,
    /// Price.
    pub price: Price,
    /// Quantity over all parts.
    pub qty: Qty,
    /// Commission over all parts, in `fee_asset`.
    pub fee: Notional,
    /// Commission asset.
    pub fee_asset: Symbol,
    /// Realized PnL over all parts (before fees).
    pub realized: Notional,
    /// The commission in the quote asset as the bot counts it.
    pub quote_fee: Notional,
    /// The fee asset's price the bot valued the fee at (a non-quote fee asset only).
    pub fee_price: Option<Price>,
    /// Time (ms).
    pub time: u64,
    /// Journal records (parts) this trade was booked in.
    pub parts: u32,
}

/// The bot's records of the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BotBooks {
    /// Trades by (symbol, trade id).
    pub trades: BTreeMap<(Symbol, u64), BotTrade>,
    /// Funding by (symbol, tranId): the sum of the modes' parts, in the asset paid.
    pub funding: BTreeMap<(Symbol, u64), (Symbol, Notional)>,
    /// Start of the first run the journal records (ms), the default start of the window.
    pub first_ms: Option<u64>,
}

impl BotBooks {
    /// Applies one journal record; events before `since_ms` are left out.
    pub fn apply(&mut self, rec: &JournalRecord, since_ms: u64) {
        if let JournalRecord::Session(se) = rec {
            self.first_ms = Some(self.first_ms.map_or(se.ts_ms, |f| f.min(se.ts_ms)));
        }
        let JournalRecord::Engine(e) = rec else {
            return;
        };
        match e {
            EngineEvent::Fill(f) if f.ts_ms >= since_ms => {
                let fee_price = match f.fee_conv {
                    FeeConversion::Converted { price, .. } => Some(price),
                    _ => None,
                };
                let t = self
                    .trades
                    .entry((f.symbol, f.trade_id))
                    .or_insert(BotTrade {
                        side: f.side,
                        price: f.price,
                        qty: Qty::ZERO,
                        fee: Notional::ZERO,
                        fee_asset: f.fee_asset,
                        realized: Notional::ZERO,
                        quote_fee: Notional::ZERO,
                        fee_price,
                        time: f.ts_ms,
                        parts: 0,
                    });
                t.qty = t.qty.saturating_add(f.qty);
                t.fee = t.fee.saturating_add(f.fee);
                t.realized = t.realized.saturating_add(f.realized_pnl);
                t.quote_fee = t.quote_fee.saturating_add(f.quote_fee());
                t.parts += 1;
            }
            EngineEvent::Funding(f) if f.ts_ms >= since_ms => {
                let e = self
                    .funding
                    .entry((f.symbol, f.tran_id))
                    .or_insert((f.asset, Notional::ZERO));
                e.1 = e.1.saturating_add(f.amount);
            }
            _ => {}
        }
    }
}

/// Reads the bot's records from the journal in `journal_dir` (read-only: safe while the bot runs).
pub fn bot_books(journal_dir: &Path, since_ms: u64) -> Result<BotBooks, JournalError> {
    let mut r = JournalReader::open(journal_dir)?;
    let mut b = BotBooks::default();
    for entry in r.records_from(JournalReader::start_offset())? {
        b.apply(&entry?.record, since_ms);
    }
    Ok(b)
}

/// The exchange's records of the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExchangeBooks {
    /// Trades by (symbol, trade id).
    pub trades: BTreeMap<(Symbol, u64), UserTrade>,
    /// Every income row of the window.
    pub income: Vec<IncomeRow>,
}

/// A total, both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Total {
    /// What is summed (`fills`, `fees BNB`, `funding`, ...).
    pub what: String,
    /// The bot's value.
    pub bot: String,
    /// The exchange's value.
    pub exchange: String,
}

impl Total {
    /// Whether both sides agree.
    pub fn equal(&self) -> bool {
        self.bot == self.exchange
    }
}

/// A field of one record that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDiff {
    /// `trade <id>` or `funding <tranId>`.
    pub record: String,
    /// The field.
    pub field: &'static str,
    /// The bot's value.
    pub bot: String,
    /// The exchange's value.
    pub exchange: String,
}

/// The comparison of one symbol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SymbolReport {
    /// Trade ids the bot booked and the exchange does not know.
    pub trades_missing_on_exchange: Vec<u64>,
    /// Trade ids the exchange booked and the bot does not have.
    pub trades_missing_in_bot: Vec<u64>,
    /// Funding tranIds the bot booked and the exchange does not know.
    pub funding_missing_on_exchange: Vec<u64>,
    /// Funding tranIds the exchange booked and the bot does not have.
    pub funding_missing_in_bot: Vec<u64>,
    /// Fields that differ.
    pub diffs: Vec<FieldDiff>,
    /// Totals, bot vs exchange.
    pub totals: Vec<Total>,
}

impl SymbolReport {
    /// Whether anything differs.
    pub fn has_difference(&self) -> bool {
        !(self.trades_missing_on_exchange.is_empty()
            && self.trades_missing_in_bot.is_empty()
            && self.funding_missing_on_exchange.is_empty()
            && self.funding_missing_in_bot.is_empty()
            && self.diffs.is_empty()
            && self.totals.iter().all(Total::equal))
    }
}

/// The whole comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Window start (ms, inclusive).
    pub from_ms: u64,
    /// Window end (ms, inclusive).
    pub to_ms: u64,
    /// Per symbol.
    pub symbols: BTreeMap<Symbol, SymbolReport>,
    /// Income rows of types the bot does not track that move money (`INSURANCE_CLEAR`, unknown symbol-bound
    /// types): each is a difference.
    pub untracked_income: Vec<(String, String, String)>,
}

impl Report {
    /// Whether anything differs.
    pub fn has_difference(&self) -> bool {
        !self.untracked_income.is_empty() || self.symbols.values().any(SymbolReport::has_difference)
    }
}

fn add(m: &mut BTreeMap<String, Notional>, k: &str, v: Notional) {
    let e = m.entry(k.to_string()).or_default();
    *e = e.saturating_add(v);
}

/// Income types the comparison accounts for (or that move no money of a trade: transfers, rebates' own
/// rows are reported as untracked when bound to a symbol).
const TRACKED_INCOME: [&str; 4] = ["REALIZED_PNL", "COMMISSION", "FUNDING_FEE", "TRANSFER"];

/// Compares the two sides. `symbols` are the configured ones (compared even with no records on either side).
pub fn compare(
    bot: &BotBooks,
    ex: &ExchangeBooks,
    symbols: &[Symbol],
    from_ms: u64,
    to_ms: u64,
) -> Report {
    let mut all: BTreeSet<Symbol> = symbols.iter().copied().collect();
    all.extend(bot.trades.keys().map(|k| k.0));
    all.extend(bot.funding.keys().map(|k| k.0));
    all.extend(ex.trades.keys().map(|k| k.0));
    all.extend(ex.income.iter().filter_map(|r| r.symbol));
    let mut rep = Report {
        from_ms,
        to_ms,
        ..Report::default()
    };
    for r in &ex.income {
        if !TRACKED_INCOME.contains(&r.income_type.as_str()) && !r.income.is_zero() {
            rep.untracked_income.push((
                r.symbol.map(|s| s.as_str().to_string()).unwrap_or_default(),
                r.income_type.clone(),
                format!("{} {}", r.income, r.asset),
            ));
        }
    }
    for sym in all {
        rep.symbols.insert(sym, compare_symbol(sym, bot, ex));
    }
    rep
}

fn compare_symbol(sym: Symbol, bot: &BotBooks, ex: &ExchangeBooks) -> SymbolReport {
    let quote = quote_asset(sym.as_str());
    let mut s = SymbolReport::default();
    let range = (sym, 0)..=(sym, u64::MAX);
    let bt: BTreeMap<u64, &BotTrade> = bot
        .trades
        .range(range.clone())
        .map(|(k, v)| (k.1, v))
        .collect();
    let et: BTreeMap<u64, &UserTrade> = ex
        .trades
        .range(range.clone())
        .map(|(k, v)| (k.1, v))
        .collect();
    let (mut b_fee, mut e_fee) = (BTreeMap::new(), BTreeMap::new());
    let (mut b_quote, mut e_quote) = (Notional::ZERO, Notional::ZERO);
    let (mut b_real, mut e_real) = (Notional::ZERO, Notional::ZERO);
    for (id, b) in &bt {
        add(&mut b_fee, b.fee_asset.as_str(), b.fee);
        b_quote = b_quote.saturating_add(b.quote_fee);
        b_real = b_real.saturating_add(b.realized);
        if !et.contains_key(id) {
            s.trades_missing_on_exchange.push(*id);
        }
    }
    for (id, e) in &et {
        add(&mut e_fee, e.commission_asset.as_str(), e.commission);
        e_real = e_real.saturating_add(e.realized_pnl);
        let b = bt.get(id);
        // The exchange has no quote value for a fee in another asset: value it at the bot's price of this trade.
        let eq = if Some(e.commission_asset.as_str()) == quote {
            e.commission
        } else {
            match b.and_then(|b| b.fee_price) {
                Some(p) => FeeConversion::convert(e.commission, p).quote_fee(e.commission),
                None => Notional::ZERO,
            }
        };
        e_quote = e_quote.saturating_add(eq);
        let Some(b) = b else {
            s.trades_missing_in_bot.push(*id);
            continue;
        };
        let rec = format!("trade {id}");
        let mut diff = |field: &'static str, bv: String, ev: String| {
            if bv != ev {
                s.diffs.push(FieldDiff {
                    record: rec.clone(),
                    field,
                    bot: bv,
                    exchange: ev,
                });
            }
        };
        diff("side", b.side.as_str().into(), e.side.as_str().into());
        diff("price", b.price.to_string(), e.price.to_string());
        diff("qty", b.qty.to_string(), e.qty.to_string());
        diff("commission", b.fee.to_string(), e.commission.to_string());
        diff(
            "commissionAsset",
            b.fee_asset.as_str().into(),
            e.commission_asset.as_str().into(),
        );
        diff(
            "realizedPnl",
            b.realized.to_string(),
            e.realized_pnl.to_string(),
        );
    }
    // Funding.
    let bf: BTreeMap<u64, &(Symbol, Notional)> =
        bot.funding.range(range).map(|(k, v)| (k.1, v)).collect();
    let ef: BTreeMap<u64, &IncomeRow> = ex
        .income
        .iter()
        .filter(|r| r.symbol == Some(sym) && r.income_type == "FUNDING_FEE")
        .map(|r| (r.tran_id, r))
        .collect();
    let (mut b_fund, mut e_fund) = (BTreeMap::new(), BTreeMap::new());
    for (id, (asset, amount)) in &bf {
        add(&mut b_fund, asset.as_str(), *amount);
        match ef.get(id) {
            None => s.funding_missing_on_exchange.push(*id),
            Some(e) => {
                let (bv, ev) = (
                    format!("{amount} {asset}"),
                    format!("{} {}", e.income, e.asset),
                );
                if bv != ev {
                    s.diffs.push(FieldDiff {
                        record: format!("funding {id}"),
                        field: "income",
                        bot: bv,
                        exchange: ev,
                    });
                }
            }
        }
    }
    for (id, e) in &ef {
        add(&mut e_fund, e.asset.as_str(), e.income);
        if !bf.contains_key(id) {
            s.funding_missing_in_bot.push(*id);
        }
    }
    // Income per asset for commissions (negative = paid) and realized PnL, from the cash-flow side.
    let (mut i_fee, mut i_real) = (BTreeMap::new(), Notional::ZERO);
    for r in ex.income.iter().filter(|r| r.symbol == Some(sym)) {
        match r.income_type.as_str() {
            "COMMISSION" => add(
                &mut i_fee,
                r.asset.as_str(),
                Notional::ZERO.saturating_sub(r.income),
            ),
            "REALIZED_PNL" => i_real = i_real.saturating_add(r.income),
            _ => {}
        }
    }
    let t = |what: String, b: String, e: String| Total {
        what,
        bot: b,
        exchange: e,
    };
    s.totals.push(t(
        "fills".into(),
        bt.len().to_string(),
        et.len().to_string(),
    ));
    let assets: BTreeSet<&String> = b_fee
        .keys()
        .chain(e_fee.keys())
        .chain(i_fee.keys())
        .collect();
    let get =
        |m: &BTreeMap<String, Notional>, a: &str| m.get(a).copied().unwrap_or_default().to_string();
    for a in assets {
        s.totals.push(t(
            format!("fees {a} (userTrades)"),
            get(&b_fee, a),
            get(&e_fee, a),
        ));
        s.totals.push(t(
            format!("fees {a} (income COMMISSION)"),
            get(&b_fee, a),
            get(&i_fee, a),
        ));
    }
    s.totals.push(t(
        format!("fees in {}", quote.unwrap_or("quote")),
        b_quote.to_string(),
        e_quote.to_string(),
    ));
    let fassets: BTreeSet<&String> = b_fund.keys().chain(e_fund.keys()).collect();
    if fassets.is_empty() {
        s.totals.push(t("funding".into(), "0".into(), "0".into()));
    }
    for a in fassets {
        s.totals
            .push(t(format!("funding {a}"), get(&b_fund, a), get(&e_fund, a)));
    }
    s.totals.push(t(
        "realized PnL (userTrades)".into(),
        b_real.to_string(),
        e_real.to_string(),
    ));
    s.totals.push(t(
        "realized PnL (income REALIZED_PNL)".into(),
        b_real.to_string(),
        i_real.to_string(),
    ));
    s
}

fn ms_text(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// The human report.
pub fn render_text(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Aegis PnL reconciliation: the bot's journal vs the exchange's userTrades and income\nwindow {} .. {}",
        ms_text(r.from_ms),
        ms_text(r.to_ms)
    );
    for (sym, s) in &r.symbols {
        let _ = writeln!(
            o,
            "\n{sym}: {}",
            if s.has_difference() {
                "DIFFERENT"
            } else {
                "equal"
            }
        );
        let ids = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        for (what, v) in [
            (
                "trades the exchange does not know",
                &s.trades_missing_on_exchange,
            ),
            (
                "trades missing in the bot's records",
                &s.trades_missing_in_bot,
            ),
            (
                "funding the exchange does not know (tranId)",
                &s.funding_missing_on_exchange,
            ),
            (
                "funding missing in the bot's records (tranId)",
                &s.funding_missing_in_bot,
            ),
        ] {
            if !v.is_empty() {
                let _ = writeln!(o, "  {what}: {}", ids(v));
            }
        }
        for d in &s.diffs {
            let _ = writeln!(
                o,
                "  {} {}: bot {} | exchange {}",
                d.record, d.field, d.bot, d.exchange
            );
        }
        let w = s.totals.iter().map(|t| t.what.len()).max().unwrap_or(0);
        for t in &s.totals {
            let _ = writeln!(
                o,
                "  {:w$}  bot {:>20}  exchange {:>20}{}",
                t.what,
                t.bot,
                t.exchange,
                if t.equal() { "" } else { "  <- DIFFERENT" }
            );
        }
    }
    for (sym, kind, amount) in &r.untracked_income {
        let _ = writeln!(
            o,
            "\nexchange cash flow the bot has no record of: {kind} {amount} {sym}"
        );
    }
    let _ = writeln!(
        o,
        "\n{}",
        if r.has_difference() {
            "RESULT: DIFFERENT (exit 1): the lines above marked DIFFERENT or listed are what disagrees"
        } else {
            "RESULT: equal (exit 0)"
        }
    );
    o
}

/// The machine report.
pub fn render_json(r: &Report) -> Value {
    let syms: serde_json::Map<String, Value> = r
        .symbols
        .iter()
        .map(|(sym, s)| {
            (
                sym.as_str().to_string(),
                json!({
                    "equal": !s.has_difference(),
                    "trades_missing_on_exchange": s.trades_missing_on_exchange,
                    "trades_missing_in_bot": s.trades_missing_in_bot,
                    "funding_missing_on_exchange": s.funding_missing_on_exchange,
                    "funding_missing_in_bot": s.funding_missing_in_bot,
                    "diffs": s.diffs.iter().map(|d| json!({"record": d.record, "field": d.field, "bot": d.bot, "exchange": d.exchange})).collect::<Vec<_>>(),
                    "totals": s.totals.iter().map(|t| json!({"what": t.what, "bot": t.bot, "exchange": t.exchange, "equal": t.equal()})).collect::<Vec<_>>(),
                }),
            )
        })
        .collect();
    json!({
        "equal": !r.has_difference(),
        "from_ms": r.from_ms,
        "to_ms": r.to_ms,
        "symbols": syms,
        "untracked_income": r.untracked_income.iter().map(|(s, k, a)| json!({"symbol": s, "type": k, "amount": a})).collect::<Vec<_>>(),
    })
}

/// `--since`: a UTC date (`2026-01-31`), RFC 3339 with a zone, epoch milliseconds (12 digits or more), or a
/// duration back from `now_ms` (`30m`, `24h`, `7d`, seconds).
pub fn parse_since(v: &str, now_ms: u64) -> Result<u64, String> {
    let v = v.trim();
    let err = || {
        format!(
            "--since {v:?}: use a UTC date (2026-01-31), RFC 3339 (2026-01-31T12:00:00Z), epoch ms \
             (1767225600000) or a duration back from now (30m, 24h, 7d)"
        )
    };
    if v.len() >= 12 && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse().map_err(|_| err());
    }
    if let Some(d) = aegis_shared::config::parse_duration(v) {
        return Ok(now_ms.saturating_sub(d.as_millis() as u64));
    }
    rfc3339_ms(v).ok_or_else(err)
}

fn rfc3339_ms(v: &str) -> Option<u64> {
    let b = v.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = v.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let date = time::Date::from_calendar_date(
        num(0..4)? as i32,
        time::Month::try_from(num(5..7)? as u8).ok()?,
        num(8..10)? as u8,
    )
    .ok()?;
    let day_s = date.midnight().assume_utc().unix_timestamp();
    if b.len() == 10 {
        return u64::try_from(day_s * 1000).ok();
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 20 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = v.get(start..i)?;
        if digits.is_empty() {
            return None;
        }
        let ms3: String = digits.chars().chain("000".chars()).take(3).collect();
        frac_ms = ms3.parse().ok()?;
    }
    let offset_s = match v.get(i..)? {
        "Z" | "z" => 0,
        z if z.len() == 6 && matches!(&z[..1], "+" | "-") && &z[3..4] == ":" => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            let o = oh * 3600 + om * 60;
            if &z[..1] == "-" {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let t = (day_s + h * 3600 + m * 60 + s - offset_s) * 1000 + frac_ms;
    u64::try_from(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::test_support::fill;
    use aegis_shared::event::FundingEvent;

    fn sym() -> Symbol {
        Symbol::new("BTCUSDT").unwrap()
    }

    fn ex_trade(id: u64, side: Side, price: &str, pnl: &str) -> UserTrade {
        UserTrade {
            symbol: sym(),
            id,
            order_id: id,
            side,
            price: Price::parse(price).unwrap(),
            qty: Qty::parse("0.01").unwrap(),
            commission: Notional::parse("0.0004").unwrap(),
            commission_asset: Symbol::new("USDT").unwrap(),
            realized_pnl: Notional::parse(pnl).unwrap(),
            maker: false,
            time: 1_700_000_000_000 + id,
        }
    }

    fn income(kind: &str, amount: &str, tran_id: u64, trade: Option<u64>) -> IncomeRow {
        IncomeRow {
            symbol: Some(sym()),
            income_type: kind.into(),
            income: Notional::parse(amount).unwrap(),
            asset: Symbol::new("USDT").unwrap(),
            tran_id,
            trade_id: trade,
            time: 1_700_000_000_000,
        }
    }

    fn funding(tran_id: u64, amount: &str) -> JournalRecord {
        JournalRecord::Engine(EngineEvent::Funding(FundingEvent {
            ts_ms: 1_700_000_000_500,
            symbol: sym(),
            mode: aegis_shared::StrategyMode::Scalp,
            tran_id,
            asset: Symbol::new("USDT").unwrap(),
            amount: Notional::parse(amount).unwrap(),
            quote: Notional::parse(amount).unwrap(),
            total: Notional::parse(amount).unwrap(),
        }))
    }

    /// Equal books report nothing; every kind of difference is found and named, and split parts of one
    /// exchange trade are summed before comparing.
    #[test]
    fn equal_books_are_equal_and_each_difference_is_named() {
        let mut bot = BotBooks::default();
        bot.apply(&JournalRecord::Engine(fill(1, Side::Buy, "100", "0")), 0);
        bot.apply(
            &JournalRecord::Engine(fill(2, Side::Sell, "101", "0.01")),
            0,
        );
        bot.apply(&funding(77, "-0.25"), 0);
        let mut ex = ExchangeBooks::default();
        for t in [
            ex_trade(1, Side::Buy, "100", "0"),
            ex_trade(2, Side::Sell, "101", "0.01"),
        ] {
            ex.income
                .push(income("COMMISSION", "-0.0004", 100 + t.id, Some(t.id)));
            ex.trades.insert((sym(), t.id), t);
        }
        ex.income.push(income("REALIZED_PNL", "0.01", 200, Some(2)));
        ex.income.push(income("FUNDING_FEE", "-0.25", 77, None));
        let r = compare(&bot, &ex, &[sym()], 0, 1);
        assert!(!r.has_difference(), "{}", render_text(&r));
        assert!(render_text(&r).contains("RESULT: equal"));

        // A split trade: two parts of trade 2 sum to the exchange's one row.
        let mut split = BotBooks::default();
        split.apply(&JournalRecord::Engine(fill(1, Side::Buy, "100", "0")), 0);
        for part in 0..2u16 {
            let EngineEvent::Fill(mut f) = fill(2, Side::Sell, "101", "0.005") else {
                unreachable!()
            };
            f.split_part = part;
            f.qty = Qty::parse("0.005").unwrap();
            f.fee = Notional::parse("0.0002").unwrap();
            split.apply(&JournalRecord::Engine(EngineEvent::Fill(f)), 0);
        }
        split.apply(&funding(77, "-0.25"), 0);
        let r = compare(&split, &ex, &[sym()], 0, 1);
        assert!(!r.has_difference(), "{}", render_text(&r));

        // Differences: a trade missing in the bot, a field, a funding settlement, an untracked clearance fee.
        let mut ex2 = ex.clone();
        let mut t3 = ex_trade(3, Side::Buy, "99", "0");
        t3.commission_asset = Symbol::new("BNB").unwrap();
        ex2.trades.insert((sym(), 3), t3);
        ex2.trades.get_mut(&(sym(), 2)).unwrap().price = Price::parse("101.1").unwrap();
        ex2.income.retain(|r| r.income_type != "FUNDING_FEE");
        ex2.income
            .push(income("INSURANCE_CLEAR", "-1.5", 300, None));
        let r = compare(&bot, &ex2, &[sym()], 0, 1);
        let s = &r.symbols[&sym()];
        assert_eq!(s.trades_missing_in_bot, vec![3]);
        assert!(s.trades_missing_on_exchange.is_empty());
        assert_eq!(s.funding_missing_on_exchange, vec![77]);
        assert_eq!(s.diffs.len(), 1, "{:?}", s.diffs);
        assert_eq!(s.diffs[0].field, "price");
        assert_eq!(r.untracked_income.len(), 1);
        let bnb = s
            .totals
            .iter()
            .find(|t| t.what == "fees BNB (userTrades)")
            .unwrap();
        assert_eq!((bnb.bot.as_str(), bnb.exchange.as_str()), ("0", "0.0004"));
        assert!(r.has_difference());
        let j = render_json(&r);
        assert_eq!(j["equal"], false);
        assert_eq!(j["symbols"]["BTCUSDT"]["trades_missing_in_bot"][0], 3);
        // The window: records before --since are not the bot's records of the window.
        let mut late = BotBooks::default();
        late.apply(
            &JournalRecord::Engine(fill(1, Side::Buy, "100", "0")),
            1_700_000_000_002,
        );
        assert!(late.trades.is_empty());
    }

    #[test]
    fn since_reads_dates_times_ms_and_durations() {
        let now = 1_767_225_600_000 + 3_600_000; // 2026-01-01T01:00:00Z
        assert_eq!(parse_since("2026-01-01", now), Ok(1_767_225_600_000));
        assert_eq!(
            parse_since("2026-01-01T00:30:00.25Z", now),
            Ok(1_767_225_600_000 + 1_800_250)
        );
        assert_eq!(
            parse_since("2026-01-01T02:00:00+02:00", now),
            Ok(1_767_225_600_000)
        );
        assert_eq!(parse_since("1767225600000", now), Ok(1_767_225_600_000));
        assert_eq!(parse_since("30m", now), Ok(now - 1_800_000));
        assert_eq!(parse_since("1h", now), Ok(1_767_225_600_000));
        for bad in ["yesterday", "2026-13-01", "2026-01-01T00:00:00", "-5m", ""] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }
}
