//! Shared helpers of the simulator's integration tests: a simulator with known keys, a signing REST client and
//! a WebSocket client.
#![allow(dead_code)]

use aegis_testkit::sim::auth::hmac_hex;
use aegis_testkit::sim::client::{AdminCall, AdminClient};
use aegis_testkit::sim::keys::{AccountEntry, KeyEntry, KeysFile, Permissions};
use aegis_testkit::sim::{start, SimConfig, SimHandle, SourceKind};
use base64::Engine;
use ed25519_dalek::pkcs8::EncodePublicKey;
use ed25519_dalek::Signer as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

pub const ALICE_KEY: &str = "a1ICEa1ICEa1ICEa1ICEa1ICEa1ICEa1ICEa1ICEa1ICEa1ICEa1ICEa1ICEa1IC";
pub const ALICE_SECRET: &str = "alice-hmac-secret-0123456789";
pub const BOB_KEY: &str = "B0bB0bB0bB0bB0bB0bB0bB0bB0bB0bB0bB0bB0bB0bB0bB0bB0bB0bB0bB0bB0bB";
pub const READER_KEY: &str = "ReaDerReaDerReaDerReaDerReaDerReaDerReaDerReaDerReaDerReaDerReaD";
pub const READER_SECRET: &str = "reader-secret";
pub const FENCED_KEY: &str = "FenCedFenCedFenCedFenCedFenCedFenCedFenCedFenCedFenCedFenCedFenC";
pub const FENCED_SECRET: &str = "fenced-secret";

pub fn bob_signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[5u8; 32])
}

/// A key of `account` with no way to sign yet and no IP restriction.
fn key_entry(key: &str, account: &str, perms: Permissions) -> KeyEntry {
    KeyEntry {
        api_key: key.into(),
        account: Some(account.into()),
        secret: None,
        ed25519_public_key: None,
        permissions: perms,
        ip_restrict: false,
        allowed_ips: vec![],
    }
}

fn hmac_entry(key: &str, secret: &str, account: &str, perms: Permissions) -> KeyEntry {
    KeyEntry {
        secret: Some(secret.into()),
        ..key_entry(key, account, perms)
    }
}

pub fn keys_file() -> KeysFile {
    let pem = bob_signing_key()
        .verifying_key()
        .to_public_key_pem(Default::default())
        .unwrap();
    let mut fenced = hmac_entry(FENCED_KEY, FENCED_SECRET, "alice", Permissions::default());
    fenced.ip_restrict = true;
    fenced.allowed_ips = vec!["10.1.2.3".into()];
    KeysFile {
        keys: vec![
            hmac_entry(ALICE_KEY, ALICE_SECRET, "alice", Permissions::default()),
            KeyEntry {
                ed25519_public_key: Some(pem),
                ..key_entry(BOB_KEY, "bob", Permissions::default())
            },
            hmac_entry(
                READER_KEY,
                READER_SECRET,
                "alice",
                Permissions {
                    reading: true,
                    futures: false,
                    spot: false,
                    withdrawals: false,
                },
            ),
            fenced,
        ],
        accounts: vec![AccountEntry {
            name: "bob".into(),
            usdt: "5000".into(),
        }],
    }
}

/// A frozen-market simulator (prices move only through the admin API) with BTCUSDT at 59999.9 / 60000.
pub async fn frozen_sim() -> SimHandle {
    sim_with(SimConfig {
        source: SourceKind::Frozen,
        tick_ms: 20,
        ..SimConfig::default()
    })
    .await
}

/// A frozen simulator and alice's client, the start of most REST tests.
pub async fn frozen_alice() -> (SimHandle, Client) {
    let h = frozen_sim().await;
    let c = Client::alice(&h);
    (h, c)
}

/// A simulator with the test keys and no quote set (moving markets set their own; some tests want none).
pub async fn bare_sim(mut cfg: SimConfig) -> SimHandle {
    cfg.keys = keys_file();
    start(cfg).await.expect("simulator starts")
}

