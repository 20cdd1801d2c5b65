//! Market data input: the parser, the simulated market, replays, and the [`Feed`] the engine loop polls.
//!
//! Every source hands the engine raw message bytes; the engine runs them through the one parser
//! ([`parse::Parser`]). The live source ([`Feed::Ws`], [`crate::net::ws_feed`]) is a non-blocking WebSocket
//! client polled in the same busy loop as the others: its `poll` returns the next complete text frame as a slice
//! of the connection's read buffer ([`frame::FrameReader`]), so live frames cost no allocation either.

pub mod frame;
pub mod parse;
pub mod replay;
pub mod sim;

use aegis_shared::Symbol;
use std::path::PathBuf;

/// Where the engine's market data comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedSource {
    /// The built-in simulated market ([`sim::SimMarket`]).
    Sim {
        /// RNG seed (same seed → same market).
        seed: u64,
        /// Messages per wall second (default 1000).
        rate: f64,
        /// Market seconds per wall second (default 1).
        speed: f64,
        /// Simulated symbols; each must be a built-in one ([`sim::SimSymbol::builtin`]: BTCUSDT, ETHUSDT).
        symbols: Vec<Symbol>,
        /// Stop after this many messages (then the feed reports `Ended`, like a replay). `None`: endless.
        /// (The market time of the first message is `EngineParams::sim_start_ms`.)
        limit: Option<u64>,
    },
    /// A recorded combined-stream `.jsonl` file ([`replay::Replay`]).
    Replay {
        /// The file.
        path: PathBuf,
        /// `Some(1.0)` = original speed, `Some(n)` = n× faster, `None` = as fast as possible.
        speed: Option<f64>,
    },
    /// Binance (or the simulator) over a WebSocket combined stream ([`crate::net::ws_feed`]).
    Ws(crate::net::ws_feed::WsFeedConfig),
}

impl FeedSource {
    /// The default simulated market: seed 1, 1000 msg/s, speed 1, BTCUSDT + ETHUSDT, endless.
    pub fn default_sim() -> Self {
        Self::Sim {
            seed: 1,
            rate: 1000.0,
            speed: 1.0,
            symbols: vec![
                sim::SimSymbol::btcusdt().symbol,
                sim::SimSymbol::ethusdt().symbol,
            ],
            limit: None,
        }
    }
}

/// Why a feed could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// A simulated symbol has no built-in definition.
    #[error("no simulated market for symbol {0} (built-in: BTCUSDT, ETHUSDT)")]
    UnknownSimSymbol(Symbol),
    /// The simulator refused its config.
    #[error(transparent)]
    Sim(#[from] sim::SimError),
    /// The replay could not be opened.
    #[error(transparent)]
    Replay(#[from] replay::ReplayError),
    /// The live feed's depth snapshot thread (`aegis-depth`) could not start.
    #[error("cannot start the depth snapshot thread: {0}")]
    Thread(std::io::Error),
}

/// What one poll of a feed produced.
#[derive(Debug, PartialEq, Eq)]
pub enum FeedPoll<'a> {
    /// A message.
    Msg(&'a [u8]),
    /// Nothing due right now.
    Idle,
    /// The source is finished (replay end, sim limit).
    Ended,
}

/// An opened feed.
#[derive(Debug)]
pub enum Feed {
    /// Simulated market, paced to `rate` messages per wall second.
    Sim {
        /// The generator (public so the engine can show its top of book in tests).
        market: Box<sim::SimMarket>,
        /// Messages per wall second.
        rate: f64,
        /// Message cap.
        limit: Option<u64>,
    },
    /// Replay.
    Replay(Box<replay::Replay>),
    /// Live WebSocket market data.
    Ws(Box<crate::net::ws_feed::WsFeed>),
}

impl Feed {
    /// Opens a source (reads a replay file fully; see [`replay`]). `start_ms` is the simulated market's start
    /// time.
    pub fn open(src: &FeedSource, start_ms: u64) -> Result<Self, FeedError> {
        match src {
            FeedSource::Sim {
                seed,
                rate,
                speed,
                symbols,
                limit,
            } => {
                let mut cfg = sim::SimConfig::new(*seed);
                cfg.rate = *rate;
                cfg.speed = *speed;
                cfg.start_ms = start_ms;
                cfg.symbols = symbols
                    .iter()
                    .map(|s| sim::SimSymbol::builtin(*s).ok_or(FeedError::UnknownSimSymbol(*s)))
                    .collect::<Result<_, _>>()?;
                Ok(Self::Sim {
                    market: Box::new(sim::SimMarket::new(cfg)?),
                    rate: *rate,
                    limit: *limit,
                })
            }
            FeedSource::Replay { path, speed } => {
                Ok(Self::Replay(Box::new(replay::Replay::open(path, *speed)?)))
            }
            FeedSource::Ws(cfg) => Ok(Self::Ws(Box::new(
                crate::net::ws_feed::WsFeed::start(cfg.clone()).map_err(FeedError::Thread)?,
            ))),
        }
    }

    /// The next message if one is due `elapsed_ns` wall nanoseconds after the feed started. Never blocks,
    /// never sleeps, never allocates.
    #[inline]
    pub fn poll(&mut self, elapsed_ns: u64) -> FeedPoll<'_> {
        match self {
            Self::Sim {
                market,
                rate,
                limit,
            } => {
                let n = market.messages();
                if limit.is_some_and(|l| n >= l) {
                    return FeedPoll::Ended;
                }
                // Messages due by now; generation is paced to the wall clock without sleeping.
                let due = (elapsed_ns as f64 * 1e-9 * *rate) as u64;
                if n < due {
                    FeedPoll::Msg(market.next_message())
                } else {
                    FeedPoll::Idle
                }
            }
            Self::Replay(r) => match r.poll(elapsed_ns) {
                replay::ReplayPoll::Line(l) => FeedPoll::Msg(l),
                replay::ReplayPoll::NotYet => FeedPoll::Idle,
                replay::ReplayPoll::End => FeedPoll::Ended,
            },
            Self::Ws(f) => f.poll(),
        }
    }
}
