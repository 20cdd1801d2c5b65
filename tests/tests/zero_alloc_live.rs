//! Zero allocation on the bot's live path, against binance-sim over TCP and over TLS: this thread is the engine
//! thread of `TRADING_MODE=testnet|live`. It reads the simulator's combined market streams (the streams the
//! bot subscribes to: `@bookTicker` and `@aggTrade`, two symbols) through the production [`WsFeed`] (mio,
//! `wss://` record layer), runs them through parse → book → all four modes → risk → the live venue
//! ([`LiveVenue`]) and its order entry on this same thread ([`OrderEntry`]): every order the engine decides is
//! written as a signed `order.place` to binance-sim's WebSocket API and its answer (with `rateLimits`) read
//! back in place. A few placements answer 503 (the simulator's `order503` fault, placed): those outcomes are
//! unknown and settled by `order.status` over the same connection (and a REST status query handed to the
//! worker queue). A second order connection on this thread cancels every order the engine placed
//! (`order.cancel`; binance-sim answers -2011, the orders are filled), so cancels and refusals are counted too.
//!
//! Off this thread, as in the bot (their allocations do not count: the counter is per thread): the user data
//! stream, which turns binance-sim's `ORDER_TRADE_UPDATE`s into fills for the venue, and a stand-in for the
//! control plane's REST worker.
//!
//! The spot variant runs the live venue built for `Market::Spot` with its order entry on this thread against
//! binance-sim's spot WebSocket API (`/ws-api/v3`): spot `order.place` (a resting buy, a `LIMIT_MAKER` that the
//! exchange refuses), an exit that cancels a resting stop (`order.cancelReplace`), `order.cancel`, every answer
//! read in place, and the cancels arriving as `executionReport`s from the spot user data read off this thread.
//!
//! [`WsFeed`]: aegis_engine::net::ws_feed::WsFeed
//! [`LiveVenue`]: aegis_engine::venue::binance::LiveVenue
//! [`OrderEntry`]: aegis_engine::venue::binance::entry::OrderEntry

use aegis_engine::feed::FeedPoll;
use aegis_engine::net::mio_ws::WsClientConfig;
use aegis_engine::net::ws_feed::{TlsOverride, WsFeed, WsFeedConfig};
use aegis_engine::risk::breaker::BreakerConfig;
use aegis_engine::risk::limits::LimitsConfig;
use aegis_engine::sign::{ApiKey, HmacSigner, OrderEncoder, Signer, WirePrecision};
use aegis_engine::strategy::{
    position::PositionParams, scalp::ScalpParams, swing::SwingParams, ultra_fast::UltraFastParams,
};
use aegis_engine::venue::binance::entry::{
    EntryConfig, EntryStats, OrderEntry, RestJob, RestOutcome, WallClock,
};
use aegis_engine::venue::binance::{link, Inbound, OrderUpdate};
use aegis_engine::{Engine, EngineParams, SymbolSpec};
use aegis_shared::event::{FeeConversion, OrderStatus, OrderType};
use aegis_shared::num::Rate;
use aegis_shared::{ClientOrderId, EngineEvent, Notional, Price, Qty, Secret, Side, Symbol};
use aegis_testkit::sim::client::{AdminCall, BlockingAdminClient};
use aegis_testkit::sim::keys::{KeyEntry, KeysFile, Permissions};
use aegis_testkit::sim::{start, SimConfig, SimTls, SourceKind};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod spot_support;

// The engine's zero-allocation tests' counting allocator, shared rather than written again.
#[path = "../../engine/tests/alloc_support/mod.rs"]
mod alloc_support;
use alloc_support::{allocs, Counting};

#[global_allocator]
static A: Counting = Counting;

const KEY: &str = "Z3r0Z3r0Z3r0Z3r0Z3r0Z3r0Z3r0Z3r0Z3r0Z3r0Z3r0Z3r0Z3r0Z3r0Z3r0Z3r0";
const SECRET: &str = "zero-alloc-hmac-secret-0123456789";

