//! The spot user data stream over the WebSocket API (`/ws-api/v3`): the spot listenKey is gone since
//! 2026-02-20, so a connection sends `userDataStream.subscribe.signature` (signed with the account's key, HMAC or
//! Ed25519, `timestamp` from the exchange clock) and receives the account's events as
//! `{"subscriptionId":N,"event":{…}}`.
//!
//! - `executionReport` → [`Inbound::Update`] ([`parse_execution_report`]): the client id is `c`, except on the
//!   `CANCELED`/`EXPIRED` report of a cancel request, where `c` is the cancel's own id and `C` the order's.
//!   Fees: in the pair's quote asset as they are; in the base asset (a buy's default) valued at the fill price,
//!   exactly as the paper spot venue values them ([`FeeConversion::Converted`] at `L`); in any other asset (BNB)
//!   by the [`SpotFeePricer`] ([`FeeConversion::Unconvertible`] when it has no price).
//! - `outboundAccountPosition` (absolute free/locked of the assets that changed) and `balanceUpdate` (a deposit,
//!   withdrawal or transfer: a delta of free) → [`Balances`].
//! - `listStatus` is ignored (our orders are single orders; their legs' `executionReport`s carry everything).
//! - `eventStreamTerminated` (the subscription ended; the connection stays) → subscribe again on the same
//!   connection, then `on_resync("stream terminated")`: whatever happened in between was not heard, so the
//!   reconciliation compares with the exchange again. `serverShutdown`, a close, a socket error or
//!   [`SILENCE_LIMIT`] without a frame → reconnect with backoff, subscribe, `on_resync("reconnected")`.
//! - The key refused later (-2015/-2014/-1022 on a resubscribe) → the engine halts and goes read-only, as on
//!   futures; the thread ends.
//!
//! Runs on its own thread (`aegis-spot-user`), blocking reads with a [`READ_TIMEOUT`] so [`SpotUserStream::stop`]
//! is prompt; never on the engine thread. [`start`] returns once the first subscription is confirmed. Nothing
//! here logs or returns the key or a signature.

use crate::exchange::rest::status;
use crate::exchange::user_stream::{num, s};
use aegis_engine::net::ws;
use aegis_engine::sign::{ws_api, ApiKey, SignError, Signer, WsAuth, WsParam, WsValue};
use aegis_engine::venue::binance::entry::VenueClock;
use aegis_engine::venue::binance::{Inbound, OrderUpdate};
use aegis_shared::event::{AlertKind, FeeConversion, HaltReason, OrderType};
use aegis_shared::{ClientOrderId, Notional, Price, Qty, Side, Symbol};
use crossbeam_channel::Sender;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::Message;

/// How long [`start`] keeps trying to connect and subscribe before it gives up.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The limit of one connection attempt (TCP, TLS, handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a `userDataStream.subscribe.signature` may wait for its answer.
pub const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The socket's read timeout: the longest [`SpotUserStream::stop`] waits for a read to return.
pub const READ_TIMEOUT: Duration = Duration::from_millis(250);
/// A ping of ours this often keeps the connection's silence detectable (Binance answers every ping).
pub const PING_EVERY: Duration = Duration::from_secs(30);
/// No frame at all (events, pings, pongs) for this long: the connection is taken as dead and replaced.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(90);
/// The longest wait between two reconnect attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Values a fee paid in an asset that is neither of the pair's (BNB with "pay fees with BNB").
pub trait SpotFeePricer: Send + Sync {
    /// The value of `amount` of `asset` in the pair's quote asset `quote` at fill time
    /// ([`FeeConversion::Converted`]), or [`FeeConversion::Unconvertible`] when no price can be had.
    fn price_fee(&self, asset: &str, amount: Notional, quote: &str) -> FeeConversion;
}

/// A spot pair's assets (`BTC` and `USDT` of `BTCUSDT`), from exchangeInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotAssets {
    /// Base asset (what is bought and sold).
    pub base: String,
    /// Quote asset (what it is paid in).
    pub quote: String,
}

/// What the stream connects with. Build it with [`SpotUserStreamConfig::new`], then fill `assets` (and `tls`).
pub struct SpotUserStreamConfig {
    /// The spot WebSocket API URL (`wss://ws-api.binance.com:443/ws-api/v3`; `Endpoints::spot_wsapi`).
    pub url: String,
    /// The account's API key (sent in the request, never logged).
    pub api_key: ApiKey,
    /// Signs the subscription (HMAC or Ed25519).
    pub signer: Signer,
    /// The exchange's clock (the request's `timestamp`).
    pub clock: Arc<dyn VenueClock>,
    /// Values fees paid in a third asset (BNB).
    pub pricer: Arc<dyn SpotFeePricer>,
    /// Called (on the stream's thread) after every resubscribe or reconnect, with why: events may have been
    /// missed, so the reconciliation should run again. Must not block for long.
    pub on_resync: Arc<dyn Fn(&str) + Send + Sync>,
    /// Base and quote asset per traded symbol (fee classification). A symbol not listed falls back to
    /// [`Symbol::base_asset`] / [`Symbol::quote_asset`].
    pub assets: BTreeMap<Symbol, SpotAssets>,
    /// TLS settings for `wss://` (`None`: the process's roots, `aegis_engine::net::ws::tls_config`, which
    /// `BINANCE_EXTRA_CA_FILE` extends). Unused for `ws://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl SpotUserStreamConfig {
    /// A config without symbols' assets and with the process's TLS roots.
    pub fn new(
        url: impl Into<String>,
        api_key: ApiKey,
        signer: Signer,
        clock: Arc<dyn VenueClock>,
        pricer: Arc<dyn SpotFeePricer>,
        on_resync: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> Self {
        Self {
            url: url.into(),
            api_key,
            signer,
            clock,
            pricer,
            on_resync,
            assets: BTreeMap::new(),
            tls: None,
        }
    }
}

// By hand: no key material, and the callbacks have no Debug.
impl std::fmt::Debug for SpotUserStreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpotUserStreamConfig")
            .field("url", &ws::redact(&self.url))
            .field("api_key", &self.api_key)
            .field(
                "signer",
                &match self.signer {
                    Signer::Hmac(_) => "HMAC",
                    Signer::Ed25519(_) => "Ed25519",
                },
            )
            .field("assets", &self.assets)
            .field("custom_tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Why the stream could not start (or, for the key errors, could not go on). Messages say what to fix and
/// never contain the key or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpotStreamError {
    /// -2015/-2014/HTTP 401: the key is wrong for this environment, this IP, or its permissions.
    #[error("Binance refused the API key on the spot user data stream ({code} {msg}): {fix}")]
    KeyRejected {
        /// Binance code.
        code: i32,
        /// Binance message.
        msg: String,
        /// What to do about it.
        fix: &'static str,
    },
    /// -1022: the signature does not match the key.
    #[error(
        "Binance refused the signature of the spot user data subscription ({code} {msg}): the secret \
         (BINANCE_SECRET_KEY / BINANCE_TESTNET_SECRET_KEY or the Ed25519 private key) does not belong to this \
         API key"
    )]
    BadSignature {
        /// Binance code.
        code: i32,
        /// Binance message.
        msg: String,
    },
    /// Any other refusal of the subscription (-1021 timestamp outside recvWindow, rate limits, …).
    #[error("Binance refused the spot user data subscription: {code} {msg}")]
    Refused {
        /// Binance code.
        code: i32,
        /// Binance message.
        msg: String,
    },
    /// The request could not be signed (the key's characters, the secret).
    #[error("cannot sign the spot user data subscription: {0}")]
    Sign(#[from] SignError),
    /// No connection (DNS, TCP, TLS, handshake) or it broke before the subscription was confirmed.
    #[error("cannot connect to the spot WebSocket API at {url}: {why}")]
    Connect {
        /// The URL (no secret is ever in it).
        url: String,
        /// What happened.
        why: String,
    },
    /// The subscription got no answer in time.
    #[error("no answer to userDataStream.subscribe.signature within {0:?}")]
    Timeout(Duration),
    /// The answer was not what Binance sends.
    #[error("unexpected answer from the spot WebSocket API: {0}")]
    Protocol(String),
    /// The stream's thread could not be started.
    #[error("cannot start the spot user data thread: {0}")]
    Thread(String),
}

