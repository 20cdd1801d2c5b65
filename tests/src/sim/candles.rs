//! Market history the way popular clients read it: `GET /fapi/v1/klines` and `GET /fapi/v1/ticker/24hr`, built
//! from the simulator's own public trades (every published aggTrade), and `GET /fapi/v1/leverageBracket`.
//!
//! One-minute bars are kept per symbol (the last [`KEEP_MINUTES`]); longer intervals are aggregated from them on
//! request, aligned to the epoch like Binance's (so `1d` bars open at 00:00 UTC). Minutes without a trade are
//! flat bars at the previous close with zero volume, as Binance serves them.
//!
//! `GET /fapi/v1/aggTrades` serves the last [`KEEP_TRADES`] trades per symbol. The BNB fee mode's price
//! (`BNBUSDT`, not a traded symbol here) is recorded as one trade at each change, so a client can value a BNB
//! fee at the price of the fill's time, as it would from Binance's BNBUSDT trades.

use super::auth::Params;
use super::error::ApiError;
use super::symbols::{fixed, SymbolSpec};
use aegis_shared::num::{Price, Qty};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// One-minute bars kept per symbol (a week).
pub const KEEP_MINUTES: usize = 7 * 24 * 60;
/// Public trades kept per symbol for `aggTrades`.
pub const KEEP_TRADES: usize = 20_000;
/// Longest `startTime`..`endTime` of one `aggTrades` request (Binance: less than an hour).
const AGG_MAX_SPAN: u64 = 3_600_000;
const MINUTE: u64 = 60_000;
const DAY: u64 = 24 * 60 * MINUTE;

/// One bar. Volumes are exact: base in quantity units, quote in 10⁻¹⁶ (price units × quantity units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// Open time (ms).
    pub open_time: u64,
    /// Open, high, low, close.
    pub open: Price,
    /// High.
    pub high: Price,
    /// Low.
    pub low: Price,
    /// Close.
    pub close: Price,
    /// Base volume.
    pub volume: Qty,
    /// Quote volume, in 10⁻¹⁶.
    pub quote_volume: i128,
    /// Trades.
    pub trades: u64,
    /// Base volume bought by takers.
    pub taker_buy_volume: Qty,
    /// Quote volume bought by takers, in 10⁻¹⁶.
    pub taker_buy_quote: i128,
    /// First and last aggTrade id in the bar.
    pub first_id: u64,
    /// Last aggTrade id.
    pub last_id: u64,
    /// Quantity of the last trade.
    pub last_qty: Qty,
}

impl Bar {
    fn flat(open_time: u64, price: Price) -> Self {
        Self {
            open_time,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: Qty::ZERO,
            quote_volume: 0,
            trades: 0,
            taker_buy_volume: Qty::ZERO,
            taker_buy_quote: 0,
            first_id: 0,
            last_id: 0,
            last_qty: Qty::ZERO,
        }
    }

    fn merge(&mut self, b: &Bar) {
        self.high = self.high.max(b.high);
        self.low = self.low.min(b.low);
        self.close = b.close;
        self.volume = Qty::from_units(self.volume.units() + b.volume.units());
        self.quote_volume += b.quote_volume;
        self.taker_buy_volume =
            Qty::from_units(self.taker_buy_volume.units() + b.taker_buy_volume.units());
        self.taker_buy_quote += b.taker_buy_quote;
        if b.trades > 0 {
            if self.trades == 0 {
                self.first_id = b.first_id;
            }
            self.last_id = b.last_id;
            self.last_qty = b.last_qty;
        }
        self.trades += b.trades;
    }
}

/// One public trade as `aggTrades` serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggRow {
    /// Aggregate trade id.
    pub id: u64,
    /// Price.
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
    /// The buyer was the maker.
    pub buyer_maker: bool,
    /// Time (ms).
    pub time: u64,
}

/// The one-minute bars and recent trades of every symbol.
#[derive(Debug, Default)]
pub struct Candles {
    bars: HashMap<String, BTreeMap<u64, Bar>>,
    trades: HashMap<String, std::collections::VecDeque<AggRow>>,
}

