//! Spot REST `/api/v3/...`: routing and weights (REQUEST_WEIGHT 6,000/min on spot's own counter, headers
//! `X-MBX-USED-WEIGHT-1M` and on orders `X-MBX-ORDER-COUNT-10S`), key, signature and permission checks in
//! Binance's order (trading needs `enableSpotAndMarginTrading`), and the handlers.

use super::super::auth::Params;
use super::super::error::ApiError;
use super::super::http::{account_of, with_order_503, Admission, Auth, Outcome};
use super::super::keys::ApiKey;
use super::super::{lock, Sim};
use super::matching::{order_ref, parse_new_order, SpotExchange};
use super::symbols::s8;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::net::IpAddr;

/// Spot endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ep {
    /// GET ping.
    Ping,
    /// GET time.
    Time,
    /// GET exchangeInfo.
    ExchangeInfo,
    /// GET depth.
    Depth,
    /// GET ticker/bookTicker.
    BookTicker,
    /// GET ticker/price.
    TickerPrice,
    /// GET ticker/24hr.
    Ticker24hr,
    /// GET avgPrice.
    AvgPrice,
    /// GET klines.
    Klines,
    /// GET aggTrades.
    AggTrades,
    /// GET trades.
    Trades,
    /// GET account.
    Account,
    /// POST order.
    NewOrder,
    /// POST order/test.
    TestOrder,
    /// GET order.
    QueryOrder,
    /// DELETE order.
    CancelOrder,
    /// POST order/cancelReplace.
    CancelReplace,
    /// GET openOrders.
    OpenOrders,
    /// DELETE openOrders.
    CancelAll,
    /// GET allOrders.
    AllOrders,
    /// GET myTrades.
    MyTrades,
    /// POST orderList/oco.
    NewOco,
    /// DELETE orderList.
    CancelList,
    /// GET account/commission.
    Commission,
}

/// Whether a key must be able to read or trade spot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sec {
    None,
    Read,
    Trade,
}

fn route(method: &Method, path: &str) -> Option<(Ep, u32, Sec)> {
    use Sec::*;
    Some(match (method.as_str(), path) {
        ("GET", "/api/v3/ping") => (Ep::Ping, 1, None),
        ("GET", "/api/v3/time") => (Ep::Time, 1, None),
        ("GET", "/api/v3/exchangeInfo") => (Ep::ExchangeInfo, 20, None),
        ("GET", "/api/v3/depth") => (Ep::Depth, 5, None),
        ("GET", "/api/v3/ticker/bookTicker") => (Ep::BookTicker, 2, None),
        ("GET", "/api/v3/ticker/price") => (Ep::TickerPrice, 2, None),
        ("GET", "/api/v3/ticker/24hr") => (Ep::Ticker24hr, 2, None),
        ("GET", "/api/v3/avgPrice") => (Ep::AvgPrice, 2, None),
        ("GET", "/api/v3/klines") => (Ep::Klines, 2, None),
        ("GET", "/api/v3/aggTrades") => (Ep::AggTrades, 4, None),
        ("GET", "/api/v3/trades") => (Ep::Trades, 25, None),
        ("GET", "/api/v3/account") => (Ep::Account, 20, Read),
        ("GET", "/api/v3/account/commission") => (Ep::Commission, 20, Read),
        ("POST", "/api/v3/order") => (Ep::NewOrder, 1, Trade),
        ("POST", "/api/v3/order/test") => (Ep::TestOrder, 1, Trade),
        ("GET", "/api/v3/order") => (Ep::QueryOrder, 4, Read),
        ("DELETE", "/api/v3/order") => (Ep::CancelOrder, 1, Trade),
        ("POST", "/api/v3/order/cancelReplace") => (Ep::CancelReplace, 1, Trade),
        ("GET", "/api/v3/openOrders") => (Ep::OpenOrders, 6, Read),
        ("DELETE", "/api/v3/openOrders") => (Ep::CancelAll, 1, Trade),
        ("GET", "/api/v3/allOrders") => (Ep::AllOrders, 20, Read),
        ("GET", "/api/v3/myTrades") => (Ep::MyTrades, 20, Read),
        ("POST", "/api/v3/orderList/oco") => (Ep::NewOco, 1, Trade),
        ("DELETE", "/api/v3/orderList") => (Ep::CancelList, 1, Trade),
        _ => return Option::None,
    })
}

