//! JWT sessions: HS256 only, every time claim checked, a random `jti` per token so one token can be revoked.

use super::store::{Role, UserRecord};
use aegis_shared::Secret;
use base64::Engine as _;
use hmac::{Mac, SimpleHmac};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type HmacSha256 = SimpleHmac<Sha256>;

/// Issuer written into and required from every token.
pub const ISSUER: &str = "aegis";
/// Clock skew tolerated on `exp`/`nbf`/`iat`, seconds.
pub const LEEWAY_SECS: u64 = 5;

/// What a session token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User name.
    pub sub: String,
    /// Role when issued (the store's current role wins when they differ).
    pub role: Role,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Not before, seconds since the epoch.
    pub nbf: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
    /// Unique token id (128 random bits, hex): the handle for revocation.
    pub jti: String,
    /// The account the token was issued for ([`UserRecord::uid`]): a new user under the same name is another
    /// account, and its tokens are not this one's.
    pub uid: String,
    /// The account's token generation when issued ([`UserRecord::token_gen`]).
    pub gen: u64,
    /// Always [`ISSUER`].
    pub iss: String,
}

/// Why a token was refused. Deliberately coarse: callers answer every variant with the same 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Bad signature, algorithm, format or claim.
    #[error("invalid token")]
    Invalid,
    /// Expired.
    #[error("token expired")]
    Expired,
    /// Signing failed (should not happen with an HMAC key).
    #[error("could not issue token")]
    Issue,
}

/// Issues and verifies session tokens and their CSRF companions.
pub struct Tokens {
    enc: EncodingKey,
    dec: DecodingKey,
    validation: Validation,
    expiry: Duration,
    csrf_key: Secret<Vec<u8>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Tokens {
    /// Builds the signer from an already validated secret (see [`super::validate_jwt_secret`]).
    pub fn new(secret: &Secret<String>, expiry: Duration) -> Self {
        let key = secret.expose().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        // Pinned: a token whose header names any other algorithm (or `none`) fails before its signature is read.
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "sub", "iss"]);
        validation.set_issuer(&[ISSUER]);
        // A separate key for CSRF tokens, so a CSRF value can never double as a signature over anything else.
        let csrf_key = hmac_sha256(key, b"aegis-csrf-v1");
        Self {
            enc: EncodingKey::from_secret(key),
            dec: DecodingKey::from_secret(key),
            validation,
            expiry,
            csrf_key: Secret::new(csrf_key),
        }
    }

    /// Session lifetime (`JWT_EXPIRY`).
    pub fn expiry(&self) -> Duration {
        self.expiry
    }

    /// Issues a token for `user`, bound to its uid and current token generation.
    pub fn issue(&self, user: &UserRecord) -> Result<(String, Claims), TokenError> {
        let now = now_secs();
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let claims = Claims {
            sub: user.username.clone(),
            role: user.role,
            uid: user.uid.clone(),
            gen: user.token_gen,
            iat: now,
            nbf: now,
            exp: now + self.expiry.as_secs(),
            jti: hex::encode(id),
            iss: ISSUER.to_string(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.enc)
            .map_err(|_| TokenError::Issue)?;
        Ok((token, claims))
    }

    /// Verifies signature, algorithm, issuer and every time claim; the `jti` must look like one we issue.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.len() > 4096 {
            return Err(TokenError::Invalid);
        }
        let data =
            decode::<Claims>(token, &self.dec, &self.validation).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let c = data.claims;
        let now = now_secs();
        // jsonwebtoken checks exp/nbf; iat is ours to check: not from the future, and no older than a lifetime.
        if c.iat > now + LEEWAY_SECS
            || c.exp < c.iat
            || c.exp - c.iat > self.expiry.as_secs() + LEEWAY_SECS
        {
            return Err(TokenError::Invalid);
        }
        let hex32 = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex32(&c.jti) || !hex32(&c.uid) {
            return Err(TokenError::Invalid);
        }
        Ok(c)
    }

    /// The CSRF token bound to a session: base64url(HMAC(csrf_key, jti)).
    pub fn csrf_for(&self, jti: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(hmac_sha256(self.csrf_key.expose(), jti.as_bytes()))
    }

    /// Constant-time check of a CSRF header against the session's `jti`.
    pub fn csrf_ok(&self, jti: &str, provided: &str) -> bool {
        let Ok(raw) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(provided.trim())
        else {
            return false;
        };
        let Ok(mut mac) = HmacSha256::new_from_slice(self.csrf_key.expose()) else {
            return false;
        };
        mac.update(jti.as_bytes());
        mac.verify_slice(&raw).is_ok()
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(
            &Secret::new("q8Vd0pX3LmZr7TnY2sKw9bHc4JfG6aUe1Q".into()),
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn round_trip_and_tamper() {
        let t = tokens();
        let alice = UserRecord::new("alice".into(), Role::Admin, String::new(), None, 0);
        let (tok, c) = t.issue(&alice).unwrap();
        assert_eq!((c.uid.as_str(), c.gen), (alice.uid.as_str(), 0));
        assert_eq!(t.verify(&tok).unwrap(), c);
        let mut bad = tok.clone().into_bytes();
        let last = bad.len() - 2;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            t.verify(std::str::from_utf8(&bad).unwrap()),
            Err(TokenError::Invalid)
        );
        let other = Tokens::new(
            &Secret::new("ZZVd0pX3LmZr7TnY2sKw9bHc4JfG6aUe1Q".into()),
            Duration::from_secs(3600),
        );
        assert_eq!(other.verify(&tok), Err(TokenError::Invalid));
    }

    #[test]
    fn csrf_is_bound_to_the_session() {
        let t = tokens();
        let a = t.csrf_for("00112233445566778899aabbccddeeff");
        assert!(t.csrf_ok("00112233445566778899aabbccddeeff", &a));
        assert!(!t.csrf_ok("ffeeddccbbaa99887766554433221100", &a));
        assert!(!t.csrf_ok("00112233445566778899aabbccddeeff", "garbage"));
        assert!(!t.csrf_ok("00112233445566778899aabbccddeeff", ""));
    }
}