impl SpotStreamError {
    /// True when retrying with the same key cannot help (the key or its secret is refused).
    pub fn is_key_error(&self) -> bool {
        matches!(
            self,
            Self::KeyRejected { .. } | Self::BadSignature { .. } | Self::Sign(_)
        )
    }
}

/// Counters for tests, the log and the dashboard.
#[derive(Debug, Default)]
pub struct SpotStreamStats {
    /// Connections opened (the first included).
    pub connects: AtomicU64,
    /// Subscriptions confirmed (the first included).
    pub subscribes: AtomicU64,
    /// Reconnects that ended subscribed (after a lost connection or `serverShutdown`).
    pub reconnects: AtomicU64,
    /// `eventStreamTerminated` events of our subscription.
    pub terminations: AtomicU64,
    /// Events of our subscription, of any type.
    pub events: AtomicU64,
    /// `executionReport`s forwarded to the engine.
    pub updates: AtomicU64,
    /// `outboundAccountPosition` and `balanceUpdate` events applied.
    pub balance_events: AtomicU64,
    /// Events that could not be read (each one asks for a reconciliation).
    pub malformed: AtomicU64,
    /// `on_resync` calls.
    pub resyncs: AtomicU64,
    /// The current subscription's id.
    pub subscription_id: AtomicU64,
    /// Event time (`E`) of the last event, ms.
    pub last_event_ms: AtomicU64,
}

/// One asset's balance and the account time it is as of.
#[derive(Debug, Clone, Copy, Default)]
struct Held {
    free: Notional,
    locked: Notional,
    /// Account update time (ms) the amounts are as of: an older report changes nothing.
    as_of: u64,
}

/// The spot account's balances per asset, free and locked, as the stream reports them. Thread-safe; reads
/// take a short lock.
///
/// Ordering: `outboundAccountPosition` carries absolute amounts as of its `u` (the account's update time) and
/// replaces what is older; `balanceUpdate` carries a delta of free cleared at `T` and is applied only when
/// newer than the amounts held (a position report at or after `T` already contains it). [`Balances::seed`]
/// follows the same rule with the account's `updateTime`, so a snapshot read after the stream started never
/// undoes a newer event.
#[derive(Debug, Default)]
pub struct Balances {
    assets: Mutex<BTreeMap<String, Held>>,
    updates: AtomicU64,
    last_event_ms: AtomicU64,
}

fn dec_field(v: &Value, k: &str) -> Option<Notional> {
    v.get(k)
        .and_then(Value::as_str)
        .and_then(|s| Notional::parse(s).ok())
}

impl Balances {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Held>> {
        self.assets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Free + locked of `asset` (zero when never held).
    pub fn held(&self, asset: &str) -> Notional {
        self.get(asset).map_or(Notional::ZERO, |(f, l)| f + l)
    }

    /// (free, locked) of `asset`, `None` when the account never reported it.
    pub fn get(&self, asset: &str) -> Option<(Notional, Notional)> {
        self.lock().get(asset).map(|h| (h.free, h.locked))
    }

    /// Every asset's (free, locked).
    pub fn snapshot(&self) -> BTreeMap<String, (Notional, Notional)> {
        self.lock()
            .iter()
            .map(|(a, h)| (a.clone(), (h.free, h.locked)))
            .collect()
    }

    /// Takes the balances of a `GET /api/v3/account` answer (`balances: [{asset, free, locked}]`, `updateTime`).
    /// Assets the stream reported after `updateTime` keep the stream's amounts; assets the snapshot leaves out
    /// (`omitZeroBalances`) are dropped unless the stream reported them later. Unreadable entries are skipped
    /// (logged).
    pub fn seed(&self, account_json: &Value) {
        let at = account_json
            .get("updateTime")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let mut fresh = BTreeMap::new();
        for b in account_json
            .get("balances")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let asset = b.get("asset").and_then(Value::as_str).unwrap_or("");
            match (dec_field(b, "free"), dec_field(b, "locked")) {
                (Some(free), Some(locked)) if !asset.is_empty() => {
                    fresh.insert(
                        asset.to_string(),
                        Held {
                            free,
                            locked,
                            as_of: at,
                        },
                    );
                }
                _ => tracing::warn!(asset, "spot account: unreadable balance entry skipped"),
            }
        }
        let mut g = self.lock();
        g.retain(|a, h| h.as_of > at || fresh.contains_key(a));
        for (a, h) in fresh {
            match g.get(&a) {
                Some(cur) if cur.as_of > at => {}
                _ => {
                    g.insert(a, h);
                }
            }
        }
    }

