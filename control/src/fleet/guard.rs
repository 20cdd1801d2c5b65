//! The running bot's side of the lease: take it at start, renew it, halt new entries when it cannot prove it
//! holds it, release it at a clean stop. See the module docs of [`super`] for the modes.

use super::lease::{self, Acquired, Identity, Renewed};
use super::{FleetError, FleetSettings, LeaseMode};
use crate::alerts::{Alert, AlertDispatcher, ControlAlert, Kind};
use crate::db::Redactor;
use crate::db::{self, DbError};
use aegis_engine::venue::binance::Inbound;
use aegis_shared::config::Config;
use aegis_shared::event::HaltReason;
use aegis_shared::{Secret, TradingMode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// How long the first connection, migration and lease may take at start.
pub const START_WAIT: Duration = Duration::from_secs(10);

struct HaltLink {
    tx: Option<crossbeam_channel::Sender<Inbound>>,
    halted: bool,
}

static LINK: Mutex<HaltLink> = Mutex::new(HaltLink {
    tx: None,
    halted: false,
});

/// Connects the lease to the live engine's inbound queue (the exchange start-up calls it). A halt decided
/// before the engine existed is sent now.
pub fn attach_inbound(tx: crossbeam_channel::Sender<Inbound>) {
    let mut l = LINK.lock().unwrap_or_else(|e| e.into_inner());
    if l.halted {
        let _ = tx.send(Inbound::Halt(HaltReason::FleetLease));
    }
    l.tx = Some(tx);
}

fn set_halted(halted: bool) {
    let mut l = LINK.lock().unwrap_or_else(|e| e.into_inner());
    if l.halted == halted {
        return;
    }
    l.halted = halted;
    if let Some(tx) = &l.tx {
        let m = if halted {
            Inbound::Halt(HaltReason::FleetLease)
        } else {
            Inbound::Clear(HaltReason::FleetLease)
        };
        let _ = tx.send(m);
    }
}

/// True while the lease has new entries halted.
pub fn entries_halted() -> bool {
    LINK.lock().unwrap_or_else(|e| e.into_inner()).halted
}

/// What a key switch of the running bot needs to move the lease to the new key.
struct Active {
    id: Arc<Mutex<Identity>>,
    url: Secret<String>,
    ttl: f64,
    mode: LeaseMode,
    /// The database last said the lease is ours.
    held: Arc<std::sync::atomic::AtomicBool>,
}

static ACTIVE: Mutex<Option<Arc<Active>>> = Mutex::new(None);

fn active() -> Option<Arc<Active>> {
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The lease as `GET /api/status` shows it (`fleet`): `{"lease": "off"}` without one, else the lease mode,
/// whether it is held, the key's fingerprint, the instance name and whether it has entries halted.
pub fn status_json() -> serde_json::Value {
    match active() {
        None => serde_json::json!({"lease": "off"}),
        Some(a) => {
            let id = a.id.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let held = a.held.load(std::sync::atomic::Ordering::Relaxed);
            serde_json::json!({
                "lease": if held { "held" } else { "not_held" },
                "mode": a.mode.as_str(),
                "key_fingerprint": id.fingerprint,
                "instance": id.instance,
                "lease_seconds": a.ttl,
                "entries_halted": entries_halted(),
            })
        }
    }
}

/// Before a key switch of the running bot (`aegis keys rotate`): takes the lease of the new key too, so the
/// switch never makes this bot a second user of a key another bot holds. `Err` says why the switch must not
/// happen. Without a running lease (paper, no database, `FLEET_LEASE=off`) there is nothing to take.
pub async fn lease_new_key(new_fingerprint: &str) -> Result<(), String> {
    let Some(a) = active() else {
        return Ok(());
    };
    let mut id = a.id.lock().unwrap_or_else(|e| e.into_inner()).clone();
    id.fingerprint = new_fingerprint.to_string();
    let redact = Redactor::for_url(&a.url);
    let taken = tokio::time::timeout(Duration::from_secs(5), async {
        let mut c = db::connect(a.url.expose()).await?;
        lease::acquire(&mut c, &id, a.ttl).await
    })
    .await;
    match taken {
        Ok(Ok(Acquired::Taken { .. })) => Ok(()),
        Ok(Ok(Acquired::Held(row))) => Err(format!(
            "the new key {new_fingerprint} is already in use by another bot: {} (guide §1.1: one key per bot)",
            row.describe()
        )),
        Ok(Err(e)) if a.mode == LeaseMode::Required => Err(format!(
            "FLEET_LEASE=required: cannot take the fleet lease of the new key {new_fingerprint}: {}",
            redact.clean(&e.to_string())
        )),
        Err(_) if a.mode == LeaseMode::Required => Err(format!(
            "FLEET_LEASE=required: cannot take the fleet lease of the new key {new_fingerprint}: the database did not answer"
        )),
        _ => {
            tracing::warn!("fleet:       switching to key {new_fingerprint} without its fleet lease (FLEET_LEASE=best-effort, database unreachable)");
            Ok(())
        }
    }
}

/// After the key switch: on success the lease follows the new key (heartbeats renew it, the old key's is
/// released); on failure the new key's lease is given back.
pub async fn key_switched(new_fingerprint: &str, switched: bool) {
    let Some(a) = active() else {
        return;
    };
    let giving_back = {
        let mut cur = a.id.lock().unwrap_or_else(|e| e.into_inner());
        let mut other = cur.clone();
        if switched {
            cur.fingerprint = new_fingerprint.to_string();
        } else {
            other.fingerprint = new_fingerprint.to_string();
        }
        other
    };
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        let c = db::connect(a.url.expose()).await?;
        lease::release(&c, &giving_back).await
    })
    .await;
    if !matches!(r, Ok(Ok(_))) {
        tracing::warn!(
            "fleet:       the lease of key {} could not be released; it frees itself when it expires",
            giving_back.fingerprint
        );
    }
}

