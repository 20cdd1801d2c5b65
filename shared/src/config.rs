//! Typed, validated configuration, built from environment-style `KEY=value` pairs.
//!
//! Loading (`.env` plus the process environment, environment wins) is the control plane's job; this module only
//! turns a key lookup into a [`Config`], so it is pure and easy to test. Everything is validated here, before
//! anything starts: a bad value becomes a [`ConfigError`] naming the key, the bad value (never for a secret) and
//! the fix. Names follow the security guide (see `../shared/README.md`); every key is listed in [`keys::ALL`] and
//! documented in `.env.example`.
//!
//! Secrets (`BINANCE_*_KEY`, `JWT_SECRET`, `DATABASE_URL`, which holds the database password) are kept in
//! [`Secret`], so `format!("{config:?}")` never shows one.

use crate::mode::{Market, StrategyMode, TradingMode};
use crate::num::{Notional, Rate};
use crate::secret::Secret;
use crate::symbol::Symbol;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The configuration keys (environment variable names).
pub mod keys {
    /// `paper` | `testnet` | `live`.
    pub const TRADING_MODE: &str = "TRADING_MODE";
    /// `futures` (default) | `spot`: the Binance market this bot process trades.
    pub const MARKETS: &str = "MARKETS";
    /// Production API key.
    pub const BINANCE_API_KEY: &str = "BINANCE_API_KEY";
    /// Production secret key.
    pub const BINANCE_SECRET_KEY: &str = "BINANCE_SECRET_KEY";
    /// Testnet API key.
    pub const BINANCE_TESTNET_API_KEY: &str = "BINANCE_TESTNET_API_KEY";
    /// Testnet secret key.
    pub const BINANCE_TESTNET_SECRET_KEY: &str = "BINANCE_TESTNET_SECRET_KEY";
    /// Circuit breaker on/off.
    pub const CIRCUIT_BREAKER_ENABLED: &str = "CIRCUIT_BREAKER_ENABLED";
    /// Realized loss (USD) over the rolling last 60 minutes that trips the breaker.
    pub const CIRCUIT_MAX_LOSS_PER_HOUR: &str = "CIRCUIT_MAX_LOSS_PER_HOUR";
    /// Consecutive losing trades that trip the breaker.
    pub const CIRCUIT_MAX_CONSECUTIVE_LOSSES: &str = "CIRCUIT_MAX_CONSECUTIVE_LOSSES";
    /// Minutes before a tripped breaker resumes by itself.
    pub const CIRCUIT_COOLDOWN_MINUTES: &str = "CIRCUIT_COOLDOWN_MINUTES";
    /// USD per position.
    pub const FUTURES_AUTOPILOT_MAX_POSITION_SIZE: &str = "FUTURES_AUTOPILOT_MAX_POSITION_SIZE";
    /// USD loss per UTC day.
    pub const FUTURES_AUTOPILOT_MAX_DAILY_LOSS: &str = "FUTURES_AUTOPILOT_MAX_DAILY_LOSS";
    /// Path of the per-mode allocation JSON (guide §5.2).
    pub const MODE_ALLOCATION_FILE: &str = "MODE_ALLOCATION_FILE";
    /// Dashboard/API authentication on/off.
    pub const AUTH_ENABLED: &str = "AUTH_ENABLED";
    /// HS256 signing secret for dashboard tokens.
    pub const JWT_SECRET: &str = "JWT_SECRET";
    /// Token lifetime (`24h`, `30m`, ...).
    pub const JWT_EXPIRY: &str = "JWT_EXPIRY";
    /// Postgres connection URL.
    pub const DATABASE_URL: &str = "DATABASE_URL";
    /// `error` | `warn` | `info` | `debug` | `trace`.
    pub const LOG_LEVEL: &str = "LOG_LEVEL";
    /// JSON log records.
    pub const LOG_JSON: &str = "LOG_JSON";
    /// `file:line` in log records.
    pub const LOG_INCLUDE_FILE: &str = "LOG_INCLUDE_FILE";
    /// `stdout` | `stderr` | a file path.
    pub const LOG_OUTPUT: &str = "LOG_OUTPUT";
    /// Where the journal, certificate and other state live.
    pub const DATA_DIR: &str = "DATA_DIR";
    /// CPU core the engine thread is pinned to.
    pub const ENGINE_CORE: &str = "ENGINE_CORE";
    /// `sim` | `replay` | `binance` (paper fills on Binance's public market streams).
    pub const FEED: &str = "FEED";
    /// File replayed when `FEED=replay`.
    pub const REPLAY_FILE: &str = "REPLAY_FILE";
    /// Replay speed multiplier (1 = original speed).
    pub const REPLAY_SPEED: &str = "REPLAY_SPEED";
    /// Seed of the simulated market.
    pub const SIM_SEED: &str = "SIM_SEED";
    /// Simulated market messages per wall-clock second.
    pub const SIM_RATE: &str = "SIM_RATE";
    /// Simulated market seconds per wall-clock second.
    pub const SIM_SPEED: &str = "SIM_SPEED";
    /// Comma-separated symbols to trade.
    pub const SYMBOLS: &str = "SYMBOLS";
    /// USD prices of non-dollar quote assets for paper runs (`ETH=180.5,BTC=8300`).
    pub const QUOTE_USD: &str = "QUOTE_USD";
    /// Taker fee rate.
    pub const FEE_TAKER: &str = "FEE_TAKER";
    /// Maker fee rate.
    pub const FEE_MAKER: &str = "FEE_MAKER";
    /// Address the HTTPS API binds to.
    pub const BIND_ADDR: &str = "BIND_ADDR";
    /// Port of the HTTPS API.
    pub const API_PORT: &str = "API_PORT";
    /// PEM certificate chain for the API.
    pub const TLS_CERT_PATH: &str = "TLS_CERT_PATH";
    /// PEM private key for the API.
    pub const TLS_KEY_PATH: &str = "TLS_KEY_PATH";
    /// Optional plain-HTTP port that only redirects to the HTTPS API.
    pub const HTTP_REDIRECT_PORT: &str = "HTTP_REDIRECT_PORT";
    /// Journal fsync batch window in milliseconds.
    pub const JOURNAL_FSYNC_MS: &str = "JOURNAL_FSYNC_MS";
    /// Override of the USD-M futures REST base URL (e.g. the simulator's `http://127.0.0.1:9010`).
    pub const BINANCE_FAPI_URL: &str = "BINANCE_FAPI_URL";
    /// Override of the market stream base URL (e.g. `ws://127.0.0.1:9010`).
    pub const BINANCE_FSTREAM_URL: &str = "BINANCE_FSTREAM_URL";
    /// Override of the WebSocket API URL (e.g. `ws://127.0.0.1:9010/ws-fapi/v1`).
    pub const BINANCE_WSAPI_URL: &str = "BINANCE_WSAPI_URL";
    /// Override of the `/sapi` REST base URL (key restrictions; production `https://api.binance.com`).
    pub const BINANCE_SAPI_URL: &str = "BINANCE_SAPI_URL";
    /// Override of Binance spot's public REST base URL, read by paper trading on spot (`MARKETS=spot
    /// FEED=binance`) for `/api/v3/exchangeInfo` (production `https://api.binance.com`).
    pub const BINANCE_SPOT_URL: &str = "BINANCE_SPOT_URL";
    /// Override of Binance spot's market stream base URL, read by paper trading on spot (production
    /// `wss://stream.binance.com:9443`; binance-sim serves spot streams under `ws://127.0.0.1:9010/spot`).
    pub const BINANCE_SPOT_STREAM_URL: &str = "BINANCE_SPOT_STREAM_URL";
    /// Override of Binance spot's WebSocket API URL (orders and user data on `MARKETS=spot` testnet/live;
    /// production `wss://ws-api.binance.com:443/ws-api/v3`; binance-sim serves it at `ws://127.0.0.1:9010/ws-api/v3`).
    pub const BINANCE_SPOT_WSAPI_URL: &str = "BINANCE_SPOT_WSAPI_URL";
    /// PEM certificate trusted in addition to the public roots by the exchange connections (testnet mode only,
    /// for a simulator or test endpoint with its own CA).
    pub const BINANCE_EXTRA_CA_FILE: &str = "BINANCE_EXTRA_CA_FILE";
    /// PKCS#8 PEM Ed25519 private key file for the production key (then `BINANCE_SECRET_KEY` may stay empty).
    pub const BINANCE_ED25519_PRIVATE_KEY_PATH: &str = "BINANCE_ED25519_PRIVATE_KEY_PATH";
    /// PKCS#8 PEM Ed25519 private key file for the testnet key.
    pub const BINANCE_TESTNET_ED25519_PRIVATE_KEY_PATH: &str =
        "BINANCE_TESTNET_ED25519_PRIVATE_KEY_PATH";
    /// Live only: accept a key without an IP restriction (logged loudly). Never overrides withdrawals.
    pub const ALLOW_UNRESTRICTED_IP: &str = "ALLOW_UNRESTRICTED_IP";
    /// How often the key's restrictions are re-checked in live mode (default 24h).
    pub const KEY_RECHECK_INTERVAL: &str = "KEY_RECHECK_INTERVAL";
    /// Seconds after which the market data WebSocket is replaced by a fresh one (default 85800 = 23 h 50 min;
    /// 1 to 86399, because Binance cuts connections at 24 h).
    pub const WS_ROLLOVER_SECS: &str = "WS_ROLLOVER_SECS";
    /// Distance of the protective reduce-only stop the bot keeps resting on Binance for every open position, as
    /// a fraction of the entry price (default 0.03; 0.001 to 0.5). It lies beyond the modes' own software stops
    /// so those normally act first; it acts when the bot cannot (killed, crashed, disconnected).
    pub const EXCHANGE_STOP_LOSS: &str = "EXCHANGE_STOP_LOSS";
    /// Comma-separated trading modes to run (default all four).
    pub const MODES_ENABLED: &str = "MODES_ENABLED";
    /// Account capital in USD that the per-mode allocation percents apply to (default 10000).
    pub const CAPITAL_USD: &str = "CAPITAL_USD";
    /// Highest leverage an entry may use (default 5).
    pub const FUTURES_AUTOPILOT_MAX_LEVERAGE: &str = "FUTURES_AUTOPILOT_MAX_LEVERAGE";
    /// Most working orders at once before new entries are refused (default 10).
    pub const MAX_OPEN_ORDERS: &str = "MAX_OPEN_ORDERS";
    /// Most orders sent per rolling 10 s, exits included (default 50; Binance USD-M allows 300).
    pub const MAX_ORDERS_PER_10S: &str = "MAX_ORDERS_PER_10S";
    /// Dashboard: comma-separated IPs/CIDRs allowed to reach the API (empty: everyone who can connect).
    pub const DASHBOARD_ALLOWED_IPS: &str = "DASHBOARD_ALLOWED_IPS";
    /// Dashboard: reverse proxies whose `X-Forwarded-For` is believed.
    pub const TRUSTED_PROXIES: &str = "TRUSTED_PROXIES";
    /// Dashboard: requests per second per client IP.
    pub const API_RATE_LIMIT_PER_SEC: &str = "API_RATE_LIMIT_PER_SEC";
    /// Dashboard: request burst per client IP.
    pub const API_RATE_LIMIT_BURST: &str = "API_RATE_LIMIT_BURST";
    /// Dashboard: failed logins per account before a lockout.
    pub const LOGIN_MAX_FAILURES: &str = "LOGIN_MAX_FAILURES";
    /// Dashboard: failed logins per client IP before a lockout.
    pub const LOGIN_MAX_FAILURES_PER_IP: &str = "LOGIN_MAX_FAILURES_PER_IP";
    /// Dashboard: first lockout duration (doubles on each further failure).
    pub const LOGIN_LOCKOUT: &str = "LOGIN_LOCKOUT";
    /// Dashboard: largest accepted request body in bytes.
    pub const API_MAX_BODY_BYTES: &str = "API_MAX_BODY_BYTES";
    /// Dashboard: deadline for the TLS handshake and each HTTP/1 request head (also the keep-alive idle time).
    pub const API_HEADER_READ_TIMEOUT: &str = "API_HEADER_READ_TIMEOUT";
    /// Dashboard: a connection with no traffic either way for this long is closed.
    pub const API_IDLE_TIMEOUT: &str = "API_IDLE_TIMEOUT";
    /// Dashboard: most open connections per client address.
    pub const API_MAX_CONNECTIONS_PER_IP: &str = "API_MAX_CONNECTIONS_PER_IP";
    /// Dashboard: most open connections in all.
    pub const API_MAX_CONNECTIONS: &str = "API_MAX_CONNECTIONS";