    /// Stream events applied (`outboundAccountPosition`, `balanceUpdate`); a seed is not counted.
    pub fn updates(&self) -> u64 {
        self.updates.load(Ordering::Relaxed)
    }

    /// Event time (ms) of the last balance event applied, 0 before the first.
    pub fn last_event_ms(&self) -> u64 {
        self.last_event_ms.load(Ordering::Relaxed)
    }

    /// An `outboundAccountPosition`. `false` when unreadable (nothing applied).
    fn apply_position(&self, ev: &Value) -> bool {
        let e = ev.get("E").and_then(Value::as_u64).unwrap_or(0);
        let u = ev.get("u").and_then(Value::as_u64).unwrap_or(e);
        let Some(list) = ev.get("B").and_then(Value::as_array) else {
            return false;
        };
        let mut parsed = Vec::with_capacity(list.len());
        for b in list {
            let asset = b.get("a").and_then(Value::as_str).unwrap_or("");
            match (dec_field(b, "f"), dec_field(b, "l")) {
                (Some(f), Some(l)) if !asset.is_empty() => parsed.push((asset, f, l)),
                _ => return false,
            }
        }
        {
            let mut g = self.lock();
            for (a, free, locked) in parsed {
                let h = g.entry(a.to_string()).or_default();
                if u >= h.as_of {
                    *h = Held {
                        free,
                        locked,
                        as_of: u,
                    };
                }
            }
        }
        self.applied(e);
        true
    }

    /// A `balanceUpdate`. `false` when unreadable.
    fn apply_delta(&self, ev: &Value) -> bool {
        let e = ev.get("E").and_then(Value::as_u64).unwrap_or(0);
        let t = ev.get("T").and_then(Value::as_u64).unwrap_or(e);
        let asset = ev.get("a").and_then(Value::as_str).unwrap_or("");
        let Some(d) = dec_field(ev, "d") else {
            return false;
        };
        if asset.is_empty() {
            return false;
        }
        {
            let mut g = self.lock();
            let h = g.entry(asset.to_string()).or_default();
            if t > h.as_of {
                h.free += d;
                h.as_of = t;
            }
        }
        self.applied(e);
        true
    }

    fn applied(&self, e: u64) {
        self.updates.fetch_add(1, Ordering::Relaxed);
        self.last_event_ms.fetch_max(e, Ordering::Relaxed);
    }
}

/// Spot's order types as the engine knows them: the limit kinds (`LIMIT`, `LIMIT_MAKER`, `STOP_LOSS_LIMIT`,
/// `TAKE_PROFIT_LIMIT`) are limits, the rest (`MARKET`, `STOP_LOSS`, `TAKE_PROFIT`) markets.
pub fn order_type(o: &str) -> OrderType {
    match o {
        "LIMIT" | "LIMIT_MAKER" | "STOP_LOSS_LIMIT" | "TAKE_PROFIT_LIMIT" => OrderType::Limit,
        _ => OrderType::Market,
    }
}

/// Reads an `executionReport` (the event itself, unwrapped) into an [`OrderUpdate`] for the engine, valuing its
/// fee (see the module docs; `pricer` is asked only for a fee in a third asset). `None` when a required field is
/// missing or any decimal is unreadable: the caller then reconciles instead of guessing.
pub fn parse_execution_report(
    ev: &Value,
    assets: &BTreeMap<Symbol, SpotAssets>,
    pricer: &dyn SpotFeePricer,
) -> Option<OrderUpdate> {
    let qty = |k: &str| num(ev, k, Qty::ZERO, |x| Qty::parse(x).ok());
    let price = |k: &str| num(ev, k, Price::ZERO, |x| Price::parse(x).ok());
    let symbol = Symbol::new(s(ev, "s")).ok()?;
    let st = status(s(ev, "X"))?;
    let orig = s(ev, "C");
    let cid = if !orig.is_empty() && matches!(s(ev, "X"), "CANCELED" | "EXPIRED") {
        orig
    } else {
        s(ev, "c")
    };
    let last_price = price("L")?;
    let fee = num(ev, "n", Notional::ZERO, |x| Notional::parse(x).ok())?;
    let (base, quote) = match assets.get(&symbol) {
        Some(a) => (Some(a.base.clone()), Some(a.quote.clone())),
        None => (
            symbol.base_asset().map(|b| b.as_str().to_string()),
            symbol.quote_asset().map(str::to_string),
        ),
    };
    let n = s(ev, "N");
    let quote_sym = quote.as_deref().and_then(|q| Symbol::new(q).ok());
    let (fee_asset, fee_conv) = if n.is_empty() {
        (
            quote_sym.or_else(|| Symbol::new("USDT").ok())?,
            FeeConversion::Quote,
        )
    } else {
        let asset = Symbol::new(n).ok()?;
        let conv = if fee.is_zero() || quote.as_deref() == Some(n) {
            FeeConversion::Quote
        } else if base.as_deref() == Some(n) {
            // The fee is a part of the quantity bought: valued at this fill's price, as the paper venue does.
            FeeConversion::Converted {
                price: last_price,
                quote: last_price.notional(Qty::from_units(fee.units())),
            }
        } else {
            match quote.as_deref() {
                Some(q) => pricer.price_fee(n, fee, q),
                None => FeeConversion::Unconvertible,
            }
        };
        (asset, conv)
    };
    Some(OrderUpdate {
        ts_ms: ev
            .get("T")
            .or_else(|| ev.get("E"))
            .and_then(Value::as_u64)
            .unwrap_or(0),
        symbol,
        client_id: ClientOrderId::new(cid).ok()?,
        exchange_id: ev.get("i").and_then(Value::as_u64)?,
        side: match s(ev, "S") {
            "BUY" => Side::Buy,
            "SELL" => Side::Sell,
            _ => return None,
        },
        order_type: order_type(s(ev, "o")),
        status: st,
        price: price("p")?,
        orig_qty: qty("q")?,
        last_qty: qty("l")?,
        last_price,
        cum_qty: qty("z")?,
        fee,
        fee_asset,
        fee_conv,
        // Spot's `t` is -1 without a trade.
        trade_id: ev.get("t").and_then(Value::as_u64).unwrap_or(0),
        maker: ev.get("m").and_then(Value::as_bool).unwrap_or(false),
        // Spot has no reduce-only orders (an exit is marked for the gate by the engine, not by the exchange).
        reduce_only: false,
    })
}

