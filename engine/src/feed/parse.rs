//! Zero-allocation parser for Binance market-data messages (raw and combined-stream).
//!
//! Input is the exact bytes of one WebSocket text frame (or one line of a recorded `.jsonl` file). Output is a
//! fixed-size [`MarketMsg`] that may borrow the input (depth levels are not copied: [`Levels`] iterates them in
//! place, so a depth update of any size is handled without a capacity limit and without allocating).
//!
//! Two paths, one answer:
//!
//! - **Fast path** (`fast_parse`): Binance always sends its keys in the same order without whitespace, so the
//!   fast path walks the bytes once expecting exactly that shape (`{"e":"bookTicker","u":…`, optional keys such
//!   as `nq`, `pu`, spot's `M` included), parsing integers and decimals with specialised digit loops as it goes.
//!   At the first byte that differs from the canonical shape, or any value it is not sure about, it gives up and
//!   returns nothing — it never reports errors. For bookTicker and aggTrade (the hot messages) the commas of the
//!   payload are located first, all at once (SSE2 on x86_64, [`Commas`]), so every field is parsed from a known
//!   start instead of waiting for the previous field's digits to be counted, and each must end exactly at its
//!   comma.
//! - **General path**: one pass over the object records, per known key, where its value lies ([`Parser`] keeps
//!   these tables between calls so nothing is re-initialised but a 64-bit presence mask). Keys are matched by
//!   name, never by position, so any field order parses. Nested objects we need (`data` of the combined-stream
//!   wrapper, `k` of a kline) are parsed in the same pass; every other value (unknown keys) is skipped with a
//!   bounded-depth structural scan. All typed errors come from here.
//!
//! The fast path only ever accepts input that the general path accepts with the identical result (a proptest
//! compares the two on canonical, reordered, mutated and truncated messages), so it changes speed, not meaning.
//!
//! Every decimal is exact: [`parse_units_fast`] (a digit loop proven equal to
//! [`aegis_shared::num::parse_units`] on all inputs by a proptest). Anything unexpected yields a typed
//! [`ParseError`]; no input can panic the parser (tested with proptest and a cargo-fuzz target in `fuzz/`).
//!
//! Accepted payloads (`e`): `bookTicker` (futures; the spot variant without `e`/`E`/`T` is recognised by its keys),
//! `aggTrade` (futures and spot, whose extra `M` is ignored), `depthUpdate` (futures with `pu`, spot without),
//! `kline`.

use aegis_shared::num::{parse_units, NumError};
use aegis_shared::symbol::MAX_SYMBOL_LEN;
use aegis_shared::{Notional, Price, Qty, Symbol};

/// Deepest nesting of arrays/objects accepted inside a skipped value.
pub const MAX_NESTING: usize = 32;

/// Why a message could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input was empty or whitespace.
    #[error("empty message")]
    Empty,
    /// The input is not well-formed JSON at this byte offset.
    #[error("malformed JSON at byte {0}")]
    Syntax(u32),
    /// The input ended in the middle of a value.
    #[error("message ends early")]
    Truncated,
    /// A value nests deeper than [`MAX_NESTING`].
    #[error("JSON nested too deeply")]
    TooDeep,
    /// The same key appears twice in one object.
    #[error("duplicate key {0:?}")]
    DuplicateKey(&'static str),
    /// A field the event type requires is absent.
    #[error("missing field {0:?}")]
    MissingField(&'static str),
    /// A field has the wrong JSON type (e.g. a number where a string is expected).
    #[error("field {0:?} has the wrong type")]
    WrongType(&'static str),
    /// A decimal field is not an exact decimal within range.
    #[error("field {field:?}: {err}")]
    BadDecimal {
        /// Which field.
        field: &'static str,
        /// What was wrong.
        err: NumError,
    },
    /// An integer field is malformed or out of range.
    #[error("field {0:?}: bad integer")]
    BadInt(&'static str),
    /// The symbol is not 1–20 ASCII letters/digits.
    #[error("invalid symbol")]
    BadSymbol,
    /// A depth level is not `["price","qty"]`.
    #[error("malformed depth level in {0:?}")]
    BadLevel(&'static str),
    /// A kline interval we do not know.
    #[error("unknown kline interval")]
    BadInterval,
    /// `e` names an event type this parser does not handle.
    #[error("unknown event type")]
    UnknownEvent,
    /// A JSON object that is not market data (e.g. a subscription reply `{"result":null,"id":1}`).
    #[error("not a market data message")]
    NotMarketData,
    /// Non-whitespace bytes follow the message.
    #[error("trailing bytes after the message")]
    TrailingBytes,
    /// The input is larger than any market message can be (4 GiB).
    #[error("message too large")]
    TooLarge,
}

/// Best bid/ask update (`<symbol>@bookTicker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookTicker {
    /// Symbol.
    pub symbol: Symbol,
    /// Order book update id `u`.
    pub update_id: u64,
    /// Event time `E` in ms (0 for spot, which does not send it).
    pub event_time: u64,
    /// Transaction time `T` in ms (0 for spot).
    pub tx_time: u64,
    /// Best bid price `b`.
    pub bid: Price,
    /// Best bid quantity `B`.
    pub bid_qty: Qty,
    /// Best ask price `a`.
    pub ask: Price,
    /// Best ask quantity `A`.
    pub ask_qty: Qty,
}

/// Aggregated trade (`<symbol>@aggTrade`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggTrade {
    /// Symbol.
    pub symbol: Symbol,
    /// Event time `E` in ms.
    pub event_time: u64,
    /// Aggregate trade id `a`.
    pub agg_id: u64,
    /// Price `p`.
    pub price: Price,
    /// Quantity `q`.
    pub qty: Qty,
    /// First trade id `f`.
    pub first_id: u64,
    /// Last trade id `l`.
    pub last_id: u64,
    /// Trade time `T` in ms.
    pub trade_time: u64,
    /// `m`: the buyer was the maker, i.e. the aggressor sold.
    pub buyer_is_maker: bool,
}

/// The price levels of one side of a depth update, iterated in place (no copy, no capacity limit).
///
/// The parser validated every level, so iteration cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels<'a> {
    raw: &'a [u8],
    len: u32,
}

impl<'a> Levels<'a> {
    /// Number of levels.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }
    /// True when there are no levels.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Iterates `(price, qty)` pairs in wire order. Quantity zero means "remove this level".
    #[inline]
    pub fn iter(&self) -> LevelIter<'a> {
        LevelIter {
            cur: Cur { b: self.raw, i: 1 },
            left: self.len,
        }
    }
}

impl<'a> IntoIterator for Levels<'a> {
    type Item = (Price, Qty);
    type IntoIter = LevelIter<'a>;
    fn into_iter(self) -> LevelIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Levels`].
#[derive(Debug, Clone)]
pub struct LevelIter<'a> {
    cur: Cur<'a>,
    left: u32,
}

impl Iterator for LevelIter<'_> {
    type Item = (Price, Qty);
    #[inline]
    fn next(&mut self) -> Option<(Price, Qty)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Canonical `["p","q"]` (after a `,` unless first): the digit loops, no span bookkeeping.
        let b = self.cur.b;
        let at = self.cur.i + usize::from(b.get(self.cur.i) == Some(&b','));
        if let Some((p, q, next)) = fast_level::<true>(b, at) {
            self.cur.i = next;
            return Some((Price::from_units(p), Qty::from_units(q)));
        }
        self.general_next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl LevelIter<'_> {
    /// A level in any other layout (whitespace, bare numbers), out of line so `next` stays small.
    #[cold]
    #[inline(never)]
    fn general_next(&mut self) -> Option<(Price, Qty)> {
        // The array was validated by `validate_levels`, so this cannot fail; on a (impossible) failure the
        // iteration just ends instead of panicking.
        self.cur.ws();
        if self.cur.peek() == Some(b',') {
            self.cur.i += 1;
        }
        match self.cur.level("") {
            Ok(l) => Some(l),
            Err(_) => {
                self.left = 0;
                None
            }
        }
    }
}

/// Diff or partial depth update (`<symbol>@depth…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthUpdate<'a> {
    /// Symbol.
    pub symbol: Symbol,
    /// Event time `E` in ms.
    pub event_time: u64,
    /// Transaction time `T` in ms (0 for spot).
    pub tx_time: u64,
    /// First update id in this event `U`.
    pub first_update_id: u64,
    /// Final update id in this event `u`.
    pub final_update_id: u64,
    /// Final update id of the previous event `pu` (futures only).
    pub prev_final_update_id: Option<u64>,
    /// Bid levels `b`.
    pub bids: Levels<'a>,
    /// Ask levels `a`.
    pub asks: Levels<'a>,
}

/// Kline interval, in seconds (`1M` is counted as 30 days; it is only used as a label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interval(pub u32);

impl Interval {
    /// Parses Binance interval names: `1s`, `1m`…`30m`, `1h`…`12h`, `1d`, `3d`, `1w`, `1M`.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let (num, unit) = b.split_at(b.len().checked_sub(1)?);
        if num.is_empty() || num.len() > 2 || !num.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n: u32 = num.iter().fold(0, |a, &c| a * 10 + (c - b'0') as u32);
        let unit_s = match unit[0] {
            b's' => 1,
            b'm' => 60,
            b'h' => 3_600,
            b'd' => 86_400,
            b'w' => 604_800,
            b'M' => 2_592_000,
            _ => return None,
        };
        if n == 0 {
            return None;
        }
        Some(Self(n * unit_s))
    }
    /// Length in milliseconds.
    pub fn millis(self) -> u64 {
        self.0 as u64 * 1000
    }
}

