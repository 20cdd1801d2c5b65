//! Persistence harness: fills through the journal (fsync-batched, as the pump does it) and the batched writer into
//! Postgres.
//!
//! Two runs:
//! 1. **Sustained**: the producer journals fills as fast as it can (batches of 256, `write` + `fsync`), the writer
//!    follows. Reports journal fills/s, end-to-end fills/s (first append to last row committed in Postgres), and
//!    fill-to-durable / fill-to-Postgres latency under that saturation.
//! 2. **Paced**: a steady `AEGIS_BENCH_RATE` fills/s (default 20,000) in 1 ms rounds with the journal's default
//!    5 ms fsync window and the pump waking the writer after each fsync. Reports fill-to-durable (journal) and
//!    fill-to-Postgres p50/p99/max.
//!
//! Needs Postgres at `AEGIS_BENCH_PG` (default 127.0.0.1:5432, user postgres, trust auth); skips otherwise.
//! `cargo bench -p aegis-benches --bench persistence` (`AEGIS_BENCH_FILLS` sets the sustained run's size,
//! `AEGIS_BENCH_FSYNC_MS` the journal's fsync window, default 5 like `JOURNAL_FSYNC_MS`).

use aegis_control::db::{spawn_writer, DbState, WriterConfig};
use aegis_control::journal::{self, JournalRecord};
use aegis_shared::event::{Fill, Liquidity, OrderIntent};
use aegis_shared::mode::{Side, StrategyMode};
use aegis_shared::{ClientOrderId, EngineEvent, Notional, Price, Qty, Secret, Symbol};
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pg_addr() -> String {
    std::env::var("AEGIS_BENCH_PG").unwrap_or_else(|_| "127.0.0.1:5432".into())
}

fn fill(i: u64) -> JournalRecord {
    let symbol = if i.is_multiple_of(3) {
        "ETHUSDT"
    } else {
        "BTCUSDT"
    };
    JournalRecord::Engine(EngineEvent::Fill(Fill {
        ts_ms: 1_700_000_000_000 + i,
        symbol: Symbol::new(symbol).expect("valid symbol"),
        market: aegis_shared::Market::Futures,
        client_id: ClientOrderId::new(&format!("ag1-{i}")).expect("valid id"),
        exchange_order_id: 1_000_000 + i,
        trade_id: i,
        split_part: 0,
        mode: StrategyMode::Scalp,
        intent: OrderIntent::Entry,
        side: if i.is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        },
        price: Price::from_units(2_000_000_000_000 + (i as i64 % 997) * 12_345_678),
        qty: Qty::from_units(100_000 + (i as i64 % 13) * 1_000_001),
        fee: Notional::from_units(40_000 + (i as i64 % 17) * 3),
        fee_asset: Symbol::new("USDT").expect("valid symbol"),
        liquidity: Liquidity::Taker,
        realized_pnl: Notional::from_units((i as i64 % 11 - 5) * 123_456_789),
        fee_conv: Default::default(),
    }))
}

struct Db {
    name: String,
}

impl Db {
    async fn create(tag: &str) -> Option<Self> {
        let url = format!("postgres://postgres@{}/postgres?sslmode=disable", pg_addr());
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .ok()?;
        tokio::spawn(conn);
        let name = format!("aegis_bench_{tag}_{}", std::process::id());
        c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
            .await
            .ok()?;
        c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .ok()?;
        Some(Self { name })
    }

