//! Credential extraction on arbitrary header maps, through the public
//! surface: [`AuthLayer`] + [`RequireScopesLayer`] over a trivial service.
//!
//! Headers are built from the input: names from a short list or from raw
//! bytes, values as raw (possibly non-UTF-8) bytes or as the one valid
//! token, a revoked token or a tenant id, repeated at will. Never panics;
//! answers only 200, 400, 401, 403, 429 or 503; and never 2xx unless a
//! credential header carries the valid token.
#![no_main]

mod common;

use std::sync::OnceLock;

use common::Fixture;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::{HeaderMap, Request, Response, StatusCode};
use keyward::http::{AuthLayer, RequireScopesLayer};
use keyward::{KeyKind, Keyring, MemoryStore, NewKey, RateLimit, ScopeCatalog, ScopeStatus};
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use tower::{service_fn, ServiceBuilder, ServiceExt};

struct State {
    keyring: Keyring,
    valid: String,
    revoked: String,
}

fn fixture() -> &'static Fixture<State> {
    static FIXTURE: OnceLock<Fixture<State>> = OnceLock::new();
    common::fixture(&FIXTURE, |runtime| {
        let catalog = ScopeCatalog::builder()
            .scope("read", "Read", ScopeStatus::Enforced)
            .scope("write", "Write", ScopeStatus::Enforced)
            .build()
            .unwrap();
        let keyring = Keyring::builder()
            .store(MemoryStore::new())
            .kind(KeyKind::new("pk", catalog).unwrap())
            .build()
            .unwrap();
        let (valid, revoked) = runtime.block_on(async {
            let valid = keyring
                .issue(
                    // Unlimited: a rate limit would turn the valid key into
                    // 429s after 100 inputs and hide the success path.
                    NewKey::new("pk", "property_1", "valid")
                        .scopes(["read"])
                        .rate_limit(RateLimit::Unlimited),
                )
                .await
                .unwrap();
            let revoked = keyring
                .issue(NewKey::new("pk", "property_1", "revoked").scopes(["read"]))
                .await
                .unwrap();
            keyring.revoke(&revoked.info.id).await.unwrap();
            (
                valid.token.expose_secret().to_owned(),
                revoked.token.expose_secret().to_owned(),
            )
        });
        State {
            keyring,
            valid,
            revoked,
        }
    })
}

fn header_map(u: &mut Unstructured<'_>, fx: &State) -> ArbResult<HeaderMap> {
    let mut headers = HeaderMap::new();
    while !u.is_empty() && headers.len() < 16 {
        let name = match u.int_in_range(0u8..=4)? {
            0 => HeaderName::from_static("x-api-key"),
            1 => AUTHORIZATION,
            2 => HeaderName::from_static("x-property-id"),
            3 => HeaderName::from_static("x-api-key-2"),
            _ => match HeaderName::from_bytes(u.arbitrary::<&[u8]>()?) {
                Ok(name) => name,
                Err(_) => continue,
            },
        };
        let value: Vec<u8> = match u.int_in_range(0u8..=6)? {
            0 => fx.valid.clone().into_bytes(),
            1 => format!("Bearer {}", fx.valid).into_bytes(),
            2 => fx.revoked.clone().into_bytes(),
            3 => format!("bearer {}", fx.revoked).into_bytes(),
            4 => b"property_1".to_vec(),
            5 => {
                // The valid token with a few bytes changed.
                let mut v = fx.valid.clone().into_bytes();
                for _ in 0..u.int_in_range(1u8..=3)? {
                    let i = u.choose_index(v.len())?;
                    v[i] = u.arbitrary()?;
                }
                v
            }
            _ => u.arbitrary::<&[u8]>()?.to_vec(),
        };
        // Headers the http crate refuses (control bytes) can not arrive.
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            headers.append(name, value);
        }
    }
    Ok(headers)
}

/// Whether some credential header value holds the valid token.
fn carries_valid(headers: &HeaderMap, valid: &str) -> bool {
    let api = headers.get_all("x-api-key").iter();
    let auth = headers.get_all(AUTHORIZATION).iter();
    api.chain(auth)
        .any(|v| v.as_bytes().ends_with(valid.as_bytes()))
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let mut u = Unstructured::new(data);
    let Ok(headers) = header_map(&mut u, fx) else {
        return;
    };
    let mut req = Request::new(String::new());
    *req.headers_mut() = headers.clone();
    let service = ServiceBuilder::new()
        .layer(AuthLayer::new(fx.keyring.clone()))
        .layer(RequireScopesLayer::all(["read"]).unwrap())
        .service(service_fn(|_req: Request<String>| async {
            Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
        }));
    let res = fx
        .runtime
        .block_on(service.oneshot(req))
        .expect("infallible");
    let status = res.status();
    assert!(
        [
            StatusCode::OK,
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE,
        ]
        .contains(&status),
        "unexpected status {status} for {headers:?}"
    );
    if status.is_success() {
        assert!(
            carries_valid(&headers, &fx.valid),
            "2xx without the valid token: {headers:?}"
        );
    }
    let body = res.body();
    assert!(!body.contains(&fx.valid) && !body.contains(&fx.revoked));
});
