//! The live market data feed: one combined-stream connection (`/stream?streams=a/b/...`) polled inside the
//! engine's busy loop through the non-blocking [`super::mio_ws`] client. [`WsFeed::poll`] never blocks and,
//! once connected, never allocates: each frame is handed to the engine as a slice of the client's read buffer.
//!
//! - Ping/pong: pings are answered with masked pongs as they are read (from a buffer allocated per connection).
//! - Reconnect: on any error, close frame or silence longer than [`WsFeedConfig::silence_ms`], reconnect with
//!   jittered exponential backoff (100 ms doubling to 5 s, ±50 %) kept as a next-attempt deadline, not a sleep;
//!   a connection that had been up for [`STABLE_MS`] reconnects at once. The combined-stream URL resubscribes.
//! - 24-hour rollover: after [`WsFeedConfig::rollover_ms`] (default 23 h 50 min, before Binance cuts at 24 h)
//!   a second connection is opened while the first keeps delivering; once it is open it becomes the current
//!   one and the old one is still read for [`DRAIN_MS`] (events already in flight on it), then closed: no gap.
//!   During the overlap an event may arrive twice; depth updates are de-duplicated by `u`, book tickers are
//!   idempotent.
//! - The engine's own staleness guard (`EngineParams::feed_stale_ms`) halts entries while no data flows.
//! - Depth (optional, [`DepthSync`]): `depthUpdate` frames keep a local L2 book per symbol
//!   ([`crate::book::l2::L2Book`]) synced from a REST snapshot (`GET /fapi/v1/depth`) fetched by the caller's
//!   function on a side thread (`aegis-depth`; the engine thread only `try_recv`s the result). While a snapshot
//!   is pending, the symbol's updates are buffered (raw bytes, reused buffers) and replayed onto it: updates
//!   older than the snapshot are dropped, the first kept one must straddle it, then each `pu` must equal the
//!   previous `u`; a gap resets the book and a new snapshot is requested ([`FeedCounters::depth_resyncs`]). The
//!   books sit behind a mutex readers share (uncontended on the hot path); frames still reach the engine
//!   unchanged.

use super::mio_ws::{WsClientConfig, WsConn, WsEvent};
use crate::book::l2::{L2Book, L2Error, L2Outcome};
use crate::feed::parse::{DepthUpdate, MarketMsg, Parser};
use crate::feed::FeedPoll;
use aegis_shared::{Price, Qty, Symbol};
use crossbeam_channel::{Receiver, Sender};
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the old connection is still read after a rollover switched to the new one.
pub const DRAIN_MS: u64 = 250;
/// A connection that was open at least this long reconnects without backoff when it ends.
pub const STABLE_MS: u64 = 5_000;
/// Depth updates buffered per symbol while its snapshot is pending; more, and the oldest are dropped (the
/// snapshot then fails the straddle check and is fetched again).
pub const DEPTH_PENDING_MAX: usize = 4096;
/// Wait after a failed snapshot fetch before asking again.
const SNAPSHOT_RETRY: Duration = Duration::from_secs(1);

/// A depth snapshot (`GET /fapi/v1/depth`): `lastUpdateId`, bids and asks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DepthSnapshot {
    /// `lastUpdateId`.
    pub last_update_id: u64,
    /// Bid levels.
    pub bids: Vec<(Price, Qty)>,
    /// Ask levels.
    pub asks: Vec<(Price, Qty)>,
}

/// Fetches a symbol's depth snapshot (blocking: it runs on the `aegis-depth` side thread; `None` on failure,
/// retried at a later update).
pub type SnapshotFn = Arc<dyn Fn(Symbol) -> Option<DepthSnapshot> + Send + Sync>;

/// Local order books kept by the feed, per symbol.
pub type DepthBooks = Arc<Mutex<HashMap<Symbol, L2Book>>>;

/// Depth book maintenance.
#[derive(Clone)]
pub struct DepthSync {
    /// Snapshot source.
    pub fetch: SnapshotFn,
    /// Levels kept per side.
    pub capacity: usize,
}

