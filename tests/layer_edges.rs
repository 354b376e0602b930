//! Attacks on kinds per layer, credential sources and the soon-scopes
//! header that worked before their fixes: nested layers, many sources, a
//! custom `Authorization` source, and a response's own header.

mod common;

use std::convert::Infallible;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::{Request, Response};
use keyward::http::{
    AuthLayer, CredentialSource, Presented, Principal, Rejection, RequireScopesLayer, Source,
    WouldDeny, SOON_SCOPES_HEADER,
};
use keyward::{Keyring, NewKey};
use serde_json::Value;
use tower::{ServiceBuilder, ServiceExt};

async fn echo(req: Request<String>) -> Result<Response<String>, Infallible> {
    let id = req
        .extensions()
        .get::<Principal>()
        .map(|p| p.id().to_owned());
    Ok(Response::new(serde_json::json!({ "id": id }).to_string()))
}

async fn issue(keyring: &Keyring, kind: &str, tenant: &str, scopes: &[&str]) -> String {
    keyring
        .issue(NewKey::new(kind, tenant, "k").scopes(scopes.iter().copied()))
        .await
        .unwrap()
        .token
        .expose_secret()
        .to_owned()
}

fn request(headers: &[(&str, &str)]) -> Request<String> {
    let mut req = Request::get("/");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(String::new()).unwrap()
}

fn parts(res: &Response<String>) -> (u16, Value) {
    (
        res.status().as_u16(),
        serde_json::from_str(res.body()).unwrap_or(Value::Null),
    )
}

/// A router-wide layer accepts `pk` keys; a sub-router's layer accepts only
/// `pl` tokens as Bearer and lets anonymous requests through. A `pk` key
/// must not reach that sub-router's scope check as the outer layer's
/// principal: the innermost layer decides who the caller is.
#[tokio::test]
async fn an_inner_anonymous_layer_does_not_inherit_the_outer_principal() {
    let (keyring, _) = common::keyring();
    let pk = issue(&keyring, "pk", "prop_1", &["read"]).await;
    let outer = AuthLayer::new(keyring.clone())
        .accept("pk", [Source::api_key()])
        .unwrap();
    let inner = AuthLayer::new(keyring.clone())
        .accept("pl", [Source::bearer()])
        .unwrap()
        .allow_anonymous(true);
    let service = ServiceBuilder::new()
        .layer(outer)
        .layer(inner)
        .layer(RequireScopesLayer::all(["read"]).unwrap())
        .service_fn(echo);
    let res = service
        .oneshot(request(&[("x-api-key", &pk)]))
        .await
        .unwrap();
    let (status, body) = parts(&res);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("missing_credentials")),
        "{body}"
    );
}

/// The same without a scope check: the handler finds no principal.
#[tokio::test]
async fn an_inner_anonymous_layer_hands_the_handler_no_principal() {
    let (keyring, _) = common::keyring();
    let pk = issue(&keyring, "pk", "prop_1", &["read"]).await;
    let service = ServiceBuilder::new()
        .layer(AuthLayer::new(keyring.clone()))
        .layer(
            AuthLayer::new(keyring.clone())
                .credentials([Source::bearer()])
                .allow_anonymous(true),
        )
        .service_fn(echo);
    let res = service
        .oneshot(request(&[("x-api-key", &pk)]))
        .await
        .unwrap();
    assert_eq!(parts(&res), (200, serde_json::json!({ "id": null })));
}

