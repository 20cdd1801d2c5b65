//! Reconciliation with the exchange on start: the documented policy.
//!
//! Inputs: the exchange's open orders (`GET /fapi/v1/openOrders`) and positions (`GET /fapi/v2/positionRisk`),
//! and the journal's state (open order ids, positions per (symbol, mode)).
//!
//! Policy:
//! 1. Open orders with our prefix (`ag…`) that the journal knows as open → **adopt** (tracked by the live venue,
//!    attributed to the mode holding the symbol's journal position, else [`ADOPT_DEFAULT_MODE`]).
//! 2. Any other open order (not ours, or ours but not in the journal, e.g. sent just before a crash) →
//!    **cancel**. Nothing is left working that the bot does not know.
//! 3. Positions: the exchange's net size per symbol is the truth. For each symbol whose journal size (moved by
//!    the fills recovered from `userTrades`, see [`super::trades`]) differs from it, the journal's modes are set
//!    so that they add up to it: a single journal mode keeps it; several modes → all flat except the largest,
//!    which takes the exchange's size; none → [`ADOPT_DEFAULT_MODE`]. Entry price from the exchange; realized
//!    PnL and fees stay the journal's. A symbol that agrees is left alone (no correction).
//! 4. Orders the journal holds open but the exchange does not list (filled, cancelled or never placed while the
//!    bot was down, e.g. `kill -9` with an order in flight) → looked up by client id ([`resolve_stale`]) and
//!    closed in the engine with their real final state (-2013: closed as rejected), after the trades they made
//!    meanwhile were recovered from `userTrades` and booked as fills ([`super::trades`]), so the order closes
//!    with its real filled quantity and the position agrees without rule 3's correction.
//! 5. The engine starts halted (`ReconcileMismatch`); the halt is lifted only after every cancel succeeded and
//!    the adoptions were queued, so nothing new opens until local and exchange state agree.
//! 6. Algo (conditional) orders (`GET /fapi/v1/openAlgoOrders`, [`algo_plan`]): our protective stop
//!    (`clientAlgoId` prefix [`super::algo::PREFIX`], reduce-only `STOP_MARKET`) on a symbol with a net
//!    position, on the closing side → **adopt** (one per symbol; the stop manager takes it over and moves it if
//!    its quantity or trigger is off); anything else (no position, wrong side, a second one, not ours) →
//!    **cancel**. The same rule runs at every audit of the stop manager.

use super::rest::dec;
use aegis_engine::venue::binance::{Inbound, OrderUpdate, ADOPT_DEFAULT_MODE};
use aegis_shared::event::{OrderType, PositionUpdate};
use aegis_shared::{ClientOrderId, Price, Qty, Side, StrategyMode, Symbol};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

/// An order to cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToCancel {
    /// Symbol.
    pub symbol: String,
    /// Client order id as the exchange has it.
    pub client_id: String,
    /// Why (for the log).
    pub why: &'static str,
}

/// What reconciliation will do.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Orders to cancel.
    pub cancel: Vec<ToCancel>,
    /// Messages for the engine (adopted orders, positions).
    pub engine: Vec<Inbound>,
    /// Symbols with an exchange position (the engine must trade them to manage exits).
    pub position_symbols: Vec<Symbol>,
    /// Human-readable lines for the log.
    pub notes: Vec<String>,
}

fn q(v: &Value, k: &str) -> Qty {
    Qty::from_units(dec(v, k).units())
}

fn p(v: &Value, k: &str) -> Price {
    Price::from_units(dec(v, k).units())
}

/// The mode an exchange order or position of `sym` is attributed to: the journal mode holding the largest
/// position in it, else [`ADOPT_DEFAULT_MODE`].
pub fn mode_for(
    journal_positions: &BTreeMap<(Symbol, StrategyMode), PositionUpdate>,
    sym: Symbol,
) -> StrategyMode {
    journal_positions
        .iter()
        .filter(|((s, _), u)| *s == sym && !u.qty.is_zero())
        .max_by_key(|(_, u)| u.qty.units().abs())
        .map(|((_, m), _)| *m)
        .unwrap_or(ADOPT_DEFAULT_MODE)
}

