//! `aegis run`: wires journal, engine, pump and HTTPS API together, and shuts them down in order.
//!
//! Start order: journal replay (and tail repair) → TLS identity → bind the API port → journal the new session
//! (fsync'd) → start the engine with the restored positions → pump → API → banner. A signal (SIGINT/SIGTERM)
//! journals and sends `Shutdown`, waits for the engine's `Stopped`, lets the pump drain the queues and fsync,
//! stops the API, and returns — all within [`SHUTDOWN_BUDGET`].

use crate::api;
use crate::engine_link::{EngineStart, RunError, StartContext};
use crate::journal::{self, now_ms, JournalRecord, Recovered, SessionRecord};
use crate::ops::commands::RunExtras;
use crate::pump::{self, Issued};
use crate::state::{Live, RunInfo};
use crate::tls::{self, CertSource};
use aegis_shared::config::{Config, FeedKind};
use aegis_shared::Command;
use aegis_shared::TradingMode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything between the signal and the exit must fit in this.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(5);
/// Part of the budget the engine gets to report `Stopped`.
const ENGINE_STOP_WAIT: Duration = Duration::from_millis(3500);

/// Starts the engine thread: paper through [`crate::engine_link`], paper on Binance data and testnet/live
/// through [`crate::exchange`]. `main` passes it to [`run_with`].
pub fn start_engine(ctx: StartContext<'_>) -> Result<EngineStart, RunError> {
    if ctx.config.trading_mode != TradingMode::Paper {
        return crate::exchange::start_live(ctx);
    }
    if ctx.config.feed == FeedKind::Binance {
        return crate::exchange::paper_market::start(ctx);
    }
    let (params, feed) = crate::engine_link::params(&ctx)?;
    crate::engine_link::spawn_paper(params, feed)
}

/// `max(now_ms, last + 1)`: ids stay unique across restarts even if the clock steps back.
pub fn next_session(last: Option<u64>, now: u64) -> u64 {
    match last {
        Some(l) => now.max(l.saturating_add(1)),
        None => now,
    }
}

