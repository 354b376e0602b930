//! A read-through cache in front of any [`KeyStore`]: [`CachedStore`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{KeyStore, LifecycleQuery, NoticeClaim, NoticeOutcome, PageRequest, Revocation};
use crate::clock::{span, Clock, SystemClock};
use crate::error::StoreError;
use crate::hash::TokenHash;
use crate::key::{KeyId, KeyRecord, TenantId};
use crate::usage::{ControlsUpdate, CreditSpend, KeyUse};

/// A [`KeyStore`] that remembers lookups by hash. Clones share the cache.
///
/// Only `find_by_hash` (the lookup behind every verification) is cached;
/// management calls (`get`, `list`) and writes go to the inner store.
///
/// # Bounds
///
/// * **Size:** at most [`capacity`](CachedStoreBuilder::capacity) entries
///   (10 000 by default), of which at most a quarter remember unknown hashes
///   (a flood of made-up tokens can not push known keys out). When full, the
///   oldest entry is evicted first (FIFO), so an eviction never costs more
///   than a few map operations.
/// * **Staleness:** a known key is served from the cache for at most
///   [`ttl`](CachedStoreBuilder::ttl) (30 s by default) after it was read; an
///   unknown hash is remembered for [`negative_ttl`](CachedStoreBuilder::negative_ttl)
///   (5 s by default). Time comes from the injectable [`Clock`].
/// * **Revocation in this process:** a `revoke` through the cache invalidates
///   the key before it returns, and a lookup that raced with it can not put
///   the old record back (every invalidation bumps an epoch; a lookup only
///   fills the cache when no invalidation that could concern what it read
///   happened while it ran: invalidations of other keys do not hold it
///   back, unless more than 64 came in during the one lookup).
/// * **Revocation in other processes:** each process must learn of it. Call
///   [`CacheInvalidator::invalidate`] when told (the PostgreSQL store's
///   `RevocationListener` does so through `LISTEN`/`NOTIFY` within about a
///   second); in the worst case, with every notification lost, a revoked key
///   keeps verifying in another process for at most `ttl`.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use keyward::store::CachedStore;
/// use keyward::{KeyStore, MemoryStore, TokenHasher};
///
/// let store = CachedStore::builder(MemoryStore::new())
///     .ttl(std::time::Duration::from_secs(10))
///     .capacity(50_000)
///     .build();
/// let hash = TokenHasher::sha256().hash("pk_unknown");
/// assert!(store.find_by_hash(&hash).await.unwrap().is_none());
/// assert_eq!(store.cached(), 1); // the miss is remembered for a short while
/// # });
/// ```
pub struct CachedStore<S> {
    inner: S,
    cache: Arc<Cache>,
}

impl<S: Clone> Clone for CachedStore<S> {
    fn clone(&self) -> Self {
        CachedStore {
            inner: self.inner.clone(),
            cache: Arc::clone(&self.cache),
        }
    }
}

impl<S> fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("ttl", &self.cache.ttl)
            .field("negative_ttl", &self.cache.negative_ttl)
            .field("capacity", &self.cache.capacity)
            .field("cached", &self.cache.lock().entries.len())
            .finish_non_exhaustive()
    }
}

/// Configures a [`CachedStore`].
#[must_use]
pub struct CachedStoreBuilder<S> {
    inner: S,
    ttl: Duration,
    negative_ttl: Duration,
    capacity: usize,
    clock: Arc<dyn Clock>,
}

