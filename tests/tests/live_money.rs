//! Money truth against binance-sim (issue 13 items 2 and 6): funding every second, commissions in BNB and a
//! liquidation, through the real bot binary. Afterwards the bot's realized PnL, fees (per asset and in USDT)
//! and funding equal the simulator's to 10⁻⁸, and the liquidation is an alert, a dashboard row (checked in the page
//! itself, headless Chromium: tests/browser/money.test.mjs) and a flat position.

mod live_support;

use aegis_shared::Notional;
use aegis_testkit::sim::client::AdminCall;
use live_support::*;
use serde_json::Value;
use std::time::{Duration, Instant};

fn n(v: &Value) -> Notional {
    Notional::parse(v.as_str().unwrap_or("0")).unwrap_or_else(|_| panic!("not a decimal: {v}"))
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn live_funding_bnb_fees_and_a_liquidation_match_the_exchange_to_the_last_unit() {
    let _g = serial();
    let w = World::new("money", keys(false, false));
    w.admin(AdminCall::bnb_fees(Some("612.35")));
    let bot = start_agreed(&w, 1, &testnet_env());
    // A position opened by another client of the account: the bot books its fill (fee in BNB) from the stream.
    manual_buy(&w, "0.003");
    assert!(
        wait_for(Duration::from_secs(10), || bot_state(&bot)
            .is_some_and(|(p, _)| p.get("BTCUSDT") == Some(&300_000))),
        "{}",
        bot.log()
    );
    // Funding every second at 0.01 %: longs pay.
    w.admin(AdminCall::funding(1000, "0.0001"));
    assert!(wait_for(Duration::from_secs(15), || {
        w.admin(AdminCall::totals("alice"))["fundingRecords"].as_u64() >= Some(3)
    }));
    w.admin(AdminCall::funding(0, "0.0001"));
    std::thread::sleep(Duration::from_millis(300));
    // The exchange liquidates the position below entry.
    w.admin(AdminCall::liquidate("alice", "BTCUSDT", Some("59000")));
    assert!(wait_for(Duration::from_secs(10), || {
        bot.api("/api/snapshot")
            .is_some_and(|s| s["liquidations"].as_array().is_some_and(|l| !l.is_empty()))
    }));
    let t = w.admin(AdminCall::totals("alice"));
    assert_eq!(t["liquidations"], 1);
    // Every settlement the exchange made is in the bot's books, exactly once.
    let ok = wait_for(Duration::from_secs(10), || {
        bot.api("/api/snapshot")
            .is_some_and(|s| n(&s["pnl"]["funding_total"]) == n(&t["funding"]))
    });
    let s = bot.api("/api/snapshot").unwrap();
    assert!(
        ok,
        "funding: bot {} vs exchange {}\n{}",
        s["pnl"],
        t,
        bot.log()
    );
    let pnl = &s["pnl"];
    assert!(
        n(&t["funding"]) < Notional::ZERO,
        "a long pays a positive rate: {t}"
    );
    assert_eq!(
        n(&pnl["fees_by_asset"]["BNB"]),
        n(&t["feesByAsset"]["BNB"]),
        "{pnl} vs {t}"
    );
    assert!(
        pnl["fees_by_asset"].get("USDT").is_none(),
        "no fee was charged in USDT: {pnl}"
    );
    assert_eq!(
        n(&pnl["fees_total"]),
        n(&t["feesQuote"]),
        "BNB fees valued at fill time: {pnl} vs {t}"
    );
    assert_ne!(
        n(&pnl["fees_total"]),
        n(&t["feesByAsset"]["BNB"]),
        "never BNB counted as USDT"
    );
    assert_eq!(pnl["unconverted_fees"], 0);
    let total = n(&t["realized"]) - n(&t["feesQuote"]) + n(&t["funding"]);
    assert_eq!(n(&pnl["total"]), total, "net PnL: {pnl} vs {t}");
    // The liquidation: flat on both sides, its PnL the exchange's, an alert raised.
    let l = &s["liquidations"][0];
    assert_eq!(l["kind"], "liquidation");
    assert!(l["client_id"].as_str().unwrap().starts_with("autoclose-"));
    assert_eq!(
        n(&l["realized_pnl"]),
        n(&t["realized"]),
        "only the liquidation realized PnL: {l} vs {t}"
    );
    assert!(sim_positions(&w).is_empty());
    assert!(
        bot_state(&bot).is_some_and(|(p, _)| p.is_empty()),
        "{}",
        bot.log()
    );
    bot.expect_log("liquidation", Duration::from_secs(5));
    // The dashboard page itself shows the exchange's numbers (headless Chromium).
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    browser_check(
        &bot,
        "money.test.mjs",
        &[
            ("EXPECT_LIQ_SYMBOL", "BTCUSDT".into()),
            ("EXPECT_LIQ_REALIZED", s(&t["realized"])),
            ("EXPECT_FUNDING", s(&t["funding"])),
            ("EXPECT_FEES_BNB", s(&t["feesByAsset"]["BNB"])),
        ],
    );
    let mut bot = bot;
    bot.stop_cleanly(Duration::from_secs(10));
    // A restart books no settlement twice (the journal's tranIds, /fapi/v1/income read again on start).
    let bot2 = start_agreed(&w, 2, &testnet_env());
    std::thread::sleep(Duration::from_millis(1500));
    let s2 = bot2.api("/api/snapshot").unwrap();
    assert_eq!(
        n(&s2["pnl"]["funding_total"]),
        n(&t["funding"]),
        "{}",
        bot2.log()
    );
}
