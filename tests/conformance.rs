//! The `KeyStore` conformance suite against the in-process stores (the
//! PostgreSQL runs are in tests/postgres.rs).
#![cfg(feature = "test-util")]

use keyward::store::CachedStore;
use keyward::testing::conformance;
use keyward::MemoryStore;

/// Implements `KeyStore` for a wrapper of a `MemoryStore` (field 0): the six
/// required methods forwarded, then the methods given.
macro_rules! forwarding_store {
    ($name:ident { $($extra:tt)* }) => {
        #[keyward::async_trait]
        impl keyward::KeyStore for $name {
            async fn insert(&self, record: keyward::KeyRecord) -> Result<(), keyward::StoreError> {
                self.0.insert(record).await
            }
            async fn find_by_hash(
                &self,
                hash: &keyward::TokenHash,
            ) -> Result<Option<std::sync::Arc<keyward::KeyRecord>>, keyward::StoreError> {
                self.0.find_by_hash(hash).await
            }
            async fn get(
                &self,
                id: &keyward::KeyId,
            ) -> Result<Option<std::sync::Arc<keyward::KeyRecord>>, keyward::StoreError> {
                self.0.get(id).await
            }
            async fn list(
                &self,
                tenant: &keyward::TenantId,
            ) -> Result<Vec<std::sync::Arc<keyward::KeyRecord>>, keyward::StoreError> {
                self.0.list(tenant).await
            }
            async fn revoke(
                &self,
                id: &keyward::KeyId,
                when: keyward::Revocation,
            ) -> Result<Option<std::sync::Arc<keyward::KeyRecord>>, keyward::StoreError> {
                self.0.revoke(id, when).await
            }
            async fn touch(
                &self,
                uses: &[(keyward::KeyId, time::OffsetDateTime)],
            ) -> Result<(), keyward::StoreError> {
                self.0.touch(uses).await
            }
            $($extra)*
        }
    };
}

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

/// A host store written before `list_page` existed: the provided
/// implementation (over `list`) conforms.
#[tokio::test]
async fn a_store_without_its_own_list_page_conforms() {
    use std::sync::Arc;

    use keyward::store::{LifecycleQuery, NoticeClaim, NoticeOutcome};
    use keyward::usage::{ControlsUpdate, CreditSpend, KeyUse};
    use keyward::{KeyId, KeyRecord, StoreError};

    #[derive(Default)]
    struct Legacy(MemoryStore);

    forwarding_store!(Legacy {
        async fn find_keys(
            &self,
            query: &LifecycleQuery,
        ) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
            self.0.find_keys(query).await
        }
        async fn successors(&self, id: &KeyId) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
            self.0.successors(id).await
        }
        async fn claim_notice(&self, claim: &NoticeClaim) -> Result<bool, StoreError> {
            self.0.claim_notice(claim).await
        }
        async fn settle_notice(
            &self,
            key: &KeyId,
            notice: &str,
            outcome: NoticeOutcome,
        ) -> Result<(), StoreError> {
            self.0.settle_notice(key, notice, outcome).await
        }
        async fn spend_credits(
            &self,
            id: &KeyId,
            cost: u64,
            now: time::OffsetDateTime,
        ) -> Result<Option<CreditSpend>, StoreError> {
            self.0.spend_credits(id, cost, now).await
        }
        async fn update_controls(
            &self,
            id: &KeyId,
            update: &ControlsUpdate,
            now: time::OffsetDateTime,
        ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
            self.0.update_controls(id, update, now).await
        }
        async fn record_uses(&self, uses: &[KeyUse]) -> Result<(), StoreError> {
            self.0.record_uses(uses).await
        }
    });

    conformance::run(&Legacy::default()).await;
}

/// A host store written before the lifecycle methods existed still
/// verifies, refuses revoked keys with 401-class errors (never a store
/// error) and manages keys; the sweeper says what is missing.
#[tokio::test]
async fn a_store_without_lifecycle_methods_still_verifies() {
    use keyward::{KeyKind, Keyring, NewKey, ScopeCatalog, StoreError, VerifyError};

    #[derive(Default)]
    struct Old(MemoryStore);

    forwarding_store!(Old {});

    let keyring = Keyring::builder()
        .store(Old::default())
        .kind(KeyKind::new("pk", ScopeCatalog::builder().build().unwrap()).unwrap())
        .build()
        .unwrap();
    let old = keyring.issue(NewKey::new("pk", "t", "old")).await.unwrap();
    keyring
        .rotate(old.info.id(), std::time::Duration::ZERO)
        .await
        .unwrap();
    let refused = keyring.verify(old.token.expose_secret()).await.unwrap_err();
    assert!(matches!(refused, VerifyError::Revoked), "{refused:?}");
    let err = keyring.sweeper().build().unwrap().tick().await.unwrap_err();
    assert!(
        matches!(err, StoreError::Unsupported("find_keys")),
        "{err:?}"
    );
}
