//! The hot `order.place` of a logged-on WebSocket-API session, written as a fixed template.
//!
//! Same bytes as [`super::ws_api::encode_order_place`] with [`super::WsAuth::Session`] (pinned by a property
//! test), but cheaper: the JSON skeleton is copied as compile-time literals, and numbers are rendered straight
//! into the output, two digits per table look-up, instead of into zero-filled stack scratch that is then copied.
//! The output's room is checked once up front ([`FAST_MIN_OUT`]), so no write can run past it.

use super::{order_type_str, tif_str, OrderRequest, SignError, WirePrecision};
use aegis_shared::event::OrderType;
use aegis_shared::num::SCALE;

/// The least output room the template path needs: the skeleton (~190 bytes) plus the widest variable fields
/// (id and timestamp 20 digits each, client id 36, symbol 20, price and quantity 11 + 1 + 8 each, recvWindow 10),
/// with slack for the 8-digit fraction block written whole before the cursor steps back to `decimals`.
/// Smaller buffers take the general encoder.
pub const FAST_MIN_OUT: usize = 512;

/// "00" "01" … "99": two ASCII digits per entry.
static PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// A write cursor over a buffer known to have [`FAST_MIN_OUT`] bytes.
struct Cur<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Cur<'_> {
    #[inline(always)]
    fn lit(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }

    #[inline(always)]
    fn pair(&mut self, at: usize, v: u64) {
        let i = (v as usize) * 2;
        // One 2-byte move rather than two byte stores.
        self.buf[at..at + 2].copy_from_slice(&PAIRS[i..i + 2]);
    }

    /// Exactly 8 digits of `v` (< 10⁸, leading zeros kept) at `at`. The four pairs are independent divisions by
    /// constants, so they overlap instead of forming one long chain.
    #[inline(always)]
    fn eight(&mut self, at: usize, v: u64) {
        self.pair(at, v / 1_000_000);
        self.pair(at + 2, (v / 10_000) % 100);
        self.pair(at + 4, (v / 100) % 100);
        self.pair(at + 6, v % 100);
    }

    /// `v` < 10⁸ without leading zeros.
    #[inline(always)]
    fn small(&mut self, mut v: u64) {
        let n = match v {
            0..=9 => 1,
            10..=99 => 2,
            100..=999 => 3,
            1_000..=9_999 => 4,
            10_000..=99_999 => 5,
            100_000..=999_999 => 6,
            1_000_000..=9_999_999 => 7,
            _ => 8,
        };
        let mut end = self.pos + n;
        self.pos = end;
        while v >= 100 {
            end -= 2;
            self.pair(end, v % 100);
            v /= 100;
        }
        if v >= 10 {
            self.pair(end - 2, v);
        } else {
            self.buf[end - 1] = b'0' + v as u8;
        }
    }

    /// Any `u64` as decimal digits.
    #[inline(always)]
    fn uint(&mut self, v: u64) {
        const E8: u64 = 100_000_000;
        const E16: u64 = E8 * E8;
        if v < E8 {
            self.small(v);
        } else if v < E16 {
            self.small(v / E8);
            self.eight(self.pos, v % E8);
            self.pos += 8;
        } else {
            self.small(v / E16);
            self.eight(self.pos, (v / E8) % E8);
            self.eight(self.pos + 8, v % E8);
            self.pos += 16;
        }
    }

    /// A positive value in units of 10⁻⁸ with `decimals` (0..=8) fractional digits. The caller has checked that
    /// the value is a multiple of a step whose own digits end at `decimals` ([`WirePrecision`]), so the fraction
    /// digits past `decimals` are zeros: all 8 are written and the cursor keeps only the first `decimals`.
    #[inline(always)]
    fn decimal(&mut self, units: u64, decimals: u32) {
        let scale = SCALE as u64;
        self.uint(units / scale);
        if decimals > 0 {
            self.buf[self.pos] = b'.';
            self.eight(self.pos + 1, units % scale);
            self.pos += 1 + decimals as usize;
        }
    }
}

/// The checks of [`super::check_order`], in its order and with its errors, without rendering anything.
#[inline(always)]
fn check(o: &OrderRequest, p: &WirePrecision) -> Result<(), SignError> {
    let q = o.qty.units();
    if q <= 0 {
        return Err(SignError::NonPositiveQty);
    }
    // Positive, so the unsigned multiple test applies.
    if !p.on_step(q as u64) {
        return Err(SignError::QtyNotOnStep);
    }
    if o.order_type == OrderType::Limit {
        if o.tif.is_none() {
            return Err(SignError::MissingTimeInForce);
        }
        let pr = o.price.units();
        if pr <= 0 {
            return Err(SignError::NonPositivePrice);
        }
        if !p.on_tick(pr as u64) {
            return Err(SignError::PriceNotOnTick);
        }
    }
    Ok(())
}

