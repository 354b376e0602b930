//! Background last-used writes (`KeyringBuilder::spawn_last_used_writes`):
//! verification never waits for the write, and a write that never runs puts
//! its batch back.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use common::start;
use keyward::{KeyId, KeyKind, KeyStore, Keyring, ManualClock, MemoryStore, NewKey};
use time::Duration;

type Spawned = Arc<Mutex<Vec<Pin<Box<dyn Future<Output = ()> + Send>>>>>;

thread_local! {
    /// The store under the current test's keyring: these tests check what
    /// was written, not what `Keyring::get` folds in.
    static STORE: std::cell::RefCell<Option<Arc<MemoryStore>>> = const { std::cell::RefCell::new(None) };
}

/// A keyring whose spawner only collects the writes, so the test decides
/// whether and when they run.
fn keyring() -> (Keyring, ManualClock, Spawned) {
    let clock = ManualClock::new(start());
    let spawned: Spawned = Arc::default();
    let sink = spawned.clone();
    let store = Arc::new(MemoryStore::new());
    STORE.with(|s| *s.borrow_mut() = Some(store.clone()));
    let keyring = Keyring::builder()
        .shared_store(store)
        .kind(KeyKind::new("pk", common::player_os()).unwrap())
        .clock(clock.clone())
        .last_used_interval(std::time::Duration::from_secs(60))
        .spawn_last_used_writes(move |write| sink.lock().unwrap().push(write))
        .build()
        .unwrap();
    (keyring, clock, spawned)
}

/// Issues a key and uses it twice, one interval apart, so a batch is due and
/// handed to the spawner; returns the key's id and token.
async fn key_with_a_batch_out(
    keyring: &Keyring,
    clock: &ManualClock,
    name: &str,
) -> (KeyId, String) {
    let issued = keyring.issue(NewKey::new("pk", "p", name)).await.unwrap();
    let token = issued.token.expose_secret().to_owned();
    keyring.verify(&token).await.unwrap();
    clock.advance(std::time::Duration::from_secs(60));
    keyring.verify(&token).await.unwrap();
    (issued.info.id().clone(), token)
}

/// The last use as written to the store.
async fn last_used(_keyring: &Keyring, id: &KeyId) -> Option<time::OffsetDateTime> {
    let store = STORE
        .with(|s| s.borrow().clone())
        .expect("a keyring was built");
    store.get(id).await.unwrap().unwrap().last_used_at
}

#[tokio::test]
async fn the_write_is_handed_off_and_lands_when_run() {
    let (keyring, clock, spawned) = keyring();
    // Due now: verify returned at once, the write waits in the spawner.
    let (id, token) = key_with_a_batch_out(&keyring, &clock, "n").await;
    assert_eq!(spawned.lock().unwrap().len(), 1);
    assert_eq!(last_used(&keyring, &id).await, None);
    // Only one write is out at a time.
    clock.advance(std::time::Duration::from_secs(60));
    keyring.verify(&token).await.unwrap();
    assert_eq!(spawned.lock().unwrap().len(), 1);

    let write = spawned.lock().unwrap().pop().unwrap();
    write.await;
    assert_eq!(
        last_used(&keyring, &id).await,
        Some(start() + Duration::seconds(60))
    );
}

#[tokio::test]
async fn a_write_dropped_before_it_ran_is_retried() {
    let (keyring, clock, spawned) = keyring();
    let (id, _) = key_with_a_batch_out(&keyring, &clock, "n").await;
    assert_eq!(keyring.pending_last_used(), 0, "taken by the spawned write");
    // The runtime shut down before the write ran: the batch comes back.
    spawned.lock().unwrap().clear();
    assert_eq!(keyring.pending_last_used(), 1);
    assert_eq!(keyring.flush_last_used().await.unwrap(), 1);
    assert_eq!(
        last_used(&keyring, &id).await,
        Some(start() + Duration::seconds(60))
    );
}

#[tokio::test]
async fn a_shutdown_flush_does_not_skip_uses_while_a_write_is_out() {
    let (keyring, clock, spawned) = keyring();
    let (a, _) = key_with_a_batch_out(&keyring, &clock, "a").await;
    let b = keyring.issue(NewKey::new("pk", "p", "b")).await.unwrap();
    keyring.verify(b.token.expose_secret()).await.unwrap(); // recorded after a's batch went out
    assert_eq!(spawned.lock().unwrap().len(), 1);
    assert_eq!(keyring.flush_last_used().await.unwrap(), 1, "b is written");
    let write = spawned.lock().unwrap().pop().unwrap();
    write.await;
    for id in [&a, b.info.id()] {
        assert_eq!(
            last_used(&keyring, id).await,
            Some(start() + Duration::seconds(60))
        );
    }
}

