//! Several bots, one database, one host (issue 15.5; guide §1.1 "never use the same key for multiple bots").
//!
//! - [`lease`]: the lease per API-key fingerprint in Postgres; a second bot with the same key refuses to start
//!   ([`FleetError::Held`], exit code 3) and names the holder.
//! - [`guard`]: takes the lease at start, renews it while running, halts new entries when it cannot prove it
//!   still holds it, releases it at a clean stop.
//! - [`budget`]: one request-weight budget per host, shared by every bot on it through a locked file.
//! - [`status`]: `aegis fleet status`.
//!
//! The choices (see `docs/FLEET.md`):
//! - `FLEET_LEASE=required` (default in live): the database must answer at start and the lease must be ours,
//!   else the bot does not start; a lease it cannot renew within its lease time halts new entries.
//! - `FLEET_LEASE=best-effort` (default in testnet): a dead database at start gives a warning and an alert, the
//!   lease is taken as soon as the database answers; a lease another instance took halts new entries, a dead
//!   database while running does not.
//! - `FLEET_LEASE=off`: no lease (and none without `DATABASE_URL` or a key: nothing to share then).

pub mod budget;
pub mod guard;
pub mod lease;
pub mod status;

use crate::config::env::EnvSource;
use aegis_shared::TradingMode;
use std::path::PathBuf;

/// Setting names (documented in `.env.example` and `docs/FLEET.md`).
pub mod keys {
    /// This bot's name in the lease table and `aegis fleet status`.
    pub const FLEET_INSTANCE_NAME: &str = "FLEET_INSTANCE_NAME";
    /// `required`, `best-effort` or `off`.
    pub const FLEET_LEASE: &str = "FLEET_LEASE";
    /// Lease time in seconds (3..=600, default 30); renewed every third of it.
    pub const FLEET_LEASE_SECONDS: &str = "FLEET_LEASE_SECONDS";
    /// Directory of the host's shared weight-budget file (default `/dev/shm`).
    pub const FLEET_BUDGET_DIR: &str = "FLEET_BUDGET_DIR";
    /// REQUEST_WEIGHT per minute all bots on this host may use together (1..=2400, default 1800).
    pub const FLEET_HOST_WEIGHT_PER_MINUTE: &str = "FLEET_HOST_WEIGHT_PER_MINUTE";
    /// The database every bot of the fleet shares for the lease table (default `DATABASE_URL`).
    pub const FLEET_DATABASE_URL: &str = "FLEET_DATABASE_URL";
    /// Every key above.
    pub const ALL: &[&str] = &[
        FLEET_DATABASE_URL,
        FLEET_INSTANCE_NAME,
        FLEET_LEASE,
        FLEET_LEASE_SECONDS,
        FLEET_BUDGET_DIR,
        FLEET_HOST_WEIGHT_PER_MINUTE,
    ];
}

/// Default `FLEET_LEASE_SECONDS`.
pub const DEFAULT_LEASE_SECS: u64 = 30;

/// How strictly the lease is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseMode {
    /// The lease must be taken at start; unrenewable halts entries.
    Required,
    /// Taken when the database answers; only a lease taken by another instance halts entries.
    BestEffort,
    /// No lease.
    Off,
}

impl LeaseMode {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::BestEffort => "best-effort",
            Self::Off => "off",
        }
    }
}

/// The fleet settings of `aegis run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    /// `FLEET_INSTANCE_NAME`, if set.
    pub instance: Option<String>,
    /// `FLEET_LEASE`, if set (else by trading mode, see [`FleetSettings::lease_mode`]).
    pub lease: Option<LeaseMode>,
    /// `FLEET_LEASE_SECONDS`.
    pub lease_secs: u64,
    /// The host weight budget.
    pub budget: budget::BudgetSettings,
    /// `FLEET_DATABASE_URL`, if set (else `DATABASE_URL` holds the lease table).
    pub database_url: Option<aegis_shared::Secret<String>>,
}

impl Default for FleetSettings {
    fn default() -> Self {
        Self {
            instance: None,
            lease: None,
            lease_secs: DEFAULT_LEASE_SECS,
            budget: budget::BudgetSettings::default(),
            database_url: None,
        }
    }
}

