//! `Keyring::verify` against a store that misbehaves: it answers with the
//! wrong row, or answers late while a revocation lands.

mod common;

use std::sync::Arc;

use common::keyring_on;
use common::race::revoke_during_a_held_lookup;
use keyward::testing::{FaultyStore, Op};
use keyward::{KeyStore, MemoryStore, NewKey, VerifyError};

async fn record_of(store: &FaultyStore, id: &keyward::KeyId) -> Arc<keyward::KeyRecord> {
    store.get_ref().get(id).await.unwrap().unwrap()
}

/// A store that answers a lookup with another key's row does not make the
/// token authenticate as that key.
#[tokio::test]
async fn a_row_for_another_hash_is_refused() {
    let store = FaultyStore::new(MemoryStore::new());
    let (keyring, _) = keyring_on(store.clone());
    let a = keyring.issue(NewKey::new("pk", "p", "a")).await.unwrap();
    let b = keyring.issue(NewKey::new("pk", "p", "b")).await.unwrap();
    store.set_lookup_answer(Some(record_of(&store, b.info.id()).await));
    assert!(matches!(
        keyring.verify(a.token.expose_secret()).await.unwrap_err(),
        VerifyError::Unknown
    ));
    assert_eq!(store.calls(Op::FindByHash), 1);
    // The row that does match still verifies.
    let key = keyring.verify(b.token.expose_secret()).await.unwrap();
    assert_eq!(key.id(), b.info.id());
}

/// A row with the token's hash but another kind is refused: a `pl` token
/// never authenticates as a `pk` key.
#[tokio::test]
async fn a_row_of_another_kind_is_refused() {
    let store = FaultyStore::new(MemoryStore::new());
    let (keyring, _) = keyring_on(store.clone());
    let issued = keyring.issue(NewKey::new("pl", "p", "labs")).await.unwrap();
    let mut doctored = (*record_of(&store, issued.info.id()).await).clone();
    doctored.kind = "pk".into();
    store.set_lookup_answer(Some(Arc::new(doctored)));
    assert!(matches!(
        keyring
            .verify(issued.token.expose_secret())
            .await
            .unwrap_err(),
        VerifyError::Unknown
    ));
    store.set_lookup_answer(None);
    assert!(keyring.verify(issued.token.expose_secret()).await.is_ok());
}

/// The revocation race through a cache, at the racy point every time (the
/// stress run in tests/keyring.rs finds it only by luck).
#[tokio::test]
async fn a_revoke_during_a_held_lookup_is_seen_by_the_next_verify() {
    revoke_during_a_held_lookup(FaultyStore::new(MemoryStore::new())).await;
}

/// A clock that steps back by a nanosecond after its first reading (an NTP
/// step), counting its readings.
#[derive(Debug)]
struct StepsBack {
    at: time::OffsetDateTime,
    reads: Arc<std::sync::atomic::AtomicUsize>,
}

impl keyward::Clock for StepsBack {
    fn now(&self) -> time::OffsetDateTime {
        match self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => self.at,
            _ => self.at - time::Duration::NANOSECOND,
        }
    }
}

/// Verification reads the clock once and judges by that instant: a key
/// whose scheduled revocation is in effect at the first reading is refused
/// even when the clock steps back at once, and a store that does not
/// answer from memory costs no extra reading.
#[tokio::test]
async fn a_verification_reads_the_clock_once() {
    let at = time::macros::datetime!(2027-01-15 08:00:00 UTC);
    for from_memory in [true, false] {
        let store = FaultyStore::new(MemoryStore::new());
        store.set_lookups_now(from_memory);
        let (issuer, _) = keyring_on(store.clone());
        let revoked = issuer.issue(NewKey::new("pk", "p", "old")).await.unwrap();
        let live = issuer.issue(NewKey::new("pk", "p", "new")).await.unwrap();
        // A rotation's grace that ends exactly at the first reading.
        store
            .revoke(revoked.info.id(), keyward::Revocation::At(at))
            .await
            .unwrap();
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let keyring = keyward::Keyring::builder()
            .store(store.clone())
            .kind(
                keyward::KeyKind::new("pk", keyward::ScopeCatalog::builder().build().unwrap())
                    .unwrap(),
            )
            .clock(StepsBack {
                at,
                reads: reads.clone(),
            })
            .build()
            .unwrap();
        let refused = keyring.verify(revoked.token.expose_secret()).await;
        assert!(
            matches!(refused, Err(VerifyError::Revoked)),
            "from memory {from_memory}: {refused:?}"
        );
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);
        keyring.verify(live.token.expose_secret()).await.unwrap();
        assert_eq!(
            reads.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "from memory {from_memory}"
        );
    }
}
