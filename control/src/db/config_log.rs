//! Configuration changes between starts (guide §8.1 "record config changes"; the audit trail of issue 6).
//!
//! The bot's settings come from `.env` and the environment and only change across a restart, so each start
//! compares what it runs with against the last values recorded in `config_changes` and records every key that
//! differs (first start: every key that is set), each with its hash-chained audit row. Who: the operating-system
//! user that started the bot and the host (the only "who" a file edit has); where: `local`.
//!
//! Secrets are never recorded: a secret setting is `***` when set and empty when empty, so setting or emptying
//! one is recorded but a new value is not (a new API key is a key event of `aegis keys rotate`; a new JWT secret
//! or database password leaves no row).

use super::records::record_config_change;
use super::DbError;
use aegis_shared::config::keys;
use std::collections::BTreeMap;
use tokio_postgres::Client;

/// The settings of one start: key → the value the operator set (secrets masked). Keys left at their default
/// are absent.
pub type Settings = BTreeMap<String, String>;

/// What a set secret is recorded as.
pub const SECRET_SET: &str = "***";

/// The settings `lookup` gives for every known key, secrets masked.
pub fn settings_from(lookup: impl Fn(&str) -> Option<String>) -> Settings {
    keys::ALL
        .iter()
        .filter_map(|k| {
            let v = lookup(k)?;
            let shown = if keys::SECRETS.contains(k) && !v.is_empty() {
                SECRET_SET.to_string()
            } else {
                v
            };
            Some((k.to_string(), shown))
        })
        .collect()
}

/// "user@host" of this process, for the `actor` column.
pub fn local_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid:{}", proc_uid()));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

/// The real user id from `/proc` (no libc call needed for a label).
fn proc_uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(String::from))
        })
        .unwrap_or_else(|| "?".into())
}

/// The last recorded value of every key (`None`: recorded as unset).
async fn recorded(client: &Client) -> Result<BTreeMap<String, Option<String>>, DbError> {
    let rows = client
        .query(
            "SELECT DISTINCT ON (key) key, new_value FROM config_changes ORDER BY key, id DESC",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Records every key whose value differs from the last recorded one (a key no longer set is recorded with no
/// new value). Returns how many changes were recorded. Safe to repeat: a second call with the same settings
/// records nothing.
pub async fn record_changes(
    client: &mut Client,
    now: &Settings,
    actor: &str,
) -> Result<usize, DbError> {
    let before = recorded(client).await?;
    let mut changes: Vec<(&str, Option<&str>, Option<&str>)> = Vec::new();
    for (k, v) in now {
        let old = before.get(k).and_then(|o| o.as_deref());
        if old != Some(v.as_str()) {
            changes.push((k, old, Some(v)));
        }
    }
    for (k, old) in &before {
        if old.is_some() && !now.contains_key(k) {
            changes.push((k, old.as_deref(), None));
        }
    }
    for (k, old, new) in &changes {
        record_config_change(client, actor, "local", k, *old, *new).await?;
    }
    Ok(changes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_defaults_absent() {
        let env: BTreeMap<&str, &str> = [
            (keys::TRADING_MODE, "paper"),
            (keys::JWT_SECRET, "a-real-secret-value-of-enough-length"),
            (keys::BINANCE_API_KEY, ""),
            (keys::DATABASE_URL, "postgres://u:pw@127.0.0.1/db"),
        ]
        .into_iter()
        .collect();
        let s = settings_from(|k| env.get(k).map(|v| v.to_string()));
        assert_eq!(s.len(), 4);
        assert_eq!(s[keys::TRADING_MODE], "paper");
        assert_eq!(s[keys::JWT_SECRET], SECRET_SET);
        assert_eq!(s[keys::DATABASE_URL], SECRET_SET);
        assert_eq!(
            s[keys::BINANCE_API_KEY],
            "",
            "an empty key is recorded as empty"
        );
        assert!(!s.contains_key(keys::SYMBOLS));
        assert!(local_actor().contains('@'));
    }
}
