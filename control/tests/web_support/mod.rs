//! Shared harness for the web tests: a hardened router over an in-memory backend and user store, called with
//! `tower::ServiceExt::oneshot` (no network).
#![allow(dead_code)]

use aegis_control::auth::MemoryUserStore;
use aegis_control::web::model::{LiveModel, ModeAllocation, ModelInfo};
use aegis_control::web::{self, WebConfig, WebState};
use aegis_shared::{Command, Notional, StrategyMode, TradingMode};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tower::ServiceExt;

pub const SECRET: &str = "Tq8Vd0pX3LmZr7TnY2sKw9bHc4JfG6aUe1Q-test-only";
pub const ADMIN_PW: &str = "Tr0ub4dor&3-horse-staple";
pub const VIEWER_PW: &str = "correct-battery-9-staple";
pub const LOCAL: &str = "127.0.0.1";

pub struct Harness {
    pub app: Router,
    pub model: Arc<LiveModel>,
    pub commands: crossbeam_channel::Receiver<Command>,
    pub state: WebState,
}

pub fn info() -> ModelInfo {
    ModelInfo {
        trading_mode: TradingMode::Paper,
        feed_source: "sim".into(),
        started_ms: 0,
        max_position_usd: Notional::from_int(100),
        max_daily_loss_usd: Notional::from_int(50),
        allocation: StrategyMode::ALL
            .iter()
            .map(|m| ModeAllocation {
                mode: *m,
                enabled: true,
                capital_percent: Notional::from_int(25),
                capital_usd: Notional::from_int(250),
                max_positions: 2,
                max_usd_per_position: Notional::from_int(100),
            })
            .collect(),
        version: "test".into(),
    }
}

pub fn harness_with(tweak: impl FnOnce(&mut WebConfig)) -> Harness {
    let extra = Router::new().route("/api/health", axum::routing::get(|| async { "ok" }));
    harness_full(tweak, extra)
}

/// [`harness_with`] with the runtime's extra routes supplied by the test (e.g. the real `/api/local/*`).
pub fn harness_full(tweak: impl FnOnce(&mut WebConfig), extra: Router) -> Harness {
    harness_store(tweak, extra, Arc::new(MemoryUserStore::ephemeral()))
}

/// [`harness_full`] over a given user store (e.g. the Postgres mirror).
pub fn harness_store(
    tweak: impl FnOnce(&mut WebConfig),
    extra: Router,
    users: Arc<dyn aegis_control::auth::UserStore>,
) -> Harness {
    let mut cfg = WebConfig::new(
        "127.0.0.1:8090".parse().unwrap(),
        aegis_shared::Secret::new(SECRET.to_string()),
    );
    // Generous by default so tests that are not about rate limiting never trip it.
    cfg.rate_per_sec = std::num::NonZeroU32::new(1000).unwrap();
    cfg.rate_burst = std::num::NonZeroU32::new(1000).unwrap();
    cfg.live_interval = std::time::Duration::from_millis(20);
    tweak(&mut cfg);
    let (tx, rx) = crossbeam_channel::bounded(16);
    let model = Arc::new(LiveModel::with_sender(info(), tx));
    let state = WebState::new(cfg, users, model.clone()).unwrap();
    Harness {
        app: web::app(state.clone(), extra),
        model,
        commands: rx,
        state,
    }
}

