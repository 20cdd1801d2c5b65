//! Live spot (issue 14, "How we will know") through the real `aegis` binary on `TRADING_MODE=testnet
//! MARKETS=spot` against binance-sim's spot side: orders over the spot WebSocket API, user data through
//! `userDataStream.subscribe.signature`, positions as balances. Every quantity is checked against the
//! simulator's own account (its balances, trades and open orders), never against the bot's numbers alone.

mod live_support;

use aegis_shared::Qty;
use live_support::*;

/// The test key of account alice, allowed to trade spot (the simulator refuses spot orders otherwise).
fn spot_keys() -> KeysFile {
    let mut k = keys(false, false);
    k.keys[0].permissions.spot = true;
    k
}

fn spot_env(w: &World) -> Vec<(&'static str, String)> {
    let mut env = testnet_env();
    env.extend([
        ("MARKETS", "spot".to_string()),
        ("MODES_ENABLED", "ultra_fast_scalp".to_string()),
        ("FUTURES_AUTOPILOT_MAX_POSITION_SIZE", "200".to_string()),
        ("BINANCE_SPOT_URL", w.base()),
        (
            "BINANCE_SPOT_STREAM_URL",
            format!("{}/spot", w.sim().ws_url()),
        ),
        (
            "BINANCE_SPOT_WSAPI_URL",
            format!("{}/ws-api/v3", w.sim().ws_url()),
        ),
    ]);
    env
}

/// `n` spot quotes moving by `step` from `from`, `bid_qty`/`ask_qty` at the touch (8/2: the ultra-fast scalp
/// mode's long signal; 2/8: its exit).
fn push_quotes(w: &World, from: f64, step: f64, n: usize, bid_qty: &str, ask_qty: &str) {
    for i in 0..n {
        let bid = from + step * i as f64;
        w.admin(AdminCall::spot_quote(
            "BTCUSDT",
            &format!("{bid:.2}"),
            bid_qty,
            &format!("{:.2}", bid + 0.1),
            ask_qty,
        ));
    }
}

/// BTCUSDT's LOT_SIZE step on the simulator's spot side (0.00001), in units.
const STEP: i64 = 1000;

fn qty_units(v: &Value) -> i64 {
    Qty::parse(v.as_str().unwrap_or("0"))
        .map(|q| q.units())
        .unwrap_or(0)
}

/// The simulator's own spot book of alice.
fn sim_account(w: &World) -> Value {
    w.admin(AdminCall::spot_account("alice"))
}