// ---- Fresh last use: this process sees a use at once; the timer writes it
// for the others within the interval.

mod timed {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration as StdDuration;

    use keyward::store::Revocation;
    use keyward::{
        async_trait, Clock, ConfigError, KeyId, KeyInfo, KeyKind, KeyRecord, KeyStore, Keyring,
        MemoryStore, NewKey, StoreError, TenantId, TokenHash,
    };
    use time::OffsetDateTime;
    use tokio::time::{sleep, Instant};

    use super::common;

    const INTERVAL: StdDuration = StdDuration::from_secs(60);

    /// The keyring's clock follows tokio's, so a paused runtime moves both.
    #[derive(Debug)]
    struct TokioClock {
        origin: Instant,
    }

    impl Clock for TokioClock {
        fn now(&self) -> OffsetDateTime {
            common::start() + self.origin.elapsed()
        }
    }

    /// A memory store whose `touch` takes `delay` on tokio's timer (or
    /// fails, when told), counting the writes under way at once.
    #[derive(Debug, Default)]
    struct SlowTouch {
        inner: MemoryStore,
        delay: StdDuration,
        fail: AtomicBool,
        /// The next write never returns.
        hang_once: AtomicBool,
        writing: AtomicUsize,
        most_at_once: AtomicUsize,
        writes: AtomicUsize,
    }

