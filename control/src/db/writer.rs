//! The journal → Postgres writer: batched, idempotent, exactly-once, and never in anybody's way.
//!
//! # How it works
//! The writer is a tokio task with its own read handle on the journal file. It never receives events from the
//! trading path: it reads records the journal has already fsync'd (up to [`JournalStats::durable_offset`]),
//! starting at the offset stored in `writer_progress`, and writes each batch in **one transaction that also
//! stores the new offset** (guarded by the old one). A crash, a `kill -9` or a lost connection therefore leaves
//! either the whole batch and its offset, or neither: on restart the writer resumes exactly where the database
//! says it stopped. Every journal-sourced row also has a unique key (`journal_offset`, and
//! `(symbol, trade_id, split_part, market)` for fills) with `ON CONFLICT DO NOTHING`, so even replaying a journal into a
//! database whose progress row was lost or restored from an older backup stores nothing twice (daily PnL and audit
//! rows are derived only from rows that were actually inserted).
//!
//! A fill that was not inserted is compared with the stored row of its key: identical contents are an idempotent
//! replay; different contents are a **fill conflict**, kept in `fill_conflicts` (both versions), logged at error
//! level, counted in [`WriterHealth::fill_conflicts`] and raised as [`DbAlert::FillConflict`]. Never dropped
//! silently.
//!
//! # When Postgres is down or slow
//! Nothing upstream notices: the pump keeps journaling, the engine keeps trading. The writer reports
//! [`DbState::Down`] (or [`DbState::Lagging`] when it is more than [`WriterConfig::lag_alert_records`] behind),
//! sends a [`DbAlert`], retries with exponential backoff, and when the database answers again it catches up in
//! journal order from the stored offset.
//!
//! # What goes where
//! | journal record | rows |
//! |---|---|
//! | `Engine(Order)` | `order_events` (history) + `orders` (latest state per client id and market) |
//! | `Engine(Fill)` | `fills` + `daily_pnl` |
//! | `Engine(Position)` | `position_snapshots` |
//! | `Engine(Breaker)` | `breaker_events` + audit `breaker_trip` / `breaker_resume` / `breaker_reset` |
//! | `Engine(State)`, `Engine(Alert)`, `Session` | `engine_events` (+ audit `kill_switch` for a kill-switch halt) |
//! | `Command` | `commands` + audit `kill_switch` / `breaker_reset` / `command` |
//!
//! A command's `source` of the form `api:<user>@<ip>` is split into actor `api:<user>` and source IP `<ip>`;
//! any other source is the actor, with source IP `local`.

use super::connect::{connect_config, parse_url};
use super::wire::{Dec8, TsMs};
use super::{migrations, DbError};
use crate::journal::{Entry, JournalError, JournalReader, JournalRecord, JournalStats};
use aegis_shared::event::{
    BreakerChange, BreakerScope, EngineEvent, Liquidity, OrderIntent, OrderStatus, OrderType,
    TimeInForce, TripReason,
};
use aegis_shared::{Market, Secret};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Transaction};

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// `DATABASE_URL`.
    pub database_url: Secret<String>,
    /// Name of this journal stream in `writer_progress` (one row per journal).
    pub stream: String,
    /// Most journal records per transaction.
    pub batch_max: usize,
    /// How often to look for new durable records when nobody calls [`WriterHandle::wake`].
    pub idle_poll: Duration,
    /// First retry delay after a failure; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Lag (records) above which the state is [`DbState::Lagging`] and an alert fires.
    pub lag_alert_records: u64,
    /// Apply pending migrations after every (re)connect (cheap when up to date).
    pub migrate: bool,
    /// A batch not committed within this is abandoned (rolled back) and the connection renewed.
    pub write_timeout: Duration,
}

impl WriterConfig {
    /// Defaults for `url`: stream `main`, batches of 4,096, 20 ms idle poll, backoff 100 ms..10 s, lag alert at
    /// 50,000 records, migrations on, 30 s batch timeout.
    pub fn new(database_url: Secret<String>) -> Self {
        Self {
            database_url,
            stream: "main".into(),
            batch_max: 4096,
            idle_poll: Duration::from_millis(20),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            lag_alert_records: 50_000,
            migrate: true,
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// The writer's connection state, for `/api/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DbState {
    /// Not connected yet.
    Starting,
    /// Connected and (nearly) caught up.
    Connected,
    /// Connected, but more than `lag_alert_records` behind the journal.
    Lagging,
    /// Cannot write (connection refused/lost, or a statement keeps failing). The journal keeps everything.
    Down,
}

/// A snapshot of the writer's health.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WriterHealth {
    /// Connection state.
    pub state: DbState,
    /// Journal records not yet in Postgres.
    pub lag_records: u64,
    /// Journal offset up to which everything is in Postgres.
    pub stored_offset: u64,
    /// Journal records stored (or consumed) since the journal began.
    pub stored_records: u64,
    /// Journal offset up to which the journal is fsync'd.
    pub durable_offset: u64,
    /// Wall time (ms) when `state` last changed.
    pub since_ms: u64,
    /// The last error (Postgres/IO text; never the URL).
    pub last_error: Option<String>,
    /// Rows in `fill_conflicts`: journaled fills whose key was already stored with different contents (0 is the
    /// only healthy value).
    pub fill_conflicts: u64,
}

impl WriterHealth {
    /// True unless connected and caught up: `/api/health` reports "degraded".
    pub fn is_degraded(&self) -> bool {
        self.state != DbState::Connected
    }
}

/// Alerts the writer raises; the runtime forwards them to its alert channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbAlert {
    /// Postgres cannot be written. Trading continues; the journal holds everything.
    Down {
        /// Why.
        error: String,
        /// Records waiting.
        lag_records: u64,
    },
    /// The writer fell more than the configured number of records behind.
    Lagging {
        /// Records waiting.
        lag_records: u64,
    },
    /// Postgres is writable again (after being down) and the writer is catching up.
    Recovered {
        /// How long it was down.
        down_for_ms: u64,
        /// Records to catch up.
        lag_records: u64,
    },
    /// The writer caught up after lagging or an outage.
    CaughtUp {
        /// Records stored in total.
        stored_records: u64,
    },
    /// A journaled fill's key `(symbol, trade_id, split_part, market)` is already stored with different contents.
    /// The fill is kept in `fill_conflicts`.
    FillConflict {
        /// Journal offset of the fill that was not stored in `fills`.
        journal_offset: u64,
        /// Journal offset of the fill stored under the same key.
        stored_offset: u64,
        /// Symbol.
        symbol: String,
        /// Exchange trade id.
        trade_id: u64,
        /// Split part.
        split_part: u16,
        /// Market of the fill (spot and futures trade ids are separate id spaces).
        market: Market,
    },
}

