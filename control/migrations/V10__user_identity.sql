-- Issue 15.1: dashboard tokens are bound to the account they were issued for (control/src/auth/store.rs). Every
-- user gets a random id fixed at creation (a user deleted and registered again under the same name is another
-- account) and a token generation; tokens carry both and are refused when either differs.
ALTER TABLE users ADD COLUMN uid TEXT;
ALTER TABLE users ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;
UPDATE users SET uid = md5(random()::text || clock_timestamp()::text || id::text) WHERE uid IS NULL;
ALTER TABLE users ALTER COLUMN uid SET NOT NULL;

-- A change of password, role or disabled state ends the account's sessions even when made by hand (psql): an
-- UPDATE of the same account that does not raise the generation itself gets it raised here.
CREATE FUNCTION users_bump_token_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.uid = OLD.uid AND NEW.token_generation <= OLD.token_generation AND (
           NEW.password_hash IS DISTINCT FROM OLD.password_hash
        OR NEW.role IS DISTINCT FROM OLD.role
        OR NEW.disabled_at IS DISTINCT FROM OLD.disabled_at) THEN
        NEW.token_generation := OLD.token_generation + 1;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER users_token_generation BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION users_bump_token_generation();
