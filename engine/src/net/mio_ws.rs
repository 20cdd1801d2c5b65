//! A non-blocking WebSocket client for the engine thread: a mio `TcpStream` polled with a zero timeout, plain
//! `ws://` (the simulator) or `wss://` (rustls handshake, then an in-place record layer), frames read by the
//! allocation-free [`FrameReader`].
//!
//! One [`WsConn::poll`] does a bounded amount of work (at most [`MAX_READS_PER_POLL`] socket reads) and never
//! blocks or sleeps; [`WsEvent::Idle`] means nothing was ready. States: resolving (a short-lived helper thread
//! for DNS names, because `getaddrinfo` blocks; IP literals skip it) → TCP connecting (non-blocking connect,
//! `TCP_NODELAY`) → upgrading (TLS handshake, then the HTTP upgrade: the request goes out on the first poll after
//! the handshake) → open → closed. Connecting and the handshake may allocate; once open, nothing does, over
//! `ws://` or `wss://`.
//!
//! Why not tungstenite's `WebSocket`: its `read()` returns an owned `Message` per frame. Only its key math
//! (`generate_key`, `derive_accept_key`) is used here; the read path is [`FrameReader`] (frames handed out as
//! slices of its buffer) and pongs/closes are encoded into a buffer allocated once per connection.
//!
//! `wss://`: rustls 0.23's connections, buffered and unbuffered alike, copy each decrypted record into a fresh
//! `Vec` (and build one per encrypted record). So rustls's unbuffered API does the handshake in our buffers;
//! then the connection becomes a rustls `KernelConnection` (key schedule, session tickets, TLS 1.3 key updates)
//! and records — TLS 1.3 and TLS 1.2, AES-GCM and ChaCha20-Poly1305 — are opened and sealed in place with ring
//! in buffers allocated once per connection (see `TlsLayer`). A key update allocates (rare, server-initiated);
//! nothing else on the open connection does.

use super::ws::{redact, tls_config};
use crate::feed::frame::{encode_client_frame, FrameError, FrameReader, FrameSpan, OpCode};
use crossbeam_channel::{Receiver, TryRecvError};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::http::Uri;

/// Most socket reads one [`WsConn::poll`] makes before returning, so one busy connection cannot starve the
/// engine loop.
pub const MAX_READS_PER_POLL: usize = 4;
/// Largest HTTP upgrade response accepted.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Pending client frames: pongs and closes (at most 131 bytes each) and the order connection's requests
/// ([`WsConn::send_text`], a few hundred bytes each): room for a burst of orders while the socket is full.
const OUT_CAPACITY: usize = 64 * 1024;
const TOKEN: Token = Token(0);

/// Why a connection failed or ended. Messages carry host and path, never query strings (a listenKey).
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The URL is not `ws://` or `wss://` with a host.
    #[error("bad WebSocket URL {0:?}: expected ws://host[:port]/path or wss://host[:port]/path")]
    BadUrl(String),
    /// DNS lookup failed or returned nothing.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// Host.
        host: String,
        /// Cause.
        source: io::Error,
    },
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Address tried last.
        addr: SocketAddr,
        /// Cause.
        source: io::Error,
    },
    /// Connect plus handshake took longer than [`WsClientConfig::handshake_timeout`].
    #[error("WebSocket handshake with {0} timed out")]
    Timeout(String),
    /// TLS failure.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server refused the upgrade or answered something that is not a valid 101.
    #[error("WebSocket upgrade refused: {0}")]
    Upgrade(String),
    /// The server violated the framing rules.
    #[error("WebSocket protocol: {0}")]
    Protocol(#[from] FrameError),
    /// The server sent a close frame.
    #[error("server closed the WebSocket (code {0:?})")]
    ServerClosed(Option<u16>),
    /// The TCP stream ended without a close frame.
    #[error("connection closed by the peer")]
    Eof,
    /// Socket error.
    #[error("socket: {0}")]
    Io(#[source] io::Error),
    /// Closed by us ([`WsConn::close`]).
    #[error("closed locally")]
    Local,
}

/// Where and how to connect.
#[derive(Clone)]
pub struct WsClientConfig {
    /// `ws://host[:port]/path?query` or `wss://…`.
    pub url: String,
    /// TLS settings for `wss://` (None: the webpki roots, `net::ws`'s shared config). Tests pass one that trusts
    /// a self-signed certificate. Each connection uses a copy with `enable_secret_extraction` on (its record
    /// layer needs the traffic keys; they never leave the connection).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Read buffer size: the largest message accepted is a little less ([`FrameReader::new`]).
    pub read_capacity: usize,
    /// Limit for resolve + connect + TLS + upgrade.
    pub handshake_timeout: Duration,
}

impl std::fmt::Debug for WsClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsClientConfig")
            .field("url", &redact(&self.url))
            .field("custom_tls", &self.tls.is_some())
            .field("read_capacity", &self.read_capacity)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

impl WsClientConfig {
    /// Defaults: 1 MiB read buffer ([`crate::feed::frame::DEFAULT_CAPACITY`]), 10 s handshake limit.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tls: None,
            read_capacity: crate::feed::frame::DEFAULT_CAPACITY,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// What one [`WsConn::poll`] produced.
#[derive(Debug)]
pub enum WsEvent {
    /// Nothing ready.
    Idle,
    /// The upgrade completed; frames follow.
    Opened,
    /// A text or binary message: its payload is [`WsConn::frame`] until the next poll.
    Frame,
    /// The connection failed or ended (reported once; later polls return `Idle`).
    Closed(WsError),
}

struct Target {
    host: String,
    port: u16,
    tls: bool,
    /// Path and query for the request line.
    resource: String,
}

fn parse_url(url: &str) -> Result<Target, WsError> {
    let bad = || WsError::BadUrl(redact(url).to_string());
    let uri: Uri = url.parse().map_err(|_| bad())?;
    let tls = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => return Err(bad()),
    };
    let host = uri
        .host()
        .ok_or_else(bad)?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let resource = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".to_string());
    Ok(Target {
        host,
        port,
        tls,
        resource,
    })
}

enum State {
    Resolving(Receiver<io::Result<Vec<SocketAddr>>>),
    Connecting,
    Upgrading,
    Open,
    Closed,
}

/// The HTTP upgrade in progress.
struct Handshake {
    request: Vec<u8>,
    written: usize,
    response: Vec<u8>,
    accept: String,
}

/// Reads from the TCP socket, through TLS when present. `WouldBlock` means no bytes now; `Ok(0)` end of stream.
struct Transport<'a> {
    sock: &'a mut TcpStream,
    tls: Option<&'a mut TlsLayer>,
}

impl Transport<'_> {
    /// Sends whatever TLS has queued (handshake messages, alerts, encrypted pongs); `WouldBlock` leaves the rest
    /// queued for the next poll.
    fn flush_tls(&mut self) -> io::Result<()> {
        match self.tls.as_deref_mut() {
            Some(t) => t.flush(self.sock),
            None => Ok(()),
        }
    }

    /// Writes application bytes: straight to the socket (plain; may be partial) or through TLS (may be partial
    /// when the outgoing record buffer is full).
    fn write_app(&mut self, b: &[u8]) -> io::Result<usize> {
        match self.tls.as_deref_mut() {
            None => self.sock.write(b),
            Some(t) => t.write_app(self.sock, b),
        }
    }
}

impl Read for Transport<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls.as_deref_mut() {
            None => self.sock.read(buf),
            Some(t) => t.read(self.sock, buf),
        }
    }
}

