//! Functional tests of the dashboard API: controls reach the engine and the audit trail, the live stream
//! pushes snapshots, paging, the OpenAPI document and the embedded assets.

mod web_support;

use aegis_shared::event::{
    BreakerChange, BreakerEvent, BreakerScope, EngineEvent, EngineState, Fill, HaltReason,
    Liquidity, OrderIntent, TripReason,
};
use aegis_shared::{ClientOrderId, Command, Notional, Price, Qty, Side, StrategyMode, Symbol};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use futures_util::StreamExt;
use serde_json::json;
use std::net::SocketAddr;
use tower::ServiceExt;
use web_support::*;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn fill(i: u64, pnl: i64) -> EngineEvent {
    EngineEvent::Fill(Fill {
        ts_ms: now_ms(),
        symbol: Symbol::new("BTCUSDT").unwrap(),
        market: aegis_shared::Market::Futures,
        client_id: ClientOrderId::new(&format!("ag1-{i}")).unwrap(),
        exchange_order_id: i,
        trade_id: i,
        split_part: 0,
        mode: StrategyMode::Scalp,
        intent: OrderIntent::Entry,
        side: Side::Buy,
        price: Price::from_int(100),
        qty: Qty::parse("0.5").unwrap(),
        fee: Notional::parse("0.02").unwrap(),
        fee_asset: Symbol::new("USDT").unwrap(),
        liquidity: Liquidity::Taker,
        realized_pnl: Notional::from_int(pnl),
        fee_conv: Default::default(),
    })
}

