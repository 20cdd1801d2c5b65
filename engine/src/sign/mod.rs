//! Order signing and order wire encoding, without allocating per order.
//!
//! - [`hmac::HmacSigner`]: HMAC-SHA256 with the key hashed in once; each signature clones the keyed state.
//! - [`ed25519::Ed25519Signer`]: Ed25519 + base64 (+ percent-encoding for REST); the only key type
//!   `session.logon` accepts.
//! - [`rest`]: the `POST /fapi/v1/order` and `DELETE /fapi/v1/order` query strings, `signature` last; on spot
//!   `POST /api/v3/order` and `POST /api/v3/order/cancelReplace`.
//! - [`ws_api`]: WebSocket-API `order.place`, `order.cancel`, `order.status`, `order.cancelReplace` (spot) and
//!   `session.logon` JSON requests, params sorted by name and signed over `k=v&…` of the sorted params (protocol
//!   notes §6).
//! - [`fast`]: the logged-on session's futures `order.place` as a fixed template (same bytes as [`ws_api`],
//!   cheaper).
//! - [`OrderEncoder`]: owns the reused buffers and ties the above together for the engine, for the market it is
//!   set to ([`OrderEncoder::on_market`]).
//!
//! Spot orders differ from futures ones on the wire in three ways only: no `reduceOnly` (spot refuses the
//! parameter: there is nothing to reduce but a balance), no `positionSide` (never sent on futures either: one-way
//! mode), and post-only is its own order type, `LIMIT_MAKER` without a `timeInForce`, instead of futures'
//! `timeInForce=GTX`.
//!
//! Prices and quantities are written from exact [`Price`]/[`Qty`] values with the symbol's tick/step decimals
//! ([`WirePrecision`]); a value off the tick or step is refused, never rounded. Every function writes into a
//! caller-provided buffer and returns the number of bytes written.

pub mod b64;
pub mod ed25519;
pub mod fast;
pub mod hex;
pub mod hmac;
pub mod rest;
pub mod ws_api;

mod out;

use aegis_shared::event::{OrderType, TimeInForce};
use aegis_shared::num::decimals_of;
use aegis_shared::{ClientOrderId, Market, Price, Qty, Secret, Side, Symbol};
use std::fmt;

pub use self::ed25519::Ed25519Signer;
pub use self::hmac::HmacSigner;
pub use self::ws_api::{WsAuth, WsParam, WsValue};
// The simulator writes its integers with the same digits as the requests.
pub(crate) use self::out::Num;

/// Why a request could not be signed or encoded. Messages never contain key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The output buffer is too small for the request; use [`OrderEncoder`] or a buffer of [`MAX_REQUEST_LEN`].
    #[error("request does not fit the output buffer")]
    BufferTooSmall,
    /// The quantity is zero or negative.
    #[error("order quantity must be positive")]
    NonPositiveQty,
    /// A limit order's price is zero or negative.
    #[error("limit order price must be positive")]
    NonPositivePrice,
    /// The quantity is not a multiple of the symbol's stepSize (Binance -1111/-4003); round it with
    /// `Qty::floor_to(step)` first.
    #[error("quantity is not a multiple of the symbol's stepSize")]
    QtyNotOnStep,
    /// The price is not a multiple of the symbol's tickSize (Binance -4014); round it with `Price::floor_to(tick)`.
    #[error("price is not a multiple of the symbol's tickSize")]
    PriceNotOnTick,
    /// A limit order needs a time in force.
    #[error("limit order needs a timeInForce")]
    MissingTimeInForce,
    /// tickSize and stepSize must be positive.
    #[error("tickSize and stepSize must be positive; check the symbol's exchangeInfo filters")]
    BadPrecision,
    /// The API key is empty or holds characters other than ASCII letters and digits.
    #[error("API key must be 1-128 ASCII letters and digits; check BINANCE_API_KEY / BINANCE_TESTNET_API_KEY")]
    BadApiKey,
    /// The secret is empty.
    #[error("API secret is empty; set BINANCE_SECRET_KEY / BINANCE_TESTNET_SECRET_KEY")]
    EmptySecret,
    /// The Ed25519 private key could not be read.
    #[error(
        "Ed25519 private key is not a valid PKCS#8 PEM (expected -----BEGIN PRIVATE KEY-----)"
    )]
    BadEd25519Key,
    /// WebSocket-API params must be given sorted by name, without duplicates, and without `apiKey`/`signature`
    /// (the auth adds those).
    #[error(
        "WebSocket-API params are not sorted by name, repeat a name, or include apiKey/signature"
    )]
    UnsortedParams,
    /// A WebSocket-API param value would need JSON escaping (quote, backslash, control character) or is not a
    /// plain integer where a number was declared.
    #[error("WebSocket-API param value is not safe to send unescaped")]
    UnsafeValue,
}

