//! The live market data feed: one combined-stream connection (`/stream?streams=a/b/...`) read on its own
//! thread (interim, see [`super`]), frames handed to the engine through a bounded queue.
//!
//! - Ping/pong: tungstenite answers pings while reading; the thread flushes the pong at once.
//! - Reconnect: on any error, close or silence longer than [`WsFeedConfig::silence_ms`], reconnect with
//!   jittered exponential backoff (100 ms doubling to 5 s, ±50 %); the combined-stream URL resubscribes.
//! - 24-hour rollover: after [`WsFeedConfig::rollover_ms`] (default 23 h 50 min, before Binance cuts at 24 h) the
//!   thread opens the new connection first, drains what the old one still has, then closes it: no gap.
//! - The engine's own staleness guard (`EngineParams::feed_stale_ms`) halts entries while no data flows.
//! - Depth (optional, [`DepthSync`]): `depthUpdate` frames keep a local L2 book per symbol
//!   ([`crate::book::l2::L2Book`]) synced from a REST snapshot (`GET /fapi/v1/depth`, fetched by the caller's
//!   function): updates older than the snapshot are dropped, the first kept one must straddle it, then each
//!   `pu` must equal the previous `u`; a gap resets the book and a new snapshot is fetched
//!   ([`FeedCounters::depth_resyncs`]). The book lives on this thread (behind a mutex readers share); frames are
//!   still handed to the engine unchanged.

use super::ws::{self, Ws};
use crate::book::l2::{L2Book, L2Error};
use crate::feed::parse::{MarketMsg, Parser};
use crate::feed::FeedPoll;
use aegis_shared::{Price, Qty, Symbol};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// Frames buffered between the reader thread and the engine.
pub const FEED_QUEUE: usize = 65_536;

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

/// Fetches a symbol's depth snapshot (blocking; `None` on failure: retried at the next update).
pub type SnapshotFn = Arc<dyn Fn(Symbol) -> Option<DepthSnapshot> + Send + Sync>;

/// Local order books kept by the feed thread, per symbol.
pub type DepthBooks = Arc<Mutex<HashMap<Symbol, L2Book>>>;

/// Depth book maintenance on the feed thread.
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
    pub depth: Option<DepthSync>,
}

impl WsFeedConfig {
    /// Defaults for `url`: rollover after 23 h 50 min, reconnect after 30 s of silence.
    pub fn new(url: String) -> Self {
        Self {
            url,
            rollover_ms: (23 * 60 + 50) * 60 * 1000,
            silence_ms: 30_000,
            depth: None,
        }
    }
}

/// Counters shared with the reader thread.
#[derive(Debug, Default)]
pub struct FeedCounters {
    /// Connections opened.
    pub connects: AtomicU64,
    /// Frames dropped because the engine's queue was full.
    pub dropped: AtomicU64,
    /// Rollovers done.
    pub rollovers: AtomicU64,
    /// Depth updates applied to a local book.
    pub depth_applied: AtomicU64,
    /// Depth snapshots loaded (the first per symbol, and one per resync).
    pub depth_snapshots: AtomicU64,
    /// Sequence gaps (`pu` != previous `u`, or no straddling first event) that forced a resync.
    pub depth_resyncs: AtomicU64,
}

/// The engine's end of the feed.
#[derive(Debug)]
pub struct WsFeed {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    stop: Arc<AtomicBool>,
    /// Counters (connects, drops, rollovers, depth).
    pub counters: Arc<FeedCounters>,
    /// Local depth books (empty without [`WsFeedConfig::depth`]).
    pub books: DepthBooks,
}

impl Drop for WsFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl WsFeed {
    /// Starts the reader thread (`aegis-feed`). Connection problems are retried by the thread, never returned.
    pub fn start(cfg: WsFeedConfig) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded(FEED_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(FeedCounters::default());
        let books: DepthBooks = Arc::default();
        let (s2, c2) = (stop.clone(), counters.clone());
        let depth = cfg.depth.clone().map(|d| Depth {
            sync: d,
            books: books.clone(),
            parser: Parser::new(),
            last_u: HashMap::new(),
        });
        std::thread::Builder::new()
            .name("aegis-feed".into())
            .spawn(move || reader(cfg, tx, s2, c2, depth))?;
        Ok(Self {
            rx,
            cur: Vec::new(),
            stop,
            counters,
            books,
        })
    }

