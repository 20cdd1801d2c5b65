//! Who is calling: the session extractors ([`Session`], [`Admin`]), CSRF and origin checks, cookies, and the
//! JSON body extractor that maps every rejection to a generic error.

use super::error::ApiError;
use super::WebState;
use crate::auth::{Claims, Role, UserRecord};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use serde::de::DeserializeOwned;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Session cookie (HttpOnly). The `__Host-` prefix makes browsers insist on Secure, Path=/ and no Domain.
pub const SESSION_COOKIE: &str = "__Host-aegis_session";
/// CSRF cookie (readable by the page, which echoes it in [`CSRF_HEADER`]).
pub const CSRF_COOKIE: &str = "__Host-aegis_csrf";
/// Header carrying the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The client's address after proxy resolution (set by the outer middleware).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Slot the session extractor fills so the access log can say who made the request.
#[derive(Debug, Clone, Default)]
pub struct AccessUser(pub Arc<Mutex<Option<String>>>);

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Session {
    /// User name (`local` when auth is disabled).
    pub user: String,
    /// Current role (from the store, not just the token).
    pub role: Role,
    /// Token claims (`None` when auth is disabled).
    pub claims: Option<Claims>,
}

/// An authenticated admin.
#[derive(Debug, Clone)]
pub struct Admin(pub Session);

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, tok) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(tok.trim())
}

/// Browsers send `Origin` on cross-site POSTs: when present it must name this host. Over HTTP/2 the host is
/// the `:authority` pseudo-header, which hyper puts into the URI rather than a `Host` header.
fn origin_ok(uri: &Uri, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok()));
    let Some(host) = host else {
        return false;
    };
    origin
        .strip_prefix("https://")
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

/// Is this token still the account's token (same uid, same generation)?
pub fn bound_to(claims: &Claims, user: &UserRecord) -> bool {
    claims.uid == user.uid && claims.gen == user.token_gen
}

/// Authenticates a request: bearer token or session cookie; for cookie sessions, unsafe methods also need a
/// valid CSRF header and a same-origin `Origin` (when the browser sends one).
pub async fn authenticate(
    state: &WebState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Session, ApiError> {
    let Some(tokens) = state.tokens() else {
        return Ok(Session {
            user: "local".into(),
            role: Role::Admin,
            claims: None,
        });
    };
    let (token, via_cookie) = match bearer(headers) {
        Some(t) => (t, false),
        None => (
            cookie(headers, SESSION_COOKIE).ok_or(ApiError::Unauthorized)?,
            true,
        ),
    };
    let claims = tokens.verify(token).map_err(|_| ApiError::Unauthorized)?;
    let users = state.users();
    if users
        .is_revoked(&claims.jti)
        .await
        .map_err(|_| ApiError::Unavailable("user store unavailable"))?
    {
        return Err(ApiError::Unauthorized);
    }
    let user = users
        .find(&claims.sub)
        .await
        .map_err(|_| ApiError::Unavailable("user store unavailable"))?
        .ok_or(ApiError::Unauthorized)?;
    // The name alone proves nothing: the account may have been deleted and re-created (another uid), or its
    // role, password or state changed since (another generation). Either way this token is not its token.
    if !bound_to(&claims, &user) {
        return Err(ApiError::Unauthorized);
    }
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if via_cookie && !safe {
        let csrf = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !tokens.csrf_ok(&claims.jti, csrf) || !origin_ok(uri, headers) {
            return Err(ApiError::Forbidden("missing or invalid CSRF token"));
        }
    }
    Ok(Session {
        user: user.username,
        role: user.role,
        claims: Some(claims),
    })
}

impl FromRequestParts<WebState> for Session {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, ApiError> {
        let s = authenticate(state, &parts.method, &parts.uri, &parts.headers).await?;
        if let Some(slot) = parts.extensions.get::<AccessUser>() {
            if let Ok(mut g) = slot.0.lock() {
                *g = Some(s.user.clone());
            }
        }
        Ok(s)
    }
}

impl FromRequestParts<WebState> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, ApiError> {
        let s = Session::from_request_parts(parts, state).await?;
        if s.role != Role::Admin {
            return Err(ApiError::Forbidden("admin role required"));
        }
        Ok(Admin(s))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Set by the outermost middleware; missing means the router was mounted without it: fail closed.
        parts
            .extensions
            .get::<ClientIp>()
            .copied()
            .ok_or(ApiError::Internal)
    }
}

/// A JSON body: requires `Content-Type: application/json`, respects the body limit (413), and answers any
/// malformed input with one generic 400. An empty body yields `T::default()`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json_ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            });
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("could not read request body")
            }
        })?;
        if bytes.is_empty() {
            return Ok(Self(T::default()));
        }
        // Requiring JSON also keeps plain HTML forms (which cannot set this type without CORS) out.
        if json_ct != Some(true) {
            return Err(ApiError::UnsupportedMediaType);
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|_| ApiError::BadRequest("malformed JSON body"))
    }
}

/// `Set-Cookie` values for a new session.
pub fn session_cookies(token: &str, csrf: &str, max_age_secs: u64) -> [HeaderValue; 2] {
    let a = format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Strict"
    );
    let b =
        format!("{CSRF_COOKIE}={csrf}; Path=/; Max-Age={max_age_secs}; Secure; SameSite=Strict");
    [
        HeaderValue::from_str(&a).unwrap_or(HeaderValue::from_static("")),
        HeaderValue::from_str(&b).unwrap_or(HeaderValue::from_static("")),
    ]
}

/// `Set-Cookie` values that delete the session cookies.
pub fn clear_cookies() -> [HeaderValue; 2] {
    [
        HeaderValue::from_static(
            "__Host-aegis_session=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict",
        ),
        HeaderValue::from_static("__Host-aegis_csrf=; Path=/; Max-Age=0; Secure; SameSite=Strict"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cookies_and_bearer() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-aegis_session=tok; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "c"), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer xyz"),
        );
        assert_eq!(bearer(&h), Some("xyz"));
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8090"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://127.0.0.1:8090"),
        );
        let plain = Uri::from_static("/api/control/halt");
        assert!(origin_ok(&plain, &h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!origin_ok(&plain, &h));
        // HTTP/2: no Host header, the authority is in the URI.
        h.remove(header::HOST);
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://127.0.0.1:8090"),
        );
        assert!(origin_ok(
            &Uri::from_static("https://127.0.0.1:8090/api/control/halt"),
            &h
        ));
        assert!(!origin_ok(&plain, &h));
    }
}
