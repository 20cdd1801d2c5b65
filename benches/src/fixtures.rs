//! Fixed inputs: wire messages (protocol notes §5), a signer, an order, and the tick → order step the benches and
//! the harness time alike.

use crate::usual;
use aegis_engine::book::TopOfBook;
use aegis_engine::feed::parse::{MarketMsg, Parser};
use aegis_engine::queues::ControlEnds;
use aegis_engine::sign::{
    ApiKey, HmacSigner, OrderEncoder, OrderRequest, RespType, Signer, WirePrecision,
};
use aegis_engine::SymbolSpec;
use aegis_shared::event::{OrderType, TimeInForce};
use aegis_shared::ids::ClientOrderIdGen;
use aegis_shared::{ClientOrderId, Price, Qty, Secret, Side, Symbol};
use std::hint::black_box;

/// Futures bookTicker, verbatim from the protocol notes.
pub const BOOK_TICKER: &[u8] = br#"{"e":"bookTicker","u":400900217,"E":1568014460893,"T":1568014460891,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#;
/// Futures aggTrade, verbatim from the protocol notes.
pub const AGG_TRADE: &[u8] = br#"{"e":"aggTrade","E":123456789,"s":"BTCUSDT","a":5933014,"p":"0.001","q":"100","nq":"100","f":100,"l":105,"T":123456785,"m":true}"#;
/// Futures depthUpdate, verbatim from the protocol notes.
pub const DEPTH_UPDATE: &[u8] = br#"{"e":"depthUpdate","E":123456789,"T":123456788,"s":"BTCUSDT","U":157,"u":160,"pu":149,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}"#;
/// A depthUpdate with 10 levels a side, closer to what a busy symbol sends.
pub const DEPTH_UPDATE_10: &[u8] = br#"{"e":"depthUpdate","E":1700000000123,"T":1700000000120,"s":"BTCUSDT","U":1000157,"u":1000160,"pu":1000149,"b":[["50000.10","1.204"],["50000.00","0.500"],["49999.90","2.000"],["49999.80","0.010"],["49999.70","0"],["49999.60","3.333"],["49999.50","0.750"],["49999.40","1.000"],["49999.30","0.001"],["49999.20","9.999"]],"a":[["50000.20","0.800"],["50000.30","1.100"],["50000.40","0"],["50000.50","2.500"],["50000.60","0.333"],["50000.70","4.000"],["50000.80","0.010"],["50000.90","7.250"],["50001.00","1.000"],["50001.10","0.420"]]}"#;

/// The futures HMAC test secret from the protocol notes (not a real key).
pub const HMAC_SECRET: &str = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9";
/// The matching test API key.
pub const API_KEY: &str = "dbefbc809e3e83c283a984c3a1459732ea7db1360ca80c5c2c8867408d28cc83";

/// An HMAC signer with the test secret.
pub fn hmac_signer() -> Signer {
    Signer::Hmac(HmacSigner::new(&Secret::new(HMAC_SECRET.to_string())))
}

/// An Ed25519 signer from a fixed seed.
pub fn ed25519_signer() -> Signer {
    Signer::Ed25519(aegis_engine::sign::Ed25519Signer::from_seed(&Secret::new(
        [7u8; 32],
    )))
}

/// The test API key.
pub fn api_key() -> ApiKey {
    // Invariant: the constant is ASCII alphanumeric.
    ApiKey::new(Secret::new(API_KEY.to_string())).expect("valid test key")
}

/// An encoder with the HMAC test key and recvWindow 5000.
pub fn hmac_encoder() -> OrderEncoder {
    OrderEncoder::new(hmac_signer(), api_key(), 5000)
}

/// BTCUSDT-like rules: tick 0.10, step 0.001.
pub fn btc_precision() -> WirePrecision {
    WirePrecision::new(Price::from_units(10_000_000), Qty::from_units(100_000)).expect("positive")
}

/// A typical limit entry.
pub fn limit_order() -> OrderRequest {
    OrderRequest {
        symbol: Symbol::new("BTCUSDT").expect("valid"),
        side: Side::Buy,
        order_type: OrderType::Limit,
        tif: Some(TimeInForce::Gtx),
        qty: Qty::from_units(1_000_000),             // 0.010
        price: Price::from_units(5_000_010_000_000), // 50000.10
        reduce_only: false,
        client_id: ClientOrderId::new("agmd3k2x1c-1a").expect("valid"),
        resp_type: RespType::Ack,
    }
}

/// The order a tick → order bench sends on each tick: a post-only buy of 0.010 at the bid, on the tick grid.
#[inline]
pub fn order_at_touch(
    spec: &SymbolSpec,
    top: &TopOfBook,
    client_id: ClientOrderId,
) -> OrderRequest {
    OrderRequest {
        symbol: spec.symbol,
        side: Side::Buy,
        order_type: OrderType::Limit,
        tif: Some(TimeInForce::Gtx),
        qty: Qty::from_units(1_000_000),
        price: top.bid.floor_to(spec.filters.tick_size),
        reduce_only: false,
        client_id,
        resp_type: RespType::Ack,
    }
}