impl FleetSettings {
    /// Reads and checks the settings; the error names the setting and says what to write.
    pub fn from_env(env: &EnvSource) -> Result<Self, String> {
        let lease = match env
            .get(keys::FLEET_LEASE)
            .map(|v| v.trim().to_ascii_lowercase())
        {
            None => None,
            Some(v) => Some(match v.as_str() {
                "required" => LeaseMode::Required,
                "best-effort" | "best_effort" => LeaseMode::BestEffort,
                "off" => LeaseMode::Off,
                _ => {
                    return Err(format!(
                        "{}={v:?} is not a lease mode: use required, best-effort or off",
                        keys::FLEET_LEASE
                    ))
                }
            }),
        };
        let number = |key: &str, default: u64, lo: u64, hi: u64| -> Result<u64, String> {
            match env.get(key) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if (lo..=hi).contains(&n) => Ok(n),
                    _ => Err(format!(
                        "{key}={v:?}: use a whole number from {lo} to {hi} (default {default})"
                    )),
                },
            }
        };
        let instance = env
            .get(keys::FLEET_INSTANCE_NAME)
            .map(|s| s.trim().to_string());
        if let Some(i) = &instance {
            if i.len() > 100 || i.chars().any(char::is_control) {
                return Err(format!(
                    "{}: use at most 100 printable characters",
                    keys::FLEET_INSTANCE_NAME
                ));
            }
        }
        let database_url = env
            .get(keys::FLEET_DATABASE_URL)
            .map(|u| aegis_shared::Secret::new(u.trim().to_string()));
        if let Some(u) = &database_url {
            crate::db::connect::parse_url(u.expose())
                .map_err(|e| format!("{}: {e}", keys::FLEET_DATABASE_URL))?;
        }
        Ok(Self {
            database_url,
            instance,
            lease,
            lease_secs: number(keys::FLEET_LEASE_SECONDS, DEFAULT_LEASE_SECS, 3, 600)?,
            budget: budget::BudgetSettings {
                dir: env
                    .get(keys::FLEET_BUDGET_DIR)
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(budget::DEFAULT_DIR)),
                weight_per_minute: number(
                    keys::FLEET_HOST_WEIGHT_PER_MINUTE,
                    budget::DEFAULT_WEIGHT_PER_MINUTE,
                    1,
                    budget::BINANCE_WEIGHT_PER_MINUTE,
                )?,
            },
        })
    }

    /// The lease mode in effect for `mode`: the setting, else `required` in live, `best-effort` in testnet and
    /// `off` in paper (paper sends nothing with the key).
    pub fn lease_mode(&self, mode: TradingMode) -> LeaseMode {
        match mode {
            TradingMode::Paper => LeaseMode::Off,
            TradingMode::Live => self.lease.unwrap_or(LeaseMode::Required),
            TradingMode::Testnet => self.lease.unwrap_or(LeaseMode::BestEffort),
        }
    }
}

/// Why the fleet lease refuses a start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Another running instance holds the lease of this key.
    #[error("the API key {fingerprint} ({environment}) is already in use by another bot: {holder}. One key per bot (guide §1.1): give this bot its own key (a sub-account's), or stop the other bot; a crashed bot's lease frees itself when it expires. `aegis fleet status` lists the fleet")]
    Held {
        /// The key's fingerprint.
        fingerprint: String,
        /// `production` or `testnet`.
        environment: String,
        /// [`lease::LeaseRow::describe`] of the holder.
        holder: String,
    },
    /// Another running bot (another key) keeps its records in the same database as this bot's `DATABASE_URL`.
    #[error("DATABASE_URL: {db} already holds the records of another running bot ({others}); two bots' journal offsets and daily PnL rows would collide there. Give each bot its own database on the same server (CREATE DATABASE aegis_<name>) and share only FLEET_DATABASE_URL for the fleet lease (docs/FLEET.md)")]
    SharedRecords {
        /// `host:port/dbname`.
        db: String,
        /// The other instances, named.
        others: String,
    },
    /// `FLEET_LEASE=required` and the database did not answer (or failed) at start.
    #[error("FLEET_LEASE=required: cannot take the fleet lease of API key {fingerprint}: {why}. Without it nothing stops a second bot from trading this key; start Postgres (DATABASE_URL), or set FLEET_LEASE=best-effort to start without proof")]
    Unverified {
        /// The key's fingerprint.
        fingerprint: String,
        /// What failed (the database URL redacted).
        why: String,
    },
}

impl FleetError {
    /// Exit code of `aegis run`: 3 when another instance holds the key, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Held { .. } => 3,
            Self::SharedRecords { .. } => 2,
            Self::Unverified { .. } => 1,
        }
    }
}

/// This host's name (the kernel's), for the lease table.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_with_defaults_and_say_what_to_write() {
        let s = FleetSettings::from_env(&EnvSource::from_pairs(&[])).unwrap();
        assert_eq!(s, FleetSettings::default());
        assert_eq!(s.lease_mode(TradingMode::Live), LeaseMode::Required);
        assert_eq!(s.lease_mode(TradingMode::Testnet), LeaseMode::BestEffort);
        assert_eq!(s.lease_mode(TradingMode::Paper), LeaseMode::Off);
        let s = FleetSettings::from_env(&EnvSource::from_pairs(&[
            ("FLEET_LEASE", "off"),
            ("FLEET_LEASE_SECONDS", "5"),
            ("FLEET_HOST_WEIGHT_PER_MINUTE", "40"),
            ("FLEET_BUDGET_DIR", "/tmp/x"),
            ("FLEET_INSTANCE_NAME", "bot-a"),
        ]))
        .unwrap();
        assert_eq!(s.lease_mode(TradingMode::Live), LeaseMode::Off);
        assert_eq!(s.lease_secs, 5);
        assert_eq!(s.budget.weight_per_minute, 40);
        assert_eq!(s.budget.dir, PathBuf::from("/tmp/x"));
        assert_eq!(s.instance.as_deref(), Some("bot-a"));
        for (k, v, hint) in [
            ("FLEET_LEASE", "maybe", "required, best-effort or off"),
            ("FLEET_LEASE_SECONDS", "1", "from 3 to 600"),
            ("FLEET_HOST_WEIGHT_PER_MINUTE", "5000", "from 1 to 2400"),
        ] {
            let e = FleetSettings::from_env(&EnvSource::from_pairs(&[(k, v)])).unwrap_err();
            assert!(e.contains(k) && e.contains(hint), "{e}");
        }
    }

    #[test]
    fn env_example_documents_every_fleet_setting() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.env.example");
        let text = std::fs::read_to_string(p).unwrap();
        for k in keys::ALL {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{k}="))),
                "{k} missing from .env.example"
            );
        }
    }
}
