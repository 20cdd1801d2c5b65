-- Issue 13 item 2: the day's money in one place. `daily_pnl` (V1) sums realized PnL and fees per fee asset as
-- charged; it has no funding and no quote value of a fee paid in BNB, so it is not the daily loss the bot's limit
-- and breakers count. `daily_net` is that number per (UTC day, symbol, mode), derived from the append-only
-- history (fills, fill_fee_values, funding), so it can never count a row twice:
--   net = realized_pnl − fees_quote + funding
-- with fees_quote the fee in the symbol's quote asset (a BNB fee valued at fill time; an unpriced one counts 0,
-- as in the bot) and funding the quote value of the settlements (received > 0).
CREATE VIEW daily_net AS
SELECT day, symbol, mode,
       sum(realized_pnl) AS realized_pnl,
       sum(fees_quote) AS fees_quote,
       sum(funding) AS funding,
       sum(realized_pnl) - sum(fees_quote) + sum(funding) AS net,
       sum(fills)::bigint AS fills
FROM (
    SELECT (f.ts AT TIME ZONE 'UTC')::date AS day, f.symbol, f.mode, f.realized_pnl,
           CASE WHEN v.symbol IS NULL THEN f.fee ELSE COALESCE(v.fee_quote, 0) END AS fees_quote,
           0::numeric AS funding, 1 AS fills
    FROM fills f
    LEFT JOIN fill_fee_values v
           ON v.symbol = f.symbol AND v.trade_id = f.trade_id AND v.split_part = f.split_part
    UNION ALL
    SELECT (ts AT TIME ZONE 'UTC')::date, symbol, mode, 0, 0, quote_amount, 0
    FROM funding
) AS x
GROUP BY day, symbol, mode;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'aegis_app') THEN
        GRANT SELECT ON daily_net TO aegis_app;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'aegis: cannot grant on daily_net; grant SELECT to aegis_app manually';
END
$$;
