//! Usage controls over HTTP on the memory store: IP allowlists, credits
//! (spent exactly under concurrency), shared budgets, recent IPs and user
//! agents. The same scenarios run on PostgreSQL in tests/postgres_usage.rs.

mod common;

use std::sync::Arc;

use common::usage as scenario;
use keyward::{MemoryRateLimiter, MemoryStore};

#[tokio::test]
async fn allowlists_refuse_outside_before_quota() {
    scenario::allowlists_refuse_outside_before_quota(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn credits_are_spent_refused_and_refilled() {
    scenario::credits_are_spent_refused_and_refilled(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_spend_exactly() {
    let store = Arc::new(MemoryStore::new());
    scenario::concurrent_requests_spend_exactly(store.clone(), store).await;
}

#[tokio::test]
async fn budgets_are_shared_within_a_tenant() {
    let limiter = Arc::new(MemoryRateLimiter::new());
    scenario::budgets_are_shared_within_a_tenant(Arc::new(MemoryStore::new()), limiter).await;
}

#[tokio::test]
async fn recent_ips_and_agent_are_kept() {
    scenario::recent_ips_and_agent_are_kept(Arc::new(MemoryStore::new())).await;
}

/// A rotation while the old token spends: every credit is spent once,
/// across the old token and the successor (the move takes the old key's
/// credits by atomic spends, not from a snapshot).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotation_under_load_never_makes_credits() {
    use keyward::testing::{Fault, FaultyStore, Op, RecordingSink};
    use keyward::usage::{CreditSpend, Credits};
    use keyward::{ManualClock, NewKey};

    let store = FaultyStore::new(MemoryStore::new());
    let keyring = scenario::keyring(
        Arc::new(store.clone()),
        &ManualClock::new(common::start()),
        &RecordingSink::new(),
    );
    let issued = keyring
        .issue(NewKey::new("pk", "prop_1", "metered").credits(Credits::new(1_000_000).unwrap()))
        .await
        .unwrap();
    let old = issued.token.expose_secret().to_owned();
    // The successor's insert takes a while: the old token keeps spending.
    store.set_fault_on(
        Op::Insert,
        Fault::Delay(std::time::Duration::from_millis(50)),
    );
    let spender = {
        let (keyring, old) = (keyring.clone(), old.clone());
        tokio::spawn(async move {
            let mut spent = 0u64;
            loop {
                let Ok(key) = keyring.verify(&old).await else {
                    break;
                };
                match keyring.spend_credits(&key, 1).await.unwrap() {
                    CreditSpend::Spent { .. } => spent += 1,
                    _ => break,
                }
                tokio::task::yield_now().await;
            }
            spent
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let next = keyring
        .rotate(issued.info.id(), std::time::Duration::from_secs(3_600))
        .await
        .unwrap();
    let by_old = spender.await.unwrap();
    let moved = next.info.credits().unwrap().remaining;
    assert!(
        by_old > 0 && moved > 0,
        "the old token spent during the rotation, and some were left to move"
    );
    assert_eq!(
        by_old + moved,
        1_000_000,
        "every credit once: {by_old} spent by the old token, {moved} moved"
    );
    let key = keyring.verify(next.token.expose_secret()).await.unwrap();
    assert_eq!(
        keyring.spend_credits(&key, moved).await.unwrap(),
        CreditSpend::Spent { remaining: 0 }
    );
    let old_key = keyring.verify(&old).await.unwrap();
    assert_eq!(
        keyring.spend_credits(&old_key, 1).await.unwrap(),
        CreditSpend::Exhausted { remaining: 0 }
    );
}

/// A valid key presented from outside its allowlist counts against the
/// client's failure budget: a leaked key buys no unlimited lookups. Other
/// clients are unaffected.
#[tokio::test]
async fn outside_the_allowlist_counts_as_a_failure() {
    use keyward::testing::RecordingSink;
    use keyward::usage::IpAllowlist;
    use keyward::{ManualClock, NewKey};

    let keyring = scenario::keyring(
        Arc::new(MemoryStore::new()),
        &ManualClock::new(common::start()),
        &RecordingSink::new(),
    );
    let issued = keyring
        .issue(
            NewKey::new("pk", "prop_1", "office")
                .allowed_ips(IpAllowlist::parse(["203.0.113.0/24"]).unwrap()),
        )
        .await
        .unwrap();
    let token = issued.token.expose_secret();
    let svc = scenario::service(keyward::http::AuthLayer::new(keyring));
    for _ in 0..keyward::http::AuthLayer::DEFAULT_FAILURE_BUDGET.count() {
        let res = scenario::call(&svc, scenario::req("/", token, Some("198.51.100.99"))).await;
        assert_eq!(res.status(), http::StatusCode::FORBIDDEN);
    }
    let res = scenario::call(&svc, scenario::req("/", token, Some("198.51.100.99"))).await;
    assert_eq!(res.status(), http::StatusCode::TOO_MANY_REQUESTS);
    let res = scenario::call(&svc, scenario::req("/", token, Some("203.0.113.1"))).await;
    assert_eq!(res.status(), http::StatusCode::OK);
}

/// A 402 says when to retry only when the next refill covers the cost.
#[tokio::test]
async fn retry_after_only_for_a_refill_that_covers_the_cost() {
    use keyward::testing::RecordingSink;
    use keyward::usage::{Credits, Refill};
    use keyward::{ManualClock, NewKey};

    let keyring = scenario::keyring(
        Arc::new(MemoryStore::new()),
        &ManualClock::new(common::start()),
        &RecordingSink::new(),
    );
    let credits = Credits::new(1).unwrap().refill(Refill::daily(5).unwrap());
    let issued = keyring
        .issue(NewKey::new("pk", "prop_1", "small").credits(credits))
        .await
        .unwrap();
    let svc = scenario::service(keyward::http::AuthLayer::new(keyring).credit_cost(|parts| {
        if parts.uri.path() == "/big" {
            10
        } else {
            5
        }
    }));
    for (path, retry) in [("/big", false), ("/", true)] {
        let res = scenario::call(
            &svc,
            scenario::req(path, issued.token.expose_secret(), Some("192.0.2.1")),
        )
        .await;
        assert_eq!(res.status(), http::StatusCode::PAYMENT_REQUIRED, "{path}");
        assert_eq!(res.headers().contains_key("retry-after"), retry, "{path}");
    }
}
