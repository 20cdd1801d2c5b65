//! Dashboard users and revoked tokens kept in Postgres (`users`, `revoked_tokens`) when `DATABASE_URL` is set.
//!
//! Why a mirror and not Postgres alone: the dashboard is how an operator halts the bot, so logging in must keep
//! working while the database is down (guide §6: a dead database never stops the bot). Every read is served from
//! the local store ([`MemoryUserStore`], `DATA_DIR/users.json`, 0600); every write goes to Postgres first when it is
//! reachable, then to the local store. A sync (at start, then every [`SYNC_EVERY`] while something is
//! unsynced, and after every reconnect) merges both ways:
//!
//! - users in Postgres but not local are added (a second machine, a restored database, a lost `users.json`);
//!   users disabled in Postgres (`disabled_at` set) are removed locally;
//! - users and revocations made while the database was down are pushed up;
//! - unexpired revocations in Postgres are added locally, so a token revoked on one install stays revoked.
//!
//! "The first user becomes admin" stays race-free across installs sharing a database: with Postgres reachable the
//! first-user insert runs under a transaction-scoped advisory lock and fails when Postgres already has a user.

use super::store::{BoxFut, MemoryUserStore, Role, StoreError, UserRecord, UserStore};
use crate::db::DbError;
use crate::db_link::DbSide;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often an unsynced store retries.
pub const SYNC_EVERY: Duration = Duration::from_secs(15);

/// Advisory lock key serializing first-user registration across processes sharing the database.
const FIRST_USER_LOCK: i64 = 7_423_001;

/// The local store mirrored to Postgres. See the module documentation.
pub struct PgMirrorStore {
    local: MemoryUserStore,
    db: Arc<DbSide>,
    /// Something local may be missing in Postgres (or the first sync has not happened yet).
    dirty: AtomicBool,
}

impl std::fmt::Debug for PgMirrorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgMirrorStore")
            .field("dirty", &self.dirty.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What one [`PgMirrorStore::sync`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Local records changed (users added or removed, revocations added).
    pub pulled: usize,
    /// Users pushed to Postgres.
    pub pushed_users: u64,
    /// Revocations pushed to Postgres.
    pub pushed_revoked: u64,
}

fn role_of(s: &str) -> Role {
    // The column has a CHECK constraint; anything else can only come from a hand edit, and read-only is the safe
    // reading of it.
    Role::parse(s).unwrap_or(Role::Viewer)
}

impl PgMirrorStore {
    /// Wraps `local`; nothing touches the database until [`Self::sync`] or a write.
    pub fn new(local: MemoryUserStore, db: Arc<DbSide>) -> Arc<Self> {
        Arc::new(Self {
            local,
            db,
            dirty: AtomicBool::new(true),
        })
    }

    /// Starts the background sync: now, then every [`SYNC_EVERY`] while unsynced. Must run inside tokio.
    pub fn spawn_sync(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if me.dirty.load(Ordering::Acquire) {
                    match me.sync().await {
                        Ok(r) if r != SyncReport::default() => {
                            tracing::info!(
                                pulled = r.pulled,
                                pushed_users = r.pushed_users,
                                pushed_revoked = r.pushed_revoked,
                                "dashboard users synced with Postgres"
                            );
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!(error = %e, "user store sync with Postgres postponed")
                        }
                    }
                }
                tokio::time::sleep(SYNC_EVERY).await;
            }
        })
    }

    /// True while something may be missing on one side.
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    fn db_err(&self, e: impl Into<DbError>) -> String {
        self.db.on_error(&e.into())
    }

    /// Merges the local store and Postgres both ways (see the module documentation). Fails while the database is
    /// unreachable or not yet migrated; the store then stays dirty and the next sync tries again.
    pub async fn sync(&self) -> Result<SyncReport, String> {
        let c = self.db.client().await?;
        let rows = c
            .query(
                "SELECT username, password_hash, role, email, \
                        (extract(epoch FROM created_at) * 1000)::BIGINT, disabled_at IS NOT NULL \
                 FROM users",
                &[],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        let mut remote = Vec::with_capacity(rows.len());
        let mut disabled = Vec::new();
        let mut in_pg = std::collections::HashSet::new();
        for r in &rows {
            let username: String = r.get(0);
            in_pg.insert(username.clone());
            if r.get::<_, bool>(5) {
                disabled.push(username);
                continue;
            }
            remote.push(UserRecord {
                username,
                password_hash: r.get(1),
                role: role_of(r.get::<_, &str>(2)),
                email: r.get(3),
                created_ms: u64::try_from(r.get::<_, i64>(4)).unwrap_or(0),
            });
        }
        let rev_rows = c
            .query(
                "SELECT jti, extract(epoch FROM expires_at)::BIGINT FROM revoked_tokens \
                 WHERE expires_at > now()",
                &[],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        let remote_revoked: HashMap<String, u64> = rev_rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
                )
            })
            .collect();

        let (local_users, local_revoked) = self.local.snapshot();
        let mut report = SyncReport::default();
        for u in local_users.iter().filter(|u| !in_pg.contains(&u.username)) {
            report.pushed_users += push_user(&*c, u).await.map_err(|e| self.db_err(e))?;
        }
        for (jti, exp) in local_revoked
            .iter()
            .filter(|(j, _)| !remote_revoked.contains_key(*j))
        {
            report.pushed_revoked += push_revoked(&*c, jti, *exp)
                .await
                .map_err(|e| self.db_err(e))?;
        }
        report.pulled = self
            .local
            .merge(remote, remote_revoked, &disabled)
            .map_err(|e| e.to_string())?;
        self.dirty.store(false, Ordering::Release);
        Ok(report)
    }

    async fn insert_pg(&self, user: &UserRecord, only_if_empty: bool) -> Result<(), InsertErr> {
        let mut c = self
            .db
            .dedicated_client()
            .await
            .map_err(InsertErr::Unreachable)?;
        let run = async {
            let tx = c.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&FIRST_USER_LOCK])
                .await?;
            if only_if_empty {
                let n: i64 = tx
                    .query_one("SELECT count(*) FROM users", &[])
                    .await?
                    .get(0);
                if n > 0 {
                    return Ok(false);
                }
            }
            let inserted = push_user(&tx, user).await?;
            tx.commit().await?;
            Ok::<_, tokio_postgres::Error>(inserted == 1)
        };
        match run.await {
            Ok(true) => Ok(()),
            Ok(false) if only_if_empty => Err(InsertErr::Store(StoreError::NotEmpty)),
            Ok(false) => Err(InsertErr::Store(StoreError::Exists)),
            Err(e) => Err(InsertErr::Unreachable(self.db_err(e))),
        }
    }
}

