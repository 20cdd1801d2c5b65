//! Issue 15 items 1-4: the attacks that broke the dashboard in the attack run, each as a test that failed on the
//! code before the fix. In-process (oneshot) tests; the slow-client tests over real TLS are in `web_slowloris.rs`.

mod web_support;

use aegis_shared::{Command, Secret};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;
use std::net::SocketAddr;
use tower::ServiceExt;
use web_support::*;

const LOCAL_TOKEN: &str = "local-admin-token-for-tests-0123456789abcdef";

/// The real `/api/local/*` routes (as `aegis run` mounts them) plus a health route, behind the dashboard's layers.
fn harness_with_local(
    tweak: impl FnOnce(&mut aegis_control::web::WebConfig),
) -> (
    Harness,
    crossbeam_channel::Receiver<aegis_control::pump::Issued>,
) {
    let (tx, rx) = crossbeam_channel::bounded(16);
    let extra = axum::Router::new()
        .route("/api/health", axum::routing::get(|| async { "ok" }))
        .merge(aegis_control::ops::admin::routes(
            Secret::new(LOCAL_TOKEN.to_string()),
            tx,
        ));
    (harness_full(tweak, extra), rx)
}

// ---------------------------------------------------------------------------------------------------------------
// Item 1: tokens are bound to the account they were issued for.

const BOB_PW: &str = "violet-granite-kettle-41";
const BOB_PW2: &str = "museum-harbor-lantern-77";

fn req_with(method: Method, path: &str, body: serde_json::Value) -> Req<'_> {
    let mut r = Req::post(path, body);
    r.method = method;
    r
}

async fn me(h: &Harness, token: &str) -> StatusCode {
    status(&h.app, Req::get("/api/auth/me").bearer(token)).await
}

async fn halt_with(h: &Harness, token: &str) -> StatusCode {
    status(
        &h.app,
        Req::post("/api/control/halt", json!({})).bearer(token),
    )
    .await
}