/// More distinct sources than a layer reads (64): the extra ones are never
/// read, and never alias the first one. Before the fix, configuring the
/// 65th source panicked (debug) or set the first source's bit (release),
/// so the 65 headers' kind was also accepted from `X-Api-Key`.
#[tokio::test]
async fn sources_past_the_limit_neither_panic_nor_alias() {
    let (keyring, _) = common::keyring();
    let pl = issue(&keyring, "pl", "org_1", &["versions:write"]).await;
    let headers: Vec<Source> = (0..64)
        .map(|i| Source::api_key_header(HeaderName::try_from(format!("x-key-{i}")).unwrap()))
        .collect();
    let layer = AuthLayer::new(keyring.clone())
        .accept("pk", [Source::api_key()])
        .unwrap()
        .accept("pl", headers)
        .unwrap();
    let service = ServiceBuilder::new().layer(layer).service_fn(echo);
    // The pl token in the pk header.
    let res = service
        .clone()
        .oneshot(request(&[("x-api-key", &pl)]))
        .await
        .unwrap();
    let (status, body) = parts(&res);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    // The 63 pl headers that fit are read.
    let res = service
        .clone()
        .oneshot(request(&[("x-key-0", &pl)]))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = service
        .oneshot(request(&[("x-key-62", &pl)]))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// `Authorization: Token <t>`: a custom source reading `Authorization`
/// under a scheme of its own.
#[derive(Debug)]
struct TokenScheme;

impl CredentialSource for TokenScheme {
    fn header(&self) -> &HeaderName {
        &AUTHORIZATION
    }
    fn describe(&self) -> &str {
        "Authorization: Token"
    }
    fn read(&self, value: &HeaderValue) -> Result<Option<Presented>, Rejection> {
        match value.as_bytes().strip_prefix(b"Token ") {
            Some(_) => Presented::new(value, 6).map(Some),
            None => Ok(None),
        }
    }
}

/// A custom source on `Authorization` does not switch off the refusal of a
/// malformed Bearer credential: `X-Api-Key: A` beside
/// `Authorization: Bearer<TAB>B` must not authenticate as A while another
/// component reads B.
#[tokio::test]
async fn a_custom_authorization_source_still_refuses_a_malformed_bearer() {
    let (keyring, _) = common::keyring();
    let pk = issue(&keyring, "pk", "prop_1", &["read"]).await;
    let layer = AuthLayer::new(keyring.clone())
        .credentials([Source::api_key(), Source::custom(TokenScheme)]);
    let service = ServiceBuilder::new().layer(layer).service_fn(echo);
    for bad in [
        "Bearer\tpk_other",
        "Bearer  pk_other",
        "Bearer",
        " Bearer x",
    ] {
        let res = service
            .clone()
            .oneshot(request(&[("x-api-key", &pk), ("authorization", bad)]))
            .await
            .unwrap();
        let (status, body) = parts(&res);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{bad:?}"
        );
    }
    // Its own scheme, and a well-formed Bearer it leaves alone, still work.
    let res = service
        .clone()
        .oneshot(request(&[("authorization", &format!("Token {pk}"))]))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = service
        .oneshot(request(&[
            ("x-api-key", &pk),
            ("authorization", "Bearer something.else"),
        ]))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// The soon-scopes header is the layer's: absent when nothing is missing,
/// even when the handler (or a proxied upstream) set one, or put an empty
/// `WouldDeny` into its response.
#[tokio::test]
async fn the_soon_header_is_absent_when_nothing_is_missing() {
    let (keyring, _) = common::keyring();
    let pl = issue(&keyring, "pl", "org_1", &["games:read"]).await;
    let layer = AuthLayer::new(keyring.clone())
        .soon_scopes_header(HeaderName::from_static(SOON_SCOPES_HEADER));
    let handler = tower::service_fn(|_req: Request<String>| async {
        let mut res = Response::new(String::new());
        res.extensions_mut().insert(WouldDeny::default());
        res.headers_mut().insert(
            SOON_SCOPES_HEADER,
            HeaderValue::from_static("admin:everything"),
        );
        Ok::<_, Infallible>(res)
    });
    let service = ServiceBuilder::new()
        .layer(layer)
        .layer(RequireScopesLayer::all(["games:read"]).unwrap())
        .service(handler);
    let res = service
        .oneshot(request(&[("authorization", &format!("Bearer {pl}"))]))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers().get(SOON_SCOPES_HEADER), None);
}

