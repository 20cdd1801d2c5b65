-- Dashboard users carry their role (issue 7: admin may control, viewer reads) and an optional contact address,
-- so Postgres holds the whole user record the bot mirrors from DATA_DIR/users.json (auth/pg_mirror.rs).
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'viewer' CHECK (role IN ('admin', 'viewer'));
ALTER TABLE users ADD COLUMN email TEXT;
