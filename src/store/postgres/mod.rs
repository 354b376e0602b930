//! A [`KeyStore`] on PostgreSQL: [`PgStore`] (feature `postgres`), and the
//! [`RevocationListener`] that tells a [`CachedStore`](super::CachedStore) of
//! revocations made by other processes.
//!
//! Built on tokio-postgres and deadpool-postgres with plain prepared
//! statements (cached per connection): no compile-time query checking that
//! would need a database while building a library.
//!
//! # Schema
//!
//! The schema ships in the crate ([`SCHEMA`]): one table, `keyward_keys`,
//! with a unique index on the hash, an index on the tenant, and a trigger
//! that sends `NOTIFY keyward_revoked, '<key id>'` when a revocation (or a
//! usage control, see below) changes.
//! [`PgStore::migrate`] creates or upgrades it idempotently, recording the
//! version in `keyward_schema_version`; it holds an advisory lock, so several
//! processes may migrate at once. Tables live in the connection's
//! `search_path` (pick one with [`PgStoreBuilder::schema`]).
//!
//! # Time
//!
//! An immediate revocation ([`Revocation::Now`]) takes the database's clock
//! (`now()`) and is stored as in effect (`revocation_scheduled = false`), so
//! every process refuses the key once it reads the row, whatever its own
//! clock says. Version 2 of the schema added that column; upgrading from
//! version 1 keeps revocations still ahead of the database's clock scheduled
//! (rotation grace periods in progress) and makes past ones immediate.
//!
//! # Paged lists
//!
//! [`KeyStore::list_page`] is one keyset query on the index of version 3,
//! `(tenant, created_at, id COLLATE "C")`: a page costs its own rows, not the
//! tenant's. The state filter is judged at the keyring's instant
//! ([`PageRequest::now`]), as [`KeyRecord::state`] judges it.
//!
//! # Usage controls
//!
//! Version 5 of the schema keeps a key's usage controls in columns of
//! `keyward_keys`: the allowlist (`allowed_ips cidr[]`, in the order given),
//! the credits (`credits_remaining`, NULL for an unmetered key, and the
//! refill's amount, period, day and last instant), the shared `budget`,
//! and the last-used details (`recent_ips inet[]`, `last_user_agent`). A
//! value that does not parse as the crate's type reads as an error, never
//! as no control.
//!
//! Each of [`KeyStore::spend_credits`], [`KeyStore::update_controls`] and
//! [`KeyStore::record_uses`] is one statement. A spend locks the key's row
//! for that statement only, applies a due refill by the rule stored in the
//! row (the schema's `keyward_refill_start` is
//! [`RefillPeriod::period_start`], in UTC) at the keyring's instant, and
//! spends only what remains, so spends from any number of processes spend
//! exactly what they report. Adding credits is
//! `credits_remaining + n` (capped) on the row's latest version: it never
//! loses a concurrent spend. A batch of uses is one `UPDATE` that folds each
//! key's uses in as [`KeyUse::apply`] does, one after the other.
//!
//! The trigger that notifies revocations also notifies when a key's
//! allowlist, budget or rate limit changes, or it gains or loses credits, so
//! other processes' caches stop using the old controls. Spends, additions
//! and last-used writes do not notify.
//!
//! # Timeouts and errors
//!
//! Every call is bounded by [`PgStoreBuilder::timeout`] (5 s by default):
//! connecting, waiting for a pooled connection, and the statement itself
//! (`statement_timeout` on the server, and a client-side timeout for a
//! network that went silent). A connection failure, a pool timeout or any
//! timeout is [`StoreError::Unavailable`]; a unique violation is
//! [`StoreError::Conflict`]; anything else is [`StoreError::Other`]. A
//! server error is the [`source`](std::error::Error::source), as a
//! [`PgError`] with the server's message and SQLSTATE, never its `DETAIL`
//! (which could echo a hash), nor a secret.
//!
//! Instants are stored with microsecond precision (PostgreSQL's).
//!
//! # Logs
//!
//! tokio-postgres logs each statement's parameters at DEBUG through the `log`
//! crate. Hashes (and the rate limiter's keys) are passed in a wrapper whose
//! `Debug` is `[REDACTED]`, so a host that forwards `log` records into its
//! tracing output (`tracing-log`) logs no hash at any level.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use keyward::store::postgres::PgStore;
//! use keyward::store::CachedStore;
//!
//! let pg = PgStore::builder("postgres://app@db/app").schema("auth").build()?;
//! pg.migrate().await?;
//! let store = CachedStore::new(pg.clone());
//! // Other processes' revocations reach this cache within about a second.
//! let _listener = pg.listen(store.invalidator())?;
//! # let _ = store;
//! # Ok(()) }
//! ```

mod listener;
mod param;

pub use deadpool_postgres;
pub use listener::RevocationListener;
pub use tokio_postgres;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;
use tokio_postgres::{NoTls, Row};

pub(crate) use self::param::Hidden;
use super::{
    CacheInvalidator, Condition, KeyStore, LifecycleQuery, NoticeClaim, NoticeOutcome, PageRequest,
    Revocation,
};
use crate::error::{ConfigError, StoreError};
use crate::hash::TokenHash;
use crate::key::{KeyId, KeyRecord, OwnerId, RateLimit, StateFilter, TenantId};
use crate::scope::ScopeSet;
use crate::usage::{
    BudgetId, ControlsUpdate, CreditSpend, Credits, CreditsChange, IpAllowlist, KeyUse, Refill,
    RefillPeriod, MAX_CREDITS, RECENT_IPS,
};

/// The whole schema, version [`SCHEMA_VERSION`]: every migration in order,
/// each idempotent. [`PgStore::migrate`] applies the ones a database lacks.
pub const SCHEMA: &str = concat!(
    include_str!("schema.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5.sql")
);

/// The schema version this crate expects.
pub const SCHEMA_VERSION: i32 = 5;

/// Migrations in order: (version, SQL).
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("schema.sql")),
    (2, include_str!("schema_v2.sql")),
    (3, include_str!("schema_v3.sql")),
    (4, include_str!("schema_v4.sql")),
    (5, include_str!("schema_v5.sql")),
];

/// Held (transaction-scoped) while migrating, so concurrent migrations queue.
pub(crate) const MIGRATION_LOCK: i64 = 0x006b_6579_7761_7264; // "keyward" in ASCII

/// The columns `record_from_row` reads, in its order (address arrays as
/// text, parsed as the crate parses them).
macro_rules! columns {
    () => {
        "id, tenant, kind, name, display_prefix, hash, scopes, created_at, expires_at, \
         last_used_at, revoked_at, rate_limit, metadata, rotated_from, revocation_scheduled, owner, \
         allowed_ips::text[], credits_remaining, credits_refill_amount, credits_refill_period, \
         credits_refill_day, credits_refilled_at, budget, recent_ips::text[], last_user_agent"
    };
}

