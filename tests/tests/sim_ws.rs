//! binance-sim WebSockets: market streams (raw, combined, routed, SUBSCRIBE), the depth sequence and its gap
//! fault, user data streams and their consistency with REST, listenKey expiry, the WebSocket API, and the
//! connection faults (drop, stall, malformed frame, early 24-hour disconnect, lifetime).

mod common;

use aegis_testkit::sim::client::AdminCall;
use aegis_testkit::sim::{SimConfig, SourceKind};
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

async fn moving_sim() -> aegis_testkit::sim::SimHandle {
    bare_sim(SimConfig {
        source: SourceKind::EngineSim,
        tick_ms: 20,
        ..SimConfig::default()
    })
    .await
}

#[tokio::test]
async fn raw_combined_and_routed_market_streams() {
    let h = moving_sim().await;
    let mut raw = ws(&h, "/ws/btcusdt@bookTicker").await;
    let v = next_matching(&mut raw, T, |_| true).await;
    assert_eq!(
        (v["e"].as_str(), v["s"].as_str()),
        (Some("bookTicker"), Some("BTCUSDT"))
    );
    assert!(
        v["b"].as_str().unwrap().parse::<f64>().unwrap()
            < v["a"].as_str().unwrap().parse::<f64>().unwrap()
    );
    for k in ["u", "E", "T", "B", "A"] {
        assert!(!v[k].is_null(), "{k} missing in {v}");
    }
    let mut comb = ws(&h, "/stream?streams=btcusdt@aggTrade/ethusdt@bookTicker").await;
    let a = next_matching(&mut comb, T, |v| v["stream"] == "btcusdt@aggTrade").await;
    assert_eq!(a["data"]["e"], "aggTrade");
    let b = next_matching(&mut comb, T, |v| v["stream"] == "ethusdt@bookTicker").await;
    assert_eq!(b["data"]["s"], "ETHUSDT");
    // Routed paths serve their own families only.
    let mut p = ws(&h, "/public/ws/btcusdt@bookTicker").await;
    assert_eq!(next_matching(&mut p, T, |_| true).await["e"], "bookTicker");
    let mut m = ws(&h, "/market/stream?streams=btcusdt@aggTrade").await;
    assert_eq!(
        next_matching(&mut m, T, |_| true).await["stream"],
        "btcusdt@aggTrade"
    );
    assert!(
        tokio_tungstenite::connect_async(format!("{}/public/ws/btcusdt@aggTrade", h.ws_url()))
            .await
            .is_err()
    );
    // Live SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS.
    let mut live = ws(&h, "/ws").await;
    send(&mut live, json!({"method": "SUBSCRIBE", "params": ["ethusdt@aggTrade", "btcusdt@markPrice@1s"], "id": 1})).await;
    assert_eq!(
        next_matching(&mut live, T, |v| v.get("id").is_some()).await,
        json!({"result": null, "id": 1})
    );
    assert_eq!(
        next_matching(&mut live, T, |v| v["e"] == "aggTrade").await["s"],
        "ETHUSDT"
    );
    let mp = next_matching(&mut live, Duration::from_secs(3), |v| {
        v["e"] == "markPriceUpdate"
    })
    .await;
    assert_eq!(mp["s"], "BTCUSDT");
    send(&mut live, json!({"method": "LIST_SUBSCRIPTIONS", "id": 2})).await;
    let l = next_matching(&mut live, T, |v| v["id"] == 2).await;
    assert_eq!(
        l["result"],
        json!(["ethusdt@aggTrade", "btcusdt@markPrice@1s"])
    );
    send(&mut live, json!({"method": "UNSUBSCRIBE", "params": ["ethusdt@aggTrade", "btcusdt@markPrice@1s"], "id": 3})).await;
    next_matching(&mut live, T, |v| v["id"] == 3).await;
    assert_quiet(&mut live, 100, 50, "nothing more arrives once unsubscribed").await;
    h.shutdown().await;
}

