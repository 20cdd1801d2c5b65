//! The state rebuilt from journal records: positions, PnL, fees, counts, breakers, last session.
//!
//! The same [`Ledger::apply`] runs during replay and for live events, so what `/api/status` shows after a restart
//! is exactly what it showed before the restart (for every journaled record).

use crate::journal::JournalRecord;
use aegis_shared::event::{
    BreakerChange, BreakerEvent, BreakerScope, EngineEvent, EngineState, OrderEvent, OrderStatus,
    PositionUpdate,
};
use aegis_shared::{ClientOrderId, Notional, StrategyMode, Symbol};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Positions, PnL and counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    /// Last position per (symbol, mode).
    pub positions: BTreeMap<(Symbol, StrategyMode), PositionUpdate>,
    /// Sum of every fill's realized PnL (before fees).
    pub realized_pnl: Notional,
    /// Sum of every fill's fee in the quote asset (a BNB fee converted at fill time).
    pub fees: Notional,
    /// Fees per asset as charged.
    pub fees_by_asset: BTreeMap<Symbol, Notional>,
    /// Sum of funding received (> 0) or paid (< 0), quote asset.
    pub funding: Notional,
    /// Funding settlements journaled, by (symbol, tranId): a settlement is applied once, whatever re-delivers it.
    pub funding_seen: HashSet<(Symbol, u64)>,
    /// Time of the newest journaled funding settlement (ms), where `/fapi/v1/income` is read from on start.
    pub last_funding_ms: Option<u64>,
    /// Liquidation and ADL fills.
    pub liquidations: u64,
    /// Number of fills.
    pub fills: u64,
    /// Number of orders (counted at their first event).
    pub orders: u64,
    /// Orders seen and not final yet (bounded by the open-order limit).
    pub open_orders: HashSet<ClientOrderId>,
    /// The last event of each order in `open_orders`: its symbol, mode, exchange id and booked fill, which the
    /// fill recovery after a gap (`GET /fapi/v1/userTrades`) attributes missed trades by.
    pub open_order_events: HashMap<ClientOrderId, OrderEvent>,
    /// Exchange trades booked, by (symbol, trade id): a trade recovered after a gap is booked only if absent.
    pub trades_seen: HashSet<(Symbol, u64)>,
    /// Newest journaled trade id per symbol: where the fill recovery on start reads `userTrades` from.
    pub last_trade_id: BTreeMap<Symbol, u64>,
    /// Number of order events of any status.
    pub order_events: u64,
    /// Number of rejected orders.
    pub rejected: u64,
    /// Last event per breaker.
    pub breakers: HashMap<BreakerScope, BreakerEvent>,
    /// Last journaled engine state.
    pub engine_state: Option<EngineState>,
    /// Last session id.
    pub last_session: Option<u64>,
    /// Number of commands issued.
    pub commands: u64,
    /// Largest trade id of any journaled fill (paper trade ids of the next run start above it).
    pub max_trade_id: u64,
    /// Net realized PnL (after fees) per UTC day (days since the epoch), from fill times.
    pub day_net: BTreeMap<u64, Notional>,
}

/// Milliseconds in a day.
const DAY_MS: u64 = 86_400_000;

impl Ledger {
    /// Applies one journal record.
    pub fn apply(&mut self, rec: &JournalRecord) {
        match rec {
            JournalRecord::Session(s) => {
                self.last_session = Some(self.last_session.map_or(s.id, |l| l.max(s.id)));
            }
            JournalRecord::Engine(e) => self.apply_event(e),
            JournalRecord::Command(_) => self.commands += 1,
        }
    }

    /// Applies one critical engine event (statistics are ignored: they are not state).
    pub fn apply_event(&mut self, e: &EngineEvent) {
        match e {
            EngineEvent::Order(o) => {
                self.order_events += 1;
                let known = if o.status.is_final() {
                    self.open_order_events.remove(&o.client_id);
                    self.open_orders.remove(&o.client_id)
                } else {
                    self.open_order_events.insert(o.client_id, *o);
                    !self.open_orders.insert(o.client_id)
                };
                if !known {
                    self.orders += 1;
                }
                if o.status == OrderStatus::Rejected {
                    self.rejected += 1;
                }
            }
            EngineEvent::Fill(f) => {
                self.fills += 1;
                self.max_trade_id = self.max_trade_id.max(f.trade_id);
                if f.trade_id != 0 {
                    self.trades_seen.insert((f.symbol, f.trade_id));
                    let last = self.last_trade_id.entry(f.symbol).or_default();
                    *last = (*last).max(f.trade_id);
                }
                self.realized_pnl = self.realized_pnl.saturating_add(f.realized_pnl);
                self.fees = self.fees.saturating_add(f.quote_fee());
                let a = self.fees_by_asset.entry(f.fee_asset).or_default();
                *a = a.saturating_add(f.fee);
                let d = self.day_net.entry(f.ts_ms / DAY_MS).or_default();
                *d = d
                    .saturating_add(f.realized_pnl)
                    .saturating_sub(f.quote_fee());
            }
            EngineEvent::Funding(f) => {
                self.funding = self.funding.saturating_add(f.quote);
                self.funding_seen.insert((f.symbol, f.tran_id));
                self.last_funding_ms = Some(self.last_funding_ms.unwrap_or(0).max(f.ts_ms));
                let d = self.day_net.entry(f.ts_ms / DAY_MS).or_default();
                *d = d.saturating_add(f.quote);
            }
            EngineEvent::Liquidation(_) => self.liquidations += 1,
            EngineEvent::Position(p) => {
                self.positions.insert((p.symbol, p.mode), *p);
            }
            EngineEvent::Breaker(b) => {
                self.breakers.insert(b.scope, *b);
            }
            EngineEvent::State { state, .. } => self.engine_state = Some(*state),
            EngineEvent::Alert { .. } | EngineEvent::Heartbeat { .. } | EngineEvent::Stats(_) => {}
        }
    }

