//! Funding settlements, liquidations and BNB fee values reach Postgres exactly, and a replayed journal adds
//! nothing (migration V40); the day's net in `daily_net` has the funding and the BNB fee's quote value (V50).

mod db_support;

use aegis_control::db::{spawn_writer, WriterConfig};
use aegis_control::journal::JournalRecord;
use aegis_shared::event::{FeeConversion, ForcedCloseKind, FundingEvent, LiquidationEvent};
use aegis_shared::{
    ClientOrderId, EngineEvent, Notional, Price, Qty, Secret, Side, StrategyMode, Symbol,
};
use db_support::{db_and_journal, wait_caught_up};
use std::time::Duration;

fn sym(s: &str) -> Symbol {
    Symbol::new(s).unwrap()
}

#[tokio::test]
async fn funding_liquidations_and_bnb_fee_values_are_stored_once() {
    let (db, mut jw, jdir) = db_and_journal("funding").await;
    let mut expected_funding = Notional::ZERO;
    for i in 0..40u64 {
        let quote = Notional::from_units(-1_234_567 - i as i64);
        expected_funding += quote;
        let f = JournalRecord::Engine(EngineEvent::Funding(FundingEvent {
            ts_ms: 1_700_000_000_000 + i * 1000,
            symbol: sym("BTCUSDT"),
            mode: StrategyMode::Swing,
            tran_id: 9_000_000 + i,
            asset: sym("USDT"),
            amount: quote,
            total: quote,
            quote,
        }));
        jw.append(&f).unwrap();
        // A settlement delivered twice (an overlapping income window) is one row.
        if i % 5 == 0 {
            jw.append(&f).unwrap();
        }
    }
    let mut fill = db_support::fill(1);
    fill.fee = Notional::parse("0.0001").unwrap();
    fill.fee_asset = sym("BNB");
    fill.fee_conv = FeeConversion::convert(fill.fee, Price::parse("612.35").unwrap());
    jw.append(&JournalRecord::Engine(EngineEvent::Fill(fill)))
        .unwrap();
    // A fee in the quote asset (no fill_fee_values row) counts as charged.
    let usdt_fill = db_support::fill(2);
    jw.append(&JournalRecord::Engine(EngineEvent::Fill(usdt_fill)))
        .unwrap();
    jw.append(&JournalRecord::Engine(EngineEvent::Liquidation(
        LiquidationEvent {
            ts_ms: 1_700_000_100_000,
            symbol: fill.symbol,
            mode: StrategyMode::Scalp,
            kind: ForcedCloseKind::Adl,
            client_id: ClientOrderId::new("adl_autoclose").unwrap(),
            trade_id: fill.trade_id,
            side: Side::Sell,
            price: Price::from_int(59_000),
            qty: Qty::parse("0.003").unwrap(),
            realized_pnl: Notional::parse("-3.0003").unwrap(),
            fee: Notional::parse("0.06123500").unwrap(),
            position_after: Qty::ZERO,
        },
    )))
    .unwrap();
    jw.sync().unwrap();

    let mut cfg = WriterConfig::new(Secret::new(db.url()));
    cfg.idle_poll = Duration::from_millis(5);
    let h = spawn_writer(cfg, jdir.to_path_buf(), jw.stats());
    wait_caught_up(&h, &jw.stats(), Duration::from_secs(20), "writer").await;
    h.shutdown(Duration::from_secs(5)).await;

    let c = db.client().await;
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM funding), (SELECT sum(quote_amount)::text FROM funding), \
             (SELECT count(*) FROM liquidations), (SELECT kind FROM liquidations), \
             (SELECT realized_pnl::text FROM liquidations), \
             (SELECT fee_quote::text FROM fill_fee_values WHERE fee_asset = 'BNB')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), 40);
    assert_eq!(
        Notional::parse(&r.get::<_, String>(1)).unwrap(),
        expected_funding
    );
    assert_eq!(r.get::<_, i64>(2), 1);
    assert_eq!(r.get::<_, String>(3), "adl");
    assert_eq!(r.get::<_, String>(4), "-3.00030000");
    // 0.0001 BNB × 612.35 = 0.061235 USDT.
    assert_eq!(r.get::<_, String>(5), "0.06123500");

    // The day's net per (day, symbol, mode): funding and the BNB fee's quote value are in it, exactly once
    // although 8 settlements were journaled twice.
    let rows = c
        .query(
            "SELECT mode, realized_pnl::text, fees_quote::text, funding::text, net::text, fills \
             FROM daily_net WHERE symbol = 'BTCUSDT' ORDER BY mode",
            &[],
        )
        .await
        .unwrap();
    let d = |r: &tokio_postgres::Row, i: usize| Notional::parse(&r.get::<_, String>(i)).unwrap();
    assert_eq!(rows.len(), 2);
    let (scalp, swing) = (&rows[0], &rows[1]);
    assert_eq!(scalp.get::<_, String>(0), "scalp");
    assert_eq!(d(scalp, 2), usdt_fill.fee);
    assert_eq!(d(scalp, 3), Notional::ZERO);
    assert_eq!(d(scalp, 4), usdt_fill.realized_pnl - usdt_fill.fee);
    assert_eq!(swing.get::<_, String>(0), "swing");
    assert_eq!(d(swing, 1), fill.realized_pnl);
    assert_eq!(d(swing, 2), Notional::parse("0.061235").unwrap());
    assert_eq!(d(swing, 3), expected_funding);
    assert_eq!(
        d(swing, 4),
        fill.realized_pnl - Notional::parse("0.061235").unwrap() + expected_funding
    );
    assert_eq!(swing.get::<_, i64>(5), 1);
}
