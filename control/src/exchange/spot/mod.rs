//! Binance spot (`MARKETS=spot` on testnet or live): what the spot account needs beyond the REST paths of
//! [`super::rest`] (which speaks spot's `/api/v3` when the client is [`super::rest::RestClient::on_market`]
//! spot).
//!
//! - [`reconcile`]: a spot position is a balance: the start-up and running comparison of the journal's
//!   positions with the account's balances and open orders.
//! - [`user_stream`]: the spot user data stream. Spot has it only through the WebSocket API since the spot
//!   listenKey was retired on 2026-02-20: `userDataStream.subscribe.signature` on a `/ws-api/v3` connection,
//!   events wrapped as `{"subscriptionId":N,"event":{…}}`, `eventStreamTerminated` when a subscription ends
//!   (resubscribed at once), reconnects with backoff. `executionReport`s become
//!   [`aegis_engine::venue::binance::Inbound::Update`]s for the engine; `outboundAccountPosition` and
//!   `balanceUpdate` keep [`user_stream::Balances`] (free and locked per asset) current.
//! - [`stops`]: the protective `STOP_LOSS_LIMIT` sell resting on the exchange for every spot holding (it locks
//!   what it would sell, so the engine's exit cancels it in the same request: `order.cancelReplace`).
//!
//! Layer: above every other exchange module but `exchange/mod.rs`, which hands a spot configuration to
//! `start` (it reuses the REST worker, the feed set-up and the futures reconciliation's order rules).

pub mod reconcile;
pub mod start;
pub mod stops;
pub mod user_stream;
