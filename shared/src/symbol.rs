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

    /// [`Symbol::from_bytes`]`(&window[..len])`, the same result for every input, but faster when `window` has at
    /// least 24 bytes: the symbol is read, checked and upper-cased 8 bytes at a time (SWAR) and stored with word
    /// writes. Parsers pass the input from the symbol's first byte on, so the bytes after it are there to read.
    ///
    /// Why word writes matter as much as the fewer steps: a symbol stored byte by byte and then copied (it travels
    /// inside a parsed message) is read back with wide loads, which cannot be forwarded from narrower pending
    /// stores and wait for them to drain.
    #[inline(always)]
    pub fn from_window(window: &[u8], len: usize) -> Result<Self, SymbolError> {
        const L: u64 = 0x0101_0101_0101_0101;
        const HI: u64 = L * 0x80;
        let Some(w) = window.get(..24) else {
            return Self::from_bytes(window.get(..len).ok_or(SymbolError)?);
        };
        if len == 0 || len > MAX_SYMBOL_LEN {
            return Err(SymbolError);
        }
        // High bit set in each byte of `x` (bytes < 0x80) that lies in lo..=hi: `x + (0x80 - lo)` reaches the high
        // bit iff x >= lo, `x + (0x7f - hi)` iff x > hi; neither carries into the next byte for x < 0x80.
        let in_range = |x: u64, lo: u8, hi: u8| -> u64 {
            (x + L * u64::from(0x80 - lo)) & !(x + L * u64::from(0x7f - hi)) & HI
        };
        let mut out = [0u64; 3];
        let mut bad = 0u64;
        for (k, word) in out.iter_mut().enumerate() {
            if 8 * k >= len {
                // Past the symbol: the word stays zero (most symbols fit the first word).
                break;
            }
            let mut a = [0u8; 8];
            a.copy_from_slice(&w[8 * k..8 * k + 8]);
            // The symbol's bytes in this word (the rest must come out as zeros, as from_bytes leaves them).
            let r = len.saturating_sub(8 * k).min(8);
            let keep = if r == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * r)) - 1
            };
            let x = u64::from_le_bytes(a) & keep;
            let ascii = x & !HI;
            let lower = in_range(ascii, b'a', b'z');
            let ok = in_range(ascii, b'0', b'9') | in_range(ascii, b'A', b'Z') | lower;
            // Non-ASCII bytes, and bytes that are none of the three ranges, inside the symbol.
            bad |= ((x & HI) | (!ok & HI)) & keep;
            *word = x - (lower >> 2);
        }
        if bad != 0 {
            return Err(SymbolError);
        }
        let mut bytes = [0u8; MAX_SYMBOL_LEN];
        bytes[..8].copy_from_slice(&out[0].to_le_bytes());
        bytes[8..16].copy_from_slice(&out[1].to_le_bytes());
        bytes[16..].copy_from_slice(&out[2].to_le_bytes()[..4]);
        Ok(Self {
            len: len as u8,
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

    /// The quote asset, from Binance's common quote assets (longest match first: `FDUSD` before `USD`), or
    /// `None` when the symbol ends in none of them (or is only a quote asset).
    pub fn quote_asset(&self) -> Option<&'static str> {
        let s = self.as_str();
        crate::quote::QUOTE_ASSETS
            .into_iter()
            .find(|q| s.len() > q.len() && s.ends_with(q))
    }

    /// The base asset (`BTC` of `BTCUSDT`): the symbol without its [`Symbol::quote_asset`], or `None` when the
    /// quote asset is unknown. On spot a buy's fee is taken in it by default, which shrinks the held quantity.
    pub fn base_asset(&self) -> Option<Symbol> {
        let q = self.quote_asset()?;
        let s = self.as_str();
        Symbol::from_bytes(&s.as_bytes()[..s.len() - q.len()]).ok()
    }

    /// Whether the symbol is quoted in US dollars or a dollar stablecoin ([`crate::quote::USD_QUOTES`]). Every limit the guide
    /// sets is in USD, so only such a symbol's notional can be compared with them as it is; any other quote (ETH
    /// in XRPETH) needs a USD price first, or the pair is refused ([`crate::quote::run_units`]).
    pub fn is_usd_quoted(&self) -> bool {
        self.quote_asset()
            .is_some_and(|q| crate::quote::USD_QUOTES.contains(&q))
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

    #[test]
    fn quote_assets_and_usd_quotes() {
        let q = |s: &str| Symbol::new(s).unwrap().quote_asset();
        assert_eq!(q("XRPETH"), Some("ETH"));
        assert_eq!(q("BTCUSDT"), Some("USDT"));
        assert_eq!(q("BTCFDUSD"), Some("FDUSD"));
        assert_eq!(q("ETHBTC"), Some("BTC"));
        assert_eq!(q("USDT"), None);
        assert_eq!(q("FOO"), None);
        let usd = |s: &str| Symbol::new(s).unwrap().is_usd_quoted();
        assert!(usd("BTCUSDT") && usd("BTCUSDC") && usd("ETHBUSD"));
        assert!(!usd("ETHBTC") && !usd("XRPETH") && !usd("BTCEUR") && !usd("FOO"));
        let base = |s: &str| {
            Symbol::new(s)
                .unwrap()
                .base_asset()
                .map(|b| b.as_str().to_owned())
        };
        assert_eq!(base("BTCUSDT").as_deref(), Some("BTC"));
        assert_eq!(base("XRPETH").as_deref(), Some("XRP"));
        assert_eq!(base("BTCFDUSD").as_deref(), Some("BTC"));
        assert_eq!(base("FOO"), None);
    }
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        /// The word-at-a-time constructor agrees with the byte loop on every window and length, including
        /// lengths past the window and the 21 bytes either side of every range boundary.
        #[test]
        fn from_window_equals_from_bytes(
            raw in proptest::collection::vec(prop_oneof![
                b'0'..=b'9', b'A'..=b'Z', b'a'..=b'z', Just(b'"'), Just(b','), Just(b'/'), Just(b':'), Just(b'@'),
                Just(b'['), Just(b'`'), Just(b'{'), Just(0u8), Just(0x7f), Just(0x80), Just(0xc1), Just(0xff)
            ], 0..40),
            any_raw in proptest::collection::vec(any::<u8>(), 0..40),
            len in 0usize..26,
        ) {
            for w in [&raw, &any_raw] {
                let want = w.get(..len).ok_or(SymbolError).and_then(Symbol::from_bytes);
                prop_assert_eq!(Symbol::from_window(w, len), want, "{:?} {}", w, len);
            }
        }
    }

    #[test]
    fn from_window_reads_only_the_symbol() {
        let w = b"BTCUSDT\",\"b\":\"25.35190000\",\"B\"";
        assert_eq!(Symbol::from_window(w, 7), Symbol::new("BTCUSDT"));
        assert_eq!(
            Symbol::from_window(b"btcusdt@bookTicker......", 7),
            Symbol::new("BTCUSDT")
        );
        assert_eq!(
            Symbol::from_window(b"BTCUSDT@bookTicker......", 8),
            Err(SymbolError)
        );
        assert_eq!(
            Symbol::from_window(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 20),
            Symbol::new("ABCDEFGHIJKLMNOPQRST")
        );
        assert_eq!(
            Symbol::from_window(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 21),
            Err(SymbolError)
        );
        assert_eq!(
            Symbol::from_window(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 0),
            Err(SymbolError)
        );
    }
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
