//! API key hygiene (guide §1.4, §1.5): fingerprints, key age, the key-event log, the `.env` update, and the
//! flows behind `aegis keys audit` and `aegis keys rotate`.
//!
//! A key is only ever named by its fingerprint: `sha256:` + the first 16 hex digits of SHA-256(API key). The
//! fingerprint identifies a key in `keys.json`, the event log, the audit trail and alerts; it cannot be turned
//! back into the key, and the secret key is never fingerprinted at all.
//!
//! Files (in `DATA_DIR`, mode 600, written atomically):
//! - `keys.json`: `{"keys":[{"fingerprint","environment","first_seen","first_seen_ms","last_seen_ms"}]}`.
//! - `key-events.jsonl`: one JSON object per line (`ts_ms`, `event`, `environment`, `fingerprint`, `actor`,
//!   `detail`), appended by `aegis keys rotate` and read by `aegis keys audit` and `aegis incident-report`.

use super::probe::KeyEnv;
use crate::fleet::lease::fingerprint;
use aegis_shared::config::Config;
use aegis_shared::Secret;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Production keys older than this get a rotation warning (guide §1.4: monthly).
pub const PRODUCTION_MAX_AGE_DAYS: u64 = 30;
/// Testnet keys older than this get a rotation warning (guide §1.4: every 3 months).
pub const TESTNET_MAX_AGE_DAYS: u64 = 90;
/// The key-age store's file name in `DATA_DIR`.
pub const STORE_FILE: &str = "keys.json";
/// The key-event log's file name in `DATA_DIR`.
pub const EVENTS_FILE: &str = "key-events.jsonl";
const DAY_MS: u64 = 86_400_000;

/// Key-handling failures. Never carries a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// File system trouble.
    #[error("{path}: {op}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file that is not what it should be.
    #[error("{0}")]
    Invalid(String),
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> KeyError + 'a {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// One key's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// [`fingerprint`] of the API key.
    pub fingerprint: String,
    /// Environment of the key.
    pub environment: KeyEnv,
    /// First seen, `YYYY-MM-DD` (UTC).
    pub first_seen: String,
    /// First seen, ms since epoch.
    pub first_seen_ms: u64,
    /// Last seen, ms since epoch.
    pub last_seen_ms: u64,
}

impl KeyRecord {
    /// Whole days since first seen.
    pub fn age_days(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.first_seen_ms) / DAY_MS
    }
}

/// The key-age store (`DATA_DIR/keys.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStore {
    /// Every key seen.
    pub keys: Vec<KeyRecord>,
}

fn utc_date(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| "1970-01-01".into())
}

/// The store's path for a data dir.
pub fn store_path(data_dir: &Path) -> PathBuf {
    data_dir.join(STORE_FILE)
}

