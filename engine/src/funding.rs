//! Splitting one exchange-side amount (a funding settlement) over the modes that share a symbol's position.
//!
//! Binance settles funding per symbol on the account's net position; the engine keeps one position per
//! (symbol, mode). Each mode's fair part is `amount × q_mode / q_net` (funding is linear in the signed size, so a
//! mode short against a long net pays what the long one receives). Parts are rounded toward zero and the
//! remainder goes to the mode with the largest |size|, so the parts always add up to the exchange's amount
//! exactly. When the engine's net is flat (its books disagree with the exchange's, e.g. before a reconciliation)
//! the whole amount goes to the adoption mode rather than being lost.

use aegis_shared::{Notional, Qty, StrategyMode};

/// Number of modes.
pub const MODES: usize = StrategyMode::ALL.len();

/// Splits `amount` over modes holding signed sizes `qty` (indexed like [`StrategyMode::ALL`]). `fallback` is
/// the mode index that takes everything when the net size is zero. Exact: the parts sum to `amount`.
pub fn split(amount: Notional, qty: [Qty; MODES], fallback: usize) -> [Notional; MODES] {
    let mut out = [Notional::ZERO; MODES];
    let net: i128 = qty.iter().map(|q| q.units() as i128).sum();
    if net == 0 {
        out[fallback.min(MODES - 1)] = amount;
        return out;
    }
    let a = amount.units() as i128;
    let mut given: i128 = 0;
    let mut big = 0;
    for (i, q) in qty.iter().enumerate() {
        let q = q.units() as i128;
        // |a × q| < 2^63 × 2^63: fits i128.
        let part = a * q / net;
        out[i] = Notional::from_units(part.clamp(i64::MIN as i128, i64::MAX as i128) as i64);
        given += out[i].units() as i128;
        if q.abs() > (qty[big].units() as i128).abs() {
            big = i;
        }
    }
    let rest = a - given;
    out[big] = Notional::from_units((out[big].units() as i128 + rest) as i64);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(s: &str) -> Qty {
        Qty::parse(s).unwrap()
    }

    #[test]
    fn thirds_and_opposite_modes() {
        let parts = split(
            Notional::parse("-0.1").unwrap(),
            [q("0.001"), q("0.001"), q("0.001"), Qty::ZERO],
            0,
        );
        let sum = parts.iter().fold(Notional::ZERO, |a, p| a + *p);
        assert_eq!(sum, Notional::parse("-0.1").unwrap());
        assert_eq!(parts[3], Notional::ZERO);
        // A short mode against a long net pays the opposite sign.
        let parts = split(
            Notional::from_int(-2),
            [q("3"), q("-1"), Qty::ZERO, Qty::ZERO],
            0,
        );
        assert_eq!(parts[0], Notional::from_int(-3));
        assert_eq!(parts[1], Notional::from_int(1));
        // Flat engine, charged account: nothing is lost.
        let parts = split(Notional::from_int(-2), [Qty::ZERO; MODES], 2);
        assert_eq!(parts[2], Notional::from_int(-2));
    }

    proptest! {
        #[test]
        fn parts_always_sum_to_the_exchange_amount(
            amount in -1_000_000_000_000i64..1_000_000_000_000,
            qs in proptest::array::uniform4(-10_000_000_000i64..10_000_000_000),
            fallback in 0usize..4,
        ) {
            let qty = qs.map(Qty::from_units);
            let parts = split(Notional::from_units(amount), qty, fallback);
            let sum: i128 = parts.iter().map(|p| p.units() as i128).sum();
            prop_assert_eq!(sum, amount as i128);
            let net: i128 = qs.iter().map(|&x| x as i128).sum();
            for i in 0..MODES {
                if net != 0 && qs[i] == 0 {
                    // A mode without a position gets nothing, unless it is the one the remainder went to
                    // (only possible when every mode with a position is smaller, which cannot be: ties go to the first).
                    prop_assert_eq!(parts[i].units(), 0);
                }
                if net != 0 {
                    // Each part is within one unit of the exact share (plus the remainder, < MODES units).
                    let exact = amount as i128 * qs[i] as i128;
                    let diff = (parts[i].units() as i128 * net - exact).abs();
                    prop_assert!(diff <= (MODES as i128 + 1) * net.abs(), "part {} off: {:?}", i, parts);
                }
            }
        }
    }
}