/// The columns `insert` writes, in the order of `columns!()`.
macro_rules! insert_columns {
    () => {
        "id, tenant, kind, name, display_prefix, hash, scopes, created_at, expires_at, \
         last_used_at, revoked_at, rate_limit, metadata, rotated_from, revocation_scheduled, owner, \
         allowed_ips, credits_remaining, credits_refill_amount, credits_refill_period, \
         credits_refill_day, credits_refilled_at, budget, recent_ips, last_user_agent"
    };
}

macro_rules! select {
    ($rest:literal) => {
        concat!("SELECT ", columns!(), " FROM keyward_keys ", $rest)
    };
}

/// Default bound on connecting, waiting for a connection, and each statement.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on each statement of [`PgStore::migrate`], including its wait for
/// another instance's migration: 10 minutes.
pub const MIGRATION_TIMEOUT: Duration = Duration::from_secs(600);

/// A [`KeyStore`] on PostgreSQL. Cheap to clone; clones share the pool.
///
/// See the [module docs](self) for the schema, timeouts and error mapping.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    pg_config: Option<tokio_postgres::Config>,
    /// The configured schema, which `migrate` creates when missing.
    schema: Option<String>,
    timeout: Duration,
    statements: Arc<AtomicU64>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.pool.status())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Configures a [`PgStore`] from a URL or a `tokio_postgres::Config`.
#[must_use]
pub struct PgStoreBuilder {
    config: Result<tokio_postgres::Config, ConfigError>,
    schema: Option<String>,
    max_connections: usize,
    timeout: Duration,
}

