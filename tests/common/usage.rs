//! Usage-control scenarios over HTTP, run on every store: `tests/usage.rs`
//! on the memory store, `tests/postgres_usage.rs` on PostgreSQL.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use keyward::http::AuthLayer;
use keyward::ratelimit::RateLimiter;
use keyward::testing::RecordingSink;
use keyward::usage::{ControlsUpdate, Credits, CreditsChange, IpAllowlist, Refill};
use keyward::{Clock, EventKind, KeyKind, KeyStore, Keyring, ManualClock, NewKey, RateLimit};
use tower::util::BoxCloneService;
use tower::{service_fn, Layer, ServiceExt};

use super::{player_os, start};

pub type Svc = BoxCloneService<Request<String>, Response<String>, Infallible>;

/// A keyring with `pk` (PlayerOS) on `store`, the clock and the sink.
pub fn keyring(store: Arc<dyn KeyStore>, clock: &ManualClock, sink: &RecordingSink) -> Keyring {
    Keyring::builder()
        .shared_store(store)
        .kind(KeyKind::new("pk", player_os()).unwrap())
        .clock(clock.clone())
        .events(sink.clone())
        .build()
        .unwrap()
}

/// `layer` around a handler answering 200 "ok".
pub fn service(layer: AuthLayer) -> Svc {
    let ok = service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::from("ok")))
    });
    BoxCloneService::new(layer.layer(ok))
}

/// A request to `path` with the key, from `peer` (none: unknown peer).
pub fn req(path: &str, token: &str, peer: Option<&str>) -> Request<String> {
    let mut req = Request::get(path)
        .header("x-api-key", token)
        .body(String::new())
        .unwrap();
    if let Some(peer) = peer {
        let ip: IpAddr = peer.parse().unwrap();
        req.extensions_mut().insert(SocketAddr::new(ip, 40_000));
    }
    req
}

pub async fn call(svc: &Svc, req: Request<String>) -> Response<String> {
    svc.clone().oneshot(req).await.unwrap()
}

fn code(res: &Response<String>) -> String {
    let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    body["error"].as_str().unwrap().to_owned()
}

fn credits_header(res: &Response<String>) -> Option<u64> {
    res.headers()
        .get("x-credits-remaining")
        .map(|v| v.to_str().unwrap().parse().unwrap())
}

/// A request from outside a key's allowlist is 403 `ip_not_allowed` after
/// verification and before any quota or credit is spent; the client is
/// found by the layer's trusted-proxy rules; an unknown client is 503; a
/// key without a list is unaffected.
pub async fn allowlists_refuse_outside_before_quota(store: Arc<dyn KeyStore>) {
    let (clock, sink) = (ManualClock::new(start()), RecordingSink::new());
    let keyring = keyring(store, &clock, &sink);
    let list = IpAllowlist::parse(["203.0.113.0/24", "2001:db8:77::/48"]).unwrap();
    let issued = keyring
        .issue(
            NewKey::new("pk", "prop_1", "office")
                .allowed_ips(list)
                .rate_limit(RateLimit::per_minute(1).unwrap())
                .credits(Credits::new(10).unwrap()),
        )
        .await
        .unwrap();
    let token = issued.token.expose_secret();
    let svc =
        service(AuthLayer::new(keyring.clone()).trust_forwarded_for(["10.0.0.1".parse().unwrap()]));

    for outside in [
        "198.51.100.7",
        "203.0.114.1",
        "2001:db8:78::1",
        "::ffff:198.51.100.7",
    ] {
        let res = call(&svc, req("/", token, Some(outside))).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{outside}");
        assert_eq!(code(&res), "ip_not_allowed");
        assert!(res.headers().get("www-authenticate").is_none());
        assert!(
            credits_header(&res).is_none(),
            "nothing spent, nothing shown"
        );
    }
    // Neither the rate limit (1 a minute) nor the credits were spent.
    let inside = call(&svc, req("/", token, Some("203.0.113.9"))).await;
    assert_eq!(inside.status(), StatusCode::OK);
    assert_eq!(credits_header(&inside), Some(9));
    clock.advance(std::time::Duration::from_secs(60));
    // IPv6 inside its range; IPv4-mapped IPv6 is compared as IPv4.
    let v6 = call(&svc, req("/", token, Some("2001:db8:77:1::5"))).await;
    assert_eq!(v6.status(), StatusCode::OK);
    clock.advance(std::time::Duration::from_secs(60));
    let mapped = call(&svc, req("/", token, Some("::ffff:203.0.113.10"))).await;
    assert_eq!(mapped.status(), StatusCode::OK);
    clock.advance(std::time::Duration::from_secs(60));

    // Behind the trusted proxy the client is the forwarded address...
    let mut via_proxy = req("/", token, Some("10.0.0.1"));
    via_proxy
        .headers_mut()
        .insert("x-forwarded-for", "203.0.113.50".parse().unwrap());
    assert_eq!(call(&svc, via_proxy).await.status(), StatusCode::OK);
    let mut spoofed = req("/", token, Some("10.0.0.1"));
    spoofed.headers_mut().insert(
        "x-forwarded-for",
        "203.0.113.50, 198.51.100.7".parse().unwrap(),
    );
    assert_eq!(
        code(&call(&svc, spoofed).await),
        "ip_not_allowed",
        "the right-most untrusted address counts"
    );
    // ...and from anyone else the header is ignored.
    let mut forged = req("/", token, Some("198.51.100.7"));
    forged
        .headers_mut()
        .insert("x-forwarded-for", "203.0.113.50".parse().unwrap());
    assert_eq!(code(&call(&svc, forged).await), "ip_not_allowed");

    // An unknown client address: a deployment mistake, never a pass.
    let res = call(&svc, req("/", token, None)).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(&res), "auth_unavailable");

    // A key without a list: any address, and no address at all.
    let open = keyring
        .issue(NewKey::new("pk", "prop_1", "open"))
        .await
        .unwrap();
    for peer in [Some("198.51.100.7"), None] {
        let res = call(&svc, req("/", open.token.expose_secret(), peer)).await;
        assert_eq!(res.status(), StatusCode::OK);
    }

    // Changed after issue: in effect at once.
    clock.advance(std::time::Duration::from_secs(60));
    let id = issued.info.id();
    let wider = IpAllowlist::parse(["198.51.100.0/24"]).unwrap();
    keyring
        .update_controls(id, ControlsUpdate::new().allowed_ips(Some(wider)))
        .await
        .unwrap();
    assert_eq!(
        call(&svc, req("/", token, Some("198.51.100.7")))
            .await
            .status(),
        StatusCode::OK
    );
    clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(
        code(&call(&svc, req("/", token, Some("203.0.113.9"))).await),
        "ip_not_allowed"
    );
    keyring
        .update_controls(id, ControlsUpdate::new().allowed_ips(None))
        .await
        .unwrap();
    assert_eq!(
        call(&svc, req("/", token, Some("192.0.2.1")))
            .await
            .status(),
        StatusCode::OK
    );
    let changes = sink
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ControlsChanged { .. }) && &e.key_id == id)
        .count();
    assert_eq!(changes, 2, "each change is announced");
}

