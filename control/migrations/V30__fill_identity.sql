-- Issue 13.1: a fill's identity is (symbol, trade_id, split_part). One exchange trade booked to several modes (a
-- liquidation split across modes' positions) is stored as one row per part; unsplit fills are part 0.
ALTER TABLE fills ADD COLUMN split_part SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE fills DROP CONSTRAINT fills_pkey;
ALTER TABLE fills ADD PRIMARY KEY (symbol, trade_id, split_part);

-- A journaled fill whose key is already stored with different contents is kept here (never dropped silently)
-- and reported (log, `fill_conflict` alert, counter in /api/status). `detail` holds both versions.
-- Keyed by the journal offset so a replayed batch records it once.
CREATE TABLE fill_conflicts (
    journal_offset BIGINT PRIMARY KEY,
    stored_offset  BIGINT NOT NULL,
    symbol         TEXT NOT NULL,
    trade_id       BIGINT NOT NULL,
    split_part     SMALLINT NOT NULL,
    detail         JSONB NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TRIGGER fill_conflicts_append_only BEFORE UPDATE OR DELETE ON fill_conflicts
    FOR EACH ROW EXECUTE FUNCTION aegis_refuse_change();
CREATE TRIGGER fill_conflicts_no_truncate BEFORE TRUNCATE ON fill_conflicts
    FOR EACH STATEMENT EXECUTE FUNCTION aegis_refuse_change();

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'aegis_app') THEN
        GRANT SELECT, INSERT ON fill_conflicts TO aegis_app;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'aegis: cannot grant on fill_conflicts; grant SELECT, INSERT to aegis_app manually';
END
$$;
