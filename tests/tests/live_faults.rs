//! Fault e2e tests of the real `aegis` binary on the live path (TRADING_MODE=testnet) against the in-process
//! Binance simulator: `kill -9` mid-order then restart, clock skew (-1021), 429 and 418, an expired listenKey,
//! 503 on an order (placed and not placed), a dropped and a stalled market stream, unknown outcomes settled
//! while exits and the kill switch go out. After each: no duplicate order, no orphan order, positions equal on
//! both sides ([`assert_consistent`]). 429 and 418 also raise one `exchange_errors` alert at the operator's
//! webhook.
//!
//! Orders are made to happen at once with the kill switch's flatten of a position the bot adopted at start
//! (a real product feature: the `KILL` file), not with a test-only backdoor. Build first:
//! `cargo build -p aegis-control --bin aegis`. Tests run one at a time ([`SERIAL`]).

mod live_support;
use live_support::*;

fn adopted(tag: &str) -> (World, Bot) {
    adopt(World::new(tag, keys(false, false)), &testnet_env())
}

/// [`adopted`], with the bot's alerts going to a [`Webhook`] as an operator's would.
fn adopted_alerting(tag: &str) -> (World, Bot, Webhook) {
    let w = World::new(tag, keys(false, false));
    let hook = w.webhook();
    let mut env = testnet_env();
    env.push(("ALERT_WEBHOOK_URL", hook.url.clone()));
    let (w, bot) = adopt(w, &env);
    (w, bot, hook)
}

fn adopt(w: World, env: &[(&str, String)]) -> (World, Bot) {
    manual_buy(&w, "0.003");
    let bot = start_agreed(&w, 1, env);
    (w, bot)
}

fn count(bot: &Bot, needle: &str) -> usize {
    bot.log().matches(needle).count()
}

fn long_3() -> std::collections::BTreeMap<String, i64> {
    [("BTCUSDT".to_string(), 300_000i64)].into_iter().collect()
}

/// The end of most faults: exchange and bot agree, and neither holds a position or an open order.
fn assert_flat(w: &World, bot: &Bot, why: &str) {
    let (pos, open) = assert_consistent(w, bot, Duration::from_secs(5));
    assert!(
        pos.is_empty() && open.is_empty(),
        "{why}: positions {pos:?}, open orders {open:?}"
    );
}

#[test]
fn fault_kill9_mid_order_then_restart_has_no_duplicate_and_no_orphan() {
    let _g = serial();
    let t0 = Instant::now();
    let (w, mut bot) = adopted("kill9");
    assert_eq!(
        assert_consistent(&w, &bot, Duration::from_secs(5)).0,
        long_3()
    );
    // The flattening order reaches the exchange, but its answer is held back: the bot dies not knowing.
    w.admin(AdminCall::delay(5000, Some(1), Some("/ws-fapi/v1")));
    w.admin(AdminCall::ws_stall("user", None));
    kill_file(&w);
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            sim_positions(&w).is_empty()
        }),
        "the order reached the exchange"
    );
    bot.signal(9);
    assert!(bot.wait_exit(Duration::from_secs(5)).is_some());
    assert_eq!(
        count(&bot, "querying it by client id"),
        0,
        "died before it knew"
    );
    w.admin(AdminCall::clear_faults());
    fs::remove_file(w.dir.join("data").join("KILL")).unwrap();
    // An order of ours the journal does not know as open must not survive the restart either.
    let bot2 = w.bot(2, &testnet_env());
    bot2.expect_log("local and exchange state agree", Duration::from_secs(15));
    // The flatten's fill, made while the bot was dead, is recovered from userTrades: the journal goes flat
    // by a fill (PnL and fee booked), not by a position correction.
    let log2 = bot2.log();
    assert!(
        log2.contains("1 fill(s) made while the bot was away recovered from userTrades"),
        "the restart books the missed fill: {log2}"
    );
    assert!(
        !log2.contains("adopting the exchange's size"),
        "no position correction: {log2}"
    );
    nudge(&w);
    std::thread::sleep(Duration::from_millis(500));
    assert_flat(&w, &bot2, "no duplicate (nothing re-sent), no orphan");
    assert_eq!(
        count(&bot2, "protective stop resting"),
        0,
        "no stop sized on the journal's old long: {}",
        bot2.log()
    );
    assert!(sim_algo_open(&w).is_empty(), "{:?}", sim_algo_open(&w));
    eprintln!("kill -9 e2e took {:?}", t0.elapsed());
}

#[test]
fn fault_clock_skew_resyncs_once_and_the_order_succeeds() {
    let _g = serial();
    let t0 = Instant::now();
    let (w, bot) = adopted("skew");
    // The exchange's clock jumps 8 s ahead: our timestamps fall outside recvWindow (5 s): -1021.
    w.admin(AdminCall::skew_clock(8000));
    kill_file(&w);
    assert!(
        wait_flat(&w, Duration::from_secs(10)),
        "the resent order filled\n{}",
        bot.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(&bot, "resyncing once"), 1, "{}", bot.log());
    assert_flat(&w, &bot, "flat after the resent order");
    eprintln!("clock skew e2e took {:?}", t0.elapsed());
}

