//! The tamper-evident audit trail: who did what, when, from where.
//!
//! Rows are append-only: a trigger refuses UPDATE, DELETE and TRUNCATE for every role, and the application role
//! `aegis_app` holds no such privilege. Each row carries `prev_hash` (the `hash` of the row before it; 64 zeros for
//! the first) and its own `hash`:
//!
//! ```text
//! hash = lower-hex SHA-256 of the UTF-8 bytes of
//!   "aegis-audit-v1" LF
//!   id (decimal) LF
//!   ts as integer microseconds since the Unix epoch (decimal) LF
//!   len(actor) ":" actor LF
//!   len(source_ip) ":" source_ip LF
//!   len(action) ":" action LF
//!   len(detail) ":" detail LF
//!   prev_hash
//! ```
//! where `len` is the UTF-8 byte length in decimal and `detail` is the JSON text exactly as stored. The insert
//! trigger computes it (SQL function `audit_payload`, migration V1); [`verify_chain`] recomputes it here,
//! independently of anything stored in the database, and names the first row whose link does not hold.
//!
//! What the chain proves: any edit, insertion or deletion *inside* the chain breaks a link. Cutting off the newest
//! rows leaves a valid shorter chain, so keep an outside anchor: the verifier reports the head (id, hash), and
//! `deploy/backup.sh` writes it beside every backup.

use super::DbError;
use futures_util::{pin_mut, TryStreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;
use tokio_postgres::GenericClient;

/// `prev_hash` of the first row.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened. Stored as the `action` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A successful login.
    Login,
    /// A failed login (wrong password, unknown user, locked out).
    LoginFailed,
    /// A logout / token revocation.
    Logout,
    /// A user was registered.
    UserRegistered,
    /// A configuration value changed.
    ConfigChange,
    /// An API key event (rotation, rejection, restriction change).
    KeyEvent,
    /// A breaker tripped (from the engine, via the journal).
    BreakerTrip,
    /// A breaker resumed by itself after its cooldown.
    BreakerResume,
    /// A breaker was reset by an operator.
    BreakerReset,
    /// The kill switch was used.
    KillSwitch,
    /// Any other control command (halt, resume, limits, ...).
    Command,
    /// A database restore was run and verified.
    Restore,
}

impl AuditAction {
    /// The stored text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::LoginFailed => "login_failed",
            Self::Logout => "logout",
            Self::UserRegistered => "user_registered",
            Self::ConfigChange => "config_change",
            Self::KeyEvent => "key_event",
            Self::BreakerTrip => "breaker_trip",
            Self::BreakerResume => "breaker_resume",
            Self::BreakerReset => "breaker_reset",
            Self::KillSwitch => "kill_switch",
            Self::Command => "command",
            Self::Restore => "restore",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit record to append. Never put a secret into `detail`.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// Who: a user name, `engine`, `cli`, `system`.
    pub actor: &'a str,
    /// From where: the client IP, or `local` for the CLI and the bot itself.
    pub source_ip: &'a str,
    /// What.
    pub action: AuditAction,
    /// Details as JSON (an object).
    pub detail: serde_json::Value,
}

/// A row the database accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendedRow {
    /// Its id (chain order).
    pub id: i64,
    /// Its hash (the next row's `prev_hash`).
    pub hash: String,
}

/// Appends one row. Works on a client or inside a transaction (then it becomes visible with the commit). The
/// database assigns id, time and hashes under a lock, so concurrent appenders cannot fork the chain.
pub async fn append<C: GenericClient>(
    client: &C,
    entry: &AuditEntry<'_>,
) -> Result<AppendedRow, DbError> {
    let detail = serde_json::to_string(&entry.detail)
        .map_err(|e| DbError::Refused(format!("audit detail is not serializable: {e}")))?;
    let row = client
        .query_one(
            "INSERT INTO audit_log (actor, source_ip, action, detail) VALUES ($1, $2, $3, $4) \
             RETURNING id, hash",
            &[
                &entry.actor,
                &entry.source_ip,
                &entry.action.as_str(),
                &detail,
            ],
        )
        .await?;
    Ok(AppendedRow {
        id: row.get(0),
        hash: row.get(1),
    })
}

/// The fields of a row that its hash covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashedRow<'a> {
    /// `id`.
    pub id: i64,
    /// `ts`, microseconds since the Unix epoch.
    pub ts_us: i64,
    /// `actor`.
    pub actor: &'a str,
    /// `source_ip`.
    pub source_ip: &'a str,
    /// `action`.
    pub action: &'a str,
    /// `detail`, as the database's text of the JSON.
    pub detail: &'a str,
    /// `prev_hash`.
    pub prev_hash: &'a str,
}

/// The canonical serialization of a row (see the module docs). Public so other tools can check rows too.
pub fn payload(r: &HashedRow<'_>) -> String {
    let HashedRow {
        id,
        ts_us,
        actor,
        source_ip,
        action,
        detail,
        prev_hash,
    } = *r;
    let mut s =
        String::with_capacity(96 + actor.len() + source_ip.len() + action.len() + detail.len());
    s.push_str("aegis-audit-v1\n");
    s.push_str(&id.to_string());
    s.push('\n');
    s.push_str(&ts_us.to_string());
    s.push('\n');
    for field in [actor, source_ip, action, detail] {
        s.push_str(&field.len().to_string());
        s.push(':');
        s.push_str(field);
        s.push('\n');
    }
    s.push_str(prev_hash);
    s
}

