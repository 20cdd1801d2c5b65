//! Zero allocation on the live read path over a REAL socket: a server thread streams the simulated market as
//! WebSocket frames over local TCP (a ping every 10,000 frames, written in large batches so frames arrive split
//! at arbitrary places); this thread reads them through the production feed ([`WsFeed`]: the non-blocking mio
//! client, [`aegis_engine::feed::frame::FrameReader`], pongs from a preallocated buffer) → parse → book →
//! strategies → risk → paper venue → signing of a WS-API order per tick and of every engine order.
//!
//! 1,000,000 messages after a 200,000-message warm-up (which includes the connect and the upgrade); the
//! allocation count of this thread must not move. The server runs on its own thread, so its allocations do
//! not count (the counter is thread-local).

use aegis_engine::net::ws_feed::WsFeedConfig;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod alloc_support;
use alloc_support::{
    accept_upgrade, measure_live_feed, read_client_frame, stream_market, Counting,
};

#[global_allocator]
static A: Counting = Counting;

const WARM_UP: u64 = 200_000;
const MEASURED: u64 = 1_000_000;

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
        accept_upgrade(&mut s);
        // Pong reader, on its own thread while this one streams.
        let mut r = s.try_clone().unwrap();
        let pong_count = pongs.clone();
        std::thread::spawn(move || {
            while let Some(is_pong) = read_client_frame(&mut r) {
                if is_pong {
                    pong_count.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        stream_market(&mut s, total);
        while !done.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

#[test]
fn socket_frames_to_signed_orders_do_not_allocate_after_warm_up() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let done = Arc::new(AtomicBool::new(false));
    let pongs = Arc::new(AtomicU64::new(0));
    let srv = server(l, WARM_UP + MEASURED, done.clone(), pongs.clone());

    let cfg = WsFeedConfig::new(format!(
        "ws://127.0.0.1:{port}/stream?streams=btcusdt@bookTicker/ethusdt@bookTicker"
    ));
    measure_live_feed(cfg, WARM_UP, MEASURED, "socket");
    done.store(true, Ordering::Release);
    srv.join().unwrap();
    // The server saw the pongs on the wire (its reader may lag the last few).
    let t0 = Instant::now();
    while pongs.load(Ordering::Relaxed) < 100 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(pongs.load(Ordering::Relaxed) >= 100);
}
