//! Funding settlements and fee valuation: what the exchange charges besides the trade itself.
//!
//! **Funding (exactly once).** Binance's user stream announces a settlement with `ACCOUNT_UPDATE` reason
//! `FUNDING_FEE`, but for cross margin that event carries only the balance (no symbol, no id), so it cannot be
//! booked by itself. It is the *trigger*: the bot then reads `GET /fapi/v1/income?incomeType=FUNDING_FEE` from the
//! time of the newest settlement it has journaled, and forwards each record it has not seen, keyed by
//! (symbol, `tranId`), as one [`Inbound::Funding`]. The same read runs on start (the gap since the last journaled
//! one) and after every stream reconnect. The seen set is rebuilt from the journal, so a restart, a repeated
//! event or an overlapping time window never books a settlement twice.
//!
//! **Fees in another asset (BNB).** A fill's commission in an asset other than the symbol's quote asset is
//! valued at that asset's price in the quote asset (`BNB` + `USDT` = `BNBUSDT`) when the fill arrives: the mark
//! price from `GET /fapi/v1/premiumIndex?symbol=BNBUSDT`, cached for [`PRICE_MAX_AGE`]. The engine's books are not
//! used, because the fill is read here, on the control plane, before it reaches the engine, and BNBUSDT is usually
//! not one of the traded symbols. When no price can be had the fee is marked
//! [`FeeConversion::Unconvertible`]: kept per asset, left out of PnL and the loss limits, and alerted
//! (`fee_unconverted`) — never counted as if it were USDT. A fill recovered from `userTrades` after a gap is
//! valued at the pair's last trade at or before the fill's time (`GET /fapi/v1/aggTrades`), not at the price
//! of the recovery ([`FeePricer::convert_at`]).

use super::rest::{Base, RestClient, RestError};
use aegis_engine::venue::binance::Inbound;
use aegis_shared::event::FeeConversion;
use aegis_shared::{Notional, Price, Symbol};
use crossbeam_channel::Sender;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a fee asset's price is reused before it is read again.
pub const PRICE_MAX_AGE: Duration = Duration::from_secs(5);
/// Quote assets a USD-M symbol can end in, longest first.
const QUOTES: [&str; 4] = ["FDUSD", "USDT", "USDC", "BUSD"];
/// Most rows one `aggTrades` request returns (Binance's maximum).
const AGG_LIMIT: usize = 1000;
/// Most `aggTrades` pages read for one fill-time price.
const AGG_MAX_PAGES: usize = 10;
/// Most income records one request returns (Binance's maximum).
const INCOME_LIMIT: u32 = 1000;

/// The quote asset of a symbol (`BTCUSDT` → `USDT`); `None` for a symbol in no known quote asset.
pub fn quote_asset(symbol: &str) -> Option<&'static str> {
    QUOTES.into_iter().find(|q| symbol.ends_with(q))
}

/// The pair that values `asset` in `symbol`'s quote asset (`BNB` on `BTCUSDT` → `BNBUSDT`), with that quote;
/// `Err` with the answer when no price is needed (the fee is in the quote) or none can be had.
fn fee_pair(symbol: Symbol, asset: Symbol) -> Result<(String, &'static str), FeeConversion> {
    let quote = quote_asset(symbol.as_str()).ok_or(FeeConversion::Unconvertible)?;
    if asset.as_str() == quote {
        return Err(FeeConversion::Quote);
    }
    Ok((format!("{}{quote}", asset.as_str()), quote))
}

/// Values fees (and funding in a non-quote asset) in the quote asset. See the module docs.
#[derive(Debug, Default)]
pub struct FeePricer {
    cache: HashMap<String, (Price, Instant)>,
    /// Fill-time prices found, by (pair, time): recovered trades of one order often share a time.
    at_cache: HashMap<(String, u64), Price>,
}

