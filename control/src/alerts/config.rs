//! `ALERT_*` configuration. Channel URLs and the Telegram token are secrets (webhook URLs carry their token in the
//! path), so they live in [`Secret`] and are never echoed in an error.

use aegis_shared::config::{parse_bool, ConfigError};
use aegis_shared::{Secret, TradingMode};
use std::time::Duration;

/// The configuration keys.
pub mod keys {
    /// Generic JSON webhook URL (secret).
    pub const ALERT_WEBHOOK_URL: &str = "ALERT_WEBHOOK_URL";
    /// Telegram bot token (secret).
    pub const ALERT_TELEGRAM_BOT_TOKEN: &str = "ALERT_TELEGRAM_BOT_TOKEN";
    /// Telegram chat id.
    pub const ALERT_TELEGRAM_CHAT_ID: &str = "ALERT_TELEGRAM_CHAT_ID";
    /// Telegram Bot API base URL (default `https://api.telegram.org`).
    pub const ALERT_TELEGRAM_API_BASE: &str = "ALERT_TELEGRAM_API_BASE";
    /// Discord webhook URL (secret).
    pub const ALERT_DISCORD_WEBHOOK_URL: &str = "ALERT_DISCORD_WEBHOOK_URL";
    /// Slack incoming-webhook URL (secret).
    pub const ALERT_SLACK_WEBHOOK_URL: &str = "ALERT_SLACK_WEBHOOK_URL";
    /// Seconds during which a repeat of the same alert (kind + subject) is suppressed (default 300).
    pub const ALERT_DEDUP_SECONDS: &str = "ALERT_DEDUP_SECONDS";
    /// Alerts per minute at most, across all kinds (default 20).
    pub const ALERT_MAX_PER_MINUTE: &str = "ALERT_MAX_PER_MINUTE";
    /// Allow `http://` channel URLs to non-loopback hosts (default false; loopback http is always allowed).
    pub const ALERT_ALLOW_HTTP: &str = "ALERT_ALLOW_HTTP";

    /// Every key.
    pub const ALL: &[&str] = &[
        ALERT_WEBHOOK_URL,
        ALERT_TELEGRAM_BOT_TOKEN,
        ALERT_TELEGRAM_CHAT_ID,
        ALERT_TELEGRAM_API_BASE,
        ALERT_DISCORD_WEBHOOK_URL,
        ALERT_SLACK_WEBHOOK_URL,
        ALERT_DEDUP_SECONDS,
        ALERT_MAX_PER_MINUTE,
        ALERT_ALLOW_HTTP,
    ];
    /// Keys whose values are secrets.
    pub const SECRETS: &[&str] = &[
        ALERT_WEBHOOK_URL,
        ALERT_TELEGRAM_BOT_TOKEN,
        ALERT_DISCORD_WEBHOOK_URL,
        ALERT_SLACK_WEBHOOK_URL,
    ];
}

/// Default Telegram Bot API base.
pub const TELEGRAM_API_BASE: &str = "https://api.telegram.org";

/// A configured delivery channel.
#[derive(Debug, Clone)]
pub enum Channel {
    /// Generic JSON webhook.
    Webhook {
        /// Target URL.
        url: Secret<String>,
    },
    /// Telegram `sendMessage`.
    Telegram {
        /// API base (no trailing slash).
        api_base: String,
        /// Bot token.
        token: Secret<String>,
        /// Chat id (numeric or `@channel`).
        chat_id: String,
    },
    /// Discord webhook (`content`).
    Discord {
        /// Webhook URL.
        url: Secret<String>,
    },
    /// Slack incoming webhook (`text`).
    Slack {
        /// Webhook URL.
        url: Secret<String>,
    },
}

impl Channel {
    /// Short name for logs and stats (never the URL).
    pub fn name(&self) -> &'static str {
        match self {
            Channel::Webhook { .. } => "webhook",
            Channel::Telegram { .. } => "telegram",
            Channel::Discord { .. } => "discord",
            Channel::Slack { .. } => "slack",
        }
    }

    /// The URL to POST to. Contains secrets: never log or store what this returns.
    pub(crate) fn target(&self) -> String {
        match self {
            Channel::Webhook { url } | Channel::Discord { url } | Channel::Slack { url } => {
                url.expose().clone()
            }
            Channel::Telegram {
                api_base, token, ..
            } => format!("{api_base}/bot{}/sendMessage", token.expose()),
        }
    }
}

/// Alert settings.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// Configured channels (may be empty: alerts are then only counted and logged by kind).
    pub channels: Vec<Channel>,
    /// Repeat suppression window (`ALERT_DEDUP_SECONDS`).
    pub dedup_window: Duration,
    /// Rate limit (`ALERT_MAX_PER_MINUTE`); 0 = unlimited.
    pub max_per_minute: u32,
    /// Shown in every alert so it is clear which bot speaks (and whether real money is involved).
    pub environment: TradingMode,
    /// Host label shown in alerts (letters, digits, `.-_` only).
    pub instance: String,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            channels: Vec::new(),
            dedup_window: Duration::from_secs(300),
            max_per_minute: 20,
            environment: TradingMode::Paper,
            instance: sanitize_label(&hostname()),
        }
    }
}

