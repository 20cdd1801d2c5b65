//! Paper trading on the real market (`TRADING_MODE=paper FEED=binance`), as freqtrade's dry-run does: the
//! engine reads Binance's public market streams on its own thread, exactly as in testnet/live, while orders fill
//! on the paper venue. No key is read, nothing is signed and no order leaves the machine.
//!
//! USD-M futures (`MARKETS=futures`, the default): the market streams (`bookTicker`, `aggTrade`) of `fstream`, the
//! symbols' real filters (`GET /fapi/v1/exchangeInfo`), so a paper order is held to the same tick, step and
//! minimum notional as a live one, and the funding rates (`GET /fapi/v1/premiumIndex`, [`super::paper_funding`]),
//! so paper positions pay the funding live ones would.
//!
//! Spot (`MARKETS=spot`): spot's own public endpoints ([`env::SpotEndpoints`]: streams of
//! `stream.binance.com:9443`, whose bookTicker has no event type or time, and the filters of
//! `GET /api/v3/exchangeInfo`, [`super::spot_info`]). Spot has no funding, so none is read or booked, and no
//! futures endpoint is called. All of it is public and unsigned.

use super::connect::{client_and_tls, run_err};
use super::{env, rest};
use crate::engine_link::{EngineStart, RunError, StartContext};
use aegis_engine::net::ws_feed::WsFeedConfig;
use aegis_engine::FeedSource;
use aegis_shared::config::{Config, ConfigError};
use aegis_shared::{Market, Symbol};

/// The combined-stream names the engine reads for `symbols` (testnet, live and paper on Binance alike).
pub fn stream_names(symbols: impl IntoIterator<Item = Symbol>) -> Vec<String> {
    symbols
        .into_iter()
        .flat_map(|s| {
            let l = s.as_str().to_ascii_lowercase();
            // No `@depth`: no strategy reads an L2 book, and keeping one would cost the engine thread a
            // parse and a book update per depth frame for nothing.
            [format!("{l}@bookTicker"), format!("{l}@aggTrade")]
        })
        .collect()
}

