//! The database commands of the CLI: `aegis audit verify`, `aegis export trades`, `aegis db prune`,
//! `aegis fleet status` (exit 0 fine, 1 refused/broken, 2 config or DB error). Moved here from `db_link` (which
//! is Postgres inside `aegis run`) so the run-time link does not import the operating commands.
//! Nothing here prints `DATABASE_URL` or its password: errors pass through [`Redactor`].

use crate::cli::{ExportFormat, ExportTradesArgs};
use crate::db;
use crate::db::retention::{self, ACCESS_LOG_RETENTION_DAYS};
use crate::db::Redactor;
use aegis_shared::Secret;
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use tokio_postgres::Client;

/// `DATABASE_URL` from the environment / `.env`, or exit code 2 with a message.
fn cli_url(env_file: &Path) -> Result<Secret<String>, u8> {
    let (_env, cfg) = crate::ops::commands::load(env_file)?;
    cfg.database_url.ok_or_else(|| {
        eprintln!(
            "aegis: DATABASE_URL is not set: set it in the environment or {} (postgres://user:password@127.0.0.1:5432/aegis)",
            env_file.display()
        );
        2u8
    })
}

async fn cli_connect(url: &Secret<String>) -> Result<Client, u8> {
    let r = Redactor::for_url(url);
    match tokio::time::timeout(Duration::from_secs(10), db::connect(url.expose())).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => {
            eprintln!(
                "aegis: cannot connect to the database: {}",
                r.clean(&e.to_string())
            );
            Err(2)
        }
        Err(_) => {
            eprintln!("aegis: cannot connect to the database: no answer within 10 s");
            Err(2)
        }
    }
}

/// The prelude every database command shares: `DATABASE_URL`, a runtime, a connection, then `f` with the client
/// and a [`Redactor`] for the URL. Configuration, runtime and connection failures print their message and return
/// their exit code (2) without calling `f`.
fn with_cli_db<F, Fut>(env_file: &Path, f: F) -> u8
where
    F: FnOnce(Client, Redactor) -> Fut,
    Fut: Future<Output = u8>,
{
    let url = match cli_url(env_file) {
        Ok(u) => u,
        Err(c) => return c,
    };
    with_cli_db_url(url, f)
}

/// [`with_cli_db`] for a URL already chosen.
fn with_cli_db_url<F, Fut>(url: Secret<String>, f: F) -> u8
where
    F: FnOnce(Client, Redactor) -> Fut,
    Fut: Future<Output = u8>,
{
    let rt = match crate::ops::commands::cli_runtime(2) {
        Ok(rt) => rt,
        Err(c) => return c,
    };
    rt.block_on(async {
        let client = match cli_connect(&url).await {
            Ok(c) => c,
            Err(c) => return c,
        };
        f(client, Redactor::for_url(&url)).await
    })
}

/// `aegis audit verify`: 0 when the chain holds, 1 naming the first broken row, 2 on a configuration or
/// database error.
pub fn audit_verify(env_file: &Path) -> u8 {
    with_cli_db(env_file, |client, r| async move {
        match db::verify_chain(&client).await {
            Ok(rep) if rep.is_valid() => {
                println!("{rep}");
                0
            }
            Ok(rep) => {
                eprintln!("aegis: {rep}");
                println!("{rep}");
                1
            }
            Err(e) => {
                eprintln!("aegis: audit verify failed: {}", r.clean(&e.to_string()));
                2
            }
        }
    })
}

/// `aegis db prune`: access logs older than [`ACCESS_LOG_RETENTION_DAYS`] days and expired revoked tokens.
pub fn db_prune(env_file: &Path) -> u8 {
    with_cli_db(env_file, |client, r| async move {
        let failed = |what: &str, e: db::DbError| {
            eprintln!("aegis: pruning {what} failed: {}", r.clean(&e.to_string()));
            2
        };
        let a = match retention::prune_access_log(&client, ACCESS_LOG_RETENTION_DAYS).await {
            Ok(n) => n,
            Err(e) => return failed("the access log", e),
        };
        let t = match retention::prune_revoked_tokens(&client).await {
            Ok(n) => n,
            Err(e) => return failed("revoked tokens", e),
        };
        println!(
            "pruned {a} access-log rows older than {ACCESS_LOG_RETENTION_DAYS} days and {t} expired revoked tokens"
        );
        0
    })
}

