//! The test kit's admin API under `/admin/...` (never part of Binance): reads of the simulator's truth (open
//! orders, positions) and fault injection. See the `binance-sim --help` text for the list.

use super::conns::{Ctrl, Target};
use super::keys::KeyEntry;
use super::market::Quote;
use super::ratelimit::Limits;
use super::streams::publish_book;
use super::{lock, Sim};
use aegis_shared::num::{Notional, Price, Qty};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn bad(msg: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": msg.to_string()})),
    )
        .into_response()
}
fn ok(v: Value) -> Response {
    Json(v).into_response()
}

/// The admin routes (nested under `/admin`).
pub fn router() -> Router<Arc<Sim>> {
    Router::new()
        .merge(super::funding::router())
        .nest("/spot", super::spot::admin::router())
        .route("/health", get(|| async { Json(json!({"ok": true})) }))
        .route("/state", get(state))
        .route("/accounts/{name}", get(account))
        .route("/accounts/{name}/openOrders", get(open_orders))
        .route("/accounts/{name}/positions", get(positions))
        .route("/accounts/{name}/algoOrders", get(algo_orders))
        .route("/accounts/{name}/wallet", post(set_wallet))
        .route("/market/quote", post(set_quote))
        .route("/market/release", post(release))
        .route("/market/{symbol}", get(market))
        .route("/clock", post(clock))
        .route("/faults/delay", post(delay))
        .route("/faults/fail", post(fail))
        .route("/faults/order503", post(order503))
        .route("/faults/depthGap", post(depth_gap))
        .route("/faults/maxLeverage", post(max_leverage))
        .route("/faults/holdOrders", post(hold_orders))
        .route("/accounts/{name}/orders/fill", post(fill_order))
        .route("/accounts/{name}/orders/expire", post(expire_order))
        .route("/faults/clear", post(clear))
        .route("/keys", post(add_key))
        .route("/keys/{api_key}/revoke", post(revoke))
        .route(
            "/keys/usage",
            get(|State(sim): State<Arc<Sim>>| async move {
                Json(json!(lock(&sim.key_usage).clone()))
            }),
        )
        .route("/keys/{api_key}/permissions", post(permissions))
        .route(
            "/requests",
            get(|State(sim): State<Arc<Sim>>| async move {
                Json(json!(lock(&sim.rest_paths).clone()))
            }),
        )
        .route(
            "/ws/connections",
            get(|State(sim): State<Arc<Sim>>| async move { Json(sim.conns.list()) }),
        )
        .route(
            "/ws/history",
            get(|State(sim): State<Arc<Sim>>| async move { Json(json!(sim.conns.history())) }),
        )
        .route("/ws/drop", post(ws_drop))
        .route("/ws/stall", post(ws_stall))
        .route("/ws/unstall", post(ws_unstall))
        .route("/ws/malformed", post(ws_malformed))
        .route("/ws/disconnect", post(ws_disconnect))
        .route("/ws/lifetime", post(ws_lifetime))
        .route("/listenKeys/expire", post(expire_listen_keys))
        .route("/listenKeys/forget", post(forget_listen_keys))
        .route("/limits", post(set_limits))
        .route("/limits/reset", post(reset_limits))
}

async fn state(State(sim): State<Arc<Sim>>) -> Response {
    let faults = lock(&sim.faults).clone();
    let limits = lock(&sim.limits).limits;
    let refused = lock(&sim.limits).refused().clone();
    let (r429, r418) = lock(&sim.limits).refusals_by_status();
    ok(
        json!({"serverTime": sim.now(), "skewMs": sim.clock.skew(), "faults": faults, "limits": limits,
              "wsApiRefusedByKey": refused,
              "refusedByStatus": {"429": r429, "418": r418},
              "connections": sim.conns.list(),
              "wsLifetimeMs": sim.settings.ws_lifetime_ms.load(Ordering::Relaxed)}),
    )
}

fn account_view(sim: &Sim, name: &str) -> Option<Value> {
    let ex = lock(&sim.ex);
    let acc = ex.accounts.get(name)?;
    let m = acc.summary(&ex.books);
    let positions: Vec<Value> = acc
        .positions
        .iter()
        .filter(|(_, p)| !p.amt.is_zero())
        .map(|(s, p)| {
            json!({"symbol": s, "positionAmt": p.amt.to_string(), "entryPrice": p.entry.to_string(),
                   "realizedPnl": p.realized.to_string(),
                   "unrealizedProfit": ex.books.get(s).map(|b| p.unrealized(b.mark()).to_string())})
        })
        .collect();
    let orders: Vec<Value> = acc.open_orders().map(|o| o.to_json(true)).collect();
    Some(
        json!({"name": name, "walletBalance": m.wallet.to_string(), "unrealizedProfit": m.unrealized.to_string(),
                "availableBalance": m.available().to_string(), "positions": positions, "openOrders": orders}),
    )
}