impl FeePricer {
    /// How `amount` of `asset`, charged on `symbol`, is valued in the symbol's quote asset.
    pub fn convert(
        &mut self,
        client: &RestClient,
        rt: &tokio::runtime::Handle,
        symbol: Symbol,
        asset: Symbol,
        amount: Notional,
    ) -> FeeConversion {
        let (pair, quote) = match fee_pair(symbol, asset) {
            Ok(x) => x,
            Err(c) => return c,
        };
        match self.price(client, rt, &pair) {
            Ok(p) => FeeConversion::convert(amount, p),
            Err(e) => {
                tracing::error!(
                    symbol = %symbol,
                    "a fee of {amount} {asset} cannot be valued in {quote} ({pair} premiumIndex: {e}): kept per \
                     asset, LEFT OUT of PnL and the loss limits (alert fee_unconverted)"
                );
                FeeConversion::Unconvertible
            }
        }
    }

    /// How `amount` of `asset`, charged on `symbol` by a trade at `at_ms`, is valued in the quote asset: at
    /// the asset pair's last trade at or before that time (`GET /fapi/v1/aggTrades`), for a fill recovered after
    /// a gap, whose fill-time price the stream no longer gives. Without such a trade in the hour before, or when
    /// the request fails, it is valued like a stream fill, at the current mark price, and the log says so.
    pub fn convert_at(
        &mut self,
        client: &RestClient,
        rt: &tokio::runtime::Handle,
        symbol: Symbol,
        asset: Symbol,
        amount: Notional,
        at_ms: u64,
    ) -> FeeConversion {
        let pair = match fee_pair(symbol, asset) {
            Ok((pair, _)) => pair,
            Err(c) => return c,
        };
        let why = match self.price_at(client, rt, &pair, at_ms) {
            Ok(Some(p)) => return FeeConversion::convert(amount, p),
            Ok(None) => format!("no {pair} trade in the hour before"),
            Err(e) => format!("{pair} aggTrades: {e}"),
        };
        tracing::warn!(
            symbol = %symbol,
            "a fee of {amount} {asset} of a recovered fill at {at_ms} ms has no {pair} price of its time ({why}): \
             valued at the current mark price instead"
        );
        self.convert(client, rt, symbol, asset, amount)
    }

