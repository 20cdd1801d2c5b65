//! The WebSocket API on `/ws-fapi/v1`: `session.logon` (Ed25519 keys only), `session.status`,
//! `session.logout`, `order.place`, `order.cancel`, `order.status`. Requests are either signed one by one
//! (sorted-params payload, HMAC or Ed25519) or ride on a logged-on session (timestamp only). Responses carry
//! `status`, `result`/`error` and `rateLimits` exactly like Binance's.

use super::auth::{check_timestamp, verify, ws_api_payload, Params};
use super::conns::{serve, Role};
use super::error::ApiError;
use super::http::{lookup_key, permit, place_order, Perm};
use super::keys::{ApiKey, KeyKind};
use super::matching::{order_ref, symbol_param};
use super::ratelimit::Usage;
use super::streams::{js, obj};
use super::{lock, Sim};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// A WebSocket API connection's state.
#[derive(Debug, Clone)]
pub struct Session {
    /// Registry id (set when the connection starts).
    pub conn_id: u64,
    /// Client address.
    pub ip: IpAddr,
    /// Key the session logged on with.
    pub api_key: Option<String>,
    /// When it logged on.
    pub authorized_since: Option<u64>,
    /// When the connection opened.
    pub connected_since: u64,
}

/// `/ws-fapi/v1`.
pub async fn upgrade(
    State(sim): State<Arc<Sim>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    let session = Session {
        conn_id: 0,
        ip: addr.ip(),
        api_key: None,
        authorized_since: None,
        connected_since: sim.now(),
    };
    ws.on_upgrade(move |socket| serve(sim, socket, "/ws-fapi/v1".into(), Role::Api(session)))
}

fn to_params(v: Option<&Value>) -> Params {
    let mut pairs = Vec::new();
    if let Some(Value::Object(m)) = v {
        for (k, v) in m {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            pairs.push((k.clone(), s));
        }
    }
    Params::from_pairs(pairs)
}

fn reply(id: &Value, status: u16, body: Result<Value, ApiError>, limits: Value) -> String {
    match body {
        Ok(r) => obj(&[
            ("id", js(id)),
            ("status", js(status)),
            ("result", r.to_string()),
            ("rateLimits", limits.to_string()),
        ]),
        Err(e) => obj(&[
            ("id", js(id)),
            ("status", js(e.http)),
            ("error", obj(&[("code", js(e.code)), ("msg", js(&e.msg))])),
            ("rateLimits", limits.to_string()),
        ]),
    }
}

/// Authenticates a request: its own signature, or the logged-on session.
fn authenticate(sim: &Sim, s: &Session, p: &Params, now: u64) -> Result<ApiKey, ApiError> {
    authenticate_ws(sim, s.ip, s.api_key.as_deref(), p, now)
}

/// `session.logon` (futures and spot): an Ed25519 key (else -4056), its signature and timestamp.
pub fn logon_key(sim: &Sim, ip: IpAddr, p: &Params, now: u64) -> Result<ApiKey, ApiError> {
    let key = lookup_key(sim, p.required("apiKey")?, ip)?;
    if !matches!(key.kind, KeyKind::Ed25519(_)) {
        return Err(ApiError::logon_needs_ed25519());
    }
    let sig = p.required("signature")?;
    if !verify(&key, ws_api_payload(p).as_bytes(), sig) {
        return Err(ApiError::bad_signature());
    }
    check_timestamp(p, now)?;
    Ok(key)
}

/// A WebSocket-API request's key (futures and spot): its own `apiKey` and `signature`, else the key the
/// session logged on with (`session`); then its timestamp.
pub fn authenticate_ws(
    sim: &Sim,
    ip: std::net::IpAddr,
    session: Option<&str>,
    p: &Params,
    now: u64,
) -> Result<ApiKey, ApiError> {
    let key = if let Some(raw) = p.opt("apiKey") {
        let key = lookup_key(sim, raw, ip)?;
        let sig = p.required("signature")?;
        if !verify(&key, ws_api_payload(p).as_bytes(), sig) {
            return Err(ApiError::bad_signature());
        }
        key
    } else if let Some(k) = session {
        // A key revoked mid-session fails here, on its next request.
        lookup_key(sim, k, ip)?
    } else {
        return Err(ApiError::mandatory("apiKey"));
    };
    check_timestamp(p, now)?;
    Ok(key)
}

