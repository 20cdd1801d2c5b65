//! What the headless-Chromium tests need on the machine (node, Debian's chromium, `npm ci` in tests/browser),
//! checked the same way by every test that drives a browser.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The chromium binary the browser tests use (`CHROMIUM`, default `/usr/bin/chromium`).
pub fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// What is missing to run the browser tests in `browser_dir` (empty = ready), each with how to install it.
pub fn missing(browser_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if Command::new("node").arg("--version").output().is_err() {
        out.push("node (apt-get install -y nodejs npm)".to_string());
    }
    let chromium = chromium();
    if !PathBuf::from(&chromium).exists() {
        out.push(format!("{chromium} (apt-get install -y chromium)"));
    }
    if !browser_dir.join("node_modules/playwright-core").exists() {
        out.push("tests/browser/node_modules (cd tests/browser && npm ci)".into());
    }
    out
}

/// Whether a browser test may run: true when nothing is missing; otherwise it panics under CI (which installs
/// everything, so a gap there is a failure) and, locally, prints why it skips and returns false.
pub fn ready_or_skip(what: &str, mut missing: Vec<String>, extra: Option<String>) -> bool {
    missing.extend(extra);
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{what} cannot run; missing: {}", missing.join(", "));
    assert!(std::env::var_os("CI").is_none(), "{msg}");
    eprintln!("SKIPPED: {msg}");
    false
}
