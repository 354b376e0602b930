//! The example server's management endpoints (`create-api-key`,
//! `revoke-api-key`) on arbitrary request bodies, through its real axum
//! router: never panics, never answers 5xx, and answers only the statuses
//! `examples/server/app.rs` documents.
//!
//! Half the inputs are raw bytes; the other half are JSON objects built from
//! the input, so the fuzzer reaches past the parser into validation.
#![no_main]

#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/server/app.rs"]
mod app;
mod common;

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::Fixture;
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tower::ServiceExt;

struct State {
    router: Router,
    manager: String,
}

fn fixture() -> &'static Fixture<State> {
    static FIXTURE: OnceLock<Fixture<State>> = OnceLock::new();
    common::fixture(&FIXTURE, |runtime| {
        let keyring = app::keyring();
        let keys = runtime.block_on(app::demo_keys(&keyring)).unwrap();
        let demo_manager = keys
            .into_iter()
            .find(|k| k.scopes.iter().any(|s| s == "keys:manage"))
            .expect("a key manager demo key");
        // The demo manager has the default 100 a minute: a fuzzer exhausts it
        // at once and would then only see 429s. Issue an unlimited twin.
        let manager = runtime
            .block_on(
                keyring.issue(
                    keyward::NewKey::new("pk", &demo_manager.tenant, "fuzz manager")
                        .scopes(["keys:manage"])
                        .rate_limit(keyward::RateLimit::Unlimited),
                ),
            )
            .unwrap()
            .token
            .expose_secret()
            .to_owned();
        State {
            router: app::router(keyring),
            manager,
        }
    })
}

/// A string that is often one the server knows.
fn text(u: &mut Unstructured<'_>, known: &[&str]) -> ArbResult<Value> {
    Ok(if u.arbitrary::<bool>()? {
        Value::from(*u.choose(known)?)
    } else {
        Value::from(u.arbitrary::<String>()?)
    })
}

/// A JSON value for a field: usually of the right shape, sometimes not.
fn field(u: &mut Unstructured<'_>, known: &[&str], list: bool) -> ArbResult<Value> {
    Ok(match u.int_in_range(0u8..=5)? {
        0 => Value::Null,
        1 => Value::from(u.arbitrary::<i64>()?),
        2 if !list => Value::Array(vec![text(u, known)?]),
        _ if list => {
            let n = u.int_in_range(0..=4)?;
            Value::Array((0..n).map(|_| text(u, known)).collect::<ArbResult<_>>()?)
        }
        _ => text(u, known)?,
    })
}

fn structured(u: &mut Unstructured<'_>, create: bool) -> ArbResult<Vec<u8>> {
    let fields: &[(&str, &[&str], bool)] = if create {
        &[
            ("property_id", &["property_demo", "org_demo", ""], false),
            ("name", &["new key", "", "x"], false),
            (
                "scopes",
                &["read", "write", "keys:manage", "*", "games:read", "READ"],
                true,
            ),
            ("expires_in", &["30d", "90d", "1y", "never", "0d"], false),
            ("extra", &["x"], false),
        ]
    } else {
        &[("id", &["", "key_0"], false), ("extra", &["x"], false)]
    };
    let mut object = Map::new();
    for (name, known, list) in fields {
        if u.arbitrary::<bool>()? {
            object.insert(name.to_string(), field(u, known, *list)?);
        }
    }
    Ok(serde_json::to_vec(&object).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let mut u = Unstructured::new(data);
    let Ok((create, raw)) = u.arbitrary::<(bool, bool)>() else {
        return;
    };
    let body = if raw {
        u.take_rest().to_vec()
    } else {
        match structured(&mut u, create) {
            Ok(body) => body,
            Err(_) => return,
        }
    };
    let path = if create {
        "/api/functions/create-api-key"
    } else {
        "/api/functions/revoke-api-key"
    };
    let req = Request::post(path)
        .header("x-api-key", &fx.manager)
        .header("content-type", "application/json")
        .body(Body::from(body.clone()))
        .unwrap();
    let res = fx
        .runtime
        .block_on(fx.router.clone().oneshot(req))
        .expect("infallible");
    let status = res.status();
    let documented: &[StatusCode] = if create {
        &[
            StatusCode::CREATED,
            StatusCode::BAD_REQUEST,
            StatusCode::FORBIDDEN,
        ]
    } else {
        &[
            StatusCode::OK,
            StatusCode::BAD_REQUEST,
            StatusCode::NOT_FOUND,
        ]
    };
    assert!(
        documented.contains(&status),
        "{path}: status {status} for body {:?}",
        String::from_utf8_lossy(&body)
    );
});
