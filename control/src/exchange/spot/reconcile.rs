//! Reconciliation on spot (`MARKETS=spot`): a position is a balance.
//!
//! Inputs: the exchange's open orders (`GET /api/v3/openOrders`), the account's balances (`GET /api/v3/account`,
//! free + locked per asset: a resting stop locks what it would sell, and that is still held), and the journal's
//! open orders and positions per (symbol, mode).
//!
//! Policy (the futures rules of [`crate::exchange::reconcile`] where they apply, balances where they differ):
//! 1. Open orders with our prefix that the journal knows as open → **adopt** (tracked by the live venue).
//! 2. Our resting protective stops (the spot stop manager's prefix) on a symbol the bot holds → **left** for the
//!    stop manager, which adopts them; on a symbol it does not hold → **cancel**.
//! 3. Any other open order → **cancel** (not ours, or ours but unknown to the journal): the bot trades a
//!    dedicated account and leaves nothing working it does not know.
//! 4. Positions: the bot's position in a pair is what the journal says (moved by the fills recovered from
//!    `myTrades`), **capped by the base asset held**. Held less than the journal → the asset was sold outside
//!    the bot (or a stop filled while it was down, without a fill to book): the bot's modes are set down to
//!    what is held (the largest mode keeps it, others flat), entry price kept, and the mismatch is reported.
//!    Held more than the journal → the surplus is not the bot's (the owner's own coins, or dust): it is left
//!    alone and never sold, and no position is adopted from it.
//!    Pairs that share a base asset (BTCUSDT, BTCFDUSD) draw on one balance, in symbol order.
//! 5. The engine starts halted; the halt lifts only after every cancel succeeded.

use crate::exchange::reconcile::{adopt_msg, mode_for, Plan, ToCancel};
use aegis_engine::venue::binance::Inbound;
use aegis_shared::event::PositionUpdate;
use aegis_shared::{ClientOrderId, Market, Notional, Price, Qty, StrategyMode, Symbol};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

/// Base-asset quantity held per asset (free + locked), as `GET /api/v3/account` lists it.
pub type Held = BTreeMap<Symbol, Qty>;

/// What is held per asset, free + locked, from the balances the user stream keeps
/// ([`super::user_stream::Balances::snapshot`], seeded from `GET /api/v3/account`). Amounts that are no quantity
/// are skipped, and so count as nothing held: the safe side, a position is never invented.
pub fn held_of(balances: &BTreeMap<String, (Notional, Notional)>) -> Held {
    balances
        .iter()
        .filter_map(|(asset, (free, locked))| {
            let total = Qty::from_units((*free + *locked).units());
            let asset = Symbol::new(asset).ok()?;
            (!total.is_zero()).then_some((asset, total))
        })
        .collect()
}

/// What the spot plan found beyond the futures [`Plan`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpotPlan {
    /// Cancels, engine messages (adoptions, position settings), symbols held and log lines.
    pub plan: Plan,
    /// Pairs whose held base asset is below the bot's position: sold outside the bot (alert).
    pub sold_outside: Vec<Symbol>,
    /// Client ids of our resting stops left for the stop manager.
    pub stops_left: Vec<String>,
    /// The bot's position per pair after the plan (journal capped by the balance), for the stop manager.
    pub kept: BTreeMap<Symbol, Qty>,
}

