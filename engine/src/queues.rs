//! The queues between the engine thread and the control plane, and the policy that keeps the hot path from ever
//! blocking on them.
//!
//! Three bounded lock-free channels (crossbeam array channels, allocated once):
//! - **critical** engine → control ([`QueueConfig::critical`], default 65,536): orders, fills, positions,
//!   breaker/state changes, alerts ([`EngineEvent::is_critical`]). **Never dropped.** The engine `try_send`s;
//!   when the channel is full the event goes into a preallocated local overflow ring ([`QueueConfig::overflow`],
//!   default 65,536) *in order* (once anything is in the ring, every later critical event queues behind it), and
//!   the engine halts new entries (`HaltReason::Backpressure`) until the ring is empty **and** the channel has
//!   drained to its low-water mark (a quarter of its capacity, so the halt does not flap). Exits keep working.
//!   If even the ring is full (the control plane has stopped draining for a long time), the engine blocks on the
//!   channel rather than lose an event — losing a fill is worse than stalling. If the control plane is gone
//!   (receiver dropped) events cannot be delivered; they are counted in [`EventSink::undeliverable`].
//! - **stats** engine → control ([`QueueConfig::stats`], default 1,024): heartbeats and counters. `try_send`;
//!   when full the event is dropped and counted ([`EventSink::dropped_stats`], reported in `EngineStats`).
//! - **commands** control → engine ([`QueueConfig::commands`], default 1,024): polled with `try_recv` between
//!   market messages.

use aegis_shared::{Command, EngineEvent};
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::collections::VecDeque;

/// Queue capacities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Critical channel capacity.
    pub critical: usize,
    /// Local overflow ring capacity (critical events waiting for channel space).
    pub overflow: usize,
    /// Stats channel capacity.
    pub stats: usize,
    /// Command channel capacity.
    pub commands: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            critical: 65_536,
            overflow: 65_536,
            stats: 1_024,
            commands: 1_024,
        }
    }
}

/// The control plane's ends.
#[derive(Debug)]
pub struct ControlEnds {
    /// Critical events (never dropped).
    pub events: Receiver<EngineEvent>,
    /// Droppable statistics.
    pub stats: Receiver<EngineEvent>,
    /// Commands to the engine.
    pub commands: Sender<Command>,
}

/// The engine's ends: the event sink and the command receiver.
#[derive(Debug)]
pub struct EngineEnds {
    /// Where the engine emits events.
    pub sink: EventSink,
    /// Commands from the control plane.
    pub commands: Receiver<Command>,
}

/// Creates the three channels.
pub fn channels(cfg: QueueConfig) -> (EngineEnds, ControlEnds) {
    let (ctx, crx) = bounded(cfg.critical.max(1));
    let (stx, srx) = bounded(cfg.stats.max(1));
    let (mtx, mrx) = bounded(cfg.commands.max(1));
    (
        EngineEnds {
            sink: EventSink::new(ctx, stx, cfg.overflow.max(1), cfg.critical.max(1)),
            commands: mrx,
        },
        ControlEnds {
            events: crx,
            stats: srx,
            commands: mtx,
        },
    )
}

/// Anything the engine's components can hand events to (the queue sink in production, a vector in tests).
pub trait EventOut {
    /// Hands over one event.
    fn emit(&mut self, e: EngineEvent);
}

impl EventOut for Vec<EngineEvent> {
    fn emit(&mut self, e: EngineEvent) {
        self.push(e);
    }
}

/// The engine side of the event queues, enforcing the policy in the module docs.
#[derive(Debug)]
pub struct EventSink {
    critical: Sender<EngineEvent>,
    stats: Sender<EngineEvent>,
    overflow: VecDeque<EngineEvent>,
    overflow_cap: usize,
    low_water: usize,
    backpressure: bool,
    dropped_stats: u64,
    undeliverable: u64,
    max_overflow: usize,
}

impl EventSink {
    fn new(
        critical: Sender<EngineEvent>,
        stats: Sender<EngineEvent>,
        overflow_cap: usize,
        ccap: usize,
    ) -> Self {
        Self {
            critical,
            stats,
            overflow: VecDeque::with_capacity(overflow_cap),
            overflow_cap,
            low_water: ccap / 4,
            backpressure: false,
            dropped_stats: 0,
            undeliverable: 0,
            max_overflow: 0,
        }
    }

    /// True while critical events are backed up (new entries must be halted).
    #[inline]
    pub fn backpressure(&self) -> bool {
        self.backpressure
    }
    /// Statistics events dropped because their queue was full.
    #[inline]
    pub fn dropped_stats(&self) -> u64 {
        self.dropped_stats
    }
    /// Critical events that could not be delivered because the control plane is gone.
    #[inline]
    pub fn undeliverable(&self) -> u64 {
        self.undeliverable
    }
    /// Critical events currently waiting in the overflow ring.
    #[inline]
    pub fn overflow_len(&self) -> usize {
        self.overflow.len()
    }
    /// Largest overflow ring length seen.
    #[inline]
    pub fn max_overflow(&self) -> usize {
        self.max_overflow
    }

    /// Sends a droppable event (heartbeat, stats); drops and counts it when the queue is full.
    #[inline]
    pub fn emit_stats(&mut self, e: EngineEvent) {
        if self.stats.try_send(e).is_err() {
            self.dropped_stats += 1;
        }
    }