/// The longest request any encoder here writes, with room to spare: size output buffers with it.
pub const MAX_REQUEST_LEN: usize = 1024;

/// An API key, validated to be ASCII letters and digits (so it needs no escaping in a query string, JSON or an
/// HTTP header). Printed as `***`: the security guide forbids API keys in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(Secret<String>);

impl ApiKey {
    /// Validates a key.
    pub fn new(key: Secret<String>) -> Result<Self, SignError> {
        let k = key.expose();
        if k.is_empty() || k.len() > 128 || !k.bytes().all(|c| c.is_ascii_alphanumeric()) {
            return Err(SignError::BadApiKey);
        }
        Ok(Self(key))
    }
    /// The key, for the `X-MBX-APIKEY` header or a request param. Must not be logged.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Either kind of signing key Binance accepts for order entry.
#[derive(Clone, Debug)]
pub enum Signer {
    /// HMAC-SHA256 secret (hex signatures).
    Hmac(HmacSigner),
    /// Ed25519 private key (base64 signatures).
    Ed25519(Ed25519Signer),
}

/// Room for the longest signature text either signer writes (percent-encoded Ed25519).
pub const MAX_SIGNATURE_LEN: usize = ed25519::ED25519_PCT_MAX_LEN;

impl Signer {
    /// Reads the configured secret: a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`) becomes an Ed25519
    /// signer, anything else is an HMAC secret.
    pub fn from_secret(secret: &Secret<String>) -> Result<Self, SignError> {
        let s = secret.expose().trim();
        if s.is_empty() {
            return Err(SignError::EmptySecret);
        }
        if s.starts_with("-----BEGIN") {
            return Ed25519Signer::from_pkcs8_pem(secret).map(Self::Ed25519);
        }
        Ok(Self::Hmac(HmacSigner::new(secret)))
    }

    /// Writes the signature of `payload` as a REST parameter value: lowercase hex (HMAC) or percent-encoded base64
    /// (Ed25519). Returns the length or `None` when `out` is too short.
    #[inline]
    pub fn write_rest_signature(&self, payload: &[u8], out: &mut [u8]) -> Option<usize> {
        match self {
            Self::Hmac(h) => h.sign_hex(payload, out),
            Self::Ed25519(e) => e.sign_base64_percent(payload, out),
        }
    }

    /// Writes the signature of `payload` as a JSON string's content: lowercase hex (HMAC) or base64 (Ed25519).
    #[inline]
    pub fn write_json_signature(&self, payload: &[u8], out: &mut [u8]) -> Option<usize> {
        match self {
            Self::Hmac(h) => h.sign_hex(payload, out),
            Self::Ed25519(e) => e.sign_base64(payload, out),
        }
    }
}

/// How a symbol's prices and quantities are written: its tickSize and stepSize, and the fractional digits those
/// need. Built once per symbol from exchangeInfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WirePrecision {
    tick: Price,
    step: Qty,
    price_decimals: u32,
    qty_decimals: u32,
    tick_div: Divisor,
    step_div: Divisor,
}

/// An exact "is `n` a multiple of `d`" test without a division instruction (a 64-bit `div` costs tens of cycles
/// on the hot path): with `d = d₀·2ᵏ`, `d₀` odd, `n` is a multiple of `d` iff `rotr(n·d₀⁻¹ mod 2⁶⁴, k) ≤
/// ⌊(2⁶⁴−1)/d⌋` (Hacker's Delight §10-17; what compilers emit for `n % CONST == 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Divisor {
    inv: u64,
    shift: u32,
    lim: u64,
}

