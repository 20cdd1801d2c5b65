//! End-to-end tests of the operating commands with the real `aegis` binary: `preflight` against `binance-sim`
//! (in process) and the real Postgres, the live gate of `aegis run`, `keys rotate` / `keys audit` (and the spot &
//! margin permission judged per MARKETS), the refusal of MARKETS=spot outside paper, and — with a
//! running bot — `halt` / `resume` / `kill` over the pinned local HTTPS API, the kill-switch alert to a local
//! webhook receiver, and `incident-report`.

mod db_support;
mod support;

use aegis_testkit::sim::keys::{KeyEntry, KeysFile, Permissions};
use aegis_testkit::sim::{self, SimConfig, SimHandle};
use db_support::one;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{free_port, rt, temp_dir, text};

const BAD_KEY: &str = "badKEYwithdrawalsON000000000000000000000000000000000000000000001";
const BAD_SECRET: &str = "badSECRET00000000000000000000000000000000000000000000000000001";
const GOOD_KEY: &str = "goodKEYrestricted00000000000000000000000000000000000000000000002";
const GOOD_SECRET: &str = "goodSECRET0000000000000000000000000000000000000000000000000002";
const NEW_KEY: &str = "newKEYrestricted000000000000000000000000000000000000000000000003";
const NEW_SECRET: &str = "newSECRET00000000000000000000000000000000000000000000000000003";
const STRONG_JWT: &str = "q8Vd0pX3LmZr7TnY2sKw9bHc4JfG6aUe1QzR5tW8yB3nM7kL";

fn key(api_key: &str, secret: &str, withdrawals: bool, ip_restrict: bool) -> KeyEntry {
    KeyEntry {
        api_key: api_key.into(),
        account: Some("alice".into()),
        secret: Some(secret.into()),
        ed25519_public_key: None,
        permissions: Permissions {
            withdrawals,
            ..Permissions::default()
        },
        ip_restrict,
        allowed_ips: vec!["127.0.0.1".into()],
    }
}

fn start_sim(rt: &tokio::runtime::Runtime) -> SimHandle {
    let cfg = SimConfig {
        keys: KeysFile {
            keys: vec![
                key(BAD_KEY, BAD_SECRET, true, false),
                key(GOOD_KEY, GOOD_SECRET, false, true),
                key(NEW_KEY, NEW_SECRET, false, true),
            ],
            ..Default::default()
        },
        source: sim::SourceKind::Frozen,
        ..SimConfig::default()
    };
    rt.block_on(sim::start(cfg)).unwrap()
}

fn write_env(dir: &Path, body: &str, mode: u32) -> PathBuf {
    let p = dir.join(".env");
    fs::write(&p, body).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn aegis(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    aegis_env(dir, args, stdin, &[])
}

/// `aegis <args>` in `dir` with its `.env` and nothing of this process's environment but `PATH`, so what the
/// test writes to `.env` is all the binary sees.
fn aegis_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aegis"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir)
        .arg("--env-file")
        .arg(dir.join(".env"))
        .args(args);
    cmd
}

/// A long-running `aegis` (stdout and stderr into `log`) that the test watches and then stops itself.
fn spawn_aegis(dir: &Path, args: &[&str], log: &Path) -> Child {
    let f = fs::File::create(log).unwrap();
    aegis_cmd(dir, args)
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap()
}

