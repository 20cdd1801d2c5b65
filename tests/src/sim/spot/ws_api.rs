//! The spot WebSocket API on `/ws-api/v3`: `session.logon` (Ed25519 only), `session.status`, `session.logout`,
//! `order.place`, `order.cancel`, `order.cancelReplace`, `order.status`, `openOrders.status`, `account.status`, and user data the only
//! way spot has it now: `userDataStream.subscribe` (on a logged-on session) or
//! `userDataStream.subscribe.signature` (a signed request, any session), `userDataStream.unsubscribe`.
//!
//! Events arrive as `{"subscriptionId":N,"event":{...}}`. A subscription ends with an `eventStreamTerminated`
//! event: on unsubscribe, on `session.logout` (only the subscriptions made with `userDataStream.subscribe`; a
//! `.signature` one survives a logout, as Binance documents), and when the admin API terminates an account's
//! streams. The connection registers with the futures side's registry, so its drop/close/malformed faults reach
//! it too.

use super::super::auth::{check_timestamp, verify, ws_api_payload, Params};
use super::super::conns::{ConnKind, Ctrl};
use super::super::error::ApiError;
use super::super::http::lookup_key;
use super::super::keys::ApiKey;
use super::super::ratelimit::Usage;
use super::super::{lock, Sim};
use super::rest::{
    account_json, cancel_order, cancel_replace, open_orders, permit_spot, place_order, query_order,
};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

/// One user data subscription of a connection.
struct Sub {
    id: u64,
    account: String,
    /// Made by `userDataStream.subscribe` (ends with the logon).
    by_logon: bool,
    forward: JoinHandle<()>,
}

/// A spot WebSocket API connection's state.
struct Session {
    ip: IpAddr,
    api_key: Option<String>,
    authorized_since: Option<u64>,
    connected_since: u64,
    subs: Vec<Sub>,
    next_sub: u64,
    events_tx: mpsc::UnboundedSender<String>,
}

/// `/ws-api/v3`.
pub async fn upgrade(
    State(sim): State<Arc<Sim>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.on_upgrade(move |socket| serve(sim, socket, addr.ip()))
}

fn wrap(sub: u64, event: &str) -> String {
    format!("{{\"subscriptionId\":{sub},\"event\":{event}}}")
}

fn terminated(sub: u64, now: u64) -> String {
    wrap(
        sub,
        &json!({"e": "eventStreamTerminated", "E": now}).to_string(),
    )
}

