//! Dashboard users and revoked tokens kept in Postgres (`users`, `revoked_tokens`) when `DATABASE_URL` is set.
//!
//! Why a mirror and not Postgres alone: the dashboard is how an operator halts the bot, so logging in must keep
//! working while the database is down (guide §6: a dead database never stops the bot). Every read is served from
//! the local store ([`MemoryUserStore`], `DATA_DIR/users.json`, 0600); every write goes to Postgres first when it is
//! reachable, then to the local store. A sync (at start, then every [`SYNC_EVERY`], so a user disabled in
//! Postgres loses access within that time) merges both ways:
//!
//! - users in Postgres but not local are added (a second machine, a restored database, a lost `users.json`);
//!   users disabled in Postgres (`disabled_at` set) are removed locally;
//! - a user present on both sides with another `uid` (re-created elsewhere) or a higher `token_generation`
//!   (role or password changed elsewhere, or by hand: a trigger raises the generation) takes Postgres' record,
//!   which ends the sessions of the old one (issue 15.1);
//! - users, changes, deletions and revocations made while the database was down are pushed up (a deletion is
//!   kept as a tombstone until then, so the sync cannot bring the user back);
//! - unexpired revocations in Postgres are added locally, so a token revoked on one install stays revoked.
//!
//! "The first user becomes admin" stays race-free across installs sharing a database: with Postgres reachable the
//! first-user insert runs under a transaction-scoped advisory lock and fails when Postgres already has a user.

