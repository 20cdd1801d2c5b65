//! binance-sim's spot half against the simulator's own books (`/admin/spot/...`): REST `/api/v3` with the spot
//! filters and their -1013s, no shorting (-2010), commissions in the asset received and in BNB, stops and an OCO
//! resting and triggering on the last price, the WebSocket API's orders and user data (`userDataStream.subscribe
//! .signature`, `eventStreamTerminated`), and the spot market streams.

mod common;

use aegis_shared::Qty;
use aegis_testkit::sim::auth::{hmac_hex, ws_api_payload, Params};
use aegis_testkit::sim::client::AdminCall;
use aegis_testkit::sim::keys::{KeyEntry, Permissions};
use aegis_testkit::sim::{start, SimConfig, SimHandle, SourceKind};
use base64::Engine;
use common::*;
use ed25519_dalek::pkcs8::EncodePublicKey;
use ed25519_dalek::Signer as _;
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);
const SPOT_KEY: &str = "Sp0tSp0tSp0tSp0tSp0tSp0tSp0tSp0tSp0tSp0tSp0tSp0tSp0tSp0tSp0tSp0t";
const SPOT_SECRET: &str = "spot-hmac-secret";
const ED_KEY: &str = "EdSp0tEdSp0tEdSp0tEdSp0tEdSp0tEdSp0tEdSp0tEdSp0tEdSp0tEdSp0tEdSp";

fn spot_perms() -> Permissions {
    Permissions {
        reading: true,
        futures: false,
        spot: true,
        withdrawals: false,
    }
}

fn ed_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[9u8; 32])
}

