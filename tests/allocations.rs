//! Heap allocations on the hot path, counted (dhat's heap profiler in
//! testing mode): verification on an in-memory store allocates nothing, and
//! `AuthLayer` + `RequireScopesLayer` allocate no more per request than the
//! principal and the rate limit headers need, because a decision that
//! needs no waiting runs without a boxed future.
//!
//! One test: the profiler counts every thread's allocations, so nothing
//! else may run in this binary.

use std::convert::Infallible;

use http::{HeaderValue, Request, Response, StatusCode};
use keyward::http::{AuthLayer, RequireScopesLayer};
use keyward::store::CachedStore;
use keyward::{KeyKind, Keyring, MemoryStore, NewKey, RateLimit, ScopeCatalog, ScopeStatus};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const CALLS: u64 = 200;

/// Allocations per call of `f`, after as many calls to warm up.
fn per_call(mut f: impl FnMut()) -> f64 {
    for _ in 0..CALLS {
        f();
    }
    let before = dhat::HeapStats::get().total_blocks;
    for _ in 0..CALLS {
        f();
    }
    (dhat::HeapStats::get().total_blocks - before) as f64 / CALLS as f64
}

fn keyring_on<S: keyward::KeyStore>(store: S) -> Keyring {
    let catalog = ScopeCatalog::builder()
        .scope("read", "", ScopeStatus::Enforced)
        .build()
        .unwrap();
    Keyring::builder()
        .store(store)
        .kind(
            KeyKind::new("pk", catalog)
                .unwrap()
                .default_scopes(["read"])
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// Allocations per request through `service` (the request built in the
/// loop, as `none` does), and its status.
fn through<S>(rt: &tokio::runtime::Runtime, service: &S, token: &HeaderValue) -> f64
where
    S: Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
{
    per_call(|| {
        let req = Request::get("/api/players")
            .header("x-api-key", token.clone())
            .body(String::new())
            .unwrap();
        let res = rt.block_on(service.clone().oneshot(req)).unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    })
}

#[test]
fn the_hot_path_allocates_only_what_it_hands_on() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();

    // Verification: parse, hash, lookup, checks, last use. Nothing on the
    // heap, on a memory store and on a warm cache.
    for (name, keyring) in [
        ("memory", keyring_on(MemoryStore::new())),
        ("cached", keyring_on(CachedStore::new(MemoryStore::new()))),
    ] {
        let issued = rt
            .block_on(keyring.issue(NewKey::new("pk", "t", "k")))
            .unwrap();
        let token = issued.token.expose_secret();
        let n = per_call(|| assert!(rt.block_on(keyring.verify(token)).is_ok()));
        assert_eq!(n, 0.0, "verify on {name}");
    }

    let keyring = keyring_on(MemoryStore::new());
    let issue = |limit| {
        let new = NewKey::new("pk", "t", "k").rate_limit(limit);
        let issued = rt.block_on(keyring.issue(new)).unwrap();
        HeaderValue::from_str(issued.token.expose_secret()).unwrap()
    };
    let unlimited = issue(RateLimit::Unlimited);
    let limited = issue(RateLimit::per_minute(u32::MAX).unwrap());
    let ok = service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let layers = ServiceBuilder::new()
        .layer(AuthLayer::new(keyring.clone()))
        .layer(RequireScopesLayer::all(["read"]).unwrap())
        .service(ok);
    let none = through(&rt, &ok, &unlimited);
    // The principal in the request extensions: the map, its table, the
    // value.
    let over = through(&rt, &layers, &unlimited) - none;
    assert!(over <= 3.0, "unlimited key: {over} allocations over none");
    // And the rate decision in the extensions, the `RateLimit` value (the
    // policy value is kept per quota) and the response's header map
    // (indices and entries).
    let over = through(&rt, &layers, &limited) - none;
    assert!(over <= 7.0, "limited key: {over} allocations over none");

    // A refusal is decided at once too: a revoked key's 401 allocates its
    // response (the body, the challenge) and nothing to get there.
    let revoked = issue(RateLimit::Unlimited);
    let id = rt
        .block_on(keyring.verify(revoked.to_str().unwrap()))
        .unwrap()
        .id()
        .clone();
    rt.block_on(keyring.revoke(&id)).unwrap();
    let refused = per_call(|| {
        let req = Request::get("/api/players")
            .header("x-api-key", revoked.clone())
            .body(String::new())
            .unwrap();
        let res = rt.block_on(layers.clone().oneshot(req)).unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    });
    // The JSON body and its fields, the challenge and the response's
    // headers: 16 over the request's own 4. A boxed future would be one
    // more.
    assert!(
        refused - none <= 16.0,
        "revoked key: {} allocations over none",
        refused - none
    );
}
