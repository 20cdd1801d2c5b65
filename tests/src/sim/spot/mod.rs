//! Binance SPOT beside the futures simulator, on the same listener: REST `/api/v3/...` ([`rest`]), the WebSocket
//! API `/ws-api/v3` with user data by `userDataStream.subscribe(.signature)` ([`ws_api`]; the spot listenKey is
//! gone, so `/api/v3/userDataStream` is an unknown path), market streams under `/spot/ws` and `/spot/stream`
//! ([`streams`]: real spot streams live on their own host, here a path prefix keeps them apart from the futures
//! ones) and the admin API `/admin/spot/...` ([`admin`]).
//!
//! Spot is a cash market: balances per asset, a buy locks quote and a sell locks base, nothing can be sold that is
//! not held (no shorting: -2010), commissions are taken in the asset received (or in BNB when the BNB fee mode is
//! on and the account holds enough BNB). Stops (`STOP_LOSS(_LIMIT)`, `TAKE_PROFIT(_LIMIT)`) and OCO legs rest on
//! the exchange and trigger on the last price. Modules, one concept each:
//! - [`symbols`]: the spot symbols and their filters; [`account`]: balances and the account's events;
//! - [`orders`]: orders and their JSON; [`matching`]: placing, filling, triggering, OCO lists;
//! - [`rest`], [`ws_api`], [`streams`], [`admin`]: the protocols.
//!
//! Spot keeps its own state and its own REQUEST_WEIGHT counter (6,000/min, a separate limit on a separate host
//! at Binance); it shares the futures side's keys, clock, signature checks and request faults.

pub mod account;
pub mod admin;
pub mod matching;
pub mod orders;
pub mod rest;
pub mod streams;
pub mod symbols;
pub mod ws_api;

use super::ratelimit::{Limits, RateLimiter};
use std::sync::Mutex;
use tokio::sync::broadcast;

/// Spot's REQUEST_WEIGHT per minute (exchangeInfo of api.binance.com).
pub const WEIGHT_PER_MINUTE: u32 = 6000;
/// Spot's ORDERS per 10 s per account.
pub const ORDERS_PER_10S: u32 = 100;
/// Spot's ORDERS per day per account (not counted: see [`limits`]).
pub const ORDERS_PER_DAY: u32 = 200_000;

/// Spot's limits in the shared limiter's shape. The daily order limit has no window there; a day's worth of
/// test orders is far below it, so the minute window is set so high that it never refuses.
pub fn limits() -> Limits {
    Limits {
        weight_per_minute: WEIGHT_PER_MINUTE,
        orders_per_10s: ORDERS_PER_10S,
        orders_per_minute: u32::MAX,
        ..Limits::default()
    }
}

/// The spot half of the simulator's state.
pub struct Spot {
    /// Books, accounts, orders.
    pub ex: Mutex<matching::SpotExchange>,
    /// Spot's own rate limit counters.
    pub limits: Mutex<RateLimiter>,
    /// Accounts whose user data subscriptions the admin API terminates (every WebSocket API connection
    /// listens).
    pub terminate_tx: broadcast::Sender<String>,
}

impl Default for Spot {
    fn default() -> Self {
        Self {
            ex: Mutex::new(matching::SpotExchange::new(symbols::SpotSpec::defaults())),
            limits: Mutex::new(RateLimiter::new(limits())),
            terminate_tx: broadcast::channel(64).0,
        }
    }
}
