//! Postgres inside `aegis run` (the database commands of the CLI are in [`crate::ops::dbcmd`]).
//!
//! `aegis run` with `DATABASE_URL`:
//! - [`DbLink::start`] spawns the journal → Postgres writer ([`crate::db::spawn_writer`]), which connects, migrates
//!   and reconnects by itself in the background. A dead database never delays or stops trading: the bot starts
//!   anyway, the journal keeps everything, `/api/health` says degraded and a `DatabaseLost` alert fires.
//! - The pump wakes the writer after every fsync ([`DbLink::waker`]).
//! - [`DbSide`] serves the dashboard: audit rows (`audit_log`, hash-chained), the access log (through a bounded
//!   queue, never blocking a request; dropped and counted when the database cannot take it) and the audit view.
//! - A housekeeping task prunes access logs older than [`ACCESS_LOG_RETENTION_DAYS`] and expired revoked tokens
//!   once a day.
//! - [`pg_mirror`]: the dashboard's users and revoked tokens mirrored to Postgres through [`DbSide`].
//! - [`DbLink::shutdown`] runs after the pump's final fsync: the writer stores what it can within a bounded
//!   time; the rest stays in the journal for the next start.
//!
//! Nothing here prints `DATABASE_URL` or its password: errors pass through [`Redactor`] as a second line of
//! defence behind [`crate::db::DbError`], whose messages never contain them.

pub mod pg_mirror;

use crate::alerts::AlertDispatcher;
use crate::db::audit::AuditAction;
use crate::db::records::{self, AccessRecord};
use crate::db::retention::{self, ACCESS_LOG_RETENTION_DAYS};
use crate::db::{
    self, AuditEntry, DbError, DbHealthSource, Redactor, WriterConfig, WriterHandle, WriterHealth,
};
use crate::journal::JournalStats;
use crate::web::backend::{AccessLogEntry, AuditEvent, AuditRecord};
use crate::web::model::LiveModel;
use aegis_shared::Secret;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

/// Longest wait for a dashboard-side connection (an audit write must not hang a request for long).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed connection, dashboard-side calls fail fast for this long instead of waiting again.
const RETRY_AFTER: Duration = Duration::from_secs(3);
/// Access-log entries queued before new ones are dropped (and counted).
const ACCESS_QUEUE: usize = 4096;
/// Access-log rows written per round trip burst.
const ACCESS_BATCH: usize = 256;
/// First housekeeping run after start, then every [`PRUNE_EVERY`].
const PRUNE_FIRST: Duration = Duration::from_secs(600);
/// Housekeeping period.
const PRUNE_EVERY: Duration = Duration::from_secs(86_400);

/// The control plane's own connection to Postgres (the writer has its own): dashboard audit, access log, audit
/// view, housekeeping. Connects lazily; while the database is unreachable every call fails fast.
pub struct DbSide {
    url: Secret<String>,
    redact: Redactor,
    client: Mutex<Option<Arc<Client>>>,
    connecting: tokio::sync::Mutex<()>,
    down_until: Mutex<Option<Instant>>,
    access_tx: mpsc::Sender<AccessLogEntry>,
    /// Access-log entries that could not be stored (queue full or database unreachable).
    pub access_dropped: AtomicU64,
}

impl std::fmt::Debug for DbSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSide")
            .field("access_dropped", &self.access_dropped)
            .finish_non_exhaustive()
    }
}

impl DbSide {
    fn new(url: Secret<String>) -> (Arc<Self>, mpsc::Receiver<AccessLogEntry>) {
        let (tx, rx) = mpsc::channel(ACCESS_QUEUE);
        let redact = Redactor::for_url(&url);
        (
            Arc::new(Self {
                url,
                redact,
                client: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                down_until: Mutex::new(None),
                access_tx: tx,
                access_dropped: AtomicU64::new(0),
            }),
            rx,
        )
    }

