-- Issue 14 (spot): every order, fill and position row carries its market. Spot and USD-M futures are separate
-- Binance venues with their own order and trade id spaces, so a spot BTCUSDT trade 42 and a futures BTCUSDT trade
-- 42 are two different fills; keys that name a trade or an order include the market. Rows stored before markets
-- existed are futures (the only market then), which the column default gives them.
ALTER TABLE order_events ADD COLUMN market TEXT NOT NULL DEFAULT 'futures'
    CHECK (market IN ('futures', 'spot'));
ALTER TABLE orders ADD COLUMN market TEXT NOT NULL DEFAULT 'futures'
    CHECK (market IN ('futures', 'spot'));
ALTER TABLE fills ADD COLUMN market TEXT NOT NULL DEFAULT 'futures'
    CHECK (market IN ('futures', 'spot'));
ALTER TABLE position_snapshots ADD COLUMN market TEXT NOT NULL DEFAULT 'futures'
    CHECK (market IN ('futures', 'spot'));
-- Per-fill companions of `fills`, keyed like it.
ALTER TABLE fill_fee_values ADD COLUMN market TEXT NOT NULL DEFAULT 'futures'
    CHECK (market IN ('futures', 'spot'));
ALTER TABLE fill_conflicts ADD COLUMN market TEXT NOT NULL DEFAULT 'futures'
    CHECK (market IN ('futures', 'spot'));
-- The day's sums per market: a spot and a futures position in one symbol are different money.
ALTER TABLE daily_pnl ADD COLUMN market TEXT NOT NULL DEFAULT 'futures'
    CHECK (market IN ('futures', 'spot'));

-- Keys. The market goes last so lookups by the old leading columns (client id; symbol and trade id) keep
-- their index.
ALTER TABLE orders DROP CONSTRAINT orders_pkey;
ALTER TABLE orders ADD PRIMARY KEY (client_id, market);
ALTER TABLE fills DROP CONSTRAINT fills_pkey;
ALTER TABLE fills ADD PRIMARY KEY (symbol, trade_id, split_part, market);
ALTER TABLE fill_fee_values DROP CONSTRAINT fill_fee_values_pkey;
ALTER TABLE fill_fee_values ADD PRIMARY KEY (symbol, trade_id, split_part, market);
ALTER TABLE daily_pnl DROP CONSTRAINT daily_pnl_pkey;
ALTER TABLE daily_pnl ADD PRIMARY KEY (day, symbol, mode, fee_asset, market);
DROP INDEX position_snapshots_symbol_ts;
CREATE INDEX position_snapshots_symbol_ts ON position_snapshots (symbol, mode, market, ts);

-- `funding` and `liquidations` stay as they are: both exist only on futures.

-- daily_net (V50) joined a fill's fee value by (symbol, trade_id, split_part), which now may match the other
-- market's fill; it joins on the market too and reports the market as a column of its own. CREATE OR REPLACE
-- may only append columns, so `market` is the last one.
CREATE OR REPLACE VIEW daily_net AS
SELECT day, symbol, mode,
       sum(realized_pnl) AS realized_pnl,
       sum(fees_quote) AS fees_quote,
       sum(funding) AS funding,
       sum(realized_pnl) - sum(fees_quote) + sum(funding) AS net,
       sum(fills)::bigint AS fills,
       market
FROM (
    SELECT (f.ts AT TIME ZONE 'UTC')::date AS day, f.symbol, f.mode, f.market, f.realized_pnl,
           CASE WHEN v.symbol IS NULL THEN f.fee ELSE COALESCE(v.fee_quote, 0) END AS fees_quote,
           0::numeric AS funding, 1 AS fills
    FROM fills f
    LEFT JOIN fill_fee_values v
           ON v.symbol = f.symbol AND v.trade_id = f.trade_id AND v.split_part = f.split_part
          AND v.market = f.market
    UNION ALL
    SELECT (ts AT TIME ZONE 'UTC')::date, symbol, mode, 'futures', 0, 0, quote_amount, 0
    FROM funding
) AS x
GROUP BY day, symbol, mode, market;
