//! The live order path end to end, through the real bot: the `aegis` binary (release build, `TRADING_MODE=testnet`)
//! trades against binance-sim in this process, whose market runs at 10,000 messages/s (both symbols). Per sample,
//! measured on the simulator's clock ([`aegis_testkit::sim::probe`]): the simulator writes the BTCUSDT book
//! ticker that crosses the bot's stop-loss to the bot's market socket → the bot reads it (mio), its engine
//! decides the exit and writes the `order.place` frame to its WebSocket-API connection itself (order entry on
//! the engine thread) → the simulator reads the frame. With `AEGIS_ORDER_PATH=gateway` (the hidden setting,
//! passed through to the bot) the order crosses to the old order gateway thread instead, for the A/B comparison. Both ends include the simulator's own tokio scheduling, so this is an upper bound.
//!
//! Each cycle: the bot holds a long (adopted from a fill by another client of the account), the price drops
//! 1 % → stop-loss exit (a sample); another client sells, the bot adopts the short, the price rises 1 % →
//! stop-loss exit (a sample); another client buys. Build the bot first:
//! `cargo build --release -p aegis-control --bin aegis`, then `cargo bench -p aegis-benches --bench tick_to_wire`
//! (about 1 min). `TICK_TO_WIRE_BIN` runs another build of the bot and `TICK_TO_WIRE_CYCLES` (default 250)
//! changes the number of cycles, for checking the harness itself.

use aegis_engine::sign::rest::encode_signed_query;
use aegis_engine::sign::{HmacSigner, Signer};
use aegis_shared::Secret;
use aegis_testkit::sim::client::{AdminCall, BlockingAdminClient};
use aegis_testkit::sim::keys::{KeyEntry, KeysFile, Permissions};
use aegis_testkit::sim::{start, SimConfig, SourceKind};
use hdrhistogram::Histogram;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "B3nchB3nchB3nchB3nchB3nchB3nchB3nchB3nchB3nchB3nchB3nchB3nchB3nc";
const SECRET: &str = "bench-hmac-secret-0123456789abcdef";
/// Cycles (two samples each).
const CYCLES: usize = 250;

fn bin() -> PathBuf {
    let p = std::env::var_os("TICK_TO_WIRE_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/aegis"),
        PathBuf::from,
    );
    assert!(
        p.exists(),
        "build the bot first: cargo build --release -p aegis-control --bin aegis"
    );
    p
}

fn wall_ms() -> String {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64)
        .to_string()
}

/// A market order by another client of the account (the bot adopts the resulting position).
fn manual(base: &str, side: &str) {
    let signer = Signer::Hmac(HmacSigner::new(&Secret::new(SECRET.to_string())));
    let ts = wall_ms();
    let ps: Vec<(&str, &[u8])> = vec![
        ("symbol", b"BTCUSDT"),
        ("side", side.as_bytes()),
        ("type", b"MARKET"),
        ("quantity", b"0.003"),
        ("timestamp", ts.as_bytes()),
    ];
    let mut buf = vec![0u8; 4096];
    let n = encode_signed_query(&ps, &signer, &mut buf).expect("signed query");
    let q = String::from_utf8_lossy(&buf[..n]).into_owned();
    let r: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{base}/fapi/v1/order?{q}"))
        .header("X-MBX-APIKEY", KEY)
        .send()
        .expect("manual order")
        .json()
        .expect("json");
    assert!(r.get("orderId").is_some(), "{r}");
}

fn net_btc(admin: &BlockingAdminClient) -> f64 {
    admin
        .call(AdminCall::positions("alice"))
        .expect("positions")
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["symbol"] == "BTCUSDT")
        .filter_map(|p| p["positionAmt"].as_str()?.parse::<f64>().ok())
        .sum()
}

