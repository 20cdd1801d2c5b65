//! Operator records written directly by the control plane (not via the journal): API access log, configuration
//! changes, key events and logins. Each audited record is written together with its audit row in one
//! transaction, so neither exists without the other.
//!
//! Never pass a secret here: configuration values of secret settings must be given as `"***"`, keys only as a
//! short hint (the last 4 characters).

use super::audit::{append, AppendedRow, AuditAction, AuditEntry};
use super::DbError;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient};

/// One API request.
#[derive(Debug, Clone)]
pub struct AccessRecord<'a> {
    /// The authenticated user, if any.
    pub actor: Option<&'a str>,
    /// Client IP.
    pub source_ip: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Path without the query string (queries may carry tokens).
    pub path: &'a str,
    /// Response status.
    pub status: u16,
    /// Time to respond, microseconds.
    pub duration_us: u64,
}

/// Appends one access-log row (not audited: it is the access log). Kept >= 1 year, see [`super::retention`].
pub async fn record_access<C: GenericClient>(
    client: &C,
    r: &AccessRecord<'_>,
) -> Result<(), DbError> {
    let status = i16::try_from(r.status).unwrap_or(i16::MAX);
    let dur = i64::try_from(r.duration_us).unwrap_or(i64::MAX);
    client
        .execute(
            "INSERT INTO api_access_log (actor, source_ip, method, path, status, duration_us) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&r.actor, &r.source_ip, &r.method, &r.path, &status, &dur],
        )
        .await?;
    Ok(())
}

/// Inserts one record and its audit row in one transaction (see the module docs).
async fn insert_audited(
    client: &mut Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    entry: &AuditEntry<'_>,
) -> Result<AppendedRow, DbError> {
    let tx = client.transaction().await?;
    tx.execute(sql, params).await?;
    let row = append(&tx, entry).await?;
    tx.commit().await?;
    Ok(row)
}

/// Records a configuration change and its audit row atomically.
pub async fn record_config_change(
    client: &mut Client,
    actor: &str,
    source_ip: &str,
    key: &str,
    old_value: Option<&str>,
    new_value: Option<&str>,
) -> Result<AppendedRow, DbError> {
    insert_audited(
        client,
        "INSERT INTO config_changes (actor, source_ip, key, old_value, new_value) VALUES ($1, $2, $3, $4, $5)",
        &[&actor, &source_ip, &key, &old_value, &new_value],
        &AuditEntry {
            actor,
            source_ip,
            action: AuditAction::ConfigChange,
            detail: serde_json::json!({ "key": key, "old": old_value, "new": new_value }),
        },
    )
    .await
}

/// Records an API key event (`created`, `rotated`, `rejected`, `restrictions_changed`, ...) and its audit row.
pub async fn record_key_event(
    client: &mut Client,
    actor: &str,
    source_ip: &str,
    event: &str,
    environment: &str,
    key_hint: Option<&str>,
    detail: serde_json::Value,
) -> Result<AppendedRow, DbError> {
    let detail_text = detail.to_string();
    insert_audited(
        client,
        "INSERT INTO key_events (actor, source_ip, event, environment, key_hint, detail) \
         VALUES ($1, $2, $3, $4, $5, $6::text::jsonb)",
        &[
            &actor,
            &source_ip,
            &event,
            &environment,
            &key_hint,
            &detail_text,
        ],
        &AuditEntry {
            actor,
            source_ip,
            action: AuditAction::KeyEvent,
            detail: serde_json::json!({
                "event": event, "environment": environment, "key_hint": key_hint, "detail": detail,
            }),
        },
    )
    .await
}

/// Audits a login attempt (`ok` = success). `reason` says why a failure failed (never the password tried).
pub async fn record_login<C: GenericClient>(
    client: &C,
    user: &str,
    source_ip: &str,
    ok: bool,
    reason: Option<&str>,
) -> Result<AppendedRow, DbError> {
    append(
        client,
        &AuditEntry {
            actor: user,
            source_ip,
            action: if ok {
                AuditAction::Login
            } else {
                AuditAction::LoginFailed
            },
            detail: serde_json::json!({ "reason": reason }),
        },
    )
    .await
}

/// Records a command that is handled by the control plane itself (never journaled, e.g. a refused command) with
/// its audit row. Commands sent to the engine are journaled and reach `commands` through the writer instead.
pub async fn record_command(
    client: &mut Client,
    actor: &str,
    source_ip: &str,
    command: &serde_json::Value,
    outcome: &str,
) -> Result<AppendedRow, DbError> {
    let text = command.to_string();
    let action = match command.get("command").and_then(|c| c.as_str()) {
        Some("kill") => AuditAction::KillSwitch,
        Some("reset_breaker") => AuditAction::BreakerReset,
        _ => AuditAction::Command,
    };
    insert_audited(
        client,
        "INSERT INTO commands (actor, source_ip, command, outcome) VALUES ($1, $2, $3::text::jsonb, $4)",
        &[&actor, &source_ip, &text, &outcome],
        &AuditEntry {
            actor,
            source_ip,
            action,
            detail: serde_json::json!({ "command": command, "outcome": outcome }),
        },
    )
    .await
}