/// Polls `log` until `done` holds or the child exits on its own (15 s at most), then stops the child. Returns the
/// whole log once the child is gone.
fn watch_then_stop(child: &mut Child, log: &Path, done: impl Fn(&str) -> bool) -> String {
    let t = Instant::now();
    loop {
        let out = fs::read_to_string(log).unwrap_or_default();
        if done(&out) || child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "{out}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    fs::read_to_string(log).unwrap()
}

fn aegis_env(dir: &Path, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut cmd = aegis_cmd(dir, args);
    cmd.envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().unwrap();
    if let Some(s) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// `aegis incident-report --since 1h --json --out <name>` must succeed; returns the report it wrote.
fn incident_json(dir: &Path, name: &str) -> Value {
    let o = aegis(
        dir,
        &["incident-report", "--since", "1h", "--json", "--out", name],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_str(&fs::read_to_string(dir.join(name)).unwrap()).unwrap()
}

fn assert_no_secret(s: &str) {
    for secret in [
        BAD_SECRET,
        GOOD_SECRET,
        NEW_SECRET,
        BAD_KEY,
        GOOD_KEY,
        NEW_KEY,
        "weakweak",
    ] {
        assert!(!s.contains(secret), "secret leaked:\n{s}");
    }
}

fn status_of(j: &Value, id: &str) -> String {
    j["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {j}"))["status"]
        .as_str()
        .unwrap()
        .to_string()
}

fn base_env(dir: &Path, sim: &SimHandle, key: &str, secret: &str) -> String {
    format!(
        "TRADING_MODE=live\nBINANCE_API_KEY={key}\nBINANCE_SECRET_KEY={secret}\nBINANCE_TESTNET_API_KEY=tn{}\nBINANCE_TESTNET_SECRET_KEY=tnS{}\nBINANCE_FAPI_URL={u}\nBINANCE_SAPI_URL={u}\nDATA_DIR={}\nBACKUP_DIR={}\nAPI_PORT=1\n",
        &key[2..],
        &secret[3..],
        dir.join("data").display(),
        dir.join("backups").display(),
        u = sim.base_url(),
    )
}

#[test]
fn insecure_setup_fails_preflight_and_live_refuses_secure_setup_passes() {
    let rt = rt();
    let sim = start_sim(&rt);
    let t0 = Instant::now();

    // --- Insecure: world-readable .env, weak JWT secret, default DB password, key that can withdraw from any IP.
    let dir = temp_dir("insecure");
    let body = format!(
        "{}JWT_SECRET=weakweak\nDATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable\n",
        base_env(&dir, &sim, BAD_KEY, BAD_SECRET)
    );
    write_env(&dir, &body, 0o644);
    let o = aegis(&dir, &["preflight", "--json"], None);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert_no_secret(&out);
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    for id in [
        "env.permissions",
        "auth.jwt_secret",
        "keys.withdrawals",
        "keys.ip_restrict",
        "db.password",
    ] {
        assert_eq!(status_of(&j, id), "FAIL", "{id}: {j:#}");
    }
    // The real Postgres was asked (it listens on loopback here); the 0.0.0.0 case is a unit test of the inputs.
    let pg = j["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "db.listen_addresses")
        .unwrap();
    assert!(
        pg["detail"]
            .as_str()
            .unwrap()
            .contains("listen_addresses = '"),
        "{pg}"
    );
    // Key age is tracked by fingerprint only, in a private file.
    let store = fs::read_to_string(dir.join("data/keys.json")).unwrap();
    assert!(
        store.contains("sha256:") && store.contains("production"),
        "{store}"
    );
    assert_no_secret(&store);
    assert_eq!(mode_of(&dir.join("data/keys.json")), 0o600);
    // The table form shows fixes.
    let o = aegis(&dir, &["preflight"], None);
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(t.contains("FAIL") && t.contains("chmod 600"), "{t}");

    // `aegis run` in live: a readable .env and a weak JWT secret are refused by the config loader (exit 2) ...
    let o = aegis(&dir, &["run"], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_no_secret(&text(&o));
    // ... and with those fixed, the preflight gate refuses the rest (exit 1: a key that can withdraw from any IP,
    // a default database password), before any engine starts.
    write_env(
        &dir,
        &body.replace("JWT_SECRET=weakweak", &format!("JWT_SECRET={STRONG_JWT}")),
        0o600,
    );
    let t = Instant::now();
    let o = aegis(&dir, &["run"], None);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("TRADING_MODE=live refused"), "{out}");
    assert!(out.contains("can WITHDRAW"), "{out}");
    assert!(
        !dir.join("data/journal").exists(),
        "the journal was opened: {out}"
    );
    assert!(t.elapsed() < Duration::from_secs(15));
    assert_no_secret(&out);

    // --- Secure: mode 600, strong JWT secret, no database, key restricted and without withdrawals, .gitignore.
    let dir = temp_dir("secure");
    let body = format!(
        "{}JWT_SECRET={STRONG_JWT}\nFUTURES_AUTOPILOT_MAX_POSITION_SIZE=50\nFUTURES_AUTOPILOT_MAX_DAILY_LOSS=20\n",
        base_env(&dir, &sim, GOOD_KEY, GOOD_SECRET)
    );
    write_env(&dir, &body, 0o600);
    fs::write(dir.join(".gitignore"), ".env\n").unwrap();
    let o = aegis(&dir, &["preflight", "--json"], None);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["summary"]["fail"], 0, "{j:#}");
    assert_eq!(status_of(&j, "keys.withdrawals"), "PASS");
    assert_eq!(status_of(&j, "keys.ip_restrict"), "PASS");
    assert_eq!(status_of(&j, "keys.age"), "PASS");
    assert_no_secret(&out);
    // The live gate lets it through: the run gets as far as opening the journal (then it is stopped; what the
    // live venue does next is the live path's business).
    let log = dir.join("run.log");
    let mut child = spawn_aegis(&dir, &["run"], &log);
    let out = watch_then_stop(&mut child, &log, |_| dir.join("data/journal").exists());
    assert!(dir.join("data/journal").exists(), "{out}");
    assert!(!out.contains("TRADING_MODE=live refused"), "{out}");
    assert_no_secret(&out);
    eprintln!("preflight e2e took {:?}", t0.elapsed());
    rt.block_on(sim.shutdown());
}

#[test]
fn keys_rotate_verifies_refuses_bad_keys_and_updates_env_atomically() {
    let rt = rt();
    let sim = start_sim(&rt);
    let dir = temp_dir("rotate");
    let outside = temp_dir("rotate-input");
    let body = format!(
        "# my settings\n{}JWT_SECRET={STRONG_JWT}\n",
        base_env(&dir, &sim, GOOD_KEY, GOOD_SECRET)
    );
    write_env(&dir, &body, 0o600);

    // A key that can withdraw is refused; .env unchanged.
    let o = aegis(
        &dir,
        &["keys", "rotate"],
        Some(&format!("{BAD_KEY}\n{BAD_SECRET}\n")),
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("WITHDRAW"), "{out}");
    assert_eq!(fs::read_to_string(dir.join(".env")).unwrap(), body);
    // A key the exchange does not know is refused.
    let unknown = "unknownKEY000000000000000000000000000000000000000000000000000004";
    let o = aegis(
        &dir,
        &["keys", "rotate"],
        Some(&format!("{unknown}\n{NEW_SECRET}\n")),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("-2015") || text(&o).contains("-2014"),
        "{}",
        text(&o)
    );
    // The same key again is refused.
    let o = aegis(
        &dir,
        &["keys", "rotate"],
        Some(&format!("{GOOD_KEY}\n{GOOD_SECRET}\n")),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    // A good new key from a file: verified, .env rewritten in place, mode 600, event recorded.
    let input = outside.join("new-key.txt");
    fs::write(
        &input,
        format!("BINANCE_API_KEY={NEW_KEY}\nBINANCE_SECRET_KEY={NEW_SECRET}\n"),
    )
    .unwrap();
    fs::set_permissions(&input, fs::Permissions::from_mode(0o600)).unwrap();
    let o = aegis(
        &dir,
        &["keys", "rotate", "--from-file", input.to_str().unwrap()],
        None,
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("verified against the exchange"), "{out}");
    assert_no_secret(&out);
    let env = fs::read_to_string(dir.join(".env")).unwrap();
    assert!(
        env.starts_with("# my settings\nTRADING_MODE=live\n"),
        "{env}"
    );
    assert!(env.contains(&format!("\nBINANCE_API_KEY={NEW_KEY}\n")));
    assert!(env.contains(&format!("\nBINANCE_SECRET_KEY={NEW_SECRET}\n")));
    assert!(!env.contains(GOOD_KEY) && !env.contains(GOOD_SECRET));
    assert!(env.contains(&format!("BINANCE_TESTNET_API_KEY=tn{}", &GOOD_KEY[2..])));
    assert_eq!(mode_of(&dir.join(".env")), 0o600);
    let events = fs::read_to_string(dir.join("data/key-events.jsonl")).unwrap();
    let ev: Value = serde_json::from_str(events.lines().last().unwrap()).unwrap();
    assert_eq!(ev["event"], "rotated");
    assert_eq!(ev["detail"]["verified"], true);
    assert_ne!(
        ev["detail"]["old_fingerprint"],
        ev["detail"]["new_fingerprint"]
    );
    assert_no_secret(&events);
    assert_no_secret(&fs::read_to_string(dir.join("data/keys.json")).unwrap());

    // The monthly audit on the new key: works, withdrawals off, IP restricted; nothing fails.
    let o = aegis(&dir, &["keys", "audit", "--json"], None);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(status_of(&j, "audit.key_works"), "PASS", "{j:#}");
    assert_eq!(status_of(&j, "audit.withdrawals"), "PASS");
    assert_eq!(status_of(&j, "audit.ip_restrict"), "PASS");
    assert_eq!(status_of(&j, "env.permissions"), "PASS");
    assert_no_secret(&out);
    // Revoked on the exchange: the audit FAILs the key.
    rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/admin/keys/{NEW_KEY}/revoke", sim.base_url()))
            .send()
            .await
            .unwrap();
    });
    let o = aegis(&dir, &["keys", "audit", "--json"], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(status_of(&j, "audit.key_works"), "FAIL", "{j:#}");
    rt.block_on(sim.shutdown());
}

/// One check's `fix` in a report.
fn fix_of(j: &Value, id: &str) -> String {
    j["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {j}"))["fix"]
        .as_str()
        .unwrap()
        .to_string()
}

fn has_check(j: &Value, id: &str) -> bool {
    j["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == id)
}

/// Turns the key's "Enable Spot & Margin Trading" on or off on the simulated exchange.
fn set_spot(rt: &tokio::runtime::Runtime, sim: &SimHandle, key: &str, on: bool) {
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{}/admin/keys/{key}/permissions", sim.base_url()))
            .json(&serde_json::json!({ "spot": on }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    });
}

/// Requests the simulated exchange has seen with `key`.
fn requests_with(rt: &tokio::runtime::Runtime, sim: &SimHandle, key: &str) -> u64 {
    rt.block_on(async {
        let u: Value = reqwest::Client::new()
            .get(format!("{}/admin/keys/usage", sim.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        u[key]["requests"].as_u64().unwrap_or(0)
    })
}

/// `aegis keys audit --json` and `aegis preflight --json`: (audit exit code, audit, preflight).
fn audit_and_preflight(dir: &Path) -> (Option<i32>, Value, Value) {
    let a = aegis(dir, &["keys", "audit", "--json"], None);
    assert_no_secret(&text(&a));
    let audit: Value = serde_json::from_slice(&a.stdout).unwrap_or_else(|_| panic!("{}", text(&a)));
    let p = aegis(dir, &["preflight", "--json"], None);
    assert_no_secret(&text(&p));
    let pre: Value = serde_json::from_slice(&p.stdout).unwrap_or_else(|_| panic!("{}", text(&p)));
    (a.status.code(), audit, pre)
}

/// Issue 14.6: the spot & margin permission must be off for MARKETS=futures and on for MARKETS=spot, in
/// `aegis keys audit` and `aegis preflight` alike, against the exchange's `apiRestrictions` (TRADING_MODE=live,
/// the simulator standing in for Binance).
#[test]
fn keys_audit_and_preflight_judge_the_spot_permission_for_the_configured_market() {
    let rt = rt();
    let sim = start_sim(&rt);
    let dir = temp_dir("spot-perm");
    let futures = format!(
        "{}JWT_SECRET={STRONG_JWT}\n",
        base_env(&dir, &sim, GOOD_KEY, GOOD_SECRET)
    );
    let spot = format!("{futures}MARKETS=spot\n");

    // MARKETS=futures with a key that can trade spot: FAIL, turn it off.
    set_spot(&rt, &sim, GOOD_KEY, true);
    write_env(&dir, &futures, 0o600);
    let (code, audit, pre) = audit_and_preflight(&dir);
    assert_eq!(code, Some(1), "{audit:#}");
    assert_eq!(status_of(&audit, "audit.spot_off"), "FAIL", "{audit:#}");
    assert!(fix_of(&audit, "audit.spot_off").contains("turn OFF \"Enable Spot & Margin Trading\""));
    assert!(!has_check(&audit, "audit.spot_on"), "{audit:#}");
    assert_eq!(status_of(&pre, "keys.spot_off"), "FAIL", "{pre:#}");
    assert!(!has_check(&pre, "keys.spot_on"), "{pre:#}");

    // MARKETS=spot with a key that cannot trade spot: FAIL, turn it on (and keep the rest locked).
    set_spot(&rt, &sim, GOOD_KEY, false);
    write_env(&dir, &spot, 0o600);
    let (code, audit, pre) = audit_and_preflight(&dir);
    assert_eq!(code, Some(1), "{audit:#}");
    assert_eq!(status_of(&audit, "audit.spot_on"), "FAIL", "{audit:#}");
    for (j, id) in [(&audit, "audit.spot_on"), (&pre, "keys.spot_on")] {
        let fix = fix_of(j, id);
        assert!(
            fix.contains("turn ON \"Enable Spot & Margin Trading\"")
                && fix.contains("\"Enable Withdrawals\" OFF")
                && fix.contains("trusted IPs only\" ON"),
            "{id}: {fix}"
        );
    }
    assert!(!has_check(&audit, "audit.spot_off"), "{audit:#}");
    assert_eq!(status_of(&pre, "keys.spot_on"), "FAIL", "{pre:#}");
    // The table says which market it judged.
    let t = text(&aegis(&dir, &["keys", "audit"], None));
    assert!(t.contains("Spot & margin trading ON (MARKETS=spot)"), "{t}");

    // MARKETS=spot with a key that can trade spot: that check passes, and so does the whole audit.
    set_spot(&rt, &sim, GOOD_KEY, true);
    let (code, audit, pre) = audit_and_preflight(&dir);
    assert_eq!(status_of(&audit, "audit.spot_on"), "PASS", "{audit:#}");
    assert_eq!(status_of(&audit, "audit.withdrawals"), "PASS");
    assert_eq!(status_of(&audit, "audit.ip_restrict"), "PASS");
    assert_eq!(code, Some(0), "{audit:#}");
    assert_eq!(status_of(&pre, "keys.spot_on"), "PASS", "{pre:#}");
    rt.block_on(sim.shutdown());
}

/// `aegis run` with MARKETS=spot on testnet talks to spot (`/api/v3`), never to the futures endpoints, and
/// proves first that the key may trade spot: a key without "Spot & Margin Trading" is refused with the fix
/// (testnet has no apiRestrictions endpoint, so `canTrade` of `GET /api/v3/account` is the proof there).
#[test]
fn run_on_spot_proves_the_key_can_trade_spot_and_calls_no_futures_endpoint() {
    let rt = rt();
    let sim = start_sim(&rt);
    let dir = temp_dir("spot-run");
    let testnet = format!(
        "TRADING_MODE=testnet\nMARKETS=spot\nBINANCE_TESTNET_API_KEY={GOOD_KEY}\nBINANCE_TESTNET_SECRET_KEY={GOOD_SECRET}\nBINANCE_FAPI_URL={u}\nBINANCE_SAPI_URL={u}\nBINANCE_SPOT_URL={u}\nDATA_DIR={}\nAPI_PORT=1\nJWT_SECRET={STRONG_JWT}\n",
        dir.join("data").display(),
        u = sim.base_url(),
    );
    set_spot(&rt, &sim, GOOD_KEY, false);
    write_env(&dir, &testnet, 0o600);
    let before = requests_with(&rt, &sim, GOOD_KEY);
    let o = aegis(&dir, &["run"], None);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains("cannot trade spot")
            && out.contains("canTrade=false")
            && out.contains("Spot & Margin Trading")
            && out.contains("BINANCE_TESTNET_API_KEY"),
        "{out}"
    );
    assert!(out.contains("Binance spot TESTNET"), "{out}");
    // The key was used (on spot) and nothing futures was asked.
    assert!(requests_with(&rt, &sim, GOOD_KEY) > before, "{out}");
    assert!(!out.contains("/fapi/"), "{out}");
    assert_no_secret(&out);
    // `aegis reconcile --pnl` compares with futures' books only: on spot it says so instead of comparing the
    // wrong market, and asks the exchange nothing.
    let before = requests_with(&rt, &sim, GOOD_KEY);
    let o = aegis(&dir, &["reconcile", "--pnl"], None);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("has no spot comparison yet"), "{out}");
    assert_eq!(requests_with(&rt, &sim, GOOD_KEY), before, "{out}");
    rt.block_on(sim.shutdown());
}

// ------------------------------------------------------------------------------------------------------------
// With a running bot.

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Value>>>);

async fn receiver() -> (u16, Received) {
    use axum::routing::post;
    let got = Received::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |axum::Json(v): axum::Json<Value>| {
            let g = g.clone();
            async move {
                g.0.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (port, got)
}

fn pinned(dir: &Path) -> Option<reqwest::Client> {
    let fp = aegis_control::ops::admin::cert_fingerprint(&dir.join("data/tls/cert.pem")).ok()?;
    aegis_control::ops::admin::pinned_client(&fp).ok()
}

/// `/api/health` (public) over the pinned client.
async fn health(port: u16, dir: &Path) -> Option<Value> {
    let r = pinned(dir)?
        .get(format!("https://127.0.0.1:{port}/api/health"))
        .send()
        .await
        .ok()?;
    r.json::<Value>().await.ok()
}

const ADMIN_PW: &str = "Correct-Horse-Battery-9";

#[test]
fn halt_resume_kill_over_pinned_api_alert_once_and_incident_report() {
    let rt = rt();
    let (hook_port, got) = rt.block_on(receiver());
    let dir = temp_dir("bot");
    let port = free_port();
    write_env(
        &dir,
        &format!(
            "DATA_DIR={}\nAPI_PORT={port}\nSIM_RATE=20000\nSIM_SPEED=3000\nJWT_SECRET={STRONG_JWT}\nALERT_WEBHOOK_URL=http://127.0.0.1:{hook_port}/hook\nALERT_DEDUP_SECONDS=300\n",
            dir.join("data").display()
        ),
        0o600,
    );
    // No bot yet: a clear error, and the KILL-file fallback is named.
    let o = aegis(&dir, &["kill"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("KILL"), "{}", text(&o));

    let mut bot = spawn_aegis(&dir, &[], &dir.join("bot.log"));
    let log = || fs::read_to_string(dir.join("bot.log")).unwrap_or_default();
    let wait = |what: &str, f: &dyn Fn(&Value) -> bool| {
        let t = Instant::now();
        loop {
            if let Some(s) = rt.block_on(health(port, &dir)) {
                if f(&s) {
                    return s;
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "timeout: {what}\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("running", &|s| s["engine"]["state"] == "running");
    let tok = dir.join("data/admin.token");
    assert_eq!(mode_of(&tok), 0o600);

    // halt with the local admin token ...
    let o = aegis(&dir, &["halt", "--reason", "e2e"], None);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o), log());
    wait("halted", &|s| s["engine"]["state"] == "halted");
    // ... resume as a dashboard admin (auth is on): first user registered over the pinned API.
    let reg = rt.block_on(async {
        pinned(&dir)
            .unwrap()
            .post(format!("https://127.0.0.1:{port}/api/auth/register"))
            .json(&serde_json::json!({"username": "opsadmin", "password": ADMIN_PW}))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert!(reg.is_success(), "register: {reg}\n{}", log());
    let wrong = aegis_env(
        &dir,
        &["resume"],
        None,
        &[
            ("AEGIS_ADMIN_USER", "opsadmin"),
            ("AEGIS_ADMIN_PASSWORD", "Wrong-Password-123"),
        ],
    );
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(text(&wrong).contains("refused"), "{}", text(&wrong));
    let o = aegis_env(
        &dir,
        &["resume"],
        None,
        &[
            ("AEGIS_ADMIN_USER", "opsadmin"),
            ("AEGIS_ADMIN_PASSWORD", ADMIN_PW),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o), log());
    assert!(!text(&o).contains(ADMIN_PW));
    wait("running again", &|s| s["engine"]["state"] == "running");

    // A wrong token is refused by the bot.
    let good = fs::read_to_string(&tok).unwrap();
    fs::write(&tok, "0".repeat(64)).unwrap();
    let o = aegis(&dir, &["halt"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("401"), "{}", text(&o));
    fs::write(&tok, good).unwrap();

    // Kill switch by the KILL file → one kill_switch alert at the webhook ...
    fs::write(dir.join("data/KILL"), "").unwrap();
    let t = Instant::now();
    while !got
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|v| v["kind"] == "kill_switch")
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no alert; log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // ... and `aegis kill --flatten` afterwards is accepted, without a second alert.
    let o = aegis(&dir, &["kill", "--flatten"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    std::thread::sleep(Duration::from_millis(800));
    let kills = got
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|v| v["kind"] == "kill_switch")
        .count();
    assert_eq!(kills, 1, "{:?}", got.0.lock().unwrap());
    let first = got.0.lock().unwrap()[0].clone();
    assert_eq!(first["severity"], "critical", "{first}");

    // Stop; the expected shutdown raises no engine_stopped alert.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(bot.id() as i32, libc::SIGTERM) };
    let st = bot.wait().unwrap();
    assert_eq!(st.code(), Some(0), "{}", log());
    assert!(
        !got.0
            .lock()
            .unwrap()
            .iter()
            .any(|v| v["kind"] == "engine_stopped"),
        "{:?}",
        got.0.lock().unwrap()
    );
    assert!(!tok.exists(), "token left behind");

    // The incident report of the last hour has the operator commands, the kill switch and the fills.
    let out_file = dir.join("incident.md");
    let o = aegis(
        &dir,
        &[
            "incident-report",
            "--since",
            "1h",
            "--out",
            out_file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let md = fs::read_to_string(&out_file).unwrap();
    assert!(md.contains("cli:local-token"), "{md}");
    assert!(md.contains("kill_switch"), "{md}");
    assert!(md.contains("\"flatten\":true"), "{md}");
    assert_eq!(mode_of(&out_file), 0o600);
    let j = incident_json(&dir, "i.json");
    assert!(j["commands"].as_array().unwrap().len() >= 3, "{j}");
    assert!(!j["fills"].as_array().unwrap().is_empty(), "{j}");
}

#[test]
fn old_key_warns_in_preflight_and_at_start() {
    let dir = temp_dir("age");
    fs::create_dir_all(dir.join("data")).unwrap();
    let port = free_port();
    write_env(
        &dir,
        &format!(
            "BINANCE_API_KEY={GOOD_KEY}\nBINANCE_SECRET_KEY={GOOD_SECRET}\nDATA_DIR={}\nAPI_PORT={port}\nJWT_SECRET={STRONG_JWT}\nBINANCE_SAPI_URL=http://127.0.0.1:1\nBINANCE_FAPI_URL=http://127.0.0.1:1\n",
            dir.join("data").display()
        ),
        0o600,
    );
    let fp =
        aegis_control::fleet::lease::fingerprint(&aegis_shared::Secret::new(GOOD_KEY.to_string()));
    let first = aegis_control::journal::now_ms() - 40 * 86_400_000;
    fs::write(
        dir.join("data/keys.json"),
        serde_json::json!({"keys": [{"fingerprint": fp, "environment": "production", "first_seen": "2020-01-01",
                                     "first_seen_ms": first, "last_seen_ms": first}]})
        .to_string(),
    )
    .unwrap();
    let o = aegis(&dir, &["preflight", "--json"], None);
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(status_of(&j, "keys.age"), "WARN", "{j:#}");
    // The exchange is unreachable here: the restrictions stay unknown and the note says why.
    assert!(
        j["notes"][0].as_str().unwrap().contains("apiRestrictions"),
        "{j:#}"
    );
    let rec = fs::read_to_string(dir.join("data/keys.json")).unwrap();
    assert!(
        rec.contains(&first.to_string()),
        "first-seen date must not move: {rec}"
    );

    let log = dir.join("run.log");
    let mut child = spawn_aegis(&dir, &[], &log);
    let found = watch_then_stop(&mut child, &log, |out| out.contains("40 days old"));
    assert!(
        found.contains(&format!("production API key {fp} is 40 days old")),
        "{found}"
    );
    assert_no_secret(&found);
}

/// With `DATABASE_URL`: the rotation lands in `key_events` and the audit chain, and the incident report reads the
/// API access log and the audited key events back from Postgres.
#[test]
fn rotation_is_audited_in_postgres_and_the_incident_report_reads_it() {
    let rt = rt();
    let db = rt.block_on(db_support::TestDb::create("ops"));
    let url = db.url();
    let client = rt.block_on(async {
        let c = db.migrated_client().await;
        aegis_control::db::records::record_access(
            &c,
            &aegis_control::db::records::AccessRecord {
                actor: Some("opsadmin"),
                source_ip: "203.0.113.9",
                method: "POST",
                path: "/api/control/kill",
                status: 200,
                duration_us: 900,
            },
        )
        .await
        .unwrap();
        c
    });
    let dir = temp_dir("pg");
    write_env(
        &dir,
        &format!(
            "BINANCE_API_KEY={GOOD_KEY}\nBINANCE_SECRET_KEY={GOOD_SECRET}\nDATA_DIR={}\nDATABASE_URL={url}\n",
            dir.join("data").display()
        ),
        0o600,
    );
    let o = aegis(
        &dir,
        &["keys", "rotate", "--no-verify"],
        Some(&format!("{NEW_KEY}\n{NEW_SECRET}\n")),
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("NOT verified") && out.contains("audited in Postgres"),
        "{out}"
    );
    let new_fp =
        aegis_control::fleet::lease::fingerprint(&aegis_shared::Secret::new(NEW_KEY.into()));
    let (hint, audit_detail): (Option<String>, String) = rt.block_on(async {
        let r = client
            .query_one("SELECT key_hint, event FROM key_events", &[])
            .await
            .unwrap();
        assert_eq!(r.get::<_, String>(1), "rotated");
        let detail = one(
            &client,
            "SELECT detail FROM audit_log WHERE action = 'key_event'",
            &[],
        )
        .await;
        (r.get(0), detail)
    });
    assert_eq!(hint.as_deref(), Some(new_fp.as_str()));
    assert!(
        audit_detail.contains("\"verified\":false"),
        "{audit_detail}"
    );
    assert_no_secret(&audit_detail);

    // An empty journal is fine: the report still has the Postgres parts.
    aegis_control::journal::open(
        &aegis_control::journal::dir_in(&dir.join("data")),
        Duration::ZERO,
    )
    .unwrap();
    let j = incident_json(&dir, "r.json");
    assert_eq!(j["api_access"][0]["path"], "/api/control/kill", "{j:#}");
    assert_eq!(j["api_access"][0]["source_ip"], "203.0.113.9");
    let sources: Vec<&str> = j["key_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    assert!(
        sources.contains(&"postgres") && sources.contains(&"key-events.jsonl"),
        "{j:#}"
    );
}
