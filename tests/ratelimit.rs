//! The rate limiter through the public API, on a manual clock: exact
//! admission counts, refill, concurrency, and equivalence with the pure GCRA.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keyward::ratelimit::{MemoryRateLimiter, Quota, RateLimiter};
use keyward::{Clock, ManualClock, RateLimit};
use proptest::prelude::*;
use time::OffsetDateTime;

fn start() -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000)
}

fn limiter(clock: &ManualClock) -> Arc<dyn RateLimiter> {
    Arc::new(MemoryRateLimiter::builder().clock(clock.clone()).build())
}

#[tokio::test]
async fn default_key_limit_admits_one_hundred_then_says_retry_in_one_second() {
    let clock = ManualClock::new(start());
    let limiter = limiter(&clock);
    let quota = Quota::from_rate_limit(RateLimit::default()).unwrap();
    for i in 0..100u32 {
        let decision = limiter.check("key:key_a", quota).await.unwrap();
        assert!(decision.allowed, "request {i}");
        assert_eq!(decision.remaining, 99 - i);
    }
    let denied = limiter.check("key:key_a", quota).await.unwrap();
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after, Some(Duration::from_millis(600)));
    assert_eq!(denied.retry_after_value().as_deref(), Some("1"));
    assert_eq!(denied.policy_value(), "\"default\";q=100;w=60");
    assert_eq!(denied.value(), "\"default\";r=0;t=60");
    // Another key is not affected.
    assert_eq!(
        limiter.check("key:key_b", quota).await.unwrap().remaining,
        99
    );
}

#[tokio::test]
async fn refills_one_request_per_interval_and_a_full_burst_after_idle() {
    let clock = ManualClock::new(start());
    let limiter = limiter(&clock);
    let quota = Quota::per_minute(100).unwrap();
    for _ in 0..100 {
        let _ = limiter.check("k", quota).await.unwrap();
    }
    clock.advance(std::time::Duration::from_millis(599));
    let early = limiter.check("k", quota).await.unwrap();
    assert_eq!(early.retry_after, Some(Duration::from_millis(1)));
    clock.advance(std::time::Duration::from_millis(1));
    assert!(limiter.check("k", quota).await.unwrap().allowed);
    assert!(!limiter.check("k", quota).await.unwrap().allowed);
    // Half a window later: half a burst.
    clock.advance(std::time::Duration::from_secs(30));
    let mut admitted = 0;
    // Bounded: a limiter that admits everything fails here, not hangs.
    while admitted <= 100 && limiter.check("k", quota).await.unwrap().allowed {
        admitted += 1;
    }
    assert_eq!(admitted, 50);
    // A full window later: a full burst, never more.
    clock.advance(std::time::Duration::from_secs(3600));
    let mut admitted = 0;
    // Bounded: a limiter that admits everything fails here, not hangs.
    while admitted <= 100 && limiter.check("k", quota).await.unwrap().allowed {
        admitted += 1;
    }
    assert_eq!(admitted, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tasks_on_one_key_admit_exactly_the_limit() {
    let clock = ManualClock::new(start());
    let limiter = limiter(&clock);
    let quota = Quota::per_minute(250).unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let mut admitted = 0u32;
                for _ in 0..100 {
                    if limiter.check("key:hot", quota).await.unwrap().allowed {
                        admitted += 1;
                    }
                    tokio::task::yield_now().await;
                }
                admitted
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    // 1,600 attempts on a frozen clock: exactly one burst.
    assert_eq!(total, 250);
}

#[derive(Debug, Clone)]
enum Op {
    Check { key: u8, quota: u8 },
    Advance(u32),
    Sweep,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            6 => (0u8..4, 0u8..3).prop_map(|(key, quota)| Op::Check { key, quota }),
            3 => (0u32..2_000).prop_map(Op::Advance),
            1 => Just(Op::Sweep),
        ],
        1..300,
    )
}

proptest! {
    /// The limiter answers exactly as the pure GCRA on one TAT per key, with
    /// sweeps in between: dropping idle keys loses nothing.
    #[test]
    fn limiter_is_the_pure_gcra_per_key(ops in ops()) {
        let quotas = [
            Quota::per_second(3).unwrap(),
            Quota::new(7, Duration::from_millis(1_500)).unwrap(),
            Quota::per_minute(100).unwrap(),
        ];
        let clock = ManualClock::new(start());
        let limiter = MemoryRateLimiter::builder().clock(clock.clone()).shards(2).build();
        let mut model: HashMap<u8, i64> = HashMap::new();
        for op in ops {
            match op {
                Op::Check { key, quota } => {
                    let quota = quotas[usize::from(quota)];
                    let got = limiter.check_sync(&format!("k{key}"), quota).unwrap();
                    let (want, tat) = quota.step(model.get(&key).copied(), clock.now());
                    model.insert(key, tat);
                    prop_assert_eq!(got, want);
                }
                Op::Advance(ms) => clock.advance(std::time::Duration::from_millis(u64::from(ms))),
                Op::Sweep => {
                    limiter.sweep();
                }
            }
        }
    }
}