/// Writes the `order.place` request of a connection that passed `session.logon` (no `apiKey`, no `signature`):
/// byte for byte what [`super::ws_api::encode_order_place`] writes with [`super::WsAuth::Session`], the same
/// errors for the same orders. Returns the length. Allocation-free. An `out` shorter than [`FAST_MIN_OUT`] is
/// served by the general encoder.
#[inline]
pub fn encode_order_place_session(
    id: u64,
    o: &OrderRequest,
    p: &WirePrecision,
    recv_window_ms: u32,
    timestamp_ms: u64,
    out: &mut [u8],
) -> Result<usize, SignError> {
    if out.len() < FAST_MIN_OUT {
        let mut scratch = [0u8; 0];
        return super::ws_api::encode_order_place(
            id,
            o,
            p,
            recv_window_ms,
            timestamp_ms,
            super::WsAuth::Session,
            &mut scratch,
            out,
        );
    }
    check(o, p)?;
    // Every write below stays inside `out`: FAST_MIN_OUT bounds the longest request this can write.
    let mut w = Cur { buf: out, pos: 0 };
    w.lit(b"{\"id\":");
    w.uint(id);
    w.lit(b",\"method\":\"order.place\",\"params\":{\"newClientOrderId\":\"");
    w.lit(o.client_id.as_bytes());
    w.lit(b"\",\"newOrderRespType\":\"");
    w.lit(o.resp_type.as_str().as_bytes());
    // `check` proved a limit order's tif is set and its price positive.
    let limit = match (o.order_type, o.tif) {
        (OrderType::Limit, Some(tif)) => {
            w.lit(b"\",\"price\":\"");
            w.decimal(o.price.units() as u64, p.price_decimals());
            Some(tif)
        }
        _ => None,
    };
    w.lit(b"\",\"quantity\":\"");
    w.decimal(o.qty.units() as u64, p.qty_decimals());
    w.lit(b"\",\"recvWindow\":");
    w.uint(u64::from(recv_window_ms));
    if o.reduce_only {
        w.lit(b",\"reduceOnly\":\"true\",\"side\":\"");
    } else {
        w.lit(b",\"reduceOnly\":\"false\",\"side\":\"");
    }
    w.lit(o.side.as_str().as_bytes());
    w.lit(b"\",\"symbol\":\"");
    w.lit(o.symbol.as_bytes());
    if let Some(tif) = limit {
        w.lit(b"\",\"timeInForce\":\"");
        w.lit(tif_str(tif).as_bytes());
    }
    w.lit(b"\",\"timestamp\":");
    w.uint(timestamp_ms);
    w.lit(b",\"type\":\"");
    w.lit(order_type_str(o.order_type).as_bytes());
    w.lit(b"\"}}");
    Ok(w.pos)
}

#[cfg(test)]
mod tests {
    use super::super::ws_api::encode_order_place;
    use super::super::{RespType, WsAuth, MAX_REQUEST_LEN};
    use super::*;
    use aegis_shared::event::TimeInForce;
    use aegis_shared::ids::ClientOrderIdGen;
    use aegis_shared::{ClientOrderId, Price, Qty, Side, Symbol};
    use proptest::prelude::*;

    fn general(
        id: u64,
        o: &OrderRequest,
        p: &WirePrecision,
        recv: u32,
        ts: u64,
    ) -> Result<Vec<u8>, SignError> {
        let mut scratch = [0u8; MAX_REQUEST_LEN];
        let mut out = [0u8; MAX_REQUEST_LEN];
        let n = encode_order_place(id, o, p, recv, ts, WsAuth::Session, &mut scratch, &mut out)?;
        Ok(out[..n].to_vec())
    }

    fn fast(
        id: u64,
        o: &OrderRequest,
        p: &WirePrecision,
        recv: u32,
        ts: u64,
    ) -> Result<Vec<u8>, SignError> {
        // Dirty buffer: the template must not rely on zeros or on a previous request's bytes.
        let mut out = [b'#'; MAX_REQUEST_LEN];
        let n = encode_order_place_session(id, o, p, recv, ts, &mut out)?;
        Ok(out[..n].to_vec())
    }

    fn order() -> OrderRequest {
        OrderRequest {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            side: Side::Sell,
            order_type: OrderType::Market,
            tif: None,
            qty: Qty::parse("0.01").unwrap(),
            price: Price::ZERO,
            reduce_only: true,
            client_id: ClientOrderId::new("agx-1").unwrap(),
            resp_type: RespType::Ack,
        }
    }

    fn prec(tick: &str, step: &str) -> WirePrecision {
        WirePrecision::new(Price::parse(tick).unwrap(), Qty::parse(step).unwrap()).unwrap()
    }

    #[test]
    fn golden_market_order_in_a_session() {
        let got = fast(8, &order(), &prec("0.01", "0.00000001"), 5000, 99).unwrap();
        assert_eq!(
            std::str::from_utf8(&got).unwrap(),
            r#"{"id":8,"method":"order.place","params":{"newClientOrderId":"agx-1","newOrderRespType":"ACK","quantity":"0.01000000","recvWindow":5000,"reduceOnly":"true","side":"SELL","symbol":"BTCUSDT","timestamp":99,"type":"MARKET"}}"#
        );
    }

