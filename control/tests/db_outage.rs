//! Postgres goes away in the middle of a run with thousands of fills (simulated by cutting a TCP proxy, never by
//! stopping the shared server): trading events keep being journaled, health says down, an alert fires, and when
//! the database is back the writer catches up to equal counts and sums.

mod db_support;

use aegis_control::db::{spawn_writer, DbAlert, DbState, WriterConfig};
use aegis_shared::Secret;
use db_support::{db_and_journal, one, record, wait_caught_up, wait_until, Proxy, Totals};
use std::sync::atomic::Ordering;
use std::time::Duration;

const RECORDS: u64 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_mid_run_loses_nothing_and_catches_up() {
    let (db, mut jw, jdir) = db_and_journal("outage").await;
    let _ = db.migrated_client().await;
    let proxy = Proxy::start().await;
    let stats = jw.stats();

    let mut cfg = WriterConfig::new(Secret::new(db.url_via(proxy.port)));
    cfg.batch_max = 1000;
    cfg.idle_poll = Duration::from_millis(5);
    cfg.backoff_min = Duration::from_millis(50);
    cfg.backoff_max = Duration::from_millis(300);
    cfg.lag_alert_records = 5_000;
    let mut h = spawn_writer(cfg, jdir.clone(), stats.clone());
    let mut alerts = h.take_alerts().unwrap();

    // The "engine + pump": journals a steady stream of events, never waiting for Postgres.
    let appender = std::thread::spawn(move || {
        let mut totals = Totals::default();
        for i in 0..RECORDS {
            let r = record(i);
            totals.add(&r);
            jw.append(&r).unwrap();
            if i % 100 == 99 {
                jw.sync().unwrap();
                std::thread::sleep(Duration::from_millis(8));
            }
        }
        jw.sync().unwrap();
        totals
    });

    wait_until(
        Duration::from_secs(10),
        "the writer to store 2,000 records",
        || {
            let n = h.health().stored_records;
            async move { n >= 2_000 }
        },
    )
    .await;

    proxy.pause();
    wait_until(Duration::from_secs(10), "health to say down", || {
        let s = h.health().state;
        async move { s == DbState::Down }
    })
    .await;
    let down = h.health();
    assert!(down.is_degraded());
    assert!(down.last_error.is_some());
    // Trading goes on: the journal keeps growing while Postgres is unreachable, and the lag is visible.
    let journaled_at_down = stats.records.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let journaled_later = stats.records.load(Ordering::Relaxed);
    assert!(
        journaled_later > journaled_at_down + 100 || journaled_later == RECORDS,
        "journal stalled while Postgres was down: {journaled_at_down} -> {journaled_later}"
    );
    let still_down = h.health();
    assert_eq!(still_down.state, DbState::Down);
    assert!(still_down.lag_records > 0, "{still_down:?}");
    assert!(still_down.stored_records < journaled_later);

    proxy.resume();
    let totals = tokio::task::spawn_blocking(move || appender.join().unwrap())
        .await
        .unwrap();
    assert_eq!(stats.records.load(Ordering::Relaxed), RECORDS);
    wait_caught_up(
        &h,
        &stats,
        Duration::from_secs(20),
        "the writer to catch up",
    )
    .await;

    let c = db.client().await;
    let stored = Totals::from_db(&c).await;
    assert_eq!(
        stored, totals,
        "Postgres differs from the journal after the outage"
    );
    assert!(stored.fills > 13_000, "{stored:?}");

    // Alerts: down (once), recovered, caught up — in that order.
    let mut seen = Vec::new();
    while let Ok(a) = alerts.try_recv() {
        seen.push(a);
    }
    let kinds: Vec<&str> = seen
        .iter()
        .map(|a| match a {
            DbAlert::Down { .. } => "down",
            DbAlert::Recovered { .. } => "recovered",
            DbAlert::CaughtUp { .. } => "caught_up",
            DbAlert::Lagging { .. } => "lagging",
            DbAlert::FillConflict { .. } => "fill_conflict",
        })
        .collect();
    let pos = |k: &str| kinds.iter().position(|x| *x == k);
    assert_eq!(
        kinds.iter().filter(|k| **k == "down").count(),
        1,
        "{kinds:?}"
    );
    assert!(
        pos("down") < pos("recovered") && pos("recovered").is_some(),
        "{kinds:?}"
    );
    assert!(
        pos("recovered") < pos("caught_up") && pos("caught_up").is_some(),
        "{kinds:?}"
    );
    h.shutdown(Duration::from_secs(5)).await;
}

