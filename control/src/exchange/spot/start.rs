//! `aegis run` on Binance spot (`MARKETS=spot`, testnet or live): the spot wiring of [`crate::exchange`].
//!
//! Order of start-up (the futures one's, with spot's parts): clock (`GET /api/v3/time`) → key proof
//! (`GET /api/v3/account`: `canTrade`; in live also `apiRestrictions`, which must allow spot) → user data
//! stream over the spot WebSocket API (`userDataStream.subscribe.signature`; there is no spot listenKey any more)
//! → balances and open orders → `GET /api/v3/exchangeInfo` filters → fills made while the bot was away
//! (`GET /api/v3/myTrades`) → the balance reconciliation ([`super::reconcile`]) → order entry on the engine
//! thread over the spot WebSocket API (REST `/api/v3/order` fallback on the REST worker) → engine on spot's
//! market streams → the protective-stop manager (`STOP_LOSS_LIMIT` resting on the exchange) → the balance
//! watcher and the periodic key re-check.
//!
//! Nothing futures-only is called: no leverage, no position or asset mode, no algo orders, no funding.

use super::super::connect::run_err;
use super::super::{paper_market, rest, rest_worker, resync, startup};
use super::user_stream::{self, Balances, SpotAssets, SpotFeePricer, SpotUserStreamConfig};
use super::{reconcile, stops};
use crate::engine_link::{EngineStart, RunError, StartContext};
use aegis_engine::venue::binance::{self, Inbound};
use aegis_engine::FeedSource;
use aegis_shared::config::ConfigError;
use aegis_shared::event::{AlertKind, FeeConversion, HaltReason};
use aegis_shared::{Market, Notional, Symbol, TradingMode};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often the balance watcher compares the held balances with the bot's positions (local data only).
pub const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How long a balance below the bot's position must last, with no open order of the pair, before it counts
/// as sold outside the bot (a sell's balance update can precede its fill's journal write).
pub const SOLD_OUTSIDE_AFTER: Duration = Duration::from_secs(3);

/// BNB (or any non-quote, non-base) fees of the user stream, valued at the asset's current spot price in the
/// pair's quote (`GET /api/v3/ticker/price`, cached for a minute): unvalued (reported) when it cannot be read.
struct TickerPricer {
    client: rest::RestClient,
    rt: tokio::runtime::Handle,
    cache: std::sync::Mutex<HashMap<String, (Notional, std::time::Instant)>>,
}

impl SpotFeePricer for TickerPricer {
    fn price_fee(&self, asset: &str, amount: Notional, quote: &str) -> FeeConversion {
        let pair = format!("{asset}{quote}");
        let cached = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(&pair).copied())
            .filter(|(_, at)| at.elapsed() < Duration::from_secs(60))
            .map(|(p, _)| p);
        let price = match cached {
            Some(p) => Some(p),
            // The user stream's own thread, never a runtime worker: blocking on the runtime is fine here.
            None => self
                .rt
                .block_on(self.client.spot_price(&pair))
                .ok()
                .map(|v| rest::dec(&v, "price"))
                .filter(|p| !p.is_zero()),
        };
        match price {
            Some(p) => {
                if let Ok(mut c) = self.cache.lock() {
                    c.insert(pair, (p, std::time::Instant::now()));
                }
                FeeConversion::convert(amount, aegis_shared::Price::from_units(p.units()))
            }
            None => FeeConversion::Unconvertible,
        }
    }
}

/// How a recovered trade's fee is valued: in the quote asset as it is; in the base asset by the engine (at the
/// fill price); in any other asset (BNB) at its current spot price, since `myTrades` rows are read after the fact.
fn recovered_fee(u: &binance::OrderUpdate, pricer: &TickerPricer) -> FeeConversion {
    let quote = u.symbol.quote_asset().unwrap_or("");
    if u.fee.is_zero()
        || u.fee_asset.as_str() == quote
        || u.symbol.base_asset() == Some(u.fee_asset)
    {
        return FeeConversion::Quote;
    }
    pricer.price_fee(u.fee_asset.as_str(), u.fee, quote)
}

