//! End-to-end tests of the real `aegis` binary on the live path (TRADING_MODE=testnet/live) against the
//! in-process Binance simulator: start-up proof and environment banner, the live key-restriction refusal,
//! reconciliation (orphan order cancelled, exchange position adopted), SIGTERM consistency, and a key revoked
//! mid-session (halted read-only, no retry loop), the key re-check in live mode, the market feed's forced
//! 24-hour rollover without a gap (the feed alone, and the bot with `WS_ROLLOVER_SECS=1`), and the depth book's
//! resync on a sequence gap, and the leverage set on every symbol at start (and the refusal to start when
//! Binance will not take it). Fault tests: `live_faults.rs`.
//! Build the binary first: `cargo build -p aegis-control`.
//! Tests run one at a time ([`SERIAL`]): each bot busy-polls a core.

mod live_support;
use live_support::*;

/// Polls a new feed (it connects as it is polled; the engine thread polls it in the bot) until it is
/// connected, and a little longer: the simulator subscribes the connection just after its 101.
fn poll_until_subscribed(feed: &mut aegis_engine::net::ws_feed::WsFeed) {
    use aegis_engine::feed::FeedPoll;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10)
        && !(feed.is_connected() && t.elapsed() > Duration::from_millis(300))
    {
        while let FeedPoll::Msg(_) = feed.poll() {}
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(feed.is_connected());
}

/// The update id of a combined-stream bookTicker message.
fn update_id(msg: &[u8]) -> Option<u64> {
    let v: Value = serde_json::from_slice(msg).unwrap();
    v["data"]["u"].as_u64()
}

#[test]
fn live_startup_proof_banner_and_reconciliation() {
    let _g = serial();
    let w = World::new("recon", keys(false, false));
    // An orphan the bot never placed, and a position opened by hand.
    manual_limit_buy(&w, "0.002", "50000", "manual-orphan-1");
    manual_buy(&w, "0.003");
    let t0 = Instant::now();
    let mut bot = w.bot(1, &testnet_env());
    bot.expect_log("local and exchange state agree", Duration::from_secs(15));
    let log = bot.log();
    assert!(log.contains("TESTNET"), "{log}");
    assert!(
        log.contains("key check:") && log.contains("BINANCE_TESTNET_API_KEY works"),
        "{log}"
    );
    assert!(log.contains("cancel open order manual-orphan-1"), "{log}");
    assert!(
        log.contains("position BTCUSDT: journal 0 vs exchange 0.003"),
        "{log}"
    );
    let open = w.admin(AdminCall::open_orders("alice"));
    assert_eq!(
        open.as_array().map(Vec::len),
        Some(0),
        "orphan cancelled: {open}"
    );
    assert!(
        !log.contains("Pr0dPr0d") && !log.contains(SECRET),
        "no key in the log"
    );
    bot.stop_cleanly(Duration::from_secs(8));
    // The adopted position is journaled: a restart finds journal and exchange in agreement.
    let bot2 = w.bot(2, &testnet_env());
    bot2.expect_log("local and exchange state agree", Duration::from_secs(15));
    assert!(
        !bot2.log().contains("position BTCUSDT: journal"),
        "{}",
        bot2.log()
    );
    eprintln!("reconciliation e2e took {:?}", t0.elapsed());
}