/// Each admitted request spends its cost; out of credits is 402
/// `credits_exhausted` with `X-Credits-Remaining` (and `Retry-After` until
/// a refill); refills are applied lazily; credits can be added.
pub async fn credits_are_spent_refused_and_refilled(store: Arc<dyn KeyStore>) {
    let (clock, sink) = (ManualClock::new(start()), RecordingSink::new());
    let keyring = keyring(store, &clock, &sink);
    let issued = keyring
        .issue(NewKey::new("pk", "prop_1", "trial").credits(Credits::new(4).unwrap()))
        .await
        .unwrap();
    let token = issued.token.expose_secret();
    let svc = service(AuthLayer::new(keyring.clone()).credit_cost(
        |parts| match parts.uri.path() {
            "/render" => 3,
            "/health" => 0,
            _ => 1,
        },
    ));
    let res = call(&svc, req("/", token, Some("192.0.2.1"))).await;
    assert_eq!(
        (res.status(), credits_header(&res)),
        (StatusCode::OK, Some(3))
    );
    let res = call(&svc, req("/render", token, Some("192.0.2.1"))).await;
    assert_eq!(
        (res.status(), credits_header(&res)),
        (StatusCode::OK, Some(0))
    );
    // Out: 402 with what remains, no Retry-After (no refill).
    let res = call(&svc, req("/", token, Some("192.0.2.1"))).await;
    assert_eq!(res.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(code(&res), "credits_exhausted");
    assert_eq!(credits_header(&res), Some(0));
    assert!(res.headers().get("retry-after").is_none());
    // A free route still answers, spending nothing.
    let res = call(&svc, req("/health", token, Some("192.0.2.1"))).await;
    assert_eq!((res.status(), credits_header(&res)), (StatusCode::OK, None));
    // A top-up, atomic in the store.
    let info = keyring
        .update_controls(
            issued.info.id(),
            ControlsUpdate::new().credits(CreditsChange::Add(2)),
        )
        .await
        .unwrap();
    assert_eq!(info.credits().unwrap().remaining, 2);
    // A cost above what remains spends nothing.
    let res = call(&svc, req("/render", token, Some("192.0.2.1"))).await;
    assert_eq!(
        (res.status(), credits_header(&res)),
        (StatusCode::PAYMENT_REQUIRED, Some(2))
    );
    let res = call(&svc, req("/", token, Some("192.0.2.1"))).await;
    assert_eq!(
        (res.status(), credits_header(&res)),
        (StatusCode::OK, Some(1))
    );

    // A daily refill: Retry-After until 00:00 UTC, then back to 2.
    let daily = Credits::new(1).unwrap().refill(Refill::daily(2).unwrap());
    let refilled = keyring
        .issue(NewKey::new("pk", "prop_1", "daily").credits(daily))
        .await
        .unwrap();
    let token = refilled.token.expose_secret();
    assert_eq!(
        call(&svc, req("/", token, Some("192.0.2.1")))
            .await
            .status(),
        StatusCode::OK
    );
    let res = call(&svc, req("/", token, Some("192.0.2.1"))).await;
    assert_eq!(res.status(), StatusCode::PAYMENT_REQUIRED);
    let midnight = keyward::usage::RefillPeriod::Daily.next_after(clock.now());
    let wait = (midnight - clock.now()).whole_seconds();
    let retry: i64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, wait.max(1));
    let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(body["retry_after"], retry);
    assert_eq!(body["credits_remaining"], 0);
    clock.set(midnight);
    let res = call(&svc, req("/", token, Some("192.0.2.1"))).await;
    assert_eq!(
        (res.status(), credits_header(&res)),
        (StatusCode::OK, Some(1))
    );

    // A rotation moves the credits: the old token, in its grace, has none.
    let moving = keyring
        .issue(NewKey::new("pk", "prop_1", "rotating").credits(Credits::new(3).unwrap()))
        .await
        .unwrap();
    let old = moving.token.expose_secret();
    let res = call(&svc, req("/", old, Some("192.0.2.1"))).await;
    assert_eq!(
        (res.status(), credits_header(&res)),
        (StatusCode::OK, Some(2))
    );
    let next = keyring
        .rotate(moving.info.id(), std::time::Duration::from_secs(3_600))
        .await
        .unwrap();
    let res = call(&svc, req("/", old, Some("192.0.2.1"))).await;
    assert_eq!(
        (res.status(), credits_header(&res)),
        (StatusCode::PAYMENT_REQUIRED, Some(0))
    );
    let res = call(
        &svc,
        req("/", next.token.expose_secret(), Some("192.0.2.1")),
    )
    .await;
    assert_eq!(
        (res.status(), credits_header(&res)),
        (StatusCode::OK, Some(1))
    );

    // A key without credits shows no header.
    let plain = keyring
        .issue(NewKey::new("pk", "prop_1", "plain"))
        .await
        .unwrap();
    let res = call(
        &svc,
        req("/", plain.token.expose_secret(), Some("192.0.2.1")),
    )
    .await;
    assert_eq!((res.status(), credits_header(&res)), (StatusCode::OK, None));
}