/// Handles one request frame; returns the reply frames.
pub async fn handle(sim: &Arc<Sim>, s: &mut Session, text: &str) -> Vec<String> {
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            let e = ApiError::new(400, -1000, "Invalid JSON request");
            return vec![reply(&Value::Null, 400, Err(e), json!([]))];
        }
    };
    let id = v.get("id").cloned().unwrap_or(Value::Null);
    let method = v.get("method").and_then(Value::as_str).unwrap_or("");
    let p = to_params(v.get("params"));
    let now = sim.now();
    let weight = match method {
        "session.logon" => 2,
        "order.place" => 0,
        _ => 1,
    };
    // Whose request it is, for the refusal counter (the key may be unknown or forged: counting is all).
    let key = p
        .opt("apiKey")
        .map(str::to_string)
        .or_else(|| s.api_key.clone());
    let mut usage = match lock(&sim.limits).charge_ip(s.ip, weight, now) {
        Ok(u) => u,
        Err((e, u)) => {
            let mut g = lock(&sim.limits);
            if let Some(k) = &key {
                g.note_refused(k);
            }
            let limits = g.ws_rate_limits(&u);
            return vec![reply(&id, e.http, Err(e), limits)];
        }
    };
    let result = run(sim, s, method, &p, now, &mut usage);
    let limits = {
        let mut g = lock(&sim.limits);
        if let (Err(e), Some(k)) = (&result, &key) {
            if e.http == 429 || e.http == 418 {
                g.note_refused(k);
            }
        }
        g.ws_rate_limits(&usage)
    };
    let delay = lock(&sim.faults).take_delay("/ws-fapi/v1");
    if let Some(ms) = delay {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    vec![reply(&id, 200, result, limits)]
}

fn session_json(s: &Session, now: u64) -> Value {
    json!({"apiKey": s.api_key, "authorizedSince": s.authorized_since, "connectedSince": s.connected_since,
           "returnRateLimits": true, "serverTime": now})
}

fn run(
    sim: &Arc<Sim>,
    s: &mut Session,
    method: &str,
    p: &Params,
    now: u64,
    usage: &mut Usage,
) -> Result<Value, ApiError> {
    match method {
        "session.logon" => {
            let key = logon_key(sim, s.ip, p, now)?;
            s.api_key = Some(key.api_key.clone());
            s.authorized_since = Some(now);
            sim.conns.set_api_key(s.conn_id, s.api_key.clone());
            Ok(session_json(s, now))
        }
        "session.status" => Ok(session_json(s, now)),
        "session.logout" => {
            s.api_key = None;
            s.authorized_since = None;
            sim.conns.set_api_key(s.conn_id, None);
            Ok(session_json(s, now))
        }
        "order.place" => {
            let key = authenticate(sim, s, p, now)?;
            permit(&key, Perm::Trade)?;
            match lock(&sim.limits).charge_order(s.ip, &key.account, now, *usage) {
                Ok(u) => *usage = u,
                Err((e, u)) => {
                    *usage = u;
                    return Err(e);
                }
            }
            place_order(sim, p, &key.account, now)
        }
        "order.cancel" => {
            let key = authenticate(sim, s, p, now)?;
            permit(&key, Perm::Trade)?;
            let mut ex = lock(&sim.ex);
            let sym = symbol_param(p, &ex.specs)?.symbol.clone();
            let r = order_ref(p)?;
            ex.cancel(&key.account, &sym, &r, now)
                .map(|o| o.to_json(false))
        }
        "order.status" => {
            let key = authenticate(sim, s, p, now)?;
            permit(&key, Perm::Read)?;
            let ex = lock(&sim.ex);
            let sym = symbol_param(p, &ex.specs)?.symbol.clone();
            let r = order_ref(p)?;
            ex.find(&key.account, &sym, &r)
                .map(|o| o.to_json(true))
                .ok_or_else(ApiError::no_such_order)
        }
        _ => Err(ApiError::new(
            400,
            -1000,
            format!("Unknown method '{method}'."),
        )),
    }
}

