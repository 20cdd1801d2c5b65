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

use aegis_engine::net::ws_feed::{TlsOverride, WsFeedConfig};
use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod alloc_support;
mod tls_support;
use alloc_support::{
    accept_upgrade, measure_live_feed, read_client_frame, stream_market, Counting, PING_EVERY,
};

#[global_allocator]
static A: Counting = Counting;

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
        accept_upgrade(&mut s);
        let pings = stream_market(&mut s, total);
        s.flush().unwrap();
        while !done.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5));
        }
        s.sock
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut pongs = 0;
        while pongs < pings {
            match read_client_frame(&mut s) {
                Some(true) => pongs += 1,
                Some(false) => {}
                None => break,
            }
        }
        (pongs, pings)
    })
}

fn run_tls(version: &'static rustls::SupportedProtocolVersion, warm_up: u64, measured: u64) {
    let (server_cfg, client_cfg) = tls_support::tls_pair(None, version);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let done = Arc::new(AtomicBool::new(false));
    let srv = server(l, server_cfg, warm_up + measured, done.clone());

    // "localhost": the certificate is checked by name (and the resolver thread runs, during warm-up).
    let mut cfg = WsFeedConfig::new(format!(
        "wss://localhost:{port}/stream?streams=btcusdt@bookTicker/ethusdt@bookTicker"
    ));
    cfg.tls = Some(TlsOverride(client_cfg));
    measure_live_feed(cfg, warm_up, measured, &format!("TLS socket ({version:?})"));
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