/// Builds the plan (pure; see the module docs).
pub fn plan(
    open_orders: &[Value],
    positions: &[Value],
    journal_open: &HashSet<ClientOrderId>,
    journal_positions: &BTreeMap<(Symbol, StrategyMode), PositionUpdate>,
    now_ms: u64,
) -> Plan {
    let mut out = Plan::default();
    let mode_for = |sym: Symbol| mode_for(journal_positions, sym);
    for o in open_orders {
        let sym_s = o.get("symbol").and_then(Value::as_str).unwrap_or("");
        let cid_s = o.get("clientOrderId").and_then(Value::as_str).unwrap_or("");
        let cid = ClientOrderId::new(cid_s).ok();
        let sym = Symbol::new(sym_s).ok();
        let known = cid.is_some_and(|c| c.is_ours() && journal_open.contains(&c));
        match (known, cid, sym) {
            (true, Some(_), Some(symbol)) => {
                if let Some(m) = adopt_msg(o, mode_for(symbol)) {
                    out.engine.push(m);
                }
                out.notes.push(format!(
                    "adopt open order {cid_s} on {sym_s} (ours, in the journal)"
                ));
            }
            _ => {
                let why = if cid.is_some_and(|c| c.is_ours()) {
                    "ours but not in the journal"
                } else {
                    "not placed by this bot"
                };
                out.notes
                    .push(format!("cancel open order {cid_s} on {sym_s} ({why})"));
                out.cancel.push(ToCancel {
                    symbol: sym_s.to_string(),
                    client_id: cid_s.to_string(),
                    why,
                });
            }
        }
    }
    // Exchange net size per symbol (one-way mode: positionSide BOTH; hedge-mode legs are summed).
    let mut exch: BTreeMap<Symbol, (Qty, Price)> = BTreeMap::new();
    for r in positions {
        let Some(sym) = r
            .get("symbol")
            .and_then(Value::as_str)
            .and_then(|s| Symbol::new(s).ok())
        else {
            continue;
        };
        let amt = q(r, "positionAmt");
        if amt.is_zero() {
            continue;
        }
        let e = exch.entry(sym).or_insert((Qty::ZERO, p(r, "entryPrice")));
        e.0 += amt;
    }
    let mut syms: Vec<Symbol> = exch.keys().copied().collect();
    for ((s, _), u) in journal_positions {
        if !u.qty.is_zero() && !syms.contains(s) {
            syms.push(*s);
        }
    }
    for sym in syms {
        let (want, entry) = exch.get(&sym).copied().unwrap_or((Qty::ZERO, Price::ZERO));
        if !want.is_zero() {
            out.position_symbols.push(sym);
        }
        let held: Vec<(StrategyMode, Qty)> = journal_positions
            .iter()
            .filter(|((s, _), u)| *s == sym && !u.qty.is_zero())
            .map(|((_, m), u)| (*m, u.qty))
            .collect();
        let local: i64 = held.iter().map(|(_, q)| q.units()).sum();
        let keeper = mode_for(sym);
        if local == want.units() {
            // Agreed (after the fills recovered from userTrades, when the caller moved the journal by them):
            // each mode keeps its own position, nothing is corrected.
            continue;
        }
        out.notes.push(format!(
            "position {sym}: journal {} vs exchange {want}: adopting the exchange's size into mode {keeper}",
            Qty::from_units(local)
        ));
        // Absolute settings (idempotent, so updates that raced with the fetch cannot double count).
        for (m, _) in &held {
            if *m != keeper {
                out.engine.push(Inbound::SetPosition(PositionUpdate::flat(
                    now_ms,
                    sym,
                    aegis_shared::Market::Futures,
                    *m,
                )));
            }
        }
        out.engine.push(Inbound::SetPosition(PositionUpdate {
            ts_ms: now_ms,
            symbol: sym,
            market: aegis_shared::Market::Futures,
            mode: keeper,
            qty: want,
            entry_price: if want.is_zero() { Price::ZERO } else { entry },
            realized_pnl: Default::default(),
            fees: Default::default(),
            funding: Default::default(),
        }));
    }
    out
}

