//! The old order gateway, kept for the A/B measurement only (`AEGIS_ORDER_PATH=gateway`, and the
//! `gateway_hop` bench): order entry now runs on the engine thread (`aegis_engine::venue::binance::entry`, with
//! the REST side in [`super::rest_worker`]). This is a dedicated thread (`aegis-orders`, not the engine's) that takes approved orders from the engine's bounded queue, signs them with
//! `aegis_engine::sign::OrderEncoder` and sends them over the WebSocket API (`order.place` / `order.cancel`;
//! Ed25519 keys log the connection on with `session.logon` so orders carry no signature; HMAC keys sign each
//! request), falling back to REST `POST /fapi/v1/order` while the WebSocket is down.
//!
//! Answers go back to the engine as [`Inbound`] messages. The rules:
//! - Unknown outcome (5xx, no answer within [`ANSWER_TIMEOUT`], connection lost with requests in flight) →
//!   the order is queried by client id, over the WebSocket API (`order.status`) and over REST
//!   (`GET /fapi/v1/order`, on the control runtime), retried with backoff ([`QUERY_BACKOFF_MIN`] doubling to
//!   [`QUERY_BACKOFF_MAX`]). Found → acknowledged (adopted); not found (-2013) from both → rejected (settled:
//!   it was never placed); still unsettled after [`UNKNOWN_DEADLINE`] → rejected (-1007) and reconciliation
//!   compares with the exchange (it adopts the order if it exists after all). **Never a blind resend**, and
//!   nothing waits for it: this is a table of timers the loop looks at, so other orders, cancels, exits and
//!   the kill switch's flatten go out meanwhile.
//! - Nothing on this thread waits for REST: the fallback placement, REST cancels, status queries and the
//!   clock resync run as tasks on the control runtime and report back on a channel.
//! - -1021 (clock) → one clock resync and one resend of that order (it was refused, so no duplicate).
//! - -2014/-2015 → the venue goes read-only, entries halt (`KeyRejected`), an alert is raised; no retry.
//! - 429/418 → the order is rejected, entries halt (`RateLimited`) until `Retry-After` has passed.
//! - Before that: an answer whose `rateLimits` show an `ORDERS` or `REQUEST_WEIGHT` count at 80 % of its limit
//!   halts entries (`RateLimited`) until that window has ended.

use super::rest::{wall_ms, RestClient, RestError};
use aegis_engine::net::ws;
use aegis_engine::sign::{
    ws_api, CancelRef, CancelRequest, OrderEncoder, OrderRequest as WireOrder, RespType, Signer,
    WirePrecision,
};
use aegis_engine::venue::binance::answer::{self, Answer, LimitUse};
use aegis_engine::venue::binance::{GatewayEnds, Inbound, Outbound};
use aegis_engine::venue::OrderRequest;
use aegis_shared::event::{AlertKind, HaltReason};
use aegis_shared::{ClientOrderId, Symbol};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// An order without an answer after this long has an unknown outcome.
pub const ANSWER_TIMEOUT: Duration = Duration::from_millis(2000);

/// Longest an order's outcome stays unknown. Then it is marked rejected (-1007) and reconciliation compares
/// with the exchange, which adopts the order if it exists after all: never PendingNew forever.
pub const UNKNOWN_DEADLINE: Duration = Duration::from_secs(10);

/// First wait between two rounds of status queries of an unknown order; doubled each round.
pub const QUERY_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// Longest wait between two rounds of status queries.
pub const QUERY_BACKOFF_MAX: Duration = Duration::from_millis(2000);

/// Longest the idle gateway waits for the engine's next order before it looks at the socket again. An order
/// wakes it at once (it waits on the queue itself); this only bounds how late an answer is read.
const IDLE_WAIT: Duration = Duration::from_micros(250);

/// Counters (for tests and the log).
#[derive(Debug, Default)]
pub struct GatewayStats {
    /// order.place / REST orders sent.
    pub placed: AtomicU64,
    /// Orders sent over REST (fallback).
    pub rest_fallback: AtomicU64,
    /// Orders whose outcome was unknown (each settled by status queries, or by its deadline).
    pub queried: AtomicU64,
    /// Clock resyncs after -1021.
    pub resyncs: AtomicU64,
}

/// How long a WebSocket-API 429/418 asks us to wait (the WebSocket API has no `Retry-After` header): the
/// error's `data.retryAfter` (epoch ms), else the ban's end from the message `IP banned until <ms>`; both are
/// server times, compared with `server_now_ms`.
fn ws_retry_after(a: &Answer<'_>, server_now_ms: u64) -> Option<Duration> {
    let until = a.retry_after_ms.or_else(|| answer::banned_until(a.msg))?;
    Some(Duration::from_millis(
        until.saturating_sub(server_now_ms).max(1000),
    ))
}

/// `orderId` of a REST answer (0 when absent, as an acknowledgement without one is still one).
fn order_id(v: &Value) -> u64 {
    v.get("orderId").and_then(Value::as_u64).unwrap_or(0)
}

/// Share of a rate limit at which new entries halt until its window ends: the bot stops itself before Binance
/// answers 429 (and, repeated, bans the IP).
const SLOW_DOWN_AT_PERCENT: u64 = 80;

/// Margin past a window's end before entries resume: our offset to the server clock is an estimate.
const WINDOW_MARGIN: Duration = Duration::from_millis(100);