pub async fn sim_with(cfg: SimConfig) -> SimHandle {
    let h = bare_sim(cfg).await;
    h.admin()
        .call(AdminCall::set_quote(
            "BTCUSDT", "59999.9", "0.5", "60000", "0.5",
        ))
        .await
        .unwrap();
    h
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[derive(Clone)]
pub enum Signer {
    Hmac(String),
    Ed(ed25519_dalek::SigningKey),
}

impl Signer {
    pub fn sign(&self, payload: &str) -> String {
        match self {
            Signer::Hmac(s) => hmac_hex(s, payload.as_bytes()),
            Signer::Ed(k) => {
                let b = base64::engine::general_purpose::STANDARD
                    .encode(k.sign(payload.as_bytes()).to_bytes());
                form_urlencoded::byte_serialize(b.as_bytes()).collect()
            }
        }
    }
}

/// A REST answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn code(&self) -> i64 {
        self.body["code"].as_i64().unwrap_or(0)
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
    /// Asserts a Binance error (status, code) and that the body has both fields.
    pub fn assert_err(&self, status: u16, code: i64) {
        self.assert_err_for("request", status, code);
    }
    /// [`Resp::assert_err`] naming the case, for tables of requests.
    pub fn assert_err_for(&self, case: &str, status: u16, code: i64) {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "{case}: body {}",
            self.body
        );
        assert!(
            self.body["msg"].is_string(),
            "{case}: msg missing in {}",
            self.body
        );
    }
}

/// A GTC limit order's parameters.
pub fn limit<'a>(
    symbol: &'a str,
    side: &'a str,
    tif: &'a str,
    qty: &'a str,
    price: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("symbol", symbol),
        ("side", side),
        ("type", "LIMIT"),
        ("timeInForce", tif),
        ("quantity", qty),
        ("price", price),
    ]
}

/// The resting order most tests place: a BTCUSDT GTC limit buy.
pub fn limit_buy<'a>(qty: &'a str, price: &'a str) -> Vec<(&'a str, &'a str)> {
    limit("BTCUSDT", "BUY", "GTC", qty, price)
}

/// A BTCUSDT market order's parameters.
pub fn market<'a>(side: &'a str, qty: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("symbol", "BTCUSDT"),
        ("side", side),
        ("type", "MARKET"),
        ("quantity", qty),
    ]
}

/// `params` with a client order id, for orders a test looks up again.
pub fn with_id<'a>(mut params: Vec<(&'a str, &'a str)>, id: &'a str) -> Vec<(&'a str, &'a str)> {
    params.push(("newClientOrderId", id));
    params
}

#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub key: String,
    pub signer: Signer,
    pub http: reqwest::Client,
    /// Added to the local clock for timestamps.
    pub offset_ms: i64,
}

