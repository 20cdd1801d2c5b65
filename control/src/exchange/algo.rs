//! Our protective stop as an algo order on Binance: the `clientAlgoId` prefix and the shape of a stop, which
//! both the stop manager ([`super::stops`]) and the reconciliation ([`super::reconcile::algo_plan`]) judge.
//! Kept apart from both so the reconciliation does not depend on the stop manager that uses it.

use aegis_shared::num::{Price, Qty};

/// Prefix of our `clientAlgoId`s (not `ag…`: the triggered order carries this id, and must not pass for an
/// engine order).
pub const PREFIX: &str = "aegsl-";

/// One stop as it should rest (or rests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Closing side: SELL for a long.
    pub sell: bool,
    /// Net quantity.
    pub qty: Qty,
    /// Trigger (mark price).
    pub trigger: Price,
}

/// A stop of ours on the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resting {
    /// `clientAlgoId`.
    pub client_algo_id: String,
    /// What it is.
    pub target: Target,
}
