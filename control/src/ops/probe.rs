//! Asking the exchange about a key: does it work (`GET /fapi/v2/account`) and what may it do
//! (`GET /sapi/v1/account/apiRestrictions`, production only). HMAC-SHA256 signed REST, short timeouts.
//!
//! This is a small, self-contained client for the operating commands (`aegis preflight`, `aegis keys audit`,
//! `aegis keys rotate`); the trading path has its own. No error message ever carries a key, a secret or a
//! signed URL (reqwest errors are stripped of their URL).

use crate::preflight::ApiRestrictions;
use aegis_shared::config::Config;
use aegis_shared::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// Production USD-M futures REST.
pub const FUTURES_URL: &str = "https://fapi.binance.com";
/// Production spot REST (hosts `/sapi`).
pub const SPOT_URL: &str = "https://api.binance.com";
/// Testnet USD-M futures REST.
pub const TESTNET_FUTURES_URL: &str = "https://testnet.binancefuture.com";
/// Per-request timeout: the operating commands must answer quickly even when the network is down.
pub const TIMEOUT: Duration = Duration::from_secs(4);

/// Which key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyEnv {
    /// `BINANCE_API_KEY` / `BINANCE_SECRET_KEY`.
    Production,
    /// `BINANCE_TESTNET_API_KEY` / `BINANCE_TESTNET_SECRET_KEY`.
    Testnet,
}

impl KeyEnv {
    /// `production` / `testnet`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Testnet => "testnet",
        }
    }
    /// The `.env` names of the pair.
    pub fn vars(self) -> (&'static str, &'static str) {
        match self {
            Self::Production => ("BINANCE_API_KEY", "BINANCE_SECRET_KEY"),
            Self::Testnet => ("BINANCE_TESTNET_API_KEY", "BINANCE_TESTNET_SECRET_KEY"),
        }
    }
}

/// Where to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Futures REST base (account check).
    pub futures: String,
    /// SAPI base (`apiRestrictions`); `None` on testnet, which has no SAPI.
    pub sapi: Option<String>,
}

impl Endpoints {
    /// The bases for `which` key: the `BINANCE_FAPI_URL` / `BINANCE_SAPI_URL` overrides when set and `which` is the
    /// environment of `TRADING_MODE` (the same rule as the trading path, e.g. to point at `binance-sim`), else that
    /// environment's Binance defaults.
    pub fn for_env(cfg: &Config, which: KeyEnv) -> Self {
        let trim = |s: &str| s.trim_end_matches('/').to_string();
        // The overrides belong to the environment the bot trades in (as on the trading path); the other
        // environment's key is always checked at Binance itself.
        let trading_env = match cfg.trading_mode {
            aegis_shared::TradingMode::Testnet => KeyEnv::Testnet,
            _ => KeyEnv::Production,
        };
        let none = aegis_shared::config::ExchangeConfig::default();
        let x = if which == trading_env {
            &cfg.exchange
        } else {
            &none
        };
        match which {
            KeyEnv::Production => Self {
                futures: trim(x.fapi_url.as_deref().unwrap_or(FUTURES_URL)),
                sapi: Some(trim(x.sapi_url.as_deref().unwrap_or(SPOT_URL))),
            },
            KeyEnv::Testnet => Self {
                futures: trim(x.fapi_url.as_deref().unwrap_or(TESTNET_FUTURES_URL)),
                sapi: None,
            },
        }
    }
}

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The exchange answered with a Binance error (e.g. -2015: invalid key, IP or permissions).
    #[error("exchange refused: code {code} ({msg})")]
    Refused {
        /// Binance error code.
        code: i64,
        /// Binance's message (never contains the key).
        msg: String,
    },
    /// Network trouble: DNS, connect, TLS, timeout.
    #[error("exchange unreachable: {0}")]
    Unreachable(String),
    /// An answer that is not what Binance sends.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

impl ProbeError {
    /// True for -2014/-2015 (key invalid, IP not whitelisted, or permissions): the key itself is the problem.
    pub fn is_key_rejected(&self) -> bool {
        matches!(
            self,
            Self::Refused {
                code: -2014 | -2015,
                ..
            }
        )
    }
}

/// What the exchange said about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// The signed account call worked.
    pub account: Result<(), ProbeError>,
    /// `apiRestrictions`; `None` where the environment has no SAPI (testnet).
    pub restrictions: Option<Result<ApiRestrictions, ProbeError>>,
}

impl ProbeReport {
    /// Works, withdrawals off, IP restricted, spot & margin as `market` needs it (where that can be known).
    pub fn acceptable(&self, market: aegis_shared::Market) -> bool {
        self.account.is_ok()
            && match &self.restrictions {
                None => true,
                Some(Ok(r)) => {
                    !r.enable_withdrawals
                        && r.ip_restrict
                        && crate::preflight::spot_permission_fits(r.enable_spot, market)
                }
                Some(Err(_)) => false,
            }
    }
}

