//! The pump: one dedicated OS thread that drains the engine's queues without pause, journals every critical
//! event first, then updates the shared view; and journals every command before forwarding it to the engine.
//!
//! It is a plain thread, not a tokio task, because `write`/`fsync` block, and the engine's bounded queues must be
//! drained even while the async runtime is busy serving HTTPS.

use crate::journal::{now_ms, CommandRecord, JournalRecord, JournalWriter};
use crate::state::Live;
use crate::watch::AlertWatch;
use aegis_shared::{Command, EngineEvent};
use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most critical events taken per round before the batch is written (bounds the batch's latency).
pub const MAX_BATCH: usize = 1024;
/// Longest idle wait, so the stop flag is noticed.
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// The engine side of the pump.
#[derive(Debug)]
pub struct EngineLink {
    /// Critical events (never dropped by the engine).
    pub events: Receiver<EngineEvent>,
    /// Statistics (droppable).
    pub stats: Receiver<EngineEvent>,
    /// Commands to the engine.
    pub commands: Sender<Command>,
}

/// A command on its way to the engine.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The command.
    pub command: Command,
    /// Who issued it.
    pub source: String,
}

/// Handle to a running pump.
#[derive(Debug)]
pub struct PumpHandle {
    /// Send commands here: they are journaled, then forwarded.
    pub commands: Sender<Issued>,
    stop: Arc<AtomicBool>,
    join: JoinHandle<JournalWriter>,
}

impl PumpHandle {
    /// Asks the pump to finish once the engine's queues are empty, even if the engine never disconnects.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Waits for the pump to end; returns the writer after its final fsync.
    pub fn join(self) -> Option<JournalWriter> {
        drop(self.commands);
        self.join.join().ok()
    }
}

/// Starts the pump thread.
pub fn spawn(
    writer: JournalWriter,
    link: EngineLink,
    live: Arc<Live>,
) -> std::io::Result<PumpHandle> {
    spawn_with(writer, link, live, None)
}

/// Starts the pump thread with an alert hook, fed after each event is journaled and applied.
pub fn spawn_with(
    writer: JournalWriter,
    link: EngineLink,
    live: Arc<Live>,
    watch: Option<AlertWatch>,
) -> std::io::Result<PumpHandle> {
    spawn_full(writer, link, live, watch, None)
}

/// [`spawn_with`] plus a waker notified after every successful fsync (the Postgres writer's
/// [`crate::db::WriterHandle::waker`]), so newly durable records reach the database without waiting for its poll.
pub fn spawn_full(
    writer: JournalWriter,
    link: EngineLink,
    live: Arc<Live>,
    watch: Option<AlertWatch>,
    durable: Option<Arc<tokio::sync::Notify>>,
) -> std::io::Result<PumpHandle> {
    let (tx, rx) = crossbeam_channel::bounded::<Issued>(1024);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let join = std::thread::Builder::new()
        .name("aegis-pump".into())
        .spawn(move || run(writer, link, rx, live, stop2, watch, durable))?;
    Ok(PumpHandle {
        commands: tx,
        stop,
        join,
    })
}

