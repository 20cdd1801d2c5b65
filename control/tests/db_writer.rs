//! The journal -> Postgres writer: complete, exact, and idempotent under replay.

mod db_support;

use aegis_control::db::writer::stored_progress;
use aegis_control::db::{spawn_writer, verify_chain, WriterConfig, WriterHandle};
use aegis_control::journal::JournalWriter;
use aegis_shared::Secret;
use db_support::{db_and_journal, record, wait_caught_up, TestDb, Totals};
use std::path::Path;
use std::time::Duration;

fn config(url: String, batch: usize) -> WriterConfig {
    let mut cfg = WriterConfig::new(Secret::new(url));
    cfg.batch_max = batch;
    cfg.idle_poll = Duration::from_millis(5);
    cfg.backoff_min = Duration::from_millis(50);
    cfg.backoff_max = Duration::from_millis(400);
    cfg
}

fn journal_records(w: &mut JournalWriter, from: u64, to: u64, totals: &mut Totals) {
    for i in from..to {
        let r = record(i);
        totals.add(&r);
        w.append(&r).unwrap();
        if i % 256 == 255 {
            w.sync().unwrap();
        }
    }
    w.sync().unwrap();
}

async fn caught_up(h: &WriterHandle, jw: &JournalWriter) {
    wait_caught_up(
        h,
        &jw.stats(),
        Duration::from_secs(20),
        "writer to catch up",
    )
    .await;
}

async fn start(db: &TestDb, dir: &Path, jw: &JournalWriter, batch: usize) -> WriterHandle {
    spawn_writer(config(db.url(), batch), dir.to_path_buf(), jw.stats())
}

#[tokio::test]
async fn writer_stores_everything_exactly_and_replay_adds_nothing() {
    let (db, mut jw, jdir) = db_and_journal("writer").await;
    let mut totals = Totals::default();
    journal_records(&mut jw, 0, 3000, &mut totals);

    let h = start(&db, &jdir, &jw, 500).await;
    caught_up(&h, &jw).await;
    h.shutdown(Duration::from_secs(5)).await;

    let c = db.client().await;
    let first = Totals::from_db(&c).await;
    assert_eq!(first, totals, "Postgres differs from the journal");
    assert!(
        totals.fills > 2000
            && totals.breakers == 3
            && totals.commands == 3
            && totals.kill_states == 3
    );

    // Derived rows: daily PnL equals the fills, audit rows for trips, kill-switch halts and commands.
    let daily = c
        .query_one(
            "SELECT (SELECT sum(fills) FROM daily_pnl)::bigint, \
             ((SELECT sum(realized_pnl) FROM daily_pnl) = (SELECT sum(realized_pnl) FROM fills)), \
             ((SELECT sum(fees) FROM daily_pnl) = (SELECT sum(fee) FROM fills)), \
             (SELECT count(*) FROM audit_log)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(daily.get::<_, i64>(0), totals.fills);
    assert!(daily.get::<_, bool>(1) && daily.get::<_, bool>(2));
    let audit_rows: i64 = daily.get(3);
    assert_eq!(
        audit_rows,
        totals.breakers + totals.kill_states + totals.commands
    );
    // The command's source was split into actor and IP.
    let who = c
        .query_one(
            "SELECT actor, source_ip FROM audit_log WHERE action = 'kill_switch' AND actor <> 'engine' LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (who.get::<_, &str>(0), who.get::<_, &str>(1)),
        ("api:alice", "203.0.113.7")
    );
    // Latest order state: one row per client id, ending FILLED.
    let o = c
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE status = 'FILLED'), \
             (SELECT count(DISTINCT client_id) FROM order_events) FROM orders",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(o.get::<_, i64>(0), o.get::<_, i64>(2));
    assert_eq!(o.get::<_, i64>(0), o.get::<_, i64>(1));
    // Exact decimals survive, as journaled.
    let f1 = db_support::fill(13); // record(13) is a fill with a negative PnL
    let row = c
        .query_one(
            "SELECT price::text, qty::text, fee::text, realized_pnl::text FROM fills WHERE trade_id = $1",
            &[&(f1.trade_id as i64)],
        )
        .await
        .unwrap();
    let as8 = |u: i64| {
        format!(
            "{}{}.{:08}",
            if u < 0 { "-" } else { "" },
            u.abs() / 100_000_000,
            u.abs() % 100_000_000
        )
    };
    assert_eq!(row.get::<_, String>(0), as8(f1.price.units()));
    assert_eq!(row.get::<_, String>(1), as8(f1.qty.units()));
    assert_eq!(row.get::<_, String>(2), as8(f1.fee.units()));
    assert_eq!(row.get::<_, String>(3), as8(f1.realized_pnl.units()));
    let (next, recs) = stored_progress(&c, "main").await.unwrap().unwrap();
    assert_eq!(next, jw.stats().durable_offset());
    assert_eq!(recs, 3000);

    // Replay the whole journal: progress lost (as after restoring an old backup), same journal read again.
    c.batch_execute("DELETE FROM writer_progress")
        .await
        .unwrap();
    let h = start(&db, &jdir, &jw, 700).await;
    caught_up(&h, &jw).await;
    h.shutdown(Duration::from_secs(5)).await;
    let second = Totals::from_db(&c).await;
    assert_eq!(second, first, "replay duplicated rows");
    let again = c
        .query_one(
            "SELECT (SELECT sum(fills) FROM daily_pnl)::bigint, (SELECT count(*) FROM audit_log)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        again.get::<_, i64>(0),
        totals.fills,
        "daily PnL counted twice"
    );
    assert_eq!(
        again.get::<_, i64>(1),
        audit_rows,
        "audit rows written twice"
    );
    assert!(verify_chain(&c).await.unwrap().is_valid());
}