/// Handle to the running writer.
#[derive(Debug)]
pub struct WriterHandle {
    health: watch::Receiver<WriterHealth>,
    alerts: Option<mpsc::Receiver<DbAlert>>,
    wake: Arc<Notify>,
    shutdown: watch::Sender<bool>,
    join: JoinHandle<()>,
}

impl WriterHandle {
    /// The current health (cheap; call it from `/api/health`).
    pub fn health(&self) -> WriterHealth {
        self.health.borrow().clone()
    }

    /// A receiver that sees every health change.
    pub fn subscribe(&self) -> watch::Receiver<WriterHealth> {
        self.health.clone()
    }

    /// The alert stream (once; `None` afterwards). Alerts beyond 64 unread are dropped, never blocking the writer.
    pub fn take_alerts(&mut self) -> Option<mpsc::Receiver<DbAlert>> {
        self.alerts.take()
    }

    /// Tells the writer new records are durable (optional: it also polls every `idle_poll`). Never blocks.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A cloneable waker for the journal pump.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Stops the writer: if connected, it first stores everything durable (bounded by `timeout`). Whatever it
    /// does not store stays in the journal for the next start.
    pub async fn shutdown(self, timeout: Duration) {
        let _ = self.shutdown.send(true);
        self.wake.notify_one();
        let mut join = self.join;
        if tokio::time::timeout(timeout, &mut join).await.is_err() {
            join.abort();
        }
    }
}

/// Starts the writer for the journal in `journal_dir` (`DATA_DIR/journal`), reading up to what `journal` reports
/// durable. Must be called inside a tokio runtime. Returns at once; connecting happens in the background.
pub fn spawn_writer(
    cfg: WriterConfig,
    journal_dir: PathBuf,
    journal: Arc<JournalStats>,
) -> WriterHandle {
    let (health_tx, health_rx) = watch::channel(WriterHealth {
        state: DbState::Starting,
        lag_records: journal.records.load(Ordering::Relaxed),
        stored_offset: 0,
        stored_records: 0,
        durable_offset: journal.durable_offset(),
        since_ms: crate::journal::now_ms(),
        last_error: None,
        fill_conflicts: 0,
    });
    let (alert_tx, alert_rx) = mpsc::channel(64);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    let w = Writer {
        cfg,
        journal_dir,
        journal,
        reader: None,
        next: 0,
        records: 0,
        health: health_tx,
        alerts: alert_tx,
        wake: wake.clone(),
        shutdown: shutdown_rx,
        down_since: None,
        lag_alerted: false,
        fill_conflicts: 0,
    };
    let join = tokio::spawn(w.run());
    WriterHandle {
        health: health_rx,
        alerts: Some(alert_rx),
        wake,
        shutdown: shutdown_tx,
        join,
    }
}

struct Writer {
    cfg: WriterConfig,
    journal_dir: PathBuf,
    journal: Arc<JournalStats>,
    reader: Option<JournalReader>,
    /// Resume offset as stored in Postgres.
    next: u64,
    /// Records consumed as stored in Postgres.
    records: u64,
    health: watch::Sender<WriterHealth>,
    alerts: mpsc::Sender<DbAlert>,
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
    down_since: Option<Instant>,
    lag_alerted: bool,
    /// Rows in `fill_conflicts` (loaded on connect, raised per conflict).
    fill_conflicts: u64,
}

impl Writer {
    fn lag(&self) -> u64 {
        self.journal
            .records
            .load(Ordering::Relaxed)
            .saturating_sub(self.records)
    }

    fn alert(&self, a: DbAlert) {
        // Never wait on a slow consumer: alerts are advisory, health is the source of truth.
        if self.alerts.try_send(a).is_err() {
            tracing::debug!("db alert dropped: channel full or closed");
        }
    }

    fn publish(&self, state: DbState, error: Option<String>) {
        let lag = self.lag();
        let durable = self.journal.durable_offset();
        self.health.send_if_modified(|h| {
            let changed_state = h.state != state;
            let new = WriterHealth {
                state,
                lag_records: lag,
                stored_offset: self.next,
                stored_records: self.records,
                durable_offset: durable,
                since_ms: if changed_state {
                    crate::journal::now_ms()
                } else {
                    h.since_ms
                },
                last_error: if state == DbState::Down {
                    error.or_else(|| h.last_error.clone())
                } else {
                    None
                },
                fill_conflicts: self.fill_conflicts,
            };
            if *h != new {
                *h = new;
                true
            } else {
                false
            }
        });
    }

    fn connected_state(&mut self) -> DbState {
        let lag = self.lag();
        if lag > self.cfg.lag_alert_records {
            if !self.lag_alerted {
                self.lag_alerted = true;
                self.alert(DbAlert::Lagging { lag_records: lag });
            }
            DbState::Lagging
        } else {
            DbState::Connected
        }
    }

