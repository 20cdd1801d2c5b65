//! Protective stops resting on Binance spot (`MARKETS=spot`): for every spot position the bot holds, exactly one
//! `STOP_LOSS_LIMIT` SELL GTC of ours, so the holding is protected when the bot cannot act (killed, crashed,
//! disconnected). Modelled on the futures manager ([`super::super::stops`]), with spot's differences:
//!
//! - Source: the ledger's spot positions (`PositionUpdate.market == Spot`), summed per symbol with the
//!   quantity-weighted entry ([`held_positions`]); polled every [`TICK`] on the control runtime.
//! - Shape ([`target`]): quantity = the held quantity floored to the step; `stopPrice` = the futures manager's
//!   long trigger ([`super::super::stops::trigger_price`]: `entry − ⌈entry × EXCHANGE_STOP_LOSS⌉` down to the
//!   tick); limit `price` a slippage ([`DEFAULT_SLIPPAGE`], 0.5 %) below the stop, down to the tick, so the sell
//!   still fills in a fast fall (a limit at the stop would rest unfilled below the market).
//! - PERCENT_PRICE_BY_SIDE ([`fit_limit`]): a limit outside the pair's SELL band around the average price
//!   (`GET /api/v3/avgPrice`, read when placing; the bands are exchangeInfo's at start) is moved to the band's
//!   edge, as long as that edge is not above the stop; otherwise (the market is so far above the stop that the
//!   band excludes it) nothing is sent and the symbol is reported unprotected, with the band in the reason. A
//!   stop of the wanted quantity and stop price is kept whatever its limit (the limit follows from the stop
//!   and, when it was placed, the band), so a moving average never moves a resting stop; `/api/health` shows
//!   the limit it rests with.
//! - A quantity that floors to zero is nothing to protect (what a fee leaves below the step). Below `minQty`, or
//!   a notional at the limit price below `NOTIONAL`/`MIN_NOTIONAL`, the stop cannot rest: logged once and
//!   `protective_stop_failed` raised once per episode; `/api/health` lists the symbol as unprotected.
//! - Ids: `newClientOrderId` = [`PREFIX`]`<symbol>-<n>`, `n` fixed per target so a retry after a timeout reuses it
//!   and Binance's duplicate check (`-2010 Duplicate order sent.`) means the earlier attempt landed.
//! - Move (quantity or entry changed): cancel the old stop, then place the new one. Unlike futures' reduce-only
//!   algo orders, a spot sell locks the base asset it would sell, so the new stop cannot be placed while the old
//!   one holds the balance.
//! - Flat: cancel it. A cancel answered `-2011 Unknown order sent.` means the stop is gone already (it filled,
//!   or the engine's exit cancel-replaced it): it is dropped.
//! - The engine is told after every placement ([`Inbound::SpotStop`] with the id) and every cancel (`None`): its
//!   exit must cancel-replace the stop, whose lock would otherwise refuse the exit sell.
//! - Audit every [`AUDIT_EVERY`] (`GET /api/v3/openOrders?symbol=` per symbol with a stop): a stop the exchange
//!   no longer lists (filled, cancelled by hand) is dropped and placed again if the position is still open.
//! - Start-up: [`reconcile`] sorts `GET /api/v3/openOrders` into our stops to adopt and everything else to
//!   cancel.
//! - Kill switch: our stops are cancelled and none is placed until the engine runs again, as on futures.

use super::super::rest::{Base, RestClient, RestError};
use super::super::stops::{net_positions, trigger_price};
use crate::state::Live;
use aegis_engine::risk::limits::SymbolFilters;
use aegis_engine::venue::binance::Inbound;
use aegis_shared::event::{AlertKind, EngineState, HaltReason, PositionUpdate};
use aegis_shared::num::{Notional, Price, Qty, Rate, SCALE};
use aegis_shared::{ClientOrderId, Market, StrategyMode, Symbol};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Prefix of our stops' client order ids. Not `ag…`: those are the engine's own orders
/// (`ClientOrderId::is_ours`), and the stop's fill must not pass for one.
pub const PREFIX: &str = "aegss-";
/// Default distance of the limit price below the stop price: 0.5 %.
pub const DEFAULT_SLIPPAGE: Rate = Rate::from_units(500_000);
/// How often the ledger is compared with the resting stops.
pub const TICK: Duration = Duration::from_millis(500);
/// How often the open orders of the symbols with a stop are read (6 weight per symbol on spot).
pub const AUDIT_EVERY: Duration = Duration::from_secs(10);
use super::super::stops::Retries;
/// Retries back off as the futures manager's do ([`super::super::stops::Retries`]).
pub use super::super::stops::{BACKOFF_MAX, BACKOFF_MIN};

/// One stop as it should rest (or rests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpotTarget {
    /// Quantity to sell (on the step).
    pub qty: Qty,
    /// `stopPrice` (on the tick).
    pub stop: Price,
    /// Limit `price` (on the tick, below the stop).
    pub limit: Price,
}

/// A stop of ours on the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotResting {
    /// Its client order id ([`PREFIX`]…).
    pub client_id: String,
    /// What it protects: the target it was placed for (adopted: as listed).
    pub target: SpotTarget,
    /// The limit price it rests with: the target's, or fitted into the pair's band when placed ([`fit_limit`]).
    pub sent_limit: Price,
}

/// Why a held position cannot have a stop resting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unrestable {
    /// The floored quantity is below `LOT_SIZE.minQty`.
    #[error("quantity {qty} is below the symbol's minimum quantity {min}")]
    BelowMinQty {
        /// The floored quantity.
        qty: Qty,
        /// `minQty`.
        min: Qty,
    },
    /// The stop's notional at its limit price is below `NOTIONAL`/`MIN_NOTIONAL`.
    #[error("the stop's notional {notional} is below the symbol's minimum notional {min}")]
    BelowMinNotional {
        /// Limit price × quantity.
        notional: Notional,
        /// `minNotional`.
        min: Notional,
    },
}

/// The stop settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpotStopConfig {
    /// `EXCHANGE_STOP_LOSS` (zero: the default, 3 %).
    pub fraction: Rate,
    /// Limit price below the stop price ([`DEFAULT_SLIPPAGE`]).
    pub slippage: Rate,
}

impl Default for SpotStopConfig {
    fn default() -> Self {
        Self {
            fraction: aegis_shared::config::DEFAULT_EXCHANGE_STOP_LOSS,
            slippage: DEFAULT_SLIPPAGE,
        }
    }
}