/// An [`Inbound::AdoptOrder`] from an order as `GET /fapi/v1/openOrders` or `GET /fapi/v1/order` return it.
pub fn adopt_msg(o: &Value, mode: StrategyMode) -> Option<Inbound> {
    let symbol = Symbol::new(o.get("symbol").and_then(Value::as_str)?).ok()?;
    let client_id = ClientOrderId::new(o.get("clientOrderId").and_then(Value::as_str)?).ok()?;
    let side = if o.get("side").and_then(Value::as_str) == Some("SELL") {
        Side::Sell
    } else {
        Side::Buy
    };
    let order_type = if o.get("type").and_then(Value::as_str) == Some("LIMIT") {
        OrderType::Limit
    } else {
        OrderType::Market
    };
    Some(Inbound::AdoptOrder {
        symbol,
        mode,
        side,
        order_type,
        price: p(o, "price"),
        qty: q(o, "origQty"),
        filled: q(o, "executedQty"),
        reduce_only: o
            .get("reduceOnly")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        client_id,
        exchange_id: o.get("orderId").and_then(Value::as_u64).unwrap_or(0),
    })
}

/// The order's state from a `GET /fapi/v1/order` answer, as an update that moves no position (`last_qty` 0):
/// used to close orders the journal holds open but the exchange no longer lists. Positions are taken from the
/// exchange separately, so a fill missed while the bot was away is not counted twice.
pub fn final_update(o: &Value, now_ms: u64) -> Option<OrderUpdate> {
    let status = super::rest::status(o.get("status").and_then(Value::as_str)?)?;
    let Some(Inbound::AdoptOrder {
        symbol,
        side,
        order_type,
        price,
        qty,
        filled,
        reduce_only,
        client_id,
        exchange_id,
        ..
    }) = adopt_msg(o, ADOPT_DEFAULT_MODE)
    else {
        return None;
    };
    Some(OrderUpdate {
        ts_ms: o
            .get("updateTime")
            .and_then(Value::as_u64)
            .unwrap_or(now_ms),
        symbol,
        client_id,
        exchange_id,
        side,
        order_type,
        status,
        price,
        orig_qty: qty,
        last_qty: Qty::ZERO,
        last_price: Price::ZERO,
        cum_qty: filled,
        fee: Default::default(),
        fee_asset: Symbol::new("USDT").ok()?,
        fee_conv: Default::default(),
        trade_id: 0,
        maker: false,
        reduce_only,
    })
}

/// What a query found about an order the journal holds open but the exchange does not list.
#[derive(Debug, Clone, PartialEq)]
pub enum Stale {
    /// Found (its final state, or still open after all): the engine messages that settle it.
    Found(Vec<Inbound>),
    /// No such order on any traded symbol (-2013): it never reached the exchange.
    Missing,
    /// The query failed (network, limits): not settled.
    Unknown,
}

/// Looks an order up by client id on each of `symbols` (the journal keeps ids only).
pub async fn resolve_stale(
    client: &super::rest::RestClient,
    cid: ClientOrderId,
    symbols: &[Symbol],
    mode: impl Fn(Symbol) -> StrategyMode,
) -> Stale {
    for s in symbols {
        match client.query_order(s.as_str(), cid.as_str()).await {
            Ok(o) => {
                let mut msgs = Vec::new();
                if let Some(a) = adopt_msg(&o, mode(*s)) {
                    msgs.push(a);
                }
                if let Some(u) = final_update(&o, client.now_ms()) {
                    if u.status.is_final() {
                        msgs.push(Inbound::Update(u));
                    }
                }
                return Stale::Found(msgs);
            }
            Err(super::rest::RestError::Api { code: -2013, .. }) => {}
            Err(_) => return Stale::Unknown,
        }
    }
    Stale::Missing
}

/// The engine messages that close an order the exchange never saw (adopted, then rejected with -2013).
pub fn close_missing(
    cid: ClientOrderId,
    symbol: Symbol,
    mode: StrategyMode,
    now_ms: u64,
) -> [Inbound; 2] {
    [
        Inbound::AdoptOrder {
            symbol,
            mode,
            side: Side::Buy,
            order_type: OrderType::Market,
            price: Price::ZERO,
            qty: Qty::ZERO,
            filled: Qty::ZERO,
            reduce_only: true,
            client_id: cid,
            exchange_id: 0,
        },
        Inbound::Rejected {
            client_id: cid,
            code: -2013,
            ts_ms: now_ms,
        },
    ]
}

/// Journal-open orders that the exchange's open orders do not list.
pub fn stale_orders(
    open_orders: &[Value],
    journal_open: &HashSet<ClientOrderId>,
) -> Vec<ClientOrderId> {
    let listed: HashSet<&str> = open_orders
        .iter()
        .filter_map(|o| o.get("clientOrderId").and_then(Value::as_str))
        .collect();
    let mut v: Vec<ClientOrderId> = journal_open
        .iter()
        .filter(|c| !listed.contains(c.as_str()))
        .copied()
        .collect();
    v.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    v
}