#[test]
fn live_mode_refuses_a_key_that_can_withdraw() {
    let _g = serial();
    let w = World::new("withdraw", keys(true, true));
    let mut env = live_env();
    // The IP override must not help with withdrawals.
    env.push(("ALLOW_UNRESTRICTED_IP", "true".to_string()));
    // Refused before any trading: by the ops preflight (exit 1) or the exchange start-up check (exit 2),
    // whichever runs first; both read apiRestrictions from the (simulated) exchange.
    let mut bot = w.bot(1, &env);
    let code = bot.wait_exit(Duration::from_secs(15));
    let log = bot.log();
    assert!(matches!(code, Some(1 | 2)), "{code:?} {log}");
    assert!(log.to_lowercase().contains("withdraw"), "{log}");
    assert!(
        !log.contains("market data:"),
        "never started trading: {log}"
    );
    // Withdrawals off but no IP restriction (and no override): refused too.
    w.admin(AdminCall::set_permissions(
        KEY,
        serde_json::json!({"withdrawals": false, "ipRestrict": false}),
    ));
    let env2: Vec<_> = env.iter().take(4).cloned().collect();
    let mut bot = w.bot(2, &env2);
    let code = bot.wait_exit(Duration::from_secs(15));
    let log = bot.log();
    assert!(matches!(code, Some(1 | 2)), "{code:?} {log}");
    assert!(log.contains("IP"), "{log}");
    assert!(!log.contains("market data:"), "{log}");
}

#[test]
fn start_refuses_a_hedge_mode_or_multi_assets_account_with_the_fix() {
    let _g = serial();
    let w = World::new("acct-modes", keys(false, false));
    let set = |path: &str, k: &str, v: &str| {
        let r = w.signed(reqwest::Method::POST, path, &[(k, v)]);
        assert_eq!(r["code"], 200, "{r}");
    };
    // Hedge mode: orders without positionSide would be refused (-4061), so the bot does not start.
    set("/fapi/v1/positionSide/dual", "dualSidePosition", "true");
    let mut bot = w.bot(1, &testnet_env());
    let code = bot.wait_exit(Duration::from_secs(15));
    let log = bot.log();
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("Hedge Mode") && log.contains("One-way Mode"),
        "{log}"
    );
    assert!(
        !log.contains("market data:"),
        "never started trading: {log}"
    );
    // Multi-assets margin: refused too.
    set("/fapi/v1/positionSide/dual", "dualSidePosition", "false");
    set("/fapi/v1/multiAssetsMargin", "multiAssetsMargin", "true");
    let mut bot = w.bot(2, &testnet_env());
    let code = bot.wait_exit(Duration::from_secs(15));
    let log = bot.log();
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("Multi-Assets Mode") && log.contains("Single-Asset Mode"),
        "{log}"
    );
    // Fixed on the exchange, the bot starts.
    set("/fapi/v1/multiAssetsMargin", "multiAssetsMargin", "false");
    let mut bot = w.bot(3, &testnet_env());
    bot.expect_log(
        "one-way position mode, single-asset margin",
        Duration::from_secs(20),
    );
    bot.expect_log("local and exchange state agree", Duration::from_secs(15));
    bot.stop_cleanly(Duration::from_secs(10));
}

#[test]
fn live_mode_refuses_a_key_that_can_also_trade_spot() {
    let _g = serial();
    let w = World::new("spot-perm", keys(false, true));
    w.admin(AdminCall::set_permissions(
        KEY,
        serde_json::json!({"spot": true}),
    ));
    // Futures only: "Enable Spot & Margin Trading" is a permission the bot never uses (least privilege).
    let mut bot = w.bot(1, &live_env());
    let code = bot.wait_exit(Duration::from_secs(15));
    let log = bot.log();
    assert!(matches!(code, Some(1 | 2)), "{code:?} {log}");
    assert!(log.contains("Enable Spot & Margin Trading"), "{log}");
    assert!(
        !log.contains("market data:"),
        "never started trading: {log}"
    );
    // Turned off on the exchange, the same key starts.
    w.admin(AdminCall::set_permissions(
        KEY,
        serde_json::json!({"spot": false}),
    ));
    let mut bot = w.bot(2, &live_env());
    bot.expect_log("spot & margin disabled", Duration::from_secs(20));
    bot.stop_cleanly(Duration::from_secs(10));
}

