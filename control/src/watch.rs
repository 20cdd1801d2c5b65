//! Alert triggers (guide §6.2) wired to the dispatcher in [`crate::alerts`].
//!
//! - [`AlertWatch`] runs inside the pump thread, after an event is journaled: every engine event that calls for an
//!   alert ([`Alert::from_engine_event`]: kill switch, key rejected, breaker trip/resume, daily loss, reconcile
//!   mismatch, feed stale, engine stopped outside a shutdown), plus two control-plane rules:
//!   - **exchange error rate**: order rejections by the exchange (non-zero `reject_code`) within the last 60 s
//!     reaching `ALERT_EXCHANGE_ERRORS_PER_MINUTE` (default 10) → `exchange_error_rate`.
//!   - **unusual activity** ([`ActivityRule`]): orders per minute above [`ORDER_RATE_FACTOR`]× the running normal
//!     (an exponentially weighted mean of the completed minutes, after [`WARMUP_MINUTES`] minutes, and at least
//!     [`ORDER_RATE_FLOOR`]); or a position whose notional is above twice `FUTURES_AUTOPILOT_MAX_POSITION_SIZE`
//!     (the risk gate caps positions at 1×, so 2× means something outside the bot's rules is trading) or above
//!     [`POSITION_FACTOR`]× the running mean of position notionals (after [`POSITION_WARMUP`] samples).
//! - [`heartbeat_watch`]: a tokio task raising `engine_stopped` when the engine's heartbeat is older than
//!   `ALERT_HEARTBEAT_SECONDS` (default 10), once per stall, and `engine_stopped`'s recovery as info.
//! - [`forward_db_alerts`]: the Postgres writer's `DbAlert`s → `database_lost` / `database_restored`.
//!
//! [`AlertWatch`] never blocks: [`AlertDispatcher::send`] only queues.

use crate::alerts::{Activity, Alert, AlertDispatcher, ControlAlert, Details, Kind, Subject};
use crate::db::DbAlert;
use crate::state::Live;
use aegis_shared::event::{EngineEvent, EngineState, OrderStatus};
use aegis_shared::{Command, Notional};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Order rate alarm: this many times the running normal.
pub const ORDER_RATE_FACTOR: f64 = 5.0;
/// Order rate alarm: never below this many orders per minute.
pub const ORDER_RATE_FLOOR: u64 = 30;
/// Completed minutes before the order-rate normal is trusted.
pub const WARMUP_MINUTES: u32 = 5;
/// Weight of the newest minute in the running normal.
pub const EWMA_ALPHA: f64 = 0.2;
/// Position alarm: this many times the running mean notional.
pub const POSITION_FACTOR: f64 = 5.0;
/// Position samples before the running mean is trusted.
pub const POSITION_WARMUP: u32 = 20;
/// Default for `ALERT_EXCHANGE_ERRORS_PER_MINUTE`.
pub const DEFAULT_ERRORS_PER_MINUTE: u32 = 10;
/// Default for `ALERT_HEARTBEAT_SECONDS`.
pub const DEFAULT_HEARTBEAT_SECS: u64 = 10;

/// The "far above normal" rule (pure; time is passed in).
#[derive(Debug, Clone)]
pub struct ActivityRule {
    max_position: Notional,
    minute: u64,
    this_minute: u64,
    normal: Option<f64>,
    minutes: u32,
    alerted_minute: Option<u64>,
    last_orders: Option<u64>,
    pos_mean: f64,
    pos_samples: u32,
}

impl ActivityRule {
    /// A rule for a bot whose per-position limit is `max_position` (USD).
    pub fn new(max_position: Notional) -> Self {
        Self {
            max_position,
            minute: 0,
            this_minute: 0,
            normal: None,
            minutes: 0,
            alerted_minute: None,
            last_orders: None,
            pos_mean: 0.0,
            pos_samples: 0,
        }
    }

