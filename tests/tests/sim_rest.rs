//! binance-sim REST behaviour: public endpoints, signatures and keys, error codes, matching, positions, rate
//! limits and request faults — all through real HTTP against a running simulator.

mod common;

use aegis_testkit::sim::client::AdminCall;
use aegis_testkit::sim::SimConfig;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn num(v: &Value) -> f64 {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn public_endpoints_and_weight_header() {
    let (h, c) = frozen_alice().await;
    let r = c.public("/fapi/v1/ping", "").await;
    assert_eq!((r.status, r.body.clone()), (200, json!({})));
    let w1: u32 = r.header("x-mbx-used-weight-1m").unwrap().parse().unwrap();
    let r = c.public("/fapi/v1/time", "").await;
    let t = r.body["serverTime"].as_u64().unwrap();
    assert!(t.abs_diff(now_ms()) < 2000);
    assert_eq!(
        r.header("x-mbx-used-weight-1m")
            .unwrap()
            .parse::<u32>()
            .unwrap(),
        w1 + 1
    );
    assert_eq!(c.public("/api/v3/ping", "").await.status, 200);

    let info = c.public("/fapi/v1/exchangeInfo", "").await.body;
    let syms: Vec<&str> = info["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["symbol"].as_str().unwrap())
        .collect();
    assert!(syms.contains(&"BTCUSDT") && syms.contains(&"ETHUSDT"));
    let btc = &info["symbols"][0];
    let kinds: Vec<&str> = btc["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filterType"].as_str().unwrap())
        .collect();
    for k in [
        "PRICE_FILTER",
        "LOT_SIZE",
        "MARKET_LOT_SIZE",
        "MAX_NUM_ORDERS",
        "MIN_NOTIONAL",
        "PERCENT_PRICE",
    ] {
        assert!(kinds.contains(&k), "{k} missing");
    }
    assert!(btc["orderTypes"].is_array());
    assert_eq!(info["rateLimits"][0]["rateLimitType"], "REQUEST_WEIGHT");

    let d = c
        .public("/fapi/v1/depth", "symbol=BTCUSDT&limit=5")
        .await
        .body;
    assert_eq!(d["bids"].as_array().unwrap().len(), 5);
    assert_eq!(d["asks"][0], json!(["60000.00", "0.500"]));
    assert_eq!(d["bids"][0], json!(["59999.90", "0.500"]));
    assert!(d["lastUpdateId"].as_u64().unwrap() > 0);
    c.public("/fapi/v1/depth", "symbol=NOPE")
        .await
        .assert_err(400, -1121);
    c.public("/fapi/v1/depth", "").await.assert_err(400, -1102);
    h.shutdown().await;
}

#[tokio::test]
async fn signatures_over_raw_bytes_in_query_body_and_mixed() {
    let (h, c) = frozen_alice().await;
    // All in the query (binance-futures-connector).
    let r = c.account().await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["totalWalletBalance"], "10000.00000000");
    // All in the body, sorted (python-binance).
    let r = c
        .signed_body(
            "POST",
            "/fapi/v1/order",
            &with_id(limit_buy("0.010", "59000"), "body-1"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Mixed: query then body, signed as their concatenation; the query's symbol wins over the body's.
    let ts = now_ms().to_string();
    let q = "symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC";
    let b =
        format!("symbol=BTCUSDT&quantity=0.010&price=2900&newClientOrderId=mixed-1&timestamp={ts}");
    let sig = Signer::Hmac(ALICE_SECRET.into()).sign(&format!("{q}{b}"));
    let r = c
        .raw("POST", "/fapi/v1/order", q, &format!("{b}&signature={sig}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["symbol"], "ETHUSDT");
    // Ed25519 key (bob).
    let r = Client::bob(&h).account().await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["totalWalletBalance"], "5000.00000000");

    let mut wrong_secret = Client::alice(&h);
    wrong_secret.signer = Signer::Hmac("not-the-secret".into());
    let mut wrong_ed = Client::bob(&h);
    wrong_ed.signer = Signer::Ed(ed25519_dalek::SigningKey::from_bytes(&[6u8; 32]));
    let with_key = |key: String| Client {
        key,
        ..Client::alice(&h)
    };
    let rejected = [
        ("wrong HMAC secret", wrong_secret, 400, -1022),
        ("Ed25519 signature of another key", wrong_ed, 400, -1022),
        ("missing key", with_key(String::new()), 401, -2014),
        ("malformed key", with_key("short".into()), 401, -2014),
        ("unknown key", with_key("Z".repeat(64)), 401, -2015),
        (
            "IP not allowed",
            Client::new(&h, FENCED_KEY, Signer::Hmac(FENCED_SECRET.into())),
            401,
            -2015,
        ),
    ];
    for (case, client, status, code) in rejected {
        client.account().await.assert_err_for(case, status, code);
    }
    // Missing signature: -1102.
    c.raw(
        "GET",
        "/fapi/v2/account",
        &format!("timestamp={}", now_ms()),
        "",
    )
    .await
    .assert_err(400, -1102);
    // A read-only key can read but not trade.
    let reader = Client::new(&h, READER_KEY, Signer::Hmac(READER_SECRET.into()));
    assert_eq!(
        reader
            .signed("GET", "/fapi/v1/openOrders", &[])
            .await
            .status,
        200
    );
    reader
        .order(&market("BUY", "0.01"))
        .await
        .assert_err(401, -2015);
    // apiRestrictions reports the key's permissions.
    let r = reader
        .signed("GET", "/sapi/v1/account/apiRestrictions", &[])
        .await;
    assert_eq!(
        (
            r.body["enableReading"].clone(),
            r.body["enableFutures"].clone(),
            r.body["enableWithdrawals"].clone()
        ),
        (json!(true), json!(false), json!(false))
    );
    assert_eq!(r.body["ipRestrict"], false);
    h.shutdown().await;
}

#[tokio::test]
async fn timestamp_rules_and_clock_skew() {
    let (h, mut c) = frozen_alice().await;
    c.offset_ms = -6000;
    let r = c.account().await;
    r.assert_err(400, -1021);
    assert_eq!(
        r.body["msg"],
        "Timestamp for this request is outside of the recvWindow."
    );
    // A larger recvWindow accepts it.
    assert_eq!(
        c.signed("GET", "/fapi/v2/account", &[("recvWindow", "10000")])
            .await
            .status,
        200
    );
    c.offset_ms = 1500;
    let r = c.account().await;
    r.assert_err(400, -1021);
    assert!(r.body["msg"]
        .as_str()
        .unwrap()
        .contains("ahead of the server"));
    // Skewing the server clock: a client on local time fails until it syncs with /fapi/v1/time.
    h.admin().call(AdminCall::skew_clock(-4000)).await.unwrap();
    let mut c = Client::alice(&h);
    c.account().await.assert_err(400, -1021);
    let server = c.public("/fapi/v1/time", "").await.body["serverTime"]
        .as_u64()
        .unwrap();
    c.offset_ms = server as i64 - now_ms() as i64;
    assert!(c.offset_ms < -3000);
    assert_eq!(c.account().await.status, 200);
    h.shutdown().await;
}

/// `params` with `key`'s value replaced.
fn replaced<'a>(
    mut params: Vec<(&'a str, &'a str)>,
    key: &str,
    value: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let i = params
        .iter()
        .position(|(k, _)| *k == key)
        .unwrap_or_else(|| panic!("no {key} in {params:?}"));
    params[i].1 = value;
    params
}

/// A request the simulator must refuse with `(status, code)`, and with `msg` exactly when given.
struct Refused<'a> {
    case: &'a str,
    method: &'a str,
    path: &'a str,
    params: Vec<(&'a str, &'a str)>,
    status: u16,
    code: i64,
    msg: Option<&'a str>,
}

impl Refused<'_> {
    async fn check(&self, c: &Client) {
        let r = c.signed(self.method, self.path, &self.params).await;
        r.assert_err_for(self.case, self.status, self.code);
        if let Some(msg) = self.msg {
            assert_eq!(r.body["msg"], msg, "{}", self.case);
        }
    }
}

