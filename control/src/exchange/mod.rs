//! The live exchange path of the control plane: Binance USD-M futures (and, through [`spot`], spot) on testnet or
//! production.
//!
//! - [`env`]: endpoints and the key of the selected `TRADING_MODE` (never the other mode's).
//! - [`rest`]: the REST client (signing via `aegis_engine::sign`, clock offset, rate limits, error classes);
//!   [`connect`]: the client and WebSocket TLS roots every start connects with.
//! - [`startup`]: proof that the key works here, `apiRestrictions` in live, exchange filters, leverage.
//! - [`reconcile`]: the reconciliation policy (start-up; also journal-open orders the exchange no longer lists).
//! - [`resync`]: the same comparison after every reconnect of the user data stream or the order gateway;
//!   new entries halt until both sides agree.
//! - [`user_stream`]: listenKey life cycle and `ORDER_TRADE_UPDATE`s; [`spot`]: spot's user data stream
//!   (WebSocket API `userDataStream.subscribe.signature`: `executionReport`s and balances).
//! - [`stops`]: the protective reduce-only stop resting on Binance for every open position (Algo Order API);
//!   [`algo`]: its `clientAlgoId` prefix and shape, which the reconciliation judges too.
//! - [`rest_worker`]: the REST side of order entry (fallback placement, status queries, cancels, clock
//!   resync) for the engine thread, which itself sends orders over the WebSocket API
//!   (`aegis_engine::venue::binance::entry`).
//! - [`gateway`]: the old order gateway thread (WebSocket API with REST fallback off the engine thread), kept
//!   only for the A/B measurement: `AEGIS_ORDER_PATH=gateway` (hidden setting) selects it.
//! - [`paper_market`]: paper fills on Binance's public market data (`FEED=binance`), and the market-data feed
//!   set-up that testnet/live share with it; [`paper_funding`]: the funding such paper positions pay.
//! - [`threads`]: the engine thread of a run and what is stopped after it, in order.
//! - [`spot`]: Binance spot (`MARKETS=spot`) on testnet/live: balances as positions, the user stream over the
//!   spot WebSocket API, resting `STOP_LOSS_LIMIT` stops, and its own start-up ([`spot::start`]), which
//!   [`start_live`] hands a spot configuration to.
//!
//! [`start_live`] wires them: clock → key proof (+ restrictions in live) → user data stream → reconciliation
//! snapshot → exchangeInfo → leverage of every SYMBOLS entry (`POST /fapi/v1/leverage`) → reconciliation
//! actions (with the open algo orders: adopt our stops, cancel strays) → gateway → engine → protective-stop
//! manager (live venue, WebSocket market data: `@bookTicker` and `@aggTrade`, the streams the
//! strategies read; no `@depth`, which nothing reads) → periodic key re-check. Without an API key it starts
//! read-only: market data and dashboard, no orders.

pub mod algo;
pub mod connect;
pub mod env;
pub mod funding;
pub mod gateway;
pub mod keyswitch;
pub mod paper_funding;
pub mod paper_market;
pub mod reconcile;
pub mod rest;
pub mod rest_worker;
pub mod resync;
pub mod spot;
pub mod spot_info;
pub mod startup;
pub mod stops;
pub mod threads;
pub mod trades;
pub mod user_stream;

use crate::engine_link::{EngineStart, RunError, StartContext};
use aegis_engine::venue::binance::{self, Inbound};
use aegis_engine::FeedSource;
use aegis_shared::config::ConfigError;
use aegis_shared::event::HaltReason;
use aegis_shared::TradingMode;
use connect::{client_and_tls, run_err};
use std::collections::HashMap;
use std::time::Duration;

/// Hidden setting: `gateway` sends orders through the old gateway thread instead of the engine thread (for the
/// A/B measurement of `benches/benches/tick_to_wire.rs`; not for trading).
pub const ORDER_PATH_KEY: &str = "AEGIS_ORDER_PATH";

/// The REST client a command uses to read the exchange of `TRADING_MODE` (the URLs, key and extra CA `aegis run`
/// would use); `Err` says what to fix. Paper mode has no exchange.
pub fn command_client(cfg: &aegis_shared::config::Config) -> Result<rest::RestClient, String> {
    let endpoints = env::Endpoints::for_config(cfg).ok_or_else(|| {
        "TRADING_MODE=paper has no exchange to compare with: set TRADING_MODE=testnet or live"
            .to_string()
    })?;
    let creds = env::credentials(cfg).map_err(|e| e.to_string())?;
    client_and_tls(cfg, endpoints, creds)
        .map(|(c, _)| c)
        .map_err(|e| e.to_string())
}

