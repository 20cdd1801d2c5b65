//! The user data stream: listenKey create (REST), keep-alive every [`KEEPALIVE`], recreate on -1125 or
//! `listenKeyExpired`, reconnect with backoff; `ORDER_TRADE_UPDATE`s become [`Inbound::Update`]s for the
//! engine (whose events reach the journal through the normal critical queue).
//!
//! Runs on its own thread (`aegis-user`); REST calls go through the control runtime's handle.

use super::rest::{status, RestClient, RestError};
use aegis_engine::net::ws;
use aegis_engine::venue::binance::{Inbound, OrderUpdate};
use aegis_shared::event::{AlertKind, HaltReason, OrderType};
use aegis_shared::{ClientOrderId, Notional, Price, Qty, Side, Symbol};
use crossbeam_channel::Sender;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// Keep-alive period (Binance: valid 60 min; keep alive every 30–50 min).
pub const KEEPALIVE: Duration = Duration::from_secs(30 * 60);

/// Hidden setting, read from the process environment only and left out of the operator's configuration:
/// a shorter keep-alive period in whole seconds, so the end-to-end tests see a keep-alive (and its -1125)
/// without waiting 30 minutes. Values outside `1..=`[`KEEPALIVE`] are ignored: it can make keep-alives more
/// frequent, never let a listenKey lapse.
pub const KEEPALIVE_SECS_KEY: &str = "AEGIS_LISTENKEY_KEEPALIVE_SECS";

fn keepalive_period(value: Option<&str>) -> Duration {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .filter(|d| !d.is_zero() && *d <= KEEPALIVE)
        .unwrap_or(KEEPALIVE)
}

/// Counters for tests and the log.
#[derive(Debug, Default)]
pub struct UserStreamStats {
    /// listenKeys created.
    pub keys_created: AtomicU64,
    /// Connections opened.
    pub connects: AtomicU64,
    /// ORDER_TRADE_UPDATEs forwarded.
    pub updates: AtomicU64,
    /// ORDER_TRADE_UPDATEs that could not be read (each one triggers a reconciliation).
    pub malformed: AtomicU64,
    /// ACCOUNT_UPDATEs with reason FUNDING_FEE (each one reads `/fapi/v1/income`).
    pub funding_events: AtomicU64,
    /// Hash of the listenKey of the open stream.
    pub listen_key: AtomicU64,
}

/// A string field, empty when absent (the spot user stream reads its events with the same rules).
pub(crate) fn s<'a>(o: &'a Value, k: &str) -> &'a str {
    o.get(k).and_then(Value::as_str).unwrap_or("")
}

/// A decimal field: absent means zero (Binance omits what does not apply), present but unreadable means the
/// whole update is unusable. Guessing zero for a fill quantity would silently lose a fill.
pub(crate) fn num<T>(o: &Value, k: &str, zero: T, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
    match o.get(k) {
        None | Some(Value::Null) => Some(zero),
        Some(Value::String(x)) => parse(x),
        Some(_) => None,
    }
}