pub fn harness() -> Harness {
    harness_with(|_| {})
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A logged-in browser session (cookies) or API client (bearer).
#[derive(Clone, Debug)]
pub struct Sess {
    pub cookie: String,
    pub csrf: String,
    pub token: String,
}

pub struct Req<'a> {
    pub method: Method,
    pub path: &'a str,
    pub ip: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl<'a> Req<'a> {
    pub fn new(method: Method, path: &'a str) -> Self {
        Self {
            method,
            path,
            ip: LOCAL,
            headers: Vec::new(),
            body: None,
        }
    }
    pub fn get(path: &'a str) -> Self {
        Self::new(Method::GET, path)
    }
    pub fn post(path: &'a str, json: serde_json::Value) -> Self {
        let mut r = Self::new(Method::POST, path);
        r.body = Some(json.to_string().into_bytes());
        r.headers
            .push(("content-type".into(), "application/json".into()));
        r
    }
    pub fn from(mut self, ip: &'a str) -> Self {
        self.ip = ip;
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    /// Cookie session with its CSRF header.
    pub fn session(self, s: &Sess) -> Self {
        self.header("cookie", &s.cookie)
            .header("x-csrf-token", &s.csrf)
    }
    /// Cookie session without the CSRF header.
    pub fn cookie_only(self, s: &Sess) -> Self {
        self.header("cookie", &s.cookie)
    }
    pub fn bearer(self, token: &str) -> Self {
        let v = format!("Bearer {token}");
        self.header("authorization", &v)
    }
}

pub async fn call(app: &Router, r: Req<'_>) -> Resp {
    let mut b = Request::builder()
        .method(r.method)
        .uri(r.path)
        .header(header::HOST, "127.0.0.1:8090");
    for (k, v) in &r.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let mut req = b
        .body(r.body.map(Body::from).unwrap_or_else(Body::empty))
        .unwrap();
    let peer = SocketAddr::new(r.ip.parse().unwrap(), 40000);
    req.extensions_mut().insert(ConnectInfo(peer));
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Only the status of [`call`], for the checks that need nothing else.
pub async fn status(app: &Router, r: Req<'_>) -> StatusCode {
    call(app, r).await.status
}

pub async fn register(
    app: &Router,
    user: &str,
    pw: &str,
    by: Option<&Sess>,
    role: Option<&str>,
) -> Resp {
    let mut body = serde_json::json!({ "username": user, "password": pw });
    if let Some(r) = role {
        body["role"] = serde_json::json!(r);
    }
    let mut r = Req::post("/api/auth/register", body);
    if let Some(s) = by {
        r = r.session(s);
    }
    call(app, r).await
}

pub async fn login_from(app: &Router, ip: &str, user: &str, pw: &str) -> Resp {
    call(
        app,
        Req::post(
            "/api/auth/login",
            serde_json::json!({ "username": user, "password": pw, "bearer": true }),
        )
        .from(ip),
    )
    .await
}

pub async fn login(app: &Router, user: &str, pw: &str) -> Sess {
    let r = login_from(app, LOCAL, user, pw).await;
    assert_eq!(r.status, StatusCode::OK, "login failed: {}", r.body);
    let cookies: Vec<String> = r
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect();
    let j = r.json();
    Sess {
        cookie: cookies.join("; "),
        csrf: j["csrf_token"].as_str().unwrap().to_string(),
        token: j["token"].as_str().unwrap().to_string(),
    }
}

/// Registers `admin` (first user) and `viewer`, returns their sessions.
pub async fn admin_and_viewer(h: &Harness) -> (Sess, Sess) {
    let r = register(&h.app, "admin", ADMIN_PW, None, None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let admin = login(&h.app, "admin", ADMIN_PW).await;
    let r = register(&h.app, "viewer", VIEWER_PW, Some(&admin), Some("viewer")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let viewer = login(&h.app, "viewer", VIEWER_PW).await;
    (admin, viewer)
}

/// A response body must never carry internals or secrets.
pub fn assert_no_leak(r: &Resp) {
    let lower = r.body.to_ascii_lowercase();
    for bad in [
        SECRET.to_ascii_lowercase().as_str(),
        ADMIN_PW,
        VIEWER_PW,
        "panicked",
        "backtrace",
        "stack",
        ".rs:",
        "argon2",
        "$argon",
        "jsonwebtoken",
        "invalidsignature",
        "no such user",
        "unknown user",
        "does not exist",
    ] {
        assert!(!lower.contains(bad), "response leaks {bad:?}: {}", r.body);
    }
    if !r.status.is_success() {
        let j = r.json();
        let keys: Vec<_> = j
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            vec!["error".to_string()],
            "error body shape: {}",
            r.body
        );
    }
    for h in [
        "strict-transport-security",
        "content-security-policy",
        "x-frame-options",
        "x-content-type-options",
        "referrer-policy",
    ] {
        assert!(r.headers.contains_key(h), "missing {h} on {}", r.status);
    }
}
