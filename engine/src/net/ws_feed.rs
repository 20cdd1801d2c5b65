//! The live market data feed: one combined-stream connection (`/stream?streams=a/b/...`) read on its own
//! thread (interim, see [`super`]), frames handed to the engine through a bounded queue.
//!
//! - Ping/pong: tungstenite answers pings while reading; the thread flushes the pong at once.
//! - Reconnect: on any error, close or silence longer than [`WsFeedConfig::silence_ms`], reconnect with
//!   jittered exponential backoff (100 ms doubling to 5 s, ±50 %); the combined-stream URL resubscribes.
//! - 24-hour rollover: after [`WsFeedConfig::rollover_ms`] (default 23 h 50 min, before Binance cuts at 24 h) the
//!   thread opens the new connection first, drains what the old one still has, then closes it: no gap.
//! - The engine's own staleness guard (`EngineParams::feed_stale_ms`) halts entries while no data flows.

use super::ws::{self, Ws};
use crate::feed::FeedPoll;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use rand::Rng;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// Frames buffered between the reader thread and the engine.
pub const FEED_QUEUE: usize = 65_536;

/// Feed settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsFeedConfig {
    /// Full combined-stream URL, e.g. `wss://fstream.binance.com/stream?streams=btcusdt@bookTicker/btcusdt@aggTrade`.
    pub url: String,
    /// Open a fresh connection after this long (ms).
    pub rollover_ms: u64,
    /// Reconnect when nothing (not even a ping) arrived for this long (ms).
    pub silence_ms: u64,
}

impl WsFeedConfig {
    /// Defaults for `url`: rollover after 23 h 50 min, reconnect after 30 s of silence.
    pub fn new(url: String) -> Self {
        Self {
            url,
            rollover_ms: (23 * 60 + 50) * 60 * 1000,
            silence_ms: 30_000,
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
}

/// The engine's end of the feed.
#[derive(Debug)]
pub struct WsFeed {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    stop: Arc<AtomicBool>,
    /// Counters (connects, drops, rollovers).
    pub counters: Arc<FeedCounters>,
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
        let (s2, c2) = (stop.clone(), counters.clone());
        std::thread::Builder::new()
            .name("aegis-feed".into())
            .spawn(move || reader(cfg, tx, s2, c2))?;
        Ok(Self {
            rx,
            cur: Vec::new(),
            stop,
            counters,
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

fn read_one(w: &mut Ws, tx: &Sender<Vec<u8>>, counters: &FeedCounters) -> Read {
    match w.read() {
        Ok(Message::Text(t)) => {
            let bytes: &[u8] = t.as_ref();
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

fn reader(cfg: WsFeedConfig, tx: Sender<Vec<u8>>, stop: Arc<AtomicBool>, c: Arc<FeedCounters>) {
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
                while let Read::Frame = read_one(&mut cur, &tx, &c) {}
                let _ = cur.close(None);
                let _ = cur.flush();
                cur = next;
                opened = Instant::now();
                last = Instant::now();
                c.rollovers.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        match read_one(&mut cur, &tx, &c) {
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
