//! The real `aegis` binary trading spot on the built-in simulated market (`MARKETS=spot`, paper): every journaled
//! order, fill and position says spot, no position goes short, a buy's fee is taken in the base asset, and a
//! restart of the same data directory as a futures bot is refused with what to do.

mod support;

use aegis_control::journal::{self, JournalReader, JournalRecord};
use aegis_shared::{EngineEvent, Market, Qty, Side};
use std::path::Path;
use std::time::Duration;
use support::{free_port, serial, temp_dir, wait_for, Launcher, StatusPoll, FAST};

const LAUNCH: Launcher = Launcher {
    env: &[("AUTH_ENABLED", "false")],
    stop_wait: Duration::from_secs(6),
    stop_budget: Some(Duration::from_secs(5)),
    client_timeout: Duration::from_secs(2),
    pin_cert: true,
};

fn journal_events(dir: &Path) -> Vec<EngineEvent> {
    let mut r = JournalReader::open(&journal::dir_in(&dir.join("data"))).unwrap();
    r.records_from(0)
        .unwrap()
        .filter_map(|e| match e.unwrap().record {
            JournalRecord::Engine(ev) => Some(ev),
            _ => None,
        })
        .collect()
}

#[test]
fn spot_paper_run_journals_spot_long_only_with_base_fees_and_a_futures_restart_is_refused() {
    serial(body());
}

async fn body() {
    let dir = temp_dir("spot");
    let port = free_port();
    let c = LAUNCH.client();
    let env = [FAST[0], FAST[1], ("MARKETS", "spot")];
    let mut bot = LAUNCH.start(&dir, port, 1, &env, &[]);
    let (_, s) = wait_for(
        &c,
        &mut bot,
        StatusPoll::Required,
        Duration::from_secs(60),
        "health ok and a few spot fills",
        |h, s| h["status"] == "ok" && s["counts"]["fills"].as_u64().unwrap_or(0) >= 4,
    )
    .await;
    assert_eq!(s["mode"], "PAPER");
    bot.stop_cleanly();

    let ev = journal_events(&dir);
    let (mut fills, mut buys) = (0, 0);
    for e in &ev {
        match e {
            EngineEvent::Fill(f) => {
                fills += 1;
                assert_eq!(f.market, Market::Spot, "{f:?}");
                if f.side == Side::Buy {
                    buys += 1;
                    // 0.1 % (spot's default fee) of the quantity, in the asset bought.
                    assert_eq!(Some(f.fee_asset), f.symbol.base_asset(), "{f:?}");
                    let want = aegis_shared::Notional::from_units(f.qty.units())
                        .mul_rate(aegis_shared::num::Rate::from_units(100_000));
                    assert_eq!(f.fee, want, "{f:?}");
                } else {
                    assert_eq!(f.fee_asset.as_str(), "USDT", "{f:?}");
                }
                // Spot's step (0.00001 BTC, 0.0001 ETH), not futures' 0.001.
                let step = if f.symbol.as_str() == "BTCUSDT" {
                    Qty::parse("0.00001").unwrap()
                } else {
                    Qty::parse("0.0001").unwrap()
                };
                assert!(f.qty.is_multiple_of(step), "{f:?}");
            }
            EngineEvent::Order(o) => assert_eq!(o.market, Market::Spot, "{o:?}"),
            EngineEvent::Position(p) => {
                assert_eq!(p.market, Market::Spot, "{p:?}");
                assert!(p.qty.units() >= 0, "spot went short: {p:?}");
            }
            _ => {}
        }
    }
    assert!(fills >= 4 && buys >= 1, "{fills} fills, {buys} buys");

    // The same data directory as a futures bot: its spot positions are not futures positions.
    let mut fut = LAUNCH.start(&dir, free_port(), 2, &[FAST[0], FAST[1]], &[]);
    let status = fut
        .wait(Duration::from_secs(15))
        .expect("the futures bot exits by itself");
    assert!(!status.success());
    let out = fut.output();
    assert!(
        out.contains("restored spot position") && out.contains("DATA_DIR"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
