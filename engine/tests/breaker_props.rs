//! Circuit breaker properties against a naive reference model (contract: ../shared/README.md).

use aegis_engine::risk::breaker::{
    Breaker, BreakerBank, BreakerBankSnapshot, BreakerConfig, BreakerSnapshot, WINDOW_MS,
};
use aegis_shared::event::{BreakerChange, BreakerEvent, BreakerScope, TripReason};
use aegis_shared::mode::StrategyMode;
use aegis_shared::num::Notional;
use proptest::prelude::*;

/// The contract written the slow, obvious way: every trade kept in a Vec.
struct Model {
    cfg: BreakerConfig,
    losses: Vec<(u64, i64)>,
    streak: u32,
    until: Option<u64>,
}

impl Model {
    fn record(&mut self, now: u64, pnl: i64, out: &mut Vec<BreakerEvent>) {
        if let Some(u) = self.until {
            if now >= u {
                self.until = None;
                out.push(ev(u, BreakerChange::Resumed));
            }
        }
        if pnl < 0 {
            self.losses.push((now, -pnl));
            self.streak += 1;
        } else if pnl > 0 {
            self.streak = 0;
        }
        if self.until.is_some() || pnl >= 0 {
            return;
        }
        let hour: i64 = self
            .losses
            .iter()
            .filter(|(t, _)| *t + WINDOW_MS > now)
            .map(|(_, l)| l)
            .sum();
        let reason = if hour >= self.cfg.max_loss_per_hour.units() {
            Some(TripReason::HourlyLoss)
        } else if self.streak >= self.cfg.max_consecutive_losses {
            Some(TripReason::ConsecutiveLosses)
        } else {
            None
        };
        if let Some(reason) = reason {
            let until_ms = now + self.cfg.cooldown_ms;
            self.until = Some(until_ms);
            self.streak = 0;
            out.push(ev(now, BreakerChange::Tripped { reason, until_ms }));
        }
    }
}

/// Feeds `bank` the trades `(time, mode, PnL in whole quote units)` in order; their events go to `out`.
fn feed_bank(
    bank: &mut BreakerBank,
    list: &[(u64, StrategyMode, i64)],
    out: &mut Vec<BreakerEvent>,
) {
    for &(t, mode, pnl) in list {
        bank.record_trade(t, mode, Notional::from_int(pnl), &mut |e| out.push(e));
    }
}

fn ev(ts_ms: u64, change: BreakerChange) -> BreakerEvent {
    BreakerEvent {
        ts_ms,
        scope: BreakerScope::Global,
        change,
    }
}

fn cfg(max_loss: i64, max_streak: u32, cooldown_min: u64) -> BreakerConfig {
    BreakerConfig {
        enabled: true,
        max_loss_per_hour: Notional::from_int(max_loss),
        max_consecutive_losses: max_streak,
        cooldown_ms: cooldown_min * 60_000,
    }
}