    async fn run(mut self) {
        let mut backoff = self.cfg.backoff_min;
        loop {
            match self.session().await {
                Ok(()) => return,
                Err(e) => {
                    let msg = e.to_string();
                    tracing::warn!(error = %msg, lag = self.lag(), "postgres writer down; the journal keeps everything");
                    if self.down_since.is_none() {
                        self.down_since = Some(Instant::now());
                        self.alert(DbAlert::Down {
                            error: msg.clone(),
                            lag_records: self.lag(),
                        });
                    }
                    self.publish(DbState::Down, Some(msg));
                }
            }
            if *self.shutdown.borrow() {
                return;
            }
            // Sleep with the health lag kept current (the journal keeps growing while we wait).
            let deadline = tokio::time::Instant::now() + backoff;
            loop {
                let tick = tokio::time::sleep_until(
                    deadline.min(tokio::time::Instant::now() + Duration::from_millis(200)),
                );
                tokio::select! {
                    _ = tick => {}
                    _ = self.shutdown.changed() => return,
                }
                self.publish(DbState::Down, None);
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
            backoff = (backoff * 2).min(self.cfg.backoff_max);
        }
    }

    /// One connection's life: connect, load progress, then store batches until an error or shutdown.
    async fn session(&mut self) -> Result<(), DbError> {
        let cfg = parse_url(self.cfg.database_url.expose())?;
        let mut client = connect_config(&cfg).await?;
        // Setup can block on locks like any statement; a hung database must surface as "down", not as silence.
        let limit = self.cfg.write_timeout;
        let timed = |d: Duration| move || DbError::Timeout(d);
        if self.cfg.migrate {
            // Real migrations may take a while; the up-to-date check is instant.
            tokio::time::timeout(limit * 10, migrations::run(&mut client))
                .await
                .map_err(|_| timed(limit * 10)())??;
        }
        let (next, records) = tokio::time::timeout(limit, load_progress(&client, &self.cfg.stream))
            .await
            .map_err(|_| timed(limit)())??;
        self.next = next;
        self.records = records;
        let conflicts: i64 = tokio::time::timeout(
            limit,
            client.query_one("SELECT count(*) FROM fill_conflicts", &[]),
        )
        .await
        .map_err(|_| timed(limit)())??
        .get(0);
        self.fill_conflicts = conflicts.max(0) as u64;
        if self.fill_conflicts > 0 {
            tracing::error!(
                fill_conflicts = self.fill_conflicts,
                "postgres holds fill conflicts: see the fill_conflicts table"
            );
        }
        if self.reader.is_none() {
            self.reader = Some(
                JournalReader::open(&self.journal_dir)
                    .map_err(|e| DbError::Journal(e.to_string()))?,
            );
        }
        let stmts = tokio::time::timeout(limit, Statements::prepare(&client))
            .await
            .map_err(|_| timed(limit)())??;
        if let Some(t) = self.down_since.take() {
            self.alert(DbAlert::Recovered {
                down_for_ms: t.elapsed().as_millis() as u64,
                lag_records: self.lag(),
            });
            // After an outage, announce the catch-up's end too.
            self.lag_alerted = true;
        }
        let st = self.connected_state();
        self.publish(st, None);
        tracing::info!(
            offset = self.next,
            lag = self.lag(),
            "postgres writer connected"
        );

        // While one batch is being committed, the next is read and decoded on the blocking pool.
        let mut prefetch: Option<(u64, JoinHandle<ReadResult>)> = None;
        let mut spare: Vec<Entry> = Vec::with_capacity(self.cfg.batch_max);
        loop {
            let durable = self.journal.durable_offset();
            if self.next < durable {
                let (batch, next) = match prefetch.take() {
                    Some((from, h)) if from == self.next => self.finish_read(h).await?,
                    Some((_, h)) => {
                        let (stale, _) = self.finish_read(h).await?;
                        self.read(durable, stale).await?
                    }
                    None => self.read(durable, std::mem::take(&mut spare)).await?,
                };
                if next == self.next {
                    // Durable bytes that do not form a whole record yet cannot happen (the pump writes whole
                    // batches); wait rather than spin.
                    spare = batch;
                    tokio::time::sleep(self.cfg.idle_poll).await;
                    continue;
                }
                let durable_now = self.journal.durable_offset();
                if next < durable_now {
                    if let Some(reader) = self.reader.take() {
                        let buf = std::mem::take(&mut spare);
                        prefetch = Some((
                            next,
                            spawn_read(reader, next, durable_now, self.cfg.batch_max, buf),
                        ));
                    }
                }
                // A slow database must not freeze the health report: while the batch is in flight the lag is
                // republished, and a batch that takes longer than `write_timeout` counts as an outage.
                {
                    let stream = self.cfg.stream.clone();
                    let write = write_batch(&mut client, &stmts, &stream, self.next, next, &batch);
                    tokio::pin!(write);
                    let deadline = tokio::time::sleep(self.cfg.write_timeout);
                    tokio::pin!(deadline);
                    let mut tick = tokio::time::interval(Duration::from_millis(250));
                    tick.tick().await;
                    let conflicts = loop {
                        tokio::select! {
                            r = &mut write => break r?,
                            _ = tick.tick() => {
                                let st = self.connected_state();
                                self.publish(st, None);
                            }
                            _ = &mut deadline => {
                                return Err(DbError::Timeout(self.cfg.write_timeout));
                            }
                        }
                    };
                    // Reported only once committed (a rolled-back batch is retried and would report twice).
                    for c in conflicts {
                        self.fill_conflicts += 1;
                        tracing::error!(
                            journal_offset = c.journal_offset,
                            stored_offset = c.stored_offset,
                            symbol = %c.symbol,
                            trade_id = c.trade_id,
                            split_part = c.split_part,
                            market = c.market.as_str(),
                            "fill conflict: this trade id is already stored with different contents; \
                             kept in fill_conflicts, not in fills"
                        );
                        self.alert(DbAlert::FillConflict {
                            journal_offset: c.journal_offset,
                            stored_offset: c.stored_offset,
                            symbol: c.symbol,
                            trade_id: c.trade_id,
                            split_part: c.split_part,
                            market: c.market,
                        });
                    }
                }
                self.next = next;
                self.records += batch.len() as u64;
                let st = self.connected_state();
                self.publish(st, None);
                if spare.capacity() == 0 {
                    spare = batch;
                }
                continue;
            }
            // Caught up.
            if self.lag_alerted && self.lag() == 0 {
                self.lag_alerted = false;
                self.alert(DbAlert::CaughtUp {
                    stored_records: self.records,
                });
            }
            let st = self.connected_state();
            self.publish(st, None);
            if *self.shutdown.borrow() {
                return Ok(());
            }
            if client.is_closed() {
                return Err(DbError::Journal("postgres connection closed".into()));
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.cfg.idle_poll) => {}
                _ = self.shutdown.changed() => {}
            }
        }
    }

    /// Reads up to `batch_max` whole records from `self.next` up to `durable` (on the blocking pool).
    async fn read(&mut self, durable: u64, buf: Vec<Entry>) -> Result<(Vec<Entry>, u64), DbError> {
        let Some(reader) = self.reader.take() else {
            return Err(DbError::Journal("journal reader missing".into()));
        };
        let h = spawn_read(reader, self.next, durable, self.cfg.batch_max, buf);
        self.finish_read(h).await
    }

    async fn finish_read(
        &mut self,
        h: JoinHandle<ReadResult>,
    ) -> Result<(Vec<Entry>, u64), DbError> {
        let (reader, buf, res) = h
            .await
            .map_err(|e| DbError::Journal(format!("journal reader task failed: {e}")))?;
        self.reader = Some(reader);
        let next = res.map_err(|e| DbError::Journal(e.to_string()))?;
        Ok((buf, next))
    }
}

type ReadResult = (JournalReader, Vec<Entry>, Result<u64, JournalError>);

/// Reads up to `max` whole records in `[from, durable)` into `buf` (cleared first) on the blocking pool; returns
/// the reader, the records and the offset after the last one.
fn spawn_read(
    mut reader: JournalReader,
    from: u64,
    durable: u64,
    max: usize,
    mut buf: Vec<Entry>,
) -> JoinHandle<ReadResult> {
    tokio::task::spawn_blocking(move || {
        buf.clear();
        let res = (|| {
            let mut next = from;
            for e in reader.records_from(from)?.up_to(durable) {
                let e = e?;
                next = e.next;
                buf.push(e);
                if buf.len() >= max {
                    break;
                }
            }
            Ok(next)
        })();
        (reader, buf, res)
    })
}

