//! The failed-authentication throttle of `AuthLayer`, on an injected clock
//! over a store that counts its lookups: a client over its failure budget is
//! refused with 429 before its credential costs a lookup, what counts as a
//! failure, who a client is (peer, IPv6 /64, trusted proxies), and that
//! successes and a disabled throttle spend nothing.

mod common;

use std::convert::Infallible;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::{keyring_on, player_os};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use keyward::http::{
    AuthHook, AuthLayer, ExternalAuthError, ExternalAuthenticator, ExternalPrincipal, Principal,
    Rejection,
};
use keyward::ratelimit::Quota;
use keyward::testing::{Fault, FaultyStore, Op};
use keyward::{Expiry, Keyring, ManualClock, MemoryStore, NewKey, RateLimit, TenantId};
use serde_json::Value;
use tower::{ServiceBuilder, ServiceExt};

async fn ok(req: Request<String>) -> Result<Response<String>, Infallible> {
    let tenant = req
        .extensions()
        .get::<Principal>()
        .map(|p| p.tenant().to_string());
    Ok(Response::new(tenant.unwrap_or_default()))
}

/// A request from `peer` (`None`: no peer address in the extensions) with
/// these headers.
fn request(peer: Option<&str>, headers: &[(&str, &str)]) -> Request<String> {
    let mut req = Request::get("/");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req.body(String::new()).unwrap();
    if let Some(peer) = peer {
        let ip: IpAddr = peer.parse().unwrap();
        req.extensions_mut().insert(SocketAddr::new(ip, 50_000));
    }
    req
}

async fn send(layer: &AuthLayer, req: Request<String>) -> Response<String> {
    ServiceBuilder::new()
        .layer(layer.clone())
        .service_fn(ok)
        .oneshot(req)
        .await
        .unwrap()
}

/// `X-Api-Key: token` from `peer`.
async fn key_from(layer: &AuthLayer, peer: &str, token: &str) -> Response<String> {
    send(layer, request(Some(peer), &[("x-api-key", token)])).await
}

fn header<'a>(res: &'a Response<String>, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

fn code(res: &Response<String>) -> String {
    let body: Value = serde_json::from_str(res.body()).unwrap_or(Value::Null);
    body["error"].as_str().unwrap_or_default().to_owned()
}

#[track_caller]
fn assert_status(res: &Response<String>, status: u16, error: &str) {
    assert_eq!(res.status(), status, "body: {}", res.body());
    if !error.is_empty() {
        assert_eq!(code(res), error, "body: {}", res.body());
    }
}

/// The 429 of an over-budget client: status, headers and body, as every
/// 429 of the layers renders it.
#[track_caller]
fn assert_throttled(res: &Response<String>, retry_after: u64, policy: &str, limit: &str) {
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "body: {}",
        res.body()
    );
    let retry = retry_after.to_string();
    assert_eq!(header(res, "retry-after"), Some(retry.as_str()));
    assert_eq!(header(res, "ratelimit-policy"), Some(policy));
    assert_eq!(header(res, "ratelimit"), Some(limit));
    assert_eq!(header(res, "content-type"), Some("application/json"));
    assert_eq!(header(res, "cache-control"), Some("no-store"));
    assert_eq!(header(res, "www-authenticate"), None);
    let body: Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(body["retry_after"], retry_after);
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

struct Fixture {
    keyring: Keyring,
    clock: ManualClock,
    store: FaultyStore,
    /// A valid, unlimited key of tenant `prop_1`.
    valid: String,
}

impl Fixture {
    async fn new() -> Self {
        let store = FaultyStore::new(MemoryStore::new());
        let (keyring, clock) = keyring_on(store.clone());
        let valid = issue(&keyring, NewKey::new("pk", "prop_1", "valid")).await;
        Fixture {
            keyring,
            clock,
            store,
            valid,
        }
    }

    fn lookups(&self) -> usize {
        self.store.calls(Op::FindByHash)
    }
}

async fn issue(keyring: &Keyring, new: NewKey) -> String {
    let issued = keyring
        .issue(new.rate_limit(RateLimit::Unlimited))
        .await
        .unwrap();
    issued.token.expose_secret().to_owned()
}

/// Well-formed tokens no store of the fixture knows: issued by another
/// keyring of the same kinds.
async fn forged(n: usize) -> Vec<String> {
    let (elsewhere, _) = common::keyring();
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        tokens.push(issue(&elsewhere, NewKey::new("pk", "prop_1", "forged")).await);
    }
    tokens
}