/// free + locked of `asset` on the simulator, in 10⁻⁸ units.
fn sim_held(w: &World, asset: &str) -> i64 {
    sim_account(w)["balances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["asset"] == asset)
        .map(|b| qty_units(&b["free"]) + qty_units(&b["locked"]))
        .sum()
}

/// The simulator's open spot orders of alice.
fn sim_spot_open(w: &World) -> Vec<Value> {
    sim_account(w)["openOrders"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The bot's BTCUSDT position (all modes), in units.
fn bot_btc(bot: &Bot) -> Option<i64> {
    bot_state(bot).map(|(p, _)| p.get("BTCUSDT").copied().unwrap_or(0))
}

/// Waits until the bot's position equals the BTC the simulator says alice holds, and it is not zero.
fn wait_agreed_long(w: &World, bot: &Bot, limit: Duration) -> i64 {
    let mut last = (0, None);
    let ok = wait_until(limit, Duration::from_millis(100), || {
        last = (sim_held(w, "BTC"), bot_btc(bot));
        last.0 > 0 && Some(last.0) == last.1
    });
    assert!(
        ok,
        "bot and exchange agree on a long: exchange {} BTC units, bot {:?}\n{}",
        last.0,
        last.1,
        bot.log()
    );
    last.0
}

/// Waits until one of our protective stops rests on the simulator; returns it.
fn wait_resting_stop(w: &World, bot: &Bot, limit: Duration) -> Value {
    let mut open = Vec::new();
    let ok = wait_until(limit, Duration::from_millis(100), || {
        open = sim_spot_open(w);
        open.iter().any(|o| o["type"] == "STOP_LOSS_LIMIT")
    });
    assert!(ok, "a resting stop: {open:?}\n{}", bot.log());
    open.into_iter()
        .find(|o| o["type"] == "STOP_LOSS_LIMIT")
        .unwrap_or_default()
}

fn enter(w: &World, bot: &Bot) -> i64 {
    push_quotes(w, 60_000.0, 0.5, 220, "8", "2");
    wait_agreed_long(w, bot, Duration::from_secs(25))
}

/// A spot world whose bot (run 1) has agreed with the exchange, entered a long and has its stop resting:
/// (world, bot, the BTC held in units, the stop as the simulator lists it).
fn protected_long(tag: &str) -> (World, Bot, i64, Value) {
    let w = World::new(tag, spot_keys());
    push_quotes(&w, 60_000.0, 0.0, 1, "5", "5");
    let bot = w.bot(1, &spot_env(&w));
    bot.expect_log("local and exchange state agree", Duration::from_secs(25));
    let held = enter(&w, &bot);
    let stop = wait_resting_stop(&w, &bot, Duration::from_secs(10));
    (w, bot, held, stop)
}

#[test]
fn live_spot_entry_and_exit_fill_in_parts_pay_base_fees_and_match_the_exchanges_balances() {
    let _g = serial();
    let w = World::new("live-spot", spot_keys());
    w.admin(AdminCall::spot_fill_parts(3));
    // A tight PERCENT_PRICE_BY_SIDE floor (0.9672 × the price, ~58,040 here) above the stop's own limit (0.5 %
    // under a stop ~3 % under the entry, ~57,950) but under the stop: the stop must be fitted to rest at all.
    w.admin(AdminCall::spot_percent_price("BTCUSDT", "0.9672", "5"));
    push_quotes(&w, 60_000.0, 0.0, 1, "5", "5");
    let bot = w.bot(1, &spot_env(&w));
    bot.expect_log("Binance spot TESTNET", Duration::from_secs(20));
    bot.expect_log("local and exchange state agree", Duration::from_secs(25));
    let held = enter(&w, &bot);
    // Three trades per order on the exchange, each paying its fee in BTC: held = bought − fees, exactly.
    let acc = sim_account(&w);
    let trades: Vec<&Value> = acc["trades"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["isBuyer"] == true)
        .collect();
    assert_eq!(trades.len(), 3, "{acc}");
    let bought: i64 = trades.iter().map(|t| qty_units(&t["qty"])).sum();
    let fees: i64 = trades.iter().map(|t| qty_units(&t["commission"])).sum();
    assert!(
        trades.iter().all(|t| t["commissionAsset"] == "BTC"),
        "{acc}"
    );
    assert!(fees > 0);
    assert_eq!(held, bought - fees, "{acc}");
    // Agreed by the fills themselves, not by the balance watcher setting the position down afterwards.
    assert!(!bot.log().contains("sold outside the bot"), "{}", bot.log());
    // The position is protected by a stop resting on the exchange, selling what is held.
    let stop = wait_resting_stop(&w, &bot, Duration::from_secs(10));
    assert_eq!(stop["side"], "SELL");
    let (trigger, limit) = (qty_units(&stop["stopPrice"]), qty_units(&stop["price"]));
    assert!(
        limit > trigger - trigger / 200 && limit <= trigger,
        "the limit was raised into the band, not above the stop: {stop}"
    );
    assert!(
        bot.log()
            .contains("limit moved into the PERCENT_PRICE_BY_SIDE band"),
        "{}",
        bot.log()
    );
    assert!(
        qty_units(&stop["origQty"]) <= held && qty_units(&stop["origQty"]) > 0,
        "{stop}"
    );
    // The book turns: the mode exits, cancelling its stop in the same request (the stop locks the BTC).
    push_quotes(&w, 60_110.0, -0.5, 220, "2", "8");
    let mut last = (0, None);
    let ok = wait_until(Duration::from_secs(25), Duration::from_millis(100), || {
        last = (sim_held(&w, "BTC"), bot_btc(&bot));
        // What is left is below BTCUSDT's step (dust no order can sell), and the bot holds exactly that.
        last.0 < STEP && last.1 == Some(last.0) && sim_spot_open(&w).is_empty()
    });
    assert!(
        ok,
        "exit: exchange {} BTC units, bot {:?}, open {:?}\n{}",
        last.0,
        last.1,
        sim_spot_open(&w),
        bot.log()
    );
    let sells = sim_account(&w)["trades"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["isBuyer"] == false)
        .count();
    assert_eq!(sells, 3, "the exit filled in three parts too");
    // The stop was cancelled by the exit itself (the manager keeps it while the position is open), and the
    // exit is the bot's own order, filled.
    let all = spot_signed(
        &w,
        reqwest::Method::GET,
        "/api/v3/allOrders",
        &[("symbol", "BTCUSDT")],
    );
    let status_of = |cid: &str| {
        all.as_array()
            .into_iter()
            .flatten()
            .find(|o| o["clientOrderId"] == cid)
            .map(|o| o["status"].clone())
    };
    assert_eq!(
        status_of(stop["clientOrderId"].as_str().unwrap()),
        Some(Value::from("CANCELED")),
        "{all}"
    );
    let exits: Vec<&Value> = all
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["side"] == "SELL" && o["type"] == "MARKET")
        .collect();
    assert_eq!(exits.len(), 1, "{all}");
    assert!(exits[0]["clientOrderId"]
        .as_str()
        .unwrap()
        .starts_with("ag"));
    assert_eq!(exits[0]["status"], "FILLED");
    // The bot's fees are the exchange's commissions in USDT: BTC fees valued at each trade's price (half away
    // from zero at 10⁻⁸), USDT fees as charged.
    let want: i64 = sim_account(&w)["trades"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let c = qty_units(&t["commission"]) as i128;
            if t["commissionAsset"] == "BTC" {
                let p = qty_units(&t["price"]) as i128;
                let v = c * p;
                ((v.abs() + 50_000_000) / 100_000_000 * v.signum()) as i64
            } else {
                c as i64
            }
        })
        .sum();
    let p = bot.api("/api/positions").unwrap_or_default();
    let rows: Vec<&Value> = p["positions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["symbol"] == "BTCUSDT")
        .collect();
    assert!(rows.iter().all(|x| x["market"] == "spot"), "{p}");
    let got: i64 = rows.iter().map(|x| qty_units(&x["fees"])).sum();
    assert_eq!(got, want, "bot fees vs the exchange's commissions: {p}");
    assert!(!bot.log().contains("sold outside the bot"), "{}", bot.log());
}

/// A signed spot call as another client of alice's account would make it.
fn spot_signed(w: &World, method: reqwest::Method, path: &str, params: &[(&str, &str)]) -> Value {
    w.signed(method, path, params)
}

#[test]
fn live_spot_restart_reconciles_from_balances_cancels_a_stray_and_notices_a_sale_outside_the_bot() {
    let _g = serial();
    let (w, mut bot, held, stop) = protected_long("live-spot-restart");
    bot.stop_cleanly(Duration::from_secs(15));
    // The stop stays on the exchange while the bot is down.
    assert!(
        sim_spot_open(&w)
            .iter()
            .any(|o| o["clientOrderId"] == stop["clientOrderId"]),
        "the stop outlives the bot"
    );
    // While it is down the owner cancels the stop and sells part of the BTC by hand, and leaves a stray
    // limit order on the book.
    let cid = stop["clientOrderId"].as_str().unwrap().to_string();
    let r = spot_signed(
        &w,
        reqwest::Method::DELETE,
        "/api/v3/order",
        &[("symbol", "BTCUSDT"), ("origClientOrderId", &cid)],
    );
    assert_eq!(r["status"], "CANCELED", "{r}");
    let half = Qty::from_units(held / 2 / STEP * STEP).to_string();
    let r = spot_signed(
        &w,
        reqwest::Method::POST,
        "/api/v3/order",
        &[
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "MARKET"),
            ("quantity", &half),
        ],
    );
    assert_eq!(r["status"], "FILLED", "{r}");
    let r = spot_signed(
        &w,
        reqwest::Method::POST,
        "/api/v3/order",
        &[
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "LIMIT"),
            ("timeInForce", "GTC"),
            ("quantity", "0.00100"),
            ("price", "30000"),
            ("newClientOrderId", "manual-stray-1"),
        ],
    );
    assert_eq!(r["status"], "NEW", "{r}");
    // And moves 0.00002 BTC off the account (a withdrawal: a balance change with no trade to recover).
    let after_sale = sim_held(&w, "BTC");
    assert!(after_sale < held);
    let left = after_sale - 2 * STEP;
    w.admin(AdminCall::spot_balances(
        "alice",
        serde_json::json!({"BTC": Qty::from_units(left).to_string()}),
    ));
    assert_eq!(sim_held(&w, "BTC"), left);

    let bot = w.bot(2, &spot_env(&w));
    // The hand sale is a trade: recovered from myTrades and booked; the withdrawal only shows in the balance.
    bot.expect_log(
        "1 spot fill(s) made while the bot was away recovered",
        Duration::from_secs(25),
    );
    bot.expect_log("sold outside the bot", Duration::from_secs(5));
    bot.expect_log("cancel open order manual-stray-1", Duration::from_secs(5));
    bot.expect_log("local and exchange state agree", Duration::from_secs(10));
    // The bot's position is what the account holds; the stray is gone; a new stop protects what is left.
    let mut last = None;
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        last = bot_btc(&bot);
        last == Some(left)
    });
    assert!(ok, "bot {last:?} vs exchange {left}\n{}", bot.log());
    assert!(
        !sim_spot_open(&w)
            .iter()
            .any(|o| o["clientOrderId"] == "manual-stray-1"),
        "the stray was cancelled"
    );
    let stop = wait_resting_stop(&w, &bot, Duration::from_secs(10));
    assert_eq!(qty_units(&stop["origQty"]), left / STEP * STEP, "{stop}");
    // Sized on the reconciled holding at once, never first on the journal's old one (which would fail).
    assert!(
        !bot.log().contains("protective_stop_failed"),
        "{}",
        bot.log()
    );
}

