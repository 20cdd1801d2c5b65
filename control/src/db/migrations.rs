//! Versioned schema migrations (refinery), embedded from `control/migrations/V<n>__<name>.sql` at compile time.
//!
//! Applied on start. refinery records each applied version with a checksum in `refinery_schema_history` and
//! refuses to run when an applied migration was edited afterwards (a divergent history), so migrations are
//! append-only: change the schema with a new `V<n+1>__*.sql`, never by editing an old one.
//!
//! Deploy: the role that owns the schema applies migrations (it needs CREATE and, for the first one, CREATEROLE to
//! create `aegis_app`); the bot itself may log in as `aegis_app`, for which an up-to-date schema means "nothing to
//! apply" (see `deploy/README-db.md`).

use super::DbError;
use tokio_postgres::Client;

refinery::embed_migrations!("migrations");

/// Session advisory lock key serializing concurrent migrators (two bot instances, a test and a CLI).
const MIGRATION_LOCK: i64 = 7_423_000;

/// What [`run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this call, in order (empty when the schema was up to date).
    pub applied: Vec<i32>,
    /// The schema version after the call.
    pub current: Option<i32>,
}

/// Applies every pending migration, each in its own transaction, holding an advisory lock so concurrent starts do
/// not race. Idempotent: a second call applies nothing.
///
/// When the schema is already up to date (every embedded migration recorded with the same checksum) nothing is
/// written at all, so the unprivileged `aegis_app` role can start; if migrations are pending and the role may not
/// apply them, the error says so.
pub async fn run(client: &mut Client) -> Result<MigrationReport, DbError> {
    if let Some(current) = up_to_date(client).await? {
        return Ok(MigrationReport {
            applied: Vec::new(),
            current: Some(current),
        });
    }
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = migrations::runner()
        .set_abort_divergent(true)
        .run_async(client)
        .await;
    // Unlock even when the migration failed; a broken connection releases the lock by itself.
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let report = result.map_err(|e| {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        if msg.contains("permission denied") {
            msg.push_str(
                " (pending migrations must be applied by the schema owner, not aegis_app: see deploy/README-db.md)",
            );
        }
        DbError::Migration(msg)
    })?;
    unlock?;
    let applied: Vec<i32> = report
        .applied_migrations()
        .iter()
        .map(|m| m.version())
        .collect();
    let current = client
        .query_opt("SELECT max(version) FROM refinery_schema_history", &[])
        .await?
        .and_then(|r| r.get::<_, Option<i32>>(0));
    Ok(MigrationReport { applied, current })
}

/// `Some(current version)` when every embedded migration is recorded with an identical checksum; read-only.
async fn up_to_date(client: &Client) -> Result<Option<i32>, DbError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let rows = client
        .query("SELECT version, checksum FROM refinery_schema_history", &[])
        .await?;
    let applied: std::collections::HashMap<i32, String> = rows
        .iter()
        .map(|r| {
            (
                r.get::<_, i32>(0),
                r.get::<_, Option<String>>(1).unwrap_or_default(),
            )
        })
        .collect();
    let runner = migrations::runner();
    let mut current = None;
    for m in runner.get_migrations() {
        match applied.get(&m.version()) {
            Some(sum) if *sum == m.checksum().to_string() => {
                current = current.max(Some(m.version()));
            }
            // Pending, or divergent: let refinery apply or refuse with its own message.
            _ => return Ok(None),
        }
    }
    Ok(current.or(applied.keys().max().copied()))
}

/// Versions embedded in this binary, in order.
pub fn embedded_versions() -> Vec<i32> {
    let mut v: Vec<i32> = migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .collect();
    v.sort_unstable();
    v
}
