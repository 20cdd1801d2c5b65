//! deploy/backup.sh -> drop the database -> deploy/restore.sh: equal counts, a valid chain, the restore-tested
//! marker; a failing backup exits non-zero and leaves nothing; a tampered backup is refused; without --no-halt the
//! restore halts the running bot (the real binary, paper mode) first and still verifies, goes on when no bot is
//! running, and refuses, touching nothing, when a bot answers but refuses the halt.

mod db_support;
mod support;

use aegis_control::db::audit::{AuditAction, AuditEntry};
use aegis_control::db::{audit_append, verify_chain};
use db_support::{admin, one, record, store_all, temp_dir, TestDb, Totals};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::{free_port, wait_for, Bot, Launcher, StatusPoll, FAST};

const PASSWORD: &str = "s3cr3t-Pw0rd";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name)
}

/// The test server uses trust auth, so any password is accepted: it is there to prove it is never printed.
fn url_with_password(db: &str) -> String {
    format!(
        "postgres://postgres:{PASSWORD}@{}/{db}?sslmode=disable",
        db_support::pg_addr()
    )
}

fn run(script_name: &str, args: &[&str], envs: &[(&str, String)]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(script(script_name)).args(args);
    // Only what we pass: no ./.env, no PG* of the developer's shell.
    cmd.env("ENV_FILE", "/dev/null");
    for v in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "DATABASE_URL",
    ] {
        cmd.env_remove(v);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains(PASSWORD),
        "{script_name} printed the password:\n{text}"
    );
    out
}

/// deploy/backup.sh of the database at `url` into `backups`, off the runtime's threads (it waits for pg_dump).
async fn backup(url: String, backups: &Path) -> Output {
    let env = vec![
        ("DATABASE_URL", url),
        ("BACKUP_DIR", backups.display().to_string()),
    ];
    tokio::task::spawn_blocking(move || run("backup.sh", &[], &env))
        .await
        .unwrap()
}

/// deploy/restore.sh `args` `dump` with `env`, off the runtime's threads.
async fn restore_with(env: Vec<(&'static str, String)>, args: &[&str], dump: &Path) -> Output {
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.push(dump.display().to_string());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run("restore.sh", &args, &env)
    })
    .await
    .unwrap()
}

/// deploy/restore.sh of `dump` into the database at `url`, unattended; the restore-tested marker goes to
/// `data_dir`.
async fn restore(url: String, data_dir: &Path, dump: &Path) -> Output {
    let env = vec![
        ("DATABASE_URL", url),
        ("DATA_DIR", data_dir.display().to_string()),
    ];
    restore_with(env, &["--no-halt", "--yes"], dump).await
}

/// The one dump deploy/backup.sh wrote to `backups`.
fn only_dump(backups: &Path) -> PathBuf {
    let dumps: Vec<PathBuf> = std::fs::read_dir(backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".sql.gz"))
        .collect();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    dumps[0].clone()
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// What every successful restore leaves: the same data, a chain that holds with the dump's `audit_rows` plus the
/// restore's own row, and the restore-tested marker in `data_dir` naming the database. The client, for more checks.
async fn assert_restored(
    db: &TestDb,
    totals: &Totals,
    audit_rows: u64,
    data_dir: &Path,
) -> tokio_postgres::Client {
    let c = db.client().await;
    assert_eq!(&Totals::from_db(&c).await, totals);
    let after = verify_chain(&c).await.unwrap();
    assert!(after.is_valid(), "{after}");
    assert_eq!(after.rows, audit_rows + 1);
    let action: String = one(
        &c,
        "SELECT action FROM audit_log ORDER BY id DESC LIMIT 1",
        &[],
    )
    .await;
    assert_eq!(action, "restore");
    let marker = std::fs::read_to_string(data_dir.join("restore-tested")).unwrap();
    assert!(marker.starts_with("tested_at=20"), "{marker}");
    assert!(
        marker.contains(&format!("database={}", db.name)),
        "{marker}"
    );
    assert!(
        marker.contains(&format!("audit_rows={audit_rows}")),
        "{marker}"
    );
    c
}

