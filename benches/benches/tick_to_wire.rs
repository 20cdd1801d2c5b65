//! The live order path end to end, through the real bot: the `aegis` binary (release build, `TRADING_MODE=testnet`)
//! trades against binance-sim in this process, whose market runs at 10,000 messages/s (both symbols). Per sample:
//! the BTCUSDT book ticker that crosses the bot's stop-loss reaches the bot's market socket → the bot reads it
//! (mio), its engine decides the exit and writes the `order.place` frame to its WebSocket-API connection itself
//! (order entry on the engine thread) → the frame reaches the other end of that connection. With
//! `AEGIS_ORDER_PATH=gateway` (the hidden setting, passed through to the bot) the order crosses to the old order
//! gateway thread instead, for the A/B comparison.
//!
//! Where the clock starts and stops: the bot's two connections go through two proxies in this process, so both
//! ends of the bot's own sockets are timed here. The market proxy (a plain thread) forwards the simulator's
//! stream; when it forwards the crossing book ticker, the clock starts when its `write` of those bytes to the
//! bot's socket has returned. The WebSocket-API proxy is one thread, pinned to core 0 (`TICK_TO_WIRE_SPIN_CORE`),
//! that busy-polls the bot's non-blocking WebSocket-API sockets ([`std::hint::spin_loop`]); the clock stops when
//! the `read` that returned the first byte of the bot's `order.place` frame returned (the read that completed the
//! frame is timed too). So the time does not include a sleeping receiver's wake-up, but it does include every
//! delay of the bot's threads, including being preempted on a loaded machine.
//!
//! `TICK_TO_WIRE_SPIN=0` makes that reader a blocking thread per connection instead (stamped once it has woken
//! up): on a loaded 2-core machine a spinning reader takes a whole core from everything else, so both are worth
//! comparing.
//!
//! The simulator's own probe ([`aegis_testkit::sim::probe`]: its write of the tick to its socket → its tokio read
//! of the order frame, both including its scheduling, and now the two proxy hops too) is reported beside it.
//! `TICK_TO_WIRE_PROXY=0` connects the bot straight to the simulator and reports only that probe, as before.
//!
//! Each cycle: the bot holds a long (adopted from a fill by another client of the account), the price drops
//! 1 % → stop-loss exit (a sample); another client sells, the bot adopts the short, the price rises 1 % →
//! stop-loss exit (a sample); another client buys. Build the bot first:
//! `cargo build --release -p aegis-control --bin aegis`, then `cargo bench -p aegis-benches --bench tick_to_wire`
//! (about 1 min). `TICK_TO_WIRE_BIN` runs another build of the bot and `TICK_TO_WIRE_CYCLES` (default 250)
//! changes the number of cycles, for checking the harness itself; `TICK_TO_WIRE_MSGS_PER_TICK` (default 51) the
//! simulated market's messages per millisecond.

use aegis_engine::sign::rest::encode_signed_query;
use aegis_engine::sign::{HmacSigner, Signer};
use aegis_shared::Secret;
use aegis_testkit::sim::client::{AdminCall, BlockingAdminClient};
use aegis_testkit::sim::keys::{KeyEntry, KeysFile, Permissions};
use aegis_testkit::sim::ratelimit::Limits;
use aegis_testkit::sim::{start, SimConfig, SourceKind};
use hdrhistogram::Histogram;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "B3nchB3nchB3nchB3nchB3nchB3nchB3nchB3nchB3nchB3nchB3nchB3nchB3nc";
const SECRET: &str = "bench-hmac-secret-0123456789abcdef";
/// Cycles (two samples each).
const CYCLES: usize = 250;
/// Simulated market messages generated per millisecond (see the simulator's settings below).
const MSGS_PER_TICK: usize = 51;

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

// Sample states of [`Stamps`].
const IDLE: u8 = 0;
const ARMED: u8 = 1;
const WRITING: u8 = 2;
const TICKED: u8 = 3;

