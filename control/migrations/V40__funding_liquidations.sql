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

-- A fee paid in another asset than the quote asset (BNB), valued in the quote asset at fill time. NULL when the
-- fee is in the quote asset (`fee` is the value) or when it could not be priced (the bot raised fee_unconverted).
ALTER TABLE fills ADD COLUMN fee_quote NUMERIC(38, 8);
