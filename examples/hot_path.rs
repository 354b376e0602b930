//! The verify and tower-layer hot paths in a loop, for an instruction
//! profiler: instructions are repeatable on a busy machine, where times are
//! not. `scripts/callgrind.sh` runs every mode below and prints
//! instructions per request; by hand:
//!
//! ```sh
//! cargo build --release --example hot_path
//! valgrind --tool=callgrind --toggle-collect='hot_path::verify_loop' \
//!     target/release/examples/hot_path verify sha256
//! valgrind --tool=callgrind --toggle-collect='hot_path::layer_loop' \
//!     target/release/examples/hot_path layer sha256
//! callgrind_annotate --inclusive=yes callgrind.out.<pid> | head -40
//! ```
//!
//! Arguments: `verify`, `layer` (a key with a limit the loop never reaches:
//! the default path, the limiter checked and its headers sent),
//! `layer-unlimited` (an unlimited key), `peer` (the benchmarks' fair peer:
//! the same store-backed check written with tower-http's
//! `AsyncRequireAuthorizationLayer`), `feature-peer` and
//! `feature-peer-unlimited` (that peer doing keyward's other work too,
//! plainly written: `benches/common/mod.rs`, with a limited and an
//! unlimited key) or `none` (the layer loop without the layers, to
//! subtract), then `sha256` or `hmac` (the peers hash with SHA-256
//! whatever it says); `KEYS` (default
//! 100,000) keys are issued, then `ITERATIONS` (default 10,000) requests run.
//! `verify` prints its loop's wall time per verification. An unknown mode
//! or hasher is refused (exit status 2). With `THREADS=n` (default 1) the
//! layer modes run on `n` threads at once,
//! all presenting the same key, and print the wall time a request: what
//! contention on one key's shared state costs.
//!
//! With `--features axum,jwt,webhooks`, `router`, `router-unlimited` and
//! `bare` drive the example server's routers (`examples/server/app.rs`:
//! `router` with the `loadtest-limited` demo key, whose limit is checked but
//! never reached, or the unlimited `loadtest` one, and `bare_router`: what
//! `scripts/load.sh` compares) in process, without sockets; `KEYS` does not
//! apply (the demo keys only):
//!
//! ```sh
//! cargo build --release --example hot_path --features axum,jwt,webhooks
//! valgrind --tool=callgrind --toggle-collect='hot_path::router_loop' \
//!     target/release/examples/hot_path router
//! ```

use std::convert::Infallible;
use std::hint::black_box;

use http::{HeaderValue, Request, Response, StatusCode};
use keyward::http::{AuthLayer, RequireScopesLayer};
use keyward::{
    KeyKind, Keyring, MemoryStore, NewKey, Pepper, RateLimit, ScopeCatalog, ScopeStatus,
    TokenHasher,
};
use sha2::{Digest, Sha256};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_http::auth::AsyncRequireAuthorizationLayer;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[inline(never)]
fn verify_loop(rt: &tokio::runtime::Runtime, keyring: &Keyring, token: &str, n: usize) {
    let start = std::time::Instant::now();
    rt.block_on(async {
        for _ in 0..n {
            black_box(keyring.verify(black_box(token)).await.is_ok());
        }
    });
    let per = start.elapsed().as_nanos() / n.max(1) as u128;
    println!("{per} ns a verification (the loop alone)");
}

#[inline(never)]
fn layer_loop<S>(rt: &tokio::runtime::Runtime, service: &S, token: &HeaderValue, n: usize)
where
    S: Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
{
    rt.block_on(async {
        for _ in 0..n {
            let req = Request::get("/api/players")
                .header("x-api-key", token.clone())
                .body(String::new())
                .unwrap();
            let res = service.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
        }
    });
}

