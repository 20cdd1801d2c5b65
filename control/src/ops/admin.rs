//! Incident commands (guide §7): `aegis halt`, `aegis resume`, `aegis kill [--flatten]` talking to the running
//! bot over its local HTTPS API, and `POST /api/local/keys/reload` (the running bot switches to the key in
//! `.env`, see [`super::keyreload`]; `aegis keys rotate` calls it).
//!
//! Two ways to authenticate, tried in this order:
//! 1. **Dashboard admin** (`AEGIS_ADMIN_USER`, password from `AEGIS_ADMIN_PASSWORD` or a prompt without echo):
//!    `POST /api/auth/login` (bearer) then `POST /api/control/{halt,resume,kill}` — audited by the dashboard with
//!    the user's name. Works whenever the dashboard with `AUTH_ENABLED=true` is mounted.
//! 2. **Local admin token**: on every start the bot writes 32 random bytes (hex) to `DATA_DIR/admin.token`, mode
//!    600, and accepts them as `Authorization: Bearer` on `POST /api/local/{halt,resume,kill}`. Only a user who can
//!    read the bot's data directory (the bot's own user, root) can use it — the same trust as reading the journal
//!    or sending the process a signal. These endpoints also refuse any caller that is not a loopback peer or that
//!    comes through a proxy (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`), even when the API binds wider.
//!
//! The client pins the bot's certificate: the SHA-256 of `DATA_DIR/tls/cert.pem` (or `TLS_CERT_PATH`) must equal
//! the certificate the server presents, so no CA is trusted and nothing else on the host can impersonate the bot.
//! The command is journaled by the pump (source `cli:local-token` or the dashboard's `api:<user>`) before the
//! engine sees it.

use crate::pump::Issued;
use aegis_shared::{Command, Secret};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use crossbeam_channel::Sender;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The local admin token's file name in `DATA_DIR`.
pub const TOKEN_FILE: &str = "admin.token";
/// Where the local admin endpoints live.
pub const LOCAL_PREFIX: &str = "/api/local";

/// `aegis halt` exit code when no bot is running: the connection to the configured API port is refused. Kept apart
/// from 1 (a bot answered and refused, or the outcome is unknown) because only this case lets deploy/restore.sh
/// go on without a halt.
pub const EXIT_NOT_RUNNING: u8 = 3;

/// The token file's path.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// Creates a fresh token (replacing any old one) in `DATA_DIR/admin.token`, mode 600.
pub fn create_token(data_dir: &Path) -> std::io::Result<Secret<String>> {
    std::fs::create_dir_all(data_dir)?;
    let bytes: [u8; 32] = rand::random();
    let token = hex::encode(bytes);
    super::write_private_atomic(&token_path(data_dir), token.as_bytes())?;
    Ok(Secret::new(token))
}

/// Reads the token; refuses one that others could read (it would no longer prove anything).
pub fn read_token(data_dir: &Path) -> Result<Secret<String>, String> {
    use std::os::unix::fs::PermissionsExt;
    let p = token_path(data_dir);
    let meta = std::fs::metadata(&p).map_err(|e| {
        format!(
            "cannot read {} ({}): is the bot running with this DATA_DIR, and are you its user?",
            p.display(),
            e.kind()
        )
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} is readable by group or others: refusing to use it; restart the bot to get a fresh one",
            p.display()
        ));
    }
    let t = std::fs::read_to_string(&p)
        .map_err(|e| format!("cannot read {}: {}", p.display(), e.kind()))?;
    Ok(Secret::new(t.trim().to_string()))
}

#[derive(Clone)]
struct LocalState {
    token: Arc<Secret<String>>,
    commands: Sender<Issued>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    #[serde(default)]
    flatten: bool,
    #[serde(default)]
    reason: Option<String>,
}

fn authorised(s: &LocalState, headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, tok)) = v.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && super::ct_eq(tok.trim().as_bytes(), s.token.expose().as_bytes())
}

/// The local endpoints answer local callers only: a loopback peer, and no proxy in between (a reverse proxy on
/// the same host is a loopback peer too, so forwarded requests are refused by their headers).
fn local_only(peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
    let proxied = ["x-forwarded-for", "forwarded", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h));
    !proxied && peer.is_none_or(|p| p.ip().is_loopback())
}