impl KeyStore {
    /// Loads the store (empty when the file does not exist).
    pub fn load(data_dir: &Path) -> Result<Self, KeyError> {
        let p = store_path(data_dir);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|_| {
                KeyError::Invalid(format!(
                    "{} is not a key-age store; move it away (it holds no secrets) and run again",
                    p.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(io(&p, "read")(e)),
        }
    }

    /// Saves the store atomically, mode 600.
    pub fn save(&self, data_dir: &Path) -> Result<(), KeyError> {
        std::fs::create_dir_all(data_dir).map_err(io(data_dir, "create directory"))?;
        let p = store_path(data_dir);
        let body = serde_json::to_vec_pretty(self)
            .map_err(|e| KeyError::Invalid(format!("cannot encode the key store: {e}")))?;
        super::write_private_atomic(&p, &body).map_err(io(&p, "write"))
    }

    /// The record of `fp` in `env`.
    pub fn get(&self, env: KeyEnv, fp: &str) -> Option<&KeyRecord> {
        self.keys
            .iter()
            .find(|k| k.environment == env && k.fingerprint == fp)
    }

    /// Notes that `fp` is in use now; returns its record (new keys are first seen now).
    pub fn observe(&mut self, env: KeyEnv, fp: &str, now_ms: u64) -> KeyRecord {
        if let Some(k) = self
            .keys
            .iter_mut()
            .find(|k| k.environment == env && k.fingerprint == fp)
        {
            k.last_seen_ms = k.last_seen_ms.max(now_ms);
            return k.clone();
        }
        let r = KeyRecord {
            fingerprint: fp.to_string(),
            environment: env,
            first_seen: utc_date(now_ms),
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
        };
        self.keys.push(r.clone());
        r
    }
}

/// The rotation limit for an environment.
pub fn max_age_days(env: KeyEnv) -> u64 {
    match env {
        KeyEnv::Production => PRODUCTION_MAX_AGE_DAYS,
        KeyEnv::Testnet => TESTNET_MAX_AGE_DAYS,
    }
}

/// The warning for a key of `age_days`, if it is due for rotation.
pub fn age_warning(env: KeyEnv, fp: &str, age_days: u64) -> Option<String> {
    let max = max_age_days(env);
    (age_days > max).then(|| {
        format!(
            "the {} API key {fp} is {age_days} days old (rotate every {max} days, guide §1.4): create a new key on Binance, then `aegis keys rotate{}`",
            env.as_str(),
            if env == KeyEnv::Testnet { " --testnet" } else { "" }
        )
    })
}

/// A configured key and its age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAge {
    /// Environment.
    pub environment: KeyEnv,
    /// Fingerprint.
    pub fingerprint: String,
    /// Days since first seen.
    pub age_days: u64,
    /// The rotation warning, if due.
    pub warning: Option<String>,
}

/// The configured key pairs.
pub fn configured(cfg: &Config) -> Vec<(KeyEnv, &Secret<String>, &Secret<String>)> {
    let k = &cfg.keys;
    let mut out = Vec::new();
    if !k.api_key.is_empty() {
        out.push((KeyEnv::Production, &k.api_key, &k.secret_key));
    }
    if !k.testnet_api_key.is_empty() {
        out.push((KeyEnv::Testnet, &k.testnet_api_key, &k.testnet_secret_key));
    }
    out
}

/// Records every configured key in the store (first seen = now for new ones) and returns their ages.
pub fn observe_configured(cfg: &Config, now_ms: u64) -> Result<Vec<KeyAge>, KeyError> {
    let mut store = KeyStore::load(&cfg.data_dir)?;
    let mut out = Vec::new();
    for (env, key, _) in configured(cfg) {
        let fp = fingerprint(key);
        let rec = store.observe(env, &fp, now_ms);
        let age = rec.age_days(now_ms);
        out.push(KeyAge {
            environment: env,
            warning: age_warning(env, &fp, age),
            fingerprint: fp,
            age_days: age,
        });
    }
    if !out.is_empty() {
        store.save(&cfg.data_dir)?;
    }
    Ok(out)
}

/// One entry of the key-event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyEvent {
    /// When.
    pub ts_ms: u64,
    /// `rotated`, `verified`, `rejected`, `restrictions_bad`, `audit`, ...
    pub event: String,
    /// Environment.
    pub environment: KeyEnv,
    /// Fingerprint of the key concerned.
    pub fingerprint: String,
    /// Who (`cli:<unix user>`, `bot`).
    pub actor: String,
    /// More, never a secret.
    pub detail: serde_json::Value,
}

/// The event log's path.
pub fn events_path(data_dir: &Path) -> PathBuf {
    data_dir.join(EVENTS_FILE)
}

/// Appends an event (file created mode 600) and fsyncs it.
pub fn append_event(data_dir: &Path, ev: &KeyEvent) -> Result<(), KeyError> {
    std::fs::create_dir_all(data_dir).map_err(io(data_dir, "create directory"))?;
    let p = events_path(data_dir);
    let mut line = serde_json::to_vec(ev)
        .map_err(|e| KeyError::Invalid(format!("cannot encode a key event: {e}")))?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&p)
        .map_err(io(&p, "open"))?;
    f.write_all(&line)
        .and_then(|_| f.sync_data())
        .map_err(io(&p, "append"))
}

/// Events with `ts_ms >= since_ms` (unreadable lines are skipped).
pub fn read_events(data_dir: &Path, since_ms: u64) -> Vec<KeyEvent> {
    std::fs::read_to_string(events_path(data_dir))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<KeyEvent>(l).ok())
        .filter(|e| e.ts_ms >= since_ms)
        .collect()
}