impl Session {
    fn subscribe(&mut self, sim: &Sim, account: &str, by_logon: bool) -> Result<u64, ApiError> {
        if self.subs.iter().any(|s| s.account == account) {
            // One subscription per account and connection.
            return Err(ApiError::new(
                400,
                -2035,
                "User Data Stream subscription already active.",
            ));
        }
        let id = self.next_sub;
        self.next_sub += 1;
        let mut rx: broadcast::Receiver<Arc<str>> =
            lock(&sim.spot.ex).account(account).events.subscribe();
        let tx = self.events_tx.clone();
        let forward = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) => {
                        if tx.send(wrap(id, &e)).is_err() {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        self.subs.push(Sub {
            id,
            account: account.to_string(),
            by_logon,
            forward,
        });
        Ok(id)
    }

    /// Ends the subscriptions `pick` selects; returns their `eventStreamTerminated` frames.
    fn end_subs(&mut self, now: u64, pick: impl Fn(&Sub) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        self.subs.retain(|s| {
            if pick(s) {
                s.forward.abort();
                out.push(terminated(s.id, now));
                false
            } else {
                true
            }
        });
        out
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for s in &self.subs {
            s.forward.abort();
        }
    }
}

async fn serve(sim: Arc<Sim>, mut ws: WebSocket, ip: IpAddr) {
    let (id, mut ctrl) = sim
        .conns
        .register(ConnKind::Api, "/ws-api/v3", None, sim.now());
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let mut terminate = sim.spot.terminate_tx.subscribe();
    let mut s = Session {
        ip,
        api_key: None,
        authorized_since: None,
        connected_since: sim.now(),
        subs: Vec::new(),
        next_sub: 0,
        events_tx,
    };
    loop {
        let out: Vec<String> = tokio::select! {
            c = ctrl.recv() => match c {
                None | Some(Ctrl::Drop) => break,
                Some(Ctrl::Send(t)) => vec![t],
                Some(Ctrl::Close(code, reason)) => {
                    let _ = ws.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                    break;
                }
                Some(Ctrl::Stall(ms)) => {
                    tokio::time::sleep(std::time::Duration::from_millis(ms.unwrap_or(60_000))).await;
                    vec![]
                }
                Some(Ctrl::Unstall) => vec![],
            },
            m = ws.recv() => match m {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(Message::Text(t))) => handle(&sim, &mut s, t.as_str()).await,
                Some(Ok(_)) => vec![],
            },
            e = events_rx.recv() => match e {
                Some(t) => vec![t],
                None => vec![],
            },
            a = terminate.recv() => match a {
                Ok(account) => s.end_subs(sim.now(), |x| x.account == account),
                Err(_) => vec![],
            },
        };
        let mut closed = false;
        for t in out {
            if ws.send(Message::Text(t.into())).await.is_err() {
                closed = true;
                break;
            }
        }
        if closed {
            break;
        }
    }
    sim.conns.unregister(id, sim.now());
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

fn reply(id: &Value, body: Result<Value, ApiError>, limits: Value) -> String {
    match body {
        Ok(r) => json!({"id": id, "status": 200, "result": r, "rateLimits": limits}).to_string(),
        Err(e) => {
            json!({"id": id, "status": e.http, "error": e.body(), "rateLimits": limits}).to_string()
        }
    }
}

/// A request's key: its own signature, or the logged-on session's (as on the futures WebSocket API).
fn authenticate(sim: &Sim, s: &Session, p: &Params, now: u64) -> Result<ApiKey, ApiError> {
    super::super::ws_api::authenticate_ws(sim, s.ip, s.api_key.as_deref(), p, now)
}

fn session_json(s: &Session, now: u64) -> Value {
    json!({"apiKey": s.api_key, "authorizedSince": s.authorized_since, "connectedSince": s.connected_since,
           "returnRateLimits": true, "serverTime": now, "userDataStream": !s.subs.is_empty()})
}

fn rate_limits(sim: &Sim, u: &Usage) -> Value {
    let l = lock(&sim.spot.limits).limits;
    let mut v = vec![
        json!({"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                            "limit": l.weight_per_minute, "count": u.weight_1m}),
    ];
    if let Some(n) = u.orders_10s {
        v.push(
            json!({"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                      "limit": l.orders_per_10s, "count": n}),
        );
    }
    Value::Array(v)
}

async fn handle(sim: &Arc<Sim>, s: &mut Session, text: &str) -> Vec<String> {
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            let e = ApiError::new(400, -1000, "Invalid JSON request");
            return vec![reply(&Value::Null, Err(e), json!([]))];
        }
    };
    let id = v.get("id").cloned().unwrap_or(Value::Null);
    let method = v.get("method").and_then(Value::as_str).unwrap_or("");
    let p = to_params(v.get("params"));
    let now = sim.now();
    let weight = match method {
        "order.place" => 1,
        "session.logon"
        | "userDataStream.subscribe"
        | "userDataStream.subscribe.signature"
        | "userDataStream.unsubscribe" => 2,
        "order.status" => 4,
        "openOrders.status" => 6,
        "account.status" => 20,
        _ => 1,
    };
    let mut usage = match lock(&sim.spot.limits).charge_ip(s.ip, weight, now) {
        Ok(u) => u,
        Err((e, u)) => return vec![reply(&id, Err(e), rate_limits(sim, &u))],
    };
    let mut pushes = Vec::new();
    let result = run(sim, s, method, &p, now, &mut usage, &mut pushes);
    let delay = lock(&sim.faults).take_delay("/ws-api/v3");
    if let Some(ms) = delay {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let mut out = vec![reply(&id, result, rate_limits(sim, &usage))];
    out.extend(pushes);
    out
}

fn run(
    sim: &Arc<Sim>,
    s: &mut Session,
    method: &str,
    p: &Params,
    now: u64,
    usage: &mut Usage,
    pushes: &mut Vec<String>,
) -> Result<Value, ApiError> {
    match method {
        "session.logon" => {
            let key = super::super::ws_api::logon_key(sim, s.ip, p, now)?;
            s.api_key = Some(key.api_key.clone());
            s.authorized_since = Some(now);
            Ok(session_json(s, now))
        }
        "session.status" => Ok(session_json(s, now)),
        "session.logout" => {
            pushes.extend(s.end_subs(now, |x| x.by_logon));
            s.api_key = None;
            s.authorized_since = None;
            Ok(session_json(s, now))
        }
        "userDataStream.subscribe" => {
            let k = s.api_key.clone().ok_or_else(|| {
                ApiError::new(
                    401,
                    -2015,
                    "Invalid API-key, IP, or permissions for action.",
                )
            })?;
            let key = lookup_key(sim, &k, s.ip)?;
            let sub = s.subscribe(sim, &key.account, true)?;
            Ok(json!({"subscriptionId": sub}))
        }
        "userDataStream.subscribe.signature" => {
            let raw = p.required("apiKey")?;
            let key = lookup_key(sim, raw, s.ip)?;
            let sig = p.required("signature")?;
            if !verify(&key, ws_api_payload(p).as_bytes(), sig) {
                return Err(ApiError::bad_signature());
            }
            check_timestamp(p, now)?;
            let sub = s.subscribe(sim, &key.account, false)?;
            Ok(json!({"subscriptionId": sub}))
        }
        "userDataStream.unsubscribe" => {
            let only = p.opt_u64("subscriptionId")?;
            if let Some(id) = only {
                if !s.subs.iter().any(|x| x.id == id) {
                    return Err(ApiError::new(400, -2036, "Subscription not found."));
                }
            }
            pushes.extend(s.end_subs(now, |x| only.is_none_or(|i| x.id == i)));
            Ok(json!({}))
        }
        "order.place" | "order.cancelReplace" => {
            let key = authenticate(sim, s, p, now)?;
            permit_spot(&key, true)?;
            // A cancel-replace counts one order, attempted or not.
            match lock(&sim.spot.limits).charge_order(s.ip, &key.account, now, *usage) {
                Ok(u) => *usage = u,
                Err((e, u)) => {
                    *usage = u;
                    return Err(e);
                }
            }
            if method == "order.place" {
                place_order(sim, p, &key.account, now)
            } else {
                cancel_replace(sim, p, &key.account, now)
            }
        }
        "order.cancel" => {
            let key = authenticate(sim, s, p, now)?;
            permit_spot(&key, true)?;
            cancel_order(&mut lock(&sim.spot.ex), p, &key.account, now)
        }
        "order.status" => {
            let key = authenticate(sim, s, p, now)?;
            permit_spot(&key, false)?;
            query_order(&mut lock(&sim.spot.ex), p, &key.account)
        }
        "openOrders.status" => {
            let key = authenticate(sim, s, p, now)?;
            permit_spot(&key, false)?;
            open_orders(&mut lock(&sim.spot.ex), p, &key.account)
        }
        "account.status" => {
            let key = authenticate(sim, s, p, now)?;
            permit_spot(&key, false)?;
            Ok(account_json(&mut lock(&sim.spot.ex), p, &key, now))
        }
        _ => Err(ApiError::new(
            400,
            -1000,
            format!("Unknown method '{method}'."),
        )),
    }
}
