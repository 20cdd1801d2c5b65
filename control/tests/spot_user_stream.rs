//! The spot user data stream (`exchange::spot::user_stream`) against a real binance-sim in process: orders placed
//! over spot REST (`POST /api/v3/order`, signed) come back as `Inbound::Update`s with the right fields and fees
//! (base asset, quote asset, BNB through the pricer), the balances follow the simulator's account, an admin
//! `terminate` (`eventStreamTerminated`) and a dropped connection are both followed by a new subscription, events
//! again and `on_resync`, a refused key or secret fails `start` with what to fix, a key revoked before a reconnect
//! halts the engine read-only, and `wss://` uses the caller's TLS config. HMAC and Ed25519 keys both subscribe.

use aegis_control::exchange::env::{Credentials, Endpoints};
use aegis_control::exchange::rest::RestClient;
use aegis_control::exchange::spot::user_stream::{
    self as us, Balances, SpotAssets, SpotFeePricer, SpotStreamError, SpotUserStream,
    SpotUserStreamConfig,
};
use aegis_engine::sign::{ApiKey, Signer};
use aegis_engine::venue::binance::entry::WallClock;
use aegis_engine::venue::binance::{Inbound, OrderUpdate};
use aegis_shared::event::{FeeConversion, OrderStatus, OrderType};
use aegis_shared::{Market, Notional, Price, Qty, Secret, Side, Symbol};
use aegis_testkit::sim::client::{AdminCall, AdminClient};
use aegis_testkit::sim::keys::{KeyEntry, KeysFile, Permissions};
use aegis_testkit::sim::{self, SimConfig, SimHandle};
use crossbeam_channel::Receiver;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "spotStreamKEY000000000000000000000000000000000000000000000000001";
const SECRET: &str = "spotStreamSECRET000000000000000000000000000000000000000000000001";
const ED_KEY: &str = "spotStreamEDKEY0000000000000000000000000000000000000000000000002";
// A throwaway test key pair (openssl genpkey -algorithm ed25519), used nowhere else.
const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEILBEME1s1TcckzUf2W368NzEx+NTbS++TD/ndZvUqWyE\n-----END PRIVATE KEY-----\n";
const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAap6g2MQVoUuSU+fQGHzOaCYoY1BlWL14I25sG06X2wE=\n-----END PUBLIC KEY-----\n";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn spot_perms() -> Permissions {
    Permissions {
        spot: true,
        ..Permissions::default()
    }
}

fn start_sim(rt: &tokio::runtime::Runtime) -> SimHandle {
    start_sim_tls(rt, None)
}

fn start_sim_tls(rt: &tokio::runtime::Runtime, tls: Option<sim::SimTls>) -> SimHandle {
    let entry = |key: &str, account: &str, secret: Option<&str>, ed: Option<&str>| KeyEntry {
        api_key: key.into(),
        account: Some(account.into()),
        secret: secret.map(String::from),
        ed25519_public_key: ed.map(String::from),
        permissions: spot_perms(),
        ip_restrict: false,
        allowed_ips: vec![],
    };
    let cfg = SimConfig {
        keys: KeysFile {
            keys: vec![
                entry(KEY, "alice", Some(SECRET), None),
                entry(ED_KEY, "bob", None, Some(ED_PUBLIC)),
            ],
            ..Default::default()
        },
        source: sim::SourceKind::Frozen,
        tls,
        ..SimConfig::default()
    };
    let h = rt.block_on(sim::start(cfg)).unwrap();
    // A known touch: market buys fill at 60 001, sells at 59 999; BNB at 600.
    admin(
        rt,
        &h,
        AdminCall::spot_price("BTCUSDT", "60000", Some("59999"), Some("60001")),
    );
    admin(
        rt,
        &h,
        AdminCall::spot_price("BNBUSDT", "600", Some("599.9"), Some("600.1")),
    );
    h
}

