//! The operating commands as the binary runs them: load settings, do the work, print, return the exit code
//! (0 fine, 1 refused or a FAIL, 2 bad configuration). Nothing printed here ever contains a secret.

use super::admin::{self, Action, Credential};
use super::probe::KeyEnv;
use super::{incident, keycmd, preflight};
use crate::cli::{ControlArgs, IncidentArgs, KillArgs, PreflightArgs, RotateArgs};
use crate::config::env::{keys as envkeys, EnvSource};
use aegis_shared::config::{parse_duration, Config};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Settings for a command: the `.env` source and the validated config. Unlike `aegis run`, a `.env` readable by
/// others does not stop these commands (preflight and the audit must be able to report it).
pub fn load(env_file: &Path) -> Result<(EnvSource, Config), u8> {
    let env = EnvSource::load(env_file).map_err(bad_config)?;
    let cfg = Config::from_lookup(|k| env.get(k)).map_err(bad_config)?;
    Ok((env, cfg))
}

/// Settings that cannot be read or do not validate: said once, exit code 2.
fn bad_config(e: impl std::fmt::Display) -> u8 {
    eprintln!("aegis: {e}");
    2
}

/// [`load`] plus the runtime, for the commands that talk to the exchange or the database.
fn load_with_runtime(env_file: &Path) -> Result<(EnvSource, Config, tokio::runtime::Runtime), u8> {
    let (env, cfg) = load(env_file)?;
    Ok((env, cfg, runtime()?))
}

/// A checklist-style report: `--json` for machines, the table for people.
fn print_report(
    json: bool,
    as_json: impl FnOnce() -> serde_json::Value,
    table: impl FnOnce() -> String,
) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&as_json()).unwrap_or_default()
        );
    } else {
        print!("{}", table());
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    cli_runtime(1)
}

/// A single-threaded runtime for one command; `code` is the command's exit code when none can be started.
pub(crate) fn cli_runtime(code: u8) -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("aegis: cannot start the async runtime: {e}");
            code
        })
}

/// `aegis preflight [--json]`.
pub fn preflight_cmd(env_file: &Path, args: &PreflightArgs) -> u8 {
    let (env, cfg, rt) = match load_with_runtime(env_file) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let g = rt.block_on(preflight::gather_all(&cfg, &env, crate::journal::now_ms()));
    let r = preflight::report(&cfg, &g);
    print_report(
        args.json,
        || preflight::render_json(&r, &g),
        || preflight::render_table(&r, &g),
    );
    u8::from(r.has_fail())
}

/// For `aegis run`: in live mode, the preflight gate; in every mode, key-age warnings. Returns the warnings to
/// show, or the exit code when live must not start.
pub fn run_gate(env_file: &Path, cfg: &Config) -> Result<Vec<String>, u8> {
    let env = EnvSource::load(env_file).map_err(bad_config)?;
    let mut warnings = Vec::new();
    match super::keys::observe_configured(cfg, crate::journal::now_ms()) {
        Ok(ages) => warnings.extend(ages.into_iter().filter_map(|a| a.warning)),
        Err(e) => warnings.push(format!("key age unknown: {e}")),
    }
    if cfg.trading_mode == aegis_shared::TradingMode::Live {
        let rt = runtime()?;
        match rt.block_on(preflight::live_gate(cfg, &env)) {
            Ok(w) => warnings.extend(w),
            Err(table) => {
                eprint!("{table}");
                eprintln!("aegis: TRADING_MODE=live refused: the preflight checklist has a FAIL (above); fix it, run `aegis preflight`, then start again");
                return Err(1);
            }
        }
    }
    Ok(warnings)
}