/// Candlestick (`<symbol>@kline_<interval>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kline {
    /// Symbol.
    pub symbol: Symbol,
    /// Event time `E` in ms.
    pub event_time: u64,
    /// Kline start time `k.t`.
    pub start_time: u64,
    /// Kline close time `k.T`.
    pub close_time: u64,
    /// Interval `k.i`.
    pub interval: Interval,
    /// First trade id `k.f` (-1 when unknown).
    pub first_trade_id: i64,
    /// Last trade id `k.L` (-1 when unknown).
    pub last_trade_id: i64,
    /// Open `k.o`.
    pub open: Price,
    /// Close `k.c`.
    pub close: Price,
    /// High `k.h`.
    pub high: Price,
    /// Low `k.l`.
    pub low: Price,
    /// Base volume `k.v`.
    pub volume: Qty,
    /// Number of trades `k.n`.
    pub trades: u64,
    /// `k.x`: this kline is closed.
    pub closed: bool,
    /// Quote volume `k.q`.
    pub quote_volume: Notional,
    /// Taker buy base volume `k.V`.
    pub taker_buy_volume: Qty,
    /// Taker buy quote volume `k.Q`.
    pub taker_buy_quote: Notional,
}

/// One parsed market message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarketMsg<'a> {
    /// Best bid/ask.
    BookTicker(BookTicker),
    /// Aggregated trade.
    AggTrade(AggTrade),
    /// Depth update (levels borrowed from the input).
    Depth(DepthUpdate<'a>),
    /// Kline.
    Kline(Kline),
}

impl MarketMsg<'_> {
    /// The message's symbol.
    #[inline]
    pub fn symbol(&self) -> Symbol {
        match self {
            Self::BookTicker(m) => m.symbol,
            Self::AggTrade(m) => m.symbol,
            Self::Depth(m) => m.symbol,
            Self::Kline(m) => m.symbol,
        }
    }
    /// Event time `E` in ms (0 when the variant has none, e.g. spot bookTicker).
    #[inline]
    pub fn event_time(&self) -> u64 {
        match self {
            Self::BookTicker(m) => m.event_time,
            Self::AggTrade(m) => m.event_time,
            Self::Depth(m) => m.event_time,
            Self::Kline(m) => m.event_time,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Scanner

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    StrEsc,
    Num,
    True,
    False,
    Null,
    Obj,
    /// An object parsed into the next level's table.
    ObjParsed,
    Arr,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
    kind: Kind,
}

const NSLOTS: usize = 56;
const SLOT_PU: usize = 52;
const SLOT_NQ: usize = 53;
const SLOT_STREAM: usize = 54;
const SLOT_DATA: usize = 55;

#[inline]
fn slot_of(key: &[u8]) -> Option<usize> {
    match key {
        [c @ b'A'..=b'Z'] => Some((c - b'A') as usize),
        [c @ b'a'..=b'z'] => Some(26 + (c - b'a') as usize),
        b"pu" => Some(SLOT_PU),
        b"nq" => Some(SLOT_NQ),
        b"stream" => Some(SLOT_STREAM),
        b"data" => Some(SLOT_DATA),
        _ => None,
    }
}

const fn slot(c: u8) -> usize {
    if c.is_ascii_uppercase() {
        (c - b'A') as usize
    } else {
        26 + (c - b'a') as usize
    }
}

fn slot_name(s: usize) -> &'static str {
    const NAMES: [&str; NSLOTS] = [
        "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O", "P", "Q", "R",
        "S", "T", "U", "V", "W", "X", "Y", "Z", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j",
        "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z", "pu", "nq",
        "stream", "data",
    ];
    NAMES.get(s).copied().unwrap_or("?")
}

/// Key → value table of one JSON object.
#[derive(Clone)]
struct Fields {
    present: u64,
    spans: [Span; NSLOTS],
}

impl Fields {
    const fn new() -> Self {
        Self {
            present: 0,
            spans: [Span {
                start: 0,
                end: 0,
                kind: Kind::Null,
            }; NSLOTS],
        }
    }
    #[inline]
    fn get(&self, s: usize) -> Option<Span> {
        if self.present & (1u64 << s) != 0 {
            Some(self.spans[s])
        } else {
            None
        }
    }
    #[inline]
    fn has(&self, s: usize) -> bool {
        self.present & (1u64 << s) != 0
    }
}

#[derive(Debug, Clone)]
struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }
    #[inline]
    fn err(&self) -> ParseError {
        if self.i >= self.b.len() {
            ParseError::Truncated
        } else {
            ParseError::Syntax(self.i as u32)
        }
    }
    #[inline]
    fn expect(&mut self, c: u8) -> Result<(), ParseError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err())
        }
    }

    /// At an opening quote: returns the content span and whether it holds escapes.
    #[inline]
    fn string(&mut self) -> Result<(usize, usize, bool), ParseError> {
        self.expect(b'"')?;
        let start = self.i;
        let mut esc = false;
        loop {
            match self.peek() {
                None => return Err(ParseError::Truncated),
                Some(b'"') => {
                    let end = self.i;
                    self.i += 1;
                    return Ok((start, end, esc));
                }
                Some(b'\\') => {
                    esc = true;
                    // The escaped byte can be a quote: skip it. `\uXXXX` hex digits never contain a quote.
                    self.i += 2;
                }
                Some(c) if c < 0x20 => return Err(self.err()),
                Some(_) => self.i += 1,
            }
        }
    }

    fn literal(&mut self, lit: &[u8]) -> Result<(), ParseError> {
        match self.b.get(self.i..self.i + lit.len()) {
            Some(s) if s == lit => {
                self.i += lit.len();
                Ok(())
            }
            Some(_) => Err(ParseError::Syntax(self.i as u32)),
            None => Err(ParseError::Truncated),
        }
    }

    /// Any scalar or skipped compound value.
    #[inline]
    fn value(&mut self) -> Result<Span, ParseError> {
        let start = self.i;
        let kind = match self.peek() {
            None => return Err(ParseError::Truncated),
            Some(b'"') => {
                let (s, e, esc) = self.string()?;
                return Ok(Span {
                    start: s as u32,
                    end: e as u32,
                    kind: if esc { Kind::StrEsc } else { Kind::Str },
                });
            }
            Some(b'-' | b'0'..=b'9') => {
                self.i += 1;
                while let Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') = self.peek() {
                    self.i += 1;
                }
                Kind::Num
            }
            Some(b't') => {
                self.literal(b"true")?;
                Kind::True
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Kind::False
            }
            Some(b'n') => {
                self.literal(b"null")?;
                Kind::Null
            }
            Some(c @ (b'{' | b'[')) => {
                self.skip_compound()?;
                if c == b'{' {
                    Kind::Obj
                } else {
                    Kind::Arr
                }
            }
            Some(_) => return Err(self.err()),
        };
        Ok(Span {
            start: start as u32,
            end: self.i as u32,
            kind,
        })
    }

    /// Skips a balanced object/array. Checks bracket matching and string boundaries only (the content of values
    /// we skip is irrelevant), with a fixed-size bracket stack instead of recursion.
    fn skip_compound(&mut self) -> Result<(), ParseError> {
        let mut stack = [0u8; MAX_NESTING];
        let mut depth = 0usize;
        loop {
            match self.peek() {
                None => return Err(ParseError::Truncated),
                Some(c @ (b'{' | b'[')) => {
                    if depth == MAX_NESTING {
                        return Err(ParseError::TooDeep);
                    }
                    stack[depth] = if c == b'{' { b'}' } else { b']' };
                    depth += 1;
                    self.i += 1;
                }
                Some(c @ (b'}' | b']')) => {
                    if depth == 0 || stack[depth - 1] != c {
                        return Err(self.err());
                    }
                    depth -= 1;
                    self.i += 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(_) => self.i += 1,
            }
        }
    }

    /// Parses `["price","qty"]` (numbers as JSON strings, or bare numbers).
    #[inline]
    fn level(&mut self, side: &'static str) -> Result<(Price, Qty), ParseError> {
        self.ws();
        self.expect(b'[').map_err(|_| ParseError::BadLevel(side))?;
        self.ws();
        let p = self.value()?;
        self.ws();
        self.expect(b',').map_err(|_| ParseError::BadLevel(side))?;
        self.ws();
        let q = self.value()?;
        self.ws();
        self.expect(b']').map_err(|_| ParseError::BadLevel(side))?;
        let p = decimal(self.b, p, side)?;
        let q = decimal(self.b, q, side)?;
        Ok((Price::from_units(p), Qty::from_units(q)))
    }
}

/// Validates a depth-levels array and counts its levels.
fn validate_levels<'a>(
    b: &'a [u8],
    sp: Span,
    side: &'static str,
) -> Result<Levels<'a>, ParseError> {
    if sp.kind != Kind::Arr {
        return Err(ParseError::WrongType(side));
    }
    let raw = &b[sp.start as usize..sp.end as usize];
    let mut cur = Cur { b: raw, i: 1 };
    let mut len = 0u32;
    cur.ws();
    if cur.peek() == Some(b']') {
        return Ok(Levels { raw, len });
    }
    loop {
        cur.level(side)?;
        len = len.checked_add(1).ok_or(ParseError::TooLarge)?;
        cur.ws();
        match cur.peek() {
            Some(b',') => cur.i += 1,
            Some(b']') => return Ok(Levels { raw, len }),
            _ => return Err(ParseError::BadLevel(side)),
        }
    }
}

#[inline]
fn decimal(b: &[u8], sp: Span, field: &'static str) -> Result<i64, ParseError> {
    match sp.kind {
        Kind::Str | Kind::Num => parse_units_fast(&b[sp.start as usize..sp.end as usize])
            .map_err(|err| ParseError::BadDecimal { field, err }),
        _ => Err(ParseError::WrongType(field)),
    }
}

