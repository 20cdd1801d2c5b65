//! HMAC-SHA256 request signing with a pre-keyed state.
//!
//! HMAC hashes the key twice (ipad and opad blocks) before it touches the message. Doing that once at start-up and
//! cloning the keyed state for each signature saves two SHA-256 compressions per order, and cloning a fixed-size
//! state never allocates.

use super::hex;
use aegis_shared::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// Length of an HMAC-SHA256 signature in lowercase hex.
pub const HMAC_HEX_LEN: usize = 64;

/// Signs payloads with HMAC-SHA256 (Binance `signature` parameter, lowercase hex).
///
/// The keyed state is as sensitive as the secret itself: `Debug` prints `***` for it.
#[derive(Clone)]
pub struct HmacSigner {
    keyed: Hmac<Sha256>,
}

impl HmacSigner {
    /// Keys a signer with an API secret. The secret's bytes are used as they are (Binance secrets are
    /// case-sensitive ASCII).
    pub fn new(secret: &Secret<String>) -> Self {
        Self::from_key_bytes(secret.expose().as_bytes())
    }

    /// Keys a signer with raw key bytes.
    pub fn from_key_bytes(key: &[u8]) -> Self {
        // HMAC accepts keys of any length (long keys are hashed first), so this cannot fail.
        let keyed = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        };
        Self { keyed }
    }

    /// The raw 32-byte MAC of the concatenation of `parts` (Binance signs query string + body with no separator).
    #[inline]
    pub fn mac_parts(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = self.keyed.clone();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// Signs `payload` and writes the 64 lowercase hex digits into the front of `out`. Returns the length (64) or
    /// `None` when `out` is shorter than [`HMAC_HEX_LEN`]. Allocation-free.
    #[inline]
    pub fn sign_hex(&self, payload: &[u8], out: &mut [u8]) -> Option<usize> {
        self.sign_parts_hex(&[payload], out)
    }

    /// Like [`HmacSigner::sign_hex`] for a payload given in pieces, e.g. a query string and a form body.
    #[inline]
    pub fn sign_parts_hex(&self, parts: &[&[u8]], out: &mut [u8]) -> Option<usize> {
        let mac = self.mac_parts(parts);
        hex::encode_lower(&mac, out)
    }
}

impl fmt::Debug for HmacSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacSigner { key: *** }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPOT_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
    const FUTURES_SECRET: &str = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9";

    fn hex_of(s: &HmacSigner, parts: &[&[u8]]) -> String {
        let mut out = [0u8; HMAC_HEX_LEN];
        assert_eq!(s.sign_parts_hex(parts, &mut out), Some(64));
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn spot_vectors() {
        let s = HmacSigner::new(&Secret::new(SPOT_SECRET.to_string()));
        assert_eq!(
            hex_of(&s, &[b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"]),
            "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
        );
        // Query string and body are concatenated with no separator.
        assert_eq!(
            hex_of(
                &s,
                &[
                    b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
                    b"quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
                ]
            ),
            "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"
        );
        assert_eq!(
            hex_of(&s, &[b"symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"]),
            "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"
        );
    }

    #[test]
    fn futures_vector_and_corrected_mixed_vector() {
        let s = HmacSigner::new(&Secret::new(FUTURES_SECRET.to_string()));
        assert_eq!(
            hex_of(&s, &[b"symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000&timestamp=1591702613943"]),
            "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"
        );
        assert_eq!(
            hex_of(
                &s,
                &[
                    b"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC",
                    b"quantity=1&price=9000&recvWindow=5000&timestamp=1591702613943"
                ]
            ),
            "30baaf0fab549bbeda7f5ef201898b34122da25fd23c646cac2c529aebe670a4"
        );
    }

    #[test]
    fn pre_keyed_state_is_reused_not_consumed() {
        // Signing twice with the same signer gives the same answer as a freshly keyed one: the clone per signature
        // leaves the keyed state untouched.
        let s = HmacSigner::from_key_bytes(b"k");
        let a = s.mac_parts(&[b"payload"]);
        let _ = s.mac_parts(&[b"something else"]);
        assert_eq!(s.mac_parts(&[b"payload"]), a);
        assert_eq!(HmacSigner::from_key_bytes(b"k").mac_parts(&[b"payload"]), a);
        assert_ne!(HmacSigner::from_key_bytes(b"K").mac_parts(&[b"payload"]), a);
    }

    #[test]
    fn short_output_buffer_is_refused() {
        let s = HmacSigner::from_key_bytes(b"k");
        let mut out = [0u8; 63];
        assert_eq!(s.sign_hex(b"x", &mut out), None);
    }

    #[test]
    fn debug_prints_no_key_material() {
        let s = HmacSigner::new(&Secret::new(SPOT_SECRET.to_string()));
        let d = format!("{s:?}");
        assert_eq!(d, "HmacSigner { key: *** }");
        assert!(!d.contains("Nhq"));
    }
}
