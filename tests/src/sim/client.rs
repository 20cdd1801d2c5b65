//! A client for the admin API, for tests (async [`AdminClient`]; [`BlockingAdminClient`] for threads without a
//! runtime). Every call maps 1:1 to an `/admin/...` endpoint and returns its JSON.

use serde_json::{json, Value};

/// Admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Transport.
    #[error("admin request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The simulator refused it.
    #[error("admin API refused: {0}")]
    Refused(String),
}

/// One admin request: method, path and optional JSON body. Built by the associated functions.
#[derive(Debug, Clone)]
pub struct AdminCall {
    post: bool,
    path: String,
    body: Option<Value>,
}

impl AdminCall {
    fn get(path: String) -> Self {
        Self {
            post: false,
            path,
            body: None,
        }
    }
    fn post(path: String, body: Value) -> Self {
        Self {
            post: true,
            path,
            body: Some(body),
        }
    }
    /// `GET /admin/accounts/{name}/algoOrders`: every algo (conditional) order of the account, any status.
    pub fn algo_orders(name: &str) -> Self {
        Self::get(format!("/admin/accounts/{name}/algoOrders"))
    }
    /// `GET /admin/accounts/{name}`: wallet, positions, open orders.
    pub fn account(name: &str) -> Self {
        Self::get(format!("/admin/accounts/{name}"))
    }
    /// `POST /admin/funding`: settle funding every `interval_ms` (0: stop) at `rate` ([`super::funding`]).
    pub fn funding(interval_ms: u64, rate: &str) -> Self {
        Self::post(
            "/admin/funding".into(),
            json!({"intervalMs": interval_ms, "rate": rate}),
        )
    }
    /// `POST /admin/fees/bnb`: charge commissions in BNB at this BNBUSDT price (`None`: in USDT).
    pub fn bnb_fees(price: Option<&str>) -> Self {
        Self::post("/admin/fees/bnb".into(), json!({"price": price}))
    }
    /// `POST /admin/accounts/{name}/liquidate`: the exchange closes the whole position (`autoclose-…`).
    pub fn liquidate(name: &str, symbol: &str, price: Option<&str>) -> Self {
        Self::post(
            format!("/admin/accounts/{name}/liquidate"),
            json!({"symbol": symbol, "price": price}),
        )
    }
    /// `GET /admin/accounts/{name}/totals`: fees per asset and in USDT, realized PnL, funding.
    pub fn totals(name: &str) -> Self {
        Self::get(format!("/admin/accounts/{name}/totals"))
    }
    /// `GET /admin/accounts/{name}/openOrders`.
    pub fn open_orders(name: &str) -> Self {
        Self::get(format!("/admin/accounts/{name}/openOrders"))
    }
    /// `GET /admin/accounts/{name}/positions` (non-zero positions only).
    pub fn positions(name: &str) -> Self {
        Self::get(format!("/admin/accounts/{name}/positions"))
    }
    /// `POST /admin/accounts/{name}/wallet`.
    pub fn set_wallet(name: &str, usdt: &str) -> Self {
        Self::post(
            format!("/admin/accounts/{name}/wallet"),
            json!({"usdt": usdt}),
        )
    }
    /// `POST /admin/market/quote`: sets (and pins) a symbol's top of book.
    pub fn set_quote(symbol: &str, bid: &str, bid_qty: &str, ask: &str, ask_qty: &str) -> Self {
        Self::post(
            "/admin/market/quote".into(),
            json!({"symbol": symbol, "bid": bid, "bidQty": bid_qty, "ask": ask, "askQty": ask_qty}),
        )
    }
    /// `POST /admin/market/release`: the price source drives the symbol (None = all) again.
    pub fn release(symbol: Option<&str>) -> Self {
        Self::post("/admin/market/release".into(), json!({"symbol": symbol}))
    }
    /// `GET /admin/market/{symbol}`.
    pub fn market(symbol: &str) -> Self {
        Self::get(format!("/admin/market/{symbol}"))
    }
    /// `POST /admin/clock`: server time = wall time + skew.
    pub fn skew_clock(ms: i64) -> Self {
        Self::post("/admin/clock".into(), json!({"skewMs": ms}))
    }
    /// `POST /admin/faults/delay`: hold REST (and WS-API) responses `ms` (count None = until cleared).
    pub fn delay(ms: u64, count: Option<u32>, path_prefix: Option<&str>) -> Self {
        Self::post(
            "/admin/faults/delay".into(),
            json!({"ms": ms, "count": count, "pathPrefix": path_prefix}),
        )
    }
    /// `POST /admin/faults/fail`: the next `count` REST requests on paths starting with `path_prefix` answer
    /// 503 -1001 without being processed (cleared by [`AdminCall::clear_faults`]).
    pub fn fail(count: u32, path_prefix: &str) -> Self {
        Self::post(
            "/admin/faults/fail".into(),
            json!({"count": count, "pathPrefix": path_prefix}),
        )
    }
    /// `POST /admin/faults/order503`: the next `count` order placements answer 503 -1007; `placed` says
    /// whether they were really placed.
    pub fn order_503(count: u32, placed: bool) -> Self {
        Self::post(
            "/admin/faults/order503".into(),
            json!({"count": count, "placed": placed}),
        )
    }
    /// `POST /admin/faults/holdOrders`: the next `count` new orders are accepted (`NEW`) but left working,
    /// market orders included, until [`AdminCall::fill_order`], [`AdminCall::expire_order`] or a cancel.
    /// [`AdminCall::clear_faults`] does not reset it (it lives in the matching engine): `hold_orders(0)` does.
    pub fn hold_orders(count: u32) -> Self {
        Self::post("/admin/faults/holdOrders".into(), json!({"count": count}))
    }
    /// `POST /admin/accounts/{account}/orders/fill`: fills `qty` (None: the rest) of an open order at the top
    /// of the book, published on the user data stream like any fill.
    pub fn fill_order(account: &str, client_order_id: &str, qty: Option<&str>) -> Self {
        Self::post(
            format!("/admin/accounts/{account}/orders/fill"),
            json!({"clientOrderId": client_order_id, "qty": qty}),
        )
    }
    /// `POST /admin/accounts/{account}/orders/expire`: the open order ends `EXPIRED`.
    pub fn expire_order(account: &str, client_order_id: &str) -> Self {
        Self::post(
            format!("/admin/accounts/{account}/orders/expire"),
            json!({"clientOrderId": client_order_id}),
        )
    }
    /// `POST /admin/faults/depthGap`: the symbol's next depth update is skipped.
    pub fn depth_gap(symbol: &str) -> Self {
        Self::post("/admin/faults/depthGap".into(), json!({"symbol": symbol}))
    }
    /// `POST /admin/faults/maxLeverage`: `POST /fapi/v1/leverage` above `max` answers -4028 (`None`: 1–125 again).
    pub fn max_leverage(max: Option<u32>) -> Self {
        Self::post("/admin/faults/maxLeverage".into(), json!({"max": max}))
    }
    /// `POST /admin/faults/clear`: no delay, no 503s, no skew.
    pub fn clear_faults() -> Self {
        Self::post("/admin/faults/clear".into(), json!({}))
    }
    /// `POST /admin/keys`: adds a key (keys-file entry format).
    pub fn add_key(entry: Value) -> Self {
        Self::post("/admin/keys".into(), entry)
    }
    /// `POST /admin/keys/{key}/revoke`.
    pub fn revoke_key(api_key: &str) -> Self {
        Self::post(format!("/admin/keys/{api_key}/revoke"), json!({}))
    }
    /// `GET /admin/requests`: REST requests per path so far (`{"/api/v3/exchangeInfo": 1, …}`).
    pub fn requests() -> Self {
        Self::get("/admin/requests".into())
    }
    /// `GET /admin/keys/usage`: per API key `{requests, refused, lastUsedMs}`.
    pub fn key_usage() -> Self {
        Self::get("/admin/keys/usage".into())
    }
    /// `POST /admin/keys/{key}/permissions` with any of reading, futures, spot, withdrawals, ipRestrict,
    /// allowedIps.
    pub fn set_permissions(api_key: &str, changes: Value) -> Self {
        Self::post(format!("/admin/keys/{api_key}/permissions"), changes)
    }
    /// `POST /admin/ws/drop`: cut connections without a close frame. target: all|market|user|api.
    pub fn ws_drop(target: &str) -> Self {
        Self::post("/admin/ws/drop".into(), json!({"target": target}))
    }
    /// `POST /admin/ws/stall`: stop sending (and answering pings) for `ms` (None: until unstalled).
    pub fn ws_stall(target: &str, ms: Option<u64>) -> Self {
        Self::post(
            "/admin/ws/stall".into(),
            json!({"target": target, "ms": ms}),
        )
    }
    /// `POST /admin/ws/unstall`.
    pub fn ws_unstall(target: &str) -> Self {
        Self::post("/admin/ws/unstall".into(), json!({"target": target}))
    }
    /// `POST /admin/ws/malformed`: send a broken frame (default: a truncated bookTicker).
    pub fn ws_malformed(target: &str, payload: Option<&str>) -> Self {
        Self::post(
            "/admin/ws/malformed".into(),
            json!({"target": target, "payload": payload}),
        )
    }
    /// `POST /admin/ws/disconnect`: the 24-hour disconnect, now (close frame 1000).
    pub fn ws_disconnect(target: &str) -> Self {
        Self::post("/admin/ws/disconnect".into(), json!({"target": target}))
    }
    /// `POST /admin/ws/lifetime`: connection lifetime for all connections (default 24 h).
    pub fn ws_lifetime(ms: u64) -> Self {
        Self::post("/admin/ws/lifetime".into(), json!({"ms": ms}))
    }
    /// `GET /admin/ws/connections`.
    pub fn ws_connections() -> Self {
        Self::get("/admin/ws/connections".into())
    }
    /// `GET /admin/ws/history`: every connection opened so far with `opened`/`closed` positions in one
    /// sequence of open and close events (and simulator times), oldest first.
    pub fn ws_history() -> Self {
        Self::get("/admin/ws/history".into())
    }
    /// `POST /admin/listenKeys/expire`: one key, an account's keys, or all (both None).
    pub fn expire_listen_keys(listen_key: Option<&str>, account: Option<&str>) -> Self {
        Self::post(
            "/admin/listenKeys/expire".into(),
            json!({"listenKey": listen_key, "account": account}),
        )
    }
    /// `POST /admin/listenKeys/forget`: keys gone without a word to their streams (keep-alive then -1125).
    pub fn forget_listen_keys(listen_key: Option<&str>, account: Option<&str>) -> Self {
        Self::post(
            "/admin/listenKeys/forget".into(),
            json!({"listenKey": listen_key, "account": account}),
        )
    }
    /// `POST /admin/limits` (weightPerMinute, ordersPer10s, ordersPerMinute, banAfter429s, banSecs); resets
    /// counters.
    pub fn set_limits(limits: Value) -> Self {
        Self::post("/admin/limits".into(), limits)
    }
    /// `POST /admin/limits/reset`: forget counters and bans.
    pub fn reset_limits() -> Self {
        Self::post("/admin/limits/reset".into(), json!({}))
    }
    /// `GET /admin/state`.
    pub fn state() -> Self {
        Self::get("/admin/state".into())
    }
}