fn weight_of(ep: Ep, base: u32, p: &Params) -> u32 {
    let limit = p.get("limit").and_then(|l| l.parse::<u32>().ok());
    match ep {
        Ep::Depth => match limit.unwrap_or(100) {
            0..=100 => 5,
            101..=500 => 25,
            501..=1000 => 50,
            _ => 250,
        },
        Ep::OpenOrders if p.opt("symbol").is_none() => 80,
        Ep::Ticker24hr | Ep::TickerPrice | Ep::BookTicker if p.opt("symbol").is_none() => 80,
        _ => base,
    }
}

/// Whether a key may do this on spot (`-2015` otherwise).
pub fn permit_spot(key: &ApiKey, trade: bool) -> Result<(), ApiError> {
    let ok = key.permissions.reading && (!trade || key.permissions.spot);
    if ok {
        Ok(())
    } else {
        Err(ApiError::key_rejected())
    }
}

/// Processes one spot REST request.
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
        limits: &sim.spot.limits,
        ip,
        weight,
        now,
        headers,
        query,
        body,
        params: &params,
        // Cancel-replace counts one order, even when its new order is not attempted (as Binance documents).
        order: matches!(ep, Ep::NewOrder | Ep::NewOco | Ep::CancelReplace),
    };
    let auth = if sec == Sec::None {
        Auth::Public
    } else {
        Auth::Signed(&|k| permit_spot(k, sec == Sec::Trade))
    };
    let (key, usage) = match req.admit(sim, auth) {
        Ok(x) => x,
        Err(out) => return out,
    };
    let result = handle(sim, ep, &params, key.as_ref(), now);
    Outcome { result, usage }
}

/// Places an order (REST and the WebSocket API) under the 503 fault, like the futures side
/// ([`with_order_503`]).
pub fn place_order(sim: &Sim, p: &Params, account: &str, now: u64) -> Result<Value, ApiError> {
    let pl = with_order_503(sim, || {
        parse_new_order(p).and_then(|r| lock(&sim.spot.ex).place(account, r, now))
    })?;
    Ok(pl.order.new_order_json(pl.resp, now))
}

/// `POST /api/v3/order/cancelReplace` and `order.cancelReplace`, under the 503 fault like a new order.
pub fn cancel_replace(sim: &Sim, p: &Params, account: &str, now: u64) -> Result<Value, ApiError> {
    with_order_503(sim, || lock(&sim.spot.ex).cancel_replace(account, p, now))
}

/// `GET /api/v3/openOrders` and `openOrders.status`.
pub fn open_orders(ex: &mut SpotExchange, p: &Params, account: &str) -> Result<Value, ApiError> {
    let sym = match p.opt("symbol") {
        Some(_) => Some(ex.symbol_param(p)?.symbol),
        None => None,
    };
    let acc = ex.account(account);
    Ok(Value::Array(
        acc.orders
            .iter()
            .filter(|o| o.status.is_open() && sym.as_ref().is_none_or(|s| *s == o.symbol))
            .map(|o| o.query_json())
            .collect(),
    ))
}

/// `GET /api/v3/order` and `order.status`: `-2013 Order does not exist.`
pub fn query_order(ex: &mut SpotExchange, p: &Params, account: &str) -> Result<Value, ApiError> {
    let sym = ex.symbol_param(p)?.symbol;
    let r = order_ref(p)?;
    let acc = ex.account(account);
    SpotExchange::find(acc, &sym, &r)
        .map(|o| o.query_json())
        .ok_or_else(ApiError::no_such_order)
}

/// `DELETE /api/v3/order` and `order.cancel`.
pub fn cancel_order(
    ex: &mut SpotExchange,
    p: &Params,
    account: &str,
    now: u64,
) -> Result<Value, ApiError> {
    let sym = ex.symbol_param(p)?.symbol;
    let r = order_ref(p)?;
    ex.cancel(account, &sym, &r, p.opt("newClientOrderId"), now)
}

/// `GET /api/v3/account` and `account.status`.
pub fn account_json(ex: &mut SpotExchange, p: &Params, key: &ApiKey, now: u64) -> Value {
    let omit = p.opt("omitZeroBalances") == Some("true");
    ex.account(&key.account)
        .to_json(key.permissions.spot, omit, now)
}

