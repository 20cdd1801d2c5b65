//! Market streams: bookTicker, aggTrade, depth diffs (with `U`/`u`/`pu`), markPrice; raw `/ws/<stream>`,
//! combined `/stream?streams=a/b` (wrapped as `{"stream":..,"data":..}`), the routed `/public/...` (bookTicker,
//! depth) and `/market/...` (aggTrade, markPrice) paths, and live SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS.

use super::conns::{serve, Role};
use super::market::{Book, Trade};
use super::symbols::fixed;
use super::{lock, Sim};
use aegis_shared::num::{Price, Qty};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// One published message: stream name and JSON payload.
#[derive(Debug, Clone)]
pub struct StreamMsg {
    /// e.g. `btcusdt@bookTicker`.
    pub stream: String,
    /// The payload JSON.
    pub data: String,
}

/// Which URL family a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/ws`, `/stream`: every stream.
    Legacy,
    /// `/public/...`: bookTicker and depth.
    Public,
    /// `/market/...`: aggTrade, markPrice, kline.
    Market,
}

fn stream_kind_allowed(route: Route, stream: &str) -> bool {
    let Some((sym, kind)) = stream.split_once('@') else {
        return false;
    };
    if sym.is_empty() || sym.bytes().any(|c| c.is_ascii_uppercase()) && !sym.starts_with('!') {
        return false;
    }
    let public = kind == "bookTicker" || kind == "depth" || kind.starts_with("depth@");
    let market = kind == "aggTrade" || kind.starts_with("markPrice") || kind.starts_with("kline_");
    match route {
        Route::Legacy => public || market,
        Route::Public => public,
        Route::Market => market,
    }
}

/// A market connection's subscriptions.
#[derive(Debug, Clone)]
pub struct MarketSubs {
    /// URL family.
    pub route: Route,
    /// Wrap as combined stream.
    pub combined: bool,
    /// Subscribed stream names.
    pub subs: Vec<String>,
}

impl MarketSubs {
    /// Subscriptions from a URL.
    pub fn new(route: Route, combined: bool, initial: &[&str]) -> Self {
        Self {
            route,
            combined,
            subs: initial
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| s.to_string())
                .collect(),
        }
    }

    /// Handles a client frame; returns the replies and any listenKeys subscribed as streams (the connection
    /// attaches that account's user data).
    pub fn handle_text(&mut self, text: &str) -> (Vec<String>, Vec<String>) {
        let mut keys = Vec::new();
        let replies = self.handle_inner(text, &mut keys);
        (replies, keys)
    }

    fn handle_inner(&mut self, text: &str, keys: &mut Vec<String>) -> Vec<String> {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return vec![
                    json!({"error": {"code": 3, "msg": format!("Invalid JSON: {e}")}, "id": null})
                        .to_string(),
                ]
            }
        };
        let id = v.get("id").cloned().unwrap_or(Value::Null);
        let err = |msg: &str| {
            vec![
                json!({"error": {"code": 2, "msg": format!("Invalid request: {msg}")}, "id": id})
                    .to_string(),
            ]
        };
        let params: Vec<String> = match v.get("params") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            Some(_) => return err("params must be an array"),
        };
        match v.get("method").and_then(Value::as_str) {
            Some("SUBSCRIBE") => {
                let (lks, params): (Vec<String>, Vec<String>) = params
                    .into_iter()
                    .partition(|s| self.route == Route::Legacy && !s.contains('@'));
                keys.extend(lks);
                if let Some(bad) = params.iter().find(|s| !stream_kind_allowed(self.route, s)) {
                    return err(&format!("stream {bad} is not served on this path"));
                }
                for s in params {
                    if !self.subs.contains(&s) {
                        self.subs.push(s);
                    }
                }
                vec![obj(&[("result", "null".into()), ("id", js(&id))])]
            }
            Some("UNSUBSCRIBE") => {
                self.subs.retain(|s| !params.contains(s));
                vec![obj(&[("result", "null".into()), ("id", js(&id))])]
            }
            Some("LIST_SUBSCRIPTIONS") => {
                vec![obj(&[("result", js(&self.subs)), ("id", js(&id))])]
            }
            Some("SET_PROPERTY") => {
                if let Some(Value::Array(a)) = v.get("params") {
                    if a.first().and_then(Value::as_str) == Some("combined") {
                        self.combined = a.get(1).and_then(Value::as_bool).unwrap_or(self.combined);
                        return vec![obj(&[("result", "null".into()), ("id", js(&id))])];
                    }
                }
                err("unknown property")
            }
            Some("GET_PROPERTY") => vec![obj(&[("result", js(self.combined)), ("id", js(&id))])],
            _ => err("unknown method"),
        }
    }

    /// User data connections accept (and ignore) the same control frames.
    pub fn user_stream_reply(text: &str) -> Vec<String> {
        let id = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("id").cloned())
            .unwrap_or(Value::Null);
        vec![obj(&[("result", "null".into()), ("id", js(&id))])]
    }

    /// The frame to send for a published message, if subscribed.
    pub fn render(&self, msg: &StreamMsg) -> Option<String> {
        let sub = self.subs.iter().find(|s| {
            **s == msg.stream
                || (msg.stream.ends_with("@depth")
                    && s.starts_with(&msg.stream)
                    && s[msg.stream.len()..].starts_with('@'))
        })?;
        if self.combined {
            Some(format!("{{\"stream\":\"{}\",\"data\":{}}}", sub, msg.data))
        } else {
            Some(msg.data.clone())
        }
    }
}