/// `layer_loop` on `THREADS` threads at once (each its own runtime and a
/// clone of `service`, as a multi-threaded server has), all presenting the
/// same key: what contention on that key's shared state costs. Prints the
/// wall time per request of one thread.
fn layer_threads<S>(rt: &tokio::runtime::Runtime, service: &S, token: &HeaderValue, n: usize)
where
    S: Service<Request<String>, Response = Response<String>, Error = Infallible>
        + Clone
        + Send
        + Sync,
    S::Future: Send,
{
    let threads = env_usize("THREADS", 1).max(1);
    let start = std::time::Instant::now();
    if threads == 1 {
        layer_loop(rt, service, token, n);
    } else {
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .unwrap();
                    layer_loop(&rt, service, token, n);
                });
            }
        });
    }
    let per = start.elapsed().as_nanos() / n.max(1) as u128;
    println!("{threads} thread(s): {per} ns a request on each");
}

/// The benchmarks' fair peer (`StorePeer`), for `peer`.
#[path = "../benches/common/mod.rs"]
mod common;

/// The example server's application, for `router` and `bare`.
#[cfg(all(feature = "axum", feature = "jwt", feature = "webhooks"))]
#[path = "server/app.rs"]
#[allow(dead_code)]
mod app;

#[cfg(all(feature = "axum", feature = "jwt", feature = "webhooks"))]
#[inline(never)]
fn router_loop(rt: &tokio::runtime::Runtime, router: &axum::Router, token: &HeaderValue, n: usize) {
    // What the server's accept loop inserts: the peer, for the throttles.
    let peer = axum::extract::ConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 1], 40_000)));
    rt.block_on(async {
        for _ in 0..n {
            let mut req = Request::get("/api/players")
                .header("x-api-key", token.clone())
                .body(axum::body::Body::empty())
                .unwrap();
            req.extensions_mut().insert(peer);
            let res = router.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
        }
    });
}

/// `router`, `router-unlimited` or `bare`: the example server's routers.
#[cfg(all(feature = "axum", feature = "jwt", feature = "webhooks"))]
fn run_router(what: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let keyring = app::keyring();
    let keys = rt.block_on(app::demo_keys(&keyring)).unwrap();
    // `router`: the default path (the key's limit checked, never reached);
    // `router-unlimited`: an unlimited key, as before 0.2's hot path work.
    let name = match what {
        "router-unlimited" => "loadtest",
        _ => "loadtest-limited",
    };
    let token = keys.iter().find(|k| k.name == name).unwrap();
    let header = HeaderValue::from_str(&token.token).unwrap();
    let router = match what {
        "bare" => app::bare_router(),
        _ => app::router(keyring),
    };
    // As `into_make_service*` do: routes become services once, not per request.
    let router = router.with_state(());
    router_loop(&rt, &router, &header, n);
    println!("{what}: {n} iterations");
}

/// Modes that need the example server's features.
const ROUTER_MODES: [&str; 3] = ["router", "router-unlimited", "bare"];
/// The modes over an issued keyring (`KEYS` keys), with a hasher.
const LOOP_MODES: [&str; 7] = [
    "verify",
    "layer",
    "layer-unlimited",
    "peer",
    "feature-peer",
    "feature-peer-unlimited",
    "none",
];

