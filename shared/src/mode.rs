//! Which environment the bot trades in, which strategy mode an order belongs to, and order sides.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The trading environment (`TRADING_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TradingMode {
    /// Simulated fills against a simulated or recorded market; needs no keys. The default.
    Paper,
    /// Binance testnet with the `BINANCE_TESTNET_*` keys.
    Testnet,
    /// Binance production with the `BINANCE_*` keys: real money.
    Live,
}

impl TradingMode {
    /// Parses `paper`, `testnet` or `live` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "paper" => Some(Self::Paper),
            "testnet" => Some(Self::Testnet),
            "live" => Some(Self::Live),
            _ => None,
        }
    }
    /// Lower-case name as used in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paper => "paper",
            Self::Testnet => "testnet",
            Self::Live => "live",
        }
    }
    /// Upper-case banner label.
    pub fn banner(self) -> &'static str {
        match self {
            Self::Paper => "PAPER",
            Self::Testnet => "TESTNET",
            Self::Live => "LIVE",
        }
    }
}

/// Which Binance market a symbol trades on. One bot process trades one market (`MARKETS`); every order, fill and
/// position row carries it, so a database or an export that holds both never mixes them up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Market {
    /// USD-M perpetual futures (`/fapi`): long and short, reduce-only exits, funding. The default, and what
    /// journals written before markets existed hold.
    #[default]
    Futures,
    /// Spot (`/api/v3`): a position is a balance of the base asset, so long only; no reduce-only; a fee may be
    /// taken in the asset bought.
    Spot,
}

impl Market {
    /// Parses `futures` or `spot` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "futures" => Some(Self::Futures),
            "spot" => Some(Self::Spot),
            _ => None,
        }
    }
    /// Lower-case name, as in config, the journal and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Futures => "futures",
            Self::Spot => "spot",
        }
    }
    /// True on a market that cannot hold a short position.
    #[inline]
    pub fn long_only(self) -> bool {
        matches!(self, Self::Spot)
    }
}

impl fmt::Display for Market {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for TradingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The four strategy modes of the futures autopilot (security guide §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyMode {
    /// Book/tick level; holds seconds to minutes.
    UltraFastScalp,
    /// 1–5 minute bars.
    Scalp,
    /// 15 minute to 4 hour bars.
    Swing,
    /// 4 hour to daily bars.
    Position,
}

impl StrategyMode {
    /// All modes, in a fixed order usable as an array index (see [`StrategyMode::index`]).
    pub const ALL: [StrategyMode; 4] = [
        StrategyMode::UltraFastScalp,
        StrategyMode::Scalp,
        StrategyMode::Swing,
        StrategyMode::Position,
    ];
    /// Position in [`StrategyMode::ALL`].
    #[inline]
    pub const fn index(self) -> usize {
        match self {
            Self::UltraFastScalp => 0,
            Self::Scalp => 1,
            Self::Swing => 2,
            Self::Position => 3,
        }
    }
    /// Config name (`ultra_fast_scalp`, `scalp`, `swing`, `position`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UltraFastScalp => "ultra_fast_scalp",
            Self::Scalp => "scalp",
            Self::Swing => "swing",
            Self::Position => "position",
        }
    }
    /// Parses a config name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl fmt::Display for StrategyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Order side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Side {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

impl Side {
    /// Binance's wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Buy => "BUY",
            Self::Sell => "SELL",
        }
    }
    /// The other side.
    pub const fn opposite(self) -> Self {
        match self {
            Self::Buy => Self::Sell,
            Self::Sell => Self::Buy,
        }
    }
    /// +1 for buy, -1 for sell: the sign a fill adds to a position.
    pub const fn sign(self) -> i64 {
        match self {
            Self::Buy => 1,
            Self::Sell => -1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names_round_trip() {
        for m in StrategyMode::ALL {
            assert_eq!(StrategyMode::parse(m.as_str()), Some(m));
            assert_eq!(StrategyMode::ALL[m.index()], m);
        }
        assert_eq!(TradingMode::parse("LIVE"), Some(TradingMode::Live));
        assert_eq!(TradingMode::parse("prod"), None);
        assert_eq!(Side::Buy.opposite(), Side::Sell);
    }
}
