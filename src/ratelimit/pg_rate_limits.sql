-- keyward: the table of the shared PostgreSQL rate limiter (`PgRateLimiter`,
-- `postgres` feature), read and written by pg_gcra.sql. Idempotent.
CREATE TABLE IF NOT EXISTS keyward_rate_limits (
    key    text   PRIMARY KEY,  -- `key:<key id>`, `ip:<address>`, `acct:sha256:<hex>`; never raw header input
    tat_ns bigint NOT NULL      -- theoretical arrival time, ns since the Unix epoch
);