/// Who runs this command, for the audit trail.
pub fn cli_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            // SAFETY: getuid never fails.
            format!("uid{}", unsafe { libc::getuid() })
        });
    format!("cli:{user}")
}

/// A new key pair as read from a file or stdin.
pub struct NewPair {
    /// API key.
    pub api_key: Secret<String>,
    /// Secret key.
    pub secret_key: Secret<String>,
}

impl std::fmt::Debug for NewPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPair(***)")
    }
}

fn key_shaped(s: &str) -> bool {
    (16..=256).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Parses a new key pair: either `NAME=value` lines (the `.env` names of either environment, or `API_KEY=` /
/// `SECRET_KEY=`), or two bare lines (API key, then secret). Comments and blank lines are ignored. Messages
/// never contain the input.
pub fn parse_pair(text: &str) -> Result<NewPair, KeyError> {
    let mut key = None;
    let mut secret = None;
    let mut bare = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((name, v))
                if name
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_') =>
            {
                let v = v.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
                let name = name.trim();
                if name.ends_with("API_KEY") {
                    key = Some(v);
                } else if name.ends_with("SECRET_KEY") || name == "SECRET" {
                    secret = Some(v);
                } else {
                    return Err(KeyError::Invalid(format!(
                        "unexpected setting {name} in the key input; give BINANCE_API_KEY= and BINANCE_SECRET_KEY= lines, or two bare lines"
                    )));
                }
            }
            _ => bare.push(line.to_string()),
        }
    }
    if key.is_none() && secret.is_none() && bare.len() == 2 {
        secret = bare.pop();
        key = bare.pop();
    } else if !bare.is_empty() {
        return Err(KeyError::Invalid(
            "the key input has unrecognised lines (not shown); give two lines (API key, then secret) or NAME=value lines".into(),
        ));
    }
    match (key, secret) {
        (Some(k), Some(s)) if key_shaped(&k) && key_shaped(&s) => Ok(NewPair {
            api_key: Secret::new(k),
            secret_key: Secret::new(s),
        }),
        (Some(_), Some(_)) => Err(KeyError::Invalid(
            "the new key or secret does not look like a Binance HMAC key (16-256 letters and digits)".into(),
        )),
        _ => Err(KeyError::Invalid(
            "the key input needs both the API key and the secret key".into(),
        )),
    }
}