/// `qty` floored to `step` (a zero step leaves it as is).
pub fn floor_qty(qty: Qty, step: Qty) -> Qty {
    if step.units() <= 0 {
        return qty;
    }
    qty.floor_to(step)
}

/// The limit price `slippage` below `stop`, down to the tick (a sell's limit rounds down, so it is never closer
/// to the stop than asked), at least one tick.
pub fn limit_price(stop: Price, slippage: Rate, tick: Price) -> Price {
    let s = stop.units() as i128;
    // ⌈stop × slippage⌉ in price units.
    let off = (s * slippage.units() as i128 + SCALE as i128 - 1) / SCALE as i128;
    let raw = (s - off).max(0);
    let t = tick.units().max(1) as i128;
    Price::from_units(((raw / t) * t).max(t).min(i64::MAX as i128) as i64)
}

/// The stop's limit cannot be fitted into the pair's price band (see [`fit_limit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("PERCENT_PRICE_BY_SIDE lets a sell rest at {low} at the lowest now ({down} x the average price {avg}), above the stop price {stop}: no stop this far below the market can rest; the engine's own stop still exits, and the stop is tried again")]
pub struct OutOfBand {
    /// The band's lowest price (on the tick).
    pub low: Price,
    /// The band's lower multiplier.
    pub down: Rate,
    /// The average price it was computed from.
    pub avg: Price,
    /// The stop price.
    pub stop: Price,
}

/// The limit price `t` can be placed with now, given the pair's SELL `band` around the average price `avg`:
/// its own limit when that lies in the band; above the band, the band's highest price (a lower sell limit fills
/// at least as surely); below it, the band's lowest price, while that is not above the stop (a stop-limit whose
/// limit lay above its stop would rest unfilled once triggered). Band edges round inwards to the tick.
pub fn fit_limit(
    t: &SpotTarget,
    band: super::super::spot_info::PriceBand,
    avg: Price,
    tick: Price,
) -> Result<Price, OutOfBand> {
    let tick = Price::from_units(tick.units().max(1));
    let a = Notional::from_units(avg.units());
    let low = Price::from_units(a.mul_rate(band.down).units()).ceil_to(tick);
    let high = Price::from_units(a.mul_rate(band.up).units()).floor_to(tick);
    let out = OutOfBand {
        low,
        down: band.down,
        avg,
        stop: t.stop,
    };
    if low > high {
        return Err(out);
    }
    if t.limit > high {
        Ok(high)
    } else if t.limit >= low {
        Ok(t.limit)
    } else if low <= t.stop {
        Ok(low)
    } else {
        Err(out)
    }
}

/// The stop a held spot position of `held` at `entry` needs: `Ok(None)` when nothing is left to protect
/// (flat, or less than one step).
pub fn target(
    held: Qty,
    entry: Price,
    cfg: SpotStopConfig,
    filters: &SymbolFilters,
) -> Result<Option<SpotTarget>, Unrestable> {
    if held.units() <= 0 || entry.units() <= 0 {
        return Ok(None);
    }
    let qty = floor_qty(held, filters.step_size);
    if qty.is_zero() {
        return Ok(None);
    }
    if qty < filters.min_qty {
        return Err(Unrestable::BelowMinQty {
            qty,
            min: filters.min_qty,
        });
    }
    let fraction = if cfg.fraction.is_zero() {
        aegis_shared::config::DEFAULT_EXCHANGE_STOP_LOSS
    } else {
        cfg.fraction
    };
    let stop = trigger_price(entry, true, fraction, filters.tick_size);
    let limit = limit_price(stop, cfg.slippage, filters.tick_size);
    // Binance checks a limit order's notional at its limit price.
    let notional = limit.notional(qty);
    if notional < filters.min_notional {
        return Err(Unrestable::BelowMinNotional {
            notional,
            min: filters.min_notional,
        });
    }
    Ok(Some(SpotTarget { qty, stop, limit }))
}

/// Held quantity and entry per symbol from the ledger: spot positions only, summed over the modes, entry
/// weighted by quantity (flat symbols left out).
pub fn held_positions(
    positions: &BTreeMap<(Symbol, StrategyMode), PositionUpdate>,
) -> BTreeMap<Symbol, (Qty, Price)> {
    let spot: BTreeMap<(Symbol, StrategyMode), PositionUpdate> = positions
        .iter()
        .filter(|(_, p)| p.market == Market::Spot)
        .map(|(k, p)| (*k, *p))
        .collect();
    // Spot is long only; a negative net would be a ledger error, and there is nothing to sell for it.
    net_positions(&spot)
        .into_iter()
        .filter(|(_, (q, _))| q.units() > 0)
        .collect()
}

/// One open spot order as `GET /api/v3/openOrders` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSpotOrder {
    /// `symbol`.
    pub symbol: Symbol,
    /// `orderId`.
    pub order_id: u64,
    /// `clientOrderId`.
    pub client_id: String,
    /// `side` is SELL.
    pub sell: bool,
    /// `type`.
    pub kind: String,
    /// `origQty − executedQty`.
    pub remaining: Qty,
    /// `stopPrice`.
    pub stop: Price,
    /// `price`.
    pub price: Price,
}

impl OpenSpotOrder {
    /// Parses one entry (`None` for what is not an order).
    pub fn parse(v: &Value) -> Option<Self> {
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        let q = |k: &str| s(k).and_then(|x| Qty::parse(x).ok());
        let p = |k: &str| s(k).and_then(|x| Price::parse(x).ok());
        Some(Self {
            symbol: Symbol::new(s("symbol")?).ok()?,
            order_id: v.get("orderId")?.as_u64()?,
            client_id: s("clientOrderId")?.to_string(),
            sell: s("side")? == "SELL",
            kind: s("type")?.to_string(),
            remaining: q("origQty")? - q("executedQty").unwrap_or(Qty::ZERO),
            stop: p("stopPrice").unwrap_or(Price::ZERO),
            price: p("price").unwrap_or(Price::ZERO),
        })
    }

    /// One of our protective stops (prefix, type and side).
    pub fn is_our_stop(&self) -> bool {
        self.client_id.starts_with(PREFIX) && self.sell && self.kind == "STOP_LOSS_LIMIT"
    }
}

/// What the start-up reconciliation does with the open spot orders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpotStopPlan {
    /// Our stop per held symbol whose quantity fits the holding: kept and managed.
    pub adopt: BTreeMap<Symbol, SpotResting>,
    /// Every other open order: ours that do not fit, a second stop of a symbol, strays, orders not ours.
    pub cancel: Vec<OpenSpotOrder>,
}