/// The held (or wanted) lease of a running bot.
pub struct LeaseGuard {
    alerts: Arc<Mutex<Option<AlertDispatcher>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseGuard").finish_non_exhaustive()
    }
}

/// The key of the trading mode, if any (paper and read-only trade no key: nothing to lease).
fn trading_key(cfg: &Config) -> Option<(&Secret<String>, &'static str)> {
    let (k, env) = match cfg.trading_mode {
        TradingMode::Paper => return None,
        TradingMode::Live => (&cfg.keys.api_key, "production"),
        TradingMode::Testnet => (&cfg.keys.testnet_api_key, "testnet"),
    };
    (!k.is_empty()).then_some((k, env))
}

/// This run's identity for the lease table.
pub fn identity(cfg: &Config, s: &FleetSettings) -> Option<Identity> {
    let (key, environment) = trading_key(cfg)?;
    let host = super::host_name();
    let data_dir = std::fs::canonicalize(&cfg.data_dir).unwrap_or_else(|_| cfg.data_dir.clone());
    let token: [u8; 16] = rand::random();
    Some(Identity {
        fingerprint: lease::fingerprint(key),
        environment: environment.to_string(),
        instance: s
            .instance
            .clone()
            .unwrap_or_else(|| format!("{host}:{}", data_dir.display())),
        host,
        pid: std::process::id() as i32,
        token: hex::encode(token),
        version: env!("CARGO_PKG_VERSION").to_string(),
        records_db: cfg
            .database_url
            .as_ref()
            .and_then(|u| lease::records_db_of(u.expose())),
    })
}

async fn connect_and_take(
    url: &Secret<String>,
    id: &Identity,
    ttl: f64,
) -> Result<(Client, Acquired), DbError> {
    let mut c = db::connect(url.expose()).await?;
    db::migrations::run(&mut c).await?;
    let a = lease::acquire(&mut c, id, ttl).await?;
    Ok((c, a))
}

