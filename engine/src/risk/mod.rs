//! Pre-trade risk: the one gate every order passes ([`gate::RiskGate`]), built from the limits
//! ([`limits`]), the circuit breakers ([`breaker`]) and the per-mode allocation ([`allocation`]).

pub mod allocation;
pub mod breaker;
pub mod gate;
pub mod limits;

pub use gate::{Denial, RiskContext, RiskGate};
