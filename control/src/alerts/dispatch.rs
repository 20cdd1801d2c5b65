//! The alert dispatcher: a bounded queue in front of a tokio task that de-duplicates, rate-limits and delivers
//! with retries. The caller's side ([`AlertDispatcher::send`]) never blocks.

use super::config::{AlertConfig, Channel};
use super::format::{self, Context};
use super::{Alert, Kind, Subject};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

/// Knobs that are not operator settings (queue size, retry schedule, timeouts).
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Alerts waiting to be processed; when full, [`AlertDispatcher::send`] drops and counts.
    pub queue_capacity: usize,
    /// Attempts per channel and alert (first try included).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles after each failure.
    pub base_backoff: Duration,
    /// Upper bound of one backoff (also caps a server's `Retry-After`).
    pub max_backoff: Duration,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Deliveries in flight at once (all channels).
    pub max_in_flight: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            queue_capacity: 256,
            max_attempts: 5,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            max_in_flight: 8,
        }
    }
}

/// Why an alert was not accepted, or the dispatcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The queue is full (alert dropped and counted).
    #[error("alert queue full; alert dropped")]
    QueueFull,
    /// The dispatcher task has ended.
    #[error("alert dispatcher stopped")]
    Closed,
    /// The HTTP client could not be built (TLS setup).
    #[error("alert HTTP client could not be built")]
    Client,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    dropped_full: AtomicU64,
    deduplicated: AtomicU64,
    rate_limited: AtomicU64,
    accepted: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    attempts: AtomicU64,
}

/// A snapshot of the dispatcher's counters (for `/metrics` and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AlertStats {
    /// Alerts put on the queue.
    pub queued: u64,
    /// Alerts dropped because the queue was full.
    pub dropped_full: u64,
    /// Alerts suppressed as repeats within the de-duplication window.
    pub deduplicated: u64,
    /// Alerts suppressed by the rate limit.
    pub rate_limited: u64,
    /// Alerts that passed both filters and were handed to the channels.
    pub accepted: u64,
    /// Channel deliveries that succeeded.
    pub delivered: u64,
    /// Channel deliveries that failed after all attempts (or were refused with a 4xx).
    pub failed: u64,
    /// HTTP attempts made, retries included.
    pub attempts: u64,
}

/// The handle the control plane uses to raise alerts. Cheap to clone.
#[derive(Clone)]
pub struct AlertDispatcher {
    tx: mpsc::Sender<Alert>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for AlertDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertDispatcher")
            .field("stats", &self.stats())
            .finish()
    }
}

impl AlertDispatcher {
    /// Starts the dispatcher task on the current tokio runtime with default [`Tuning`]. The task ends once every
    /// clone of the returned handle is dropped and the deliveries in flight have finished.
    pub fn spawn(cfg: AlertConfig) -> Result<(AlertDispatcher, JoinHandle<()>), DispatchError> {
        Self::spawn_with(cfg, Tuning::default())
    }

