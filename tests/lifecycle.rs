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
    let bad = [
        keyring.sweeper().expiring_within([day, Duration::ZERO]),
        keyring.sweeper().expiring_within([day, day]),
        keyring.sweeper().expiring_within((1..=9).map(|i| day * i)),
        keyring.sweeper().stale_after(Duration::ZERO),
        keyring.sweeper().revoke_stale(true),
        keyring.sweeper().max_events_per_tick(0),
        keyring.sweeper().max_events_per_tick(10_001),
        keyring.sweeper().lease(Duration::from_millis(999)),
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
}