/// Optional parts of a run that need settings beyond [`Config`] (issue 8), read by [`run_extras`] and given to
/// `crate::runtime::run_with`.
#[derive(Debug, Clone)]
pub struct RunExtras {
    /// Alert channels (`ALERT_*`); `None`: no alert dispatcher.
    pub alerts: Option<crate::alerts::AlertConfig>,
    /// `ALERT_EXCHANGE_ERRORS_PER_MINUTE`.
    pub errors_per_minute: u32,
    /// `ALERT_HEARTBEAT_SECONDS`.
    pub heartbeat_stall: std::time::Duration,
    /// The settings of this start, secrets masked; changes since the last start are recorded in Postgres.
    pub settings: crate::db::config_log::Settings,
    /// `FLEET_*`: the lease per API key and the host's shared request-weight budget.
    pub fleet: crate::fleet::FleetSettings,
}

impl Default for RunExtras {
    fn default() -> Self {
        Self {
            alerts: None,
            errors_per_minute: crate::watch::DEFAULT_ERRORS_PER_MINUTE,
            heartbeat_stall: std::time::Duration::from_secs(crate::watch::DEFAULT_HEARTBEAT_SECS),
            settings: Default::default(),
            fleet: Default::default(),
        }
    }
}

/// The `ALERT_*` settings and thresholds for `aegis run`.
pub fn run_extras(env_file: &Path, cfg: &Config) -> Result<RunExtras, u8> {
    let env = EnvSource::load(env_file).map_err(bad_config)?;
    // Where the running bot re-reads its key on `POST /api/local/keys/reload`.
    super::keyreload::set_env_file(env_file);
    let alerts = crate::alerts::AlertConfig::from_lookup(|k| env.get(k), cfg.trading_mode)
        .map_err(bad_config)?;
    Ok(RunExtras {
        alerts: Some(alerts),
        errors_per_minute: env.number(
            envkeys::ALERT_EXCHANGE_ERRORS_PER_MINUTE,
            crate::watch::DEFAULT_ERRORS_PER_MINUTE as u64,
        ) as u32,
        heartbeat_stall: std::time::Duration::from_secs(env.number(
            envkeys::ALERT_HEARTBEAT_SECONDS,
            crate::watch::DEFAULT_HEARTBEAT_SECS,
        )),
        settings: crate::db::config_log::settings_from(|k| env.get(k)),
        fleet: crate::fleet::FleetSettings::from_env(&env).map_err(bad_config)?,
    })
}

/// `aegis keys audit [--json]`.
pub fn keys_audit(env_file: &Path, args: &PreflightArgs) -> u8 {
    let (env, cfg, rt) = match load_with_runtime(env_file) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let r = rt.block_on(keycmd::audit(&cfg, &env, crate::journal::now_ms()));
    print_report(
        args.json,
        || r.json(),
        || {
            r.table()
                .replacen("Aegis preflight", "Aegis key audit", 1)
                .replace(
                    "the guide's checklist before going live",
                    "the guide's monthly audit (§1.5)",
                )
        },
    );
    u8::from(r.has_fail())
}