impl Divisor {
    /// `d` must be positive (WirePrecision::new checks it).
    fn new(d: u64) -> Self {
        let shift = d.trailing_zeros();
        let odd = d >> shift;
        // Newton's iteration for the inverse mod 2⁶⁴: `odd` is its own inverse mod 8 (3 bits), and each step
        // doubles the correct bits: 6, 12, 24, 48, 96.
        let mut inv = odd;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inv)));
        }
        Self {
            inv,
            shift,
            lim: u64::MAX / d,
        }
    }

    #[inline(always)]
    pub(crate) fn divides(&self, n: u64) -> bool {
        n.wrapping_mul(self.inv).rotate_right(self.shift) <= self.lim
    }
}

impl WirePrecision {
    /// From the symbol's `PRICE_FILTER.tickSize` and `LOT_SIZE.stepSize`.
    pub fn new(tick: Price, step: Qty) -> Result<Self, SignError> {
        if tick.units() <= 0 || step.units() <= 0 {
            return Err(SignError::BadPrecision);
        }
        Ok(Self {
            tick,
            step,
            price_decimals: decimals_of(tick.units()),
            qty_decimals: decimals_of(step.units()),
            tick_div: Divisor::new(tick.units() as u64),
            step_div: Divisor::new(step.units() as u64),
        })
    }
    /// `units` (positive) is a multiple of tickSize, without a division.
    #[inline(always)]
    pub(crate) fn on_tick(&self, units: u64) -> bool {
        self.tick_div.divides(units)
    }
    /// `units` (positive) is a multiple of stepSize, without a division.
    #[inline(always)]
    pub(crate) fn on_step(&self, units: u64) -> bool {
        self.step_div.divides(units)
    }
    /// tickSize.
    pub fn tick(&self) -> Price {
        self.tick
    }
    /// stepSize.
    pub fn step(&self) -> Qty {
        self.step
    }
    /// Fractional digits written for prices.
    pub fn price_decimals(&self) -> u32 {
        self.price_decimals
    }
    /// Fractional digits written for quantities.
    pub fn qty_decimals(&self) -> u32 {
        self.qty_decimals
    }
}

/// `newOrderRespType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespType {
    /// Acknowledge only (Binance's default, the fastest answer).
    Ack,
    /// Final state of the order in the answer.
    Result,
}

impl RespType {
    /// Wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ack => "ACK",
            Self::Result => "RESULT",
        }
    }
}

/// A new order, as the encoders need it. Fixed-size and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderRequest {
    /// Symbol.
    pub symbol: Symbol,
    /// Side.
    pub side: Side,
    /// LIMIT or MARKET.
    pub order_type: OrderType,
    /// Time in force; required for LIMIT, not sent for MARKET.
    pub tif: Option<TimeInForce>,
    /// Quantity (positive, a multiple of stepSize).
    pub qty: Qty,
    /// Limit price (positive, a multiple of tickSize); not sent for MARKET.
    pub price: Price,
    /// `reduceOnly`, always sent explicitly (one-way position mode).
    pub reduce_only: bool,
    /// `newClientOrderId`: every order carries one.
    pub client_id: ClientOrderId,
    /// `newOrderRespType`.
    pub resp_type: RespType,
}

/// Which order to cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelRef {
    /// By our client order id (`origClientOrderId`).
    ClientId(ClientOrderId),
    /// By the exchange's id (`orderId`).
    OrderId(u64),
}

/// A cancel request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelRequest {
    /// Symbol.
    pub symbol: Symbol,
    /// Which order.
    pub order: CancelRef,
}

/// The cancel leg of a spot `order.cancelReplace` / `POST /api/v3/order/cancelReplace`: the resting order to
/// cancel by client id (always with `cancelReplaceMode=ALLOW_FAILURE`, so the new order is placed even when the
/// cancel fails because the resting order already triggered or filled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelReplace {
    /// `cancelOrigClientOrderId`: the client id of the order to cancel (a resting stop).
    pub cancel_client_id: ClientOrderId,
    /// `cancelNewClientOrderId`: the id the cancelled order takes (Binance generates one when absent).
    pub cancel_new_client_id: Option<ClientOrderId>,
}

/// How an order's fields are written: futures, a spot `order.place`, or a spot cancel-replace.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Flavor<'a> {
    Futures,
    Spot,
    SpotReplace(&'a CancelReplace),
}

