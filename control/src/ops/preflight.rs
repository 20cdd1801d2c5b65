//! `aegis preflight`: every input of [`crate::preflight`] gathered — the machine (files, git, backups, cron),
//! the exchange (`apiRestrictions` of the production key), Postgres (`SHOW listen_addresses`) and the key-age
//! store — then the checks, the rendering, and the gate that keeps `TRADING_MODE=live` from starting while any
//! check FAILs.

use super::keys::{self as keymod, KeyAge};
use super::probe::{self, Endpoints, KeyEnv};
use crate::config::env::{keys, EnvSource};
use crate::preflight::{self, gather, CheckResult, Inputs, Report, Status};
use aegis_shared::config::Config;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `deploy/backup.sh`'s default `BACKUP_DIR`.
pub const DEFAULT_BACKUP_DIR: &str = "/var/backups/aegis";
/// How long the Postgres check may take.
pub const PG_TIMEOUT: Duration = Duration::from_secs(3);

/// The gathered inputs plus what could not be gathered (shown under the table).
#[derive(Debug, Clone, Default)]
pub struct Gathered {
    /// Inputs of the checks.
    pub inputs: Inputs,
    /// Configured keys and their ages.
    pub key_ages: Vec<KeyAge>,
    /// Notes: what was not checked and why (never a secret).
    pub notes: Vec<String>,
}

/// What Postgres says about where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgListen {
    /// `SHOW listen_addresses`.
    pub listen_addresses: String,
    /// The server's address as seen on this connection (`inet_server_addr()`).
    pub server_addr: Option<IpAddr>,
}

/// Connects to `DATABASE_URL` and asks where Postgres listens.
pub async fn pg_listen(url: &str) -> Result<PgListen, String> {
    let fut = async {
        let client = crate::db::connect(url).await.map_err(|e| e.to_string())?;
        let row = client
            .query_one("SHOW listen_addresses", &[])
            .await
            .map_err(|e| e.to_string())?;
        let listen: String = row.get(0);
        let server_addr = client
            .query_one("SELECT host(inet_server_addr())", &[])
            .await
            .ok()
            .and_then(|r| r.get::<_, Option<String>>(0))
            .and_then(|s| s.parse().ok());
        Ok(PgListen {
            listen_addresses: listen,
            server_addr,
        })
    };
    tokio::time::timeout(PG_TIMEOUT, fut)
        .await
        .map_err(|_| format!("no answer within {PG_TIMEOUT:?}"))?
}

/// True when the `DATABASE_URL` host is loopback but the server sees the connection arrive on a non-loopback
/// address: the connection was forwarded into a container by a port published on loopback
/// (`127.0.0.1:5432:5432` in `deploy/docker-compose.yml`), so `listen_addresses = '*'` inside is fine.
pub fn containerised_loopback(db_url: &str, server_addr: Option<IpAddr>) -> bool {
    let host = db_url
        .split_once("://")
        .map(|(_, r)| r)
        .and_then(|r| r.split(['/', '?']).next())
        .map(|a| a.rsplit_once('@').map(|(_, h)| h).unwrap_or(a))
        .map(|h| {
            if let Some(rest) = h.strip_prefix('[') {
                rest.split(']').next().unwrap_or("").to_string()
            } else {
                h.rsplit_once(':').map(|(h, _)| h).unwrap_or(h).to_string()
            }
        })
        .unwrap_or_default();
    let host_loopback =
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    host_loopback && server_addr.is_some_and(|a| !a.is_loopback())
}

/// Gathers every input. The exchange is asked only when a production key is configured; Postgres only when
/// `DATABASE_URL` is set. Each failure becomes a note and leaves its input unknown (the check WARNs).
pub async fn gather_all(cfg: &Config, env: &EnvSource, now_ms: u64) -> Gathered {
    let deploy = env.deploy_dir();
    let backup_dir = env
        .get(keys::BACKUP_DIR)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BACKUP_DIR));
    let mut g = Gathered {
        inputs: gather::collect(cfg, &deploy, &backup_dir),
        ..Gathered::default()
    };
    // The .env actually read may have another name than `.env` (--env-file).
    if let Some(mode) = keymod::env_mode(&env.path) {
        g.inputs.env_file = Some((env.path.clone(), mode));
        if let Some(name) = env.path.file_name() {
            g.inputs.key_scan.files.retain(|f| f.as_os_str() != name);
        }
    }
    match keymod::observe_configured(cfg, now_ms) {
        Ok(ages) => {
            g.inputs.production_key_age_days = ages
                .iter()
                .find(|a| a.environment == KeyEnv::Production)
                .map(|a| a.age_days);
            g.key_ages = ages;
        }
        Err(e) => g.notes.push(format!("key age unknown: {e}")),
    }
    let k = &cfg.keys;
    if !k.api_key.is_empty() {
        let ends = Endpoints::for_env(cfg, KeyEnv::Production);
        let rep = probe::probe(&ends, &k.api_key, &k.secret_key).await;
        match rep.restrictions {
            Some(Ok(r)) => g.inputs.api_restrictions = Some(r),
            Some(Err(e)) => g.notes.push(format!(
                "apiRestrictions of the production key not fetched from {}: {e}",
                ends.sapi.as_deref().unwrap_or("-")
            )),
            None => {}
        }
    }
    if let Some(url) = &cfg.database_url {
        match pg_listen(url.expose()).await {
            Ok(pg) => {
                g.inputs.pg_containerised_loopback =
                    containerised_loopback(url.expose(), pg.server_addr);
                g.inputs.pg_listen_addresses = Some(pg.listen_addresses);
            }
            Err(e) => g
                .notes
                .push(format!("Postgres listen_addresses not checked: {e}")),
        }
    }
    g
}