/// The spot simulator's admin calls ([`super::spot::admin`]).
impl AdminCall {
    /// `GET /admin/spot/accounts/{name}`: balances, open orders, trades, commissions per asset.
    pub fn spot_account(name: &str) -> Self {
        Self::get(format!("/admin/spot/accounts/{name}"))
    }
    /// `POST /admin/spot/accounts/{name}/balances`: sets free balances, e.g. `{"BTC": "1.5"}`.
    pub fn spot_balances(name: &str, balances: Value) -> Self {
        Self::post(format!("/admin/spot/accounts/{name}/balances"), balances)
    }
    /// `POST /admin/spot/accounts/{name}/commission`: maker and taker rates.
    pub fn spot_commission(name: &str, maker: &str, taker: &str) -> Self {
        Self::post(
            format!("/admin/spot/accounts/{name}/commission"),
            json!({"maker": maker, "taker": taker}),
        )
    }
    /// `POST /admin/spot/accounts/{name}/orders/fill`: fills `qty` (None: the rest) of a working order at its
    /// price, as maker.
    pub fn spot_fill(name: &str, client_order_id: &str, qty: Option<&str>) -> Self {
        Self::post(
            format!("/admin/spot/accounts/{name}/orders/fill"),
            json!({"clientOrderId": client_order_id, "qty": qty}),
        )
    }
    /// `POST /admin/spot/market/price`: last price (a trade there) and top of book (default: the price);
    /// stops trigger and resting orders fill.
    pub fn spot_price(symbol: &str, price: &str, bid: Option<&str>, ask: Option<&str>) -> Self {
        Self::post(
            "/admin/spot/market/price".into(),
            json!({"symbol": symbol, "price": price, "bid": bid, "ask": ask}),
        )
    }
    /// [`AdminCall::spot_price`] with the sizes at the touch too (`bid_qty`, `ask_qty`).
    pub fn spot_quote(symbol: &str, bid: &str, bid_qty: &str, ask: &str, ask_qty: &str) -> Self {
        Self::post(
            "/admin/spot/market/price".into(),
            json!({"symbol": symbol, "price": bid, "bid": bid, "ask": ask, "bidQty": bid_qty,
                   "askQty": ask_qty}),
        )
    }
    /// `POST /admin/spot/fees/bnb`: spot commissions in BNB (when the account holds enough) or not.
    pub fn spot_bnb_fees(enabled: bool) -> Self {
        Self::post("/admin/spot/fees/bnb".into(), json!({"enabled": enabled}))
    }
    /// `POST /admin/spot/market/fill_parts`: marketable spot orders fill in `parts` trades.
    pub fn spot_fill_parts(parts: u32) -> Self {
        Self::post(
            "/admin/spot/market/fill_parts".into(),
            json!({"parts": parts}),
        )
    }
    /// `POST /admin/spot/market/percent_price`: the pair's PERCENT_PRICE_BY_SIDE multipliers.
    pub fn spot_percent_price(symbol: &str, down: &str, up: &str) -> Self {
        Self::post(
            "/admin/spot/market/percent_price".into(),
            json!({"symbol": symbol, "down": down, "up": up}),
        )
    }
    /// `POST /admin/spot/limits`: spot's own limits (the [`AdminCall::set_limits`] shape); counters reset.
    pub fn spot_limits(limits: Value) -> Self {
        Self::post("/admin/spot/limits".into(), limits)
    }
    /// `POST /admin/spot/userDataStream/terminate`: `eventStreamTerminated` to the account's subscriptions.
    pub fn spot_terminate_streams(account: &str) -> Self {
        Self::post(
            "/admin/spot/userDataStream/terminate".into(),
            json!({"account": account}),
        )
    }
}