impl std::fmt::Debug for DepthSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DepthSync")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl PartialEq for DepthSync {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.fetch, &o.fetch) && self.capacity == o.capacity
    }
}
impl Eq for DepthSync {}

/// A TLS client configuration to use instead of the webpki roots (tests trusting a self-signed certificate).
#[derive(Clone)]
pub struct TlsOverride(pub Arc<rustls::ClientConfig>);

impl std::fmt::Debug for TlsOverride {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsOverride(..)")
    }
}

impl PartialEq for TlsOverride {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.0, &o.0)
    }
}
impl Eq for TlsOverride {}

/// Feed settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsFeedConfig {
    /// Full combined-stream URL, e.g. `wss://fstream.binance.com/stream?streams=btcusdt@bookTicker/btcusdt@aggTrade`.
    pub url: String,
    /// Open a fresh connection after this long (ms).
    pub rollover_ms: u64,
    /// Reconnect when nothing (not even a ping) arrived for this long (ms).
    pub silence_ms: u64,
    /// Keep local depth books from the `@depth` streams in the URL (None: depth frames are only forwarded).
    /// The bot itself subscribes to no `@depth` stream (no strategy reads an L2 book yet).
    pub depth: Option<DepthSync>,
    /// TLS settings for `wss://` (None: the webpki roots).
    pub tls: Option<TlsOverride>,
}

/// Default rollover: 23 h 50 min, ten minutes before Binance cuts a connection at 24 h.
pub const DEFAULT_ROLLOVER_MS: u64 = (23 * 60 + 50) * 60 * 1000;

impl WsFeedConfig {
    /// Defaults for `url`: rollover after 23 h 50 min, reconnect after 30 s of silence.
    pub fn new(url: String) -> Self {
        Self {
            url,
            rollover_ms: DEFAULT_ROLLOVER_MS,
            silence_ms: 30_000,
            depth: None,
            tls: None,
        }
    }
}

/// Counters, shared with readers on other threads.
#[derive(Debug, Default)]
pub struct FeedCounters {
    /// Connections opened (upgrade completed), rollovers included.
    pub connects: AtomicU64,
    /// Frames dropped. Always 0 since frames are read on the engine thread (no queue to overflow); kept so
    /// readers of the counters need not change.
    pub dropped: AtomicU64,
    /// Rollovers done.
    pub rollovers: AtomicU64,
    /// Connections that ended or failed (errors, close frames, silence), rollover closes excluded.
    pub disconnects: AtomicU64,
    /// Pings answered.
    pub pongs: AtomicU64,
    /// Depth updates applied to a local book.
    pub depth_applied: AtomicU64,
    /// Depth snapshots loaded (the first per symbol, and one per resync).
    pub depth_snapshots: AtomicU64,
    /// Sequence gaps (`pu` != previous `u`, or no straddling first event) that forced a resync.
    pub depth_resyncs: AtomicU64,
}

/// Which connection the last frame came from.
#[derive(Clone, Copy)]
enum Slot {
    Cur,
    Old,
}

/// The feed. [`WsFeed::poll`] it from one thread (the engine's); see the module docs.
#[derive(Debug)]
pub struct WsFeed {
    rollover: Duration,
    silence: Duration,
    client: WsClientConfig,
    /// The connection frames come from (possibly still connecting).
    cur: Option<WsConn>,
    /// The rollover's new connection while it connects.
    next: Option<WsConn>,
    /// The previous connection after a rollover, read until the deadline.
    old: Option<(WsConn, Instant)>,
    /// When to try connecting `cur` again.
    retry_at: Instant,
    /// When to try the rollover connection again after it failed.
    next_retry_at: Instant,
    attempt: u32,
    next_attempt: u32,
    depth: Option<Depth>,
    /// Counters (connects, rollovers, depth).
    pub counters: Arc<FeedCounters>,
    /// Local depth books (empty without [`WsFeedConfig::depth`]).
    pub books: DepthBooks,
}

impl Drop for WsFeed {
    fn drop(&mut self) {
        for c in [
            self.cur.as_mut(),
            self.next.as_mut(),
            self.old.as_mut().map(|o| &mut o.0),
        ]
        .into_iter()
        .flatten()
        {
            c.close();
        }
    }
}

