//! Which Binance environment the bot talks to, and with which key: both follow `TRADING_MODE` only.
//!
//! A key is taken only from the variables of the selected mode (`BINANCE_*` for live, `BINANCE_TESTNET_*` for
//! testnet), and the URLs only from that mode's defaults (or the explicit `BINANCE_*_URL` overrides used to point
//! at the simulator). So a testnet key can never reach production or the reverse: there is no code path that
//! reads the other mode's variables.

use aegis_engine::sign::{ApiKey, SignError, Signer};
use aegis_shared::config::{Config, ConfigError, FeedKind};
use aegis_shared::{Secret, TradingMode};

/// Base URLs of one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `production` or `testnet`, for banners.
    pub name: &'static str,
    /// USD-M futures REST base.
    pub fapi: String,
    /// Market/user stream base (`/stream?streams=`, `/ws/<listenKey>` are appended).
    pub fstream: String,
    /// WebSocket API URL.
    pub wsapi: String,
    /// `/sapi` base (production only; `None` on testnet, which has no key restrictions endpoint).
    pub sapi: Option<String>,
    /// Spot REST base (`/api/v3/...`; `MARKETS=spot`). Spot is a separate host at Binance, with its own
    /// request weight (6,000/min).
    pub spot: String,
    /// Spot market stream base (`/stream?streams=` is appended).
    pub spot_stream: String,
    /// Spot WebSocket API URL: orders and, since the spot listenKey is gone, the user data stream.
    pub spot_wsapi: String,
    /// True when any URL was overridden (simulator).
    pub overridden: bool,
}

/// Binance spot testnet's REST base, streams and WebSocket API (`testnet.binance.vision`).
pub const SPOT_TESTNET: [&str; 3] = [
    "https://testnet.binance.vision",
    "wss://stream.testnet.binance.vision:9443",
    "wss://ws-api.testnet.binance.vision/ws-api/v3",
];
/// Binance spot production's REST base, streams and WebSocket API.
pub const SPOT_PRODUCTION: [&str; 3] = [
    SPOT_REST,
    SPOT_STREAM,
    "wss://ws-api.binance.com:443/ws-api/v3",
];

impl Endpoints {
    /// The endpoints for `cfg.trading_mode` (`None` for paper).
    pub fn for_config(cfg: &Config) -> Option<Self> {
        match cfg.trading_mode {
            TradingMode::Paper => None,
            TradingMode::Live => Some(Self::production(cfg)),
            TradingMode::Testnet => Some(Self::build(
                cfg,
                "testnet",
                [
                    "https://testnet.binancefuture.com",
                    "wss://fstream.binancefuture.com",
                    "wss://testnet.binancefuture.com/ws-fapi/v1",
                ],
                SPOT_TESTNET,
                None,
            )),
        }
    }

    /// Where paper trading reads Binance's public market data (`FEED=binance`): production's streams and
    /// public REST (exchange filters, depth snapshots), or the `BINANCE_*_URL` overrides. `None` unless paper
    /// mode reads Binance. No key is ever attached to these (paper has none).
    pub fn paper_market(cfg: &Config) -> Option<Self> {
        (cfg.trading_mode == TradingMode::Paper && cfg.feed == FeedKind::Binance)
            .then(|| Self::production(cfg))
    }

    fn production(cfg: &Config) -> Self {
        Self::build(
            cfg,
            "production",
            [
                "https://fapi.binance.com",
                "wss://fstream.binance.com",
                "wss://ws-fapi.binance.com/ws-fapi/v1",
            ],
            SPOT_PRODUCTION,
            Some("https://api.binance.com"),
        )
    }

