//! Runs the headless-Chromium dashboard test (tests/browser/dashboard.test.mjs) against the real `aegis` binary
//! (`aegis run`: engine on the simulated market, journal, dashboard with auth). Needs node, /usr/bin/chromium and
//! `npm ci` in tests/browser.
//! Locally, a missing piece skips the test with a message; with `CI` set, it fails.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn dashboard_in_headless_chromium() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let browser_dir = root.join("tests/browser");
    let chromium = aegis_testkit::browser::chromium();
    let server = PathBuf::from(env!("CARGO_BIN_EXE_aegis"));
    let missing = aegis_testkit::browser::missing(&browser_dir);
    let no_server =
        (!server.exists()).then(|| format!("{} (cargo build -p aegis-control)", server.display()));
    if !aegis_testkit::browser::ready_or_skip("browser test", missing, no_server) {
        return;
    }
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(browser_dir.join("dashboard.test.mjs"))
        .current_dir(&root)
        .env("AEGIS_WEB_BIN", &server)
        .env("CHROMIUM", &chromium)
        .spawn()
        .expect("start node");
    // The test itself finishes in well under a minute; a hang must not hold CI.
    let limit = Duration::from_secs(150);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for node") {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("browser test timed out after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.success(),
        "browser test failed ({status}); screenshots in artifacts/browser/"
    );
}
