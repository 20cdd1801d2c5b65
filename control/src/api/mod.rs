//! The HTTPS API (axum on hyper, rustls with the `ring` provider).
//!
//! Routes: `GET /api/health` (200 for ok/degraded, 503 for down) and `GET /api/status`. `aegis run` also mounts
//! the local admin endpoints `POST /api/local/{halt,resume,kill}` (guarded by `DATA_DIR/admin.token`, see
//! [`crate::ops::admin`]). No response ever carries a secret: bodies are built from [`crate::state::Live`], which holds none. `aegis run` serves the dashboard
//! ([`crate::web::app`], authenticated) with [`serve_app`] and mounts only [`public_routes`] from here; without
//! authentication the configuration refuses a non-loopback `BIND_ADDR`, and [`bind`] checks again.

pub mod limits;

pub use limits::{ConnLimits, ConnTracker};

use crate::state::Live;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;
use tower_http::set_header::SetResponseHeaderLayer;

/// API start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Binding beyond loopback without authentication.
    #[error("refusing to serve the API on {0} with AUTH_ENABLED=false: without authentication only loopback addresses (127.0.0.1, ::1) are allowed; set AUTH_ENABLED=true (with a JWT_SECRET) or BIND_ADDR=127.0.0.1")]
    NotLoopback(SocketAddr),
    /// The port is taken or not permitted.
    #[error(
        "cannot listen on {addr}: {source}; is another aegis running? choose another API_PORT"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The router with every route.
pub fn router(live: Arc<Live>) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/status", get(status))
        .fallback(not_found)
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ))
        .with_state(live)
}

async fn health(State(live): State<Arc<Live>>) -> Response {
    let (up, body) = live.health();
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn status(State(live): State<Arc<Live>>) -> Response {
    Json(live.status()).into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": "not found"})),
    )
        .into_response()
}

/// The public routes the runtime mounts beside the dashboard: `GET /api/health` (no login needed, so load
/// balancers and `deploy/` health checks can call it; it holds no secret and no position data).
pub fn public_routes(live: Arc<Live>) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .with_state(live)
}

/// [`public_routes`] with the Postgres writer's health in the body (`"database": {state, lag_records, ...}`);
/// the bot is degraded while the database is down or lagging.
pub fn public_routes_with_db(live: Arc<Live>, db: crate::db::DbHealthSource) -> Router {
    Router::new()
        .route("/api/health", get(health_with_db))
        .with_state((live, db))
}

async fn health_with_db(
    State((live, db)): State<(Arc<Live>, crate::db::DbHealthSource)>,
) -> Response {
    let (up, mut body) = live.health();
    db.merge_into(&mut body);
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// Binds the listening socket (before the engine starts, so a taken port fails fast). Without authentication
/// only a loopback address is accepted.
pub fn bind(addr: SocketAddr, auth_enabled: bool) -> Result<TcpListener, ApiError> {
    if !addr.ip().is_loopback() && !auth_enabled {
        return Err(ApiError::NotLoopback(addr));
    }
    let l = TcpListener::bind(addr).map_err(|source| ApiError::Bind { addr, source })?;
    l.set_nonblocking(true)
        .map_err(|source| ApiError::Bind { addr, source })?;
    Ok(l)
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    handle: axum_server::Handle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    tracker: Option<ConnTracker>,
}

impl Server {
    /// The connection counts (for servers started by [`serve_app`]).
    pub fn connections(&self) -> Option<&ConnTracker> {
        self.tracker.as_ref()
    }

    /// The bound address, once listening.
    pub async fn listening(&self) -> Option<SocketAddr> {
        self.handle.listening().await
    }

    /// Stops accepting, gives open requests `grace` to finish, and waits.
    pub async fn shutdown(self, grace: Duration) {
        self.handle.graceful_shutdown(Some(grace));
        match tokio::time::timeout(grace + Duration::from_millis(200), self.task).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "API server ended with an error"),
            Ok(_) => {}
            Err(_) => tracing::warn!("API server did not stop in time"),
        }
    }
}

/// Serves the API over TLS on an already bound listener (must run inside a tokio runtime).
pub fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, live: Arc<Live>) -> Server {
    let handle = axum_server::Handle::new();
    let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
    let app = router(live);
    let server = axum_server::from_tcp_rustls(listener, config).handle(handle.clone());
    let task = tokio::spawn(async move { server.serve(app.into_make_service()).await });
    Server {
        handle,
        task,
        tracker: None,
    }
}

/// Serves a complete application (the dashboard of [`crate::web::app`]) over TLS, with each connection's peer
/// address available to the handlers (the dashboard's client-IP checks fail closed without it), under the
/// connection `limits` (header-read and idle timeouts, caps per IP and in total: see [`limits`]).
pub fn serve_app(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: ConnLimits,
) -> Server {
    let handle = axum_server::Handle::new();
    let tracker = ConnTracker::new(limits);
    let l = tracker.limits().clone();
    // Admission and the idle timer sit under TLS, so a refused connection costs no handshake.
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )
    .handshake_timeout(l.header_read_timeout)
    .acceptor(limits::LimitAcceptor::new(tracker.clone()));
    let mut server = axum_server::from_tcp(listener)
        .acceptor(acceptor)
        .handle(handle.clone());
    // hyper enforces no header-read timeout without a timer: this is what the attack run found missing.
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(l.header_read_timeout);
    // No HTTP/2 keep-alive pings: the idle timeout already closes a connection on which nothing moves, dead
    // peers included, and server pings would count as traffic.
    server
        .http_builder()
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(64);
    let task = tokio::spawn(async move {
        server
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await
    });
    Server {
        handle,
        task,
        tracker: Some(tracker),
    }
}