#[tokio::test]
async fn depth_snapshot_and_diff_chain_and_the_gap_fault() {
    let (h, c) = frozen_alice().await;
    let a = h.admin();
    let mut d = ws(&h, "/ws/btcusdt@depth@100ms").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let snap = c
        .public("/fapi/v1/depth", "symbol=BTCUSDT&limit=1000")
        .await
        .body;
    let last = snap["lastUpdateId"].as_u64().unwrap();
    a.call(AdminCall::set_quote(
        "BTCUSDT", "59999.8", "0.4", "59999.9", "0.3",
    ))
    .await
    .unwrap();
    let e1 = next_matching(&mut d, T, |v| v["e"] == "depthUpdate").await;
    assert!(e1["U"].as_u64().unwrap() <= last + 1 && e1["u"].as_u64().unwrap() > last);
    assert_eq!(e1["pu"].as_u64().unwrap(), last);
    // The old best ask 60000.0 shrank to a deeper level size; the new best ask is there.
    let asks = e1["a"].as_array().unwrap();
    assert!(
        asks.iter().any(|l| l == &json!(["59999.90", "0.300"])),
        "{e1}"
    );
    a.call(AdminCall::set_quote(
        "BTCUSDT", "59999.9", "0.4", "60000", "0.3",
    ))
    .await
    .unwrap();
    let e2 = next_matching(&mut d, T, |v| v["e"] == "depthUpdate").await;
    assert_eq!(e2["pu"], e1["u"], "chain holds");
    a.call(AdminCall::depth_gap("BTCUSDT")).await.unwrap();
    a.call(AdminCall::set_quote(
        "BTCUSDT", "59999.8", "0.4", "59999.9", "0.3",
    ))
    .await
    .unwrap();
    a.call(AdminCall::set_quote(
        "BTCUSDT", "59999.9", "0.4", "60000", "0.3",
    ))
    .await
    .unwrap();
    let e4 = next_matching(&mut d, T, |v| v["e"] == "depthUpdate").await;
    assert_ne!(
        e4["pu"], e2["u"],
        "one update was skipped: the chain breaks"
    );
    assert_eq!(e4["pu"].as_u64().unwrap(), e2["u"].as_u64().unwrap() + 1);
    h.shutdown().await;
}

