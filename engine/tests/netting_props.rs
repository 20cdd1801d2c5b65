//! Per-symbol netting of the four modes on a one-way account (issue 13 item 4), as properties of the real gate.
//!
//! The account nets every mode's position into one per symbol, so two rules must hold after any sequence of
//! approved orders (each filled completely, the worst case for the cap):
//! - the symbol's |net| notional stays within `FUTURES_AUTOPILOT_MAX_POSITION_SIZE`;
//! - no mode's position is opposite to the net or larger than it, so no mode's reduce-only exit can exceed the net
//!   position (Binance would refuse it with -2022 "ReduceOnly Order is rejected").

use aegis_engine::risk::breaker::BreakerConfig;
use aegis_engine::risk::limits::{LimitsConfig, SymbolFilters};
use aegis_engine::risk::{Denial, RiskContext, RiskGate};
use aegis_engine::venue::OrderRequest;
use aegis_shared::event::{OrderIntent, OrderType};
use aegis_shared::mode::StrategyMode;
use aegis_shared::num::{Notional, Price, Qty};
use aegis_shared::{Side, Symbol};
use proptest::prelude::*;

const CAP_USD: i64 = 1000;

fn gate() -> RiskGate {
    let mut g = RiskGate::new(
        LimitsConfig {
            max_position_usd: Notional::from_int(CAP_USD),
            max_daily_loss_usd: Notional::from_int(1_000_000),
            max_leverage: 5,
            max_open_orders: 200,
            max_orders_per_10s: 1000,
        },
        BreakerConfig::default(),
    );
    g.limits
        .set_filters(
            Symbol::new("BTCUSDT").unwrap(),
            SymbolFilters {
                tick_size: Price::parse("0.1").unwrap(),
                step_size: Qty::parse("0.001").unwrap(),
                min_qty: Qty::parse("0.001").unwrap(),
                min_notional: Notional::from_int(5),
            },
        )
        .unwrap();
    g
}

fn req(mode: StrategyMode, side: Side, qty_milli: i64, reduce_only: bool) -> OrderRequest {
    OrderRequest {
        symbol: Symbol::new("BTCUSDT").unwrap(),
        sym: 0,
        mode,
        intent: if reduce_only {
            OrderIntent::StopLoss
        } else {
            OrderIntent::Entry
        },
        side,
        order_type: OrderType::Market,
        tif: None,
        price: Price::ZERO,
        ref_price: Price::from_int(50_000),
        qty: Qty::from_units(qty_milli * 100_000),
        reduce_only,
    }
}

fn order_strategy() -> impl Strategy<Value = (usize, bool, i64, bool)> {
    (0usize..4, any::<bool>(), 1i64..12, any::<bool>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn approved_orders_keep_the_net_capped_and_every_exit_within_it(
        orders in proptest::collection::vec(order_strategy(), 1..60)
    ) {
        let mut g = gate();
        let mut pos = [0i64; 4];
        let mut now = 1_700_000_000_000u64;
        for (m, buy, qty, ro) in orders {
            now += 1_000;
            let mode = StrategyMode::ALL[m];
            let side = if buy { Side::Buy } else { Side::Sell };
            let o = req(mode, side, qty, ro);
            let net: i64 = pos.iter().sum();
            let ctx = RiskContext {
                now_ms: now,
                position_qty: Qty::from_units(pos[m]),
                symbol_net_qty: Qty::from_units(net),
                leverage: 1,
                long_only: false,
            };
            if g.check(&o, &ctx).is_ok() {
                if ro {
                    prop_assert!(o.qty.units() <= net.abs(), "an approved exit exceeds the net position");
                    prop_assert!(side.sign() * net.signum() < 0, "an approved exit does not reduce the net");
                }
                pos[m] += side.sign() * o.qty.units();
            }
            let net: i64 = pos.iter().sum();
            let notional = Price::from_int(50_000).notional(Qty::from_units(net.abs()));
            prop_assert!(notional <= Notional::from_int(CAP_USD), "|net| over the cap: {pos:?}");
            for p in pos {
                prop_assert!(p == 0 || p.signum() == net.signum(), "a mode is opposite to the net: {pos:?}");
                prop_assert!(p.abs() <= net.abs(), "a mode holds more than the net: {pos:?}");
            }
        }
    }
}

#[test]
fn an_entry_opposite_to_other_modes_net_is_refused_and_the_cap_is_per_symbol() {
    let mut g = gate();
    let ctx = |own: &str, net: &str| RiskContext {
        now_ms: 1_700_000_000_000,
        position_qty: Qty::parse(own).unwrap(),
        symbol_net_qty: Qty::parse(net).unwrap(),
        leverage: 1,
        long_only: false,
    };
    // Scalp is long 0.01; swing (flat) may not go short, since its reduce-only exit could later exceed the net.
    assert_eq!(
        g.check(
            &req(StrategyMode::Swing, Side::Sell, 2, false),
            &ctx("0", "0.01")
        ),
        Err(Denial::OppositeNet)
    );
    // Adding on the net's side passes while the symbol's net stays within $1000 (0.02 at 50,000).
    assert_eq!(
        g.check(
            &req(StrategyMode::Swing, Side::Buy, 2, false),
            &ctx("0", "0.01")
        ),
        Ok(())
    );
    // Swing's own position would be 0.004 ($200), but the symbol's net would be 0.022 ($1100).
    assert_eq!(
        g.check(
            &req(StrategyMode::Swing, Side::Buy, 4, false),
            &ctx("0", "0.018")
        ),
        Err(Denial::PositionTooLarge)
    );
    // A mode alone on the symbol may still reverse its own position.
    assert_eq!(
        g.check(
            &req(StrategyMode::Scalp, Side::Sell, 12, false),
            &ctx("0.01", "0.01")
        ),
        Ok(())
    );
}