#[test]
fn live_start_sets_the_leverage_of_every_symbol_and_refuses_when_binance_will_not() {
    use aegis_engine::strategy::{
        position::PositionParams, swing::SwingParams, ultra_fast::UltraFastParams,
    };
    let _g = serial();
    let w = World::new("leverage", keys(false, false));
    let syms = ["BTCUSDT", "ETHUSDT"];
    let untouched = aegis_testkit::sim::account::DEFAULT_LEVERAGE;
    let scalp = aegis_engine::EngineParams::default().leverage;
    let swing = SwingParams::default().leverage;
    let all_modes = [
        scalp,
        swing,
        UltraFastParams::default().leverage,
        PositionParams::default().leverage,
    ];
    // (MODES_ENABLED, FUTURES_AUTOPILOT_MAX_LEVERAGE, expected): the largest enabled mode, then the cap.
    let two_modes = scalp.max(swing).min(5);
    let cases = [
        ("scalp,swing", 5, two_modes),
        ("scalp,ultra_fast_scalp,swing,position", 1, 1),
    ];
    assert!(
        all_modes.into_iter().max() > Some(1) && two_modes > 1,
        "the cap and the refusal below need a mode above 1x: {all_modes:?}"
    );
    for s in syms {
        assert_eq!(sim_leverage(&w, s), Some(untouched), "{s} before any start");
    }
    let mut prev = untouched;
    for (run, (modes, cap, want)) in (1u32..).zip(cases) {
        assert_ne!(want, prev, "each case must change what the exchange holds");
        let mut env = testnet_env();
        env.push(("SYMBOLS", syms.join(",")));
        env.push(("MODES_ENABLED", modes.to_string()));
        env.push(("FUTURES_AUTOPILOT_MAX_LEVERAGE", cap.to_string()));
        let mut bot = w.bot(run, &env);
        bot.expect_log("local and exchange state agree", Duration::from_secs(15));
        let log = bot.log();
        for s in syms {
            assert_eq!(sim_leverage(&w, s), Some(want), "{s} in run {run}: {log}");
            assert!(
                log.contains(&format!("leverage:    {s} set to {want}x")),
                "{log}"
            );
        }
        bot.stop_cleanly(Duration::from_secs(8));
        prev = want;
    }

    // Binance refuses (the symbol's brackets stop below the leverage): no start, and the message says what to change.
    w.admin(AdminCall::max_leverage(Some(prev)));
    let mut env = testnet_env();
    env.push(("SYMBOLS", syms.join(",")));
    env.push(("MODES_ENABLED", "scalp,swing".to_string()));
    let mut bot = w.bot(9, &env);
    let code = bot.wait_exit(Duration::from_secs(15));
    let log = bot.log();
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("refused leverage") && log.contains("-4028"),
        "{log}"
    );
    assert!(
        log.contains("Lower FUTURES_AUTOPILOT_MAX_LEVERAGE"),
        "{log}"
    );
    assert!(
        !log.contains("market data:"),
        "never started trading: {log}"
    );
    for s in syms {
        assert_eq!(
            sim_leverage(&w, s),
            Some(prev),
            "{s} unchanged after the refusal"
        );
    }
    w.admin(AdminCall::max_leverage(None));
}

