//! The fleet lease in Postgres (`fleet_leases`, migration V20): one row per API-key fingerprint.
//!
//! A bot holds the row while `state = 'running'` and its token is the row's; it renews it (heartbeat) every
//! third of the lease time. Another instance takes the row over only once `expires_at` has passed or the row
//! was released. Every time comparison uses the database's clock, so hosts with different clocks agree.

use crate::db::DbError;
use aegis_shared::Secret;
use sha2::Digest;
use tokio_postgres::Client;

/// `sha256:` + 16 hex digits of SHA-256 of the API key. Never reversible to the key. The key's name in the lease
/// table and in the key registry (`ops::keys`).
pub fn fingerprint(api_key: &Secret<String>) -> String {
    let d = sha2::Sha256::digest(api_key.expose().as_bytes());
    format!("sha256:{}", &hex::encode(d)[..16])
}

/// Who a bot is, as the lease table records it. Holds the key's fingerprint only, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sha256:` + 16 hex digits ([`fingerprint`]).
    pub fingerprint: String,
    /// `production` or `testnet`.
    pub environment: String,
    /// `FLEET_INSTANCE_NAME` (default: host name and DATA_DIR).
    pub instance: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: i32,
    /// Random per run.
    pub token: String,
    /// Bot version.
    pub version: String,
    /// `host:port/dbname` of the bot's `DATABASE_URL` (no credentials), see [`records_db_of`].
    pub records_db: Option<String>,
}

/// `host:port/dbname` of a database URL, without user or password: where a bot keeps its records.
pub fn records_db_of(url: &str) -> Option<String> {
    let cfg = crate::db::connect::parse_url(url).ok()?;
    let host = match cfg.get_hosts().first()? {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    Some(format!("{host}:{port}/{}", cfg.get_dbname().unwrap_or("")))
}

/// Running instances with another key and another name whose records go to the same database as `id`'s (the
/// same name with another key is this bot restarted after a key rotation, its old lease not yet expired).
pub async fn records_db_sharers(c: &Client, id: &Identity) -> Result<Vec<LeaseRow>, DbError> {
    let Some(db) = &id.records_db else {
        return Ok(Vec::new());
    };
    let rows = c
        .query(
            &format!(
                "SELECT {COLUMNS} FROM fleet_leases WHERE records_db = $1 AND key_fingerprint <> $2 AND instance <> $3 \
                 AND state = 'running' AND expires_at > now() ORDER BY instance"
            ),
            &[db, &id.fingerprint, &id.instance],
        )
        .await?;
    Ok(rows.iter().map(row).collect())
}

/// One row of `fleet_leases`, with ages computed by the database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseRow {
    /// Key fingerprint.
    pub key_fingerprint: String,
    /// `production` or `testnet`.
    pub environment: String,
    /// Instance name.
    pub instance: String,
    /// Host name.
    pub host: String,
    /// Process id on that host.
    pub pid: i32,
    /// Bot version.
    pub version: String,
    /// When this holder took the lease (UTC, RFC 3339).
    pub acquired_at: String,
    /// Milliseconds since the last heartbeat.
    pub heartbeat_age_ms: i64,
    /// Milliseconds until the lease expires (negative: expired that long ago).
    pub expires_in_ms: i64,
    /// `running` or `released`.
    pub state: String,
    /// The holder reports new entries halted (it could not prove it holds the lease).
    pub entries_halted: bool,
    #[serde(skip)]
    token: String,
}

impl LeaseRow {
    /// Held by someone right now: running and not expired.
    pub fn is_held(&self) -> bool {
        self.state == "running" && self.expires_in_ms > 0
    }

    /// `running`, `expired` (running but past its expiry: a crashed or cut-off bot), or `released`.
    pub fn status(&self) -> &'static str {
        match (self.state.as_str(), self.expires_in_ms > 0) {
            ("running", true) => "running",
            ("running", false) => "expired",
            _ => "released",
        }
    }

    /// One line naming the holder: instance, host, pid, since when, heartbeat age, expiry.
    pub fn describe(&self) -> String {
        format!(
            "instance {:?} on host {:?} (pid {}, aegis {}) has held it since {}; last heartbeat {} ago, expires in {}",
            self.instance,
            self.host,
            self.pid,
            self.version,
            self.acquired_at,
            secs(self.heartbeat_age_ms),
            secs(self.expires_in_ms.max(0)),
        )
    }
}

fn secs(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

const COLUMNS: &str = "key_fingerprint, environment, instance, host, pid, version, \
    to_char(acquired_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
    (extract(epoch FROM (now() - heartbeat_at)) * 1000)::bigint, \
    (extract(epoch FROM (expires_at - now())) * 1000)::bigint, state, entries_halted, token";

fn row(r: &tokio_postgres::Row) -> LeaseRow {
    LeaseRow {
        key_fingerprint: r.get(0),
        environment: r.get(1),
        instance: r.get(2),
        host: r.get(3),
        pid: r.get(4),
        version: r.get(5),
        acquired_at: r.get(6),
        heartbeat_age_ms: r.get(7),
        expires_in_ms: r.get(8),
        state: r.get(9),
        entries_halted: r.get(10),
        token: r.get(11),
    }
}

/// What [`acquire`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// The lease is ours now. `previous`: the expired or released holder we replaced, if any.
    Taken {
        /// The row before us (`None`: the key was never leased here, or we already held it).
        previous: Option<Box<LeaseRow>>,
    },
    /// Another instance holds it (running, not expired).
    Held(Box<LeaseRow>),
}

