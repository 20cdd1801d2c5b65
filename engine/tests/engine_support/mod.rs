//! Shared by the engine tests that run over the recorded data in `../shared/data/`: its paths, the XRPUSDT
//! symbol as the exchange lists it, the settings that make the bar modes trade on a few days of it, and the
//! fills and position updates picked out of an event stream.
// Every test binary compiles this module on its own and uses only part of it, so the rest would warn as unused.
#![allow(dead_code)]

use aegis_engine::risk::limits::{LimitsConfig, SymbolFilters};
use aegis_engine::strategy::position::PositionParams;
use aegis_engine::strategy::swing::SwingParams;
use aegis_engine::{EngineParams, SymbolSpec};
use aegis_shared::event::{Fill, PositionUpdate};
use aegis_shared::num::{Notional, Price, Qty};
use aegis_shared::{EngineEvent, Symbol};
use std::path::PathBuf;

/// A recording in the repository's `shared/data/`.
pub fn data(name: &str) -> PathBuf {
    // `AEGIS_SHARED_DATA` points elsewhere when the checkout is not beside `shared/` (a git worktree).
    std::env::var_os("AEGIS_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
        .join(name)
}

/// The XRPETH recording relabelled as a dollar pair (XRPUSDC, same numbers): a second dollar-quoted file for
/// the tests of merging files, which cannot mix quote assets. Written once per test process.
pub fn xrpusdc() -> PathBuf {
    let path = std::env::temp_dir().join(format!("aegis-bt-xrpusdc-{}.jsonl", std::process::id()));
    if !path.is_file() {
        let text = std::fs::read_to_string(data("xrpeth-aggtrade-2019-10-11.jsonl"))
            .expect("read the recording");
        let tmp = path.with_extension(
            format!("tmp{:?}", std::thread::current().id()).replace(['(', ')'], ""),
        );
        std::fs::write(
            &tmp,
            text.replace("XRPETH", "XRPUSDC")
                .replace("xrpeth", "xrpusdc"),
        )
        .expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
    }
    path
}

/// XRPUSDT with its exchange filters.
pub fn xrp() -> SymbolSpec {
    SymbolSpec {
        symbol: Symbol::new("XRPUSDT").unwrap(),
        filters: SymbolFilters {
            tick_size: Price::parse("0.0001").unwrap(),
            step_size: Qty::parse("0.1").unwrap(),
            min_qty: Qty::parse("0.1").unwrap(),
            min_notional: Notional::from_int(5),
        },
    }
}

/// The default limits but for the position size and the daily loss (whole quote units).
pub fn limits(max_position_usd: i64, max_daily_loss_usd: i64) -> LimitsConfig {
    LimitsConfig {
        max_position_usd: Notional::from_int(max_position_usd),
        max_daily_loss_usd: Notional::from_int(max_daily_loss_usd),
        ..LimitsConfig::default()
    }
}

/// Swing on 15-minute bars: shorter than the default, so it trades within the few days of recorded klines.
pub fn short_swing() -> SwingParams {
    SwingParams {
        bar_ms: 15 * 60_000,
        ..SwingParams::default()
    }
}

/// Position on 1-hour bars: the default 4-hour bars are too few in the recording for EMA(50) to warm up.
pub fn short_position() -> PositionParams {
    PositionParams {
        bar_ms: 3_600_000,
        ..PositionParams::default()
    }
}

/// `p` with both bar modes on their short bars.
pub fn short_bars(p: EngineParams) -> EngineParams {
    EngineParams {
        swing: Some(short_swing()),
        position: Some(short_position()),
        ..p
    }
}

/// The fills among `ev`, in order.
pub fn fills(ev: &[EngineEvent]) -> Vec<Fill> {
    ev.iter()
        .filter_map(|e| match e {
            EngineEvent::Fill(f) => Some(*f),
            _ => None,
        })
        .collect()
}

/// The position updates among `ev`, in order.
pub fn positions(ev: &[EngineEvent]) -> Vec<PositionUpdate> {
    ev.iter()
        .filter_map(|e| match e {
            EngineEvent::Position(p) => Some(*p),
            _ => None,
        })
        .collect()
}
