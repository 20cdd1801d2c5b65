//! Reading the journal from an offset: the seam for the Postgres catch-up writer.

use super::format::{decode_payload, read_frame, Frame, JournalError, MAGIC};
use super::{JournalRecord, FILE_NAME};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A record read from the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Offset of this record.
    pub offset: u64,
    /// Offset just after it: the checkpoint to store once the record is safely elsewhere.
    pub next: u64,
    /// The record.
    pub record: JournalRecord,
}

/// A read-only view of the journal, independent of the writer (it opens its own file handle).
///
/// ```no_run
/// # use aegis_control::journal::JournalReader;
/// # fn f(dir: &std::path::Path, checkpoint: u64, durable: u64) -> Result<(), aegis_control::journal::JournalError> {
/// let mut reader = JournalReader::open(dir)?;
/// for entry in reader.records_from(checkpoint)?.up_to(durable) {
///     let entry = entry?;
///     // store entry.record, then persist entry.next as the new checkpoint
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct JournalReader {
    path: PathBuf,
    file: File,
}

impl JournalReader {
    /// Opens `dir/journal.aegis` (`dir` is `DATA_DIR/journal`, see [`super::dir_in`]).
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        let path = dir.join(FILE_NAME);
        let mut file = File::open(&path).map_err(|source| JournalError::Io {
            path: path.clone(),
            op: "open for reading",
            source,
        })?;
        let mut magic = [0u8; 8];
        file.read_exact(&mut magic)
            .map_err(|_| JournalError::NotAJournal { path: path.clone() })?;
        if &magic != MAGIC {
            return Err(JournalError::NotAJournal { path });
        }
        Ok(Self { path, file })
    }

    /// Offset of the first record.
    pub const fn start_offset() -> u64 {
        MAGIC.len() as u64
    }

    /// Records from `offset` (a value of [`Entry::next`], or [`JournalReader::start_offset`]; offsets before the
    /// first record are treated as the first record) to the current end of the file.
    ///
    /// While the bot runs, the file may end in a record that is being written; pair this with
    /// [`Records::up_to`] and [`super::JournalStats::durable_offset`] to read only what is on disk for sure.
    /// Iteration stops at the first incomplete record; a complete record with a bad checksum yields
    /// [`JournalError::Corrupt`].
    pub fn records_from(&mut self, offset: u64) -> Result<Records<'_>, JournalError> {
        let offset = offset.max(Self::start_offset());
        let len = self
            .file
            .metadata()
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                op: "stat",
                source,
            })?
            .len();
        if offset > len {
            return Err(JournalError::BadOffset {
                path: self.path.clone(),
                offset,
            });
        }
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                op: "seek",
                source,
            })?;
        Ok(Records {
            path: &self.path,
            rd: BufReader::with_capacity(64 * 1024, &self.file),
            offset,
            limit: u64::MAX,
            buf: Vec::new(),
            done: false,
        })
    }
}

/// Iterator over [`Entry`]s; see [`JournalReader::records_from`].
#[derive(Debug)]
pub struct Records<'a> {
    path: &'a Path,
    rd: BufReader<&'a File>,
    offset: u64,
    limit: u64,
    buf: Vec<u8>,
    done: bool,
}

impl Records<'_> {
    /// Stops before any record that does not end at or before `limit` (e.g. the durable offset).
    pub fn up_to(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    /// Offset of the next record to be read.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl Iterator for Records<'_> {
    type Item = Result<Entry, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.offset >= self.limit {
            return None;
        }
        let frame = match read_frame(&mut self.rd, &mut self.buf) {
            Ok(f) => f,
            Err(source) => {
                self.done = true;
                return Some(Err(JournalError::Io {
                    path: self.path.to_path_buf(),
                    op: "read",
                    source,
                }));
            }
        };
        match frame {
            Frame::End => {
                self.done = true;
                None
            }
            Frame::Bad { reason } => {
                self.done = true;
                // A record still being appended looks incomplete: that is the live end, not corruption.
                if reason.starts_with("incomplete") {
                    None
                } else {
                    Some(Err(JournalError::Corrupt {
                        path: self.path.to_path_buf(),
                        offset: self.offset,
                        reason,
                    }))
                }
            }
            Frame::Ok { size } => {
                let offset = self.offset;
                let next = offset + size;
                if next > self.limit {
                    self.done = true;
                    return None;
                }
                self.offset = next;
                match decode_payload(&self.buf) {
                    Ok(record) => Some(Ok(Entry {
                        offset,
                        next,
                        record,
                    })),
                    Err(e) => {
                        self.done = true;
                        Some(Err(JournalError::Undecodable {
                            path: self.path.to_path_buf(),
                            offset,
                            reason: e.to_string(),
                        }))
                    }
                }
            }
        }
    }
}
