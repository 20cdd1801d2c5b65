//! Shared harness of the live-path e2e tests (`live_e2e.rs`, `live_faults.rs`): the in-process simulator, the
//! real `aegis` binary as a child process, signed calls as another client of the same account.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset
pub use aegis_engine::sign::rest::encode_signed_query;
pub use aegis_engine::sign::{HmacSigner, Signer};
pub use aegis_shared::Secret;
pub use aegis_testkit::sim::client::AdminCall;
pub use aegis_testkit::sim::keys::{KeyEntry, KeysFile, Permissions};
pub use aegis_testkit::sim::{start, SimConfig, SimHandle, SimTls, SourceKind};
pub use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
pub use serde_json::Value;
pub use std::fs;
pub use std::path::{Path, PathBuf};
pub use std::process::{Child, Command, Stdio};
pub use std::sync::Mutex;
pub use std::time::{Duration, Instant};

pub static SERIAL: Mutex<()> = Mutex::new(());

pub const KEY: &str = "L1veL1veL1veL1veL1veL1veL1veL1veL1veL1veL1veL1veL1veL1veL1veL1ve";
pub const SECRET: &str = "live-hmac-secret-0123456789abcdef";
pub const ED_KEY: &str = "EdKeyEdKeyEdKeyEdKeyEdKeyEdKeyEdKeyEdKeyEdKeyEdKeyEdKeyEdKeyEdKe";

/// Postgres for the tests that need it: 127.0.0.1:5432 (user postgres, trust auth), `AEGIS_TEST_PG` overrides.
pub fn pg_addr() -> String {
    std::env::var("AEGIS_TEST_PG").unwrap_or_else(|_| "127.0.0.1:5432".into())
}

/// Runs `sql` in database `db` with `psql`; rows one a line, columns separated by `|`.
pub fn psql(db: &str, sql: &str) -> String {
    let addr = pg_addr();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new("psql")
        .args([
            "-X", "-q", "-At", "-F", "|", "-h", host, "-p", port, "-U", "postgres", "-d", db, "-c",
            sql,
        ])
        .output()
        .expect("psql is installed");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A database for one test, dropped afterwards.
pub struct Db(String);

impl Db {
    /// A new, empty database named after `tag`, this process and the time.
    pub fn create(tag: &str) -> Db {
        let name = format!(
            "aegis_t_{tag}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                % 1_000_000
        );
        psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        Db(name)
    }
    /// Its connection URL.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@{}/{}?sslmode=disable",
            pg_addr(),
            self.0
        )
    }
    /// Runs `sql` in it.
    pub fn sql(&self, sql: &str) -> String {
        psql(&self.0, sql)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            psql(
                "postgres",
                &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.0),
            )
        });
    }
}

pub fn bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/aegis")
}

pub fn ed_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[11u8; 32])
}

pub fn keys(withdrawals: bool, ip_restrict: bool) -> KeysFile {
    let pem = ed_key()
        .verifying_key()
        .to_public_key_pem(Default::default())
        .unwrap();
    KeysFile {
        keys: vec![
            KeyEntry {
                api_key: KEY.into(),
                account: Some("alice".into()),
                secret: Some(SECRET.into()),
                ed25519_public_key: None,
                permissions: Permissions {
                    withdrawals,
                    ..Permissions::default()
                },
                ip_restrict,
                allowed_ips: if ip_restrict {
                    vec!["127.0.0.1".into()]
                } else {
                    vec![]
                },
            },
            KeyEntry {
                api_key: ED_KEY.into(),
                account: Some("bob".into()),
                secret: None,
                ed25519_public_key: Some(pem),
                permissions: Permissions::default(),
                ip_restrict: false,
                allowed_ips: vec![],
            },
        ],
        accounts: vec![],
    }
}

