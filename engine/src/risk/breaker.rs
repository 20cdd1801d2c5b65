//! The circuit breaker (security guide §5.1, contract in `../shared/README.md`).
//!
//! Rules, exactly:
//! - **Trips** when the realized loss over the rolling last 60 minutes reaches `CIRCUIT_MAX_LOSS_PER_HOUR`, or
//!   when the count of consecutive losing trades reaches `CIRCUIT_MAX_CONSECUTIVE_LOSSES` ("reaching" = `>=`).
//!   The hourly loss is the sum of the losing trades' losses in the window (the guide: "sum of all losing
//!   trades"); wins do not offset it. A trade's result is its net PnL (realized PnL minus its fees): below zero is
//!   a loss, above zero a win (which ends a streak), exactly zero leaves the streak as it is. A threshold of zero
//!   switches its rule off.
//! - **While tripped** no new entries open; exits (reduce-only orders) pass. A trip lasts exactly
//!   `CIRCUIT_COOLDOWN_MINUTES`: entries are refused for `now` in `[trip, trip + cooldown)` and the breaker
//!   resumes by itself at `trip + cooldown`. Results realized during a trip (exits) are still recorded, but never
//!   extend the running trip.
//! - A trip consumes the losing streak that caused it (the count restarts at zero); the rolling-hour window is
//!   not cleared, so after a resume the next losing trade trips again while the last hour's losses still reach
//!   the limit.
//! - An operator reset ([`aegis_shared::Command::ResetBreaker`]) ends a trip at once and clears the window and
//!   the streak.
//! - One global breaker sees every trade; each mode has its own breaker that sees only that mode's trades, so
//!   one misbehaving mode pauses alone.
//!
//! Time is always passed in (ms since the epoch); nothing here reads a clock, so tests are deterministic. The
//! rolling window is a fixed ring of the losing trades of the last hour ([`LOSS_RING`] entries, no allocation);
//! should more losing trades than that fall into one hour, the two oldest entries are merged under the newer
//! timestamp, which can only keep a loss in the window longer (the safe side).
//!
//! Restart: [`BreakerBank::snapshot`] gives a serde value with the full state; the control plane journals it (or
//! just the [`BreakerEvent`]s, which [`BreakerBankSnapshot::from_events`] folds back into the trip state) and
//! hands it back at start through [`BreakerBank::restore`]. A restart therefore never resets a trip.

use aegis_shared::event::{BreakerChange, BreakerEvent, BreakerScope, TimestampMs, TripReason};
use aegis_shared::mode::StrategyMode;
use aegis_shared::num::Notional;
use serde::{Deserialize, Serialize};

/// Length of the rolling loss window: 60 minutes.
pub const WINDOW_MS: u64 = 60 * 60 * 1000;
/// Capacity of a breaker's ring of losing trades.
pub const LOSS_RING: usize = 512;

/// Breaker thresholds (`CIRCUIT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerConfig {
    /// `CIRCUIT_BREAKER_ENABLED`: when false the breaker records but never blocks.
    pub enabled: bool,
    /// `CIRCUIT_MAX_LOSS_PER_HOUR` (USD). Zero switches the rule off.
    pub max_loss_per_hour: Notional,
    /// `CIRCUIT_MAX_CONSECUTIVE_LOSSES`. Zero switches the rule off.
    pub max_consecutive_losses: u32,
    /// `CIRCUIT_COOLDOWN_MINUTES`, in milliseconds.
    pub cooldown_ms: u64,
}

impl Default for BreakerConfig {
    /// The guide's example: enabled, $100 per hour, 10 losses in a row, 30 minutes.
    fn default() -> Self {
        Self {
            enabled: true,
            max_loss_per_hour: Notional::from_int(100),
            max_consecutive_losses: 10,
            cooldown_ms: 30 * 60_000,
        }
    }
}

/// A running trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trip {
    /// Why it tripped.
    pub reason: TripReason,
    /// When it tripped (ms).
    pub at_ms: TimestampMs,
    /// When it resumes by itself (ms): `at_ms + cooldown`.
    pub until_ms: TimestampMs,
}

