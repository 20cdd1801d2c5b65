//! End to end, real `aegis` binary: a circuit-breaker trip survives a restart (the contract), and only an
//! authenticated admin's reset — journaled and audited — clears it. Also: the config errors of the modes and
//! the dashboard reach the operator as one line with exit code 2.

mod support;

use aegis_control::journal::{self, JournalReader, JournalRecord};
use aegis_shared::event::{BreakerChange, BreakerScope};
use aegis_shared::{Command as BotCommand, EngineEvent};
use serde_json::{json, Value};
use std::fs;
use std::path::Path;
use std::time::Duration;
use support::{
    bearer_token, free_port, post, quiet_feed, register, rt, temp_dir, wait_health, Bot, Launcher,
};

const JWT: &str = "e2e-breaker-Hq7vX2mP9sL4kR8tW3nB6cY1";
const ADMIN: (&str, &str) = ("ops", "breaker-Reset-Operator-77");

const LAUNCH: Launcher = Launcher {
    env: &[("JWT_SECRET", JWT)],
    stop_wait: Duration::from_secs(6),
    stop_budget: None,
    client_timeout: Duration::from_secs(3),
    // Self-signed certificate of a local test bot; the certificate pin is checked in e2e_run.rs.
    pin_cert: false,
};

/// The `until_ms` of the tripped global breaker in a health body.
fn global_until(h: &Value) -> Option<u64> {
    h["breaker"]["tripped"]
        .as_array()?
        .iter()
        .find(|b| b["scope"] == "global")
        .and_then(|b| b["until_ms"].as_u64())
}