/// Builds the plan (pure; see the module docs). `is_our_stop` tells the stop manager's client ids.
pub fn plan(
    open_orders: &[Value],
    held: &Held,
    journal_open: &HashSet<ClientOrderId>,
    journal_positions: &BTreeMap<(Symbol, StrategyMode), PositionUpdate>,
    now_ms: u64,
    is_our_stop: &dyn Fn(&str) -> bool,
) -> SpotPlan {
    let mut out = SpotPlan::default();
    // The bot's journal position per pair, and which pairs that leaves holding something.
    let mut syms: Vec<Symbol> = journal_positions
        .iter()
        .filter(|(_, u)| !u.qty.is_zero())
        .map(|((s, _), _)| *s)
        .collect();
    // Alphabetical (a `Symbol`'s own order is not), so which pair keeps a shared balance is predictable.
    syms.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    syms.dedup();
    // What each base asset still has to give, drawn down pair by pair.
    let mut left: BTreeMap<Symbol, i64> = held.iter().map(|(a, q)| (*a, q.units())).collect();
    let mut kept: BTreeMap<Symbol, i64> = BTreeMap::new();
    for sym in &syms {
        let local: i64 = journal_positions
            .iter()
            .filter(|((s, _), _)| s == sym)
            .map(|(_, u)| u.qty.units())
            .sum();
        let base = sym.base_asset();
        let have = base.and_then(|b| left.get(&b).copied()).unwrap_or(0).max(0);
        let keep = local.clamp(0, have);
        if let Some(b) = base {
            left.insert(b, have - keep);
        }
        kept.insert(*sym, keep);
        out.kept.insert(*sym, Qty::from_units(keep));
        if keep > 0 {
            out.plan.position_symbols.push(*sym);
        }
        if keep == local {
            continue;
        }
        let keeper = mode_for(journal_positions, *sym);
        out.sold_outside.push(*sym);
        out.plan.notes.push(format!(
            "position {sym}: journal {} but the account holds {} {}: sold outside the bot (or its stop filled while it was down); the bot's position is set to what is held, in mode {keeper}",
            Qty::from_units(local),
            Qty::from_units(have),
            base.map(|b| b.to_string()).unwrap_or_default(),
        ));
        for ((s, m), u) in journal_positions {
            if s != sym || u.qty.is_zero() {
                continue;
            }
            let q = if *m == keeper { keep } else { 0 };
            out.plan.engine.push(Inbound::SetPosition(PositionUpdate {
                ts_ms: now_ms,
                symbol: *sym,
                market: Market::Spot,
                mode: *m,
                qty: Qty::from_units(q),
                entry_price: if q == 0 { Price::ZERO } else { u.entry_price },
                realized_pnl: u.realized_pnl,
                fees: u.fees,
                funding: Default::default(),
            }));
        }
    }
    for (asset, q) in &left {
        if *q > 0 && syms.iter().any(|s| s.base_asset() == Some(*asset)) {
            out.plan.notes.push(format!(
                "{} {asset} held beyond the bot's position: not the bot's, left alone",
                Qty::from_units(*q)
            ));
        }
    }
    for o in open_orders {
        let sym_s = o.get("symbol").and_then(Value::as_str).unwrap_or("");
        let cid_s = o.get("clientOrderId").and_then(Value::as_str).unwrap_or("");
        let cid = ClientOrderId::new(cid_s).ok();
        let sym = Symbol::new(sym_s).ok();
        let known = cid.is_some_and(|c| c.is_ours() && journal_open.contains(&c));
        let holds = sym.is_some_and(|s| kept.get(&s).is_some_and(|k| *k > 0));
        let why = match (known, sym) {
            (true, Some(symbol)) => {
                if let Some(m) = adopt_msg(o, mode_for(journal_positions, symbol)) {
                    out.plan.engine.push(m);
                }
                out.plan.notes.push(format!(
                    "adopt open order {cid_s} on {sym_s} (ours, in the journal)"
                ));
                continue;
            }
            _ if is_our_stop(cid_s) && holds => {
                out.plan.notes.push(format!(
                    "keep protective stop {cid_s} on {sym_s} (the stop manager takes it over)"
                ));
                out.stops_left.push(cid_s.to_string());
                continue;
            }
            _ if is_our_stop(cid_s) => "our stop, but the bot holds nothing there",
            _ if cid.is_some_and(|c| c.is_ours()) => "ours but not in the journal",
            _ => "not placed by this bot",
        };
        out.plan
            .notes
            .push(format!("cancel open order {cid_s} on {sym_s} ({why})"));
        out.plan.cancel.push(ToCancel {
            symbol: sym_s.to_string(),
            client_id: cid_s.to_string(),
            why,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sym(s: &str) -> Symbol {
        Symbol::new(s).unwrap()
    }

    fn pos(s: &str, m: StrategyMode, q: &str) -> ((Symbol, StrategyMode), PositionUpdate) {
        (
            (sym(s), m),
            PositionUpdate {
                ts_ms: 1,
                symbol: sym(s),
                market: Market::Spot,
                mode: m,
                qty: Qty::parse(q).unwrap(),
                entry_price: Price::parse("100").unwrap(),
                realized_pnl: Default::default(),
                fees: Default::default(),
                funding: Default::default(),
            },
        )
    }

    fn no_stop(_: &str) -> bool {
        false
    }

    #[test]
    fn held_is_free_plus_locked_of_the_streams_balances_and_skips_zero_and_junk() {
        // Through the stream's own balance book, seeded as start-up seeds it.
        let b = crate::exchange::spot::user_stream::Balances::new();
        b.seed(&json!({"updateTime": 1, "balances": [
            {"asset": "BTC", "free": "0.001", "locked": "0.002"},
            {"asset": "USDT", "free": "0", "locked": "0"},
            {"asset": "ETH", "free": "x", "locked": "0"},
        ]}));
        let h = held_of(&b.snapshot());
        assert_eq!(h.len(), 1);
        assert_eq!(h[&sym("BTC")], Qty::parse("0.003").unwrap());
    }

    #[test]
    fn held_below_the_journal_is_noticed_and_set_down_surplus_is_left_alone() {
        let j: BTreeMap<_, _> = [
            pos("BTCUSDT", StrategyMode::Swing, "0.010"),
            pos("BTCUSDT", StrategyMode::Scalp, "0.002"),
            pos("ETHUSDT", StrategyMode::Swing, "0.5"),
        ]
        .into();
        let held: Held = [
            (sym("BTC"), Qty::parse("0.004").unwrap()),
            (sym("ETH"), Qty::parse("2").unwrap()),
        ]
        .into();
        let p = plan(&[], &held, &HashSet::new(), &j, 7, &no_stop);
        assert_eq!(p.sold_outside, [sym("BTCUSDT")]);
        let sets: Vec<_> = p
            .plan
            .engine
            .iter()
            .map(|m| match m {
                Inbound::SetPosition(u) => (u.symbol, u.mode, u.qty, u.market),
                m => panic!("{m:?}"),
            })
            .collect();
        // The largest mode keeps what is held; the other goes flat; ETH (more held than the journal) untouched.
        assert_eq!(
            sets,
            [
                (sym("BTCUSDT"), StrategyMode::Scalp, Qty::ZERO, Market::Spot),
                (
                    sym("BTCUSDT"),
                    StrategyMode::Swing,
                    Qty::parse("0.004").unwrap(),
                    Market::Spot
                ),
            ]
        );
        assert!(
            p.plan
                .notes
                .iter()
                .any(|n| n.contains("1.5") && n.contains("ETH") && n.contains("left alone")),
            "{:?}",
            p.plan.notes
        );
        assert_eq!(p.plan.position_symbols, [sym("BTCUSDT"), sym("ETHUSDT")]);
    }

    #[test]
    fn coins_the_bot_never_bought_are_never_adopted() {
        let held: Held = [(sym("BTC"), Qty::parse("3").unwrap())].into();
        let p = plan(&[], &held, &HashSet::new(), &BTreeMap::new(), 7, &no_stop);
        assert!(p.plan.engine.is_empty() && p.sold_outside.is_empty());
        assert!(p.plan.position_symbols.is_empty());
    }

    #[test]
    fn pairs_sharing_a_base_draw_on_one_balance() {
        let j: BTreeMap<_, _> = [
            pos("BTCFDUSD", StrategyMode::Swing, "0.3"),
            pos("BTCUSDT", StrategyMode::Swing, "0.3"),
        ]
        .into();
        let held: Held = [(sym("BTC"), Qty::parse("0.5").unwrap())].into();
        let p = plan(&[], &held, &HashSet::new(), &j, 7, &no_stop);
        // BTCFDUSD (first in symbol order) keeps its 0.3, BTCUSDT gets the 0.2 left.
        assert_eq!(p.sold_outside, [sym("BTCUSDT")]);
        assert!(
            matches!(p.plan.engine[..], [Inbound::SetPosition(u)] if u.qty == Qty::parse("0.2").unwrap())
        );
    }

    #[test]
    fn open_orders_adopted_kept_for_the_stop_manager_or_cancelled() {
        let ours = ClientOrderId::new("ag1-sw-42").unwrap();
        assert!(ours.is_ours());
        let order = |cid: &str, s: &str| {
            json!({"symbol": s, "clientOrderId": cid, "orderId": 9, "side": "SELL", "type": "LIMIT",
                   "price": "101", "origQty": "0.001", "executedQty": "0", "status": "NEW"})
        };
        let j: BTreeMap<_, _> = [pos("BTCUSDT", StrategyMode::Swing, "0.01")].into();
        let held: Held = [(sym("BTC"), Qty::parse("0.01").unwrap())].into();
        let orders = [
            order("ag1-sw-42", "BTCUSDT"),
            order("stopBTC", "BTCUSDT"),
            order("stopETH", "ETHUSDT"),
            order("manual1", "BTCUSDT"),
        ];
        let p = plan(&orders, &held, &[ours].into(), &j, 7, &|c: &str| {
            c.starts_with("stop")
        });
        assert!(p
            .plan
            .engine
            .iter()
            .any(|m| matches!(m, Inbound::AdoptOrder { client_id, .. } if *client_id == ours)));
        assert_eq!(p.stops_left, ["stopBTC"]);
        let cancelled: Vec<_> = p.plan.cancel.iter().map(|c| c.client_id.as_str()).collect();
        assert_eq!(cancelled, ["stopETH", "manual1"]);
    }
}