fn near(l: &LimitUse) -> bool {
    // A zero limit is a venue that refuses everything; its 429 path handles it.
    l.limit > 0 && l.count * 100 >= l.limit * SLOW_DOWN_AT_PERCENT
}

/// Time left in the current window: Binance's windows are fixed on the server clock.
fn left(l: &LimitUse, server_now_ms: u64) -> Duration {
    Duration::from_millis(l.window_ms - server_now_ms % l.window_ms)
}

/// The limit at or past [`SLOW_DOWN_AT_PERCENT`] whose window ends last, with the time left in it.
fn limit_to_wait_for(a: &Answer<'_>, server_now_ms: u64) -> Option<(LimitUse, Duration)> {
    a.limits()
        .filter(near)
        .map(|l| (l, left(&l, server_now_ms)))
        .max_by_key(|(_, left)| *left)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Place(OrderRequest, bool),
    Cancel,
    Logon,
    /// `order.status` of an unknown order.
    Query,
}

/// An order whose outcome is unknown, and where its settling stands.
#[derive(Debug, Clone, Copy)]
struct Unknown {
    symbol: Symbol,
    since: Instant,
    /// When the next round of queries may go.
    next_at: Instant,
    rounds: u32,
    /// Id of the `order.status` in flight.
    ws_query: Option<u64>,
    /// A REST query is in flight.
    rest_query: bool,
    /// The WebSocket API said -2013 (no such order).
    ws_absent: bool,
    /// REST said -2013.
    rest_absent: bool,
}

/// What a REST task on the control runtime reports back to the gateway thread.
#[derive(Debug)]
enum RestDone {
    /// The fallback placement's answer.
    Placed {
        cid: ClientOrderId,
        req: OrderRequest,
        resent: bool,
        r: Result<Value, RestError>,
    },
    /// A status query's answer.
    Queried {
        cid: ClientOrderId,
        r: Result<Value, RestError>,
    },
    /// The clock is resynced after -1021: the order goes again (once).
    Resynced {
        cid: ClientOrderId,
        req: OrderRequest,
    },
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    cid: ClientOrderId,
    symbol: Symbol,
    sent: Instant,
    kind: Kind,
}

/// Handle of the running gateway.
#[derive(Debug)]
pub struct Gateway {
    /// Counters.
    pub stats: Arc<GatewayStats>,
    /// Key switches into the gateway thread (see [`super::keyswitch`]).
    pub switch: crossbeam_channel::Sender<SwitchRequest>,
    stop: Arc<AtomicBool>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl Gateway {
    /// Stops after the queue is drained and in-flight answers arrived (bounded by `budget`).
    pub fn stop(mut self, budget: Duration) {
        self.stop.store(true, Ordering::Release);
        let t = Instant::now();
        if let Some(j) = self.join.take() {
            while !j.is_finished() && t.elapsed() < budget {
                std::thread::sleep(Duration::from_millis(5));
            }
            if j.is_finished() {
                let _ = j.join();
            }
        }
    }
}

struct State {
    client: RestClient,
    rt: tokio::runtime::Handle,
    ends: GatewayEnds,
    encoder: OrderEncoder,
    precision: HashMap<Symbol, WirePrecision>,
    ws: Option<ws::Ws>,
    logged_on: bool,
    next_id: u64,
    pending: HashMap<u64, Pending>,
    read_only: bool,
    rate_halt_until: Option<Instant>,
    reconnect_at: Instant,
    connected_before: bool,
    slot: Arc<super::resync::Slot>,
    attempt: u32,
    stats: Arc<GatewayStats>,
    switch_rx: crossbeam_channel::Receiver<SwitchRequest>,
    unknowns: HashMap<ClientOrderId, Unknown>,
    rest_tx: crossbeam_channel::Sender<RestDone>,
    rest_rx: crossbeam_channel::Receiver<RestDone>,
    /// REST tasks started and not yet reported back.
    rest_in_flight: usize,
}

/// A key switch for the gateway thread: new credentials, how long in-flight orders of the old key may take to
/// be answered, and where to say how it went.
pub struct SwitchRequest {
    /// The new key (its parts are `Secret`-wrapped and print as `***`).
    pub creds: super::env::Credentials,
    /// Bound on waiting for answers to orders sent with the old key.
    pub drain_budget: Duration,
    /// The answer.
    pub reply: crossbeam_channel::Sender<Result<GatewaySwitched, String>>,
}

impl std::fmt::Debug for SwitchRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchRequest")
            .field("drain_budget", &self.drain_budget)
            .finish_non_exhaustive()
    }
}

/// What the gateway did in a key switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySwitched {
    /// Requests of the old key that were in flight when the switch began.
    pub in_flight: usize,
    /// Of those, how many had no answer within the budget and became unknown outcomes, settled by status
    /// queries by client id after the swap.
    pub queried: usize,
    /// The WebSocket API session after the switch (`logged on`, `connected`, `reconnecting`).
    pub ws_api: &'static str,
    /// Wall time of the swap (ms): nothing the gateway sends after it carries the old key.
    pub switched_at_ms: u64,
}

