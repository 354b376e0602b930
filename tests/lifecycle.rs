//! Key lifecycle on the memory store: expiring-soon, expired and stale
//! events from the sweeper (once each, also with two instances), failures
//! that delay events but never lose them, management events with their
//! actor, rotation reuse detection, and owners. The same scenarios run on
//! PostgreSQL in `tests/postgres_lifecycle.rs`.

mod common;

use std::sync::Arc;

use common::lifecycle as scenario;
use keyward::{KeyStore, ManualClock, MemoryStore};

/// A memory store whose immediate revocations use the scenarios' start.
fn store() -> Arc<dyn KeyStore> {
    Arc::new(MemoryStore::with_clock(ManualClock::new(common::start())))
}

#[tokio::test]
async fn expiring_soon_once_per_threshold() {
    scenario::expiring_soon_once_per_threshold(store()).await;
}

#[tokio::test]
async fn two_instances_send_each_event_once() {
    let shared = MemoryStore::new();
    scenario::two_instances_send_each_event_once(Arc::new(shared.clone()), Arc::new(shared)).await;
}

#[tokio::test]
async fn stale_keys_are_announced_and_revoked() {
    scenario::stale_keys_are_announced_and_revoked(store()).await;
}

#[tokio::test]
async fn failures_delay_events_never_lose_them() {
    scenario::failures_delay_events_never_lose_them(MemoryStore::new()).await;
}

#[tokio::test]
async fn ticks_are_bounded() {
    scenario::ticks_are_bounded(store()).await;
}

#[tokio::test]
async fn management_events_name_the_actor() {
    scenario::management_events_name_the_actor(store()).await;
}

#[tokio::test]
async fn reuse_after_grace_is_detected() {
    scenario::reuse_after_grace_is_detected(store()).await;
}

/// Through `AuthLayer` on a store that answers lookups at once (the layer's
/// path without a future): the rotated-out token is refused with 401, its
/// reuse detected and the family revoked, as `verify` does.
#[cfg(feature = "http")]
#[tokio::test]
async fn reuse_through_the_layer_is_detected() {
    use http::{Request, Response, StatusCode};
    use keyward::http::AuthLayer;
    use keyward::testing::RecordingSink;
    use keyward::{EventKind, NewKey, VerifyError};
    use tower::{service_fn, Layer, ServiceExt};

    let clock = ManualClock::new(common::start());
    let sink = RecordingSink::new();
    let keyring = scenario::keyring(store(), &clock, &sink);
    let a = keyring
        .issue(NewKey::new("pl", "org_1", "ci"))
        .await
        .unwrap();
    let b = keyring
        .rotate(a.info.id(), std::time::Duration::from_secs(1))
        .await
        .unwrap();
    clock.advance(std::time::Duration::from_secs(1));
    sink.clear();

    let ok = service_fn(|_req: Request<String>| async {
        Ok::<_, std::convert::Infallible>(Response::new(String::new()))
    });
    let service = AuthLayer::new(keyring.clone()).layer(ok);
    let req = Request::get("/")
        .header(
            "authorization",
            format!("Bearer {}", a.token.expose_secret()),
        )
        .body(String::new())
        .unwrap();
    let res = service.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let events = sink.take();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].kind,
        EventKind::ReuseDetected {
            successors: vec![b.info.id().clone()],
            family_revoked: true
        }
    );
    assert!(matches!(
        keyring.verify(b.token.expose_secret()).await,
        Err(VerifyError::Revoked)
    ));
}

#[tokio::test]
async fn owners_are_offboarded_in_one_call() {
    scenario::owners_are_offboarded_in_one_call(store()).await;
}

#[test]
fn sweeper_settings_are_checked() {
    use keyward::{ConfigError, KeyKind, Keyring, ScopeCatalog};
    use std::time::Duration;
    let keyring = Keyring::builder()
        .store(MemoryStore::new())
        .kind(KeyKind::new("pk", ScopeCatalog::builder().build().unwrap()).unwrap())
        .build()
        .unwrap();
    let day = Duration::from_secs(86_400);
    // The longest span allowed: 100 years of 366 days.
    let century = day * 366 * 100;
    let bad = [
        keyring.sweeper().expiring_within([day, Duration::ZERO]),
        keyring.sweeper().expiring_within([day, day]),
        keyring.sweeper().expiring_within((1..=9).map(|i| day * i)),
        keyring.sweeper().stale_after(Duration::ZERO),
        keyring.sweeper().revoke_stale(true),
        keyring.sweeper().max_events_per_tick(0),
        keyring.sweeper().max_events_per_tick(10_001),
        keyring.sweeper().lease(Duration::from_millis(999)),
        keyring
            .sweeper()
            .expiring_within([Duration::from_millis(1_500)]),
        keyring
            .sweeper()
            .expiring_within([Duration::from_millis(500)]),
        keyring
            .sweeper()
            .expiring_within([century + Duration::from_secs(1)]),
        keyring
            .sweeper()
            .stale_after(century + Duration::from_secs(1)),
        keyring
            .sweeper()
            .expired_lookback(century + Duration::from_secs(1)),
        keyring.sweeper().expired_lookback(Duration::MAX),
        keyring.sweeper().lease(day + Duration::from_secs(1)),
        keyring
            .sweeper()
            .expired_lookback(Duration::from_millis(999)),
        keyring.sweeper().expired_lookback(Duration::ZERO),
    ];
    for builder in bad {
        let shown = format!("{builder:?}");
        assert!(
            matches!(builder.build(), Err(ConfigError::InvalidSweeper(_))),
            "{shown}"
        );
    }
    assert!(keyring
        .sweeper()
        .expiring_within((1..=8).map(|i| day * i))
        .stale_after(day)
        .revoke_stale(true)
        .max_events_per_tick(10_000)
        .lease(Duration::from_secs(1))
        .build()
        .is_ok());
    assert!(keyring
        .sweeper()
        .expiring_within([day, century])
        .stale_after(century)
        .expired_lookback(century)
        .lease(day)
        .build()
        .is_ok());
    assert!(keyring
        .sweeper()
        .expired_lookback(Duration::from_secs(1))
        .build()
        .is_ok());
}

