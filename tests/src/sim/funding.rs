//! Funding, the BNB fee mode, `premiumIndex`, `income` (FUNDING_FEE records) and forced closes (liquidation, ADL).
//!
//! - **Funding settlement**: every `intervalMs` (admin `POST /admin/funding {"intervalMs", "rate"}`; real Binance:
//!   8 h) each open position pays `positionAmt × markPrice × rate` (longs pay a positive rate, shorts receive),
//!   rounded half away from zero to 10⁻⁸. The wallet moves, a `FUNDING_FEE` income record with a fresh `tranId`
//!   is kept, and an `ACCOUNT_UPDATE` with reason `FUNDING_FEE` carrying only the balance (`B`, no `P`: cross
//!   margin, as Binance sends it) is published. `POST /admin/funding/settle` settles once, now.
//! - `GET /fapi/v1/premiumIndex`: mark price, the configured rate as `lastFundingRate`, next funding time; for
//!   `BNBUSDT` (not a traded symbol here) the BNB price of the fee mode.
//! - `GET /fapi/v1/income`: this module's ledger answers `incomeType=FUNDING_FEE` (and lists those records when no
//!   type is given); `startTime`/`endTime` inclusive, `limit` (default 100, max 1000), oldest first.
//! - **BNB fee mode** (`POST /admin/fees/bnb {"price": "600"}`, `{"price": null}` to end it): commissions are
//!   charged in BNB = the USDT commission / price, to 10⁻⁸; the fill's `N` is `BNB`.
//! - **Forced close** (`POST /admin/accounts/{name}/liquidate {"symbol", "price"?, "adl"?}`): closes the whole
//!   position at `price` (default: mark) with an order whose client id is `autoclose-<ms>` (`adl_autoclose` for
//!   ADL), sending the ORDER_TRADE_UPDATE and ACCOUNT_UPDATE a real one sends.
//!
//! [`Totals`] is the exchange's truth the tests compare the bot's books with.

use super::error::ApiError;
use super::orders::{Order, OrderType, Side, Status, Tif};
use super::symbols::fixed;
use super::{lock, Sim};
use aegis_shared::num::{Notional, Price, Qty, Rate, SCALE};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Funding settings and counters.
#[derive(Debug)]
pub struct FundingState {
    /// Funding rate per settlement (default 0.0001 = 0.01 %).
    pub rate: Rate,
    /// Settlement interval in ms (0: no automatic settlement).
    pub interval_ms: u64,
    /// Bumped on every interval change, so an old settlement task ends.
    pub generation: u64,
    /// Next income `tranId`.
    pub next_tran: u64,
    /// Next order id for forced closes.
    pub next_order: u64,
}

impl Default for FundingState {
    fn default() -> Self {
        Self {
            rate: Rate::from_units(10_000),
            interval_ms: 0,
            generation: 0,
            next_tran: 9_689_322_000,
            next_order: 9_100_000_000,
        }
    }
}

/// One income record.
#[derive(Debug, Clone, PartialEq)]
pub struct Income {
    /// Symbol.
    pub symbol: String,
    /// `tranId`.
    pub tran_id: u64,
    /// Amount (received > 0).
    pub income: Notional,
    /// Asset.
    pub asset: &'static str,
    /// Time (ms).
    pub time: u64,
}

/// An account's money truth.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Commissions per asset as charged.
    pub fees_by_asset: BTreeMap<String, Notional>,
    /// Commissions in USDT (a BNB commission valued at the BNB price it was charged at).
    pub fees_quote: Notional,
    /// Realized PnL before fees.
    pub realized: Notional,
    /// Funding received (> 0) or paid.
    pub funding: Notional,
    /// FUNDING_FEE income records, oldest first.
    pub income: Vec<Income>,
    /// Forced-close fills (liquidation and ADL).
    pub liquidations: u64,
}

impl Totals {
    /// Books one commission.
    pub fn add_fill(&mut self, asset: &str, fee: Notional, quote: Notional) {
        *self.fees_by_asset.entry(asset.to_string()).or_default() += fee;
        self.fees_quote += quote;
    }

    /// JSON for the admin API.
    pub fn to_json(&self) -> Value {
        json!({
            "feesByAsset": self.fees_by_asset.iter().map(|(a, v)| (a.clone(), json!(v.to_string()))).collect::<serde_json::Map<_, _>>(),
            "feesQuote": self.fees_quote.to_string(),
            "realized": self.realized.to_string(),
            "funding": self.funding.to_string(),
            "fundingRecords": self.income.len(),
            "liquidations": self.liquidations,
        })
    }
}

/// `a / p` at 10⁻⁸, rounded half away from zero (a USDT commission in BNB).
pub fn div_round(a: Notional, p: Price) -> Notional {
    let num = a.units() as i128 * SCALE as i128;
    let d = p.units().max(1) as i128;
    let q = (num.abs() + d / 2) / d * num.signum();
    Notional::from_units(q as i64)
}

