//! The fleet lease per API-key fingerprint on the real Postgres (issue 15.5): a second instance is refused and
//! told who holds the key, takes it over only after expiry, and the first one learns it lost it.

mod db_support;

use aegis_control::fleet::lease::{self, Acquired, Identity, Renewed};
use aegis_control::fleet::{guard, FleetError, FleetSettings, LeaseMode};
use db_support::{one, TestDb};
use std::time::Duration;

fn id(instance: &str, token: &str) -> Identity {
    Identity {
        fingerprint: "sha256:00112233aabbccdd".into(),
        environment: "testnet".into(),
        instance: instance.into(),
        host: "box1".into(),
        pid: 4242,
        token: token.into(),
        version: "9.9.9".into(),
        records_db: None,
    }
}

#[tokio::test]
async fn a_second_instance_is_refused_until_the_lease_expires_then_takes_it_over() {
    let db = TestDb::create("lease").await;
    let mut c = db.migrated_client().await;
    let (a, b) = (id("bot-a", "tok-a"), id("bot-b", "tok-b"));
    let ttl = 2.0;

    assert_eq!(
        lease::acquire(&mut c, &a, ttl).await.unwrap(),
        Acquired::Taken { previous: None }
    );
    // Taking it again with the same token is a no-op success (a retry after a lost answer).
    assert!(matches!(
        lease::acquire(&mut c, &a, ttl).await.unwrap(),
        Acquired::Taken { previous: None }
    ));
    let Acquired::Held(holder) = lease::acquire(&mut c, &b, ttl).await.unwrap() else {
        panic!("the second instance must be refused")
    };
    assert_eq!(
        (holder.instance.as_str(), holder.host.as_str(), holder.pid),
        ("bot-a", "box1", 4242)
    );
    let said = holder.describe();
    for part in ["bot-a", "box1", "pid 4242", "since 20", "expires in"] {
        assert!(said.contains(part), "{part:?} missing from {said}");
    }
    assert!(holder.is_held() && holder.status() == "running");

    // Heartbeats keep it: after more than one lease time of renewals the second instance is still refused.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            lease::renew(&c, &a, ttl, false).await.unwrap(),
            Renewed::Kept
        );
        assert!(matches!(
            lease::acquire(&mut c, &b, ttl).await.unwrap(),
            Acquired::Held(_)
        ));
    }

    // No heartbeat for longer than the lease time: expired, and only now may the second instance take it.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let rows = lease::list(&c).await.unwrap();
    assert_eq!(rows[0].status(), "expired", "{rows:?}");
    let Acquired::Taken {
        previous: Some(prev),
    } = lease::acquire(&mut c, &b, ttl).await.unwrap()
    else {
        panic!("an expired lease must be taken over")
    };
    assert_eq!(prev.instance, "bot-a");
    // The first instance's next heartbeat learns that it lost the key, and to whom.
    let Renewed::Lost(Some(now)) = lease::renew(&c, &a, ttl, false).await.unwrap() else {
        panic!("the old holder must learn it lost the lease")
    };
    assert_eq!(now.instance, "bot-b");
    assert!(matches!(
        lease::acquire(&mut c, &a, ttl).await.unwrap(),
        Acquired::Held(_)
    ));

    // A clean stop releases it: the next start needs no wait.
    assert!(lease::release(&c, &b).await.unwrap());
    assert!(!lease::release(&c, &b).await.unwrap(), "released once");
    assert!(matches!(
        lease::acquire(&mut c, &a, ttl).await.unwrap(),
        Acquired::Taken { previous: Some(p) } if p.status() == "released"
    ));
    // Only the fingerprint is stored: no column holds anything key-like beyond it.
    let n: i64 = one(
        &c,
        "SELECT count(*) FROM fleet_leases WHERE key_fingerprint LIKE 'sha256:%'",
        &[],
    )
    .await;
    assert_eq!(n, 1);
}

#[tokio::test]
async fn racing_first_starts_give_the_key_to_exactly_one() {
    let db = TestDb::create("lease_race").await;
    drop(db.migrated_client().await);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let url = db.url();
        tasks.push(tokio::spawn(async move {
            let mut c = aegis_control::db::connect(&url).await.unwrap();
            let me = id(&format!("bot-{i}"), &format!("tok-{i}"));
            lease::acquire(&mut c, &me, 30.0).await.unwrap()
        }));
    }
    let mut taken = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), Acquired::Taken { .. }) {
            taken += 1;
        }
    }
    assert_eq!(
        taken, 1,
        "exactly one of six simultaneous starts holds the key"
    );
}

const KEY_T: &str = "T3stT3stT3stT3stT3stT3stT3stT3stT3stT3stT3stT3stT3stT3stT3stT3st";
const KEY_U: &str = "U2ndU2ndU2ndU2ndU2ndU2ndU2ndU2ndU2ndU2ndU2ndU2ndU2ndU2ndU2ndU2nd";

fn testnet_cfg(db_url: &str, data: &std::path::Path) -> aegis_shared::config::Config {
    testnet_cfg_key(db_url, data, KEY_T)
}