    /// Dashboard keys validated by the control plane's web layer (kept raw in [`super::Config::dashboard`]).
    pub const DASHBOARD: &[&str] = &[
        DASHBOARD_ALLOWED_IPS,
        TRUSTED_PROXIES,
        API_RATE_LIMIT_PER_SEC,
        API_RATE_LIMIT_BURST,
        LOGIN_MAX_FAILURES,
        LOGIN_MAX_FAILURES_PER_IP,
        LOGIN_LOCKOUT,
        API_MAX_BODY_BYTES,
        API_HEADER_READ_TIMEOUT,
        API_IDLE_TIMEOUT,
        API_MAX_CONNECTIONS_PER_IP,
        API_MAX_CONNECTIONS,
    ];

    /// Every key, in `.env.example` order.
    pub const ALL: &[&str] = &[
        TRADING_MODE,
        MARKETS,
        BINANCE_API_KEY,
        BINANCE_SECRET_KEY,
        BINANCE_TESTNET_API_KEY,
        BINANCE_TESTNET_SECRET_KEY,
        CIRCUIT_BREAKER_ENABLED,
        CIRCUIT_MAX_LOSS_PER_HOUR,
        CIRCUIT_MAX_CONSECUTIVE_LOSSES,
        CIRCUIT_COOLDOWN_MINUTES,
        FUTURES_AUTOPILOT_MAX_POSITION_SIZE,
        FUTURES_AUTOPILOT_MAX_DAILY_LOSS,
        MODE_ALLOCATION_FILE,
        AUTH_ENABLED,
        JWT_SECRET,
        JWT_EXPIRY,
        DATABASE_URL,
        LOG_LEVEL,
        LOG_JSON,
        LOG_INCLUDE_FILE,
        LOG_OUTPUT,
        DATA_DIR,
        ENGINE_CORE,
        FEED,
        REPLAY_FILE,
        REPLAY_SPEED,
        SIM_SEED,
        SIM_RATE,
        SIM_SPEED,
        SYMBOLS,
        QUOTE_USD,
        FEE_TAKER,
        FEE_MAKER,
        BIND_ADDR,
        API_PORT,
        TLS_CERT_PATH,
        TLS_KEY_PATH,
        HTTP_REDIRECT_PORT,
        JOURNAL_FSYNC_MS,
        BINANCE_FAPI_URL,
        BINANCE_FSTREAM_URL,
        BINANCE_WSAPI_URL,
        BINANCE_SAPI_URL,
        BINANCE_SPOT_URL,
        BINANCE_SPOT_STREAM_URL,
        BINANCE_SPOT_WSAPI_URL,
        BINANCE_EXTRA_CA_FILE,
        BINANCE_ED25519_PRIVATE_KEY_PATH,
        BINANCE_TESTNET_ED25519_PRIVATE_KEY_PATH,
        ALLOW_UNRESTRICTED_IP,
        KEY_RECHECK_INTERVAL,
        WS_ROLLOVER_SECS,
        EXCHANGE_STOP_LOSS,
        MODES_ENABLED,
        CAPITAL_USD,
        FUTURES_AUTOPILOT_MAX_LEVERAGE,
        MAX_OPEN_ORDERS,
        MAX_ORDERS_PER_10S,
        DASHBOARD_ALLOWED_IPS,
        TRUSTED_PROXIES,
        API_RATE_LIMIT_PER_SEC,
        API_RATE_LIMIT_BURST,
        LOGIN_MAX_FAILURES,
        LOGIN_MAX_FAILURES_PER_IP,
        LOGIN_LOCKOUT,
        API_MAX_BODY_BYTES,
        API_HEADER_READ_TIMEOUT,
        API_IDLE_TIMEOUT,
        API_MAX_CONNECTIONS_PER_IP,
        API_MAX_CONNECTIONS,
    ];