fn rate_limit_case(tag: &str, limits: serde_json::Value, min_wait: Duration) {
    let t0 = Instant::now();
    let (w, bot, hook) = adopted_alerting(tag);
    // The protective stop rests before the limit bites, so the kill switch has an algo order to cancel.
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            !sim_algo_open(&w).is_empty()
        }),
        "a protective stop rests\n{}",
        bot.log()
    );
    w.admin(AdminCall::set_limits(limits));
    kill_file(&w);
    bot.expect_log("rate limited by Binance", Duration::from_secs(5));
    let halted_at = Instant::now();
    // The exchange would accept again now, but the bot must wait what it was told.
    w.admin(AdminCall::set_limits(serde_json::json!({})));
    for _ in 0..3 {
        nudge(&w);
    }
    assert_eq!(
        sim_positions(&w),
        long_3(),
        "no order while halted\n{}",
        bot.log()
    );
    bot.expect_log("rate limit wait over", Duration::from_secs(15));
    let waited = halted_at.elapsed();
    assert!(
        waited + Duration::from_millis(1500) >= min_wait,
        "{waited:?}"
    );
    assert!(
        wait_flat(&w, Duration::from_secs(8)),
        "resumed\n{}",
        bot.log()
    );
    // The halt itself, once (the kill switch's algo-order cancel refused inside the ban window is logged too).
    assert_eq!(
        count(&bot, "rate limited by Binance: new entries halted"),
        1,
        "one halt, no hammering: {}",
        bot.log()
    );
    assert_flat(&w, &bot, "flat after the wait");
    // The kill switch's algo-order cancel, refused while limited, is retried until it lands: no stop is left.
    assert!(
        wait_until(Duration::from_secs(35), Duration::from_millis(100), || {
            sim_algo_open(&w).is_empty()
        }),
        "{:?}\n{}",
        sim_algo_open(&w),
        bot.log()
    );
    // What the operator sees: the gateway's exchange_errors alert, once for the one halt, without key material.
    assert_eq!(
        hook.count_within("exchange_errors", Duration::from_secs(5)),
        1,
        "{:?}",
        hook.all()
    );
    for b in hook.all() {
        assert!(
            !b.contains(SECRET) && !b.contains(KEY),
            "key in an alert: {b}"
        );
    }
    eprintln!("{tag} e2e took {:?}", t0.elapsed());
}

#[test]
fn fault_429_halts_entries_then_resumes_after_the_wait() {
    let _g = serial();
    rate_limit_case(
        "429",
        serde_json::json!({"ordersPer10s": 0, "banAfter429s": 100}),
        Duration::from_secs(5),
    );
}

#[test]
fn fault_418_ban_halts_until_the_ban_ends() {
    let _g = serial();
    rate_limit_case(
        "418",
        serde_json::json!({"ordersPer10s": 0, "banAfter429s": 0, "banSecs": 6}),
        Duration::from_secs(6),
    );
}

#[test]
fn fault_expired_listen_key_is_recreated_and_fills_still_arrive() {
    let _g = serial();
    let t0 = Instant::now();
    let (w, bot) = adopted("listenkey");
    w.admin(AdminCall::expire_listen_keys(None, Some("alice")));
    bot.expect_log(
        "listenKey expired; creating a new one",
        Duration::from_secs(5),
    );
    bot.expect_log("user data stream reconnected", Duration::from_secs(5));
    kill_file(&w);
    assert!(wait_flat(&w, Duration::from_secs(10)), "{}", bot.log());
    assert_flat(
        &w,
        &bot,
        "the bot's position goes flat only through the fill reported on the new stream",
    );
    eprintln!("listenKey e2e took {:?}", t0.elapsed());
}

fn order_503_case(placed: bool) {
    let t0 = Instant::now();
    let (w, bot) = adopted(if placed { "503p" } else { "503n" });
    w.admin(AdminCall::order_503(1, placed));
    kill_file(&w);
    bot.expect_log("querying it by client id", Duration::from_secs(5));
    assert!(wait_flat(&w, Duration::from_secs(10)), "{}", bot.log());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(&bot, "querying it by client id"), 1, "{}", bot.log());
    assert_flat(&w, &bot, "flat, not short: no duplicate");
    eprintln!("503 placed={placed} e2e took {:?}", t0.elapsed());
}

#[test]
fn fault_503_on_a_placed_order_is_queried_never_resent() {
    let _g = serial();
    order_503_case(true);
}

#[test]
fn fault_503_on_an_order_not_placed_is_queried_then_a_new_order_goes() {
    let _g = serial();
    order_503_case(false);
}

fn market_conns(w: &World) -> Vec<u64> {
    w.admin(AdminCall::ws_connections())
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["kind"] == "market")
        .filter_map(|c| c["id"].as_u64())
        .collect()
}

fn messages(bot: &Bot) -> u64 {
    bot.api("/api/status")
        .and_then(|s| s["engine_stats"]["messages"].as_u64())
        .unwrap_or(0)
}