const CLIENT: &str = "203.0.113.7";
const DEFAULT_POLICY: &str = r#""default";q=20;w=60"#;

#[tokio::test]
async fn over_the_default_budget_a_client_gets_429_before_any_lookup() {
    let fx = Fixture::new().await;
    let layer = AuthLayer::new(fx.keyring.clone());
    assert_eq!(
        layer.current_failure_budget(),
        Some(AuthLayer::DEFAULT_FAILURE_BUDGET)
    );
    let budget = AuthLayer::DEFAULT_FAILURE_BUDGET.count() as usize;
    let tokens = forged(budget + 5).await;
    for token in &tokens[..budget] {
        let res = key_from(&layer, CLIENT, token).await;
        assert_status(&res, 401, "invalid_token");
    }
    assert_eq!(fx.lookups(), budget);

    // Over budget: 429 with the budget's headers, and no lookup, whatever
    // the credential (a forged token, a malformed one: so the token is not
    // even parsed, the valid key: its client is refused before it is read).
    let others = ["pk_garbage", fx.valid.as_str()];
    for token in tokens[budget..].iter().map(String::as_str).chain(others) {
        let res = key_from(&layer, CLIENT, token).await;
        assert_throttled(&res, 3, DEFAULT_POLICY, r#""default";r=0;t=60"#);
    }
    let bearer = format!("Bearer {}", tokens[budget]);
    let res = send(&layer, request(Some(CLIENT), &[("authorization", &bearer)])).await;
    assert_throttled(&res, 3, DEFAULT_POLICY, r#""default";r=0;t=60"#);
    assert_eq!(fx.lookups(), budget);

    // Other clients have their own budgets.
    let res = key_from(&layer, "198.51.100.1", &tokens[0]).await;
    assert_status(&res, 401, "invalid_token");

    // One failure earned back every 3 s: a success spends nothing, a
    // failure spends it.
    fx.clock.advance(std::time::Duration::from_secs(3));
    for _ in 0..5 {
        let res = key_from(&layer, CLIENT, &fx.valid).await;
        assert_status(&res, 200, "");
    }
    let res = key_from(&layer, CLIENT, &tokens[0]).await;
    assert_status(&res, 401, "invalid_token");
    let res = key_from(&layer, CLIENT, &fx.valid).await;
    assert_throttled(&res, 3, DEFAULT_POLICY, r#""default";r=0;t=60"#);

    // A full minute later, a full budget again.
    fx.clock.advance(std::time::Duration::from_secs(60));
    for token in &tokens[..budget] {
        let res = key_from(&layer, CLIENT, token).await;
        assert_status(&res, 401, "invalid_token");
    }
    let res = key_from(&layer, CLIENT, &tokens[0]).await;
    assert_throttled(&res, 3, DEFAULT_POLICY, r#""default";r=0;t=60"#);
}

#[tokio::test]
async fn successes_spend_no_failures() {
    let fx = Fixture::new().await;
    let layer = AuthLayer::new(fx.keyring.clone()).failure_budget(Quota::per_hour(2).unwrap());
    for _ in 0..200 {
        let res = key_from(&layer, CLIENT, &fx.valid).await;
        assert_status(&res, 200, "");
    }
    let tokens = forged(3).await;
    for token in &tokens[..2] {
        assert_status(&key_from(&layer, CLIENT, token).await, 401, "invalid_token");
    }
    let res = key_from(&layer, CLIENT, &tokens[2]).await;
    assert_throttled(
        &res,
        1800,
        r#""default";q=2;w=3600"#,
        r#""default";r=0;t=3600"#,
    );
    assert_eq!(fx.lookups(), 202);
}

/// An authenticator for bearer values without a keyward prefix, counting
/// its calls.
#[derive(Clone, Default)]
struct Sessions {
    calls: Arc<AtomicUsize>,
}

#[async_trait]
impl ExternalAuthenticator for Sessions {
    async fn authenticate(&self, bearer: &str) -> Result<ExternalPrincipal, ExternalAuthError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let tenants: &[&str] = match bearer {
            "session.one" => &["prop_1"],
            "session.two" => &["prop_1", "prop_2"],
            "session.expired" => return Err(ExternalAuthError::Expired),
            "session.down" => return Err(ExternalAuthError::unavailable("down")),
            _ => return Err(ExternalAuthError::Invalid),
        };
        let catalog = Arc::new(player_os());
        let scopes = catalog.grant(["read"]).unwrap();
        let tenants = tenants.iter().map(|t| TenantId::parse(t).unwrap());
        Ok(ExternalPrincipal::new("user:ada", tenants, scopes, catalog))
    }
}

/// Refuses requests with `X-Block`.
struct Block;

#[async_trait]
impl AuthHook for Block {
    async fn after_authentication(&self, _: &Principal, req: &mut Parts) -> Result<(), Rejection> {
        match req.headers.contains_key("x-block") {
            true => Err(Rejection::InvalidToken),
            false => Ok(()),
        }
    }
}

/// With a budget of one failure, whether each outcome spends it: the next
/// request of the same client, with the valid key, is 429 if it did.
#[tokio::test]
async fn what_counts_as_a_failure() {
    let fx = Fixture::new().await;
    let expired = issue(
        &fx.keyring,
        NewKey::new("pk", "prop_1", "expired").expires(Expiry::Days30),
    )
    .await;
    let revoked = fx
        .keyring
        .issue(NewKey::new("pk", "prop_1", "revoked"))
        .await
        .unwrap();
    fx.keyring.revoke(revoked.info.id()).await.unwrap();
    let revoked = revoked.token.expose_secret().to_owned();
    let limited = fx
        .keyring
        .issue(NewKey::new("pk", "prop_1", "limited").rate_limit(RateLimit::per_minute(1).unwrap()))
        .await
        .unwrap()
        .token
        .expose_secret()
        .to_owned();
    fx.clock.advance(std::time::Duration::from_secs(2678400));
    let unknown = forged(1).await.remove(0);
    let mut typo = fx.valid.clone().into_bytes();
    typo[5] = if typo[5] == b'x' { b'y' } else { b'x' };
    let typo = String::from_utf8(typo).unwrap();

    let sessions = Sessions::default();
    let layer = AuthLayer::new(fx.keyring.clone())
        .external(sessions.clone())
        .hook(Block)
        .failure_budget(Quota::per_hour(1).unwrap());
    let bearer = |token: &str| format!("Bearer {token}");
    // Headers, the expected status and code, and whether it counts.
    type Case<'a> = (Vec<(&'a str, String)>, u16, &'a str, bool);
    let cases: Vec<Case<'_>> = vec![
        // Counted: the credential did not authenticate the caller.
        (
            vec![("x-api-key", unknown.clone())],
            401,
            "invalid_token",
            true,
        ),
        (
            vec![("x-api-key", typo.clone())],
            401,
            "invalid_token",
            true,
        ),
        (
            vec![("x-api-key", "pk_short".into())],
            401,
            "invalid_token",
            true,
        ),
        (
            vec![("x-api-key", expired.clone())],
            401,
            "token_expired",
            true,
        ),
        (
            vec![("x-api-key", revoked.clone())],
            401,
            "token_revoked",
            true,
        ),
        (
            vec![("authorization", bearer("session.forged"))],
            401,
            "invalid_token",
            true,
        ),
        (
            vec![("authorization", bearer("session.expired"))],
            401,
            "token_expired",
            true,
        ),
        (
            vec![
                ("x-api-key", fx.valid.clone()),
                ("x-property-id", "prop_2".into()),
            ],
            403,
            "tenant_mismatch",
            true,
        ),
        // Not counted.
        (vec![("x-api-key", fx.valid.clone())], 200, "", false),
        (
            vec![("authorization", bearer("session.one"))],
            200,
            "",
            false,
        ),
        (vec![], 401, "missing_credentials", false),
        (
            vec![("authorization", "Basic dXNlcjpw".into())],
            401,
            "missing_credentials",
            false,
        ),
        (
            vec![("x-api-key", "two words".into())],
            400,
            "invalid_request",
            false,
        ),
        (
            vec![("authorization", bearer("session.two"))],
            400,
            "tenant_required",
            false,
        ),
        (
            vec![("authorization", bearer("session.down"))],
            503,
            "auth_unavailable",
            false,
        ),
        (
            vec![("x-api-key", fx.valid.clone()), ("x-block", "1".into())],
            401,
            "invalid_token",
            false,
        ),
    ];
    for (i, (headers, status, error, counted)) in cases.iter().enumerate() {
        let client = format!("192.0.2.{i}");
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let res = send(&layer, request(Some(&client), &headers)).await;
        assert_status(&res, *status, error);
        let next = key_from(&layer, &client, &fx.valid).await;
        let spent = next.status() == StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(spent, *counted, "case {i}: {headers:?}");
    }

    // A key's own 429 spends no failure.
    let client = "192.0.2.100";
    assert_status(&key_from(&layer, client, &limited).await, 200, "");
    assert_status(
        &key_from(&layer, client, &limited).await,
        429,
        "rate_limited",
    );
    assert_status(&key_from(&layer, client, &fx.valid).await, 200, "");

    // A store outage (503) spends none either.
    fx.store.set_fault_on(Op::FindByHash, Fault::Fail);
    let res = key_from(&layer, "192.0.2.101", &fx.valid).await;
    assert_status(&res, 503, "auth_unavailable");
    fx.store.set_fault(Fault::None);
    assert_status(&key_from(&layer, "192.0.2.101", &fx.valid).await, 200, "");

    // An over-budget client never reaches the external authenticator.
    let before = sessions.calls.load(Ordering::SeqCst);
    let res = send(
        &layer,
        request(
            Some("192.0.2.5"),
            &[("authorization", "Bearer session.one")],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(sessions.calls.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn ipv6_clients_share_the_budget_of_their_64() {
    let fx = Fixture::new().await;
    let layer = AuthLayer::new(fx.keyring.clone()).failure_budget(Quota::per_hour(1).unwrap());
    let tokens = forged(1).await;
    assert_status(
        &key_from(&layer, "2001:db8:1:2::1", &tokens[0]).await,
        401,
        "invalid_token",
    );
    for same_64 in ["2001:db8:1:2::2", "2001:db8:1:2:ffff:ffff:ffff:ffff"] {
        let res = key_from(&layer, same_64, &fx.valid).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{same_64}");
    }
    for other_64 in ["2001:db8:1:3::1", "2001:db8:1:1:ffff:ffff:ffff:ffff"] {
        assert_status(&key_from(&layer, other_64, &fx.valid).await, 200, "");
    }

    // An IPv4-mapped IPv6 peer is its IPv4 address.
    assert_status(
        &key_from(&layer, "::ffff:203.0.113.9", &tokens[0]).await,
        401,
        "invalid_token",
    );
    let res = key_from(&layer, "203.0.113.9", &fx.valid).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_status(&key_from(&layer, "203.0.113.10", &fx.valid).await, 200, "");
}

#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let fx = Fixture::new().await;
    let budget = Quota::per_hour(2).unwrap();
    let tokens = forged(3).await;
    async fn from(layer: &AuthLayer, peer: &str, forwarded: &str, token: &str) -> Response<String> {
        let headers = [("x-forwarded-for", forwarded), ("x-api-key", token)];
        send(layer, request(Some(peer), &headers)).await
    }

    // Not trusted: a client rotating X-Forwarded-For is still its peer.
    let layer = AuthLayer::new(fx.keyring.clone()).failure_budget(budget);
    for (i, token) in tokens[..2].iter().enumerate() {
        let res = from(&layer, CLIENT, &format!("198.51.100.{i}"), token).await;
        assert_status(&res, 401, "invalid_token");
    }
    let res = from(&layer, CLIENT, "198.51.100.77", &tokens[2]).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);

    // Trusted: each forwarded client has its own budget; the proxy has none.
    let proxy = "10.0.0.1";
    let layer = AuthLayer::new(fx.keyring.clone())
        .failure_budget(budget)
        .trust_forwarded_for([proxy.parse().unwrap()]);
    for token in &tokens[..2] {
        let res = from(&layer, proxy, "192.0.2.1, 198.51.100.1", token).await;
        assert_status(&res, 401, "invalid_token");
    }
    // The right-most untrusted address is the client; what is left of it
    // may be made up.
    let res = from(&layer, proxy, "192.0.2.99, 198.51.100.1", &fx.valid).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let res = from(&layer, proxy, "198.51.100.2", &tokens[2]).await;
    assert_status(&res, 401, "invalid_token");
    let res = key_from(&layer, proxy, &fx.valid).await;
    assert_status(&res, 200, "");

    // A malformed header from a trusted proxy is refused before any lookup.
    let lookups = fx.lookups();
    let res = from(&layer, proxy, "not-an-ip", &fx.valid).await;
    assert_status(&res, 400, "invalid_request");
    assert_eq!(fx.lookups(), lookups);
}

#[tokio::test]
async fn a_custom_peer_source_is_used() {
    #[derive(Clone)]
    struct Peer(IpAddr);

    let fx = Fixture::new().await;
    let layer = AuthLayer::new(fx.keyring.clone())
        .failure_budget(Quota::per_hour(1).unwrap())
        .peer_ip(|parts| parts.extensions.get::<Peer>().map(|p| p.0));
    let with_peer = |token: &str| {
        let mut req = request(None, &[("x-api-key", token)]);
        req.extensions_mut().insert(Peer(CLIENT.parse().unwrap()));
        req
    };
    let tokens = forged(1).await;
    assert_status(
        &send(&layer, with_peer(&tokens[0])).await,
        401,
        "invalid_token",
    );
    let res = send(&layer, with_peer(&fx.valid)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn turned_off_it_never_throttles() {
    let fx = Fixture::new().await;
    let layer = AuthLayer::new(fx.keyring.clone()).without_failure_throttle();
    assert_eq!(layer.current_failure_budget(), None);
    let tokens = forged(60).await;
    for token in &tokens {
        assert_status(&key_from(&layer, CLIENT, token).await, 401, "invalid_token");
    }
    assert_eq!(fx.lookups(), 60);
    assert_status(&key_from(&layer, CLIENT, &fx.valid).await, 200, "");
}

/// Collects what a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn without_a_peer_address_failures_are_not_throttled_and_a_warning_is_logged_once() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fx = Fixture::new().await;
    let layer = AuthLayer::new(fx.keyring.clone());
    let tokens = forged(40).await;
    for token in &tokens {
        let res = send(&layer, request(None, &[("x-api-key", token)])).await;
        assert_status(&res, 401, "invalid_token");
    }
    assert_eq!(fx.lookups(), 40);
    let res = send(&layer, request(None, &[("x-api-key", &fx.valid)])).await;
    assert_status(&res, 200, "");

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        log.matches("cannot see the client address").count(),
        1,
        "{log}"
    );
    // A request without credentials does not need the client at all.
    let other = AuthLayer::new(fx.keyring.clone());
    let res = send(&other, request(None, &[])).await;
    assert_status(&res, 401, "missing_credentials");
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(log.matches("cannot see the client address").count(), 1);
}

#[tokio::test]
async fn clones_of_a_layer_share_the_counts() {
    let fx = Fixture::new().await;
    let layer = AuthLayer::new(fx.keyring.clone()).failure_budget(Quota::per_hour(1).unwrap());
    let clone = layer.clone();
    let separate = AuthLayer::new(fx.keyring.clone()).failure_budget(Quota::per_hour(1).unwrap());
    let tokens = forged(1).await;
    assert_status(
        &key_from(&layer, CLIENT, &tokens[0]).await,
        401,
        "invalid_token",
    );
    let res = key_from(&clone, CLIENT, &fx.valid).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_status(&key_from(&separate, CLIENT, &fx.valid).await, 200, "");
}

/// A custom renderer still gets the 429's `Retry-After` and RateLimit
/// headers, as on every 429 of the layers.
#[tokio::test]
async fn a_custom_renderer_keeps_the_429_headers() {
    let fx = Fixture::new().await;
    let layer = AuthLayer::new(fx.keyring.clone())
        .failure_budget(Quota::per_minute(1).unwrap())
        .renderer(|r: &Rejection| {
            let mut res = Response::new(format!("{{\"error\":\"{}\"}}", r.code()));
            *res.status_mut() = r.status();
            res
        });
    let tokens = forged(1).await;
    assert_status(
        &key_from(&layer, CLIENT, &tokens[0]).await,
        401,
        "invalid_token",
    );
    let res = key_from(&layer, CLIENT, &fx.valid).await;
    assert_status(&res, 429, "rate_limited");
    assert_eq!(header(&res, "retry-after"), Some("60"));
    assert_eq!(
        header(&res, "ratelimit-policy"),
        Some(r#""default";q=1;w=60"#)
    );
    assert_eq!(header(&res, "ratelimit"), Some(r#""default";r=0;t=60"#));
}