async fn filled_db(tag: &str) -> (TestDb, Totals) {
    let db = TestDb::create(tag).await;
    let records: Vec<_> = (0..2500).map(record).collect();
    let mut totals = Totals::default();
    records.iter().for_each(|r| totals.add(r));
    store_all(&db, &temp_dir(tag), &records).await;
    let c = db.client().await;
    for who in ["alice", "bob", "carol"] {
        audit_append(
            &c,
            &AuditEntry {
                actor: who,
                source_ip: "203.0.113.20",
                action: AuditAction::Login,
                detail: serde_json::json!({"ua": "test, \"quoted\"\nnew line"}),
            },
        )
        .await
        .unwrap();
    }
    (db, totals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_drop_restore_round_trip() {
    let (db, totals) = filled_db("bk").await;
    let c = db.client().await;
    let before = verify_chain(&c).await.unwrap();
    assert!(before.is_valid());
    drop(c);

    let backups = temp_dir("bk-out");
    // An old backup (40 days) that the 30-day retention must delete, and a fresh one it must keep.
    let stale = backups.join("aegis_old_20200101T000000Z.sql.gz");
    std::fs::write(&stale, b"old").unwrap();
    assert!(Command::new("touch")
        .args(["-d", "40 days ago"])
        .arg(&stale)
        .status()
        .unwrap()
        .success());
    let recent = backups.join("aegis_recent_20990101T000000Z.sql.gz");
    std::fs::write(&recent, b"recent").unwrap();

    let url = url_with_password(&db.name);
    let out = backup(url.clone(), &backups).await;
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        !stale.exists(),
        "30-day retention did not delete the old backup"
    );
    assert!(recent.exists());
    let dumps: Vec<PathBuf> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".sql.gz") && *p != recent)
        .collect();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let dump = dumps[0].clone();
    let anchor =
        std::fs::read_to_string(dump.with_extension("").with_extension("audit-head")).unwrap();
    let (head_id, head_hash) = before.head.clone().unwrap();
    assert!(
        anchor.contains(&format!("{head_id} {head_hash}")),
        "{anchor}"
    );

    // Lose the database.
    admin()
        .await
        .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", db.name))
        .await
        .unwrap();

    let data_dir = temp_dir("bk-data");
    let out = restore(url, &data_dir, &dump).await;
    assert!(out.status.success(), "{}", show(&out));
    // --no-halt: the closing words must not claim trading is halted.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Trading was not halted by this restore"),
        "{}",
        show(&out)
    );

    let c = assert_restored(&db, &totals, before.rows, &data_dir).await;
    // Same rows byte for byte: the hash of the old head is unchanged.
    let h: String = one(&c, "SELECT hash FROM audit_log WHERE id = $1", &[&head_id]).await;
    assert_eq!(h, head_hash);
    // The writer's progress came back too, so a running bot resumes exactly where the backup stood.
    let (_, recs) = aegis_control::db::writer::stored_progress(&c, "main")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recs, 2500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_backup_is_refused_and_target_untouched() {
    let (db, totals) = filled_db("bkt").await;
    let backups = temp_dir("bkt-out");
    let url = url_with_password(&db.name);
    let out = backup(url.clone(), &backups).await;
    assert!(out.status.success(), "{}", show(&out));
    let dump = only_dump(&backups);
    // Edit one audit row inside the dump: bob becomes mallory.
    let sql = String::from_utf8(
        Command::new("gzip")
            .arg("-dc")
            .arg(&dump)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let tampered = sql.replacen("\tbob\t203.0.113.20\t", "\tmallory\t203.0.113.20\t", 1);
    assert_ne!(tampered, sql);
    let bad = backups.join("tampered.sql");
    std::fs::write(&bad, tampered).unwrap();
    assert!(Command::new("gzip")
        .arg("-f")
        .arg(&bad)
        .status()
        .unwrap()
        .success());
    let bad = backups.join("tampered.sql.gz");

    let data_dir = temp_dir("bkt-data");
    let out = restore(url, &data_dir, &bad).await;
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("BROKEN at row id"),
        "{}",
        show(&out)
    );
    assert!(!data_dir.join("restore-tested").exists());
    // The live database is untouched.
    let c = db.client().await;
    assert_eq!(Totals::from_db(&c).await, totals);
    assert!(verify_chain(&c).await.unwrap().is_valid());
}

