//! The live order path's hop from the engine to the wire: an approved order leaves the engine as an
//! `Outbound::Place` on its bounded queue; the control plane's order gateway thread (`aegis-orders`) signs it and
//! writes a WebSocket-API `order.place` frame. This measures, per order, the time from the engine's `send` to the
//! frame's arrival at a local WebSocket-API server (loopback, same process, so both timestamps come from one
//! clock), with the gateway idle between orders as it is between ticks in a real run.
//!
//! Then the same orders through the path the bot uses now: the engine thread's own order entry
//! (`venue::binance::entry::OrderEntry`, busy-polled between orders as the engine loop does) writes the frame to
//! its own connection; the time is from `place` to the frame's arrival at the same kind of server.
//!
//! The server busy-polls: one thread, pinned to core 0 (`HOP_SERVER_CORE` changes it), spins on the
//! non-blocking socket and stamps a frame when the `read` that completed it returns, so the time ends when the
//! bytes reach the server's socket rather than when a sleeping server thread is next scheduled. The
//! engine-thread variant pins its (busy-polling) thread to the last core, as the bot pins its engine.
//! `HOP_BLOCKING_SERVER=1` brings back the earlier server (a blocking tungstenite read, stamped after the thread
//! wakes), for comparison.
//!
//! Run: `cargo bench -p aegis-benches --bench gateway_hop` (about 10 s). Prints p50/p90/p99/p99.9/max of each.

use aegis_benches::fixtures::{api_key, btc_precision, hmac_signer};
use aegis_control::exchange::env::{Credentials, Endpoints};
use aegis_control::exchange::{gateway, rest::RestClient, resync};
use aegis_engine::venue::binance::{link, Inbound, Outbound};
use aegis_engine::venue::OrderRequest;
use aegis_shared::event::{OrderIntent, OrderType, TimeInForce};
use aegis_shared::ids::ClientOrderIdGen;
use aegis_shared::{ClientOrderId, Price, Qty, Side, StrategyMode, Symbol};
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::Message;

const ORDERS: usize = 2_000;
/// Idle time between two orders: the gateway is waiting for work when each one arrives.
const GAP: Duration = Duration::from_millis(2);

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// A WebSocket-API stand-in: records when each `order.place` arrived (by client order id) and acknowledges it.
fn server(l: TcpListener, arrivals: Arrivals) {
    if std::env::var_os("HOP_BLOCKING_SERVER").is_some_and(|v| v == "1") {
        blocking_server(l, arrivals);
    } else {
        spin_server(l, arrivals);
    }
}

/// The busy-polling server (see the module docs).
fn spin_server(l: TcpListener, arrivals: Arrivals) {
    use aegis_benches::spin::{pin, server_frame, try_read, write_all_spin, ClientFrames};
    let core = std::env::var("HOP_SERVER_CORE")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    std::thread::spawn(move || {
        if !pin(core) {
            eprintln!("hop server: not pinned to core {core}");
        }
        let (tcp, _) = l.accept().expect("accept");
        tcp.set_nodelay(true).expect("nodelay");
        // The upgrade is tungstenite's; the client sends no frame before it gets the 101, so nothing is left in
        // tungstenite's buffer and the frames are read from the raw socket (a second handle, kept open).
        let ws = tungstenite::accept(tcp).expect("upgrade");
        let mut s = ws.get_ref().try_clone().expect("clone");
        drop(ws);
        s.set_nonblocking(true).expect("nonblocking");
        let mut frames = ClientFrames::frames_only();
        let mut buf = vec![0u8; 64 * 1024];
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut n = 0u64;
        'conn: loop {
            let got = match try_read(&mut s, &mut buf) {
                Ok(Some(0)) | Err(_) => break,
                Ok(Some(got)) => got,
                Ok(None) => {
                    std::hint::spin_loop();
                    continue;
                }
            };
            let at = Instant::now();
            let mut closed = false;
            frames.feed(&buf[..got], at, |f| match f.opcode {
                1 => {
                    let v: serde_json::Value = serde_json::from_slice(f.payload).expect("json");
                    let cid = v["params"]["newClientOrderId"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    arrivals.lock().expect("lock").insert(cid, f.complete);
                    n += 1;
                    let ack = serde_json::json!({"id": v["id"], "status": 200,
                        "result": {"orderId": n, "status": "NEW"}});
                    out.push(server_frame(1, ack.to_string().as_bytes()));
                }
                9 => out.push(server_frame(10, f.payload)),
                8 => closed = true,
                _ => {}
            });
            for f in out.drain(..) {
                if write_all_spin(&mut s, &f).is_err() {
                    break 'conn;
                }
            }
            if closed {
                break;
            }
        }
    });
}

