//! Allocation-free reader of server-to-client WebSocket frames (RFC 6455 §5), for the hot read path.
//!
//! Why not tungstenite: its `read()` returns an owned `Message` (a `Vec`/`Bytes` per frame), so every market
//! message would allocate. [`FrameReader`] owns one buffer sized once; bytes are read straight into it from any
//! [`Read`] (a non-blocking socket, a TLS stream), and each complete frame is handed out as a slice of that
//! buffer. Fragmented messages are reassembled in place (later fragments' payloads are moved down next to the
//! first), so a message of any size up to the buffer's capacity is one contiguous slice.
//!
//! Scope: the framing only. The opening handshake (HTTP upgrade), TLS and ping/pong policy stay with the
//! connection owner; [`encode_client_frame`] writes the masked frames a client sends (pong, close) into a
//! caller buffer. Protocol violations a client must reject are typed [`FrameError`]s: masked server frames,
//! reserved bits without a negotiated extension, unknown opcodes, oversized or fragmented control frames,
//! continuation frames out of sequence, and 64-bit lengths with the top bit set.

use std::io::{self, Read};

/// Frame opcodes (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// UTF-8 text message (Binance market data).
    Text,
    /// Binary message.
    Binary,
    /// Close (payload: optional 2-byte code + reason).
    Close,
    /// Ping (must be answered with a pong carrying the same payload).
    Ping,
    /// Pong.
    Pong,
}

impl OpCode {
    fn from_bits(b: u8) -> Option<Self> {
        match b {
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }
    fn bits(self) -> u8 {
        match self {
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }
    fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// One complete message (data frames reassembled) or control frame, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What it is.
    pub opcode: OpCode,
    /// Unmasked payload.
    pub payload: &'a [u8],
}

/// A protocol violation by the server, or a frame that cannot fit the buffer. The connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A server frame carried a mask (RFC 6455 §5.1: the client must close the connection).
    #[error("server sent a masked frame")]
    Masked,
    /// RSV1-3 set although no extension was negotiated.
    #[error("reserved frame bits set (no extension negotiated)")]
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    #[error("unknown WebSocket opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A control frame longer than 125 bytes or fragmented.
    #[error("invalid control frame (longer than 125 bytes or fragmented)")]
    BadControl,
    /// A continuation frame without a message to continue, or a new data frame inside a fragmented message.
    #[error("continuation frame out of sequence")]
    BadContinuation,
    /// The 64-bit payload length has its most significant bit set.
    #[error("invalid 64-bit payload length")]
    BadLength,
    /// The frame (or reassembled message) is larger than the reader's buffer; raise the capacity.
    #[error("WebSocket message larger than the {0}-byte read buffer")]
    TooLarge(usize),
}

/// Parsed frame header.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    opcode: Option<OpCode>, // None: continuation
    header_len: usize,
    payload_len: usize,
}

/// Decodes the header at the front of `b`; `Ok(None)` when more bytes are needed.
#[inline]
fn header(b: &[u8], cap: usize) -> Result<Option<Header>, FrameError> {
    let (Some(&b0), Some(&b1)) = (b.first(), b.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let fin = b0 & 0x80 != 0;
    let code = b0 & 0x0F;
    let opcode = if code == 0 {
        None
    } else {
        Some(OpCode::from_bits(code).ok_or(FrameError::UnknownOpcode(code))?)
    };
    let (payload_len, header_len) = match b1 & 0x7F {
        126 => match b.get(2..4) {
            Some(l) => (u16::from_be_bytes([l[0], l[1]]) as u64, 4),
            None => return Ok(None),
        },
        127 => match b.get(2..10) {
            Some(l) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(l);
                let n = u64::from_be_bytes(a);
                if n >> 63 != 0 {
                    return Err(FrameError::BadLength);
                }
                (n, 10)
            }
            None => return Ok(None),
        },
        n => (n as u64, 2),
    };
    if let Some(op) = opcode {
        if op.is_control() && (!fin || payload_len > 125) {
            return Err(FrameError::BadControl);
        }
    }
    if payload_len > cap as u64 {
        return Err(FrameError::TooLarge(cap));
    }
    Ok(Some(Header {
        fin,
        opcode,
        header_len,
        payload_len: payload_len as usize,
    }))
}

/// A fragmented data message being reassembled at `buf[start..start + len]`.
#[derive(Debug, Clone, Copy)]
struct Partial {
    opcode: OpCode,
    start: usize,
    len: usize,
}