/// Starts the gateway thread. `precision` holds every traded symbol's tick/step.
pub fn start(
    client: RestClient,
    rt: tokio::runtime::Handle,
    ends: GatewayEnds,
    precision: HashMap<Symbol, WirePrecision>,
    slot: Arc<super::resync::Slot>,
) -> std::io::Result<Gateway> {
    let Some(creds) = client.credentials() else {
        return Err(std::io::Error::other("the order gateway needs a key"));
    };
    let stats = Arc::new(GatewayStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    // One switch at a time; the caller waits for the answer.
    let (switch, switch_rx) = crossbeam_channel::bounded(1);
    let (rest_tx, rest_rx) = crossbeam_channel::unbounded();
    let mut st = State {
        unknowns: HashMap::new(),
        rest_tx,
        rest_rx,
        rest_in_flight: 0,
        switch_rx,
        encoder: OrderEncoder::new(creds.signer.clone(), creds.api_key.clone(), 5000),
        client,
        rt,
        ends,
        precision,
        ws: None,
        logged_on: false,
        next_id: 1,
        pending: HashMap::new(),
        read_only: false,
        rate_halt_until: None,
        reconnect_at: Instant::now(),
        connected_before: false,
        slot,
        attempt: 0,
        stats: stats.clone(),
    };
    let s2 = stop.clone();
    let join = std::thread::Builder::new()
        .name("aegis-orders".into())
        .spawn(move || st.run(&s2))?;
    Ok(Gateway {
        stats,
        switch,
        stop,
        join: Some(join),
    })
}

impl State {
    fn send_in(&self, m: Inbound) {
        let _ = self.ends.inbound.send(m);
    }

    fn run(&mut self, stop: &AtomicBool) {
        let mut idle_since: Option<Instant> = None;
        loop {
            if stop.load(Ordering::Acquire) {
                // Drain: whatever the engine queued (shutdown cancels) and answers in flight, bounded.
                let t = *idle_since.get_or_insert_with(Instant::now);
                if (self.ends.outbound.is_empty()
                    && self.pending.is_empty()
                    && self.unknowns.is_empty()
                    && self.rest_in_flight == 0)
                    || t.elapsed() > Duration::from_secs(3)
                {
                    break;
                }
            }
            if self.ws.is_none() && Instant::now() >= self.reconnect_at {
                self.connect();
            }
            // Between two orders: a key switch is done before anything else is taken from the queue, so the
            // engine's orders wait in its bounded queue meanwhile (never dropped, never half-switched).
            if let Ok(req) = self.switch_rx.try_recv() {
                let r = self.switch_key(&req.creds, req.drain_budget);
                let _ = req.reply.send(r);
            }
            let mut busy = false;
            while let Ok(m) = self.ends.outbound.try_recv() {
                busy = true;
                self.outbound(m);
            }
            busy |= self.read_ws();
            busy |= self.rest_answers();
            self.check_timeouts();
            self.drive_unknowns();
            if let Some(t) = self.rate_halt_until {
                if Instant::now() >= t {
                    self.rate_halt_until = None;
                    tracing::info!("rate limit wait over: new entries may resume");
                    self.send_in(Inbound::Clear(HaltReason::RateLimited));
                }
            }
            if !busy {
                // Waiting on the queue, not sleeping: an order that arrives now is signed and written at once.
                // (A blocking socket read with a timeout here cost milliseconds per order: the kernel rounds
                // receive timeouts up to its tick.)
                if let Ok(m) = self.ends.outbound.recv_timeout(IDLE_WAIT) {
                    self.outbound(m);
                }
            }
        }
        if let Some(mut w) = self.ws.take() {
            let _ = w.close(None);
            let _ = w.flush();
        }
    }

    fn connect(&mut self) {
        match ws::connect(&self.client.endpoints.wsapi, Duration::from_secs(5)) {
            Ok(w) => {
                // Non-blocking from here on: reads return at once when there is nothing (the idle wait is on
                // the order queue), and a write the socket cannot take yet stays queued in the WebSocket.
                if let Err(e) = ws::set_nonblocking(&w) {
                    tracing::warn!(error = %e, "order entry: cannot make the WebSocket API socket non-blocking; using REST");
                    self.attempt = self.attempt.saturating_add(1);
                    self.reconnect_at = Instant::now() + Duration::from_secs(1);
                    return;
                }
                self.ws = Some(w);
                self.attempt = 0;
                self.logged_on = false;
                if self.connected_before {
                    // Answers lost with the old connection were queried; the rest is compared on the
                    // user-stream thread (this one must keep serving orders).
                    self.slot.wanted.store(true, Ordering::Release);
                }
                self.connected_before = true;
                if let Signer::Ed25519(ed) = self.encoder.signer().clone() {
                    let id = self.take_id();
                    let mut scratch = [0u8; 1024];
                    let mut out = [0u8; 1024];
                    if let Ok(n) = ws_api::encode_session_logon(
                        id,
                        self.encoder.api_key(),
                        &ed,
                        self.client.now_ms(),
                        &mut scratch,
                        &mut out,
                    ) {
                        let text = String::from_utf8_lossy(&out[..n]).into_owned();
                        if self.ws_send(text) {
                            self.pending.insert(
                                id,
                                Pending {
                                    cid: ClientOrderId::new("logon")
                                        .unwrap_or_else(|_| unreachable!("valid literal")),
                                    symbol: Symbol::new("LOGON")
                                        .unwrap_or_else(|_| unreachable!("valid literal")),
                                    sent: Instant::now(),
                                    kind: Kind::Logon,
                                },
                            );
                        }
                    }
                }
                tracing::info!(
                    "order entry: WebSocket API connected ({})",
                    ws::redact(&self.client.endpoints.wsapi)
                );
            }
            Err(e) => {
                self.attempt = self.attempt.saturating_add(1);
                let ms = (100u64 << self.attempt.min(6)).min(5000);
                self.reconnect_at = Instant::now() + Duration::from_millis(ms);
                if self.attempt <= 3 {
                    tracing::warn!(error = %e, "order entry: WebSocket API unavailable; using REST until it is back");
                }
            }
        }
    }

    /// The key switch (see [`super::keyswitch`]): settle what the old key sent, swap the encoder and the REST
    /// client's key together, and open a new WebSocket API session with the new key.
    fn switch_key(
        &mut self,
        creds: &super::env::Credentials,
        budget: Duration,
    ) -> Result<GatewaySwitched, String> {
        if self.read_only {
            return Err("the order gateway is read-only after Binance refused the old key: restart the bot with the new key".into());
        }
        let in_flight = self.pending.len();
        let t = Instant::now();
        // Answers to the old key's requests (no new order is taken meanwhile); late ones become status
        // queries through `check_timeouts`, as always.
        while !self.pending.is_empty() && t.elapsed() < budget {
            if !self.read_ws() {
                std::thread::sleep(Duration::from_micros(200));
            }
            self.check_timeouts();
        }
        let queried = self.pending.len();
        let left: Vec<u64> = self.pending.keys().copied().collect();
        for id in left {
            if let Some(p) = self.pending.remove(&id) {
                // Queried by client id (the keys are the same account's), never resent.
                match p.kind {
                    Kind::Query => self.query_failed(p.cid, true),
                    _ => self.unknown(p),
                }
            }
        }
        if self.read_only {
            return Err("Binance refused the old key while its orders were settled: the gateway is read-only; restart the bot with the new key".into());
        }
        // The swap: encoder and REST client together, on this thread, with nothing in flight.
        self.client.set_credentials(creds.clone());
        self.encoder = OrderEncoder::new(creds.signer.clone(), creds.api_key.clone(), 5000);
        let switched_at_ms = wall_ms();
        if let Some(mut w) = self.ws.take() {
            let _ = w.close(None);
            let _ = w.flush();
        }
        self.logged_on = false;
        // A fresh session, not a reconnect after a loss: nothing was in flight, so no comparison is needed for
        // it (the user data stream's switch runs one anyway).
        self.connected_before = false;
        self.connect();
        self.connected_before = true;
        // An Ed25519 key logs the new session on; wait for that answer (bounded) so the next order uses it.
        let t = Instant::now();
        while self.ws.is_some()
            && self.pending.values().any(|p| matches!(p.kind, Kind::Logon))
            && t.elapsed() < ANSWER_TIMEOUT
        {
            if !self.read_ws() {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        if self.read_only {
            return Err("Binance refused the new key's session.logon: the gateway is read-only; check the new key".into());
        }
        let ws_api = match (&self.ws, self.logged_on) {
            (Some(_), true) => "logged on",
            (Some(_), false) => "connected",
            (None, _) => "reconnecting (REST meanwhile)",
        };
        tracing::info!(
            in_flight,
            queried,
            "order entry: switched to the new API key ({ws_api})"
        );
        Ok(GatewaySwitched {
            in_flight,
            queried,
            ws_api,
            switched_at_ms,
        })
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn ws_send(&mut self, text: String) -> bool {
        let Some(w) = self.ws.as_mut() else {
            return false;
        };
        match w.send(Message::text(text)) {
            Ok(()) => true,
            // The socket's buffer is full: the frame stays queued in the WebSocket and goes out with the next
            // read or flush, so the request is on its way (answer or timeout settle it as usual).
            Err(e) if ws::is_timeout(&e) => true,
            Err(_) => {
                self.lost_connection();
                false
            }
        }
    }

    fn lost_connection(&mut self) {
        self.ws = None;
        self.logged_on = false;
        self.reconnect_at = Instant::now() + Duration::from_millis(100);
        // Everything in flight has an unknown outcome now (a status query in flight is simply asked again).
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        for id in ids {
            if let Some(p) = self.pending.remove(&id) {
                match p.kind {
                    Kind::Query => self.query_failed(p.cid, true),
                    _ => self.unknown(p),
                }
            }
        }
    }

    fn wire(&self, req: &OrderRequest, cid: ClientOrderId) -> WireOrder {
        WireOrder {
            symbol: req.symbol,
            side: req.side,
            order_type: req.order_type,
            tif: req.tif,
            qty: req.qty,
            price: req.price,
            reduce_only: req.reduce_only,
            client_id: cid,
            resp_type: RespType::Ack,
        }
    }

    fn outbound(&mut self, m: Outbound) {
        match m {
            Outbound::Place { req, client_id } => self.place(req, client_id, false),
            Outbound::Cancel { symbol, client_id } => self.cancel(symbol, client_id),
        }
    }

    fn place(&mut self, req: OrderRequest, cid: ClientOrderId, resent: bool) {
        let now = wall_ms();
        if self.read_only {
            self.send_in(Inbound::Rejected {
                client_id: cid,
                code: -2015,
                ts_ms: now,
            });
            return;
        }
        if self.rate_halt_until.is_some()
            || self.client.shared.blocked_until_ms.load(Ordering::Relaxed) > now
        {
            self.send_in(Inbound::Rejected {
                client_id: cid,
                code: -1003,
                ts_ms: now,
            });
            return;
        }
        let Some(p) = self.precision.get(&req.symbol).copied() else {
            self.send_in(Inbound::Rejected {
                client_id: cid,
                code: -1121,
                ts_ms: now,
            });
            return;
        };
        let wire = self.wire(&req, cid);
        let ts = self.client.now_ms();
        self.stats.placed.fetch_add(1, Ordering::Relaxed);
        if self.ws.is_some() {
            let id = self.take_id();
            let logged_on = self.logged_on;
            match self.encoder.ws_order_place(id, &wire, &p, ts, logged_on) {
                Ok(b) => {
                    let text = String::from_utf8_lossy(b).into_owned();
                    if self.ws_send(text) {
                        self.pending.insert(
                            id,
                            Pending {
                                cid,
                                symbol: req.symbol,
                                sent: Instant::now(),
                                kind: Kind::Place(req, resent),
                            },
                        );
                    } else {
                        // The frame may or may not have left: treat as unknown.
                        self.unknown(Pending {
                            cid,
                            symbol: req.symbol,
                            sent: Instant::now(),
                            kind: Kind::Place(req, resent),
                        });
                    }
                }
                Err(_) => self.send_in(Inbound::Rejected {
                    client_id: cid,
                    code: -1111,
                    ts_ms: now,
                }),
            }
            return;
        }
        // REST fallback.
        self.stats.rest_fallback.fetch_add(1, Ordering::Relaxed);
        let q = match self.encoder.rest_order(&wire, &p, ts) {
            Ok(b) => String::from_utf8_lossy(b).into_owned(),
            Err(_) => {
                self.send_in(Inbound::Rejected {
                    client_id: cid,
                    code: -1111,
                    ts_ms: now,
                });
                return;
            }
        };
        let client = self.client.clone();
        self.spawn_rest(async move {
            let r = client.place_order_raw(&q).await;
            RestDone::Placed {
                cid,
                req,
                resent,
                r,
            }
        });
    }

    /// Runs a REST request on the control runtime; its answer comes back through [`Self::rest_answers`].
    fn spawn_rest(&mut self, f: impl std::future::Future<Output = RestDone> + Send + 'static) {
        self.rest_in_flight += 1;
        let tx = self.rest_tx.clone();
        self.rt.spawn(async move {
            let _ = tx.send(f.await);
        });
    }

    /// Applies the REST answers that arrived. True when there were any.
    fn rest_answers(&mut self) -> bool {
        let mut any = false;
        while let Ok(d) = self.rest_rx.try_recv() {
            any = true;
            self.rest_in_flight = self.rest_in_flight.saturating_sub(1);
            match d {
                RestDone::Placed {
                    cid,
                    req,
                    resent,
                    r,
                } => match r {
                    Ok(v) => self.acked(cid, order_id(&v)),
                    Err(e) => self.failed(
                        Pending {
                            cid,
                            symbol: req.symbol,
                            sent: Instant::now(),
                            kind: Kind::Place(req, resent),
                        },
                        &e,
                    ),
                },
                RestDone::Queried { cid, r } => self.rest_queried(cid, r),
                RestDone::Resynced { cid, req } => self.place(req, cid, true),
            }
        }
        any
    }

    fn cancel(&mut self, symbol: Symbol, cid: ClientOrderId) {
        if self.read_only {
            return;
        }
        let ts = self.client.now_ms();
        if self.ws.is_some() {
            let id = self.take_id();
            let logged_on = self.logged_on;
            let c = CancelRequest {
                symbol,
                order: CancelRef::ClientId(cid),
            };
            if let Ok(b) = self.encoder.ws_order_cancel(id, &c, ts, logged_on) {
                let text = String::from_utf8_lossy(b).into_owned();
                if self.ws_send(text) {
                    self.pending.insert(
                        id,
                        Pending {
                            cid,
                            symbol,
                            sent: Instant::now(),
                            kind: Kind::Cancel,
                        },
                    );
                    return;
                }
            }
        }
        // The user data stream reports the CANCELED state; errors (already filled) need nothing. No answer is
        // awaited here (a REST cancel must not hold up the next order).
        let client = self.client.clone();
        self.rt.spawn(async move {
            let _ = client.cancel_order(symbol.as_str(), cid.as_str()).await;
        });
    }

    fn acked(&self, cid: ClientOrderId, oid: u64) {
        self.send_in(Inbound::Ack {
            client_id: cid,
            exchange_id: oid,
            ts_ms: wall_ms(),
        });
    }

    fn key_rejected(&mut self, code: i32) {
        if self.read_only {
            return;
        }
        self.read_only = true;
        tracing::error!("Binance rejected the API key ({code}): new orders halted, staying up read-only; fix the key on Binance and restart (no automatic retry)");
        self.send_in(Inbound::ReadOnly);
        self.send_in(Inbound::Halt(HaltReason::KeyRejected));
        self.send_in(Inbound::Alert(AlertKind::KeyInvalid));
    }

    fn rate_limited(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        if self.rate_halt_until.is_none_or(|t| t < until) {
            if self.rate_halt_until.is_none() {
                tracing::warn!("rate limited by Binance: new entries halted for {wait:?}");
                self.send_in(Inbound::Halt(HaltReason::RateLimited));
                self.send_in(Inbound::Alert(AlertKind::ExchangeErrors));
            }
            self.rate_halt_until = Some(until);
        }
    }

    /// A definite failure or an unknown outcome of a placement.
    fn failed(&mut self, p: Pending, e: &RestError) {
        let now = wall_ms();
        match e {
            RestError::KeyRejected { code, .. } => {
                self.key_rejected(*code);
                self.send_in(Inbound::Rejected {
                    client_id: p.cid,
                    code: *code,
                    ts_ms: now,
                });
            }
            RestError::RateLimited { retry_after, .. } => {
                self.rate_limited(*retry_after);
                self.send_in(Inbound::Rejected {
                    client_id: p.cid,
                    code: -1003,
                    ts_ms: now,
                });
            }
            RestError::Api { code: -1021, .. } => self.resync_and_resend(p, -1021),
            RestError::Api { code, .. } => self.send_in(Inbound::Rejected {
                client_id: p.cid,
                code: *code,
                ts_ms: now,
            }),
            RestError::Transport { .. } | RestError::NoKey => {
                // Never left this machine.
                self.send_in(Inbound::Rejected {
                    client_id: p.cid,
                    code: -1001,
                    ts_ms: now,
                })
            }
            RestError::Unknown { .. } | RestError::Decode { .. } => self.unknown(p),
        }
    }

    fn resync_and_resend(&mut self, p: Pending, code: i32) {
        match p.kind {
            Kind::Place(req, false) => {
                self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("order refused for the clock (-1021): resyncing once and resending that order once");
                let client = self.client.clone();
                let cid = p.cid;
                self.spawn_rest(async move {
                    let _ = client.sync_time().await;
                    RestDone::Resynced { cid, req }
                });
            }
            _ => self.send_in(Inbound::Rejected {
                client_id: p.cid,
                code,
                ts_ms: wall_ms(),
            }),
        }
    }

    /// Unknown outcome: the order goes into the table of unknowns, queried by client id from
    /// [`Self::drive_unknowns`], never resent. Nothing waits for it here.
    fn unknown(&mut self, p: Pending) {
        let Kind::Place(..) = p.kind else {
            return;
        };
        if self.unknowns.contains_key(&p.cid) {
            return;
        }
        self.stats.queried.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(client_id = %p.cid, "order outcome unknown: querying it by client id before anything else");
        let now = Instant::now();
        self.unknowns.insert(
            p.cid,
            Unknown {
                symbol: p.symbol,
                since: now,
                next_at: now,
                rounds: 0,
                ws_query: None,
                rest_query: false,
                ws_absent: false,
                rest_absent: false,
            },
        );
        self.drive_unknowns();
    }

    /// One look at the unknowns' timers: a round of queries for each one that is due and has none in flight,
    /// and the deadline for the ones past it.
    fn drive_unknowns(&mut self) {
        if self.unknowns.is_empty() {
            return;
        }
        let now = Instant::now();
        let due: Vec<ClientOrderId> = self
            .unknowns
            .iter()
            .filter(|(_, u)| {
                now.duration_since(u.since) >= UNKNOWN_DEADLINE
                    || (now >= u.next_at && u.ws_query.is_none() && !u.rest_query)
            })
            .map(|(c, _)| *c)
            .collect();
        for cid in due {
            let Some(u) = self.unknowns.get(&cid).copied() else {
                continue;
            };
            if now.duration_since(u.since) >= UNKNOWN_DEADLINE {
                self.unknowns.remove(&cid);
                tracing::error!(client_id = %cid, "order outcome still unknown after {UNKNOWN_DEADLINE:?} of queries: marked rejected, never resent; reconciliation compares with the exchange and adopts it if it exists");
                self.send_in(Inbound::Rejected {
                    client_id: cid,
                    code: -1007,
                    ts_ms: wall_ms(),
                });
                self.slot.wanted.store(true, Ordering::Release);
                continue;
            }
            let ws_query = if u.ws_absent {
                None
            } else {
                self.ws_status_query(u.symbol, cid)
            };
            let rest_query = !u.rest_absent;
            if rest_query {
                let client = self.client.clone();
                let symbol = u.symbol;
                self.spawn_rest(async move {
                    let r = client.query_order(symbol.as_str(), cid.as_str()).await;
                    RestDone::Queried { cid, r }
                });
            }
            let wait = QUERY_BACKOFF_MIN
                .saturating_mul(1u32 << u.rounds.min(8))
                .min(QUERY_BACKOFF_MAX);
            if let Some(x) = self.unknowns.get_mut(&cid) {
                x.rounds += 1;
                x.next_at = now + wait;
                x.ws_query = ws_query;
                x.rest_query = rest_query;
            }
        }
    }

    /// Sends `order.status` for `cid` when the WebSocket API is up: the id of the request in flight.
    fn ws_status_query(&mut self, symbol: Symbol, cid: ClientOrderId) -> Option<u64> {
        self.ws.as_ref()?;
        let id = self.take_id();
        let c = CancelRequest {
            symbol,
            order: CancelRef::ClientId(cid),
        };
        let ts = self.client.now_ms();
        let text = match self.encoder.ws_order_status(id, &c, ts, self.logged_on) {
            Ok(b) => String::from_utf8_lossy(b).into_owned(),
            Err(_) => return None,
        };
        if !self.ws_send(text) {
            return None;
        }
        self.pending.insert(
            id,
            Pending {
                cid,
                symbol,
                sent: Instant::now(),
                kind: Kind::Query,
            },
        );
        Some(id)
    }

    /// The order was found: it is acknowledged (adopted with its exchange id); fills come on the user stream.
    fn found(&mut self, cid: ClientOrderId, oid: u64) {
        if self.unknowns.remove(&cid).is_some() {
            tracing::info!(client_id = %cid, "unknown order found on the exchange: adopted");
            self.acked(cid, oid);
        }
    }

    /// One side said -2013. Both said it: the order does not exist; rejected.
    fn absent(&mut self, cid: ClientOrderId, ws: bool) {
        let Some(u) = self.unknowns.get_mut(&cid) else {
            return;
        };
        if ws {
            u.ws_absent = true;
            u.ws_query = None;
        } else {
            u.rest_absent = true;
            u.rest_query = false;
        }
        if u.ws_absent && u.rest_absent {
            self.unknowns.remove(&cid);
            // Settled: both sides of the exchange say it was never placed. No resync for it (the rejection reaches
            // the journal that reconciliation reads; a resync now would race the fills of the orders that follow).
            tracing::info!(client_id = %cid, "unknown order not on the exchange (WebSocket API and REST agree): rejected");
            self.send_in(Inbound::Rejected {
                client_id: cid,
                code: -2013,
                ts_ms: wall_ms(),
            });
        }
    }

    /// A query could not be answered (transport, 5xx, timeout): the next round retries it.
    fn query_failed(&mut self, cid: ClientOrderId, ws: bool) {
        if let Some(u) = self.unknowns.get_mut(&cid) {
            if ws {
                u.ws_query = None;
            } else {
                u.rest_query = false;
            }
        }
    }

    /// The key was refused while settling an unknown order: read-only, and the order is given up as rejected
    /// (nothing can be sent or asked any more; reconciliation on the next start settles it).
    fn query_key_rejected(&mut self, cid: ClientOrderId, code: i32) {
        self.key_rejected(code);
        if self.unknowns.remove(&cid).is_some() {
            self.send_in(Inbound::Rejected {
                client_id: cid,
                code,
                ts_ms: wall_ms(),
            });
        }
    }

    fn rest_queried(&mut self, cid: ClientOrderId, r: Result<Value, RestError>) {
        match r {
            Ok(v) => self.found(cid, order_id(&v)),
            Err(RestError::Api { code: -2013, .. }) => self.absent(cid, false),
            Err(RestError::KeyRejected { code, .. }) => self.query_key_rejected(cid, code),
            Err(_) => self.query_failed(cid, false),
        }
    }

    fn check_timeouts(&mut self) {
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.sent.elapsed() > ANSWER_TIMEOUT)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(p) = self.pending.remove(&id) {
                match p.kind {
                    Kind::Query => self.query_failed(p.cid, true),
                    _ => self.unknown(p),
                }
            }
        }
    }

    fn read_ws(&mut self) -> bool {
        let mut busy = false;
        loop {
            let Some(w) = self.ws.as_mut() else {
                return busy;
            };
            match w.read() {
                Ok(Message::Text(t)) => {
                    busy = true;
                    // Read in place (no JSON tree); a frame that is not an answer is ignored.
                    if let Ok(a) = answer::parse(t.as_bytes()) {
                        self.answer(&a);
                    }
                }
                Ok(Message::Ping(_)) => {
                    let _ = w.flush();
                }
                Ok(Message::Close(_)) => {
                    self.lost_connection();
                    return true;
                }
                Ok(_) => {}
                Err(e) if ws::is_timeout(&e) => return busy,
                Err(_) => {
                    self.lost_connection();
                    return true;
                }
            }
        }
    }

    fn answer(&mut self, v: &Answer<'_>) {
        self.settle(v);
        // After the answer itself, so a 429 is reported as one (its own log line and alert) first.
        self.watch_limits(v);
    }

    /// Slows down before a 429: when an answer shows a limit at [`SLOW_DOWN_AT_PERCENT`], entries halt until
    /// its window has passed. Orders already sent are untouched; new ones are refused locally meanwhile.
    fn watch_limits(&mut self, v: &Answer<'_>) {
        let Some((l, left)) = limit_to_wait_for(v, self.client.now_ms()) else {
            return;
        };
        let until = Instant::now() + left + WINDOW_MARGIN;
        if self.rate_halt_until.is_some_and(|t| t >= until) {
            return;
        }
        if self.rate_halt_until.is_none() {
            tracing::warn!(
                "near Binance's {} limit ({}/{} per {} s): new entries halted for {left:?} until the window ends",
                l.kind.name(),
                l.count,
                l.limit,
                l.window_ms / 1000
            );
            self.send_in(Inbound::Halt(HaltReason::RateLimited));
        }
        self.rate_halt_until = Some(until);
    }

    fn settle(&mut self, v: &Answer<'_>) {
        let status = v.status.unwrap_or(0);
        let code = v.code.unwrap_or(0);
        let Some(id) = v.id else {
            // Unsolicited (`"id":null`): a key revoked mid-session.
            if code == -2015 || code == -2014 || status == 401 {
                self.key_rejected(code);
            }
            return;
        };
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        if let Kind::Query = p.kind {
            match (status, code) {
                (200, _) => self.found(p.cid, v.order_id.unwrap_or(0)),
                (_, -2013) => self.absent(p.cid, true),
                (_, -2014 | -2015) | (401, _) => self.query_key_rejected(p.cid, code),
                _ => self.query_failed(p.cid, true),
            }
            return;
        }
        if status == 200 {
            match p.kind {
                Kind::Logon => {
                    self.logged_on = true;
                    tracing::info!("order entry: WebSocket API session logged on (Ed25519)");
                }
                Kind::Place(..) => self.acked(p.cid, v.order_id.unwrap_or(0)),
                Kind::Cancel | Kind::Query => {}
            }
            return;
        }
        // Only on a refusal (rare): the message goes into the error and the log.
        let msg = String::from_utf8_lossy(v.msg).into_owned();
        let e = if status == 429 || status == 418 {
            RestError::RateLimited {
                status,
                retry_after: ws_retry_after(v, self.client.now_ms())
                    .unwrap_or(Duration::from_secs(if status == 418 { 120 } else { 5 })),
            }
        } else if code == -2014 || code == -2015 || status == 401 {
            RestError::KeyRejected {
                path: "ws-api".into(),
                code,
                msg,
            }
        } else if status >= 500 {
            RestError::Unknown {
                path: "ws-api".into(),
                why: format!("status {status}"),
            }
        } else {
            RestError::Api {
                path: "ws-api".into(),
                status,
                code,
                msg,
            }
        };
        match p.kind {
            Kind::Logon => {
                tracing::warn!(error = %e, "session.logon refused; signing each request instead");
                if let RestError::KeyRejected { code, .. } = e {
                    self.key_rejected(code);
                }
            }
            Kind::Cancel => {
                if let RestError::KeyRejected { code, .. } = e {
                    self.key_rejected(code);
                }
            }
            Kind::Place(..) => self.failed(p, &e),
            Kind::Query => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_engine::venue::binance::answer::LimitKind;

    fn orders(interval: &str, num: u64, limit: u64, count: u64) -> String {
        format!(
            r#"{{"rateLimitType":"ORDERS","interval":"{interval}","intervalNum":{num},"limit":{limit},"count":{count}}}"#
        )
    }

    fn wait_for(limits: &[String], now: u64) -> Option<(LimitUse, Duration)> {
        let text = format!(
            r#"{{"id":7,"status":200,"result":{{}},"rateLimits":[{}]}}"#,
            limits.join(",")
        );
        limit_to_wait_for(&answer::parse(text.as_bytes()).unwrap(), now)
    }

    #[test]
    fn a_limit_at_80_percent_waits_for_the_end_of_its_window() {
        // Server time 3.5 s into a 10 s window and 33.5 s into a minute.
        let now = 60_000 * 1000 + 33_500;
        assert_eq!(wait_for(&[orders("SECOND", 10, 10, 7)], now), None);
        let (l, left) = wait_for(&[orders("SECOND", 10, 10, 8)], now).unwrap();
        assert_eq!((l.kind, l.count, l.limit), (LimitKind::Orders, 8, 10));
        assert_eq!(left, Duration::from_millis(6_500));
        // Two near limits: the one whose window ends last decides.
        let (l, left) = wait_for(
            &[orders("SECOND", 10, 10, 9), orders("MINUTE", 1, 100, 80)],
            now,
        )
        .unwrap();
        assert_eq!((l.window_ms, l.count), (60_000, 80));
        assert_eq!(left, Duration::from_millis(26_500));
        let weight = r#"{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400,"count":1920}"#;
        assert_eq!(
            wait_for(&[weight.to_string()], now).unwrap().0.kind,
            LimitKind::RequestWeight
        );
        // A zero limit (every order refused) is the 429 path's business.
        assert_eq!(wait_for(&[orders("SECOND", 10, 0, 0)], now), None);
    }

    #[test]
    fn a_429_or_418_says_how_long_to_wait() {
        let now = 1_700_000_000_000;
        let a = answer::parse(br#"{"id":1,"status":429,"error":{"code":-1003,"msg":"x","data":{"retryAfter":1700000007000}}}"#).unwrap();
        assert_eq!(ws_retry_after(&a, now), Some(Duration::from_secs(7)));
        let a = answer::parse(br#"{"id":1,"status":418,"error":{"code":-1003,"msg":"IP banned until 1700000120000."}}"#).unwrap();
        assert_eq!(ws_retry_after(&a, now), Some(Duration::from_secs(120)));
        // At least a second, even for a time already past.
        let a = answer::parse(
            br#"{"id":1,"status":429,"error":{"code":-1003,"msg":"x","data":{"retryAfter":1}}}"#,
        )
        .unwrap();
        assert_eq!(ws_retry_after(&a, now), Some(Duration::from_secs(1)));
        let a =
            answer::parse(br#"{"id":1,"status":429,"error":{"code":-1003,"msg":"x"}}"#).unwrap();
        assert_eq!(ws_retry_after(&a, now), None);
    }
}
