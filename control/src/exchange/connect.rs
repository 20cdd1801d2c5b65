//! What every start on Binance connects with: the REST client and the WebSocket TLS roots, both trusting
//! `BINANCE_EXTRA_CA_FILE` when set. Shared by [`super::start_live`] and [`super::paper_market`] (kept out of
//! `exchange/mod.rs`, which wires both, so neither imports its own parent).

use super::{env, rest};
use crate::engine_link::RunError;
use aegis_shared::config::ConfigError;

/// `recvWindow` of the WebSocket-API requests the engine's order entry signs (its encoder is built here, in the
/// control plane, at start and on a key switch; moved from `aegis_engine::venue::binance::entry`, which never
/// read it).
pub const WS_API_RECV_WINDOW_MS: u32 = 5000;

/// The `BINANCE_EXTRA_CA_FILE` PEM, read once at start. Errors name the key and the path, never the content.
fn extra_ca(cfg: &aegis_shared::config::Config) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(path) = &cfg.exchange.extra_ca_file else {
        return Ok(None);
    };
    let key = aegis_shared::config::keys::BINANCE_EXTRA_CA_FILE;
    let shown = path.display().to_string();
    let pem = std::fs::read(path)
        .map_err(|e| ConfigError::new(key, Some(&shown), format!("cannot read it: {e}")))?;
    // Checked here so a wrong file fails at start with the key's name, not later as a TLS error.
    if reqwest::Certificate::from_pem_bundle(&pem).map_or(true, |c| c.is_empty()) {
        return Err(ConfigError::new(
            key,
            Some(&shown),
            "not a PEM certificate file: give the CA certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    tracing::warn!("exchange:    also trusting the CA in BINANCE_EXTRA_CA_FILE={shown} (simulator or test endpoint)");
    Ok(Some(pem))
}

/// The REST client for `endpoints` and the TLS roots of the WebSocket connections, both trusting
/// `BINANCE_EXTRA_CA_FILE` when set. One config for the WebSocket API, user data and market streams alike,
/// fixed before any of them connects.
pub(super) fn client_and_tls(
    cfg: &aegis_shared::config::Config,
    endpoints: env::Endpoints,
    creds: Option<env::Credentials>,
) -> Result<
    (
        rest::RestClient,
        Option<std::sync::Arc<rustls::ClientConfig>>,
    ),
    RunError,
> {
    let extra_ca = extra_ca(cfg)?;
    let client =
        rest::RestClient::with_extra_ca(endpoints, creds, extra_ca.as_deref()).map_err(run_err)?;
    Ok((client, ws_tls(extra_ca.as_deref())?))
}

/// The WebSocket TLS roots with `extra_ca` added (`None`: the public roots only).
fn ws_tls(
    extra_ca: Option<&[u8]>,
) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, RunError> {
    let Some(pem) = extra_ca else {
        return Ok(None);
    };
    let tls = aegis_engine::net::ws::set_extra_roots(pem).map_err(|e| {
        ConfigError::new(
            aegis_shared::config::keys::BINANCE_EXTRA_CA_FILE,
            None,
            format!("cannot use it: {e}"),
        )
    })?;
    Ok(Some(tls))
}

/// A plain HTTP client for public, unsigned requests (paper on spot reads spot's exchangeInfo with it, which the
/// futures [`rest::RestClient`] has no base URL for) and the WebSocket TLS roots, both trusting
/// `BINANCE_EXTRA_CA_FILE` when set. It holds no key: nothing it sends can be signed.
pub(super) fn public_http_and_tls(
    cfg: &aegis_shared::config::Config,
) -> Result<
    (
        reqwest::Client,
        Option<std::sync::Arc<rustls::ClientConfig>>,
    ),
    RunError,
> {
    let extra_ca = extra_ca(cfg)?;
    let mut builder = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .connect_timeout(std::time::Duration::from_secs(5))
        .user_agent(concat!("aegis/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &extra_ca {
        for c in reqwest::Certificate::from_pem_bundle(pem).map_err(run_err)? {
            builder = builder.add_root_certificate(c);
        }
    }
    let http = builder.build().map_err(run_err)?;
    Ok((http, ws_tls(extra_ca.as_deref())?))
}

/// An exchange failure during the start, as the run reports it.
pub(super) fn run_err(e: impl std::fmt::Display) -> RunError {
    RunError::Engine(e.to_string())
}