/// An `ORDER_TRADE_UPDATE` in engine types (the control plane's reader does the same; kept short here).
fn order_update(v: &Value) -> Option<OrderUpdate> {
    let o = v.get("o")?;
    let st = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("");
    let qty = |k: &str| Qty::parse(st(k)).unwrap_or(Qty::ZERO);
    let px = |k: &str| Price::parse(st(k)).unwrap_or(Price::ZERO);
    let status = match st("X") {
        "NEW" => OrderStatus::New,
        "PARTIALLY_FILLED" => OrderStatus::PartiallyFilled,
        "FILLED" => OrderStatus::Filled,
        "CANCELED" => OrderStatus::Canceled,
        "EXPIRED" => OrderStatus::Expired,
        _ => OrderStatus::Rejected,
    };
    Some(OrderUpdate {
        ts_ms: v.get("T").and_then(Value::as_u64).unwrap_or(0),
        symbol: Symbol::new(st("s")).ok()?,
        client_id: ClientOrderId::new(st("c")).ok()?,
        exchange_id: o.get("i").and_then(Value::as_u64).unwrap_or(0),
        side: if st("S") == "SELL" {
            Side::Sell
        } else {
            Side::Buy
        },
        order_type: if st("o") == "LIMIT" {
            OrderType::Limit
        } else {
            OrderType::Market
        },
        status,
        price: px("p"),
        orig_qty: qty("q"),
        last_qty: qty("l"),
        last_price: px("L"),
        cum_qty: qty("z"),
        fee: Notional::ZERO,
        fee_asset: Symbol::new("USDT").ok()?,
        fee_conv: FeeConversion::Quote,
        trade_id: o.get("t").and_then(Value::as_u64).unwrap_or(0),
        maker: o.get("m").and_then(Value::as_bool).unwrap_or(false),
        reduce_only: o.get("R").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// The control plane's side, off the engine thread: the user data stream (fills into the venue's inbound
/// queue; counts them) and a stand-in REST worker (status queries answered "found", since the 503s here are
/// of placed orders). Ends when `stop` is set.
fn control_stand_in(
    ws_base: String,
    listen_key: String,
    inbound: crossbeam_channel::Sender<Inbound>,
    jobs: crossbeam_channel::Receiver<RestJob>,
    stop: Arc<AtomicBool>,
    fills: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut ws = aegis_engine::net::ws::connect(
            &format!("{ws_base}/ws/{listen_key}"),
            Duration::from_secs(10),
        )
        .expect("user data stream");
        aegis_engine::net::ws::set_read_timeout(&ws, Some(Duration::from_millis(5))).unwrap();
        while !stop.load(Ordering::Acquire) {
            for j in jobs.try_iter() {
                if let RestJob::Query { .. } = j {
                    let _ = inbound.send(Inbound::Rest {
                        job: j,
                        outcome: RestOutcome::Ok { order_id: 0 },
                    });
                }
            }
            match ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                        continue;
                    };
                    if v["e"] != "ORDER_TRADE_UPDATE" {
                        continue;
                    }
                    if let Some(u) = order_update(&v) {
                        if u.last_qty.units() > 0 {
                            fills.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = inbound.send(Inbound::Update(u));
                    }
                }
                Ok(_) => {}
                Err(e) if aegis_engine::net::ws::is_timeout(&e) => {}
                Err(e) => panic!("user data stream: {e}"),
            }
        }
    })
}

fn entry_config(
    ws_base: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    rest: crossbeam_channel::Sender<RestJob>,
    stats: Arc<EntryStats>,
) -> EntryConfig {
    let mut ws = WsClientConfig::new(format!("{ws_base}/ws-fapi/v1"));
    ws.tls = tls;
    ws.read_capacity = 64 * 1024;
    let key = ApiKey::new(Secret::new(KEY.to_string())).unwrap();
    let signer = Signer::Hmac(HmacSigner::new(&Secret::new(SECRET.to_string())));
    EntryConfig {
        ws,
        encoder: OrderEncoder::new(signer, key, 5000),
        precision: [SymbolSpec::btcusdt(), SymbolSpec::ethusdt()]
            .iter()
            .map(|s| {
                (
                    s.symbol,
                    WirePrecision::new(s.filters.tick_size, s.filters.step_size).unwrap(),
                )
            })
            .collect(),
        clock: Arc::new(WallClock),
        rest,
        stats,
        switch: None,
    }
}

