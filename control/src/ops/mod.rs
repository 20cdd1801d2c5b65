//! Operating the bot the way the security guide says (issue 8): the commands around `aegis run`.
//!
//! - [`crate::config::env`]: `.env` + process environment lookup for the keys the shared [`Config`] does not
//!   hold (`ALERT_*`, `BACKUP_DIR`, `AEGIS_ADMIN_*`, exchange URL overrides); it lives in `config` because the
//!   fleet settings read it too.
//! - [`keys`]: key age (`DATA_DIR/keys.json`), the local key-event log, `aegis keys audit` and
//!   `aegis keys rotate`.
//! - [`probe`]: asks the exchange whether a key works and what it may do (`apiRestrictions`).
//! - [`preflight`]: `aegis preflight` with every input gathered, and the gate that stops `TRADING_MODE=live`.
//! - [`admin`]: the local admin token and the endpoints it guards, and the pinned-TLS client that `aegis halt`,
//!   `aegis resume` and `aegis kill` use.
//! - [`incident`]: `aegis incident-report`.
//! - [`pnl`]: `aegis reconcile --pnl`, the bot's fills, fees, funding and PnL against the exchange's books.
//! - [`crate::watch`] (its own module, below the pump that feeds it): alert triggers fed by the pump (engine
//!   events, error rate, unusual activity), the heartbeat watcher and the database-health forwarder.
//!
//! [`Config`]: aegis_shared::config::Config

pub mod admin;
pub mod commands;
pub mod dbcmd;
pub mod incident;
pub mod keycmd;
pub mod keyreload;
pub mod keys;
pub mod pnl;
pub mod preflight;
pub mod probe;

/// Writes `bytes` to `path` atomically with mode 600: a new temporary file beside it (created owner-only, so the
/// content is never readable by others, not even briefly), fsync, rename over `path`, fsync the directory.
pub fn write_private_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Constant-time equality of two byte strings (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
