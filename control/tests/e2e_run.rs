//! End-to-end tests of the real `aegis` binary: simulated market, journal, HTTPS API, signals, restarts, bad
//! config, secrets, `.env` permissions. Each test that runs the bot holds `support::serial`: the engine
//! busy-polls a core, so two bots at once on a 2-core machine would only measure each other.

mod support;

use aegis_control::journal::Ledger;
use aegis_control::journal::{self, JournalReader, JournalRecord};
use aegis_shared::EngineEvent;
use serde_json::Value;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;
use support::{
    free_port, get, get_text, pinned_fingerprint, quiet_feed, serial, temp_dir, wait_for, Bot,
    Launcher, StatusPoll, FAST,
};

const LAUNCH: Launcher = Launcher {
    // These tests read /api/status without logging in; the loopback bind allows auth off (the authenticated
    // paths are tested in e2e_breaker.rs and the web_* tests; the secrets test turns it on).
    env: &[("AUTH_ENABLED", "false")],
    stop_wait: Duration::from_secs(6),
    // The 5 s shutdown budget.
    stop_budget: Some(Duration::from_secs(5)),
    client_timeout: Duration::from_secs(2),
    pin_cert: true,
};

/// The ledger of a journal, read-only.
fn journal_ledger(dir: &Path) -> (Ledger, Vec<journal::Entry>) {
    let mut r = JournalReader::open(&journal::dir_in(&dir.join("data"))).unwrap();
    let mut l = Ledger::default();
    let mut entries = Vec::new();
    for e in r.records_from(0).unwrap() {
        let e = e.unwrap();
        l.apply(&e.record);
        entries.push(e);
    }
    (l, entries)
}

fn positions_of(status: &Value) -> Vec<(String, String, String, String)> {
    status["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["symbol"].as_str().unwrap().to_string(),
                p["mode"].as_str().unwrap().to_string(),
                p["qty"].as_str().unwrap().to_string(),
                p["realized_pnl"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn ledger_positions(l: &Ledger) -> Vec<(String, String, String, String)> {
    l.positions
        .values()
        .map(|p| {
            (
                p.symbol.to_string(),
                p.mode.as_str().to_string(),
                p.qty.to_string(),
                p.realized_pnl.to_string(),
            )
        })
        .collect()
}

/// The `# TYPE` kind and the rows (labels, value) of one metric in a Prometheus text exposition.
fn metric_rows(body: &str, name: &str) -> (Option<String>, Vec<(String, f64)>) {
    let type_line = format!("# TYPE {name} ");
    let kind = body
        .lines()
        .find_map(|l| l.strip_prefix(&type_line).map(str::to_string));
    let rows = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let labels = match series.strip_prefix(name)? {
                "" => "",
                rest => rest.strip_prefix('{')?.strip_suffix('}')?,
            };
            // An unparsable value stays in as NaN, which fails every range check below.
            Some((labels.to_string(), v.parse().unwrap_or(f64::NAN)))
        })
        .collect();
    (kind, rows)
}

/// The engine metrics a scraper alerts on, once market messages have flowed: latency quantiles present, ordered
/// and non-zero; both queue depths; a fresh feed; one denial counter per engine reason code.
fn assert_engine_metrics(body: &str) {
    let (kind, lat) = metric_rows(body, "aegis_engine_latency_ns");
    assert_eq!(kind.as_deref(), Some("gauge"), "{body}");
    let quantiles: Vec<&str> = lat.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        quantiles,
        [
            "quantile=\"0.5\"",
            "quantile=\"0.99\"",
            "quantile=\"0.999\"",
            "quantile=\"1\""
        ],
        "{body}"
    );
    let v: Vec<f64> = lat.iter().map(|r| r.1).collect();
    assert!(
        v[0] > 0.0 && v.windows(2).all(|w| w[0] <= w[1]),
        "latency quantiles must be > 0 and ordered: {v:?}"
    );
    let (kind, depth) = metric_rows(body, "aegis_queue_depth");
    assert_eq!(kind.as_deref(), Some("gauge"), "{body}");
    let queues: Vec<&str> = depth.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(queues, ["queue=\"critical\"", "queue=\"stats\""], "{body}");
    assert!(
        depth
            .iter()
            .all(|(_, d)| (0.0..1e6).contains(d) && d.fract() == 0.0),
        "queue depths {depth:?}"
    );
    let (kind, age) = metric_rows(body, "aegis_feed_age_ms");
    assert_eq!(kind.as_deref(), Some("gauge"), "{body}");
    // The simulated feed sends thousands of messages a second: a live feed is at most a few seconds old.
    assert!(
        matches!(age.as_slice(), [(l, a)] if l.is_empty() && (0.0..5000.0).contains(a)),
        "feed age {age:?}"
    );
    let (kind, denials) = metric_rows(body, "aegis_risk_denials_total");
    assert_eq!(kind.as_deref(), Some("counter"), "{body}");
    let reasons: Vec<String> = denials.iter().map(|(l, _)| l.clone()).collect();
    let expect: Vec<String> = (0..aegis_shared::event::DENIAL_REASONS)
        .map(|i| format!("reason=\"{i}\""))
        .collect();
    assert_eq!(reasons, expect, "{body}");
    assert!(
        denials.iter().all(|(_, n)| *n >= 0.0 && n.fract() == 0.0),
        "denial counts {denials:?}"
    );
}

