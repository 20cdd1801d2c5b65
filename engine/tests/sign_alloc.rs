//! Proves the order signing and encoding path allocates nothing after warm-up.
//!
//! Its own test binary because it installs a counting global allocator. Only allocations made by the thread
//! under test are counted (thread-local switch and counter), so the harness's other threads cannot disturb it.

use aegis_engine::sign::{
    ApiKey, CancelRef, CancelReplace, CancelRequest, Ed25519Signer, OrderEncoder, OrderRequest,
    RespType, Signer, WirePrecision,
};
use aegis_engine::venue::binance::answer::{self, LegResult};
use aegis_shared::event::{OrderType, TimeInForce};
use aegis_shared::ids::ClientOrderIdGen;
use aegis_shared::Market;
use aegis_shared::{Price, Qty, Secret, Side, Symbol};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // `const` init and no destructor: using them never allocates, so they are safe inside the allocator.
    // Both are per thread so tests running in parallel cannot add to each other's counts.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    if COUNTING.with(|c| c.get()) {
        ALLOCS.with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        note();
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCS.with(|a| a.get());
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCS.with(|a| a.get()) - before)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn order(i: u64, gen: &mut ClientOrderIdGen, sym: Symbol) -> OrderRequest {
    OrderRequest {
        symbol: sym,
        side: if i.is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        },
        order_type: if i.is_multiple_of(5) {
            OrderType::Market
        } else {
            OrderType::Limit
        },
        tif: Some(if i.is_multiple_of(3) {
            TimeInForce::Gtx
        } else {
            TimeInForce::Gtc
        }),
        qty: Qty::from_units(100_000 * (1 + (i % 50) as i64)),
        price: Price::from_units(5_000_000_000_000 + 10_000_000 * (i % 1000) as i64),
        reduce_only: i.is_multiple_of(7),
        client_id: gen.next_id(),
        resp_type: RespType::Ack,
    }
}

#[test]
fn hmac_signing_and_encoding_allocate_nothing_after_warm_up() {
    const N: u64 = 100_000;
    let signer = Signer::from_secret(&Secret::new(
        "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9".to_string(),
    ))
    .unwrap();
    let key = ApiKey::new(Secret::new("dbefbc809e3e83c283a984c3a1459732".to_string())).unwrap();
    let mut enc = OrderEncoder::new(signer, key, 5000);
    let prec =
        WirePrecision::new(Price::parse("0.1").unwrap(), Qty::parse("0.001").unwrap()).unwrap();
    let sym = Symbol::new("BTCUSDT").unwrap();
    let mut gen = ClientOrderIdGen::new(1_700_000_000_000);

    // Warm-up: first use of every path (lazy CPU-feature detection etc.).
    for i in 0..100 {
        let o = order(i, &mut gen, sym);
        enc.rest_order(&o, &prec, i).unwrap();
        enc.ws_order_place(i, &o, &prec, i, false).unwrap();
    }

    let (bytes, allocs) = counted(|| {
        let mut total = 0usize;
        for i in 0..N {
            let ts = 1_700_000_000_000 + i;
            let o = order(i, &mut gen, sym);
            let q = enc.rest_order(&o, &prec, ts).unwrap();
            assert!(contains(q, b"&signature=") && contains(q, o.client_id.as_bytes()));
            total += q.len();
            let w = enc.ws_order_place(i, &o, &prec, ts, false).unwrap();
            assert!(w.starts_with(b"{\"id\":") && contains(w, b"\"signature\":\""));
            total += w.len();
            // The other request kinds on every 10th order keep the debug-build run short.
            if i.is_multiple_of(10) {
                let w = enc.ws_order_place(i, &o, &prec, ts, true).unwrap();
                assert!(!contains(w, b"signature"));
                total += w.len();
                let c = CancelRequest {
                    symbol: sym,
                    order: CancelRef::ClientId(o.client_id),
                };
                total += enc.rest_cancel(&c, ts).unwrap().len();
                total += enc.ws_order_cancel(i, &c, ts, false).unwrap().len();
            }
        }
        total
    });
    assert!(
        bytes > (N as usize) * 500,
        "the loop really encoded: {bytes}"
    );
    assert_eq!(allocs, 0, "allocations on the signing path over {N} orders");
}

