//! What the control plane knows about the running bot, shared between the pump thread (writer) and the API.

use crate::journal::Ledger;
use crate::journal::{now_ms, JournalStats};
use aegis_shared::event::{
    BreakerChange, BreakerScope, EngineEvent, EngineState, EngineStats, FeedState, HaltReason,
};
use aegis_shared::TradingMode;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The engine counts as down when its last heartbeat is older than this.
pub const HEARTBEAT_DOWN_AFTER: Duration = Duration::from_secs(2);

/// A read model fed with every critical event after the ledger: the dashboard's `web::model::LiveModel`. A trait,
/// so the state does not import the web layer above it.
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// Applies one event (already journaled).
    fn apply(&self, e: &EngineEvent);
}

/// What `/api/health` shows about the protective stops. Kept here, with the state it is part of, so `state` does
/// not import the exchange module that writes it.
#[derive(Debug, Default)]
pub struct StopsHealth {
    inner: Mutex<HealthView>,
}

/// The stop manager's view ([`crate::exchange::stops`] writes it).
#[derive(Debug, Default, Clone)]
pub(crate) struct HealthView {
    pub(crate) active: bool,
    pub(crate) paused_by_kill: bool,
    pub(crate) resting: BTreeMap<String, Value>,
    pub(crate) unprotected: BTreeMap<String, String>,
}

impl StopsHealth {
    /// Updates the view (the stop manager, [`crate::exchange::stops`]).
    pub(crate) fn set(&self, f: impl FnOnce(&mut HealthView)) {
        let mut v = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut v);
    }

    /// The kill switch holds: no stop rests and none is placed; every symbol in `positions` is unprotected.
    pub(crate) fn paused_by_kill(&self, positions: impl Iterator<Item = String>) {
        self.set(|v| {
            v.paused_by_kill = true;
            v.resting.clear();
            v.unprotected = positions
                .map(|s| (s, "kill switch: no stop until resumed".into()))
                .collect();
        });
    }

    /// After a manager's round: the stops resting now, and the symbols with a position but no stop (each keeps
    /// the reason a failure gave it, else "stop not placed yet").
    pub(crate) fn publish(
        &self,
        resting: BTreeMap<String, Value>,
        missing: impl Iterator<Item = String>,
    ) {
        let prev = self.unprotected();
        let unprotected = missing
            .map(|k| {
                let why = prev
                    .get(&k)
                    .cloned()
                    .unwrap_or_else(|| "stop not placed yet".into());
                (k, why)
            })
            .collect();
        self.set(|v| {
            v.paused_by_kill = false;
            v.resting = resting;
            v.unprotected = unprotected;
        });
    }

    /// Symbols with an open position and no stop resting, with why.
    pub fn unprotected(&self) -> BTreeMap<String, String> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unprotected
            .clone()
    }

    /// The `protective_stops` object of `/api/health` (`None` while no manager runs: paper mode).
    pub fn json(&self) -> Option<Value> {
        let v = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        v.active.then(|| {
            json!({"paused_by_kill_switch": v.paused_by_kill, "resting": v.resting,
                   "unprotected": v.unprotected})
        })
    }
}

/// Facts fixed for the whole run.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// `TRADING_MODE`.
    pub trading_mode: TradingMode,
    /// Human description of the environment.
    pub environment: &'static str,
    /// Feed description (`sim (seed 1, 1000 msg/s)`, `replay FILE x10`).
    pub feed: String,
    /// Whether `DATABASE_URL` is set.
    pub database_configured: bool,
    /// Client-order-id session of this run.
    pub session_id: u64,
    /// Symbols traded.
    pub symbols: Vec<String>,
}

/// Mutable view, updated by the pump.
#[derive(Debug)]
pub struct View {
    /// Journal-derived state.
    pub ledger: Ledger,
    /// Engine state as last reported in this run (`None` until the engine says something).
    pub engine_state: Option<EngineState>,
    /// When the engine last proved it is alive (heartbeat or stats).
    pub last_alive: Option<Instant>,
    /// Last heartbeat sequence number.
    pub heartbeat_seq: u64,
    /// Last statistics and when they arrived.
    pub stats: Option<(EngineStats, Instant)>,
    /// Statistics events received.
    pub stats_received: u64,
}