/// SHA-256 of [`payload`], lower-case hex.
pub fn row_hash(r: &HashedRow<'_>) -> String {
    hex::encode(Sha256::digest(payload(r).as_bytes()))
}

/// Why a link is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokenReason {
    /// The row's `prev_hash` is not the hash of the row before it (a row was removed, inserted or reordered).
    PrevHashMismatch {
        /// The previous row's hash (or the genesis hash).
        expected: String,
        /// What the row says.
        found: String,
    },
    /// The row's content does not match its hash (the row was edited).
    HashMismatch {
        /// The stored hash.
        stored: String,
        /// The hash of the stored content.
        computed: String,
    },
}

/// The first broken link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    /// The id of the first row whose link does not hold.
    pub id: i64,
    /// Why.
    pub reason: BrokenReason,
}

/// Result of [`verify_chain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Rows checked.
    pub rows: u64,
    /// The newest row (id, hash): keep it outside the database as an anchor.
    pub head: Option<(i64, String)>,
    /// The first broken link, if any (checking stops there).
    pub first_broken: Option<BrokenLink>,
}

impl VerifyReport {
    /// True when every link holds.
    pub fn is_valid(&self) -> bool {
        self.first_broken.is_none()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.first_broken {
            None => match &self.head {
                Some((id, hash)) => write!(
                    f,
                    "audit chain OK: {} rows, head id {id} hash {hash}",
                    self.rows
                ),
                None => write!(f, "audit chain OK: empty"),
            },
            Some(BrokenLink { id, reason }) => match reason {
                BrokenReason::PrevHashMismatch { expected, found } => write!(
                    f,
                    "audit chain BROKEN at row id {id}: prev_hash is {found}, the row before hashes to {expected} \
                     (a row was removed, inserted or reordered before it)"
                ),
                BrokenReason::HashMismatch { stored, computed } => write!(
                    f,
                    "audit chain BROKEN at row id {id}: stored hash {stored}, content hashes to {computed} \
                     (the row was edited)"
                ),
            },
        }
    }
}

/// Walks the whole chain in id order (streaming, constant memory) and names the first broken link.
pub async fn verify_chain<C: GenericClient>(client: &C) -> Result<VerifyReport, DbError> {
    let stream = client
        .query_raw(
            "SELECT id, (extract(epoch FROM ts) * 1000000)::bigint, actor, source_ip, action, detail, \
             prev_hash, hash FROM audit_log ORDER BY id",
            std::iter::empty::<i64>(),
        )
        .await?;
    pin_mut!(stream);
    let mut rows = 0u64;
    let mut prev = GENESIS_HASH.to_string();
    let mut head = None;
    while let Some(row) = stream.try_next().await? {
        let r = HashedRow {
            id: row.get(0),
            ts_us: row.get(1),
            actor: row.get(2),
            source_ip: row.get(3),
            action: row.get(4),
            detail: row.get(5),
            prev_hash: row.get(6),
        };
        let (id, prev_hash) = (r.id, r.prev_hash);
        let hash: &str = row.get(7);
        rows += 1;
        if prev_hash != prev {
            return Ok(VerifyReport {
                rows,
                head,
                first_broken: Some(BrokenLink {
                    id,
                    reason: BrokenReason::PrevHashMismatch {
                        expected: prev,
                        found: prev_hash.to_string(),
                    },
                }),
            });
        }
        let computed = row_hash(&r);
        if computed != hash {
            return Ok(VerifyReport {
                rows,
                head,
                first_broken: Some(BrokenLink {
                    id,
                    reason: BrokenReason::HashMismatch {
                        stored: hash.to_string(),
                        computed,
                    },
                }),
            });
        }
        prev = computed;
        head = Some((id, prev.clone()));
    }
    Ok(VerifyReport {
        rows,
        head,
        first_broken: None,
    })
}

/// The same check as one SQL statement (used by `deploy/restore.sh` through psql, where the `aegis` binary may not
/// be at hand). Returns one row: the id of the first broken link, or NULL when the chain holds. Independent of
/// the database's own `audit_payload` function, which a restore could have brought back altered.
pub const VERIFY_SQL: &str = "WITH c AS (SELECT id, prev_hash, hash, \
     coalesce(lag(hash) OVER (ORDER BY id), repeat('0', 64)) AS expected_prev, \
     encode(sha256(convert_to('aegis-audit-v1' || E'\\n' || id::text || E'\\n' \
       || (extract(epoch FROM ts) * 1000000)::bigint::text || E'\\n' \
       || octet_length(actor)::text || ':' || actor || E'\\n' \
       || octet_length(source_ip)::text || ':' || source_ip || E'\\n' \
       || octet_length(action)::text || ':' || action || E'\\n' \
       || octet_length(detail)::text || ':' || detail || E'\\n' || prev_hash, 'UTF8')), 'hex') AS computed \
     FROM audit_log) \
     SELECT min(id) FROM c WHERE prev_hash <> expected_prev OR hash <> computed";

/// Runs [`VERIFY_SQL`]: the id of the first row whose stored `prev_hash` or `hash` does not hold, or `None`.
/// Unlike [`verify_chain`] a row after an edited one is judged against the *stored* hash of its predecessor, so it
/// names the edited row itself, like the walk.
pub async fn verify_chain_sql<C: GenericClient>(client: &C) -> Result<Option<i64>, DbError> {
    let row = client.query_one(VERIFY_SQL, &[]).await?;
    Ok(row.get(0))
}
