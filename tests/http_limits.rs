//! Rate limits through the layers, on an injected clock (no sleeping): the
//! per-key limit of `AuthLayer` and the per-IP / per-account `ThrottleLayer`,
//! with exact admission counts, `Retry-After` and `RateLimit` values.

mod common;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use common::{keyring, player_os, start};
use http::{Request, Response, StatusCode};
use keyward::http::{
    AuthLayer, ExternalAuthError, ExternalAuthenticator, ExternalPrincipal, RequireScopesLayer,
    ThrottleLayer,
};
use keyward::ratelimit::{LimitError, MemoryRateLimiter, Quota, RateLimiter};
use keyward::{Keyring, ManualClock, NewKey, RateDecision, RateLimit, StoreError, TenantId};
use serde_json::Value;
use tower::{ServiceBuilder, ServiceExt};

async fn ok(req: Request<String>) -> Result<Response<String>, Infallible> {
    let seen = req.extensions().get::<RateDecision>().map(|d| d.remaining);
    Ok(Response::new(format!("{seen:?}")))
}

async fn send(layer: &AuthLayer, req: Request<String>) -> Response<String> {
    ServiceBuilder::new()
        .layer(layer.clone())
        .service_fn(ok)
        .oneshot(req)
        .await
        .unwrap()
}

fn with_key(token: &str) -> Request<String> {
    Request::get("/")
        .header("x-api-key", token)
        .body(String::new())
        .unwrap()
}

async fn issue(keyring: &Keyring, limit: RateLimit) -> String {
    let issued = keyring
        .issue(NewKey::new("pk", "prop_1", "limited").rate_limit(limit))
        .await
        .unwrap();
    issued.token.expose_secret().to_owned()
}

fn per_minute(n: u32) -> RateLimit {
    RateLimit::per_minute(n).unwrap()
}

fn header<'a>(res: &'a Response<String>, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

#[track_caller]
fn assert_allowed(res: &Response<String>, policy: &str, limit: &str) {
    assert_eq!(res.status(), StatusCode::OK, "body: {}", res.body());
    assert_eq!(header(res, "ratelimit-policy"), Some(policy));
    assert_eq!(header(res, "ratelimit"), Some(limit));
    assert_eq!(header(res, "retry-after"), None);
}

#[track_caller]
fn assert_limited(res: &Response<String>, retry_after: u64, policy: &str, limit: &str) {
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(res, "retry-after"),
        Some(retry_after.to_string().as_str())
    );
    assert_eq!(header(res, "ratelimit-policy"), Some(policy));
    assert_eq!(header(res, "ratelimit"), Some(limit));
    assert_eq!(header(res, "content-type"), Some("application/json"));
    assert_eq!(header(res, "www-authenticate"), None);
    let body: Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(body["retry_after"], retry_after);
    assert!(body["message"].as_str().unwrap().contains("retry in"));
}

/// A limiter on `clock`, to share with the keyring's.
fn limiter(clock: &ManualClock) -> MemoryRateLimiter {
    MemoryRateLimiter::builder().clock(clock.clone()).build()
}

