//! Migrations: applied once, idempotent, and the application role cannot rewrite history.

mod db_support;

use aegis_control::db::{migrations, run_migrations};
use db_support::{one, TestDb};

const TABLES: &[&str] = &[
    "writer_progress",
    "orders",
    "order_events",
    "fills",
    "position_snapshots",
    "daily_pnl",
    "breaker_events",
    "engine_events",
    "commands",
    "users",
    "revoked_tokens",
    "api_access_log",
    "config_changes",
    "key_events",
    "audit_log",
];

#[tokio::test]
async fn migrations_apply_once_and_are_idempotent() {
    let db = TestDb::create("mig").await;
    let mut c = db.client().await;
    let first = run_migrations(&mut c).await.unwrap();
    assert_eq!(first.applied, migrations::embedded_versions());
    assert_eq!(
        first.current,
        migrations::embedded_versions().last().copied()
    );
    let second = run_migrations(&mut c).await.unwrap();
    assert!(
        second.applied.is_empty(),
        "second run applied {:?}",
        second.applied
    );
    assert_eq!(second.current, first.current);

    for t in TABLES {
        let n: i64 = one(
            &c,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name = $1",
            &[t],
        )
        .await;
        assert_eq!(n, 1, "table {t} missing");
    }
    // fills are unique per (symbol, trade_id, split_part, market) (V30: one exchange trade split across modes;
    // V60: spot and futures trade ids are separate id spaces).
    let uniq: i64 = one(
        &c,
        "SELECT count(*) FROM pg_indexes WHERE tablename = 'fills' AND indexdef LIKE '%UNIQUE%(symbol, trade_id, split_part, market)%'",
        &[],
    )
    .await;
    assert_eq!(uniq, 1);
}

#[tokio::test]
async fn concurrent_starts_migrate_once() {
    let db = TestDb::create("migc").await;
    let mut a = db.client().await;
    let mut b = db.client().await;
    let (ra, rb) = tokio::join!(run_migrations(&mut a), run_migrations(&mut b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    // Exactly one of them applied the migrations.
    assert_eq!(
        ra.applied.len() + rb.applied.len(),
        migrations::embedded_versions().len()
    );
}

#[tokio::test]
async fn app_role_cannot_rewrite_history_but_can_append_and_start() {
    let db = TestDb::create("role").await;
    let mut c = db.migrated_client().await;
    aegis_control::db::audit_append(
        &c,
        &aegis_control::db::AuditEntry {
            actor: "alice",
            source_ip: "198.51.100.4",
            action: aegis_control::db::audit::AuditAction::Login,
            detail: serde_json::json!({}),
        },
    )
    .await
    .unwrap();

    c.batch_execute("SET ROLE aegis_app").await.unwrap();
    // Appending works.
    aegis_control::db::audit_append(
        &c,
        &aegis_control::db::AuditEntry {
            actor: "bob",
            source_ip: "198.51.100.5",
            action: aegis_control::db::audit::AuditAction::LoginFailed,
            detail: serde_json::json!({"reason": "bad password"}),
        },
    )
    .await
    .unwrap();
    // Rewriting does not: refused by privilege before any trigger runs.
    for sql in [
        "UPDATE audit_log SET actor = 'mallory' WHERE id = 1",
        "DELETE FROM audit_log WHERE id = 1",
        "TRUNCATE audit_log",
        "DELETE FROM fills",
        "UPDATE fills SET qty = 0",
        "DELETE FROM orders",
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        let code = e.as_db_error().map(|d| d.code().code().to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{sql}: {e}");
    }
    // With an up-to-date schema, the app role's start-up migration check passes and applies nothing.
    let r = run_migrations(&mut c).await.unwrap();
    assert!(r.applied.is_empty());

    // Even the owner/superuser is refused by the append-only trigger.
    c.batch_execute("RESET ROLE").await.unwrap();
    for sql in [
        "UPDATE audit_log SET actor = 'mallory' WHERE id = 1",
        "DELETE FROM audit_log",
    ] {
        let e = c.batch_execute(sql).await.expect_err("trigger must refuse");
        assert!(
            e.as_db_error().unwrap().message().contains("append-only"),
            "{sql}: {e}"
        );
    }
    assert_eq!(
        one::<i64>(&c, "SELECT count(*) FROM audit_log", &[]).await,
        2
    );
}

#[tokio::test]
async fn tls_is_verified_when_required() {
    // The local server's certificate (if it has TLS at all) is not signed by a trusted root: `require` must refuse
    // rather than silently accept it; plain on loopback (`prefer`, the default) works.
    let db = TestDb::create("tls").await;
    let url = db.url().replace("sslmode=disable", "sslmode=require");
    let Err(e) = aegis_control::db::connect(&url).await else {
        panic!("unverified TLS accepted");
    };
    let text = e.to_string();
    assert!(
        text.contains("certificate") || text.contains("TLS"),
        "unexpected error: {text}"
    );
    assert!(
        !text.contains("postgres://"),
        "error echoes the URL: {text}"
    );
    let prefer = db.url().replace("?sslmode=disable", "");
    aegis_control::db::connect(&prefer).await.unwrap();
}