/// `a × p` at 10⁻⁸, rounded half away from zero (a BNB amount in USDT).
pub fn value(a: Notional, p: Price) -> Notional {
    let v = a.units() as i128 * p.units() as i128;
    let s = SCALE as i128;
    Notional::from_units(((v.abs() + s / 2) / s * v.signum()) as i64)
}

/// Settles funding on every open position of every account, now. Returns how many payments were made.
pub fn settle(sim: &Sim, now: u64) -> usize {
    let rate = lock(&sim.funding).rate;
    let mut ex = lock(&sim.ex);
    let marks: BTreeMap<String, Price> = ex
        .books
        .iter()
        .map(|(s, b)| (s.clone(), b.mark()))
        .collect();
    let mut n = 0;
    let names: Vec<String> = ex.accounts.keys().cloned().collect();
    for name in names {
        let Some(acc) = ex.accounts.get_mut(&name) else {
            continue;
        };
        let open: Vec<(String, Qty)> = acc
            .positions
            .iter()
            .filter(|(_, p)| !p.amt.is_zero())
            .map(|(s, p)| (s.clone(), p.amt))
            .collect();
        for (sym, amt) in open {
            let Some(mark) = marks.get(&sym) else {
                continue;
            };
            // Longs pay a positive rate: income = −(signed notional × rate).
            let income = Notional::ZERO - mark.notional(amt).mul_rate(rate);
            let tran_id = {
                let mut f = lock(&sim.funding);
                f.next_tran += 1;
                f.next_tran
            };
            acc.wallet += income;
            acc.update_time = now;
            acc.totals.funding += income;
            acc.totals.income.push(Income {
                symbol: sym.clone(),
                tran_id,
                income,
                asset: "USDT",
                time: now,
            });
            // What `GET /fapi/v1/income` serves: the account's one income ledger (`super::trades`), beside the
            // fills' COMMISSION and REALIZED_PNL records.
            acc.record_income(super::trades::IncomeRecord {
                symbol: sym.clone(),
                income_type: "FUNDING_FEE",
                income,
                asset: "USDT".into(),
                tran_id: 0,
                trade_id: None,
                time: now,
            });
            let w = fixed(acc.wallet.units(), 8);
            acc.emit(json!({
                "e": "ACCOUNT_UPDATE", "E": now, "T": now,
                "a": {"m": "FUNDING_FEE", "B": [{"a": "USDT", "wb": w, "cw": w, "bc": fixed(income.units(), 8)}]}
            }));
            n += 1;
        }
    }
    n
}

/// `GET /fapi/v1/premiumIndex`.
pub fn premium_index(sim: &Sim, symbol: Option<&str>, now: u64) -> Result<Value, ApiError> {
    let (rate, interval) = {
        let f = lock(&sim.funding);
        (f.rate, f.interval_ms)
    };
    let interval = if interval == 0 {
        8 * 3_600_000
    } else {
        interval
    };
    let next = (now / interval + 1) * interval;
    let ex = lock(&sim.ex);
    let one = |sym: &str, mark: Price| {
        json!({"symbol": sym, "markPrice": mark.to_string(), "indexPrice": mark.to_string(),
               "estimatedSettlePrice": mark.to_string(), "lastFundingRate": fixed(rate.units(), 8),
               "interestRate": "0.00010000", "nextFundingTime": next, "time": now})
    };
    match symbol {
        Some("BNBUSDT") if !ex.books.contains_key("BNBUSDT") => match ex.bnb_price {
            Some(p) => Ok(one("BNBUSDT", p)),
            None => Err(ApiError::invalid_symbol()),
        },
        Some(s) => ex
            .books
            .get(s)
            .map(|b| one(s, b.mark()))
            .ok_or_else(ApiError::invalid_symbol),
        None => Ok(Value::Array(
            ex.specs
                .iter()
                .map(|s| one(&s.symbol, ex.books[&s.symbol].mark()))
                .collect(),
        )),
    }
}

