//! `aegis keys audit` (guide §1.5, the monthly audit as one command) and `aegis keys rotate` (guide §1.4).
//!
//! Rotation, step by step: read the new pair from a file or stdin (never argv: it would land in the shell history
//! and in `ps`), refuse a pair equal to the current one or to the other environment's, verify it against the
//! exchange (the signed account call works; production: `apiRestrictions` says withdrawals off and IP restriction
//! on), write `.env` atomically (temp file mode 600, fsync, rename), record the new fingerprint's first-seen date,
//! append a `rotated` event to `DATA_DIR/key-events.jsonl`, audit it in Postgres when `DATABASE_URL` is set, and
//! raise the expected `key_changed` alert. A running bot is then asked to switch to the new key without a restart
//! (`POST /api/local/keys/reload`, see [`super::keyreload`]).

use super::keys::{self as keymod, KeyEvent, NewPair};
use super::probe::{self, Endpoints, KeyEnv, ProbeReport};
use crate::config::env::EnvSource;
use crate::journal::{self, JournalReader, JournalRecord};
use crate::preflight::{self, gather, CheckResult, Report, Status};
use aegis_shared::config::{Config, LogOutput};
use aegis_shared::event::{AlertKind, EngineEvent, EngineState, HaltReason};
use aegis_shared::{Market, Secret};
use serde_json::json;
use std::path::Path;

/// How far back `keys audit` looks for failed-key events.
pub const AUDIT_WINDOW_DAYS: u64 = 30;

fn res(
    id: &'static str,
    title: &'static str,
    status: Status,
    detail: String,
    fix: &str,
) -> CheckResult {
    CheckResult {
        id,
        title,
        status,
        detail,
        fix: if status == Status::Pass {
            String::new()
        } else {
            fix.to_string()
        },
    }
}

/// Failed-key evidence in the journal since `since_ms`: (key alerts, key halts, -2014/-2015 order rejections).
pub fn journal_key_failures(data_dir: &Path, since_ms: u64) -> Result<(u64, u64, u64), String> {
    let mut r = JournalReader::open(&journal::dir_in(data_dir)).map_err(|e| e.to_string())?;
    let (mut alerts, mut halts, mut rejects) = (0, 0, 0);
    for e in r.records_from(0).map_err(|e| e.to_string())? {
        let Ok(e) = e else { break };
        if let JournalRecord::Engine(ev) = e.record {
            match ev {
                EngineEvent::Alert {
                    ts_ms,
                    kind: AlertKind::KeyInvalid | AlertKind::KeyRestrictionsChanged,
                } if ts_ms >= since_ms => alerts += 1,
                EngineEvent::State {
                    ts_ms,
                    state:
                        EngineState::Halted {
                            reason: HaltReason::KeyRejected,
                        },
                } if ts_ms >= since_ms => halts += 1,
                EngineEvent::Order(o)
                    if o.ts_ms >= since_ms && matches!(o.reject_code, -2014 | -2015) =>
                {
                    rejects += 1
                }
                _ => {}
            }
        }
    }
    Ok((alerts, halts, rejects))
}

/// Lines of a log file that show a refused key (`-2014`, `-2015`, `Invalid API-key`).
pub fn log_key_failures(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter(|l| l.contains("-2015") || l.contains("-2014") || l.contains("Invalid API-key"))
            .count() as u64,
    )
}

