//! The engine: one struct holding the whole hot path, a synchronous step ([`Engine::on_message`]) that tests and
//! benches drive directly, and [`spawn`], which runs it on a pinned, busy-polling thread.
//!
//! Per market message: parse → book → strategies → risk gate → venue → events. Nothing in that path allocates
//! (every buffer is sized in [`Engine::new`]; `engine/tests/zero_alloc.rs` proves it with a counting allocator),
//! blocks, sleeps or logs.
//!
//! The thread loop (see [`spawn`]) repeats: drain commands (`try_recv`), pump the critical-event overflow, poll
//! the feed for up to [`BURST`] due messages, run housekeeping (heartbeat every ~100 ms, stats every ~1 s, the
//! `DATA_DIR/KILL` file every ~250 ms, breaker cooldowns, feed staleness) and `spin_loop()` when idle. The Sim
//! source is paced to its wall-clock rate by the loop itself, without sleeping.
//!
//! Time: orders, fills and positions carry *engine time* — the newest market event time seen (so replays and fast
//! simulations keep consistent timestamps, UTC days and holding times); heartbeats and stats carry wall time.
//!
//! When a finite feed ends (replay end, sim limit) the engine reports `FeedState::Ended` in a stats event and then
//! follows [`EngineParams::on_feed_end`]: [`FeedEnd::KeepRunning`] (default; stays up for commands — halt, kill
//! with flatten, shutdown — with positions as they are) or [`FeedEnd::Stop`] (behaves like `Command::Shutdown`,
//! for backtests).

use crate::book::TopOfBook;
use crate::clock::{wall_ms, LatencyHist, MonoClock};
use crate::feed::parse::{MarketMsg, Parser};
use crate::feed::{Feed, FeedError, FeedPoll, FeedSource};
use crate::position::Positions;
use crate::queues::{self, ControlEnds, EventSink, QueueConfig};
use crate::risk::allocation::{Allocation, AllocationTracker};
use crate::risk::breaker::{BreakerBankSnapshot, BreakerConfig};
use crate::risk::limits::{LimitsConfig, SymbolFilters};
use crate::risk::{Denial, RiskContext, RiskGate};
use crate::strategy::position::{PositionMode, PositionParams};
use crate::strategy::scalp::{Scalp, ScalpParams};
use crate::strategy::swing::{Swing, SwingParams};
use crate::strategy::ultra_fast::{UltraFast, UltraFastParams};
use crate::strategy::{ModeStrategy, PosView, Signal, SymbolInfo};
use crate::venue::paper::MAX_PAPER_ORDERS;
use crate::venue::Venue;
use crate::venue::{ExecReport, FeeRates, OrderRequest};
use aegis_shared::event::{
    AlertKind, EngineState, EngineStats, FeedState, FundingEvent, HaltReason, OrderIntent,
    OrderType, PositionUpdate, DENIAL_REASONS,
};
use aegis_shared::ids::ClientOrderIdGen;
use aegis_shared::num::Rate;
use aegis_shared::{
    Command, EngineEvent, Market, Notional, Price, Qty, Side, StrategyMode, Symbol,
};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::path::PathBuf;
use std::thread::JoinHandle;

/// Most messages handled per loop iteration before commands and housekeeping get a turn.
pub const BURST: usize = 64;
/// Most symbols one engine trades.
pub const MAX_SYMBOLS: usize = crate::risk::limits::MAX_SYMBOLS;

/// A tradable symbol and its exchange filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolSpec {
    /// Symbol.
    pub symbol: Symbol,
    /// `exchangeInfo` filters.
    pub filters: SymbolFilters,
}

impl SymbolSpec {
    /// BTCUSDT USD-M: tick 0.10, step 0.001, min qty 0.001, min notional 100.
    pub fn btcusdt() -> Self {
        Self {
            symbol: crate::feed::sim::SimSymbol::btcusdt().symbol,
            filters: SymbolFilters {
                tick_size: Price::from_units(10_000_000),
                step_size: Qty::from_units(100_000),
                min_qty: Qty::from_units(100_000),
                min_notional: Notional::from_int(100),
            },
        }
    }
    /// BTCUSDT spot: tick 0.01, step 0.00001, min qty 0.00001, min notional (`NOTIONAL`) 5.
    pub fn btcusdt_spot() -> Self {
        Self {
            symbol: crate::feed::sim::SimSymbol::btcusdt().symbol,
            filters: SymbolFilters {
                tick_size: Price::from_units(1_000_000),
                step_size: Qty::from_units(1_000),
                min_qty: Qty::from_units(1_000),
                min_notional: Notional::from_int(5),
            },
        }
    }
    /// ETHUSDT spot: tick 0.01, step 0.0001, min qty 0.0001, min notional (`NOTIONAL`) 5.
    pub fn ethusdt_spot() -> Self {
        Self {
            symbol: crate::feed::sim::SimSymbol::ethusdt().symbol,
            filters: SymbolFilters {
                tick_size: Price::from_units(1_000_000),
                step_size: Qty::from_units(10_000),
                min_qty: Qty::from_units(10_000),
                min_notional: Notional::from_int(5),
            },
        }
    }
    /// ETHUSDT USD-M: tick 0.01, step 0.001, min qty 0.001, min notional 20.
    pub fn ethusdt() -> Self {
        Self {
            symbol: crate::feed::sim::SimSymbol::ethusdt().symbol,
            filters: SymbolFilters {
                tick_size: Price::from_units(1_000_000),
                step_size: Qty::from_units(100_000),
                min_qty: Qty::from_units(100_000),
                min_notional: Notional::from_int(20),
            },
        }
    }
}

/// What the engine does when a finite feed ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FeedEnd {
    /// Keep running (commands still work; no new market data).
    #[default]
    KeepRunning,
    /// Shut down as if `Command::Shutdown` arrived.
    Stop,
}

