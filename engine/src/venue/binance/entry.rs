//! Order entry on the engine thread: the WebSocket-API order connection (`order.place`, `order.cancel`,
//! `order.status`, `session.logon`, and on spot `order.cancelReplace`) on the same non-blocking mio client as
//! market data ([`crate::net::mio_ws::WsConn`]), requests encoded into the [`OrderEncoder`]'s reused buffers,
//! answers read in place ([`super::answer`]), and the unknown-outcome timers — all driven from the engine's busy
//! loop by [`OrderEntry::poll`]. Nothing here blocks, sleeps or (once the connection is open) allocates.
//!
//! What must not run on the engine thread goes to the control plane's REST worker as a [`RestJob`] on a bounded
//! queue: the REST fallback placement while the WebSocket API is down, REST status queries (`GET
//! /fapi/v1/order`), REST cancels, the clock resync after -1021 and the request for a reconciliation round. The
//! worker's answers come back on the venue's inbound queue as [`super::Inbound::Rest`] and are applied by
//! [`OrderEntry::on_rest`].
//!
//! The rules (the same as the control plane's old order gateway, `aegis_control::exchange::gateway`):
//! - Unknown outcome (5xx, no answer within [`ANSWER_TIMEOUT`], connection lost with requests in flight) → the
//!   order is queried by client id over the WebSocket API and over REST, retried with backoff
//!   ([`QUERY_BACKOFF_MIN`] doubling to [`QUERY_BACKOFF_MAX`]). Found → acknowledged (adopted); -2013 from both
//!   → rejected; still unsettled after [`UNKNOWN_DEADLINE`] → rejected (-1007) and a reconciliation round is
//!   asked for. **Never a blind resend**, and nothing waits for it: other orders, cancels, exits and the kill
//!   switch go out meanwhile.
//! - -1021 (clock) → one resync (REST worker) and one resend of that order (it was refused: no duplicate).
//! - -2014/-2015 → read-only, entries halt (`KeyRejected`), `key_invalid` alert; no retry.
//! - 429/418 → the order is rejected, entries halt (`RateLimited`) until the wait has passed; an answer whose
//!   `rateLimits` show a count at 80 % of its limit halts entries until that window has ended.
//! - Spot (the encoder's market, set by the venue): orders go without `reduceOnly`, post-only as
//!   `LIMIT_MAKER`. An exit placed with [`OrderEntry::place_replacing`] cancels the symbol's resting stop in the
//!   same request (`order.cancelReplace`, `ALLOW_FAILURE`; over REST `POST /api/v3/order/cancelReplace`): the
//!   answer's new-order leg decides the exit's fate, whatever happened to the cancel (a stop that already
//!   triggered cannot be cancelled, and the exit may then find nothing left to sell: -2010).

use super::answer::{self, Answer, LegResult, LimitUse, NewOrderLeg};
use super::Inbound;
use crate::clock::wall_ms;
use crate::net::mio_ws::{WsClientConfig, WsConn, WsEvent};
use crate::sign::{
    CancelRef, CancelReplace, CancelRequest, OrderEncoder, OrderRequest as WireOrder, RespType,
    Signer, WirePrecision,
};
use crate::venue::OrderRequest;
use aegis_shared::event::{AlertKind, HaltReason};
use aegis_shared::{ClientOrderId, Market, Symbol};
use crossbeam_channel::Sender;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An order without an answer after this long has an unknown outcome.
pub const ANSWER_TIMEOUT: Duration = Duration::from_millis(2000);
/// Longest an order's outcome stays unknown. Then it is marked rejected (-1007) and reconciliation compares
/// with the exchange, which adopts the order if it exists after all: never PendingNew forever.
pub const UNKNOWN_DEADLINE: Duration = Duration::from_secs(10);
/// First wait between two rounds of status queries of an unknown order; doubled each round.
pub const QUERY_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between two rounds of status queries.
pub const QUERY_BACKOFF_MAX: Duration = Duration::from_millis(2000);
/// Most requests awaiting an answer at once (orders, cancels, status queries, the logon).
pub const MAX_PENDING: usize = 1024;
/// Most orders whose outcome is unknown at once.
pub const MAX_UNKNOWN: usize = super::MAX_LIVE_ORDERS;
/// Messages for the venue produced between two drains (each request yields at most a few).
const MAX_OUT: usize = 4 * MAX_PENDING;
/// Most frames read from the order connection per [`OrderEntry::poll`], so answers cannot starve market data.
const MAX_FRAMES_PER_POLL: usize = 8;
/// Share of a rate limit at which new entries halt until its window ends.
const SLOW_DOWN_AT_PERCENT: u64 = 80;
/// Margin past a window's end before entries resume: our offset to the server clock is an estimate.
const WINDOW_MARGIN: Duration = Duration::from_millis(100);

/// Work the engine thread hands to the control plane's REST worker (the answer comes back as
/// [`Inbound::Rest`] with the job echoed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestJob {
    /// `POST /fapi/v1/order` (spot: `/api/v3/order`; the WebSocket API is down). `resent`: the second try
    /// after a -1021 resync.
    Place {
        /// The order.
        req: OrderRequest,
        /// Its client id.
        client_id: ClientOrderId,
        /// Already resent once after a clock resync.
        resent: bool,
        /// Spot: the resting stop this exit cancels in the same request (`POST /api/v3/order/cancelReplace`,
        /// `cancelOrigClientOrderId`); `None`: a plain placement.
        cancel_stop: Option<ClientOrderId>,
    },
    /// `GET /fapi/v1/order` by client id (an unknown outcome).
    Query {
        /// Symbol.
        symbol: Symbol,
        /// Client id.
        client_id: ClientOrderId,
    },
    /// `DELETE /fapi/v1/order` by client id (the WebSocket API is down).
    Cancel {
        /// Symbol.
        symbol: Symbol,
        /// Client id.
        client_id: ClientOrderId,
    },
    /// `GET /fapi/v1/time` after -1021; then the order goes again once.
    Resync {
        /// The refused order.
        req: OrderRequest,
        /// Its client id.
        client_id: ClientOrderId,
        /// The resting stop it cancels in the same request (spot), as first sent.
        cancel_stop: Option<ClientOrderId>,
    },
    /// Ask for a reconciliation round (after a reconnect, or an order given up at its deadline).
    Reconcile,
    /// A line for the control plane's log: the engine thread does not log (nothing answers it).
    Note(EntryNote),
}