impl<S> fmt::Debug for CachedStoreBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStoreBuilder")
            .field("ttl", &self.ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<S: KeyStore> CachedStoreBuilder<S> {
    /// How long a known key is served from the cache; 30 s by default. This
    /// bounds revocation lag across processes when notifications are lost.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long an unknown hash is remembered; 5 s by default.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// Most entries kept (known and unknown hashes); 10 000 by default, at
    /// least 1.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Where time comes from; the system clock by default.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The store.
    pub fn build(self) -> CachedStore<S> {
        CachedStore {
            inner: self.inner,
            cache: Arc::new(Cache {
                ttl: self.ttl,
                negative_ttl: self.negative_ttl,
                capacity: self.capacity,
                clock: self.clock,
                state: Mutex::default(),
            }),
        }
    }
}

impl<S: KeyStore> CachedStore<S> {
    /// Default time a known key stays cached.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
    /// Default time an unknown hash stays cached.
    pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);
    /// Default most entries.
    pub const DEFAULT_CAPACITY: usize = 10_000;

    /// A cache with the defaults in front of `inner`.
    pub fn new(inner: S) -> Self {
        Self::builder(inner).build()
    }

    /// A builder with the defaults: 30 s TTL, 5 s negative TTL, 10 000
    /// entries, the system clock.
    pub fn builder(inner: S) -> CachedStoreBuilder<S> {
        CachedStoreBuilder {
            inner,
            ttl: Self::DEFAULT_TTL,
            negative_ttl: Self::DEFAULT_NEGATIVE_TTL,
            capacity: Self::DEFAULT_CAPACITY,
            clock: Arc::new(SystemClock),
        }
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// A handle that invalidates this cache, for a notification listener.
    pub fn invalidator(&self) -> CacheInvalidator {
        CacheInvalidator {
            cache: Arc::clone(&self.cache),
        }
    }

    /// Forgets a key, e.g. on a revocation made elsewhere.
    pub fn invalidate(&self, id: &KeyId) {
        self.cache.invalidate(id);
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.cache.clear();
    }

    /// How many entries are cached (including expired ones not yet dropped).
    pub fn cached(&self) -> usize {
        self.cache.lock().entries.len()
    }
}

/// Invalidates a [`CachedStore`]'s entries from elsewhere (a listener task).
/// Cheap to clone; does not keep the inner store alive.
#[derive(Clone)]
pub struct CacheInvalidator {
    cache: Arc<Cache>,
}

impl fmt::Debug for CacheInvalidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheInvalidator").finish_non_exhaustive()
    }
}

impl CacheInvalidator {
    /// Forgets a key.
    pub fn invalidate(&self, id: &KeyId) {
        self.cache.invalidate(id);
    }

    /// Forgets everything (e.g. when notifications may have been lost).
    pub fn clear(&self) {
        self.cache.clear();
    }
}

struct Cache {
    ttl: Duration,
    negative_ttl: Duration,
    capacity: usize,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<TokenHash, Entry>,
    /// Key id to hash, for invalidation by id.
    hash_of: HashMap<KeyId, TokenHash>,
    /// Insertion order for eviction; `(hash, seq)` pairs whose entry has since
    /// been replaced or removed are skipped (and compacted away).
    order: VecDeque<(TokenHash, u64)>,
    next_seq: u64,
    /// Entries for unknown hashes.
    negatives: usize,
    /// Bumped on every invalidation: a lookup that started before one must
    /// not fill the cache with what it read, if it concerns that read.
    epoch: u64,
    /// The latest invalidations, oldest first, one per epoch bump (at most
    /// [`RECENT`]): the key id, or `None` for one that concerns any lookup
    /// (a hash, everything).
    recent: VecDeque<Option<KeyId>>,
}

/// How many invalidations a lookup can see past (and still fill the cache)
/// when none concerns its key: a busy revocation channel for other keys
/// must not keep every lookup from filling the cache.
const RECENT: usize = 64;

struct Entry {
    /// `None`: no key has this hash.
    record: Option<Arc<KeyRecord>>,
    until: OffsetDateTime,
    seq: u64,
}

impl Cache {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Each critical section leaves the maps consistent before it can panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn invalidate(&self, id: &KeyId) {
        let mut state = self.lock();
        state.bump(Some(id.clone()));
        if let Some(hash) = state.hash_of.get(id).copied() {
            state.remove(&hash);
        }
    }

    fn invalidate_hash(&self, hash: &TokenHash) {
        let mut state = self.lock();
        state.bump(None);
        state.remove(hash);
    }

    fn clear(&self) {
        let mut state = self.lock();
        state.bump(None);
        state.entries.clear();
        state.hash_of.clear();
        state.order.clear();
        state.negatives = 0;
    }
}

impl State {
    /// Records an invalidation of `id` (`None`: of anything).
    fn bump(&mut self, id: Option<KeyId>) {
        self.epoch += 1;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(id);
    }

    /// Whether a lookup that started at `epoch` and found the key `found`
    /// (`None`: no key) may fill the cache: no invalidation since could
    /// concern it. An invalidation by id can not make a miss stale (an
    /// insert invalidates its hash).
    fn may_fill(&self, epoch: u64, found: Option<&KeyId>) -> bool {
        let since = self.epoch - epoch;
        if since == 0 {
            return true;
        }
        let Ok(since) = usize::try_from(since) else {
            return false;
        };
        since <= self.recent.len()
            && self
                .recent
                .iter()
                .rev()
                .take(since)
                .all(|invalidated| match (invalidated, found) {
                    (None, _) => false,
                    (Some(id), Some(found)) => id != found,
                    (Some(_), None) => true,
                })
    }