impl Candles {
    /// Records a public trade (`buyer_maker`: the seller was the taker).
    pub fn record(
        &mut self,
        symbol: &str,
        id: u64,
        price: Price,
        qty: Qty,
        buyer_maker: bool,
        now: u64,
    ) {
        let minute = now - now % MINUTE;
        let bars = self.bars.entry(symbol.to_string()).or_default();
        let quote = i128::from(price.units()) * i128::from(qty.units());
        let b = bars
            .entry(minute)
            .or_insert_with(|| Bar::flat(minute, price));
        let one = Bar {
            open_time: minute,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: qty,
            quote_volume: quote,
            trades: 1,
            taker_buy_volume: if buyer_maker { Qty::ZERO } else { qty },
            taker_buy_quote: if buyer_maker { 0 } else { quote },
            first_id: id,
            last_id: id,
            last_qty: qty,
        };
        if b.trades == 0 {
            *b = one;
        } else {
            b.merge(&one);
        }
        while bars.len() > KEEP_MINUTES {
            bars.pop_first();
        }
        self.record_trade(symbol, id, price, qty, buyer_maker, now);
    }

    /// Records a trade for `aggTrades` only (no bar): the BNB fee mode's price changes.
    pub fn record_trade(
        &mut self,
        symbol: &str,
        id: u64,
        price: Price,
        qty: Qty,
        buyer_maker: bool,
        now: u64,
    ) {
        let t = self.trades.entry(symbol.to_string()).or_default();
        t.push_back(AggRow {
            id,
            price,
            qty,
            buyer_maker,
            time: now,
        });
        while t.len() > KEEP_TRADES {
            t.pop_front();
        }
    }

    /// The next trade id of `symbol` (for trades recorded by [`Candles::record_trade`] alone).
    pub fn next_trade_id(&self, symbol: &str) -> u64 {
        self.trades
            .get(symbol)
            .and_then(|t| t.back())
            .map_or(1, |r| r.id + 1)
    }

    /// `GET /fapi/v1/aggTrades` of `symbol`: from `fromId`, or within `startTime`..=`endTime` (less than an hour
    /// apart, -1127 otherwise), oldest first, at most `limit` (default 500, at most 1000); with neither, the
    /// most recent `limit`.
    pub fn agg_trades(&self, symbol: &str, p: &Params) -> Result<Value, ApiError> {
        let limit = limit_param(p, 1000)?;
        let (from, start, end) = (
            p.opt_u64("fromId")?,
            p.opt_u64("startTime")?,
            p.opt_u64("endTime")?,
        );
        if let (Some(s), Some(e)) = (start, end) {
            if e < s || e - s >= AGG_MAX_SPAN {
                return Err(ApiError::new(
                    400,
                    -1127,
                    "More than 1 hours between startTime and endTime.",
                ));
            }
        }
        let empty = std::collections::VecDeque::new();
        let all = self.trades.get(symbol).unwrap_or(&empty);
        let rows: Vec<&AggRow> = if from.is_none() && start.is_none() && end.is_none() {
            all.iter().skip(all.len().saturating_sub(limit)).collect()
        } else {
            let start = start.or_else(|| end.map(|e| e.saturating_sub(AGG_MAX_SPAN - 1)));
            let end = end.or_else(|| start.map(|s| s + AGG_MAX_SPAN - 1));
            all.iter()
                .filter(|r| from.is_none_or(|f| r.id >= f))
                .filter(|r| start.is_none_or(|s| r.time >= s) && end.is_none_or(|e| r.time <= e))
                .take(limit)
                .collect()
        };
        Ok(Value::Array(
            rows.into_iter()
                .map(|r| {
                    json!({"a": r.id, "p": r.price.to_string(), "q": r.qty.to_string(), "f": r.id,
                           "l": r.id, "T": r.time, "m": r.buyer_maker})
                })
                .collect(),
        ))
    }