/// The test keys plus a spot HMAC key (account "carol") and a spot Ed25519 key (account "dave").
async fn spot_sim() -> SimHandle {
    let mut keys = keys_file();
    keys.keys.push(KeyEntry {
        api_key: SPOT_KEY.into(),
        account: Some("carol".into()),
        secret: Some(SPOT_SECRET.into()),
        ed25519_public_key: None,
        permissions: spot_perms(),
        ip_restrict: false,
        allowed_ips: vec![],
    });
    keys.keys.push(KeyEntry {
        api_key: ED_KEY.into(),
        account: Some("dave".into()),
        secret: None,
        ed25519_public_key: Some(
            ed_key()
                .verifying_key()
                .to_public_key_pem(Default::default())
                .unwrap(),
        ),
        permissions: spot_perms(),
        ip_restrict: false,
        allowed_ips: vec![],
    });
    start(SimConfig {
        source: SourceKind::Frozen,
        tick_ms: 50,
        keys,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

fn carol(h: &SimHandle) -> Client {
    Client::new(h, SPOT_KEY, Signer::Hmac(SPOT_SECRET.into()))
}

async fn admin(h: &SimHandle, c: AdminCall) -> Value {
    h.admin().call(c).await.unwrap()
}

/// `(free, locked)` of an asset in the simulator's own book of the account.
async fn balance(h: &SimHandle, account: &str, asset: &str) -> (String, String) {
    let a = admin(h, AdminCall::spot_account(account)).await;
    a["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["asset"] == asset)
        .map(|b| {
            (
                b["free"].as_str().unwrap().to_string(),
                b["locked"].as_str().unwrap().to_string(),
            )
        })
        .unwrap_or_else(|| ("0.00000000".into(), "0.00000000".into()))
}

async fn order(c: &Client, params: &[(&str, &str)]) -> Resp {
    c.signed_body("POST", "/api/v3/order", params).await
}

fn assert_code(r: &Resp, status: u16, code: i64, msg: &str) {
    assert_eq!(
        (r.status, r.body["code"].as_i64(), r.body["msg"].as_str()),
        (status, Some(code), Some(msg)),
        "{:?}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_orders_filters_no_short_and_fees_in_the_base_asset() {
    let h = spot_sim().await;
    let c = carol(&h);
    admin(&h, AdminCall::spot_price("BTCUSDT", "60000", None, None)).await;

    // exchangeInfo: spot's weight limit and the filters clients size orders with.
    let info = c.public("/api/v3/exchangeInfo", "symbol=BTCUSDT").await;
    assert_eq!(info.status, 200);
    assert_eq!(info.body["rateLimits"][0]["limit"], 6000);
    let f = info.body["symbols"][0]["filters"].as_array().unwrap();
    let kinds: Vec<&str> = f
        .iter()
        .map(|x| x["filterType"].as_str().unwrap())
        .collect();
    for k in [
        "PRICE_FILTER",
        "LOT_SIZE",
        "MARKET_LOT_SIZE",
        "NOTIONAL",
        "PERCENT_PRICE_BY_SIDE",
        "MAX_NUM_ORDERS",
    ] {
        assert!(kinds.contains(&k), "{k} missing in {kinds:?}");
    }
    assert_eq!(f[3]["minNotional"], "5.00000000");
    assert!(info.header("x-mbx-used-weight-1m").is_some());
    // The spot listenKey is gone: user data only through the WebSocket API.
    let r = c.raw("POST", "/api/v3/userDataStream", "", "").await;
    assert_eq!(r.status, 404);

    // The account: 10,000 USDT, trading allowed, Binance's default commission rates.
    let acc = c.signed("GET", "/api/v3/account", &[]).await;
    assert_eq!(acc.status, 200, "{:?}", acc.body);
    assert_eq!(acc.body["canTrade"], true);
    assert_eq!(acc.body["commissionRates"]["taker"], "0.00100000");
    assert_eq!(
        balance(&h, "carol", "USDT").await,
        ("10000.00000000".into(), "0.00000000".into())
    );
    // A key without enableSpotAndMarginTrading cannot trade spot.
    let alice = Client::alice(&h);
    let r = order(
        &alice,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "MARKET"),
            ("quantity", "0.001"),
        ],
    )
    .await;
    assert_code(
        &r,
        401,
        -2015,
        "Invalid API-key, IP, or permissions for action.",
    );

    // Filters, each with Binance's -1013.
    let lim = |qty: &'static str, price: &'static str| {
        vec![
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "LIMIT"),
            ("timeInForce", "GTC"),
            ("quantity", qty),
            ("price", price),
        ]
    };
    for (qty, price, filter) in [
        ("0.000015", "59000", "LOT_SIZE"),
        ("0.001", "59000.005", "PRICE_FILTER"),
        ("0.00001", "59000", "NOTIONAL"),
        ("0.001", "1000", "PERCENT_PRICE_BY_SIDE"),
    ] {
        let r = order(&c, &lim(qty, price)).await;
        assert_code(&r, 400, -1013, &format!("Filter failure: {filter}"));
    }
    // No shorting: selling BTC that is not held.
    let r = order(
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "MARKET"),
            ("quantity", "0.001"),
        ],
    )
    .await;
    assert_code(
        &r,
        400,
        -2010,
        "Account has insufficient balance for requested action.",
    );
    // Nor buying more than the USDT allows.
    let r = order(&c, &lim("1", "59000")).await;
    assert_code(
        &r,
        400,
        -2010,
        "Account has insufficient balance for requested action.",
    );

    // A market buy: FULL answer, the commission in BTC, so 0.00999 BTC are held.
    let r = order(
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "MARKET"),
            ("quantity", "0.01"),
            ("newClientOrderId", "m1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "FILLED");
    assert_eq!(r.body["cummulativeQuoteQty"], "600.00000000");
    assert_eq!(r.body["fills"][0]["commission"], "0.00001000");
    assert_eq!(r.body["fills"][0]["commissionAsset"], "BTC");
    assert_eq!(balance(&h, "carol", "BTC").await.0, "0.00999000");
    assert_eq!(balance(&h, "carol", "USDT").await.0, "9400.00000000");
    // quoteOrderQty: spend 100 USDT, the quantity floored to the step.
    let r = order(
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "MARKET"),
            ("quoteOrderQty", "100"),
        ],
    )
    .await;
    assert_eq!(r.body["executedQty"], "0.00166000", "{:?}", r.body);
    assert_eq!(r.body["cummulativeQuoteQty"], "99.60000000");
    assert_eq!(balance(&h, "carol", "USDT").await.0, "9300.40000000");

    // A resting limit buy locks its quote; the same client id again is refused while it is open.
    let mut l1 = lim("0.01", "59000");
    l1.push(("newClientOrderId", "l1"));
    let r = order(&c, &l1).await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (200, Some("NEW")),
        "{:?}",
        r.body
    );
    assert_eq!(
        balance(&h, "carol", "USDT").await,
        ("8710.40000000".into(), "590.00000000".into())
    );
    let r = order(&c, &l1).await;
    assert_code(&r, 400, -2010, "Duplicate order sent.");
    let open = c
        .signed("GET", "/api/v3/openOrders", &[("symbol", "BTCUSDT")])
        .await;
    assert_eq!(open.body.as_array().unwrap().len(), 1);
    let q = c
        .signed(
            "GET",
            "/api/v3/order",
            &[("symbol", "BTCUSDT"), ("origClientOrderId", "l1")],
        )
        .await;
    assert_eq!(
        (q.body["status"].as_str(), q.body["isWorking"].as_bool()),
        (Some("NEW"), Some(true))
    );
    let r = c
        .signed(
            "GET",
            "/api/v3/order",
            &[("symbol", "BTCUSDT"), ("origClientOrderId", "nope")],
        )
        .await;
    assert_code(&r, 400, -2013, "Order does not exist.");
    // LIMIT_MAKER that would take: refused.
    let r = order(
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "LIMIT_MAKER"),
            ("quantity", "0.005"),
            ("price", "59000"),
        ],
    )
    .await;
    assert_code(&r, 400, -2010, "Order would immediately match and take.");
    // order/test validates and places nothing.
    let r = c
        .signed_body("POST", "/api/v3/order/test", &lim("0.01", "59000"))
        .await;
    assert_eq!((r.status, &r.body), (200, &json!({})));
    // Cancel: the lock comes back.
    let r = c
        .signed_body(
            "DELETE",
            "/api/v3/order",
            &[("symbol", "BTCUSDT"), ("origClientOrderId", "l1")],
        )
        .await;
    assert_eq!(r.body["status"], "CANCELED", "{:?}", r.body);
    assert_eq!(r.body["origClientOrderId"], "l1");
    assert_eq!(
        balance(&h, "carol", "USDT").await,
        ("9300.40000000".into(), "0.00000000".into())
    );
    let r = c
        .signed_body(
            "DELETE",
            "/api/v3/order",
            &[("symbol", "BTCUSDT"), ("origClientOrderId", "l1")],
        )
        .await;
    assert_code(&r, 400, -2011, "Unknown order sent.");

    // A resting order filled in two parts (admin), as maker: the buyer's fee is in BTC each time.
    let mut l2 = lim("0.02", "59500");
    l2.push(("newClientOrderId", "l2"));
    assert_eq!(order(&c, &l2).await.status, 200);
    admin(&h, AdminCall::spot_fill("carol", "l2", Some("0.005"))).await;
    let q = c
        .signed(
            "GET",
            "/api/v3/order",
            &[("symbol", "BTCUSDT"), ("origClientOrderId", "l2")],
        )
        .await;
    assert_eq!(
        (q.body["status"].as_str(), q.body["executedQty"].as_str()),
        (Some("PARTIALLY_FILLED"), Some("0.00500000"))
    );
    // The last price reaching it fills the rest.
    admin(&h, AdminCall::spot_price("BTCUSDT", "59400", None, None)).await;
    let q = c
        .signed(
            "GET",
            "/api/v3/order",
            &[("symbol", "BTCUSDT"), ("origClientOrderId", "l2")],
        )
        .await;
    assert_eq!(q.body["status"], "FILLED");
    // 0.00999 + 0.00166×0.999 + 0.005×0.999 + 0.015×0.999 = 0.03162834 BTC.
    assert_eq!(
        balance(&h, "carol", "BTC").await,
        ("0.03162834".into(), "0.00000000".into())
    );
    // 9300.4 - 0.02×59500 = 8110.4 USDT, nothing left locked.
    assert_eq!(
        balance(&h, "carol", "USDT").await,
        ("8110.40000000".into(), "0.00000000".into())
    );

    // myTrades: all four executions, by order and from an id.
    let t = c
        .signed("GET", "/api/v3/myTrades", &[("symbol", "BTCUSDT")])
        .await;
    let trades = t.body.as_array().unwrap().clone();
    assert_eq!(trades.len(), 4, "{trades:?}");
    assert!(trades
        .iter()
        .all(|x| x["commissionAsset"] == "BTC" && x["isBuyer"] == true));
    assert_eq!(trades[2]["isMaker"], true);
    let oid = q.body["orderId"].to_string();
    let t = c
        .signed(
            "GET",
            "/api/v3/myTrades",
            &[("symbol", "BTCUSDT"), ("orderId", &oid)],
        )
        .await;
    assert_eq!(t.body.as_array().unwrap().len(), 2);
    let from = trades[3]["id"].to_string();
    let t = c
        .signed(
            "GET",
            "/api/v3/myTrades",
            &[("symbol", "BTCUSDT"), ("fromId", &from)],
        )
        .await;
    assert_eq!(t.body.as_array().unwrap().len(), 1);
    let t = c
        .signed(
            "GET",
            "/api/v3/myTrades",
            &[("symbol", "BTCUSDT"), ("limit", "1")],
        )
        .await;
    assert_eq!(t.body[0]["id"], trades[3]["id"]);
    // By time: a window of at most 24 hours.
    let t0 = trades[0]["time"].as_u64().unwrap();
    let (s, e) = (t0.to_string(), (t0 + 86_400_000).to_string());
    let t = c
        .signed(
            "GET",
            "/api/v3/myTrades",
            &[("symbol", "BTCUSDT"), ("startTime", &s), ("endTime", &e)],
        )
        .await;
    assert_eq!(t.body.as_array().unwrap().len(), 4, "{:?}", t.body);
    let e = (t0 + 86_400_001).to_string();
    let t = c
        .signed(
            "GET",
            "/api/v3/myTrades",
            &[("symbol", "BTCUSDT"), ("startTime", &s), ("endTime", &e)],
        )
        .await;
    assert_eq!(t.body["code"], -1127, "{:?}", t.body);
    let all = c
        .signed("GET", "/api/v3/allOrders", &[("symbol", "BTCUSDT")])
        .await;
    assert_eq!(all.body.as_array().unwrap().len(), 4);
    // Selling it all back: the seller's fee is in USDT.
    let r = order(
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "MARKET"),
            ("quantity", "0.03162"),
        ],
    )
    .await;
    assert_eq!(
        r.body["fills"][0]["commissionAsset"], "USDT",
        "{:?}",
        r.body
    );
    // 0.03162 × 59400 = 1878.228, less the 1.878228 fee: 8110.4 + 1876.349772.
    assert_eq!(balance(&h, "carol", "USDT").await.0, "9986.74977200");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_and_oco_rest_and_trigger_on_the_last_price_and_bnb_fees() {
    let h = spot_sim().await;
    let c = carol(&h);
    admin(&h, AdminCall::spot_price("BTCUSDT", "60000", None, None)).await;
    admin(&h, AdminCall::spot_balances("carol", json!({"BTC": "1"}))).await;

    // A stop-loss-limit rests, not working, its BTC locked; one that would trigger now is refused.
    let sl = |stop: &'static str, price: &'static str, id: &'static str| {
        vec![
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "STOP_LOSS_LIMIT"),
            ("timeInForce", "GTC"),
            ("quantity", "0.1"),
            ("stopPrice", stop),
            ("price", price),
            ("newClientOrderId", id),
        ]
    };
    let r = order(&c, &sl("61000", "60900", "bad")).await;
    assert_code(&r, 400, -2010, "Order would trigger immediately.");
    let r = order(&c, &sl("58000", "57900", "sl1")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let q = c
        .signed(
            "GET",
            "/api/v3/order",
            &[("symbol", "BTCUSDT"), ("origClientOrderId", "sl1")],
        )
        .await;
    assert_eq!(
        (q.body["isWorking"].as_bool(), q.body["stopPrice"].as_str()),
        (Some(false), Some("58000.00000000"))
    );
    assert_eq!(
        balance(&h, "carol", "BTC").await,
        ("0.90000000".into(), "0.10000000".into())
    );

    // OCO refusals: legs in the wrong order, and a leg's missing parameter named as the leg's.
    let bad = c
        .signed_body(
            "POST",
            "/api/v3/orderList/oco",
            &[
                ("symbol", "BTCUSDT"),
                ("side", "SELL"),
                ("quantity", "0.2"),
                ("aboveType", "LIMIT_MAKER"),
                ("abovePrice", "58000"),
                ("belowType", "STOP_LOSS"),
                ("belowStopPrice", "59000"),
            ],
        )
        .await;
    assert_code(
        &bad,
        400,
        -2010,
        "The relationship of the prices for the orders is not correct.",
    );
    let bad = c
        .signed_body(
            "POST",
            "/api/v3/orderList/oco",
            &[
                ("symbol", "BTCUSDT"),
                ("side", "SELL"),
                ("quantity", "0.2"),
                ("aboveType", "LIMIT_MAKER"),
                ("abovePrice", "62000"),
                ("belowType", "STOP_LOSS"),
            ],
        )
        .await;
    assert_eq!(bad.body["code"], -1102, "{:?}", bad.body);
    assert!(
        bad.body["msg"]
            .as_str()
            .unwrap()
            .contains("'belowStopPrice'"),
        "{:?}",
        bad.body
    );
    // An OCO sell (new endpoint): take-profit LIMIT_MAKER above, STOP_LOSS_LIMIT below, one lock for both.
    let oco = c
        .signed_body(
            "POST",
            "/api/v3/orderList/oco",
            &[
                ("symbol", "BTCUSDT"),
                ("side", "SELL"),
                ("quantity", "0.2"),
                ("listClientOrderId", "oco1"),
                ("aboveType", "LIMIT_MAKER"),
                ("abovePrice", "62000"),
                ("aboveClientOrderId", "tp"),
                ("belowType", "STOP_LOSS_LIMIT"),
                ("belowStopPrice", "58500"),
                ("belowPrice", "58400"),
                ("belowTimeInForce", "GTC"),
                ("belowClientOrderId", "stop"),
            ],
        )
        .await;
    assert_eq!(oco.status, 200, "{:?}", oco.body);
    assert_eq!(oco.body["contingencyType"], "OCO");
    assert_eq!(oco.body["listStatusType"], "EXEC_STARTED");
    assert_eq!(oco.body["orders"].as_array().unwrap().len(), 2);
    assert_eq!(
        balance(&h, "carol", "BTC").await,
        ("0.70000000".into(), "0.30000000".into())
    );
    let open = admin(&h, AdminCall::spot_account("carol")).await["openOrders"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(open, 3);

    // The price falls to 58450: the OCO's stop triggers and sells at the bid, the take-profit expires.
    admin(&h, AdminCall::spot_price("BTCUSDT", "58450", None, None)).await;
    let get = |id: &'static str| {
        let c = c.clone();
        async move {
            c.signed(
                "GET",
                "/api/v3/order",
                &[("symbol", "BTCUSDT"), ("origClientOrderId", id)],
            )
            .await
            .body
        }
    };
    assert_eq!(get("stop").await["status"], "FILLED");
    assert_eq!(get("tp").await["status"], "EXPIRED");
    assert_eq!(get("sl1").await["status"], "NEW");
    // 0.2 × 58450 = 11690, less 0.1 % in USDT.
    assert_eq!(balance(&h, "carol", "USDT").await.0, "21678.31000000");
    assert_eq!(
        balance(&h, "carol", "BTC").await,
        ("0.70000000".into(), "0.10000000".into())
    );
    // Below 58000 the stop-loss-limit triggers and its limit (57900) is under the bid: it fills.
    admin(&h, AdminCall::spot_price("BTCUSDT", "57950", None, None)).await;
    let sl1 = get("sl1").await;
    assert_eq!(
        (sl1["status"].as_str(), sl1["isWorking"].as_bool()),
        (Some("FILLED"), Some(true))
    );
    assert_eq!(
        balance(&h, "carol", "BTC").await,
        ("0.70000000".into(), "0.00000000".into())
    );
    // A second OCO, cancelled as a list: its lock comes back.
    let oco = c
        .signed_body(
            "POST",
            "/api/v3/orderList/oco",
            &[
                ("symbol", "BTCUSDT"),
                ("side", "SELL"),
                ("quantity", "0.3"),
                ("aboveType", "LIMIT_MAKER"),
                ("abovePrice", "60000"),
                ("belowType", "STOP_LOSS"),
                ("belowStopPrice", "57000"),
            ],
        )
        .await;
    assert_eq!(oco.status, 200, "{:?}", oco.body);
    assert_eq!(balance(&h, "carol", "BTC").await.1, "0.30000000");
    let id = oco.body["orderListId"].to_string();
    let r = c
        .signed_body(
            "DELETE",
            "/api/v3/orderList",
            &[("symbol", "BTCUSDT"), ("orderListId", &id)],
        )
        .await;
    assert_eq!(r.body["listStatusType"], "ALL_DONE", "{:?}", r.body);
    assert_eq!(r.body["orderReports"][0]["status"], "CANCELED");
    assert_eq!(
        balance(&h, "carol", "BTC").await,
        ("0.70000000".into(), "0.00000000".into())
    );

    // BNB fees: with BNB held, a buy's commission is in BNB at the BNBUSDT price and the full BTC arrives.
    admin(&h, AdminCall::spot_balances("carol", json!({"BNB": "1"}))).await;
    admin(&h, AdminCall::spot_bnb_fees(true)).await;
    let r = order(
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "MARKET"),
            ("quantity", "0.01"),
        ],
    )
    .await;
    assert_eq!(r.body["fills"][0]["commissionAsset"], "BNB", "{:?}", r.body);
    // 579.5 USDT × 0.1 % = 0.5795 USDT = 0.00096583 BNB at 600.
    assert_eq!(r.body["fills"][0]["commission"], "0.00096583");
    assert_eq!(balance(&h, "carol", "BTC").await.0, "0.71000000");
    assert_eq!(balance(&h, "carol", "BNB").await.0, "0.99903417");
    let fees = admin(&h, AdminCall::spot_account("carol")).await["fees"].clone();
    assert_eq!(fees["BNB"], "0.00096583");
    h.shutdown().await;
}

