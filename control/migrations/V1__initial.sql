-- Aegis schema, version 1 (applied by refinery, see control/src/db/migrations.rs).
--
-- Conventions
-- * Money and quantities are NUMERIC(38,8): exact, the engine's units are 1e-8. Never float.
-- * Times are TIMESTAMPTZ (UTC). Journal-sourced rows carry `journal_offset`, the offset of the journal record they
--   came from, as a unique key: a journal replay can never store a record twice, even without writer_progress.
-- * Fills, order events and the audit log are append-only (triggers below refuse UPDATE, DELETE and TRUNCATE for
--   every role, and the application role `aegis_app` has no such privileges either).

-- Where the journal -> Postgres writer stands. Updated in the same transaction as the rows it stored, so a crash
-- either keeps both or neither: catch-up is exactly-once.
CREATE TABLE writer_progress (
    stream      TEXT PRIMARY KEY,
    next_offset BIGINT NOT NULL,          -- resume point: offset of the next journal record to store
    last_offset BIGINT,                   -- offset of the last record stored (NULL before the first)
    records     BIGINT NOT NULL DEFAULT 0, -- journal records consumed (stored or skipped) since the start
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every order state change, in journal order.
CREATE TABLE order_events (
    journal_offset BIGINT PRIMARY KEY,
    ts             TIMESTAMPTZ NOT NULL,
    symbol         TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    exchange_id    BIGINT,
    mode           TEXT NOT NULL,
    intent         TEXT NOT NULL,
    side           TEXT NOT NULL,
    order_type     TEXT NOT NULL,
    tif            TEXT,
    price          NUMERIC(38, 8) NOT NULL,
    qty            NUMERIC(38, 8) NOT NULL,
    filled         NUMERIC(38, 8) NOT NULL,
    reduce_only    BOOLEAN NOT NULL,
    status         TEXT NOT NULL,
    reject_code    INTEGER NOT NULL
);
CREATE INDEX order_events_client_id ON order_events (client_id);
CREATE INDEX order_events_ts ON order_events (ts);

-- The latest state of every order (one row per client order id).
CREATE TABLE orders (
    client_id   TEXT PRIMARY KEY,
    symbol      TEXT NOT NULL,
    exchange_id BIGINT,
    mode        TEXT NOT NULL,
    intent      TEXT NOT NULL,
    side        TEXT NOT NULL,
    order_type  TEXT NOT NULL,
    tif         TEXT,
    price       NUMERIC(38, 8) NOT NULL,
    qty         NUMERIC(38, 8) NOT NULL,
    filled      NUMERIC(38, 8) NOT NULL,
    reduce_only BOOLEAN NOT NULL,
    status      TEXT NOT NULL,
    reject_code INTEGER NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    last_offset BIGINT NOT NULL
);
CREATE INDEX orders_symbol_status ON orders (symbol, status);

-- Fills: the tax records. Kept forever (never deleted by the bot). The exchange trade id is unique per symbol and
-- is the idempotency key (a fill delivered twice is stored once); journal_offset says where it came from.
CREATE TABLE fills (
    journal_offset    BIGINT NOT NULL,
    ts                TIMESTAMPTZ NOT NULL,
    symbol            TEXT NOT NULL,
    client_id         TEXT NOT NULL,
    exchange_order_id BIGINT NOT NULL,
    trade_id          BIGINT NOT NULL,
    mode              TEXT NOT NULL,
    intent            TEXT NOT NULL,
    side              TEXT NOT NULL,
    price             NUMERIC(38, 8) NOT NULL,
    qty               NUMERIC(38, 8) NOT NULL,
    fee               NUMERIC(38, 8) NOT NULL,
    fee_asset         TEXT NOT NULL,
    liquidity         TEXT NOT NULL,
    realized_pnl      NUMERIC(38, 8) NOT NULL,
    PRIMARY KEY (symbol, trade_id)
);
CREATE INDEX fills_ts ON fills (ts);

-- A position after every change.
CREATE TABLE position_snapshots (
    journal_offset BIGINT PRIMARY KEY,
    ts             TIMESTAMPTZ NOT NULL,
    symbol         TEXT NOT NULL,
    mode           TEXT NOT NULL,
    qty            NUMERIC(38, 8) NOT NULL,
    entry_price    NUMERIC(38, 8) NOT NULL,
    realized_pnl   NUMERIC(38, 8) NOT NULL,
    fees           NUMERIC(38, 8) NOT NULL
);
CREATE INDEX position_snapshots_symbol_ts ON position_snapshots (symbol, mode, ts);

-- Realized PnL per UTC day, maintained by the writer from the fills it inserts (only newly inserted fills count,
-- so a replay never adds twice). Fees are summed per fee asset.
CREATE TABLE daily_pnl (
    day          DATE NOT NULL,
    symbol       TEXT NOT NULL,
    mode         TEXT NOT NULL,
    fee_asset    TEXT NOT NULL,
    realized_pnl NUMERIC(38, 8) NOT NULL,
    fees         NUMERIC(38, 8) NOT NULL,
    fills        BIGINT NOT NULL,
    PRIMARY KEY (day, symbol, mode, fee_asset)
);

CREATE TABLE breaker_events (
    journal_offset BIGINT PRIMARY KEY,
    ts             TIMESTAMPTZ NOT NULL,
    scope          TEXT NOT NULL,   -- 'global' or 'mode'
    mode           TEXT,            -- the mode of a per-mode breaker
    change         TEXT NOT NULL,   -- 'tripped' | 'resumed' | 'reset'
    reason         TEXT,            -- trip reason
    until_ts       TIMESTAMPTZ      -- end of the cooldown of a trip
);
CREATE INDEX breaker_events_ts ON breaker_events (ts);

-- Engine state changes, alerts and session starts from the journal (kind = 'state' | 'alert' | 'session'), as JSON.
CREATE TABLE engine_events (
    journal_offset BIGINT PRIMARY KEY,
    ts             TIMESTAMPTZ NOT NULL,
    kind           TEXT NOT NULL,
    detail         JSONB NOT NULL
);
CREATE INDEX engine_events_ts ON engine_events (ts);

-- Control commands sent to the engine (halt, resume, kill, limits, breaker reset, ...). Fed from the journal's
-- command records (journal_offset set), or written directly for commands that never reach the engine.
CREATE TABLE commands (
    id             BIGSERIAL PRIMARY KEY,
    journal_offset BIGINT UNIQUE,
    ts             TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor          TEXT NOT NULL,
    source_ip      TEXT NOT NULL,
    command        JSONB NOT NULL,
    outcome        TEXT NOT NULL
);
CREATE INDEX commands_ts ON commands (ts);

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,       -- PHC string (argon2id); never a password
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_login_at TIMESTAMPTZ,
    disabled_at   TIMESTAMPTZ
);