    /// Keys whose values are secrets: never echoed in an error or a log line.
    pub const SECRETS: &[&str] = &[
        BINANCE_API_KEY,
        BINANCE_SECRET_KEY,
        BINANCE_TESTNET_API_KEY,
        BINANCE_TESTNET_SECRET_KEY,
        JWT_SECRET,
        DATABASE_URL,
    ];
}

/// The `JWT_SECRET` placeholder written in `.env.example`. Obviously not a secret; the auth issue refuses it.
pub const JWT_SECRET_PLACEHOLDER: &str = "change-me-to-at-least-32-random-bytes";

/// A configuration value that was refused.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct ConfigError {
    /// The key (environment variable name), or `.env` for problems with the file itself.
    pub key: String,
    /// The refused value; `None` for secrets (and when the value is missing).
    pub value: Option<String>,
    /// What to do about it.
    pub fix: String,
}

impl ConfigError {
    /// An error for `key` showing `value`, unless `key` is a secret.
    pub fn new(key: &str, value: Option<&str>, fix: impl Into<String>) -> Self {
        let shown = if keys::SECRETS.contains(&key) {
            None
        } else {
            value.map(|v| {
                // A pasted blob would drown the message; the head is enough to recognise it.
                let mut s: String = v.chars().take(80).collect();
                if v.chars().count() > 80 {
                    s.push('…');
                }
                s
            })
        };
        Self {
            key: key.to_string(),
            value: shown,
            fix: fix.into(),
        }
    }

    /// The one-line message the binary prints.
    pub fn message(&self) -> String {
        match &self.value {
            Some(v) => format!("invalid configuration: {}={:?}: {}", self.key, v, self.fix),
            None if keys::SECRETS.contains(&self.key.as_str()) => format!(
                "invalid configuration: {} (secret, value not shown): {}",
                self.key, self.fix
            ),
            None => format!("invalid configuration: {}: {}", self.key, self.fix),
        }
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// Log verbosity (`LOG_LEVEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    Info,
    /// Verbose.
    Debug,
    /// Very verbose.
    Trace,
}

impl LogLevel {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

/// Where log records go (`LOG_OUTPUT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    /// Standard output (the default).
    Stdout,
    /// Standard error.
    Stderr,
    /// Appended to a file.
    File(PathBuf),
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `LOG_LEVEL`, default `info`.
    pub level: LogLevel,
    /// `LOG_JSON`, default false.
    pub json: bool,
    /// `LOG_INCLUDE_FILE`, default false.
    pub include_file: bool,
    /// `LOG_OUTPUT`, default stdout.
    pub output: LogOutput,
}

/// API keys for both environments. Empty secrets mean "not configured".
#[derive(Debug, Clone)]
pub struct ApiKeys {
    /// `BINANCE_API_KEY`.
    pub api_key: Secret<String>,
    /// `BINANCE_SECRET_KEY`.
    pub secret_key: Secret<String>,
    /// `BINANCE_TESTNET_API_KEY`.
    pub testnet_api_key: Secret<String>,
    /// `BINANCE_TESTNET_SECRET_KEY`.
    pub testnet_secret_key: Secret<String>,
}

/// Circuit breaker settings (guide §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// `CIRCUIT_BREAKER_ENABLED`, default true.
    pub enabled: bool,
    /// `CIRCUIT_MAX_LOSS_PER_HOUR` (USD), default 100.
    pub max_loss_per_hour: Notional,
    /// `CIRCUIT_MAX_CONSECUTIVE_LOSSES`, default 10.
    pub max_consecutive_losses: u32,
    /// `CIRCUIT_COOLDOWN_MINUTES`, default 30.
    pub cooldown_minutes: u32,
}

/// Position and loss limits (guide §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// `FUTURES_AUTOPILOT_MAX_POSITION_SIZE` (USD per position), default 50 (the guide's week-1 value).
    pub max_position_usd: Notional,
    /// `FUTURES_AUTOPILOT_MAX_DAILY_LOSS` (USD per UTC day), default 20.
    pub max_daily_loss_usd: Notional,
    /// `FUTURES_AUTOPILOT_MAX_LEVERAGE`, default 5 (1 to 125).
    pub max_leverage: u32,
    /// `MAX_OPEN_ORDERS`, default 10 (1 to 200).
    pub max_open_orders: u32,
    /// `MAX_ORDERS_PER_10S`, default 50 (1 to 300, Binance USD-M's own limit).
    pub max_orders_per_10s: u32,
}

/// Dashboard/API authentication.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `AUTH_ENABLED`, default true.
    pub enabled: bool,
    /// `JWT_SECRET`, no default.
    pub jwt_secret: Option<Secret<String>>,
    /// `JWT_EXPIRY`, default 24 h.
    pub jwt_expiry: Duration,
}

/// Where market data comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedKind {
    /// The built-in simulated market (default).
    Sim,
    /// A file of combined-stream JSON lines.
    Replay {
        /// The file.
        file: PathBuf,
        /// Speed multiplier: 1 = original timing.
        speed: f64,
    },
    /// Binance's public USD-M futures market streams (no key). In paper mode the fills stay simulated, like
    /// freqtrade's dry-run; testnet and live always read Binance's streams, whatever `FEED` says.
    Binance,
}

/// Simulated market settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// `SIM_SEED`, default 1.
    pub seed: u64,
    /// `SIM_RATE`: messages per wall-clock second, default 1000.
    pub rate: u32,
    /// `SIM_SPEED`: market seconds per wall-clock second, default 1.
    pub speed: f64,
}

/// Paper venue fee rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeConfig {
    /// `FEE_TAKER`, default 0.0004 (0.04 %), on spot 0.001 (0.1 %).
    pub taker: Rate,
    /// `FEE_MAKER`, default 0.0002 (0.02 %), on spot 0.001 (0.1 %).
    pub maker: Rate,
}

/// HTTPS API settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// `BIND_ADDR`, default 127.0.0.1.
    pub bind_addr: IpAddr,
    /// `API_PORT`, default 8090.
    pub port: u16,
    /// `TLS_CERT_PATH`; with [`ApiConfig::tls_key_path`], or neither (then a self-signed certificate is made).
    pub tls_cert_path: Option<PathBuf>,
    /// `TLS_KEY_PATH`.
    pub tls_key_path: Option<PathBuf>,
    /// `HTTP_REDIRECT_PORT`: a plain-HTTP listener on `BIND_ADDR` that answers every request with a redirect
    /// to the HTTPS API and serves nothing else. Default: none.
    pub http_redirect_port: Option<u16>,
}

/// Exchange connection settings (testnet/live).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExchangeConfig {
    /// `BINANCE_FAPI_URL`: REST base override.
    pub fapi_url: Option<String>,
    /// `BINANCE_FSTREAM_URL`: market stream base override.
    pub fstream_url: Option<String>,
    /// `BINANCE_WSAPI_URL`: WebSocket API override.
    pub wsapi_url: Option<String>,
    /// `BINANCE_SAPI_URL`: `/sapi` base override.
    pub sapi_url: Option<String>,
    /// `BINANCE_SPOT_URL`: spot REST base override (paper on spot).
    pub spot_url: Option<String>,
    /// `BINANCE_SPOT_STREAM_URL`: spot market stream base override (paper on spot).
    pub spot_stream_url: Option<String>,
    /// `BINANCE_SPOT_WSAPI_URL`: spot WebSocket API override (live spot orders and user data).
    pub spot_wsapi_url: Option<String>,
    /// `BINANCE_EXTRA_CA_FILE`: extra trusted CA (never in live; read and checked when the exchange path starts).
    pub extra_ca_file: Option<PathBuf>,
    /// `BINANCE_ED25519_PRIVATE_KEY_PATH`.
    pub ed25519_key_path: Option<PathBuf>,
    /// `BINANCE_TESTNET_ED25519_PRIVATE_KEY_PATH`.
    pub testnet_ed25519_key_path: Option<PathBuf>,
    /// `ALLOW_UNRESTRICTED_IP`, default false.
    pub allow_unrestricted_ip: bool,
    /// `KEY_RECHECK_INTERVAL`, default 24 h.
    pub key_recheck: Duration,
    /// `WS_ROLLOVER_SECS`, default 85800 (23 h 50 min), 1..=86399. 0 only in a `Default` value: use the default.
    pub ws_rollover_secs: u64,
    /// `EXCHANGE_STOP_LOSS`, default [`DEFAULT_EXCHANGE_STOP_LOSS`], 0.001..=0.5. Zero only in a `Default`
    /// value: use the default.
    pub stop_loss: Rate,
}