    /// One-minute bars of `symbol` from `from` to `to` (open times, inclusive), gaps filled at the previous
    /// close. Nothing before the first trade.
    fn minutes(&self, symbol: &str, from: u64, to: u64) -> Vec<Bar> {
        let Some(bars) = self.bars.get(symbol) else {
            return Vec::new();
        };
        let mut prev = bars.range(..from).next_back().map(|(_, b)| b.close);
        let mut out = Vec::new();
        let mut t = from - from % MINUTE;
        let Some((&first, _)) = bars.range(t..).next() else {
            // No trade since `from`: flat bars at the last close, if there was one.
            if let Some(p) = prev {
                while t <= to {
                    out.push(Bar::flat(t, p));
                    t += MINUTE;
                }
            }
            return out;
        };
        if prev.is_none() {
            t = first;
        }
        while t <= to {
            match bars.get(&t) {
                Some(b) => {
                    prev = Some(b.close);
                    out.push(*b);
                }
                None => {
                    if let Some(p) = prev {
                        out.push(Bar::flat(t, p));
                    }
                }
            }
            t += MINUTE;
        }
        out
    }

    /// `interval_ms` bars from `minutes`, aligned to the epoch.
    fn aggregate(minutes: &[Bar], interval_ms: u64) -> Vec<Bar> {
        let mut out: Vec<Bar> = Vec::new();
        for m in minutes {
            let open = m.open_time - m.open_time % interval_ms;
            match out.last_mut() {
                Some(b) if b.open_time == open => b.merge(m),
                _ => {
                    let mut b = *m;
                    b.open_time = open;
                    out.push(b);
                }
            }
        }
        out
    }

    /// `GET /fapi/v1/klines`.
    pub fn klines(&self, spec: &SymbolSpec, p: &Params, now: u64) -> Result<Value, ApiError> {
        let interval = interval_ms(p.required("interval")?)?;
        let limit = limit_param(p, 1500)?;
        let start = p.opt_u64("startTime")?;
        let end = p.opt_u64("endTime")?.unwrap_or(now).min(now);
        let from = match start {
            Some(s) => s - s % interval,
            // The most recent `limit` bars.
            None => (end - end % interval).saturating_sub(interval * (limit as u64 - 1)),
        };
        if from > end {
            return Ok(json!([]));
        }
        let mins = self.minutes(&spec.symbol, from, end);
        let (pd, qd) = (spec.price_precision, spec.qty_precision);
        let rows: Vec<Value> = Self::aggregate(&mins, interval)
            .into_iter()
            .filter(|b| start.is_none_or(|s| b.open_time + interval > s))
            .take(limit)
            .map(|b| {
                json!([
                    b.open_time,
                    fixed(b.open.units(), pd),
                    fixed(b.high.units(), pd),
                    fixed(b.low.units(), pd),
                    fixed(b.close.units(), pd),
                    fixed(b.volume.units(), qd),
                    b.open_time + interval - 1,
                    quote(b.quote_volume),
                    b.trades,
                    fixed(b.taker_buy_volume.units(), qd),
                    quote(b.taker_buy_quote),
                    "0"
                ])
            })
            .collect();
        Ok(Value::Array(rows))
    }

    /// `GET /fapi/v1/ticker/24hr` for one symbol: the rolling last 24 hours of its minutes.
    pub fn ticker_24hr(&self, spec: &SymbolSpec, last: Price, now: u64) -> Value {
        let from = now.saturating_sub(DAY);
        let mins = self.minutes(&spec.symbol, from - from % MINUTE, now);
        let (pd, qd) = (spec.price_precision, spec.qty_precision);
        let Some(first) = mins.first().copied() else {
            return json!({
                "symbol": spec.symbol, "priceChange": fixed(0, pd), "priceChangePercent": "0.000",
                "weightedAvgPrice": fixed(0, pd), "lastPrice": fixed(last.units(), pd), "lastQty": fixed(0, qd),
                "openPrice": fixed(last.units(), pd), "highPrice": fixed(last.units(), pd),
                "lowPrice": fixed(last.units(), pd), "volume": fixed(0, qd), "quoteVolume": quote(0),
                "openTime": from, "closeTime": now, "firstId": 0, "lastId": 0, "count": 0
            });
        };
        let mut all = first;
        for m in &mins[1..] {
            all.merge(m);
        }
        let change = all.close.units() - all.open.units();
        // Percent with three decimals, rounded half away from zero, from exact integers.
        let pct_milli = if all.open.units() == 0 {
            0
        } else {
            let n = i128::from(change) * 100_000;
            let d = i128::from(all.open.units());
            (n + n.signum() * d / 2) / d
        };
        let wavg = if all.volume.units() == 0 {
            0
        } else {
            (all.quote_volume / i128::from(all.volume.units())) as i64
        };
        json!({
            "symbol": spec.symbol,
            "priceChange": fixed(change, pd),
            "priceChangePercent": fixed(pct_milli as i64 * 100_000, 3),
            "weightedAvgPrice": fixed(wavg, pd),
            "lastPrice": fixed(all.close.units(), pd),
            "lastQty": fixed(all.last_qty.units(), qd),
            "openPrice": fixed(all.open.units(), pd),
            "highPrice": fixed(all.high.units(), pd),
            "lowPrice": fixed(all.low.units(), pd),
            "volume": fixed(all.volume.units(), qd),
            "quoteVolume": quote(all.quote_volume),
            "openTime": from,
            "closeTime": now,
            "firstId": all.first_id,
            "lastId": all.last_id,
            "count": all.trades,
        })
    }
}

