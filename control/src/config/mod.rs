//! Loading the configuration: `.env` plus the process environment (the environment wins), the `.env`
//! permission rule, and command-line overrides. Parsing and validation live in [`aegis_shared::config`].

pub mod env;

use crate::cli::RunArgs;
use aegis_engine::risk::allocation::Allocation;
use aegis_shared::config::{keys, trading_mode_from, Config, ConfigError, FeedKind};
use aegis_shared::TradingMode;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A loaded configuration and what the operator should hear about it.
#[derive(Debug)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// The `.env` file that was read, if one existed.
    pub env_file: Option<PathBuf>,
    /// Warnings to shout at start (e.g. a `.env` readable by others in paper mode).
    pub warnings: Vec<String>,
}

/// Reads `env_file` (if it exists) without touching the process environment.
fn read_env_file(path: &Path) -> Result<Option<HashMap<String, String>>, ConfigError> {
    if !path.exists() {
        return Ok(None);
    }
    let iter = dotenvy::from_path_iter(path).map_err(|e| {
        ConfigError::new(
            ".env",
            Some(&path.display().to_string()),
            format!(
                "cannot read the file ({}); check the path and its permissions",
                io_kind(&e)
            ),
        )
    })?;
    let mut map = HashMap::new();
    for item in iter {
        match item {
            Ok((k, v)) => {
                map.insert(k, v);
            }
            // The offending line is not shown: it may hold a secret.
            Err(_) => {
                return Err(ConfigError::new(
                    ".env",
                    Some(&path.display().to_string()),
                    format!(
                        "the line after setting number {} cannot be parsed (line not shown, it may hold a secret); use KEY=value, quote values with spaces",
                        map.len()
                    ),
                ))
            }
        }
    }
    Ok(Some(map))
}

fn io_kind(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::Io(io) => io.kind().to_string(),
        _ => "unreadable".to_string(),
    }
}

/// `MODE_ALLOCATION_FILE` (or the guide's defaults). A bad file is a [`ConfigError`] whose message names the
/// file and the fix, e.g. percents adding up to more than 100.
pub fn allocation(cfg: &Config) -> Result<Allocation, ConfigError> {
    match &cfg.mode_allocation_file {
        None => Ok(Allocation::default()),
        Some(p) => Allocation::from_file(p).map_err(|e| {
            ConfigError::new(
                keys::MODE_ALLOCATION_FILE,
                Some(&p.display().to_string()),
                e.to_string(),
            )
        }),
    }
}

/// Loads and validates the configuration. `check` is the validation of the layers above this one (the
/// dashboard's settings, `crate::dashboard::web_config`), passed in so this base module does not import them; it
/// runs at the same point as always, so the first error reported stays the same.
pub fn load(
    env_file: &Path,
    run: &RunArgs,
    check: impl FnOnce(&Config) -> Result<(), ConfigError>,
) -> Result<Loaded, ConfigError> {
    let file = read_env_file(env_file)?;
    let lookup = |k: &str| -> Option<String> {
        std::env::var(k)
            .ok()
            .or_else(|| file.as_ref().and_then(|m| m.get(k).cloned()))
    };
    let mut warnings = Vec::new();
    if file.is_some() {
        let mode = std::fs::metadata(env_file)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        if mode & 0o077 != 0 {
            let trading_mode = trading_mode_from(lookup)?;
            let fix = format!(
                "{} is readable by group or others (mode {:04o}) and holds secrets: run `chmod 600 {}`",
                env_file.display(),
                mode,
                env_file.display()
            );
            if trading_mode == TradingMode::Live {
                return Err(ConfigError::new(
                    ".env",
                    Some(&format!("mode {mode:04o}")),
                    format!("{fix} (refused in live mode)"),
                ));
            }
            warnings.push(format!(
                "SECURITY WARNING: {fix}; this is refused in live mode"
            ));
        }
    }
    let mut config = Config::from_lookup(lookup)?;
    if let Some(note) = paper_jwt_secret(&mut config)? {
        warnings.push(note);
    }
    // Checked here, before anything starts, so the operator gets one line and exit code 2; the runtime builds
    // both again from the same values.
    check(&config)?;
    allocation(&config)?;
    for q in &run.quote_usd {
        // The command line wins over QUOTE_USD for the same asset.
        config.quote_usd.retain(|c| c.asset != q.asset);
        config.quote_usd.push(*q);
    }
    if let Some(file) = &run.replay {
        let speed = run.speed.unwrap_or(1.0);
        if !(speed.is_finite() && speed > 0.0) {
            return Err(ConfigError::new(
                "--speed",
                Some(&speed.to_string()),
                "use a positive speed multiplier, e.g. 1 or 10",
            ));
        }
        config.feed = FeedKind::Replay {
            file: file.clone(),
            speed,
        };
    }
    if let FeedKind::Replay { file, .. } = &config.feed {
        if !file.is_file() {
            return Err(ConfigError::new(
                "REPLAY_FILE",
                Some(&file.display().to_string()),
                "the replay file does not exist; give a file of combined-stream JSON lines",
            ));
        }
    }
    Ok(Loaded {
        config,
        env_file: file.map(|_| env_file.to_path_buf()),
        warnings,
    })
}

/// File in `DATA_DIR` holding the dashboard secret generated for paper mode.
pub const GENERATED_JWT_SECRET_FILE: &str = "jwt.secret";