/// Everything the engine needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineParams {
    /// The market every symbol trades on (default futures). On spot a position is a balance: long only (a sell
    /// beyond what a mode holds is denied as [`Denial::SpotShort`]), no leverage, and what is left below the
    /// step size or the minimums is dust the modes see as flat. The `reduce_only` of a spot exit marks it for the
    /// gate (spot orders carry no `reduceOnly`). Spot runs on the paper venue or, with `live`, on the live
    /// Binance venue (spot WebSocket API, base-asset fees, resting stops cancelled by a spot exit).
    pub market: Market,
    /// Traded symbols and their filters (default BTCUSDT, ETHUSDT).
    pub symbols: Vec<SymbolSpec>,
    /// Paper venue fees (default maker 0.02 %, taker 0.04 %).
    pub fees: FeeRates,
    /// Run the scalp mode (default true).
    pub scalp_enabled: bool,
    /// Scalp parameters (see [`ScalpParams`] defaults).
    pub scalp: ScalpParams,
    /// Run the `ultra_fast_scalp` mode with these parameters (default: off). Entry sizes are capped at
    /// `limits.max_position_usd` and the mode's allocation per position.
    pub ultra_fast: Option<UltraFastParams>,
    /// Run the `swing` mode with these parameters (default: off; capped like `ultra_fast`).
    pub swing: Option<SwingParams>,
    /// Run the `position` mode with these parameters (default: off; capped like `ultra_fast`).
    pub position: Option<PositionParams>,
    /// Per-mode capital allocation, `MODE_ALLOCATION_FILE` (default: the guide's example).
    pub allocation: Allocation,
    /// Account capital the allocation percents apply to, USD (default 10,000).
    pub capital: Notional,
    /// Limits (default here: $500 per position, $100 daily loss, leverage ≤ 5, 10 open orders, 50 orders/10 s).
    pub limits: LimitsConfig,
    /// Circuit breakers (default: the breaker module's defaults).
    pub breakers: BreakerConfig,
    /// Leverage positions use (default 1).
    pub leverage: u32,
    /// Core to pin the engine thread to; `None` = the last core (default).
    pub engine_core: Option<usize>,
    /// Pin at all (default true).
    pub pin: bool,
    /// Client order id session (from the control plane: above every journaled session). Default: wall ms.
    pub session: u64,
    /// Paper trade ids start above this (from the control plane: above every journaled trade id and above
    /// `session × 1000`, so fills of different runs never share a key). Default: 0.
    pub paper_trade_id_base: u64,
    /// Positions restored from the journal (so a restart continues with the same positions and realized PnL).
    pub restored_positions: Vec<PositionUpdate>,
    /// Net realized PnL of the current UTC day so far (from the journal), for the daily loss limit.
    pub restored_day_pnl: Notional,
    /// Breaker state from the journal (e.g. [`BreakerBankSnapshot::from_events`] of the journaled breaker
    /// events), so a restart never resets a trip. Default: empty (every breaker fresh).
    pub restored_breakers: BreakerBankSnapshot,
    /// Symbols new entries may open in (`SYMBOLS`); other configured symbols only manage exits (e.g. a position
    /// the journal holds). Empty (default): every configured symbol.
    pub allowlist: Vec<Symbol>,
    /// Where the `KILL` file is watched (`<data_dir>/KILL`); `None` disables the file check.
    pub data_dir: Option<PathBuf>,
    /// The kill file flattens positions, not only halts (default true).
    pub kill_file_flattens: bool,
    /// Market time of the simulated market's first message, ms; `None` (default) = the wall clock at start. Fix
    /// it for reproducible runs (bar boundaries and UTC days depend on it).
    pub sim_start_ms: Option<u64>,
    /// Behaviour at the end of a finite feed (default [`FeedEnd::KeepRunning`]).
    pub on_feed_end: FeedEnd,
    /// Queue capacities.
    pub queues: QueueConfig,
    /// Heartbeat period, ms (default 100).
    pub heartbeat_ms: u64,
    /// Stats period, ms (default 1000).
    pub stats_ms: u64,
    /// KILL file check period, ms (default 250).
    pub kill_check_ms: u64,
    /// No market message for this long (wall ms) = stale feed: entries halt until data flows (default 10,000).
    /// The same threshold applies per symbol: a symbol whose own data is older (or that never had any) takes no
    /// new entries, even while other symbols flow.
    pub feed_stale_ms: u64,
    /// Feed silence (ms) after which the kill switch fires automatically: cancel all open orders (0 = never).
    /// Must exceed `feed_stale_ms`; default 60 s.
    pub feed_kill_ms: u64,
    /// Trade on Binance through these queues (the live venue, `venue::binance`); `None` (default) = paper.
    pub live: Option<crate::venue::binance::LiveLink>,
    /// Live venue: how long shutdown waits for the exchange to confirm cancellations, ms (default 2000).
    pub live_settle_ms: u64,
}

impl EngineParams {
    /// Re-expresses every amount the configuration gives in USD — capital, the position and daily-loss limits,
    /// the hourly-loss breaker, each mode's cap per position and each mode's entry size — in units of a quote
    /// asset worth `usd_per_quote` USD, for a run whose symbols are all quoted in that asset (XRPETH: ETH).
    /// Without it a "$500" position would be 500 ETH. Rounded toward zero, so no converted limit allows more than
    /// the USD one. Amounts the engine itself produced (restored positions, the day's PnL) are already in the
    /// run's units and stay. `None` for a non-positive price.
    pub fn usd_in_quote_units(mut self, usd_per_quote: Price) -> Option<Self> {
        let c = |n: Notional| n.usd_to_quote(usd_per_quote);
        self.capital = c(self.capital)?;
        self.limits.max_position_usd = c(self.limits.max_position_usd)?;
        self.limits.max_daily_loss_usd = c(self.limits.max_daily_loss_usd)?;
        self.breakers.max_loss_per_hour = c(self.breakers.max_loss_per_hour)?;
        for m in &mut self.allocation.modes {
            m.max_usd_per_position = c(m.max_usd_per_position)?;
        }
        self.scalp.notional = c(self.scalp.notional)?;
        if let Some(p) = &mut self.ultra_fast {
            p.notional = c(p.notional)?;
        }
        if let Some(p) = &mut self.swing {
            p.notional = c(p.notional)?;
        }
        if let Some(p) = &mut self.position {
            p.notional = c(p.notional)?;
        }
        Some(self)
    }
}

