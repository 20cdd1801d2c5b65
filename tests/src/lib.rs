//! Aegis test kit.
//!
//! [`sim`] is a Binance USD-M futures simulator that speaks the real wire protocol (REST, market streams, user
//! data streams, WebSocket API) with Binance's signatures, error codes and rate limits, plus an admin API for
//! fault injection. The `binance-sim` binary runs it standalone.

pub mod browser;
pub mod sim;