#[tokio::test]
async fn failing_backup_exits_non_zero_and_leaves_nothing() {
    let backups = temp_dir("bkf-out");
    let out = backup(url_with_password("aegis_no_such_database_here"), &backups).await;
    assert!(!out.status.success(), "{}", show(&out));
    let left: Vec<_> = std::fs::read_dir(&backups).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Auth off so `/api/status` answers without a login (the bot binds loopback only).
const BOT: Launcher = Launcher {
    env: &[],
    stop_wait: Duration::from_secs(7),
    stop_budget: None,
    client_timeout: Duration::from_secs(3),
    pin_cert: true,
};

/// Waits until `/api/health` and `/api/status` both show the engine in `state`; the status.
async fn wait_engine(
    c: &reqwest::Client,
    bot: &mut Bot,
    state: &str,
    limit: Duration,
) -> serde_json::Value {
    let what = format!("engine {state}");
    let (_, s) = wait_for(c, bot, StatusPoll::Required, limit, &what, |h, s| {
        h["engine"]["state"] == state && s["status"]["engine"] == state
    })
    .await;
    s
}

/// A filled database, its totals and audit row count, and its one backup by deploy/backup.sh.
struct BackedUp {
    db: TestDb,
    totals: Totals,
    audit_rows: u64,
    url: String,
    dump: PathBuf,
}

async fn backed_up(tag: &str) -> BackedUp {
    let (db, totals) = filled_db(tag).await;
    let audit_rows = verify_chain(&db.client().await).await.unwrap().rows;
    let backups = temp_dir(&format!("{tag}-out"));
    let url = url_with_password(&db.name);
    let out = backup(url.clone(), &backups).await;
    assert!(out.status.success(), "{}", show(&out));
    BackedUp {
        db,
        totals,
        audit_rows,
        url,
        dump: only_dump(&backups),
    }
}

/// The bot's settings live in its .env only, as on a server (/opt/aegis/.env): restore.sh must reach the bot
/// through ENV_FILE, from a working directory that has no .env of its own. The bot's directory, .env and DATA_DIR.
fn bot_env(tag: &str, port: u16) -> (PathBuf, PathBuf, PathBuf) {
    let dir = temp_dir(tag);
    let data = dir.join("data");
    let env_file = dir.join(".env");
    std::fs::write(
        &env_file,
        format!(
            "DATA_DIR={}\nAPI_PORT={port}\nAUTH_ENABLED=false\n",
            data.display()
        ),
    )
    .unwrap();
    (dir, env_file, data)
}

/// A bot started with [`bot_env`], its engine running; the bot, a client for it, its .env and DATA_DIR.
async fn running_bot(tag: &str) -> (Bot, reqwest::Client, PathBuf, PathBuf) {
    let port = free_port();
    let (dir, env_file, data) = bot_env(tag, port);
    let mut bot = BOT.start(&dir, port, 1, &FAST, &[]);
    let c = BOT.client();
    wait_engine(&c, &mut bot, "running", Duration::from_secs(20)).await;
    (bot, c, env_file, data)
}

/// deploy/restore.sh `--yes --drop-old` (halting first) of `b`'s dump into its database, with the settings of
/// `env_file` and the aegis binary under test.
async fn restore_halting(b: &BackedUp, env_file: &Path) -> Output {
    let env = vec![
        ("DATABASE_URL", b.url.clone()),
        ("ENV_FILE", env_file.display().to_string()),
        ("AEGIS_BIN", env!("CARGO_BIN_EXE_aegis").to_string()),
    ];
    restore_with(env, &["--yes", "--drop-old"], &b.dump).await
}

/// A successful restore that found no bot to halt: it said so, and does not claim trading is halted.
fn assert_no_bot_said(out: &Output) {
    assert!(out.status.success(), "{}", show(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for said in [
        "No bot is running (nothing listens on its API port)",
        "Trading was not halted by this restore",
    ] {
        assert!(stdout.contains(said), "{said:?} missing\n{}", show(out));
    }
    assert!(!stdout.contains("Trading stays halted"), "{}", show(out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_halts_the_running_bot_then_verifies() {
    let b = backed_up("bkh").await;
    let (mut bot, c, env_file, data) = running_bot("bkh-bot").await;

    let out = restore_halting(&b, &env_file).await;
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for said in [
        "Trading halted through the bot's local API.",
        "Trading stays halted: check the dashboard",
    ] {
        assert!(stdout.contains(said), "{said:?} missing\n{}", show(&out));
    }
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("could not halt"),
        "{}",
        show(&out)
    );
    let status = wait_engine(&c, &mut bot, "halted", Duration::from_secs(10)).await;
    assert_eq!(status["status"]["halt_reason"], "operator", "{status}");

    // Verified by the bot's own verifier (AEGIS_BIN), then swapped in, the marker in the bot's DATA_DIR (read from
    // ENV_FILE).
    assert!(
        stdout.contains(&format!("aegis: audit chain OK: {} rows", b.audit_rows)),
        "{}",
        show(&out)
    );
    assert_restored(&b.db, &b.totals, b.audit_rows, &data).await;
    bot.stop_cleanly();
}

/// Nothing listens on the configured API_PORT (the bot never ran: no certificate, no token): restoring is safe, so
/// the restore goes on without --no-halt and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_without_a_running_bot_proceeds_and_says_so() {
    let b = backed_up("bkn").await;
    let (_, env_file, data) = bot_env("bkn-bot", free_port());
    let out = restore_halting(&b, &env_file).await;
    assert_no_bot_said(&out);
    assert_restored(&b.db, &b.totals, b.audit_rows, &data).await;
}

/// The bot answers but refuses the halt (a stale admin.token: the bot keeps the one it wrote at start): the restore
/// must refuse before touching anything, because that bot may still be trading. Once the bot is stopped, the same
/// restore goes on (certificate and token now left over from the run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_when_the_bot_refuses_the_halt() {
    let b = backed_up("bkr").await;
    let (mut bot, c, env_file, data) = running_bot("bkr-bot").await;
    std::fs::write(data.join("admin.token"), "0".repeat(64)).unwrap();
    // A row the backup lacks: a restore that went ahead would drop it.
    let live = b.db.client().await;
    audit_append(
        &live,
        &AuditEntry {
            actor: "dave",
            source_ip: "203.0.113.21",
            action: AuditAction::Login,
            detail: serde_json::json!({}),
        },
    )
    .await
    .unwrap();

    let out = restore_halting(&b, &env_file).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for said in [
        "HTTP 401",
        "could not halt trading",
        "a bot may still be trading",
        "--no-halt",
        "nothing was restored",
    ] {
        assert!(stderr.contains(said), "{said:?} missing\n{}", show(&out));
    }
    assert!(!stderr.contains("No bot is running"), "{}", show(&out));
    assert!(!data.join("restore-tested").exists());
    assert_eq!(Totals::from_db(&live).await, b.totals);
    let chain = verify_chain(&live).await.unwrap();
    assert!(chain.is_valid(), "{chain}");
    assert_eq!(chain.rows, b.audit_rows + 1);
    let work = format!("{}_restoring", b.db.name);
    let left: i64 = one(
        &admin().await,
        "SELECT count(*) FROM pg_database WHERE datname = $1",
        &[&work],
    )
    .await;
    assert_eq!(left, 0, "{work} was created");
    // The halt was refused, so the bot trades on.
    wait_engine(&c, &mut bot, "running", Duration::from_secs(2)).await;
    drop(live);

    bot.stop_cleanly();
    let out = restore_halting(&b, &env_file).await;
    assert_no_bot_said(&out);
    assert_restored(&b.db, &b.totals, b.audit_rows, &data).await;
}
