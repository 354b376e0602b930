-- keyward schema, version 3: paged lists. Applied after version 2, like it
-- inside a transaction holding an advisory lock; idempotent.

-- Keyset pagination of a tenant's keys, newest first by (created_at, id).
-- Ids compare byte by byte (COLLATE "C") whatever the database's collation,
-- as the keyring's cursors do; a backward scan serves the descending order.
CREATE INDEX IF NOT EXISTS keyward_keys_tenant_page_idx
    ON keyward_keys (tenant, created_at, id COLLATE "C");
