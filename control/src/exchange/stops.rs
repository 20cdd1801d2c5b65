//! Protective stops resting on Binance (issue 13.5): for every symbol with a non-zero NET account position,
//! exactly one reduce-only `STOP_MARKET` algo order of ours on the closing side, for the net quantity, triggered
//! on the mark price `EXCHANGE_STOP_LOSS` of the entry beyond it. It protects the position when the bot cannot
//! (killed with `kill -9`, crashed, disconnected); the modes' own software stops lie closer, so they normally
//! exit first. Policy (docs/EXCHANGE_STOPS.md):
//!
//! - Source: the ledger's positions, i.e. the engine's `PositionUpdate`s after the journal (polled every
//!   [`TICK`] on the control runtime, never on the engine thread). The engine nets the modes per symbol; the
//!   stop covers the net: `Σ qty`, entry = the quantity-weighted entry of the legs on the net side.
//! - Trigger ([`trigger_price`]): long `entry − ⌈entry × f⌉` rounded down to the tick, short `entry + ⌈entry × f⌉`
//!   rounded up; never closer than `f`.
//! - Ids: `clientAlgoId` = [`PREFIX`]`<symbol>-<n>`, `n` fixed per target, so a retry of the same placement
//!   (after a timeout or a 5xx) reuses it and Binance's duplicate check (-4116) cannot let it double: -4116 on
//!   our own id means the earlier attempt landed, and it is taken as resting.
//! - Move (size, side or entry changed): place the new stop first, then cancel the old one, so a growing
//!   position is never without a stop. Both may rest for a moment; both are reduce-only, so the second to
//!   trigger can only close what is left.
//! - Flat: cancel it.
//! - Failure: retried with backoff ([`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`]) per symbol, alert
//!   `protective_stop_failed` once per episode, and `/api/health` lists the symbol under
//!   `protective_stops.unprotected` (status degraded) until a stop rests again.
//! - Kill switch: every algo order of every symbol is cancelled (`DELETE /fapi/v1/algoOpenOrders`) and no stop
//!   is placed until the engine runs again (resume): a kill means hands off. `kill --flatten` closes the
//!   positions anyway; without it the positions are listed as unprotected.
//! - Heard at once: the user data stream's `ALGO_UPDATE` for one of our stops with a final status (`CANCELED`
//!   by hand, `EXPIRED`, `REJECTED` when triggered, `FINISHED` after its order) reaches the manager through an
//!   [`AlgoInbox`] within a [`TICK`]: the stop is forgotten and placed again if the position is still open; a
//!   `REJECTED` one also raises `protective_stop_failed` with Binance's reason. `TRIGGERING`/`TRIGGERED` change
//!   nothing (the stop's own order is closing the position; a new stop would trigger at once, -2021).
//! - Audit every [`AUDIT_EVERY`] (and the start-up reconciliation, [`super::reconcile::algo_plan`]), the net
//!   under the stream (a missed event, a stream outage):
//!   `GET /fapi/v1/openAlgoOrders`; a stop we think rests but the exchange no longer lists (triggered, cancelled
//!   by hand) is forgotten and placed again if the position is still open; ours on a symbol with a position on
//!   the matching (closing) side and none adopted yet is adopted (and moved if off); anything else is cancelled.