/// Hex HMAC-SHA256 of `payload` (Binance's REST signature).
pub fn sign(secret: &Secret<String>, payload: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn client() -> Result<reqwest::Client, ProbeError> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("aegis/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ProbeError::Unreachable(e.without_url().to_string()))
}

async fn signed_get(
    c: &reqwest::Client,
    base: &str,
    path: &str,
    key: &Secret<String>,
    secret: &Secret<String>,
) -> Result<serde_json::Value, ProbeError> {
    let ts = crate::journal::now_ms();
    let query = format!("recvWindow=5000&timestamp={ts}");
    let sig = sign(secret, &query);
    let url = format!("{base}{path}?{query}&signature={sig}");
    let resp = c
        .get(url)
        .header("X-MBX-APIKEY", key.expose().as_str())
        .send()
        .await
        .map_err(|e| ProbeError::Unreachable(e.without_url().to_string()))?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .map_err(|_| ProbeError::Unexpected(format!("HTTP {status} without a JSON body")))?;
    if let Some(code) = body.get("code").and_then(|c| c.as_i64()) {
        if !status.is_success() || code < 0 {
            let msg = body
                .get("msg")
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .chars()
                .take(200)
                .collect();
            return Err(ProbeError::Refused { code, msg });
        }
    }
    if !status.is_success() {
        return Err(ProbeError::Unexpected(format!("HTTP {status}")));
    }
    Ok(body)
}

/// Parses an `apiRestrictions` answer.
pub fn parse_restrictions(v: &serde_json::Value) -> Result<ApiRestrictions, ProbeError> {
    let b = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_bool())
            .ok_or_else(|| ProbeError::Unexpected(format!("apiRestrictions without `{k}`")))
    };
    Ok(ApiRestrictions {
        enable_withdrawals: b("enableWithdrawals")?,
        ip_restrict: b("ipRestrict")?,
        enable_spot: b("enableSpotAndMarginTrading")?,
    })
}

/// Asks the exchange about a key pair.
pub async fn probe(ends: &Endpoints, key: &Secret<String>, secret: &Secret<String>) -> ProbeReport {
    let c = match client() {
        Ok(c) => c,
        Err(e) => {
            return ProbeReport {
                account: Err(e.clone()),
                restrictions: ends.sapi.as_ref().map(|_| Err(e)),
            }
        }
    };
    let account = signed_get(&c, &ends.futures, "/fapi/v2/account", key, secret)
        .await
        .map(|_| ());
    let restrictions = match &ends.sapi {
        None => None,
        Some(base) => Some(
            signed_get(&c, base, "/sapi/v1/account/apiRestrictions", key, secret)
                .await
                .and_then(|v| parse_restrictions(&v)),
        ),
    };
    ProbeReport {
        account,
        restrictions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_binance_vectors() {
        let s = Secret::new(
            "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j".to_string(),
        );
        assert_eq!(
            sign(&s, "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"),
            "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
        );
        let f = Secret::new(
            "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9".to_string(),
        );
        assert_eq!(
            sign(&f, "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000&timestamp=1591702613943"),
            "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"
        );
    }

    #[test]
    fn restrictions_parse_and_judge() {
        let v = serde_json::json!({"ipRestrict":false,"createTime":1698645219000u64,"enableWithdrawals":true,"enableReading":true,"enableSpotAndMarginTrading":true});
        let r = parse_restrictions(&v).unwrap();
        assert!(r.enable_withdrawals && !r.ip_restrict && r.enable_spot);
        let rep = ProbeReport {
            account: Ok(()),
            restrictions: Some(Ok(r)),
        };
        assert!(!rep.acceptable(aegis_shared::Market::Futures));
        assert!(!rep.acceptable(aegis_shared::Market::Spot));
        // Withdrawals off and IP restricted: the spot permission decides, by market.
        let spot_on = ProbeReport {
            account: Ok(()),
            restrictions: Some(Ok(ApiRestrictions {
                enable_withdrawals: false,
                ip_restrict: true,
                enable_spot: true,
            })),
        };
        assert!(spot_on.acceptable(aegis_shared::Market::Spot));
        assert!(!spot_on.acceptable(aegis_shared::Market::Futures));
        let spot_off = ProbeReport {
            account: Ok(()),
            restrictions: Some(Ok(ApiRestrictions {
                enable_withdrawals: false,
                ip_restrict: true,
                enable_spot: false,
            })),
        };
        assert!(spot_off.acceptable(aegis_shared::Market::Futures));
        assert!(!spot_off.acceptable(aegis_shared::Market::Spot));
        assert!(parse_restrictions(&serde_json::json!({"ipRestrict":true})).is_err());
        assert!(ProbeError::Refused {
            code: -2015,
            msg: String::new()
        }
        .is_key_rejected());
    }
}