/// Starts the engine on Binance (testnet or live). See the module docs.
pub fn start_live(ctx: StartContext<'_>) -> Result<EngineStart, RunError> {
    tokio::task::block_in_place(|| {
        let rt = tokio::runtime::Handle::current();
        start_inner(ctx, rt)
    })
}

fn start_inner(ctx: StartContext<'_>, rt: tokio::runtime::Handle) -> Result<EngineStart, RunError> {
    let cfg = ctx.config;
    if cfg.market == aegis_shared::Market::Spot {
        return spot::start::start_spot(ctx, rt);
    }
    let (client, feed_tls, read_only) =
        connect::open_exchange(cfg, &rt, aegis_shared::Market::Futures)?;
    rt.block_on(startup::prove(&client, cfg))?;
    rt.block_on(startup::check_account_modes(&client))?;

    let (mut params, _paper_feed) = crate::engine_link::params(&ctx)?;
    let (link, ends) = binance::link();
    // A fleet lease this bot cannot prove halts new entries through the same queue.
    crate::fleet::guard::attach_inbound(ends.inbound.clone());
    // Stop nothing from opening until reconciliation has agreed with the exchange.
    let _ = ends
        .inbound
        .send(Inbound::Halt(HaltReason::ReconcileMismatch));

    let mut user = None;
    let mut plan = reconcile::Plan::default();
    let mut exch_orders = Vec::new();
    let mut exch_positions = Vec::new();
    let slot = std::sync::Arc::new(resync::Slot::default());
    let funding_book = std::sync::Arc::new(std::sync::Mutex::new(funding::FundingBook::new(
        ctx.ledger.funding_seen.clone(),
        ctx.ledger.last_funding_ms,
        client.now_ms(),
    )));
    let algo_inbox = std::sync::Arc::new(algo::AlgoInbox::default());
    if !read_only {
        // The user data stream first, so no update between the snapshot and the stream is lost (the
        // reconciliation's position settings are absolute, so an update seen twice cannot double count).
        user = Some(
            user_stream::start(
                client.clone(),
                rt.clone(),
                ends.inbound.clone(),
                slot.clone(),
                funding_book.clone(),
                algo_inbox.clone(),
            )
            .map_err(|e| run_err(format!("user data stream: {e}")))?,
        );
        // The gap since the last journaled settlement (a restart, an outage): booked once, by tranId.
        funding::sync_logged(&funding_book, &client, &rt, &ends.inbound, "start");
        let orders = rt.block_on(client.open_orders()).map_err(run_err)?;
        let positions = rt.block_on(client.position_risk()).map_err(run_err)?;
        plan = reconcile::plan(
            &orders,
            &positions,
            &ctx.ledger.open_orders,
            &ctx.ledger.positions,
            client.now_ms(),
        );
        exch_orders = orders;
        exch_positions = positions;
    }
    let mut symbols: Vec<_> = params.symbols.iter().map(|s| s.symbol).collect();
    for s in &plan.position_symbols {
        if !symbols.contains(s) {
            tracing::warn!(symbol = %s, "the exchange holds a position in {s}, which is not in SYMBOLS: managing it anyway");
            symbols.push(*s);
        }
    }
    let info = rt.block_on(client.exchange_info()).map_err(run_err)?;
    params.symbols = startup::specs_from_exchange_info(&info, &symbols)
        .map_err(|fix| ConfigError::new("SYMBOLS", None, fix))?;
    // Before any order: the exchange must margin the symbols the bot opens positions in (SYMBOLS) at the
    // leverage the engine assumes. Symbols held only for their exits keep theirs (lowering it could fail on the
    // position and block managing it).
    let leverage = startup::leverage_in_use(&params, cfg.limits.max_leverage);
    if let Err(e) = rt.block_on(startup::set_leverage(
        &client,
        &params.allowlist,
        leverage,
        cfg.limits.max_leverage,
    )) {
        if let Some(u) = &user {
            u.stop();
        }
        return Err(e.into());
    }
    // Journal positions in symbols the exchange does not list cannot be restored into the engine.
    params
        .restored_positions
        .retain(|p| symbols.contains(&p.symbol));

    // Orders the journal holds open that the exchange no longer lists (filled, cancelled or never arrived
    // while the bot was down, e.g. after `kill -9`): looked up by client id and closed with their real state.
    let mut all_cancelled = reconcile::close_stale_on_start(
        &client,
        &rt,
        &exch_orders,
        ctx.ledger,
        &symbols,
        &mut plan,
    );
    if !read_only {
        recover_fills_on_start(
            &client,
            &rt,
            ctx.ledger,
            &symbols,
            (&exch_orders, &exch_positions),
            &funding_book,
            &mut plan,
        );
    }
    for n in &plan.notes {
        tracing::info!("reconcile:   {n}");
    }
    all_cancelled &= reconcile::cancel_planned(&client, &rt, &plan.cancel);
    let mut adopted_stops = std::collections::BTreeMap::new();
    if !read_only {
        match rt.block_on(reconcile_algo(&client, &exch_positions)) {
            Ok(a) => adopted_stops = a,
            Err(e) => {
                all_cancelled = false;
                tracing::error!(error = %e, "reconcile: could not read or cancel the open algo orders; new entries stay halted");
            }
        }
    }
    let summary = format!(
        "{} cancelled, {} adjustments",
        plan.cancel.len(),
        plan.notes.len() - plan.cancel.len()
    );
    reconcile::finish_start(
        &ends.inbound,
        plan.engine,
        read_only,
        all_cancelled,
        &summary,
    );

    // Reconnects from now on re-run the comparison (user data stream and order gateway threads).
    if !read_only {
        if let Some(live) = ctx.live.clone() {
            slot.install(resync::Resync {
                client: client.clone(),
                rt: rt.clone(),
                inbound: ends.inbound.clone(),
                live,
                symbols: symbols.clone(),
                session_prefix: resync::session_prefix(ctx.session_id),
                funding: funding_book.clone(),
            })
            .map_err(|source| RunError::Start {
                what: "the reconciliation thread",
                source,
            })?;
        }
    }
    // Order entry: on the engine thread (default), or the old gateway thread for the A/B measurement.
    let old_path = std::env::var(ORDER_PATH_KEY).is_ok_and(|v| v == "gateway");
    let mut gateway = None;
    let mut rest_worker = None;
    if !read_only {
        let precision = rest_worker::precision_of(&params.symbols).map_err(run_err)?;
        if old_path {
            tracing::warn!("order entry: the old gateway thread ({ORDER_PATH_KEY}=gateway, for measurements only)");
            let g = gateway::start(
                client.clone(),
                rt.clone(),
                ends.clone(),
                precision,
                slot.clone(),
            )
            .map_err(|source| RunError::Start {
                what: "the order gateway thread",
                source,
            })?;
            keyswitch::register(Some(keyswitch::KeySwitch::new(
                keyswitch::Target::Gateway(g.switch.clone()),
                slot.clone(),
                client.clone(),
            )));
            gateway = Some(g);
        } else {
            let (switch_tx, switch_rx) = crossbeam_channel::bounded(1);
            rest_worker = Some(
                rest_worker::attach_entry(
                    &link,
                    &client,
                    &rt,
                    ends.inbound.clone(),
                    precision,
                    slot.clone(),
                    feed_tls.clone(),
                    Some(switch_rx),
                )
                .map_err(|source| RunError::Start {
                    what: "the REST worker thread",
                    source,
                })?,
            );
            keyswitch::register(Some(keyswitch::KeySwitch::new(
                keyswitch::Target::Engine(switch_tx),
                slot.clone(),
                client.clone(),
            )));
        }
    }

    let feed = FeedSource::Ws(paper_market::ws_feed(
        cfg,
        &client,
        params.symbols.iter().map(|s| s.symbol),
        feed_tls,
    ));
    params.live = Some(link);

    let recheck = (cfg.trading_mode == TradingMode::Live && !read_only).then(|| {
        rt.spawn(startup::recheck_key(
            client.clone(),
            cfg.exchange.key_recheck,
            cfg.exchange.allow_unrestricted_ip,
            cfg.market,
            ends.inbound.clone(),
        ))
    });

    let ticks: HashMap<_, _> = params
        .symbols
        .iter()
        .map(|s| (s.symbol, s.filters.tick_size))
        .collect();
    let h = aegis_engine::spawn(params, feed).map_err(|e| RunError::Engine(e.to_string()))?;
    // What the ledger shows once the engine took the plan: the exchange's net sizes, flat where it holds none.
    let mut kept = reconcile::net_from_position_risk(&exch_positions);
    for ((s, _), u) in &ctx.ledger.positions {
        if !u.qty.is_zero() && symbols.contains(s) {
            kept.entry(*s).or_insert(aegis_shared::Qty::ZERO);
        }
    }
    // After the engine: the ledger it feeds is where the manager reads the positions.
    let stops = match (&ctx.live, read_only) {
        (Some(live), false) => {
            let m = stops::Manager::new(
                client.clone(),
                live.clone(),
                ends.inbound.clone(),
                cfg.exchange.stop_loss,
                ticks,
                adopted_stops,
                algo_inbox,
            );
            let l = live.clone();
            Some(rt.spawn(async move {
                // Sized from the ledger: first let it show what reconciliation set (recovered fills, the
                // exchange's sizes), or the first stop would be sized on the journal's old position.
                stops::settle(&l, &kept, "protective stops").await;
                m.run().await
            }))
        }
        _ => None,
    };
    let pinned = crate::engine_link::pin_result(h.pinned, "");
    Ok(EngineStart {
        link: crate::pump::EngineLink {
            events: h.events,
            stats: h.stats,
            commands: h.commands,
        },
        pinned,
        thread: Box::new(
            threads::RunThreads::new(h.join)
                .then(move || {
                    keyswitch::register(None);
                    if let Some(g) = gateway {
                        g.stop(Duration::from_secs(1));
                    }
                    if let Some(w) = rest_worker {
                        rest_worker::wait_ended(w);
                    }
                    if let Some(u) = user {
                        u.stop();
                    }
                })
                .abort(recheck)
                // The stops stay on the exchange: they protect the positions while the bot is down.
                .abort(stops),
        ),
    })
}