/// The child half of the kill -9 test: a writer process that runs until it is killed.
async fn kill_child(spec: &str) {
    let (url, dir) = spec.split_once('|').unwrap();
    let (jw, _) = aegis_control::journal::open(std::path::Path::new(dir), Duration::ZERO).unwrap();
    let mut cfg = WriterConfig::new(Secret::new(url.to_string()));
    cfg.batch_max = 512;
    let _h = spawn_writer(cfg, dir.into(), jw.stats());
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_restart_stores_everything_once() {
    if let Ok(spec) = std::env::var("AEGIS_DB_KILL_CHILD") {
        kill_child(&spec).await;
        return;
    }
    const N: u64 = 40_000;
    let (db, mut jw, jdir) = db_and_journal("kill9").await;
    let _ = db.migrated_client().await;
    let mut totals = Totals::default();
    for i in 0..N {
        let r = record(i);
        totals.add(&r);
        jw.append(&r).unwrap();
        if i % 1024 == 1023 {
            jw.write().unwrap();
        }
    }
    jw.sync().unwrap();
    drop(jw);

    // A separate process runs the writer; it is SIGKILLed in the middle of the burst.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "kill_9_mid_run_then_restart_stores_everything_once",
            "--exact",
            "--nocapture",
        ])
        .env(
            "AEGIS_DB_KILL_CHILD",
            format!("{}|{}", db.url(), jdir.display()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let c = db.client().await;
    wait_until(
        Duration::from_secs(20),
        "the child writer to store 3,000 records",
        || {
            let c = &c;
            async move {
                aegis_control::db::writer::stored_progress(c, "main")
                    .await
                    .unwrap()
                    .is_some_and(|(_, n)| n >= 3_000)
            }
        },
    )
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // A COMMIT the child sent just before it died is still carried out by its server backend, which only then
    // notices the closed socket. Until every other session on this database has ended, the stored state can
    // still move, so the prefix check below would race it.
    wait_until(
        Duration::from_secs(20),
        "the killed writer's database sessions to end",
        || {
            let c = &c;
            let name = db.name.clone();
            async move {
                let n: i64 = one(
                    c,
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&name],
                )
                .await;
                n == 0
            }
        },
    )
    .await;

    // What the killed process left is exactly the journal prefix up to its stored offset: no half batch.
    let (next, recs) = aegis_control::db::writer::stored_progress(&c, "main")
        .await
        .unwrap()
        .unwrap();
    assert!(
        recs < N,
        "the child finished before it was killed; make N larger"
    );
    let mut prefix = Totals::default();
    let mut reader = aegis_control::journal::JournalReader::open(&jdir).unwrap();
    let mut n = 0;
    for e in reader
        .records_from(aegis_control::journal::JournalReader::start_offset())
        .unwrap()
        .up_to(next)
    {
        prefix.add(&e.unwrap().record);
        n += 1;
    }
    assert_eq!(n, recs);
    assert_eq!(Totals::from_db(&c).await, prefix);

    // Restart: the journal is reopened (as after a crash) and the writer resumes at the stored offset.
    let (jw, _) = aegis_control::journal::open(&jdir, Duration::ZERO).unwrap();
    let h = spawn_writer(
        WriterConfig::new(Secret::new(db.url())),
        jdir.clone(),
        jw.stats(),
    );
    wait_caught_up(
        &h,
        &jw.stats(),
        Duration::from_secs(20),
        "the restarted writer to catch up",
    )
    .await;
    h.shutdown(Duration::from_secs(5)).await;
    assert_eq!(Totals::from_db(&c).await, totals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_database_is_reported_down_and_recovers() {
    let (db, mut jw, jdir) = db_and_journal("hung").await;
    let _ = db.migrated_client().await;
    let mut totals = Totals::default();
    // "Slow": another session holds a lock the writer's inserts wait on.
    let mut blocker = db.client().await;
    let tx = blocker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE fills IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    for i in 0..500 {
        let r = record(i);
        totals.add(&r);
        jw.append(&r).unwrap();
    }
    jw.sync().unwrap();
    let mut cfg = WriterConfig::new(Secret::new(db.url()));
    cfg.write_timeout = Duration::from_millis(700);
    cfg.backoff_min = Duration::from_millis(50);
    cfg.backoff_max = Duration::from_millis(200);
    cfg.idle_poll = Duration::from_millis(5);
    let h = spawn_writer(cfg, jdir, jw.stats());
    wait_until(Duration::from_secs(10), "health to say down", || {
        let hh = h.health();
        async move { hh.state == DbState::Down }
    })
    .await;
    let down = h.health();
    assert!(
        down.last_error
            .as_deref()
            .unwrap_or("")
            .contains("did not answer"),
        "{down:?}"
    );
    assert_eq!(down.lag_records, 500);
    tx.rollback().await.unwrap();
    wait_caught_up(
        &h,
        &jw.stats(),
        Duration::from_secs(10),
        "the writer to catch up",
    )
    .await;
    h.shutdown(Duration::from_secs(5)).await;
    assert_eq!(Totals::from_db(&db.client().await).await, totals);
}