    fn cached(&self) -> Option<Arc<Client>> {
        self.client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|c| !c.is_closed())
    }

    /// A side connection without a [`DbLink`] (its access log is not stored): the user store's tests and tools.
    pub fn standalone(url: Secret<String>) -> Arc<Self> {
        Self::new(url).0
    }

    /// A new connection of its own (bounded by [`CONNECT_TIMEOUT`]), for a transaction: statements on the shared
    /// client are pipelined with other tasks' and would land inside it.
    pub(crate) async fn dedicated_client(&self) -> Result<Client, String> {
        match tokio::time::timeout(CONNECT_TIMEOUT, db::connect(self.url.expose())).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(self.redact.clean(&e.to_string())),
            Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
        }
    }

    /// A usable client, connecting if needed (bounded by [`CONNECT_TIMEOUT`]).
    pub(crate) async fn client(&self) -> Result<Arc<Client>, String> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        if let Some(t) = *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) {
            if Instant::now() < t {
                return Err("database unreachable (retrying shortly)".into());
            }
        }
        let res = match tokio::time::timeout(CONNECT_TIMEOUT, db::connect(self.url.expose())).await
        {
            Ok(Ok(c)) => Ok(Arc::new(c)),
            Ok(Err(e)) => Err(self.redact.clean(&e.to_string())),
            Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
        };
        match res {
            Ok(c) => {
                *self.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
                *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(c)
            }
            Err(e) => {
                *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + RETRY_AFTER);
                Err(e)
            }
        }
    }

    /// Forgets a broken connection; returns the error text with the URL's password redacted.
    pub(crate) fn on_error(&self, e: &DbError) -> String {
        if e.is_connection() {
            *self.client.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        self.redact.clean(&e.to_string())
    }

    /// Appends a dashboard audit event to the hash-chained `audit_log`.
    pub async fn audit(&self, ev: &AuditEvent) -> Result<i64, String> {
        let c = self.client().await?;
        let ip = ev
            .ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "local".into());
        let res = match ev.action.as_str() {
            "auth.login" | "auth.login_failed" => {
                let ok = ev.action == "auth.login";
                let reason = if ok {
                    None
                } else if ev.detail.get("locked_for_s").is_some_and(|v| !v.is_null()) {
                    Some("bad credentials; locked out".to_string())
                } else {
                    Some("bad credentials".to_string())
                };
                // A failed login's actor is `anonymous`; the account tried is what the audit needs.
                let user = ev
                    .detail
                    .get("username")
                    .and_then(Value::as_str)
                    .filter(|_| !ok)
                    .unwrap_or(&ev.actor)
                    .to_string();
                records::record_login(&*c, &user, &ip, ok, reason.as_deref()).await
            }
            other => {
                db::audit_append(
                    &*c,
                    &AuditEntry {
                        actor: &ev.actor,
                        source_ip: &ip,
                        action: dashboard_action(other),
                        detail: json!({ "event": other, "detail": ev.detail }),
                    },
                )
                .await
            }
        };
        res.map(|r| r.id).map_err(|e| self.on_error(&e))
    }

    /// Newest audit rows first, from `audit_log`.
    pub async fn audit_log(
        &self,
        limit: u32,
        before_id: Option<u64>,
    ) -> Result<Vec<AuditRecord>, String> {
        let c = self.client().await?;
        let before = before_id.map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        let rows = c
            .query(
                "SELECT id, (extract(epoch FROM ts) * 1000)::bigint, actor, source_ip, action, detail, hash \
                 FROM audit_log WHERE ($1::bigint IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
                &[&before, &i64::from(limit)],
            )
            .await
            .map_err(|e| self.on_error(&DbError::from(e)))?;
        Ok(rows
            .iter()
            .map(|r| {
                let detail: &str = r.get(5);
                let ip: String = r.get(3);
                AuditRecord {
                    id: r.get::<_, i64>(0).max(0) as u64,
                    ts_ms: r.get::<_, i64>(1).max(0) as u64,
                    actor: r.get(2),
                    ip: (ip != "local").then_some(ip),
                    action: r.get(4),
                    detail: serde_json::from_str(detail).unwrap_or_else(|_| json!(detail)),
                    hash: r.get(6),
                }
            })
            .collect())
    }

    /// Queues one access-log row; never blocks (a full queue drops and counts it).
    pub fn record_access(&self, e: AccessLogEntry) {
        if self.access_tx.try_send(e).is_err() {
            self.access_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Deletes access logs older than [`ACCESS_LOG_RETENTION_DAYS`] and expired revoked tokens.
    pub async fn prune(&self) -> Result<(u64, u64), String> {
        let c = self.client().await?;
        let a = retention::prune_access_log(&*c, ACCESS_LOG_RETENTION_DAYS)
            .await
            .map_err(|e| self.on_error(&e))?;
        let t = retention::prune_revoked_tokens(&*c)
            .await
            .map_err(|e| self.on_error(&e))?;
        Ok((a, t))
    }
}

/// The audit action a dashboard event is stored as.
fn dashboard_action(event: &str) -> AuditAction {
    match event {
        "auth.login" => AuditAction::Login,
        "auth.login_failed" => AuditAction::LoginFailed,
        "auth.logout" => AuditAction::Logout,
        "auth.register" => AuditAction::UserRegistered,
        "control.kill" => AuditAction::KillSwitch,
        "control.breaker_reset" => AuditAction::BreakerReset,
        _ => AuditAction::Command,
    }
}

async fn access_loop(
    side: Arc<DbSide>,
    mut rx: mpsc::Receiver<AccessLogEntry>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf: Vec<AccessLogEntry> = Vec::with_capacity(ACCESS_BATCH);
    let mut warned_at: Option<Instant> = None;
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut buf, ACCESS_BATCH) => n,
            _ = stop.changed() => {
                // Take what is queued, then one last bounded write below.
                while buf.len() < ACCESS_QUEUE {
                    match rx.try_recv() {
                        Ok(e) => buf.push(e),
                        Err(_) => break,
                    }
                }
                if buf.is_empty() { return; }
                buf.len()
            }
        };
        if n == 0 {
            return;
        }
        let err = match side.client().await {
            Ok(c) => {
                let writes = buf.iter().map(|e| {
                    let c = c.clone();
                    async move {
                        let ip = e.ip.to_string();
                        records::record_access(
                            &*c,
                            &AccessRecord {
                                actor: e.user.as_deref(),
                                source_ip: &ip,
                                method: &e.method,
                                path: &e.path,
                                status: e.status,
                                duration_us: e.duration_us,
                            },
                        )
                        .await
                    }
                });
                // tokio-postgres pipelines concurrent statements on one connection: one round trip per burst.
                let results = futures_util::future::join_all(writes).await;
                let failed = results.iter().filter(|r| r.is_err()).count();
                results
                    .into_iter()
                    .find_map(Result::err)
                    .map(|e| (failed, side.on_error(&e)))
            }
            Err(e) => Some((buf.len(), e)),
        };
        if let Some((failed, e)) = err {
            side.access_dropped
                .fetch_add(failed as u64, Ordering::Relaxed);
            if warned_at.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                warned_at = Some(Instant::now());
                tracing::warn!(error = %e, dropped_total = side.access_dropped.load(Ordering::Relaxed),
                    "access log: rows not stored in Postgres (the log file still has every request)");
            }
        }
        buf.clear();
        if *stop.borrow() && rx.is_empty() {
            return;
        }
    }
}