    /// The running normal (orders per minute), once trusted.
    pub fn normal(&self) -> Option<f64> {
        (self.minutes >= WARMUP_MINUTES)
            .then_some(self.normal)
            .flatten()
    }

    /// Adds `n` orders at `now_ms`; returns `(observed, normal)` the first time a minute goes over the line.
    pub fn orders(&mut self, n: u64, now_ms: u64) -> Option<(u64, u64)> {
        let m = now_ms / 60_000;
        if m != self.minute {
            if self.minute != 0 {
                // Close the finished minute, and count silent minutes in between as zero.
                let gap = m.saturating_sub(self.minute).min(60);
                for i in 0..gap {
                    let c = if i == 0 { self.this_minute } else { 0 } as f64;
                    self.normal = Some(match self.normal {
                        None => c,
                        Some(v) => v + EWMA_ALPHA * (c - v),
                    });
                    self.minutes = self.minutes.saturating_add(1);
                }
            }
            self.minute = m;
            self.this_minute = 0;
        }
        self.this_minute += n;
        let normal = self.normal()?;
        let line = (normal * ORDER_RATE_FACTOR).max(ORDER_RATE_FLOOR as f64);
        if self.this_minute as f64 > line && self.alerted_minute != Some(m) {
            self.alerted_minute = Some(m);
            return Some((self.this_minute, normal.round() as u64));
        }
        None
    }

    /// Feeds the engine's cumulative order counter (statistics may be dropped; the counter keeps the sum right).
    pub fn orders_total(&mut self, total: u64, now_ms: u64) -> Option<(u64, u64)> {
        let delta = match self.last_orders {
            Some(prev) if total >= prev => total - prev,
            _ => 0,
        };
        self.last_orders = Some(total);
        self.orders(delta, now_ms)
    }

    /// A position's notional (USD); returns `(observed, normal)` when it is far above normal.
    pub fn position(&mut self, notional: Notional) -> Option<(u64, u64)> {
        let usd = notional.abs().to_f64_lossy();
        if usd <= 0.0 {
            return None;
        }
        let limit = self.max_position.to_f64_lossy();
        let over_limit = limit > 0.0 && usd > 2.0 * limit;
        let over_normal =
            self.pos_samples >= POSITION_WARMUP && usd > POSITION_FACTOR * self.pos_mean;
        let normal = if over_limit && !over_normal {
            limit
        } else {
            self.pos_mean
        };
        let hit = (over_limit || over_normal).then(|| (usd.round() as u64, normal.round() as u64));
        if hit.is_none() {
            // Outliers do not move the normal.
            self.pos_samples = self.pos_samples.saturating_add(1);
            self.pos_mean += (usd - self.pos_mean) / self.pos_samples.min(1000) as f64;
        }
        hit
    }
}

/// Exchange errors in a sliding minute.
#[derive(Debug, Clone)]
pub struct ErrorRate {
    threshold: u32,
    times: VecDeque<u64>,
    above: bool,
}

impl ErrorRate {
    /// Alarm at `threshold` errors per 60 s.
    pub fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            times: VecDeque::new(),
            above: false,
        }
    }
    /// One error at `now_ms`; returns the count when the window first reaches the threshold.
    pub fn error(&mut self, now_ms: u64) -> Option<u32> {
        while self
            .times
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= 60_000)
        {
            self.times.pop_front();
        }
        self.times.push_back(now_ms);
        let n = self.times.len() as u32;
        if n < self.threshold {
            self.above = false;
            return None;
        }
        if self.above {
            return None;
        }
        self.above = true;
        Some(n)
    }
}

/// The pump's alert hook.
#[derive(Debug)]
pub struct AlertWatch {
    alerts: AlertDispatcher,
    errors: ErrorRate,
    activity: ActivityRule,
    shutting_down: bool,
}

