//! The API's TLS identity: the configured certificate, or a self-signed one generated once into `DATA_DIR/tls/`.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// TLS failures.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// File system error.
    #[error("TLS {path}: {op}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The PEM data holds no usable certificate or key.
    #[error("TLS {path}: {what}; use a PEM file (TLS_CERT_PATH: certificate chain, TLS_KEY_PATH: PKCS#8/PKCS#1/SEC1 key)")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is missing.
        what: &'static str,
    },
    /// Certificate generation failed.
    #[error("TLS: cannot generate a self-signed certificate: {0}")]
    Generate(String),
    /// rustls refused the certificate/key pair.
    #[error("TLS: certificate and key do not work together: {0}")]
    Rustls(String),
}

/// Where the certificate came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// `TLS_CERT_PATH`/`TLS_KEY_PATH`.
    Configured,
    /// Generated now.
    Generated,
    /// Generated on an earlier start and reused.
    Reused,
}

/// A certificate chain and key, ready for rustls.
#[derive(Debug)]
pub struct TlsIdentity {
    /// Certificate chain (leaf first), DER.
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf certificate, `AB:CD:…` (what `openssl x509 -fingerprint -sha256` prints).
    pub fingerprint: String,
    /// Where it came from.
    pub source: CertSource,
    /// The certificate file.
    pub cert_path: PathBuf,
}

/// SHA-256 fingerprint of a DER certificate, upper-case hex pairs joined by colons.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> TlsError + 'a {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Loads `cert`/`key` when both are configured, otherwise reuses or creates `data_dir/tls/{cert,key}.pem`.
pub fn load_or_generate(
    configured: Option<(&Path, &Path)>,
    data_dir: &Path,
) -> Result<TlsIdentity, TlsError> {
    let (cert_path, key_path, source) = match configured {
        Some((c, k)) => (c.to_path_buf(), k.to_path_buf(), CertSource::Configured),
        None => {
            let dir = data_dir.join("tls");
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io(&dir, "create directory"))?;
            let c = dir.join("cert.pem");
            let k = dir.join("key.pem");
            let source = if c.exists() && k.exists() {
                CertSource::Reused
            } else {
                generate(&c, &k)?;
                CertSource::Generated
            };
            (c, k, source)
        }
    };
    if source != CertSource::Configured {
        // The generated key must stay owner-only even if someone loosened it.
        if let Ok(m) = fs::metadata(&key_path) {
            if m.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %key_path.display(), "TLS key was readable by others; restoring mode 600");
                let _ = fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600));
            }
        }
    }
    let cert_pem = fs::read(&cert_path).map_err(io(&cert_path, "read certificate"))?;
    let key_pem = fs::read(&key_path).map_err(io(&key_path, "read key"))?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::Pem {
            path: cert_path.clone(),
            what: "unreadable certificate PEM",
        })?;
    let leaf = chain.first().ok_or_else(|| TlsError::Pem {
        path: cert_path.clone(),
        what: "no certificate found",
    })?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::Pem {
            path: key_path.clone(),
            what: "no private key found",
        })?;
    Ok(TlsIdentity {
        fingerprint: fingerprint(leaf),
        chain,
        key,
        source,
        cert_path,
    })
}

fn generate(cert: &Path, key: &Path) -> Result<(), TlsError> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let ck =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    // Key first, created owner-only from the start (never world-readable, not even briefly).
    let _ = fs::remove_file(key);
    let mut kf = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(key)
        .map_err(io(key, "create key"))?;
    kf.write_all(ck.key_pair.serialize_pem().as_bytes())
        .and_then(|_| kf.sync_all())
        .map_err(io(key, "write key"))?;
    let tmp = cert.with_extension("pem.tmp");
    fs::write(&tmp, ck.cert.pem()).map_err(io(&tmp, "write certificate"))?;
    fs::rename(&tmp, cert).map_err(io(cert, "rename certificate"))?;
    Ok(())
}

impl TlsIdentity {
    /// A rustls server config on the `ring` provider, offering HTTP/2 and HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::test_support::temp_dir;

    #[test]
    fn generates_once_with_private_key_and_reuses() {
        let d = temp_dir("tls");
        let a = load_or_generate(None, &d).unwrap();
        assert_eq!(a.source, CertSource::Generated);
        let mode = fs::metadata(d.join("tls/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        let b = load_or_generate(None, &d).unwrap();
        assert_eq!(b.source, CertSource::Reused);
        assert_eq!(a.fingerprint, b.fingerprint);
        b.server_config().unwrap();
        // Configured paths are used as given.
        let c =
            load_or_generate(Some((&d.join("tls/cert.pem"), &d.join("tls/key.pem"))), &d).unwrap();
        assert_eq!(c.source, CertSource::Configured);
        assert_eq!(c.fingerprint, a.fingerprint);
        // A bad file gives a clear error.
        fs::write(d.join("bad.pem"), "nope").unwrap();
        assert!(matches!(
            load_or_generate(Some((&d.join("bad.pem"), &d.join("tls/key.pem"))), &d),
            Err(TlsError::Pem { .. })
        ));
    }
}