/// What order entry tells the operator through the control plane's log (rare events only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryNote {
    /// The WebSocket API connection opened.
    Connected,
    /// It could not be opened or was lost: orders go over REST until it is back.
    Unavailable,
    /// `session.logon` was accepted.
    LoggedOn,
    /// `session.logon` was refused: each request is signed instead.
    LogonRefused,
    /// An order's outcome is unknown: queried by client id.
    Unknown(ClientOrderId),
    /// An unknown order was found on the exchange: adopted.
    Found(ClientOrderId),
    /// An unknown order is on neither side of the exchange: rejected.
    Absent(ClientOrderId),
    /// An unknown order was given up at [`UNKNOWN_DEADLINE`].
    Expired(ClientOrderId),
    /// -1021: the clock is resynced and the order resent once.
    Resync,
    /// -2014/-2015: read-only from now on (Binance's code).
    KeyRejected(i32),
    /// 429/418: entries halted for this long (ms).
    RateLimited(u64),
    /// A `rateLimits` count reached 80 % of its limit: entries halted for this long (ms).
    NearLimit {
        /// `ORDERS` or `REQUEST_WEIGHT`.
        kind: answer::LimitKind,
        /// Count.
        count: u64,
        /// Limit.
        limit: u64,
        /// Window, ms.
        window_ms: u64,
        /// Wait, ms.
        wait_ms: u64,
    },
    /// The rate limit wait is over.
    RateWaitOver,
    /// The key switch swapped the key.
    Switched {
        /// Requests of the old key in flight when the switch began.
        in_flight: usize,
        /// Of those, how many became unknown outcomes.
        queried: usize,
    },
}

/// How a REST request ended, classified by the worker (no strings: the worker logs the details).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestOutcome {
    /// 2xx, with the answer's `orderId` (0 when absent).
    Ok {
        /// `orderId`.
        order_id: u64,
    },
    /// A definite refusal with Binance's code (-2013 for "no such order").
    Refused {
        /// Binance error code.
        code: i32,
    },
    /// -2014/-2015/401: the key is refused.
    KeyRejected {
        /// Binance error code.
        code: i32,
    },
    /// 429/418, or the client's own ban window: wait this long.
    RateLimited {
        /// Wait, ms.
        retry_after_ms: u64,
    },
    /// Never left this machine (transport failure before sending, no key).
    NotSent,
    /// May or may not have reached the exchange (5xx, timeout, undecodable answer).
    Unknown,
}

/// The exchange's clock as the control plane estimates it, and its REST ban window. Reading both must not
/// block or allocate (atomics).
pub trait VenueClock: Send + Sync + std::fmt::Debug {
    /// Server time now, ms (local wall clock plus the measured offset).
    fn server_now_ms(&self) -> u64;
    /// Wall time (ms) before which nothing may be sent (a 418 ban or `Retry-After`); 0 when none.
    fn blocked_until_ms(&self) -> u64 {
        0
    }
}

/// The local wall clock, never blocked (tests, benches).
#[derive(Debug, Default, Clone, Copy)]
pub struct WallClock;

impl VenueClock for WallClock {
    fn server_now_ms(&self) -> u64 {
        wall_ms()
    }
}

/// Counters, shared with the control plane (atomics: the engine never waits on them).
#[derive(Debug, Default)]
pub struct EntryStats {
    /// Placements sent (WebSocket API or REST).
    pub placed: AtomicU64,
    /// Placements handed to the REST worker (the WebSocket API was down).
    pub rest_fallback: AtomicU64,
    /// Orders whose outcome was unknown.
    pub queried: AtomicU64,
    /// Clock resyncs asked for after -1021.
    pub resyncs: AtomicU64,
    /// WebSocket-API connections opened.
    pub connects: AtomicU64,
    /// Unknown outcomes given up at [`UNKNOWN_DEADLINE`].
    pub expired: AtomicU64,
}

/// A key switch taken by the engine thread between two orders (the control plane's `keyswitch` sends it):
/// requests of the old key in flight are answered first (bounded by `drain_budget`; late ones become unknown
/// outcomes, queried by client id with the new key of the same account, never resent), then the encoder is
/// swapped, `on_swap` runs (the control plane swaps its REST client's key at the same moment) and a new
/// WebSocket-API session opens. Orders the engine places meanwhile wait in a bounded queue here and go out
/// after the switch, never half-switched.
pub struct EntrySwitch {
    /// The new key's encoder (built by the control plane; it allocates, this thread does not).
    pub encoder: OrderEncoder,
    /// Bound on waiting for answers to requests of the old key.
    pub drain_budget: Duration,
    /// Runs on the engine thread at the swap (rare: a key switch is an admin action).
    pub on_swap: Box<dyn FnOnce() + Send>,
    /// The outcome.
    pub reply: Sender<Result<EntrySwitched, &'static str>>,
}

impl std::fmt::Debug for EntrySwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntrySwitch")
            .field("drain_budget", &self.drain_budget)
            .finish_non_exhaustive()
    }
}

/// What a key switch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntrySwitched {
    /// Requests of the old key in flight when the switch began.
    pub in_flight: usize,
    /// Of those, how many had no answer within the budget and became unknown outcomes.
    pub queried: usize,
    /// The WebSocket API session after the switch (`logged on`, `connected`, `reconnecting (REST meanwhile)`).
    pub ws_api: &'static str,
    /// Wall time of the swap (ms): nothing sent after it carries the old key.
    pub switched_at_ms: u64,
}