impl AlertConfig {
    /// Reads the `ALERT_*` keys through `get` (empty values count as unset).
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        environment: TradingMode,
    ) -> Result<AlertConfig, ConfigError> {
        use keys::*;
        let get = |k: &str| {
            get(k).and_then(|v| {
                let t = v.trim().to_string();
                (!t.is_empty()).then_some(t)
            })
        };
        let allow_http = match get(ALERT_ALLOW_HTTP) {
            None => false,
            Some(v) => parse_bool(&v)
                .ok_or_else(|| ConfigError::new(ALERT_ALLOW_HTTP, Some(&v), "use true or false"))?,
        };
        let url = |k: &str| {
            get(k)
                .map(|u| check_url(k, &u, allow_http).map(|()| Secret::new(u)))
                .transpose()
        };
        let mut channels = Vec::new();
        if let Some(url) = url(ALERT_WEBHOOK_URL)? {
            channels.push(Channel::Webhook { url });
        }
        match (get(ALERT_TELEGRAM_BOT_TOKEN), get(ALERT_TELEGRAM_CHAT_ID)) {
            (None, None) => {}
            (Some(token), Some(chat_id)) => {
                // The token becomes part of a URL path: refuse anything that could change the URL's meaning.
                if !token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'-')
                {
                    return Err(ConfigError::new(
                        ALERT_TELEGRAM_BOT_TOKEN,
                        None,
                        "use the token exactly as @BotFather gave it (digits, a colon, letters, - and _)",
                    ));
                }
                if !(chat_id.starts_with('@') || chat_id.parse::<i64>().is_ok()) {
                    return Err(ConfigError::new(
                        ALERT_TELEGRAM_CHAT_ID,
                        Some(&chat_id),
                        "use a numeric chat id (e.g. -1001234567890) or @channelname",
                    ));
                }
                let api_base = get(ALERT_TELEGRAM_API_BASE)
                    .unwrap_or_else(|| TELEGRAM_API_BASE.to_string())
                    .trim_end_matches('/')
                    .to_string();
                check_url(ALERT_TELEGRAM_API_BASE, &api_base, allow_http)?;
                channels.push(Channel::Telegram {
                    api_base,
                    token: Secret::new(token),
                    chat_id,
                });
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    ALERT_TELEGRAM_CHAT_ID,
                    None,
                    "ALERT_TELEGRAM_BOT_TOKEN is set: also set the chat id the bot should post to",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    ALERT_TELEGRAM_BOT_TOKEN,
                    None,
                    "ALERT_TELEGRAM_CHAT_ID is set: also set the bot token from @BotFather",
                ))
            }
        }
        if let Some(url) = url(ALERT_DISCORD_WEBHOOK_URL)? {
            channels.push(Channel::Discord { url });
        }
        if let Some(url) = url(ALERT_SLACK_WEBHOOK_URL)? {
            channels.push(Channel::Slack { url });
        }
        let dedup_secs: u64 = at_most(
            ALERT_DEDUP_SECONDS,
            get(ALERT_DEDUP_SECONDS),
            300,
            86_400,
            "use whole seconds from 0 (off) to 86400, e.g. 300",
        )?;
        let max_per_minute: u32 = at_most(
            ALERT_MAX_PER_MINUTE,
            get(ALERT_MAX_PER_MINUTE),
            20,
            10_000,
            "use a whole number from 0 (unlimited) to 10000, e.g. 20",
        )?;
        Ok(AlertConfig {
            channels,
            dedup_window: Duration::from_secs(dedup_secs),
            max_per_minute,
            environment,
            instance: sanitize_label(&hostname()),
        })
    }
}

/// A whole number from 0 to `max`; `default` when unset.
fn at_most<T: std::str::FromStr + PartialOrd>(
    key: &str,
    value: Option<String>,
    default: T,
    max: T,
    hint: &str,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => v
            .parse::<T>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| ConfigError::new(key, Some(&v), hint)),
    }
}

/// `https://` anywhere; `http://` only to loopback unless explicitly allowed. The value is never echoed (secret).
fn check_url(key: &str, url: &str, allow_http: bool) -> Result<(), ConfigError> {
    let secret = keys::SECRETS.contains(&key);
    let shown = if secret { None } else { Some(url) };
    let parsed = reqwest::Url::parse(url).map_err(|_| {
        ConfigError::new(
            key,
            shown,
            "use a full URL such as https://hooks.example.com/...",
        )
    })?;
    let loopback = matches!(
        parsed.host_str(),
        Some("127.0.0.1") | Some("localhost") | Some("[::1]")
    );
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback || allow_http => Ok(()),
        _ => Err(ConfigError::new(
            key,
            shown,
            "use an https:// URL (alerts carry account events; http is only accepted for 127.0.0.1/localhost or with ALERT_ALLOW_HTTP=true)",
        )),
    }
}

/// Keeps `[A-Za-z0-9._-]`, at most 64 characters.
pub(crate) fn sanitize_label(s: &str) -> String {
    let out: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(64)
        .collect();
    if out.is_empty() {
        "aegis".to_string()
    } else {
        out
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success (we also cap the length).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