/// `aegis fleet status [--json]`: the lease table side by side. Exit 0, 2 on a configuration or database error.
pub fn fleet_status(env_file: &Path, a: &crate::cli::FleetStatusArgs) -> u8 {
    let json = a.json;
    // The fleet database (FLEET_DATABASE_URL) when the bots keep their records apart, else DATABASE_URL.
    let fleet_url = match crate::config::env::EnvSource::load(env_file)
        .map(|e| crate::fleet::FleetSettings::from_env(&e))
    {
        Ok(Ok(s)) => s.database_url,
        Ok(Err(e)) | Err(e) => {
            eprintln!("aegis: {e}");
            return 2;
        }
    };
    let url = match fleet_url {
        Some(u) => u,
        None => match cli_url(env_file) {
            Ok(u) => u,
            Err(c) => return c,
        },
    };
    with_cli_db_url(url, |client, r| async move {
        match crate::fleet::lease::list(&client).await {
            Ok(rows) if json => {
                println!("{}", serde_json::json!({ "instances": rows }));
                0
            }
            Ok(rows) => {
                print!("{}", crate::fleet::status::table(&rows));
                0
            }
            Err(e) => {
                eprintln!(
                    "aegis: fleet status failed: {} (the table fleet_leases comes with migration V20: start a bot of this version once, or apply the migrations as the schema owner)",
                    r.clean(&e.to_string())
                );
                2
            }
        }
    })
}

/// A `--from`/`--to` value: RFC 3339 (`2026-01-31T12:00:00Z`, `...+02:00`) or a UTC date (`2026-01-31`).
/// Returns the text Postgres parses and whether it was a date alone.
fn time_arg(flag: &str, v: &str) -> Result<(String, bool), String> {
    let b = v.as_bytes();
    let date_ok = b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit);
    if date_ok && b.len() == 10 {
        return Ok((format!("{v}T00:00:00Z"), true));
    }
    let rest = &v[10.min(v.len())..];
    let zoned = rest.ends_with('Z')
        || rest.ends_with('z')
        || rest.len() >= 6 && {
            let tail = &rest.as_bytes()[rest.len() - 6..];
            matches!(tail[0], b'+' | b'-') && tail[3] == b':'
        };
    if date_ok && matches!(b.get(10), Some(b'T' | b't' | b' ')) && zoned {
        return Ok((v.to_string(), false));
    }
    Err(format!(
        "{flag} {v:?}: use RFC 3339 with a zone (2026-01-31T12:00:00Z) or a UTC date (2026-01-31)"
    ))
}

/// `aegis export trades --from … --to … --format csv [--out FILE]`: one CSV row per fill with `from <= time <
/// to`; a date alone as `--to` includes that whole day. Exit 0 written, 2 on bad arguments or a database error.
pub fn export_trades(env_file: &Path, a: &ExportTradesArgs) -> u8 {
    let ExportFormat::Csv = a.format;
    let (from, _) = match time_arg("--from", &a.from) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("aegis: {e}");
            return 2;
        }
    };
    let (to, to_is_date) = match time_arg("--to", &a.to) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("aegis: {e}");
            return 2;
        }
    };
    with_cli_db(env_file, |client, r| async move {
        // Postgres parses the times (exactly, with any zone offset); the shape was checked above.
        let parsed = client
            .query_one(
                "SELECT $1::text::timestamptz, $2::text::timestamptz + CASE WHEN $3 THEN interval '1 day' ELSE interval '0' END",
                &[&from, &to, &to_is_date],
            )
            .await;
        let (from_t, to_t): (time::OffsetDateTime, time::OffsetDateTime) = match parsed {
            Ok(row) => (row.get(0), row.get(1)),
            Err(e) => {
                let msg = e
                    .as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_else(|| e.to_string());
                eprintln!(
                    "aegis: --from/--to: {} (use 2026-01-31T12:00:00Z or 2026-01-31)",
                    r.clean(&msg)
                );
                return 2;
            }
        };
        let result = match &a.out {
            Some(path) => {
                // Tax records: not for other users' eyes.
                let file = match open_private(path) {
                    Ok(f) => f,
                    Err(e) => {
                        eprintln!("aegis: cannot create {}: {e}", path.display());
                        return 2;
                    }
                };
                let mut w = tokio::io::BufWriter::new(tokio::fs::File::from_std(file));
                db::export_trades_csv(&client, from_t, to_t, &mut w).await
            }
            None => {
                let mut w = tokio::io::BufWriter::new(tokio::io::stdout());
                db::export_trades_csv(&client, from_t, to_t, &mut w).await
            }
        };
        match result {
            Ok(n) => {
                eprintln!(
                    "aegis: exported {n} fills{}",
                    a.out
                        .as_ref()
                        .map(|p| format!(" to {}", p.display()))
                        .unwrap_or_default()
                );
                0
            }
            Err(e) => {
                eprintln!("aegis: export failed: {}", r.clean(&e.to_string()));
                2
            }
        }
    })
}

fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_args() {
        assert_eq!(
            time_arg("--from", "2026-01-31").unwrap(),
            ("2026-01-31T00:00:00Z".into(), true)
        );
        assert!(!time_arg("--to", "2026-01-31T12:00:00Z").unwrap().1);
        assert!(time_arg("--to", "2026-01-31T12:00:00.5+02:00").is_ok());
        for bad in [
            "",
            "yesterday",
            "2026-1-31",
            "2026-01-31T12:00:00",
            "31.01.2026",
        ] {
            let e = time_arg("--to", bad).unwrap_err();
            assert!(e.contains("RFC 3339"), "{bad}: {e}");
        }
    }
}
