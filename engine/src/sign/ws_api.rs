//! WebSocket-API requests (`order.place`, `order.cancel`, `order.status`, spot's `order.cancelReplace`,
//! `session.logon`) as JSON bytes.
//!
//! Signing rule (protocol notes §6): every param except `signature` — `apiKey` included — sorted by name, joined
//! as `k=v&…`, signed; the signature goes in as one more param. Integers are JSON numbers, decimals and names
//! JSON strings (`reduceOnly` is the string `"true"`/`"false"`, as on REST); the signed text of a value is the
//! number's digits or the string's content. After `session.logon` a connection's requests carry neither
//! `apiKey` nor `signature` ([`WsAuth::Session`]) — no per-order signing cost at all.

use super::out::{Num, Out};
use super::{check_order, tif_str, ApiKey, CancelRef, CancelReplace, CancelRequest, Flavor};
use super::{Ed25519Signer, OrderRequest, SignError, Signer, WirePrecision, MAX_SIGNATURE_LEN};

/// A param's value and how JSON writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsValue<'a> {
    /// Written as a JSON string. Must not contain `"`, `\` or control characters (checked).
    Str(&'a [u8]),
    /// Written bare, as a JSON number (the caller passes digits).
    Num(&'a [u8]),
}

impl WsValue<'_> {
    #[inline]
    fn text(&self) -> &[u8] {
        match self {
            Self::Str(b) | Self::Num(b) => b,
        }
    }
}

/// One request param.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsParam<'a> {
    /// Name (`symbol`, `timestamp`, …).
    pub name: &'a str,
    /// Value.
    pub value: WsValue<'a>,
}

/// How a request authenticates.
#[derive(Debug, Clone, Copy)]
pub enum WsAuth<'a> {
    /// Carries `apiKey` and a `signature` over the sorted params.
    Signed {
        /// The API key (sent, and signed over).
        api_key: &'a ApiKey,
        /// The signing key.
        signer: &'a Signer,
    },
    /// The connection is logged on (`session.logon`): no `apiKey`, no `signature`.
    Session,
}

/// Internal: which key signs (session.logon takes an Ed25519 key only, enforced by type).
#[derive(Clone, Copy)]
enum Key<'a> {
    Any(&'a Signer),
    Ed(&'a Ed25519Signer),
}

impl Key<'_> {
    #[inline]
    fn sign_json(&self, payload: &[u8], out: &mut [u8]) -> Option<usize> {
        match self {
            Self::Any(s) => s.write_json_signature(payload, out),
            Self::Ed(e) => e.sign_base64(payload, out),
        }
    }
}

const EMPTY: WsParam<'static> = WsParam {
    name: "",
    value: WsValue::Num(b""),
};