/// The earlier server: a blocking read, stamped once its thread has woken up and parsed the frame.
fn blocking_server(l: TcpListener, arrivals: Arrivals) {
    std::thread::spawn(move || {
        let (tcp, _) = l.accept().expect("accept");
        tcp.set_nodelay(true).expect("nodelay");
        let mut ws = tungstenite::accept(tcp).expect("upgrade");
        let mut n = 0u64;
        while let Ok(m) = ws.read() {
            let Message::Text(t) = m else { continue };
            let at = Instant::now();
            let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
            let cid = v["params"]["newClientOrderId"]
                .as_str()
                .unwrap_or("")
                .to_string();
            arrivals.lock().expect("lock").insert(cid, at);
            n += 1;
            let ack = serde_json::json!({"id": v["id"], "status": 200,
                "result": {"orderId": n, "status": "NEW"}});
            if ws.send(Message::text(ack.to_string())).is_err() {
                break;
            }
        }
    });
}

fn order() -> OrderRequest {
    OrderRequest {
        symbol: Symbol::new("BTCUSDT").expect("valid"),
        sym: 0,
        mode: StrategyMode::Scalp,
        intent: OrderIntent::Entry,
        side: Side::Buy,
        order_type: OrderType::Limit,
        tif: Some(TimeInForce::Gtx),
        price: Price::from_units(6_000_000_000_000),
        ref_price: Price::from_units(6_000_000_000_000),
        qty: Qty::from_units(1_000_000),
        reduce_only: false,
    }
}