/// The exchange part of the audit for one key. The spot & margin permission is judged for `market` (on for
/// spot, off for futures; [`preflight::spot_permission_fits`]), and its id and title say which.
pub fn probe_results(which: KeyEnv, rep: &ProbeReport, market: Market) -> Vec<CheckResult> {
    let mut out: Vec<CheckResult> = Vec::new();
    let spot_id = match (which, market) {
        (KeyEnv::Production, Market::Futures) => "audit.spot_off",
        (KeyEnv::Production, Market::Spot) => "audit.spot_on",
        (KeyEnv::Testnet, Market::Futures) => "audit.testnet_spot_off",
        (KeyEnv::Testnet, Market::Spot) => "audit.testnet_spot_on",
    };
    let ids = match which {
        KeyEnv::Production => [
            "audit.key_works",
            "audit.restrictions",
            "audit.withdrawals",
            "audit.ip_restrict",
            spot_id,
        ],
        KeyEnv::Testnet => [
            "audit.testnet_key_works",
            "audit.testnet_restrictions",
            "audit.testnet_withdrawals",
            "audit.testnet_ip_restrict",
            spot_id,
        ],
    };
    out.push(match &rep.account {
        Ok(()) => res(ids[0], "Key works (signed account call)", Status::Pass, format!("{} key accepted", which.as_str()), ""),
        Err(e) if e.is_key_rejected() => res(ids[0], "Key works (signed account call)", Status::Fail, format!("{} key refused: {e}", which.as_str()),
            "check the key on Binance API Management and that this server's IP is whitelisted (guide §1.3)"),
        Err(e) => res(ids[0], "Key works (signed account call)", Status::Warn, format!("not checked: {e}"),
            "run the audit where the exchange is reachable"),
    });
    match &rep.restrictions {
        None => out.push(res(
            ids[1],
            "Withdrawals off, IP restricted (apiRestrictions)",
            Status::Warn,
            format!("{} has no apiRestrictions endpoint", which.as_str()),
            "check the key's permissions on the Binance website",
        )),
        Some(Err(e)) => out.push(res(
            ids[1],
            "Withdrawals off, IP restricted (apiRestrictions)",
            if e.is_key_rejected() {
                Status::Fail
            } else {
                Status::Warn
            },
            format!("not checked: {e}"),
            "check the key's permissions on Binance API Management",
        )),
        Some(Ok(r)) => {
            out.push(res(
                ids[2],
                "Withdrawals disabled",
                if r.enable_withdrawals { Status::Fail } else { Status::Pass },
                format!("enableWithdrawals={}", r.enable_withdrawals),
                "Binance > API Management > edit the key > turn OFF \"Enable Withdrawals\" (guide §1.2)",
            ));
            out.push(res(
                ids[3],
                "IP restriction on",
                if r.ip_restrict { Status::Pass } else { Status::Fail },
                format!("ipRestrict={}", r.ip_restrict),
                "Binance > API Management > restrict access to this server's static IP (guide §1.3)",
            ));
            let (title, fix) = match market {
                Market::Futures => (
                    "Spot & margin trading OFF (MARKETS=futures)",
                    preflight::SPOT_OFF_FIX,
                ),
                Market::Spot => (
                    "Spot & margin trading ON (MARKETS=spot)",
                    preflight::SPOT_ON_FIX,
                ),
            };
            out.push(res(
                ids[4],
                title,
                if preflight::spot_permission_fits(r.enable_spot, market) {
                    Status::Pass
                } else {
                    Status::Fail
                },
                format!("enableSpotAndMarginTrading={}", r.enable_spot),
                fix,
            ));
        }
    }
    out
}

