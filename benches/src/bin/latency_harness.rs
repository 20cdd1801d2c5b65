//! End-to-end latency harness: simulated market frames over a loopback TCP socket (WebSocket text-frame framing)
//! into the real engine message path on a pinned core, a signed order written back to a socket for every tick,
//! hdrhistogram percentiles, and `benches/REPORT.md` (with the criterion medians of the last `cargo bench`).
//!
//! Run: `cargo run --release -p aegis-benches --bin latency_harness` (after `cargo bench -p aegis-benches` for
//! the criterion part of the report). `--secs N` sets the seconds per fixed-rate run (default 3).

use aegis_benches::{fixtures, report};
use aegis_engine::book::TopOfBook;
use aegis_engine::sign::{OrderRequest, RespType};
use aegis_engine::SymbolSpec;
use aegis_shared::event::{OrderType, TimeInForce};
use aegis_shared::ids::ClientOrderIdGen;
use aegis_shared::{Qty, Side};
use hdrhistogram::Histogram;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Server-to-client WebSocket text frame header (unmasked, FIN set).
fn ws_frame(payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x81);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// One complete frame at the front of `buf`: (payload range, total length). Allocation-free.
fn next_frame(buf: &[u8]) -> Option<(std::ops::Range<usize>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (len, hdr) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    (buf.len() >= hdr + len).then_some((hdr..hdr + len, hdr + len))
}

struct RunResult {
    name: String,
    target_rate: Option<u64>,
    messages: u64,
    orders: u64,
    secs: f64,
    engine: Histogram<u64>,
    signed: Histogram<u64>,
    written: Histogram<u64>,
}

/// Producer: sends `frames` paced at `rate` msgs/s (None = as fast as possible) and drains the order socket.
fn produce(
    mut feed: TcpStream,
    mut orders: TcpStream,
    frames: Vec<Vec<u8>>,
    rate: Option<u64>,
) -> u64 {
    orders.set_nonblocking(true).ok();
    let mut sink = vec![0u8; 1 << 20];
    let mut drained = 0u64;
    let start = Instant::now();
    let period_ns = rate.map(|r| 1_000_000_000 / r);
    for (i, f) in frames.iter().enumerate() {
        if let Some(p) = period_ns {
            let due = Duration::from_nanos(p * i as u64);
            while start.elapsed() < due {
                if let Ok(n) = orders.read(&mut sink) {
                    drained += n as u64;
                }
                std::hint::spin_loop();
            }
        }
        if feed.write_all(f).is_err() {
            break;
        }
        if period_ns.is_none() && i.is_multiple_of(64) {
            if let Ok(n) = orders.read(&mut sink) {
                drained += n as u64;
            }
        }
    }
    drop(feed);
    // Drain what is left until the consumer closes.
    orders.set_nonblocking(false).ok();
    while let Ok(n) = orders.read(&mut sink) {
        if n == 0 {
            break;
        }
        drained += n as u64;
    }
    drained
}