/// An open algo order as `openAlgoOrders` lists it (the fields reconciliation judges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlgoOrderSeen {
    /// Symbol.
    pub symbol: String,
    /// `clientAlgoId`.
    pub client_algo_id: String,
    /// SELL.
    pub sell: bool,
    /// `orderType`.
    pub order_type: String,
    /// `reduceOnly`.
    pub reduce_only: bool,
    /// `quantity`.
    pub qty: Qty,
    /// `triggerPrice`.
    pub trigger: Price,
}

impl AlgoOrderSeen {
    /// Reads one entry (`None` when it lacks the identifying fields).
    pub fn parse(v: &Value) -> Option<Self> {
        Some(Self {
            symbol: v.get("symbol")?.as_str()?.to_string(),
            client_algo_id: v.get("clientAlgoId")?.as_str()?.to_string(),
            sell: v.get("side")?.as_str()? == "SELL",
            order_type: v
                .get("orderType")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            reduce_only: v
                .get("reduceOnly")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            qty: q(v, "quantity"),
            trigger: p(v, "triggerPrice"),
        })
    }

    /// One of our protective stops.
    pub fn is_our_stop(&self) -> bool {
        self.client_algo_id.starts_with(super::algo::PREFIX)
            && self.order_type == "STOP_MARKET"
            && self.reduce_only
    }
}

/// What to do with the open algo orders (rule 6).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlgoPlan {
    /// Our stops to take over, per symbol.
    pub adopt: BTreeMap<Symbol, super::algo::Resting>,
    /// Orders to cancel.
    pub cancel: Vec<AlgoOrderSeen>,
}

/// Rule 6: `net` = signed net position per symbol; `known` = ids the stop manager already tracks (kept).
pub fn algo_plan(
    open: &[AlgoOrderSeen],
    net: &BTreeMap<Symbol, Qty>,
    known: &[String],
) -> AlgoPlan {
    let mut out = AlgoPlan::default();
    let mut covered: HashSet<String> = open
        .iter()
        .filter(|o| known.contains(&o.client_algo_id))
        .map(|o| o.symbol.clone())
        .collect();
    for o in open {
        if known.contains(&o.client_algo_id) {
            continue;
        }
        let sym = Symbol::new(&o.symbol).ok();
        let pos = sym.and_then(|s| net.get(&s)).copied().unwrap_or(Qty::ZERO);
        let closing = !pos.is_zero() && (pos.units() > 0) == o.sell;
        match sym {
            Some(s) if o.is_our_stop() && closing && !covered.contains(&o.symbol) => {
                covered.insert(o.symbol.clone());
                out.adopt.insert(
                    s,
                    super::algo::Resting {
                        client_algo_id: o.client_algo_id.clone(),
                        target: super::algo::Target {
                            sell: o.sell,
                            qty: o.qty,
                            trigger: o.trigger,
                        },
                    },
                );
            }
            _ => out.cancel.push(o.clone()),
        }
    }
    out
}

/// Net signed position per symbol from `positionRisk` (one-way mode: one `BOTH` row per symbol).
pub fn net_from_position_risk(positions: &[Value]) -> BTreeMap<Symbol, Qty> {
    let mut out: BTreeMap<Symbol, Qty> = BTreeMap::new();
    for v in positions {
        let Some(s) = v
            .get("symbol")
            .and_then(Value::as_str)
            .and_then(|s| Symbol::new(s).ok())
        else {
            continue;
        };
        let amt = q(v, "positionAmt");
        if !amt.is_zero() {
            let e = out.entry(s).or_insert(Qty::ZERO);
            *e = Qty::from_units(e.units() + amt.units());
        }
    }
    out
}

