//! A latency probe for benchmarks, on the simulator's own clock: when it wrote a chosen market frame to a
//! client's socket, and when it next read an `order.place` frame on the WebSocket API. Armed once per sample
//! ([`Probe::arm`]); idle it costs one atomic load per frame.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

// 0 (the `Default`): idle.
const ARMED: u8 = 1;
const TICKED: u8 = 2;
const DONE: u8 = 3;

/// See the module docs.
#[derive(Debug, Default)]
pub struct Probe {
    state: AtomicU8,
    /// Stream name (`btcusdt@bookTicker`) whose next frame starts the sample.
    stream: Mutex<String>,
    tick: Mutex<Option<Instant>>,
    order: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Probe {
    /// Starts a sample: the next frame of `stream` written to a market connection, then the next `order.place`
    /// read after it.
    pub fn arm(&self, stream: &str) {
        *lock(&self.stream) = stream.to_string();
        *lock(&self.tick) = None;
        *lock(&self.order) = None;
        self.state.store(ARMED, Ordering::Release);
    }

    /// Called after a market frame of `stream` was written to a client's socket.
    pub fn market_written(&self, stream: &str) {
        if self.state.load(Ordering::Acquire) != ARMED || *lock(&self.stream) != stream {
            return;
        }
        *lock(&self.tick) = Some(Instant::now());
        self.state.store(TICKED, Ordering::Release);
    }

    /// Called when a WebSocket API frame was read.
    pub fn api_read(&self, text: &str) {
        if self.state.load(Ordering::Acquire) != TICKED || !text.contains("\"order.place\"") {
            return;
        }
        *lock(&self.order) = Some(Instant::now());
        self.state.store(DONE, Ordering::Release);
    }

    /// The finished sample (frame written → order frame read), once there is one.
    pub fn sample(&self) -> Option<Duration> {
        if self.state.load(Ordering::Acquire) != DONE {
            return None;
        }
        let (t, o) = ((*lock(&self.tick))?, (*lock(&self.order))?);
        Some(o.saturating_duration_since(t))
    }
}
