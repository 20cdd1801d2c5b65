//! The appending side. Owned by one thread (the pump); shares its counters through [`JournalStats`].

use super::format::{encode_record, JournalError};
use super::{now_ms, JournalRecord};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// fsync at the latest when this many records are unsynced, even inside the time window.
pub const FSYNC_MAX_RECORDS: u64 = 256;

/// Counters readable from any thread (health API, Postgres catch-up).
#[derive(Debug, Default)]
pub struct JournalStats {
    /// Records in the journal (replayed plus appended).
    pub records: AtomicU64,
    /// Byte offset up to which everything is handed to the kernel (survives a process crash).
    pub written_offset: AtomicU64,
    /// Byte offset up to which everything is fsync'd (survives power loss). Readers of a live journal stop here.
    pub durable_offset: AtomicU64,
    /// Wall time of the last successful fsync, ms since the epoch.
    pub last_fsync_ms: AtomicU64,
    /// True while the last write or fsync failed.
    pub failed: AtomicBool,
    /// The last failure, for the health API and logs (an OS error text: no secrets).
    pub last_error: Mutex<Option<String>>,
}

impl JournalStats {
    /// `durable_offset` as a value.
    pub fn durable_offset(&self) -> u64 {
        self.durable_offset.load(Ordering::Acquire)
    }
}

/// Appends records; see the module docs of [`super`] for the durability rules.
#[derive(Debug)]
pub struct JournalWriter {
    path: PathBuf,
    file: File,
    /// Length of the file's valid, written content.
    len: u64,
    pending: Vec<u8>,
    pending_records: u64,
    unsynced_records: u64,
    oldest_unsynced: Option<Instant>,
    window: Duration,
    stats: Arc<JournalStats>,
}

impl JournalWriter {
    pub(crate) fn new(path: PathBuf, file: File, len: u64, records: u64, window: Duration) -> Self {
        let stats = Arc::new(JournalStats::default());
        stats.records.store(records, Ordering::Relaxed);
        stats.written_offset.store(len, Ordering::Relaxed);
        stats.durable_offset.store(len, Ordering::Release);
        stats.last_fsync_ms.store(now_ms(), Ordering::Relaxed);
        Self {
            path,
            file,
            len,
            pending: Vec::with_capacity(64 * 1024),
            pending_records: 0,
            unsynced_records: 0,
            oldest_unsynced: None,
            window,
            stats,
        }
    }

    /// Shared counters.
    pub fn stats(&self) -> Arc<JournalStats> {
        self.stats.clone()
    }

    /// The journal file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Encodes a record into the pending batch (nothing reaches the kernel until [`JournalWriter::write`]).
    pub fn append(&mut self, rec: &JournalRecord) -> Result<(), JournalError> {
        encode_record(rec, &mut self.pending)?;
        self.pending_records += 1;
        Ok(())
    }

    /// Hands the pending batch to the kernel with one positional write. On failure the batch stays pending and
    /// is rewritten at the same offset next time, so a partial write never leaves a hole or a duplicate.
    pub fn write(&mut self) -> Result<(), JournalError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(source) = self.file.write_all_at(&self.pending, self.len) {
            return Err(self.fail("write", source));
        }
        self.len += self.pending.len() as u64;
        self.pending.clear();
        self.stats
            .records
            .fetch_add(self.pending_records, Ordering::Relaxed);
        self.unsynced_records += self.pending_records;
        self.pending_records = 0;
        self.oldest_unsynced.get_or_insert_with(Instant::now);
        self.stats.written_offset.store(self.len, Ordering::Release);
        Ok(())
    }

    /// When the next fsync is due, if anything is unsynced.
    pub fn sync_deadline(&self) -> Option<Instant> {
        self.oldest_unsynced.map(|t| t + self.window)
    }

    /// True when the batch rules say fsync now.
    pub fn sync_due(&self, now: Instant) -> bool {
        self.unsynced_records >= FSYNC_MAX_RECORDS || self.sync_deadline().is_some_and(|d| now >= d)
    }

    /// Writes what is pending and fsyncs it (`fdatasync`).
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.write()?;
        if self.oldest_unsynced.is_none() {
            return Ok(());
        }
        if let Err(source) = self.file.sync_data() {
            return Err(self.fail("fsync", source));
        }
        self.oldest_unsynced = None;
        self.unsynced_records = 0;
        self.stats.durable_offset.store(self.len, Ordering::Release);
        self.stats.last_fsync_ms.store(now_ms(), Ordering::Relaxed);
        if self.stats.failed.swap(false, Ordering::AcqRel) {
            tracing::warn!(path = %self.path.display(), "journal writes work again");
        }
        Ok(())
    }

    /// Appends one record and fsyncs it at once (session records, before the engine starts).
    pub fn append_durable(&mut self, rec: &JournalRecord) -> Result<(), JournalError> {
        self.append(rec)?;
        self.sync()
    }

    fn fail(&self, op: &'static str, source: std::io::Error) -> JournalError {
        self.stats.failed.store(true, Ordering::Release);
        if let Ok(mut e) = self.stats.last_error.lock() {
            *e = Some(format!("{op}: {source}"));
        }
        JournalError::Io {
            path: self.path.clone(),
            op,
            source,
        }
    }
}
