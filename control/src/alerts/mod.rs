//! Alerts (security guide §6.2): what went wrong, told to a person through a webhook, Telegram, Discord or Slack.
//!
//! - [`Alert`] is built from typed fields only (kinds, symbols, breaker scopes, amounts, counts): there is no
//!   free-text field, so no error string, URL or configuration value — and therefore no secret — can end up in a
//!   message. The channel texts are rendered from those fields in [`format`].
//! - [`AlertDispatcher`] is the sending side handed to the rest of the control plane. [`AlertDispatcher::send`]
//!   never blocks and never awaits: it puts the alert on a bounded queue and returns; when the queue is full the
//!   alert is counted as dropped. A tokio task drains the queue, suppresses duplicates (same kind and subject
//!   within `ALERT_DEDUP_SECONDS`), applies a token-bucket rate limit (`ALERT_MAX_PER_MINUTE`) and delivers to every
//!   configured channel with retries and exponential backoff.
//! - [`AlertConfig`] reads the `ALERT_*` keys; the channel URLs and the Telegram token are [`Secret`]s.
//!
//! [`Secret`]: aegis_shared::Secret

mod config;
mod dispatch;
pub mod format;

#[cfg(test)]
mod tests;

pub use config::{keys, AlertConfig, Channel};
pub use dispatch::{AlertDispatcher, AlertStats, DispatchError, Tuning};

use aegis_shared::event::{
    AlertKind, BreakerChange, BreakerScope, EngineEvent, EngineState, TimestampMs, TripReason,
};
use aegis_shared::{Notional, Symbol};
use serde::Serialize;

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Good news or a state that ended (recovered, resumed).
    Info,
    /// Needs a look soon.
    Warning,
    /// Needs a person now.
    Critical,
}

impl Severity {
    /// Upper-case label for texts.
    pub fn label(self) -> &'static str {
        match self {
            Self::Info => "INFO",
            Self::Warning => "WARNING",
            Self::Critical => "CRITICAL",
        }
    }
}

/// Alerts raised by the control plane itself (the engine's own are [`AlertKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlAlert {
    /// The engine stopped sending heartbeats, or the engine thread ended unexpectedly.
    EngineStopped,
    /// The bot is shutting down or restarting after a crash (sent on the way down / on the next start).
    BotCrashed,
    /// The Postgres connection was lost; the journal keeps everything meanwhile.
    DatabaseLost,
    /// The Postgres connection is back and the writer is catching up.
    DatabaseRestored,
    /// Exchange errors per minute above the threshold.
    ExchangeErrorRate,
    /// Order rate or position size far above normal.
    UnusualActivity,
    /// A circuit breaker tripped: no new entries until the cooldown ends.
    BreakerTrip,
    /// A tripped breaker resumed (cooldown over) or was reset by an operator.
    BreakerResumed,
    /// The configured key changed (rotation) — expected after `aegis keys rotate`, alarming otherwise.
    KeyChanged,
    /// This bot lost (or cannot renew) its API key's fleet lease: another bot may trade the same key; new
    /// entries are halted until the lease is ours again.
    FleetLeaseLost,
    /// The Postgres writer met a fill whose key `(symbol, trade_id, split_part)` is already stored with different
    /// contents; the new one is kept in `fill_conflicts`, never dropped silently.
    FillConflict,
}

/// What an alert is about: an engine alert or a control-plane alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Raised by the engine (`EngineEvent::Alert`).
    Engine(AlertKind),
    /// Raised by the control plane.
    Control(ControlAlert),
}

