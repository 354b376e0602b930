//! What the usage controls cost per request: one request through
//! `AuthLayer` (default settings: rate limiting on, failure throttle on,
//! client tracking on) to a trivial service, among 100,000 issued keys on
//! the memory store, for a key with none of the controls and with each of
//! them; and `Keyring::verify` against `Keyring::verify_with` (client IP
//! and user agent noted for the batched last-used write).
//!
//! Every request comes from a known peer (a `SocketAddr` in the extensions,
//! as axum's `ConnectInfo` gives) with a `User-Agent`. Every key has a
//! per-minute limit it never reaches, so the limiter is consulted on each
//! request and never denies. A control's cost is its row minus `plain`'s.
//!
//! ```sh
//! cargo bench --bench usage
//! cargo bench --bench usage -- usage_controls/layer
//! ```
#![allow(missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderValue, Request, Response, StatusCode};
use keyward::http::AuthLayer;
use keyward::usage::{Credits, IpAllowlist, UseContext, MAX_CREDITS};
use keyward::{KeyKind, Keyring, MemoryStore, NewKey, RateLimit, ScopeCatalog, ScopeStatus};
use tower::{Service, ServiceBuilder, ServiceExt};

const KEYS: usize = 100_000;

/// The client of every request, inside every allowlist below.
const PEER: &str = "203.0.113.7:50000";
const USER_AGENT: &str = "bench-client/1.0 (keyward)";

/// A key's limit: enforced (the limiter is consulted), never reached.
fn limit() -> RateLimit {
    RateLimit::per_minute(u32::MAX).unwrap()
}

fn keyring() -> Keyring {
    let catalog = ScopeCatalog::builder()
        .scope("read", "", ScopeStatus::Enforced)
        .build()
        .unwrap();
    let kind = KeyKind::new("pk", catalog)
        .unwrap()
        .default_scopes(["read"])
        .unwrap();
    Keyring::builder()
        .store(MemoryStore::new())
        .kind(kind)
        .build()
        .unwrap()
}

/// Issues [`KEYS`] plain keys over 1,000 tenants; returns the token of the
/// middle one.
fn issue_plain_keys(rt: &tokio::runtime::Runtime, keyring: &Keyring) -> String {
    rt.block_on(async {
        let mut middle = String::new();
        for i in 0..KEYS {
            let issued = keyring
                .issue(NewKey::new("pk", &format!("t{}", i % 1000), "bench").rate_limit(limit()))
                .await
                .unwrap();
            if i == KEYS / 2 {
                middle = issued.token.expose_secret().to_owned();
            }
        }
        middle
    })
}

/// One range holding the peer.
fn allow_one() -> IpAllowlist {
    IpAllowlist::parse(["203.0.113.0/24"]).unwrap()
}

/// 100 ranges (the most an allowlist holds); only the last holds the peer,
/// so every range is looked at.
fn allow_hundred() -> IpAllowlist {
    let ranges = (0..99)
        .map(|i| format!("10.{i}.0.0/16"))
        .chain(["203.0.113.0/24".to_owned()]);
    IpAllowlist::parse(ranges).unwrap()
}

/// Credits that never run out in a bench.
fn credits() -> Credits {
    Credits::new(MAX_CREDITS).unwrap()
}

fn issue(rt: &tokio::runtime::Runtime, keyring: &Keyring, new: NewKey) -> String {
    let issued = rt.block_on(keyring.issue(new.rate_limit(limit()))).unwrap();
    issued.token.expose_secret().to_owned()
}

fn usage_controls(c: &mut Criterion) {
    // The layer's verify timeout needs tokio's timer.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let keyring = keyring();
    let plain = issue_plain_keys(&rt, &keyring);
    let key = |name: &str| NewKey::new("pk", "t7", name);
    let allow1 = issue(&rt, &keyring, key("allow1").allowed_ips(allow_one()));
    let allow100 = issue(&rt, &keyring, key("allow100").allowed_ips(allow_hundred()));
    let metered = issue(&rt, &keyring, key("credits").credits(credits()));
    let budget = issue(&rt, &keyring, key("budget").budget("team-a"));
    let all = issue(
        &rt,
        &keyring,
        key("all")
            .allowed_ips(allow_one())
            .credits(credits())
            .budget("team-a"),
    );
    let peer: SocketAddr = PEER.parse().unwrap();

    let mut group = c.benchmark_group("usage_controls");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(60);

    let ok = tower::service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    // (row, what it measures, layer, token)
    let rows = [
        (
            "layer/plain",
            "no usage controls: the baseline",
            AuthLayer::new(keyring.clone()),
            &plain,
        ),
        (
            "layer/plain_untracked",
            "no usage controls, track_clients(false): no IP or user agent noted",
            AuthLayer::new(keyring.clone()).track_clients(false),
            &plain,
        ),
        (
            "layer/allowlist_1",
            "an allowlist of 1 range holding the peer",
            AuthLayer::new(keyring.clone()),
            &allow1,
        ),
        (
            "layer/allowlist_100",
            "an allowlist of 100 ranges, the peer in the last",
            AuthLayer::new(keyring.clone()),
            &allow100,
        ),
        (
            "layer/credits",
            "credits: one spent per request on the memory store",
            AuthLayer::new(keyring.clone()),
            &metered,
        ),
        (
            "layer/budget",
            "a shared budget: the limiter key is the tenant's budget",
            AuthLayer::new(keyring.clone()),
            &budget,
        ),
        (
            "layer/all",
            "allowlist of 1 range + credits + shared budget",
            AuthLayer::new(keyring.clone()),
            &all,
        ),
    ];
    for (name, what, layer, token) in rows {
        let service = ServiceBuilder::new().layer(layer).service(ok);
        let token = HeaderValue::from_str(token).unwrap();
        let request = || {
            let mut req = Request::get("/api/players")
                .header("x-api-key", token.clone())
                .header(http::header::USER_AGENT, USER_AGENT)
                .body(String::new())
                .unwrap();
            req.extensions_mut().insert(peer);
            req
        };
        let res = rt.block_on(service.clone().oneshot(request())).unwrap();
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "{name} ({what}): {}",
            res.body()
        );
        bench_service(&mut group, &rt, name, service, &request);
    }

    // Verification alone, the plain key: without and with where it came from.
    let from = UseContext::new().ip(peer.ip()).user_agent(USER_AGENT);
    // `verify`: no client noted.
    group.bench_function("verify/plain", |b| {
        b.to_async(&rt)
            .iter(|| async { keyring.verify(&plain).await.is_ok() })
    });
    // `verify_with`: the client IP and user agent noted in the pending use.
    group.bench_function("verify_with/plain_ip_user_agent", |b| {
        b.to_async(&rt)
            .iter(|| async { keyring.verify_with(&plain, from).await.is_ok() })
    });
    group.finish();
}

/// Measures one request per iteration on a clone of `service` (as a server
/// clones per connection).
fn bench_service<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    service: S,
    request: &dyn Fn() -> Request<String>,
) where
    S: Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
{
    group.bench_function(name, |b| {
        b.to_async(rt).iter(|| service.clone().oneshot(request()))
    });
}

criterion_group!(benches, usage_controls);
criterion_main!(benches);