    fn remove(&mut self, hash: &TokenHash) {
        match self.entries.remove(hash) {
            Some(Entry {
                record: Some(record),
                ..
            }) => {
                self.hash_of.remove(&record.id);
            }
            Some(Entry { record: None, .. }) => self.negatives -= 1,
            None => {}
        }
    }

    fn put(
        &mut self,
        hash: TokenHash,
        record: Option<Arc<KeyRecord>>,
        until: OffsetDateTime,
        capacity: usize,
    ) {
        self.remove(&hash);
        while self.entries.len() >= capacity {
            let Some((old, seq)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&old).is_some_and(|e| e.seq == seq) {
                self.remove(&old);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        match &record {
            Some(record) => {
                self.hash_of.insert(record.id.clone(), hash);
            }
            None => self.negatives += 1,
        }
        self.entries.insert(hash, Entry { record, until, seq });
        self.order.push_back((hash, seq));
        // Replaced and invalidated entries leave stale pairs behind; keep the
        // queue within a constant factor of the map.
        if self.order.len() > 2 * capacity + 16 {
            let entries = &self.entries;
            self.order
                .retain(|(h, seq)| entries.get(h).is_some_and(|e| e.seq == *seq));
        }
    }
}

#[async_trait]
impl<S: KeyStore> KeyStore for CachedStore<S> {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        let hash = record.hash;
        // Drop a remembered miss for this hash, whatever the outcome, also
        // when this future is cancelled after the insert went through.
        let _forget = OnDrop(|| self.cache.invalidate_hash(&hash));
        self.inner.insert(record).await
    }

    fn find_by_hash_now(
        &self,
        hash: &TokenHash,
    ) -> Option<Result<Option<Arc<KeyRecord>>, StoreError>> {
        // A fresh entry only: a stale one is `find_by_hash`'s to drop.
        let now = self.cache.clock.now();
        let state = self.cache.lock();
        match state.entries.get(hash) {
            Some(entry) if entry.until > now => Some(Ok(entry.record.clone())),
            _ => None,
        }
    }

    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let now = self.cache.clock.now();
        let epoch = {
            let mut state = self.cache.lock();
            match state.entries.get(hash) {
                Some(entry) if entry.until > now => return Ok(entry.record.clone()),
                Some(_) => state.remove(hash),
                None => {}
            }
            state.epoch
        };
        let found = self.inner.find_by_hash(hash).await?;
        let mut state = self.cache.lock();
        if state.may_fill(epoch, found.as_ref().map(|r| &r.id)) {
            let ttl = if found.is_some() {
                self.cache.ttl
            } else {
                self.cache.negative_ttl
            };
            // Misses get at most a quarter of the room, so a flood of
            // unknown tokens can not push known keys out of the cache.
            let room = found.is_some() || state.negatives < (self.cache.capacity / 4).max(1);
            if !ttl.is_zero() && room {
                state.put(
                    *hash,
                    found.clone(),
                    now.saturating_add(span(ttl)),
                    self.cache.capacity,
                );
            }
        }
        Ok(found)
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.inner.get(id).await
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        self.inner.list(tenant).await
    }

    async fn list_page(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        self.inner.list_page(tenant, page).await
    }

    async fn revoke(
        &self,
        id: &KeyId,
        when: Revocation,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        // Also on error, and when this future is cancelled mid-way: the
        // revocation may have been applied all the same.
        let _forget = OnDrop(|| self.cache.invalidate(id));
        self.inner.revoke(id, when).await
    }

    async fn touch(&self, uses: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        // Cached records keep their older last-used instant: verification
        // does not read it, and `get`/`list` bypass the cache.
        self.inner.touch(uses).await
    }

    async fn find_keys(&self, query: &LifecycleQuery) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        self.inner.find_keys(query).await
    }

    async fn successors(&self, id: &KeyId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        self.inner.successors(id).await
    }

    async fn claim_notice(&self, claim: &NoticeClaim) -> Result<bool, StoreError> {
        self.inner.claim_notice(claim).await
    }

    async fn settle_notice(
        &self,
        key: &KeyId,
        notice: &str,
        outcome: NoticeOutcome,
    ) -> Result<(), StoreError> {
        self.inner.settle_notice(key, notice, outcome).await
    }

    async fn spend_credits(
        &self,
        id: &KeyId,
        cost: u64,
        now: OffsetDateTime,
    ) -> Result<Option<CreditSpend>, StoreError> {
        // Never from the cache: the inner store counts.
        self.inner.spend_credits(id, cost, now).await
    }

    async fn update_controls(
        &self,
        id: &KeyId,
        update: &ControlsUpdate,
        now: OffsetDateTime,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        // As for a revocation: a narrowed allowlist or a key newly metered
        // is in effect here at once, also when this fails or is cancelled.
        let _forget = OnDrop(|| self.cache.invalidate(id));
        self.inner.update_controls(id, update, now).await
    }

    async fn record_uses(&self, uses: &[KeyUse]) -> Result<(), StoreError> {
        self.inner.record_uses(uses).await
    }
}

