//! Faults behind the authentication layer: a store or an external
//! authenticator that errors, hangs, is slow or panics never lets a request
//! reach the handler, and a hang is cut at the verification timeout (503
//! `auth_unavailable`). Time is tokio's paused clock, so no test really waits.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::keyring_on;
use http::{Request, Response, StatusCode};
use keyward::http::{
    AuthLayer, ExternalAuthError, ExternalAuthenticator, ExternalPrincipal, RequireScopesLayer,
};
use keyward::testing::{Fault, FaultyStore, Op};
use keyward::{Keyring, MemoryStore, NewKey};
use tokio::time::Instant;
use tower::{service_fn, ServiceBuilder, ServiceExt};

/// Bearer values name their fault: `jwt.invalid`, `jwt.expired`,
/// `jwt.down`, `jwt.panic`, `jwt.hang`.
struct FaultyAuthenticator;

#[async_trait]
impl ExternalAuthenticator for FaultyAuthenticator {
    async fn authenticate(&self, bearer: &str) -> Result<ExternalPrincipal, ExternalAuthError> {
        match bearer {
            "jwt.invalid" => Err(ExternalAuthError::Invalid),
            "jwt.expired" => Err(ExternalAuthError::Expired),
            "jwt.down" => Err(ExternalAuthError::unavailable("jwks unreachable")),
            "jwt.panic" => panic!("authenticator bug"),
            "jwt.hang" => std::future::pending().await,
            other => panic!("unexpected bearer {other}"),
        }
    }
}

/// A `read` route behind the layer, and whether its handler ever ran.
fn route(
    layer: AuthLayer,
) -> (
    impl tower::Service<
            Request<String>,
            Response = Response<String>,
            Error = Infallible,
            Future = impl Send,
        > + Send,
    Arc<AtomicBool>,
) {
    let called = Arc::new(AtomicBool::new(false));
    let flag = called.clone();
    let handler = service_fn(move |_req: Request<String>| {
        flag.store(true, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new("ok".to_owned())) }
    });
    let svc = ServiceBuilder::new()
        .layer(layer.external(FaultyAuthenticator))
        .layer(RequireScopesLayer::all(["read"]).unwrap())
        .service(handler);
    (svc, called)
}

fn api_key(token: &str) -> Request<String> {
    Request::get("/")
        .header("x-api-key", token)
        .body(String::new())
        .unwrap()
}

fn bearer(value: &str) -> Request<String> {
    Request::get("/")
        .header("authorization", format!("Bearer {value}"))
        .body(String::new())
        .unwrap()
}

/// Sends `req` through the layer; the response and whether the handler ran.
async fn send(layer: AuthLayer, req: Request<String>) -> (Response<String>, bool) {
    let (svc, called) = route(layer);
    let res = svc.oneshot(req).await.unwrap();
    (res, called.load(Ordering::SeqCst))
}

