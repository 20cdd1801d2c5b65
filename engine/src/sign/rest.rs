//! Signed REST query strings for order entry: USD-M futures (`POST`/`DELETE /fapi/v1/order`) and spot (`POST
//! /api/v3/order`, `POST /api/v3/order/cancelReplace`; the cancel of `DELETE /api/v3/order` is futures' query).
//!
//! The whole query is written into the caller's buffer, then signed over exactly those bytes, and
//! `&signature=<sig>` is appended last (futures require it last). Send it as the URL query or as the
//! `application/x-www-form-urlencoded` body; the signature covers the same bytes either way.

use super::out::{Num, Out};
use super::{check_order, tif_str, CancelRef, CancelRequest, Flavor, OrderRequest};
use super::{SignError, Signer, WirePrecision};

/// Appends `&signature=…` over everything written so far.
#[inline]
fn finish_signed(w: &mut Out<'_>, signer: &Signer) -> Result<usize, SignError> {
    w.put(b"&signature=")?;
    let (written, free) = w.split();
    // The payload excludes the "&signature=" just written.
    let payload = &written[..written.len() - b"&signature=".len()];
    let n = signer
        .write_rest_signature(payload, free)
        .ok_or(SignError::BufferTooSmall)?;
    w.advance(n);
    Ok(w.len())
}

/// Writes `k1=v1&k2=v2…&signature=…` for params in the given order (values must already be query-safe) and
/// returns its length. The building block for requests without a dedicated encoder.
pub fn encode_signed_query(
    params: &[(&str, &[u8])],
    signer: &Signer,
    out: &mut [u8],
) -> Result<usize, SignError> {
    let mut w = Out::new(out);
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            w.put(b"&")?;
        }
        w.put(k.as_bytes())?;
        w.put(b"=")?;
        w.put(v)?;
    }
    finish_signed(&mut w, signer)
}

/// Writes the signed query for `POST /fapi/v1/order`:
/// `symbol, side, type, [timeInForce], quantity, [price], reduceOnly, newClientOrderId, newOrderRespType,
/// recvWindow, timestamp, signature` (timeInForce and price only for LIMIT). Returns the length.
/// Allocation-free.
#[inline]
pub fn encode_order(
    o: &OrderRequest,
    p: &WirePrecision,
    recv_window_ms: u32,
    timestamp_ms: u64,
    signer: &Signer,
    out: &mut [u8],
) -> Result<usize, SignError> {
    encode_order_as(
        o,
        p,
        Flavor::Futures,
        recv_window_ms,
        timestamp_ms,
        signer,
        out,
    )
}

/// Writes the signed query for spot's `POST /api/v3/order`: the futures fields without `reduceOnly`, and a
/// post-only (GTX) limit as `type=LIMIT_MAKER` without `timeInForce`. Returns the length. Allocation-free.
pub fn encode_spot_order(
    o: &OrderRequest,
    p: &WirePrecision,
    recv_window_ms: u32,
    timestamp_ms: u64,
    signer: &Signer,
    out: &mut [u8],
) -> Result<usize, SignError> {
    encode_order_as(
        o,
        p,
        Flavor::Spot,
        recv_window_ms,
        timestamp_ms,
        signer,
        out,
    )
}

/// Writes the signed query for spot's `POST /api/v3/order/cancelReplace`: `symbol, cancelReplaceMode=
/// ALLOW_FAILURE, cancelOrigClientOrderId, [cancelNewClientOrderId]`, then the new order's spot fields as in
/// [`encode_spot_order`] (`newClientOrderId` is the new order's). Returns the length. Allocation-free.
pub fn encode_cancel_replace(
    o: &OrderRequest,
    p: &WirePrecision,
    c: &super::CancelReplace,
    recv_window_ms: u32,
    timestamp_ms: u64,
    signer: &Signer,
    out: &mut [u8],
) -> Result<usize, SignError> {
    encode_order_as(
        o,
        p,
        Flavor::SpotReplace(c),
        recv_window_ms,
        timestamp_ms,
        signer,
        out,
    )
}

