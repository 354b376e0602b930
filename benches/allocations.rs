//! Heap allocations per call on the hot paths, counted with dhat's heap
//! profiler in testing mode (not a timing: the times are in
//! `benches/peers.rs`, whose rows this mirrors).
//!
//! ```sh
//! cargo bench --bench allocations
//! ```
//!
//! Each row is the average over 10 000 calls after 10 000 to warm up (maps
//! and buffers that grow once are not the hot path's). The layer rows
//! build their request in the loop: subtract `no_layer`.
#![allow(missing_docs)]

use std::convert::Infallible;

use http::{HeaderValue, Request, Response, StatusCode};
use keyward::http::{AuthLayer, RequireScopesLayer};
use keyward::{Pepper, TokenHasher};
use sha2::{Digest, Sha256};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_http::auth::AsyncRequireAuthorizationLayer;

mod common;

use common::{issue_keys, issue_limited, keyring, StorePeer, KEYS};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const CALLS: u64 = 10_000;

/// The allocations per call of `f`.
fn allocations(mut f: impl FnMut()) -> f64 {
    for _ in 0..CALLS {
        f();
    }
    let profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get().total_blocks;
    for _ in 0..CALLS {
        f();
    }
    let after = dhat::HeapStats::get().total_blocks;
    drop(profiler);
    (after - before) as f64 / CALLS as f64
}

fn layer_row<S>(rt: &tokio::runtime::Runtime, name: &str, service: S, token: &HeaderValue) -> f64
where
    S: Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
{
    let n = allocations(|| {
        let req = Request::get("/api/players")
            .header("x-api-key", token.clone())
            .body(String::new())
            .unwrap();
        let res = rt.block_on(service.clone().oneshot(req)).unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{name}");
    });
    println!("layer_100k_keys/{name}: {n:.2} allocations per request");
    n
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    for (name, hasher) in [
        ("keyward_sha256", TokenHasher::sha256()),
        (
            "keyward_hmac",
            TokenHasher::hmac(Pepper::new(1, vec![7; 32]).unwrap()),
        ),
    ] {
        let keyring = keyring(hasher);
        let tokens = issue_keys(&rt, &keyring);
        let token = &tokens[KEYS / 2];
        let n = allocations(|| assert!(rt.block_on(keyring.verify(token)).is_ok()));
        println!("verify_100k_keys/{name}: {n:.2} allocations per call");
    }

    let keyring = keyring(TokenHasher::sha256());
    let tokens = issue_keys(&rt, &keyring);
    let token = HeaderValue::from_str(&tokens[KEYS / 2]).unwrap();
    let limited = HeaderValue::from_str(&issue_limited(&rt, &keyring)).unwrap();
    let ok = service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let keyward = ServiceBuilder::new()
        .layer(AuthLayer::new(keyring))
        .layer(RequireScopesLayer::all(["read"]).unwrap())
        .service(ok);
    let none = layer_row(&rt, "no_layer", ok, &token);
    let on = layer_row(&rt, "keyward_limit_on", keyward.clone(), &limited);
    let off = layer_row(&rt, "keyward_unlimited", keyward, &token);
    let store = StorePeer::new(tokens.iter().map(|t| Sha256::digest(t.as_bytes()).into()));
    let peer = ServiceBuilder::new()
        .layer(AsyncRequireAuthorizationLayer::new(store))
        .service(ok);
    let tower = layer_row(&rt, "tower_http_store_peer", peer, &token);
    println!(
        "over no_layer: keyward_limit_on {:+.2}, keyward_unlimited {:+.2}, tower_http_store_peer {:+.2}",
        on - none,
        off - none,
        tower - none
    );
}
