//! Client order ids: every order carries one, so a retry or a restart never doubles it.
//!
//! Format written by [`ClientOrderIdGen`]: `ag<session>-<seq>` with both numbers in base 36, e.g. `agmd3k2x1c-1a`.
//! `session` is the start time in milliseconds, raised above the last session recorded in the journal, so ids
//! are unique across restarts even if the wall clock steps back; `seq` counts orders within the session.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Binance's limit for `newClientOrderId` (`^[\.A-Z\:/a-z0-9_-]{1,36}$`).
pub const MAX_CLIENT_ID_LEN: usize = 36;

/// A client order id valid for Binance, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientOrderId {
    len: u8,
    bytes: [u8; MAX_CLIENT_ID_LEN],
}

/// Why a client order id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid client order id: expected 1-36 characters of [.A-Z:/a-z0-9_-]")]
pub struct ClientOrderIdError;

#[inline]
fn allowed(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b':' | b'/' | b'_' | b'-')
}

impl ClientOrderId {
    /// Validates and stores an id.
    #[inline]
    pub fn from_bytes(b: &[u8]) -> Result<Self, ClientOrderIdError> {
        if b.is_empty() || b.len() > MAX_CLIENT_ID_LEN || !b.iter().all(|&c| allowed(c)) {
            return Err(ClientOrderIdError);
        }
        let mut bytes = [0u8; MAX_CLIENT_ID_LEN];
        bytes[..b.len()].copy_from_slice(b);
        Ok(Self {
            len: b.len() as u8,
            bytes,
        })
    }
    /// Validates and stores an id given as a string.
    pub fn new(s: &str) -> Result<Self, ClientOrderIdError> {
        Self::from_bytes(s.as_bytes())
    }
    /// The id's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
    /// The id as a string slice.
    #[inline]
    pub fn as_str(&self) -> &str {
        // Invariant: only ASCII is ever stored.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
    /// True for ids this bot generated (prefix `ag`), as opposed to manual or exchange-made ones such as
    /// liquidations (`autoclose-…`).
    pub fn is_ours(&self) -> bool {
        self.as_bytes().starts_with(b"ag")
    }
}

impl fmt::Display for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}
impl fmt::Debug for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientOrderId({})", self.as_str())
    }
}
impl Serialize for ClientOrderId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
impl<'de> Deserialize<'de> for ClientOrderId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ClientOrderId::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Generates unique client order ids without allocating.
#[derive(Debug, Clone)]
pub struct ClientOrderIdGen {
    session: u64,
    seq: u64,
    /// The last id handed out (`ag<session base 36>-<seq base 36>`; `…-0` before the first). Each new id is
    /// this one with its base-36 sequence digits incremented in place: usually one byte changes, where
    /// rendering the number afresh costs a division per digit on every order.
    cur: [u8; MAX_CLIENT_ID_LEN],
    /// Where the sequence digits start.
    prefix_len: u8,
    cur_len: u8,
}

