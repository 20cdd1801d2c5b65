//! Read API (any authenticated user) and controls (admins; each one audited and sent to the engine).

use super::backend::TradesQuery;
use super::error::ApiError;
use super::session::{Admin, ClientIp, JsonBody, Session};
use super::WebState;
use aegis_shared::event::BreakerScope;
use aegis_shared::{Command, StrategyMode};
use axum::extract::{FromRequest, FromRequestParts, RawQuery, Request, State};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::IpAddr;

fn q_param(q: &Option<String>, name: &str) -> Option<String> {
    q.as_deref()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A whole-number query parameter within `range`; `default` when absent, `err` (one generic message) otherwise.
fn q_u32(
    q: &Option<String>,
    name: &str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
    err: &'static str,
) -> Result<u32, ApiError> {
    match q_param(q, name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|x| range.contains(x))
            .ok_or(ApiError::BadRequest(err)),
    }
}

pub(super) async fn status(State(s): State<WebState>, _: Session) -> Json<Value> {
    let snap = s.backend().snapshot();
    let mut body = match s.backend().status_extra() {
        Some(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    body.insert("status".into(), json!(snap.status));
    body.insert("now_ms".into(), json!(snap.now_ms));
    Json(Value::Object(body))
}

pub(super) async fn snapshot(State(s): State<WebState>, _: Session) -> Json<Value> {
    Json(json!(s.backend().snapshot()))
}

pub(super) async fn positions(State(s): State<WebState>, _: Session) -> Json<Value> {
    Json(json!({ "positions": s.backend().snapshot().positions }))
}

pub(super) async fn open_orders(State(s): State<WebState>, _: Session) -> Json<Value> {
    Json(json!({ "orders": s.backend().snapshot().open_orders }))
}

pub(super) async fn pnl(State(s): State<WebState>, _: Session) -> Json<Value> {
    Json(json!(s.backend().snapshot().pnl))
}

pub(super) async fn breakers(State(s): State<WebState>, _: Session) -> Json<Value> {
    let snap = s.backend().snapshot();
    Json(json!({ "breakers": snap.breakers, "now_ms": snap.now_ms }))
}

pub(super) async fn limits(State(s): State<WebState>, _: Session) -> Json<Value> {
    Json(json!(s.backend().snapshot().limits))
}

pub(super) async fn latency(State(s): State<WebState>, _: Session) -> Json<Value> {
    Json(json!(s.backend().snapshot().latency))
}

pub(super) async fn trades(
    State(s): State<WebState>,
    _: Session,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let page = q_u32(&q, "page", 0, 0..=1_000_000, "page must be a whole number")?;
    let limit = q_u32(&q, "limit", 50, 1..=200, "limit must be 1-200")?;
    let p = s
        .backend()
        .trades(TradesQuery { page, limit })
        .await
        .map_err(|_| ApiError::Unavailable("trade history unavailable"))?;
    Ok(Json(json!(p)))
}

pub(super) async fn audit_log(
    State(s): State<WebState>,
    _: Admin,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let limit = q_u32(&q, "limit", 100, 1..=500, "limit must be 1-500")?;
    let before = match q_param(&q, "before") {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::BadRequest("before must be an audit id"))?,
        ),
    };
    let rows = s
        .backend()
        .audit_log(limit, before)
        .await
        .map_err(|_| ApiError::Unavailable("audit trail unavailable"))?;
    Ok(Json(json!({ "entries": rows })))
}

/// Who asks for a control, from where. Extracted client IP first, then the admin session, then the body: a call
/// wrong in several ways is refused for the first, as by any other route.
pub(super) struct Caller {
    s: WebState,
    ip: IpAddr,
    admin: Admin,
}

/// A control call: its [`Caller`] and its JSON body.
pub(super) struct ControlCall<B>(Caller, B);

impl<B: DeserializeOwned + Default + Send> FromRequest<WebState> for ControlCall<B> {
    type Rejection = ApiError;
    async fn from_request(req: Request, s: &WebState) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let ClientIp(ip) = ClientIp::from_request_parts(&mut parts, s).await?;
        let admin = Admin::from_request_parts(&mut parts, s).await?;
        let JsonBody(b) = JsonBody::from_request(Request::from_parts(parts, body), s).await?;
        let s = s.clone();
        Ok(Self(Caller { s, ip, admin }, b))
    }
}

