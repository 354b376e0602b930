//! One service, several products: a layer accepts a subset of the keyring's
//! kinds, each from its own credential sources (`AuthLayer::accept`); a
//! token of another kind, or from another source, is 401 `invalid_token`
//! before any store lookup and before the rate limit. And the loud
//! misconfiguration: a scope check with no authentication layer is 500.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};
use keyward::http::{
    AuthLayer, CredentialSource, ExternalAuthError, ExternalAuthenticator, ExternalPrincipal,
    Presented, Principal, Rejection, RequireScopesLayer, Source,
};
use keyward::testing::{FaultyStore, Op};
use keyward::{ConfigError, Keyring, MemoryStore, NewKey, RateLimit, TenantId};
use serde_json::Value;
use tower::{ServiceBuilder, ServiceExt};

async fn echo(req: Request<String>) -> Result<Response<String>, Infallible> {
    let id = req
        .extensions()
        .get::<Principal>()
        .map(|p| p.id().to_owned());
    Ok(Response::new(serde_json::json!({ "id": id }).to_string()))
}

async fn send(layer: &AuthLayer, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = Request::get("/");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = ServiceBuilder::new()
        .layer(layer.clone())
        .service_fn(echo)
        .oneshot(req.body(String::new()).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, serde_json::from_str(res.body()).unwrap())
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

struct Fixture {
    keyring: Keyring,
    store: Arc<FaultyStore>,
    pk: String,
    pl: String,
}

/// A keyring with both kinds over a store that counts lookups, and a key of
/// each; the `pl` token may make one request a minute.
async fn fixture() -> Fixture {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let clock = keyward::ManualClock::new(common::start());
    let keyring = keyward::Keyring::builder()
        .shared_store(store.clone())
        .kind(keyward::KeyKind::new("pk", common::player_os()).unwrap())
        .kind(keyward::KeyKind::new("pl", common::playable_labs()).unwrap())
        .clock(clock)
        .build()
        .unwrap();
    let issue = |new: NewKey| {
        let keyring = keyring.clone();
        async move {
            keyring
                .issue(new)
                .await
                .unwrap()
                .token
                .expose_secret()
                .to_owned()
        }
    };
    let pk = issue(NewKey::new("pk", "prop_1", "backend").scopes(["read"])).await;
    let pl = issue(
        NewKey::new("pl", "org_1", "ci")
            .scopes(["versions:write"])
            .rate_limit(RateLimit::per_minute(1).unwrap()),
    )
    .await;
    Fixture {
        keyring,
        store,
        pk,
        pl,
    }
}

#[tokio::test]
async fn each_product_accepts_its_own_kind_from_its_own_header() {
    let fx = fixture().await;
    let players = AuthLayer::new(fx.keyring.clone())
        .accept("pk", [Source::api_key()])
        .unwrap();
    let games = AuthLayer::new(fx.keyring.clone())
        .accept("pl", [Source::bearer()])
        .unwrap();

    assert_eq!(send(&players, &[("x-api-key", &fx.pk)]).await.0, 200);
    assert_eq!(
        send(&games, &[("authorization", &bearer(&fx.pl))]).await.0,
        200
    );

    // The other product's token in the header this layer reads: a token of
    // a kind the layer does not accept.
    let (status, body) = send(&players, &[("x-api-key", &fx.pl)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    // In a header this layer does not read: no credential of ours, and the
    // message names what it reads.
    let (status, body) = send(&players, &[("authorization", &bearer(&fx.pk))]).await;
    assert_eq!(
        (status, body["error"].as_str(), body["message"].as_str()),
        (
            401,
            Some("missing_credentials"),
            Some("credentials are required: send X-Api-Key")
        )
    );
    let (status, body) = send(&games, &[("x-api-key", &fx.pl)]).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            401,
            Some("credentials are required: send Authorization: Bearer")
        )
    );
}

/// `pk` keys from `X-Api-Key`, `pl` tokens as Bearer.
fn each_kind_from_its_header(fx: &Fixture) -> AuthLayer {
    AuthLayer::new(fx.keyring.clone())
        .accept("pk", [Source::api_key()])
        .unwrap()
        .accept("pl", [Source::bearer()])
        .unwrap()
}

async fn admits_each_kind_from_its_header(layer: &AuthLayer, fx: &Fixture) {
    assert_eq!(send(layer, &[("x-api-key", &fx.pk)]).await.0, 200);
    assert_eq!(
        send(layer, &[("authorization", &bearer(&fx.pl))]).await.0,
        200
    );
}

/// A layer reading both headers, each kind from one: the right kind in the
/// wrong header is refused like a token of another kind.
#[tokio::test]
async fn a_kind_in_another_kinds_header_is_invalid_token() {
    let fx = fixture().await;
    let both = each_kind_from_its_header(&fx);
    admits_each_kind_from_its_header(&both, &fx).await;
    for headers in [
        [("authorization", bearer(&fx.pk))],
        [("x-api-key", fx.pl.clone())],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, body) = send(&both, &headers).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_token"))
        );
    }
    // The same token in both headers: accepted if one of them may carry it.
    let (status, _) = send(
        &both,
        &[("x-api-key", &fx.pk), ("authorization", &bearer(&fx.pk))],
    )
    .await;
    assert_eq!(status, 200);
}

