//! Zero allocation on the live read path over a REAL socket: a server thread streams the simulated market as
//! WebSocket frames over local TCP (a ping every 10,000 frames, written in large batches so frames arrive split
//! at arbitrary places); this thread reads them through the production feed ([`WsFeed`]: the non-blocking mio
//! client, [`aegis_engine::feed::frame::FrameReader`], pongs from a preallocated buffer) → parse → book →
//! strategies → risk → paper venue → signing of a WS-API order per tick and of every engine order.
//!
//! 1,000,000 messages after a 200,000-message warm-up (which includes the connect and the upgrade); the
//! allocation count of this thread must not move. The server runs on its own thread, so its allocations do
//! not count (the counter is thread-local).

use aegis_engine::feed::frame::{encode_server_frame, OpCode};
use aegis_engine::feed::sim::{SimConfig, SimMarket};
use aegis_engine::feed::FeedPoll;
use aegis_engine::net::ws_feed::{WsFeed, WsFeedConfig};
use aegis_engine::sign::WirePrecision;
use aegis_engine::sign::{ApiKey, HmacSigner, OrderEncoder, OrderRequest, RespType, Signer};
use aegis_engine::{Engine, EngineParams, SymbolSpec};
use aegis_shared::event::{OrderType, TimeInForce};
use aegis_shared::ids::ClientOrderIdGen;
use aegis_shared::{EngineEvent, Qty, Secret, Side};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Counting;