#[tokio::test]
async fn writer_follows_a_live_journal_and_restarts_where_it_stopped() {
    let (db, mut jw, jdir) = db_and_journal("follow").await;
    let mut totals = Totals::default();
    let h = start(&db, &jdir, &jw, 256).await;
    for chunk in 0..5u64 {
        journal_records(&mut jw, chunk * 400, chunk * 400 + 400, &mut totals);
        h.wake();
        caught_up(&h, &jw).await;
    }
    h.shutdown(Duration::from_secs(5)).await;
    // Written while no writer runs; the next one resumes at the stored offset.
    journal_records(&mut jw, 2000, 2600, &mut totals);
    let h = start(&db, &jdir, &jw, 256).await;
    caught_up(&h, &jw).await;
    assert_eq!(h.health().stored_records, 2600);
    h.shutdown(Duration::from_secs(5)).await;
    let c = db.client().await;
    assert_eq!(Totals::from_db(&c).await, totals);
}

#[tokio::test]
async fn wire_values_are_exact() {
    use aegis_control::db::wire::{Dec8, TsMs};
    let db = TestDb::create("wire").await;
    let c = db.client().await;
    let as8 = |u: i64| {
        let a = u.unsigned_abs();
        format!(
            "{}{}.{:08}",
            if u < 0 { "-" } else { "" },
            a / 100_000_000,
            a % 100_000_000
        )
    };
    for u in [
        0,
        1,
        -1,
        99_999_999,
        100_000_000,
        -100_000_000,
        10_000,
        100_000_000 * 10_000,
        1_234_567_890_123,
        -987_654_321_000_000,
        i64::MAX,
        i64::MIN + 1,
        i64::MIN,
    ] {
        let got: String = c
            .query_one("SELECT $1::numeric::text", &[&Dec8(u)])
            .await
            .unwrap()
            .get(0);
        assert_eq!(got, as8(u), "units {u}");
    }
    for ms in [
        0i64,
        1,
        1_700_000_000_123,
        946_684_800_000,
        4_102_444_800_000,
    ] {
        let got: i64 = c
            .query_one(
                "SELECT (extract(epoch FROM $1::timestamptz) * 1000)::bigint",
                &[&TsMs(ms)],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(got, ms);
    }
}

#[tokio::test]
async fn duplicate_fill_deliveries_are_stored_and_counted_once() {
    use aegis_control::journal::JournalRecord;
    use aegis_shared::EngineEvent;
    let (db, mut jw, jdir) = db_and_journal("dup").await;
    // The exchange delivers some fills twice (e.g. over the WebSocket and again in a REST reconcile).
    let mut expected = Totals::default();
    for i in 0..300u64 {
        let f = JournalRecord::Engine(EngineEvent::Fill(db_support::fill(i)));
        expected.add(&f);
        jw.append(&f).unwrap();
        if i.is_multiple_of(7) {
            jw.append(&f).unwrap();
        }
    }
    jw.sync().unwrap();
    let h = start(&db, &jdir, &jw, 128).await;
    caught_up(&h, &jw).await;
    h.shutdown(Duration::from_secs(5)).await;
    let c = db.client().await;
    assert_eq!(Totals::from_db(&c).await, expected);
    let r = c
        .query_one(
            "SELECT (SELECT sum(fills) FROM daily_pnl)::bigint, \
             (SELECT sum(realized_pnl) FROM daily_pnl) = (SELECT sum(realized_pnl) FROM fills), \
             (SELECT sum(fees) FROM daily_pnl) = (SELECT sum(fee) FROM fills)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), 300);
    assert!(r.get::<_, bool>(1) && r.get::<_, bool>(2));
}

/// Issue 13.1: a fill whose key `(symbol, trade_id, split_part)` is already stored with different contents is
/// never dropped silently: it lands in `fill_conflicts`, the health counter and a `FillConflict` alert. Identical
/// contents stay an idempotent replay; another split part of the same trade is a fill of its own.
#[tokio::test]
async fn a_different_fill_under_a_stored_key_is_reported_not_dropped() {
    use aegis_control::db::DbAlert;
    use aegis_control::journal::JournalRecord;
    use aegis_shared::{EngineEvent, Qty};
    let (db, mut jw, jdir) = db_and_journal("conflict").await;
    let a = db_support::fill(1);
    let mut part = a;
    part.split_part = 1;
    let mut other = a;
    other.qty = Qty::parse("0.123").unwrap();
    for f in [a, a, part, other] {
        jw.append(&JournalRecord::Engine(EngineEvent::Fill(f)))
            .unwrap();
    }
    jw.sync().unwrap();
    let mut h = start(&db, &jdir, &jw, 128).await;
    let mut alerts = h.take_alerts().unwrap();
    caught_up(&h, &jw).await;
    assert_eq!(h.health().fill_conflicts, 1, "{:?}", h.health());
    let alert = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(a @ DbAlert::FillConflict { .. }) = alerts.recv().await {
                return a;
            }
        }
    })
    .await
    .expect("a FillConflict alert");
    let DbAlert::FillConflict {
        trade_id,
        split_part,
        ..
    } = alert
    else {
        unreachable!()
    };
    assert_eq!((trade_id, split_part), (a.trade_id, 0));
    h.shutdown(Duration::from_secs(5)).await;
    let c = db.client().await;
    let n: i64 = db_support::one(&c, "SELECT count(*) FROM fills", &[]).await;
    assert_eq!(n, 2, "the fill and its second split part");
    let r = c
        .query_one(
            "SELECT trade_id, split_part, (detail #>> '{journal,qty}')::numeric = 0.123, \
             (detail #>> '{stored,qty}')::numeric = (SELECT qty FROM fills WHERE split_part = 0) \
             FROM fill_conflicts",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, i64>(0) as u64, a.trade_id);
    assert_eq!(r.get::<_, i16>(1), 0);
    assert!(r.get::<_, bool>(2), "the journal's version is kept");
    assert!(r.get::<_, bool>(3), "next to the stored one");

    // A restart reads the counter back from the table; the replayed conflict is not counted twice.
    c.execute(
        "UPDATE writer_progress SET next_offset = 0, records = 0",
        &[],
    )
    .await
    .unwrap();
    let h = start(&db, &jdir, &jw, 128).await;
    caught_up(&h, &jw).await;
    assert_eq!(h.health().fill_conflicts, 1);
    h.shutdown(Duration::from_secs(5)).await;
}

