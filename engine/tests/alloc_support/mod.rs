//! Shared by the zero-allocation tests (`zero_alloc*.rs`): the per-thread counting allocator, the engine +
//! order encoder they drive, the per-message work (a WS-API order at the new touch for every tick, every engine
//! order signed) and, for the socket tests, the WebSocket server side and the warm-up / measured run over a
//! [`WsFeed`].
//!
//! Each test binary still declares its own `#[global_allocator]` (a static of [`Counting`]).
#![allow(dead_code)]

use aegis_engine::feed::frame::{encode_server_frame, OpCode};
use aegis_engine::feed::sim::{SimConfig, SimMarket};
use aegis_engine::feed::FeedPoll;
use aegis_engine::net::ws_feed::{WsFeed, WsFeedConfig};
use aegis_engine::queues::ControlEnds;
use aegis_engine::sign::WirePrecision;
use aegis_engine::sign::{ApiKey, HmacSigner, OrderEncoder, OrderRequest, RespType, Signer};
use aegis_engine::venue::FeeRates;
use aegis_engine::{Engine, EngineParams, SymbolSpec};
use aegis_shared::event::{OrderType, TimeInForce};
use aegis_shared::ids::ClientOrderIdGen;
use aegis_shared::num::Rate;
use aegis_shared::{EngineEvent, Market, Qty, Secret, Side};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Counts this thread's allocations and reallocations, then forwards to the system allocator.
pub struct Counting;

thread_local! {
    // Const-initialised and without Drop: touching it never allocates. Per thread, so the test harness's
    // other threads (and the test servers) cannot disturb the count.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarding the caller's contract to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(p, l, n) }
    }
}

/// Allocations (and reallocations) made so far by the calling thread.
pub fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

/// The servers send a ping every this many frames.
pub const PING_EVERY: u64 = 10_000;

/// The simulated market the frame tests stream.
pub fn sim_market() -> SimMarket {
    let mut cfg = SimConfig::new(5);
    cfg.speed = 50.0; // 50 ms of market time per message: many market hours, so positions open and close.
    SimMarket::new(cfg).unwrap()
}

#[derive(Default, Debug)]
pub struct Tally {
    pub messages: u64,
    pub touch_orders: u64,
    pub engine_orders: u64,
    pub sign_errors: u64,
    /// Fills whose fee was not taken in USDT (spot buys pay in the base asset).
    pub base_fee_fills: u64,
}

/// The engine (BTC + ETH) and the order encoder, driven one market message at a time.
pub struct Path {
    pub engine: Engine,
    pub ctl: ControlEnds,
    enc: OrderEncoder,
    prec: [WirePrecision; 2],
    specs: [SymbolSpec; 2],
    ids: ClientOrderIdGen,
    ts: u64,
    /// Engine orders are also encoded as signed WS-API requests (the form used when the session is not logged
    /// on), besides the logged-on WS-API form and REST+HMAC.
    signed_ws_api: bool,
}

impl Path {
    /// On spot: spot filters and 0.1 % fees, so the long-only gate, the dust rule and the paper venue's
    /// base-asset fees are on the counted path.
    pub fn new(signed_ws_api: bool, market: Market) -> Path {
        let (specs, fees) = match market {
            Market::Futures => (
                [SymbolSpec::btcusdt(), SymbolSpec::ethusdt()],
                FeeRates::default(),
            ),
            Market::Spot => (
                [SymbolSpec::btcusdt_spot(), SymbolSpec::ethusdt_spot()],
                FeeRates {
                    maker: Rate::from_units(100_000),
                    taker: Rate::from_units(100_000),
                },
            ),
        };
        let params = EngineParams {
            session: 1,
            market,
            fees,
            symbols: specs.to_vec(),
            ..EngineParams::default()
        };
        let (engine, ctl) = Engine::with_channels(params).unwrap();
        let prec =
            specs.map(|s| WirePrecision::new(s.filters.tick_size, s.filters.step_size).unwrap());
        let key = ApiKey::new(Secret::new("dbefbc809e3e83c283a984c3a1459732".to_string())).unwrap();
        let secret = Secret::new("2b5eb11e18796d12d88f13dc27dbbd02".to_string());
        Path {
            engine,
            ctl,
            enc: OrderEncoder::new(Signer::Hmac(HmacSigner::new(&secret)), key, 5000),
            prec,
            specs,
            ids: ClientOrderIdGen::new(1),
            ts: 1_700_000_000_000,
            signed_ws_api,
        }
    }

