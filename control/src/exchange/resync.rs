//! Reconciliation after a reconnect (user data stream or order gateway): while a stream was down, fills,
//! cancels or foreign orders may have happened that the bot never heard of. So, after every reconnect:
//!
//! 1. New entries halt (`ReconcileMismatch`). The journal's newest trade id per symbol is noted at once (the
//!    gap began before it), and the trades since are recovered from `GET /fapi/v1/userTrades` and booked as
//!    fills ([`super::trades`]): each trade once, whether the stream delivers it too or not.
//! 2. Rounds of: read what the bot believes (the journal-fed ledger: open client ids and positions per mode),
//!    fetch the exchange's open orders and positions, compare with the start-up policy of [`super::reconcile`]:
//!    unknown orders are cancelled; orders the bot holds open but the exchange does not list are looked up by
//!    client id and closed with their real final state; positions are set to the exchange's sizes.
//! 3. Entries resume only after a round in which both sides agree. Orders of this session that the ledger does
//!    not know yet are in flight (their events are on the way to the journal), not orphans. After
//!    [`ROUNDS`] rounds without agreement the bot stays halted and raises an alert.
//!
//! The rounds run on their own thread (`aegis-resync`, started by [`Slot::install`]): asking for one
//! ([`Slot::run`]) halts entries at once and returns, so the thread that noticed the gap (the user data stream,
//! which must keep reading the fills that settle the comparison) never waits for REST answers or the rounds'
//! pauses. Requests that arrive while a comparison runs are merged into one more comparison after it.

use super::reconcile::{self, Stale};
use super::rest::RestClient;
use crate::state::Live;
use aegis_engine::venue::binance::Inbound;
use aegis_shared::event::{AlertKind, HaltReason};
use aegis_shared::ids::ClientOrderIdGen;
use aegis_shared::{ClientOrderId, Symbol};
use crossbeam_channel::Sender;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Comparison rounds before giving up (and staying halted).
pub const ROUNDS: u32 = 8;

/// Everything a resync needs; cheap to clone into the threads that reconnect.
#[derive(Clone)]
pub struct Resync {
    /// REST client.
    pub client: RestClient,
    /// Control runtime.
    pub rt: tokio::runtime::Handle,
    /// To the engine.
    pub inbound: Sender<Inbound>,
    /// What the bot believes (journal-fed).
    pub live: Arc<Live>,
    /// Traded symbols.
    pub symbols: Vec<Symbol>,
    /// Client-id prefix of this session's orders (`ag<session>-`).
    pub session_prefix: String,
    /// Fee pricing shared with the user data stream (recovered BNB fees are valued the same way).
    pub funding: super::funding::SharedFunding,
}

/// Per symbol, the first trade id a recovery reads (the journal's newest when the gap began, + 1).
type FromIds = std::collections::BTreeMap<Symbol, u64>;

/// Merges two requests' starting points: the earlier start per symbol covers both gaps.
fn merge_from(into: &mut FromIds, more: FromIds) {
    for (s, f) in more {
        let e = into.entry(s).or_insert(f);
        *e = (*e).min(f);
    }
}

impl std::fmt::Debug for Resync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resync")
            .field("symbols", &self.symbols)
            .finish_non_exhaustive()
    }
}

/// Shared between the reconnecting threads: the resync (set once start-up reconciliation is done) and a flag
/// the order gateway raises after it reconnected (the user-stream thread passes it on to the resync thread).
#[derive(Debug)]
pub struct Slot {
    /// Set after start-up, with the queue to its thread ([`Slot::install`]).
    resync: std::sync::OnceLock<(Resync, Sender<(String, FromIds)>)>,
    /// A reconnect elsewhere asks for a resync.
    pub wanted: std::sync::atomic::AtomicBool,
    /// A key switch asks the user-stream thread to recreate the listenKey under the new key.
    pub rekey: std::sync::atomic::AtomicBool,
    /// Key switches the user-stream thread has finished (with the outcome of the last one).
    pub rekeyed: std::sync::Mutex<(u64, Result<String, String>)>,
}

impl Default for Slot {
    fn default() -> Self {
        Self {
            resync: Default::default(),
            wanted: Default::default(),
            rekey: Default::default(),
            rekeyed: std::sync::Mutex::new((0, Err("no key switch yet".into()))),
        }
    }
}

impl Slot {
    /// Sets the resync up once start-up reconciliation is done and starts its thread, which ends when the last
    /// `Slot` is dropped. A second call is ignored.
    pub fn install(&self, r: Resync) -> std::io::Result<()> {
        if self.resync.get().is_some() {
            return Ok(());
        }
        let (tx, rx) = crossbeam_channel::unbounded::<(String, FromIds)>();
        let worker = r.clone();
        std::thread::Builder::new()
            .name("aegis-resync".into())
            .spawn(move || {
                while let Ok((first, mut from)) = rx.recv() {
                    // Everything asked for meanwhile is covered by this one comparison.
                    let mut why = first;
                    for (more, f) in rx.try_iter() {
                        merge_from(&mut from, f);
                        if !why.contains(more.as_str()) {
                            why.push_str(", ");
                            why.push_str(&more);
                        }
                    }
                    worker.run_from(&why, from);
                }
            })?;
        let _ = self.resync.set((r, tx));
        Ok(())
    }

