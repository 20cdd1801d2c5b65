//! The engine thread's order entry (`venue::binance::entry`) against a local WebSocket-API server: what goes on
//! the wire, how answers, refusals, unknown outcomes and a lost connection are settled, and what is handed to
//! the REST worker. The server is a scripted tungstenite thread; the test thread polls the entry as the engine
//! loop does (never blocking).

use aegis_engine::net::mio_ws::WsClientConfig;
use aegis_engine::sign::{ApiKey, Ed25519Signer, HmacSigner, OrderEncoder, Signer, WirePrecision};
use aegis_engine::venue::binance::entry::{
    EntryConfig, EntryStats, OrderEntry, RestJob, RestOutcome, WallClock,
};
use aegis_engine::venue::binance::Inbound;
use aegis_engine::venue::OrderRequest;
use aegis_shared::event::{HaltReason, OrderIntent, OrderType};
use aegis_shared::{ClientOrderId, Price, Qty, Secret, Side, StrategyMode, Symbol};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// What the scripted server does with one request: answer it (or not).
type Script = Box<dyn FnMut(&Value) -> Option<Value> + Send>;

/// Starts a WebSocket server that accepts connections one after another; every request it reads is reported
/// on the returned channel, and answered as the script says. `drop_after`: close the first connection after
/// this many requests (a lost connection).
fn server(mut script: Script, drop_after: Option<usize>) -> (String, mpsc::Receiver<Value>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws-fapi/v1", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut first = true;
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let Ok(mut ws) = tungstenite::accept(s) else {
                continue;
            };
            let mut n = 0;
            loop {
                let Ok(m) = ws.read() else { break };
                let Message::Text(t) = m else { continue };
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                n += 1;
                if tx.send(v.clone()).is_err() {
                    return;
                }
                if first && drop_after == Some(n) {
                    break;
                }
                if let Some(a) = script(&v) {
                    let _ = ws.send(Message::text(a.to_string()));
                }
            }
            first = false;
        }
    });
    (url, rx)
}