/// Spot: the spot `order.place` (signed and logged on), `POST /api/v3/order`, `order.cancelReplace` and its REST
/// query, and reading a cancel-replace's answer (its legs in `error.data`), all without allocating.
#[test]
fn spot_encoding_and_cancel_replace_answers_allocate_nothing_after_warm_up() {
    const N: u64 = 20_000;
    let signer = Signer::from_secret(&Secret::new("spot-secret-0123456789".to_string())).unwrap();
    let key = ApiKey::new(Secret::new("dbefbc809e3e83c283a984c3a1459732".to_string())).unwrap();
    let mut enc = OrderEncoder::new(signer, key, 5000).on_market(Market::Spot);
    let prec =
        WirePrecision::new(Price::parse("0.1").unwrap(), Qty::parse("0.001").unwrap()).unwrap();
    let sym = Symbol::new("BTCUSDT").unwrap();
    let mut gen = ClientOrderIdGen::new(1_700_000_000_000);
    let stop = CancelReplace {
        cancel_client_id: gen.next_id(),
        cancel_new_client_id: None,
    };
    let frame = br#"{"id":5,"status":409,"error":{"code":-2021,"msg":"Order cancel-replace partially failed.","data":{"cancelResult":"FAILURE","newOrderResult":"SUCCESS","cancelResponse":{"code":-2011,"msg":"Unknown order sent."},"newOrderResponse":{"symbol":"BTCUSDT","orderId":12569099453,"orderListId":-1,"clientOrderId":"bX5wROblo6YeDwa9iTLeyY","transactTime":1660813156959,"status":"NEW","fills":[]}}},"rateLimits":[{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":50,"count":1}]}"#;
    for i in 0..100 {
        let o = order(i, &mut gen, sym);
        enc.rest_order(&o, &prec, i).unwrap();
        enc.ws_order_place(i, &o, &prec, i, false).unwrap();
        enc.ws_order_cancel_replace(i, &o, &prec, &stop, i, false)
            .unwrap();
        enc.rest_cancel_replace(&o, &prec, &stop, i).unwrap();
        answer::parse(frame).unwrap();
    }
    let (bytes, allocs) = counted(|| {
        let mut total = 0usize;
        for i in 0..N {
            let ts = 1_700_000_000_000 + i;
            let o = order(i, &mut gen, sym);
            let q = enc.rest_order(&o, &prec, ts).unwrap();
            assert!(!contains(q, b"reduceOnly"));
            total += q.len();
            total += enc
                .ws_order_place(i, &o, &prec, ts, i % 2 == 0)
                .unwrap()
                .len();
            let w = enc
                .ws_order_cancel_replace(i, &o, &prec, &stop, ts, i % 2 == 1)
                .unwrap();
            assert!(contains(w, b"order.cancelReplace"));
            total += w.len();
            total += enc.rest_cancel_replace(&o, &prec, &stop, ts).unwrap().len();
            let a = answer::parse(frame).unwrap();
            assert_eq!(a.new_order.map(|l| l.result), Some(LegResult::Success));
        }
        total
    });
    assert!(
        bytes > (N as usize) * 800,
        "the loop really encoded: {bytes}"
    );
    assert_eq!(
        allocs, 0,
        "allocations on the spot encoding path over {N} orders"
    );
}

#[test]
fn ed25519_signing_and_logon_allocate_nothing_after_warm_up() {
    // Fewer iterations: unoptimized test builds make Ed25519 slow, and the claim is per call anyway.
    const N: u64 = 300;
    let ed = Ed25519Signer::from_seed(&Secret::new([9u8; 32]));
    let key = ApiKey::new(Secret::new("edkey0123456789".to_string())).unwrap();
    let mut enc = OrderEncoder::new(Signer::Ed25519(ed), key, 5000);
    let prec =
        WirePrecision::new(Price::parse("0.1").unwrap(), Qty::parse("0.001").unwrap()).unwrap();
    let sym = Symbol::new("ETHUSDT").unwrap();
    let mut gen = ClientOrderIdGen::new(1);
    let o = order(1, &mut gen, sym);
    enc.rest_order(&o, &prec, 1).unwrap();
    enc.ws_order_place(1, &o, &prec, 1, false).unwrap();
    enc.ws_session_logon(1, 1).unwrap().unwrap();

    let (_, allocs) = counted(|| {
        for i in 0..N {
            let o = order(i, &mut gen, sym);
            let q = enc.rest_order(&o, &prec, i).unwrap();
            assert!(contains(q, b"&signature="));
            let w = enc.ws_order_place(i, &o, &prec, i, false).unwrap();
            assert!(contains(w, b"\"signature\":\""));
            let l = enc.ws_session_logon(i, i).unwrap().unwrap();
            assert!(contains(l, b"session.logon"));
        }
    });
    assert_eq!(allocs, 0, "allocations on the Ed25519 path over {N} orders");
}

#[test]
fn the_counter_does_count() {
    // Guards the test itself: an allocation inside `counted` must be seen.
    let (v, allocs) = counted(|| vec![1u8; 64]);
    assert_eq!(v.len(), 64);
    assert!(allocs >= 1);
}
