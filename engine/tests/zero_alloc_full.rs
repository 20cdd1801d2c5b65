//! Zero allocation on the whole tick-to-order path, proven with a counting global allocator: WebSocket frames
//! read from a byte stream ([`FrameReader`], in odd-sized reads that split headers and payloads, pings
//! answered with masked pongs) → parse → book → every mode's signals → risk gate → paper venue → events →
//! signing (`OrderEncoder`: a WS-API `order.place` at the new touch for every tick, plus REST+HMAC and signed
//! WS-API requests for every order the engine actually decided).
//!
//! 1,000,000 messages after a 200,000-message warm-up; the allocation count of this thread must not move.
//! (tungstenite allocates a `Vec` per message, which is why the hot read path uses `feed::frame`.)

use aegis_engine::feed::frame::{encode_client_frame, encode_server_frame, FrameReader, OpCode};
use aegis_engine::feed::sim::{SimConfig, SimMarket};
use aegis_engine::sign::WirePrecision;
use aegis_engine::sign::{ApiKey, HmacSigner, OrderEncoder, OrderRequest, RespType, Signer};
use aegis_engine::{Engine, EngineParams, SymbolSpec};
use aegis_shared::event::{OrderType, TimeInForce};
use aegis_shared::ids::ClientOrderIdGen;
use aegis_shared::{EngineEvent, Qty, Secret, Side};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Read;

struct Counting;

thread_local! {
    // Const-initialised and without Drop: touching it never allocates. Per thread, so the test harness's
    // other threads cannot disturb the count.
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

/// A byte stream like a socket carrying the simulated market as server WebSocket frames (a ping every 10,000
/// messages). Reads return odd sizes so frames arrive split at every possible place. Allocation-free after
/// construction (the simulator reuses its message buffer).
struct SimSocket {
    sim: SimMarket,
    frame: Box<[u8]>,
    at: usize,
    len: usize,
    frames: u64,
    reads: usize,
}

const READ_SIZES: [usize; 7] = [1, 7, 100, 333, 1500, 4096, 65536];

impl Read for SimSocket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = READ_SIZES[self.reads % READ_SIZES.len()].min(buf.len());
        self.reads += 1;
        let mut n = 0;
        while n < want {
            if self.at == self.len {
                self.frames += 1;
                self.len = if self.frames.is_multiple_of(10_000) {
                    encode_server_frame(OpCode::Ping, b"keepalive", &mut self.frame)
                } else {
                    encode_server_frame(OpCode::Text, self.sim.next_message(), &mut self.frame)
                }
                .expect("a sim message fits 4 KiB");
                self.at = 0;
            }
            let k = (self.len - self.at).min(want - n);
            buf[n..n + k].copy_from_slice(&self.frame[self.at..self.at + k]);
            self.at += k;
            n += k;
        }
        Ok(n)
    }
}

#[derive(Default, Debug)]
struct Tally {
    messages: u64,
    pongs: u64,
    touch_orders: u64,
    engine_orders: u64,
    sign_errors: u64,
}

struct Path {
    engine: Engine,
    ctl: aegis_engine::queues::ControlEnds,
    reader: FrameReader,
    sock: SimSocket,
    enc: OrderEncoder,
    prec: [WirePrecision; 2],
    specs: [SymbolSpec; 2],
    ids: ClientOrderIdGen,
    pong: [u8; 256],
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
            ok &= self
                .enc
                .ws_order_place(self.ts, o, &p, self.ts, false)
                .is_ok();
        }
        if !ok {
            t.sign_errors += 1;
        }
    }

    /// Drives `n` market messages through the whole path.
    fn run(&mut self, n: u64, t: &mut Tally) {
        let end = t.messages + n;
        while t.messages < end {
            let frame = match self.reader.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => {
                    let got = self.reader.fill(&mut self.sock).expect("stream read");
                    assert!(got > 0);
                    continue;
                }
                Err(e) => panic!("frame error: {e}"),
            };
            match frame.opcode {
                OpCode::Text => {
                    self.engine.on_message(frame.payload);
                    t.messages += 1;
                }
                OpCode::Ping => {
                    let n = encode_client_frame(
                        OpCode::Pong,
                        frame.payload,
                        [9, 8, 7, 6],
                        &mut self.pong,
                    )
                    .expect("pong fits");
                    assert_eq!(n, 6 + frame.payload.len());
                    t.pongs += 1;
                    continue;
                }
                other => panic!("unexpected {other:?}"),
            }
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
fn frames_to_signed_orders_do_not_allocate_after_warm_up() {
    let specs = [SymbolSpec::btcusdt(), SymbolSpec::ethusdt()];
    let params = EngineParams {
        session: 1,
        symbols: specs.to_vec(),
        ..EngineParams::default()
    };
    let (engine, ctl) = Engine::with_channels(params).unwrap();
    let mut cfg = SimConfig::new(5);
    cfg.speed = 50.0; // 50 ms of market time per message: many market hours, so positions open and close.
    let prec = specs.map(|s| WirePrecision::new(s.filters.tick_size, s.filters.step_size).unwrap());
    let key = ApiKey::new(Secret::new("dbefbc809e3e83c283a984c3a1459732".to_string())).unwrap();
    let secret = Secret::new("2b5eb11e18796d12d88f13dc27dbbd02".to_string());
    let mut path = Path {
        engine,
        ctl,
        reader: FrameReader::new(64 * 1024),
        sock: SimSocket {
            sim: SimMarket::new(cfg).unwrap(),
            frame: vec![0u8; 4096].into_boxed_slice(),
            at: 0,
            len: 0,
            frames: 0,
            reads: 0,
        },
        enc: OrderEncoder::new(Signer::Hmac(HmacSigner::new(&secret)), key, 5000),
        prec,
        specs,
        ids: ClientOrderIdGen::new(1),
        pong: [0u8; 256],
        ts: 1_700_000_000_000,
    };
    let mut t = Tally::default();
    path.run(200_000, &mut t);
    assert!(t.engine_orders > 0, "warm-up traded: {t:?}");
    assert!(allocs() > 0, "the counting allocator sees this thread");
    let (orders_before, pongs_before) = (t.engine_orders, t.pongs);

    let before = allocs();
    path.run(1_000_000, &mut t);
    let after = allocs();

    assert_eq!(t.messages, 1_200_000);
    assert!(
        t.engine_orders > orders_before,
        "the engine traded during the measured run: {t:?}"
    );
    assert!(t.pongs >= pongs_before + 99, "pings answered: {t:?}");
    assert!(t.touch_orders >= 1_000_000 - 10, "{t:?}");
    assert_eq!(t.sign_errors, 0, "{t:?}");
    assert_eq!(path.engine.counters().parse_errors, 0);
    assert_eq!(
        after - before,
        0,
        "allocations on the frame → signed order path after warm-up ({t:?})"
    );
}