impl AlertWatch {
    /// A watch sending to `alerts`.
    pub fn new(alerts: AlertDispatcher, errors_per_minute: u32, max_position: Notional) -> Self {
        Self {
            alerts,
            errors: ErrorRate::new(errors_per_minute),
            activity: ActivityRule::new(max_position),
            shutting_down: false,
        }
    }

    fn send(&self, a: Alert) {
        // A full queue is counted by the dispatcher; the pump must not wait.
        let _ = self.alerts.send(a);
    }

    /// A command passed to the engine (a shutdown makes the coming `Stopped` expected).
    pub fn on_command(&mut self, c: &Command) {
        if matches!(c, Command::Shutdown) {
            self.shutting_down = true;
        }
    }

    /// A critical event, already journaled.
    pub fn on_critical(&mut self, e: &EngineEvent, now_ms: u64) {
        if let Some(a) = Alert::from_engine_event(e) {
            let expected_stop = self.shutting_down
                && matches!(
                    e,
                    EngineEvent::State {
                        state: EngineState::Stopped,
                        ..
                    }
                );
            if !expected_stop {
                self.send(a);
            }
        }
        match e {
            EngineEvent::Order(o) if o.status == OrderStatus::Rejected && o.reject_code != 0 => {
                if let Some(n) = self.errors.error(now_ms) {
                    self.send(
                        Alert::new(Kind::Control(ControlAlert::ExchangeErrorRate), now_ms).with(
                            Details::ErrorRate {
                                errors: n,
                                window_secs: 60,
                                threshold: self.errors.threshold,
                            },
                        ),
                    );
                }
            }
            EngineEvent::Position(p) => {
                if let Some((observed, normal)) =
                    self.activity.position(p.entry_price.notional(p.qty))
                {
                    self.send(
                        Alert::new(Kind::Control(ControlAlert::UnusualActivity), now_ms)
                            .about(Subject::Symbol(p.symbol))
                            .with(Details::Activity {
                                what: Activity::PositionSize,
                                observed,
                                normal,
                            }),
                    );
                }
            }
            _ => {}
        }
    }

    /// A statistics event.
    pub fn on_stat(&mut self, e: &EngineEvent, now_ms: u64) {
        if let EngineEvent::Stats(s) = e {
            if let Some((observed, normal)) = self.activity.orders_total(s.orders, now_ms) {
                self.send(
                    Alert::new(Kind::Control(ControlAlert::UnusualActivity), now_ms).with(
                        Details::Activity {
                            what: Activity::OrderRate,
                            observed,
                            normal,
                        },
                    ),
                );
            }
        }
    }
}

/// Raises `engine_stopped` when the engine's last sign of life is older than `stall` (once per stall) and an
/// info-level recovery when it comes back. Ends when `stop` resolves.
pub async fn heartbeat_watch(
    live: Arc<Live>,
    alerts: AlertDispatcher,
    stall: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut stalled = false;
    let started = std::time::Instant::now();
    // A short stall is noticed within a quarter of it; a long one is not polled more than twice a second.
    let period = (stall / 4).clamp(Duration::from_millis(10), Duration::from_millis(500));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let (age, stopped) = {
            let v = live.view();
            let age = match v.last_alive {
                Some(t) => t.elapsed(),
                // Never alive: count from the start, so an engine that never beats is reported too.
                None => started.elapsed(),
            };
            (age, matches!(v.engine_state, Some(EngineState::Stopped)))
        };
        if stopped {
            // The pump reports an unexpected Stopped itself; a stopped engine has no heartbeat to watch.
            return;
        }
        if age > stall && !stalled {
            stalled = true;
            tracing::error!(age_ms = age.as_millis() as u64, "engine heartbeat stalled");
            let _ = alerts.send(
                Alert::new(
                    Kind::Control(ControlAlert::EngineStopped),
                    crate::alerts::now_ms(),
                )
                .with(Details::Heartbeat {
                    age_ms: age.as_millis() as u64,
                }),
            );
        } else if age <= stall && stalled {
            stalled = false;
            tracing::warn!("engine heartbeat back");
        }
    }
}