#[tokio::test]
async fn user_data_events_agree_with_rest_and_listen_key_expiry() {
    let (h, c) = frozen_alice().await;
    let lk = c.listen_key().await;
    let mut u = ws(&h, &format!("/ws/{lk}")).await;
    let mut p = ws(&h, &format!("/private/ws?listenKey={lk}")).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = c.order(&with_id(market("SELL", "0.7"), "ud-1")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new = next_matching(&mut u, T, |v| v["e"] == "ORDER_TRADE_UPDATE").await;
    assert_eq!(
        (
            new["o"]["x"].clone(),
            new["o"]["X"].clone(),
            new["o"]["c"].clone()
        ),
        (json!("NEW"), json!("NEW"), json!("ud-1"))
    );
    // Two trades: 0.5 @ 59999.9 then 0.2 @ 59999.8.
    let t1 = next_matching(&mut u, T, |v| v["e"] == "ORDER_TRADE_UPDATE").await;
    assert_eq!(
        (
            t1["o"]["x"].clone(),
            t1["o"]["X"].clone(),
            t1["o"]["l"].clone(),
            t1["o"]["L"].clone()
        ),
        (
            json!("TRADE"),
            json!("PARTIALLY_FILLED"),
            json!("0.500"),
            json!("59999.90")
        )
    );
    assert_eq!(
        (
            t1["o"]["m"].clone(),
            t1["o"]["N"].clone(),
            t1["o"]["n"].clone()
        ),
        (json!(false), json!("USDT"), json!("11.99998000"))
    );
    let au1 = next_matching(&mut u, T, |v| v["e"] == "ACCOUNT_UPDATE").await;
    assert_eq!(au1["a"]["P"][0]["pa"], "-0.5");
    let t2 = next_matching(&mut u, T, |v| v["e"] == "ORDER_TRADE_UPDATE").await;
    assert_eq!(
        (t2["o"]["X"].clone(), t2["o"]["z"].clone()),
        (json!("FILLED"), json!("0.700"))
    );
    assert_ne!(t1["o"]["t"], t2["o"]["t"]);
    let au = next_matching(&mut u, T, |v| v["e"] == "ACCOUNT_UPDATE").await;
    assert_eq!(au["a"]["m"], "ORDER");
    // The same events on the routed private path.
    let pv = next_matching(&mut p, T, |v| {
        v["e"] == "ACCOUNT_UPDATE" && v["a"]["P"][0]["pa"] == "-0.7"
    })
    .await;
    assert_eq!(pv["a"]["B"][0]["wb"], au["a"]["B"][0]["wb"]);
    // REST agrees with the last event.
    let acct = c.account().await.body;
    let risk = c
        .signed("GET", "/fapi/v2/positionRisk", &[("symbol", "BTCUSDT")])
        .await
        .body;
    assert_eq!(au["a"]["P"][0]["pa"], "-0.7");
    assert_eq!(risk[0]["positionAmt"], "-0.7");
    assert_eq!(risk[0]["entryPrice"], au["a"]["P"][0]["ep"]);
    assert_eq!(acct["totalWalletBalance"], au["a"]["B"][0]["wb"]);
    assert_eq!(
        h.admin().call(AdminCall::positions("alice")).await.unwrap()[0]["positionAmt"],
        "-0.7"
    );

    // Expiry: listenKeyExpired, then the stream closes; keepalive gets -1125.
    h.admin()
        .call(AdminCall::expire_listen_keys(None, Some("alice")))
        .await
        .unwrap();
    let ev = next_matching(&mut u, T, |v| v["e"] == "listenKeyExpired").await;
    assert_eq!(ev["listenKey"], lk.as_str());
    assert!(matches!(next(&mut u, T).await, Next::Closed(1000)));
    c.keepalive().await.assert_err(400, -1125);
    // Connecting with the dead key is refused.
    assert!(
        tokio_tungstenite::connect_async(format!("{}/ws/{lk}", h.ws_url()))
            .await
            .is_err()
    );
    h.shutdown().await;
}

#[tokio::test]
async fn listen_key_expires_by_itself_after_its_validity() {
    let h = bare_sim(SimConfig {
        source: SourceKind::Frozen,
        tick_ms: 20,
        listen_key_ttl_ms: 300,
        ..SimConfig::default()
    })
    .await;
    let c = Client::alice(&h);
    let lk = c.listen_key().await;
    let mut u = ws(&h, &format!("/ws/{lk}")).await;
    let ev = next_matching(&mut u, Duration::from_secs(3), |v| {
        v["e"] == "listenKeyExpired"
    })
    .await;
    assert!(
        ev["E"].is_string(),
        "E is sent as a string, like Binance does"
    );
    c.keepalive().await.assert_err(400, -1125);
    h.shutdown().await;
}

fn ed_sign(payload: &str) -> String {
    use base64::Engine;
    use ed25519_dalek::Signer as _;
    base64::engine::general_purpose::STANDARD
        .encode(bob_signing_key().sign(payload.as_bytes()).to_bytes())
}

async fn api_call(w: &mut Ws, id: i64, method: &str, params: Value) -> Value {
    send(w, json!({"id": id, "method": method, "params": params})).await;
    next_matching(w, T, |v| v["id"] == id).await
}

/// A WebSocket API call about BTCUSDT order `client_id` (`order.status`, `order.cancel`), timestamped now.
async fn by_client_id(w: &mut Ws, id: i64, method: &str, client_id: &str) -> Value {
    let params =
        json!({"symbol": "BTCUSDT", "origClientOrderId": client_id, "timestamp": now_ms()});
    api_call(w, id, method, params).await
}

/// Asserts a WebSocket API error answer: its HTTP-like status and Binance code.
fn assert_api_err(r: &Value, status: u16, code: i64) {
    assert_eq!(
        (r["status"].clone(), r["error"]["code"].clone()),
        (json!(status), json!(code)),
        "{r}"
    );
}

#[tokio::test]
async fn ws_api_logon_orders_per_request_signing_and_revocation() {
    let h = frozen_sim().await;
    let a = h.admin();
    let mut w = ws(&h, "/ws-fapi/v1").await;
    // Not logged on and unsigned: refused.
    let r = api_call(
        &mut w,
        1,
        "order.status",
        json!({"symbol": "BTCUSDT", "orderId": 1, "timestamp": now_ms()}),
    )
    .await;
    assert_api_err(&r, 400, -1102);
    // HMAC keys cannot log on.
    let ts = now_ms();
    let sig = aegis_testkit::sim::auth::hmac_hex(
        ALICE_SECRET,
        format!("apiKey={ALICE_KEY}&timestamp={ts}").as_bytes(),
    );
    let r = api_call(
        &mut w,
        2,
        "session.logon",
        json!({"apiKey": ALICE_KEY, "timestamp": ts, "signature": sig}),
    )
    .await;
    assert_eq!(r["error"]["code"], -4056);
    // Bad Ed25519 signature: -1022.
    let r = api_call(
        &mut w,
        3,
        "session.logon",
        json!({"apiKey": BOB_KEY, "timestamp": ts, "signature": ed_sign("other")}),
    )
    .await;
    assert_api_err(&r, 400, -1022);
    let ts = now_ms();
    let r = api_call(
        &mut w,
        4,
        "session.logon",
        json!({"apiKey": BOB_KEY, "timestamp": ts,
        "signature": ed_sign(&format!("apiKey={BOB_KEY}&timestamp={ts}"))}),
    )
    .await;
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["result"]["apiKey"], BOB_KEY);
    assert_eq!(r["rateLimits"][0]["rateLimitType"], "REQUEST_WEIGHT");
    // Logged on: timestamp only.
    let r = api_call(&mut w, 5, "order.place", json!({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
        "timeInForce": "GTC", "quantity": "0.01", "price": "59000", "newClientOrderId": "wsapi-1", "timestamp": now_ms()})).await;
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["result"]["status"], "NEW");
    assert!(r["result"]["orderId"].is_u64(), "integers are JSON numbers");
    assert!(
        r["result"]["price"].is_string(),
        "decimals are JSON strings"
    );
    let limits = r["rateLimits"].as_array().unwrap();
    assert!(limits
        .iter()
        .any(|l| l["rateLimitType"] == "ORDERS" && l["intervalNum"] == 10 && l["count"] == 1));
    let r = by_client_id(&mut w, 6, "order.status", "wsapi-1").await;
    assert_eq!(r["result"]["status"], "NEW");
    let r = api_call(
        &mut w,
        7,
        "order.place",
        json!({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
        "timeInForce": "GTC", "quantity": "0.01", "price": "59000.05", "timestamp": now_ms()}),
    )
    .await;
    assert_api_err(&r, 400, -4014);
    assert!(r.get("result").is_none());
    let r = by_client_id(&mut w, 8, "order.cancel", "wsapi-1").await;
    assert_eq!(r["result"]["status"], "CANCELED");
    assert_eq!(
        a.call(AdminCall::open_orders("bob")).await.unwrap(),
        json!([])
    );

    // Per-request HMAC signing on another connection (sorted params, apiKey included).
    let mut w2 = ws(&h, "/ws-fapi/v1").await;
    let ts = now_ms().to_string();
    let mut params = vec![
        ("apiKey", ALICE_KEY),
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "MARKET"),
        ("quantity", "0.01"),
        ("timestamp", ts.as_str()),
    ];
    params.sort();
    let payload = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let sig = aegis_testkit::sim::auth::hmac_hex(ALICE_SECRET, payload.as_bytes());
    let mut obj = serde_json::Map::new();
    for (k, v) in &params {
        obj.insert(k.to_string(), json!(v));
    }
    obj.insert("signature".into(), json!(sig));
    let r = api_call(&mut w2, 1, "order.place", Value::Object(obj.clone())).await;
    assert_eq!(r["status"], 200, "{r}");
    obj.insert("quantity".into(), json!("0.02"));
    let r = api_call(&mut w2, 2, "order.place", Value::Object(obj)).await;
    assert_eq!(r["error"]["code"], -1022);

    // Revoking bob's key: the logged-on session is told at once, and its next request fails with 401.
    a.call(AdminCall::revoke_key(BOB_KEY)).await.unwrap();
    let push = next_matching(&mut w, T, |v| v["id"].is_null()).await;
    assert_eq!(
        push,
        json!({"id": null, "status": 401, "error": {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}})
    );
    let r = by_client_id(&mut w, 9, "order.status", "wsapi-1").await;
    assert_api_err(&r, 401, -2015);
    h.shutdown().await;
}