impl WsFeed {
    /// Prepares the feed; the first connection attempt happens at the first [`WsFeed::poll`] (on the thread
    /// that polls). Starts the `aegis-depth` snapshot thread when depth books are configured; that is the only
    /// error. Connection problems are retried, never returned.
    pub fn start(cfg: WsFeedConfig) -> std::io::Result<Self> {
        let counters = Arc::new(FeedCounters::default());
        let books: DepthBooks = Arc::default();
        let depth = match cfg.depth.clone() {
            Some(d) => Some(Depth::start(d, books.clone())?),
            None => None,
        };
        let mut client = WsClientConfig::new(cfg.url.clone());
        client.tls = cfg.tls.as_ref().map(|t| t.0.clone());
        let now = Instant::now();
        Ok(Self {
            rollover: Duration::from_millis(cfg.rollover_ms.max(1)),
            silence: Duration::from_millis(cfg.silence_ms.max(1)),
            client,
            cur: None,
            next: None,
            old: None,
            retry_at: now,
            next_retry_at: now,
            attempt: 0,
            next_attempt: 0,
            depth,
            counters,
            books,
        })
    }

    /// True while a connection is open (frames can flow).
    pub fn is_connected(&self) -> bool {
        self.cur.as_ref().is_some_and(WsConn::is_open)
    }

    /// The next frame, if one arrived. Never blocks; bounded work per call.
    #[inline]
    pub fn poll(&mut self) -> FeedPoll<'_> {
        let now = Instant::now();
        if let Some(d) = self.depth.as_mut() {
            d.pump(&self.counters, now);
        }
        self.manage(now);
        let Some(slot) = self.read(now) else {
            return FeedPoll::Idle;
        };
        let bytes = match slot {
            Slot::Cur => self.cur.as_ref().map(WsConn::frame),
            Slot::Old => self.old.as_ref().map(|o| o.0.frame()),
        }
        .unwrap_or(&[]);
        if let Some(d) = self.depth.as_mut() {
            d.on_frame(bytes, &self.counters, now);
        }
        FeedPoll::Msg(bytes)
    }

    /// Connection housekeeping: (re)connect, rollover, silence.
    #[inline]
    fn manage(&mut self, now: Instant) {
        if self.cur.is_none() && now >= self.retry_at {
            match WsConn::connect(&self.client, now) {
                Ok(c) => self.cur = Some(c),
                Err(_) => self.schedule_retry(now, None),
            }
        }
        if let Some(c) = &self.cur {
            if c.is_open() && now.duration_since(c.last_rx()) > self.silence {
                self.end_cur(now);
            }
        }
        let due = self
            .cur
            .as_ref()
            .and_then(WsConn::opened_at)
            .is_some_and(|t| now.duration_since(t) >= self.rollover)
            && self.old.is_none();
        if due && self.next.is_none() && now >= self.next_retry_at {
            if let Ok(c) = WsConn::connect(&self.client, now) {
                self.next = Some(c);
            }
        }
        if let Some(n) = self.next.as_mut() {
            match n.poll(now) {
                WsEvent::Opened => {
                    // The new connection is subscribed: it becomes current; the old one drains, then closes.
                    self.counters.connects.fetch_add(1, Ordering::Relaxed);
                    self.counters.rollovers.fetch_add(1, Ordering::Relaxed);
                    self.next_attempt = 0;
                    let new = self.next.take();
                    if let Some(prev) = std::mem::replace(&mut self.cur, new) {
                        self.old = Some((prev, now + Duration::from_millis(DRAIN_MS)));
                    }
                }
                WsEvent::Closed(_) => {
                    self.next = None;
                    self.next_retry_at = now + backoff(self.next_attempt);
                    self.next_attempt = self.next_attempt.saturating_add(1);
                }
                // No frames before Opened; the switch happens on Opened.
                WsEvent::Idle | WsEvent::Frame => {}
            }
        }
        if let Some((o, until)) = self.old.as_mut() {
            if now >= *until {
                o.close();
                self.old = None;
            }
        }
    }

    /// Reads at most one frame: the draining old connection first (its events are older).
    #[inline]
    fn read(&mut self, now: Instant) -> Option<Slot> {
        if let Some((o, _)) = self.old.as_mut() {
            let before = o.pongs();
            let ev = o.poll(now);
            self.counters
                .pongs
                .fetch_add(o.pongs() - before, Ordering::Relaxed);
            match ev {
                WsEvent::Frame => return Some(Slot::Old),
                WsEvent::Closed(_) => self.old = None,
                WsEvent::Idle | WsEvent::Opened => {}
            }
        }
        let c = self.cur.as_mut()?;
        let before = c.pongs();
        let ev = c.poll(now);
        let pongs = c.pongs() - before;
        if pongs > 0 {
            self.counters.pongs.fetch_add(pongs, Ordering::Relaxed);
        }
        match ev {
            WsEvent::Frame => Some(Slot::Cur),
            WsEvent::Opened => {
                self.counters.connects.fetch_add(1, Ordering::Relaxed);
                None
            }
            WsEvent::Idle => None,
            WsEvent::Closed(_) => {
                let was_up = c.opened_at();
                self.cur = None;
                self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
                self.schedule_retry(now, was_up);
                None
            }
        }
    }

    /// The current connection went silent: drop it and reconnect.
    fn end_cur(&mut self, now: Instant) {
        if let Some(mut c) = self.cur.take() {
            let was_up = c.opened_at();
            c.close();
            self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
            self.schedule_retry(now, was_up);
        }
    }

    fn schedule_retry(&mut self, now: Instant, was_up: Option<Instant>) {
        if was_up.is_some_and(|t| now.duration_since(t) >= Duration::from_millis(STABLE_MS)) {
            self.attempt = 0;
            self.retry_at = now;
        } else {
            self.retry_at = now + backoff(self.attempt);
            self.attempt = self.attempt.saturating_add(1);
        }
    }
}