/// The three order queries above in one field list.
#[inline]
pub(crate) fn encode_order_as(
    o: &OrderRequest,
    p: &WirePrecision,
    flavor: Flavor<'_>,
    recv_window_ms: u32,
    timestamp_ms: u64,
    signer: &Signer,
    out: &mut [u8],
) -> Result<usize, SignError> {
    let c = check_order(o, p)?;
    let (type_str, tif) = flavor.shape(o.order_type, c.tif);
    let mut w = Out::new(out);
    w.put(b"symbol=")?;
    w.put(o.symbol.as_bytes())?;
    if let Flavor::SpotReplace(r) = flavor {
        w.put(b"&cancelReplaceMode=ALLOW_FAILURE&cancelOrigClientOrderId=")?;
        w.put(r.cancel_client_id.as_bytes())?;
        if let Some(n) = &r.cancel_new_client_id {
            w.put(b"&cancelNewClientOrderId=")?;
            w.put(n.as_bytes())?;
        }
    }
    w.put(b"&side=")?;
    w.put(o.side.as_str().as_bytes())?;
    w.put(b"&type=")?;
    w.put(type_str.as_bytes())?;
    if let Some(tif) = tif {
        w.put(b"&timeInForce=")?;
        w.put(tif_str(tif).as_bytes())?;
    }
    w.put(b"&quantity=")?;
    w.put(c.qty.as_bytes())?;
    if let Some(price) = &c.price {
        w.put(b"&price=")?;
        w.put(price.as_bytes())?;
    }
    // Spot refuses the parameter (-1104 "Not all sent parameters were read"): a spot exit is marked
    // reduce-only for the engine's gate only.
    if !flavor.is_spot() {
        w.put(if o.reduce_only {
            b"&reduceOnly=true"
        } else {
            b"&reduceOnly=false"
        })?;
    }
    w.put(b"&newClientOrderId=")?;
    w.put(o.client_id.as_bytes())?;
    w.put(b"&newOrderRespType=")?;
    w.put(o.resp_type.as_str().as_bytes())?;
    w.put(b"&recvWindow=")?;
    w.put(Num::int(recv_window_ms as u64).as_bytes())?;
    w.put(b"&timestamp=")?;
    w.put(Num::int(timestamp_ms).as_bytes())?;
    finish_signed(&mut w, signer)
}

/// Writes the signed query for `DELETE /fapi/v1/order`:
/// `symbol, origClientOrderId|orderId, recvWindow, timestamp, signature`. Returns the length.
pub fn encode_cancel(
    c: &CancelRequest,
    recv_window_ms: u32,
    timestamp_ms: u64,
    signer: &Signer,
    out: &mut [u8],
) -> Result<usize, SignError> {
    let mut w = Out::new(out);
    w.put(b"symbol=")?;
    w.put(c.symbol.as_bytes())?;
    match &c.order {
        CancelRef::ClientId(id) => {
            w.put(b"&origClientOrderId=")?;
            w.put(id.as_bytes())?;
        }
        CancelRef::OrderId(id) => {
            w.put(b"&orderId=")?;
            w.put(Num::int(*id).as_bytes())?;
        }
    }
    w.put(b"&recvWindow=")?;
    w.put(Num::int(recv_window_ms as u64).as_bytes())?;
    w.put(b"&timestamp=")?;
    w.put(Num::int(timestamp_ms).as_bytes())?;
    finish_signed(&mut w, signer)
}

#[cfg(test)]
mod tests {
    use super::super::{HmacSigner, RespType, MAX_REQUEST_LEN};
    use super::*;
    use aegis_shared::event::{OrderType, TimeInForce};
    use aegis_shared::{ClientOrderId, Price, Qty, Secret, Side, Symbol};
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    const FUTURES_SECRET: &str = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9";

    fn signer() -> Signer {
        Signer::Hmac(HmacSigner::new(&Secret::new(FUTURES_SECRET.into())))
    }

    /// The slow, obviously-correct way: a freshly keyed HMAC and `format!` hex.
    fn reference_sig(payload: &str) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(FUTURES_SECRET.as_bytes()).unwrap();
        m.update(payload.as_bytes());
        m.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn order() -> OrderRequest {
        OrderRequest {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: Some(TimeInForce::Gtc),
            qty: Qty::parse("0.010").unwrap(),
            price: Price::parse("9000.1").unwrap(),
            reduce_only: false,
            client_id: ClientOrderId::new("agmd3k2x1c-1a").unwrap(),
            resp_type: RespType::Ack,
        }
    }