impl Default for EngineParams {
    fn default() -> Self {
        Self {
            market: Market::Futures,
            symbols: vec![SymbolSpec::btcusdt(), SymbolSpec::ethusdt()],
            fees: FeeRates::default(),
            scalp_enabled: true,
            scalp: ScalpParams::default(),
            ultra_fast: None,
            swing: None,
            position: None,
            allocation: Allocation::default(),
            capital: Notional::from_int(10_000),
            limits: LimitsConfig {
                max_position_usd: Notional::from_int(500),
                max_daily_loss_usd: Notional::from_int(100),
                ..LimitsConfig::default()
            },
            breakers: BreakerConfig::default(),
            leverage: 1,
            engine_core: None,
            pin: true,
            session: wall_ms(),
            paper_trade_id_base: 0,
            restored_positions: Vec::new(),
            restored_day_pnl: Notional::ZERO,
            restored_breakers: BreakerBankSnapshot::default(),
            allowlist: Vec::new(),
            data_dir: None,
            kill_file_flattens: true,
            sim_start_ms: None,
            on_feed_end: FeedEnd::KeepRunning,
            queues: QueueConfig::default(),
            heartbeat_ms: 100,
            stats_ms: 1000,
            kill_check_ms: 250,
            feed_stale_ms: 10_000,
            feed_kill_ms: 60_000,
            live: None,
            live_settle_ms: 2000,
        }
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No symbols configured.
    #[error("no symbols configured; set at least one symbol to trade")]
    NoSymbols,
    /// Too many symbols.
    #[error("too many symbols: at most {MAX_SYMBOLS}")]
    TooManySymbols,
    /// The same symbol twice.
    #[error("symbol {0} is configured twice")]
    DuplicateSymbol(Symbol),
    /// A symbol's filters are not usable.
    #[error("symbol {0}: tick size and step size must be positive")]
    BadFilters(Symbol),
    /// The journal has a position in a symbol the engine is not configured for.
    #[error("restored position in {0}, which is not a configured symbol; add it to the symbols to manage it")]
    UnknownRestoredSymbol(Symbol),
    /// The journal has a position of the other market (a spot balance in a futures run, or the reverse).
    #[error("restored {0} position in {1}, but this run trades {2}; point DATA_DIR at that market's own data")]
    OtherMarket(Market, Symbol, Market),
    /// A spot position held short: spot cannot hold one.
    #[error("restored spot position in {0} is short; spot holds no shorts, so the journal is not of a spot run")]
    SpotShort(Symbol),
    /// The feed could not be opened.
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// The OS refused to start the thread.
    #[error("cannot start the engine thread: {0}")]
    Spawn(#[from] std::io::Error),
}

/// Result of pinning the engine thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinOutcome {
    /// Pinned to this core.
    Pinned {
        /// Core id.
        core: usize,
    },
    /// Pinning to this core failed (the control plane logs a warning; the engine runs unpinned).
    Failed {
        /// Requested core id.
        core: usize,
    },
    /// The OS reports no cores (pinning unsupported).
    Unsupported,
    /// Pinning disabled by [`EngineParams::pin`].
    Disabled,
}

/// Counters since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Market messages handled.
    pub messages: u64,
    /// Messages that did not parse.
    pub parse_errors: u64,
    /// Messages for symbols the engine does not trade.
    pub unknown_symbol: u64,
    /// Book updates ignored as stale or crossed.
    pub stale_book: u64,
    /// Aggregate trades ignored because their id was not above the last one seen for the symbol (both
    /// connections deliver during a stream rollover; a trade counted twice would skew volume signals).
    pub duplicate_trades: u64,
    /// Depth messages (the L2 book is wired in with the live feed).
    pub unused: u64,
    /// Orders sent.
    pub orders: u64,
    /// Fills.
    pub fills: u64,
    /// Gate denials by [`Denial::code`].
    pub denials: [u64; DENIAL_REASONS],
}

/// Final numbers returned by the engine thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineReport {
    /// Counters.
    pub counters: Counters,
    /// Stats events dropped.
    pub dropped_stats: u64,
    /// Critical events that could not be delivered (control plane gone).
    pub undeliverable: u64,
    /// Largest critical overflow seen.
    pub max_overflow: usize,
}

/// The control plane's handle on a running engine.
#[derive(Debug)]
pub struct EngineHandle {
    /// Critical events (never dropped): journal these first.
    pub events: Receiver<EngineEvent>,
    /// Droppable statistics and heartbeats.
    pub stats: Receiver<EngineEvent>,
    /// Commands to the engine.
    pub commands: Sender<Command>,
    /// What happened when pinning the thread.
    pub pinned: PinOutcome,
    /// The engine thread; returns its final report.
    pub join: JoinHandle<EngineReport>,
}

/// Starts the engine on its own thread (`aegis-engine`). The feed is opened (a replay file read) before the
/// thread starts, so a bad source is reported here.
pub fn spawn(params: EngineParams, feed: FeedSource) -> Result<EngineHandle, EngineError> {
    let (ends, ctl) = queues::channels(params.queues);
    let feed = Feed::open(&feed, params.sim_start_ms.unwrap_or_else(wall_ms))?;
    let core = params.engine_core;
    let pin = params.pin;
    let engine = Engine::new(params, ends.sink)?;
    let (pin_tx, pin_rx) = crossbeam_channel::bounded(1);
    let commands = ends.commands;
    let join = std::thread::Builder::new()
        .name("aegis-engine".into())
        .spawn(move || {
            let outcome = if pin {
                pin_current(core)
            } else {
                PinOutcome::Disabled
            };
            let _ = pin_tx.send(outcome);
            run(engine, feed, commands)
        })?;
    let pinned = pin_rx.recv().unwrap_or(PinOutcome::Unsupported);
    Ok(EngineHandle {
        events: ctl.events,
        stats: ctl.stats,
        commands: ctl.commands,
        pinned,
        join,
    })
}