fn main() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let arrivals = Arrivals::default();
    server(l, arrivals.clone());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let endpoints = Endpoints {
        name: "testnet",
        // Never reached while the WebSocket API answers (REST is the fallback).
        fapi: "http://127.0.0.1:9".into(),
        fstream: "ws://127.0.0.1:9".into(),
        wsapi: format!("ws://127.0.0.1:{port}/ws-fapi/v1"),
        sapi: None,
        spot: "http://127.0.0.1:9".into(),
        spot_stream: "ws://127.0.0.1:9".into(),
        spot_wsapi: "ws://127.0.0.1:9".into(),
        overridden: true,
    };
    let creds = Credentials {
        api_key: api_key(),
        signer: hmac_signer(),
        source: "bench",
    };
    let client = RestClient::new(endpoints, Some(creds)).expect("rest client");
    let (engine, ends) = link();
    let btc = Symbol::new("BTCUSDT").expect("valid");
    let precision = HashMap::from([(btc, btc_precision())]);
    let gw = gateway::start(
        client,
        rt.handle().clone(),
        ends,
        precision,
        Arc::new(resync::Slot::default()),
    )
    .expect("gateway");

    let mut ids = ClientOrderIdGen::new(1_704_067_200_000);
    let mut sent: Vec<(ClientOrderId, Instant)> = Vec::with_capacity(ORDERS + 50);
    let mut acks = 0usize;
    // The first orders also wait for the connection; only the later ones are measured.
    for i in 0..ORDERS + 50 {
        std::thread::sleep(GAP);
        while let Ok(m) = engine.inbound.try_recv() {
            if matches!(m, Inbound::Ack { .. }) {
                acks += 1;
            }
        }
        let cid = ids.next_id();
        let t = Instant::now();
        engine
            .outbound
            .send(Outbound::Place {
                req: order(),
                client_id: cid,
            })
            .expect("queue");
        if i >= 50 {
            sent.push((cid, t));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let arrived = arrivals.lock().expect("lock").clone();
    let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("histogram");
    let mut missing = 0;
    for (cid, t) in &sent {
        match arrived.get(cid.as_str()) {
            Some(a) => h
                .record(a.saturating_duration_since(*t).as_nanos().max(1) as u64)
                .expect("record"),
            None => missing += 1,
        }
    }
    gw.stop(Duration::from_secs(2));
    report(
        "gateway_hop (old path: queue -> gateway thread)",
        &h,
        missing,
        acks,
    );
    engine_hop();
}

fn report(what: &str, h: &Histogram<u64>, missing: usize, acks: usize) {
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let server = match std::env::var_os("HOP_BLOCKING_SERVER").is_some_and(|v| v == "1") {
        true => "blocking server, stamped after its wake-up",
        false => "busy-polling server, stamped when read returns",
    };
    println!(
        "{what}, {server}: {} orders ({} missing, {} acks), {:?} apart: engine send -> order.place frame at the server: \
         min {:.1} us, p10 {:.1} us, p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
        h.len(),
        missing,
        acks,
        GAP,
        h.min() as f64 / 1000.0,
        us(0.1),
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        h.max() as f64 / 1000.0
    );
}

/// The same orders placed by the engine thread's order entry on its own connection.
fn engine_hop() {
    use aegis_engine::net::mio_ws::WsClientConfig;
    use aegis_engine::sign::OrderEncoder;
    use aegis_engine::venue::binance::entry::{EntryConfig, EntryStats, OrderEntry, WallClock};
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let arrivals = Arrivals::default();
    server(l, arrivals.clone());
    let (rest, _rest_rx) = crossbeam_channel::bounded(4096);
    let btc = Symbol::new("BTCUSDT").expect("valid");
    let mut e = OrderEntry::new(EntryConfig {
        ws: WsClientConfig::new(format!("ws://127.0.0.1:{port}/ws-fapi/v1")),
        encoder: OrderEncoder::new(hmac_signer(), api_key(), 5000),
        precision: vec![(btc, btc_precision())],
        clock: Arc::new(WallClock),
        rest,
        stats: Arc::new(EntryStats::default()),
        switch: None,
    });
    // The busy-polling "engine" on the last core, as the bot pins its engine; the server spins on core 0.
    let last = core_affinity::get_core_ids().map_or(0, |ids| ids.len().saturating_sub(1));
    if !aegis_benches::spin::pin(last) {
        eprintln!("engine_hop: not pinned to core {last}");
    }
    let t = Instant::now();
    while !e.is_open() {
        assert!(t.elapsed() < Duration::from_secs(10), "connects");
        e.poll(Instant::now());
    }
    let mut ids = ClientOrderIdGen::new(1_704_067_300_000);
    let mut placed = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("histogram");
    let mut sent: Vec<(ClientOrderId, Instant)> = Vec::with_capacity(ORDERS + 50);
    let mut acks = 0usize;
    for i in 0..ORDERS + 50 {
        // Busy-polling between orders, as the engine loop does.
        let idle = Instant::now();
        while idle.elapsed() < GAP {
            e.poll(Instant::now());
            while let Some(m) = e.next_inbound() {
                if matches!(m, Inbound::Ack { .. }) {
                    acks += 1;
                }
            }
        }
        let cid = ids.next_id();
        let t = Instant::now();
        e.place(order(), cid);
        let done = Instant::now();
        if i >= 50 {
            sent.push((cid, t));
            // The sender's side alone: encoding plus the socket write (on loopback the bytes are in the server's
            // receive queue when it returns); no receiver in it.
            placed
                .record(done.duration_since(t).as_nanos().max(1) as u64)
                .expect("record");
        }
    }
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(300) {
        e.poll(Instant::now());
        while e.next_inbound().is_some() {}
    }
    let arrived = arrivals.lock().expect("lock").clone();
    let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("histogram");
    let mut missing = 0;
    for (cid, t) in &sent {
        match arrived.get(cid.as_str()) {
            Some(a) => h
                .record(a.saturating_duration_since(*t).as_nanos().max(1) as u64)
                .expect("record"),
            None => missing += 1,
        }
    }
    report(
        "engine_hop (engine thread's order entry)",
        &h,
        missing,
        acks,
    );
    let us = |q: f64| placed.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "engine_hop, sender side: OrderEntry::place call (encode + socket write): min {:.2} us, p50 {:.2} us, \
         p90 {:.2} us, p99 {:.2} us, p99.9 {:.2} us, max {:.1} us",
        placed.min() as f64 / 1000.0,
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        placed.max() as f64 / 1000.0
    );
}
