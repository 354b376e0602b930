-- keyward schema, version 4: key lifecycle. Applied after version 3, like it
-- inside a transaction holding an advisory lock; idempotent.

-- The user inside the tenant a key belongs to (a personal token); NULL for
-- a key of the whole tenant.
ALTER TABLE keyward_keys ADD COLUMN IF NOT EXISTS owner text;
CREATE INDEX IF NOT EXISTS keyward_keys_owner_idx
    ON keyward_keys (tenant, owner, created_at, id COLLATE "C")
    WHERE owner IS NOT NULL;

-- Lifecycle queries across tenants: keys by expiry, and by last use (or
-- creation), in the order the sweeper reads them.
CREATE INDEX IF NOT EXISTS keyward_keys_expiry_idx
    ON keyward_keys (expires_at, id COLLATE "C")
    WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS keyward_keys_unused_idx
    ON keyward_keys ((COALESCE(last_used_at, created_at)), id COLLATE "C");

-- A revoked key's presentation looks for the keys that replaced it.
CREATE INDEX IF NOT EXISTS keyward_keys_rotated_from_idx
    ON keyward_keys (rotated_from)
    WHERE rotated_from IS NOT NULL;

-- Lifecycle notices: one row per key and notice ("expired",
-- "expiring:604800", "stale"), claimed by one sweeper until lease_until,
-- then delivered. The primary key makes a claim atomic across instances.
CREATE TABLE IF NOT EXISTS keyward_notices (
    key_id       text        NOT NULL REFERENCES keyward_keys (id) ON DELETE CASCADE,
    notice       text        NOT NULL,
    lease_until  timestamptz,
    delivered_at timestamptz,
    PRIMARY KEY (key_id, notice),
    CHECK ((lease_until IS NULL) <> (delivered_at IS NULL))
);