/// TLS record header: type, legacy version, length.
const TLS_HEADER: usize = 5;
/// Largest record fragment accepted (TLS 1.2's TLSCiphertext limit, RFC 5246 §6.2.3; TLS 1.3's is smaller).
const MAX_CIPHERTEXT: usize = (1 << 14) + 2048;
/// Largest plaintext per record (both versions).
const MAX_PLAINTEXT: usize = 1 << 14;
/// AEAD tag of every suite rustls offers.
const TAG_LEN: usize = 16;
/// TLS 1.2 AES-GCM's per-record explicit nonce (RFC 5288 §3).
const EXPLICIT_NONCE_LEN: usize = 8;
/// Most bytes one sealed record adds to its plaintext.
const MAX_OVERHEAD: usize = TLS_HEADER + EXPLICIT_NONCE_LEN + 1 + TAG_LEN;
/// Incoming ciphertext, allocated once per connection: the server's handshake flight (its certificate chain is
/// joined in place across records) and, once open, the next record arriving while the last one's plaintext is
/// read.
const TLS_IN_CAPACITY: usize = 4 * (TLS_HEADER + MAX_CIPHERTEXT);
/// Outgoing records: the handshake flights, the upgrade request (a long combined-stream URL), pongs, close.
const TLS_OUT_CAPACITY: usize = 2 * (MAX_PLAINTEXT + MAX_OVERHEAD);
const CT_CHANGE_CIPHER_SPEC: u8 = 20;
const CT_ALERT: u8 = 21;
const CT_HANDSHAKE: u8 = 22;
const CT_APPLICATION_DATA: u8 = 23;
const HS_NEW_SESSION_TICKET: u8 = 4;
const HS_KEY_UPDATE: u8 = 24;

fn tls_err(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn tls_io(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// How records are framed and their nonces formed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RecordKind {
    /// RFC 8446 §5.2: encrypted inner content type, nonce = IV xor sequence number, AAD = the header.
    Tls13,
    /// RFC 5288: 8-byte explicit nonce after the header (salt = first 4 IV bytes), AAD = seq ‖ type ‖ version ‖
    /// plaintext length.
    Tls12Gcm,
    /// RFC 7905: nonce = IV xor sequence number, AAD as for GCM.
    Tls12Chacha,
}

/// One direction's traffic key and record sequence number.
struct TrafficKey {
    key: ring::aead::LessSafeKey,
    iv: [u8; ring::aead::NONCE_LEN],
    seq: u64,
    kind: RecordKind,
}

impl TrafficKey {
    fn new(tls13: bool, seq: u64, secrets: rustls::ConnectionTrafficSecrets) -> io::Result<Self> {
        use rustls::ConnectionTrafficSecrets as S;
        let (alg, key, iv, kind12) = match &secrets {
            S::Aes128Gcm { key, iv } => (&ring::aead::AES_128_GCM, key, iv, RecordKind::Tls12Gcm),
            S::Aes256Gcm { key, iv } => (&ring::aead::AES_256_GCM, key, iv, RecordKind::Tls12Gcm),
            S::Chacha20Poly1305 { key, iv } => (
                &ring::aead::CHACHA20_POLY1305,
                key,
                iv,
                RecordKind::Tls12Chacha,
            ),
            _ => {
                return Err(tls_err(
                    "negotiated cipher suite has no in-place record layer",
                ))
            }
        };
        let key = ring::aead::UnboundKey::new(alg, key.as_ref())
            .map_err(|_| tls_err("traffic key of the wrong length"))?;
        let iv = iv
            .as_ref()
            .try_into()
            .map_err(|_| tls_err("traffic IV of the wrong length"))?;
        Ok(Self {
            key: ring::aead::LessSafeKey::new(key),
            iv,
            seq,
            kind: if tls13 { RecordKind::Tls13 } else { kind12 },
        })
    }

    /// IV xor the sequence number (right-aligned), then the sequence number moves on.
    fn next_nonce(&mut self) -> [u8; ring::aead::NONCE_LEN] {
        let mut n = self.iv;
        for (b, s) in n[ring::aead::NONCE_LEN - 8..]
            .iter_mut()
            .zip(self.seq.to_be_bytes())
        {
            *b ^= s;
        }
        self.seq = self.seq.wrapping_add(1);
        n
    }

    /// TLS 1.2's additional data; takes the sequence number before [`TrafficKey::next_nonce`] advances it.
    fn aad12(&self, typ: u8, len: usize) -> [u8; 13] {
        let mut a = [0u8; 13];
        a[..8].copy_from_slice(&self.seq.to_be_bytes());
        a[8] = typ;
        a[9] = 3;
        a[10] = 3;
        // len <= MAX_CIPHERTEXT: fits.
        a[11..].copy_from_slice(&(len as u16).to_be_bytes());
        a
    }

    /// Opens the record `rec` (header included) in place; returns (content type, plaintext range in `rec`).
    fn open(&mut self, rec: &mut [u8]) -> io::Result<(u8, std::ops::Range<usize>)> {
        use ring::aead::{Aad, Nonce};
        let bad = || tls_err("TLS record failed authentication");
        let (hdr, body) = rec.split_at_mut(TLS_HEADER);
        let typ = hdr[0];
        match self.kind {
            RecordKind::Tls13 => {
                let nonce = Nonce::assume_unique_for_key(self.next_nonce());
                let plain = self
                    .key
                    .open_in_place(nonce, Aad::from(&*hdr), body)
                    .map_err(|_| bad())?;
                // TLSInnerPlaintext: content, the real content type, zero padding.
                let Some(at) = plain.iter().rposition(|&b| b != 0) else {
                    return Err(tls_err("TLS record without a content type"));
                };
                Ok((plain[at], TLS_HEADER..TLS_HEADER + at))
            }
            RecordKind::Tls12Gcm => {
                let Some(plain_len) = body.len().checked_sub(EXPLICIT_NONCE_LEN + TAG_LEN) else {
                    return Err(bad());
                };
                let aad = self.aad12(typ, plain_len);
                let mut nonce = self.iv;
                nonce[4..].copy_from_slice(&body[..EXPLICIT_NONCE_LEN]);
                self.seq = self.seq.wrapping_add(1);
                self.key
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        &mut body[EXPLICIT_NONCE_LEN..],
                    )
                    .map_err(|_| bad())?;
                let at = TLS_HEADER + EXPLICIT_NONCE_LEN;
                Ok((typ, at..at + plain_len))
            }
            RecordKind::Tls12Chacha => {
                let Some(plain_len) = body.len().checked_sub(TAG_LEN) else {
                    return Err(bad());
                };
                let aad = self.aad12(typ, plain_len);
                let nonce = Nonce::assume_unique_for_key(self.next_nonce());
                self.key
                    .open_in_place(nonce, Aad::from(aad), body)
                    .map_err(|_| bad())?;
                Ok((typ, TLS_HEADER..TLS_HEADER + plain_len))
            }
        }
    }

    /// Seals `data` (at most [`MAX_PLAINTEXT`] bytes) as one record of content type `typ` into the front of
    /// `out`; returns the record's length, `None` if `out` is too small.
    fn seal(&mut self, typ: u8, data: &[u8], out: &mut [u8]) -> io::Result<Option<usize>> {
        use ring::aead::{Aad, Nonce};
        let fail = |_| tls_err("record encryption failed");
        let n = data.len();
        let (explicit, inner) = match self.kind {
            RecordKind::Tls13 => (0, 1),
            RecordKind::Tls12Gcm => (EXPLICIT_NONCE_LEN, 0),
            RecordKind::Tls12Chacha => (0, 0),
        };
        let body_len = explicit + n + inner + TAG_LEN;
        let Some(rec) = out.get_mut(..TLS_HEADER + body_len) else {
            return Ok(None);
        };
        let (hdr, body) = rec.split_at_mut(TLS_HEADER);
        hdr[0] = if self.kind == RecordKind::Tls13 {
            CT_APPLICATION_DATA
        } else {
            typ
        };
        hdr[1] = 3;
        hdr[2] = 3;
        // body_len <= MAX_PLAINTEXT + 25: fits the u16 length field.
        hdr[3..5].copy_from_slice(&(body_len as u16).to_be_bytes());
        let (sealed, tag) = body.split_at_mut(body_len - TAG_LEN);
        let (nonce_part, msg) = sealed.split_at_mut(explicit);
        msg[..n].copy_from_slice(data);
        let t = if self.kind == RecordKind::Tls13 {
            msg[n] = typ;
            let nonce = Nonce::assume_unique_for_key(self.next_nonce());
            self.key
                .seal_in_place_separate_tag(nonce, Aad::from(&*hdr), msg)
                .map_err(fail)?
        } else {
            let aad = self.aad12(typ, n);
            let nonce = self.next_nonce();
            // GCM: the nonce's last 8 bytes travel in the record (unique because the sequence number is).
            nonce_part.copy_from_slice(&nonce[ring::aead::NONCE_LEN - explicit..]);
            self.key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    msg,
                )
                .map_err(fail)?
        };
        tag.copy_from_slice(t.as_ref());
        Ok(Some(TLS_HEADER + body_len))
    }
}

