//! Exact values in Postgres' binary wire format, so the server stores them without any arithmetic or parsing.
//!
//! - [`Dec8`]: an integer count of 1e-8 units (the engine's money representation) sent as `NUMERIC` with scale 8.
//! - [`TsMs`]: milliseconds since the Unix epoch sent as `TIMESTAMPTZ`.
//!
//! Both are exact: a `NUMERIC` is base-10000 digits, and a timestamp is integer microseconds since 2000-01-01.

use bytes::BytesMut;
use std::error::Error;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

type BoxError = Box<dyn Error + Sync + Send>;

/// A money value in units of 1e-8, written as `NUMERIC` (dscale 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dec8(pub i64);

impl ToSql for Dec8 {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        // Layout: ndigits i16, weight i16, sign u16, dscale u16, then ndigits base-10000 digits (i16), most
        // significant first; `weight` is the power of 10000 of the first digit.
        let neg = self.0 < 0;
        let abs = self.0.unsigned_abs();
        let int = abs / 100_000_000;
        let frac = abs % 100_000_000;
        let mut int_groups = [0u16; 5]; // u64 / 1e8 < 1.9e11 needs at most 3 groups; room to spare
        let mut n_int = 0usize;
        let mut v = int;
        while v > 0 {
            int_groups[n_int] = (v % 10_000) as u16;
            v /= 10_000;
            n_int += 1;
        }
        let mut digits: [u16; 7] = [0; 7];
        let mut n = 0usize;
        for i in (0..n_int).rev() {
            digits[n] = int_groups[i];
            n += 1;
        }
        digits[n] = (frac / 10_000) as u16;
        digits[n + 1] = (frac % 10_000) as u16;
        n += 2;
        // Trailing zero groups carry nothing (dscale keeps the display scale).
        while n > 0 && digits[n - 1] == 0 {
            n -= 1;
        }
        // Leading zero groups (value < 1): drop them and lower the weight.
        let mut first = 0usize;
        let mut weight = n_int as i16 - 1;
        while first < n && digits[first] == 0 {
            first += 1;
            weight -= 1;
        }
        let nd = n - first;
        if nd == 0 {
            weight = 0;
        }
        out.extend_from_slice(&(nd as i16).to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&(if neg && nd > 0 { 0x4000u16 } else { 0 }).to_be_bytes());
        out.extend_from_slice(&8u16.to_be_bytes());
        for d in &digits[first..n] {
            out.extend_from_slice(&d.to_be_bytes());
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

/// Milliseconds since 1970-01-01 UTC, written as `TIMESTAMPTZ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsMs(pub i64);

/// 2000-01-01T00:00:00Z (Postgres' timestamp epoch) in Unix milliseconds.
const PG_EPOCH_MS: i64 = 946_684_800_000;

impl ToSql for TsMs {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let us = (self.0 - PG_EPOCH_MS)
            .checked_mul(1000)
            .ok_or("timestamp out of range")?;
        out.extend_from_slice(&us.to_be_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }

    to_sql_checked!();
}