impl fmt::Debug for PgStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The config may hold a password: not shown.
        f.debug_struct("PgStoreBuilder")
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PgStoreBuilder {
    fn new(config: Result<tokio_postgres::Config, ConfigError>) -> Self {
        PgStoreBuilder {
            config,
            schema: None,
            max_connections: 16,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Keep the tables in this schema (sets `search_path`; `migrate` creates
    /// the schema). 1–63 of `[a-z0-9_]`, starting with a letter or `_`.
    pub fn schema(mut self, schema: &str) -> Self {
        self.schema = Some(schema.to_owned());
        self
    }

    /// Most pooled connections; 16 by default.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Bound on connecting, waiting for a pooled connection and each
    /// statement; 5 s by default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The store. Connections are made on first use, so this does not touch
    /// the database; call [`PgStore::migrate`] next.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidStore`] for an invalid connection string or
    /// schema name.
    pub fn build(self) -> Result<PgStore, ConfigError> {
        let mut config = self.config?;
        if let Some(schema) = &self.schema {
            if !valid_identifier(schema) {
                return Err(ConfigError::InvalidStore(
                    "invalid schema name: use 1-63 of [a-z0-9_], not starting with a digit",
                ));
            }
        }
        let mut options = config.get_options().unwrap_or_default().to_owned();
        if let Some(schema) = &self.schema {
            options.push_str(&format!(" -c search_path={schema}"));
        }
        options.push_str(&format!(
            " -c statement_timeout={}",
            self.timeout.as_millis().max(1)
        ));
        config.options(options.trim_start());
        config.connect_timeout(self.timeout);
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("keyward");
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.timeout))
            .create_timeout(Some(self.timeout))
            .recycle_timeout(Some(self.timeout))
            .build()
            .map_err(|_| ConfigError::InvalidStore("the connection pool could not be built"))?;
        Ok(PgStore {
            pool,
            pg_config: Some(config),
            schema: self.schema,
            timeout: self.timeout,
            statements: Arc::default(),
        })
    }
}

fn valid_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

impl PgStore {
    /// A builder for a `postgres://` URL (or a `key=value` connection
    /// string). Without TLS: for TLS, build a pool and use [`from_pool`](Self::from_pool).
    pub fn builder(url: &str) -> PgStoreBuilder {
        PgStoreBuilder::new(
            url.parse()
                .map_err(|_| ConfigError::InvalidStore("invalid PostgreSQL connection string")),
        )
    }

    /// A builder for a connection configuration.
    pub fn builder_from_config(config: tokio_postgres::Config) -> PgStoreBuilder {
        PgStoreBuilder::new(Ok(config))
    }

    /// A store with the default settings for a URL.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidStore`] for an invalid connection string.
    pub fn connect(url: &str) -> Result<Self, ConfigError> {
        Self::builder(url).build()
    }

    /// A store on the host's own pool. Its connections should set a
    /// `statement_timeout` and the pool its wait and create timeouts; calls
    /// are bounded by [`DEFAULT_TIMEOUT`] on the client side too (see
    /// [`with_timeout`](Self::with_timeout)). Such a store has no connection
    /// configuration for [`listen`](Self::listen): use
    /// [`RevocationListener::spawn`] (or `spawn_with_tls`) with one.
    #[must_use]
    pub fn from_pool(pool: Pool) -> Self {
        PgStore {
            pool,
            pg_config: None,
            schema: None,
            timeout: DEFAULT_TIMEOUT,
            statements: Arc::default(),
        }
    }

    /// Bounds every call by `timeout` on the client side.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The connection pool.
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// How many statements this store (and its clones) has sent, migrations
    /// excluded: one per call of the [`KeyStore`] methods. For metrics, and
    /// for tests that check a batch is one statement.
    #[must_use]
    pub fn statements_executed(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Creates or upgrades the schema (and the configured schema namespace),
    /// idempotently and safely when several processes do it at once: each
    /// waits for the one migrating (an advisory lock), then finds nothing
    /// left to do. A migration's statements, and that wait, are bounded by
    /// [`MIGRATION_TIMEOUT`] rather than the store's per-statement timeout
    /// (an index built over many keys, or another instance's upgrade, takes
    /// longer than a lookup).
    ///
    /// # Errors
    ///
    /// The database's error when a statement fails (the schema is left as it
    /// was: each upgrade runs in a transaction), or a schema newer than this
    /// version knows.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_err)?;
        tx.batch_execute(&format!(
            "SET LOCAL statement_timeout = {}",
            MIGRATION_TIMEOUT.as_millis()
        ))
        .await
        .map_err(map_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(map_err)?;
        // The configured schema may not exist yet. Checked first: creating
        // needs a privilege that using an existing schema does not.
        if let Some(schema) = &self.schema {
            let exists: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                    &[schema],
                )
                .await
                .map_err(map_err)?
                .get(0);
            if !exists {
                // `schema` was checked to be a plain identifier.
                tx.batch_execute(&format!("CREATE SCHEMA {schema}"))
                    .await
                    .map_err(map_err)?;
            }
        }
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS keyward_schema_version (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(map_err)?;
        let current: i32 = tx
            .query_one(
                "SELECT COALESCE(max(version), 0) FROM keyward_schema_version",
                &[],
            )
            .await
            .map_err(map_err)?
            .get(0);
        if current > SCHEMA_VERSION {
            return Err(StoreError::other(format!(
                "database schema version {current} is newer than this keyward's {SCHEMA_VERSION}"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.batch_execute(sql).await.map_err(map_err)?;
            tx.execute(
                "INSERT INTO keyward_schema_version (version) VALUES ($1)",
                &[version],
            )
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    /// Starts a [`RevocationListener`] on a dedicated connection that
    /// invalidates `cache` when any process revokes a key. Needs a tokio
    /// runtime, and a store made by a builder (see [`from_pool`](Self::from_pool)).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidStore`] for a store made from a pool.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn listen(&self, cache: CacheInvalidator) -> Result<RevocationListener, ConfigError> {
        let config = self.pg_config.clone().ok_or(ConfigError::InvalidStore(
            "a store made from a pool has no connection config: use RevocationListener::spawn",
        ))?;
        Ok(RevocationListener::spawn(config, cache))
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(map_pool_err)
    }

    /// Runs one statement on a pooled connection within the timeout.
    pub(crate) async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Object) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let work = async {
            let client = self.client().await?;
            self.statements.fetch_add(1, Ordering::Relaxed);
            f(client).await
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::unavailable(
                "PostgreSQL did not answer within the timeout",
            )),
        }
    }

    async fn query_records(
        &self,
        sql: &'static str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        self.run(|client| async move {
            let statement = client.prepare_cached(sql).await.map_err(map_err)?;
            let rows = client.query(&statement, params).await.map_err(map_err)?;
            rows.iter()
                .map(|row| record_from_row(row).map(Arc::new))
                .collect()
        })
        .await
    }
}

fn record_from_row(row: &Row) -> Result<KeyRecord, StoreError> {
    let id: String = row.try_get(0).map_err(map_err)?;
    let tenant: String = row.try_get(1).map_err(map_err)?;
    let hash: Vec<u8> = row.try_get(5).map_err(map_err)?;
    let scopes: Vec<String> = row.try_get(6).map_err(map_err)?;
    let rate_limit: Option<i32> = row.try_get(11).map_err(map_err)?;
    let Json(metadata): Json<BTreeMap<String, String>> = row.try_get(12).map_err(map_err)?;
    let rotated_from: Option<String> = row.try_get(13).map_err(map_err)?;
    let owner: Option<String> = row.try_get(15).map_err(map_err)?;
    let allowed_ips: Option<Vec<String>> = row.try_get(16).map_err(map_err)?;
    let budget: Option<String> = row.try_get(22).map_err(map_err)?;
    let recent_ips: Vec<String> = row.try_get(23).map_err(map_err)?;
    Ok(KeyRecord {
        id: KeyId::parse(&id).ok_or_else(|| corrupt("key id"))?,
        tenant: TenantId::parse(&tenant).ok_or_else(|| corrupt("tenant"))?,
        kind: row.try_get(2).map_err(map_err)?,
        name: row.try_get(3).map_err(map_err)?,
        display_prefix: row.try_get(4).map_err(map_err)?,
        hash: TokenHash::from_bytes(&hash).ok_or_else(|| corrupt("hash"))?,
        scopes: ScopeSet::parse(&scopes).map_err(|_| corrupt("scope"))?,
        created_at: row.try_get(7).map_err(map_err)?,
        expires_at: row.try_get(8).map_err(map_err)?,
        last_used_at: row.try_get(9).map_err(map_err)?,
        revoked_at: row.try_get(10).map_err(map_err)?,
        revocation_scheduled: row.try_get(14).map_err(map_err)?,
        rate_limit: match rate_limit {
            None => RateLimit::Unlimited,
            Some(n) => u32::try_from(n)
                .ok()
                .and_then(RateLimit::per_minute)
                .ok_or_else(|| corrupt("rate limit"))?,
        },
        metadata,
        rotated_from: rotated_from
            .map(|id| KeyId::parse(&id).ok_or_else(|| corrupt("rotated_from id")))
            .transpose()?,
        owner: owner
            .map(|o| OwnerId::parse(&o).ok_or_else(|| corrupt("owner")))
            .transpose()?,
        allowed_ips: allowed_ips
            .map(|ranges| IpAllowlist::parse(&ranges).map_err(|_| corrupt("allowed_ips")))
            .transpose()?,
        credits: credits_from_row(row)?,
        budget: budget
            .map(|b| BudgetId::parse(&b).ok_or_else(|| corrupt("budget")))
            .transpose()?,
        recent_ips: recent_ips
            .iter()
            .map(|ip| host_address(ip).ok_or_else(|| corrupt("recent IP")))
            .collect::<Result<_, _>>()?,
        last_user_agent: row.try_get(24).map_err(map_err)?,
    })
}

/// An `inet` as `::text` shows it (`203.0.113.9/32`): a single address, or
/// `None` for a network.
fn host_address(text: &str) -> Option<IpAddr> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let ip: IpAddr = address.parse().ok()?;
    let full = if ip.is_ipv4() { "32" } else { "128" };
    prefix.is_none_or(|p| p == full).then_some(ip)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::other(format!("keyward_keys holds an invalid {what}"))
}

/// The credits of a row read with `columns!()` (columns 17-21).
fn credits_from_row(row: &Row) -> Result<Option<Credits>, StoreError> {
    let remaining: Option<i64> = row.try_get(17).map_err(map_err)?;
    let amount: Option<i64> = row.try_get(18).map_err(map_err)?;
    let period: Option<&str> = row.try_get(19).map_err(map_err)?;
    let day: Option<i16> = row.try_get(20).map_err(map_err)?;
    let refilled_at: Option<OffsetDateTime> = row.try_get(21).map_err(map_err)?;
    let Some(remaining) = remaining else {
        if amount.is_some() || period.is_some() || day.is_some() || refilled_at.is_some() {
            return Err(corrupt("refill without credits"));
        }
        return Ok(None);
    };
    let count = |n: i64| {
        u64::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_CREDITS)
            .ok_or_else(|| corrupt("credit count"))
    };
    let refill = match (amount, period, day) {
        (None, None, None) => None,
        (Some(amount), Some("daily"), None) => {
            Some(Refill::daily(count(amount)?).map_err(|_| corrupt("refill"))?)
        }
        (Some(amount), Some("monthly"), Some(day)) => {
            let day = u8::try_from(day).map_err(|_| corrupt("refill day"))?;
            Some(Refill::monthly(count(amount)?, day).map_err(|_| corrupt("refill"))?)
        }
        _ => return Err(corrupt("refill")),
    };
    let mut credits = Credits::new(count(remaining)?).map_err(|_| corrupt("credit count"))?;
    credits.refill = refill;
    credits.refilled_at = refilled_at;
    Ok(Some(credits))
}

