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