#[test]
fn fault_dropped_and_stalled_market_stream_reconnects_and_the_stale_guard_blocks_entries() {
    let _g = serial();
    let t0 = Instant::now();
    let w = World::new("feedfault", keys(false, false));
    let bot = start_agreed(&w, 1, &testnet_env());
    let ticker = Ticker::start(&w);
    let wait_msgs = |more_than: u64| {
        wait_until(Duration::from_secs(8), Duration::from_millis(100), || {
            messages(&bot) > more_than
        })
    };
    assert!(wait_msgs(50), "{}", bot.log());
    let before = market_conns(&w);
    assert_eq!(before.len(), 1, "{before:?}");
    // Dropped (TCP cut without a close frame): a new connection, data flows again.
    w.admin(AdminCall::ws_drop("market"));
    wait_until(Duration::from_secs(8), Duration::from_millis(50), || {
        market_conns(&w).iter().any(|c| !before.contains(c))
    });
    let after = market_conns(&w);
    assert!(after.iter().any(|c| !before.contains(c)), "{after:?}");
    std::thread::sleep(Duration::from_millis(300));
    let m = messages(&bot);
    assert!(
        wait_msgs(m + 20),
        "resubscribed: data flows ({m} -> {}; {:?})\n{}",
        messages(&bot),
        w.admin(AdminCall::ws_connections()),
        bot.log()
    );
    assert_eq!(bot.halt_reason(), None);
    // Stalled (open but silent): the stale guard halts entries while it lasts, then lifts.
    w.admin(AdminCall::ws_stall("market", None));
    let mut stale = None;
    wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
        stale = bot.halt_reason();
        stale.is_some()
    });
    assert!(
        stale
            .as_deref()
            .is_some_and(|r| r.to_lowercase().contains("stale")),
        "{stale:?}"
    );
    w.admin(AdminCall::ws_unstall("market"));
    wait_until(Duration::from_secs(8), Duration::from_millis(100), || {
        bot.halt_reason().is_none()
    });
    assert_eq!(bot.halt_reason(), None, "entries allowed again");
    ticker.stop();
    assert_flat(&w, &bot, "flat after the market stream faults");
    eprintln!("market stream faults e2e took {:?}", t0.elapsed());
}

#[test]
fn fault_user_stream_lost_while_the_exchange_changed_is_reconciled_after_reconnect() {
    let _g = serial();
    let t0 = Instant::now();
    let (w, bot) = adopted("resync");
    // The stream goes silent; meanwhile another client of the account trades and leaves an order working.
    w.admin(AdminCall::ws_stall("user", None));
    manual_buy(&w, "0.002");
    manual_limit_buy(&w, "0.002", "50000", "manual-during-gap");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        bot_state(&bot).map(|s| s.0),
        Some(long_3()),
        "the bot did not hear of it"
    );
    // The connection dies (what was sent meanwhile is lost): reconnect, then compare again.
    w.admin(AdminCall::ws_drop("user"));
    bot.expect_log(
        "after user data stream reconnect: local and exchange state agree",
        Duration::from_secs(10),
    );
    let log = bot.log();
    assert!(
        log.contains("new entries halted until local and exchange state agree"),
        "{log}"
    );
    assert!(log.contains("cancel open order manual-during-gap"), "{log}");
    let (pos, open) = assert_consistent(&w, &bot, Duration::from_secs(5));
    let want: std::collections::BTreeMap<String, i64> =
        [("BTCUSDT".to_string(), 500_000i64)].into_iter().collect();
    assert_eq!(pos, want);
    assert!(open.is_empty(), "{open:?}");
    assert_eq!(bot.halt_reason(), None, "entries resumed");
    // An order gateway reconnect runs the same comparison.
    w.admin(AdminCall::ws_drop("api"));
    bot.expect_log(
        "after order gateway reconnect: local and exchange state agree",
        Duration::from_secs(10),
    );
    assert_consistent(&w, &bot, Duration::from_secs(5));
    eprintln!("reconnect reconciliation e2e took {:?}", t0.elapsed());
}

#[test]
fn fault_the_user_stream_is_read_while_a_slow_reconciliation_runs() {
    let _g = serial();
    let (w, bot) = adopted("resync-reads");
    // The reconnect's comparison will wait 8 s for its open-orders answer (every openOrders answer waits until
    // the fault is cleared, so another reader of openOrders cannot use the delay up first).
    w.admin(AdminCall::delay(8000, None, Some("/fapi/v1/openOrders")));
    w.admin(AdminCall::ws_drop("user"));
    bot.expect_log("user data stream reconnected", Duration::from_secs(10));
    bot.expect_log(
        "user data stream reconnect: new entries halted",
        Duration::from_secs(5),
    );
    // While that comparison waits, another client of the account trades: the bot must hear it on the stream
    // now, not once the comparison is over (it used to run on the stream's own thread).
    let t = Instant::now();
    manual_buy(&w, "0.002");
    let want: std::collections::BTreeMap<String, i64> =
        [("BTCUSDT".to_string(), 500_000i64)].into_iter().collect();
    let heard = wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
        bot_state(&bot).is_some_and(|s| s.0 == want)
    });
    assert!(
        heard,
        "the fill reached the bot {:?} after it happened, during the slow comparison\n{}",
        t.elapsed(),
        bot.log()
    );
    assert!(
        !bot.log()
            .contains("after user data stream reconnect: local and exchange state agree"),
        "the comparison was still waiting for the exchange (the test needs it to be)"
    );
    w.admin(AdminCall::clear_faults());
    // The comparison then finishes on its own and entries resume.
    bot.expect_log(
        "after user data stream reconnect: local and exchange state agree",
        Duration::from_secs(15),
    );
    assert_consistent(&w, &bot, Duration::from_secs(5));
    assert_eq!(bot.halt_reason(), None, "entries resumed");
}