/// Reads (creating if needed) the stream's progress row: (resume offset, records consumed).
async fn load_progress(client: &Client, stream: &str) -> Result<(u64, u64), DbError> {
    let start = JournalReader::start_offset() as i64;
    client
        .execute(
            "INSERT INTO writer_progress (stream, next_offset) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&stream, &start],
        )
        .await?;
    let row = client
        .query_one(
            "SELECT next_offset, records FROM writer_progress WHERE stream = $1",
            &[&stream],
        )
        .await?;
    let next: i64 = row.get(0);
    let records: i64 = row.get(1);
    Ok((next.max(0) as u64, records.max(0) as u64))
}

/// The progress row of `stream`, if any: (resume offset, records consumed).
pub async fn stored_progress(client: &Client, stream: &str) -> Result<Option<(u64, u64)>, DbError> {
    Ok(client
        .query_opt(
            "SELECT next_offset, records FROM writer_progress WHERE stream = $1",
            &[&stream],
        )
        .await?
        .map(|r| {
            (
                r.get::<_, i64>(0).max(0) as u64,
                r.get::<_, i64>(1).max(0) as u64,
            )
        }))
}

// ---- mapping journal records to rows -------------------------------------------------------------------------

// Conventions of every statement below: each column arrives as one array parameter and is unnested into rows.
// Timestamps are TIMESTAMPTZ and money NUMERIC in binary form (db::wire), so the server neither parses nor computes.

const SQL_ORDER_EVENTS: &str = "INSERT INTO order_events (journal_offset, ts, symbol, client_id, exchange_id, mode, \
     intent, side, order_type, tif, price, qty, filled, reduce_only, status, reject_code, market) \
     SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::bigint[], $6::text[], \
     $7::text[], $8::text[], $9::text[], $10::text[], $11::numeric[], $12::numeric[], $13::numeric[], $14::bool[], \
     $15::text[], $16::int[], $17::text[]) \
     ON CONFLICT DO NOTHING";

const SQL_ORDERS: &str = "INSERT INTO orders (last_offset, updated_at, symbol, client_id, exchange_id, mode, intent, \
     side, order_type, tif, price, qty, filled, reduce_only, status, reject_code, created_at, market) \
     SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::bigint[], $6::text[], \
     $7::text[], $8::text[], $9::text[], $10::text[], $11::numeric[], $12::numeric[], $13::numeric[], $14::bool[], \
     $15::text[], $16::int[], $17::timestamptz[], $18::text[]) \
     ON CONFLICT (client_id, market) DO UPDATE SET symbol = EXCLUDED.symbol, \
     exchange_id = coalesce(EXCLUDED.exchange_id, orders.exchange_id), mode = EXCLUDED.mode, \
     intent = EXCLUDED.intent, side = EXCLUDED.side, order_type = EXCLUDED.order_type, tif = EXCLUDED.tif, \
     price = EXCLUDED.price, qty = EXCLUDED.qty, filled = EXCLUDED.filled, reduce_only = EXCLUDED.reduce_only, \
     status = EXCLUDED.status, reject_code = EXCLUDED.reject_code, updated_at = EXCLUDED.updated_at, \
     last_offset = EXCLUDED.last_offset \
     WHERE orders.last_offset < EXCLUDED.last_offset";

// RETURNING names the fills actually inserted; daily PnL is summed from exactly those (in Rust, exact integers),
// so a replayed fill never counts twice.
const SQL_FILLS: &str = "INSERT INTO fills (journal_offset, ts, symbol, client_id, exchange_order_id, \
     trade_id, mode, intent, side, price, qty, fee, fee_asset, liquidity, realized_pnl, split_part, market) \
     SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], \
     $7::text[], $8::text[], $9::text[], $10::numeric[], $11::numeric[], $12::numeric[], $13::text[], $14::text[], \
     $15::numeric[], $16::smallint[], $17::text[]) \
     ON CONFLICT DO NOTHING \
     RETURNING journal_offset";

// Run (in the same transaction, so rows inserted just before count as stored) for the fills that were not
// inserted: those whose stored row under the same key differs in any column but the journal offset are recorded
// in fill_conflicts (once per journal offset) and returned for the log, the counter and the alert. Identical
// contents are an idempotent replay and return nothing.
const SQL_FILL_CONFLICTS: &str = "WITH n AS (SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], \
     $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::numeric[], $11::numeric[], \
     $12::numeric[], $13::text[], $14::text[], $15::numeric[], $16::smallint[], $17::text[]) \
     AS u(journal_offset, ts, symbol, client_id, exchange_order_id, trade_id, mode, intent, side, price, qty, fee, \
     fee_asset, liquidity, realized_pnl, split_part, market)) \
     INSERT INTO fill_conflicts (journal_offset, stored_offset, symbol, trade_id, split_part, market, detail) \
     SELECT n.journal_offset, f.journal_offset, n.symbol, n.trade_id, n.split_part, n.market, \
     jsonb_build_object('journal', to_jsonb(n), 'stored', to_jsonb(f)) \
     FROM n JOIN fills f ON f.symbol = n.symbol AND f.trade_id = n.trade_id AND f.split_part = n.split_part \
     AND f.market = n.market \
     WHERE (f.ts, f.client_id, f.exchange_order_id, f.mode, f.intent, f.side, f.price, f.qty, f.fee, f.fee_asset, \
     f.liquidity, f.realized_pnl) IS DISTINCT FROM (n.ts, n.client_id, n.exchange_order_id, n.mode, n.intent, \
     n.side, n.price, n.qty, n.fee, n.fee_asset, n.liquidity, n.realized_pnl) \
     ON CONFLICT (journal_offset) DO NOTHING \
     RETURNING journal_offset, stored_offset, symbol, trade_id, split_part, market";

const SQL_DAILY_PNL: &str = "INSERT INTO daily_pnl (day, symbol, mode, fee_asset, realized_pnl, fees, fills, \
     market) \
     SELECT (d AT TIME ZONE 'UTC')::date, s, m, fa, r, f, n, mk \
     FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::numeric[], $6::numeric[], \
     $7::bigint[], $8::text[]) AS u(d, s, m, fa, r, f, n, mk) \
     ON CONFLICT (day, symbol, mode, fee_asset, market) DO UPDATE SET \
     realized_pnl = daily_pnl.realized_pnl + EXCLUDED.realized_pnl, fees = daily_pnl.fees + EXCLUDED.fees, \
     fills = daily_pnl.fills + EXCLUDED.fills";

const SQL_POSITIONS: &str = "INSERT INTO position_snapshots (journal_offset, ts, symbol, mode, qty, entry_price, \
     realized_pnl, fees, market) \
     SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::numeric[], $6::numeric[], \
     $7::numeric[], $8::numeric[], $9::text[]) \
     ON CONFLICT DO NOTHING";

