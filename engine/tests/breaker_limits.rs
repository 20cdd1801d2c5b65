//! Limits and allocation: a denial test for every limit, and properties (daily loss, order rate, allocation).

use aegis_engine::risk::allocation::{Allocation, AllocationDenial, AllocationTracker};
use aegis_engine::risk::limits::{LimitDenial, Limits, LimitsConfig, OrderCheck, SymbolFilters};
use aegis_shared::event::{BreakerChange, TripReason};
use aegis_shared::mode::StrategyMode;
use aegis_shared::num::{Notional, Price, Qty};
use aegis_shared::symbol::Symbol;
use proptest::prelude::*;

const DAY: u64 = 86_400_000;

fn sym(s: &str) -> Symbol {
    Symbol::new(s).unwrap()
}

fn limits(cfg: LimitsConfig) -> Limits {
    let mut l = Limits::new(cfg);
    for (symbol, tick) in [("BTCUSDT", "0.10"), ("ETHUSDT", "0.01")] {
        l.set_filters(
            sym(symbol),
            SymbolFilters {
                tick_size: Price::parse(tick).unwrap(),
                step_size: Qty::parse("0.001").unwrap(),
                min_qty: Qty::parse("0.001").unwrap(),
                min_notional: Notional::from_int(5),
            },
        )
        .unwrap();
    }
    l.set_allowlist(&[sym("BTCUSDT")]).unwrap();
    l
}

fn order(price: &str, qty: &str) -> OrderCheck {
    let p = Price::parse(price).unwrap();
    let q = Qty::parse(qty).unwrap();
    OrderCheck {
        symbol: sym("BTCUSDT"),
        exit: false,
        price: p,
        tick_checked: true,
        qty: q,
        position_notional_after: p.notional(q),
        leverage: 2,
    }
}

#[test]
fn every_limit_denies() {
    let cfg = LimitsConfig {
        max_position_usd: Notional::from_int(50),
        max_daily_loss_usd: Notional::from_int(20),
        max_leverage: 3,
        max_open_orders: 2,
        max_orders_per_10s: 3,
    };
    let t = 100 * DAY;
    let ok = order("30000.0", "0.001");
    assert_eq!(limits(cfg).check(t, &ok), Ok(()));
    let deny = |o: OrderCheck| limits(cfg).check(t, &o).unwrap_err();
    assert_eq!(
        deny(OrderCheck {
            symbol: sym("ETHUSDT"),
            ..ok
        }),
        LimitDenial::SymbolNotAllowed
    );
    assert_eq!(
        deny(OrderCheck {
            symbol: sym("DOGEUSDT"),
            ..ok
        }),
        LimitDenial::UnknownSymbol
    );
    assert_eq!(
        deny(order("30000.05", "0.001")),
        LimitDenial::PriceNotOnTick
    );
    assert_eq!(deny(order("30000.0", "0.0015")), LimitDenial::QtyNotOnStep);
    assert_eq!(deny(order("30000.0", "0")), LimitDenial::QtyNotOnStep);
    assert_eq!(
        deny(order("1000.0", "0.001")),
        LimitDenial::BelowMinNotional
    );
    assert_eq!(
        deny(order("30000.0", "0.002")),
        LimitDenial::PositionTooLarge
    );
    assert_eq!(
        deny(OrderCheck { leverage: 4, ..ok }),
        LimitDenial::LeverageTooHigh
    );
    // Min qty: a coarser min than step.
    let mut l = limits(cfg);
    let f = *l.filters(sym("BTCUSDT")).unwrap();
    l.set_filters(
        sym("BTCUSDT"),
        SymbolFilters {
            min_qty: Qty::parse("0.002").unwrap(),
            ..f
        },
    )
    .unwrap();
    assert_eq!(l.check(t, &ok), Err(LimitDenial::BelowMinQty));
    // Open orders.
    let mut l = limits(cfg);
    l.record_sent(t);
    l.record_sent(t);
    assert_eq!(l.check(t, &ok), Err(LimitDenial::TooManyOpenOrders));
    l.record_done();
    assert_eq!(l.check(t, &ok), Ok(()));
    // Rate: three orders in 10 s, the fourth waits until the first leaves the window.
    l.record_sent(t + 1);
    l.record_done();
    l.record_done();
    l.record_done();
    assert_eq!(l.check(t + 9_999, &ok), Err(LimitDenial::RateLimited));
    assert_eq!(l.check(t + 10_000, &ok), Ok(()));
    // Daily loss: reaching it stops entries until 00:00 UTC.
    let mut l = limits(cfg);
    let mut ev = vec![];
    l.record_pnl(t + 5, Notional::from_int(-19), &mut |e| ev.push(e));
    assert_eq!(l.check(t + 6, &ok), Ok(()));
    l.record_pnl(t + 7, Notional::from_int(-1), &mut |e| ev.push(e));
    assert_eq!(l.check(t + 8, &ok), Err(LimitDenial::DailyLossReached));
    assert_eq!(ev.len(), 1);
    assert_eq!(
        ev[0].change,
        BreakerChange::Tripped {
            reason: TripReason::DailyLoss,
            until_ms: t + DAY
        }
    );
    assert_eq!(
        l.check(t + DAY - 1, &ok),
        Err(LimitDenial::DailyLossReached)
    );
    l.poll(t + DAY, &mut |e| ev.push(e));
    assert_eq!(ev[1].change, BreakerChange::Resumed);
    assert_eq!(ev[1].ts_ms, t + DAY);
    assert_eq!(l.check(t + DAY, &ok), Ok(()));
}

