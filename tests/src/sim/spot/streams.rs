//! Spot market streams under `/spot`: `/spot/ws/<stream>[/<stream>…]` (raw payloads), `/spot/ws` (SUBSCRIBE
//! later) and `/spot/stream?streams=a/b` (combined, `{"stream":…,"data":…}`). Streams: `<symbol>@bookTicker`
//! (spot's: no `e`/`E`/`T`), `<symbol>@trade`, `<symbol>@aggTrade` (with spot's `"M":true`) and `<symbol>@depth`
//! (diffs of the top of book). They carry the spot book's changes: admin price moves and fills.

use super::super::conns::{ConnKind, Ctrl};
use super::super::Sim;
use super::matching::SpotStreamMsg;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::broadcast;

/// `?streams=`.
#[derive(Debug, Deserialize)]
pub struct StreamsQuery {
    streams: Option<String>,
}

fn names(list: &str) -> BTreeSet<String> {
    list.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `/spot/ws/<streams>`.
pub async fn raw(
    State(sim): State<Arc<Sim>>,
    Path(rest): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    let path = format!("/spot/ws/{rest}");
    ws.on_upgrade(move |s| serve(sim, s, path, false, names(&rest)))
}

/// `/spot/ws`.
pub async fn bare(State(sim): State<Arc<Sim>>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |s| serve(sim, s, "/spot/ws".into(), false, BTreeSet::new()))
}

/// `/spot/stream?streams=…`.
pub async fn combined(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<StreamsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let s = q.streams.unwrap_or_default();
    let path = format!("/spot/stream?streams={s}");
    ws.on_upgrade(move |sock| serve(sim, sock, path, true, names(&s)))
}

/// SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS.
fn control(subs: &mut BTreeSet<String>, text: &str) -> Option<String> {
    let v: Value = serde_json::from_str(text).ok()?;
    let id = v.get("id").cloned().unwrap_or(Value::Null);
    let params: Vec<String> = v
        .get("params")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let result = match v.get("method").and_then(Value::as_str)? {
        "SUBSCRIBE" => {
            subs.extend(params);
            Value::Null
        }
        "UNSUBSCRIBE" => {
            for p in params {
                subs.remove(&p);
            }
            Value::Null
        }
        "LIST_SUBSCRIPTIONS" => json!(subs.iter().collect::<Vec<_>>()),
        _ => {
            return Some(
                json!({"error": {"code": 1, "msg": "Invalid request"}, "id": id}).to_string(),
            )
        }
    };
    Some(json!({"result": result, "id": id}).to_string())
}

fn render(combined: bool, m: &SpotStreamMsg) -> String {
    if combined {
        format!("{{\"stream\":\"{}\",\"data\":{}}}", m.stream, m.data)
    } else {
        m.data.to_string()
    }
}

async fn serve(
    sim: Arc<Sim>,
    mut ws: WebSocket,
    path: String,
    combined: bool,
    mut subs: BTreeSet<String>,
) {
    let (id, mut ctrl) = sim.conns.register(ConnKind::Market, &path, None, sim.now());
    let mut rx = super::super::lock(&sim.spot.ex).market_tx.subscribe();
    loop {
        let out = tokio::select! {
            c = ctrl.recv() => match c {
                None | Some(Ctrl::Drop) | Some(Ctrl::Close(..)) => break,
                Some(Ctrl::Send(t)) => Some(t),
                Some(_) => None,
            },
            m = ws.recv() => match m {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(Message::Text(t))) => control(&mut subs, t.as_str()),
                Some(Ok(_)) => None,
            },
            r = rx.recv() => match r {
                Ok(m) if subs.contains(&m.stream) => Some(render(combined, &m)),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => None,
                Err(broadcast::error::RecvError::Closed) => break,
            },
        };
        if let Some(t) = out {
            if ws.send(Message::Text(t.into())).await.is_err() {
                break;
            }
        }
    }
    sim.conns.unregister(id, sim.now());
}