    fn build(
        cfg: &Config,
        name: &'static str,
        [fapi, fstream, wsapi]: [&str; 3],
        [spot, spot_stream, spot_wsapi]: [&str; 3],
        sapi: Option<&str>,
    ) -> Self {
        let x = &cfg.exchange;
        let overridden = x.fapi_url.is_some()
            || x.fstream_url.is_some()
            || x.wsapi_url.is_some()
            || x.sapi_url.is_some()
            || x.spot_url.is_some()
            || x.spot_stream_url.is_some()
            || x.spot_wsapi_url.is_some();
        Self {
            name,
            fapi: x.fapi_url.clone().unwrap_or_else(|| fapi.into()),
            fstream: x.fstream_url.clone().unwrap_or_else(|| fstream.into()),
            wsapi: x.wsapi_url.clone().unwrap_or_else(|| wsapi.into()),
            sapi: x.sapi_url.clone().or(sapi.map(String::from)),
            spot: x.spot_url.clone().unwrap_or_else(|| spot.into()),
            spot_stream: x
                .spot_stream_url
                .clone()
                .unwrap_or_else(|| spot_stream.into()),
            spot_wsapi: x
                .spot_wsapi_url
                .clone()
                .unwrap_or_else(|| spot_wsapi.into()),
            overridden,
        }
    }
}

/// Binance spot's public base URLs, read by paper trading on spot (`MARKETS=spot FEED=binance`). Public only:
/// nothing here ever carries a key (paper has none), and no order endpoint is derived from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotEndpoints {
    /// `production`, for banners (paper reads the real market, never the spot testnet
    /// `testnet.binance.vision`, whose prices are not the market's).
    pub name: &'static str,
    /// Spot REST base (`/api/v3/exchangeInfo` is appended).
    pub rest: String,
    /// Spot market stream base (`/stream?streams=` is appended).
    pub stream: String,
    /// True when any URL was overridden (simulator or proxy).
    pub overridden: bool,
}

/// Binance spot's production REST base.
pub const SPOT_REST: &str = "https://api.binance.com";
/// Binance spot's production market stream base (port 9443 is the one Binance documents; 443 also works).
pub const SPOT_STREAM: &str = "wss://stream.binance.com:9443";

impl SpotEndpoints {
    /// Where paper trading on spot reads Binance's public spot market data: production's, or the
    /// `BINANCE_SPOT_URL` / `BINANCE_SPOT_STREAM_URL` overrides. `None` unless paper mode reads Binance.
    pub fn paper_market(cfg: &Config) -> Option<Self> {
        if cfg.trading_mode != TradingMode::Paper || cfg.feed != FeedKind::Binance {
            return None;
        }
        let x = &cfg.exchange;
        Some(Self {
            name: "production",
            rest: x.spot_url.clone().unwrap_or_else(|| SPOT_REST.into()),
            stream: x
                .spot_stream_url
                .clone()
                .unwrap_or_else(|| SPOT_STREAM.into()),
            overridden: x.spot_url.is_some() || x.spot_stream_url.is_some(),
        })
    }
}

/// A usable key: the API key and what signs with it.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// API key (`X-MBX-APIKEY`).
    pub api_key: ApiKey,
    /// HMAC or Ed25519 signer.
    pub signer: Signer,
    /// The variable the key came from, for messages.
    pub source: &'static str,
}

impl Credentials {
    /// True for an Ed25519 key (WebSocket-API `session.logon` possible).
    pub fn is_ed25519(&self) -> bool {
        matches!(self.signer, Signer::Ed25519(_))
    }
}

fn bad(key: &str, fix: &str) -> ConfigError {
    ConfigError::new(key, None, fix.to_string())
}