/// Sends `cmd` to the engine; a command that did not arrive is one answer whatever the control.
fn deliver(
    s: &WebState,
    cmd: Command,
    user: &str,
    ip: IpAddr,
    action: &str,
) -> Result<(), ApiError> {
    s.backend().send_command_from(cmd, user, ip).map_err(|e| {
        tracing::error!(error = %e, action, "command not delivered");
        ApiError::Unavailable("engine not reachable")
    })
}

/// Controls that only reduce risk (halt, kill) are sent even when the audit write fails — stopping must never
/// depend on a database. Controls that add risk (resume, breaker reset) are refused unless audited first.
async fn control(
    Caller { s, ip, admin }: Caller,
    cmd: Command,
    action: &str,
    detail: Value,
) -> Result<Json<Value>, ApiError> {
    let Admin(who) = admin;
    let reduces_risk = matches!(cmd, Command::Halt | Command::Kill { .. });
    let ev = super::backend::AuditEvent {
        ts_ms: crate::journal::now_ms(),
        actor: who.user.clone(),
        ip: Some(ip),
        action: action.to_string(),
        detail: detail.clone(),
    };
    if reduces_risk {
        deliver(&s, cmd, &who.user, ip, action)?;
        let audited = match s.backend().audit(ev).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, action, "audit write failed for a control that was executed");
                false
            }
        };
        return Ok(Json(
            json!({ "ok": true, "command": cmd, "audited": audited }),
        ));
    }
    s.backend().audit(ev).await.map_err(|e| {
        tracing::error!(error = %e, action, "audit unavailable: refusing control");
        ApiError::Unavailable("audit trail unavailable; control refused")
    })?;
    deliver(&s, cmd, &who.user, ip, action)?;
    Ok(Json(json!({ "ok": true, "command": cmd, "audited": true })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

fn reason_of(r: Option<String>) -> Value {
    // Free text from an operator: bounded, control characters dropped.
    let r: String = r
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    json!({ "reason": r })
}

pub(super) async fn halt(
    ControlCall(c, b): ControlCall<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    control(c, Command::Halt, "control.halt", reason_of(b.reason)).await
}

pub(super) async fn resume(
    ControlCall(c, b): ControlCall<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    control(c, Command::Resume, "control.resume", reason_of(b.reason)).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KillBody {
    #[serde(default)]
    flatten: bool,
    #[serde(default)]
    reason: Option<String>,
}

pub(super) async fn kill(
    ControlCall(c, b): ControlCall<KillBody>,
) -> Result<Json<Value>, ApiError> {
    let mut detail = reason_of(b.reason);
    detail["flatten"] = json!(b.flatten);
    let cmd = Command::Kill { flatten: b.flatten };
    control(c, cmd, "control.kill", detail).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResetBody {
    /// `global` or a mode name.
    scope: String,
    #[serde(default)]
    reason: Option<String>,
}

pub(super) async fn reset_breaker(
    ControlCall(c, b): ControlCall<ResetBody>,
) -> Result<Json<Value>, ApiError> {
    let scope = match b.scope.as_str() {
        "global" => BreakerScope::Global,
        m => BreakerScope::Mode(StrategyMode::parse(m).ok_or(ApiError::BadRequest(
            "scope must be global, ultra_fast_scalp, scalp, swing or position",
        ))?),
    };
    let mut detail = reason_of(b.reason);
    detail["scope"] = json!(b.scope);
    let cmd = Command::ResetBreaker { scope };
    control(c, cmd, "control.breaker_reset", detail).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_number_params_default_and_refuse_out_of_range_or_garbage() {
        let q = |s: &str| Some(s.to_string());
        let lim = |q: &Option<String>| q_u32(q, "limit", 50, 1..=200, "limit must be 1-200");
        assert_eq!(lim(&None), Ok(50));
        assert_eq!(lim(&q("page=3")), Ok(50));
        assert_eq!(lim(&q("page=3&limit=200")), Ok(200));
        for bad in ["limit=0", "limit=201", "limit=-1", "limit=1e2", "limit="] {
            assert_eq!(
                lim(&q(bad)),
                Err(ApiError::BadRequest("limit must be 1-200")),
                "{bad}"
            );
        }
    }
}