/// Shared state: a short-held mutex for the view plus lock-free journal counters.
#[derive(Debug)]
pub struct Live {
    view: Mutex<View>,
    /// Journal counters.
    pub journal: Arc<JournalStats>,
    /// Run facts.
    pub info: RunInfo,
    /// Process start.
    pub started: Instant,
    /// The dashboard's read model, fed with every event after the ledger (so after the journal write).
    dashboard: OnceLock<Arc<dyn EventSink>>,
    /// The protective stops on the exchange ([`crate::exchange::stops`]), for `/api/health`.
    pub stops: StopsHealth,
}

impl Live {
    /// Shared state starting from a replayed ledger.
    pub fn new(ledger: Ledger, journal: Arc<JournalStats>, info: RunInfo) -> Arc<Self> {
        Arc::new(Self {
            view: Mutex::new(View {
                ledger,
                engine_state: None,
                last_alive: None,
                heartbeat_seq: 0,
                stats: None,
                stats_received: 0,
            }),
            journal,
            info,
            started: Instant::now(),
            dashboard: OnceLock::new(),
            stops: Default::default(),
        })
    }

    /// Feeds `model` with every event applied from now on (once; later calls are ignored).
    pub fn attach_dashboard(&self, model: Arc<dyn EventSink>) {
        let _ = self.dashboard.set(model);
    }

    /// Locks the view. A panic while holding it cannot leave it inconsistent in a way that matters for display,
    /// so a poisoned lock is used as is.
    pub fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies critical events (already journaled) to the view.
    pub fn apply_critical(&self, events: &[EngineEvent]) {
        let mut v = self.view();
        for e in events {
            v.ledger.apply_event(e);
            if let EngineEvent::State { state, .. } = e {
                v.engine_state = Some(*state);
            }
        }
        drop(v);
        if let Some(m) = self.dashboard.get() {
            for e in events {
                m.apply(e);
            }
        }
    }

    /// Applies a statistics event.
    pub fn apply_stat(&self, e: &EngineEvent) {
        let mut v = self.view();
        let now = Instant::now();
        match e {
            EngineEvent::Heartbeat { seq, .. } => {
                v.heartbeat_seq = *seq;
                v.last_alive = Some(now);
            }
            EngineEvent::Stats(s) => {
                v.stats = Some((*s, now));
                v.stats_received += 1;
                v.last_alive = Some(now);
            }
            // Critical events never arrive here; if one did, it is state and goes through the ledger.
            other => v.ledger.apply_event(other),
        }
        drop(v);
        if let Some(m) = self.dashboard.get() {
            m.apply(e);
        }
    }

    /// The engine has reported `Stopped`.
    pub fn engine_stopped(&self) -> bool {
        matches!(self.view().engine_state, Some(EngineState::Stopped))
    }