/// The engine's market-data feed on `client`'s stream endpoint: the combined stream for `symbols`, the given TLS
/// roots, and the configured rollover.
pub fn ws_feed(
    cfg: &Config,
    client: &rest::RestClient,
    symbols: impl IntoIterator<Item = Symbol>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> WsFeedConfig {
    ws_feed_at(cfg, &client.endpoints.fstream, symbols, tls)
}

/// [`ws_feed`] on any stream base (`stream`: Binance spot's, which the futures client does not know).
pub fn ws_feed_at(
    cfg: &Config,
    stream: &str,
    symbols: impl IntoIterator<Item = Symbol>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> WsFeedConfig {
    let streams = stream_names(symbols);
    let mut feed = WsFeedConfig::new(format!("{stream}/stream?streams={}", streams.join("/")));
    feed.tls = tls.map(aegis_engine::net::ws_feed::TlsOverride);
    // 0 only in a hand-built `ExchangeConfig::default()`; the loaded config is always 1..=86399.
    if cfg.exchange.ws_rollover_secs > 0 {
        feed.rollover_ms = cfg.exchange.ws_rollover_secs * 1000;
    }
    tracing::info!(
        "market data: {stream}/stream ({} streams, rollover every {} s)",
        streams.len(),
        feed.rollover_ms / 1000
    );
    feed
}

/// Starts the paper engine on Binance's public market data. See the module docs.
pub fn start(ctx: StartContext<'_>) -> Result<EngineStart, RunError> {
    tokio::task::block_in_place(|| {
        let rt = tokio::runtime::Handle::current();
        start_inner(ctx, rt)
    })
}

fn start_inner(ctx: StartContext<'_>, rt: tokio::runtime::Handle) -> Result<EngineStart, RunError> {
    let cfg = ctx.config;
    if cfg.market == Market::Spot {
        return start_spot(ctx, rt);
    }
    let endpoints = env::Endpoints::paper_market(cfg)
        .ok_or_else(|| run_err("FEED=binance paper trading needs TRADING_MODE=paper"))?;
    tracing::info!(
        "exchange:    none: PAPER fills on Binance USD-M futures {} public market data (REST {}, streams {}); no key, no orders sent",
        endpoints.name.to_uppercase(),
        endpoints.fapi,
        endpoints.fstream,
    );
    if endpoints.overridden {
        tracing::warn!("exchange:    URLs overridden by BINANCE_*_URL (simulator or proxy): this is not Binance itself");
    }
    // `None`: paper mode has no credentials, so this client cannot sign anything.
    let (client, tls) = client_and_tls(cfg, endpoints, None)?;
    let (mut params, _sim_feed) = crate::engine_link::params(&ctx)?;
    let symbols: Vec<Symbol> = params.symbols.iter().map(|s| s.symbol).collect();
    let info = rt.block_on(client.exchange_info()).map_err(|e| {
        run_err(format!(
            "cannot read Binance's exchange filters (GET /fapi/v1/exchangeInfo): {e}; check the network or use FEED=sim"
        ))
    })?;
    params.symbols = super::startup::specs_from_exchange_info(&info, &symbols)
        .map_err(|fix| ConfigError::new("SYMBOLS", None, fix))?;
    let feed = ws_feed(cfg, &client, symbols.clone(), tls);
    let start = crate::engine_link::spawn_paper(params, FeedSource::Ws(feed))?;
    super::paper_funding::spawn(&rt, client, symbols, start.link.commands.clone());
    Ok(start)
}

/// Paper trading on Binance spot's public market data: spot's streams and `/api/v3/exchangeInfo` filters, no
/// funding (spot has none), no futures endpoint.
fn start_spot(ctx: StartContext<'_>, rt: tokio::runtime::Handle) -> Result<EngineStart, RunError> {
    let cfg = ctx.config;
    let endpoints = env::SpotEndpoints::paper_market(cfg)
        .ok_or_else(|| run_err("FEED=binance paper trading needs TRADING_MODE=paper"))?;
    tracing::info!(
        "exchange:    none: PAPER fills on Binance spot {} public market data (REST {}, streams {}); no key, no orders sent, no funding on spot",
        endpoints.name.to_uppercase(),
        endpoints.rest,
        endpoints.stream,
    );
    if endpoints.overridden {
        tracing::warn!("exchange:    URLs overridden by BINANCE_SPOT_URL / BINANCE_SPOT_STREAM_URL (simulator or proxy): this is not Binance itself");
    }
    // No key exists in paper mode and this client has no way to sign: it only reads exchangeInfo.
    let (http, tls) = super::connect::public_http_and_tls(cfg)?;
    let (mut params, _sim_feed) = crate::engine_link::params(&ctx)?;
    let symbols: Vec<Symbol> = params.symbols.iter().map(|s| s.symbol).collect();
    let info = rt
        .block_on(super::spot_info::fetch(&http, &endpoints.rest, &symbols))
        .map_err(|e| match e {
            super::spot_info::SpotInfoError::UnknownSymbol(_) => {
                RunError::from(ConfigError::new("SYMBOLS", None, e.to_string()))
            }
            e => run_err(format!(
                "cannot read Binance spot's exchange filters: {e}; check the network or use FEED=sim"
            )),
        })?;
    params.symbols = super::spot_info::specs(&info, &symbols)
        .map_err(|e| ConfigError::new("SYMBOLS", None, e.to_string()))?;
    for s in &params.symbols {
        tracing::info!(
            "filters:     {} spot: tick {}, step {}, min qty {}, min notional {} (GET {})",
            s.symbol,
            s.filters.tick_size,
            s.filters.step_size,
            s.filters.min_qty,
            s.filters.min_notional,
            super::spot_info::PATH
        );
    }
    let feed = ws_feed_at(cfg, &endpoints.stream, symbols, tls);
    crate::engine_link::spawn_paper(params, FeedSource::Ws(feed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_streams_per_symbol_lower_case_and_no_depth() {
        let s = stream_names([Symbol::new("BTCUSDT").unwrap()]);
        assert_eq!(s, ["btcusdt@bookTicker", "btcusdt@aggTrade"]);
    }

    #[test]
    fn spot_feed_is_the_combined_stream_on_spots_host() {
        let cfg = crate::journal::test_support::config(&[("FEED", "binance"), ("MARKETS", "spot")]);
        let f = ws_feed_at(
            &cfg,
            env::SPOT_STREAM,
            [Symbol::new("BTCUSDT").unwrap()],
            None,
        );
        assert_eq!(
            f.url,
            "wss://stream.binance.com:9443/stream?streams=btcusdt@bookTicker/btcusdt@aggTrade"
        );
    }
}
