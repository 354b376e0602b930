//! keyward side by side with what a team would use instead, in the same
//! criterion groups: token generation, verification, and (with the `http`
//! feature) the tower layer; and `parts`: parsing, hashing and issuing alone.
//!
//! ```sh
//! cargo bench --bench peers -- generate
//! cargo bench --bench peers -- verify_100k_keys
//! cargo bench --bench peers -- layer_100k_keys
//! ```
#![allow(missing_docs)]

use std::collections::HashMap;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hmac::{Hmac, Mac};
use keyward::{NewKey, Pepper, TokenFormat, TokenHasher, TokenKey, TokenKind};
use prefixed_api_key::{PrefixedApiKey, PrefixedApiKeyController};
use sha2::{Digest, Sha256};

mod common;

#[cfg(feature = "http")]
use common::{feature_peer, StorePeer};
use common::{issue_keys, issue_limited, keyring, keyring_with, token_key, KEYS};

fn pak_controller() -> PrefixedApiKeyController<rand08::rngs::ThreadRng, Sha256> {
    PrefixedApiKeyController::configure()
        .prefix("pk".to_owned())
        .rng(rand08::thread_rng())
        .default_lengths()
        .finalize()
        .unwrap()
}

fn generation(c: &mut Criterion) {
    let mut group = c.benchmark_group("generate");
    let kind = TokenKind::new("pk").unwrap();
    group.bench_function("keyward", |b| b.iter(|| kind.generate()));
    let pak = pak_controller();
    group.bench_function("prefixed-api-key", |b| b.iter(|| pak.generate_key()));
    group.finish();
}

/// The token key of the `*_tagged` rows.
fn verification(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("verify_100k_keys");
    let mut tokens = Vec::new();
    // `_tagged`: the kind has a token key, so verify also checks the tag.
    for (name, hasher, key) in [
        ("keyward_sha256", TokenHasher::sha256(), None),
        (
            "keyward_sha256_tagged",
            TokenHasher::sha256(),
            Some(token_key()),
        ),
        (
            "keyward_hmac",
            TokenHasher::hmac(Pepper::new(1, vec![7; 32]).unwrap()),
            None,
        ),
    ] {
        let keyring = keyring_with(hasher, key);
        tokens = issue_keys(&rt, &keyring);
        let token = &tokens[KEYS / 2];
        group.bench_function(BenchmarkId::new(name, KEYS), |b| {
            b.to_async(&rt)
                .iter(|| async { keyring.verify(token).await.is_ok() })
        });
    }

    // prefixed-api-key: parse, look the short token up, compare the hash.
    let pak = pak_controller();
    let mut by_short: HashMap<String, String> = HashMap::with_capacity(KEYS);
    let mut sample = None;
    for _ in 0..KEYS {
        let (key, hash) = pak.generate_key_and_hash();
        by_short.insert(key.short_token().to_owned(), hash);
        sample = Some(key.to_string());
    }
    let sample = sample.unwrap();
    group.bench_function(BenchmarkId::new("prefixed-api-key", KEYS), |b| {
        b.iter(|| {
            let key = PrefixedApiKey::from_string(&sample).unwrap();
            let hash = by_short.get(key.short_token()).unwrap();
            pak.check_hash(&key, hash)
        })
    });

    // The floor: one SHA-256 of the token and one map lookup.
    let floor: HashMap<[u8; 32], usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (Sha256::digest(t.as_bytes()).into(), i))
        .collect();
    let probe = &tokens[KEYS / 2];
    group.bench_function(BenchmarkId::new("floor_sha256_plus_lookup", KEYS), |b| {
        b.iter(|| {
            let digest: [u8; 32] = Sha256::digest(probe.as_bytes()).into();
            floor.get(&digest).copied()
        })
    });

    // The HMAC variant's floor: one HMAC-SHA256 under a 32-byte pepper
    // (its key schedule prepared once, as keyward's is) and one lookup.
    let mac = Hmac::<Sha256>::new_from_slice(&[7; 32]).unwrap();
    let tag = |t: &str| -> [u8; 32] {
        let mut m = mac.clone();
        m.update(t.as_bytes());
        m.finalize().into_bytes().into()
    };
    let floor: HashMap<[u8; 32], usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (tag(t), i))
        .collect();
    group.bench_function(BenchmarkId::new("floor_hmac_plus_lookup", KEYS), |b| {
        b.iter(|| floor.get(&tag(probe)).copied())
    });
    group.finish();
}

