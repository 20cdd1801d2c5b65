//! Starting the simulator: configuration, the single listener (HTTP + WebSocket upgrade on one port, plain TCP
//! or TLS) and the market ticker that drives the books from the price source.

use super::admin;
use super::client::AdminClient;
use super::http::rest;
use super::keys::{KeyError, KeyStore, KeysFile};
use super::market::{Frozen, MarketEvent, PriceSource, RandomWalk};
use super::matching::Exchange;
use super::ratelimit::{Limits, RateLimiter};
use super::streams::{self, publish_book, publish_mark, publish_trade};
use super::symbols::SymbolSpec;
use super::{lock, Sim};
use aegis_shared::num::Notional;
use axum::routing::get;
use axum::Router;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Which price source drives the books.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// The engine's simulated market, `aegis_engine::feed::sim::SimMarket` (default).
    EngineSim,
    /// A simple seeded random walk of the mid price.
    RandomWalk,
    /// No movement: only the admin API moves prices (deterministic tests).
    Frozen,
}

/// Simulator configuration.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to listen on (port 0 = any free port).
    pub listen: SocketAddr,
    /// Symbols.
    pub symbols: Vec<SymbolSpec>,
    /// Keys and accounts.
    pub keys: KeysFile,
    /// Starting USDT of accounts not listed in the keys file.
    pub default_wallet: Notional,
    /// Rate limits.
    pub limits: Limits,
    /// Market tick period.
    pub tick_ms: u64,
    /// Seed of the random walk.
    pub seed: u64,
    /// Price source.
    pub source: SourceKind,
    /// SimMarket messages generated per tick (EngineSim source).
    pub messages_per_tick: usize,
    /// listenKey validity.
    pub listen_key_ttl_ms: u64,
    /// WebSocket connection lifetime.
    pub ws_lifetime_ms: u64,
    /// Server ping interval on streams.
    pub ping_interval_ms: u64,
    /// TLS on the listener (`None`: plain TCP).
    pub tls: Option<SimTls>,
}

/// TLS on the simulator's one listener: HTTPS and WSS on the same port.
#[derive(Clone)]
pub enum SimTls {
    /// A self-signed certificate for `localhost` and `127.0.0.1`, generated at start; clients trust
    /// [`SimHandle::ca_pem`].
    SelfSigned,
    /// The caller's certificate chain and private key, both PEM.
    Pem {
        /// Certificate chain, leaf first.
        cert: String,
        /// PKCS#8, PKCS#1 or SEC1 private key.
        key: String,
    },
}

// By hand so that logging a `SimConfig` never prints a private key.
impl std::fmt::Debug for SimTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimTls::SelfSigned => f.write_str("SelfSigned"),
            SimTls::Pem { .. } => f.write_str("Pem { .. }"),
        }
    }
}