/// An order [`Refused`] with `(400, code)`.
fn bad_order<'a>(case: &'a str, params: Vec<(&'a str, &'a str)>, code: i64) -> Refused<'a> {
    Refused {
        case,
        method: "POST",
        path: "/fapi/v1/order",
        params,
        status: 400,
        code,
        msg: None,
    }
}

#[tokio::test]
async fn order_error_codes() {
    let (h, c) = frozen_alice().await;
    let mut no_qty = limit_buy("", "59000");
    no_qty.retain(|(k, _)| *k != "quantity");
    let mut reduce_only = market("SELL", "0.01");
    reduce_only.push(("reduceOnly", "true"));
    let refused = [
        Refused {
            msg: Some("Mandatory parameter 'quantity' was not sent, was empty/null, or malformed."),
            ..bad_order("quantity missing", no_qty, -1102)
        },
        bad_order("quantity off the step", limit_buy("0.0105", "59000"), -1111),
        bad_order("price off the tick", limit_buy("0.010", "59000.05"), -4014),
        Refused {
            msg: Some(
                "Order's notional must be no smaller than 100 (unless you choose reduce only)",
            ),
            ..bad_order("notional too small", limit_buy("0.001", "59000"), -4164)
        },
        bad_order("margin insufficient", limit_buy("5", "59000"), -2019),
        bad_order(
            "conditional type on the order endpoint",
            replaced(market("BUY", "0.01"), "type", "STOP_MARKET"),
            -4120,
        ),
        bad_order(
            "unknown symbol",
            replaced(market("BUY", "1"), "symbol", "XRPBTC"),
            -1121,
        ),
    ];
    for r in &refused {
        r.check(&c).await;
    }
    // A reused client order id needs its first order placed, so the refusals after it run with one resting.
    let dup = with_id(limit_buy("0.010", "59000"), "dup-1");
    assert_eq!(c.order(&dup).await.status, 200);
    let refused = [
        Refused {
            msg: Some("ClientOrderId is duplicated."),
            ..bad_order("client order id reused", dup, -4116)
        },
        Refused {
            method: "DELETE",
            ..bad_order(
                "cancel of an unknown order",
                vec![("symbol", "BTCUSDT"), ("orderId", "12345")],
                -2011,
            )
        },
        Refused {
            method: "GET",
            ..bad_order(
                "query of an unknown order",
                vec![("symbol", "BTCUSDT"), ("origClientOrderId", "never")],
                -2013,
            )
        },
        bad_order("reduce-only without a position", reduce_only, -2022),
        bad_order(
            "post-only that would take",
            limit("BTCUSDT", "BUY", "GTX", "0.01", "60000"),
            -5022,
        ),
        bad_order(
            "fill-or-kill larger than the book",
            limit("BTCUSDT", "BUY", "FOK", "1", "60000"),
            -5021,
        ),
        Refused {
            path: "/fapi/v1/leverage",
            ..bad_order(
                "leverage out of range",
                vec![("symbol", "BTCUSDT"), ("leverage", "200")],
                -4028,
            )
        },
    ];
    for r in &refused {
        r.check(&c).await;
    }
    h.shutdown().await;
}