/// The tower layer in process: `oneshot` on a trivial service answering 200,
/// with a valid `X-Api-Key` among 100,000 keys. keyward's `AuthLayer` +
/// `RequireScopesLayer` against tower-http's `ValidateRequestHeaderLayer`
/// comparing the header with one expected value, and against no layer at all:
/// a layer's per-request overhead is its time minus `no_layer`'s.
#[cfg(feature = "http")]
fn layer(c: &mut Criterion) {
    use std::convert::Infallible;

    use http::{HeaderValue, Request, Response, StatusCode};
    use keyward::http::{AuthLayer, RequireScopesLayer};
    use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
    use tower_http::auth::AsyncRequireAuthorizationLayer;
    use tower_http::validate_request::ValidateRequestHeaderLayer;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let keyring = keyring(TokenHasher::sha256());
    let tokens = issue_keys(&rt, &keyring);
    let token = HeaderValue::from_str(&tokens[KEYS / 2]).unwrap();
    let request = || {
        Request::get("/api/players")
            .header("x-api-key", token.clone())
            .body(String::new())
            .unwrap()
    };
    let ok = service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });

    /// Checks the service answers 200, then measures one request per
    /// iteration on a clone of it (as a server clones per connection).
    fn bench<S>(
        group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        rt: &tokio::runtime::Runtime,
        name: &str,
        service: S,
        request: &dyn Fn() -> Request<String>,
    ) where
        S: Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
    {
        let res = rt.block_on(service.clone().oneshot(request())).unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{name}: {}", res.body());
        group.bench_function(BenchmarkId::new(name, KEYS), |b| {
            b.to_async(rt).iter(|| service.clone().oneshot(request()))
        });
    }

    // The default configuration: the key's rate limit checked by the
    // layer's in-memory limiter (a limit the bench never reaches), its
    // `RateLimit` headers on every response.
    let limited = HeaderValue::from_str(&issue_limited(&rt, &keyring)).unwrap();
    let limited_request = || {
        Request::get("/api/players")
            .header("x-api-key", limited.clone())
            .body(String::new())
            .unwrap()
    };

    let mut group = c.benchmark_group("layer_100k_keys");
    let keyward = ServiceBuilder::new()
        .layer(AuthLayer::new(keyring))
        .layer(RequireScopesLayer::all(["read"]).unwrap())
        .service(ok);
    let res = rt
        .block_on(keyward.clone().oneshot(limited_request()))
        .unwrap();
    assert!(
        res.headers().contains_key("ratelimit-policy"),
        "the limit is checked"
    );
    bench(
        &mut group,
        &rt,
        "keyward_limit_on",
        keyward.clone(),
        &limited_request,
    );
    bench(&mut group, &rt, "keyward_unlimited", keyward, &request);

    // The fair peer: the same store-backed check written with tower-http's
    // `AsyncRequireAuthorizationLayer` (SHA-256 of the header, a lookup
    // among the same 100 000 hashes behind a lock, as a store that can
    // revoke needs, revocation and expiry, the record in the extensions).
    let store = StorePeer::new(tokens.iter().map(|t| Sha256::digest(t.as_bytes()).into()));
    let peer = ServiceBuilder::new()
        .layer(AsyncRequireAuthorizationLayer::new(store))
        .service(ok);
    bench(&mut group, &rt, "tower_http_store_peer", peer, &request);

    // The fair peer doing keyward's other work too, plainly written
    // (`common::feature_peer`): what a lean single-purpose layer pays.
    let shared = feature_peer::Shared::new(
        tokens
            .iter()
            .map(String::as_str)
            .chain([limited.to_str().unwrap()]),
        |t| (t == limited.to_str().unwrap()).then_some(u32::MAX),
    );
    let feature = ServiceBuilder::new()
        .layer_fn(|inner| shared.layer(inner))
        .layer(AsyncRequireAuthorizationLayer::new(
            feature_peer::FeatureScopes("read"),
        ))
        .service(ok);
    let res = rt
        .block_on(feature.clone().oneshot(limited_request()))
        .unwrap();
    assert!(
        res.headers().contains_key("ratelimit"),
        "the limit is checked"
    );
    // It refuses what keyward refuses in these ways.
    let unknown = TokenKind::new("pk").unwrap().generate();
    for (values, refused) in [
        (vec![unknown.expose_secret()], StatusCode::UNAUTHORIZED),
        (vec![token.to_str().unwrap(); 2], StatusCode::BAD_REQUEST),
        (vec!["pk_not a token"], StatusCode::BAD_REQUEST),
        (vec![], StatusCode::UNAUTHORIZED),
    ] {
        let mut req = Request::get("/api/players");
        for value in values {
            req = req.header("x-api-key", value);
        }
        let req = req.body(String::new()).unwrap();
        let res = rt.block_on(feature.clone().oneshot(req)).unwrap();
        assert_eq!(res.status(), refused);
    }
    bench(
        &mut group,
        &rt,
        "feature_peer_limit_on",
        feature.clone(),
        &limited_request,
    );
    bench(&mut group, &rt, "feature_peer_unlimited", feature, &request);

    let expected = token.clone();
    #[allow(clippy::result_large_err)]
    let check = move |req: &mut Request<String>| match req.headers().get("x-api-key") {
        Some(value) if value == expected => Ok(()),
        _ => {
            let mut res = Response::new(String::new());
            *res.status_mut() = StatusCode::UNAUTHORIZED;
            Err(res)
        }
    };
    let static_check = ServiceBuilder::new()
        .layer(ValidateRequestHeaderLayer::custom(check))
        .service(ok);
    bench(
        &mut group,
        &rt,
        "tower_http_validate_static",
        static_check,
        &request,
    );

    bench(&mut group, &rt, "no_layer", ok, &request);
    group.finish();
}