/// The rustls server config of `tls` and the certificate PEM clients should trust.
fn tls_config(tls: &SimTls) -> Result<(Arc<rustls::ServerConfig>, String), StartError> {
    let bad = |e: &dyn std::fmt::Display| StartError::Tls(e.to_string());
    let (cert_pem, key_pem) = match tls {
        SimTls::SelfSigned => {
            let ck = rcgen::generate_simple_self_signed(vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
            ])
            .map_err(|e| bad(&e))?;
            (ck.cert.pem(), ck.key_pair.serialize_pem())
        }
        SimTls::Pem { cert, key } => (cert.clone(), key.clone()),
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&format!("certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(bad(&"certificate PEM holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| bad(&format!("key PEM: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad(&e))?;
    // HTTP/1.1 only: the WebSocket upgrade (Binance clients' wss://) is an HTTP/1.1 mechanism.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(cfg), cert_pem))
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            symbols: SymbolSpec::defaults(),
            keys: KeysFile::default(),
            default_wallet: Notional::from_int(10_000),
            limits: Limits::default(),
            tick_ms: 100,
            seed: 1,
            source: SourceKind::EngineSim,
            listen_key_ttl_ms: 60 * 60 * 1000,
            ws_lifetime_ms: 24 * 60 * 60 * 1000,
            ping_interval_ms: 3 * 60 * 1000,
            messages_per_tick: 20,
            tls: None,
        }
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A bad key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The engine's simulated market refused the symbols.
    #[error("simulated market: {0}")]
    Market(#[from] aegis_engine::feed::sim::SimError),
    /// A bad account balance.
    #[error("account {0}: usdt {1:?} is not a decimal amount")]
    Balance(String, String),
    /// The listener.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The TLS certificate or key.
    #[error("TLS: {0}")]
    Tls(String),
}

/// A running simulator.
pub struct SimHandle {
    /// Bound address.
    pub addr: SocketAddr,
    /// Shared state (direct access for in-process tests).
    pub sim: Arc<Sim>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    ticker: JoinHandle<()>,
    cert_pem: Option<String>,
}

impl SimHandle {
    /// `http://addr`, or `https://addr` with TLS (REST base URL).
    pub fn base_url(&self) -> String {
        let s = if self.cert_pem.is_some() { "s" } else { "" };
        format!("http{s}://{}", self.addr)
    }
    /// `ws://addr`, or `wss://addr` with TLS (stream base URL).
    pub fn ws_url(&self) -> String {
        let s = if self.cert_pem.is_some() { "s" } else { "" };
        format!("ws{s}://{}", self.addr)
    }
    /// With TLS, the certificate (PEM) a client must trust: the generated one or the configured chain.
    pub fn ca_pem(&self) -> Option<&str> {
        self.cert_pem.as_deref()
    }
    /// An admin client for this simulator.
    pub fn admin(&self) -> AdminClient {
        AdminClient::new(&self.base_url())
    }
    /// Stops the listener and the ticker.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.ticker.abort();
        let _ = (&mut self.server).await;
    }
}

/// The router: REST fallback, WebSocket paths, admin.
pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/ws", get(streams::ws_bare))
        .route("/ws/{*rest}", get(streams::ws_raw))
        .route("/stream", get(streams::combined))
        .route("/public/ws", get(streams::public_bare))
        .route("/public/stream", get(streams::public_bare))
        .route("/public/ws/{*rest}", get(streams::public_raw))
        .route("/market/ws", get(streams::market_bare))
        .route("/market/stream", get(streams::market_bare))
        .route("/market/ws/{*rest}", get(streams::market_raw))
        .route("/private/ws", get(super::user_stream::private_ws))
        .route("/ws-fapi/v1", get(super::ws_api::upgrade))
        .route("/ws-api/v3", get(super::spot::ws_api::upgrade))
        .route("/spot/ws", get(super::spot::streams::bare))
        .route("/spot/ws/{*rest}", get(super::spot::streams::raw))
        .route("/spot/stream", get(super::spot::streams::combined))
        .nest("/admin", admin::router())
        .fallback(rest)
        .with_state(sim)
}

/// Starts the simulator with the configured price source.
pub async fn start(cfg: SimConfig) -> Result<SimHandle, StartError> {
    let source: Box<dyn PriceSource> = match cfg.source {
        SourceKind::EngineSim => Box::new(super::engine_source::EngineMarket::new(
            &cfg.symbols,
            cfg.seed,
            cfg.tick_ms,
            cfg.messages_per_tick,
        )?),
        SourceKind::RandomWalk => Box::new(RandomWalk::new(&cfg.symbols, cfg.seed)),
        SourceKind::Frozen => Box::new(Frozen),
    };
    start_with_source(cfg, source).await
}

/// Starts the simulator with any price source (e.g. one wrapping the engine's simulated market).
pub async fn start_with_source(
    cfg: SimConfig,
    mut source: Box<dyn PriceSource>,
) -> Result<SimHandle, StartError> {
    let now = super::clock::Clock::default().now_ms();
    let keys = KeyStore::from_entries(cfg.keys.keys.clone(), now)?;
    let mut ex = Exchange::new(cfg.symbols.clone(), cfg.default_wallet);
    for a in &cfg.keys.accounts {
        let w = Notional::parse(&a.usdt)
            .map_err(|_| StartError::Balance(a.name.clone(), a.usdt.clone()))?;
        ex.account(&a.name).wallet = w;
    }
    for name in keys.accounts() {
        ex.account(&name);
    }
    let tls = cfg.tls.as_ref().map(tls_config).transpose()?;
    let sim = Arc::new(Sim::new(ex, keys, RateLimiter::new(cfg.limits), &cfg));
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| StartError::Bind(cfg.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Bind(cfg.listen, e))?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let app = router(sim.clone());
    let (server, cert_pem) = match tls {
        None => (
            tokio::spawn(async move {
                let _ = axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
            }),
            None,
        ),
        Some((tls, pem)) => {
            let listener = listener.into_std().map_err(|e| StartError::Bind(addr, e))?;
            (serve_tls(listener, tls, app, stop_rx), Some(pem))
        }
    };
    let tsim = sim.clone();
    let tick = Duration::from_millis(cfg.tick_ms.max(1));
    let ticker = tokio::spawn(async move {
        let mut iv = tokio::time::interval(tick);
        iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut events = Vec::new();
        let mut last_mark = 0u64;
        let mut marks = 0u64;
        loop {
            iv.tick().await;
            let now = tsim.now();
            events.clear();
            source.step(now, &mut events);
            {
                let mut ex = lock(&tsim.ex);
                for e in &events {
                    match e {
                        MarketEvent::Quote(q) => {
                            if ex.on_quote(q, now, false) {
                                publish_book(&tsim, &ex.books[&q.symbol], now);
                            }
                        }
                        MarketEvent::Trade(t) => {
                            let mut traded = false;
                            if let Some(b) = ex.books.get_mut(&t.symbol) {
                                if !b.pinned {
                                    b.last_price = t.price;
                                    let (pd, qd) = (b.spec.price_precision, b.spec.qty_precision);
                                    publish_trade(&tsim, t, pd, qd, now);
                                    traded = true;
                                }
                            }
                            if traded {
                                // CONTRACT_PRICE algo orders trigger on the last trade.
                                ex.trigger_algo(&t.symbol, now);
                            }
                        }
                    }
                }
                if now >= last_mark + 1000 {
                    last_mark = now;
                    // `@markPrice` updates every third second, `@markPrice@1s` every second.
                    marks += 1;
                    let slow_too = marks >= 3;
                    if slow_too {
                        marks = 0;
                    }
                    for b in ex.books.values() {
                        publish_mark(&tsim, b, now, slow_too);
                    }
                }
            }
            super::user_stream::expire_due(&tsim);
        }
    });
    Ok(SimHandle {
        addr,
        sim,
        stop: Some(stop_tx),
        server,
        ticker,
        cert_pem,
    })
}

/// Serves `app` over TLS until `stop` fires (or its sender is dropped).
fn serve_tls(
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    stop: oneshot::Receiver<()>,
) -> JoinHandle<()> {
    let handle = axum_server::Handle::new();
    let server = axum_server::tls_rustls::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )
    .handle(handle.clone());
    tokio::spawn(async move {
        let _ = stop.await;
        // Bounded: a client that never closes its connection must not hold up a test's shutdown.
        handle.graceful_shutdown(Some(Duration::from_secs(1)));
    });
    tokio::spawn(async move {
        let _ = server
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await;
    })
}
