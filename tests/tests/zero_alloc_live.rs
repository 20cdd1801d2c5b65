//! Zero allocation on the bot's live path, against binance-sim over TCP and over TLS: this thread is the engine
//! thread of `TRADING_MODE=testnet|live`. It reads the simulator's combined market streams (the streams the
//! bot subscribes to: `@bookTicker` and `@aggTrade`, two symbols) through the production [`WsFeed`] (mio,
//! `wss://` record layer), runs them through parse → book → all four modes → risk → the live venue
//! ([`LiveVenue`]: orders out on its queue, acknowledgements and fills back in and applied to positions), and
//! encodes every order the engine decides as the WebSocket-API requests that carry it (`order.place` logged on
//! and signed, and the `order.status` that settles an unknown outcome) and reads the answers that come back
//! (an acknowledgement with its `rateLimits`, a -2013 refusal) with the order path's answer parser.
//!
//! The exchange side of the venue's queues is a stand-in thread (like the control plane's order gateway, it is
//! not the engine thread, so its allocations do not count: the counter is per thread). It acknowledges every
//! order and fills it at once, so positions open and close and exits fire during the measured run.
//!
//! In the running bot the requests are still written, and the answers read, by the order gateway thread (order
//! entry has not moved onto the engine thread yet); this proves the encoding and the parsing it will do there
//! allocate nothing.
//!
//! [`WsFeed`]: aegis_engine::net::ws_feed::WsFeed
//! [`LiveVenue`]: aegis_engine::venue::binance::LiveVenue

use aegis_engine::feed::FeedPoll;
use aegis_engine::net::ws_feed::{TlsOverride, WsFeed, WsFeedConfig};
use aegis_engine::risk::breaker::BreakerConfig;
use aegis_engine::risk::limits::LimitsConfig;
use aegis_engine::sign::{
    ApiKey, CancelRef, CancelRequest, HmacSigner, OrderEncoder, OrderRequest, RespType, Signer,
    WirePrecision,
};
use aegis_engine::strategy::{
    position::PositionParams, scalp::ScalpParams, swing::SwingParams, ultra_fast::UltraFastParams,
};
use aegis_engine::venue::binance::{answer, link, GatewayEnds, Inbound, OrderUpdate, Outbound};
use aegis_engine::{Engine, EngineParams, SymbolSpec};
use aegis_shared::event::{OrderStatus, OrderType};
use aegis_shared::num::Rate;
use aegis_shared::{EngineEvent, Notional, Secret, Symbol};
use aegis_testkit::sim::{start, SimConfig, SimTls, SourceKind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// The engine's zero-allocation tests' counting allocator, shared rather than written again.
#[path = "../../engine/tests/alloc_support/mod.rs"]
mod alloc_support;
use alloc_support::{allocs, Counting};

#[global_allocator]
static A: Counting = Counting;

/// The exchange side of the live venue's queues: every placement is acknowledged and filled in full at its
/// price (the reference price for market orders), every cancel confirmed. Counts fills.
fn exchange_stand_in(
    ends: GatewayEnds,
    stop: Arc<AtomicBool>,
    fills: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut open = std::collections::HashMap::new();
        let mut oid = 0u64;
        let usdt = Symbol::new("USDT").unwrap();
        while !stop.load(Ordering::Acquire) {
            let Ok(m) = ends.outbound.recv_timeout(Duration::from_millis(5)) else {
                continue;
            };
            oid += 1;
            let ts_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            match m {
                Outbound::Place { req, client_id } => {
                    let _ = ends.inbound.send(Inbound::Ack {
                        client_id,
                        exchange_id: oid,
                        ts_ms,
                    });
                    let px = if req.order_type == OrderType::Limit {
                        req.price
                    } else {
                        req.ref_price
                    };
                    open.insert(client_id, ());
                    let _ = ends.inbound.send(Inbound::Update(OrderUpdate {
                        ts_ms,
                        symbol: req.symbol,
                        client_id,
                        exchange_id: oid,
                        side: req.side,
                        order_type: req.order_type,
                        status: OrderStatus::Filled,
                        price: req.price,
                        orig_qty: req.qty,
                        last_qty: req.qty,
                        last_price: px,
                        cum_qty: req.qty,
                        fee: Notional::ZERO,
                        fee_asset: usdt,
                        fee_conv: aegis_shared::event::FeeConversion::Quote,
                        trade_id: oid,
                        maker: false,
                        reduce_only: req.reduce_only,
                    }));
                    open.remove(&client_id);
                    fills.fetch_add(1, Ordering::Relaxed);
                }
                // Everything is filled at once: a cancel finds nothing open (Binance's -2011 needs no answer).
                Outbound::Cancel { .. } => {}
            }
        }
    })
}

