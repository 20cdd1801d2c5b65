//! Benchmark support: fixed inputs, "the usual way" baselines, the report writer and busy-polling receivers.
//!
//! The criterion benches (`benches/benches/*.rs`) and the latency harness (`src/bin/latency_harness.rs`) share
//! these so both measure the same inputs.

pub mod fixtures;
pub mod report;
pub mod spin;
pub mod usual;
