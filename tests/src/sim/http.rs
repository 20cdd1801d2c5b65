//! REST endpoints (`/fapi/...`, `/sapi/...`, `/api/v3/ping`): routing, weights, key/signature/permission checks
//! in Binance's order, rate-limit headers and the request faults (delay, 503 on orders).

use super::auth::{check_timestamp, signed_payload, verify, Params};
use super::error::ApiError;
use super::keys::{well_formed, ApiKey};
use super::matching::{order_ref, parse_new_order, symbol_param};
use super::ratelimit::Usage;
use super::user_stream;
use super::{lock, Sim};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// What a key must be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    /// enableReading.
    Read,
    /// enableFutures.
    Trade,
    /// Any valid key.
    Any,
}

/// Endpoint security (Binance's NONE / USER_STREAM / SIGNED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sec {
    /// Public.
    None,
    /// API key only (listenKey endpoints).
    Key,
    /// Key + signature + timestamp, with a permission.
    Signed(Perm),
}

/// Endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ep {
    /// GET /fapi/v1/ping, /api/v3/ping
    Ping,
    /// GET /fapi/v1/time, /api/v3/time
    Time,
    /// GET /fapi/v1/exchangeInfo
    ExchangeInfo,
    /// GET /fapi/v1/depth
    Depth,
    /// GET /fapi/v1/ticker/bookTicker
    BookTicker,
    /// POST /fapi/v1/order
    NewOrder,
    /// GET /fapi/v1/order
    QueryOrder,
    /// DELETE /fapi/v1/order
    CancelOrder,
    /// GET /fapi/v1/openOrders
    OpenOrders,
    /// GET /fapi/v1/openOrder (one open order)
    OpenOrder,
    /// DELETE /fapi/v1/allOpenOrders
    CancelAll,
    /// GET /fapi/v2/account (and v3)
    Account,
    /// GET /fapi/v2/balance (and v3)
    Balance,
    /// GET /fapi/v2/positionRisk
    PositionRiskV2,
    /// GET /fapi/v3/positionRisk
    PositionRiskV3,
    /// POST /fapi/v1/leverage
    Leverage,
    /// POST /fapi/v1/listenKey
    ListenKeyNew,
    /// PUT /fapi/v1/listenKey
    ListenKeyKeep,
    /// DELETE /fapi/v1/listenKey
    ListenKeyClose,
    /// GET /sapi/v1/account/apiRestrictions
    ApiRestrictions,
    /// GET /fapi/v1/klines
    Klines,
    /// GET /fapi/v1/aggTrades
    AggTrades,
    /// GET /fapi/v1/ticker/24hr
    Ticker24hr,
    /// GET /fapi/v1/leverageBracket
    LeverageBracket,
    /// GET /fapi/v1/positionSide/dual
    PositionMode,
    /// POST /fapi/v1/positionSide/dual
    SetPositionMode,
    /// GET /fapi/v1/multiAssetsMargin
    MultiAssets,
    /// POST /fapi/v1/multiAssetsMargin
    SetMultiAssets,
    /// GET /fapi/v1/premiumIndex ([`super::funding`])
    PremiumIndex,
    /// GET /fapi/v1/userTrades ([`super::trades`])
    UserTrades,
    /// GET /fapi/v1/income (fills' COMMISSION/REALIZED_PNL and funding's FUNDING_FEE: [`super::trades`])
    Income,
    /// POST /fapi/v1/algoOrder ([`super::algo`])
    NewAlgo,
    /// GET /fapi/v1/algoOrder
    QueryAlgo,
    /// DELETE /fapi/v1/algoOrder
    CancelAlgo,
    /// GET /fapi/v1/openAlgoOrders
    OpenAlgo,
    /// DELETE /fapi/v1/algoOpenOrders
    CancelAllAlgo,
    /// GET /fapi/v1/allAlgoOrders
    AllAlgo,
}