/// The restorable state of one breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerSnapshot {
    /// Which breaker.
    pub scope: BreakerScope,
    /// The running trip, if any.
    pub trip: Option<Trip>,
    /// The current losing streak.
    pub consecutive_losses: u32,
    /// The losing trades in the window as (time ms, loss as a positive amount), oldest first.
    pub losses: Vec<(TimestampMs, Notional)>,
}

/// One circuit breaker (global or one mode's).
#[derive(Debug, Clone)]
pub struct Breaker {
    scope: BreakerScope,
    cfg: BreakerConfig,
    ring: [(TimestampMs, i64); LOSS_RING],
    head: usize,
    len: usize,
    sum: i64,
    consecutive: u32,
    trip: Option<Trip>,
}

impl Breaker {
    /// A fresh, untripped breaker.
    pub fn new(scope: BreakerScope, cfg: BreakerConfig) -> Self {
        Self {
            scope,
            cfg,
            ring: [(0, 0); LOSS_RING],
            head: 0,
            len: 0,
            sum: 0,
            consecutive: 0,
            trip: None,
        }
    }

    /// Which breaker this is.
    pub fn scope(&self) -> BreakerScope {
        self.scope
    }

    /// Its thresholds.
    pub fn config(&self) -> BreakerConfig {
        self.cfg
    }

    /// Changes the thresholds (a running trip keeps its end time).
    pub fn set_config(&mut self, cfg: BreakerConfig) {
        self.cfg = cfg;
    }

    fn evict(&mut self, now: TimestampMs) {
        let cutoff = now.saturating_sub(WINDOW_MS);
        // A loss at exactly now − 60 min is out: the window is (now − 60 min, now].
        while self.len > 0 && self.ring[self.head].0 <= cutoff && now >= WINDOW_MS {
            self.sum -= self.ring[self.head].1;
            self.head = (self.head + 1) % LOSS_RING;
            self.len -= 1;
        }
    }

    fn push_loss(&mut self, ts: TimestampMs, loss: i64) {
        if self.len == LOSS_RING {
            // Merge the oldest into the next-oldest, keeping the newer time (see module docs).
            let old = self.ring[self.head].1;
            self.head = (self.head + 1) % LOSS_RING;
            self.len -= 1;
            self.ring[self.head].1 += old;
        }
        let tail = (self.head + self.len) % LOSS_RING;
        self.ring[tail] = (ts, loss);
        self.len += 1;
        self.sum += loss;
    }

    fn expire(&mut self, now: TimestampMs, sink: &mut impl FnMut(BreakerEvent)) {
        if let Some(t) = self.trip {
            if now >= t.until_ms {
                self.trip = None;
                sink(BreakerEvent {
                    ts_ms: t.until_ms,
                    scope: self.scope,
                    change: BreakerChange::Resumed,
                });
            }
        }
    }

    /// Realized loss over the rolling last 60 minutes at `now`, as a positive amount.
    pub fn hour_loss(&mut self, now: TimestampMs) -> Notional {
        self.evict(now);
        Notional::from_units(self.sum)
    }

    /// The current losing streak.
    pub fn consecutive_losses(&self) -> u32 {
        self.consecutive
    }

    /// Records a closed trade's net result at `now`. Emits `Resumed` if a trip ended before `now`, and
    /// `Tripped` if this result reaches a threshold.
    pub fn record_trade(
        &mut self,
        now: TimestampMs,
        net_pnl: Notional,
        sink: &mut impl FnMut(BreakerEvent),
    ) {
        self.expire(now, sink);
        self.evict(now);
        let v = net_pnl.units();
        if v < 0 {
            self.push_loss(now, -v);
            self.consecutive = self.consecutive.saturating_add(1);
        } else if v > 0 {
            self.consecutive = 0;
        }
        if self.trip.is_some() || !self.cfg.enabled {
            return;
        }
        let max_loss = self.cfg.max_loss_per_hour.units();
        let reason = if v < 0 && max_loss > 0 && self.sum >= max_loss {
            Some(TripReason::HourlyLoss)
        } else if v < 0
            && self.cfg.max_consecutive_losses > 0
            && self.consecutive >= self.cfg.max_consecutive_losses
        {
            Some(TripReason::ConsecutiveLosses)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.trip_now(now, reason, sink);
        }
    }

