//! Protective stops resting on the exchange (issue 13 item 5, the algoOrder part of item 8 and the `kill -9`
//! check of "How we will know"), against binance-sim's own books: the Algo Order API of the simulator, then the
//! real bot binary placing, moving, cancelling, adopting and (kill switch) removing its reduce-only stop.

mod live_support;

use aegis_shared::num::{Price, Qty, Rate, SCALE};
use live_support::*;
use reqwest::Method;

fn qty(v: &Value) -> Qty {
    Qty::parse(v.as_str().unwrap_or("0")).unwrap_or_else(|_| panic!("not a quantity: {v}"))
}

fn price(v: &Value) -> Price {
    Price::parse(v.as_str().unwrap_or("0")).unwrap_or_else(|_| panic!("not a price: {v}"))
}

/// What the bot must place for a long at `entry` with `EXCHANGE_STOP_LOSS=f` on BTCUSDT (tick 0.1), written
/// out independently of the bot's code: `entry − ⌈entry × f⌉`, down to the tick.
fn long_trigger(entry: Price, f: &str) -> Price {
    let f = Rate::parse(f).unwrap();
    let off =
        ((entry.units() as i128 * f.units() as i128 + SCALE as i128 - 1) / SCALE as i128) as i64;
    let tick = Price::parse("0.1").unwrap().units();
    Price::from_units((entry.units() - off).div_euclid(tick) * tick)
}

/// The simulator's entry price of the account's BTCUSDT position.
fn sim_entry(w: &World) -> Price {
    let p = w.admin(AdminCall::positions("alice"));
    let row = p
        .as_array()
        .and_then(|a| a.iter().find(|r| r["symbol"] == "BTCUSDT"))
        .cloned()
        .unwrap_or_else(|| panic!("no BTCUSDT position: {p}"));
    price(&row["entryPrice"])
}

/// Waits until exactly one algo order of ours waits on the simulator with this side and quantity; returns it.
fn wait_stop(w: &World, bot: &Bot, side: &str, q: &str, limit: Duration) -> Value {
    let want = Qty::parse(q).unwrap();
    let mut last = Vec::new();
    let ok = wait_until(limit, Duration::from_millis(100), || {
        last = sim_algo_open(w);
        last.len() == 1 && last[0]["side"] == side && qty(&last[0]["quantity"]) == want
    });
    assert!(
        ok,
        "want one {side} stop of {q}, the exchange has {last:?}\n{}",
        bot.log()
    );
    let s = last.remove(0);
    assert!(
        s["clientAlgoId"]
            .as_str()
            .unwrap()
            .starts_with("aegsl-BTCUSDT-"),
        "{s}"
    );
    assert_eq!(s["orderType"], "STOP_MARKET");
    assert_eq!(s["reduceOnly"], true);
    assert_eq!(s["workingType"], "MARK_PRICE");
    s
}

fn manual_sell(w: &World, qty: &str) {
    let r = w.signed(
        Method::POST,
        "/fapi/v1/order",
        &[
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "MARKET"),
            ("quantity", qty),
        ],
    );
    assert!(r.get("orderId").is_some(), "{r}");
}

/// A market far below the stops: the mark (the mid) falls through every trigger above 58000.
fn crash_to_58000(w: &World) {
    w.admin(AdminCall::set_quote(
        "BTCUSDT", "57999.9", "5", "58000", "5",
    ));
}