fn issue(
    s: &LocalState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    body: &[u8],
    which: &str,
) -> Response {
    if !local_only(peer, headers) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "local admin endpoints answer local, unproxied callers only"})),
        )
            .into_response();
    }
    if !authorised(s, headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "missing or wrong local admin token"})),
        )
            .into_response();
    }
    let b: Body =
        if body.is_empty() {
            Body::default()
        } else {
            match serde_json::from_slice(body) {
                Ok(b) => b,
                Err(_) => return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "body must be {\"flatten\": bool, \"reason\": string}"})),
                )
                    .into_response(),
            }
        };
    let command = match which {
        "halt" => Command::Halt,
        "resume" => Command::Resume,
        _ => Command::Kill { flatten: b.flatten },
    };
    let reason: String = b
        .reason
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect();
    tracing::warn!(command = ?command, reason = %reason, "operator command from the local admin token");
    match s.commands.try_send(Issued {
        command,
        source: "cli:local-token".into(),
    }) {
        Ok(()) => Json(json!({"ok": true, "command": command})).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "engine command queue full or closed"})),
        )
            .into_response(),
    }
}

/// `POST /api/local/keys/reload`: same guards as the incident commands, then [`super::keyreload::reload`].
async fn keys_reload(s: &LocalState, rq: axum::extract::Request) -> Response {
    let (parts, _) = rq.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if !local_only(peer, &parts.headers) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "local admin endpoints answer local, unproxied callers only"})),
        )
            .into_response();
    }
    if !authorised(s, &parts.headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "missing or wrong local admin token"})),
        )
            .into_response();
    }
    match super::keyreload::reload("cli:local-token").await {
        Ok(v) => Json(v).into_response(),
        Err((code, msg)) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Json(json!({"error": msg})),
        )
            .into_response(),
    }
}

async fn handle(s: &LocalState, rq: axum::extract::Request, which: &str) -> Response {
    let (parts, body) = rq.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    // Small JSON bodies only.
    let Ok(bytes) = axum::body::to_bytes(body, 4096).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({"error": "body too large"})),
        )
            .into_response();
    };
    issue(s, peer, &parts.headers, &bytes, which)
}

/// `POST /api/local/{halt,resume,kill}` guarded by the local admin token; commands go to the pump (journaled,
/// then forwarded to the engine).
pub fn routes(token: Secret<String>, commands: Sender<Issued>) -> Router {
    let st = LocalState {
        token: Arc::new(token),
        commands,
    };
    Router::new()
        .route(
            "/api/local/halt",
            post(
                |State(s): State<LocalState>, rq: axum::extract::Request| async move {
                    handle(&s, rq, "halt").await
                },
            ),
        )
        .route(
            "/api/local/resume",
            post(
                |State(s): State<LocalState>, rq: axum::extract::Request| async move {
                    handle(&s, rq, "resume").await
                },
            ),
        )
        .route(
            "/api/local/keys/reload",
            post(
                |State(s): State<LocalState>, rq: axum::extract::Request| async move {
                    keys_reload(&s, rq).await
                },
            ),
        )
        .route(
            "/api/local/kill",
            post(
                |State(s): State<LocalState>, rq: axum::extract::Request| async move {
                    handle(&s, rq, "kill").await
                },
            ),
        )
        .with_state(st)
}

// ---------------------------------------------------------------------------------------------------------------
// Client side.

#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if crate::tls::fingerprint(end_entity) == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the bot's certificate does not match the pinned fingerprint".into(),
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// SHA-256 fingerprint of the first certificate in a PEM file.
pub fn cert_fingerprint(pem_path: &Path) -> Result<String, String> {
    let pem = std::fs::read(pem_path).map_err(|e| {
        format!(
            "cannot read the bot's certificate {} ({}): start the bot once, or set TLS_CERT_PATH",
            pem_path.display(),
            e.kind()
        )
    })?;
    let der = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .and_then(|r| r.ok())
        .ok_or_else(|| format!("{} holds no certificate", pem_path.display()))?;
    Ok(crate::tls::fingerprint(&der))
}

/// An HTTPS client that accepts exactly the certificate with `fingerprint`.
pub fn pinned_client(fingerprint: &str) -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            fingerprint: fingerprint.to_string(),
            provider,
        }))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("HTTPS client: {}", e.without_url()))
}

/// How to prove the caller is an admin.
pub enum Credential {
    /// `DATA_DIR/admin.token`.
    LocalToken(Secret<String>),
    /// A dashboard admin account.
    User {
        /// User name.
        user: String,
        /// Password.
        password: Secret<String>,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LocalToken(_) => f.write_str("LocalToken(***)"),
            Self::User { user, .. } => write!(f, "User({user}, ***)"),
        }
    }
}