pub fn enc(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

impl Client {
    pub fn alice(h: &SimHandle) -> Self {
        Self::new(h, ALICE_KEY, Signer::Hmac(ALICE_SECRET.into()))
    }
    pub fn bob(h: &SimHandle) -> Self {
        Self::new(h, BOB_KEY, Signer::Ed(bob_signing_key()))
    }
    pub fn new(h: &SimHandle, key: &str, signer: Signer) -> Self {
        Self {
            base: h.base_url(),
            key: key.into(),
            signer,
            http: reqwest::Client::new(),
            offset_ms: 0,
        }
    }

    pub async fn raw(&self, method: &str, path: &str, query: &str, body: &str) -> Resp {
        let url = if query.is_empty() {
            format!("{}{}", self.base, path)
        } else {
            format!("{}{}?{}", self.base, path, query)
        };
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, url).header("X-MBX-APIKEY", &self.key);
        if !body.is_empty() {
            req = req
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp {
            status,
            headers,
            body,
        }
    }

    fn ts(&self) -> String {
        ((now_ms() as i64) + self.offset_ms).to_string()
    }

    /// Signed request with every parameter in the query (binance-futures-connector style).
    pub async fn signed(&self, method: &str, path: &str, params: &[(&str, &str)]) -> Resp {
        let ts = self.ts();
        let mut p = params.to_vec();
        p.push(("timestamp", &ts));
        let q = enc(&p);
        let sig = self.signer.sign(&q);
        self.raw(method, path, &format!("{q}&signature={sig}"), "")
            .await
    }

    /// Signed request with every parameter in the form body (python-binance style: sorted, signature last).
    pub async fn signed_body(&self, method: &str, path: &str, params: &[(&str, &str)]) -> Resp {
        let ts = self.ts();
        let mut p = params.to_vec();
        p.push(("timestamp", &ts));
        p.sort();
        let b = enc(&p);
        let sig = self.signer.sign(&b);
        self.raw(method, path, "", &format!("{b}&signature={sig}"))
            .await
    }

    pub async fn public(&self, path: &str, query: &str) -> Resp {
        self.raw("GET", path, query, "").await
    }

    pub async fn order(&self, params: &[(&str, &str)]) -> Resp {
        self.signed("POST", "/fapi/v1/order", params).await
    }

    /// A BTCUSDT order looked up by its client order id.
    pub async fn query_order(&self, client_id: &str) -> Resp {
        self.signed(
            "GET",
            "/fapi/v1/order",
            &[("symbol", "BTCUSDT"), ("origClientOrderId", client_id)],
        )
        .await
    }

    pub async fn account(&self) -> Resp {
        self.signed("GET", "/fapi/v2/account", &[]).await
    }

    /// Creates (or returns the living) listenKey; panics when the answer has none.
    pub async fn listen_key(&self) -> String {
        let r = self.raw("POST", "/fapi/v1/listenKey", "", "").await;
        r.body["listenKey"]
            .as_str()
            .unwrap_or_else(|| panic!("no listenKey: {}", r.body))
            .to_string()
    }

    /// The keepalive PUT without a listenKey parameter, as most clients send it.
    pub async fn keepalive(&self) -> Resp {
        self.raw("PUT", "/fapi/v1/listenKey", "", "").await
    }
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn ws(h: &SimHandle, path: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("{}{}", h.ws_url(), path))
        .await
        .unwrap_or_else(|e| panic!("connect {path}: {e}"));
    ws
}

/// What a socket did next.
#[derive(Debug)]
pub enum Next {
    Text(Value),
    /// Text that is not JSON.
    Garbage(String),
    /// A close frame with its code.
    Closed(u16),
    /// The connection ended without a close frame (or with an error).
    Cut,
    Timeout,
}

pub async fn next(ws: &mut Ws, within: Duration) -> Next {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Next::Timeout,
            Ok(None) | Ok(Some(Err(_))) => return Next::Cut,
            Ok(Some(Ok(Message::Text(t)))) => {
                return match serde_json::from_str(t.as_str()) {
                    Ok(v) => Next::Text(v),
                    Err(_) => Next::Garbage(t.to_string()),
                }
            }
            Ok(Some(Ok(Message::Close(f)))) => {
                return Next::Closed(f.map(|f| u16::from(f.code)).unwrap_or(0))
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// The next JSON message matching `pred`, skipping others.
pub async fn next_matching(ws: &mut Ws, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next(ws, left).await {
            Next::Text(v) if pred(&v) => return v,
            Next::Text(_) => continue,
            other => panic!("expected a matching message, got {other:?}"),
        }
    }
}

/// What the socket did next apart from sending JSON (a cut, a close, garbage, or no message for `within`).
pub async fn next_non_json(ws: &mut Ws, within: Duration) -> Next {
    loop {
        match next(ws, within).await {
            Next::Text(_) => continue,
            other => return other,
        }
    }
}

/// Asserts the socket goes quiet: after `settle_ms`, what was in flight is drained (messages less than
/// `gap_ms` apart), then nothing arrives for 400 ms.
pub async fn assert_quiet(ws: &mut Ws, settle_ms: u64, gap_ms: u64, why: &str) {
    tokio::time::sleep(Duration::from_millis(settle_ms)).await;
    while let Next::Text(_) = next(ws, Duration::from_millis(gap_ms)).await {}
    let n = next(ws, Duration::from_millis(400)).await;
    assert!(matches!(n, Next::Timeout), "{why}: got {n:?}");
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

pub fn admin(h: &SimHandle) -> AdminClient {
    h.admin()
}