const SQL_BREAKERS: &str = "WITH ins AS (INSERT INTO breaker_events (journal_offset, ts, scope, mode, change, reason, \
     until_ts) \
     SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::timestamptz[]) \
     ON CONFLICT DO NOTHING RETURNING journal_offset, ts, scope, mode, change, reason, until_ts) \
     INSERT INTO audit_log (actor, source_ip, action, detail) \
     SELECT 'engine', 'local', CASE change WHEN 'tripped' THEN 'breaker_trip' WHEN 'resumed' THEN 'breaker_resume' \
     ELSE 'breaker_reset' END, \
     json_build_object('journal_offset', journal_offset, 'ts', ts, 'scope', scope, 'mode', mode, 'change', change, \
     'reason', reason, 'until', until_ts)::text \
     FROM ins ORDER BY journal_offset";

const SQL_ENGINE_EVENTS: &str = "WITH ins AS (INSERT INTO engine_events (journal_offset, ts, kind, detail) \
     SELECT o, t, k, d::jsonb \
     FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[]) AS u(o, t, k, d) \
     ON CONFLICT DO NOTHING RETURNING journal_offset, kind, detail) \
     INSERT INTO audit_log (actor, source_ip, action, detail) \
     SELECT 'engine', 'local', 'kill_switch', \
     json_build_object('journal_offset', journal_offset, 'event', detail)::text \
     FROM ins WHERE kind = 'state' AND detail #>> '{state,reason}' = 'kill_switch' ORDER BY journal_offset";

const SQL_COMMANDS: &str = "WITH ins AS (INSERT INTO commands (journal_offset, ts, actor, source_ip, command, \
     outcome) \
     SELECT o, t, a, ip, c::jsonb, 'issued' \
     FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[]) AS u(o, t, a, ip, c) \
     ON CONFLICT DO NOTHING RETURNING journal_offset, ts, actor, source_ip, command) \
     INSERT INTO audit_log (actor, source_ip, action, detail) \
     SELECT actor, source_ip, CASE command ->> 'command' WHEN 'kill' THEN 'kill_switch' \
     WHEN 'reset_breaker' THEN 'breaker_reset' ELSE 'command' END, \
     json_build_object('journal_offset', journal_offset, 'ts', ts, 'command', command)::text \
     FROM ins ORDER BY journal_offset";

const SQL_PROGRESS: &str = "UPDATE writer_progress SET next_offset = $3, last_offset = $4, \
     records = records + $5, updated_at = now() WHERE stream = $1 AND next_offset = $2";

struct Statements {
    order_events: tokio_postgres::Statement,
    orders: tokio_postgres::Statement,
    fills: tokio_postgres::Statement,
    fill_conflicts: tokio_postgres::Statement,
    daily_pnl: tokio_postgres::Statement,
    positions: tokio_postgres::Statement,
    breakers: tokio_postgres::Statement,
    engine_events: tokio_postgres::Statement,
    commands: tokio_postgres::Statement,
    progress: tokio_postgres::Statement,
}

impl Statements {
    async fn prepare(c: &Client) -> Result<Self, DbError> {
        Ok(Self {
            order_events: c.prepare(SQL_ORDER_EVENTS).await?,
            orders: c.prepare(SQL_ORDERS).await?,
            fills: c.prepare(SQL_FILLS).await?,
            fill_conflicts: c.prepare(SQL_FILL_CONFLICTS).await?,
            daily_pnl: c.prepare(SQL_DAILY_PNL).await?,
            positions: c.prepare(SQL_POSITIONS).await?,
            breakers: c.prepare(SQL_BREAKERS).await?,
            engine_events: c.prepare(SQL_ENGINE_EVENTS).await?,
            commands: c.prepare(SQL_COMMANDS).await?,
            progress: c.prepare(SQL_PROGRESS).await?,
        })
    }
}

fn id64(offset: u64, what: &str, v: u64) -> Result<i64, DbError> {
    i64::try_from(v).map_err(|_| DbError::Data {
        offset,
        what: format!("{what} {v} exceeds BIGINT"),
    })
}

const fn intent_str(v: OrderIntent) -> &'static str {
    match v {
        OrderIntent::Entry => "entry",
        OrderIntent::StopLoss => "stop_loss",
        OrderIntent::TakeProfit => "take_profit",
        OrderIntent::MaxHold => "max_hold",
        OrderIntent::SignalExit => "signal_exit",
        OrderIntent::Flatten => "flatten",
        OrderIntent::Manual => "manual",
    }
}

const fn order_type_str(v: OrderType) -> &'static str {
    match v {
        OrderType::Limit => "LIMIT",
        OrderType::Market => "MARKET",
    }
}

const fn tif_str(v: TimeInForce) -> &'static str {
    match v {
        TimeInForce::Gtc => "GTC",
        TimeInForce::Ioc => "IOC",
        TimeInForce::Fok => "FOK",
        TimeInForce::Gtx => "GTX",
    }
}

const fn status_str(v: OrderStatus) -> &'static str {
    match v {
        OrderStatus::PendingNew => "PENDING_NEW",
        OrderStatus::New => "NEW",
        OrderStatus::PartiallyFilled => "PARTIALLY_FILLED",
        OrderStatus::Filled => "FILLED",
        OrderStatus::Canceled => "CANCELED",
        OrderStatus::Expired => "EXPIRED",
        OrderStatus::Rejected => "REJECTED",
        OrderStatus::Unknown => "UNKNOWN",
    }
}

const fn liquidity_str(v: Liquidity) -> &'static str {
    match v {
        Liquidity::Maker => "maker",
        Liquidity::Taker => "taker",
    }
}

const fn trip_str(v: TripReason) -> &'static str {
    match v {
        TripReason::HourlyLoss => "hourly_loss",
        TripReason::ConsecutiveLosses => "consecutive_losses",
        TripReason::DailyLoss => "daily_loss",
    }
}

/// Splits a command source `api:<user>@<ip>` into (actor, ip); anything else is (source, "local").
pub fn split_source(source: &str) -> (&str, &str) {
    if source.starts_with("api:") {
        if let Some((actor, ip)) = source.rsplit_once('@') {
            if ip.parse::<std::net::IpAddr>().is_ok() {
                return (actor, ip);
            }
        }
    }
    (source, "local")
}

#[derive(Default)]
struct OrderCols<'a> {
    o: Vec<i64>,
    t: Vec<TsMs>,
    s: Vec<&'a str>,
    c: Vec<&'a str>,
    x: Vec<Option<i64>>,
    m: Vec<&'static str>,
    i: Vec<&'static str>,
    sd: Vec<&'static str>,
    ot: Vec<&'static str>,
    tf: Vec<Option<&'static str>>,
    p: Vec<Dec8>,
    q: Vec<Dec8>,
    f: Vec<Dec8>,
    r: Vec<bool>,
    st: Vec<&'static str>,
    rc: Vec<i32>,
    mk: Vec<&'static str>,
}

