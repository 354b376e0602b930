//! Usage controls over HTTP on PostgreSQL: the scenarios of `tests/usage.rs`,
//! each in its own schema; two instances are two pools on one schema (two
//! processes sharing a database), and shared budgets use `PgRateLimiter`.
#![cfg(all(feature = "postgres", feature = "http"))]

mod common;

use std::sync::Arc;

use common::pg;
use common::usage as scenario;
use keyward::ratelimit::PgRateLimiter;

#[tokio::test]
async fn pg_allowlists_refuse_outside_before_quota() {
    let Some((store, _)) = pg::store("usage_allowlists").await else {
        return;
    };
    scenario::allowlists_refuse_outside_before_quota(Arc::new(store)).await;
}

#[tokio::test]
async fn pg_credits_are_spent_refused_and_refilled() {
    let Some((store, _)) = pg::store("usage_credits").await else {
        return;
    };
    scenario::credits_are_spent_refused_and_refilled(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_concurrent_requests_on_two_instances_spend_exactly() {
    let Some((store, schema)) = pg::store("usage_concurrent").await else {
        return;
    };
    let url = pg::database_url("usage_concurrent").unwrap();
    let other = pg::store_on(&url, &schema);
    scenario::concurrent_requests_spend_exactly(Arc::new(store), Arc::new(other)).await;
}

#[tokio::test]
async fn pg_budgets_are_shared_within_a_tenant() {
    let Some((store, schema)) = pg::store("usage_budgets").await else {
        return;
    };
    let url = pg::database_url("usage_budgets").unwrap();
    let limiter = PgRateLimiter::new(pg::store_on(&url, &schema));
    limiter.migrate().await.unwrap();
    scenario::budgets_are_shared_within_a_tenant(Arc::new(store), Arc::new(limiter)).await;
}

#[tokio::test]
async fn pg_recent_ips_and_agent_are_kept() {
    let Some((store, _)) = pg::store("usage_recent").await else {
        return;
    };
    scenario::recent_ips_and_agent_are_kept(Arc::new(store)).await;
}