fn admin(rt: &tokio::runtime::Runtime, h: &SimHandle, c: AdminCall) -> Value {
    let a = match h.ca_pem() {
        Some(pem) => AdminClient::with_ca_pem(&h.base_url(), pem).unwrap(),
        None => h.admin(),
    };
    rt.block_on(a.call(c)).unwrap()
}

fn rest(h: &SimHandle, key: &str, secret: &str) -> RestClient {
    let base = h.base_url();
    let ws = h.ws_url();
    let endpoints = Endpoints {
        name: "testnet",
        fapi: base.clone(),
        fstream: ws.clone(),
        wsapi: format!("{ws}/ws-fapi/v1"),
        sapi: Some(base.clone()),
        spot: base,
        spot_stream: format!("{ws}/spot"),
        spot_wsapi: format!("{ws}/ws-api/v3"),
        overridden: true,
    };
    let creds = Credentials {
        api_key: ApiKey::new(Secret::new(key.to_string())).unwrap(),
        signer: Signer::from_secret(&Secret::new(secret.to_string())).unwrap(),
        source: "test",
    };
    RestClient::new(endpoints, Some(creds))
        .unwrap()
        .on_market(Market::Spot)
}

/// BNB at 600 USDT; counts its calls.
#[derive(Default)]
struct Pricer(AtomicUsize);

impl SpotFeePricer for Pricer {
    fn price_fee(&self, asset: &str, amount: Notional, quote: &str) -> FeeConversion {
        self.0.fetch_add(1, Ordering::Relaxed);
        match (asset, quote) {
            ("BNB", "USDT") => FeeConversion::convert(amount, Price::from_int(600)),
            _ => FeeConversion::Unconvertible,
        }
    }
}

struct Stream {
    s: SpotUserStream,
    rx: Receiver<Inbound>,
    resyncs: Arc<Mutex<Vec<String>>>,
    pricer: Arc<Pricer>,
}

fn config(
    h: &SimHandle,
    key: &str,
    secret: &str,
) -> (SpotUserStreamConfig, Arc<Mutex<Vec<String>>>, Arc<Pricer>) {
    let resyncs = Arc::new(Mutex::new(Vec::new()));
    let r = resyncs.clone();
    let pricer = Arc::new(Pricer::default());
    let mut cfg = SpotUserStreamConfig::new(
        format!("{}/ws-api/v3", h.ws_url()),
        ApiKey::new(Secret::new(key.to_string())).unwrap(),
        Signer::from_secret(&Secret::new(secret.to_string())).unwrap(),
        Arc::new(WallClock),
        pricer.clone(),
        Arc::new(move |why: &str| r.lock().unwrap().push(why.to_string())),
    );
    cfg.assets.insert(
        Symbol::new("BTCUSDT").unwrap(),
        SpotAssets {
            base: "BTC".into(),
            quote: "USDT".into(),
        },
    );
    (cfg, resyncs, pricer)
}

fn start_stream(h: &SimHandle, key: &str, secret: &str) -> Stream {
    let (cfg, resyncs, pricer) = config(h, key, secret);
    let (tx, rx) = crossbeam_channel::unbounded();
    let s = us::start(cfg, tx, Arc::new(Balances::new())).expect("subscribed");
    Stream {
        s,
        rx,
        resyncs,
        pricer,
    }
}

