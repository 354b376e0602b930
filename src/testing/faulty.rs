//! [`FaultyStore`]: a store wrapper with injectable faults and call counters.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::hash::TokenHash;
use crate::key::{KeyId, KeyRecord, TenantId};
use crate::store::{
    KeyStore, LifecycleQuery, MemoryStore, NoticeClaim, NoticeOutcome, PageRequest, Revocation,
};
use crate::usage::{ControlsUpdate, CreditSpend, KeyUse};

/// What a [`FaultyStore`] does when an operation is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fault {
    /// Forwards the call to the inner store.
    #[default]
    None,
    /// Fails with [`StoreError::Unavailable`] without calling the inner store.
    Fail,
    /// Never completes: for testing timeouts.
    Hang,
    /// Waits this long (on tokio's timer), then forwards the call.
    #[cfg(any(feature = "http", feature = "postgres"))]
    Delay(std::time::Duration),
}

/// One [`KeyStore`] operation, to target faults and read counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// [`KeyStore::insert`].
    Insert,
    /// [`KeyStore::find_by_hash`].
    FindByHash,
    /// [`KeyStore::get`].
    Get,
    /// [`KeyStore::list`].
    List,
    /// [`KeyStore::revoke`].
    Revoke,
    /// [`KeyStore::touch`] and [`KeyStore::record_uses`] (the last-used
    /// write).
    Touch,
    /// [`KeyStore::list_page`].
    ListPage,
    /// [`KeyStore::find_keys`].
    FindKeys,
    /// [`KeyStore::successors`].
    Successors,
    /// [`KeyStore::claim_notice`].
    ClaimNotice,
    /// [`KeyStore::settle_notice`].
    SettleNotice,
    /// [`KeyStore::spend_credits`].
    SpendCredits,
    /// [`KeyStore::update_controls`].
    UpdateControls,
}

impl Op {
    const ALL: [Op; 13] = [
        Op::Insert,
        Op::FindByHash,
        Op::Get,
        Op::List,
        Op::Revoke,
        Op::Touch,
        Op::ListPage,
        Op::FindKeys,
        Op::Successors,
        Op::ClaimNotice,
        Op::SettleNotice,
        Op::SpendCredits,
        Op::UpdateControls,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Faults and counters shared by a store's clones.
#[derive(Debug, Default)]
struct State {
    faults: Mutex<[Fault; Op::ALL.len()]>,
    calls: [AtomicUsize; Op::ALL.len()],
    touched_ids: AtomicUsize,
    /// The hold for the next `find_by_hash`, if one was asked for.
    next_lookup: Mutex<Option<Arc<Gates>>>,
    /// What every `find_by_hash` answers instead of the inner store's row.
    lookup_answer: Mutex<Option<Arc<KeyRecord>>>,
    /// Whether `find_by_hash_now` forwards to the inner store.
    lookups_now: std::sync::atomic::AtomicBool,
}

/// The two points of a held lookup: it has read the inner store; it may
/// answer.
#[derive(Default)]
struct Gates {
    reached: Latch,
    released: Latch,
}

impl fmt::Debug for Gates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gates").finish_non_exhaustive()
    }
}

/// A flag one task opens and one task waits for (no runtime needed).
#[derive(Default)]
struct Latch(Mutex<(bool, Option<Waker>)>);

impl Latch {
    fn open(&self) {
        let waker = {
            let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            state.0 = true;
            state.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if state.0 {
                Poll::Ready(())
            } else {
                state.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

/// A `find_by_hash` held between reading the inner store and answering, from
/// [`FaultyStore::hold_next_lookup`]: the racy point of a read-through cache,
/// under the test's control. Dropping the hold releases the lookup too.
#[must_use = "the held lookup answers when the hold is released or dropped"]
pub struct Hold(Arc<Gates>);

impl Hold {
    /// Waits until the held lookup has read the inner store.
    pub async fn reached(&self) {
        self.0.reached.wait().await;
    }

    /// Lets the held lookup answer, with what it read before.
    pub fn release(self) {}
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.released.open();
    }
}

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hold").finish_non_exhaustive()
    }
}

/// A [`KeyStore`] wrapper that fails, hangs or stalls on demand, and counts
/// the calls it forwards: for testing that a host fails closed when its
/// store misbehaves.
///
/// Faults switch at run time, for every operation or for one ([`Op`]);
/// clones share the faults and the counters, so a test keeps a clone and
/// hands another to the keyring.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use keyward::testing::{Fault, FaultyStore, Op};
/// use keyward::{KeyKind, Keyring, MemoryStore, NewKey, ScopeCatalog, ScopeStatus, VerifyError};
///
/// let store = FaultyStore::new(MemoryStore::new());
/// let catalog = ScopeCatalog::builder()
///     .scope("read", "Read", ScopeStatus::Enforced)
///     .build()?;
/// let keyring = Keyring::builder()
///     .store(store.clone())
///     .kind(KeyKind::new("pk", catalog)?)
///     .build()?;
/// let issued = keyring.issue(NewKey::new("pk", "tenant_1", "CI")).await?;
/// let token = issued.token.expose_secret();
///
/// // Lookups fail: verification fails closed, never "unknown key".
/// store.set_fault_on(Op::FindByHash, Fault::Fail);
/// let err = keyring.verify(token).await.unwrap_err();
/// assert!(matches!(err, VerifyError::Store(e) if e.is_unavailable()));
/// assert_eq!(store.calls(Op::FindByHash), 0);
///
/// // Healthy again.
/// store.set_fault(Fault::None);
/// assert!(keyring.verify(token).await.is_ok());
/// assert_eq!(store.calls(Op::FindByHash), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct FaultyStore<S = MemoryStore> {
    inner: Arc<S>,
    state: Arc<State>,
}

