//! Per-mode capital allocation (security guide §5.2, `MODE_ALLOCATION_FILE`).
//!
//! The file holds the guide's JSON shape:
//! ```json
//! {"mode_allocation": {"ultra_fast_scalp_percent": 30, "scalp_percent": 30, "swing_percent": 25,
//!   "position_percent": 15, "max_ultra_fast_positions": 3, "max_scalp_positions": 4, "max_swing_positions": 3,
//!   "max_position_positions": 2, "max_ultra_fast_usd_per_position": 200, "max_scalp_usd_per_position": 300,
//!   "max_swing_usd_per_position": 500, "max_position_usd_per_position": 750}}
//! ```
//! Missing keys take the guide's example values ([`Allocation::default`]); unknown keys are refused (a typo must
//! not silently fall back to a default). Percents summing to more than 100 are a config error.
//!
//! [`AllocationTracker`] answers, on the hot path and without allocating, whether a mode may open another
//! position of N USD now: its position count, its per-position cap and its share of capital.

use aegis_shared::mode::StrategyMode;
use aegis_shared::num::{Notional, Rate};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One mode's allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeAllocation {
    /// Percent of capital (30 = 30 %), exact.
    pub percent: Rate,
    /// Most positions open at once.
    pub max_positions: u32,
    /// Most USD notional per position.
    pub max_usd_per_position: Notional,
}

/// The four modes' allocations, indexed by [`StrategyMode::index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Per mode, in [`StrategyMode::ALL`] order.
    pub modes: [ModeAllocation; 4],
}

impl Default for Allocation {
    /// The guide's example (30/30/25/15 %, 3/4/3/2 positions, $200/$300/$500/$750 per position).
    fn default() -> Self {
        let m = |p: i64, n: u32, usd: i64| ModeAllocation {
            percent: Rate::from_int(p),
            max_positions: n,
            max_usd_per_position: Notional::from_int(usd),
        };
        Self {
            modes: [m(30, 3, 200), m(30, 4, 300), m(25, 3, 500), m(15, 2, 750)],
        }
    }
}

