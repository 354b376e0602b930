//! The storage contract ([`KeyStore`]) and the stores shipped with the crate.
//!
//! # Implementing a store
//!
//! A host stores keys wherever it likes by implementing [`KeyStore`] with
//! `#[keyward::async_trait]` (re-exported: [`crate::async_trait`]), writing
//! each method as an `async fn`. The keyring holds the store as
//! `Arc<dyn KeyStore>`, so the trait is object safe and a keyring's type
//! does not depend on its store. The contract:
//!
//! * `insert` fails with [`StoreError::Conflict`] when the id or the hash is
//!   taken, and stores the record otherwise.
//! * `find_by_hash` looks a key up by its exact [`TokenHash`] (index it); it
//!   returns revoked and expired keys too: the keyring decides.
//! * `revoke` returns the updated record, or `None` for an unknown id. Once
//!   it returns, `find_by_hash` and `get` must show the revocation. It never
//!   postpones a revocation and is idempotent:
//!   * [`Revocation::Now`] sets `revoked_at` to the earlier of the stored
//!     value and **the store's own clock** (a database server's `now()`; a
//!     store without a clock of its own uses the system clock), and sets
//!     `revocation_scheduled` to `false`. The revocation is then in effect
//!     for every reader, whatever its clock: [`KeyRecord::state`] reports
//!     an immediately revoked key as revoked at any instant, so a process
//!     whose clock lags the revoker's (or the database's) refuses the key
//!     as soon as it reads the record.
//!   * [`Revocation::At`] sets `revoked_at` to the earlier of the stored
//!     value and the instant. A key not yet revoked, or revoked on a
//!     schedule, is (still) revoked on a schedule (`revocation_scheduled =
//!     true`): each reader compares the instant with its own clock. An
//!     immediate revocation stays immediate.
//!
//!   A store that does not know a [`Revocation`] variant added later must
//!   treat it as [`Revocation::Now`].
//! * `touch` sets `last_used_at` to the later of the stored value and the
//!   given instant for each id, ignoring unknown ids, in one batch.
//! * Labels (names, tenant ids, metadata) arrive already checked by
//!   [`Keyring::issue`](crate::Keyring::issue); a store need not check them
//!   again, and rows it is given by other means are not checked.
//! * Every failure is an error, never an empty answer: the keyring fails
//!   closed on errors, but would treat a wrongly empty answer as "unknown".
//!
//! The `test-util` feature exports a conformance suite to run against a store
//! (`keyward::testing::conformance`).
//!
//! # Stores shipped here
//!
//! * [`MemoryStore`]: in process memory, the default.
//! * [`CachedStore`]: a read-through cache in front of any store.
//! * `postgres::PgStore` (feature `postgres`): PostgreSQL, with the schema
//!   shipped in the crate and a revocation listener for the cache.

mod cache;
mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;

pub use cache::{CacheInvalidator, CachedStore, CachedStoreBuilder};
pub use memory::MemoryStore;

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::hash::TokenHash;
use crate::key::{KeyId, KeyRecord, TenantId};

/// When a revocation takes effect: what [`KeyStore::revoke`] is asked to do.
///
/// ```
/// use keyward::store::Revocation;
///
/// let now = Revocation::Now; // in effect everywhere once `revoke` returns
/// let at = Revocation::At(time::OffsetDateTime::UNIX_EPOCH + time::Duration::hours(1));
/// assert_ne!(now, at);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revocation {
    /// Now, on the store's clock, and in effect for every reader whatever its
    /// clock says.
    Now,
    /// From this instant, which each reader compares with its own clock (a
    /// rotation's grace). For an instant already past, use [`Revocation::Now`]:
    /// a reader whose clock lags would still accept the key until its clock
    /// reaches the instant.
    At(OffsetDateTime),
}

/// Where key records live. See the [module docs](self) for the contract.
///
/// The methods read, as written in an implementation:
///
/// ```text
/// async fn insert(&self, record: KeyRecord) -> Result<(), StoreError>;
/// async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Arc<KeyRecord>>, StoreError>;
/// async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError>;
/// async fn list(&self, tenant: &TenantId) -> Result<Vec<Arc<KeyRecord>>, StoreError>;
/// async fn revoke(&self, id: &KeyId, when: Revocation) -> Result<Option<Arc<KeyRecord>>, StoreError>;
/// async fn touch(&self, uses: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError>;
/// ```
///
/// A store that counts lookups around another one, with nothing but this
/// crate:
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use keyward::store::Revocation;
/// use keyward::{KeyId, KeyRecord, KeyStore, MemoryStore, StoreError, TenantId, TokenHash};
/// use time::OffsetDateTime;
///
/// #[derive(Default)]
/// struct Counting {
///     inner: MemoryStore,
///     lookups: AtomicUsize,
/// }
///
/// #[keyward::async_trait]
/// impl KeyStore for Counting {
///     async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
///         self.inner.insert(record).await
///     }
///     async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Arc<KeyRecord>>, StoreError> {
///         self.lookups.fetch_add(1, Ordering::Relaxed);
///         self.inner.find_by_hash(hash).await
///     }
///     async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
///         self.inner.get(id).await
///     }
///     async fn list(&self, tenant: &TenantId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
///         self.inner.list(tenant).await
///     }
///     async fn revoke(&self, id: &KeyId, when: Revocation) -> Result<Option<Arc<KeyRecord>>, StoreError> {
///         self.inner.revoke(id, when).await
///     }
///     async fn touch(&self, uses: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
///         self.inner.touch(uses).await
///     }
/// }
///
/// let store: Arc<dyn KeyStore> = Arc::new(Counting::default());
/// # let _ = store;
/// ```
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new record; [`StoreError::Conflict`] if its id or hash exists.
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError>;

    /// The record with exactly this hash, whatever its state.
    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Arc<KeyRecord>>, StoreError>;

    /// The record with this id.
    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError>;

    /// Every record of a tenant, oldest first (by `created_at`).
    async fn list(&self, tenant: &TenantId) -> Result<Vec<Arc<KeyRecord>>, StoreError>;

    /// Revokes a key, now (on the store's clock, in effect for every reader)
    /// or from an instant, never later than an earlier revocation; the
    /// updated record, or `None` for an unknown id. See the
    /// [module docs](self) for the exact rule.
    async fn revoke(
        &self,
        id: &KeyId,
        when: Revocation,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError>;

    /// Records last uses in one batch: `last_used_at` becomes the later of its
    /// value and the given instant. Unknown ids are ignored.
    async fn touch(&self, uses: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError>;
}

#[async_trait]
impl<S: KeyStore + ?Sized> KeyStore for Arc<S> {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        (**self).insert(record).await
    }
    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        (**self).find_by_hash(hash).await
    }
    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        (**self).get(id).await
    }
    async fn list(&self, tenant: &TenantId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        (**self).list(tenant).await
    }
    async fn revoke(
        &self,
        id: &KeyId,
        when: Revocation,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        (**self).revoke(id, when).await
    }
    async fn touch(&self, uses: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        (**self).touch(uses).await
    }
}
