//! Exact decimal money types.
//!
//! Binance sends every price and quantity as a decimal string with at most 8 fractional digits. We keep them as
//! integers counting units of 10⁻⁸ (`i64`), so every value on the wire is represented exactly and arithmetic is
//! integer arithmetic: no float ever touches an order. (The `fixed` crate was considered and rejected: its binary
//! fractions cannot represent 0.1 exactly.) Range: ±92,233,720,368 in whole units, far above any price, quantity or
//! USD amount this bot handles.
//!
//! Products that create more than 8 fractional digits (notional = price × qty, fee = notional × rate) are rounded
//! half away from zero to 10⁻⁸, which is the precision Binance reports commissions and PnL in.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Number of fractional decimal digits every money type carries.
pub const DECIMALS: u32 = 8;
/// `10^DECIMALS`: the integer value of `1.0`.
pub const SCALE: i64 = 100_000_000;

/// Why a decimal string could not become a money value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumError {
    /// The input was empty or held something other than `[-]digits[.digits]`.
    #[error("not a decimal number")]
    Malformed,
    /// More than 8 significant fractional digits (Binance's -1111 "Precision is over the maximum").
    #[error("more than 8 fractional digits")]
    TooPrecise,
    /// The value does not fit into the supported range.
    #[error("number out of range")]
    Overflow,
}

/// Parses `[-]digits[.digits]` into units of 10⁻⁸, exactly. Extra fractional digits are accepted only when they
/// are zeros, so `"1.000000000"` is fine and `"0.000000001"` is [`NumError::TooPrecise`]. Allocation-free.
#[inline]
pub fn parse_units(s: &[u8]) -> Result<i64, NumError> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(_) => (false, s),
        None => return Err(NumError::Malformed),
    };
    if digits.is_empty() {
        return Err(NumError::Malformed);
    }
    let mut int: i64 = 0;
    let mut i = 0;
    let mut saw_digit = false;
    while i < digits.len() {
        let c = digits[i];
        if c == b'.' {
            break;
        }
        if !c.is_ascii_digit() {
            return Err(NumError::Malformed);
        }
        saw_digit = true;
        int = int
            .checked_mul(10)
            .and_then(|v| v.checked_add((c - b'0') as i64))
            .ok_or(NumError::Overflow)?;
        i += 1;
    }
    let mut frac: i64 = 0;
    let mut frac_digits = 0u32;
    if i < digits.len() {
        // skip '.'
        i += 1;
        if i == digits.len() && !saw_digit {
            return Err(NumError::Malformed);
        }
        while i < digits.len() {
            let c = digits[i];
            if !c.is_ascii_digit() {
                return Err(NumError::Malformed);
            }
            saw_digit = true;
            if frac_digits < DECIMALS {
                frac = frac * 10 + (c - b'0') as i64;
                frac_digits += 1;
            } else if c != b'0' {
                return Err(NumError::TooPrecise);
            }
            i += 1;
        }
    }
    if !saw_digit {
        return Err(NumError::Malformed);
    }
    while frac_digits < DECIMALS {
        frac *= 10;
        frac_digits += 1;
    }
    let v = int
        .checked_mul(SCALE)
        .and_then(|v| v.checked_add(frac))
        .ok_or(NumError::Overflow)?;
    Ok(if neg { -v } else { v })
}