    fn btc() -> WirePrecision {
        WirePrecision::new(Price::parse("0.10").unwrap(), Qty::parse("0.001").unwrap()).unwrap()
    }

    fn text(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn futures_doc_vector_through_the_query_encoder() {
        let mut out = [0u8; MAX_REQUEST_LEN];
        let n = encode_signed_query(
            &[
                ("symbol", b"BTCUSDT"),
                ("side", b"BUY"),
                ("type", b"LIMIT"),
                ("quantity", b"1"),
                ("price", b"9000"),
                ("timeInForce", b"GTC"),
                ("recvWindow", b"5000"),
                ("timestamp", b"1591702613943"),
            ],
            &signer(),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            text(&out[..n]),
            "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000\
             &timestamp=1591702613943&signature=3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"
        );
    }

    #[test]
    fn limit_order_golden_string() {
        let mut out = [0u8; MAX_REQUEST_LEN];
        let n = encode_order(
            &order(),
            &btc(),
            5000,
            1_591_702_613_943,
            &signer(),
            &mut out,
        )
        .unwrap();
        let payload = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.010&price=9000.1\
                       &reduceOnly=false&newClientOrderId=agmd3k2x1c-1a&newOrderRespType=ACK&recvWindow=5000\
                       &timestamp=1591702613943";
        assert_eq!(
            text(&out[..n]),
            format!("{payload}&signature={}", reference_sig(payload))
        );
    }

    #[test]
    fn market_reduce_only_order_omits_price_and_tif() {
        let mut o = order();
        o.order_type = OrderType::Market;
        o.side = Side::Sell;
        o.reduce_only = true;
        o.resp_type = RespType::Result;
        o.price = Price::parse("123.45").unwrap(); // ignored for MARKET, even off-tick
        let mut out = [0u8; MAX_REQUEST_LEN];
        let n = encode_order(&o, &btc(), 100, 7, &signer(), &mut out).unwrap();
        let payload = "symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.010&reduceOnly=true\
                       &newClientOrderId=agmd3k2x1c-1a&newOrderRespType=RESULT&recvWindow=100&timestamp=7";
        assert_eq!(
            text(&out[..n]),
            format!("{payload}&signature={}", reference_sig(payload))
        );
    }

    /// Spot: no `reduceOnly` even on an exit, post-only as `LIMIT_MAKER` without `timeInForce`, and the
    /// cancel-replace's cancel leg after the symbol.
    #[test]
    fn spot_order_and_cancel_replace_golden_strings() {
        let mut out = [0u8; MAX_REQUEST_LEN];
        let mut o = order();
        o.tif = Some(TimeInForce::Gtx);
        o.side = Side::Sell;
        o.reduce_only = true;
        let n =
            encode_spot_order(&o, &btc(), 5000, 1_591_702_613_943, &signer(), &mut out).unwrap();
        let payload = "symbol=BTCUSDT&side=SELL&type=LIMIT_MAKER&quantity=0.010&price=9000.1\
                       &newClientOrderId=agmd3k2x1c-1a&newOrderRespType=ACK&recvWindow=5000&timestamp=1591702613943";
        assert_eq!(
            text(&out[..n]),
            format!("{payload}&signature={}", reference_sig(payload))
        );
        // Futures keeps GTX as a time in force.
        let n = encode_order(&o, &btc(), 5000, 1, &signer(), &mut out).unwrap();
        assert!(text(&out[..n]).contains("&type=LIMIT&timeInForce=GTX&"));
        let mut m = order();
        m.order_type = OrderType::Market;
        m.side = Side::Sell;
        m.reduce_only = true;
        let c = super::super::CancelReplace {
            cancel_client_id: ClientOrderId::new("agstop-BTCUSDT-1").unwrap(),
            cancel_new_client_id: None,
        };
        let n = encode_cancel_replace(&m, &btc(), &c, 5000, 7, &signer(), &mut out).unwrap();
        let payload = "symbol=BTCUSDT&cancelReplaceMode=ALLOW_FAILURE&cancelOrigClientOrderId=agstop-BTCUSDT-1\
                       &side=SELL&type=MARKET&quantity=0.010&newClientOrderId=agmd3k2x1c-1a&newOrderRespType=ACK\
                       &recvWindow=5000&timestamp=7";
        assert_eq!(
            text(&out[..n]),
            format!("{payload}&signature={}", reference_sig(payload))
        );
        let c = super::super::CancelReplace {
            cancel_new_client_id: Some(ClientOrderId::new("agx-9").unwrap()),
            ..c
        };
        let n = encode_cancel_replace(&m, &btc(), &c, 5000, 7, &signer(), &mut out).unwrap();
        assert!(text(&out[..n])
            .starts_with("symbol=BTCUSDT&cancelReplaceMode=ALLOW_FAILURE&cancelOrigClientOrderId=agstop-BTCUSDT-1&cancelNewClientOrderId=agx-9&side=SELL&"));
    }

    #[test]
    fn cancel_golden_strings() {
        let mut out = [0u8; MAX_REQUEST_LEN];
        let c = CancelRequest {
            symbol: Symbol::new("ETHUSDT").unwrap(),
            order: CancelRef::ClientId(ClientOrderId::new("ag1-2").unwrap()),
        };
        let n = encode_cancel(&c, 5000, 1_700_000_000_000, &signer(), &mut out).unwrap();
        let payload =
            "symbol=ETHUSDT&origClientOrderId=ag1-2&recvWindow=5000&timestamp=1700000000000";
        assert_eq!(
            text(&out[..n]),
            format!("{payload}&signature={}", reference_sig(payload))
        );
        let c = CancelRequest {
            order: CancelRef::OrderId(22_542_179),
            ..c
        };
        let n = encode_cancel(&c, 5000, 1, &signer(), &mut out).unwrap();
        let payload = "symbol=ETHUSDT&orderId=22542179&recvWindow=5000&timestamp=1";
        assert_eq!(
            text(&out[..n]),
            format!("{payload}&signature={}", reference_sig(payload))
        );
    }

    #[test]
    fn refuses_to_round_or_send_invalid_orders() {
        let mut out = [0u8; MAX_REQUEST_LEN];
        let s = signer();
        let p = btc();
        let enc = |o: OrderRequest, out: &mut [u8]| encode_order(&o, &p, 5000, 1, &s, out);
        let mut o = order();
        o.price = Price::parse("9000.15").unwrap();
        assert_eq!(enc(o, &mut out), Err(SignError::PriceNotOnTick));
        // On the decimals but off a 0.5 tick.
        let half = WirePrecision::new(Price::parse("0.5").unwrap(), Qty::ONE).unwrap();
        let mut o = order();
        o.qty = Qty::ONE;
        o.price = Price::parse("100.3").unwrap();
        assert_eq!(
            encode_order(&o, &half, 5000, 1, &s, &mut out),
            Err(SignError::PriceNotOnTick)
        );
        let mut o = order();
        o.qty = Qty::parse("0.0105").unwrap();
        assert_eq!(enc(o, &mut out), Err(SignError::QtyNotOnStep));
        let mut o = order();
        o.qty = Qty::ZERO;
        assert_eq!(enc(o, &mut out), Err(SignError::NonPositiveQty));
        let mut o = order();
        o.price = Price::ZERO;
        assert_eq!(enc(o, &mut out), Err(SignError::NonPositivePrice));
        let mut o = order();
        o.tif = None;
        assert_eq!(enc(o, &mut out), Err(SignError::MissingTimeInForce));
        // Every truncation of the buffer is refused cleanly, never a panic or a partial success.
        let full = enc(order(), &mut out).unwrap();
        for len in 0..full {
            let mut small = vec![0u8; len];
            assert_eq!(enc(order(), &mut small), Err(SignError::BufferTooSmall));
        }
    }

    #[test]
    fn ed25519_rest_signature_is_percent_encoded_and_verifies() {
        use ed25519_dalek::{Signature, SigningKey, Verifier};
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let vk = key.verifying_key();
        let s = Signer::Ed25519(super::super::Ed25519Signer::from_signing_key(key));
        let mut out = [0u8; MAX_REQUEST_LEN];
        let n = encode_order(&order(), &btc(), 5000, 1, &s, &mut out).unwrap();
        let q = text(&out[..n]);
        let (payload, sig) = q.split_once("&signature=").unwrap();
        let b64 = sig
            .replace("%2B", "+")
            .replace("%2F", "/")
            .replace("%3D", "=");
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let sig = Signature::from_slice(&raw).unwrap();
        assert!(vk.verify(payload.as_bytes(), &sig).is_ok());
    }
}