/// Starts the engine on Binance spot (testnet or live). See the module docs.
pub fn start_spot(
    ctx: StartContext<'_>,
    rt: tokio::runtime::Handle,
) -> Result<EngineStart, RunError> {
    let cfg = ctx.config;
    let (client, feed_tls, read_only) =
        super::super::connect::open_exchange(cfg, &rt, Market::Spot)?;
    rt.block_on(startup::prove(&client, cfg))?;

    let (mut params, _paper_feed) = crate::engine_link::params(&ctx)?;
    let (link, ends) = binance::link();
    crate::fleet::guard::attach_inbound(ends.inbound.clone());
    let _ = ends
        .inbound
        .send(Inbound::Halt(HaltReason::ReconcileMismatch));

    let mut symbols: Vec<Symbol> = params.symbols.iter().map(|s| s.symbol).collect();
    let slot = Arc::new(resync::Slot::default());
    let pricer = Arc::new(TickerPricer {
        client: client.clone(),
        rt: rt.clone(),
        cache: Default::default(),
    });
    let balances = Arc::new(Balances::default());
    let mut user = None;
    let mut exch_orders = Vec::new();
    let mut held = reconcile::Held::new();
    if !read_only {
        let Some(c) = client.credentials() else {
            return Err(run_err("the key vanished during start-up"));
        };
        let s2 = slot.clone();
        let pricer = pricer.clone();
        let mut ucfg = SpotUserStreamConfig::new(
            client.endpoints.spot_wsapi.clone(),
            c.api_key.clone(),
            c.signer.clone(),
            Arc::new(rest::ClientClock(client.clone())),
            pricer,
            Arc::new(move |why: &str| {
                tracing::warn!(
                    "user data:   {why}: reconciling with the exchange's balances again"
                );
                s2.wanted.store(true, Ordering::Release);
            }),
        );
        ucfg.assets = assets_of(&symbols);
        ucfg.tls = feed_tls.clone();
        // First, so no execution report between the snapshot and the stream is lost.
        user = Some(
            user_stream::start(ucfg, ends.inbound.clone(), balances.clone())
                .map_err(|e| run_err(format!("spot user data stream: {e}")))?,
        );
        let account = rt.block_on(client.account()).map_err(run_err)?;
        balances.seed(&account);
        held = reconcile::held_of(&balances.snapshot());
        exch_orders = rt.block_on(client.open_orders()).map_err(run_err)?;
    }
    for ((s, _), u) in &ctx.ledger.positions {
        if !u.qty.is_zero() && !symbols.contains(s) {
            tracing::warn!(symbol = %s, "the journal holds a spot position in {s}, which is not in SYMBOLS: managing it anyway");
            symbols.push(*s);
        }
    }
    let info = rt
        .block_on(client.spot_exchange_info(&symbols))
        .map_err(run_err)?;
    let bands = super::super::spot_info::sell_bands(&info, &symbols);
    params.symbols = super::super::spot_info::specs(&info, &symbols)
        .map_err(|e| ConfigError::new("SYMBOLS", None, e.to_string()))?;
    params
        .restored_positions
        .retain(|p| symbols.contains(&p.symbol));

    // Fills while away, then the balances comparison on the journal moved by them.
    let mut plan = crate::exchange::reconcile::Plan::default();
    let mut sold_outside = Vec::new();
    let mut adopted_stops = BTreeMap::new();
    let mut kept = BTreeMap::new();
    let mut all_done = true;
    if !read_only {
        let journal = crate::exchange::trades::JournalView::of(ctx.ledger);
        let mut moved = ctx.ledger.positions.clone();
        match rt.block_on(recover_fills(
            &client,
            &journal,
            &symbols,
            &exch_orders,
            Some(ctx.ledger),
        )) {
            Ok(rec) => {
                tracing::info!(
                    "recovery:    {} spot fill(s) made while the bot was away recovered (GET /api/v3/myTrades)",
                    rec.updates.len()
                );
                moved = crate::exchange::trades::positions_after(&ctx.ledger.positions, &rec.delta);
                for u in &rec.updates {
                    let mut u = *u;
                    u.fee_conv = recovered_fee(&u, &pricer);
                    plan.engine.push(Inbound::Update(u));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "recovery:    cannot read the spot fills made while the bot was away; positions are capped by the balances, their PnL and fees are not booked")
            }
        }
        // Orders the journal holds open that the exchange no longer lists: closed with their real state.
        all_done &= crate::exchange::reconcile::close_stale_on_start(
            &client,
            &rt,
            &exch_orders,
            ctx.ledger,
            &symbols,
            &mut plan,
        );
        let mut sp = reconcile::plan(
            &exch_orders,
            &held,
            &ctx.ledger.open_orders,
            &moved,
            client.now_ms(),
            &|c: &str| c.starts_with(stops::PREFIX),
        );
        // Which of our stops still fit what the bot keeps: adopted; the others go with the strays.
        let sp_stops = stops::reconcile(&exch_orders, &sp.kept, &filters_of(&params.symbols));
        for o in &sp_stops.cancel {
            if o.is_our_stop() && sp.stops_left.contains(&o.client_id) {
                sp.plan.notes.push(format!(
                    "cancel protective stop {} on {} (it no longer fits the position)",
                    o.client_id, o.symbol
                ));
                sp.plan.cancel.push(crate::exchange::reconcile::ToCancel {
                    symbol: o.symbol.to_string(),
                    client_id: o.client_id.clone(),
                    why: "our stop, not fitting the position",
                });
            }
        }
        adopted_stops = sp_stops.adopt;
        kept = sp.kept.clone();
        sold_outside = sp.sold_outside;
        plan.cancel = sp.plan.cancel;
        plan.engine.extend(sp.plan.engine);
        plan.notes.extend(sp.plan.notes);
    }
    for n in &plan.notes {
        tracing::info!("reconcile:   {n}");
    }
    all_done &= crate::exchange::reconcile::cancel_planned(&client, &rt, &plan.cancel);
    let mut msgs = plan.engine;
    if !sold_outside.is_empty() {
        // Not a mismatch (that one is a kill-switch trigger): the balance is the truth and was adopted.
        msgs.push(Inbound::Alert(AlertKind::SoldOutsideBot));
    }
    let summary = format!(
        "{} cancelled, {} pair(s) set down to their balance",
        plan.cancel.len(),
        sold_outside.len()
    );
    crate::exchange::reconcile::finish_start(&ends.inbound, msgs, read_only, all_done, &summary);

    // Order entry on the engine thread over spot's WebSocket API; REST fallback on the REST worker.
    let mut rest_worker = None;
    if !read_only {
        let precision = rest_worker::precision_of(&params.symbols).map_err(run_err)?;
        // No key switch: a running spot bot takes a new key at restart (its user stream signs with the old).
        rest_worker = Some(
            rest_worker::attach_entry(
                &link,
                &client,
                &rt,
                ends.inbound.clone(),
                precision,
                slot.clone(),
                feed_tls.clone(),
                None,
            )
            .map_err(|source| RunError::Start {
                what: "the REST worker thread",
                source,
            })?,
        );
    }

    let feed = FeedSource::Ws(paper_market::ws_feed_at(
        cfg,
        &client.endpoints.spot_stream,
        params.symbols.iter().map(|s| s.symbol),
        feed_tls,
    ));
    params.live = Some(link);
    let filters = filters_of(&params.symbols);
    let h = aegis_engine::spawn(params, feed).map_err(|e| RunError::Engine(e.to_string()))?;

    let mut tasks = Vec::new();
    if let (Some(live), false) = (&ctx.live, read_only) {
        let m = stops::Manager::new(
            client.clone(),
            live.clone(),
            ends.inbound.clone(),
            stops::SpotStopConfig {
                fraction: cfg.exchange.stop_loss,
                ..Default::default()
            },
            filters,
            adopted_stops,
        )
        .with_bands(bands);
        let l = live.clone();
        tasks.push(rt.spawn(async move {
            // Sized from the ledger: first let it show what reconciliation set (recovered fills, positions
            // capped by the balances), or the first stop would be sized on the journal's old holding.
            crate::exchange::stops::settle(&l, &kept, "spot stops").await;
            m.run().await
        }));
        tasks.push(rt.spawn(watch_balances(Round {
            client: client.clone(),
            live: live.clone(),
            balances: balances.clone(),
            slot: slot.clone(),
            inbound: ends.inbound.clone(),
            symbols: symbols.clone(),
            pricer: pricer.clone(),
        })));
        if cfg.trading_mode == TradingMode::Live {
            tasks.push(rt.spawn(startup::recheck_key(
                client.clone(),
                cfg.exchange.key_recheck,
                cfg.exchange.allow_unrestricted_ip,
                Market::Spot,
                ends.inbound.clone(),
            )));
        }
    }
    let pinned = crate::engine_link::pin_result(h.pinned, "");
    Ok(EngineStart {
        link: crate::pump::EngineLink {
            events: h.events,
            stats: h.stats,
            commands: h.commands,
        },
        pinned,
        thread: Box::new(
            super::super::threads::RunThreads::new(h.join).then(move || {
                if let Some(w) = rest_worker {
                    rest_worker::wait_ended(w);
                }
                if let Some(u) = user {
                    u.stop();
                }
                // The resting stops stay on the exchange: they protect the balances while the bot is down.
                for t in tasks {
                    t.abort();
                }
            }),
        ),
    })
}

