//! Shared by the `e2e_*` tests that run the real `aegis` binary: temp dirs, free ports, starting the bot with its
//! environment, polling health/status over HTTPS with certificate pinning, SIGTERM/SIGKILL, and its output.
//! Each test file picks its differences (base environment, shutdown budget, client timeout, pinning) in a
//! [`Launcher`].
// Every test binary compiles this module on its own and uses only part of it, so the rest would warn as unused.
#![allow(dead_code)]

use aegis_control::journal;
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The simulated market at full speed: trades within seconds.
pub const FAST: [(&str, &str); 2] = [("SIM_RATE", "20000"), ("SIM_SPEED", "3000")];

static SERIAL: Mutex<()> = Mutex::new(());

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs one bot test at a time, each on its own runtime: the engine busy-polls a core, so two bots at once on a
/// 2-core machine would only measure each other.
pub fn serial<F: std::future::Future<Output = ()>>(f: F) {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    rt().block_on(f)
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "aegis-e2e-{tag}-{}-{}",
        std::process::id(),
        journal::now_ms()
    ));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A finished command's stdout then stderr, for assertions and their messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One line of real market data for a symbol the bot does not trade: a restart on it replays the journal and
/// serves the API without any new trade, so nothing but the journal decides the state it shows.
pub fn quiet_feed(dir: &Path) -> PathBuf {
    let p = dir.join("quiet.jsonl");
    fs::write(
        &p,
        "{\"stream\":\"xrpusdt@aggTrade\",\"data\":{\"e\":\"aggTrade\",\"E\":1570752000000,\"s\":\"XRPUSDT\",\"a\":1,\"p\":\"0.25000000\",\"q\":\"10\",\"f\":1,\"l\":1,\"T\":1570752000000,\"m\":true}}\n",
    )
    .unwrap();
    p
}

/// What differs between the test files: how the bot is started, stopped and talked to.
pub struct Launcher {
    /// Set after PATH, DATA_DIR and API_PORT and before each start's own environment (which wins).
    pub env: &'static [(&'static str, &'static str)],
    /// How long to wait for the exit after SIGTERM.
    pub stop_wait: Duration,
    /// If set, a clean stop must also take less than this.
    pub stop_budget: Option<Duration>,
    pub client_timeout: Duration,
    /// Compare every response's peer certificate with the one the bot wrote to DATA_DIR.
    pub pin_cert: bool,
}

impl Launcher {
    /// Starts the binary in `dir` with a clean environment; stdout/stderr go to `dir/{stdout,stderr}-{run}.txt`.
    pub fn start(
        &self,
        dir: &Path,
        port: u16,
        run: u32,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Bot {
        let out = fs::File::create(dir.join(format!("stdout-{run}.txt"))).unwrap();
        let err = fs::File::create(dir.join(format!("stderr-{run}.txt"))).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aegis"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATA_DIR", dir.join("data"))
            .env("API_PORT", port.to_string())
            .current_dir(dir)
            .arg("--env-file")
            .arg(dir.join(".env"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in self.env.iter().chain(env) {
            cmd.env(k, v);
        }
        Bot {
            child: cmd.spawn().unwrap(),
            dir: dir.to_path_buf(),
            port,
            run,
            stop_wait: self.stop_wait,
            stop_budget: self.stop_budget,
            pin_cert: self.pin_cert,
        }
    }

    /// Starts a bot that must exit by itself (bad config): its exit code, stdout and stderr.
    pub fn run_expect_exit(
        &self,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> (Option<i32>, String, String) {
        let port = free_port();
        let mut bot = self.start(dir, port, 1, env, &[]);
        let s = bot.wait(Duration::from_secs(10)).expect("bot did not exit");
        (s.code(), bot.stdout(), bot.stderr())
    }

    pub fn client(&self) -> reqwest::Client {
        // The certificate is self-signed: with pinning, instead of trusting any, every response's peer
        // certificate is compared with the one the bot wrote to DATA_DIR.
        reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .tls_info(self.pin_cert)
            .timeout(self.client_timeout)
            .build()
            .unwrap()
    }
}

pub struct Bot {
    pub child: Child,
    pub dir: PathBuf,
    pub port: u16,
    pub run: u32,
    stop_wait: Duration,
    stop_budget: Option<Duration>,
    pin_cert: bool,
}

impl Bot {
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(self.dir.join(format!("stdout-{}.txt", self.run))).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join(format!("stderr-{}.txt", self.run))).unwrap_or_default()
    }

    pub fn output(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr())
    }