/// Jittered exponential backoff: 100 ms doubling to 5 s, ±50 %.
fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
    let j = rand::thread_rng().gen_range(base / 2..=base + base / 2);
    Duration::from_millis(j)
}

/// Sync state of one symbol's book.
#[derive(Default)]
struct SymSync {
    /// Last applied `u`: an event seen twice (both connections during a rollover) is skipped, not taken for a
    /// gap.
    last_u: u64,
    /// Highest `u` buffered while waiting.
    buffered_u: u64,
    /// A snapshot request is out.
    waiting: bool,
    /// No new request before this (after a failed fetch).
    retry_after: Option<Instant>,
    /// Raw frames buffered while waiting, and their ranges in `buf` (capacity reused across resyncs).
    buf: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl SymSync {
    fn buffer(&mut self, bytes: &[u8], u: u64) {
        if self.spans.len() >= DEPTH_PENDING_MAX {
            self.buf.clear();
            self.spans.clear();
        }
        let at = self.buf.len();
        self.buf.extend_from_slice(bytes);
        self.spans.push((at, self.buf.len()));
        self.buffered_u = self.buffered_u.max(u);
    }
}

struct Depth {
    capacity: usize,
    books: DepthBooks,
    parser: Parser,
    syms: HashMap<Symbol, SymSync>,
    req: Sender<Symbol>,
    resp: Receiver<(Symbol, Option<DepthSnapshot>)>,
}

impl std::fmt::Debug for Depth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Depth")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// True for a depth diff: combined-stream frames name their stream first (`{"stream":"btcusdt@depth@100ms"`),
/// so only the head is searched; raw frames fall back to a full scan.
#[inline]
fn is_depth(b: &[u8]) -> bool {
    if b.starts_with(b"{\"stream\":\"") {
        let head = &b[..b.len().min(64)];
        head.windows(6).any(|w| w == b"@depth")
    } else {
        b.windows(11).any(|w| w == b"depthUpdate")
    }
}

/// Applies one depth update, counting it and moving `last_u` on; false when the book needs a fresh snapshot
/// (a gap, counted as a resync, or an update the book cannot take).
#[inline]
fn apply_counted(
    book: &mut L2Book,
    d: &DepthUpdate<'_>,
    last_u: &mut u64,
    c: &FeedCounters,
) -> bool {
    match book.apply(d) {
        Ok(L2Outcome::Applied) => {
            *last_u = d.final_update_id;
            c.depth_applied.fetch_add(1, Ordering::Relaxed);
            true
        }
        Ok(L2Outcome::Stale) => true,
        Err(e) => {
            if matches!(e, L2Error::Gap { .. }) {
                c.depth_resyncs.fetch_add(1, Ordering::Relaxed);
            }
            false
        }
    }
}

impl Depth {
    fn start(sync: DepthSync, books: DepthBooks) -> std::io::Result<Self> {
        let (req, req_rx) = crossbeam_channel::bounded::<Symbol>(64);
        let (resp_tx, resp) = crossbeam_channel::bounded(64);
        let fetch = sync.fetch.clone();
        // Ends when the feed (the request sender) is dropped.
        std::thread::Builder::new()
            .name("aegis-depth".into())
            .spawn(move || {
                while let Ok(sym) = req_rx.recv() {
                    if resp_tx.send((sym, fetch(sym))).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            capacity: sync.capacity,
            books,
            parser: Parser::new(),
            syms: HashMap::new(),
            req,
            resp,
        })
    }

    fn request(req: &Sender<Symbol>, sym: Symbol, s: &mut SymSync, now: Instant) {
        if s.waiting || s.retry_after.is_some_and(|t| now < t) {
            return;
        }
        if req.try_send(sym).is_ok() {
            s.waiting = true;
        }
    }

    #[inline]
    fn on_frame(&mut self, bytes: &[u8], c: &FeedCounters, now: Instant) {
        if !is_depth(bytes) {
            return;
        }
        let Ok(MarketMsg::Depth(d)) = self.parser.parse(bytes) else {
            return;
        };
        let s = self.syms.entry(d.symbol).or_default();
        if d.final_update_id <= s.last_u.max(s.buffered_u) {
            return;
        }
        if s.waiting {
            s.buffer(bytes, d.final_update_id);
            return;
        }
        let mut books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        let book = books
            .entry(d.symbol)
            .or_insert_with(|| L2Book::new(self.capacity));
        if !apply_counted(book, &d, &mut s.last_u, c) {
            s.buffer(bytes, d.final_update_id);
            Self::request(&self.req, d.symbol, s, now);
        }
    }

    /// Loads arrived snapshots and replays the updates buffered meanwhile.
    #[inline]
    fn pump(&mut self, c: &FeedCounters, now: Instant) {
        while let Ok((sym, snap)) = self.resp.try_recv() {
            let s = self.syms.entry(sym).or_default();
            s.waiting = false;
            let Some(snap) = snap else {
                s.retry_after = Some(now + SNAPSHOT_RETRY);
                continue;
            };
            s.retry_after = None;
            let mut books = self.books.lock().unwrap_or_else(|e| e.into_inner());
            let book = books
                .entry(sym)
                .or_insert_with(|| L2Book::new(self.capacity));
            book.load_snapshot(snap.last_update_id, snap.bids, snap.asks);
            c.depth_snapshots.fetch_add(1, Ordering::Relaxed);
            let mut done = s.spans.len();
            for (i, &(a, b)) in s.spans.iter().enumerate() {
                let Ok(MarketMsg::Depth(d)) = self.parser.parse(&s.buf[a..b]) else {
                    continue;
                };
                if !apply_counted(book, &d, &mut s.last_u, c) {
                    done = i;
                    break;
                }
            }
            if done == s.spans.len() {
                s.buf.clear();
                s.spans.clear();
            } else {
                // Keep the update that failed and everything after it for the next snapshot.
                let off = s.spans[done].0;
                s.buf.drain(..off);
                s.spans.drain(..done);
                for sp in s.spans.iter_mut() {
                    sp.0 -= off;
                    sp.1 -= off;
                }
                Self::request(&self.req, sym, s, now);
            }
        }
    }
}