    /// The next frame, if one arrived. Never blocks.
    #[inline]
    pub fn poll(&mut self) -> FeedPoll<'_> {
        match self.rx.try_recv() {
            Ok(v) => {
                self.cur = v;
                FeedPoll::Msg(&self.cur)
            }
            Err(_) => FeedPoll::Idle,
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
    let j = rand::thread_rng().gen_range(base / 2..=base + base / 2);
    Duration::from_millis(j)
}

fn open(cfg: &WsFeedConfig, stop: &AtomicBool, counters: &FeedCounters) -> Option<Ws> {
    let mut attempt = 0u32;
    while !stop.load(Ordering::Acquire) {
        match ws::connect(&cfg.url, Duration::from_secs(10)) {
            Ok(w) => {
                let _ = ws::set_read_timeout(&w, Some(Duration::from_millis(200)));
                counters.connects.fetch_add(1, Ordering::Relaxed);
                return Some(w);
            }
            Err(_) => {
                std::thread::sleep(backoff(attempt));
                attempt = attempt.saturating_add(1);
            }
        }
    }
    None
}

enum Read {
    Frame,
    Nothing,
    Closed,
}

struct Depth {
    sync: DepthSync,
    books: DepthBooks,
    parser: Parser,
    /// Last applied `u` per symbol: an event seen twice (both connections during a rollover) is skipped, not
    /// taken for a gap.
    last_u: HashMap<Symbol, u64>,
}

impl Depth {
    fn on_frame(&mut self, bytes: &[u8], c: &FeedCounters) {
        // Cheap pre-filter: only depth diffs are parsed here (the engine parses everything else).
        if !bytes.windows(11).any(|w| w == b"depthUpdate") {
            return;
        }
        let Ok(MarketMsg::Depth(d)) = self.parser.parse(bytes) else {
            return;
        };
        let last = self.last_u.get(&d.symbol).copied().unwrap_or(0);
        if d.final_update_id <= last {
            return;
        }
        let mut books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        let book = books
            .entry(d.symbol)
            .or_insert_with(|| L2Book::new(self.sync.capacity));
        // At most two snapshots per update: the first (or after a gap), and one retry when the snapshot was
        // older than the event stream (the first kept event must straddle it).
        for _ in 0..3 {
            match book.apply(&d) {
                Ok(crate::book::l2::L2Outcome::Applied) => {
                    self.last_u.insert(d.symbol, d.final_update_id);
                    c.depth_applied.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(crate::book::l2::L2Outcome::Stale) => return,
                Err(L2Error::Gap { .. }) => {
                    c.depth_resyncs.fetch_add(1, Ordering::Relaxed);
                }
                Err(L2Error::NoSnapshot) => {}
            }
            let Some(snap) = (self.sync.fetch)(d.symbol) else {
                return;
            };
            book.load_snapshot(snap.last_update_id, snap.bids, snap.asks);
            c.depth_snapshots.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn read_one(
    w: &mut Ws,
    tx: &Sender<Vec<u8>>,
    counters: &FeedCounters,
    depth: &mut Option<Depth>,
) -> Read {
    match w.read() {
        Ok(Message::Text(t)) => {
            let bytes: &[u8] = t.as_ref();
            if let Some(d) = depth.as_mut() {
                d.on_frame(bytes, counters);
            }
            if let Err(TrySendError::Full(_)) = tx.try_send(bytes.to_vec()) {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Read::Frame
        }
        Ok(Message::Binary(b)) => {
            let _ = tx.try_send(b.to_vec());
            Read::Frame
        }
        Ok(Message::Ping(_)) => {
            // tungstenite queued the pong; send it now, not on our next write.
            let _ = w.flush();
            Read::Frame
        }
        Ok(Message::Close(_)) => Read::Closed,
        Ok(_) => Read::Frame,
        Err(e) if ws::is_timeout(&e) => Read::Nothing,
        Err(_) => Read::Closed,
    }
}

fn reader(
    cfg: WsFeedConfig,
    tx: Sender<Vec<u8>>,
    stop: Arc<AtomicBool>,
    c: Arc<FeedCounters>,
    mut depth: Option<Depth>,
) {
    let Some(mut cur) = open(&cfg, &stop, &c) else {
        return;
    };
    let mut opened = Instant::now();
    let mut last = Instant::now();
    while !stop.load(Ordering::Acquire) {
        if opened.elapsed() >= Duration::from_millis(cfg.rollover_ms) {
            // Rollover: new connection first, then drain and close the old one.
            if let Some(next) = open(&cfg, &stop, &c) {
                let _ = ws::set_read_timeout(&cur, Some(Duration::from_millis(1)));
                while let Read::Frame = read_one(&mut cur, &tx, &c, &mut depth) {}
                let _ = cur.close(None);
                let _ = cur.flush();
                cur = next;
                opened = Instant::now();
                last = Instant::now();
                c.rollovers.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        match read_one(&mut cur, &tx, &c, &mut depth) {
            Read::Frame => last = Instant::now(),
            Read::Nothing if last.elapsed() < Duration::from_millis(cfg.silence_ms) => {}
            Read::Nothing | Read::Closed => {
                let Some(next) = open(&cfg, &stop, &c) else {
                    return;
                };
                cur = next;
                opened = Instant::now();
                last = Instant::now();
            }
        }
    }
    let _ = cur.close(None);
    let _ = cur.flush();
}