#[tokio::test]
async fn a_deleted_users_token_does_not_come_back_when_the_name_is_reused() {
    let h = harness();
    let (admin, _) = admin_and_viewer(&h).await;
    let r = register(&h.app, "bob", BOB_PW, Some(&admin), Some("viewer")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let old = login(&h.app, "bob", BOB_PW).await;
    assert_eq!(me(&h, &old.token).await, StatusCode::OK);
    assert_eq!(halt_with(&h, &old.token).await, StatusCode::FORBIDDEN);

    // The attack run: delete bob (viewer), then an admin registers a new bob as admin.
    let r = call(
        &h.app,
        req_with(Method::DELETE, "/api/users/bob", json!({})).session(&admin),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(me(&h, &old.token).await, StatusCode::UNAUTHORIZED);
    let r = register(&h.app, "bob", BOB_PW2, Some(&admin), Some("admin")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // bob's old viewer token is not the new bob's: refused everywhere, by bearer and by cookie.
    assert_eq!(me(&h, &old.token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(halt_with(&h, &old.token).await, StatusCode::UNAUTHORIZED);
    let r = call(
        &h.app,
        Req::post("/api/control/halt", json!({})).session(&old),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_no_leak(&r);
    assert!(
        h.commands.try_recv().is_err(),
        "no command reached the engine"
    );
    // The new bob signs in and is admin.
    let new = login(&h.app, "bob", BOB_PW2).await;
    assert_eq!(halt_with(&h, &new.token).await, StatusCode::OK);
    assert_eq!(h.commands.try_recv().unwrap(), Command::Halt);

    // Deleting needs an admin, never yourself, and says 404 for nobody.
    let viewer = login(&h.app, "viewer", VIEWER_PW).await;
    let del = |path: &'static str, s: &Sess| {
        let s = s.clone();
        let app = h.app.clone();
        async move { status(&app, req_with(Method::DELETE, path, json!({})).session(&s)).await }
    };
    assert_eq!(del("/api/users/bob", &viewer).await, StatusCode::FORBIDDEN);
    assert_eq!(del("/api/users/admin", &admin).await, StatusCode::CONFLICT);
    assert_eq!(
        del("/api/users/nobody", &admin).await,
        StatusCode::NOT_FOUND
    );
    // Cookie sessions need the CSRF header for it, like any control.
    let r = call(
        &h.app,
        req_with(Method::DELETE, "/api/users/bob", json!({})).cookie_only(&admin),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(me(&h, &new.token).await, StatusCode::OK);
}

#[tokio::test]
async fn a_role_change_ends_the_users_sessions() {
    let h = harness();
    let (admin, viewer) = admin_and_viewer(&h).await;
    let r = register(&h.app, "bob", BOB_PW, Some(&admin), Some("admin")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let bob = login(&h.app, "bob", BOB_PW).await;
    assert_eq!(halt_with(&h, &bob.token).await, StatusCode::OK);
    h.commands.try_recv().unwrap();
    // Demoted: the old admin token is refused outright (not merely demoted).
    let r = call(
        &h.app,
        req_with(Method::PATCH, "/api/users/bob", json!({"role": "viewer"})).session(&admin),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["role"], "viewer");
    assert_eq!(me(&h, &bob.token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(halt_with(&h, &bob.token).await, StatusCode::UNAUTHORIZED);
    let bob = login(&h.app, "bob", BOB_PW).await;
    assert_eq!(halt_with(&h, &bob.token).await, StatusCode::FORBIDDEN);
    // Promoted: the viewer's old token must not turn into an admin token either.
    let r = call(
        &h.app,
        req_with(Method::PATCH, "/api/users/viewer", json!({"role": "admin"})).session(&admin),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(me(&h, &viewer.token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(halt_with(&h, &viewer.token).await, StatusCode::UNAUTHORIZED);
    assert!(h.commands.try_recv().is_err());
    // Only admins change roles; an admin cannot demote themselves; the admin's own session is untouched.
    let r = call(
        &h.app,
        req_with(Method::PATCH, "/api/users/admin", json!({"role": "viewer"})).session(&bob),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(
        &h.app,
        req_with(Method::PATCH, "/api/users/admin", json!({"role": "viewer"})).session(&admin),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(me(&h, &admin.token).await, StatusCode::OK);
}

#[tokio::test]
async fn a_password_change_ends_every_session_of_the_user() {
    let h = harness();
    let (admin, _) = admin_and_viewer(&h).await;
    let r = register(&h.app, "bob", BOB_PW, Some(&admin), Some("viewer")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let laptop = login(&h.app, "bob", BOB_PW).await;
    let phone = login(&h.app, "bob", BOB_PW).await;
    let change = |s: &Sess, cur: &str, new: &str| {
        Req::post(
            "/api/auth/password",
            json!({"current_password": cur, "new_password": new}),
        )
        .session(s)
    };
    // The current password is required, and the new one meets the policy.
    let r = call(&h.app, change(&laptop, "wrong-password-1234x", BOB_PW2)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = call(&h.app, change(&laptop, BOB_PW, "password1234")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"].as_str().unwrap().contains("too easy"));
    assert_eq!(me(&h, &laptop.token).await, StatusCode::OK);
    // Changed: both sessions (the one that asked included) end; the old password is dead, the new one works.
    let r = call(&h.app, change(&laptop, BOB_PW, BOB_PW2)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(me(&h, &laptop.token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&h, &phone.token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        login_from(&h.app, LOCAL, "bob", BOB_PW).await.status,
        StatusCode::UNAUTHORIZED
    );
    let again = login(&h.app, "bob", BOB_PW2).await;
    // An admin's password reset does the same.
    let r = call(
        &h.app,
        req_with(
            Method::PATCH,
            "/api/users/bob",
            json!({"password": "orchid-ledger-basalt-93"}),
        )
        .session(&admin),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(me(&h, &again.token).await, StatusCode::UNAUTHORIZED);
    login(&h.app, "bob", "orchid-ledger-basalt-93").await;
    let r = call(
        &h.app,
        req_with(
            Method::PATCH,
            "/api/users/bob",
            json!({"password": "aaaaaaaaaaaa"}),
        )
        .session(&admin),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_live_stream_ends_when_the_account_changes() {
    let h = harness();
    let (admin, _) = admin_and_viewer(&h).await;
    let r = register(&h.app, "bob", BOB_PW, Some(&admin), Some("viewer")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let bob = login(&h.app, "bob", BOB_PW).await;
    let mut req = Request::builder()
        .uri("/api/events")
        .header("host", "127.0.0.1:8090")
        .header("authorization", format!("Bearer {}", bob.token))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(
        "127.0.0.1:40000".parse::<SocketAddr>().unwrap(),
    ));
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let r = call(
        &h.app,
        req_with(Method::PATCH, "/api/users/bob", json!({"role": "admin"})).session(&admin),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // The stream rechecks the account every 5 s; it must end within a loaded-CI-safe bound.
    let drained = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        axum::body::to_bytes(resp.into_body(), 1 << 24),
    )
    .await;
    assert!(
        drained.is_ok(),
        "the stream of a changed account kept going"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Item 3: password policy.

#[tokio::test]
async fn weak_passwords_are_refused_for_the_first_admin_and_for_new_users() {
    let h = harness();
    for weak in ["password1234", "aaaaaaaaaaaa", "            "] {
        let r = register(&h.app, "admin", weak, None, None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "first admin {weak:?}");
        assert_no_leak(&r);
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains("too easy to guess"), "{msg}");
        assert!(
            !msg.contains(weak.trim()) || weak.trim().is_empty(),
            "{msg}"
        );
    }
    // Nothing was created by the refusals: the first account is still up for grabs from loopback.
    let r = register(&h.app, "admin", ADMIN_PW, None, None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let admin = login(&h.app, "admin", ADMIN_PW).await;
    for weak in [
        "password1234",
        "aaaaaaaaaaaa",
        "            ",
        "Password123!",
    ] {
        let r = register(&h.app, "bob", weak, Some(&admin), Some("viewer")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "user {weak:?}");
        assert!(r.json()["error"]
            .as_str()
            .unwrap()
            .contains("too easy to guess"));
    }
    let r = register(&h.app, "bob", VIEWER_PW, Some(&admin), Some("viewer")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

// ---------------------------------------------------------------------------------------------------------------
// Item 4: no-store everywhere authenticated; health and local controls from loopback past the limits.

#[tokio::test]
async fn every_authenticated_answer_and_the_live_stream_say_no_store() {
    let h = harness();
    let (admin, _) = admin_and_viewer(&h).await;
    for p in [
        "/api/auth/me",
        "/api/users",
        "/api/status",
        "/api/snapshot",
        "/api/positions",
        "/api/orders/open",
        "/api/trades",
        "/api/pnl",
        "/api/breakers",
        "/api/limits",
        "/api/latency",
        "/api/audit",
        "/metrics",
    ] {
        let r = call(&h.app, Req::get(p).bearer(&admin.token)).await;
        assert_eq!(r.status, StatusCode::OK, "{p}: {}", r.body);
        assert_eq!(r.headers["cache-control"], "no-store", "{p}");
    }
    // The live stream: only its headers are read (the body never ends).
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
    let cc: Vec<_> = resp.headers().get_all("cache-control").iter().collect();
    assert_eq!(cc, ["no-store"], "exactly one Cache-Control, no-store");
    // Login answers carry the session token: not cacheable either.
    let r = login_from(&h.app, LOCAL, "admin", ADMIN_PW).await;
    assert_eq!(r.headers["cache-control"], "no-store");
}

#[tokio::test]
async fn health_and_local_halt_answer_loopback_past_the_allowlist_and_the_rate_limit() {
    let (h, issued) = harness_with_local(|c| {
        // An allowlist without loopback, and a tiny per-IP budget.
        c.allowed_ips = aegis_control::auth::IpAllowlist::parse("10.0.0.0/8").unwrap();
        c.rate_per_sec = std::num::NonZeroU32::new(1).unwrap();
        c.rate_burst = std::num::NonZeroU32::new(2).unwrap();
    });
    // Others are still refused by the allowlist, health included.
    let r = call(&h.app, Req::get("/api/health").from("192.0.2.1")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Loopback is not on the list: the dashboard itself stays closed to it...
    let r = call(&h.app, Req::get("/api/auth/me")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // ...but the health check answers, again and again (far beyond the burst of 2).
    for i in 0..20 {
        let r = call(&h.app, Req::get("/api/health")).await;
        assert_eq!(r.status, StatusCode::OK, "health call {i}");
    }
    // And `aegis halt` reaches the engine.
    let r = call(
        &h.app,
        Req::post("/api/local/halt", json!({"reason": "test"})).bearer(LOCAL_TOKEN),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let got = issued.try_recv().expect("halt issued");
    assert_eq!(got.command, Command::Halt);

    // A monitoring host inside the allowlist that bursts is rate limited, and that does not touch loopback.
    let (h, issued) = harness_with_local(|c| {
        c.rate_per_sec = std::num::NonZeroU32::new(1).unwrap();
        c.rate_burst = std::num::NonZeroU32::new(2).unwrap();
    });
    let mut limited = 0;
    for _ in 0..6 {
        if status(&h.app, Req::get("/api/health").from("198.51.100.7")).await
            == StatusCode::TOO_MANY_REQUESTS
        {
            limited += 1;
        }
    }
    assert!(limited >= 3, "the burst from elsewhere is limited");
    for i in 0..20 {
        assert_eq!(
            status(&h.app, Req::get("/api/health")).await,
            StatusCode::OK,
            "loopback health {i}"
        );
    }
    for _ in 0..5 {
        let r = call(
            &h.app,
            Req::post("/api/local/halt", json!({})).bearer(LOCAL_TOKEN),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_eq!(issued.try_iter().count(), 5);
    // The bypass is for loopback only: a forwarded request through a trusted proxy on this host is the real
    // client, which the allowlist and the rate limit still see.
    let (h, _) = harness_with_local(|c| {
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.allowed_ips = aegis_control::auth::IpAllowlist::parse("10.0.0.0/8").unwrap();
    });
    let r = call(
        &h.app,
        Req::new(Method::GET, "/api/health").header("x-forwarded-for", "192.0.2.50"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}