/// Reads frames from a byte stream into one fixed buffer (see the module docs). Allocates only in
/// [`FrameReader::new`].
pub struct FrameReader {
    buf: Box<[u8]>,
    /// First byte not yet consumed (the next frame header, or the start of a partial message).
    start: usize,
    /// Where the next frame header is (== `start` unless a message is being reassembled).
    pos: usize,
    /// End of valid data.
    end: usize,
    partial: Option<Partial>,
}

impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("capacity", &self.buf.len())
            .field("buffered", &(self.end - self.start))
            .finish()
    }
}

/// Default buffer: Binance's largest market messages (full-depth snapshots over WS) are well below this.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

impl FrameReader {
    /// A reader whose buffer holds `capacity` bytes (at least 256): the largest message it accepts is a little
    /// less than that (its frame headers share the buffer).
    pub fn new(capacity: usize) -> Self {
        Self {
            buf: vec![0u8; capacity.max(256)].into_boxed_slice(),
            start: 0,
            pos: 0,
            end: 0,
            partial: None,
        }
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// One `read()` from `src` into the free part of the buffer (moving unconsumed bytes to the front first when
    /// the tail is short). Returns what `read` returned: `Ok(0)` is end of stream; `WouldBlock` from a
    /// non-blocking source is passed through.
    pub fn fill<R: Read + ?Sized>(&mut self, src: &mut R) -> io::Result<usize> {
        if self.start == self.end && self.partial.is_none() {
            self.start = 0;
            self.pos = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < self.buf.len() / 4 && self.start > 0 {
            // Compact: everything from `start` (a partial message, then unparsed frames) moves down.
            let shift = self.start;
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.pos -= shift;
            self.end -= shift;
            if let Some(p) = &mut self.partial {
                p.start -= shift;
            }
        }
        if self.end == self.buf.len() {
            // Full buffer and nothing consumable: a frame larger than the buffer (header() reports it first
            // whenever the length is known) — refuse rather than spin.
            return Err(io::Error::other(FrameError::TooLarge(self.buf.len())));
        }
        let n = src.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// The next complete message or control frame in the buffer, `Ok(None)` when more bytes are needed (call
    /// [`FrameReader::fill`]). Control frames may arrive between the fragments of a message (RFC 6455 §5.4) and
    /// are returned as they come.
    #[inline]
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FrameError> {
        Ok(self.next_span()?.map(|s| Frame {
            opcode: s.opcode,
            payload: self.payload(s),
        }))
    }

    /// Like [`FrameReader::next_frame`], but returns where the payload lies instead of borrowing it, so a caller
    /// can keep polling in a loop and fetch the bytes afterwards with [`FrameReader::payload`] (a borrowed
    /// return from inside a loop that also mutates the reader does not pass the borrow checker).
    #[inline]
    pub fn next_span(&mut self) -> Result<Option<FrameSpan>, FrameError> {
        loop {
            let cap = self.buf.len();
            let Some(h) = header(&self.buf[self.pos..self.end], cap)? else {
                return Ok(None);
            };
            let total = h.header_len + h.payload_len;
            if self.end - self.pos < total {
                if self.pos + total > cap && self.start == 0 {
                    return Err(FrameError::TooLarge(cap));
                }
                return Ok(None);
            }
            let payload = self.pos + h.header_len..self.pos + total;
            match (h.opcode, self.partial) {
                (Some(op), _) if op.is_control() => {
                    let at = self.pos;
                    self.pos += total;
                    if self.partial.is_none() {
                        self.start = self.pos;
                    }
                    return Ok(Some(FrameSpan {
                        opcode: op,
                        start: at + h.header_len,
                        len: h.payload_len,
                    }));
                }
                (Some(op), None) => {
                    self.pos += total;
                    if h.fin {
                        self.start = self.pos;
                        return Ok(Some(FrameSpan {
                            opcode: op,
                            start: payload.start,
                            len: h.payload_len,
                        }));
                    }
                    // First fragment: its payload stays where it is; later ones are appended to it.
                    self.partial = Some(Partial {
                        opcode: op,
                        start: payload.start,
                        len: h.payload_len,
                    });
                }
                (None, Some(mut p)) => {
                    if p.len + h.payload_len > cap {
                        return Err(FrameError::TooLarge(cap));
                    }
                    // Moving left never overwrites bytes not yet moved (copy_within is a memmove).
                    self.buf.copy_within(payload, p.start + p.len);
                    p.len += h.payload_len;
                    self.pos += total;
                    if h.fin {
                        self.partial = None;
                        self.start = self.pos;
                        return Ok(Some(FrameSpan {
                            opcode: p.opcode,
                            start: p.start,
                            len: p.len,
                        }));
                    }
                    self.partial = Some(p);
                }
                (None, None) | (Some(_), Some(_)) => return Err(FrameError::BadContinuation),
            }
        }
    }
}

impl FrameReader {
    /// The payload of a frame [`FrameReader::next_span`] returned. Valid only until the next `fill` or
    /// `next_*` call (they move bytes); a stale span yields whatever bytes are there now (or an empty slice),
    /// never out-of-bounds memory.
    #[inline]
    pub fn payload(&self, s: FrameSpan) -> &[u8] {
        self.buf.get(s.start..s.start + s.len).unwrap_or(&[])
    }
}

/// Where a frame's payload lies in a [`FrameReader`]'s buffer (see [`FrameReader::next_span`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpan {
    /// What it is.
    pub opcode: OpCode,
    start: usize,
    len: usize,
}

/// Header length, without the mask, of a frame carrying `n` payload bytes (RFC 6455 §5.2: 7-bit, 16-bit or
/// 64-bit length).
#[inline]
fn header_len(n: usize) -> usize {
    match n {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Writes the length of a `n`-byte payload from `dst[1]` on, in the form its header length `hl` (from
/// [`header_len`]) has room for; `mask_bit` is 0x80 for a masked (client) frame, 0 for a server frame.
#[inline]
fn put_payload_len(dst: &mut [u8], hl: usize, n: usize, mask_bit: u8) {
    match hl {
        2 => dst[1] = mask_bit | n as u8,
        4 => {
            dst[1] = mask_bit | 126;
            dst[2..4].copy_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            dst[1] = mask_bit | 127;
            dst[2..10].copy_from_slice(&(n as u64).to_be_bytes());
        }
    }
}

/// Writes one masked client-to-server frame (FIN set) into `out`, returning its length, or `None` if `out` is
/// too small. `mask` must be unpredictable per frame (RFC 6455 §5.3); callers take it from their RNG.
pub fn encode_client_frame(
    opcode: OpCode,
    payload: &[u8],
    mask: [u8; 4],
    out: &mut [u8],
) -> Option<usize> {
    let n = payload.len();
    let hl = header_len(n);
    let total = hl + 4 + n;
    let dst = out.get_mut(..total)?;
    dst[0] = 0x80 | opcode.bits();
    put_payload_len(dst, hl, n, 0x80);
    dst[hl..hl + 4].copy_from_slice(&mask);
    for (i, (d, s)) in dst[hl + 4..].iter_mut().zip(payload).enumerate() {
        *d = s ^ mask[i & 3];
    }
    Some(total)
}

/// Writes one unmasked server-to-client frame (FIN set) into `out` (the simulator's and tests' side).
pub fn encode_server_frame(opcode: OpCode, payload: &[u8], out: &mut [u8]) -> Option<usize> {
    encode_server_fragment(opcode.bits(), true, payload, out)
}

/// Writes one unmasked server frame with an explicit opcode nibble (0 = continuation) and FIN bit (tests of
/// fragmentation).
pub fn encode_server_fragment(
    opcode_bits: u8,
    fin: bool,
    payload: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    let n = payload.len();
    let hl = header_len(n);
    let dst = out.get_mut(..hl + n)?;
    dst[0] = (u8::from(fin) << 7) | (opcode_bits & 0x0F);
    put_payload_len(dst, hl, n, 0);
    dst[hl..].copy_from_slice(payload);
    Some(hl + n)
}

/// One server frame as its own buffer, for the tests of this module and of the WebSocket client.
#[cfg(test)]
pub(crate) fn server_frame(op: OpCode, p: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; p.len() + 10];
    // Invariant: 10 bytes cover the largest header of an unmasked frame.
    let n = encode_server_frame(op, p, &mut out).expect("buffer sized for the header");
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects every frame while feeding `bytes` through reads of at most `chunk` bytes.
    fn read_all(
        bytes: &[u8],
        chunk: usize,
        cap: usize,
    ) -> Result<Vec<(OpCode, Vec<u8>)>, FrameError> {
        struct Chunked<'a>(&'a [u8], usize);
        impl Read for Chunked<'_> {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(b.len());
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut src = Chunked(bytes, chunk);
        let mut r = FrameReader::new(cap);
        let mut out = Vec::new();
        loop {
            while let Some(f) = r.next_frame()? {
                out.push((f.opcode, f.payload.to_vec()));
            }
            match r.fill(&mut src) {
                Ok(0) => return Ok(out),
                Ok(_) => {}
                // Only a full buffer without a complete frame fails here.
                Err(_) => return Err(FrameError::TooLarge(cap)),
            }
        }
    }

    #[test]
    fn frames_of_every_length_encoding_split_at_every_size() {
        let big = vec![b'x'; 70_000];
        let mid = vec![b'y'; 300];
        let mut stream = Vec::new();
        for (op, p) in [
            (OpCode::Text, &b"{\"e\":\"aggTrade\"}"[..]),
            (OpCode::Ping, b"hi"),
            (OpCode::Text, &mid),
            (OpCode::Binary, &big),
            (OpCode::Text, b""),
            (OpCode::Close, &[0x03, 0xE8]),
        ] {
            stream.extend_from_slice(&server_frame(op, p));
        }
        for chunk in [1, 2, 3, 7, 64, 1000, 1 << 20] {
            let got = read_all(&stream, chunk, 1 << 18).unwrap();
            assert_eq!(got.len(), 6, "chunk {chunk}");
            assert_eq!(got[0], (OpCode::Text, b"{\"e\":\"aggTrade\"}".to_vec()));
            assert_eq!(got[1], (OpCode::Ping, b"hi".to_vec()));
            assert_eq!(got[2].1, mid);
            assert_eq!(got[3], (OpCode::Binary, big.clone()));
            assert_eq!(got[4], (OpCode::Text, vec![]));
            assert_eq!(got[5], (OpCode::Close, vec![0x03, 0xE8]));
        }
    }

    #[test]
    fn fragmented_message_is_reassembled_in_place_around_a_ping() {
        let mut s = vec![0u8; 64];
        let mut stream = Vec::new();
        for (op, fin, p) in [
            (0x1, false, &b"{\"a\":"[..]),
            (0x0, false, b"12"),
            (0x9, true, b"p"),
            (0x0, true, b"3}"),
        ] {
            let n = encode_server_fragment(op, fin, p, &mut s).unwrap();
            stream.extend_from_slice(&s[..n]);
        }
        stream.extend_from_slice(&server_frame(OpCode::Text, b"next"));
        for chunk in [1, 5, 100] {
            let got = read_all(&stream, chunk, 256).unwrap();
            assert_eq!(
                got,
                vec![
                    (OpCode::Ping, b"p".to_vec()),
                    (OpCode::Text, b"{\"a\":123}".to_vec()),
                    (OpCode::Text, b"next".to_vec()),
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn protocol_violations_are_typed_errors() {
        let masked = [0x81, 0x81, 1, 2, 3, 4, b'a' ^ 1];
        assert_eq!(read_all(&masked, 64, 256), Err(FrameError::Masked));
        assert_eq!(
            read_all(&[0xC1, 0x00], 64, 256),
            Err(FrameError::ReservedBits)
        );
        assert_eq!(
            read_all(&[0x83, 0x00], 64, 256),
            Err(FrameError::UnknownOpcode(3))
        );
        assert_eq!(
            read_all(&[0x09, 0x00], 64, 256),
            Err(FrameError::BadControl),
            "fragmented ping"
        );
        let mut long_ping = vec![0x89, 126, 0, 126];
        long_ping.extend_from_slice(&[0u8; 126]);
        assert_eq!(read_all(&long_ping, 64, 256), Err(FrameError::BadControl));
        assert_eq!(
            read_all(&[0x80, 0x00], 64, 256),
            Err(FrameError::BadContinuation)
        );
        assert_eq!(
            read_all(&[0x01, 0x01, b'a', 0x81, 0x01, b'b'], 64, 256),
            Err(FrameError::BadContinuation)
        );
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(read_all(&huge, 64, 256), Err(FrameError::BadLength));
        let too_big = server_frame(OpCode::Text, &[b'z'; 300]);
        assert_eq!(read_all(&too_big, 64, 256), Err(FrameError::TooLarge(256)));
    }

    #[test]
    fn client_frames_are_masked() {
        let mut out = [0u8; 64];
        let n = encode_client_frame(OpCode::Pong, b"hi", [1, 2, 3, 4], &mut out).unwrap();
        assert_eq!(&out[..n], &[0x8A, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
        assert_eq!(
            encode_client_frame(OpCode::Pong, &[0; 100], [0; 4], &mut out),
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400), chunk in 1usize..50) {
            let _ = read_all(&bytes, chunk, 256);
        }
    }
}
