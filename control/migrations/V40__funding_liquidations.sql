-- Funding settlements (FUNDING_FEE income) and liquidation/ADL fills (issue 13 items 2 and 6).
-- One funding row per (symbol, tranId, mode): the engine splits a symbol's settlement over the modes holding it,
-- and the key makes storing it idempotent (a replayed journal or a second delivery adds nothing).
CREATE TABLE funding (
    journal_offset BIGINT NOT NULL,
    ts             TIMESTAMPTZ NOT NULL,
    symbol         TEXT NOT NULL,
    mode           TEXT NOT NULL,
    tran_id        BIGINT NOT NULL,
    asset          TEXT NOT NULL,
    amount         NUMERIC(38, 8) NOT NULL,  -- this mode's part in `asset`, received > 0
    quote_amount   NUMERIC(38, 8) NOT NULL,  -- the same in the symbol's quote asset (what PnL counts)
    total          NUMERIC(38, 8) NOT NULL,  -- the exchange's whole settlement of the symbol
    PRIMARY KEY (symbol, tran_id, mode)
);
CREATE INDEX funding_ts ON funding (ts);

-- Liquidation and ADL fills (the matching row in `fills` has the same symbol and trade id).
CREATE TABLE liquidations (
    journal_offset BIGINT PRIMARY KEY,
    ts             TIMESTAMPTZ NOT NULL,
    symbol         TEXT NOT NULL,
    mode           TEXT NOT NULL,
    kind           TEXT NOT NULL,            -- 'liquidation' | 'adl'
    client_id      TEXT NOT NULL,
    trade_id       BIGINT NOT NULL,
    side           TEXT NOT NULL,
    price          NUMERIC(38, 8) NOT NULL,
    qty            NUMERIC(38, 8) NOT NULL,
    realized_pnl   NUMERIC(38, 8) NOT NULL,
    fee            NUMERIC(38, 8) NOT NULL,  -- quote asset
    position_after NUMERIC(38, 8) NOT NULL
);
CREATE INDEX liquidations_ts ON liquidations (ts);

-- A fee paid in another asset than the quote asset (BNB), valued in the quote asset at fill time (`fills` is
-- append-only, so the value lives beside it, keyed like it). No row: the fee is in the quote asset (`fee` is the
-- value); `price` NULL: it could not be priced (the bot raised fee_unconverted and left it out of PnL).
CREATE TABLE fill_fee_values (
    symbol     TEXT NOT NULL,
    trade_id   BIGINT NOT NULL,
    split_part SMALLINT NOT NULL DEFAULT 0, -- the fill's key is (symbol, trade_id, split_part) since V30
    fee_asset  TEXT NOT NULL,
    price      NUMERIC(38, 8),           -- quote per unit of fee_asset (the BNBUSDT mark price)
    fee_quote  NUMERIC(38, 8),           -- fee × price, rounded half away from zero to 1e-8
    PRIMARY KEY (symbol, trade_id, split_part)
);

-- History like `fills`: append-only for every role, and the application role may read and append only.
CREATE TRIGGER funding_append_only BEFORE UPDATE OR DELETE ON funding
    FOR EACH ROW EXECUTE FUNCTION aegis_refuse_change();
CREATE TRIGGER liquidations_append_only BEFORE UPDATE OR DELETE ON liquidations
    FOR EACH ROW EXECUTE FUNCTION aegis_refuse_change();
CREATE TRIGGER fill_fee_values_append_only BEFORE UPDATE OR DELETE ON fill_fee_values
    FOR EACH ROW EXECUTE FUNCTION aegis_refuse_change();
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'aegis_app') THEN
        GRANT SELECT, INSERT ON funding, liquidations, fill_fee_values TO aegis_app;
    END IF;
END
$$;
