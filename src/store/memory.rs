//! The embedded default store: a map in memory behind one lock.

// hashbrown's seeded foldhash rather than SipHash: only issued keys are ever
// inserted, so a presented token cannot choose what the maps hold, and the
// lookup is on the verify hot path.
use hashbrown::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{
    KeyStore, LifecycleQuery, NoticeClaim, NoticeOutcome, NoticeState, PageRequest, Revocation,
};
use crate::clock::{Clock, SystemClock};
use crate::error::StoreError;
use crate::hash::TokenHash;
use crate::key::{KeyId, KeyRecord, TenantId};
use crate::usage::{ControlsUpdate, CreditSpend, KeyUse};

/// Keys in process memory: for tests, single-instance services and as the
/// default. Records are shared (`Arc`) and replaced on change, so a lookup
/// copies nothing. Clones share the same map.
///
/// An immediate revocation ([`Revocation::Now`]) is stamped with the store's
/// clock: the system clock, or the one given to [`with_clock`](Self::with_clock).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use keyward::{KeyStore, MemoryStore, TokenHasher};
///
/// let store = MemoryStore::new();
/// let hash = TokenHasher::sha256().hash("pk_unknown");
/// assert!(store.find_by_hash(&hash).await.unwrap().is_none());
/// assert_eq!(store.len(), 0);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<RwLock<Maps>>,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_clock(SystemClock)
    }
}

#[derive(Debug, Default)]
struct Maps {
    by_hash: HashMap<TokenHash, Arc<KeyRecord>>,
    hash_of: HashMap<KeyId, TokenHash>,
    by_tenant: HashMap<TenantId, Vec<KeyId>>,
    /// Lifecycle notices by key id, then name.
    notices: HashMap<KeyId, HashMap<String, NoticeState>>,
}

impl Maps {
    fn replace(
        &mut self,
        id: &KeyId,
        change: impl FnOnce(&mut KeyRecord),
    ) -> Option<Arc<KeyRecord>> {
        let hash = self.hash_of.get(id)?;
        let slot = self.by_hash.get_mut(hash)?;
        let mut record = KeyRecord::clone(slot);
        change(&mut record);
        *slot = Arc::new(record);
        Some(Arc::clone(slot))
    }
}

impl MemoryStore {
    /// An empty store on the system clock.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that stamps immediate revocations with `clock` (for
    /// tests: share the keyring's `ManualClock`).
    pub fn with_clock(clock: impl Clock) -> Self {
        MemoryStore {
            inner: Arc::default(),
            clock: Arc::new(clock),
        }
    }