/// A store that answers more than it was asked: every `successors` answer
/// also names `foreign` (another tenant's key) as a successor, and every
/// page also holds it. The keyring checks rather than trusts.
struct Lying {
    inner: MemoryStore,
    foreign: std::sync::Mutex<Option<Arc<keyward::KeyRecord>>>,
}

#[keyward::async_trait]
impl KeyStore for Lying {
    async fn insert(&self, record: keyward::KeyRecord) -> Result<(), keyward::StoreError> {
        self.inner.insert(record).await
    }
    async fn find_by_hash(
        &self,
        hash: &keyward::TokenHash,
    ) -> Result<Option<Arc<keyward::KeyRecord>>, keyward::StoreError> {
        self.inner.find_by_hash(hash).await
    }
    async fn get(
        &self,
        id: &keyward::KeyId,
    ) -> Result<Option<Arc<keyward::KeyRecord>>, keyward::StoreError> {
        self.inner.get(id).await
    }
    async fn list(
        &self,
        tenant: &keyward::TenantId,
    ) -> Result<Vec<Arc<keyward::KeyRecord>>, keyward::StoreError> {
        self.inner.list(tenant).await
    }
    async fn list_page(
        &self,
        tenant: &keyward::TenantId,
        page: &keyward::store::PageRequest,
    ) -> Result<Vec<Arc<keyward::KeyRecord>>, keyward::StoreError> {
        let mut records = self.inner.list_page(tenant, page).await?;
        records.extend(self.foreign.lock().unwrap().clone());
        Ok(records)
    }
    async fn revoke(
        &self,
        id: &keyward::KeyId,
        when: keyward::Revocation,
    ) -> Result<Option<Arc<keyward::KeyRecord>>, keyward::StoreError> {
        self.inner.revoke(id, when).await
    }
    async fn touch(
        &self,
        uses: &[(keyward::KeyId, time::OffsetDateTime)],
    ) -> Result<(), keyward::StoreError> {
        self.inner.touch(uses).await
    }
    async fn successors(
        &self,
        id: &keyward::KeyId,
    ) -> Result<Vec<Arc<keyward::KeyRecord>>, keyward::StoreError> {
        let mut records = self.inner.successors(id).await?;
        if let Some(foreign) = self.foreign.lock().unwrap().clone() {
            let mut claimed = keyward::KeyRecord::clone(&foreign);
            claimed.rotated_from = Some(id.clone());
            records.push(Arc::new(claimed));
        }
        Ok(records)
    }
    async fn claim_notice(
        &self,
        claim: &keyward::store::NoticeClaim,
    ) -> Result<bool, keyward::StoreError> {
        self.inner.claim_notice(claim).await
    }
}

