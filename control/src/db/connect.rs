//! Opening a connection from `DATABASE_URL`.
//!
//! TLS policy (`sslmode` in the URL):
//! - `disable`: plain TCP.
//! - `prefer` (the default when absent): plain TCP to a loopback host (the guide keeps Postgres on 127.0.0.1, where
//!   TLS adds nothing), TLS otherwise.
//! - `require`: always TLS.
//!
//! TLS uses rustls with the `ring` provider and *verifies* the server certificate against the Mozilla roots plus,
//! if set, the PEM file in `PGSSLROOTCERT` (libpq's variable) — stricter than libpq's `require`, on purpose.

use super::DbError;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, NoTls};

/// Connection timeout used when the URL does not set `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses `DATABASE_URL` without echoing it (it carries the password) in any error.
pub fn parse_url(url: &str) -> Result<Config, DbError> {
    let mut cfg = Config::from_str(url).map_err(|e| {
        // tokio-postgres' parse errors name the offending key, never the value.
        DbError::Config(e.to_string())
    })?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    cfg.application_name("aegis");
    Ok(cfg)
}

fn is_loopback(cfg: &Config) -> bool {
    cfg.get_hosts().iter().all(|h| match h {
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .map(|ip| ip.is_loopback())
                    .unwrap_or(false)
        }
        #[cfg(unix)]
        Host::Unix(_) => true,
    })
}

fn tls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect, DbError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = std::env::var_os("PGSSLROOTCERT") {
        let pem = std::fs::read(&path).map_err(|e| {
            DbError::Tls(format!(
                "cannot read PGSSLROOTCERT {}: {e}",
                std::path::Path::new(&path).display()
            ))
        })?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| DbError::Tls(format!("PGSSLROOTCERT: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| DbError::Tls(format!("PGSSLROOTCERT: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DbError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Connects to `url` and spawns the connection driver on the current tokio runtime. The returned client fails
/// with a closed-connection error once the driver ends; callers reconnect.
pub async fn connect(url: &str) -> Result<Client, DbError> {
    let cfg = parse_url(url)?;
    connect_config(&cfg).await
}

/// Like [`connect`], from an already parsed config.
pub async fn connect_config(cfg: &Config) -> Result<Client, DbError> {
    let plain = match cfg.get_ssl_mode() {
        SslMode::Disable => true,
        SslMode::Prefer => is_loopback(cfg),
        _ => false,
    };
    if plain {
        let mut cfg = cfg.clone();
        // `prefer` with a plain connector would still offer TLS; say what we do.
        cfg.ssl_mode(SslMode::Disable);
        let (client, conn) = cfg.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(error = %e, "postgres connection ended");
            }
        });
        Ok(client)
    } else {
        let (client, conn) = cfg.connect(tls_connector()?).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(error = %e, "postgres connection ended");
            }
        });
        Ok(client)
    }
}