#[inline]
fn int(b: &[u8], sp: Span, field: &'static str) -> Result<i64, ParseError> {
    if sp.kind != Kind::Num {
        return Err(ParseError::WrongType(field));
    }
    let s = &b[sp.start as usize..sp.end as usize];
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return Err(ParseError::BadInt(field));
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return Err(ParseError::BadInt(field));
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_sub((c - b'0') as i64))
            .ok_or(ParseError::BadInt(field))?;
    }
    // Accumulated negatively so i64::MIN parses.
    if neg {
        Ok(v)
    } else {
        v.checked_neg().ok_or(ParseError::BadInt(field))
    }
}

#[inline]
fn uint(b: &[u8], sp: Span, field: &'static str) -> Result<u64, ParseError> {
    let v = int(b, sp, field)?;
    u64::try_from(v).map_err(|_| ParseError::BadInt(field))
}

#[inline]
fn boolean(sp: Span, field: &'static str) -> Result<bool, ParseError> {
    match sp.kind {
        Kind::True => Ok(true),
        Kind::False => Ok(false),
        _ => Err(ParseError::WrongType(field)),
    }
}

#[inline]
fn symbol(b: &[u8], sp: Span) -> Result<Symbol, ParseError> {
    if sp.kind != Kind::Str {
        return Err(ParseError::WrongType("s"));
    }
    Symbol::from_bytes(&b[sp.start as usize..sp.end as usize]).map_err(|_| ParseError::BadSymbol)
}

// ---------------------------------------------------------------------------------------------------------------
// Decimals

const POW10: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// Up to 8 ASCII digits at `b[i..]`: their value and how many there were (stopping at the first non-digit).
///
/// With 8 readable bytes this is branch-free SWAR: one unaligned load, a bit trick that finds the first
/// non-digit byte, and three multiply-shift steps that combine the digits pairwise (the method of
/// simdjson / Lemire's "parse eight digits"). Near the end of the input it falls back to a byte loop.
///
/// `FRAC = false`: the value of the digits (`"123"` → 123). `FRAC = true`: the digits as the first places of an
/// 8-place fraction (`"123"` → 12_300_000), which costs nothing extra: the missing digits are masked to zeros in
/// place instead of shifted in as leading zeros.
#[inline(always)]
fn digits8<const VALUE: bool, const FRAC: bool>(b: &[u8], i: usize) -> (u64, usize) {
    if let Some(chunk) = b.get(i..i + 8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(chunk);
        let x = u64::from_le_bytes(a);
        // A byte's high bit is set when it is >= 0x80, > b'9' (adding 0x46 carries into bit 7) or < b'0'
        // (subtracting 0x30 borrows). Carries/borrows only travel upwards, i.e. to later bytes, so the lowest
        // flagged byte is exactly the first non-digit.
        let bad =
            (x | x.wrapping_add(0x4646_4646_4646_4646) | x.wrapping_sub(0x3030_3030_3030_3030))
                & 0x8080_8080_8080_8080;
        let n = (bad.trailing_zeros() / 8) as usize;
        if n == 0 || !VALUE {
            return (0, n);
        }
        let d = x & 0x0F0F_0F0F_0F0F_0F0F;
        let d = if FRAC {
            // Keep the n digits where they are (the first places); the bytes after them read as zeros.
            if n == 8 {
                d
            } else {
                d & ((1u64 << (8 * n)) - 1)
            }
        } else {
            // Keep the n digits, moved to the high end so the missing ones read as leading zeros.
            d << (8 * (8 - n))
        };
        // Each step multiplies by `10^k · 2^w + 1`, which adds every lane, times 10^k, into the next one (the
        // first digit is in the lowest byte), shifts the pairs' sums down into the even lanes and masks them.
        let d = (d.wrapping_mul(10 * 256 + 1) >> 8) & 0x00FF_00FF_00FF_00FF;
        let d = (d.wrapping_mul(100 * 65_536 + 1) >> 16) & 0x0000_FFFF_0000_FFFF;
        let d = d.wrapping_mul(10_000 * (1 << 32) + 1) >> 32;
        return (d, n);
    }
    let mut v = 0u64;
    let mut n = 0usize;
    while let Some(&c) = b.get(i + n) {
        let d = c.wrapping_sub(b'0');
        if d > 9 || n == 8 {
            break;
        }
        v = v * 10 + u64::from(d);
        n += 1;
    }
    if FRAC {
        v *= POW10[8 - n];
    }
    (v, n)
}

/// Reads a decimal `[-]digits[.digits]` starting at `b[i]` and stops at the first byte that cannot continue it.
/// Returns the value in units of 10⁻⁸ and the index of that byte, but only when the number is certainly one that
/// [`parse_units`] accepts with this value (at most 10 integer digits, at most 8 significant fractional
/// digits, at least one digit); `None` otherwise, so callers fall back to [`parse_units`] for the exact error.
///
/// ≤ 10 integer digits keep the result below 10¹⁸, far from `i64::MAX`, so no per-digit overflow check is
/// needed.
#[inline(always)]
fn scan_units<const VALUE: bool>(b: &[u8], mut i: usize) -> Option<(i64, usize)> {
    let neg = b.get(i) == Some(&b'-');
    i += usize::from(neg);
    let (mut int, n) = digits8::<VALUE, false>(b, i);
    i += n;
    let mut int_digits = n;
    if n == 8 {
        let (hi, n2) = digits8::<VALUE, false>(b, i);
        if n2 > 2 {
            return None;
        }
        int = int * POW10[n2] + hi;
        i += n2;
        int_digits += n2;
    }
    let mut frac: u64 = 0;
    let mut frac_digits = 0usize;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let (f, n) = digits8::<VALUE, true>(b, i);
        frac = f;
        frac_digits = n;
        i += n;
        if n == 8 {
            // Beyond 8 fractional digits only zeros are exact.
            while let Some(&c) = b.get(i) {
                match c {
                    b'0' => i += 1,
                    // A ninth significant digit: parse_units says TooPrecise.
                    b'1'..=b'9' => return None,
                    _ => break,
                }
            }
        }
    }
    if int_digits == 0 && frac_digits == 0 {
        return None;
    }
    let v = (int * 100_000_000 + frac) as i64;
    Some((if neg { -v } else { v }, i))
}

/// [`parse_units`] with a faster digit loop for the common case; the same result (value or error) for every
/// input (proptest `parse_units_fast_equals_parse_units`).
#[inline]
pub fn parse_units_fast(s: &[u8]) -> Result<i64, NumError> {
    match scan_units::<true>(s, 0) {
        Some((v, n)) if n == s.len() => Ok(v),
        _ => parse_units(s),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Fast path: Binance's canonical key order, no whitespace. Every helper takes the index to start at and returns
// the index after what it consumed; `None` means "not the canonical shape" (the general path decides).

/// `lit` at `b[i..]`.
#[inline(always)]
fn lit(b: &[u8], i: usize, lit: &[u8]) -> Option<usize> {
    let end = i.checked_add(lit.len())?;
    (b.get(i..end)? == lit).then_some(end)
}

/// A non-negative integer that fits `uint` without question (1–18 digits), read 8 digits at a time.
#[inline(always)]
fn f_uint(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let (mut v, n) = digits8::<true, false>(b, i);
    if n < 8 {
        return (n > 0).then_some((v, i + n));
    }
    let (v2, n2) = digits8::<true, false>(b, i + 8);
    v = v * POW10[n2] + v2;
    if n2 < 8 {
        return Some((v, i + 8 + n2));
    }
    let (v3, n3) = digits8::<true, false>(b, i + 16);
    if n3 > 2 {
        return None;
    }
    Some((v * POW10[n3] + v3, i + 16 + n3))
}

/// A decimal inside quotes; `i` is just after the opening quote, the result index just after the closing one.
#[inline(always)]
fn f_dec<const VALUE: bool>(b: &[u8], i: usize) -> Option<(i64, usize)> {
    let (v, j) = scan_units::<VALUE>(b, i)?;
    (b.get(j) == Some(&b'"')).then_some((v, j + 1))
}

/// A symbol inside quotes (`i` after the opening quote): found by its closing quote within 21 bytes, validated
/// once by `Symbol::from_bytes` (which rejects what the general path rejects: escapes, control bytes).
#[inline(always)]
fn f_symbol(b: &[u8], i: usize) -> Option<(Symbol, usize)> {
    let rest = b.get(i..)?;
    let n = rest
        .iter()
        .take(MAX_SYMBOL_LEN + 1)
        .position(|&c| c == b'"')?;
    let sym = Symbol::from_window(rest, n).ok()?;
    Some((sym, i + n + 1))
}

/// Skips a string we do not read (`i` after the opening quote); gives up on escapes and control bytes so the
/// general path judges them.
#[inline(always)]
fn f_skip_str(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        match *b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' | 0..=0x1f => return None,
            _ => i += 1,
        }
    }
}

#[inline(always)]
fn f_bool(b: &[u8], i: usize) -> Option<(bool, usize)> {
    if let Some(j) = lit(b, i, b"true") {
        Some((true, j))
    } else {
        lit(b, i, b"false").map(|j| (false, j))
    }
}

/// One canonical depth level `["p","q"]` at `b[i]` (`VALUE = false`: only validated, values are 0).
#[inline(always)]
fn fast_level<const VALUE: bool>(b: &[u8], i: usize) -> Option<(i64, i64, usize)> {
    let i = lit(b, i, b"[\"")?;
    let (p, i) = f_dec::<VALUE>(b, i)?;
    let i = lit(b, i, b",\"")?;
    let (q, i) = f_dec::<VALUE>(b, i)?;
    let i = lit(b, i, b"]")?;
    Some((p, q, i))
}