/// What the depth stream last published for a symbol.
#[derive(Debug, Clone, Default)]
pub struct DepthState {
    bids: Vec<(Price, Qty)>,
    asks: Vec<(Price, Qty)>,
    last_u: u64,
}

fn levels_json(levels: &[(Price, Qty)], pd: u32, qd: u32) -> Value {
    Value::Array(
        levels
            .iter()
            .map(|(p, q)| json!([fixed(p.units(), pd), fixed(q.units(), qd)]))
            .collect(),
    )
}

fn diff(old: &[(Price, Qty)], new: &[(Price, Qty)]) -> Vec<(Price, Qty)> {
    let newm: HashMap<i64, Qty> = new.iter().map(|(p, q)| (p.units(), *q)).collect();
    let mut out: Vec<(Price, Qty)> = old
        .iter()
        .filter(|(p, _)| !newm.contains_key(&p.units()))
        .map(|(p, _)| (*p, Qty::ZERO))
        .collect();
    let oldm: HashMap<i64, Qty> = old.iter().map(|(p, q)| (p.units(), *q)).collect();
    out.extend(
        new.iter()
            .filter(|(p, q)| oldm.get(&p.units()) != Some(q))
            .copied(),
    );
    out
}

/// Writes a JSON object with fields in the given order (Binance's order; serde_json's map would sort them).
/// Values are JSON texts, see [`js`].
pub fn obj(fields: &[(&str, String)]) -> String {
    let mut s = String::with_capacity(256);
    s.push('{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        s.push_str(k);
        s.push_str("\":");
        s.push_str(v);
    }
    s.push('}');
    s
}

/// One value as JSON text.
pub fn js<T: serde::Serialize>(v: T) -> String {
    serde_json::to_string(&v).unwrap_or_else(|_| "null".into())
}

fn lower(symbol: &str) -> String {
    symbol.to_ascii_lowercase()
}

fn publish(sim: &Sim, stream: String, data: String) {
    // No subscriber is fine.
    let _ = sim.market_tx.send(Arc::new(StreamMsg { stream, data }));
}

/// Publishes bookTicker and a depth diff for a book that just changed.
pub fn publish_book(sim: &Sim, book: &Book, now: u64) {
    let (pd, qd) = (book.spec.price_precision, book.spec.qty_precision);
    let sym = &book.spec.symbol;
    publish(
        sim,
        format!("{}@bookTicker", lower(sym)),
        obj(&[
            ("e", js("bookTicker")),
            ("u", js(book.update_id)),
            ("E", js(now)),
            ("T", js(now)),
            ("s", js(sym)),
            ("b", js(fixed(book.bid.units(), pd))),
            ("B", js(fixed(book.bid_qty.units(), qd))),
            ("a", js(fixed(book.ask.units(), pd))),
            ("A", js(fixed(book.ask_qty.units(), qd))),
        ]),
    );
    let bids = book.levels(false);
    let asks = book.levels(true);
    let mut depth = lock(&sim.depth);
    let st = depth.entry(sym.clone()).or_default();
    let db = diff(&st.bids, &bids);
    let da = diff(&st.asks, &asks);
    let first = st.last_u + 1;
    let pu = st.last_u;
    st.bids = bids;
    st.asks = asks;
    st.last_u = book.update_id;
    drop(depth);
    let gap = lock(&sim.faults).depth_gap.remove(sym);
    if gap {
        // Fault: this update is never sent, so the next one's `pu` does not match what clients saw.
        return;
    }
    publish(
        sim,
        format!("{}@depth", lower(sym)),
        obj(&[
            ("e", js("depthUpdate")),
            ("E", js(now)),
            ("T", js(now)),
            ("s", js(sym)),
            ("U", js(first.min(book.update_id))),
            ("u", js(book.update_id)),
            ("pu", js(pu)),
            ("b", levels_json(&db, pd, qd).to_string()),
            ("a", levels_json(&da, pd, qd).to_string()),
        ]),
    );
}

