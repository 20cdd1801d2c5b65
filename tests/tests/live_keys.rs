//! Key rotation under load (issue 8, point 2) of the real `aegis` binary against the in-process Binance simulator:
//! the bot trades with key A (read from its `.env`), key B of the same account is created, `aegis keys rotate
//! --testnet --from-file` writes B to `.env` and asks the running bot to switch — while orders flow (kill-switch
//! flattens of positions opened by hand, one of them with its answer held back so it is in flight during the
//! switch). Then: the switch succeeded without a restart, no lost or duplicate order ([`assert_consistent`]), the
//! simulator's per-key accounting shows no request with A after the switch, and with A revoked trading goes on.
//! Build first: `cargo build -p aegis-control --bin aegis`.

mod live_support;
use live_support::*;

const KEY_B: &str = "B2ndB2ndB2ndB2ndB2ndB2ndB2ndB2ndB2ndB2ndB2ndB2ndB2ndB2ndB2ndB2nd";
const SECRET_B: &str = "secondHmacSecretFedcba9876543210";

/// The "other client" of the account (a person trading by hand) has its own key, so the accounting of A and B
/// counts the bot only.
const KEY_C: &str = "C3rdC3rdC3rdC3rdC3rdC3rdC3rdC3rdC3rdC3rdC3rdC3rdC3rdC3rdC3rdC3rd";
const SECRET_C: &str = "thirdHmacSecret0123";

/// A market buy by hand with key C (opens a position the bot sees as a foreign fill).
fn hand_buy(w: &World, qty: &str) {
    manual_buy_as(w, KEY_C, SECRET_C, qty);
}

fn write_private(p: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(p, text).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap();
}

/// The environment of both the bot and the CLI (no keys: those come from `.env`).
fn base_env(w: &World, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("DATA_DIR", w.dir.join("data").display().to_string()),
        ("API_PORT", port.to_string()),
        ("SYMBOLS", "BTCUSDT".into()),
        ("AUTH_ENABLED", "false".into()),
        ("BINANCE_FAPI_URL", w.base()),
        ("BINANCE_SAPI_URL", w.base()),
        ("BINANCE_FSTREAM_URL", w.sim().ws_url()),
        (
            "BINANCE_WSAPI_URL",
            format!("{}/ws-fapi/v1", w.sim().ws_url()),
        ),
    ]
}

fn usage(w: &World, key: &str) -> (u64, u64) {
    let u = w.admin(AdminCall::key_usage());
    (
        u[key]["requests"].as_u64().unwrap_or(0),
        u[key]["refused"].as_u64().unwrap_or(0),
    )
}