/// Many concurrent requests through two keyrings on two store instances
/// (two processes) spend exactly the key's credits.
pub async fn concurrent_requests_spend_exactly(a: Arc<dyn KeyStore>, b: Arc<dyn KeyStore>) {
    let (clock, sink) = (ManualClock::new(start()), RecordingSink::new());
    let (ka, kb) = (keyring(a, &clock, &sink), keyring(b, &clock, &sink));
    let issued = ka
        .issue(
            NewKey::new("pk", "prop_1", "metered")
                .credits(Credits::new(37).unwrap())
                .rate_limit(RateLimit::Unlimited),
        )
        .await
        .unwrap();
    let token = issued.token.expose_secret().to_owned();
    let (sa, sb) = (
        service(AuthLayer::new(ka.clone())),
        service(AuthLayer::new(kb)),
    );
    let mut tasks = Vec::new();
    for i in 0..120 {
        let svc = if i % 2 == 0 { sa.clone() } else { sb.clone() };
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let res = svc
                .oneshot(req("/", &token, Some("192.0.2.1")))
                .await
                .unwrap();
            (res.status(), credits_header(&res))
        }));
    }
    let mut ok = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            (StatusCode::OK, Some(left)) => ok.push(left),
            (StatusCode::PAYMENT_REQUIRED, Some(0)) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    ok.sort_unstable();
    assert_eq!(ok, (0..37).collect::<Vec<_>>(), "each credit spent once");
    assert_eq!(refused, 120 - 37);
    let info = ka.get(issued.info.id()).await.unwrap();
    assert_eq!(info.credits().unwrap().remaining, 0);
}

