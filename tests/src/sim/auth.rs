//! Request parameters and signature checks, done the way Binance does them: over the raw received bytes.
//!
//! The signed payload is the raw query string immediately followed by the raw form body, with the
//! `signature=…` parameter removed. It is never rebuilt from decoded parameters, because real clients order and
//! encode parameters differently (python-binance sorts, binance-futures-connector puts everything in the query,
//! ccxt puts `timestamp` first). When a parameter is both in the query and the body, the query value wins.

use super::error::ApiError;
use super::keys::{ApiKey, KeyKind};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Decoded request parameters: query first, then body, so lookups find the query value first.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Decodes `application/x-www-form-urlencoded` query and body.
    pub fn from_raw(query: &str, body: &[u8]) -> Self {
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        pairs.extend(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())));
        Self { pairs }
    }
    /// From already decoded pairs (WebSocket API params).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self { pairs }
    }
    /// The first value for `name` (query wins over body).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// A non-empty value or -1102.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::mandatory(name)),
        }
    }
    /// A non-empty value, if present.
    pub fn opt(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }
    /// An integer parameter, if present; malformed → -1102.
    pub fn opt_u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.opt(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| ApiError::mandatory(name)),
        }
    }
    /// All pairs.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

/// Splits `signature=…` out of a raw form string, keeping every other byte as received.
pub fn strip_signature(raw: &str) -> (String, Option<String>) {
    let mut kept: Vec<&str> = Vec::new();
    let mut sig = None;
    for part in raw.split('&') {
        if let Some(v) = part.strip_prefix("signature=") {
            sig = Some(v.to_string());
        } else {
            kept.push(part);
        }
    }
    if raw.is_empty() {
        return (String::new(), None);
    }
    (kept.join("&"), sig)
}

/// The signed payload (query + body without the signature) and the raw (still percent-encoded) signature.
/// A query signature wins over a body signature, like every other parameter.
pub fn signed_payload(query: &str, body: &[u8]) -> Result<(Vec<u8>, String), ApiError> {
    let body = std::str::from_utf8(body).map_err(|_| ApiError::bad_signature())?;
    let (q, qsig) = strip_signature(query);
    let (b, bsig) = strip_signature(body);
    let sig = qsig
        .or(bsig)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::mandatory("signature"))?;
    let mut payload = q.into_bytes();
    payload.extend_from_slice(b.as_bytes());
    Ok((payload, sig))
}

