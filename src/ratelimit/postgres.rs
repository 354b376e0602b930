//! [`PgRateLimiter`]: one budget per key shared by every instance that uses
//! the same PostgreSQL database.

use std::fmt;

use async_trait::async_trait;

use super::{valid_key, LimitError, Quota, RateDecision, RateLimiter, PG_GCRA_SQL};
use crate::error::StoreError;
use crate::store::postgres::{map_err, Hidden, PgStore, MIGRATION_LOCK};

/// The table [`PgRateLimiter`] keeps its state in (idempotent SQL, run by
/// [`PgRateLimiter::migrate`]): one row per key that is not back to a full
/// burst, a key and a timestamp.
pub const PG_RATE_LIMITS_SCHEMA: &str = include_str!("pg_rate_limits.sql");

/// A [`RateLimiter`] on PostgreSQL (feature `postgres`): several server
/// instances share each key's budget.
///
/// Each check is one statement ([`PG_GCRA_SQL`]), an upsert on the key's row
/// that runs the GCRA step on the database clock, so instances need no
/// synchronised clocks and concurrent checks of one key serialise on its
/// row lock: together they admit no more than the quota. A denied check
/// writes nothing. It uses the pool, schema and timeout of a [`PgStore`]
/// (its own store, or the key store's to share the pool).
///
/// Errors (the database unreachable, a timeout, anything else) are
/// [`LimitError::Store`] with [`StoreError::Unavailable`]: the HTTP layers
/// answer 503 and never admit.
///
/// Rows of keys back to a full burst carry no information; call
/// [`sweep`](Self::sweep) now and then (say every few minutes, from one
/// instance) to delete them.
///
/// ```no_run
/// # async fn demo(keyring: keyward::Keyring) -> Result<(), Box<dyn std::error::Error>> {
/// use keyward::http::AuthLayer;
/// use keyward::ratelimit::PgRateLimiter;
/// use keyward::store::postgres::PgStore;
///
/// let store = PgStore::builder("postgres://app@db/app").schema("auth").build()?;
/// let limiter = PgRateLimiter::new(store);
/// limiter.migrate().await?;
/// let layer = AuthLayer::new(keyring).rate_limiter(limiter);
/// # let _ = layer;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgRateLimiter {
    store: PgStore,
}

impl PgRateLimiter {
    /// A limiter on `store`'s pool, schema and timeout.
    #[must_use]
    pub fn new(store: PgStore) -> Self {
        PgRateLimiter { store }
    }

    /// Creates the store's schema (see [`PgStore::migrate`]) and the
    /// limiter's table, [`PG_RATE_LIMITS_SCHEMA`], idempotently and safely
    /// when several instances do it at once.
    ///
    /// # Errors
    ///
    /// The database's error when the table cannot be created.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.store.migrate().await?;
        self.store
            .run(|mut client| async move {
                let tx = client.transaction().await.map_err(map_err)?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                    .await
                    .map_err(map_err)?;
                tx.batch_execute(PG_RATE_LIMITS_SCHEMA)
                    .await
                    .map_err(map_err)?;
                tx.commit().await.map_err(map_err)
            })
            .await
    }

    /// Deletes the rows of keys back to a full burst; returns how many.
    ///
    /// # Errors
    ///
    /// The database's error when the delete fails.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        const SWEEP: &str = "DELETE FROM keyward_rate_limits \
             WHERE tat_ns <= (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint";
        self.store
            .run(|client| async move { client.execute(SWEEP, &[]).await.map_err(map_err) })
            .await
    }

    /// The store whose pool this limiter uses.
    #[must_use]
    pub fn store(&self) -> &PgStore {
        &self.store
    }
}

impl fmt::Debug for PgRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgRateLimiter")
            .field("store", &self.store)
            .finish()
    }
}

#[async_trait]
impl RateLimiter for PgRateLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Result<RateDecision, LimitError> {
        valid_key(key)?;
        // Both fit: a quota's window is at most about 3.2e16 ns.
        let interval = quota.emission_interval().as_nanos() as i64;
        let window = quota.window().as_nanos() as i64;
        let row = self
            .store
            .run(|client| async move {
                let statement = client.prepare_cached(PG_GCRA_SQL).await.map_err(map_err)?;
                client
                    // Hidden from tokio-postgres's DEBUG log of parameters: a
                    // key may name a client (`ip:…`) or a pseudonymous
                    // account (`acct:sha256:…`).
                    .query_opt(&statement, &[&Hidden(key), &interval, &window])
                    .await
                    .map_err(map_err)
            })
            .await
            .map_err(unavailable)?;
        let Some(row) = row else {
            // Another session inserted the key's row after this statement's
            // snapshot (see PG_GCRA_SQL): a denial, retry after T. A TAT of
            // `now + L` renders exactly that.
            return Ok(quota.decision(false, window, 0));
        };
        let (allowed, tat, now) = (|| {
            Ok::<_, tokio_postgres::Error>((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
        })()
        .map_err(|e| unavailable(map_err(e)))?;
        Ok(quota.decision(allowed, tat, now))
    }
}

/// Every store failure of a limiter is "unavailable": the request is refused
/// with 503 and may be retried.
fn unavailable(err: StoreError) -> LimitError {
    LimitError::Store(match err {
        StoreError::Other(inner) => StoreError::Unavailable(inner),
        other => other,
    })
}
