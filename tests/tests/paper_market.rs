//! Paper trading on the real market's wire (`TRADING_MODE=paper FEED=binance`): the real `aegis` binary reads
//! binance-sim's public market streams and exchange filters, fills on the paper venue, and never sends a key,
//! a signed request or an order to the exchange.
mod live_support;
use live_support::*;

/// A frozen market the test moves itself: `n` quotes rising by `step` with bids four times the asks, so the
/// ultra-fast scalp mode (imbalance ≥ 0.35 and positive microprice momentum) goes long once it is warm.
fn push_rising_quotes(w: &World, from: f64, step: f64, n: usize) {
    for i in 0..n {
        let bid = from + step * i as f64;
        w.admin(AdminCall::set_quote(
            "BTCUSDT",
            &format!("{bid:.1}"),
            "8",
            &format!("{:.1}", bid + 0.1),
            "2",
        ));
    }
}

#[test]
fn paper_on_binance_streams_fills_locally_and_sends_nothing_signed() {
    let _g = serial();
    let w = World::new("paper-market", keys(false, false));
    let mut bot = w.bot(
        1,
        &[
            ("TRADING_MODE", "paper".to_string()),
            ("FEED", "binance".to_string()),
            ("MODES_ENABLED", "ultra_fast_scalp".to_string()),
            // 50 USD (the default) is below one BTCUSDT step (0.001 BTC at 60,000).
            ("FUTURES_AUTOPILOT_MAX_POSITION_SIZE", "200".to_string()),
            // Configured but never to be used: paper mode has no exchange account.
            ("BINANCE_API_KEY", KEY.to_string()),
            ("BINANCE_SECRET_KEY", SECRET.to_string()),
        ],
    );
    bot.expect_log("public market data", Duration::from_secs(20));
    bot.expect_log("market data: ws://", Duration::from_secs(5));
    // The bot is up once its API answers; then give it the market the strategy reacts to.
    assert!(
        wait_until(Duration::from_secs(15), Duration::from_millis(100), || bot
            .api("/api/status")
            .is_some()),
        "API up\n{}",
        bot.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    push_rising_quotes(&w, 60_000.0, 0.5, 220);
    let filled = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        bot.api("/api/status")
            .is_some_and(|s| s["counts"]["fills"].as_u64().unwrap_or(0) >= 1)
    });
    assert!(
        filled,
        "a paper fill from the simulator's market: {:?}\n{}",
        (bot.api("/api/status"), bot.api("/api/limits")),
        bot.log()
    );
    // The paper position is priced off the simulator's book (between the first and last ask pushed), and on
    // Binance's grid for BTCUSDT as exchangeInfo gives it.
    let p = bot.api("/api/positions").unwrap();
    let pos = p["positions"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["symbol"] == "BTCUSDT"))
        .cloned()
        .unwrap_or_else(|| panic!("a BTCUSDT position: {p}"));
    let entry: f64 = pos["entry_price"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("entry price in {pos}"));
    assert!(
        (60_000.0..=60_000.0 + 0.5 * 220.0 + 0.1).contains(&entry),
        "{pos}"
    );
    // Funding: the simulator settles every second at 0.01 %; the paper long pays what Binance would settle on
    // it, qty × mark × rate per settlement, read from the public premiumIndex the bot reads too.
    w.admin(AdminCall::funding(1000, "0.0001"));
    let qty = aegis_shared::Qty::parse(pos["qty"].as_str().unwrap()).unwrap();
    let premium: Value =
        reqwest::blocking::get(format!("{}/fapi/v1/premiumIndex?symbol=BTCUSDT", w.base()))
            .unwrap()
            .json()
            .unwrap();
    let mark = aegis_shared::Price::parse(premium["markPrice"].as_str().unwrap()).unwrap();
    let per = mark
        .notional(qty)
        .mul_rate(aegis_shared::num::Rate::parse("0.0001").unwrap())
        .neg();
    assert!(per < aegis_shared::Notional::ZERO, "a long pays: {per}");
    let funding = || {
        bot.api("/api/snapshot")
            .and_then(|s| s["pnl"]["funding_total"].as_str().map(String::from))
            .and_then(|v| aegis_shared::Notional::parse(&v).ok())
            .unwrap_or(aegis_shared::Notional::ZERO)
    };
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            funding().units() <= 2 * per.units()
        }),
        "two settlements booked: {} vs {per} each\n{}",
        funding(),
        bot.log()
    );
    w.admin(AdminCall::funding(0, "0.0001"));
    let total = funding();
    assert_eq!(
        total.units() % per.units(),
        0,
        "whole settlements of {per}, exactly: {total}"
    );
    // Nothing reached the exchange account: no key used, no order, no position.
    let usage = w.admin(AdminCall::key_usage());
    assert!(
        usage.as_object().is_some_and(|m| m.is_empty()),
        "no request carried any key: {usage}"
    );
    assert!(sim_open(&w).is_empty());
    assert!(sim_positions(&w).is_empty());
    bot.stop_cleanly(Duration::from_secs(10));
}
