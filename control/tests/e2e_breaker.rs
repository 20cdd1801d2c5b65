//! End to end, real `aegis` binary: a circuit-breaker trip survives a restart (the contract), and only an
//! authenticated admin's reset — journaled and audited — clears it. Also: the config errors of the modes and
//! the dashboard reach the operator as one line with exit code 2.

use aegis_control::journal::{self, JournalReader, JournalRecord};
use aegis_shared::event::{BreakerChange, BreakerScope};
use aegis_shared::{Command as BotCommand, EngineEvent};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const JWT: &str = "e2e-breaker-Hq7vX2mP9sL4kR8tW3nB6cY1";
const ADMIN: (&str, &str) = ("ops", "breaker-Reset-Operator-77");

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "aegis-e2e-{tag}-{}-{}",
        std::process::id(),
        journal::now_ms()
    ));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Bot {
    child: Child,
    dir: PathBuf,
    port: u16,
    run: u32,
}

impl Bot {
    fn start(dir: &Path, port: u16, run: u32, env: &[(&str, &str)], args: &[&str]) -> Bot {
        let out = fs::File::create(dir.join(format!("stdout-{run}.txt"))).unwrap();
        let err = fs::File::create(dir.join(format!("stderr-{run}.txt"))).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aegis"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATA_DIR", dir.join("data"))
            .env("API_PORT", port.to_string())
            .env("JWT_SECRET", JWT)
            .current_dir(dir)
            .arg("--env-file")
            .arg(dir.join(".env"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Bot {
            child: cmd.spawn().unwrap(),
            dir: dir.to_path_buf(),
            port,
            run,
        }
    }

    fn stdout(&self) -> String {
        fs::read_to_string(self.dir.join(format!("stdout-{}.txt", self.run))).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join(format!("stderr-{}.txt", self.run))).unwrap_or_default()
    }

    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    fn stop_cleanly(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let s = self
            .wait(Duration::from_secs(6))
            .expect("no exit after SIGTERM");
        assert_eq!(
            s.code(),
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn client() -> reqwest::Client {
    // Self-signed certificate of a local test bot; the certificate pin is checked in e2e_run.rs.
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

async fn health(c: &reqwest::Client, bot: &Bot) -> Option<Value> {
    c.get(bot.url("/api/health"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

async fn wait_health<F: Fn(&Value) -> bool>(
    c: &reqwest::Client,
    bot: &mut Bot,
    limit: Duration,
    what: &str,
    ok: F,
) -> Value {
    let t = Instant::now();
    let mut last = Value::Null;
    while t.elapsed() < limit {
        if let Some(s) = bot.child.try_wait().unwrap() {
            panic!(
                "bot exited ({s}) while waiting for {what}\nstdout:\n{}\nstderr:\n{}",
                bot.stdout(),
                bot.stderr()
            );
        }
        if let Some(h) = health(c, bot).await {
            if ok(&h) {
                return h;
            }
            last = h;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "timed out after {limit:?} waiting for {what}; last health {last}\nstdout:\n{}",
        bot.stdout()
    );
}

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

async fn login(c: &reqwest::Client, bot: &Bot) -> String {
    let r = c
        .post(bot.url("/api/auth/login"))
        .json(&json!({"username": ADMIN.0, "password": ADMIN.1, "bearer": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    v["token"].as_str().unwrap().to_string()
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

fn quiet_feed(dir: &Path) -> PathBuf {
    // One message of a symbol the bot does not trade: the restarted bot makes no new trades, so nothing but the
    // journal decides the breaker state it shows.
    let p = dir.join("quiet.jsonl");
    fs::write(
        &p,
        "{\"stream\":\"xrpeth@aggTrade\",\"data\":{\"e\":\"aggTrade\",\"E\":1570752000000,\"s\":\"XRPETH\",\"a\":1,\"p\":\"0.00150000\",\"q\":\"10\",\"f\":1,\"l\":1,\"T\":1570752000000,\"m\":true}}\n",
    )
    .unwrap();
    p
}

#[test]
fn a_trip_survives_restart_and_only_an_audited_admin_reset_clears_it() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(body());
}

async fn body() {
    let dir = temp_dir("breaker");
    let port = free_port();
    let c = client();
    // One losing trade trips it; the cooldown (7 days) outlasts the test, so only a reset can end it.
    let trip_env = [
        ("SIM_RATE", "20000"),
        ("SIM_SPEED", "3000"),
        ("CIRCUIT_MAX_CONSECUTIVE_LOSSES", "1"),
        ("CIRCUIT_COOLDOWN_MINUTES", "10080"),
    ];
    let mut bot = Bot::start(&dir, port, 1, &trip_env, &[]);
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
    let r = c
        .post(bot.url("/api/auth/register"))
        .json(&json!({"username": ADMIN.0, "password": ADMIN.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text().await);
    // The dashboard's view agrees, and /api/status needs a login.
    let token = login(&c, &bot).await;
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
    let quiet = quiet_feed(&dir);
    let replay = ["run", "--replay", quiet.to_str().unwrap()];
    let mut bot = Bot::start(&dir, port, 2, &[], &replay);
    let h = wait_health(
        &c,
        &mut bot,
        Duration::from_secs(15),
        "the engine after the restart",
        |h| h["engine"]["state"] == "running",
    )
    .await;
    assert_eq!(global_until(&h), Some(until), "{h}");
    assert!(
        bot.stdout().contains("still tripped"),
        "the restored trip is logged"
    );
    let token = login(&c, &bot).await;
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
    let r = c
        .post(bot.url("/api/control/breaker/reset"))
        .bearer_auth(&token)
        .json(&json!({"scope": "everything"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    for scope in &tripped {
        let r = c
            .post(bot.url("/api/control/breaker/reset"))
            .bearer_auth(&token)
            .json(&json!({"scope": scope, "reason": "e2e reset"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{scope}: {:?}", r.text().await);
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
    let mut bot = Bot::start(&dir, port, 3, &[], &replay);
    let h = wait_health(
        &c,
        &mut bot,
        Duration::from_secs(15),
        "the engine after the second restart",
        |h| h["engine"]["state"] == "running",
    )
    .await;
    assert_eq!(h["breaker"]["state"], "ok", "{h}");
    bot.stop_cleanly();
    let _ = fs::remove_dir_all(&dir);
}

fn run_expect_exit(dir: &Path, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut bot = Bot::start(dir, free_port(), 1, env, &[]);
    let s = bot.wait(Duration::from_secs(10)).expect("bot did not exit");
    (s.code(), bot.stdout(), bot.stderr())
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
        let (code, out, err) = run_expect_exit(&dir, env);
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
