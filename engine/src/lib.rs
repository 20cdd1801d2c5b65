//! The Aegis engine: the single-threaded hot path.
//!
//! Market bytes → [`feed::parse`] → [`book`] → [`strategy`] → [`risk`] gate → [`venue`] → events over the
//! [`queues`] to the control plane. [`spawn`] runs it on a pinned busy-polling thread; [`Engine::on_message`] is
//! the same path as a synchronous call for tests and benches.
#![deny(missing_docs)]

pub mod backtest;
pub mod book;
pub mod clock;
pub mod engine;
pub mod feed;
pub mod funding;
pub mod net;
pub mod position;
pub mod queues;
pub mod risk;
pub mod sign;
pub mod strategy;
pub mod venue;

pub use engine::{
    spawn, Counters, Engine, EngineError, EngineHandle, EngineParams, EngineReport, FeedEnd,
    PinOutcome, SymbolSpec,
};
pub use feed::FeedSource;
