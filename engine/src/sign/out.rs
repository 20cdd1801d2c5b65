//! A bounds-checked cursor over a caller's byte buffer, and small stack-rendered numbers.

use super::SignError;

/// Writes into the front of a borrowed buffer; every write checks the bound and fails with
/// [`SignError::BufferTooSmall`] instead of panicking.
pub(crate) struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Out<'a> {
    #[inline]
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }
    #[inline]
    pub fn put(&mut self, b: &[u8]) -> Result<(), SignError> {
        let end = self.len + b.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(SignError::BufferTooSmall)?
            .copy_from_slice(b);
        self.len = end;
        Ok(())
    }
    /// What has been written so far and the free space after it, borrowed together so a signature over the
    /// written bytes can go straight into the free space.
    #[inline]
    pub fn split(&mut self) -> (&[u8], &mut [u8]) {
        let (a, b) = self.buf.split_at_mut(self.len);
        (a, b)
    }
    #[inline]
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }
}

/// A number rendered as ASCII on the stack (an integer, or an exact decimal with fixed fractional digits).
#[derive(Clone, Copy)]
pub(crate) struct Num {
    buf: [u8; 40],
    len: u8,
}

impl Num {
    /// Exact decimal from units of 10⁻⁸ with `decimals` fractional digits; `None` when that would drop digits.
    #[inline]
    pub fn decimal(units: i64, decimals: u32) -> Option<Self> {
        let mut buf = [0u8; 40];
        let n = aegis_shared::num::write_units(units, decimals, &mut buf)?;
        Some(Self { buf, len: n as u8 })
    }
    /// Unsigned integer.
    #[inline]
    pub fn int(mut v: u64) -> Self {
        let mut tmp = [0u8; 40];
        let mut p = tmp.len();
        loop {
            p -= 1;
            tmp[p] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let n = tmp.len() - p;
        let mut buf = [0u8; 40];
        buf[..n].copy_from_slice(&tmp[p..]);
        Self { buf, len: n as u8 }
    }
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_decimals() {
        for v in [0u64, 7, 10, 1_591_702_613_943, u64::MAX] {
            assert_eq!(Num::int(v).as_bytes(), v.to_string().as_bytes());
        }
        assert_eq!(
            Num::decimal(900_000_000_000, 2).unwrap().as_bytes(),
            b"9000.00"
        );
        assert!(Num::decimal(1, 2).is_none());
    }

    #[test]
    fn out_refuses_overflow() {
        let mut b = [0u8; 4];
        let mut o = Out::new(&mut b);
        o.put(b"abc").unwrap();
        assert_eq!(o.put(b"de"), Err(SignError::BufferTooSmall));
        o.put(b"d").unwrap();
        assert_eq!(o.len(), 4);
    }
}
