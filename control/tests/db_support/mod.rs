//! Shared by the `db_*` integration tests: a throw-away database per test on the real Postgres
//! (`AEGIS_TEST_PG`, default `127.0.0.1:5432`, user postgres, trust auth), journal helpers, event generators and a
//! pausable TCP proxy to simulate an outage without touching the shared server.
#![allow(dead_code)]

use aegis_control::db::{spawn_writer, DbState, WriterConfig, WriterHandle};
use aegis_control::journal::{self, JournalRecord, JournalStats, JournalWriter};
use aegis_shared::event::{
    BreakerChange, BreakerEvent, BreakerScope, EngineEvent, EngineState, Fill, HaltReason,
    Liquidity, OrderEvent, OrderIntent, OrderStatus, OrderType, PositionUpdate, TimeInForce,
    TripReason,
};
use aegis_shared::mode::{Side, StrategyMode};
use aegis_shared::{ClientOrderId, Command, Notional, Price, Qty, Secret, Symbol};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{Client, NoTls};

pub fn pg_addr() -> String {
    std::env::var("AEGIS_TEST_PG").unwrap_or_else(|_| "127.0.0.1:5432".into())
}

pub fn pg_port() -> u16 {
    pg_addr().rsplit(':').next().unwrap().parse().unwrap()
}

pub fn pg_host() -> String {
    pg_addr().rsplit_once(':').unwrap().0.to_string()
}

pub async fn admin() -> Client {
    let url = format!("postgres://postgres@{}/postgres?sslmode=disable", pg_addr());
    let (c, conn) = tokio_postgres::connect(&url, NoTls).await.expect(
        "Postgres at 127.0.0.1:5432 (user postgres, trust auth) is needed for the db_* tests",
    );
    tokio::spawn(conn);
    c
}