fn ack(v: &Value) -> Value {
    json!({"id": v["id"], "status": 200, "result": {"orderId": 77, "status": "NEW"},
        "rateLimits": [{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":300,"count":1}]})
}

fn refuse(v: &Value, status: u16, code: i32) -> Value {
    json!({"id": v["id"], "status": status, "error": {"code": code, "msg": "x"}})
}

fn btc() -> Symbol {
    Symbol::new("BTCUSDT").unwrap()
}

fn order() -> OrderRequest {
    OrderRequest {
        symbol: btc(),
        sym: 0,
        mode: StrategyMode::Scalp,
        intent: OrderIntent::Entry,
        side: Side::Buy,
        order_type: OrderType::Market,
        tif: None,
        price: Price::ZERO,
        ref_price: Price::parse("50000").unwrap(),
        qty: Qty::parse("0.001").unwrap(),
        reduce_only: false,
    }
}

fn hmac() -> Signer {
    Signer::Hmac(HmacSigner::new(&Secret::new("s3cr3t".to_string())))
}

fn entry(url: &str, signer: Signer) -> (OrderEntry, crossbeam_channel::Receiver<RestJob>) {
    let (tx, rx) = crossbeam_channel::bounded(64);
    let key = ApiKey::new(Secret::new("apikey0123".to_string())).unwrap();
    let p = WirePrecision::new(Price::parse("0.1").unwrap(), Qty::parse("0.001").unwrap()).unwrap();
    let e = OrderEntry::new(EntryConfig {
        ws: WsClientConfig::new(url),
        encoder: OrderEncoder::new(signer, key, 5000),
        precision: vec![(btc(), p)],
        clock: Arc::new(WallClock),
        rest: tx,
        stats: Arc::new(EntryStats::default()),
        switch: None,
    });
    (e, rx)
}

/// Polls until `f` holds (generous limit for a loaded machine).
fn until(e: &mut OrderEntry, mut f: impl FnMut(&mut OrderEntry) -> bool) {
    let t = Instant::now();
    while !f(e) {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out: {e:?}");
        e.poll(Instant::now());
        std::thread::yield_now();
    }
}

fn next(e: &mut OrderEntry) -> Inbound {
    let mut got = None;
    until(e, |e| {
        got = e.next_inbound();
        got.is_some()
    });
    got.unwrap()
}

/// Polls until the REST worker's queue holds a job.
fn job(e: &mut OrderEntry, rest: &crossbeam_channel::Receiver<RestJob>) -> RestJob {
    let mut got = None;
    until(e, |_| {
        got = rest.try_iter().find(|j| !matches!(j, RestJob::Note(_)));
        got.is_some()
    });
    got.unwrap()
}

fn cid(s: &str) -> ClientOrderId {
    ClientOrderId::new(s).unwrap()
}

#[test]
fn an_order_goes_out_signed_and_its_acknowledgement_comes_back() {
    let (url, rx) = server(Box::new(|v| Some(ack(v))), None);
    let (mut e, _rest) = entry(&url, hmac());
    until(&mut e, |e| e.is_open());
    e.place(order(), cid("ag1-1"));
    let req = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(req["method"], "order.place");
    assert_eq!(req["params"]["newClientOrderId"], "ag1-1");
    assert_eq!(req["params"]["quantity"], "0.001");
    assert!(req["params"]["signature"].is_string(), "{req}");
    match next(&mut e) {
        Inbound::Ack {
            client_id,
            exchange_id,
            ..
        } => assert_eq!((client_id, exchange_id), (cid("ag1-1"), 77)),
        m => panic!("{m:?}"),
    }
    assert_eq!(e.in_flight(), 0);
    // A cancel goes over the same connection.
    assert!(e.cancel(btc(), cid("ag1-1")));
    let req = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(req["method"], "order.cancel");
    assert_eq!(req["params"]["origClientOrderId"], "ag1-1");
}

#[test]
fn an_ed25519_key_logs_the_session_on_and_orders_then_carry_no_signature() {
    let (url, rx) = server(Box::new(|v| Some(ack(v))), None);
    let ed = Ed25519Signer::from_seed(&Secret::new([9u8; 32]));
    let (mut e, _rest) = entry(&url, Signer::Ed25519(ed));
    until(&mut e, |e| e.is_logged_on());
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).unwrap()["method"],
        "session.logon"
    );
    e.place(order(), cid("ag1-2"));
    let req = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(req["method"], "order.place");
    assert!(req["params"].get("signature").is_none(), "{req}");
    assert!(matches!(next(&mut e), Inbound::Ack { .. }));
}

#[test]
fn a_503_is_an_unknown_outcome_settled_by_status_queries_never_resent() {
    // order.place → 503; order.status → found.
    let (url, rx) = server(
        Box::new(|v| match v["method"].as_str() {
            Some("order.place") => Some(refuse(v, 503, -1000)),
            _ => Some(ack(v)),
        }),
        None,
    );
    let (mut e, rest) = entry(&url, hmac());
    until(&mut e, |e| e.is_open());
    e.place(order(), cid("ag1-3"));
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).unwrap()["method"],
        "order.place"
    );
    // The REST side is asked too, by client id.
    let job = job(&mut e, &rest);
    assert_eq!(
        job,
        RestJob::Query {
            symbol: btc(),
            client_id: cid("ag1-3")
        }
    );
    let q = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(q["method"], "order.status");
    assert_eq!(q["params"]["origClientOrderId"], "ag1-3");
    match next(&mut e) {
        Inbound::Ack { client_id, .. } => assert_eq!(client_id, cid("ag1-3")),
        m => panic!("{m:?}"),
    }
    assert_eq!(e.unknown_outcomes(), 0);
    // Never a second order.place.
    while let Ok(v) = rx.try_recv() {
        assert_ne!(v["method"], "order.place");
    }
    // The late REST answer changes nothing.
    e.on_rest(job, RestOutcome::Ok { order_id: 77 });
    e.poll(Instant::now());
    assert!(e.next_inbound().is_none());
}

#[test]
fn absent_on_both_sides_is_rejected() {
    let (url, _rx) = server(
        Box::new(|v| match v["method"].as_str() {
            Some("order.place") => Some(refuse(v, 503, -1000)),
            _ => Some(refuse(v, 400, -2013)),
        }),
        None,
    );
    let (mut e, rest) = entry(&url, hmac());
    until(&mut e, |e| e.is_open());
    e.place(order(), cid("ag1-4"));
    let job = job(&mut e, &rest);
    // The WebSocket API alone saying -2013 does not settle it.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(300) {
        e.poll(Instant::now());
        assert!(e.next_inbound().is_none());
    }
    assert_eq!(e.unknown_outcomes(), 1);
    e.on_rest(job, RestOutcome::Refused { code: -2013 });
    match next(&mut e) {
        Inbound::Rejected {
            client_id, code, ..
        } => assert_eq!((client_id, code), (cid("ag1-4"), -2013)),
        m => panic!("{m:?}"),
    }
}

