//! The tower layers driven as services: every rejection path (status,
//! `WWW-Authenticate`, body code) and the bad-input policy.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::{keyring, keyring_on, player_os};
use http::request::Parts;
use http::{HeaderValue, Request, Response};
use keyward::http::{
    AuthHook, AuthLayer, ExternalAuthError, ExternalAuthenticator, ExternalPrincipal, Principal,
    Rejection, RequireScopesLayer, Source, WouldDeny,
};
use keyward::testing::{Fault, FaultyStore, Op};
use keyward::{Expiry, Keyring, MemoryStore, NewKey, TenantId, TokenKind};
use serde_json::{json, Value};
use tower::{ServiceBuilder, ServiceExt};

const MISSING: Option<&str> = Some(r#"Bearer realm="api""#);
const INVALID_TOKEN: Option<&str> = Some(r#"Bearer realm="api", error="invalid_token""#);
const INVALID_REQUEST: Option<&str> = Some(r#"Bearer realm="api", error="invalid_request""#);

/// Echoes what the layers put into the request.
async fn echo(req: Request<String>) -> Result<Response<String>, Infallible> {
    let principal = req.extensions().get::<Principal>();
    let would_deny = req.extensions().get::<WouldDeny>().map(|w| {
        w.missing()
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect::<Vec<_>>()
    });
    let body = json!({
        "id": principal.map(|p| p.id()),
        "tenant": principal.map(|p| p.tenant().as_str()),
        "would_deny": would_deny,
    });
    Ok(Response::new(body.to_string()))
}

async fn send(
    layer: AuthLayer,
    require: Option<RequireScopesLayer>,
    req: Request<String>,
) -> Response<String> {
    ServiceBuilder::new()
        .layer(layer)
        .option_layer(require)
        .service_fn(echo)
        .oneshot(req)
        .await
        .unwrap()
}

fn get() -> http::request::Builder {
    Request::get("/")
}

fn api_key(token: &str) -> Request<String> {
    get()
        .header("x-api-key", token)
        .body(String::new())
        .unwrap()
}

fn bearer(token: &str) -> Request<String> {
    get()
        .header("authorization", format!("Bearer {token}"))
        .body(String::new())
        .unwrap()
}

fn with_header(name: &str, value: HeaderValue) -> Request<String> {
    get().header(name, value).body(String::new()).unwrap()
}

fn body(res: &Response<String>) -> Value {
    serde_json::from_str(res.body()).unwrap()
}

#[track_caller]
fn assert_rejected(res: &Response<String>, status: u16, code: &str, challenge: Option<&str>) {
    assert_eq!(res.status(), status, "body: {}", res.body());
    assert_eq!(
        res.headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        challenge
    );
    assert_eq!(res.headers()["content-type"], "application/json");
    let body = body(res);
    assert_eq!(body["error"], code);
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[track_caller]
fn assert_ok(res: &Response<String>, tenant: &str) -> Value {
    assert_eq!(res.status(), 200, "body: {}", res.body());
    let body = body(res);
    assert_eq!(body["tenant"], tenant);
    body
}

async fn issue(keyring: &Keyring, new: NewKey) -> String {
    keyring
        .issue(new)
        .await
        .unwrap()
        .token
        .expose_secret()
        .to_owned()
}

async fn pk(keyring: &Keyring) -> String {
    issue(keyring, NewKey::new("pk", "prop_1", "backend")).await
}

#[tokio::test]
async fn api_key_and_bearer_authenticate() {
    let (keyring, _) = keyring();
    let token = pk(&keyring).await;
    let layer = AuthLayer::new(keyring);
    let res = send(layer.clone(), None, api_key(&token)).await;
    assert_ok(&res, "prop_1");
    assert_ok(&send(layer.clone(), None, bearer(&token)).await, "prop_1");
    // RFC 7235: the scheme is case-insensitive.
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let req = with_header(
            "authorization",
            HeaderValue::from_str(&format!("{scheme} {token}")).unwrap(),
        );
        assert_ok(&send(layer.clone(), None, req).await, "prop_1");
    }
}

#[tokio::test]
async fn no_credentials_is_401_without_error_attribute() {
    let (keyring, _) = keyring();
    let res = send(
        AuthLayer::new(keyring),
        None,
        get().body(String::new()).unwrap(),
    )
    .await;
    assert_rejected(&res, 401, "missing_credentials", MISSING);
}

#[tokio::test]
async fn anonymous_mode_passes_only_requests_without_credentials() {
    let (keyring, _) = keyring();
    let layer = AuthLayer::new(keyring).allow_anonymous(true);
    let res = send(layer.clone(), None, get().body(String::new()).unwrap()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(body(&res)["id"], Value::Null);
    let res = send(layer.clone(), None, api_key("pk_nope")).await;
    assert_rejected(&res, 401, "invalid_token", INVALID_TOKEN);
    let res = send(layer, None, api_key("a b")).await;
    assert_rejected(&res, 400, "invalid_request", INVALID_REQUEST);
}

#[tokio::test]
async fn anonymous_request_on_a_scoped_route_is_401() {
    let (keyring, _) = keyring();
    let layer = AuthLayer::new(keyring).allow_anonymous(true);
    let require = RequireScopesLayer::all(["read"]).unwrap();
    let res = send(layer, Some(require), get().body(String::new()).unwrap()).await;
    assert_rejected(&res, 401, "missing_credentials", MISSING);
}

/// No `AuthLayer` ran: the server's mistake, never a pass and never the
/// client's fault (tests/kinds.rs checks the error it logs).
#[tokio::test]
async fn require_scopes_without_auth_layer_is_500_misconfigured() {
    let res = ServiceBuilder::new()
        .layer(RequireScopesLayer::all(["read"]).unwrap())
        .service_fn(echo)
        .oneshot(get().body(String::new()).unwrap())
        .await
        .unwrap();
    assert_rejected(&res, 500, "auth_misconfigured", None);
}

#[tokio::test]
async fn invalid_tokens_are_401_invalid_token() {
    let (keyring, _) = keyring();
    let pl = issue(&keyring, NewKey::new("pl", "org_1", "ci")).await;
    let layer = AuthLayer::new(keyring);

    // A pl_ token with one character of its body changed: bad checksum.
    let mut typo = pl.clone().into_bytes();
    let i = 10;
    typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    // Well formed, never issued.
    let unknown = TokenKind::new("pk").unwrap().generate();
    for token in [
        typo.as_str(),
        unknown.expose_secret(),
        "garbage",
        "pk_short",
        "xx_unknownprefix",
    ] {
        let res = send(layer.clone(), None, bearer(token)).await;
        assert_rejected(&res, 401, "invalid_token", INVALID_TOKEN);
        let res = send(layer.clone(), None, api_key(token)).await;
        assert_rejected(&res, 401, "invalid_token", INVALID_TOKEN);
    }
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_401() {
    let (keyring, clock) = keyring();
    let expiring = issue(
        &keyring,
        NewKey::new("pl", "org_1", "ci").expires(Expiry::Days30),
    )
    .await;
    let revoked = keyring
        .issue(NewKey::new("pk", "prop_1", "old"))
        .await
        .unwrap();
    keyring.revoke(revoked.info.id()).await.unwrap();
    clock.advance(std::time::Duration::from_secs(2678400));
    let layer = AuthLayer::new(keyring);

    let res = send(layer.clone(), None, bearer(&expiring)).await;
    assert_rejected(&res, 401, "token_expired", INVALID_TOKEN);
    let res = send(layer, None, api_key(revoked.token.expose_secret())).await;
    assert_rejected(&res, 401, "token_revoked", INVALID_TOKEN);
}

#[tokio::test]
async fn store_failure_is_503_and_never_access() {
    let store = FaultyStore::new(MemoryStore::new());
    let (keyring, _) = keyring_on(store.clone());
    let token = pk(&keyring).await;
    store.set_fault_on(Op::FindByHash, Fault::Fail);
    let res = send(AuthLayer::new(keyring), None, api_key(&token)).await;
    assert_rejected(&res, 503, "auth_unavailable", None);
}

/// The PlayableLabs catalog allows wildcards; a `pl_` token granted `*`
/// must still not pass a route guarding another catalog's scope.
#[tokio::test]
async fn a_wildcard_never_covers_another_catalogs_scope() {
    let (keyring, _) = keyring();
    let star = issue(&keyring, NewKey::new("pl", "prop_1", "all").scopes(["*"])).await;
    let layer = AuthLayer::new(keyring);
    for scope in ["write", "read", "games:admin"] {
        let require = RequireScopesLayer::all([scope]).unwrap();
        let res = send(layer.clone(), Some(require), bearer(&star)).await;
        assert_eq!(res.status(), 403, "{scope}");
        assert_eq!(body(&res)["error"], "insufficient_scope");
    }
    let upload = RequireScopesLayer::all(["versions:write"]).unwrap();
    assert_ok(&send(layer, Some(upload), bearer(&star)).await, "prop_1");
}

#[tokio::test]
async fn enforced_scope_missing_is_403_insufficient_scope() {
    let (keyring, _) = keyring();
    let read_only = issue(&keyring, NewKey::new("pk", "prop_1", "ro").scopes(["read"])).await;
    let writer = pk(&keyring).await;
    let layer = AuthLayer::new(keyring);

    let write = RequireScopesLayer::all(["write"]).unwrap();
    let res = send(layer.clone(), Some(write.clone()), api_key(&read_only)).await;
    assert_rejected(
        &res,
        403,
        "insufficient_scope",
        Some(r#"Bearer realm="api", error="insufficient_scope", scope="write""#),
    );
    assert_ok(
        &send(layer.clone(), Some(write), api_key(&writer)).await,
        "prop_1",
    );
    // `write` implies `read`.
    let read = RequireScopesLayer::all(["read"]).unwrap();
    assert_ok(
        &send(layer.clone(), Some(read), api_key(&writer)).await,
        "prop_1",
    );

    let both = RequireScopesLayer::all(["read", "write"]).unwrap();
    let res = send(layer.clone(), Some(both), api_key(&read_only)).await;
    assert_rejected(
        &res,
        403,
        "insufficient_scope",
        Some(r#"Bearer realm="api", error="insufficient_scope", scope="read write""#),
    );
    let either = RequireScopesLayer::any(["write", "read"]).unwrap();
    assert_ok(
        &send(layer, Some(either), api_key(&read_only)).await,
        "prop_1",
    );
}

/// Collects formatted tracing output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn soon_scope_passes_records_would_deny_and_audits() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (keyring, _) = keyring();
    let issued = keyring
        .issue(NewKey::new("pl", "org_1", "ci").scopes(["versions:write"]))
        .await
        .unwrap();
    let token = issued.token.expose_secret();
    let layer = AuthLayer::new(keyring);

    let games = RequireScopesLayer::all(["games:read"]).unwrap();
    let res = send(layer.clone(), Some(games), bearer(token)).await;
    let body = assert_ok(&res, "org_1");
    assert_eq!(body["would_deny"], json!(["games:read"]));

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("keyward::audit"), "{log}");
    assert!(log.contains("soon scope would deny"), "{log}");
    assert!(log.contains(issued.info.id().as_str()), "{log}");
    assert!(log.contains("missing=games:read"), "{log}");
    assert!(!log.contains(token), "the token must never be logged");

    // A soon scope the key holds: no record. An enforced one it lacks: 403.
    let versions = RequireScopesLayer::all(["versions:write"]).unwrap();
    let body = assert_ok(
        &send(layer.clone(), Some(versions), bearer(token)).await,
        "org_1",
    );
    assert_eq!(body["would_deny"], Value::Null);
    let assets = RequireScopesLayer::all(["assets:write"]).unwrap();
    let res = send(layer, Some(assets), bearer(token)).await;
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn tenant_header_must_match_the_key() {
    let (keyring, _) = keyring();
    let token = pk(&keyring).await;
    let layer = AuthLayer::new(keyring);
    let req = |tenant: &str| {
        get()
            .header("x-api-key", &token)
            .header("x-property-id", tenant)
            .body(String::new())
            .unwrap()
    };
    assert_ok(&send(layer.clone(), None, req("prop_1")).await, "prop_1");
    let res = send(layer.clone(), None, req("prop_2")).await;
    assert_rejected(&res, 403, "tenant_mismatch", None);
    let res = send(layer.clone(), None, req("   ")).await;
    assert_rejected(&res, 400, "invalid_request", INVALID_REQUEST);

    let custom = layer.tenant_header(http::HeaderName::from_static("x-org"));
    let req = get()
        .header("x-api-key", &token)
        .header("x-org", "prop_2")
        .body(String::new())
        .unwrap();
    assert_rejected(&send(custom, None, req).await, 403, "tenant_mismatch", None);
}

// ---- bad input -------------------------------------------------------------

#[tokio::test]
async fn malformed_headers_are_400_invalid_request() {
    let (keyring, _) = keyring();
    let layer = AuthLayer::new(keyring);
    let bad = |name: &str, value: &[u8]| with_header(name, HeaderValue::from_bytes(value).unwrap());
    for req in [
        // Non-UTF-8 / non-visible-ASCII bytes.
        bad("x-api-key", b"pk_\xff\xfe"),
        bad("authorization", b"Bearer pk_\xc3\xa9"),
        // Empty values.
        bad("x-api-key", b""),
        bad("authorization", b""),
        // Bearer with no token.
        bad("authorization", b"Bearer"),
        bad("authorization", b"Bearer "),
        // Extra spaces are not guessed at.
        bad("authorization", b"Bearer  pk_abc"),
        bad("authorization", b"Bearer pk_abc "),
        bad("authorization", b"Bearer pk_abc def"),
        bad("x-api-key", b" pk_abc"),
        bad("x-api-key", b"pk_abc "),
        // Any separator but one space after the scheme is a malformed
        // Bearer credential, not another scheme.
        bad("authorization", b"Bearer\tpk_abc"),
        bad("authorization", b"bearer\t\tpk_abc"),
        bad("authorization", b"Bearer \tpk_abc"),
        bad("authorization", b"Bearer,pk_abc"),
        // No scheme at all (an HTTP/1 server strips this, a tower caller
        // might not).
        bad("authorization", b" Bearer pk_abc"),
        bad("authorization", b"\tBearer pk_abc"),
    ] {
        let res = send(layer.clone(), None, req).await;
        assert_rejected(&res, 400, "invalid_request", INVALID_REQUEST);
    }
}

/// `X-Api-Key: A` beside `Authorization: Bearer<TAB>B` never authenticates
/// as A (a component reading the header loosely would see B): 400, and the
/// handler is not reached. Nor does any other whitespace after `Bearer`.
#[tokio::test]
async fn an_api_key_beside_a_tab_separated_bearer_is_refused() {
    let (keyring, _) = keyring();
    let a = pk(&keyring).await;
    let b = issue(&keyring, NewKey::new("pk", "prop_2", "other")).await;
    let layer = AuthLayer::new(keyring);
    for separator in ["\t", "\t\t", "  ", " \t", "\t "] {
        let authorization = format!("Bearer{separator}{b}");
        for credentials in [[a.as_str(), b.as_str()], [b.as_str(), b.as_str()]] {
            let req = get()
                .header("x-api-key", credentials[0])
                .header(
                    "authorization",
                    HeaderValue::from_str(&authorization).unwrap(),
                )
                .body(String::new())
                .unwrap();
            let res = send(layer.clone(), None, req).await;
            assert_rejected(&res, 400, "invalid_request", INVALID_REQUEST);
        }
    }
    // With exactly one space, A and B conflict (400); the same token is
    // accepted, as B.
    let res = send(layer.clone(), None, api_key(&a)).await;
    assert_ok(&res, "prop_1");
    let req = get()
        .header("x-api-key", &b)
        .header("authorization", format!("Bearer {b}"))
        .body(String::new())
        .unwrap();
    assert_ok(&send(layer, None, req).await, "prop_2");
}

#[tokio::test]
async fn other_schemes_are_not_credentials() {
    let (keyring, _) = keyring();
    let req = get()
        .header("authorization", "Basic dXNlcjpwYXNz")
        .body(String::new())
        .unwrap();
    let res = send(AuthLayer::new(keyring), None, req).await;
    assert_rejected(&res, 401, "missing_credentials", MISSING);
}

#[tokio::test]
async fn repeated_and_conflicting_headers_are_400() {
    let (keyring, _) = keyring();
    let token = pk(&keyring).await;
    let other = pk(&keyring).await;
    let layer = AuthLayer::new(keyring);
    let auth = format!("Bearer {token}");
    for req in [
        get()
            .header("x-api-key", &token)
            .header("x-api-key", &token)
            .body(String::new()),
        get()
            .header("authorization", &auth)
            .header("authorization", &auth)
            .body(String::new()),
        get()
            .header("x-api-key", &other)
            .header("authorization", &auth)
            .body(String::new()),
        get()
            .header("x-api-key", &token)
            .header("x-property-id", "prop_1")
            .header("x-property-id", "prop_1")
            .body(String::new()),
    ] {
        let res = send(layer.clone(), None, req.unwrap()).await;
        assert_rejected(&res, 400, "invalid_request", INVALID_REQUEST);
    }
    // The same token in both headers is one credential.
    let req = get()
        .header("x-api-key", &token)
        .header("authorization", &auth)
        .body(String::new())
        .unwrap();
    assert_ok(&send(layer, None, req).await, "prop_1");
}

#[tokio::test]
async fn oversized_tokens_are_refused_before_hashing() {
    let (keyring, _) = keyring();
    let huge = format!("pl_{}", "A".repeat(8 * 1024));
    let layer = AuthLayer::new(keyring);
    let res = send(layer.clone(), None, bearer(&huge)).await;
    assert_rejected(&res, 400, "invalid_request", INVALID_REQUEST);
    let res = send(layer.clone(), None, api_key(&huge)).await;
    assert_rejected(&res, 400, "invalid_request", INVALID_REQUEST);
    // With a higher limit the token parser refuses it (too long), still offline.
    let res = send(layer.max_credential_len(16 * 1024), None, bearer(&huge)).await;
    assert_rejected(&res, 401, "invalid_token", INVALID_TOKEN);
}

#[tokio::test]
async fn credential_source_limits_the_headers_read() {
    let (keyring, _) = keyring();
    let token = pk(&keyring).await;
    let api_only = AuthLayer::new(keyring.clone()).credentials([Source::api_key()]);
    let res = send(api_only.clone(), None, bearer(&token)).await;
    assert_rejected(&res, 401, "missing_credentials", MISSING);
    assert_eq!(
        body(&res)["message"],
        "credentials are required: send X-Api-Key"
    );
    assert_ok(&send(api_only, None, api_key(&token)).await, "prop_1");

    let bearer_only = AuthLayer::new(keyring).credentials([Source::bearer()]);
    let res = send(bearer_only.clone(), None, api_key(&token)).await;
    assert_rejected(&res, 401, "missing_credentials", MISSING);
    assert_eq!(
        body(&res)["message"],
        "credentials are required: send Authorization: Bearer"
    );
    assert_ok(&send(bearer_only, None, bearer(&token)).await, "prop_1");
}

/// With only `Source::api_key()`, `Authorization` is not read for a
/// credential, but a malformed Bearer in it is still refused: `X-Api-Key: A`
/// beside `Authorization: Bearer<TAB>B` is 400, never A. A well-formed
/// `Authorization` (Bearer or another scheme) is left to other components.
#[tokio::test]
async fn an_api_key_only_layer_still_refuses_a_malformed_bearer() {
    let (keyring, _) = keyring();
    let a = pk(&keyring).await;
    let b = issue(&keyring, NewKey::new("pk", "prop_2", "other")).await;
    let api_only = AuthLayer::new(keyring).credentials([Source::api_key()]);
    let with = |key: Option<&str>, authorization: Vec<Vec<u8>>| {
        let mut req = get();
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        for value in authorization {
            req = req.header("authorization", HeaderValue::from_bytes(&value).unwrap());
        }
        req.body(String::new()).unwrap()
    };
    let malformed = [
        format!("Bearer\t{b}"),
        format!("bearer\t\t{b}"),
        format!("Bearer  {b}"),
        format!("Bearer \t{b}"),
        format!("BEARER,{b}"),
        format!("Bearer {b} x"),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        // No scheme at all: a looser reader trims and sees Bearer.
        format!(" Bearer {b}"),
        format!("\tBearer {b}"),
        String::new(),
    ];
    for value in &malformed {
        for key in [Some(a.as_str()), None] {
            let res = send(
                api_only.clone(),
                None,
                with(key, vec![value.clone().into()]),
            )
            .await;
            assert_rejected(&res, 400, "invalid_request", INVALID_REQUEST);
        }
        // Hidden behind a well-formed one, too.
        let both = vec![b"Basic dXNlcjpwYXNz".to_vec(), value.clone().into()];
        let res = send(api_only.clone(), None, with(Some(&a), both)).await;
        assert_rejected(&res, 400, "invalid_request", INVALID_REQUEST);
    }
    // Not visible ASCII after Bearer: malformed too.
    let res = send(
        api_only.clone(),
        None,
        with(Some(&a), vec![b"Bearer pk_\xc3\xa9".to_vec()]),
    )
    .await;
    assert_rejected(&res, 400, "invalid_request", INVALID_REQUEST);

    // Well-formed: ignored, whatever it carries (B, another scheme, even
    // bytes or a length this layer would refuse as its own credential).
    for value in [
        format!("Bearer {b}").into_bytes(),
        format!("bearer {b}").into_bytes(),
        b"Basic dXNlcjpwYXNz".to_vec(),
        b"Basic\tdXNlcjpwYXNz".to_vec(),
        b"Bearerx\ttok".to_vec(),
        b"Digest username=\"\xc3\xa9\"".to_vec(),
        format!("Bearer pl_{}", "A".repeat(8 * 1024)).into_bytes(),
    ] {
        let res = send(api_only.clone(), None, with(Some(&a), vec![value.clone()])).await;
        assert_ok(&res, "prop_1");
        let res = send(api_only.clone(), None, with(None, vec![value])).await;
        assert_rejected(&res, 401, "missing_credentials", MISSING);
    }
}

// ---- external authenticator -----------------------------------------------

struct Jwt {
    calls: Arc<AtomicUsize>,
}

#[async_trait]
impl ExternalAuthenticator for Jwt {
    async fn authenticate(&self, bearer: &str) -> Result<ExternalPrincipal, ExternalAuthError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let catalog = Arc::new(player_os());
        let principal = |tenants: &[&str]| {
            let tenants = tenants.iter().filter_map(|t| TenantId::parse(t));
            let scopes = catalog.grant(["read"]).unwrap();
            ExternalPrincipal::new("user:alice", tenants, scopes, catalog.clone())
        };
        match bearer {
            "jwt.alice" => Ok(principal(&["prop_1", "prop_2"])),
            "jwt.bob" => Ok(principal(&["prop_1"])),
            "jwt.nobody" => Ok(principal(&[])),
            "jwt.expired" => Err(ExternalAuthError::Expired),
            "jwt.down" => Err(ExternalAuthError::unavailable("jwks unreachable")),
            "jwt.panic" => panic!("authenticator bug"),
            _ => Err(ExternalAuthError::Invalid),
        }
    }
}

fn external_layer(keyring: Keyring) -> (AuthLayer, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = AuthLayer::new(keyring).external(Jwt {
        calls: calls.clone(),
    });
    (layer, calls)
}

fn bearer_for(token: &str, tenant: Option<&str>) -> Request<String> {
    let mut req = bearer(token);
    if let Some(t) = tenant {
        req.headers_mut()
            .insert("x-property-id", HeaderValue::from_str(t).unwrap());
    }
    req
}

#[tokio::test]
async fn external_principals_pick_a_tenant() {
    let (keyring, _) = keyring();
    let (layer, _) = external_layer(keyring);
    let send = |req| send(layer.clone(), None, req);

    assert_ok(&send(bearer_for("jwt.bob", None)).await, "prop_1");
    assert_ok(
        &send(bearer_for("jwt.alice", Some("prop_2"))).await,
        "prop_2",
    );
    let res = send(bearer_for("jwt.alice", None)).await;
    assert_rejected(&res, 400, "tenant_required", None);
    let res = send(bearer_for("jwt.alice", Some("prop_3"))).await;
    assert_rejected(&res, 403, "tenant_mismatch", None);
    let res = send(bearer_for("jwt.nobody", None)).await;
    assert_rejected(&res, 403, "tenant_mismatch", None);
}

#[tokio::test]
async fn external_errors_never_grant_access() {
    let (keyring, _) = keyring();
    let (layer, _) = external_layer(keyring);
    let res = send(layer.clone(), None, bearer("jwt.forged")).await;
    assert_rejected(&res, 401, "invalid_token", INVALID_TOKEN);
    let res = send(layer.clone(), None, bearer("jwt.expired")).await;
    assert_rejected(&res, 401, "token_expired", INVALID_TOKEN);
    let res = send(layer, None, bearer("jwt.down")).await;
    assert_rejected(&res, 503, "auth_unavailable", None);
}

#[tokio::test]
async fn a_panicking_authenticator_never_reaches_the_handler() {
    let (keyring, _) = keyring();
    let (layer, _) = external_layer(keyring);
    let reached = Arc::new(AtomicBool::new(false));
    let flag = reached.clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |_req: Request<String>| {
            flag.store(true, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        });
    let task = tokio::spawn(svc.oneshot(bearer("jwt.panic")));
    assert!(task.await.unwrap_err().is_panic());
    assert!(!reached.load(Ordering::SeqCst));
}

#[tokio::test]
async fn keyward_tokens_and_api_keys_bypass_the_external_authenticator() {
    let (keyring, _) = keyring();
    let token = pk(&keyring).await;
    let (layer, calls) = external_layer(keyring);
    assert_ok(&send(layer.clone(), None, bearer(&token)).await, "prop_1");
    // A pk_-prefixed typo is the keyring's to refuse.
    let res = send(layer.clone(), None, bearer("pk_typo")).await;
    assert_rejected(&res, 401, "invalid_token", INVALID_TOKEN);
    // X-Api-Key values are always keyward keys.
    let res = send(layer, None, api_key("jwt.bob")).await;
    assert_rejected(&res, 401, "invalid_token", INVALID_TOKEN);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn external_scopes_are_enforced() {
    let (keyring, _) = keyring();
    let (layer, _) = external_layer(keyring);
    let write = RequireScopesLayer::all(["write"]).unwrap();
    let res = send(layer.clone(), Some(write), bearer("jwt.bob")).await;
    assert_eq!(res.status(), 403);
    let read = RequireScopesLayer::all(["read"]).unwrap();
    let res = send(layer, Some(read), bearer("jwt.bob")).await;
    assert_eq!(body(&res)["id"], "user:alice");
}

// ---- hooks and rendering ---------------------------------------------------

struct Blocklist(TenantId);

#[async_trait]
impl AuthHook for Blocklist {
    async fn after_authentication(
        &self,
        principal: &Principal,
        _request: &mut Parts,
    ) -> Result<(), Rejection> {
        if principal.tenant() == &self.0 {
            Err(Rejection::TokenRevoked)
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn hooks_run_after_authentication() {
    let (keyring, _) = keyring();
    let blocked = pk(&keyring).await;
    let fine = issue(&keyring, NewKey::new("pk", "prop_2", "ok")).await;
    let layer = AuthLayer::new(keyring).hook(Blocklist(TenantId::parse("prop_1").unwrap()));
    let res = send(layer.clone(), None, api_key(&blocked)).await;
    assert_rejected(&res, 401, "token_revoked", INVALID_TOKEN);
    assert_ok(&send(layer, None, api_key(&fine)).await, "prop_2");
}

#[tokio::test]
async fn the_renderer_is_shared_with_the_scope_layer() {
    let (keyring, _) = keyring();
    let read_only = issue(&keyring, NewKey::new("pk", "prop_1", "ro").scopes(["read"])).await;
    let layer = AuthLayer::new(keyring).realm("players");
    let res = send(layer.clone(), None, api_key("pk_x")).await;
    assert_eq!(
        res.headers()["www-authenticate"],
        r#"Bearer realm="players", error="invalid_token""#
    );
    let write = RequireScopesLayer::all(["write"]).unwrap();
    let res = send(layer, Some(write.clone()), api_key(&read_only)).await;
    assert_eq!(
        res.headers()["www-authenticate"],
        r#"Bearer realm="players", error="insufficient_scope", scope="write""#
    );

    let (keyring, _) = common::keyring();
    let custom = AuthLayer::new(keyring).renderer(|r: &Rejection| {
        let mut res = Response::new(format!("{{\"code\":\"{}\"}}", r.code()));
        *res.status_mut() = r.status();
        res
    });
    let res = send(custom, None, get().body(String::new()).unwrap()).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.body(), r#"{"code":"missing_credentials"}"#);
}

#[tokio::test]
async fn hyper_style_bodies_work() {
    use axum::body::Bytes;
    use http_body_util::Full;

    let (keyring, _) = keyring();
    let token = pk(&keyring).await;
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::new(keyring))
        .layer(RequireScopesLayer::all(["read"]).unwrap())
        .service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        });
    let req = |token: &str| {
        Request::get("/")
            .header("x-api-key", token)
            .body(Full::default())
            .unwrap()
    };
    let res = svc.clone().oneshot(req(&token)).await.unwrap();
    assert_eq!(res.status(), 200);
    let res = svc.oneshot(req("pk_nope")).await.unwrap();
    assert_eq!(res.status(), 401);
}