/// The simulator's admin client, trusting its certificate when it serves TLS.
fn admin_client(h: &SimHandle) -> aegis_testkit::sim::client::AdminClient {
    match h.ca_pem() {
        Some(pem) => {
            aegis_testkit::sim::client::AdminClient::with_ca_pem(&h.base_url(), pem).unwrap()
        }
        None => h.admin(),
    }
}

pub struct World {
    pub rt: tokio::runtime::Runtime,
    pub sim: Option<SimHandle>,
    pub dir: PathBuf,
}

impl World {
    pub fn new(tag: &str, keys: KeysFile) -> World {
        Self::with_source(tag, keys, SourceKind::Frozen)
    }

    pub fn with_source(tag: &str, keys: KeysFile, source: SourceKind) -> World {
        Self::with_sim(tag, keys, source, None)
    }

    /// A frozen-market world whose simulator serves HTTPS/WSS with a self-signed certificate: the bot's URLs
    /// become `https://`/`wss://`, and it must be given [`World::ca_file`] as `BINANCE_EXTRA_CA_FILE`.
    pub fn with_tls(tag: &str, keys: KeysFile) -> World {
        Self::with_sim(tag, keys, SourceKind::Frozen, Some(SimTls::SelfSigned))
    }

    fn with_sim(tag: &str, keys: KeysFile, source: SourceKind, tls: Option<SimTls>) -> World {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sim = rt.block_on(async {
            let h = start(SimConfig {
                keys,
                source,
                tick_ms: 20,
                tls,
                ..SimConfig::default()
            })
            .await
            .expect("simulator starts");
            if source == SourceKind::Frozen {
                admin_client(&h)
                    .call(AdminCall::set_quote(
                        "BTCUSDT", "59999.9", "5", "60000", "5",
                    ))
                    .await
                    .unwrap();
            }
            h
        });
        let dir = std::env::temp_dir().join(format!(
            "aegis-live-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        World {
            rt,
            sim: Some(sim),
            dir,
        }
    }

    pub fn sim(&self) -> &SimHandle {
        self.sim.as_ref().unwrap()
    }

    pub fn admin(&self, c: AdminCall) -> Value {
        self.rt.block_on(admin_client(self.sim()).call(c)).unwrap()
    }

    /// The simulator's certificate written to a file, for `BINANCE_EXTRA_CA_FILE` (a TLS world only).
    pub fn ca_file(&self) -> PathBuf {
        let pem = self.sim().ca_pem().expect("a TLS world (World::with_tls)");
        let path = self.dir.join("sim-ca.pem");
        fs::write(&path, pem).unwrap();
        path
    }

    pub fn base(&self) -> String {
        self.sim().base_url()
    }

    /// A signed REST call as another client of the same account would make it (orphans, manual positions).
    pub fn signed(&self, method: reqwest::Method, path: &str, params: &[(&str, &str)]) -> Value {
        self.signed_as(KEY, SECRET, method, path, params)
    }

    /// [`World::signed`] with another HMAC key of the account.
    pub fn signed_as(
        &self,
        key: &str,
        secret: &str,
        method: reqwest::Method,
        path: &str,
        params: &[(&str, &str)],
    ) -> Value {
        let signer = Signer::Hmac(HmacSigner::new(&Secret::new(secret.to_string())));
        let ts = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64)
            .to_string();
        let mut ps: Vec<(&str, &[u8])> = params.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        ps.push(("timestamp", ts.as_bytes()));
        let mut buf = vec![0u8; 4096];
        let n = encode_signed_query(&ps, &signer, &mut buf).unwrap();
        let q = String::from_utf8_lossy(&buf[..n]).into_owned();
        let url = format!("{}{path}?{q}", self.base());
        let c = match self.sim().ca_pem() {
            Some(pem) => {
                let ca = reqwest::Certificate::from_pem(pem.as_bytes()).unwrap();
                reqwest::blocking::Client::builder()
                    .add_root_certificate(ca)
                    .build()
                    .unwrap()
            }
            None => reqwest::blocking::Client::new(),
        };
        let r = c
            .request(method, url)
            .header("X-MBX-APIKEY", key)
            .send()
            .unwrap();
        r.json().unwrap()
    }