/// Most orders and cancels held back while a key switch runs.
const MAX_DEFERRED: usize = 512;

#[derive(Debug, Clone, Copy)]
enum Deferred {
    Place(OrderRequest, ClientOrderId, Option<ClientOrderId>),
    Cancel(Symbol, ClientOrderId),
}

struct Switching {
    sw: Option<EntrySwitch>,
    reply: Sender<Result<EntrySwitched, &'static str>>,
    began: Instant,
    budget: Duration,
    in_flight: usize,
    queried: usize,
    swapped: Option<(Instant, u64)>,
}

/// What [`OrderEntry::new`] needs.
pub struct EntryConfig {
    /// The WebSocket API (`wss://ws-fapi.binance.com/ws-fapi/v1`, or the simulator's).
    pub ws: WsClientConfig,
    /// The key and the reused buffers.
    pub encoder: OrderEncoder,
    /// Tick and step of every traded symbol.
    pub precision: Vec<(Symbol, WirePrecision)>,
    /// Server clock and ban window.
    pub clock: Arc<dyn VenueClock>,
    /// The REST worker's queue.
    pub rest: Sender<RestJob>,
    /// Counters.
    pub stats: Arc<EntryStats>,
    /// Key switches (see [`EntrySwitch`]); None: the key never changes.
    pub switch: Option<crossbeam_channel::Receiver<EntrySwitch>>,
}

impl std::fmt::Debug for EntryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryConfig")
            .field("ws", &self.ws)
            .field("symbols", &self.precision.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An order, whether it was resent after a clock resync, and the resting stop it cancels (spot).
    Place(OrderRequest, bool, Option<ClientOrderId>),
    Cancel,
    Logon,
    Query,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    id: u64,
    cid: ClientOrderId,
    symbol: Symbol,
    sent: Instant,
    kind: Kind,
}

/// An order whose outcome is unknown, and where its settling stands.
#[derive(Debug, Clone, Copy)]
struct Unknown {
    cid: ClientOrderId,
    symbol: Symbol,
    since: Instant,
    next_at: Instant,
    rounds: u32,
    ws_query: Option<u64>,
    rest_query: bool,
    ws_absent: bool,
    rest_absent: bool,
}

/// What an answer frame says, copied out of the frame so the connection can be used while acting on it.
#[derive(Debug, Clone, Copy)]
struct Said {
    id: Option<u64>,
    status: u16,
    code: i32,
    order_id: u64,
    retry_after: Option<Duration>,
    limit_wait: Option<(LimitUse, Duration)>,
    /// A cancel-replace's new-order leg.
    new_order: Option<NewOrderLeg>,
}

/// How long a WebSocket-API 429/418 asks us to wait: `data.retryAfter`, else the ban's end in the message (both
/// server times); at least a second.
pub fn ws_retry_after(a: &Answer<'_>, server_now_ms: u64) -> Option<Duration> {
    let until = a.retry_after_ms.or_else(|| answer::banned_until(a.msg))?;
    Some(Duration::from_millis(
        until.saturating_sub(server_now_ms).max(1000),
    ))
}

fn near(l: &LimitUse) -> bool {
    // A zero limit is a venue that refuses everything; its 429 path handles it.
    l.limit > 0 && l.count * 100 >= l.limit * SLOW_DOWN_AT_PERCENT
}

/// The limit at or past 80 % whose window ends last, with the time left in it (windows are fixed on the server
/// clock).
pub fn limit_to_wait_for(a: &Answer<'_>, server_now_ms: u64) -> Option<(LimitUse, Duration)> {
    a.limits()
        .filter(near)
        .map(|l| {
            let left = Duration::from_millis(l.window_ms - server_now_ms % l.window_ms);
            (l, left)
        })
        .max_by_key(|(_, left)| *left)
}

/// The engine thread's order connection. See the module docs.
pub struct OrderEntry {
    ws_cfg: WsClientConfig,
    conn: Option<WsConn>,
    logged_on: bool,
    reconnect_at: Instant,
    attempt: u32,
    connected_before: bool,
    encoder: OrderEncoder,
    precision: Vec<(Symbol, WirePrecision)>,
    clock: Arc<dyn VenueClock>,
    rest: Sender<RestJob>,
    next_id: u64,
    pending: Vec<Pending>,
    unknowns: Vec<Unknown>,
    out: VecDeque<Inbound>,
    read_only: bool,
    rate_halt_until: Option<Instant>,
    rest_in_flight: usize,
    stats: Arc<EntryStats>,
    switch_rx: Option<crossbeam_channel::Receiver<EntrySwitch>>,
    switching: Option<Switching>,
    deferred: VecDeque<Deferred>,
}