#[test]
fn live_revoked_key_halts_read_only_without_retry_loop() {
    let _g = serial();
    let w = World::new("revoke", keys(false, false));
    let hook = w.webhook();
    let pem = ed_key().to_pkcs8_pem(Default::default()).unwrap();
    let pem_path = w.dir.join("ed25519.pem");
    fs::write(&pem_path, pem.as_bytes()).unwrap();
    let env = vec![
        ("TRADING_MODE", "testnet".to_string()),
        ("BINANCE_TESTNET_API_KEY", ED_KEY.to_string()),
        (
            "BINANCE_TESTNET_ED25519_PRIVATE_KEY_PATH",
            pem_path.display().to_string(),
        ),
        ("ALERT_WEBHOOK_URL", hook.url.clone()),
    ];
    let mut bot = w.bot(1, &env);
    bot.expect_log("session logged on (Ed25519)", Duration::from_secs(15));
    // Order entry runs on the engine thread (issue 12), not on the old gateway thread.
    assert!(
        bot.log()
            .contains("WebSocket API connected on the engine thread"),
        "{}",
        bot.log()
    );
    w.admin(AdminCall::revoke_key(ED_KEY));
    bot.expect_log("rejected the API key", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        bot.child.try_wait().unwrap().is_none(),
        "stays up read-only"
    );
    let n = bot.log().matches("rejected the API key").count();
    assert_eq!(n, 1, "no retry loop: {}", bot.log());
    // What the operator sees. A rejected key is a kill-switch trigger (issue 5), and the status API names the
    // most important active reason, so it shows the kill switch; the key_invalid alert names the cause.
    let status = bot
        .api("/api/status")
        .map(|s| s["status"].clone())
        .unwrap_or_default();
    assert_eq!(
        (
            status["engine"].as_str(),
            status["halt_reason"].as_str(),
            status["killed"].as_bool()
        ),
        (Some("halted"), Some("kill_switch"), Some(true)),
        "{status}\n{}",
        bot.log()
    );
    assert_eq!(
        hook.count_within("key_invalid", Duration::from_secs(5)),
        1,
        "{:?}",
        hook.all()
    );
    // No consistency check here: with the key refused the bot can neither cancel nor hear fills, so what the
    // exchange holds may move on without it (reconciliation with a working key settles it after a restart).
    bot.stop_cleanly(Duration::from_secs(8));
}

#[test]
fn live_empty_key_is_read_only_with_a_banner() {
    let _g = serial();
    let w = World::new("readonly", keys(false, false));
    let mut bot = w.bot(1, &[("TRADING_MODE", "testnet".to_string())]);
    bot.expect_log("READ-ONLY MODE", Duration::from_secs(15));
    bot.expect_log("NO ORDERS", Duration::from_secs(2));
    bot.stop_cleanly(Duration::from_secs(8));
}