/// Default `EXCHANGE_STOP_LOSS`: 3 % from the entry, beyond the widest software stop of the modes (swing, 2 %).
pub const DEFAULT_EXCHANGE_STOP_LOSS: Rate = Rate::from_units(3_000_000);

/// Default `WS_ROLLOVER_SECS`: 23 h 50 min, ten minutes before Binance's 24-hour cut.
pub const DEFAULT_WS_ROLLOVER_SECS: u64 = 85_800;

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `TRADING_MODE`, default paper.
    pub trading_mode: TradingMode,
    /// `MARKETS`: the market this process trades, default futures (one market per process).
    pub market: Market,
    /// Exchange keys.
    pub keys: ApiKeys,
    /// Circuit breaker.
    pub breaker: BreakerConfig,
    /// Limits.
    pub limits: LimitsConfig,
    /// `MODE_ALLOCATION_FILE`.
    pub mode_allocation_file: Option<PathBuf>,
    /// Auth.
    pub auth: AuthConfig,
    /// `DATABASE_URL` (contains the password, hence secret); `None` = journal only.
    pub database_url: Option<Secret<String>>,
    /// Logging.
    pub log: LogConfig,
    /// `DATA_DIR`, default `./data`.
    pub data_dir: PathBuf,
    /// `ENGINE_CORE`; `None` = the last core.
    pub engine_core: Option<usize>,
    /// Market data source.
    pub feed: FeedKind,
    /// Simulated market.
    pub sim: SimConfig,
    /// `SYMBOLS`, default BTCUSDT,ETHUSDT.
    pub symbols: Vec<Symbol>,
    /// `QUOTE_USD`: fixed USD prices of non-dollar quote assets, so a paper run or replay of e.g. XRPETH holds
    /// the USD limits in ETH (`aegis_shared::quote`); empty by default. Testnet and live never use them.
    pub quote_usd: Vec<crate::quote::QuoteUsd>,
    /// Fees.
    pub fees: FeeConfig,
    /// HTTPS API.
    pub api: ApiConfig,
    /// `JOURNAL_FSYNC_MS`: the journal's fsync batch window, default 5 ms.
    pub journal_fsync: Duration,
    /// Exchange URLs overrides, Ed25519 key files, key restriction policy.
    pub exchange: ExchangeConfig,
    /// `MODES_ENABLED`: the trading modes to run, default all four (in [`StrategyMode::ALL`] order).
    pub modes_enabled: Vec<StrategyMode>,
    /// `CAPITAL_USD`: capital the allocation percents apply to, default 10000.
    pub capital_usd: Notional,
    /// Raw values of the [`keys::DASHBOARD`] keys that are set (validated by the control plane's web layer).
    pub dashboard: Vec<(&'static str, String)>,
}

/// Reads values through a lookup function, treating empty values as unset.
struct Src<F: Fn(&str) -> Option<String>>(F);

impl<F: Fn(&str) -> Option<String>> Src<F> {
    fn get(&self, key: &str) -> Option<String> {
        (self.0)(key).and_then(|v| {
            let t = v.trim();
            (!t.is_empty()).then(|| t.to_string())
        })
    }

    fn parse<T>(
        &self,
        key: &str,
        default: T,
        fix: &str,
        f: impl Fn(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => f(&v).ok_or_else(|| ConfigError::new(key, Some(&v), fix)),
        }
    }

    /// A duration setting that must lie within `min..=max`.
    fn duration(
        &self,
        key: &str,
        default: Duration,
        fix: &str,
        (min, max): (Duration, Duration),
    ) -> Result<Duration, ConfigError> {
        self.parse(key, default, fix, |s| {
            parse_duration(s).filter(|d| (min..=max).contains(d))
        })
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        self.parse(key, default, "use true or false", parse_bool)
    }

    fn money(&self, key: &str, default: &str) -> Result<Notional, ConfigError> {
        let fix = format!("use a positive USD amount with at most 8 decimals, e.g. {default}");
        // Invariant: defaults are literals that parse.
        let d = Notional::parse(default).unwrap_or(Notional::ZERO);
        self.parse(key, d, &fix, |s| {
            Notional::parse(s).ok().filter(|n| *n > Notional::ZERO)
        })
    }

    fn rate(&self, key: &str, default: &str) -> Result<Rate, ConfigError> {
        let fix = format!(
            "use a fee rate as a fraction between 0 and 0.01, e.g. {default} (= 0.04 % is 0.0004)"
        );
        let d = Rate::parse(default).unwrap_or(Rate::ZERO);
        self.parse(key, d, &fix, |s| {
            Rate::parse(s)
                .ok()
                .filter(|r| *r >= Rate::ZERO && *r <= Rate::parse("0.01").unwrap_or(Rate::ZERO))
        })
    }

    fn secret(&self, key: &str) -> Secret<String> {
        Secret::new(self.get(key).unwrap_or_default())
    }

    fn path(&self, key: &str) -> Option<PathBuf> {
        self.get(key).map(PathBuf::from)
    }
}

/// `true/false`, `1/0`, `yes/no`, `on/off`, any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A duration such as `24h`, `30m`, `90s`, `7d` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 's') => (&s[..i], 1),
        (i, 'm') => (&s[..i], 60),
        (i, 'h') => (&s[..i], 3600),
        (i, 'd') => (&s[..i], 86_400),
        _ => (s, 1),
    };
    let n: u64 = num.parse().ok()?;
    n.checked_mul(mult).map(Duration::from_secs)
}

fn parse_level(s: &str) -> Option<LogLevel> {
    match s.to_ascii_lowercase().as_str() {
        "error" => Some(LogLevel::Error),
        "warn" | "warning" => Some(LogLevel::Warn),
        "info" => Some(LogLevel::Info),
        "debug" => Some(LogLevel::Debug),
        "trace" => Some(LogLevel::Trace),
        _ => None,
    }
}

fn parse_speed(s: &str) -> Option<f64> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0 && *v <= 1_000_000.0)
}

/// Reads only `TRADING_MODE` (needed before the rest is validated, e.g. for the `.env` permission rule).
pub fn trading_mode_from(get: impl Fn(&str) -> Option<String>) -> Result<TradingMode, ConfigError> {
    Src(get).parse(
        keys::TRADING_MODE,
        TradingMode::Paper,
        "use paper, testnet or live",
        TradingMode::parse,
    )
}

