//! Configuration changes between starts land in `config_changes` with their audit rows: every set key on the
//! first start, then only what changed; secrets only as `***`.

mod db_support;

use aegis_control::db::config_log::{record_changes, settings_from, Settings, SECRET_SET};
use aegis_control::db::verify_chain;
use aegis_shared::config::keys;
use db_support::TestDb;

const SECRET: &str = "jwt-Zq3xV9pL2mN8bR5tY7wK4cH6dF1gS0aE-config";

fn settings(pairs: &[(&str, &str)]) -> Settings {
    settings_from(|k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
}

async fn rows(c: &tokio_postgres::Client) -> Vec<(String, Option<String>, Option<String>, String)> {
    c.query(
        "SELECT key, old_value, new_value, actor FROM config_changes ORDER BY id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

#[tokio::test]
async fn first_start_records_every_setting_then_only_changes() {
    let db = TestDb::create("cfglog").await;
    let mut c = db.migrated_client().await;
    let first = settings(&[
        (keys::TRADING_MODE, "paper"),
        (keys::SYMBOLS, "BTCUSDT"),
        (keys::JWT_SECRET, SECRET),
    ]);
    assert_eq!(record_changes(&mut c, &first, "ops@host").await.unwrap(), 3);
    // The same settings again (a plain restart): nothing new.
    assert_eq!(record_changes(&mut c, &first, "ops@host").await.unwrap(), 0);

    // One value changed, one key added, one removed, the secret replaced by another (still "set").
    let second = settings(&[
        (keys::TRADING_MODE, "paper"),
        (keys::SYMBOLS, "BTCUSDT,ETHUSDT"),
        (keys::JWT_SECRET, "another-secret-value-that-is-long-enough"),
        (keys::CIRCUIT_COOLDOWN_MINUTES, "45"),
    ]);
    assert_eq!(
        record_changes(&mut c, &second, "ops@host").await.unwrap(),
        2
    );
    let third = settings(&[
        (keys::TRADING_MODE, "paper"),
        (keys::SYMBOLS, "BTCUSDT,ETHUSDT"),
    ]);
    // CIRCUIT_COOLDOWN_MINUTES and JWT_SECRET are no longer set.
    assert_eq!(record_changes(&mut c, &third, "ops@host").await.unwrap(), 2);

    let r = rows(&c).await;
    let find = |k: &str, new: Option<&str>| {
        r.iter()
            .find(|(key, _, n, _)| key == k && n.as_deref() == new)
            .unwrap_or_else(|| panic!("no row {k} -> {new:?} in {r:?}"))
            .clone()
    };
    assert_eq!(
        find(keys::SYMBOLS, Some("BTCUSDT,ETHUSDT")).1.as_deref(),
        Some("BTCUSDT")
    );
    assert_eq!(find(keys::JWT_SECRET, Some(SECRET_SET)).1, None);
    assert_eq!(find(keys::JWT_SECRET, None).1.as_deref(), Some(SECRET_SET));
    assert_eq!(
        find(keys::CIRCUIT_COOLDOWN_MINUTES, None).1.as_deref(),
        Some("45")
    );
    assert_eq!(r.len(), 7, "{r:?}");
    assert!(r.iter().all(|(_, _, _, actor)| actor == "ops@host"));

    // Never a secret, neither in config_changes nor in the audit trail; every change has its chained audit row.
    let all: String = c
        .query_one(
            "SELECT (SELECT string_agg(concat(old_value, new_value), ' ') FROM config_changes) || \
             (SELECT string_agg(detail::text, ' ') FROM audit_log)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        !all.contains(SECRET) && !all.contains("another-secret"),
        "{all}"
    );
    let audited: i64 = c
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = 'config_change'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 7);
    let v = verify_chain(&c).await.unwrap();
    assert!(v.is_valid(), "{v:?}");
}