/// The next update of `cid` (other messages are skipped), within 5 s.
fn update_of(rx: &Receiver<Inbound>, cid: &str, status: OrderStatus) -> OrderUpdate {
    let until = Instant::now() + Duration::from_secs(5);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(Inbound::Update(u)) if u.client_id.as_str() == cid && u.status == status => {
                return u
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no {status:?} update of {cid}");
}

fn wait(what: &str, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn n(s: &str) -> Notional {
    Notional::parse(s).unwrap()
}

fn order(rt: &tokio::runtime::Runtime, c: &RestClient, p: &[(&str, &str)]) -> Value {
    let params: Vec<(&str, String)> = p.iter().map(|(k, v)| (*k, v.to_string())).collect();
    rt.block_on(c.spot_order(&params)).unwrap()
}

#[test]
fn orders_and_balances_flow_from_the_sim_account() {
    let rt = rt();
    let h = start_sim(&rt);
    let c = rest(&h, KEY, SECRET);
    let st = start_stream(&h, KEY, SECRET);
    let b = st.s.balances.clone();
    b.seed(&rt.block_on(c.account()).unwrap());
    assert_eq!(b.get("USDT"), Some((n("10000"), Notional::ZERO)));

    // A resting limit buy: NEW, and its quote locked.
    order(
        &rt,
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "LIMIT"),
            ("timeInForce", "GTC"),
            ("quantity", "0.01"),
            ("price", "50000"),
            ("newClientOrderId", "agLimit1"),
        ],
    );
    let u = update_of(&st.rx, "agLimit1", OrderStatus::New);
    assert_eq!(u.symbol.as_str(), "BTCUSDT");
    assert_eq!((u.side, u.order_type), (Side::Buy, OrderType::Limit));
    assert_eq!(u.price, Price::from_int(50000));
    assert_eq!(u.orig_qty, Qty::parse("0.01").unwrap());
    assert!(u.last_qty.is_zero() && u.cum_qty.is_zero() && !u.reduce_only);
    assert!(u.exchange_id > 0 && u.ts_ms > 0);
    wait("the lock of the limit buy", || {
        b.get("USDT") == Some((n("9500"), n("500")))
    });

    // Its cancel: the report's `c` is the cancel's id, the update names the order.
    rt.block_on(c.cancel_order("BTCUSDT", "agLimit1")).unwrap();
    let cx = update_of(&st.rx, "agLimit1", OrderStatus::Canceled);
    assert_eq!(cx.exchange_id, u.exchange_id);
    wait("the lock released", || {
        b.get("USDT") == Some((n("10000"), Notional::ZERO))
    });

    // A market buy pays its fee in BTC, valued at the fill price.
    order(
        &rt,
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "MARKET"),
            ("quantity", "0.01"),
            ("newClientOrderId", "agMkt1"),
        ],
    );
    let f = update_of(&st.rx, "agMkt1", OrderStatus::Filled);
    let px = Price::from_int(60001);
    assert_eq!(f.order_type, OrderType::Market);
    assert_eq!(
        (f.last_qty, f.cum_qty),
        (Qty::parse("0.01").unwrap(), Qty::parse("0.01").unwrap())
    );
    assert_eq!(f.last_price, px);
    assert!(f.trade_id > 0);
    assert_eq!((f.fee_asset.as_str(), f.fee), ("BTC", n("0.00001")));
    assert_eq!(
        f.fee_conv,
        FeeConversion::Converted {
            price: px,
            quote: px.notional(Qty::parse("0.00001").unwrap())
        }
    );
    wait("the bought BTC less its fee", || {
        b.held("BTC") == n("0.00999")
    });
    assert_eq!(
        b.held("USDT"),
        n("10000") - px.notional(Qty::parse("0.01").unwrap())
    );
    assert_eq!(st.pricer.0.load(Ordering::Relaxed), 0);

    // A sell pays in USDT as it is.
    order(
        &rt,
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "MARKET"),
            ("quantity", "0.004"),
            ("newClientOrderId", "agMkt2"),
        ],
    );
    let f = update_of(&st.rx, "agMkt2", OrderStatus::Filled);
    assert_eq!((f.side, f.fee_asset.as_str()), (Side::Sell, "USDT"));
    assert_eq!(f.fee_conv, FeeConversion::Quote);
    assert_eq!(
        f.fee,
        Price::from_int(59999)
            .notional(Qty::parse("0.004").unwrap())
            .mul_rate(aegis_shared::num::Rate::from_units(100_000))
    );

    // BNB fees: the pricer values them; the admin's BNB deposit arrives as balanceUpdate + position.
    admin(&rt, &h, AdminCall::spot_bnb_fees(true));
    admin(
        &rt,
        &h,
        AdminCall::spot_balances("alice", json!({"BNB": "1"})),
    );
    wait("the BNB deposit", || b.held("BNB") == n("1"));
    order(
        &rt,
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "MARKET"),
            ("quantity", "0.005"),
            ("newClientOrderId", "agMkt3"),
        ],
    );
    let f = update_of(&st.rx, "agMkt3", OrderStatus::Filled);
    assert_eq!(f.fee_asset.as_str(), "BNB");
    assert_eq!(st.pricer.0.load(Ordering::Relaxed), 1);
    assert_eq!(
        f.fee_conv,
        FeeConversion::convert(f.fee, Price::from_int(600))
    );
    assert!(f.fee_conv.quote_fee(f.fee) > Notional::ZERO);
    wait("the BNB fee paid", || b.held("BNB") == n("1") - f.fee);

    // The stream's balances are the simulator's, asset by asset.
    let acct = rt.block_on(c.account()).unwrap();
    for e in acct["balances"].as_array().unwrap() {
        let a = e["asset"].as_str().unwrap();
        let want = (
            n(e["free"].as_str().unwrap()),
            n(e["locked"].as_str().unwrap()),
        );
        assert_eq!(b.get(a).unwrap_or_default(), want, "{a}");
    }
    assert!(b.updates() >= 5 && b.last_event_ms() > 0);
    let stats = &st.s.stats;
    assert_eq!(
        stats.updates.load(Ordering::Relaxed),
        8,
        "the limit's NEW and CANCELED, each market order's NEW and TRADE"
    );
    assert_eq!(stats.malformed.load(Ordering::Relaxed), 0);
    assert!(st.resyncs.lock().unwrap().is_empty());
    let t = Instant::now();
    st.s.stop();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "stop took {:?}",
        t.elapsed()
    );
    rt.block_on(h.shutdown());
}