/// Writes `units` (10⁻⁸) as a decimal with exactly `decimals` fractional digits (0..=8) into `buf`, returning the
/// number of bytes written. Fails (returns `None`) if `buf` is too small or the value has non-zero digits beyond
/// `decimals` — an order is never silently rounded while it is being written. Allocation-free.
#[inline]
pub fn write_units(units: i64, decimals: u32, buf: &mut [u8]) -> Option<usize> {
    if decimals > DECIMALS {
        return None;
    }
    let drop = 10i64.pow(DECIMALS - decimals);
    if units % drop != 0 {
        return None;
    }
    let neg = units < 0;
    let mag = units.unsigned_abs();
    let int = mag / SCALE as u64;
    let frac = (mag % SCALE as u64) / drop as u64;
    // Render right to left into a scratch array, then copy.
    let mut tmp = [0u8; 40];
    let mut p = tmp.len();
    let mut f = frac;
    for _ in 0..decimals {
        p -= 1;
        tmp[p] = b'0' + (f % 10) as u8;
        f /= 10;
    }
    if decimals > 0 {
        p -= 1;
        tmp[p] = b'.';
    }
    let mut n = int;
    loop {
        p -= 1;
        tmp[p] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if neg {
        p -= 1;
        tmp[p] = b'-';
    }
    let len = tmp.len() - p;
    if buf.len() < len {
        return None;
    }
    buf[..len].copy_from_slice(&tmp[p..]);
    Some(len)
}

/// Number of fractional digits needed to write a step such as a tickSize (`0.0100` → 2).
pub fn decimals_of(step_units: i64) -> u32 {
    let mut d = DECIMALS;
    let mut v = step_units;
    while d > 0 && v != 0 && v % 10 == 0 {
        v /= 10;
        d -= 1;
    }
    d
}

fn fmt_units(units: i64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    // Shortest exact form: trailing fractional zeros dropped.
    let mut decimals = DECIMALS;
    let mut v = units;
    while decimals > 0 && v % 10 == 0 {
        v /= 10;
        decimals -= 1;
    }
    let mut buf = [0u8; 40];
    // Invariant: decimals was chosen so that no digit is lost and 40 bytes hold any i64 rendering.
    let n = write_units(units, decimals, &mut buf).ok_or(fmt::Error)?;
    // Invariant: write_units emits ASCII only.
    f.pad(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
}

fn round_div(num: i128, den: i128) -> i128 {
    // Half away from zero.
    let q = num / den;
    let r = num % den;
    if 2 * r.abs() >= den.abs() {
        q + num.signum() * den.signum()
    } else {
        q
    }
}

/// Narrows a 128-bit intermediate, saturating at the i64 range.
#[inline]
fn saturate(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The product of two amounts in units of 10⁻⁸, back in units of 10⁻⁸: a 128-bit intermediate so it cannot
/// overflow before the final narrowing, rounded half away from zero.
#[inline]
fn mul_scaled(a: i64, b: i64) -> i64 {
    saturate(round_div(a as i128 * b as i128, SCALE as i128))
}

macro_rules! money_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            /// Zero.
            pub const ZERO: Self = Self(0);
            /// One whole unit.
            pub const ONE: Self = Self(SCALE);

            /// From raw units of 10⁻⁸.
            #[inline]
            pub const fn from_units(units: i64) -> Self {
                Self(units)
            }
            /// Raw units of 10⁻⁸.
            #[inline]
            pub const fn units(self) -> i64 {
                self.0
            }
            /// From a whole number.
            #[inline]
            pub const fn from_int(v: i64) -> Self {
                Self(v * SCALE)
            }
            /// Parses an exact decimal string (see [`parse_units`]).
            #[inline]
            pub fn parse(s: &str) -> Result<Self, NumError> {
                parse_units(s.as_bytes()).map(Self)
            }
            /// Parses exact decimal ASCII bytes (see [`parse_units`]).
            #[inline]
            pub fn parse_bytes(s: &[u8]) -> Result<Self, NumError> {
                parse_units(s).map(Self)
            }
            /// Writes the value with exactly `decimals` fractional digits (see [`write_units`]).
            #[inline]
            pub fn write(self, decimals: u32, buf: &mut [u8]) -> Option<usize> {
                write_units(self.0, decimals, buf)
            }
            /// True when zero.
            #[inline]
            pub const fn is_zero(self) -> bool {
                self.0 == 0
            }
            /// Absolute value.
            #[inline]
            pub const fn abs(self) -> Self {
                Self(self.0.abs())
            }
            /// Checked addition.
            #[inline]
            pub fn checked_add(self, o: Self) -> Option<Self> {
                self.0.checked_add(o.0).map(Self)
            }
            /// Checked subtraction.
            #[inline]
            pub fn checked_sub(self, o: Self) -> Option<Self> {
                self.0.checked_sub(o.0).map(Self)
            }
            /// Saturating addition (for counters that must never wrap).
            #[inline]
            pub const fn saturating_add(self, o: Self) -> Self {
                Self(self.0.saturating_add(o.0))
            }
            /// Saturating subtraction.
            #[inline]
            pub const fn saturating_sub(self, o: Self) -> Self {
                Self(self.0.saturating_sub(o.0))
            }
            /// True when the value is an exact multiple of `step` (tickSize/stepSize). A zero step accepts all.
            #[inline]
            pub const fn is_multiple_of(self, step: Self) -> bool {
                step.0 == 0 || self.0 % step.0 == 0
            }
            /// Rounds toward negative infinity to a multiple of `step`. A zero or negative step returns `self`.
            #[inline]
            pub const fn floor_to(self, step: Self) -> Self {
                if step.0 <= 0 {
                    return self;
                }
                Self(self.0.div_euclid(step.0) * step.0)
            }
            /// Rounds toward positive infinity to a multiple of `step`.
            #[inline]
            pub const fn ceil_to(self, step: Self) -> Self {
                if step.0 <= 0 {
                    return self;
                }
                let f = self.0.div_euclid(step.0) * step.0;
                if f == self.0 { self } else { Self(f + step.0) }
            }
            /// Negation.
            #[inline]
            pub const fn neg(self) -> Self {
                Self(-self.0)
            }
            /// Sign: -1, 0 or 1.
            #[inline]
            pub const fn signum(self) -> i64 {
                self.0.signum()
            }
            /// Lossy conversion for display and statistics only — never feed it back into an order.
            #[inline]
            pub fn to_f64_lossy(self) -> f64 {
                self.0 as f64 / SCALE as f64
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt_units(self.0, f)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }
        impl std::str::FromStr for $name {
            type Err = NumError;
            fn from_str(s: &str) -> Result<Self, NumError> {
                Self::parse(s)
            }
        }
        impl std::ops::Add for $name {
            type Output = Self;
            #[inline]
            fn add(self, o: Self) -> Self {
                Self(self.0 + o.0)
            }
        }
        impl std::ops::Sub for $name {
            type Output = Self;
            #[inline]
            fn sub(self, o: Self) -> Self {
                Self(self.0 - o.0)
            }
        }
        impl std::ops::AddAssign for $name {
            #[inline]
            fn add_assign(&mut self, o: Self) {
                self.0 += o.0;
            }
        }
        impl std::ops::SubAssign for $name {
            #[inline]
            fn sub_assign(&mut self, o: Self) {
                self.0 -= o.0;
            }
        }
        impl std::ops::Neg for $name {
            type Output = Self;
            #[inline]
            fn neg(self) -> Self {
                Self(-self.0)
            }
        }
    };
}

money_type!(
    /// A price in quote currency (USDT), exact to 10⁻⁸.
    Price
);
money_type!(
    /// A quantity of the base asset, exact to 10⁻⁸. Signed where it is a position (long > 0, short < 0).
    Qty
);
money_type!(
    /// An amount of quote currency (USD/USDT): notional, fee, PnL, limits. Exact to 10⁻⁸.
    Notional
);
money_type!(
    /// A dimensionless rate such as a fee rate (`0.0004` = 0.04 %) or a percentage as a fraction, exact to 10⁻⁸.
    Rate
);

impl Price {
    /// `price × qty`, rounded half away from zero to 10⁻⁸. Uses a 128-bit intermediate so it cannot overflow
    /// before the final narrowing; saturates at the i64 range.
    #[inline]
    pub fn notional(self, qty: Qty) -> Notional {
        Notional(mul_scaled(self.0, qty.0))
    }

    /// Mid price of a bid and an ask, rounded down to 10⁻⁸.
    #[inline]
    pub fn mid(bid: Price, ask: Price) -> Price {
        Price(((bid.0 as i128 + ask.0 as i128) / 2) as i64)
    }
}

impl Notional {
    /// `self × rate`, rounded half away from zero to 10⁻⁸ (how a fee is computed from a notional).
    #[inline]
    pub fn mul_rate(self, rate: Rate) -> Notional {
        Notional(mul_scaled(self.0, rate.0))
    }

    /// A USD amount in units of a quote asset worth `usd_per_unit` USD (`self / usd_per_unit`), rounded toward
    /// zero, so a limit converted this way never allows more than the USD one. `None` for a non-positive rate.
    #[inline]
    pub fn usd_to_quote(self, usd_per_unit: Price) -> Option<Notional> {
        if usd_per_unit.0 <= 0 {
            return None;
        }
        Some(Notional(saturate(
            (self.0 as i128 * SCALE as i128) / usd_per_unit.0 as i128,
        )))
    }

    /// An amount of a quote asset worth `usd_per_unit` USD each, in USD (`self × usd_per_unit`, rounded half
    /// away from zero to 10⁻⁸).
    #[inline]
    pub fn quote_to_usd(self, usd_per_unit: Price) -> Notional {
        Notional(mul_scaled(self.0, usd_per_unit.0))
    }

    /// How much base quantity `self` buys at `price`, rounded down to a multiple of `step` (never more than
    /// the notional allows). `None` for a non-positive price.
    #[inline]
    pub fn qty_at(self, price: Price, step: Qty) -> Option<Qty> {
        if price.0 <= 0 {
            return None;
        }
        let raw = (self.0 as i128 * SCALE as i128) / price.0 as i128;
        Some(Qty(saturate(raw)).floor_to(step))
    }
}

impl Qty {
    /// Realized PnL of closing `self` (signed position size: long > 0) from `entry` at `exit`:
    /// `(exit - entry) × qty`, exact to 10⁻⁸.
    #[inline]
    pub fn pnl(self, entry: Price, exit: Price) -> Notional {
        Price(exit.0 - entry.0).notional(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_binance_strings_exactly() {
        assert_eq!(Price::parse("25.35190000").unwrap().units(), 2_535_190_000);
        assert_eq!(Price::parse("0.001").unwrap().units(), 100_000);
        assert_eq!(Qty::parse("100").unwrap(), Qty::from_int(100));
        assert_eq!(
            Price::parse("6679.50671178").unwrap().units(),
            667_950_671_178
        );
        assert_eq!(Price::parse("-1.5").unwrap().units(), -150_000_000);
        assert_eq!(Price::parse(".5").unwrap().units(), 50_000_000);
        assert_eq!(Price::parse("5.").unwrap().units(), 500_000_000);
        assert_eq!(Price::parse("1.0000000000").unwrap(), Price::ONE);
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "", "-", ".", "1e5", "abc", "1.2.3", " 1", "1 ", "--1", "0x10",
        ] {
            assert_eq!(Price::parse(bad), Err(NumError::Malformed), "{bad:?}");
        }
        assert_eq!(Price::parse("0.000000001"), Err(NumError::TooPrecise));
        assert_eq!(
            Price::parse("99999999999999999999"),
            Err(NumError::Overflow)
        );
    }

    #[test]
    fn writes_with_fixed_decimals_and_refuses_to_round() {
        let mut b = [0u8; 32];
        let p = Price::parse("9000.1").unwrap();
        let n = p.write(2, &mut b).unwrap();
        assert_eq!(&b[..n], b"9000.10");
        let n = p.write(1, &mut b).unwrap();
        assert_eq!(&b[..n], b"9000.1");
        assert_eq!(
            p.write(0, &mut b),
            None,
            "writing must never round silently"
        );
        let n = Qty::from_int(-3).write(0, &mut b).unwrap();
        assert_eq!(&b[..n], b"-3");
        let mut small = [0u8; 3];
        assert_eq!(p.write(2, &mut small), None);
    }

    #[test]
    fn display_is_shortest_exact() {
        assert_eq!(Price::parse("25.35190000").unwrap().to_string(), "25.3519");
        assert_eq!(Notional::from_int(0).to_string(), "0");
        assert_eq!(Notional::from_units(-1).to_string(), "-0.00000001");
    }

    #[test]
    fn tick_and_step_rounding() {
        let tick = Price::parse("0.10").unwrap();
        let p = Price::parse("100.37").unwrap();
        assert_eq!(p.floor_to(tick), Price::parse("100.3").unwrap());
        assert_eq!(p.ceil_to(tick), Price::parse("100.4").unwrap());
        assert!(!p.is_multiple_of(tick));
        assert!(p.floor_to(tick).is_multiple_of(tick));
        assert_eq!(decimals_of(tick.units()), 1);
        assert_eq!(decimals_of(Qty::parse("0.001").unwrap().units()), 3);
        assert_eq!(decimals_of(Qty::ONE.units()), 0);
    }

    #[test]
    fn notional_fee_and_pnl() {
        let p = Price::parse("50000.5").unwrap();
        let q = Qty::parse("0.002").unwrap();
        assert_eq!(p.notional(q), Notional::parse("100.001").unwrap());
        let fee = p.notional(q).mul_rate(Rate::parse("0.0004").unwrap());
        assert_eq!(fee, Notional::parse("0.0400004").unwrap());
        let long = Qty::parse("0.5").unwrap();
        assert_eq!(
            long.pnl(Price::from_int(100), Price::from_int(110)),
            Notional::from_int(5)
        );
        assert_eq!(
            long.neg().pnl(Price::from_int(100), Price::from_int(110)),
            Notional::from_int(-5)
        );
        let q = Notional::from_int(100)
            .qty_at(Price::parse("30000").unwrap(), Qty::parse("0.001").unwrap())
            .unwrap();
        assert_eq!(q, Qty::parse("0.003").unwrap());
    }

    proptest! {
        #[test]
        fn usd_to_quote_never_exceeds_the_usd_amount(usd in 0i64..1_000_000_000_000_000, rate in 100_000i64..10_000_000_000_000) {
            let (n, r) = (Notional::from_units(usd), Price::from_units(rate));
            let q = n.usd_to_quote(r).unwrap();
            // Worth at most the USD amount, and less than one unit of 10⁻⁸ quote below it (rates from 0.001 USD and
            // amounts to 10⁷ USD, where nothing saturates).
            let back = q.units() as i128 * rate as i128;
            prop_assert!(back <= usd as i128 * SCALE as i128);
            prop_assert!(back + rate as i128 > usd as i128 * SCALE as i128);
        }

        #[test]
        fn write_then_parse_round_trips(units in -9_000_000_000_000_000i64..9_000_000_000_000_000i64) {
            let mut b = [0u8; 40];
            let n = write_units(units, DECIMALS, &mut b).unwrap();
            prop_assert_eq!(parse_units(&b[..n]).unwrap(), units);
            let shown = Price::from_units(units).to_string();
            prop_assert_eq!(Price::parse(&shown).unwrap().units(), units);
        }

        #[test]
        fn floor_to_step_is_a_multiple_and_never_above(v in -1_000_000_000_000i64..1_000_000_000_000i64, step in 1i64..10_000_000_000i64) {
            let x = Qty::from_units(v);
            let s = Qty::from_units(step);
            let f = x.floor_to(s);
            prop_assert!(f.is_multiple_of(s));
            prop_assert!(f <= x);
            prop_assert!(x - f < s);
            let c = x.ceil_to(s);
            prop_assert!(c.is_multiple_of(s));
            prop_assert!(c >= x);
            prop_assert!(c - x < s);
        }

        #[test]
        fn qty_at_never_exceeds_the_notional(n in 1i64..1_000_000_000_000_000, p in 1i64..10_000_000_000_000, step in 1i64..100_000_000) {
            let q = Notional::from_units(n).qty_at(Price::from_units(p), Qty::from_units(step)).unwrap();
            prop_assert!(q.is_multiple_of(Qty::from_units(step)));
            // Exact check in 128 bits: q × p ≤ n × SCALE.
            prop_assert!((q.units() as i128) * (p as i128) <= (n as i128) * (SCALE as i128));
        }

        #[test]
        fn pnl_is_antisymmetric(q in -1_000_000_000_000i64..1_000_000_000_000, a in 1i64..10_000_000_000_000, b in 1i64..10_000_000_000_000) {
            let q = Qty::from_units(q);
            let (a, b) = (Price::from_units(a), Price::from_units(b));
            prop_assert_eq!(q.pnl(a, b), -q.pnl(b, a));
        }
    }
}