fn run(name: &str, rate: Option<u64>, n: usize, msgs: &[Vec<u8>], pin: Option<usize>) -> RunResult {
    let frames: Vec<Vec<u8>> = msgs
        .iter()
        .cycle()
        .take(n)
        .map(|m| {
            let mut f = Vec::with_capacity(m.len() + 10);
            ws_frame(m, &mut f);
            f
        })
        .collect();
    let feed_l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let order_l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let (fa, oa) = (
        feed_l.local_addr().expect("addr"),
        order_l.local_addr().expect("addr"),
    );
    let producer = std::thread::spawn(move || {
        let feed = TcpStream::connect(fa).expect("connect feed");
        feed.set_nodelay(true).ok();
        let (orders, _) = order_l.accept().expect("accept orders");
        produce(feed, orders, frames, rate)
    });
    let (mut feed, _) = feed_l.accept().expect("accept feed");
    let mut orders_out = TcpStream::connect(oa).expect("connect orders");
    orders_out.set_nodelay(true).ok();
    feed.set_nonblocking(true).expect("nonblocking");
    if let Some(core) = pin {
        core_affinity::set_for_current(core_affinity::CoreId { id: core });
    }

    let (mut engine, ctl) = fixtures::bench_engine();
    let mut enc = fixtures::hmac_encoder();
    let prec = fixtures::btc_precision();
    let spec = SymbolSpec::btcusdt();
    let mut ids = ClientOrderIdGen::new(1_704_067_200_000);
    let mut h_engine = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("hdr bounds");
    let mut h_signed = h_engine.clone();
    let mut h_written = h_engine.clone();
    let mut buf = vec![0u8; 1 << 20];
    let (mut have, mut messages, mut orders) = (0usize, 0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut ts = 1_704_067_200_000u64;
    loop {
        match feed.read(&mut buf[have..]) {
            Ok(0) => break,
            Ok(k) => have += k,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::hint::spin_loop();
                continue;
            }
            Err(_) => break,
        }
        let mut off = 0;
        while let Some((range, total)) = next_frame(&buf[off..have]) {
            let t_rx = Instant::now();
            first.get_or_insert(t_rx);
            let payload = &buf[off + range.start..off + range.end];
            engine.on_message(payload);
            let t_engine = Instant::now();
            messages += 1;
            // A signed order for every tick at the new BTC touch: the cost of a tick on which a signal fires.
            let top: TopOfBook = engine.top(0).copied().unwrap_or_default();
            if top.is_valid() {
                ts += 1;
                let o = OrderRequest {
                    symbol: spec.symbol,
                    side: Side::Buy,
                    order_type: OrderType::Limit,
                    tif: Some(TimeInForce::Gtx),
                    qty: Qty::from_units(1_000_000),
                    price: top.bid.floor_to(spec.filters.tick_size),
                    reduce_only: false,
                    client_id: ids.next_id(),
                    resp_type: RespType::Ack,
                };
                if let Ok(q) = enc.rest_order(&o, &prec, ts) {
                    let t_signed = Instant::now();
                    if orders_out.write_all(q).is_ok() {
                        let t_written = Instant::now();
                        orders += 1;
                        let _ = h_signed.record((t_signed - t_rx).as_nanos() as u64);
                        let _ = h_written.record((t_written - t_rx).as_nanos() as u64);
                    }
                }
            }
            let _ = h_engine.record((t_engine - t_rx).as_nanos() as u64);
            off += total;
            if messages.is_multiple_of(1024) {
                // Outside the timed region: keep the engine's queues from filling (that would halt entries).
                while ctl.events.try_recv().is_ok() {}
                while ctl.stats.try_recv().is_ok() {}
            }
        }
        buf.copy_within(off..have, 0);
        have -= off;
    }
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    drop(orders_out);
    let _ = producer.join();
    RunResult {
        name: name.to_string(),
        target_rate: rate,
        messages,
        orders,
        secs,
        engine: h_engine,
        signed: h_signed,
        written: h_written,
    }
}

fn q(h: &Histogram<u64>, p: f64) -> String {
    report::fmt_ns(h.value_at_quantile(p) as f64)
}

fn row(label: &str, h: &Histogram<u64>) -> String {
    format!(
        "| {label} | {} | {} | {} | {} | {} | {} |",
        h.len(),
        q(h, 0.5),
        q(h, 0.9),
        q(h, 0.99),
        q(h, 0.999),
        report::fmt_ns(h.max() as f64)
    )
}