fn ws_sign(params: &[(&str, String)]) -> Value {
    let pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let sig = hmac_hex(
        SPOT_SECRET,
        ws_api_payload(&Params::from_pairs(pairs.clone())).as_bytes(),
    );
    let mut m: serde_json::Map<String, Value> =
        pairs.into_iter().map(|(k, v)| (k, json!(v))).collect();
    m.insert("signature".into(), json!(sig));
    Value::Object(m)
}

async fn call(w: &mut Ws, id: u64, method: &str, params: Value) -> Value {
    send(w, json!({"id": id, "method": method, "params": params})).await;
    next_matching(w, T, |v| v["id"] == id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_api_orders_user_data_and_event_stream_terminated() {
    let h = spot_sim().await;
    admin(&h, AdminCall::spot_price("BTCUSDT", "60000", None, None)).await;
    let mut w = ws(&h, "/ws-api/v3").await;
    let ts = || now_ms().to_string();

    // User data by signature, no logon needed.
    let r = call(
        &mut w,
        1,
        "userDataStream.subscribe.signature",
        ws_sign(&[("apiKey", SPOT_KEY.into()), ("timestamp", ts())]),
    )
    .await;
    assert_eq!(
        (r["status"].as_i64(), &r["result"]),
        (Some(200), &json!({"subscriptionId": 0})),
        "{r}"
    );
    // An order over the WebSocket API, signed request by request.
    let r = call(
        &mut w,
        2,
        "order.place",
        ws_sign(&[
            ("apiKey", SPOT_KEY.into()),
            ("symbol", "BTCUSDT".into()),
            ("side", "BUY".into()),
            ("type", "MARKET".into()),
            ("quantity", "0.01".into()),
            ("newClientOrderId", "w1".into()),
            ("timestamp", ts()),
        ]),
    )
    .await;
    assert_eq!(r["result"]["status"], "FILLED", "{r}");
    assert_eq!(r["rateLimits"][0]["limit"], 6000);
    let trade = next_matching(&mut w, T, |v| {
        v["event"]["e"] == "executionReport" && v["event"]["x"] == "TRADE"
    })
    .await;
    assert_eq!(trade["subscriptionId"], 0);
    assert_eq!(
        (trade["event"]["c"].as_str(), trade["event"]["N"].as_str()),
        (Some("w1"), Some("BTC"))
    );
    assert_eq!(trade["event"]["n"], "0.00001000");
    let pos = next_matching(&mut w, T, |v| v["event"]["e"] == "outboundAccountPosition").await;
    let b = pos["event"]["B"].as_array().unwrap();
    let btc = b.iter().find(|x| x["a"] == "BTC").unwrap();
    assert_eq!(btc["f"], "0.00999000");
    // Status requests agree with the simulator's book.
    let r = call(
        &mut w,
        3,
        "order.status",
        ws_sign(&[
            ("apiKey", SPOT_KEY.into()),
            ("symbol", "BTCUSDT".into()),
            ("origClientOrderId", "w1".into()),
            ("timestamp", ts()),
        ]),
    )
    .await;
    assert_eq!(r["result"]["executedQty"], "0.01000000");
    let r = call(
        &mut w,
        4,
        "account.status",
        ws_sign(&[("apiKey", SPOT_KEY.into()), ("timestamp", ts())]),
    )
    .await;
    let usdt = r["result"]["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["asset"] == "USDT")
        .unwrap()
        .clone();
    assert_eq!(usdt["free"], "9400.00000000");
    assert_eq!(balance(&h, "carol", "USDT").await.0, "9400.00000000");
    // No shorting over the WebSocket API either.
    let r = call(
        &mut w,
        5,
        "order.place",
        ws_sign(&[
            ("apiKey", SPOT_KEY.into()),
            ("symbol", "BTCUSDT".into()),
            ("side", "SELL".into()),
            ("type", "MARKET".into()),
            ("quantity", "1".into()),
            ("timestamp", ts()),
        ]),
    )
    .await;
    assert_eq!(
        (r["status"].as_i64(), r["error"]["code"].as_i64()),
        (Some(400), Some(-2010)),
        "{r}"
    );

    // Dave logs on (Ed25519) and subscribes on the session; logging out ends only that subscription.
    let t = ts();
    let payload = format!("apiKey={ED_KEY}&timestamp={t}");
    let sig = base64::engine::general_purpose::STANDARD
        .encode(ed_key().sign(payload.as_bytes()).to_bytes());
    let r = call(
        &mut w,
        6,
        "session.logon",
        json!({"apiKey": ED_KEY, "timestamp": t, "signature": sig}),
    )
    .await;
    assert_eq!(r["status"], 200, "{r}");
    let r = call(&mut w, 7, "userDataStream.subscribe", json!({})).await;
    assert_eq!(r["result"], json!({"subscriptionId": 1}), "{r}");
    let r = call(
        &mut w,
        8,
        "openOrders.status",
        json!({"symbol": "BTCUSDT", "timestamp": ts()}),
    )
    .await;
    assert_eq!(r["result"], json!([]), "{r}");
    send(&mut w, json!({"id": 9, "method": "session.logout"})).await;
    let end = next_matching(&mut w, T, |v| v["event"]["e"] == "eventStreamTerminated").await;
    assert_eq!(end["subscriptionId"], 1);
    // Carol's signature subscription lives on: a REST order of hers still arrives.
    let c = carol(&h);
    let r = order(
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "LIMIT"),
            ("timeInForce", "GTC"),
            ("quantity", "0.01"),
            ("price", "59000"),
            ("newClientOrderId", "r1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let ev = next_matching(&mut w, T, |v| v["event"]["e"] == "executionReport").await;
    assert_eq!(
        (
            ev["subscriptionId"].as_i64(),
            ev["event"]["c"].as_str(),
            ev["event"]["x"].as_str()
        ),
        (Some(0), Some("r1"), Some("NEW"))
    );
    // Cancel over the WebSocket API.
    let r = call(
        &mut w,
        10,
        "order.cancel",
        ws_sign(&[
            ("apiKey", SPOT_KEY.into()),
            ("symbol", "BTCUSDT".into()),
            ("origClientOrderId", "r1".into()),
            ("timestamp", ts()),
        ]),
    )
    .await;
    assert_eq!(r["result"]["status"], "CANCELED", "{r}");
    // The admin fault terminates carol's stream: eventStreamTerminated, then no more events.
    admin(&h, AdminCall::spot_terminate_streams("carol")).await;
    let end = next_matching(&mut w, T, |v| v["event"]["e"] == "eventStreamTerminated").await;
    assert_eq!(end["subscriptionId"], 0);
    // Resubscribe, then unsubscribe: eventStreamTerminated for the new id.
    let r = call(
        &mut w,
        11,
        "userDataStream.subscribe.signature",
        ws_sign(&[("apiKey", SPOT_KEY.into()), ("timestamp", ts())]),
    )
    .await;
    assert_eq!(r["result"], json!({"subscriptionId": 2}), "{r}");
    let r = call(
        &mut w,
        12,
        "userDataStream.unsubscribe",
        json!({"subscriptionId": 2}),
    )
    .await;
    assert_eq!(r["result"], json!({}), "{r}");
    let end = next_matching(&mut w, T, |v| v["event"]["e"] == "eventStreamTerminated").await;
    assert_eq!(end["subscriptionId"], 2);
    // A bad signature is refused.
    let mut p = ws_sign(&[("apiKey", SPOT_KEY.into()), ("timestamp", ts())]);
    p["signature"] = json!("00");
    let r = call(&mut w, 13, "userDataStream.subscribe.signature", p).await;
    assert_eq!(r["error"]["code"], -1022, "{r}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_market_streams_carry_the_spot_book() {
    let h = spot_sim().await;
    let mut raw = ws(&h, "/spot/ws/btcusdt@bookTicker").await;
    let mut comb = ws(&h, "/spot/stream?streams=btcusdt@trade/btcusdt@aggTrade").await;
    // The streams subscribe on connect; give the server a moment before the price moves.
    tokio::time::sleep(Duration::from_millis(200)).await;
    admin(
        &h,
        AdminCall::spot_price("BTCUSDT", "61000", Some("60999.99"), Some("61000.01")),
    )
    .await;
    let bt = next_matching(&mut raw, T, |_| true).await;
    // Spot's bookTicker has no event type or times.
    assert_eq!(
        (bt["s"].as_str(), bt["b"].as_str(), bt["a"].as_str()),
        (
            Some("BTCUSDT"),
            Some("60999.99000000"),
            Some("61000.01000000")
        )
    );
    assert!(bt.get("e").is_none() && bt.get("E").is_none());
    let t = next_matching(&mut comb, T, |v| v["stream"] == "btcusdt@trade").await;
    assert_eq!(t["data"]["p"], "61000.00000000");
    let a = next_matching(&mut comb, T, |v| v["stream"] == "btcusdt@aggTrade").await;
    assert_eq!(a["data"]["M"], true);
    let k = carol(&h)
        .public("/api/v3/klines", "symbol=BTCUSDT&interval=1m")
        .await;
    assert_eq!(k.body[0][4], "61000.00000000", "{:?}", k.body);
    let d = carol(&h)
        .public("/api/v3/depth", "symbol=BTCUSDT&limit=5")
        .await;
    assert_eq!(d.body["bids"][0][0], "60999.99000000");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_weight_is_its_own_counter_with_429_then_418() {
    let h = spot_sim().await;
    let c = carol(&h);
    let w = |r: &Resp| -> u32 { r.header("x-mbx-used-weight-1m").unwrap().parse().unwrap() };
    // exchangeInfo weighs 20 on spot; the futures counter does not see it (another host at Binance).
    let r = c.public("/api/v3/exchangeInfo", "").await;
    assert!(w(&r) >= 20, "{:?}", r.headers);
    let f = c.public("/fapi/v1/ping", "").await;
    assert!(w(&f) < 20, "futures weight {}", w(&f));
    // Orders carry spot's 10-second order count.
    let r = order(
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "MARKET"),
            ("quantity", "0.001"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("x-mbx-order-count-10s").as_deref(), Some("1"));
    // A small limit: 429 with Retry-After once the minute's weight is used, then the IP is banned (418).
    admin(
        &h,
        AdminCall::spot_limits(json!({"weightPerMinute": 50, "ordersPer10s": 100,
        "ordersPerMinute": 1000000, "banAfter429s": 1, "banSecs": 60})),
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..12 {
        let r = c.public("/api/v3/exchangeInfo", "").await;
        if r.status == 429 {
            assert_eq!(r.code(), -1003);
            assert!(r.header("retry-after").is_some());
        }
        seen.push(r.status);
        if r.status == 418 {
            break;
        }
    }
    let first_429 = seen.iter().position(|s| *s == 429).expect("a 429");
    assert!(first_429 >= 2, "{seen:?}");
    assert_eq!(seen.last(), Some(&418), "{seen:?}");
    // Futures on the same IP is not banned.
    assert_eq!(c.public("/fapi/v1/ping", "").await.status, 200);
    h.shutdown().await;
}

async fn cancel_replace(c: &Client, params: &[(&str, &str)]) -> Resp {
    c.signed_body("POST", "/api/v3/order/cancelReplace", params)
        .await
}

/// An order's status in the simulator's view, by client id.
async fn status_of(c: &Client, cid: &str) -> Value {
    c.signed(
        "GET",
        "/api/v3/order",
        &[("symbol", "BTCUSDT"), ("origClientOrderId", cid)],
    )
    .await
    .body["status"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_cancel_replace_answers_and_the_cancel_frees_the_stop_s_lock() {
    let h = spot_sim().await;
    let c = carol(&h);
    admin(&h, AdminCall::spot_price("BTCUSDT", "60000", None, None)).await;
    admin(&h, AdminCall::spot_balances("carol", json!({"BTC": "0.1"}))).await;
    let info = c.public("/api/v3/exchangeInfo", "symbol=BTCUSDT").await;
    assert_eq!(info.body["symbols"][0]["cancelReplaceAllowed"], true);

    // A resting stop-loss-limit locks all the BTC: a plain exit sell beside it is refused.
    let r = order(
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "STOP_LOSS_LIMIT"),
            ("timeInForce", "GTC"),
            ("quantity", "0.1"),
            ("stopPrice", "58000"),
            ("price", "57700"),
            ("newClientOrderId", "stop1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        balance(&h, "carol", "BTC").await,
        ("0.00000000".into(), "0.10000000".into())
    );
    let exit = [
        ("symbol", "BTCUSDT"),
        ("side", "SELL"),
        ("type", "MARKET"),
        ("quantity", "0.1"),
    ];
    assert_code(
        &order(&c, &exit).await,
        400,
        -2010,
        "Account has insufficient balance for requested action.",
    );

    // A filter failure of the new order is refused before anything is cancelled: plain -1013, stop still there.
    let r = cancel_replace(
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "MARKET"),
            ("quantity", "0.000001"),
            ("cancelReplaceMode", "STOP_ON_FAILURE"),
            ("cancelOrigClientOrderId", "stop1"),
        ],
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_i64(), r.body.get("data")),
        (400, Some(-1013), None),
        "{:?}",
        r.body
    );
    assert_eq!(status_of(&c, "stop1").await, "NEW");

    // Cancel-replace: the cancel frees the lock, the exit sells it. 200, both halves' answers.
    let mut p = exit.to_vec();
    p.extend([
        ("cancelReplaceMode", "STOP_ON_FAILURE"),
        ("cancelOrigClientOrderId", "stop1"),
        ("cancelNewClientOrderId", "cx1"),
        ("newClientOrderId", "exit1"),
    ]);
    let r = cancel_replace(&c, &p).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (
            r.body["cancelResult"].as_str(),
            r.body["newOrderResult"].as_str()
        ),
        (Some("SUCCESS"), Some("SUCCESS"))
    );
    let cr = &r.body["cancelResponse"];
    assert_eq!(
        (
            cr["status"].as_str(),
            cr["origClientOrderId"].as_str(),
            cr["clientOrderId"].as_str(),
            cr["type"].as_str()
        ),
        (
            Some("CANCELED"),
            Some("stop1"),
            Some("cx1"),
            Some("STOP_LOSS_LIMIT")
        )
    );
    let nr = &r.body["newOrderResponse"];
    assert_eq!(
        (
            nr["status"].as_str(),
            nr["clientOrderId"].as_str(),
            nr["executedQty"].as_str()
        ),
        (Some("FILLED"), Some("exit1"), Some("0.10000000"))
    );
    // One order on spot's 10-second count each: the stop, the refused exit, the refused cancel-replace, this.
    assert_eq!(r.header("x-mbx-order-count-10s").as_deref(), Some("4"));
    assert_eq!(
        balance(&h, "carol", "BTC").await,
        ("0.00000000".into(), "0.00000000".into())
    );
    // 10,000 + 0.1 × 60,000 − 0.1 % of 6,000.
    assert_eq!(balance(&h, "carol", "USDT").await.0, "15994.00000000");

    // STOP_ON_FAILURE and a cancel that fails: 400 -2022, the new order not attempted (still counted).
    let buy = [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.01"),
        ("price", "59000"),
        ("newClientOrderId", "b1"),
    ];
    let mut p = buy.to_vec();
    p.extend([
        ("cancelReplaceMode", "STOP_ON_FAILURE"),
        ("cancelOrigClientOrderId", "nope"),
    ]);
    let r = cancel_replace(&c, &p).await;
    assert_code(&r, 400, -2022, "Order cancel-replace failed.");
    assert_eq!(
        r.body["data"],
        json!({"cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
               "cancelResponse": {"code": -2011, "msg": "Unknown order sent."}, "newOrderResponse": null})
    );
    assert_eq!(r.header("x-mbx-order-count-10s").as_deref(), Some("5"));
    assert_eq!(status_of(&c, "b1").await, Value::Null);

    // ALLOW_FAILURE: the cancel fails, the new order is placed: 409 -2021.
    p[7].1 = "ALLOW_FAILURE";
    let r = cancel_replace(&c, &p).await;
    assert_code(&r, 409, -2021, "Order cancel-replace partially failed.");
    let d = &r.body["data"];
    assert_eq!(
        (
            d["cancelResult"].as_str(),
            d["newOrderResult"].as_str(),
            d["cancelResponse"]["code"].as_i64()
        ),
        (Some("FAILURE"), Some("SUCCESS"), Some(-2011))
    );
    assert_eq!(d["newOrderResponse"]["status"], "NEW", "{d}");
    assert_eq!(status_of(&c, "b1").await, "NEW");
    assert_eq!(balance(&h, "carol", "USDT").await.1, "590.00000000");

    // The cancel succeeds, the new order fails (no BTC to sell): 409 -2021, the buy's lock is back.
    let r = cancel_replace(
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "MARKET"),
            ("quantity", "1"),
            ("cancelReplaceMode", "STOP_ON_FAILURE"),
            ("cancelOrigClientOrderId", "b1"),
        ],
    )
    .await;
    assert_code(&r, 409, -2021, "Order cancel-replace partially failed.");
    let d = &r.body["data"];
    assert_eq!(
        (
            d["cancelResult"].as_str(),
            d["newOrderResult"].as_str(),
            d["cancelResponse"]["status"].as_str()
        ),
        (Some("SUCCESS"), Some("FAILURE"), Some("CANCELED"))
    );
    assert_eq!(
        d["newOrderResponse"],
        json!({"code": -2010, "msg": "Account has insufficient balance for requested action."})
    );
    assert_eq!(status_of(&c, "b1").await, "CANCELED");
    assert_eq!(
        balance(&h, "carol", "USDT").await,
        ("15994.00000000".into(), "0.00000000".into())
    );

    // Both fail under ALLOW_FAILURE: 400 -2022 with both errors.
    let r = cancel_replace(
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "MARKET"),
            ("quantity", "1"),
            ("cancelReplaceMode", "ALLOW_FAILURE"),
            ("cancelOrderId", "1"),
        ],
    )
    .await;
    assert_code(&r, 400, -2022, "Order cancel-replace failed.");
    assert_eq!(
        (
            r.body["data"]["cancelResult"].as_str(),
            r.body["data"]["newOrderResult"].as_str(),
            r.body["data"]["newOrderResponse"]["code"].as_i64()
        ),
        (Some("FAILURE"), Some("FAILURE"), Some(-2010))
    );
    // Neither cancel reference: -1102; an unknown mode: -1102.
    let r = cancel_replace(
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "MARKET"),
            ("quantity", "1"),
            ("cancelReplaceMode", "ALLOW_FAILURE"),
        ],
    )
    .await;
    assert_eq!(r.body["code"], -1102, "{:?}", r.body);
    let r = cancel_replace(
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "MARKET"),
            ("quantity", "1"),
            ("cancelReplaceMode", "SOMETIMES"),
            ("cancelOrderId", "1"),
        ],
    )
    .await;
    assert_eq!(r.body["code"], -1102, "{:?}", r.body);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_api_cancel_replace_answers_and_both_execution_reports() {
    let h = spot_sim().await;
    admin(&h, AdminCall::spot_price("BTCUSDT", "60000", None, None)).await;
    admin(&h, AdminCall::spot_balances("carol", json!({"BTC": "0.1"}))).await;
    let mut w = ws(&h, "/ws-api/v3").await;
    let ts = || now_ms().to_string();
    let r = call(
        &mut w,
        1,
        "userDataStream.subscribe.signature",
        ws_sign(&[("apiKey", SPOT_KEY.into()), ("timestamp", ts())]),
    )
    .await;
    assert_eq!(r["status"], 200, "{r}");
    let r = call(
        &mut w,
        2,
        "order.place",
        ws_sign(&[
            ("apiKey", SPOT_KEY.into()),
            ("symbol", "BTCUSDT".into()),
            ("side", "SELL".into()),
            ("type", "STOP_LOSS_LIMIT".into()),
            ("timeInForce", "GTC".into()),
            ("quantity", "0.1".into()),
            ("stopPrice", "58000".into()),
            ("price", "57700".into()),
            ("newClientOrderId", "wstop".into()),
            ("timestamp", ts()),
        ]),
    )
    .await;
    assert_eq!(r["status"], 200, "{r}");
    let exit = |mode: &str, cancel: &str| {
        ws_sign(&[
            ("apiKey", SPOT_KEY.into()),
            ("symbol", "BTCUSDT".into()),
            ("side", "SELL".into()),
            ("type", "MARKET".into()),
            ("quantity", "0.1".into()),
            ("cancelReplaceMode", mode.into()),
            ("cancelOrigClientOrderId", cancel.into()),
            ("cancelNewClientOrderId", "wcx".into()),
            ("newClientOrderId", "wexit".into()),
            ("timestamp", ts()),
        ])
    };
    // Success: status 200, the cancel's executionReport (c = the cancel's id, C = the stop's), then the exit's.
    let r = call(
        &mut w,
        3,
        "order.cancelReplace",
        exit("STOP_ON_FAILURE", "wstop"),
    )
    .await;
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(
        (
            r["result"]["cancelResult"].as_str(),
            r["result"]["newOrderResult"].as_str(),
            r["result"]["newOrderResponse"]["status"].as_str()
        ),
        (Some("SUCCESS"), Some("SUCCESS"), Some("FILLED"))
    );
    let orders = r["rateLimits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rateLimitType"] == "ORDERS")
        .cloned();
    assert_eq!(orders.map(|o| o["count"].clone()), Some(json!(2)), "{r}");
    let cancel = next_matching(&mut w, T, |v| {
        v["event"]["e"] == "executionReport" && v["event"]["x"] == "CANCELED"
    })
    .await;
    assert_eq!(
        (
            cancel["event"]["c"].as_str(),
            cancel["event"]["C"].as_str(),
            cancel["event"]["o"].as_str()
        ),
        (Some("wcx"), Some("wstop"), Some("STOP_LOSS_LIMIT"))
    );
    let new = next_matching(&mut w, T, |v| {
        v["event"]["e"] == "executionReport" && v["event"]["c"] == "wexit"
    })
    .await;
    assert_eq!(new["event"]["x"], "NEW");
    let trade = next_matching(&mut w, T, |v| {
        v["event"]["e"] == "executionReport" && v["event"]["x"] == "TRADE"
    })
    .await;
    assert_eq!(trade["event"]["c"], "wexit");
    assert_eq!(
        balance(&h, "carol", "BTC").await,
        ("0.00000000".into(), "0.00000000".into())
    );

    // STOP_ON_FAILURE with nothing to cancel: status 400, -2022 with its data in the error.
    let r = call(
        &mut w,
        4,
        "order.cancelReplace",
        exit("STOP_ON_FAILURE", "wstop"),
    )
    .await;
    assert_eq!(
        (r["status"].as_i64(), r["error"]["code"].as_i64()),
        (Some(400), Some(-2022)),
        "{r}"
    );
    assert_eq!(r["error"]["data"]["newOrderResult"], "NOT_ATTEMPTED", "{r}");
    assert_eq!(r["error"]["data"]["newOrderResponse"], Value::Null);
    // ALLOW_FAILURE with nothing to cancel and no BTC left: both fail, 400 -2022.
    let r = call(
        &mut w,
        5,
        "order.cancelReplace",
        exit("ALLOW_FAILURE", "wstop"),
    )
    .await;
    assert_eq!(
        (
            r["status"].as_i64(),
            r["error"]["code"].as_i64(),
            r["error"]["data"]["newOrderResult"].as_str()
        ),
        (Some(400), Some(-2022), Some("FAILURE")),
        "{r}"
    );
    // ALLOW_FAILURE, nothing to cancel, a buy that can be placed: status 409, -2021.
    let r = call(
        &mut w,
        6,
        "order.cancelReplace",
        ws_sign(&[
            ("apiKey", SPOT_KEY.into()),
            ("symbol", "BTCUSDT".into()),
            ("side", "BUY".into()),
            ("type", "LIMIT".into()),
            ("timeInForce", "GTC".into()),
            ("quantity", "0.01".into()),
            ("price", "59000".into()),
            ("cancelReplaceMode", "ALLOW_FAILURE".into()),
            ("cancelOrderId", "1".into()),
            ("newClientOrderId", "wb1".into()),
            ("timestamp", ts()),
        ]),
    )
    .await;
    assert_eq!(
        (
            r["status"].as_i64(),
            r["error"]["code"].as_i64(),
            r["error"]["msg"].as_str()
        ),
        (
            Some(409),
            Some(-2021),
            Some("Order cancel-replace partially failed.")
        ),
        "{r}"
    );
    let d = &r["error"]["data"];
    assert_eq!(
        (
            d["cancelResult"].as_str(),
            d["newOrderResult"].as_str(),
            d["newOrderResponse"]["clientOrderId"].as_str()
        ),
        (Some("FAILURE"), Some("SUCCESS"), Some("wb1"))
    );
    // The cancel succeeds, the new order fails (LIMIT_MAKER that would take): 409 -2021, newOrderResult FAILURE.
    let r = call(
        &mut w,
        7,
        "order.cancelReplace",
        ws_sign(&[
            ("apiKey", SPOT_KEY.into()),
            ("symbol", "BTCUSDT".into()),
            ("side", "BUY".into()),
            ("type", "LIMIT_MAKER".into()),
            ("quantity", "0.01".into()),
            ("price", "60000".into()),
            ("cancelReplaceMode", "ALLOW_FAILURE".into()),
            ("cancelOrigClientOrderId", "wb1".into()),
            ("timestamp", ts()),
        ]),
    )
    .await;
    assert_eq!(
        (r["status"].as_i64(), r["error"]["code"].as_i64()),
        (Some(409), Some(-2021)),
        "{r}"
    );
    let d = &r["error"]["data"];
    assert_eq!(
        (
            d["cancelResult"].as_str(),
            d["newOrderResult"].as_str(),
            d["newOrderResponse"]["msg"].as_str()
        ),
        (
            Some("SUCCESS"),
            Some("FAILURE"),
            Some("Order would immediately match and take.")
        )
    );
    assert_eq!(balance(&h, "carol", "USDT").await.1, "0.00000000");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marketable_order_can_fill_in_parts_each_with_its_own_trade_and_fee() {
    let h = spot_sim().await;
    let c = carol(&h);
    admin(&h, AdminCall::spot_price("BTCUSDT", "60000", None, None)).await;
    admin(&h, AdminCall::spot_fill_parts(3)).await;
    let r = order(
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "MARKET"),
            ("quantity", "0.01000"),
            ("newOrderRespType", "FULL"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "FILLED");
    let fills = r.body["fills"].as_array().unwrap();
    let qtys: Vec<&str> = fills.iter().map(|f| f["qty"].as_str().unwrap()).collect();
    // 0.01 / 3 on the 0.00001 step: two of 0.00333, the last the remaining 0.00334.
    assert_eq!(qtys, ["0.00333000", "0.00333000", "0.00334000"]);
    let fee: Qty = fills
        .iter()
        .map(|f| Qty::parse(f["commission"].as_str().unwrap()).unwrap())
        .fold(Qty::ZERO, |a, b| a + b);
    // Each part pays 0.1 % of itself, in BTC (a buy's fee is taken in the base asset).
    assert_eq!(fee, Qty::parse("0.00001").unwrap());
    let mytrades = c
        .signed("GET", "/api/v3/myTrades", &[("symbol", "BTCUSDT")])
        .await;
    assert_eq!(
        mytrades.body.as_array().map(Vec::len),
        Some(3),
        "{:?}",
        mytrades.body
    );
    let (free, _) = balance(&h, "carol", "BTC").await;
    assert_eq!(free, "0.00999000");
    // Back to one trade per order; zero parts is refused.
    admin(&h, AdminCall::spot_fill_parts(1)).await;
    let r = order(
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "MARKET"),
            ("quantity", "0.00500"),
            ("newOrderRespType", "FULL"),
        ],
    )
    .await;
    assert_eq!(
        r.body["fills"].as_array().map(Vec::len),
        Some(1),
        "{:?}",
        r.body
    );
}
