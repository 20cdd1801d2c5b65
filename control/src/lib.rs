//! The Aegis control plane: everything slow, kept off the engine's hot path.
//!
//! # Layers
//!
//! Imports run one way: a module uses the modules of its own layer or of lower ones, never of a higher one
//! (`control/tests/module_layers.rs` checks this and that there is no cycle, here and inside [`exchange`]).
//! Lowest first:
//!
//! 1. [`cli`] (argument types), [`logging`] (tracing set-up), [`config`] (`.env` + environment; parsing lives in
//!    `aegis_shared::config`; [`config::env`] for the keys the shared `Config` does not hold).
//! 2. [`journal`]: the append-only, checksummed, fsync-batched record of every critical event, and the
//!    [`journal::Ledger`] replayed from it on start.
//! 3. Services that know nothing of the running bot: [`tls`] (the API's certificate), [`alerts`] (delivery),
//!    [`db`] (the Postgres writer, health, redaction), [`auth`] (users, tokens, limits), [`preflight`].
//! 4. [`fleet`]: the lease per API key and the host's request-weight budget.
//! 5. [`state`]: what the control plane knows about the running bot (the API's view).
//! 6. [`api`] (the HTTPS API, health), then [`web`] (the dashboard's server and read model).
//! 7. [`watch`] (alert triggers), then [`pump`] (the thread that drains the engine's queues, journaling first).
//! 8. [`engine_link`]: the engine-start interface and the paper engine; then [`exchange`]: Binance (testnet,
//!    live, paper on Binance data).
//! 9. [`db_link`] (Postgres inside `aegis run`), then [`dashboard`] (the web backend over state and Postgres).
//! 10. [`ops`]: the operating commands (preflight, keys, halt/resume/kill, incident report, database commands).
//! 11. [`runtime`]: `aegis run` (which picks the engine starter), then [`backtest_cmd`]: `aegis backtest`.
//! 12. `main.rs`, the binary: parses the command line and calls the layers above.
//!
//! When a lower module needs something of a higher one, the item moves down (a shared type, e.g.
//! [`state::StopsHealth`]) or the higher layer passes it in (a trait such as [`state::EventSink`], or a function
//! such as the dashboard check given to [`config::load`]).

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