    /// The last trade price of `pair` at or before `at_ms` within an hour, searching a second, a minute, then
    /// the hour before (aggTrades answers oldest first, at most [`AGG_LIMIT`] rows: a full page is read on
    /// by id, up to [`AGG_MAX_PAGES`] pages).
    fn price_at(
        &mut self,
        client: &RestClient,
        rt: &tokio::runtime::Handle,
        pair: &str,
        at_ms: u64,
    ) -> Result<Option<Price>, String> {
        if let Some(p) = self.at_cache.get(&(pair.to_string(), at_ms)) {
            return Ok(Some(*p));
        }
        let get = |params: Vec<(&str, String)>| -> Result<Vec<(u64, u64, Price)>, String> {
            let v = rt
                .block_on(client.request(
                    reqwest::Method::GET,
                    Base::Fapi,
                    "/fapi/v1/aggTrades",
                    &params,
                    super::rest::Auth::None,
                ))
                .map_err(|e| e.to_string())?;
            let rows = v.as_array().ok_or("the answer is not a list")?;
            rows.iter()
                .map(|r| {
                    let id = r.get("a").and_then(Value::as_u64);
                    let t = r.get("T").and_then(Value::as_u64);
                    let p = r
                        .get("p")
                        .and_then(Value::as_str)
                        .and_then(|s| Price::parse(s).ok())
                        .filter(|p| p.units() > 0);
                    match (id, t, p) {
                        (Some(id), Some(t), Some(p)) => Ok((id, t, p)),
                        _ => Err(format!("a row without a positive price, id and time: {r}")),
                    }
                })
                .collect()
        };
        for span in [1_000u64, 60_000, 3_599_999] {
            let mut rows = get(vec![
                ("symbol", pair.to_string()),
                ("startTime", at_ms.saturating_sub(span).to_string()),
                ("endTime", at_ms.to_string()),
                ("limit", AGG_LIMIT.to_string()),
            ])?;
            let mut best = rows.iter().rev().find(|r| r.1 <= at_ms).copied();
            let mut pages = 1;
            while rows.len() == AGG_LIMIT && pages < AGG_MAX_PAGES {
                let Some(&(last_id, last_t, _)) = rows.last() else {
                    break;
                };
                if last_t > at_ms {
                    break;
                }
                rows = get(vec![
                    ("symbol", pair.to_string()),
                    ("fromId", (last_id + 1).to_string()),
                    ("limit", AGG_LIMIT.to_string()),
                ])?;
                if let Some(r) = rows.iter().rev().find(|r| r.1 <= at_ms) {
                    best = Some(*r);
                }
                pages += 1;
            }
            if let Some((_, _, p)) = best {
                self.at_cache.insert((pair.to_string(), at_ms), p);
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    fn price(
        &mut self,
        client: &RestClient,
        rt: &tokio::runtime::Handle,
        pair: &str,
    ) -> Result<Price, String> {
        if let Some((p, at)) = self.cache.get(pair) {
            if at.elapsed() < PRICE_MAX_AGE {
                return Ok(*p);
            }
        }
        let v = rt
            .block_on(client.request(
                reqwest::Method::GET,
                Base::Fapi,
                "/fapi/v1/premiumIndex",
                &[("symbol", pair.to_string())],
                super::rest::Auth::None,
            ))
            .map_err(|e| e.to_string())?;
        let p = v
            .get("markPrice")
            .and_then(Value::as_str)
            .and_then(|s| Price::parse(s).ok())
            .filter(|p| p.units() > 0)
            .ok_or_else(|| "no positive markPrice in the answer".to_string())?;
        self.cache.insert(pair.to_string(), (p, Instant::now()));
        Ok(p)
    }

    /// Sets a price directly (tests; a price learned elsewhere).
    pub fn set_price(&mut self, pair: &str, p: Price) {
        self.cache.insert(pair.to_string(), (p, Instant::now()));
    }
}

/// One `FUNDING_FEE` income record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FundingRecord {
    /// Symbol.
    pub symbol: Symbol,
    /// `tranId`.
    pub tran_id: u64,
    /// Asset.
    pub asset: Symbol,
    /// Signed amount (received > 0).
    pub amount: Notional,
    /// Settlement time (ms).
    pub time: u64,
}

/// Parses one income record; `None` for anything that is not a readable `FUNDING_FEE` record.
pub fn parse_income(v: &Value) -> Option<FundingRecord> {
    if v.get("incomeType").and_then(Value::as_str) != Some("FUNDING_FEE") {
        return None;
    }
    let tran_id = match v.get("tranId")? {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    Some(FundingRecord {
        symbol: Symbol::new(v.get("symbol")?.as_str()?).ok()?,
        tran_id,
        asset: Symbol::new(v.get("asset")?.as_str()?).ok()?,
        amount: Notional::parse(v.get("income")?.as_str()?).ok()?,
        time: v.get("time")?.as_u64()?,
    })
}

/// Which settlements have been booked, shared by the start-up read and the user data stream.
#[derive(Debug)]
pub struct FundingBook {
    seen: HashSet<(Symbol, u64)>,
    since_ms: u64,
    pricer: FeePricer,
    /// Settlements forwarded to the engine since start.
    pub forwarded: u64,
    /// Records skipped because they were already booked.
    pub duplicates: u64,
}

/// The shared handle.
pub type SharedFunding = Arc<Mutex<FundingBook>>;

impl FundingBook {
    /// Starts from the journal: what was booked, and the newest settlement time (or `start_ms` when none was,
    /// so history from before the bot tracked funding is not booked as new).
    pub fn new(seen: HashSet<(Symbol, u64)>, last_ms: Option<u64>, start_ms: u64) -> Self {
        Self {
            seen,
            since_ms: last_ms.unwrap_or(start_ms),
            pricer: FeePricer::default(),
            forwarded: 0,
            duplicates: 0,
        }
    }

    /// The fee pricer (fills use the same cache).
    pub fn pricer(&mut self) -> &mut FeePricer {
        &mut self.pricer
    }

    /// Forwards the records not booked yet, oldest first; returns how many were forwarded.
    pub fn take(
        &mut self,
        records: &[FundingRecord],
        client: &RestClient,
        rt: &tokio::runtime::Handle,
        inbound: &Sender<Inbound>,
    ) -> usize {
        let mut recs: Vec<_> = records.to_vec();
        recs.sort_by_key(|r| (r.time, r.tran_id));
        let mut n = 0;
        for r in recs {
            if !self.seen.insert((r.symbol, r.tran_id)) {
                self.duplicates += 1;
                continue;
            }
            let conv = self.pricer.convert(client, rt, r.symbol, r.asset, r.amount);
            // Blocking send: a settlement must never be dropped (the engine drains in microseconds).
            let _ = inbound.send(Inbound::Funding {
                ts_ms: r.time,
                symbol: r.symbol,
                tran_id: r.tran_id,
                asset: r.asset,
                amount: r.amount,
                conv,
            });
            self.since_ms = self.since_ms.max(r.time);
            self.forwarded += 1;
            n += 1;
        }
        n
    }

    /// Reads `/fapi/v1/income` from the newest booked settlement on and forwards what is new (pages through a
    /// long gap). Errors leave the window where it was: the next trigger reads it again.
    pub fn sync(
        &mut self,
        client: &RestClient,
        rt: &tokio::runtime::Handle,
        inbound: &Sender<Inbound>,
    ) -> Result<usize, RestError> {
        let mut total = 0;
        loop {
            let params = [
                ("incomeType", "FUNDING_FEE".to_string()),
                // Inclusive: records at exactly `since_ms` come again and are skipped by the seen set.
                ("startTime", self.since_ms.to_string()),
                ("limit", INCOME_LIMIT.to_string()),
            ];
            let v = rt.block_on(client.get_signed(Base::Fapi, "/fapi/v1/income", &params))?;
            let list = v.as_array().cloned().unwrap_or_default();
            let recs: Vec<_> = list.iter().filter_map(parse_income).collect();
            if recs.len() < list.len() {
                tracing::warn!(
                    "{} unreadable FUNDING_FEE income record(s) skipped",
                    list.len() - recs.len()
                );
            }
            let before = self.since_ms;
            total += self.take(&recs, client, rt, inbound);
            if list.len() < INCOME_LIMIT as usize || self.since_ms == before {
                return Ok(total);
            }
        }
    }
}

/// Runs [`FundingBook::sync`] and logs the outcome.
pub fn sync_logged(
    book: &SharedFunding,
    client: &RestClient,
    rt: &tokio::runtime::Handle,
    inbound: &Sender<Inbound>,
    why: &str,
) {
    let mut b = book.lock().unwrap_or_else(|e| e.into_inner());
    match b.sync(client, rt, inbound) {
        Ok(0) => {}
        Ok(n) => tracing::info!("funding: {n} settlement(s) booked from /fapi/v1/income ({why})"),
        Err(e) => tracing::warn!(
            error = %e,
            "funding: /fapi/v1/income could not be read ({why}); retried on the next settlement or reconnect"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_assets_and_income_records() {
        assert_eq!(quote_asset("BTCUSDT"), Some("USDT"));
        assert_eq!(quote_asset("ETHUSDC"), Some("USDC"));
        assert_eq!(quote_asset("BTCFDUSD"), Some("FDUSD"));
        assert_eq!(quote_asset("ETHBTC"), None);
        let v: Value = serde_json::from_str(
            r#"{"symbol":"BTCUSDT","incomeType":"FUNDING_FEE","income":"-0.01234567","asset":"USDT","info":"","time":1570636800000,"tranId":9689322392,"tradeId":""}"#,
        )
        .unwrap();
        let r = parse_income(&v).unwrap();
        assert_eq!(r.tran_id, 9689322392);
        assert_eq!(r.amount, Notional::parse("-0.01234567").unwrap());
        let mut other = v.clone();
        other["incomeType"] = "COMMISSION".into();
        assert!(parse_income(&other).is_none());
        let mut bad = v;
        bad["income"] = "1e-2".into();
        assert!(parse_income(&bad).is_none(), "never guess an amount");
    }
}
