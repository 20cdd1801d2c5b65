//! A non-blocking WebSocket client for the engine thread: a mio `TcpStream` polled with a zero timeout, plain
//! `ws://` (the simulator) or `wss://` through a `rustls::ClientConnection`, frames read by the allocation-free
//! [`FrameReader`].
//!
//! One [`WsConn::poll`] does a bounded amount of work (at most [`MAX_READS_PER_POLL`] socket reads) and never
//! blocks or sleeps; [`WsEvent::Idle`] means nothing was ready. States: resolving (a short-lived helper thread
//! for DNS names, because `getaddrinfo` blocks; IP literals skip it) → TCP connecting (non-blocking connect,
//! `TCP_NODELAY`) → upgrading (TLS handshake and HTTP upgrade interleaved: rustls buffers the request until its
//! handshake is done) → open → closed. Connecting and the handshake may allocate; once open, nothing does on the
//! plain path.
//!
//! Why not tungstenite's `WebSocket`: its `read()` returns an owned `Message` per frame. Only its key math
//! (`generate_key`, `derive_accept_key`) is used here; the read path is [`FrameReader`] (frames handed out as
//! slices of its buffer) and pongs/closes are encoded into a buffer allocated once per connection.
//!
//! Known limit (`wss://`): rustls's buffered `ClientConnection` copies each decrypted TLS record into a fresh
//! `Vec` before we read it, so the TLS path still allocates once per record (a record usually carries several
//! frames). Removing that needs rustls's unbuffered API; the plain path (and the frame layer above TLS) is
//! allocation-free.

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
/// Pending client frames (pongs, close): control frames are at most 131 bytes each.
const OUT_CAPACITY: usize = 1024;
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
    /// a self-signed certificate.
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
    tls: Option<&'a mut rustls::ClientConnection>,
}

impl Transport<'_> {
    /// Sends whatever TLS has queued (handshake messages, alerts, encrypted pongs); `WouldBlock` leaves the rest
    /// queued in rustls for the next poll.
    fn flush_tls(&mut self) -> io::Result<()> {
        if let Some(t) = self.tls.as_deref_mut() {
            while t.wants_write() {
                match t.write_tls(self.sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Writes application bytes: straight to the socket (plain; may be partial) or into rustls (all accepted).
    fn write_app(&mut self, b: &[u8]) -> io::Result<usize> {
        match self.tls.as_deref_mut() {
            None => self.sock.write(b),
            Some(t) => {
                t.writer().write_all(b)?;
                self.flush_tls()?;
                Ok(b.len())
            }
        }
    }
}

impl Read for Transport<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(t) = self.tls.as_deref_mut() else {
            return self.sock.read(buf);
        };
        // Bounded: each round either returns or consumed socket bytes; a TLS record is at most ~16 KiB.
        loop {
            match t.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match t.read_tls(self.sock) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    t.process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    // Handshake replies and alerts go out at once.
                    while t.wants_write() {
                        match t.write_tls(self.sock) {
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
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
    tls: Option<Box<rustls::ClientConnection>>,
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
            Some(match &cfg.tls {
                Some(c) => c.clone(),
                None => tls_config().map_err(|e| WsError::Tls(e.to_string()))?,
            })
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
            let c = rustls::ClientConnection::new(cfg.clone(), name)
                .map_err(|e| WsError::Tls(e.to_string()))?;
            self.tls = Some(Box::new(c));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::frame::{encode_server_fragment, encode_server_frame};
    use crate::net::ws_feed::{TlsOverride, WsFeed, WsFeedConfig};
    use std::net::TcpListener;
    use std::sync::atomic::Ordering::Relaxed;

    fn server_frame(op: OpCode, p: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; p.len() + 10];
        let n = encode_server_frame(op, p, &mut out).unwrap();
        out.truncate(n);
        out
    }

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
        let t = Instant::now();
        while !srv.is_finished() && t.elapsed() < Duration::from_secs(5) {
            let _ = feed.poll();
            std::thread::sleep(Duration::from_millis(1));
        }
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
        let t = Instant::now();
        while !srv.is_finished() && t.elapsed() < Duration::from_secs(5) {
            let _ = feed.poll();
            std::thread::sleep(Duration::from_millis(1));
        }
        srv.join().unwrap();
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
