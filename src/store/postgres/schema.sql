-- keyward schema, version 1. Applied by PgStore::migrate() inside a
-- transaction holding an advisory lock; every statement is idempotent.

CREATE TABLE IF NOT EXISTS keyward_keys (
    id              text        PRIMARY KEY,
    tenant          text        NOT NULL,
    kind            text        NOT NULL,
    name            text        NOT NULL,
    display_prefix  text        NOT NULL,
    -- 2-byte big-endian scheme version, then the 32-byte digest.
    hash            bytea       NOT NULL CHECK (octet_length(hash) = 34),
    scopes          text[]      NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz,
    last_used_at    timestamptz,
    revoked_at      timestamptz,
    -- Requests a minute; NULL = unlimited.
    rate_limit      integer     CHECK (rate_limit IS NULL OR rate_limit > 0),
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    rotated_from    text,
    -- Insertion order, to list keys created in the same instant stably.
    seq             bigint      GENERATED ALWAYS AS IDENTITY
);

CREATE UNIQUE INDEX IF NOT EXISTS keyward_keys_hash_key ON keyward_keys (hash);
CREATE INDEX IF NOT EXISTS keyward_keys_tenant_idx ON keyward_keys (tenant, created_at, seq);

-- Other processes learn of a revocation through NOTIFY on this channel, with
-- the key id as payload (never the hash).
CREATE OR REPLACE FUNCTION keyward_notify_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('keyward_revoked', NEW.id);
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS keyward_keys_revoked ON keyward_keys;
CREATE TRIGGER keyward_keys_revoked
    AFTER UPDATE OF revoked_at ON keyward_keys
    FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at)
    EXECUTE FUNCTION keyward_notify_revoked();