/// `aegis keys rotate`.
pub fn keys_rotate(env_file: &Path, args: &RotateArgs) -> u8 {
    let (env, cfg) = match load(env_file) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let pair = match keycmd::read_input(args.from_file.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("aegis: {e}");
            return 1;
        }
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    let opts = keycmd::RotateOptions {
        which: if args.testnet {
            KeyEnv::Testnet
        } else {
            KeyEnv::Production
        },
        no_verify: args.no_verify,
    };
    let result = rt.block_on(async {
        let r = keycmd::rotate(&cfg, &env, pair, opts, crate::journal::now_ms()).await?;
        // The expected key_changed alert, delivered before the command returns.
        if let Ok(ac) = crate::alerts::AlertConfig::from_lookup(|k| env.get(k), cfg.trading_mode) {
            if !ac.channels.is_empty() {
                if let Ok((d, h)) = crate::alerts::AlertDispatcher::spawn(ac) {
                    let _ = d.send(crate::alerts::Alert::new(
                        crate::alerts::Kind::Control(crate::alerts::ControlAlert::KeyChanged),
                        crate::journal::now_ms(),
                    ));
                    drop(d);
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), h).await;
                }
            }
        }
        // The running bot switches to the new key now (no restart); no bot running: it starts with it.
        let switched = switch_running_bot(&cfg).await;
        Ok::<_, String>((r, switched))
    });
    match result {
        Ok((r, switched)) => {
            println!(
                "rotated the {} key: {} -> {} ({})",
                opts.which.as_str(),
                r.old.as_deref().unwrap_or("none"),
                r.new,
                if r.verified {
                    "verified against the exchange"
                } else {
                    "NOT verified"
                }
            );
            println!("{} updated atomically (mode 600)", env.path.display());
            for n in &r.notes {
                println!("- {n}");
            }
            let code = match switched {
                Ok(Some(v)) if v["switched"] == true => {
                    println!(
                        "the running bot switched to the new key without a restart: {}",
                        v["detail"]
                    );
                    u8::from(v["ok"] != true)
                }
                Ok(Some(v)) => {
                    // The bot re-read the same key: the process environment overrides `.env`.
                    eprintln!(
                        "aegis: the running bot did NOT switch: {}; remove the key variables from the bot's environment (unit file, compose) so it reads .env, then restart it",
                        v["note"].as_str().unwrap_or("it reads the same key")
                    );
                    1
                }
                Ok(None) => {
                    println!("no bot is running here: it will use the new key when it starts");
                    0
                }
                Err(e) => {
                    eprintln!("aegis: {e}");
                    eprintln!("aegis: .env holds the new key; the running bot still uses the old one: fix the cause, then restart the bot (systemctl restart aegis / docker compose restart aegis)");
                    1
                }
            };
            println!(
                "then: watch it trade for 24 h, and delete the old key on Binance (guide §1.4)"
            );
            code
        }
        Err(e) => {
            eprintln!("aegis: key rotation refused: {e}");
            1
        }
    }
}

/// Asks the running bot (local admin token, pinned certificate) to switch to the key just written. `Ok(None)`:
/// no bot is running with this `DATA_DIR`/`API_PORT`.
async fn switch_running_bot(cfg: &Config) -> Result<Option<serde_json::Value>, String> {
    let Ok(token) = admin::read_token(&cfg.data_dir) else {
        return Ok(None);
    };
    let (base, cert) = bot_endpoint(cfg);
    let Ok(fp) = admin::cert_fingerprint(&cert) else {
        return Ok(None);
    };
    let c = admin::pinned_client(&fp)?;
    admin::reload_keys(&c, &base, &token).await
}

/// The bot's local API base URL and certificate.
pub fn bot_endpoint(cfg: &Config) -> (String, PathBuf) {
    let ip: IpAddr = if cfg.api.bind_addr.is_loopback() {
        cfg.api.bind_addr
    } else {
        IpAddr::from([127, 0, 0, 1])
    };
    let host = match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    let cert = cfg
        .api
        .tls_cert_path
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("tls").join("cert.pem"));
    (format!("https://{host}:{}", cfg.api.port), cert)
}

