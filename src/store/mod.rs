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
//! * `list_page` returns at most [`PageRequest::limit`] of the tenant's
//!   records that pass [`PageRequest::matches`] (kind, state at
//!   [`PageRequest::now`], strictly after [`PageRequest::after`]), newest
//!   first: by `created_at` descending, then by id descending, comparing ids
//!   byte by byte (in SQL: `COLLATE "C"`). The provided implementation does
//!   this over `list`; a store that can page natively (a keyset query on an
//!   index of `(tenant, created_at, id)`) should override it.
//!   [`PageRequest::owner`] narrows the page to one owner's keys (index
//!   `(tenant, owner)`).
//! * `find_keys` returns at most [`LifecycleQuery::limit`] records that
//!   pass [`LifecycleQuery::matches`] and whose notice named
//!   [`LifecycleQuery::unnoticed`] (when set) does not
//!   [block](NoticeState::blocks) at the query's `now` with
//!   [`LifecycleQuery::renew_after`], ordered by
//!   [`LifecycleQuery::position`] then id, byte by byte. Across tenants:
//!   index `expires_at` and `coalesce(last_used_at, created_at)`.
//! * `successors` returns every record whose `rotated_from` is the id
//!   (index it: a revoked key's presentation asks).
//! * `claim_notice` grants a [`NoticeClaim`] when
//!   [`NoticeClaim::granted_over`] the notice's current state, recording
//!   [`NoticeState::claimed`], **atomically**: of several sweepers claiming
//!   one notice at once (processes sharing the store), exactly one is
//!   granted. `settle_notice` records [`NoticeOutcome::Delivered`] (over
//!   any state) or drops a claim not yet delivered whose `lease_until` is
//!   the one given ([`NoticeOutcome::Released`]: only the claimant's own). Notices of a deleted key may go with it.
//! * [`Condition`], [`NoticeOutcome`] and [`Revocation`] may gain variants:
//!   a store that meets a [`Condition`] it does not know answers
//!   [`StoreError::Unsupported`]; for the others, see their docs.
//! * `find_keys`, `successors`, `claim_notice`, `settle_notice`,
//!   `spend_credits` and `update_controls` are provided, failing with
//!   [`StoreError::Unsupported`], so a store written for an earlier
//!   version still compiles; the keyring then still verifies, lists and
//!   revokes, but the sweeper's ticks fail, owners' keys cannot be listed,
//!   reuse of a rotated token is not reported, usage controls cannot be
//!   changed and a key with credits is refused (503: never admitted
//!   unmetered). The conformance suite requires them.
//! * `spend_credits` spends `cost` of a key's [`Credits`](crate::usage::Credits)
//!   **atomically**, exactly as [`Credits::spend`](crate::usage::Credits::spend)
//!   does at the given instant (a due refill first; never below zero; a
//!   key without credits is [`CreditSpend::Unmetered`]; `None` for an
//!   unknown id): concurrent spends on one key, from any number of
//!   processes sharing the store, spend exactly what they report.
//! * `update_controls` applies a [`ControlsUpdate`] as
//!   [`ControlsUpdate::apply`] does, atomically (a
//!   [`CreditsChange::Add`](crate::usage::CreditsChange::Add) never loses a
//!   concurrent spend), and returns the updated record (`None` for an
//!   unknown id).
//! * `record_uses` writes a last-used batch: for each [`KeyUse`], what
//!   [`KeyUse::apply`] does to the stored record, ignoring unknown ids
//!   (the keyring sends one use per key in a batch; several are applied
//!   in turn). It
//!   is provided over `touch` (instants only), so a store written before
//!   it keeps working without the client IPs and user agents.
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
mod lifecycle;
mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;

pub use cache::{CacheInvalidator, CachedStore, CachedStoreBuilder};
pub use lifecycle::{Condition, LifecycleQuery, NoticeClaim, NoticeOutcome, NoticeState};
pub use memory::MemoryStore;

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::hash::TokenHash;
use crate::key::{KeyId, KeyRecord, OwnerId, StateFilter, TenantId};
use crate::usage::{ControlsUpdate, CreditSpend, KeyUse};

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