impl Kind {
    /// Every kind, for exhaustive tests and documentation.
    pub const ALL: [Kind; 22] = [
        Kind::Engine(AlertKind::KeyInvalid),
        Kind::Engine(AlertKind::KeyRestrictionsChanged),
        Kind::Engine(AlertKind::DailyLossLimit),
        Kind::Engine(AlertKind::ReconcileMismatch),
        Kind::Engine(AlertKind::FeedStale),
        Kind::Engine(AlertKind::ExchangeErrors),
        Kind::Engine(AlertKind::KillSwitch),
        Kind::Engine(AlertKind::Liquidation),
        Kind::Engine(AlertKind::FeeUnconverted),
        Kind::Engine(AlertKind::ProtectiveStopFailed),
        Kind::Engine(AlertKind::SoldOutsideBot),
        Kind::Control(ControlAlert::EngineStopped),
        Kind::Control(ControlAlert::BotCrashed),
        Kind::Control(ControlAlert::DatabaseLost),
        Kind::Control(ControlAlert::DatabaseRestored),
        Kind::Control(ControlAlert::ExchangeErrorRate),
        Kind::Control(ControlAlert::UnusualActivity),
        Kind::Control(ControlAlert::BreakerTrip),
        Kind::Control(ControlAlert::BreakerResumed),
        Kind::Control(ControlAlert::KeyChanged),
        Kind::Control(ControlAlert::FleetLeaseLost),
        Kind::Control(ControlAlert::FillConflict),
    ];

