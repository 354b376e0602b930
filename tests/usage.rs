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