/// Start-up rule 4 for every journal-open order the exchange's `open` orders do not list: looked up by client id
/// and closed in the plan with its real state (or as never placed). `false`: one could not be looked up, and new
/// entries must stay halted. Spot and futures alike (the client speaks its market's paths).
pub fn close_stale_on_start(
    client: &super::rest::RestClient,
    rt: &tokio::runtime::Handle,
    open: &[Value],
    ledger: &crate::journal::Ledger,
    symbols: &[Symbol],
    plan: &mut Plan,
) -> bool {
    let mut all = true;
    for cid in stale_orders(open, &ledger.open_orders) {
        let mode = |s| mode_for(&ledger.positions, s);
        match rt.block_on(resolve_stale(client, cid, symbols, mode)) {
            Stale::Found(msgs) => {
                plan.notes.push(format!(
                    "close order {cid} (open in the journal, no longer open on the exchange)"
                ));
                plan.engine.extend(msgs);
            }
            Stale::Missing => {
                plan.notes.push(format!(
                    "close order {cid} (open in the journal, unknown to the exchange: never placed)"
                ));
                if let Some(s) = symbols.first() {
                    plan.engine
                        .extend(close_missing(cid, *s, mode(*s), client.now_ms()));
                }
            }
            Stale::Unknown => {
                all = false;
                tracing::error!(client_id = %cid, "reconcile: could not look up an order the journal holds open; new entries stay halted");
            }
        }
    }
    all
}

/// Cancels the plan's orders (`-2011`, already gone, counts as done). `false`: one could not be cancelled, and
/// new entries must stay halted.
pub fn cancel_planned(
    client: &super::rest::RestClient,
    rt: &tokio::runtime::Handle,
    cancel: &[ToCancel],
) -> bool {
    let mut all = true;
    for c in cancel {
        match rt.block_on(client.cancel_order(&c.symbol, &c.client_id)) {
            Ok(_) | Err(super::rest::RestError::Api { code: -2011, .. }) => {}
            Err(e) => {
                all = false;
                tracing::error!(client_id = %c.client_id, error = %e, "reconcile: could not cancel an unknown order; new entries stay halted");
            }
        }
    }
    all
}