/// `revoke` answers the key as `get` would: with its last use folded in,
/// not the store's older one (the management APIs show this answer).
#[tokio::test]
async fn revoke_answers_the_fresh_last_use() {
    let (keyring, _) = common::keyring();
    let issued = keyring
        .issue(NewKey::new("pk", "prop_1", "k"))
        .await
        .unwrap();
    keyring.verify(issued.token.expose_secret()).await.unwrap();
    let id = issued.info.id();
    let fresh = keyring.get(id).await.unwrap().last_used_at();
    assert_eq!(fresh, Some(common::start()), "pending, not written yet");
    let revoked = keyring.revoke(id).await.unwrap();
    assert!(revoked.revoked_at().is_some());
    assert_eq!(revoked.last_used_at(), fresh);
}

/// An inner service that holds tower's contract to account: a clone is
/// not ready, `poll_ready` readies it, and `call` on a service that is not
/// ready panics (as a `Buffer` or a concurrency limit would misbehave).
#[derive(Debug)]
struct Strict {
    ready: bool,
}

impl Clone for Strict {
    fn clone(&self) -> Self {
        Strict { ready: false }
    }
}

impl tower::Service<Request<String>> for Strict {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.ready = true;
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<String>) -> Self::Future {
        assert!(self.ready, "called without poll_ready");
        self.ready = false;
        std::future::ready(Ok(Response::new(String::new())))
    }
}

/// Each layer calls its inner service only when `poll_ready` readied it:
/// the service itself when it calls at once, the readied one kept for the
/// request when it calls later; several requests on one service, each
/// after its own `poll_ready`.
#[tokio::test]
async fn layers_call_only_a_readied_inner_service() {
    use keyward::http::ThrottleLayer;
    use keyward::ratelimit::Quota;
    use tower::Service;

    let (keyring, _) = common::keyring();
    let key = issue(&keyring, "pk", "prop_1", &["read"]).await;
    let peer = |_: &http::request::Parts| Some(std::net::IpAddr::from([192, 0, 2, 1]));
    let at_once = AuthLayer::new(keyring.clone()).peer_ip(peer);
    let later = AuthLayer::new(keyring.clone())
        .peer_ip(peer)
        .hook(common::PassHook);
    let anonymous = AuthLayer::new(keyring.clone()).allow_anonymous(true);
    let throttled = ThrottleLayer::new()
        .per_ip(Quota::per_second(1000).unwrap())
        .peer_ip(peer);
    let unthrottled = ThrottleLayer::new();
    let scopes = || RequireScopesLayer::all(["read"]).unwrap();
    let keyed = || request(&[("x-api-key", &key)]);

    let mut services: Vec<(&str, tower::util::BoxCloneService<_, _, _>, bool)> = vec![
        (
            "auth at once",
            ServiceBuilder::new()
                .boxed_clone()
                .layer(at_once.clone())
                .layer(scopes())
                .service(Strict { ready: false }),
            true,
        ),
        (
            "auth later",
            ServiceBuilder::new()
                .boxed_clone()
                .layer(later)
                .layer(scopes())
                .service(Strict { ready: false }),
            true,
        ),
        (
            "anonymous",
            ServiceBuilder::new()
                .boxed_clone()
                .layer(anonymous)
                .service(Strict { ready: false }),
            false,
        ),
        (
            "throttle checking",
            ServiceBuilder::new()
                .boxed_clone()
                .layer(throttled)
                .service(Strict { ready: false }),
            false,
        ),
        (
            "throttle without checks",
            ServiceBuilder::new()
                .boxed_clone()
                .layer(unthrottled)
                .service(Strict { ready: false }),
            false,
        ),
    ];
    for (name, service, with_key) in &mut services {
        for _ in 0..3 {
            let req = if *with_key { keyed() } else { request(&[]) };
            let res = service.ready().await.unwrap().call(req).await.unwrap();
            assert_eq!(res.status(), 200, "{name}");
        }
    }
}