/// The same refusals when the layer checks asynchronously (a hook), still
/// before any lookup; malformed tokens of either kind are `invalid_token`
/// too.
#[tokio::test]
async fn kinds_and_sources_hold_on_the_asynchronous_path() {
    let fx = fixture().await;
    let both = each_kind_from_its_header(&fx)
        .without_failure_throttle()
        .hook(common::PassHook);
    admits_each_kind_from_its_header(&both, &fx).await;
    let before = fx.store.calls(Op::FindByHash);
    let bad_checksum = |t: &str| {
        format!(
            "{}{}",
            &t[..t.len() - 1],
            if t.ends_with('a') { 'b' } else { 'a' }
        )
    };
    for headers in [
        [("authorization", bearer(&fx.pk))],
        [("x-api-key", fx.pl.clone())],
        [("x-api-key", bad_checksum(&fx.pk))],
        [("authorization", bearer(&bad_checksum(&fx.pk)))],
        [("x-api-key", bad_checksum(&fx.pl))],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, body) = send(&both, &headers).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_token")),
            "{headers:?}"
        );
    }
    assert_eq!(fx.store.calls(Op::FindByHash), before, "no lookup");
}

/// Refused before the store is asked and before the key's quota is
/// charged: the `pl` token (one request a minute) still works afterwards.
#[tokio::test]
async fn a_wrong_kind_costs_no_lookup_and_no_quota() {
    let fx = fixture().await;
    let players = AuthLayer::new(fx.keyring.clone())
        .accept("pk", [Source::api_key(), Source::bearer()])
        .unwrap()
        .without_failure_throttle();
    let games = AuthLayer::new(fx.keyring.clone())
        .accept("pl", [Source::bearer()])
        .unwrap();
    let before = fx.store.calls(Op::FindByHash);
    for _ in 0..3 {
        let (status, body) = send(&players, &[("authorization", &bearer(&fx.pl))]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_token"))
        );
    }
    assert_eq!(fx.store.calls(Op::FindByHash), before, "no lookup");
    // Its one request of the minute is still there; the next one is not.
    assert_eq!(
        send(&games, &[("authorization", &bearer(&fx.pl))]).await.0,
        200
    );
    assert_eq!(
        send(&games, &[("authorization", &bearer(&fx.pl))]).await.0,
        429
    );
}

/// Without `accept`, every kind of the keyring from every default source.
#[tokio::test]
async fn by_default_every_kind_from_both_headers() {
    let fx = fixture().await;
    let layer = AuthLayer::new(fx.keyring.clone());
    for token in [&fx.pk, &fx.pl] {
        assert_eq!(send(&layer, &[("x-api-key", token)]).await.0, 200);
    }
    let (status, body) = send(&layer, &[]).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            401,
            Some("credentials are required: send X-Api-Key or Authorization: Bearer")
        )
    );
}

struct Dashboard(Arc<AtomicUsize>);