    /// Asks for a resync (no-op before start-up reconciliation finished) without waiting for it: new entries
    /// halt now, the comparison runs on the resync thread.
    pub fn run(&self, why: &str) {
        if let Some((r, tx)) = self.resync.get() {
            let _ = r.inbound.send(Inbound::Halt(HaltReason::ReconcileMismatch));
            // Noted now, before anything the new connection delivers is journaled.
            let from = r.from_ids();
            if let Err(e) = tx.send((why.to_string(), from)) {
                // The thread is gone (it never panics by design); compare here rather than not at all.
                let (_, from) = e.into_inner();
                r.run_from(why, from);
            }
        }
    }
}

/// A position correction is applied only when the same difference (symbol, mode, size) was seen in the round
/// before. Positions are set absolutely, so correcting a difference that is only a fill still on its way through
/// the user data stream would count that fill twice once it arrives; a real gap (a fill missed while the stream
/// was down) is still there a round later. Returns true when `sets` may be applied.
fn confirmed(
    seen: &mut Vec<(Symbol, aegis_shared::StrategyMode, aegis_shared::Qty)>,
    sets: &[aegis_shared::event::PositionUpdate],
) -> bool {
    let now: Vec<_> = sets.iter().map(|u| (u.symbol, u.mode, u.qty)).collect();
    if !now.is_empty() && *seen == now {
        seen.clear();
        true
    } else {
        *seen = now;
        false
    }
}

/// The client-id prefix of a session's orders.
pub fn session_prefix(session: u64) -> String {
    let id = ClientOrderIdGen::new(session).next_id();
    let s = id.as_str();
    s[..=s.find('-').unwrap_or(s.len() - 1)].to_string()
}

impl Resync {
    /// Where a recovery of a gap beginning now reads from: the journal's newest trade id + 1 per traded symbol.
    pub fn from_ids(&self) -> FromIds {
        let v = self.live.view();
        self.symbols
            .iter()
            .filter_map(|s| v.ledger.last_trade_id.get(s).map(|l| (*s, l + 1)))
            .collect()
    }

    /// Runs the comparison for a gap beginning now (see the module docs). Returns true when both sides agree
    /// and entries may resume.
    pub fn run(&self, why: &str) -> bool {
        self.run_from(why, self.from_ids())
    }

    /// Recovers the fills since `from`, books them, then compares. A recovery that fails is logged; the
    /// comparison's position correction then still brings the sizes in line.
    fn recover(&self, why: &str, from: &FromIds) {
        let journal = super::trades::JournalView::of(&self.live.view().ledger);
        let by_order: Vec<(Symbol, u64)> = journal
            .open
            .values()
            .filter_map(|e| e.exchange_id.map(|x| (e.symbol, x)))
            .collect();
        let ids = std::collections::HashMap::new();
        match self.rt.block_on(super::trades::recover(
            &self.client,
            from,
            // While running, every order of this session is the engine's own: the ids suffice.
            &Default::default(),
            &by_order,
            &journal,
            &ids,
        )) {
            Ok(mut rec) => {
                super::trades::price_fees(&mut rec.updates, &self.funding, &self.client, &self.rt);
                if !rec.updates.is_empty() {
                    tracing::warn!(
                        "recovery:    after {why}: {} fill(s) the stream did not deliver recovered from userTrades",
                        rec.updates.len()
                    );
                }
                for u in rec.updates {
                    let _ = self.inbound.send(Inbound::Update(u));
                }
            }
            Err(e) => tracing::error!(
                error = %e,
                "recovery:    after {why}: cannot read the fills made during the gap; positions will be corrected from the exchange"
            ),
        }
    }

