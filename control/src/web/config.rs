//! Settings of the dashboard/API layer, parsed from the same environment keys as the rest of the config.

use crate::auth::limits::{parse_cidrs, CidrError};
use crate::auth::{validate_jwt_secret, IpAllowlist, LoginLimits, SecretProblem};
use aegis_shared::Secret;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

/// Dashboard/API settings.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// `AUTH_ENABLED` (default true). `false` is only accepted when `bind` is a loopback address.
    pub auth_enabled: bool,
    /// `JWT_SECRET` (required when auth is enabled; >= 32 bytes, not weak, not the placeholder).
    pub jwt_secret: Secret<String>,
    /// `JWT_EXPIRY` (default 24h).
    pub jwt_expiry: Duration,
    /// Where the HTTPS listener binds (`BIND_ADDR`:`API_PORT`); used for the loopback checks.
    pub bind: SocketAddr,
    /// `DASHBOARD_ALLOWED_IPS` (empty: no allowlist).
    pub allowed_ips: IpAllowlist,
    /// `TRUSTED_PROXIES`: peers whose `X-Forwarded-For` is believed (e.g. the local nginx). Empty by default.
    pub trusted_proxies: Vec<IpNet>,
    /// `API_RATE_LIMIT_PER_SEC` (default 20) requests per second per client IP.
    pub rate_per_sec: NonZeroU32,
    /// `API_RATE_LIMIT_BURST` (default 60).
    pub rate_burst: NonZeroU32,
    /// Login lockout settings (`LOGIN_MAX_FAILURES`, `LOGIN_MAX_FAILURES_PER_IP`, `LOGIN_LOCKOUT`).
    pub login: LoginLimits,
    /// `API_MAX_BODY_BYTES` (default 16 KiB): larger request bodies get 413.
    pub max_body_bytes: usize,
    /// How often the live stream looks for changes (default 1 s).
    pub live_interval: Duration,
    /// `API_HEADER_READ_TIMEOUT` (default 10s, 1s-5m): the TLS handshake and each HTTP/1 request head must arrive
    /// within this; an HTTP/1 keep-alive connection waiting for its next request is closed after it too.
    pub header_read_timeout: Duration,
    /// `API_IDLE_TIMEOUT` (default 60s, 20s-1h): a connection on which nothing moves either way for this long
    /// is closed. At least 20 s, because the live stream writes only every 15 s.
    pub idle_timeout: Duration,
    /// `API_MAX_CONNECTIONS_PER_IP` (default 32, 1-100000; `TRUSTED_PROXIES` exempt).
    pub max_connections_per_ip: u32,
    /// `API_MAX_CONNECTIONS` (default 1024, 1-1000000), plus a small reserve for 127.0.0.1/::1.
    pub max_connections: u32,
}

/// A bad dashboard/API setting. Messages name the key and the fix, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebConfigError {
    /// `JWT_SECRET` refused.
    #[error(transparent)]
    Secret(#[from] SecretProblem),
    /// `AUTH_ENABLED=false` on a non-loopback address.
    #[error("AUTH_ENABLED=false is refused because the API binds to {0}, which is not loopback; set BIND_ADDR=127.0.0.1 or enable auth")]
    AuthOffNotLoopback(IpAddr),
    /// A malformed value.
    #[error("{key}: {value:?} is invalid; {hint}")]
    Invalid {
        /// Key.
        key: &'static str,
        /// The value (these keys hold no secrets).
        value: String,
        /// What to write instead.
        hint: &'static str,
    },
    /// A malformed IP list.
    #[error(transparent)]
    Cidr(#[from] CidrError),
    /// The per-IP connection cap is above the total one.
    #[error("API_MAX_CONNECTIONS_PER_IP ({per_ip}) is larger than API_MAX_CONNECTIONS ({total}); lower it or raise API_MAX_CONNECTIONS")]
    ConnCaps {
        /// `API_MAX_CONNECTIONS_PER_IP`.
        per_ip: u32,
        /// `API_MAX_CONNECTIONS`.
        total: u32,
    },
}

/// Parses `24h`, `30m`, `90s`, `7d` or plain seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'd') => (&s[..i], 86_400),
        (i, 'h') => (&s[..i], 3_600),
        (i, 'm') => (&s[..i], 60),
        (i, 's') => (&s[..i], 1),
        _ => (s, 1),
    };
    let n: u64 = num.trim().parse().ok()?;
    n.checked_mul(mult).map(Duration::from_secs)
}

fn bool_of(key: &'static str, v: &str) -> Result<bool, WebConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(WebConfigError::Invalid {
            key,
            value: v.to_string(),
            hint: "use true or false",
        }),
    }
}

fn nonzero(key: &'static str, v: &str) -> Result<NonZeroU32, WebConfigError> {
    v.trim()
        .parse::<NonZeroU32>()
        .map_err(|_| WebConfigError::Invalid {
            key,
            value: v.to_string(),
            hint: "use a whole number above 0",
        })
}

