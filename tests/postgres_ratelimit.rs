//! `PgRateLimiter` against a real PostgreSQL server (`scripts/test.sh` starts
//! one; without `DATABASE_URL` these skip, under `CI=true` they fail), and
//! its failure mode without one.
#![cfg(feature = "postgres")]

mod common;

use std::time::Duration;

use common::pg;
use keyward::ratelimit::{LimitError, PgRateLimiter, Quota, RateLimiter};
use keyward::store::postgres::PgStore;
use keyward::StoreError;

/// Two limiters on separate pools (two "instances") on one fresh schema.
async fn two_instances(test: &str) -> Option<(PgRateLimiter, PgRateLimiter)> {
    let (store, schema) = pg::store(test).await?;
    let url = pg::database_url(test)?;
    let a = PgRateLimiter::new(store);
    let b = PgRateLimiter::new(pg::store_on(&url, &schema));
    // Both migrate, as two instances starting at once would.
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.unwrap();
    rb.unwrap();
    Some((a, b))
}

#[tokio::test]
async fn a_fresh_key_admits_a_burst_then_denies_with_exact_values() {
    let Some((a, b)) = two_instances("pg_limiter_burst").await else {
        return;
    };
    // T = 6 min: the clock moving during the test earns nothing back.
    let quota = Quota::per_hour(10).unwrap();
    for i in 0..10u32 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        let decision = limiter.check("key:key_burst", quota).await.unwrap();
        assert!(decision.allowed, "request {i}");
        assert_eq!(decision.remaining, 9 - i);
    }
    let denied = b.check("key:key_burst", quota).await.unwrap();
    assert!(!denied.allowed);
    assert_eq!(denied.remaining, 0);
    // About T (6 min) to wait, less the few ms the checks took.
    let wait = denied.retry_after.unwrap();
    assert!(
        wait <= Duration::from_secs(360) && wait > Duration::from_secs(350),
        "{wait:?}"
    );
    assert_eq!(denied.retry_after_value().as_deref(), Some("360"));
    assert_eq!(denied.policy_value(), r#""default";q=10;w=3600"#);
    // A denial writes nothing: the next one waits no longer.
    let again = a.check("key:key_burst", quota).await.unwrap();
    assert!(!again.allowed && again.retry_after.unwrap() <= wait);
    // Other keys are independent.
    assert!(a.check("key:key_other", quota).await.unwrap().allowed);
    assert_eq!(a.sweep().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_hammering_one_key_admit_no_more_than_the_limit() {
    let Some((a, b)) = two_instances("pg_limiter_shared").await else {
        return;
    };
    let quota = Quota::per_hour(25).unwrap();
    let mut tasks = Vec::new();
    for i in 0..120 {
        let limiter = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            limiter
                .check("key:key_shared", quota)
                .await
                .unwrap()
                .allowed
        }));
    }
    let mut admitted = 0;
    for task in tasks {
        admitted += usize::from(task.await.unwrap());
    }
    assert_eq!(admitted, 25);
}

#[tokio::test]
async fn sweep_deletes_full_keys_only() {
    let Some((a, _)) = two_instances("pg_limiter_sweep").await else {
        return;
    };
    // T = 1 us: the key is full again long before the sweep.
    let short = Quota::new(1, Duration::from_micros(1)).unwrap();
    assert!(a.check("ip:203.0.113.7", short).await.unwrap().allowed);
    assert!(
        a.check("key:key_long", Quota::per_hour(1).unwrap())
            .await
            .unwrap()
            .allowed
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(a.sweep().await.unwrap(), 1);
    assert!(
        !a.check("key:key_long", Quota::per_hour(1).unwrap())
            .await
            .unwrap()
            .allowed
    );
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable_never_a_pass() {
    // Port 1 refuses connections: no server needed.
    let store = PgStore::builder("postgres://keyward@127.0.0.1:1/keyward")
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let limiter = PgRateLimiter::new(store);
    let err = limiter
        .check("key:key_1", Quota::per_minute(5).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, LimitError::Store(StoreError::Unavailable(_))),
        "{err:?}"
    );
    assert!(matches!(
        limiter.check("", Quota::per_minute(5).unwrap()).await,
        Err(LimitError::InvalidKey)
    ));
}