-- JWTs revoked before their expiry (logout, password change). Rows past expires_at may be pruned.
CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    user_id    BIGINT REFERENCES users (id),
    revoked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);

-- Every API request (who, when, from where). Kept >= 1 year; pruned after 400 days (db/retention.rs).
CREATE TABLE api_access_log (
    id          BIGSERIAL PRIMARY KEY,
    ts          TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor       TEXT,                -- user name, NULL when not authenticated
    source_ip   TEXT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    status      SMALLINT NOT NULL,
    duration_us BIGINT NOT NULL
);
CREATE INDEX api_access_log_ts ON api_access_log (ts);

-- Configuration changes. Secret values are never stored: callers store '***' for them.
CREATE TABLE config_changes (
    id        BIGSERIAL PRIMARY KEY,
    ts        TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor     TEXT NOT NULL,
    source_ip TEXT NOT NULL,
    key       TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT
);

-- API key lifecycle (rotation, rejection, restriction changes). Only a short key hint (last 4 chars), never a key.
CREATE TABLE key_events (
    id          BIGSERIAL PRIMARY KEY,
    ts          TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor       TEXT NOT NULL,
    source_ip   TEXT NOT NULL,
    event       TEXT NOT NULL,
    environment TEXT NOT NULL,
    key_hint    TEXT,
    detail      JSONB NOT NULL DEFAULT '{}'
);

-- The tamper-evident audit trail. Each row carries the SHA-256 of the row before it (prev_hash) and its own hash
-- over a canonical serialization (audit_payload below; identical code in control/src/db/audit.rs). The insert
-- trigger assigns id, prev_hash and hash under a lock, so clients cannot fork the chain (whatever they send for
-- these columns is overwritten). A restore must load this table with triggers off (session_replication_role =
-- replica, see deploy/restore.sh) so the stored rows come back byte for byte instead of being re-chained.
-- `detail` is JSON stored as the exact text that is hashed (JSONB would re-format it).
CREATE SEQUENCE audit_log_id_seq;
CREATE TABLE audit_log (
    id        BIGINT PRIMARY KEY,        -- assigned by the chain trigger from audit_log_id_seq
    ts        TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    actor     TEXT NOT NULL,
    source_ip TEXT NOT NULL,
    action    TEXT NOT NULL,
    detail    TEXT NOT NULL CHECK (detail::json IS NOT NULL),
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL UNIQUE
);
CREATE INDEX audit_log_ts ON audit_log (ts);
CREATE INDEX audit_log_action ON audit_log (action);

