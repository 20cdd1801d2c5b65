//! Alert tests against a local HTTP receiver on 127.0.0.1:0.

use super::dispatch::{backoff, TokenBucket};
use super::*;
use aegis_shared::event::{BreakerEvent, BreakerScope, EngineState, TripReason};
use aegis_shared::{StrategyMode, TradingMode};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::Router;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TG_TOKEN: &str = "987654321:AAH-telegram-SECRET-token_xyz";
const HOOK_SECRET: &str = "whsec-GENERIC-9f8e7d6c5b4a";
const DISCORD_SECRET: &str = "discord-SECRET-abcdef0123456789";
const SLACK_SECRET: &str = "slack-SECRET-T000-B000-XXXX";

#[derive(Default)]
struct Inbox {
    /// (path, body) of every request, in arrival order.
    got: Mutex<Vec<(String, Value)>>,
    /// Answer this many requests with 500 before succeeding.
    fail_first: AtomicUsize,
    /// Answer every request with this status instead (0 = no override).
    always: AtomicUsize,
}

impl Inbox {
    fn bodies(&self, prefix: &str) -> Vec<Value> {
        self.got
            .lock()
            .map(|g| {
                g.iter()
                    .filter(|(p, _)| p.starts_with(prefix))
                    .map(|(_, b)| b.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
    fn count(&self) -> usize {
        self.got.lock().map(|g| g.len()).unwrap_or(0)
    }
}

async fn handler(State(inbox): State<Arc<Inbox>>, uri: Uri, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    inbox.got.lock().unwrap().push((uri.path().to_string(), v));
    let always = inbox.always.load(Ordering::SeqCst);
    if always != 0 {
        return StatusCode::from_u16(always as u16).unwrap();
    }
    if inbox
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::OK
}

async fn receiver() -> (String, Arc<Inbox>) {
    let inbox = Arc::new(Inbox::default());
    let app = Router::new().fallback(handler).with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), inbox)
}

fn env(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    move |k: &str| m.get(k).cloned()
}

fn all_channels(base: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            keys::ALERT_WEBHOOK_URL,
            format!("{base}/hook/{HOOK_SECRET}"),
        ),
        (keys::ALERT_TELEGRAM_BOT_TOKEN, TG_TOKEN.to_string()),
        (keys::ALERT_TELEGRAM_CHAT_ID, "-1001234567890".to_string()),
        (keys::ALERT_TELEGRAM_API_BASE, format!("{base}/tg/")),
        (
            keys::ALERT_DISCORD_WEBHOOK_URL,
            format!("{base}/discord/{DISCORD_SECRET}"),
        ),
        (
            keys::ALERT_SLACK_WEBHOOK_URL,
            format!("{base}/slack/{SLACK_SECRET}"),
        ),
    ]
}

/// Alerts to the generic webhook at `{base}/hook` only.
fn hook(base: &str, mode: TradingMode) -> AlertConfig {
    AlertConfig::from_lookup(
        env(&[(keys::ALERT_WEBHOOK_URL, format!("{base}/hook"))]),
        mode,
    )
    .unwrap()
}