/// What the WebSocket API answers: an acknowledgement with the rate limits it reports, and a status query's
/// "no such order".
const ACK: &[u8] = br#"{"id":12,"status":200,"result":{"orderId":325078477,"symbol":"BTCUSDT","status":"NEW","clientOrderId":"ag1-12","price":"0","avgPrice":"0.00","origQty":"0.003","executedQty":"0","cumQty":"0","cumQuote":"0","timeInForce":"GTC","type":"MARKET","reduceOnly":false,"closePosition":false,"side":"BUY","positionSide":"BOTH","stopPrice":"0","workingType":"CONTRACT_PRICE","priceProtect":false,"origType":"MARKET","updateTime":1700000000000},"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400,"count":3},{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":300,"count":1},{"rateLimitType":"ORDERS","interval":"MINUTE","intervalNum":1,"limit":1200,"count":1}]}"#;
const ABSENT: &[u8] = br#"{"id":13,"status":400,"error":{"code":-2013,"msg":"Order does not exist."},"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400,"count":4}]}"#;

#[derive(Default, Debug)]
struct Tally {
    messages: u64,
    orders: u64,
    encode_errors: u64,
}

/// One at a time: each spins a core for the engine loop.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(tls: bool, warm_up: u64, measured: u64) {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // 10 messages every millisecond: the simulator's market at 10k msg/s.
    let sim = rt
        .block_on(start(SimConfig {
            source: SourceKind::EngineSim,
            tick_ms: 1,
            messages_per_tick: 10,
            tls: tls.then_some(SimTls::SelfSigned),
            ..SimConfig::default()
        }))
        .expect("simulator starts");
    let mut cfg = WsFeedConfig::new(format!(
        "{}/stream?streams=btcusdt@bookTicker/btcusdt@aggTrade/ethusdt@bookTicker/ethusdt@aggTrade",
        sim.ws_url()
    ));
    if let Some(pem) = sim.ca_pem() {
        cfg.tls = Some(TlsOverride(
            aegis_engine::net::ws::set_extra_roots(pem.as_bytes()).unwrap(),
        ));
    }

    let (venue_link, ends) = link();
    let specs = [SymbolSpec::btcusdt(), SymbolSpec::ethusdt()];
    let params = EngineParams {
        session: 1,
        symbols: specs.to_vec(),
        // The market runs at wall speed, so the scalp mode gets 50 ms bars, short averages and a hair-trigger
        // stop and target: it enters and exits many times a second, as a busy live session would over hours.
        scalp: ScalpParams {
            bar_ms: 50,
            ema_fast: 2,
            ema_slow: 3,
            rsi_period: 2,
            rsi_overbought: 100.0,
            rsi_oversold: 0.0,
            volume_period: 2,
            volume_mult: 0.0,
            stop_loss: Rate::from_units(1_000),
            take_profit: Rate::from_units(1_000),
            max_hold_ms: 200,
            ..ScalpParams::default()
        },
        // Limits and breakers are checked on every order, but set wide: a breaker tripped by the hair-trigger
        // losses above, or the order rate cap, would stop the trading the measurement needs.
        limits: LimitsConfig {
            max_orders_per_10s: 300,
            max_daily_loss_usd: Notional::from_int(1_000_000),
            ..EngineParams::default().limits
        },
        breakers: BreakerConfig {
            max_loss_per_hour: Notional::from_int(1_000_000),
            max_consecutive_losses: 1_000_000,
            ..BreakerConfig::default()
        },
        ultra_fast: Some(UltraFastParams::default()),
        swing: Some(SwingParams::default()),
        position: Some(PositionParams::default()),
        live: Some(venue_link),
        pin: false,
        ..EngineParams::default()
    };
    let (mut engine, ctl) = Engine::with_channels(params).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let fills = Arc::new(AtomicU64::new(0));
    let exchange = exchange_stand_in(ends, stop.clone(), fills.clone());

    let prec = specs.map(|s| WirePrecision::new(s.filters.tick_size, s.filters.step_size).unwrap());
    let key = ApiKey::new(Secret::new("dbefbc809e3e83c283a984c3a1459732".to_string())).unwrap();
    let secret = Secret::new("2b5eb11e18796d12d88f13dc27dbbd02".to_string());
    let mut enc = OrderEncoder::new(Signer::Hmac(HmacSigner::new(&secret)), key, 5000);

    let mut feed = WsFeed::start(cfg).unwrap();
    let mut t = Tally::default();
    let mut id = 0u64;
    let mut drive = |n: u64, t: &mut Tally| {
        let end = t.messages + n;
        let started = Instant::now();
        while t.messages < end {
            engine.poll_venue();
            match feed.poll() {
                FeedPoll::Msg(b) => {
                    engine.on_message(b);
                    t.messages += 1;
                }
                FeedPoll::Idle => {
                    assert!(
                        started.elapsed() < Duration::from_secs(120),
                        "stream stalled at {} messages",
                        t.messages
                    );
                    std::hint::spin_loop();
                }
                FeedPoll::Ended => panic!("a live feed never ends"),
            }
            while let Ok(ev) = ctl.events.try_recv() {
                let EngineEvent::Order(o) = ev else { continue };
                if o.status != OrderStatus::PendingNew {
                    continue;
                }
                let sym = usize::from(o.symbol != specs[0].symbol);
                let req = OrderRequest {
                    symbol: o.symbol,
                    side: o.side,
                    order_type: o.order_type,
                    tif: o.tif,
                    qty: o.qty,
                    price: o.price,
                    reduce_only: o.reduce_only,
                    client_id: o.client_id,
                    resp_type: RespType::Ack,
                };
                id += 1;
                let mut ok = enc.ws_order_place(id, &req, &prec[sym], id, true).is_ok();
                ok &= enc.ws_order_place(id, &req, &prec[sym], id, false).is_ok();
                let q = CancelRequest {
                    symbol: o.symbol,
                    order: CancelRef::ClientId(o.client_id),
                };
                ok &= enc.ws_order_status(id, &q, id, true).is_ok();
                ok &= enc.ws_order_status(id, &q, id, false).is_ok();
                ok &= answer::parse(ACK)
                    .is_ok_and(|a| a.order_id == Some(325_078_477) && a.limits().count() == 3);
                ok &= answer::parse(ABSENT).is_ok_and(|a| a.code == Some(-2013));
                t.encode_errors += u64::from(!ok);
                t.orders += 1;
            }
            if t.messages.is_multiple_of(64) {
                engine.housekeeping();
                while ctl.stats.try_recv().is_ok() {}
            }
        }
    };

    drive(warm_up, &mut t);
    let (orders0, fills0) = (t.orders, fills.load(Ordering::Relaxed));
    let before = allocs();
    drive(measured, &mut t);
    let made = allocs() - before;
    let (orders, filled) = (t.orders - orders0, fills.load(Ordering::Relaxed) - fills0);
    stop.store(true, Ordering::Release);
    exchange.join().unwrap();
    let what = if tls { "TLS" } else { "TCP" };
    eprintln!(
        "{what}: {measured} messages measured after {warm_up}: {made} allocations, {orders} orders, {filled} fills"
    );
    assert_eq!(t.encode_errors, 0, "every order encodes");
    assert!(
        orders >= 5 && filled >= 5,
        "the measured run traded ({orders} orders, {filled} fills): otherwise it proves nothing"
    );
    assert_eq!(
        made, 0,
        "{what}: the live path allocated {made} times in {measured} messages"
    );
    drop(feed);
    rt.block_on(sim.shutdown());
}

#[test]
fn live_path_over_tcp_to_binance_sim_allocates_nothing_in_steady_state() {
    run(false, 20_000, 60_000);
}

#[test]
fn live_path_over_tls_to_binance_sim_allocates_nothing_in_steady_state() {
    run(true, 20_000, 60_000);
}