/// The tick → order step that the criterion benches and the harness's interleaved A/B both time, with the state
/// the bot reuses from tick to tick (parser, book, encoder, client ids, clock). The tick is [`BOOK_TICKER`] with
/// its symbol renamed BTCUSDT, so the order is sized and priced with BTC's filters.
pub struct TickToOrder {
    prec: WirePrecision,
    spec: SymbolSpec,
    ids: ClientOrderIdGen,
    parser: Parser,
    top: TopOfBook,
    enc: OrderEncoder,
    msg: Vec<u8>,
    ts: u64,
}

impl Default for TickToOrder {
    fn default() -> Self {
        let mut msg = BOOK_TICKER.to_vec();
        let at = msg.windows(7).position(|w| w == b"BNBUSDT").unwrap_or(0);
        msg[at..at + 7].copy_from_slice(b"BTCUSDT");
        Self {
            prec: btc_precision(),
            spec: SymbolSpec::btcusdt(),
            ids: ClientOrderIdGen::new(1_704_067_200_000),
            parser: Parser::new(),
            top: TopOfBook::default(),
            enc: hmac_encoder(),
            msg,
            ts: 1_704_067_200_000,
        }
    }
}

impl TickToOrder {
    /// Aegis: parse (reused parser) → top of book → order at the touch → WS-API `order.place` on a
    /// `session.logon`'d connection (`ws`) or a signed REST query, in a reused buffer. Returns the bytes written;
    /// 0 only if the fixed tick stopped parsing.
    #[inline]
    pub fn aegis(&mut self, ws: bool) -> usize {
        self.ts += 1;
        let Ok(MarketMsg::BookTicker(t)) = self.parser.parse(black_box(&self.msg)) else {
            return 0;
        };
        // Reset so the same message moves the book every time.
        self.top.update_id = 0;
        self.top.update(&t);
        let o = order_at_touch(&self.spec, &self.top, self.ids.next_id());
        self.encode(&o, ws)
    }

    /// The usual way: serde_json into Strings, floats, `format!`, re-keyed HMAC, `hex::encode`.
    #[inline]
    pub fn usual(&mut self) -> usize {
        self.ts += 1;
        let Some((t, bid, _ask)) = usual::parse_book_ticker(black_box(&self.msg)) else {
            return 0;
        };
        let o = usual::order_at(t.s, bid, self.ids.next_id().to_string());
        usual::rest_order(HMAC_SECRET, &o, 5000, self.ts).len()
    }

    /// An order at the touch of `top` (the engine's book after its own message path), encoded as in
    /// [`TickToOrder::aegis`]; 0 when `top` has no market.
    #[inline]
    pub fn order_at(&mut self, top: &TopOfBook, ws: bool) -> usize {
        self.ts += 1;
        if !top.is_valid() {
            return 0;
        }
        let o = order_at_touch(&self.spec, top, self.ids.next_id());
        self.encode(&o, ws)
    }

    #[inline]
    fn encode(&mut self, o: &OrderRequest, ws: bool) -> usize {
        let ts = self.ts;
        let q = if ws {
            self.enc.ws_order_place(ts, o, &self.prec, ts, true)
        } else {
            self.enc.rest_order(o, &self.prec, ts)
        };
        q.map_or(0, |q| q.len())
    }
}

/// Empties the engine's queues, the control plane's job in a real run: full queues would halt entries and
/// change the measured path.
pub fn drain(ctl: &ControlEnds) {
    while ctl.events.try_recv().is_ok() {}
    while ctl.stats.try_recv().is_ok() {}
}

/// `n` messages of the built-in simulated market (BTCUSDT + ETHUSDT bookTicker/aggTrade, seed 1).
pub fn sim_messages(n: usize) -> Vec<Vec<u8>> {
    let mut cfg = aegis_engine::feed::sim::SimConfig::new(1);
    cfg.rate = 100_000.0;
    // Invariant: the built-in config is valid.
    let mut m = aegis_engine::feed::sim::SimMarket::new(cfg).expect("built-in sim config");
    (0..n).map(|_| m.next_message().to_vec()).collect()
}

/// The engine with the default parameters, not pinned, every mode enabled, and limits wide enough that a long
/// benchmark run is not stopped by the daily loss limit or breakers.
pub fn bench_engine() -> (aegis_engine::Engine, aegis_engine::queues::ControlEnds) {
    use aegis_engine::EngineParams;
    let mut p = EngineParams {
        pin: false,
        session: 1,
        ..EngineParams::default()
    };
    p.ultra_fast = Some(Default::default());
    p.swing = Some(Default::default());
    p.position = Some(Default::default());
    p.limits.max_daily_loss_usd = aegis_shared::Notional::from_int(1_000_000_000);
    // Invariant: default params with two built-in symbols are valid.
    aegis_engine::Engine::with_channels(p).expect("engine params")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_way_of_the_tick_to_order_step_writes_an_order() {
        // A bench that silently returned 0 would time an early exit, not the step.
        let mut t = TickToOrder::default();
        let ws = t.aegis(true);
        let rest = t.aegis(false);
        let usual = t.usual();
        assert!(ws > 0 && rest > 0 && usual > 0, "{ws} {rest} {usual}");
        assert_eq!(
            t.order_at(&TopOfBook::default(), false),
            0,
            "no market, no order"
        );
        let top = t.top;
        assert!(top.is_valid());
        assert!(t.order_at(&top, false) > 0);
    }
}
