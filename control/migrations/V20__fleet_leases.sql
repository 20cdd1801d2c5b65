-- Fleet leases (issue 15.5, guide §1.1 "never use the same key for multiple bots"): bots sharing this database
-- hold one row per API-key fingerprint (`sha256:` + 16 hex digits of SHA-256 of the API key, as in keys.json and
-- the audit trail; never the key). A row is held while `state = 'running'` and `expires_at` lies ahead; its holder
-- renews it (heartbeat) every third of the lease time. Another instance takes it over only once it has expired or
-- was released. All times come from this server's clock (`now()`), so clock differences between hosts do not matter.
CREATE TABLE fleet_leases (
    key_fingerprint TEXT PRIMARY KEY,
    -- `production` or `testnet`.
    environment TEXT NOT NULL,
    -- FLEET_INSTANCE_NAME of the holder, its host name and process id.
    instance TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    -- Random per run: tells a restarted holder from the one before it.
    token TEXT NOT NULL,
    version TEXT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    released_at TIMESTAMPTZ,
    -- `running` (held until expires_at) or `released` (stopped cleanly).
    state TEXT NOT NULL CHECK (state IN ('running', 'released')),
    -- True while the holder has new entries halted because it could not prove it still holds the lease.
    entries_halted BOOLEAN NOT NULL DEFAULT false,
    -- host:port/dbname of the holder's DATABASE_URL (no user, no password): the records of two bots must not
    -- share one database (their journal offsets and daily PnL rows would collide), which the lease refuses.
    records_db TEXT
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'aegis_app') THEN
        GRANT SELECT, INSERT, UPDATE ON fleet_leases TO aegis_app;
    END IF;
END
$$;
