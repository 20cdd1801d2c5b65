//! Open WebSocket connections: a registry the admin API uses to inject faults (drop, stall, malformed frames,
//! early 24-hour disconnect), and the one connection loop every stream kind runs.

use super::streams::MarketSubs;
use super::ws_api::Session;
use super::{lock, Sim};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

/// Which kind of connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnKind {
    /// Market streams.
    Market,
    /// User data stream.
    User,
    /// WebSocket API.
    Api,
}

/// Which connections a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Every connection.
    #[default]
    All,
    /// Market streams.
    Market,
    /// User data streams.
    User,
    /// WebSocket API sessions.
    Api,
}

impl Target {
    fn matches(self, k: ConnKind) -> bool {
        matches!(
            (self, k),
            (Target::All, _)
                | (Target::Market, ConnKind::Market)
                | (Target::User, ConnKind::User)
                | (Target::Api, ConnKind::Api)
        )
    }
}

/// A command to a connection's task.
#[derive(Debug, Clone)]
pub enum Ctrl {
    /// Cut the TCP connection without a close frame.
    Drop,
    /// Stop reading, writing and answering pings for this long (None: until `Unstall` or `Drop`).
    Stall(Option<u64>),
    /// End a stall.
    Unstall,
    /// Send this text frame as is (malformed frames, server pushes).
    Send(String),
    /// Send a close frame and end (24-hour disconnect, expired listenKey).
    Close(u16, String),
}

#[derive(Debug)]
struct Entry {
    kind: ConnKind,
    path: String,
    listen_key: Option<String>,
    api_key: Option<String>,
    opened_ms: u64,
    tx: mpsc::UnboundedSender<Ctrl>,
}

/// One connection's lifetime, for tests that check ordering (the feed's rollover opens the new connection
/// before closing the old). `opened`/`closed` are positions in one sequence of open and close events.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifetime {
    /// Connection id.
    pub id: u64,
    /// Kind.
    pub kind: ConnKind,
    /// Path with query.
    pub path: String,
    /// Sequence number of the open event.
    pub opened: u64,
    /// Sequence number of the close event (None: still open).
    pub closed: Option<u64>,
    /// Simulator time of the open (ms).
    pub opened_ms: u64,
    /// Simulator time of the close (ms).
    pub closed_ms: Option<u64>,
}

/// Every connection ever opened, in order, with one event counter for opens and closes.
#[derive(Debug, Default)]
struct History {
    seq: u64,
    all: Vec<Lifetime>,
}

/// The registry.
#[derive(Debug, Default)]
pub struct Conns {
    next: AtomicU64,
    inner: Mutex<HashMap<u64, Entry>>,
    history: Mutex<History>,
}

