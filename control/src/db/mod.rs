//! Postgres persistence: the queryable copy of what the journal already made durable.
//!
//! The journal is the source of truth and the only thing on the trading path. Postgres is fed from it by
//! [`writer`], a background task that reads journal records from the offset it last stored and writes them in
//! batches, storing the new offset in the same transaction (exactly-once, replay-safe). If Postgres is down or
//! slow, nothing upstream waits: the journal keeps everything and the writer catches up when it can.
//!
//! Modules, one concept each:
//! - [`connect`]: `DATABASE_URL` → client (TLS with rustls/ring unless `sslmode=disable`).
//! - [`migrations`]: versioned schema (refinery), applied on start.
//! - [`writer`]: journal → Postgres batch writer, health state and alerts.
//! - [`audit`]: the hash-chained, append-only audit trail and its verifier.
//! - [`records`]: operator records written directly (access log, config changes, key events, logins), each
//!   audited in the same transaction.
//! - [`export`]: tax records as CSV.
//! - [`retention`]: what may be pruned, and when.
//! - [`wire`]: exact money and time values in Postgres' binary format.

pub mod audit;
pub mod config_log;
pub mod connect;
pub mod export;
pub mod health;
pub mod migrations;
pub mod records;
pub mod retention;
pub mod wire;
pub mod writer;

pub use audit::{append as audit_append, verify_chain, AuditEntry, VerifyReport};
pub use connect::connect;
pub use export::export_trades_csv;
pub use health::{DbHealthSource, Redactor};
pub use migrations::run as run_migrations;
pub use writer::{spawn_writer, DbAlert, DbState, WriterConfig, WriterHandle, WriterHealth};

/// Errors of the persistence layer. Messages never contain the database URL or its password.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database refused or failed a statement, or the connection broke.
    #[error("postgres: {}", chain(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// `DATABASE_URL` could not be used.
    #[error("DATABASE_URL is invalid: {0} (expected postgres://user:password@host:port/dbname[?sslmode=disable])")]
    Config(String),
    /// TLS to the database could not be set up.
    #[error("database TLS setup failed: {0}")]
    Tls(String),
    /// A schema migration failed.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// The journal could not be read.
    #[error("journal read failed: {0}")]
    Journal(String),
    /// A value cannot be stored as it is (e.g. an id beyond the range of BIGINT).
    #[error("cannot store journal record at offset {offset}: {what}")]
    Data {
        /// Offset of the journal record.
        offset: u64,
        /// What is wrong with it.
        what: String,
    },
    /// Another writer advanced the stored offset under us (two writers on one stream).
    #[error(
        "writer progress for stream {stream:?} moved unexpectedly (another writer is running?)"
    )]
    Conflict {
        /// The writer stream name.
        stream: String,
    },
    /// A batch (or the connection setup) took too long: the database is overloaded or hung. Rolled back, retried.
    #[error("postgres did not answer within {0:?} (overloaded, or blocked by a lock)")]
    Timeout(std::time::Duration),
    /// Writing the export failed.
    #[error("export write failed: {0}")]
    Io(#[from] std::io::Error),
    /// A request the library refuses (e.g. pruning inside the retention period).
    #[error("{0}")]
    Refused(String),
}

/// The error and its causes ("error performing TLS handshake: invalid peer certificate: UnknownIssuer"): the top
/// level alone rarely says what to fix. None of them contains the URL.
fn chain(e: &tokio_postgres::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        let t = c.to_string();
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

impl DbError {
    /// True when the error means the connection is unusable and a reconnect is needed.
    pub fn is_connection(&self) -> bool {
        match self {
            DbError::Postgres(e) => e.is_closed() || e.as_db_error().is_none(),
            _ => false,
        }
    }
}