#[tokio::test]
async fn step_size_violation_on_a_symbol_with_a_coarse_step() {
    let mut spec = aegis_testkit::sim::symbols::SymbolSpec::ethusdt();
    spec.symbol = "TSTUSDT".into();
    spec.step = aegis_shared::Qty::parse("0.005").unwrap();
    spec.min_qty = spec.step;
    let h = sim_with(SimConfig {
        source: aegis_testkit::sim::SourceKind::Frozen,
        symbols: vec![aegis_testkit::sim::symbols::SymbolSpec::btcusdt(), spec],
        ..SimConfig::default()
    })
    .await;
    let c = Client::alice(&h);
    let buy = |qty| limit("TSTUSDT", "BUY", "GTC", qty, "2900");
    c.order(&buy("0.012")).await.assert_err(400, -4023);
    assert_eq!(c.order(&buy("0.010")).await.status, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn matching_fees_and_positions_agree_everywhere() {
    let (h, c) = frozen_alice().await;
    let a = h.admin();
    // Market buy 0.6: 0.5 @ 60000 + 0.1 @ 60000.1, taker fee 0.04 %.
    let mut buy = market("BUY", "0.6");
    buy.push(("newOrderRespType", "RESULT"));
    let r = c.order(&buy).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "FILLED");
    assert_eq!(r.body["executedQty"], "0.600");
    assert_eq!(r.body["cumQuote"], "36000.01000000");
    // ACK mode (default) reports the order as accepted, nothing filled yet.
    let r = c.order(&market("SELL", "0.1")).await;
    assert_eq!(
        (r.body["status"].clone(), r.body["executedQty"].clone()),
        (json!("NEW"), json!("0.000"))
    );
    let id = r.body["orderId"].as_u64().unwrap().to_string();
    let q = c
        .signed(
            "GET",
            "/fapi/v1/order",
            &[("symbol", "BTCUSDT"), ("orderId", &id)],
        )
        .await;
    assert_eq!(q.body["status"], "FILLED");
    // Position 0.5 long, entry (36000.01)/0.6 = 60000.01666667 rounded; realized on 0.1 sold at 59999.9.
    let acct = c.account().await.body;
    let pos = acct["positions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["symbol"] == "BTCUSDT")
        .unwrap()
        .clone();
    assert_eq!(pos["positionAmt"], "0.5");
    let v2 = c
        .signed("GET", "/fapi/v2/positionRisk", &[("symbol", "BTCUSDT")])
        .await
        .body;
    let v3 = c.signed("GET", "/fapi/v3/positionRisk", &[]).await.body;
    assert_eq!(
        v3.as_array().unwrap().len(),
        1,
        "v3 lists only symbols with a position or orders"
    );
    let adm = a.call(AdminCall::account("alice")).await.unwrap();
    for amt in [
        &v2[0]["positionAmt"],
        &v3[0]["positionAmt"],
        &adm["positions"][0]["positionAmt"],
    ] {
        assert_eq!(amt, "0.5");
    }
    assert_eq!(pos["entryPrice"], v2[0]["entryPrice"]);
    assert_eq!(v2[0]["unRealizedProfit"], v3[0]["unRealizedProfit"]);
    assert_eq!(pos["unrealizedProfit"], v2[0]["unRealizedProfit"]);
    // Wallet = 10000 − fees + realized.
    let fee1 = 36000.01 * 0.0004;
    let fee2 = 5999.99 * 0.0004;
    let entry = num(&pos["entryPrice"]);
    let realized = (59999.9 - entry) * 0.1;
    let wallet = num(&acct["totalWalletBalance"]);
    assert!(
        (wallet - (10000.0 - fee1 - fee2 + realized)).abs() < 1e-6,
        "wallet {wallet}"
    );
    // Unrealized at the mark (59999.9+60000)/2 floored to tick = 59999.9.
    assert!((num(&pos["unrealizedProfit"]) - (59999.9 - entry) * 0.5).abs() < 1e-6);
    h.shutdown().await;
}

#[tokio::test]
async fn resting_orders_fill_as_makers_when_the_market_moves_partially_then_fully() {
    let (h, c) = frozen_alice().await;
    let a = h.admin();
    let r = c.order(&with_id(limit_buy("0.5", "59990"), "rest-1")).await;
    assert_eq!(r.body["status"], "NEW");
    let open = a.call(AdminCall::open_orders("alice")).await.unwrap();
    assert_eq!(open[0]["clientOrderId"], "rest-1");
    // The ask drops to exactly 59990 with 0.2 there: a partial maker fill.
    a.call(AdminCall::set_quote(
        "BTCUSDT", "59989.9", "1", "59990", "0.2",
    ))
    .await
    .unwrap();
    let q = c.query_order("rest-1").await.body;
    assert_eq!(
        (q["status"].clone(), q["executedQty"].clone()),
        (json!("PARTIALLY_FILLED"), json!("0.200"))
    );
    // Falls through it: the rest fills at the order's price.
    a.call(AdminCall::set_quote(
        "BTCUSDT", "59979.9", "1", "59980", "1",
    ))
    .await
    .unwrap();
    let q = c.query_order("rest-1").await.body;
    assert_eq!(
        (q["status"].clone(), q["avgPrice"].clone()),
        (json!("FILLED"), json!("59990.00000000"))
    );
    let acct = c.account().await.body;
    // Maker fee 0.02 % of 29995.
    assert_eq!(acct["totalWalletBalance"], "9994.00100000");
    assert!(a
        .call(AdminCall::open_orders("alice"))
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .is_empty());
    // Cancel all, open orders, leverage.
    for p in ["59000", "58000"] {
        c.order(&limit_buy("0.01", p)).await;
    }
    assert_eq!(
        c.signed("GET", "/fapi/v1/openOrders", &[("symbol", "BTCUSDT")])
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let r = c
        .signed("DELETE", "/fapi/v1/allOpenOrders", &[("symbol", "BTCUSDT")])
        .await;
    assert_eq!(r.body["code"], 200);
    assert!(c
        .signed("GET", "/fapi/v1/openOrders", &[])
        .await
        .body
        .as_array()
        .unwrap()
        .is_empty());
    let r = c
        .signed(
            "POST",
            "/fapi/v1/leverage",
            &[("symbol", "BTCUSDT"), ("leverage", "5")],
        )
        .await;
    assert_eq!(r.body["leverage"], 5);
    let v2 = c
        .signed("GET", "/fapi/v2/positionRisk", &[("symbol", "BTCUSDT")])
        .await
        .body;
    assert_eq!(v2[0]["leverage"], "5");
    h.shutdown().await;
}

#[tokio::test]
async fn rate_limits_headers_429_then_418() {
    let h = frozen_sim().await;
    let a = h.admin();
    a.call(AdminCall::set_limits(
        json!({"weightPerMinute": 6, "ordersPer10s": 2, "ordersPerMinute": 50,
        "banAfter429s": 2, "banSecs": 60}),
    ))
    .await
    .unwrap();
    let c = Client::alice(&h);
    // Orders: weight 0 on the IP, counted per account.
    let mk = limit_buy("0.01", "59000");
    let r = c.order(&mk).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (
            r.header("x-mbx-order-count-10s"),
            r.header("x-mbx-order-count-1m")
        ),
        (Some("1".into()), Some("1".into()))
    );
    assert_eq!(r.header("x-mbx-used-weight-1m"), Some("0".into()));
    assert_eq!(
        c.order(&mk).await.header("x-mbx-order-count-10s"),
        Some("2".into())
    );
    let r = c.order(&mk).await;
    r.assert_err(429, -1015);
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() <= 10);
    a.call(AdminCall::reset_limits()).await.unwrap();
    // Weight: 6 per minute; ping costs 1.
    for i in 1..=6 {
        let r = c.public("/fapi/v1/ping", "").await;
        assert_eq!(r.header("x-mbx-used-weight-1m"), Some(i.to_string()));
    }
    let r = c.public("/fapi/v1/ping", "").await;
    r.assert_err(429, -1003);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    c.public("/fapi/v1/ping", "").await.assert_err(429, -1003);
    // Keeping on after 429s gets the IP banned.
    let r = c.public("/fapi/v1/ping", "").await;
    r.assert_err(418, -1003);
    assert_eq!(r.header("retry-after"), Some("60".into()));
    assert!(r.body["msg"].as_str().unwrap().contains("IP banned until"));
    c.public("/fapi/v1/time", "").await.assert_err(418, -1003);
    h.shutdown().await;
}

#[tokio::test]
async fn fault_503_with_and_without_the_order_and_delays() {
    let (h, c) = frozen_alice().await;
    let a = h.admin();
    let mk = |id| with_id(limit_buy("0.01", "59000"), id);
    a.call(AdminCall::order_503(1, true)).await.unwrap();
    let r = c.order(&mk("u-placed")).await;
    r.assert_err(503, -1007);
    // Execution status unknown: the client must query; here it exists.
    let q = c.query_order("u-placed").await;
    assert_eq!(q.body["status"], "NEW");
    a.call(AdminCall::order_503(1, false)).await.unwrap();
    c.order(&mk("u-lost")).await.assert_err(503, -1007);
    c.query_order("u-lost").await.assert_err(400, -2013);
    // Only the next one: the following order is normal.
    assert_eq!(c.order(&mk("u-after")).await.status, 200);

    // A long delay, so that a loaded CI machine cannot make an undelayed local request look delayed.
    a.call(AdminCall::delay(1500, Some(1), Some("/fapi/v1/time")))
        .await
        .unwrap();
    let t0 = Instant::now();
    assert_eq!(c.public("/fapi/v1/time", "").await.status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(1500));
    let t1 = Instant::now();
    c.public("/fapi/v1/time", "").await;
    assert!(
        t1.elapsed() < Duration::from_millis(1500),
        "only one response was to be delayed"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn key_revoked_or_downgraded_mid_session() {
    let (h, c) = frozen_alice().await;
    let a = h.admin();
    let mk = limit_buy("0.01", "59000");
    assert_eq!(c.order(&mk).await.status, 200);
    a.call(AdminCall::set_permissions(
        ALICE_KEY,
        json!({"futures": false}),
    ))
    .await
    .unwrap();
    c.order(&mk).await.assert_err(401, -2015);
    assert_eq!(c.account().await.status, 200, "reading still allowed");
    a.call(AdminCall::set_permissions(
        ALICE_KEY,
        json!({"futures": true, "ipRestrict": true, "allowedIps": ["10.9.9.9"]}),
    ))
    .await
    .unwrap();
    c.order(&mk).await.assert_err(401, -2015);
    a.call(AdminCall::set_permissions(
        ALICE_KEY,
        json!({"ipRestrict": true, "allowedIps": ["127.0.0.1"]}),
    ))
    .await
    .unwrap();
    assert_eq!(c.order(&mk).await.status, 200);
    let r = c
        .signed("GET", "/sapi/v1/account/apiRestrictions", &[])
        .await;
    assert_eq!(r.body["ipRestrict"], true);
    a.call(AdminCall::revoke_key(ALICE_KEY)).await.unwrap();
    c.account().await.assert_err(401, -2015);
    // listenKey endpoints need a valid key too.
    c.raw("POST", "/fapi/v1/listenKey", "", "")
        .await
        .assert_err(401, -2015);
    h.shutdown().await;
}

#[tokio::test]
async fn listen_key_lifecycle_rest() {
    let (h, c) = frozen_alice().await;
    let k = c.listen_key().await;
    assert_eq!(k.len(), 64);
    assert_eq!(c.listen_key().await, k, "same key while it lives");
    // python-binance sends listenKey= on PUT.
    assert_eq!(
        c.raw("PUT", "/fapi/v1/listenKey", "", &format!("listenKey={k}"))
            .await
            .status,
        200
    );
    assert_eq!(c.keepalive().await.status, 200);
    h.admin()
        .call(AdminCall::expire_listen_keys(Some(&k), None))
        .await
        .unwrap();
    c.keepalive().await.assert_err(400, -1125);
    let k2 = c.listen_key().await;
    assert_ne!(k2, k);
    assert_eq!(
        c.raw("DELETE", "/fapi/v1/listenKey", "", "").await.body,
        json!({})
    );
    c.keepalive().await.assert_err(400, -1125);
    // No key at all: -2014.
    let mut anon = Client::alice(&h);
    anon.key.clear();
    anon.raw("POST", "/fapi/v1/listenKey", "", "")
        .await
        .assert_err(401, -2014);
    h.shutdown().await;
}