fn control(env_file: &Path, action: Action, reason: &str) -> u8 {
    let (env, cfg) = match load(env_file) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let (base, cert) = bot_endpoint(&cfg);
    let out = (|| {
        let fp = admin::cert_fingerprint(&cert)?;
        let cred = match env.get(envkeys::AEGIS_ADMIN_USER) {
            Some(user) => {
                let password = match env.get(envkeys::AEGIS_ADMIN_PASSWORD) {
                    Some(p) => aegis_shared::Secret::new(p),
                    None => admin::prompt_password(&format!("password for {user}: "))?,
                };
                Credential::User { user, password }
            }
            None => Credential::LocalToken(admin::read_token(&cfg.data_dir).map_err(|e| {
                format!("{e} (or set AEGIS_ADMIN_USER to log in as a dashboard admin)")
            })?),
        };
        let rt = runtime().map_err(|_| "cannot start the async runtime".to_string())?;
        rt.block_on(async {
            let c = admin::pinned_client(&fp)?;
            admin::send(&c, &base, &cred, action, reason).await
        })
    })();
    match out {
        Ok(v) => {
            println!(
                "{}: sent to the bot at {base}; answer {}",
                match action {
                    Action::Halt => "halt",
                    Action::Resume => "resume",
                    Action::Kill { flatten: true } => "kill --flatten",
                    Action::Kill { flatten: false } => "kill",
                },
                v
            );
            0
        }
        Err(e) => {
            eprintln!("aegis: {e}");
            if matches!(action, Action::Kill { .. }) {
                eprintln!(
                    "aegis: fallback that needs no API: touch {}/KILL (the engine checks it every 250 ms)",
                    cfg.data_dir.display()
                );
            }
            // Checked after the failure, whatever it was (no certificate or token yet, a refused connection): a
            // bot that answers keeps exit 1 so nobody mistakes a refused halt for a stopped bot.
            if action == Action::Halt && admin::nobody_listens(&base) {
                eprintln!("aegis: no bot is running: nothing listens on {base}");
                return admin::EXIT_NOT_RUNNING;
            }
            1
        }
    }
}

/// `aegis halt`.
pub fn halt(env_file: &Path, a: &ControlArgs) -> u8 {
    control(env_file, Action::Halt, &a.reason)
}

/// `aegis resume`.
pub fn resume(env_file: &Path, a: &ControlArgs) -> u8 {
    control(env_file, Action::Resume, &a.reason)
}

/// `aegis kill [--flatten]`.
pub fn kill(env_file: &Path, a: &KillArgs) -> u8 {
    control(env_file, Action::Kill { flatten: a.flatten }, &a.reason)
}

/// `aegis incident-report --since 1h`.
pub fn incident_report(env_file: &Path, a: &IncidentArgs) -> u8 {
    let (_env, cfg) = match load(env_file) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let Some(window) = parse_duration(&a.since) else {
        eprintln!(
            "aegis: --since {:?}: use a duration like 30m, 1h, 24h, 7d or seconds",
            a.since
        );
        return 2;
    };
    let now = crate::journal::now_ms();
    let since = now.saturating_sub(window.as_millis() as u64);
    let mut inc = match incident::from_journal(&cfg.data_dir, since, now) {
        Ok(i) => i,
        Err(e) => {
            eprintln!(
                "aegis: cannot read the journal in {}: {e}",
                cfg.data_dir.display()
            );
            return 1;
        }
    };
    if let Some(url) = &cfg.database_url {
        match runtime() {
            Ok(rt) => rt.block_on(incident::add_from_db(&mut inc, url.expose())),
            Err(c) => return c,
        }
    } else {
        inc.notes.push(
            "no DATABASE_URL: the API access log and audited key events live in Postgres; the local key-event log is included"
                .into(),
        );
    }
    let ext = if a.json { "json" } else { "md" };
    let path = a.out.clone().unwrap_or_else(|| {
        let stamp = time::OffsetDateTime::now_utc();
        PathBuf::from(format!(
            "incident-{:04}{:02}{:02}T{:02}{:02}{:02}Z.{ext}",
            stamp.year(),
            stamp.month() as u8,
            stamp.day(),
            stamp.hour(),
            stamp.minute(),
            stamp.second()
        ))
    });
    let body = if a.json {
        serde_json::to_string_pretty(&inc.json()).unwrap_or_default()
    } else {
        inc.markdown()
    };
    if let Err(e) = super::write_private_atomic(&path, body.as_bytes()) {
        eprintln!("aegis: cannot write {}: {e}", path.display());
        return 1;
    }
    println!(
        "incident report written to {} (mode 600): {} orders, {} fills, {} errors, {} commands, {} key events, {} API requests",
        path.display(),
        inc.orders.len(),
        inc.fills.len(),
        inc.errors.len(),
        inc.commands.len(),
        inc.key_events.len(),
        inc.api_access.len()
    );
    0
}

