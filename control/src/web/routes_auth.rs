//! `/api/auth/*` and `/api/users`.

use super::backend::AuditEvent;
use super::error::ApiError;
use super::session::{
    authenticate, clear_cookies, session_cookies, Admin, ClientIp, JsonBody, Session,
};
use super::WebState;
use crate::auth::password::{check_password_policy, MAX_PASSWORD_LEN};
use crate::auth::{Role, StoreError, UserChange, UserRecord};
use crate::journal::now_ms;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::net::IpAddr;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RegisterBody {
    username: String,
    password: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    role: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
    username: String,
    password: String,
    /// Also return the token in the body, for CLI/API clients that send `Authorization: Bearer`.
    #[serde(default)]
    bearer: bool,
}

/// Normalises and checks a user name: 3–32 of `[a-z0-9_.-]` after lower-casing.
fn normalise_username(u: &str) -> Option<String> {
    let u = u.trim().to_ascii_lowercase();
    let ok = (3..=32).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    ok.then_some(u)
}

pub(super) async fn audit(
    state: &WebState,
    actor: &str,
    ip: IpAddr,
    action: &str,
    detail: serde_json::Value,
) {
    let ev = AuditEvent {
        ts_ms: now_ms(),
        actor: actor.to_string(),
        ip: Some(ip),
        action: action.to_string(),
        detail,
    };
    if let Err(e) = state.backend().audit(ev).await {
        tracing::error!(action, error = %e, "audit write failed");
    }
}

pub(super) async fn register(
    State(state): State<WebState>,
    ClientIp(ip): ClientIp,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RegisterBody>,
) -> Result<Response, ApiError> {
    if state.tokens().is_none() {
        return Err(ApiError::Conflict(
            "authentication is disabled (AUTH_ENABLED=false)",
        ));
    }
    let username = normalise_username(&body.username).ok_or(ApiError::BadRequest(
        "username must be 3-32 characters of a-z, 0-9, _ . -",
    ))?;
    check_password_policy(&body.password, &username)
        .map_err(|e| ApiError::BadRequest(e.message()))?;
    let email = body.email.filter(|e| !e.trim().is_empty());
    if email
        .as_ref()
        .is_some_and(|e| e.len() > 254 || !e.contains('@'))
    {
        return Err(ApiError::BadRequest("email is not valid"));
    }
    let users = state.users();
    let count = users
        .count()
        .await
        .map_err(|_| ApiError::Unavailable("user store unavailable"))?;
    let (actor, role, first) = if count == 0 {
        // Bootstrap: the first account becomes admin. Only from this host, or from the allowlist when one is
        // configured, so nobody on the internet can race the operator to it.
        let cfg = state.config();
        let local = ip.is_loopback() || (!cfg.allowed_ips.is_open() && cfg.allowed_ips.allows(ip));
        if !local {
            return Err(ApiError::Forbidden(
                "the first user must be registered from the server itself (loopback) or an allowed IP",
            ));
        }
        ("bootstrap".to_string(), Role::Admin, true)
    } else {
        let s = authenticate(&state, &method, &uri, &headers).await?;
        if s.role != Role::Admin {
            return Err(ApiError::Forbidden("admin role required"));
        }
        let role = match body.role.as_deref() {
            None => Role::Viewer,
            Some(r) => {
                Role::parse(r).ok_or(ApiError::BadRequest("role must be admin or viewer"))?
            }
        };
        (s.user, role, false)
    };
    let hash = state
        .hasher()
        .hash(body.password)
        .await
        .map_err(|_| ApiError::Internal)?;
    // A new account, with a new uid: tokens of an earlier user of this name are not this user's.
    let rec = UserRecord::new(username.clone(), role, hash, email, now_ms());
    match users.insert(rec, first).await {
        Ok(()) => {}
        Err(StoreError::Exists) => return Err(ApiError::Conflict("username is taken")),
        // Lost a race for the first account: the winner is admin; this caller needs an admin now.
        Err(StoreError::NotEmpty) => return Err(ApiError::Unauthorized),
        Err(e) => {
            tracing::error!(error = %e, "user store insert failed");
            return Err(ApiError::Unavailable("user store unavailable"));
        }
    }
    audit(
        &state,
        &actor,
        ip,
        "auth.register",
        json!({ "username": username, "role": role.as_str() }),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "username": username, "role": role })),
    )
        .into_response())
}