/// Runs its closure when dropped: on completion and on cancellation alike.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::hash::TokenHasher;
    use crate::key::RateLimit;
    use crate::scope::ScopeSet;
    use crate::store::MemoryStore;
    use crate::testing::{FaultyStore, Op};
    use time::Duration;

    fn record(token: &str) -> KeyRecord {
        KeyRecord {
            id: KeyId::generate(),
            tenant: TenantId::parse("t").unwrap(),
            kind: "pk".into(),
            name: "n".into(),
            display_prefix: "pk_abcde".into(),
            hash: TokenHasher::sha256().hash(token),
            scopes: ScopeSet::default(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
            revocation_scheduled: false,
            rate_limit: RateLimit::default(),
            metadata: Default::default(),
            rotated_from: None,
            owner: None,
            allowed_ips: None,
            credits: None,
            budget: None,
            recent_ips: Vec::new(),
            last_user_agent: None,
        }
    }

    fn cached(capacity: usize) -> (CachedStore<FaultyStore>, FaultyStore, ManualClock) {
        let inner = FaultyStore::new(MemoryStore::new());
        let clock = ManualClock::new(OffsetDateTime::UNIX_EPOCH);
        let store = CachedStore::builder(inner.clone())
            .ttl(std::time::Duration::from_secs(30))
            .negative_ttl(std::time::Duration::from_secs(5))
            .capacity(capacity)
            .clock(clock.clone())
            .build();
        (store, inner, clock)
    }

    #[tokio::test]
    async fn hits_within_the_ttl_and_rereads_after() {
        let (store, inner, clock) = cached(10);
        let r = record("a");
        store.insert(r.clone()).await.unwrap();
        for _ in 0..3 {
            assert_eq!(store.find_by_hash(&r.hash).await.unwrap().unwrap().id, r.id);
        }
        assert_eq!(inner.calls(Op::FindByHash), 1);
        clock.advance(std::time::Duration::from_secs(30));
        store.find_by_hash(&r.hash).await.unwrap().unwrap();
        assert_eq!(inner.calls(Op::FindByHash), 2);
    }

    /// The answer without a future: a fresh entry only (found or missing),
    /// never a stale one, never the inner store.
    #[tokio::test]
    async fn answers_now_from_a_fresh_entry_only() {
        let (store, inner, clock) = cached(10);
        let (r, gone) = (record("a"), record("gone"));
        store.insert(r.clone()).await.unwrap();
        assert!(store.find_by_hash_now(&r.hash).is_none(), "not cached yet");
        store.find_by_hash(&r.hash).await.unwrap();
        store.find_by_hash(&gone.hash).await.unwrap();
        let now = store.find_by_hash_now(&r.hash).unwrap().unwrap();
        assert_eq!(now.unwrap().id, r.id);
        assert!(store
            .find_by_hash_now(&gone.hash)
            .unwrap()
            .unwrap()
            .is_none());
        assert_eq!(inner.calls(Op::FindByHash), 2);
        clock.advance(std::time::Duration::from_secs(30));
        assert!(store.find_by_hash_now(&r.hash).is_none(), "stale");
        assert!(store.find_by_hash_now(&gone.hash).is_none(), "stale");
        assert_eq!(inner.calls(Op::FindByHash), 2);
    }

    #[tokio::test]
    async fn misses_are_remembered_briefly_and_dropped_on_insert() {
        let (store, inner, clock) = cached(10);
        let r = record("b");
        assert!(store.find_by_hash(&r.hash).await.unwrap().is_none());
        assert!(store.find_by_hash(&r.hash).await.unwrap().is_none());
        assert_eq!(inner.calls(Op::FindByHash), 1);
        clock.advance(std::time::Duration::from_secs(5));
        assert!(store.find_by_hash(&r.hash).await.unwrap().is_none());
        assert_eq!(inner.calls(Op::FindByHash), 2);
        store.insert(r.clone()).await.unwrap();
        assert!(store.find_by_hash(&r.hash).await.unwrap().is_some());
    }

    /// The revoking future is dropped after the store may have applied the
    /// revocation (a client went away, a timeout fired): the entry must go
    /// all the same.
    #[tokio::test(start_paused = true)]
    async fn a_cancelled_revoke_still_invalidates() {
        let (store, inner, _) = cached(10);
        let r = record("c");
        store.insert(r.clone()).await.unwrap();
        store.find_by_hash(&r.hash).await.unwrap().unwrap();
        // The revocation lands below the cache while the cache's own call hangs.
        inner.set_fault_on(crate::testing::Op::Revoke, crate::testing::Fault::Hang);
        inner
            .get_ref()
            .revoke(&r.id, Revocation::Now)
            .await
            .unwrap();
        let revoke = store.revoke(&r.id, Revocation::Now);
        let cancelled = tokio::time::timeout(std::time::Duration::from_secs(1), revoke).await;
        assert!(cancelled.is_err(), "the hung revoke was cut off");
        let seen = store.find_by_hash(&r.hash).await.unwrap().unwrap();
        assert!(seen.revoked_at.is_some(), "the stale entry was dropped");
    }

    #[tokio::test]
    async fn revoke_and_invalidation_are_seen_at_once() {
        let (store, inner, _) = cached(10);
        let r = record("c");
        store.insert(r.clone()).await.unwrap();
        store.find_by_hash(&r.hash).await.unwrap().unwrap();
        store.revoke(&r.id, Revocation::Now).await.unwrap();
        let seen = store.find_by_hash(&r.hash).await.unwrap().unwrap();
        assert!(seen.revoked_at.is_some());

        // A revocation made behind the cache's back is seen once invalidated.
        inner
            .get_ref()
            .revoke(
                &r.id,
                Revocation::At(OffsetDateTime::UNIX_EPOCH - Duration::SECOND),
            )
            .await
            .unwrap();
        store.invalidator().invalidate(&r.id);
        let seen = store.find_by_hash(&r.hash).await.unwrap().unwrap();
        assert_eq!(
            seen.revoked_at,
            Some(OffsetDateTime::UNIX_EPOCH - Duration::SECOND)
        );
        store.invalidator().clear();
        assert_eq!(store.cached(), 0);
    }

    /// Runs a lookup of `hash` that pauses in the inner store while `during`
    /// runs; whether its result was put in the cache.
    #[cfg(any(feature = "http", feature = "postgres"))]
    async fn fills_after(
        store: &CachedStore<FaultyStore>,
        inner: &FaultyStore,
        hash: TokenHash,
        during: impl FnOnce(),
    ) -> bool {
        use crate::testing::Fault;
        inner.set_fault_on(
            Op::FindByHash,
            Fault::Delay(std::time::Duration::from_secs(1)),
        );
        let lookup = {
            let store = store.clone();
            tokio::spawn(async move { store.find_by_hash(&hash).await.unwrap() })
        };
        // The lookup takes its epoch, then waits in the inner store.
        tokio::task::yield_now().await;
        during();
        lookup.await.unwrap();
        inner.set_fault_on(Op::FindByHash, Fault::None);
        let before = inner.calls(Op::FindByHash);
        store.find_by_hash(&hash).await.unwrap();
        inner.calls(Op::FindByHash) == before
    }

    /// A lookup that raced with invalidations fills the cache only when none
    /// of them concerns what it read: other keys' revocations (a busy
    /// revocation channel) do not hold it back; its own key's, a hash's, a
    /// clear, or more invalidations than the cache remembers do.
    #[cfg(any(feature = "http", feature = "postgres"))]
    #[tokio::test(start_paused = true)]
    async fn only_invalidations_that_concern_a_lookup_hold_its_fill_back() {
        type During = Box<dyn FnOnce(&CachedStore<FaultyStore>, &KeyRecord, &KeyRecord)>;
        let cases: Vec<(&str, bool, bool, During)> = vec![
            (
                "another key",
                true,
                true,
                Box::new(|s, _, o| s.invalidate(&o.id)),
            ),
            (
                "its own key",
                true,
                false,
                Box::new(|s, r, _| s.invalidate(&r.id)),
            ),
            (
                "a hash",
                true,
                false,
                Box::new(|s, _, o| s.cache.invalidate_hash(&o.hash)),
            ),
            ("everything", true, false, Box::new(|s, _, _| s.clear())),
            (
                "64 other keys",
                true,
                true,
                Box::new(|s, _, _| (0..RECENT).for_each(|_| s.invalidate(&KeyId::generate()))),
            ),
            (
                "65 other keys",
                true,
                false,
                Box::new(|s, _, _| (0..=RECENT).for_each(|_| s.invalidate(&KeyId::generate()))),
            ),
            (
                "another key, a miss",
                false,
                true,
                Box::new(|s, _, o| s.invalidate(&o.id)),
            ),
            (
                "a hash, a miss",
                false,
                false,
                Box::new(|s, r, _| s.cache.invalidate_hash(&r.hash)),
            ),
        ];
        for (what, known, fills, during) in cases {
            let (store, inner, _) = cached(10);
            let (r, other) = (record("r"), record("other"));
            if known {
                store.insert(r.clone()).await.unwrap();
            }
            store.insert(other.clone()).await.unwrap();
            let filled = fills_after(&store, &inner, r.hash, || during(&store, &r, &other)).await;
            assert_eq!(filled, fills, "invalidating {what} during the lookup");
        }
    }

    /// Revokes `id` through `store` (the one place these tests name the
    /// revocation instant).
    async fn revoke(store: &impl KeyStore, id: &KeyId) {
        store.revoke(id, Revocation::Now).await.unwrap().unwrap();
    }

    /// Runs a lookup of `hash` that reads the inner store, then is held while
    /// `meanwhile` runs, then answers with what it read; returns its answer.
    async fn lookup_across<F: std::future::Future<Output = ()>>(
        store: &CachedStore<FaultyStore>,
        inner: &FaultyStore,
        hash: TokenHash,
        meanwhile: F,
    ) -> Option<Arc<KeyRecord>> {
        let hold = inner.hold_next_lookup();
        let mut lookup = tokio::spawn({
            let store = store.clone();
            async move { store.find_by_hash(&hash).await.unwrap() }
        });
        tokio::select! {
            () = hold.reached() => {}
            answer = &mut lookup => panic!("answered without reading the store: {answer:?}"),
        }
        meanwhile.await;
        hold.release();
        lookup.await.unwrap()
    }

    /// The revocation race, made deterministic: a lookup reads the active
    /// record, a revocation lands (through the cache, or elsewhere followed
    /// by an invalidation) before it answers. Its stale answer must not be
    /// cached: the next lookup sees the revocation.
    #[tokio::test]
    async fn a_lookup_that_raced_an_invalidation_is_not_cached() {
        type Case = fn(CachedStore<FaultyStore>, FaultyStore, KeyId) -> BoxedUnit;
        type BoxedUnit = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
        let cases: [(&str, Case); 4] = [
            ("revoke through the cache", |store, _, id| {
                Box::pin(async move { revoke(&store, &id).await })
            }),
            ("CachedStore::invalidate", |store, inner, id| {
                Box::pin(async move {
                    revoke(inner.get_ref(), &id).await;
                    store.invalidate(&id);
                })
            }),
            ("CacheInvalidator::invalidate", |store, inner, id| {
                Box::pin(async move {
                    revoke(inner.get_ref(), &id).await;
                    store.invalidator().invalidate(&id);
                })
            }),
            ("CacheInvalidator::clear", |store, inner, id| {
                Box::pin(async move {
                    revoke(inner.get_ref(), &id).await;
                    store.invalidator().clear();
                })
            }),
        ];
        for (name, case) in cases {
            let (store, inner, _) = cached(10);
            let r = record("raced");
            store.insert(r.clone()).await.unwrap();
            let seen = lookup_across(
                &store,
                &inner,
                r.hash,
                case(store.clone(), inner.clone(), r.id.clone()),
            )
            .await;
            assert!(seen.unwrap().revoked_at.is_none(), "{name}: read before");
            let after = store.find_by_hash(&r.hash).await.unwrap().unwrap();
            assert!(after.revoked_at.is_some(), "{name}: stale record cached");
            assert_eq!(inner.calls(Op::FindByHash), 2, "{name}");
        }
    }

    /// A miss that raced the insert of its hash is not remembered.
    #[tokio::test]
    async fn a_miss_that_raced_an_insert_is_not_cached() {
        let (store, inner, _) = cached(10);
        let r = record("late");
        let seen = lookup_across(&store, &inner, r.hash, async {
            store.insert(r.clone()).await.unwrap();
        })
        .await;
        assert!(seen.is_none());
        assert_eq!(store.cached(), 0);
        assert_eq!(store.find_by_hash(&r.hash).await.unwrap().unwrap().id, r.id);
    }

    /// Two invalidations during one lookup still count: the guard compares
    /// a counter that only moves forward.
    #[tokio::test]
    async fn two_invalidations_during_a_lookup_are_not_one_undone() {
        let (store, inner, _) = cached(10);
        let r = record("twice");
        store.insert(r.clone()).await.unwrap();
        let other = KeyId::generate();
        lookup_across(&store, &inner, r.hash, async {
            revoke(inner.get_ref(), &r.id).await;
            store.clear();
            store.invalidate(&other);
        })
        .await;
        assert_eq!(store.cached(), 0, "the stale record was cached");
    }

    #[tokio::test]
    async fn counts_entries_and_forwards_management_calls() {
        let (store, inner, clock) = cached(10);
        let r = record("m");
        store.insert(r.clone()).await.unwrap();
        assert_eq!(store.cached(), 0);
        store.find_by_hash(&r.hash).await.unwrap().unwrap();
        assert_eq!(store.cached(), 1);
        // `get` and `list` read the inner store, not the cache.
        assert_eq!(store.get(&r.id).await.unwrap().unwrap().id, r.id);
        assert_eq!(inner.calls(Op::Get), 1);
        assert_eq!(store.list(&r.tenant).await.unwrap().len(), 1);
        // `touch` reaches the inner store.
        let used = OffsetDateTime::UNIX_EPOCH + Duration::HOUR;
        clock.set(used);
        store.touch(&[(r.id.clone(), used)]).await.unwrap();
        assert_eq!(inner.touched_ids(), 1);
        let stored = inner.get_ref().get(&r.id).await.unwrap().unwrap();
        assert_eq!(stored.last_used_at, Some(used));
        assert!(std::ptr::eq(store.inner(), store.inner()));
        // Invalidating by id drops the entry.
        store.invalidate(&r.id);
        assert_eq!(store.cached(), 0);
    }

    #[test]
    fn debug_shows_the_settings_and_no_entry() {
        let (store, _, _) = cached(7);
        let (ttl, negative_ttl) = (
            std::time::Duration::from_secs(30),
            std::time::Duration::from_secs(5),
        );
        assert_eq!(
            format!("{store:?}"),
            format!("CachedStore {{ ttl: {ttl:?}, negative_ttl: {negative_ttl:?}, capacity: 7, cached: 0, .. }}")
        );
        let builder = CachedStore::builder(MemoryStore::new()).capacity(9);
        assert_eq!(
            format!("{builder:?}"),
            format!("CachedStoreBuilder {{ ttl: {ttl:?}, negative_ttl: {negative_ttl:?}, capacity: 9, .. }}")
        );
        assert_eq!(
            format!("{:?}", store.invalidator()),
            "CacheInvalidator { .. }"
        );
    }

    /// A zero TTL caches nothing: the entry would be stale at once and only
    /// push others out.
    #[tokio::test]
    async fn a_zero_ttl_caches_nothing() {
        let store = CachedStore::builder(MemoryStore::new())
            .negative_ttl(std::time::Duration::ZERO)
            .build();
        let hash = TokenHasher::sha256().hash("nothing");
        assert!(store.find_by_hash(&hash).await.unwrap().is_none());
        assert_eq!(store.cached(), 0);
    }

    /// Dropping a remembered miss frees its share of the room for misses.
    #[tokio::test]
    async fn dropped_misses_give_their_room_back() {
        let (store, inner, clock) = cached(8); // room for 2 misses
        let hashes: Vec<_> = (0..4)
            .map(|i| TokenHasher::sha256().hash(&format!("miss{i}")))
            .collect();
        for h in &hashes[..2] {
            store.find_by_hash(h).await.unwrap();
        }
        assert_eq!(store.cache.lock().negatives, 2);
        // An insert drops the miss for its hash; an expired miss is dropped
        // when read again.
        let mut r = record("x");
        r.hash = hashes[0];
        store.insert(r).await.unwrap();
        assert_eq!(store.cache.lock().negatives, 1);
        clock.advance(std::time::Duration::from_secs(5));
        store.find_by_hash(&hashes[1]).await.unwrap();
        assert_eq!(store.cache.lock().negatives, 1, "expired, then re-read");
        let before = inner.calls(Op::FindByHash);
        store.find_by_hash(&hashes[2]).await.unwrap();
        store.find_by_hash(&hashes[2]).await.unwrap();
        assert_eq!(inner.calls(Op::FindByHash), before + 1, "room again");
        assert_eq!(store.cache.lock().negatives, 2);
    }

    /// An entry filled again after an invalidation is the newest, not the
    /// oldest: eviction goes by when an entry was filled.
    #[tokio::test]
    async fn a_refilled_entry_counts_as_new() {
        let (store, inner, _) = cached(2);
        let [a, b, c] = ["a", "b", "c"].map(record);
        for r in [&a, &b, &c] {
            store.insert(r.clone()).await.unwrap();
        }
        store.find_by_hash(&a.hash).await.unwrap();
        store.find_by_hash(&b.hash).await.unwrap();
        store.invalidate(&a.id);
        store.find_by_hash(&a.hash).await.unwrap(); // a is newer than b now
        store.find_by_hash(&c.hash).await.unwrap(); // evicts b
        let before = inner.calls(Op::FindByHash);
        store.find_by_hash(&a.hash).await.unwrap();
        assert_eq!(inner.calls(Op::FindByHash), before, "a stayed");
        store.find_by_hash(&b.hash).await.unwrap();
        assert_eq!(inner.calls(Op::FindByHash), before + 1, "b went");
    }

    /// The eviction queue keeps stale pairs until it holds more than
    /// `2 * capacity + 16` (so a fill costs O(1) amortized), then compacts
    /// to the live entries, which stay evictable in order.
    #[tokio::test]
    async fn the_eviction_queue_compacts_lazily_and_keeps_live_entries() {
        let (store, inner, _) = cached(3);
        let records: Vec<_> = (0..3).map(|i| record(&format!("q{i}"))).collect();
        for r in &records {
            store.insert(r.clone()).await.unwrap();
        }
        let mut longest = 0;
        for _ in 0..20 {
            for r in &records {
                store.invalidate(&r.id);
                store.find_by_hash(&r.hash).await.unwrap();
                longest = longest.max(store.cache.lock().order.len());
            }
        }
        assert_eq!(longest, 2 * 3 + 16);
        // After compactions, the live entries are still evicted oldest first
        // and the size bound holds.
        let fresh: Vec<_> = (0..3).map(|i| record(&format!("f{i}"))).collect();
        for r in &fresh {
            store.insert(r.clone()).await.unwrap();
            store.find_by_hash(&r.hash).await.unwrap();
            assert!(store.cached() <= 3);
        }
        let before = inner.calls(Op::FindByHash);
        for r in &fresh {
            store.find_by_hash(&r.hash).await.unwrap();
        }
        assert_eq!(inner.calls(Op::FindByHash), before, "the newest stayed");
    }

    #[tokio::test]
    async fn size_stays_bounded_and_evicts_oldest_first() {
        let (store, inner, _) = cached(3);
        let records: Vec<_> = (0..5).map(|i| record(&format!("r{i}"))).collect();
        for r in &records {
            store.insert(r.clone()).await.unwrap();
            store.find_by_hash(&r.hash).await.unwrap().unwrap();
            assert!(store.cached() <= 3);
        }
        let before = inner.calls(Op::FindByHash);
        store.find_by_hash(&records[4].hash).await.unwrap();
        assert_eq!(inner.calls(Op::FindByHash), before, "newest is cached");
        store.find_by_hash(&records[0].hash).await.unwrap();
        assert_eq!(
            inner.calls(Op::FindByHash),
            before + 1,
            "oldest was evicted"
        );
        // Many invalidations and refills keep the order queue bounded too.
        for _ in 0..100 {
            for r in &records {
                store.invalidate(&r.id);
                store.find_by_hash(&r.hash).await.unwrap();
            }
        }
        let state = store.cache.lock();
        assert!(state.entries.len() <= 3 && state.order.len() <= 2 * 3 + 16);
    }

    #[tokio::test]
    async fn unknown_hashes_take_at_most_a_quarter_of_the_room() {
        let (store, inner, _) = cached(8);
        let known: Vec<_> = (0..6).map(|i| record(&format!("k{i}"))).collect();
        for r in &known {
            store.insert(r.clone()).await.unwrap();
            store.find_by_hash(&r.hash).await.unwrap().unwrap();
        }
        for i in 0..100 {
            let hash = TokenHasher::sha256().hash(&format!("garbage{i}"));
            assert!(store.find_by_hash(&hash).await.unwrap().is_none());
        }
        assert_eq!(store.cache.lock().negatives, 2);
        let before = inner.calls(Op::FindByHash);
        for r in &known {
            store.find_by_hash(&r.hash).await.unwrap().unwrap();
        }
        assert_eq!(
            inner.calls(Op::FindByHash),
            before,
            "known keys stayed cached"
        );
        store.clear();
        assert_eq!(store.cache.lock().negatives, 0);
    }
}