/// A running spot user data stream.
pub struct SpotUserStream {
    /// Counters.
    pub stats: Arc<SpotStreamStats>,
    /// The balances the stream keeps.
    pub balances: Arc<Balances>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for SpotUserStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpotUserStream")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl SpotUserStream {
    /// Ends the thread: it notices within [`READ_TIMEOUT`] while connected (a connect attempt in progress is
    /// waited for up to two seconds, then left to end by itself).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let at = Instant::now();
            while !t.is_finished() && at.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }

    /// True while the stream's thread runs (it ends on [`SpotUserStream::stop`] or a refused key).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

/// Connects, subscribes (retrying connection failures for up to [`START_TIMEOUT`]; a refused key fails at
/// once) and hands the connection to the stream's thread. Returns once the subscription is confirmed.
pub fn start(
    cfg: SpotUserStreamConfig,
    inbound: Sender<Inbound>,
    balances: Arc<Balances>,
) -> Result<SpotUserStream, SpotStreamError> {
    let stats = Arc::new(SpotStreamStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut wk = Worker {
        cfg,
        inbound,
        balances: balances.clone(),
        stats: stats.clone(),
        stop: stop.clone(),
        next_id: 1,
        sub: 0,
        subscribed_at: Instant::now(),
    };
    let deadline = Instant::now() + START_TIMEOUT;
    let mut wait = Duration::from_millis(250);
    let first = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match wk.open(left.min(CONNECT_TIMEOUT)) {
            Ok(w) => break w,
            Err(e)
                if e.is_key_error()
                    || left < wait
                    || matches!(e, SpotStreamError::Refused { .. }) =>
            {
                return Err(e)
            }
            Err(e) => {
                tracing::warn!(error = %e, "spot user data stream: not subscribed yet, retrying in {wait:?}");
                std::thread::sleep(wait);
                wait = (wait * 2).min(MAX_BACKOFF);
            }
        }
    };
    tracing::info!(
        "spot user data stream: subscribed on {} (subscription {})",
        ws::redact(&wk.cfg.url),
        wk.sub
    );
    let thread = std::thread::Builder::new()
        .name("aegis-spot-user".into())
        .spawn(move || wk.run(first))
        .map_err(|e| SpotStreamError::Thread(e.to_string()))?;
    Ok(SpotUserStream {
        stats,
        balances,
        stop,
        thread: Some(thread),
    })
}

/// How a session ended.
enum End {
    Stop,
    Reconnect(&'static str),
    KeyRefused(SpotStreamError),
}

/// A subscription's answer and the events that came with it.
struct Subscribed {
    id: u64,
    early: Vec<Value>,
}

/// The stream's thread.
struct Worker {
    cfg: SpotUserStreamConfig,
    inbound: Sender<Inbound>,
    balances: Arc<Balances>,
    stats: Arc<SpotStreamStats>,
    stop: Arc<AtomicBool>,
    next_id: u64,
    /// Our subscription on the current connection.
    sub: u64,
    subscribed_at: Instant,
}

fn connect_error(url: &str, why: impl std::fmt::Display) -> SpotStreamError {
    SpotStreamError::Connect {
        url: ws::redact(url).to_string(),
        why: why.to_string(),
    }
}

/// What a refusal of the subscription means.
fn refusal(status: u64, code: i32, msg: String) -> SpotStreamError {
    match code {
        -2014 => SpotStreamError::KeyRejected {
            code,
            msg,
            fix: "the API key's format is invalid: check BINANCE_API_KEY / BINANCE_TESTNET_API_KEY (letters and \
                  digits, copied whole)",
        },
        -2015 => SpotStreamError::KeyRejected {
            code,
            msg,
            fix: "the key is unknown here, does not allow this machine's IP, or lacks permissions: use a key of \
                  this environment (a testnet key only on testnet), add this IP to its whitelist, and enable \
                  reading (and Spot & Margin trading)",
        },
        -1022 => SpotStreamError::BadSignature { code, msg },
        _ if status == 401 => SpotStreamError::KeyRejected {
            code,
            msg,
            fix: "check the API key of this TRADING_MODE and its permissions",
        },
        _ => SpotStreamError::Refused { code, msg },
    }
}

impl Worker {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Sleeps `d` in short steps; `false` when asked to stop meanwhile.
    fn nap(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stopping() {
                return false;
            }
            std::thread::sleep(READ_TIMEOUT.min(until.saturating_duration_since(Instant::now())));
        }
        !self.stopping()
    }

    /// A new connection with a confirmed subscription; events that came with the answer are handled.
    fn open(&mut self, timeout: Duration) -> Result<ws::Ws, SpotStreamError> {
        let url = self.cfg.url.clone();
        let mut w = ws::connect_with(
            &url,
            timeout.max(Duration::from_millis(100)),
            self.cfg.tls.clone(),
        )
        .map_err(|e| connect_error(&url, e))?;
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        ws::set_read_timeout(&w, Some(READ_TIMEOUT)).map_err(|e| connect_error(&url, e))?;
        match self.subscribe(&mut w) {
            Ok(()) => Ok(w),
            Err(e) => {
                let _ = w.close(None);
                let _ = w.flush();
                Err(e)
            }
        }
    }

    /// Sends `userDataStream.subscribe.signature` and waits for its answer (handling the events that arrive
    /// meanwhile once the subscription's id is known).
    fn subscribe(&mut self, w: &mut ws::Ws) -> Result<(), SpotStreamError> {
        let id = self.next_id;
        self.next_id += 1;
        let req = self.request(id)?;
        w.send(Message::Text(req.into()))
            .map_err(|e| connect_error(&self.cfg.url, e))?;
        let got = self.await_answer(w, id)?;
        self.sub = got.id;
        self.subscribed_at = Instant::now();
        self.stats.subscription_id.store(got.id, Ordering::Relaxed);
        self.stats.subscribes.fetch_add(1, Ordering::Relaxed);
        for ev in got.early {
            self.on_frame(&ev);
        }
        Ok(())
    }

