//! Lowercase hex without `format!`: a 512-byte table turns each input byte into two output bytes with one load.

/// Two ASCII hex digits for every byte value, `00`..`ff`, built at compile time.
const TABLE: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    t
};

/// Writes `src` as lowercase hex into the front of `dst` and returns the number of bytes written
/// (`2 * src.len()`), or `None` when `dst` is shorter than that. Allocation-free.
#[inline]
pub fn encode_lower(src: &[u8], dst: &mut [u8]) -> Option<usize> {
    let n = src.len() * 2;
    let dst = dst.get_mut(..n)?;
    for (pair, &b) in dst.chunks_exact_mut(2).zip(src) {
        pair.copy_from_slice(&TABLE[b as usize]);
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_formatting_for_every_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        let mut out = [0u8; 512];
        assert_eq!(encode_lower(&all, &mut out), Some(512));
        let expected: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(&out[..], expected.as_bytes());
    }

    #[test]
    fn refuses_a_short_buffer() {
        let mut out = [0u8; 3];
        assert_eq!(encode_lower(&[1, 2], &mut out), None);
        assert_eq!(encode_lower(&[0xab], &mut out), Some(2));
        assert_eq!(&out[..2], b"ab");
    }
}