#[test]
fn live_ws_feed_receives_parsable_combined_streams_and_reconnects() {
    use aegis_engine::feed::parse::Parser;
    use aegis_engine::feed::FeedPoll;
    use aegis_engine::net::ws_feed::{WsFeed, WsFeedConfig};
    let _g = serial();
    let w = World::with_source("feed", keys(false, false), SourceKind::EngineSim);
    let url = format!(
        "{}/stream?streams=btcusdt@bookTicker/btcusdt@aggTrade",
        w.sim().ws_url()
    );
    let mut feed = WsFeed::start(WsFeedConfig::new(url)).unwrap();
    let mut parser = Parser::new();
    let count = |feed: &mut WsFeed, parser: &mut Parser, limit: Duration| {
        let (mut ok, mut bad) = (0, 0);
        let t = Instant::now();
        while t.elapsed() < limit && ok < 50 {
            match feed.poll() {
                FeedPoll::Msg(b) => match parser.parse(b) {
                    Ok(_) => ok += 1,
                    Err(_) => bad += 1,
                },
                _ => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        (ok, bad)
    };
    let (ok, bad) = count(&mut feed, &mut parser, Duration::from_secs(10));
    assert!(ok >= 50 && bad == 0, "ok {ok} bad {bad}");
    // A dropped connection (TCP cut, no close frame) is reconnected and the streams resubscribed.
    w.admin(AdminCall::ws_drop("market"));
    std::thread::sleep(Duration::from_millis(300));
    while let FeedPoll::Msg(_) = feed.poll() {}
    let (ok, _) = count(&mut feed, &mut parser, Duration::from_secs(10));
    assert!(ok >= 50, "data flows again after the drop: {ok}");
    assert!(
        feed.counters
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
}

#[test]
fn live_kill_flattens_an_adopted_position_and_an_unknown_outcome_is_queried_not_resent() {
    let _g = serial();
    let w = World::new("kill", keys(false, false));
    manual_buy(&w, "0.003");
    let env = testnet_env();
    let mut bot = w.bot(1, &env);
    bot.expect_log("local and exchange state agree", Duration::from_secs(15));
    // A fresh quote, so the bot has a book for the symbol (the frozen market publishes on changes).
    std::thread::sleep(Duration::from_millis(300));
    w.admin(AdminCall::set_quote(
        "BTCUSDT", "60000.0", "5", "60000.1", "5",
    ));
    std::thread::sleep(Duration::from_millis(300));
    // The answer to the next WebSocket-API request comes after our 2 s answer timeout: outcome unknown.
    w.admin(AdminCall::delay(3000, Some(1), Some("/ws-fapi/v1")));
    fs::write(w.dir.join("data").join("KILL"), b"test").unwrap();
    let flat = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        let p = w.admin(AdminCall::positions("alice"));
        p.as_array().is_some_and(|a| a.is_empty())
    });
    assert!(
        flat,
        "kill switch flattened the adopted position\n{}",
        bot.log()
    );
    bot.expect_log("querying it by client id", Duration::from_secs(5));
    // Let the engine see the fill, then stop.
    std::thread::sleep(Duration::from_millis(500));
    let log = bot.log();
    assert_eq!(log.matches("querying it by client id").count(), 1, "{log}");
    bot.stop_cleanly(Duration::from_secs(10));
    let open = w.admin(AdminCall::open_orders("alice"));
    assert_eq!(open.as_array().map(Vec::len), Some(0), "{open}");
    fs::remove_file(w.dir.join("data").join("KILL")).unwrap();
    let bot2 = w.bot(2, &env);
    assert!(
        bot2.wait_log(
            "local and exchange state agree (0 cancelled, 0 adjustments)",
            Duration::from_secs(15)
        ),
        "the journal saw the flattening fill:\n{}\n---\n{}",
        log,
        bot2.log()
    );
}

#[test]
fn live_ws_feed_rollover_opens_the_new_connection_first_without_a_gap() {
    use aegis_engine::feed::FeedPoll;
    use aegis_engine::net::ws_feed::{WsFeed, WsFeedConfig};
    let _g = serial();
    let w = World::new("rollover", keys(false, false));
    let url = format!("{}/stream?streams=btcusdt@bookTicker", w.sim().ws_url());
    // The 24-hour rollover, forced early: a fresh connection every 700 ms.
    let mut cfg = WsFeedConfig::new(url);
    cfg.rollover_ms = 700;
    let mut feed = WsFeed::start(cfg).unwrap();
    poll_until_subscribed(&mut feed);
    let admin = aegis_testkit::sim::client::BlockingAdminClient::new(&w.base());
    let pusher = std::thread::spawn(move || {
        let mut ids = Vec::new();
        let mut overlap = false;
        for i in 0..120u32 {
            let (b, a) = alternate_quote(i);
            let r = admin
                .call(AdminCall::set_quote("BTCUSDT", b, "5", a, "5"))
                .unwrap();
            ids.push(r["updateId"].as_u64().unwrap());
            let conns = admin.call(AdminCall::ws_connections()).unwrap();
            let markets = conns
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["kind"] == "market")
                .count();
            overlap |= markets >= 2;
            std::thread::sleep(Duration::from_millis(15));
        }
        (ids, overlap)
    });
    let mut got = std::collections::HashSet::new();
    let t = Instant::now();
    while !pusher.is_finished() || t.elapsed() < Duration::from_millis(500) {
        match feed.poll() {
            FeedPoll::Msg(b) => got.extend(update_id(b)),
            _ => std::thread::sleep(Duration::from_millis(1)),
        }
        if t.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    let (ids, overlap) = pusher.join().unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(500) {
        if let FeedPoll::Msg(b) = feed.poll() {
            got.extend(update_id(b));
        }
    }
    let rollovers = feed
        .counters
        .rollovers
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(rollovers >= 2, "rollovers {rollovers}");
    // The overlap lasts only while the old connection is drained (milliseconds), so polling may miss it;
    // the gap check below is what proves open-new-then-close-old.
    eprintln!("rollovers {rollovers}, overlap observed: {overlap}");
    let missing: Vec<_> = ids.iter().filter(|u| !got.contains(u)).collect();
    assert!(
        missing.is_empty(),
        "no gap: missing updates {missing:?} of {}",
        ids.len()
    );
}

#[test]
fn live_bot_rolls_the_market_stream_over_without_a_gap_through_the_real_binary() {
    let _g = serial();
    let w = World::new("rollover-bot", keys(false, false));
    let mut env = testnet_env();
    // The 24-hour rollover, every second.
    env.push(("WS_ROLLOVER_SECS", "1".to_string()));
    let mut bot = start_agreed(&w, 1, &env);
    assert!(bot.log().contains("rollover every 1 s"), "{}", bot.log());
    let ticker = Ticker::start(&w);
    let messages = |bot: &Bot| -> Option<(u64, u64)> {
        let s = bot.api("/api/status")?;
        Some((
            s["engine_stats"]["messages"].as_u64()?,
            s["engine_stats"]["feed_age_ms"].as_u64()?,
        ))
    };
    // ~5 s of rollovers; every second the engine's message count must have grown and no stale halt appear.
    let mut samples = Vec::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(5200) {
        std::thread::sleep(Duration::from_millis(1000));
        let m = messages(&bot);
        let halt = bot.halt_reason();
        assert!(
            halt.as_deref() != Some("feed_stale"),
            "stale feed during rollovers: {halt:?}\n{}",
            bot.log()
        );
        samples.push(m);
    }
    ticker.stop();
    let counts: Vec<u64> = samples.iter().map(|m| m.map_or(0, |x| x.0)).collect();
    assert!(
        counts.windows(2).all(|w| w[1] > w[0]),
        "data kept flowing every second: {samples:?}"
    );
    assert!(
        samples.iter().flatten().all(|(_, age)| *age < 2_000),
        "feed age stayed small: {samples:?}"
    );
    // The simulator's side: several market connections, each opened before the previous one closed.
    let hist = w.admin(AdminCall::ws_history());
    let market: Vec<&Value> = hist
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "market")
        .collect();
    assert!(market.len() >= 4, "rollovers in 5 s: {hist}");
    for pair in market.windows(2) {
        let (prev, next) = (pair[0], pair[1]);
        let closed = prev["closed"]
            .as_u64()
            .expect("an older connection is closed");
        assert!(
            next["opened"].as_u64().unwrap() < closed,
            "new connection opened before the old one closed: {hist}"
        );
    }
    // Never zero open market connections after the first one opened.
    let mut events: Vec<(u64, i32)> = Vec::new();
    for c in &market {
        events.push((c["opened"].as_u64().unwrap(), 1));
        if let Some(x) = c["closed"].as_u64() {
            events.push((x, -1));
        }
    }
    events.sort();
    let mut open = 0;
    for (seq, d) in events {
        open += d;
        assert!(
            open >= 1,
            "no market connection open at event {seq}: {hist}"
        );
    }
    assert_eq!(open, 1, "exactly one connection left: {hist}");
    assert_consistent(&w, &bot, Duration::from_secs(10));
    bot.stop_cleanly(Duration::from_secs(10));
}