    /// The signed request's JSON.
    fn request(&self, id: u64) -> Result<String, SpotStreamError> {
        let ts = self.cfg.clock.server_now_ms().to_string();
        let recv = crate::exchange::connect::WS_API_RECV_WINDOW_MS.to_string();
        let params = [
            WsParam {
                name: "recvWindow",
                value: WsValue::Num(recv.as_bytes()),
            },
            WsParam {
                name: "timestamp",
                value: WsValue::Num(ts.as_bytes()),
            },
        ];
        let mut scratch = [0u8; aegis_engine::sign::MAX_REQUEST_LEN];
        let mut out = [0u8; aegis_engine::sign::MAX_REQUEST_LEN];
        let n = ws_api::encode_request(
            id,
            "userDataStream.subscribe.signature",
            &params,
            WsAuth::Signed {
                api_key: &self.cfg.api_key,
                signer: &self.cfg.signer,
            },
            &mut scratch,
            &mut out,
        )?;
        String::from_utf8(out[..n].to_vec())
            .map_err(|_| SpotStreamError::Protocol("request is not UTF-8".into()))
    }

    fn await_answer(&self, w: &mut ws::Ws, id: u64) -> Result<Subscribed, SpotStreamError> {
        let deadline = Instant::now() + SUBSCRIBE_TIMEOUT;
        let mut early = Vec::new();
        while Instant::now() < deadline {
            if self.stopping() {
                return Err(connect_error(&self.cfg.url, "stopped"));
            }
            let text = match w.read() {
                Ok(Message::Text(t)) => t,
                Ok(Message::Close(_)) => {
                    return Err(connect_error(
                        &self.cfg.url,
                        "closed before the subscription was answered",
                    ))
                }
                Ok(_) => {
                    let _ = w.flush();
                    continue;
                }
                Err(e) if ws::is_timeout(&e) => continue,
                Err(e) => return Err(connect_error(&self.cfg.url, e)),
            };
            let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            if v.get("event").is_some() {
                early.push(v);
                continue;
            }
            if v.get("id").and_then(Value::as_u64) != Some(id) {
                continue;
            }
            let status = v.get("status").and_then(Value::as_u64).unwrap_or(0);
            if status == 200 {
                let sub = v
                    .pointer("/result/subscriptionId")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| SpotStreamError::Protocol("no result.subscriptionId".into()))?;
                early.retain(|e| e.get("subscriptionId").and_then(Value::as_u64) == Some(sub));
                return Ok(Subscribed { id: sub, early });
            }
            let code = v
                .pointer("/error/code")
                .and_then(Value::as_i64)
                .unwrap_or(0) as i32;
            let msg = v
                .pointer("/error/msg")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            return Err(refusal(status, code, msg));
        }
        Err(SpotStreamError::Timeout(SUBSCRIBE_TIMEOUT))
    }

    fn resync(&self, why: &str) {
        self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
        (self.cfg.on_resync)(why);
    }

    fn run(mut self, first: ws::Ws) {
        let mut w = first;
        loop {
            let end = self.session(&mut w);
            let _ = w.close(None);
            let _ = w.flush();
            match end {
                End::Stop => return,
                End::KeyRefused(e) => return self.key_refused(&e),
                End::Reconnect(why) => {
                    tracing::warn!("spot user data stream: {why}; reconnecting")
                }
            }
            match self.reconnect() {
                Ok(Some(nw)) => w = nw,
                Ok(None) => return,
                Err(e) => return self.key_refused(&e),
            }
            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                "spot user data stream reconnected (subscription {})",
                self.sub
            );
            // Whatever happened while it was down was not heard: compare with the exchange again.
            self.resync("reconnected");
        }
    }

    /// Connects and subscribes again, with backoff. `Ok(None)`: asked to stop; `Err`: the key was refused.
    fn reconnect(&mut self) -> Result<Option<ws::Ws>, SpotStreamError> {
        let mut wait = Duration::from_millis(200);
        loop {
            if self.stopping() {
                return Ok(None);
            }
            match self.open(CONNECT_TIMEOUT) {
                Ok(w) => return Ok(Some(w)),
                Err(e) if e.is_key_error() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "spot user data stream: reconnect failed, retrying in {wait:?}");
                    if !self.nap(wait) {
                        return Ok(None);
                    }
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn key_refused(&self, e: &SpotStreamError) {
        tracing::error!(error = %e, "spot user data stream stopped: new orders halted, staying up read-only");
        let _ = self.inbound.send(Inbound::ReadOnly);
        let _ = self.inbound.send(Inbound::Halt(HaltReason::KeyRejected));
        let _ = self.inbound.send(Inbound::Alert(AlertKind::KeyInvalid));
    }

    fn session(&mut self, w: &mut ws::Ws) -> End {
        let mut last_rx = Instant::now();
        let mut last_ping = Instant::now();
        while !self.stopping() {
            if last_ping.elapsed() >= PING_EVERY {
                last_ping = Instant::now();
                if w.send(Message::Ping(Vec::new().into())).is_err() {
                    return End::Reconnect("ping failed");
                }
            }
            if last_rx.elapsed() >= SILENCE_LIMIT {
                return End::Reconnect("no frame for 90 s");
            }
            let text = match w.read() {
                Ok(Message::Text(t)) => t,
                Ok(Message::Close(_)) => return End::Reconnect("connection closed by Binance"),
                Ok(_) => {
                    // Pings (answered by the flush), pongs, binary.
                    last_rx = Instant::now();
                    let _ = w.flush();
                    continue;
                }
                Err(e) if ws::is_timeout(&e) => continue,
                Err(_) => return End::Reconnect("connection lost"),
            };
            last_rx = Instant::now();
            let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                tracing::debug!("spot user data stream: a frame that is not JSON ignored");
                continue;
            };
            match self.on_frame(&v) {
                Flow::Go => {}
                Flow::Reconnect(why) => return End::Reconnect(why),
                Flow::Terminated => {
                    self.stats.terminations.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "spot user data stream: eventStreamTerminated (subscription {}); subscribing again",
                        self.sub
                    );
                    // A server terminating at once again: not faster than once a second.
                    let since = self.subscribed_at.elapsed();
                    if since < Duration::from_secs(1) && !self.nap(Duration::from_secs(1) - since) {
                        return End::Stop;
                    }
                    match self.subscribe(w) {
                        Ok(()) => {
                            tracing::info!(
                                "spot user data stream: subscribed again (subscription {})",
                                self.sub
                            );
                            self.resync("stream terminated");
                        }
                        Err(e) if e.is_key_error() => return End::KeyRefused(e),
                        Err(e) => {
                            tracing::warn!(error = %e, "spot user data stream: subscribing again failed");
                            return End::Reconnect("resubscribe failed");
                        }
                    }
                }
            }
        }
        End::Stop
    }

    /// One frame of the connection: an event of our subscription, or an answer nobody waits for.
    fn on_frame(&mut self, v: &Value) -> Flow {
        let Some(ev) = v.get("event") else {
            tracing::debug!("spot user data stream: an answer without a waiting request ignored");
            return Flow::Go;
        };
        let sub = v.get("subscriptionId").and_then(Value::as_u64);
        let kind = ev.get("e").and_then(Value::as_str).unwrap_or("");
        if kind == "serverShutdown" {
            // Connection-wide (no subscription): the server is going away; move before it does.
            return Flow::Reconnect("serverShutdown");
        }
        if sub != Some(self.sub) {
            tracing::debug!(
                ?sub,
                "spot user data stream: an event of another subscription ignored"
            );
            return Flow::Go;
        }
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = ev.get("E").and_then(Value::as_u64) {
            self.stats.last_event_ms.fetch_max(e, Ordering::Relaxed);
        }
        match kind {
            "executionReport" => {
                match parse_execution_report(ev, &self.cfg.assets, self.cfg.pricer.as_ref()) {
                    Some(u) => {
                        self.stats.updates.fetch_add(1, Ordering::Relaxed);
                        if u.fee_conv == FeeConversion::Unconvertible {
                            tracing::warn!(symbol = %u.symbol, asset = %u.fee_asset, "spot fee in a third asset could not be valued");
                        }
                        // Blocking send: an update must never be dropped (the engine drains in microseconds).
                        let _ = self.inbound.send(Inbound::Update(u));
                    }
                    None => self.malformed("executionReport"),
                }
            }
            "outboundAccountPosition" => {
                if self.balances.apply_position(ev) {
                    self.stats.balance_events.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.malformed("outboundAccountPosition");
                }
            }
            "balanceUpdate" => {
                if self.balances.apply_delta(ev) {
                    self.stats.balance_events.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.malformed("balanceUpdate");
                }
            }
            "listStatus" => {
                tracing::debug!(
                    "spot user data stream: listStatus ignored (the legs' executionReports count)"
                )
            }
            "eventStreamTerminated" => return Flow::Terminated,
            other => tracing::debug!(event = other, "spot user data stream: event ignored"),
        }
        Flow::Go
    }

    fn malformed(&self, what: &str) {
        self.stats.malformed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "unreadable {what} from Binance ignored; reconciling with the exchange so nothing is lost"
        );
        self.resync("unreadable event");
    }
}