#[derive(Default)]
struct FillCols<'a> {
    o: Vec<i64>,
    t: Vec<TsMs>,
    s: Vec<&'a str>,
    c: Vec<&'a str>,
    x: Vec<i64>,
    tr: Vec<i64>,
    m: Vec<&'static str>,
    i: Vec<&'static str>,
    sd: Vec<&'static str>,
    p: Vec<Dec8>,
    q: Vec<Dec8>,
    fe: Vec<Dec8>,
    fa: Vec<&'a str>,
    l: Vec<&'static str>,
    pnl: Vec<Dec8>,
    sp: Vec<i16>,
    mk: Vec<&'static str>,
}

/// A fill the batch could not store because its key holds different contents (see [`DbAlert::FillConflict`]).
#[derive(Debug)]
struct FillConflict {
    journal_offset: u64,
    stored_offset: u64,
    symbol: String,
    trade_id: u64,
    split_part: u16,
    market: Market,
}

#[derive(Default)]
struct PosCols<'a> {
    o: Vec<i64>,
    t: Vec<TsMs>,
    s: Vec<&'a str>,
    m: Vec<&'static str>,
    q: Vec<Dec8>,
    p: Vec<Dec8>,
    r: Vec<Dec8>,
    f: Vec<Dec8>,
    mk: Vec<&'static str>,
}

#[derive(Default)]
struct BreakerCols {
    o: Vec<i64>,
    t: Vec<TsMs>,
    sc: Vec<&'static str>,
    m: Vec<Option<&'static str>>,
    ch: Vec<&'static str>,
    r: Vec<Option<&'static str>>,
    u: Vec<Option<TsMs>>,
}

#[derive(Default)]
struct JsonCols<'a> {
    o: Vec<i64>,
    t: Vec<TsMs>,
    a: Vec<&'a str>,
    ip: Vec<&'a str>,
    d: Vec<String>,
}