#[test]
fn live_depth_book_resyncs_on_a_sequence_gap_and_matches_the_exchange_after() {
    use aegis_engine::feed::FeedPoll;
    use aegis_engine::net::ws_feed::{DepthSnapshot, DepthSync, WsFeed, WsFeedConfig};
    use aegis_shared::{Price, Qty};
    use std::sync::atomic::Ordering::Relaxed;
    let _g = serial();
    let w = World::new("depth", keys(false, false));
    let base = w.base();
    let rest = move |_s: aegis_shared::Symbol| -> Option<DepthSnapshot> {
        let v: Value =
            reqwest::blocking::get(format!("{base}/fapi/v1/depth?symbol=BTCUSDT&limit=1000"))
                .ok()?
                .json()
                .ok()?;
        let side = |k: &str| -> Vec<(Price, Qty)> {
            v[k].as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    (
                        Price::parse(l[0].as_str().unwrap()).unwrap(),
                        Qty::parse(l[1].as_str().unwrap()).unwrap(),
                    )
                })
                .collect()
        };
        Some(DepthSnapshot {
            last_update_id: v["lastUpdateId"].as_u64()?,
            bids: side("bids"),
            asks: side("asks"),
        })
    };
    let fetch = rest.clone();
    let mut cfg = WsFeedConfig::new(format!(
        "{}/stream?streams=btcusdt@depth@100ms",
        w.sim().ws_url()
    ));
    cfg.depth = Some(DepthSync {
        fetch: std::sync::Arc::new(fetch),
        capacity: 1000,
    });
    let mut feed = WsFeed::start(cfg).unwrap();
    poll_until_subscribed(&mut feed);
    let quotes = |feed: &mut WsFeed, from: u32, n: u32| {
        for i in from..from + n {
            let bid = format!("{}.{}", 60000 + i / 10, i % 10);
            let ask = format!("{}.{}", 60001 + i / 10, i % 10);
            w.admin(AdminCall::set_quote("BTCUSDT", &bid, "3", &ask, "4"));
            std::thread::sleep(Duration::from_millis(30));
            while let FeedPoll::Msg(_) = feed.poll() {}
        }
    };
    quotes(&mut feed, 0, 10);
    let c = feed.counters.clone();
    assert!(c.depth_snapshots.load(Relaxed) >= 1);
    assert!(
        c.depth_applied.load(Relaxed) >= 5,
        "{}",
        c.depth_applied.load(Relaxed)
    );
    assert_eq!(c.depth_resyncs.load(Relaxed), 0);
    let snaps = c.depth_snapshots.load(Relaxed);
    // The simulator skips one depth update: the next event's `pu` breaks the chain.
    w.admin(AdminCall::depth_gap("BTCUSDT"));
    quotes(&mut feed, 10, 10);
    std::thread::sleep(Duration::from_millis(300));
    while let FeedPoll::Msg(_) = feed.poll() {}
    assert_eq!(c.depth_resyncs.load(Relaxed), 1, "one gap, one resync");
    assert_eq!(c.depth_snapshots.load(Relaxed), snaps + 1);
    // After the resync the local book equals the exchange's.
    let DepthSnapshot { bids, asks, .. } =
        rest(aegis_shared::Symbol::new("BTCUSDT").unwrap()).unwrap();
    let books = feed.books.lock().unwrap();
    let b = &books[&aegis_shared::Symbol::new("BTCUSDT").unwrap()];
    assert!(b.is_live());
    assert_eq!(b.bids(), &bids[..]);
    assert_eq!(b.asks(), &asks[..]);
    assert_eq!(
        b.best_bid().map(|x| x.0.to_string()),
        Some("60001.9".to_string())
    );
}