    fn sign(&mut self, o: &OrderRequest, sym: usize, t: &mut Tally, full: bool) {
        self.ts += 1;
        let p = self.prec[sym];
        let mut ok = self
            .enc
            .ws_order_place(self.ts, o, &p, self.ts, true)
            .is_ok();
        if full {
            ok &= self.enc.rest_order(o, &p, self.ts).is_ok();
            if self.signed_ws_api {
                ok &= self
                    .enc
                    .ws_order_place(self.ts, o, &p, self.ts, false)
                    .is_ok();
            }
        }
        if !ok {
            t.sign_errors += 1;
        }
    }

    /// Drives `n` market messages through the whole path. `feed` hands at most one message to the engine
    /// (given the messages so far) and says whether it did; pings, partial reads and idle polls return false.
    pub fn run(&mut self, n: u64, t: &mut Tally, mut feed: impl FnMut(&mut Engine, u64) -> bool) {
        let end = t.messages + n;
        while t.messages < end {
            if !feed(&mut self.engine, t.messages) {
                continue;
            }
            t.messages += 1;
            // A LIMIT order at the new BTC touch for every tick (the work a firing signal costs).
            let top = self.engine.top(0).copied().unwrap_or_default();
            if top.is_valid() {
                let o = OrderRequest {
                    symbol: self.specs[0].symbol,
                    side: Side::Buy,
                    order_type: OrderType::Limit,
                    tif: Some(TimeInForce::Gtx),
                    qty: Qty::from_units(1_000_000),
                    price: top.bid.floor_to(self.specs[0].filters.tick_size),
                    reduce_only: false,
                    client_id: self.ids.next_id(),
                    resp_type: RespType::Ack,
                };
                self.sign(&o, 0, t, false);
                t.touch_orders += 1;
            }
            // Every order the engine decided: encode and sign it for both wire paths.
            while let Ok(ev) = self.ctl.events.try_recv() {
                if let EngineEvent::Fill(f) = ev {
                    t.base_fee_fills += u64::from(f.fee_asset.as_str() != "USDT");
                }
                if let EngineEvent::Order(o) = ev {
                    let sym = usize::from(o.symbol != self.specs[0].symbol);
                    let req = OrderRequest {
                        symbol: o.symbol,
                        side: o.side,
                        order_type: o.order_type,
                        tif: o.tif,
                        qty: o.qty,
                        price: o.price,
                        reduce_only: o.reduce_only,
                        client_id: o.client_id,
                        resp_type: RespType::Ack,
                    };
                    self.sign(&req, sym, t, true);
                    t.engine_orders += 1;
                }
            }
            if t.messages.is_multiple_of(64) {
                self.engine.housekeeping();
                while self.ctl.stats.try_recv().is_ok() {}
            }
        }
    }

    /// [`Path::run`] fed by a live [`WsFeed`]; fails if the stream stalls for `limit`.
    pub fn run_feed(&mut self, feed: &mut WsFeed, n: u64, t: &mut Tally, limit: Duration) {
        let started = Instant::now();
        self.run(n, t, |engine, messages| match feed.poll() {
            FeedPoll::Msg(b) => {
                engine.on_message(b);
                true
            }
            FeedPoll::Idle => {
                assert!(
                    started.elapsed() < limit,
                    "stream stalled at {messages} messages"
                );
                std::hint::spin_loop();
                false
            }
            FeedPoll::Ended => panic!("a live feed never ends"),
        });
    }
}