#[test]
fn a_lost_connection_makes_orders_in_flight_unknown_and_new_ones_go_over_rest() {
    // The first connection dies after reading the order (no answer); the next one acknowledges status queries.
    let (url, rx) = server(Box::new(|v| Some(ack(v))), Some(1));
    let (mut e, rest) = entry(&url, hmac());
    until(&mut e, |e| e.is_open());
    e.place(order(), cid("ag1-5"));
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).unwrap()["method"],
        "order.place"
    );
    until(&mut e, |e| !e.is_open());
    assert_eq!(e.unknown_outcomes(), 1);
    // While it is down, a new order is handed to the REST worker.
    e.place(order(), cid("ag1-6"));
    let mut jobs = Vec::new();
    until(&mut e, |e| {
        for j in rest.try_iter() {
            if let RestJob::Query { .. } = j {
                e.on_rest(j, RestOutcome::Unknown);
            }
            jobs.push(j);
        }
        jobs.iter().any(|j| matches!(j, RestJob::Place { .. }))
    });
    assert!(jobs.contains(&RestJob::Place {
        req: order(),
        client_id: cid("ag1-6"),
        resent: false,
        cancel_stop: None
    }));
    // Reconnected: the unknown order is found by order.status (the REST worker cannot reach the exchange
    // here), and a reconciliation round is asked for.
    let mut acked = false;
    until(&mut e, |e| {
        for j in rest.try_iter() {
            if let RestJob::Query { .. } = j {
                e.on_rest(j, RestOutcome::Unknown);
            }
            jobs.push(j);
        }
        while let Some(m) = e.next_inbound() {
            match m {
                Inbound::Ack { client_id, .. } if client_id == cid("ag1-5") => acked = true,
                m => panic!("{m:?}"),
            }
        }
        acked && jobs.contains(&RestJob::Reconcile)
    });
    assert_eq!(e.unknown_outcomes(), 0);
}

#[test]
fn a_clock_refusal_resyncs_once_and_resends_once() {
    let (url, rx) = server(Box::new(|v| Some(refuse(v, 400, -1021))), None);
    let (mut e, rest) = entry(&url, hmac());
    until(&mut e, |e| e.is_open());
    e.place(order(), cid("ag1-7"));
    let job = job(&mut e, &rest);
    assert_eq!(
        job,
        RestJob::Resync {
            req: order(),
            client_id: cid("ag1-7"),
            cancel_stop: None
        }
    );
    e.on_rest(job, RestOutcome::Ok { order_id: 0 });
    // The second -1021 is final.
    match next(&mut e) {
        Inbound::Rejected { code, .. } => assert_eq!(code, -1021),
        m => panic!("{m:?}"),
    }
    let places = rx
        .try_iter()
        .filter(|v| v["method"] == "order.place")
        .count();
    assert_eq!(places, 2);
    assert!(
        !rest.try_iter().any(|j| matches!(j, RestJob::Resync { .. })),
        "no second resync"
    );
}

#[test]
fn a_429_halts_entries_and_refuses_orders_until_the_wait_has_passed() {
    let (url, _rx) = server(
        Box::new(|v| {
            Some(json!({"id": v["id"], "status": 429,
                "error": {"code": -1003, "msg": "x", "data": {"retryAfter": 1}}}))
        }),
        None,
    );
    let (mut e, _rest) = entry(&url, hmac());
    until(&mut e, |e| e.is_open());
    e.place(order(), cid("ag1-8"));
    let mut got = Vec::new();
    until(&mut e, |e| {
        got.extend(std::iter::from_fn(|| e.next_inbound()));
        got.len() >= 3
    });
    assert!(
        got.contains(&Inbound::Halt(HaltReason::RateLimited)),
        "{got:?}"
    );
    assert!(got
        .iter()
        .any(|m| matches!(m, Inbound::Rejected { code: -1003, .. })));
    // Refused locally meanwhile; then (at least a second later) entries resume.
    e.place(order(), cid("ag1-9"));
    assert!(matches!(
        e.next_inbound(),
        Some(Inbound::Rejected { code: -1003, .. })
    ));
    assert_eq!(next(&mut e), Inbound::Clear(HaltReason::RateLimited));
}

#[test]
fn a_rejected_key_makes_the_entry_read_only() {
    let (url, rx) = server(Box::new(|v| Some(refuse(v, 401, -2015))), None);
    let (mut e, _rest) = entry(&url, hmac());
    until(&mut e, |e| e.is_open());
    e.place(order(), cid("ag1-10"));
    let mut got = Vec::new();
    until(&mut e, |e| {
        got.extend(std::iter::from_fn(|| e.next_inbound()));
        got.len() >= 4
    });
    assert!(got.contains(&Inbound::ReadOnly), "{got:?}");
    assert!(got.contains(&Inbound::Halt(HaltReason::KeyRejected)));
    let _ = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    // Nothing more is sent.
    assert!(!e.cancel(btc(), cid("ag1-10")));
    e.place(order(), cid("ag1-11"));
    assert!(matches!(
        e.next_inbound(),
        Some(Inbound::Rejected { code: -2015, .. })
    ));
    std::thread::sleep(Duration::from_millis(100));
    assert!(rx.try_recv().is_err());
}