/// `/api/latency` once the engine has decided on market messages: the same quantile order as the metric, and
/// histograms with ascending bounds that hold the samples.
fn assert_latency_view(l: &Value) {
    let q: Vec<u64> = ["p50_ns", "p99_ns", "p999_ns", "max_ns"]
        .iter()
        .map(|k| l[k].as_u64().unwrap_or(0))
        .collect();
    assert!(
        q[0] > 0 && q.windows(2).all(|w| w[0] <= w[1]),
        "latency quantiles must be > 0 and ordered: {l}"
    );
    for h in ["p50_histogram", "p99_histogram"] {
        let buckets = l[h].as_array().unwrap();
        let bounds: Vec<u64> = buckets
            .iter()
            .map(|b| b["le_ns"].as_u64().unwrap())
            .collect();
        assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{h}: {l}");
        let samples: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
        assert!(samples > 0, "{h} holds no interval: {l}");
    }
}

/// `/api/orders/open`: an `orders` array of live (not terminal) orders on the traded market.
fn assert_open_orders(o: &Value) {
    for order in o["orders"].as_array().unwrap() {
        assert!(
            !order["client_id"].as_str().unwrap().is_empty()
                && ["BUY", "SELL"].contains(&order["side"].as_str().unwrap())
                && ["LIMIT", "MARKET"].contains(&order["order_type"].as_str().unwrap())
                && !["FILLED", "CANCELED", "EXPIRED", "REJECTED"]
                    .contains(&order["status"].as_str().unwrap()),
            "{o}"
        );
    }
}