/// The exchange filters per pair (the stop manager sizes and prices its stops by them).
fn filters_of(
    specs: &[aegis_engine::SymbolSpec],
) -> HashMap<Symbol, aegis_engine::risk::limits::SymbolFilters> {
    specs.iter().map(|s| (s.symbol, s.filters)).collect()
}

/// The base and quote asset of every pair (the user stream values fees by them).
fn assets_of(symbols: &[Symbol]) -> BTreeMap<Symbol, SpotAssets> {
    symbols
        .iter()
        .filter_map(|s| {
            Some((
                *s,
                SpotAssets {
                    base: s.base_asset()?.to_string(),
                    quote: s.quote_asset()?.to_string(),
                },
            ))
        })
        .collect()
}

/// Fills of the journal's orders made while the bot was away: per pair from the journal's newest trade id,
/// per order for pairs without one (`GET /api/v3/myTrades`), and at start (`at_start`: the replayed journal)
/// by time for those pairs too ([`crate::exchange::trades::since_times`]), booked like the stream would have.
async fn recover_fills(
    client: &rest::RestClient,
    journal: &crate::exchange::trades::JournalView,
    symbols: &[Symbol],
    open: &[serde_json::Value],
    at_start: Option<&crate::journal::Ledger>,
) -> Result<crate::exchange::trades::Recovered, crate::exchange::trades::TradesError> {
    use crate::exchange::trades;
    let mut syms = symbols.to_vec();
    for e in journal.open.values() {
        if !syms.contains(&e.symbol) {
            syms.push(e.symbol);
        }
    }
    let from = trades::from_ids(journal, &syms);
    let since = at_start
        .map(|l| trades::since_times(&l.positions, l.last_session, &syms, &from, client.now_ms()))
        .unwrap_or_default();
    let mut ids = HashMap::new();
    for o in open {
        if let Some(Inbound::AdoptOrder {
            symbol,
            client_id,
            exchange_id,
            ..
        }) = crate::exchange::reconcile::adopt_msg(o, binance::ADOPT_DEFAULT_MODE)
        {
            if journal.open.contains_key(&client_id) {
                ids.insert((symbol, exchange_id), client_id);
            }
        }
    }
    let mut by_order: Vec<_> = ids.keys().copied().collect();
    by_order.extend(
        journal
            .open
            .values()
            .filter_map(|e| e.exchange_id.map(|x| (e.symbol, x))),
    );
    by_order.sort();
    by_order.dedup();
    trades::recover(client, &from, &since, &by_order, journal, &ids).await
}

