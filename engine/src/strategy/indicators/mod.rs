//! Incremental technical indicators and bar builders for the strategy modes.
//!
//! Every indicator is updated in O(1) per new value and never allocates after construction (the SMA's ring is
//! allocated once in `new`). The math is `f64`: indicators only produce signals; prices and quantities that go
//! into orders stay exact ([`aegis_shared::num`]).
//!
//! Warm-up conventions (checked against the `ta` Python library in `engine/tests/modes_indicators.rs`, reference
//! values made by `tests/reference/make_reference.py`):
//! - [`Ema`]: seeded with the first value (`pandas.ewm(span=n, adjust=False)`), reported ready after `n` values.
//! - [`Sma`]: plain rolling mean, ready after `n` values.
//! - [`Rsi`]: Wilder smoothing (`alpha = 1/n`) seeded with the *average of the first `n` changes* (Wilder's and
//!   TA-Lib's convention). `ta` seeds with the first change instead; the two converge geometrically
//!   (`(1-1/n)^k`), so tests compare after a warm-up of 300 bars.
//! - [`Macd`]: EMA(fast) − EMA(slow), both seeded with the first close; the signal EMA starts at the first MACD
//!   value once the slow EMA is ready. Identical to `ta`.
//! - [`Adx`]: Wilder's original: sums of TR/+DM/−DM over the first `n` changes, then `S − S/n + x`; ADX is the
//!   mean of the first `n` DX values, then Wilder-smoothed. Identical to `ta` from bar `2n−1` on.
//! - [`Atr`]: the first bar's true range is its high − low; seeded with the mean of the first `n` true ranges,
//!   then Wilder-smoothed. Identical to `ta`.

mod adx;
mod bars;
mod ma;
mod macd;
mod rsi;

pub use adx::{Adx, Atr};
pub use bars::{Bar, BarBuilder};
pub use ma::{Ema, Sma};
pub use macd::{Macd, MacdValue};
pub use rsi::Rsi;
