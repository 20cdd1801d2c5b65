//! The journal: an append-only, checksummed record of everything that must survive a crash.
//!
//! # File format
//! One file, `DATA_DIR/journal/journal.aegis`:
//!
//! ```text
//! "AEGISJ01"                                  8-byte magic (format version 1)
//! [u32 LE len][u32 LE crc32][payload; len]    repeated
//! ```
//!
//! `crc32` is CRC-32 (IEEE, as computed by `crc32fast`) of the payload; the payload is the serde-JSON encoding of
//! one [`JournalRecord`]. A record's *offset* is the byte position of its length field; the Postgres catch-up
//! writer stores the offset after the last record it has (see [`JournalReader`]).
//!
//! # What is written, and when
//! The control plane's pump thread appends every critical [`EngineEvent`] (orders, fills, positions, breaker,
//! engine state, alerts) the moment it takes it off the engine's queue, *before* anything else is done with it
//! (the API's view, later Postgres). Every control command is journaled before it is handed to the engine, and
//! each run starts with a [`JournalRecord::Session`] that fixes the client-order-id session.
//!
//! # Durability window (precisely)
//! The pump takes whatever is queued (at most 1,024 events per round), encodes it and hands the whole batch to the
//! kernel with one `write` before it touches anything else. `fsync` (`fdatasync`) follows when the oldest unsynced
//! record is `JOURNAL_FSYNC_MS` old (default 5 ms; 0 = after every batch) or 256 records are unsynced, whichever
//! comes first, and always on shutdown.
//! - **Process crash / `kill -9`**: every record the pump has written survives (it is in the kernel's page cache).
//!   Lost are only the events still in the engine's queue or in the batch being encoded — events whose effects
//!   (the paper venue's fills) died with the same process.
//! - **Power loss / kernel crash**: in addition, records written but not yet fsync'd are lost: at most the last
//!   `JOURNAL_FSYNC_MS` milliseconds plus the duration of one fsync, and never more than 256 records beyond an
//!   fsync that was due.
//!
//! A torn or corrupted tail (a crash mid-write, a flipped byte, garbage after the end) is detected on start by
//! length and checksum: it is reported with its offset and size, the cut bytes are kept in a `cut-*.bin` file
//! beside the journal, and the journal is truncated to its valid prefix. A record whose checksum is right but whose
//! payload cannot be decoded (written by a newer version) stops the start instead: nothing is ever cut that could
//! be valid data.

mod format;
pub mod ledger;
mod reader;
mod recovery;
mod writer;

pub use format::{decode_payload, encode_record, JournalError, HEADER_LEN, MAGIC, MAX_RECORD_LEN};
pub use ledger::Ledger;
pub use reader::{Entry, JournalReader, Records};
pub use recovery::{open, Cut, Recovered};
pub use writer::{JournalStats, JournalWriter, FSYNC_MAX_RECORDS};

use aegis_shared::event::{EngineEvent, TimestampMs};
use aegis_shared::{Command, TradingMode};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The journal file's name inside `DATA_DIR/journal/`.
pub const FILE_NAME: &str = "journal.aegis";

/// The journal directory for a data directory.
pub fn dir_in(data_dir: &Path) -> PathBuf {
    data_dir.join("journal")
}

/// A run of the bot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Session number stamped into client order ids: `max(now_ms, last session + 1)`.
    pub id: u64,
    /// Start time.
    pub ts_ms: TimestampMs,
    /// `TRADING_MODE` of the run.
    pub trading_mode: TradingMode,
    /// Version of the `aegis` binary.
    pub version: String,
}

/// A command the control plane issued to the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// When it was issued.
    pub ts_ms: TimestampMs,
    /// The command.
    pub command: Command,
    /// Who issued it (`signal`, `api:<user>`, `cli`, ...).
    pub source: String,
}

/// One journal record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rec", content = "data")]
pub enum JournalRecord {
    /// A run started.
    Session(SessionRecord),
    /// A critical engine event.
    Engine(EngineEvent),
    /// A command sent to the engine.
    Command(CommandRecord),
}

/// Milliseconds since the Unix epoch, from the wall clock: the engine's clock, so journal, audit and alert
/// timestamps agree with the engine's.
pub use aegis_engine::clock::wall_ms as now_ms;

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use aegis_shared::event::{Fill, Liquidity, OrderIntent, PositionUpdate};
    use aegis_shared::mode::{Side, StrategyMode};
    use aegis_shared::{ClientOrderId, Notional, Price, Qty, Symbol};
    use std::collections::HashMap;

    /// A unique empty directory under the system temp dir.
    pub fn temp_dir(tag: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!(
            "aegis-test-{tag}-{}-{}-{n}",
            std::process::id(),
            now_ms()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A validated [`Config`] from these settings only (no process environment, no `.env`).
    pub fn config(pairs: &[(&str, &str)]) -> aegis_shared::config::Config {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        aegis_shared::config::Config::from_lookup(|k| m.get(k).cloned()).unwrap()
    }

    pub fn fill(i: u64, side: Side, price: &str, pnl: &str) -> EngineEvent {
        EngineEvent::Fill(Fill {
            ts_ms: 1_700_000_000_000 + i,
            symbol: Symbol::new("BTCUSDT").unwrap(),
            market: aegis_shared::Market::Futures,
            client_id: ClientOrderId::new(&format!("ag1-{i}")).unwrap(),
            exchange_order_id: i,
            trade_id: i,
            split_part: 0,
            mode: StrategyMode::Scalp,
            intent: OrderIntent::Entry,
            side,
            price: Price::parse(price).unwrap(),
            qty: Qty::parse("0.01").unwrap(),
            fee: Notional::parse("0.0004").unwrap(),
            fee_asset: Symbol::new("USDT").unwrap(),
            liquidity: Liquidity::Taker,
            realized_pnl: Notional::parse(pnl).unwrap(),
            fee_conv: Default::default(),
        })
    }

    pub fn position(i: u64, qty: &str, realized: &str) -> EngineEvent {
        EngineEvent::Position(PositionUpdate {
            ts_ms: 1_700_000_000_000 + i,
            symbol: Symbol::new("BTCUSDT").unwrap(),
            market: aegis_shared::Market::Futures,
            mode: StrategyMode::Scalp,
            qty: Qty::parse(qty).unwrap(),
            entry_price: Price::parse("100").unwrap(),
            realized_pnl: Notional::parse(realized).unwrap(),
            fees: Notional::parse("0.0008").unwrap(),
            funding: Default::default(),
        })
    }
}