/// Runs the monthly audit.
pub async fn audit(cfg: &Config, env: &EnvSource, now_ms: u64) -> Report {
    let mut results = Vec::new();
    let keys = keymod::configured(cfg);
    // 1. Key set, and in .env only.
    let in_file = |name: &str| {
        std::fs::read_to_string(&env.path)
            .map(|t| {
                t.lines().any(|l| {
                    l.trim_start().starts_with(&format!("{name}="))
                        && l.trim().len() > name.len() + 1
                })
            })
            .unwrap_or(false)
    };
    if keys.is_empty() {
        results.push(res(
            "audit.key_set",
            "API key set",
            Status::Warn,
            "no Binance key configured (paper mode needs none)".into(),
            "set BINANCE_API_KEY/BINANCE_SECRET_KEY (or the testnet pair) in .env",
        ));
    }
    for (which, _, _) in &keys {
        let (kv, _) = which.vars();
        results.push(if in_file(kv) {
            res("audit.key_set", "API key set in .env", Status::Pass, format!("{kv} is set in {}", env.path.display()), "")
        } else {
            res("audit.key_set", "API key set in .env", Status::Warn,
                format!("{kv} comes from the process environment, not {}", env.path.display()),
                "keep keys in .env (mode 600) or a systemd EnvironmentFile, never in shell profiles or unit files")
        });
    }
    let needles = gather::key_needles(cfg);
    let mut scan = gather::scan_for_keys(&env.deploy_dir(), &needles);
    if let Some(name) = env.path.file_name() {
        scan.files.retain(|f| f.as_os_str() != name);
    }
    results.push(crate::preflight::check_key_not_in_files(&scan));
    // 2. .env mode.
    results.push(crate::preflight::check_env_permissions(
        keymod::env_mode(&env.path)
            .map(|m| (env.path.clone(), m))
            .as_ref(),
    ));
    // 3. Age.
    match keymod::observe_configured(cfg, now_ms) {
        Ok(ages) => results.push(super::preflight::key_age_check(&ages)),
        Err(e) => results.push(res(
            "keys.age",
            "API keys rotated on schedule",
            Status::Warn,
            format!("unknown: {e}"),
            "check DATA_DIR permissions",
        )),
    }
    // 4. Works + apiRestrictions.
    for (which, key, secret) in &keys {
        let rep = probe::probe(&Endpoints::for_env(cfg, *which), key, secret).await;
        results.extend(probe_results(*which, &rep, cfg.market));
    }
    // 5. Failed attempts.
    let since = now_ms.saturating_sub(AUDIT_WINDOW_DAYS * 86_400_000);
    match journal_key_failures(&cfg.data_dir, since) {
        Ok((a, h, r)) => {
            let n = a + h + r;
            results.push(res(
                "audit.failed_attempts",
                "No refused-key events (last 30 days)",
                if n == 0 { Status::Pass } else { Status::Warn },
                format!("journal: {a} key alerts, {h} key halts, {r} orders refused with -2014/-2015"),
                "run `aegis incident-report --since 30d` and check the key's IP whitelist; if the refusals are not yours, rotate the key",
            ));
        }
        Err(e) => results.push(res(
            "audit.failed_attempts",
            "No refused-key events (last 30 days)",
            Status::Warn,
            format!("journal not readable: {e}"),
            "run the audit with the bot's DATA_DIR",
        )),
    }
    if let LogOutput::File(p) = &cfg.log.output {
        if let Some(n) = log_key_failures(p) {
            results.push(res(
                "audit.log_failures",
                "No refused-key lines in the log file",
                if n == 0 { Status::Pass } else { Status::Warn },
                format!("{n} lines with -2014/-2015/Invalid API-key in {}", p.display()),
                "read those lines; repeated refusals mean a wrong key, a changed IP or someone else trying",
            ));
        }
    }
    // 6. What only a person can check.
    results.push(res(
        "audit.ip_history",
        "API access history reviewed on Binance",
        Status::Warn,
        "Binance's IP access history has no API".into(),
        "Binance > API Management > View Account IP Access History: every IP must be this server's (guide §1.5)",
    ));
    let r = Report {
        trading_mode: cfg.trading_mode.as_str(),
        results,
    };
    for (which, key, _) in &keys {
        let _ = keymod::append_event(
            &cfg.data_dir,
            &KeyEvent {
                ts_ms: now_ms,
                event: "audited".into(),
                environment: *which,
                fingerprint: crate::fleet::lease::fingerprint(key),
                actor: keymod::cli_actor(),
                detail: json!({"pass": r.count(Status::Pass), "warn": r.count(Status::Warn), "fail": r.count(Status::Fail)}),
            },
        );
    }
    r
}

/// Options of a rotation.
#[derive(Debug, Clone, Copy)]
pub struct RotateOptions {
    /// Which pair.
    pub which: KeyEnv,
    /// Skip the exchange check (offline emergency); recorded as unverified.
    pub no_verify: bool,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// Old fingerprint, if there was a key.
    pub old: Option<String>,
    /// New fingerprint.
    pub new: String,
    /// Verified against the exchange.
    pub verified: bool,
    /// Notes for the operator.
    pub notes: Vec<String>,
}