#[test]
fn a_spot_stop_resting_on_the_exchange_sells_after_kill_9_and_the_restarted_bot_books_it() {
    let _g = serial();
    let (w, mut bot, held, stop) = protected_long("live-spot-kill9");
    let stop_price: f64 = stop["stopPrice"].as_str().unwrap().parse().unwrap();
    bot.signal(9);
    assert!(bot.wait_exit(Duration::from_secs(5)).is_some());
    // The market falls through the stop while nothing of the bot runs: the exchange sells.
    let below = format!("{:.2}", stop_price - 50.0);
    w.admin(AdminCall::spot_price("BTCUSDT", &below, None, None));
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        sim_held(&w, "BTC") < STEP
    });
    assert!(ok, "the stop sold: {}", sim_account(&w));
    assert!(sim_spot_open(&w).is_empty());
    assert!(held >= STEP);
    // The restarted bot finds the stop's fill and is flat, as the exchange is.
    let bot = w.bot(2, &spot_env(&w));
    bot.expect_log("local and exchange state agree", Duration::from_secs(25));
    let mut last = None;
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        last = bot_btc(&bot);
        last == Some(sim_held(&w, "BTC"))
    });
    assert!(ok, "bot {last:?}\n{}", bot.log());
    // Booked as the stop's fill (recovered from myTrades), not set down to the balance afterwards.
    bot.expect_log(
        "1 spot fill(s) made while the bot was away recovered",
        Duration::from_secs(1),
    );
    assert!(!bot.log().contains("sold outside the bot"), "{}", bot.log());
}

