//! Fuzzes the parsers of outside input that are not on the hot path:
//! - REST answers from Binance: `exchangeInfo` filters, `openOrders` / `positionRisk` as read by reconciliation,
//!   `apiRestrictions`: never panic, and a symbol spec that parses has positive tick and step;
//! - what the operator writes: the environment / `.env` keys, the mode allocation JSON, a key pair given to
//!   `aegis keys rotate`, CIDR lists, `DATABASE_URL`. Never panic, and **no secret reaches an error message**:
//!   every secret value starts with a canary the non-secret inputs never contain, and no error may show it.
//!
//! Run from `fuzz/`: `cargo +nightly fuzz run exchange_and_config`.
#![no_main]

use aegis_control::exchange::{reconcile, startup};
use aegis_shared::config::{keys, Config};
use aegis_shared::Symbol;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Marks secret values; an error message containing it leaked a secret.
const CANARY: &str = "CANARYsecret";

fn exchange(json: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    let symbols = [
        Symbol::new("BTCUSDT").expect("valid literal"),
        Symbol::new("ETHUSDT").expect("valid literal"),
    ];
    if let Ok(specs) = startup::specs_from_exchange_info(&v, &symbols) {
        for s in specs {
            assert!(
                s.filters.tick_size.units() > 0 && s.filters.step_size.units() > 0,
                "a tick or step that is not positive was accepted: {s:?}"
            );
        }
    }
    let _ = aegis_control::ops::probe::parse_restrictions(&v);
    // The same document read as both reconciliation lists (each array element is one order / one position).
    let list: Vec<Value> = match &v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    let plan = reconcile::plan(
        &list,
        &list,
        &HashSet::new(),
        &BTreeMap::new(),
        1_700_000_000_000,
    );
    // Nothing in the journal: every open order is unknown, so every one is cancelled or adopted, none forgotten.
    assert!(plan.cancel.len() <= list.len());
    for o in &list {
        let _ = reconcile::final_update(o, 1_700_000_000_000);
        let _ = reconcile::adopt_msg(o, aegis_shared::StrategyMode::Scalp);
    }
}

fn no_canary(what: &str, msg: &str) {
    assert!(!msg.contains(CANARY), "{what} error shows a secret: {msg}");
}

fn operator(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // Settings: `<key index byte><value up to the next newline>` per line; secret values get the canary.
    let mut env: HashMap<&'static str, String> = HashMap::new();
    for line in text.split('\n') {
        let mut chars = line.chars();
        let Some(k) = chars.next() else {
            continue;
        };
        let key = keys::ALL[(k as usize) % keys::ALL.len()];
        let value: String = chars.collect();
        if value.contains("CANARY") {
            return; // Keeps the property exact: only secrets carry the canary.
        }
        let value = if keys::SECRETS.contains(&key) {
            format!("{CANARY}{value}")
        } else {
            value
        };
        env.insert(key, value);
    }
    if let Err(e) = Config::from_lookup(|k| env.get(k).cloned()) {
        no_canary("config", &e.to_string());
        no_canary("config (debug)", &format!("{e:?}"));
    }
    if let Some(raw) = env.get(keys::DATABASE_URL) {
        // As typed (the whole value is secret), and with the canary where a password would sit.
        let rest = raw.strip_prefix(CANARY).unwrap_or(raw);
        for url in [raw.clone(), format!("postgres://u:{CANARY}@{rest}")] {
            if let Err(e) = aegis_control::db::connect::parse_url(&url) {
                no_canary("DATABASE_URL", &e.to_string());
            }
        }
    }
    // A key pair as `aegis keys rotate` reads it: the fuzzer's lines, with every value made a canary.
    let pair: String = text
        .lines()
        .map(|l| match l.split_once('=') {
            Some((n, v)) => format!("{n}={CANARY}{v}\n"),
            None => format!("{CANARY}{l}\n"),
        })
        .collect();
    if let Err(e) = aegis_control::ops::keys::parse_pair(&pair) {
        no_canary("key pair", &e.to_string());
    }
    let _ = aegis_control::auth::limits::parse_cidrs(keys::DASHBOARD_ALLOWED_IPS, &text);
    let _ = aegis_engine::risk::allocation::Allocation::from_json(&text, "fuzz.json");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        exchange(rest);
    } else {
        operator(rest);
    }
});