/// The host part of a `Host` header if it is a plain host name or IP literal; anything else (an attacker's odd
/// header) falls back to the bind address, so the redirect can only ever point at a well-formed host.
fn redirect_host(host: Option<&str>, fallback: &str) -> String {
    let Some(h) = host else {
        return fallback.to_string();
    };
    let name = if let Some(rest) = h.strip_prefix('[') {
        // [v6]:port → [v6]
        match rest.split_once(']') {
            Some((v6, _)) if v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':') => {
                return format!("[{v6}]");
            }
            _ => return fallback.to_string(),
        }
    } else {
        h.split(':').next().unwrap_or("")
    };
    if !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        name.to_string()
    } else {
        fallback.to_string()
    }
}

/// The plain-HTTP application of `HTTP_REDIRECT_PORT`: every request, any method or path, gets a 308 to the same
/// path on the HTTPS API. It serves no content, so nothing sensitive ever travels unencrypted.
pub fn redirect_router(https_port: u16, bind: std::net::IpAddr) -> Router {
    let fallback = match bind {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        std::net::IpAddr::V4(v4) => v4.to_string(),
    };
    Router::new().fallback(move |req: axum::extract::Request| {
        let fallback = fallback.clone();
        async move {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok());
            let host = redirect_host(host, &fallback);
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let location = format!("https://{host}:{https_port}{path}");
            match HeaderValue::from_str(&location) {
                Ok(v) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, v)]).into_response(),
                Err(_) => StatusCode::BAD_REQUEST.into_response(),
            }
        }
    })
}

/// Serves [`redirect_router`] over plain HTTP on an already bound listener. With `tracker` (the HTTPS
/// server's, see [`Server::connections`]) its connections count against the same caps and get the same
/// timeouts, so the redirect port is no second way to exhaust file descriptors.
pub fn serve_redirect(
    listener: TcpListener,
    https_port: u16,
    bind: std::net::IpAddr,
    tracker: Option<ConnTracker>,
) -> Server {
    let handle = axum_server::Handle::new();
    let app = redirect_router(https_port, bind);
    let task = match tracker.clone() {
        Some(t) => {
            let header = t.limits().header_read_timeout;
            let mut server = axum_server::from_tcp(listener)
                .acceptor(limits::LimitAcceptor::new(t))
                .handle(handle.clone());
            server
                .http_builder()
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header);
            tokio::spawn(async move { server.serve(app.into_make_service()).await })
        }
        None => {
            let server = axum_server::from_tcp(listener).handle(handle.clone());
            tokio::spawn(async move { server.serve(app.into_make_service()).await })
        }
    };
    Server {
        handle,
        task,
        tracker,
    }
}

#[cfg(test)]
mod redirect_tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn location(req: axum::http::Request<Body>) -> (StatusCode, Option<String>) {
        let r = redirect_router(8090, "127.0.0.1".parse().unwrap())
            .oneshot(req)
            .await
            .unwrap();
        let loc = r
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string());
        (r.status(), loc)
    }

    #[tokio::test]
    async fn every_request_is_redirected_to_https_and_nothing_is_served() {
        let req = axum::http::Request::get("/api/status?x=1")
            .header(header::HOST, "bot.example.com:8080")
            .body(Body::empty())
            .unwrap();
        let (code, loc) = location(req).await;
        assert_eq!(code, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            loc.as_deref(),
            Some("https://bot.example.com:8090/api/status?x=1")
        );
        // POSTs too (308 keeps the method, so a client repeats it over TLS; the body never gets an answer here).
        let req = axum::http::Request::post("/api/auth/login")
            .header(header::HOST, "[::1]:8080")
            .body(Body::from("{\"password\":\"x\"}"))
            .unwrap();
        let (code, loc) = location(req).await;
        assert_eq!(code, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(loc.as_deref(), Some("https://[::1]:8090/api/auth/login"));
    }

    #[tokio::test]
    async fn a_malformed_host_cannot_steer_the_redirect() {
        for bad in ["evil.com/x@", "a b", "\"x", "[zz]:1"] {
            let req = axum::http::Request::get("/")
                .header(header::HOST, bad)
                .body(Body::empty())
                .unwrap();
            let (_, loc) = location(req).await;
            assert_eq!(loc.as_deref(), Some("https://127.0.0.1:8090/"), "{bad}");
        }
        let req = axum::http::Request::get("/").body(Body::empty()).unwrap();
        let (_, loc) = location(req).await;
        assert_eq!(loc.as_deref(), Some("https://127.0.0.1:8090/"));
    }
}
