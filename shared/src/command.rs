//! Commands the control plane sends to the engine.

use crate::event::BreakerScope;
use crate::num::Notional;
use serde::{Deserialize, Serialize};

/// A control command. The engine applies each one between two market messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "command")]
pub enum Command {
    /// Stop opening positions; exits keep working.
    Halt,
    /// Undo [`Command::Halt`] (does not override a tripped breaker or the kill switch).
    Resume,
    /// Kill switch: halt, cancel every open order and, with `flatten`, close every position with reduce-only
    /// market orders. Idempotent.
    Kill {
        /// Also close all positions.
        flatten: bool,
    },
    /// Operator reset of a breaker (audited by the control plane).
    ResetBreaker {
        /// Which breaker.
        scope: BreakerScope,
    },
    /// Change the limits at run time.
    SetLimits {
        /// New `FUTURES_AUTOPILOT_MAX_POSITION_SIZE` (USD per position).
        max_position_usd: Notional,
        /// New `FUTURES_AUTOPILOT_MAX_DAILY_LOSS` (USD per UTC day).
        max_daily_loss_usd: Notional,
    },
    /// A funding settlement for the **paper** venue (Binance's real market in paper mode: the control plane reads
    /// `premiumIndex`): every paper position in `symbol` pays `qty × mark × rate` (longs pay a positive rate,
    /// shorts receive it), as the exchange would settle it. The live venue ignores it: there the exchange's own
    /// `FUNDING_FEE` records are the truth.
    PaperFunding {
        /// Symbol.
        symbol: crate::symbol::Symbol,
        /// The funding rate of the period, signed (`0.0001` = 0.01 %).
        rate: crate::num::Rate,
        /// The mark price it settles at.
        mark: crate::num::Price,
        /// Settlement time (ms); with `symbol` the settlement's identity, so a repeat is booked once.
        ts_ms: u64,
    },
    /// Stop new entries, finish in-flight work, emit [`crate::event::EngineState::Stopped`] and exit the thread.
    Shutdown,
}