impl Conns {
    /// Registers a connection; returns its id and command receiver.
    pub fn register(
        &self,
        kind: ConnKind,
        path: &str,
        listen_key: Option<String>,
        now: u64,
    ) -> (u64, mpsc::UnboundedReceiver<Ctrl>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        {
            let mut h = lock(&self.history);
            h.seq += 1;
            let opened = h.seq;
            h.all.push(Lifetime {
                id,
                kind,
                path: path.to_string(),
                opened,
                closed: None,
                opened_ms: now,
                closed_ms: None,
            });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.inner).insert(
            id,
            Entry {
                kind,
                path: path.to_string(),
                listen_key,
                api_key: None,
                opened_ms: now,
                tx,
            },
        );
        (id, rx)
    }
    /// Forgets a connection (`now`: simulator time, for the history).
    pub fn unregister(&self, id: u64, now: u64) {
        lock(&self.inner).remove(&id);
        let mut h = lock(&self.history);
        h.seq += 1;
        let seq = h.seq;
        if let Some(l) = h.all.iter_mut().rev().find(|l| l.id == id) {
            l.closed = Some(seq);
            l.closed_ms = Some(now);
        }
    }
    /// Every connection opened so far (open and closed), oldest first.
    pub fn history(&self) -> Vec<Lifetime> {
        lock(&self.history).all.clone()
    }
    /// Records a listenKey subscribed on a market connection (so expiry notices reach it).
    pub fn set_listen_key(&self, id: u64, key: String) {
        if let Some(e) = lock(&self.inner).get_mut(&id) {
            e.listen_key = Some(key);
        }
    }
    /// Records the key a WS-API session logged on with.
    pub fn set_api_key(&self, id: u64, key: Option<String>) {
        if let Some(e) = lock(&self.inner).get_mut(&id) {
            e.api_key = key;
        }
    }
    /// Sends a command to every connection `pick` selects; returns how many took it (a closing one may not).
    fn send_where(&self, c: Ctrl, pick: impl Fn(&Entry) -> bool) -> usize {
        let g = lock(&self.inner);
        g.values()
            .filter(|e| pick(e))
            .filter(|e| e.tx.send(c.clone()).is_ok())
            .count()
    }
    /// Sends a command to every matching connection; returns how many.
    pub fn send(&self, target: Target, c: Ctrl) -> usize {
        self.send_where(c, |e| target.matches(e.kind))
    }
    /// Sends a command to the user streams of a listenKey.
    pub fn send_listen_key(&self, listen_key: &str, c: Ctrl) -> usize {
        self.send_where(c, |e| e.listen_key.as_deref() == Some(listen_key))
    }
    /// Sends a command to WS-API sessions logged on with a key.
    pub fn send_api_key(&self, api_key: &str, c: Ctrl) -> usize {
        self.send_where(c, |e| e.api_key.as_deref() == Some(api_key))
    }
    /// Number of open connections of a kind.
    pub fn count(&self, target: Target) -> usize {
        lock(&self.inner)
            .values()
            .filter(|e| target.matches(e.kind))
            .count()
    }
    /// Admin listing.
    pub fn list(&self) -> Value {
        let g = lock(&self.inner);
        let mut v: Vec<(u64, Value)> = g
            .iter()
            .map(|(id, e)| {
                (
                    *id,
                    json!({"id": id, "kind": e.kind, "path": e.path, "listenKey": e.listen_key,
                           "loggedOn": e.api_key.is_some(), "openedMs": e.opened_ms}),
                )
            })
            .collect();
        v.sort_by_key(|(id, _)| *id);
        Value::Array(v.into_iter().map(|(_, x)| x).collect())
    }
}

/// What a connection does besides obeying commands.
pub enum Role {
    /// Market streams with their subscriptions.
    Market(MarketSubs),
    /// A user data stream of an account.
    User {
        /// The listenKey it was opened with.
        listen_key: String,
        /// The account's event channel.
        events: broadcast::Receiver<Arc<str>>,
    },
    /// A user data stream whose channel the connection loop holds.
    UserActive,
    /// A WebSocket API session.
    Api(Session),
}

impl Role {
    fn kind(&self) -> ConnKind {
        match self {
            Role::Market(_) => ConnKind::Market,
            Role::User { .. } | Role::UserActive => ConnKind::User,
            Role::Api(_) => ConnKind::Api,
        }
    }
}

async fn send_text(ws: &mut WebSocket, t: String) -> bool {
    ws.send(Message::Text(t.into())).await.is_ok()
}

