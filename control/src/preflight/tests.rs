//! Preflight tests: a deliberately insecure setup gives the expected FAILs; a secure one passes everything.

use super::gather;
use super::*;
use crate::journal::test_support::config;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

const PROD_KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
const PROD_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
const TEST_KEY: &str = "tnKEYabcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTU";
const TEST_SECRET: &str = "tnSECRETabcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOP";
const STRONG_JWT: &str = "q8Vd0pX3LmZr7TnY2sKw9bHc4JfG6aUe1QzR5tW8yB3nM7kL";
const STRONG_DB_PW: &str = "Zx9kQ2mW7vR4tY8uP3sL6nB1cF5hJ0gD";

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "aegis-preflight-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(p: &Path, body: &str, mode: u32) {
    std::fs::write(p, body).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn git(dir: &Path, args: &[&str]) -> bool {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn secrets() -> Vec<&'static str> {
    vec![
        PROD_KEY,
        PROD_SECRET,
        TEST_KEY,
        TEST_SECRET,
        "weakweak",
        STRONG_JWT,
        STRONG_DB_PW,
    ]
}

fn assert_no_secret(report: &Report) {
    let table = report.table();
    let json = report.json().to_string();
    for s in secrets() {
        assert!(!table.contains(s), "table leaks {s}");
        assert!(!json.contains(s), "json leaks {s}");
    }
}

#[test]
fn insecure_setup_fails_the_checklist() {
    let dir = TempDir::new("insecure");
    let d = &dir.0;
    let env_body = format!(
        "TRADING_MODE=live\nBINANCE_API_KEY={PROD_KEY}\nBINANCE_SECRET_KEY={PROD_SECRET}\n"
    );
    write(&d.join(".env"), &env_body, 0o644);
    write(&d.join(".gitignore"), "target/\n", 0o644);
    // A key pasted into a config file, and another committed to git once and deleted afterwards.
    std::fs::create_dir_all(d.join("conf")).unwrap();
    write(
        &d.join("conf/bot.toml"),
        &format!("api_key = \"{PROD_KEY}\"\n"),
        0o644,
    );
    let have_git = git(d, &["init", "-q"]);
    if have_git {
        write(
            &d.join("old.cfg"),
            &format!("secret={PROD_SECRET}\n"),
            0o644,
        );
        assert!(git(d, &["add", "old.cfg"]));
        assert!(git(d, &["commit", "-q", "-m", "oops"]));
        std::fs::remove_file(d.join("old.cfg")).unwrap();
        assert!(git(d, &["commit", "-q", "-a", "-m", "remove"]));
    }

    let cfg = config(&[
        ("TRADING_MODE", "live"),
        ("BINANCE_API_KEY", PROD_KEY),
        ("BINANCE_SECRET_KEY", PROD_SECRET),
        ("AUTH_ENABLED", "false"),
        ("JWT_SECRET", "weakweak"),
        ("CIRCUIT_BREAKER_ENABLED", "false"),
        ("LOG_LEVEL", "debug"),
        (
            "DATABASE_URL",
            "postgres://trading_bot:postgres@127.0.0.1:5432/trading_bot",
        ),
        ("FUTURES_AUTOPILOT_MAX_POSITION_SIZE", "500"),
        ("FUTURES_AUTOPILOT_MAX_DAILY_LOSS", "500"),
        ("DATA_DIR", d.join("data").to_str().unwrap()),
    ]);
    let backups = d.join("backups");
    let mut inp = gather::collect(&cfg, d, &backups);
    inp.health_check_scheduled =
        gather::health_check_in(&["# * * * * deploy/health-check.sh\n".into()]);
    inp.api_restrictions = Some(ApiRestrictions {
        enable_withdrawals: true,
        ip_restrict: false,
        enable_spot: true,
    });
    inp.pg_listen_addresses = Some("*".into());
    inp.production_key_age_days = Some(2);
    let r = run(&cfg, &inp);

    let status = |id: &str| r.get(id).unwrap_or_else(|| panic!("no check {id}")).status;
    for id in [
        "keys.withdrawals",
        "keys.ip_restrict",
        "keys.spot_off",
        "keys.not_in_files",
        "env.gitignore",
        "env.permissions",
        "db.password",
        "db.listen_addresses",
        "backup.recent",
        "backup.restore_tested",
        "auth.jwt_secret",
        "risk.breaker",
        "log.level",
    ] {
        if id == "env.gitignore" && !have_git {
            continue; // without a repository a missing entry is only a warning
        }
        assert_eq!(status(id), Status::Fail, "{id}: {:?}", r.get(id));
    }
    // Auth off is only a warning while bound to loopback (config refuses any other bind address for now).
    assert_eq!(status("auth.enabled"), Status::Warn);
    assert_eq!(status("risk.limits"), Status::Warn);
    assert_eq!(
        status("health.scheduled"),
        Status::Warn,
        "a commented-out line does not count"
    );
    assert_eq!(status("keys.separate"), Status::Warn, "no testnet key");
    assert!(r.has_fail());

    let files = &r.get("keys.not_in_files").unwrap().detail;
    assert!(files.contains("conf/bot.toml"), "{files}");
    assert!(
        !files.contains(".env,"),
        ".env itself is where keys belong: {files}"
    );
    if have_git {
        let scan = gather::scan_for_keys(d, &gather::key_needles(&cfg));
        assert_eq!(scan.git_history, Some(true));
    }
    assert!(r
        .get("env.permissions")
        .unwrap()
        .fix
        .starts_with("chmod 600"));
    assert!(r.table().contains("TRADING_MODE=live will refuse to start"));
    assert_eq!(r.json()["summary"]["fail"], r.count(Status::Fail));
    assert_no_secret(&r);
}

