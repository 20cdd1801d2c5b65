//! Middleware applied to every request, outermost first: security headers → client IP + access log → panic
//! catcher → allowlist + rate limit → body size limit → routes.

use super::error::ApiError;
use super::session::{AccessUser, ClientIp};
use super::WebState;
use crate::auth::limits::canonical;
use crate::journal::now_ms;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;

/// The Content-Security-Policy: only our own scripts, styles and connections; no inline anything; no framing.
pub const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'";

pub(super) fn harden(router: Router, state: WebState) -> Router {
    let limit = state.config().max_body_bytes;
    router
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                // The panic payload may hold anything; it goes nowhere near the client.
                tracing::error!("request handler panicked");
                ApiError::Internal.into_response()
            },
        ))
        .layer(middleware::from_fn_with_state(state, observe))
        .layer(middleware::from_fn(security_headers))
}

/// Resolves the client address: the TCP peer, or — only when the peer is a configured trusted proxy — the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(canonical)
        .collect();
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

async fn observe(State(state): State<WebState>, mut req: Request, next: Next) -> Response {
    let Some(peer) = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    else {
        tracing::error!(
            "no client address on request: serve with into_make_service_with_connect_info"
        );
        return ApiError::Internal.into_response();
    };
    let ip = client_ip(peer, req.headers(), &state.config().trusted_proxies);
    let user = AccessUser::default();
    req.extensions_mut().insert(ClientIp(ip));
    req.extensions_mut().insert(user.clone());
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    // Static assets are not API requests; everything else (including refusals) is recorded.
    if path.starts_with("/api/") || path == "/metrics" {
        let who = user.0.lock().ok().and_then(|g| g.clone());
        state
            .backend()
            .record_access(super::backend::AccessLogEntry {
                ts_ms: now_ms(),
                ip,
                user: who,
                method,
                path,
                status: resp.status().as_u16(),
                duration_us: started.elapsed().as_micros() as u64,
            });
    }
    resp
}

/// Paths that a caller on this host always reaches, past the allowlist and the per-IP rate limit: the health
/// check (`deploy/health-check.sh`, the systemd watchdog) and the local admin endpoints behind `aegis halt` —
/// the kill switch must not depend on `DASHBOARD_ALLOWED_IPS` listing loopback or on a burst from elsewhere
/// having spent a shared budget. Loopback is the resolved client address, so a request forwarded by a trusted
/// proxy on this host counts as its real origin, not as local.
fn local_bypass(ip: IpAddr, path: &str) -> bool {
    ip.is_loopback() && (path == "/api/health" || path.starts_with("/api/local/"))
}

async fn guard(State(state): State<WebState>, req: Request, next: Next) -> Response {
    let Some(ClientIp(ip)) = req.extensions().get::<ClientIp>().copied() else {
        return ApiError::Internal.into_response();
    };
    if !local_bypass(ip, req.uri().path()) {
        if !state.config().allowed_ips.allows(ip) {
            return ApiError::Forbidden("access denied").into_response();
        }
        if let Err(wait) = state.rate().check(ip) {
            return ApiError::TooManyRequests(wait).into_response();
        }
    }
    // Refuse a declared oversized body up front, with our JSON error (the body-limit layer behind this still
    // cuts off bodies that lie about or omit their length).
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.config().max_body_bytes as u64) {
        return ApiError::PayloadTooLarge.into_response();
    }
    next.run(req).await
}

async fn security_headers(req: Request, next: Next) -> Response {
    let is_api = req.uri().path().starts_with("/api/") || req.uri().path() == "/metrics";
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, k: HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000; includeSubDomains",
    );
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(
        h,
        HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=(), payment=()",
    );
    set(
        h,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        h,
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    // Overriding, not defaulting: API answers (the SSE stream's `no-cache` included) carry account data and
    // must never be kept by a browser or proxy cache.
    if is_api {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.9"),
        );
        // From the proxy: the right-most untrusted hop (a client cannot spoof by prepending entries).
        assert_eq!(
            client_ip("127.0.0.1".parse().unwrap(), &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // From anyone else: the header is ignored.
        assert_eq!(
            client_ip("198.51.100.1".parse().unwrap(), &h, &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip("127.0.0.1".parse().unwrap(), &h, &[]),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