/// Sorts the open spot orders (`open`: `GET /api/v3/openOrders`) given the held quantity per symbol: per
/// symbol the first of our stops whose remaining quantity is the holding floored to the symbol's step (the
/// exact holding without filters) is adopted; everything else is to be cancelled. At start-up no order of the
/// engine is open yet, so an order that is not ours is a stray.
pub fn reconcile(
    open: &[Value],
    held: &BTreeMap<Symbol, Qty>,
    filters: &HashMap<Symbol, SymbolFilters>,
) -> SpotStopPlan {
    let mut plan = SpotStopPlan::default();
    for v in open {
        let Some(o) = OpenSpotOrder::parse(v) else {
            tracing::warn!(
                "spot reconciliation: an open order that does not parse is left alone: {v}"
            );
            continue;
        };
        let fits = o.is_our_stop()
            && !plan.adopt.contains_key(&o.symbol)
            && held.get(&o.symbol).is_some_and(|h| {
                let step = filters
                    .get(&o.symbol)
                    .map(|f| f.step_size)
                    .unwrap_or(Qty::ZERO);
                let want = floor_qty(*h, step);
                !want.is_zero() && o.remaining == want
            });
        if fits {
            plan.adopt.insert(
                o.symbol,
                SpotResting {
                    client_id: o.client_id.clone(),
                    target: SpotTarget {
                        qty: o.remaining,
                        stop: o.stop,
                        limit: o.price,
                    },
                    sent_limit: o.price,
                },
            );
        } else {
            plan.cancel.push(o);
        }
    }
    plan
}

/// Why one step of the manager failed for a symbol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpotStopError {
    /// Placing the stop failed.
    #[error("placing {client_id} failed: {source}")]
    Place {
        /// The stop's id.
        client_id: String,
        /// Binance's answer.
        source: RestError,
    },
    /// Cancelling the stop failed.
    #[error("cancelling {client_id} failed: {source}")]
    Cancel {
        /// The stop's id.
        client_id: String,
        /// Binance's answer.
        source: RestError,
    },
    /// The position cannot have a stop.
    #[error("no stop can rest: {0}")]
    Unrestable(Unrestable),
    /// No limit price the exchange would take now protects the position.
    #[error("no stop can rest now: {0}")]
    OutOfBand(OutOfBand),
}

/// The spot stop manager (one task on the control runtime).
pub struct Manager {
    client: RestClient,
    live: Arc<Live>,
    inbound: crossbeam_channel::Sender<Inbound>,
    cfg: SpotStopConfig,
    filters: HashMap<Symbol, SymbolFilters>,
    /// Each pair's SELL price band (PERCENT_PRICE_BY_SIDE), where exchangeInfo gives one.
    bands: HashMap<Symbol, super::super::spot_info::PriceBand>,
    resting: BTreeMap<Symbol, SpotResting>,
    /// The id each symbol's next placement uses (kept across retries of the same target).
    pending: BTreeMap<Symbol, (SpotTarget, String)>,
    retry_at: Retries,
    /// Symbols whose failure has been alerted in this episode.
    alerted: BTreeSet<Symbol>,
    /// Symbols the ledger has shown holding since the start (an adopted stop survives until the reconciled
    /// position reaches the ledger).
    seen_open: BTreeSet<Symbol>,
    killed: bool,
    seq: u64,
    last_audit: Option<Instant>,
}

impl Manager {
    /// A manager for the symbols in `filters`, starting with the stops the start-up reconciliation adopted
    /// (the engine is told of them at once). `client` is put on spot's paths.
    pub fn new(
        client: RestClient,
        live: Arc<Live>,
        inbound: crossbeam_channel::Sender<Inbound>,
        cfg: SpotStopConfig,
        filters: HashMap<Symbol, SymbolFilters>,
        adopted: BTreeMap<Symbol, SpotResting>,
    ) -> Self {
        live.stops.set(|v| v.active = true);
        let mut m = Self {
            client: client.on_market(Market::Spot),
            live,
            inbound,
            cfg,
            filters,
            bands: HashMap::new(),
            resting: BTreeMap::new(),
            pending: BTreeMap::new(),
            retry_at: Retries::default(),
            alerted: BTreeSet::new(),
            seen_open: BTreeSet::new(),
            killed: false,
            // Ids of this run start at the wall clock, so they never repeat an earlier run's.
            seq: super::super::rest::wall_ms(),
            last_audit: None,
        };
        for (s, r) in adopted {
            m.tell(s, Some(&r.client_id));
            m.resting.insert(s, r);
        }
        m
    }

    /// Fits the stops' limit prices into these SELL bands ([`super::super::spot_info::sell_bands`]).
    pub fn with_bands(
        mut self,
        bands: HashMap<Symbol, super::super::spot_info::PriceBand>,
    ) -> Self {
        self.bands = bands;
        self
    }

    /// The stops resting now, by symbol.
    pub fn resting(&self) -> &BTreeMap<Symbol, SpotResting> {
        &self.resting
    }

    /// Runs until the task is aborted.
    pub async fn run(mut self) {
        loop {
            self.step().await;
            tokio::time::sleep(TICK).await;
        }
    }