impl Flavor<'_> {
    #[inline]
    pub(crate) fn is_spot(&self) -> bool {
        !matches!(self, Self::Futures)
    }

    /// The `type` and `timeInForce` written for a checked order: on spot a post-only (GTX) limit is the
    /// `LIMIT_MAKER` type, which takes no time in force (Binance refuses GTX on spot).
    #[inline]
    pub(crate) fn shape(
        &self,
        t: OrderType,
        tif: Option<TimeInForce>,
    ) -> (&'static str, Option<TimeInForce>) {
        match (self.is_spot(), t, tif) {
            (true, OrderType::Limit, Some(TimeInForce::Gtx)) => ("LIMIT_MAKER", None),
            _ => (order_type_str(t), tif),
        }
    }
}

/// Binance's name for an order type.
pub const fn order_type_str(t: OrderType) -> &'static str {
    match t {
        OrderType::Limit => "LIMIT",
        OrderType::Market => "MARKET",
    }
}

/// Binance's name for a time in force.
pub const fn tif_str(t: TimeInForce) -> &'static str {
    match t {
        TimeInForce::Gtc => "GTC",
        TimeInForce::Ioc => "IOC",
        TimeInForce::Fok => "FOK",
        TimeInForce::Gtx => "GTX",
    }
}

/// An order checked against its symbol's rules, with price and quantity already rendered as exact decimal text.
pub(crate) struct Checked {
    pub qty: out::Num,
    /// `None` for market orders.
    pub price: Option<out::Num>,
    pub tif: Option<TimeInForce>,
}

pub(crate) fn check_order(o: &OrderRequest, p: &WirePrecision) -> Result<Checked, SignError> {
    if o.qty.units() <= 0 {
        return Err(SignError::NonPositiveQty);
    }
    if !o.qty.is_multiple_of(p.step) {
        return Err(SignError::QtyNotOnStep);
    }
    let qty = out::Num::decimal(o.qty.units(), p.qty_decimals).ok_or(SignError::QtyNotOnStep)?;
    match o.order_type {
        OrderType::Market => Ok(Checked {
            qty,
            price: None,
            tif: None,
        }),
        OrderType::Limit => {
            let tif = o.tif.ok_or(SignError::MissingTimeInForce)?;
            if o.price.units() <= 0 {
                return Err(SignError::NonPositivePrice);
            }
            if !o.price.is_multiple_of(p.tick) {
                return Err(SignError::PriceNotOnTick);
            }
            let price = out::Num::decimal(o.price.units(), p.price_decimals)
                .ok_or(SignError::PriceNotOnTick)?;
            Ok(Checked {
                qty,
                price: Some(price),
                tif: Some(tif),
            })
        }
    }
}

/// Owns the reused buffers and the signing key: the engine's one-stop order encoder. After construction nothing
/// here allocates. `Debug` shows neither the key nor the buffers (they hold the last request, API key included).
pub struct OrderEncoder {
    signer: Signer,
    api_key: ApiKey,
    recv_window_ms: u32,
    market: Market,
    out: Box<[u8]>,
    scratch: Box<[u8]>,
}

impl OrderEncoder {
    /// Allocates the buffers once. Encodes USD-M futures orders until told otherwise ([`Self::on_market`]).
    pub fn new(signer: Signer, api_key: ApiKey, recv_window_ms: u32) -> Self {
        Self {
            signer,
            api_key,
            recv_window_ms,
            market: Market::Futures,
            out: vec![0u8; MAX_REQUEST_LEN].into_boxed_slice(),
            scratch: vec![0u8; MAX_REQUEST_LEN].into_boxed_slice(),
        }
    }

    /// The same encoder writing `market`'s orders (see the module docs for how spot differs).
    pub fn on_market(mut self, market: Market) -> Self {
        self.market = market;
        self
    }

    /// Switches the market whose orders [`Self::rest_order`] and [`Self::ws_order_place`] write (the live venue
    /// sets it from its own market when order entry is attached, so an encoder built elsewhere cannot disagree).
    pub fn set_market(&mut self, market: Market) {
        self.market = market;
    }

    /// The market whose orders this encoder writes.
    pub fn market(&self) -> Market {
        self.market
    }

    /// The signer.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The API key (for the `X-MBX-APIKEY` header).
    pub fn api_key(&self) -> &ApiKey {
        &self.api_key
    }

