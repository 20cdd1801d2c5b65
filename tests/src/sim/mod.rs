//! The Binance USD-M futures simulator.
//!
//! One listener (plain TCP, or TLS with [`SimTls`]) serves REST (`/fapi/...`, `/sapi/...`), market streams
//! (`/ws/...`, `/stream`, `/public/...`, `/market/...`), user data streams (`/ws/<listenKey>`,
//! `/private/ws?listenKey=`), the WebSocket API (`/ws-fapi/v1`) and the test kit's admin API (`/admin/...`).
//! Modules, one concept each:
//! - [`keys`]: the keys file and key permissions; [`auth`]: parameters, signatures, timestamps;
//! - [`error`]: Binance error bodies; [`symbols`]: exchangeInfo filters and their checks;
//! - [`market`]: the price source trait and books ([`engine_source`]: the engine's `SimMarket` as source); [`orders`], [`matching`], [`account`]: trading state;
//! - [`ratelimit`]: weights and order counters; [`faults`], [`conns`], [`admin`]: fault injection;
//! - [`http`]: REST routes; [`streams`]: market streams; [`user_stream`]: listenKeys and user data;
//!   [`ws_api`]: the WebSocket API; [`server`]: the listener and the market ticker; [`client`]: the admin client;
//!   [`probe`]: the tick → order latency probe of the benchmarks.
//! - [`trades`]: the account's executions and income (`userTrades`, `income`).
//! - [`spot`]: Binance SPOT on the same listener (`/api/v3`, `/ws-api/v3`, `/spot/ws`, `/admin/spot`).
//! - [`algo`]: conditional orders through the Algo Order API (`/fapi/v1/algoOrder`, `ALGO_UPDATE`).

pub mod account;
pub mod account_modes;
pub mod admin;
pub mod algo;
pub mod auth;
pub mod candles;
pub mod client;
pub mod clock;
pub mod conns;
pub mod engine_source;
pub mod error;
pub mod faults;
pub mod funding;
pub mod http;
pub mod keys;
pub mod market;
pub mod matching;
pub mod orders;
pub mod probe;
pub mod ratelimit;
pub mod server;
pub mod spot;
pub mod streams;
pub mod symbols;
pub mod trades;
pub mod user_stream;
pub mod ws_api;

pub use client::AdminClient;
pub use server::{start, SimConfig, SimHandle, SimTls, SourceKind};

use aegis_shared::num::Notional;
use clock::Clock;
use conns::Conns;
use faults::Faults;
use keys::KeyStore;
use matching::Exchange;
use ratelimit::RateLimiter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use streams::{DepthState, StreamMsg};
use tokio::sync::broadcast;
use user_stream::ListenKeys;

/// Settings that the admin API can change while running.
#[derive(Debug)]
pub struct Settings {
    /// Maximum WebSocket connection lifetime (Binance: 24 h).
    pub ws_lifetime_ms: AtomicU64,
    /// Server ping interval on streams (Binance futures: 3 min).
    pub ping_interval_ms: AtomicU64,
    /// listenKey validity (Binance: 60 min).
    pub listen_key_ttl_ms: AtomicU64,
}

/// Everything the simulator knows, shared by all connections.
pub struct Sim {
    /// Accounts, books, orders.
    pub ex: Mutex<Exchange>,
    /// API keys.
    pub keys: RwLock<KeyStore>,
    /// Rate limit counters.
    pub limits: Mutex<RateLimiter>,
    /// listenKeys.
    pub listen_keys: Mutex<ListenKeys>,
    /// Request faults.
    pub faults: Mutex<Faults>,
    /// Open WebSocket connections.
    pub conns: Conns,
    /// Server clock (with skew).
    pub clock: Clock,
    /// Market stream messages.
    pub market_tx: broadcast::Sender<Arc<StreamMsg>>,
    /// Per-symbol depth stream state.
    pub depth: Mutex<std::collections::HashMap<String, DepthState>>,
    /// Runtime settings.
    pub settings: Settings,
    /// Requests per API key (every authenticated REST and WebSocket API request, accepted or not).
    pub key_usage: Mutex<std::collections::HashMap<String, KeyUsage>>,
    /// REST requests per path (futures and spot, every method, answered or not): what a test checks to show an
    /// endpoint was never called.
    pub rest_paths: Mutex<std::collections::BTreeMap<String, u64>>,
    /// One-minute bars of the public trades (klines, 24 h tickers).
    pub candles: Mutex<candles::Candles>,
    /// Tick → order latency probe (benchmarks).
    pub probe: probe::Probe,
    /// Funding settings ([`funding`]).
    pub funding: Mutex<funding::FundingState>,
    /// The spot exchange ([`spot`]).
    pub spot: spot::Spot,
    agg_id: AtomicU64,
}

/// How often and when an API key was last presented.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyUsage {
    /// Requests that named the key (header, `apiKey` param or a logged-on session).
    pub requests: u64,
    /// Of those, refused because the key is unknown or revoked.
    pub refused: u64,
    /// Server time of the last one (ms).
    pub last_used_ms: u64,
}

/// Locks a mutex, recovering from poisoning: a panicked handler must not take the whole simulator down.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sim {
    /// Builds the shared state.
    pub fn new(ex: Exchange, keys: KeyStore, limits: RateLimiter, cfg: &SimConfig) -> Self {
        let (market_tx, _) = broadcast::channel(8192);
        Self {
            ex: Mutex::new(ex),
            keys: RwLock::new(keys),
            limits: Mutex::new(limits),
            listen_keys: Mutex::new(ListenKeys::default()),
            faults: Mutex::new(Faults::default()),
            conns: Conns::default(),
            clock: Clock::default(),
            market_tx,
            depth: Mutex::new(Default::default()),
            settings: Settings {
                ws_lifetime_ms: AtomicU64::new(cfg.ws_lifetime_ms),
                ping_interval_ms: AtomicU64::new(cfg.ping_interval_ms),
                listen_key_ttl_ms: AtomicU64::new(cfg.listen_key_ttl_ms),
            },
            key_usage: Mutex::new(Default::default()),
            rest_paths: Mutex::new(Default::default()),
            candles: Mutex::new(Default::default()),
            probe: probe::Probe::default(),
            funding: Mutex::new(Default::default()),
            spot: spot::Spot::default(),
            agg_id: AtomicU64::new(5_933_014),
        }
    }

    /// Server time (ms).
    pub fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Next aggregate trade id.
    pub fn next_agg_id(&self) -> u64 {
        self.agg_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Reads a key (cloned, so no lock is held afterwards). Every authenticated request looks its key up here, so
    /// this is also where [`KeyUsage`] is counted.
    pub fn key(&self, api_key: &str) -> Option<keys::ApiKey> {
        let k = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(api_key)
            .cloned();
        let now = self.now();
        let mut u = lock(&self.key_usage);
        let e = u.entry(api_key.to_string()).or_default();
        e.requests += 1;
        e.refused += u64::from(k.is_none());
        e.last_used_ms = now;
        k
    }

    /// The default wallet for new accounts.
    pub fn default_wallet(&self) -> Notional {
        lock(&self.ex).default_wallet
    }
}