/// An incident command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop new entries.
    Halt,
    /// Undo a halt.
    Resume,
    /// Kill switch (optionally flatten).
    Kill {
        /// Close every position too.
        flatten: bool,
    },
}

impl Action {
    fn path(self) -> &'static str {
        match self {
            Self::Halt => "halt",
            Self::Resume => "resume",
            Self::Kill { .. } => "kill",
        }
    }
    fn body(self, reason: &str) -> Value {
        match self {
            Self::Kill { flatten } => json!({"flatten": flatten, "reason": reason}),
            _ => json!({"reason": reason}),
        }
    }
}

async fn post_json(
    c: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: &Value,
) -> Result<(u16, Value), String> {
    let mut rq = c.post(url).json(body);
    if let Some(t) = bearer {
        rq = rq.bearer_auth(t);
    }
    let r = rq.send().await.map_err(|e| {
        let e = e.without_url();
        format!("cannot reach the bot: {e}; is `aegis run` running on this API_PORT? ({e:?})")
            .replace("\n", " ")
    })?;
    let code = r.status().as_u16();
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    Ok((code, v))
}

/// Sends `action` to the bot at `base` (`https://127.0.0.1:PORT`). Returns the bot's JSON answer.
pub async fn send(
    c: &reqwest::Client,
    base: &str,
    cred: &Credential,
    action: Action,
    reason: &str,
) -> Result<Value, String> {
    let (url, bearer) = match cred {
        Credential::LocalToken(t) => (
            format!("{base}{LOCAL_PREFIX}/{}", action.path()),
            t.expose().clone(),
        ),
        Credential::User { user, password } => {
            let (code, v) = post_json(
                c,
                &format!("{base}/api/auth/login"),
                None,
                &json!({"username": user, "password": password.expose(), "bearer": true}),
            )
            .await?;
            let token = match (code, v.get("token").and_then(|t| t.as_str())) {
                (200, Some(t)) => t.to_string(),
                (404, _) => {
                    return Err("the bot serves no dashboard login (/api/auth/login not found): unset AEGIS_ADMIN_USER to use the local admin token".into())
                }
                (409, _) => {
                    return Err("the dashboard's authentication is off (AUTH_ENABLED=false): unset AEGIS_ADMIN_USER to use the local admin token".into())
                }
                _ => {
                    return Err(format!(
                        "login as {user} refused (HTTP {code}): {}",
                        v.get("error").and_then(|e| e.as_str()).unwrap_or("no reason given")
                    ))
                }
            };
            (format!("{base}/api/control/{}", action.path()), token)
        }
    };
    let (code, v) = post_json(c, &url, Some(&bearer), &action.body(reason)).await?;
    if code == 200 {
        Ok(v)
    } else {
        Err(format!(
            "the bot refused {} (HTTP {code}): {}",
            action.path(),
            v.get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("no reason given")
        ))
    }
}

/// True only when connecting to `base` (`https://HOST:PORT`, HOST an IP literal) is refused, i.e. provably nobody
/// listens there. A timeout or an unreachable host proves nothing (a firewall, a hung bot) and gives false.
pub fn nobody_listens(base: &str) -> bool {
    use std::net::{TcpStream, ToSocketAddrs};
    let Some(addr) = base
        .strip_prefix("https://")
        .and_then(|hp| hp.to_socket_addrs().ok())
        .and_then(|mut a| a.next())
    else {
        return false;
    };
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// Asks the running bot to re-read its key from `.env` and switch to it (`POST /api/local/keys/reload` with the
/// local admin token). `Ok(None)`: no bot answers at `base` (not running). `Err`: the bot refused or failed.
pub async fn reload_keys(
    c: &reqwest::Client,
    base: &str,
    token: &Secret<String>,
) -> Result<Option<Value>, String> {
    let r = match c
        .post(format!("{base}{LOCAL_PREFIX}/keys/reload"))
        .bearer_auth(token.expose())
        .timeout(Duration::from_secs(60))
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Ok(None),
        Err(e) => {
            return Err(format!(
                "the bot did not answer the key reload: {}",
                e.without_url()
            ))
        }
    };
    let code = r.status().as_u16();
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    if code == 200 {
        Ok(Some(v))
    } else {
        Err(format!(
            "the running bot refused the new key (HTTP {code}): {}",
            v.get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("no reason given")
        ))
    }
}

