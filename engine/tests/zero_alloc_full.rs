//! Zero allocation on the whole tick-to-order path, proven with a counting global allocator: WebSocket frames
//! read from a byte stream ([`FrameReader`], in odd-sized reads that split headers and payloads, pings
//! answered with masked pongs) → parse → book → every mode's signals → risk gate → paper venue → events →
//! signing (`OrderEncoder`: a WS-API `order.place` at the new touch for every tick, plus REST+HMAC and signed
//! WS-API requests for every order the engine actually decided).
//!
//! 1,000,000 messages after a 200,000-message warm-up; the allocation count of this thread must not move.
//! (tungstenite allocates a `Vec` per message, which is why the hot read path uses `feed::frame`.)

use aegis_engine::feed::frame::{encode_client_frame, encode_server_frame, FrameReader, OpCode};
use aegis_engine::feed::sim::SimMarket;
use aegis_shared::Market;
use std::io::Read;

mod alloc_support;
use alloc_support::{allocs, sim_market, Counting, Path, Tally, PING_EVERY};

#[global_allocator]
static A: Counting = Counting;

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
                self.len = if self.frames.is_multiple_of(PING_EVERY) {
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

#[test]
fn frames_to_signed_orders_do_not_allocate_after_warm_up() {
    frames_to_signed_orders(Market::Futures);
}

/// The same on spot: the long-only gate, the dust rule and the paper venue's base-asset fees on every order.
/// (The orders are still encoded as the futures WS-API's: the bot has no spot order encoder yet.)
#[test]
fn spot_frames_to_signed_orders_do_not_allocate_after_warm_up() {
    frames_to_signed_orders(Market::Spot);
}

fn frames_to_signed_orders(market: Market) {
    let mut path = Path::new(true, market);
    let mut reader = FrameReader::new(64 * 1024);
    let mut sock = SimSocket {
        sim: sim_market(),
        frame: vec![0u8; 4096].into_boxed_slice(),
        at: 0,
        len: 0,
        frames: 0,
        reads: 0,
    };
    let mut pong = [0u8; 256];
    let mut pongs = 0u64;
    // Frames from the byte stream: market messages go to the engine, pings are answered with masked pongs.
    let mut run = |path: &mut Path, n: u64, t: &mut Tally, pongs: &mut u64| {
        path.run(n, t, |engine, _| match reader.next_frame() {
            Ok(Some(frame)) => match frame.opcode {
                OpCode::Text => {
                    engine.on_message(frame.payload);
                    true
                }
                OpCode::Ping => {
                    let n =
                        encode_client_frame(OpCode::Pong, frame.payload, [9, 8, 7, 6], &mut pong)
                            .expect("pong fits");
                    assert_eq!(n, 6 + frame.payload.len());
                    *pongs += 1;
                    false
                }
                other => panic!("unexpected {other:?}"),
            },
            Ok(None) => {
                let got = reader.fill(&mut sock).expect("stream read");
                assert!(got > 0);
                false
            }
            Err(e) => panic!("frame error: {e}"),
        })
    };
    let mut t = Tally::default();
    run(&mut path, 200_000, &mut t, &mut pongs);
    assert!(t.engine_orders > 0, "warm-up traded: {t:?}");
    assert!(allocs() > 0, "the counting allocator sees this thread");
    let (orders_before, pongs_before) = (t.engine_orders, pongs);

    let before = allocs();
    run(&mut path, 1_000_000, &mut t, &mut pongs);
    let after = allocs();

    assert_eq!(t.messages, 1_200_000);
    assert!(
        t.engine_orders > orders_before,
        "the engine traded during the measured run: {t:?}"
    );
    assert!(
        pongs >= pongs_before + 99,
        "pings answered: {pongs} pongs, {t:?}"
    );
    assert!(t.touch_orders >= 1_000_000 - 10, "{t:?}");
    assert_eq!(t.sign_errors, 0, "{t:?}");
    assert_eq!(path.engine.counters().parse_errors, 0);
    if market == Market::Spot {
        // The spot rules were on the measured path: shorts refused, buys paying their fee in the base asset.
        let d =
            path.engine.counters().denials[aegis_engine::risk::Denial::SpotShort.code() as usize];
        assert!(d > 0, "{:?}", path.engine.counters());
        assert!(t.base_fee_fills > 0, "buys paid base-asset fees: {t:?}");
    } else {
        assert_eq!(t.base_fee_fills, 0, "futures fees are in USDT: {t:?}");
    }
    assert_eq!(
        after - before,
        0,
        "allocations on the frame → signed order path after warm-up ({t:?})"
    );
}