/// Parses an `ORDER_TRADE_UPDATE`. `None` when a required field is missing or any decimal is unreadable: the
/// caller then reconciles with the exchange instead of guessing.
pub fn parse_order_update(v: &Value) -> Option<OrderUpdate> {
    let o = v.get("o")?;
    let qty = |k: &str| num(o, k, Qty::ZERO, |x| Qty::parse(x).ok());
    let price = |k: &str| num(o, k, Price::ZERO, |x| Price::parse(x).ok());
    let ts = v
        .get("T")
        .or_else(|| v.get("E"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(OrderUpdate {
        ts_ms: ts,
        symbol: Symbol::new(s(o, "s")).ok()?,
        client_id: ClientOrderId::new(s(o, "c")).ok()?,
        exchange_id: o.get("i").and_then(Value::as_u64).unwrap_or(0),
        side: if s(o, "S") == "SELL" {
            Side::Sell
        } else {
            Side::Buy
        },
        order_type: if s(o, "o") == "LIMIT" {
            OrderType::Limit
        } else {
            OrderType::Market
        },
        status: status(s(o, "X"))?,
        price: price("p")?,
        orig_qty: qty("q")?,
        last_qty: qty("l")?,
        last_price: price("L")?,
        cum_qty: qty("z")?,
        fee: num(o, "n", Notional::ZERO, |x| Notional::parse(x).ok())?,
        fee_asset: Symbol::new(s(o, "N"))
            .or_else(|_| Symbol::new("USDT"))
            .ok()?,
        // Valued by the stream's thread before the update is forwarded (see `funding::FeePricer`).
        fee_conv: aegis_shared::event::FeeConversion::Quote,
        trade_id: o.get("t").and_then(Value::as_u64).unwrap_or(0),
        maker: o.get("m").and_then(Value::as_bool).unwrap_or(false),
        reduce_only: o.get("R").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// A running user data stream.
#[derive(Debug)]
pub struct UserStream {
    /// Counters.
    pub stats: Arc<UserStreamStats>,
    stop: Arc<AtomicBool>,
}

impl UserStream {
    /// Asks the thread to end.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

enum End {
    Rekey,
    Recreate,
    Reconnect,
    Stop,
    KeyRejected,
}

/// Creates the first listenKey and connects (so nothing is missed from here on), then keeps it running on a
/// thread. Errors of the first connection are returned; later ones are retried by the thread.
pub fn start(
    client: RestClient,
    rt: tokio::runtime::Handle,
    inbound: Sender<Inbound>,
    slot: Arc<super::resync::Slot>,
    funding: super::funding::SharedFunding,
    algo: Arc<super::algo::AlgoInbox>,
) -> Result<UserStream, RestError> {
    let stats = Arc::new(UserStreamStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let first = connect(&client, &rt, &stats)?;
    let (st, sp) = (stats.clone(), stop.clone());
    let every = keepalive_period(std::env::var(KEEPALIVE_SECS_KEY).ok().as_deref());
    if every != KEEPALIVE {
        tracing::warn!(
            "listenKey keep-alive every {every:?} ({KEEPALIVE_SECS_KEY}), not {KEEPALIVE:?}"
        );
    }
    std::thread::Builder::new()
        .name("aegis-user".into())
        .spawn(move || {
            let sh = Shared {
                client,
                rt,
                inbound,
                stats: st,
                stop: sp,
                slot,
                keepalive: every,
                funding,
                algo,
            };
            run(&sh, first)
        })
        .map_err(|e| RestError::Transport {
            path: "user data stream".into(),
            why: e.to_string(),
        })?;
    Ok(UserStream { stats, stop })
}

fn connect(
    client: &RestClient,
    rt: &tokio::runtime::Handle,
    stats: &UserStreamStats,
) -> Result<ws::Ws, RestError> {
    let key = rt.block_on(client.listen_key_create())?;
    stats.keys_created.fetch_add(1, Ordering::Relaxed);
    open(client, stats, &key)
}

fn open(client: &RestClient, stats: &UserStreamStats, key: &str) -> Result<ws::Ws, RestError> {
    stats.listen_key.store(key_hash(key), Ordering::Relaxed);
    let url = format!("{}/ws/{key}", client.endpoints.fstream);
    let w = ws::connect(&url, Duration::from_secs(10)).map_err(|e| RestError::Transport {
        path: "user data stream".into(),
        why: e.to_string(),
    })?;
    let _ = ws::set_read_timeout(&w, Some(Duration::from_millis(250)));
    stats.connects.fetch_add(1, Ordering::Relaxed);
    Ok(w)
}

/// What the stream's thread works with.
struct Shared {
    client: RestClient,
    rt: tokio::runtime::Handle,
    inbound: Sender<Inbound>,
    stats: Arc<UserStreamStats>,
    stop: Arc<AtomicBool>,
    slot: Arc<super::resync::Slot>,
    keepalive: Duration,
    funding: super::funding::SharedFunding,
    /// Our protective stops' `ALGO_UPDATE`s, for the stop manager.
    algo: Arc<super::algo::AlgoInbox>,
}

fn run(sh: &Shared, first: ws::Ws) {
    let mut cur = Some(first);
    let mut attempt = 0u32;
    while !sh.stop.load(Ordering::Acquire) {
        if sh.slot.rekey.swap(false, Ordering::AcqRel) {
            // `None`: no socket left; the reconnect path below takes over.
            cur = rekey(&sh.client, &sh.rt, &sh.stats, cur.take(), &sh.slot);
        }
        let mut w = match cur.take() {
            Some(w) => w,
            None => match connect(&sh.client, &sh.rt, &sh.stats) {
                Ok(w) => {
                    attempt = 0;
                    tracing::info!("user data stream reconnected (new listenKey)");
                    // Whatever happened while it was down was not heard: compare with the exchange again.
                    sh.slot.wanted.store(false, Ordering::Release);
                    sh.slot.run("user data stream reconnect");
                    super::funding::sync_logged(
                        &sh.funding,
                        &sh.client,
                        &sh.rt,
                        &sh.inbound,
                        "user data stream reconnect",
                    );
                    w
                }
                Err(RestError::KeyRejected { code, .. }) => {
                    key_rejected(&sh.inbound, code);
                    return;
                }
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    let ms = (200u64 << attempt.min(5)).min(5000);
                    tracing::warn!(error = %e, "user data stream: reconnect failed, retrying in {ms} ms");
                    std::thread::sleep(Duration::from_millis(ms));
                    continue;
                }
            },
        };
        match session(sh, &mut w) {
            End::Rekey => {
                cur = Some(w);
                continue;
            }
            End::Stop => return,
            End::KeyRejected => return,
            End::Recreate => {
                tracing::warn!("user data stream: listenKey expired; creating a new one")
            }
            End::Reconnect => tracing::warn!("user data stream: connection lost; reconnecting"),
        }
        let _ = w.close(None);
        let _ = w.flush();
    }
}

/// Recreates the listenKey under the (already switched) key. Binance hands an account's live listenKey back on
/// `POST`, so usually the stream is the same and the open socket is kept (no gap, nothing heard twice); a
/// different key means a new socket, and what happened between the two is compared with the exchange.
fn rekey(
    client: &RestClient,
    rt: &tokio::runtime::Handle,
    stats: &UserStreamStats,
    cur: Option<ws::Ws>,
    slot: &super::resync::Slot,
) -> Option<ws::Ws> {
    let outcome = rt
        .block_on(client.listen_key_create())
        .map_err(|e| format!("listenKey under the new key: {e}"));
    stats
        .keys_created
        .fetch_add(u64::from(outcome.is_ok()), Ordering::Relaxed);
    let (w, result) = match (outcome, cur) {
        (Ok(key), Some(w)) if stats.listen_key.load(Ordering::Relaxed) == key_hash(&key) => (
            Some(w),
            Ok("listenKey renewed under the new key (same stream)".to_string()),
        ),
        (Ok(key), old) => {
            match open(client, stats, &key) {
                Ok(nw) => {
                    if let Some(mut o) = old {
                        let _ = o.close(None);
                        let _ = o.flush();
                    }
                    slot.run("user data stream moved to the new key");
                    (Some(nw), Ok("new listenKey under the new key (new stream, compared with the exchange)".to_string()))
                }
                Err(e) => (old, Err(format!("new user data stream: {e}"))),
            }
        }
        (Err(e), old) => (old, Err(e)),
    };
    match &result {
        Ok(m) => tracing::info!("user data stream: {m}"),
        Err(e) => tracing::error!("user data stream: key switch: {e}"),
    }
    {
        let mut g = slot.rekeyed.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        g.1 = result;
    }
    w
}

/// listenKeys are compared by hash, so the stats never hold one (it would let anyone read the account's events).
fn key_hash(key: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

fn key_rejected(inbound: &Sender<Inbound>, code: i32) {
    tracing::error!("Binance rejected the API key ({code}) on the user data stream: new orders halted, staying up read-only");
    let _ = inbound.send(Inbound::ReadOnly);
    let _ = inbound.send(Inbound::Halt(HaltReason::KeyRejected));
    let _ = inbound.send(Inbound::Alert(AlertKind::KeyInvalid));
}

fn session(sh: &Shared, w: &mut ws::Ws) -> End {
    let Shared {
        client,
        rt,
        inbound,
        stats,
        stop,
        slot,
        keepalive,
        funding,
        algo,
    } = sh;
    let mut last_keepalive = Instant::now();
    // The keep-alive runs on the control runtime, so a slow REST answer never stops this stream being read.
    let mut keepalive_call: Option<tokio::task::JoinHandle<Result<(), RestError>>> = None;
    while !stop.load(Ordering::Acquire) {
        if slot.rekey.load(Ordering::Acquire) {
            return End::Rekey;
        }
        if slot.wanted.swap(false, Ordering::AcqRel) {
            slot.run("order gateway reconnect");
        }
        if keepalive_call.is_none() && last_keepalive.elapsed() >= *keepalive {
            last_keepalive = Instant::now();
            let c = client.clone();
            keepalive_call = Some(rt.spawn(async move { c.listen_key_keepalive().await }));
        }
        if let Some(done) = keepalive_call.take_if(|h| h.is_finished()) {
            // Finished: this returns at once.
            match rt.block_on(done) {
                Ok(Ok(())) => {}
                Ok(Err(RestError::Api { code: -1125, .. })) => {
                    // The key is gone although no listenKeyExpired arrived: this stream may already be dead.
                    tracing::warn!(
                        "listenKey keep-alive answered -1125 (listenKey does not exist)"
                    );
                    return End::Recreate;
                }
                Ok(Err(RestError::KeyRejected { code, .. })) => {
                    key_rejected(inbound, code);
                    return End::KeyRejected;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "listenKey keep-alive failed; retrying next period")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listenKey keep-alive task failed; retrying next period")
                }
            }
        }
        match w.read() {
            Ok(Message::Text(t)) => {
                let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                    continue;
                };
                match v.get("e").and_then(Value::as_str) {
                    Some("ORDER_TRADE_UPDATE") => {
                        if let Some(mut u) = parse_order_update(&v) {
                            stats.updates.fetch_add(1, Ordering::Relaxed);
                            if !u.fee.is_zero() {
                                let mut b = funding.lock().unwrap_or_else(|e| e.into_inner());
                                u.fee_conv =
                                    b.pricer().convert(client, rt, u.symbol, u.fee_asset, u.fee);
                            }
                            if u.client_id.as_str().starts_with("autoclose-")
                                || u.client_id.as_str().starts_with("adl_autoclose")
                            {
                                tracing::warn!(symbol = %u.symbol, "LIQUIDATION/ADL fill reported by Binance ({})", u.client_id);
                            }
                            // Blocking send: an update must never be dropped (the engine drains in microseconds).
                            let _ = inbound.send(Inbound::Update(u));
                        } else {
                            // Nothing may be lost: ask the exchange for the truth instead of guessing.
                            stats.malformed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                "unreadable ORDER_TRADE_UPDATE from Binance ignored; reconciling orders and \
                                 positions with the exchange so no fill is lost"
                            );
                            slot.run("unreadable order update");
                        }
                    }
                    Some("ACCOUNT_UPDATE") => {
                        let reason = v.pointer("/a/m").and_then(Value::as_str);
                        if reason == Some("FUNDING_FEE") {
                            stats.funding_events.fetch_add(1, Ordering::Relaxed);
                            // The event has no symbol or id for cross margin: read the records themselves.
                            super::funding::sync_logged(
                                funding,
                                client,
                                rt,
                                inbound,
                                "ACCOUNT_UPDATE FUNDING_FEE",
                            );
                        }
                    }
                    Some("ALGO_UPDATE") => algo.hear(&v),
                    Some("listenKeyExpired") => return End::Recreate,
                    _ => {}
                }
            }
            Ok(Message::Ping(_)) => {
                let _ = w.flush();
            }
            Ok(Message::Close(_)) => return End::Reconnect,
            Ok(_) => {}
            Err(e) if ws::is_timeout(&e) => {}
            Err(_) => return End::Reconnect,
        }
    }
    End::Stop
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_shared::event::OrderStatus;

    #[test]
    fn the_hidden_keepalive_setting_only_shortens_the_period() {
        assert_eq!(keepalive_period(None), KEEPALIVE);
        assert_eq!(keepalive_period(Some(" 2 ")), Duration::from_secs(2));
        assert_eq!(keepalive_period(Some("1800")), KEEPALIVE);
        for ignored in ["0", "1801", "-5", "1.5", "soon", ""] {
            assert_eq!(keepalive_period(Some(ignored)), KEEPALIVE, "{ignored:?}");
        }
    }

    #[test]
    fn parses_the_documented_order_trade_update() {
        let v: Value = serde_json::from_str(r#"{"e":"ORDER_TRADE_UPDATE","E":1568879465651,"T":1568879465650,"o":{"s":"BTCUSDT","c":"TEST","S":"SELL","o":"TRAILING_STOP_MARKET","f":"GTC","q":"0.001","p":"0","ap":"0","sp":"7103.04","x":"NEW","X":"NEW","i":8886774,"l":"0","z":"0","L":"0","N":"USDT","n":"0","T":1568879465650,"t":0,"b":"0","a":"9.91","m":false,"R":false,"wt":"CONTRACT_PRICE","ot":"TRAILING_STOP_MARKET","ps":"LONG","cp":false,"AP":"7476.89","cr":"5.0","pP":false,"si":0,"ss":0,"rp":"0","V":"EXPIRE_TAKER","pm":"OPPONENT","gtd":0}}"#).unwrap();
        let u = parse_order_update(&v).unwrap();
        assert_eq!(u.client_id.as_str(), "TEST");
        assert_eq!(u.status, OrderStatus::New);
        assert_eq!(u.side, Side::Sell);
        assert_eq!(u.exchange_id, 8886774);
        assert_eq!(u.orig_qty, Qty::parse("0.001").unwrap());
        assert!(u.last_qty.is_zero());
        assert_eq!(u.ts_ms, 1568879465650);
    }

    #[test]
    fn an_unreadable_decimal_rejects_the_update_instead_of_reading_zero() {
        let ok = r#"{"e":"ORDER_TRADE_UPDATE","T":1,"o":{"s":"BTCUSDT","c":"ag1-7","S":"BUY","o":"LIMIT","q":"0.010","p":"25000.10","X":"PARTIALLY_FILLED","i":9,"l":"0.004","z":"0.004","L":"25000.10","n":"0.01","N":"USDT","t":3,"m":true}}"#;
        let v: Value = serde_json::from_str(ok).unwrap();
        let u = parse_order_update(&v).unwrap();
        assert_eq!(u.last_qty, Qty::parse("0.004").unwrap());
        assert_eq!(u.fee, Notional::parse("0.01").unwrap());
        for (field, bad) in [
            (r#""l":"0.004""#, r#""l":"0.0.4""#),
            (r#""l":"0.004""#, r#""l":4"#),
            (r#""L":"25000.10""#, r#""L":"NaN""#),
            (r#""z":"0.004""#, r#""z":"""#),
            (r#""n":"0.01""#, r#""n":"1e-2""#),
        ] {
            let v: Value = serde_json::from_str(&ok.replace(field, bad)).unwrap();
            assert!(parse_order_update(&v).is_none(), "{bad} must not parse");
        }
        // Absent fields are zero (Binance omits what does not apply).
        let v: Value = serde_json::from_str(&ok.replace(r#","n":"0.01""#, "")).unwrap();
        assert!(parse_order_update(&v).unwrap().fee.is_zero());
    }
}
