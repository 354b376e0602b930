-- keyward schema, version 2: immediate revocations are in effect for every
-- reader, whatever its clock. Applied after version 1, like it inside a
-- transaction holding an advisory lock; idempotent.

-- true: revoked_at is a scheduled instant (a rotation's grace) that each
-- reader compares with its own clock; false: an immediate revocation, in
-- effect for everyone (or no revocation at all).
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = 'keyward_keys'::regclass
          AND attname = 'revocation_scheduled'
          AND NOT attisdropped
    ) THEN
        ALTER TABLE keyward_keys
            ADD COLUMN revocation_scheduled boolean NOT NULL DEFAULT false;
        -- Version 1 kept only instants: one still ahead is a rotation's
        -- grace, and stays scheduled; one already past is in effect.
        UPDATE keyward_keys SET revocation_scheduled = true WHERE revoked_at > now();
    END IF;
END
$$;

-- Notify also when a scheduled revocation becomes immediate at the same
-- instant (revoked_at unchanged).
DROP TRIGGER IF EXISTS keyward_keys_revoked ON keyward_keys;
CREATE TRIGGER keyward_keys_revoked
    AFTER UPDATE OF revoked_at, revocation_scheduled ON keyward_keys
    FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
          OR OLD.revocation_scheduled IS DISTINCT FROM NEW.revocation_scheduled)
    EXECUTE FUNCTION keyward_notify_revoked();