/// What a frame asks of the session.
enum Flow {
    Go,
    Terminated,
    Reconnect(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_shared::event::OrderStatus;
    use std::sync::atomic::AtomicUsize;

    /// Prices BNB at 600 quote units and counts its calls.
    #[derive(Default)]
    struct Bnb600(AtomicUsize);

    impl SpotFeePricer for Bnb600 {
        fn price_fee(&self, asset: &str, amount: Notional, quote: &str) -> FeeConversion {
            self.0.fetch_add(1, Ordering::Relaxed);
            if asset == "BNB" && quote == "USDT" {
                FeeConversion::convert(amount, Price::from_int(600))
            } else {
                FeeConversion::Unconvertible
            }
        }
    }

    fn assets() -> BTreeMap<Symbol, SpotAssets> {
        [("ETHBTC", "ETH", "BTC"), ("BTCUSDT", "BTC", "USDT")]
            .into_iter()
            .map(|(s, b, q)| {
                (
                    Symbol::new(s).unwrap(),
                    SpotAssets {
                        base: b.into(),
                        quote: q.into(),
                    },
                )
            })
            .collect()
    }

    fn parse(j: &str) -> Option<OrderUpdate> {
        let v: Value = serde_json::from_str(j).unwrap();
        parse_execution_report(&v, &assets(), &Bnb600::default())
    }

    /// Binance's documented `executionReport` (a new LIMIT order, no fill).
    const DOC_NEW: &str = r#"{"e":"executionReport","E":1499405658658,"s":"ETHBTC","c":"mUvoqJxFIILMdfAW5iGSOW","S":"BUY","o":"LIMIT","f":"GTC","q":"1.00000000","p":"0.10264410","P":"0.00000000","F":"0.00000000","g":-1,"C":"","x":"NEW","X":"NEW","r":"NONE","i":4293153,"l":"0.00000000","z":"0.00000000","L":"0.00000000","n":"0","N":null,"T":1499405658657,"t":-1,"v":3,"I":8641984,"w":true,"m":false,"M":false,"O":1499405658657,"Z":"0.00000000","Y":"0.00000000","Q":"0.00000000","W":1499405658657,"V":"NONE"}"#;

    #[test]
    fn the_documented_new_order_report() {
        let u = parse(DOC_NEW).unwrap();
        assert_eq!(u.symbol.as_str(), "ETHBTC");
        assert_eq!(u.client_id.as_str(), "mUvoqJxFIILMdfAW5iGSOW");
        assert_eq!(u.exchange_id, 4293153);
        assert_eq!(u.side, Side::Buy);
        assert_eq!(u.order_type, OrderType::Limit);
        assert_eq!(u.status, OrderStatus::New);
        assert_eq!(u.price, Price::parse("0.10264410").unwrap());
        assert_eq!(u.orig_qty, Qty::parse("1").unwrap());
        assert!(u.last_qty.is_zero() && u.cum_qty.is_zero() && u.fee.is_zero());
        assert_eq!(u.trade_id, 0, "t = -1 means no trade");
        assert_eq!(u.ts_ms, 1499405658657);
        // No commission asset: the quote asset, nothing to convert.
        assert_eq!(u.fee_asset.as_str(), "BTC");
        assert_eq!(u.fee_conv, FeeConversion::Quote);
        assert!(!u.maker && !u.reduce_only);
    }

    fn trade(patch: &[(&str, &str)]) -> String {
        let mut j = DOC_NEW
            .replace(
                r#""x":"NEW","X":"NEW""#,
                r#""x":"TRADE","X":"PARTIALLY_FILLED""#,
            )
            .replace(r#""l":"0.00000000""#, r#""l":"0.40000000""#)
            .replace(r#""z":"0.00000000""#, r#""z":"0.40000000""#)
            .replace(r#""L":"0.00000000""#, r#""L":"0.10264410""#)
            .replace(r#""t":-1"#, r#""t":99"#)
            .replace(r#""m":false"#, r#""m":true"#);
        for (from, to) in patch {
            assert!(j.contains(from), "{from}");
            j = j.replace(from, to);
        }
        j
    }

    #[test]
    fn a_partial_fill_with_the_fee_in_the_base_asset_is_valued_at_the_fill_price() {
        // 0.1 % of 0.4 ETH bought, taken in ETH (the base of ETHBTC).
        let u = parse(&trade(&[(
            r#""n":"0","N":null"#,
            r#""n":"0.00040000","N":"ETH""#,
        )]))
        .unwrap();
        assert_eq!(u.status, OrderStatus::PartiallyFilled);
        assert_eq!(u.last_qty, Qty::parse("0.4").unwrap());
        assert_eq!(u.cum_qty, Qty::parse("0.4").unwrap());
        assert_eq!(u.last_price, Price::parse("0.10264410").unwrap());
        assert_eq!(u.trade_id, 99);
        assert!(u.maker);
        assert_eq!(u.fee, Notional::parse("0.0004").unwrap());
        assert_eq!(u.fee_asset.as_str(), "ETH");
        let price = Price::parse("0.10264410").unwrap();
        // The paper spot venue's valuation of a base fee, to the unit.
        assert_eq!(
            u.fee_conv,
            FeeConversion::Converted {
                price,
                quote: price.notional(Qty::parse("0.0004").unwrap()),
            }
        );
        assert_eq!(
            u.fee_conv.quote_fee(u.fee),
            Notional::parse("0.00004106").unwrap()
        );
    }

    #[test]
    fn a_fee_in_the_quote_asset_is_taken_as_it_is_and_bnb_goes_to_the_pricer() {
        let u = parse(&trade(&[(
            r#""n":"0","N":null"#,
            r#""n":"0.00004106","N":"BTC""#,
        )]))
        .unwrap();
        assert_eq!(u.fee_conv, FeeConversion::Quote);
        assert_eq!(u.fee_asset.as_str(), "BTC");

        let j = trade(&[
            (r#""s":"ETHBTC""#, r#""s":"BTCUSDT""#),
            (r#""n":"0","N":null"#, r#""n":"0.00010000","N":"BNB""#),
        ]);
        let v: Value = serde_json::from_str(&j).unwrap();
        let pricer = Bnb600::default();
        let u = parse_execution_report(&v, &assets(), &pricer).unwrap();
        assert_eq!(pricer.0.load(Ordering::Relaxed), 1);
        assert_eq!(u.fee_asset.as_str(), "BNB");
        assert_eq!(
            u.fee_conv,
            FeeConversion::Converted {
                price: Price::from_int(600),
                quote: Notional::parse("0.06").unwrap()
            }
        );
        // A pair quoted in BTC: the pricer has no price, the fee is flagged, not guessed.
        let j = trade(&[(r#""n":"0","N":null"#, r#""n":"0.00010000","N":"BNB""#)]);
        let u = parse(&j).unwrap();
        assert_eq!(u.fee_conv, FeeConversion::Unconvertible);
        // A symbol without listed assets falls back to the symbol's own quote asset.
        let v: Value = serde_json::from_str(&trade(&[
            (r#""s":"ETHBTC""#, r#""s":"ETHUSDT""#),
            (r#""n":"0","N":null"#, r#""n":"0.00040000","N":"ETH""#),
        ]))
        .unwrap();
        let u = parse_execution_report(&v, &BTreeMap::new(), &pricer).unwrap();
        assert!(matches!(u.fee_conv, FeeConversion::Converted { .. }));
        assert_eq!(pricer.0.load(Ordering::Relaxed), 1, "a base fee never asks");
    }

    #[test]
    fn a_canceled_report_of_a_cancel_request_names_the_original_order() {
        let j = DOC_NEW
            .replace(r#""x":"NEW","X":"NEW""#, r#""x":"CANCELED","X":"CANCELED""#)
            .replace(r#""c":"mUvoqJxFIILMdfAW5iGSOW""#, r#""c":"cancelReq7""#)
            .replace(r#""C":"""#, r#""C":"ag1x2y3""#);
        let u = parse(&j).unwrap();
        assert_eq!(u.status, OrderStatus::Canceled);
        assert_eq!(u.client_id.as_str(), "ag1x2y3");
        // Expired likewise; a NEW with a stray C keeps its own id.
        let u = parse(&j.replace(r#""X":"CANCELED""#, r#""X":"EXPIRED""#)).unwrap();
        assert_eq!(
            (u.status, u.client_id.as_str()),
            (OrderStatus::Expired, "ag1x2y3")
        );
        let u = parse(&DOC_NEW.replace(r#""C":"""#, r#""C":"other""#)).unwrap();
        assert_eq!(u.client_id.as_str(), "mUvoqJxFIILMdfAW5iGSOW");
        // An empty C (a cancel without the original's id): c stays.
        let u = parse(&j.replace(r#""C":"ag1x2y3""#, r#""C":"""#)).unwrap();
        assert_eq!(u.client_id.as_str(), "cancelReq7");
    }

    #[test]
    fn order_types_and_statuses_map_to_the_engines() {
        for (o, t) in [
            ("LIMIT", OrderType::Limit),
            ("LIMIT_MAKER", OrderType::Limit),
            ("STOP_LOSS_LIMIT", OrderType::Limit),
            ("TAKE_PROFIT_LIMIT", OrderType::Limit),
            ("MARKET", OrderType::Market),
            ("STOP_LOSS", OrderType::Market),
            ("TAKE_PROFIT", OrderType::Market),
        ] {
            assert_eq!(order_type(o), t, "{o}");
        }
        for (x, st) in [
            ("FILLED", OrderStatus::Filled),
            ("REJECTED", OrderStatus::Rejected),
            ("EXPIRED_IN_MATCH", OrderStatus::Expired),
        ] {
            let u = parse(&DOC_NEW.replace(r#""X":"NEW""#, &format!(r#""X":"{x}""#))).unwrap();
            assert_eq!(u.status, st, "{x}");
        }
        let sell = parse(&DOC_NEW.replace(r#""S":"BUY""#, r#""S":"SELL""#)).unwrap();
        assert_eq!(sell.side, Side::Sell);
    }

    #[test]
    fn an_unreadable_report_is_refused_instead_of_read_as_zero() {
        let ok = trade(&[]);
        assert!(parse(&ok).is_some());
        for (from, to) in [
            (r#""l":"0.40000000""#, r#""l":"0.4.0""#),
            (r#""l":"0.40000000""#, r#""l":0.4"#),
            (r#""L":"0.10264410""#, r#""L":"NaN""#),
            (r#""z":"0.40000000""#, r#""z":"""#),
            (r#""n":"0""#, r#""n":"1e-2""#),
            (r#""X":"PARTIALLY_FILLED""#, r#""X":"SOMETHING_NEW""#),
            (r#""S":"BUY""#, r#""S":"HOLD""#),
            (r#""i":4293153"#, r#""i":"x""#),
            (r#""s":"ETHBTC""#, r#""s":"""#),
        ] {
            assert!(ok.contains(from), "{from}");
            assert!(
                parse(&ok.replace(from, to)).is_none(),
                "{to} must not parse"
            );
        }
    }

    #[test]
    fn balances_follow_positions_and_deltas_in_time_order() {
        let b = Balances::new();
        b.seed(&serde_json::json!({"updateTime": 100, "balances": [
            {"asset": "USDT", "free": "1000.00000000", "locked": "0.00000000"},
            {"asset": "BTC", "free": "0.5", "locked": "0.1"},
            {"asset": "BAD", "free": "x", "locked": "0"}]}));
        assert_eq!(b.held("BTC"), Notional::parse("0.6").unwrap());
        assert_eq!(b.get("BAD"), None);
        assert_eq!(b.updates(), 0, "a seed is not an event");
        let pos = serde_json::json!({"e": "outboundAccountPosition", "E": 205, "u": 200,
            "B": [{"a": "USDT", "f": "400.00000000", "l": "600.00000000"}]});
        assert!(b.apply_position(&pos));
        assert_eq!(
            b.get("USDT"),
            Some((
                Notional::parse("400").unwrap(),
                Notional::parse("600").unwrap()
            ))
        );
        // A deposit cleared before the last position report is already in it; a later one adds.
        assert!(b.apply_delta(
            &serde_json::json!({"e": "balanceUpdate", "E": 206, "a": "USDT", "d": "50", "T": 150})
        ));
        assert_eq!(b.held("USDT"), Notional::parse("1000").unwrap());
        assert!(b.apply_delta(&serde_json::json!({"e": "balanceUpdate", "E": 306, "a": "USDT", "d": "-50.5", "T": 300})));
        assert_eq!(b.get("USDT").unwrap().0, Notional::parse("349.5").unwrap());
        assert_eq!(b.updates(), 3);
        assert_eq!(b.last_event_ms(), 306);
        // A snapshot older than what the stream reported keeps the stream's amounts; its other assets apply.
        b.seed(&serde_json::json!({"updateTime": 250, "balances": [
            {"asset": "USDT", "free": "1.0", "locked": "0"}, {"asset": "ETH", "free": "2", "locked": "0"}]}));
        assert_eq!(b.get("USDT").unwrap().0, Notional::parse("349.5").unwrap());
        assert_eq!(b.held("ETH"), Notional::from_int(2));
        assert_eq!(b.get("BTC"), None, "left out of a newer snapshot: gone");
        let snap = b.snapshot();
        assert_eq!(
            snap.keys().cloned().collect::<Vec<_>>(),
            vec!["ETH", "USDT"]
        );
        // Unreadable events change nothing.
        assert!(!b.apply_position(
            &serde_json::json!({"E": 400, "u": 400, "B": [{"a": "ETH", "f": "?", "l": "0"}]})
        ));
        assert!(!b.apply_delta(&serde_json::json!({"E": 400, "a": "ETH", "T": 400})));
        assert_eq!(b.held("ETH"), Notional::from_int(2));
    }

    #[test]
    fn refusals_say_what_to_fix_and_no_error_shows_the_key() {
        let key = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
        let e = refusal(
            401,
            -2015,
            "Invalid API-key, IP, or permissions for action.".into(),
        );
        assert!(e.is_key_error());
        let m = e.to_string();
        assert!(
            m.contains("-2015") && m.contains("whitelist") && m.contains("testnet"),
            "{m}"
        );
        assert!(refusal(400, -2014, "API-key format invalid.".into())
            .to_string()
            .contains("BINANCE_API_KEY"));
        assert!(refusal(
            400,
            -1022,
            "Signature for this request is not valid.".into()
        )
        .is_key_error());
        let e = refusal(400, -1021, "Timestamp outside recvWindow".into());
        assert!(!e.is_key_error());
        // The config's Debug prints neither the key nor the secret.
        let cfg = SpotUserStreamConfig::new(
            "wss://ws-api.binance.com:443/ws-api/v3",
            ApiKey::new(aegis_shared::Secret::new(key.to_string())).unwrap(),
            Signer::from_secret(&aegis_shared::Secret::new("s3cr3tValue".to_string())).unwrap(),
            Arc::new(aegis_engine::venue::binance::entry::WallClock),
            Arc::new(Bnb600::default()),
            Arc::new(|_: &str| {}),
        );
        let d = format!("{cfg:?}");
        assert!(!d.contains(key) && !d.contains("s3cr3tValue"), "{d}");
        // The request carries the key (it must) but nothing logs it: only its shape is checked here.
        let wk = Worker {
            cfg,
            inbound: crossbeam_channel::unbounded().0,
            balances: Arc::new(Balances::new()),
            stats: Arc::new(SpotStreamStats::default()),
            stop: Arc::new(AtomicBool::new(false)),
            next_id: 1,
            sub: 0,
            subscribed_at: Instant::now(),
        };
        let r: Value = serde_json::from_str(&wk.request(7).unwrap()).unwrap();
        assert_eq!(r["method"], "userDataStream.subscribe.signature");
        assert_eq!(r["id"], 7);
        let p = r["params"].as_object().unwrap();
        let names: Vec<_> = p.keys().cloned().collect();
        assert_eq!(
            names,
            vec!["apiKey", "recvWindow", "signature", "timestamp"]
        );
        assert_eq!(p["signature"].as_str().unwrap().len(), 64, "HMAC hex");
    }
}
