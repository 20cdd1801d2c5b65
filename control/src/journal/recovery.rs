//! Opening the journal on start: replay, detect a torn or corrupted tail, cut it off (keeping a copy), and hand
//! back a writer positioned at the end of the valid prefix.

use super::format::{decode_payload, read_frame, Frame, JournalError, MAGIC};
use super::ledger::Ledger;
use super::writer::JournalWriter;
use super::{now_ms, FILE_NAME};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// At most this much of a cut tail is copied aside (a real torn tail is one batch; more means disk damage, and
/// the first part is what a human needs to look at).
const MAX_SAVED_CUT: u64 = 64 << 20;

/// A tail that was cut off during recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Offset where the valid prefix ends (the journal's new length).
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes: u64,
    /// What was wrong with the first bad record.
    pub reason: &'static str,
    /// Where a copy of the cut bytes was saved, if saving worked.
    pub saved_to: Option<PathBuf>,
}

/// What recovery found.
#[derive(Debug)]
pub struct Recovered {
    /// State rebuilt from every valid record.
    pub ledger: Ledger,
    /// Number of valid records.
    pub records: u64,
    /// Length of the valid journal (where appending continues).
    pub valid_len: u64,
    /// The cut tail, if there was one.
    pub cut: Option<Cut>,
}

fn io_err<'a>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Opens (creating if needed) the journal in `dir`, replays it into a [`Ledger`], cuts a bad tail, and returns
/// a writer whose fsync window is `window`. Never panics on bad data; refuses (typed error) only when the file
/// is not a journal or a checksummed record cannot be decoded.
pub fn open(dir: &Path, window: Duration) -> Result<(JournalWriter, Recovered), JournalError> {
    // The journal holds the trading history: owner-only.
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir, "create directory"))?;
    let path = dir.join(FILE_NAME);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(&path, "open"))?;
    let len = file.metadata().map_err(io_err(&path, "stat"))?.len();

    let mut ledger = Ledger::default();
    let mut records = 0u64;
    let mut cut = None;

    if len < MAGIC.len() as u64 {
        let mut head = Vec::new();
        file.read_to_end(&mut head).map_err(io_err(&path, "read"))?;
        if !MAGIC.starts_with(&head) {
            return Err(JournalError::NotAJournal { path });
        }
        if !head.is_empty() {
            // A crash while the file was being created.
            cut = Some(cut_tail(
                dir,
                &path,
                &file,
                0,
                len,
                "incomplete file header",
            )?);
        }
        file.write_all_at(MAGIC, 0)
            .map_err(io_err(&path, "write header"))?;
        file.sync_all().map_err(io_err(&path, "fsync"))?;
        // Make the new file's directory entry durable too.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        let w = JournalWriter::new(path, file, MAGIC.len() as u64, 0, window);
        return Ok((
            w,
            Recovered {
                ledger,
                records,
                valid_len: MAGIC.len() as u64,
                cut,
            },
        ));
    }

    let mut magic = [0u8; 8];
    file.read_exact(&mut magic).map_err(io_err(&path, "read"))?;
    if &magic != MAGIC {
        return Err(JournalError::NotAJournal { path });
    }

    let mut offset = MAGIC.len() as u64;
    let mut bad: Option<(u64, &'static str)> = None;
    {
        file.seek(SeekFrom::Start(offset))
            .map_err(io_err(&path, "seek"))?;
        let mut rd = BufReader::with_capacity(256 * 1024, &file);
        let mut buf = Vec::new();
        loop {
            match read_frame(&mut rd, &mut buf).map_err(io_err(&path, "read"))? {
                Frame::End => break,
                Frame::Ok { size } => {
                    let rec = decode_payload(&buf).map_err(|e| JournalError::Undecodable {
                        path: path.clone(),
                        offset,
                        reason: e.to_string(),
                    })?;
                    ledger.apply(&rec);
                    records += 1;
                    offset += size;
                }
                Frame::Bad { reason } => {
                    bad = Some((offset, reason));
                    break;
                }
            }
        }
    }
    let cut = match bad {
        Some((at, reason)) => Some(cut_tail(dir, &path, &file, at, len, reason)?),
        None => None,
    };
    let w = JournalWriter::new(path, file, offset, records, window);
    Ok((
        w,
        Recovered {
            ledger,
            records,
            valid_len: offset,
            cut,
        },
    ))
}

