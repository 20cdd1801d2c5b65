//! Tax export (exact decimals, one row per fill) and retention (access log >= 1 year, pruned after 400 days).

mod db_support;

use aegis_control::db::export::{export_trades_csv, HEADER};
use aegis_control::db::records::{record_access, AccessRecord};
use aegis_control::db::retention::{prune_access_log, ACCESS_LOG_RETENTION_DAYS};
use db_support::{column, fill, store_all, temp_dir, TestDb};
use time::macros::datetime;

#[tokio::test]
async fn export_writes_one_exact_row_per_fill_in_range() {
    let db = TestDb::create("export").await;
    // Every third fill is spot (issue 14): the market column must follow each row, not be a constant.
    let fills: Vec<_> = (0..50u64)
        .map(|i| {
            let mut f = fill(i);
            if i % 3 == 1 {
                f.market = aegis_shared::Market::Spot;
            }
            f
        })
        .collect();
    let records: Vec<_> = fills
        .iter()
        .map(|f| aegis_control::journal::JournalRecord::Engine(aegis_shared::EngineEvent::Fill(*f)))
        .collect();
    store_all(&db, &temp_dir("export"), &records).await;

    let c = db.client().await;
    // fills[i].ts_ms = 1_700_000_000_000 + 7 i: [fill 10, fill 20) by time.
    let from =
        time::OffsetDateTime::from_unix_timestamp_nanos((1_700_000_000_000i128 + 70) * 1_000_000)
            .unwrap();
    let to =
        time::OffsetDateTime::from_unix_timestamp_nanos((1_700_000_000_000i128 + 140) * 1_000_000)
            .unwrap();
    let mut out: Vec<u8> = Vec::new();
    let n = export_trades_csv(&c, from, to, &mut out).await.unwrap();
    assert_eq!(n, 10);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], HEADER);
    assert!(HEADER.ends_with(",liquidity,market"), "{HEADER}");
    let spot = lines[1..].iter().filter(|l| l.ends_with(",spot")).count();
    assert_eq!(spot, 4, "fills 10, 13, 16 and 19 are spot");
    assert_eq!(lines.len(), 11);
    for (line, f) in lines[1..].iter().zip(&fills[10..20]) {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols.len(), 17, "{line}");
        assert_eq!(cols[16], f.market.as_str(), "{line}");
        assert_eq!(cols[1], f.symbol.as_str());
        assert_eq!(cols[2], f.side.as_str());
        // Exact: parse back into the same units, no float anywhere.
        assert_eq!(
            aegis_shared::Price::parse(cols[3]).unwrap(),
            f.price,
            "{line}"
        );
        assert_eq!(aegis_shared::Qty::parse(cols[4]).unwrap(), f.qty, "{line}");
        assert_eq!(
            aegis_shared::Notional::parse(cols[6]).unwrap(),
            f.fee,
            "{line}"
        );
        assert_eq!(cols[7], "USDT");
        assert_eq!(
            aegis_shared::Notional::parse(cols[8]).unwrap(),
            f.realized_pnl,
            "{line}"
        );
        assert_eq!(cols[9], f.client_id.as_str());
        assert_eq!(cols[10], f.exchange_order_id.to_string());
        assert_eq!(cols[11], f.trade_id.to_string());
        assert_eq!(cols[12], f.split_part.to_string());
        // notional = price * qty exactly (may carry up to 16 decimals).
        let expect = (f.price.units() as i128) * (f.qty.units() as i128);
        let (int, frac) = cols[5].split_once('.').unwrap_or((cols[5], ""));
        let frac16 = format!("{frac:0<16}");
        let got: i128 =
            int.parse::<i128>().unwrap() * 10i128.pow(16) + frac16.parse::<i128>().unwrap();
        assert_eq!(got, expect, "{line}");
    }
    assert!(
        lines[1].starts_with("2023-11-14T22:13:20.070Z,"),
        "{}",
        lines[1]
    );

    // An empty range is refused with a clear message.
    let e = export_trades_csv(&c, to, from, &mut Vec::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("before"), "{e}");
    let all = export_trades_csv(
        &c,
        datetime!(2000-01-01 0:00 UTC),
        datetime!(2100-01-01 0:00 UTC),
        &mut Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(all, 50);
}

#[tokio::test]
async fn access_log_is_kept_a_year_and_pruned_after_400_days() {
    let db = TestDb::create("retention").await;
    let c = db.migrated_client().await;
    for _ in 0..3 {
        record_access(
            &c,
            &AccessRecord {
                actor: Some("alice"),
                source_ip: "203.0.113.1",
                method: "GET",
                path: "/api/health",
                status: 200,
                duration_us: 120,
            },
        )
        .await
        .unwrap();
    }
    // Age them: 10 days, 380 days, 420 days.
    c.batch_execute(
        "UPDATE api_access_log SET ts = now() - interval '10 days' WHERE id = 1; \
         UPDATE api_access_log SET ts = now() - interval '380 days' WHERE id = 2; \
         UPDATE api_access_log SET ts = now() - interval '420 days' WHERE id = 3;",
    )
    .await
    .unwrap();
    let e = prune_access_log(&c, 30).await.unwrap_err();
    assert!(e.to_string().contains("at least 365"), "{e}");
    assert_eq!(
        prune_access_log(&c, ACCESS_LOG_RETENTION_DAYS)
            .await
            .unwrap(),
        1
    );
    let left: Vec<i64> = column(&c, "SELECT id FROM api_access_log ORDER BY id").await;
    assert_eq!(left, vec![1, 2]);
    // The app role may prune the access log, but never fills.
    c.batch_execute("SET ROLE aegis_app").await.unwrap();
    assert_eq!(prune_access_log(&c, 365).await.unwrap(), 1);
    assert!(c.batch_execute("DELETE FROM fills").await.is_err());
}
