//! Fuzzes the market-data parser with arbitrary bytes: it must never panic, and depth levels it accepts must
//! iterate exactly as many times as it counted. Run: `cargo +nightly fuzz run parse_market` from `fuzz/`.
#![no_main]

use aegis_engine::feed::parse::{MarketMsg, Parser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut p = Parser::new();
    if let Ok(MarketMsg::Depth(d)) = p.parse(data) {
        assert_eq!(d.bids.iter().count(), d.bids.len());
        assert_eq!(d.asks.iter().count(), d.asks.len());
    }
});