/// `global` or the mode's name, from the dashboard's `{"scope": "global"}` / `{"scope": "mode", "mode": ..}`.
fn scope_name(v: &Value) -> String {
    v.get("mode")
        .or_else(|| v.get("scope"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

async fn authed(c: &reqwest::Client, bot: &Bot, token: &str, path: &str) -> (u16, Value) {
    let r = c
        .get(bot.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Restart number `run` on a feed with no trades, so only the journal decides the breaker state: the bot once its
/// engine runs, and that health.
async fn restart_quiet(c: &reqwest::Client, dir: &Path, port: u16, run: u32) -> (Bot, Value) {
    let quiet = quiet_feed(dir);
    let replay = ["run", "--replay", quiet.to_str().unwrap()];
    let mut bot = LAUNCH.start(dir, port, run, &[], &replay);
    let h = wait_health(
        c,
        &mut bot,
        Duration::from_secs(15),
        &format!("the engine after restart {run}"),
        |h| h["engine"]["state"] == "running",
    )
    .await;
    (bot, h)
}

#[test]
fn a_trip_survives_restart_and_only_an_audited_admin_reset_clears_it() {
    rt().block_on(body());
}

async fn body() {
    let dir = temp_dir("breaker");
    let port = free_port();
    let c = LAUNCH.client();
    // One losing trade trips it; the cooldown (7 days) outlasts the test, so only a reset can end it.
    let trip_env = [
        ("SIM_RATE", "20000"),
        ("SIM_SPEED", "3000"),
        ("CIRCUIT_MAX_CONSECUTIVE_LOSSES", "1"),
        ("CIRCUIT_COOLDOWN_MINUTES", "10080"),
    ];
    let mut bot = LAUNCH.start(&dir, port, 1, &trip_env, &[]);
    let h = wait_health(
        &c,
        &mut bot,
        Duration::from_secs(30),
        "a tripped global breaker",
        |h| global_until(h).is_some(),
    )
    .await;
    let until = global_until(&h).unwrap();
    assert_eq!(h["breaker"]["state"], "tripped");
    assert!(h["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == "circuit breaker tripped"));
    // The first account becomes admin (from loopback).
    register(&c, &bot, ADMIN).await;
    // The dashboard's view agrees, and /api/status needs a login.
    let token = bearer_token(&c, &bot, ADMIN).await;
    let (code, _) = authed(&c, &bot, "bogus", "/api/status").await;
    assert_eq!(code, 401);
    let (code, b) = authed(&c, &bot, &token, "/api/breakers").await;
    assert_eq!(code, 200);
    let g = b["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| scope_name(&x["scope"]) == "global")
        .unwrap()
        .clone();
    assert_eq!(g["tripped"], true, "{b}");
    assert_eq!(g["until_ms"].as_u64(), Some(until));
    bot.stop_cleanly();

    // Restart: still tripped, same end time, on the health check and on the dashboard.
    let (mut bot, h) = restart_quiet(&c, &dir, port, 2).await;
    assert_eq!(global_until(&h), Some(until), "{h}");
    assert!(
        bot.stdout().contains("still tripped"),
        "the restored trip is logged"
    );
    let token = bearer_token(&c, &bot, ADMIN).await;
    let (_, b) = authed(&c, &bot, &token, "/api/breakers").await;
    let tripped: Vec<String> = b["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["tripped"] == true)
        .map(|x| scope_name(&x["scope"]))
        .collect();
    assert!(tripped.iter().any(|s| s == "global"), "{b}");
    // The status endpoint keeps the skeleton's fields beside the dashboard's.
    let (code, s) = authed(&c, &bot, &token, "/api/status").await;
    assert_eq!(code, 200);
    assert_eq!(s["mode"], "PAPER");
    assert!(s["counts"]["fills"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["status"]["engine"].is_string(), "{s}");

    // A bad request changes nothing; an admin reset of every tripped breaker clears the trip.
    let reset = "/api/control/breaker/reset";
    let (code, body) = post(
        &c,
        &bot,
        reset,
        Some(&token),
        &json!({"scope": "everything"}),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    for scope in &tripped {
        let (code, body) = post(
            &c,
            &bot,
            reset,
            Some(&token),
            &json!({"scope": scope, "reason": "e2e reset"}),
        )
        .await;
        assert_eq!(code, 200, "{scope}: {body}");
    }
    let h = wait_health(
        &c,
        &mut bot,
        Duration::from_secs(10),
        "the breaker cleared",
        |h| h["breaker"]["state"] == "ok",
    )
    .await;
    assert!(global_until(&h).is_none());
    let (_, audit) = authed(&c, &bot, &token, "/api/audit").await;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "control.breaker_reset" && e["actor"] == ADMIN.0),
        "{audit}"
    );
    bot.stop_cleanly();

    // The journal holds the command (before the engine acted on it) and the engine's Reset event.
    let mut reader = JournalReader::open(&journal::dir_in(&dir.join("data"))).unwrap();
    let recs: Vec<JournalRecord> = reader
        .records_from(0)
        .unwrap()
        .map(|e| e.unwrap().record)
        .collect();
    let cmd_at = recs
        .iter()
        .position(|r| {
            matches!(r, JournalRecord::Command(c)
            if c.command == (BotCommand::ResetBreaker { scope: BreakerScope::Global }) && c.source == format!("api:{}@127.0.0.1", ADMIN.0))
        })
        .expect("reset command journaled");
    let reset_at = recs
        .iter()
        .position(|r| {
            matches!(r, JournalRecord::Engine(EngineEvent::Breaker(b))
            if b.scope == BreakerScope::Global && b.change == BreakerChange::Reset)
        })
        .expect("reset event journaled");
    assert!(cmd_at < reset_at);

    // And a reset survives a restart too.
    let (mut bot, h) = restart_quiet(&c, &dir, port, 3).await;
    assert_eq!(h["breaker"]["state"], "ok", "{h}");
    bot.stop_cleanly();
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn allocation_and_dashboard_config_errors_are_one_line_exit_2() {
    let dir = temp_dir("alloccfg");
    let alloc = dir.join("modes.json");
    fs::write(
        &alloc,
        r#"{"mode_allocation": {"ultra_fast_scalp_percent": 40, "scalp_percent": 40, "swing_percent": 25}}"#,
    )
    .unwrap();
    let a = alloc.to_str().unwrap();
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 4] = [
        (
            &[("MODE_ALLOCATION_FILE", a)],
            &["MODE_ALLOCATION_FILE", "modes.json", "over 100", "lower"],
        ),
        // Paper mode generates a per-installation secret when none is set (config.rs); testnet/live never do.
        (
            &[("JWT_SECRET", ""), ("TRADING_MODE", "testnet")],
            &["JWT_SECRET", "openssl rand"],
        ),
        (
            &[("AUTH_ENABLED", "false"), ("BIND_ADDR", "0.0.0.0")],
            &["BIND_ADDR", "loopback"],
        ),
        (
            &[("MODES_ENABLED", "scalp,yolo")],
            &["MODES_ENABLED", "yolo"],
        ),
    ];
    for (env, want) in cases {
        let (code, out, err) = LAUNCH.run_expect_exit(&dir, env);
        assert_eq!(code, Some(2), "{env:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line expected:\n{err}");
        for w in want {
            assert!(err.contains(w), "{w:?} missing in: {err}");
        }
        assert!(!err.contains(JWT));
        assert!(out.is_empty(), "nothing may start: {out}");
        assert!(!dir.join("data").exists(), "nothing may start");
    }
    let _ = fs::remove_dir_all(&dir);
}