#[test]
fn live_key_restrictions_are_rechecked_and_a_change_halts_entries_with_an_alert() {
    let _g = serial();
    let w = World::new("recheck", keys(false, true));
    let mut env = live_env();
    // Every 24 h in production; every second here.
    env.push(("KEY_RECHECK_INTERVAL", "1s".to_string()));
    let bot = w.bot(1, &env);
    bot.expect_log("local and exchange state agree", Duration::from_secs(15));
    assert!(bot.log().contains("PRODUCTION"), "{}", bot.log());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !bot.log().contains("key restrictions changed"),
        "{}",
        bot.log()
    );
    // Someone enables withdrawals on the key while the bot runs.
    w.admin(AdminCall::set_permissions(
        KEY,
        serde_json::json!({"withdrawals": true}),
    ));
    bot.expect_log(
        "key restrictions changed: new entries halted",
        Duration::from_secs(5),
    );
    assert!(
        wait_until(Duration::from_secs(3), Duration::from_millis(100), || bot
            .halt_reason()
            .is_some()),
        "entries halted"
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        bot.log().matches("key restrictions changed").count(),
        1,
        "one halt and alert, no repetition: {}",
        bot.log()
    );
}

#[test]
fn live_bot_trades_over_tls_trusting_only_the_extra_ca_file() {
    let _g = serial();
    let w = World::with_tls("tls", keys(false, false));
    let ca = w.ca_file().display().to_string();
    let exits_with_config_error = |run: u32, env: &[(&str, String)], why: &str| {
        let mut bot = w.bot(run, env);
        assert_eq!(
            bot.wait_exit(Duration::from_secs(10)),
            Some(2),
            "{}",
            bot.log()
        );
        let log = bot.log();
        assert!(
            log.contains("BINANCE_EXTRA_CA_FILE") && log.contains(why),
            "{log}"
        );
    };
    // Production trusts the public roots only.
    let mut live = live_env();
    live.push(("BINANCE_EXTRA_CA_FILE", ca.clone()));
    exits_with_config_error(1, &live, "only for testnet/simulators");
    // A file that is no certificate fails at start, named by its key, not later as a TLS error.
    let junk = w.dir.join("junk.pem");
    fs::write(&junk, b"not a certificate").unwrap();
    let mut bad = testnet_env();
    bad.push(("BINANCE_EXTRA_CA_FILE", junk.display().to_string()));
    exits_with_config_error(2, &bad, "not a PEM certificate file");

    // Without the file the simulator's certificate is not trusted: the CA is what lets the bot in.
    let mut untrusted = w.bot(3, &testnet_env());
    let code = untrusted.wait_exit(Duration::from_secs(15));
    assert!(
        code.is_some_and(|c| c != 0) && untrusted.log().contains("cannot reach Binance"),
        "{code:?}\n{}",
        untrusted.log()
    );

    // A position for the kill switch to flatten: the bot's own order, placed over wss:// (WebSocket API).
    manual_buy(&w, "0.003");
    let mut env = testnet_env();
    env.push(("BINANCE_EXTRA_CA_FILE", ca));
    let mut bot = start_agreed(&w, 4, &env);
    let log = bot.log();
    assert!(w.base().starts_with("https://"), "{}", w.base());
    assert!(
        log.contains(&format!("REST {}", w.base()))
            && log.contains(&format!("streams {}", w.sim().ws_url())),
        "{log}"
    );
    let pem = w.sim().ca_pem().unwrap_or_default();
    let body = pem.lines().nth(1).unwrap_or("BEGIN CERTIFICATE");
    assert!(!log.contains(body), "CA content never logged: {log}");

    // Market data over the mio wss:// record layer: every fresh quote raises the engine's message count
    // (published about once a second, so each step waits for the next publication).
    let messages = || {
        bot.api("/api/status")
            .and_then(|s| s["engine_stats"]["messages"].as_u64())
    };
    let mut counts = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        nudge(&w);
        let rose = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            let now = messages();
            let up = now.is_some() && now > last;
            if up {
                last = now;
            }
            up
        });
        counts.push((rose, last));
    }
    assert!(
        counts.iter().all(|(rose, _)| *rose),
        "market data flowed: {counts:?}\n{}",
        bot.log()
    );

    kill_file(&w);
    assert!(
        wait_flat(&w, Duration::from_secs(15)),
        "the kill switch's flatten order was acknowledged and filled\n{}",
        bot.log()
    );
    let (positions, open) = assert_consistent(&w, &bot, Duration::from_secs(10));
    assert!(
        positions.is_empty() && open.is_empty(),
        "{positions:?} {open:?}"
    );
    bot.stop_cleanly(Duration::from_secs(10));
}