use super::DbSide;
use crate::auth::store::{
    apply_change, BoxFut, MemoryUserStore, Role, StoreError, UserChange, UserRecord, UserStore,
};
use crate::db::DbError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the store syncs (pulls changes made in Postgres, pushes what is unsynced).
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
    /// Users pushed to Postgres (new, re-created or changed).
    pub pushed_users: u64,
    /// Deletions pushed to Postgres (users deleted while it was unreachable).
    pub pushed_deletes: u64,
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

    /// Starts the background sync: now, then every [`SYNC_EVERY`]. Must run inside tokio.
    pub fn spawn_sync(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                // Always, not only while dirty: disabling or changing a user in Postgres must reach a running bot.
                match me.sync().await {
                    Ok(r) if r != SyncReport::default() => {
                        tracing::info!(
                            pulled = r.pulled,
                            pushed_users = r.pushed_users,
                            pushed_deletes = r.pushed_deletes,
                            pushed_revoked = r.pushed_revoked,
                            "dashboard users synced with Postgres"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "user store sync with Postgres postponed")
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
        let mut report = SyncReport::default();
        // Deletions first, so the read below already sees those accounts disabled.
        let tombstones = self.local.tombstones();
        for t in &tombstones {
            report.pushed_deletes += disable_pg(&*c, &t.username, &t.uid)
                .await
                .map_err(|e| self.db_err(e))?;
        }
        let rows = c
            .query(
                "SELECT username, password_hash, role, email, \
                        (extract(epoch FROM created_at) * 1000)::BIGINT, disabled_at IS NOT NULL, \
                        uid, token_generation \
                 FROM users",
                &[],
            )
            .await
            .map_err(|e| self.db_err(e))?;
        let mut remote = Vec::with_capacity(rows.len());
        let mut disabled = Vec::new();
        let mut active: HashMap<String, (String, u64)> = HashMap::new();
        for r in &rows {
            let username: String = r.get(0);
            let uid: String = r.get(6);
            let token_gen = u64::try_from(r.get::<_, i64>(7)).unwrap_or(0);
            if r.get::<_, bool>(5) {
                disabled.push((username, uid));
                continue;
            }
            active.insert(username.clone(), (uid.clone(), token_gen));
            remote.push(UserRecord {
                username,
                password_hash: r.get(1),
                role: role_of(r.get::<_, &str>(2)),
                email: r.get(3),
                created_ms: u64::try_from(r.get::<_, i64>(4)).unwrap_or(0),
                uid,
                token_gen,
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
        for u in &local_users {
            let pushed = match active.get(&u.username) {
                // Not in Postgres, or only as a disabled account of another uid: a new account to push. (The
                // same uid disabled there was disabled on purpose; the merge below removes it here.)
                None if !disabled
                    .iter()
                    .any(|(n, id)| *n == u.username && *id == u.uid) =>
                {
                    push_user(&*c, u).await
                }
                // The same account changed here while the database was down.
                Some((uid, gen)) if *uid == u.uid && *gen < u.token_gen => update_pg(&*c, u).await,
                _ => Ok(0),
            };
            report.pushed_users += pushed.map_err(|e| self.db_err(e))?;
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
        self.local
            .clear_tombstones(&tombstones)
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

fn gen_of(u: &UserRecord) -> i64 {
    i64::try_from(u.token_gen).unwrap_or(i64::MAX)
}

/// Inserts a new account. A name held only by a disabled account of another uid (a deleted user) is taken over:
/// the row becomes the new account, with its own uid, so nothing of the old one carries over.
async fn push_user<C: tokio_postgres::GenericClient>(
    c: &C,
    u: &UserRecord,
) -> Result<u64, tokio_postgres::Error> {
    let created = i64::try_from(u.created_ms).unwrap_or(i64::MAX);
    c.execute(
        "INSERT INTO users (username, password_hash, role, email, created_at, uid, token_generation) \
         VALUES ($1, $2, $3, $4, to_timestamp($5::BIGINT / 1000.0), $6, $7) \
         ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash, role = EXCLUDED.role, \
             email = EXCLUDED.email, created_at = EXCLUDED.created_at, uid = EXCLUDED.uid, \
             token_generation = EXCLUDED.token_generation, disabled_at = NULL, last_login_at = NULL \
         WHERE users.disabled_at IS NOT NULL AND users.uid <> EXCLUDED.uid",
        &[
            &u.username,
            &u.password_hash,
            &u.role.as_str(),
            &u.email,
            &created,
            &u.uid,
            &gen_of(u),
        ],
    )
    .await
}

/// Writes a changed account (role, hash, generation) unless Postgres already has a newer generation of it.
async fn update_pg<C: tokio_postgres::GenericClient>(
    c: &C,
    u: &UserRecord,
) -> Result<u64, tokio_postgres::Error> {
    c.execute(
        "UPDATE users SET role = $3, password_hash = $4, token_generation = $5 \
         WHERE username = $1 AND uid = $2 AND disabled_at IS NULL AND token_generation < $5",
        &[
            &u.username,
            &u.uid,
            &u.role.as_str(),
            &u.password_hash,
            &gen_of(u),
        ],
    )
    .await
}

/// Deletes an account the way the schema keeps history: disabled (by uid, never a newer account of the name).
async fn disable_pg<C: tokio_postgres::GenericClient>(
    c: &C,
    username: &str,
    uid: &str,
) -> Result<u64, tokio_postgres::Error> {
    c.execute(
        "UPDATE users SET disabled_at = now(), token_generation = token_generation + 1 \
         WHERE username = $1 AND uid = $2 AND disabled_at IS NULL",
        &[&username, &uid],
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

    fn delete<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFut<'a, Result<Option<UserRecord>, StoreError>> {
        Box::pin(async move {
            let Some(u) = self.local.find(username).await? else {
                return Ok(None);
            };
            let pushed = match self.db.client().await {
                Ok(c) => disable_pg(&*c, &u.username, &u.uid)
                    .await
                    .map_err(|e| self.db_err(e)),
                Err(e) => Err(e),
            };
            // Deleting must not depend on the database either; a tombstone carries it to Postgres later.
            let remember = match pushed {
                Ok(_) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "Postgres unreachable: user deleted locally, synced later");
                    self.dirty.store(true, Ordering::Release);
                    true
                }
            };
            self.local.delete_local(username, remember)
        })
    }

    fn update<'a>(
        &'a self,
        username: &'a str,
        change: UserChange,
    ) -> BoxFut<'a, Result<Option<UserRecord>, StoreError>> {
        Box::pin(async move {
            let Some(mut u) = self.local.find(username).await? else {
                return Ok(None);
            };
            apply_change(&mut u, change);
            let pushed = match self.db.client().await {
                Ok(c) => update_pg(&*c, &u).await.map_err(|e| self.db_err(e)),
                Err(e) => Err(e),
            };
            if let Err(e) = pushed {
                tracing::warn!(error = %e, "Postgres unreachable: user change stored locally, synced later");
                self.dirty.store(true, Ordering::Release);
            }
            self.local.replace(u.clone())?;
            Ok(Some(u))
        })
    }
}