/// One page of a tenant's keys, as [`KeyStore::list_page`] is asked for it:
/// which kinds and states, from which position, how many. Made by the
/// keyring; a store reads it.
///
/// The order is newest first, by `(created_at, id)` descending (ids
/// compared byte by byte). [`after`](Self::after) is the position of the
/// last record of the previous page: the page holds only records strictly
/// after it in that order, so records inserted since the first page (newer,
/// or older than the position by a clock skew) never appear twice and
/// never push a record off its page.
///
/// ```
/// use keyward::store::PageRequest;
/// use keyward::{KeyId, StateFilter};
/// use time::OffsetDateTime;
///
/// let now = OffsetDateTime::UNIX_EPOCH;
/// let request = PageRequest::new(now, 50)
///     .kinds(["pl"])
///     .state(StateFilter::Active)
///     .after(now, KeyId::parse("key_x").unwrap());
/// assert_eq!(request.limit, 50);
/// assert_eq!(request.kinds, ["pl"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PageRequest {
    /// Only keys of these kinds (prefixes); every kind when empty.
    pub kinds: Vec<String>,
    /// Only keys in this state at [`now`](Self::now).
    pub state: StateFilter,
    /// The instant the state filter is judged at (the keyring's clock).
    pub now: OffsetDateTime,
    /// Only records after this `(created_at, id)` position, newest first.
    pub after: Option<(OffsetDateTime, KeyId)>,
    /// At most this many records.
    pub limit: usize,
    /// Only keys of this owner inside the tenant; any owner (and none)
    /// when `None`.
    pub owner: Option<OwnerId>,
}

impl PageRequest {
    /// The first page of every kind and state, of at most `limit` records.
    #[must_use]
    pub fn new(now: OffsetDateTime, limit: usize) -> Self {
        PageRequest {
            kinds: Vec::new(),
            state: StateFilter::All,
            now,
            after: None,
            limit,
            owner: None,
        }
    }

    /// Only keys of this owner.
    #[must_use]
    pub fn owner(mut self, owner: OwnerId) -> Self {
        self.owner = Some(owner);
        self
    }

    /// Only keys of these kinds.
    #[must_use]
    pub fn kinds<I, S>(mut self, kinds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.kinds = kinds.into_iter().map(Into::into).collect();
        self
    }

    /// Only keys in this state.
    #[must_use]
    pub fn state(mut self, state: StateFilter) -> Self {
        self.state = state;
        self
    }

    /// Only records after this position (the last of the previous page).
    #[must_use]
    pub fn after(mut self, created_at: OffsetDateTime, id: KeyId) -> Self {
        self.after = Some((created_at, id));
        self
    }

