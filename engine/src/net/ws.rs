//! A blocking WebSocket client over plain TCP (`ws://`, the simulator) or rustls (`wss://`, Binance).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tungstenite::http::Uri;

/// Why a connection failed. Messages carry the URL's host and path, never credentials (none are in URLs
/// except a listenKey, which the caller redacts by passing [`redact`]ed URLs to logs).
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The URL is not `ws://` or `wss://` with a host.
    #[error("bad WebSocket URL {0:?}: expected ws://host[:port]/path or wss://host[:port]/path")]
    BadUrl(String),
    /// DNS or TCP failure.
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Cause.
        source: std::io::Error,
    },
    /// TLS setup failure.
    #[error("TLS: {0}")]
    Tls(String),
    /// WebSocket handshake or protocol failure.
    #[error("WebSocket: {0}")]
    Ws(String),
}

/// A TCP or TLS stream.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(t) => &t.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(t) => t.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(t) => t.flush(),
        }
    }
}

/// A connected WebSocket.
pub type Ws = tungstenite::WebSocket<Stream>;

/// The exchange connections' client config, built once per process (by [`set_extra_roots`] or on first use).
static CFG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

fn build_config(
    extra: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<rustls::ClientConfig, NetError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for c in extra {
        roots
            .add(c.clone())
            .map_err(|e| NetError::Tls(format!("extra CA certificate rejected: {e}")))?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| NetError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Trusts the certificates in `pem` in addition to the webpki roots, for every later `wss://` connection of this
/// process (a simulator or test endpoint). Call once at start, before any connection: the config is fixed on
/// first use so all connections agree, and a second call is refused rather than silently ignored.
pub fn set_extra_roots(pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, NetError> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NetError::Tls(format!("extra CA file is not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(NetError::Tls(
            "extra CA file holds no PEM certificate".into(),
        ));
    }
    let cfg = Arc::new(build_config(&certs)?);
    CFG.set(cfg.clone())
        .map_err(|_| NetError::Tls("TLS roots already fixed for this process".into()))?;
    Ok(cfg)
}

/// The client config every exchange `wss://` connection uses: webpki roots plus any [`set_extra_roots`].
pub fn tls_config() -> Result<Arc<rustls::ClientConfig>, NetError> {
    if let Some(c) = CFG.get() {
        return Ok(c.clone());
    }
    let cfg = build_config(&[])?;
    Ok(CFG.get_or_init(|| Arc::new(cfg)).clone())
}

/// The URL without its query string (a user-data URL's query holds the listenKey): safe to log.
pub fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// Connects and performs the WebSocket handshake. `timeout` bounds the TCP connect and each handshake read or
/// write; afterwards the socket has no read timeout (see [`set_read_timeout`]).
pub fn connect(url: &str, timeout: Duration) -> Result<Ws, NetError> {
    connect_with(url, timeout, None)
}

/// [`connect`] with the TLS settings of `tls` for `wss://` (`None`: [`tls_config`], the process's roots).
pub fn connect_with(
    url: &str,
    timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Ws, NetError> {
    let tls_cfg = tls;
    let uri: Uri = url
        .parse()
        .map_err(|_| NetError::BadUrl(redact(url).to_string()))?;
    let tls = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => return Err(NetError::BadUrl(redact(url).to_string())),
    };
    let host = uri
        .host()
        .ok_or_else(|| NetError::BadUrl(redact(url).to_string()))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let cerr = |source| NetError::Connect {
        host: host.clone(),
        port,
        source,
    };
    let addrs: Vec<_> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(cerr)?
        .collect();
    let mut last = None;
    let mut tcp = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = tcp.ok_or_else(|| {
        cerr(last.unwrap_or_else(|| std::io::Error::other("no address for host")))
    })?;
    let _ = tcp.set_nodelay(true);
    tcp.set_read_timeout(Some(timeout)).map_err(cerr)?;
    tcp.set_write_timeout(Some(timeout)).map_err(cerr)?;
    let stream = if tls {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| NetError::Tls(e.to_string()))?;
        let cfg = match tls_cfg {
            Some(c) => c,
            None => tls_config()?,
        };
        let conn =
            rustls::ClientConnection::new(cfg, name).map_err(|e| NetError::Tls(e.to_string()))?;
        Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
    } else {
        Stream::Plain(tcp)
    };
    let (ws, _resp) = tungstenite::client::client(url, stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => NetError::Ws(e.to_string()),
        tungstenite::HandshakeError::Interrupted(_) => NetError::Ws("handshake timed out".into()),
    })?;
    Ok(ws)
}

/// Sets the read timeout of the socket under `ws` (`None` = block).
pub fn set_read_timeout(ws: &Ws, d: Option<Duration>) -> std::io::Result<()> {
    ws.get_ref().tcp().set_read_timeout(d)
}

/// Makes the socket under `ws` non-blocking: reads and writes return `WouldBlock` (see [`is_timeout`]) instead
/// of waiting, and tungstenite keeps a frame it could not write yet for its next read or flush.
pub fn set_nonblocking(ws: &Ws) -> std::io::Result<()> {
    ws.get_ref().tcp().set_nonblocking(true)
}

/// True for the error a read timeout produces (no data yet), as opposed to a broken connection.
pub fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_roots_refuse_a_file_without_a_certificate() {
        // A bad file must fail at start, not leave the roots fixed without the CA the operator meant to add.
        for junk in [
            &b""[..],
            b"not a certificate",
            b"-----BEGIN CERTIFICATE-----\n%%%\n",
        ] {
            assert!(matches!(set_extra_roots(junk), Err(NetError::Tls(_))));
        }
    }
}