async fn account(State(sim): State<Arc<Sim>>, Path(name): Path<String>) -> Response {
    match account_view(&sim, &name) {
        Some(v) => ok(v),
        None => ok(
            json!({"name": name, "walletBalance": sim.default_wallet().to_string(),
                          "positions": [], "openOrders": []}),
        ),
    }
}
async fn open_orders(State(sim): State<Arc<Sim>>, Path(name): Path<String>) -> Response {
    ok(account_view(&sim, &name)
        .map(|v| v["openOrders"].clone())
        .unwrap_or(json!([])))
}
async fn positions(State(sim): State<Arc<Sim>>, Path(name): Path<String>) -> Response {
    ok(account_view(&sim, &name)
        .map(|v| v["positions"].clone())
        .unwrap_or(json!([])))
}

/// Every algo order of the account, any status (the simulator's own book of conditional orders).
async fn algo_orders(State(sim): State<Arc<Sim>>, Path(name): Path<String>) -> Response {
    let ex = lock(&sim.ex);
    let v: Vec<Value> = ex
        .accounts
        .get(&name)
        .map(|a| a.algo_orders.values().map(|o| o.to_json()).collect())
        .unwrap_or_default();
    ok(Value::Array(v))
}

#[derive(Deserialize)]
struct WalletReq {
    usdt: String,
}
async fn set_wallet(
    State(sim): State<Arc<Sim>>,
    Path(name): Path<String>,
    Json(r): Json<WalletReq>,
) -> Response {
    let Ok(v) = Notional::parse(&r.usdt) else {
        return bad("usdt must be a decimal string");
    };
    lock(&sim.ex).account(&name).wallet = v;
    ok(json!({"ok": true}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QuoteReq {
    symbol: String,
    bid: String,
    ask: String,
    bid_qty: Option<String>,
    ask_qty: Option<String>,
}
async fn set_quote(State(sim): State<Arc<Sim>>, Json(r): Json<QuoteReq>) -> Response {
    let parse = |s: &str| Price::parse(s).map_err(|_| format!("{s:?} is not a decimal price"));
    let (bid, ask) = match (parse(&r.bid), parse(&r.ask)) {
        (Ok(b), Ok(a)) if b < a => (b, a),
        (Ok(_), Ok(_)) => return bad("bid must be below ask"),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let now = sim.now();
    let mut ex = lock(&sim.ex);
    let Some(book) = ex.books.get(&r.symbol) else {
        return bad(format!("unknown symbol {}", r.symbol));
    };
    let tick = book.spec.tick;
    if !bid.is_multiple_of(tick) || !ask.is_multiple_of(tick) {
        return bad(format!("prices must be multiples of the tick size {tick}"));
    }
    let default_q = Qty::from_units(book.spec.step.units() * 1000);
    let q = |s: &Option<String>| s.as_deref().map(Qty::parse).transpose();
    let (Ok(bq), Ok(aq)) = (q(&r.bid_qty), q(&r.ask_qty)) else {
        return bad("bidQty/askQty must be decimal strings");
    };
    let quote = Quote {
        symbol: r.symbol.clone(),
        bid,
        ask,
        bid_qty: bq.unwrap_or(default_q),
        ask_qty: aq.unwrap_or(default_q),
    };
    if let Some(b) = ex.books.get_mut(&r.symbol) {
        b.pinned = true;
    }
    ex.on_quote(&quote, now, true);
    publish_book(&sim, &ex.books[&r.symbol], now);
    ok(json!({"ok": true, "updateId": ex.books[&r.symbol].update_id}))
}

#[derive(Deserialize, Default)]
struct SymbolReq {
    symbol: Option<String>,
}
async fn release(State(sim): State<Arc<Sim>>, body: Option<Json<SymbolReq>>) -> Response {
    let r = body.map(|b| b.0).unwrap_or_default();
    let mut ex = lock(&sim.ex);
    for (s, b) in ex.books.iter_mut() {
        if r.symbol.as_ref().is_none_or(|x| x == s) {
            b.pinned = false;
        }
    }
    ok(json!({"ok": true}))
}
async fn market(State(sim): State<Arc<Sim>>, Path(symbol): Path<String>) -> Response {
    let ex = lock(&sim.ex);
    let Some(b) = ex.books.get(&symbol) else {
        return bad(format!("unknown symbol {symbol}"));
    };
    ok(
        json!({"symbol": symbol, "bid": b.bid.to_string(), "bidQty": b.bid_qty.to_string(), "ask": b.ask.to_string(),
              "askQty": b.ask_qty.to_string(), "mark": b.mark().to_string(), "updateId": b.update_id, "pinned": b.pinned}),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClockReq {
    skew_ms: i64,
}
async fn clock(State(sim): State<Arc<Sim>>, Json(r): Json<ClockReq>) -> Response {
    sim.clock.set_skew(r.skew_ms);
    ok(json!({"ok": true, "serverTime": sim.now()}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DelayReq {
    ms: u64,
    count: Option<u32>,
    path_prefix: Option<String>,
}
async fn delay(State(sim): State<Arc<Sim>>, Json(r): Json<DelayReq>) -> Response {
    let mut f = lock(&sim.faults);
    f.delay_ms = r.ms;
    f.delay_count = r.count;
    f.delay_path_prefix = r.path_prefix;
    ok(json!({"ok": true}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FailReq {
    count: u32,
    path_prefix: String,
}
async fn fail(State(sim): State<Arc<Sim>>, Json(r): Json<FailReq>) -> Response {
    let mut f = lock(&sim.faults);
    f.fail_count = r.count;
    f.fail_path_prefix = Some(r.path_prefix);
    ok(json!({"ok": true}))
}

#[derive(Deserialize)]
struct Order503Req {
    count: u32,
    placed: bool,
}
async fn order503(State(sim): State<Arc<Sim>>, Json(r): Json<Order503Req>) -> Response {
    let mut f = lock(&sim.faults);
    f.order_503 = r.count;
    f.order_503_placed = r.placed;
    ok(json!({"ok": true}))
}

#[derive(Deserialize)]
struct GapReq {
    symbol: String,
}
async fn depth_gap(State(sim): State<Arc<Sim>>, Json(r): Json<GapReq>) -> Response {
    lock(&sim.faults).depth_gap.insert(r.symbol);
    ok(json!({"ok": true}))
}
#[derive(Deserialize)]
struct MaxLeverageReq {
    max: Option<u32>,
}
async fn max_leverage(State(sim): State<Arc<Sim>>, Json(r): Json<MaxLeverageReq>) -> Response {
    lock(&sim.faults).max_leverage = r.max;
    ok(json!({"ok": true}))
}
async fn clear(State(sim): State<Arc<Sim>>) -> Response {
    *lock(&sim.faults) = Default::default();
    sim.clock.set_skew(0);
    ok(json!({"ok": true}))
}

async fn add_key(State(sim): State<Arc<Sim>>, Json(e): Json<KeyEntry>) -> Response {
    let k = match e.into_key(sim.now()) {
        Ok(k) => k,
        Err(e) => return bad(e),
    };
    let mut keys = sim.keys.write().unwrap_or_else(|e| e.into_inner());
    match keys.insert(k) {
        Ok(()) => ok(json!({"ok": true})),
        Err(e) => bad(e),
    }
}

async fn revoke(State(sim): State<Arc<Sim>>, Path(api_key): Path<String>) -> Response {
    let existed = sim
        .keys
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .revoke(&api_key);
    if !existed {
        return bad("no such key");
    }
    let pushed = sim
        .conns
        .send_api_key(&api_key, Ctrl::Send(super::ws_api::revoked_push()));
    ok(json!({"ok": true, "sessionsNotified": pushed}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PermReq {
    reading: Option<bool>,
    futures: Option<bool>,
    spot: Option<bool>,
    withdrawals: Option<bool>,
    ip_restrict: Option<bool>,
    allowed_ips: Option<Vec<String>>,
}
async fn permissions(
    State(sim): State<Arc<Sim>>,
    Path(api_key): Path<String>,
    Json(r): Json<PermReq>,
) -> Response {
    let mut ips = Vec::new();
    for ip in r.allowed_ips.iter().flatten() {
        match ip.parse() {
            Ok(v) => ips.push(v),
            Err(_) => return bad(format!("{ip:?} is not an IP address")),
        }
    }
    let mut keys = sim.keys.write().unwrap_or_else(|e| e.into_inner());
    let Some(k) = keys.get_mut(&api_key) else {
        return bad("no such key");
    };
    if let Some(v) = r.reading {
        k.permissions.reading = v;
    }
    if let Some(v) = r.futures {
        k.permissions.futures = v;
    }
    if let Some(v) = r.spot {
        k.permissions.spot = v;
    }
    if let Some(v) = r.withdrawals {
        k.permissions.withdrawals = v;
    }
    if let Some(v) = r.ip_restrict {
        k.ip_restrict = v;
    }
    if r.allowed_ips.is_some() {
        k.allowed_ips = ips;
    }
    ok(json!({"ok": true, "permissions": k.permissions, "ipRestrict": k.ip_restrict}))
}

#[derive(Deserialize, Default)]
struct TargetReq {
    #[serde(default)]
    target: Target,
    ms: Option<u64>,
    payload: Option<String>,
}
fn target_req(b: Option<Json<TargetReq>>) -> TargetReq {
    b.map(|b| b.0).unwrap_or_default()
}
async fn ws_drop(State(sim): State<Arc<Sim>>, b: Option<Json<TargetReq>>) -> Response {
    let n = sim.conns.send(target_req(b).target, Ctrl::Drop);
    ok(json!({"ok": true, "connections": n}))
}
async fn ws_stall(State(sim): State<Arc<Sim>>, b: Option<Json<TargetReq>>) -> Response {
    let r = target_req(b);
    let n = sim.conns.send(r.target, Ctrl::Stall(r.ms));
    ok(json!({"ok": true, "connections": n}))
}
async fn ws_unstall(State(sim): State<Arc<Sim>>, b: Option<Json<TargetReq>>) -> Response {
    let n = sim.conns.send(target_req(b).target, Ctrl::Unstall);
    ok(json!({"ok": true, "connections": n}))
}
async fn ws_malformed(State(sim): State<Arc<Sim>>, b: Option<Json<TargetReq>>) -> Response {
    let r = target_req(b);
    let payload = r.payload.unwrap_or_else(|| {
        "{\"e\":\"bookTicker\",\"u\":12,\"s\":\"BTCUSDT\",\"b\":\"6".to_string()
    });
    let n = sim.conns.send(r.target, Ctrl::Send(payload));
    ok(json!({"ok": true, "connections": n}))
}
async fn ws_disconnect(State(sim): State<Arc<Sim>>, b: Option<Json<TargetReq>>) -> Response {
    let n = sim.conns.send(
        target_req(b).target,
        Ctrl::Close(1000, "24h connection limit".into()),
    );
    ok(json!({"ok": true, "connections": n}))
}
async fn ws_lifetime(State(sim): State<Arc<Sim>>, Json(r): Json<TargetReq>) -> Response {
    let Some(ms) = r.ms else {
        return bad("ms is required");
    };
    sim.settings.ws_lifetime_ms.store(ms, Ordering::Relaxed);
    ok(json!({"ok": true}))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ExpireReq {
    listen_key: Option<String>,
    account: Option<String>,
}
async fn expire_listen_keys(State(sim): State<Arc<Sim>>, b: Option<Json<ExpireReq>>) -> Response {
    let r = b.map(|b| b.0).unwrap_or_default();
    let now = sim.now();
    let gone = lock(&sim.listen_keys).expire(r.listen_key.as_deref(), r.account.as_deref());
    super::user_stream::notify_expired(&sim, &gone, now);
    ok(json!({"ok": true, "expired": gone}))
}

async fn set_limits(State(sim): State<Arc<Sim>>, Json(l): Json<Limits>) -> Response {
    let mut g = lock(&sim.limits);
    g.limits = l;
    g.reset();
    ok(json!({"ok": true, "limits": l}))
}
async fn reset_limits(State(sim): State<Arc<Sim>>) -> Response {
    lock(&sim.limits).reset();
    ok(json!({"ok": true}))
}

#[derive(Deserialize)]
struct HoldReq {
    count: u32,
}
async fn hold_orders(State(sim): State<Arc<Sim>>, Json(r): Json<HoldReq>) -> Response {
    lock(&sim.ex).hold_next = r.count;
    ok(json!({"ok": true}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderFaultReq {
    client_order_id: String,
    qty: Option<String>,
}
async fn fill_order(
    State(sim): State<Arc<Sim>>,
    Path(name): Path<String>,
    Json(r): Json<OrderFaultReq>,
) -> Response {
    let Ok(qty) = r.qty.as_deref().map(Qty::parse).transpose() else {
        return bad("qty must be a decimal string");
    };
    let now = sim.now();
    match lock(&sim.ex).fill_open(&name, &r.client_order_id, qty, now) {
        Ok(o) => ok(o.to_json(true)),
        Err(e) => bad(e),
    }
}
async fn expire_order(
    State(sim): State<Arc<Sim>>,
    Path(name): Path<String>,
    Json(r): Json<OrderFaultReq>,
) -> Response {
    let now = sim.now();
    match lock(&sim.ex).expire_open(&name, &r.client_order_id, now) {
        Ok(o) => ok(o.to_json(true)),
        Err(e) => bad(e),
    }
}

/// Like [`expire_listen_keys`], but the streams are not told (no listenKeyExpired, no close): the next
/// keep-alive is the first to learn, with -1125.
async fn forget_listen_keys(State(sim): State<Arc<Sim>>, b: Option<Json<ExpireReq>>) -> Response {
    let r = b.map(|b| b.0).unwrap_or_default();
    let gone = lock(&sim.listen_keys).expire(r.listen_key.as_deref(), r.account.as_deref());
    ok(json!({"ok": true, "forgotten": gone}))
}