#[derive(Default, Debug)]
struct Tally {
    messages: u64,
    orders: u64,
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
    let keys = KeysFile {
        keys: vec![KeyEntry {
            api_key: KEY.into(),
            account: Some("alice".into()),
            secret: Some(SECRET.into()),
            ed25519_public_key: None,
            permissions: Permissions::default(),
            ip_restrict: false,
            allowed_ips: vec![],
        }],
        accounts: vec![],
    };
    // 10 messages every millisecond: the simulator's market at 10k msg/s.
    let sim = rt
        .block_on(start(SimConfig {
            keys,
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
    let tls_cfg = sim
        .ca_pem()
        .map(|pem| aegis_engine::net::ws::set_extra_roots(pem.as_bytes()).unwrap());
    cfg.tls = tls_cfg.clone().map(TlsOverride);
    let (admin, http) = match sim.ca_pem() {
        Some(pem) => {
            let mut b = reqwest::blocking::Client::builder();
            for c in reqwest::Certificate::from_pem_bundle(pem.as_bytes()).unwrap() {
                b = b.add_root_certificate(c);
            }
            (
                BlockingAdminClient::with_ca_pem(&sim.base_url(), pem).unwrap(),
                b.build().unwrap(),
            )
        }
        None => (
            BlockingAdminClient::new(&sim.base_url()),
            reqwest::blocking::Client::new(),
        ),
    };
    let listen_key = http
        .post(format!("{}/fapi/v1/listenKey", sim.base_url()))
        .header("X-MBX-APIKEY", KEY)
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["listenKey"]
        .as_str()
        .unwrap()
        .to_string();

    let (venue_link, ends) = link();
    let (job_tx, job_rx) = crossbeam_channel::bounded(4096);
    let stats = Arc::new(EntryStats::default());
    venue_link.attach_entry(entry_config(
        &sim.ws_url(),
        tls_cfg.clone(),
        job_tx,
        stats.clone(),
    ));
    // The second order connection on this thread: cancels of every order the engine placed.
    let (cancel_jobs, _cancel_rx) = crossbeam_channel::bounded(4096);
    let cancel_stats = Arc::new(EntryStats::default());
    let mut canceller = OrderEntry::new(entry_config(
        &sim.ws_url(),
        tls_cfg,
        cancel_jobs,
        cancel_stats,
    ));
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
    let control = control_stand_in(
        sim.ws_url(),
        listen_key,
        ends.inbound.clone(),
        job_rx,
        stop.clone(),
        fills.clone(),
    );

    let mut feed = WsFeed::start(cfg).unwrap();
    let mut t = Tally::default();
    let mut drive = |n: u64, t: &mut Tally| {
        let end = t.messages + n;
        // A stall is a stretch without any message (the rate itself varies with the machine's load).
        let mut last_msg = Instant::now();
        while t.messages < end {
            engine.poll_venue();
            canceller.poll(Instant::now());
            while canceller.next_inbound().is_some() {}
            match feed.poll() {
                FeedPoll::Msg(b) => {
                    engine.on_message(b);
                    t.messages += 1;
                    last_msg = Instant::now();
                }
                FeedPoll::Idle => {
                    assert!(
                        last_msg.elapsed() < Duration::from_secs(30),
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
                canceller.cancel(o.symbol, o.client_id);
                t.orders += 1;
            }
            if t.messages.is_multiple_of(64) {
                engine.housekeeping();
                while ctl.stats.try_recv().is_ok() {}
            }
        }
    };

    drive(warm_up, &mut t);
    // The next placements answer 503 but are placed: unknown outcomes, settled by order.status.
    admin.call(AdminCall::order_503(3, true)).unwrap();
    let (orders0, fills0) = (t.orders, fills.load(Ordering::Relaxed));
    let (placed0, queried0) = (
        stats.placed.load(Ordering::Relaxed),
        stats.queried.load(Ordering::Relaxed),
    );
    let before = allocs();
    let t_measured = Instant::now();
    drive(measured, &mut t);
    let took = t_measured.elapsed();
    let made = allocs() - before;
    let (orders, filled) = (t.orders - orders0, fills.load(Ordering::Relaxed) - fills0);
    let placed = stats.placed.load(Ordering::Relaxed) - placed0;
    let queried = stats.queried.load(Ordering::Relaxed) - queried0;
    stop.store(true, Ordering::Release);
    control.join().unwrap();
    let what = if tls { "TLS" } else { "TCP" };
    eprintln!(
        "{what}: {measured} messages in {:.1?} measured after {warm_up}: {made} allocations, {orders} orders \
         ({placed} order.place on the engine thread, {queried} unknown outcomes queried), {filled} fills",
        took
    );
    assert!(
        orders >= 5 && filled >= 5 && placed >= 5,
        "the measured run traded ({orders} orders, {placed} placed, {filled} fills): otherwise it proves nothing"
    );
    assert!(
        queried >= 1,
        "the order.status path ran ({queried} unknown outcomes)"
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
    run(false, 10_000, 30_000);
}

#[test]
fn live_path_over_tls_to_binance_sim_allocates_nothing_in_steady_state() {
    run(true, 10_000, 30_000);
}

const SPOT_KEY: &str = "Sp0tZ3r0Sp0tZ3r0Sp0tZ3r0Sp0tZ3r0Sp0tZ3r0Sp0tZ3r0Sp0tZ3r0Sp0tZ3r0";
const SPOT_SECRET: &str = "spot-zero-alloc-hmac-secret";

/// Spot: the live venue and its order entry on this thread, over TCP to binance-sim's spot WebSocket API. Each
/// cycle places a resting GTC buy, a post-only buy at the ask (refused, -2010) and a sell exit that cancels a
/// stop (`order.cancelReplace`; refused too: the account holds no BTC, or this simulator has no cancel-replace),
/// waits for the answers, then cancels the resting buy and waits for its `CANCELED` from the user data.
fn run_spot(warm_up: u32, measured: u32) {
    use aegis_engine::position::Positions;
    use aegis_engine::venue::binance::LiveVenue;
    use aegis_engine::venue::OrderRequest;
    use aegis_shared::event::{OrderIntent, TimeInForce};
    use aegis_shared::ids::ClientOrderIdGen;
    use aegis_shared::{Market, StrategyMode};

    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt
        .block_on(start(SimConfig {
            keys: KeysFile {
                keys: vec![spot_support::spot_key(SPOT_KEY, SPOT_SECRET, "sam")],
                accounts: vec![],
            },
            source: SourceKind::Frozen,
            tick_ms: 50,
            ..SimConfig::default()
        }))
        .expect("simulator starts");
    let admin = BlockingAdminClient::new(&sim.base_url());
    admin
        .call(AdminCall::spot_balances(
            "sam",
            serde_json::json!({"USDT": "100000000"}),
        ))
        .unwrap();
    admin
        .call(AdminCall::spot_price(
            "BTCUSDT",
            "60000",
            Some("59999"),
            Some("60001"),
        ))
        .unwrap();
    // Wide limits: the cycles place orders far faster than a bot would, and entry halts at 80 % of a limit.
    admin
        .call(AdminCall::spot_limits(serde_json::json!({"weightPerMinute": 100_000_000,
            "ordersPer10s": 100_000_000, "ordersPerMinute": 100_000_000, "banAfter429s": 3, "banSecs": 120})))
        .unwrap();

    let btc = Symbol::new("BTCUSDT").unwrap();
    let (venue_link, ends) = link();
    let (job_tx, job_rx) = crossbeam_channel::bounded(4096);
    let mut ws = WsClientConfig::new(format!("{}/ws-api/v3", sim.ws_url()));
    ws.read_capacity = 64 * 1024;
    let key = ApiKey::new(Secret::new(SPOT_KEY.to_string())).unwrap();
    let signer = Signer::Hmac(HmacSigner::new(&Secret::new(SPOT_SECRET.to_string())));
    venue_link.attach_entry(EntryConfig {
        ws,
        encoder: OrderEncoder::new(signer, key, 5000),
        precision: vec![(
            btc,
            WirePrecision::new(
                Price::parse("0.01").unwrap(),
                Qty::parse("0.00001").unwrap(),
            )
            .unwrap(),
        )],
        clock: Arc::new(WallClock),
        rest: job_tx,
        stats: Arc::new(EntryStats::default()),
        switch: None,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let subscribed = Arc::new(AtomicBool::new(false));
    let reader = spot_support::user_data(
        sim.ws_url(),
        SPOT_KEY,
        SPOT_SECRET,
        ends.inbound.clone(),
        stop.clone(),
        subscribed.clone(),
    );
    let mut venue = LiveVenue::new(venue_link, vec![btc], Market::Spot);
    let mut pos = Positions::new(1);
    let mut events: Vec<EngineEvent> = Vec::with_capacity(4096);
    let started = Instant::now();
    while !(venue.entry().is_some_and(|e| e.is_open()) && subscribed.load(Ordering::Acquire)) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "spot WebSocket API not up"
        );
        venue.poll(64, &mut pos, &mut events, &mut |_| {});
        std::thread::yield_now();
    }
    let req =
        |side: Side, order_type: OrderType, tif: Option<TimeInForce>, price: i64, reduce: bool| {
            OrderRequest {
                symbol: btc,
                sym: 0,
                mode: StrategyMode::Swing,
                intent: if reduce {
                    OrderIntent::SignalExit
                } else {
                    OrderIntent::Entry
                },
                side,
                order_type,
                tif,
                price: Price::from_int(price),
                ref_price: Price::from_int(60_000),
                qty: Qty::parse("0.001").unwrap(),
                reduce_only: reduce,
            }
        };
    let resting = req(
        Side::Buy,
        OrderType::Limit,
        Some(TimeInForce::Gtc),
        59_000,
        false,
    );
    let crossing = req(
        Side::Buy,
        OrderType::Limit,
        Some(TimeInForce::Gtx),
        60_001,
        false,
    );
    let exit = req(Side::Sell, OrderType::Market, None, 0, true);
    let stop_cid = ClientOrderId::new("agstop-zero").unwrap();
    let mut gen = ClientOrderIdGen::new(aegis_engine::clock::wall_ms());
    // (rejections, cancels) seen.
    let mut seen = (0u32, 0u32);
    let mut cycle = |seen: &mut (u32, u32)| {
        let settle = |venue: &mut LiveVenue,
                      pos: &mut Positions,
                      events: &mut Vec<EngineEvent>,
                      open: usize| {
            let t = Instant::now();
            loop {
                venue.poll(64, pos, events, &mut |_| {});
                let quiet = venue.entry().is_some_and(|e| e.in_flight() == 0);
                if venue.open_orders() == open && quiet {
                    break;
                }
                assert!(t.elapsed() < Duration::from_secs(20), "spot cycle stalled");
                while job_rx.try_recv().is_ok() {}
                std::hint::spin_loop();
            }
        };
        venue.submit(&resting, gen.next_id(), 1, &mut events, &mut |_| {});
        venue.submit(&crossing, gen.next_id(), 1, &mut events, &mut |_| {});
        venue.apply(
            Inbound::SpotStop {
                symbol: btc,
                client_id: Some(stop_cid),
            },
            &mut pos,
            &mut events,
            &mut |_| {},
        );
        venue.submit(&exit, gen.next_id(), 1, &mut events, &mut |_| {});
        settle(&mut venue, &mut pos, &mut events, 1);
        venue.cancel_all();
        settle(&mut venue, &mut pos, &mut events, 0);
        for e in &events {
            if let EngineEvent::Order(o) = e {
                match o.status {
                    OrderStatus::Rejected => seen.0 += 1,
                    OrderStatus::Canceled => seen.1 += 1,
                    _ => {}
                }
            }
        }
        events.clear();
    };
    for _ in 0..warm_up {
        cycle(&mut seen);
    }
    let seen0 = seen;
    let before = allocs();
    let t0 = Instant::now();
    for _ in 0..measured {
        cycle(&mut seen);
    }
    let took = t0.elapsed();
    let made = allocs() - before;
    stop.store(true, Ordering::Release);
    reader.join().unwrap();
    let (rejected, cancelled) = (seen.0 - seen0.0, seen.1 - seen0.1);
    eprintln!(
        "spot TCP: {measured} cycles in {took:.1?} after {warm_up}: {made} allocations, {rejected} refusals \
         (LIMIT_MAKER and cancel-replace exits), {cancelled} cancels"
    );
    assert_eq!(
        (rejected, cancelled),
        (2 * measured, measured),
        "every cycle was answered: two refusals and a cancel"
    );
    assert_eq!(
        made, 0,
        "spot: the live path allocated {made} times in {measured} cycles"
    );
    rt.block_on(sim.shutdown());
}

#[test]
fn spot_live_venue_over_tcp_to_binance_sim_allocates_nothing_in_steady_state() {
    run_spot(50, 200);
}