/// Looks a route up: (endpoint, base weight, security).
pub fn route(method: &Method, path: &str) -> Option<(Ep, u32, Sec)> {
    use Sec::*;
    let m = method.as_str();
    Some(match (m, path) {
        ("GET", "/fapi/v1/ping") | ("GET", "/api/v3/ping") => (Ep::Ping, 1, None),
        ("GET", "/fapi/v1/time") | ("GET", "/api/v3/time") => (Ep::Time, 1, None),
        ("GET", "/fapi/v1/exchangeInfo") => (Ep::ExchangeInfo, 1, None),
        ("GET", "/fapi/v1/depth") => (Ep::Depth, 2, None),
        ("GET", "/fapi/v1/ticker/bookTicker") => (Ep::BookTicker, 2, None),
        ("POST", "/fapi/v1/order") => (Ep::NewOrder, 0, Signed(Perm::Trade)),
        ("GET", "/fapi/v1/order") => (Ep::QueryOrder, 1, Signed(Perm::Read)),
        ("DELETE", "/fapi/v1/order") => (Ep::CancelOrder, 1, Signed(Perm::Trade)),
        ("GET", "/fapi/v1/openOrders") => (Ep::OpenOrders, 1, Signed(Perm::Read)),
        ("GET", "/fapi/v1/openOrder") => (Ep::OpenOrder, 1, Signed(Perm::Read)),
        ("DELETE", "/fapi/v1/allOpenOrders") => (Ep::CancelAll, 1, Signed(Perm::Trade)),
        ("POST", "/fapi/v1/algoOrder") => (Ep::NewAlgo, 0, Signed(Perm::Trade)),
        ("GET", "/fapi/v1/algoOrder") => (Ep::QueryAlgo, 1, Signed(Perm::Read)),
        ("DELETE", "/fapi/v1/algoOrder") => (Ep::CancelAlgo, 1, Signed(Perm::Trade)),
        ("GET", "/fapi/v1/openAlgoOrders") => (Ep::OpenAlgo, 1, Signed(Perm::Read)),
        ("DELETE", "/fapi/v1/algoOpenOrders") => (Ep::CancelAllAlgo, 1, Signed(Perm::Trade)),
        ("GET", "/fapi/v1/allAlgoOrders") => (Ep::AllAlgo, 5, Signed(Perm::Read)),
        ("GET", "/fapi/v2/account") | ("GET", "/fapi/v3/account") => {
            (Ep::Account, 5, Signed(Perm::Read))
        }
        ("GET", "/fapi/v2/balance") | ("GET", "/fapi/v3/balance") => {
            (Ep::Balance, 5, Signed(Perm::Read))
        }
        ("GET", "/fapi/v2/positionRisk") => (Ep::PositionRiskV2, 5, Signed(Perm::Read)),
        ("GET", "/fapi/v3/positionRisk") => (Ep::PositionRiskV3, 5, Signed(Perm::Read)),
        ("POST", "/fapi/v1/leverage") => (Ep::Leverage, 1, Signed(Perm::Trade)),
        ("GET", "/fapi/v1/premiumIndex") => (Ep::PremiumIndex, 1, None),
        ("GET", "/fapi/v1/income") => (Ep::Income, 30, Signed(Perm::Read)),
        ("GET", "/fapi/v1/userTrades") => (Ep::UserTrades, 5, Signed(Perm::Read)),
        ("POST", "/fapi/v1/listenKey") => (Ep::ListenKeyNew, 1, Key),
        ("PUT", "/fapi/v1/listenKey") => (Ep::ListenKeyKeep, 1, Key),
        ("DELETE", "/fapi/v1/listenKey") => (Ep::ListenKeyClose, 1, Key),
        ("GET", "/sapi/v1/account/apiRestrictions") => (Ep::ApiRestrictions, 1, Signed(Perm::Any)),
        ("GET", "/fapi/v1/klines") => (Ep::Klines, 5, None),
        ("GET", "/fapi/v1/aggTrades") => (Ep::AggTrades, 20, None),
        ("GET", "/fapi/v1/ticker/24hr") => (Ep::Ticker24hr, 1, None),
        ("GET", "/fapi/v1/leverageBracket") => (Ep::LeverageBracket, 1, Signed(Perm::Read)),
        ("GET", "/fapi/v1/positionSide/dual") => (Ep::PositionMode, 30, Signed(Perm::Read)),
        ("POST", "/fapi/v1/positionSide/dual") => (Ep::SetPositionMode, 1, Signed(Perm::Trade)),
        ("GET", "/fapi/v1/multiAssetsMargin") => (Ep::MultiAssets, 30, Signed(Perm::Read)),
        ("POST", "/fapi/v1/multiAssetsMargin") => (Ep::SetMultiAssets, 1, Signed(Perm::Trade)),
        _ => return Option::None,
    })
}