#[test]
fn a_spot_holding_moved_outside_the_running_bot_is_noticed_and_the_position_follows_the_balance() {
    let _g = serial();
    let (w, bot, held, stop) = protected_long("live-spot-outside");
    // The owner cancels the stop and withdraws part of the BTC while the bot runs: no trade, only balances.
    let cid = stop["clientOrderId"].as_str().unwrap().to_string();
    let r = spot_signed(
        &w,
        reqwest::Method::DELETE,
        "/api/v3/order",
        &[("symbol", "BTCUSDT"), ("origClientOrderId", &cid)],
    );
    assert_eq!(r["status"], "CANCELED", "{r}");
    let left = held / 2 / STEP * STEP;
    w.admin(AdminCall::spot_balances(
        "alice",
        serde_json::json!({"BTC": Qty::from_units(left).to_string()}),
    ));
    bot.expect_log("sold outside the bot", Duration::from_secs(15));
    let mut last = None;
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        last = bot_btc(&bot);
        last == Some(left)
    });
    assert!(ok, "bot {last:?} vs exchange {left}\n{}", bot.log());
    assert!(
        bot.log().contains("sold_outside_bot"),
        "the alert was raised\n{}",
        bot.log()
    );
    // A new stop protects what is left, and trading goes on (no kill switch for a balance that was adopted).
    let stop = wait_resting_stop(&w, &bot, Duration::from_secs(20));
    assert_eq!(qty_units(&stop["origQty"]), left, "{stop}");
    assert!(!bot.log().contains("kind=\"kill_switch\""), "{}", bot.log());
    assert_ne!(bot.halt_reason().as_deref(), Some("kill_switch"));
}

#[test]
fn a_terminated_spot_user_stream_is_resubscribed_and_reconciled_and_the_exit_still_books() {
    let _g = serial();
    let (w, bot, held, _) = protected_long("live-spot-terminated");
    // Binance ends the subscription (`eventStreamTerminated`): the bot subscribes again and reconciles.
    w.admin(AdminCall::spot_terminate_streams("alice"));
    bot.expect_log(
        "stream terminated: reconciling with the exchange's balances again",
        Duration::from_secs(10),
    );
    // The position still agrees with the balance (nothing set down), and the next fills arrive on the new
    // subscription: the exit books to the dust the exchange leaves.
    assert_eq!(bot_btc(&bot), Some(held));
    push_quotes(&w, 60_110.0, -0.5, 220, "2", "8");
    let mut last = (0, None);
    let ok = wait_until(Duration::from_secs(25), Duration::from_millis(100), || {
        last = (sim_held(&w, "BTC"), bot_btc(&bot));
        last.0 < STEP && last.1 == Some(last.0)
    });
    assert!(ok, "exit after resubscribe: {last:?}\n{}", bot.log());
    assert!(!bot.log().contains("sold outside the bot"), "{}", bot.log());
}