/// Server side of a WebSocket upgrade: reads the client's request and answers 101.
pub fn accept_upgrade<S: Read + Write>(s: &mut S) {
    let mut req = Vec::new();
    let mut b = [0u8; 1];
    while !req.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1);
        req.push(b[0]);
    }
    let text = String::from_utf8(req).unwrap();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .unwrap()
        .trim()
        .to_string();
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    s.write_all(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
}

/// Writes `total` market frames from [`sim_market`] (plus a ping every [`PING_EVERY`] frames) in large
/// batches, so frames arrive split at arbitrary places. Returns how many pings were sent.
pub fn stream_market<W: Write>(s: &mut W, total: u64) -> u64 {
    let mut sim = sim_market();
    let mut batch = Vec::with_capacity(1 << 16);
    let mut frame = vec![0u8; 4096];
    let (mut sent, mut n, mut pings) = (0u64, 0u64, 0u64);
    while sent < total {
        n += 1;
        let len = if n.is_multiple_of(PING_EVERY) {
            pings += 1;
            encode_server_frame(OpCode::Ping, b"keepalive", &mut frame)
        } else {
            sent += 1;
            encode_server_frame(OpCode::Text, sim.next_message(), &mut frame)
        }
        .unwrap();
        batch.extend_from_slice(&frame[..len]);
        // Not a multiple of the 16 KiB TLS record size: over TLS, frames straddle records.
        if batch.len() > 60_000 {
            s.write_all(&batch).unwrap();
            batch.clear();
        }
    }
    s.write_all(&batch).unwrap();
    pings
}

/// Reads one client frame as the client sends pongs (2-byte header, 4-byte mask, payload "keepalive"):
/// `Some(true)` for a pong, `Some(false)` for any other frame, `None` once the stream fails or ends.
pub fn read_client_frame<R: Read>(r: &mut R) -> Option<bool> {
    let mut h = [0u8; 6];
    r.read_exact(&mut h).ok()?;
    let mut p = vec![0u8; (h[1] & 0x7F) as usize];
    r.read_exact(&mut p).ok()?;
    Some(h[0] == 0x8A)
}

/// Connects a [`WsFeed`] with `cfg`, drives `warm_up` then `measured` messages through it and the [`Path`], and
/// asserts the measured run made no allocation on this thread (nor lost the connection, a ping, an order or a
/// signature). `what` names the transport in the messages.
pub fn measure_live_feed(mut cfg: WsFeedConfig, warm_up: u64, measured: u64, what: &str) {
    let mut path = Path::new(false, Market::Futures);
    // A slow CI machine must not trip the silence reconnect mid-test.
    cfg.silence_ms = 120_000;
    let mut feed = WsFeed::start(cfg).unwrap();
    let mut t = Tally::default();
    path.run_feed(&mut feed, warm_up, &mut t, Duration::from_secs(60));
    assert!(t.engine_orders > 0, "warm-up traded: {t:?}");
    assert!(allocs() > 0, "the counting allocator sees this thread");
    let orders_before = t.engine_orders;
    let pongs_before = feed.counters.pongs.load(Ordering::Relaxed);

    let before = allocs();
    path.run_feed(&mut feed, measured, &mut t, Duration::from_secs(120));
    let after = allocs();

    let c = &feed.counters;
    assert_eq!(t.messages, warm_up + measured);
    assert_eq!(c.connects.load(Ordering::Relaxed), 1, "one connection");
    assert_eq!(c.disconnects.load(Ordering::Relaxed), 0);
    assert!(t.engine_orders > orders_before, "{t:?}");
    let pings_measured = measured / PING_EVERY;
    assert!(
        c.pongs.load(Ordering::Relaxed) >= pongs_before + pings_measured - 1,
        "pings answered during the measured run"
    );
    assert_eq!(t.sign_errors, 0, "{t:?}");
    assert_eq!(path.engine.counters().parse_errors, 0);
    assert_eq!(
        after - before,
        0,
        "allocations on the {what} → signed order path after warm-up ({t:?})"
    );
    eprintln!(
        "{what}: {t:?}, pongs {}, allocations during the measured run {}",
        c.pongs.load(Ordering::Relaxed),
        after - before
    );
}
