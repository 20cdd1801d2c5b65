//! API security tests (issue 7): every attack gets the right status and a response that leaks nothing.

mod web_support;

use aegis_shared::Command;
use axum::http::{Method, StatusCode};
use base64::Engine as _;
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};
use web_support::*;

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Hand-made claims for account `uid` (generation 0), as a real token of that account would carry them.
fn claims(uid: &str, sub: &str, iat: u64, nbf: u64, exp: u64) -> serde_json::Value {
    json!({ "sub": sub, "role": "admin", "iat": iat, "nbf": nbf, "exp": exp,
            "jti": "00112233445566778899aabbccddeeff", "iss": "aegis", "uid": uid, "gen": 0 })
}

/// The account id inside a real token.
fn uid_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    v["uid"].as_str().unwrap().to_string()
}

/// Signs `header.payload` with HMAC-SHA256 under the real secret (what an attacker cannot do, but it lets
/// the test isolate each claim check from the signature check).
fn hs256(header: &serde_json::Value, payload: &serde_json::Value) -> String {
    use hmac::{Mac, SimpleHmac};
    let signing = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(signing.as_bytes());
    format!("{signing}.{}", b64(&mac.finalize().into_bytes()))
}

async fn me_with(h: &Harness, token: &str) -> Resp {
    call(&h.app, Req::get("/api/auth/me").bearer(token)).await
}

#[tokio::test]
async fn tampered_signature_is_refused() {
    let h = harness();
    let (admin, _) = admin_and_viewer(&h).await;
    assert_eq!(me_with(&h, &admin.token).await.status, StatusCode::OK);
    // Flip one signature character.
    let mut t = admin.token.clone().into_bytes();
    let i = t.len() - 5;
    t[i] = if t[i] == b'x' { b'y' } else { b'x' };
    let r = me_with(&h, std::str::from_utf8(&t).unwrap()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_no_leak(&r);
    // Change the payload (viewer → admin style escalation) but keep the old signature.
    let parts: Vec<&str> = admin.token.split('.').collect();
    let mut payload: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    payload["sub"] = json!("viewer");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(payload.to_string().as_bytes()),
        parts[2]
    );
    let r = me_with(&h, &forged).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_no_leak(&r);
    // Same token as a cookie.
    let r = call(
        &h.app,
        Req::get("/api/auth/me").header("cookie", &format!("__Host-aegis_session={forged}")),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_no_leak(&r);
}

#[tokio::test]
async fn alg_none_and_other_algorithms_are_refused() {
    let h = harness();
    let (admin, _) = admin_and_viewer(&h).await;
    let uid = uid_of(&admin.token);
    let n = now();
    let payload = claims(&uid, "admin", n, n, n + 600);
    // The control: a correctly signed HS256 token with these claims is accepted, so the refusals below are
    // about the algorithm and nothing else.
    let good = hs256(&json!({"alg": "HS256", "typ": "JWT"}), &payload);
    assert_eq!(me_with(&h, &good).await.status, StatusCode::OK);
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    for alg in ["none", "None", "NONE"] {
        let t = none.replacen(
            &b64(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes()),
            &b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes()),
            1,
        );
        let r = me_with(&h, &t).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "alg {alg}");
        assert_no_leak(&r);
    }
    // HS512 with the right secret, and an HMAC signature under an RS256/ES256 header (key confusion).
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &payload,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let r = me_with(&h, &hs512).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_no_leak(&r);
    for alg in ["RS256", "ES256", "PS256", "HS384"] {
        let t = hs256(&json!({"alg": alg, "typ": "JWT"}), &payload);
        let r = me_with(&h, &t).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "alg {alg}");
        assert_no_leak(&r);
    }
}