    pub fn bot(&self, run: u32, env: &[(&str, String)]) -> Bot {
        self.bot_with_env_file(run, &self.dir.join("missing.env"), env)
    }

    /// [`World::bot`] that also reads `env_file` (a missing one adds nothing); `env` wins over both.
    pub fn bot_with_env_file(&self, run: u32, env_file: &Path, env: &[(&str, String)]) -> Bot {
        let out = fs::File::create(self.dir.join(format!("out-{run}.txt"))).unwrap();
        let err = fs::File::create(self.dir.join(format!("err-{run}.txt"))).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(bin());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATA_DIR", self.dir.join("data"))
            .env("API_PORT", port.to_string())
            .env("SYMBOLS", "BTCUSDT")
            .env("AUTH_ENABLED", "false")
            .env("BINANCE_FAPI_URL", self.base())
            .env("BINANCE_SAPI_URL", self.base())
            .env("BINANCE_FSTREAM_URL", self.sim().ws_url())
            // The host weight budget of this world only (not /dev/shm, shared by every test on the machine).
            .env("FLEET_BUDGET_DIR", self.dir.join("budget"))
            .env(
                "BINANCE_WSAPI_URL",
                format!("{}/ws-fapi/v1", self.sim().ws_url()),
            )
            .current_dir(&self.dir)
            .arg("--env-file")
            .arg(env_file)
            .arg("run")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Bot {
            port,
            child: cmd
                .spawn()
                .expect("target/debug/aegis exists: cargo build -p aegis-control"),
            dir: self.dir.clone(),
            run,
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(s) = self.sim.take() {
            self.rt.block_on(s.shutdown());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

pub struct Bot {
    pub port: u16,
    pub child: Child,
    pub dir: PathBuf,
    pub run: u32,
}

impl Bot {
    pub fn log(&self) -> String {
        let o =
            fs::read_to_string(self.dir.join(format!("out-{}.txt", self.run))).unwrap_or_default();
        let e =
            fs::read_to_string(self.dir.join(format!("err-{}.txt", self.run))).unwrap_or_default();
        format!("{o}\n{e}")
    }
    pub fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < limit {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc_kill(self.child.id() as i32, sig) };
    }
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

extern "C" {
    #[link_name = "kill"]
    pub fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// `TRADING_MODE=live` with the test key (live mode needs its own JWT secret: no generated one).
pub fn live_env() -> Vec<(&'static str, String)> {
    vec![
        ("TRADING_MODE", "live".into()),
        ("BINANCE_API_KEY", KEY.into()),
        ("BINANCE_SECRET_KEY", SECRET.into()),
        (
            "JWT_SECRET",
            "jwt-Zq3xV9pL2mN8bR5tY7wK4cH6dF1gS0aE-live".into(),
        ),
    ]
}

pub fn testnet_env() -> Vec<(&'static str, String)> {
    vec![
        ("TRADING_MODE", "testnet".into()),
        ("BINANCE_TESTNET_API_KEY", KEY.into()),
        ("BINANCE_TESTNET_SECRET_KEY", SECRET.into()),
        // A production pair is configured too: it must never be sent (the simulator does not know it).
        (
            "BINANCE_API_KEY",
            "Pr0dPr0dPr0dPr0dPr0dPr0dPr0dPr0dPr0dPr0dPr0dPr0dPr0dPr0dPr0dPr0d".into(),
        ),
        ("BINANCE_SECRET_KEY", "prod-secret".into()),
    ]
}

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

impl Bot {
    /// GET on the bot's own HTTPS API (self-signed certificate, auth off in these tests).
    pub fn api(&self, path: &str) -> Option<Value> {
        let c = reqwest::blocking::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(3))
            .build()
            .ok()?;
        c.get(format!("https://127.0.0.1:{}{path}", self.port))
            .send()
            .ok()?
            .json()
            .ok()
    }
    /// The engine's halt reason as the status API shows it (None when trading or unreachable).
    pub fn halt_reason(&self) -> Option<String> {
        self.api("/api/status")
            .and_then(|s| s["engine"]["halt_reason"].as_str().map(String::from))
    }
}

fn units(v: &Value) -> i64 {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return 0,
    };
    aegis_shared::Qty::parse(&s).map(|q| q.units()).unwrap_or(0)
}

/// Net position per symbol on the simulator (account `alice`), zero sizes omitted.
pub fn sim_positions(w: &World) -> std::collections::BTreeMap<String, i64> {
    let mut m = std::collections::BTreeMap::new();
    for p in w
        .admin(AdminCall::positions("alice"))
        .as_array()
        .into_iter()
        .flatten()
    {
        let q = units(&p["positionAmt"]);
        if q != 0 {
            *m.entry(p["symbol"].as_str().unwrap_or("").to_string())
                .or_insert(0) += q;
        }
    }
    m
}

/// Open client order ids on the simulator (account `alice`).
pub fn sim_open(w: &World) -> Vec<String> {
    let mut v: Vec<String> = w
        .admin(AdminCall::open_orders("alice"))
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| o["clientOrderId"].as_str().unwrap_or("").to_string())
        .collect();
    v.sort();
    v
}

/// The simulator's algo orders of the test account that still wait for their trigger.
pub fn sim_algo_open(w: &World) -> Vec<serde_json::Value> {
    w.admin(AdminCall::algo_orders("alice"))
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o["algoStatus"] == "NEW")
        .collect()
}

/// What the bot believes: net position per symbol (all modes summed) and open client order ids.
pub fn bot_state(bot: &Bot) -> Option<(std::collections::BTreeMap<String, i64>, Vec<String>)> {
    let p = bot.api("/api/positions")?;
    let o = bot.api("/api/orders/open")?;
    let mut m = std::collections::BTreeMap::new();
    for x in p["positions"].as_array()? {
        let q = units(&x["qty"]);
        if q != 0 {
            *m.entry(x["symbol"].as_str()?.to_string()).or_insert(0) += q;
        }
    }
    m.retain(|_, q| *q != 0);
    let mut ids: Vec<String> = o["orders"]
        .as_array()?
        .iter()
        .filter_map(|x| x["client_id"].as_str().map(String::from))
        .collect();
    ids.sort();
    Some((m, ids))
}

/// After each fault: no orphan order and positions equal on both sides (waits up to `limit` for the bot's
/// read model to catch up), returning the agreed state.
pub fn assert_consistent(
    w: &World,
    bot: &Bot,
    limit: Duration,
) -> (std::collections::BTreeMap<String, i64>, Vec<String>) {
    let t = Instant::now();
    loop {
        let sim = (sim_positions(w), sim_open(w));
        let mine = bot_state(bot);
        if mine.as_ref() == Some(&sim) {
            return sim;
        }
        if t.elapsed() > limit {
            panic!(
                "exchange and bot disagree: exchange {sim:?}, bot {mine:?}\n{}",
                bot.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Opens a position by hand (another client of the same account), for the bot to adopt.
pub fn manual_buy(w: &World, qty: &str) {
    manual_buy_as(w, KEY, SECRET, qty);
}

/// [`manual_buy`] with another HMAC key of the account.
pub fn manual_buy_as(w: &World, key: &str, secret: &str, qty: &str) {
    let filled = w.signed_as(
        key,
        secret,
        reqwest::Method::POST,
        "/fapi/v1/order",
        &[
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "MARKET"),
            ("quantity", qty),
        ],
    );
    assert!(filled.get("orderId").is_some(), "{filled}");
}

/// Starts the bot, waits for reconciliation to agree, and publishes a fresh quote so the engine has a book.
pub fn start_agreed(w: &World, run: u32, env: &[(&str, String)]) -> Bot {
    let bot = w.bot(run, env);
    assert!(
        bot.wait_log("local and exchange state agree", Duration::from_secs(15)),
        "{}",
        bot.log()
    );
    nudge(w);
    bot
}

/// A new quote (the frozen market publishes only on changes): the engine re-evaluates on book updates.
pub fn nudge(w: &World) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2;
    std::thread::sleep(Duration::from_millis(200));
    let (b, a) = if n == 0 {
        ("60000.0", "60000.1")
    } else {
        ("60000.1", "60000.2")
    };
    w.admin(AdminCall::set_quote("BTCUSDT", b, "5", a, "5"));
    std::thread::sleep(Duration::from_millis(200));
}

/// Flips the kill switch through its file (halt, cancel all, flatten with reduce-only market orders).
pub fn kill_file(w: &World) {
    fs::write(w.dir.join("data").join("KILL"), b"test").unwrap();
}

/// Waits until the simulator shows no position (nudging the book so pending flattens are retried).
pub fn wait_flat(w: &World, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if sim_positions(w).is_empty() {
            return true;
        }
        nudge(w);
    }
    false
}

impl Bot {
    /// Asserts `needle` shows in the log within `limit`, printing the log when it does not.
    pub fn expect_log(&self, needle: &str, limit: Duration) {
        assert!(
            self.wait_log(needle, limit),
            "no {needle:?} within {limit:?}:\n{}",
            self.log()
        );
    }

    /// SIGTERM, then asserts a clean exit (code 0) within `limit`.
    pub fn stop_cleanly(&mut self, limit: Duration) {
        self.signal(15);
        assert_eq!(self.wait_exit(limit), Some(0), "{}", self.log());
    }
}

/// Leaves a resting limit buy on the exchange by hand (another client of the same account): an order the
/// bot never placed.
pub fn manual_limit_buy(w: &World, qty: &str, price: &str, client_id: &str) {
    let params = [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", qty),
        ("price", price),
        ("newClientOrderId", client_id),
    ];
    let placed = w.signed(reqwest::Method::POST, "/fapi/v1/order", &params);
    assert_eq!(placed["status"], "NEW", "{placed}");
}

/// The `i`-th of two alternating BTCUSDT quotes (bid, ask): every call is a change the market publishes.
pub fn alternate_quote(i: u32) -> (&'static str, &'static str) {
    if i.is_multiple_of(2) {
        ("60000.0", "60000.1")
    } else {
        ("60000.1", "60000.2")
    }
}

/// Polls `done` every `step` until it holds or `limit` passes; whether it held.
pub fn wait_until(limit: Duration, step: Duration, mut done: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    loop {
        if done() {
            return true;
        }
        if t.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(step);
    }
}

/// A steady market for as long as it lives: a quote change every 25 ms (the frozen market publishes on
/// changes only).
pub struct Ticker {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    pub fn start(w: &World) -> Ticker {
        use std::sync::atomic::Ordering::Relaxed;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let admin = aegis_testkit::sim::client::BlockingAdminClient::new(&w.base());
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut i = 0u32;
            while !flag.load(Relaxed) {
                let (b, a) = alternate_quote(i);
                let _ = admin.call(AdminCall::set_quote("BTCUSDT", b, "5", a, "5"));
                i += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        Ticker {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the quotes and waits for the thread.
    pub fn stop(mut self) {
        if let Some(t) = self.end() {
            // A panic in the ticker thread is a failure of the test that owns it.
            t.join().expect("ticker thread");
        }
    }

    fn end(&mut self) -> Option<std::thread::JoinHandle<()>> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take()
    }
}

impl Drop for Ticker {
    // A failing test must not leave quotes running into the next (serial) test.
    fn drop(&mut self) {
        if let Some(t) = self.end() {
            let _ = t.join();
        }
    }
}

/// Alerts as the operator's `ALERT_WEBHOOK_URL` receives them, served from the world's runtime for as long as
/// the world lives. Bodies are kept as sent, so a test can search them for a secret.
#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    received: std::sync::Arc<Mutex<Vec<String>>>,
}

async fn keep_alert(
    axum::extract::State(received): axum::extract::State<std::sync::Arc<Mutex<Vec<String>>>>,
    body: String,
) {
    received.lock().unwrap().push(body);
}

impl World {
    /// Starts a [`Webhook`] receiver; pass its `url` as `ALERT_WEBHOOK_URL`.
    pub fn webhook(&self) -> Webhook {
        let received = std::sync::Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/", axum::routing::post(keep_alert))
            .with_state(received.clone());
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        self.rt
            .spawn(async move { axum::serve(listener, app).await });
        Webhook { url, received }
    }
}

impl Webhook {
    /// Every body received so far.
    pub fn all(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    /// How many alerts of `kind` arrived within `limit` (waits for the first, then takes what is there).
    pub fn count_within(&self, kind: &str, limit: Duration) -> usize {
        let count = || {
            self.all()
                .iter()
                .filter_map(|b| serde_json::from_str::<Value>(b).ok())
                .filter(|v| v["kind"] == kind)
                .count()
        };
        wait_until(limit, Duration::from_millis(50), || count() > 0);
        count()
    }
}

/// The leverage the simulator holds for `symbol` on the test key's account, as Binance reports it
/// (`GET /fapi/v2/positionRisk`'s `leverage`); `None` when the answer has no such field.
pub fn sim_leverage(w: &World, symbol: &str) -> Option<u32> {
    let v = w.signed(
        reqwest::Method::GET,
        "/fapi/v2/positionRisk",
        &[("symbol", symbol)],
    );
    v.as_array()?
        .iter()
        .find(|p| p["symbol"] == symbol)?
        .get("leverage")?
        .as_str()?
        .parse()
        .ok()
}

/// The fills of client order `cid` the bot shows (`GET /api/trades`), oldest first, in quantity units.
pub fn bot_fills(bot: &Bot, cid: &str) -> Vec<i64> {
    let page = bot.api("/api/trades?limit=200").unwrap_or_default();
    let mut v: Vec<i64> = page["trades"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["client_id"] == cid)
        .map(|t| units(&t["qty"]))
        .collect();
    v.reverse();
    v
}

/// How many 429/418 answers the simulator's WebSocket API gave `api_key` since its limits were last set.
pub fn sim_ws_refusals(w: &World, api_key: &str) -> u64 {
    let s = w.admin(AdminCall::state());
    let by_key = &s["wsApiRefusedByKey"];
    assert!(by_key.is_object(), "no refusal counter in {s}");
    by_key[api_key].as_u64().unwrap_or(0)
}

/// Runs a headless-Chromium check of `tests/browser/<script>` against the running bot's dashboard (auth off),
/// with `env` for its expectations. Without node, Debian's chromium or `npm ci` in tests/browser it skips with a
/// message locally and fails under CI (which installs them).
pub fn browser_check(bot: &Bot, script: &str, env: &[(&str, String)]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let browser_dir = root.join("tests/browser");
    let chromium = aegis_testkit::browser::chromium();
    let missing = aegis_testkit::browser::missing(&browser_dir);
    if !aegis_testkit::browser::ready_or_skip(&format!("browser check {script}"), missing, None) {
        return;
    }
    let mut cmd = Command::new("node");
    cmd.arg(browser_dir.join(script))
        .current_dir(&root)
        .env("AEGIS_URL", format!("https://127.0.0.1:{}", bot.port))
        .env("CHROMIUM", &chromium);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("start node");
    assert!(
        out.status.success(),
        "browser check {script} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