/// Issue 14: the market of every order, fill and position reaches Postgres. Spot and futures are separate Binance
/// venues with their own trade and order id spaces, so a spot and a futures fill with the same symbol, trade id
/// and split part are two fills (both stored, no conflict), and the same client order id on both markets is two
/// orders. A journal record written before markets existed (no `market` field) is stored as futures.
#[tokio::test]
async fn spot_and_futures_rows_carry_their_market_and_never_collide() {
    use aegis_control::journal::JournalRecord;
    use aegis_shared::event::{FeeConversion, OrderStatus};
    use aegis_shared::{EngineEvent, Market, Notional, Price, Symbol};
    let (db, mut jw, jdir) = db_and_journal("market").await;
    let futures_fill = db_support::fill(1);
    assert_eq!(futures_fill.market, Market::Futures);
    let mut spot_fill = futures_fill;
    spot_fill.market = Market::Spot;
    // Spot charges a buy's fee in the asset bought; a BNB fee is valued: both carry a fee value row, keyed by the
    // market as well.
    let bnb = FeeConversion::Converted {
        price: Price::parse("600").unwrap(),
        quote: Notional::parse("0.24").unwrap(),
    };
    let mut spot_fill_bnb = spot_fill;
    spot_fill_bnb.trade_id += 1;
    spot_fill_bnb.fee_asset = Symbol::new("BNB").unwrap();
    spot_fill_bnb.fee_conv = bnb;
    let mut futures_fill_bnb = spot_fill_bnb;
    futures_fill_bnb.market = Market::Futures;
    let futures_order = db_support::order(2, OrderStatus::New);
    let mut spot_order = futures_order;
    spot_order.market = Market::Spot;
    let mut spot_position = db_support::position(3);
    spot_position.market = Market::Spot;
    // An old journal's fill: the JSON of a fill with the `market` key removed, as written before issue 14.
    let mut old = serde_json::to_value(JournalRecord::Engine(EngineEvent::Fill(db_support::fill(
        4,
    ))))
    .unwrap();
    let removed = old
        .pointer_mut("/data")
        .and_then(|f| f.as_object_mut())
        .and_then(|f| f.remove("market"));
    assert_eq!(removed, Some(serde_json::json!("futures")), "{old}");
    let old: JournalRecord = serde_json::from_value(old).unwrap();
    for r in [
        EngineEvent::Fill(futures_fill),
        EngineEvent::Fill(spot_fill),
        EngineEvent::Fill(spot_fill_bnb),
        EngineEvent::Fill(futures_fill_bnb),
        EngineEvent::Order(futures_order),
        EngineEvent::Order(spot_order),
        EngineEvent::Position(spot_position),
    ] {
        jw.append(&JournalRecord::Engine(r)).unwrap();
    }
    jw.append(&old).unwrap();
    jw.sync().unwrap();
    let h = start(&db, &jdir, &jw, 128).await;
    caught_up(&h, &jw).await;
    assert_eq!(h.health().fill_conflicts, 0, "{:?}", h.health());
    h.shutdown(Duration::from_secs(5)).await;

    let c = db.client().await;
    let fills: Vec<(i64, String)> = c
        .query(
            "SELECT trade_id, market FROM fills ORDER BY trade_id, market",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let t = futures_fill.trade_id as i64;
    let old_t = db_support::fill(4).trade_id as i64;
    assert_eq!(
        fills,
        vec![
            (t, "futures".to_string()),
            (t, "spot".to_string()),
            (t + 1, "futures".to_string()),
            (t + 1, "spot".to_string()),
            (old_t, "futures".to_string()),
        ],
        "both markets' fills of one trade id are stored; the old record reads as futures"
    );
    let conflicts: i64 = db_support::one(&c, "SELECT count(*) FROM fill_conflicts", &[]).await;
    assert_eq!(conflicts, 0);
    let fee_values: Vec<String> = db_support::column(
        &c,
        "SELECT market || ':' || trim_scale(fee_quote)::text FROM fill_fee_values ORDER BY market",
    )
    .await;
    assert_eq!(fee_values, ["futures:0.24", "spot:0.24"]);
    // Each market's fills are summed on their own day row.
    let days: Vec<String> = db_support::column(
        &c,
        "SELECT market || ':' || fee_asset || ':' || sum(fills) FROM daily_pnl GROUP BY market, fee_asset \
         ORDER BY market, fee_asset",
    )
    .await;
    assert_eq!(
        days,
        [
            "futures:BNB:1",
            "futures:USDT:2",
            "spot:BNB:1",
            "spot:USDT:1"
        ]
    );
    let net: Vec<String> = db_support::column(
        &c,
        "SELECT market || ':' || sum(fills) FROM daily_net GROUP BY market ORDER BY market",
    )
    .await;
    assert_eq!(net, ["futures:3", "spot:2"]);

    let orders: Vec<String> = db_support::column(
        &c,
        "SELECT client_id || ':' || market || ':' || status FROM orders ORDER BY market",
    )
    .await;
    let id = futures_order.client_id.as_str();
    assert_eq!(
        orders,
        [format!("{id}:futures:NEW"), format!("{id}:spot:NEW")]
    );
    let events: Vec<String> = db_support::column(
        &c,
        "SELECT market FROM order_events ORDER BY journal_offset",
    )
    .await;
    assert_eq!(events, ["futures", "spot"]);
    let positions: Vec<String> =
        db_support::column(&c, "SELECT market FROM position_snapshots").await;
    assert_eq!(positions, ["spot"]);

    // A row written the way the writer did before V60 (no market column named) is a futures row, and a market
    // the schema does not know is refused.
    c.batch_execute(
        "INSERT INTO position_snapshots (journal_offset, ts, symbol, mode, qty, entry_price, realized_pnl, fees) \
         VALUES (999999, now(), 'BTCUSDT', 'scalp', 1, 1, 0, 0)",
    )
    .await
    .unwrap();
    let m: String = db_support::one(
        &c,
        "SELECT market FROM position_snapshots WHERE journal_offset = 999999",
        &[],
    )
    .await;
    assert_eq!(m, "futures");
    let bad = c
        .batch_execute(
            "INSERT INTO position_snapshots (journal_offset, ts, symbol, mode, qty, entry_price, realized_pnl, \
             fees, market) VALUES (1000000, now(), 'BTCUSDT', 'scalp', 1, 1, 0, 0, 'margin')",
        )
        .await;
    assert!(bad.is_err(), "market 'margin' must violate the CHECK");
}