/// Waits for a stats interval with engine decisions in it, then checks `/api/latency`, `/api/orders/open` and
/// the engine metrics of `/metrics` on the running bot.
async fn check_read_api(c: &reqwest::Client, bot: &Bot) {
    let t = std::time::Instant::now();
    let latency = loop {
        let l = get(c, bot, "/api/latency", None).await;
        match l {
            Some((200, l)) if l["p50_ns"].as_u64().unwrap_or(0) > 0 => break l,
            _ if t.elapsed() > Duration::from_secs(10) => {
                panic!("no latency after 10 s: {l:?}\n{}", bot.output())
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_latency_view(&latency);
    let (code, orders) = get(c, bot, "/api/orders/open", None).await.unwrap();
    assert_eq!(code, 200, "{orders}");
    assert_open_orders(&orders);
    let (code, body) = get_text(c, bot, "/metrics").await;
    assert_eq!(code, 200, "{body}");
    assert_engine_metrics(&body);
}

fn trading(h: &Value, s: &Value) -> bool {
    h["status"] == "ok" && s["counts"]["fills"].as_u64().unwrap_or(0) >= 1
}

/// First run on the fast simulated market, once health is ok and a fill is in: the bot, its health and status.
async fn start_trading(c: &reqwest::Client, dir: &Path, port: u16) -> (Bot, Value, Value) {
    let mut bot = LAUNCH.start(dir, port, 1, &FAST, &[]);
    let (h, s) = wait_for(
        c,
        &mut bot,
        StatusPoll::Required,
        Duration::from_secs(30),
        "health ok and a fill",
        trading,
    )
    .await;
    (bot, h, s)
}

/// A bot trading in a fresh directory, then `sig`: the directory, port and client for the restarts that follow,
/// how the bot exited (within `limit`, or the test fails) and its output.
async fn trade_then_signal(
    tag: &str,
    sig: i32,
    limit: Duration,
) -> (PathBuf, u16, reqwest::Client, ExitStatus, String) {
    let dir = temp_dir(tag);
    let port = free_port();
    let c = LAUNCH.client();
    let (mut bot, _, _) = start_trading(&c, &dir, port).await;
    bot.signal(sig);
    let s = bot
        .wait(limit)
        .unwrap_or_else(|| panic!("no exit within {limit:?} of signal {sig}"));
    (dir, port, c, s, bot.output())
}

/// Restarts on a quiet feed and checks that the API shows exactly the journal's state.
async fn restart_and_compare(
    c: &reqwest::Client,
    dir: &Path,
    port: u16,
    run: u32,
    expect: &Ledger,
) {
    let quiet = quiet_feed(dir);
    let mut bot = LAUNCH.start(
        dir,
        port,
        run,
        &[],
        &["run", "--replay", quiet.to_str().unwrap()],
    );
    let (_, s) = wait_for(
        c,
        &mut bot,
        StatusPoll::Required,
        Duration::from_secs(15),
        "status after restart",
        |_, s| s["engine"]["state"] != "starting",
    )
    .await;
    assert_eq!(s["counts"]["fills"].as_u64().unwrap(), expect.fills, "{s}");
    assert_eq!(
        s["pnl"]["realized"].as_str().unwrap(),
        expect.realized_pnl.to_string()
    );
    assert_eq!(s["pnl"]["fees"].as_str().unwrap(), expect.fees.to_string());
    assert_eq!(positions_of(&s), ledger_positions(expect));
    let out = bot.stdout();
    assert!(
        out.contains(&format!("fills={}", expect.fills))
            && out.contains(&format!("realized_pnl={}", expect.realized_pnl)),
        "replay summary missing:\n{out}"
    );
    bot.stop_cleanly();
}

#[test]
fn sim_trades_over_https_then_sigterm_and_restart_restore_state() {
    serial(sim_trades_over_https_then_sigterm_and_restart_restore_state_body());
}

async fn sim_trades_over_https_then_sigterm_and_restart_restore_state_body() {
    let dir = temp_dir("sim");
    let port = free_port();
    let c = LAUNCH.client();
    let (mut bot, h, s) = start_trading(&c, &dir, port).await;
    assert_eq!(h["database"], "not configured");
    assert_eq!(h["journal"]["state"], "ok");
    assert_eq!(s["mode"], "PAPER");
    check_read_api(&c, &bot).await;
    // The banner names the mode and the certificate the client pinned.
    let out = bot.stdout();
    assert!(
        out.contains("PAPER") && out.contains(&pinned_fingerprint(&dir)),
        "{out}"
    );
    bot.stop_cleanly();

    let ledger = assert_stop_journaled(&dir);
    restart_and_compare(&c, &dir, port, 2, &ledger).await;
    let _ = fs::remove_dir_all(&dir);
}

/// After a clean stop: every journal record reads back, a fill is among them and the stop is journaled (the
/// Shutdown command). The ledger they make.
fn assert_stop_journaled(dir: &Path) -> Ledger {
    let (ledger, entries) = journal_ledger(dir);
    assert!(ledger.fills >= 1);
    assert!(entries
        .iter()
        .any(|e| matches!(e.record, JournalRecord::Engine(EngineEvent::Fill(_)))));
    // The clean stop is journaled: the Shutdown command and the engine's Stopped state.
    assert!(entries.iter().any(|e| matches!(
        &e.record,
        JournalRecord::Command(c) if c.command == aegis_shared::Command::Shutdown
    )));
    ledger
}

/// Ctrl-C in a terminal: the same clean stop as SIGTERM, within the same 5 s budget.
#[test]
fn sigint_stops_cleanly_within_5s_with_the_journal_intact() {
    serial(async {
        let (dir, port, c, s, output) =
            trade_then_signal("sigint", libc::SIGINT, Duration::from_secs(5)).await;
        assert_eq!(s.code(), Some(0), "{output}");
        let ledger = assert_stop_journaled(&dir);
        restart_and_compare(&c, &dir, port, 2, &ledger).await;
        let out = fs::read_to_string(dir.join("stdout-2.txt")).unwrap();
        assert!(
            !out.contains("journal tail was torn or corrupted"),
            "SIGINT left a cut tail:\n{out}"
        );
        let _ = fs::remove_dir_all(&dir);
    });
}

#[test]
fn kill_9_then_torn_and_corrupt_tails_are_cut_and_reported() {
    serial(kill_9_then_torn_and_corrupt_tails_are_cut_and_reported_body());
}

async fn kill_9_then_torn_and_corrupt_tails_are_cut_and_reported_body() {
    let (dir, port, c, _, _) =
        trade_then_signal("kill9", libc::SIGKILL, Duration::from_secs(5)).await;

    // Whatever the kill left is replayed (a torn tail would be cut; the comparison uses the valid prefix).
    let (ledger, entries) = journal_ledger(&dir);
    assert!(ledger.fills >= 1);
    restart_and_compare(&c, &dir, port, 2, &ledger).await;

    // Tear the last fill in half: everything from it on is cut, the prefix before it stays.
    let (_, entries2) = journal_ledger(&dir);
    assert!(entries2.len() > entries.len());
    let last_fill = entries2
        .iter()
        .rev()
        .find(|e| matches!(e.record, JournalRecord::Engine(EngineEvent::Fill(_))))
        .unwrap()
        .clone();
    let jpath = journal::dir_in(&dir.join("data")).join(journal::FILE_NAME);
    let f = fs::OpenOptions::new().write(true).open(&jpath).unwrap();
    let full = f.metadata().unwrap().len();
    f.set_len(last_fill.offset + 10).unwrap();
    drop(f);
    let mut expect = Ledger::default();
    for e in entries2.iter().take_while(|e| e.offset < last_fill.offset) {
        expect.apply(&e.record);
    }
    restart_and_compare(&c, &dir, port, 3, &expect).await;
    let out = fs::read_to_string(dir.join("stdout-3.txt")).unwrap();
    assert!(
        out.contains("journal tail was torn or corrupted")
            && out.contains(&format!("offset={}", last_fill.offset))
            && out.contains("bytes_cut=10"),
        "cut not reported:\n{out}"
    );
    assert!(full > last_fill.offset + 10);

    // Flip a byte in the last record and append garbage: cut at the last record, reported, no panic.
    let (_, entries3) = journal_ledger(&dir);
    let last = entries3.last().unwrap().clone();
    let mut bytes = fs::read(&jpath).unwrap();
    let i = (last.next - 3) as usize;
    bytes[i] ^= 0x01;
    bytes.extend_from_slice(b"\x00\x01garbage after the end");
    fs::write(&jpath, &bytes).unwrap();
    let mut expect = Ledger::default();
    for e in &entries3[..entries3.len() - 1] {
        expect.apply(&e.record);
    }
    restart_and_compare(&c, &dir, port, 4, &expect).await;
    let out = fs::read_to_string(dir.join("stdout-4.txt")).unwrap();
    assert!(
        out.contains("checksum mismatch") && out.contains(&format!("offset={}", last.offset)),
        "{out}"
    );
    for run in 1..=4 {
        let err = fs::read_to_string(dir.join(format!("stderr-{run}.txt"))).unwrap_or_default();
        assert!(!err.contains("panicked"), "run {run} panicked:\n{err}");
    }
    // The cut bytes were kept beside the journal.
    let cuts = fs::read_dir(journal::dir_in(&dir.join("data")))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("cut-")
        })
        .count();
    assert!(cuts >= 2);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn bad_config_exits_2_naming_key_value_and_fix() {
    for (k, v) in [
        ("FUTURES_AUTOPILOT_MAX_DAILY_LOSS", "abc"),
        ("TRADING_MODE", "prod"),
        ("API_PORT", "99999"),
    ] {
        let dir = temp_dir("badcfg");
        let (code, out, err) = LAUNCH.run_expect_exit(&dir, &[(k, v)]);
        assert_eq!(code, Some(2), "{k}={v}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "one message expected:\n{err}"
        );
        assert!(err.contains(k) && err.contains(v), "{err}");
        assert!(err.contains("use "), "no fix in: {err}");
        assert!(out.is_empty(), "nothing may start: {out}");
        assert!(
            !dir.join("data").exists(),
            "nothing may start before validation"
        );
        let _ = fs::remove_dir_all(&dir);
    }
    // In the .env file too, and the environment wins over the file.
    let dir = temp_dir("badenv");
    fs::write(dir.join(".env"), "LOG_LEVEL=loud\n").unwrap();
    fs::set_permissions(dir.join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, err) = LAUNCH.run_expect_exit(&dir, &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("LOG_LEVEL") && err.contains("loud"), "{err}");
    let (code, _, err) = LAUNCH.run_expect_exit(&dir, &[("LOG_LEVEL", "info"), ("SIM_RATE", "-1")]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("SIM_RATE"),
        "env should win over the file: {err}"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn secrets_never_reach_stdout_stderr_log_file_or_api() {
    serial(secrets_never_reach_stdout_stderr_log_file_or_api_body());
}

async fn secrets_never_reach_stdout_stderr_log_file_or_api_body() {
    let dir = temp_dir("secrets");
    let secrets = [
        (
            "BINANCE_API_KEY",
            "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
        ),
        (
            "BINANCE_SECRET_KEY",
            "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j",
        ),
        (
            "BINANCE_TESTNET_API_KEY",
            "tstKEY-0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c",
        ),
        (
            "BINANCE_TESTNET_SECRET_KEY",
            "tstSECRET-1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d",
        ),
        ("JWT_SECRET", "jwt-Zq3xV9pL2mN8bR5tY7wK4cH6dF1gS0aE"),
    ];
    let db_pass = "Db-P4ssw0rd-Xk29vLq7";
    let db_url = format!("postgres://aegis:{db_pass}@127.0.0.1:5/aegis");
    let file_secret = "file-only-secret-7hG3kP9qW2";
    fs::write(
        dir.join(".env"),
        format!("BINANCE_TESTNET_SECRET_KEY={file_secret}\nLOG_JSON=true\n"),
    )
    .unwrap();
    fs::set_permissions(dir.join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
    let log = dir.join("logs/aegis.log");
    let log_s = log.to_str().unwrap().to_string();
    let mut env: Vec<(&str, &str)> = secrets.to_vec();
    env.retain(|(k, _)| *k != "BINANCE_TESTNET_SECRET_KEY");
    env.push(("DATABASE_URL", &db_url));
    env.push(("LOG_LEVEL", "trace"));
    env.push(("LOG_INCLUDE_FILE", "true"));
    env.push(("LOG_OUTPUT", &log_s));
    // Authentication on, with the JWT secret above: it must not leak either (/api/status then answers 401).
    env.push(("AUTH_ENABLED", "true"));
    env.extend_from_slice(&FAST);
    let port = free_port();
    let c = LAUNCH.client();
    let mut bot = LAUNCH.start(&dir, port, 1, &env, &[]);
    let (h, s) = wait_for(
        &c,
        &mut bot,
        StatusPoll::Required,
        Duration::from_secs(30),
        "engine running and feed live, database (port 5) reported down",
        // Nothing listens on port 5: the bot trades on, degraded, and the database error it shows must not carry
        // the password.
        |h, _| {
            h["engine"]["state"] == "running"
                && h["feed"]["state"] == "live"
                && h["database"]["state"] == "down"
        },
    )
    .await;
    assert_eq!(h["status"], "degraded", "{h}");
    bot.stop_cleanly();
    let mut all = vec![
        bot.stdout(),
        bot.stderr(),
        fs::read_to_string(&log).unwrap(),
        h.to_string(),
        s.to_string(),
    ];
    assert!(
        all[2].contains("AEGIS") && all[2].contains("\"level\""),
        "JSON log file expected"
    );
    // A refused secret is not echoed either.
    let (code, out, err) = LAUNCH.run_expect_exit(
        &dir,
        &[("DATABASE_URL", &format!("mysql://root:{db_pass}@db/x"))],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("DATABASE_URL"));
    all.push(out);
    all.push(err);
    for text in &all {
        for (k, v) in secrets
            .iter()
            .filter(|(k, _)| *k != "BINANCE_TESTNET_SECRET_KEY")
        {
            assert!(!text.contains(v), "{k} leaked");
        }
        assert!(!text.contains(db_pass), "database password leaked");
        assert!(!text.contains(file_secret), ".env secret leaked");
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn world_readable_env_warns_in_paper_and_is_refused_in_live() {
    serial(world_readable_env_warns_in_paper_and_is_refused_in_live_body());
}

async fn world_readable_env_warns_in_paper_and_is_refused_in_live_body() {
    let dir = temp_dir("perms");
    let env_path = dir.join(".env");
    let mut f = fs::File::create(&env_path).unwrap();
    writeln!(f, "TRADING_MODE=paper").unwrap();
    drop(f);
    fs::set_permissions(&env_path, fs::Permissions::from_mode(0o644)).unwrap();
    let port = free_port();
    let c = LAUNCH.client();
    let mut bot = LAUNCH.start(&dir, port, 1, &[], &[]);
    wait_for(
        &c,
        &mut bot,
        StatusPoll::Required,
        Duration::from_secs(15),
        "API up",
        |h, _| h["engine"]["state"] == "running",
    )
    .await;
    bot.stop_cleanly();
    let err = bot.stderr();
    assert!(
        err.contains("SECURITY WARNING") && err.contains("chmod 600") && err.contains("0644"),
        "{err}"
    );
    assert!(
        bot.stdout().contains("SECURITY WARNING"),
        "the warning must be in the log too"
    );

    fs::write(&env_path, "TRADING_MODE=live\n").unwrap();
    fs::set_permissions(&env_path, fs::Permissions::from_mode(0o640)).unwrap();
    let (code, out, err) = LAUNCH.run_expect_exit(&dir, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(".env") && err.contains("chmod 600") && err.contains("live"),
        "{err}"
    );
    assert!(out.is_empty());
    let _ = fs::remove_dir_all(&dir);
}

/// Issue 2.3: a core the machine does not have makes pinning fail, which is a warning and not a crash. The
/// config takes any core number (the machine, not the file, decides which exist), so the bot must start, trade
/// unpinned and say so in its log. The core comes from `.env`, as an operator would set it.
#[test]
fn engine_core_that_does_not_exist_warns_and_still_trades() {
    serial(async {
        let dir = temp_dir("nocore");
        let env_path = dir.join(".env");
        fs::write(&env_path, "ENGINE_CORE=4096\n").unwrap();
        // A private .env, so the only warning to look for is the pinning one.
        fs::set_permissions(&env_path, fs::Permissions::from_mode(0o600)).unwrap();
        let c = LAUNCH.client();
        let (mut bot, _, _) = start_trading(&c, &dir, free_port()).await;
        bot.stop_cleanly();
        let out = bot.stdout();
        let warning = out
            .lines()
            .find(|l| l.contains("NOT pinned to a core"))
            .unwrap_or_else(|| panic!("no pinning warning:\n{}", bot.output()));
        assert!(
            warning.contains("WARN") && warning.contains("pinning to core 4096 failed"),
            "{warning}"
        );
        assert!(!out.contains("pinned to CPU core"), "{out}");
        let _ = fs::remove_dir_all(&dir);
    });
}
