//! Settings lookup for the operating commands: the process environment wins over the `.env` file, empty values
//! count as unset (like the shared config). Parse errors never show the offending line: it may hold a secret.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Extra setting names used by the operating commands (documented in `.env.example`).
pub mod keys {
    /// Where `deploy/backup.sh` writes backups (preflight looks for the newest there).
    pub const BACKUP_DIR: &str = "BACKUP_DIR";
    /// Admin user for `aegis halt|resume|kill` when the dashboard's authentication is on.
    pub const AEGIS_ADMIN_USER: &str = "AEGIS_ADMIN_USER";
    /// That user's password (better: leave unset and type it at the prompt).
    pub const AEGIS_ADMIN_PASSWORD: &str = "AEGIS_ADMIN_PASSWORD";
    /// Exchange errors (order rejections, -2014/-2015) per minute that raise `exchange_error_rate` (default 10).
    pub const ALERT_EXCHANGE_ERRORS_PER_MINUTE: &str = "ALERT_EXCHANGE_ERRORS_PER_MINUTE";
    /// Seconds without an engine heartbeat before `engine_stopped` is raised (default 10).
    pub const ALERT_HEARTBEAT_SECONDS: &str = "ALERT_HEARTBEAT_SECONDS";

    /// Every key above, plus the health-check script's (all in `.env.example`).
    pub const ALL: &[&str] = &[
        BACKUP_DIR,
        AEGIS_ADMIN_USER,
        AEGIS_ADMIN_PASSWORD,
        ALERT_EXCHANGE_ERRORS_PER_MINUTE,
        ALERT_HEARTBEAT_SECONDS,
        "AEGIS_HEALTH_URL",
        "AEGIS_CACERT",
        "AEGIS_HEALTH_INSECURE",
        "HEALTH_REALERT_MINUTES",
        "DISK_MAX_PERCENT",
    ];
}

/// `.env` plus the process environment.
#[derive(Debug, Clone, Default)]
pub struct EnvSource {
    file: Option<HashMap<String, String>>,
    /// The `.env` path given (whether or not it exists).
    pub path: PathBuf,
}

impl EnvSource {
    /// Reads `path` if it exists.
    pub fn load(path: &Path) -> Result<Self, String> {
        let file = if path.exists() {
            let iter = dotenvy::from_path_iter(path)
                .map_err(|_| format!("cannot read {}; check its permissions", path.display()))?;
            let mut m = HashMap::new();
            for item in iter {
                let (k, v) = item.map_err(|_| {
                    format!(
                        "{}: a line cannot be parsed (not shown, it may hold a secret); use KEY=value",
                        path.display()
                    )
                })?;
                m.insert(k, v);
            }
            Some(m)
        } else {
            None
        };
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// A source with only the given pairs (tests).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self {
            file: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            path: PathBuf::from(".env"),
        }
    }

    /// The value of `key`: the environment first, then `.env`; empty = unset.
    pub fn get(&self, key: &str) -> Option<String> {
        std::env::var(key)
            .ok()
            .or_else(|| self.file.as_ref().and_then(|m| m.get(key).cloned()))
            .filter(|v| !v.trim().is_empty())
    }

    /// The folder the bot is deployed in: the `.env`'s folder.
    pub fn deploy_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// A positive number setting with a default.
    pub fn number(&self, key: &str, default: u64) -> u64 {
        self.get(key)
            .and_then(|v| v.trim().parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_example_documents_the_operating_and_alert_keys() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.env.example");
        let text = std::fs::read_to_string(&p).unwrap();
        for k in keys::ALL.iter().chain(crate::alerts::keys::ALL) {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{k}="))),
                "{k} missing from .env.example"
            );
        }
        let env = EnvSource::load(&p).unwrap();
        assert_eq!(env.number(keys::ALERT_HEARTBEAT_SECONDS, 1), 10);
        assert_eq!(env.get(keys::BACKUP_DIR), None);
        assert_eq!(env.deploy_dir(), p.parent().unwrap());
    }
}