/// Paper mode only: when `JWT_SECRET` is not set, use a random per-installation secret kept in
/// `DATA_DIR/jwt.secret` (mode 600), created once. A first `aegis run` on a fresh machine then works with no
/// configuration at all while the dashboard stays authenticated. This is not a default credential: every
/// installation gets its own 48 random bytes, and testnet/live still require an explicit `JWT_SECRET`.
/// The `.env.example` placeholder is never replaced here; it stays refused.
fn paper_jwt_secret(config: &mut Config) -> Result<Option<String>, ConfigError> {
    use base64::Engine as _;
    use rand::RngCore;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if config.trading_mode != TradingMode::Paper
        || !config.auth.enabled
        || config.auth.jwt_secret.is_some()
    {
        return Ok(None);
    }
    let path = config.data_dir.join(GENERATED_JWT_SECRET_FILE);
    let fail = |what: &str, e: std::io::Error| {
        ConfigError::new(
            "JWT_SECRET",
            None,
            format!(
                "JWT_SECRET is not set and {what} {} failed ({}); set JWT_SECRET in .env (openssl rand -base64 48)",
                path.display(),
                e.kind()
            ),
        )
    };
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| fail("tightening", e))?;
        }
        config.auth.jwt_secret = Some(aegis_shared::Secret::new(existing.trim().to_string()));
        return Ok(None);
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| fail("creating the data dir for", e))?;
    let mut raw = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let secret = base64::engine::general_purpose::STANDARD.encode(raw);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| fail("creating", e))?;
    f.write_all(secret.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| fail("writing", e))?;
    config.auth.jwt_secret = Some(aegis_shared::Secret::new(secret));
    Ok(Some(format!(
        "JWT_SECRET is not set: paper mode generated a random dashboard secret in {} (mode 600). \
         Set JWT_SECRET in .env before using testnet or live.",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_shared::config::{keys, JWT_SECRET_PLACEHOLDER};

    fn example() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../.env.example")
    }

    #[test]
    fn env_example_documents_every_key_and_is_valid() {
        let text = std::fs::read_to_string(example()).unwrap();
        for k in keys::ALL {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{k}="))),
                "{k} missing from .env.example"
            );
        }
        let map = read_env_file(&example()).unwrap().unwrap();
        let cfg = Config::from_lookup(|k| map.get(k).cloned()).unwrap();
        assert_eq!(cfg.trading_mode, TradingMode::Paper);
        // The JWT placeholder is recognisably a placeholder, so the auth layer can refuse it.
        assert_eq!(
            cfg.auth.jwt_secret.as_ref().map(|s| s.expose().as_str()),
            Some(JWT_SECRET_PLACEHOLDER)
        );
    }

    #[test]
    fn paper_mode_without_jwt_secret_gets_a_private_random_one_and_keeps_it() {
        let d = crate::journal::test_support::temp_dir("jwtgen");
        let data = d.join("data");
        let data_s = data.display().to_string();
        let lookup = |k: &str| (k == keys::DATA_DIR).then(|| data_s.clone());
        let mut cfg = Config::from_lookup(lookup).unwrap();
        assert!(cfg.auth.jwt_secret.is_none());
        let note = paper_jwt_secret(&mut cfg)
            .unwrap()
            .expect("a note about the generated secret");
        let secret = cfg.auth.jwt_secret.as_ref().unwrap().expose().clone();
        assert!(!note.contains(&secret), "the note must not show the secret");
        assert!(secret.len() >= 32);
        let file = data.join(GENERATED_JWT_SECRET_FILE);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            crate::auth::validate_jwt_secret(&aegis_shared::Secret::new(secret.clone())).is_ok()
        );
        // A restart reuses it (sessions survive), and says nothing.
        let mut again = Config::from_lookup(lookup).unwrap();
        assert!(paper_jwt_secret(&mut again).unwrap().is_none());
        assert_eq!(again.auth.jwt_secret.as_ref().unwrap().expose(), &secret);
        // Testnet never gets one generated.
        let mut t = Config::from_lookup(|k: &str| match k {
            k if k == keys::DATA_DIR => Some(data_s.clone()),
            "TRADING_MODE" => Some("testnet".into()),
            _ => None,
        })
        .unwrap();
        assert!(paper_jwt_secret(&mut t).unwrap().is_none());
        assert!(t.auth.jwt_secret.is_none());
    }

    #[test]
    fn ws_rollover_secs_defaults_to_23h50m_and_refuses_values_outside_1_to_86399() {
        let with = |v: Option<&str>| {
            let v = v.map(str::to_string);
            Config::from_lookup(move |k: &str| {
                (k == keys::WS_ROLLOVER_SECS).then(|| v.clone()).flatten()
            })
        };
        assert_eq!(with(None).unwrap().exchange.ws_rollover_secs, 85_800);
        assert_eq!(with(Some("1")).unwrap().exchange.ws_rollover_secs, 1);
        assert_eq!(
            with(Some("86399")).unwrap().exchange.ws_rollover_secs,
            86_399
        );
        for bad in ["0", "86400", "-5", "1h", "abc", "1.5"] {
            let e = with(Some(bad)).unwrap_err();
            assert_eq!(e.key, keys::WS_ROLLOVER_SECS, "{bad}");
            assert!(e.to_string().contains("86399"), "{e}");
        }
    }

    #[test]
    fn unparsable_env_line_is_reported_without_its_content() {
        let d = crate::journal::test_support::temp_dir("envparse");
        let p = d.join(".env");
        std::fs::write(&p, "A=1\nBINANCE_SECRET_KEY='unterminated-s3cret\n").unwrap();
        let e = read_env_file(&p).unwrap_err();
        assert_eq!(e.key, ".env");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(read_env_file(&d.join("missing")).unwrap().is_none());
    }
}
