//! The audit trail: hash chain, tamper detection (edit, delete), concurrent appenders.

mod db_support;

use aegis_control::db::audit::{
    self, verify_chain_sql, AuditAction, AuditEntry, BrokenReason, GENESIS_HASH,
};
use aegis_control::db::{records, verify_chain};
use db_support::{bypass_triggers, column, one, TestDb};

async fn append_n(c: &tokio_postgres::Client, n: usize) {
    for i in 0..n {
        audit::append(
            c,
            &AuditEntry {
                actor: if i.is_multiple_of(2) { "alice" } else { "bob" },
                source_ip: "203.0.113.9",
                action: AuditAction::Command,
                detail: serde_json::json!({ "command": "halt", "n": i, "note": "ünïcødé, \"quoted\"" }),
            },
        )
        .await
        .unwrap();
    }
}

/// A fresh database holding ten chained audit rows, and their ids in chain order. Keep the [`TestDb`]: dropping it
/// drops the database.
async fn ten_rows(tag: &str) -> (TestDb, tokio_postgres::Client, Vec<i64>) {
    let db = TestDb::create(tag).await;
    let c = db.migrated_client().await;
    append_n(&c, 10).await;
    let ids = column(&c, "SELECT id FROM audit_log ORDER BY id").await;
    (db, c, ids)
}

#[tokio::test]
async fn chain_links_every_row_and_verifies() {
    let db = TestDb::create("chain").await;
    let mut c = db.migrated_client().await;
    let empty = verify_chain(&c).await.unwrap();
    assert!(empty.is_valid());
    assert_eq!(empty.rows, 0);

    append_n(&c, 20).await;
    records::record_config_change(
        &mut c,
        "alice",
        "203.0.113.9",
        "CIRCUIT_COOLDOWN_MINUTES",
        Some("30"),
        Some("60"),
    )
    .await
    .unwrap();
    records::record_key_event(
        &mut c,
        "cli",
        "local",
        "rotated",
        "testnet",
        Some("x9Qa"),
        serde_json::json!({}),
    )
    .await
    .unwrap();
    records::record_login(&c, "mallory", "198.51.100.66", false, Some("bad password"))
        .await
        .unwrap();

    let r = verify_chain(&c).await.unwrap();
    assert!(r.is_valid(), "{r}");
    assert_eq!(r.rows, 23);
    let (head_id, head_hash) = r.head.clone().unwrap();
    let (db_id, db_hash): (i64, String) = {
        let row = c
            .query_one(
                "SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((head_id, head_hash), (db_id, db_hash));
    assert_eq!(verify_chain_sql(&c).await.unwrap(), None);

    // The first row links to the genesis hash; every later row to its predecessor.
    let rows = c
        .query("SELECT prev_hash, hash FROM audit_log ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, &str>(0), GENESIS_HASH);
    for w in rows.windows(2) {
        assert_eq!(w[1].get::<_, &str>(0), w[0].get::<_, &str>(1));
    }
    // Config change and key event rows exist alongside their audit rows.
    for sql in [
        "SELECT count(*) FROM config_changes",
        "SELECT count(*) FROM key_events",
        "SELECT count(*) FROM audit_log WHERE action = 'login_failed'",
    ] {
        assert_eq!(one::<i64>(&c, sql, &[]).await, 1, "{sql}");
    }
}

#[tokio::test]
async fn edited_row_is_named_by_verify() {
    let (_db, c, ids) = ten_rows("tamper").await;
    let victim = ids[6];
    // A superuser can bypass the append-only trigger; the chain still tells.
    bypass_triggers(
        &c,
        &format!("UPDATE audit_log SET detail = '{{\"command\":\"resume\"}}' WHERE id = {victim}"),
    )
    .await;
    let r = verify_chain(&c).await.unwrap();
    assert!(!r.is_valid());
    let broken = r.first_broken.clone().unwrap();
    assert_eq!(broken.id, victim, "{r}");
    assert!(
        matches!(broken.reason, BrokenReason::HashMismatch { .. }),
        "{r}"
    );
    assert!(r.to_string().contains(&format!("row id {victim}")), "{r}");
    assert_eq!(verify_chain_sql(&c).await.unwrap(), Some(victim));
}

#[tokio::test]
async fn rehashed_edit_and_deleted_row_break_the_next_link() {
    let (_db, c, ids) = ten_rows("tamper2").await;
    // A careful forger edits row 3 and recomputes its own hash: then row 4's prev_hash no longer matches.
    let victim = ids[3];
    bypass_triggers(
        &c,
        &format!(
            "UPDATE audit_log SET actor = 'nobody', \
               hash = encode(sha256(convert_to(audit_payload(id, ts, 'nobody', source_ip, action, detail, prev_hash), 'UTF8')), 'hex') \
               WHERE id = {victim}"
        ),
    )
    .await;
    let r = verify_chain(&c).await.unwrap();
    let b = r.first_broken.clone().unwrap();
    assert_eq!(b.id, ids[4], "{r}");
    assert!(
        matches!(b.reason, BrokenReason::PrevHashMismatch { .. }),
        "{r}"
    );
    assert_eq!(verify_chain_sql(&c).await.unwrap(), Some(ids[4]));

    // A deleted row breaks the link of the row after it (fresh database, row 7 removed).
    let (_db2, c2, ids2) = ten_rows("tamper3").await;
    bypass_triggers(
        &c2,
        &format!("DELETE FROM audit_log WHERE id = {}", ids2[7]),
    )
    .await;
    let r2 = verify_chain(&c2).await.unwrap();
    assert_eq!(r2.first_broken.unwrap().id, ids2[8]);
}

#[tokio::test]
async fn concurrent_appenders_keep_one_chain() {
    let db = TestDb::create("conc").await;
    let _c = db.migrated_client().await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let url = db.url();
        tasks.push(tokio::spawn(async move {
            let c = aegis_control::db::connect(&url).await.unwrap();
            append_n(&c, 25).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let c = db.client().await;
    let r = verify_chain(&c).await.unwrap();
    assert!(r.is_valid(), "{r}");
    assert_eq!(r.rows, 150);
    // Ids follow chain order with no gaps.
    let (min, max): (i64, i64) = {
        let row = c
            .query_one("SELECT min(id), max(id) FROM audit_log", &[])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(max - min + 1, 150);
}