    fn desired(
        &self,
    ) -> (
        BTreeMap<Symbol, Result<SpotTarget, Unrestable>>,
        Option<EngineState>,
    ) {
        let v = self.live.view();
        let held = held_positions(&v.ledger.positions);
        let state = v.engine_state;
        drop(v);
        let mut out = BTreeMap::new();
        for (s, (q, e)) in held {
            let Some(f) = self.filters.get(&s) else {
                // A symbol we have no filters for is not traded by this run: nothing to size a stop with.
                continue;
            };
            match target(q, e, self.cfg, f) {
                Ok(Some(t)) => {
                    out.insert(s, Ok(t));
                }
                Ok(None) => {}
                Err(u) => {
                    out.insert(s, Err(u));
                }
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
        if killed {
            self.killed = true;
            self.cancel_all_ours().await;
            self.live
                .stops
                .paused_by_kill(want.keys().map(|s| s.to_string()));
            return;
        }
        self.killed = false;
        self.seen_open.extend(want.keys().copied());
        if self.last_audit.is_none_or(|t| t.elapsed() >= AUDIT_EVERY) {
            self.last_audit = Some(Instant::now());
            self.audit().await;
        }
        let mut symbols: BTreeSet<Symbol> = want.keys().copied().collect();
        symbols.extend(self.resting.keys().copied());
        for s in symbols {
            if self.retry_at.waiting(s) {
                continue;
            }
            let r = self.converge(s, want.get(&s).copied()).await;
            self.record(s, r);
        }
        self.publish(&want);
    }

    fn tell(&self, symbol: Symbol, client_id: Option<&str>) {
        let client_id = client_id.and_then(|c| ClientOrderId::new(c).ok());
        let _ = self.inbound.send(Inbound::SpotStop { symbol, client_id });
    }

    fn record(&mut self, s: Symbol, r: Result<(), SpotStopError>) {
        match r {
            Ok(()) => {
                self.retry_at.succeeded(s);
                self.alerted.remove(&s);
            }
            Err(e) => {
                // An unrestable position is re-judged every tick (the ledger may change it), not retried.
                let delay = if matches!(e, SpotStopError::Unrestable(_)) {
                    Duration::ZERO
                } else {
                    self.retry_at.failed(s)
                };
                // Once per episode: an alert and an error line, not one per tick.
                if self.alerted.insert(s) {
                    let _ = self
                        .inbound
                        .send(Inbound::Alert(AlertKind::ProtectiveStopFailed));
                    tracing::error!(symbol = %s, retry_in_ms = delay.as_millis() as u64, "spot protective stop: {e}");
                } else {
                    tracing::debug!(symbol = %s, "spot protective stop: {e}");
                }
                let why = e.to_string();
                self.live.stops.set(|v| {
                    v.unprotected.insert(s.to_string(), why);
                });
            }
        }
    }

    fn publish(&self, want: &BTreeMap<Symbol, Result<SpotTarget, Unrestable>>) {
        let resting: BTreeMap<String, Value> = self
            .resting
            .iter()
            .map(|(s, r)| {
                (
                    s.to_string(),
                    json!({"client_order_id": r.client_id, "side": "SELL", "type": "STOP_LOSS_LIMIT",
                           "quantity": r.target.qty.to_string(), "stop_price": r.target.stop.to_string(),
                           "price": r.sent_limit.to_string()}),
                )
            })
            .collect();
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

    /// Brings one symbol's stop to `want`.
    async fn converge(
        &mut self,
        s: Symbol,
        want: Option<Result<SpotTarget, Unrestable>>,
    ) -> Result<(), SpotStopError> {
        let have = self.resting.get(&s).cloned();
        match (want, have) {
            (None, None) => {
                self.pending.remove(&s);
                Ok(())
            }
            // Not seen holding yet: the ledger may not hold the reconciled position yet.
            (None, Some(_)) if !self.seen_open.contains(&s) => Ok(()),
            (None, Some(old)) => {
                self.drop_stop(s, &old).await?;
                tracing::info!(symbol = %s, client_order_id = %old.client_id, "spot protective stop cancelled: position is flat");
                Ok(())
            }
            (Some(Err(u)), have) => {
                // Whatever rests is for another quantity; it would only lock the balance.
                if let Some(old) = have {
                    self.drop_stop(s, &old).await?;
                }
                Err(SpotStopError::Unrestable(u))
            }
            // Same quantity and stop: it protects as wanted. The limit follows from the stop (and the band, when
            // it was placed), so a stop adopted with a fitted limit is not moved for it.
            (Some(Ok(t)), Some(old)) if old.target.qty == t.qty && old.target.stop == t.stop => {
                Ok(())
            }
            (Some(Ok(t)), old) => {
                // The old stop locks the base asset: it goes first (see the module docs).
                if let Some(old) = old {
                    self.drop_stop(s, &old).await?;
                }
                let id = match self.pending.get(&s) {
                    Some((pt, id)) if *pt == t => id.clone(),
                    _ => {
                        let id = self.next_id(s);
                        self.pending.insert(s, (t, id.clone()));
                        id
                    }
                };
                let sent_limit = self.place(s, t, &id).await?;
                self.pending.remove(&s);
                tracing::info!(symbol = %s, client_order_id = %id, qty = %t.qty, stop = %t.stop, price = %t.limit, "spot protective stop resting on the exchange");
                self.tell(s, Some(&id));
                self.resting.insert(
                    s,
                    SpotResting {
                        client_id: id,
                        target: t,
                        sent_limit,
                    },
                );
                Ok(())
            }
        }
    }

    /// Cancels a resting stop (gone already counts as done), forgets it and tells the engine.
    async fn drop_stop(&mut self, s: Symbol, old: &SpotResting) -> Result<(), SpotStopError> {
        match self.client.cancel_order(s.as_str(), &old.client_id).await {
            // -2011: already gone (filled, or cancel-replaced by the engine's exit): what we wanted.
            Ok(_) | Err(RestError::Api { code: -2011, .. }) => {}
            Err(source) => {
                return Err(SpotStopError::Cancel {
                    client_id: old.client_id.clone(),
                    source,
                })
            }
        }
        self.resting.remove(&s);
        self.tell(s, None);
        Ok(())
    }

    /// The limit `t` is placed with: fitted into the pair's band around the average price read now. Without a
    /// band, or when the average cannot be read, the target's own (Binance's -1013 then decides).
    async fn limit_now(&self, s: Symbol, t: &SpotTarget) -> Result<Price, SpotStopError> {
        let (Some(band), Some(f)) = (self.bands.get(&s), self.filters.get(&s)) else {
            return Ok(t.limit);
        };
        let avg = self
            .client
            .spot_avg_price(s.as_str())
            .await
            .map_err(|e| e.to_string())
            .and_then(|v| {
                v.get("price")
                    .and_then(Value::as_str)
                    .and_then(|p| Price::parse(p).ok())
                    .filter(|p| p.units() > 0)
                    .ok_or_else(|| format!("no price in {v}"))
            });
        let avg = match avg {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(symbol = %s, "spot protective stop: the average price could not be read ({e}); the limit is sent unchecked against PERCENT_PRICE_BY_SIDE");
                return Ok(t.limit);
            }
        };
        let limit = fit_limit(t, *band, avg, f.tick_size).map_err(SpotStopError::OutOfBand)?;
        if limit != t.limit {
            tracing::info!(symbol = %s, stop = %t.stop, limit = %t.limit, fitted = %limit, avg = %avg, "spot protective stop: limit moved into the PERCENT_PRICE_BY_SIDE band");
        }
        Ok(limit)
    }

    /// Places the stop; the limit price it was sent with.
    async fn place(&self, s: Symbol, t: SpotTarget, id: &str) -> Result<Price, SpotStopError> {
        let limit = self.limit_now(s, &t).await?;
        let params = [
            ("symbol", s.as_str().to_string()),
            ("side", "SELL".to_string()),
            ("type", "STOP_LOSS_LIMIT".to_string()),
            ("timeInForce", "GTC".to_string()),
            ("quantity", t.qty.to_string()),
            ("stopPrice", t.stop.to_string()),
            ("price", limit.to_string()),
            ("newClientOrderId", id.to_string()),
            ("newOrderRespType", "ACK".to_string()),
        ];
        match self.client.spot_order(&params).await {
            Ok(_) => Ok(limit),
            // Our own id already open: an earlier attempt whose answer was lost landed.
            Err(RestError::Api {
                code: -2010, msg, ..
            }) if msg == "Duplicate order sent." => Ok(limit),
            Err(source) => Err(SpotStopError::Place {
                client_id: id.to_string(),
                source,
            }),
        }
    }

    /// Kill switch: cancels every stop of ours still resting (one that fails stays listed and is tried again
    /// next tick).
    async fn cancel_all_ours(&mut self) {
        let ours: Vec<(Symbol, SpotResting)> =
            self.resting.iter().map(|(s, r)| (*s, r.clone())).collect();
        for (s, r) in ours {
            match self.drop_stop(s, &r).await {
                Ok(()) => {
                    tracing::warn!(symbol = %s, client_order_id = %r.client_id, "kill switch: spot protective stop cancelled")
                }
                Err(e) => tracing::error!(symbol = %s, "kill switch: {e}; retrying"),
            }
        }
        self.pending.clear();
    }

    /// Drops the stops the exchange no longer lists (see the module docs).
    async fn audit(&mut self) {
        let symbols: Vec<Symbol> = self.resting.keys().copied().collect();
        for s in symbols {
            let params = [("symbol", s.as_str().to_string())];
            let open = match self
                .client
                .get_signed(Base::Spot, "/api/v3/openOrders", &params)
                .await
            {
                Ok(v) => v.as_array().cloned().unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(symbol = %s, "spot protective stops: reading openOrders failed, the next audit retries: {e}");
                    continue;
                }
            };
            let Some(r) = self.resting.get(&s) else {
                continue;
            };
            let listed = open
                .iter()
                .filter_map(OpenSpotOrder::parse)
                .any(|o| o.client_id == r.client_id);
            if !listed {
                tracing::warn!(symbol = %s, client_order_id = %r.client_id, "spot protective stop no longer on the exchange (filled or cancelled): placing again if the position is open");
                self.resting.remove(&s);
                self.tell(s, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{JournalStats, Ledger};
    use crate::state::RunInfo;
    use aegis_shared::TradingMode;

    fn p(s: &str) -> Price {
        Price::parse(s).unwrap()
    }
    fn q(s: &str) -> Qty {
        Qty::parse(s).unwrap()
    }
    fn btc() -> Symbol {
        Symbol::new("BTCUSDT").unwrap()
    }
    /// BTCUSDT spot: tick 0.01, step 0.00001, min qty 0.00001, min notional 5.
    fn filters() -> SymbolFilters {
        aegis_engine::SymbolSpec::btcusdt_spot().filters
    }
    fn pu(sym: &str, mode: StrategyMode, market: Market, qty: &str, entry: &str) -> PositionUpdate {
        PositionUpdate {
            ts_ms: 1,
            symbol: Symbol::new(sym).unwrap(),
            market,
            mode,
            qty: q(qty),
            entry_price: p(entry),
            realized_pnl: Default::default(),
            fees: Default::default(),
            funding: Default::default(),
        }
    }

    #[test]
    fn quantity_floors_to_the_step_and_the_limit_lies_the_slippage_below_on_the_tick() {
        assert_eq!(floor_qty(q("0.0099901"), q("0.00001")), q("0.00999"));
        assert_eq!(floor_qty(q("0.000009"), q("0.00001")), Qty::ZERO);
        assert_eq!(floor_qty(q("0.123"), Qty::ZERO), q("0.123"));
        // 58200 × 0.5 % = 291.
        assert_eq!(
            limit_price(p("58200"), DEFAULT_SLIPPAGE, p("0.01")),
            p("57909")
        );
        // 59170 × 0.5 % = 295.85 → 58874.15, down to the tick 1 → 58874 (a sell's limit rounds down).
        assert_eq!(
            limit_price(p("59170"), DEFAULT_SLIPPAGE, p("1")),
            p("58874")
        );
        // Never zero.
        assert_eq!(
            limit_price(p("0.01"), Rate::parse("0.5").unwrap(), p("0.01")),
            p("0.01")
        );
    }

    #[test]
    fn a_limit_is_fitted_into_the_band_inwards_on_the_tick_and_never_above_the_stop() {
        use super::super::super::spot_info::PriceBand;
        let band = |d: &str, u: &str| PriceBand {
            down: Rate::parse(d).unwrap(),
            up: Rate::parse(u).unwrap(),
        };
        let t = SpotTarget {
            qty: q("0.01"),
            stop: p("58200"),
            limit: p("57909"),
        };
        let tick = p("0.01");
        // Inside: its own.
        assert_eq!(
            fit_limit(&t, band("0.2", "5"), p("60000"), tick),
            Ok(p("57909"))
        );
        // Below: the low edge, rounded up to the tick (60000.03 × 0.9675 = 58050.029025 → 58050.03).
        assert_eq!(
            fit_limit(&t, band("0.9675", "5"), p("60000.03"), tick),
            Ok(p("58050.03"))
        );
        // The edge exactly at the stop still protects.
        assert_eq!(
            fit_limit(&t, band("0.97", "5"), p("60000"), tick),
            Ok(p("58200"))
        );
        // Above the stop: nothing to send.
        let e = fit_limit(&t, band("0.98", "5"), p("60000"), tick).unwrap_err();
        assert_eq!((e.low, e.stop), (p("58800"), p("58200")));
        // Above the band (the average fell below the limit's reach): the high edge, rounded down.
        assert_eq!(
            fit_limit(&t, band("0.2", "1.05"), p("55000.01"), tick),
            Ok(p("57750.01"))
        );
        // A band narrower than a tick holds no price.
        assert!(fit_limit(&t, band("1", "1"), p("58000.005"), tick).is_err());
    }

    #[test]
    fn target_follows_the_stop_loss_and_refuses_what_cannot_rest() {
        let cfg = SpotStopConfig::default();
        let t = target(q("0.0099901"), p("60000"), cfg, &filters())
            .unwrap()
            .unwrap();
        // 3 % below 60000, then 0.5 % below that.
        assert_eq!(
            t,
            SpotTarget {
                qty: q("0.00999"),
                stop: p("58200"),
                limit: p("57909")
            }
        );
        // A configured stop loss: 10 % → 54000, limit 53730.
        let ten = SpotStopConfig {
            fraction: Rate::parse("0.1").unwrap(),
            ..cfg
        };
        let t = target(q("0.01"), p("60000"), ten, &filters())
            .unwrap()
            .unwrap();
        assert_eq!((t.stop, t.limit), (p("54000"), p("53730")));
        // Less than a step: nothing to protect.
        assert_eq!(target(q("0.000009"), p("60000"), cfg, &filters()), Ok(None));
        assert_eq!(target(Qty::ZERO, p("60000"), cfg, &filters()), Ok(None));
        // 0.00008 × 57909 = 4.63 < 5.
        assert!(matches!(
            target(q("0.00008"), p("60000"), cfg, &filters()),
            Err(Unrestable::BelowMinNotional { .. })
        ));
        let mut f = filters();
        f.min_qty = q("0.001");
        assert_eq!(
            target(q("0.0005"), p("60000"), cfg, &f),
            Err(Unrestable::BelowMinQty {
                qty: q("0.0005"),
                min: q("0.001")
            })
        );
    }

    #[test]
    fn held_positions_are_the_spot_ones_summed_over_the_modes() {
        let mut m = BTreeMap::new();
        for u in [
            pu(
                "BTCUSDT",
                StrategyMode::Scalp,
                Market::Spot,
                "0.01",
                "60000",
            ),
            pu(
                "BTCUSDT",
                StrategyMode::Swing,
                Market::Spot,
                "0.03",
                "62000",
            ),
            pu(
                "ETHUSDT",
                StrategyMode::Scalp,
                Market::Futures,
                "0.5",
                "3000",
            ),
            pu("BNBUSDT", StrategyMode::Scalp, Market::Spot, "0", "600"),
        ] {
            m.insert((u.symbol, u.mode), u);
        }
        let h = held_positions(&m);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h[&btc()], (q("0.04"), p("61500")));
    }

    fn open(sym: &str, id: u64, cid: &str, side: &str, ty: &str, qty: &str, done: &str) -> Value {
        json!({"symbol": sym, "orderId": id, "clientOrderId": cid, "side": side, "type": ty,
               "origQty": qty, "executedQty": done, "stopPrice": "58200.00000000", "price": "57909.00000000",
               "status": "NEW"})
    }

    #[test]
    fn reconcile_adopts_one_fitting_stop_per_symbol_and_cancels_the_rest() {
        let eth = Symbol::new("ETHUSDT").unwrap();
        let orders = vec![
            // Ours, fits 0.0099901 floored: adopted.
            open(
                "BTCUSDT",
                1,
                "aegss-BTCUSDT-1",
                "SELL",
                "STOP_LOSS_LIMIT",
                "0.00999000",
                "0",
            ),
            // A second stop of ours on the same symbol.
            open(
                "BTCUSDT",
                2,
                "aegss-BTCUSDT-2",
                "SELL",
                "STOP_LOSS_LIMIT",
                "0.00999000",
                "0",
            ),
            // Ours, but for a quantity not held.
            open(
                "ETHUSDT",
                3,
                "aegss-ETHUSDT-3",
                "SELL",
                "STOP_LOSS_LIMIT",
                "1.00000000",
                "0",
            ),
            // Not ours (an engine order, a manual one), our prefix on another type, a symbol not held.
            open("BTCUSDT", 4, "ag1-2-3", "BUY", "LIMIT", "0.01000000", "0"),
            open("BTCUSDT", 5, "web_abc", "SELL", "LIMIT", "0.01000000", "0"),
            open(
                "BTCUSDT",
                6,
                "aegss-BTCUSDT-6",
                "SELL",
                "LIMIT",
                "0.00999000",
                "0",
            ),
            open(
                "BNBUSDT",
                7,
                "aegss-BNBUSDT-7",
                "SELL",
                "STOP_LOSS_LIMIT",
                "1.00000000",
                "0",
            ),
            json!({"not": "an order"}),
        ];
        let held = BTreeMap::from([(btc(), q("0.0099901")), (eth, q("0.5"))]);
        let f = HashMap::from([(btc(), filters())]);
        let plan = reconcile(&orders, &held, &f);
        assert_eq!(plan.adopt.len(), 1);
        let a = &plan.adopt[&btc()];
        assert_eq!(a.client_id, "aegss-BTCUSDT-1");
        assert_eq!(
            a.target,
            SpotTarget {
                qty: q("0.00999"),
                stop: p("58200"),
                limit: p("57909")
            }
        );
        let cancel: Vec<u64> = plan.cancel.iter().map(|o| o.order_id).collect();
        assert_eq!(cancel, vec![2, 3, 4, 5, 6, 7]);
        // A partly filled stop (triggered) fits by what remains.
        let part = vec![open(
            "BTCUSDT",
            8,
            "aegss-BTCUSDT-8",
            "SELL",
            "STOP_LOSS_LIMIT",
            "0.02",
            "0.01001",
        )];
        let held = BTreeMap::from([(btc(), q("0.009995"))]);
        assert_eq!(
            reconcile(&part, &held, &f).adopt[&btc()].target.qty,
            q("0.00999")
        );
    }

    // --- Against binance-sim's spot REST ---

    use aegis_testkit::sim::client::AdminCall;
    use aegis_testkit::sim::keys::{KeyEntry, KeysFile, Permissions};
    use aegis_testkit::sim::{start, SimConfig, SimHandle, SourceKind};

    const KEY: &str = "Sp0tSt0pSp0tSt0pSp0tSt0pSp0tSt0pSp0tSt0pSp0tSt0pSp0tSt0pSp0tSt0p";
    const SECRET: &str = "spot-stop-secret";

    async fn sim() -> SimHandle {
        let keys = KeysFile {
            keys: vec![KeyEntry {
                api_key: KEY.into(),
                account: Some("erin".into()),
                secret: Some(SECRET.into()),
                ed25519_public_key: None,
                permissions: Permissions {
                    reading: true,
                    futures: false,
                    spot: true,
                    withdrawals: false,
                },
                ip_restrict: false,
                allowed_ips: vec![],
            }],
            accounts: vec![],
        };
        start(SimConfig {
            source: SourceKind::Frozen,
            tick_ms: 50,
            keys,
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts")
    }

    fn client(h: &SimHandle) -> RestClient {
        let base = h.base_url();
        let ws = h.ws_url();
        let endpoints = super::super::super::env::Endpoints {
            name: "testnet",
            fapi: base.clone(),
            fstream: ws.clone(),
            wsapi: format!("{ws}/ws-fapi/v1"),
            sapi: None,
            spot: base,
            spot_stream: format!("{ws}/spot"),
            spot_wsapi: format!("{ws}/ws-api/v3"),
            overridden: true,
        };
        let creds = super::super::super::env::Credentials {
            api_key: aegis_engine::sign::ApiKey::new(aegis_shared::Secret::new(KEY.to_string()))
                .unwrap(),
            signer: aegis_engine::sign::Signer::from_secret(&aegis_shared::Secret::new(
                SECRET.to_string(),
            ))
            .unwrap(),
            source: "test",
        };
        RestClient::new(endpoints, Some(creds))
            .unwrap()
            .on_market(Market::Spot)
    }

    fn live() -> Arc<Live> {
        Live::new(
            Ledger::default(),
            Arc::new(JournalStats::default()),
            RunInfo {
                trading_mode: TradingMode::Testnet,
                environment: "testnet",
                feed: "binance".into(),
                database_configured: false,
                session_id: 7,
                symbols: vec!["BTCUSDT".into()],
            },
        )
    }

    fn hold(live: &Live, qty: &str, entry: &str) {
        let u = pu("BTCUSDT", StrategyMode::Scalp, Market::Spot, qty, entry);
        live.view().ledger.positions.insert((u.symbol, u.mode), u);
    }

    /// BTCUSDT's filters as the bot reads them from the simulator's spot exchangeInfo, and the info itself.
    async fn btc_filters(c: &RestClient) -> (Value, HashMap<Symbol, SymbolFilters>) {
        let info = c.exchange_info().await.unwrap();
        let spec = super::super::super::spot_info::specs(&info, &[btc()]).unwrap();
        (info, HashMap::from([(btc(), spec[0].filters)]))
    }

    /// A manager of BTCUSDT on the simulator starting with `adopted`, and what it tells the engine.
    fn manager(
        h: &SimHandle,
        live: &Arc<Live>,
        filters: &HashMap<Symbol, SymbolFilters>,
        adopted: BTreeMap<Symbol, SpotResting>,
    ) -> (Manager, crossbeam_channel::Receiver<Inbound>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let m = Manager::new(
            client(h),
            live.clone(),
            tx,
            SpotStopConfig::default(),
            filters.clone(),
            adopted,
        );
        (m, rx)
    }

    async fn admin(h: &SimHandle, c: AdminCall) -> Value {
        h.admin().call(c).await.unwrap()
    }

    /// The simulator's open orders and (free, locked) BTC of the account.
    async fn book(h: &SimHandle) -> (Vec<Value>, (String, String)) {
        let a = admin(h, AdminCall::spot_account("erin")).await;
        let btc = a["balances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["asset"] == "BTC")
            .map(|b| {
                (
                    b["free"].as_str().unwrap().to_string(),
                    b["locked"].as_str().unwrap().to_string(),
                )
            })
            .unwrap_or_default();
        (a["openOrders"].as_array().cloned().unwrap_or_default(), btc)
    }

    fn spot_stops(rx: &crossbeam_channel::Receiver<Inbound>) -> Vec<Option<String>> {
        rx.try_iter()
            .filter_map(|i| match i {
                Inbound::SpotStop { client_id, .. } => {
                    Some(client_id.map(|c| c.as_str().to_string()))
                }
                _ => None,
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_stop_rests_moves_goes_when_flat_and_triggers_on_the_sim() {
        let h = sim().await;
        admin(&h, AdminCall::spot_price("BTCUSDT", "60000", None, None)).await;
        let (_, filters) = btc_filters(&client(&h)).await;
        let live = live();
        let (mut m, rx) = manager(&h, &live, &filters, BTreeMap::new());

        // Nothing held: nothing placed.
        m.step().await;
        assert!(book(&h).await.0.is_empty());

        // A position appears (0.01 BTC bought at 60000): one stop, 0.01 at 58200, limit 57909, BTC locked.
        admin(&h, AdminCall::spot_balances("erin", json!({"BTC": "0.01"}))).await;
        hold(&live, "0.01", "60000");
        m.step().await;
        let (open, btc_bal) = book(&h).await;
        assert_eq!(open.len(), 1, "{open:?}");
        let o = &open[0];
        assert_eq!(
            (
                o["type"].as_str(),
                o["side"].as_str(),
                o["timeInForce"].as_str()
            ),
            (Some("STOP_LOSS_LIMIT"), Some("SELL"), Some("GTC"))
        );
        assert_eq!(
            (
                o["origQty"].as_str(),
                o["stopPrice"].as_str(),
                o["price"].as_str()
            ),
            (
                Some("0.01000000"),
                Some("58200.00000000"),
                Some("57909.00000000")
            )
        );
        let first = o["clientOrderId"].as_str().unwrap().to_string();
        assert!(first.starts_with("aegss-BTCUSDT-"), "{first}");
        assert_eq!(btc_bal, ("0.00000000".into(), "0.01000000".into()));
        assert_eq!(spot_stops(&rx), vec![Some(first.clone())]);
        // Unchanged: nothing sent.
        m.step().await;
        assert!(spot_stops(&rx).is_empty());
        assert_eq!(book(&h).await.0.len(), 1);

        // The holding grows to 0.02 at 61000: the old stop goes, the new one rests (61000 × 0.97 = 59170).
        admin(&h, AdminCall::spot_balances("erin", json!({"BTC": "0.01"}))).await;
        hold(&live, "0.02", "61000");
        m.step().await;
        let (open, btc_bal) = book(&h).await;
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!(
            (
                open[0]["origQty"].as_str(),
                open[0]["stopPrice"].as_str(),
                open[0]["price"].as_str()
            ),
            (
                Some("0.02000000"),
                Some("59170.00000000"),
                Some("58874.15000000")
            )
        );
        let second = open[0]["clientOrderId"].as_str().unwrap().to_string();
        assert_ne!(second, first);
        assert_eq!(btc_bal, ("0.00000000".into(), "0.02000000".into()));
        assert_eq!(spot_stops(&rx), vec![None, Some(second.clone())]);

        // Flat: cancelled, the BTC free again, the engine told.
        hold(&live, "0", "0");
        m.step().await;
        let (open, btc_bal) = book(&h).await;
        assert!(open.is_empty(), "{open:?}");
        assert_eq!(btc_bal, ("0.02000000".into(), "0.00000000".into()));
        assert_eq!(spot_stops(&rx), vec![None]);
        assert!(m.resting().is_empty());

        // Held again; the price falls through the stop: it triggers and sells the BTC at the bid.
        hold(&live, "0.02", "61000");
        m.step().await;
        assert_eq!(book(&h).await.0.len(), 1);
        let usdt_before = usdt(&h).await;
        admin(&h, AdminCall::spot_price("BTCUSDT", "59000", None, None)).await;
        let (open, btc_bal) = book(&h).await;
        assert!(open.is_empty(), "{open:?}");
        assert_eq!(btc_bal, ("0.00000000".into(), "0.00000000".into()));
        // 0.02 × 59000 = 1180, less 0.1 %.
        assert_eq!(
            usdt(&h).await - usdt_before,
            Notional::parse("1178.82").unwrap()
        );
        // The ledger learns the sale; the audit sees the stop gone and drops it without cancelling.
        let _ = spot_stops(&rx);
        hold(&live, "0", "0");
        m.last_audit = None;
        m.step().await;
        assert!(m.resting().is_empty());
        assert_eq!(spot_stops(&rx), vec![None]);

        // A holding too small to rest a stop (0.00008 × 57909 < 5): one alert over several ticks, listed as
        // unprotected.
        hold(&live, "0.00008", "60000");
        m.step().await;
        m.step().await;
        let alerts = rx
            .try_iter()
            .filter(|i| matches!(i, Inbound::Alert(AlertKind::ProtectiveStopFailed)))
            .count();
        assert_eq!(alerts, 1);
        assert!(live.stops.unprotected().contains_key("BTCUSDT"));
        assert!(book(&h).await.0.is_empty());
        h.shutdown().await;
    }

    /// PERCENT_PRICE_BY_SIDE on the wire: with a tight band the stop's own limit would be refused (-1013), so the
    /// manager fits it to the band's low edge; a band above the stop itself leaves the pair unprotected with the
    /// band in the reason and sends nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_limit_below_the_price_band_rests_at_its_edge_or_not_at_all() {
        let h = sim().await;
        admin(&h, AdminCall::spot_price("BTCUSDT", "60000", None, None)).await;
        // Sells may rest from 60000 × 0.9675 = 58050 up: the 0.01 at 60000 stop (58200, limit 57909) lies below.
        admin(
            &h,
            AdminCall::spot_percent_price("BTCUSDT", "0.9675", "1.5"),
        )
        .await;
        let c = client(&h);
        let (info, filters) = btc_filters(&c).await;
        let bands = super::super::super::spot_info::sell_bands(&info, &[btc()]);
        assert_eq!(
            bands[&btc()],
            super::super::super::spot_info::PriceBand {
                down: Rate::parse("0.9675").unwrap(),
                up: Rate::parse("1.5").unwrap()
            }
        );
        // The simulator refuses the unfitted limit: what the manager must not send.
        let refused = c
            .spot_order(&[
                ("symbol", "BTCUSDT".to_string()),
                ("side", "SELL".to_string()),
                ("type", "STOP_LOSS_LIMIT".to_string()),
                ("timeInForce", "GTC".to_string()),
                ("quantity", "0.01".to_string()),
                ("stopPrice", "58200".to_string()),
                ("price", "57909".to_string()),
            ])
            .await;
        assert!(
            matches!(&refused, Err(RestError::Api { code: -1013, .. })),
            "{refused:?}"
        );
        let live = live();
        let (m, rx) = manager(&h, &live, &filters, BTreeMap::new());
        let mut m = m.with_bands(bands);
        admin(&h, AdminCall::spot_balances("erin", json!({"BTC": "0.02"}))).await;
        hold(&live, "0.01", "60000");
        m.step().await;
        let (open, _) = book(&h).await;
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!(
            (open[0]["stopPrice"].as_str(), open[0]["price"].as_str()),
            (Some("58200.00000000"), Some("58050.00000000"))
        );
        assert!(live.stops.unprotected().is_empty());
        // A restarted manager adopts the fitted stop (its listed limit differs from the target's) and keeps it.
        let (open, _) = book(&h).await;
        let held = BTreeMap::from([(btc(), q("0.01"))]);
        let plan = reconcile(&open, &held, &filters);
        assert!(plan.cancel.is_empty(), "{:?}", plan.cancel);
        let (mut again, rx2) = manager(&h, &live, &filters, plan.adopt);
        let _ = spot_stops(&rx2);
        again.step().await;
        assert!(spot_stops(&rx2).is_empty(), "nothing cancelled or placed");
        assert_eq!(
            book(&h).await.0[0]["clientOrderId"],
            open[0]["clientOrderId"]
        );
        drop(again);
        // The target keeps its own limit: a later average moves nothing.
        assert_eq!(m.resting()[&btc()].target.limit, p("57909"));
        assert_eq!(m.resting()[&btc()].sent_limit, p("58050"));
        assert_eq!(
            live.stops.json().unwrap()["resting"]["BTCUSDT"]["price"],
            "58050",
            "health shows what rests"
        );
        admin(&h, AdminCall::spot_price("BTCUSDT", "60500", None, None)).await;
        let _ = spot_stops(&rx);
        m.step().await;
        assert!(spot_stops(&rx).is_empty());
        assert_eq!(book(&h).await.0.len(), 1);

        // The market rallies to 62000 and the holding grows to 0.02 at 61000 (stop 59170), while sells may rest
        // only from 62000 × 0.9675 = 59985 up: the old stop goes (it locks the coins), nothing new is sent, the
        // reason names the band.
        admin(&h, AdminCall::spot_price("BTCUSDT", "62000", None, None)).await;
        hold(&live, "0.02", "61000");
        m.step().await;
        assert!(book(&h).await.0.is_empty());
        let why = live.stops.unprotected()["BTCUSDT"].clone();
        assert!(
            why.contains("PERCENT_PRICE_BY_SIDE") && why.contains("59985") && why.contains("59170"),
            "{why}"
        );
        let alerts = rx
            .try_iter()
            .filter(|i| matches!(i, Inbound::Alert(AlertKind::ProtectiveStopFailed)))
            .count();
        assert_eq!(alerts, 1);
        h.shutdown().await;
    }

    async fn usdt(h: &SimHandle) -> Notional {
        let a = admin(h, AdminCall::spot_account("erin")).await;
        let free = a["balances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["asset"] == "USDT")
            .map(|b| b["free"].as_str().unwrap().to_string())
            .unwrap();
        Notional::parse(&free).unwrap()
    }
}