    /// Whether a record of the requested tenant belongs on the page by
    /// kind, state and position (the limit aside).
    #[must_use]
    pub fn matches(&self, record: &KeyRecord) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&record.kind))
            && self
                .owner
                .as_ref()
                .is_none_or(|o| record.owner.as_ref() == Some(o))
            && self.state.matches(record.state(self.now))
            && self
                .after
                .as_ref()
                .is_none_or(|(at, id)| (record.created_at, record.id.as_str()) < (*at, id.as_str()))
    }

    /// Sorts records newest first, by `(created_at, id)` descending.
    pub fn sort(records: &mut [Arc<KeyRecord>]) {
        records.sort_unstable_by(|a, b| {
            (b.created_at, b.id.as_str()).cmp(&(a.created_at, a.id.as_str()))
        });
    }
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
/// // Provided (over `list`); override to page natively:
/// async fn list_page(&self, tenant: &TenantId, page: &PageRequest) -> Result<Vec<Arc<KeyRecord>>, StoreError>;
/// // Provided, failing with `StoreError::Unsupported`; override all four:
/// async fn find_keys(&self, query: &LifecycleQuery) -> Result<Vec<Arc<KeyRecord>>, StoreError>;
/// async fn successors(&self, id: &KeyId) -> Result<Vec<Arc<KeyRecord>>, StoreError>;
/// async fn claim_notice(&self, claim: &NoticeClaim) -> Result<bool, StoreError>;
/// async fn settle_notice(&self, key: &KeyId, notice: &str, outcome: NoticeOutcome) -> Result<(), StoreError>;
/// // Provided, failing with `StoreError::Unsupported`; override both (usage controls):
/// async fn spend_credits(&self, id: &KeyId, cost: u64, now: OffsetDateTime) -> Result<Option<CreditSpend>, StoreError>;
/// async fn update_controls(&self, id: &KeyId, update: &ControlsUpdate, now: OffsetDateTime) -> Result<Option<Arc<KeyRecord>>, StoreError>;
/// // Provided over `touch`; override to keep client IPs and user agents:
/// async fn record_uses(&self, uses: &[KeyUse]) -> Result<(), StoreError>;
/// // Provided (`None`: ask `find_by_hash`); override when answering from memory:
/// fn find_by_hash_now(&self, hash: &TokenHash) -> Option<Result<Option<Arc<KeyRecord>>, StoreError>>;
/// ```
///
/// A store that counts lookups around another one, with nothing but this
/// crate:
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use keyward::store::{LifecycleQuery, NoticeClaim, NoticeOutcome, Revocation};
/// use keyward::usage::{ControlsUpdate, CreditSpend, KeyUse};
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
///     // The lifecycle methods (sweeper, reuse detection, owners' keys):
///     async fn find_keys(&self, query: &LifecycleQuery) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
///         self.inner.find_keys(query).await
///     }
///     async fn successors(&self, id: &KeyId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
///         self.inner.successors(id).await
///     }
///     async fn claim_notice(&self, claim: &NoticeClaim) -> Result<bool, StoreError> {
///         self.inner.claim_notice(claim).await
///     }
///     async fn settle_notice(&self, key: &KeyId, notice: &str, outcome: NoticeOutcome) -> Result<(), StoreError> {
///         self.inner.settle_notice(key, notice, outcome).await
///     }
///     // Usage controls (credits, allowlists, budgets; client IPs and agents):
///     async fn spend_credits(&self, id: &KeyId, cost: u64, now: OffsetDateTime) -> Result<Option<CreditSpend>, StoreError> {
///         self.inner.spend_credits(id, cost, now).await
///     }
///     async fn update_controls(&self, id: &KeyId, update: &ControlsUpdate, now: OffsetDateTime) -> Result<Option<Arc<KeyRecord>>, StoreError> {
///         self.inner.update_controls(id, update, now).await
///     }
///     async fn record_uses(&self, uses: &[KeyUse]) -> Result<(), StoreError> {
///         self.inner.record_uses(uses).await
///     }
/// }
///
/// // With feature `test-util`, check it against the contract:
/// # #[cfg(feature = "test-util")]
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// keyward::testing::conformance::run(&Counting::default()).await;
/// # });
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

    /// [`find_by_hash`](Self::find_by_hash) for a store that can answer
    /// without waiting (from memory): `Some` with the answer
    /// `find_by_hash` would give, or `None` to be asked through
    /// `find_by_hash`. Verification tries this first, which spares the
    /// boxed future of an in-memory lookup.
    ///
    /// Provided: `None`. [`MemoryStore`] answers here,
    /// and [`CachedStore`] for a fresh cache entry.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use keyward::{KeyKind, Keyring, KeyStore, MemoryStore, NewKey, ScopeCatalog, TokenHasher};
    ///
    /// let store = MemoryStore::new();
    /// let keyring = Keyring::builder()
    ///     .store(store.clone())
    ///     .kind(KeyKind::new("pk", ScopeCatalog::builder().build()?)?)
    ///     .build()?;
    /// let issued = keyring.issue(NewKey::new("pk", "org_1", "CI")).await?;
    /// let hash = TokenHasher::sha256().hash(issued.token.expose_secret());
    /// let now = store.find_by_hash_now(&hash).expect("answers from memory")?;
    /// assert_eq!(now.map(|r| r.id.clone()), store.find_by_hash(&hash).await?.map(|r| r.id.clone()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    fn find_by_hash_now(
        &self,
        hash: &TokenHash,
    ) -> Option<Result<Option<Arc<KeyRecord>>, StoreError>> {
        let _ = hash;
        None
    }

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

    /// One page of a tenant's records, newest first (see [`PageRequest`]).
    /// Provided over [`list`](Self::list), which reads every record of the
    /// tenant; stores that can should page natively.
    async fn list_page(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        let mut records = self.list(tenant).await?;
        records.retain(|r| page.matches(r));
        PageRequest::sort(&mut records);
        records.truncate(page.limit);
        Ok(records)
    }

    /// Keys that meet a lifecycle condition, across tenants, leaving out
    /// those already announced (see [`LifecycleQuery`]).
    async fn find_keys(&self, query: &LifecycleQuery) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        let _ = query;
        Err(StoreError::Unsupported("find_keys"))
    }

    /// Every record whose `rotated_from` is `id`: the keys that succeeded
    /// it in a rotation.
    async fn successors(&self, id: &KeyId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        let _ = id;
        Err(StoreError::Unsupported("successors"))
    }

    /// Atomically grants a notice claim unless the notice's state blocks it
    /// (see [`NoticeClaim`]); `true` when granted.
    async fn claim_notice(&self, claim: &NoticeClaim) -> Result<bool, StoreError> {
        let _ = claim;
        Err(StoreError::Unsupported("claim_notice"))
    }

    /// Records how a claimed notice ended (see [`NoticeOutcome`]).
    async fn settle_notice(
        &self,
        key: &KeyId,
        notice: &str,
        outcome: NoticeOutcome,
    ) -> Result<(), StoreError> {
        let _ = (key, notice, outcome);
        Err(StoreError::Unsupported("settle_notice"))
    }

    /// Spends `cost` of the key's credits at `now`, atomically (see
    /// [`Credits::spend`](crate::usage::Credits::spend)); `None` for an
    /// unknown id.
    async fn spend_credits(
        &self,
        id: &KeyId,
        cost: u64,
        now: OffsetDateTime,
    ) -> Result<Option<CreditSpend>, StoreError> {
        let _ = (id, cost, now);
        Err(StoreError::Unsupported("spend_credits"))
    }

    /// Changes the key's usage controls (see [`ControlsUpdate::apply`]);
    /// the updated record, or `None` for an unknown id.
    async fn update_controls(
        &self,
        id: &KeyId,
        update: &ControlsUpdate,
        now: OffsetDateTime,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let _ = (id, update, now);
        Err(StoreError::Unsupported("update_controls"))
    }

    /// Writes a last-used batch with client IPs and user agents (see
    /// [`KeyUse::apply`]). Provided over [`touch`](Self::touch), which
    /// keeps only the instants.
    async fn record_uses(&self, uses: &[KeyUse]) -> Result<(), StoreError> {
        let instants: Vec<_> = uses.iter().map(|u| (u.id.clone(), u.at)).collect();
        self.touch(&instants).await
    }
}

