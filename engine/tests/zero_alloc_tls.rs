//! Zero allocation on the live read path over REAL TLS: the `wss://` twin of `zero_alloc_socket.rs`. A rustls
//! server thread (self-signed certificate from rcgen, trusted through the client's custom `ClientConfig`)
//! streams the simulated market as WebSocket frames over local TCP + TLS (a ping every 10,000 frames, written in
//! large batches so frames straddle TLS records); this thread reads them through the production feed
//! ([`WsFeed`]: the non-blocking mio client, its in-place TLS record layer, [`FrameReader`], pongs sealed into a
//! preallocated buffer) → parse → book → strategies → risk → paper venue → signing of a WS-API order per tick
//! and of every engine order.
//!
//! TLS 1.3: 1,000,000 messages after a 200,000-message warm-up (which includes the connect, the handshake, the
//! session tickets and the upgrade); TLS 1.2 (the other record format): 300,000 after 100,000. The allocation
//! count of this thread must not move. The server runs on its own thread, so its allocations do not count (the
//! counter is thread-local).
//!
//! [`FrameReader`]: aegis_engine::feed::frame::FrameReader

use aegis_engine::feed::frame::{encode_server_frame, OpCode};
use aegis_engine::feed::sim::{SimConfig, SimMarket};
use aegis_engine::feed::FeedPoll;
use aegis_engine::net::ws_feed::{TlsOverride, WsFeed, WsFeedConfig};
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
use std::sync::atomic::{AtomicBool, Ordering};
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

const PING_EVERY: u64 = 10_000;

/// Server and client configs for "localhost": rcgen's self-signed certificate, one protocol version.
fn tls_pair(
    version: &'static rustls::SupportedProtocolVersion,
) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.key_pair.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// Accepts one TLS client, answers its upgrade, streams `total` market frames (plus pings), waits for `done`,
/// then reads the client's pongs (they wait in the socket buffer: a TLS stream cannot be read from a second
/// thread) and returns how many arrived and how many pings were sent.
fn server(
    l: TcpListener,
    cfg: Arc<rustls::ServerConfig>,
    total: u64,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        let (tcp, _) = l.accept().unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut s = rustls::StreamOwned::new(rustls::ServerConnection::new(cfg).unwrap(), tcp);
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
        let mut cfg = SimConfig::new(5);
        cfg.speed = 50.0; // 50 ms of market time per message: many market hours, so positions open and close.
        let mut sim = SimMarket::new(cfg).unwrap();
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
            // Not a multiple of the 16 KiB record size: frames straddle records.
            if batch.len() > 60_000 {
                s.write_all(&batch).unwrap();
                batch.clear();
            }
        }
        s.write_all(&batch).unwrap();
        s.flush().unwrap();
        while !done.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Pongs: 2-byte header, 4-byte mask, payload ("keepalive").
        s.sock
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut pongs = 0;
        let mut h = [0u8; 6];
        while pongs < pings && s.read_exact(&mut h).is_ok() {
            let mut p = vec![0u8; (h[1] & 0x7F) as usize];
            if s.read_exact(&mut p).is_err() {
                break;
            }
            if h[0] == 0x8A {
                pongs += 1;
            }
        }
        (pongs, pings)
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

fn run_tls(version: &'static rustls::SupportedProtocolVersion, warm_up: u64, measured: u64) {
    let (server_cfg, client_cfg) = tls_pair(version);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let done = Arc::new(AtomicBool::new(false));
    let srv = server(l, server_cfg, warm_up + measured, done.clone());

    let specs = [SymbolSpec::btcusdt(), SymbolSpec::ethusdt()];
    let params = EngineParams {
        session: 1,
        symbols: specs.to_vec(),
        ..EngineParams::default()
    };
    let (engine, ctl) = Engine::with_channels(params).unwrap();
    // "localhost": the certificate is checked by name (and the resolver thread runs, during warm-up).
    let mut cfg = WsFeedConfig::new(format!(
        "wss://localhost:{port}/stream?streams=btcusdt@bookTicker/ethusdt@bookTicker"
    ));
    cfg.tls = Some(TlsOverride(client_cfg));
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
    path.run(warm_up, &mut t, Duration::from_secs(60));
    assert!(t.engine_orders > 0, "warm-up traded: {t:?}");
    assert!(allocs() > 0, "the counting allocator sees this thread");
    let orders_before = t.engine_orders;
    let pongs_before = path.feed.counters.pongs.load(Ordering::Relaxed);

    let before = allocs();
    path.run(measured, &mut t, Duration::from_secs(120));
    let after = allocs();

    let c = &path.feed.counters;
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
        "allocations on the TLS socket → signed order path after warm-up ({t:?})"
    );
    eprintln!(
        "{version:?}: {t:?}, pongs {}, allocations during the measured run {}",
        c.pongs.load(Ordering::Relaxed),
        after - before
    );
    done.store(true, Ordering::Release);
    // The server decrypts every pong: they were sealed correctly under the live traffic key.
    let (pongs, pings) = srv.join().unwrap();
    assert!(pings >= (warm_up + measured) / PING_EVERY - 1);
    assert_eq!(
        pongs, pings,
        "every ping answered, readable by the TLS server"
    );
}

#[test]
fn tls13_frames_to_signed_orders_do_not_allocate_after_warm_up() {
    run_tls(&rustls::version::TLS13, 200_000, 1_000_000);
}

#[test]
fn tls12_frames_to_signed_orders_do_not_allocate_after_warm_up() {
    run_tls(&rustls::version::TLS12, 100_000, 300_000);
}
