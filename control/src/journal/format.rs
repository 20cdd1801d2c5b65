//! Record framing: `[u32 LE len][u32 LE crc32][payload]` after an 8-byte magic.

use super::JournalRecord;
use std::io::{self, Read};
use std::path::PathBuf;

/// The file's first 8 bytes: format name and version.
pub const MAGIC: &[u8; 8] = b"AEGISJ01";
/// Bytes before each payload: length and checksum.
pub const HEADER_LEN: usize = 8;
/// Largest payload accepted. Real records are a few hundred bytes; a larger length field means corruption.
pub const MAX_RECORD_LEN: u32 = 1 << 20;

/// Journal failures.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// File system error.
    #[error("journal {path}: {op}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The file does not start with the journal magic: not ours, refuse to touch it.
    #[error(
        "{path} is not an Aegis journal (bad magic); move it away or point DATA_DIR elsewhere"
    )]
    NotAJournal {
        /// The file.
        path: PathBuf,
    },
    /// A record with a valid checksum whose payload cannot be decoded (written by a newer version?).
    #[error("journal {path}: record at offset {offset} has a valid checksum but cannot be decoded ({reason}); it was probably written by a newer aegis — upgrade, nothing was cut")]
    Undecodable {
        /// The file.
        path: PathBuf,
        /// The record's offset.
        offset: u64,
        /// The decoder's message.
        reason: String,
    },
    /// A record could not be encoded (cannot happen for our types; kept typed rather than panicking).
    #[error("journal: cannot encode record: {0}")]
    Encode(String),
    /// Reading was asked to start inside the header or past the valid end.
    #[error("journal {path}: offset {offset} is not a record boundary inside the file")]
    BadOffset {
        /// The file.
        path: PathBuf,
        /// The offset asked for.
        offset: u64,
    },
    /// A corrupt record in the middle of the journal was met while reading (not at recovery time).
    #[error("journal {path}: corrupt record at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The record's offset.
        offset: u64,
        /// What was wrong.
        reason: &'static str,
    },
}

/// Appends one framed record to `out`.
pub fn encode_record(rec: &JournalRecord, out: &mut Vec<u8>) -> Result<(), JournalError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    if let Err(e) = serde_json::to_writer(&mut *out, rec) {
        out.truncate(start);
        return Err(JournalError::Encode(e.to_string()));
    }
    let len = out.len() - start - HEADER_LEN;
    if len > MAX_RECORD_LEN as usize {
        out.truncate(start);
        return Err(JournalError::Encode(format!("record of {len} bytes")));
    }
    let crc = crc32fast::hash(&out[start + HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Decodes a payload whose checksum was verified.
pub fn decode_payload(payload: &[u8]) -> Result<JournalRecord, serde_json::Error> {
    serde_json::from_slice(payload)
}

/// Result of reading one frame.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A frame with a valid checksum; the payload is in the caller's buffer.
    Ok {
        /// Bytes the frame occupies (header + payload).
        size: u64,
    },
    /// Clean end of file at a record boundary.
    End,
    /// The bytes from here on do not form a valid frame.
    Bad {
        /// Why.
        reason: &'static str,
    },
}

/// Reads as many bytes as are available up to `buf.len()`; returns how many were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads one frame from `r` into `payload`.
pub(crate) fn read_frame(r: &mut impl Read, payload: &mut Vec<u8>) -> io::Result<Frame> {
    let mut header = [0u8; HEADER_LEN];
    let n = read_full(r, &mut header)?;
    if n == 0 {
        return Ok(Frame::End);
    }
    if n < HEADER_LEN {
        return Ok(Frame::Bad {
            reason: "incomplete record header",
        });
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len > MAX_RECORD_LEN {
        return Ok(Frame::Bad {
            reason: "record length out of range",
        });
    }
    payload.clear();
    payload.resize(len as usize, 0);
    let n = read_full(r, payload)?;
    if n < len as usize {
        return Ok(Frame::Bad {
            reason: "incomplete record payload",
        });
    }
    if crc32fast::hash(payload) != crc {
        return Ok(Frame::Bad {
            reason: "checksum mismatch",
        });
    }
    Ok(Frame::Ok {
        size: HEADER_LEN as u64 + len as u64,
    })
}