#[test]
fn live_bot_subscribes_to_the_market_streams_it_reads_and_not_to_depth() {
    let _g = serial();
    let w = World::new("streams", keys(false, false));
    let bot = start_agreed(&w, 1, &testnet_env());
    let paths: Vec<String> = w
        .admin(AdminCall::ws_connections())
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["kind"] == "market")
        .filter_map(|c| c["path"].as_str().map(String::from))
        .collect();
    assert_eq!(paths.len(), 1, "{paths:?}\n{}", bot.log());
    // The engine reads book tickers and trades; no strategy reads an L2 book, so no `@depth` costs it a parse
    // and a book update per frame.
    assert_eq!(
        paths[0],
        "/stream?streams=btcusdt@bookTicker/btcusdt@aggTrade",
        "{}",
        bot.log()
    );
    assert!(!bot.log().contains("depth book"), "{}", bot.log());
}

/// [`adopted`], then [`hold_flatten`].
fn held_flatten(tag: &str) -> (World, Bot, String) {
    let (w, bot) = adopted(tag);
    let cid = hold_flatten(&w, &bot);
    (w, bot, cid)
}

/// The kill switch's flatten of the bot's long of 0.003, held working on the exchange (accepted `NEW`, no fill
/// yet): its client order id, once both sides list it.
fn hold_flatten(w: &World, bot: &Bot) -> String {
    w.admin(AdminCall::hold_orders(1));
    kill_file(w);
    let mut open = Vec::new();
    wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        open = sim_open(w);
        if open.is_empty() {
            // A flatten waits for the symbol's first book; the simulator's book here moves only when told to,
            // so a bot killed before its first book ticker (a loaded machine) needs one more.
            nudge(w);
        }
        !open.is_empty()
    });
    assert_eq!(
        open.len(),
        1,
        "one flattening order: {open:?}\n{}",
        bot.log()
    );
    let (pos, mine) = assert_consistent(w, bot, Duration::from_secs(5));
    assert_eq!((pos, mine), (long_3(), open.clone()), "held, not filled");
    open.remove(0)
}

/// The journal holds every fill and final order state: a restart finds nothing to cancel, close or adjust.
fn restart_agrees(w: &World, mut bot: Bot) {
    bot.stop_cleanly(Duration::from_secs(10));
    fs::remove_file(w.dir.join("data").join("KILL")).unwrap();
    let bot2 = w.bot(2, &testnet_env());
    bot2.expect_log(
        "local and exchange state agree (0 cancelled, 0 adjustments)",
        Duration::from_secs(15),
    );
    assert_flat(w, &bot2, "flat after the restart");
}

#[test]
fn user_stream_partial_fill_then_the_rest_reach_position_and_journal() {
    let _g = serial();
    let t0 = Instant::now();
    let (w, bot, cid) = held_flatten("partial");
    w.admin(AdminCall::fill_order("alice", &cid, Some("0.001")));
    let (pos, open) = assert_consistent(&w, &bot, Duration::from_secs(5));
    let long_2: std::collections::BTreeMap<String, i64> =
        [("BTCUSDT".to_string(), 200_000i64)].into_iter().collect();
    assert_eq!(
        (pos, open),
        (long_2, vec![cid.clone()]),
        "partly filled, still working"
    );
    w.admin(AdminCall::fill_order("alice", &cid, None));
    assert_flat(&w, &bot, "the rest filled");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sim_open(&w), Vec::<String>::new(), "nothing re-sent");
    assert_eq!(
        bot_fills(&bot, &cid),
        vec![100_000, 200_000],
        "both fills recorded, each once"
    );
    restart_agrees(&w, bot);
    eprintln!("partial fill e2e took {:?}", t0.elapsed());
}

/// The held flatten ends on the exchange's side (`end`): the bot drops it, still long, and the kill switch
/// flattens with a new order.
fn ended_by_the_exchange(tag: &str, end: impl Fn(&World, &str)) {
    let t0 = Instant::now();
    let (w, bot, cid) = held_flatten(tag);
    end(&w, &cid);
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            bot_state(&bot).is_some_and(|(_, open)| !open.contains(&cid))
        }),
        "the bot heard the order end\n{}",
        bot.log()
    );
    assert_consistent(&w, &bot, Duration::from_secs(5));
    assert!(
        wait_flat(&w, Duration::from_secs(10)),
        "flattened anew\n{}",
        bot.log()
    );
    assert_flat(&w, &bot, "flat after the new order");
    restart_agrees(&w, bot);
    eprintln!("{tag} e2e took {:?}", t0.elapsed());
}

#[test]
fn user_stream_cancel_by_another_client_reaches_open_orders_and_journal() {
    let _g = serial();
    ended_by_the_exchange("extcancel", |w, cid| {
        let r = w.signed(
            reqwest::Method::DELETE,
            "/fapi/v1/order",
            &[("symbol", "BTCUSDT"), ("origClientOrderId", cid)],
        );
        assert_eq!(r["status"], "CANCELED", "{r}");
    });
}

#[test]
fn user_stream_expiry_reaches_open_orders_and_journal() {
    let _g = serial();
    ended_by_the_exchange("expiry", |w, cid| {
        let r = w.admin(AdminCall::expire_order("alice", cid));
        assert_eq!(r["status"], "EXPIRED", "{r}");
    });
}