#[tokio::test]
async fn expired_premature_and_incomplete_tokens_are_refused() {
    let h = harness();
    let (admin, _) = admin_and_viewer(&h).await;
    let uid = uid_of(&admin.token);
    let n = now();
    let hdr = json!({"alg": "HS256", "typ": "JWT"});
    // The control: these claims, well-formed, are accepted; each case below breaks exactly one thing.
    assert_eq!(
        me_with(&h, &hs256(&hdr, &claims(&uid, "admin", n, n, n + 600)))
            .await
            .status,
        StatusCode::OK
    );
    let cases = [
        (
            "expired",
            claims(&uid, "admin", n - 7200, n - 7200, n - 3600),
        ),
        (
            "not yet valid",
            claims(&uid, "admin", n, n + 3600, n + 7200),
        ),
        (
            "issued in the future",
            claims(&uid, "admin", n + 3600, n, n + 7200),
        ),
        (
            "lifetime beyond JWT_EXPIRY",
            claims(&uid, "admin", n, n, n + 400 * 86_400),
        ),
        ("wrong issuer", {
            let mut c = claims(&uid, "admin", n, n, n + 600);
            c["iss"] = json!("someone-else");
            c
        }),
        ("no jti", {
            let mut c = claims(&uid, "admin", n, n, n + 600);
            c.as_object_mut().unwrap().remove("jti");
            c
        }),
        ("no exp", {
            let mut c = claims(&uid, "admin", n, n, n + 600);
            c.as_object_mut().unwrap().remove("exp");
            c
        }),
        ("no iat", {
            let mut c = claims(&uid, "admin", n, n, n + 600);
            c.as_object_mut().unwrap().remove("iat");
            c
        }),
        ("no nbf", {
            let mut c = claims(&uid, "admin", n, n, n + 600);
            c.as_object_mut().unwrap().remove("nbf");
            c
        }),
        ("unknown user", claims(&uid, "mallory", n, n, n + 600)),
        ("another account's id", {
            let mut c = claims(&uid, "admin", n, n, n + 600);
            c["uid"] = json!("ffeeddccbbaa99887766554433221100");
            c
        }),
        ("another generation", {
            let mut c = claims(&uid, "admin", n, n, n + 600);
            c["gen"] = json!(1);
            c
        }),
        ("no account id", {
            let mut c = claims(&uid, "admin", n, n, n + 600);
            c.as_object_mut().unwrap().remove("uid");
            c
        }),
    ];
    for (what, c) in cases {
        let r = me_with(&h, &hs256(&hdr, &c)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.body);
        assert_no_leak(&r);
        assert_eq!(r.json()["error"], "authentication required", "{what}");
    }
}

