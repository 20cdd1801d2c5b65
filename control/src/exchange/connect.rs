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

/// The first steps of every testnet/live start on `market`: the endpoints and key of `TRADING_MODE` (logged,
/// loudly when overridden), the client on the market's paths, the clock offset (`GET /fapi/v1/time` or
/// `/api/v3/time`), and the read-only banner when there is no key. Returns the client, the WebSocket TLS roots
/// and whether the run is read-only.
pub(super) fn open_exchange(
    cfg: &aegis_shared::config::Config,
    rt: &tokio::runtime::Handle,
    market: aegis_shared::Market,
) -> Result<
    (
        rest::RestClient,
        Option<std::sync::Arc<rustls::ClientConfig>>,
        bool,
    ),
    RunError,
> {
    use aegis_shared::{Market, TradingMode};
    let endpoints =
        env::Endpoints::for_config(cfg).ok_or_else(|| run_err("paper mode has no exchange"))?;
    let creds = env::credentials(cfg)?;
    let (what, rest, stream, wsapi) = match market {
        Market::Futures => (
            "USD-M futures",
            &endpoints.fapi,
            &endpoints.fstream,
            &endpoints.wsapi,
        ),
        Market::Spot => (
            "spot",
            &endpoints.spot,
            &endpoints.spot_stream,
            &endpoints.spot_wsapi,
        ),
    };
    tracing::info!(
        "exchange:    Binance {what} {} (REST {rest}, streams {stream}, WebSocket API {wsapi})",
        endpoints.name.to_uppercase(),
    );
    if endpoints.overridden {
        tracing::warn!("exchange:    URLs overridden by BINANCE_*_URL (simulator or proxy): this is not Binance itself");
    }
    let (client, tls) = client_and_tls(cfg, endpoints, creds)?;
    let client = client.on_market(market);
    let offset = rt.block_on(client.sync_time()).map_err(|e| {
        run_err(format!(
            "cannot reach Binance {}{}: {e}",
            if market == Market::Spot { "spot " } else { "" },
            client.endpoints.name
        ))
    })?;
    let time = client.at("/fapi/v1/time", "/api/v3/time").1;
    tracing::info!("clock:       server time offset {offset} ms (GET {time})");
    let read_only = client.credentials().is_none();
    if read_only {
        tracing::warn!("==================== READ-ONLY MODE ====================");
        tracing::warn!(
            "no API key for TRADING_MODE={} ({}): {}market data and dashboard only, NO ORDERS",
            cfg.trading_mode,
            if cfg.trading_mode == TradingMode::Live {
                "BINANCE_API_KEY is empty"
            } else {
                "BINANCE_TESTNET_API_KEY is empty"
            },
            if market == Market::Spot { "spot " } else { "" },
        );
    }
    Ok((client, tls, read_only))
}