#[test]
fn live_spot_needs_the_spot_permission_in_apirestrictions_and_trades_with_it() {
    let _g = serial();
    let w = World::new("live-spot-perm", keys(false, true));
    let mut env = spot_env(&w);
    env.retain(|(k, _)| !k.starts_with("BINANCE_TESTNET") && *k != "TRADING_MODE");
    env.extend(live_env());
    // Without "Enable Spot & Margin Trading" a spot bot could not place a single order: refused before trading.
    let mut bot = w.bot(1, &env);
    let code = bot.wait_exit(Duration::from_secs(15));
    let log = bot.log();
    assert!(matches!(code, Some(1 | 2)), "{code:?} {log}");
    assert!(log.contains("Spot & Margin Trading"), "{log}");
    assert!(
        !log.contains("market data:"),
        "never started trading: {log}"
    );
    // With it (withdrawals off, IP restricted) the live spot bot starts on production's spot and trades.
    w.admin(AdminCall::set_permissions(
        KEY,
        serde_json::json!({"spot": true}),
    ));
    let bot = w.bot(2, &env);
    bot.expect_log("Binance spot PRODUCTION", Duration::from_secs(20));
    bot.expect_log(
        "spot & margin enabled (MARKETS=spot)",
        Duration::from_secs(10),
    );
    bot.expect_log("local and exchange state agree", Duration::from_secs(10));
    enter(&w, &bot);
}

#[test]
fn the_kill_switch_on_spot_sells_the_holding_and_leaves_no_order_resting() {
    let _g = serial();
    let (w, bot, _, _) = protected_long("live-spot-kill");
    // The KILL file flattens: the exit sells the BTC the stop locks (its cancel and the sell race the stop
    // manager's own cancel of its stops; either way nothing may be left resting and nothing left to sell).
    kill_file(&w);
    let mut last = (0, None, Vec::new());
    let ok = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        push_quotes(&w, 60_000.0, 0.0, 1, "5", "5");
        last = (sim_held(&w, "BTC"), bot_btc(&bot), sim_spot_open(&w));
        last.0 < STEP && last.1 == Some(last.0) && last.2.is_empty()
    });
    assert!(ok, "after the kill: {last:?}\n{}", bot.log());
    assert_eq!(bot.halt_reason().as_deref(), Some("kill_switch"));
    // And it stays that way: no stop is placed again while the kill holds.
    std::thread::sleep(Duration::from_secs(2));
    assert!(sim_spot_open(&w).is_empty(), "{:?}", sim_spot_open(&w));
}

/// A fill racing a reconnect of the spot WebSocket API: another client of the account buys right after the
/// connections drop. Whether its executionReport reaches the new subscription or only `myTrades` has it (the
/// round after the reconnect recovers it then; which of the two happens depends on timing), the bot ends with
/// the exchange's balance and a stop of that size.
#[test]
fn a_fill_around_a_user_stream_reconnect_ends_with_the_position_equal_to_the_balance() {
    let _g = serial();
    let (w, bot, held, _) = protected_long("live-spot-gap");
    w.admin(AdminCall::ws_drop("api"));
    let r = spot_signed(
        &w,
        reqwest::Method::POST,
        "/api/v3/order",
        &[
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "MARKET"),
            ("quantity", "0.00100"),
        ],
    );
    assert_eq!(r["status"], "FILLED", "{r}");
    bot.expect_log(
        "reconnected: reconciling with the exchange's balances again",
        Duration::from_secs(15),
    );
    let now = sim_held(&w, "BTC");
    assert!(now > held);
    let mut last = None;
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        last = bot_btc(&bot);
        last == Some(now)
    });
    assert!(ok, "bot {last:?} vs exchange {now}\n{}", bot.log());
    // A trade of the account moves the position (as on futures); the stop follows it.
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
        sim_spot_open(&w).iter().any(|o| {
            o["type"] == "STOP_LOSS_LIMIT" && qty_units(&o["origQty"]) == now / STEP * STEP
        })
    });
    assert!(ok, "{:?}\n{}", sim_spot_open(&w), bot.log());
    assert!(!bot.log().contains("sold outside the bot"), "{}", bot.log());
}