#[test]
fn a_terminated_or_dropped_stream_subscribes_again_and_asks_for_reconciliation() {
    let rt = rt();
    let h = start_sim(&rt);
    // Ed25519 this time: the subscription is signed with the private key.
    let c = rest(&h, ED_KEY, ED_PRIVATE);
    let st = start_stream(&h, ED_KEY, ED_PRIVATE);
    let stats = st.s.stats.clone();
    let first_sub = stats.subscription_id.load(Ordering::Relaxed);

    let r = admin(&rt, &h, AdminCall::spot_terminate_streams("bob"));
    assert!(r["connections"].as_u64().unwrap() >= 1, "{r}");
    wait("the resubscription", || {
        stats.subscribes.load(Ordering::Relaxed) == 2 && !st.resyncs.lock().unwrap().is_empty()
    });
    assert_eq!(stats.terminations.load(Ordering::Relaxed), 1);
    assert_eq!(
        stats.connects.load(Ordering::Relaxed),
        1,
        "the same connection"
    );
    assert_ne!(stats.subscription_id.load(Ordering::Relaxed), first_sub);
    assert_eq!(*st.resyncs.lock().unwrap(), vec!["stream terminated"]);
    order(
        &rt,
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "MARKET"),
            ("quantity", "0.001"),
            ("newClientOrderId", "agAfterTerm"),
        ],
    );
    update_of(&st.rx, "agAfterTerm", OrderStatus::Filled);

    // The connection cut without a close frame: a new one, subscribed, reconciled.
    admin(&rt, &h, AdminCall::ws_drop("api"));
    wait("the reconnect", || {
        stats.reconnects.load(Ordering::Relaxed) == 1
    });
    assert_eq!(stats.connects.load(Ordering::Relaxed), 2);
    assert_eq!(
        *st.resyncs.lock().unwrap(),
        vec!["stream terminated", "reconnected"]
    );
    order(
        &rt,
        &c,
        &[
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "MARKET"),
            ("quantity", "0.0005"),
            ("newClientOrderId", "agAfterDrop"),
        ],
    );
    update_of(&st.rx, "agAfterDrop", OrderStatus::Filled);
    // Nothing told the engine to halt.
    while let Ok(m) = st.rx.try_recv() {
        assert!(matches!(m, Inbound::Update(_)), "{m:?}");
    }
    st.s.stop();
    rt.block_on(h.shutdown());
}