/// `POST /api/local/kill {"flatten": true}` with the local admin token, as `aegis kill --flatten` sends it.
fn kill_flatten(w: &World, bot: &Bot) {
    let tok = fs::read_to_string(w.dir.join("data").join("admin.token")).unwrap();
    let c = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = c
        .post(format!("https://127.0.0.1:{}/api/local/kill", bot.port))
        .bearer_auth(tok.trim())
        .json(&serde_json::json!({"flatten": true, "reason": "test"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// One order round: a position opened by hand (another client of the account), seen by the bot, flattened by
/// the bot's kill switch.
fn round(w: &World, bot: &Bot) {
    hand_buy(w, "0.002");
    let want: std::collections::BTreeMap<String, i64> =
        [("BTCUSDT".to_string(), 200_000i64)].into_iter().collect();
    let t = Instant::now();
    while bot_state(bot).map(|s| s.0) != Some(want.clone()) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the bot saw the fill\n{}",
            bot.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    kill_flatten(w, bot);
    assert!(
        wait_flat(w, Duration::from_secs(10)),
        "flattened\n{}",
        bot.log()
    );
}

#[test]
fn key_rotation_under_load_switches_without_restart_or_lost_order() {
    let _g = serial();
    let t0 = Instant::now();
    let w = World::new("keys", keys(false, false));
    // Key B: same account, created on the exchange first (as an operator does on Binance).
    w.admin(AdminCall::add_key(serde_json::json!({
        "api_key": KEY_B, "account": "alice", "secret": SECRET_B,
        "ip_restrict": false
    })));
    w.admin(AdminCall::add_key(serde_json::json!({
        "api_key": KEY_C, "account": "alice", "secret": SECRET_C
    })));
    let env_file = w.dir.join("bot.env");
    write_private(
        &env_file,
        &format!(
            "TRADING_MODE=testnet\nBINANCE_TESTNET_API_KEY={KEY}\nBINANCE_TESTNET_SECRET_KEY={SECRET}\n"
        ),
    );
    manual_buy(&w, "0.003");
    let bot = w.bot_with_env_file(1, &env_file, &[]);
    assert!(
        bot.wait_log("local and exchange state agree", Duration::from_secs(15)),
        "{}",
        bot.log()
    );
    nudge(&w);
    assert_consistent(&w, &bot, Duration::from_secs(5));
    assert_eq!(usage(&w, KEY_B).0, 0, "B unused before the switch");
    round_adopted(&w, &bot);
    round(&w, &bot);

    // Under load: a position to flatten, the flatten's answer held back 1.5 s, and the rotation at once.
    hand_buy(&w, "0.003");
    std::thread::sleep(Duration::from_millis(300));
    w.admin(AdminCall::delay(1500, Some(1), Some("/ws-fapi/v1")));
    kill_flatten(&w, &bot);
    std::thread::sleep(Duration::from_millis(50));
    let pair = w.dir.join("new-key.txt");
    write_private(&pair, &format!("{KEY_B}\n{SECRET_B}\n"));
    let ts = Instant::now();
    let mut cli = Command::new(bin());
    cli.env_clear()
        .current_dir(&w.dir)
        .args(["--env-file"])
        .arg(&env_file)
        .args(["keys", "rotate", "--testnet", "--from-file"])
        .arg(&pair);
    for (k, v) in base_env(&w, bot.port) {
        cli.env(k, v);
    }
    let out = cli.output().unwrap();
    let took = ts.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "rotate: {stdout}\n{stderr}\n{}",
        bot.log()
    );
    assert!(
        stdout.contains("switched to the new key without a restart"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(SECRET_B) && !stdout.contains(KEY_B) && !bot.log().contains(SECRET_B),
        "no key material printed"
    );
    // The held-back flatten was in flight when the switch began: answered before the swap, or (on a slow
    // machine, past the answer timeout) queried by client id after it; never resent.
    let detail: Value = stdout
        .lines()
        .find_map(|l| l.split_once("without a restart: ").map(|x| x.1))
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(detail["in_flight"], 1, "{stdout}");
    assert!(detail["queried"].as_u64().unwrap() <= 1, "{stdout}");
    eprintln!("{stdout}");
    let a_after_switch = usage(&w, KEY);
    let env_text = fs::read_to_string(&env_file).unwrap();
    assert!(env_text.contains(KEY_B) && !env_text.contains(KEY));
    assert!(
        bot.log().contains("switched to the new API key"),
        "{}",
        bot.log()
    );
    let ev = fs::read_to_string(w.dir.join("data").join("key-events.jsonl")).unwrap();
    assert!(ev.contains("\"switched\"") && !ev.contains(KEY_B), "{ev}");
    // The in-flight flatten was settled (with A) before the swap: flat, no duplicate, no orphan.
    assert!(wait_flat(&w, Duration::from_secs(10)), "{}", bot.log());
    let (pos, open) = assert_consistent(&w, &bot, Duration::from_secs(10));
    assert!(pos.is_empty() && open.is_empty());

    // Trading goes on with B only.
    let b_before = usage(&w, KEY_B).0;
    round(&w, &bot);
    round(&w, &bot);
    assert_eq!(
        usage(&w, KEY),
        a_after_switch,
        "key A unused after the switch"
    );
    assert!(usage(&w, KEY_B).0 > b_before, "B signs now");
    // A revoked on the exchange: nothing changes for the bot.
    w.admin(AdminCall::revoke_key(KEY));
    round(&w, &bot);
    let (pos, open) = assert_consistent(&w, &bot, Duration::from_secs(10));
    assert!(pos.is_empty() && open.is_empty());
    assert_eq!(
        usage(&w, KEY),
        a_after_switch,
        "A never tried after the switch"
    );
    assert!(!bot.log().contains("rejected the API key"), "{}", bot.log());
    // One process the whole time.
    assert!(bot.log().matches("==================== AEGIS").count() == 1);
    eprintln!(
        "key rotation e2e took {:?} (rotate command {took:?})",
        t0.elapsed()
    );
}

/// The first round flattens the position adopted at start.
fn round_adopted(w: &World, bot: &Bot) {
    kill_flatten(w, bot);
    assert!(wait_flat(w, Duration::from_secs(10)), "{}", bot.log());
    assert_consistent(w, bot, Duration::from_secs(5));
}
