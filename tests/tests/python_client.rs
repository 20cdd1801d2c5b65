//! A Binance client nobody here wrote (binance-futures-connector from PyPI, plus websocket-client and
//! pycryptodome's Ed25519) runs against binance-sim: tests/python/client_check.py; python-binance's spot
//! `Client` runs against the spot half: tests/python/spot_check.py.
//!
//! Needs the venv: `python3 -m venv tests/.venv && tests/.venv/bin/pip install -r tests/python/requirements.txt`
//! (.ci/run creates it). Without it the test fails under CI=… and is skipped, loudly, elsewhere.

use aegis_testkit::sim::keys::{KeyEntry, KeysFile, Permissions};
use aegis_testkit::sim::{start, SimConfig, SourceKind};
use std::path::PathBuf;
use std::process::Command;

const KEY: &str = "PyC0nnect0rPyC0nnect0rPyC0nnect0rPyC0nnect0rPyC0nnect0rPyC0nnect";
const SECRET: &str = "python-connector-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_futures_connector_works_against_the_simulator() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = dir.join(".venv/bin/python");
    if !python.exists() {
        let msg = format!(
            "{} is missing: run `python3 -m venv tests/.venv && tests/.venv/bin/pip install -r tests/python/requirements.txt`",
            python.display()
        );
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("SKIPPED python client check: {msg}");
        return;
    }
    let h = start(SimConfig {
        source: SourceKind::EngineSim,
        tick_ms: 50,
        keys: KeysFile {
            keys: vec![KeyEntry {
                api_key: KEY.into(),
                account: Some("python".into()),
                secret: Some(SECRET.into()),
                ed25519_public_key: None,
                permissions: Permissions::default(),
                ip_restrict: true,
                allowed_ips: vec!["127.0.0.1".into()],
            }],
            accounts: vec![],
        },
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let script = dir.join("python/client_check.py");
    let (base, ws) = (h.base_url(), h.ws_url());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args([
                "--base-url",
                &base,
                "--ws-url",
                &ws,
                "--api-key",
                KEY,
                "--secret",
                SECRET,
            ])
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "client_check.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"));
    // The simulator's own view matches what the script left behind: nothing open.
    let acc = h
        .admin()
        .call(aegis_testkit::sim::client::AdminCall::account("python"))
        .await
        .unwrap();
    assert_eq!(acc["openOrders"], serde_json::json!([]));
    assert_eq!(acc["positions"], serde_json::json!([]));
    h.shutdown().await;
}

const SPOT_KEY: &str = "PySp0tPySp0tPySp0tPySp0tPySp0tPySp0tPySp0tPySp0tPySp0tPySp0tPySp";
const SPOT_SECRET: &str = "python-binance-spot-secret";

/// The venv's python, or None (skipped loudly outside CI, a failure under CI).
fn venv_python() -> Option<PathBuf> {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    let msg = format!(
        "{} is missing: run `python3 -m venv tests/.venv && tests/.venv/bin/pip install -r tests/python/requirements.txt`",
        python.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED python client check: {msg}");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_binance_spot_client_works_against_the_simulator() {
    let Some(python) = venv_python() else {
        return;
    };
    let h = start(SimConfig {
        source: SourceKind::Frozen,
        tick_ms: 50,
        keys: KeysFile {
            keys: vec![KeyEntry {
                api_key: SPOT_KEY.into(),
                account: Some("pyspot".into()),
                secret: Some(SPOT_SECRET.into()),
                ed25519_public_key: None,
                permissions: Permissions {
                    reading: true,
                    futures: false,
                    spot: true,
                    withdrawals: false,
                },
                ip_restrict: false,
                allowed_ips: vec![],
            }],
            accounts: vec![],
        },
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/spot_check.py");
    let base = h.base_url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args([
                "--base-url",
                &base,
                "--api-key",
                SPOT_KEY,
                "--secret",
                SPOT_SECRET,
                "--account",
                "pyspot",
            ])
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "spot_check.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"));
    // The simulator's own book after the script: nothing open, no BTC left, the OCO's proceeds in USDT.
    let acc = h
        .admin()
        .call(aegis_testkit::sim::client::AdminCall::spot_account(
            "pyspot",
        ))
        .await
        .unwrap();
    assert_eq!(acc["openOrders"], serde_json::json!([]));
    let bal = |asset: &str| {
        acc["balances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["asset"] == asset)
            .map(|b| b["free"].as_str().unwrap().to_string())
    };
    assert_eq!(bal("BTC").as_deref(), Some("0.00000000"));
    assert_eq!(bal("USDT").as_deref(), Some("38346.02500000"));
    h.shutdown().await;
}
