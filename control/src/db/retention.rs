//! Retention (security guide §8.2).
//!
//! - **Never deleted by the bot**: fills, order events, orders, position snapshots, breaker and engine events,
//!   commands, config changes, key events and the audit log (tax and audit records; keep them >= 7 years). The
//!   application role has no DELETE on them and fills, order events and the audit log also refuse DELETE by
//!   trigger.
//! - **API access log**: kept at least one year. [`prune_access_log`] deletes rows older than
//!   [`ACCESS_LOG_RETENTION_DAYS`] (400 days: a year plus a margin), and refuses anything under 365 days. Run it
//!   daily (the runtime's housekeeping task, or cron: `aegis db prune`). Deletion goes in
//!   bounded batches so it never holds long locks.
//! - **Revoked tokens**: a row is useless once the token has expired; [`prune_revoked_tokens`] removes those.

use super::DbError;
use tokio_postgres::GenericClient;

/// Default age (days) after which access-log rows are pruned.
pub const ACCESS_LOG_RETENTION_DAYS: u32 = 400;
/// The guide's minimum: access logs are kept at least a year.
pub const ACCESS_LOG_MIN_DAYS: u32 = 365;
/// Rows deleted per statement.
const PRUNE_BATCH: i64 = 10_000;

/// Deletes access-log rows older than `older_than_days` (>= 365). Returns the number of rows deleted.
pub async fn prune_access_log<C: GenericClient>(
    client: &C,
    older_than_days: u32,
) -> Result<u64, DbError> {
    if older_than_days < ACCESS_LOG_MIN_DAYS {
        return Err(DbError::Refused(format!(
            "access logs are kept at least {ACCESS_LOG_MIN_DAYS} days (security guide 8.2); asked to prune after \
             {older_than_days}"
        )));
    }
    let days = i32::try_from(older_than_days).unwrap_or(i32::MAX);
    let mut total = 0u64;
    loop {
        let n = client
            .execute(
                "DELETE FROM api_access_log WHERE id IN (SELECT id FROM api_access_log \
                 WHERE ts < now() - make_interval(days => $1) ORDER BY id LIMIT $2)",
                &[&days, &PRUNE_BATCH],
            )
            .await?;
        total += n;
        if n < PRUNE_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Deletes revoked-token rows whose token has expired anyway. Returns the number deleted.
pub async fn prune_revoked_tokens<C: GenericClient>(client: &C) -> Result<u64, DbError> {
    Ok(client
        .execute("DELETE FROM revoked_tokens WHERE expires_at < now()", &[])
        .await?)
}