fn weight_of(ep: Ep, base: u32, p: &Params) -> u32 {
    match ep {
        Ep::Depth => match p
            .get("limit")
            .and_then(|l| l.parse::<u32>().ok())
            .unwrap_or(500)
        {
            0..=50 => 2,
            51..=100 => 5,
            101..=500 => 10,
            _ => 20,
        },
        Ep::OpenOrders | Ep::OpenAlgo if p.opt("symbol").is_none() => 40,
        Ep::Ticker24hr if p.opt("symbol").is_none() => 40,
        // Binance: by `limit`, [1,100) 1, [100,500) 2, [500,1000] 5, above 10 (default 500).
        Ep::Klines => match p
            .get("limit")
            .and_then(|l| l.parse::<u32>().ok())
            .unwrap_or(500)
        {
            0..=99 => 1,
            100..=499 => 2,
            500..=1000 => 5,
            _ => 10,
        },
        Ep::BookTicker if p.opt("symbol").is_none() => 5,
        _ => base,
    }
}

/// Checks the API key header: -2014 when missing or malformed, -2015 when unknown or the IP is not allowed.
pub fn authenticate_key(sim: &Sim, headers: &HeaderMap, ip: IpAddr) -> Result<ApiKey, ApiError> {
    let raw = headers
        .get("x-mbx-apikey")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    lookup_key(sim, raw, ip)
}

/// An API key as REST and the WebSocket API both judge it: -2014 when malformed, -2015 when unknown or the IP is
/// not allowed.
pub fn lookup_key(sim: &Sim, raw: &str, ip: IpAddr) -> Result<ApiKey, ApiError> {
    if !well_formed(raw) {
        return Err(ApiError::key_format());
    }
    let key = sim.key(raw).ok_or_else(ApiError::key_rejected)?;
    if !key.ip_allowed(ip) {
        return Err(ApiError::key_rejected());
    }
    Ok(key)
}

/// Checks a key's permission for an action (-2015).
pub fn permit(key: &ApiKey, perm: Perm) -> Result<(), ApiError> {
    let ok = match perm {
        Perm::Any => true,
        Perm::Read => key.permissions.reading,
        Perm::Trade => key.permissions.futures,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::key_rejected())
    }
}

/// The result of processing a request.
pub struct Outcome {
    /// Status + body.
    pub result: Result<Value, ApiError>,
    /// Counters for the headers.
    pub usage: Usage,
}

impl Outcome {
    /// -1000 for a path no endpoint serves (futures and spot).
    pub fn not_found(method: &Method, path: &str) -> Self {
        Self {
            result: Err(ApiError::new(
                404,
                -1000,
                format!("Path {path} not found for {method}."),
            )),
            usage: Usage::default(),
        }
    }
}

/// How a REST endpoint authenticates (futures and spot alike).
pub enum Auth<'a> {
    /// Public.
    Public,
    /// The API key header only (listenKey endpoints).
    Key,
    /// Key, signature, timestamp, then this permission check.
    Signed(&'a dyn Fn(&ApiKey) -> Result<(), ApiError>),
}