#[tokio::test]
async fn token_after_logout_is_refused() {
    let h = harness();
    let (admin, _) = admin_and_viewer(&h).await;
    // Logout is state-changing: without the CSRF header it is refused and the session survives.
    let r = call(
        &h.app,
        Req::post("/api/auth/logout", json!({})).cookie_only(&admin),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        status(&h.app, Req::get("/api/auth/me").cookie_only(&admin)).await,
        StatusCode::OK
    );
    let r = call(
        &h.app,
        Req::post("/api/auth/logout", json!({})).session(&admin),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cleared: Vec<_> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(cleared
        .iter()
        .any(|c| c.starts_with("__Host-aegis_session=;") && c.contains("Max-Age=0")));
    // The same token, by cookie or by bearer, is dead.
    let r = call(&h.app, Req::get("/api/auth/me").cookie_only(&admin)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_no_leak(&r);
    let r = me_with(&h, &admin.token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = call(
        &h.app,
        Req::post("/api/control/halt", json!({})).session(&admin),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        h.commands.try_recv().is_err(),
        "no command may reach the engine"
    );
    // A fresh login works.
    let again = login(&h.app, "admin", ADMIN_PW).await;
    assert_eq!(me_with(&h, &again.token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn viewer_cannot_control_or_read_audit() {
    let h = harness();
    let (_, viewer) = admin_and_viewer(&h).await;
    for (path, body) in [
        ("/api/control/halt", json!({})),
        ("/api/control/resume", json!({})),
        ("/api/control/kill", json!({"flatten": true})),
        ("/api/control/breaker/reset", json!({"scope": "global"})),
    ] {
        let r = call(&h.app, Req::post(path, body.clone()).session(&viewer)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert_no_leak(&r);
        let r = call(&h.app, Req::post(path, body).bearer(&viewer.token)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} (bearer)");
    }
    assert!(
        h.commands.try_recv().is_err(),
        "a viewer's control reached the engine"
    );
    let r = call(&h.app, Req::get("/api/audit").session(&viewer)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = register(
        &h.app,
        "sneaky",
        "horse-battery-staple-9",
        Some(&viewer),
        Some("admin"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Viewers do read.
    assert_eq!(
        status(&h.app, Req::get("/api/snapshot").session(&viewer)).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn csrf_and_origin_are_enforced_for_cookie_sessions() {
    let h = harness();
    let (admin, _) = admin_and_viewer(&h).await;
    let other = login(&h.app, "admin", ADMIN_PW).await;
    let halt = || Req::post("/api/control/halt", json!({}));
    let r = call(&h.app, halt().cookie_only(&admin)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_no_leak(&r);
    let r = call(
        &h.app,
        halt().cookie_only(&admin).header("x-csrf-token", "forged"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Another session's token does not fit this session.
    let r = call(
        &h.app,
        halt()
            .cookie_only(&admin)
            .header("x-csrf-token", &other.csrf),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(
        &h.app,
        halt()
            .session(&admin)
            .header("origin", "https://evil.example"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(h.commands.try_recv().is_err());
    let r = call(
        &h.app,
        halt()
            .session(&admin)
            .header("origin", "https://127.0.0.1:8090"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(h.commands.try_recv().unwrap(), Command::Halt);
    // A form post (no JSON content type) is refused before it is parsed.
    let mut form = Req::new(Method::POST, "/api/control/halt").session(&admin);
    form.body = Some(b"reason=x".to_vec());
    form.headers.push((
        "content-type".into(),
        "application/x-www-form-urlencoded".into(),
    ));
    assert_eq!(
        call(&h.app, form).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    // Cookies are HttpOnly + Secure + SameSite=Strict.
    let r = login_from(&h.app, LOCAL, "admin", ADMIN_PW).await;
    let sc: Vec<_> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = sc
        .iter()
        .find(|c| c.starts_with("__Host-aegis_session="))
        .unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(attr), "{session}");
    }
}

#[tokio::test]
async fn brute_force_locks_the_account_without_revealing_users() {
    let h = harness();
    admin_and_viewer(&h).await;
    let wrong_known = login_from(&h.app, "10.0.0.7", "admin", "not-the-password-1").await;
    let wrong_unknown = login_from(&h.app, "10.0.0.8", "nobody", "not-the-password-1").await;
    // Same status, same body, for an unknown user and a wrong password.
    assert_eq!(wrong_known.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_known.status, wrong_unknown.status);
    assert_eq!(wrong_known.body, wrong_unknown.body);
    assert_no_leak(&wrong_known);
    // Four more failures (5 in all) lock the account, from any IP, even with the right password.
    for i in 0..4 {
        let r = login_from(&h.app, "10.0.0.7", "admin", &format!("guess-number-{i}")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = login_from(&h.app, "10.0.0.9", "admin", ADMIN_PW).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    assert_no_leak(&r);
    assert!(r.headers.get_all("set-cookie").iter().next().is_none());
    // An unknown account locks exactly the same way.
    for i in 0..4 {
        login_from(&h.app, "10.0.0.8", "nobody", &format!("guess-number-{i}")).await;
    }
    let u = login_from(&h.app, "10.0.0.10", "nobody", "whatever-password").await;
    assert_eq!(u.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(u.json(), r.json());
    // Other accounts are unaffected.
    assert_eq!(
        login_from(&h.app, "10.0.0.11", "viewer", VIEWER_PW)
            .await
            .status,
        StatusCode::OK
    );
    // The failures are in the audit trail.
    let admin_audit = h.model.clone();
    let rows = aegis_control::web::DashboardBackend::audit_log(admin_audit.as_ref(), 100, None)
        .await
        .unwrap();
    assert!(
        rows.iter()
            .filter(|r| r.action == "auth.login_failed")
            .count()
            >= 10
    );
}

#[tokio::test]
async fn per_ip_lockout_stops_password_spraying() {
    let h = harness_with(|c| c.login.max_per_ip = 6);
    admin_and_viewer(&h).await;
    for i in 0..6 {
        let r = login_from(&h.app, "10.9.9.9", &format!("user{i}"), "spray-password-1").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = login_from(&h.app, "10.9.9.9", "viewer", VIEWER_PW).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        login_from(&h.app, "10.9.9.10", "viewer", VIEWER_PW)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn allowlist_refuses_other_addresses() {
    let h = harness_with(|c| {
        c.allowed_ips = aegis_control::auth::IpAllowlist::parse("10.0.0.0/8, 127.0.0.1").unwrap();
    });
    for (path, method) in [
        ("/api/auth/me", Method::GET),
        ("/", Method::GET),
        ("/api/auth/login", Method::POST),
        ("/api/health", Method::GET),
    ] {
        let r = call(&h.app, Req::new(method, path).from("192.0.2.1")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert_no_leak(&r);
        assert_eq!(r.json()["error"], "access denied");
    }
    // Inside the list (also written as an IPv4-mapped IPv6 address) the request reaches the routes and meets auth.
    for ip in ["10.1.2.3", "::ffff:10.1.2.3"] {
        let r = call(&h.app, Req::get("/api/auth/me").from(ip)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{ip}");
    }
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let h = harness();
    let big = json!({ "username": "admin", "password": "x".repeat(64 * 1024) }).to_string();
    // With a Content-Length header…
    let mut r = Req::new(Method::POST, "/api/auth/login")
        .header("content-type", "application/json")
        .header("content-length", &big.len().to_string());
    r.body = Some(big.clone().into_bytes());
    let resp = call(&h.app, r).await;
    assert_eq!(resp.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_no_leak(&resp);
    // …and streamed without one.
    let mut r =
        Req::new(Method::POST, "/api/auth/register").header("content-type", "application/json");
    r.body = Some(big.into_bytes());
    let resp = call(&h.app, r).await;
    assert_eq!(resp.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_no_leak(&resp);
    // Malformed JSON: a generic 400 that does not echo the parser's complaint.
    let mut r =
        Req::new(Method::POST, "/api/auth/login").header("content-type", "application/json");
    r.body = Some(b"{\"username\": \"admin\", \"password\": ".to_vec());
    let resp = call(&h.app, r).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.json()["error"], "malformed JSON body");
}

#[tokio::test]
async fn request_rate_limit_per_ip() {
    let h = harness_with(|c| {
        c.rate_per_sec = std::num::NonZeroU32::new(1).unwrap();
        c.rate_burst = std::num::NonZeroU32::new(5).unwrap();
    });
    for _ in 0..5 {
        assert_ne!(
            status(&h.app, Req::get("/api/health").from("198.51.100.4")).await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    let r = call(&h.app, Req::get("/api/health").from("198.51.100.4")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key("retry-after"));
    assert_no_leak(&r);
    assert_eq!(
        status(&h.app, Req::get("/api/health").from("198.51.100.5")).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn registration_rules() {
    let h = harness();
    // The first account cannot be claimed from the internet.
    let r = call(
        &h.app,
        Req::post(
            "/api/auth/register",
            json!({"username": "eve", "password": "horse-battery-staple-7"}),
        )
        .from("203.0.113.9"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = register(&h.app, "admin", "short", None, None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = register(&h.app, "admin", ADMIN_PW, None, None).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["role"], "admin");
    // After that, registration needs an admin.
    let r = register(&h.app, "second", "horse-battery-staple-8", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_no_leak(&r);
    let admin = login(&h.app, "admin", ADMIN_PW).await;
    let r = register(
        &h.app,
        "second",
        "horse-battery-staple-8",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["role"], "viewer", "default role is read-only");
    let r = register(
        &h.app,
        "SECOND",
        "horse-battery-staple-8",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // Users list never shows hashes.
    let r = call(&h.app, Req::get("/api/users").session(&admin)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_no_leak(&r);
}

#[tokio::test]
async fn metrics_only_for_loopback_or_authenticated() {
    let h = harness();
    let (admin, _) = admin_and_viewer(&h).await;
    let r = call(&h.app, Req::get("/metrics")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains("# TYPE aegis_fills_total counter"),
        "{}",
        r.body
    );
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let r = call(&h.app, Req::get("/metrics").from("203.0.113.5")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_no_leak(&r);
    let r = call(
        &h.app,
        Req::get("/metrics")
            .from("203.0.113.5")
            .bearer(&admin.token),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn unauthenticated_api_calls_and_unknown_paths() {
    let h = harness();
    admin_and_viewer(&h).await;
    for p in [
        "/api/snapshot",
        "/api/positions",
        "/api/trades",
        "/api/pnl",
        "/api/events",
        "/api/audit",
        "/api/status",
    ] {
        let r = call(&h.app, Req::get(p)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{p}");
        assert_no_leak(&r);
    }
    let r = call(&h.app, Req::get("/api/../../etc/passwd")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_no_leak(&r);
    let r = call(&h.app, Req::get("/assets/..%2f..%2fCargo.toml")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_no_leak(&r);
}

#[test]
fn weak_config_is_refused_at_start() {
    use aegis_control::web::{WebConfig, WebConfigError};
    let get = |kv: &'static [(&'static str, &'static str)]| {
        move |k: &str| kv.iter().find(|(a, _)| *a == k).map(|(_, v)| v.to_string())
    };
    let e = WebConfig::from_lookup(
        "127.0.0.1:8090".parse().unwrap(),
        get(&[("JWT_SECRET", "change-me-to-at-least-32-random-bytes")]),
    )
    .unwrap_err();
    assert!(matches!(
        e,
        WebConfigError::Secret(aegis_control::auth::SecretProblem::Placeholder)
    ));
    assert!(e.to_string().contains("JWT_SECRET"));
    let e = WebConfig::from_lookup(
        "0.0.0.0:8090".parse().unwrap(),
        get(&[("AUTH_ENABLED", "false")]),
    )
    .unwrap_err();
    assert!(matches!(e, WebConfigError::AuthOffNotLoopback(_)));
    let e = WebConfig::from_lookup(
        "127.0.0.1:8090".parse().unwrap(),
        get(&[("JWT_SECRET", "abcabcabcabcabcabcabcabcabcabcabcabcabc")]),
    )
    .unwrap_err();
    assert!(!e.to_string().contains("abcabc"));
}