async fn housekeeping(side: Arc<DbSide>, mut stop: watch::Receiver<bool>) {
    let mut wait = PRUNE_FIRST;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        wait = PRUNE_EVERY;
        match side.prune().await {
            Ok((a, t)) => tracing::info!(
                access_log_rows = a,
                revoked_tokens = t,
                retention_days = ACCESS_LOG_RETENTION_DAYS,
                "database housekeeping: pruned"
            ),
            // Tried again tomorrow; nothing is lost by pruning late.
            Err(e) => tracing::warn!(error = %e, "database housekeeping failed"),
        }
    }
}

/// Postgres for one `aegis run`.
pub struct DbLink {
    writer: WriterHandle,
    /// The dashboard's side of the database.
    pub side: Arc<DbSide>,
    redact: Redactor,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for DbLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbLink")
            .field("health", &self.writer.health())
            .finish_non_exhaustive()
    }
}

impl DbLink {
    /// Starts the writer for the journal in `journal_dir` and the side tasks. Returns at once: connecting and
    /// migrating happen in the background, so a dead database never holds up trading. Must run inside tokio.
    pub fn start(
        url: Secret<String>,
        journal_dir: PathBuf,
        stats: Arc<JournalStats>,
        model: Option<Arc<LiveModel>>,
    ) -> Self {
        let redact = Redactor::for_url(&url);
        let writer = db::spawn_writer(WriterConfig::new(url.clone()), journal_dir, stats);
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        // The dashboard's status line follows the writer.
        if let Some(m) = model {
            let mut h = writer.subscribe();
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let mut shown = "";
                loop {
                    let s = if h.borrow().is_degraded() {
                        "degraded"
                    } else {
                        "ok"
                    };
                    // The lag changes with every batch; only a change of state is news for the dashboard.
                    if s != shown {
                        m.set_database_state(s);
                        shown = s;
                    }
                    tokio::select! {
                        r = h.changed() => if r.is_err() { return },
                        _ = stop.changed() => return,
                    }
                }
            }));
        }
        let (side, access_rx) = DbSide::new(url);
        tasks.push(tokio::spawn(access_loop(
            side.clone(),
            access_rx,
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(housekeeping(side.clone(), stop_rx)));
        Self {
            writer,
            side,
            redact,
            stop,
            tasks,
        }
    }

    /// Sends the writer's alerts (database lost / restored) to `alerts`, or to the log without a dispatcher.
    /// Call once.
    pub fn attach_alerts(&mut self, alerts: Option<AlertDispatcher>) {
        if let Some(rx) = self.writer.take_alerts() {
            self.tasks.push(match alerts {
                Some(d) => tokio::spawn(crate::watch::forward_db_alerts(rx, d)),
                // Without alert channels the log is the alert.
                None => tokio::spawn(log_db_alerts(rx)),
            });
        }
    }

    /// Notified by the pump after every fsync.
    pub fn waker(&self) -> Arc<Notify> {
        self.writer.waker()
    }

    /// For `/api/health`.
    pub fn health_source(&self) -> DbHealthSource {
        DbHealthSource::new(self.writer.subscribe(), self.redact.clone())
    }

    /// Call after the journal's final fsync: the writer stores what is durable within `timeout` (whatever it does
    /// not store waits in the journal for the next start), the access-log queue is flushed, side tasks end.
    pub async fn shutdown(self, timeout: Duration) -> WriterHealth {
        let t = Instant::now();
        self.writer.wake();
        let health = self.writer.subscribe();
        self.writer.shutdown(timeout).await;
        let _ = self.stop.send(true);
        let rest = timeout
            .saturating_sub(t.elapsed())
            .max(Duration::from_millis(100));
        for task in self.tasks {
            if tokio::time::timeout(rest, task).await.is_err() {
                tracing::debug!("database side task still busy at exit");
            }
        }
        let h = health.borrow().clone();
        if h.lag_records > 0 {
            tracing::warn!(
                lag_records = h.lag_records,
                state = db::health::state_name(h.state),
                "stopping with journal records not yet in Postgres; the next start stores them"
            );
        } else {
            tracing::info!(
                stored_records = h.stored_records,
                "postgres writer caught up with the journal"
            );
        }
        h
    }
}

async fn log_db_alerts(mut rx: mpsc::Receiver<db::DbAlert>) {
    while let Some(a) = rx.recv().await {
        tracing::warn!(alert = ?a, "database alert");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_events_map_to_audit_actions() {
        assert_eq!(dashboard_action("control.kill"), AuditAction::KillSwitch);
        assert_eq!(
            dashboard_action("control.breaker_reset"),
            AuditAction::BreakerReset
        );
        assert_eq!(dashboard_action("control.halt"), AuditAction::Command);
        assert_eq!(dashboard_action("auth.logout"), AuditAction::Logout);
        assert_eq!(
            dashboard_action("auth.register"),
            AuditAction::UserRegistered
        );
    }
}