fn pin_current(core: Option<usize>) -> PinOutcome {
    let Some(ids) = core_affinity::get_core_ids().filter(|v| !v.is_empty()) else {
        return PinOutcome::Unsupported;
    };
    let want = core.unwrap_or_else(|| ids.iter().map(|c| c.id).max().unwrap_or(0));
    match ids.iter().find(|c| c.id == want) {
        Some(&c) if core_affinity::set_for_current(c) => PinOutcome::Pinned { core: want },
        _ => PinOutcome::Failed { core: want },
    }
}

/// The busy-poll loop (see the module docs).
pub fn run(mut engine: Engine, mut feed: Feed, commands: Receiver<Command>) -> EngineReport {
    let clock = MonoClock::new();
    loop {
        loop {
            match commands.try_recv() {
                Ok(cmd) => {
                    if engine.on_command(cmd) {
                        return engine.shutdown();
                    }
                }
                Err(TryRecvError::Empty) => break,
                // The control plane is gone: nobody can journal or command us any more.
                Err(TryRecvError::Disconnected) => return engine.shutdown(),
            }
        }
        let mut busy = engine.poll_venue() > 0;
        let elapsed = clock.now_ns();
        for _ in 0..BURST {
            match feed.poll(elapsed) {
                FeedPoll::Msg(b) => {
                    engine.on_message(b);
                    busy = true;
                }
                FeedPoll::Idle => break,
                FeedPoll::Ended => {
                    if engine.on_feed_end() == FeedEnd::Stop {
                        return engine.shutdown();
                    }
                    break;
                }
            }
        }
        engine.housekeeping();
        if !busy {
            std::hint::spin_loop();
        }
    }
}

/// The whole hot path. See the module docs.
#[derive(Debug)]
pub struct Engine {
    params: EngineParams,
    specs: Vec<SymbolSpec>,
    parser: Parser,
    tops: Vec<TopOfBook>,
    /// Highest aggregate trade id seen per symbol (0: none yet).
    last_agg_id: Vec<u64>,
    strategies: Vec<ModeStrategy>,
    gate: RiskGate,
    venue: Venue,
    positions: Positions,
    pending: Vec<bool>,
    exec_buf: Vec<ExecReport>,
    ids: ClientOrderIdGen,
    sink: EventSink,
    counters: Counters,
    hist: LatencyHist,
    clock: MonoClock,
    now_ms: u64,
    market_time: bool,
    last_msg_ns: Option<u64>,
    /// Last message per symbol index (monotonic ns; `None`: never). A fixed array so the hot path never allocates.
    sym_last_ns: [Option<u64>; MAX_SYMBOLS],
    feed_state: FeedState,
    flatten_pending: bool,
    kill_path: Option<PathBuf>,
    kill_file_seen: bool,
    /// The stale-feed hard limit already fired the kill switch in this outage.
    stale_killed: bool,
    next_hb_ns: u64,
    next_stats_ns: u64,
    next_kill_ns: u64,
    hb_seq: u64,
}

const MODES: usize = StrategyMode::ALL.len();

impl Engine {
    /// Builds the engine around an event sink (from [`queues::channels`]). Emits `State(Running)`.
    pub fn new(params: EngineParams, sink: EventSink) -> Result<Self, EngineError> {
        if params.symbols.is_empty() {
            return Err(EngineError::NoSymbols);
        }
        if params.symbols.len() > MAX_SYMBOLS {
            return Err(EngineError::TooManySymbols);
        }
        for u in &params.restored_positions {
            if u.market != params.market {
                return Err(EngineError::OtherMarket(u.market, u.symbol, params.market));
            }
            if params.market.long_only() && u.qty.units() < 0 {
                return Err(EngineError::SpotShort(u.symbol));
            }
        }
        let mut gate = RiskGate::new(params.limits, params.breakers);
        for (i, s) in params.symbols.iter().enumerate() {
            if params.symbols[..i].iter().any(|o| o.symbol == s.symbol) {
                return Err(EngineError::DuplicateSymbol(s.symbol));
            }
            if s.filters.tick_size.units() <= 0 || s.filters.step_size.units() <= 0 {
                return Err(EngineError::BadFilters(s.symbol));
            }
            gate.limits
                .set_filters(s.symbol, s.filters)
                .map_err(|_| EngineError::TooManySymbols)?;
        }
        let specs = params.symbols.clone();
        let n = specs.len();
        let mut positions = Positions::new(n);
        for u in &params.restored_positions {
            let sym = specs
                .iter()
                .position(|s| s.symbol == u.symbol)
                .ok_or(EngineError::UnknownRestoredSymbol(u.symbol))?;
            *positions.get_mut(sym, u.mode) = crate::position::Position::restore(u);
        }
        let now = wall_ms();
        gate.limits.restore_day(now, params.restored_day_pnl);
        gate.breakers.restore(&params.restored_breakers);
        gate.limits
            .set_allowlist(&params.allowlist)
            .map_err(|_| EngineError::TooManySymbols)?;
        let infos: Vec<SymbolInfo> = specs
            .iter()
            .map(|s| SymbolInfo {
                step: s.filters.step_size,
                tick: s.filters.tick_size,
            })
            .collect();
        let mut strategies = Vec::new();
        if params.scalp_enabled {
            strategies.push(ModeStrategy::Scalp(Scalp::new(params.scalp, &infos)));
        }
        gate.allocation = AllocationTracker::new(params.allocation, params.capital);
        // An entry never asks for more than one position may hold.
        let cap = |m: StrategyMode, n: Notional| {
            n.min(params.limits.max_position_usd)
                .min(params.allocation.mode(m).max_usd_per_position)
        };
        if let Some(mut p) = params.ultra_fast {
            p.notional = cap(StrategyMode::UltraFastScalp, p.notional);
            strategies.push(ModeStrategy::UltraFastScalp(UltraFast::new(p, &infos)));
        }
        if let Some(mut p) = params.swing {
            p.notional = cap(StrategyMode::Swing, p.notional);
            strategies.push(ModeStrategy::Swing(Swing::new(p, &infos)));
        }
        if let Some(mut p) = params.position {
            p.notional = cap(StrategyMode::Position, p.notional);
            strategies.push(ModeStrategy::Position(PositionMode::new(p, &infos)));
        }
        let clock = MonoClock::new();
        let ms = 1_000_000u64;
        let mut e = Self {
            kill_path: params.data_dir.as_ref().map(|d| d.join("KILL")),
            ids: ClientOrderIdGen::new(params.session),
            venue: Venue::new(
                params.live.clone(),
                specs.iter().map(|s| s.symbol).collect(),
                params.fees,
                params.paper_trade_id_base,
                params.market,
            ),
            next_hb_ns: params.heartbeat_ms * ms,
            next_stats_ns: params.stats_ms * ms,
            next_kill_ns: 0,
            params,
            specs,
            parser: Parser::new(),
            tops: vec![TopOfBook::default(); n],
            last_agg_id: vec![0; n],
            strategies,
            gate,
            positions,
            pending: vec![false; n * MODES],
            exec_buf: Vec::with_capacity(MAX_PAPER_ORDERS + 8),
            sink,
            counters: Counters::default(),
            hist: LatencyHist::new(),
            clock,
            now_ms: now,
            market_time: false,
            last_msg_ns: None,
            sym_last_ns: [None; MAX_SYMBOLS],
            feed_state: FeedState::Connecting,
            flatten_pending: false,
            kill_file_seen: false,
            stale_killed: false,
            hb_seq: 0,
        };
        e.sink.emit_critical(EngineEvent::State {
            ts_ms: now,
            state: EngineState::Running,
        });
        Ok(e)
    }