#[async_trait]
impl<S: KeyStore + ?Sized> KeyStore for Arc<S> {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        (**self).insert(record).await
    }
    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        (**self).find_by_hash(hash).await
    }
    fn find_by_hash_now(
        &self,
        hash: &TokenHash,
    ) -> Option<Result<Option<Arc<KeyRecord>>, StoreError>> {
        (**self).find_by_hash_now(hash)
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
    async fn list_page(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        (**self).list_page(tenant, page).await
    }
    async fn find_keys(&self, query: &LifecycleQuery) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        (**self).find_keys(query).await
    }
    async fn successors(&self, id: &KeyId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        (**self).successors(id).await
    }
    async fn claim_notice(&self, claim: &NoticeClaim) -> Result<bool, StoreError> {
        (**self).claim_notice(claim).await
    }
    async fn settle_notice(
        &self,
        key: &KeyId,
        notice: &str,
        outcome: NoticeOutcome,
    ) -> Result<(), StoreError> {
        (**self).settle_notice(key, notice, outcome).await
    }
    async fn spend_credits(
        &self,
        id: &KeyId,
        cost: u64,
        now: OffsetDateTime,
    ) -> Result<Option<CreditSpend>, StoreError> {
        (**self).spend_credits(id, cost, now).await
    }
    async fn update_controls(
        &self,
        id: &KeyId,
        update: &ControlsUpdate,
        now: OffsetDateTime,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        (**self).update_controls(id, update, now).await
    }
    async fn record_uses(&self, uses: &[KeyUse]) -> Result<(), StoreError> {
        (**self).record_uses(uses).await
    }
}