fn usage(problem: &str) -> ! {
    eprintln!(
        "hot_path: {problem}\nusage: hot_path [{}] [sha256|hmac]\n       \
         hot_path [{}]   (built with --features axum,jwt,webhooks)",
        LOOP_MODES.join("|"),
        ROUTER_MODES.join("|"),
    );
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map_or("verify", String::as_str);
    let router_mode = ROUTER_MODES.contains(&what);
    if !router_mode && !LOOP_MODES.contains(&what) {
        usage(&format!("unknown mode {what:?}"));
    }
    if router_mode && !cfg!(all(feature = "axum", feature = "jwt", feature = "webhooks")) {
        usage(&format!("{what:?} needs --features axum,jwt,webhooks"));
    }
    let n = env_usize("ITERATIONS", 10_000);
    if router_mode {
        // The routers take no hasher: `-` (as `scripts/callgrind.sh`
        // passes) or nothing.
        if let Some(other) = args.get(1).filter(|a| *a != "-") {
            usage(&format!("{what:?} takes no hasher, got {other:?}"));
        }
        #[cfg(all(feature = "axum", feature = "jwt", feature = "webhooks"))]
        return run_router(what, n);
    }
    let hasher = match args.get(1).map_or("sha256", String::as_str) {
        "hmac" => TokenHasher::hmac(Pepper::new(1, vec![7; 32]).unwrap()),
        "sha256" => TokenHasher::sha256(),
        other => usage(&format!("unknown hasher {other:?}")),
    };
    let keys = env_usize("KEYS", 100_000);

    let catalog = ScopeCatalog::builder()
        .scope("read", "", ScopeStatus::Enforced)
        .build()
        .unwrap();
    let keyring = Keyring::builder()
        .store(MemoryStore::new())
        .kind(
            KeyKind::new("pk", catalog)
                .unwrap()
                .default_scopes(["read"])
                .unwrap(),
        )
        .hasher(hasher)
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    // The key presented is the last one issued.
    let presented = match what {
        "layer" | "feature-peer" => RateLimit::per_minute(u32::MAX).unwrap(),
        _ => RateLimit::Unlimited,
    };
    // `peer`: the SHA-256 of every token, the peer's store.
    let mut digests: Vec<[u8; 32]> = Vec::new();
    // `feature-peer*`: every token, the feature peer's store.
    let mut tokens: Vec<String> = Vec::new();
    let token = rt.block_on(async {
        let mut last = None;
        for i in 0..keys.max(1) {
            let limit = if i + 1 == keys.max(1) {
                presented
            } else {
                RateLimit::Unlimited
            };
            let issued = keyring
                .issue(NewKey::new("pk", &format!("t{}", i % 1000), "bench").rate_limit(limit))
                .await
                .unwrap();
            if what == "peer" {
                digests.push(Sha256::digest(issued.token.expose_secret().as_bytes()).into());
            }
            if what.starts_with("feature-peer") {
                tokens.push(issued.token.expose_secret().to_owned());
            }
            last = Some(issued.token);
        }
        last.unwrap()
    });

    let ok = service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let header = HeaderValue::from_str(token.expose_secret()).unwrap();
    match what {
        "layer" | "layer-unlimited" => {
            let service = ServiceBuilder::new()
                .layer(AuthLayer::new(keyring))
                .layer(RequireScopesLayer::all(["read"]).unwrap())
                .service(ok);
            layer_threads(&rt, &service, &header, n);
        }
        "peer" => {
            let service = ServiceBuilder::new()
                .layer(AsyncRequireAuthorizationLayer::new(common::StorePeer::new(
                    digests.into_iter(),
                )))
                .service(ok);
            layer_threads(&rt, &service, &header, n);
        }
        "feature-peer" | "feature-peer-unlimited" => {
            let last = tokens.last().cloned().unwrap_or_default();
            let limited = (what == "feature-peer").then_some(u32::MAX);
            let shared =
                common::feature_peer::Shared::new(tokens.iter().map(String::as_str), |t| {
                    if t == last {
                        limited
                    } else {
                        None
                    }
                });
            let service = ServiceBuilder::new()
                .layer_fn(|inner| shared.layer(inner))
                .layer(AsyncRequireAuthorizationLayer::new(
                    common::feature_peer::FeatureScopes("read"),
                ))
                .service(ok);
            layer_threads(&rt, &service, &header, n);
        }
        // The same requests without any layer: subtract from `layer`.
        "none" => layer_threads(&rt, &ok, &header, n),
        _ => verify_loop(&rt, &keyring, token.expose_secret(), n),
    }
    println!("{what}: {n} iterations over {keys} keys");
}