/// A whole number in `1..=max`.
fn count_of(
    key: &'static str,
    v: &str,
    max: u32,
    hint: &'static str,
) -> Result<u32, WebConfigError> {
    v.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| WebConfigError::Invalid {
            key,
            value: v.to_string(),
            hint,
        })
}

/// A duration (`30s`, `5m`, `24h`, ...) that `ok` accepts.
fn duration_of(
    key: &'static str,
    v: &str,
    ok: impl Fn(&Duration) -> bool,
    hint: &'static str,
) -> Result<Duration, WebConfigError> {
    parse_duration(v)
        .filter(ok)
        .ok_or_else(|| WebConfigError::Invalid {
            key,
            value: v.to_string(),
            hint,
        })
}

impl WebConfig {
    /// Defaults for a given bind address and secret (auth on).
    pub fn new(bind: SocketAddr, jwt_secret: Secret<String>) -> Self {
        Self {
            auth_enabled: true,
            jwt_secret,
            jwt_expiry: Duration::from_secs(24 * 3600),
            bind,
            allowed_ips: IpAllowlist::default(),
            trusted_proxies: Vec::new(),
            rate_per_sec: NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN),
            rate_burst: NonZeroU32::new(60).unwrap_or(NonZeroU32::MIN),
            login: LoginLimits::default(),
            max_body_bytes: 16 * 1024,
            live_interval: Duration::from_secs(1),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections_per_ip: 32,
            max_connections: 1024,
        }
    }

    /// The HTTPS listener's connection limits.
    pub fn conn_limits(&self) -> crate::api::ConnLimits {
        crate::api::ConnLimits {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_per_ip: self.max_connections_per_ip,
            max_total: self.max_connections,
            exempt: self.trusted_proxies.clone(),
        }
    }

    /// Reads every key through `get` (environment or `.env` lookup), then [`WebConfig::validate`]s.
    pub fn from_lookup(
        bind: SocketAddr,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, WebConfigError> {
        let mut c = Self::new(bind, Secret::new(get("JWT_SECRET").unwrap_or_default()));
        if let Some(v) = get("AUTH_ENABLED") {
            c.auth_enabled = bool_of("AUTH_ENABLED", &v)?;
        }
        if let Some(v) = get("JWT_EXPIRY") {
            c.jwt_expiry = duration_of(
                "JWT_EXPIRY",
                &v,
                |d| *d >= Duration::from_secs(60) && *d <= Duration::from_secs(30 * 86_400),
                "use a duration between 1m and 30d such as 24h, 30m or 3600s",
            )?;
        }
        if let Some(v) = get("DASHBOARD_ALLOWED_IPS") {
            c.allowed_ips = IpAllowlist::parse(&v)?;
        }
        if let Some(v) = get("TRUSTED_PROXIES") {
            c.trusted_proxies = parse_cidrs("TRUSTED_PROXIES", &v)?;
        }
        if let Some(v) = get("API_RATE_LIMIT_PER_SEC") {
            c.rate_per_sec = nonzero("API_RATE_LIMIT_PER_SEC", &v)?;
        }
        if let Some(v) = get("API_RATE_LIMIT_BURST") {
            c.rate_burst = nonzero("API_RATE_LIMIT_BURST", &v)?;
        }
        if let Some(v) = get("LOGIN_MAX_FAILURES") {
            c.login.max_per_account = nonzero("LOGIN_MAX_FAILURES", &v)?.get();
        }
        if let Some(v) = get("LOGIN_MAX_FAILURES_PER_IP") {
            c.login.max_per_ip = nonzero("LOGIN_MAX_FAILURES_PER_IP", &v)?.get();
        }
        if let Some(v) = get("LOGIN_LOCKOUT") {
            c.login.base_lockout = duration_of(
                "LOGIN_LOCKOUT",
                &v,
                |d| !d.is_zero(),
                "use a duration such as 30s or 5m",
            )?;
        }
        if let Some(v) = get("API_MAX_BODY_BYTES") {
            c.max_body_bytes = v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1024..=16 * 1024 * 1024).contains(n))
                .ok_or(WebConfigError::Invalid {
                    key: "API_MAX_BODY_BYTES",
                    value: v.clone(),
                    hint: "use a byte count between 1024 and 16777216",
                })?;
        }
        if let Some(v) = get("API_HEADER_READ_TIMEOUT") {
            c.header_read_timeout = duration_of(
                "API_HEADER_READ_TIMEOUT",
                &v,
                |d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(300),
                "use a duration between 1s and 5m such as 10s",
            )?;
        }
        if let Some(v) = get("API_IDLE_TIMEOUT") {
            c.idle_timeout = duration_of(
                "API_IDLE_TIMEOUT",
                &v,
                |d| *d >= Duration::from_secs(20) && *d <= Duration::from_secs(3600),
                "use a duration between 20s and 1h such as 60s (the live stream writes every 15s)",
            )?;
        }
        if let Some(v) = get("API_MAX_CONNECTIONS_PER_IP") {
            c.max_connections_per_ip = count_of(
                "API_MAX_CONNECTIONS_PER_IP",
                &v,
                100_000,
                "use a whole number between 1 and 100000",
            )?;
        }
        if let Some(v) = get("API_MAX_CONNECTIONS") {
            c.max_connections = count_of(
                "API_MAX_CONNECTIONS",
                &v,
                1_000_000,
                "use a whole number between 1 and 1000000",
            )?;
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks the combination: a strong secret when auth is on; auth off only on loopback.
    pub fn validate(&self) -> Result<(), WebConfigError> {
        if self.max_connections_per_ip > self.max_connections {
            return Err(WebConfigError::ConnCaps {
                per_ip: self.max_connections_per_ip,
                total: self.max_connections,
            });
        }
        if self.auth_enabled {
            validate_jwt_secret(&self.jwt_secret)?;
        } else if !self.bind.ip().is_loopback() {
            return Err(WebConfigError::AuthOffNotLoopback(self.bind.ip()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(bind: &str, kv: &[(&str, &str)]) -> Result<WebConfig, WebConfigError> {
        let m: HashMap<String, String> = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        WebConfig::from_lookup(bind.parse().unwrap(), |k| m.get(k).cloned())
    }

    #[test]
    fn auth_off_only_on_loopback() {
        assert!(cfg("127.0.0.1:8090", &[("AUTH_ENABLED", "false")]).is_ok());
        assert_eq!(
            cfg("0.0.0.0:8090", &[("AUTH_ENABLED", "false")]).unwrap_err(),
            WebConfigError::AuthOffNotLoopback("0.0.0.0".parse().unwrap())
        );
        assert_eq!(
            cfg("127.0.0.1:8090", &[]).unwrap_err(),
            WebConfigError::Secret(SecretProblem::Missing)
        );
    }

    #[test]
    fn parses_keys() {
        let c = cfg(
            "127.0.0.1:8090",
            &[
                ("JWT_SECRET", "q8Vd0pX3LmZr7TnY2sKw9bHc4JfG6aUe1Q"),
                ("JWT_EXPIRY", "30m"),
                ("DASHBOARD_ALLOWED_IPS", "10.0.0.0/8"),
            ],
        )
        .unwrap();
        assert_eq!(c.jwt_expiry, Duration::from_secs(1800));
        assert!(!c.allowed_ips.allows("11.0.0.1".parse().unwrap()));
        assert!(matches!(
            cfg(
                "127.0.0.1:8090",
                &[
                    ("JWT_SECRET", "q8Vd0pX3LmZr7TnY2sKw9bHc4JfG6aUe1Q"),
                    ("JWT_EXPIRY", "soon")
                ]
            ),
            Err(WebConfigError::Invalid {
                key: "JWT_EXPIRY",
                ..
            })
        ));
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86_400)));
        // Connection limits (issue 15.2): safe defaults, ranges, and a cross-check with a clear message.
        let secret = ("JWT_SECRET", "q8Vd0pX3LmZr7TnY2sKw9bHc4JfG6aUe1Q");
        let d = cfg("127.0.0.1:8090", &[secret]).unwrap();
        assert_eq!(
            (
                d.header_read_timeout,
                d.idle_timeout,
                d.max_connections_per_ip,
                d.max_connections
            ),
            (Duration::from_secs(10), Duration::from_secs(60), 32, 1024)
        );
        let c = cfg(
            "127.0.0.1:8090",
            &[
                secret,
                ("API_HEADER_READ_TIMEOUT", "5s"),
                ("API_IDLE_TIMEOUT", "2m"),
                ("API_MAX_CONNECTIONS_PER_IP", "8"),
                ("API_MAX_CONNECTIONS", "100"),
            ],
        )
        .unwrap();
        let l = c.conn_limits();
        assert_eq!(
            (
                l.header_read_timeout,
                l.idle_timeout,
                l.max_per_ip,
                l.max_total
            ),
            (Duration::from_secs(5), Duration::from_secs(120), 8, 100)
        );
        for (k, v) in [
            ("API_HEADER_READ_TIMEOUT", "0s"),
            ("API_HEADER_READ_TIMEOUT", "10m"),
            ("API_IDLE_TIMEOUT", "5s"),
            ("API_MAX_CONNECTIONS_PER_IP", "0"),
            ("API_MAX_CONNECTIONS", "many"),
        ] {
            let e = cfg("127.0.0.1:8090", &[secret, (k, v)]).unwrap_err();
            assert!(
                matches!(e, WebConfigError::Invalid { key, .. } if key == k),
                "{k}={v}: {e}"
            );
            assert!(e.to_string().contains(k), "{e}");
        }
        let e = cfg(
            "127.0.0.1:8090",
            &[
                secret,
                ("API_MAX_CONNECTIONS_PER_IP", "50"),
                ("API_MAX_CONNECTIONS", "10"),
            ],
        )
        .unwrap_err();
        assert_eq!(
            e,
            WebConfigError::ConnCaps {
                per_ip: 50,
                total: 10
            }
        );
        assert!(e.to_string().contains("raise API_MAX_CONNECTIONS"), "{e}");
        assert_eq!(parse_duration("3600"), Some(Duration::from_secs(3600)));
    }
}