    /// How many keys it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.read().by_hash.len()
    }

    /// Whether it holds none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // A panic while the lock is held cannot leave the maps half-updated (each
    // change is one insert or one replace), so a poisoned lock is still sound.
    fn read(&self) -> RwLockReadGuard<'_, Maps> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Maps> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        let mut maps = self.write();
        if maps.hash_of.contains_key(&record.id) || maps.by_hash.contains_key(&record.hash) {
            return Err(StoreError::Conflict);
        }
        maps.hash_of.insert(record.id.clone(), record.hash);
        maps.by_tenant
            .entry(record.tenant.clone())
            .or_default()
            .push(record.id.clone());
        maps.by_hash.insert(record.hash, Arc::new(record));
        Ok(())
    }

    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        Ok(self.read().by_hash.get(hash).cloned())
    }

    fn find_by_hash_now(
        &self,
        hash: &TokenHash,
    ) -> Option<Result<Option<Arc<KeyRecord>>, StoreError>> {
        Some(Ok(self.read().by_hash.get(hash).cloned()))
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let maps = self.read();
        Ok(maps
            .hash_of
            .get(id)
            .and_then(|h| maps.by_hash.get(h))
            .cloned())
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        let maps = self.read();
        let ids = maps
            .by_tenant
            .get(tenant)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut records: Vec<_> = ids
            .iter()
            .filter_map(|id| maps.hash_of.get(id).and_then(|h| maps.by_hash.get(h)))
            .cloned()
            .collect();
        // Oldest first even when inserted out of order; ties keep insertion
        // order (the sort is stable).
        records.sort_by_key(|r| r.created_at);
        Ok(records)
    }

    async fn list_page(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        // Filters before cloning: only the page's records leave the lock.
        let maps = self.read();
        let mut records: Vec<_> = maps
            .by_tenant
            .get(tenant)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|id| maps.hash_of.get(id).and_then(|h| maps.by_hash.get(h)))
            .filter(|r| page.matches(r))
            .cloned()
            .collect();
        drop(maps);
        PageRequest::sort(&mut records);
        records.truncate(page.limit);
        Ok(records)
    }

    async fn revoke(
        &self,
        id: &KeyId,
        when: Revocation,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let (at, scheduled) = match when {
            Revocation::Now => (self.clock.now(), false),
            Revocation::At(at) => (at, true),
        };
        Ok(self.write().replace(id, |r| {
            // Scheduled only while every revocation so far was.
            r.revocation_scheduled =
                scheduled && (r.revoked_at.is_none() || r.revocation_scheduled);
            r.revoked_at = Some(r.revoked_at.map_or(at, |old| old.min(at)));
        }))
    }

    async fn touch(&self, uses: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        let mut maps = self.write();
        for (id, at) in uses {
            maps.replace(id, |r| {
                r.last_used_at = Some(r.last_used_at.map_or(*at, |old| old.max(*at)));
            });
        }
        Ok(())
    }

    async fn record_uses(&self, uses: &[KeyUse]) -> Result<(), StoreError> {
        let mut maps = self.write();
        for key_use in uses {
            maps.replace(&key_use.id, |r| key_use.apply(r));
        }
        Ok(())
    }

    async fn spend_credits(
        &self,
        id: &KeyId,
        cost: u64,
        now: OffsetDateTime,
    ) -> Result<Option<CreditSpend>, StoreError> {
        let mut maps = self.write();
        let Some(record) = maps.hash_of.get(id).and_then(|h| maps.by_hash.get(h)) else {
            return Ok(None);
        };
        let Some(credits) = record.credits else {
            return Ok(Some(CreditSpend::Unmetered));
        };
        let (spent, next) = credits.spend(cost, now);
        if let Some(next) = next {
            maps.replace(id, |r| r.credits = Some(next));
        }
        Ok(Some(spent))
    }

    async fn update_controls(
        &self,
        id: &KeyId,
        update: &ControlsUpdate,
        now: OffsetDateTime,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        Ok(self.write().replace(id, |r| update.apply(r, now)))
    }

    async fn find_keys(&self, query: &LifecycleQuery) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        let maps = self.read();
        let mut records: Vec<_> = maps
            .by_hash
            .values()
            .filter(|r| query.matches(r))
            .filter(|r| {
                query.unnoticed.as_ref().is_none_or(|name| {
                    !maps
                        .notices
                        .get(&r.id)
                        .and_then(|n| n.get(name))
                        .is_some_and(|n| n.blocks(query.now, query.renew_after(r)))
                })
            })
            .cloned()
            .collect();
        drop(maps);
        query.sort(&mut records);
        records.truncate(query.limit);
        Ok(records)
    }

    async fn successors(&self, id: &KeyId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        let maps = self.read();
        let mut records: Vec<_> = maps
            .by_hash
            .values()
            .filter(|r| r.rotated_from.as_ref() == Some(id))
            .cloned()
            .collect();
        records.sort_by(|a, b| (a.created_at, a.id.as_str()).cmp(&(b.created_at, b.id.as_str())));
        Ok(records)
    }

    async fn claim_notice(&self, claim: &NoticeClaim) -> Result<bool, StoreError> {
        let mut maps = self.write();
        if !maps.hash_of.contains_key(&claim.key) {
            return Ok(false);
        }
        let notices = maps.notices.entry(claim.key.clone()).or_default();
        if !claim.granted_over(notices.get(&claim.notice)) {
            return Ok(false);
        }
        notices.insert(
            claim.notice.clone(),
            NoticeState::claimed(claim.lease_until),
        );
        Ok(true)
    }

    async fn settle_notice(
        &self,
        key: &KeyId,
        notice: &str,
        outcome: NoticeOutcome,
    ) -> Result<(), StoreError> {
        let mut maps = self.write();
        if !maps.hash_of.contains_key(key) {
            return Ok(());
        }
        let notices = maps.notices.entry(key.clone()).or_default();
        match outcome {
            NoticeOutcome::Delivered(at) => {
                notices.insert(notice.to_owned(), NoticeState::delivered(at));
            }
            NoticeOutcome::Released(lease_until) => {
                if notices
                    .get(notice)
                    .is_some_and(|n| n.delivered_at.is_none() && n.lease_until == Some(lease_until))
                {
                    notices.remove(notice);
                }
            }
        }
        Ok(())
    }
}