fn run(
    mut w: JournalWriter,
    link: EngineLink,
    commands: Receiver<Issued>,
    live: Arc<Live>,
    stop: Arc<AtomicBool>,
    mut watch: Option<AlertWatch>,
    durable: Option<Arc<tokio::sync::Notify>>,
) -> JournalWriter {
    // `notify_one` never blocks and keeps one permit, so a burst of fsyncs costs the writer one wake-up.
    let wake = || {
        if let Some(n) = &durable {
            n.notify_one();
        }
    };
    let mut batch: Vec<EngineEvent> = Vec::with_capacity(MAX_BATCH);
    let mut events_open = true;
    let mut stats_open = true;
    let mut commands_open = true;
    let mut halted_for_journal = false;
    loop {
        // 1. Critical events: encode, then hand to the kernel, before anything else sees them.
        while batch.len() < MAX_BATCH && events_open {
            match link.events.try_recv() {
                Ok(e) => {
                    if let Err(err) = w.append(&JournalRecord::Engine(e)) {
                        tracing::error!(error = %err, "journal: cannot encode an engine event");
                    }
                    batch.push(e);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => events_open = false,
            }
        }
        // 2. Commands: journaled, then forwarded.
        let mut forward: Vec<Command> = Vec::new();
        while commands_open {
            match commands.try_recv() {
                Ok(c) => {
                    let rec = JournalRecord::Command(CommandRecord {
                        ts_ms: now_ms(),
                        command: c.command,
                        source: c.source,
                    });
                    if let Err(err) = w.append(&rec) {
                        tracing::error!(error = %err, "journal: cannot encode a command");
                    }
                    live.view().ledger.apply(&rec);
                    forward.push(c.command);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => commands_open = false,
            }
        }
        let wrote = !batch.is_empty() || !forward.is_empty();
        if wrote {
            match w.write() {
                Ok(()) => halted_for_journal = false,
                Err(err) => {
                    if !halted_for_journal {
                        // Without a journal nothing new may open: halt entries until writes work again.
                        tracing::error!(error = %err, "journal write failed: halting new entries");
                        let _ = link.commands.try_send(Command::Halt);
                        halted_for_journal = true;
                    }
                }
            }
        }
        if !batch.is_empty() {
            live.apply_critical(&batch);
            if let Some(w) = watch.as_mut() {
                let now = now_ms();
                for e in &batch {
                    w.on_critical(e, now);
                }
            }
            batch.clear();
        }
        for c in forward {
            if let Some(w) = watch.as_mut() {
                w.on_command(&c);
            }
            // The engine's command queue is bounded; a full queue means the engine is stuck, and waiting here
            // would stop the draining that lets it move.
            if link.commands.try_send(c).is_err() {
                tracing::warn!(command = ?c, "engine command queue full or closed; command not delivered");
            }
        }
        // 3. Statistics: droppable, never journaled.
        while stats_open {
            match link.stats.try_recv() {
                Ok(e) => {
                    live.apply_stat(&e);
                    if let Some(w) = watch.as_mut() {
                        w.on_stat(&e, now_ms());
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => stats_open = false,
            }
        }
        // 4. fsync when the batch rules say so.
        let now = Instant::now();
        if w.sync_due(now) {
            match w.sync() {
                Ok(()) => wake(),
                Err(err) => {
                    if !halted_for_journal {
                        tracing::error!(error = %err, "journal fsync failed: halting new entries");
                        let _ = link.commands.try_send(Command::Halt);
                        halted_for_journal = true;
                    }
                }
            }
        }
        if !events_open && link.events.is_empty() {
            break;
        }
        if stop.load(Ordering::Acquire) && link.events.is_empty() && commands.is_empty() {
            break;
        }
        if !link.events.is_empty() {
            continue;
        }
        // 5. Nothing queued: wait for the next event or the fsync deadline.
        let timeout = w
            .sync_deadline()
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or(IDLE_WAIT)
            .min(IDLE_WAIT);
        let mut sel = Select::new();
        if events_open {
            sel.recv(&link.events);
        }
        if stats_open {
            sel.recv(&link.stats);
        }
        if commands_open {
            sel.recv(&commands);
        }
        let _ = sel.ready_timeout(timeout);
    }
    match w.sync() {
        Ok(()) => wake(),
        Err(err) => tracing::error!(error = %err, "journal: final fsync failed"),
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::test_support::*;
    use crate::journal::Ledger;
    use crate::journal::{self, JournalReader};
    use crate::state::RunInfo;
    use aegis_shared::event::EngineState;
    use aegis_shared::mode::Side;
    use aegis_shared::TradingMode;

    /// A stand-in event source (the real engine is tested end to end in tests/).
    #[test]
    fn journals_before_view_and_forwards_commands() {
        let dir = temp_dir("pump");
        let (w, _) = journal::open(&dir, Duration::from_millis(5)).unwrap();
        let stats = w.stats();
        let live = Live::new(
            Ledger::default(),
            stats.clone(),
            RunInfo {
                trading_mode: TradingMode::Paper,
                environment: "paper",
                feed: "test".into(),
                database_configured: false,
                session_id: 1,
                symbols: vec![],
            },
        );
        let (etx, erx) = crossbeam_channel::bounded(8);
        let (stx, srx) = crossbeam_channel::bounded(8);
        let (ctx, crx) = crossbeam_channel::bounded(8);
        let pump = spawn(
            w,
            EngineLink {
                events: erx,
                stats: srx,
                commands: ctx,
            },
            live.clone(),
        )
        .unwrap();
        // More events than the queue holds: the pump must keep draining.
        let producer = std::thread::spawn(move || {
            for i in 0..500u64 {
                etx.send(fill(i, Side::Buy, "100", "0.01")).unwrap();
                let _ = stx.try_send(EngineEvent::Heartbeat { ts_ms: i, seq: i });
            }
            etx.send(EngineEvent::State {
                ts_ms: 1,
                state: EngineState::Stopped,
            })
            .unwrap();
        });
        pump.commands
            .send(Issued {
                command: Command::Halt,
                source: "test".into(),
            })
            .unwrap();
        assert_eq!(
            crx.recv_timeout(Duration::from_secs(5)).unwrap(),
            Command::Halt
        );
        producer.join().unwrap();
        let w = pump.join().unwrap();
        assert_eq!(
            stats.durable_offset(),
            std::fs::metadata(w.path()).unwrap().len()
        );
        assert_eq!(live.view().ledger.fills, 500);
        assert!(live.engine_stopped());
        let recs: Vec<_> = JournalReader::open(&dir)
            .unwrap()
            .records_from(0)
            .unwrap()
            .map(|e| e.unwrap().record)
            .collect();
        assert_eq!(recs.len(), 502);
        assert!(recs
            .iter()
            .any(|r| matches!(r, JournalRecord::Command(c) if c.command == Command::Halt)));
        // Replaying gives the same ledger as the live view.
        let (_, rec) = journal::open(&dir, Duration::ZERO).unwrap();
        assert_eq!(rec.ledger.fills, 500);
        assert_eq!(rec.ledger.realized_pnl, live.view().ledger.realized_pnl);
    }
}