/// The alert a database event calls for.
pub fn db_alert(a: &DbAlert, now_ms: u64) -> Option<Alert> {
    match a {
        DbAlert::Down { .. } => Some(Alert::new(
            Kind::Control(ControlAlert::DatabaseLost),
            now_ms,
        )),
        DbAlert::Recovered { .. } => Some(Alert::new(
            Kind::Control(ControlAlert::DatabaseRestored),
            now_ms,
        )),
        DbAlert::FillConflict { .. } => Some(Alert::new(
            Kind::Control(ControlAlert::FillConflict),
            now_ms,
        )),
        DbAlert::Lagging { .. } | DbAlert::CaughtUp { .. } => None,
    }
}

/// Forwards the Postgres writer's alerts (`WriterHandle::take_alerts()`) until the channel closes.
pub async fn forward_db_alerts(
    mut rx: tokio::sync::mpsc::Receiver<DbAlert>,
    alerts: AlertDispatcher,
) {
    while let Some(a) = rx.recv().await {
        if let Some(al) = db_alert(&a, crate::alerts::now_ms()) {
            let _ = alerts.send(al);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;
    const T0: u64 = 1_700_000_000_000 - (1_700_000_000_000 % MIN);

    #[test]
    fn order_rate_needs_warmup_then_fires_once_per_minute() {
        let mut r = ActivityRule::new(Notional::from_int(50));
        // Burst in the first minute: no normal yet, no alarm.
        assert_eq!(r.orders(500, T0), None);
        for m in 1..=WARMUP_MINUTES as u64 {
            assert_eq!(r.orders(10, T0 + m * MIN), None);
        }
        // Normal ≈ EWMA of 500,10,10,10,10: still well above 10 — the burst dominates at first.
        let n = r.normal().unwrap();
        assert!(n > 10.0, "{n}");
        // A calm hour brings it down to ~10/min.
        for m in 6..66 {
            assert_eq!(r.orders(10, T0 + m * MIN), None);
        }
        let n = r.normal().unwrap();
        assert!((n - 10.0).abs() < 0.5, "{n}");
        // 50/min = 5x normal but under the floor (30)? No: 50 > max(50, 30) is false at exactly 5x.
        assert_eq!(r.orders(50, T0 + 66 * MIN), None);
        assert_eq!(r.orders(1, T0 + 66 * MIN + 1000), Some((51, 10)));
        // Once per minute.
        assert_eq!(r.orders(100, T0 + 66 * MIN + 2000), None);
        // The cumulative counter path.
        let mut r2 = r.clone();
        assert_eq!(r2.orders_total(1_000, T0 + 68 * MIN), None);
        assert_eq!(
            r2.orders_total(3_000, T0 + 68 * MIN + 10).map(|x| x.0),
            Some(2_000)
        );
    }

    #[test]
    fn silent_minutes_lower_the_normal() {
        let mut r = ActivityRule::new(Notional::from_int(50));
        for m in 0..10 {
            r.orders(100, T0 + m * MIN);
        }
        let before = r.normal().unwrap();
        r.orders(0, T0 + 30 * MIN);
        assert!(r.normal().unwrap() < before / 10.0);
    }

    #[test]
    fn position_far_above_limit_or_normal() {
        let mut r = ActivityRule::new(Notional::from_int(50));
        assert_eq!(r.position(Notional::from_int(40)), None);
        assert_eq!(r.position(Notional::from_int(101)), Some((101, 50)));
        assert_eq!(r.position(Notional::from_int(-120)), Some((120, 50)));
        let mut r = ActivityRule::new(Notional::ZERO);
        for _ in 0..POSITION_WARMUP {
            assert_eq!(r.position(Notional::from_int(10)), None);
        }
        assert_eq!(r.position(Notional::from_int(49)), None);
        assert!(r.position(Notional::from_int(200)).is_some());
    }

    #[test]
    fn error_rate_fires_on_crossing_and_rearms() {
        let mut e = ErrorRate::new(3);
        assert_eq!(e.error(T0), None);
        assert_eq!(e.error(T0 + 1), None);
        assert_eq!(e.error(T0 + 2), Some(3));
        assert_eq!(e.error(T0 + 3), None);
        // A minute later the window is empty again.
        assert_eq!(e.error(T0 + 2 * MIN), None);
        assert_eq!(e.error(T0 + 2 * MIN + 1), None);
        assert_eq!(e.error(T0 + 2 * MIN + 2), Some(3));
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    type Bodies = Arc<std::sync::Mutex<Vec<serde_json::Value>>>;

    /// A local HTTP receiver on the current runtime: the webhook URL and what it has received.
    async fn hook() -> (String, Bodies) {
        let got = Bodies::default();
        let g = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
                let g = g.clone();
                async move {
                    g.lock().unwrap().push(v);
                    "ok"
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        (format!("http://127.0.0.1:{port}/hook"), got)
    }

    /// A dispatcher posting to `url`, with the other `ALERT_*` settings in `extra`.
    fn dispatcher(
        url: &str,
        extra: &[(&str, &str)],
    ) -> (AlertDispatcher, tokio::task::JoinHandle<()>) {
        let cfg = crate::alerts::AlertConfig::from_lookup(
            |k| {
                if k == "ALERT_WEBHOOK_URL" {
                    return Some(url.to_string());
                }
                extra
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            },
            aegis_shared::TradingMode::Paper,
        )
        .unwrap();
        AlertDispatcher::spawn(cfg).unwrap()
    }

    /// Polls until `got` holds at least `n` bodies (20 s at most); their kinds.
    async fn kinds_after(got: &Bodies, n: usize) -> Vec<String> {
        let t = std::time::Instant::now();
        // Generous: it returns as soon as `n` arrived; only a loaded CI machine ever waits long.
        while got.lock().unwrap().len() < n && t.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = got.lock().unwrap();
        got.iter()
            .map(|v| v["kind"].as_str().unwrap().to_string())
            .collect()
    }

    /// Through the real dispatcher to a local HTTP receiver: a repeated trigger is delivered once (de-duplicated),
    /// an expected shutdown raises nothing, an unexpected stop does.
    #[test]
    fn watch_delivers_through_dispatcher_with_dedup() {
        use aegis_shared::event::AlertKind;
        runtime().block_on(async {
            let (url, got) = hook().await;
            let (d, h) = dispatcher(&url, &[]);
            let mut w = AlertWatch::new(d.clone(), 10, Notional::from_int(50));
            let kill = EngineEvent::Alert {
                ts_ms: T0,
                kind: AlertKind::KillSwitch,
            };
            w.on_critical(&kill, T0);
            w.on_critical(&kill, T0 + 1);
            // Unexpected stop: alerted. After a shutdown command: not.
            let stopped = EngineEvent::State {
                ts_ms: T0,
                state: EngineState::Stopped,
            };
            w.on_critical(&stopped, T0 + 2);
            w.on_command(&Command::Shutdown);
            w.on_critical(&stopped, T0 + 3);
            drop(w);
            let stats_handle = d.clone();
            drop(d);
            // Wait for the deliveries (the dispatcher ends when every handle is gone).
            kinds_after(&got, 2).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let st = stats_handle.stats();
            drop(stats_handle);
            let _ = tokio::time::timeout(Duration::from_secs(2), h).await;
            let kinds = kinds_after(&got, 2).await;
            assert_eq!(kinds, ["kill_switch", "engine_stopped"], "{got:?}");
            assert_eq!(st.deduplicated, 1, "{st:?}");
        });
    }

    /// The watcher alone keeps a stall to one alert: the dispatcher's de-duplication is off here, so a repeat
    /// would reach the receiver. Nothing is raised while beats arrive, and a new stall after a recovery is new.
    #[test]
    fn stalled_heartbeat_alerts_once_per_stall_and_never_while_beating() {
        use crate::journal::JournalStats;
        use crate::journal::Ledger;
        use crate::state::RunInfo;
        runtime().block_on(async {
            let (url, got) = hook().await;
            let (d, h) = dispatcher(&url, &[("ALERT_DEDUP_SECONDS", "0")]);
            let live = Live::new(
                Ledger::default(),
                Arc::new(JournalStats::default()),
                RunInfo {
                    trading_mode: aegis_shared::TradingMode::Paper,
                    environment: "paper",
                    feed: "test".into(),
                    database_configured: false,
                    session_id: 1,
                    symbols: vec!["BTCUSDT".into()],
                },
            );
            // Long enough that a loaded CI machine pausing this runtime's one thread cannot fake a stall.
            let stall = Duration::from_millis(800);
            // Beats far more often than the stall, so a busy machine cannot make a beating engine look stalled.
            let every = Duration::from_millis(50);
            let (stop, stop_rx) = tokio::sync::watch::channel(false);
            let watcher = tokio::spawn(heartbeat_watch(live.clone(), d.clone(), stall, stop_rx));
            let beat_for = |how_long: Duration| {
                let live = live.clone();
                async move {
                    let t = std::time::Instant::now();
                    let mut seq = 0;
                    while t.elapsed() < how_long {
                        live.apply_stat(&EngineEvent::Heartbeat { ts_ms: T0, seq });
                        seq += 1;
                        tokio::time::sleep(every).await;
                    }
                }
            };
            beat_for(5 * stall).await;
            assert_eq!(d.stats().queued, 0, "alerted while beats arrived");
            // Silence for four stall lengths: one alert, however many checks see the stall.
            tokio::time::sleep(4 * stall).await;
            assert_eq!(d.stats().queued, 1, "{:?}", d.stats());
            let kinds = kinds_after(&got, 1).await;
            assert_eq!(kinds, ["engine_stopped"]);
            let first = got.lock().unwrap()[0].clone();
            let age = first["details"]["age_ms"].as_u64().unwrap();
            assert!(age > stall.as_millis() as u64, "{first}");
            // Back, then stalled again: a second alert.
            beat_for(3 * stall).await;
            assert_eq!(d.stats().queued, 1, "alerted on the recovery");
            tokio::time::sleep(4 * stall).await;
            assert_eq!(d.stats().queued, 2, "{:?}", d.stats());
            assert_eq!(
                kinds_after(&got, 2).await,
                ["engine_stopped", "engine_stopped"]
            );
            stop.send(true).unwrap();
            tokio::time::timeout(Duration::from_secs(2), watcher)
                .await
                .expect("the watcher ends when told")
                .unwrap();
            drop(d);
            let _ = tokio::time::timeout(Duration::from_secs(2), h).await;
        });
    }

    #[test]
    fn db_alerts_map() {
        let k = |a: &DbAlert| db_alert(a, 1).map(|x| x.kind.name());
        assert_eq!(
            k(&DbAlert::Down {
                error: "x".into(),
                lag_records: 1
            }),
            Some("database_lost")
        );
        assert_eq!(
            k(&DbAlert::Recovered {
                down_for_ms: 1,
                lag_records: 0
            }),
            Some("database_restored")
        );
        assert_eq!(k(&DbAlert::CaughtUp { stored_records: 1 }), None);
        assert_eq!(
            k(&DbAlert::FillConflict {
                journal_offset: 9,
                stored_offset: 8,
                symbol: "BTCUSDT".into(),
                trade_id: 1,
                split_part: 0,
                market: aegis_shared::Market::Futures,
            }),
            Some("fill_conflict")
        );
    }
}