/// (gap to the previous trade in ms, net PnL in cents)
fn trades() -> impl Strategy<Value = Vec<(u64, i64)>> {
    prop::collection::vec((0u64..15 * 60_000, -4_000i64..2_000), 1..300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn breaker_matches_the_contract_model(
        max_loss in 1i64..200,
        max_streak in 1u32..12,
        cooldown in 1u64..90,
        ts in trades(),
    ) {
        let c = cfg(max_loss, max_streak, cooldown);
        let mut b = Breaker::new(BreakerScope::Global, c);
        let mut m = Model { cfg: c, losses: vec![], streak: 0, until: None };
        let mut now = 1_700_000_000_000u64;
        for (gap, cents) in ts {
            now += gap;
            let pnl = Notional::from_units(cents * 1_000_000);
            let (mut got, mut want) = (vec![], vec![]);
            b.record_trade(now, pnl, &mut |e| got.push(e));
            m.record(now, pnl.units(), &mut want);
            prop_assert_eq!(&got, &want);
            // Blocking is exactly [trip, trip + cooldown).
            prop_assert_eq!(b.blocks_entries(now), m.until.is_some_and(|u| now < u));
        }
    }

    #[test]
    fn a_trip_lasts_exactly_the_cooldown(cooldown in 1u64..240, losses in 1u32..20, gap in 0u64..1000) {
        let c = cfg(1_000_000, losses, cooldown);
        let mut b = Breaker::new(BreakerScope::Global, c);
        let mut events = vec![];
        let mut now = 5_000_000u64;
        for _ in 0..losses {
            now += gap;
            b.record_trade(now, Notional::from_int(-1), &mut |e| events.push(e));
        }
        prop_assert_eq!(events.len(), 1);
        let BreakerChange::Tripped { reason, until_ms } = events[0].change else { panic!("not a trip") };
        prop_assert_eq!(reason, TripReason::ConsecutiveLosses);
        prop_assert_eq!(events[0].ts_ms, now);
        prop_assert_eq!(until_ms - now, cooldown * 60_000);
        prop_assert!(b.blocks_entries(until_ms - 1));
        prop_assert!(!b.blocks_entries(until_ms));
        // Losing exits during the trip never extend it.
        b.record_trade(until_ms - 1, Notional::from_int(-500), &mut |e| events.push(e));
        prop_assert_eq!(events.len(), 1);
        b.poll(until_ms - 1, &mut |e| events.push(e));
        prop_assert_eq!(events.len(), 1);
        b.poll(until_ms + 12_345, &mut |e| events.push(e));
        prop_assert_eq!(events[1], BreakerEvent { ts_ms: until_ms, scope: BreakerScope::Global, change: BreakerChange::Resumed });
    }

    #[test]
    fn trips_exactly_at_the_hourly_threshold(max_loss_cents in 100i64..100_000, parts in 2usize..20) {
        let c = BreakerConfig { max_consecutive_losses: 0, ..cfg(1, 0, 30) };
        let c = BreakerConfig { max_loss_per_hour: Notional::from_units(max_loss_cents * 1_000_000), ..c };
        let mut b = Breaker::new(BreakerScope::Global, c);
        let mut events = vec![];
        // `parts - 1` losses that add up to one cent short of the limit, then exactly one cent.
        let total = max_loss_cents - 1;
        let each = total / (parts as i64 - 1);
        let mut sum = 0;
        for i in 0..parts - 1 {
            let l = if i == parts - 2 { total - sum } else { each };
            sum += l;
            b.record_trade(1_000 + i as u64, Notional::from_units(-l * 1_000_000), &mut |e| events.push(e));
        }
        prop_assert!(events.is_empty(), "tripped below the threshold");
        b.record_trade(2_000, Notional::from_units(-1_000_000), &mut |e| events.push(e));
        prop_assert_eq!(events.len(), 1);
        let hourly = matches!(events[0].change, BreakerChange::Tripped { reason: TripReason::HourlyLoss, .. });
        prop_assert!(hourly, "not an hourly trip: {:?}", events[0]);
    }

    #[test]
    fn snapshot_restore_continues_identically(ts in trades(), more in trades()) {
        let c = cfg(50, 5, 30);
        let mut a = Breaker::new(BreakerScope::Mode(StrategyMode::Swing), c);
        let mut now = 1_000_000_000u64;
        let mut sink = |_e: BreakerEvent| {};
        for (gap, cents) in ts {
            now += gap;
            a.record_trade(now, Notional::from_units(cents * 1_000_000), &mut sink);
        }
        let json = serde_json::to_string(&a.snapshot()).unwrap();
        let snap: BreakerSnapshot = serde_json::from_str(&json).unwrap();
        let mut b = Breaker::new(BreakerScope::Mode(StrategyMode::Swing), c);
        b.restore(&snap);
        prop_assert_eq!(b.snapshot(), a.snapshot());
        for (gap, cents) in more {
            now += gap;
            let (mut ea, mut eb) = (vec![], vec![]);
            a.record_trade(now, Notional::from_units(cents * 1_000_000), &mut |e| ea.push(e));
            b.record_trade(now, Notional::from_units(cents * 1_000_000), &mut |e| eb.push(e));
            prop_assert_eq!(ea, eb);
            prop_assert_eq!(a.blocks_entries(now), b.blocks_entries(now));
        }
    }
}

#[test]
fn one_mode_pauses_alone_and_the_global_breaker_sees_everything() {
    let mut bank = BreakerBank::new(cfg(1_000, 3, 30));
    let mut events = vec![];
    let t = 10_000_000;
    for i in 0..3 {
        feed_bank(&mut bank, &[(t + i, StrategyMode::Scalp, -1)], &mut events);
    }
    assert_eq!(
        events.len(),
        2,
        "scalp and global both reach 3 losses: {events:?}"
    );
    let mut bank = BreakerBank::new(cfg(1_000, 3, 30));
    events.clear();
    feed_bank(
        &mut bank,
        &[
            (t, StrategyMode::Scalp, -1),
            (t + 1, StrategyMode::Scalp, -1),
            (t + 2, StrategyMode::Swing, 2),
            (t + 3, StrategyMode::Scalp, -1),
        ],
        &mut events,
    );
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].scope, BreakerScope::Mode(StrategyMode::Scalp));
    let block = bank.check_entry(StrategyMode::Scalp, t + 4).unwrap_err();
    assert_eq!(block.scope, BreakerScope::Mode(StrategyMode::Scalp));
    assert!(bank.check_entry(StrategyMode::Swing, t + 4).is_ok());
}