fn testnet_cfg_key(
    db_url: &str,
    data: &std::path::Path,
    key: &str,
) -> aegis_shared::config::Config {
    let data = data.display().to_string();
    let url = db_url.to_string();
    aegis_shared::config::Config::from_lookup(|k: &str| match k {
        "TRADING_MODE" => Some("testnet".into()),
        "BINANCE_TESTNET_API_KEY" => Some(key.into()),
        "BINANCE_TESTNET_SECRET_KEY" => Some("testnet-secret".into()),
        "DATABASE_URL" => Some(url.clone()),
        "DATA_DIR" => Some(data.clone()),
        _ => None,
    })
    .unwrap()
}

#[tokio::test]
async fn the_guard_refuses_a_held_key_and_follows_the_database_down_policy() {
    let db = TestDb::create("lease_guard").await;
    let dir = std::env::temp_dir().join(format!("aegis-fleet-guard-{}", std::process::id()));
    let cfg = testnet_cfg(&db.url(), &dir);
    let s = |name: &str, mode: LeaseMode| FleetSettings {
        instance: Some(name.into()),
        lease: Some(mode),
        lease_secs: 30,
        ..FleetSettings::default()
    };
    let first = guard::start(&cfg, &s("bot-a", LeaseMode::Required))
        .await
        .unwrap()
        .expect("a testnet key with a database takes a lease");
    let err = guard::start(&cfg, &s("bot-b", LeaseMode::BestEffort))
        .await
        .expect_err("the same key twice");
    assert_eq!(err.exit_code(), 3);
    let msg = err.to_string();
    assert!(
        matches!(err, FleetError::Held { .. })
            && msg.contains("\"bot-a\"")
            && msg.contains(&aegis_control::fleet::host_name())
            && msg.contains(&format!("pid {}", std::process::id()))
            && msg.contains("sha256:")
            && !msg.contains("T3stT3st"),
        "{msg}"
    );
    // Another key whose records would go to the same database: refused (journal offsets would collide there);
    // with its own records database and the shared fleet database it starts.
    let other = testnet_cfg_key(&db.url(), &dir, KEY_U);
    let e = guard::start(&other, &s("bot-u", LeaseMode::Required))
        .await
        .expect_err("two bots' records in one database");
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(
        matches!(e, FleetError::SharedRecords { .. })
            && e.to_string().contains("\"bot-a\"")
            && e.to_string().contains("FLEET_DATABASE_URL"),
        "{e}"
    );
    let own = TestDb::create("lease_own").await;
    let other = testnet_cfg_key(&own.url(), &dir, KEY_U);
    let shared = FleetSettings {
        database_url: Some(aegis_shared::Secret::new(db.url())),
        ..s("bot-u", LeaseMode::Required)
    };
    let u = guard::start(&other, &shared).await.unwrap().unwrap();
    let fleet = lease::list(&db.client().await).await.unwrap();
    assert_eq!(fleet.len(), 2, "{fleet:?}");
    // A key switch of the running bot (`aegis keys rotate`) moves its lease: refused onto a key another bot
    // holds, else the new key is leased first and the old one released after the switch.
    let fp =
        |k: &str| aegis_control::fleet::lease::fingerprint(&aegis_shared::Secret::new(k.into()));
    let e = guard::lease_new_key(&fp(KEY_T)).await.unwrap_err();
    assert!(
        e.contains("\"bot-a\"") && e.contains("already in use"),
        "{e}"
    );
    let v = fp("V3rdV3rdV3rdV3rdV3rdV3rdV3rdV3rdV3rdV3rdV3rdV3rdV3rdV3rdV3rdV3rd");
    guard::lease_new_key(&v).await.unwrap();
    let c = db.client().await;
    assert!(lease::get(&c, &v).await.unwrap().unwrap().is_held());
    assert!(
        lease::get(&c, &fp(KEY_U)).await.unwrap().unwrap().is_held(),
        "both during the switch"
    );
    guard::key_switched(&v, true).await;
    assert_eq!(
        lease::get(&c, &fp(KEY_U)).await.unwrap().unwrap().status(),
        "released"
    );
    u.release(Duration::from_secs(2)).await;
    let after = lease::get(&c, &v).await.unwrap().unwrap();
    assert_eq!(
        (after.status(), after.instance.as_str()),
        ("released", "bot-u"),
        "the stop releases the new key's lease"
    );
    first.release(Duration::from_secs(2)).await;
    // Released: the next one starts at once.
    let second = guard::start(&cfg, &s("bot-b", LeaseMode::Required))
        .await
        .unwrap()
        .unwrap();
    second.release(Duration::from_secs(2)).await;

    // The database down at start: `required` (live's default) refuses, `best-effort` (testnet's) starts.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let down = testnet_cfg(
        &format!("postgres://postgres@127.0.0.1:{port}/x?sslmode=disable&connect_timeout=1"),
        &dir,
    );
    let e = guard::start(&down, &s("bot-c", LeaseMode::Required))
        .await
        .expect_err("required without a database");
    assert!(matches!(e, FleetError::Unverified { .. }), "{e}");
    assert!(e.to_string().contains("FLEET_LEASE=best-effort"), "{e}");
    assert!(!e.to_string().contains("postgres://"), "URL redacted: {e}");
    let g = guard::start(&down, &s("bot-c", LeaseMode::BestEffort))
        .await
        .unwrap();
    assert!(g.is_some());
    g.unwrap().release(Duration::from_millis(200)).await;
    // Paper mode and `off` take no lease.
    let off = guard::start(&cfg, &s("bot-d", LeaseMode::Off))
        .await
        .unwrap();
    assert!(off.is_none());
    let _ = std::fs::remove_dir_all(&dir);
}