#[track_caller]
fn assert_refused(res: &Response<String>, called: bool, status: StatusCode, code: &str) {
    assert_eq!(res.status(), status, "{}", res.body());
    assert!(
        res.body().contains(&format!(r#""error":"{code}""#)),
        "{}",
        res.body()
    );
    assert!(!called, "the handler ran for a refused request");
}

#[track_caller]
fn assert_unavailable(res: &Response<String>, called: bool) {
    assert_refused(
        res,
        called,
        StatusCode::SERVICE_UNAVAILABLE,
        "auth_unavailable",
    );
    assert!(res.headers().get("www-authenticate").is_none());
}

async fn keyring_with_key() -> (Keyring, FaultyStore, String) {
    let store = FaultyStore::new(MemoryStore::new());
    let (keyring, _) = keyring_on(store.clone());
    let issued = keyring.issue(NewKey::new("pk", "p", "k")).await.unwrap();
    let token = issued.token.expose_secret().to_owned();
    (keyring, store, token)
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_is_503() {
    let (keyring, store, token) = keyring_with_key().await;
    store.set_fault_on(Op::FindByHash, Fault::Fail);
    let (res, called) = send(AuthLayer::new(keyring.clone()), api_key(&token)).await;
    assert_unavailable(&res, called);

    store.set_fault_on(Op::FindByHash, Fault::None);
    let (res, called) = send(AuthLayer::new(keyring), api_key(&token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(called);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_store_is_503_at_the_default_timeout() {
    let (keyring, store, token) = keyring_with_key().await;
    store.set_fault_on(Op::FindByHash, Fault::Hang);
    let began = Instant::now();
    let (res, called) = send(AuthLayer::new(keyring), api_key(&token)).await;
    assert_unavailable(&res, called);
    assert_eq!(began.elapsed(), AuthLayer::DEFAULT_VERIFY_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_slow_store_is_503_past_the_timeout_and_200_within_it() {
    let (keyring, store, token) = keyring_with_key().await;
    store.set_fault_on(Op::FindByHash, Fault::Delay(Duration::from_secs(2)));

    let began = Instant::now();
    let short = AuthLayer::new(keyring.clone()).verify_timeout(Duration::from_secs(1));
    let (res, called) = send(short, api_key(&token)).await;
    assert_unavailable(&res, called);
    assert_eq!(began.elapsed(), Duration::from_secs(1));

    let began = Instant::now();
    let long = AuthLayer::new(keyring).verify_timeout(Duration::from_secs(3));
    let (res, called) = send(long, api_key(&token)).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", res.body());
    assert!(called);
    assert_eq!(began.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn external_authenticator_errors_are_401_or_503() {
    let (keyring, _, _) = keyring_with_key().await;
    for (value, status, code) in [
        ("jwt.invalid", StatusCode::UNAUTHORIZED, "invalid_token"),
        ("jwt.expired", StatusCode::UNAUTHORIZED, "token_expired"),
        (
            "jwt.down",
            StatusCode::SERVICE_UNAVAILABLE,
            "auth_unavailable",
        ),
    ] {
        let (res, called) = send(AuthLayer::new(keyring.clone()), bearer(value)).await;
        assert_refused(&res, called, status, code);
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_external_authenticator_never_reaches_the_handler() {
    let (keyring, _, _) = keyring_with_key().await;
    let (svc, called) = route(AuthLayer::new(keyring));
    let task = tokio::spawn(svc.oneshot(bearer("jwt.panic")));
    assert!(task.await.unwrap_err().is_panic());
    assert!(!called.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn a_hanging_external_authenticator_is_503_at_the_timeout() {
    let (keyring, _, _) = keyring_with_key().await;
    let began = Instant::now();
    let layer = AuthLayer::new(keyring).verify_timeout(Duration::from_millis(250));
    let (res, called) = send(layer, bearer("jwt.hang")).await;
    assert_unavailable(&res, called);
    assert_eq!(began.elapsed(), Duration::from_millis(250));
}

/// The keyring's clock is manual (last-used interval 60 s); tokio's is
/// paused. A failed or cut last-used write keeps its batch pending for the
/// next attempt.
#[tokio::test(start_paused = true)]
async fn a_failed_or_hung_last_used_write_keeps_its_batch() {
    failed_or_hung_last_used_writes(false).await;
}

/// The same when the lookup is answered at once (an in-memory store): the
/// layer decides without a future, then waits for the due write.
#[tokio::test(start_paused = true)]
async fn a_failed_or_hung_last_used_write_keeps_its_batch_after_a_lookup_from_memory() {
    failed_or_hung_last_used_writes(true).await;
}

async fn failed_or_hung_last_used_writes(lookups_now: bool) {
    let store = FaultyStore::new(MemoryStore::new());
    store.set_lookups_now(lookups_now);
    let (keyring, clock) = keyring_on(store.clone());
    let issued = keyring.issue(NewKey::new("pk", "p", "k")).await.unwrap();
    let id = issued.info.id().clone();
    let token = issued.token.expose_secret().to_owned();
    let layer = || AuthLayer::new(keyring.clone()).verify_timeout(Duration::from_secs(1));

    let (res, _) = send(layer(), api_key(&token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(keyring.pending_last_used(), 1);

    // A failing write does not fail the request, and keeps the batch.
    store.set_fault_on(Op::Touch, Fault::Fail);
    clock.advance(std::time::Duration::from_secs(60));
    let (res, called) = send(layer(), api_key(&token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(called);
    assert_eq!(keyring.pending_last_used(), 1);

    // A hung write holds the request until the timeout, which refuses it
    // (the verification did not finish) and puts the batch back. Only the
    // one request per interval that carries the write is affected.
    store.set_fault_on(Op::Touch, Fault::Hang);
    clock.advance(std::time::Duration::from_secs(60));
    let (res, called) = send(layer(), api_key(&token)).await;
    assert_unavailable(&res, called);
    assert_eq!(keyring.pending_last_used(), 1);
    let (res, _) = send(layer(), api_key(&token)).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "not due again before an interval"
    );

    // Once the store answers, the next due request writes the batch.
    store.set_fault_on(Op::Touch, Fault::None);
    clock.advance(std::time::Duration::from_secs(60));
    let (res, _) = send(layer(), api_key(&token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(keyring.pending_last_used(), 0);
    let info = keyring.get(&id).await.unwrap();
    assert_eq!(
        info.last_used_at(),
        Some(common::start() + time::Duration::seconds(180))
    );
}
