//! Persistence end to end with the real `aegis` binary and the real Postgres (127.0.0.1:5432, user postgres,
//! trust auth; each test makes and drops its own database):
//! - a run with `DATABASE_URL` stores every journaled fill (count and exact sums) by the time SIGTERM is done, and
//!   dashboard logins, controls (`api:<user>@<ip>`) and requests land in the audit trail and the access log, and
//!   the start's settings in `config_changes` (secrets as `***`);
//! - `kill -9` in a burst, restart: the writer catches up to the same equality;
//! - a dead database does not stop trading: health is degraded, database down, one `database_lost` alert reaches
//!   the operator's webhook, and no password anywhere;
//! - `aegis audit verify` passes on a fresh chain and names the tampered row;
//! - `aegis export trades` writes one CSV row per stored fill with exact decimals.
//!
//! Bot tests hold `support::serial`: the engine busy-polls a core, two at once on 2 cores would only measure each
//! other.

mod db_support;
mod support;

use aegis_control::journal::{self, JournalReader};
use db_support::{column, one, TestDb, Totals};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{
    bearer_token, free_port, get, login, post, quiet_feed, register, rt, serial, text, wait_for,
    AlertHook, Launcher, StatusPoll, FAST,
};

const JWT: &str = "e2e-db-test-Zp4Lq8Wx2Nc7Rv5Tb9Hm3Ks6";
const ADMIN: (&str, &str) = ("dbops", "Persist-Operator-2026-xyz");

const LAUNCH: Launcher = Launcher {
    env: &[("JWT_SECRET", JWT)],
    stop_wait: Duration::from_secs(7),
    // The 5 s shutdown budget.
    stop_budget: Some(Duration::from_secs(5)),
    client_timeout: Duration::from_secs(3),
    pin_cert: true,
};

fn fills_of(status: &Value) -> u64 {
    status["counts"]["fills"].as_u64().unwrap_or(0)
}

/// What the journal in `dir/data` holds, as the writer would store it.
fn journal_totals(dir: &Path) -> Totals {
    let mut r = JournalReader::open(&journal::dir_in(&dir.join("data"))).unwrap();
    let mut t = Totals::default();
    for e in r.records_from(0).unwrap() {
        t.add(&e.unwrap().record);
    }
    t
}