    /// `/api/health` body and whether the bot is up (HTTP 200) or down (503).
    pub fn health(&self) -> (bool, Value) {
        let now = Instant::now();
        let v = self.view();
        let hb_age = v.last_alive.map(|t| now.duration_since(t));
        let engine_state = state_name(v.engine_state);
        let (feed_state, feed_age) = match &v.stats {
            Some((s, at)) => (
                feed_name(s.feed),
                Some(s.feed_age_ms + now.duration_since(*at).as_millis() as u64),
            ),
            None => ("unknown", None),
        };
        let j = &self.journal;
        let journal_failed = j.failed.load(Ordering::Acquire);
        let last_fsync_age = now_ms().saturating_sub(j.last_fsync_ms.load(Ordering::Relaxed));
        let tripped = v.ledger.tripped_breakers(now_ms());
        let mut reasons: Vec<&str> = Vec::new();
        let mut down = false;
        match hb_age {
            None => {
                down = true;
                reasons.push("no engine heartbeat yet");
            }
            Some(a) if a > HEARTBEAT_DOWN_AFTER => {
                down = true;
                reasons.push("engine heartbeat is stale");
            }
            _ => {}
        }
        if matches!(v.engine_state, Some(EngineState::Stopped)) {
            down = true;
            reasons.push("engine stopped");
        }
        if journal_failed {
            down = true;
            reasons.push("journal writes are failing");
        }
        let mut degraded = false;
        if matches!(v.engine_state, Some(EngineState::Halted { .. })) {
            degraded = true;
            reasons.push("engine halted: no new entries");
        }
        if feed_state != "live" {
            degraded = true;
            reasons.push("market data feed is not live");
        }
        if !tripped.is_empty() {
            degraded = true;
            reasons.push("circuit breaker tripped");
        }
        let stops = self.stops.json();
        if !self.stops.unprotected().is_empty() {
            degraded = true;
            reasons.push("open position without a protective stop on the exchange");
        }
        let status = if down {
            "down"
        } else if degraded {
            "degraded"
        } else {
            "ok"
        };
        let last_error = j.last_error.lock().ok().and_then(|e| e.clone());
        let body = json!({
            "status": status,
            "reasons": reasons,
            "mode": self.info.trading_mode.banner(),
            "engine": {
                "state": engine_state,
                "halt_reason": halt_reason(v.engine_state),
                "heartbeat_age_ms": hb_age.map(|a| a.as_millis() as u64),
                "heartbeat_seq": v.heartbeat_seq,
            },
            "feed": { "state": feed_state, "age_ms": feed_age },
            "journal": {
                "state": if journal_failed { "failing" } else { "ok" },
                "records": j.records.load(Ordering::Relaxed),
                "durable_offset": j.durable_offset(),
                "last_fsync_age_ms": last_fsync_age,
                "last_error": if journal_failed { last_error } else { None },
            },
            "database": if self.info.database_configured { "configured, not connected (persistence not implemented yet)" } else { "not configured" },
            "breaker": breakers_json(&v.ledger, &tripped),
        });
        let mut body = body;
        if let Some(st) = stops {
            body["protective_stops"] = st;
        }
        (!down, body)
    }

    /// `/api/status` body.
    pub fn status(&self) -> Value {
        let v = self.view();
        let l = &v.ledger;
        let positions: Vec<Value> = l
            .positions
            .values()
            .map(|p| {
                json!({
                    "symbol": p.symbol,
                    "mode": p.mode,
                    "qty": p.qty.to_string(),
                    "entry_price": p.entry_price.to_string(),
                    "realized_pnl": p.realized_pnl.to_string(),
                    "fees": p.fees.to_string(),
                    "updated_ms": p.ts_ms,
                })
            })
            .collect();
        let stats = v.stats.as_ref().map(|(s, _)| StatsView::from(s));
        json!({
            "mode": self.info.trading_mode.banner(),
            "trading_mode": self.info.trading_mode,
            "environment": self.info.environment,
            "feed": self.info.feed,
            "symbols": self.info.symbols,
            "session_id": self.info.session_id,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs(),
            "fleet": crate::fleet::guard::status_json(),
            "engine": {
                "state": state_name(v.engine_state),
                "halt_reason": halt_reason(v.engine_state),
            },
            "positions": positions,
            "open_positions": l.open_positions().count(),
            "pnl": {
                "realized": l.realized_pnl.to_string(),
                "fees": l.fees.to_string(),
                "net": l.realized_pnl.saturating_sub(l.fees).to_string(),
                // The engine does not publish mark prices to the control plane yet.
                "unrealized": Value::Null,
            },
            "counts": {
                "fills": l.fills,
                "orders": l.orders,
                "order_events": l.order_events,
                "rejected": l.rejected,
                "commands": l.commands,
            },
            "engine_stats": stats,
        })
    }
}

#[derive(Serialize)]
struct StatsView {
    messages: u64,
    parse_errors: u64,
    orders: u64,
    fills: u64,
    dropped_stats: u64,
    feed_age_ms: u64,
    latency_ns: LatencyView,
}