#[test]
fn secure_setup_passes_everything() {
    let dir = TempDir::new("secure");
    let d = &dir.0;
    let env_body = format!(
        "TRADING_MODE=live\nBINANCE_API_KEY={PROD_KEY}\nBINANCE_SECRET_KEY={PROD_SECRET}\n\
         BINANCE_TESTNET_API_KEY={TEST_KEY}\nBINANCE_TESTNET_SECRET_KEY={TEST_SECRET}\n"
    );
    write(&d.join(".env"), &env_body, 0o600);
    write(&d.join(".gitignore"), "/target\n.env\n", 0o644);
    write(&d.join("README.md"), "keys live in .env\n", 0o644);
    if git(d, &["init", "-q"]) {
        assert!(git(d, &["add", ".gitignore", "README.md"]));
        assert!(git(d, &["commit", "-q", "-m", "init"]));
    }
    let data = d.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write(&data.join("restore-tested"), "tested_at=now\n", 0o600);
    let backups = d.join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    write(
        &backups.join("aegis_aegis_20250101T020000Z.sql.gz"),
        "x",
        0o600,
    );

    let db_url = format!("postgres://aegis_app:{STRONG_DB_PW}@127.0.0.1:5432/aegis");
    let cfg = config(&[
        ("TRADING_MODE", "live"),
        ("BINANCE_API_KEY", PROD_KEY),
        ("BINANCE_SECRET_KEY", PROD_SECRET),
        ("BINANCE_TESTNET_API_KEY", TEST_KEY),
        ("BINANCE_TESTNET_SECRET_KEY", TEST_SECRET),
        ("JWT_SECRET", STRONG_JWT),
        ("DATABASE_URL", &db_url),
        ("DATA_DIR", data.to_str().unwrap()),
    ]);
    let mut inp = gather::collect(&cfg, d, &backups);
    inp.health_check_scheduled = gather::health_check_in(&[
        "* * * * * cd /opt/aegis && deploy/health-check.sh >> /var/log/aegis/hc.log 2>&1\n".into(),
    ]);
    inp.api_restrictions = Some(ApiRestrictions {
        enable_withdrawals: false,
        ip_restrict: true,
        enable_spot: false,
    });
    inp.pg_listen_addresses = Some("localhost, 127.0.0.1".into());
    inp.production_key_age_days = Some(3);
    let r = run(&cfg, &inp);
    let not_pass: Vec<_> = r
        .results
        .iter()
        .filter(|c| c.status != Status::Pass)
        .collect();
    assert!(not_pass.is_empty(), "{not_pass:#?}");
    assert!(!r.has_fail());
    assert_eq!(r.results.len(), 18);
    assert!(r.table().contains("18 pass, 0 warn, 0 fail"));
    assert_no_secret(&r);
}