/// Another tenant's key, named by a lying store as a successor or as one of
/// an owner's keys, is never revoked nor reported.
#[tokio::test]
async fn another_tenants_key_named_by_the_store_is_left_alone() {
    use keyward::testing::RecordingSink;
    use keyward::{EventKind, NewKey, OwnerId, TenantId};
    let clock = ManualClock::new(common::start());
    let store = Arc::new(Lying {
        inner: MemoryStore::with_clock(clock.clone()),
        foreign: std::sync::Mutex::new(None),
    });
    let sink = RecordingSink::new();
    let keyring = scenario::keyring(store.clone(), &clock, &sink);
    let evil = keyring
        .issue(NewKey::new("pl", "org_evil", "theirs").owner("user_7"))
        .await
        .unwrap();
    *store.foreign.lock().unwrap() = Some(store.inner.get(evil.info.id()).await.unwrap().unwrap());

    let a = keyring
        .issue(NewKey::new("pl", "org_1", "ci"))
        .await
        .unwrap();
    let b = keyring
        .rotate(a.info.id(), std::time::Duration::from_secs(1))
        .await
        .unwrap();
    clock.advance(std::time::Duration::from_secs(1));
    sink.clear();
    assert!(keyring.verify(a.token.expose_secret()).await.is_err());
    let events = sink.take();
    assert_eq!(
        events[0].kind,
        EventKind::ReuseDetected {
            successors: vec![b.info.id().clone()],
            family_revoked: true
        }
    );
    keyring
        .verify(evil.token.expose_secret())
        .await
        .expect("another tenant's key survives a family revocation");

    keyring
        .issue(NewKey::new("pl", "org_1", "mine").owner("user_7"))
        .await
        .unwrap();
    let revoked = keyring
        .revoke_owner(
            &TenantId::parse("org_1").unwrap(),
            &OwnerId::parse("user_7").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(revoked.len(), 1, "the plain call revokes the owner's key");
    assert_eq!(revoked[0].tenant().as_str(), "org_1");
    keyring
        .verify(evil.token.expose_secret())
        .await
        .expect("another tenant's key survives an offboarding");
}

/// A family of exactly 64 keys (the most one reuse revokes) goes whole; a
/// 65th survives and the event says the family was not wholly revoked.
#[tokio::test]
async fn a_family_is_revoked_up_to_64_keys() {
    use keyward::testing::RecordingSink;
    use keyward::{EventKind, NewKey, ReusePolicy};
    for (length, whole) in [(64usize, true), (65, false)] {
        let clock = ManualClock::new(common::start());
        let sink = RecordingSink::new();
        let keyring = scenario::keyring(store_on(&clock), &clock, &sink);
        assert_eq!(
            keyring.kind("pl").unwrap().reuse_policy(),
            ReusePolicy::RevokeFamily
        );
        assert_eq!(
            keyring.kind("pk").unwrap().reuse_policy(),
            ReusePolicy::Report
        );
        let first = keyring
            .issue(NewKey::new("pl", "org_1", "ci"))
            .await
            .unwrap();
        let mut chain = Vec::new();
        let mut last = first.info.id().clone();
        for _ in 0..length {
            let next = keyring
                .rotate(&last, std::time::Duration::from_secs(1))
                .await
                .unwrap();
            last = next.info.id().clone();
            chain.push(next);
        }
        clock.advance(std::time::Duration::from_secs(1));
        sink.clear();
        assert!(keyring.verify(first.token.expose_secret()).await.is_err());
        let events = sink.take();
        assert!(
            matches!(&events[0].kind, EventKind::ReuseDetected { family_revoked, .. } if *family_revoked == whole),
            "{length}: {events:?}"
        );
        let alive = {
            let mut n = 0;
            for key in &chain {
                if keyring.verify(key.token.expose_secret()).await.is_ok() {
                    n += 1;
                }
            }
            n
        };
        assert_eq!(alive, length - 64, "{length}");
        // An unfinished family revocation is not held back by the hourly
        // limit: the next presentation tries (and reports) again.
        sink.clear();
        assert!(keyring.verify(first.token.expose_secret()).await.is_err());
        let again = usize::from(!whole);
        assert_eq!(sink.names().len(), again, "{length}");
    }
}

fn store_on(clock: &ManualClock) -> Arc<dyn KeyStore> {
    Arc::new(MemoryStore::with_clock(clock.clone()))
}

/// `run` ticks, then sleeps the interval on the host's timer, again and
/// again: a key that comes due between ticks is announced on a later one.
#[tokio::test]
async fn run_ticks_on_the_hosts_timer() {
    use keyward::testing::RecordingSink;
    use keyward::{Expiry, NewKey};
    use std::sync::Mutex;
    use std::time::Duration;
    let clock = ManualClock::new(common::start());
    let sink = RecordingSink::new();
    let keyring = scenario::keyring(store_on(&clock), &clock, &sink);
    let expires = common::start() + time::Duration::hours(2);
    keyring
        .issue(NewKey::new("pl", "org_1", "k").expires(Expiry::At(expires)))
        .await
        .unwrap();
    sink.clear();
    let sweeper = keyring
        .sweeper()
        .expiring_within([Duration::from_secs(3_600)])
        .build()
        .unwrap();
    let slept = Arc::new(Mutex::new(Vec::new()));
    let timer = {
        let (slept, clock) = (slept.clone(), clock.clone());
        move |d: Duration| {
            slept.lock().unwrap().push(d);
            // Each sleep moves the keyring's clock on by half an hour.
            clock.advance(Duration::from_secs(1_800));
            tokio::task::yield_now()
        }
    };
    let task = tokio::spawn(sweeper.run(Duration::from_secs(60), timer));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sink.names() != ["expiring_soon", "expired"] {
        assert!(std::time::Instant::now() < deadline, "{:?}", sink.names());
        tokio::task::yield_now().await;
    }
    task.abort();
    let slept = slept.lock().unwrap();
    assert!(slept.len() >= 4, "{slept:?}");
    assert!(slept.iter().all(|d| *d == Duration::from_secs(60)));
}