/// `aegis reconcile --pnl [--since T] [--json]`: the journal's fills and funding against the exchange's
/// `userTrades` and `income` ([`super::pnl`]). 0 equal, 1 a difference, 2 an error (with what to do).
pub fn reconcile_pnl(env_file: &Path, args: &crate::cli::ReconcileArgs) -> u8 {
    let (_env, cfg) = match load(env_file) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let now = crate::journal::now_ms();
    let since = match args
        .since
        .as_deref()
        .map(|s| super::pnl::parse_since(s, now))
    {
        Some(Err(e)) => {
            eprintln!("aegis: {e}");
            return 2;
        }
        Some(Ok(ms)) => Some(ms),
        None => None,
    };
    let jdir = crate::journal::dir_in(&cfg.data_dir);
    let bot = match super::pnl::bot_books(&jdir, since.unwrap_or(0)) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "aegis: cannot read the bot's records: {e} (is DATA_DIR the bot's data directory?)"
            );
            return 2;
        }
    };
    let from = since.or(bot.first_ms).unwrap_or(now);
    if cfg.market == aegis_shared::Market::Spot {
        // The comparison reads futures' userTrades and income history; spot has neither income nor funding,
        // and its own trade history is not compared yet. Saying so beats comparing against the wrong market.
        eprintln!("aegis: reconcile --pnl compares with Binance USD-M futures' own books (userTrades, income) and has no spot comparison yet; with MARKETS=spot, check the bot's trades against the account's trade history on Binance (the running bot reconciles its positions with the spot balances by itself)");
        return 2;
    }
    let client = match crate::exchange::command_client(&cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aegis: {e}");
            return 2;
        }
    };
    if client.credentials().is_none() {
        eprintln!(
            "aegis: no API key for TRADING_MODE={}: set {} and its secret (a read-only key is enough)",
            cfg.trading_mode,
            if cfg.trading_mode == aegis_shared::TradingMode::Live {
                "BINANCE_API_KEY"
            } else {
                "BINANCE_TESTNET_API_KEY"
            }
        );
        return 2;
    }
    let rt = match runtime() {
        Ok(r) => r,
        Err(_) => return 2,
    };
    let symbols = {
        let mut s: std::collections::BTreeSet<_> = cfg.symbols.iter().copied().collect();
        s.extend(bot.trades.keys().map(|k| k.0));
        s.extend(bot.funding.keys().map(|k| k.0));
        s
    };
    let read = rt.block_on(async {
        use crate::exchange::trades;
        client.sync_time().await.map_err(|e| e.to_string())?;
        let to = client.now_ms();
        let income = trades::fetch_income(&client, from, to)
            .await
            .map_err(|e| e.to_string())?;
        let mut syms = symbols.clone();
        syms.extend(income.iter().filter_map(|r| r.symbol));
        let mut ex = super::pnl::ExchangeBooks {
            income,
            ..Default::default()
        };
        for s in syms {
            for t in trades::fetch_user_trades_between(&client, s, from, to)
                .await
                .map_err(|e| e.to_string())?
            {
                ex.trades.insert((t.symbol, t.id), t);
            }
        }
        Ok::<_, String>((ex, to))
    });
    let (ex, to) = match read {
        Ok(x) => x,
        Err(e) => {
            eprintln!(
                "aegis: cannot read the exchange's records ({} {}): {e}; check the network and the key \
                 (`aegis keys audit`), then run this again",
                client.endpoints.name, client.endpoints.fapi
            );
            return 2;
        }
    };
    let syms: Vec<_> = symbols.into_iter().collect();
    let r = super::pnl::compare(&bot, &ex, &syms, from, to);
    print_report(
        args.json,
        || super::pnl::render_json(&r),
        || super::pnl::render_text(&r),
    );
    u8::from(r.has_difference())
}