#[test]
fn individual_rules() {
    // Same secret key for both environments.
    let cfg = config(&[
        ("BINANCE_API_KEY", PROD_KEY),
        ("BINANCE_SECRET_KEY", PROD_SECRET),
        ("BINANCE_TESTNET_API_KEY", TEST_KEY),
        ("BINANCE_TESTNET_SECRET_KEY", PROD_SECRET),
    ]);
    assert_eq!(check_separate_keys(&cfg).status, Status::Fail);

    // A public bind address needs a CA certificate.
    let public: IpAddr = "203.0.113.45".parse().unwrap();
    assert_eq!(
        check_bind_tls(public, CertSource::Generated).status,
        Status::Fail
    );
    assert_eq!(
        check_bind_tls(
            public,
            CertSource::Configured {
                self_signed: Some(true)
            }
        )
        .status,
        Status::Fail
    );
    assert_eq!(
        check_bind_tls(
            public,
            CertSource::Configured {
                self_signed: Some(false)
            }
        )
        .status,
        Status::Pass
    );
    assert_eq!(check_auth(false, public).status, Status::Fail);

    // listen_addresses.
    assert_eq!(
        check_pg_listen(true, Some("0.0.0.0"), false).status,
        Status::Fail
    );
    assert_eq!(
        check_pg_listen(true, Some("localhost,10.0.0.5"), false).status,
        Status::Fail
    );
    assert_eq!(
        check_pg_listen(true, Some("::1"), false).status,
        Status::Pass
    );
    assert_eq!(check_pg_listen(true, Some("*"), true).status, Status::Pass);
    assert_eq!(check_pg_listen(true, None, false).status, Status::Warn);

    // DB passwords: short, known default, percent-encoded strong one.
    let url = |pw: &str| Secret::new(format!("postgres://u:{pw}@127.0.0.1/db"));
    assert_eq!(check_db_password(Some(&url("short"))).status, Status::Fail);
    assert_eq!(
        check_db_password(Some(&url("Password"))).status,
        Status::Fail
    );
    assert_eq!(
        check_db_password(Some(&url("aB3$xK9!mP2%23wL7%40qR5%25vN8&jH4*dF6"))).status,
        Status::Fail,
        "the guide's published example password is public"
    );
    assert_eq!(
        check_db_password(Some(&url(STRONG_DB_PW))).status,
        Status::Pass
    );
    assert_eq!(
        db_password("postgres://u:a%40b@h/d").as_deref(),
        Some("a@b")
    );
    assert_eq!(db_password("postgres://u@h/d"), None);
    let msg = check_db_password(Some(&url("short"))).detail;
    assert!(!msg.contains("short"));

    // Limits: fine at the week-1 numbers, warning above them with a young key, fine later.
    let n = |s: &str| Notional::parse(s).unwrap();
    assert_eq!(check_limits(n("50"), n("20"), Some(1)).status, Status::Pass);
    assert_eq!(
        check_limits(n("200"), n("20"), Some(1)).status,
        Status::Warn
    );
    assert_eq!(check_limits(n("200"), n("100"), None).status, Status::Warn);
    assert_eq!(
        check_limits(n("500"), n("500"), Some(40)).status,
        Status::Pass
    );

    // Backups by age.
    let h = |x: u64| Some(Duration::from_secs(x * 3600));
    assert_eq!(check_backup_recent(true, h(3)).status, Status::Pass);
    assert_eq!(check_backup_recent(true, h(50)).status, Status::Warn);
    assert_eq!(check_backup_recent(true, h(24 * 10)).status, Status::Fail);
    assert_eq!(check_backup_recent(false, None).status, Status::Pass);

    // .gitignore patterns.
    assert_eq!(check_gitignore(Some("*.env\n"), true).status, Status::Pass);
    assert_eq!(
        check_gitignore(Some(".env\n!.env\n"), true).status,
        Status::Fail
    );
    assert_eq!(check_gitignore(None, false).status, Status::Warn);

    // Log level by mode.
    assert_eq!(
        check_log_level(LogLevel::Trace, TradingMode::Live).status,
        Status::Fail
    );
    assert_eq!(
        check_log_level(LogLevel::Debug, TradingMode::Paper).status,
        Status::Warn
    );
    assert_eq!(
        check_log_level(LogLevel::Warn, TradingMode::Live).status,
        Status::Pass
    );

    // apiRestrictions not fetched: a warning in live, nothing to say otherwise.
    assert_eq!(check_withdrawals(None, true).status, Status::Warn);
    assert_eq!(check_withdrawals(None, false).status, Status::Pass);

    // The IP override turns only the IP failure into a warning; withdrawals have no override.
    let open = Some(ApiRestrictions {
        enable_withdrawals: true,
        ip_restrict: false,
        enable_spot: false,
    });
    assert_eq!(check_ip_restrict(open, true, false).status, Status::Fail);
    let allowed = check_ip_restrict(open, true, true);
    assert_eq!(allowed.status, Status::Warn);
    assert!(
        allowed.detail.contains("ALLOW_UNRESTRICTED_IP"),
        "{allowed:?}"
    );
    assert_eq!(check_withdrawals(open, true).status, Status::Fail);

    // MARKETS=futures: a key that may also trade spot fails in live, and is not judged without apiRestrictions.
    let futures = |r| check_spot_permission(r, true, Market::Futures);
    assert_eq!(futures(open).status, Status::Pass);
    let spot = open.map(|r| ApiRestrictions {
        enable_spot: true,
        ..r
    });
    let c = futures(spot);
    assert_eq!(c.status, Status::Fail);
    assert_eq!(c.id, "keys.spot_off");
    assert!(c.title.contains("MARKETS=futures"), "{c:?}");
    assert!(
        c.fix.contains("turn OFF \"Enable Spot & Margin Trading\""),
        "{c:?}"
    );
    assert_eq!(futures(None).status, Status::Warn);
    assert_eq!(
        check_spot_permission(None, false, Market::Futures).status,
        Status::Pass
    );
}