    /// Net realized PnL of the UTC day containing `now_ms` (for the daily loss limit after a restart).
    pub fn day_net(&self, now_ms: u64) -> Notional {
        self.day_net
            .get(&(now_ms / DAY_MS))
            .copied()
            .unwrap_or_default()
    }

    /// Where this run's paper trade ids start: above every journaled trade id, and above `session × 1000` so a
    /// wiped journal with a kept database still gets fresh ids (sessions are start times in ms and only go up;
    /// a run would need more than 1000 fills per symbol per millisecond of the gap to the next start to collide).
    pub fn paper_trade_id_base(&self, session: u64) -> u64 {
        self.max_trade_id.max(session.saturating_mul(1000))
    }

    /// Positions that are not flat.
    pub fn open_positions(&self) -> impl Iterator<Item = &PositionUpdate> {
        self.positions.values().filter(|p| !p.qty.is_zero())
    }

    /// Breakers that are tripped at `now_ms` (a restart does not reset a trip).
    pub fn tripped_breakers(&self, now_ms: u64) -> Vec<BreakerEvent> {
        self.breakers
            .values()
            .filter(|b| matches!(b.change, BreakerChange::Tripped { until_ms, .. } if until_ms > now_ms))
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::test_support::*;
    use aegis_shared::event::TripReason;
    use aegis_shared::mode::Side;

    /// Issue 13.1: the next run's paper trade ids start above every journaled one, even when the journal's
    /// ids are above the session-derived floor (and above the floor when the journal is empty).
    #[test]
    fn paper_trade_ids_start_above_the_journal_and_the_session() {
        let mut l = Ledger::default();
        assert_eq!(l.paper_trade_id_base(7), 7_000);
        l.apply_event(&fill(9_000, Side::Buy, "100", "0"));
        l.apply_event(&fill(40, Side::Buy, "100", "0"));
        assert_eq!(l.max_trade_id, 9_000);
        assert_eq!(l.paper_trade_id_base(7), 9_000);
        assert_eq!(l.paper_trade_id_base(10), 10_000);
    }

    #[test]
    fn sums_fills_keeps_last_position_and_trips() {
        let mut l = Ledger::default();
        l.apply_event(&fill(1, Side::Buy, "100", "0"));
        l.apply_event(&position(1, "0.01", "0"));
        l.apply_event(&fill(2, Side::Sell, "99", "-0.01"));
        l.apply_event(&position(2, "0", "-0.01"));
        assert_eq!(l.fills, 2);
        assert_eq!(l.realized_pnl, Notional::parse("-0.01").unwrap());
        assert_eq!(l.fees, Notional::parse("0.0008").unwrap());
        assert_eq!(l.open_positions().count(), 0);
        assert_eq!(
            l.day_net(1_700_000_000_000),
            Notional::parse("-0.0108").unwrap()
        );
        assert_eq!(l.day_net(1_700_000_000_000 + DAY_MS), Notional::ZERO);
        l.apply_event(&EngineEvent::Breaker(BreakerEvent {
            ts_ms: 1,
            scope: BreakerScope::Global,
            change: BreakerChange::Tripped {
                reason: TripReason::HourlyLoss,
                until_ms: 1000,
            },
        }));
        assert_eq!(l.tripped_breakers(999).len(), 1);
        assert_eq!(l.tripped_breakers(1000).len(), 0);
        // Heartbeats are not state.
        let before = l.clone();
        l.apply_event(&EngineEvent::Heartbeat { ts_ms: 5, seq: 1 });
        assert_eq!(l, before);
    }

    #[test]
    fn funding_and_bnb_fees_enter_the_day_once_per_tran_id() {
        use aegis_shared::event::{FeeConversion, FundingEvent};
        use aegis_shared::Price;
        let mut l = Ledger::default();
        let EngineEvent::Fill(mut f) = fill(1, Side::Buy, "100", "0") else {
            unreachable!()
        };
        f.fee = Notional::parse("0.0001").unwrap();
        f.fee_asset = Symbol::new("BNB").unwrap();
        f.fee_conv = FeeConversion::convert(f.fee, Price::from_int(600));
        l.apply_event(&EngineEvent::Fill(f));
        let fe = FundingEvent {
            ts_ms: f.ts_ms,
            symbol: f.symbol,
            mode: f.mode,
            tran_id: 77,
            asset: Symbol::new("USDT").unwrap(),
            amount: Notional::parse("-0.5").unwrap(),
            total: Notional::parse("-0.5").unwrap(),
            quote: Notional::parse("-0.5").unwrap(),
        };
        l.apply_event(&EngineEvent::Funding(fe));
        assert_eq!(
            l.fees,
            Notional::parse("0.06").unwrap(),
            "BNB valued, not added as USDT"
        );
        assert_eq!(l.fees_by_asset[&f.fee_asset], f.fee);
        assert_eq!(l.funding, Notional::parse("-0.5").unwrap());
        // The daily loss restored after a restart includes the funding and the converted fee.
        assert_eq!(l.day_net(f.ts_ms), Notional::parse("-0.56").unwrap());
        assert!(l.funding_seen.contains(&(f.symbol, 77)));
        assert_eq!(l.last_funding_ms, Some(f.ts_ms));
    }
}