/// Takes the lease for `id.fingerprint` unless another instance holds it (running and not expired).
pub async fn acquire(c: &mut Client, id: &Identity, ttl_secs: f64) -> Result<Acquired, DbError> {
    // Two attempts: a concurrent first insert of the same key makes ours insert nothing; the second attempt then
    // sees (and locks) that row.
    for _ in 0..2 {
        let tx = c.transaction().await?;
        let found = tx
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM fleet_leases WHERE key_fingerprint = $1 FOR UPDATE"
                ),
                &[&id.fingerprint],
            )
            .await?
            .map(|r| row(&r));
        match found {
            Some(r) if r.is_held() && r.token != id.token => {
                tx.rollback().await?;
                return Ok(Acquired::Held(Box::new(r)));
            }
            Some(r) => {
                tx.execute(
                    "UPDATE fleet_leases SET environment = $2, instance = $3, host = $4, pid = $5, token = $6, \
                     version = $7, acquired_at = now(), heartbeat_at = now(), \
                     expires_at = now() + $8::float8 * interval '1 second', released_at = NULL, \
                     state = 'running', entries_halted = false, records_db = $9 \
                     WHERE key_fingerprint = $1",
                    &[
                        &id.fingerprint,
                        &id.environment,
                        &id.instance,
                        &id.host,
                        &id.pid,
                        &id.token,
                        &id.version,
                        &ttl_secs,
                        &id.records_db,
                    ],
                )
                .await?;
                tx.commit().await?;
                let previous = (r.token != id.token).then(|| Box::new(r));
                return Ok(Acquired::Taken { previous });
            }
            None => {
                let n = tx
                    .execute(
                        "INSERT INTO fleet_leases (key_fingerprint, environment, instance, host, pid, token, \
                         version, acquired_at, heartbeat_at, expires_at, state, records_db) VALUES ($1, $2, $3, $4, $5, $6, \
                         $7, now(), now(), now() + $8::float8 * interval '1 second', 'running', $9) \
                         ON CONFLICT (key_fingerprint) DO NOTHING",
                        &[
                            &id.fingerprint,
                            &id.environment,
                            &id.instance,
                            &id.host,
                            &id.pid,
                            &id.token,
                            &id.version,
                            &ttl_secs,
                            &id.records_db,
                        ],
                    )
                    .await?;
                tx.commit().await?;
                if n == 1 {
                    return Ok(Acquired::Taken { previous: None });
                }
            }
        }
    }
    // Both attempts raced with other instances; whoever holds it now is the answer.
    match get(c, &id.fingerprint).await? {
        Some(r) if r.token != id.token => Ok(Acquired::Held(Box::new(r))),
        _ => Ok(Acquired::Taken { previous: None }),
    }
}

/// What [`renew`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewed {
    /// Still ours, now valid for another lease time.
    Kept,
    /// No longer ours: released, or taken over after it expired (by the row's current holder, if any).
    Lost(Option<Box<LeaseRow>>),
}

/// The heartbeat: extends our lease by `ttl_secs` and records whether we have entries halted. A lease that
/// expired while the database was unreachable is still ours as long as nobody took it over (the token is
/// unchanged), so it is renewed.
pub async fn renew(
    c: &Client,
    id: &Identity,
    ttl_secs: f64,
    entries_halted: bool,
) -> Result<Renewed, DbError> {
    let n = c
        .execute(
            "UPDATE fleet_leases SET heartbeat_at = now(), expires_at = now() + $3::float8 * interval '1 second', \
             entries_halted = $4 WHERE key_fingerprint = $1 AND token = $2 AND state = 'running'",
            &[&id.fingerprint, &id.token, &ttl_secs, &entries_halted],
        )
        .await?;
    if n == 1 {
        return Ok(Renewed::Kept);
    }
    Ok(Renewed::Lost(get(c, &id.fingerprint).await?.map(Box::new)))
}

/// Gives the lease up at a clean stop, so the next start does not wait for it to expire. True when it was ours.
pub async fn release(c: &Client, id: &Identity) -> Result<bool, DbError> {
    let n = c
        .execute(
            "UPDATE fleet_leases SET state = 'released', released_at = now(), expires_at = now(), \
             entries_halted = false WHERE key_fingerprint = $1 AND token = $2 AND state = 'running'",
            &[&id.fingerprint, &id.token],
        )
        .await?;
    Ok(n == 1)
}

/// The row for one key fingerprint.
pub async fn get(c: &Client, fingerprint: &str) -> Result<Option<LeaseRow>, DbError> {
    Ok(c.query_opt(
        &format!("SELECT {COLUMNS} FROM fleet_leases WHERE key_fingerprint = $1"),
        &[&fingerprint],
    )
    .await?
    .map(|r| row(&r)))
}

/// Every row, running ones first, then by instance name (for `aegis fleet status`).
pub async fn list(c: &Client) -> Result<Vec<LeaseRow>, DbError> {
    let rows = c
        .query(
            &format!(
                "SELECT {COLUMNS} FROM fleet_leases ORDER BY (state = 'running') DESC, instance, key_fingerprint"
            ),
            &[],
        )
        .await?;
    Ok(rows.iter().map(row).collect())
}