impl std::fmt::Debug for OrderEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderEntry")
            .field("open", &self.is_open())
            .field("logged_on", &self.logged_on)
            .field("pending", &self.pending.len())
            .field("unknowns", &self.unknowns.len())
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl OrderEntry {
    /// Allocates the tables once; connects on the first [`OrderEntry::poll`].
    pub fn new(cfg: EntryConfig) -> Self {
        let now = Instant::now();
        Self {
            ws_cfg: cfg.ws,
            conn: None,
            logged_on: false,
            reconnect_at: now,
            attempt: 0,
            connected_before: false,
            encoder: cfg.encoder,
            precision: cfg.precision,
            clock: cfg.clock,
            rest: cfg.rest,
            next_id: 1,
            pending: Vec::with_capacity(MAX_PENDING),
            unknowns: Vec::with_capacity(MAX_UNKNOWN),
            out: VecDeque::with_capacity(MAX_OUT),
            read_only: false,
            rate_halt_until: None,
            rest_in_flight: 0,
            stats: cfg.stats,
            switch_rx: cfg.switch,
            switching: None,
            deferred: VecDeque::with_capacity(MAX_DEFERRED),
        }
    }

    /// True while the WebSocket API connection is open (orders go over it; otherwise over REST).
    pub fn is_open(&self) -> bool {
        self.conn.as_ref().is_some_and(WsConn::is_open)
    }

    /// True once `session.logon` was accepted on the open connection (orders then carry no signature).
    pub fn is_logged_on(&self) -> bool {
        self.logged_on
    }

    /// Requests awaiting an answer.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Orders whose outcome is being settled.
    pub fn unknown_outcomes(&self) -> usize {
        self.unknowns.len()
    }

    /// REST jobs handed to the worker and not answered yet.
    pub fn rest_in_flight(&self) -> usize {
        self.rest_in_flight
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<EntryStats> {
        &self.stats
    }

    /// The next message for the venue (acknowledgements, rejections, halts, alerts, read-only).
    #[inline]
    pub fn next_inbound(&mut self) -> Option<Inbound> {
        self.out.pop_front()
    }

    fn emit(&mut self, m: Inbound) {
        // Bounded: each request yields at most three messages and the venue drains them every poll.
        if self.out.len() < MAX_OUT {
            self.out.push_back(m);
        }
    }

    fn reject(&mut self, cid: ClientOrderId, code: i32) {
        self.emit(Inbound::Rejected {
            client_id: cid,
            code,
            ts_ms: wall_ms(),
        });
    }

    fn acked(&mut self, cid: ClientOrderId, oid: u64) {
        self.emit(Inbound::Ack {
            client_id: cid,
            exchange_id: oid,
            ts_ms: wall_ms(),
        });
    }

    fn post(&mut self, j: RestJob) -> bool {
        if self.rest.try_send(j).is_ok() {
            if !matches!(j, RestJob::Reconcile | RestJob::Note(_)) {
                self.rest_in_flight += 1;
            }
            true
        } else {
            false
        }
    }

    fn note(&mut self, n: EntryNote) {
        // Best effort: a full queue loses a log line, never blocks the engine.
        let _ = self.rest.try_send(RestJob::Note(n));
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// One step: (re)connect, read answers, expire requests without one, drive the unknowns' timers, end a rate
    /// limit wait. Returns true when something happened.
    pub fn poll(&mut self, now: Instant) -> bool {
        let mut busy = false;
        if self.conn.is_none() && now >= self.reconnect_at {
            self.connect(now);
        }
        for _ in 0..MAX_FRAMES_PER_POLL {
            let Some(c) = self.conn.as_mut() else {
                break;
            };
            match c.poll(now) {
                WsEvent::Idle => break,
                WsEvent::Opened => {
                    busy = true;
                    self.opened();
                }
                WsEvent::Frame => {
                    busy = true;
                    let server_now = self.clock.server_now_ms();
                    // Read in place; a frame that is not an answer is ignored.
                    let said = answer::parse(c.frame()).ok().map(|a| Said {
                        id: a.id,
                        status: a.status.unwrap_or(0),
                        code: a.code.unwrap_or(0),
                        order_id: a.order_id.unwrap_or(0),
                        retry_after: ws_retry_after(&a, server_now),
                        limit_wait: limit_to_wait_for(&a, server_now),
                        new_order: a.new_order,
                    });
                    if let Some(s) = said {
                        self.settle(&s, now);
                        // After the answer itself, so a 429 is reported as one first.
                        self.watch_limits(&s, now);
                    }
                }
                WsEvent::Closed(_) => {
                    busy = true;
                    self.closed(now);
                }
            }
        }
        if !self.pending.is_empty() {
            self.check_timeouts(now);
        }
        if !self.unknowns.is_empty() {
            self.drive_unknowns(now);
        }
        if self.switching.is_some() {
            self.drive_switch(now);
        } else if let Some(sw) = self.switch_rx.as_ref().and_then(|r| r.try_recv().ok()) {
            self.begin_switch(sw, now);
        }
        if let Some(t) = self.rate_halt_until {
            if now >= t {
                self.rate_halt_until = None;
                self.note(EntryNote::RateWaitOver);
                self.emit(Inbound::Clear(HaltReason::RateLimited));
            }
        }
        busy
    }

    fn connect(&mut self, now: Instant) {
        match WsConn::connect(&self.ws_cfg, now) {
            Ok(c) => self.conn = Some(c),
            Err(_) => self.backoff(now),
        }
    }

    fn backoff(&mut self, now: Instant) {
        if self.attempt < 3 {
            self.note(EntryNote::Unavailable);
        }
        self.attempt = self.attempt.saturating_add(1);
        let ms = (100u64 << self.attempt.min(6)).min(5000);
        self.reconnect_at = now + Duration::from_millis(ms);
    }

    fn opened(&mut self) {
        self.attempt = 0;
        self.logged_on = false;
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        self.note(EntryNote::Connected);
        if self.connected_before {
            // Answers lost with the old connection were queried; the rest is compared by reconciliation.
            self.post(RestJob::Reconcile);
        }
        self.connected_before = true;
        if matches!(self.encoder.signer(), Signer::Ed25519(_)) {
            let id = self.take_id();
            let ts = self.clock.server_now_ms();
            let sent = match (self.encoder.ws_session_logon(id, ts), self.conn.as_mut()) {
                (Some(Ok(b)), Some(c)) => c.send_text(b).is_ok(),
                _ => false,
            };
            if sent {
                // The id and symbol fields are unused for the logon.
                self.pending.push(Pending {
                    id,
                    cid: logon_cid(),
                    symbol: logon_symbol(),
                    sent: Instant::now(),
                    kind: Kind::Logon,
                });
            }
        }
    }

    fn closed(&mut self, now: Instant) {
        let was_open = self.logged_on || self.conn.as_ref().and_then(WsConn::opened_at).is_some();
        self.conn = None;
        self.logged_on = false;
        if was_open {
            self.reconnect_at = now + Duration::from_millis(100);
        } else {
            self.backoff(now);
        }
        // Everything in flight has an unknown outcome now (a status query in flight is simply asked again).
        while let Some(p) = self.pending.pop() {
            match p.kind {
                Kind::Query => self.query_failed(p.cid, true),
                _ => self.unknown(p.cid, p.symbol, p.kind, now),
            }
        }
    }

    fn wire(req: &OrderRequest, cid: ClientOrderId) -> WireOrder {
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

    fn precision_of(&self, s: Symbol) -> Option<WirePrecision> {
        self.precision
            .iter()
            .find(|(x, _)| *x == s)
            .map(|(_, p)| *p)
    }

    /// Sends an approved order: `order.place` on the open connection, else the REST worker. Refusals and
    /// answers arrive through [`OrderEntry::next_inbound`].
    pub fn place(&mut self, req: OrderRequest, cid: ClientOrderId) {
        if self.switching.is_some() {
            if self.deferred.len() < MAX_DEFERRED {
                self.deferred.push_back(Deferred::Place(req, cid, None));
            } else {
                self.reject(cid, super::REJECT_FULL);
            }
            return;
        }
        self.place_inner(req, cid, false, None, Instant::now());
    }

    /// Spot: sends an exit that cancels the symbol's resting stop `stop_cid` in the same request
    /// (`order.cancelReplace` with `cancelReplaceMode=ALLOW_FAILURE`, else the REST worker's
    /// `POST /api/v3/order/cancelReplace`). The stop locks the balance the exit sells, so a plain `order.place`
    /// would be refused (-2010) while it rests. The exit is acknowledged or rejected by the new-order leg of
    /// the answer; whether the cancel itself succeeded (the stop may have triggered already) does not matter
    /// for it: the stop is gone either way.
    ///
    /// Returns false when the exit was refused here and never left (read-only, a rate-limit wait, tables full,
    /// no precision for the symbol): the stop then still rests. True when it went out, was handed to the REST
    /// worker, or waits for a key switch to end.
    pub fn place_replacing(
        &mut self,
        req: OrderRequest,
        cid: ClientOrderId,
        stop_cid: ClientOrderId,
    ) -> bool {
        if self.switching.is_some() {
            if self.deferred.len() < MAX_DEFERRED {
                self.deferred
                    .push_back(Deferred::Place(req, cid, Some(stop_cid)));
                return true;
            }
            self.reject(cid, super::REJECT_FULL);
            return false;
        }
        self.place_inner(req, cid, false, Some(stop_cid), Instant::now())
    }

    /// The market whose orders the encoder writes (the venue sets it, [`OrderEntry::set_market`]).
    pub fn market(&self) -> Market {
        self.encoder.market()
    }

    /// Encodes `market`'s orders from now on (the live venue calls it with its own market when the entry is
    /// attached, so a spot venue never writes a futures request). Kept across key switches.
    pub fn set_market(&mut self, market: Market) {
        self.encoder.set_market(market);
    }

    fn begin_switch(&mut self, sw: EntrySwitch, now: Instant) {
        if self.read_only {
            let _ = sw.reply.send(Err("order entry is read-only after Binance refused the old key: restart the bot with the new key"));
            return;
        }
        let in_flight = self
            .pending
            .iter()
            .filter(|p| p.kind != Kind::Logon)
            .count();
        self.switching = Some(Switching {
            reply: sw.reply.clone(),
            budget: sw.drain_budget,
            sw: Some(sw),
            began: now,
            in_flight,
            queried: 0,
            swapped: None,
        });
        self.drive_switch(now);
    }

    fn drive_switch(&mut self, now: Instant) {
        let Some(s) = self.switching.as_mut() else {
            return;
        };
        match s.swapped {
            None => {
                if !self.pending.is_empty() && now.saturating_duration_since(s.began) < s.budget {
                    return;
                }
                s.queried = self.pending.len();
                let Some(sw) = s.sw.take() else {
                    return;
                };
                // Late answers of the old key: queried by client id after the swap, never resent.
                while let Some(p) = self.pending.pop() {
                    match p.kind {
                        Kind::Query => self.query_failed(p.cid, true),
                        _ => self.unknown(p.cid, p.symbol, p.kind, now),
                    }
                }
                if self.read_only {
                    return self.end_switch(Err("Binance refused the old key while its orders were settled: order entry is read-only; restart the bot with the new key"));
                }
                // The swap: encoder here and the control plane's REST key together, with nothing in flight. The
                // new key's encoder writes the same market's orders as the old one.
                let market = self.encoder.market();
                self.encoder = sw.encoder;
                self.encoder.set_market(market);
                (sw.on_swap)();
                let at = wall_ms();
                self.close();
                self.logged_on = false;
                // A fresh session, not a reconnect after a loss: nothing to compare for it.
                self.connected_before = false;
                self.attempt = 0;
                self.connect(now);
                if let Some(s) = self.switching.as_mut() {
                    s.swapped = Some((now, at));
                }
            }
            Some((t, _)) => {
                let logon_pending = self.pending.iter().any(|p| p.kind == Kind::Logon);
                let up = self.is_open() && !logon_pending;
                if self.read_only {
                    return self.end_switch(Err("Binance refused the new key's session.logon: order entry is read-only; check the new key"));
                }
                // An Ed25519 key logs the new session on: wait for it (bounded) so the next order uses it.
                if up || now.saturating_duration_since(t) > 2 * ANSWER_TIMEOUT {
                    let ws_api = match (self.is_open(), self.logged_on) {
                        (true, true) => "logged on",
                        (true, false) => "connected",
                        (false, _) => "reconnecting (REST meanwhile)",
                    };
                    self.end_switch(Ok(ws_api));
                }
            }
        }
    }

    fn end_switch(&mut self, r: Result<&'static str, &'static str>) {
        let Some(s) = self.switching.take() else {
            return;
        };
        let r = r.map(|ws_api| EntrySwitched {
            in_flight: s.in_flight,
            queried: s.queried,
            ws_api,
            switched_at_ms: s.swapped.map_or(0, |(_, at)| at),
        });
        if r.is_ok() {
            self.note(EntryNote::Switched {
                in_flight: s.in_flight,
                queried: s.queried,
            });
        }
        let _ = s.reply.send(r);
        let now = Instant::now();
        while let Some(d) = self.deferred.pop_front() {
            match d {
                Deferred::Place(req, cid, stop) => {
                    self.place_inner(req, cid, false, stop, now);
                }
                Deferred::Cancel(symbol, cid) => {
                    self.cancel(symbol, cid);
                }
            }
        }
    }

    /// Places (or hands to the REST worker) one order; false when it was refused here and never left.
    fn place_inner(
        &mut self,
        req: OrderRequest,
        cid: ClientOrderId,
        resent: bool,
        cancel_stop: Option<ClientOrderId>,
        now: Instant,
    ) -> bool {
        let refused = |e: &mut Self, code: i32| {
            e.reject(cid, code);
            false
        };
        if self.read_only {
            return refused(self, -2015);
        }
        if self.rate_halt_until.is_some() || self.clock.blocked_until_ms() > wall_ms() {
            return refused(self, -1003);
        }
        let Some(p) = self.precision_of(req.symbol) else {
            return refused(self, -1121);
        };
        if self.pending.len() >= MAX_PENDING {
            return refused(self, super::REJECT_FULL);
        }
        let wire = Self::wire(&req, cid);
        self.stats.placed.fetch_add(1, Ordering::Relaxed);
        if self.is_open() {
            let id = self.take_id();
            let ts = self.clock.server_now_ms();
            let logged_on = self.logged_on;
            let encoded = match cancel_stop {
                Some(stop) => {
                    let c = CancelReplace {
                        cancel_client_id: stop,
                        cancel_new_client_id: None,
                    };
                    self.encoder
                        .ws_order_cancel_replace(id, &wire, &p, &c, ts, logged_on)
                }
                None => self.encoder.ws_order_place(id, &wire, &p, ts, logged_on),
            };
            let sent = match (encoded, self.conn.as_mut()) {
                (Ok(b), Some(c)) => c.send_text(b),
                (Err(_), _) => return refused(self, -1111),
                (Ok(_), None) => Err(crate::net::mio_ws::WsError::Local),
            };
            let kind = Kind::Place(req, resent, cancel_stop);
            return match sent {
                Ok(()) => {
                    self.pending.push(Pending {
                        id,
                        cid,
                        symbol: req.symbol,
                        sent: now,
                        kind,
                    });
                    true
                }
                // No room in the connection's output: the frame was never queued, so it never left.
                Err(crate::net::mio_ws::WsError::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock =>
                {
                    refused(self, -1001)
                }
                Err(_) => {
                    // The socket failed while writing: the frame may or may not have left.
                    self.unknown(cid, req.symbol, kind, now);
                    self.closed(now);
                    true
                }
            };
        }
        self.stats.rest_fallback.fetch_add(1, Ordering::Relaxed);
        if !self.post(RestJob::Place {
            req,
            client_id: cid,
            resent,
            cancel_stop,
        }) {
            return refused(self, super::REJECT_FULL);
        }
        true
    }

    /// Asks the exchange to cancel an order by client id (`order.cancel`, else the REST worker). The user data
    /// stream reports the cancel; a refusal (already filled) needs nothing.
    pub fn cancel(&mut self, symbol: Symbol, cid: ClientOrderId) -> bool {
        if self.read_only {
            return false;
        }
        if self.switching.is_some() {
            if self.deferred.len() < MAX_DEFERRED {
                self.deferred.push_back(Deferred::Cancel(symbol, cid));
                return true;
            }
            return false;
        }
        if self.is_open() && self.pending.len() < MAX_PENDING {
            let id = self.take_id();
            let ts = self.clock.server_now_ms();
            let logged_on = self.logged_on;
            let c = CancelRequest {
                symbol,
                order: CancelRef::ClientId(cid),
            };
            let sent = match (
                self.encoder.ws_order_cancel(id, &c, ts, logged_on),
                self.conn.as_mut(),
            ) {
                (Ok(b), Some(conn)) => conn.send_text(b).is_ok(),
                _ => false,
            };
            if sent {
                self.pending.push(Pending {
                    id,
                    cid,
                    symbol,
                    sent: Instant::now(),
                    kind: Kind::Cancel,
                });
                return true;
            }
        }
        self.post(RestJob::Cancel {
            symbol,
            client_id: cid,
        })
    }

    /// Sends `order.status` for `cid` when the connection is open: the id of the request in flight.
    fn ws_status_query(&mut self, symbol: Symbol, cid: ClientOrderId, now: Instant) -> Option<u64> {
        if !self.is_open() || self.pending.len() >= MAX_PENDING {
            return None;
        }
        let id = self.take_id();
        let c = CancelRequest {
            symbol,
            order: CancelRef::ClientId(cid),
        };
        let ts = self.clock.server_now_ms();
        let logged_on = self.logged_on;
        let sent = match (
            self.encoder.ws_order_status(id, &c, ts, logged_on),
            self.conn.as_mut(),
        ) {
            (Ok(b), Some(conn)) => conn.send_text(b).is_ok(),
            _ => false,
        };
        if !sent {
            return None;
        }
        self.pending.push(Pending {
            id,
            cid,
            symbol,
            sent: now,
            kind: Kind::Query,
        });
        Some(id)
    }

    fn check_timeouts(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.pending.len() {
            if now.saturating_duration_since(self.pending[i].sent) > ANSWER_TIMEOUT {
                let p = self.pending.swap_remove(i);
                match p.kind {
                    Kind::Query => self.query_failed(p.cid, true),
                    Kind::Logon => {}
                    _ => self.unknown(p.cid, p.symbol, p.kind, now),
                }
            } else {
                i += 1;
            }
        }
    }

    /// Unknown outcome: into the table of unknowns, queried by client id, never resent.
    fn unknown(&mut self, cid: ClientOrderId, symbol: Symbol, kind: Kind, now: Instant) {
        let Kind::Place(..) = kind else {
            return;
        };
        if self.unknowns.iter().any(|u| u.cid == cid) {
            return;
        }
        if self.unknowns.len() >= MAX_UNKNOWN {
            // No room to settle it here: given up at once, reconciliation compares with the exchange.
            self.reject(cid, -1007);
            self.post(RestJob::Reconcile);
            return;
        }
        self.stats.queried.fetch_add(1, Ordering::Relaxed);
        self.note(EntryNote::Unknown(cid));
        self.unknowns.push(Unknown {
            cid,
            symbol,
            since: now,
            next_at: now,
            rounds: 0,
            ws_query: None,
            rest_query: false,
            ws_absent: false,
            rest_absent: false,
        });
        self.drive_unknowns(now);
    }

    /// One look at the unknowns' timers: a round of queries for each one that is due and has none in flight,
    /// and the deadline for the ones past it.
    fn drive_unknowns(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.unknowns.len() {
            let u = self.unknowns[i];
            if now.saturating_duration_since(u.since) >= UNKNOWN_DEADLINE {
                self.unknowns.swap_remove(i);
                self.stats.expired.fetch_add(1, Ordering::Relaxed);
                self.note(EntryNote::Expired(u.cid));
                self.reject(u.cid, -1007);
                self.post(RestJob::Reconcile);
                continue;
            }
            if now >= u.next_at && u.ws_query.is_none() && !u.rest_query {
                let ws_query = if u.ws_absent {
                    None
                } else {
                    self.ws_status_query(u.symbol, u.cid, now)
                };
                let rest_query = !u.rest_absent
                    && self.post(RestJob::Query {
                        symbol: u.symbol,
                        client_id: u.cid,
                    });
                let wait = QUERY_BACKOFF_MIN
                    .saturating_mul(1u32 << u.rounds.min(8))
                    .min(QUERY_BACKOFF_MAX);
                let x = &mut self.unknowns[i];
                x.rounds += 1;
                x.next_at = now + wait;
                x.ws_query = ws_query;
                x.rest_query = rest_query;
            }
            i += 1;
        }
    }

    fn unknown_index(&self, cid: ClientOrderId) -> Option<usize> {
        self.unknowns.iter().position(|u| u.cid == cid)
    }

    fn found(&mut self, cid: ClientOrderId, oid: u64) {
        if let Some(i) = self.unknown_index(cid) {
            self.unknowns.swap_remove(i);
            self.note(EntryNote::Found(cid));
            self.acked(cid, oid);
        }
    }

    fn absent(&mut self, cid: ClientOrderId, ws: bool) {
        let Some(i) = self.unknown_index(cid) else {
            return;
        };
        let u = &mut self.unknowns[i];
        if ws {
            u.ws_absent = true;
            u.ws_query = None;
        } else {
            u.rest_absent = true;
            u.rest_query = false;
        }
        if u.ws_absent && u.rest_absent {
            // Settled: both sides of the exchange say it was never placed.
            self.unknowns.swap_remove(i);
            self.note(EntryNote::Absent(cid));
            self.reject(cid, -2013);
        }
    }

    fn query_failed(&mut self, cid: ClientOrderId, ws: bool) {
        if let Some(i) = self.unknown_index(cid) {
            let u = &mut self.unknowns[i];
            if ws {
                u.ws_query = None;
            } else {
                u.rest_query = false;
            }
        }
    }

    fn query_key_rejected(&mut self, cid: ClientOrderId, code: i32) {
        self.key_rejected(code);
        if let Some(i) = self.unknown_index(cid) {
            self.unknowns.swap_remove(i);
            self.reject(cid, code);
        }
    }

    fn key_rejected(&mut self, code: i32) {
        if self.read_only {
            return;
        }
        self.read_only = true;
        self.note(EntryNote::KeyRejected(code));
        self.emit(Inbound::ReadOnly);
        self.emit(Inbound::Halt(HaltReason::KeyRejected));
        self.emit(Inbound::Alert(AlertKind::KeyInvalid));
    }

    fn rate_limited(&mut self, wait: Duration, now: Instant) {
        let until = now + wait;
        if self.rate_halt_until.is_none_or(|t| t < until) {
            if self.rate_halt_until.is_none() {
                self.note(EntryNote::RateLimited(wait.as_millis() as u64));
                self.emit(Inbound::Halt(HaltReason::RateLimited));
                self.emit(Inbound::Alert(AlertKind::ExchangeErrors));
            }
            self.rate_halt_until = Some(until);
        }
    }

    fn watch_limits(&mut self, s: &Said, now: Instant) {
        let Some((l, left)) = s.limit_wait else {
            return;
        };
        let until = now + left + WINDOW_MARGIN;
        if self.rate_halt_until.is_some_and(|t| t >= until) {
            return;
        }
        if self.rate_halt_until.is_none() {
            self.note(EntryNote::NearLimit {
                kind: l.kind,
                count: l.count,
                limit: l.limit,
                window_ms: l.window_ms,
                wait_ms: left.as_millis() as u64,
            });
            self.emit(Inbound::Halt(HaltReason::RateLimited));
        }
        self.rate_halt_until = Some(until);
    }

    /// A definite failure or an unknown outcome of a placement (WebSocket API or REST).
    fn failed(
        &mut self,
        cid: ClientOrderId,
        req: OrderRequest,
        resent: bool,
        cancel_stop: Option<ClientOrderId>,
        o: RestOutcome,
        now: Instant,
    ) {
        match o {
            RestOutcome::Ok { order_id } => self.acked(cid, order_id),
            RestOutcome::KeyRejected { code } => {
                self.key_rejected(code);
                self.reject(cid, code);
            }
            RestOutcome::RateLimited { retry_after_ms } => {
                self.rate_limited(Duration::from_millis(retry_after_ms), now);
                self.reject(cid, -1003);
            }
            RestOutcome::Refused { code: -1021 } if !resent => {
                self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                self.note(EntryNote::Resync);
                if !self.post(RestJob::Resync {
                    req,
                    client_id: cid,
                    cancel_stop,
                }) {
                    self.reject(cid, -1021);
                }
            }
            RestOutcome::Refused { code } => self.reject(cid, code),
            RestOutcome::NotSent => self.reject(cid, -1001),
            RestOutcome::Unknown => {
                self.unknown(cid, req.symbol, Kind::Place(req, resent, cancel_stop), now)
            }
        }
    }

    /// Applies the REST worker's answer to a job this entry posted.
    pub fn on_rest(&mut self, job: RestJob, o: RestOutcome) {
        let now = Instant::now();
        if !matches!(job, RestJob::Reconcile | RestJob::Note(_)) {
            self.rest_in_flight = self.rest_in_flight.saturating_sub(1);
        }
        match job {
            RestJob::Place {
                req,
                client_id,
                resent,
                cancel_stop,
            } => self.failed(client_id, req, resent, cancel_stop, o, now),
            RestJob::Query { client_id, .. } => match o {
                RestOutcome::Ok { order_id } => self.found(client_id, order_id),
                RestOutcome::Refused { code: -2013 } => self.absent(client_id, false),
                RestOutcome::KeyRejected { code } => self.query_key_rejected(client_id, code),
                _ => self.query_failed(client_id, false),
            },
            RestJob::Cancel { .. } => {
                if let RestOutcome::KeyRejected { code } = o {
                    self.key_rejected(code);
                }
            }
            RestJob::Resync {
                req,
                client_id,
                cancel_stop,
            } => {
                self.place_inner(req, client_id, true, cancel_stop, now);
            }
            RestJob::Reconcile | RestJob::Note(_) => {}
        }
    }

    fn settle(&mut self, s: &Said, now: Instant) {
        let Some(id) = s.id else {
            // Unsolicited (`"id":null`): a key revoked mid-session.
            if s.code == -2015 || s.code == -2014 || s.status == 401 {
                self.key_rejected(s.code);
            }
            return;
        };
        let Some(i) = self.pending.iter().position(|p| p.id == id) else {
            return;
        };
        let p = self.pending.swap_remove(i);
        if let Kind::Query = p.kind {
            match (s.status, s.code) {
                (200, _) => self.found(p.cid, s.order_id),
                (_, -2013) => self.absent(p.cid, true),
                (_, -2014 | -2015) | (401, _) => self.query_key_rejected(p.cid, s.code),
                _ => self.query_failed(p.cid, true),
            }
            return;
        }
        let outcome = if let Some(leg) = s.new_order.filter(|_| matches!(p.kind, Kind::Place(..))) {
            // A cancel-replace: the new order's leg is the exit's fate (200, or 409 with the cancel failed
            // because the stop triggered: placed; 409/400 with it refused: its own code, e.g. -2010).
            match leg.result {
                LegResult::Success => RestOutcome::Ok {
                    order_id: leg.order_id.unwrap_or(0),
                },
                LegResult::Failure | LegResult::NotAttempted => RestOutcome::Refused {
                    code: leg.code.unwrap_or(s.code),
                },
            }
        } else if s.status == 200 {
            RestOutcome::Ok {
                order_id: s.order_id,
            }
        } else if s.status == 429 || s.status == 418 {
            let d = s
                .retry_after
                .unwrap_or(Duration::from_secs(if s.status == 418 { 120 } else { 5 }));
            RestOutcome::RateLimited {
                retry_after_ms: d.as_millis() as u64,
            }
        } else if s.code == -2014 || s.code == -2015 || s.status == 401 {
            RestOutcome::KeyRejected { code: s.code }
        } else if s.status >= 500 {
            RestOutcome::Unknown
        } else {
            RestOutcome::Refused { code: s.code }
        };
        match p.kind {
            Kind::Logon => match outcome {
                RestOutcome::Ok { .. } => {
                    self.logged_on = true;
                    self.note(EntryNote::LoggedOn);
                }
                // Refused: each request is signed instead.
                RestOutcome::KeyRejected { code } => {
                    self.note(EntryNote::LogonRefused);
                    self.key_rejected(code);
                }
                _ => self.note(EntryNote::LogonRefused),
            },
            Kind::Cancel => {
                if let RestOutcome::KeyRejected { code } = outcome {
                    self.key_rejected(code);
                }
            }
            Kind::Place(req, resent, stop) => self.failed(p.cid, req, resent, stop, outcome, now),
            Kind::Query => {}
        }
    }

    /// Closes the connection (best effort close frame). Requests in flight stay unsettled.
    pub fn close(&mut self) {
        if let Some(mut c) = self.conn.take() {
            c.close();
        }
    }
}

fn logon_cid() -> ClientOrderId {
    // A valid literal (letters only, well under the length limit).
    ClientOrderId::new("logon").unwrap_or_else(|_| unreachable!("valid literal"))
}

fn logon_symbol() -> Symbol {
    // A valid literal (letters only, well under the length limit).
    Symbol::new("LOGON").unwrap_or_else(|_| unreachable!("valid literal"))
}