/// Spot: orders carry no `reduceOnly`, post-only is `LIMIT_MAKER`; an exit placed with `place_replacing` goes as
/// `order.cancelReplace` (ALLOW_FAILURE, the stop's client id) and its fate is its new-order leg: placed when
/// the cancel failed because the stop had triggered (409, -2021), refused with the leg's own code when the stop
/// had sold the balance (-2010), placed on a plain 200. With the connection down it goes to the REST worker
/// with the stop to cancel.
#[test]
fn spot_orders_and_an_exit_that_cancels_the_resting_stop() {
    let leg = |v: &Value| -> Value {
        let p = &v["params"];
        if v["method"] != "order.cancelReplace" {
            return ack(v);
        }
        let new_ok = json!({"symbol": "BTCUSDT", "orderId": 91, "status": "NEW", "clientOrderId": p["newClientOrderId"]});
        match p["newClientOrderId"].as_str() {
            Some("ag9-2") => json!({"id": v["id"], "status": 409, "error": {"code": -2021,
                "msg": "Order cancel-replace partially failed.",
                "data": {"cancelResult": "FAILURE", "newOrderResult": "SUCCESS",
                    "cancelResponse": {"code": -2011, "msg": "Unknown order sent."}, "newOrderResponse": new_ok}}}),
            Some("ag9-3") => json!({"id": v["id"], "status": 409, "error": {"code": -2021,
                "msg": "Order cancel-replace partially failed.",
                "data": {"cancelResult": "SUCCESS", "newOrderResult": "FAILURE",
                    "cancelResponse": {"symbol": "BTCUSDT", "orderId": 5, "status": "CANCELED"},
                    "newOrderResponse": {"code": -2010, "msg": "Account has insufficient balance for requested action."}}}}),
            _ => json!({"id": v["id"], "status": 200, "result": {"cancelResult": "SUCCESS",
                "newOrderResult": "SUCCESS", "cancelResponse": {"orderId": 5, "status": "CANCELED"},
                "newOrderResponse": new_ok}}),
        }
    };
    let (url, rx) = server(Box::new(move |v| Some(leg(v))), None);
    let (mut e, rest) = entry(&url, hmac());
    e.set_market(aegis_shared::Market::Spot);
    assert_eq!(e.market(), aegis_shared::Market::Spot);
    until(&mut e, |e| e.is_open());
    let maker = OrderRequest {
        order_type: OrderType::Limit,
        tif: Some(aegis_shared::event::TimeInForce::Gtx),
        price: Price::parse("49000").unwrap(),
        ..order()
    };
    e.place(maker, cid("ag9-1"));
    let req = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(req["method"], "order.place");
    assert_eq!(req["params"]["type"], "LIMIT_MAKER");
    assert!(req["params"].get("timeInForce").is_none(), "{req}");
    assert!(req["params"].get("reduceOnly").is_none(), "{req}");
    assert!(matches!(next(&mut e), Inbound::Ack { .. }));
    let exit = OrderRequest {
        side: Side::Sell,
        intent: OrderIntent::SignalExit,
        reduce_only: true,
        ..order()
    };
    let stop = cid("agstop-BTCUSDT-1");
    for (exit_cid, want) in [("ag9-2", Ok(91)), ("ag9-3", Err(-2010)), ("ag9-4", Ok(91))] {
        assert!(e.place_replacing(exit, cid(exit_cid), stop), "it left");
        let req = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(req["method"], "order.cancelReplace");
        let p = &req["params"];
        assert_eq!(p["cancelReplaceMode"], "ALLOW_FAILURE");
        assert_eq!(p["cancelOrigClientOrderId"], "agstop-BTCUSDT-1");
        assert_eq!(p["newClientOrderId"], exit_cid);
        assert_eq!((&p["side"], &p["type"]), (&json!("SELL"), &json!("MARKET")));
        assert!(p.get("reduceOnly").is_none(), "{req}");
        assert!(p["signature"].is_string());
        match (next(&mut e), want) {
            (
                Inbound::Ack {
                    client_id,
                    exchange_id,
                    ..
                },
                Ok(id),
            ) => {
                assert_eq!((client_id, exchange_id), (cid(exit_cid), id))
            }
            (
                Inbound::Rejected {
                    client_id, code, ..
                },
                Err(c),
            ) => {
                assert_eq!((client_id, code), (cid(exit_cid), c))
            }
            (m, w) => panic!("{exit_cid}: {m:?}, wanted {w:?}"),
        }
    }
    assert_eq!(e.in_flight(), 0);
    // Connection gone: the exit goes to the REST worker with the stop to cancel.
    e.close();
    assert!(
        e.place_replacing(exit, cid("ag9-5"), stop),
        "handed to REST"
    );
    assert_eq!(
        job(&mut e, &rest),
        RestJob::Place {
            req: exit,
            client_id: cid("ag9-5"),
            resent: false,
            cancel_stop: Some(stop),
        }
    );
}