/// What every REST request passes before its handler, futures and spot alike (each with its own limiter):
/// the IP's request weight, then the key and signature its endpoint needs, then (orders) the order-rate
/// count. The first refusal is the answer, with the usage counted so far.
pub struct Admission<'a> {
    /// The limiter of the request's market.
    pub limits: &'a std::sync::Mutex<super::ratelimit::RateLimiter>,
    /// Client IP.
    pub ip: IpAddr,
    /// Request weight.
    pub weight: u32,
    /// Server time (ms).
    pub now: u64,
    /// Request headers (the API key).
    pub headers: &'a HeaderMap,
    /// Raw query (signed payload).
    pub query: &'a str,
    /// Raw body (signed payload).
    pub body: &'a [u8],
    /// Parsed parameters (timestamp, recvWindow).
    pub params: &'a Params,
    /// Whether the request places an order (counted against the order limits).
    pub order: bool,
}

impl Admission<'_> {
    /// Admits the request: its key (for authenticated endpoints) and usage, or the refusal to answer.
    pub fn admit(&self, sim: &Sim, auth: Auth<'_>) -> Result<(Option<ApiKey>, Usage), Outcome> {
        let (ip, now) = (self.ip, self.now);
        let mut usage = lock(self.limits)
            .charge_ip(ip, self.weight, now)
            .map_err(|(e, u)| Outcome {
                result: Err(e),
                usage: u,
            })?;
        let checked = match auth {
            Auth::Public => Ok(None),
            Auth::Key => authenticate_key(sim, self.headers, ip).map(Some),
            Auth::Signed(permit) => (|| {
                let key = authenticate_key(sim, self.headers, ip)?;
                let (payload, sig) = signed_payload(self.query, self.body)?;
                if !verify(&key, &payload, &sig) {
                    return Err(ApiError::bad_signature());
                }
                check_timestamp(self.params, now)?;
                permit(&key)?;
                Ok(Some(key))
            })(),
        };
        let key = checked.map_err(|e| Outcome {
            result: Err(e),
            usage,
        })?;
        if self.order {
            let account = key.as_ref().map(|k| k.account.clone()).unwrap_or_default();
            usage = lock(self.limits)
                .charge_order(ip, &account, now, usage)
                .map_err(|(e, u)| Outcome {
                    result: Err(e),
                    usage: u,
                })?;
        }
        Ok((key, usage))
    }
}

/// The account of an authenticated request (-2014 without a key).
pub fn account_of(key: Option<&ApiKey>) -> Result<&str, ApiError> {
    key.map(|k| k.account.as_str())
        .ok_or_else(ApiError::key_format)
}

/// Runs `place` under the 503 fault (REST and WS API, futures and spot): with `placed` the order is placed and
/// its answer lost; without, nothing happens. Either way the client only sees -1007.
pub fn with_order_503<T>(
    sim: &Sim,
    place: impl FnOnce() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let fault = lock(&sim.faults).take_order_503();
    if fault == Some(false) {
        return Err(ApiError::unknown_status());
    }
    let placed = place();
    if fault == Some(true) {
        return Err(ApiError::unknown_status());
    }
    placed
}

/// Processes one REST request synchronously.
pub fn process(
    sim: &Sim,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    ip: IpAddr,
) -> Outcome {
    let now = sim.now();
    let Some((ep, base, sec)) = route(method, path) else {
        return Outcome::not_found(method, path);
    };
    let params = Params::from_raw(query, body);
    let weight = weight_of(ep, base, &params);
    let req = Admission {
        limits: &sim.limits,
        ip,
        weight,
        now,
        headers,
        query,
        body,
        params: &params,
        order: ep == Ep::NewOrder || ep == Ep::NewAlgo,
    };
    let admitted = match sec {
        Sec::None => req.admit(sim, Auth::Public),
        Sec::Key => req.admit(sim, Auth::Key),
        Sec::Signed(perm) => req.admit(sim, Auth::Signed(&|k| permit(k, perm))),
    };
    let (key, usage) = match admitted {
        Ok(x) => x,
        Err(out) => return out,
    };
    let result = handle(sim, ep, &params, key.as_ref(), now);
    Outcome { result, usage }
}