#[test]
fn a_refused_key_or_secret_fails_the_start_with_what_to_fix() {
    let rt = rt();
    let h = start_sim(&rt);
    let try_start = |key: &str, secret: &str| {
        let (cfg, _, _) = config(&h, key, secret);
        let t = Instant::now();
        let r = us::start(
            cfg,
            crossbeam_channel::unbounded().0,
            Arc::new(Balances::new()),
        );
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "refusals are not retried"
        );
        r.expect_err("refused")
    };
    let unknown = "unknownKEY000000000000000000000000000000000000000000000000000009";
    let e = try_start(unknown, SECRET);
    assert!(
        matches!(e, SpotStreamError::KeyRejected { code: -2015, .. }),
        "{e:?}"
    );
    let m = e.to_string();
    assert!(m.contains("whitelist") && m.contains("testnet"), "{m}");
    assert!(!m.contains(unknown) && !m.contains(SECRET), "{m}");

    let e = try_start(
        KEY,
        "wrongSECRET00000000000000000000000000000000000000000000000000001",
    );
    assert!(
        matches!(e, SpotStreamError::BadSignature { code: -1022, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("does not belong to this API key"),
        "{e}"
    );
    assert!(!e.to_string().contains("wrongSECRET"), "{e}");
    rt.block_on(h.shutdown());
}

#[test]
fn a_key_revoked_while_reconnecting_halts_the_engine_read_only() {
    let rt = rt();
    let h = start_sim(&rt);
    let st = start_stream(&h, KEY, SECRET);
    admin(&rt, &h, AdminCall::revoke_key(KEY));
    admin(&rt, &h, AdminCall::ws_drop("api"));
    let mut got = Vec::new();
    while got.len() < 3 {
        got.push(
            st.rx
                .recv_timeout(Duration::from_secs(5))
                .expect("the halt"),
        );
    }
    assert_eq!(
        got,
        vec![
            Inbound::ReadOnly,
            Inbound::Halt(aegis_shared::event::HaltReason::KeyRejected),
            Inbound::Alert(aegis_shared::event::AlertKind::KeyInvalid),
        ]
    );
    wait("the thread's end", || !st.s.is_running());
    assert_eq!(st.s.stats.reconnects.load(Ordering::Relaxed), 0);
    st.s.stop();
    rt.block_on(h.shutdown());
}

#[test]
fn wss_with_the_callers_tls_roots() {
    let rt = rt();
    let h = start_sim_tls(&rt, Some(sim::SimTls::SelfSigned));
    assert!(h.ws_url().starts_with("wss://"));
    let (mut cfg, _, _) = config(&h, ED_KEY, ED_PRIVATE);
    // The simulator's self-signed certificate is trusted by this config only (not by the process's roots).
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(h.ca_pem().unwrap().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.tls = Some(Arc::new(tls));
    let (tx, rx) = crossbeam_channel::unbounded();
    let s = us::start(cfg, tx, Arc::new(Balances::new())).expect("subscribed over wss");
    admin(
        &rt,
        &h,
        AdminCall::spot_balances("bob", json!({"ETH": "2.5"})),
    );
    wait("the balance over wss", || {
        s.balances.held("ETH") == n("2.5")
    });
    assert!(rx.try_recv().is_err());
    s.stop();
    rt.block_on(h.shutdown());
}
