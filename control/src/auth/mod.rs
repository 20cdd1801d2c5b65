//! Dashboard and API authentication: JWT sessions (HS256 only), argon2id passwords, users and roles, revoked
//! tokens, and the abuse limits that sit in front of them (login lockout, per-IP rate limit, IP allowlist).
//!
//! Design (see `control/assets/README-auth.md`): the browser never sees the token. Login sets it in an
//! `HttpOnly; Secure; SameSite=Strict` cookie; state-changing requests must also carry an `X-CSRF-Token` header
//! whose value is an HMAC of the session's `jti` (a signed double-submit token), so a forged cross-site request
//! cannot produce it even if an attacker manages to plant cookies. CLI clients may ask for a bearer token instead;
//! bearer requests need no CSRF header because browsers never attach `Authorization` on their own.

pub mod limits;
pub mod password;
pub mod store;
pub mod token;

pub use limits::{IpAllowlist, LoginGuard, LoginLimits, RateLimit};
pub use password::PasswordHasher;
pub use store::{
    new_uid, MemoryUserStore, Role, StoreError, Tombstone, UserChange, UserRecord, UserStore,
};
pub use token::{Claims, TokenError, Tokens};

use aegis_shared::Secret;

/// The `JWT_SECRET` value shipped in `.env.example`. A secret equal to it (or to the security guide's example) is
/// refused: it is public.
pub const ENV_EXAMPLE_PLACEHOLDER: &str = "change-me-to-at-least-32-random-bytes";

/// Placeholders and examples that are public knowledge; a secret containing one of them is refused.
const KNOWN_PUBLIC: [&str; 4] = [
    ENV_EXAMPLE_PLACEHOLDER,
    "your_very_long_random_secret_here_min_32_chars",
    "change-me",
    "changeme",
];

/// Minimum `JWT_SECRET` length in bytes (HS256 key size).
pub const MIN_SECRET_BYTES: usize = 32;
/// Minimum number of distinct byte values: `aaaa…` or `abababab…` of any length is not a secret.
pub const MIN_DISTINCT_BYTES: usize = 12;

/// Why a `JWT_SECRET` was refused. Messages never contain the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretProblem {
    /// Not set.
    #[error(
        "JWT_SECRET is not set; generate one with `openssl rand -base64 48` and put it in .env"
    )]
    Missing,
    /// Shorter than [`MIN_SECRET_BYTES`].
    #[error("JWT_SECRET is too short ({0} bytes, need at least {MIN_SECRET_BYTES}); generate one with `openssl rand -base64 48`")]
    TooShort(usize),
    /// Too few distinct bytes.
    #[error("JWT_SECRET is too weak (only {0} distinct characters); generate one with `openssl rand -base64 48`")]
    Weak(usize),
    /// The public placeholder from `.env.example` or the guide.
    #[error("JWT_SECRET is still the example placeholder; generate a real one with `openssl rand -base64 48`")]
    Placeholder,
}

/// Checks a `JWT_SECRET` before anything starts.
pub fn validate_jwt_secret(secret: &Secret<String>) -> Result<(), SecretProblem> {
    let s = secret.expose();
    if s.is_empty() {
        return Err(SecretProblem::Missing);
    }
    let lower = s.to_ascii_lowercase();
    if KNOWN_PUBLIC.iter().any(|p| lower.contains(p)) {
        return Err(SecretProblem::Placeholder);
    }
    if s.len() < MIN_SECRET_BYTES {
        return Err(SecretProblem::TooShort(s.len()));
    }
    let mut seen = [false; 256];
    for b in s.bytes() {
        seen[b as usize] = true;
    }
    let distinct = seen.iter().filter(|x| **x).count();
    if distinct < MIN_DISTINCT_BYTES {
        return Err(SecretProblem::Weak(distinct));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: &str) -> Result<(), SecretProblem> {
        validate_jwt_secret(&Secret::new(s.to_string()))
    }

    #[test]
    fn refuses_weak_secrets_without_echoing_them() {
        assert_eq!(check(""), Err(SecretProblem::Missing));
        assert_eq!(
            check("short-but-random-Xy7!"),
            Err(SecretProblem::TooShort(21))
        );
        assert_eq!(check(&"a".repeat(64)), Err(SecretProblem::Weak(1)));
        assert_eq!(check(&"abcdef".repeat(10)), Err(SecretProblem::Weak(6)));
        assert_eq!(
            check(ENV_EXAMPLE_PLACEHOLDER),
            Err(SecretProblem::Placeholder)
        );
        assert_eq!(
            check("your_very_long_random_secret_here_min_32_chars"),
            Err(SecretProblem::Placeholder)
        );
        let msg = check("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz")
            .unwrap_err()
            .to_string();
        assert!(!msg.contains("zzzz"), "{msg}");
        assert!(check("q8Vd0pX3LmZr7TnY2sKw9bHc4JfG6aUe1Q==").is_ok());
    }
}