/// Records this start's configuration changes (see `db::config_log`) once the database is reachable and
/// migrated, retrying in the background: a dead database never holds up trading.
fn record_config_changes(
    side: Arc<crate::db_link::DbSide>,
    settings: crate::db::config_log::Settings,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let actor = crate::db::config_log::local_actor();
        let mut wait = Duration::from_millis(500);
        loop {
            match side.dedicated_client().await {
                Ok(mut c) => {
                    match crate::db::config_log::record_changes(&mut c, &settings, &actor).await {
                        Ok(n) => {
                            tracing::info!(
                                changes = n,
                                "configuration changes since the last start recorded"
                            );
                            return;
                        }
                        // Typically the writer has not created the tables yet.
                        Err(e) => {
                            tracing::debug!(error = %side.on_error(&e), "configuration changes not recorded yet")
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "configuration changes not recorded yet"),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    })
}

/// Runs the bot until SIGINT/SIGTERM (or the engine stops by itself).
pub fn run<F>(cfg: Config, warnings: Vec<String>, start_engine: F) -> Result<(), RunError>
where
    F: FnOnce(StartContext<'_>) -> Result<EngineStart, RunError>,
{
    run_with(cfg, warnings, RunExtras::default(), start_engine)
}

/// [`run`] with alerts and the other [`RunExtras`].
pub fn run_with<F>(
    cfg: Config,
    warnings: Vec<String>,
    extras: RunExtras,
    start_engine: F,
) -> Result<(), RunError>
where
    F: FnOnce(StartContext<'_>) -> Result<EngineStart, RunError>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        // The engine owns a core; the API needs little.
        .worker_threads(1)
        .thread_name("aegis-ctl")
        .enable_all()
        .build()
        .map_err(|source| RunError::Start {
            what: "the async runtime",
            source,
        })?;
    rt.block_on(run_async(cfg, warnings, extras, start_engine))
}

async fn run_async<F>(
    cfg: Config,
    warnings: Vec<String>,
    extras: RunExtras,
    start_engine: F,
) -> Result<(), RunError>
where
    F: FnOnce(StartContext<'_>) -> Result<EngineStart, RunError>,
{
    for w in &warnings {
        tracing::warn!("{w}");
    }
    // Signals first, so a Ctrl-C during start-up is not lost.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| RunError::Start {
            what: "the SIGTERM handler",
            source,
        })?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|source| RunError::Start {
            what: "the SIGINT handler",
            source,
        })?;

    // One key per bot (guide §1.1): before the journal, the ports or the exchange, so a refused second bot
    // touches nothing the first one uses. The weight budget is installed before any exchange client exists.
    crate::fleet::budget::install(extras.fleet.budget.clone());
    let lease = crate::fleet::guard::start(&cfg, &extras.fleet).await?;
    let result = run_leased(
        cfg,
        extras,
        start_engine,
        lease.as_ref(),
        &mut sigterm,
        &mut sigint,
    )
    .await;
    if let Some(l) = lease {
        // On every way out, a failed start included: the engine has stopped (or never ran), so no order
        // follows, and a restart with this key must not wait for the lease to expire.
        l.release(Duration::from_millis(1000)).await;
    }
    result
}

/// [`run_async`] once the fleet lease (if any) is held.
async fn run_leased<F>(
    cfg: Config,
    extras: RunExtras,
    start_engine: F,
    lease: Option<&crate::fleet::guard::LeaseGuard>,
    sigterm: &mut tokio::signal::unix::Signal,
    sigint: &mut tokio::signal::unix::Signal,
) -> Result<(), RunError>
where
    F: FnOnce(StartContext<'_>) -> Result<EngineStart, RunError>,
{
    let jdir = journal::dir_in(&cfg.data_dir);
    let t0 = Instant::now();
    let (
        mut writer,
        Recovered {
            ledger,
            records,
            valid_len,
            cut,
        },
    ) = journal::open(&jdir, cfg.journal_fsync)?;
    if let Some(c) = &cut {
        tracing::warn!(
            offset = c.offset,
            bytes_cut = c.bytes,
            reason = c.reason,
            "journal replay: a torn or corrupted tail was cut off; state is restored from the {records} valid records before offset {}",
            c.offset
        );
    }
    tracing::info!(
        records,
        bytes = valid_len,
        fills = ledger.fills,
        open_positions = ledger.open_positions().count(),
        realized_pnl = %ledger.realized_pnl,
        fees = %ledger.fees,
        last_session = ?ledger.last_session,
        elapsed_ms = t0.elapsed().as_millis() as u64,
        "journal replayed"
    );

    let configured = match (&cfg.api.tls_cert_path, &cfg.api.tls_key_path) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        _ => None,
    };
    let ident = tls::load_or_generate(configured, &cfg.data_dir)?;
    let tls_config = ident.server_config()?;
    let addr = SocketAddr::new(cfg.api.bind_addr, cfg.api.port);
    let listener = api::bind(addr, cfg.auth.enabled)?;
    // Optional plain-HTTP listener that only redirects to HTTPS (bound now so a taken port fails fast).
    let redirect_listener = match cfg.api.http_redirect_port {
        Some(p) => Some(api::bind(SocketAddr::new(cfg.api.bind_addr, p), true)?),
        None => None,
    };

    let session_id = next_session(ledger.last_session, now_ms());
    writer.append_durable(&JournalRecord::Session(SessionRecord {
        id: session_id,
        ts_ms: now_ms(),
        trading_mode: cfg.trading_mode,
        version: env!("CARGO_PKG_VERSION").to_string(),
    }))?;

    let info = RunInfo {
        trading_mode: cfg.trading_mode,
        environment: cfg.environment(),
        feed: crate::dashboard::feed_description(&cfg),
        database_configured: cfg.database_url.is_some(),
        session_id,
        symbols: cfg.symbols.iter().map(|s| s.to_string()).collect(),
    };
    let mut live_ledger = ledger.clone();
    live_ledger.last_session = Some(session_id);
    let live = Live::new(live_ledger, writer.stats(), info);

    // The dashboard (issue 7): settings validated again (config::load already refused bad ones), users in
    // DATA_DIR/users.json (mirrored to Postgres when there is one, see db_link/pg_mirror.rs), the read model seeded
    // from the journal and fed by the pump from here on.
    let web_cfg = crate::dashboard::web_config(&cfg)?;
    let users = crate::auth::MemoryUserStore::open(&cfg.data_dir)
        .map_err(|e| RunError::Dashboard(format!("user store: {e}")))?;
    let command_slot = crate::dashboard::CommandSlot::default();
    let model = {
        let slot = command_slot.clone();
        Arc::new(crate::web::model::LiveModel::new(
            crate::dashboard::model_info(&cfg, &crate::config::allocation(&cfg)?, now_ms()),
            move |c| slot.send(c),
        ))
    };
    let seeded = crate::dashboard::seed_model(&model, &jdir, valid_len)?;
    tracing::debug!(events = seeded, "dashboard model seeded from the journal");
    live.attach_dashboard(model.clone());
    // Postgres (issue 6): the writer connects, migrates and catches up in the background; a dead database never
    // holds up trading (journal only, health degraded, an alert).
    let mut db = cfg.database_url.clone().map(|url| {
        crate::db_link::DbLink::start(url, jdir.clone(), writer.stats(), Some(model.clone()))
    });
    if let Some(d) = &db {
        // Ends with the runtime; what it has not recorded by then is recorded at the next start.
        drop(record_config_changes(
            d.side.clone(),
            extras.settings.clone(),
        ));
    }
    let users: Arc<dyn crate::auth::UserStore> = match &db {
        Some(d) => {
            let m = crate::db_link::pg_mirror::PgMirrorStore::new(users, d.side.clone());
            // Ends with the runtime; a sync in flight at shutdown is retried at the next start.
            drop(m.spawn_sync());
            m
        }
        None => Arc::new(users),
    };
    let web_state = crate::web::WebState::new(
        web_cfg,
        users,
        Arc::new(crate::dashboard::RunBackend {
            model,
            live: live.clone(),
            slot: Some(command_slot.clone()),
            db: db.as_ref().map(|d| d.side.clone()),
        }),
    )
    .map_err(|e| RunError::Dashboard(e.to_string()))?;

    // Alerts (guide §6.2): the dispatcher never blocks its callers; without channels it only counts.
    let alerts = match extras.alerts {
        Some(ac) => match crate::alerts::AlertDispatcher::spawn(ac) {
            Ok((d, h)) => Some((d, h)),
            Err(e) => {
                tracing::error!(error = %e, "alerts disabled: the alert dispatcher could not start");
                None
            }
        },
        None => None,
    };
    if let Some(db) = db.as_mut() {
        db.attach_alerts(alerts.as_ref().map(|(d, _)| d.clone()));
    }
    if let Some(l) = lease {
        l.attach_alerts(alerts.as_ref().map(|(d, _)| d.clone()));
    }
    let watch = alerts.as_ref().map(|(d, _)| {
        crate::watch::AlertWatch::new(
            d.clone(),
            extras.errors_per_minute,
            cfg.limits.max_position_usd,
        )
    });
    // The local admin token for `aegis halt|resume|kill` (fresh on every start, mode 600).
    let admin_token =
        crate::ops::admin::create_token(&cfg.data_dir).map_err(|source| RunError::Start {
            what: "the local admin token (DATA_DIR/admin.token)",
            source,
        })?;

    let engine = start_engine(StartContext {
        config: &cfg,
        ledger: &ledger,
        session_id,
        live: Some(live.clone()),
    })?;
    let pinned = engine.pinned.clone();
    let engine_thread = engine.thread;
    let db_waker = db.as_ref().map(|d| d.waker());
    let pump =
        pump::spawn_full(writer, engine.link, live.clone(), watch, db_waker).map_err(|source| {
            RunError::Start {
                what: "the journal pump thread",
                source,
            }
        })?;
    // Dashboard controls go through the pump: journaled, then forwarded to the engine.
    command_slot.connect(pump.commands.clone());
    let conn_limits = web_state.config().conn_limits();
    let app = crate::web::app(
        web_state,
        match &db {
            Some(d) => api::public_routes_with_db(live.clone(), d.health_source()),
            None => api::public_routes(live.clone()),
        }
        .merge(crate::ops::admin::routes(
            admin_token,
            pump.commands.clone(),
        )),
    );
    let server = api::serve_app(listener, tls_config, app, conn_limits);
    let redirect = redirect_listener.map(|l| {
        api::serve_redirect(
            l,
            cfg.api.port,
            cfg.api.bind_addr,
            server.connections().cloned(),
        )
    });
    let (hb_stop, hb_stop_rx) = tokio::sync::watch::channel(false);
    if let Some((d, _)) = &alerts {
        tokio::spawn(crate::watch::heartbeat_watch(
            live.clone(),
            d.clone(),
            extras.heartbeat_stall,
            hb_stop_rx,
        ));
    }

    // The banner: what runs, against what, where to look.
    let host = match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let url = format!("https://{host}:{}/api/health", addr.port());
    let cert_note = match ident.source {
        CertSource::Configured => "configured",
        CertSource::Generated => "self-signed, generated now",
        CertSource::Reused => "self-signed, generated earlier",
    };
    tracing::info!(
        "==================== AEGIS {} ====================",
        env!("CARGO_PKG_VERSION")
    );
    tracing::info!("mode:        {}", cfg.trading_mode.banner());
    tracing::info!("environment: {}", cfg.environment());
    tracing::info!("feed:        {}", crate::dashboard::feed_description(&cfg));
    tracing::info!("symbols:     {}", live.info.symbols.join(","));
    let data_dir = std::fs::canonicalize(&cfg.data_dir).unwrap_or_else(|_| cfg.data_dir.clone());
    tracing::info!("data dir:    {}", data_dir.display());
    tracing::info!("session:     {session_id}");
    tracing::info!(
        "dashboard:   https://{host}:{}/ (health {url}; auth {})",
        addr.port(),
        if cfg.auth.enabled {
            "on"
        } else {
            "OFF, loopback only"
        }
    );
    tracing::info!(
        "certificate: SHA-256 {} ({cert_note}: {})",
        ident.fingerprint,
        ident.cert_path.display()
    );
    match &pinned {
        Ok(core) => tracing::info!("engine:      pinned to CPU core {core}"),
        Err(why) => tracing::warn!(
            "engine:      NOT pinned to a core ({why}); latency will be less predictable"
        ),
    }
    if !matches!(cfg.log.output, aegis_shared::config::LogOutput::Stdout) {
        // The log goes elsewhere: still tell the person at the terminal where to look.
        println!(
            "aegis {} running in {} mode; dashboard {url}; certificate SHA-256 {}",
            env!("CARGO_PKG_VERSION"),
            cfg.trading_mode.banner(),
            ident.fingerprint
        );
    }

    // Run until a signal, or until the engine ends by itself.
    let why = loop {
        tokio::select! {
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if engine_thread.is_finished() || live.engine_stopped() {
                    break "engine stopped";
                }
            }
        }
    };
    let t_stop = Instant::now();
    let _ = hb_stop.send(true);
    if engine_thread.is_finished() && !live.engine_stopped() {
        // The engine thread ended without reporting `Stopped` (a panic): the pump cannot see that, so say it here.
        if let Some((d, _)) = &alerts {
            let _ = d.send(crate::alerts::Alert::new(
                crate::alerts::Kind::Control(crate::alerts::ControlAlert::EngineStopped),
                now_ms(),
            ));
        }
    }
    tracing::info!(
        reason = why,
        "shutting down: no new entries, draining queues, flushing the journal"
    );
    let _ = pump.commands.send(Issued {
        command: Command::Shutdown,
        source: format!("signal:{why}"),
    });
    while !(live.engine_stopped() || engine_thread.is_finished())
        && t_stop.elapsed() < ENGINE_STOP_WAIT
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let engine_stopped = live.engine_stopped() || engine_thread.is_finished();
    // Give the engine thread a moment to exit and close its queues, so the pump ends on its own.
    while !engine_thread.is_finished() && t_stop.elapsed() < ENGINE_STOP_WAIT {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pump.request_stop();
    let writer = tokio::task::spawn_blocking(move || pump.join())
        .await
        .ok()
        .flatten();
    if engine_thread.is_finished() {
        tokio::task::spawn_blocking(move || engine_thread.join())
            .await
            .ok();
    }
    if let Some(db) = db.take() {
        // After the final fsync: let the writer store the rest, bounded so the whole stop fits the budget.
        let left = SHUTDOWN_BUDGET
            .saturating_sub(t_stop.elapsed())
            .saturating_sub(Duration::from_millis(1500));
        db.shutdown(left.clamp(Duration::from_millis(200), Duration::from_secs(3)))
            .await;
    }
    server.shutdown(Duration::from_millis(300)).await;
    if let Some(r) = redirect {
        r.shutdown(Duration::from_millis(100)).await;
    }
    let _ = std::fs::remove_file(crate::ops::admin::token_path(&cfg.data_dir));
    if let Some((d, h)) = alerts {
        // Let queued alerts (a kill switch just before the signal) go out, within the shutdown budget.
        drop(d);
        if tokio::time::timeout(Duration::from_millis(800), h)
            .await
            .is_err()
        {
            tracing::warn!("some alerts were still being delivered at exit");
        }
    }
    let v = live.view();
    tracing::info!(
        fills = v.ledger.fills,
        open_positions = v.ledger.open_positions().count(),
        realized_pnl = %v.ledger.realized_pnl,
        fees = %v.ledger.fees,
        journal_records = live.journal.records.load(std::sync::atomic::Ordering::Relaxed),
        durable_offset = live.journal.durable_offset(),
        elapsed_ms = t_stop.elapsed().as_millis() as u64,
        "stopped"
    );
    drop(v);
    if writer.is_none() {
        tracing::error!("the journal pump thread panicked; the journal may miss the last batch");
    }
    if !engine_stopped {
        return Err(RunError::ShutdownTimeout(ENGINE_STOP_WAIT));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_only_go_up() {
        assert_eq!(next_session(None, 100), 100);
        assert_eq!(next_session(Some(50), 100), 100);
        assert_eq!(next_session(Some(100), 100), 101);
        assert_eq!(next_session(Some(500), 100), 501);
        assert_eq!(next_session(Some(u64::MAX), 1), u64::MAX);
    }
}