/// Runs a connection until it closes, is dropped, or reaches its lifetime.
pub async fn serve(sim: Arc<Sim>, mut ws: WebSocket, path: String, mut role: Role) {
    let listen_key = match &role {
        Role::User { listen_key, .. } => Some(listen_key.clone()),
        _ => None,
    };
    let (id, mut ctrl) = sim
        .conns
        .register(role.kind(), &path, listen_key, sim.now());
    if let Role::Api(s) = &mut role {
        s.conn_id = id;
    }
    // User events: from a user stream, or from a listenKey SUBSCRIBEd on a market connection (that is how
    // binance-futures-connector's `user_data()` works).
    let (mut role, mut user_rx) = match role {
        Role::User { events, .. } => (Role::UserActive, Some(events)),
        other => (other, None),
    };
    let opened = Instant::now();
    let mut market_rx = sim.market_tx.subscribe();
    let ping_every = Duration::from_millis(
        sim.settings
            .ping_interval_ms
            .load(Ordering::Relaxed)
            .max(10),
    );
    let mut ping = tokio::time::interval_at(opened + ping_every, ping_every);
    'conn: loop {
        let lifetime = sim.settings.ws_lifetime_ms.load(Ordering::Relaxed);
        let deadline = opened + Duration::from_millis(lifetime);
        tokio::select! {
            // In this order: faults first, so a stall or drop the admin API has queued acts before any event
            // queued after it (a test stalls the stream, then makes a fill that must not be delivered); then the
            // client's frames, user events and the timers, each ready only now and then; the market stream last.
            biased;
            c = ctrl.recv() => match c {
                None | Some(Ctrl::Drop) => break 'conn,
                Some(Ctrl::Unstall) => {}
                Some(Ctrl::Send(t)) => if !send_text(&mut ws, t).await { break 'conn },
                Some(Ctrl::Close(code, reason)) => {
                    let _ = ws.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                    break 'conn;
                }
                Some(Ctrl::Stall(ms)) => {
                    // Nothing is read or written while stalled: pings go unanswered and data stops.
                    let until = ms.map(|m| Instant::now() + Duration::from_millis(m));
                    loop {
                        let sleep = async {
                            match until {
                                Some(u) => tokio::time::sleep_until(u).await,
                                None => std::future::pending().await,
                            }
                        };
                        tokio::select! {
                            _ = sleep => break,
                            c = ctrl.recv() => match c {
                                None | Some(Ctrl::Drop) => break 'conn,
                                Some(Ctrl::Unstall) => break,
                                Some(_) => {}
                            }
                        }
                    }
                    // Whatever piled up meanwhile is stale; a stalled server does not replay it.
                    market_rx = market_rx.resubscribe();
                    if let Some(rx) = &mut user_rx {
                        *rx = rx.resubscribe();
                    }
                }
            },
            m = ws.recv() => match m {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break 'conn,
                Some(Ok(Message::Text(t))) => {
                    let replies = match &mut role {
                        Role::Market(subs) => {
                            let (replies, keys) = subs.handle_text(t.as_str());
                            for k in keys {
                                let account = lock(&sim.listen_keys).account_of(&k, sim.now());
                                if let Some(a) = account {
                                    user_rx = Some(lock(&sim.ex).account(&a).events.subscribe());
                                    sim.conns.set_listen_key(id, k);
                                }
                            }
                            replies
                        }
                        Role::User { .. } | Role::UserActive => MarketSubs::user_stream_reply(t.as_str()),
                        Role::Api(session) => {
                            sim.probe.api_read(t.as_str());
                            super::ws_api::handle(&sim, session, t.as_str()).await
                        }
                    };
                    for r in replies {
                        if !send_text(&mut ws, r).await { break 'conn }
                    }
                }
                Some(Ok(_)) => {}
            },
            r = async {
                match &mut user_rx {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => match r {
                Ok(t) => if !send_text(&mut ws, t.to_string()).await { break 'conn },
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break 'conn,
            },
            _ = ping.tick() => {
                if ws.send(Message::Ping(Default::default())).await.is_err() { break 'conn }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let _ = ws.send(Message::Close(Some(CloseFrame { code: 1000, reason: "24h connection limit".into() }))).await;
                break 'conn;
            }
            // Last: the one source that can be ready all the time (10k msg/s) must not starve the others.
            r = market_rx.recv(), if matches!(role, Role::Market(_)) => match r {
                Ok(msg) => {
                    if let Role::Market(subs) = &role {
                        if let Some(t) = subs.render(&msg) {
                            if !send_text(&mut ws, t).await { break 'conn }
                            sim.probe.market_written(&msg.stream);
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break 'conn,
            },
        }
    }
    sim.conns.unregister(id, sim.now());
}
