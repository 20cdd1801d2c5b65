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
    /// Stop new entries, finish in-flight work, emit [`crate::event::EngineState::Stopped`] and exit the thread.
    Shutdown,
}