#[test]
fn fault_near_the_orders_limit_halts_entries_before_any_429_then_resumes_after_the_window() {
    let _g = serial();
    let t0 = Instant::now();
    let (w, bot) = adopted("ratenear");
    // 10 orders per 10 s; every flatten answers 503 and is not placed, so the kill switch's flatten is queried,
    // refused and tried again on each book update: the bot keeps spending the ORDERS budget, window after
    // window, and only its own slow-down keeps it from the 11th order of a window (a 429).
    w.admin(AdminCall::set_limits(
        serde_json::json!({"ordersPer10s": 10, "banAfter429s": 100}),
    ));
    w.admin(AdminCall::order_503(1000, false));
    kill_file(&w);
    let near = "near Binance's ORDERS limit (8/10 per 10 s)";
    let halts = |n: usize| {
        wait_until(Duration::from_secs(30), Duration::from_millis(10), || {
            nudge(&w);
            count(&bot, near) >= n
        })
    };
    assert!(halts(1), "no slow-down at 80 %\n{}", bot.log());
    // Halted, resumed after the window, and halted again in the next one.
    assert!(halts(2), "no second window\n{}", bot.log());
    w.admin(AdminCall::clear_faults());
    assert!(
        count(&bot, "rate limit wait over") >= 1,
        "the second halt came before the first ended\n{}",
        bot.log()
    );
    // The exchange would place the flatten now; an order that reached it before the wait was over is a bug.
    nudge(&w);
    if sim_positions(&w) != long_3() {
        assert_eq!(
            count(&bot, "rate limit wait over"),
            2,
            "order while halted\n{}",
            bot.log()
        );
    }
    assert!(
        wait_until(
            Duration::from_secs(12),
            Duration::from_millis(50),
            || count(&bot, "rate limit wait over") >= 2
        ),
        "{}",
        bot.log()
    );
    assert!(
        wait_flat(&w, Duration::from_secs(8)),
        "resumed\n{}",
        bot.log()
    );
    assert_eq!(
        sim_ws_refusals(&w, KEY),
        0,
        "a 429 reached the bot\n{}",
        bot.log()
    );
    assert_eq!(count(&bot, "rate limited by Binance"), 0, "{}", bot.log());
    assert_eq!(count(&bot, near), 2, "one halt per window: {}", bot.log());
    assert_flat(&w, &bot, "flat after the window");
    eprintln!("rate limit slow-down e2e took {:?}", t0.elapsed());
}

#[test]
fn fault_listen_key_gone_at_keep_alive_minus_1125_is_recreated_and_fills_still_arrive() {
    let _g = serial();
    let t0 = Instant::now();
    let mut env = testnet_env();
    // The hidden keep-alive period of the user stream (control/src/exchange/user_stream.rs), 30 min otherwise.
    env.push(("AEGIS_LISTENKEY_KEEPALIVE_SECS", "1".into()));
    let (w, bot) = adopt(World::new("keepalive", keys(false, false)), &env);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        (
            count(&bot, "creating a new one"),
            count(&bot, "keep-alive failed")
        ),
        (0, 0),
        "live keys are kept alive, not recreated: {}",
        bot.log()
    );
    // The key vanishes without listenKeyExpired and its stream goes silent: only the keep-alive can tell.
    w.admin(AdminCall::ws_stall("user", None));
    let gone = w.admin(AdminCall::forget_listen_keys(None, Some("alice")));
    assert_eq!(
        gone["forgotten"].as_array().map(Vec::len),
        Some(1),
        "{gone}"
    );
    bot.expect_log(
        "listenKey keep-alive answered -1125",
        Duration::from_secs(5),
    );
    bot.expect_log("user data stream reconnected", Duration::from_secs(5));
    // The comparison with the exchange after the reconnect is over before this order: only the new stream
    // can tell the bot of its fill.
    let cid = hold_flatten(&w, &bot);
    w.admin(AdminCall::fill_order("alice", &cid, None));
    assert_flat(&w, &bot, "the fill reported on the new stream");
    assert_eq!(
        count(&bot, "listenKey keep-alive answered -1125"),
        1,
        "one recreation: {}",
        bot.log()
    );
    eprintln!("keep-alive -1125 e2e took {:?}", t0.elapsed());
}

/// Wall clock in ms (the simulator's clock too: no skew in these tests).
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The bot holding BTCUSDT and ETHUSDT (adopted), with ETHUSDT's stop-loss exit made an unknown outcome that
/// stays unknown for `rest_hold_ms`: the simulator answers it 503 without placing it, the WebSocket API's
/// status query says -2013 at once, and the REST status query's answer is held back.
fn eth_exit_unknown(tag: &str, rest_hold_ms: u64) -> (World, Bot) {
    let w = World::new(tag, keys(false, false));
    w.admin(AdminCall::set_quote(
        "ETHUSDT", "2999.99", "50", "3000.00", "50",
    ));
    manual_buy(&w, "0.003");
    let eth = w.signed(
        reqwest::Method::POST,
        "/fapi/v1/order",
        &[
            ("symbol", "ETHUSDT"),
            ("side", "BUY"),
            ("type", "MARKET"),
            ("quantity", "0.050"),
        ],
    );
    assert!(eth.get("orderId").is_some(), "{eth}");
    let mut env = testnet_env();
    env.push(("SYMBOLS", "BTCUSDT,ETHUSDT".into()));
    let bot = start_agreed(&w, 1, &env);
    w.admin(AdminCall::set_quote(
        "ETHUSDT", "3000.00", "50", "3000.01", "50",
    ));
    std::thread::sleep(Duration::from_millis(200));
    let both: std::collections::BTreeMap<String, i64> = [
        ("BTCUSDT".to_string(), 300_000),
        ("ETHUSDT".to_string(), 5_000_000),
    ]
    .into_iter()
    .collect();
    assert_eq!(assert_consistent(&w, &bot, Duration::from_secs(5)).0, both);
    w.admin(AdminCall::order_503(1, false));
    w.admin(AdminCall::delay(
        rest_hold_ms,
        Some(1),
        Some("/fapi/v1/order"),
    ));
    // 1.7 % down: past the scalp mode's 0.6 % stop on the adopted ETHUSDT position.
    w.admin(AdminCall::set_quote(
        "ETHUSDT", "2950.00", "50", "2950.01", "50",
    ));
    bot.expect_log("order outcome unknown", Duration::from_secs(5));
    (w, bot)
}