#[keyward::async_trait]
impl ExternalAuthenticator for Dashboard {
    async fn authenticate(&self, bearer: &str) -> Result<ExternalPrincipal, ExternalAuthError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        if bearer != "session.alice" {
            return Err(ExternalAuthError::Invalid);
        }
        let catalog = Arc::new(common::player_os());
        let scopes = catalog.grant(["read"]).unwrap();
        Ok(ExternalPrincipal::new(
            "user:alice",
            TenantId::parse("prop_1"),
            scopes,
            catalog,
        ))
    }
}

/// `pk` keys only in `X-Api-Key`, dashboard sessions as Bearer: a `pk` key
/// sent as Bearer is neither accepted nor handed to the authenticator.
#[tokio::test]
async fn the_external_authenticator_reads_bearer_but_gets_no_keyward_token() {
    let fx = fixture().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = AuthLayer::new(fx.keyring.clone())
        .accept("pk", [Source::api_key()])
        .unwrap()
        .external(Dashboard(calls.clone()));
    let (status, body) = send(&layer, &[("authorization", "Bearer session.alice")]).await;
    assert_eq!((status, body["id"].as_str()), (200, Some("user:alice")));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    for token in [&fx.pk, &fx.pl] {
        let (status, body) = send(&layer, &[("authorization", &bearer(token))]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_token"))
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "no keyward token reached it"
    );
    // Only Bearer values go to it, never another header's.
    let (status, body) = send(&layer, &[("x-api-key", "session.alice")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(send(&layer, &[("x-api-key", &fx.pk)]).await.0, 200);
}

#[tokio::test]
async fn a_layer_refuses_unknown_kinds_and_empty_sources() {
    let fx = fixture().await;
    let layer = || AuthLayer::new(fx.keyring.clone());
    assert!(matches!(
        layer().accept("zz", [Source::api_key()]),
        Err(ConfigError::UnknownKind(kind)) if kind == "zz"
    ));
    assert!(matches!(
        layer().accept("pk", Vec::<Source>::new()),
        Err(ConfigError::NoSources)
    ));
}

/// `X-Token: <token>`: a source of the host's own.
#[derive(Debug)]
struct XToken(HeaderName);

impl CredentialSource for XToken {
    fn header(&self) -> &HeaderName {
        &self.0
    }
    fn describe(&self) -> &str {
        "X-Token"
    }
    fn read(&self, value: &HeaderValue) -> Result<Option<Presented>, Rejection> {
        Presented::new(value, 0).map(Some)
    }
}

#[tokio::test]
async fn a_custom_source_is_read_like_the_built_in_ones() {
    let fx = fixture().await;
    let layer = AuthLayer::new(fx.keyring.clone())
        .accept(
            "pk",
            [Source::custom(XToken(HeaderName::from_static("x-token")))],
        )
        .unwrap();
    assert_eq!(send(&layer, &[("x-token", &fx.pk)]).await.0, 200);
    // The layer's rules apply to it: repeated, or beside a different token.
    let mut req = Request::get("/");
    req = req.header("x-token", &fx.pk).header("x-token", &fx.pk);
    let res = ServiceBuilder::new()
        .layer(layer.clone())
        .service_fn(echo)
        .oneshot(req.body(String::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let (status, body) = send(&layer, &[("x-token", "pk_a b")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = send(&layer, &[]).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("credentials are required: send X-Token"))
    );
}

/// Captures the `keyward::http` errors logged while `f` runs.
async fn logged_errors<F: std::future::Future<Output = ()>>(f: F) -> String {
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::ERROR)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    f.await;
    drop(guard);
    let bytes = sink.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

/// A scope check that runs with no authentication layer before it never
/// passes and never blames the client: 500 `auth_misconfigured`, and an
/// error that names the fix. Behind an anonymous layer it is the client's
/// 401.
#[tokio::test]
async fn a_scope_check_without_authentication_is_500_and_logged() {
    let fx = fixture().await;
    let require = RequireScopesLayer::all(["read"]).unwrap();
    let logs = logged_errors(async {
        // The auth layer inside the check: it runs too late.
        let res = ServiceBuilder::new()
            .layer(require.clone())
            .layer(AuthLayer::new(fx.keyring.clone()))
            .service_fn(echo)
            .oneshot(
                Request::get("/")
                    .header("x-api-key", &fx.pk)
                    .body(String::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 500);
        let body: Value = serde_json::from_str(res.body()).unwrap();
        assert_eq!(body["error"], "auth_misconfigured");
        assert!(res.headers().get("www-authenticate").is_none());
    })
    .await;
    assert!(
        logs.contains("RequireScopes ran on a request no AuthLayer authenticated")
            && logs.contains("add AuthLayer outside it"),
        "{logs}"
    );

    let anonymous = ServiceBuilder::new()
        .layer(
            AuthLayer::new(fx.keyring.clone())
                .credentials([Source::api_key()])
                .allow_anonymous(true),
        )
        .layer(require)
        .service_fn(echo)
        .oneshot(Request::get("/").body(String::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let body: Value = serde_json::from_str(anonymous.body()).unwrap();
    assert_eq!(body["error"], "missing_credentials");
    assert_eq!(body["message"], "credentials are required: send X-Api-Key");
}

/// A layer that accepts no kind and has no external authenticator reads
/// nothing: every request is 401, and the message says why.
#[tokio::test]
async fn a_layer_accepting_nothing_refuses_everything() {
    let fx = fixture().await;
    let layer = AuthLayer::new(fx.keyring.clone()).accept_no_kinds();
    for headers in [
        vec![("x-api-key", fx.pk.as_str())],
        vec![("authorization", "Bearer session.alice")],
        vec![],
    ] {
        let (status, body) = send(&layer, &headers).await;
        assert_eq!(
            (status, body["message"].as_str()),
            (
                401,
                Some("credentials are required: send credentials of a kind this layer accepts (it accepts none)")
            )
        );
    }
    // With `accept` after it, that kind comes back.
    let layer = layer.accept("pk", [Source::api_key()]).unwrap();
    assert_eq!(send(&layer, &[("x-api-key", &fx.pk)]).await.0, 200);
}

/// `Authorization: Token <token>`: another scheme on the Bearer header.
#[derive(Debug)]
struct TokenScheme;

impl CredentialSource for TokenScheme {
    fn header(&self) -> &HeaderName {
        &http::header::AUTHORIZATION
    }
    fn describe(&self) -> &str {
        "Authorization: Token"
    }
    fn read(&self, value: &HeaderValue) -> Result<Option<Presented>, Rejection> {
        match value.to_str().ok().and_then(|v| v.strip_prefix("Token ")) {
            Some(_) => Presented::new(value, "Token ".len()).map(Some),
            None => Ok(None),
        }
    }
}

/// A source named twice, for one kind or for several, is read once; a
/// custom source on `Authorization` is not the Bearer source.
#[tokio::test]
async fn sources_are_read_once_and_told_apart() {
    let fx = fixture().await;
    let missing = |layer: AuthLayer| async move {
        let (status, body) = send(&layer, &[]).await;
        assert_eq!(status, 401);
        body["message"].as_str().unwrap().to_owned()
    };
    let shared = AuthLayer::new(fx.keyring.clone())
        .accept("pk", [Source::api_key(), Source::api_key()])
        .unwrap()
        .accept("pl", [Source::api_key()])
        .unwrap();
    assert_eq!(
        missing(shared.clone()).await,
        "credentials are required: send X-Api-Key"
    );
    // Named twice in one list, still accepted from it.
    assert_eq!(send(&shared, &[("x-api-key", &fx.pk)]).await.0, 200);
    assert_eq!(send(&shared, &[("x-api-key", &fx.pl)]).await.0, 200);

    let two_schemes = AuthLayer::new(fx.keyring.clone())
        .accept("pk", [Source::custom(TokenScheme)])
        .unwrap()
        .accept("pl", [Source::bearer()])
        .unwrap();
    assert_eq!(
        missing(two_schemes.clone()).await,
        "credentials are required: send Authorization: Token or Authorization: Bearer"
    );
    let token = format!("Token {}", fx.pk);
    assert_eq!(
        send(&two_schemes, &[("authorization", &token)]).await.0,
        200
    );
    // A pk key as Bearer: read by the Bearer source, not accepted from it.
    let (status, body) = send(&two_schemes, &[("authorization", &bearer(&fx.pk))]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
}
