//! Connection limits of the HTTPS listener (issue 15.2): slow or silent clients must not hold sockets forever,
//! and no single address may take the file descriptors that the operator needs to reach the kill switch.
//!
//! - The TLS handshake and every HTTP/1 request head must arrive within `header_read_timeout`
//!   (`API_HEADER_READ_TIMEOUT`); an HTTP/1 keep-alive connection waiting for its next request is closed after
//!   the same time.
//! - A connection on which no byte moves in either direction for `idle_timeout` (`API_IDLE_TIMEOUT`) is
//!   closed, whatever the protocol (HTTP/2 included). The live stream writes at least every 15 s, so it is
//!   never idle.
//! - At most `max_per_ip` connections per peer address (`API_MAX_CONNECTIONS_PER_IP`; trusted proxies are
//!   exempt because every client behind them shares their address) and `max_total` in all
//!   (`API_MAX_CONNECTIONS`). Refused connections are closed at once, before TLS.
//! - [`LOCAL_RESERVE`] more connections are kept for the host itself (127.0.0.1, ::1), so `aegis halt`,
//!   `deploy/health-check.sh` and an SSH-tunnelled browser get in when everything else is full.

use axum_server::accept::Accept;
use ipnet::IpNet;
use std::collections::HashMap;
use std::future::{ready, Future, Ready};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Connections kept for the host itself beyond `max_total`.
pub const LOCAL_RESERVE: u32 = 16;

/// The listener's limits. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnLimits {
    /// TLS handshake and HTTP/1 request head deadline (also the HTTP/1 keep-alive idle time).
    pub header_read_timeout: Duration,
    /// No traffic either way for this long closes the connection.
    pub idle_timeout: Duration,
    /// Most open connections per peer address.
    pub max_per_ip: u32,
    /// Most open connections in all (plus [`LOCAL_RESERVE`] for the host itself).
    pub max_total: u32,
    /// Peers exempt from `max_per_ip` (the trusted reverse proxies).
    pub exempt: Vec<IpNet>,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_per_ip: 32,
            max_total: 1024,
            exempt: Vec::new(),
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
}

/// Counts open connections and admits or refuses new ones.
#[derive(Debug, Clone)]
pub struct ConnTracker {
    counts: Arc<Mutex<Counts>>,
    refused: Arc<AtomicU64>,
    limits: Arc<ConnLimits>,
}