    fn url(&self) -> String {
        format!(
            "postgres://postgres@{}/{}?sslmode=disable",
            pg_addr(),
            self.name
        )
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let (host, port) = pg_addr()
            .rsplit_once(':')
            .map(|(h, p)| (h.to_string(), p.to_string()))
            .unwrap_or(("127.0.0.1".into(), "5432".into()));
        let _ = std::process::Command::new("psql")
            .args([
                "-X", "-q", "-h", &host, "-p", &port, "-U", "postgres", "-d", "postgres", "-c",
            ])
            .arg(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aegis-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A chunk of fills the producer made durable: (end offset, number of fills, when they were appended).
type Chunk = (u64, u64, Instant);

struct Outcome {
    fills: u64,
    journal_secs: f64,
    e2e_secs: f64,
    durable: Histogram<u64>,
    to_pg: Histogram<u64>,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

/// Runs the producer on its own thread (like the pump) and tracks when Postgres has each chunk.
async fn run(tag: &str, fills: u64, rate: Option<u64>) -> Option<Outcome> {
    let db = Db::create(tag).await?;
    let data = temp_dir(tag);
    let jdir = journal::dir_in(&data);
    let window = Duration::from_millis(env_u64("AEGIS_BENCH_FSYNC_MS", 5));
    let (mut jw, _) = journal::open(&jdir, window).expect("journal");
    let stats = jw.stats();
    if rate == Some(0) {
        // Catch-up: everything is journaled while "Postgres is down", then the writer starts.
        for i in 0..fills {
            jw.append(&fill(i)).expect("append");
            if i % 256 == 255 {
                jw.sync().expect("fsync");
            }
        }
        jw.sync().expect("fsync");
        let start = Instant::now();
        let mut cfg = WriterConfig::new(Secret::new(db.url()));
        cfg.batch_max = 4096;
        let handle = spawn_writer(cfg, jdir.clone(), stats.clone());
        let mut health = handle.subscribe();
        let end = stats.durable_offset();
        while health.borrow_and_update().stored_offset < end {
            health.changed().await.ok()?;
        }
        let secs = start.elapsed().as_secs_f64();
        handle.shutdown(Duration::from_secs(5)).await;
        let _ = std::fs::remove_dir_all(&data);
        println!(
            "\n== catch-up: {fills} journaled fills into Postgres (incl. connect + migrate) ==\n\
             writer alone:                 {:>10.0} fills/s   ({secs:.2} s)",
            fills as f64 / secs
        );
        return None;
    }
    let mut cfg = WriterConfig::new(Secret::new(db.url()));
    cfg.batch_max = 4096;
    let handle = spawn_writer(cfg, jdir.clone(), stats.clone());
    let waker = handle.waker();
    let mut health = handle.subscribe();
    // Let it connect and migrate before the clock starts.
    while health.borrow().state != DbState::Connected {
        health.changed().await.ok()?;
    }

    let (tx, rx) = mpsc::channel::<Chunk>();
    let producer = std::thread::spawn(move || {
        let mut durable = hist();
        let mut pending: Vec<Chunk> = Vec::new();
        let start = Instant::now();
        let mut i = 0u64;
        let mut round = 0u64;
        let per_round = rate.map(|r| (r / 1000).max(1)).unwrap_or(256);
        while i < fills {
            if rate.is_some() {
                // Pace in 1 ms rounds.
                let due = start + Duration::from_millis(round);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                round += 1;
            }
            let t = Instant::now();
            let n = per_round.min(fills - i);
            for k in 0..n {
                jw.append(&fill(i + k)).expect("append");
            }
            i += n;
            jw.write().expect("write");
            let end = stats
                .written_offset
                .load(std::sync::atomic::Ordering::Acquire);
            pending.push((end, n, t));
            if jw.sync_due(Instant::now()) || i == fills {
                jw.sync().expect("fsync");
                let done = Instant::now();
                for (end, n, t) in pending.drain(..) {
                    durable
                        .record_n((done - t).as_micros().max(1) as u64, n)
                        .expect("in range");
                    let _ = tx.send((end, n, t));
                }
                waker.notify_one();
            }
        }
        (start, start.elapsed(), durable)
    });

    let mut to_pg = hist();
    let mut waiting: VecDeque<Chunk> = VecDeque::new();
    let mut stored = 0u64;
    let mut last_commit = Instant::now();
    while stored < fills {
        while let Ok(c) = rx.try_recv() {
            waiting.push_back(c);
        }
        let off = health.borrow_and_update().stored_offset;
        let now = Instant::now();
        while waiting.front().is_some_and(|c| c.0 <= off) {
            let (_, n, t) = waiting.pop_front().expect("front exists");
            to_pg
                .record_n((now - t).as_micros().max(1) as u64, n)
                .expect("in range");
            stored += n;
            last_commit = now;
        }
        if stored >= fills {
            break;
        }
        if waiting.is_empty() {
            // Nothing durable yet that Postgres lacks: wait for the producer.
            tokio::time::sleep(Duration::from_micros(200)).await;
        } else {
            let _ = tokio::time::timeout(Duration::from_millis(2), health.changed()).await;
        }
    }
    let (start, journal_time, durable) = producer.join().ok()?;
    handle.shutdown(Duration::from_secs(5)).await;
    let _ = std::fs::remove_dir_all(&data);
    Some(Outcome {
        fills,
        journal_secs: journal_time.as_secs_f64(),
        e2e_secs: (last_commit - start).as_secs_f64(),
        durable,
        to_pg,
    })
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn report(title: &str, o: &Outcome) {
    println!("\n== {title}: {} fills ==", o.fills);
    println!(
        "journal (append+write+fsync): {:>10.0} fills/s   ({:.2} s)",
        o.fills as f64 / o.journal_secs,
        o.journal_secs
    );
    println!(
        "end to end (in Postgres):     {:>10.0} fills/s   ({:.2} s)",
        o.fills as f64 / o.e2e_secs,
        o.e2e_secs
    );
    for (name, h) in [
        ("fill -> durable (journal)", &o.durable),
        ("fill -> Postgres (commit)", &o.to_pg),
    ] {
        println!(
            "{name}: p50 {}  p99 {}  p99.9 {}  max {}",
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max())
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would too. Nothing to filter here.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let fills = env_u64("AEGIS_BENCH_FILLS", 300_000);
        let rate = env_u64("AEGIS_BENCH_RATE", 20_000);
        let Some(sustained) = run("sustained", fills, None).await else {
            println!(
                "persistence bench skipped: no Postgres at {} (user postgres, trust auth)",
                pg_addr()
            );
            return;
        };
        report("sustained (as fast as possible)", &sustained);
        let _ = run("catchup", fills, Some(0)).await;
        if let Some(paced) = run("paced", rate * 5, Some(rate)).await {
            report(&format!("paced at {rate} fills/s for 5 s"), &paced);
        }
    });
}