    /// Runs one encoder, which gets the whole encoder so it can borrow the keys and the buffers at once, and
    /// returns what it wrote into the reused output buffer.
    #[inline]
    fn written(
        &mut self,
        encode: impl FnOnce(&mut Self) -> Result<usize, SignError>,
    ) -> Result<&[u8], SignError> {
        let n = encode(self)?;
        Ok(&self.out[..n])
    }

    /// [`Self::written`] for a WebSocket-API request. The encoder gets the recvWindow, the request's
    /// authentication (none on a `session.logon`'d connection, else apiKey and signature) and both buffers.
    #[inline]
    fn ws_written(
        &mut self,
        logged_on: bool,
        encode: impl FnOnce(u32, WsAuth<'_>, &mut [u8], &mut [u8]) -> Result<usize, SignError>,
    ) -> Result<&[u8], SignError> {
        let auth = if logged_on {
            WsAuth::Session
        } else {
            WsAuth::Signed {
                api_key: &self.api_key,
                signer: &self.signer,
            }
        };
        let n = encode(self.recv_window_ms, auth, &mut self.scratch, &mut self.out)?;
        Ok(&self.out[..n])
    }

    /// Signed `POST /fapi/v1/order` query string (the bytes after `?`, or the form body); on spot the one of
    /// `POST /api/v3/order` (no `reduceOnly`, post-only as `LIMIT_MAKER`).
    pub fn rest_order(
        &mut self,
        o: &OrderRequest,
        p: &WirePrecision,
        timestamp_ms: u64,
    ) -> Result<&[u8], SignError> {
        let flavor = match self.market {
            Market::Futures => Flavor::Futures,
            Market::Spot => Flavor::Spot,
        };
        self.written(|e| {
            rest::encode_order_as(
                o,
                p,
                flavor,
                e.recv_window_ms,
                timestamp_ms,
                &e.signer,
                &mut e.out,
            )
        })
    }

    /// Signed query of spot's `POST /api/v3/order/cancelReplace`: cancels `c.cancel_client_id` and places `o` in
    /// one request (`cancelReplaceMode=ALLOW_FAILURE`). Spot only, whatever [`Self::market`] says: futures has no
    /// such request.
    pub fn rest_cancel_replace(
        &mut self,
        o: &OrderRequest,
        p: &WirePrecision,
        c: &CancelReplace,
        timestamp_ms: u64,
    ) -> Result<&[u8], SignError> {
        self.written(|e| {
            rest::encode_order_as(
                o,
                p,
                Flavor::SpotReplace(c),
                e.recv_window_ms,
                timestamp_ms,
                &e.signer,
                &mut e.out,
            )
        })
    }

    /// Signed `DELETE /fapi/v1/order` query string.
    pub fn rest_cancel(
        &mut self,
        c: &CancelRequest,
        timestamp_ms: u64,
    ) -> Result<&[u8], SignError> {
        self.written(|e| {
            rest::encode_cancel(c, e.recv_window_ms, timestamp_ms, &e.signer, &mut e.out)
        })
    }

    /// WebSocket-API `order.place` request of [`Self::market`]. `logged_on` = the connection passed
    /// `session.logon`, so the request carries neither apiKey nor signature.
    pub fn ws_order_place(
        &mut self,
        id: u64,
        o: &OrderRequest,
        p: &WirePrecision,
        timestamp_ms: u64,
        logged_on: bool,
    ) -> Result<&[u8], SignError> {
        if self.market == Market::Spot {
            // The general encoder (the template is futures' field list); still allocation-free.
            return self.ws_written(logged_on, |recv, auth, scratch, out| {
                ws_api::encode_spot_order_place(id, o, p, recv, timestamp_ms, auth, scratch, out)
            });
        }
        if logged_on {
            // The hot path: no signature, so the template encoder writes the whole request.
            return self.written(|e| {
                fast::encode_order_place_session(
                    id,
                    o,
                    p,
                    e.recv_window_ms,
                    timestamp_ms,
                    &mut e.out,
                )
            });
        }
        self.ws_written(logged_on, |recv, auth, scratch, out| {
            ws_api::encode_order_place(id, o, p, recv, timestamp_ms, auth, scratch, out)
        })
    }

    /// WebSocket-API `order.cancelReplace` (spot): cancels `c.cancel_client_id` and places `o` (its
    /// `newClientOrderId` is `o.client_id`) in one request, `cancelReplaceMode=ALLOW_FAILURE`. Spot only,
    /// whatever [`Self::market`] says.
    pub fn ws_order_cancel_replace(
        &mut self,
        id: u64,
        o: &OrderRequest,
        p: &WirePrecision,
        c: &CancelReplace,
        timestamp_ms: u64,
        logged_on: bool,
    ) -> Result<&[u8], SignError> {
        self.ws_written(logged_on, |recv, auth, scratch, out| {
            ws_api::encode_order_cancel_replace(id, o, p, c, recv, timestamp_ms, auth, scratch, out)
        })
    }

    /// WebSocket-API `order.cancel` request.
    pub fn ws_order_cancel(
        &mut self,
        id: u64,
        c: &CancelRequest,
        timestamp_ms: u64,
        logged_on: bool,
    ) -> Result<&[u8], SignError> {
        self.ws_written(logged_on, |recv, auth, scratch, out| {
            ws_api::encode_order_cancel(id, c, recv, timestamp_ms, auth, scratch, out)
        })
    }

    /// WebSocket-API `order.status` request (the order named as in a cancel).
    pub fn ws_order_status(
        &mut self,
        id: u64,
        c: &CancelRequest,
        timestamp_ms: u64,
        logged_on: bool,
    ) -> Result<&[u8], SignError> {
        self.ws_written(logged_on, |recv, auth, scratch, out| {
            ws_api::encode_order_status(id, c, recv, timestamp_ms, auth, scratch, out)
        })
    }

    /// WebSocket-API `session.logon` request; `None` when the key is not Ed25519 (Binance accepts only Ed25519
    /// there — use signed requests instead).
    pub fn ws_session_logon(
        &mut self,
        id: u64,
        timestamp_ms: u64,
    ) -> Option<Result<&[u8], SignError>> {
        let Signer::Ed25519(ed) = &self.signer else {
            return None;
        };
        Some(
            ws_api::encode_session_logon(
                id,
                &self.api_key,
                ed,
                timestamp_ms,
                &mut self.scratch,
                &mut self.out,
            )
            .map(|n| &self.out[..n]),
        )
    }
}

impl fmt::Debug for OrderEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrderEncoder")
            .field("signer", &self.signer)
            .field("api_key", &self.api_key)
            .field("recv_window_ms", &self.recv_window_ms)
            .field("market", &self.market)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_is_validated_and_never_printed() {
        let k = ApiKey::new(Secret::new("vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0M".into())).unwrap();
        assert_eq!(format!("{k:?}"), "ApiKey(***)");
        assert_eq!(k.expose(), "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0M");
        for bad in ["", "has space", "quote\"", "amp&x", "é"] {
            assert_eq!(
                ApiKey::new(Secret::new(bad.to_string())),
                Err(SignError::BadApiKey)
            );
        }
    }

