//! The Aegis control plane: everything slow, kept off the engine's hot path.
//!
//! - [`config`]: `.env` + environment loading (parsing lives in `aegis_shared::config`).
//! - [`journal`]: the append-only, checksummed, fsync-batched record of every critical event.
//! - [`pump`]: the thread that drains the engine's queues, journaling first.
//! - [`state`] / [`journal::Ledger`]: what the API shows, rebuilt identically from the journal on restart.
//! - [`api`]: the HTTPS API; [`tls`]: its certificate.
//! - [`runtime`]: `aegis run`; [`cli`]: the command line; [`logging`]: tracing setup.
//! - [`backtest_cmd`]: `aegis backtest` over recorded data with the engine's own code.
//! - [`ops`]: the operating commands (preflight, keys, halt/resume/kill, incident report) and the alert triggers.

pub mod alerts;
pub mod api;
pub mod auth;
pub mod backtest_cmd;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod db_link;
pub mod engine_link;
pub mod exchange;
pub mod fleet;
pub mod journal;
pub mod logging;
pub mod ops;
pub mod preflight;
pub mod pump;
pub mod runtime;
pub mod state;
pub mod tls;
pub mod watch;
pub mod web;
