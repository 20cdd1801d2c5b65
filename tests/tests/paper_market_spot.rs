//! Paper trading on Binance spot's public wire (`TRADING_MODE=paper FEED=binance MARKETS=spot`): the real `aegis`
//! binary reads binance-sim's spot streams and spot exchangeInfo, fills long-only on the paper venue with buy fees
//! in the base asset, and calls no futures endpoint and nothing signed.
mod live_support;
use aegis_shared::Qty;
use live_support::*;

/// `n` spot quotes moving by `step` from `from`, `bid_qty`/`ask_qty` at the touch (8/2: the ultra-fast scalp
/// mode's long signal; 2/8: its imbalance exit, and a short signal spot must refuse).
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

fn trades(bot: &Bot) -> Vec<Value> {
    bot.api("/api/trades?limit=200")
        .and_then(|p| p["trades"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn paper_on_binance_spot_streams_is_long_only_and_pays_base_fees() {
    let _g = serial();
    let w = World::new("paper-spot", keys(false, false));
    let mut bot = w.bot(
        1,
        &[
            ("TRADING_MODE", "paper".to_string()),
            ("FEED", "binance".to_string()),
            ("MARKETS", "spot".to_string()),
            ("MODES_ENABLED", "ultra_fast_scalp".to_string()),
            ("FUTURES_AUTOPILOT_MAX_POSITION_SIZE", "200".to_string()),
            ("FEE_TAKER", "0.001".to_string()),
            ("FEE_MAKER", "0.001".to_string()),
            ("BINANCE_SPOT_URL", w.base()),
            (
                "BINANCE_SPOT_STREAM_URL",
                format!("{}/spot", w.sim().ws_url()),
            ),
            // Configured but never to be used: paper mode has no exchange account.
            ("BINANCE_API_KEY", KEY.to_string()),
            ("BINANCE_SECRET_KEY", SECRET.to_string()),
        ],
    );
    bot.expect_log("Binance spot", Duration::from_secs(20));
    bot.expect_log("/spot/stream", Duration::from_secs(5));
    assert!(
        wait_until(Duration::from_secs(15), Duration::from_millis(100), || bot
            .api("/api/status")
            .is_some()),
        "API up\n{}",
        bot.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    push_quotes(&w, 60_000.0, 0.5, 220, "8", "2");
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            !trades(&bot).is_empty()
        }),
        "a paper entry on the spot book: {:?}\n{}",
        bot.api("/api/status"),
        bot.log()
    );
    // The book turns against the long: the mode exits, and its short signal is refused on spot.
    push_quotes(&w, 60_110.0, -0.5, 220, "2", "8");
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            trades(&bot).iter().any(|t| t["side"] == "SELL")
        }),
        "a paper exit: {:?}\n{}",
        trades(&bot),
        bot.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let all = trades(&bot);
    assert!(
        all.iter().any(|t| t["side"] == "BUY") && all.iter().any(|t| t["side"] == "SELL"),
        "an entry and an exit: {all:?}"
    );
    let spot_step = Qty::parse("0.00001").unwrap();
    let futures_step = Qty::parse("0.001").unwrap();
    let mut held = 0i64;
    // Oldest first, so the running position can be followed fill by fill.
    for t in all.iter().rev() {
        let qty = Qty::parse(t["qty"].as_str().unwrap()).unwrap();
        let fee = Qty::parse(t["fee"].as_str().unwrap()).unwrap();
        assert_eq!(t["market"], "spot", "every fill is a spot fill: {t}");
        // Sized on the spot exchangeInfo's grid (LOT_SIZE 0.00001), which the futures one (0.001) is not.
        assert!(qty.is_multiple_of(spot_step), "{t}");
        assert!(!qty.is_multiple_of(futures_step), "{t}");
        match t["side"].as_str() {
            Some("BUY") => {
                assert_eq!(t["fee_asset"], "BTC", "a spot buy pays in the base: {t}");
                assert_eq!(fee.units(), qty.units() / 1000, "fee = qty × 0.001: {t}");
                assert_eq!(qty.units() % 1000, 0, "{t}");
                held += qty.units() - fee.units();
            }
            Some("SELL") => {
                assert_eq!(t["fee_asset"], "USDT", "a spot sell pays in the quote: {t}");
                held -= qty.units();
            }
            _ => panic!("{t}"),
        }
        assert!(held >= 0, "never short on spot: {held} after {t}\n{all:?}");
    }
    let pos = bot.api("/api/positions").unwrap();
    for p in pos["positions"].as_array().into_iter().flatten() {
        let q = Qty::parse(p["qty"].as_str().unwrap()).unwrap();
        assert!(q.units() >= 0, "no short position: {pos}");
        assert_eq!(p["market"], "spot", "{pos}");
    }
    // Only spot's public endpoints were used: exchangeInfo on /api/v3, streams under /spot; no /fapi at all.
    let reqs = w.admin(AdminCall::requests());
    let paths: Vec<&String> = reqs.as_object().unwrap().keys().collect();
    assert!(paths.iter().any(|p| *p == "/api/v3/exchangeInfo"), "{reqs}");
    assert!(paths.iter().all(|p| p.starts_with("/api/v3/")), "{reqs}");
    let ws = w.admin(AdminCall::ws_history());
    let ws_paths: Vec<&str> = ws
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["path"].as_str())
        .collect();
    assert!(!ws_paths.is_empty(), "{ws}");
    assert!(
        ws_paths
            .iter()
            .all(|p| p.starts_with("/spot/stream?streams=btcusdt@bookTicker/btcusdt@aggTrade")),
        "{ws}"
    );
    // Nothing signed, no key presented, no order on the simulator's spot account either.
    let usage = w.admin(AdminCall::key_usage());
    assert!(
        usage.as_object().is_some_and(|m| m.is_empty()),
        "no request carried any key: {usage}"
    );
    bot.stop_cleanly(Duration::from_secs(10));
}
