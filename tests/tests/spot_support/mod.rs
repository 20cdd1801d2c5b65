//! Shared by the spot live tests: binance-sim's spot user data (`userDataStream.subscribe.signature` on
//! `/ws-api/v3`) read off the engine thread and turned into the live venue's [`OrderUpdate`]s, as the control
//! plane does it, and the spot key entry.

// Each test binary uses a part of it.
#![allow(dead_code)]

use aegis_engine::sign::ws_api::encode_request;
use aegis_engine::sign::{ApiKey, HmacSigner, Signer, WsAuth, WsParam, WsValue, MAX_REQUEST_LEN};
use aegis_engine::venue::binance::{Inbound, OrderUpdate};
use aegis_shared::event::{FeeConversion, OrderStatus, OrderType};
use aegis_shared::{ClientOrderId, Notional, Price, Qty, Secret, Side, Symbol};
use aegis_testkit::sim::keys::{KeyEntry, Permissions};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A spot trading key (reading and spot on, futures and withdrawals off) of `account`.
pub fn spot_key(key: &str, secret: &str, account: &str) -> KeyEntry {
    KeyEntry {
        api_key: key.into(),
        account: Some(account.into()),
        secret: Some(secret.into()),
        ed25519_public_key: None,
        permissions: Permissions {
            reading: true,
            futures: false,
            spot: true,
            withdrawals: false,
        },
        ip_restrict: false,
        allowed_ips: vec![],
    }
}

/// A spot `executionReport` in engine types (what the control plane's spot user data reader hands the venue;
/// the commission is left for the venue to price when it is in the base asset).
pub fn execution_report(e: &Value) -> Option<OrderUpdate> {
    let st = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
    let qty = |k: &str| Qty::parse(st(k)).unwrap_or(Qty::ZERO);
    let px = |k: &str| Price::parse(st(k)).unwrap_or(Price::ZERO);
    let status = match st("X") {
        "NEW" => OrderStatus::New,
        "PARTIALLY_FILLED" => OrderStatus::PartiallyFilled,
        "FILLED" => OrderStatus::Filled,
        "CANCELED" => OrderStatus::Canceled,
        "EXPIRED" | "EXPIRED_IN_MATCH" => OrderStatus::Expired,
        _ => OrderStatus::Rejected,
    };
    // A cancel reports the cancelled order's own id in `C`.
    let c = if st("x") == "CANCELED" && !st("C").is_empty() {
        st("C")
    } else {
        st("c")
    };
    let fee_asset = match e.get("N").and_then(Value::as_str) {
        Some(a) => Symbol::new(a).ok()?,
        None => Symbol::new("USDT").ok()?,
    };
    Some(OrderUpdate {
        ts_ms: e.get("T").and_then(Value::as_u64).unwrap_or(0),
        symbol: Symbol::new(st("s")).ok()?,
        client_id: ClientOrderId::new(c).ok()?,
        exchange_id: e.get("i").and_then(Value::as_u64).unwrap_or(0),
        side: if st("S") == "SELL" {
            Side::Sell
        } else {
            Side::Buy
        },
        order_type: if st("o").starts_with("LIMIT") {
            OrderType::Limit
        } else {
            OrderType::Market
        },
        status,
        price: px("p"),
        orig_qty: qty("q"),
        last_qty: qty("l"),
        last_price: px("L"),
        cum_qty: qty("z"),
        fee: Notional::parse(st("n")).unwrap_or(Notional::ZERO),
        fee_asset,
        fee_conv: FeeConversion::Quote,
        trade_id: e
            .get("t")
            .and_then(Value::as_i64)
            .filter(|t| *t > 0)
            .unwrap_or(0) as u64,
        maker: e.get("m").and_then(Value::as_bool).unwrap_or(false),
        reduce_only: false,
    })
}

/// The control plane's side, off the engine thread: spot user data over the WebSocket API
/// (`userDataStream.subscribe.signature` signed with `key`/`secret`), each `executionReport` sent to the venue.
/// `subscribed` is set once the subscription is confirmed; the thread ends when `stop` is set.
pub fn user_data(
    ws_base: String,
    key: &'static str,
    secret: &'static str,
    inbound: crossbeam_channel::Sender<Inbound>,
    stop: Arc<AtomicBool>,
    subscribed: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut ws = aegis_engine::net::ws::connect(
            &format!("{ws_base}/ws-api/v3"),
            Duration::from_secs(10),
        )
        .expect("spot WebSocket API");
        let key = ApiKey::new(Secret::new(key.to_string())).unwrap();
        let signer = Signer::Hmac(HmacSigner::new(&Secret::new(secret.to_string())));
        let ts = aegis_engine::clock::wall_ms().to_string();
        let (mut scratch, mut out) = ([0u8; MAX_REQUEST_LEN], [0u8; MAX_REQUEST_LEN]);
        let n = encode_request(
            1,
            "userDataStream.subscribe.signature",
            &[WsParam {
                name: "timestamp",
                value: WsValue::Num(ts.as_bytes()),
            }],
            WsAuth::Signed {
                api_key: &key,
                signer: &signer,
            },
            &mut scratch,
            &mut out,
        )
        .unwrap();
        ws.send(tungstenite::Message::text(
            std::str::from_utf8(&out[..n]).unwrap(),
        ))
        .unwrap();
        aegis_engine::net::ws::set_read_timeout(&ws, Some(Duration::from_millis(5))).unwrap();
        while !stop.load(Ordering::Acquire) {
            match ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                        continue;
                    };
                    if v["id"] == 1 {
                        assert_eq!(v["status"], 200, "subscribe: {v}");
                        subscribed.store(true, Ordering::Release);
                        continue;
                    }
                    let e = &v["event"];
                    if e["e"] != "executionReport" {
                        continue;
                    }
                    if let Some(u) = execution_report(e) {
                        let _ = inbound.send(Inbound::Update(u));
                    }
                }
                Ok(_) => {}
                Err(e) if aegis_engine::net::ws::is_timeout(&e) => {}
                Err(e) => panic!("spot user data: {e}"),
            }
        }
    })
}
