//! binance-sim's own books: `GET /fapi/v1/userTrades` and `GET /fapi/v1/income` (issue 13.3/13.7), through real
//! signed HTTP. The numbers are checked against the simulator's wallet, which the matching engine moves.

mod common;

use aegis_shared::num::Notional;
use common::*;
use serde_json::Value;

fn n(v: &Value) -> Notional {
    Notional::parse(v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))).unwrap()
}

fn weight(r: &Resp) -> u32 {
    r.header("x-mbx-used-weight-1m").unwrap().parse().unwrap()
}

#[tokio::test]
async fn user_trades_and_income_are_the_exchanges_own_books() {
    let (h, c) = frozen_alice().await;
    // Market buy 0.6 fills in two executions (0.5 @ 60000, 0.1 @ 60000.1); sell 0.1 in one.
    assert_eq!(c.order(&market("BUY", "0.6")).await.status, 200);
    assert_eq!(c.order(&market("SELL", "0.1")).await.status, 200);

    let w0 = weight(&c.public("/fapi/v1/ping", "").await);
    let r = c
        .signed("GET", "/fapi/v1/userTrades", &[("symbol", "BTCUSDT")])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(weight(&r), w0 + 5, "userTrades weighs 5");
    let trades = r.body.as_array().unwrap().clone();
    assert_eq!(trades.len(), 3, "{}", r.body);
    let ids: Vec<u64> = trades.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ascending ids {ids:?}");
    assert_eq!(
        trades
            .iter()
            .map(|t| t["qty"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["0.500", "0.100", "0.100"]
    );
    assert_eq!(trades[2]["side"], "SELL");
    assert_eq!(trades[0]["buyer"], true);
    assert_eq!(trades[0]["positionSide"], "BOTH");

    // fromId: ids ≥ it; limit: the first `limit` from fromId, the newest `limit` of a time window.
    let from = ids[1].to_string();
    let r = c
        .signed(
            "GET",
            "/fapi/v1/userTrades",
            &[("symbol", "BTCUSDT"), ("fromId", &from)],
        )
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    assert_eq!(r.body[0]["id"].as_u64(), Some(ids[1]));
    let r = c
        .signed(
            "GET",
            "/fapi/v1/userTrades",
            &[("symbol", "BTCUSDT"), ("limit", "1")],
        )
        .await;
    assert_eq!(r.body[0]["id"].as_u64(), Some(ids[2]));
    let t = trades[0]["time"].as_u64().unwrap();
    let (before, after) = ((t - 1).to_string(), (t + 8 * 86_400_000).to_string());
    c.signed(
        "GET",
        "/fapi/v1/userTrades",
        &[
            ("symbol", "BTCUSDT"),
            ("startTime", &before),
            ("endTime", &after),
        ],
    )
    .await
    .assert_err(400, -1127);
    c.signed(
        "GET",
        "/fapi/v1/userTrades",
        &[
            ("symbol", "BTCUSDT"),
            ("fromId", &from),
            ("startTime", &before),
        ],
    )
    .await
    .assert_err(400, -1128);
    c.signed("GET", "/fapi/v1/userTrades", &[])
        .await
        .assert_err(400, -1102);
    c.signed("GET", "/fapi/v1/userTrades", &[("symbol", "ETHUSDT")])
        .await
        .body
        .as_array()
        .map(|a| assert!(a.is_empty()))
        .unwrap();

    // income: COMMISSION per execution (negative), REALIZED_PNL where it is not zero; with the deposit they
    // are exactly the wallet the matching engine keeps.
    let w1 = weight(&c.public("/fapi/v1/ping", "").await);
    let r = c.signed("GET", "/fapi/v1/income", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(weight(&r), w1 + 30, "income weighs 30");
    let inc = r.body.as_array().unwrap().clone();
    let of = |k: &str| {
        inc.iter()
            .filter(|r| r["incomeType"] == k)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("COMMISSION").len(), 3);
    assert_eq!(of("REALIZED_PNL").len(), 1);
    for (tr, com) in trades.iter().zip(of("COMMISSION")) {
        assert_eq!(
            com["tradeId"].as_str().unwrap(),
            tr["id"].as_u64().unwrap().to_string()
        );
        assert_eq!(n(&com["income"]), Notional::ZERO - n(&tr["commission"]));
    }
    assert_eq!(
        n(&of("REALIZED_PNL")[0]["income"]),
        n(&trades[2]["realizedPnl"])
    );
    let total = inc.iter().fold(Notional::ZERO, |s, r| s + n(&r["income"]));
    let wallet = n(&c.account().await.body["totalWalletBalance"]);
    assert_eq!(Notional::parse("10000").unwrap() + total, wallet);
    let r = c
        .signed(
            "GET",
            "/fapi/v1/income",
            &[("incomeType", "REALIZED_PNL"), ("symbol", "BTCUSDT")],
        )
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    let r = c
        .signed("GET", "/fapi/v1/income", &[("limit", "2"), ("page", "2")])
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 2, "{}", r.body);
    h.shutdown().await;
}
