//! What a dashboard JWT costs to verify: `JwtAuthenticator::verify` with a
//! warm key cache, per algorithm (RS256 with a 2048-bit key, ES256,
//! EdDSA), beside the floor: plain `jsonwebtoken::decode` with a fixed
//! decoding key and a `Validation` doing the same checks (algorithm, `iss`,
//! `aud`, `exp`). Then `authenticate` (verification plus the principal
//! mapping), and two refusals: a bad signature (the full cost of a forged
//! token) and a malformed token (refused before any key is looked up).
//!
//! The key set comes from a fixed in-process `JwksFetcher`: no network, and
//! the cache is warmed with `refresh` before measuring.
//!
//! ```sh
//! cargo bench --features jwt --bench jwt
//! cargo bench --features jwt --bench jwt -- jwt/verify
//! ```
#![allow(missing_docs)]

#[path = "../tests/common/issuer.rs"]
mod issuer;

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use issuer::SigningKey;
use jsonwebtoken::{DecodingKey, Validation};
use keyward::http::{ExternalAuthenticator, ExternalPrincipal};
use keyward::jwt::{JwksFetchError, JwksFetcher, JwksResponse, JwtAlgorithm, JwtAuthenticator};
use keyward::{ScopeCatalog, ScopeStatus, TenantId};
use serde_json::{json, Value};

const ISS: &str = "https://issuer.bench/";
const AUD: &str = "dashboard";

struct Fixed(Vec<u8>);

#[keyward::async_trait]
impl JwksFetcher for Fixed {
    async fn fetch(&self, _url: &str) -> Result<JwksResponse, JwksFetchError> {
        Ok(JwksResponse::new(self.0.clone()).cache_control("max-age=86400"))
    }
}

fn claims() -> Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    json!({
        "iss": ISS, "aud": AUD, "sub": "user-1", "iat": now, "exp": now + 86_400,
        "scope": "openid read", "custom:properties": ["prop_1", "prop_2"],
    })
}

fn floor_key(key: &SigningKey) -> DecodingKey {
    let jwk = &key.jwk;
    let s = |name: &str| jwk[name].as_str().unwrap();
    match jwk["kty"].as_str().unwrap() {
        "RSA" => DecodingKey::from_rsa_components(s("n"), s("e")).unwrap(),
        "EC" => DecodingKey::from_ec_components(s("x"), s("y")).unwrap(),
        _ => DecodingKey::from_ed_components(s("x")).unwrap(),
    }
}

fn bench(c: &mut Criterion) {
    // Timers on: a fetch (the warm-up `refresh`) runs under the policy's
    // fetch timeout.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let keys = [
        ("RS256", SigningKey::rs256("rs")),
        ("ES256", SigningKey::es256("es")),
        ("EdDSA", SigningKey::eddsa("ed")),
    ];
    let set: Vec<&SigningKey> = keys.iter().map(|(_, k)| k).collect();
    let catalog = Arc::new(
        ScopeCatalog::builder()
            .scope("read", "", ScopeStatus::Enforced)
            .build()
            .unwrap(),
    );
    let auth = JwtAuthenticator::builder("https://issuer.bench/jwks.json")
        .issuer(ISS)
        .audience([AUD])
        .algorithms([
            JwtAlgorithm::RS256,
            JwtAlgorithm::ES256,
            JwtAlgorithm::EdDSA,
        ])
        .fetcher(Fixed(issuer::jwks(&set).to_string().into_bytes()))
        .principal(move |claims| {
            let tenants = claims
                .strings("custom:properties")
                .filter_map(TenantId::parse);
            let scopes = catalog.grant_known(claims.scopes());
            Ok(ExternalPrincipal::new(
                claims.subject(),
                tenants,
                scopes,
                catalog.clone(),
            ))
        })
        .build()
        .unwrap();
    assert_eq!(rt.block_on(auth.refresh()).unwrap(), 3);

    let mut group = c.benchmark_group("jwt");
    for (name, key) in &keys {
        let token = key.sign(&claims());
        assert!(rt.block_on(auth.verify(&token)).is_ok());
        group.bench_function(format!("verify/{name}"), |b| {
            b.to_async(&rt)
                .iter(|| async { auth.verify(&token).await.unwrap() })
        });
        let decoding = floor_key(key);
        let mut validation = Validation::new(key.alg);
        validation.set_issuer(&[ISS]);
        validation.set_audience(&[AUD]);
        assert!(jsonwebtoken::decode::<Value>(&token, &decoding, &validation).is_ok());
        group.bench_function(format!("floor_jsonwebtoken/{name}"), |b| {
            b.iter(|| jsonwebtoken::decode::<Value>(&token, &decoding, &validation).unwrap())
        });
    }
    let (_, es) = &keys[1];
    let payload = claims();
    let token = es.sign(&payload);
    group.bench_function("authenticate/ES256", |b| {
        b.to_async(&rt)
            .iter(|| async { auth.authenticate(&token).await.unwrap() })
    });
    // A well-formed signature by another P-256 key under the same `kid`, so
    // the whole ECDSA verification runs before the refusal (an all-zero
    // signature would be refused on parsing, r = 0, and understate it).
    let forged = SigningKey::es256("es").sign(&payload);
    assert!(matches!(
        rt.block_on(auth.verify(&forged)),
        Err(keyward::http::ExternalAuthError::Invalid)
    ));
    group.bench_function("refuse_bad_signature/ES256", |b| {
        b.to_async(&rt)
            .iter(|| async { auth.verify(&forged).await.unwrap_err() })
    });
    group.bench_function("refuse_malformed", |b| {
        b.to_async(&rt)
            .iter(|| async { auth.verify("not.a.jwt").await.unwrap_err() })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
