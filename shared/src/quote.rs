//! Quote assets and the guide's USD limits.
//!
//! Every limit the guide sets — position size, daily loss, the hourly-loss breaker, the modes' caps — is in USD.
//! The engine compares them with notionals and PnL in the traded symbol's quote asset, which is only right when
//! that asset is a dollar (USDT, USDC, …). A symbol quoted in anything else (XRPETH, ETHBTC) needs a USD price
//! for its quote asset, or the run is refused: a "$500" position must never become 500 ETH.
//!
//! [`run_units`] decides for a set of symbols: all dollar-quoted → amounts are USD; all quoted in one other asset
//! with a given USD price → the USD settings are converted into that asset (the engine's
//! `EngineParams::usd_in_quote_units`); anything else → a [`QuoteError`] that says what to do. Symbols quoted
//! in different assets never share one run, because the account-wide limits need one unit.

use crate::num::Price;
use crate::symbol::Symbol;
use std::fmt;

/// Binance's common quote assets, longest first where one ends another (`FDUSD`/`BUSD`/`TUSD` before `USD`).
pub const QUOTE_ASSETS: [&str; 12] = [
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "DAI", "BTC", "ETH", "BNB", "EUR", "TRY", "USD",
];

/// Quote assets counted as one US dollar by the limits (the dollar itself and dollar stablecoins).
pub const USD_QUOTES: [&str; 7] = ["FDUSD", "USDT", "USDC", "BUSD", "TUSD", "DAI", "USD"];

/// A USD price for one unit of a quote asset, as given by the operator (`--quote-usd ETH=180.5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuoteUsd {
    /// The quote asset (`ETH`).
    pub asset: Symbol,
    /// USD per unit of it; always positive.
    pub usd: Price,
}

impl QuoteUsd {
    /// Parses `ASSET=PRICE` (`ETH=180.5`): a known non-dollar quote asset and a positive exact decimal.
    pub fn parse(s: &str) -> Result<Self, QuoteError> {
        let bad = || QuoteError::BadPrice(s.to_owned());
        let (a, p) = s.split_once('=').ok_or_else(bad)?;
        let asset = Symbol::new(a.trim()).map_err(|_| bad())?;
        let known = QUOTE_ASSETS.contains(&asset.as_str()) && !USD_QUOTES.contains(&asset.as_str());
        let usd = Price::parse(p.trim()).map_err(|_| bad())?;
        if !known || usd.units() <= 0 {
            return Err(bad());
        }
        Ok(Self { asset, usd })
    }
}

impl fmt::Display for QuoteUsd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1 {} = {} USD", self.asset, self.usd)
    }
}

/// The unit of a run's amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunUnits {
    /// Every symbol is dollar-quoted: amounts are USD and the limits apply as they are.
    Usd,
    /// Every symbol is quoted in this one asset; the USD settings are converted at the given price.
    Converted(QuoteUsd),
}

/// Why a set of symbols cannot be traded against USD limits. Every message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// A `--quote-usd` value that is not `ASSET=PRICE`.
    #[error("--quote-usd {0}: expected ASSET=PRICE with a non-dollar quote asset and a positive USD price, e.g. ETH=180.5")]
    BadPrice(String),
    /// The symbol ends in no known quote asset.
    #[error("cannot tell the quote asset of {0}, so its amounts cannot be compared with the USD limits; trade a pair quoted in USDT, USDC or another known quote asset ({known})", known = QUOTE_ASSETS.join(", "))]
    Unknown(Symbol),
    /// A non-dollar quote asset without a USD price.
    #[error("{symbol} is quoted in {asset}, but position sizes and loss limits are in USD: without a USD price a $500 position would be 500 {asset}. Pass the USD price of one {asset} (--quote-usd {asset}=PRICE) or use a USD-quoted pair such as {base}USDT")]
    NeedsPrice {
        /// The symbol.
        symbol: Symbol,
        /// Its quote asset.
        asset: &'static str,
        /// The symbol without the quote asset, for the suggestion.
        base: String,
    },
    /// Symbols quoted in different assets in one run.
    #[error("{a} (quoted in {qa}) and {b} (quoted in {qb}) cannot share one run: the account-wide limits need one unit; run them separately")]
    Mixed {
        /// One symbol.
        a: Symbol,
        /// Its quote (`USD` for any dollar).
        qa: &'static str,
        /// The other.
        b: Symbol,
        /// Its quote.
        qb: &'static str,
    },
}

/// Decides the unit of a run over `symbols` (see the module docs). `prices` are the operator's USD prices of
/// non-dollar quote assets; a price for an asset no symbol uses is ignored.
pub fn run_units(symbols: &[Symbol], prices: &[QuoteUsd]) -> Result<RunUnits, QuoteError> {
    let mut first: Option<(Symbol, &'static str)> = None;
    for &s in symbols {
        let q = s.quote_asset().ok_or(QuoteError::Unknown(s))?;
        let q = if USD_QUOTES.contains(&q) { "USD" } else { q };
        match first {
            None => first = Some((s, q)),
            Some((a, qa)) if qa != q => return Err(QuoteError::Mixed { a, qa, b: s, qb: q }),
            Some(_) => {}
        }
    }
    match first {
        None | Some((_, "USD")) => Ok(RunUnits::Usd),
        Some((symbol, asset)) => prices
            .iter()
            .find(|p| p.asset.as_str() == asset)
            .map(|p| RunUnits::Converted(*p))
            .ok_or_else(|| QuoteError::NeedsPrice {
                symbol,
                asset,
                base: symbol.as_str()[..symbol.as_str().len() - asset.len()].to_owned(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syms(v: &[&str]) -> Vec<Symbol> {
        v.iter().map(|s| Symbol::new(s).unwrap()).collect()
    }

    #[test]
    fn dollar_pairs_are_usd_and_others_need_a_price() {
        assert_eq!(
            run_units(&syms(&["BTCUSDT", "ETHUSDC"]), &[]),
            Ok(RunUnits::Usd)
        );
        let e = run_units(&syms(&["XRPETH"]), &[]).unwrap_err();
        assert!(matches!(e, QuoteError::NeedsPrice { asset: "ETH", .. }));
        let m = e.to_string();
        assert!(
            m.contains("--quote-usd ETH=") && m.contains("XRPUSDT"),
            "{m}"
        );
        let eth = QuoteUsd::parse("ETH=180.5").unwrap();
        assert_eq!(eth.usd, Price::parse("180.5").unwrap());
        assert_eq!(
            run_units(&syms(&["XRPETH"]), &[eth]),
            Ok(RunUnits::Converted(eth))
        );
        assert_eq!(eth.to_string(), "1 ETH = 180.5 USD");
    }

    #[test]
    fn mixed_unknown_and_bad_prices_are_refused() {
        let eth = QuoteUsd::parse("ETH=180").unwrap();
        assert!(matches!(
            run_units(&syms(&["XRPUSDT", "XRPETH"]), &[eth]),
            Err(QuoteError::Mixed {
                qa: "USD",
                qb: "ETH",
                ..
            })
        ));
        assert!(matches!(
            run_units(&syms(&["FOO"]), &[]),
            Err(QuoteError::Unknown(_))
        ));
        for bad in ["ETH", "ETH=0", "ETH=-1", "USDT=1", "XYZ=2", "ETH=abc"] {
            assert!(QuoteUsd::parse(bad).is_err(), "{bad}");
        }
    }
}