/// `n` requests with `token` pass, and the next one is limited.
async fn assert_admits(layer: &AuthLayer, token: &str, n: usize) {
    for i in 0..n {
        let status = send(layer, with_key(token)).await.status();
        assert_eq!(status, StatusCode::OK, "request {i}");
    }
    let status = send(layer, with_key(token)).await.status();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

const POLICY_5: &str = r#""default";q=5;w=60"#;

#[tokio::test]
async fn a_key_of_5_a_minute_gets_5_then_429_with_exact_headers() {
    let (keyring, clock) = keyring();
    let token = issue(&keyring, per_minute(5)).await;
    let layer = AuthLayer::new(keyring).rate_limiter(limiter(&clock));

    // T = 12 s: each admitted request pushes the key 12 s further from full.
    for (remaining, t) in [(4, 12), (3, 24), (2, 36), (1, 48), (0, 60)] {
        let res = send(&layer, with_key(&token)).await;
        assert_allowed(&res, POLICY_5, &format!(r#""default";r={remaining};t={t}"#));
        assert_eq!(res.body(), &format!("Some({remaining})"));
    }
    let res = send(&layer, with_key(&token)).await;
    assert_limited(&res, 12, POLICY_5, r#""default";r=0;t=60"#);

    // Denials use no quota; 11.5 s later the wait is 0.5 s, rounded up to 1.
    clock.advance(std::time::Duration::from_millis(11500));
    let res = send(&layer, with_key(&token)).await;
    assert_limited(&res, 1, POLICY_5, r#""default";r=0;t=49"#);
    clock.advance(std::time::Duration::from_millis(500));
    let res = send(&layer, with_key(&token)).await;
    assert_allowed(&res, POLICY_5, r#""default";r=0;t=60"#);
    assert_limited(
        &send(&layer, with_key(&token)).await,
        12,
        POLICY_5,
        r#""default";r=0;t=60"#,
    );

    // After a long pause the key earns back a full burst, and no more.
    clock.advance(std::time::Duration::from_secs(600));
    assert_admits(&layer, &token, 5).await;
}

#[tokio::test]
async fn the_default_layer_enforces_the_default_limit_on_the_keyrings_clock() {
    let (keyring, clock) = keyring();
    let token = issue(&keyring, RateLimit::default()).await;
    let layer = AuthLayer::new(keyring);
    for _ in 0..100 {
        assert_eq!(
            send(&layer, with_key(&token)).await.status(),
            StatusCode::OK
        );
    }
    let res = send(&layer, with_key(&token)).await;
    assert_limited(&res, 1, r#""default";q=100;w=60"#, r#""default";r=0;t=60"#);
    // The layer's limiter reads the keyring's clock: 600 ms later, one more.
    clock.advance(std::time::Duration::from_millis(600));
    assert_admits(&layer, &token, 1).await;
}

#[tokio::test]
async fn keys_have_their_own_budgets_overrides_and_unlimited() {
    let (keyring, clock) = keyring();
    let two = issue(&keyring, per_minute(2)).await;
    let other = issue(&keyring, per_minute(2)).await;
    let unlimited = issue(&keyring, RateLimit::Unlimited).await;
    let layer = AuthLayer::new(keyring).rate_limiter(limiter(&clock));

    for token in [&two, &two, &other, &other] {
        assert_eq!(send(&layer, with_key(token)).await.status(), StatusCode::OK);
    }
    let res = send(&layer, with_key(&two)).await;
    assert_limited(&res, 30, r#""default";q=2;w=60"#, r#""default";r=0;t=60"#);

    for _ in 0..1_000 {
        let res = send(&layer, with_key(&unlimited)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "ratelimit"), None);
        assert_eq!(res.body(), "None");
    }
}

#[tokio::test]
async fn rejected_credentials_use_no_quota_and_inner_refusals_carry_headers() {
    let (keyring, clock) = keyring();
    let token = issue(&keyring, per_minute(5)).await;
    let layer = AuthLayer::new(keyring).rate_limiter(limiter(&clock));
    for _ in 0..10 {
        let res = send(&layer, with_key("pk_garbage")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header(&res, "ratelimit"), None);
    }
    // A refusal behind the layer (403 from the scope layer) still reports.
    let res = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(RequireScopesLayer::all(["keys:manage"]).unwrap())
        .service_fn(ok)
        .oneshot(with_key(&token))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&res, "ratelimit"), Some(r#""default";r=4;t=12"#));
    assert_allowed(
        &send(&layer, with_key(&token)).await,
        POLICY_5,
        r#""default";r=3;t=24"#,
    );
}

#[tokio::test]
async fn rate_limits_can_be_turned_off() {
    let (keyring, _) = keyring();
    let token = issue(&keyring, per_minute(1)).await;
    let layer = AuthLayer::new(keyring).without_rate_limits();
    for _ in 0..3 {
        let res = send(&layer, with_key(&token)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "ratelimit-policy"), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_on_one_key_admit_exactly_the_limit() {
    let (keyring, clock) = keyring();
    let token = issue(&keyring, per_minute(25)).await;
    let layer = AuthLayer::new(keyring).rate_limiter(limiter(&clock));
    let service = ServiceBuilder::new().layer(layer).service_fn(ok);
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let service = service.clone();
            let req = with_key(&token);
            tokio::spawn(async move { service.oneshot(req).await.unwrap().status() })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        match task.await.unwrap() {
            StatusCode::OK => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(admitted, 25);
}

#[derive(Debug)]
struct Broken;

#[async_trait]
impl RateLimiter for Broken {
    async fn check(&self, _key: &str, _quota: Quota) -> Result<RateDecision, LimitError> {
        Err(LimitError::Store(StoreError::unavailable("limiter down")))
    }
}

#[tokio::test]
async fn a_failing_limiter_is_503_never_access() {
    let (keyring, _) = keyring();
    let token = issue(&keyring, per_minute(5)).await;
    let layer = AuthLayer::new(keyring.clone()).rate_limiter(Broken);
    let res = send(&layer, with_key(&token)).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(body["error"], "auth_unavailable");
    assert_eq!(header(&res, "ratelimit"), None);
    // An unlimited key is never checked, so a broken limiter cannot stop it.
    let unlimited = issue(&keyring, RateLimit::Unlimited).await;
    assert_eq!(
        send(&layer, with_key(&unlimited)).await.status(),
        StatusCode::OK
    );

    let throttle = ThrottleLayer::new()
        .per_ip(Quota::per_minute(5).unwrap())
        .limiter(Broken);
    let res = throttled(&throttle, "203.0.113.7", &[]).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
}

struct Jwt;

#[async_trait]
impl ExternalAuthenticator for Jwt {
    async fn authenticate(&self, bearer: &str) -> Result<ExternalPrincipal, ExternalAuthError> {
        let catalog = Arc::new(player_os());
        let scopes = catalog.grant(["read"]).unwrap();
        let subject = bearer
            .strip_prefix("jwt.")
            .ok_or(ExternalAuthError::Invalid)?;
        Ok(ExternalPrincipal::new(
            subject,
            TenantId::parse("prop_1"),
            scopes,
            catalog,
        ))
    }
}

fn jwt(subject: &str) -> Request<String> {
    Request::get("/")
        .header("authorization", format!("Bearer jwt.{subject}"))
        .body(String::new())
        .unwrap()
}

#[tokio::test]
async fn external_principals_are_unlimited_unless_given_a_quota() {
    let (keyring, clock) = keyring();
    let layer = AuthLayer::new(keyring)
        .external(Jwt)
        .rate_limiter(limiter(&clock));
    for _ in 0..200 {
        let res = send(&layer, jwt("alice")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "ratelimit"), None);
    }
    let layer = layer.external_quota(Quota::per_minute(2).unwrap());
    let long = "x".repeat(300);
    for subject in ["alice", long.as_str()] {
        assert_eq!(send(&layer, jwt(subject)).await.status(), StatusCode::OK);
        assert_eq!(send(&layer, jwt(subject)).await.status(), StatusCode::OK);
        let res = send(&layer, jwt(subject)).await;
        assert_limited(&res, 30, r#""default";q=2;w=60"#, r#""default";r=0;t=60"#);
    }
    assert_eq!(send(&layer, jwt("bob")).await.status(), StatusCode::OK);
}

// --- ThrottleLayer ---------------------------------------------------------

async fn login(req: Request<String>) -> Result<Response<String>, Infallible> {
    let _ = req;
    Ok(Response::new("welcome".into()))
}

/// A login attempt from `peer`, with `headers`.
async fn throttled(
    layer: &ThrottleLayer,
    peer: &str,
    headers: &[(&str, &str)],
) -> Response<String> {
    let mut req = Request::post("/login");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req.body(String::new()).unwrap();
    let peer: IpAddr = peer.parse().unwrap();
    req.extensions_mut().insert(SocketAddr::new(peer, 50_000));
    ServiceBuilder::new()
        .layer(layer.clone())
        .service_fn(login)
        .oneshot(req)
        .await
        .unwrap()
}

fn throttle(clock: &ManualClock) -> ThrottleLayer {
    ThrottleLayer::new()
        .limiter(limiter(clock))
        .per_ip(Quota::per_minute(3).unwrap())
        .per_account(Quota::per_hour(4).unwrap(), |parts| {
            let account = parts.headers.get("x-account")?.to_str().ok()?;
            Some(account.to_ascii_lowercase())
        })
}

const IP_POLICY: &str = r#""default";q=3;w=60"#;
const ACCT_POLICY: &str = r#""default";q=4;w=3600"#;

#[tokio::test]
async fn throttle_per_ip() {
    let clock = ManualClock::new(start());
    let layer = throttle(&clock);
    for (remaining, t) in [(2, 20), (1, 40), (0, 60)] {
        let res = throttled(&layer, "203.0.113.7", &[]).await;
        assert_allowed(
            &res,
            IP_POLICY,
            &format!(r#""default";r={remaining};t={t}"#),
        );
        assert_eq!(res.body(), "welcome");
    }
    let res = throttled(&layer, "203.0.113.7", &[]).await;
    assert_limited(&res, 20, IP_POLICY, r#""default";r=0;t=60"#);
    // Another address, or the next slot, is admitted.
    assert_eq!(
        throttled(&layer, "203.0.113.8", &[]).await.status(),
        StatusCode::OK
    );
    clock.advance(std::time::Duration::from_secs(20));
    assert_eq!(
        throttled(&layer, "203.0.113.7", &[]).await.status(),
        StatusCode::OK
    );
    // One IPv6 host (a /64) is one client.
    for i in 1..=3 {
        let res = throttled(&layer, &format!("2001:db8:0:1::{i}"), &[]).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = throttled(&layer, "2001:db8:0:1::ffff", &[]).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn throttle_per_account_across_addresses() {
    let clock = ManualClock::new(start());
    let layer = throttle(&clock);
    let ada = [("x-account", "Ada@example.com")];
    // Four addresses, one account: the account's budget is what runs out.
    for (i, remaining) in [3, 2, 1, 0].into_iter().enumerate() {
        let res = throttled(&layer, &format!("198.51.100.{i}"), &ada).await;
        assert_eq!(res.status(), StatusCode::OK);
        // The account (r=remaining of 4) is closer to its limit than the IP (r=2 of 3)
        // except on the first attempt, where the IP's r=2 is lower.
        let expected = if remaining >= 2 {
            (IP_POLICY, r#""default";r=2;t=20"#.to_owned())
        } else {
            let t = 900 * (4 - remaining);
            (ACCT_POLICY, format!(r#""default";r={remaining};t={t}"#))
        };
        assert_allowed(&res, expected.0, &expected.1);
    }
    let res = throttled(&layer, "198.51.100.9", &[("x-account", "ADA@example.com")]).await;
    assert_limited(&res, 900, ACCT_POLICY, r#""default";r=0;t=3600"#);
    // Other accounts and requests without one are only limited per IP.
    assert_eq!(
        throttled(&layer, "198.51.100.9", &[("x-account", "bob")])
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        throttled(&layer, "198.51.100.9", &[]).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_ip_denial_uses_none_of_the_accounts_quota() {
    let clock = ManualClock::new(start());
    let layer = throttle(&clock);
    for _ in 0..3 {
        let res = throttled(&layer, "203.0.113.7", &[]).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    for _ in 0..10 {
        let res = throttled(&layer, "203.0.113.7", &[("x-account", "ada")]).await;
        assert_limited(&res, 20, IP_POLICY, r#""default";r=0;t=60"#);
    }
    // The account still has its 4 attempts.
    for i in 0..4 {
        let res = throttled(&layer, &format!("198.51.100.{i}"), &[("x-account", "ada")]).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = throttled(&layer, "198.51.100.4", &[("x-account", "ada")]).await;
    assert_limited(&res, 900, ACCT_POLICY, r#""default";r=0;t=3600"#);
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_trusted_proxies() {
    let clock = ManualClock::new(start());
    let proxy = "10.0.0.1";
    let spoofed = [("x-forwarded-for", "192.0.2.1, 203.0.113.7")];

    // Untrusted (the default): the header is ignored, the proxy is the client.
    let untrusted = throttle(&clock);
    for _ in 0..3 {
        assert_eq!(
            throttled(&untrusted, proxy, &spoofed).await.status(),
            StatusCode::OK
        );
    }
    let other_client = [("x-forwarded-for", "203.0.113.99")];
    let res = throttled(&untrusted, proxy, &other_client).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);

    // Trusted: the right-most address that is not a proxy is the client,
    // whatever the client wrote to the left of it.
    let trusted = throttle(&clock).trust_forwarded_for([proxy.parse().unwrap()]);
    for i in 0..3 {
        let forged = format!("192.0.2.{i}, 203.0.113.7");
        let res = throttled(&trusted, proxy, &[("x-forwarded-for", &forged)]).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = throttled(&trusted, proxy, &spoofed).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        throttled(&trusted, proxy, &other_client).await.status(),
        StatusCode::OK
    );
    // A peer that is not a trusted proxy cannot pick its address.
    for _ in 0..3 {
        let res = throttled(
            &trusted,
            "198.51.100.1",
            &[("x-forwarded-for", "203.0.113.50")],
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = throttled(
        &trusted,
        "198.51.100.1",
        &[("x-forwarded-for", "203.0.113.51")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);

    // A malformed header from a trusted proxy is refused, not guessed at.
    let res = throttled(&trusted, proxy, &[("x-forwarded-for", "not-an-ip")]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn a_per_ip_throttle_without_a_peer_address_fails_closed() {
    let clock = ManualClock::new(start());
    let res = ServiceBuilder::new()
        .layer(throttle(&clock))
        .service_fn(login)
        .oneshot(Request::post("/login").body(String::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // A custom source (axum's ConnectInfo, a unix socket's fixed address).
    let layer = throttle(&clock).peer_ip(|_| Some(IpAddr::from([192, 0, 2, 1])));
    let res = ServiceBuilder::new()
        .layer(layer)
        .service_fn(login)
        .oneshot(Request::post("/login").body(String::new()).unwrap())
        .await
        .unwrap();
    assert_allowed(&res, IP_POLICY, r#""default";r=2;t=20"#);
}
