//! Rate limiter costs: a check on one hot key, on many keys, through the
//! trait object, a flood of 1,000,000 distinct keys (tracked entries and
//! bytes after it), and a request through `AuthLayer` with limiting on and
//! off, and with its failed-authentication throttle on and off (a request
//! from a known peer, rate limits off: the difference is the throttle's look
//! on a success).
#![allow(missing_docs)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use std::hash::{BuildHasher, RandomState};

use keyward::ratelimit::{MemoryRateLimiter, Quota, RateLimiter};
use keyward::{Clock, SystemClock};

/// A key shaped like a key id: `key_` and 22 characters, 26 bytes.
fn key_id(buf: &mut String, i: usize) -> &str {
    buf.clear();
    write!(buf, "key_{i:022}").unwrap();
    buf
}

fn checks(c: &mut Criterion) {
    // What a check pays before it touches the limiter: the clock and a hash.
    c.bench_function("ratelimit/parts/system_clock", |b| {
        b.iter(|| SystemClock.now())
    });
    let hasher = RandomState::new();
    c.bench_function("ratelimit/parts/siphash_key", |b| {
        b.iter(|| hasher.hash_one(black_box("key:key_0123456789abcdefghijkl")))
    });

    let quota = Quota::per_second(1_000_000_000).unwrap();
    let limiter = MemoryRateLimiter::new();
    c.bench_function("ratelimit/memory/hot_key", |b| {
        b.iter(|| limiter.check_sync(black_box("key:key_0123456789abcdefghijkl"), quota))
    });

    let keys: Vec<String> = (0..10_000)
        .map(|i| key_id(&mut String::new(), i).to_owned())
        .collect();
    for key in &keys {
        let _ = limiter.check_sync(key, quota).unwrap();
    }
    let mut next = 0;
    c.bench_function("ratelimit/memory/10k_keys", |b| {
        b.iter(|| {
            next = (next + 1) % keys.len();
            limiter.check_sync(&keys[next], quota)
        })
    });

    let shared: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::new());
    // The layer's verify timeout needs tokio's timer.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    c.bench_function("ratelimit/memory/hot_key_dyn_async", |b| {
        b.to_async(&runtime)
            .iter(|| shared.check(black_box("key:key_0123456789abcdefghijkl"), quota))
    });
}

/// Resident memory of this process, from /proc (Linux); 0 elsewhere.
fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn flood(c: &mut Criterion) {
    const KEYS: usize = 1_000_000;
    // T = 36 s: nothing turns idle during the flood, so the cap decides.
    let quota = Quota::per_hour(100).unwrap();
    for max_keys in [100_000, KEYS] {
        let before = rss_bytes();
        let limiter = MemoryRateLimiter::builder().max_keys(max_keys).build();
        let mut buf = String::new();
        let started = std::time::Instant::now();
        for i in 0..KEYS {
            let _ = limiter.check_sync(key_id(&mut buf, i), quota).unwrap();
        }
        let elapsed = started.elapsed();
        let tracked = limiter.len();
        let estimate = limiter.memory_estimate();
        let rss = rss_bytes().saturating_sub(before);
        println!(
            "flood of {KEYS} keys, max_keys {max_keys}: {:.0} ns/check, {tracked} tracked, \
             estimate {estimate} B ({} B/key), RSS +{rss} B ({} B/key)",
            elapsed.as_nanos() as f64 / KEYS as f64,
            estimate / tracked.max(1),
            rss / tracked.max(1),
        );
        assert!(tracked <= max_keys);
    }

    // The steady cost of new keys at the cap (each insert may evict).
    let limiter = MemoryRateLimiter::builder().max_keys(100_000).build();
    let mut buf = String::new();
    let mut i = 0;
    c.bench_function("ratelimit/memory/new_key_at_cap", |b| {
        b.iter(|| {
            i += 1;
            limiter.check_sync(key_id(&mut buf, i), quota)
        })
    });
    assert!(limiter.len() <= 100_000);
}

/// One request through `AuthLayer` (verify + limit + headers) to a trivial
/// service, with the key's limit enforced by the default limiter, and off.
#[cfg(feature = "http")]
fn layer(c: &mut Criterion) {
    use http::{Request, Response};
    use keyward::http::AuthLayer;
    use keyward::{KeyKind, Keyring, MemoryStore, NewKey, RateLimit, ScopeCatalog, ScopeStatus};
    use tower::{ServiceBuilder, ServiceExt};

    // The layer's verify timeout needs tokio's timer.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let catalog = ScopeCatalog::builder()
        .scope("read", "Read", ScopeStatus::Enforced)
        .build()
        .unwrap();
    let keyring = Keyring::builder()
        .store(MemoryStore::new())
        .kind(KeyKind::new("pk", catalog).unwrap())
        .build()
        .unwrap();
    // A limit the bench never reaches.
    let new =
        NewKey::new("pk", "prop_1", "bench").rate_limit(RateLimit::per_minute(u32::MAX).unwrap());
    let token = runtime.block_on(keyring.issue(new)).unwrap().token;
    let token = token.expose_secret().to_owned();
    let peer: std::net::SocketAddr = "203.0.113.7:50000".parse().unwrap();
    for (name, layer, peer) in [
        (
            "ratelimit/layer/limit_on",
            AuthLayer::new(keyring.clone()),
            None,
        ),
        (
            "ratelimit/layer/limit_off",
            AuthLayer::new(keyring.clone()).without_rate_limits(),
            None,
        ),
        (
            "ratelimit/layer/limit_off_failure_throttle_on",
            AuthLayer::new(keyring.clone()).without_rate_limits(),
            Some(peer),
        ),
        (
            "ratelimit/layer/limit_off_failure_throttle_off",
            AuthLayer::new(keyring.clone())
                .without_rate_limits()
                .without_failure_throttle(),
            Some(peer),
        ),
    ] {
        let service =
            ServiceBuilder::new()
                .layer(layer)
                .service_fn(|_req: Request<String>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(String::new()))
                });
        c.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| {
                let mut req = Request::get("/")
                    .header("x-api-key", token.as_str())
                    .body(String::new())
                    .unwrap();
                if let Some(peer) = peer {
                    req.extensions_mut().insert(peer);
                }
                service.clone().oneshot(req)
            })
        });
    }
}

#[cfg(not(feature = "http"))]
fn layer(_: &mut Criterion) {}

criterion_group!(benches, checks, flood, layer);
criterion_main!(benches);