    fn trip_now(
        &mut self,
        now: TimestampMs,
        reason: TripReason,
        sink: &mut impl FnMut(BreakerEvent),
    ) {
        let until_ms = now.saturating_add(self.cfg.cooldown_ms);
        self.trip = Some(Trip {
            reason,
            at_ms: now,
            until_ms,
        });
        self.consecutive = 0;
        sink(BreakerEvent {
            ts_ms: now,
            scope: self.scope,
            change: BreakerChange::Tripped { reason, until_ms },
        });
    }

    /// Advances time: emits `Resumed` once the cooldown is over. Call it on every engine iteration.
    #[inline]
    pub fn poll(&mut self, now: TimestampMs, sink: &mut impl FnMut(BreakerEvent)) {
        if self.trip.is_some() {
            self.expire(now, sink);
        }
    }

    /// True when new entries are refused at `now`.
    #[inline]
    pub fn blocks_entries(&self, now: TimestampMs) -> bool {
        self.cfg.enabled && matches!(self.trip, Some(t) if now < t.until_ms)
    }

    /// The running trip (even if its end has passed but [`Breaker::poll`] has not seen it yet).
    pub fn trip(&self) -> Option<Trip> {
        self.trip
    }

    /// Operator reset: ends a trip and clears the window and the streak. Emits `Reset` (also when it was not
    /// tripped, so every admin action leaves a record).
    pub fn reset(&mut self, now: TimestampMs, sink: &mut impl FnMut(BreakerEvent)) {
        self.trip = None;
        self.consecutive = 0;
        self.len = 0;
        self.sum = 0;
        sink(BreakerEvent {
            ts_ms: now,
            scope: self.scope,
            change: BreakerChange::Reset,
        });
    }

    /// The full state, for the journal.
    pub fn snapshot(&self) -> BreakerSnapshot {
        BreakerSnapshot {
            scope: self.scope,
            trip: self.trip,
            consecutive_losses: self.consecutive,
            losses: (0..self.len)
                .map(|i| {
                    let (t, l) = self.ring[(self.head + i) % LOSS_RING];
                    (t, Notional::from_units(l))
                })
                .collect(),
        }
    }

    /// Restores a journaled state (losses beyond the ring's capacity are merged as in normal operation).
    pub fn restore(&mut self, s: &BreakerSnapshot) {
        self.trip = s.trip;
        self.consecutive = s.consecutive_losses;
        self.len = 0;
        self.sum = 0;
        self.head = 0;
        for &(t, l) in &s.losses {
            if l.units() > 0 {
                self.push_loss(t, l.units());
            }
        }
    }

    /// Applies a journaled event to the trip state (restart from events alone).
    pub fn apply_event(&mut self, e: &BreakerEvent) {
        match e.change {
            BreakerChange::Tripped { reason, until_ms } => {
                self.trip = Some(Trip {
                    reason,
                    at_ms: e.ts_ms,
                    until_ms,
                })
            }
            BreakerChange::Resumed | BreakerChange::Reset => self.trip = None,
        }
    }
}

/// Which breaker refused an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerBlock {
    /// The breaker.
    pub scope: BreakerScope,
    /// Its trip.
    pub trip: Trip,
}

/// The global breaker plus one per mode.
#[derive(Debug, Clone)]
pub struct BreakerBank {
    global: Breaker,
    modes: [Breaker; 4],
}

/// The restorable state of a [`BreakerBank`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerBankSnapshot {
    /// One entry per breaker that has state (missing ones start fresh).
    pub breakers: Vec<BreakerSnapshot>,
}

impl BreakerBankSnapshot {
    /// Folds journaled breaker events (oldest first) into the trip state of every breaker. The rolling window
    /// and streaks start empty; the trips, which a restart must not reset, are kept.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a BreakerEvent>) -> Self {
        let mut bank = BreakerBank::new(BreakerConfig::default());
        for e in events {
            bank.breaker_mut(e.scope).apply_event(e);
        }
        bank.snapshot()
    }
}

impl BreakerBank {
    /// All five breakers with the same thresholds.
    pub fn new(cfg: BreakerConfig) -> Self {
        Self {
            global: Breaker::new(BreakerScope::Global, cfg),
            modes: StrategyMode::ALL.map(|m| Breaker::new(BreakerScope::Mode(m), cfg)),
        }
    }

