//! Fuzzes the control plane's parsers of outside input:
//! - user-data stream events (`ORDER_TRADE_UPDATE` from Binance): never panic;
//! - the journal read back after a crash: the fuzzer's bytes become checksummed records (so payload decoding and
//!   the ledger replay see arbitrary content) followed by an arbitrary tail. Recovery must never panic; when it
//!   succeeds the valid length lies inside the file and a second recovery of the result finds nothing to cut.
//!
//! Run from `fuzz/`: `cargo +nightly fuzz run control_inputs`.
#![no_main]

use aegis_control::exchange::user_stream::parse_order_update;
use aegis_control::journal::{self, MAGIC};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fn journal_case(data: &[u8]) {
    // [n_records][len_i][payload_i]...[tail]
    let Some((&n, mut rest)) = data.split_first() else {
        return;
    };
    let mut file = MAGIC.to_vec();
    for _ in 0..(n % 8) {
        let Some((&len, r)) = rest.split_first() else {
            break;
        };
        let len = usize::from(len).min(r.len());
        let (payload, r) = r.split_at(len);
        file.extend_from_slice(&(len as u32).to_le_bytes());
        file.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        file.extend_from_slice(payload);
        rest = r;
    }
    file.extend_from_slice(rest);
    let dir = std::env::temp_dir().join(format!("aegis-fuzz-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join(journal::FILE_NAME), &file).expect("write journal");
    if let Ok((w, rec)) = journal::open(&dir, Duration::from_millis(5)) {
        assert!(rec.valid_len <= file.len() as u64);
        assert!(rec.valid_len >= (MAGIC.len() as u64).min(file.len() as u64) || file.is_empty());
        drop(w);
        let (_, again) =
            journal::open(&dir, Duration::from_millis(5)).expect("reopen a recovered journal");
        assert!(
            again.cut.is_none(),
            "a recovered journal must recover cleanly"
        );
        assert_eq!(again.records, rec.records);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(rest) {
            let _ = parse_order_update(&v);
        }
    } else {
        journal_case(rest);
    }
});