/// A bad allocation file. Every message names the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AllocationError {
    /// The file could not be read.
    #[error("cannot read MODE_ALLOCATION_FILE {file}: {source}; point MODE_ALLOCATION_FILE at a readable JSON file or unset it to use the guide's defaults")]
    Io {
        /// The file.
        file: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not the expected JSON shape.
    #[error("{file}: not a valid mode allocation ({msg}); expected {{\"mode_allocation\": {{...}}}} with the keys of the security guide, section 5.2")]
    Json {
        /// The file.
        file: String,
        /// What serde said.
        msg: String,
    },
    /// A value is negative, zero where it must not be, or not an exact decimal.
    #[error("{file}: {field} must be {what}; fix it in the mode allocation file")]
    Value {
        /// The file.
        file: String,
        /// The key.
        field: &'static str,
        /// What it must be.
        what: &'static str,
    },
    /// The percents add up to more than 100.
    #[error("{file}: mode percents add up to {sum}%, over 100%; lower ultra_fast_scalp_percent, scalp_percent, swing_percent and position_percent so they sum to at most 100")]
    PercentsOver100 {
        /// The file.
        file: String,
        /// Their sum.
        sum: Rate,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    mode_allocation: RawAllocation,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawAllocation {
    ultra_fast_scalp_percent: Option<serde_json::Number>,
    scalp_percent: Option<serde_json::Number>,
    swing_percent: Option<serde_json::Number>,
    position_percent: Option<serde_json::Number>,
    max_ultra_fast_positions: Option<u32>,
    max_scalp_positions: Option<u32>,
    max_swing_positions: Option<u32>,
    max_position_positions: Option<u32>,
    max_ultra_fast_usd_per_position: Option<serde_json::Number>,
    max_scalp_usd_per_position: Option<serde_json::Number>,
    max_swing_usd_per_position: Option<serde_json::Number>,
    max_position_usd_per_position: Option<serde_json::Number>,
}

fn exact(
    file: &str,
    field: &'static str,
    n: &Option<serde_json::Number>,
    default: i64,
) -> Result<i64, AllocationError> {
    let bad = || AllocationError::Value {
        file: file.to_string(),
        field,
        what: "a non-negative number with at most 8 decimals",
    };
    match n {
        None => Ok(default),
        Some(n) => {
            let units = Rate::parse(&n.to_string()).map_err(|_| bad())?.units();
            if units < 0 {
                return Err(bad());
            }
            Ok(units)
        }
    }
}

impl Allocation {
    /// Parses the §5.2 JSON. `file` names the source in error messages.
    pub fn from_json(json: &str, file: &str) -> Result<Self, AllocationError> {
        let raw: FileShape = serde_json::from_str(json).map_err(|e| AllocationError::Json {
            file: file.to_string(),
            msg: e.to_string(),
        })?;
        let r = raw.mode_allocation;
        let d = Allocation::default();
        let pct = [
            ("ultra_fast_scalp_percent", &r.ultra_fast_scalp_percent),
            ("scalp_percent", &r.scalp_percent),
            ("swing_percent", &r.swing_percent),
            ("position_percent", &r.position_percent),
        ];
        let max_pos = [
            r.max_ultra_fast_positions,
            r.max_scalp_positions,
            r.max_swing_positions,
            r.max_position_positions,
        ];
        let usd = [
            (
                "max_ultra_fast_usd_per_position",
                &r.max_ultra_fast_usd_per_position,
            ),
            ("max_scalp_usd_per_position", &r.max_scalp_usd_per_position),
            ("max_swing_usd_per_position", &r.max_swing_usd_per_position),
            (
                "max_position_usd_per_position",
                &r.max_position_usd_per_position,
            ),
        ];
        let mut out = d;
        let mut sum: i64 = 0;
        for i in 0..4 {
            let p = exact(file, pct[i].0, pct[i].1, d.modes[i].percent.units())?;
            if p > Rate::from_int(100).units() {
                return Err(AllocationError::Value {
                    file: file.to_string(),
                    field: pct[i].0,
                    what: "between 0 and 100",
                });
            }
            sum += p;
            out.modes[i] = ModeAllocation {
                percent: Rate::from_units(p),
                max_positions: max_pos[i].unwrap_or(d.modes[i].max_positions),
                max_usd_per_position: Notional::from_units(exact(
                    file,
                    usd[i].0,
                    usd[i].1,
                    d.modes[i].max_usd_per_position.units(),
                )?),
            };
        }
        if sum > Rate::from_int(100).units() {
            return Err(AllocationError::PercentsOver100 {
                file: file.to_string(),
                sum: Rate::from_units(sum),
            });
        }
        Ok(out)
    }

    /// Reads `MODE_ALLOCATION_FILE`.
    pub fn from_file(path: &Path) -> Result<Self, AllocationError> {
        let file = path.display().to_string();
        let json = std::fs::read_to_string(path).map_err(|source| AllocationError::Io {
            file: file.clone(),
            source,
        })?;
        Self::from_json(&json, &file)
    }

    /// One mode's allocation.
    #[inline]
    pub fn mode(&self, m: StrategyMode) -> &ModeAllocation {
        &self.modes[m.index()]
    }
}

/// Why the allocation refused a new position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum AllocationDenial {
    /// The mode already holds its maximum number of positions.
    #[error("the mode holds its maximum number of positions")]
    TooManyPositions,
    /// The position is larger than the mode's maximum USD per position.
    #[error("position larger than the mode's maximum per position")]
    PositionTooLarge,
    /// The mode's share of capital would be exceeded.
    #[error("the mode's share of capital would be exceeded")]
    BudgetExceeded,
}

/// Tracks each mode's open positions against its allocation.
#[derive(Debug, Clone, Copy)]
pub struct AllocationTracker {
    alloc: Allocation,
    capital: Notional,
    open: [u32; 4],
    used: [Notional; 4],
}

impl AllocationTracker {
    /// A tracker for `capital` USD of account equity.
    pub fn new(alloc: Allocation, capital: Notional) -> Self {
        Self {
            alloc,
            capital,
            open: [0; 4],
            used: [Notional::ZERO; 4],
        }
    }

    /// The allocation.
    pub fn allocation(&self) -> &Allocation {
        &self.alloc
    }

    /// Updates the capital the percents apply to.
    pub fn set_capital(&mut self, capital: Notional) {
        self.capital = capital;
    }

    /// The mode's budget: capital × percent / 100, rounded down.
    #[inline]
    pub fn budget(&self, m: StrategyMode) -> Notional {
        let share = self.capital.mul_rate(self.alloc.mode(m).percent);
        Notional::from_units(share.units() / 100)
    }

    /// USD notional of the mode's open positions.
    pub fn used(&self, m: StrategyMode) -> Notional {
        self.used[m.index()]
    }

    /// Open positions of the mode.
    pub fn open_positions(&self, m: StrategyMode) -> u32 {
        self.open[m.index()]
    }

    /// May `m` open another position of `usd` now?
    #[inline]
    pub fn check(&self, m: StrategyMode, usd: Notional) -> Result<(), AllocationDenial> {
        let a = self.alloc.mode(m);
        let i = m.index();
        if self.open[i] >= a.max_positions {
            return Err(AllocationDenial::TooManyPositions);
        }
        if usd > a.max_usd_per_position {
            return Err(AllocationDenial::PositionTooLarge);
        }
        if self.used[i].saturating_add(usd) > self.budget(m) {
            return Err(AllocationDenial::BudgetExceeded);
        }
        Ok(())
    }

    /// May `m` add `usd` to a position it already holds (budget only: the count does not change)?
    #[inline]
    pub fn check_add(&self, m: StrategyMode, usd: Notional) -> Result<(), AllocationDenial> {
        if self.used[m.index()].saturating_add(usd) > self.budget(m) {
            return Err(AllocationDenial::BudgetExceeded);
        }
        Ok(())
    }

    /// Replaces the mode's usage with a count of open positions and their USD notional (for an engine that
    /// derives usage from its position table instead of calling [`AllocationTracker::on_open`]/`on_close`).
    #[inline]
    pub fn sync(&mut self, m: StrategyMode, open_positions: u32, used: Notional) {
        self.open[m.index()] = open_positions;
        self.used[m.index()] = used;
    }

    /// Records a newly opened position of `usd`.
    #[inline]
    pub fn on_open(&mut self, m: StrategyMode, usd: Notional) {
        let i = m.index();
        self.open[i] = self.open[i].saturating_add(1);
        self.used[i] = self.used[i].saturating_add(usd);
    }

    /// Records that a position opened with `usd` is closed.
    #[inline]
    pub fn on_close(&mut self, m: StrategyMode, usd: Notional) {
        let i = m.index();
        self.open[i] = self.open[i].saturating_sub(1);
        self.used[i] = self.used[i].saturating_sub(usd).max(Notional::ZERO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUIDE: &str = r#"{
  "mode_allocation": {
    "ultra_fast_scalp_percent": 30,
    "scalp_percent": 30,
    "swing_percent": 25,
    "position_percent": 15,

    "max_ultra_fast_positions": 3,
    "max_scalp_positions": 4,
    "max_swing_positions": 3,
    "max_position_positions": 2,

    "max_ultra_fast_usd_per_position": 200,
    "max_scalp_usd_per_position": 300,
    "max_swing_usd_per_position": 500,
    "max_position_usd_per_position": 750
  }
}"#;

    #[test]
    fn the_guides_example_is_the_default() {
        assert_eq!(
            Allocation::from_json(GUIDE, "g.json").unwrap(),
            Allocation::default()
        );
        assert_eq!(
            Allocation::from_json(r#"{"mode_allocation":{}}"#, "e.json").unwrap(),
            Allocation::default()
        );
    }

    #[test]
    fn percents_over_100_name_the_file_and_the_fix() {
        let j = GUIDE.replace("\"position_percent\": 15", "\"position_percent\": 15.5");
        let e = Allocation::from_json(&j, "/etc/aegis/alloc.json").unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, AllocationError::PercentsOver100 { .. }),
            "{msg}"
        );
        assert!(
            msg.contains("/etc/aegis/alloc.json") && msg.contains("100.5%"),
            "{msg}"
        );
        assert!(msg.contains("sum to at most 100"), "{msg}");
    }

    #[test]
    fn bad_values_and_typos_are_refused() {
        let j = GUIDE.replace("\"swing_percent\": 25", "\"swing_percnt\": 25");
        assert!(matches!(
            Allocation::from_json(&j, "f").unwrap_err(),
            AllocationError::Json { .. }
        ));
        let j = GUIDE.replace(
            "\"max_swing_usd_per_position\": 500",
            "\"max_swing_usd_per_position\": -5",
        );
        let e = Allocation::from_json(&j, "f").unwrap_err();
        assert!(e.to_string().contains("max_swing_usd_per_position"), "{e}");
        let e = Allocation::from_file(Path::new("/nonexistent/alloc.json")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/alloc.json"));
    }

    #[test]
    fn tracker_enforces_count_cap_and_budget() {
        let mut t = AllocationTracker::new(Allocation::default(), Notional::from_int(1000));
        let m = StrategyMode::Swing; // 25 % of 1000 = 250, 3 positions, $500 cap
        assert_eq!(t.budget(m), Notional::from_int(250));
        assert_eq!(
            t.check(m, Notional::from_int(251)),
            Err(AllocationDenial::BudgetExceeded)
        );
        t.on_open(m, Notional::from_int(100));
        t.on_open(m, Notional::from_int(100));
        assert_eq!(
            t.check(m, Notional::from_int(51)),
            Err(AllocationDenial::BudgetExceeded)
        );
        t.on_open(m, Notional::from_int(50));
        assert_eq!(
            t.check(m, Notional::from_int(0)),
            Err(AllocationDenial::TooManyPositions)
        );
        t.set_capital(Notional::from_int(10_000));
        assert_eq!(
            t.check(StrategyMode::Position, Notional::from_int(751)),
            Err(AllocationDenial::PositionTooLarge)
        );
    }
}