#[test]
fn sim_algo_order_api_and_conditional_types_refused_on_the_order_endpoint() {
    let _g = serial();
    let w = World::new("algo-api", keys(false, false));
    // Conditional types on /fapi/v1/order: -4120 since 2025-12-09.
    let r = w.signed(
        Method::POST,
        "/fapi/v1/order",
        &[
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "STOP_MARKET"),
            ("quantity", "0.01"),
            ("stopPrice", "58000"),
        ],
    );
    assert_eq!(r["code"], -4120, "{r}");
    manual_buy(&w, "0.010");
    let stop = |id: &str, trigger: &str| {
        w.signed(
            Method::POST,
            "/fapi/v1/algoOrder",
            &[
                ("algoType", "CONDITIONAL"),
                ("symbol", "BTCUSDT"),
                ("side", "SELL"),
                ("type", "STOP_MARKET"),
                ("quantity", "0.010"),
                ("triggerPrice", trigger),
                ("workingType", "MARK_PRICE"),
                ("reduceOnly", "true"),
                ("clientAlgoId", id),
            ],
        )
    };
    let a = stop("t-1", "58500");
    assert_eq!(a["algoStatus"], "NEW", "{a}");
    assert!(a["algoId"].as_u64().is_some(), "{a}");
    assert_eq!(
        stop("t-1", "58400")["code"],
        -4116,
        "duplicate clientAlgoId"
    );
    assert_eq!(stop("t-2", "61000")["code"], -2021, "would trigger at once");
    stop("t-3", "58100");
    let open = w.signed(Method::GET, "/fapi/v1/openAlgoOrders", &[]);
    assert_eq!(open.as_array().map(Vec::len), Some(2), "{open}");
    let q = w.signed(
        Method::GET,
        "/fapi/v1/algoOrder",
        &[("clientAlgoId", "t-1")],
    );
    assert_eq!(q["triggerPrice"], a["triggerPrice"], "{q}");
    let c = w.signed(
        Method::DELETE,
        "/fapi/v1/algoOrder",
        &[("clientAlgoId", "t-3")],
    );
    assert_eq!(c["clientAlgoId"], "t-3", "{c}");
    let c = w.signed(
        Method::DELETE,
        "/fapi/v1/algoOrder",
        &[("clientAlgoId", "t-3")],
    );
    assert_eq!(c["code"], -2011, "{c}");
    // The mark falls through 58500: the stop triggers into a reduce-only market sell named after it.
    crash_to_58000(&w);
    let q = w.signed(
        Method::GET,
        "/fapi/v1/algoOrder",
        &[("clientAlgoId", "t-1")],
    );
    assert_eq!(q["algoStatus"], "FINISHED", "{q}");
    assert!(sim_positions(&w).is_empty());
    let trades = w.signed(Method::GET, "/fapi/v1/userTrades", &[("symbol", "BTCUSDT")]);
    let oid = q["actualOrderId"].as_str().unwrap();
    assert!(
        trades.as_array().unwrap().iter().any(|t| t["orderId"]
            .as_u64()
            .map(|i| i.to_string())
            .as_deref()
            == Some(oid)
            && t["side"] == "SELL"),
        "{trades}"
    );
    let all = w.signed(
        Method::GET,
        "/fapi/v1/allAlgoOrders",
        &[("symbol", "BTCUSDT")],
    );
    let statuses: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["algoStatus"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["FINISHED", "CANCELED"], "{all}");
    let d = w.signed(
        Method::DELETE,
        "/fapi/v1/algoOpenOrders",
        &[("symbol", "BTCUSDT")],
    );
    assert_eq!(d["code"], 200, "{d}");
}

#[test]
fn live_stop_rests_on_the_exchange_moves_with_the_position_and_its_trigger_is_booked() {
    let _g = serial();
    let w = World::new("stops", keys(false, false));
    let bot = start_agreed(&w, 1, &testnet_env());
    manual_buy(&w, "0.003");
    let s = wait_stop(&w, &bot, "SELL", "0.003", Duration::from_secs(15));
    assert_eq!(
        price(&s["triggerPrice"]),
        long_trigger(sim_entry(&w), "0.03"),
        "{s}"
    );
    let first = s["clientAlgoId"].as_str().unwrap().to_string();
    // The position grows: a new stop for the whole of it, the old one cancelled after.
    manual_buy(&w, "0.002");
    let s = wait_stop(&w, &bot, "SELL", "0.005", Duration::from_secs(15));
    assert_ne!(s["clientAlgoId"], first.as_str());
    assert_eq!(
        price(&s["triggerPrice"]),
        long_trigger(sim_entry(&w), "0.03"),
        "{s}"
    );
    let book = w.admin(AdminCall::algo_orders("alice"));
    let old = book
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["clientAlgoId"] == first.as_str())
        .cloned()
        .unwrap();
    assert_eq!(old["algoStatus"], "CANCELED", "{book}");
    // The price falls through it: the exchange closes the position, and the bot books that fill as its own.
    let cid = s["clientAlgoId"].as_str().unwrap().to_string();
    crash_to_58000(&w);
    assert!(sim_positions(&w).is_empty());
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            bot_state(&bot).is_some_and(|(p, _)| p.is_empty())
        }),
        "{}",
        bot.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            bot_fills(&bot, &cid).iter().sum::<i64>() == 500_000
        }),
        "the triggered stop's fill is in the bot's trades\n{}",
        bot.log()
    );
    // Flat: no stop is placed again.
    std::thread::sleep(Duration::from_secs(2));
    assert!(sim_algo_open(&w).is_empty());
    // A new position, closed by hand: its stop is cancelled.
    w.admin(AdminCall::set_quote(
        "BTCUSDT", "59999.9", "5", "60000", "5",
    ));
    nudge(&w);
    manual_buy(&w, "0.002");
    wait_stop(&w, &bot, "SELL", "0.002", Duration::from_secs(15));
    manual_sell(&w, "0.002");
    assert!(
        wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
            sim_algo_open(&w).is_empty()
        }),
        "{:?}\n{}",
        sim_algo_open(&w),
        bot.log()
    );
    let h = bot.api("/api/health").unwrap();
    assert_eq!(
        h["protective_stops"]["unprotected"],
        serde_json::json!({}),
        "{h}"
    );
}