#[tokio::test]
async fn controls_reach_the_engine_and_the_audit_trail() {
    let h = harness();
    let (admin, _) = admin_and_viewer(&h).await;
    let cases = [
        (
            "/api/control/halt",
            json!({"reason": "news at 3am"}),
            Command::Halt,
            "control.halt",
        ),
        (
            "/api/control/resume",
            json!({}),
            Command::Resume,
            "control.resume",
        ),
        (
            "/api/control/kill",
            json!({"flatten": true}),
            Command::Kill { flatten: true },
            "control.kill",
        ),
        (
            "/api/control/kill",
            json!({}),
            Command::Kill { flatten: false },
            "control.kill",
        ),
        (
            "/api/control/breaker/reset",
            json!({"scope": "swing"}),
            Command::ResetBreaker {
                scope: BreakerScope::Mode(StrategyMode::Swing),
            },
            "control.breaker_reset",
        ),
    ];
    for (path, body, cmd, action) in cases {
        let r = call(&h.app, Req::post(path, body).session(&admin)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert_eq!(r.json()["audited"], true);
        assert_eq!(h.commands.try_recv().unwrap(), cmd, "{path}");
        let audit = call(&h.app, Req::get("/api/audit?limit=1").session(&admin)).await;
        let top = &audit.json()["entries"][0];
        assert_eq!(top["action"], action);
        assert_eq!(top["actor"], "admin");
        assert_eq!(top["ip"], "127.0.0.1");
    }
    let r = call(
        &h.app,
        Req::post("/api/control/breaker/reset", json!({"scope": "everything"})).session(&admin),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(
        &h.app,
        Req::post("/api/control/kill", json!({"flatten": "yes"})).session(&admin),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(h.commands.try_recv().is_err());
    // The audit rows are hash-chained: every row has a distinct 32-byte hash.
    let audit = call(&h.app, Req::get("/api/audit").session(&admin))
        .await
        .json();
    let hashes: std::collections::HashSet<_> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["hash"].as_str().unwrap().to_string())
        .collect();
    assert!(hashes.iter().all(|x| x.len() == 64));
    assert_eq!(hashes.len(), audit["entries"].as_array().unwrap().len());
}

#[tokio::test]
async fn engine_unreachable_gives_503_not_a_crash() {
    let h = harness();
    let (admin, _) = admin_and_viewer(&h).await;
    drop(h.commands); // the engine is gone
    let r = call(
        &h.app,
        Req::post("/api/control/halt", json!({})).session(&admin),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"], "engine not reachable");
}

#[tokio::test]
async fn read_api_reflects_engine_events() {
    let h = harness();
    let (_, viewer) = admin_and_viewer(&h).await;
    for i in 1..=120 {
        h.model.apply(&fill(i, if i % 2 == 0 { 1 } else { -2 }));
    }
    h.model.apply(&EngineEvent::State {
        ts_ms: now_ms(),
        state: EngineState::Halted {
            reason: HaltReason::Operator,
        },
    });
    h.model.apply(&EngineEvent::Breaker(BreakerEvent {
        ts_ms: now_ms(),
        scope: BreakerScope::Global,
        change: BreakerChange::Tripped {
            reason: TripReason::ConsecutiveLosses,
            until_ms: now_ms() + 120_000,
        },
    }));
    let t = call(
        &h.app,
        Req::get("/api/trades?page=1&limit=50").session(&viewer),
    )
    .await
    .json();
    assert_eq!(t["total"], 120);
    assert_eq!(t["trades"].as_array().unwrap().len(), 50);
    assert_eq!(
        t["trades"][0]["trade_id"], 70,
        "page 1 starts at the 51st newest"
    );
    let t = call(
        &h.app,
        Req::get("/api/trades?page=2&limit=50").session(&viewer),
    )
    .await
    .json();
    assert_eq!(t["trades"].as_array().unwrap().len(), 20);
    assert_eq!(
        status(&h.app, Req::get("/api/trades?limit=0").session(&viewer)).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status(&h.app, Req::get("/api/trades?page=x").session(&viewer)).await,
        StatusCode::BAD_REQUEST
    );
    // 60 × (+1) + 60 × (−2) − 120 × 0.02 fees = −62.4
    let p = call(&h.app, Req::get("/api/pnl").session(&viewer))
        .await
        .json();
    assert_eq!(p["total"], "-62.4");
    assert_eq!(p["day"], "-62.4");
    assert_eq!(p["hour"], "-62.4");
    assert!(p["equity_curve"].as_array().unwrap().len() >= 100);
    let s = call(&h.app, Req::get("/api/status").session(&viewer))
        .await
        .json();
    assert_eq!(s["status"]["engine"], "halted");
    assert_eq!(s["status"]["halt_reason"], "operator");
    let b = call(&h.app, Req::get("/api/breakers").session(&viewer))
        .await
        .json();
    let g = &b["breakers"][0];
    assert_eq!(g["tripped"], true);
    let left = g["cooldown_left_ms"].as_u64().unwrap();
    assert!(left > 100_000 && left <= 120_000, "{left}");
    let l = call(&h.app, Req::get("/api/limits").session(&viewer))
        .await
        .json();
    assert_eq!(l["daily_loss_used_usd"], "62.4");
    assert_eq!(l["allocation"].as_array().unwrap().len(), 4);
    let m = call(&h.app, Req::get("/metrics")).await.body;
    assert!(
        m.contains("aegis_breaker_tripped{scope=\"global\"} 1"),
        "{m}"
    );
    assert!(m.contains("aegis_engine_halted 1"));
    assert!(m.contains("aegis_pnl_total_usd -62.4"));
}

async fn next_event(
    body: &mut axum::body::BodyDataStream,
) -> Result<String, tokio::time::error::Elapsed> {
    let fut = async move {
        let mut buf = String::new();
        while !buf.contains("\n\n") {
            let chunk = body
                .next()
                .await
                .expect("stream ended")
                .expect("stream error");
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
        buf
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), fut).await
}

#[tokio::test]
async fn live_stream_pushes_snapshots_on_change() {
    let h = harness();
    let (admin, _) = admin_and_viewer(&h).await;
    let mut req = Request::builder()
        .uri("/api/events")
        .header("host", "127.0.0.1:8090")
        .header("cookie", &admin.cookie)
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(
        "127.0.0.1:40000".parse::<SocketAddr>().unwrap(),
    ));
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = resp.into_body().into_data_stream();
    let first = next_event(&mut body).await.expect("first snapshot");
    assert!(first.starts_with("event: snapshot"), "{first}");
    assert!(first.contains("\"trade_count\":0"));
    h.model.apply(&fill(1, 3));
    let second = next_event(&mut body).await.expect("snapshot after a fill");
    assert!(second.contains("\"trade_count\":1"), "{second}");
    assert!(second.contains("\"total\":\"2.98\""), "{second}");
}

#[tokio::test]
async fn openapi_document_covers_every_route() {
    let h = harness();
    let r = call(&h.app, Req::get("/api/openapi.json")).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in aegis_control::web::API_PATHS {
        assert!(paths.contains_key(*p), "{p} missing from openapi.json");
    }
    assert_eq!(
        paths.len(),
        aegis_control::web::API_PATHS.len(),
        "openapi.json documents a route that does not exist"
    );
}

/// Issue 14: the API's fills, orders and positions say which market they are on (taken from each event, not a
/// constant), and the dashboard's tables have a Market column for them.
#[tokio::test]
async fn fills_orders_and_positions_carry_their_market() {
    use aegis_shared::event::{OrderEvent, OrderStatus, OrderType, PositionUpdate, TimeInForce};
    use aegis_shared::Market;
    let h = harness();
    let (_, viewer) = admin_and_viewer(&h).await;
    h.model.apply(&fill(1, 0));
    let EngineEvent::Fill(mut spot) = fill(2, 0) else {
        unreachable!()
    };
    spot.market = Market::Spot;
    h.model.apply(&EngineEvent::Fill(spot));
    h.model.apply(&EngineEvent::Order(OrderEvent {
        ts_ms: now_ms(),
        symbol: Symbol::new("ETHUSDT").unwrap(),
        market: Market::Spot,
        client_id: ClientOrderId::new("ag1-spot-1").unwrap(),
        exchange_id: Some(7),
        mode: StrategyMode::Swing,
        intent: OrderIntent::Entry,
        side: Side::Buy,
        order_type: OrderType::Limit,
        tif: Some(TimeInForce::Gtc),
        price: Price::from_int(2000),
        qty: Qty::parse("0.1").unwrap(),
        filled: Qty::ZERO,
        reduce_only: false,
        status: OrderStatus::New,
        reject_code: 0,
    }));
    h.model.apply(&EngineEvent::Position(PositionUpdate {
        ts_ms: now_ms(),
        symbol: Symbol::new("ETHUSDT").unwrap(),
        market: Market::Spot,
        mode: StrategyMode::Swing,
        qty: Qty::parse("0.1").unwrap(),
        entry_price: Price::from_int(2000),
        realized_pnl: Notional::ZERO,
        fees: Notional::ZERO,
        funding: Default::default(),
    }));

    let t = call(&h.app, Req::get("/api/trades").session(&viewer))
        .await
        .json();
    let markets: Vec<(u64, &str)> = t["trades"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["trade_id"].as_u64().unwrap(),
                t["market"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(markets, [(2, "spot"), (1, "futures")], "{t}");
    let p = call(&h.app, Req::get("/api/positions").session(&viewer))
        .await
        .json();
    assert_eq!(p["positions"][0]["market"], "spot", "{p}");
    let o = call(&h.app, Req::get("/api/orders/open").session(&viewer))
        .await
        .json();
    assert_eq!(o["orders"][0]["market"], "spot", "{o}");
    let s = call(&h.app, Req::get("/api/snapshot").session(&viewer))
        .await
        .json();
    assert_eq!(s["positions"][0]["market"], "spot", "{s}");
    assert_eq!(s["open_orders"][0]["market"], "spot", "{s}");

    // The page: positions, open orders and trades each have a Market column right after Symbol, and the script
    // fills it from the row's `market`.
    let page = call(&h.app, Req::get("/")).await.body;
    assert_eq!(
        page.matches("<th>Symbol</th><th>Market</th>").count(),
        3,
        "positions, open orders and trades tables"
    );
    let js = call(&h.app, Req::get("/assets/app.js")).await.body;
    for field in [
        "p.symbol, p.market,",
        "o.symbol, o.market,",
        "t.symbol, t.market,",
    ] {
        assert!(js.contains(field), "app.js does not render {field}");
    }
}

#[tokio::test]
async fn dashboard_assets_are_embedded_and_csp_clean() {
    let h = harness();
    let page = call(&h.app, Req::get("/")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'")
            && !csp.contains("unsafe-inline")
            && csp.contains("frame-ancestors 'none'")
    );
    // No inline script, no inline style, no inline event handler, nothing from another origin.
    let html = page.body.to_ascii_lowercase();
    for bad in [
        "<script>",
        "style=",
        " onclick=",
        " onload=",
        " onerror=",
        "http://",
        "https://",
        "<style",
    ] {
        assert!(!html.contains(bad), "index.html contains {bad:?}");
    }
    assert!(html.contains("<script src=\"/assets/app.js\""));
    for (path, ct) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        let r = call(&h.app, Req::get(path)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(
            r.headers["content-type"].to_str().unwrap().starts_with(ct),
            "{path}"
        );
        assert!(
            !r.body.contains("innerHTML"),
            "{path} must build DOM with textContent"
        );
        // (The SVG namespace URI is an identifier, not a fetch.)
        let body = r.body.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} loads from another origin"
        );
    }
    assert_eq!(
        call(&h.app, Req::get("/assets/secret.txt")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn auth_disabled_on_loopback_serves_a_local_admin() {
    let h = harness_with(|c| c.auth_enabled = false);
    let me = call(&h.app, Req::get("/api/auth/me")).await.json();
    assert_eq!(me["username"], "local");
    assert_eq!(me["auth_enabled"], false);
    let r = call(&h.app, Req::post("/api/control/halt", json!({}))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(h.commands.try_recv().unwrap(), Command::Halt);
    let r = call(
        &h.app,
        Req::post("/api/auth/login", json!({"username": "a", "password": "b"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}
