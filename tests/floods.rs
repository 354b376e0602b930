//! Floods: many well-formed but unknown tokens through `AuthLayer` on a
//! `CachedStore` leave memory bounded, never reach the rate limiter, and
//! neither evict the real key's cache entry nor reset its rate limit state.
//!
//! `KEYWARD_FLOOD_N` sets the count (50,000 by default, a few seconds in a
//! debug build; try 1,000,000 for an endurance run). Run with `--nocapture`
//! to see the cache size and the process's resident memory before and after.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use http::{Request, Response, StatusCode};
use keyward::http::AuthLayer;
use keyward::ratelimit::{LimitError, MemoryRateLimiter, Quota, RateLimiter};
use keyward::store::CachedStore;
use keyward::testing::{FaultyStore, Op};
use keyward::{MemoryStore, NewKey, RateDecision, RateLimit, TokenKind};
use tower::{Service, ServiceBuilder, ServiceExt};

const CAPACITY: usize = 1_000;

fn flood_n() -> usize {
    std::env::var("KEYWARD_FLOOD_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50_000)
}

/// Resident memory in KiB (Linux), to report alongside the asserted bounds.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A limiter that records every key it is asked about.
#[derive(Debug, Default)]
struct Recording {
    inner: MemoryRateLimiter,
    keys: Mutex<BTreeSet<String>>,
}

#[async_trait]
impl RateLimiter for Recording {
    async fn check(&self, key: &str, quota: Quota) -> Result<RateDecision, LimitError> {
        self.keys.lock().unwrap().insert(key.to_owned());
        self.inner.check(key, quota).await
    }
}

fn with_key(token: &str) -> Request<String> {
    Request::get("/")
        .header("x-api-key", token)
        .body(String::new())
        .unwrap()
}

fn remaining(res: &Response<String>) -> Option<&str> {
    res.headers().get("ratelimit").map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_flood_of_unknown_tokens_stays_bounded_and_leaves_the_real_key_alone() {
    let inner = FaultyStore::new(MemoryStore::new());
    let store = CachedStore::builder(inner.clone())
        .capacity(CAPACITY)
        .build();
    let (keyring, _) = common::keyring_on(store.clone());
    let limiter = Arc::new(Recording::default());
    let mut service = ServiceBuilder::new()
        .layer(AuthLayer::new(keyring.clone()).rate_limiter(limiter.clone()))
        .service_fn(|_req: Request<String>| async {
            Ok::<_, std::convert::Infallible>(Response::new(String::new()))
        });
    let real = keyring
        .issue(NewKey::new("pk", "p", "real").rate_limit(RateLimit::per_minute(3).unwrap()))
        .await
        .unwrap();
    let real_token = real.token.expose_secret();
    // Two of the real key's three requests a minute, before the flood.
    for left in ["r=2", "r=1"] {
        let res = service
            .ready()
            .await
            .unwrap()
            .call(with_key(real_token))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(remaining(&res).unwrap().contains(left), "{res:?}");
    }
    assert_eq!(inner.calls(Op::FindByHash), 1, "the real key is cached");
    let pending = keyring.pending_last_used();
    // The known key plus at most a quarter of the room for misses.
    let bound = 1 + CAPACITY / 4;

    let kinds = [TokenKind::new("pk").unwrap(), TokenKind::new("pl").unwrap()];
    let n = flood_n();
    let before = rss_kib();
    for i in 0..n {
        let token = kinds[i % 2].generate();
        let res = service
            .ready()
            .await
            .unwrap()
            .call(with_key(token.expose_secret()))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "flood token {i}");
        if i % 4096 == 0 {
            assert!(store.cached() <= bound, "{} cached at {i}", store.cached());
        }
    }
    let after = rss_kib();
    eprintln!(
        "flood of {n}: cache {} entries (bound {bound}), {} store lookups, RSS {before:?} KiB -> {after:?} KiB",
        store.cached(),
        inner.calls(Op::FindByHash),
    );

    // Memory: the cache holds the real key and a quarter of its room in
    // misses, and nothing more.
    assert_eq!(store.cached(), bound);
    assert_eq!(
        keyring.pending_last_used(),
        pending,
        "unknown tokens are not tracked"
    );
    // The limiter only ever heard of the real key.
    let keys = limiter.keys.lock().unwrap().clone();
    assert_eq!(keys, BTreeSet::from([format!("key:{}", real.info.id())]));
    assert_eq!(limiter.inner.len(), 1);
    // The real key's cache entry survived: verifying it reads no store.
    let lookups = inner.calls(Op::FindByHash);
    let res = service
        .ready()
        .await
        .unwrap()
        .call(with_key(real_token))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        inner.calls(Op::FindByHash),
        lookups,
        "the real key was evicted"
    );
    // And so did its limiter state: the third request of the minute was the
    // last one, not the first of a fresh burst.
    assert!(remaining(&res).unwrap().contains("r=0"), "{res:?}");
    let res = service.oneshot(with_key(real_token)).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    if let (Some(before), Some(after)) = (before, after) {
        assert!(
            after.saturating_sub(before) < 64 * 1024,
            "RSS grew from {before} KiB to {after} KiB"
        );
    }
}