impl Config {
    /// Builds and validates the configuration from a key lookup (empty values count as unset).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        use keys::*;
        let src = Src(get);
        let trading_mode = src.parse(
            TRADING_MODE,
            TradingMode::Paper,
            "use paper, testnet or live",
            TradingMode::parse,
        )?;
        let market = match src.get(MARKETS) {
            None => Market::Futures,
            Some(v) => {
                let fix = "use futures or spot";
                let mut want = Vec::new();
                for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let m = Market::parse(part)
                        .ok_or_else(|| ConfigError::new(MARKETS, Some(&v), fix))?;
                    if !want.contains(&m) {
                        want.push(m);
                    }
                }
                match want.as_slice() {
                    [m] => *m,
                    [] => return Err(ConfigError::new(MARKETS, Some(&v), fix)),
                    _ => {
                        return Err(ConfigError::new(
                            MARKETS,
                            Some(&v),
                            "one market per bot process: run a second Aegis with its own DATA_DIR (and API_PORT) and MARKETS=spot beside the futures one",
                        ))
                    }
                }
            }
        };

        let keys = ApiKeys {
            api_key: src.secret(BINANCE_API_KEY),
            secret_key: src.secret(BINANCE_SECRET_KEY),
            testnet_api_key: src.secret(BINANCE_TESTNET_API_KEY),
            testnet_secret_key: src.secret(BINANCE_TESTNET_SECRET_KEY),
        };
        let ed_path = src.path(BINANCE_ED25519_PRIVATE_KEY_PATH);
        let testnet_ed_path = src.path(BINANCE_TESTNET_ED25519_PRIVATE_KEY_PATH);
        // An empty API key is read-only mode (security guide §7.1: restart with an empty key); a key without
        // anything to sign with is a mistake.
        match trading_mode {
            TradingMode::Paper => {}
            TradingMode::Testnet => {
                if !keys.testnet_api_key.is_empty()
                    && keys.testnet_secret_key.is_empty()
                    && testnet_ed_path.is_none()
                {
                    return Err(ConfigError::new(BINANCE_TESTNET_SECRET_KEY, None, "BINANCE_TESTNET_API_KEY is set: also set its secret (HMAC) or BINANCE_TESTNET_ED25519_PRIVATE_KEY_PATH (Ed25519), or empty the API key for read-only mode"));
                }
            }
            TradingMode::Live => {
                if !keys.api_key.is_empty() && keys.secret_key.is_empty() && ed_path.is_none() {
                    return Err(ConfigError::new(BINANCE_SECRET_KEY, None, "BINANCE_API_KEY is set: also set its secret (HMAC) or BINANCE_ED25519_PRIVATE_KEY_PATH (Ed25519), or empty the API key for read-only mode"));
                }
            }
        }
        if !keys.api_key.is_empty() && keys.api_key.expose() == keys.testnet_api_key.expose() {
            return Err(ConfigError::new(
                BINANCE_TESTNET_API_KEY,
                None,
                "the testnet key equals the production key: use separate key pairs for testnet and production",
            ));
        }

        let breaker = BreakerConfig {
            enabled: src.bool(CIRCUIT_BREAKER_ENABLED, true)?,
            max_loss_per_hour: src.money(CIRCUIT_MAX_LOSS_PER_HOUR, "100")?,
            max_consecutive_losses: src.parse(
                CIRCUIT_MAX_CONSECUTIVE_LOSSES,
                10,
                "use a whole number of trades from 1 to 1000, e.g. 10",
                |s| s.parse().ok().filter(|n| (1..=1000).contains(n)),
            )?,
            cooldown_minutes: src.parse(
                CIRCUIT_COOLDOWN_MINUTES,
                30,
                "use a whole number of minutes from 1 to 10080, e.g. 30",
                |s| s.parse().ok().filter(|n| (1..=10_080).contains(n)),
            )?,
        };
        let limits = LimitsConfig {
            max_position_usd: src.money(FUTURES_AUTOPILOT_MAX_POSITION_SIZE, "50")?,
            max_daily_loss_usd: src.money(FUTURES_AUTOPILOT_MAX_DAILY_LOSS, "20")?,
            max_leverage: src.parse(
                FUTURES_AUTOPILOT_MAX_LEVERAGE,
                5,
                "use a whole number from 1 to 125, e.g. 5",
                |s| s.parse().ok().filter(|n| (1..=125).contains(n)),
            )?,
            max_open_orders: src.parse(
                MAX_OPEN_ORDERS,
                10,
                "use a whole number of orders from 1 to 200, e.g. 10",
                |s| s.parse().ok().filter(|n| (1..=200).contains(n)),
            )?,
            // Above 300 the exchange's own limit would answer first, with a ban (HTTP 418) that blocks exits too.
            max_orders_per_10s: src.parse(
                MAX_ORDERS_PER_10S,
                50,
                "use a whole number of orders per 10 seconds from 1 to 300 (Binance USD-M's limit), e.g. 50",
                |s| s.parse().ok().filter(|n| (1..=300).contains(n)),
            )?,
        };
        let modes_enabled = match src.get(MODES_ENABLED) {
            None => StrategyMode::ALL.to_vec(),
            Some(v) => {
                let fix = "use a comma-separated list of ultra_fast_scalp, scalp, swing, position (e.g. scalp,swing), or leave it empty for all four";
                let mut want = Vec::new();
                for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let m = StrategyMode::parse(&part.to_ascii_lowercase())
                        .ok_or_else(|| ConfigError::new(MODES_ENABLED, Some(&v), fix))?;
                    want.push(m);
                }
                if want.is_empty() {
                    return Err(ConfigError::new(MODES_ENABLED, Some(&v), fix));
                }
                StrategyMode::ALL
                    .into_iter()
                    .filter(|m| want.contains(m))
                    .collect()
            }
        };
        let capital_usd = src.money(CAPITAL_USD, "10000")?;
        let auth = AuthConfig {
            enabled: src.bool(AUTH_ENABLED, true)?,
            jwt_secret: src.get(JWT_SECRET).map(Secret::new),
            jwt_expiry: src.duration(
                JWT_EXPIRY,
                Duration::from_secs(24 * 3600),
                "use a duration such as 24h, 30m or 7d (between 1 minute and 30 days)",
                (Duration::from_secs(60), Duration::from_secs(30 * 86_400)),
            )?,
        };
        let database_url = match src.get(DATABASE_URL) {
            None => None,
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Some(Secret::new(u))
            }
            Some(_) => {
                return Err(ConfigError::new(
                    DATABASE_URL,
                    None,
                    "use postgres://USER:PASSWORD@HOST:PORT/DBNAME, or leave it empty to keep everything in the journal",
                ))
            }
        };
        let log = LogConfig {
            level: src.parse(
                LOG_LEVEL,
                LogLevel::Info,
                "use error, warn, info, debug or trace",
                parse_level,
            )?,
            json: src.bool(LOG_JSON, false)?,
            include_file: src.bool(LOG_INCLUDE_FILE, false)?,
            output: match src.get(LOG_OUTPUT) {
                None => LogOutput::Stdout,
                Some(v) if v.eq_ignore_ascii_case("stdout") => LogOutput::Stdout,
                Some(v) if v.eq_ignore_ascii_case("stderr") => LogOutput::Stderr,
                Some(v) => LogOutput::File(PathBuf::from(v)),
            },
        };
        let data_dir = src
            .path(DATA_DIR)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let engine_core = match src.get(ENGINE_CORE) {
            None => None,
            Some(v) => Some(v.parse::<usize>().map_err(|_| {
                ConfigError::new(
                    ENGINE_CORE,
                    Some(&v),
                    "use a CPU core number (0 = first core), or leave it empty for the last core",
                )
            })?),
        };
        let replay_speed = src.parse(
            REPLAY_SPEED,
            1.0,
            "use a positive speed multiplier, e.g. 1 (original timing) or 10",
            parse_speed,
        )?;
        let feed = match src.get(FEED).map(|f| f.to_ascii_lowercase()).as_deref() {
            None | Some("sim") => FeedKind::Sim,
            Some("replay") => match src.path(REPLAY_FILE) {
                Some(file) => FeedKind::Replay {
                    file,
                    speed: replay_speed,
                },
                None => {
                    return Err(ConfigError::new(
                        REPLAY_FILE,
                        None,
                        "FEED=replay needs REPLAY_FILE=path/to/combined-stream.jsonl (or use `aegis run --replay FILE`)",
                    ))
                }
            },
            Some("binance") => FeedKind::Binance,
            Some(_) => {
                return Err(ConfigError::new(
                    FEED,
                    src.get(FEED).as_deref(),
                    "use sim (the built-in simulated market), replay (a recorded file) or binance (Binance's public market streams)",
                ))
            }
        };
        let sim = SimConfig {
            seed: src.parse(SIM_SEED, 1, "use a whole number, e.g. 1", |s| {
                s.parse().ok()
            })?,
            rate: src.parse(
                SIM_RATE,
                1000,
                "use messages per second from 1 to 1000000, e.g. 1000",
                |s| s.parse().ok().filter(|n| (1..=1_000_000).contains(n)),
            )?,
            speed: src.parse(
                SIM_SPEED,
                1.0,
                "use market seconds per wall-clock second, a positive number such as 1 or 60",
                parse_speed,
            )?,
        };
        let symbols = match src.get(SYMBOLS) {
            None => vec![
                Symbol::new("BTCUSDT")
                    .map_err(|_| ConfigError::new(SYMBOLS, None, "internal default"))?,
                Symbol::new("ETHUSDT")
                    .map_err(|_| ConfigError::new(SYMBOLS, None, "internal default"))?,
            ],
            Some(v) => {
                let fix = "use a comma-separated list of symbols, e.g. BTCUSDT,ETHUSDT";
                let mut out: Vec<Symbol> = Vec::new();
                for part in v.split(',') {
                    let s = Symbol::new(part.trim())
                        .map_err(|_| ConfigError::new(SYMBOLS, Some(&v), fix))?;
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
                out
            }
        };
        let quote_usd = match src.get(QUOTE_USD) {
            None => Vec::new(),
            Some(v) => {
                let mut out = Vec::new();
                for part in v.split(',').filter(|p| !p.trim().is_empty()) {
                    out.push(crate::quote::QuoteUsd::parse(part.trim()).map_err(|_| {
                        ConfigError::new(
                            QUOTE_USD,
                            Some(&v),
                            "use ASSET=USD_PRICE pairs, comma-separated, for non-dollar quote assets, e.g. ETH=180.5,BTC=8300",
                        )
                    })?);
                }
                out
            }
        };
        let fees = FeeConfig {
            // Binance's base rates: USD-M futures 0.04 % taker / 0.02 % maker, spot 0.1 % both.
            taker: src.rate(
                FEE_TAKER,
                if market == Market::Spot {
                    "0.001"
                } else {
                    "0.0004"
                },
            )?,
            maker: src.rate(
                FEE_MAKER,
                if market == Market::Spot {
                    "0.001"
                } else {
                    "0.0002"
                },
            )?,
        };
        let bind_addr = src.parse(
            BIND_ADDR,
            IpAddr::from([127, 0, 0, 1]),
            "use an IP address, e.g. 127.0.0.1",
            |s| s.parse().ok(),
        )?;
        // Without authentication the API is open to whoever can connect: only loopback then.
        if !bind_addr.is_loopback() && !auth.enabled {
            return Err(ConfigError::new(
                BIND_ADDR,
                Some(&bind_addr.to_string()),
                "AUTH_ENABLED=false only works with a loopback BIND_ADDR (127.0.0.1 or ::1); enable AUTH_ENABLED or bind to 127.0.0.1 and use an SSH tunnel",
            ));
        }
        let api = ApiConfig {
            bind_addr,
            port: src.parse(
                API_PORT,
                8090,
                "use a TCP port from 1 to 65535, e.g. 8090",
                |s| s.parse().ok().filter(|p| *p != 0),
            )?,
            tls_cert_path: src.path(TLS_CERT_PATH),
            tls_key_path: src.path(TLS_KEY_PATH),
            http_redirect_port: src.parse(
                HTTP_REDIRECT_PORT,
                None,
                "use a TCP port from 1 to 65535 other than API_PORT (e.g. 8080), or leave it empty for none",
                |s| s.parse::<u16>().ok().filter(|p| *p != 0).map(Some),
            )?,
        };
        if api.http_redirect_port == Some(api.port) {
            return Err(ConfigError::new(
                HTTP_REDIRECT_PORT,
                Some(&api.port.to_string()),
                "use a port other than API_PORT: the redirect listener and the HTTPS API cannot share one",
            ));
        }
        match (&api.tls_cert_path, &api.tls_key_path) {
            (Some(_), None) => {
                return Err(ConfigError::new(
                    TLS_KEY_PATH,
                    None,
                    "TLS_CERT_PATH is set: also set TLS_KEY_PATH (PEM private key), or unset both for a generated certificate",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    TLS_CERT_PATH,
                    None,
                    "TLS_KEY_PATH is set: also set TLS_CERT_PATH (PEM certificate chain), or unset both for a generated certificate",
                ))
            }
            _ => {}
        }
        let journal_fsync = Duration::from_millis(src.parse(
            JOURNAL_FSYNC_MS,
            5,
            "use a batch window in milliseconds from 0 to 1000, e.g. 5 (0 = fsync every batch)",
            |s| s.parse::<u64>().ok().filter(|n| *n <= 1000),
        )?);

        let url = |key: &str, schemes: &[&str]| -> Result<Option<String>, ConfigError> {
            match src.get(key) {
                None => Ok(None),
                Some(u) if schemes.iter().any(|s| u.starts_with(s)) => {
                    Ok(Some(u.trim_end_matches('/').to_string()))
                }
                Some(u) => Err(ConfigError::new(
                    key,
                    Some(&u),
                    format!(
                        "use a URL starting with {}, or leave it empty for Binance's own",
                        schemes.join(" or ")
                    ),
                )),
            }
        };
        let exchange = ExchangeConfig {
            fapi_url: url(BINANCE_FAPI_URL, &["https://", "http://"])?,
            fstream_url: url(BINANCE_FSTREAM_URL, &["wss://", "ws://"])?,
            wsapi_url: url(BINANCE_WSAPI_URL, &["wss://", "ws://"])?,
            sapi_url: url(BINANCE_SAPI_URL, &["https://", "http://"])?,
            spot_url: url(BINANCE_SPOT_URL, &["https://", "http://"])?,
            spot_stream_url: url(BINANCE_SPOT_STREAM_URL, &["wss://", "ws://"])?,
            spot_wsapi_url: url(BINANCE_SPOT_WSAPI_URL, &["wss://", "ws://"])?,
            extra_ca_file: match src.path(BINANCE_EXTRA_CA_FILE) {
                // Production must trust only the public roots: an extra CA there could let a
                // man-in-the-middle hold the real-money key's session.
                Some(p) if trading_mode == TradingMode::Live => {
                    return Err(ConfigError::new(
                        BINANCE_EXTRA_CA_FILE,
                        Some(&p.display().to_string()),
                        "only for testnet/simulators: leave it empty with TRADING_MODE=live",
                    ))
                }
                p => p,
            },
            ed25519_key_path: ed_path,
            testnet_ed25519_key_path: testnet_ed_path,
            allow_unrestricted_ip: src.bool(ALLOW_UNRESTRICTED_IP, false)?,
            key_recheck: src.duration(
                KEY_RECHECK_INTERVAL,
                Duration::from_secs(24 * 3600),
                "use a duration such as 24h (between 1 second and 7 days)",
                (Duration::from_secs(1), Duration::from_secs(7 * 86_400)),
            )?,
            ws_rollover_secs: src.parse(
                WS_ROLLOVER_SECS,
                DEFAULT_WS_ROLLOVER_SECS,
                "use whole seconds from 1 to 86399 (Binance cuts connections at 24 h); default 85800",
                |s| s.parse::<u64>().ok().filter(|n| (1..86_400).contains(n)),
            )?,
            stop_loss: src.parse(
                EXCHANGE_STOP_LOSS,
                DEFAULT_EXCHANGE_STOP_LOSS,
                "use a fraction of the entry price from 0.001 to 0.5, e.g. 0.03 (= 3 %); keep it beyond the modes' own stop-losses (up to 2 %)",
                |s| {
                    Rate::parse(s).ok().filter(|r| {
                        *r >= Rate::from_units(100_000) && *r <= Rate::from_units(50_000_000)
                    })
                },
            )?,
        };

        let dashboard = keys::DASHBOARD
            .iter()
            .filter_map(|k| src.get(k).map(|v| (*k, v)))
            .collect();

        Ok(Config {
            modes_enabled,
            market,
            capital_usd,
            dashboard,
            exchange,
            trading_mode,
            keys,
            breaker,
            limits,
            mode_allocation_file: src.path(MODE_ALLOCATION_FILE),
            auth,
            database_url,
            log,
            data_dir,
            engine_core,
            feed,
            sim,
            symbols,
            quote_usd,
            fees,
            api,
            journal_fsync,
        })
    }

    /// The environment the bot talks to, for banners and the status API.
    pub fn environment(&self) -> &'static str {
        match self.trading_mode {
            TradingMode::Paper if self.feed == FeedKind::Binance => {
                "paper (simulated fills on Binance's public market data; no key, no orders sent)"
            }
            TradingMode::Paper => "paper (simulated fills, no exchange)",
            TradingMode::Testnet if self.market == Market::Spot => "Binance spot TESTNET",
            TradingMode::Live if self.market == Market::Spot => {
                "Binance spot PRODUCTION (real money)"
            }
            TradingMode::Testnet => "Binance USD-M futures TESTNET",
            TradingMode::Live => "Binance USD-M futures PRODUCTION (real money)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn extra_ca_file_is_refused_in_live_and_kept_elsewhere() {
        let e = cfg(&[
            ("TRADING_MODE", "live"),
            ("BINANCE_EXTRA_CA_FILE", "/sim-ca.pem"),
        ])
        .unwrap_err();
        assert_eq!(e.key, "BINANCE_EXTRA_CA_FILE");
        assert!(e.to_string().contains("only for testnet/simulators"), "{e}");
        let ok = cfg(&[
            ("TRADING_MODE", "testnet"),
            ("BINANCE_EXTRA_CA_FILE", "/sim-ca.pem"),
        ])
        .unwrap();
        assert_eq!(
            ok.exchange.extra_ca_file.as_deref(),
            Some(std::path::Path::new("/sim-ca.pem"))
        );
        assert_eq!(cfg(&[]).unwrap().exchange.extra_ca_file, None);
    }

    #[test]
    fn markets_takes_one_market_and_names_the_second_bot_for_two() {
        assert_eq!(cfg(&[]).unwrap().market, Market::Futures, "default");
        assert_eq!(
            cfg(&[("MARKETS", "futures")]).unwrap().market,
            Market::Futures
        );
        assert_eq!(cfg(&[("MARKETS", "spot")]).unwrap().market, Market::Spot);
        assert_eq!(cfg(&[("MARKETS", " Spot ")]).unwrap().market, Market::Spot);
        // The same market twice is still one market.
        assert_eq!(
            cfg(&[("MARKETS", "spot, spot")]).unwrap().market,
            Market::Spot
        );
        for two in ["futures,spot", "spot , FUTURES"] {
            let e = cfg(&[("MARKETS", two)]).unwrap_err();
            assert_eq!(e.key, "MARKETS");
            assert!(
                e.fix.contains("one market per bot process")
                    && e.fix.contains("run a second Aegis"),
                "{two}: {e}"
            );
        }
        for bad in ["margin", "futures,margin", ","] {
            let e = cfg(&[("MARKETS", bad)]).unwrap_err();
            assert_eq!(e.key, "MARKETS", "{bad}");
            assert!(e.fix.contains("use futures or spot"), "{bad}: {e}");
        }
    }

    #[test]
    fn spot_is_valid_configuration_in_every_trading_mode() {
        // Spot trades on paper, testnet and live, and `aegis keys audit` / `aegis preflight` judge a spot key in
        // each: the configuration loads in every mode.
        for mode in ["paper", "testnet", "live"] {
            let c = cfg(&[("TRADING_MODE", mode), ("MARKETS", "spot")])
                .unwrap_or_else(|e| panic!("{mode}: {e}"));
            assert_eq!(c.market, Market::Spot, "{mode}");
        }
    }

    #[test]
    fn defaults_are_paper_sim_loopback() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.trading_mode, TradingMode::Paper);
        assert_eq!(c.feed, FeedKind::Sim);
        assert_eq!(c.api.bind_addr, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(c.api.port, 8090);
        assert_eq!(c.fees.taker, Rate::parse("0.0004").unwrap());
        assert_eq!(c.fees.maker, Rate::parse("0.0002").unwrap());
        assert_eq!(c.symbols.len(), 2);
        assert_eq!(c.journal_fsync, Duration::from_millis(5));
        assert_eq!(c.sim.rate, 1000);
        assert_eq!(c.auth.jwt_expiry, Duration::from_secs(86_400));
        assert!(c.breaker.enabled);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(c.database_url.is_none());
    }

    #[test]
    fn money_is_exact() {
        let c = cfg(&[
            ("FUTURES_AUTOPILOT_MAX_DAILY_LOSS", "20.12345678"),
            ("CIRCUIT_MAX_LOSS_PER_HOUR", "100.0"),
        ])
        .unwrap();
        assert_eq!(c.limits.max_daily_loss_usd.units(), 2_012_345_678);
        assert_eq!(c.breaker.max_loss_per_hour, Notional::from_int(100));
    }

    #[test]
    fn bad_values_name_key_value_and_fix() {
        for (k, v) in [
            ("FUTURES_AUTOPILOT_MAX_DAILY_LOSS", "abc"),
            ("FUTURES_AUTOPILOT_MAX_DAILY_LOSS", "-5"),
            ("FUTURES_AUTOPILOT_MAX_POSITION_SIZE", "0.000000001"),
            ("TRADING_MODE", "prod"),
            ("LOG_LEVEL", "verbose"),
            ("LOG_JSON", "maybe"),
            ("API_PORT", "70000"),
            ("BIND_ADDR", "localhost"),
            ("FEE_TAKER", "0.5"),
            ("SIM_RATE", "0"),
            ("SIM_SPEED", "NaN"),
            ("SYMBOLS", "BTC-USDT"),
            ("JWT_EXPIRY", "forever"),
            ("JOURNAL_FSYNC_MS", "5000"),
            ("ENGINE_CORE", "last"),
            ("FEED", "kafka"),
            ("CIRCUIT_MAX_CONSECUTIVE_LOSSES", "0"),
        ] {
            let e = cfg(&[(k, v)]).unwrap_err();
            assert_eq!(e.key, k);
            assert_eq!(e.value.as_deref(), Some(v), "{k}");
            assert!(!e.fix.is_empty());
            let m = e.to_string();
            assert!(m.contains(k) && m.contains(v), "{m}");
        }
    }

    #[test]
    fn non_loopback_bind_needs_auth() {
        let e = cfg(&[("BIND_ADDR", "0.0.0.0"), ("AUTH_ENABLED", "false")]).unwrap_err();
        assert_eq!(e.key, "BIND_ADDR");
        assert!(e.fix.contains("loopback"));
        assert!(cfg(&[("BIND_ADDR", "::1"), ("AUTH_ENABLED", "false")]).is_ok());
        // With authentication on (the default) any address may be used.
        assert!(cfg(&[("BIND_ADDR", "0.0.0.0")]).is_ok());
    }

    #[test]
    fn modes_capital_leverage_and_dashboard_keys() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.modes_enabled, StrategyMode::ALL.to_vec());
        assert_eq!(c.capital_usd, Notional::from_int(10_000));
        assert_eq!(c.limits.max_leverage, 5);
        assert!(c.dashboard.is_empty());
        let c = cfg(&[
            ("MODES_ENABLED", " Swing , scalp"),
            ("CAPITAL_USD", "2500.5"),
            ("FUTURES_AUTOPILOT_MAX_LEVERAGE", "3"),
            ("DASHBOARD_ALLOWED_IPS", "10.0.0.0/8"),
        ])
        .unwrap();
        assert_eq!(
            c.modes_enabled,
            vec![StrategyMode::Scalp, StrategyMode::Swing]
        );
        assert_eq!(c.capital_usd, Notional::parse("2500.5").unwrap());
        assert_eq!(c.limits.max_leverage, 3);
        assert_eq!(
            c.dashboard,
            vec![("DASHBOARD_ALLOWED_IPS", "10.0.0.0/8".to_string())]
        );
        for (k, v) in [
            ("MODES_ENABLED", "scalp,hodl"),
            ("MODES_ENABLED", ","),
            ("CAPITAL_USD", "-1"),
            ("FUTURES_AUTOPILOT_MAX_LEVERAGE", "200"),
        ] {
            let e = cfg(&[(k, v)]).unwrap_err();
            assert_eq!(e.key, k);
            assert!(e.to_string().contains("use "), "{e}");
        }
    }

    #[test]
    fn open_orders_and_order_rate_are_bounded_settings() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.limits.max_open_orders, 10);
        assert_eq!(c.limits.max_orders_per_10s, 50);
        type Field = fn(&LimitsConfig) -> u32;
        let table: [(&str, u32, u32, Field); 2] = [
            ("MAX_OPEN_ORDERS", 1, 200, |l| l.max_open_orders),
            ("MAX_ORDERS_PER_10S", 1, 300, |l| l.max_orders_per_10s),
        ];
        for (k, lo, hi, field) in table {
            for n in [lo, hi] {
                assert_eq!(
                    field(&cfg(&[(k, &n.to_string())]).unwrap().limits),
                    n,
                    "{k}={n}"
                );
            }
            for bad in [
                (lo - 1).to_string(),
                (hi + 1).to_string(),
                "-1".into(),
                "ten".into(),
            ] {
                let e = cfg(&[(k, &bad)]).unwrap_err();
                assert_eq!(e.key, k);
                assert_eq!(e.value.as_deref(), Some(bad.as_str()));
                assert!(e.fix.contains(&format!("to {hi}")), "{e}");
            }
        }
    }

    #[test]
    fn exchange_stop_loss_defaults_to_three_percent_and_is_range_checked() {
        assert_eq!(
            cfg(&[]).unwrap().exchange.stop_loss,
            Rate::parse("0.03").unwrap()
        );
        for ok in ["0.001", "0.025", "0.5"] {
            let c = cfg(&[("EXCHANGE_STOP_LOSS", ok)]).unwrap();
            assert_eq!(c.exchange.stop_loss, Rate::parse(ok).unwrap(), "{ok}");
        }
        for bad in ["0", "0.0009", "0.51", "-0.03", "3%", "1"] {
            let e = cfg(&[("EXCHANGE_STOP_LOSS", bad)]).unwrap_err();
            assert_eq!(e.key, "EXCHANGE_STOP_LOSS");
            assert_eq!(e.value.as_deref(), Some(bad));
            assert!(e.fix.contains("0.001 to 0.5"), "{e}");
        }
    }

    #[test]
    fn live_and_testnet_need_their_own_keys() {
        // No key at all: read-only mode (market data and dashboard, no orders).
        let c = cfg(&[("TRADING_MODE", "live")]).unwrap();
        assert!(c.keys.api_key.is_empty());
        let e = cfg(&[("TRADING_MODE", "live"), ("BINANCE_API_KEY", "k")]).unwrap_err();
        assert_eq!(e.key, "BINANCE_SECRET_KEY");
        assert_eq!(e.value, None);
        // The production pair does not count for testnet.
        let e = cfg(&[
            ("TRADING_MODE", "testnet"),
            ("BINANCE_TESTNET_API_KEY", "k"),
            ("BINANCE_SECRET_KEY", "s"),
        ])
        .unwrap_err();
        assert_eq!(e.key, "BINANCE_TESTNET_SECRET_KEY");
        assert!(cfg(&[
            ("TRADING_MODE", "testnet"),
            ("BINANCE_TESTNET_API_KEY", "k"),
            ("BINANCE_TESTNET_ED25519_PRIVATE_KEY_PATH", "/k.pem"),
        ])
        .is_ok());
        let e = cfg(&[("BINANCE_FAPI_URL", "ftp://x")]).unwrap_err();
        assert_eq!(e.key, "BINANCE_FAPI_URL");
        let ok = cfg(&[
            ("TRADING_MODE", "LIVE"),
            ("BINANCE_API_KEY", "prodkey"),
            ("BINANCE_SECRET_KEY", "prodsecret"),
        ])
        .unwrap();
        assert_eq!(ok.trading_mode, TradingMode::Live);
        let e = cfg(&[
            ("BINANCE_API_KEY", "samekey-123"),
            ("BINANCE_TESTNET_API_KEY", "samekey-123"),
        ])
        .unwrap_err();
        assert!(!e.to_string().contains("samekey-123"));
    }

    #[test]
    fn secret_errors_never_show_the_value() {
        let e = cfg(&[("DATABASE_URL", "mysql://root:pa55word-xyz@db/aegis")]).unwrap_err();
        assert_eq!(e.key, "DATABASE_URL");
        assert_eq!(e.value, None);
        assert!(!format!("{e} {e:?}").contains("pa55word-xyz"));
        // Even a caller that passes the value gets it dropped for a secret key.
        let e = ConfigError::new("JWT_SECRET", Some("topsecret-1"), "x");
        assert!(!format!("{e} {e:?}").contains("topsecret-1"));
    }

    #[test]
    fn debug_never_contains_a_secret() {
        let c = cfg(&[
            ("BINANCE_API_KEY", "AKIA-prod-key-value-1"),
            ("BINANCE_SECRET_KEY", "prod-secret-value-2"),
            ("BINANCE_TESTNET_API_KEY", "testnet-key-value-3"),
            ("BINANCE_TESTNET_SECRET_KEY", "testnet-secret-value-4"),
            ("JWT_SECRET", "jwt-secret-value-5-long-enough-xxxxxxxx"),
            (
                "DATABASE_URL",
                "postgres://bot:db-pass-value-6@127.0.0.1/aegis",
            ),
        ])
        .unwrap();
        let d = format!("{c:?} {c:#?}");
        for s in [
            "AKIA-prod-key-value-1",
            "prod-secret-value-2",
            "testnet-key-value-3",
            "testnet-secret-value-4",
            "jwt-secret-value-5",
            "db-pass-value-6",
        ] {
            assert!(!d.contains(s), "{s} leaked");
        }
        assert_eq!(c.keys.api_key.expose(), "AKIA-prod-key-value-1");
    }

    #[test]
    fn feed_binance_is_paper_on_the_public_streams() {
        let c = cfg(&[("FEED", "Binance")]).unwrap();
        assert_eq!(c.feed, FeedKind::Binance);
        assert_eq!(c.trading_mode, TradingMode::Paper);
        assert!(c.environment().contains("Binance's public market data"));
        // The default feed keeps saying there is no exchange at all.
        assert_eq!(
            cfg(&[]).unwrap().environment(),
            "paper (simulated fills, no exchange)"
        );
        let e = cfg(&[("FEED", "binanse")]).unwrap_err();
        assert!(e.fix.contains("binance"), "{}", e.fix);
    }

    #[test]
    fn replay_and_log_output() {
        let e = cfg(&[("FEED", "replay")]).unwrap_err();
        assert_eq!(e.key, "REPLAY_FILE");
        let c = cfg(&[
            ("FEED", "replay"),
            ("REPLAY_FILE", "x.jsonl"),
            ("REPLAY_SPEED", "10"),
            ("LOG_OUTPUT", "/var/log/aegis.log"),
            ("LOG_LEVEL", "INFO"),
        ])
        .unwrap();
        assert_eq!(
            c.feed,
            FeedKind::Replay {
                file: PathBuf::from("x.jsonl"),
                speed: 10.0
            }
        );
        assert_eq!(c.log.output, LogOutput::File("/var/log/aegis.log".into()));
        assert_eq!(c.log.level, LogLevel::Info);
        assert_eq!(
            cfg(&[("LOG_OUTPUT", "STDERR")]).unwrap().log.output,
            LogOutput::Stderr
        );
    }

    #[test]
    fn tls_paths_come_in_pairs_and_empty_means_unset() {
        assert_eq!(
            cfg(&[("TLS_CERT_PATH", "c.pem")]).unwrap_err().key,
            "TLS_KEY_PATH"
        );
        assert_eq!(
            cfg(&[("TLS_KEY_PATH", "k.pem")]).unwrap_err().key,
            "TLS_CERT_PATH"
        );
        let c = cfg(&[("TLS_CERT_PATH", " "), ("API_PORT", "")]).unwrap();
        assert!(c.api.tls_cert_path.is_none());
        assert_eq!(c.api.port, 8090);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration(""), None);
    }
}
