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
    clock.advance(Duration::seconds(60));
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
    clock.advance(Duration::seconds(60));
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