/// Calls `f` on `params` and `extra` merged by name (both sorted).
#[inline]
fn merged<'p>(
    params: &[WsParam<'p>],
    extra: &[WsParam<'p>],
    mut f: impl FnMut(usize, &WsParam<'p>) -> Result<(), SignError>,
) -> Result<(), SignError> {
    let (mut i, mut j, mut k) = (0, 0, 0);
    while i < params.len() || j < extra.len() {
        let take_param = j == extra.len() || (i < params.len() && params[i].name < extra[j].name);
        if take_param {
            f(k, &params[i])?;
            i += 1;
        } else {
            f(k, &extra[j])?;
            j += 1;
        }
        k += 1;
    }
    Ok(())
}

fn validate(params: &[WsParam<'_>]) -> Result<(), SignError> {
    for w in params.windows(2) {
        if w[0].name >= w[1].name {
            return Err(SignError::UnsortedParams);
        }
    }
    for p in params {
        if p.name == "apiKey" || p.name == "signature" || p.name.is_empty() {
            return Err(SignError::UnsortedParams);
        }
        let ok = match p.value {
            WsValue::Str(b) => b.iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\'),
            WsValue::Num(b) => !b.is_empty() && b.iter().all(|c| c.is_ascii_digit() || *c == b'-'),
        };
        if !ok {
            return Err(SignError::UnsafeValue);
        }
    }
    Ok(())
}

fn encode_inner(
    id: u64,
    method: &str,
    params: &[WsParam<'_>],
    auth: Option<(&ApiKey, Key<'_>)>,
    scratch: &mut [u8],
    out: &mut [u8],
) -> Result<usize, SignError> {
    validate(params)?;
    let mut sig_buf = [0u8; MAX_SIGNATURE_LEN];
    let mut extra = [EMPTY; 2];
    let n_extra = match auth {
        Some((api_key, key)) => {
            extra[0] = WsParam {
                name: "apiKey",
                value: WsValue::Str(api_key.expose().as_bytes()),
            };
            let mut s = Out::new(scratch);
            merged(params, &extra[..1], |k, p| {
                if k > 0 {
                    s.put(b"&")?;
                }
                s.put(p.name.as_bytes())?;
                s.put(b"=")?;
                s.put(p.value.text())
            })?;
            let len = s.len();
            let sig_len = key
                .sign_json(&scratch[..len], &mut sig_buf)
                .ok_or(SignError::BufferTooSmall)?;
            extra[1] = WsParam {
                name: "signature",
                value: WsValue::Str(&sig_buf[..sig_len]),
            };
            2
        }
        None => 0,
    };
    let mut w = Out::new(out);
    w.put(b"{\"id\":")?;
    w.put(Num::int(id).as_bytes())?;
    w.put(b",\"method\":\"")?;
    w.put(method.as_bytes())?;
    w.put(b"\",\"params\":{")?;
    merged(params, &extra[..n_extra], |k, p| {
        if k > 0 {
            w.put(b",")?;
        }
        w.put(b"\"")?;
        w.put(p.name.as_bytes())?;
        w.put(b"\":")?;
        match p.value {
            WsValue::Str(v) => {
                w.put(b"\"")?;
                w.put(v)?;
                w.put(b"\"")
            }
            WsValue::Num(v) => w.put(v),
        }
    })?;
    w.put(b"}}")?;
    Ok(w.len())
}

/// Writes `{"id":…,"method":…,"params":{…}}` for `params` (sorted by name, without `apiKey`/`signature`; the
/// auth adds those in their sorted places). `scratch` holds the signing payload. Returns the length.
/// Allocation-free.
pub fn encode_request(
    id: u64,
    method: &str,
    params: &[WsParam<'_>],
    auth: WsAuth<'_>,
    scratch: &mut [u8],
    out: &mut [u8],
) -> Result<usize, SignError> {
    let auth = match auth {
        WsAuth::Signed { api_key, signer } => Some((api_key, Key::Any(signer))),
        WsAuth::Session => None,
    };
    encode_inner(id, method, params, auth, scratch, out)
}

/// Receives an `order.place` request's fields in sorted order and writes them as the signing payload
/// (`JSON = false`) or as the request's JSON params (`JSON = true`). Monomorphised on `JSON`, so the field list
/// below is written once and both outputs agree by construction.
struct Fields<'o, 'b, const JSON: bool> {
    w: &'o mut Out<'b>,
    first: bool,
}

impl<'o, 'b, const JSON: bool> Fields<'o, 'b, JSON> {
    #[inline(always)]
    fn new(w: &'o mut Out<'b>) -> Self {
        Self { w, first: true }
    }

    /// `pay` is `&name=`, `json` is `,"name":`; the first field drops their leading separator. `quoted` only
    /// matters in JSON: the payload carries values bare.
    #[inline(always)]
    fn field(&mut self, pay: &[u8], json: &[u8], v: &[u8], quoted: bool) -> Result<(), SignError> {
        let sep = if JSON { json } else { pay };
        self.w.put(if self.first { &sep[1..] } else { sep })?;
        self.first = false;
        if JSON && quoted {
            self.w.put(b"\"")?;
            self.w.put(v)?;
            self.w.put(b"\"")
        } else {
            self.w.put(v)
        }
    }
}

macro_rules! field {
    ($s:expr, $name:literal, $v:expr, $quoted:expr) => {
        $s.field(
            concat!("&", $name, "=").as_bytes(),
            concat!(",\"", $name, "\":").as_bytes(),
            $v,
            $quoted,
        )
    };
}

/// The fields of an `order.place` (or a spot `order.cancelReplace`), sorted by name (byte order). Every name
/// sorts after `apiKey` (the `cancel…` ones too: `ap` < `ca`); `signature` sorts between `side` and `symbol`.
/// The golden tests pin this order.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // Private; one call site per sink.
fn order_fields<const JSON: bool>(
    s: &mut Fields<'_, '_, JSON>,
    api_key: Option<&[u8]>,
    sig: Option<&[u8]>,
    o: &OrderRequest,
    c: &super::Checked,
    flavor: Flavor<'_>,
    recv: &Num,
    ts: &Num,
) -> Result<(), SignError> {
    if let Some(k) = api_key {
        field!(s, "apiKey", k, true)?;
    }
    if let Flavor::SpotReplace(r) = flavor {
        if let Some(n) = &r.cancel_new_client_id {
            field!(s, "cancelNewClientOrderId", n.as_bytes(), true)?;
        }
        field!(
            s,
            "cancelOrigClientOrderId",
            r.cancel_client_id.as_bytes(),
            true
        )?;
        field!(s, "cancelReplaceMode", b"ALLOW_FAILURE", true)?;
    }
    field!(s, "newClientOrderId", o.client_id.as_bytes(), true)?;
    field!(s, "newOrderRespType", o.resp_type.as_str().as_bytes(), true)?;
    if let Some(price) = &c.price {
        field!(s, "price", price.as_bytes(), true)?;
    }
    field!(s, "quantity", c.qty.as_bytes(), true)?;
    field!(s, "recvWindow", recv.as_bytes(), false)?;
    // Spot refuses `reduceOnly`: a spot exit is reduce-only for the engine's gate only.
    if !flavor.is_spot() {
        let reduce: &[u8] = if o.reduce_only { b"true" } else { b"false" };
        field!(s, "reduceOnly", reduce, true)?;
    }
    field!(s, "side", o.side.as_str().as_bytes(), true)?;
    if let Some(sig) = sig {
        field!(s, "signature", sig, true)?;
    }
    field!(s, "symbol", o.symbol.as_bytes(), true)?;
    let (type_str, tif) = flavor.shape(o.order_type, c.tif);
    if let Some(tif) = tif {
        field!(s, "timeInForce", tif_str(tif).as_bytes(), true)?;
    }
    field!(s, "timestamp", ts.as_bytes(), false)?;
    field!(s, "type", type_str.as_bytes(), true)
}

/// Writes an `order.place` request: the same fields as the REST order (see [`super::rest::encode_order`]),
/// params sorted by name. Returns the length. Allocation-free.
///
/// Written by a specialised path rather than [`encode_request`] (same output, pinned by the tests) because this
/// is the hot one: no runtime sorting or validation of names, whose values are valid by type.
#[allow(clippy::too_many_arguments)] // Mirrors the wire request one to one; a struct would only rename them.
#[inline]
pub fn encode_order_place(
    id: u64,
    o: &OrderRequest,
    p: &WirePrecision,
    recv_window_ms: u32,
    timestamp_ms: u64,
    auth: WsAuth<'_>,
    scratch: &mut [u8],
    out: &mut [u8],
) -> Result<usize, SignError> {
    encode_order_as(
        id,
        Flavor::Futures,
        o,
        p,
        recv_window_ms,
        timestamp_ms,
        auth,
        scratch,
        out,
    )
}

/// Writes a spot `order.place` request: [`encode_order_place`]'s fields without `reduceOnly`, and a post-only
/// (GTX) limit as `type` `LIMIT_MAKER` without `timeInForce`. Returns the length. Allocation-free.
#[allow(clippy::too_many_arguments)] // Mirrors the wire request one to one.
pub fn encode_spot_order_place(
    id: u64,
    o: &OrderRequest,
    p: &WirePrecision,
    recv_window_ms: u32,
    timestamp_ms: u64,
    auth: WsAuth<'_>,
    scratch: &mut [u8],
    out: &mut [u8],
) -> Result<usize, SignError> {
    encode_order_as(
        id,
        Flavor::Spot,
        o,
        p,
        recv_window_ms,
        timestamp_ms,
        auth,
        scratch,
        out,
    )
}

/// Writes a spot `order.cancelReplace` request: cancel `c.cancel_client_id` (`cancelReplaceMode`
/// `ALLOW_FAILURE`, so the new order goes in even when the cancel fails) and place `o` with the fields of
/// [`encode_spot_order_place`]. Returns the length. Allocation-free.
#[allow(clippy::too_many_arguments)] // Mirrors the wire request one to one.
pub fn encode_order_cancel_replace(
    id: u64,
    o: &OrderRequest,
    p: &WirePrecision,
    c: &CancelReplace,
    recv_window_ms: u32,
    timestamp_ms: u64,
    auth: WsAuth<'_>,
    scratch: &mut [u8],
    out: &mut [u8],
) -> Result<usize, SignError> {
    encode_order_as(
        id,
        Flavor::SpotReplace(c),
        o,
        p,
        recv_window_ms,
        timestamp_ms,
        auth,
        scratch,
        out,
    )
}

#[allow(clippy::too_many_arguments)] // Private; the three encoders above.
#[inline]
fn encode_order_as(
    id: u64,
    flavor: Flavor<'_>,
    o: &OrderRequest,
    p: &WirePrecision,
    recv_window_ms: u32,
    timestamp_ms: u64,
    auth: WsAuth<'_>,
    scratch: &mut [u8],
    out: &mut [u8],
) -> Result<usize, SignError> {
    let c = check_order(o, p)?;
    let recv = Num::int(recv_window_ms as u64);
    let ts = Num::int(timestamp_ms);
    let mut sig_buf = [0u8; MAX_SIGNATURE_LEN];
    let (api_key, sig) = match auth {
        WsAuth::Signed { api_key, signer } => {
            let key = api_key.expose().as_bytes();
            let mut w = Out::new(scratch);
            order_fields(
                &mut Fields::<false>::new(&mut w),
                Some(key),
                None,
                o,
                &c,
                flavor,
                &recv,
                &ts,
            )?;
            let len = w.len();
            let n = signer
                .write_json_signature(&scratch[..len], &mut sig_buf)
                .ok_or(SignError::BufferTooSmall)?;
            (Some(key), Some(&sig_buf[..n]))
        }
        WsAuth::Session => (None, None),
    };
    let mut w = Out::new(out);
    w.put(b"{\"id\":")?;
    w.put(Num::int(id).as_bytes())?;
    w.put(match flavor {
        Flavor::SpotReplace(_) => &b",\"method\":\"order.cancelReplace\",\"params\":{"[..],
        _ => &b",\"method\":\"order.place\",\"params\":{"[..],
    })?;
    order_fields(
        &mut Fields::<true>::new(&mut w),
        api_key,
        sig,
        o,
        &c,
        flavor,
        &recv,
        &ts,
    )?;
    w.put(b"}}")?;
    Ok(w.len())
}

/// Writes an `order.cancel` request (`symbol`, `origClientOrderId`|`orderId`, `recvWindow`, `timestamp`).
pub fn encode_order_cancel(
    id: u64,
    c: &CancelRequest,
    recv_window_ms: u32,
    timestamp_ms: u64,
    auth: WsAuth<'_>,
    scratch: &mut [u8],
    out: &mut [u8],
) -> Result<usize, SignError> {
    encode_order_ref(
        id,
        "order.cancel",
        c,
        recv_window_ms,
        timestamp_ms,
        auth,
        scratch,
        out,
    )
}

/// Writes an `order.status` request: the same parameters as `order.cancel` (the order is named the same way),
/// used to settle an order whose outcome is unknown.
pub fn encode_order_status(
    id: u64,
    c: &CancelRequest,
    recv_window_ms: u32,
    timestamp_ms: u64,
    auth: WsAuth<'_>,
    scratch: &mut [u8],
    out: &mut [u8],
) -> Result<usize, SignError> {
    encode_order_ref(
        id,
        "order.status",
        c,
        recv_window_ms,
        timestamp_ms,
        auth,
        scratch,
        out,
    )
}

#[allow(clippy::too_many_arguments)] // Private helper of the two encoders above.
fn encode_order_ref(
    id: u64,
    method: &str,
    c: &CancelRequest,
    recv_window_ms: u32,
    timestamp_ms: u64,
    auth: WsAuth<'_>,
    scratch: &mut [u8],
    out: &mut [u8],
) -> Result<usize, SignError> {
    let recv = Num::int(recv_window_ms as u64);
    let ts = Num::int(timestamp_ms);
    let order_id;
    let which = match &c.order {
        CancelRef::ClientId(cid) => WsParam {
            name: "origClientOrderId",
            value: WsValue::Str(cid.as_bytes()),
        },
        CancelRef::OrderId(oid) => {
            order_id = Num::int(*oid);
            WsParam {
                name: "orderId",
                value: WsValue::Num(order_id.as_bytes()),
            }
        }
    };
    let ps = [
        which,
        WsParam {
            name: "recvWindow",
            value: WsValue::Num(recv.as_bytes()),
        },
        WsParam {
            name: "symbol",
            value: WsValue::Str(c.symbol.as_bytes()),
        },
        WsParam {
            name: "timestamp",
            value: WsValue::Num(ts.as_bytes()),
        },
    ];
    encode_request(id, method, &ps, auth, scratch, out)
}

/// Writes a `session.logon` request: `apiKey`, Ed25519 `signature` over `apiKey=…&timestamp=…`, `timestamp`.
/// Binance accepts only Ed25519 keys here, hence the parameter type.
pub fn encode_session_logon(
    id: u64,
    api_key: &ApiKey,
    signer: &Ed25519Signer,
    timestamp_ms: u64,
    scratch: &mut [u8],
    out: &mut [u8],
) -> Result<usize, SignError> {
    let ts = Num::int(timestamp_ms);
    let ps = [WsParam {
        name: "timestamp",
        value: WsValue::Num(ts.as_bytes()),
    }];
    encode_inner(
        id,
        "session.logon",
        &ps,
        Some((api_key, Key::Ed(signer))),
        scratch,
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::super::{HmacSigner, RespType, MAX_REQUEST_LEN};
    use super::*;
    use aegis_shared::event::{OrderType, TimeInForce};
    use aegis_shared::{ClientOrderId, Price, Qty, Secret, Side, Symbol};
    use base64::Engine as _;
    use ed25519_dalek::{Signature, SigningKey, Verifier};

    const SPOT_KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
    const SPOT_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";

    fn key() -> ApiKey {
        ApiKey::new(Secret::new(SPOT_KEY.into())).unwrap()
    }
    fn hmac() -> Signer {
        Signer::Hmac(HmacSigner::new(&Secret::new(SPOT_SECRET.into())))
    }
    fn text(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }
    fn json(b: &[u8]) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }
    /// What `encode` writes when signed with the spot test key and HMAC secret, as text.
    fn signed(
        encode: impl FnOnce(WsAuth<'_>, &mut [u8], &mut [u8]) -> Result<usize, SignError>,
    ) -> String {
        let (k, s) = (key(), hmac());
        let mut scratch = [0u8; MAX_REQUEST_LEN];
        let mut out = [0u8; MAX_REQUEST_LEN];
        let auth = WsAuth::Signed {
            api_key: &k,
            signer: &s,
        };
        let n = encode(auth, &mut scratch, &mut out).unwrap();
        text(&out[..n]).to_string()
    }

    #[test]
    fn protocol_vector_sorted_params() {
        let params = [
            WsParam {
                name: "price",
                value: WsValue::Str(b"52000.00"),
            },
            WsParam {
                name: "quantity",
                value: WsValue::Str(b"0.01000000"),
            },
            WsParam {
                name: "recvWindow",
                value: WsValue::Num(b"100"),
            },
            WsParam {
                name: "side",
                value: WsValue::Str(b"SELL"),
            },
            WsParam {
                name: "symbol",
                value: WsValue::Str(b"BTCUSDT"),
            },
            WsParam {
                name: "timeInForce",
                value: WsValue::Str(b"GTC"),
            },
            WsParam {
                name: "timestamp",
                value: WsValue::Num(b"1645423376532"),
            },
            WsParam {
                name: "type",
                value: WsValue::Str(b"LIMIT"),
            },
        ];
        assert_eq!(
            signed(|a, sc, o| encode_request(42, "order.place", &params, a, sc, o)),
            concat!(
                r#"{"id":42,"method":"order.place","params":{"apiKey":"vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A","#,
                r#""price":"52000.00","quantity":"0.01000000","recvWindow":100,"side":"SELL","#,
                r#""signature":"aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24","#,
                r#""symbol":"BTCUSDT","timeInForce":"GTC","timestamp":1645423376532,"type":"LIMIT"}}"#
            )
        );
    }

    fn order() -> OrderRequest {
        OrderRequest {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            side: Side::Sell,
            order_type: OrderType::Limit,
            tif: Some(TimeInForce::Gtc),
            qty: Qty::parse("0.01").unwrap(),
            price: Price::parse("52000").unwrap(),
            reduce_only: false,
            client_id: ClientOrderId::new("agx-1").unwrap(),
            resp_type: RespType::Ack,
        }
    }
    fn prec() -> WirePrecision {
        WirePrecision::new(
            Price::parse("0.01").unwrap(),
            Qty::parse("0.00000001").unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn order_place_signed_golden_and_signature_matches_sorted_payload() {
        let t = signed(|a, sc, o| {
            encode_order_place(7, &order(), &prec(), 100, 1645423376532, a, sc, o)
        });
        let payload = format!(
            "apiKey={SPOT_KEY}&newClientOrderId=agx-1&newOrderRespType=ACK&price=52000.00&quantity=0.01000000\
             &recvWindow=100&reduceOnly=false&side=SELL&symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532&type=LIMIT"
        );
        let mut sig = [0u8; 64];
        HmacSigner::new(&Secret::new(SPOT_SECRET.into()))
            .sign_hex(payload.as_bytes(), &mut sig)
            .unwrap();
        let expected = format!(
            r#"{{"id":7,"method":"order.place","params":{{"apiKey":"{SPOT_KEY}","newClientOrderId":"agx-1","newOrderRespType":"ACK","price":"52000.00","quantity":"0.01000000","recvWindow":100,"reduceOnly":"false","side":"SELL","signature":"{}","symbol":"BTCUSDT","timeInForce":"GTC","timestamp":1645423376532,"type":"LIMIT"}}}}"#,
            text(&sig)
        );
        assert_eq!(t, expected);
        // Valid JSON whose params appear in byte order of their names (checked on the raw text: a parsed map
        // would sort them itself).
        assert!(json(t.as_bytes())["params"].is_object());
        let names = [
            "apiKey",
            "newClientOrderId",
            "newOrderRespType",
            "price",
            "quantity",
            "recvWindow",
            "reduceOnly",
            "side",
            "signature",
            "symbol",
            "timeInForce",
            "timestamp",
            "type",
        ];
        let pos: Vec<usize> = names
            .iter()
            .map(|k| t.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{t}");
    }

    /// Spot `order.place`: no `reduceOnly` even on an exit, post-only as `LIMIT_MAKER` without `timeInForce`;
    /// the signature covers exactly the sorted params sent.
    #[test]
    fn spot_order_place_golden_limit_maker_and_no_reduce_only() {
        let mut o = order();
        o.tif = Some(TimeInForce::Gtx);
        o.reduce_only = true;
        let t = signed(|a, sc, out| {
            encode_spot_order_place(7, &o, &prec(), 100, 1645423376532, a, sc, out)
        });
        let payload = format!(
            "apiKey={SPOT_KEY}&newClientOrderId=agx-1&newOrderRespType=ACK&price=52000.00&quantity=0.01000000\
             &recvWindow=100&side=SELL&symbol=BTCUSDT&timestamp=1645423376532&type=LIMIT_MAKER"
        );
        let mut sig = [0u8; 64];
        HmacSigner::new(&Secret::new(SPOT_SECRET.into()))
            .sign_hex(payload.as_bytes(), &mut sig)
            .unwrap();
        let expected = format!(
            r#"{{"id":7,"method":"order.place","params":{{"apiKey":"{SPOT_KEY}","newClientOrderId":"agx-1","newOrderRespType":"ACK","price":"52000.00","quantity":"0.01000000","recvWindow":100,"side":"SELL","signature":"{}","symbol":"BTCUSDT","timestamp":1645423376532,"type":"LIMIT_MAKER"}}}}"#,
            text(&sig)
        );
        assert_eq!(t, expected);
        // A GTC limit keeps its time in force; a logged-on session's request has neither key nor signature.
        o.tif = Some(TimeInForce::Gtc);
        let mut scratch = [0u8; MAX_REQUEST_LEN];
        let mut out = [0u8; MAX_REQUEST_LEN];
        let n = encode_spot_order_place(
            8,
            &o,
            &prec(),
            100,
            5,
            WsAuth::Session,
            &mut scratch,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            text(&out[..n]),
            r#"{"id":8,"method":"order.place","params":{"newClientOrderId":"agx-1","newOrderRespType":"ACK","price":"52000.00","quantity":"0.01000000","recvWindow":100,"side":"SELL","symbol":"BTCUSDT","timeInForce":"GTC","timestamp":5,"type":"LIMIT"}}"#
        );
    }

    /// `order.cancelReplace` (Binance's example's parameter names): the cancel leg's fields sort after `apiKey`,
    /// and the specialised writer agrees byte for byte with the generic sorted-params encoder.
    #[test]
    fn cancel_replace_golden_and_equal_to_the_generic_encoder() {
        let mut o = order();
        o.order_type = OrderType::Market;
        o.tif = None;
        o.reduce_only = true;
        o.client_id = ClientOrderId::new("agx-2").unwrap();
        let c = CancelReplace {
            cancel_client_id: ClientOrderId::new("4d96324ff9d44481926157").unwrap(),
            cancel_new_client_id: Some(ClientOrderId::new("91fe37ce9e69c90d6358c0").unwrap()),
        };
        let t = signed(|a, sc, out| {
            encode_order_cancel_replace(9, &o, &prec(), &c, 100, 1660813156900, a, sc, out)
        });
        let params = [
            WsParam {
                name: "cancelNewClientOrderId",
                value: WsValue::Str(b"91fe37ce9e69c90d6358c0"),
            },
            WsParam {
                name: "cancelOrigClientOrderId",
                value: WsValue::Str(b"4d96324ff9d44481926157"),
            },
            WsParam {
                name: "cancelReplaceMode",
                value: WsValue::Str(b"ALLOW_FAILURE"),
            },
            WsParam {
                name: "newClientOrderId",
                value: WsValue::Str(b"agx-2"),
            },
            WsParam {
                name: "newOrderRespType",
                value: WsValue::Str(b"ACK"),
            },
            WsParam {
                name: "quantity",
                value: WsValue::Str(b"0.01000000"),
            },
            WsParam {
                name: "recvWindow",
                value: WsValue::Num(b"100"),
            },
            WsParam {
                name: "side",
                value: WsValue::Str(b"SELL"),
            },
            WsParam {
                name: "symbol",
                value: WsValue::Str(b"BTCUSDT"),
            },
            WsParam {
                name: "timestamp",
                value: WsValue::Num(b"1660813156900"),
            },
            WsParam {
                name: "type",
                value: WsValue::Str(b"MARKET"),
            },
        ];
        let generic =
            signed(|a, sc, out| encode_request(9, "order.cancelReplace", &params, a, sc, out));
        assert_eq!(t, generic);
        assert!(t.starts_with(&format!(
            r#"{{"id":9,"method":"order.cancelReplace","params":{{"apiKey":"{SPOT_KEY}","cancelNewClientOrderId":"91fe37ce9e69c90d6358c0","cancelOrigClientOrderId":"4d96324ff9d44481926157","cancelReplaceMode":"ALLOW_FAILURE","newClientOrderId":"agx-2","#
        )));
        assert!(!t.contains("reduceOnly"), "{t}");
        // Without a new id for the cancelled order the field is simply absent.
        let c = CancelReplace {
            cancel_new_client_id: None,
            ..c
        };
        let t = signed(|a, sc, out| {
            encode_order_cancel_replace(9, &o, &prec(), &c, 100, 1660813156900, a, sc, out)
        });
        let generic =
            signed(|a, sc, out| encode_request(9, "order.cancelReplace", &params[1..], a, sc, out));
        assert_eq!(t, generic);
    }

    #[test]
    fn specialised_order_place_equals_the_generic_encoder() {
        let (k, s) = (key(), hmac());
        let mut scratch = [0u8; MAX_REQUEST_LEN];
        let (mut a, mut b) = ([0u8; MAX_REQUEST_LEN], [0u8; MAX_REQUEST_LEN]);
        for (i, (ot, reduce)) in [
            (OrderType::Limit, false),
            (OrderType::Market, true),
            (OrderType::Limit, true),
        ]
        .into_iter()
        .enumerate()
        {
            let mut o = order();
            o.order_type = ot;
            o.reduce_only = reduce;
            for logged_on in [false, true] {
                let auth = if logged_on {
                    WsAuth::Session
                } else {
                    WsAuth::Signed {
                        api_key: &k,
                        signer: &s,
                    }
                };
                let n =
                    encode_order_place(i as u64, &o, &prec(), 100, 5, auth, &mut scratch, &mut a)
                        .unwrap();
                let c = super::super::check_order(&o, &prec()).unwrap();
                let mut ps = vec![
                    WsParam {
                        name: "newClientOrderId",
                        value: WsValue::Str(o.client_id.as_bytes()),
                    },
                    WsParam {
                        name: "newOrderRespType",
                        value: WsValue::Str(b"ACK"),
                    },
                ];
                if let Some(p) = &c.price {
                    ps.push(WsParam {
                        name: "price",
                        value: WsValue::Str(p.as_bytes()),
                    });
                }
                ps.push(WsParam {
                    name: "quantity",
                    value: WsValue::Str(c.qty.as_bytes()),
                });
                ps.push(WsParam {
                    name: "recvWindow",
                    value: WsValue::Num(b"100"),
                });
                let r: &[u8] = if reduce { b"true" } else { b"false" };
                ps.push(WsParam {
                    name: "reduceOnly",
                    value: WsValue::Str(r),
                });
                ps.push(WsParam {
                    name: "side",
                    value: WsValue::Str(b"SELL"),
                });
                ps.push(WsParam {
                    name: "symbol",
                    value: WsValue::Str(b"BTCUSDT"),
                });
                if ot == OrderType::Limit {
                    ps.push(WsParam {
                        name: "timeInForce",
                        value: WsValue::Str(b"GTC"),
                    });
                }
                ps.push(WsParam {
                    name: "timestamp",
                    value: WsValue::Num(b"5"),
                });
                let t: &[u8] = if ot == OrderType::Limit {
                    b"LIMIT"
                } else {
                    b"MARKET"
                };
                ps.push(WsParam {
                    name: "type",
                    value: WsValue::Str(t),
                });
                let m = encode_request(i as u64, "order.place", &ps, auth, &mut scratch, &mut b)
                    .unwrap();
                assert_eq!(text(&a[..n]), text(&b[..m]));
            }
        }
    }

    #[test]
    fn order_place_in_a_logged_on_session_has_no_key_or_signature() {
        let mut scratch = [0u8; MAX_REQUEST_LEN];
        let mut out = [0u8; MAX_REQUEST_LEN];
        let mut o = order();
        o.order_type = OrderType::Market;
        o.reduce_only = true;
        let n = encode_order_place(
            8,
            &o,
            &prec(),
            5000,
            99,
            WsAuth::Session,
            &mut scratch,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            text(&out[..n]),
            r#"{"id":8,"method":"order.place","params":{"newClientOrderId":"agx-1","newOrderRespType":"ACK","quantity":"0.01000000","recvWindow":5000,"reduceOnly":"true","side":"SELL","symbol":"BTCUSDT","timestamp":99,"type":"MARKET"}}"#
        );
    }

    #[test]
    fn order_cancel_golden() {
        let c = CancelRequest {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            order: CancelRef::ClientId(ClientOrderId::new("agx-1").unwrap()),
        };
        let t = signed(|a, sc, o| encode_order_cancel(3, &c, 5000, 1_700_000_000_000, a, sc, o));
        let payload = format!(
            "apiKey={SPOT_KEY}&origClientOrderId=agx-1&recvWindow=5000&symbol=BTCUSDT&timestamp=1700000000000"
        );
        let mut sig = [0u8; 64];
        HmacSigner::new(&Secret::new(SPOT_SECRET.into())).sign_hex(payload.as_bytes(), &mut sig);
        assert_eq!(
            t,
            format!(
                r#"{{"id":3,"method":"order.cancel","params":{{"apiKey":"{SPOT_KEY}","origClientOrderId":"agx-1","recvWindow":5000,"signature":"{}","symbol":"BTCUSDT","timestamp":1700000000000}}}}"#,
                text(&sig)
            )
        );
        let c = CancelRequest {
            order: CancelRef::OrderId(5),
            ..c
        };
        let mut scratch = [0u8; MAX_REQUEST_LEN];
        let mut out = [0u8; MAX_REQUEST_LEN];
        let n =
            encode_order_cancel(4, &c, 5000, 1, WsAuth::Session, &mut scratch, &mut out).unwrap();
        assert_eq!(
            text(&out[..n]),
            r#"{"id":4,"method":"order.cancel","params":{"orderId":5,"recvWindow":5000,"symbol":"BTCUSDT","timestamp":1}}"#
        );
    }

    #[test]
    fn order_status_golden() {
        let c = CancelRequest {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            order: CancelRef::ClientId(ClientOrderId::new("agx-1").unwrap()),
        };
        let t = signed(|a, sc, o| encode_order_status(6, &c, 5000, 1_700_000_000_000, a, sc, o));
        let payload = format!(
            "apiKey={SPOT_KEY}&origClientOrderId=agx-1&recvWindow=5000&symbol=BTCUSDT&timestamp=1700000000000"
        );
        let mut sig = [0u8; 64];
        HmacSigner::new(&Secret::new(SPOT_SECRET.into())).sign_hex(payload.as_bytes(), &mut sig);
        assert_eq!(
            t,
            format!(
                r#"{{"id":6,"method":"order.status","params":{{"apiKey":"{SPOT_KEY}","origClientOrderId":"agx-1","recvWindow":5000,"signature":"{}","symbol":"BTCUSDT","timestamp":1700000000000}}}}"#,
                text(&sig)
            )
        );
        let mut scratch = [0u8; MAX_REQUEST_LEN];
        let mut out = [0u8; MAX_REQUEST_LEN];
        let n =
            encode_order_status(7, &c, 5000, 1, WsAuth::Session, &mut scratch, &mut out).unwrap();
        assert_eq!(
            text(&out[..n]),
            r#"{"id":7,"method":"order.status","params":{"origClientOrderId":"agx-1","recvWindow":5000,"symbol":"BTCUSDT","timestamp":1}}"#
        );
    }

    #[test]
    fn session_logon_is_ed25519_signed_over_key_and_timestamp() {
        let sk = SigningKey::generate(&mut rand::rngs::OsRng);
        let vk = sk.verifying_key();
        let ed = Ed25519Signer::from_signing_key(sk);
        let k = key();
        let mut scratch = [0u8; MAX_REQUEST_LEN];
        let mut out = [0u8; MAX_REQUEST_LEN];
        let n =
            encode_session_logon(1, &k, &ed, 1_649_729_878_532, &mut scratch, &mut out).unwrap();
        let v = json(&out[..n]);
        assert_eq!(v["method"], "session.logon");
        assert_eq!(v["id"], 1);
        assert_eq!(v["params"]["apiKey"], SPOT_KEY);
        assert_eq!(v["params"]["timestamp"], 1_649_729_878_532u64);
        let sig_b64 = v["params"]["signature"].as_str().unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sig_b64)
            .unwrap();
        let sig = Signature::from_slice(&raw).unwrap();
        let payload = format!("apiKey={SPOT_KEY}&timestamp=1649729878532");
        assert!(vk.verify(payload.as_bytes(), &sig).is_ok());
        assert!(
            text(&out[..n]).starts_with(r#"{"id":1,"method":"session.logon","params":{"apiKey":""#)
        );
    }

    #[test]
    fn api_key_sorts_in_its_place_among_other_params() {
        // "activationPrice" < "apiKey": the merge must not assume apiKey comes first.
        let params = [
            WsParam {
                name: "activationPrice",
                value: WsValue::Str(b"1"),
            },
            WsParam {
                name: "timestamp",
                value: WsValue::Num(b"2"),
            },
        ];
        let t = signed(|a, sc, o| encode_request(1, "x", &params, a, sc, o));
        let a = t.find("activationPrice").unwrap();
        let b = t.find("apiKey").unwrap();
        let c = t.find("signature").unwrap();
        let d = t.find("timestamp").unwrap();
        assert!(a < b && b < c && c < d, "{t}");
        let payload = format!("activationPrice=1&apiKey={SPOT_KEY}&timestamp=2");
        let mut sig = [0u8; 64];
        HmacSigner::new(&Secret::new(SPOT_SECRET.into())).sign_hex(payload.as_bytes(), &mut sig);
        assert_eq!(json(t.as_bytes())["params"]["signature"], text(&sig));
    }

    #[test]
    fn unsorted_duplicate_or_unsafe_params_are_refused() {
        let mut scratch = [0u8; 256];
        let mut out = [0u8; 256];
        let p = |name, value| WsParam { name, value };
        let mut enc = |ps: &[WsParam<'_>]| {
            encode_request(1, "m", ps, WsAuth::Session, &mut scratch, &mut out)
        };
        assert_eq!(
            enc(&[p("b", WsValue::Num(b"1")), p("a", WsValue::Num(b"1"))]),
            Err(SignError::UnsortedParams)
        );
        assert_eq!(
            enc(&[p("a", WsValue::Num(b"1")), p("a", WsValue::Num(b"2"))]),
            Err(SignError::UnsortedParams)
        );
        assert_eq!(
            enc(&[p("signature", WsValue::Str(b"x"))]),
            Err(SignError::UnsortedParams)
        );
        assert_eq!(
            enc(&[p("a", WsValue::Str(b"x\"y"))]),
            Err(SignError::UnsafeValue)
        );
        assert_eq!(
            enc(&[p("a", WsValue::Num(b"1e5"))]),
            Err(SignError::UnsafeValue)
        );
        assert!(enc(&[p("a", WsValue::Num(b"15"))]).is_ok());
    }
}
