-- keyward schema, version 5: usage controls. Applied after version 4, like it
-- inside a transaction holding an advisory lock; idempotent.

-- The CIDR ranges a key may be used from, in the order given (NULL:
-- anywhere; never empty).
ALTER TABLE keyward_keys ADD COLUMN IF NOT EXISTS allowed_ips cidr[]
    CHECK (allowed_ips IS NULL OR cardinality(allowed_ips) BETWEEN 1 AND 100);

-- Usage credits (NULL: not metered), at most 2^53 - 1, and their refill:
-- set back to credits_refill_amount daily, or monthly on credits_refill_day
-- (the last day of a shorter month for days past its end), 00:00 UTC.
ALTER TABLE keyward_keys ADD COLUMN IF NOT EXISTS credits_remaining bigint
    CHECK (credits_remaining BETWEEN 0 AND 9007199254740991);
ALTER TABLE keyward_keys ADD COLUMN IF NOT EXISTS credits_refill_amount bigint
    CHECK (credits_refill_amount BETWEEN 1 AND 9007199254740991);
ALTER TABLE keyward_keys ADD COLUMN IF NOT EXISTS credits_refill_period text
    CHECK (credits_refill_period IN ('daily', 'monthly'));
ALTER TABLE keyward_keys ADD COLUMN IF NOT EXISTS credits_refill_day smallint
    CHECK (credits_refill_day BETWEEN 1 AND 31);
-- When the credits were last set or refilled (NULL: a refill is due).
ALTER TABLE keyward_keys ADD COLUMN IF NOT EXISTS credits_refilled_at timestamptz;

-- The shared rate-limit budget (NULL: the key's own).
ALTER TABLE keyward_keys ADD COLUMN IF NOT EXISTS budget text;

-- The last distinct client addresses, newest first, and the last user agent.
ALTER TABLE keyward_keys ADD COLUMN IF NOT EXISTS recent_ips inet[] NOT NULL DEFAULT '{}'
    CHECK (cardinality(recent_ips) <= 5);
ALTER TABLE keyward_keys ADD COLUMN IF NOT EXISTS last_user_agent text;

-- The credit columns hang together: a refill or an instant only with
-- credits; an amount with a period and a period with an amount; a day
-- exactly for a monthly refill.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conrelid = 'keyward_keys'::regclass AND conname = 'keyward_keys_credits_check'
    ) THEN
        ALTER TABLE keyward_keys ADD CONSTRAINT keyward_keys_credits_check CHECK (
            (credits_remaining IS NOT NULL OR (credits_refill_amount IS NULL
                AND credits_refilled_at IS NULL))
            AND (credits_refill_amount IS NULL) = (credits_refill_period IS NULL)
            AND (credits_refill_period IS NOT DISTINCT FROM 'monthly')
                = (credits_refill_day IS NOT NULL)
        );
    END IF;
END
$$;

-- The start of the refill period `instant` falls in, as
-- `RefillPeriod::period_start` computes it: the latest refill instant at or
-- before `instant`, in UTC. NULL without a period.
CREATE OR REPLACE FUNCTION keyward_refill_start(period text, refill_day smallint, instant timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE period
        WHEN 'daily' THEN date_trunc('day', utc.t) AT TIME ZONE 'UTC'
        WHEN 'monthly' THEN (CASE WHEN m.this <= utc.t THEN m.this ELSE m.previous END)
            AT TIME ZONE 'UTC'
    END
    FROM (SELECT instant AT TIME ZONE 'UTC' AS t, date_trunc('month', instant AT TIME ZONE 'UTC') AS month)
        AS utc,
    -- The refill day in this month and in the previous one, each clamped
    -- to its month's last day.
    LATERAL (SELECT
        utc.month + (LEAST(refill_day, extract(day FROM utc.month + interval '1 month'
            - interval '1 day')::int) - 1) * interval '1 day' AS this,
        utc.month - interval '1 month' + (LEAST(refill_day, extract(day FROM utc.month
            - interval '1 day')::int) - 1) * interval '1 day' AS previous) AS m
$$;

-- Whether credits last refilled at `refilled_at` are due a refill at `instant`
-- (`Refill::due`): never without a refill; always when never refilled.
CREATE OR REPLACE FUNCTION keyward_refill_due(
    period text, refill_day smallint, refilled_at timestamptz, instant timestamptz)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT period IS NOT NULL
        AND (refilled_at IS NULL OR refilled_at < keyward_refill_start(period, refill_day, instant))
$$;

-- Other processes' caches also drop a key whose allowlist, budget or rate
-- limit changes, or that gains or loses its credits (not on a spend, nor a
-- last-used write: the trigger's condition is checked per row, and only a
-- change queues the notification).
DROP TRIGGER IF EXISTS keyward_keys_revoked ON keyward_keys;
CREATE TRIGGER keyward_keys_revoked
    AFTER UPDATE OF revoked_at, revocation_scheduled, allowed_ips, budget, rate_limit,
        credits_remaining ON keyward_keys
    FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
          OR OLD.revocation_scheduled IS DISTINCT FROM NEW.revocation_scheduled
          OR OLD.allowed_ips IS DISTINCT FROM NEW.allowed_ips
          OR OLD.budget IS DISTINCT FROM NEW.budget
          OR OLD.rate_limit IS DISTINCT FROM NEW.rate_limit
          OR (OLD.credits_remaining IS NULL) <> (NEW.credits_remaining IS NULL))
    EXECUTE FUNCTION keyward_notify_revoked();