    /// Engine with fresh queues (tests, benches): returns the control plane's ends too.
    pub fn with_channels(params: EngineParams) -> Result<(Self, ControlEnds), EngineError> {
        let (ends, ctl) = queues::channels(params.queues);
        // The command receiver is only polled by `run`; callers of the synchronous API use `on_command`.
        drop(ends.commands);
        Ok((Self::new(params, ends.sink)?, ctl))
    }

    /// Counters since start.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// Positions.
    pub fn positions(&self) -> &Positions {
        &self.positions
    }
    /// The risk gate.
    pub fn gate(&self) -> &RiskGate {
        &self.gate
    }
    /// Mutable risk gate (tests, control of limits in-process).
    pub fn gate_mut(&mut self) -> &mut RiskGate {
        &mut self.gate
    }
    /// Top of book of symbol index `sym`.
    pub fn top(&self, sym: usize) -> Option<&TopOfBook> {
        self.tops.get(sym)
    }
    /// Index of a symbol.
    #[inline]
    pub fn sym_index(&self, s: Symbol) -> Option<usize> {
        self.specs.iter().position(|x| x.symbol == s)
    }
    /// Engine time (newest market event time), ms.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }
    /// The latency histogram of the current stats interval.
    pub fn latency(&self) -> &LatencyHist {
        &self.hist
    }
    /// The event sink (backpressure state, counters).
    pub fn sink(&self) -> &EventSink {
        &self.sink
    }
    /// The running strategies.
    pub fn strategies(&self) -> &[ModeStrategy] {
        &self.strategies
    }
    /// Feed state.
    pub fn feed_state(&self) -> FeedState {
        self.feed_state
    }

