//! API keys and their permissions, loaded from a keys file (JSON) and changeable at run time by the admin API.
//!
//! Keys file format:
//! ```json
//! {"keys": [
//!   {"api_key": "<64 letters/digits>", "account": "alice",
//!    "secret": "<HMAC secret>",                       // either this ...
//!    "ed25519_public_key": "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n", // ... or this
//!    "permissions": {"reading": true, "futures": true, "spot": false, "withdrawals": false},
//!    "ip_restrict": false, "allowed_ips": ["127.0.0.1"]}
//!  ],
//!  "accounts": [{"name": "alice", "usdt": "10000"}]}
//! ```
//! `account` defaults to the api_key itself; accounts not listed start with the simulator's default balance.

use aegis_shared::Secret;
use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;

/// What a key may do (Binance's `apiRestrictions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Permissions {
    /// enableReading
    pub reading: bool,
    /// enableFutures
    pub futures: bool,
    /// enableSpotAndMarginTrading
    pub spot: bool,
    /// enableWithdrawals
    pub withdrawals: bool,
}

impl Default for Permissions {
    fn default() -> Self {
        Self {
            reading: true,
            futures: true,
            spot: false,
            withdrawals: false,
        }
    }
}

/// How a key's requests are signed.
#[derive(Clone)]
pub enum KeyKind {
    /// HMAC-SHA256 with this secret.
    Hmac(Secret<String>),
    /// Ed25519 with this public key.
    Ed25519(VerifyingKey),
}

impl std::fmt::Debug for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::Hmac(_) => f.write_str("Hmac(***)"),
            KeyKind::Ed25519(_) => f.write_str("Ed25519"),
        }
    }
}

/// One API key as the simulator holds it.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// The public key string sent in `X-MBX-APIKEY`.
    pub api_key: String,
    /// The account it trades for.
    pub account: String,
    /// Signature scheme and material.
    pub kind: KeyKind,
    /// Permissions.
    pub permissions: Permissions,
    /// Whether only `allowed_ips` may use it.
    pub ip_restrict: bool,
    /// Allowed client addresses when `ip_restrict`.
    pub allowed_ips: Vec<IpAddr>,
    /// Creation time (ms) reported by apiRestrictions.
    pub create_time: u64,
}

impl ApiKey {
    /// Whether `ip` may use this key.
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        !self.ip_restrict || self.allowed_ips.contains(&ip)
    }
}

/// A key entry in the keys file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyEntry {
    /// Public API key: 64 ASCII letters/digits, like Binance's.
    pub api_key: String,
    /// Account name (defaults to the api_key).
    #[serde(default)]
    pub account: Option<String>,
    /// HMAC secret.
    #[serde(default)]
    pub secret: Option<String>,
    /// Ed25519 public key, PEM (SPKI).
    #[serde(default)]
    pub ed25519_public_key: Option<String>,
    /// Permissions (default: reading + futures).
    #[serde(default)]
    pub permissions: Permissions,
    /// IP restriction on.
    #[serde(default)]
    pub ip_restrict: bool,
    /// Allowed IPs.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
}

/// An account entry in the keys file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountEntry {
    /// Account name.
    pub name: String,
    /// Starting USDT wallet balance (decimal string).
    pub usdt: String,
}

/// The keys file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeysFile {
    /// Keys.
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
    /// Accounts with a non-default balance.
    #[serde(default)]
    pub accounts: Vec<AccountEntry>,
}

/// Why a key entry was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The api_key is not 64 letters/digits.
    #[error("api_key {0:?}: must be exactly 64 ASCII letters/digits, like a Binance key")]
    Format(String),
    /// Neither or both signing materials.
    #[error("api_key {0}: give exactly one of \"secret\" (HMAC) or \"ed25519_public_key\" (PEM)")]
    Material(String),
    /// The PEM did not parse.
    #[error("api_key {0}: ed25519_public_key is not an Ed25519 SPKI PEM public key")]
    Pem(String),
    /// An IP did not parse.
    #[error("api_key {0}: allowed_ips entry {1:?} is not an IP address")]
    Ip(String, String),
    /// Same key twice.
    #[error("api_key {0} appears twice")]
    Duplicate(String),
    /// The file could not be read or parsed.
    #[error("keys file: {0}")]
    File(String),
}

/// Binance keys are 64 ASCII letters/digits; anything else is -2014.
pub fn well_formed(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|c| c.is_ascii_alphanumeric())
}

impl KeyEntry {
    /// Validates the entry into an [`ApiKey`].
    pub fn into_key(self, now_ms: u64) -> Result<ApiKey, KeyError> {
        if !well_formed(&self.api_key) {
            return Err(KeyError::Format(self.api_key));
        }
        let kind = match (self.secret, self.ed25519_public_key) {
            (Some(s), None) => KeyKind::Hmac(Secret::new(s)),
            (None, Some(pem)) => KeyKind::Ed25519(
                VerifyingKey::from_public_key_pem(pem.trim())
                    .map_err(|_| KeyError::Pem(self.api_key.clone()))?,
            ),
            _ => return Err(KeyError::Material(self.api_key)),
        };
        let mut allowed_ips = Vec::new();
        for ip in &self.allowed_ips {
            allowed_ips.push(
                ip.parse()
                    .map_err(|_| KeyError::Ip(self.api_key.clone(), ip.clone()))?,
            );
        }
        Ok(ApiKey {
            account: self.account.unwrap_or_else(|| self.api_key.clone()),
            api_key: self.api_key,
            kind,
            permissions: self.permissions,
            ip_restrict: self.ip_restrict,
            allowed_ips,
            create_time: now_ms,
        })
    }
}