#[test]
fn a_restart_does_not_reset_a_trip() {
    let mut bank = BreakerBank::new(cfg(10, 3, 30));
    let mut journal = vec![];
    feed_bank(
        &mut bank,
        &[(1_000_000, StrategyMode::Position, -10)],
        &mut journal,
    );
    assert_eq!(journal.len(), 2);
    // The control plane journals the events as JSON; after a restart it folds them back.
    let lines: Vec<String> = journal
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    let replayed: Vec<BreakerEvent> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut fresh = BreakerBank::new(cfg(10, 3, 30));
    fresh.restore(&BreakerBankSnapshot::from_events(&replayed));
    let until = 1_000_000 + 30 * 60_000;
    assert!(
        fresh.check_entry(StrategyMode::Swing, until - 1).is_err(),
        "global trip survives"
    );
    assert!(fresh.check_entry(StrategyMode::Swing, until).is_ok());
    // The full snapshot also survives JSON.
    let snap = bank.snapshot();
    let back: BreakerBankSnapshot =
        serde_json::from_str(&serde_json::to_string(&snap).unwrap()).unwrap();
    assert_eq!(back, snap);
}

#[test]
fn an_operator_reset_ends_a_trip_and_is_an_event() {
    let mut bank = BreakerBank::new(cfg(10, 3, 30));
    let mut ev = vec![];
    feed_bank(&mut bank, &[(1_000_000, StrategyMode::Scalp, -10)], &mut ev);
    assert!(bank.check_entry(StrategyMode::Scalp, 1_000_001).is_err());
    bank.reset(BreakerScope::Global, 1_000_002, &mut |e| ev.push(e));
    bank.reset(
        BreakerScope::Mode(StrategyMode::Scalp),
        1_000_003,
        &mut |e| ev.push(e),
    );
    assert!(bank.check_entry(StrategyMode::Scalp, 1_000_004).is_ok());
    assert_eq!(
        ev.iter()
            .filter(|e| e.change == BreakerChange::Reset)
            .count(),
        2
    );
    // A reset clears the window: one more small loss does not re-trip.
    feed_bank(&mut bank, &[(1_000_005, StrategyMode::Scalp, -1)], &mut ev);
    assert_eq!(ev.len(), 4);
}

#[test]
fn a_disabled_breaker_never_blocks() {
    let c = BreakerConfig {
        enabled: false,
        ..cfg(1, 1, 30)
    };
    let mut b = Breaker::new(BreakerScope::Global, c);
    let mut ev = vec![];
    b.record_trade(1, Notional::from_int(-100), &mut |e| ev.push(e));
    assert!(ev.is_empty());
    assert!(!b.blocks_entries(2));
}