/// Ends start-up reconciliation: the plan's messages go to the engine, then the halt it started with is lifted
/// when everything was done (logging `local and exchange state agree ({summary})`); a read-only start is halted
/// for good instead, and a failure leaves the halt on and alerts (a kill-switch trigger).
pub fn finish_start(
    inbound: &crossbeam_channel::Sender<Inbound>,
    msgs: Vec<Inbound>,
    read_only: bool,
    all_done: bool,
    summary: &str,
) {
    use aegis_shared::event::{AlertKind, HaltReason};
    for m in msgs {
        let _ = inbound.send(m);
    }
    if read_only {
        let _ = inbound.send(Inbound::ReadOnly);
        let _ = inbound.send(Inbound::Halt(HaltReason::KeyRejected));
        let _ = inbound.send(Inbound::Clear(HaltReason::ReconcileMismatch));
    } else if all_done {
        let _ = inbound.send(Inbound::Clear(HaltReason::ReconcileMismatch));
        tracing::info!("reconcile:   local and exchange state agree ({summary})");
    } else {
        let _ = inbound.send(Inbound::Alert(AlertKind::ReconcileMismatch));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pu(sym: &str, mode: StrategyMode, qty: &str) -> PositionUpdate {
        PositionUpdate {
            ts_ms: 1,
            symbol: Symbol::new(sym).unwrap(),
            market: aegis_shared::Market::Futures,
            mode,
            qty: Qty::parse(qty).unwrap(),
            entry_price: Price::from_int(100),
            realized_pnl: Default::default(),
            fees: Default::default(),
            funding: Default::default(),
        }
    }

    #[test]
    fn policy_adopts_known_cancels_unknown_and_takes_exchange_positions() {
        let known = ClientOrderId::new("agabc-1").unwrap();
        let orders = vec![
            json!({"symbol":"BTCUSDT","clientOrderId":"agabc-1","orderId":5,"side":"BUY","type":"LIMIT","price":"50000","origQty":"0.002","executedQty":"0","reduceOnly":false}),
            json!({"symbol":"BTCUSDT","clientOrderId":"agabc-2","orderId":6,"side":"BUY","type":"LIMIT","price":"50000","origQty":"0.002","executedQty":"0"}),
            json!({"symbol":"ETHUSDT","clientOrderId":"manual-1","orderId":7,"side":"SELL","type":"LIMIT","price":"4000","origQty":"0.1","executedQty":"0"}),
        ];
        let positions = vec![
            json!({"symbol":"BTCUSDT","positionAmt":"0.003","entryPrice":"60000.0"}),
            json!({"symbol":"ETHUSDT","positionAmt":"0.000","entryPrice":"0.0"}),
        ];
        let mut jp = BTreeMap::new();
        let j = pu("BTCUSDT", StrategyMode::Swing, "0.001");
        jp.insert((j.symbol, j.mode), j);
        let e = pu("ETHUSDT", StrategyMode::Scalp, "0.5");
        jp.insert((e.symbol, e.mode), e);
        let open: HashSet<_> = [known].into_iter().collect();
        let p = plan(&orders, &positions, &open, &jp, 9);
        let cancelled: Vec<_> = p.cancel.iter().map(|c| c.client_id.as_str()).collect();
        assert_eq!(cancelled, ["agabc-2", "manual-1"]);
        assert!(p.engine.iter().any(|m| matches!(m, Inbound::AdoptOrder { client_id, mode: StrategyMode::Swing, .. } if *client_id == known)));
        let sets: Vec<_> = p
            .engine
            .iter()
            .filter_map(|m| match m {
                Inbound::SetPosition(u) => Some((u.symbol.to_string(), u.mode, u.qty)),
                _ => None,
            })
            .collect();
        assert!(sets.contains(&(
            "BTCUSDT".into(),
            StrategyMode::Swing,
            Qty::parse("0.003").unwrap()
        )));
        assert!(sets.contains(&("ETHUSDT".into(), StrategyMode::Scalp, Qty::ZERO)));
        assert_eq!(p.position_symbols, vec![Symbol::new("BTCUSDT").unwrap()]);
    }

    #[test]
    fn unknown_position_goes_to_the_default_mode() {
        let positions =
            vec![json!({"symbol":"BTCUSDT","positionAmt":"-0.002","entryPrice":"60000"})];
        let p = plan(&[], &positions, &HashSet::new(), &BTreeMap::new(), 1);
        assert_eq!(p.engine.len(), 1);
        assert!(
            matches!(p.engine[0], Inbound::SetPosition(u) if u.mode == ADOPT_DEFAULT_MODE && u.qty.units() == -200_000)
        );
    }

    fn algo(sym: &str, id: &str, side: &str, ty: &str, ro: bool) -> AlgoOrderSeen {
        AlgoOrderSeen::parse(
            &serde_json::json!({"symbol": sym, "clientAlgoId": id, "side": side,
            "orderType": ty, "reduceOnly": ro, "quantity": "0.010", "triggerPrice": "58200.00"}),
        )
        .unwrap()
    }

    #[test]
    fn algo_orders_ours_on_the_closing_side_are_adopted_everything_else_cancelled() {
        let btc = Symbol::new("BTCUSDT").unwrap();
        let net: BTreeMap<Symbol, Qty> = [(btc, Qty::parse("0.01").unwrap())].into();
        let open = [
            algo("BTCUSDT", "aegsl-BTCUSDT-1", "SELL", "STOP_MARKET", true),
            // A second one of ours on the same symbol: only one may protect it.
            algo("BTCUSDT", "aegsl-BTCUSDT-2", "SELL", "STOP_MARKET", true),
            // Wrong side for a long.
            algo("ETHUSDT", "aegsl-ETHUSDT-3", "BUY", "STOP_MARKET", true),
            // Not ours.
            algo("BTCUSDT", "manual-1", "SELL", "STOP_MARKET", true),
            // Ours but not reduce-only.
            algo("BTCUSDT", "aegsl-BTCUSDT-4", "SELL", "STOP_MARKET", false),
        ];
        let plan = algo_plan(&open, &net, &[]);
        assert_eq!(plan.adopt.len(), 1);
        assert_eq!(plan.adopt[&btc].client_algo_id, "aegsl-BTCUSDT-1");
        assert_eq!(
            plan.adopt[&btc].target.trigger,
            Price::parse("58200").unwrap()
        );
        let cancelled: Vec<&str> = plan
            .cancel
            .iter()
            .map(|o| o.client_algo_id.as_str())
            .collect();
        assert_eq!(
            cancelled,
            [
                "aegsl-BTCUSDT-2",
                "aegsl-ETHUSDT-3",
                "manual-1",
                "aegsl-BTCUSDT-4"
            ]
        );
        // A stop the manager already tracks is kept, and covers its symbol.
        let plan = algo_plan(&open[..2], &net, &["aegsl-BTCUSDT-2".to_string()]);
        assert!(plan.adopt.is_empty());
        assert_eq!(plan.cancel.len(), 1);
        assert_eq!(plan.cancel[0].client_algo_id, "aegsl-BTCUSDT-1");
        // Flat: ours is a stray too.
        let plan = algo_plan(&open[..1], &BTreeMap::new(), &[]);
        assert_eq!(plan.cancel.len(), 1);
    }
}