    #[test]
    fn signer_from_secret_picks_the_key_type_and_hides_it() {
        let h = Signer::from_secret(&Secret::new("supersecretvalue".into())).unwrap();
        assert!(matches!(h, Signer::Hmac(_)));
        assert!(!format!("{h:?}").contains("supersecret"));
        assert_eq!(
            Signer::from_secret(&Secret::new("  ".into())).unwrap_err(),
            SignError::EmptySecret
        );
        assert_eq!(
            Signer::from_secret(&Secret::new(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----".into()
            ))
            .unwrap_err(),
            SignError::BadEd25519Key
        );
    }

    #[test]
    fn precision_from_filters() {
        let p = WirePrecision::new(Price::parse("0.10").unwrap(), Qty::parse("0.001").unwrap())
            .unwrap();
        assert_eq!((p.price_decimals(), p.qty_decimals()), (1, 3));
        assert_eq!(
            WirePrecision::new(Price::ZERO, Qty::ONE),
            Err(SignError::BadPrecision)
        );
    }

    #[test]
    fn divisor_edges() {
        for d in [
            1u64,
            2,
            3,
            10,
            64,
            1_000_000,
            100_000_000,
            u64::MAX,
            1 << 63,
        ] {
            let t = Divisor::new(d);
            for n in [
                0u64,
                1,
                d - 1,
                d,
                d.wrapping_add(1),
                d.wrapping_mul(7),
                u64::MAX,
            ] {
                assert_eq!(t.divides(n), n % d == 0, "{n} / {d}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn divisor_agrees_with_the_remainder(n in proptest::prelude::any::<u64>(), d in 1u64..u64::MAX, small in 1u64..100_000_000_000, k in 0u64..1_000_000) {
            proptest::prop_assert_eq!(Divisor::new(d).divides(n), n % d == 0);
            // Multiples and near-multiples, which random pairs almost never hit.
            let t = Divisor::new(small);
            for m in [k.wrapping_mul(small), k.wrapping_mul(small).wrapping_add(1), k.wrapping_mul(small).wrapping_sub(1)] {
                proptest::prop_assert_eq!(t.divides(m), m % small == 0);
            }
        }
    }

    /// The encoder follows its market: the same request on spot drops `reduceOnly` on every path (REST,
    /// signed and logged-on WebSocket API) and writes post-only as `LIMIT_MAKER`.
    #[test]
    fn the_encoder_writes_spot_orders_on_spot() {
        let mut e = OrderEncoder::new(
            Signer::from_secret(&Secret::new("hmacsecretxyz".into())).unwrap(),
            ApiKey::new(Secret::new("myapikey123".into())).unwrap(),
            5000,
        );
        assert_eq!(e.market(), Market::Futures);
        let o = OrderRequest {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            side: Side::Sell,
            order_type: OrderType::Limit,
            tif: Some(TimeInForce::Gtx),
            qty: Qty::parse("0.001").unwrap(),
            price: Price::parse("60000.1").unwrap(),
            reduce_only: true,
            client_id: ClientOrderId::new("ag1-1").unwrap(),
            resp_type: RespType::Ack,
        };
        let p =
            WirePrecision::new(Price::parse("0.1").unwrap(), Qty::parse("0.001").unwrap()).unwrap();
        let fut =
            String::from_utf8(e.ws_order_place(1, &o, &p, 1, true).unwrap().to_vec()).unwrap();
        assert!(fut.contains(r#""reduceOnly":"true""#) && fut.contains(r#""timeInForce":"GTX""#));
        e.set_market(Market::Spot);
        let mut e = e.on_market(Market::Spot);
        assert_eq!(e.market(), Market::Spot);
        for logged_on in [false, true] {
            let t = String::from_utf8(e.ws_order_place(1, &o, &p, 1, logged_on).unwrap().to_vec())
                .unwrap();
            assert!(
                !t.contains("reduceOnly") && !t.contains("timeInForce"),
                "{t}"
            );
            assert!(t.contains(r#""type":"LIMIT_MAKER""#), "{t}");
        }
        let q = String::from_utf8(e.rest_order(&o, &p, 1).unwrap().to_vec()).unwrap();
        assert!(q.starts_with("symbol=BTCUSDT&side=SELL&type=LIMIT_MAKER&quantity=0.001&price=60000.1&newClientOrderId=ag1-1&"), "{q}");
        let c = CancelReplace {
            cancel_client_id: ClientOrderId::new("agstop-1").unwrap(),
            cancel_new_client_id: None,
        };
        let w = String::from_utf8(
            e.ws_order_cancel_replace(2, &o, &p, &c, 1, true)
                .unwrap()
                .to_vec(),
        )
        .unwrap();
        assert!(w.starts_with(r#"{"id":2,"method":"order.cancelReplace","params":{"cancelOrigClientOrderId":"agstop-1","cancelReplaceMode":"ALLOW_FAILURE","newClientOrderId":"ag1-1","#), "{w}");
        let r = String::from_utf8(e.rest_cancel_replace(&o, &p, &c, 1).unwrap().to_vec()).unwrap();
        assert!(r.starts_with("symbol=BTCUSDT&cancelReplaceMode=ALLOW_FAILURE&cancelOrigClientOrderId=agstop-1&side=SELL&type=LIMIT_MAKER&"), "{r}");
    }

    #[test]
    fn encoder_debug_shows_no_secret() {
        let e = OrderEncoder::new(
            Signer::from_secret(&Secret::new("hmacsecretxyz".into())).unwrap(),
            ApiKey::new(Secret::new("myapikey123".into())).unwrap(),
            5000,
        );
        let d = format!("{e:?}");
        assert!(
            !d.contains("hmacsecretxyz") && !d.contains("myapikey123"),
            "{d}"
        );
    }
}
