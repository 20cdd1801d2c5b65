//! The spot admin API under `/admin/spot/...` (never part of Binance): balances, the spot price, the BNB fee
//! mode, commission rates, fills on demand, terminating user data streams, and the simulator's own totals for
//! tests to assert on.
//!
//! - `GET  /admin/spot/accounts/{name}`: balances, open orders, trades, commissions charged per asset.
//! - `POST /admin/spot/accounts/{name}/balances` `{"BTC": "1.5", "USDT": "1000"}`: sets free balances
//!   (`balanceUpdate` + `outboundAccountPosition` on the user data stream).
//! - `POST /admin/spot/accounts/{name}/commission` `{"maker": "0.001", "taker": "0.001"}`.
//! - `POST /admin/spot/accounts/{name}/orders/fill` `{"clientOrderId": "…", "qty": "0.5"}` (qty absent: all).
//! - `POST /admin/spot/market/price` `{"symbol": "BTCUSDT", "price": "59000", "bid": …, "ask": …, "bidQty": …,
//!   "askQty": …}` (sizes at the touch on the streams; both or neither, default 10 each).
//! - `POST /admin/spot/fees/bnb` `{"enabled": true}`.
//! - `POST /admin/spot/market/fill_parts` `{"parts": 3}`: marketable orders fill in that many trades (partial
//!   fills, each with its own commission).
//! - `POST /admin/spot/userDataStream/terminate` `{"account": "alice"}`: `eventStreamTerminated` to every
//!   subscription of the account, which ends.
//! - `POST /admin/spot/limits` spot's REQUEST_WEIGHT / ORDERS limits and ban rule (the futures shape).
//! - `POST /admin/spot/market/percent_price` `{"symbol": "BTCUSDT", "down": "0.99", "up": "1.01"}`: the pair's
//!   PERCENT_PRICE_BY_SIDE multipliers (both sides), as exchangeInfo then lists and the matcher checks them.

use super::super::ratelimit::Limits;
use super::super::{lock, Sim};
use aegis_shared::num::{Price, Qty, Rate};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

fn bad(msg: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": msg.to_string()})),
    )
        .into_response()
}

/// The routes (nested under `/admin/spot`).
pub fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/accounts/{name}", get(account))
        .route("/accounts/{name}/balances", post(balances))
        .route("/accounts/{name}/commission", post(commission))
        .route("/accounts/{name}/orders/fill", post(fill))
        .route("/market/price", post(price))
        .route("/fees/bnb", post(bnb))
        .route("/market/fill_parts", post(fill_parts))
        .route("/userDataStream/terminate", post(terminate))
        .route("/limits", post(set_limits))
        .route("/market/percent_price", post(percent_price))
}

#[derive(Deserialize)]
struct PercentReq {
    symbol: String,
    down: String,
    up: String,
}

async fn percent_price(State(sim): State<Arc<Sim>>, Json(r): Json<PercentReq>) -> Response {
    let (Ok(down), Ok(up)) = (Rate::parse(&r.down), Rate::parse(&r.up)) else {
        return bad("down and up must be decimals");
    };
    if down.units() <= 0 || down > up {
        return bad("need 0 < down <= up");
    }
    let mut ex = lock(&sim.spot.ex);
    let Some(spec) = ex.specs.iter_mut().find(|s| s.symbol == r.symbol) else {
        return bad(format!("unknown spot symbol {}", r.symbol));
    };
    spec.multiplier_down = down;
    spec.multiplier_up = up;
    Json(json!({"ok": true})).into_response()
}

/// Spot's own limits (`{"weightPerMinute": 6000, "ordersPer10s": 100, "banAfter429s": 3, "banSecs": 120}`); the
/// counters are reset.
async fn set_limits(State(sim): State<Arc<Sim>>, Json(l): Json<Limits>) -> Response {
    let mut g = lock(&sim.spot.limits);
    g.limits = l;
    g.reset();
    Json(json!({"ok": true})).into_response()
}

async fn account(State(sim): State<Arc<Sim>>, Path(name): Path<String>) -> Response {
    let now = sim.now();
    let mut ex = lock(&sim.spot.ex);
    let acc = ex.account(&name);
    let fees: BTreeMap<&String, String> = acc
        .fees
        .iter()
        .map(|(a, q)| (a, super::symbols::s8(q.units())))
        .collect();
    Json(json!({
        "balances": acc.to_json(true, false, now)["balances"],
        "openOrders": acc.orders.iter().filter(|o| o.status.is_open()).map(|o| o.query_json())
            .collect::<Vec<_>>(),
        "trades": acc.trades.iter().map(|t| t.to_json()).collect::<Vec<_>>(),
        "fees": fees,
    }))
    .into_response()
}

