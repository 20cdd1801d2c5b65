//! The money soak (issue 13, "How we will know", first bullet): the real bot binary in testnet mode against
//! binance-sim with Postgres, funding every 1.5 s, commissions in BNB, partial fills (of another client's order
//! and of the bot's own), a SIGTERM restart, a user-stream drop with a fill inside the gap (recovered from
//! userTrades), a `kill -9`, rounds of trading on a moving market, a liquidation and a kill-switch flatten.
//! The entries are manual orders of another client of the account (the strategies do not trade on the
//! simulator's pinned book in a test's time); the exit is the bot's own. Afterwards:
//! - the bot's realized PnL, fees (per asset and in USDT) and funding equal the simulator's totals to 10⁻⁸, both
//!   in its journal and in its live read model;
//! - `aegis reconcile --pnl`, run as a subprocess, exits 0 and reports nothing;
//! - the journal and Postgres agree row for row (fills by key and contents, funding by key and amount).
//!
//! Needs Postgres at 127.0.0.1:5432 (user postgres, trust auth; `AEGIS_TEST_PG` overrides) and `psql`. Build
//! first: `cargo build -p aegis-control --bin aegis`.

mod live_support;

use aegis_shared::event::EngineEvent;
use aegis_shared::Notional;
use aegis_testkit::sim::client::AdminCall;
use live_support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

fn n(v: &Value) -> Notional {
    Notional::parse(v.as_str().unwrap_or("0")).unwrap_or_else(|_| panic!("not a decimal: {v}"))
}

/// A market order of another client of the account (the bot books its fill from the stream).
fn manual_market(w: &World, side: &str, qty: &str) {
    let r = w.signed(
        reqwest::Method::POST,
        "/fapi/v1/order",
        &[
            ("symbol", "BTCUSDT"),
            ("side", side),
            ("type", "MARKET"),
            ("quantity", qty),
        ],
    );
    assert!(r.get("orderId").is_some(), "{r}");
}

/// Pins the top of book at `bid` / `bid + 0.1`.
fn quote(w: &World, bid: &str, ask: &str) {
    w.admin(AdminCall::set_quote("BTCUSDT", bid, "5", ask, "5"));
}

/// The journal's engine events (the file format of `control/src/journal`: magic, then length, CRC-32 and a
/// JSON payload `{"rec": "engine", "data": <EngineEvent>}` per record).
fn journal_events(w: &World) -> Vec<EngineEvent> {
    let bytes = std::fs::read(w.dir.join("data").join("journal").join("journal.aegis")).unwrap();
    assert_eq!(&bytes[..8], b"AEGISJ01");
    let mut out = Vec::new();
    let mut i = 8;
    while i + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
        let payload = &bytes[i + 8..i + 8 + len];
        let v: Value = serde_json::from_slice(payload).unwrap();
        if v["rec"] == "engine" {
            out.push(serde_json::from_value(v["data"].clone()).unwrap());
        }
        i += 8 + len;
    }
    assert_eq!(i, bytes.len(), "the journal ends at a record boundary");
    out
}