/// When the simulator's book took the order `cid` (ms), read back through REST once the faults are cleared.
fn sim_order_time(w: &World, symbol: &str, cid: &str) -> u64 {
    let o = w.signed(
        reqwest::Method::GET,
        "/fapi/v1/order",
        &[("symbol", symbol), ("origClientOrderId", cid)],
    );
    o["time"].as_u64().unwrap_or_else(|| panic!("{o}"))
}

/// The client id of the bot's first fill in `symbol` (`GET /api/trades`).
fn bot_fill_cid(bot: &Bot, symbol: &str) -> Option<String> {
    let page = bot.api("/api/trades?limit=200")?;
    page["trades"]
        .as_array()?
        .iter()
        .find(|t| t["symbol"] == symbol)
        .and_then(|t| t["client_id"].as_str().map(String::from))
}

/// Waits for the bot's BTCUSDT exit to fill and returns how long after `t0` (ms) the simulator's book took it.
fn btc_exit_latency(w: &World, bot: &Bot, t0: u64) -> (String, u64) {
    let mut cid = None;
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            cid = bot_fill_cid(bot, "BTCUSDT");
            cid.is_some()
        }),
        "the BTCUSDT exit filled\n{}",
        bot.log()
    );
    let cid = cid.unwrap_or_default();
    (
        cid.clone(),
        sim_order_time(w, "BTCUSDT", &cid).saturating_sub(t0),
    )
}

/// The end of both cases below: the unknown ETHUSDT exit is settled (rejected: never placed), the engine's
/// retry flattens it, and both sides agree on flat with nothing open: no duplicate, nothing stuck.
fn unknown_settles_flat(w: &World, bot: &Bot) {
    bot.expect_log(
        "not on the exchange (WebSocket API and REST agree): rejected",
        Duration::from_secs(10),
    );
    w.admin(AdminCall::set_quote(
        "ETHUSDT", "2950.01", "50", "2950.02", "50",
    ));
    w.admin(AdminCall::set_quote(
        "ETHUSDT", "2950.00", "50", "2950.01", "50",
    ));
    let t = Instant::now();
    while !sim_positions(w).is_empty() && t.elapsed() < Duration::from_secs(10) {
        nudge(w);
        w.admin(AdminCall::set_quote(
            "ETHUSDT", "2950.01", "50", "2950.02", "50",
        ));
    }
    assert_flat(w, bot, "flat on both sides after the unknown exit settled");
    assert_eq!(count(bot, "order outcome unknown"), 1, "{}", bot.log());
}

#[test]
fn fault_stop_loss_exit_goes_out_while_another_order_is_unknown() {
    let _g = serial();
    let t0 = Instant::now();
    let (w, bot) = eth_exit_unknown("unk-sl", 4000);
    // BTCUSDT falls past its stop while ETHUSDT's exit is unknown (its REST query is held 4 s).
    let sent = wall_ms();
    w.admin(AdminCall::set_quote(
        "BTCUSDT", "59000.0", "5", "59000.1", "5",
    ));
    let (cid, ms) = btc_exit_latency(&w, &bot, sent);
    assert!(
        !bot.log().contains("not on the exchange"),
        "the other order was still unknown when the exit went\n{}",
        bot.log()
    );
    assert!(
        ms <= 50,
        "the stop-loss exit {cid} reached the exchange {ms} ms after the tick\n{}",
        bot.log()
    );
    eprintln!("stop-loss exit behind an unknown order: {ms} ms tick -> exchange");
    unknown_settles_flat(&w, &bot);
    eprintln!("unknown + stop-loss e2e took {:?}", t0.elapsed());
}