#[tokio::test]
async fn ws_faults_drop_stall_malformed_disconnect_lifetime() {
    let h = moving_sim().await;
    let a = h.admin();
    // Drop: the TCP connection ends without a close frame.
    let mut s = ws(&h, "/ws/btcusdt@bookTicker").await;
    next_matching(&mut s, T, |_| true).await;
    let n = a.call(AdminCall::ws_drop("market")).await.unwrap();
    assert_eq!(n["connections"], 1);
    let n = next_non_json(&mut s, T).await;
    assert!(matches!(n, Next::Cut), "expected a cut, got {n:?}");
    // Stall: nothing for the stall's duration, then data again.
    let mut s = ws(&h, "/ws/btcusdt@bookTicker").await;
    next_matching(&mut s, T, |_| true).await;
    a.call(AdminCall::ws_stall("market", None)).await.unwrap();
    assert_quiet(&mut s, 50, 30, "stalled stream is silent").await;
    a.call(AdminCall::ws_unstall("market")).await.unwrap();
    assert_eq!(next_matching(&mut s, T, |_| true).await["e"], "bookTicker");
    // Malformed frame.
    a.call(AdminCall::ws_malformed("market", None))
        .await
        .unwrap();
    match next_non_json(&mut s, T).await {
        Next::Garbage(g) => assert!(g.starts_with("{\"e\":\"bookTicker\""), "{g}"),
        other => panic!("expected garbage, got {other:?}"),
    }
    // The early 24-hour disconnect: a proper close frame.
    a.call(AdminCall::ws_disconnect("market")).await.unwrap();
    let n = next_non_json(&mut s, T).await;
    assert!(matches!(n, Next::Closed(1000)), "expected close, got {n:?}");
    // Lifetime: connections close by themselves once it is reached.
    a.call(AdminCall::ws_lifetime(300)).await.unwrap();
    let mut s = ws(&h, "/stream?streams=btcusdt@bookTicker").await;
    let t0 = tokio::time::Instant::now();
    let n = next_non_json(&mut s, T).await;
    assert!(matches!(n, Next::Closed(1000)), "expected close, got {n:?}");
    assert!(t0.elapsed() >= Duration::from_millis(250));
    let conns = a.call(AdminCall::ws_connections()).await.unwrap();
    assert_eq!(conns, json!([]), "closed connections leave the registry");
    h.shutdown().await;
}

#[tokio::test]
async fn listen_key_subscribed_on_a_market_connection_gets_user_events() {
    let (h, c) = frozen_alice().await;
    let lk = c.listen_key().await;
    let mut s = ws(&h, "/ws").await;
    send(
        &mut s,
        json!({"method": "SUBSCRIBE", "params": [lk], "id": 5}),
    )
    .await;
    next_matching(&mut s, T, |v| v["id"] == 5).await;
    c.order(&with_id(limit_buy("0.01", "59000"), "mk-1")).await;
    let e = next_matching(&mut s, T, |v| v["e"] == "ORDER_TRADE_UPDATE").await;
    assert_eq!(e["o"]["c"], "mk-1");
    h.shutdown().await;
}