/// Credits as the columns `credits_remaining` … `credits_refilled_at`.
struct CreditColumns {
    remaining: Option<i64>,
    amount: Option<i64>,
    period: Option<&'static str>,
    day: Option<i16>,
    refilled_at: Option<OffsetDateTime>,
}

impl CreditColumns {
    fn new(credits: Option<&Credits>) -> Result<Self, StoreError> {
        let Some(credits) = credits else {
            return Ok(CreditColumns {
                remaining: None,
                amount: None,
                period: None,
                day: None,
                refilled_at: None,
            });
        };
        let count = |n: u64| {
            i64::try_from(n).map_err(|_| StoreError::other("credits exceed a PostgreSQL bigint"))
        };
        let (amount, period, day) = match credits.refill {
            None => (None, None, None),
            Some(refill) => match refill.period {
                RefillPeriod::Daily => (Some(count(refill.amount)?), Some("daily"), None),
                RefillPeriod::Monthly { day } => (
                    Some(count(refill.amount)?),
                    Some("monthly"),
                    Some(i16::from(day)),
                ),
            },
        };
        Ok(CreditColumns {
            remaining: Some(count(credits.remaining)?),
            amount,
            period,
            day,
            refilled_at: credits.refilled_at,
        })
    }
}

/// A rate limit as the `rate_limit` column (NULL: unlimited).
fn rate_limit_column(limit: RateLimit) -> Result<Option<i32>, StoreError> {
    limit
        .requests_per_minute()
        .map(|n| i32::try_from(n).map_err(|_| StoreError::other("rate limit exceeds i32")))
        .transpose()
}

/// An error the PostgreSQL server reported, as a [`StoreError`]'s source:
/// its SQLSTATE, severity and message, without the server's `DETAIL` (which
/// may echo a stored value such as a hash).
///
/// ```
/// use std::error::Error;
/// use keyward::store::postgres::PgError;
/// use keyward::StoreError;
///
/// fn sqlstate(err: &StoreError) -> Option<&str> {
///     err.source()?.downcast_ref::<PgError>().map(|pg| pg.code().code())
/// }
/// # let _ = sqlstate;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PgError {
    code: SqlState,
    severity: String,
    message: String,
}

impl PgError {
    /// The SQLSTATE, e.g. `SqlState::CHECK_VIOLATION` (`23514`).
    #[must_use]
    pub fn code(&self) -> &SqlState {
        &self.code
    }

    /// The severity (`ERROR`, `FATAL`, …).
    #[must_use]
    pub fn severity(&self) -> &str {
        &self.severity
    }

    /// The server's primary message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (SQLSTATE {})",
            self.severity,
            self.message,
            self.code.code()
        )
    }
}

impl std::error::Error for PgError {}

/// Maps a driver error without its `DETAIL` (which may echo a stored value).
pub(crate) fn map_err(err: tokio_postgres::Error) -> StoreError {
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        if *code == SqlState::UNIQUE_VIOLATION {
            return StoreError::Conflict;
        }
        let failure = PgError {
            code: code.clone(),
            severity: db.severity().to_owned(),
            message: db.message().to_owned(),
        };
        // Class 08: connection exception; 57P0x: the server is shutting down
        // or starting; 57014: statement timeout; 53xxx: out of resources.
        let unavailable = code.code().starts_with("08")
            || code.code().starts_with("57P")
            || code.code().starts_with("53")
            || *code == SqlState::QUERY_CANCELED;
        return if unavailable {
            StoreError::unavailable(failure)
        } else {
            StoreError::other(failure)
        };
    }
    // No server message: say what failed and why (e.g. "connection refused").
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    let mut io = false;
    while let Some(cause) = source {
        io |= cause.is::<std::io::Error>();
        let text = cause.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    if err.is_closed()
        || io
        || message.starts_with("error connecting")
        || message.contains("timed out")
    {
        StoreError::unavailable(message)
    } else {
        StoreError::other(message)
    }
}

fn map_pool_err(err: PoolError) -> StoreError {
    match err {
        PoolError::Backend(e) => map_err(e),
        PoolError::Timeout(kind) => {
            StoreError::unavailable(format!("PostgreSQL pool timed out ({kind:?})"))
        }
        PoolError::Closed => StoreError::unavailable("the PostgreSQL pool is closed"),
        other => StoreError::other(other.to_string()),
    }
}

#[async_trait]
impl KeyStore for PgStore {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        let scopes: Vec<&str> = record.scopes.iter().map(|s| s.as_str()).collect();
        let rate_limit = rate_limit_column(record.rate_limit)?;
        let hash = record.hash.to_bytes();
        let metadata = Json(&record.metadata);
        let rotated_from = record.rotated_from.as_ref().map(KeyId::as_str);
        let owner = record.owner.as_ref().map(OwnerId::as_str);
        let allowed_ips = record.allowed_ips.as_ref().map(IpAllowlist::to_strings);
        let credits = CreditColumns::new(record.credits.as_ref())?;
        let budget = record.budget.as_ref().map(BudgetId::as_str);
        self.run(|client| async move {
            let statement = client
                .prepare_cached(concat!(
                    "INSERT INTO keyward_keys (",
                    insert_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
                         $14, $15, $16, $17::text[]::cidr[], $18, $19, $20, $21, $22, $23, \
                         $24, $25)"
                ))
                .await
                .map_err(map_err)?;
            client
                .execute(
                    &statement,
                    &[
                        &record.id.as_str(),
                        &record.tenant.as_str(),
                        &record.kind,
                        &record.name,
                        &record.display_prefix,
                        &Hidden(&hash[..]),
                        &scopes,
                        &record.created_at,
                        &record.expires_at,
                        &record.last_used_at,
                        &record.revoked_at,
                        &rate_limit,
                        &metadata,
                        &rotated_from,
                        &record.revocation_scheduled,
                        &owner,
                        &allowed_ips,
                        &credits.remaining,
                        &credits.amount,
                        &credits.period,
                        &credits.day,
                        &credits.refilled_at,
                        &budget,
                        &record.recent_ips,
                        &record.last_user_agent,
                    ],
                )
                .await
                .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        const SQL: &str = select!("WHERE hash = $1");
        let bytes = hash.to_bytes();
        let mut records = self.query_records(SQL, &[&Hidden(&bytes[..])]).await?;
        Ok(records.pop())
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        const SQL: &str = select!("WHERE id = $1");
        let mut records = self.query_records(SQL, &[&id.as_str()]).await?;
        Ok(records.pop())
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        const SQL: &str = select!("WHERE tenant = $1 ORDER BY created_at, seq");
        self.query_records(SQL, &[&tenant.as_str()]).await
    }