fn limit_param(p: &Params, default: usize, max: usize) -> Result<usize, ApiError> {
    Ok(p.opt_u64("limit")?
        .map(|l| l as usize)
        .unwrap_or(default)
        .clamp(1, max))
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
            let ex = lock(&sim.spot.ex);
            let only: Option<Vec<String>> = match (p.opt("symbol"), p.opt("symbols")) {
                (Some(s), _) => Some(vec![s.to_string()]),
                (None, Some(list)) => serde_json::from_str(list).ok(),
                _ => None,
            };
            if let Some(o) = &only {
                for s in o {
                    ex.spec(s)?;
                }
            }
            let l = lock(&sim.spot.limits).limits;
            Ok(json!({
                "timezone": "UTC", "serverTime": now,
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                     "limit": l.weight_per_minute},
                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                     "limit": l.orders_per_10s},
                    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": super::ORDERS_PER_DAY},
                    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000}
                ],
                "exchangeFilters": [],
                "symbols": ex.specs.iter()
                    .filter(|s| only.as_ref().is_none_or(|o| o.contains(&s.symbol)))
                    .map(|s| s.info()).collect::<Vec<_>>(),
            }))
        }
        Ep::Depth => {
            let ex = lock(&sim.spot.ex);
            let spec = ex.symbol_param(p)?;
            let b = &ex.books[&spec.symbol];
            let ten = s8(aegis_shared::num::Qty::from_int(10).units());
            Ok(
                json!({"lastUpdateId": b.update_id, "bids": [[s8(b.bid.units()), ten]],
                      "asks": [[s8(b.ask.units()), ten]]}),
            )
        }
        Ep::BookTicker | Ep::TickerPrice | Ep::Ticker24hr | Ep::AvgPrice => {
            let ex = lock(&sim.spot.ex);
            let one = |sym: &str| {
                let b = &ex.books[sym];
                let ten = s8(aegis_shared::num::Qty::from_int(10).units());
                match ep {
                    Ep::BookTicker => {
                        json!({"symbol": sym, "bidPrice": s8(b.bid.units()), "bidQty": ten,
                                             "askPrice": s8(b.ask.units()), "askQty": ten})
                    }
                    Ep::TickerPrice => json!({"symbol": sym, "price": s8(b.last.units())}),
                    Ep::AvgPrice => {
                        json!({"mins": 5, "price": s8(b.last.units()), "closeTime": now})
                    }
                    _ => {
                        let day: Vec<_> = b
                            .trades
                            .iter()
                            .filter(|t| t.time + 86_400_000 > now)
                            .collect();
                        let open = day.first().map(|t| t.price).unwrap_or(b.last);
                        let high = day.iter().map(|t| t.price).max().unwrap_or(b.last);
                        let low = day.iter().map(|t| t.price).min().unwrap_or(b.last);
                        let vol = day
                            .iter()
                            .fold(aegis_shared::num::Qty::ZERO, |a, t| a + t.qty);
                        json!({"symbol": sym, "priceChange": s8((b.last - open).units()),
                               "lastPrice": s8(b.last.units()), "openPrice": s8(open.units()),
                               "highPrice": s8(high.units()), "lowPrice": s8(low.units()),
                               "bidPrice": s8(b.bid.units()), "askPrice": s8(b.ask.units()),
                               "volume": s8(vol.units()), "openTime": now.saturating_sub(86_400_000),
                               "closeTime": now, "count": day.len()})
                    }
                }
            };
            if ep == Ep::AvgPrice || p.opt("symbol").is_some() {
                let spec = ex.symbol_param(p)?;
                Ok(one(&spec.symbol))
            } else {
                Ok(Value::Array(
                    ex.specs.iter().map(|s| one(&s.symbol)).collect(),
                ))
            }
        }
        Ep::AggTrades | Ep::Trades => {
            let ex = lock(&sim.spot.ex);
            let spec = ex.symbol_param(p)?;
            let limit = limit_param(p, 500, 1000)?;
            let from = p.opt_u64("fromId")?;
            let b = &ex.books[&spec.symbol];
            let picked: Vec<_> = match from {
                Some(f) => b.trades.iter().filter(|t| t.id >= f).take(limit).collect(),
                None => {
                    let skip = b.trades.len().saturating_sub(limit);
                    b.trades.iter().skip(skip).collect()
                }
            };
            Ok(Value::Array(
                picked
                    .iter()
                    .map(|t| {
                        let (pr, q) = (s8(t.price.units()), s8(t.qty.units()));
                        if ep == Ep::AggTrades {
                            json!({"a": t.id, "p": pr, "q": q, "f": t.id, "l": t.id, "T": t.time,
                                   "m": t.buyer_maker, "M": true})
                        } else {
                            json!({"id": t.id, "price": pr, "qty": q,
                                   "quoteQty": s8(t.price.notional(t.qty).units()), "time": t.time,
                                   "isBuyerMaker": t.buyer_maker, "isBestMatch": true})
                        }
                    })
                    .collect(),
            ))
        }
        Ep::Klines => {
            let ex = lock(&sim.spot.ex);
            let spec = ex.symbol_param(p)?;
            let ms: u64 = match p.required("interval")? {
                "1m" => 60_000,
                "5m" => 300_000,
                "15m" => 900_000,
                "1h" => 3_600_000,
                "4h" => 14_400_000,
                "1d" => 86_400_000,
                _ => return Err(ApiError::new(400, -1120, "Invalid interval.")),
            };
            let limit = limit_param(p, 500, 1000)?;
            let b = &ex.books[&spec.symbol];
            let mut bars: Vec<Value> = Vec::new();
            let mut cur: Option<(
                u64,
                [aegis_shared::num::Price; 4],
                aegis_shared::num::Qty,
                u64,
            )> = None;
            let close = |c: &(
                u64,
                [aegis_shared::num::Price; 4],
                aegis_shared::num::Qty,
                u64,
            )| {
                let (t, [o, h, l, c2], v, n) = *c;
                json!([
                    t,
                    s8(o.units()),
                    s8(h.units()),
                    s8(l.units()),
                    s8(c2.units()),
                    s8(v.units()),
                    t + ms - 1,
                    "0.00000000",
                    n,
                    "0.00000000",
                    "0.00000000",
                    "0"
                ])
            };
            for t in &b.trades {
                let start = t.time - t.time % ms;
                match &mut cur {
                    Some(c) if c.0 == start => {
                        c.1[1] = c.1[1].max(t.price);
                        c.1[2] = c.1[2].min(t.price);
                        c.1[3] = t.price;
                        c.2 += t.qty;
                        c.3 += 1;
                    }
                    _ => {
                        if let Some(c) = &cur {
                            bars.push(close(c));
                        }
                        cur = Some((start, [t.price; 4], t.qty, 1));
                    }
                }
            }
            if let Some(c) = &cur {
                bars.push(close(c));
            }
            let skip = bars.len().saturating_sub(limit);
            Ok(Value::Array(bars.into_iter().skip(skip).collect()))
        }
        Ep::Account => {
            let k = key.ok_or_else(ApiError::key_format)?;
            Ok(account_json(&mut lock(&sim.spot.ex), p, k, now))
        }
        Ep::Commission => {
            let mut ex = lock(&sim.spot.ex);
            let spec = ex.symbol_param(p)?;
            let acc = ex.account(account_of(key)?);
            Ok(json!({"symbol": spec.symbol,
                "standardCommission": {"maker": s8(acc.maker.units()), "taker": s8(acc.taker.units()),
                                       "buyer": s8(0), "seller": s8(0)},
                "taxCommission": {"maker": s8(0), "taker": s8(0), "buyer": s8(0), "seller": s8(0)},
                "discount": {"enabledForAccount": true, "enabledForSymbol": true, "discountAsset": "BNB",
                             "discount": "1.00000000"}}))
        }
        Ep::NewOrder => place_order(sim, p, account_of(key)?, now),
        Ep::TestOrder => {
            // Validated like a real order (filters and balance included), nothing placed.
            let req = parse_new_order(p)?;
            let mut ex = lock(&sim.spot.ex);
            ex.spec(&req.symbol)?;
            if p.opt("computeCommissionRates") == Some("true") {
                let acc = ex.account(account_of(key)?);
                return Ok(
                    json!({"standardCommissionForOrder": {"maker": s8(acc.maker.units()),
                    "taker": s8(acc.taker.units())}, "taxCommissionForOrder": {"maker": s8(0), "taker": s8(0)},
                    "discount": {"enabledForAccount": true, "enabledForSymbol": true, "discountAsset": "BNB",
                                 "discount": "1.00000000"}}),
                );
            }
            Ok(json!({}))
        }
        Ep::QueryOrder => query_order(&mut lock(&sim.spot.ex), p, account_of(key)?),
        Ep::CancelOrder => cancel_order(&mut lock(&sim.spot.ex), p, account_of(key)?, now),
        Ep::CancelReplace => cancel_replace(sim, p, account_of(key)?, now),
        Ep::OpenOrders => open_orders(&mut lock(&sim.spot.ex), p, account_of(key)?),
        Ep::CancelAll => {
            let mut ex = lock(&sim.spot.ex);
            let sym = ex.symbol_param(p)?.symbol;
            ex.cancel_all(account_of(key)?, &sym, now)
        }
        Ep::AllOrders => {
            let mut ex = lock(&sim.spot.ex);
            let sym = ex.symbol_param(p)?.symbol;
            let from = p.opt_u64("orderId")?;
            let (start, end) = (p.opt_u64("startTime")?, p.opt_u64("endTime")?);
            let limit = limit_param(p, 500, 1000)?;
            let acc = ex.account(account_of(key)?);
            Ok(Value::Array(
                acc.orders
                    .iter()
                    .filter(|o| o.symbol == sym)
                    .filter(|o| from.is_none_or(|f| o.order_id >= f))
                    .filter(|o| {
                        start.is_none_or(|s| o.time >= s) && end.is_none_or(|e| o.time <= e)
                    })
                    .take(limit)
                    .map(|o| o.query_json())
                    .collect(),
            ))
        }
        Ep::MyTrades => {
            let mut ex = lock(&sim.spot.ex);
            let sym = ex.symbol_param(p)?.symbol;
            let order = p.opt_u64("orderId")?;
            let from = p.opt_u64("fromId")?;
            let (start, end) = (p.opt_u64("startTime")?, p.opt_u64("endTime")?);
            if from.is_some() && (start.is_some() || end.is_some()) {
                return Err(ApiError::new(
                    400,
                    -1128,
                    "Combination of optional parameters invalid.",
                ));
            }
            // Binance: a myTrades window spans at most 24 hours.
            if let (Some(s), Some(e)) = (start, end) {
                if e < s || e - s > 86_400_000 {
                    return Err(ApiError::new(
                        400,
                        -1127,
                        "More than 24 hours between startTime and endTime.",
                    ));
                }
            }
            let limit = limit_param(p, 500, 1000)?;
            let acc = ex.account(account_of(key)?);
            let picked: Vec<Value> = acc
                .trades
                .iter()
                .filter(|t| t.symbol == sym)
                .filter(|t| order.is_none_or(|o| t.order_id == o))
                .filter(|t| from.is_none_or(|f| t.id >= f))
                .filter(|t| start.is_none_or(|s| t.time >= s) && end.is_none_or(|e| t.time <= e))
                .map(|t| t.to_json())
                .collect();
            // Without fromId the newest `limit` trades, oldest first, like Binance.
            let skip = if from.is_some() {
                0
            } else {
                picked.len().saturating_sub(limit)
            };
            Ok(Value::Array(
                picked.into_iter().skip(skip).take(limit).collect(),
            ))
        }
        Ep::NewOco => lock(&sim.spot.ex).place_oco(account_of(key)?, p, now),
        Ep::CancelList => lock(&sim.spot.ex).cancel_list(account_of(key)?, p, now),
    }
}

/// The HTTP response: Binance's error body or the result, with spot's weight (and order count) headers.
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
    }
    if let Some(r) = retry {
        h.insert("retry-after", HeaderValue::from(r));
    }
    resp
}

/// Serves one `/api/v3/...` request (called by the REST fallback).
pub async fn serve(
    sim: &Sim,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    ip: IpAddr,
) -> Response {
    let out = process(sim, method, path, query, headers, body, ip);
    let delay = lock(&sim.faults).take_delay(path);
    if let Some(ms) = delay {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let order_endpoint = *method == Method::POST
        && matches!(
            path,
            "/api/v3/order" | "/api/v3/orderList/oco" | "/api/v3/order/cancelReplace"
        );
    respond(out, order_endpoint)
}