/// Fills made while the bot was away (issue 13.3): the trades since the journal's newest one (for a symbol
/// without one: per journal order, and by time after its newest position record, [`trades::since_times`]) are
/// read back from `GET /fapi/v1/userTrades` and put into the start-up plan as fills, before the orders' final
/// states and the position comparison (see [`trades`]). If they cannot be read, the plan stays as it was: the
/// exchange's positions are adopted (corrected) and the error is logged.
fn recover_fills_on_start(
    client: &rest::RestClient,
    rt: &tokio::runtime::Handle,
    ledger: &crate::journal::Ledger,
    symbols: &[aegis_shared::Symbol],
    (orders, positions): (&[serde_json::Value], &[serde_json::Value]),
    funding_book: &funding::SharedFunding,
    plan: &mut reconcile::Plan,
) {
    let journal = trades::JournalView::of(ledger);
    let ids = trades::adopted_ids(&plan.engine);
    let mut syms: Vec<_> = symbols.to_vec();
    for e in journal.open.values() {
        if !syms.contains(&e.symbol) {
            syms.push(e.symbol);
        }
    }
    let from = trades::from_ids(&journal, &syms);
    let since = trades::since_times(
        &ledger.positions,
        ledger.last_session,
        &syms,
        &from,
        client.now_ms(),
    );
    let mut by_order: Vec<_> = ids.keys().copied().collect();
    by_order.extend(
        journal
            .open
            .values()
            .filter_map(|e| e.exchange_id.map(|x| (e.symbol, x))),
    );
    by_order.sort();
    by_order.dedup();
    match rt.block_on(trades::recover(
        client, &from, &since, &by_order, &journal, &ids,
    )) {
        Ok(mut rec) => {
            trades::price_fees(&mut rec.updates, funding_book, client, rt);
            tracing::info!(
                "recovery:    {} fill(s) made while the bot was away recovered from userTrades (GET /fapi/v1/userTrades from trade ids {from:?}, from times {since:?})",
                rec.updates.len()
            );
            for u in &rec.updates {
                tracing::info!(
                    "recovery:    fill {} {:?} {} @ {} of order {} (trade {})",
                    u.symbol,
                    u.side,
                    u.last_qty,
                    u.last_price,
                    u.client_id,
                    u.trade_id
                );
            }
            let moved = trades::positions_after(&ledger.positions, &rec.delta);
            let recomputed = reconcile::plan(
                orders,
                positions,
                &ledger.open_orders,
                &moved,
                client.now_ms(),
            );
            trades::merge_into_plan(plan, &rec, &journal, recomputed);
        }
        Err(e) => tracing::error!(
            error = %e,
            "recovery:    cannot read the fills made while the bot was away; positions are taken from the exchange (corrected), their PnL and fees are not booked"
        ),
    }
}

/// Start-up rule 6 of [`reconcile`]: reads the open algo orders, cancels the strays and returns the stops
/// the manager takes over. An error leaves entries halted (a stray could trigger against a position).
async fn reconcile_algo(
    client: &rest::RestClient,
    positions: &[serde_json::Value],
) -> Result<std::collections::BTreeMap<aegis_shared::Symbol, algo::Resting>, rest::RestError> {
    let open = client.open_algo_orders().await?;
    let seen: Vec<_> = open
        .iter()
        .filter_map(reconcile::AlgoOrderSeen::parse)
        .collect();
    let net = reconcile::net_from_position_risk(positions);
    let plan = reconcile::algo_plan(&seen, &net, &[]);
    for (s, r) in &plan.adopt {
        tracing::info!(symbol = %s, client_algo_id = %r.client_algo_id, "reconcile:   adopt protective stop");
    }
    for o in &plan.cancel {
        tracing::info!(symbol = %o.symbol, client_algo_id = %o.client_algo_id, "reconcile:   cancel algo order (stray: no position, wrong side, a second stop or not ours)");
        match client.cancel_algo(&o.client_algo_id).await {
            Ok(_) | Err(rest::RestError::Api { code: -2011, .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(plan.adopt)
}