/// Keys naming one budget in a tenant share one rate limit, on the given
/// limiter; other tenants' budgets of the same name, and keys without one,
/// are apart.
pub async fn budgets_are_shared_within_a_tenant(
    store: Arc<dyn KeyStore>,
    limiter: Arc<dyn RateLimiter>,
) {
    let (clock, sink) = (ManualClock::new(start()), RecordingSink::new());
    let keyring = keyring(store, &clock, &sink);
    let two = RateLimit::per_minute(2).unwrap();
    let budget_key = |tenant: &'static str, name: &'static str| {
        let keyring = keyring.clone();
        async move {
            keyring
                .issue(
                    NewKey::new("pk", tenant, name)
                        .budget("customer_9")
                        .rate_limit(two),
                )
                .await
                .unwrap()
        }
    };
    let (a, b, other) = (
        budget_key("prop_1", "a").await,
        budget_key("prop_1", "b").await,
        budget_key("prop_2", "other tenant").await,
    );
    let own = keyring
        .issue(NewKey::new("pk", "prop_1", "own").rate_limit(two))
        .await
        .unwrap();
    let svc = service(AuthLayer::new(keyring.clone()).rate_limiter(limiter));
    let status = |token: &str| {
        let svc = svc.clone();
        let token = token.to_owned();
        async move {
            call(&svc, req("/", &token, Some("192.0.2.1")))
                .await
                .status()
        }
    };
    assert_eq!(status(a.token.expose_secret()).await, StatusCode::OK);
    assert_eq!(status(b.token.expose_secret()).await, StatusCode::OK);
    // The budget's two are used: both keys are refused.
    assert_eq!(
        status(a.token.expose_secret()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status(b.token.expose_secret()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Apart: another tenant's budget of that name, and a key of its own.
    assert_eq!(status(other.token.expose_secret()).await, StatusCode::OK);
    assert_eq!(status(own.token.expose_secret()).await, StatusCode::OK);
    assert_eq!(status(own.token.expose_secret()).await, StatusCode::OK);
    // Leaving the budget (and its limit) after issue.
    let info = keyring
        .update_controls(
            b.info.id(),
            ControlsUpdate::new()
                .budget(None)
                .rate_limit(RateLimit::per_minute(5).unwrap()),
        )
        .await
        .unwrap();
    assert!(info.budget().is_none());
    assert_eq!(status(b.token.expose_secret()).await, StatusCode::OK);
    assert_eq!(
        status(a.token.expose_secret()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Where a key was used: the last distinct client IPs (at most 5, newest
/// first) and the last user agent (cleaned), written with the batched
/// last-used write; nothing kept when the layer does not track clients.
pub async fn recent_ips_and_agent_are_kept(store: Arc<dyn KeyStore>) {
    let (clock, sink) = (ManualClock::new(start()), RecordingSink::new());
    let keyring = keyring(store.clone(), &clock, &sink);
    let issued = keyring
        .issue(NewKey::new("pk", "prop_1", "busy"))
        .await
        .unwrap();
    let token = issued.token.expose_secret();
    let svc = service(AuthLayer::new(keyring.clone()).without_rate_limits());
    for (i, peer) in [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.1",
        "2001:db8::1",
        "192.0.2.3",
        "192.0.2.4",
        "192.0.2.5",
    ]
    .iter()
    .enumerate()
    {
        clock.advance(std::time::Duration::from_secs(1));
        let mut r = req("/", token, Some(peer));
        // A tab (the one control a header may hold) and a byte that is not
        // UTF-8.
        let agent: &[u8] = if i == 6 {
            b"sdk/2.0\t\xff(linux)"
        } else {
            b"sdk/1.0"
        };
        r.headers_mut()
            .insert("user-agent", http::HeaderValue::from_bytes(agent).unwrap());
        assert_eq!(call(&svc, r).await.status(), StatusCode::OK);
    }
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(
        keyring.flush_last_used().await.unwrap(),
        1,
        "one write for every use"
    );
    let info = keyring.get(issued.info.id()).await.unwrap();
    assert_eq!(
        info.recent_ips(),
        [
            ip("192.0.2.5"),
            ip("192.0.2.4"),
            ip("192.0.2.3"),
            ip("2001:db8::1"),
            ip("192.0.2.1")
        ]
    );
    assert_eq!(info.last_user_agent(), Some("sdk/2.0\u{fffd}(linux)"));
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["recent_ips"][0], "192.0.2.5");
    assert_eq!(json["last_user_agent"], "sdk/2.0\u{fffd}(linux)");

    // A layer that does not track clients keeps neither.
    let quiet = keyring
        .issue(NewKey::new("pk", "prop_1", "quiet"))
        .await
        .unwrap();
    let svc = service(AuthLayer::new(keyring.clone()).track_clients(false));
    let mut r = req("/", quiet.token.expose_secret(), Some("192.0.2.9"));
    r.headers_mut()
        .insert("user-agent", "secret-agent".parse().unwrap());
    assert_eq!(call(&svc, r).await.status(), StatusCode::OK);
    keyring.flush_last_used().await.unwrap();
    let info = keyring.get(quiet.info.id()).await.unwrap();
    assert!(info.last_used_at().is_some());
    assert!(info.recent_ips().is_empty() && info.last_user_agent().is_none());
}