#[cfg(not(feature = "http"))]
fn layer(_: &mut Criterion) {}

/// Pieces of the hot path and the cost of issuing, without a peer.
fn parts(c: &mut Criterion) {
    let mut group = c.benchmark_group("parts");
    let kind = TokenKind::new("pk").unwrap();
    let format = TokenFormat::new([kind.clone()]);
    let token = kind.generate();
    group.bench_function("parse", |b| {
        b.iter(|| format.parse(token.expose_secret()).is_ok())
    });
    // The tag check's cost is `parse_tagged` minus `parse`; a forged tag
    // costs the same check (no previous key configured).
    let tagged = kind.clone().key(token_key());
    let tagged_format = TokenFormat::new([tagged.clone()]);
    let tagged_token = tagged.generate();
    let forged = TokenKind::new("pk")
        .unwrap()
        .key(TokenKey::new(1, vec![1; 32]).unwrap())
        .generate();
    group.bench_function("parse_tagged", |b| {
        b.iter(|| tagged_format.parse(tagged_token.expose_secret()).is_ok())
    });
    group.bench_function("parse_tagged_forged", |b| {
        b.iter(|| tagged_format.parse(forged.expose_secret()).is_err())
    });
    let sha = TokenHasher::sha256();
    let hmac = TokenHasher::hmac(Pepper::new(1, vec![7; 32]).unwrap());
    group.bench_function("hash_sha256", |b| {
        b.iter(|| sha.hash(token.expose_secret()))
    });
    group.bench_function("hash_hmac", |b| b.iter(|| hmac.hash(token.expose_secret())));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let keyring = keyring(TokenHasher::sha256());
    group.bench_function("issue_memory_store", |b| {
        b.to_async(&rt)
            .iter(|| async { keyring.issue(NewKey::new("pk", "t", "bench")).await.is_ok() })
    });
    group.finish();
}

criterion_group!(benches, generation, verification, layer, parts);
criterion_main!(benches);
