//! Gathering the preflight's inputs from the machine: file modes, a scan for the configured keys, git history,
//! backups, the restore marker and the health-check schedule. Everything here reads; nothing changes anything.
//! The exchange (`apiRestrictions`) and Postgres (`SHOW listen_addresses`) parts are left to the caller, who owns
//! those connections.

use super::{Inputs, KeyScan};
use aegis_shared::config::Config;
use aegis_shared::Secret;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

/// Files larger than this are not scanned for keys (journals, dumps, binaries).
pub const MAX_SCAN_BYTES: u64 = 8 * 1024 * 1024;
/// Shorter values are not key-shaped; searching for them would only find noise.
pub const MIN_KEY_LEN: usize = 16;
/// Directories never scanned: build output and VCS internals (git history is checked separately).
const SKIP_DIRS: &[&str] = &[".git", "target", "node_modules", ".venv"];

/// `dir/.env` and its permission bits.
pub fn env_file(dir: &Path) -> Option<(PathBuf, u32)> {
    let p = dir.join(".env");
    let meta = std::fs::metadata(&p).ok()?;
    Some((p, meta.permissions().mode() & 0o7777))
}

/// Contents of `dir/.gitignore`.
pub fn gitignore(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(".gitignore")).ok()
}

/// True when `dir` is (the top of) a git work tree.
pub fn is_git_repo(dir: &Path) -> bool {
    dir.join(".git").exists()
}

/// The configured keys worth searching for (key-shaped: at least [`MIN_KEY_LEN`] bytes).
pub fn key_needles(cfg: &Config) -> Vec<Secret<String>> {
    let k = &cfg.keys;
    [
        &k.api_key,
        &k.secret_key,
        &k.testnet_api_key,
        &k.testnet_secret_key,
    ]
    .into_iter()
    .filter(|s| s.expose().len() >= MIN_KEY_LEN)
    .cloned()
    .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() || hay.len() < needle.len() {
        return false;
    }
    let first = needle[0];
    hay.iter()
        .enumerate()
        .take(hay.len() - needle.len() + 1)
        .any(|(i, b)| *b == first && &hay[i..i + needle.len()] == needle)
}

/// Scans `dir` (recursively, not following symlinks) for files other than `.env` that contain one of `needles`
/// verbatim, and `git log -p --all` of the repository at `dir` if there is one.
pub fn scan_for_keys(dir: &Path, needles: &[Secret<String>]) -> KeyScan {
    let mut scan = KeyScan::default();
    if needles.is_empty() {
        return scan;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            scan.skipped += 1;
            continue;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            let name = e.file_name();
            let name = name.to_string_lossy();
            let path = e.path();
            if ft.is_dir() {
                if !SKIP_DIRS.contains(&name.as_ref()) {
                    stack.push(path);
                }
                continue;
            }
            if !ft.is_file() || name == ".env" {
                continue;
            }
            match e.metadata() {
                Ok(m) if m.len() <= MAX_SCAN_BYTES => {}
                _ => {
                    scan.skipped += 1;
                    continue;
                }
            }
            match std::fs::read(&path) {
                Ok(bytes) => {
                    if needles
                        .iter()
                        .any(|n| contains(&bytes, n.expose().as_bytes()))
                    {
                        scan.files
                            .push(path.strip_prefix(dir).unwrap_or(&path).to_path_buf());
                    }
                }
                Err(_) => scan.skipped += 1,
            }
        }
    }
    scan.files.sort();
    if is_git_repo(dir) {
        scan.git_history = git_history_contains(dir, needles);
    }
    scan
}

/// `Some(true)` when `git log -p --all` of the repository at `dir` contains one of `needles`; `None` when git is
/// missing or fails.
pub fn git_history_contains(dir: &Path, needles: &[Secret<String>]) -> Option<bool> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "-p", "--all", "--no-color", "--no-ext-diff"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        needles
            .iter()
            .any(|n| contains(&out.stdout, n.expose().as_bytes())),
    )
}

/// Age of the newest backup (`*.sql.gz`, `*.sql`, `*.dump`) in `backup_dir`.
pub fn newest_backup_age(backup_dir: &Path, now: SystemTime) -> Option<Duration> {
    std::fs::read_dir(backup_dir)
        .ok()?
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.ends_with(".sql.gz") || n.ends_with(".sql") || n.ends_with(".dump")
        })
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .map(|m| now.duration_since(m).unwrap_or(Duration::ZERO))
        .min()
}

/// Age of `DATA_DIR/restore-tested` (written by `deploy/restore.sh`).
pub fn restore_tested_age(data_dir: &Path, now: SystemTime) -> Option<Duration> {
    let m = std::fs::metadata(data_dir.join("restore-tested"))
        .ok()?
        .modified()
        .ok()?;
    Some(now.duration_since(m).unwrap_or(Duration::ZERO))
}

/// True when one of the texts (crontabs, timer/service units) runs `health-check.sh` on a line that is not a
/// comment.
pub fn health_check_in(sources: &[String]) -> bool {
    sources.iter().any(|s| {
        s.lines()
            .map(str::trim)
            .any(|l| !l.starts_with('#') && l.contains("health-check.sh"))
    })
}

/// The current user's crontab, the system crontabs and systemd units that could schedule the health check.
pub fn schedule_sources() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(o) = Command::new("crontab")
        .arg("-l")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        if o.status.success() {
            out.push(String::from_utf8_lossy(&o.stdout).into_owned());
        }
    }
    let mut files = vec![PathBuf::from("/etc/crontab")];
    for dir in ["/etc/cron.d", "/etc/systemd/system"] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            files.extend(
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_none_or(|x| x == "timer" || x == "service")),
            );
        }
    }
    for f in files {
        if let Ok(s) = std::fs::read_to_string(&f) {
            out.push(s);
        }
    }
    out
}

/// Gathers every input that does not need the exchange or Postgres. `deploy_dir` is the folder the bot runs from
/// (with `.env`), `backup_dir` is `BACKUP_DIR`.
pub fn collect(cfg: &Config, deploy_dir: &Path, backup_dir: &Path) -> Inputs {
    let now = SystemTime::now();
    Inputs {
        env_file: env_file(deploy_dir),
        gitignore: gitignore(deploy_dir),
        is_git_repo: is_git_repo(deploy_dir),
        key_scan: scan_for_keys(deploy_dir, &key_needles(cfg)),
        newest_backup_age: newest_backup_age(backup_dir, now),
        restore_tested_age: restore_tested_age(&cfg.data_dir, now),
        health_check_scheduled: health_check_in(&schedule_sources()),
        ..Inputs::default()
    }
}