/// Sets `vars` in the `.env` at `path` atomically (temp file mode 600, fsync, rename): existing lines for those
/// names are replaced in place (later duplicates dropped), missing ones appended; every other line is kept byte
/// for byte. Values are letters and digits only (checked by [`parse_pair`]), so no quoting is needed.
pub fn update_env_file(path: &Path, vars: &[(&str, &Secret<String>)]) -> Result<(), KeyError> {
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(path, "read")(e)),
    };
    let mut done = vec![false; vars.len()];
    let mut out = String::with_capacity(old.len() + 256);
    for line in old.lines() {
        let t = line.trim_start();
        let t = t.strip_prefix("export ").unwrap_or(t);
        let name = t.split_once('=').map(|(n, _)| n.trim());
        match name.and_then(|n| vars.iter().position(|(v, _)| *v == n)) {
            Some(i) if done[i] => {}
            Some(i) => {
                out.push_str(&format!("{}={}\n", vars[i].0, vars[i].1.expose()));
                done[i] = true;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (i, (name, v)) in vars.iter().enumerate() {
        if !done[i] {
            out.push_str(&format!("{name}={}\n", v.expose()));
        }
    }
    super::write_private_atomic(path, out.as_bytes()).map_err(io(path, "write"))
}

/// The `.env` mode bits, if the file exists.
pub fn env_mode(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::test_support::temp_dir;

    const K: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
    const S: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";

    #[test]
    fn fingerprint_is_short_stable_and_not_the_key() {
        let fp = fingerprint(&Secret::new(K.to_string()));
        assert_eq!(fp.len(), "sha256:".len() + 16);
        assert_eq!(fp, fingerprint(&Secret::new(K.to_string())));
        assert!(!K.contains(&fp[7..]));
        assert_ne!(fp, fingerprint(&Secret::new(S.to_string())));
    }

    #[test]
    fn store_tracks_first_seen_and_warns_by_environment() {
        let d = temp_dir("keystore");
        let t0 = 1_700_000_000_000;
        let mut s = KeyStore::load(&d).unwrap();
        let r = s.observe(KeyEnv::Production, "sha256:aa", t0);
        assert_eq!(r.first_seen, "2023-11-14");
        s.save(&d).unwrap();
        assert_eq!(
            std::fs::metadata(store_path(&d))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let mut s = KeyStore::load(&d).unwrap();
        // Seen again 31 days later: first seen stays.
        let r = s.observe(KeyEnv::Production, "sha256:aa", t0 + 31 * DAY_MS);
        assert_eq!(r.first_seen_ms, t0);
        assert_eq!(r.age_days(t0 + 31 * DAY_MS), 31);
        assert!(age_warning(KeyEnv::Production, "sha256:aa", 31).is_some());
        assert!(age_warning(KeyEnv::Production, "sha256:aa", 30).is_none());
        assert!(age_warning(KeyEnv::Testnet, "sha256:aa", 31).is_none());
        assert!(age_warning(KeyEnv::Testnet, "sha256:aa", 91).is_some());
        // The same fingerprint in the other environment is another record.
        s.observe(KeyEnv::Testnet, "sha256:aa", t0 + 31 * DAY_MS);
        assert_eq!(s.keys.len(), 2);
        std::fs::write(store_path(&d), "nope").unwrap();
        assert!(KeyStore::load(&d).is_err());
    }

    #[test]
    fn pair_parsing_accepts_both_shapes_and_never_echoes() {
        let p = parse_pair(&format!(
            "# new\nBINANCE_API_KEY={K}\nBINANCE_SECRET_KEY=\"{S}\"\n"
        ))
        .unwrap();
        assert_eq!(p.api_key.expose(), K);
        assert_eq!(p.secret_key.expose(), S);
        let p = parse_pair(&format!("{K}\n{S}\n")).unwrap();
        assert_eq!(p.secret_key.expose(), S);
        for bad in [
            format!("{K}\n"),
            format!("BINANCE_API_KEY={K}\nBINANCE_SECRET_KEY=short\n"),
            format!("{K}\n{S}\nextra-line-{S}\n"),
            format!("OTHER={S}\n"),
        ] {
            let e = parse_pair(&bad).unwrap_err().to_string();
            assert!(!e.contains(S) && !e.contains(K), "{e}");
        }
        assert!(!format!("{p:?}").contains(K));
    }

    #[test]
    fn env_update_is_atomic_private_and_keeps_other_lines() {
        let d = temp_dir("envupd");
        let p = d.join(".env");
        std::fs::write(
            &p,
            "# comment\nTRADING_MODE=live\nBINANCE_API_KEY=old\nJWT_SECRET=x\nBINANCE_API_KEY=dup\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let k = Secret::new(K.to_string());
        let s = Secret::new(S.to_string());
        update_env_file(&p, &[("BINANCE_API_KEY", &k), ("BINANCE_SECRET_KEY", &s)]).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            format!("# comment\nTRADING_MODE=live\nBINANCE_API_KEY={K}\nJWT_SECRET=x\nBINANCE_SECRET_KEY={S}\n")
        );
        assert_eq!(env_mode(&p), Some(0o600));
        assert!(
            std::fs::read_dir(&d).unwrap().count() == 1,
            "temp file left behind"
        );
    }

    #[test]
    fn events_append_and_filter_by_time() {
        let d = temp_dir("keyevents");
        for (ts, ev) in [(10, "rotated"), (20, "verified")] {
            append_event(
                &d,
                &KeyEvent {
                    ts_ms: ts,
                    event: ev.into(),
                    environment: KeyEnv::Production,
                    fingerprint: "sha256:00".into(),
                    actor: "cli:t".into(),
                    detail: serde_json::json!({}),
                },
            )
            .unwrap();
        }
        assert_eq!(read_events(&d, 0).len(), 2);
        assert_eq!(read_events(&d, 15)[0].event, "verified");
        assert_eq!(
            std::fs::metadata(events_path(&d))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
}