    /// Stable snake_case name used in the JSON webhook (`kind` field).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Engine(k) => match k {
                AlertKind::KeyInvalid => "key_invalid",
                AlertKind::KeyRestrictionsChanged => "key_restrictions_changed",
                AlertKind::DailyLossLimit => "daily_loss_limit",
                AlertKind::ReconcileMismatch => "reconcile_mismatch",
                AlertKind::FeedStale => "feed_stale",
                AlertKind::ExchangeErrors => "exchange_errors",
                AlertKind::KillSwitch => "kill_switch",
                AlertKind::Liquidation => "liquidation",
                AlertKind::FeeUnconverted => "fee_unconverted",
                AlertKind::ProtectiveStopFailed => "protective_stop_failed",
                AlertKind::SoldOutsideBot => "sold_outside_bot",
            },
            Kind::Control(k) => match k {
                ControlAlert::EngineStopped => "engine_stopped",
                ControlAlert::BotCrashed => "bot_crashed",
                ControlAlert::DatabaseLost => "database_lost",
                ControlAlert::DatabaseRestored => "database_restored",
                ControlAlert::ExchangeErrorRate => "exchange_error_rate",
                ControlAlert::UnusualActivity => "unusual_activity",
                ControlAlert::BreakerTrip => "breaker_trip",
                ControlAlert::BreakerResumed => "breaker_resumed",
                ControlAlert::KeyChanged => "key_changed",
                ControlAlert::FleetLeaseLost => "fleet_lease_lost",
                ControlAlert::FillConflict => "fill_conflict",
            },
        }
    }

    /// The severity an alert of this kind gets unless the caller overrides it.
    pub fn default_severity(self) -> Severity {
        match self {
            Kind::Engine(k) => match k {
                AlertKind::KeyInvalid
                | AlertKind::KeyRestrictionsChanged
                | AlertKind::ReconcileMismatch
                | AlertKind::KillSwitch
                | AlertKind::Liquidation
                | AlertKind::ProtectiveStopFailed => Severity::Critical,
                AlertKind::DailyLossLimit
                | AlertKind::FeedStale
                | AlertKind::ExchangeErrors
                | AlertKind::FeeUnconverted
                | AlertKind::SoldOutsideBot => Severity::Warning,
            },
            Kind::Control(k) => match k {
                ControlAlert::EngineStopped
                | ControlAlert::BotCrashed
                | ControlAlert::UnusualActivity
                | ControlAlert::FleetLeaseLost
                | ControlAlert::FillConflict => Severity::Critical,
                ControlAlert::DatabaseLost
                | ControlAlert::ExchangeErrorRate
                | ControlAlert::BreakerTrip
                | ControlAlert::KeyChanged => Severity::Warning,
                ControlAlert::DatabaseRestored | ControlAlert::BreakerResumed => Severity::Info,
            },
        }
    }

    /// One-line human title.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Engine(k) => match k {
                // Binance answers -2014/-2015 alike for a wrong, revoked or IP-restricted key, so one kind covers them.
                AlertKind::KeyInvalid => {
                    "Exchange refused the API key (invalid, revoked or IP not whitelisted)"
                }
                AlertKind::KeyRestrictionsChanged => "API key restrictions changed",
                AlertKind::DailyLossLimit => "Daily loss limit reached",
                AlertKind::ReconcileMismatch => "Local and exchange state disagree",
                AlertKind::FeedStale => "Market data feed is stale",
                AlertKind::ExchangeErrors => "Exchange errors above normal",
                AlertKind::KillSwitch => "Kill switch fired",
                AlertKind::Liquidation => "Position liquidated or auto-deleveraged by Binance",
                AlertKind::FeeUnconverted => "A fee could not be priced in the quote asset",
                AlertKind::ProtectiveStopFailed => {
                    "An open position has no protective stop on the exchange"
                }
                AlertKind::SoldOutsideBot => "A spot holding was sold or moved outside the bot",
            },
            Kind::Control(k) => match k {
                ControlAlert::EngineStopped => "Trading engine stopped",
                ControlAlert::BotCrashed => "Bot crashed or restarted",
                ControlAlert::DatabaseLost => "Database connection lost",
                ControlAlert::DatabaseRestored => "Database connection restored",
                ControlAlert::ExchangeErrorRate => "Exchange error rate up",
                ControlAlert::UnusualActivity => "Unusual trading activity",
                ControlAlert::BreakerTrip => "Circuit breaker tripped",
                ControlAlert::BreakerResumed => "Circuit breaker resumed",
                ControlAlert::KeyChanged => "API key changed",
                ControlAlert::FleetLeaseLost => "Fleet lease of the API key lost",
                ControlAlert::FillConflict => "Two different fills share one trade id",
            },
        }
    }

    /// What the operator should do, one line.
    pub fn action(self) -> &'static str {
        match self {
            Kind::Engine(k) => match k {
                AlertKind::KeyInvalid => "new orders are halted and open orders cannot be cancelled with this key: cancel them on Binance, then check the key and its IP whitelist (guide §1.3)",
                AlertKind::KeyRestrictionsChanged => "new orders are halted; make sure withdrawals are OFF and the IP restriction is ON (guide §1.2)",
                AlertKind::DailyLossLimit => "no new entries until the next UTC day; review the day's trades",
                AlertKind::ReconcileMismatch => "nothing new opens until both sides agree; compare positions on Binance",
                AlertKind::FeedStale => "entries are blocked for stale symbols; check connectivity",
                AlertKind::ExchangeErrors => "check exchange status and the bot's error log",
                AlertKind::KillSwitch => "trading is stopped; run `aegis incident-report --since 1h` (guide §7)",
                AlertKind::Liquidation => "the position is closed at the liquidation price and its loss is booked; lower leverage or size before trading on (dashboard: Liquidations)",
                AlertKind::FeeUnconverted => "the fee is kept per asset but left out of PnL and the loss limits; check that BNBUSDT premiumIndex is reachable",
                AlertKind::ProtectiveStopFailed => "the bot retries with backoff; until it succeeds only the software exits protect the position, which stop if the bot dies: check /api/health (protective_stops) and the log, or place a stop on Binance by hand (docs/EXCHANGE_STOPS.md)",
                AlertKind::SoldOutsideBot => "the account holds less of the base asset than the bot's position: the bot now trades only what is held; if that was not you, check the account's history on Binance and rotate the key (`aegis keys rotate`)",
            },
            Kind::Control(k) => match k {
                ControlAlert::EngineStopped => "check `systemctl status aegis` / `docker compose ps` and the log (guide §7.2)",
                ControlAlert::BotCrashed => "check the log for the cause; the journal restores state on restart",
                ControlAlert::DatabaseLost => "trading continues on the journal; restore Postgres, the writer catches up",
                ControlAlert::DatabaseRestored => "no action needed",
                ControlAlert::ExchangeErrorRate => "check exchange status, rate limits and the key",
                ControlAlert::UnusualActivity => "verify the orders are yours; if not, `aegis kill` and disable the key (guide §7.1)",
                ControlAlert::BreakerTrip => "new entries are paused until the cooldown ends; open positions keep their exits",
                ControlAlert::BreakerResumed => "no action needed",
                ControlAlert::KeyChanged => "if you did not rotate the key, treat it as compromised (guide §7.1)",
                ControlAlert::FleetLeaseLost => "new entries are halted; run `aegis fleet status`: two bots must never trade one key (guide §1.1)",
                ControlAlert::FillConflict => "the tax records disagree with the journal: compare `SELECT * FROM fill_conflicts` with `fills` and run `aegis reconcile --pnl`",
            },
        }
    }
}