#[test]
fn exits_pass_the_entry_only_limits_but_not_the_grid_or_the_rate() {
    let cfg = LimitsConfig {
        max_orders_per_10s: 1,
        max_open_orders: 0,
        ..LimitsConfig::default()
    };
    let mut l = limits(cfg);
    let mut sink = |_| {};
    l.record_pnl(DAY, Notional::from_int(-1_000), &mut sink);
    let exit = OrderCheck {
        symbol: sym("ETHUSDT"), // off the allowlist
        exit: true,
        position_notional_after: Notional::ZERO,
        leverage: 100,
        ..order("10.00", "0.001") // below min notional
    };
    assert_eq!(l.check(DAY + 1, &exit), Ok(()));
    assert_eq!(
        l.check(
            DAY + 1,
            &OrderCheck {
                price: Price::parse("10.005").unwrap(),
                ..exit
            }
        ),
        Err(LimitDenial::PriceNotOnTick)
    );
    l.record_sent(DAY + 1);
    assert_eq!(l.check(DAY + 2, &exit), Err(LimitDenial::RateLimited));
}

#[test]
fn set_limits_applies_at_once() {
    let mut l = limits(LimitsConfig::default());
    let big = order("30000.0", "0.003");
    assert_eq!(l.check(DAY, &big), Err(LimitDenial::PositionTooLarge));
    l.set_limits(Notional::from_int(200), Notional::from_int(100));
    assert_eq!(l.check(DAY, &big), Ok(()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Entries are only let through while the day's loss is below the limit, so the day can end past it by at
    /// most one order's worth (here each position can lose at most its notional, ≤ max position size).
    #[test]
    fn daily_loss_passes_the_limit_by_at_most_one_order(
        max_daily in 1i64..500,
        max_pos in 5i64..500,
        trades in prop::collection::vec((5i64..500, -100i64..=30, 0u64..3_600_000), 1..200),
    ) {
        let cfg = LimitsConfig {
            max_position_usd: Notional::from_int(max_pos),
            max_daily_loss_usd: Notional::from_int(max_daily),
            max_orders_per_10s: 1000,
            max_open_orders: 1000,
            ..LimitsConfig::default()
        };
        let mut l = limits(cfg);
        let mut sink = |_| {};
        let mut now = 200 * DAY;
        let day = now / DAY;
        for (usd, pct, gap) in trades {
            now += gap;
            if now / DAY != day { break; }
            let qty = Notional::from_int(usd).qty_at(Price::parse("100.0").unwrap(), Qty::parse("0.001").unwrap()).unwrap();
            let o = OrderCheck { symbol: sym("BTCUSDT"), exit: false, price: Price::parse("100.0").unwrap(),
                tick_checked: true, qty, position_notional_after: Price::parse("100.0").unwrap().notional(qty), leverage: 1 };
            let before = -l.day_pnl(now).units();
            if l.check(now, &o).is_ok() {
                prop_assert!(before < cfg.max_daily_loss_usd.units());
                let pnl = Notional::from_units(o.position_notional_after.units() * pct / 100);
                l.record_pnl(now, pnl, &mut sink);
            }
            let loss = -l.day_pnl(now).units();
            prop_assert!(loss < cfg.max_daily_loss_usd.units() + cfg.max_position_usd.units());
        }
    }

    /// No 10-second window ever holds more approved orders than the limit.
    #[test]
    fn the_order_rate_is_never_exceeded(rate in 1u32..40, gaps in prop::collection::vec(0u64..800, 1..400)) {
        let cfg = LimitsConfig { max_orders_per_10s: rate, max_open_orders: u32::MAX, ..LimitsConfig::default() };
        let mut l = limits(cfg);
        let o = order("30000.0", "0.001");
        let mut now = DAY;
        let mut sent: Vec<u64> = vec![];
        for g in gaps {
            now += g;
            if l.check(now, &o).is_ok() {
                l.record_sent(now);
                sent.push(now);
                let in_window = sent.iter().filter(|&&t| t + 10_000 > now).count();
                prop_assert!(in_window <= rate as usize);
            } else {
                let in_window = sent.iter().filter(|&&t| t + 10_000 > now).count();
                prop_assert_eq!(in_window, rate as usize, "denied below the limit");
            }
        }
    }

    /// Whatever opens and closes, no mode ever holds more positions, more USD per position or more of the
    /// capital than its allocation allows.
    #[test]
    fn allocation_is_never_exceeded(
        capital in 100i64..20_000,
        ops in prop::collection::vec((0usize..4, 1i64..1_000, any::<bool>()), 1..300),
    ) {
        let alloc = Allocation::default();
        let mut t = AllocationTracker::new(alloc, Notional::from_int(capital));
        let mut open: [Vec<Notional>; 4] = Default::default();
        for (mi, usd, close) in ops {
            let m = StrategyMode::ALL[mi];
            if close {
                if let Some(u) = open[mi].pop() { t.on_close(m, u); }
                continue;
            }
            let usd = Notional::from_int(usd);
            match t.check(m, usd) {
                Ok(()) => { t.on_open(m, usd); open[mi].push(usd); }
                Err(AllocationDenial::TooManyPositions) => prop_assert_eq!(open[mi].len() as u32, alloc.mode(m).max_positions),
                Err(AllocationDenial::PositionTooLarge) => prop_assert!(usd > alloc.mode(m).max_usd_per_position),
                Err(AllocationDenial::BudgetExceeded) => {}
            }
            let a = alloc.mode(m);
            prop_assert!(open[mi].len() as u32 <= a.max_positions);
            let used = open[mi].iter().fold(Notional::ZERO, |s, &u| s + u);
            prop_assert_eq!(used, t.used(m));
            prop_assert!(used <= t.budget(m));
            prop_assert!(open[mi].iter().all(|&u| u <= a.max_usd_per_position));
            // Budget is exactly capital × percent / 100.
            prop_assert_eq!(t.budget(m).units() as i128, capital as i128 * 100_000_000 * a.percent.units() as i128 / 100 / 100_000_000);
        }
    }
}