#[test]
fn fault_kill_switch_flatten_goes_out_while_another_order_is_unknown() {
    let _g = serial();
    let t0 = Instant::now();
    let (w, bot) = eth_exit_unknown("unk-kill", 4000);
    let c = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let url = |p: &str| format!("https://127.0.0.1:{}{p}", bot.port);
    // Connection set up (TLS) before the clock starts: what is measured is the bot, not the handshake.
    c.get(url("/api/status")).send().unwrap();
    let sent = wall_ms();
    let r = c
        .post(url("/api/control/kill"))
        .json(&serde_json::json!({"flatten": true, "reason": "test"}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text());
    let (cid, ms) = btc_exit_latency(&w, &bot, sent);
    assert!(
        !bot.log().contains("not on the exchange"),
        "the other order was still unknown when the flatten went\n{}",
        bot.log()
    );
    assert!(
        ms <= 50,
        "the kill switch's flatten {cid} reached the exchange {ms} ms after the command\n{}",
        bot.log()
    );
    eprintln!("kill-switch flatten behind an unknown order: {ms} ms command -> exchange");
    unknown_settles_flat(&w, &bot);
    eprintln!("unknown + kill e2e took {:?}", t0.elapsed());
}

#[test]
fn fault_order_unknown_past_its_deadline_is_resolved_not_left_pending() {
    let _g = serial();
    let t0 = Instant::now();
    // The REST status query is held past the 10 s deadline: only the WebSocket API has said "no such order".
    let (w, bot) = eth_exit_unknown("unk-deadline", 15_000);
    bot.expect_log("order outcome still unknown after", Duration::from_secs(14));
    let open = bot.api("/api/orders/open").unwrap_or_default();
    assert_eq!(
        open["orders"].as_array().map(Vec::len),
        Some(0),
        "nothing left PendingNew: {open}"
    );
    // Reconciliation was asked to compare and found the exchange agreeing (no such order); then the exit retries
    // (not before: a fill while a comparison round runs is counted by both).
    bot.expect_log(
        "after order gateway reconnect: local and exchange state agree",
        Duration::from_secs(10),
    );
    let t = Instant::now();
    while sim_positions(&w).contains_key("ETHUSDT") && t.elapsed() < Duration::from_secs(10) {
        w.admin(AdminCall::set_quote(
            "ETHUSDT", "2950.01", "50", "2950.02", "50",
        ));
        std::thread::sleep(Duration::from_millis(200));
        w.admin(AdminCall::set_quote(
            "ETHUSDT", "2950.00", "50", "2950.01", "50",
        ));
        std::thread::sleep(Duration::from_millis(200));
    }
    let (pos, open) = assert_consistent(&w, &bot, Duration::from_secs(5));
    assert_eq!(
        (pos, open),
        (long_3(), vec![]),
        "ETHUSDT exited once (no duplicate), BTCUSDT untouched"
    );
    eprintln!("unknown past deadline e2e took {:?}", t0.elapsed());
}

/// A decimal of an answer (string or number) in 10⁻⁸ units.
fn dec_units(v: &Value) -> i64 {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return i64::MIN,
    };
    aegis_shared::Notional::parse(&s)
        .map(|n| n.units())
        .unwrap_or(i64::MIN)
}

/// (trade id, qty, price, fee, realized PnL) of each of `cid`'s trades as the simulator booked them.
fn sim_trades_of(w: &World, cid: &str) -> Vec<(u64, i64, i64, i64, i64)> {
    let o = w.signed(
        reqwest::Method::GET,
        "/fapi/v1/order",
        &[("symbol", "BTCUSDT"), ("origClientOrderId", cid)],
    );
    let oid = o["orderId"].as_u64().expect("the order is known");
    let rows = w.signed(
        reqwest::Method::GET,
        "/fapi/v1/userTrades",
        &[("symbol", "BTCUSDT"), ("orderId", &oid.to_string())],
    );
    let mut v: Vec<_> = rows
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["id"].as_u64().unwrap_or(0),
                dec_units(&t["qty"]),
                dec_units(&t["price"]),
                dec_units(&t["commission"]),
                dec_units(&t["realizedPnl"]),
            )
        })
        .collect();
    v.sort();
    v
}

/// The same for the bot's fills of `cid` (`GET /api/trades`).
fn bot_trades_of(bot: &Bot, cid: &str) -> Vec<(u64, i64, i64, i64, i64)> {
    let page = bot.api("/api/trades?limit=200").unwrap_or_default();
    let mut v: Vec<_> = page["trades"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["client_id"] == cid)
        .map(|t| {
            (
                t["trade_id"].as_u64().unwrap_or(0),
                dec_units(&t["qty"]),
                dec_units(&t["price"]),
                dec_units(&t["fee"]),
                dec_units(&t["realized_pnl"]),
            )
        })
        .collect();
    v.sort();
    v
}

/// The bot's fills of `cid` are the simulator's trades of it, one for one: same ids, quantities, prices, fees
/// and realized PnL to 10⁻⁸ (nothing missing, nothing twice).
fn assert_fills_are_the_sims(w: &World, bot: &Bot, cid: &str, n: usize) {
    let want = sim_trades_of(w, cid);
    assert_eq!(want.len(), n, "the simulator's trades of {cid}: {want:?}");
    let mut got = Vec::new();
    let same = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        got = bot_trades_of(bot, cid);
        got == want
    });
    assert!(
        same,
        "bot fills {got:?}\n!= sim trades {want:?}\n{}",
        bot.log()
    );
}

/// Issue 13.3 (a) and (c): a resting order of ours fills in two trades while the bot is dead (`kill -9`). The
/// restart books both from userTrades before it compares positions: fills, fees and realized PnL are the
/// simulator's, the order closes with its real fill, no position correction is needed; a second restart books
/// nothing again.
#[test]
fn fills_made_while_the_bot_was_killed_are_recovered_once_from_user_trades() {
    let _g = serial();
    let t0 = Instant::now();
    let (w, mut bot, cid) = held_flatten("recover-kill9");
    bot.signal(9);
    assert!(bot.wait_exit(Duration::from_secs(5)).is_some());
    w.admin(AdminCall::fill_order("alice", &cid, Some("0.001")));
    w.admin(AdminCall::fill_order("alice", &cid, None));
    assert!(sim_positions(&w).is_empty(), "flat on the exchange");
    fs::remove_file(w.dir.join("data").join("KILL")).unwrap();
    let mut bot2 = w.bot(2, &testnet_env());
    bot2.expect_log("local and exchange state agree", Duration::from_secs(15));
    let log = bot2.log();
    assert!(
        log.contains("2 fill(s) made while the bot was away recovered from userTrades"),
        "{log}"
    );
    assert!(
        !log.contains("adopting the exchange's size"),
        "no position correction: {log}"
    );
    assert_fills_are_the_sims(&w, &bot2, &cid, 2);
    assert_eq!(bot_fills(&bot2, &cid), vec![100_000, 200_000]);
    assert_flat(&w, &bot2, "the recovered fills flattened the journal too");
    // (c) Restarting again (and once more) recovers nothing twice.
    for run in [3, 4] {
        bot2.stop_cleanly(Duration::from_secs(10));
        bot2 = w.bot(run, &testnet_env());
        bot2.expect_log(
            "local and exchange state agree (0 cancelled, 0 adjustments)",
            Duration::from_secs(15),
        );
        let log = bot2.log();
        assert!(
            log.contains("0 fill(s) made while the bot was away recovered"),
            "run {run}: {log}"
        );
        assert!(!log.contains("adopting the exchange's size"), "{log}");
        assert_flat(&w, &bot2, "still flat");
    }
    eprintln!("kill -9 fill recovery e2e took {:?}", t0.elapsed());
}