    async fn list_page(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        // $3: 0 all, 1 active, 2 revoked, 3 expired, judged at $4 as
        // `KeyRecord::state` judges them (revocation wins over expiry).
        macro_rules! page {
            ($position:literal) => {
                concat!(
                    "SELECT ",
                    columns!(),
                    " FROM keyward_keys WHERE tenant = $1 ",
                    "AND (cardinality($2::text[]) = 0 OR kind = ANY($2::text[])) ",
                    "AND ($6::text IS NULL OR owner = $6::text) ",
                    "AND CASE $3::int ",
                    "WHEN 0 THEN true ",
                    "WHEN 1 THEN NOT (revoked_at IS NOT NULL AND ",
                    "(NOT revocation_scheduled OR revoked_at <= $4)) ",
                    "AND NOT (expires_at IS NOT NULL AND expires_at <= $4) ",
                    "WHEN 2 THEN revoked_at IS NOT NULL AND ",
                    "(NOT revocation_scheduled OR revoked_at <= $4) ",
                    "ELSE NOT (revoked_at IS NOT NULL AND ",
                    "(NOT revocation_scheduled OR revoked_at <= $4)) ",
                    "AND expires_at IS NOT NULL AND expires_at <= $4 END ",
                    $position,
                    "ORDER BY created_at DESC, id COLLATE \"C\" DESC LIMIT $5"
                )
            };
        }
        const FIRST: &str = page!("");
        const AFTER: &str = page!(
            "AND (created_at, id COLLATE \"C\") < ($7::timestamptz, $8::text COLLATE \"C\") "
        );
        let kinds: Vec<&str> = page.kinds.iter().map(String::as_str).collect();
        let state: i32 = match page.state {
            StateFilter::All => 0,
            StateFilter::Active => 1,
            StateFilter::Revoked => 2,
            StateFilter::Expired => 3,
        };
        let limit = i64::try_from(page.limit).unwrap_or(i64::MAX);
        let tenant = tenant.as_str();
        let owner = page.owner.as_ref().map(OwnerId::as_str);
        match &page.after {
            None => {
                self.query_records(FIRST, &[&tenant, &kinds, &state, &page.now, &limit, &owner])
                    .await
            }
            Some((at, id)) => {
                let id = id.as_str();
                self.query_records(
                    AFTER,
                    &[&tenant, &kinds, &state, &page.now, &limit, &owner, at, &id],
                )
                .await
            }
        }
    }

    async fn revoke(
        &self,
        id: &KeyId,
        when: Revocation,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        // $2 is the scheduled instant, or NULL for now: the database's clock
        // (`now()`), never this process's. On the right of SET, columns
        // hold their values before the update.
        const SQL: &str = concat!(
            "UPDATE keyward_keys SET ",
            "revoked_at = LEAST(COALESCE(revoked_at, COALESCE($2::timestamptz, now())), ",
            "COALESCE($2::timestamptz, now())), ",
            "revocation_scheduled = $2::timestamptz IS NOT NULL ",
            "AND (revoked_at IS NULL OR revocation_scheduled) ",
            "WHERE id = $1 RETURNING ",
            columns!()
        );
        let at: Option<OffsetDateTime> = match when {
            Revocation::Now => None,
            Revocation::At(at) => Some(at),
        };
        let mut records = self.query_records(SQL, &[&id.as_str(), &at]).await?;
        Ok(records.pop())
    }