impl KeysFile {
    /// Parses a keys file's text.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        serde_json::from_str(text).map_err(|e| KeyError::File(e.to_string()))
    }
    /// Reads and parses a keys file.
    pub fn load(path: &std::path::Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| KeyError::File(format!("{}: {e}", path.display())))?;
        Self::parse(&text)
    }
}

/// The live set of keys.
#[derive(Debug, Default)]
pub struct KeyStore {
    keys: HashMap<String, ApiKey>,
}

impl KeyStore {
    /// Builds the store from entries.
    pub fn from_entries(entries: Vec<KeyEntry>, now_ms: u64) -> Result<Self, KeyError> {
        let mut s = Self::default();
        for e in entries {
            s.insert(e.into_key(now_ms)?)?;
        }
        Ok(s)
    }
    /// Adds a key.
    pub fn insert(&mut self, k: ApiKey) -> Result<(), KeyError> {
        if self.keys.contains_key(&k.api_key) {
            return Err(KeyError::Duplicate(k.api_key));
        }
        self.keys.insert(k.api_key.clone(), k);
        Ok(())
    }
    /// Looks a key up.
    pub fn get(&self, api_key: &str) -> Option<&ApiKey> {
        self.keys.get(api_key)
    }
    /// Mutable lookup (admin changes).
    pub fn get_mut(&mut self, api_key: &str) -> Option<&mut ApiKey> {
        self.keys.get_mut(api_key)
    }
    /// Removes a key (revocation). Returns whether it existed.
    pub fn revoke(&mut self, api_key: &str) -> bool {
        self.keys.remove(api_key).is_some()
    }
    /// All accounts named by keys.
    pub fn accounts(&self) -> Vec<String> {
        let mut v: Vec<String> = self.keys.values().map(|k| k.account.clone()).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// A fixed Ed25519 key from `seed` and its public key as the keys file holds it (PEM), for the unit tests.
#[cfg(test)]
pub(crate) fn test_ed25519(seed: u8) -> (ed25519_dalek::SigningKey, String) {
    use ed25519_dalek::pkcs8::EncodePublicKey;
    let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let pem = sk
        .verifying_key()
        .to_public_key_pem(Default::default())
        .unwrap();
    (sk, pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hmac_and_ed25519_entries() {
        let (_, pem) = test_ed25519(7);
        let text = serde_json::json!({
            "keys": [
                {"api_key": "a".repeat(64), "account": "alice", "secret": "s1",
                 "permissions": {"reading": true, "futures": false}},
                {"api_key": "b".repeat(64), "ed25519_public_key": pem, "ip_restrict": true,
                 "allowed_ips": ["10.0.0.1"]}
            ],
            "accounts": [{"name": "alice", "usdt": "500"}]
        })
        .to_string();
        let f = KeysFile::parse(&text).unwrap();
        let store = KeyStore::from_entries(f.keys, 1).unwrap();
        let a = store.get(&"a".repeat(64)).unwrap();
        assert_eq!(a.account, "alice");
        assert!(!a.permissions.futures && a.permissions.reading);
        assert!(matches!(a.kind, KeyKind::Hmac(_)));
        let b = store.get(&"b".repeat(64)).unwrap();
        assert_eq!(b.account, "b".repeat(64));
        assert!(matches!(b.kind, KeyKind::Ed25519(_)));
        assert!(b.ip_allowed("10.0.0.1".parse().unwrap()));
        assert!(!b.ip_allowed("127.0.0.1".parse().unwrap()));
        assert_eq!(f.accounts[0].usdt, "500");
        // A key entry never prints its secret.
        assert!(!format!("{a:?}").contains("s1"));
    }

    #[test]
    fn refuses_bad_entries_with_a_clear_reason() {
        let bad = |v: serde_json::Value| {
            let e: KeyEntry = serde_json::from_value(v).unwrap();
            e.into_key(0).unwrap_err().to_string()
        };
        assert!(bad(serde_json::json!({"api_key": "short", "secret": "x"})).contains("64"));
        assert!(bad(serde_json::json!({"api_key": "c".repeat(64)})).contains("exactly one"));
        assert!(
            bad(serde_json::json!({"api_key": "c".repeat(64), "ed25519_public_key": "nope"}))
                .contains("PEM")
        );
        assert!(
            bad(serde_json::json!({"api_key": "c".repeat(64), "secret": "x",
            "allowed_ips": ["x.y"]}))
            .contains("x.y")
        );
    }
}