    #[async_trait]
    impl KeyStore for SlowTouch {
        async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
            self.inner.insert(record).await
        }
        async fn find_by_hash(
            &self,
            hash: &TokenHash,
        ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
            self.inner.find_by_hash(hash).await
        }
        async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
            self.inner.get(id).await
        }
        async fn list(&self, tenant: &TenantId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
            self.inner.list(tenant).await
        }
        async fn revoke(
            &self,
            id: &KeyId,
            when: Revocation,
        ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
            self.inner.revoke(id, when).await
        }
        async fn touch(&self, uses: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
            if self.hang_once.swap(false, Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let now = self.writing.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_at_once.fetch_max(now, Ordering::SeqCst);
            sleep(self.delay).await;
            self.writing.fetch_sub(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::unavailable("touch refused"));
            }
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.inner.touch(uses).await
        }
    }

    struct Setup {
        keyring: Keyring,
        /// Another process's view of the same store: it folds in nothing.
        dashboard: Keyring,
        store: Arc<SlowTouch>,
        spawned: Arc<AtomicUsize>,
    }

    fn kind() -> KeyKind {
        KeyKind::new("pk", common::player_os()).unwrap()
    }

    /// A keyring on tokio's (paused) clock whose background writes run on
    /// tokio with the timer; `delay`: how long each store write takes.
    fn setup(delay: StdDuration) -> Setup {
        let store = Arc::new(SlowTouch {
            delay,
            ..SlowTouch::default()
        });
        let spawned = Arc::new(AtomicUsize::new(0));
        let count = spawned.clone();
        let keyring = Keyring::builder()
            .shared_store(store.clone())
            .kind(kind())
            .clock(TokioClock {
                origin: Instant::now(),
            })
            .last_used_interval(INTERVAL)
            .spawn_last_used_writes(move |write| {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(write);
            })
            .last_used_timer(tokio::time::sleep)
            .build()
            .unwrap();
        let dashboard = Keyring::builder()
            .shared_store(store.clone())
            .kind(kind())
            .build()
            .unwrap();
        Setup {
            keyring,
            dashboard,
            store,
            spawned,
        }
    }

    async fn used(keyring: &Keyring, id: &KeyId) -> Option<OffsetDateTime> {
        keyring.get(id).await.unwrap().last_used_at()
    }

    async fn listed(keyring: &Keyring) -> Option<OffsetDateTime> {
        let tenant = TenantId::parse("p").unwrap();
        let keys: Vec<KeyInfo> = keyring.list(&tenant).await.unwrap();
        keys[0].last_used_at()
    }

    fn at(ms: u64) -> OffsetDateTime {
        common::start() + StdDuration::from_millis(ms)
    }

    #[tokio::test(start_paused = true)]
    async fn a_use_is_seen_pending_in_flight_and_written() {
        let s = setup(StdDuration::from_secs(5));
        let issued = s.keyring.issue(NewKey::new("pk", "p", "n")).await.unwrap();
        let id = issued.info.id().clone();
        s.keyring
            .verify(issued.token.expose_secret())
            .await
            .unwrap();
        // The same instant: pending, seen here, not yet by another process.
        assert_eq!(used(&s.keyring, &id).await, Some(at(0)));
        assert_eq!(listed(&s.keyring).await, Some(at(0)));
        assert_eq!(used(&s.dashboard, &id).await, None);

        // The timer takes the batch at the interval; the write takes 5 s.
        sleep(INTERVAL + StdDuration::from_secs(1)).await;
        assert_eq!(s.keyring.pending_last_used(), 0, "taken by the timer");
        assert_eq!(s.store.writing.load(Ordering::SeqCst), 1, "under way");
        assert_eq!(used(&s.keyring, &id).await, Some(at(0)), "in flight");
        assert_eq!(listed(&s.keyring).await, Some(at(0)), "in flight");
        assert_eq!(used(&s.dashboard, &id).await, None);

        sleep(StdDuration::from_secs(5)).await;
        assert_eq!(s.store.writes.load(Ordering::SeqCst), 1);
        assert_eq!(used(&s.keyring, &id).await, Some(at(0)), "written");
        assert_eq!(used(&s.dashboard, &id).await, Some(at(0)));
    }

    /// A write that hangs is given up after four intervals (its batch goes
    /// back) and the next one lands: one hung store call does not stop
    /// last-used writes for good.
    #[tokio::test(start_paused = true)]
    async fn a_hung_write_is_given_up_and_the_next_one_lands() {
        let s = setup(StdDuration::ZERO);
        s.store.hang_once.store(true, Ordering::SeqCst);
        let issued = s.keyring.issue(NewKey::new("pk", "p", "n")).await.unwrap();
        s.keyring
            .verify(issued.token.expose_secret())
            .await
            .unwrap();
        sleep(INTERVAL + StdDuration::from_secs(1)).await;
        assert_eq!(s.keyring.pending_last_used(), 0, "taken, hanging");
        assert_eq!(listed(&s.dashboard).await, None);
        // Not yet given up three intervals on.
        sleep(INTERVAL * 3).await;
        assert_eq!(s.keyring.pending_last_used(), 0);
        // Four intervals on, the hung write is dropped and its batch is back;
        // the interval after that, it is written.
        sleep(INTERVAL).await;
        assert_eq!(s.keyring.pending_last_used(), 1, "given back");
        sleep(INTERVAL).await;
        assert_eq!(s.store.writes.load(Ordering::SeqCst), 1);
        assert_eq!(listed(&s.dashboard).await, Some(at(0)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_key_is_written_by_the_timer_at_the_interval() {
        let s = setup(StdDuration::ZERO);
        let issued = s.keyring.issue(NewKey::new("pk", "p", "n")).await.unwrap();
        sleep(StdDuration::from_secs(7)).await;
        s.keyring
            .verify(issued.token.expose_secret())
            .await
            .unwrap();
        // No further request: only the timer can write it.
        sleep(INTERVAL - StdDuration::from_millis(1)).await;
        assert_eq!(listed(&s.dashboard).await, None, "not before the interval");
        sleep(StdDuration::from_millis(2)).await;
        assert_eq!(listed(&s.dashboard).await, Some(at(7_000)));
        assert_eq!(s.spawned.load(Ordering::SeqCst), 1);
        // The next wake-up finds nothing pending and ends the task; a later
        // use (more than an interval after the last batch) is written at once.
        sleep(INTERVAL * 3).await;
        s.keyring
            .verify(issued.token.expose_secret())
            .await
            .unwrap();
        tokio::task::yield_now().await;
        let later = at(7_000) + INTERVAL * 4 + StdDuration::from_millis(1);
        assert_eq!(listed(&s.dashboard).await, Some(later));
        assert_eq!(
            s.spawned.load(Ordering::SeqCst),
            2,
            "one timer per busy spell"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_key_arms_one_timer_and_writes_one_batch_at_a_time() {
        // Each write takes longer than the interval.
        let s = setup(INTERVAL + StdDuration::from_secs(30));
        let issued = s.keyring.issue(NewKey::new("pk", "p", "n")).await.unwrap();
        for _ in 0..59 {
            s.keyring
                .verify(issued.token.expose_secret())
                .await
                .unwrap();
            sleep(StdDuration::from_secs(10)).await;
        }
        assert_eq!(s.spawned.load(Ordering::SeqCst), 1, "not one per request");
        assert_eq!(s.store.most_at_once.load(Ordering::SeqCst), 1);
        // Uses until 580 s: batches taken at 60, 210, 360 and 510 s (each
        // write takes 90 s, then the timer sleeps 60 s); at 590 s three are
        // written and the fourth is under way.
        assert_eq!(s.store.writes.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_timer_write_is_retried_next_interval() {
        let s = setup(StdDuration::ZERO);
        s.store.fail.store(true, Ordering::SeqCst);
        let issued = s.keyring.issue(NewKey::new("pk", "p", "n")).await.unwrap();
        s.keyring
            .verify(issued.token.expose_secret())
            .await
            .unwrap();
        sleep(INTERVAL + StdDuration::from_secs(1)).await;
        assert_eq!(listed(&s.dashboard).await, None);
        assert_eq!(
            listed(&s.keyring).await,
            Some(at(0)),
            "put back, still seen"
        );
        s.store.fail.store(false, Ordering::SeqCst);
        sleep(INTERVAL).await;
        assert_eq!(listed(&s.dashboard).await, Some(at(0)));
        assert_eq!(s.spawned.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_flush_writes_uses_recorded_while_the_timer_writes() {
        let s = setup(StdDuration::from_secs(10));
        let a = s.keyring.issue(NewKey::new("pk", "p", "a")).await.unwrap();
        let b = s.keyring.issue(NewKey::new("pk", "p", "b")).await.unwrap();
        s.keyring.verify(a.token.expose_secret()).await.unwrap();
        sleep(INTERVAL + StdDuration::from_secs(1)).await;
        assert_eq!(
            s.store.writing.load(Ordering::SeqCst),
            1,
            "a's batch is out"
        );
        s.keyring.verify(b.token.expose_secret()).await.unwrap();
        assert_eq!(s.keyring.flush_last_used().await.unwrap(), 1, "b");
        assert_eq!(used(&s.dashboard, b.info.id()).await, Some(at(61_000)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_ends_with_the_keyring() {
        let s = setup(StdDuration::ZERO);
        let issued = s.keyring.issue(NewKey::new("pk", "p", "n")).await.unwrap();
        s.keyring
            .verify(issued.token.expose_secret())
            .await
            .unwrap();
        assert_eq!(s.spawned.load(Ordering::SeqCst), 1);
        drop(s.keyring);
        drop(s.dashboard);
        // The sleeping timer holds the keyring weakly: nothing keeps its
        // store alive but this test.
        assert_eq!(Arc::strong_count(&s.store), 1);
        sleep(INTERVAL * 2).await;
        assert_eq!(s.store.writes.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_timer_without_a_spawner_is_refused() {
        let err = Keyring::builder()
            .store(MemoryStore::new())
            .kind(kind())
            .last_used_timer(tokio::time::sleep)
            .build()
            .unwrap_err();
        assert_eq!(err, ConfigError::LastUsedTimerWithoutSpawner);
    }
}

/// A timer future the host dropped (its runtime shut down) lets the next use
/// arm another; until then uses do not spawn.
#[tokio::test]
async fn a_dropped_timer_is_armed_again() {
    let spawned: Spawned = Arc::default();
    let sink = spawned.clone();
    let keyring = Keyring::builder()
        .store(MemoryStore::new())
        .kind(KeyKind::new("pk", common::player_os()).unwrap())
        .spawn_last_used_writes(move |write| sink.lock().unwrap().push(write))
        .last_used_timer(tokio::time::sleep)
        .build()
        .unwrap();
    let issued = keyring.issue(NewKey::new("pk", "p", "n")).await.unwrap();
    let token = issued.token.expose_secret();
    keyring.verify(token).await.unwrap();
    keyring.verify(token).await.unwrap();
    assert_eq!(spawned.lock().unwrap().len(), 1);
    spawned.lock().unwrap().clear();
    keyring.verify(token).await.unwrap();
    assert_eq!(spawned.lock().unwrap().len(), 1, "armed again");
}

/// Without a timer, a batch handed to the spawner is in flight until it
/// runs: `get` and `list` see its uses all along.
#[tokio::test]
async fn a_batch_in_flight_is_seen_by_get_and_list() {
    let (keyring, clock, spawned) = keyring();
    let (id, _) = key_with_a_batch_out(&keyring, &clock, "n").await;
    let at = Some(start() + Duration::seconds(60));
    assert_eq!(keyring.pending_last_used(), 0);
    assert_eq!(last_used(&keyring, &id).await, None, "not written");
    assert_eq!(keyring.get(&id).await.unwrap().last_used_at(), at);
    let tenant = keyward::TenantId::parse("p").unwrap();
    assert_eq!(keyring.list(&tenant).await.unwrap()[0].last_used_at(), at);
    let write = spawned.lock().unwrap().pop().unwrap();
    write.await;
    assert_eq!(last_used(&keyring, &id).await, at);
    assert_eq!(keyring.get(&id).await.unwrap().last_used_at(), at);
}