    async fn touch(&self, uses: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        // One row per id: UPDATE … FROM would apply an arbitrary one of
        // several matching rows, not the latest.
        let mut latest: BTreeMap<&str, OffsetDateTime> = BTreeMap::new();
        for (id, at) in uses {
            latest
                .entry(id.as_str())
                .and_modify(|t| *t = (*t).max(*at))
                .or_insert(*at);
        }
        let ids: Vec<&str> = latest.keys().copied().collect();
        let ats: Vec<OffsetDateTime> = latest.values().copied().collect();
        self.run(|client| async move {
            let statement = client
                .prepare_cached(
                    "UPDATE keyward_keys AS k \
                     SET last_used_at = GREATEST(k.last_used_at, u.at) \
                     FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at) \
                     WHERE k.id = u.id",
                )
                .await
                .map_err(map_err)?;
            client
                .execute(&statement, &[&ids, &ats])
                .await
                .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn find_keys(&self, query: &LifecycleQuery) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        // No revocation, not even a scheduled one.
        macro_rules! not_revoked {
            () => {
                "revoked_at IS NULL "
            };
        }
        // $4 tenant or NULL, $5/$6 the position after which, $7 the notice
        // name or NULL, $8 the limit. A notice blocks as `NoticeState::blocks`
        // says, with `renew_after` = $renew (SQL) or none.
        macro_rules! tail {
            ($position:literal, $renew:literal) => {
                concat!(
                    "AND ($4::text IS NULL OR tenant = $4::text) ",
                    "AND ($5::timestamptz IS NULL OR (",
                    $position,
                    ", id COLLATE \"C\") > ($5::timestamptz, $6::text COLLATE \"C\")) ",
                    "AND ($7::text IS NULL OR NOT EXISTS (SELECT 1 FROM keyward_notices n ",
                    "WHERE n.key_id = keyward_keys.id AND n.notice = $7::text AND (",
                    "(n.delivered_at IS NOT NULL AND ",
                    $renew,
                    ") OR n.lease_until > $3))) ",
                    "ORDER BY ",
                    $position,
                    ", id COLLATE \"C\" LIMIT $8"
                )
            };
        }
        // $1 the exclusive lower bound ('-infinity' for none), $2 the upper.
        const EXPIRING: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM keyward_keys WHERE expires_at > COALESCE($1::timestamptz, '-infinity') ",
            "AND expires_at <= $2::timestamptz AND ",
            not_revoked!(),
            tail!("expires_at", "true")
        );
        // $1 the instant before which the last use (or creation) lies; $2
        // unused.
        const UNUSED: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM keyward_keys WHERE COALESCE(last_used_at, created_at) < $1::timestamptz ",
            "AND $2::timestamptz IS NULL AND ",
            not_revoked!(),
            "AND NOT (expires_at IS NOT NULL AND expires_at <= $3) ",
            tail!(
                "COALESCE(last_used_at, created_at)",
                "n.delivered_at >= COALESCE(keyward_keys.last_used_at, keyward_keys.created_at)"
            )
        );
        let (sql, first, second): (&'static str, Option<OffsetDateTime>, Option<OffsetDateTime>) =
            match query.condition {
                Condition::Expiring { from, until } => (EXPIRING, from, Some(until)),
                Condition::UnusedSince(since) => (UNUSED, Some(since), None),
            };
        let tenant = query.tenant.as_ref().map(TenantId::as_str);
        let (after_at, after_id) = match &query.after {
            Some((at, id)) => (Some(*at), Some(id.as_str())),
            None => (None, None),
        };
        let notice = query.unnoticed.as_deref();
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        self.query_records(
            sql,
            &[
                &first, &second, &query.now, &tenant, &after_at, &after_id, &notice, &limit,
            ],
        )
        .await
    }

    async fn successors(&self, id: &KeyId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        const SQL: &str = select!("WHERE rotated_from = $1 ORDER BY created_at, id COLLATE \"C\"");
        self.query_records(SQL, &[&id.as_str()]).await
    }

    async fn claim_notice(&self, claim: &NoticeClaim) -> Result<bool, StoreError> {
        // Granted when no row exists, or its state does not block (see
        // `NoticeState::blocks`): a lapsed lease, or a delivery before
        // $5. Atomic: a concurrent claim waits for this row's lock, then
        // finds the lease live and updates nothing.
        const SQL: &str = "INSERT INTO keyward_notices AS n (key_id, notice, lease_until) \
             SELECT $1::text, $2::text, $3::timestamptz \
             WHERE EXISTS (SELECT 1 FROM keyward_keys WHERE id = $1::text) \
             ON CONFLICT (key_id, notice) DO UPDATE \
             SET lease_until = EXCLUDED.lease_until, delivered_at = NULL \
             WHERE (n.delivered_at IS NULL AND n.lease_until <= $4::timestamptz) \
             OR (n.delivered_at IS NOT NULL AND n.delivered_at < $5::timestamptz) \
             RETURNING 1";
        let id = claim.key.as_str();
        let notice = claim.notice.as_str();
        self.run(|client| async move {
            let statement = client.prepare_cached(SQL).await.map_err(map_err)?;
            let rows = client
                .query(
                    &statement,
                    &[
                        &id,
                        &notice,
                        &claim.lease_until,
                        &claim.now,
                        &claim.renew_after,
                    ],
                )
                .await
                .map_err(map_err)?;
            Ok(!rows.is_empty())
        })
        .await
    }

    async fn settle_notice(
        &self,
        key: &KeyId,
        notice: &str,
        outcome: NoticeOutcome,
    ) -> Result<(), StoreError> {
        const DELIVERED: &str = "INSERT INTO keyward_notices (key_id, notice, delivered_at) \
             SELECT $1::text, $2::text, $3::timestamptz \
             WHERE EXISTS (SELECT 1 FROM keyward_keys WHERE id = $1::text) \
             ON CONFLICT (key_id, notice) DO UPDATE \
             SET delivered_at = EXCLUDED.delivered_at, lease_until = NULL";
        const RELEASED: &str = "DELETE FROM keyward_notices \
             WHERE key_id = $1::text AND notice = $2::text AND delivered_at IS NULL \
             AND lease_until = $3::timestamptz";
        let id = key.as_str();
        self.run(|client| async move {
            match outcome {
                NoticeOutcome::Delivered(at) => {
                    let statement = client.prepare_cached(DELIVERED).await.map_err(map_err)?;
                    client
                        .execute(&statement, &[&id, &notice, &at])
                        .await
                        .map_err(map_err)?;
                }
                NoticeOutcome::Released(lease_until) => {
                    let statement = client.prepare_cached(RELEASED).await.map_err(map_err)?;
                    client
                        .execute(&statement, &[&id, &notice, &lease_until])
                        .await
                        .map_err(map_err)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn spend_credits(
        &self,
        id: &KeyId,
        cost: u64,
        now: OffsetDateTime,
    ) -> Result<Option<CreditSpend>, StoreError> {
        // One statement. `locked` takes the metered row's lock and reads its
        // latest version (in READ COMMITTED a concurrent spend's commit is
        // waited for and seen), with the refill rule stored in it: whether
        // a refill is due at $3, and what is available after it. `spent`
        // writes the refill and the spend from those values (nothing when
        // nothing changes); the answer is computed from the same values, as
        // RETURNING cannot show the row before the update. No `known`: an
        // unknown id; no `available`: an unmetered key (not locked).
        const SQL: &str = "WITH locked AS ( \
                 SELECT id, due, CASE WHEN due THEN credits_refill_amount \
                     ELSE credits_remaining END AS available \
                 FROM (SELECT id, credits_remaining, credits_refill_amount, \
                     keyward_refill_due(credits_refill_period, credits_refill_day, \
                         credits_refilled_at, $3::timestamptz) AS due \
                     FROM keyward_keys WHERE id = $1::text AND credits_remaining IS NOT NULL \
                     FOR NO KEY UPDATE) AS r \
             ), spent AS ( \
                 UPDATE keyward_keys AS k SET \
                     credits_remaining = CASE WHEN l.available >= $2::bigint \
                         THEN l.available - $2::bigint ELSE l.available END, \
                     credits_refilled_at = CASE WHEN l.due THEN $3::timestamptz \
                         ELSE k.credits_refilled_at END \
                 FROM locked AS l \
                 WHERE k.id = l.id AND (l.due OR (l.available >= $2::bigint AND $2::bigint > 0)) \
             ) \
             SELECT EXISTS (SELECT 1 FROM keyward_keys WHERE id = $1::text), \
                 l.available, l.available >= $2::bigint \
             FROM (SELECT 1) AS one LEFT JOIN locked AS l ON true";
        let id = id.as_str();
        // Above every stored count (at most 2^53 - 1): refused either way.
        let cost = i64::try_from(cost).unwrap_or(i64::MAX);
        self.run(|client| async move {
            let statement = client.prepare_cached(SQL).await.map_err(map_err)?;
            let row = client
                .query_one(&statement, &[&id, &cost, &now])
                .await
                .map_err(map_err)?;
            let known: bool = row.try_get(0).map_err(map_err)?;
            let available: Option<i64> = row.try_get(1).map_err(map_err)?;
            let enough: Option<bool> = row.try_get(2).map_err(map_err)?;
            if !known {
                return Ok(None);
            }
            let (Some(available), Some(enough)) = (available, enough) else {
                return Ok(Some(CreditSpend::Unmetered));
            };
            let count = |n: i64| u64::try_from(n).map_err(|_| corrupt("credit count"));
            Ok(Some(if enough {
                CreditSpend::Spent {
                    remaining: count(available - cost)?,
                }
            } else {
                CreditSpend::Exhausted {
                    remaining: count(available)?,
                }
            }))
        })
        .await
    }

    async fn update_controls(
        &self,
        id: &KeyId,
        update: &ControlsUpdate,
        now: OffsetDateTime,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        if update.is_empty() {
            return self.get(id).await;
        }
        // One statement. $4: 0 keeps the credits, 1 replaces them with
        // $5-$9 (all NULL: removed), 2 adds $10 where there are credits
        // (capped at 2^53 - 1),
        // on the row's latest version (a concurrent spend is waited for,
        // never overwritten). The trigger notifies other processes when
        // the allowlist, budget, rate limit or meteredness changes.
        const SQL: &str = concat!(
            "UPDATE keyward_keys SET ",
            "allowed_ips = CASE WHEN $2::boolean THEN $3::text[]::cidr[] ELSE allowed_ips END, ",
            "credits_remaining = CASE $4::int WHEN 1 THEN $5::bigint ",
            // LEAST ignores NULLs: the sum stays NULL without credits.
            // Add: onto a due refill first (as a spend would apply it), so
            // the refill does not overwrite the top-up later.
            "WHEN 2 THEN (CASE WHEN keyward_refill_due(credits_refill_period, credits_refill_day, credits_refilled_at, $15::timestamptz) ",
            "THEN credits_refill_amount ELSE credits_remaining END) ",
            "+ LEAST($10::bigint, 9007199254740991 - (CASE WHEN keyward_refill_due(credits_refill_period, credits_refill_day, credits_refilled_at, $15::timestamptz) ",
            "THEN credits_refill_amount ELSE credits_remaining END)) ",
            "ELSE credits_remaining END, ",
            "credits_refill_amount = CASE WHEN $4::int = 1 THEN $6::bigint ",
            "ELSE credits_refill_amount END, ",
            "credits_refill_period = CASE WHEN $4::int = 1 THEN $7::text ",
            "ELSE credits_refill_period END, ",
            "credits_refill_day = CASE WHEN $4::int = 1 THEN $8::smallint ",
            "ELSE credits_refill_day END, ",
            "credits_refilled_at = CASE WHEN $4::int = 1 THEN $9::timestamptz ",
            "WHEN $4::int = 2 AND credits_remaining IS NOT NULL AND keyward_refill_due(credits_refill_period, credits_refill_day, credits_refilled_at, $15::timestamptz) THEN $15::timestamptz ",
            "ELSE credits_refilled_at END, ",
            "budget = CASE WHEN $11::boolean THEN $12::text ELSE budget END, ",
            "rate_limit = CASE WHEN $13::boolean THEN $14::int ELSE rate_limit END ",
            "WHERE id = $1::text RETURNING ",
            columns!()
        );
        let set_allowed = update.allowed_ips.is_some();
        let allowed: Option<Vec<String>> = update
            .allowed_ips
            .as_ref()
            .and_then(|list| list.as_ref().map(IpAllowlist::to_strings));
        let (mode, credits, add): (i32, _, i64) = match update.credits {
            None => (0, CreditColumns::new(None)?, 0),
            Some(CreditsChange::Set(credits)) => {
                let set = Credits {
                    refilled_at: credits.refilled_at.or(Some(now)),
                    ..credits
                };
                (1, CreditColumns::new(Some(&set))?, 0)
            }
            Some(CreditsChange::Add(n)) => (
                2,
                CreditColumns::new(None)?,
                // Capped in the statement; any larger amount caps the same.
                i64::try_from(n.min(MAX_CREDITS)).unwrap_or(i64::MAX),
            ),
            Some(CreditsChange::Remove) => (1, CreditColumns::new(None)?, 0),
        };
        let set_budget = update.budget.is_some();
        let budget = update
            .budget
            .as_ref()
            .and_then(|b| b.as_ref().map(BudgetId::as_str));
        let set_rate = update.rate_limit.is_some();
        let rate = update
            .rate_limit
            .map(rate_limit_column)
            .transpose()?
            .flatten();
        let mut records = self
            .query_records(
                SQL,
                &[
                    &id.as_str(),
                    &set_allowed,
                    &allowed,
                    &mode,
                    &credits.remaining,
                    &credits.amount,
                    &credits.period,
                    &credits.day,
                    &credits.refilled_at,
                    &add,
                    &set_budget,
                    &budget,
                    &set_rate,
                    &rate,
                    &now,
                ],
            )
            .await?;
        Ok(records.pop())
    }

    async fn record_uses(&self, uses: &[KeyUse]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let batch = UseBatch::new(uses)?;
        // `KeyUse::apply` for each of a key's uses in turn, in one UPDATE
        // (which changes a row once) on the row's latest version. A use is
        // newer when it is not older than the stored instant nor than the
        // key's earlier uses in the batch (`prefix`, their latest). Applied
        // in turn, the newer uses' IPs go first, the latest use first, then
        // the stored IPs, then the older uses' in turn: the first 5
        // distinct of that are what applying them one by one keeps. The
        // agent is the last newer use's that has one, else the stored one.
        // On the right of SET, columns hold their values before the update.
        const SQL: &str = "UPDATE keyward_keys AS k SET \
             recent_ips = ARRAY( \
                 SELECT d.ip FROM ( \
                     SELECT DISTINCT ON (e.ip) e.ip, e.part, e.rank, e.pos FROM ( \
                         SELECT p.ip, \
                             CASE WHEN n.newer THEN 0 ELSE 2 END AS part, \
                             CASE WHEN n.newer THEN -p.use ELSE p.use END AS rank, p.pos \
                         FROM unnest(u.ip_uses, u.ips) WITH ORDINALITY AS p(use, ip, pos), \
                         LATERAL (SELECT (k.last_used_at IS NULL \
                             OR u.ats[p.use] >= k.last_used_at) \
                             AND (u.prefixes[p.use] IS NULL \
                             OR u.ats[p.use] >= u.prefixes[p.use]) AS newer) AS n \
                         UNION ALL \
                         SELECT s.ip, 1, 0, s.pos \
                         FROM unnest(k.recent_ips) WITH ORDINALITY AS s(ip, pos) \
                     ) AS e \
                     ORDER BY e.ip, e.part, e.rank, e.pos \
                 ) AS d \
                 ORDER BY d.part, d.rank, d.pos LIMIT 5), \
             last_user_agent = COALESCE(( \
                 SELECT a.agent \
                 FROM unnest(u.ats, u.prefixes, u.agents) WITH ORDINALITY AS a(at, prefix, agent, i) \
                 WHERE a.agent IS NOT NULL \
                     AND (k.last_used_at IS NULL OR a.at >= k.last_used_at) \
                     AND (a.prefix IS NULL OR a.at >= a.prefix) \
                 ORDER BY a.i DESC LIMIT 1), k.last_user_agent), \
             last_used_at = GREATEST(k.last_used_at, u.latest) \
             FROM ( \
                 SELECT a.id, a.latest, w.ats, w.prefixes, w.agents, \
                     COALESCE(g.ip_uses, '{}') AS ip_uses, COALESCE(g.ips, '{}') AS ips \
                 FROM unnest($1::text[], $2::timestamptz[]) WITH ORDINALITY AS a(id, latest, n) \
                 JOIN ( \
                     SELECT x.key, array_agg(x.at ORDER BY x.ord) AS ats, \
                         array_agg(x.prefix ORDER BY x.ord) AS prefixes, \
                         array_agg(x.agent ORDER BY x.ord) AS agents \
                     FROM unnest($3::int[], $4::timestamptz[], $5::timestamptz[], $6::text[]) \
                         WITH ORDINALITY AS x(key, at, prefix, agent, ord) \
                     GROUP BY x.key) AS w ON w.key = a.n \
                 LEFT JOIN ( \
                     SELECT y.key, array_agg(y.use ORDER BY y.ord) AS ip_uses, \
                         array_agg(y.ip ORDER BY y.ord) AS ips \
                     FROM unnest($7::int[], $8::int[], $9::inet[]) \
                         WITH ORDINALITY AS y(key, use, ip, ord) \
                     GROUP BY y.key) AS g ON g.key = a.n \
             ) AS u \
             WHERE k.id = u.id";
        debug_assert_eq!(RECENT_IPS, 5, "the statement keeps 5");
        let batch = &batch;
        self.run(|client| async move {
            let statement = client.prepare_cached(SQL).await.map_err(map_err)?;
            client
                .execute(
                    &statement,
                    &[
                        &batch.ids,
                        &batch.latest,
                        &batch.use_keys,
                        &batch.use_ats,
                        &batch.use_prefixes,
                        &batch.use_agents,
                        &batch.ip_keys,
                        &batch.ip_uses,
                        &batch.ips,
                    ],
                )
                .await
                .map_err(map_err)?;
            Ok(())
        })
        .await
    }
}

/// A `record_uses` batch as the statement's parameters: its keys (1-based
/// positions) with their latest use, each key's uses in the batch's order
/// with the latest instant of the key's earlier uses (`prefix`), and the
/// uses' IPs with their key and use (1-based, within the key).
struct UseBatch<'a> {
    ids: Vec<&'a str>,
    latest: Vec<OffsetDateTime>,
    use_keys: Vec<i32>,
    use_ats: Vec<OffsetDateTime>,
    use_prefixes: Vec<Option<OffsetDateTime>>,
    use_agents: Vec<Option<&'a str>>,
    ip_keys: Vec<i32>,
    ip_uses: Vec<i32>,
    ips: Vec<IpAddr>,
}

impl<'a> UseBatch<'a> {
    fn new(uses: &'a [KeyUse]) -> Result<Self, StoreError> {
        let position =
            |n: usize| i32::try_from(n).map_err(|_| StoreError::other("batch too large"));
        let mut keys: BTreeMap<&str, usize> = BTreeMap::new();
        // Per key: how many uses so far.
        let mut counts: Vec<usize> = Vec::new();
        let mut batch = UseBatch {
            ids: Vec::new(),
            latest: Vec::new(),
            use_keys: Vec::with_capacity(uses.len()),
            use_ats: Vec::with_capacity(uses.len()),
            use_prefixes: Vec::with_capacity(uses.len()),
            use_agents: Vec::with_capacity(uses.len()),
            ip_keys: Vec::new(),
            ip_uses: Vec::new(),
            ips: Vec::new(),
        };
        for key_use in uses {
            let id = key_use.id.as_str();
            let (key, prefix) = match keys.get(id) {
                Some(&key) => (key, Some(batch.latest[key])),
                None => {
                    keys.insert(id, batch.ids.len());
                    batch.ids.push(id);
                    batch.latest.push(key_use.at);
                    counts.push(0);
                    (batch.ids.len() - 1, None)
                }
            };
            batch.latest[key] = batch.latest[key].max(key_use.at);
            counts[key] += 1;
            let (key_position, use_position) = (position(key + 1)?, position(counts[key])?);
            batch.use_keys.push(key_position);
            batch.use_ats.push(key_use.at);
            batch.use_prefixes.push(prefix);
            batch.use_agents.push(key_use.user_agent.as_deref());
            for ip in &key_use.ips {
                batch.ip_keys.push(key_position);
                batch.ip_uses.push(use_position);
                batch.ips.push(*ip);
            }
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_refuses_bad_input_without_echoing_it() {
        let err = PgStore::builder("postgres://u:hunter2@h/db")
            .schema("Bad-Name; DROP")
            .build()
            .unwrap_err();
        assert!(!err.to_string().contains("DROP"), "{err}");
        let err = PgStore::builder("postgres://u:hunter2@h:notaport/db")
            .build()
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(PgStore::builder("postgres://u@h/db")
            .schema("auth_2")
            .build()
            .is_ok());
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["auth", "_x", "kw_test_123"] {
            assert!(valid_identifier(ok), "{ok}");
        }
        for bad in [
            "",
            "1x",
            "Auth",
            "a-b",
            "a b",
            "a;b",
            "\"a\"",
            &"a".repeat(64),
        ] {
            assert!(!valid_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn recent_ips_read_as_single_addresses() {
        assert_eq!(host_address("203.0.113.9/32"), "203.0.113.9".parse().ok());
        assert_eq!(host_address("2001:db8::1/128"), "2001:db8::1".parse().ok());
        assert_eq!(
            host_address("::ffff:1.2.3.4/128"),
            "::ffff:1.2.3.4".parse().ok()
        );
        assert_eq!(host_address("10.0.0.1"), "10.0.0.1".parse().ok());
        for network in [
            "10.0.0.0/8",
            "10.0.0.1/128",
            "2001:db8::/32",
            "nope",
            "10.0.0.1/",
        ] {
            assert_eq!(host_address(network), None, "{network}");
        }
    }

    #[test]
    fn the_sql_reads_the_columns_record_from_row_expects() {
        assert!(select!("WHERE id = $1").starts_with("SELECT id, tenant, kind, name,"));
        assert_eq!(columns!().split(',').count(), 25);
        assert_eq!(insert_columns!().split(',').count(), 25);
        for (read, written) in columns!().split(',').zip(insert_columns!().split(',')) {
            assert_eq!(read.trim().trim_end_matches("::text[]"), written.trim());
        }
    }
}
