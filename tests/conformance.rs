//! The `KeyStore` conformance suite against the in-process stores (the
//! PostgreSQL runs are in tests/postgres.rs).
#![cfg(feature = "test-util")]

use keyward::store::CachedStore;
use keyward::testing::conformance;
use keyward::MemoryStore;

#[tokio::test]
async fn memory_store_conforms() {
    conformance::run(&MemoryStore::new()).await;
}

#[tokio::test]
async fn cached_memory_store_conforms() {
    conformance::run(&CachedStore::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn a_tiny_cache_conforms_too() {
    let store = CachedStore::builder(MemoryStore::new()).capacity(1).build();
    conformance::run(&store).await;
}

#[tokio::test]
async fn a_shared_store_conforms_twice() {
    let store = std::sync::Arc::new(MemoryStore::new());
    conformance::run(&store).await;
    conformance::run(&store).await;
}