/// `aegis reconcile --pnl` with the bot's settings; (exit code, stdout, stderr).
fn reconcile(w: &World, db: &Db, json: bool) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", w.dir.join("data"))
        .env("SYMBOLS", "BTCUSDT")
        .env("BINANCE_FAPI_URL", w.base())
        .env("BINANCE_SAPI_URL", w.base())
        .env("BINANCE_FSTREAM_URL", w.sim().ws_url())
        .env(
            "BINANCE_WSAPI_URL",
            format!("{}/ws-fapi/v1", w.sim().ws_url()),
        )
        .env("FLEET_BUDGET_DIR", w.dir.join("budget"))
        .env("DATABASE_URL", db.url())
        .current_dir(&w.dir)
        .args(["--env-file", "missing.env", "reconcile", "--pnl"]);
    if json {
        cmd.arg("--json");
    }
    for (k, v) in testnet_env() {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn funding_records(w: &World) -> u64 {
    w.admin(AdminCall::totals("alice"))["fundingRecords"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn soak_funding_bnb_fees_partial_fills_restarts_a_stream_drop_and_a_liquidation_match_the_exchange()
{
    let _g = serial();
    let t0 = Instant::now();
    let w = World::new("soak", keys(false, false));
    let db = Db::create("soak");
    let mut env = testnet_env();
    env.push(("DATABASE_URL", db.url()));
    // Not a fleet test: after the kill -9 the key's lease would keep the restart out until it expires (30 s).
    env.push(("FLEET_LEASE", "off".into()));
    w.admin(AdminCall::bnb_fees(Some("612.35")));
    let mut bot = start_agreed(&w, 1, &env);
    w.admin(AdminCall::funding(1500, "0.0001"));

    // Run 1: a market buy of another client, then its resting limit buy filled in three parts.
    manual_market(&w, "BUY", "0.003");
    manual_limit_buy(&w, "0.004", "59000", "soak-limit-1");
    w.admin(AdminCall::fill_order(
        "alice",
        "soak-limit-1",
        Some("0.001"),
    ));
    w.admin(AdminCall::fill_order(
        "alice",
        "soak-limit-1",
        Some("0.001"),
    ));
    w.admin(AdminCall::fill_order("alice", "soak-limit-1", None));
    let (pos, _) = assert_consistent(&w, &bot, Duration::from_secs(15));
    assert_eq!(pos.get("BTCUSDT"), Some(&700_000), "0.007 long");
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            funding_records(&w) >= 2
        }),
        "funding settles"
    );

    // Restart 1: SIGTERM (funding keeps settling while the bot is away: booked from /fapi/v1/income on start).
    bot.stop_cleanly(Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(1600));
    let bot2 = start_agreed(&w, 2, &env);
    // The price moves up; another client sells part: realized PnL.
    quote(&w, "60500.0", "60500.1");
    manual_market(&w, "SELL", "0.002");
    assert_consistent(&w, &bot2, Duration::from_secs(15));

    // The user data stream drops; a fill lands in the gap (the new listen key is held back 1.5 s, so the
    // stream cannot be back before the fill): it is recovered from userTrades, exactly once.
    w.admin(AdminCall::delay(1500, Some(1), Some("/fapi/v1/listenKey")));
    w.admin(AdminCall::ws_drop("user"));
    manual_market(&w, "SELL", "0.002");
    let (pos, _) = assert_consistent(&w, &bot2, Duration::from_secs(20));
    assert_eq!(pos.get("BTCUSDT"), Some(&300_000), "0.003 long");
    bot2.expect_log(
        "fill(s) the stream did not deliver recovered from userTrades",
        Duration::from_secs(10),
    );
    w.admin(AdminCall::clear_faults());

    // Restart 2: kill -9.
    let mut bot2 = bot2;
    bot2.signal(9);
    assert!(bot2.wait_exit(Duration::from_secs(10)).is_some());
    // Trades while the bot is dead, their fees in BNB at 612.35; then BNB moves before the restart. The
    // recovered fills' fees are worth what they were at the fills' time (the sim's books), not at the new price.
    manual_market(&w, "BUY", "0.002");
    manual_market(&w, "SELL", "0.002");
    std::thread::sleep(Duration::from_millis(20));
    w.admin(AdminCall::bnb_fees(Some("650.10")));
    let bot3 = start_agreed(&w, 3, &env);
    // Rounds of trading on a moving market while funding keeps settling: each one opens and closes 0.002.
    for i in 0..4u32 {
        let up = 60_000 + 40 * i;
        quote(&w, &format!("{up}.0"), &format!("{up}.1"));
        manual_market(&w, "BUY", "0.002");
        quote(&w, &format!("{}.0", up + 25), &format!("{}.1", up + 25));
        manual_market(&w, "SELL", "0.002");
        let (pos, _) = assert_consistent(&w, &bot3, Duration::from_secs(15));
        assert_eq!(pos.get("BTCUSDT"), Some(&300_000), "round {i}");
    }

    // The exchange liquidates the position below entry.
    w.admin(AdminCall::liquidate("alice", "BTCUSDT", Some("59000")));
    assert!(
        wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
            bot3.api("/api/snapshot")
                .is_some_and(|s| s["liquidations"].as_array().is_some_and(|l| !l.is_empty()))
        }),
        "{}",
        bot3.log()
    );
    assert!(sim_positions(&w).is_empty());

    // A new position, closed by the bot's own kill-switch flatten, held and filled in two parts.
    quote(&w, "60000.0", "60000.1");
    manual_market(&w, "BUY", "0.002");
    assert_consistent(&w, &bot3, Duration::from_secs(15));
    w.admin(AdminCall::hold_orders(1));
    kill_file(&w);
    let mut open = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            open = sim_open(&w);
            !open.is_empty()
        }),
        "the flatten order is working: {}",
        bot3.log()
    );
    let cid = open[0].clone();
    assert!(cid.starts_with("ag"), "the bot's own order: {cid}");
    w.admin(AdminCall::fill_order("alice", &cid, Some("0.001")));
    w.admin(AdminCall::fill_order("alice", &cid, None));
    w.admin(AdminCall::hold_orders(0));
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            sim_positions(&w).is_empty()
        }),
        "flat"
    );
    w.admin(AdminCall::funding(0, "0.0001"));
    let t = w.admin(AdminCall::totals("alice"));
    assert!(
        t["fundingRecords"].as_u64() >= Some(4),
        "funding settled repeatedly: {t}"
    );
    assert_eq!(t["liquidations"], 1);

    // The live read model: every settlement, fee and PnL the exchange booked, exactly once.
    let expected_total = n(&t["realized"]) - n(&t["feesQuote"]) + n(&t["funding"]);
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        bot3.api("/api/snapshot").is_some_and(|s| {
            n(&s["pnl"]["funding_total"]) == n(&t["funding"])
                && n(&s["pnl"]["total"]) == expected_total
        })
    });
    let s = bot3.api("/api/snapshot").unwrap();
    assert!(ok, "bot {} vs exchange {t}\n{}", s["pnl"], bot3.log());
    let pnl = &s["pnl"];
    assert_eq!(n(&pnl["fees_total"]), n(&t["feesQuote"]), "{pnl} vs {t}");
    assert_eq!(
        n(&pnl["fees_by_asset"]["BNB"]),
        n(&t["feesByAsset"]["BNB"]),
        "{pnl} vs {t}"
    );
    assert_eq!(pnl["unconverted_fees"], 0);

    let mut bot3 = bot3;
    bot3.stop_cleanly(Duration::from_secs(15));

    // The journal, the bot's primary record: the same totals to the last unit.
    let events = journal_events(&w);
    let (mut realized, mut fees_q, mut funding) = (Notional::ZERO, Notional::ZERO, Notional::ZERO);
    let mut fees_asset: BTreeMap<String, Notional> = BTreeMap::new();
    let mut fills = BTreeMap::new();
    let mut fundings = BTreeMap::new();
    for e in &events {
        match e {
            EngineEvent::Fill(f) => {
                realized += f.realized_pnl;
                fees_q += f.quote_fee();
                *fees_asset.entry(f.fee_asset.to_string()).or_default() += f.fee;
                let key = format!("{}|{}|{}", f.symbol, f.trade_id, f.split_part);
                let row = format!(
                    "{}|{}|{}|{}|{}|{}|{}|{}",
                    f.client_id.as_str(),
                    f.mode.as_str(),
                    f.side.as_str(),
                    f.price,
                    f.qty,
                    f.fee,
                    f.fee_asset,
                    f.realized_pnl
                );
                assert!(fills.insert(key.clone(), row).is_none(), "fill {key} twice");
            }
            EngineEvent::Funding(f) => {
                funding += f.quote;
                let key = format!("{}|{}|{}", f.symbol, f.tran_id, f.mode.as_str());
                assert!(
                    fundings.insert(key.clone(), f.amount.to_string()).is_none(),
                    "funding {key} twice"
                );
            }
            _ => {}
        }
    }
    assert_eq!(realized, n(&t["realized"]), "journal realized PnL vs {t}");
    assert_eq!(fees_q, n(&t["feesQuote"]), "journal fees in USDT vs {t}");
    assert_eq!(funding, n(&t["funding"]), "journal funding vs {t}");
    let sim_assets: BTreeMap<String, Notional> = t["feesByAsset"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), n(v)))
        .filter(|(_, v)| !v.is_zero())
        .collect();
    assert_eq!(fees_asset, sim_assets, "fees per asset vs {t}");
    assert!(fills.len() >= 17, "every fill booked: {fills:?}");

    // `aegis reconcile --pnl` agrees with everything (and its JSON says so).
    let (code, out, err) = reconcile(&w, &db, false);
    assert_eq!(code, 0, "reconcile:\n{out}\n{err}");
    assert!(out.contains("RESULT: equal"), "{out}");
    assert!(!out.contains("DIFFERENT"), "{out}");
    assert!(!out.contains(SECRET) && !err.contains(SECRET));
    let (code, out, err) = reconcile(&w, &db, true);
    assert_eq!(code, 0, "{out}\n{err}");
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["equal"], true, "{j}");
    let fills_total = j["symbols"]["BTCUSDT"]["totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["what"] == "fills")
        .cloned()
        .unwrap();
    assert_eq!(
        fills_total["exchange"]
            .as_str()
            .unwrap()
            .parse::<usize>()
            .ok(),
        Some(
            fills
                .keys()
                .map(|k| k.rsplit_once('|').unwrap().0.to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        )
    );

    // Journal and Postgres agree row for row (the writer catches up on shutdown; wait for it regardless).
    let pg_fills = || -> BTreeMap<String, String> {
        db.sql(
            "SELECT symbol, trade_id, split_part, client_id, mode, side, trim_scale(price)::text, \
             trim_scale(qty)::text, trim_scale(fee)::text, fee_asset, trim_scale(realized_pnl)::text FROM fills",
        )
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('|').collect();
            (format!("{}|{}|{}", c[0], c[1], c[2]), c[3..].join("|"))
        })
        .collect()
    };
    // Decimals in one form on both sides (`0.00300000` and `0.003` are one value).
    let canon = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter()
            .map(|(k, v)| {
                let cols: Vec<String> = v
                    .split('|')
                    .map(|c| match Notional::parse(c) {
                        Ok(x) if c.bytes().any(|b| b.is_ascii_digit()) && !c.starts_with("ag") => {
                            x.to_string()
                        }
                        _ => c.to_string(),
                    })
                    .collect();
                (k.clone(), cols.join("|"))
            })
            .collect()
    };
    let mut pg = BTreeMap::new();
    wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
        pg = pg_fills();
        pg.len() >= fills.len()
    });
    assert_eq!(canon(&pg), canon(&fills), "fills: Postgres vs journal");
    let pg_funding: BTreeMap<String, String> = db
        .sql("SELECT symbol, tran_id, mode, trim_scale(amount)::text FROM funding")
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('|').collect();
            (format!("{}|{}|{}", c[0], c[1], c[2]), c[3].to_string())
        })
        .collect();
    let canon1 = |m: &BTreeMap<String, String>| -> BTreeMap<String, Notional> {
        m.iter()
            .map(|(k, v)| (k.clone(), Notional::parse(v).unwrap()))
            .collect()
    };
    assert_eq!(
        canon1(&pg_funding),
        canon1(&fundings),
        "funding: Postgres vs journal"
    );
    assert_eq!(db.sql("SELECT count(*) FROM fill_conflicts"), "0");
    // The day's net in Postgres is the exchange's.
    let day_net = db.sql("SELECT trim_scale(sum(net))::text FROM daily_net");
    assert_eq!(
        Notional::parse(&day_net).unwrap(),
        expected_total,
        "daily_net vs {t}"
    );
    eprintln!("soak took {:?}", t0.elapsed());
}
