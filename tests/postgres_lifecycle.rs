//! Key lifecycle on PostgreSQL: the scenarios of `tests/lifecycle.rs`, each
//! in its own schema; two instances are two pools on one schema (two
//! processes sharing a database).
#![cfg(feature = "postgres")]

mod common;

use std::sync::Arc;

use common::lifecycle as scenario;
use common::pg;

#[tokio::test]
async fn pg_expiring_soon_once_per_threshold() {
    let Some((store, _)) = pg::store("lc_expiring").await else {
        return;
    };
    scenario::expiring_soon_once_per_threshold(Arc::new(store)).await;
}

#[tokio::test]
async fn pg_two_instances_send_each_event_once() {
    let Some((store, schema)) = pg::store("lc_two_instances").await else {
        return;
    };
    let url = pg::database_url("lc_two_instances").unwrap();
    let other = pg::store_on(&url, &schema);
    scenario::two_instances_send_each_event_once(Arc::new(store), Arc::new(other)).await;
}

#[tokio::test]
async fn pg_stale_keys_are_announced_and_revoked() {
    let Some((store, _)) = pg::store("lc_stale").await else {
        return;
    };
    scenario::stale_keys_are_announced_and_revoked(Arc::new(store)).await;
}

#[tokio::test]
async fn pg_failures_delay_events_never_lose_them() {
    let Some((store, _)) = pg::store("lc_failures").await else {
        return;
    };
    scenario::failures_delay_events_never_lose_them(store).await;
}

#[tokio::test]
async fn pg_ticks_are_bounded() {
    let Some((store, _)) = pg::store("lc_bounded").await else {
        return;
    };
    scenario::ticks_are_bounded(Arc::new(store)).await;
}

#[tokio::test]
async fn pg_management_events_name_the_actor() {
    let Some((store, _)) = pg::store("lc_events").await else {
        return;
    };
    scenario::management_events_name_the_actor(Arc::new(store)).await;
}

#[tokio::test]
async fn pg_reuse_after_grace_is_detected() {
    let Some((store, _)) = pg::store("lc_reuse").await else {
        return;
    };
    scenario::reuse_after_grace_is_detected(Arc::new(store)).await;
}

#[tokio::test]
async fn pg_owners_are_offboarded_in_one_call() {
    let Some((store, _)) = pg::store("lc_owners").await else {
        return;
    };
    scenario::owners_are_offboarded_in_one_call(Arc::new(store)).await;
}

/// The lifecycle queries use the version-4 indexes: no sort, no scan of
/// the whole table.
#[tokio::test]
async fn pg_lifecycle_queries_use_their_indexes() {
    let Some((store, schema)) = pg::store("lc_plans").await else {
        return;
    };
    let client = store.pool().get().await.unwrap();
    client
        .batch_execute(&format!(
            "SET search_path TO {schema}; SET enable_seqscan = off; SET enable_bitmapscan = off"
        ))
        .await
        .unwrap();
    for (sql, index) in [
        (
            "EXPLAIN SELECT id FROM keyward_keys WHERE expires_at > now() \
             AND expires_at <= now() + interval '1 day' \
             ORDER BY expires_at, id COLLATE \"C\" LIMIT 100",
            "keyward_keys_expiry_idx",
        ),
        (
            "EXPLAIN SELECT id FROM keyward_keys \
             WHERE COALESCE(last_used_at, created_at) < now() \
             ORDER BY COALESCE(last_used_at, created_at), id COLLATE \"C\" LIMIT 100",
            "keyward_keys_unused_idx",
        ),
        (
            "EXPLAIN SELECT id FROM keyward_keys WHERE rotated_from = 'key_x'",
            "keyward_keys_rotated_from_idx",
        ),
        (
            "EXPLAIN SELECT id FROM keyward_keys WHERE tenant = 't' AND owner = 'u' \
             ORDER BY created_at DESC, id COLLATE \"C\" DESC LIMIT 100",
            "keyward_keys_owner_idx",
        ),
    ] {
        let plan: Vec<String> = client
            .query(sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(plan.contains(index), "{sql}\n{plan}");
        assert!(!plan.contains("Sort"), "{sql}\n{plan}");
    }
}