/// The key-age check: WARN when a configured key is past its rotation age.
pub fn key_age_check(ages: &[KeyAge]) -> CheckResult {
    let due: Vec<&KeyAge> = ages.iter().filter(|a| a.warning.is_some()).collect();
    let summary = ages
        .iter()
        .map(|a| {
            format!(
                "{} {} {}d",
                a.environment.as_str(),
                a.fingerprint,
                a.age_days
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    CheckResult {
        id: "keys.age",
        title: "API keys rotated on schedule",
        status: if due.is_empty() {
            Status::Pass
        } else {
            Status::Warn
        },
        detail: if ages.is_empty() {
            "no keys configured".into()
        } else {
            summary
        },
        fix: if due.is_empty() {
            String::new()
        } else {
            "create a new key on Binance, `aegis keys rotate`, delete the old key after 24 h (guide §1.4)".into()
        },
    }
}

/// Runs every check over the gathered inputs.
pub fn report(cfg: &Config, g: &Gathered) -> Report {
    let mut r = preflight::run(cfg, &g.inputs);
    r.results.push(key_age_check(&g.key_ages));
    r
}

/// The table plus the notes.
pub fn render_table(r: &Report, g: &Gathered) -> String {
    let mut s = r.table();
    for n in &g.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    s
}

/// The JSON document plus the notes.
pub fn render_json(r: &Report, g: &Gathered) -> serde_json::Value {
    let mut j = r.json();
    j["notes"] = serde_json::json!(g.notes);
    j
}

/// For `TRADING_MODE=live` at start: `Err(text)` (the table of the failed run) while any check FAILs.
pub async fn live_gate(cfg: &Config, env: &EnvSource) -> Result<Vec<String>, String> {
    let g = gather_all(cfg, env, crate::journal::now_ms()).await;
    let r = report(cfg, &g);
    if r.has_fail() {
        return Err(render_table(&r, &g));
    }
    let mut warnings: Vec<String> = r
        .results
        .iter()
        .filter(|c| c.status == Status::Warn)
        .map(|c| format!("preflight WARN {}: {} (fix: {})", c.id, c.detail, c.fix))
        .collect();
    warnings.extend(g.notes.iter().map(|n| format!("preflight note: {n}")));
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_heuristic() {
        let u = "postgres://aegis:pw@127.0.0.1:5432/aegis";
        assert!(containerised_loopback(
            u,
            Some("172.18.0.2".parse().unwrap())
        ));
        assert!(!containerised_loopback(
            u,
            Some("127.0.0.1".parse().unwrap())
        ));
        assert!(!containerised_loopback(u, None));
        assert!(!containerised_loopback(
            "postgres://a:b@db.example.com/aegis",
            Some("10.0.0.2".parse().unwrap())
        ));
        assert!(containerised_loopback(
            "postgres://a:b@localhost/aegis?sslmode=disable",
            Some("172.18.0.2".parse().unwrap())
        ));
        assert!(containerised_loopback(
            "postgres://a:b@[::1]:5432/aegis",
            Some("172.18.0.2".parse().unwrap())
        ));
    }

    /// Postgres on 0.0.0.0, simulated through the gathered inputs: FAIL, unless the port is published on loopback
    /// only from a container. The key-age row is part of the report.
    #[test]
    fn pg_on_all_addresses_fails_the_report() {
        let cfg = Config::from_lookup(|k| {
            (k == "DATABASE_URL").then(|| {
                "postgres://aegis:Zx9kQ2mW7vR4tY8uP3sL6nB1cF5hJ0gD@127.0.0.1:5432/aegis".to_string()
            })
        })
        .unwrap();
        let mut g = Gathered::default();
        g.inputs.pg_listen_addresses = Some("0.0.0.0".into());
        let r = report(&cfg, &g);
        assert_eq!(r.get("db.listen_addresses").unwrap().status, Status::Fail);
        assert!(r.has_fail());
        assert!(r.get("keys.age").is_some());
        g.inputs.pg_containerised_loopback = true;
        assert_eq!(
            report(&cfg, &g).get("db.listen_addresses").unwrap().status,
            Status::Pass
        );
        g.inputs.pg_listen_addresses = None;
        g.notes
            .push("Postgres listen_addresses not checked: x".into());
        let r = report(&cfg, &g);
        assert_eq!(r.get("db.listen_addresses").unwrap().status, Status::Warn);
        assert!(render_table(&r, &g).contains("note: Postgres"));
        assert_eq!(
            render_json(&r, &g)["notes"][0],
            "Postgres listen_addresses not checked: x"
        );
    }

    #[test]
    fn key_age_check_warns_only_when_due() {
        let fresh = KeyAge {
            environment: KeyEnv::Production,
            fingerprint: "sha256:1".into(),
            age_days: 3,
            warning: None,
        };
        assert_eq!(
            key_age_check(std::slice::from_ref(&fresh)).status,
            Status::Pass
        );
        let old = KeyAge {
            age_days: 45,
            warning: keymod::age_warning(KeyEnv::Production, "sha256:1", 45),
            ..fresh
        };
        let c = key_age_check(&[old]);
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("45d"));
    }
}
