//! The dashboard (issue 7) inside `aegis run`: its settings from the configuration, the read model seeded from
//! the journal and then fed by the pump after each event is journaled, commands that are journaled before they
//! reach the engine, and the one `GET /api/status` that carries the skeleton's fields as well as the dashboard's.

use crate::journal::{JournalError, JournalReader, JournalRecord};
use crate::pump::Issued;
use crate::state::Live;
use crate::web::backend::{
    AccessLogEntry, AuditEvent, AuditRecord, BackendError, BoxFut, DashboardBackend,
    DashboardSnapshot, TradesPage, TradesQuery,
};
use crate::web::model::{LiveModel, ModeAllocation, ModelInfo};
use crate::web::{WebConfig, WebConfigError};
use aegis_engine::risk::allocation::{Allocation, AllocationTracker};
use aegis_shared::config::{keys, Config, ConfigError, FeedKind};
use aegis_shared::{Command, EngineEvent, Notional, StrategyMode};
use crossbeam_channel::Sender;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The dashboard settings of `cfg`, validated: a bad value is a [`ConfigError`] naming the key and the fix
/// (never a secret's value), so `aegis run` stops with exit code 2 before anything starts.
pub fn web_config(cfg: &Config) -> Result<WebConfig, ConfigError> {
    let bind = SocketAddr::new(cfg.api.bind_addr, cfg.api.port);
    let lookup = |k: &str| -> Option<String> {
        match k {
            keys::JWT_SECRET => cfg.auth.jwt_secret.as_ref().map(|s| s.expose().clone()),
            keys::AUTH_ENABLED => Some(cfg.auth.enabled.to_string()),
            keys::JWT_EXPIRY => Some(format!("{}s", cfg.auth.jwt_expiry.as_secs())),
            _ => cfg
                .dashboard
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.clone()),
        }
    };
    WebConfig::from_lookup(bind, lookup).map_err(|e| match e {
        WebConfigError::Secret(p) => {
            let extra = if matches!(p, crate::auth::SecretProblem::Missing) {
                " (or, on a loopback BIND_ADDR only, set AUTH_ENABLED=false)"
            } else {
                ""
            };
            ConfigError::new(keys::JWT_SECRET, None, format!("{p}{extra}"))
        }
        WebConfigError::AuthOffNotLoopback(ip) => ConfigError::new(
            keys::AUTH_ENABLED,
            Some("false"),
            format!("use AUTH_ENABLED=true: the API binds to {ip}, which is not loopback"),
        ),
        WebConfigError::Invalid { key, value, hint } => ConfigError::new(key, Some(&value), hint),
        WebConfigError::Cidr(c) => ConfigError::new(
            c.key,
            Some(&c.value),
            "use comma-separated IP addresses or CIDR ranges, e.g. 203.0.113.45,10.0.0.0/8",
        ),
        WebConfigError::ConnCaps { per_ip, total } => ConfigError::new(
            keys::API_MAX_CONNECTIONS_PER_IP,
            Some(&per_ip.to_string()),
            format!("it is larger than API_MAX_CONNECTIONS ({total}); lower it or raise API_MAX_CONNECTIONS"),
        ),
    })
}

/// Describes the feed for the banner and the status API.
pub fn feed_description(cfg: &Config) -> String {
    // Testnet/live read Binance's market streams whatever FEED says (the simulated market is paper-only).
    if cfg.market == aegis_shared::Market::Spot {
        if let Some(e) = crate::exchange::env::SpotEndpoints::paper_market(cfg) {
            let over = if e.overridden { ", URL overridden" } else { "" };
            return format!(
                "Binance spot {} public market streams ({}/stream{over}), paper fills",
                e.name,
                aegis_engine::net::ws::redact(&e.stream)
            );
        }
        if let Some(e) = crate::exchange::env::Endpoints::for_config(cfg) {
            let over = if e.overridden { ", URL overridden" } else { "" };
            return format!(
                "Binance spot {} market streams ({}/stream{over})",
                e.name,
                aegis_engine::net::ws::redact(&e.spot_stream)
            );
        }
    }
    if let Some(e) = crate::exchange::env::Endpoints::paper_market(cfg) {
        let over = if e.overridden { ", URL overridden" } else { "" };
        return format!(
            "Binance USD-M futures {} public market streams ({}/stream{over}), paper fills",
            e.name,
            aegis_engine::net::ws::redact(&e.fstream)
        );
    }
    if let Some(e) = crate::exchange::env::Endpoints::for_config(cfg) {
        let over = if e.overridden { ", URL overridden" } else { "" };
        return format!(
            "Binance USD-M futures {} market streams ({}/stream{over})",
            e.name,
            aegis_engine::net::ws::redact(&e.fstream)
        );
    }
    match &cfg.feed {
        FeedKind::Sim => format!(
            "simulated market (seed {}, {} msg/s, {}x market speed)",
            cfg.sim.seed, cfg.sim.rate, cfg.sim.speed
        ),
        FeedKind::Replay { file, speed } => format!("replay of {} at {}x", file.display(), speed),
        // Handled above (paper on Binance); testnet/live returned earlier.
        FeedKind::Binance => "Binance USD-M futures market streams".into(),
    }
}