    /// Sends a critical event without ever dropping it (see the module docs).
    #[inline]
    pub fn emit_critical(&mut self, e: EngineEvent) {
        if !self.overflow.is_empty() {
            // Keep order: once anything waits, everything queues behind it.
            self.push_overflow(e);
            return;
        }
        match self.critical.try_send(e) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(_)) => self.undeliverable += 1,
            Err(TrySendError::Full(e)) => {
                self.backpressure = true;
                self.push_overflow(e);
            }
        }
    }

    fn push_overflow(&mut self, e: EngineEvent) {
        if self.overflow.len() == self.overflow_cap {
            // Last resort: the ring is full. Block on the oldest event rather than drop anything.
            if let Some(old) = self.overflow.pop_front() {
                if self.critical.send(old).is_err() {
                    self.undeliverable += 1;
                }
            }
        }
        // Within the preallocated capacity: does not allocate.
        self.overflow.push_back(e);
        self.max_overflow = self.max_overflow.max(self.overflow.len());
    }

    /// Moves overflowed events into the channel while it has room; clears backpressure once everything is
    /// delivered and the channel is at or below its low-water mark. Returns the backpressure state. Called by
    /// the engine loop every iteration.
    #[inline]
    pub fn pump(&mut self) -> bool {
        while let Some(e) = self.overflow.pop_front() {
            match self.critical.try_send(e) {
                Ok(()) => {}
                Err(TrySendError::Full(e)) => {
                    self.overflow.push_front(e);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => self.undeliverable += 1,
            }
        }
        if self.backpressure && self.overflow.is_empty() && self.critical.len() <= self.low_water {
            self.backpressure = false;
        }
        self.backpressure
    }

    /// Delivers everything still in the overflow ring, blocking if needed (shutdown).
    pub fn flush_blocking(&mut self) {
        while let Some(e) = self.overflow.pop_front() {
            if self.critical.send(e).is_err() {
                self.undeliverable += 1;
            }
        }
        self.backpressure = false;
    }
}

impl EventOut for EventSink {
    #[inline]
    fn emit(&mut self, e: EngineEvent) {
        if e.is_critical() {
            self.emit_critical(e)
        } else {
            self.emit_stats(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_shared::event::{EngineState, HaltReason};

    fn ev(seq: u64) -> EngineEvent {
        EngineEvent::Alert {
            ts_ms: seq,
            kind: aegis_shared::event::AlertKind::ExchangeErrors,
        }
    }

    #[test]
    fn stats_are_dropped_and_counted_when_full() {
        let (mut e, c) = channels(QueueConfig {
            stats: 4,
            ..QueueConfig::default()
        });
        for s in 0..10 {
            e.sink.emit(EngineEvent::Heartbeat { ts_ms: 0, seq: s });
        }
        assert_eq!(e.sink.dropped_stats(), 6);
        assert!(!e.sink.backpressure(), "stats never cause backpressure");
        let got: Vec<_> = c.stats.try_iter().collect();
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn critical_events_overflow_in_order_halt_and_resume_after_drain() {
        let (mut e, c) = channels(QueueConfig {
            critical: 8,
            overflow: 1000,
            stats: 4,
            commands: 4,
        });
        for s in 0..100 {
            e.sink.emit(ev(s));
            e.sink.pump();
        }
        assert!(e.sink.backpressure(), "a full critical queue halts entries");
        assert_eq!(e.sink.overflow_len(), 92);
        // A slow consumer: takes a few at a time while the engine keeps emitting.
        let mut got = Vec::new();
        let mut s = 100;
        let mut resumed_at = None;
        for round in 0..200 {
            for _ in 0..3 {
                if let Ok(x) = c.events.try_recv() {
                    got.push(x);
                }
            }
            if round % 4 == 0 && s < 130 {
                e.sink.emit(ev(s));
                s += 1;
            }
            if !e.sink.pump() && resumed_at.is_none() {
                resumed_at = Some(round);
            }
        }
        got.extend(c.events.try_iter());
        assert!(resumed_at.is_some(), "backpressure clears after the drain");
        assert!(!e.sink.backpressure());
        let seqs: Vec<u64> = got
            .iter()
            .map(|x| match x {
                EngineEvent::Alert { ts_ms, .. } => *ts_ms,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(seqs, (0..s).collect::<Vec<_>>(), "nothing lost, order kept");
        assert_eq!(e.sink.undeliverable(), 0);
    }

    #[test]
    fn full_ring_blocks_instead_of_dropping() {
        let (mut e, c) = channels(QueueConfig {
            critical: 2,
            overflow: 2,
            stats: 1,
            commands: 1,
        });
        let consumer = std::thread::spawn(move || {
            let mut n = 0;
            while let Ok(x) = c.events.recv() {
                if let EngineEvent::Alert { ts_ms, .. } = x {
                    assert_eq!(ts_ms, n);
                    n += 1;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            n
        });
        for s in 0..20 {
            e.sink.emit(ev(s));
        }
        e.sink.flush_blocking();
        e.sink.emit(EngineEvent::State {
            ts_ms: 0,
            state: EngineState::Halted {
                reason: HaltReason::Shutdown,
            },
        });
        drop(e);
        assert_eq!(consumer.join().unwrap(), 20);
    }
}