#[test]
fn spot_permission_must_be_on_for_spot_and_off_for_futures() {
    let key = |enable_spot| {
        Some(ApiRestrictions {
            enable_withdrawals: false,
            ip_restrict: true,
            enable_spot,
        })
    };
    // MARKETS=spot: a key without spot trading cannot trade; the fix turns it on and keeps the rest locked.
    let c = check_spot_permission(key(false), true, Market::Spot);
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert_eq!(c.id, "keys.spot_on");
    assert!(c.title.contains("MARKETS=spot"), "{c:?}");
    assert!(
        c.fix.contains("turn ON \"Enable Spot & Margin Trading\""),
        "{c:?}"
    );
    assert!(
        c.fix.contains("\"Enable Withdrawals\" OFF") && c.fix.contains("trusted IPs only\" ON"),
        "{c:?}"
    );
    let c = check_spot_permission(key(true), true, Market::Spot);
    assert_eq!(c.status, Status::Pass, "{c:?}");
    assert!(c.fix.is_empty());
    // The same keys judged for futures: the other way round.
    assert_eq!(
        check_spot_permission(key(true), true, Market::Futures).status,
        Status::Fail
    );
    assert_eq!(
        check_spot_permission(key(false), true, Market::Futures).status,
        Status::Pass
    );
    // Unknown restrictions: a warning in live, as for futures, under the spot id.
    let c = check_spot_permission(None, true, Market::Spot);
    assert_eq!((c.id, c.status), ("keys.spot_on", Status::Warn));

    // `run` picks the rule from MARKETS (the config loads spot in live: judging the key is preflight's job).
    let inputs = Inputs {
        api_restrictions: key(false),
        ..Inputs::default()
    };
    let spot = run(
        &config(&[("TRADING_MODE", "live"), ("MARKETS", "spot")]),
        &inputs,
    );
    assert_eq!(
        spot.get("keys.spot_on").map(|c| c.status),
        Some(Status::Fail)
    );
    assert!(spot.get("keys.spot_off").is_none());
    let futures = run(&config(&[("TRADING_MODE", "live")]), &inputs);
    assert_eq!(
        futures.get("keys.spot_off").map(|c| c.status),
        Some(Status::Pass)
    );
    assert!(futures.get("keys.spot_on").is_none());
}

#[test]
fn read_only_live_is_not_refused() {
    // Live with the production key emptied (guide §7.1, incident step one) runs read-only: not refused.
    let read_only = check_separate_keys(&config(&[("TRADING_MODE", "live")]));
    assert_eq!(read_only.status, Status::Warn);
    assert!(read_only.detail.contains("READ-ONLY"), "{read_only:?}");
}

#[test]
fn backup_and_marker_ages_come_from_mtimes() {
    let dir = TempDir::new("ages");
    let d = &dir.0;
    assert_eq!(gather::newest_backup_age(d, SystemTime::now()), None);
    write(&d.join("notes.txt"), "x", 0o600);
    assert_eq!(gather::newest_backup_age(d, SystemTime::now()), None);
    write(&d.join("aegis_db_1.sql.gz"), "x", 0o600);
    let later = SystemTime::now() + Duration::from_secs(7200);
    let age = gather::newest_backup_age(d, later).unwrap();
    assert!(
        age >= Duration::from_secs(7190) && age <= Duration::from_secs(7300),
        "{age:?}"
    );
    assert_eq!(gather::restore_tested_age(d, later), None);
    write(&d.join("restore-tested"), "tested_at=x\n", 0o600);
    assert!(gather::restore_tested_age(d, later).is_some());
}
