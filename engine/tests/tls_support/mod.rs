//! Test TLS configs shared by the `mio_ws` unit tests (included there with `#[path]`, since integration tests
//! cannot reach `#[cfg(test)]` items and unit tests cannot reach `tests/`) and the `wss://` zero-allocation test.

use std::sync::Arc;

/// A server config for "localhost" (rcgen's self-signed ECDSA P-256 certificate) restricted to one protocol
/// version and, when given, one cipher suite (else ring's defaults); and a client config trusting that
/// certificate.
pub fn tls_pair(
    suite: Option<rustls::SupportedCipherSuite>,
    version: &'static rustls::SupportedProtocolVersion,
) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.key_pair.serialize_der(),
    ));
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(s) = suite {
        provider.cipher_suites = vec![s];
    }
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}