/// Publishes an aggTrade.
pub fn publish_trade(sim: &Sim, t: &Trade, pd: u32, qd: u32, now: u64) {
    let id = sim.next_agg_id();
    super::lock(&sim.candles).record(&t.symbol, id, t.price, t.qty, t.buyer_maker, now);
    publish(
        sim,
        format!("{}@aggTrade", lower(&t.symbol)),
        obj(&[
            ("e", js("aggTrade")),
            ("E", js(now)),
            ("s", js(&t.symbol)),
            ("a", js(id)),
            ("p", js(fixed(t.price.units(), pd))),
            ("q", js(fixed(t.qty.units(), qd))),
            ("nq", js(fixed(t.qty.units(), qd))),
            ("f", js(id * 3)),
            ("l", js(id * 3 + 1)),
            ("T", js(now)),
            ("m", js(t.buyer_maker)),
        ]),
    );
}

/// Publishes markPrice (every second on `@markPrice@1s`, every third second also on `@markPrice`).
pub fn publish_mark(sim: &Sim, book: &Book, now: u64, slow_too: bool) {
    let sym = &book.spec.symbol;
    let mark = fixed(book.mark().units(), 8);
    let next_funding = now - now % 28_800_000 + 28_800_000;
    let data = obj(&[
        ("e", js("markPriceUpdate")),
        ("E", js(now)),
        ("s", js(sym)),
        ("p", js(&mark)),
        ("ap", js(&mark)),
        ("P", js(&mark)),
        ("i", js(&mark)),
        ("r", js("0.00010000")),
        ("T", js(next_funding)),
    ]);
    publish(sim, format!("{}@markPrice@1s", lower(sym)), data.clone());
    if slow_too {
        publish(sim, format!("{}@markPrice", lower(sym)), data);
    }
}

/// `GET /fapi/v1/depth` snapshot body.
pub fn depth_snapshot(book: &Book, limit: usize, now: u64) -> Value {
    let (pd, qd) = (book.spec.price_precision, book.spec.qty_precision);
    let mut bids = book.levels(false);
    let mut asks = book.levels(true);
    bids.truncate(limit);
    asks.truncate(limit);
    json!({"lastUpdateId": book.update_id, "E": now, "T": now,
           "bids": levels_json(&bids, pd, qd), "asks": levels_json(&asks, pd, qd)})
}

/// Query of `/stream?streams=a/b`.
#[derive(Debug, serde::Deserialize)]
pub struct StreamsQuery {
    streams: Option<String>,
}

fn upgrade(sim: Arc<Sim>, ws: WebSocketUpgrade, path: String, subs: MarketSubs) -> Response {
    ws.on_upgrade(move |socket| serve(sim, socket, path, Role::Market(subs)))
}

/// `/ws/<stream or listenKey>`.
pub async fn ws_raw(
    State(sim): State<Arc<Sim>>,
    Path(rest): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    if !rest.contains('@') {
        return super::user_stream::upgrade_user(sim, ws, format!("/ws/{rest}"), rest);
    }
    let names: Vec<&str> = rest.split('/').collect();
    upgrade(
        sim,
        ws,
        format!("/ws/{rest}"),
        MarketSubs::new(Route::Legacy, false, &names),
    )
}

/// `/ws` with no stream (subscribe later).
pub async fn ws_bare(State(sim): State<Arc<Sim>>, ws: WebSocketUpgrade) -> Response {
    upgrade(
        sim,
        ws,
        "/ws".into(),
        MarketSubs::new(Route::Legacy, false, &[]),
    )
}