/// A quote amount in 10⁻¹⁶ as Binance prints quote volumes (8 decimals, truncated).
fn quote(v: i128) -> String {
    let units = v / 100_000_000;
    fixed(i64::try_from(units).unwrap_or(i64::MAX), 8)
}

/// Binance's kline intervals up to a day; others are refused like Binance refuses an unknown one.
pub fn interval_ms(s: &str) -> Result<u64, ApiError> {
    let m = match s {
        "1m" => 1,
        "3m" => 3,
        "5m" => 5,
        "15m" => 15,
        "30m" => 30,
        "1h" => 60,
        "2h" => 120,
        "4h" => 240,
        "6h" => 360,
        "8h" => 480,
        "12h" => 720,
        "1d" => 1440,
        _ => return Err(ApiError::new(400, -1120, "Invalid interval.")),
    };
    Ok(m * MINUTE)
}

/// A history request's `limit`: 500 when absent, 1 to `max`, else -1130 as Binance answers it.
fn limit_param(p: &Params, max: u64) -> Result<usize, ApiError> {
    match p.opt_u64("limit")? {
        None => Ok(500),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(_) => Err(ApiError::new(
            400,
            -1130,
            "Data sent for parameter 'limit' is not valid.",
        )),
    }
}

/// `GET /fapi/v1/leverageBracket` for one symbol: Binance's tiers for BTCUSDT-like contracts (notional cap in
/// USDT, initial leverage, maintenance margin rate), capped by the simulator's `maxLeverage` fault if set.
/// `cum` is the maintenance amount that makes the tiers continuous: cumᵢ = cumᵢ₋₁ + floorᵢ × (mmrᵢ − mmrᵢ₋₁).
pub fn leverage_bracket(symbol: &str, max_leverage: Option<u32>) -> Value {
    // (notional cap, initial leverage, maintenance margin rate in 1/10,000)
    const TIERS: [(u64, u32, u64); 10] = [
        (50_000, 125, 40),
        (600_000, 100, 50),
        (3_000_000, 75, 65),
        (12_000_000, 50, 100),
        (70_000_000, 25, 200),
        (100_000_000, 20, 250),
        (230_000_000, 10, 500),
        (480_000_000, 5, 1000),
        (600_000_000, 4, 1250),
        (800_000_000, 3, 1500),
    ];
    let mut floor = 0u64;
    let mut prev_mmr = 0u64;
    let mut cum_bp = 0u64; // cum in USDT × 10,000
    let brackets: Vec<Value> = TIERS
        .iter()
        .enumerate()
        .map(|(i, &(cap, lev, mmr))| {
            cum_bp += floor * (mmr - prev_mmr);
            let b = json!({
                "bracket": i + 1,
                "initialLeverage": max_leverage.map_or(lev, |m| lev.min(m.max(1))),
                "notionalCap": cap,
                "notionalFloor": floor,
                "maintMarginRatio": mmr as f64 / 10_000.0,
                "cum": cum_bp as f64 / 10_000.0,
            });
            floor = cap;
            prev_mmr = mmr;
            b
        })
        .collect();
    json!({"symbol": symbol, "notionalCoef": 1.0, "brackets": brackets})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn spec() -> SymbolSpec {
        SymbolSpec::btcusdt()
    }

    fn px(s: &str) -> Price {
        Price::parse(s).unwrap()
    }
    fn q(s: &str) -> Qty {
        Qty::parse(s).unwrap()
    }

    #[test]
    fn klines_aggregate_trades_exactly_and_fill_quiet_minutes() {
        let mut c = Candles::default();
        let t0 = 1_700_000_040_000 - 1_700_000_040_000 % (5 * MINUTE);
        c.record("BTCUSDT", 1, px("100.0"), q("1.000"), false, t0 + 1_000);
        c.record("BTCUSDT", 2, px("103.5"), q("0.500"), true, t0 + 2_000);
        c.record("BTCUSDT", 3, px("99.9"), q("0.250"), false, t0 + MINUTE + 5);
        // Minute 2 and 3 without trades; a trade in minute 4.
        c.record("BTCUSDT", 4, px("101.0"), q("2.000"), true, t0 + 4 * MINUTE);
        let now = t0 + 4 * MINUTE + 10;
        let one = c
            .klines(
                &spec(),
                &p(&[
                    ("symbol", "BTCUSDT"),
                    ("interval", "1m"),
                    ("startTime", &t0.to_string()),
                ]),
                now,
            )
            .unwrap();
        let rows = one.as_array().unwrap();
        assert_eq!(rows.len(), 5, "{one}");
        assert_eq!(rows[0][0], t0);
        assert_eq!(rows[0][6], t0 + MINUTE - 1);
        assert_eq!(
            (
                &rows[0][1],
                &rows[0][2],
                &rows[0][3],
                &rows[0][4],
                &rows[0][5]
            ),
            (
                &json!("100.00"),
                &json!("103.50"),
                &json!("100.00"),
                &json!("103.50"),
                &json!("1.500")
            )
        );
        // Quote volume 100×1 + 103.5×0.5 = 151.75; takers bought 1.0 of it (100.0 quote).
        assert_eq!(rows[0][7], "151.75000000");
        assert_eq!(
            (rows[0][8].as_u64(), &rows[0][9], &rows[0][10]),
            (Some(2), &json!("1.000"), &json!("100.00000000"))
        );
        // Quiet minutes: flat at the previous close, no volume.
        assert_eq!(
            (&rows[2][1], &rows[2][4], &rows[2][5], rows[2][8].as_u64()),
            (&json!("99.90"), &json!("99.90"), &json!("0.000"), Some(0))
        );
        // One 5-minute bar holds all of it.
        let five = c
            .klines(
                &spec(),
                &p(&[
                    ("symbol", "BTCUSDT"),
                    ("interval", "5m"),
                    ("startTime", &t0.to_string()),
                ]),
                now,
            )
            .unwrap();
        let b = &five[0];
        assert_eq!(five.as_array().unwrap().len(), 1);
        assert_eq!(
            (&b[1], &b[2], &b[3], &b[4], &b[5], b[8].as_u64()),
            (
                &json!("100.00"),
                &json!("103.50"),
                &json!("99.90"),
                &json!("101.00"),
                &json!("3.750"),
                Some(4)
            )
        );
        // Without startTime: the latest `limit` bars.
        let last2 = c
            .klines(
                &spec(),
                &p(&[("symbol", "BTCUSDT"), ("interval", "1m"), ("limit", "2")]),
                now,
            )
            .unwrap();
        assert_eq!(last2.as_array().unwrap().len(), 2);
        assert_eq!(last2[1][0], t0 + 4 * MINUTE);
        assert_eq!(
            c.klines(
                &spec(),
                &p(&[("symbol", "BTCUSDT"), ("interval", "7m")]),
                now
            )
            .unwrap_err()
            .code,
            -1120
        );
        assert_eq!(
            c.klines(
                &spec(),
                &p(&[("symbol", "BTCUSDT"), ("interval", "1m"), ("limit", "1501")]),
                now
            )
            .unwrap_err()
            .code,
            -1130
        );
        assert_eq!(
            c.klines(&spec(), &p(&[("symbol", "BTCUSDT")]), now)
                .unwrap_err()
                .code,
            -1102
        );
    }

    #[test]
    fn ticker_24hr_is_the_rolling_day() {
        let mut c = Candles::default();
        let now = 1_700_000_000_000u64;
        c.record(
            "BTCUSDT",
            7,
            px("200.0"),
            q("1.000"),
            false,
            now - DAY - 5 * MINUTE,
        );
        c.record(
            "BTCUSDT",
            8,
            px("210.0"),
            q("1.000"),
            false,
            now - 10 * MINUTE,
        );
        c.record("BTCUSDT", 9, px("190.0"), q("3.000"), true, now - MINUTE);
        let t = c.ticker_24hr(&spec(), px("190.0"), now);
        // The first minute of the window is the flat bar at the older trade's close.
        assert_eq!(t["openPrice"], "200.00");
        assert_eq!(
            (&t["highPrice"], &t["lowPrice"], &t["lastPrice"]),
            (&json!("210.00"), &json!("190.00"), &json!("190.00"))
        );
        assert_eq!(
            (&t["priceChange"], &t["priceChangePercent"]),
            (&json!("-10.00"), &json!("-5.000"))
        );
        assert_eq!(
            (&t["volume"], &t["quoteVolume"], &t["count"]),
            (&json!("4.000"), &json!("780.00000000"), &json!(2))
        );
        assert_eq!(
            (
                &t["weightedAvgPrice"],
                &t["firstId"],
                &t["lastId"],
                &t["lastQty"]
            ),
            (&json!("195.00"), &json!(8), &json!(9), &json!("3.000"))
        );
    }

    #[test]
    fn agg_trades_by_time_by_id_and_latest() {
        let mut c = Candles::default();
        for i in 1..=5u64 {
            c.record_trade(
                "BNBUSDT",
                i,
                px(&format!("60{i}.0")),
                q("1.000"),
                false,
                1_000 * i,
            );
        }
        let ids = |v: Value| -> Vec<u64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|r| r["a"].as_u64().unwrap())
                .collect()
        };
        let by_time = c
            .agg_trades("BNBUSDT", &p(&[("startTime", "1500"), ("endTime", "4000")]))
            .unwrap();
        assert_eq!(ids(by_time.clone()), [2, 3, 4]);
        assert_eq!(by_time[2]["p"], "604");
        assert_eq!(by_time[2]["T"], 4000);
        assert_eq!(
            ids(c.agg_trades("BNBUSDT", &p(&[("fromId", "4")])).unwrap()),
            [4, 5]
        );
        assert_eq!(
            ids(c.agg_trades("BNBUSDT", &p(&[("limit", "2")])).unwrap()),
            [4, 5]
        );
        assert_eq!(
            ids(c
                .agg_trades("BNBUSDT", &p(&[("endTime", "2500"), ("limit", "1")]))
                .unwrap()),
            [1]
        );
        let e = c
            .agg_trades("BNBUSDT", &p(&[("startTime", "0"), ("endTime", "3600000")]))
            .unwrap_err();
        assert_eq!(e.code, -1127);
        assert_eq!(c.next_trade_id("BNBUSDT"), 6);
        assert!(c
            .agg_trades("ETHUSDT", &p(&[]))
            .unwrap()
            .as_array()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn leverage_tiers_are_continuous_and_capped_by_the_fault() {
        let v = leverage_bracket("BTCUSDT", None);
        let b = v["brackets"].as_array().unwrap();
        assert_eq!(b[0]["initialLeverage"], 125);
        assert_eq!(b[1]["notionalFloor"], 50_000);
        // Maintenance margin at a tier's floor is the same from both sides: floor × mmr − cum.
        for w in b.windows(2) {
            let floor = w[1]["notionalFloor"].as_f64().unwrap();
            let below =
                floor * w[0]["maintMarginRatio"].as_f64().unwrap() - w[0]["cum"].as_f64().unwrap();
            let above =
                floor * w[1]["maintMarginRatio"].as_f64().unwrap() - w[1]["cum"].as_f64().unwrap();
            assert!((below - above).abs() < 1e-6, "{w:?}");
        }
        let capped = leverage_bracket("BTCUSDT", Some(20));
        assert!(capped["brackets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["initialLeverage"].as_u64() <= Some(20)));
    }
}