#[derive(Serialize)]
struct LatencyView {
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

impl From<&EngineStats> for StatsView {
    fn from(s: &EngineStats) -> Self {
        Self {
            messages: s.messages,
            parse_errors: s.parse_errors,
            orders: s.orders,
            fills: s.fills,
            dropped_stats: s.dropped_stats,
            feed_age_ms: s.feed_age_ms,
            latency_ns: LatencyView {
                p50: s.latency_ns[0],
                p99: s.latency_ns[1],
                p999: s.latency_ns[2],
                max: s.latency_ns[3],
            },
        }
    }
}

fn state_name(s: Option<EngineState>) -> &'static str {
    match s {
        None => "starting",
        Some(EngineState::Running) => "running",
        Some(EngineState::Halted { .. }) => "halted",
        Some(EngineState::Stopped) => "stopped",
    }
}

fn halt_reason(s: Option<EngineState>) -> Option<HaltReason> {
    match s {
        Some(EngineState::Halted { reason }) => Some(reason),
        _ => None,
    }
}

fn feed_name(f: FeedState) -> &'static str {
    match f {
        FeedState::Connecting => "connecting",
        FeedState::Live => "live",
        FeedState::Stale => "stale",
        FeedState::Ended => "ended",
    }
}

fn breakers_json(l: &Ledger, tripped: &[aegis_shared::event::BreakerEvent]) -> Value {
    let now = now_ms();
    let list: Vec<Value> = tripped
        .iter()
        .map(|b| {
            let (reason, until) = match b.change {
                BreakerChange::Tripped { reason, until_ms } => (Some(reason), until_ms),
                _ => (None, 0),
            };
            let scope = match b.scope {
                BreakerScope::Global => "global".to_string(),
                BreakerScope::Mode(m) => m.as_str().to_string(),
            };
            json!({
                "scope": scope,
                "reason": reason,
                "until_ms": until,
                "cooldown_left_s": until.saturating_sub(now) / 1000,
            })
        })
        .collect();
    json!({
        "state": if list.is_empty() { "ok" } else { "tripped" },
        "tripped": list,
        "events_seen": l.breakers.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_shared::event::DENIAL_REASONS;

    fn live() -> Arc<Live> {
        Live::new(
            Ledger::default(),
            Arc::new(JournalStats::default()),
            RunInfo {
                trading_mode: TradingMode::Paper,
                environment: "paper",
                feed: "sim".into(),
                database_configured: false,
                session_id: 7,
                symbols: vec!["BTCUSDT".into()],
            },
        )
    }

    fn stats(feed: FeedState) -> EngineEvent {
        EngineEvent::Stats(EngineStats {
            ts_ms: 1,
            messages: 10,
            parse_errors: 0,
            orders: 1,
            fills: 1,
            denials: [0; DENIAL_REASONS],
            dropped_stats: 0,
            feed_age_ms: 3,
            feed,
            latency_ns: [1, 2, 3, 4],
        })
    }

    #[test]
    fn health_is_down_without_heartbeat_then_ok_then_degraded() {
        let l = live();
        let (up, h) = l.health();
        assert!(!up);
        assert_eq!(h["status"], "down");
        l.apply_stat(&EngineEvent::Heartbeat { ts_ms: 1, seq: 1 });
        l.apply_stat(&stats(FeedState::Live));
        l.apply_critical(&[EngineEvent::State {
            ts_ms: 1,
            state: EngineState::Running,
        }]);
        let (up, h) = l.health();
        assert!(up, "{h}");
        assert_eq!(h["status"], "ok");
        assert_eq!(h["database"], "not configured");
        assert_eq!(h["engine"]["state"], "running");
        l.apply_stat(&stats(FeedState::Stale));
        let (up, h) = l.health();
        assert!(up);
        assert_eq!(h["status"], "degraded");
        l.journal.failed.store(true, Ordering::Release);
        let (up, h) = l.health();
        assert!(!up);
        assert_eq!(h["journal"]["state"], "failing");
    }

    #[test]
    fn stopped_engine_is_down() {
        let l = live();
        l.apply_stat(&EngineEvent::Heartbeat { ts_ms: 1, seq: 1 });
        l.apply_critical(&[EngineEvent::State {
            ts_ms: 1,
            state: EngineState::Stopped,
        }]);
        assert!(l.engine_stopped());
        assert!(!l.health().0);
    }
}
