//! A backtest on spot data (`EngineParams::market = Spot`): the recorded XRPETH trades are Binance spot. The
//! same data and settings on futures go short; on spot no position ever does, every buy's fee is taken in XRP
//! and valued in ETH at the fill price, and the report's fees and net add up in ETH, the quote asset.

mod engine_support;

use aegis_engine::backtest::{self, BacktestOptions};
use aegis_engine::venue::FeeRates;
use aegis_engine::EngineParams;
use aegis_shared::event::FeeConversion;
use aegis_shared::num::Rate;
use aegis_shared::quote::QuoteUsd;
use aegis_shared::{EngineEvent, Market, Notional, Qty, Side};
use engine_support::{data, fills, limits, positions, short_bars};

fn run(market: Market) -> (backtest::BacktestReport, Vec<EngineEvent>) {
    let spot_rate = Rate::from_units(100_000); // 0.1 %
    let p = short_bars(EngineParams {
        market,
        fees: FeeRates {
            maker: spot_rate,
            taker: spot_rate,
        },
        limits: limits(500, 1_000),
        pin: false,
        ..EngineParams::default()
    });
    let opts = BacktestOptions {
        quote_usd: vec![QuoteUsd::parse("ETH=180").unwrap()],
        ..BacktestOptions::default()
    };
    let mut events = Vec::new();
    let report = backtest::run_with_events(
        p,
        &[data("xrpeth-aggtrade-2019-10-11.jsonl")],
        &opts,
        |_, _| {},
        |e| events.push(*e),
    )
    .expect("backtest runs");
    (report, events)
}

#[test]
fn spot_backtest_is_long_only_with_base_fees_valued_in_the_quote_asset() {
    let (_, fut) = run(Market::Futures);
    assert!(
        positions(&fut).iter().any(|p| p.qty.units() < 0),
        "on futures the same data and settings go short"
    );

    let (rep, ev) = run(Market::Spot);
    let f = fills(&ev);
    assert!(f.iter().any(|x| x.side == Side::Buy) && f.iter().any(|x| x.side == Side::Sell));
    assert!(positions(&ev)
        .iter()
        .all(|p| p.qty.units() >= 0 && p.market == Market::Spot));
    for x in &f {
        assert_eq!(x.market, Market::Spot);
        match x.side {
            Side::Buy => {
                assert_eq!(x.fee_asset.as_str(), "XRP", "{x:?}");
                let fee_qty = Qty::from_units(x.fee.units());
                assert_eq!(
                    x.fee_conv,
                    FeeConversion::Converted {
                        price: x.price,
                        quote: x.price.notional(fee_qty)
                    }
                );
            }
            Side::Sell => assert_eq!(x.fee_conv, FeeConversion::Quote),
        }
    }
    // The report counts fees in ETH: the XRP fees at their ETH value, never as a number of XRP.
    let fees = f.iter().fold(Notional::ZERO, |a, x| a + x.quote_fee());
    let xrp_as_is = f.iter().fold(Notional::ZERO, |a, x| a + x.fee);
    assert_ne!(fees, xrp_as_is, "the XRP fees differ from their ETH value");
    assert_eq!(rep.total.fees, fees);
    let gross = f.iter().fold(Notional::ZERO, |a, x| a + x.realized_pnl);
    assert_eq!(rep.total.gross_pnl, gross);
    assert_eq!(rep.total.net_pnl, gross - fees);
    let by_mode = rep.modes.iter().fold(Notional::ZERO, |a, m| a + m.fees);
    assert_eq!(by_mode, fees);
    // A trade sold down to dust (the base fee's remainder) is a closed trade, won or lost.
    assert!(
        rep.total.trades > 0 && rep.total.wins + rep.total.losses > 0,
        "{rep}"
    );
}