    /// One breaker.
    pub fn breaker(&self, scope: BreakerScope) -> &Breaker {
        match scope {
            BreakerScope::Global => &self.global,
            BreakerScope::Mode(m) => &self.modes[m.index()],
        }
    }

    /// One breaker, mutably (e.g. to give a mode its own thresholds).
    pub fn breaker_mut(&mut self, scope: BreakerScope) -> &mut Breaker {
        match scope {
            BreakerScope::Global => &mut self.global,
            BreakerScope::Mode(m) => &mut self.modes[m.index()],
        }
    }

    /// Records a closed trade of `mode` in its own breaker and in the global one.
    pub fn record_trade(
        &mut self,
        now: TimestampMs,
        mode: StrategyMode,
        net_pnl: Notional,
        sink: &mut impl FnMut(BreakerEvent),
    ) {
        self.modes[mode.index()].record_trade(now, net_pnl, sink);
        self.global.record_trade(now, net_pnl, sink);
    }

    /// Advances time on every breaker (emits `Resumed` events).
    #[inline]
    pub fn poll(&mut self, now: TimestampMs, sink: &mut impl FnMut(BreakerEvent)) {
        self.global.poll(now, sink);
        for b in &mut self.modes {
            b.poll(now, sink);
        }
    }

    /// May `mode` open a new position at `now`? Exits never need to ask.
    #[inline]
    pub fn check_entry(&self, mode: StrategyMode, now: TimestampMs) -> Result<(), BreakerBlock> {
        for b in [&self.global, &self.modes[mode.index()]] {
            if b.blocks_entries(now) {
                if let Some(trip) = b.trip {
                    return Err(BreakerBlock {
                        scope: b.scope,
                        trip,
                    });
                }
            }
        }
        Ok(())
    }

    /// Operator reset of one breaker.
    pub fn reset(
        &mut self,
        scope: BreakerScope,
        now: TimestampMs,
        sink: &mut impl FnMut(BreakerEvent),
    ) {
        self.breaker_mut(scope).reset(now, sink);
    }

    /// The full state of all breakers, for the journal.
    pub fn snapshot(&self) -> BreakerBankSnapshot {
        BreakerBankSnapshot {
            breakers: std::iter::once(&self.global)
                .chain(self.modes.iter())
                .map(Breaker::snapshot)
                .collect(),
        }
    }

    /// Restores a journaled state.
    pub fn restore(&mut self, s: &BreakerBankSnapshot) {
        for b in &s.breakers {
            self.breaker_mut(b.scope).restore(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(v: i64) -> Notional {
        Notional::from_int(v)
    }

    #[test]
    fn hourly_loss_trips_at_the_threshold_and_resumes_after_the_cooldown() {
        let mut b = Breaker::new(BreakerScope::Global, BreakerConfig::default());
        let mut ev = Vec::new();
        b.record_trade(1_000, usd(-60), &mut |e| ev.push(e));
        assert!(ev.is_empty());
        b.record_trade(2_000, usd(-40), &mut |e| ev.push(e));
        assert_eq!(
            ev,
            vec![BreakerEvent {
                ts_ms: 2_000,
                scope: BreakerScope::Global,
                change: BreakerChange::Tripped {
                    reason: TripReason::HourlyLoss,
                    until_ms: 2_000 + 30 * 60_000
                }
            }]
        );
        assert!(b.blocks_entries(2_000 + 30 * 60_000 - 1));
        assert!(!b.blocks_entries(2_000 + 30 * 60_000));
        ev.clear();
        b.poll(2_000 + 30 * 60_000, &mut |e| ev.push(e));
        assert_eq!(ev[0].change, BreakerChange::Resumed);
    }

    #[test]
    fn losses_leave_the_window_after_sixty_minutes() {
        let mut b = Breaker::new(BreakerScope::Global, BreakerConfig::default());
        let mut ev = Vec::new();
        let t0 = 10 * WINDOW_MS;
        b.record_trade(t0, usd(-99), &mut |e| ev.push(e));
        assert_eq!(b.hour_loss(t0 + WINDOW_MS - 1), usd(99));
        assert_eq!(b.hour_loss(t0 + WINDOW_MS), usd(0));
        b.record_trade(t0 + WINDOW_MS, usd(-99), &mut |e| ev.push(e));
        assert!(ev.is_empty());
    }
}