/// Verifies and installs a new key pair (see the module docs). Never prints or returns a key.
pub async fn rotate(
    cfg: &Config,
    env: &EnvSource,
    pair: NewPair,
    opts: RotateOptions,
    now_ms: u64,
) -> Result<Rotated, String> {
    let k = &cfg.keys;
    let (current, other) = match opts.which {
        KeyEnv::Production => (&k.api_key, &k.testnet_api_key),
        KeyEnv::Testnet => (&k.testnet_api_key, &k.api_key),
    };
    let new_fp = crate::fleet::lease::fingerprint(&pair.api_key);
    let old_fp = (!current.is_empty()).then(|| crate::fleet::lease::fingerprint(current));
    if old_fp.as_deref() == Some(new_fp.as_str()) {
        return Err(format!(
            "the new {} key ({new_fp}) is the key already configured: create a new key on Binance first",
            opts.which.as_str()
        ));
    }
    if !other.is_empty() && other.expose() == pair.api_key.expose() {
        return Err("the new key is the other environment's key: testnet and production keys must differ (guide §1.1)".into());
    }
    let mut notes = Vec::new();
    let verified = if opts.no_verify {
        notes.push("NOT verified against the exchange (--no-verify)".into());
        false
    } else {
        let ends = Endpoints::for_env(cfg, opts.which);
        let rep = probe::probe(&ends, &pair.api_key, &pair.secret_key).await;
        if let Err(e) = &rep.account {
            return Err(format!(
                "the new key failed the account check at {}: {e}; .env unchanged",
                ends.futures
            ));
        }
        match &rep.restrictions {
            Some(Ok(r)) if r.enable_withdrawals => {
                return Err("the new key can WITHDRAW funds: turn off \"Enable Withdrawals\" on Binance first (guide §1.2); .env unchanged".into())
            }
            Some(Ok(r)) if !r.ip_restrict => {
                return Err("the new key is not restricted to trusted IPs: restrict it to this server's IP on Binance first (guide §1.3); .env unchanged".into())
            }
            // The permission this bot's market needs, no more (the same rule as preflight and the audit).
            Some(Ok(r)) if !preflight::spot_permission_fits(r.enable_spot, cfg.market) => {
                return Err(format!(
                    "the new key does not fit MARKETS={}: {}; .env unchanged",
                    cfg.market.as_str(),
                    match cfg.market {
                        Market::Futures => preflight::SPOT_OFF_FIX,
                        Market::Spot => preflight::SPOT_ON_FIX,
                    }
                ))
            }
            Some(Err(e)) => {
                return Err(format!(
                    "apiRestrictions of the new key could not be read: {e}; .env unchanged"
                ))
            }
            Some(Ok(r)) => notes.push(format!(
                "exchange: account OK, withdrawals off, IP restricted, spot & margin {} (MARKETS={})",
                if r.enable_spot { "on" } else { "off" },
                cfg.market.as_str()
            )),
            None => notes.push(format!(
                "exchange: account OK ({} has no apiRestrictions; check permissions on the website)",
                opts.which.as_str()
            )),
        }
        true
    };
    let (kv, sv) = opts.which.vars();
    keymod::update_env_file(&env.path, &[(kv, &pair.api_key), (sv, &pair.secret_key)])
        .map_err(|e| format!("cannot update {}: {e}", env.path.display()))?;
    let mut store = keymod::KeyStore::load(&cfg.data_dir).map_err(|e| e.to_string())?;
    store.observe(opts.which, &new_fp, now_ms);
    store.save(&cfg.data_dir).map_err(|e| e.to_string())?;
    let detail =
        json!({"old_fingerprint": old_fp, "new_fingerprint": new_fp, "verified": verified});
    keymod::append_event(
        &cfg.data_dir,
        &KeyEvent {
            ts_ms: now_ms,
            event: "rotated".into(),
            environment: opts.which,
            fingerprint: new_fp.clone(),
            actor: keymod::cli_actor(),
            detail: detail.clone(),
        },
    )
    .map_err(|e| e.to_string())?;
    if let Some(url) = &cfg.database_url {
        let fut = async {
            let mut c = crate::db::connect(url.expose()).await?;
            crate::db::records::record_key_event(
                &mut c,
                &keymod::cli_actor(),
                "local",
                "rotated",
                opts.which.as_str(),
                Some(&new_fp),
                detail,
            )
            .await
        };
        match tokio::time::timeout(std::time::Duration::from_secs(5), fut).await {
            Ok(Ok(_)) => notes.push("audited in Postgres (key_events + audit_log)".into()),
            Ok(Err(e)) => notes.push(format!(
                "NOT audited in Postgres: {e} (the local key-event log has it)"
            )),
            Err(_) => notes.push(
                "NOT audited in Postgres: no answer within 5 s (the local key-event log has it)"
                    .into(),
            ),
        }
    }
    Ok(Rotated {
        old: old_fp,
        new: new_fp,
        verified,
        notes,
    })
}