/// Places an order (REST and WS API) under the 503 fault ([`with_order_503`]).
pub fn place_order(sim: &Sim, p: &Params, account: &str, now: u64) -> Result<Value, ApiError> {
    let (pl, result) = with_order_503(sim, || {
        let mut ex = lock(&sim.ex);
        let r = parse_new_order(p, &ex.specs)?;
        let result = r.result;
        ex.place(account, r, now).map(|pl| (pl, result))
    })?;
    Ok(if result {
        pl.order.to_json(false)
    } else {
        pl.ack.to_json(false)
    })
}

fn handle(
    sim: &Sim,
    ep: Ep,
    p: &Params,
    key: Option<&ApiKey>,
    now: u64,
) -> Result<Value, ApiError> {
    match ep {
        Ep::Ping => Ok(json!({})),
        Ep::Time => Ok(json!({"serverTime": now})),
        Ep::ExchangeInfo => {
            let ex = lock(&sim.ex);
            let limits = lock(&sim.limits).exchange_info_limits();
            Ok(json!({
                "timezone": "UTC",
                "serverTime": now,
                "futuresType": "U_MARGINED",
                "rateLimits": limits,
                "exchangeFilters": [],
                "assets": [{"asset": "USDT", "marginAvailable": true, "autoAssetExchange": "-10000"}],
                "symbols": ex.specs.iter().map(|s| s.info()).collect::<Vec<_>>(),
            }))
        }
        Ep::Depth => {
            let ex = lock(&sim.ex);
            let spec = symbol_param(p, &ex.specs)?;
            let limit = match p.opt("limit") {
                None => 500,
                Some(l) => match l.parse::<usize>() {
                    Ok(n @ (5 | 10 | 20 | 50 | 100 | 500 | 1000)) => n,
                    _ => return Err(ApiError::mandatory("limit")),
                },
            };
            Ok(super::streams::depth_snapshot(
                &ex.books[&spec.symbol],
                limit,
                now,
            ))
        }
        Ep::BookTicker => {
            let ex = lock(&sim.ex);
            let one = |b: &super::market::Book| {
                let (pd, qd) = (b.spec.price_precision, b.spec.qty_precision);
                json!({"symbol": b.spec.symbol, "bidPrice": super::symbols::fixed(b.bid.units(), pd),
                       "bidQty": super::symbols::fixed(b.bid_qty.units(), qd),
                       "askPrice": super::symbols::fixed(b.ask.units(), pd),
                       "askQty": super::symbols::fixed(b.ask_qty.units(), qd),
                       "time": now, "lastUpdateId": b.update_id})
            };
            if p.opt("symbol").is_some() {
                let spec = symbol_param(p, &ex.specs)?;
                Ok(one(&ex.books[&spec.symbol]))
            } else {
                Ok(Value::Array(
                    ex.specs.iter().map(|s| one(&ex.books[&s.symbol])).collect(),
                ))
            }
        }
        Ep::Klines => {
            let spec = symbol_param(p, &lock(&sim.ex).specs)?.clone();
            lock(&sim.candles).klines(&spec, p, now)
        }
        Ep::AggTrades => {
            // BNBUSDT (the BNB fee mode's price) is served though it is not a traded symbol here.
            let symbol = match p.required("symbol")? {
                "BNBUSDT" => "BNBUSDT".to_string(),
                _ => symbol_param(p, &lock(&sim.ex).specs)?.symbol.clone(),
            };
            lock(&sim.candles).agg_trades(&symbol, p)
        }
        Ep::Ticker24hr => {
            let ex = lock(&sim.ex);
            let candles = lock(&sim.candles);
            let one = |s: &super::symbols::SymbolSpec| {
                candles.ticker_24hr(s, ex.books[&s.symbol].last_price, now)
            };
            if p.opt("symbol").is_some() {
                Ok(one(symbol_param(p, &ex.specs)?))
            } else {
                Ok(Value::Array(ex.specs.iter().map(one).collect()))
            }
        }
        Ep::LeverageBracket => {
            let max = lock(&sim.faults).max_leverage;
            let ex = lock(&sim.ex);
            if p.opt("symbol").is_some() {
                let spec = symbol_param(p, &ex.specs)?;
                Ok(super::candles::leverage_bracket(&spec.symbol, max))
            } else {
                Ok(Value::Array(
                    ex.specs
                        .iter()
                        .map(|s| super::candles::leverage_bracket(&s.symbol, max))
                        .collect(),
                ))
            }
        }
        Ep::PositionMode => Ok(super::account_modes::position_mode(
            &mut lock(&sim.ex),
            account_of(key)?,
        )),
        Ep::SetPositionMode => {
            super::account_modes::set_position_mode(&mut lock(&sim.ex), account_of(key)?, p)
        }
        Ep::MultiAssets => Ok(super::account_modes::multi_assets(
            &mut lock(&sim.ex),
            account_of(key)?,
        )),
        Ep::SetMultiAssets => {
            super::account_modes::set_multi_assets(&mut lock(&sim.ex), account_of(key)?, p)
        }
        Ep::NewOrder => place_order(sim, p, account_of(key)?, now),
        Ep::NewAlgo => lock(&sim.ex).place_algo(account_of(key)?, p, now),
        Ep::QueryAlgo => {
            let r = super::algo::algo_ref(p)?;
            lock(&sim.ex).query_algo(account_of(key)?, &r)
        }
        Ep::CancelAlgo => {
            let r = super::algo::algo_ref(p)?;
            lock(&sim.ex).cancel_algo(account_of(key)?, &r, now)
        }
        Ep::OpenAlgo => {
            let mut ex = lock(&sim.ex);
            let sym = match p.opt("symbol") {
                Some(_) => Some(symbol_param(p, &ex.specs)?.symbol.clone()),
                None => None,
            };
            Ok(Value::Array(ex.open_algo(account_of(key)?, sym.as_deref())))
        }
        Ep::CancelAllAlgo => {
            let mut ex = lock(&sim.ex);
            let sym = symbol_param(p, &ex.specs)?.symbol.clone();
            ex.cancel_all_algo(account_of(key)?, &sym, now);
            Ok(json!({"code": 200, "msg": "The operation of cancel all open order is done."}))
        }
        Ep::AllAlgo => lock(&sim.ex).all_algo(account_of(key)?, p),
        Ep::PremiumIndex => super::funding::premium_index(sim, p.opt("symbol"), now),
        Ep::UserTrades => {
            let mut ex = lock(&sim.ex);
            let sym = symbol_param(p, &ex.specs)?.symbol.clone();
            let acc = ex.account(account_of(key)?);
            super::trades::user_trades(acc, &sym, p, now)
        }
        Ep::Income => {
            let mut ex = lock(&sim.ex);
            if p.opt("symbol").is_some() {
                symbol_param(p, &ex.specs)?;
            }
            let acc = ex.account(account_of(key)?);
            super::trades::income(acc, p, now)
        }
        Ep::QueryOrder => {
            let ex = lock(&sim.ex);
            let spec = symbol_param(p, &ex.specs)?;
            let r = order_ref(p)?;
            ex.find(account_of(key)?, &spec.symbol, &r)
                .map(|o| o.to_json(true))
                .ok_or_else(ApiError::no_such_order)
        }
        Ep::OpenOrder => {
            let ex = lock(&sim.ex);
            let spec = symbol_param(p, &ex.specs)?;
            let r = order_ref(p)?;
            ex.find(account_of(key)?, &spec.symbol, &r)
                .filter(|o| o.is_open())
                .map(|o| o.to_json(true))
                .ok_or_else(ApiError::no_such_order)
        }
        Ep::CancelOrder => {
            let mut ex = lock(&sim.ex);
            let sym = symbol_param(p, &ex.specs)?.symbol.clone();
            let r = order_ref(p)?;
            ex.cancel(account_of(key)?, &sym, &r, now)
                .map(|o| o.to_json(false))
        }
        Ep::OpenOrders => {
            let mut ex = lock(&sim.ex);
            let sym = match p.opt("symbol") {
                Some(_) => Some(symbol_param(p, &ex.specs)?.symbol.clone()),
                None => None,
            };
            let acc = ex.account(account_of(key)?);
            Ok(Value::Array(
                acc.open_orders()
                    .filter(|o| sym.as_ref().is_none_or(|s| *s == o.symbol))
                    .map(|o| o.to_json(true))
                    .collect(),
            ))
        }
        Ep::CancelAll => {
            let mut ex = lock(&sim.ex);
            let sym = symbol_param(p, &ex.specs)?.symbol.clone();
            ex.cancel_all(account_of(key)?, &sym, now);
            Ok(json!({"code": 200, "msg": "The operation of cancel all open order is done."}))
        }
        Ep::Account => {
            let mut ex = lock(&sim.ex);
            let syms = ex.symbols();
            ex.account(account_of(key)?);
            let acc = &ex.accounts[account_of(key)?];
            Ok(acc.account_json(&ex.books, &syms))
        }
        Ep::Balance => {
            let mut ex = lock(&sim.ex);
            ex.account(account_of(key)?);
            let acc = &ex.accounts[account_of(key)?];
            let m = acc.summary(&ex.books);
            let s8 = |n: aegis_shared::num::Notional| super::symbols::fixed(n.units(), 8);
            Ok(
                json!([{"accountAlias": "SgsR", "asset": "USDT", "balance": s8(m.wallet),
                "crossWalletBalance": s8(m.wallet), "crossUnPnl": s8(m.unrealized),
                "availableBalance": s8(m.available()), "maxWithdrawAmount": s8(m.available().min(m.wallet)),
                "marginAvailable": true, "updateTime": acc.update_time}]),
            )
        }
        Ep::PositionRiskV2 | Ep::PositionRiskV3 => {
            let mut ex = lock(&sim.ex);
            let only = match p.opt("symbol") {
                Some(_) => Some(symbol_param(p, &ex.specs)?.symbol.clone()),
                None => None,
            };
            let syms = ex.symbols();
            ex.account(account_of(key)?);
            let acc = &ex.accounts[account_of(key)?];
            let v: Vec<Value> = syms
                .iter()
                .filter(|s| only.as_ref().is_none_or(|o| o == *s))
                .filter(|s| {
                    ep == Ep::PositionRiskV2
                        || acc.positions.get(*s).is_some_and(|p| !p.amt.is_zero())
                        || acc.open_orders().any(|o| &o.symbol == *s)
                })
                .map(|s| {
                    if ep == Ep::PositionRiskV2 {
                        acc.position_risk_v2(s, &ex.books[s])
                    } else {
                        acc.position_risk_v3(s, &ex.books[s])
                    }
                })
                .collect();
            Ok(Value::Array(v))
        }
        Ep::Leverage => {
            // Read before the exchange lock: the two are never held together.
            let max_lev = lock(&sim.faults).max_leverage;
            let mut ex = lock(&sim.ex);
            let sym = symbol_param(p, &ex.specs)?.symbol.clone();
            let lev: u32 = p
                .required("leverage")?
                .parse()
                .map_err(|_| ApiError::mandatory("leverage"))?;
            let account = account_of(key)?;
            if max_lev.is_some_and(|max| lev > max) {
                return Err(ApiError::bad_leverage());
            }
            ex.set_leverage(account, &sym, lev)?;
            ex.account(account)
                .emit(json!({"e": "ACCOUNT_CONFIG_UPDATE", "E": now, "T": now,
                "ac": {"s": sym, "l": lev}}));
            Ok(
                json!({"leverage": lev, "maxNotionalValue": super::account::max_notional(lev), "symbol": sym}),
            )
        }
        Ep::ListenKeyNew => {
            let k = lock(&sim.listen_keys).create(account_of(key)?, now, user_stream::ttl(sim));
            Ok(json!({"listenKey": k}))
        }
        Ep::ListenKeyKeep => {
            let k = lock(&sim.listen_keys).keepalive(
                account_of(key)?,
                p.opt("listenKey"),
                now,
                user_stream::ttl(sim),
            )?;
            Ok(json!({"listenKey": k}))
        }
        Ep::ListenKeyClose => {
            let gone = lock(&sim.listen_keys).close(account_of(key)?);
            for k in gone {
                sim.conns.send_listen_key(
                    &k,
                    super::conns::Ctrl::Close(1000, "listenKey closed".into()),
                );
            }
            Ok(json!({}))
        }
        Ep::ApiRestrictions => {
            let k = key.ok_or_else(ApiError::key_format)?;
            Ok(json!({
                "ipRestrict": k.ip_restrict,
                "createTime": k.create_time,
                "enableInternalTransfer": false,
                "enableFutures": k.permissions.futures,
                "enablePortfolioMarginTrading": false,
                "enableVanillaOptions": false,
                "permitsUniversalTransfer": false,
                "enableReading": k.permissions.reading,
                "enableSpotAndMarginTrading": k.permissions.spot,
                "enableWithdrawals": k.permissions.withdrawals,
                "enableMargin": false,
                "enableFixApiTrade": false,
                "enableFixReadOnly": false
            }))
        }
    }
}

