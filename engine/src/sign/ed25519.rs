//! Ed25519 request signing (Binance's recommended key type, and the only one `session.logon` accepts).
//!
//! Pure Ed25519 over the payload bytes, then base64; REST additionally percent-encodes the base64 text.

use super::{b64, SignError};
use aegis_shared::Secret;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use std::fmt;

/// Length of an Ed25519 signature in base64 (64 bytes → 88 characters, with padding).
pub const ED25519_B64_LEN: usize = b64::encoded_len(64);
/// Upper bound for a percent-encoded base64 Ed25519 signature (every character escaped).
pub const ED25519_PCT_MAX_LEN: usize = ED25519_B64_LEN * 3;

/// Signs payloads with an Ed25519 private key. The key is wiped when dropped (ed25519-dalek zeroizes it) and
/// never printed.
#[derive(Clone)]
pub struct Ed25519Signer {
    key: SigningKey,
}

impl Ed25519Signer {
    /// Loads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`, what Binance's key generator writes).
    pub fn from_pkcs8_pem(pem: &Secret<String>) -> Result<Self, SignError> {
        // The decoder's error is dropped on purpose: it could quote parts of the input.
        let key = SigningKey::from_pkcs8_pem(pem.expose()).map_err(|_| SignError::BadEd25519Key)?;
        Ok(Self { key })
    }

    /// Builds a signer from a 32-byte secret seed.
    pub fn from_seed(seed: &Secret<[u8; 32]>) -> Self {
        Self {
            key: SigningKey::from_bytes(seed.expose()),
        }
    }

    /// Wraps an existing key (tests and key generation).
    pub fn from_signing_key(key: SigningKey) -> Self {
        Self { key }
    }

    /// The public half, to verify signatures or to register with Binance.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as a PEM `PUBLIC KEY` block (what Binance asks for when registering an Ed25519 key).
    /// Allocates; not for the hot path.
    pub fn public_key_pem(&self) -> Result<String, SignError> {
        self.key
            .verifying_key()
            .to_public_key_pem(Default::default())
            .map_err(|_| SignError::BadEd25519Key)
    }

    /// The raw 64-byte signature of `payload`.
    #[inline]
    pub fn sign_raw(&self, payload: &[u8]) -> [u8; 64] {
        self.key.sign(payload).to_bytes()
    }

    /// Signs `payload` and writes the base64 signature (88 bytes) into the front of `out` — the form used inside
    /// WebSocket-API JSON. Returns the length, or `None` when `out` is too short. Allocation-free.
    #[inline]
    pub fn sign_base64(&self, payload: &[u8], out: &mut [u8]) -> Option<usize> {
        b64::encode(&self.sign_raw(payload), out)
    }

    /// Signs `payload` and writes the percent-encoded base64 signature — the form used as a REST query parameter.
    /// `out` should hold [`ED25519_PCT_MAX_LEN`] bytes. Allocation-free.
    #[inline]
    pub fn sign_base64_percent(&self, payload: &[u8], out: &mut [u8]) -> Option<usize> {
        let mut raw = [0u8; ED25519_B64_LEN];
        let n = self.sign_base64(payload, &mut raw)?;
        b64::percent_encode_b64(&raw[..n], out)
    }
}

impl fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ed25519Signer { key: *** }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use ed25519_dalek::{Signature, Verifier};

    fn generated() -> Ed25519Signer {
        Ed25519Signer::from_signing_key(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    #[test]
    fn sign_then_verify_round_trip() {
        let s = generated();
        let payload = b"apiKey=abc&symbol=BTCUSDT&timestamp=1645423376532";
        let mut out = [0u8; ED25519_B64_LEN];
        assert_eq!(s.sign_base64(payload, &mut out), Some(88));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&out[..])
            .unwrap();
        let sig = Signature::from_slice(&raw).unwrap();
        assert!(s.verifying_key().verify(payload, &sig).is_ok());
        // A changed payload must not verify.
        assert!(s
            .verifying_key()
            .verify(b"apiKey=abc&symbol=BTCUSDT&timestamp=1645423376533", &sig)
            .is_err());
    }

    #[test]
    fn percent_encoded_form_decodes_to_the_same_signature() {
        let s = generated();
        let payload = b"symbol=BTCUSDT&side=BUY&timestamp=1";
        let mut plain = [0u8; ED25519_B64_LEN];
        let n = s.sign_base64(payload, &mut plain).unwrap();
        let mut pct = [0u8; ED25519_PCT_MAX_LEN];
        let m = s.sign_base64_percent(payload, &mut pct).unwrap();
        let pct = std::str::from_utf8(&pct[..m]).unwrap();
        assert!(!pct.contains(['+', '/', '=']), "{pct}");
        let decoded = pct
            .replace("%2B", "+")
            .replace("%2F", "/")
            .replace("%3D", "=");
        assert_eq!(decoded.as_bytes(), &plain[..n]);
        // Ed25519 is deterministic: the same payload gives the same signature.
        assert_eq!(s.sign_raw(payload), s.sign_raw(payload));
    }

    #[test]
    fn loads_pkcs8_pem_and_rejects_garbage_without_echoing_it() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let pem = key.to_pkcs8_pem(Default::default()).unwrap();
        let s = Ed25519Signer::from_pkcs8_pem(&Secret::new(pem.to_string())).unwrap();
        assert_eq!(s.verifying_key(), key.verifying_key());
        assert!(s.public_key_pem().unwrap().contains("BEGIN PUBLIC KEY"));

        let bad = "-----BEGIN PRIVATE KEY-----\nTOPSECRETTOPSECRET\n-----END PRIVATE KEY-----\n";
        let err = Ed25519Signer::from_pkcs8_pem(&Secret::new(bad.to_string())).unwrap_err();
        assert!(!err.to_string().contains("TOPSECRET"));
        assert!(!format!("{err:?}").contains("TOPSECRET"));
    }

    #[test]
    fn seed_constructor_matches_dalek() {
        let seed = [7u8; 32];
        let s = Ed25519Signer::from_seed(&Secret::new(seed));
        assert_eq!(
            s.verifying_key(),
            SigningKey::from_bytes(&seed).verifying_key()
        );
    }

    #[test]
    fn debug_prints_no_key_material() {
        let seed = [0x42u8; 32];
        let s = Ed25519Signer::from_seed(&Secret::new(seed));
        let d = format!("{s:?}");
        assert_eq!(d, "Ed25519Signer { key: *** }");
    }
}