/// A stop cancelled behind the bot's back is heard on the user data stream (`ALGO_UPDATE` CANCELED) and placed
/// again at once, not at the next 30 s audit of `openAlgoOrders`.
#[test]
fn live_stop_cancelled_by_hand_is_placed_again_from_the_algo_update() {
    let _g = serial();
    let w = World::new("stops-algo-update", keys(false, false));
    let bot = start_agreed(&w, 1, &testnet_env());
    manual_buy(&w, "0.003");
    let s = wait_stop(&w, &bot, "SELL", "0.003", Duration::from_secs(15));
    let first = s["clientAlgoId"].as_str().unwrap().to_string();
    let trigger = price(&s["triggerPrice"]);
    let r = w.signed(
        Method::DELETE,
        "/fapi/v1/algoOrder",
        &[("clientAlgoId", first.as_str())],
    );
    assert_eq!(r["clientAlgoId"], first.as_str(), "{r}");
    // Within 5 s of a bot started seconds ago: its first audit (every 30 s) has not run yet.
    let again = wait_stop(&w, &bot, "SELL", "0.003", Duration::from_secs(5));
    assert_ne!(again["clientAlgoId"], first.as_str(), "{again}");
    assert_eq!(price(&again["triggerPrice"]), trigger, "{again}");
    bot.expect_log("(ALGO_UPDATE)", Duration::from_secs(2));
}

#[test]
fn live_kill_9_leaves_the_stop_on_the_exchange_and_it_closes_the_position() {
    let _g = serial();
    let w = World::new("stops-kill9", keys(false, false));
    let mut bot = start_agreed(&w, 1, &testnet_env());
    manual_buy(&w, "0.004");
    wait_stop(&w, &bot, "SELL", "0.004", Duration::from_secs(15));
    bot.signal(9);
    assert!(bot.wait_exit(Duration::from_secs(10)).is_some());
    // The bot is gone; the exchange still holds the stop.
    let s = sim_algo_open(&w);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(sim_positions(&w).get("BTCUSDT"), Some(&400_000));
    crash_to_58000(&w);
    assert!(
        sim_positions(&w).is_empty(),
        "the stop closed the position while the bot was down"
    );
    assert!(sim_algo_open(&w).is_empty());
    // Back up: the bot agrees it is flat and places nothing.
    let bot2 = start_agreed(&w, 2, &testnet_env());
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            bot_state(&bot2).is_some_and(|(p, _)| p.is_empty())
        }),
        "{}",
        bot2.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(sim_algo_open(&w).is_empty());
}

#[test]
fn live_start_adopts_our_stop_cancels_strays_and_the_kill_switch_removes_algo_orders() {
    let _g = serial();
    let w = World::new("stops-adopt", keys(false, false));
    manual_buy(&w, "0.003");
    let entry = sim_entry(&w);
    let trigger = long_trigger(entry, "0.03").to_string();
    let place = |id: &str, side: &str, trigger: &str, reduce_only: &str| {
        let r = w.signed(
            Method::POST,
            "/fapi/v1/algoOrder",
            &[
                ("algoType", "CONDITIONAL"),
                ("symbol", "BTCUSDT"),
                ("side", side),
                ("type", "STOP_MARKET"),
                ("quantity", "0.003"),
                ("triggerPrice", trigger),
                ("workingType", "MARK_PRICE"),
                ("reduceOnly", reduce_only),
                ("clientAlgoId", id),
            ],
        );
        assert_eq!(r["algoStatus"], "NEW", "{r}");
    };
    // Ours, matching the position: adopted. Ours on the wrong side, and one not ours: strays.
    place("aegsl-BTCUSDT-1", "SELL", &trigger, "true");
    place("aegsl-BTCUSDT-2", "BUY", "65000", "true");
    place("manual-stop", "SELL", "55000", "false");
    let mut bot = start_agreed(&w, 1, &testnet_env());
    bot.expect_log("adopt protective stop", Duration::from_secs(5));
    let s = wait_stop(&w, &bot, "SELL", "0.003", Duration::from_secs(15));
    assert_eq!(
        s["clientAlgoId"], "aegsl-BTCUSDT-1",
        "adopted, not replaced"
    );
    let book = w.admin(AdminCall::algo_orders("alice"));
    for id in ["aegsl-BTCUSDT-2", "manual-stop"] {
        let o = book
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["clientAlgoId"] == id)
            .cloned()
            .unwrap();
        assert_eq!(o["algoStatus"], "CANCELED", "{id}: {book}");
    }
    // Kill switch without flatten: every algo order goes, none comes back, health says the position is bare.
    let c = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // Binance's algo service fails the first two cancel-alls (503): the kill switch retries until it lands.
    w.admin(AdminCall::fail(2, "/fapi/v1/algoOpenOrders"));
    let r = c
        .post(format!("https://127.0.0.1:{}/api/control/kill", bot.port))
        .json(&serde_json::json!({"flatten": false, "reason": "test"}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text());
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            sim_algo_open(&w).is_empty()
        }),
        "{:?}\n{}",
        sim_algo_open(&w),
        bot.log()
    );
    assert_eq!(
        bot.log()
            .matches("kill switch: cancelling the algo orders failed, retrying")
            .count(),
        2,
        "{}",
        bot.log()
    );
    assert_eq!(sim_positions(&w).get("BTCUSDT"), Some(&300_000));
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            bot.api("/api/health").is_some_and(|h| {
                h["protective_stops"]["unprotected"]
                    .get("BTCUSDT")
                    .is_some()
            })
        }),
        "{:?}",
        bot.api("/api/health")
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(sim_algo_open(&w).is_empty(), "no stop while killed");
    bot.stop_cleanly(Duration::from_secs(10));
}