/// Reads the key input: a file (warned about when others can read it) or stdin. Never argv.
pub fn read_input(from_file: Option<&Path>) -> Result<NewPair, String> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let text = match from_file {
        Some(p) => {
            let m = std::fs::metadata(p)
                .map_err(|e| format!("cannot read {}: {}", p.display(), e.kind()))?;
            if m.permissions().mode() & 0o077 != 0 {
                eprintln!(
                    "aegis: warning: {} is readable by group or others; delete it (shred -u) after the rotation",
                    p.display()
                );
            }
            std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {}", p.display(), e.kind()))?
        }
        None => {
            // SAFETY: isatty only inspects fd 0.
            if unsafe { libc::isatty(0) } == 1 {
                eprintln!("Paste the new API key, Enter, the new secret key, Enter, then Ctrl-D:");
            }
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read stdin: {}", e.kind()))?;
            s
        }
    };
    let text = Secret::new(text);
    keymod::parse_pair(text.expose()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::ApiRestrictions;

    fn rep(enable_spot: bool) -> ProbeReport {
        ProbeReport {
            account: Ok(()),
            restrictions: Some(Ok(ApiRestrictions {
                enable_withdrawals: false,
                ip_restrict: true,
                enable_spot,
            })),
        }
    }

    fn spot_row(which: KeyEnv, enable_spot: bool, market: Market) -> CheckResult {
        let rows = probe_results(which, &rep(enable_spot), market);
        // Nothing else in the audit depends on the market.
        for r in &rows {
            if !r.title.starts_with("Spot & margin") {
                assert_eq!(r.status, Status::Pass, "{r:?}");
            }
        }
        rows.into_iter()
            .find(|r| r.title.starts_with("Spot & margin"))
            .unwrap_or_else(|| panic!("no spot row for {market:?}"))
    }

    #[test]
    fn the_audit_judges_the_spot_permission_for_the_configured_market() {
        // MARKETS=futures: off passes, on fails with the fix to turn it off.
        let r = spot_row(KeyEnv::Production, false, Market::Futures);
        assert_eq!((r.id, r.status), ("audit.spot_off", Status::Pass));
        assert!(r.title.contains("MARKETS=futures"), "{r:?}");
        let r = spot_row(KeyEnv::Production, true, Market::Futures);
        assert_eq!((r.id, r.status), ("audit.spot_off", Status::Fail));
        assert!(r.fix.contains("turn OFF"), "{r:?}");
        // MARKETS=spot: the other way round, and the fix keeps withdrawals off and the IP restriction on.
        let r = spot_row(KeyEnv::Production, true, Market::Spot);
        assert_eq!((r.id, r.status), ("audit.spot_on", Status::Pass));
        assert!(
            r.title.contains("MARKETS=spot") && r.fix.is_empty(),
            "{r:?}"
        );
        let r = spot_row(KeyEnv::Production, false, Market::Spot);
        assert_eq!((r.id, r.status), ("audit.spot_on", Status::Fail));
        assert!(
            r.fix.contains("turn ON \"Enable Spot & Margin Trading\"")
                && r.fix.contains("\"Enable Withdrawals\" OFF")
                && r.fix.contains("trusted IPs only\" ON"),
            "{r:?}"
        );
        // The testnet key's rows carry their own ids.
        let r = spot_row(KeyEnv::Testnet, false, Market::Spot);
        assert_eq!((r.id, r.status), ("audit.testnet_spot_on", Status::Fail));
        let r = spot_row(KeyEnv::Testnet, false, Market::Futures);
        assert_eq!((r.id, r.status), ("audit.testnet_spot_off", Status::Pass));
    }
}
