//! Several real `aegis` binaries (testnet mode) against one in-process Binance simulator (issue 15.5):
//! - one key, one database: the second bot refuses to start (exit 3) and names the holder; a lease stolen while
//!   running halts new entries until it is ours again; after `kill -9` the key is free only once the lease expired.
//! - two keys on one IP with a low REQUEST_WEIGHT limit in the simulator: the bots share the host budget and
//!   neither is refused or banned (0 × 429 and 0 × 418 in the simulator's counts).
//!
//! Needs Postgres at 127.0.0.1:5432 (user postgres, trust auth; `AEGIS_TEST_PG` overrides) and `psql`. Build
//! first: `cargo build -p aegis-control --bin aegis`.

mod live_support;
use live_support::*;

const KEY2: &str = "S3c0ndS3c0ndS3c0ndS3c0ndS3c0ndS3c0ndS3c0ndS3c0ndS3c0ndS3c0ndS3c0";
const SECRET2: &str = "second-sub-account-hmac-secret";

fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// The bot's environment: testnet with `key`, its own DATA_DIR, the world's budget directory.
fn fleet_env(w: &World, name: &str, key: &str, secret: &str) -> Vec<(&'static str, String)> {
    let mut env = testnet_env();
    env.retain(|(k, _)| !k.starts_with("BINANCE_TESTNET_"));
    env.extend([
        ("BINANCE_TESTNET_API_KEY", key.to_string()),
        ("BINANCE_TESTNET_SECRET_KEY", secret.to_string()),
        ("FLEET_INSTANCE_NAME", name.to_string()),
        ("DATA_DIR", w.dir.join(name).display().to_string()),
        // Not /dev/shm: tests running side by side must not share one budget.
        (
            "FLEET_BUDGET_DIR",
            w.dir.join("budget").display().to_string(),
        ),
    ]);
    env
}

fn requests_with(w: &World, key: &str) -> u64 {
    w.admin(AdminCall::key_usage())[key]["requests"]
        .as_u64()
        .unwrap_or(0)
}

fn fleet_status(w: &World, db: &Db) -> String {
    let out = Command::new(bin())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db.url())
        .current_dir(&w.dir)
        .args(["--env-file", "missing.env", "fleet", "status"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn one_key_two_bots_the_second_refuses_names_the_holder_and_takes_over_only_after_expiry() {
    let _g = serial();
    let w = World::new("fleet-lease", keys(false, false));
    let db = Db::create("fleet_lease");
    let webhook = w.webhook();
    let with_db = |name: &str| {
        let mut e = fleet_env(&w, name, KEY, SECRET);
        e.push(("DATABASE_URL", db.url()));
        // Short lease (heartbeat every second) so loss and expiry show quickly.
        e.push(("FLEET_LEASE_SECONDS", "3".into()));
        e.push(("ALERT_WEBHOOK_URL", webhook.url.clone()));
        e
    };

    // A start that fails after taking the lease (its API port is taken) gives the key back on the way out, so
    // a restart needs no wait for the lease to expire.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut env = with_db("bot-early");
    env.push(("API_PORT", taken.local_addr().unwrap().port().to_string()));
    let mut early = w.bot(9, &env);
    assert_eq!(
        early.wait_exit(Duration::from_secs(20)),
        Some(1),
        "{}",
        early.log()
    );
    assert!(early.log().contains("lease released"), "{}", early.log());
    assert_eq!(
        db.sql("SELECT state FROM fleet_leases WHERE instance = 'bot-early'"),
        "released"
    );
    drop(taken);

    let mut a = w.bot(1, &with_db("bot-a"));
    a.expect_log("local and exchange state agree", Duration::from_secs(20));
    a.expect_log("lease of API key sha256:", Duration::from_secs(1));
    let fleet = &a.api("/api/status").unwrap()["fleet"];
    assert_eq!(
        (&fleet["lease"], &fleet["instance"], &fleet["mode"]),
        (
            &serde_json::json!("held"),
            &serde_json::json!("bot-a"),
            &serde_json::json!("best-effort")
        ),
        "{fleet}"
    );

    // Same key, another instance: refused before it sends anything to the exchange.
    let before = requests_with(&w, KEY);
    let mut b = w.bot(2, &with_db("bot-b"));
    assert_eq!(b.wait_exit(Duration::from_secs(20)), Some(3), "{}", b.log());
    let said = b.log();
    for part in [
        "already in use by another bot",
        "instance \"bot-a\"",
        &format!("host \"{}\"", host_name()),
        &format!("pid {}", a.child.id()),
        "has held it since 20",
        "expires in",
        "guide §1.1",
    ] {
        assert!(said.contains(part), "{part:?} missing:\n{said}");
    }
    assert!(!said.contains(KEY), "the key itself never shows:\n{said}");
    assert_eq!(
        requests_with(&w, KEY),
        before,
        "the refused bot must not have used the key"
    );
    assert!(
        !w.dir.join("bot-b").join("journal").exists(),
        "nor opened a journal"
    );

    // The fleet side by side.
    let status = fleet_status(&w, &db);
    assert!(
        status.contains("bot-a")
            && status.contains("testnet")
            && status.contains("sha256:")
            && status.contains("running")
            && status.contains("trading"),
        "{status}"
    );

    // The lease taken from under the running bot (another instance after an expiry it did not see): new
    // entries halt at its next heartbeat and the operator is alerted.
    assert_eq!(a.halt_reason(), None, "{}", a.log());
    db.sql(
        "UPDATE fleet_leases SET token = 'thief', instance = 'bot-thief', pid = 1, \
         heartbeat_at = now(), expires_at = now() + interval '1 hour'",
    );
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            a.halt_reason().as_deref() == Some("fleet_lease")
        }),
        "halt: {:?}\n{}",
        a.halt_reason(),
        a.log()
    );
    a.expect_log("another bot holds the fleet lease", Duration::from_secs(1));
    assert!(a.log().contains("bot-thief"), "{}", a.log());
    assert!(webhook.count_within("fleet_lease_lost", Duration::from_secs(5)) >= 1);
    // Not before the thief's lease expires does the bot get the key back; then entries resume by themselves.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(a.halt_reason().as_deref(), Some("fleet_lease"));
    db.sql("UPDATE fleet_leases SET expires_at = now() - interval '1 second'");
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            a.halt_reason().is_none()
        }),
        "halt: {:?}\n{}",
        a.halt_reason(),
        a.log()
    );
    assert!(fleet_status(&w, &db).contains("bot-a"));

    // kill -9: the lease is not released, so the key stays taken until it expires (3 s), then is free.
    a.signal(9);
    assert!(a.wait_exit(Duration::from_secs(5)).is_some());
    let mut c = w.bot(3, &with_db("bot-c"));
    assert_eq!(c.wait_exit(Duration::from_secs(20)), Some(3), "{}", c.log());
    assert!(c.log().contains("instance \"bot-a\""), "{}", c.log());
    assert!(
        fleet_status(&w, &db).contains("bot-a"),
        "the dead holder is listed"
    );
    std::thread::sleep(Duration::from_millis(3200));
    assert!(
        fleet_status(&w, &db).contains("expired"),
        "{}",
        fleet_status(&w, &db)
    );
    let mut d = w.bot(4, &with_db("bot-c"));
    d.expect_log("local and exchange state agree", Duration::from_secs(20));
    d.expect_log("took over an expired lease", Duration::from_secs(1));
    assert!(d.log().contains("instance \"bot-a\""), "{}", d.log());
    // A clean stop releases it.
    d.stop_cleanly(Duration::from_secs(8));
    let status = fleet_status(&w, &db);
    assert!(
        status.contains("bot-c") && status.contains("released"),
        "{status}"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM fleet_leases WHERE state = 'running'"),
        "0"
    );
}