/// Turns an outcome into an HTTP response with Binance's headers.
pub fn respond(out: Outcome, order_endpoint: bool) -> Response {
    let (status, body, retry) = match out.result {
        Ok(v) => (StatusCode::OK, v, None),
        Err(e) => (
            StatusCode::from_u16(e.http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            e.body(),
            e.retry_after,
        ),
    };
    let mut resp = (status, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    h.insert(
        "x-mbx-used-weight-1m",
        HeaderValue::from(out.usage.weight_1m),
    );
    if order_endpoint {
        if let Some(n) = out.usage.orders_10s {
            h.insert("x-mbx-order-count-10s", HeaderValue::from(n));
        }
        if let Some(n) = out.usage.orders_1m {
            h.insert("x-mbx-order-count-1m", HeaderValue::from(n));
        }
    }
    if let Some(r) = retry {
        h.insert("retry-after", HeaderValue::from(r));
    }
    resp
}

/// The REST fallback handler: every non-WebSocket, non-admin path.
pub async fn rest(
    State(sim): State<Arc<Sim>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    *lock(&sim.rest_paths).entry(path.clone()).or_default() += 1;
    if path.starts_with("/api/v3/") {
        return super::spot::rest::serve(&sim, &method, &path, &query, &headers, &body, addr.ip())
            .await;
    }
    if lock(&sim.faults).take_fail(&path) {
        let e = ApiError::new(
            503,
            -1001,
            "Internal error; unable to process your request. Please try again.",
        );
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(e.body())).into_response();
    }
    let out = process(&sim, &method, &path, &query, &headers, &body, addr.ip());
    let delay = lock(&sim.faults).take_delay(&path);
    if let Some(ms) = delay {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let order_endpoint =
        method == Method::POST && (path == "/fapi/v1/order" || path == "/fapi/v1/algoOrder");
    respond(out, order_endpoint)
}