impl<S> Clone for FaultyStore<S> {
    fn clone(&self) -> Self {
        FaultyStore {
            inner: self.inner.clone(),
            state: self.state.clone(),
        }
    }
}

impl<S: KeyStore> FaultyStore<S> {
    /// Wraps `inner`, with no faults set.
    pub fn new(inner: S) -> Self {
        FaultyStore {
            inner: Arc::new(inner),
            state: Arc::default(),
        }
    }

    /// Sets `fault` for every operation.
    pub fn set_fault(&self, fault: Fault) {
        *self.faults() = [fault; Op::ALL.len()];
    }

    /// Sets `fault` for `op` only.
    pub fn set_fault_on(&self, op: Op, fault: Fault) {
        self.faults()[op.index()] = fault;
    }

    /// How many `op` calls reached the inner store (failed or hung calls do
    /// not count; delayed ones do, once forwarded).
    #[must_use]
    pub fn calls(&self, op: Op) -> usize {
        self.state.calls[op.index()].load(Ordering::SeqCst)
    }

    /// How many ids the `touch` calls that reached the inner store carried.
    #[must_use]
    pub fn touched_ids(&self) -> usize {
        self.state.touched_ids.load(Ordering::SeqCst)
    }

    /// Holds the next `find_by_hash`: it reads the inner store, then waits
    /// until the returned [`Hold`] is released, then answers with what it
    /// read. For testing what lands in between (a revocation while a cache
    /// fills).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use keyward::testing::FaultyStore;
    /// use keyward::{KeyStore, MemoryStore, TokenHasher};
    ///
    /// let store = FaultyStore::new(MemoryStore::new());
    /// let hold = store.hold_next_lookup();
    /// let hash = TokenHasher::sha256().hash("pk_unknown");
    /// let lookup = tokio::spawn({
    ///     let store = store.clone();
    ///     async move { store.find_by_hash(&hash).await }
    /// });
    /// hold.reached().await; // it has read: nothing
    /// // ... change the store here ...
    /// hold.release();
    /// assert!(lookup.await.unwrap().unwrap().is_none());
    /// # });
    /// ```
    pub fn hold_next_lookup(&self) -> Hold {
        let gates = Arc::new(Gates::default());
        *self
            .state
            .next_lookup
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&gates));
        Hold(gates)
    }

    /// Whether [`KeyStore::find_by_hash_now`] forwards to the inner store
    /// (off by default: every lookup goes through `find_by_hash` and its
    /// faults). On, a lookup is answered at once, as an in-memory store's
    /// is, while no fault, hold or answer is set for `find_by_hash`; with
    /// one set it goes through `find_by_hash` as before. For testing both
    /// paths a verification can take.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use keyward::testing::{Fault, FaultyStore, Op};
    /// use keyward::{KeyStore, MemoryStore, TokenHasher};
    ///
    /// let store = FaultyStore::new(MemoryStore::new());
    /// let hash = TokenHasher::sha256().hash("pk_unknown");
    /// assert!(store.find_by_hash_now(&hash).is_none());
    /// store.set_lookups_now(true);
    /// assert!(store.find_by_hash_now(&hash).unwrap().unwrap().is_none());
    /// assert_eq!(store.calls(Op::FindByHash), 1);
    /// store.set_fault_on(Op::FindByHash, Fault::Fail);
    /// assert!(store.find_by_hash_now(&hash).is_none(), "the fault applies");
    /// # });
    /// ```
    pub fn set_lookups_now(&self, on: bool) {
        self.state.lookups_now.store(on, Ordering::SeqCst);
    }

    /// Makes every `find_by_hash` that reaches the inner store answer with
    /// `record`, whatever hash it was asked for: a store returning the wrong
    /// row. `None` restores the inner store's answers.
    pub fn set_lookup_answer(&self, record: Option<Arc<KeyRecord>>) {
        *self
            .state
            .lookup_answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = record;
    }

    /// The wrapped store.
    #[must_use]
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, [Fault; Op::ALL.len()]> {
        // The guarded value is plain data, valid even after a panic.
        self.state
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `op`'s fault; on `Ok` the caller forwards the call.
    async fn enter(&self, op: Op) -> Result<(), StoreError> {
        let fault = self.faults()[op.index()];
        match fault {
            Fault::None => {}
            Fault::Fail => return Err(StoreError::unavailable("injected fault")),
            Fault::Hang => std::future::pending::<()>().await,
            #[cfg(any(feature = "http", feature = "postgres"))]
            Fault::Delay(delay) => tokio::time::sleep(delay).await,
        }
        self.state.calls[op.index()].fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[async_trait]
impl<S: KeyStore> KeyStore for FaultyStore<S> {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.enter(Op::Insert).await?;
        self.inner.insert(record).await
    }
    fn find_by_hash_now(
        &self,
        hash: &TokenHash,
    ) -> Option<Result<Option<Arc<KeyRecord>>, StoreError>> {
        if !self.state.lookups_now.load(Ordering::SeqCst)
            || self.faults()[Op::FindByHash.index()] != Fault::None
            || held(&self.state.next_lookup)
            || held(&self.state.lookup_answer)
        {
            return None;
        }
        let found = self.inner.find_by_hash_now(hash)?;
        self.state.calls[Op::FindByHash.index()].fetch_add(1, Ordering::SeqCst);
        Some(found)
    }

    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.enter(Op::FindByHash).await?;
        let hold = self
            .state
            .next_lookup
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let answer = self
            .state
            .lookup_answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut found = self.inner.find_by_hash(hash).await;
        if let Some(record) = answer {
            found = found.map(|_| Some(record));
        }
        if let Some(gates) = hold {
            gates.reached.open();
            gates.released.wait().await;
        }
        found
    }
    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.enter(Op::Get).await?;
        self.inner.get(id).await
    }
    async fn list(&self, tenant: &TenantId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        self.enter(Op::List).await?;
        self.inner.list(tenant).await
    }
    async fn revoke(
        &self,
        id: &KeyId,
        when: Revocation,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.enter(Op::Revoke).await?;
        self.inner.revoke(id, when).await
    }
    async fn touch(&self, uses: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        self.enter(Op::Touch).await?;
        self.state
            .touched_ids
            .fetch_add(uses.len(), Ordering::SeqCst);
        self.inner.touch(uses).await
    }
    async fn list_page(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        self.enter(Op::ListPage).await?;
        self.inner.list_page(tenant, page).await
    }
    async fn find_keys(&self, query: &LifecycleQuery) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        self.enter(Op::FindKeys).await?;
        self.inner.find_keys(query).await
    }
    async fn successors(&self, id: &KeyId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        self.enter(Op::Successors).await?;
        self.inner.successors(id).await
    }
    async fn claim_notice(&self, claim: &NoticeClaim) -> Result<bool, StoreError> {
        self.enter(Op::ClaimNotice).await?;
        self.inner.claim_notice(claim).await
    }
    async fn settle_notice(
        &self,
        key: &KeyId,
        notice: &str,
        outcome: NoticeOutcome,
    ) -> Result<(), StoreError> {
        self.enter(Op::SettleNotice).await?;
        self.inner.settle_notice(key, notice, outcome).await
    }
    async fn spend_credits(
        &self,
        id: &KeyId,
        cost: u64,
        now: OffsetDateTime,
    ) -> Result<Option<CreditSpend>, StoreError> {
        self.enter(Op::SpendCredits).await?;
        self.inner.spend_credits(id, cost, now).await
    }
    async fn update_controls(
        &self,
        id: &KeyId,
        update: &ControlsUpdate,
        now: OffsetDateTime,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.enter(Op::UpdateControls).await?;
        self.inner.update_controls(id, update, now).await
    }
    async fn record_uses(&self, uses: &[KeyUse]) -> Result<(), StoreError> {
        self.enter(Op::Touch).await?;
        self.state
            .touched_ids
            .fetch_add(uses.len(), Ordering::SeqCst);
        self.inner.record_uses(uses).await
    }
}

/// Whether `slot` holds something.
fn held<T>(slot: &Mutex<Option<T>>) -> bool {
    slot.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .is_some()
}