    /// One market message through the whole hot path: parse → book → strategies → gate → venue → events.
    /// Records tick-to-decision latency. Never allocates, never blocks.
    #[inline]
    pub fn on_message(&mut self, bytes: &[u8]) {
        let t0 = self.clock.now_ns();
        self.counters.messages += 1;
        self.last_msg_ns = Some(t0);
        if self.feed_state != FeedState::Live {
            self.feed_live();
        }
        let msg = match self.parser.parse(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.counters.parse_errors += 1;
                return;
            }
        };
        let Some(sym) = self.sym_index(msg.symbol()) else {
            self.counters.unknown_symbol += 1;
            return;
        };
        self.sym_last_ns[sym] = Some(t0);
        let et = msg.event_time();
        // Engine time follows the market; the first event time replaces the wall-clock start value even when it
        // is older (replays of old recordings).
        if et > self.now_ms || (!self.market_time && et > 0) {
            self.now_ms = et;
            self.market_time = true;
        }
        self.sync_backpressure();
        match msg {
            MarketMsg::BookTicker(t) => {
                if !self.tops[sym].update(&t) {
                    self.counters.stale_book += 1;
                } else {
                    self.on_book(sym);
                }
            }
            MarketMsg::AggTrade(t) => {
                // Binance's aggregate trade ids rise per symbol; an id at or below the last one is a repeat.
                if t.agg_id != 0 && t.agg_id <= self.last_agg_id[sym] {
                    self.counters.duplicate_trades += 1;
                    return;
                }
                self.last_agg_id[sym] = t.agg_id;
                let top = self.tops[sym];
                for i in 0..self.strategies.len() {
                    let mode = self.strategies[i].mode();
                    let pos = self.pos_view(sym, mode);
                    if let Some(sig) = self.strategies[i].on_trade(sym, &t, &top, &pos) {
                        let _ = self.place(sym, mode, sig);
                    }
                }
            }
            MarketMsg::Kline(k) => {
                let top = self.tops[sym];
                for i in 0..self.strategies.len() {
                    let mode = self.strategies[i].mode();
                    let pos = self.pos_view(sym, mode);
                    if let Some(sig) = self.strategies[i].on_kline(sym, &k, &top, &pos) {
                        let _ = self.place(sym, mode, sig);
                    }
                }
            }
            MarketMsg::Depth(_) => self.counters.unused += 1,
        }
        self.hist.record(self.clock.now_ns().saturating_sub(t0));
    }

    fn on_book(&mut self, sym: usize) {
        let top = self.tops[sym];
        let now = self.now_ms;
        if self.venue.open_orders() > 0 {
            let buf = &mut self.exec_buf;
            self.venue.on_book(
                sym,
                &top,
                now,
                &mut self.positions,
                &mut self.sink,
                &mut |r| buf.push(*r),
            );
            self.process_execs();
        }
        if self.flatten_pending {
            self.flatten_symbol(sym);
        }
        for i in 0..self.strategies.len() {
            let mode = self.strategies[i].mode();
            let pos = self.pos_view(sym, mode);
            if let Some(sig) = self.strategies[i].on_book(sym, &top, now, &pos) {
                let _ = self.place(sym, mode, sig);
            }
        }
    }

    #[inline]
    fn pos_view(&self, sym: usize, mode: StrategyMode) -> PosView {
        let p = self.positions.get(sym, mode);
        PosView {
            qty: self.tradable(sym, p.qty()),
            entry: p.entry_price(),
            opened_ms: p.opened_ms(),
            pending: self.pending[sym * MODES + mode.index()],
        }
    }

    /// The part of a held quantity that can be traded. On futures: all of it. On spot the account holds a balance:
    /// what a base-asset fee left below the step size, or a remainder under the symbol's minimum quantity or
    /// minimum notional (at the bid), cannot be sold. That dust stays in the position's books (its cost counts,
    /// and a later buy adds to it) but the modes, the allocation and the kill switch's flatten see it as flat, so
    /// nothing tries forever to sell what the exchange would refuse.
    #[inline]
    pub fn tradable(&self, sym: usize, qty: Qty) -> Qty {
        if !self.params.market.long_only() || qty.units() <= 0 {
            return qty;
        }
        let f = &self.specs[sym].filters;
        let q = qty.floor_to(f.step_size);
        let bid = self.tops[sym].bid;
        let below_notional = bid.units() > 0 && bid.notional(q) < f.min_notional;
        if q.units() < f.min_qty.units() || below_notional {
            Qty::ZERO
        } else {
            q
        }
    }

    /// Sends a signal through the gate to the venue as a market order. Returns the denial if the gate refused.
    pub fn place(&mut self, sym: usize, mode: StrategyMode, sig: Signal) -> Result<(), Denial> {
        let top = self.tops[sym];
        let req = OrderRequest {
            symbol: self.specs[sym].symbol,
            sym,
            mode,
            intent: sig.intent,
            side: sig.side,
            order_type: OrderType::Market,
            tif: None,
            price: Price::ZERO,
            ref_price: match sig.side {
                Side::Buy => top.ask,
                Side::Sell => top.bid,
            },
            qty: sig.qty,
            reduce_only: sig.reduce_only,
        };
        // One symbol's stream can stop while the others keep the feed as a whole live: its book is then frozen,
        // so entries priced off it are refused. A global halt is left to the gate so its own reason is reported.
        if !sig.reduce_only && self.gate.halt_reason().is_none() && self.symbol_stale(sym) {
            let d = Denial::Halted;
            self.counters.denials[d.code() as usize] += 1;
            return Err(d);
        }
        if !sig.reduce_only {
            // The allocation's usage is read off the position table (≤ MAX_SYMBOLS entries, no allocation).
            let (mut open, mut used) = (0u32, Notional::ZERO);
            for s in 0..self.specs.len() {
                let p = self.positions.get(s, mode);
                if !self.tradable(s, p.qty()).is_zero() {
                    open += 1;
                    used = used.saturating_add(p.entry_price().notional(p.qty().abs()));
                }
            }
            self.gate.allocation.sync(mode, open, used);
        }
        let long_only = self.params.market.long_only();
        let ctx = RiskContext {
            now_ms: self.now_ms,
            // On spot what may be sold is what the mode holds and the exchange would take (not its dust).
            position_qty: if long_only {
                self.tradable(sym, self.positions.get(sym, mode).qty())
            } else {
                self.positions.get(sym, mode).qty()
            },
            symbol_net_qty: self.positions.net_qty(sym),
            // Spot has no leverage: a position is paid for in full.
            leverage: if long_only { 1 } else { self.params.leverage },
            long_only,
        };
        if let Err(d) = self.gate.check(&req, &ctx) {
            self.counters.denials[d.code() as usize] += 1;
            return Err(d);
        }
        let cid = self.ids.next_id();
        self.gate.limits.record_sent(self.now_ms);
        self.counters.orders += 1;
        self.pending[sym * MODES + mode.index()] = true;
        let buf = &mut self.exec_buf;
        self.venue.submit(
            &req,
            cid,
            &top,
            self.now_ms,
            &mut self.positions,
            &mut self.sink,
            &mut |r| buf.push(*r),
        );
        self.process_execs();
        Ok(())
    }

    /// True when symbol `sym` has had no message for longer than `feed_stale_ms`, or never had one.
    #[inline]
    fn symbol_stale(&self, sym: usize) -> bool {
        let limit = self.params.feed_stale_ms.saturating_mul(1_000_000);
        self.sym_last_ns[sym].is_none_or(|t| self.clock.now_ns().saturating_sub(t) > limit)
    }

    fn process_execs(&mut self) {
        for i in 0..self.exec_buf.len() {
            let mut r = self.exec_buf[i];
            // On spot a trade that sold down to dust is closed (the position never reaches zero: the buy's base
            // fee left a remainder the exchange will not take), so the breakers judge it like any other.
            if self.params.market.long_only() && r.qty.units() > 0 && r.closed_trade.is_none() {
                let q = self.positions.get(r.sym, r.mode).qty();
                if q.units() > 0 && self.tradable(r.sym, q).is_zero() {
                    r.closed_trade = Some(self.positions.get_mut(r.sym, r.mode).close_dust_trade());
                }
            }
            let sink = &mut self.sink;
            // Funding settlements report a PnL without a quantity: they count for the daily loss too.
            if r.qty.units() > 0 || !r.net.is_zero() {
                self.counters.fills += u64::from(r.qty.units() > 0);
                self.gate.on_fill_pnl(r.ts_ms, r.net, &mut |e| {
                    sink.emit_critical(EngineEvent::Breaker(e))
                });
                if let Some(net) = r.closed_trade {
                    self.gate
                        .breakers
                        .record_trade(r.ts_ms, r.mode, net, &mut |e| {
                            sink.emit_critical(EngineEvent::Breaker(e))
                        });
                }
            }
            if r.order_final {
                self.gate.limits.record_done();
                self.pending[r.sym * MODES + r.mode.index()] = false;
            }
        }
        self.exec_buf.clear();
    }

    fn emit_state(&mut self) {
        let state = match self.gate.halt_reason() {
            Some(reason) => EngineState::Halted { reason },
            None => EngineState::Running,
        };
        self.sink.emit_critical(EngineEvent::State {
            ts_ms: self.now_ms,
            state,
        });
    }

    fn set_halt(&mut self, r: HaltReason) -> bool {
        let changed = self.gate.halt(r);
        if changed {
            self.emit_state();
        }
        changed
    }

    fn clear_halt(&mut self, r: HaltReason) {
        if self.gate.clear(r) {
            self.emit_state();
        }
    }

    #[inline]
    fn sync_backpressure(&mut self) {
        let bp = self.sink.backpressure();
        if bp != self.gate.is_halted_for(HaltReason::Backpressure) {
            if bp {
                self.set_halt(HaltReason::Backpressure);
            } else {
                self.clear_halt(HaltReason::Backpressure);
            }
        }
    }

    #[cold]
    fn feed_live(&mut self) {
        if self.feed_state == FeedState::Stale {
            self.clear_halt(HaltReason::FeedStale);
        }
        self.feed_state = FeedState::Live;
        self.stale_killed = false;
    }

    /// Kill switch: halt entries, cancel every open order, and with `flatten` close every position with
    /// reduce-only market orders through the gate (symbols without a book are closed on their next book update).
    pub fn kill(&mut self, flatten: bool) {
        // Idempotent in effect (one halt), but every trigger is an event (issue 5.6): a second trigger while
        // already killed is still journaled. Each trigger fires once per occurrence (a command, the KILL file
        // appearing, the feed's hard limit, a rejected key, a persistent mismatch), so this never repeats by itself.
        self.set_halt(HaltReason::KillSwitch);
        self.sink.emit_critical(EngineEvent::Alert {
            ts_ms: self.now_ms,
            kind: AlertKind::KillSwitch,
        });
        let buf = &mut self.exec_buf;
        self.venue
            .cancel_all(self.now_ms, &mut self.sink, &mut |r| buf.push(*r));
        self.process_execs();
        if flatten {
            self.flatten_pending = true;
            for sym in 0..self.specs.len() {
                self.flatten_symbol(sym);
            }
        }
    }

    fn flatten_symbol(&mut self, sym: usize) {
        if !self.tops[sym].is_valid() {
            return;
        }
        for mode in StrategyMode::ALL {
            let p = self.pos_view(sym, mode);
            if p.qty.is_zero() || p.pending {
                continue;
            }
            let side = if p.qty.units() > 0 {
                Side::Sell
            } else {
                Side::Buy
            };
            let _ = self.place(
                sym,
                mode,
                Signal {
                    side,
                    intent: OrderIntent::Flatten,
                    qty: p.qty.abs(),
                    reduce_only: true,
                },
            );
        }
        self.flatten_pending = (0..self.specs.len()).any(|s| {
            StrategyMode::ALL
                .iter()
                .any(|m| !self.tradable(s, self.positions.get(s, *m).qty()).is_zero())
        });
    }

    /// Applies a command. Returns true when the engine must shut down.
    pub fn on_command(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Halt => {
                self.set_halt(HaltReason::Operator);
            }
            Command::Resume => self.clear_halt(HaltReason::Operator),
            Command::Kill { flatten } => self.kill(flatten),
            Command::ResetBreaker { scope } => {
                let sink = &mut self.sink;
                self.gate.breakers.reset(scope, self.now_ms, &mut |e| {
                    sink.emit_critical(EngineEvent::Breaker(e))
                });
            }
            Command::SetLimits {
                max_position_usd,
                max_daily_loss_usd,
            } => self
                .gate
                .limits
                .set_limits(max_position_usd, max_daily_loss_usd),
            Command::PaperFunding {
                symbol,
                rate,
                mark,
                ts_ms,
            } => self.paper_funding(symbol, rate, mark, ts_ms),
            Command::Shutdown => return true,
        }
        false
    }

    /// Settles funding on the paper positions of `symbol` (see [`Command::PaperFunding`]): each mode's position
    /// pays its own `qty × mark × rate`, booked like the live venue books an exchange settlement (a funding
    /// event per mode, the position, the daily loss and the breakers). The settlement time is the event's
    /// `tran_id`, so the journal books a repeated settlement once.
    fn paper_funding(&mut self, symbol: Symbol, rate: Rate, mark: Price, ts_ms: u64) {
        if matches!(self.venue, Venue::Live(_)) || mark.units() <= 0 {
            return;
        }
        let Some(sym) = self.sym_index(symbol) else {
            return;
        };
        let asset = symbol
            .quote_asset()
            .and_then(|q| Symbol::new(q).ok())
            .unwrap_or(symbol);
        let parts = StrategyMode::ALL.map(|m| {
            let q = self.positions.get(sym, m).qty();
            mark.notional(q).mul_rate(rate).neg()
        });
        let total = parts.iter().fold(Notional::ZERO, |a, p| a + *p);
        for (mode, amount) in StrategyMode::ALL.into_iter().zip(parts) {
            if amount.is_zero() {
                continue;
            }
            let pos = self.positions.get_mut(sym, mode);
            pos.apply_funding(amount);
            let update = pos.update(ts_ms, symbol, mode, self.params.market);
            self.sink.emit_critical(EngineEvent::Funding(FundingEvent {
                ts_ms,
                symbol,
                mode,
                tran_id: ts_ms,
                asset,
                amount,
                total,
                quote: amount,
            }));
            self.sink.emit_critical(EngineEvent::Position(update));
            self.exec_buf.push(ExecReport {
                sym,
                mode,
                ts_ms,
                qty: Qty::ZERO,
                net: amount,
                closed_trade: None,
                order_final: false,
            });
        }
        self.process_execs();
    }

    /// A finite feed ended: reports it once and returns what to do (see the module docs).
    pub fn on_feed_end(&mut self) -> FeedEnd {
        if self.feed_state != FeedState::Ended {
            self.feed_state = FeedState::Ended;
            let s = self.stats_event();
            self.sink.emit_stats(s);
        }
        self.params.on_feed_end
    }

    fn stats_event(&mut self) -> EngineEvent {
        let now_ns = self.clock.now_ns();
        EngineEvent::Stats(EngineStats {
            ts_ms: wall_ms(),
            messages: self.counters.messages,
            parse_errors: self.counters.parse_errors,
            orders: self.counters.orders,
            fills: self.counters.fills,
            denials: self.counters.denials,
            dropped_stats: self.sink.dropped_stats(),
            feed_age_ms: self
                .last_msg_ns
                .map_or(0, |t| now_ns.saturating_sub(t) / 1_000_000),
            feed: self.feed_state,
            latency_ns: self.hist.quantiles(),
        })
    }

    /// Periodic work (called by the loop every iteration; each item checks its own deadline): critical-queue
    /// pump and backpressure, heartbeat, stats, breaker cooldowns, feed staleness, the KILL file.
    pub fn housekeeping(&mut self) {
        self.sink.pump();
        self.sync_backpressure();
        let now = self.clock.now_ns();
        let ms = 1_000_000u64;
        if now >= self.next_hb_ns {
            self.next_hb_ns = now + self.params.heartbeat_ms.max(1) * ms;
            self.hb_seq += 1;
            self.sink.emit_stats(EngineEvent::Heartbeat {
                ts_ms: wall_ms(),
                seq: self.hb_seq,
            });
            let sink = &mut self.sink;
            let mut emit = |e| sink.emit_critical(EngineEvent::Breaker(e));
            self.gate.breakers.poll(self.now_ms, &mut emit);
            self.gate.limits.poll(self.now_ms, &mut emit);
            if self.feed_state == FeedState::Live
                && self
                    .last_msg_ns
                    .is_some_and(|t| now.saturating_sub(t) > self.params.feed_stale_ms * ms)
            {
                self.feed_state = FeedState::Stale;
                self.set_halt(HaltReason::FeedStale);
                self.sink.emit_critical(EngineEvent::Alert {
                    ts_ms: self.now_ms,
                    kind: AlertKind::FeedStale,
                });
            }
            // Stale beyond the hard limit: resting orders priced off a market we can no longer see are a
            // risk, so the kill switch fires (cancel all; positions keep their exits). Once per outage.
            if self.feed_state == FeedState::Stale
                && self.params.feed_kill_ms > 0
                && !self.stale_killed
                && self
                    .last_msg_ns
                    .is_some_and(|t| now.saturating_sub(t) > self.params.feed_kill_ms * ms)
            {
                self.stale_killed = true;
                self.kill(false);
            }
        }
        if now >= self.next_stats_ns {
            self.next_stats_ns = now + self.params.stats_ms.max(1) * ms;
            let s = self.stats_event();
            self.sink.emit_stats(s);
            self.hist.reset();
        }
        if now >= self.next_kill_ns {
            self.next_kill_ns = now + self.params.kill_check_ms.max(1) * ms;
            if !self.kill_file_seen && self.kill_path.as_ref().is_some_and(|p| p.exists()) {
                self.kill_file_seen = true;
                self.kill(self.params.kill_file_flattens);
            }
        }
    }

    /// Live venue: drains exchange news (acks, fills, cancels, reconciliation, halts) into positions, events and
    /// the gate. Returns how many messages were handled (0 on paper).
    pub fn poll_venue(&mut self) -> usize {
        let buf = &mut self.exec_buf;
        let n = self
            .venue
            .poll(BURST, &mut self.positions, &mut self.sink, &mut |r| {
                buf.push(*r)
            });
        if n == 0 {
            return 0;
        }
        self.process_execs();
        while let Some(s) = self.venue.next_signal() {
            match s {
                // A rejected key is an automatic kill-switch trigger (issue 5): halt and ask to cancel what is
                // open. The gateway is read-only by now and sends nothing (Binance refuses every request signed
                // with that key); the key_invalid alert tells the operator to cancel on Binance.
                crate::venue::binance::VenueSignal::Halt(HaltReason::KeyRejected) => {
                    self.set_halt(HaltReason::KeyRejected);
                    self.kill(false);
                }
                crate::venue::binance::VenueSignal::Halt(r) => {
                    self.set_halt(r);
                }
                crate::venue::binance::VenueSignal::Clear(r) => self.clear_halt(r),
                crate::venue::binance::VenueSignal::Alert(kind) => {
                    self.sink.emit_critical(EngineEvent::Alert {
                        ts_ms: self.now_ms,
                        kind,
                    });
                    // The control plane raises this only after reconciliation rounds failed to agree: a
                    // persistent mismatch is an automatic kill-switch trigger (cancel everything open).
                    if kind == AlertKind::ReconcileMismatch {
                        self.kill(false);
                    }
                }
            }
        }
        n
    }

    /// Stops: halts entries, cancels open orders, sends final stats, delivers every pending critical event,
    /// sends `State(Stopped)` and returns the final report.
    pub fn shutdown(&mut self) -> EngineReport {
        self.set_halt(HaltReason::Shutdown);
        let buf = &mut self.exec_buf;
        self.venue
            .cancel_all(self.now_ms, &mut self.sink, &mut |r| buf.push(*r));
        self.process_execs();
        if matches!(self.venue, Venue::Live(_)) {
            // The exchange confirms cancellations (and in-flight fills) asynchronously: wait for them, bounded,
            // so the journal ends with what the exchange holds. The thread is ending; waiting here is fine.
            let until = std::time::Instant::now()
                + std::time::Duration::from_millis(self.params.live_settle_ms);
            while self.venue.open_orders() > 0 && std::time::Instant::now() < until {
                if self.poll_venue() == 0 {
                    self.sink.pump();
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        }
        let s = self.stats_event();
        self.sink.emit_stats(s);
        self.sink.flush_blocking();
        self.sink.emit_critical(EngineEvent::State {
            ts_ms: self.now_ms,
            state: EngineState::Stopped,
        });
        self.sink.flush_blocking();
        EngineReport {
            counters: self.counters,
            dropped_stats: self.sink.dropped_stats(),
            undeliverable: self.sink.undeliverable(),
            max_overflow: self.sink.max_overflow(),
        }
    }
}