// By name: names are unique per kind (tested), so this agrees with `Eq`; `AlertKind` itself has no `Hash`.
impl std::hash::Hash for Kind {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Which unusual activity was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// Orders per minute.
    OrderRate,
    /// Position size in USD.
    PositionSize,
}

/// Typed details of an alert. Every text a channel shows is rendered from these.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Details {
    /// Nothing beyond the kind.
    None,
    /// A breaker changed state.
    Breaker {
        /// Which breaker.
        scope: BreakerScope,
        /// Why it tripped (absent for a resume).
        reason: Option<TripReason>,
        /// When it resumes by itself (ms since epoch), for a trip.
        until_ms: Option<TimestampMs>,
    },
    /// The daily loss limit.
    DailyLoss {
        /// Realized loss today (USD).
        loss: Notional,
        /// The configured limit (USD).
        limit: Notional,
    },
    /// An error-rate threshold was crossed.
    ErrorRate {
        /// Errors in the window.
        errors: u32,
        /// Window length in seconds.
        window_secs: u32,
        /// The threshold that was crossed.
        threshold: u32,
    },
    /// Activity far above normal.
    Activity {
        /// What was measured.
        what: Activity,
        /// Observed value.
        observed: u64,
        /// The normal level it was compared with.
        normal: u64,
    },
    /// The engine's heartbeat went silent.
    Heartbeat {
        /// Age of the last heartbeat in ms.
        age_ms: u64,
    },
}

/// What an alert is about, beyond its kind: de-duplication is per (kind, subject).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum Subject {
    /// The whole bot.
    Bot,
    /// One symbol.
    Symbol(Symbol),
    /// One breaker.
    Breaker(BreakerScope),
}

/// One alert. Only typed fields: see the module docs for why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alert {
    /// When it happened (ms since epoch).
    pub ts_ms: TimestampMs,
    /// What.
    pub kind: Kind,
    /// How urgent.
    pub severity: Severity,
    /// About what (de-duplication key together with `kind`).
    pub subject: Subject,
    /// Numbers and states that explain it.
    pub details: Details,
}

impl Alert {
    /// An alert of `kind` about the whole bot, with the kind's default severity and no details.
    pub fn new(kind: Kind, ts_ms: TimestampMs) -> Self {
        Self {
            ts_ms,
            kind,
            severity: kind.default_severity(),
            subject: Subject::Bot,
            details: Details::None,
        }
    }

    /// Sets the subject.
    pub fn about(mut self, subject: Subject) -> Self {
        self.subject = subject;
        self
    }

    /// Sets the details.
    pub fn with(mut self, details: Details) -> Self {
        self.details = details;
        self
    }

    /// Overrides the severity.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// The alert an engine event calls for, if any: engine alerts, breaker trips and resumes (a daily-loss trip
    /// becomes [`AlertKind::DailyLossLimit`]), and the engine stopping outside a shutdown.
    pub fn from_engine_event(ev: &EngineEvent) -> Option<Alert> {
        match *ev {
            EngineEvent::Alert { ts_ms, kind } => Some(Alert::new(Kind::Engine(kind), ts_ms)),
            EngineEvent::Breaker(b) => {
                let (kind, reason, until_ms) = match b.change {
                    BreakerChange::Tripped {
                        reason: TripReason::DailyLoss,
                        until_ms,
                    } => (
                        Kind::Engine(AlertKind::DailyLossLimit),
                        Some(TripReason::DailyLoss),
                        Some(until_ms),
                    ),
                    BreakerChange::Tripped { reason, until_ms } => (
                        Kind::Control(ControlAlert::BreakerTrip),
                        Some(reason),
                        Some(until_ms),
                    ),
                    BreakerChange::Resumed | BreakerChange::Reset => {
                        (Kind::Control(ControlAlert::BreakerResumed), None, None)
                    }
                };
                Some(
                    Alert::new(kind, b.ts_ms)
                        .about(Subject::Breaker(b.scope))
                        .with(Details::Breaker {
                            scope: b.scope,
                            reason,
                            until_ms,
                        }),
                )
            }
            EngineEvent::State {
                ts_ms,
                state: EngineState::Stopped,
            } => Some(Alert::new(
                Kind::Control(ControlAlert::EngineStopped),
                ts_ms,
            )),
            _ => None,
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub use crate::journal::now_ms;