use super::algo::{AlgoInbox, Resting, Target, PREFIX};
use super::reconcile::{algo_plan, AlgoOrderSeen};
use super::rest::{RestClient, RestError};
use crate::state::Live;
use aegis_engine::venue::binance::Inbound;
use aegis_shared::event::{AlertKind, EngineState, HaltReason, PositionUpdate};
use aegis_shared::num::{Price, Qty, Rate, SCALE};
use aegis_shared::{StrategyMode, Symbol};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a stop manager waits for the ledger to show the reconciled positions before it sizes stops.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// Waits until the ledger's net position in every symbol of `kept` is what start-up reconciliation left (or
/// [`SETTLE_LIMIT`] passed): a manager that sized stops from the journal's old position would place one for a
/// position the exchange no longer holds (or of the wrong size) and cancel it a moment later. `who` names the
/// manager in the warning.
pub async fn settle(live: &Live, kept: &BTreeMap<Symbol, Qty>, who: &str) {
    let t = Instant::now();
    while t.elapsed() < SETTLE_LIMIT {
        let agreed = {
            let v = live.view();
            kept.iter().all(|(s, q)| {
                let held: i64 = v
                    .ledger
                    .positions
                    .iter()
                    .filter(|((p, _), _)| p == s)
                    .map(|(_, u)| u.qty.units())
                    .sum();
                held == q.units()
            })
        };
        if agreed {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!("{who}: the ledger did not show the reconciled positions within {SETTLE_LIMIT:?}; sizing stops from what it shows");
}

/// How often the ledger is compared with the resting stops.
pub const TICK: Duration = Duration::from_millis(500);
/// How often `openAlgoOrders` is read to catch stops that triggered or were cancelled behind our back.
pub const AUDIT_EVERY: Duration = Duration::from_secs(30);
/// First retry delay after a failure.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The retry backoff per symbol of a stop manager (futures and spot): [`BACKOFF_MIN`] after the first failure,
/// doubling to [`BACKOFF_MAX`], forgotten on success.
#[derive(Debug, Default)]
pub struct Retries(BTreeMap<Symbol, (Instant, Duration)>);

impl Retries {
    /// Whether `s` waits for its next try.
    pub fn waiting(&self, s: Symbol) -> bool {
        self.0.get(&s).is_some_and(|(at, _)| Instant::now() < *at)
    }

    /// `s` succeeded: its next failure starts the backoff again.
    pub fn succeeded(&mut self, s: Symbol) {
        self.0.remove(&s);
    }

    /// `s` failed: the delay until its next try.
    pub fn failed(&mut self, s: Symbol) -> Duration {
        let delay = self
            .0
            .get(&s)
            .map(|(_, d)| (*d * 2).min(BACKOFF_MAX))
            .unwrap_or(BACKOFF_MIN);
        self.0.insert(s, (Instant::now() + delay, delay));
        delay
    }
}

/// The trigger price `fraction` of `entry` beyond it on the losing side, on the tick, never closer than
/// `fraction` (and at least one tick above zero).
pub fn trigger_price(entry: Price, long: bool, fraction: Rate, tick: Price) -> Price {
    let e = entry.units() as i128;
    // ⌈entry × f⌉ in price units.
    let off = (e * fraction.units() as i128 + SCALE as i128 - 1) / SCALE as i128;
    let off = off.min(i64::MAX as i128) as i64;
    let t = tick.units().max(1);
    if long {
        let raw = entry.units().saturating_sub(off);
        let p = raw.div_euclid(t) * t;
        Price::from_units(p.max(t))
    } else {
        let raw = entry.units().saturating_add(off);
        let p = (raw + t - 1).div_euclid(t) * t;
        Price::from_units(p)
    }
}

/// Net quantity and net-side entry per symbol (flat symbols left out).
pub fn net_positions(
    positions: &BTreeMap<(Symbol, StrategyMode), PositionUpdate>,
) -> BTreeMap<Symbol, (Qty, Price)> {
    let mut legs: BTreeMap<Symbol, Vec<(i64, i64)>> = BTreeMap::new();
    for ((s, _), p) in positions {
        if !p.qty.is_zero() {
            legs.entry(*s)
                .or_default()
                .push((p.qty.units(), p.entry_price.units()));
        }
    }
    let mut out = BTreeMap::new();
    for (s, l) in legs {
        let net: i64 = l.iter().map(|(q, _)| q).sum();
        if net == 0 {
            continue;
        }
        let side: Vec<&(i64, i64)> = l
            .iter()
            .filter(|(q, _)| q.signum() == net.signum())
            .collect();
        let qsum: i128 = side.iter().map(|(q, _)| q.unsigned_abs() as i128).sum();
        let wsum: i128 = side
            .iter()
            .map(|(q, e)| q.unsigned_abs() as i128 * *e as i128)
            .sum();
        let entry = if qsum == 0 { 0 } else { (wsum / qsum) as i64 };
        out.insert(s, (Qty::from_units(net), Price::from_units(entry)));
    }
    out
}

/// The stop a net position needs.
pub fn target(net: Qty, entry: Price, fraction: Rate, tick: Price) -> Option<Target> {
    if net.is_zero() || entry.units() <= 0 {
        return None;
    }
    let long = net.units() > 0;
    Some(Target {
        sell: long,
        qty: net.abs(),
        trigger: trigger_price(entry, long, fraction, tick),
    })
}

/// The manager's state (one task on the control runtime).
pub struct Manager {
    client: RestClient,
    live: Arc<Live>,
    inbound: crossbeam_channel::Sender<Inbound>,
    fraction: Rate,
    ticks: HashMap<Symbol, Price>,
    resting: BTreeMap<Symbol, Resting>,
    /// The id each symbol's next placement uses (kept across retries of the same target).
    pending: BTreeMap<Symbol, (Target, String)>,
    retry_at: Retries,
    alerted: BTreeMap<Symbol, bool>,
    killed: bool,
    /// Symbols the ledger has shown with a position since the start: only those count as "flat" when the ledger
    /// shows none (an adopted stop must survive the moment before the reconciled position reaches the ledger).
    seen_open: std::collections::BTreeSet<Symbol>,
    seq: u64,
    last_audit: Instant,
    inbox: Arc<AlgoInbox>,
    /// Symbols whose algo orders the kill switch could not cancel yet, retried with backoff while killed.
    kill_left: Vec<Symbol>,
    kill_retry: Option<(Instant, Duration)>,
}

fn side(sell: bool) -> &'static str {
    if sell {
        "SELL"
    } else {
        "BUY"
    }
}

impl Manager {
    /// A manager for the symbols in `ticks` (their tick sizes), starting with the stops that the start-up
    /// reconciliation adopted.
    pub fn new(
        client: RestClient,
        live: Arc<Live>,
        inbound: crossbeam_channel::Sender<Inbound>,
        fraction: Rate,
        ticks: HashMap<Symbol, Price>,
        adopted: BTreeMap<Symbol, Resting>,
        inbox: Arc<AlgoInbox>,
    ) -> Self {
        let fraction = if fraction.is_zero() {
            aegis_shared::config::DEFAULT_EXCHANGE_STOP_LOSS
        } else {
            fraction
        };
        live.stops.set(|v| v.active = true);
        Self {
            client,
            live,
            inbound,
            fraction,
            ticks,
            resting: adopted,
            pending: BTreeMap::new(),
            retry_at: Retries::default(),
            alerted: BTreeMap::new(),
            killed: false,
            seen_open: Default::default(),
            // Ids of this run start at the wall clock, so they never repeat an earlier run's.
            seq: super::rest::wall_ms(),
            last_audit: Instant::now(),
            inbox,
            kill_left: Vec::new(),
            kill_retry: None,
        }
    }

    /// Runs until the task is aborted.
    pub async fn run(mut self) {
        loop {
            self.step().await;
            tokio::time::sleep(TICK).await;
        }
    }

    fn desired(&self) -> (BTreeMap<Symbol, Target>, Option<EngineState>) {
        let v = self.live.view();
        let nets = net_positions(&v.ledger.positions);
        let state = v.engine_state;
        drop(v);
        let mut out = BTreeMap::new();
        for (s, (q, e)) in nets {
            // A symbol without exchange filters cannot be priced on its tick: use 1e-8 (Binance would refuse it,
            // and the failure is reported like any other).
            let tick = self.ticks.get(&s).copied().unwrap_or(Price::from_units(1));
            if let Some(t) = target(q, e, self.fraction, tick) {
                out.insert(s, t);
            }
        }
        (out, state)
    }

    /// One round: kill switch, audit, then every symbol.
    pub async fn step(&mut self) {
        let (want, state) = self.desired();
        let killed = matches!(
            state,
            Some(EngineState::Halted {
                reason: HaltReason::KillSwitch
            })
        );
        self.hear();
        if killed {
            if !self.killed {
                self.killed = true;
                self.cancel_everything().await;
            } else if self.kill_retry.is_some_and(|(at, _)| Instant::now() >= at) {
                self.cancel_kill_left().await;
            }
            self.live
                .stops
                .paused_by_kill(want.keys().map(|s| s.to_string()));
            return;
        }
        self.killed = false;
        self.kill_left.clear();
        self.kill_retry = None;
        self.seen_open.extend(want.keys().copied());
        if self.last_audit.elapsed() >= AUDIT_EVERY {
            self.last_audit = Instant::now();
            self.audit(&want).await;
        }
        let mut symbols: Vec<Symbol> = want.keys().copied().collect();
        for s in self.resting.keys() {
            if !symbols.contains(s) {
                symbols.push(*s);
            }
        }
        for s in symbols {
            if self.retry_at.waiting(s) {
                continue;
            }
            let r = self.converge(s, want.get(&s).copied()).await;
            self.record(s, r);
        }
        self.publish(&want);
    }

    fn record(&mut self, s: Symbol, r: Result<(), String>) {
        match r {
            Ok(()) => {
                self.retry_at.succeeded(s);
                self.alerted.remove(&s);
            }
            Err(why) => {
                let delay = self.retry_at.failed(s);
                if !self.alerted.get(&s).copied().unwrap_or(false) {
                    self.alerted.insert(s, true);
                    let _ = self
                        .inbound
                        .send(Inbound::Alert(AlertKind::ProtectiveStopFailed));
                }
                tracing::error!(symbol = %s, retry_in_ms = delay.as_millis() as u64, "protective stop: {why}");
                self.live.stops.set(|v| {
                    v.unprotected.insert(s.to_string(), why);
                });
            }
        }
    }

    fn publish(&self, want: &BTreeMap<Symbol, Target>) {
        let resting: BTreeMap<String, Value> = self
            .resting
            .iter()
            .map(|(s, r)| {
                (
                    s.to_string(),
                    json!({"client_algo_id": r.client_algo_id, "side": side(r.target.sell),
                           "quantity": r.target.qty.to_string(), "trigger_price": r.target.trigger.to_string()}),
                )
            })
            .collect();
        // A stop that rests but still needs a move protects the position: only a missing one counts.
        let missing = want
            .keys()
            .filter(|s| !self.resting.contains_key(*s))
            .map(|s| s.to_string());
        self.live.stops.publish(resting, missing);
    }

    fn next_id(&mut self, s: Symbol) -> String {
        self.seq += 1;
        format!("{PREFIX}{}-{}", s.as_str(), self.seq)
    }

    /// Brings one symbol's stop to `want` (place new, then cancel old).
    async fn converge(&mut self, s: Symbol, want: Option<Target>) -> Result<(), String> {
        let have = self.resting.get(&s).cloned();
        match (want, have) {
            (None, None) => {
                self.pending.remove(&s);
                Ok(())
            }
            // Not seen open yet: the ledger may not hold the reconciled position yet.
            (None, Some(_)) if !self.seen_open.contains(&s) => Ok(()),
            (None, Some(old)) => {
                self.cancel(&old.client_algo_id).await?;
                tracing::info!(symbol = %s, client_algo_id = %old.client_algo_id, "protective stop cancelled: position is flat");
                self.resting.remove(&s);
                Ok(())
            }
            (Some(t), Some(old)) if old.target == t => Ok(()),
            (Some(t), old) => {
                let id = match self.pending.get(&s) {
                    Some((pt, id)) if *pt == t => id.clone(),
                    _ => {
                        let id = self.next_id(s);
                        self.pending.insert(s, (t, id.clone()));
                        id
                    }
                };
                self.place(s, t, &id).await?;
                self.pending.remove(&s);
                tracing::info!(symbol = %s, client_algo_id = %id, side = side(t.sell), qty = %t.qty, trigger = %t.trigger, "protective stop resting on the exchange");
                self.resting.insert(
                    s,
                    Resting {
                        client_algo_id: id,
                        target: t,
                    },
                );
                if let Some(old) = old {
                    // The new one rests: the old one may go. If this fails, the audit cancels it later as a
                    // stray (a second reduce-only stop cannot over-close meanwhile).
                    if let Err(e) = self.cancel(&old.client_algo_id).await {
                        tracing::warn!(symbol = %s, client_algo_id = %old.client_algo_id, "protective stop: replaced stop not cancelled yet: {e}");
                    }
                }
                Ok(())
            }
        }
    }

    async fn place(&self, s: Symbol, t: Target, id: &str) -> Result<(), String> {
        let params = [
            ("algoType", "CONDITIONAL".to_string()),
            ("symbol", s.as_str().to_string()),
            ("side", side(t.sell).to_string()),
            ("type", "STOP_MARKET".to_string()),
            ("quantity", t.qty.to_string()),
            ("triggerPrice", t.trigger.to_string()),
            ("workingType", "MARK_PRICE".to_string()),
            ("reduceOnly", "true".to_string()),
            ("priceProtect", "true".to_string()),
            ("clientAlgoId", id.to_string()),
        ];
        match self.client.place_algo(&params).await {
            Ok(_) => Ok(()),
            // Our own id already open: an earlier attempt whose answer was lost landed.
            Err(RestError::Api { code: -4116, .. }) => Ok(()),
            Err(e) => Err(format!("placing {id} failed: {e}")),
        }
    }

    async fn cancel(&self, id: &str) -> Result<(), String> {
        match self.client.cancel_algo(id).await {
            // -2011: already gone (triggered or cancelled): what we wanted.
            Ok(_) | Err(RestError::Api { code: -2011, .. }) => Ok(()),
            Err(e) => Err(format!("cancelling {id} failed: {e}")),
        }
    }

    /// Takes the stream's news of our stops (see the module docs).
    fn hear(&mut self) {
        for n in self.inbox.take() {
            if n.status == "REJECTED" {
                tracing::error!(symbol = %n.symbol, client_algo_id = %n.client_algo_id, "protective stop REJECTED by Binance when triggered ({}): the position may be open without a stop", n.reason);
                let _ = self
                    .inbound
                    .send(Inbound::Alert(AlertKind::ProtectiveStopFailed));
            }
            if self
                .resting
                .get(&n.symbol)
                .is_some_and(|r| r.client_algo_id == n.client_algo_id)
            {
                tracing::warn!(symbol = %n.symbol, client_algo_id = %n.client_algo_id, status = %n.status, "protective stop no longer resting on the exchange (ALGO_UPDATE): placing again if the position is open");
                self.resting.remove(&n.symbol);
            }
        }
    }

    /// Kill switch: every waiting algo order of every symbol we trade or hold a stop in.
    async fn cancel_everything(&mut self) {
        let mut symbols: Vec<Symbol> = self.ticks.keys().copied().collect();
        symbols.extend(self.resting.keys().copied());
        symbols.sort();
        symbols.dedup();
        self.kill_left = symbols;
        self.kill_retry = None;
        self.cancel_kill_left().await;
        self.resting.clear();
        self.pending.clear();
    }

    /// Cancels the algo orders of the symbols the kill switch has not cleared yet; a failure (a ban, a 5xx,
    /// no network) is retried with backoff for as long as the kill lasts, never left to chance.
    async fn cancel_kill_left(&mut self) {
        let delay = self
            .kill_retry
            .map(|(_, d)| (d * 2).min(BACKOFF_MAX))
            .unwrap_or(BACKOFF_MIN);
        let mut left = Vec::new();
        for s in std::mem::take(&mut self.kill_left) {
            match self.client.cancel_all_algo(s.as_str()).await {
                Ok(_) => {
                    tracing::warn!(symbol = %s, "kill switch: algo orders cancelled (DELETE /fapi/v1/algoOpenOrders)")
                }
                Err(e) => {
                    tracing::error!(symbol = %s, retry_in_ms = delay.as_millis() as u64, "kill switch: cancelling the algo orders failed, retrying: {e}");
                    left.push(s);
                }
            }
        }
        self.kill_retry = (!left.is_empty()).then(|| (Instant::now() + delay, delay));
        self.kill_left = left;
    }

    /// Compares the exchange's open algo orders with ours (see the module docs).
    async fn audit(&mut self, want: &BTreeMap<Symbol, Target>) {
        let open = match self.client.open_algo_orders().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(
                    "protective stops: reading openAlgoOrders failed, next audit retries: {e}"
                );
                return;
            }
        };
        let seen: Vec<AlgoOrderSeen> = open.iter().filter_map(AlgoOrderSeen::parse).collect();
        // Stops we think rest but the exchange does not list: triggered or cancelled by hand.
        let listed: Vec<&str> = seen.iter().map(|o| o.client_algo_id.as_str()).collect();
        let gone: Vec<Symbol> = self
            .resting
            .iter()
            .filter(|(_, r)| !listed.contains(&r.client_algo_id.as_str()))
            .map(|(s, _)| *s)
            .collect();
        for s in gone {
            tracing::warn!(symbol = %s, "protective stop no longer on the exchange (triggered or cancelled): placing again if the position is open");
            self.resting.remove(&s);
        }
        let net: BTreeMap<Symbol, Qty> = want
            .iter()
            .map(|(s, t)| {
                (
                    *s,
                    if t.sell {
                        t.qty
                    } else {
                        Qty::from_units(-t.qty.units())
                    },
                )
            })
            .collect();
        let known: Vec<String> = self
            .resting
            .values()
            .map(|r| r.client_algo_id.clone())
            .collect();
        let plan = algo_plan(&seen, &net, &known);
        for (s, r) in plan.adopt {
            if let std::collections::btree_map::Entry::Vacant(e) = self.resting.entry(s) {
                tracing::info!(symbol = %s, client_algo_id = %r.client_algo_id, "protective stop adopted");
                e.insert(r);
            }
        }
        for o in plan.cancel {
            tracing::warn!(symbol = %o.symbol, client_algo_id = %o.client_algo_id, "cancelling a stray algo order");
            if let Err(e) = self.cancel(&o.client_algo_id).await {
                tracing::warn!("{e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Price {
        Price::parse(s).unwrap()
    }
    fn rate(s: &str) -> Rate {
        Rate::parse(s).unwrap()
    }

    #[test]
    fn trigger_is_beyond_the_fraction_on_the_tick() {
        // 60000 × 3 % = 1800.
        assert_eq!(
            trigger_price(p("60000"), true, rate("0.03"), p("0.1")),
            p("58200")
        );
        assert_eq!(
            trigger_price(p("60000"), false, rate("0.03"), p("0.1")),
            p("61800")
        );
        // 60000.05 × 3 % = 1800.0015: long 58200.0485 → down to 58200.0; short 61800.0515 → up to 61800.1.
        assert_eq!(
            trigger_price(p("60000.05"), true, rate("0.03"), p("0.1")),
            p("58200")
        );
        assert_eq!(
            trigger_price(p("60000.05"), false, rate("0.03"), p("0.1")),
            p("61800.1")
        );
        // Never zero or below.
        assert_eq!(
            trigger_price(p("0.2"), true, rate("0.5"), p("0.1")),
            p("0.1")
        );
    }

    fn pu(sym: &str, mode: StrategyMode, qty: &str, entry: &str) -> PositionUpdate {
        PositionUpdate {
            ts_ms: 1,
            symbol: Symbol::new(sym).unwrap(),
            market: aegis_shared::Market::Futures,
            mode,
            qty: Qty::parse(qty).unwrap(),
            entry_price: p(entry),
            realized_pnl: Default::default(),
            fees: Default::default(),
            funding: Default::default(),
        }
    }

    #[test]
    fn net_position_sums_the_modes_and_weights_the_entry_of_the_net_side() {
        let mut m = BTreeMap::new();
        for u in [
            pu("BTCUSDT", StrategyMode::Scalp, "0.010", "60000"),
            pu("BTCUSDT", StrategyMode::Swing, "0.030", "62000"),
            pu("BTCUSDT", StrategyMode::Position, "-0.010", "50000"),
            pu("ETHUSDT", StrategyMode::Scalp, "0.5", "3000"),
            pu("ETHUSDT", StrategyMode::Swing, "-0.5", "3100"),
        ] {
            m.insert((u.symbol, u.mode), u);
        }
        let n = net_positions(&m);
        let btc = n[&Symbol::new("BTCUSDT").unwrap()];
        assert_eq!(btc.0, Qty::parse("0.03").unwrap());
        // (0.01 × 60000 + 0.03 × 62000) / 0.04 = 61500.
        assert_eq!(btc.1, p("61500"));
        assert!(!n.contains_key(&Symbol::new("ETHUSDT").unwrap()));
        let t = target(btc.0, btc.1, rate("0.03"), p("0.1")).unwrap();
        assert!(t.sell);
        assert_eq!(t.qty, Qty::parse("0.03").unwrap());
        let short = target(
            Qty::parse("-0.02").unwrap(),
            p("100"),
            rate("0.1"),
            p("0.01"),
        )
        .unwrap();
        assert!(!short.sell);
        assert_eq!(short.trigger, p("110"));
        assert_eq!(target(Qty::ZERO, p("100"), rate("0.1"), p("0.01")), None);
    }

    proptest! {
        #[test]
        fn trigger_never_closer_than_the_fraction(
            entry in 1_000_000i64..10_000_000_000_000,
            f in 100_000i64..50_000_000,
            tick_pow in 0u32..8,
            long in any::<bool>(),
        ) {
            let tick = Price::from_units(10i64.pow(tick_pow));
            let entry = Price::from_units(entry);
            let t = trigger_price(entry, long, Rate::from_units(f), tick);
            prop_assert!(t.is_multiple_of(tick));
            prop_assert!(t.units() > 0);
            let dist = (entry.units() as i128 - t.units() as i128).abs();
            let need = entry.units() as i128 * f as i128 / SCALE as i128;
            if long {
                prop_assert!(t < entry);
                // Unless clamped at one tick above zero.
                prop_assert!(dist >= need || t == tick);
                prop_assert!(dist < need + 2 * tick.units() as i128 + 1 || t == tick);
            } else {
                prop_assert!(t > entry);
                prop_assert!(dist >= need);
                prop_assert!(dist < need + 2 * tick.units() as i128 + 1);
            }
        }
    }
}