/// A canonical levels array at `b[i]`, validated and counted (the iterator parses the values again in place).
#[inline]
fn fast_levels(b: &[u8], i: usize) -> Option<(Levels<'_>, usize)> {
    let start = i;
    let mut i = lit(b, i, b"[")?;
    let mut len = 0u32;
    if b.get(i) != Some(&b']') {
        loop {
            let (_, _, j) = fast_level::<false>(b, i)?;
            // Bounded by the input length, which `parse` caps at u32::MAX bytes.
            len += 1;
            i = j;
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b']') => break,
                _ => return None,
            }
        }
    }
    Some((
        Levels {
            raw: &b[start..i + 1],
            len,
        },
        i + 1,
    ))
}

/// Bytes of a bookTicker/aggTrade payload the comma index covers (Binance's are under 200); a longer one is not
/// canonical for the fast path and goes to the general path.
const INDEX_BYTES: usize = 256;
const INDEX_WORDS: usize = INDEX_BYTES / 64;

/// The comma bitmap of `s` (16 ≤ len ≤ [`INDEX_BYTES`]; shorter input gives no commas): bit `k % 64` of word
/// `k / 64` is set when `s[k] == b','`. SSE2 (part of the x86_64 baseline, so no run-time detection): one
/// compare and one move-mask per 16 bytes, all independent of each other.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn comma_words(s: &[u8]) -> [u64; INDEX_WORDS] {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    let n = s.len();
    let mut words = [0u64; INDEX_WORDS];
    if !(16..=INDEX_BYTES).contains(&n) {
        return words;
    }
    let mask = |at: usize| -> u64 {
        debug_assert!(at + 16 <= n);
        // SAFETY: SSE2 is always enabled on x86_64 (baseline target feature), and every caller below passes
        // `at + 16 <= n`, so the unaligned 16-byte load stays inside `s`.
        unsafe {
            let v = _mm_loadu_si128(s.as_ptr().add(at).cast());
            _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b',' as i8))) as u32 as u64
        }
    };
    // Each word is or-ed together in a register (a read-modify-write of an array element per chunk would chain
    // the chunks through memory).
    for (w, word) in words.iter_mut().enumerate() {
        let mut m = 0u64;
        for k in 0..4 {
            let at = 64 * w + 16 * k;
            if at + 16 <= n {
                m |= mask(at) << (16 * k);
            }
        }
        *word = m;
    }
    let r = n % 16;
    if r > 0 {
        // The last 16 bytes, overlapping the previous chunk; only the bits of the `r` new bytes are kept.
        let at = n - r;
        words[at / 64] |= (mask(n - 16) >> (16 - r)) << (at % 64);
    }
    words
}

/// [`comma_words`] without SIMD (other targets; on x86_64 only the tests use it, against the SSE2 version).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn comma_words(s: &[u8]) -> [u64; INDEX_WORDS] {
    comma_words_swar(s)
}

/// Bit `k` set where byte `k` of `x` (little-endian) is a comma, for `k` in 0..8.
///
/// Exact, not the "has a zero byte" approximation: `(y & 0x7f…) + 0x7f…` sets a byte's high bit iff its low 7
/// bits are non-zero and cannot carry into the next byte; or-ing `y` adds the byte's own high bit. The multiply
/// then gathers the eight flags (at bits 0, 8, …, 56) into the top byte: flag `k` lands on bit `56 + k` and no two
/// partial products overlap, so nothing carries.
#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
fn comma_bits8(x: u64) -> u64 {
    const L: u64 = 0x0101_0101_0101_0101;
    let y = x ^ (L * u64::from(b','));
    let nonzero = ((y & (L * 0x7f)) + L * 0x7f) | y;
    let zero = !nonzero & (L * 0x80);
    (zero >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// [`comma_words`] 8 bytes at a time in plain integer arithmetic (SWAR).
#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
fn comma_words_swar(s: &[u8]) -> [u64; INDEX_WORDS] {
    let n = s.len();
    let mut words = [0u64; INDEX_WORDS];
    if !(16..=INDEX_BYTES).contains(&n) {
        return words;
    }
    let chunk = |at: usize| -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&s[at..at + 8]);
        comma_bits8(u64::from_le_bytes(a))
    };
    for (w, word) in words.iter_mut().enumerate() {
        let mut m = 0u64;
        for k in 0..8 {
            let at = 64 * w + 8 * k;
            if at + 8 <= n {
                m |= chunk(at) << (8 * k);
            }
        }
        *word = m;
    }
    let r = n % 8;
    if r > 0 {
        let at = n - r;
        words[at / 64] |= (chunk(n - 8) >> (8 - r)) << (at % 64);
    }
    words
}

/// Where the commas of a payload are, found all at once before any field is parsed.
///
/// Why: parsing field after field makes every field's start wait for the previous field's digits to be counted
/// (a load, the digit scan, the count, the next load…), one long dependency chain through the message. With the
/// commas known up front each field's start comes from this bitmap (a bit-clear per comma), so the CPU parses
/// the fields side by side; each field is then checked to end exactly at its comma, which keeps the answers
/// those of the left-to-right scan. (bookTicker: 75 → 64 ns on the bench machine.)
struct Commas {
    /// Bit `k` of `cur`: `b[base + k] == b','` (commas already returned cleared); `rest` holds the bits of the
    /// following 64-byte blocks, shifted down a word each time `cur` runs out (registers, not an indexed array:
    /// no store-to-load round trip on the hot path).
    cur: u64,
    rest: [u64; INDEX_WORDS - 1],
    base: usize,
}

impl Commas {
    /// Indexes `b[base..]`; `None` when that is shorter than 16 bytes or longer than [`INDEX_BYTES`].
    #[inline(always)]
    fn new(b: &[u8], base: usize) -> Option<Self> {
        let s = b.get(base..)?;
        if s.len() > INDEX_BYTES || s.len() < 16 {
            return None;
        }
        let [cur, r1, r2, r3] = comma_words(s);
        Some(Self {
            cur,
            rest: [r1, r2, r3],
            base,
        })
    }

    /// The position of the next comma.
    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        while self.cur == 0 {
            let [r1, r2, r3] = self.rest;
            if r1 | r2 | r3 == 0 {
                return None;
            }
            self.cur = r1;
            self.rest = [r2, r3, 0];
            self.base += 64;
        }
        let p = self.base + self.cur.trailing_zeros() as usize;
        self.cur &= self.cur - 1;
        Some(p)
    }
}

/// `Some(())` when a field that was parsed up to `j` ends exactly at the comma `c`.
#[inline(always)]
fn ends_at(j: usize, c: usize) -> Option<()> {
    (j == c).then_some(())
}

/// `,"x":` (`key` is `"x":`) at the comma `c`: the index after it.
#[inline(always)]
fn key_at(b: &[u8], c: usize, key: &[u8]) -> Option<usize> {
    lit(b, c + 1, key)
}

/// The symbol between `i` (after its opening quote) and its closing quote just before the comma `c`.
#[inline(always)]
fn symbol_until(b: &[u8], i: usize, c: usize) -> Option<Symbol> {
    let end = c.checked_sub(1)?;
    if *b.get(end)? != b'"' {
        return None;
    }
    Symbol::from_window(b.get(i..)?, end.checked_sub(i)?).ok()
}

