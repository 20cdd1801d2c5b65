//! Binance spot (`MARKETS=spot`) on testnet or live: the parts the futures path does not have.
//!
//! - [`reconcile`]: a spot position is a balance: the start-up and running comparison of the journal's
//!   positions with the account's balances and open orders.

pub mod reconcile;