/// Writes one batch and the new progress in a single transaction. `from` is the stored resume offset the batch
/// starts at, `next` the one after its last record.
async fn write_batch(
    client: &mut Client,
    stmts: &Statements,
    stream: &str,
    from: u64,
    next: u64,
    batch: &[Entry],
) -> Result<Vec<FillConflict>, DbError> {
    let mut conflicts = Vec::new();
    let mut orders = OrderCols::default();
    let mut fills = FillCols::default();
    let mut pos = PosCols::default();
    let mut brk = BreakerCols::default();
    let mut eng = JsonCols::default();
    let mut cmd = JsonCols::default();
    // Funding and liquidations are rare: written row by row in the same transaction.
    let mut extra: Vec<(i64, &EngineEvent)> = Vec::new();
    // Latest state per client id within the batch (a multi-row upsert may touch a row only once), plus the
    // time of its first event (the order's creation if it is new).
    // Keyed by (client id, market) like the `orders` table.
    let mut latest: HashMap<(&str, &'static str), (usize, TsMs)> = HashMap::new();

    for e in batch {
        let off = id64(e.offset, "journal offset", e.offset)?;
        match &e.record {
            JournalRecord::Engine(ev) => match ev {
                EngineEvent::Order(o) => {
                    let t = TsMs(id64(e.offset, "timestamp", o.ts_ms)?);
                    let idx = orders.o.len();
                    orders.o.push(off);
                    orders.t.push(t);
                    orders.s.push(o.symbol.as_str());
                    orders.c.push(o.client_id.as_str());
                    orders.x.push(match o.exchange_id {
                        Some(x) => Some(id64(e.offset, "exchange order id", x)?),
                        None => None,
                    });
                    orders.m.push(o.mode.as_str());
                    orders.i.push(intent_str(o.intent));
                    orders.sd.push(o.side.as_str());
                    orders.ot.push(order_type_str(o.order_type));
                    orders.tf.push(o.tif.map(tif_str));
                    orders.p.push(Dec8(o.price.units()));
                    orders.q.push(Dec8(o.qty.units()));
                    orders.f.push(Dec8(o.filled.units()));
                    orders.r.push(o.reduce_only);
                    orders.st.push(status_str(o.status));
                    orders.rc.push(o.reject_code);
                    orders.mk.push(o.market.as_str());
                    latest
                        .entry((o.client_id.as_str(), o.market.as_str()))
                        .and_modify(|v| v.0 = idx)
                        .or_insert((idx, t));
                }
                EngineEvent::Fill(f) => {
                    fills.o.push(off);
                    fills.t.push(TsMs(id64(e.offset, "timestamp", f.ts_ms)?));
                    fills.s.push(f.symbol.as_str());
                    fills.c.push(f.client_id.as_str());
                    fills
                        .x
                        .push(id64(e.offset, "exchange order id", f.exchange_order_id)?);
                    fills.tr.push(id64(e.offset, "trade id", f.trade_id)?);
                    fills.m.push(f.mode.as_str());
                    fills.i.push(intent_str(f.intent));
                    fills.sd.push(f.side.as_str());
                    fills.p.push(Dec8(f.price.units()));
                    fills.q.push(Dec8(f.qty.units()));
                    fills.fe.push(Dec8(f.fee.units()));
                    fills.fa.push(f.fee_asset.as_str());
                    fills.l.push(liquidity_str(f.liquidity));
                    fills.pnl.push(Dec8(f.realized_pnl.units()));
                    fills.mk.push(f.market.as_str());
                    if matches!(
                        f.fee_conv,
                        aegis_shared::event::FeeConversion::Converted { .. }
                    ) {
                        extra.push((off, ev));
                    }
                    fills.sp.push(i16::try_from(f.split_part).map_err(|_| {
                        DbError::Journal(format!(
                            "record at {}: split part {} exceeds the database's range",
                            e.offset, f.split_part
                        ))
                    })?);
                }
                EngineEvent::Position(p) => {
                    pos.o.push(off);
                    pos.t.push(TsMs(id64(e.offset, "timestamp", p.ts_ms)?));
                    pos.s.push(p.symbol.as_str());
                    pos.m.push(p.mode.as_str());
                    pos.q.push(Dec8(p.qty.units()));
                    pos.p.push(Dec8(p.entry_price.units()));
                    pos.r.push(Dec8(p.realized_pnl.units()));
                    pos.f.push(Dec8(p.fees.units()));
                    pos.mk.push(p.market.as_str());
                }
                EngineEvent::Breaker(b) => {
                    brk.o.push(off);
                    brk.t.push(TsMs(id64(e.offset, "timestamp", b.ts_ms)?));
                    match b.scope {
                        BreakerScope::Global => {
                            brk.sc.push("global");
                            brk.m.push(None);
                        }
                        BreakerScope::Mode(m) => {
                            brk.sc.push("mode");
                            brk.m.push(Some(m.as_str()));
                        }
                    }
                    match b.change {
                        BreakerChange::Tripped { reason, until_ms } => {
                            brk.ch.push("tripped");
                            brk.r.push(Some(trip_str(reason)));
                            brk.u
                                .push(Some(TsMs(id64(e.offset, "timestamp", until_ms)?)));
                        }
                        BreakerChange::Resumed => {
                            brk.ch.push("resumed");
                            brk.r.push(None);
                            brk.u.push(None);
                        }
                        BreakerChange::Reset => {
                            brk.ch.push("reset");
                            brk.r.push(None);
                            brk.u.push(None);
                        }
                    }
                }
                EngineEvent::State { ts_ms, .. } | EngineEvent::Alert { ts_ms, .. } => {
                    let kind = if matches!(ev, EngineEvent::State { .. }) {
                        "state"
                    } else {
                        "alert"
                    };
                    eng.o.push(off);
                    eng.t.push(TsMs(id64(e.offset, "timestamp", *ts_ms)?));
                    eng.a.push(kind);
                    eng.d.push(to_json(e.offset, ev)?);
                }
                EngineEvent::Funding(_) | EngineEvent::Liquidation(_) => {
                    extra.push((off, ev));
                }
                // Droppable statistics are not journaled; if one ever is, it is consumed without a row.
                EngineEvent::Heartbeat { .. } | EngineEvent::Stats(_) => {}
            },
            JournalRecord::Session(s) => {
                eng.o.push(off);
                eng.t.push(TsMs(id64(e.offset, "timestamp", s.ts_ms)?));
                eng.a.push("session");
                eng.d.push(to_json(e.offset, s)?);
            }
            JournalRecord::Command(c) => {
                let (actor, ip) = split_source(&c.source);
                cmd.o.push(off);
                cmd.t.push(TsMs(id64(e.offset, "timestamp", c.ts_ms)?));
                cmd.a.push(actor);
                cmd.ip.push(ip);
                cmd.d.push(to_json(e.offset, &c.command)?);
            }
        }
    }

    let tx = client.transaction().await?;
    if !orders.o.is_empty() {
        tx.execute(
            &stmts.order_events,
            &[
                &orders.o, &orders.t, &orders.s, &orders.c, &orders.x, &orders.m, &orders.i,
                &orders.sd, &orders.ot, &orders.tf, &orders.p, &orders.q, &orders.f, &orders.r,
                &orders.st, &orders.rc, &orders.mk,
            ],
        )
        .await?;
        upsert_orders(&tx, stmts, &orders, &latest).await?;
    }
    if !fills.o.is_empty() {
        let inserted = tx
            .query(
                &stmts.fills,
                &[
                    &fills.o, &fills.t, &fills.s, &fills.c, &fills.x, &fills.tr, &fills.m,
                    &fills.i, &fills.sd, &fills.p, &fills.q, &fills.fe, &fills.fa, &fills.l,
                    &fills.pnl, &fills.sp, &fills.mk,
                ],
            )
            .await?;
        if inserted.len() != fills.o.len() {
            let rows = tx
                .query(
                    &stmts.fill_conflicts,
                    &[
                        &fills.o, &fills.t, &fills.s, &fills.c, &fills.x, &fills.tr, &fills.m,
                        &fills.i, &fills.sd, &fills.p, &fills.q, &fills.fe, &fills.fa, &fills.l,
                        &fills.pnl, &fills.sp, &fills.mk,
                    ],
                )
                .await?;
            for r in rows {
                conflicts.push(FillConflict {
                    journal_offset: r.get::<_, i64>(0).max(0) as u64,
                    stored_offset: r.get::<_, i64>(1).max(0) as u64,
                    symbol: r.get(2),
                    trade_id: r.get::<_, i64>(3).max(0) as u64,
                    split_part: r.get::<_, i16>(4).max(0) as u16,
                    // The CHECK constraint admits only the two names; anything else would be a schema change.
                    market: Market::parse(r.get(5)).unwrap_or_default(),
                });
            }
        }
        daily_pnl(&tx, stmts, &fills, &inserted).await?;
    }
    if !pos.o.is_empty() {
        tx.execute(
            &stmts.positions,
            &[
                &pos.o, &pos.t, &pos.s, &pos.m, &pos.q, &pos.p, &pos.r, &pos.f, &pos.mk,
            ],
        )
        .await?;
    }
    if !brk.o.is_empty() {
        tx.execute(
            &stmts.breakers,
            &[&brk.o, &brk.t, &brk.sc, &brk.m, &brk.ch, &brk.r, &brk.u],
        )
        .await?;
    }
    if !eng.o.is_empty() {
        tx.execute(&stmts.engine_events, &[&eng.o, &eng.t, &eng.a, &eng.d])
            .await?;
    }
    funding_and_liquidations(&tx, &extra).await?;
    if !cmd.o.is_empty() {
        tx.execute(&stmts.commands, &[&cmd.o, &cmd.t, &cmd.a, &cmd.ip, &cmd.d])
            .await?;
    }
    let last = batch.last().map(|e| e.offset as i64);
    let n = tx
        .execute(
            &stmts.progress,
            &[
                &stream,
                &(from as i64),
                &(next as i64),
                &last,
                &(batch.len() as i64),
            ],
        )
        .await?;
    if n != 1 {
        // Dropping the transaction rolls it back.
        return Err(DbError::Conflict {
            stream: stream.to_string(),
        });
    }
    tx.commit().await?;
    Ok(conflicts)
}

const SQL_FUNDING: &str = "INSERT INTO funding (journal_offset, ts, symbol, mode, tran_id, asset, amount, \
     quote_amount, total) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (symbol, tran_id, mode) DO NOTHING";
const SQL_LIQUIDATION: &str = "INSERT INTO liquidations (journal_offset, ts, symbol, mode, kind, client_id, \
     trade_id, side, price, qty, realized_pnl, fee, position_after) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (journal_offset) DO NOTHING";

async fn funding_and_liquidations(
    tx: &Transaction<'_>,
    rows: &[(i64, &EngineEvent)],
) -> Result<(), DbError> {
    for (off, ev) in rows {
        let o = *off as u64;
        match ev {
            EngineEvent::Funding(f) => {
                tx.execute(
                    SQL_FUNDING,
                    &[
                        off,
                        &TsMs(id64(o, "timestamp", f.ts_ms)?),
                        &f.symbol.as_str(),
                        &f.mode.as_str(),
                        &id64(o, "tranId", f.tran_id)?,
                        &f.asset.as_str(),
                        &Dec8(f.amount.units()),
                        &Dec8(f.quote.units()),
                        &Dec8(f.total.units()),
                    ],
                )
                .await?;
            }
            EngineEvent::Liquidation(l) => {
                let kind = match l.kind {
                    aegis_shared::event::ForcedCloseKind::Liquidation => "liquidation",
                    aegis_shared::event::ForcedCloseKind::Adl => "adl",
                };
                tx.execute(
                    SQL_LIQUIDATION,
                    &[
                        off,
                        &TsMs(id64(o, "timestamp", l.ts_ms)?),
                        &l.symbol.as_str(),
                        &l.mode.as_str(),
                        &kind,
                        &l.client_id.as_str(),
                        &id64(o, "trade id", l.trade_id)?,
                        &l.side.as_str(),
                        &Dec8(l.price.units()),
                        &Dec8(l.qty.units()),
                        &Dec8(l.realized_pnl.units()),
                        &Dec8(l.fee.units()),
                        &Dec8(l.position_after.units()),
                    ],
                )
                .await?;
            }
            EngineEvent::Fill(f) => {
                let (price, quote) = match f.fee_conv {
                    aegis_shared::event::FeeConversion::Converted { price, quote } => {
                        (Some(Dec8(price.units())), Some(Dec8(quote.units())))
                    }
                    _ => (None, None),
                };
                tx.execute(
                    "INSERT INTO fill_fee_values (symbol, trade_id, split_part, fee_asset, price, fee_quote, market) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (symbol, trade_id, split_part, market) DO NOTHING",
                    &[
                        &f.symbol.as_str(),
                        &id64(o, "trade id", f.trade_id)?,
                        // In range: the same fill passed `i16::try_from` for the `fills` row above.
                        &(f.split_part as i16),
                        &f.fee_asset.as_str(),
                        &price,
                        &quote,
                        &f.market.as_str(),
                    ],
                )
                .await?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// (UTC day start in ms, symbol, mode, fee asset, market).
type DayKey<'a> = (i64, &'a str, &'static str, &'a str, &'static str);
/// (realized PnL, fees, fills), exact integer units.
type DaySums = (i128, i128, i64);

/// Adds the fills that were actually inserted to `daily_pnl`, one row per (UTC day, symbol, mode, fee asset,
/// market).
async fn daily_pnl(
    tx: &Transaction<'_>,
    stmts: &Statements,
    fills: &FillCols<'_>,
    inserted: &[tokio_postgres::Row],
) -> Result<(), DbError> {
    if inserted.is_empty() {
        return Ok(());
    }
    // Usually every fill is new; only a replay or a duplicate delivery makes this a subset.
    let subset: Option<std::collections::HashSet<i64>> = (inserted.len() != fills.o.len())
        .then(|| inserted.iter().map(|r| r.get::<_, i64>(0)).collect());
    const DAY_MS: i64 = 86_400_000;
    let mut days: HashMap<DayKey<'_>, DaySums> = HashMap::new();
    for k in 0..fills.o.len() {
        if subset
            .as_ref()
            .is_some_and(|set| !set.contains(&fills.o[k]))
        {
            continue;
        }
        let day = fills.t[k].0.div_euclid(DAY_MS) * DAY_MS;
        let e = days
            .entry((day, fills.s[k], fills.m[k], fills.fa[k], fills.mk[k]))
            .or_insert((0, 0, 0));
        e.0 += fills.pnl[k].0 as i128;
        e.1 += fills.fe[k].0 as i128;
        e.2 += 1;
    }
    let n = days.len();
    let (mut d, mut s, mut m, mut fa) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut r, mut f, mut c, mut mk) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ((day, sym, mode, asset, market), (pnl, fee, cnt)) in days {
        let units = |v: i128, what: &str| {
            i64::try_from(v).map(Dec8).map_err(|_| DbError::Data {
                offset: fills.o[0] as u64,
                what: format!("daily {what} sum out of range"),
            })
        };
        d.push(TsMs(day));
        s.push(sym);
        m.push(mode);
        fa.push(asset);
        r.push(units(pnl, "pnl")?);
        f.push(units(fee, "fee")?);
        c.push(cnt);
        mk.push(market);
    }
    tx.execute(&stmts.daily_pnl, &[&d, &s, &m, &fa, &r, &f, &c, &mk])
        .await?;
    Ok(())
}

async fn upsert_orders(
    tx: &Transaction<'_>,
    stmts: &Statements,
    all: &OrderCols<'_>,
    latest: &HashMap<(&str, &'static str), (usize, TsMs)>,
) -> Result<(), DbError> {
    let mut idx: Vec<(usize, TsMs)> = latest.values().copied().collect();
    idx.sort_unstable_by_key(|&(i, _)| i);
    fn pick<T: Copy>(idx: &[(usize, TsMs)], v: &[T]) -> Vec<T> {
        idx.iter().map(|&(i, _)| v[i]).collect()
    }
    let o = pick(&idx, &all.o);
    let t = pick(&idx, &all.t);
    let p = pick(&idx, &all.p);
    let q = pick(&idx, &all.q);
    let f = pick(&idx, &all.f);
    let ct: Vec<TsMs> = idx.iter().map(|&(_, c)| c).collect();
    let s: Vec<&str> = idx.iter().map(|&(i, _)| all.s[i]).collect();
    let c: Vec<&str> = idx.iter().map(|&(i, _)| all.c[i]).collect();
    let x: Vec<Option<i64>> = idx.iter().map(|&(i, _)| all.x[i]).collect();
    let m: Vec<&str> = idx.iter().map(|&(i, _)| all.m[i]).collect();
    let it: Vec<&str> = idx.iter().map(|&(i, _)| all.i[i]).collect();
    let sd: Vec<&str> = idx.iter().map(|&(i, _)| all.sd[i]).collect();
    let ot: Vec<&str> = idx.iter().map(|&(i, _)| all.ot[i]).collect();
    let tf: Vec<Option<&str>> = idx.iter().map(|&(i, _)| all.tf[i]).collect();
    let r: Vec<bool> = idx.iter().map(|&(i, _)| all.r[i]).collect();
    let st: Vec<&str> = idx.iter().map(|&(i, _)| all.st[i]).collect();
    let rc: Vec<i32> = idx.iter().map(|&(i, _)| all.rc[i]).collect();
    let mk: Vec<&str> = idx.iter().map(|&(i, _)| all.mk[i]).collect();
    tx.execute(
        &stmts.orders,
        &[
            &o, &t, &s, &c, &x, &m, &it, &sd, &ot, &tf, &p, &q, &f, &r, &st, &rc, &ct, &mk,
        ],
    )
    .await?;
    Ok(())
}

fn to_json<T: serde::Serialize>(offset: u64, v: &T) -> Result<String, DbError> {
    serde_json::to_string(v).map_err(|e| DbError::Data {
        offset,
        what: format!("cannot encode as JSON: {e}"),
    })
}