/// What a reconciliation round while running needs.
struct Round {
    client: rest::RestClient,
    live: Arc<crate::state::Live>,
    balances: Arc<Balances>,
    slot: Arc<resync::Slot>,
    inbound: crossbeam_channel::Sender<Inbound>,
    symbols: Vec<Symbol>,
    pricer: Arc<TickerPricer>,
}

/// A journal-open order younger than this is left to the engine's own unknown-outcome handling in a running
/// round: it may still be on its way to the exchange, and closing it as never placed would orphan it.
pub const IN_FLIGHT_MS: u64 = 10_000;

/// Runs the reconciliation rounds while the bot runs: when asked (the user stream resubscribed or reconnected,
/// the REST worker gave an order up) and when a pair's held balance (the user stream's
/// `outboundAccountPosition`s) stays below the bot's position for [`SOLD_OUTSIDE_AFTER`] with no open order of
/// the pair. Local data only between rounds: no request per check.
async fn watch_balances(r: Round) {
    let mut since: BTreeMap<Symbol, std::time::Instant> = BTreeMap::new();
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let mut due = r.slot.wanted.swap(false, Ordering::AcqRel);
        let (positions, busy) = {
            let v = r.live.view();
            let mut p: BTreeMap<Symbol, i64> = BTreeMap::new();
            for ((s, _), u) in &v.ledger.positions {
                *p.entry(*s).or_default() += u.qty.units();
            }
            let busy: Vec<Symbol> = v
                .ledger
                .open_order_events
                .values()
                .map(|e| e.symbol)
                .collect();
            (p, busy)
        };
        for (s, q) in positions {
            let Some(base) = s.base_asset() else { continue };
            let short = q > 0 && r.balances.held(base.as_str()).units() < q && !busy.contains(&s);
            if !short {
                since.remove(&s);
                continue;
            }
            let t = *since.entry(s).or_insert_with(std::time::Instant::now);
            if t.elapsed() >= SOLD_OUTSIDE_AFTER {
                due = true;
            }
        }
        if due {
            if !resync_round(&r).await {
                r.slot.wanted.store(true, Ordering::Release);
            }
            since.clear();
        }
    }
}