/// Records waiting for the socket, in a buffer allocated once per connection.
struct TlsOut {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl TlsOut {
    /// The free tail (rewound to the front when everything was sent).
    fn room(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Seals a prefix of `data` as one record; returns the bytes taken. `WouldBlock` when not even one byte fits
    /// (the socket is behind).
    fn seal(&mut self, tx: &mut TrafficKey, typ: u8, data: &[u8]) -> io::Result<usize> {
        let room = self.room().len();
        if room <= MAX_OVERHEAD {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let take = data.len().min(MAX_PLAINTEXT).min(room - MAX_OVERHEAD);
        let end = self.end;
        match tx.seal(typ, &data[..take], &mut self.buf[end..])? {
            Some(n) => {
                self.end += n;
                Ok(take)
            }
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn flush(&mut self, sock: &mut TcpStream) -> io::Result<()> {
        while self.start < self.end {
            match sock.write(&self.buf[self.start..self.end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.start += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

type Kernel = rustls::kernel::KernelConnection<rustls::client::ClientConnectionData>;

// One per connection, inside the boxed `TlsLayer`, switched once: the keys stay inline (no pointer chase per record).
#[allow(clippy::large_enum_variant)]
enum TlsMode {
    /// rustls's unbuffered connection does the handshake in our buffers.
    Handshake(Box<rustls::client::UnbufferedClientConnection>),
    /// After the handshake: our record layer with the extracted traffic keys; rustls keeps the key schedule
    /// (TLS 1.3 key updates) and session tickets.
    Records {
        kernel: Box<Kernel>,
        rx: TrafficKey,
        tx: TrafficKey,
    },
    /// Only while switching modes, or after a failed switch.
    Broken,
}

/// The `wss://` transport. Why not rustls's own record layer: in 0.23 both its buffered `ClientConnection` and
/// its unbuffered API copy every decrypted record into a fresh `Vec` (`ReadTraffic` hands out popped `Vec`s), and
/// encrypting builds a `Vec` per record. So rustls drives the handshake (unbuffered API, our buffers), then the
/// connection becomes a rustls `KernelConnection` — the documented hand-off for kTLS — and records are opened in
/// place in `inb` and sealed in place in [`TlsOut`] with ring, the AEAD rustls itself uses here. The plaintext
/// is then copied into the [`FrameReader`]'s buffer. Nothing allocates per record; a key update allocates.
struct TlsLayer {
    mode: TlsMode,
    inb: Box<[u8]>,
    /// Next unprocessed ciphertext byte.
    in_start: usize,
    in_end: usize,
    /// Decrypted application data not yet handed out (inside `inb`, before `in_start`).
    plain_start: usize,
    plain_end: usize,
    out: TlsOut,
    /// The peer's close_notify arrived.
    peer_closed: bool,
}

impl TlsLayer {
    fn new(conn: rustls::client::UnbufferedClientConnection) -> Self {
        Self {
            mode: TlsMode::Handshake(Box::new(conn)),
            inb: vec![0u8; TLS_IN_CAPACITY].into_boxed_slice(),
            in_start: 0,
            in_end: 0,
            plain_start: 0,
            plain_end: 0,
            out: TlsOut {
                buf: vec![0u8; TLS_OUT_CAPACITY].into_boxed_slice(),
                start: 0,
                end: 0,
            },
            peer_closed: false,
        }
    }

    /// Sends queued records; `WouldBlock` leaves the rest for the next poll.
    fn flush(&mut self, sock: &mut TcpStream) -> io::Result<()> {
        self.out.flush(sock)
    }

    /// Encrypts (a prefix of) `b`. During the handshake nothing is accepted (`WouldBlock`): the caller retries on
    /// its next poll.
    fn write_app(&mut self, sock: &mut TcpStream, b: &[u8]) -> io::Result<usize> {
        let TlsMode::Records { tx, .. } = &mut self.mode else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        // Make room first: a full buffer must not refuse a write the socket can take now.
        self.out.flush(sock)?;
        let mut done = 0;
        while done < b.len() {
            match self.out.seal(tx, CT_APPLICATION_DATA, &b[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && done > 0 => break,
                Err(e) => return Err(e),
            }
        }
        self.out.flush(sock)?;
        Ok(done)
    }

    /// Queues a close_notify alert (sent by the next flush).
    fn send_close_notify(&mut self) {
        if let TlsMode::Records { tx, .. } = &mut self.mode {
            let _ = self.out.seal(tx, CT_ALERT, &[1, 0]);
        }
    }

    /// Application bytes into `buf`. Bounded: each round returns, or consumes one buffered record (or handshake
    /// step), or reads the socket (which ends with `WouldBlock` once drained).
    fn read(&mut self, sock: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.plain_start < self.plain_end {
                let n = buf.len().min(self.plain_end - self.plain_start);
                buf[..n].copy_from_slice(&self.inb[self.plain_start..self.plain_start + n]);
                self.plain_start += n;
                return Ok(n);
            }
            if self.peer_closed {
                return Ok(0);
            }
            if let TlsMode::Handshake(_) = self.mode {
                self.handshake(sock)?;
                if self.peer_closed {
                    return Ok(0);
                }
            }
            if let TlsMode::Records { .. } = self.mode {
                if let Some(total) = self.next_record()? {
                    let start = self.in_start;
                    self.in_start += total;
                    self.on_record(start, total)?;
                    // Key update answers and the like go out at once.
                    self.out.flush(sock)?;
                    continue;
                }
            }
            if self.in_start == self.in_end {
                self.in_start = 0;
                self.in_end = 0;
            } else if self.inb.len() - self.in_end < TLS_HEADER + MAX_CIPHERTEXT {
                self.inb.copy_within(self.in_start..self.in_end, 0);
                self.in_end -= self.in_start;
                self.in_start = 0;
            }
            if self.in_end == self.inb.len() {
                // Only a handshake message can outgrow the buffer (records are bounded).
                return Err(tls_err(
                    "TLS handshake message larger than the input buffer",
                ));
            }
            let n = sock.read(&mut self.inb[self.in_end..])?;
            if n == 0 {
                return Ok(0);
            }
            self.in_end += n;
        }
    }

    /// Runs the handshake on the buffered bytes until it needs more (or the socket is behind); switches to
    /// [`TlsMode::Records`] when it is done.
    fn handshake(&mut self, sock: &mut TcpStream) -> io::Result<()> {
        use rustls::unbuffered::ConnectionState as C;
        loop {
            let TlsMode::Handshake(conn) = &mut self.mode else {
                return Ok(());
            };
            let status = conn.process_tls_records(&mut self.inb[self.in_start..self.in_end]);
            let discard = status.discard;
            let mut done = false;
            let mut blocked = false;
            match status.state.map_err(tls_io)? {
                C::EncodeTlsData(mut e) => {
                    let n = e.encode(self.out.room()).map_err(|_| {
                        tls_err("TLS handshake record larger than the output buffer")
                    })?;
                    self.out.end += n;
                }
                C::TransmitTlsData(t) => {
                    self.out.flush(sock)?;
                    if self.out.is_empty() {
                        t.done();
                    } else {
                        // Not `done`: rustls asks again on the next round, after the socket drained.
                        blocked = true;
                    }
                }
                C::BlockedHandshake => blocked = true,
                C::WriteTraffic(_) => done = true,
                C::PeerClosed | C::Closed => {
                    self.peer_closed = true;
                    blocked = true;
                }
                C::ReadTraffic(_) => {
                    return Err(tls_err("application data before our request was sent"))
                }
                _ => return Err(tls_err("unexpected TLS handshake state")),
            }
            // rustls decrypted the consumed records in place; they go.
            self.in_start += discard;
            if done {
                return self.switch_to_records();
            }
            if blocked {
                return Ok(());
            }
        }
    }

    fn switch_to_records(&mut self) -> io::Result<()> {
        let TlsMode::Handshake(c) = std::mem::replace(&mut self.mode, TlsMode::Broken) else {
            return Ok(());
        };
        // All sent (`TransmitTlsData::done` only after a full flush) and all received records consumed:
        // the conditions the kernel hand-off requires.
        let (secrets, kernel) = c.dangerous_into_kernel_connection().map_err(tls_io)?;
        let tls13 = kernel.protocol_version() == rustls::ProtocolVersion::TLSv1_3;
        self.mode = TlsMode::Records {
            kernel: Box::new(kernel),
            rx: TrafficKey::new(tls13, secrets.rx.0, secrets.rx.1)?,
            tx: TrafficKey::new(tls13, secrets.tx.0, secrets.tx.1)?,
        };
        Ok(())
    }

    /// Length (header included) of the whole record at `in_start`, if it has arrived.
    fn next_record(&self) -> io::Result<Option<usize>> {
        let have = &self.inb[self.in_start..self.in_end];
        let Some(hdr) = have.get(..TLS_HEADER) else {
            return Ok(None);
        };
        let len = u16::from_be_bytes([hdr[3], hdr[4]]) as usize;
        if len > MAX_CIPHERTEXT {
            return Err(tls_err("TLS record too large"));
        }
        Ok((have.len() >= TLS_HEADER + len).then_some(TLS_HEADER + len))
    }

    /// Processes the whole record at `inb[start..start + total]` (records mode).
    fn on_record(&mut self, start: usize, total: usize) -> io::Result<()> {
        let TlsMode::Records { kernel, rx, tx } = &mut self.mode else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let rec = &mut self.inb[start..start + total];
        match rec[0] {
            CT_APPLICATION_DATA | CT_ALERT | CT_HANDSHAKE if rx.kind != RecordKind::Tls13 => {}
            CT_APPLICATION_DATA => {}
            // TLS 1.3 middlebox compatibility (RFC 8446 §5): ignored.
            CT_CHANGE_CIPHER_SPEC if rx.kind == RecordKind::Tls13 => return Ok(()),
            _ => return Err(tls_err("unexpected TLS record type")),
        }
        let (typ, range) = rx.open(rec)?;
        let content = &rec[range.clone()];
        match typ {
            CT_APPLICATION_DATA => {
                self.plain_start = start + range.start;
                self.plain_end = start + range.end;
                Ok(())
            }
            CT_ALERT => match content {
                [_, 0] => {
                    self.peer_closed = true;
                    Ok(())
                }
                // user_canceled (a warning) precedes a close_notify.
                [1, 90] => Ok(()),
                _ => Err(tls_err("TLS alert from the server")),
            },
            // TLS 1.2: a renegotiation request, which a client may ignore (RFC 5246 §7.4.1.1).
            CT_HANDSHAKE if rx.kind != RecordKind::Tls13 => Ok(()),
            CT_HANDSHAKE => post_handshake(content, kernel, rx, tx, &mut self.out),
            _ => Err(tls_err("unexpected TLS content type")),
        }
    }
}

/// TLS 1.3 handshake messages after the handshake (RFC 8446 §4.6): session tickets and key updates. A message
/// split across records is refused (servers send these few-dozen-byte messages whole).
fn post_handshake(
    mut msgs: &[u8],
    kernel: &mut Kernel,
    rx: &mut TrafficKey,
    tx: &mut TrafficKey,
    out: &mut TlsOut,
) -> io::Result<()> {
    while !msgs.is_empty() {
        let Some(h) = msgs.get(..4) else {
            return Err(tls_err("split post-handshake message"));
        };
        let len = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let Some(body) = msgs.get(4..4 + len) else {
            return Err(tls_err("split post-handshake message"));
        };
        match h[0] {
            // Only resumption depends on it: a ticket rustls refuses is no reason to drop market data.
            HS_NEW_SESSION_TICKET => {
                let _ = kernel.handle_new_session_ticket(body);
            }
            HS_KEY_UPDATE => {
                let (seq, s) = kernel.update_rx_secret().map_err(tls_io)?;
                *rx = TrafficKey::new(true, seq, s)?;
                match body {
                    [0] => {}
                    [1] => {
                        // update_requested: answer under the old key, then switch ours (RFC 8446 §4.6.3).
                        out.seal(tx, CT_HANDSHAKE, &[HS_KEY_UPDATE, 0, 0, 1, 0])?;
                        let (seq, s) = kernel.update_tx_secret().map_err(tls_io)?;
                        *tx = TrafficKey::new(true, seq, s)?;
                    }
                    _ => return Err(tls_err("bad KeyUpdate")),
                }
            }
            _ => return Err(tls_err("unexpected post-handshake message")),
        }
        msgs = &msgs[4 + len..];
    }
    Ok(())
}

/// One WebSocket connection driven by [`WsConn::poll`]. See the module docs.
pub struct WsConn {
    target: Target,
    tls_cfg: Option<Arc<rustls::ClientConfig>>,
    state: State,
    poll: Poll,
    events: Events,
    sock: Option<TcpStream>,
    addrs: Vec<SocketAddr>,
    next_addr: usize,
    tls: Option<Box<TlsLayer>>,
    hs: Option<Handshake>,
    reader: FrameReader,
    last: Option<FrameSpan>,
    out: Box<[u8]>,
    out_start: usize,
    out_end: usize,
    readable: bool,
    deadline: Instant,
    last_rx: Instant,
    opened_at: Option<Instant>,
    mask_state: u64,
    pongs: u64,
}

impl std::fmt::Debug for WsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConn")
            .field("host", &self.target.host)
            .field("port", &self.target.port)
            .field("tls", &self.target.tls)
            .field("open", &self.is_open())
            .finish_non_exhaustive()
    }
}

impl WsConn {
    /// Starts connecting (returns at once; progress happens in [`WsConn::poll`]). Errors: a bad URL, or the OS
    /// refusing an epoll instance or a helper thread.
    pub fn connect(cfg: &WsClientConfig, now: Instant) -> Result<Self, WsError> {
        let target = parse_url(&cfg.url)?;
        let tls_cfg = if target.tls {
            let base = match &cfg.tls {
                Some(c) => c.clone(),
                None => tls_config().map_err(|e| WsError::Tls(e.to_string()))?,
            };
            // The record layer after the handshake needs the traffic keys (see `TlsLayer`).
            let mut c = (*base).clone();
            c.enable_secret_extraction = true;
            Some(Arc::new(c))
        } else {
            None
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        match target.host.parse::<IpAddr>() {
            Ok(ip) => {
                let _ = tx.send(Ok(vec![SocketAddr::new(ip, target.port)]));
            }
            Err(_) => {
                let (host, port) = (target.host.clone(), target.port);
                std::thread::Builder::new()
                    .name("aegis-dns".into())
                    .spawn(move || {
                        let r = (host.as_str(), port)
                            .to_socket_addrs()
                            .map(|a| a.collect::<Vec<_>>());
                        let _ = tx.send(r);
                    })
                    .map_err(WsError::Io)?;
            }
        }
        let mask_state = rand::random::<u64>() | 1;
        Ok(Self {
            target,
            tls_cfg,
            state: State::Resolving(rx),
            poll: Poll::new().map_err(WsError::Io)?,
            events: Events::with_capacity(8),
            sock: None,
            addrs: Vec::new(),
            next_addr: 0,
            tls: None,
            hs: None,
            reader: FrameReader::new(cfg.read_capacity),
            last: None,
            out: vec![0u8; OUT_CAPACITY].into_boxed_slice(),
            out_start: 0,
            out_end: 0,
            readable: true,
            deadline: now + cfg.handshake_timeout,
            last_rx: now,
            opened_at: None,
            mask_state: mask_state.max(1),
            pongs: 0,
        })
    }

    /// True once the upgrade completed and until the connection ends.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }

    /// True after the connection ended (or failed).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// When the upgrade completed.
    pub fn opened_at(&self) -> Option<Instant> {
        self.opened_at
    }

    /// When the last frame of any kind (including pings) arrived, or the connection opened.
    pub fn last_rx(&self) -> Instant {
        self.last_rx
    }

    /// Pings answered so far.
    pub fn pongs(&self) -> u64 {
        self.pongs
    }

    /// The payload of the frame the last [`WsEvent::Frame`] announced (empty otherwise). Valid until the next
    /// poll.
    #[inline]
    pub fn frame(&self) -> &[u8] {
        match self.last {
            Some(s) => self.reader.payload(s),
            None => &[],
        }
    }

    /// Advances the connection. See [`WsEvent`] and the module docs.
    #[inline]
    pub fn poll(&mut self, now: Instant) -> WsEvent {
        self.last = None;
        match self.state {
            State::Open => self.poll_open(now),
            State::Closed => WsEvent::Idle,
            _ => self.poll_handshake(now),
        }
    }

    /// Queues one masked text frame carrying `payload` and writes what the socket takes now; the rest goes out
    /// on the next polls. Never blocks, never allocates. Errors: not open ([`WsError::Local`]), no room in the
    /// pending-output buffer (`WouldBlock`: the socket has not taken the last [`OUT_CAPACITY`] bytes), or the
    /// socket failed (the connection is then closed and the next poll reports nothing more).
    pub fn send_text(&mut self, payload: &[u8]) -> Result<(), WsError> {
        if !self.is_open() {
            return Err(WsError::Local);
        }
        if self.out_start == self.out_end {
            self.out_start = 0;
            self.out_end = 0;
        }
        let need = payload.len() + 14;
        if self.out.len() - self.out_end < need && self.out_start > 0 {
            // Compact: what is still pending moves to the front (rare: the socket was full).
            self.out.copy_within(self.out_start..self.out_end, 0);
            self.out_end -= self.out_start;
            self.out_start = 0;
        }
        let mask = self.next_mask();
        let Some(n) =
            encode_client_frame(OpCode::Text, payload, mask, &mut self.out[self.out_end..])
        else {
            return Err(WsError::Io(io::ErrorKind::WouldBlock.into()));
        };
        self.out_end += n;
        if let Err(e) = self.flush_out() {
            self.shutdown();
            return Err(WsError::Io(e));
        }
        Ok(())
    }

    /// Bytes queued by [`WsConn::send_text`] (and pongs) that the socket has not taken yet.
    pub fn pending_out(&self) -> usize {
        self.out_end - self.out_start
    }

    /// Best-effort close frame (code 1000), then drops the socket. Never blocks.
    pub fn close(&mut self) {
        if self.is_open() {
            let mask = self.next_mask();
            let mut buf = [0u8; 16];
            if let Some(n) =
                encode_client_frame(OpCode::Close, &1000u16.to_be_bytes(), mask, &mut buf)
            {
                self.write_out_now(&buf[..n]);
            }
            if let Some(t) = self.tls.as_deref_mut() {
                t.send_close_notify();
            }
            if let Some(sock) = self.sock.as_mut() {
                let _ = Transport {
                    sock,
                    tls: self.tls.as_deref_mut(),
                }
                .flush_tls();
            }
        }
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(mut s) = self.sock.take() {
            let _ = self.poll.registry().deregister(&mut s);
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        self.tls = None;
        self.hs = None;
        self.state = State::Closed;
    }

    fn fail(&mut self, e: WsError) -> WsEvent {
        self.shutdown();
        WsEvent::Closed(e)
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift64: masks only need to be unpredictable to intermediaries, not cryptographic.
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.mask_state = x;
        (x as u32).to_le_bytes()
    }

    /// Refreshes readiness from epoll (zero timeout).
    fn refresh(&mut self) {
        if self
            .poll
            .poll(&mut self.events, Some(Duration::ZERO))
            .is_ok()
        {
            for ev in self.events.iter() {
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.readable = true;
                }
            }
        }
    }

    fn poll_handshake(&mut self, now: Instant) -> WsEvent {
        if now >= self.deadline {
            let host = self.target.host.clone();
            return self.fail(WsError::Timeout(host));
        }
        if let State::Resolving(rx) = &self.state {
            match rx.try_recv() {
                Ok(Ok(a)) if !a.is_empty() => {
                    self.addrs = a;
                    self.next_addr = 0;
                    if let Err(e) = self.start_tcp() {
                        return self.fail(e);
                    }
                }
                Ok(Ok(_)) => {
                    let host = self.target.host.clone();
                    return self.fail(WsError::Resolve {
                        host,
                        source: io::Error::other("no address"),
                    });
                }
                Ok(Err(source)) => {
                    let host = self.target.host.clone();
                    return self.fail(WsError::Resolve { host, source });
                }
                Err(TryRecvError::Empty) => return WsEvent::Idle,
                Err(TryRecvError::Disconnected) => {
                    let host = self.target.host.clone();
                    return self.fail(WsError::Resolve {
                        host,
                        source: io::Error::other("resolver thread ended"),
                    });
                }
            }
        }
        self.refresh();
        if let State::Connecting = self.state {
            match self.check_connected() {
                Ok(false) => return WsEvent::Idle,
                Ok(true) => {
                    if let Err(e) = self.begin_upgrade() {
                        return self.fail(e);
                    }
                }
                Err(e) => return self.fail(e),
            }
        }
        match self.drive_upgrade() {
            Ok(true) => {
                self.state = State::Open;
                self.opened_at = Some(now);
                self.last_rx = now;
                self.readable = true;
                WsEvent::Opened
            }
            Ok(false) => WsEvent::Idle,
            Err(e) => self.fail(e),
        }
    }

    fn start_tcp(&mut self) -> Result<(), WsError> {
        let addr = self.addrs[self.next_addr.min(self.addrs.len() - 1)];
        self.next_addr += 1;
        let mut s = TcpStream::connect(addr).map_err(|source| WsError::Connect { addr, source })?;
        self.poll
            .registry()
            .register(&mut s, TOKEN, Interest::READABLE | Interest::WRITABLE)
            .map_err(WsError::Io)?;
        self.sock = Some(s);
        self.state = State::Connecting;
        Ok(())
    }

    /// Ok(true) once the non-blocking connect completed; tries the next address on failure.
    fn check_connected(&mut self) -> Result<bool, WsError> {
        let Some(s) = self.sock.as_ref() else {
            return Err(WsError::Local);
        };
        let addr = self.addrs[(self.next_addr - 1).min(self.addrs.len() - 1)];
        let failure = match s.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => None,
        };
        let failure = match failure {
            Some(e) => e,
            None => match s.peer_addr() {
                Ok(_) => {
                    let _ = s.set_nodelay(true);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
                Err(e) => e,
            },
        };
        if let Some(mut old) = self.sock.take() {
            let _ = self.poll.registry().deregister(&mut old);
        }
        if self.next_addr < self.addrs.len() {
            self.start_tcp()?;
            return Ok(false);
        }
        Err(WsError::Connect {
            addr,
            source: failure,
        })
    }

    fn begin_upgrade(&mut self) -> Result<(), WsError> {
        if let Some(cfg) = &self.tls_cfg {
            let name = rustls::pki_types::ServerName::try_from(self.target.host.clone())
                .map_err(|e| WsError::Tls(e.to_string()))?;
            let c = rustls::client::UnbufferedClientConnection::new(cfg.clone(), name)
                .map_err(|e| WsError::Tls(e.to_string()))?;
            self.tls = Some(Box::new(TlsLayer::new(c)));
        }
        let key = tungstenite::handshake::client::generate_key();
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let default_port = if self.target.tls { 443 } else { 80 };
        let host = if self.target.host.contains(':') {
            format!("[{}]", self.target.host)
        } else {
            self.target.host.clone()
        };
        let host = if self.target.port == default_port {
            host
        } else {
            format!("{host}:{}", self.target.port)
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n",
            self.target.resource
        )
        .into_bytes();
        self.hs = Some(Handshake {
            request,
            written: 0,
            response: Vec::with_capacity(1024),
            accept,
        });
        self.state = State::Upgrading;
        Ok(())
    }

    /// Writes the request, reads the response head; Ok(true) when a valid 101 arrived.
    fn drive_upgrade(&mut self) -> Result<bool, WsError> {
        let (Some(sock), Some(hs)) = (self.sock.as_mut(), self.hs.as_mut()) else {
            return Err(WsError::Local);
        };
        let mut io = Transport {
            sock,
            tls: self.tls.as_deref_mut(),
        };
        while hs.written < hs.request.len() {
            match io.write_app(&hs.request[hs.written..]) {
                Ok(0) => return Err(WsError::Eof),
                Ok(n) => hs.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(WsError::Io(e)),
            }
        }
        io.flush_tls().map_err(WsError::Io)?;
        let mut tmp = [0u8; 4096];
        for _ in 0..MAX_READS_PER_POLL {
            let n = match io.read(&mut tmp) {
                Ok(0) => return Err(WsError::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    return Err(WsError::Tls(e.to_string()))
                }
                Err(e) => return Err(WsError::Io(e)),
            };
            hs.response.extend_from_slice(&tmp[..n]);
            if let Some(end) = find_head_end(&hs.response) {
                check_response(&hs.response[..end], &hs.accept)?;
                // Frames the server sent right behind the 101 are already in our hands: give them to the reader.
                let mut rest = &hs.response[end..];
                while !rest.is_empty() {
                    self.reader.fill(&mut rest).map_err(WsError::Io)?;
                }
                self.hs = None;
                return Ok(true);
            }
            if hs.response.len() > MAX_RESPONSE_HEAD {
                return Err(WsError::Upgrade("response head too large".into()));
            }
        }
        Ok(false)
    }

    #[inline]
    fn poll_open(&mut self, now: Instant) -> WsEvent {
        if self.out_start < self.out_end {
            if let Err(e) = self.flush_out() {
                return self.fail(WsError::Io(e));
            }
        }
        let mut reads = 0;
        loop {
            match self.reader.next_span() {
                Ok(Some(s)) => match s.opcode {
                    OpCode::Text | OpCode::Binary => {
                        self.last = Some(s);
                        self.last_rx = now;
                        return WsEvent::Frame;
                    }
                    OpCode::Ping => {
                        self.last_rx = now;
                        let mask = self.next_mask();
                        self.queue_pong(s, mask);
                        if let Err(e) = self.flush_out() {
                            return self.fail(WsError::Io(e));
                        }
                        continue;
                    }
                    OpCode::Pong => {
                        self.last_rx = now;
                        continue;
                    }
                    OpCode::Close => {
                        let p = self.reader.payload(s);
                        let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                        // Echo the close (RFC 6455 §5.5.1), best effort.
                        self.close();
                        return WsEvent::Closed(WsError::ServerClosed(code));
                    }
                },
                Ok(None) => {}
                Err(e) => return self.fail(WsError::Protocol(e)),
            }
            if reads >= MAX_READS_PER_POLL {
                return WsEvent::Idle;
            }
            if !self.readable {
                self.refresh();
                if !self.readable {
                    return WsEvent::Idle;
                }
            }
            let Some(sock) = self.sock.as_mut() else {
                return self.fail(WsError::Local);
            };
            let mut io = Transport {
                sock,
                tls: self.tls.as_deref_mut(),
            };
            reads += 1;
            match self.reader.fill(&mut io) {
                Ok(0) => return self.fail(WsError::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::InvalidData && self.tls.is_some() => {
                    return self.fail(WsError::Tls(e.to_string()))
                }
                Err(e) => {
                    // `fill` reports a message larger than the buffer as an io error wrapping FrameError.
                    let fe = e
                        .get_ref()
                        .and_then(|i| i.downcast_ref::<FrameError>())
                        .copied();
                    return self.fail(match fe {
                        Some(f) => WsError::Protocol(f),
                        None => WsError::Io(e),
                    });
                }
            }
        }
    }

    /// Encodes a pong echoing the ping at `s` into the pending-output buffer (dropped if it is full: the server
    /// then sees a missed pong, never a corrupted stream).
    fn queue_pong(&mut self, s: FrameSpan, mask: [u8; 4]) {
        if self.out_start == self.out_end {
            self.out_start = 0;
            self.out_end = 0;
        }
        let payload = self.reader.payload(s);
        if let Some(n) =
            encode_client_frame(OpCode::Pong, payload, mask, &mut self.out[self.out_end..])
        {
            self.out_end += n;
            self.pongs += 1;
        }
    }

    /// Writes pending output; `WouldBlock` keeps the rest for the next poll.
    fn flush_out(&mut self) -> io::Result<()> {
        let Some(sock) = self.sock.as_mut() else {
            return Ok(());
        };
        let mut io = Transport {
            sock,
            tls: self.tls.as_deref_mut(),
        };
        while self.out_start < self.out_end {
            match io.write_app(&self.out[self.out_start..self.out_end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_start += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        io.flush_tls()
    }

    /// Best-effort immediate write (closing).
    fn write_out_now(&mut self, b: &[u8]) {
        if let Some(sock) = self.sock.as_mut() {
            let _ = Transport {
                sock,
                tls: self.tls.as_deref_mut(),
            }
            .write_app(b);
        }
    }
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Checks status 101 and `Sec-WebSocket-Accept`.
fn check_response(head: &[u8], accept: &str) -> Result<(), WsError> {
    let text =
        std::str::from_utf8(head).map_err(|_| WsError::Upgrade("non-UTF-8 response".into()))?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut parts = status.split_whitespace();
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(WsError::Upgrade(format!("bad status line {status:?}")));
    };
    if !version.starts_with("HTTP/1.") || code != "101" {
        return Err(WsError::Upgrade(format!("status {status:?}")));
    }
    let mut got = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("sec-websocket-accept") {
                got = Some(v.trim());
            }
        }
    }
    match got {
        Some(g) if g == accept => Ok(()),
        Some(_) => Err(WsError::Upgrade("wrong Sec-WebSocket-Accept".into())),
        None => Err(WsError::Upgrade("no Sec-WebSocket-Accept".into())),
    }
}

// The test TLS configs are shared with `tests/zero_alloc_tls.rs`; integration tests cannot reach `#[cfg(test)]`
// items, so the file lives there and is included here.
#[cfg(test)]
#[path = "../../tests/tls_support/mod.rs"]
mod tls_support;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::frame::{encode_server_fragment, server_frame};
    use crate::net::ws_feed::{TlsOverride, WsFeed, WsFeedConfig};
    use std::net::TcpListener;
    use std::sync::atomic::Ordering::Relaxed;

    /// Reads the client's upgrade request and returns the 101 response for it (and the request line).
    fn upgrade_response<S: Read>(s: &mut S) -> (String, String) {
        let mut req = Vec::new();
        let mut b = [0u8; 1];
        while !req.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut b).unwrap(), 1, "request ended early");
            req.push(b[0]);
        }
        let text = String::from_utf8(req).unwrap();
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("key header")
            .trim()
            .to_string();
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        (
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ),
            text.lines().next().unwrap_or("").to_string(),
        )
    }

    /// Reads one masked client frame; returns (opcode bits, unmasked payload).
    fn read_client_frame<S: Read>(s: &mut S) -> (u8, Vec<u8>) {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).unwrap();
        assert_eq!(h[1] & 0x80, 0x80, "client frames are masked");
        let len = (h[1] & 0x7F) as usize;
        assert!(len <= 125);
        let mut mask = [0u8; 4];
        s.read_exact(&mut mask).unwrap();
        let mut p = vec![0u8; len];
        s.read_exact(&mut p).unwrap();
        for (i, x) in p.iter_mut().enumerate() {
            *x ^= mask[i & 3];
        }
        (h[0] & 0x0F, p)
    }

    #[derive(Debug, PartialEq)]
    enum Got {
        Opened,
        Frame(Vec<u8>),
        Closed(String),
    }

    /// Polls until `n` events (Idle excluded) or the time limit.
    fn drive(c: &mut WsConn, n: usize, limit: Duration) -> Vec<Got> {
        let t = Instant::now();
        let mut out = Vec::new();
        while out.len() < n && t.elapsed() < limit {
            match c.poll(Instant::now()) {
                WsEvent::Idle => std::thread::sleep(Duration::from_millis(1)),
                WsEvent::Opened => out.push(Got::Opened),
                WsEvent::Frame => out.push(Got::Frame(c.frame().to_vec())),
                WsEvent::Closed(e) => out.push(Got::Closed(e.to_string())),
            }
        }
        out
    }

    #[test]
    fn handshake_with_frames_in_the_same_read_as_the_101_and_ping_pong() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let srv = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // A client bug must fail the test, not hang it.
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let (resp, line) = upgrade_response(&mut s);
            // 101, a text frame, a ping and another text frame in one write.
            let mut all = resp.into_bytes();
            all.extend(server_frame(OpCode::Text, b"{\"a\":1}"));
            all.extend(server_frame(OpCode::Ping, b"hb"));
            all.extend(server_frame(OpCode::Text, b"{\"b\":2}"));
            s.write_all(&all).unwrap();
            let pong = read_client_frame(&mut s);
            (line, pong)
        });
        let mut c = WsConn::connect(
            &WsClientConfig::new(format!("ws://127.0.0.1:{port}/stream?streams=x@bookTicker")),
            Instant::now(),
        )
        .unwrap();
        let got = drive(&mut c, 3, Duration::from_secs(5));
        assert_eq!(
            got,
            vec![
                Got::Opened,
                Got::Frame(b"{\"a\":1}".to_vec()),
                Got::Frame(b"{\"b\":2}".to_vec())
            ]
        );
        let (line, pong) = srv.join().unwrap();
        assert_eq!(line, "GET /stream?streams=x@bookTicker HTTP/1.1");
        assert_eq!(pong, (0xA, b"hb".to_vec()), "masked pong echoes the ping");
        assert_eq!(c.pongs(), 1);
    }

    #[test]
    fn frames_split_at_every_byte_and_fragmented_messages_are_reassembled() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let srv = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // A client bug must fail the test, not hang it.
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.set_nodelay(true).unwrap();
            let (resp, _) = upgrade_response(&mut s);
            s.write_all(resp.as_bytes()).unwrap();
            let mut bytes = server_frame(OpCode::Text, &[b'x'; 300]);
            let mut f = [0u8; 64];
            for (op, fin, p) in [
                (0x1, false, &b"{\"frag\":"[..]),
                (0x9, true, b"p"),
                (0x0, false, b"12"),
                (0x0, true, b"3}"),
            ] {
                let n = encode_server_fragment(op, fin, p, &mut f).unwrap();
                bytes.extend_from_slice(&f[..n]);
            }
            bytes.extend(server_frame(OpCode::Binary, b"end"));
            for b in bytes {
                s.write_all(&[b]).unwrap();
                std::thread::sleep(Duration::from_micros(200));
            }
            read_client_frame(&mut s)
        });
        let mut c = WsConn::connect(
            &WsClientConfig::new(format!("ws://127.0.0.1:{port}/")),
            Instant::now(),
        )
        .unwrap();
        let got = drive(&mut c, 4, Duration::from_secs(10));
        assert_eq!(
            got,
            vec![
                Got::Opened,
                Got::Frame(vec![b'x'; 300]),
                Got::Frame(b"{\"frag\":123}".to_vec()),
                Got::Frame(b"end".to_vec()),
            ]
        );
        assert_eq!(srv.join().unwrap(), (0xA, b"p".to_vec()));
    }

    #[test]
    fn refused_upgrade_and_wrong_accept_key_are_errors() {
        for resp in [
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_string(),
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: bm90IHRoZSBrZXk=\r\n\r\n"
                .to_string(),
        ] {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            let srv = std::thread::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                // A client bug must fail the test, not hang it.
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let _ = upgrade_response(&mut s);
                s.write_all(resp.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(200));
            });
            let mut c = WsConn::connect(
                &WsClientConfig::new(format!("ws://127.0.0.1:{port}/")),
                Instant::now(),
            )
            .unwrap();
            let got = drive(&mut c, 1, Duration::from_secs(5));
            assert!(
                matches!(&got[..], [Got::Closed(m)] if m.contains("upgrade refused")),
                "{got:?}"
            );
            assert!(c.is_closed());
            srv.join().unwrap();
        }
        assert!(matches!(
            WsConn::connect(&WsClientConfig::new("http://x/"), Instant::now()),
            Err(WsError::BadUrl(_))
        ));
    }

    /// Serves `n` connections: each sends one text frame with its number, then a close frame.
    fn closing_server(l: TcpListener, n: usize) -> std::thread::JoinHandle<Vec<(u8, Vec<u8>)>> {
        std::thread::spawn(move || {
            let mut closes = Vec::new();
            for i in 0..n {
                let (mut s, _) = l.accept().unwrap();
                // A client bug must fail the test, not hang it.
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let (resp, _) = upgrade_response(&mut s);
                s.write_all(resp.as_bytes()).unwrap();
                s.write_all(&server_frame(
                    OpCode::Text,
                    format!("{{\"n\":{i}}}").as_bytes(),
                ))
                .unwrap();
                std::thread::sleep(Duration::from_millis(50));
                s.write_all(&server_frame(OpCode::Close, &1001u16.to_be_bytes()))
                    .unwrap();
                // The client echoes the close.
                closes.push(read_client_frame(&mut s));
            }
            closes
        })
    }

    /// Keeps polling (so close frames are read and echoed) until the server thread is done. Never joins a server
    /// still waiting in accept or a read: that would hang the test run instead of failing it.
    fn poll_until_finished<T>(feed: &mut WsFeed, srv: &std::thread::JoinHandle<T>) {
        let t = Instant::now();
        while !srv.is_finished() && t.elapsed() < Duration::from_secs(20) {
            let _ = feed.poll();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            srv.is_finished(),
            "the server is still waiting for the client"
        );
    }

    fn feed_frames(feed: &mut WsFeed, want: usize, limit: Duration) -> Vec<Vec<u8>> {
        let t = Instant::now();
        let mut got = Vec::new();
        while got.len() < want && t.elapsed() < limit {
            match feed.poll() {
                crate::feed::FeedPoll::Msg(b) => got.push(b.to_vec()),
                _ => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        got
    }

    #[test]
    fn close_frame_ends_the_connection_and_the_feed_reconnects() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let srv = closing_server(l, 3);
        let mut feed =
            WsFeed::start(WsFeedConfig::new(format!("ws://127.0.0.1:{port}/stream"))).unwrap();
        let got = feed_frames(&mut feed, 3, Duration::from_secs(10));
        assert_eq!(
            got,
            vec![
                b"{\"n\":0}".to_vec(),
                b"{\"n\":1}".to_vec(),
                b"{\"n\":2}".to_vec()
            ]
        );
        // Keep polling so the last close frame is read and echoed.
        poll_until_finished(&mut feed, &srv);
        let closes = srv.join().unwrap();
        assert_eq!(closes.len(), 3);
        assert!(
            closes
                .iter()
                .all(|(op, p)| *op == 0x8 && p == &1000u16.to_be_bytes()),
            "each close echoed with 1000: {closes:?}"
        );
        assert_eq!(feed.counters.connects.load(Relaxed), 3);
        assert_eq!(feed.counters.disconnects.load(Relaxed), 3);
    }

    #[test]
    fn dead_server_is_retried_with_backoff_then_reconnected() {
        // A port with nothing listening.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut feed =
            WsFeed::start(WsFeedConfig::new(format!("ws://127.0.0.1:{port}/stream"))).unwrap();
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(1500) {
            assert!(matches!(feed.poll(), crate::feed::FeedPoll::Idle));
            std::thread::sleep(Duration::from_micros(200));
        }
        // 100 ms doubling, ±50 %: a handful of attempts in 1.5 s, not a tight loop (thousands).
        let attempts = feed.counters.disconnects.load(Relaxed);
        assert!((2..=8).contains(&attempts), "attempts {attempts}");
        assert_eq!(feed.counters.connects.load(Relaxed), 0);
        // The server comes back: the next attempt (at most ~1.2 s later) connects.
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let srv = closing_server(l, 1);
        let got = feed_frames(&mut feed, 1, Duration::from_secs(10));
        assert_eq!(got, vec![b"{\"n\":0}".to_vec()]);
        assert_eq!(feed.counters.connects.load(Relaxed), 1);
        poll_until_finished(&mut feed, &srv);
        srv.join().unwrap();
    }

    use super::tls_support::tls_pair;

    type TlsServerStream = rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>;

    /// Accepts one TLS client on a fresh port and runs `f` on the stream; returns the port and the thread.
    fn tls_server<T: Send + 'static>(
        cfg: Arc<rustls::ServerConfig>,
        f: impl FnOnce(&mut TlsServerStream) -> T + Send + 'static,
    ) -> (u16, std::thread::JoinHandle<T>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (tcp, _) = l.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let conn = rustls::ServerConnection::new(cfg).unwrap();
            let mut s = rustls::StreamOwned::new(conn, tcp);
            f(&mut s)
        });
        (port, h)
    }

    fn wss_client(port: u16, tls: Arc<rustls::ClientConfig>) -> WsConn {
        let mut cfg = WsClientConfig::new(format!("wss://localhost:{port}/ws"));
        cfg.tls = Some(tls);
        WsConn::connect(&cfg, Instant::now()).unwrap()
    }

    #[test]
    fn wss_record_layer_for_every_cipher_suite_of_tls_1_3_and_1_2() {
        use rustls::crypto::ring::cipher_suite as cs;
        for (suite, version) in [
            (cs::TLS13_AES_128_GCM_SHA256, &rustls::version::TLS13),
            (cs::TLS13_AES_256_GCM_SHA384, &rustls::version::TLS13),
            (cs::TLS13_CHACHA20_POLY1305_SHA256, &rustls::version::TLS13),
            (
                cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                &rustls::version::TLS12,
            ),
            (
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                &rustls::version::TLS12,
            ),
            (
                cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                &rustls::version::TLS12,
            ),
        ] {
            let name = format!("{:?}", suite.suite());
            let (server_cfg, client_cfg) = tls_pair(Some(suite), version);
            let (port, srv) = tls_server(server_cfg, |s| {
                let (resp, _) = upgrade_response(s);
                let mut all = resp.into_bytes();
                all.extend(server_frame(OpCode::Text, b"{\"s\":1}"));
                all.extend(server_frame(OpCode::Ping, b"p1"));
                // Larger than one record: split across four.
                all.extend(server_frame(OpCode::Binary, &vec![b'z'; 60_000]));
                s.write_all(&all).unwrap();
                s.flush().unwrap();
                let pong = read_client_frame(s);
                let close = read_client_frame(s);
                // Then the client's close_notify: a clean end of stream, not a truncation error.
                let mut rest = Vec::new();
                let eof = s.read_to_end(&mut rest).map(|_| rest.len());
                (pong, close, eof.map_err(|e| e.to_string()))
            });
            let mut c = wss_client(port, client_cfg);
            let got = drive(&mut c, 3, Duration::from_secs(10));
            assert_eq!(
                got,
                vec![
                    Got::Opened,
                    Got::Frame(b"{\"s\":1}".to_vec()),
                    Got::Frame(vec![b'z'; 60_000]),
                ],
                "{name}"
            );
            // The pong went out under our traffic key before close.
            let t = Instant::now();
            while c.pongs() == 0 && t.elapsed() < Duration::from_secs(5) {
                let _ = c.poll(Instant::now());
            }
            c.close();
            let (pong, close, eof) = srv.join().unwrap();
            assert_eq!(pong, (0xA, b"p1".to_vec()), "{name}");
            assert_eq!(close, (0x8, 1000u16.to_be_bytes().to_vec()), "{name}");
            assert_eq!(eof, Ok(0), "{name}: close_notify ends the stream");
        }
    }

    #[test]
    fn wss_server_key_update_and_close_notify() {
        use rustls::crypto::ring::cipher_suite as cs;
        let (server_cfg, client_cfg) =
            tls_pair(Some(cs::TLS13_AES_128_GCM_SHA256), &rustls::version::TLS13);
        let (port, srv) = tls_server(server_cfg, |s| {
            let (resp, _) = upgrade_response(s);
            let mut all = resp.into_bytes();
            all.extend(server_frame(OpCode::Text, b"before"));
            s.write_all(&all).unwrap();
            s.flush().unwrap();
            // KeyUpdate with update_requested: the client must switch its receive key and answer with its own.
            s.conn.refresh_traffic_keys().unwrap();
            s.write_all(&server_frame(OpCode::Text, b"after")).unwrap();
            s.write_all(&server_frame(OpCode::Ping, b"k")).unwrap();
            s.flush().unwrap();
            // Readable only if the client switched its send key as well.
            let pong = read_client_frame(s);
            s.write_all(&server_frame(OpCode::Text, b"last")).unwrap();
            s.conn.send_close_notify();
            s.flush().unwrap();
            pong
        });
        let mut c = wss_client(port, client_cfg);
        let got = drive(&mut c, 5, Duration::from_secs(10));
        assert_eq!(
            got,
            vec![
                Got::Opened,
                Got::Frame(b"before".to_vec()),
                Got::Frame(b"after".to_vec()),
                Got::Frame(b"last".to_vec()),
                Got::Closed(WsError::Eof.to_string()),
            ]
        );
        assert_eq!(srv.join().unwrap(), (0xA, b"k".to_vec()));
    }

    #[test]
    fn wss_refuses_a_certificate_it_does_not_trust() {
        use rustls::crypto::ring::cipher_suite as cs;
        let (server_cfg, _) = tls_pair(Some(cs::TLS13_AES_128_GCM_SHA256), &rustls::version::TLS13);
        // A client trusting a different self-signed certificate.
        let (_, other_client) =
            tls_pair(Some(cs::TLS13_AES_128_GCM_SHA256), &rustls::version::TLS13);
        let (port, srv) = tls_server(server_cfg, |s| {
            let mut b = [0u8; 1];
            s.read(&mut b).is_err()
        });
        let mut c = wss_client(port, other_client);
        let got = drive(&mut c, 1, Duration::from_secs(10));
        assert!(
            matches!(&got[..], [Got::Closed(m)] if m.starts_with("TLS:")),
            "{got:?}"
        );
        assert!(srv.join().unwrap(), "the server saw the handshake fail");
    }

    #[test]
    fn wss_against_a_local_rustls_server_with_a_self_signed_certificate() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = ck.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()),
        );
        let server_cfg = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.clone()], key)
                .unwrap(),
        );
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client_cfg = Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let srv = std::thread::spawn(move || {
            let (tcp, _) = l.accept().unwrap();
            // A client bug must fail the test, not hang it.
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let conn = rustls::ServerConnection::new(server_cfg).unwrap();
            let mut s = rustls::StreamOwned::new(conn, tcp);
            let (resp, line) = upgrade_response(&mut s);
            let mut all = resp.into_bytes();
            all.extend(server_frame(OpCode::Text, b"{\"tls\":1}"));
            all.extend(server_frame(OpCode::Ping, b"t"));
            all.extend(server_frame(OpCode::Text, &vec![b'y'; 40_000]));
            s.write_all(&all).unwrap();
            s.flush().unwrap();
            (line, read_client_frame(&mut s))
        });
        // "localhost" goes through the resolver thread and SNI/certificate checks by name.
        let mut cfg = WsFeedConfig::new(format!("wss://localhost:{port}/stream?streams=a"));
        cfg.tls = Some(TlsOverride(client_cfg));
        let mut feed = WsFeed::start(cfg).unwrap();
        let got = feed_frames(&mut feed, 2, Duration::from_secs(10));
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], b"{\"tls\":1}");
        assert_eq!(got[1], vec![b'y'; 40_000]);
        let (line, pong) = srv.join().unwrap();
        assert_eq!(line, "GET /stream?streams=a HTTP/1.1");
        assert_eq!(pong, (0xA, b"t".to_vec()));
        assert_eq!(feed.counters.pongs.load(Relaxed), 1);
    }
}