/// An order of ours that reached the exchange while its submission never reached the journal (the process was
/// killed between the two: the race `fault_kill9_mid_order_…` can lose) and filled while the bot was away. The
/// symbol has no journaled trade (its position was adopted), so there is no trade id to read from: the restart
/// reads userTrades by time after the journal's position record and books the fill (the simulator's price, fee
/// and PnL), with no position correction, and not the buy made before the adoption. Once: a second restart
/// books nothing.
#[test]
fn a_fill_of_an_order_the_journal_never_heard_of_is_recovered_by_time() {
    let _g = serial();
    let t0 = Instant::now();
    let (w, mut bot) = adopted("recover-by-time");
    bot.stop_cleanly(Duration::from_secs(10));
    // What the killed bot sent: a client id of ours, unknown to the journal.
    let cid = "agmx0c1ea5-7";
    let sold = w.signed(
        reqwest::Method::POST,
        "/fapi/v1/order",
        &[
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "MARKET"),
            ("quantity", "0.003"),
            ("reduceOnly", "true"),
            ("newClientOrderId", cid),
        ],
    );
    assert!(sold.get("orderId").is_some(), "{sold}");
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            sim_positions(&w).is_empty()
        }),
        "flat on the exchange"
    );
    let mut bot2 = w.bot(2, &testnet_env());
    bot2.expect_log("local and exchange state agree", Duration::from_secs(15));
    let log = bot2.log();
    assert!(
        log.contains("1 fill(s) made while the bot was away recovered from userTrades"),
        "{log}"
    );
    assert!(
        !log.contains("adopting the exchange's size"),
        "no position correction: {log}"
    );
    assert_fills_are_the_sims(&w, &bot2, cid, 1);
    assert_flat(&w, &bot2, "the recovered fill flattened the journal too");
    // The stop manager sized nothing from the journal's old long: the first run's stop was cancelled as a stray
    // and none was placed for the position the exchange no longer held.
    assert_eq!(count(&bot2, "protective stop resting"), 0, "{}", bot2.log());
    assert!(sim_algo_open(&w).is_empty(), "{:?}", sim_algo_open(&w));
    bot2.stop_cleanly(Duration::from_secs(10));
    let bot3 = w.bot(3, &testnet_env());
    bot3.expect_log(
        "local and exchange state agree (0 cancelled, 0 adjustments)",
        Duration::from_secs(15),
    );
    let log = bot3.log();
    assert!(
        log.contains("0 fill(s) made while the bot was away recovered"),
        "{log}"
    );
    assert_eq!(bot_fills(&bot3, cid), vec![300_000], "booked once");
    assert_flat(&w, &bot3, "still flat");
    eprintln!("recovery by time e2e took {:?}", t0.elapsed());
}

/// Issue 13.3 (b): the user data stream goes silent while a trade of ours happens and then dies; after the
/// reconnect the trade is recovered from userTrades (from the journal's newest trade id), once, before the
/// comparison; the stream's later fills still count once each.
#[test]
fn a_fill_during_a_user_stream_gap_is_recovered_once_after_the_reconnect() {
    let _g = serial();
    let t0 = Instant::now();
    let (w, bot, cid) = held_flatten("recover-gap");
    w.admin(AdminCall::fill_order("alice", &cid, Some("0.001")));
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            bot_fills(&bot, &cid) == vec![100_000]
        }),
        "the first part arrived by the stream"
    );
    w.admin(AdminCall::ws_stall("user", None));
    w.admin(AdminCall::fill_order("alice", &cid, Some("0.001")));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(bot_fills(&bot, &cid), vec![100_000], "not heard");
    w.admin(AdminCall::ws_drop("user"));
    bot.expect_log(
        "after user data stream reconnect: local and exchange state agree",
        Duration::from_secs(15),
    );
    let log = bot.log();
    assert!(
        log.contains("1 fill(s) the stream did not deliver recovered from userTrades"),
        "{log}"
    );
    // The start adopted the manual position; after the reconnect nothing is corrected.
    let after = &log[log.find("user data stream reconnected").unwrap_or(0)..];
    assert!(
        !after.contains("adopting the exchange's size"),
        "no position correction after the reconnect: {log}"
    );
    // The rest by the stream again.
    w.admin(AdminCall::fill_order("alice", &cid, None));
    assert_fills_are_the_sims(&w, &bot, &cid, 3);
    assert_flat(&w, &bot, "all three parts booked once");
    restart_agrees(&w, bot);
    eprintln!("stream gap fill recovery e2e took {:?}", t0.elapsed());
}
