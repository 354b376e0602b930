//! "Soon" scopes, visible: the response lists the soon scopes the caller
//! lacks (`AuthLayer::soon_scopes_header`, opt-in) and carries the
//! `WouldDeny` in its extensions for router-wide middleware. And a 403
//! spends quota: the rate limit counts authenticated requests.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::header::HeaderName;
use http::{Request, Response};
use keyward::http::{AuthLayer, RequireScopesLayer, WouldDeny, SOON_SCOPES_HEADER};
use keyward::{Keyring, NewKey, RateLimit};
use tower::{ServiceBuilder, ServiceExt};

/// A handler that sets a response extension of its own.
#[derive(Clone, Debug, PartialEq)]
struct Mine(&'static str);

async fn handler(req: Request<String>) -> Result<Response<String>, Infallible> {
    let mut res = Response::new("ok".to_owned());
    res.extensions_mut().insert(Mine("kept"));
    if req.headers().contains_key("x-own-would-deny") {
        // A handler (or an inner layer) that put a WouldDeny of its own.
        res.extensions_mut().insert(WouldDeny::default());
    }
    Ok(res)
}

async fn pl(keyring: &Keyring, scopes: &[&str], limit: Option<u32>) -> String {
    let mut new = NewKey::new("pl", "org_1", "ci").scopes(scopes.iter().copied());
    if let Some(n) = limit {
        new = new.rate_limit(RateLimit::per_minute(n).unwrap());
    }
    keyring
        .issue(new)
        .await
        .unwrap()
        .token
        .expose_secret()
        .to_owned()
}

/// Sends `token` through `layer` and the requirements (outermost first);
/// the response and what a router-wide middleware outside the layer saw.
async fn call(
    layer: AuthLayer,
    requirements: &[&str],
    token: &str,
) -> (Response<String>, Option<WouldDeny>) {
    call_with(layer, requirements, token, false).await
}

async fn call_with(
    layer: AuthLayer,
    requirements: &[&str],
    token: &str,
    own_would_deny: bool,
) -> (Response<String>, Option<WouldDeny>) {
    let seen = Arc::new(Mutex::new(None));
    let outer = seen.clone();
    let builder = ServiceBuilder::new()
        .map_response(move |res: Response<String>| {
            *outer.lock().unwrap() = res.extensions().get::<WouldDeny>().cloned();
            res
        })
        .layer(layer);
    // Each requirement wraps the handler, the first outermost.
    let mut service = tower::util::BoxCloneService::new(tower::service_fn(handler));
    for scope in requirements.iter().rev() {
        service = tower::util::BoxCloneService::new(
            ServiceBuilder::new()
                .layer(RequireScopesLayer::all([*scope]).unwrap())
                .service(service),
        );
    }
    let mut req = Request::get("/").header("authorization", format!("Bearer {token}"));
    if own_would_deny {
        req = req.header("x-own-would-deny", "1");
    }
    let res = builder
        .service(service)
        .oneshot(req.body(String::new()).unwrap())
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    (res, seen)
}

fn header() -> HeaderName {
    HeaderName::from_static(SOON_SCOPES_HEADER)
}

#[tokio::test]
async fn the_header_lists_every_soon_scope_the_caller_lacks() {
    let (keyring, _) = common::keyring();
    let token = pl(&keyring, &["versions:write"], None).await;
    let layer = AuthLayer::new(keyring).soon_scopes_header(header());
    let (res, seen) = call(layer, &["games:read", "exports:read"], &token).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()[SOON_SCOPES_HEADER], "exports:read games:read");
    let seen = seen.expect("router-wide middleware sees the WouldDeny");
    let missing: Vec<&str> = seen.missing().iter().map(|s| s.as_str()).collect();
    assert_eq!(missing, ["exports:read", "games:read"]);
    assert_eq!(res.extensions().get::<Mine>(), Some(&Mine("kept")));
}

/// A `WouldDeny` already in the response is added to, not replaced.
#[tokio::test]
async fn a_would_deny_already_in_the_response_is_merged() {
    let (keyring, _) = common::keyring();
    let token = pl(&keyring, &["versions:write"], None).await;
    let layer = AuthLayer::new(keyring).soon_scopes_header(header());
    let (res, _) = call_with(layer, &["games:read"], &token, true).await;
    assert_eq!(res.headers()[SOON_SCOPES_HEADER], "games:read");
}

#[tokio::test]
async fn nothing_is_listed_when_nothing_is_missing_or_enforced() {
    let (keyring, _) = common::keyring();
    let token = pl(&keyring, &["games:read", "versions:write"], None).await;
    let layer = AuthLayer::new(keyring).soon_scopes_header(header());
    // Holds the soon scope: nothing would deny.
    let (res, seen) = call(layer.clone(), &["games:read"], &token).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get(SOON_SCOPES_HEADER).is_none());
    assert!(seen.is_none());
    // An enforced scope it holds: nothing either.
    let (res, _) = call(layer, &["versions:write"], &token).await;
    assert!(res.headers().get(SOON_SCOPES_HEADER).is_none());
}

#[tokio::test]
async fn without_the_option_there_is_no_header_but_the_extension_stays() {
    let (keyring, _) = common::keyring();
    let token = pl(&keyring, &["versions:write"], None).await;
    let (res, seen) = call(AuthLayer::new(keyring), &["games:read"], &token).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get(SOON_SCOPES_HEADER).is_none());
    assert!(seen.is_some());
}

/// The key's rate limit counts authenticated requests, refused by a scope
/// check or not: a 403 spends one (as a 200 does), so probing routes the
/// key may not use is throttled like any other traffic.
#[tokio::test]
async fn a_403_spends_quota() {
    let (keyring, _) = common::keyring();
    let token = pl(&keyring, &["games:read"], Some(2)).await;
    let layer = AuthLayer::new(keyring);
    for _ in 0..2 {
        let (res, _) = call(layer.clone(), &["versions:write"], &token).await;
        assert_eq!(res.status(), 403);
    }
    let (res, _) = call(layer, &["games:read"], &token).await;
    assert_eq!(res.status(), 429);
}
