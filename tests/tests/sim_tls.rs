//! The simulator with TLS on its one listener: HTTPS and WSS on the same port, trusted through the certificate
//! it exposes, refused by a client that does not trust it.

mod common;

use aegis_testkit::sim::{SimConfig, SimHandle, SimTls, SourceKind};
use common::*;
use std::sync::Arc;
use std::time::Duration;

/// A simulator with TLS and a moving market, so bookTicker flows without the admin API.
async fn tls_sim() -> SimHandle {
    bare_sim(SimConfig {
        source: SourceKind::RandomWalk,
        tick_ms: 20,
        tls: Some(SimTls::SelfSigned),
        ..SimConfig::default()
    })
    .await
}

fn trusted_http(h: &SimHandle) -> reqwest::Client {
    let pem = h.ca_pem().expect("TLS is on");
    let ca = reqwest::Certificate::from_pem(pem.as_bytes()).unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .build()
        .unwrap()
}

fn trusted_tls(h: &SimHandle) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let pem = h.ca_pem().expect("TLS is on");
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}

#[tokio::test]
async fn https_and_wss_on_one_port_with_the_simulators_certificate() {
    let h = tls_sim().await;
    assert_eq!(h.base_url(), format!("https://{}", h.addr));
    assert_eq!(h.ws_url(), format!("wss://{}", h.addr));
    let c = Client {
        http: trusted_http(&h),
        ..Client::alice(&h)
    };

    let t = c.public("/fapi/v1/time", "").await;
    assert_eq!(t.status, 200, "{}", t.body);
    let server = t.body["serverTime"].as_u64().expect("serverTime");
    assert!(server.abs_diff(now_ms()) < 5_000, "serverTime {server}");

    let a = c.account().await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["totalWalletBalance"], "10000.00000000", "{}", a.body);

    let url = format!("{}/ws/btcusdt@bookTicker", h.ws_url());
    let connector = tokio_tungstenite::Connector::Rustls(trusted_tls(&h));
    let (mut ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector))
            .await
            .expect("wss connects");
    let m = next_matching(&mut ws, Duration::from_secs(5), |v| v["e"] == "bookTicker").await;
    assert_eq!(m["s"], "BTCUSDT", "{m}");
    h.shutdown().await;
}

/// Whether `e` or anything under it is rustls refusing the server's certificate as from an unknown issuer (and
/// not, say, a connection the simulator never accepted).
fn unknown_issuer(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut at = Some(e);
    while let Some(x) = at {
        if matches!(
            x.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        ) {
            return true;
        }
        // io::Error's `source()` skips the error it wraps, so step into that one instead.
        at = match x.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|w| w as &(dyn std::error::Error + 'static)),
            None => x.source(),
        };
    }
    false
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_is_refused() {
    let h = tls_sim().await;
    // The public web roots only: the self-signed certificate is not among them.
    let http = reqwest::Client::builder().use_rustls_tls().build().unwrap();
    let e = http
        .get(format!("{}/fapi/v1/time", h.base_url()))
        .send()
        .await
        .expect_err("an untrusted certificate must fail the handshake");
    assert!(unknown_issuer(&e), "{e:?}");

    let url = format!("{}/ws/btcusdt@bookTicker", h.ws_url());
    let e = tokio_tungstenite::connect_async(url)
        .await
        .expect_err("an untrusted certificate must fail the wss handshake");
    assert!(unknown_issuer(&e), "{e:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_given_certificate_and_key_are_served_and_shutdown_closes_the_port() {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let h = bare_sim(SimConfig {
        source: SourceKind::Frozen,
        tls: Some(SimTls::Pem {
            cert: ck.cert.pem(),
            key: ck.key_pair.serialize_pem(),
        }),
        ..SimConfig::default()
    })
    .await;
    assert_eq!(h.ca_pem(), Some(ck.cert.pem().as_str()));
    let c = Client {
        http: trusted_http(&h),
        ..Client::alice(&h)
    };
    let r = c.public("/fapi/v1/ping", "").await;
    assert_eq!((r.status, &r.body), (200, &serde_json::json!({})));
    let addr = h.addr;
    tokio::time::timeout(Duration::from_secs(5), h.shutdown())
        .await
        .expect("graceful shutdown finishes");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