/// `{"e":"bookTicker","u":…,"E":…,"T":…,"s":"…","b":"…","B":"…","a":"…","A":"…"}` (futures) or
/// `{"u":…,"s":"…","b":"…","B":"…","a":"…","A":"…"}` (spot), `i` after `"u":`.
///
/// Each field is parsed from the comma before it and must end exactly at the comma after it, so this accepts
/// precisely what a left-to-right scan of the canonical shape accepts (no canonical value contains a comma; a
/// message with one elsewhere fails a key check and goes to the general path).
#[inline(always)]
fn fast_book_ticker(b: &[u8], i: usize, futures: bool) -> Option<(MarketMsg<'_>, usize)> {
    let mut c = Commas::new(b, i)?;
    let c_u = c.next()?;
    let (update_id, j) = f_uint(b, i)?;
    ends_at(j, c_u)?;
    let (event_time, tx_time, c_s) = if futures {
        let c_e = c.next()?;
        let (e, j) = f_uint(b, key_at(b, c_u, br#""E":"#)?)?;
        ends_at(j, c_e)?;
        let c_t = c.next()?;
        let (t, j) = f_uint(b, key_at(b, c_e, br#""T":"#)?)?;
        ends_at(j, c_t)?;
        (e, t, c_t)
    } else {
        (0, 0, c_u)
    };
    let c_sym = c.next()?;
    let symbol = symbol_until(b, key_at(b, c_s, br#""s":""#)?, c_sym)?;
    let c_b = c.next()?;
    let (bid, j) = f_dec::<true>(b, key_at(b, c_sym, br#""b":""#)?)?;
    ends_at(j, c_b)?;
    let c_bq = c.next()?;
    let (bid_qty, j) = f_dec::<true>(b, key_at(b, c_b, br#""B":""#)?)?;
    ends_at(j, c_bq)?;
    let c_a = c.next()?;
    let (ask, j) = f_dec::<true>(b, key_at(b, c_bq, br#""a":""#)?)?;
    ends_at(j, c_a)?;
    let (ask_qty, j) = f_dec::<true>(b, key_at(b, c_a, br#""A":""#)?)?;
    let i = lit(b, j, b"}")?;
    Some((
        MarketMsg::BookTicker(BookTicker {
            symbol,
            update_id,
            event_time,
            tx_time,
            bid: Price::from_units(bid),
            bid_qty: Qty::from_units(bid_qty),
            ask: Price::from_units(ask),
            ask_qty: Qty::from_units(ask_qty),
        }),
        i,
    ))
}

/// `{"e":"aggTrade","E":…,"s":"…","a":…,"p":"…","q":"…"[,"nq":"…"],"f":…,"l":…,"T":…,"m":…[,"M":…]}`, `i` after
/// `"E":`. (`nq` is futures-only and unread; `M` is spot-only and unread.) Fields are bounded by the comma index
/// as in [`fast_book_ticker`].
#[inline(always)]
fn fast_agg_trade(b: &[u8], i: usize) -> Option<(MarketMsg<'_>, usize)> {
    let mut c = Commas::new(b, i)?;
    let c_e = c.next()?;
    let (event_time, j) = f_uint(b, i)?;
    ends_at(j, c_e)?;
    let c_sym = c.next()?;
    let symbol = symbol_until(b, key_at(b, c_e, br#""s":""#)?, c_sym)?;
    let c_a = c.next()?;
    let (agg_id, j) = f_uint(b, key_at(b, c_sym, br#""a":"#)?)?;
    ends_at(j, c_a)?;
    let c_p = c.next()?;
    let (price, j) = f_dec::<true>(b, key_at(b, c_a, br#""p":""#)?)?;
    ends_at(j, c_p)?;
    let mut c_q = c.next()?;
    let (qty, j) = f_dec::<true>(b, key_at(b, c_p, br#""q":""#)?)?;
    ends_at(j, c_q)?;
    if let Some(k) = key_at(b, c_q, br#""nq":""#) {
        let c_nq = c.next()?;
        ends_at(f_skip_str(b, k)?, c_nq)?;
        c_q = c_nq;
    }
    let c_f = c.next()?;
    let (first_id, j) = f_uint(b, key_at(b, c_q, br#""f":"#)?)?;
    ends_at(j, c_f)?;
    let c_l = c.next()?;
    let (last_id, j) = f_uint(b, key_at(b, c_f, br#""l":"#)?)?;
    ends_at(j, c_l)?;
    let c_t = c.next()?;
    let (trade_time, j) = f_uint(b, key_at(b, c_l, br#""T":"#)?)?;
    ends_at(j, c_t)?;
    let (buyer_is_maker, mut i) = f_bool(b, key_at(b, c_t, br#""m":"#)?)?;
    if let Some(j) = lit(b, i, br#","M":"#) {
        i = f_bool(b, j)?.1;
    }
    let i = lit(b, i, b"}")?;
    Some((
        MarketMsg::AggTrade(AggTrade {
            symbol,
            event_time,
            agg_id,
            price: Price::from_units(price),
            qty: Qty::from_units(qty),
            first_id,
            last_id,
            trade_time,
            buyer_is_maker,
        }),
        i,
    ))
}

/// `{"e":"depthUpdate","E":…[,"T":…],"s":"…","U":…,"u":…[,"pu":…],"b":[…],"a":[…]}`, `i` after `"E":`.
#[inline(always)]
fn fast_depth(b: &[u8], i: usize) -> Option<(MarketMsg<'_>, usize)> {
    let (event_time, mut i) = f_uint(b, i)?;
    let mut tx_time = 0;
    if let Some(j) = lit(b, i, br#","T":"#) {
        (tx_time, i) = f_uint(b, j)?;
    }
    let i = lit(b, i, br#","s":""#)?;
    let (symbol, i) = f_symbol(b, i)?;
    let i = lit(b, i, br#","U":"#)?;
    let (first_update_id, i) = f_uint(b, i)?;
    let i = lit(b, i, br#","u":"#)?;
    let (final_update_id, mut i) = f_uint(b, i)?;
    let mut prev_final_update_id = None;
    if let Some(j) = lit(b, i, br#","pu":"#) {
        let (pu, j) = f_uint(b, j)?;
        prev_final_update_id = Some(pu);
        i = j;
    }
    let i = lit(b, i, br#","b":"#)?;
    let (bids, i) = fast_levels(b, i)?;
    let i = lit(b, i, br#","a":"#)?;
    let (asks, i) = fast_levels(b, i)?;
    let i = lit(b, i, b"}")?;
    Some((
        MarketMsg::Depth(DepthUpdate {
            symbol,
            event_time,
            tx_time,
            first_update_id,
            final_update_id,
            prev_final_update_id,
            bids,
            asks,
        }),
        i,
    ))
}

/// One canonical payload object at `b[i]`.
#[inline(always)]
fn fast_payload(b: &[u8], i: usize) -> Option<(MarketMsg<'_>, usize)> {
    if let Some(j) = lit(b, i, br#"{"e":""#) {
        match b.get(j)? {
            b'b' => fast_book_ticker(b, lit(b, j, br#"bookTicker","u":"#)?, true),
            b'a' => fast_agg_trade(b, lit(b, j, br#"aggTrade","E":"#)?),
            b'd' => fast_depth(b, lit(b, j, br#"depthUpdate","E":"#)?),
            _ => None,
        }
    } else {
        fast_book_ticker(b, lit(b, i, br#"{"u":"#)?, false)
    }
}

/// The fast path (see the module docs): `Some` only for canonical input, with exactly what the general path
/// would return.
#[inline(always)]
fn fast_parse(b: &[u8]) -> Option<MarketMsg<'_>> {
    let (m, i) = if let Some(j) = lit(b, 0, br#"{"stream":""#) {
        let j = f_skip_str(b, j)?;
        let j = lit(b, j, br#","data":"#)?;
        let (m, j) = fast_payload(b, j)?;
        (m, lit(b, j, b"}")?)
    } else {
        fast_payload(b, 0)?
    };
    let rest = b.get(i..)?;
    rest.iter()
        .all(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        .then_some(m)
}

// ---------------------------------------------------------------------------------------------------------------
// Parser

const LEVELS: usize = 3;

/// Reusable parser state: per-nesting-level key tables, kept between calls so a parse never re-initialises
/// them (only a presence mask is cleared). About 2 KiB; create one per thread and reuse it.
#[derive(Clone)]
pub struct Parser {
    stack: [Fields; LEVELS],
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Parser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Parser")
    }
}

/// Parses one message with a fresh [`Parser`] (convenient; the hot path keeps one `Parser` and calls
/// [`Parser::parse`]).
pub fn parse(bytes: &[u8]) -> Result<MarketMsg<'_>, ParseError> {
    Parser::new().parse(bytes)
}

impl Parser {
    /// A parser.
    pub const fn new() -> Self {
        Self {
            stack: [Fields::new(), Fields::new(), Fields::new()],
        }
    }

    /// Parses one raw or combined-stream message. Never panics, never allocates.
    pub fn parse<'a>(&mut self, b: &'a [u8]) -> Result<MarketMsg<'a>, ParseError> {
        if b.len() > u32::MAX as usize {
            return Err(ParseError::TooLarge);
        }
        if let Some(m) = fast_parse(b) {
            return Ok(m);
        }
        self.parse_general(b)
    }

    /// The general path alone (any key order, typed errors); [`Parser::parse`] tries the canonical fast path
    /// first. Kept out of line so the fast path's function stays small (no general-path spills in its frame).
    #[inline(never)]
    fn parse_general<'a>(&mut self, b: &'a [u8]) -> Result<MarketMsg<'a>, ParseError> {
        let mut cur = Cur { b, i: 0 };
        cur.ws();
        if cur.peek().is_none() {
            return Err(ParseError::Empty);
        }
        if cur.peek() != Some(b'{') {
            return Err(cur.err());
        }
        for f in &mut self.stack {
            f.present = 0;
        }
        self.object(&mut cur, 0)?;
        cur.ws();
        if cur.i != b.len() {
            return Err(ParseError::TrailingBytes);
        }
        let level = match self.stack[0].get(SLOT_DATA) {
            Some(sp) if sp.kind == Kind::ObjParsed => 1,
            Some(_) => return Err(ParseError::WrongType("data")),
            None => 0,
        };
        self.payload(b, level)
    }

    /// Parses the object at the cursor into `stack[level]`. Recursion is bounded by [`LEVELS`]: only `data`
    /// (wrapper, level 0) and `k` (kline) are descended into.
    fn object(&mut self, cur: &mut Cur<'_>, level: usize) -> Result<(), ParseError> {
        cur.expect(b'{')?;
        cur.ws();
        if cur.peek() == Some(b'}') {
            cur.i += 1;
            return Ok(());
        }
        let mut child_used = false;
        loop {
            cur.ws();
            let (ks, ke, kesc) = cur.string()?;
            cur.ws();
            cur.expect(b':')?;
            cur.ws();
            let key_slot = if kesc { None } else { slot_of(&cur.b[ks..ke]) };
            let descend = match key_slot {
                Some(SLOT_DATA) => level == 0,
                Some(s) if s == slot(b'k') => level + 1 < LEVELS,
                _ => false,
            } && !child_used
                && cur.peek() == Some(b'{');
            let span = if descend {
                child_used = true;
                let start = cur.i;
                self.stack[level + 1].present = 0;
                self.object(cur, level + 1)?;
                Span {
                    start: start as u32,
                    end: cur.i as u32,
                    kind: Kind::ObjParsed,
                }
            } else {
                cur.value()?
            };
            if let Some(s) = key_slot {
                let f = &mut self.stack[level];
                if f.has(s) {
                    return Err(ParseError::DuplicateKey(slot_name(s)));
                }
                f.present |= 1u64 << s;
                f.spans[s] = span;
            }
            cur.ws();
            match cur.peek() {
                Some(b',') => cur.i += 1,
                Some(b'}') => {
                    cur.i += 1;
                    return Ok(());
                }
                _ => return Err(cur.err()),
            }
        }
    }

    fn payload<'a>(&self, b: &'a [u8], level: usize) -> Result<MarketMsg<'a>, ParseError> {
        let f = &self.stack[level];
        let req = |c: u8| {
            f.get(slot(c))
                .ok_or(ParseError::MissingField(slot_name(slot(c))))
        };
        let opt_u = |c: u8| -> Result<u64, ParseError> {
            match f.get(slot(c)) {
                Some(sp) => uint(b, sp, slot_name(slot(c))),
                None => Ok(0),
            }
        };
        let e = match f.get(slot(b'e')) {
            Some(sp) if sp.kind == Kind::Str => &b[sp.start as usize..sp.end as usize],
            Some(_) => return Err(ParseError::WrongType("e")),
            None => {
                // Spot bookTicker: {"u":..,"s":..,"b":..,"B":..,"a":..,"A":..}
                if [b'u', b's', b'b', b'B', b'a', b'A']
                    .iter()
                    .all(|&c| f.has(slot(c)))
                {
                    b"bookTicker"
                } else {
                    return Err(ParseError::NotMarketData);
                }
            }
        };
        match e {
            b"bookTicker" => Ok(MarketMsg::BookTicker(BookTicker {
                symbol: symbol(b, req(b's')?)?,
                update_id: uint(b, req(b'u')?, "u")?,
                event_time: opt_u(b'E')?,
                tx_time: opt_u(b'T')?,
                bid: Price::from_units(decimal(b, req(b'b')?, "b")?),
                bid_qty: Qty::from_units(decimal(b, req(b'B')?, "B")?),
                ask: Price::from_units(decimal(b, req(b'a')?, "a")?),
                ask_qty: Qty::from_units(decimal(b, req(b'A')?, "A")?),
            })),
            b"aggTrade" => Ok(MarketMsg::AggTrade(AggTrade {
                symbol: symbol(b, req(b's')?)?,
                event_time: uint(b, req(b'E')?, "E")?,
                agg_id: uint(b, req(b'a')?, "a")?,
                price: Price::from_units(decimal(b, req(b'p')?, "p")?),
                qty: Qty::from_units(decimal(b, req(b'q')?, "q")?),
                first_id: uint(b, req(b'f')?, "f")?,
                last_id: uint(b, req(b'l')?, "l")?,
                trade_time: uint(b, req(b'T')?, "T")?,
                buyer_is_maker: boolean(req(b'm')?, "m")?,
            })),
            b"depthUpdate" => Ok(MarketMsg::Depth(DepthUpdate {
                symbol: symbol(b, req(b's')?)?,
                event_time: uint(b, req(b'E')?, "E")?,
                tx_time: opt_u(b'T')?,
                first_update_id: uint(b, req(b'U')?, "U")?,
                final_update_id: uint(b, req(b'u')?, "u")?,
                prev_final_update_id: match f.get(SLOT_PU) {
                    Some(sp) => Some(uint(b, sp, "pu")?),
                    None => None,
                },
                bids: validate_levels(b, req(b'b')?, "b")?,
                asks: validate_levels(b, req(b'a')?, "a")?,
            })),
            b"kline" => {
                let ksp = req(b'k')?;
                if ksp.kind != Kind::ObjParsed {
                    return Err(ParseError::WrongType("k"));
                }
                let k = &self.stack[level + 1];
                let kreq = |c: u8| {
                    k.get(slot(c))
                        .ok_or(ParseError::MissingField(slot_name(slot(c))))
                };
                let isp = kreq(b'i')?;
                if isp.kind != Kind::Str {
                    return Err(ParseError::WrongType("i"));
                }
                let interval = Interval::parse(&b[isp.start as usize..isp.end as usize])
                    .ok_or(ParseError::BadInterval)?;
                let sym = symbol(b, req(b's')?)?;
                if let Some(ks) = k.get(slot(b's')) {
                    if symbol(b, ks)? != sym {
                        return Err(ParseError::BadSymbol);
                    }
                }
                let kopt_dec = |c: u8| -> Result<i64, ParseError> {
                    match k.get(slot(c)) {
                        Some(sp) => decimal(b, sp, slot_name(slot(c))),
                        None => Ok(0),
                    }
                };
                Ok(MarketMsg::Kline(Kline {
                    symbol: sym,
                    event_time: uint(b, req(b'E')?, "E")?,
                    start_time: uint(b, kreq(b't')?, "t")?,
                    close_time: uint(b, kreq(b'T')?, "T")?,
                    interval,
                    first_trade_id: int(b, kreq(b'f')?, "f")?,
                    last_trade_id: int(b, kreq(b'L')?, "L")?,
                    open: Price::from_units(decimal(b, kreq(b'o')?, "o")?),
                    close: Price::from_units(decimal(b, kreq(b'c')?, "c")?),
                    high: Price::from_units(decimal(b, kreq(b'h')?, "h")?),
                    low: Price::from_units(decimal(b, kreq(b'l')?, "l")?),
                    volume: Qty::from_units(decimal(b, kreq(b'v')?, "v")?),
                    trades: uint(b, kreq(b'n')?, "n")?,
                    closed: boolean(kreq(b'x')?, "x")?,
                    quote_volume: Notional::from_units(kopt_dec(b'q')?),
                    taker_buy_volume: Qty::from_units(kopt_dec(b'V')?),
                    taker_buy_quote: Notional::from_units(kopt_dec(b'Q')?),
                }))
            }
            _ => Err(ParseError::UnknownEvent),
        }
    }
}

/// The event time `E` of a message (a full parse; `Some(0)` when the variant has none, `None` when it does not parse).
pub fn event_time_of(p: &mut Parser, bytes: &[u8]) -> Option<u64> {
    p.parse(bytes).ok().map(|m| m.event_time())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn px(s: &str) -> Price {
        Price::parse(s).unwrap()
    }
    fn q(s: &str) -> Qty {
        Qty::parse(s).unwrap()
    }
    fn sym(s: &str) -> Symbol {
        Symbol::new(s).unwrap()
    }

    #[test]
    fn futures_book_ticker_from_the_protocol_doc() {
        let m = parse(br#"{"e":"bookTicker","u":400900217,"E":1568014460893,"T":1568014460891,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#).unwrap();
        assert_eq!(
            m,
            MarketMsg::BookTicker(BookTicker {
                symbol: sym("BNBUSDT"),
                update_id: 400900217,
                event_time: 1568014460893,
                tx_time: 1568014460891,
                bid: px("25.3519"),
                bid_qty: q("31.21"),
                ask: px("25.3652"),
                ask_qty: q("40.66"),
            })
        );
    }

    #[test]
    fn spot_book_ticker_without_event_fields() {
        let m = parse(br#"{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#).unwrap();
        let MarketMsg::BookTicker(t) = m else {
            panic!("{m:?}")
        };
        assert_eq!(t.event_time, 0);
        assert_eq!(t.tx_time, 0);
        assert_eq!(t.update_id, 400900217);
        assert_eq!(t.ask_qty, q("40.66"));
    }

    #[test]
    fn futures_agg_trade_from_the_protocol_doc() {
        let m = parse(br#"{"e":"aggTrade","E":123456789,"s":"BTCUSDT","a":5933014,"p":"0.001","q":"100","nq":"100","f":100,"l":105,"T":123456785,"m":true}"#).unwrap();
        assert_eq!(
            m,
            MarketMsg::AggTrade(AggTrade {
                symbol: sym("BTCUSDT"),
                event_time: 123456789,
                agg_id: 5933014,
                price: px("0.001"),
                qty: q("100"),
                first_id: 100,
                last_id: 105,
                trade_time: 123456785,
                buyer_is_maker: true,
            })
        );
    }

    #[test]
    fn spot_agg_trade_with_capital_m() {
        let m = parse(br#"{"e":"aggTrade","E":1570752011620,"s":"XRPETH","a":13519807,"p":"0.00141342","q":"23.00000000","f":15373518,"l":15373518,"T":1570752011620,"m":true,"M":true}"#).unwrap();
        let MarketMsg::AggTrade(t) = m else { panic!() };
        assert_eq!(t.price, px("0.00141342"));
        assert_eq!(t.qty, q("23"));
    }

    #[test]
    fn depth_update_from_the_protocol_doc() {
        let m = parse(br#"{"e":"depthUpdate","E":123456789,"T":123456788,"s":"BTCUSDT","U":157,"u":160,"pu":149,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}"#).unwrap();
        let MarketMsg::Depth(d) = m else { panic!() };
        assert_eq!(d.symbol, sym("BTCUSDT"));
        assert_eq!((d.event_time, d.tx_time), (123456789, 123456788));
        assert_eq!(
            (d.first_update_id, d.final_update_id, d.prev_final_update_id),
            (157, 160, Some(149))
        );
        let mut bids = [(Price::ZERO, Qty::ZERO); 4];
        let mut n = 0;
        for l in d.bids {
            bids[n] = l;
            n += 1;
        }
        assert_eq!(&bids[..n], &[(px("0.0024"), q("10"))]);
        assert_eq!(d.asks.iter().next(), Some((px("0.0026"), q("100"))));
        assert_eq!(d.asks.len(), 1);
    }

    #[test]
    fn depth_with_many_levels_and_whitespace() {
        let mut s =
            String::from(r#"{ "e" : "depthUpdate", "E":1,"s":"ETHUSDT","U":1,"u":2,"b":[ "#);
        for i in 0..200 {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!(r#"[ "{}.5" , "0.00{}" ]"#, 1000 - i, i % 10));
        }
        s.push_str(r#"], "a": [] }"#);
        let MarketMsg::Depth(d) = parse(s.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(d.bids.len(), 200);
        assert!(d.asks.is_empty());
        assert_eq!(d.prev_final_update_id, None);
        let v: Vec<_> = d.bids.iter().collect();
        assert_eq!(v.len(), 200);
        assert_eq!(v[199], (px("801.5"), q("0.009")));
    }

    #[test]
    fn kline_from_the_protocol_doc() {
        let m = parse(br#"{"e":"kline","E":1638747660000,"s":"BTCUSDT","k":{"t":1638747660000,"T":1638747719999,"s":"BTCUSDT","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020","h":"0.0025","l":"0.0015","v":"1000","n":100,"x":false,"q":"1.0000","V":"500","Q":"0.500","B":"123456"}}"#).unwrap();
        assert_eq!(
            m,
            MarketMsg::Kline(Kline {
                symbol: sym("BTCUSDT"),
                event_time: 1638747660000,
                start_time: 1638747660000,
                close_time: 1638747719999,
                interval: Interval(60),
                first_trade_id: 100,
                last_trade_id: 200,
                open: px("0.001"),
                close: px("0.002"),
                high: px("0.0025"),
                low: px("0.0015"),
                volume: q("1000"),
                trades: 100,
                closed: false,
                quote_volume: Notional::parse("1").unwrap(),
                taker_buy_volume: q("500"),
                taker_buy_quote: Notional::parse("0.5").unwrap(),
            })
        );
    }

    #[test]
    fn combined_stream_wrapper_and_any_key_order() {
        let a = parse(br#"{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":1,"E":2,"T":3,"s":"BTCUSDT","b":"1.1","B":"2","a":"1.2","A":"3"}}"#).unwrap();
        let b = parse(br#"{"data":{"A":"3","a":"1.2","B":"2","b":"1.1","s":"BTCUSDT","T":3,"E":2,"u":1,"e":"bookTicker"},"stream":"btcusdt@bookTicker"}"#).unwrap();
        assert_eq!(a, b);
        let k = parse(br#"{"stream":"xrpusdt@kline_5m","data":{"e":"kline","E":1636934700000,"s":"XRPUSDT","k":{"t":1636934400000,"T":1636934699999,"s":"XRPUSDT","i":"5m","f":-1,"L":-1,"o":"1.1893","c":"1.1941","h":"1.1954","l":"1.1891","v":"9289043.5","n":0,"x":true,"q":"0","V":"0","Q":"0","B":"0"}}}"#).unwrap();
        let MarketMsg::Kline(k) = k else { panic!() };
        assert_eq!(k.first_trade_id, -1);
        assert_eq!(k.interval, Interval(300));
        assert!(k.closed);
    }

    #[test]
    fn unknown_keys_and_nested_values_are_skipped() {
        let m = parse(br#"{"x":{"y":[1,{"z":"]}"}],"w":null},"e":"aggTrade","E":1,"s":"BTCUSDT","a":1,"p":"1","q":"1","f":1,"l":1,"T":1,"m":false,"esc\"aped":"a\"b"}"#).unwrap();
        assert!(matches!(m, MarketMsg::AggTrade(t) if !t.buyer_is_maker));
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        use ParseError::*;
        let cases: &[(&[u8], ParseError)] = &[
            (b"", Empty),
            (b"   ", Empty),
            (b"[]", Syntax(0)),
            (b"{", Truncated),
            (b"{\"e\":", Truncated),
            (b"{\"e\":\"aggTrade\"", Truncated),
            (br#"{"result":null,"id":1}"#, NotMarketData),
            (br#"{"e":"markPriceUpdate","E":1}"#, UnknownEvent),
            (br#"{"e":"aggTrade","E":1,"s":"BTCUSDT","a":1,"p":"1","q":"1","f":1,"l":1,"T":1}"#, MissingField("m")),
            (br#"{"e":"aggTrade","E":1,"s":"BTCUSDT","a":1,"p":1e5,"q":"1","f":1,"l":1,"T":1,"m":true}"#, BadDecimal { field: "p", err: NumError::Malformed }),
            (br#"{"e":"aggTrade","E":1,"s":"BTCUSDT","a":1,"p":"0.000000001","q":"1","f":1,"l":1,"T":1,"m":true}"#, BadDecimal { field: "p", err: NumError::TooPrecise }),
            (br#"{"e":"aggTrade","E":"1","s":"BTCUSDT","a":1,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true}"#, WrongType("E")),
            (br#"{"e":"aggTrade","E":-1,"s":"BTCUSDT","a":1,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true}"#, BadInt("E")),
            (br#"{"e":"aggTrade","E":99999999999999999999,"s":"BTCUSDT","a":1,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true}"#, BadInt("E")),
            (br#"{"e":"aggTrade","E":1,"s":"BTC-USDT","a":1,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true}"#, BadSymbol),
            (br#"{"e":"aggTrade","e":"aggTrade"}"#, DuplicateKey("e")),
            (br#"{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[["1"]],"a":[]}"#, BadLevel("b")),
            (br#"{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":{},"a":[]}"#, WrongType("b")),
            (br#"{"e":"kline","E":1,"s":"BTCUSDT","k":{"i":"7q"}}"#, BadInterval),
            (br#"{"u":1,"s":"BNBUSDT","b":"1","B":"1","a":"1","A":"1"} x"#, TrailingBytes),
            (br#"{"data":5}"#, WrongType("data")),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse(input),
                Err(*want),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let deep = "[".repeat(100);
        let s = format!("{{\"x\":{deep}");
        assert_eq!(parse(s.as_bytes()), Err(TooDeep));
    }

    #[test]
    fn integers_at_the_edges() {
        let b = br#"-9223372036854775808"#;
        let sp = Span {
            start: 0,
            end: b.len() as u32,
            kind: Kind::Num,
        };
        assert_eq!(int(b, sp, "x"), Ok(i64::MIN));
        let b = br#"9223372036854775808"#;
        let sp = Span {
            start: 0,
            end: b.len() as u32,
            kind: Kind::Num,
        };
        assert_eq!(int(b, sp, "x"), Err(ParseError::BadInt("x")));
        let b = br#"1.5"#;
        let sp = Span {
            start: 0,
            end: 3,
            kind: Kind::Num,
        };
        assert_eq!(int(b, sp, "x"), Err(ParseError::BadInt("x")));
    }

    #[test]
    fn interval_names() {
        assert_eq!(Interval::parse(b"1s"), Some(Interval(1)));
        assert_eq!(Interval::parse(b"15m"), Some(Interval(900)));
        assert_eq!(Interval::parse(b"4h"), Some(Interval(14_400)));
        assert_eq!(Interval::parse(b"1w"), Some(Interval(604_800)));
        assert_eq!(Interval::parse(b"0m"), None);
        assert_eq!(Interval::parse(b"m"), None);
        assert_eq!(Interval::parse(b""), None);
        assert_eq!(Interval::parse(b"100m"), None);
    }

    /// Canonical messages the fast path must take (and must agree on with the general path).
    const CANONICAL: &[&[u8]] = &[
        br#"{"e":"bookTicker","u":400900217,"E":1568014460893,"T":1568014460891,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#,
        br#"{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#,
        br#"{"e":"aggTrade","E":123456789,"s":"BTCUSDT","a":5933014,"p":"0.001","q":"100","nq":"100","f":100,"l":105,"T":123456785,"m":true}"#,
        br#"{"e":"aggTrade","E":1570752011620,"s":"XRPETH","a":13519807,"p":"0.00141342","q":"23.00000000","f":15373518,"l":15373518,"T":1570752011620,"m":true,"M":true}"#,
        br#"{"e":"depthUpdate","E":123456789,"T":123456788,"s":"BTCUSDT","U":157,"u":160,"pu":149,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}"#,
        br#"{"e":"depthUpdate","E":123456789,"s":"BTCUSDT","U":157,"u":160,"b":[["0.0024","10"],["0.0023","0"]],"a":[]}"#,
        br#"{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":1,"E":2,"T":3,"s":"btcusdt","b":"-1.1","B":"2.","a":".2","A":"3.000000000000"}}"#,
        br#"{"stream":"xrpeth@aggTrade","data":{"e":"aggTrade","E":1570752011620,"s":"XRPETH","a":13519807,"p":"0.00141342","q":"23.00000000","f":15373518,"l":15373518,"T":1570752011620,"m":false,"M":false}}"#,
    ];

    #[test]
    fn canonical_messages_take_the_fast_path_with_the_general_answer() {
        for m in CANONICAL {
            let fast = fast_parse(m);
            assert!(fast.is_some(), "{}", String::from_utf8_lossy(m));
            assert_eq!(
                fast.map(Ok),
                Some(Parser::new().parse_general(m)),
                "{}",
                String::from_utf8_lossy(m)
            );
            if let Some(MarketMsg::Depth(d)) = fast {
                let Ok(MarketMsg::Depth(g)) = Parser::new().parse_general(m) else {
                    panic!()
                };
                assert!(d.bids.iter().eq(g.bids.iter()) && d.asks.iter().eq(g.asks.iter()));
            }
        }
        // Not canonical: the general path answers (same results as before the fast path existed).
        for m in [
            &br#" {"e":"bookTicker","u":1,"E":2,"T":3,"s":"BTCUSDT","b":"1","B":"2","a":"3","A":"4"}"#[..],
            br#"{"e":"bookTicker","E":2,"u":1,"T":3,"s":"BTCUSDT","b":"1","B":"2","a":"3","A":"4"}"#,
            br#"{"e":"bookTicker","u":1,"E":2,"T":3,"s":"BTCUSDT","b":"1","B":"2","a":"3","A":4}"#,
            br#"{"e":"bookTicker","u":1,"E":2,"T":3,"s":"BTCUSDT","b":"1","B":"2","a":"3","A":"4","x":1}"#,
            br#"{"e":"bookTicker","u":1,"E":2,"T":3,"s":"BTCUSDT","b":"1.000000001","B":"2","a":"3","A":"4"}"#,
            br#"{"e":"bookTicker","u":1,"E":2,"T":3,"s":"BTCUSDT","b":"99999999999","B":"2","a":"3","A":"4"}"#,
            br#"{"e":"bookTicker","u":1234567890123456789,"E":2,"T":3,"s":"BTCUSDT","b":"1","B":"2","a":"3","A":"4"}"#,
        ] {
            assert!(fast_parse(m).is_none(), "{}", String::from_utf8_lossy(m));
            assert_eq!(parse(m), Parser::new().parse_general(m));
        }
    }

    #[test]
    fn long_payloads_and_long_stream_names() {
        let bt = br#"{"e":"bookTicker","u":400900217,"E":1568014460893,"T":1568014460891,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#;
        // The comma index starts at the payload's first value, so a long stream name keeps the fast path.
        let name = "x".repeat(300);
        let wrapped = format!(
            r#"{{"stream":"{name}","data":{}}}"#,
            String::from_utf8_lossy(bt)
        );
        assert!(fast_parse(wrapped.as_bytes()).is_some());
        assert_eq!(parse(wrapped.as_bytes()), parse(bt));
        // Trailing zeros past the 8th decimal are exact, so the value is the same, but a payload over the index's
        // 256 bytes is left to the general path.
        let zeros = "0".repeat(250);
        let long = String::from_utf8_lossy(bt)
            .replace(r#""A":"40.66000000""#, &format!(r#""A":"40.66{zeros}""#));
        assert!(fast_parse(long.as_bytes()).is_none());
        assert_eq!(parse(long.as_bytes()), parse(bt));
        // A comma inside a value the fast path skips (`nq`) shifts the comma index: the general path answers.
        let agg = br#"{"e":"aggTrade","E":123456789,"s":"BTCUSDT","a":5933014,"p":"0.001","q":"100","nq":"1,0","f":100,"l":105,"T":123456785,"m":true}"#;
        assert!(fast_parse(agg).is_none());
        assert_eq!(parse(agg), Parser::new().parse_general(agg));
        assert!(parse(agg).is_ok());
    }

    #[test]
    fn decimals_at_the_fast_path_edges() {
        for s in [
            "0",
            "-0",
            "1.",
            ".5",
            "-.5",
            "9999999999.99999999",
            "-9999999999.99999999",
            "1.000000000000",
            "0.00000001",
            "00012.340",
        ] {
            assert_eq!(
                scan_units::<true>(s.as_bytes(), 0).map(|(v, _)| v),
                Some(parse_units(s.as_bytes()).unwrap()),
                "{s}"
            );
        }
        for s in [
            "",
            "-",
            ".",
            "-.",
            "1.000000001",
            "12345678901",
            "+1",
            "1e5",
            "1..2",
            "--1",
        ] {
            assert!(
                scan_units::<true>(s.as_bytes(), 0).is_none_or(|(_, n)| n != s.len()),
                "{s}"
            );
            assert_eq!(
                parse_units_fast(s.as_bytes()),
                parse_units(s.as_bytes()),
                "{s}"
            );
        }
    }

    fn canonical_strategy() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let dec = "-?[0-9]{0,11}(\\.[0-9]{0,10})?";
        let int = "[0-9]{1,20}";
        let sym = "[A-Za-z0-9]{0,22}";
        (
            0usize..5,
            (int, int, int, sym),
            (dec, dec, dec, dec),
            (any::<bool>(), any::<bool>(), 0usize..4),
        )
            .prop_map(|(kind, (u, e, t, s), (p1, p2, p3, p4), (m, wrap, nlev))| {
                let body = match kind {
                    0 => format!(
                        r#"{{"e":"bookTicker","u":{u},"E":{e},"T":{t},"s":"{s}","b":"{p1}","B":"{p2}","a":"{p3}","A":"{p4}"}}"#
                    ),
                    1 => format!(r#"{{"u":{u},"s":"{s}","b":"{p1}","B":"{p2}","a":"{p3}","A":"{p4}"}}"#),
                    2 => format!(
                        r#"{{"e":"aggTrade","E":{e},"s":"{s}","a":{u},"p":"{p1}","q":"{p2}","nq":"{p3}","f":{t},"l":{t},"T":{e},"m":{m}}}"#
                    ),
                    3 => format!(
                        r#"{{"e":"aggTrade","E":{e},"s":"{s}","a":{u},"p":"{p1}","q":"{p2}","f":{t},"l":{t},"T":{e},"m":{m},"M":{wrap}}}"#
                    ),
                    _ => {
                        let lv = |a: &str, b: &str| {
                            (0..nlev).map(|_| format!(r#"["{a}","{b}"]"#)).collect::<Vec<_>>().join(",")
                        };
                        let (bids, asks) = (lv(&p1, &p2), lv(&p3, &p4));
                        if m {
                            format!(r#"{{"e":"depthUpdate","E":{e},"T":{t},"s":"{s}","U":{u},"u":{u},"pu":{t},"b":[{bids}],"a":[{asks}]}}"#)
                        } else {
                            format!(r#"{{"e":"depthUpdate","E":{e},"s":"{s}","U":{u},"u":{u},"b":[{bids}],"a":[{asks}]}}"#)
                        }
                    }
                };
                if wrap {
                    format!(r#"{{"stream":"x@y","data":{body}}}"#).into_bytes()
                } else {
                    body.into_bytes()
                }
            })
    }

    /// The full parser (fast path first) and the general path alone give the same answer, depth levels included.
    fn same_as_general(b: &[u8]) -> Result<(), proptest::test_runner::TestCaseError> {
        let got = Parser::new().parse(b);
        let want = Parser::new().parse_general(b);
        proptest::prop_assert_eq!(got, want, "{}", String::from_utf8_lossy(b));
        if let (Ok(MarketMsg::Depth(x)), Ok(MarketMsg::Depth(y))) = (got, want) {
            proptest::prop_assert!(x.bids.iter().eq(y.bids.iter()));
            proptest::prop_assert!(x.asks.iter().eq(y.asks.iter()));
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        #[test]
        fn parse_units_fast_equals_parse_units(
            s in "-?[0-9]{0,13}(\\.[0-9]{0,12})?[0-9.eE+x-]{0,2}",
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24),
        ) {
            proptest::prop_assert_eq!(parse_units_fast(s.as_bytes()), parse_units(s.as_bytes()), "{}", s);
            proptest::prop_assert_eq!(parse_units_fast(&raw), parse_units(&raw));
            // What the fast path's quoted-decimal scan accepts, parse_units accepts with the same value.
            if let Some((v, n)) = scan_units::<true>(s.as_bytes(), 0) {
                proptest::prop_assert_eq!(parse_units(&s.as_bytes()[..n]), Ok(v));
            }
        }

        #[test]
        fn fast_path_equals_general_path(
            msg in canonical_strategy(),
            pos in 0usize..400,
            byte in proptest::prelude::any::<u8>(),
            op in 0usize..4,
        ) {
            same_as_general(&msg)?;
            let mut v = msg.clone();
            let p = pos % v.len();
            match op {
                0 => v[p] = byte,
                1 => v.insert(p, b' '),
                2 => { v.remove(p); }
                _ => v.truncate(p),
            }
            same_as_general(&v)?;
        }

        /// The comma bitmap, SSE2 and SWAR, against a byte loop; any length (out-of-range lengths give none).
        #[test]
        fn comma_words_mark_exactly_the_commas(
            bytes in proptest::collection::vec(proptest::prop_oneof![
                proptest::prelude::Just(b','), proptest::prelude::any::<u8>()
            ], 0..300),
        ) {
            let mut want = [0u64; INDEX_WORDS];
            if (16..=INDEX_BYTES).contains(&bytes.len()) {
                for (k, _) in bytes.iter().enumerate().filter(|(_, &c)| c == b',') {
                    want[k / 64] |= 1 << (k % 64);
                }
            }
            proptest::prop_assert_eq!(comma_words(&bytes), want);
            proptest::prop_assert_eq!(comma_words_swar(&bytes), want);
        }

        /// Structural bytes (commas, quotes, colons, braces) inserted or overwritten anywhere in a canonical
        /// message: the comma-indexed fast path must never answer differently from the general path.
        #[test]
        fn structural_mutations_match_the_general_path(
            msg in canonical_strategy(),
            pos in 0usize..400,
            pos2 in 0usize..400,
            byte in proptest::prop_oneof![
                proptest::prelude::Just(b','), proptest::prelude::Just(b'"'), proptest::prelude::Just(b':'),
                proptest::prelude::Just(b'}'), proptest::prelude::Just(b'{'), proptest::prelude::Just(b'0'),
                proptest::prelude::Just(b'.'), proptest::prelude::Just(b'-'), proptest::prelude::Just(b'\\')
            ],
            insert in proptest::prelude::any::<bool>(),
            pad in 0usize..300,
        ) {
            let mut v = msg.clone();
            for p in [pos, pos2] {
                let p = p % (v.len() + 1);
                if insert {
                    v.insert(p, byte);
                } else if p < v.len() {
                    v[p] = byte;
                }
            }
            same_as_general(&v)?;
            // A long stream name (the comma index covers the payload only) and a long payload (over the index's
            // 256 bytes: the general path answers).
            let long_stream = [&br#"{"stream":""#[..], &vec![b'x'; pad], br#"","data":"#, &msg, b"}"].concat();
            same_as_general(&long_stream)?;
            if let Some(at) = msg.windows(5).position(|w| w == br#","A":"#) {
                let mut long = msg.clone();
                long.splice(at..at, std::iter::repeat_n(b' ', pad));
                same_as_general(&long)?;
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(pos in 0usize..200, byte in proptest::prelude::any::<u8>(), cut in 0usize..200) {
            let base = br#"{"stream":"btcusdt@depth","data":{"e":"depthUpdate","E":123456789,"T":123456788,"s":"BTCUSDT","U":157,"u":160,"pu":149,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}}"#;
            let mut v = base.to_vec();
            let p = pos % v.len();
            v[p] = byte;
            if let Ok(MarketMsg::Depth(d)) = parse(&v) {
                let _ = d.bids.iter().count() + d.asks.iter().count();
            }
            let c = cut % v.len();
            let _ = parse(&v[..c]);
        }
    }
}