    /// SIGTERM, and the exit must be clean (code 0), within the launcher's budget if it has one.
    pub fn stop_cleanly(&mut self) -> Duration {
        let t = Instant::now();
        self.signal(libc::SIGTERM);
        let s = self.wait(self.stop_wait).expect("no exit after SIGTERM");
        let took = t.elapsed();
        if let Some(budget) = self.stop_budget {
            assert!(took < budget, "shutdown took {took:?}");
        }
        assert_eq!(s.code(), Some(0), "{}", self.output());
        took
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The fingerprint of the certificate the bot wrote to `dir/data/tls/cert.pem`.
pub fn pinned_fingerprint(dir: &Path) -> String {
    let pem = fs::read(dir.join("data/tls/cert.pem")).unwrap();
    let der = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .unwrap()
        .unwrap();
    aegis_control::tls::fingerprint(&der)
}

fn check_pin(r: &reqwest::Response, bot: &Bot) {
    let der = r
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate().map(|d| d.to_vec()))
        .expect("no peer certificate");
    assert_eq!(
        aegis_control::tls::fingerprint(&der),
        pinned_fingerprint(&bot.dir),
        "certificate pin mismatch"
    );
}

/// GET over HTTPS; `None` while the server is not up (or the body is not JSON). Checks the certificate pin if
/// the launcher asked for it.
pub async fn get(
    c: &reqwest::Client,
    bot: &Bot,
    path: &str,
    token: Option<&str>,
) -> Option<(u16, Value)> {
    let mut rq = c.get(bot.url(path));
    if let Some(t) = token {
        rq = rq.bearer_auth(t);
    }
    let r = rq.send().await.ok()?;
    if bot.pin_cert {
        check_pin(&r, bot);
    }
    let code = r.status().as_u16();
    Some((code, r.json().await.ok()?))
}

/// POST `body` as JSON, with a bearer token if given: the status and the body's text (for assertion messages).
pub async fn post(
    c: &reqwest::Client,
    bot: &Bot,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> (u16, String) {
    let mut rq = c.post(bot.url(path)).json(body);
    if let Some(t) = token {
        rq = rq.bearer_auth(t);
    }
    let r = rq.send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.text().await.unwrap_or_default())
}

/// Registers an account, which must be accepted (201); the first one on a fresh bot becomes its admin.
pub async fn register(c: &reqwest::Client, bot: &Bot, (user, password): (&str, &str)) {
    let (code, body) = post(
        c,
        bot,
        "/api/auth/register",
        None,
        &json!({"username": user, "password": password}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
}

/// Logs in asking for a bearer token: the status, and the token when the answer has one.
pub async fn login(
    c: &reqwest::Client,
    bot: &Bot,
    (user, password): (&str, &str),
) -> (u16, Option<String>) {
    let (code, body) = post(
        c,
        bot,
        "/api/auth/login",
        None,
        &json!({"username": user, "password": password, "bearer": true}),
    )
    .await;
    let token = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_string));
    (code, token)
}

/// A [`login`] that must succeed: the bearer token.
pub async fn bearer_token(c: &reqwest::Client, bot: &Bot, account: (&str, &str)) -> String {
    let (code, token) = login(c, bot, account).await;
    assert_eq!(code, 200);
    token.expect("no token in a successful login")
}

/// Whether and how [`wait_for`] reads `/api/status` beside `/api/health`.
#[derive(Clone, Copy)]
pub enum StatusPoll<'a> {
    /// Health only; the status passed on is `null`.
    Skip,
    /// A poll counts only when both answer.
    Required,
    /// With this token if any; `null` when it does not answer.
    Optional(Option<&'a str>),
}

/// Polls `/api/health` (and `/api/status` as `status` says) every 100 ms until `ok` holds; panics with the bot's
/// output if it exits or `limit` passes.
pub async fn wait_for<F: Fn(&Value, &Value) -> bool>(
    c: &reqwest::Client,
    bot: &mut Bot,
    status: StatusPoll<'_>,
    limit: Duration,
    what: &str,
    ok: F,
) -> (Value, Value) {
    let t = Instant::now();
    let mut last = (Value::Null, Value::Null);
    while t.elapsed() < limit {
        if let Some(s) = bot.child.try_wait().unwrap() {
            panic!(
                "bot exited ({s}) while waiting for {what}\n{}",
                bot.output()
            );
        }
        if let Some((_, h)) = get(c, bot, "/api/health", None).await {
            let s = match status {
                StatusPoll::Skip => Some(Value::Null),
                StatusPoll::Required => get(c, bot, "/api/status", None).await.map(|x| x.1),
                StatusPoll::Optional(token) => Some(
                    get(c, bot, "/api/status", token)
                        .await
                        .map(|x| x.1)
                        .unwrap_or(Value::Null),
                ),
            };
            if let Some(s) = s {
                if ok(&h, &s) {
                    return (h, s);
                }
                last = (h, s);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "timed out after {limit:?} waiting for {what}; last health {} status {}\n{}",
        last.0,
        last.1,
        bot.output()
    );
}

/// [`wait_for`] on `/api/health` alone.
pub async fn wait_health<F: Fn(&Value) -> bool>(
    c: &reqwest::Client,
    bot: &mut Bot,
    limit: Duration,
    what: &str,
    ok: F,
) -> Value {
    wait_for(c, bot, StatusPoll::Skip, limit, what, |h, _| ok(h))
        .await
        .0
}

/// The `ALERT_WEBHOOK_URL` end of an alert: an HTTP receiver on the current tokio runtime that keeps every
/// request body as sent (raw text, so a secret can be searched for byte for byte).
#[derive(Clone, Default)]
pub struct AlertHook {
    bodies: std::sync::Arc<Mutex<Vec<String>>>,
    url: String,
}

impl AlertHook {
    pub async fn start() -> AlertHook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = AlertHook {
            url: format!("http://{}/alert", listener.local_addr().unwrap()),
            ..AlertHook::default()
        };
        let store = hook.bodies.clone();
        let app = axum::Router::new()
            .route(
                "/alert",
                axum::routing::post(
                    |axum::extract::State(s): axum::extract::State<
                        std::sync::Arc<Mutex<Vec<String>>>,
                    >,
                     body: String| async move {
                        s.lock().unwrap().push(body);
                    },
                ),
            )
            .with_state(store);
        tokio::spawn(async move { axum::serve(listener, app).await });
        hook
    }

    /// What to set `ALERT_WEBHOOK_URL` to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every body received so far.
    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }

    /// The raw bodies of the alerts of `kind` received so far.
    pub fn of_kind(&self, kind: &str) -> Vec<String> {
        self.bodies()
            .into_iter()
            .filter(|b| serde_json::from_str::<Value>(b).is_ok_and(|v| v["kind"] == kind))
            .collect()
    }

    /// Waits up to `limit` for the first alert of `kind`; panics with everything received if none comes.
    pub async fn expect(&self, kind: &str, limit: Duration) -> String {
        let t = Instant::now();
        loop {
            if let Some(b) = self.of_kind(kind).into_iter().next() {
                return b;
            }
            assert!(
                t.elapsed() < limit,
                "no {kind} alert within {limit:?}; received {:?}",
                self.bodies()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// GET over HTTPS for a body that is not JSON (`/metrics`): the status and the text. Checks the certificate pin
/// like [`get`].
pub async fn get_text(c: &reqwest::Client, bot: &Bot, path: &str) -> (u16, String) {
    let r = c.get(bot.url(path)).send().await.unwrap();
    if bot.pin_cert {
        check_pin(&r, bot);
    }
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}