/// The other running instances keeping their records in `id`'s records database, described; `None` if none (or
/// the check could not run: the lease itself is what matters most).
async fn has_sharers(c: &Client, id: &Identity) -> Option<String> {
    let rows = lease::records_db_sharers(c, id).await.ok()?;
    (!rows.is_empty()).then(|| {
        rows.iter()
            .map(|r| {
                format!(
                    "instance {:?} on host {:?} (pid {})",
                    r.instance, r.host, r.pid
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Takes the lease of the trading key before anything else starts (see [`super`] for the modes). `Ok(None)`: no
/// lease applies (paper, no key, no `DATABASE_URL`, `FLEET_LEASE=off`).
pub async fn start(cfg: &Config, s: &FleetSettings) -> Result<Option<LeaseGuard>, FleetError> {
    let mode = s.lease_mode(cfg.trading_mode);
    let Some(id) = identity(cfg, s) else {
        return Ok(None);
    };
    if mode == LeaseMode::Off {
        tracing::warn!(key = %id.fingerprint, "fleet:       FLEET_LEASE=off: nothing stops a second bot from trading this key (guide §1.1)");
        return Ok(None);
    }
    let Some(url) = s.database_url.clone().or_else(|| cfg.database_url.clone()) else {
        tracing::warn!(key = %id.fingerprint, "fleet:       no DATABASE_URL, so no fleet lease: nothing stops a second bot from trading this key (guide §1.1)");
        return Ok(None);
    };
    let ttl = s.lease_secs as f64;
    let redact = Redactor::for_url(&url);
    let first = match tokio::time::timeout(START_WAIT, connect_and_take(&url, &id, ttl)).await {
        Ok(Ok(x)) => Ok(x),
        Ok(Err(e)) => Err(redact.clean(&e.to_string())),
        Err(_) => Err(format!("the database did not answer within {START_WAIT:?}")),
    };
    let (client, held) = match first {
        Ok((_, Acquired::Held(row))) => {
            return Err(FleetError::Held {
                fingerprint: id.fingerprint,
                environment: id.environment,
                holder: row.describe(),
            })
        }
        Ok((c, Acquired::Taken { .. })) if has_sharers(&c, &id).await.is_some() => {
            let others = has_sharers(&c, &id).await.unwrap_or_default();
            let _ = lease::release(&c, &id).await;
            return Err(FleetError::SharedRecords {
                db: id.records_db.clone().unwrap_or_default(),
                others,
            });
        }
        Ok((c, Acquired::Taken { previous })) => {
            tracing::info!(
                "fleet:       lease of API key {} ({}) held as instance {:?} (lease {} s, renewed every {:.1} s)",
                id.fingerprint,
                id.environment,
                id.instance,
                s.lease_secs,
                ttl / 3.0
            );
            if let Some(p) = previous.filter(|p| p.state == "running") {
                tracing::warn!(
                    "fleet:       took over an expired lease: instance {:?} on host {:?} (pid {}) stopped renewing it {:.1} s ago without releasing it (crashed or cut off?)",
                    p.instance,
                    p.host,
                    p.pid,
                    p.heartbeat_age_ms as f64 / 1000.0
                );
            }
            (Some(c), true)
        }
        Err(why) if mode == LeaseMode::Required => {
            return Err(FleetError::Unverified {
                fingerprint: id.fingerprint,
                why,
            })
        }
        Err(why) => {
            tracing::warn!(
                "fleet:       FLEET_LEASE=best-effort: starting WITHOUT the fleet lease of API key {} ({why}); it is taken as soon as the database answers, and new entries halt if another bot holds it",
                id.fingerprint
            );
            (None, false)
        }
    };
    let alerts = Arc::new(Mutex::new(None));
    let shared_id = Arc::new(Mutex::new(id.clone()));
    let shared_held = Arc::new(std::sync::atomic::AtomicBool::new(held));
    *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(Active {
        id: shared_id.clone(),
        url: url.clone(),
        ttl,
        mode,
        held: shared_held.clone(),
    }));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(
        Keeper {
            id,
            shared_id,
            shared_held,
            url,
            redact,
            ttl,
            mode,
            client,
            held,
            last_ok: Instant::now(),
            alerts: alerts.clone(),
            db_down_logged: false,
        }
        .run(stop_rx),
    );
    Ok(Some(LeaseGuard { alerts, stop, task }))
}

impl LeaseGuard {
    /// Alerts go to `d` from now on.
    pub fn attach_alerts(&self, d: Option<AlertDispatcher>) {
        *self.alerts.lock().unwrap_or_else(|e| e.into_inner()) = d;
    }

    /// Stops renewing and releases the lease (call after the engine has stopped: no order may follow).
    pub async fn release(self, limit: Duration) {
        let _ = self.stop.send(true);
        *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if tokio::time::timeout(limit, self.task).await.is_err() {
            tracing::warn!(
                "fleet:       the lease was not released in time; it frees itself when it expires"
            );
        }
    }
}

struct Keeper {
    id: Identity,
    /// The identity a key switch may have moved to a new key (read at every heartbeat).
    shared_id: Arc<Mutex<Identity>>,
    /// `held`, for the status API.
    shared_held: Arc<std::sync::atomic::AtomicBool>,
    url: Secret<String>,
    redact: Redactor,
    ttl: f64,
    mode: LeaseMode,
    client: Option<Client>,
    /// The database last said the lease is ours.
    held: bool,
    /// When the database last confirmed it.
    last_ok: Instant,
    alerts: Arc<Mutex<Option<AlertDispatcher>>>,
    db_down_logged: bool,
}

impl Keeper {
    fn every(&self) -> Duration {
        Duration::from_secs_f64(self.ttl / 3.0)
    }

    fn alert(&self) {
        if let Some(d) = self
            .alerts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = d.send(Alert::new(
                Kind::Control(ControlAlert::FleetLeaseLost),
                crate::journal::now_ms(),
            ));
        }
    }

    fn halt(&self, why: &str) {
        if !entries_halted() {
            tracing::error!(
                key = %self.id.fingerprint,
                "fleet:       NEW ENTRIES HALTED: {why}; exits keep working"
            );
            set_halted(true);
            self.alert();
        }
    }

    async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.every()) => {}
                _ = stop.changed() => break,
            }
            self.id = self
                .shared_id
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            self.tick().await;
            self.shared_held
                .store(self.held, std::sync::atomic::Ordering::Relaxed);
        }
        self.id = self
            .shared_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let (Some(c), true) = (&self.client, self.held) {
            match tokio::time::timeout(Duration::from_secs(2), lease::release(c, &self.id)).await {
                Ok(Ok(true)) => {
                    tracing::info!(key = %self.id.fingerprint, "fleet:       lease released")
                }
                Ok(Ok(false)) => {}
                _ => tracing::warn!(
                    "fleet:       the lease could not be released; it frees itself when it expires"
                ),
            }
        }
    }

    async fn tick(&mut self) {
        let every = self.every();
        if self.client.is_none() {
            self.client = match tokio::time::timeout(every, db::connect(self.url.expose())).await {
                Ok(Ok(c)) => Some(c),
                _ => None,
            };
        }
        let outcome = match self.client.as_mut() {
            None => Err("the database is unreachable".to_string()),
            Some(c) => {
                let r = if self.held {
                    tokio::time::timeout(
                        every,
                        lease::renew(c, &self.id, self.ttl, entries_halted()),
                    )
                    .await
                    .map(|r| {
                        r.map(|x| match x {
                            Renewed::Kept => None,
                            Renewed::Lost(row) => Some(row),
                        })
                    })
                } else {
                    tokio::time::timeout(every, lease::acquire(c, &self.id, self.ttl))
                        .await
                        .map(|r| {
                            r.map(|x| match x {
                                Acquired::Taken { .. } => None,
                                Acquired::Held(row) => Some(Some(row)),
                            })
                        })
                };
                match r {
                    Ok(Ok(x)) => Ok(x),
                    Ok(Err(e)) => Err(self.redact.clean(&e.to_string())),
                    Err(_) => Err("the database did not answer in time".to_string()),
                }
            }
        };
        match outcome {
            Ok(None) => {
                if !self.held {
                    tracing::info!(key = %self.id.fingerprint, "fleet:       lease of the API key is ours (instance {:?})", self.id.instance);
                }
                self.held = true;
                self.last_ok = Instant::now();
                self.db_down_logged = false;
                if entries_halted() {
                    tracing::warn!(key = %self.id.fingerprint, "fleet:       the lease is ours again: new entries resume");
                    set_halted(false);
                    // Tell the table at once (the next heartbeat would too).
                    if let Some(c) = &self.client {
                        let _ = lease::renew(c, &self.id, self.ttl, false).await;
                    }
                }
            }
            Ok(Some(holder)) => {
                self.held = false;
                self.last_ok = Instant::now();
                let who = holder
                    .map(|h| h.describe())
                    .unwrap_or_else(|| "it was released".to_string());
                self.halt(&format!(
                    "another bot holds the fleet lease of API key {}: {who}",
                    self.id.fingerprint
                ));
            }
            Err(why) => {
                self.client = None;
                if !self.db_down_logged {
                    self.db_down_logged = true;
                    tracing::warn!(key = %self.id.fingerprint, "fleet:       cannot renew the fleet lease: {why}");
                }
                // Halt before the lease can expire (two missed heartbeats of three), so no other bot can take
                // it over while this one still opens positions.
                let at_risk = self.last_ok.elapsed().as_secs_f64() >= self.ttl * 2.0 / 3.0;
                if self.mode == LeaseMode::Required && self.held && at_risk {
                    self.halt(&format!(
                        "the fleet lease could not be renewed for {:.0} s ({why}) and may expire, after which another bot could take this key",
                        self.last_ok.elapsed().as_secs_f64()
                    ));
                }
            }
        }
    }
}
