//! Fuzzes the parsers added for the order path and money truth, all fed by Binance:
//! - WebSocket-API answers (`aegis_engine::venue::binance::answer::parse`, the allocation-free reader the order
//!   gateway acts on): never panic; an accepted answer's error message is a slice of the input, and every kept
//!   `rateLimits` entry has a non-zero window;
//! - the ban time in a 418 message (`answer::banned_until`): never panic;
//! - `GET /fapi/v1/income` funding records (`aegis_control::exchange::funding::parse_income`): never panic.
//!
//! Run from `fuzz/`: `cargo +nightly fuzz run exchange_answers`.
#![no_main]

use aegis_engine::venue::binance::answer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(a) = answer::parse(rest) {
                let (lo, hi) = (rest.as_ptr() as usize, rest.as_ptr() as usize + rest.len());
                let m = a.msg.as_ptr() as usize;
                assert!(
                    a.msg.is_empty() || (m >= lo && m + a.msg.len() <= hi),
                    "the message must be a slice of the answer"
                );
                for l in a.limits() {
                    assert!(l.window_ms > 0, "a kept rate limit has a window");
                }
            }
        }
        1 => {
            let _ = answer::banned_until(rest);
        }
        _ => {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(rest) {
                let _ = aegis_control::exchange::funding::parse_income(&v);
            }
        }
    }
});