/// Reads a password from the terminal without echo (stdin must be a terminal).
pub fn prompt_password(prompt: &str) -> Result<Secret<String>, String> {
    use std::io::{BufRead, Write};
    // SAFETY: isatty on fd 0 only inspects it.
    if unsafe { libc::isatty(0) } != 1 {
        return Err("no terminal to ask for the password: set AEGIS_ADMIN_PASSWORD".into());
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    // SAFETY: termios is plain data; tcgetattr fills it, tcsetattr restores it below.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    let have = unsafe { libc::tcgetattr(0, &mut term) } == 0;
    if have {
        let mut quiet = term;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: valid termios for fd 0.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let r = std::io::stdin().lock().read_line(&mut line);
    if have {
        // SAFETY: restores the saved settings.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &term) };
    }
    eprintln!();
    r.map_err(|e| format!("cannot read the password: {}", e.kind()))?;
    Ok(Secret::new(line.trim_end_matches(['\r', '\n']).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn call(
        app: &Router,
        path: &str,
        token: &str,
        peer: &str,
        extra: Option<(&str, &str)>,
    ) -> (u16, Value) {
        let mut rq = Request::post(path).header("authorization", format!("Bearer {token}"));
        if let Some((k, v)) = extra {
            rq = rq.header(k, v);
        }
        let mut rq = rq
            .header("content-type", "application/json")
            .body(Body::from(r#"{"flatten":true,"reason":"t"}"#))
            .unwrap();
        rq.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        let r = app.clone().oneshot(rq).await.unwrap();
        let code = r.status().as_u16();
        let b = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (code, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    /// Every local route has the same two guards: a token that is not ours (401), a caller off loopback (403).
    async fn refuses_wrong_token_and_remote_peer(app: &Router, path: &str, token: &str) {
        let (c, v) = call(app, path, &"0".repeat(64), "127.0.0.1:5000", None).await;
        assert_eq!(c, 401, "{path}: {v}");
        let (c, v) = call(app, path, token, "10.1.2.3:5000", None).await;
        assert_eq!(c, 403, "{path}: {v}");
    }

    #[test]
    fn token_loopback_and_no_proxy_required() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let d = crate::journal::test_support::temp_dir("admintok");
            let tok = create_token(&d).unwrap();
            assert_eq!(read_token(&d).unwrap().expose(), tok.expose());
            let (tx, rx) = crossbeam_channel::bounded(8);
            let app = routes(tok.clone(), tx);
            let t = tok.expose().clone();
            let (c, v) = call(&app, "/api/local/kill", &t, "127.0.0.1:5000", None).await;
            assert_eq!(c, 200, "{v}");
            let got = rx.try_recv().unwrap();
            assert_eq!(got.command, Command::Kill { flatten: true });
            assert_eq!(got.source, "cli:local-token");
            refuses_wrong_token_and_remote_peer(&app, "/api/local/halt", &t).await;
            assert_eq!(
                call(
                    &app,
                    "/api/local/halt",
                    &t,
                    "127.0.0.1:5000",
                    Some(("x-forwarded-for", "1.2.3.4"))
                )
                .await
                .0,
                403
            );
            assert!(rx.try_recv().is_err(), "a refused call reached the engine");
            // The key reload has the same guards, and without a live exchange session it says so.
            refuses_wrong_token_and_remote_peer(&app, "/api/local/keys/reload", &t).await;
            let (c, v) = call(&app, "/api/local/keys/reload", &t, "127.0.0.1:5000", None).await;
            assert_eq!(c, 409, "{v}");
            assert!(v["error"]
                .as_str()
                .unwrap()
                .contains("no live exchange session"));
            // A token others can read is not used.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(token_path(&d), std::fs::Permissions::from_mode(0o644))
                .unwrap();
            assert!(read_token(&d).is_err());
        });
    }

    /// Only a refused connection means "no bot": a listener, or an address that is not ours to parse, does not.
    #[test]
    fn nobody_listens_only_when_the_port_refuses() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("https://{}", l.local_addr().unwrap());
        assert!(!nobody_listens(&base));
        drop(l);
        assert!(nobody_listens(&base));
        assert!(!nobody_listens("http://127.0.0.1:1"));
        assert!(!nobody_listens("https://not an address"));
    }
}
