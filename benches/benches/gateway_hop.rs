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
    println!(
        "{what}: {} orders ({} missing, {} acks), {:?} apart: engine send -> order.place frame at the server: \
         p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
        h.len(),
        missing,
        acks,
        GAP,
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
    let t = Instant::now();
    while !e.is_open() {
        assert!(t.elapsed() < Duration::from_secs(10), "connects");
        e.poll(Instant::now());
    }
    let mut ids = ClientOrderIdGen::new(1_704_067_300_000);
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
        if i >= 50 {
            sent.push((cid, t));
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
}
