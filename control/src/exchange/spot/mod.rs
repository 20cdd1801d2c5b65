//! Binance spot (MARKETS=spot) on testnet/live.
pub mod stops;
