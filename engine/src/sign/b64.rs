//! Standard base64 (RFC 4648, `+/`, `=` padding) and the percent-encoding REST needs for it, allocation-free.
//!
//! Hand-written because it is twelve lines and the hot path wants to write straight into its own buffer.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Length of the base64 text for `n` input bytes (with padding).
#[inline]
pub const fn encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Writes `src` as padded standard base64 into the front of `dst`; returns the length, or `None` when `dst` is
/// too short.
#[inline]
pub fn encode(src: &[u8], dst: &mut [u8]) -> Option<usize> {
    let n = encoded_len(src.len());
    let dst = dst.get_mut(..n)?;
    let mut chunks = src.chunks_exact(3);
    let mut o = 0;
    for c in &mut chunks {
        let v = (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32;
        dst[o] = ALPHABET[(v >> 18) as usize & 63];
        dst[o + 1] = ALPHABET[(v >> 12) as usize & 63];
        dst[o + 2] = ALPHABET[(v >> 6) as usize & 63];
        dst[o + 3] = ALPHABET[v as usize & 63];
        o += 4;
    }
    match *chunks.remainder() {
        [a] => {
            let v = (a as u32) << 16;
            dst[o] = ALPHABET[(v >> 18) as usize & 63];
            dst[o + 1] = ALPHABET[(v >> 12) as usize & 63];
            dst[o + 2] = b'=';
            dst[o + 3] = b'=';
        }
        [a, b] => {
            let v = (a as u32) << 16 | (b as u32) << 8;
            dst[o] = ALPHABET[(v >> 18) as usize & 63];
            dst[o + 1] = ALPHABET[(v >> 12) as usize & 63];
            dst[o + 2] = ALPHABET[(v >> 6) as usize & 63];
            dst[o + 3] = b'=';
        }
        _ => {}
    }
    Some(n)
}

/// Copies base64 text into `dst`, percent-encoding the three characters that are not safe in a query string
/// (`+` → `%2B`, `/` → `%2F`, `=` → `%3D`). Returns the length, or `None` when `dst` is too short.
#[inline]
pub fn percent_encode_b64(src: &[u8], dst: &mut [u8]) -> Option<usize> {
    let mut o = 0;
    for &c in src {
        let esc: &[u8] = match c {
            b'+' => b"%2B",
            b'/' => b"%2F",
            b'=' => b"%3D",
            _ => {
                *dst.get_mut(o)? = c;
                o += 1;
                continue;
            }
        };
        dst.get_mut(o..o + 3)?.copy_from_slice(esc);
        o += 3;
    }
    Some(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn rfc4648_vectors() {
        let cases: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        let mut out = [0u8; 16];
        for (src, want) in cases {
            let n = encode(src, &mut out).unwrap();
            assert_eq!(&out[..n], want.as_bytes());
        }
    }

    #[test]
    fn agrees_with_the_base64_crate_on_every_length_and_byte() {
        let data: Vec<u8> = (0..=255u8).rev().chain(0..=255u8).collect();
        let mut out = vec![0u8; encoded_len(data.len())];
        for len in 0..data.len() {
            let n = encode(&data[..len], &mut out).unwrap();
            let want = base64::engine::general_purpose::STANDARD.encode(&data[..len]);
            assert_eq!(&out[..n], want.as_bytes(), "len {len}");
        }
    }

    #[test]
    fn short_buffers_are_refused() {
        let mut out = [0u8; 3];
        assert_eq!(encode(b"a", &mut out), None);
        assert_eq!(percent_encode_b64(b"a+", &mut out), None);
    }

    #[test]
    fn percent_encodes_only_the_unsafe_characters() {
        let mut out = [0u8; 32];
        let n = percent_encode_b64(b"ab+c/d==", &mut out).unwrap();
        assert_eq!(&out[..n], b"ab%2Bc%2Fd%3D%3D");
    }
}
