//! Replay of recorded combined-stream JSON lines (the format of `../shared/data/*.jsonl`).
//!
//! Design choice: the whole file is **preloaded into memory** when the replay is opened (before the engine
//! thread starts trading), and lines are handed out as slices of that buffer. That keeps the hot loop free of
//! syscalls, threads and per-line allocation, at the cost of memory equal to the file size — fine for recorded
//! sessions (the bundled files are 2–3 MB; a day of one symbol's trades is a few hundred MB).
//!
//! Each yielded line is the complete message (wrapper included); the engine feeds it to the same parser the live
//! feed uses. Pacing uses the event time `E` of each message: `speed = Some(1.0)` reproduces the original gaps,
//! `Some(n)` plays n times faster, `None` plays as fast as possible (backtests). Lines without an `E` (or that do
//! not parse) are released immediately, and the engine counts them as parse errors.

use crate::feed::parse::Parser;
use std::path::Path;

/// Why a replay could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be read.
    #[error("cannot read replay file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `speed` is not positive and finite.
    #[error("replay speed must be a positive number (got {0})")]
    BadSpeed(f64),
}

/// What a paced poll produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplayPoll<'a> {
    /// The next message is due.
    Line(&'a [u8]),
    /// The next message is not due yet.
    NotYet,
    /// No more messages.
    End,
}

/// A preloaded replay. See the module docs.
#[derive(Debug)]
pub struct Replay {
    data: Vec<u8>,
    pos: usize,
    speed: Option<f64>,
    parser: Parser,
    first_e: Option<u64>,
    /// Next line (start, end) and when it is due (ns after the first line), if already located.
    pending: Option<(usize, usize, u64)>,
    lines: u64,
}

impl Replay {
    /// Opens and preloads a file.
    pub fn open(path: &Path, speed: Option<f64>) -> Result<Self, ReplayError> {
        let data = std::fs::read(path).map_err(|source| ReplayError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(data, speed)
    }

    /// A replay over in-memory JSON lines.
    pub fn from_bytes(data: Vec<u8>, speed: Option<f64>) -> Result<Self, ReplayError> {
        if let Some(s) = speed {
            if !(s.is_finite() && s > 0.0) {
                return Err(ReplayError::BadSpeed(s));
            }
        }
        Ok(Self {
            data,
            pos: 0,
            speed,
            parser: Parser::new(),
            first_e: None,
            pending: None,
            lines: 0,
        })
    }

    /// Lines handed out so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    fn locate(&mut self) -> Option<(usize, usize)> {
        loop {
            if self.pos >= self.data.len() {
                return None;
            }
            let rest = &self.data[self.pos..];
            let len = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            let (start, mut end) = (self.pos, self.pos + len);
            self.pos = end + 1;
            if end > start && self.data[end - 1] == b'\r' {
                end -= 1;
            }
            if self.data[start..end]
                .iter()
                .any(|c| !c.is_ascii_whitespace())
            {
                return Some((start, end));
            }
        }
    }

    /// The next line regardless of pacing (as fast as possible).
    pub fn next_line(&mut self) -> Option<&[u8]> {
        let (s, e) = match self.pending.take() {
            Some((s, e, _)) => (s, e),
            None => self.locate()?,
        };
        self.lines += 1;
        Some(&self.data[s..e])
    }

    /// The next line if it is due `elapsed_ns` after the replay started (see the module docs).
    pub fn poll(&mut self, elapsed_ns: u64) -> ReplayPoll<'_> {
        let Some(speed) = self.speed else {
            return match self.next_line() {
                Some(l) => ReplayPoll::Line(l),
                None => ReplayPoll::End,
            };
        };
        if self.pending.is_none() {
            let Some((s, e)) = self.locate() else {
                return ReplayPoll::End;
            };
            let due = match self.parser.parse(&self.data[s..e]).map(|m| m.event_time()) {
                Ok(t) if t > 0 => {
                    let first = *self.first_e.get_or_insert(t);
                    (t.saturating_sub(first) as f64 * 1e6 / speed) as u64
                }
                _ => 0,
            };
            self.pending = Some((s, e, due));
        }
        match self.pending {
            Some((s, e, due)) if due <= elapsed_ns => {
                self.pending = None;
                self.lines += 1;
                ReplayPoll::Line(&self.data[s..e])
            }
            _ => ReplayPoll::NotYet,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINES: &[u8] = b"{\"stream\":\"x@aggTrade\",\"data\":{\"e\":\"aggTrade\",\"E\":1000,\"s\":\"XRPETH\",\"a\":1,\"p\":\"1\",\"q\":\"1\",\"f\":1,\"l\":1,\"T\":1000,\"m\":true}}\r\n\n{\"stream\":\"x@aggTrade\",\"data\":{\"e\":\"aggTrade\",\"E\":3000,\"s\":\"XRPETH\",\"a\":2,\"p\":\"1\",\"q\":\"1\",\"f\":2,\"l\":2,\"T\":3000,\"m\":true}}\ngarbage";

    #[test]
    fn paced_by_event_time() {
        let mut r = Replay::from_bytes(LINES.to_vec(), Some(2.0)).unwrap();
        assert!(matches!(r.poll(0), ReplayPoll::Line(l) if l.ends_with(b"}}")));
        // Second message is 2000 ms later in market time = 1000 ms at speed 2.
        assert_eq!(r.poll(999_999_999), ReplayPoll::NotYet);
        assert!(matches!(r.poll(1_000_000_000), ReplayPoll::Line(_)));
        assert_eq!(r.poll(1_000_000_001), ReplayPoll::Line(b"garbage"));
        assert_eq!(r.poll(u64::MAX), ReplayPoll::End);
        assert_eq!(r.lines(), 3);
    }

    #[test]
    fn unpaced_yields_everything() {
        let mut r = Replay::from_bytes(LINES.to_vec(), None).unwrap();
        let mut n = 0;
        while let ReplayPoll::Line(_) = r.poll(0) {
            n += 1;
        }
        assert_eq!(n, 3);
        assert!(Replay::from_bytes(vec![], Some(0.0)).is_err());
        assert!(Replay::open(Path::new("/nonexistent/x.jsonl"), None).is_err());
    }
}
