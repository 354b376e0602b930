-- keyward: one GCRA rate-limit check against PostgreSQL 14+ (`PgRateLimiter`,
-- `postgres` feature). The arithmetic is `Quota::step`'s.
--
-- Table: pg_rate_limits.sql (`PgRateLimiter::migrate` creates it).
--
-- A row with tat_ns <= now says nothing a missing row would not (a full
-- bucket), so a periodic job may delete them:
--   DELETE FROM keyward_rate_limits
--   WHERE tat_ns <= (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint;
--
-- Parameters:
--   $1 text    the limit key
--   $2 bigint  emission interval T in ns   (Quota::emission_interval)
--   $3 bigint  window L = count * T in ns  (Quota::window)
-- Result: one row (allowed, tat_ns, now_ns) for Quota::decision.
--
-- * The database clock is the one clock all application servers share.
--   extract(epoch ...) is numeric from PostgreSQL 14 on, so this is exact.
-- * EXCLUDED.tat_ns is now + T, so GREATEST(r.tat_ns + $2, EXCLUDED.tat_ns)
--   is max(tat, now) + T, and subtracting now = EXCLUDED.tat_ns - $2 gives
--   how far ahead the new TAT would be; it must be at most L.
-- * Admitted: the upsert stores the new TAT and returns it (one row write).
-- * Denied: the DO UPDATE ... WHERE is false, so nothing is written (a flood
--   of denied requests costs no writes; the row is only locked) and the
--   second branch reads the TAT. That read uses the statement's snapshot:
--   if another session changed the row meanwhile, the TAT read may be a
--   little old (retry_after a little short, the denial itself is right), and
--   if another session inserted the row after the snapshot, no row comes
--   back: treat that as a denial with retry_after = T.
--
-- Checked by hand on PostgreSQL 15 (psql, PREPARE/EXECUTE): with T = 600 ms
-- and L = 60 s, 100 checks admitted and the 101st denied with the TAT
-- unchanged; 4 concurrent sessions x 60 checks on one key with T = 36 s,
-- L = 1 h admitted exactly 100. tests/postgres_ratelimit.rs checks it too.
WITH clock AS (
    SELECT (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint AS now_ns
), admitted AS (
    INSERT INTO keyward_rate_limits AS r (key, tat_ns)
    SELECT $1, clock.now_ns + $2 FROM clock
    ON CONFLICT (key) DO UPDATE
        SET tat_ns = GREATEST(r.tat_ns + $2, EXCLUDED.tat_ns)
        WHERE GREATEST(r.tat_ns + $2, EXCLUDED.tat_ns) - (EXCLUDED.tat_ns - $2) <= $3
    RETURNING r.tat_ns
)
SELECT true AS allowed, admitted.tat_ns, clock.now_ns
FROM admitted, clock
UNION ALL
SELECT false, r.tat_ns, clock.now_ns
FROM keyward_rate_limits AS r, clock
WHERE r.key = $1 AND NOT EXISTS (SELECT 1 FROM admitted);
