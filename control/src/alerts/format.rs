//! Channel payloads, rendered from an [`Alert`]'s typed fields only.
//!
//! The generic webhook gets a stable JSON document:
//! ```json
//! {"source":"aegis","instance":"vps-1","environment":"live","kind":"breaker_trip","severity":"warning",
//!  "title":"Circuit breaker tripped","message":"...","action":"...","subject":{...},"details":{...},
//!  "ts_ms":1735000000000,"suppressed":0}
//! ```
//! Telegram gets `sendMessage` JSON (`chat_id`, `text`), Discord `content`, Slack `text`.

use super::config::Channel;
use super::{Alert, Details, Subject};
use aegis_shared::event::{BreakerScope, TripReason};
use aegis_shared::TradingMode;
use serde_json::{json, Value};

/// Discord refuses `content` longer than 2000 characters.
const DISCORD_MAX: usize = 2000;

/// Context every message carries.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Which environment the bot trades in.
    pub environment: TradingMode,
    /// Host label.
    pub instance: &'a str,
    /// Alerts suppressed by the rate limit since the last delivered one.
    pub suppressed: u64,
}

fn scope_text(scope: BreakerScope) -> String {
    match scope {
        BreakerScope::Global => "global".to_string(),
        BreakerScope::Mode(m) => format!("mode {m}"),
    }
}

fn reason_text(r: TripReason) -> &'static str {
    match r {
        TripReason::HourlyLoss => "loss in the last hour reached CIRCUIT_MAX_LOSS_PER_HOUR",
        TripReason::ConsecutiveLosses => {
            "consecutive losing trades reached CIRCUIT_MAX_CONSECUTIVE_LOSSES"
        }
        TripReason::DailyLoss => "today's loss reached FUTURES_AUTOPILOT_MAX_DAILY_LOSS",
    }
}

/// UTC `YYYY-MM-DD HH:MM:SS` for a ms timestamp.
fn utc(ts_ms: u64) -> String {
    let secs = (ts_ms / 1000) as i64;
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{ts_ms} ms"),
    }
}

/// The detail sentence of an alert (may be empty).
pub fn detail_text(alert: &Alert) -> String {
    let subject = match alert.subject {
        Subject::Bot => String::new(),
        Subject::Symbol(s) => format!("symbol {s}"),
        Subject::Breaker(scope) => format!("breaker {}", scope_text(scope)),
    };
    let details = match alert.details {
        Details::None => String::new(),
        Details::Breaker {
            scope,
            reason,
            until_ms,
        } => {
            let mut s = format!("breaker {}", scope_text(scope));
            if let Some(r) = reason {
                s.push_str(": ");
                s.push_str(reason_text(r));
            }
            if let Some(u) = until_ms {
                s.push_str(&format!("; entries resume at {}", utc(u)));
            }
            s
        }
        Details::DailyLoss { loss, limit } => {
            format!("today's realized loss {loss} USD, limit {limit} USD")
        }
        Details::ErrorRate {
            errors,
            window_secs,
            threshold,
        } => format!("{errors} exchange errors in {window_secs} s (threshold {threshold})"),
        Details::Activity {
            what,
            observed,
            normal,
        } => match what {
            super::Activity::OrderRate => {
                format!("{observed} orders/min, normal about {normal}")
            }
            super::Activity::PositionSize => {
                format!("position {observed} USD, normal about {normal} USD")
            }
        },
        Details::Heartbeat { age_ms } => format!("last engine heartbeat {age_ms} ms ago"),
    };
    // Breaker details already name the breaker.
    match (subject.is_empty(), details.is_empty()) {
        (true, _) => details,
        (false, true) => subject,
        (false, false) if matches!(alert.details, Details::Breaker { .. }) => details,
        (false, false) => format!("{subject}: {details}"),
    }
}

/// The one-block human text used by Telegram, Discord and Slack.
pub fn text(alert: &Alert, ctx: &Context<'_>) -> String {
    let mut s = format!(
        "[{} {}] {}: {}",
        ctx.environment.banner(),
        ctx.instance,
        alert.severity.label(),
        alert.kind.title()
    );
    let d = detail_text(alert);
    if !d.is_empty() {
        s.push_str(" — ");
        s.push_str(&d);
    }
    s.push_str("\nAction: ");
    s.push_str(alert.kind.action());
    s.push_str("\nAt: ");
    s.push_str(&utc(alert.ts_ms));
    if ctx.suppressed > 0 {
        s.push_str(&format!(
            "\n({} earlier alert(s) suppressed by ALERT_MAX_PER_MINUTE)",
            ctx.suppressed
        ));
    }
    s
}

/// The generic webhook document.
pub fn webhook_json(alert: &Alert, ctx: &Context<'_>) -> Value {
    json!({
        "source": "aegis",
        "instance": ctx.instance,
        "environment": ctx.environment.as_str(),
        "kind": alert.kind,
        "severity": alert.severity,
        "title": alert.kind.title(),
        "message": detail_text(alert),
        "action": alert.kind.action(),
        "subject": alert.subject,
        "details": alert.details,
        "ts_ms": alert.ts_ms,
        "suppressed": ctx.suppressed,
    })
}

/// The request body for `channel`.
pub fn body(channel: &Channel, alert: &Alert, ctx: &Context<'_>) -> Value {
    match channel {
        Channel::Webhook { .. } => webhook_json(alert, ctx),
        Channel::Telegram { chat_id, .. } => json!({
            "chat_id": chat_id,
            "text": text(alert, ctx),
            "disable_web_page_preview": true,
        }),
        Channel::Discord { .. } => {
            let mut t = text(alert, ctx);
            if t.chars().count() > DISCORD_MAX {
                t = t.chars().take(DISCORD_MAX - 1).collect::<String>() + "…";
            }
            // No pings: an alert must never mention @everyone or a role, whatever its text.
            json!({ "content": t, "allowed_mentions": { "parse": [] } })
        }
        Channel::Slack { .. } => json!({ "text": text(alert, ctx) }),
    }
}