    #[test]
    fn golden_limit_order_in_a_session() {
        let mut o = order();
        o.order_type = OrderType::Limit;
        o.tif = Some(TimeInForce::Gtx);
        o.side = Side::Buy;
        o.reduce_only = false;
        o.price = Price::parse("50000.1").unwrap();
        o.qty = Qty::parse("0.010").unwrap();
        o.resp_type = RespType::Result;
        let got = fast(
            1_704_067_200_001,
            &o,
            &prec("0.10", "0.001"),
            5000,
            1_704_067_200_001,
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&got).unwrap(),
            r#"{"id":1704067200001,"method":"order.place","params":{"newClientOrderId":"agx-1","newOrderRespType":"RESULT","price":"50000.1","quantity":"0.010","recvWindow":5000,"reduceOnly":"false","side":"BUY","symbol":"BTCUSDT","timeInForce":"GTX","timestamp":1704067200001,"type":"LIMIT"}}"#
        );
    }

    #[test]
    fn integer_edges_match_the_general_encoder() {
        let p = prec("1", "1");
        let mut o = order();
        o.qty = Qty::from_int(1);
        for v in [
            0u64,
            9,
            10,
            99,
            100,
            99_999_999,
            100_000_000,
            9_999_999_999_999_999,
            10_000_000_000_000_000,
            u64::MAX,
        ] {
            assert_eq!(fast(v, &o, &p, 0, v), general(v, &o, &p, 0, v), "{v}");
        }
        assert_eq!(
            fast(1, &o, &p, u32::MAX, 1),
            general(1, &o, &p, u32::MAX, 1)
        );
    }

    #[test]
    fn short_buffers_take_the_general_path() {
        let o = order();
        let p = prec("0.01", "0.001");
        let mut small = [0u8; 64];
        assert_eq!(
            encode_order_place_session(1, &o, &p, 5000, 1, &mut small),
            Err(SignError::BufferTooSmall)
        );
        let mut exact = [0u8; 300];
        let n = encode_order_place_session(1, &o, &p, 5000, 1, &mut exact).unwrap();
        assert_eq!(Ok(exact[..n].to_vec()), general(1, &o, &p, 5000, 1));
    }

    fn arb_tif() -> impl Strategy<Value = Option<TimeInForce>> {
        prop_oneof![
            Just(None),
            Just(Some(TimeInForce::Gtc)),
            Just(Some(TimeInForce::Ioc)),
            Just(Some(TimeInForce::Fok)),
            Just(Some(TimeInForce::Gtx)),
        ]
    }

    /// A tick or step: m × 10^k units (1 ≤ m ≤ 9, 0 ≤ k ≤ 10, so 10⁻⁸ … 90).
    fn arb_step() -> impl Strategy<Value = i64> {
        (1i64..10, 0u32..11).prop_map(|(m, k)| m * 10i64.pow(k))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn fast_encoder_equals_the_general_one(
            id in any::<u64>(),
            ts in any::<u64>(),
            recv in any::<u32>(),
            tick in arb_step(),
            step in arb_step(),
            // Mostly on-grid positive values (the normal case), sometimes anything (the error paths).
            price_mult in 1i64..10_000_000_000,
            qty_mult in 1i64..10_000_000_000,
            raw_price in -1_000_000_000i64..1_000_000_000_000,
            raw_qty in -1_000_000_000i64..1_000_000_000_000,
            off_grid in 0u8..8,
            limit in any::<bool>(),
            tif in arb_tif(),
            buy in any::<bool>(),
            reduce in any::<bool>(),
            result in any::<bool>(),
            sym in prop_oneof![Just("BTCUSDT"), Just("ETHUSDT"), Just("1000PEPEUSDT"), Just("ABCDEFGHIJKLMNOPQRST")],
            session in any::<u64>(),
            seq in 0u32..5000,
        ) {
            let p = WirePrecision::new(Price::from_units(tick), Qty::from_units(step)).unwrap();
            let mut ids = ClientOrderIdGen::new(session);
            let mut cid = ids.next_id();
            for _ in 0..seq % 50 {
                cid = ids.next_id();
            }
            let price = match off_grid {
                0 => raw_price,
                _ => price_mult.saturating_mul(tick).min(9_000_000_000_000_000),
            };
            let qty = match off_grid {
                1 => raw_qty,
                _ => qty_mult.saturating_mul(step).min(9_000_000_000_000_000),
            };
            let o = OrderRequest {
                symbol: Symbol::new(sym).unwrap(),
                side: if buy { Side::Buy } else { Side::Sell },
                order_type: if limit { OrderType::Limit } else { OrderType::Market },
                tif,
                qty: Qty::from_units(qty),
                price: Price::from_units(price),
                reduce_only: reduce,
                client_id: cid,
                resp_type: if result { RespType::Result } else { RespType::Ack },
            };
            prop_assert_eq!(fast(id, &o, &p, recv, ts), general(id, &o, &p, recv, ts));
        }
    }
}