/// What the dashboard shows next to the live state: limits and the allocation per mode.
pub fn model_info(cfg: &Config, alloc: &Allocation, started_ms: u64) -> ModelInfo {
    let tracker = AllocationTracker::new(*alloc, cfg.capital_usd);
    ModelInfo {
        trading_mode: cfg.trading_mode,
        feed_source: feed_description(cfg),
        started_ms,
        max_position_usd: cfg.limits.max_position_usd,
        max_daily_loss_usd: cfg.limits.max_daily_loss_usd,
        allocation: StrategyMode::ALL
            .iter()
            .map(|m| {
                let a = alloc.mode(*m);
                ModeAllocation {
                    mode: *m,
                    enabled: cfg.modes_enabled.contains(m),
                    // Rate and Notional share the 1e-8 unit: the percent shown as an exact decimal.
                    capital_percent: Notional::from_units(a.percent.units()),
                    capital_usd: tracker.budget(*m),
                    max_positions: a.max_positions,
                    max_usd_per_position: a.max_usd_per_position,
                }
            })
            .collect(),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// Replays the journal's engine events (up to `valid_len`) into the model, so trades, PnL, positions and
/// breakers survive a restart on the dashboard too. Engine states are skipped: they describe the previous run.
pub fn seed_model(
    model: &LiveModel,
    journal_dir: &Path,
    valid_len: u64,
) -> Result<u64, JournalError> {
    let mut reader = JournalReader::open(journal_dir)?;
    let mut n = 0;
    for entry in reader.records_from(0)?.up_to(valid_len) {
        if let JournalRecord::Engine(e) = entry?.record {
            if !matches!(e, EngineEvent::State { .. }) {
                model.apply(&e);
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Where dashboard commands go: the pump, which journals each one before forwarding it. Filled in once the
/// pump runs; until then a control is answered 503.
#[derive(Debug, Clone, Default)]
pub struct CommandSlot(Arc<OnceLock<Sender<Issued>>>);

impl CommandSlot {
    /// Connects the slot to the pump's command queue.
    pub fn connect(&self, tx: Sender<Issued>) {
        let _ = self.0.set(tx);
    }

    /// Journals (through the pump) and forwards `cmd`; never blocks.
    pub fn send(&self, cmd: Command) -> Result<(), BackendError> {
        self.send_as(cmd, "dashboard".into())
    }

    /// [`Self::send`] with the journaled source, e.g. `api:<user>@<ip>` (the Postgres writer splits it into actor
    /// and source IP for the audit trail).
    pub fn send_as(&self, cmd: Command, source: String) -> Result<(), BackendError> {
        let tx = self
            .0
            .get()
            .ok_or_else(|| BackendError::Engine("starting".into()))?;
        tx.try_send(Issued {
            command: cmd,
            source,
        })
        .map_err(|e| {
            BackendError::Engine(match e {
                crossbeam_channel::TrySendError::Full(_) => "command queue full".into(),
                crossbeam_channel::TrySendError::Disconnected(_) => "stopping".into(),
            })
        })
    }
}

/// The runtime's [`DashboardBackend`]: the [`LiveModel`] plus the skeleton's status fields from [`Live`]; with
/// `DATABASE_URL`, audit rows, the access log and the audit view go to Postgres.
#[derive(Debug, Clone)]
pub struct RunBackend {
    /// The read model (fed by the pump).
    pub model: Arc<LiveModel>,
    /// The journal-derived state behind `/api/health`.
    pub live: Arc<Live>,
    /// Where commands go, with their `api:<user>@<ip>` source (`None`: through the model's sender).
    pub slot: Option<CommandSlot>,
    /// Postgres (`None` without `DATABASE_URL`: the in-memory audit trail and the log file only).
    pub db: Option<Arc<crate::db_link::DbSide>>,
}

impl DashboardBackend for RunBackend {
    fn snapshot(&self) -> DashboardSnapshot {
        self.model.snapshot()
    }
    fn trades(&self, q: TradesQuery) -> BoxFut<'_, Result<TradesPage, BackendError>> {
        self.model.trades(q)
    }
    fn send_command(&self, cmd: Command) -> Result<(), BackendError> {
        self.model.send_command(cmd)
    }
    fn send_command_from(
        &self,
        cmd: Command,
        actor: &str,
        ip: std::net::IpAddr,
    ) -> Result<(), BackendError> {
        match &self.slot {
            Some(slot) => slot.send_as(cmd, format!("api:{actor}@{ip}")),
            None => self.model.send_command(cmd),
        }
    }
    fn audit(&self, ev: AuditEvent) -> BoxFut<'_, Result<(), BackendError>> {
        let Some(db) = self.db.clone() else {
            return self.model.audit(ev);
        };
        Box::pin(async move {
            let stored = db.audit(&ev).await;
            // The in-memory trail (and its log line) keeps the event even when Postgres refused it.
            let _ = self.model.audit(ev).await;
            match stored {
                Ok(_) => Ok(()),
                Err(e) => {
                    tracing::error!(error = %e, "audit row not stored in Postgres");
                    Err(BackendError::Audit("database unavailable".into()))
                }
            }
        })
    }
    fn audit_log(
        &self,
        limit: u32,
        before_id: Option<u64>,
    ) -> BoxFut<'_, Result<Vec<AuditRecord>, BackendError>> {
        let Some(db) = self.db.clone() else {
            return self.model.audit_log(limit, before_id);
        };
        Box::pin(async move {
            match db.audit_log(limit, before_id).await {
                Ok(rows) => Ok(rows),
                Err(e) => {
                    // Better this run's events than nothing while the database is away.
                    tracing::warn!(error = %e, "audit view: Postgres unavailable, showing this run's in-memory trail");
                    self.model.audit_log(limit, before_id).await
                }
            }
        })
    }
    fn record_access(&self, entry: AccessLogEntry) {
        if let Some(db) = &self.db {
            db.record_access(entry.clone());
        }
        self.model.record_access(entry)
    }
    fn status_extra(&self) -> Option<serde_json::Value> {
        Some(self.live.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::allocation;
    use crate::journal::test_support::config as cfg;

    #[test]
    fn web_config_errors_name_the_key_and_never_the_secret() {
        let e = web_config(&cfg(&[])).unwrap_err();
        assert_eq!(e.key, "JWT_SECRET");
        assert!(e.to_string().contains("AUTH_ENABLED=false"), "{e}");
        let e = web_config(&cfg(&[(
            "JWT_SECRET",
            aegis_shared::config::JWT_SECRET_PLACEHOLDER,
        )]))
        .unwrap_err();
        assert!(!e.to_string().contains("change-me"), "{e}");
        assert!(web_config(&cfg(&[("AUTH_ENABLED", "false")])).is_ok());
        let strong = "q8Vd0pX3LmZr7TnY2sKw9bHc4JfG6aUe1Q";
        let w = web_config(&cfg(&[
            ("JWT_SECRET", strong),
            ("JWT_EXPIRY", "30m"),
            ("API_RATE_LIMIT_BURST", "7"),
        ]))
        .unwrap();
        assert_eq!(w.jwt_expiry.as_secs(), 1800);
        assert_eq!(w.rate_burst.get(), 7);
        let e = web_config(&cfg(&[
            ("JWT_SECRET", strong),
            ("DASHBOARD_ALLOWED_IPS", "10.0.0.0/8,not-an-ip"),
        ]))
        .unwrap_err();
        assert_eq!(e.key, "DASHBOARD_ALLOWED_IPS");
        assert!(e.to_string().contains("not-an-ip"));
    }

    #[test]
    fn allocation_over_100_percent_names_the_file_and_fix() {
        let d = crate::journal::test_support::temp_dir("alloc");
        let p = d.join("alloc.json");
        std::fs::write(
            &p,
            r#"{"mode_allocation": {"ultra_fast_scalp_percent": 60, "scalp_percent": 50}}"#,
        )
        .unwrap();
        let e = allocation(&cfg(&[("MODE_ALLOCATION_FILE", p.to_str().unwrap())])).unwrap_err();
        let m = e.to_string();
        assert_eq!(e.key, "MODE_ALLOCATION_FILE");
        assert!(m.contains("alloc.json") && m.contains("over 100"), "{m}");
        assert!(!m.contains('\n'));
        std::fs::write(
            &p,
            r#"{"mode_allocation": {"ultra_fast_scalp_percent": 10, "scalp_percent": 50}}"#,
        )
        .unwrap();
        let a = allocation(&cfg(&[("MODE_ALLOCATION_FILE", p.to_str().unwrap())])).unwrap();
        let info = model_info(
            &cfg(&[("CAPITAL_USD", "2000"), ("MODES_ENABLED", "scalp")]),
            &a,
            0,
        );
        let scalp = &info.allocation[StrategyMode::Scalp.index()];
        assert!(scalp.enabled);
        assert_eq!(scalp.capital_usd, Notional::from_int(1000));
        assert_eq!(scalp.capital_percent, Notional::from_int(50));
        assert!(!info.allocation[StrategyMode::Swing.index()].enabled);
    }
}