/// One reconciliation round while running: entries halt; balances and open orders are read again; the fills a
/// stream gap lost are recovered from `myTrades` and orders that closed in it are closed with their real state;
/// positions above their balance are set down (alert `sold_outside_bot`), strays cancelled; entries resume.
/// `false`: the exchange could not be read, entries stay halted and the round is to be tried again.
async fn resync_round(r: &Round) -> bool {
    let (client, inbound) = (&r.client, &r.inbound);
    let _ = inbound.send(Inbound::Halt(HaltReason::ReconcileMismatch));
    let read = async {
        let account = client.account().await?;
        let orders = client.open_orders().await?;
        Ok::<_, rest::RestError>((account, orders))
    };
    let (account, orders) = match read.await {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "reconcile:   cannot read the spot balances; new entries stay halted, trying again");
            return false;
        }
    };
    r.balances.seed(&account);
    let (journal, positions, open) = {
        let v = r.live.view();
        (
            crate::exchange::trades::JournalView::of(&v.ledger),
            v.ledger.positions.clone(),
            v.ledger.open_orders.clone(),
        )
    };
    let mut moved = positions.clone();
    // While running, the engine knows every order of this session: no read by time.
    match recover_fills(client, &journal, &r.symbols, &orders, None).await {
        Ok(rec) => {
            if !rec.updates.is_empty() {
                tracing::info!(
                    "recovery:    {} spot fill(s) the user stream missed recovered (GET /api/v3/myTrades)",
                    rec.updates.len()
                );
            }
            moved = crate::exchange::trades::positions_after(&positions, &rec.delta);
            for u in &rec.updates {
                let mut u = *u;
                // A runtime worker: pricing may block on a request.
                u.fee_conv = tokio::task::block_in_place(|| recovered_fee(&u, &r.pricer));
                let _ = inbound.send(Inbound::Update(u));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "recovery:    cannot read the spot fills the user stream missed; positions are capped by the balances")
        }
    }
    let now = client.now_ms();
    for cid in crate::exchange::reconcile::stale_orders(&orders, &open) {
        if journal
            .open
            .get(&cid)
            .is_some_and(|e| now.saturating_sub(e.ts_ms) < IN_FLIGHT_MS)
        {
            continue;
        }
        let mode = |s| crate::exchange::reconcile::mode_for(&positions, s);
        match crate::exchange::reconcile::resolve_stale(client, cid, &r.symbols, mode).await {
            // The engine tracks the order already: only its final state is news.
            crate::exchange::reconcile::Stale::Found(msgs) => {
                for m in msgs {
                    if matches!(m, Inbound::Update(_)) {
                        let _ = inbound.send(m);
                    }
                }
            }
            crate::exchange::reconcile::Stale::Missing => {
                let _ = inbound.send(Inbound::Rejected {
                    client_id: cid,
                    code: -2013,
                    ts_ms: now,
                });
            }
            crate::exchange::reconcile::Stale::Unknown => {
                tracing::warn!(client_id = %cid, "reconcile:   could not look up an order the journal holds open; the next round tries again");
            }
        }
    }
    let sp = reconcile::plan(
        &orders,
        &reconcile::held_of(&r.balances.snapshot()),
        &open,
        &moved,
        now,
        &|c: &str| c.starts_with(stops::PREFIX),
    );
    for n in &sp.plan.notes {
        tracing::info!("reconcile:   {n}");
    }
    let mut ok = true;
    for c in &sp.plan.cancel {
        match client.cancel_order(&c.symbol, &c.client_id).await {
            Ok(_) | Err(rest::RestError::Api { code: -2011, .. }) => {}
            Err(e) => {
                ok = false;
                tracing::error!(client_id = %c.client_id, error = %e, "reconcile: could not cancel a spot order; new entries stay halted");
            }
        }
    }
    // Positions only: adoptions of open orders are for start-up (the engine already tracks its own).
    for m in sp.plan.engine {
        if matches!(m, Inbound::SetPosition(_)) {
            let _ = inbound.send(m);
        }
    }
    if !sp.sold_outside.is_empty() {
        for s in &sp.sold_outside {
            tracing::error!(symbol = %s, "spot: the account holds less {s} base asset than the bot's position: sold outside the bot; position set to the balance");
        }
        let _ = inbound.send(Inbound::Alert(AlertKind::SoldOutsideBot));
    }
    if ok {
        let _ = inbound.send(Inbound::Clear(HaltReason::ReconcileMismatch));
    } else {
        // A spot order we cannot cancel could trade against the books: the futures rule, a kill-switch trigger.
        let _ = inbound.send(Inbound::Alert(AlertKind::ReconcileMismatch));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_split_each_pair() {
        let a = assets_of(&[
            Symbol::new("ETHBTC").unwrap(),
            Symbol::new("BTCUSDT").unwrap(),
        ]);
        assert_eq!(a[&Symbol::new("ETHBTC").unwrap()].base, "ETH");
        assert_eq!(a[&Symbol::new("ETHBTC").unwrap()].quote, "BTC");
        assert_eq!(a[&Symbol::new("BTCUSDT").unwrap()].quote, "USDT");
    }
}