/// A database that exists for one test and is dropped (forcibly) when this value is dropped.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub async fn create(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000;
        let name = format!(
            "aegis_t_{tag}_{}_{}_{}",
            std::process::id(),
            nanos,
            N.fetch_add(1, Ordering::Relaxed)
        );
        admin()
            .await
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        Self { name }
    }

    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@{}/{}?sslmode=disable",
            pg_addr(),
            self.name
        )
    }

    pub fn url_via(&self, port: u16) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{port}/{}?sslmode=disable&connect_timeout=2",
            self.name
        )
    }

    pub async fn client(&self) -> Client {
        aegis_control::db::connect(&self.url()).await.unwrap()
    }

    pub async fn migrated_client(&self) -> Client {
        let mut c = self.client().await;
        aegis_control::db::run_migrations(&mut c).await.unwrap();
        c
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Synchronous on purpose: runs even while a failing test unwinds.
        let _ = std::process::Command::new("psql")
            .args([
                "-X",
                "-q",
                "-h",
                &pg_host(),
                "-p",
                &pg_port().to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// The first column of the one row `sql` returns: a count, a role, a hash.
pub async fn one<T: for<'a> FromSql<'a>>(
    c: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> T {
    c.query_one(sql, params).await.unwrap().get(0)
}

/// The first column of every row `sql` returns, in the query's order.
pub async fn column<T: for<'a> FromSql<'a>>(c: &Client, sql: &str) -> Vec<T> {
    c.query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Runs `sql` with triggers off, as a superuser can: how a forger gets past the append-only rules.
pub async fn bypass_triggers(c: &Client, sql: &str) {
    c.batch_execute(&format!(
        "SET session_replication_role = replica; {sql}; RESET session_replication_role;"
    ))
    .await
    .unwrap();
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "aegis-dbtest-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A fresh database and a fresh journal (in a temp dir), both named after `tag`: the journal writer and the
/// journal's directory.
pub async fn db_and_journal(tag: &str) -> (TestDb, JournalWriter, PathBuf) {
    let db = TestDb::create(tag).await;
    let (jw, jdir) = open_journal(&temp_dir(tag));
    (db, jw, jdir)
}

/// Opens (creates) a journal in `data_dir/journal`. Returns the writer and the journal directory.
pub fn open_journal(data_dir: &std::path::Path) -> (JournalWriter, PathBuf) {
    let dir = journal::dir_in(data_dir);
    let (w, _rec) = journal::open(&dir, Duration::from_millis(0)).unwrap();
    (w, dir)
}

fn sym(s: &str) -> Symbol {
    Symbol::new(s).unwrap()
}

/// A deterministic fill `i`: varying symbol, side, price, qty, fee and (possibly negative) PnL, exact decimals.
pub fn fill(i: u64) -> Fill {
    let symbol = if i.is_multiple_of(3) {
        "ETHUSDT"
    } else {
        "BTCUSDT"
    };
    Fill {
        ts_ms: 1_700_000_000_000 + i * 7,
        symbol: sym(symbol),
        market: aegis_shared::Market::Futures,
        client_id: ClientOrderId::new(&format!("ag1-{i}")).unwrap(),
        exchange_order_id: 1_000_000 + i,
        trade_id: 5_000_000 + i,
        split_part: 0,
        mode: if i.is_multiple_of(2) {
            StrategyMode::Scalp
        } else {
            StrategyMode::Swing
        },
        intent: OrderIntent::Entry,
        side: if i.is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        },
        price: Price::from_units(2_000_000_000_000 + (i as i64 % 997) * 12_345_678),
        qty: Qty::from_units(100_000 + (i as i64 % 13) * 1_000_001),
        fee: Notional::from_units(40_000 + (i as i64 % 17) * 3),
        fee_asset: sym("USDT"),
        liquidity: if i.is_multiple_of(5) {
            Liquidity::Maker
        } else {
            Liquidity::Taker
        },
        realized_pnl: Notional::from_units((i as i64 % 11 - 5) * 123_456_789),
        fee_conv: Default::default(),
    }
}

pub fn order(i: u64, status: OrderStatus) -> OrderEvent {
    OrderEvent {
        ts_ms: 1_700_000_000_000 + i * 7,
        symbol: sym("BTCUSDT"),
        market: aegis_shared::Market::Futures,
        client_id: ClientOrderId::new(&format!("ag1-o{}", i / 2)).unwrap(),
        exchange_id: if status == OrderStatus::PendingNew {
            None
        } else {
            Some(9_000_000 + i / 2)
        },
        mode: StrategyMode::Scalp,
        intent: OrderIntent::Entry,
        side: Side::Buy,
        order_type: OrderType::Limit,
        tif: Some(TimeInForce::Gtc),
        price: Price::parse("20000.5").unwrap(),
        qty: Qty::parse("0.002").unwrap(),
        filled: if status == OrderStatus::Filled {
            Qty::parse("0.002").unwrap()
        } else {
            Qty::ZERO
        },
        reduce_only: false,
        status,
        reject_code: 0,
    }
}

pub fn position(i: u64) -> PositionUpdate {
    PositionUpdate {
        ts_ms: 1_700_000_000_000 + i * 7,
        symbol: sym("BTCUSDT"),
        market: aegis_shared::Market::Futures,
        mode: StrategyMode::Scalp,
        qty: Qty::from_units(i as i64 * 100_000 - 500_000),
        entry_price: Price::parse("20000.5").unwrap(),
        realized_pnl: Notional::from_units(i as i64 * 3),
        fees: Notional::from_units(i as i64),
        funding: Default::default(),
    }
}

/// The record for step `i` of a realistic mixed stream: mostly fills, with orders, positions and the occasional
/// breaker trip, kill-switch halt and operator command.
pub fn record(i: u64) -> JournalRecord {
    match i % 10 {
        0 => JournalRecord::Engine(EngineEvent::Order(order(i, OrderStatus::PendingNew))),
        1 => JournalRecord::Engine(EngineEvent::Order(order(i, OrderStatus::Filled))),
        2 => JournalRecord::Engine(EngineEvent::Position(position(i))),
        3 if i % 1000 == 3 => JournalRecord::Engine(EngineEvent::Breaker(BreakerEvent {
            ts_ms: 1_700_000_000_000 + i,
            scope: BreakerScope::Mode(StrategyMode::Scalp),
            change: BreakerChange::Tripped {
                reason: TripReason::ConsecutiveLosses,
                until_ms: 1_700_000_900_000 + i,
            },
        })),
        4 if i % 1000 == 4 => JournalRecord::Engine(EngineEvent::State {
            ts_ms: 1_700_000_000_000 + i,
            state: EngineState::Halted {
                reason: HaltReason::KillSwitch,
            },
        }),
        5 if i % 1000 == 5 => JournalRecord::Command(journal::CommandRecord {
            ts_ms: 1_700_000_000_000 + i,
            command: Command::Kill { flatten: true },
            source: "api:alice@203.0.113.7".into(),
        }),
        _ => JournalRecord::Engine(EngineEvent::Fill(fill(i))),
    }
}

/// Totals of what was journaled, to compare with Postgres.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub fills: i64,
    pub qty: i128,
    pub fees: i128,
    pub pnl: i128,
    pub order_events: i64,
    pub positions: i64,
    pub breakers: i64,
    pub commands: i64,
    pub kill_states: i64,
}

impl Totals {
    pub fn add(&mut self, r: &JournalRecord) {
        match r {
            JournalRecord::Engine(EngineEvent::Fill(f)) => {
                self.fills += 1;
                self.qty += f.qty.units() as i128;
                self.fees += f.fee.units() as i128;
                self.pnl += f.realized_pnl.units() as i128;
            }
            JournalRecord::Engine(EngineEvent::Order(_)) => self.order_events += 1,
            JournalRecord::Engine(EngineEvent::Position(_)) => self.positions += 1,
            JournalRecord::Engine(EngineEvent::Breaker(_)) => self.breakers += 1,
            JournalRecord::Engine(EngineEvent::State { .. }) => self.kill_states += 1,
            JournalRecord::Command(_) => self.commands += 1,
            _ => {}
        }
    }

    /// The same totals as Postgres holds them.
    pub async fn from_db(c: &Client) -> Totals {
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM fills), \
                 (SELECT coalesce(sum(qty), 0) * 100000000 FROM fills)::text, \
                 (SELECT coalesce(sum(fee), 0) * 100000000 FROM fills)::text, \
                 (SELECT coalesce(sum(realized_pnl), 0) * 100000000 FROM fills)::text, \
                 (SELECT count(*) FROM order_events), (SELECT count(*) FROM position_snapshots), \
                 (SELECT count(*) FROM breaker_events), (SELECT count(*) FROM commands), \
                 (SELECT count(*) FROM engine_events WHERE kind = 'state')",
                &[],
            )
            .await
            .unwrap();
        let units = |i: usize| -> i128 {
            let s: String = r.get(i);
            // "123.00000000" -> 123 (sums of 1e-8 units times 1e8 are integers).
            s.split('.').next().unwrap().parse().unwrap()
        };
        Totals {
            fills: r.get(0),
            qty: units(1),
            fees: units(2),
            pnl: units(3),
            order_events: r.get(4),
            positions: r.get(5),
            breakers: r.get(6),
            commands: r.get(7),
            kill_states: r.get(8),
        }
    }
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the writer is connected and has stored all the journal has made durable, with no lag left. The
/// durable offset is read on every poll, so this also follows a journal that is still being written.
pub async fn wait_caught_up(h: &WriterHandle, stats: &JournalStats, timeout: Duration, what: &str) {
    wait_until(timeout, what, || {
        let hh = h.health();
        let durable = stats.durable_offset();
        async move {
            hh.state == DbState::Connected && hh.stored_offset == durable && hh.lag_records == 0
        }
    })
    .await;
}

/// Journals `records` and has a fresh writer (polling every 5 ms) store them all before it is shut down.
pub async fn store_all(db: &TestDb, data_dir: &std::path::Path, records: &[JournalRecord]) {
    let (mut jw, jdir) = open_journal(data_dir);
    for r in records {
        jw.append(r).unwrap();
    }
    jw.sync().unwrap();
    let mut cfg = WriterConfig::new(Secret::new(db.url()));
    cfg.idle_poll = Duration::from_millis(5);
    let h = spawn_writer(cfg, jdir, jw.stats());
    wait_caught_up(&h, &jw.stats(), Duration::from_secs(15), "writer").await;
    h.shutdown(Duration::from_secs(5)).await;
}

/// A TCP proxy to the test Postgres that can be paused (all connections cut, new ones refused) and resumed.
pub struct Proxy {
    pub port: u16,
    paused: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let paused = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (p, c) = (paused.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if p.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(pg_addr()).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut up).await;
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        });
        Self {
            port,
            paused,
            conns,
            accept,
        }
    }

    /// Cuts every open connection and refuses new ones: Postgres is "down".
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Postgres is back.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}
