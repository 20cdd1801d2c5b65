//! `GET /metrics` in the Prometheus text format (version 0.0.4), for loopback scrapers or authenticated
//! callers (bearer token or session).

use super::backend::{BreakerView, DashboardSnapshot};
use super::error::ApiError;
use super::session::{authenticate, ClientIp};
use super::WebState;
use aegis_shared::event::BreakerScope;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use std::fmt::Write;

pub(super) async fn metrics(
    State(state): State<WebState>,
    ClientIp(ip): ClientIp,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !ip.is_loopback() {
        authenticate(&state, &method, &uri, &headers).await?;
    }
    let body = render(&state.backend().snapshot());
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(r)
}

fn scope_label(s: &BreakerScope) -> &'static str {
    match s {
        BreakerScope::Global => "global",
        BreakerScope::Mode(m) => m.as_str(),
    }
}

fn money(s: &str) -> f64 {
    // Display only: Prometheus values are floats by definition.
    s.parse().unwrap_or(0.0)
}

/// Renders the snapshot as Prometheus text.
pub fn render(s: &DashboardSnapshot) -> String {
    let mut o = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, rows: &[(String, String)]| {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
        for (labels, v) in rows {
            if labels.is_empty() {
                let _ = writeln!(o, "{name} {v}");
            } else {
                let _ = writeln!(o, "{name}{{{labels}}} {v}");
            }
        }
    };
    let one = |v: String| vec![(String::new(), v)];
    let l = &s.latency;
    metric(
        "aegis_engine_latency_ns",
        "gauge",
        "Tick-to-decision latency over the last stats interval, nanoseconds.",
        &[
            ("quantile=\"0.5\"".into(), l.p50_ns.to_string()),
            ("quantile=\"0.99\"".into(), l.p99_ns.to_string()),
            ("quantile=\"0.999\"".into(), l.p999_ns.to_string()),
            ("quantile=\"1\"".into(), l.max_ns.to_string()),
        ],
    );
    metric(
        "aegis_queue_depth",
        "gauge",
        "Events waiting in the engine-to-control queues.",
        &[
            (
                "queue=\"critical\"".into(),
                s.queue_depth_critical.to_string(),
            ),
            ("queue=\"stats\"".into(), s.queue_depth_stats.to_string()),
        ],
    );
    let st = s.stats;
    type Stat = fn(&aegis_shared::event::EngineStats) -> u64;
    let c = |f: Stat| st.as_ref().map(f).unwrap_or(0).to_string();
    let engine_stats: [(&str, &str, &str, Stat); 6] = [
        (
            "aegis_messages_total",
            "counter",
            "Market messages processed.",
            |x| x.messages,
        ),
        (
            "aegis_parse_errors_total",
            "counter",
            "Market messages that failed to parse.",
            |x| x.parse_errors,
        ),
        ("aegis_orders_total", "counter", "Orders sent.", |x| {
            x.orders
        }),
        ("aegis_fills_total", "counter", "Fills received.", |x| {
            x.fills
        }),
        (
            "aegis_dropped_stats_total",
            "counter",
            "Statistics events dropped on a full queue.",
            |x| x.dropped_stats,
        ),
        (
            "aegis_feed_age_ms",
            "gauge",
            "Age of the newest market message, ms.",
            |x| x.feed_age_ms,
        ),
    ];
    for (name, kind, help, f) in engine_stats {
        metric(name, kind, help, &one(c(f)));
    }
    let denials: Vec<(String, String)> = st
        .map(|x| x.denials)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("reason=\"{i}\""), n.to_string()))
        .collect();
    metric(
        "aegis_risk_denials_total",
        "counter",
        "Risk-gate denials by engine reason code.",
        &denials,
    );
    let per_breaker = |v: fn(&BreakerView) -> String| -> Vec<(String, String)> {
        s.breakers
            .iter()
            .map(|b| (format!("scope=\"{}\"", scope_label(&b.scope)), v(b)))
            .collect()
    };
    metric(
        "aegis_breaker_tripped",
        "gauge",
        "1 while a circuit breaker is tripped.",
        &per_breaker(|b| u8::from(b.tripped).to_string()),
    );
    metric(
        "aegis_breaker_cooldown_seconds",
        "gauge",
        "Cooldown left on a tripped breaker.",
        &per_breaker(|b| (b.cooldown_left_ms as f64 / 1000.0).to_string()),
    );
    metric(
        "aegis_engine_halted",
        "gauge",
        "1 while new entries are halted.",
        &one(u8::from(s.status.engine != "running").to_string()),
    );
    metric(
        "aegis_open_positions",
        "gauge",
        "Open positions.",
        &one(s.positions.len().to_string()),
    );
    metric(
        "aegis_open_orders",
        "gauge",
        "Open orders.",
        &one(s.open_orders.len().to_string()),
    );
    metric(
        "aegis_pnl_total_usd",
        "gauge",
        "Realized PnL net of fees since the start of records.",
        &one(money(&s.pnl.total).to_string()),
    );
    metric(
        "aegis_pnl_day_usd",
        "gauge",
        "Realized PnL net of fees, current UTC day.",
        &one(money(&s.pnl.day).to_string()),
    );
    metric(
        "aegis_heartbeat_age_ms",
        "gauge",
        "Age of the last engine heartbeat, ms (-1 before the first).",
        &one(s
            .status
            .heartbeat_age_ms
            .map(|a| a as i64)
            .unwrap_or(-1)
            .to_string()),
    );
    o
}