pub(super) async fn login(
    State(state): State<WebState>,
    ClientIp(ip): ClientIp,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, ApiError> {
    let Some(tokens) = state.tokens() else {
        return Err(ApiError::Conflict(
            "authentication is disabled (AUTH_ENABLED=false)",
        ));
    };
    let want_bearer = body.bearer;
    // Malformed names are still counted against the IP and answered like any failure.
    let valid_name = normalise_username(&body.username);
    let account = valid_name.clone().unwrap_or_else(|| "<invalid>".into());
    let guard = state.login_guard();
    if let Err(wait) = guard.check(ip, &account) {
        return Err(ApiError::TooManyRequests(wait));
    }
    if body.password.len() > MAX_PASSWORD_LEN * 4 {
        guard.failure(ip, &account);
        return Err(ApiError::BadCredentials);
    }
    let user = match &valid_name {
        Some(n) => state
            .users()
            .find(n)
            .await
            .map_err(|_| ApiError::Unavailable("user store unavailable"))?,
        None => None,
    };
    // Unknown user: verify against the dummy hash, so both failures take the same time and say the same thing.
    let ok = state
        .hasher()
        .verify(
            body.password,
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await;
    let user = match (ok, user) {
        (true, Some(u)) => u,
        _ => {
            let locked = guard.failure(ip, &account);
            audit(
                &state,
                "anonymous",
                ip,
                "auth.login_failed",
                json!({ "username": account, "locked_for_s": locked.map(|d| d.as_secs()) }),
            )
            .await;
            return Err(ApiError::BadCredentials);
        }
    };
    guard.success(&account);
    let (token, claims) = tokens.issue(&user).map_err(|_| ApiError::Internal)?;
    let csrf = tokens.csrf_for(&claims.jti);
    audit(
        &state,
        &user.username,
        ip,
        "auth.login",
        json!({ "role": user.role.as_str() }),
    )
    .await;
    let mut out = json!({
        "username": user.username,
        "role": user.role,
        "csrf_token": csrf,
        "expires_at": claims.exp,
    });
    if want_bearer {
        out["token"] = json!(token);
    }
    let mut resp = Json(out).into_response();
    for c in session_cookies(&token, &csrf, tokens.expiry().as_secs()) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

pub(super) async fn logout(
    State(state): State<WebState>,
    ClientIp(ip): ClientIp,
    session: Session,
) -> Result<Response, ApiError> {
    if let Some(c) = &session.claims {
        state
            .users()
            .revoke(&c.jti, c.exp)
            .await
            .map_err(|_| ApiError::Unavailable("user store unavailable"))?;
    }
    audit(&state, &session.user, ip, "auth.logout", json!({})).await;
    let mut resp = Json(json!({ "ok": true })).into_response();
    for c in clear_cookies() {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

pub(super) async fn me(State(state): State<WebState>, session: Session) -> Json<serde_json::Value> {
    let csrf = match (state.tokens(), &session.claims) {
        (Some(t), Some(c)) => Some(t.csrf_for(&c.jti)),
        _ => None,
    };
    Json(json!({
        "username": session.user,
        "role": session.role,
        "csrf_token": csrf,
        "expires_at": session.claims.as_ref().map(|c| c.exp),
        "auth_enabled": state.tokens().is_some(),
    }))
}

pub(super) async fn users(
    State(state): State<WebState>,
    _admin: Admin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list = state
        .users()
        .list()
        .await
        .map_err(|_| ApiError::Unavailable("user store unavailable"))?;
    let out: Vec<_> = list
        .into_iter()
        .map(|u| json!({ "username": u.username, "role": u.role, "created_ms": u.created_ms }))
        .collect();
    Ok(Json(json!({ "users": out })))
}

fn store_down(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "user store write failed");
    ApiError::Unavailable("user store unavailable")
}

/// `DELETE /api/users/{username}` (admin). The account's tokens die with it, and a user registered later under
/// the same name is a new account that none of them fits.
pub(super) async fn delete_user(
    State(state): State<WebState>,
    ClientIp(ip): ClientIp,
    Path(name): Path<String>,
    Admin(admin): Admin,
) -> Result<Response, ApiError> {
    let username = normalise_username(&name).ok_or(ApiError::NotFound)?;
    if username == admin.user {
        return Err(ApiError::Conflict(
            "you cannot delete your own account; ask another admin",
        ));
    }
    let gone = state
        .users()
        .delete(&username)
        .await
        .map_err(store_down)?
        .ok_or(ApiError::NotFound)?;
    audit(
        &state,
        &admin.user,
        ip,
        "auth.user_delete",
        json!({ "username": gone.username, "role": gone.role.as_str() }),
    )
    .await;
    Ok(Json(json!({ "ok": true, "username": gone.username })).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateBody {
    #[serde(default)]
    role: Option<String>,
    /// A new password set by the admin (a reset); the user's sessions end.
    #[serde(default)]
    password: Option<String>,
}

/// `PATCH /api/users/{username}` (admin): change the role and/or reset the password. Either ends every
/// session of that user (the token generation moves on).
pub(super) async fn update_user(
    State(state): State<WebState>,
    ClientIp(ip): ClientIp,
    Path(name): Path<String>,
    admin: Admin,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<Response, ApiError> {
    let Admin(admin) = admin;
    let username = normalise_username(&name).ok_or(ApiError::NotFound)?;
    let role = match body.role.as_deref() {
        None => None,
        Some(r) => {
            Some(Role::parse(r).ok_or(ApiError::BadRequest("role must be admin or viewer"))?)
        }
    };
    if role.is_none() && body.password.is_none() {
        return Err(ApiError::BadRequest("send a role, a password, or both"));
    }
    if username == admin.user && role.is_some_and(|r| r != Role::Admin) {
        return Err(ApiError::Conflict(
            "you cannot take the admin role from yourself; ask another admin",
        ));
    }
    let password_hash = match body.password {
        None => None,
        Some(pw) => {
            check_password_policy(&pw, &username).map_err(|e| ApiError::BadRequest(e.message()))?;
            Some(
                state
                    .hasher()
                    .hash(pw)
                    .await
                    .map_err(|_| ApiError::Internal)?,
            )
        }
    };
    let reset = password_hash.is_some();
    let u = state
        .users()
        .update(
            &username,
            UserChange {
                role,
                password_hash,
            },
        )
        .await
        .map_err(store_down)?
        .ok_or(ApiError::NotFound)?;
    audit(
        &state,
        &admin.user,
        ip,
        "auth.user_update",
        json!({ "username": u.username, "role": u.role.as_str(), "password_reset": reset }),
    )
    .await;
    Ok(Json(json!({ "username": u.username, "role": u.role })).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// `POST /api/auth/password`: a user changes their own password (the current one is required and counted by the
/// login lockout like a login). Every session of the user ends, this one included: sign in again.
pub(super) async fn change_password(
    State(state): State<WebState>,
    ClientIp(ip): ClientIp,
    session: Session,
    JsonBody(body): JsonBody<PasswordBody>,
) -> Result<Response, ApiError> {
    if session.claims.is_none() {
        return Err(ApiError::Conflict(
            "authentication is disabled (AUTH_ENABLED=false)",
        ));
    }
    let guard = state.login_guard();
    if let Err(wait) = guard.check(ip, &session.user) {
        return Err(ApiError::TooManyRequests(wait));
    }
    let current = state
        .users()
        .find(&session.user)
        .await
        .map_err(|_| ApiError::Unavailable("user store unavailable"))?
        .ok_or(ApiError::Unauthorized)?;
    if body.current_password.len() > MAX_PASSWORD_LEN * 4
        || !state
            .hasher()
            .verify(body.current_password, Some(current.password_hash))
            .await
    {
        guard.failure(ip, &session.user);
        return Err(ApiError::BadCredentials);
    }
    check_password_policy(&body.new_password, &session.user)
        .map_err(|e| ApiError::BadRequest(e.message()))?;
    let hash = state
        .hasher()
        .hash(body.new_password)
        .await
        .map_err(|_| ApiError::Internal)?;
    state
        .users()
        .update(
            &session.user,
            UserChange {
                role: None,
                password_hash: Some(hash),
            },
        )
        .await
        .map_err(store_down)?
        .ok_or(ApiError::Unauthorized)?;
    audit(&state, &session.user, ip, "auth.password_change", json!({})).await;
    let mut resp = Json(json!({ "ok": true, "sign_in_again": true })).into_response();
    for c in clear_cookies() {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}