fn wait(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
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
    let sim = rt
        .block_on(start(SimConfig {
            keys,
            source: SourceKind::EngineSim,
            // 10 messages every millisecond.
            tick_ms: 1,
            messages_per_tick: 10,
            ..SimConfig::default()
        }))
        .expect("simulator");
    let base = sim.base_url();
    let admin = BlockingAdminClient::new(&base);
    let quote = |bid: &str, ask: &str| {
        admin
            .call(AdminCall::set_quote("BTCUSDT", bid, "5", ask, "5"))
            .expect("quote");
    };
    // BTCUSDT is pinned from here on (only these quotes move it); ETHUSDT keeps streaming at market rate.
    quote("59999.9", "60000.0");
    manual(&base, "BUY");

    let dir = std::env::temp_dir().join(format!("aegis-tick-to-wire-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("data")).expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let log = dir.join("bot.log");
    let path = std::env::var("AEGIS_ORDER_PATH").unwrap_or_else(|_| "engine".into());
    let mut bot = Command::new(bin())
        .env("AEGIS_ORDER_PATH", &path)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", dir.join("data"))
        .env("API_PORT", port.to_string())
        .env("SYMBOLS", "BTCUSDT,ETHUSDT")
        .env("AUTH_ENABLED", "false")
        .env("LOG_LEVEL", "warn")
        .env("MAX_ORDERS_PER_10S", "300")
        .env("TRADING_MODE", "testnet")
        .env("BINANCE_TESTNET_API_KEY", KEY)
        .env("BINANCE_TESTNET_SECRET_KEY", SECRET)
        .env("BINANCE_FAPI_URL", &base)
        .env("BINANCE_SAPI_URL", &base)
        .env("BINANCE_FSTREAM_URL", sim.ws_url())
        .env("BINANCE_WSAPI_URL", format!("{}/ws-fapi/v1", sim.ws_url()))
        .current_dir(&dir)
        .arg("--env-file")
        .arg(dir.join("missing.env"))
        .arg("run")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("the bot starts");
    // The start-up (reconciliation, leverage, streams) is done when the bot trades: give it its book.
    std::thread::sleep(Duration::from_secs(4));
    quote("60000.0", "60000.1");
    std::thread::sleep(Duration::from_millis(500));

    // The bot's own count of market messages read, for the rate it really saw.
    let api = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    let messages = || -> u64 {
        api.get(format!("https://127.0.0.1:{port}/api/status"))
            .send()
            .ok()
            .and_then(|r| r.json::<serde_json::Value>().ok())
            .and_then(|s| s["engine_stats"]["messages"].as_u64())
            .unwrap_or(0)
    };
    let m0 = messages();
    let probe = &sim.sim.probe;
    let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("histogram");
    let mut lost = 0;
    let mut sample = |bid: &str, ask: &str, h: &mut Histogram<u64>| {
        probe.arm("btcusdt@bookTicker");
        quote(bid, ask);
        match wait(Duration::from_secs(2), || probe.sample().is_some()) {
            true => {
                let d = probe.sample().unwrap_or_default();
                h.record(d.as_nanos().max(1) as u64).expect("record");
            }
            false => lost += 1,
        }
    };
    let t0 = Instant::now();
    let cycles = std::env::var("TICK_TO_WIRE_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(CYCLES);
    for _ in 0..cycles {
        // Long 0.003 at ~60,000: 1 % down crosses its 0.6 % stop.
        sample("59400.0", "59400.1", &mut h);
        wait(Duration::from_secs(2), || net_btc(&admin).abs() < 1e-9);
        manual(&base, "SELL");
        std::thread::sleep(Duration::from_millis(30));
        // Short 0.003 at ~59,400: back up to 60,000 crosses its stop.
        sample("60000.0", "60000.1", &mut h);
        wait(Duration::from_secs(2), || net_btc(&admin).abs() < 1e-9);
        manual(&base, "BUY");
        std::thread::sleep(Duration::from_millis(30));
    }
    let took = t0.elapsed();
    let rate = (messages() - m0) as f64 / took.as_secs_f64();
    let _ = bot.kill();
    let _ = bot.wait();
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "tick_to_wire ({path} order path): {} samples ({} without an order) in {:.0?}, the bot reading {:.0} market msg/s: \
         stop-loss tick written -> order.place frame read: p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, \
         p99.9 {:.1} us, max {:.1} us",
        h.len(),
        lost,
        took,
        rate,
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        h.max() as f64 / 1000.0
    );
    if lost > 0 {
        eprintln!(
            "bot log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    rt.block_on(sim.shutdown());
}