/// Closes an account's whole position in `symbol` at `price` (default: mark) as the exchange's liquidation
/// (or ADL) engine would. Returns the order.
pub fn liquidate(
    sim: &Sim,
    account: &str,
    symbol: &str,
    price: Option<Price>,
    adl: bool,
    now: u64,
) -> Result<Value, String> {
    let oid = {
        let mut f = lock(&sim.funding);
        f.next_order += 1;
        f.next_order
    };
    let mut ex = lock(&sim.ex);
    let book = ex
        .books
        .get(symbol)
        .ok_or_else(|| format!("unknown symbol {symbol}"))?;
    let mark = book.mark();
    let (pd, qd) = (book.spec.price_precision, book.spec.qty_precision);
    let amt = ex
        .account(account)
        .positions
        .get(symbol)
        .map(|p| p.amt)
        .unwrap_or_default();
    if amt.is_zero() {
        return Err(format!("{account} holds no position in {symbol}"));
    }
    let price = price.unwrap_or(mark);
    let mut order = Order {
        order_id: oid,
        client_id: if adl {
            "adl_autoclose".to_string()
        } else {
            format!("autoclose-{now}")
        },
        symbol: symbol.to_string(),
        side: if amt.units() > 0 {
            Side::Sell
        } else {
            Side::Buy
        },
        otype: OrderType::Market,
        tif: Tif::Gtc,
        price: Price::ZERO,
        orig_qty: amt.abs(),
        executed: Qty::ZERO,
        cum_quote: Notional::ZERO,
        status: Status::New,
        reduce_only: true,
        time: now,
        update_time: now,
        price_decimals: pd,
        qty_decimals: qd,
    };
    ex.fill_at(account, &mut order, price, amt.abs(), now);
    let acc = ex.account(account);
    acc.totals.liquidations += 1;
    acc.orders.insert(order.order_id, order.clone());
    Ok(order.to_json(true))
}

fn bad(msg: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": msg.to_string()})),
    )
        .into_response()
}

/// Admin routes of this module (merged into `/admin`).
pub fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/funding", post(set_funding))
        .route("/funding/settle", post(settle_now))
        .route("/fees/bnb", post(set_bnb))
        .route("/accounts/{name}/liquidate", post(liquidate_route))
        .route(
            "/accounts/{name}/totals",
            axum::routing::get(
                |State(sim): State<Arc<Sim>>, Path(name): Path<String>| async move {
                    Json(lock(&sim.ex).account(&name).totals.to_json())
                },
            ),
        )
}

async fn set_funding(State(sim): State<Arc<Sim>>, Json(v): Json<Value>) -> Response {
    let interval = v.get("intervalMs").and_then(Value::as_u64);
    let rate = match v.get("rate").and_then(Value::as_str).map(Rate::parse) {
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => return bad(format!("rate: {e} (a decimal string such as \"0.0001\")")),
        None => None,
    };
    let generation = {
        let mut f = lock(&sim.funding);
        if let Some(r) = rate {
            f.rate = r;
        }
        if let Some(i) = interval {
            f.interval_ms = i;
            f.generation += 1;
        }
        f.generation
    };
    if let Some(i) = interval.filter(|i| *i > 0) {
        let s = sim.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(i)).await;
                if lock(&s.funding).generation != generation {
                    return;
                }
                settle(&s, s.now());
            }
        });
    }
    let f = lock(&sim.funding);
    Json(json!({"intervalMs": f.interval_ms, "rate": fixed(f.rate.units(), 8)})).into_response()
}

async fn settle_now(State(sim): State<Arc<Sim>>) -> Response {
    let n = settle(&sim, sim.now());
    Json(json!({"settled": n})).into_response()
}

async fn set_bnb(State(sim): State<Arc<Sim>>, Json(v): Json<Value>) -> Response {
    let price = match v.get("price") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match Price::parse(s) {
            Ok(p) if p.units() > 0 => Some(p),
            _ => return bad("price must be a positive decimal string, or null to charge USDT"),
        },
        Some(_) => return bad("price must be a decimal string such as \"600.5\", or null"),
    };
    lock(&sim.ex).bnb_price = price;
    if let Some(p) = price {
        // Each price is a BNBUSDT trade at this time, for clients valuing a fee at its fill's time.
        let mut c = lock(&sim.candles);
        let id = c.next_trade_id("BNBUSDT");
        c.record_trade("BNBUSDT", id, p, Qty::ONE, false, sim.now());
    }
    Json(json!({"bnbPrice": price.map(|p| p.to_string())})).into_response()
}

async fn liquidate_route(
    State(sim): State<Arc<Sim>>,
    Path(name): Path<String>,
    Json(v): Json<Value>,
) -> Response {
    let Some(symbol) = v.get("symbol").and_then(Value::as_str) else {
        return bad("symbol is required");
    };
    let price = match v.get("price").and_then(Value::as_str).map(Price::parse) {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => return bad(format!("price: {e}")),
        None => None,
    };
    let adl = v.get("adl").and_then(Value::as_bool).unwrap_or(false);
    match liquidate(&sim, &name, symbol, price, adl, sim.now()) {
        Ok(o) => Json(o).into_response(),
        Err(e) => bad(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bnb_rounding_is_half_away_from_zero() {
        let c = Notional::parse("0.24").unwrap();
        let p = Price::parse("612.35").unwrap();
        let bnb = div_round(c, p);
        assert_eq!(bnb, Notional::parse("0.00039193").unwrap());
        assert_eq!(value(bnb, p), Notional::parse("0.23999834").unwrap());
    }
}