enum InsertErr {
    Store(StoreError),
    Unreachable(String),
}

async fn push_user<C: tokio_postgres::GenericClient>(
    c: &C,
    u: &UserRecord,
) -> Result<u64, tokio_postgres::Error> {
    let created = i64::try_from(u.created_ms).unwrap_or(i64::MAX);
    c.execute(
        "INSERT INTO users (username, password_hash, role, email, created_at) \
         VALUES ($1, $2, $3, $4, to_timestamp($5::BIGINT / 1000.0)) ON CONFLICT (username) DO NOTHING",
        &[
            &u.username,
            &u.password_hash,
            &u.role.as_str(),
            &u.email,
            &created,
        ],
    )
    .await
}

async fn push_revoked<C: tokio_postgres::GenericClient>(
    c: &C,
    jti: &str,
    exp: u64,
) -> Result<u64, tokio_postgres::Error> {
    let exp = i64::try_from(exp).unwrap_or(i64::MAX / 2);
    c.execute(
        "INSERT INTO revoked_tokens (jti, user_id, expires_at) \
         VALUES ($1, NULL, to_timestamp($2::BIGINT)) ON CONFLICT (jti) DO NOTHING",
        &[&jti, &exp],
    )
    .await
}

impl UserStore for PgMirrorStore {
    fn count(&self) -> BoxFut<'_, Result<u64, StoreError>> {
        self.local.count()
    }

    fn find<'a>(&'a self, username: &'a str) -> BoxFut<'a, Result<Option<UserRecord>, StoreError>> {
        self.local.find(username)
    }

    fn insert(&self, user: UserRecord, only_if_empty: bool) -> BoxFut<'_, Result<(), StoreError>> {
        Box::pin(async move {
            match self.insert_pg(&user, only_if_empty).await {
                Ok(()) => {}
                Err(InsertErr::Store(e)) => {
                    // Postgres knows users this store does not: learn them before answering.
                    self.dirty.store(true, Ordering::Release);
                    let _ = self.sync().await;
                    return Err(e);
                }
                Err(InsertErr::Unreachable(e)) => {
                    // Registration must not depend on the database; the next sync pushes the user up.
                    tracing::warn!(error = %e, "Postgres unreachable: user stored locally, synced later");
                    self.dirty.store(true, Ordering::Release);
                }
            }
            self.local.insert(user, only_if_empty).await
        })
    }

    fn list(&self) -> BoxFut<'_, Result<Vec<UserRecord>, StoreError>> {
        self.local.list()
    }

    fn revoke<'a>(&'a self, jti: &'a str, exp: u64) -> BoxFut<'a, Result<(), StoreError>> {
        Box::pin(async move {
            // Local first: the revocation must hold in this process whatever the database does.
            self.local.revoke(jti, exp).await?;
            let pushed = match self.db.client().await {
                Ok(c) => push_revoked(&*c, jti, exp)
                    .await
                    .map_err(|e| self.db_err(e)),
                Err(e) => Err(e),
            };
            if let Err(e) = pushed {
                tracing::warn!(error = %e, "Postgres unreachable: token revocation stored locally, synced later");
                self.dirty.store(true, Ordering::Release);
            }
            Ok(())
        })
    }

    fn is_revoked<'a>(&'a self, jti: &'a str) -> BoxFut<'a, Result<bool, StoreError>> {
        self.local.is_revoked(jti)
    }
}