fn ratio(results: &[report::BenchResult], ours: &str, usual: &str) -> Option<(f64, f64, f64)> {
    let a = results.iter().find(|r| r.id == ours)?.median_ns;
    let b = results.iter().find(|r| r.id == usual)?.median_ns;
    Some((a, b, b / a))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args
        .iter()
        .position(|a| a == "--secs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let pin = cores.last().map(|c| c.id);
    let msgs = fixtures::sim_messages(100_000);
    let mut results = Vec::new();
    for rate in [10_000u64, 100_000] {
        let n = (rate * secs) as usize;
        eprintln!("running {rate} msg/s for {secs} s ...");
        results.push(run(&format!("{rate} msg/s"), Some(rate), n, &msgs, pin));
    }
    eprintln!("running max rate ...");
    results.push(run("max rate", None, 500_000, &msgs, pin));

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut md = String::new();
    md.push_str("# Aegis hot-path benchmark report\n\n");
    md.push_str("Written by `latency_harness` (benches/src/bin/latency_harness.rs).\n\n");
    md.push_str(&format!("- Machine: {}\n", report::machine()));
    md.push_str(&format!(
        "- Load average when the harness ran: {} (other processes on the machine inflate every number)\n",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    ));
    md.push_str("- Commands: `cargo bench -p aegis-benches` then `cargo run --release -p aegis-benches --bin latency_harness`\n\n");

    md.push_str("## End-to-end (loopback TCP, WebSocket framing, real engine message path, pinned core)\n\n");
    md.push_str("The \"max rate\" run is limited by the producer thread (one `write()` per frame), not by the \
                 engine; the engine's own throughput is the criterion `throughput/engine_on_message_batch_10k` \
                 figure. The live venue does not sign inside the engine yet, so the harness signs after \
                 `on_message` returns, with the same `OrderEncoder` the venue will use.\n\n");
    md.push_str("Per frame: receipt (complete frame in the read buffer) → `Engine::on_message` (parse → book → all four \
                 modes' signals → risk gate → paper venue) → a LIMIT order at the new BTC touch signed (pre-keyed \
                 HMAC, REST query) in a reused buffer → `write()` to a loopback socket.\n\n");
    for r in &results {
        let thr = r.messages as f64 / r.secs.max(1e-9);
        md.push_str(&format!(
            "### {} — {} messages, {} orders in {:.2} s = {:.0} msgs/s{}\n\n",
            r.name,
            r.messages,
            r.orders,
            r.secs,
            thr,
            r.target_rate
                .map_or(String::new(), |t| format!(" (target {t}/s)"))
        ));
        md.push_str("| stage (from frame receipt) | samples | p50 | p90 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|\n");
        md.push_str(&row("engine on_message done", &r.engine));
        md.push('\n');
        md.push_str(&row("signed order bytes ready", &r.signed));
        md.push('\n');
        md.push_str(&row("order bytes written (write() returned)", &r.written));
        md.push_str("\n\n");
    }

    let crit = report::criterion_results(&report::target_dir());
    md.push_str("## Criterion medians (last `cargo bench -p aegis-benches`)\n\n");
    if crit.is_empty() {
        md.push_str("No criterion results found under target/criterion: run `cargo bench -p aegis-benches` first.\n\n");
    } else {
        md.push_str("| bench | median | per element |\n|---|---|---|\n");
        for c in &crit {
            let per = c.elements.map_or(String::new(), |e| {
                format!(
                    "{} ({:.2} M/s)",
                    report::fmt_ns(c.median_ns / e as f64),
                    e as f64 / c.median_ns * 1e3
                )
            });
            md.push_str(&format!(
                "| {} | {} | {} |\n",
                c.id,
                report::fmt_ns(c.median_ns),
                per
            ));
        }
        md.push_str("\n## Aegis vs the usual way (ratio = usual / Aegis, medians)\n\n| stage | Aegis | usual | ratio |\n|---|---|---|---|\n");
        for (label, a, b) in [
            (
                "parse bookTicker",
                "parse/aegis_book_ticker",
                "parse/usual_book_ticker",
            ),
            (
                "parse aggTrade",
                "parse/aegis_agg_trade",
                "parse/usual_agg_trade",
            ),
            (
                "parse depthUpdate (1 level)",
                "parse/aegis_depth_update_1",
                "parse/usual_depth_update_1",
            ),
            (
                "parse depthUpdate (10 levels)",
                "parse/aegis_depth_update_10",
                "parse/usual_depth_update_10",
            ),
            (
                "HMAC only (pre-keyed vs re-keyed)",
                "sign/aegis_hmac_only_prekeyed_hex",
                "sign/usual_hmac_only_rekeyed_hex_encode",
            ),
            (
                "REST order: build + sign",
                "sign/aegis_rest_hmac_order",
                "sign/usual_rest_hmac_order",
            ),
            (
                "WS-API order.place: build + sign",
                "sign/aegis_ws_hmac_order_place",
                "sign/usual_ws_hmac_order_place",
            ),
            (
                "WS-API order.place after session.logon vs usual signed",
                "sign/aegis_ws_session_order_place",
                "sign/usual_ws_hmac_order_place",
            ),
            (
                "tick → signed REST order (parse+book+sign)",
                "tick_to_order/aegis_parse_book_sign_rest",
                "tick_to_order/usual_parse_book_sign_rest",
            ),
        ] {
            if let Some((x, y, r)) = ratio(&crit, a, b) {
                md.push_str(&format!(
                    "| {label} | {} | {} | {r:.1}× |\n",
                    report::fmt_ns(x),
                    report::fmt_ns(y)
                ));
            }
        }
        md.push('\n');
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("REPORT.md");
    match std::fs::write(&path, &md) {
        Ok(()) => eprintln!("wrote {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
    print!("{md}");
}