    /// [`AlertDispatcher::spawn`] with explicit tuning.
    pub fn spawn_with(
        cfg: AlertConfig,
        tuning: Tuning,
    ) -> Result<(AlertDispatcher, JoinHandle<()>), DispatchError> {
        let client = reqwest::Client::builder()
            .timeout(tuning.request_timeout)
            .connect_timeout(tuning.request_timeout)
            // A redirect would send the alert body somewhere the operator did not configure.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("aegis-alerts")
            .build()
            .map_err(|_| DispatchError::Client)?;
        let (tx, rx) = mpsc::channel(tuning.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let handle = tokio::spawn(run(rx, cfg, tuning, client, counters.clone()));
        Ok((AlertDispatcher { tx, counters }, handle))
    }

    /// Queues an alert and returns at once; never blocks, never awaits. A full queue drops the alert (counted in
    /// [`AlertStats::dropped_full`]).
    pub fn send(&self, alert: Alert) -> Result<(), DispatchError> {
        match self.tx.try_send(alert) {
            Ok(()) => {
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
                Err(DispatchError::QueueFull)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(DispatchError::Closed),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> AlertStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AlertStats {
            queued: g(&c.queued),
            dropped_full: g(&c.dropped_full),
            deduplicated: g(&c.deduplicated),
            rate_limited: g(&c.rate_limited),
            accepted: g(&c.accepted),
            delivered: g(&c.delivered),
            failed: g(&c.failed),
            attempts: g(&c.attempts),
        }
    }
}

/// Token bucket: `capacity` tokens, refilled at `capacity` per minute. Capacity 0 = unlimited.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(per_minute: u32, now: Instant) -> Self {
        Self {
            capacity: per_minute as f64,
            tokens: per_minute as f64,
            last: now,
        }
    }

    pub(crate) fn take(&mut self, now: Instant) -> bool {
        if self.capacity == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.capacity / 60.0).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<Alert>,
    cfg: AlertConfig,
    tuning: Tuning,
    client: reqwest::Client,
    counters: Arc<Counters>,
) {
    let mut last_sent: HashMap<(Kind, Subject), Instant> = HashMap::new();
    let mut bucket = TokenBucket::new(cfg.max_per_minute, Instant::now());
    let mut suppressed_since_last = 0u64;
    let permits = Arc::new(Semaphore::new(tuning.max_in_flight.max(1)));
    let mut inflight = JoinSet::new();
    let channels: Arc<[Channel]> = cfg.channels.clone().into();

    while let Some(alert) = rx.recv().await {
        while inflight.try_join_next().is_some() {}
        let now = Instant::now();
        let key = (alert.kind, alert.subject);
        if !cfg.dedup_window.is_zero() {
            if let Some(t) = last_sent.get(&key) {
                if now.saturating_duration_since(*t) < cfg.dedup_window {
                    counters.deduplicated.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        }
        if !bucket.take(now) {
            counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            suppressed_since_last += 1;
            tracing::warn!(
                kind = alert.kind.name(),
                "alert suppressed by ALERT_MAX_PER_MINUTE"
            );
            continue;
        }
        last_sent.insert(key, now);
        if last_sent.len() > 4096 {
            let window = cfg.dedup_window;
            last_sent.retain(|_, t| now.saturating_duration_since(*t) < window);
        }
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let ctx = Context {
            environment: cfg.environment,
            instance: &cfg.instance,
            suppressed: std::mem::take(&mut suppressed_since_last),
        };
        if channels.is_empty() {
            tracing::warn!(
                kind = alert.kind.name(),
                severity = alert.severity.label(),
                "alert raised but no ALERT_* channel is configured"
            );
        }
        for (i, ch) in channels.iter().enumerate() {
            let body = format::body(ch, &alert, &ctx);
            inflight.spawn(deliver(
                client.clone(),
                channels.clone(),
                i,
                body,
                tuning,
                counters.clone(),
                permits.clone(),
            ));
        }
    }
    while inflight.join_next().await.is_some() {}
}

/// Exponential backoff before attempt `n + 1` (n = failures so far, from 1).
pub(crate) fn backoff(tuning: &Tuning, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    tuning
        .base_backoff
        .saturating_mul(factor)
        .min(tuning.max_backoff)
}

async fn deliver(
    client: reqwest::Client,
    channels: Arc<[Channel]>,
    index: usize,
    body: serde_json::Value,
    tuning: Tuning,
    counters: Arc<Counters>,
    permits: Arc<Semaphore>,
) {
    // Invariant: the semaphore is never closed.
    let Ok(_permit) = permits.acquire_owned().await else {
        return;
    };
    let Some(channel) = channels.get(index) else {
        return;
    };
    let name = channel.name();
    // Holds the secret URL; only ever handed to reqwest, never formatted into a log or error.
    let target = channel.target();
    let attempts = tuning.max_attempts.max(1);
    for attempt in 1..=attempts {
        counters.attempts.fetch_add(1, Ordering::Relaxed);
        let mut wait = backoff(&tuning, attempt);
        match client.post(&target).json(&body).send().await {
            Ok(resp) if resp.status().is_success() => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(resp) => {
                let status = resp.status();
                if !(status.is_server_error() || status.as_u16() == 429) {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        channel = name,
                        status = status.as_u16(),
                        "alert refused by the channel (check its URL/token/chat id)"
                    );
                    return;
                }
                if let Some(secs) = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                {
                    wait = wait.max(Duration::from_secs(secs)).min(tuning.max_backoff);
                }
                tracing::debug!(
                    channel = name,
                    status = status.as_u16(),
                    attempt,
                    "alert delivery will be retried"
                );
            }
            Err(e) => {
                // reqwest's error text includes the URL; log only its class.
                let class = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "request"
                };
                tracing::debug!(
                    channel = name,
                    error = class,
                    attempt,
                    "alert delivery will be retried"
                );
            }
        }
        if attempt < attempts {
            tokio::time::sleep(wait).await;
        }
    }
    counters.failed.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        channel = name,
        attempts,
        "alert delivery failed after all retries"
    );
}