-- Canonical serialization of an audit row (version 1). Text fields are length-prefixed with their UTF-8 byte
-- length so no two different rows serialize alike; the timestamp is integer microseconds since the epoch.
CREATE FUNCTION audit_payload(
    p_id BIGINT, p_ts TIMESTAMPTZ, p_actor TEXT, p_source_ip TEXT, p_action TEXT, p_detail TEXT, p_prev_hash TEXT
) RETURNS TEXT LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT 'aegis-audit-v1' || E'\n'
        || p_id::text || E'\n'
        || (extract(epoch FROM p_ts) * 1000000)::bigint::text || E'\n'
        || octet_length(p_actor)::text || ':' || p_actor || E'\n'
        || octet_length(p_source_ip)::text || ':' || p_source_ip || E'\n'
        || octet_length(p_action)::text || ':' || p_action || E'\n'
        || octet_length(p_detail)::text || ':' || p_detail || E'\n'
        || p_prev_hash
$$;

CREATE FUNCTION audit_log_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head TEXT;
BEGIN
    -- Serialize appenders. The id is drawn after the lock so ids follow chain order; the head is read after it,
    -- and (READ COMMITTED, volatile function) sees the previous appender's committed row.
    PERFORM pg_advisory_xact_lock(7423001);
    NEW.id := nextval('audit_log_id_seq');
    NEW.ts := date_trunc('microseconds', coalesce(NEW.ts, clock_timestamp()));
    SELECT a.hash INTO head FROM audit_log a ORDER BY a.id DESC LIMIT 1;
    NEW.prev_hash := coalesce(head, repeat('0', 64));
    NEW.hash := encode(sha256(convert_to(
        audit_payload(NEW.id, NEW.ts, NEW.actor, NEW.source_ip, NEW.action, NEW.detail, NEW.prev_hash), 'UTF8')), 'hex');
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_chain();

-- Append-only tables refuse changes from every role (only a superuser who disables triggers can bypass this, and
-- the hash chain then shows it).
CREATE FUNCTION aegis_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'aegis: % on % is not allowed: the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION aegis_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION aegis_refuse_change();
CREATE TRIGGER fills_append_only BEFORE UPDATE OR DELETE ON fills
    FOR EACH ROW EXECUTE FUNCTION aegis_refuse_change();
CREATE TRIGGER fills_no_truncate BEFORE TRUNCATE ON fills
    FOR EACH STATEMENT EXECUTE FUNCTION aegis_refuse_change();
CREATE TRIGGER order_events_append_only BEFORE UPDATE OR DELETE ON order_events
    FOR EACH ROW EXECUTE FUNCTION aegis_refuse_change();
CREATE TRIGGER order_events_no_truncate BEFORE TRUNCATE ON order_events
    FOR EACH STATEMENT EXECUTE FUNCTION aegis_refuse_change();

-- The application role. Deploy: migrations run as the database owner; the bot logs in as a member of aegis_app
-- (see deploy/README-db.md), which can read and append but never rewrite history. Roles are cluster-wide, so
-- creating it is skipped when it exists (or when the migrating role may not create roles; grants then are too).
DO $$
BEGIN
    BEGIN
        CREATE ROLE aegis_app NOLOGIN;
    EXCEPTION
        WHEN duplicate_object OR unique_violation THEN NULL;
        WHEN insufficient_privilege THEN
            RAISE NOTICE 'aegis: cannot create role aegis_app (no CREATEROLE); grant privileges manually';
    END;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'aegis_app') THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO aegis_app', current_database());
        GRANT USAGE ON SCHEMA public TO aegis_app;
        GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO aegis_app;
        GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO aegis_app;
        -- Mutable state the bot maintains.
        GRANT UPDATE ON writer_progress, orders, daily_pnl, users TO aegis_app;
        -- Expired tokens and access-log rows older than the retention period may be pruned.
        GRANT DELETE ON revoked_tokens, api_access_log TO aegis_app;
        -- History is never rewritten by the bot.
        REVOKE UPDATE, DELETE, TRUNCATE ON audit_log, fills, order_events, position_snapshots, breaker_events,
            engine_events, commands, config_changes, key_events FROM aegis_app;
    END IF;
END
$$;