/// The key of the selected mode, from that mode's variables only. `Ok(None)` = no API key: read-only mode.
pub fn credentials(cfg: &Config) -> Result<Option<Credentials>, ConfigError> {
    let k = &cfg.keys;
    let (key_var, secret_var, path_var, api_key, secret, path) = match cfg.trading_mode {
        TradingMode::Paper => return Ok(None),
        TradingMode::Live => (
            "BINANCE_API_KEY",
            "BINANCE_SECRET_KEY",
            "BINANCE_ED25519_PRIVATE_KEY_PATH",
            &k.api_key,
            &k.secret_key,
            &cfg.exchange.ed25519_key_path,
        ),
        TradingMode::Testnet => (
            "BINANCE_TESTNET_API_KEY",
            "BINANCE_TESTNET_SECRET_KEY",
            "BINANCE_TESTNET_ED25519_PRIVATE_KEY_PATH",
            &k.testnet_api_key,
            &k.testnet_secret_key,
            &cfg.exchange.testnet_ed25519_key_path,
        ),
    };
    if api_key.is_empty() {
        return Ok(None);
    }
    let api_key = ApiKey::new(api_key.clone()).map_err(|_| {
        bad(
            key_var,
            "an API key is 64 ASCII letters and digits as shown by Binance; paste it again without spaces or quotes",
        )
    })?;
    let signer = match path {
        Some(p) => {
            let pem = std::fs::read_to_string(p).map_err(|e| {
                ConfigError::new(
                    path_var,
                    Some(&p.display().to_string()),
                    format!("cannot read the Ed25519 private key file ({}); check the path and that the bot's user can read it", e.kind()),
                )
            })?;
            Signer::from_secret(&Secret::new(pem)).map_err(|_| {
                ConfigError::new(
                    path_var,
                    Some(&p.display().to_string()),
                    "the file is not a PKCS#8 PEM Ed25519 private key (-----BEGIN PRIVATE KEY-----)",
                )
            })?
        }
        None => Signer::from_secret(secret).map_err(|e| match e {
            SignError::EmptySecret => bad(secret_var, "set the secret that belongs to the API key"),
            _ => bad(
                secret_var,
                "the secret could not be read as an HMAC secret or an Ed25519 PEM key",
            ),
        })?,
    };
    Ok(Some(Credentials {
        api_key,
        signer,
        source: key_var,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::test_support::config as cfg;

    const PROD: &str = "Pr0dPr0dPr0dPr0dPr0dPr0dPr0dPr0dPr0dPr0dPr0dPr0dPr0dPr0dPr0dPr0d";
    const TEST: &str = "TestTestTestTestTestTestTestTestTestTestTestTestTestTestTestTest";

    #[test]
    fn paper_on_binance_reads_production_streams_and_never_a_key() {
        let c = cfg(&[
            ("FEED", "binance"),
            ("BINANCE_API_KEY", PROD),
            ("BINANCE_SECRET_KEY", "prod-secret"),
        ]);
        // Paper has no exchange account, so no key is taken even though one is configured.
        assert!(Endpoints::for_config(&c).is_none());
        assert!(credentials(&c).unwrap().is_none());
        let e = Endpoints::paper_market(&c).unwrap();
        assert_eq!(
            (e.name, e.fstream.as_str(), e.fapi.as_str()),
            (
                "production",
                "wss://fstream.binance.com",
                "https://fapi.binance.com"
            )
        );
        assert!(!e.overridden);
        // The simulator (or a proxy) through the usual overrides.
        let c = cfg(&[
            ("FEED", "binance"),
            ("BINANCE_FSTREAM_URL", "ws://127.0.0.1:9"),
        ]);
        let e = Endpoints::paper_market(&c).unwrap();
        assert_eq!(e.fstream, "ws://127.0.0.1:9");
        assert!(e.overridden);
        // Only paper with FEED=binance reads the public market this way.
        assert!(Endpoints::paper_market(&cfg(&[])).is_none());
        assert!(
            Endpoints::paper_market(&cfg(&[("FEED", "binance"), ("TRADING_MODE", "testnet")]))
                .is_none()
        );
    }

    #[test]
    fn paper_on_spot_reads_spot_endpoints_and_its_own_overrides_only() {
        let c = cfg(&[("FEED", "binance"), ("MARKETS", "spot")]);
        let e = SpotEndpoints::paper_market(&c).unwrap();
        assert_eq!(
            (e.rest.as_str(), e.stream.as_str(), e.overridden),
            (
                "https://api.binance.com",
                "wss://stream.binance.com:9443",
                false
            )
        );
        // The futures overrides do not move spot's endpoints (a futures simulator URL must not be read as spot).
        let c = cfg(&[
            ("FEED", "binance"),
            ("MARKETS", "spot"),
            ("BINANCE_FAPI_URL", "http://127.0.0.1:9"),
            ("BINANCE_FSTREAM_URL", "ws://127.0.0.1:9"),
        ]);
        let e = SpotEndpoints::paper_market(&c).unwrap();
        assert_eq!(e.rest, "https://api.binance.com");
        assert!(!e.overridden);
        let c = cfg(&[
            ("FEED", "binance"),
            ("MARKETS", "spot"),
            ("BINANCE_SPOT_URL", "http://127.0.0.1:9010/"),
            ("BINANCE_SPOT_STREAM_URL", "ws://127.0.0.1:9010/spot"),
        ]);
        let e = SpotEndpoints::paper_market(&c).unwrap();
        assert_eq!(
            (e.rest.as_str(), e.stream.as_str(), e.overridden),
            ("http://127.0.0.1:9010", "ws://127.0.0.1:9010/spot", true)
        );
        assert!(SpotEndpoints::paper_market(&cfg(&[("MARKETS", "spot")])).is_none());
    }

    #[test]
    fn keys_and_urls_follow_the_mode_only() {
        let both = [
            ("BINANCE_API_KEY", PROD),
            ("BINANCE_SECRET_KEY", "prod-secret"),
            ("BINANCE_TESTNET_API_KEY", TEST),
            ("BINANCE_TESTNET_SECRET_KEY", "test-secret"),
        ];
        let mut t = both.to_vec();
        t.push(("TRADING_MODE", "testnet"));
        let c = cfg(&t);
        let cr = credentials(&c).unwrap().unwrap();
        assert_eq!(cr.api_key.expose(), TEST);
        let e = Endpoints::for_config(&c).unwrap();
        assert_eq!(e.fapi, "https://testnet.binancefuture.com");
        assert!(e.sapi.is_none());
        let mut l = both.to_vec();
        l.push(("TRADING_MODE", "live"));
        let c = cfg(&l);
        assert_eq!(credentials(&c).unwrap().unwrap().api_key.expose(), PROD);
        assert_eq!(
            Endpoints::for_config(&c).unwrap().fapi,
            "https://fapi.binance.com"
        );
        // Testnet mode with only a production key: read-only, the production key is never picked up.
        let c = cfg(&[
            ("TRADING_MODE", "testnet"),
            ("BINANCE_API_KEY", PROD),
            ("BINANCE_SECRET_KEY", "prod-secret"),
        ]);
        assert!(credentials(&c).unwrap().is_none());
        // And the reverse.
        let c = cfg(&[
            ("TRADING_MODE", "live"),
            ("BINANCE_TESTNET_API_KEY", TEST),
            ("BINANCE_TESTNET_SECRET_KEY", "test-secret"),
        ]);
        assert!(credentials(&c).unwrap().is_none());
        assert!(Endpoints::for_config(&cfg(&[])).is_none());
    }

    #[test]
    fn overrides_point_at_the_simulator() {
        let c = cfg(&[
            ("TRADING_MODE", "testnet"),
            ("BINANCE_FAPI_URL", "http://127.0.0.1:9010/"),
            ("BINANCE_FSTREAM_URL", "ws://127.0.0.1:9010"),
        ]);
        let e = Endpoints::for_config(&c).unwrap();
        assert_eq!(e.fapi, "http://127.0.0.1:9010");
        assert_eq!(e.fstream, "ws://127.0.0.1:9010");
        assert!(e.overridden);
    }
}