    /// [`Resync::run`] for a gap that began when the journal's newest trade ids were `from`.
    pub fn run_from(&self, why: &str, from: FromIds) -> bool {
        let _ = self
            .inbound
            .send(Inbound::Halt(HaltReason::ReconcileMismatch));
        tracing::warn!(
            "reconcile:   {why}: new entries halted until local and exchange state agree"
        );
        self.recover(why, &from);
        let mut seen_mismatch = Vec::new();
        for round in 0..ROUNDS {
            // Let events already produced reach the journal-fed ledger before reading it.
            std::thread::sleep(Duration::from_millis(if round == 0 { 150 } else { 400 }));
            let (open, positions) = {
                let v = self.live.view();
                (v.ledger.open_orders.clone(), v.ledger.positions.clone())
            };
            let (orders, pos) = match self.rt.block_on(async {
                let o = self.client.open_orders().await?;
                let p = self.client.position_risk().await?;
                Ok::<_, super::rest::RestError>((o, p))
            }) {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "reconcile: cannot read the exchange's state; trying again");
                    continue;
                }
            };
            let mut known = open.clone();
            for o in &orders {
                if let Some(c) = o
                    .get("clientOrderId")
                    .and_then(Value::as_str)
                    .filter(|c| c.starts_with(self.session_prefix.as_str()))
                    .and_then(|c| ClientOrderId::new(c).ok())
                {
                    known.insert(c);
                }
            }
            let plan = reconcile::plan(&orders, &pos, &known, &positions, self.client.now_ms());
            let stale = reconcile::stale_orders(&orders, &open);
            let pos_mismatch = plan.notes.iter().any(|n| n.starts_with("position "));
            if plan.cancel.is_empty() && stale.is_empty() && !pos_mismatch {
                let _ = self
                    .inbound
                    .send(Inbound::Clear(HaltReason::ReconcileMismatch));
                tracing::info!(
                    "reconcile:   after {why}: local and exchange state agree (round {round})"
                );
                return true;
            }
            for n in &plan.notes {
                if !n.starts_with("adopt ") {
                    tracing::warn!("reconcile:   after {why}: {n}");
                }
            }
            for c in &plan.cancel {
                if let Err(e) = self
                    .rt
                    .block_on(self.client.cancel_order(&c.symbol, &c.client_id))
                {
                    tracing::warn!(client_id = %c.client_id, error = %e, "reconcile: cancel failed; checking again");
                }
            }
            for cid in stale {
                let mode = |s: Symbol| reconcile::mode_for(&positions, s);
                match self.rt.block_on(reconcile::resolve_stale(
                    &self.client,
                    cid,
                    &self.symbols,
                    mode,
                )) {
                    Stale::Found(msgs) => {
                        tracing::warn!(client_id = %cid, "reconcile:   after {why}: order {cid} is no longer open on the exchange: closing it with its real state");
                        for m in msgs {
                            let _ = self.inbound.send(m);
                        }
                    }
                    // An order of this session may still be on its way (the gateway settles it itself).
                    Stale::Missing if !cid.as_str().starts_with(self.session_prefix.as_str()) => {
                        if let Some(s) = self.symbols.first() {
                            for m in
                                reconcile::close_missing(cid, *s, mode(*s), self.client.now_ms())
                            {
                                let _ = self.inbound.send(m);
                            }
                        }
                    }
                    Stale::Missing | Stale::Unknown => {}
                }
            }
            if pos_mismatch {
                let sets: Vec<_> = plan
                    .engine
                    .iter()
                    .filter_map(|m| match m {
                        Inbound::SetPosition(u) => Some(*u),
                        _ => None,
                    })
                    .collect();
                if confirmed(&mut seen_mismatch, &sets) {
                    for u in sets {
                        let _ = self.inbound.send(Inbound::SetPosition(u));
                    }
                } else {
                    tracing::info!(
                        "reconcile:   after {why}: positions differ; checking again before correcting them (a fill may be on its way)"
                    );
                }
            }
        }
        tracing::error!("reconcile:   after {why}: local and exchange state still disagree after {ROUNDS} rounds: new entries stay halted");
        let _ = self
            .inbound
            .send(Inbound::Alert(AlertKind::ReconcileMismatch));
        false
    }
}

#[cfg(test)]
mod tests {
    use aegis_shared::event::PositionUpdate;
    use aegis_shared::{Notional, Price, Qty, StrategyMode, Symbol};

    fn set(qty: &str, ts_ms: u64) -> PositionUpdate {
        PositionUpdate {
            ts_ms,
            symbol: Symbol::new("BTCUSDT").unwrap(),
            market: aegis_shared::Market::Futures,
            mode: StrategyMode::Scalp,
            qty: Qty::parse(qty).unwrap(),
            entry_price: Price::from_int(60_000),
            realized_pnl: Notional::ZERO,
            fees: Notional::ZERO,
            funding: Notional::ZERO,
        }
    }

    #[test]
    fn a_position_is_corrected_only_when_the_difference_stays_for_two_rounds() {
        let mut seen = Vec::new();
        // A fill on its way: the difference is gone by the next round, nothing is ever set.
        assert!(!super::confirmed(&mut seen, &[set("0.005", 1)]));
        assert!(!super::confirmed(&mut seen, &[]));
        // A real gap: the same difference twice (later timestamps do not matter) is corrected once.
        assert!(!super::confirmed(&mut seen, &[set("0.005", 2)]));
        assert!(super::confirmed(&mut seen, &[set("0.005", 3)]));
        // A difference that changed meanwhile waits another round.
        assert!(!super::confirmed(&mut seen, &[set("0.004", 4)]));
        assert!(!super::confirmed(&mut seen, &[set("0.006", 5)]));
        assert!(super::confirmed(&mut seen, &[set("0.006", 6)]));
    }

    #[test]
    fn session_prefix_matches_generated_ids() {
        let p = super::session_prefix(1_795_805_509_427);
        let mut g = aegis_shared::ids::ClientOrderIdGen::new(1_795_805_509_427);
        assert!(g.next_id().as_str().starts_with(&p));
        assert!(p.ends_with('-') && p.starts_with("ag"));
        let mut other = aegis_shared::ids::ClientOrderIdGen::new(1_795_805_509_428);
        assert!(!other.next_id().as_str().starts_with(&p));
    }
}
