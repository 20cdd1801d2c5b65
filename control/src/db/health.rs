//! What the bot shows of its database: the writer's health for `/api/health` ([`DbHealthSource`]) and the
//! [`Redactor`] that keeps `DATABASE_URL` and its password out of everything shown (health, logs, CLI). Both
//! only read the writer's state, so the API, the fleet lease and the CLI use them without the run-time link.

use super::{DbState, WriterHealth};
use aegis_shared::Secret;
use serde_json::{json, Value};
use tokio::sync::watch;

/// Removes the database URL and its password from text that is about to be shown (health, logs, CLI).
#[derive(Clone, Default)]
pub struct Redactor {
    needles: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor(***)")
    }
}

impl Redactor {
    /// A redactor for `url`: the whole URL and the password (when it has one) become `***`.
    pub fn for_url(url: &Secret<String>) -> Self {
        let mut needles = vec![url.expose().clone()];
        if let Ok(cfg) = super::connect::parse_url(url.expose()) {
            if let Some(p) = cfg.get_password() {
                if let Ok(p) = std::str::from_utf8(p) {
                    // A one-character password would redact half the message; such a password fails preflight.
                    if p.len() >= 2 {
                        needles.push(p.to_string());
                    }
                }
            }
        }
        needles.retain(|n| !n.is_empty());
        // Longest first, so the URL goes as a whole before its password inside it.
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Self { needles }
    }

    /// `text` with every secret replaced by `***`.
    pub fn clean(&self, text: &str) -> String {
        let mut s = text.to_string();
        for n in &self.needles {
            if s.contains(n.as_str()) {
                s = s.replace(n.as_str(), "***");
            }
        }
        s
    }
}

/// Reads the writer's health for `/api/health`.
#[derive(Debug, Clone)]
pub struct DbHealthSource {
    rx: watch::Receiver<WriterHealth>,
    redact: Redactor,
}

impl DbHealthSource {
    /// Health read from the writer's channel `rx`; errors shown through `redact`.
    pub fn new(rx: watch::Receiver<WriterHealth>, redact: Redactor) -> Self {
        Self { rx, redact }
    }

    /// The current health.
    pub fn current(&self) -> WriterHealth {
        self.rx.borrow().clone()
    }

    /// Adds `"database": {state, lag_records, stored_records, last_error}` to a `/api/health` body and turns an
    /// `ok` status into `degraded` (with a reason) unless the writer is connected and caught up.
    pub fn merge_into(&self, body: &mut Value) {
        let h = self.current();
        let state = state_name(h.state);
        body["database"] = json!({
            "state": state,
            "lag_records": h.lag_records,
            "stored_records": h.stored_records,
            "last_error": h.last_error.as_deref().map(|e| self.redact.clean(e)),
            "fill_conflicts": h.fill_conflicts,
        });
        if h.fill_conflicts > 0 {
            if body["status"] == "ok" {
                body["status"] = json!("degraded");
            }
            if let Some(r) = body["reasons"].as_array_mut() {
                r.push(json!(
                    "fill conflicts in postgres: two different fills share a trade id (table fill_conflicts)"
                ));
            }
        }
        if h.is_degraded() {
            if body["status"] == "ok" {
                body["status"] = json!("degraded");
            }
            let reason = match h.state {
                DbState::Down => "database down: the journal keeps everything",
                DbState::Lagging => "database lagging behind the journal",
                _ => "database connecting",
            };
            if let Some(r) = body["reasons"].as_array_mut() {
                r.push(json!(reason));
            }
        }
    }
}

/// The state's name in `/api/health` and the logs.
pub(crate) fn state_name(s: DbState) -> &'static str {
    match s {
        DbState::Starting => "starting",
        DbState::Connected => "connected",
        DbState::Lagging => "lagging",
        DbState::Down => "down",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redactor_hides_url_and_password() {
        let url = Secret::new("postgres://bot:s3cr3t-pw@127.0.0.1:5/aegis".to_string());
        let r = Redactor::for_url(&url);
        let s =
            r.clean("failed for postgres://bot:s3cr3t-pw@127.0.0.1:5/aegis; password s3cr3t-pw");
        assert!(!s.contains("s3cr3t-pw"), "{s}");
        assert_eq!(s, "failed for ***; password ***");
        assert_eq!(format!("{r:?}"), "Redactor(***)");
    }

    #[test]
    fn health_merge_degrades_and_hides_the_password() {
        let url = Secret::new("postgres://bot:pw-xyz-123@127.0.0.1:1/aegis".to_string());
        let (_tx, rx) = watch::channel(WriterHealth {
            state: DbState::Down,
            lag_records: 5,
            stored_offset: 0,
            stored_records: 0,
            durable_offset: 10,
            since_ms: 0,
            last_error: Some("auth failed for pw-xyz-123".into()),
            fill_conflicts: 0,
        });
        let src = DbHealthSource::new(rx, Redactor::for_url(&url));
        let mut body = json!({"status": "ok", "reasons": []});
        src.merge_into(&mut body);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["database"]["state"], "down");
        assert_eq!(body["database"]["lag_records"], 5);
        assert!(!body.to_string().contains("pw-xyz-123"), "{body}");
        let mut down = json!({"status": "down", "reasons": []});
        src.merge_into(&mut down);
        assert_eq!(down["status"], "down");
    }
}