/// The unsolicited message a logged-on session gets when its key is revoked.
pub fn revoked_push() -> String {
    let e = ApiError::key_rejected();
    obj(&[
        ("id", "null".into()),
        ("status", js(401)),
        ("error", obj(&[("code", js(e.code)), ("msg", js(&e.msg))])),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::auth::hmac_hex;
    use super::super::keys::{KeyStore, KeysFile};
    use super::super::matching::Exchange;
    use super::super::ratelimit::{Limits, RateLimiter};
    use super::super::server::SimConfig;
    use super::super::symbols::SymbolSpec;
    use super::*;
    use aegis_shared::num::Notional;

    const KEY: &str = "RateRateRateRateRateRateRateRateRateRateRateRateRateRateRateRate";
    const SECRET: &str = "rate-secret";

    fn sim(limits: Limits) -> Arc<Sim> {
        let text =
            json!({"keys": [{"api_key": KEY, "account": "alice", "secret": SECRET}]}).to_string();
        let keys = KeyStore::from_entries(KeysFile::parse(&text).unwrap().keys, 0).unwrap();
        let ex = Exchange::new(SymbolSpec::defaults(), Notional::from_int(10_000));
        Arc::new(Sim::new(
            ex,
            keys,
            RateLimiter::new(limits),
            &SimConfig::default(),
        ))
    }

    /// A signed `order.place` (quantity 0: refused by the matching engine, but counted like Binance does).
    fn order(sim: &Sim, id: u64) -> String {
        let ts = sim.now().to_string();
        let mut params = vec![
            ("apiKey", KEY),
            ("quantity", "0"),
            ("side", "BUY"),
            ("symbol", "BTCUSDT"),
            ("timestamp", ts.as_str()),
            ("type", "MARKET"),
        ];
        let payload = ws_api_payload(&Params::from_pairs(
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        let sig = hmac_hex(SECRET, payload.as_bytes());
        params.push(("signature", sig.as_str()));
        let p: serde_json::Map<String, Value> = params
            .into_iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({"id": id, "method": "order.place", "params": p}).to_string()
    }

    #[test]
    fn orders_report_real_counts_and_refusals_are_counted_per_key() {
        let sim = sim(Limits {
            orders_per_10s: 2,
            ban_after_429s: 100,
            ..Limits::default()
        });
        let mut s = Session {
            conn_id: 1,
            ip: "127.0.0.1".parse().unwrap(),
            api_key: None,
            authorized_since: None,
            connected_since: 0,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut send = |id| -> Value {
            let out = rt.block_on(handle(&sim, &mut s, &order(&sim, id)));
            serde_json::from_str(&out[0]).unwrap()
        };
        let ten_s = |v: &Value| {
            v["rateLimits"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["rateLimitType"] == "ORDERS" && l["intervalNum"] == 10)
                .map(|l| (l["count"].as_u64().unwrap(), l["limit"].as_u64().unwrap()))
        };
        // Two accepted requests: the counts go up (a 10 s window may roll between them; never past 2).
        let a = send(1);
        assert_ne!(a["status"], 429, "{a}");
        assert!(matches!(ten_s(&a), Some((1, 2))), "{a}");
        let b = send(2);
        assert_ne!(b["status"], 429, "{b}");
        let (n, _) = ten_s(&b).unwrap();
        assert!((1..=2).contains(&n), "{b}");
        assert_eq!(lock(&sim.limits).refused().get(KEY), None);
        // Over the limit (unless a window just rolled): a 429, counted against the key.
        let mut refused = 0;
        for id in 3..6 {
            if send(id)["status"] == 429 {
                refused += 1;
            }
        }
        assert!(refused >= 1);
        assert_eq!(lock(&sim.limits).refused().get(KEY), Some(&refused));
        lock(&sim.limits).reset();
        assert!(lock(&sim.limits).refused().is_empty());
    }
}