/// `/stream?streams=a/b`.
pub async fn combined(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<StreamsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let s = q.streams.unwrap_or_default();
    let names: Vec<&str> = s.split('/').collect();
    // With the query, as the admin API's connection list documents (tests read what a client subscribed).
    let path = format!("/stream?streams={s}");
    upgrade(sim, ws, path, MarketSubs::new(Route::Legacy, true, &names))
}

fn routed(
    route: Route,
    prefix: &str,
    sim: Arc<Sim>,
    rest: Option<String>,
    q: StreamsQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let (combined, list) = match rest {
        // `/public/ws/<stream>`
        Some(r) => (false, r),
        // `/public/stream?streams=...` or `/public/ws`
        None => (q.streams.is_some(), q.streams.unwrap_or_default()),
    };
    let names: Vec<&str> = list.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(bad) = names.iter().find(|s| !stream_kind_allowed(route, s)) {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            format!("stream {bad} is not served under {prefix}"),
        )
            .into_response();
    }
    upgrade(
        sim,
        ws,
        prefix.to_string(),
        MarketSubs::new(route, combined, &names),
    )
}

/// `/public/ws/<stream>`.
pub async fn public_raw(
    State(sim): State<Arc<Sim>>,
    Path(rest): Path<String>,
    q: Query<StreamsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    routed(Route::Public, "/public", sim, Some(rest), q.0, ws)
}
/// `/public/ws` and `/public/stream?streams=`.
pub async fn public_bare(
    State(sim): State<Arc<Sim>>,
    q: Query<StreamsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    routed(Route::Public, "/public", sim, None, q.0, ws)
}
/// `/market/ws/<stream>`.
pub async fn market_raw(
    State(sim): State<Arc<Sim>>,
    Path(rest): Path<String>,
    q: Query<StreamsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    routed(Route::Market, "/market", sim, Some(rest), q.0, ws)
}
/// `/market/ws` and `/market/stream?streams=`.
pub async fn market_bare(
    State(sim): State<Arc<Sim>>,
    q: Query<StreamsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    routed(Route::Market, "/market", sim, None, q.0, ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_protocol_and_routing() {
        let mut s = MarketSubs::new(Route::Public, false, &["btcusdt@bookTicker"]);
        let (r, _) =
            s.handle_text(r#"{"method":"SUBSCRIBE","params":["ethusdt@depth@100ms"],"id":7}"#);
        assert_eq!(r, vec![r#"{"result":null,"id":7}"#.to_string()]);
        let (r, _) =
            s.handle_text(r#"{"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":8}"#);
        assert!(r[0].contains("\"code\":2"));
        let (r, _) = s.handle_text(r#"{"method":"LIST_SUBSCRIPTIONS","id":9}"#);
        let v: Value = serde_json::from_str(&r[0]).unwrap();
        assert_eq!(
            v["result"],
            json!(["btcusdt@bookTicker", "ethusdt@depth@100ms"])
        );
        let depth = StreamMsg {
            stream: "ethusdt@depth".into(),
            data: "{}".into(),
        };
        assert_eq!(s.render(&depth).as_deref(), Some("{}"));
        s.combined = true;
        assert_eq!(
            s.render(&depth).as_deref(),
            Some(r#"{"stream":"ethusdt@depth@100ms","data":{}}"#)
        );
        s.handle_text(r#"{"method":"UNSUBSCRIBE","params":["ethusdt@depth@100ms"],"id":10}"#);
        assert!(s.render(&depth).is_none());
        assert!(s.handle_text("nope").0[0].contains("\"code\":3"));
        let mut legacy = MarketSubs::new(Route::Legacy, false, &[]);
        let (r, keys) =
            legacy.handle_text(r#"{"method":"SUBSCRIBE","params":["AbCdlistenkey"],"id":1}"#);
        assert_eq!((r.len(), keys), (1, vec!["AbCdlistenkey".to_string()]));
    }

    #[test]
    fn depth_diff_marks_removed_levels_with_zero() {
        let p = |x: i64| Price::from_int(x);
        let q = |x: i64| Qty::from_int(x);
        let d = diff(&[(p(1), q(1)), (p(2), q(2))], &[(p(2), q(3)), (p(3), q(1))]);
        assert_eq!(d, vec![(p(1), Qty::ZERO), (p(2), q(3)), (p(3), q(1))]);
    }
}
