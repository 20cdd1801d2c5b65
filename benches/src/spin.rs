//! Busy-polling receivers for the order-hop benches: a thread that spins on non-blocking sockets
//! ([`std::hint::spin_loop`]) and timestamps bytes as soon as `read` returns them, so a measured latency ends when
//! the order frame reaches the socket, not when a sleeping receiver thread is next scheduled.
//!
//! [`ClientFrames`] splits the client → server half of a WebSocket connection (an optional HTTP upgrade request,
//! then masked frames) and remembers, per frame, when the read that brought its first byte and the read that
//! completed it returned.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

/// One complete client frame.
#[derive(Debug)]
pub struct Frame<'a> {
    /// WebSocket opcode (1 text, 8 close, 9 ping, 10 pong).
    pub opcode: u8,
    /// The unmasked payload.
    pub payload: &'a [u8],
    /// When the read that returned the frame's first byte returned.
    pub first_byte: Instant,
    /// When the read that completed the frame returned.
    pub complete: Instant,
}

/// Splits a client → server byte stream into frames (see the module docs).
#[derive(Debug, Default)]
pub struct ClientFrames {
    buf: Vec<u8>,
    /// Still inside the HTTP upgrade request.
    http: bool,
    /// When the first byte of the frame at the head of `buf` arrived.
    head_at: Option<Instant>,
    /// Frames that took more than one read.
    pub split_frames: u64,
}

impl ClientFrames {
    /// A scanner for a stream that starts with frames (the upgrade was already done).
    pub fn frames_only() -> Self {
        Self::default()
    }

    /// A scanner for a stream that starts with the HTTP upgrade request (a proxy sees it).
    pub fn with_upgrade() -> Self {
        Self {
            http: true,
            ..Self::default()
        }
    }

    /// Feeds bytes that a read returned at `at`; calls `f` for every frame completed by them.
    pub fn feed(&mut self, bytes: &[u8], at: Instant, mut f: impl FnMut(Frame<'_>)) {
        if self.buf.is_empty() {
            self.head_at = Some(at);
        }
        self.buf.extend_from_slice(bytes);
        if self.http {
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            self.buf.drain(..end + 4);
            self.http = false;
            self.head_at = Some(at);
        }
        let mut off = 0;
        loop {
            let b = &self.buf[off..];
            let Some((hdr, len, mask)) = header(b) else {
                break;
            };
            if b.len() < hdr + len {
                break;
            }
            let first_byte = self.head_at.unwrap_or(at);
            if first_byte != at {
                self.split_frames += 1;
            }
            let opcode = self.buf[off] & 0x0f;
            let p = &mut self.buf[off + hdr..off + hdr + len];
            if let Some(m) = mask {
                for (i, x) in p.iter_mut().enumerate() {
                    *x ^= m[i % 4];
                }
            }
            f(Frame {
                opcode,
                payload: p,
                first_byte,
                complete: at,
            });
            off += hdr + len;
            // Whatever follows came with this read (every earlier read's complete frames were consumed then).
            self.head_at = Some(at);
        }
        self.buf.drain(..off);
    }
}

/// (header length, payload length, mask) of the frame at the start of `b`, once its header is complete.
fn header(b: &[u8]) -> Option<(usize, usize, Option<[u8; 4]>)> {
    let b1 = *b.get(1)?;
    let masked = b1 & 0x80 != 0;
    let (ext, len) = match b1 & 0x7f {
        126 => (2, u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize),
        127 => {
            let mut l = [0u8; 8];
            l.copy_from_slice(b.get(2..10)?);
            (8, u64::from_be_bytes(l) as usize)
        }
        n => (0, n as usize),
    };
    let mask_at = 2 + ext;
    let mask = if masked {
        let mut m = [0u8; 4];
        m.copy_from_slice(b.get(mask_at..mask_at + 4)?);
        Some(m)
    } else {
        None
    };
    Some((mask_at + if masked { 4 } else { 0 }, len, mask))
}

/// An unmasked server frame (`opcode` 1 text, 10 pong).
pub fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 4);
    v.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => v.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            v.push(126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    v.extend_from_slice(payload);
    v
}

/// `write_all` on a non-blocking socket: spins while the send buffer is full.
pub fn write_all_spin(s: &mut TcpStream, mut b: &[u8]) -> std::io::Result<()> {
    while !b.is_empty() {
        match s.write(b) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => b = &b[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One non-blocking read: `Ok(Some(n))` bytes (0 = closed), `Ok(None)` nothing there yet.
pub fn try_read(s: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    match s.read(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Pins the calling thread to `core` (an index into the OS's core list); false if that is not possible.
pub fn pin(core: usize) -> bool {
    core_affinity::get_core_ids()
        .and_then(|ids| ids.get(core).copied())
        .is_some_and(core_affinity::set_for_current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(payload: &[u8]) -> Vec<u8> {
        let m = [1u8, 2, 3, 4];
        let mut v = vec![0x81];
        if payload.len() < 126 {
            v.push(0x80 | payload.len() as u8);
        } else {
            v.push(0x80 | 126);
            v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(&m);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        v
    }

    #[test]
    fn splits_upgrade_and_frames_and_stamps_the_first_byte() {
        let big = vec![b'x'; 300];
        let mut bytes = b"GET /ws-fapi/v1 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        bytes.extend(masked(b"{\"method\":\"order.place\"}"));
        bytes.extend(masked(&big));
        let mut s = ClientFrames::with_upgrade();
        let t0 = Instant::now();
        let t1 = t0 + std::time::Duration::from_micros(5);
        let mut got = Vec::new();
        // The second frame is split across two reads.
        let cut = bytes.len() - 100;
        s.feed(&bytes[..cut], t0, |f| {
            got.push((f.payload.to_vec(), f.first_byte, f.complete))
        });
        s.feed(&bytes[cut..], t1, |f| {
            got.push((f.payload.to_vec(), f.first_byte, f.complete))
        });
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, b"{\"method\":\"order.place\"}");
        assert_eq!((got[0].1, got[0].2), (t0, t0));
        assert_eq!(got[1].0, big);
        assert_eq!((got[1].1, got[1].2), (t0, t1));
        assert_eq!(s.split_frames, 1);
    }

    #[test]
    fn server_frames_use_the_extended_length() {
        assert_eq!(server_frame(1, b"hi"), vec![0x81, 2, b'h', b'i']);
        let f = server_frame(1, &[0u8; 200]);
        assert_eq!(&f[..4], &[0x81, 126, 0, 200]);
        assert_eq!(f.len(), 204);
    }
}
