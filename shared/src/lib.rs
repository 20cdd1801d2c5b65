//! Types both halves of Aegis use.
//!
//! The engine (hot path) and the control plane (slow path) only talk through these types, so the rules that
//! matter for money live here once: exact decimal [`num::Price`]/[`num::Qty`]/[`num::Notional`], a
//! [`secret::Secret`] wrapper that never prints, bounded [`ids::ClientOrderId`]s, and the
//! [`event::EngineEvent`]/[`command::Command`] messages that cross the queues.
#![deny(missing_docs)]

pub mod command;
pub mod config;
pub mod event;
pub mod ids;
pub mod mode;
pub mod num;
pub mod quote;
pub mod secret;
pub mod symbol;

pub use command::Command;
pub use event::EngineEvent;
pub use ids::ClientOrderId;
pub use mode::{Market, Side, StrategyMode, TradingMode};
pub use num::{Notional, Price, Qty};
pub use secret::Secret;
pub use symbol::Symbol;