/// One sample's timestamps at the bot's sockets (see the module docs).
#[derive(Default)]
struct Stamps {
    state: AtomicU8,
    /// The crossing ticker's bid as it appears in the frame (`"b":"59400.0`).
    bid: Mutex<String>,
    /// The market proxy's write of the crossing ticker to the bot's socket returned.
    tick: Mutex<Option<Instant>>,
    /// The read that returned the first byte of the next `order.place` frame returned, and the one that completed
    /// it.
    order: Mutex<Option<(Instant, Instant)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Stamps {
    fn arm(&self, bid: &str) {
        *lock(&self.bid) = format!("\"b\":\"{bid}");
        *lock(&self.tick) = None;
        *lock(&self.order) = None;
        self.state.store(ARMED, Ordering::Release);
    }

    /// (tick → first byte, tick → complete frame), once both ends are stamped.
    fn sample(&self) -> Option<(i128, i128)> {
        let t = (*lock(&self.tick))?;
        let (first, complete) = (*lock(&self.order))?;
        let signed = |a: Instant| match a.checked_duration_since(t) {
            Some(d) => d.as_nanos() as i128,
            None => -(t.duration_since(a).as_nanos() as i128),
        };
        Some((signed(first), signed(complete)))
    }
}

fn upstream(to: SocketAddr) -> TcpStream {
    let u = TcpStream::connect(to).expect("simulator");
    u.set_nodelay(true).expect("nodelay");
    u
}

/// The market proxy: one thread per direction and connection, blocking reads; the simulator → bot direction
/// stamps the crossing ticker after its write returns.
fn market_proxy(to: SocketAddr, stamps: Arc<Stamps>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            c.set_nodelay(true).expect("nodelay");
            let mut u = upstream(to);
            let (mut c2, mut u2) = (c.try_clone().expect("clone"), u.try_clone().expect("clone"));
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut u2);
                let _ = u2.shutdown(std::net::Shutdown::Both);
            });
            let stamps = stamps.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                // The end of the previous read, in case a ticker is split across two.
                let mut tail: Vec<u8> = Vec::new();
                loop {
                    let n = match u.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let chunk = &buf[..n];
                    let mine = stamps.state.load(Ordering::Acquire) == ARMED && {
                        tail.extend_from_slice(chunk);
                        let bid = lock(&stamps.bid).clone();
                        let hit = contains(&tail, b"btcusdt@bookTicker")
                            && contains(&tail, bid.as_bytes());
                        let keep = tail.len().saturating_sub(128);
                        tail.drain(..keep);
                        hit
                    };
                    if mine {
                        stamps.state.store(WRITING, Ordering::Release);
                    }
                    if c.write_all(chunk).is_err() {
                        break;
                    }
                    if mine {
                        *lock(&stamps.tick) = Some(Instant::now());
                        stamps.state.store(TICKED, Ordering::Release);
                    }
                }
                let _ = c.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    addr
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The WebSocket-API proxy: with `spin_core`, one busy-polling thread pinned there reads every bot → simulator
/// connection (non-blocking), stamps, forwards; without, a thread per connection blocks in `read` and stamps
/// when it has woken up (`TICK_TO_WIRE_SPIN=0`, for comparison). A plain thread per connection copies the
/// simulator's replies back.
fn api_proxy(to: SocketAddr, stamps: Arc<Stamps>, spin_core: Option<usize>) -> SocketAddr {
    use aegis_benches::spin::{pin, try_read, write_all_spin, ClientFrames};
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = crossbeam_channel::unbounded::<(TcpStream, TcpStream)>();
    let blocking_stamps = stamps.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            c.set_nodelay(true).expect("nodelay");
            let mut u = upstream(to);
            let (mut c2, mut u2) = (c.try_clone().expect("clone"), u.try_clone().expect("clone"));
            if spin_core.is_some() {
                c.set_nonblocking(true).expect("nonblocking");
            }
            std::thread::spawn(move || {
                // `c2` shares the non-blocking flag of `c`.
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = u2.read(&mut buf) {
                    if n == 0 || write_all_spin(&mut c2, &buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c2.shutdown(std::net::Shutdown::Both);
            });
            if spin_core.is_some() {
                if tx.send((c, u)).is_err() {
                    break;
                }
                continue;
            }
            let stamps = blocking_stamps.clone();
            std::thread::spawn(move || {
                let mut frames = ClientFrames::with_upgrade();
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = c.read(&mut buf) {
                    let at = Instant::now();
                    if n == 0 || !forward(&stamps, &mut u, &mut frames, &buf[..n], at) {
                        break;
                    }
                }
                let _ = u.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    let Some(core) = spin_core else {
        return addr;
    };
    std::thread::spawn(move || {
        if !pin(core) {
            eprintln!("ws-api proxy: not pinned to core {core}");
        }
        let mut conns: Vec<(TcpStream, TcpStream, ClientFrames)> = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Ok((c, u)) = rx.try_recv() {
                conns.push((c, u, ClientFrames::with_upgrade()));
            }
            let mut idle = true;
            conns.retain_mut(|(c, u, frames)| {
                let n = match try_read(c, &mut buf) {
                    Ok(None) => return true,
                    Ok(Some(0)) | Err(_) => {
                        let _ = u.shutdown(std::net::Shutdown::Both);
                        return false;
                    }
                    Ok(Some(n)) => n,
                };
                let at = Instant::now();
                idle = false;
                forward(&stamps, u, frames, &buf[..n], at)
            });
            if idle {
                std::hint::spin_loop();
            }
        }
    });
    addr
}

/// Forwards bytes the bot wrote (read at `at`) to the simulator and stamps the first `order.place` frame of an
/// armed sample. False when the simulator's side is gone.
fn forward(
    stamps: &Stamps,
    u: &mut TcpStream,
    frames: &mut aegis_benches::spin::ClientFrames,
    bytes: &[u8],
    at: Instant,
) -> bool {
    if u.write_all(bytes).is_err() {
        return false;
    }
    frames.feed(bytes, at, |f| {
        if f.opcode == 1
            && stamps.state.load(Ordering::Acquire) >= WRITING
            && contains(f.payload, b"\"order.place\"")
        {
            lock(&stamps.order).get_or_insert((f.first_byte, f.complete));
        }
    });
    true
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
            // Messages every millisecond: BTCUSDT is pinned (only the bench's quotes move it) and a quote that
            // leaves the top unchanged is not published, so the bot reads a fraction of what is generated; the
            // default makes that about 10,000 msg/s on a quiet machine (the run prints the rate it got).
            tick_ms: 1,
            messages_per_tick: std::env::var("TICK_TO_WIRE_MSGS_PER_TICK")
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(MSGS_PER_TICK),
            // The account (the bot's exits plus the manual orders) sends more than Binance's ORDERS limits allow;
            // at 80 % of them the bot halts new entries until the window ends, and each halt cost samples (the
            // 6-8 of ~500 per run that saw no order until 2026-12-07). The limits are not what is measured here.
            limits: Limits {
                orders_per_10s: 30_000,
                orders_per_minute: 180_000,
                ..Limits::default()
            },
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
    let proxied = std::env::var_os("TICK_TO_WIRE_PROXY").is_none_or(|v| v != "0");
    let stamps = Arc::new(Stamps::default());
    let (fstream, wsapi) = match proxied {
        true => {
            let core = std::env::var("TICK_TO_WIRE_SPIN_CORE")
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let m = market_proxy(sim.addr, stamps.clone());
            let spin = std::env::var_os("TICK_TO_WIRE_SPIN").is_none_or(|v| v != "0");
            let a = api_proxy(sim.addr, stamps.clone(), spin.then_some(core));
            (format!("ws://{m}"), format!("ws://{a}/ws-fapi/v1"))
        }
        false => (sim.ws_url(), format!("{}/ws-fapi/v1", sim.ws_url())),
    };
    let mut bot = Command::new(bin())
        .env_clear()
        // After `env_clear`, which also drops variables set before it (until 2026-12-07 this came first, so the
        // "gateway" runs measured the engine path too).
        .env("AEGIS_ORDER_PATH", &path)
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
        .env("BINANCE_FSTREAM_URL", &fstream)
        .env("BINANCE_WSAPI_URL", &wsapi)
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
    let hist = || Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("histogram");
    // At the bot's sockets: tick written → first byte of the order frame read, → the whole frame read.
    let (mut first, mut whole) = (hist(), hist());
    // The simulator's probe.
    let mut simh = hist();
    let (mut lost, mut sim_lost, mut early) = (0, 0, 0);
    let mut sample = |bid: &str, ask: &str| {
        probe.arm("btcusdt@bookTicker");
        stamps.arm(bid);
        quote(bid, ask);
        wait(Duration::from_secs(2), || {
            probe.sample().is_some() && (!proxied || stamps.sample().is_some())
        });
        match probe.sample() {
            Some(d) => simh.record(d.as_nanos().max(1) as u64).expect("record"),
            None => sim_lost += 1,
        }
        if proxied {
            match stamps.sample() {
                // The order's first byte was read before the market proxy took its timestamp (it was preempted
                // between its write and the clock read): not a valid sample, counted.
                Some((f, _)) if f < 0 => early += 1,
                Some((f, w)) => {
                    first.record((f as u64).max(1)).expect("record");
                    whole.record((w as u64).max(1)).expect("record");
                }
                None => lost += 1,
            }
        }
        stamps.state.store(IDLE, Ordering::Release);
    };
    let t0 = Instant::now();
    let cycles = std::env::var("TICK_TO_WIRE_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(CYCLES);
    for _ in 0..cycles {
        // Long 0.003 at ~60,000: 1 % down crosses its 0.6 % stop.
        sample("59400.0", "59400.1");
        wait(Duration::from_secs(2), || net_btc(&admin).abs() < 1e-9);
        manual(&base, "SELL");
        std::thread::sleep(Duration::from_millis(30));
        // Short 0.003 at ~59,400: back up to 60,000 crosses its stop.
        sample("60000.0", "60000.1");
        wait(Duration::from_secs(2), || net_btc(&admin).abs() < 1e-9);
        manual(&base, "BUY");
        std::thread::sleep(Duration::from_millis(30));
    }
    let took = t0.elapsed();
    // The bot says so (a warning) when it runs the old path: check it ran the path asked for.
    let bot_log = std::fs::read_to_string(&log).unwrap_or_default();
    let gateway_seen = bot_log.contains("the old gateway thread");
    assert_eq!(
        gateway_seen,
        path == "gateway",
        "the bot did not run the {path} order path"
    );
    let rate = (messages() - m0) as f64 / took.as_secs_f64();
    let _ = bot.kill();
    let _ = bot.wait();
    let line = |what: &str, h: &Histogram<u64>, lost: usize| {
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "  {what}: {} samples ({lost} without one): min {:.1} us, p10 {:.1} us, p50 {:.1} us, p90 {:.1} us, \
             p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
            h.len(),
            h.min() as f64 / 1000.0,
            us(0.1),
            us(0.5),
            us(0.9),
            us(0.99),
            us(0.999),
            h.max() as f64 / 1000.0
        );
    };
    println!(
        "tick_to_wire ({path} order path): {cycles} cycles in {took:.0?}, the bot reading {rate:.0} market msg/s"
    );
    if proxied {
        line(
            match std::env::var_os("TICK_TO_WIRE_SPIN").is_none_or(|v| v != "0") {
                true => "at the bot's sockets, tick write returned -> first byte of order.place read (busy-polled)",
                false => "at the bot's sockets, tick write returned -> first byte of order.place read (blocking read, after the wake-up)",
            },
            &first,
            lost,
        );
        line(
            "at the bot's sockets, tick write returned -> whole order.place frame read",
            &whole,
            lost,
        );
        println!("  ({early} samples dropped: the order's first byte was read before the tick's write was stamped)");
    }
    line(
        match proxied {
            true => "simulator's probe (its tokio write -> its tokio read, + 2 proxy hops)",
            false => "simulator's probe (its tokio write -> its tokio read)",
        },
        &simh,
        sim_lost,
    );
    if lost > 0 || sim_lost > 0 {
        eprintln!("bot log: {bot_log}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    rt.block_on(sim.shutdown());
}