/// An admitted connection's place in the count, released on drop.
#[derive(Debug)]
pub struct ConnGuard {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut c = lock(&self.counts);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

fn lock(m: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    // Counts are plain integers updated in one step each; a poisoned lock holds nothing half-done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The addresses `aegis halt` and the health check connect from.
fn is_operator(ip: IpAddr) -> bool {
    ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
}

impl ConnTracker {
    /// A tracker enforcing `limits`.
    pub fn new(limits: ConnLimits) -> Self {
        Self {
            counts: Arc::default(),
            refused: Arc::default(),
            limits: Arc::new(limits),
        }
    }

    /// The limits.
    pub fn limits(&self) -> &ConnLimits {
        &self.limits
    }

    /// Admits a connection from `ip`, or `None` when a cap is reached.
    pub fn try_admit(&self, ip: IpAddr) -> Option<ConnGuard> {
        let ip = crate::auth::limits::canonical(ip);
        let l = &self.limits;
        let mut c = lock(&self.counts);
        let cap = if is_operator(ip) {
            l.max_total.saturating_add(LOCAL_RESERVE)
        } else {
            l.max_total
        };
        let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
        let exempt = l.exempt.iter().any(|n| n.contains(&ip));
        if c.total >= cap || (!exempt && from_ip >= l.max_per_ip) {
            drop(c);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        c.total += 1;
        *c.per_ip.entry(ip).or_insert(0) += 1;
        Some(ConnGuard {
            counts: self.counts.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> u32 {
        lock(&self.counts).total
    }

    /// Connections open now from `ip`.
    pub fn open_from(&self, ip: IpAddr) -> u32 {
        let ip = crate::auth::limits::canonical(ip);
        lock(&self.counts).per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// Connections refused since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// The innermost acceptor (runs on the TCP stream, before TLS): admission and the idle timer.
#[derive(Debug, Clone)]
pub struct LimitAcceptor {
    tracker: ConnTracker,
}

impl LimitAcceptor {
    /// An acceptor counting into `tracker`.
    pub fn new(tracker: ConnTracker) -> Self {
        Self { tracker }
    }
}

impl<S> Accept<TcpStream, S> for LimitAcceptor {
    type Stream = Limited<TcpStream>;
    type Service = S;
    type Future = Ready<io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let ip = match stream.peer_addr() {
            Ok(a) => a.ip(),
            Err(e) => return ready(Err(e)),
        };
        match self.tracker.try_admit(ip) {
            Some(guard) => {
                let idle = self.tracker.limits.idle_timeout;
                ready(Ok((Limited::new(stream, guard, idle), service)))
            }
            None => {
                tracing::debug!(%ip, "connection refused: connection limit reached");
                // Dropping the stream closes it.
                ready(Err(io::Error::other("connection limit reached")))
            }
        }
    }
}

/// A stream that fails with `TimedOut` once no byte has moved either way for the idle time, and holds its
/// place in the connection count until dropped.
#[derive(Debug)]
pub struct Limited<T> {
    inner: T,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _guard: ConnGuard,
}

impl<T> Limited<T> {
    fn new(inner: T, guard: ConnGuard, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            _guard: guard,
        }
    }

    fn progressed(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    /// Called when the inner stream has nothing to offer: an error once the idle time is up.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle too long")
}

impl<T: AsyncRead + Unpin> AsyncRead for Limited<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.progressed();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.idle_expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Limited<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            // A peer that stops reading (its window full) is as idle as one that stops sending.
            Poll::Pending if self.idle_expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending if self.idle_expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.idle_expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_ip_and_in_total_with_a_reserve_for_the_host() {
        let t = ConnTracker::new(ConnLimits {
            max_per_ip: 2,
            max_total: 3,
            exempt: vec!["10.9.0.0/16".parse().unwrap()],
            ..ConnLimits::default()
        });
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        let g1 = t.try_admit(a).unwrap();
        let _g2 = t.try_admit(a).unwrap();
        assert!(t.try_admit(a).is_none(), "per-IP cap");
        // IPv4-mapped IPv6 is the same address.
        assert!(t.try_admit("::ffff:203.0.113.1".parse().unwrap()).is_none());
        let _g3 = t.try_admit(b).unwrap();
        assert!(t.try_admit(b).is_none(), "total cap");
        assert_eq!(t.open(), 3);
        // The host itself still gets in past the total (its per-IP cap still applies); other loopback
        // addresses are not the operator's and get no reserve.
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let l1 = t.try_admit(local).unwrap();
        let l2 = t.try_admit(local).unwrap();
        assert!(t.try_admit(local).is_none());
        assert!(t.try_admit("127.0.0.2".parse().unwrap()).is_none());
        drop(l1);
        assert!(t.try_admit(local).is_some());
        drop(l2);
        // Closing a connection frees its place.
        drop(g1);
        assert_eq!(t.open_from(a), 1);
        assert!(t.try_admit(a).is_some());
        assert!(t.refused() >= 3);
    }

    #[test]
    fn trusted_proxies_are_exempt_from_the_per_ip_cap_only() {
        let t = ConnTracker::new(ConnLimits {
            max_per_ip: 1,
            max_total: 3,
            exempt: vec!["10.9.0.0/16".parse().unwrap()],
            ..ConnLimits::default()
        });
        let proxy: IpAddr = "10.9.0.1".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| t.try_admit(proxy).unwrap()).collect();
        assert!(t.try_admit(proxy).is_none(), "the total cap still holds");
        drop(held);
        assert_eq!(t.open(), 0);
    }
}