/// Percent-decodes a raw signature value (`+` stays `+`: in a base64 signature it is data, and clients that
/// encode properly send `%2B`).
pub fn percent_decode(raw: &str) -> Option<String> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Hex HMAC-SHA256 of `payload` (what a client sends as `signature`).
pub fn hmac_hex(secret: &str, payload: &[u8]) -> String {
    // Invariant: HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac any key length");
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

/// Verifies a signature (raw, as received) over `payload` with the key's scheme. HMAC hex is case-insensitive;
/// the comparison is constant-time.
pub fn verify(key: &ApiKey, payload: &[u8], raw_sig: &str) -> bool {
    let Some(sig) = percent_decode(raw_sig) else {
        return false;
    };
    match &key.kind {
        KeyKind::Hmac(secret) => {
            let Ok(bytes) = hex::decode(sig.to_ascii_lowercase()) else {
                return false;
            };
            // Invariant: HMAC accepts keys of any length.
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
                .expect("hmac any key length");
            mac.update(payload);
            mac.verify_slice(&bytes).is_ok()
        }
        KeyKind::Ed25519(vk) => {
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(sig.trim()) else {
                return false;
            };
            let Ok(sig) = ed25519_dalek::Signature::from_slice(&bytes) else {
                return false;
            };
            vk.verify_strict(payload, &sig).is_ok()
        }
    }
}

/// Binance's timestamp rule: accept when `timestamp < serverTime + 1000 && serverTime - timestamp <= recvWindow`.
pub fn check_timestamp(params: &Params, server_ms: u64) -> Result<(), ApiError> {
    let ts: u64 = params
        .required("timestamp")?
        .parse()
        .map_err(|_| ApiError::mandatory("timestamp"))?;
    let recv_window = params.opt_u64("recvWindow")?.unwrap_or(5000);
    if recv_window > 60_000 {
        return Err(ApiError::recv_window_too_big());
    }
    let server = server_ms as i128;
    let ts = ts as i128;
    if ts >= server + 1000 {
        return Err(ApiError::ahead_of_server());
    }
    if server - ts > recv_window as i128 {
        return Err(ApiError::outside_recv_window());
    }
    Ok(())
}

/// The WebSocket API payload: every param except `signature`, sorted by name, joined `k=v&…`.
pub fn ws_api_payload(params: &Params) -> String {
    let mut v: Vec<&(String, String)> = params
        .pairs()
        .iter()
        .filter(|(k, _)| k != "signature")
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.iter()
        .map(|(k, val)| format!("{k}={val}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::keys::{test_ed25519, KeyEntry, Permissions};
    use ed25519_dalek::Signer;

    const SPOT_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
    const SPOT_KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
    const FUT_SECRET: &str = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9";
    const FUT_KEY: &str = "dbefbc809e3e83c283a984c3a1459732ea7db1360ca80c5c2c8867408d28cc83";

    fn hmac_key(api: &str, secret: &str) -> ApiKey {
        KeyEntry {
            api_key: api.into(),
            account: None,
            secret: Some(secret.into()),
            ed25519_public_key: None,
            permissions: Permissions::default(),
            ip_restrict: false,
            allowed_ips: vec![],
        }
        .into_key(0)
        .unwrap()
    }

    fn check(key: &ApiKey, query: &str, body: &str) -> bool {
        let (payload, sig) = signed_payload(query, body.as_bytes()).unwrap();
        verify(key, &payload, &sig)
    }

    #[test]
    fn official_spot_vectors_verify_over_raw_bytes() {
        let k = hmac_key(SPOT_KEY, SPOT_SECRET);
        // Vector 1: all in the query (and, equally, all in the body).
        let p1 = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
        let s1 = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";
        assert_eq!(hmac_hex(SPOT_SECRET, p1.as_bytes()), s1);
        assert!(check(&k, &format!("{p1}&signature={s1}"), ""));
        assert!(check(&k, "", &format!("{p1}&signature={s1}")));
        // Hex is case-insensitive.
        assert!(check(
            &k,
            &format!("{p1}&signature={}", s1.to_uppercase()),
            ""
        ));
        // Vector 2: mixed query + body, concatenated without separator.
        let s2 = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77";
        assert!(check(
            &k,
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
            &format!("quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature={s2}")
        ));
        // Vector 3: percent-encoded non-ASCII symbol, signed as encoded.
        let p3 = "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
        let s3 = "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3";
        assert!(check(&k, &format!("{p3}&signature={s3}"), ""));
        // Tampering with one byte breaks it.
        assert!(!check(
            &k,
            &format!("{}&signature={s1}", p1.replace("0.1", "0.2")),
            ""
        ));
    }

    #[test]
    fn official_futures_vectors_verify() {
        let k = hmac_key(FUT_KEY, FUT_SECRET);
        let p = "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000&timestamp=1591702613943";
        let s = "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9";
        assert!(check(&k, &format!("{p}&signature={s}"), ""));
        // The corrected mixed query+body vector of the protocol notes.
        let s2 = "30baaf0fab549bbeda7f5ef201898b34122da25fd23c646cac2c529aebe670a4";
        assert!(check(
            &k,
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC",
            &format!(
                "quantity=1&price=9000&recvWindow=5000&timestamp=1591702613943&signature={s2}"
            )
        ));
        // Signing the same parameters rebuilt in another order fails: raw bytes matter.
        let reordered = "side=BUY&symbol=BTCUSDT&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000&timestamp=1591702613943";
        assert!(!check(&k, &format!("{reordered}&signature={s}"), ""));
    }

    #[test]
    fn ws_api_sorted_vector() {
        let params = Params::from_pairs(
            [
                ("symbol", "BTCUSDT"),
                ("side", "SELL"),
                ("type", "LIMIT"),
                ("timeInForce", "GTC"),
                ("quantity", "0.01000000"),
                ("price", "52000.00"),
                ("recvWindow", "100"),
                ("timestamp", "1645423376532"),
                ("apiKey", SPOT_KEY),
                ("signature", "ignored"),
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        );
        let payload = ws_api_payload(&params);
        assert_eq!(payload, format!("apiKey={SPOT_KEY}&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL&symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532&type=LIMIT"));
        assert_eq!(
            hmac_hex(SPOT_SECRET, payload.as_bytes()),
            "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"
        );
    }

    #[test]
    fn ed25519_signature_base64_percent_encoded() {
        let (sk, pem) = test_ed25519(9);
        let key = KeyEntry {
            api_key: "e".repeat(64),
            account: None,
            secret: None,
            ed25519_public_key: Some(pem),
            permissions: Permissions::default(),
            ip_restrict: false,
            allowed_ips: vec![],
        }
        .into_key(0)
        .unwrap();
        let payload = "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01&timestamp=1";
        let sig = base64::engine::general_purpose::STANDARD
            .encode(sk.sign(payload.as_bytes()).to_bytes());
        let enc: String = form_urlencoded::byte_serialize(sig.as_bytes()).collect();
        assert!(check(&key, &format!("{payload}&signature={enc}"), ""));
        let other = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
        let bad = base64::engine::general_purpose::STANDARD
            .encode(other.sign(payload.as_bytes()).to_bytes());
        let enc: String = form_urlencoded::byte_serialize(bad.as_bytes()).collect();
        assert!(!check(&key, &format!("{payload}&signature={enc}"), ""));
    }

    #[test]
    fn query_value_wins_and_missing_signature_is_1102() {
        let p = Params::from_raw("symbol=BTCUSDT&qty=1", b"symbol=ETHUSDT&price=2");
        assert_eq!(p.get("symbol"), Some("BTCUSDT"));
        assert_eq!(p.get("price"), Some("2"));
        assert_eq!(signed_payload("a=1", b"b=2").unwrap_err().code, -1102);
    }

    #[test]
    fn timestamp_window_rule() {
        let p = |ts: u64, rw: Option<u64>| {
            let mut q = format!("timestamp={ts}");
            if let Some(r) = rw {
                q.push_str(&format!("&recvWindow={r}"));
            }
            Params::from_raw(&q, b"")
        };
        let now = 1_000_000u64;
        assert!(check_timestamp(&p(now, None), now).is_ok());
        assert!(check_timestamp(&p(now + 999, None), now).is_ok());
        let e = check_timestamp(&p(now + 1000, None), now).unwrap_err();
        assert_eq!((e.code, e.http), (-1021, 400));
        assert!(e.msg.contains("ahead"));
        assert!(check_timestamp(&p(now - 5000, None), now).is_ok());
        let e = check_timestamp(&p(now - 5001, None), now).unwrap_err();
        assert_eq!(
            e.msg,
            "Timestamp for this request is outside of the recvWindow."
        );
        assert!(check_timestamp(&p(now - 9000, Some(10_000)), now).is_ok());
        assert_eq!(
            check_timestamp(&p(now, Some(70_000)), now)
                .unwrap_err()
                .code,
            -1131
        );
        assert_eq!(
            check_timestamp(&Params::from_raw("", b""), now)
                .unwrap_err()
                .msg,
            "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
        );
    }
}