thread_local! {
    // Const-initialised and without Drop: touching it never allocates.
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

#[global_allocator]
static A: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

const WARM_UP: u64 = 200_000;
const MEASURED: u64 = 1_000_000;
const PING_EVERY: u64 = 10_000;

/// Accepts one client, answers its upgrade, streams `total` market frames (plus pings), then keeps the socket
/// open until `done`. A second thread counts the client's pongs.
fn server(
    l: TcpListener,
    total: u64,
    done: Arc<AtomicBool>,
    pongs: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
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
        // Pong reader: 2-byte header, 4-byte mask, payload ("keepalive").
        let mut r = s.try_clone().unwrap();
        let pong_count = pongs.clone();
        std::thread::spawn(move || {
            let mut h = [0u8; 6];
            while r.read_exact(&mut h).is_ok() {
                let mut p = vec![0u8; (h[1] & 0x7F) as usize];
                if r.read_exact(&mut p).is_err() {
                    break;
                }
                if h[0] == 0x8A {
                    pong_count.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let mut cfg = SimConfig::new(5);
        cfg.speed = 50.0; // 50 ms of market time per message: many market hours, so positions open and close.
        let mut sim = SimMarket::new(cfg).unwrap();
        let mut batch = Vec::with_capacity(1 << 16);
        let mut frame = vec![0u8; 4096];
        let mut sent = 0u64;
        let mut n = 0u64;
        while sent < total {
            n += 1;
            let len = if n.is_multiple_of(PING_EVERY) {
                encode_server_frame(OpCode::Ping, b"keepalive", &mut frame)
            } else {
                sent += 1;
                encode_server_frame(OpCode::Text, sim.next_message(), &mut frame)
            }
            .unwrap();
            batch.extend_from_slice(&frame[..len]);
            if batch.len() > 60_000 {
                s.write_all(&batch).unwrap();
                batch.clear();
            }
        }
        s.write_all(&batch).unwrap();
        while !done.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

#[derive(Default, Debug)]
struct Tally {
    messages: u64,
    touch_orders: u64,
    engine_orders: u64,
    sign_errors: u64,
}

struct Path {
    engine: Engine,
    ctl: aegis_engine::queues::ControlEnds,
    feed: WsFeed,
    enc: OrderEncoder,
    prec: [WirePrecision; 2],
    specs: [SymbolSpec; 2],
    ids: ClientOrderIdGen,
    ts: u64,
}

impl Path {
    fn sign(&mut self, o: &OrderRequest, sym: usize, t: &mut Tally, full: bool) {
        self.ts += 1;
        let p = self.prec[sym];
        let mut ok = self
            .enc
            .ws_order_place(self.ts, o, &p, self.ts, true)
            .is_ok();
        if full {
            ok &= self.enc.rest_order(o, &p, self.ts).is_ok();
        }
        if !ok {
            t.sign_errors += 1;
        }
    }

    fn run(&mut self, n: u64, t: &mut Tally, limit: Duration) {
        let end = t.messages + n;
        let started = Instant::now();
        while t.messages < end {
            match self.feed.poll() {
                FeedPoll::Msg(b) => self.engine.on_message(b),
                FeedPoll::Idle => {
                    assert!(
                        started.elapsed() < limit,
                        "stream stalled at {} messages",
                        t.messages
                    );
                    std::hint::spin_loop();
                    continue;
                }
                FeedPoll::Ended => panic!("a live feed never ends"),
            }
            t.messages += 1;
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
            while let Ok(ev) = self.ctl.events.try_recv() {
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
}

#[test]
fn socket_frames_to_signed_orders_do_not_allocate_after_warm_up() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let done = Arc::new(AtomicBool::new(false));
    let pongs = Arc::new(AtomicU64::new(0));
    let srv = server(l, WARM_UP + MEASURED, done.clone(), pongs.clone());

    let specs = [SymbolSpec::btcusdt(), SymbolSpec::ethusdt()];
    let params = EngineParams {
        session: 1,
        symbols: specs.to_vec(),
        ..EngineParams::default()
    };
    let (engine, ctl) = Engine::with_channels(params).unwrap();
    let mut cfg = WsFeedConfig::new(format!(
        "ws://127.0.0.1:{port}/stream?streams=btcusdt@bookTicker/ethusdt@bookTicker"
    ));
    // A slow CI machine must not trip the silence reconnect mid-test.
    cfg.silence_ms = 120_000;
    let prec = specs.map(|s| WirePrecision::new(s.filters.tick_size, s.filters.step_size).unwrap());
    let key = ApiKey::new(Secret::new("dbefbc809e3e83c283a984c3a1459732".to_string())).unwrap();
    let secret = Secret::new("2b5eb11e18796d12d88f13dc27dbbd02".to_string());
    let mut path = Path {
        engine,
        ctl,
        feed: WsFeed::start(cfg).unwrap(),
        enc: OrderEncoder::new(Signer::Hmac(HmacSigner::new(&secret)), key, 5000),
        prec,
        specs,
        ids: ClientOrderIdGen::new(1),
        ts: 1_700_000_000_000,
    };
    let mut t = Tally::default();
    path.run(WARM_UP, &mut t, Duration::from_secs(60));
    assert!(t.engine_orders > 0, "warm-up traded: {t:?}");
    assert!(allocs() > 0, "the counting allocator sees this thread");
    let orders_before = t.engine_orders;
    let pongs_before = path.feed.counters.pongs.load(Ordering::Relaxed);

    let before = allocs();
    path.run(MEASURED, &mut t, Duration::from_secs(120));
    let after = allocs();

    let c = &path.feed.counters;
    assert_eq!(t.messages, WARM_UP + MEASURED);
    assert_eq!(c.connects.load(Ordering::Relaxed), 1, "one connection");
    assert_eq!(c.disconnects.load(Ordering::Relaxed), 0);
    assert!(t.engine_orders > orders_before, "{t:?}");
    assert!(
        c.pongs.load(Ordering::Relaxed) >= pongs_before + 99,
        "pings answered during the measured run"
    );
    assert_eq!(t.sign_errors, 0, "{t:?}");
    assert_eq!(path.engine.counters().parse_errors, 0);
    assert_eq!(
        after - before,
        0,
        "allocations on the socket → signed order path after warm-up ({t:?})"
    );
    eprintln!(
        "{t:?}, pongs {}, allocations during the measured run {}",
        c.pongs.load(Ordering::Relaxed),
        after - before
    );
    done.store(true, Ordering::Release);
    srv.join().unwrap();
    // The server saw the pongs on the wire (its reader may lag the last few).
    let t0 = Instant::now();
    while pongs.load(Ordering::Relaxed) < 100 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(pongs.load(Ordering::Relaxed) >= 100);
}