const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Writes `v` in base 36 at `out[at..]` (digits counted first, then written right to left in place: no scratch
/// array to fill and copy). Returns the number of digits; at most 13 for a `u64`.
#[inline(always)]
fn write_base36(v: u64, out: &mut [u8; MAX_CLIENT_ID_LEN], at: usize) -> usize {
    let mut n = 1;
    let mut t = v;
    while t >= 36 {
        t /= 36;
        n += 1;
    }
    let mut v = v;
    let mut i = at + n;
    while i > at {
        i -= 1;
        out[i] = BASE36[(v % 36) as usize];
        v /= 36;
    }
    n
}

impl ClientOrderIdGen {
    /// A generator for a session. `session` must be greater than every session used before (the control
    /// plane passes `max(now_ms, last_journaled_session + 1)`).
    pub fn new(session: u64) -> Self {
        Self::starting_after(session, 0)
    }

    /// A generator whose next id has sequence number `seq + 1`.
    fn starting_after(session: u64, seq: u64) -> Self {
        let mut cur = [0u8; MAX_CLIENT_ID_LEN];
        cur[0] = b'a';
        cur[1] = b'g';
        let n = write_base36(session, &mut cur, 2);
        cur[2 + n] = b'-';
        let prefix_len = 3 + n;
        let m = write_base36(seq, &mut cur, prefix_len);
        Self {
            session,
            seq,
            cur,
            prefix_len: prefix_len as u8,
            cur_len: (prefix_len + m) as u8,
        }
    }

    /// The session number this generator stamps into ids.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// The next id. 2 + 13 + 1 + 13 = 29 characters at most, within Binance's 36.
    #[inline]
    pub fn next_id(&mut self) -> ClientOrderId {
        // Overflow would need 2^64 orders in one session; checked anyway so an id can never repeat.
        self.seq = self.seq.checked_add(1).unwrap_or_else(|| {
            panic!(
                "client order id sequence exhausted in session {}",
                self.session
            )
        });
        let start = self.prefix_len as usize;
        let mut i = self.cur_len as usize;
        loop {
            if i == start {
                // Every digit carried ("zz…" + 1): the number grows by a digit, "100…".
                self.cur[start] = b'1';
                self.cur[self.cur_len as usize] = b'0';
                self.cur_len += 1;
                break;
            }
            i -= 1;
            match self.cur[i] {
                b'z' => self.cur[i] = b'0',
                b'9' => {
                    self.cur[i] = b'a';
                    break;
                }
                d => {
                    self.cur[i] = d + 1;
                    break;
                }
            }
        }
        ClientOrderId {
            len: self.cur_len,
            bytes: self.cur,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn validates_binance_regex() {
        assert!(ClientOrderId::new("testOrder").is_ok());
        assert!(ClientOrderId::new("autoclose-1234").is_ok());
        assert!(ClientOrderId::new("a.b:c/d_e-f").is_ok());
        assert!(ClientOrderId::new("").is_err());
        assert!(ClientOrderId::new("has space").is_err());
        assert!(ClientOrderId::new(&"x".repeat(37)).is_err());
        assert!(ClientOrderId::new(&"x".repeat(36)).is_ok());
    }

    /// The format, against a plain reference rendering: `ag<session base 36>-<seq base 36>`.
    #[test]
    fn format_is_ag_session_dash_seq_in_base_36() {
        fn b36(mut v: u64) -> String {
            let mut s = Vec::new();
            loop {
                s.push(BASE36[(v % 36) as usize]);
                v /= 36;
                if v == 0 {
                    break;
                }
            }
            s.reverse();
            String::from_utf8(s).unwrap()
        }
        for session in [0u64, 1, 35, 36, 1_700_000_000_000, u64::MAX] {
            let mut g = ClientOrderIdGen::new(session);
            // Past 36^2 = 1296 and 36^3 = 46656: every carry and every growth by a digit.
            for seq in 1..=47_000u64 {
                let id = g.next_id();
                assert_eq!(id.as_str(), format!("ag{}-{}", b36(session), b36(seq)));
            }
        }
        // Growth at larger widths, starting just below each power of 36.
        for k in 4..=12u32 {
            let p = 36u64.pow(k);
            let mut g = ClientOrderIdGen::starting_after(7, p - 3);
            for seq in p - 2..=p + 2 {
                assert_eq!(g.next_id().as_str(), format!("ag7-{}", b36(seq)));
            }
        }
        assert_eq!(ClientOrderIdGen::new(35).next_id().as_str(), "agz-1");
        let mut g = ClientOrderIdGen::starting_after(u64::MAX, u64::MAX - 1);
        let id = g.next_id();
        assert_eq!(id.as_str(), "ag3w5e11264sgsf-3w5e11264sgsf");
        assert_eq!(id.as_bytes().len(), 29);
    }

    #[test]
    fn ids_unique_within_and_across_sessions() {
        let mut seen = HashSet::new();
        for session in [1_700_000_000_000u64, 1_700_000_000_001, u64::MAX] {
            let mut g = ClientOrderIdGen::new(session);
            for _ in 0..10_000 {
                let id = g.next_id();
                assert!(id.is_ours());
                assert!(ClientOrderId::from_bytes(id.as_bytes()).is_ok());
                assert!(seen.insert(id), "duplicate {id}");
            }
        }
    }
}