fn check(status: reqwest::StatusCode, v: Value) -> Result<Value, AdminError> {
    if status.is_success() {
        Ok(v)
    } else {
        Err(AdminError::Refused(v.to_string()))
    }
}

/// Async admin client.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client for the simulator at `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }
    /// A client for a simulator serving HTTPS (`https://127.0.0.1:PORT`) that trusts `ca_pem`
    /// ([`super::SimHandle::ca_pem`]) in addition to the public roots.
    pub fn with_ca_pem(base: &str, ca_pem: &str) -> Result<Self, AdminError> {
        let mut b = reqwest::Client::builder();
        for c in reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes())? {
            b = b.add_root_certificate(c);
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http: b.build()?,
        })
    }
    /// Runs one call.
    pub async fn call(&self, c: AdminCall) -> Result<Value, AdminError> {
        let url = format!("{}{}", self.base, c.path);
        let req = if c.post {
            self.http.post(url).json(&c.body.unwrap_or(Value::Null))
        } else {
            self.http.get(url)
        };
        let resp = req.send().await?;
        let status = resp.status();
        check(status, resp.json().await?)
    }
}

/// Blocking admin client (do not use inside a tokio runtime).
#[derive(Debug, Clone)]
pub struct BlockingAdminClient {
    base: String,
    http: reqwest::blocking::Client,
}

impl BlockingAdminClient {
    /// A client for the simulator at `base`.
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::blocking::Client::new(),
        }
    }
    /// [`AdminClient::with_ca_pem`], blocking.
    pub fn with_ca_pem(base: &str, ca_pem: &str) -> Result<Self, AdminError> {
        let mut b = reqwest::blocking::Client::builder();
        for c in reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes())? {
            b = b.add_root_certificate(c);
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http: b.build()?,
        })
    }
    /// Runs one call.
    pub fn call(&self, c: AdminCall) -> Result<Value, AdminError> {
        let url = format!("{}{}", self.base, c.path);
        let req = if c.post {
            self.http.post(url).json(&c.body.unwrap_or(Value::Null))
        } else {
            self.http.get(url)
        };
        let resp = req.send()?;
        let status = resp.status();
        check(status, resp.json()?)
    }
}