fn aegis(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aegis"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", dir.join("data"))
        .current_dir(dir)
        .arg("--env-file")
        .arg(dir.join(".env"))
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn sigterm_leaves_every_fill_in_postgres_and_the_dashboard_audits_there() {
    serial(async {
        let t0 = Instant::now();
        let db = TestDb::create("e2e_run").await;
        let dir = db_support::temp_dir("e2e-run");
        let port = free_port();
        let c = LAUNCH.client();
        let url = db.url();
        let mut env = FAST.to_vec();
        env.push(("DATABASE_URL", &url));
        let mut bot = LAUNCH.start(&dir, port, 1, &env, &[]);
        // Health is public: wait for the writer to connect, then make the first (admin) account.
        wait_for(
            &c,
            &mut bot,
            StatusPoll::Optional(None),
            Duration::from_secs(15),
            "database connected",
            |h, _| h["database"]["state"] == "connected",
        )
        .await;
        register(&c, &bot, ADMIN).await;
        let (bad, _) = login(&c, &bot, (ADMIN.0, "not-the-password-123")).await;
        assert_eq!(bad, 401);
        let token = bearer_token(&c, &bot, ADMIN).await;
        let (h, s) = wait_for(
            &c,
            &mut bot,
            StatusPoll::Optional(Some(&token)),
            Duration::from_secs(20),
            "200 fills with the database connected",
            |h, s| fills_of(s) >= 200 && h["database"]["state"] == "connected",
        )
        .await;
        assert!(h["database"]["lag_records"].is_u64(), "{h}");
        assert!(h["database"]["last_error"].is_null(), "{h}");
        // A control from the dashboard: journaled as api:<user>@<ip>, audited by the dashboard and the writer.
        let (code, body) = post(
            &c,
            &bot,
            "/api/control/halt",
            Some(&token),
            &json!({"reason": "e2e db"}),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        // The audit view reads Postgres.
        let (code, a) = get(&c, &bot, "/api/audit?limit=50", Some(&token))
            .await
            .unwrap();
        assert_eq!(code, 200, "{a}");
        let actions: Vec<&str> = a["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        for want in ["user_registered", "login_failed", "login"] {
            assert!(actions.contains(&want), "{want} missing from {actions:?}");
        }
        assert!(
            a["entries"][0]["hash"].as_str().unwrap().len() == 64,
            "rows carry the chain hash: {a}"
        );
        // This start's settings are recorded in the background once the writer has migrated (retrying with
        // backoff): wait for them before stopping, or a loaded machine can stop the bot first.
        let pg_early = db.client().await;
        let recorded = async {
            for _ in 0..150 {
                let n: i64 = one(&pg_early, "SELECT count(*) FROM config_changes", &[]).await;
                if n > 0 {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            false
        };
        assert!(
            recorded.await,
            "this start's settings were recorded within 30 s"
        );
        drop(pg_early);
        let took = bot.stop_cleanly();
        assert!(fills_of(&s) >= 200);

        let pg = db.client().await;
        // The account registered through the API is in Postgres with its role (and only a hash).
        let u = pg
            .query_one(
                "SELECT role, password_hash FROM users WHERE username = $1",
                &[&ADMIN.0],
            )
            .await
            .unwrap();
        assert_eq!(u.get::<_, &str>(0), "admin");
        assert!(u.get::<_, &str>(1).starts_with("$argon2id$"));
        let journal = journal_totals(&dir);
        assert!(journal.fills >= 200, "{journal:?}");
        assert_eq!(Totals::from_db(&pg).await, journal, "Postgres = journal");
        let halts: i64 = one(
            &pg,
            "SELECT count(*) FROM commands WHERE actor = $1 AND source_ip = '127.0.0.1' \
             AND command->>'command' = 'halt'",
            &[&format!("api:{}", ADMIN.0)],
        )
        .await;
        assert_eq!(halts, 1, "the halt is stored with its user and IP");
        let logins: i64 = one(
            &pg,
            "SELECT count(*) FROM audit_log WHERE action IN ('login', 'login_failed') \
             AND actor = $1 AND source_ip = '127.0.0.1'",
            &[&ADMIN.0],
        )
        .await;
        assert_eq!(logins, 2);
        let access: i64 = one(
            &pg,
            "SELECT count(*) FROM api_access_log WHERE path = '/api/auth/login' AND status = 401",
            &[],
        )
        .await;
        assert_eq!(access, 1, "the failed login request is in the access log");
        // This start's settings are recorded (a first start: every key set), secrets only as ***.
        let settings: Vec<String> = column(
            &pg,
            "SELECT key || '=' || coalesce(new_value, '') FROM config_changes ORDER BY id",
        )
        .await;
        for want in ["DATABASE_URL=***", "JWT_SECRET=***"] {
            assert!(settings.iter().any(|r| r == want), "{want}: {settings:?}");
        }
        assert!(
            settings
                .iter()
                .all(|r| !r.contains(&url) && !r.contains(JWT)),
            "{settings:?}"
        );
        let audited: i64 = one(
            &pg,
            "SELECT count(*) FROM audit_log WHERE action = 'config_change'",
            &[],
        )
        .await;
        assert_eq!(audited as usize, settings.len());
        assert!(aegis_control::db::verify_chain(&pg)
            .await
            .unwrap()
            .is_valid());
        eprintln!(
            "sigterm test: {} fills stored, shutdown {took:?}, total {:?}",
            journal.fills,
            t0.elapsed()
        );
    });
}

#[test]
fn kill_9_in_a_burst_then_restart_catches_up_exactly() {
    serial(async {
        let t0 = Instant::now();
        let db = TestDb::create("e2e_kill").await;
        let dir = db_support::temp_dir("e2e-kill");
        let port = free_port();
        let c = LAUNCH.client();
        let url = db.url();
        let mut env = FAST.to_vec();
        env.push(("DATABASE_URL", &url));
        env.push(("AUTH_ENABLED", "false"));
        let mut bot = LAUNCH.start(&dir, port, 1, &env, &[]);
        wait_for(
            &c,
            &mut bot,
            StatusPoll::Optional(None),
            Duration::from_secs(20),
            "300 fills",
            |h, s| fills_of(s) >= 300 && h["database"]["state"] == "connected",
        )
        .await;
        bot.signal(libc::SIGKILL);
        bot.wait(Duration::from_secs(5))
            .expect("no exit after kill -9");
        let pg = db.client().await;
        let before = Totals::from_db(&pg).await;

        // Restart on a feed that makes no trades, so the journal is all there is to store.
        let quiet = quiet_feed(&dir);
        let mut bot = LAUNCH.start(
            &dir,
            port,
            2,
            &[("DATABASE_URL", &url), ("AUTH_ENABLED", "false")],
            &["run", "--replay", quiet.to_str().unwrap()],
        );
        wait_for(
            &c,
            &mut bot,
            StatusPoll::Optional(None),
            Duration::from_secs(15),
            "the writer caught up",
            |h, _| h["database"]["state"] == "connected" && h["database"]["lag_records"] == 0,
        )
        .await;
        bot.stop_cleanly();
        let journal = journal_totals(&dir);
        assert!(journal.fills >= 300, "{journal:?}");
        assert_eq!(
            Totals::from_db(&pg).await,
            journal,
            "Postgres = journal after kill -9"
        );
        eprintln!(
            "kill -9 test: {} fills in Postgres before the restart, {} after; total {:?}",
            before.fills,
            journal.fills,
            t0.elapsed()
        );
    });
}

#[test]
fn a_dead_database_does_not_stop_trading_and_leaks_no_password() {
    serial(async {
        let t0 = Instant::now();
        let dir = db_support::temp_dir("e2e-dead");
        let port = free_port();
        let closed = free_port();
        let secret = "Db-Pass-9f8e7d6c5b4a";
        let url = format!("postgres://aegis_bot:{secret}@127.0.0.1:{closed}/aegis?sslmode=disable");
        let c = LAUNCH.client();
        let hook = AlertHook::start().await;
        let mut env = FAST.to_vec();
        env.push(("DATABASE_URL", &url));
        env.push(("AUTH_ENABLED", "false"));
        env.push(("ALERT_WEBHOOK_URL", hook.url()));
        let mut bot = LAUNCH.start(&dir, port, 1, &env, &[]);
        let (h, s) = wait_for(
            &c,
            &mut bot,
            StatusPoll::Optional(None),
            Duration::from_secs(20),
            "fills with the database down",
            |h, s| fills_of(s) >= 50 && h["database"]["state"] == "down",
        )
        .await;
        assert_eq!(h["status"], "degraded", "{h}");
        assert!(
            h["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r.as_str().unwrap().contains("database down")),
            "{h}"
        );
        assert!(h["database"]["last_error"].is_string(), "{h}");
        assert!(h["database"]["lag_records"].as_u64().unwrap() > 0, "{h}");
        assert!(!h.to_string().contains(secret) && !s.to_string().contains(secret));
        let lost = hook.expect("database_lost", Duration::from_secs(10)).await;
        bot.stop_cleanly();
        assert_eq!(
            hook.of_kind("database_lost").len(),
            1,
            "one alert per outage, however many reconnects fail: {:?}",
            hook.bodies()
        );
        let lost: Value = serde_json::from_str(&lost).unwrap();
        assert_eq!(lost["source"], "aegis", "{lost}");
        for b in hook.bodies() {
            assert!(!b.contains(secret), "password in an alert: {b}");
        }
        let out = bot.output();
        assert!(!out.contains(secret), "password in the output:\n{out}");
        assert!(out.contains("postgres writer down"), "{out}");
        // Nothing the bot wrote under DATA_DIR (logs, journal, markers) holds it either.
        for e in walk(&dir.join("data")) {
            let b = fs::read(&e).unwrap();
            assert!(
                !b.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "password in {}",
                e.display()
            );
        }
        // The CLI says what is wrong (exit 2), without the password.
        let o = aegis(&dir, &[("DATABASE_URL", &url)], &["audit", "verify"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("cannot connect"), "{}", text(&o));
        assert!(!text(&o).contains(secret));
        let o = aegis(&dir, &[], &["audit", "verify"]);
        assert_eq!(o.status.code(), Some(2));
        assert!(text(&o).contains("DATABASE_URL is not set"), "{}", text(&o));
        eprintln!("dead database test: total {:?}", t0.elapsed());
    });
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(d) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn audit_verify_passes_then_names_the_tampered_row() {
    rt().block_on(async {
        let db = TestDb::create("e2e_verify").await;
        let dir = db_support::temp_dir("e2e-verify");
        let url = db.url();
        let env = [("DATABASE_URL", url.as_str())];
        let pg = db.migrated_client().await;
        let o = aegis(&dir, &env, &["audit", "verify"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(text(&o).contains("audit chain OK: empty"), "{}", text(&o));
        let mut ids = Vec::new();
        for i in 0..4 {
            let r = aegis_control::db::audit_append(
                &pg,
                &aegis_control::db::AuditEntry {
                    actor: "alice",
                    source_ip: "203.0.113.7",
                    action: aegis_control::db::audit::AuditAction::Command,
                    detail: json!({"n": i}),
                },
            )
            .await
            .unwrap();
            ids.push(r.id);
        }
        let o = aegis(&dir, &env, &["audit", "verify"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(
            text(&o).contains(&format!("4 rows, head id {}", ids[3])),
            "{}",
            text(&o)
        );
        // A superuser edits row 3 behind the trigger's back.
        pg.batch_execute(&format!(
            "ALTER TABLE audit_log DISABLE TRIGGER USER; \
             UPDATE audit_log SET detail = '{{\"n\": 99}}' WHERE id = {}; \
             ALTER TABLE audit_log ENABLE TRIGGER USER;",
            ids[2]
        ))
        .await
        .unwrap();
        let o = aegis(&dir, &env, &["audit", "verify"]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            text(&o).contains(&format!("BROKEN at row id {}", ids[2])),
            "{}",
            text(&o)
        );
    });
}

#[test]
fn export_trades_writes_one_exact_row_per_fill() {
    rt().block_on(async {
        let db = TestDb::create("e2e_export").await;
        let dir = db_support::temp_dir("e2e-export");
        let data = dir.join("data");
        let (mut w, jdir) = db_support::open_journal(&data);
        let n = 500u64;
        let mut want = Totals::default();
        for i in 0..n {
            let r = aegis_control::journal::JournalRecord::Engine(aegis_shared::EngineEvent::Fill(
                db_support::fill(i),
            ));
            want.add(&r);
            w.append(&r).unwrap();
        }
        w.sync().unwrap();
        let writer = aegis_control::db::spawn_writer(
            aegis_control::db::WriterConfig::new(db.url().into()),
            jdir,
            w.stats(),
        );
        let pg = db.client().await;
        db_support::wait_until(Duration::from_secs(15), "fills stored", || {
            let h = writer.health();
            async move { h.lag_records == 0 && h.state == aegis_control::db::DbState::Connected }
        })
        .await;
        writer.shutdown(Duration::from_secs(2)).await;
        let stored: i64 = one(&pg, "SELECT count(*) FROM fills", &[]).await;
        assert_eq!(stored, n as i64);

        let url = db.url();
        let out = dir.join("trades.csv");
        // The fills are at 2023-11-14T22:13:20Z + i*7 ms; a date alone as --to includes that whole day.
        let o = aegis(
            &dir,
            &[("DATABASE_URL", &url)],
            &[
                "export", "trades", "--from", "2023-11-14", "--to", "2023-11-14", "--format", "csv",
                "--out", out.to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let csv = fs::read_to_string(&out).unwrap();
        let mut lines = csv.lines();
        assert_eq!(lines.next().unwrap(), aegis_control::db::export::HEADER);
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len() as i64, stored, "one CSV row per fill in Postgres");
        // Exact decimals: the CSV's qty, fee and PnL columns add up to the journal's integer units.
        let units = |s: &str| -> i128 {
            let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
            let (i, f) = s.split_once('.').unwrap_or((s, ""));
            assert!(f.len() <= 8, "more than 8 decimals: {s}");
            let v = i.parse::<i128>().unwrap() * 100_000_000
                + format!("{f:0<8}").parse::<i128>().unwrap();
            if neg {
                -v
            } else {
                v
            }
        };
        let sum = |col: usize| rows.iter().map(|r| units(r[col])).sum::<i128>();
        assert_eq!(sum(4), want.qty);
        assert_eq!(sum(6), want.fees);
        assert_eq!(sum(8), want.pnl);
        assert!(rows.iter().all(|r| r[0].ends_with('Z') && r.len() == 17));
        // A paper run trades futures (the default market); the last column says so on every row.
        assert!(rows.iter().all(|r| r[16] == "futures"), "{csv}");
        // stdout is the default; an RFC 3339 window can exclude everything; bad times are exit 2.
        let o = aegis(
            &dir,
            &[("DATABASE_URL", &url)],
            &["export", "trades", "--from", "2023-11-15T00:00:00Z", "--to", "2023-11-16T00:00:00+01:00"],
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1, "header only");
        let o = aegis(
            &dir,
            &[("DATABASE_URL", &url)],
            &["export", "trades", "--from", "yesterday", "--to", "2023-11-16"],
        );
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("RFC 3339"), "{}", text(&o));
        // Pruning keeps anything younger than 400 days.
        pg.execute(
            "INSERT INTO api_access_log (ts, actor, source_ip, method, path, status, duration_us) VALUES \
             (now() - interval '401 days', NULL, '127.0.0.1', 'GET', '/api/old', 200, 1), \
             (now() - interval '30 days', NULL, '127.0.0.1', 'GET', '/api/new', 200, 1)",
            &[],
        )
        .await
        .unwrap();
        let o = aegis(&dir, &[("DATABASE_URL", &url)], &["db", "prune"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(text(&o).contains("pruned 1 access-log rows"), "{}", text(&o));
        let left: Vec<String> = column(&pg, "SELECT path FROM api_access_log").await;
        assert_eq!(left, vec!["/api/new".to_string()]);
    });
}

/// Issue 13.1, the user's scenario: run, stop, run again on the same journal and database. Paper trade ids used
/// to restart at 1, so the second run's fills collided with the first's keys and Postgres silently kept half.
#[test]
fn two_runs_on_one_journal_store_every_fill_of_both() {
    serial(async {
        let db = TestDb::create("e2e_two_runs").await;
        let dir = db_support::temp_dir("e2e-two-runs");
        let port = free_port();
        let c = LAUNCH.client();
        let url = db.url();
        let mut env = FAST.to_vec();
        env.push(("DATABASE_URL", &url));
        env.push(("AUTH_ENABLED", "false"));
        let mut first_run = 0;
        for run in 1..=2u32 {
            let mut bot = LAUNCH.start(&dir, port, run, &env, &[]);
            let want = first_run + 100;
            let (h, s) = wait_for(
                &c,
                &mut bot,
                StatusPoll::Optional(None),
                Duration::from_secs(30),
                "100 more fills with the database connected",
                |h, s| fills_of(s) >= want && h["database"]["state"] == "connected",
            )
            .await;
            assert_eq!(h["database"]["fill_conflicts"], 0, "{h}");
            first_run = fills_of(&s);
            bot.stop_cleanly();
        }
        let journal = journal_totals(&dir);
        let pg = db.client().await;
        assert!(journal.fills >= 200, "{journal:?}");
        assert_eq!(
            Totals::from_db(&pg).await,
            journal,
            "Postgres = journal over two runs (counts, qty, fees, realized PnL)"
        );
        let conflicts: i64 = one(&pg, "SELECT count(*) FROM fill_conflicts", &[]).await;
        assert_eq!(conflicts, 0);
    });
}
