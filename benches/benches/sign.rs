//! Signing benches: Aegis (pre-keyed HMAC, hand-written hex, reused buffer) against the usual way.

use aegis_benches::{fixtures, usual};
use aegis_engine::sign::{ws_api, WsAuth, MAX_REQUEST_LEN};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::time::Duration;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

fn sign(c: &mut Criterion) {
    let prec = fixtures::btc_precision();
    let order = fixtures::limit_order();
    let mut g = c.benchmark_group("sign");

    let mut enc = fixtures::hmac_encoder();
    let mut ts = 1_700_000_000_000u64;
    g.bench_function("aegis_rest_hmac_order", |b| {
        b.iter(|| {
            ts += 1;
            enc.rest_order(black_box(&order), &prec, ts)
                .map(|q| q.len())
        })
    });
    g.bench_function("aegis_ws_hmac_order_place", |b| {
        b.iter(|| {
            ts += 1;
            enc.ws_order_place(ts, black_box(&order), &prec, ts, false)
                .map(|q| q.len())
        })
    });
    g.bench_function("aegis_ws_session_order_place", |b| {
        b.iter(|| {
            ts += 1;
            enc.ws_order_place(ts, black_box(&order), &prec, ts, true)
                .map(|q| q.len())
        })
    });

    let ed = fixtures::ed25519_signer();
    let key = fixtures::api_key();
    let mut scratch = vec![0u8; MAX_REQUEST_LEN];
    let mut out = vec![0u8; MAX_REQUEST_LEN];
    g.bench_function("aegis_ws_ed25519_order_place", |b| {
        b.iter(|| {
            ts += 1;
            ws_api::encode_order_place(
                ts,
                black_box(&order),
                &prec,
                5000,
                ts,
                WsAuth::Signed {
                    api_key: &key,
                    signer: &ed,
                },
                &mut scratch,
                &mut out,
            )
        })
    });
    let aegis_engine::sign::Signer::Ed25519(ed_only) = &ed else {
        unreachable!("fixture is Ed25519")
    };
    g.bench_function("aegis_ws_session_logon_ed25519", |b| {
        b.iter(|| {
            ts += 1;
            ws_api::encode_session_logon(ts, &key, ed_only, ts, &mut scratch, &mut out)
        })
    });

    // The HMAC alone over a typical 200-byte query, pre-keyed vs re-keyed.
    let payload = usual::rest_order(fixtures::HMAC_SECRET, &usual::order(), 5000, ts);
    let aegis_engine::sign::Signer::Hmac(h) = fixtures::hmac_signer() else {
        unreachable!("fixture is HMAC")
    };
    let mut hexbuf = [0u8; 64];
    g.bench_function("aegis_hmac_only_prekeyed_hex", |b| {
        b.iter(|| h.sign_hex(black_box(payload.as_bytes()), &mut hexbuf))
    });
    g.bench_function("usual_hmac_only_rekeyed_hex_encode", |b| {
        b.iter(|| usual::sign_hex(fixtures::HMAC_SECRET, black_box(&payload)))
    });

    let uorder = usual::order();
    g.bench_function("usual_rest_hmac_order", |b| {
        b.iter(|| {
            ts += 1;
            usual::rest_order(fixtures::HMAC_SECRET, black_box(&uorder), 5000, ts)
        })
    });
    g.bench_function("usual_ws_hmac_order_place", |b| {
        b.iter(|| {
            ts += 1;
            usual::ws_order_place(
                fixtures::API_KEY,
                fixtures::HMAC_SECRET,
                ts,
                black_box(&uorder),
                5000,
                ts,
            )
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = sign
}
criterion_main!(benches);