fn fast() -> Tuning {
    Tuning {
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        request_timeout: Duration::from_secs(2),
        ..Tuning::default()
    }
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn breaker_trip() -> Alert {
    let ev = EngineEvent::Breaker(BreakerEvent {
        ts_ms: 1_735_000_000_000,
        scope: BreakerScope::Mode(StrategyMode::Scalp),
        change: BreakerChange::Tripped {
            reason: TripReason::HourlyLoss,
            until_ms: 1_735_001_800_000,
        },
    });
    Alert::from_engine_event(&ev).unwrap()
}

/// A representative alert of each kind, with typed details where the kind has them.
fn sample(kind: Kind) -> Alert {
    let a = Alert::new(kind, 1_735_000_000_000);
    match kind {
        Kind::Control(ControlAlert::BreakerTrip) => breaker_trip(),
        Kind::Engine(AlertKind::DailyLossLimit) => a.with(Details::DailyLoss {
            loss: Notional::parse("20.5").unwrap(),
            limit: Notional::parse("20").unwrap(),
        }),
        Kind::Control(ControlAlert::ExchangeErrorRate)
        | Kind::Engine(AlertKind::ExchangeErrors) => a.with(Details::ErrorRate {
            errors: 42,
            window_secs: 60,
            threshold: 10,
        }),
        Kind::Control(ControlAlert::UnusualActivity) => a
            .about(Subject::Symbol(Symbol::new("BTCUSDT").unwrap()))
            .with(Details::Activity {
                what: Activity::OrderRate,
                observed: 900,
                normal: 30,
            }),
        Kind::Control(ControlAlert::EngineStopped) => a.with(Details::Heartbeat { age_ms: 15_000 }),
        Kind::Engine(AlertKind::FeedStale) => {
            a.about(Subject::Symbol(Symbol::new("ETHUSDT").unwrap()))
        }
        _ => a,
    }
}

#[tokio::test]
async fn each_channel_gets_its_format() {
    let (base, inbox) = receiver().await;
    let cfg = AlertConfig::from_lookup(env(&all_channels(&base)), TradingMode::Live).unwrap();
    assert_eq!(cfg.channels.len(), 4);
    let (d, _h) = AlertDispatcher::spawn_with(cfg, fast()).unwrap();
    d.send(breaker_trip()).unwrap();
    wait_until("4 deliveries", || d.stats().delivered == 4).await;

    let hook = inbox.bodies(&format!("/hook/{HOOK_SECRET}"));
    assert_eq!(hook.len(), 1);
    let h = &hook[0];
    assert_eq!(h["source"], "aegis");
    assert_eq!(h["environment"], "live");
    assert_eq!(h["kind"], "breaker_trip");
    assert_eq!(h["severity"], "warning");
    assert_eq!(h["title"], "Circuit breaker tripped");
    assert_eq!(h["ts_ms"], 1_735_000_000_000u64);
    assert_eq!(h["details"]["type"], "breaker");
    assert_eq!(h["details"]["reason"], "hourly_loss");
    assert_eq!(h["details"]["until_ms"], 1_735_001_800_000u64);
    assert!(h["message"]
        .as_str()
        .unwrap()
        .contains("breaker mode scalp: loss in the last hour reached CIRCUIT_MAX_LOSS_PER_HOUR"));
    assert!(h["message"]
        .as_str()
        .unwrap()
        .contains("entries resume at 2024-12-24 00:56:40 UTC"));

    let tg = inbox.bodies(&format!("/tg/bot{TG_TOKEN}/sendMessage"));
    assert_eq!(
        tg.len(),
        1,
        "telegram posts to {{base}}/bot<token>/sendMessage"
    );
    assert_eq!(tg[0]["chat_id"], "-1001234567890");
    let text = tg[0]["text"].as_str().unwrap();
    assert!(text.starts_with("[LIVE "), "{text}");
    assert!(text.contains("WARNING: Circuit breaker tripped"), "{text}");

    // Discord and Slack: one message each, its text in the field the service reads.
    for (path, field) in [
        (format!("/discord/{DISCORD_SECRET}"), "content"),
        (format!("/slack/{SLACK_SECRET}"), "text"),
    ] {
        let got = inbox.bodies(&path);
        assert_eq!(got.len(), 1, "{path}");
        let text = got[0][field].as_str().unwrap();
        assert!(text.contains("Circuit breaker tripped"), "{path}: {text}");
    }
    let discord = inbox.bodies(&format!("/discord/{DISCORD_SECRET}"));
    assert_eq!(
        discord[0]["allowed_mentions"]["parse"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn every_trigger_kind_is_delivered_with_its_name() {
    let (base, inbox) = receiver().await;
    let mut cfg = hook(&base, TradingMode::Testnet);
    cfg.max_per_minute = 0;
    let (d, _h) = AlertDispatcher::spawn_with(cfg, fast()).unwrap();
    for k in Kind::ALL {
        d.send(sample(k)).unwrap();
    }
    wait_until("all kinds", || inbox.count() == Kind::ALL.len()).await;
    let got: Vec<String> = inbox
        .bodies("/hook")
        .iter()
        .map(|b| b["kind"].as_str().unwrap().to_string())
        .collect();
    for k in Kind::ALL {
        assert!(got.contains(&k.name().to_string()), "missing {}", k.name());
    }
    // Names are unique, so a receiver can route on them.
    let mut names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Kind::ALL.len());
    // The guide's §6.2 triggers each map to a kind.
    for needed in [
        "engine_stopped",
        "database_lost",
        "exchange_error_rate",
        "unusual_activity",
        "breaker_trip",
        "daily_loss_limit",
        // Also a revoked key: Binance refuses it with the same -2015 as an invalid one.
        "key_invalid",
        "key_changed",
    ] {
        assert!(got.iter().any(|g| g == needed), "{needed}");
    }
}

#[test]
fn engine_events_map_to_alerts() {
    let a = Alert::from_engine_event(&EngineEvent::Alert {
        ts_ms: 5,
        kind: AlertKind::KeyInvalid,
    })
    .unwrap();
    assert_eq!(a.kind, Kind::Engine(AlertKind::KeyInvalid));
    assert_eq!(a.severity, Severity::Critical);

    let daily = Alert::from_engine_event(&EngineEvent::Breaker(BreakerEvent {
        ts_ms: 1,
        scope: BreakerScope::Global,
        change: BreakerChange::Tripped {
            reason: TripReason::DailyLoss,
            until_ms: 2,
        },
    }))
    .unwrap();
    assert_eq!(daily.kind, Kind::Engine(AlertKind::DailyLossLimit));
    assert_eq!(daily.subject, Subject::Breaker(BreakerScope::Global));

    let resumed = Alert::from_engine_event(&EngineEvent::Breaker(BreakerEvent {
        ts_ms: 1,
        scope: BreakerScope::Global,
        change: BreakerChange::Resumed,
    }))
    .unwrap();
    assert_eq!(resumed.kind, Kind::Control(ControlAlert::BreakerResumed));
    assert_eq!(resumed.severity, Severity::Info);

    let stopped = Alert::from_engine_event(&EngineEvent::State {
        ts_ms: 1,
        state: EngineState::Stopped,
    })
    .unwrap();
    assert_eq!(stopped.kind, Kind::Control(ControlAlert::EngineStopped));
    assert!(Alert::from_engine_event(&EngineEvent::Heartbeat { ts_ms: 1, seq: 1 }).is_none());
}

#[tokio::test]
async fn retries_on_500_with_backoff_then_succeeds() {
    let (base, inbox) = receiver().await;
    inbox.fail_first.store(2, Ordering::SeqCst);
    let cfg = AlertConfig::from_lookup(
        env(&[(keys::ALERT_SLACK_WEBHOOK_URL, format!("{base}/slack/x"))]),
        TradingMode::Paper,
    )
    .unwrap();
    let (d, _h) = AlertDispatcher::spawn_with(cfg, fast()).unwrap();
    let t0 = Instant::now();
    d.send(sample(Kind::Control(ControlAlert::DatabaseLost)))
        .unwrap();
    wait_until("delivery", || d.stats().delivered == 1).await;
    let s = d.stats();
    assert_eq!(s.attempts, 3, "{s:?}");
    assert_eq!(s.failed, 0);
    assert_eq!(inbox.count(), 3);
    // Two backoffs: 10 ms then 20 ms.
    assert!(t0.elapsed() >= Duration::from_millis(30));
}

#[tokio::test]
async fn gives_up_after_max_attempts_and_never_retries_a_4xx() {
    /// One alert to a webhook that answers every request with `status`, until the dispatcher gives up: (attempts
    /// it counted, requests the webhook saw).
    async fn attempts_until_failed(status: usize, tuning: Tuning) -> (u64, usize) {
        let (base, inbox) = receiver().await;
        inbox.always.store(status, Ordering::SeqCst);
        let (d, _h) = AlertDispatcher::spawn_with(hook(&base, TradingMode::Paper), tuning).unwrap();
        d.send(sample(Kind::Control(ControlAlert::KeyChanged)))
            .unwrap();
        wait_until(&format!("failure on {status}"), || d.stats().failed == 1).await;
        (d.stats().attempts, inbox.count())
    }
    let tuning = Tuning {
        max_attempts: 4,
        ..fast()
    };
    assert_eq!(attempts_until_failed(503, tuning).await, (4, 4));
    assert_eq!(attempts_until_failed(404, tuning).await, (1, 1));
}

#[test]
fn backoff_doubles_and_is_capped() {
    let t = Tuning {
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(700),
        ..Tuning::default()
    };
    let v: Vec<u128> = (1..=5).map(|n| backoff(&t, n).as_millis()).collect();
    assert_eq!(v, vec![100, 200, 400, 700, 700]);
}

#[tokio::test]
async fn duplicates_within_the_window_are_suppressed() {
    let (base, inbox) = receiver().await;
    let mut cfg = AlertConfig::from_lookup(
        env(&[
            (keys::ALERT_WEBHOOK_URL, format!("{base}/hook")),
            (keys::ALERT_DEDUP_SECONDS, "300".into()),
        ]),
        TradingMode::Live,
    )
    .unwrap();
    assert_eq!(cfg.dedup_window, Duration::from_secs(300));
    cfg.max_per_minute = 0;
    let (d, _h) = AlertDispatcher::spawn_with(cfg.clone(), fast()).unwrap();
    let feed = |sym: &str| {
        Alert::new(Kind::Engine(AlertKind::FeedStale), 1)
            .about(Subject::Symbol(Symbol::new(sym).unwrap()))
    };
    for _ in 0..5 {
        d.send(feed("BTCUSDT")).unwrap();
    }
    d.send(feed("ETHUSDT")).unwrap(); // another subject: not a duplicate
    d.send(sample(Kind::Control(ControlAlert::DatabaseLost)))
        .unwrap(); // another kind
    wait_until("3 deliveries", || d.stats().delivered == 3).await;
    wait_until("all processed", || {
        let s = d.stats();
        s.accepted + s.deduplicated == 7
    })
    .await;
    assert_eq!(d.stats().deduplicated, 4);
    assert_eq!(inbox.count(), 3);

    // After the window the same alert goes out again.
    cfg.dedup_window = Duration::from_millis(60);
    let (d2, _h2) = AlertDispatcher::spawn_with(cfg, fast()).unwrap();
    d2.send(feed("BTCUSDT")).unwrap();
    d2.send(feed("BTCUSDT")).unwrap();
    wait_until("first", || {
        let s = d2.stats();
        s.delivered == 1 && s.deduplicated == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    d2.send(feed("BTCUSDT")).unwrap();
    wait_until("second after window", || d2.stats().delivered == 2).await;
}

#[tokio::test]
async fn rate_limit_caps_alerts_per_minute_and_reports_the_suppressed() {
    let (base, inbox) = receiver().await;
    let cfg = AlertConfig::from_lookup(
        env(&[
            (keys::ALERT_WEBHOOK_URL, format!("{base}/hook")),
            (keys::ALERT_MAX_PER_MINUTE, "3".into()),
            (keys::ALERT_DEDUP_SECONDS, "0".into()),
        ]),
        TradingMode::Paper,
    )
    .unwrap();
    let (d, _h) = AlertDispatcher::spawn_with(cfg, fast()).unwrap();
    for k in Kind::ALL.iter().take(10) {
        d.send(sample(*k)).unwrap();
    }
    wait_until("processed", || {
        let s = d.stats();
        s.accepted + s.rate_limited == 10
    })
    .await;
    wait_until("delivered", || d.stats().delivered == 3).await;
    let s = d.stats();
    assert_eq!(s.accepted, 3, "{s:?}");
    assert_eq!(s.rate_limited, 7);
    assert_eq!(inbox.count(), 3);
}

#[test]
fn token_bucket_refills_at_the_configured_rate() {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(60, t0); // one per second
    for _ in 0..60 {
        assert!(b.take(t0));
    }
    assert!(!b.take(t0));
    assert!(!b.take(t0 + Duration::from_millis(500)));
    assert!(b.take(t0 + Duration::from_millis(1600)));
    assert!(!b.take(t0 + Duration::from_millis(1700)));
    let mut unlimited = TokenBucket::new(0, t0);
    assert!((0..10_000).all(|_| unlimited.take(t0)));
}

#[tokio::test(flavor = "current_thread")]
async fn send_never_blocks_and_drops_when_the_queue_is_full() {
    let (base, _inbox) = receiver().await;
    let cfg = hook(&base, TradingMode::Paper);
    let tuning = Tuning {
        queue_capacity: 4,
        ..fast()
    };
    let (d, _h) = AlertDispatcher::spawn_with(cfg, tuning).unwrap();
    // On a current-thread runtime the dispatcher task cannot run while this loop holds the thread, so the queue
    // fills: send must return an error at once instead of waiting.
    let t0 = Instant::now();
    let results: Vec<_> = (0..100)
        .map(|_| d.send(sample(Kind::Control(ControlAlert::UnusualActivity))))
        .collect();
    // A send that waited would never return here (nothing else can run); the bound only catches slowness, and
    // is loose so that a loaded CI machine cannot fail it.
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 4);
    assert!(results[4..]
        .iter()
        .all(|r| matches!(r, Err(DispatchError::QueueFull))));
    assert_eq!(d.stats().dropped_full, 96);
}

#[tokio::test]
async fn no_secret_in_any_alert() {
    let (base, inbox) = receiver().await;
    let secrets = [TG_TOKEN, HOOK_SECRET, DISCORD_SECRET, SLACK_SECRET];
    let cfg = AlertConfig::from_lookup(env(&all_channels(&base)), TradingMode::Live).unwrap();
    // Debug of the config and of the dispatcher shows no secret either.
    let dbg = format!("{cfg:?}");
    for s in secrets {
        assert!(!dbg.contains(s), "config Debug leaks {s}");
    }
    // Every kind, through every channel's formatter.
    let ctx = format::Context {
        environment: cfg.environment,
        instance: &cfg.instance,
        suppressed: 3,
    };
    for k in Kind::ALL {
        let a = sample(k);
        for ch in &cfg.channels {
            let body = format::body(ch, &a, &ctx).to_string();
            for s in secrets {
                assert!(
                    !body.contains(s),
                    "{} body for {} leaks a secret",
                    ch.name(),
                    k.name()
                );
            }
        }
    }
    // And what actually went over the wire (bodies; the token is only in Telegram's URL path by design).
    let mut cfg = cfg;
    cfg.max_per_minute = 0;
    let (d, _h) = AlertDispatcher::spawn_with(cfg, fast()).unwrap();
    for k in Kind::ALL {
        d.send(sample(k)).unwrap();
    }
    let want = Kind::ALL.len() as u64 * 4;
    wait_until("all deliveries", || d.stats().delivered == want).await;
    for (_, body) in inbox.got.lock().unwrap().iter() {
        let b = body.to_string();
        for s in secrets {
            assert!(!b.contains(s), "wire body leaks a secret: {b}");
        }
    }
    assert!(!format!("{d:?}").contains(TG_TOKEN));
}

#[test]
fn config_errors_name_the_key_but_never_the_secret() {
    let bad = AlertConfig::from_lookup(
        env(&[(
            keys::ALERT_DISCORD_WEBHOOK_URL,
            "http://discord.example/api/webhooks/1/SECRETPART".into(),
        )]),
        TradingMode::Live,
    )
    .unwrap_err();
    assert_eq!(bad.key, keys::ALERT_DISCORD_WEBHOOK_URL);
    assert!(!bad.message().contains("SECRETPART"), "{}", bad.message());
    assert!(bad.message().contains("https://"));

    let not_url = AlertConfig::from_lookup(
        env(&[(
            keys::ALERT_SLACK_WEBHOOK_URL,
            "hooks.slack.com/SECRETPART".into(),
        )]),
        TradingMode::Live,
    )
    .unwrap_err();
    assert!(!not_url.message().contains("SECRETPART"));

    let half_tg = AlertConfig::from_lookup(
        env(&[(keys::ALERT_TELEGRAM_BOT_TOKEN, TG_TOKEN.into())]),
        TradingMode::Live,
    )
    .unwrap_err();
    assert_eq!(half_tg.key, keys::ALERT_TELEGRAM_CHAT_ID);
    assert!(!half_tg.message().contains(TG_TOKEN));

    let bad_token = AlertConfig::from_lookup(
        env(&[
            (keys::ALERT_TELEGRAM_BOT_TOKEN, "123:abc/../x?y".into()),
            (keys::ALERT_TELEGRAM_CHAT_ID, "42".into()),
        ]),
        TradingMode::Live,
    )
    .unwrap_err();
    assert_eq!(bad_token.key, keys::ALERT_TELEGRAM_BOT_TOKEN);
    assert!(!bad_token.message().contains("abc/../x"));

    let bad_num = AlertConfig::from_lookup(
        env(&[(keys::ALERT_MAX_PER_MINUTE, "lots".into())]),
        TradingMode::Live,
    )
    .unwrap_err();
    assert_eq!(bad_num.key, keys::ALERT_MAX_PER_MINUTE);

    // Defaults: no channels, 300 s de-dup, 20 per minute; https accepted; http to other hosts only when allowed.
    let d = AlertConfig::from_lookup(env(&[]), TradingMode::Paper).unwrap();
    assert!(d.channels.is_empty());
    assert_eq!((d.dedup_window.as_secs(), d.max_per_minute), (300, 20));
    assert!(AlertConfig::from_lookup(
        env(&[(
            keys::ALERT_WEBHOOK_URL,
            "https://hooks.example.com/x".into()
        )]),
        TradingMode::Paper
    )
    .is_ok());
    assert!(AlertConfig::from_lookup(
        env(&[
            (keys::ALERT_WEBHOOK_URL, "http://10.0.0.5/x".into()),
            (keys::ALERT_ALLOW_HTTP, "true".into())
        ]),
        TradingMode::Paper
    )
    .is_ok());
}

#[test]
fn texts_carry_environment_severity_and_action() {
    let ctx = format::Context {
        environment: TradingMode::Live,
        instance: "vps-1",
        suppressed: 2,
    };
    let a = sample(Kind::Engine(AlertKind::DailyLossLimit));
    let t = format::text(&a, &ctx);
    assert!(
        t.starts_with("[LIVE vps-1] WARNING: Daily loss limit reached"),
        "{t}"
    );
    assert!(t.contains("today's realized loss 20.5"), "{t}");
    assert!(
        t.contains("Action: no new entries until the next UTC day"),
        "{t}"
    );
    assert!(t.contains("2 earlier alert(s) suppressed"), "{t}");
    assert_eq!(config::sanitize_label("my host;rm -rf /"), "myhostrm-rf");
}