#[test]
fn two_keys_on_one_ip_share_the_host_budget_and_neither_is_refused_or_banned() {
    let _g = serial();
    let mut k = keys(false, false);
    k.keys.push(KeyEntry {
        api_key: KEY2.into(),
        account: Some("carol".into()),
        secret: Some(SECRET2.into()),
        ed25519_public_key: None,
        permissions: Permissions::default(),
        ip_restrict: false,
        allowed_ips: vec![],
    });
    let w = World::new("fleet-weight", k);
    // A low per-IP limit: one bot's start (about 100–115 weight: account, the two account-mode reads at 30
    // each, positions, open orders, exchangeInfo, ...) fits, two together do not; the first 429 bans the IP.
    w.admin(AdminCall::set_limits(serde_json::json!({
        "weightPerMinute": 200,
        "ordersPer10s": 300,
        "ordersPerMinute": 1200,
        "banAfter429s": 0,
        "banSecs": 120
    })));
    let budget = |name: &str, key: &str, secret: &str| {
        let mut e = fleet_env(&w, name, key, secret);
        // Below the simulator's 200: the WebSocket API's logons (weight 2 each) are not charged beforehand.
        e.push(("FLEET_HOST_WEIGHT_PER_MINUTE", "180".into()));
        e
    };
    let a = w.bot(1, &budget("sub-a", KEY, SECRET));
    let b = w.bot(2, &budget("sub-b", KEY2, SECRET2));
    for bot in [&a, &b] {
        bot.expect_log("local and exchange state agree", Duration::from_secs(150));
    }
    // Both ran their whole start (snapshots included) and one of them had to wait for the other.
    std::thread::sleep(Duration::from_secs(3));
    let waited = [&a, &b]
        .iter()
        .any(|bot| bot.log().contains("host request-weight budget used up"));
    assert!(
        waited,
        "the budget must have made one bot wait:\n{}\n{}",
        a.log(),
        b.log()
    );
    let s = w.admin(AdminCall::state());
    assert_eq!(
        (&s["refusedByStatus"]["429"], &s["refusedByStatus"]["418"]),
        (&serde_json::json!(0), &serde_json::json!(0)),
        "{s}\n{}\n{}",
        a.log(),
        b.log()
    );
    assert!(requests_with(&w, KEY) > 0 && requests_with(&w, KEY2) > 0);
    assert_eq!(a.halt_reason(), None, "{}", a.log());
    assert_eq!(b.halt_reason(), None, "{}", b.log());
}
