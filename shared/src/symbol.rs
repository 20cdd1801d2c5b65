//! Trading symbols as small `Copy` values, so the hot path never allocates a `String` for one.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Longest symbol we accept (Binance's longest USD-M symbols are well under this).
pub const MAX_SYMBOL_LEN: usize = 20;

/// An upper-case ASCII symbol such as `BTCUSDT`, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol {
    len: u8,
    bytes: [u8; MAX_SYMBOL_LEN],
}

/// Why a symbol was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid symbol: expected 1-{MAX_SYMBOL_LEN} ASCII letters/digits")]
pub struct SymbolError;

impl Symbol {
    /// Builds a symbol from ASCII letters and digits; lower case is folded to upper case (stream names use
    /// lower case, REST uses upper case).
    #[inline]
    pub fn from_bytes(b: &[u8]) -> Result<Self, SymbolError> {
        if b.is_empty() || b.len() > MAX_SYMBOL_LEN {
            return Err(SymbolError);
        }
        let mut bytes = [0u8; MAX_SYMBOL_LEN];
        for (i, &c) in b.iter().enumerate() {
            if !c.is_ascii_alphanumeric() {
                return Err(SymbolError);
            }
            bytes[i] = c.to_ascii_uppercase();
        }
        Ok(Self {
            len: b.len() as u8,
            bytes,
        })
    }

    /// Builds a symbol from a string (see [`Symbol::from_bytes`]).
    pub fn new(s: &str) -> Result<Self, SymbolError> {
        Self::from_bytes(s.as_bytes())
    }

    /// The symbol as a string slice.
    #[inline]
    pub fn as_str(&self) -> &str {
        // Invariant: only ASCII alphanumerics are ever stored.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The symbol's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Writes the lower-case form used in stream names into `buf`; returns the length.
    pub fn write_lower(&self, buf: &mut [u8]) -> usize {
        let n = self.len as usize;
        for i in 0..n.min(buf.len()) {
            buf[i] = self.bytes[i].to_ascii_lowercase();
        }
        n.min(buf.len())
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}
impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Symbol({})", self.as_str())
    }
}
impl std::str::FromStr for Symbol {
    type Err = SymbolError;
    fn from_str(s: &str) -> Result<Self, SymbolError> {
        Self::new(s)
    }
}
impl Serialize for Symbol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
impl<'de> Deserialize<'de> for Symbol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Symbol::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn folds_case_and_validates() {
        let s = Symbol::new("btcusdt").unwrap();
        assert_eq!(s.as_str(), "BTCUSDT");
        assert!(Symbol::new("").is_err());
        assert!(Symbol::new("BTC-USDT").is_err());
        assert!(Symbol::new(&"A".repeat(21)).is_err());
        let mut b = [0u8; 32];
        let n = s.write_lower(&mut b);
        assert_eq!(&b[..n], b"btcusdt");
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(j, "\"BTCUSDT\"");
        assert_eq!(serde_json::from_str::<Symbol>(&j).unwrap(), s);
    }
}