async fn balances(
    State(sim): State<Arc<Sim>>,
    Path(name): Path<String>,
    Json(r): Json<BTreeMap<String, String>>,
) -> Response {
    let now = sim.now();
    let mut parsed = Vec::new();
    for (asset, v) in r {
        match Qty::parse(&v) {
            Ok(q) if q.units() >= 0 => parsed.push((asset, q)),
            _ => return bad(format!("{asset}: a non-negative decimal string")),
        }
    }
    let mut ex = lock(&sim.spot.ex);
    for (asset, q) in parsed {
        ex.set_balance(&name, &asset, q, now);
    }
    Json(json!({"ok": true})).into_response()
}

#[derive(Deserialize)]
struct CommissionReq {
    maker: String,
    taker: String,
}

async fn commission(
    State(sim): State<Arc<Sim>>,
    Path(name): Path<String>,
    Json(r): Json<CommissionReq>,
) -> Response {
    let (Ok(m), Ok(t)) = (Rate::parse(&r.maker), Rate::parse(&r.taker)) else {
        return bad("maker and taker must be decimal strings");
    };
    let mut ex = lock(&sim.spot.ex);
    let acc = ex.account(&name);
    acc.maker = m;
    acc.taker = t;
    Json(json!({"ok": true})).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FillReq {
    client_order_id: String,
    qty: Option<String>,
}

async fn fill(
    State(sim): State<Arc<Sim>>,
    Path(name): Path<String>,
    Json(r): Json<FillReq>,
) -> Response {
    let qty = match r.qty.as_deref().map(Qty::parse) {
        None => None,
        Some(Ok(q)) => Some(q),
        Some(Err(_)) => return bad("qty must be a decimal string"),
    };
    let now = sim.now();
    match lock(&sim.spot.ex).admin_fill(&name, &r.client_order_id, qty, now) {
        Ok(v) => Json(v).into_response(),
        Err(e) => bad(e.msg),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PriceReq {
    symbol: String,
    price: String,
    bid: Option<String>,
    ask: Option<String>,
    bid_qty: Option<String>,
    ask_qty: Option<String>,
}

async fn price(State(sim): State<Arc<Sim>>, Json(r): Json<PriceReq>) -> Response {
    let parse = |s: &Option<String>| s.as_deref().map(Price::parse).transpose();
    let (Ok(last), Ok(bid), Ok(ask)) = (Price::parse(&r.price), parse(&r.bid), parse(&r.ask))
    else {
        return bad("price, bid and ask must be decimal strings");
    };
    let sizes = match (r.bid_qty.as_deref(), r.ask_qty.as_deref()) {
        (None, None) => None,
        (Some(b), Some(a)) => match (Qty::parse(b), Qty::parse(a)) {
            (Ok(b), Ok(a)) if b.units() > 0 && a.units() > 0 => Some((b, a)),
            _ => return bad("bidQty and askQty must be positive decimal strings"),
        },
        _ => return bad("give both bidQty and askQty, or neither"),
    };
    let now = sim.now();
    match lock(&sim.spot.ex).set_price(&r.symbol, last, bid, ask, sizes, now) {
        Ok(()) => Json(json!({"ok": true})).into_response(),
        Err(e) => bad(e.msg),
    }
}

#[derive(Deserialize)]
struct BnbReq {
    enabled: bool,
}

async fn bnb(State(sim): State<Arc<Sim>>, Json(r): Json<BnbReq>) -> Response {
    lock(&sim.spot.ex).bnb_fees = r.enabled;
    Json(json!({"ok": true})).into_response()
}

#[derive(Deserialize)]
struct PartsReq {
    parts: u32,
}

async fn fill_parts(State(sim): State<Arc<Sim>>, Json(r): Json<PartsReq>) -> Response {
    if r.parts == 0 {
        return bad("parts must be at least 1");
    }
    lock(&sim.spot.ex).fill_parts = r.parts;
    Json(json!({"ok": true})).into_response()
}

#[derive(Deserialize)]
struct TerminateReq {
    account: String,
}

async fn terminate(State(sim): State<Arc<Sim>>, Json(r): Json<TerminateReq>) -> Response {
    let n = sim.spot.terminate_tx.send(r.account).unwrap_or(0);
    Json(json!({"connections": n})).into_response()
}