/// Copies `[at, len)` aside, truncates the journal to `at`, fsyncs, and reports it loudly.
fn cut_tail(
    dir: &Path,
    path: &Path,
    file: &File,
    at: u64,
    len: u64,
    reason: &'static str,
) -> Result<Cut, JournalError> {
    let bytes = len - at;
    let saved_to = save_copy(dir, file, at, bytes.min(MAX_SAVED_CUT));
    file.set_len(at).map_err(io_err(path, "truncate"))?;
    file.sync_all().map_err(io_err(path, "fsync"))?;
    tracing::warn!(
        journal = %path.display(),
        offset = at,
        bytes_cut = bytes,
        reason,
        saved_to = %saved_to.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(copy failed)".into()),
        "journal tail was torn or corrupted: cut {bytes} bytes at offset {at} ({reason}); the valid prefix before it is kept"
    );
    Ok(Cut {
        offset: at,
        bytes,
        reason,
        saved_to,
    })
}

fn save_copy(dir: &Path, file: &File, at: u64, n: u64) -> Option<PathBuf> {
    let mut data = vec![0u8; n as usize];
    file.read_exact_at(&mut data, at).ok()?;
    let p = dir.join(format!("cut-{at}-{}.bin", now_ms()));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p)
        .ok()?;
    f.write_all(&data).ok()?;
    f.sync_all().ok()?;
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{JournalReader, JournalRecord, SessionRecord};
    use super::*;
    use aegis_shared::mode::Side;
    use aegis_shared::{Notional, Qty, TradingMode};
    use proptest::prelude::*;

    fn sample() -> Vec<JournalRecord> {
        vec![
            JournalRecord::Session(SessionRecord {
                id: 42,
                ts_ms: 1,
                trading_mode: TradingMode::Paper,
                version: "t".into(),
            }),
            JournalRecord::Engine(fill(1, Side::Buy, "100", "0")),
            JournalRecord::Engine(position(1, "0.01", "0")),
            JournalRecord::Engine(fill(2, Side::Sell, "110", "0.1")),
            JournalRecord::Engine(position(2, "0", "0.1")),
        ]
    }

    fn write_all(dir: &Path, recs: &[JournalRecord]) -> u64 {
        let (mut w, _) = open(dir, Duration::from_millis(5)).unwrap();
        for r in recs {
            w.append(r).unwrap();
        }
        w.sync().unwrap();
        std::fs::metadata(dir.join(FILE_NAME)).unwrap().len()
    }

    fn file_len(dir: &Path) -> u64 {
        std::fs::metadata(dir.join(FILE_NAME)).unwrap().len()
    }

    #[test]
    fn round_trip_restores_ledger_and_reader_sees_all() {
        let dir = temp_dir("rt");
        let recs = sample();
        write_all(&dir, &recs);
        let (w, rec) = open(&dir, Duration::from_millis(5)).unwrap();
        assert!(rec.cut.is_none());
        assert_eq!(rec.records, 5);
        assert_eq!(
            w.stats().records.load(std::sync::atomic::Ordering::Relaxed),
            5
        );
        let l = &rec.ledger;
        assert_eq!(l.fills, 2);
        assert_eq!(l.realized_pnl, Notional::parse("0.1").unwrap());
        assert_eq!(l.fees, Notional::parse("0.0008").unwrap());
        assert_eq!(l.last_session, Some(42));
        assert_eq!(l.positions.len(), 1);
        assert_eq!(l.positions.values().next().unwrap().qty, Qty::ZERO);

        let mut r = JournalReader::open(&dir).unwrap();
        let all: Vec<_> = r.records_from(0).unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(
            all.iter().map(|e| e.record.clone()).collect::<Vec<_>>(),
            recs
        );
        // Resuming from a checkpoint yields exactly the rest.
        let rest: Vec<_> = r
            .records_from(all[2].next)
            .unwrap()
            .map(|e| e.unwrap().record)
            .collect();
        assert_eq!(rest, recs[3..].to_vec());
        // up_to stops at a limit (e.g. the durable offset).
        let n = r.records_from(0).unwrap().up_to(all[1].next).count();
        assert_eq!(n, 2);
    }

    #[test]
    fn empty_and_missing_files_open_clean() {
        let dir = temp_dir("empty");
        std::fs::write(dir.join(FILE_NAME), b"").unwrap();
        let (_, rec) = open(&dir, Duration::ZERO).unwrap();
        assert_eq!(rec.records, 0);
        assert!(rec.cut.is_none());
        assert_eq!(file_len(&dir), 8);
        let dir2 = temp_dir("missing").join("sub");
        let (_, rec) = open(&dir2, Duration::ZERO).unwrap();
        assert_eq!(rec.records, 0);
        // A crash while writing the magic.
        let dir3 = temp_dir("halfmagic");
        std::fs::write(dir3.join(FILE_NAME), b"AEGI").unwrap();
        let (_, rec) = open(&dir3, Duration::ZERO).unwrap();
        assert_eq!(rec.cut.unwrap().bytes, 4);
        assert_eq!(file_len(&dir3), 8);
    }

    #[test]
    fn foreign_file_is_refused_untouched() {
        let dir = temp_dir("foreign");
        std::fs::write(dir.join(FILE_NAME), b"hello world, not a journal").unwrap();
        assert!(matches!(
            open(&dir, Duration::ZERO),
            Err(JournalError::NotAJournal { .. })
        ));
        assert_eq!(file_len(&dir), 26);
    }

    #[test]
    fn truncated_tail_is_cut_to_valid_prefix() {
        let dir = temp_dir("trunc");
        let recs = sample();
        let full = write_all(&dir, &recs);
        let f = OpenOptions::new()
            .write(true)
            .open(dir.join(FILE_NAME))
            .unwrap();
        f.set_len(full - 3).unwrap();
        let (mut w, rec) = open(&dir, Duration::ZERO).unwrap();
        let cut = rec.cut.clone().unwrap();
        assert_eq!(rec.records, 4);
        assert_eq!(cut.reason, "incomplete record payload");
        assert_eq!(cut.offset + cut.bytes, full - 3);
        assert_eq!(file_len(&dir), cut.offset);
        assert_eq!(
            std::fs::read(cut.saved_to.unwrap()).unwrap().len() as u64,
            cut.bytes
        );
        assert_eq!(rec.ledger.fills, 2);
        // Appending continues cleanly after the cut.
        w.append(&recs[4]).unwrap();
        w.sync().unwrap();
        let (_, rec) = open(&dir, Duration::ZERO).unwrap();
        assert_eq!(rec.records, 5);
        assert!(rec.cut.is_none());
    }

    #[test]
    fn flipped_byte_in_last_record_is_detected() {
        let dir = temp_dir("flip");
        let recs = sample();
        let full = write_all(&dir, &recs);
        let p = dir.join(FILE_NAME);
        let mut bytes = std::fs::read(&p).unwrap();
        let i = (full - 5) as usize;
        bytes[i] ^= 0x20;
        std::fs::write(&p, &bytes).unwrap();
        let (_, rec) = open(&dir, Duration::ZERO).unwrap();
        assert_eq!(rec.records, 4);
        assert_eq!(rec.cut.unwrap().reason, "checksum mismatch");
        assert_eq!(rec.ledger.fills, 2);
        assert_eq!(
            rec.ledger.positions.values().next().unwrap().qty,
            Qty::parse("0.01").unwrap()
        );
    }

    #[test]
    fn garbage_appended_is_cut() {
        let dir = temp_dir("garbage");
        let recs = sample();
        let full = write_all(&dir, &recs);
        let p = dir.join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"\xde\xad\xbe\xef garbage garbage garbage")
            .unwrap();
        drop(f);
        let (_, rec) = open(&dir, Duration::ZERO).unwrap();
        assert_eq!(rec.records, 5);
        assert_eq!(rec.cut.unwrap().offset, full);
        assert_eq!(file_len(&dir), full);
    }

    #[test]
    fn undecodable_but_checksummed_record_refuses_without_cutting() {
        let dir = temp_dir("newer");
        let full = write_all(&dir, &sample());
        let p = dir.join(FILE_NAME);
        let payload = br#"{"rec":"from_the_future","data":1}"#;
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&(payload.len() as u32).to_le_bytes()).unwrap();
        f.write_all(&crc32fast::hash(payload).to_le_bytes())
            .unwrap();
        f.write_all(payload).unwrap();
        drop(f);
        assert!(matches!(
            open(&dir, Duration::ZERO),
            Err(JournalError::Undecodable { offset, .. }) if offset == full
        ));
        assert_eq!(file_len(&dir), full + 8 + payload.len() as u64);
    }

    #[test]
    fn writer_batches_and_reports_durable_offset() {
        let dir = temp_dir("batch");
        let (mut w, _) = open(&dir, Duration::from_secs(60)).unwrap();
        let stats = w.stats();
        w.append(&sample()[1]).unwrap();
        assert_eq!(
            stats
                .written_offset
                .load(std::sync::atomic::Ordering::Relaxed),
            8
        );
        w.write().unwrap();
        let written = stats
            .written_offset
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(written > 8);
        assert_eq!(stats.durable_offset(), 8);
        assert!(!w.sync_due(std::time::Instant::now()));
        for _ in 0..super::super::FSYNC_MAX_RECORDS {
            w.append(&sample()[1]).unwrap();
        }
        w.write().unwrap();
        assert!(w.sync_due(std::time::Instant::now()));
        w.sync().unwrap();
        assert_eq!(stats.durable_offset(), file_len(&dir));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_truncation_keeps_the_valid_prefix(cut_at in 0u64..2000, extra in proptest::collection::vec(any::<u8>(), 0..40)) {
            let dir = temp_dir("prop");
            let recs: Vec<JournalRecord> = (0..8u64)
                .map(|i| JournalRecord::Engine(fill(i, Side::Buy, "100", "0")))
                .collect();
            write_all(&dir, &recs);
            // Record boundaries, from the reader.
            let bounds: Vec<u64> = JournalReader::open(&dir).unwrap().records_from(0).unwrap().map(|e| e.unwrap().next).collect();
            let full = *bounds.last().unwrap();
            let at = 8 + cut_at % (full - 7);
            let p = dir.join(FILE_NAME);
            let mut bytes = std::fs::read(&p).unwrap();
            bytes.truncate(at as usize);
            bytes.extend_from_slice(&extra);
            std::fs::write(&p, &bytes).unwrap();
            let expect = bounds.iter().filter(|b| **b <= at).count() as u64;
            let (_, rec) = open(&dir, Duration::ZERO).unwrap();
            // Garbage may only ever be cut, never taken for records beyond the valid prefix... unless the garbage
            // happens to extend a cut record back to its exact original bytes, which the length+CRC make negligible.
            prop_assert_eq!(rec.records, expect);
            prop_assert_eq!(rec.ledger.fills, expect);
            let valid = if expect == 0 { 8 } else { bounds[expect as usize - 1] };
            prop_assert_eq!(file_len(&dir), valid);
            prop_assert_eq!(rec.cut.is_some(), bytes.len() as u64 != valid);
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}
