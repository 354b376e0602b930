//! The management router (`keyward::manage`) driven through a real
//! `AuthLayer` with tower's `oneshot`: every route, every error code, tenant
//! isolation, privilege escalation attempts, paging and bad input. The
//! tenant isolation and paging run on PostgreSQL too.
#![cfg(all(feature = "axum", feature = "test-util"))]

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::Router;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use keyward::http::{AuthLayer, ExternalAuthError, ExternalAuthenticator, ExternalPrincipal};
use keyward::manage::{ManageRouter, ScopePolicy};
use keyward::testing::{Fault, FaultyStore, Op};
use keyward::{
    KeyId, KeyKind, KeyStore, Keyring, ManualClock, MemoryStore, NewKey, ScopeCatalog, ScopeStatus,
    TenantId,
};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};
use tower::ServiceExt;

/// PlayerOS: read, write (implies read), and the management scope.
fn pk_catalog() -> ScopeCatalog {
    ScopeCatalog::builder()
        .scope("read", "Read players", ScopeStatus::Enforced)
        .scope("write", "Change players", ScopeStatus::Enforced)
        .scope("keys:manage", "Manage API keys", ScopeStatus::Enforced)
        .implies("write", "read")
        .build()
        .unwrap()
}

/// PlayableLabs: a grid with a soon scope, wildcards allowed.
fn pl_catalog() -> ScopeCatalog {
    ScopeCatalog::builder()
        .scope("games:read", "List games", ScopeStatus::Soon)
        .scope("games:write", "Change games", ScopeStatus::Enforced)
        .scope("versions:write", "Upload versions", ScopeStatus::Enforced)
        .scope("keys:manage", "Manage tokens", ScopeStatus::Enforced)
        .allow_wildcards()
        .build()
        .unwrap()
}

/// The dashboard's own catalog, for external principals.
fn dashboard_catalog() -> Arc<ScopeCatalog> {
    Arc::new(
        ScopeCatalog::builder()
            .scope("keys:manage", "Manage tokens", ScopeStatus::Enforced)
            .scope("billing", "Billing", ScopeStatus::Enforced)
            .build()
            .unwrap(),
    )
}

struct Sessions;

#[keyward::async_trait]
impl ExternalAuthenticator for Sessions {
    async fn authenticate(&self, bearer: &str) -> Result<ExternalPrincipal, ExternalAuthError> {
        let catalog = dashboard_catalog();
        let scopes = match bearer {
            "session-admin" => catalog.grant(["keys:manage"]).unwrap(),
            "session-billing" => catalog.grant(["billing"]).unwrap(),
            _ => return Err(ExternalAuthError::Invalid),
        };
        Ok(ExternalPrincipal::new(
            "user:alice",
            TenantId::parse("org_1"),
            scopes,
            catalog,
        ))
    }
}

fn start() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn keyring_on(store: impl KeyStore, clock: ManualClock) -> Keyring {
    Keyring::builder()
        .store(store)
        .kind(
            KeyKind::new("pk", pk_catalog())
                .unwrap()
                .default_scopes(["read"])
                .unwrap(),
        )
        .kind(
            KeyKind::new("pl", pl_catalog())
                .unwrap()
                .default_scopes(["games:read"])
                .unwrap(),
        )
        .clock(clock)
        .build()
        .unwrap()
}

/// `/keys` (pk, keys holding keys:manage), `/tokens` (pl, also dashboard
/// sessions), `/admin-keys` (pk, may grant keys:manage), behind one
/// `AuthLayer`.
fn app(keyring: &Keyring) -> Router {
    Router::new()
        .nest(
            "/keys",
            ManageRouter::new(keyring.clone())
                .kind("pk")
                .unwrap()
                .into_router(),
        )
        .nest(
            "/tokens",
            ManageRouter::new(keyring.clone())
                .kind("pl")
                .unwrap()
                .policy(
                    ScopePolicy::new("keys:manage")
                        .unwrap()
                        .accept_external(true),
                )
                .into_router(),
        )
        .nest(
            "/admin-keys",
            ManageRouter::new(keyring.clone())
                .kind("pk")
                .unwrap()
                .policy(
                    ScopePolicy::new("keys:manage")
                        .unwrap()
                        .allow_granting_manage(true),
                )
                .body_limit(64)
                .into_router(),
        )
        .layer(AuthLayer::new(keyring.clone()).external(Sessions))
}

struct Fixture {
    keyring: Keyring,
    clock: ManualClock,
    app: Router,
    /// A pk key of org_1 with read and keys:manage.
    admin: String,
}

async fn fixture() -> Fixture {
    let clock = ManualClock::new(start());
    let store = MemoryStore::with_clock(clock.clone());
    fixture_on(store, clock).await
}

async fn fixture_on(store: impl KeyStore, clock: ManualClock) -> Fixture {
    let keyring = keyring_on(store, clock.clone());
    let admin = issue(&keyring, "pk", "org_1", &["read", "keys:manage"]).await;
    Fixture {
        app: app(&keyring),
        keyring,
        clock,
        admin,
    }
}

async fn issue(keyring: &Keyring, kind: &str, tenant: &str, scopes: &[&str]) -> String {
    let issued = keyring
        .issue(NewKey::new(kind, tenant, "fixture").scopes(scopes))
        .await
        .unwrap();
    issued.token.expose_secret().to_owned()
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    /// Asserts the shared error shape and returns the code.
    #[track_caller]
    fn error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["error"], code, "{}", self.body);
        assert!(self.body["message"].is_string(), "{}", self.body);
        assert_eq!(self.headers["content-type"], "application/json");
        assert_eq!(self.headers["cache-control"], "no-store");
    }

    #[track_caller]
    fn ok(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.headers["content-type"], "application/json");
        assert_eq!(self.headers["cache-control"], "no-store");
        &self.body
    }
}

async fn call(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&bytes)))
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn request(method: Method, path: &str, token: &str, body: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    builder
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap()
}

async fn get(app: &Router, path: &str, token: &str) -> Reply {
    call(app, request(Method::GET, path, token, None)).await
}

async fn post(app: &Router, path: &str, token: &str, body: &str) -> Reply {
    call(app, request(Method::POST, path, token, Some(body))).await
}

/// Creates through the router; returns (id, token).
async fn create(app: &Router, path: &str, token: &str, body: Value) -> (String, String) {
    let reply = post(app, path, token, &body.to_string()).await;
    let body = reply.ok(StatusCode::CREATED);
    (
        body["key"]["id"].as_str().unwrap().to_owned(),
        body["token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn create_shows_the_token_once_with_the_kind_defaults() {
    let f = fixture().await;
    let reply = post(&f.app, "/keys", &f.admin, r#"{"name": "Backend"}"#).await;
    let body = reply.ok(StatusCode::CREATED);
    let token = body["token"].as_str().unwrap();
    assert!(token.starts_with("pk_"));
    let key = &body["key"];
    assert_eq!(key["scopes"], json!(["read"]), "the kind's default scopes");
    assert_eq!(key["kind"], "pk");
    assert_eq!(key["tenant"], "org_1");
    assert_eq!(key["name"], "Backend");
    assert_eq!(key["state"], "active");
    assert_eq!(key["display_prefix"], &token[..8]);
    assert_eq!(key["expires_at"], Value::Null);
    assert_eq!(key["last_used_at"], Value::Null);
    assert_eq!(key["revoked_at"], Value::Null);
    assert_eq!(key["rate_limit"], json!({"per_minute": 100}));
    assert!(key.get("hash").is_none() && key.get("token").is_none());
    let verified = f.keyring.verify(token).await.unwrap();
    assert_eq!(verified.id().as_str(), key["id"]);

    // Shown once: reading the key back never shows the token.
    let id = key["id"].as_str().unwrap();
    let shown = get(&f.app, &format!("/keys/{id}"), &f.admin).await;
    let shown = shown.ok(StatusCode::OK);
    assert_eq!(shown["id"], id);
    assert!(!shown.to_string().contains(token));
    let listed = get(&f.app, "/keys", &f.admin).await;
    assert!(!listed.ok(StatusCode::OK).to_string().contains(token));
}

/// Personal keys: created with an owner, listed by owner, and the owner
/// kept by rotation; a bad owner filter is 400.
#[tokio::test]
async fn keys_have_owners_and_list_by_owner() {
    let f = fixture().await;
    let (mine, _) = create(
        &f.app,
        "/keys",
        &f.admin,
        json!({"name": "laptop", "owner": "user_7"}),
    )
    .await;
    create(&f.app, "/keys", &f.admin, json!({"name": "shared"})).await;
    create(
        &f.app,
        "/keys",
        &f.admin,
        json!({"name": "bob", "owner": "user_8"}),
    )
    .await;
    let listed = get(&f.app, "/keys?owner=user_7", &f.admin).await;
    let listed = listed.ok(StatusCode::OK);
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{listed}");
    assert_eq!(keys[0]["id"], mine.as_str());
    assert_eq!(keys[0]["owner"], "user_7");
    let all = get(&f.app, "/keys", &f.admin).await;
    let all = all.ok(StatusCode::OK);
    assert!(all["keys"].as_array().unwrap().len() >= 3);
    let rotated = post(&f.app, &format!("/keys/{mine}/rotate"), &f.admin, "{}").await;
    assert_eq!(rotated.ok(StatusCode::CREATED)["key"]["owner"], "user_7");
    for bad in [
        "/keys?owner=",
        "/keys?owner=a%E2%80%AEb",
        "/keys?owner=x&owner=y",
    ] {
        let reply = get(&f.app, bad, &f.admin).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(reply.body["error"], "invalid_body", "{bad}");
    }
}

#[tokio::test]
async fn create_takes_scopes_expiry_rate_limit_and_metadata() {
    let f = fixture().await;
    let now = start();
    for (preset, days) in [
        ("30d", Some(30)),
        ("90d", Some(90)),
        ("1y", Some(365)),
        ("never", None),
    ] {
        let reply = post(
            &f.app,
            "/keys",
            &f.admin,
            &json!({"name": "k", "expires_in": preset}).to_string(),
        )
        .await;
        let want = days.map_or(Value::Null, |d: i64| {
            json!((now + Duration::days(d))
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap())
        });
        assert_eq!(
            reply.ok(StatusCode::CREATED)["key"]["expires_at"],
            want,
            "{preset}"
        );
    }
    let at = "2027-06-01T12:00:00Z";
    let reply = post(
        &f.app,
        "/keys",
        &f.admin,
        &json!({"name": "k", "expires_at": at, "scopes": ["read"], "rate_limit": 10,
                "metadata": {"created_by": "user_7"}})
        .to_string(),
    )
    .await;
    let key = &reply.ok(StatusCode::CREATED)["key"];
    assert_eq!(key["expires_at"], at);
    assert_eq!(key["rate_limit"], json!({"per_minute": 10}));
    assert_eq!(key["metadata"], json!({"created_by": "user_7"}));
    // The bounds: a second ahead, and 5 years ahead, are accepted.
    for ok in [now + Duration::seconds(1), now + Duration::days(5 * 365)] {
        let at = ok
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        post(
            &f.app,
            "/keys",
            &f.admin,
            &json!({"name": "k", "expires_at": at}).to_string(),
        )
        .await
        .ok(StatusCode::CREATED);
    }
    for ok in [1, 100_000] {
        post(
            &f.app,
            "/keys",
            &f.admin,
            &json!({"name": "k", "rate_limit": ok}).to_string(),
        )
        .await
        .ok(StatusCode::CREATED);
    }
}

#[tokio::test]
async fn bad_create_bodies_are_typed_400s() {
    let f = fixture().await;
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let now = start();
    for (body, code) in [
        (json!({"name": "k", "scopes": ["admin"]}).to_string(), "invalid_scope"),
        (json!({"name": "k", "scopes": ["Not A Scope"]}).to_string(), "invalid_scope"),
        (json!({"name": "k", "scopes": ["*"]}).to_string(), "invalid_scope"), // no wildcards in pk
        (json!({"name": ""}).to_string(), "invalid_label"),
        (json!({"name": "a\u{202E}b"}).to_string(), "invalid_label"),
        (json!({"name": "x".repeat(201)}).to_string(), "invalid_label"),
        (json!({"name": "k", "metadata": {"k": "a\nb"}}).to_string(), "invalid_label"),
        (json!({"name": "k", "kind": "pl"}).to_string(), "unknown_kind"),
        (json!({"name": "k", "kind": "zz"}).to_string(), "unknown_kind"),
        (json!({"name": "k", "expires_in": "2w"}).to_string(), "invalid_body"),
        (json!({"name": "k", "expires_in": "30d", "expires_at": rfc(now + Duration::days(1))}).to_string(), "invalid_body"),
        (json!({"name": "k", "expires_at": rfc(now)}).to_string(), "invalid_body"),
        (json!({"name": "k", "expires_at": rfc(now - Duration::days(1))}).to_string(), "invalid_body"),
        (json!({"name": "k", "expires_at": rfc(now + Duration::days(5 * 365) + Duration::seconds(1))}).to_string(), "invalid_body"),
        (json!({"name": "k", "expires_at": "tomorrow"}).to_string(), "invalid_body"),
        (json!({"name": "k", "rate_limit": 0}).to_string(), "invalid_body"),
        (json!({"name": "k", "rate_limit": 100_001}).to_string(), "invalid_body"),
        (json!({"name": "k", "rate_limit": -1}).to_string(), "invalid_body"),
        (json!({"name": "k", "rate_limit": 1.5}).to_string(), "invalid_body"),
        (json!({"name": "k", "owner": "a\u{202E}b"}).to_string(), "invalid_label"),
        (json!({"name": "k", "owner": ""}).to_string(), "invalid_label"),
        (json!({"name": "k", "owner": 5}).to_string(), "invalid_body"),
        (json!({"name": "k", "team": "me"}).to_string(), "invalid_body"),
        (json!({"name": 5}).to_string(), "invalid_body"),
        (json!({"scopes": ["read"]}).to_string(), "invalid_body"),
        (json!(["name"]).to_string(), "invalid_body"),
        (r#"{"name": "a", "name": "b"}"#.to_owned(), "invalid_body"),
        (r#"{"name": "a", "metadata": {"k": "1", "k": "2"}}"#.to_owned(), "invalid_body"),
        (r#"{"name": "a"} trailing"#.to_owned(), "invalid_body"),
        (r#"{"name": "a""#.to_owned(), "invalid_body"),
        ("".to_owned(), "invalid_body"),
        ("null".to_owned(), "invalid_body"),
        (format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)), "payload_too_large"),
    ] {
        let reply = post(&f.app, "/keys", &f.admin, &body).await;
        let status = if code == "payload_too_large" {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        reply.error(status, code);
    }
    // Nested past serde_json's recursion limit, under the size limit.
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    post(&f.app, "/keys", &f.admin, &deep)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_body");
    // Not UTF-8.
    let mut req = request(Method::POST, "/keys", &f.admin, Some(""));
    *req.body_mut() = Body::from(vec![0xff, 0xfe, b'{', b'}']);
    call(&f.app, req)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_body");
    assert_eq!(
        f.keyring
            .list(&TenantId::parse("org_1").unwrap())
            .await
            .unwrap()
            .len(),
        1,
        "nothing was created"
    );
}

#[tokio::test]
async fn bodies_must_be_json_and_small() {
    let f = fixture().await;
    let body = r#"{"name": "k"}"#;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
    ] {
        let mut builder = Request::post("/keys").header("x-api-key", &f.admin);
        if let Some(t) = content_type {
            builder = builder.header("content-type", t);
        }
        let reply = call(&f.app, builder.body(Body::from(body)).unwrap()).await;
        reply.error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    }
    let req = Request::post("/keys")
        .header("x-api-key", &f.admin)
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(Body::from(body))
        .unwrap();
    call(&f.app, req).await.ok(StatusCode::CREATED);

    // The limit, with and without a Content-Length (16 KiB by default).
    let name = "n".repeat(100);
    let padded = |len: usize| {
        let base = json!({"name": name}).to_string();
        format!("{}{}", " ".repeat(len - base.len()), base)
    };
    post(&f.app, "/keys", &f.admin, &padded(16 * 1024))
        .await
        .ok(StatusCode::CREATED);
    post(&f.app, "/keys", &f.admin, &padded(16 * 1024 + 1))
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let req = Request::post("/keys")
        .header("x-api-key", &f.admin)
        .header("content-type", "application/json")
        .header("content-length", "999999999")
        .body(Body::from(body))
        .unwrap();
    call(&f.app, req)
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // A configured limit.
    post(&f.app, "/admin-keys", &f.admin, &" ".repeat(65))
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn only_managers_manage_and_never_beyond_their_own_scopes() {
    let f = fixture().await;
    let reader = issue(&f.keyring, "pk", "org_1", &["read", "write"]).await;
    let target = f
        .keyring
        .issue(NewKey::new("pk", "org_1", "target"))
        .await
        .unwrap();
    let target = target.info.id().as_str().to_owned();
    // Not a manager: 403 on every route, with the scope in the challenge,
    // before the id or the body is even looked at.
    for (method, path, body) in [
        (Method::GET, "/keys".to_owned(), None),
        (Method::POST, "/keys".to_owned(), Some(r#"{"name": "k"}"#)),
        (Method::POST, "/keys".to_owned(), Some("not json")),
        (Method::GET, "/keys/grid".to_owned(), None),
        (Method::GET, format!("/keys/{target}"), None),
        (Method::GET, "/keys/key_unknown".to_owned(), None),
        (Method::POST, format!("/keys/{target}/revoke"), None),
        (Method::DELETE, format!("/keys/{target}"), None),
        (Method::POST, format!("/keys/{target}/rotate"), Some("{}")),
    ] {
        let reply = call(&f.app, request(method.clone(), &path, &reader, body)).await;
        reply.error(StatusCode::FORBIDDEN, "insufficient_scope");
        assert_eq!(
            reply.headers["www-authenticate"],
            r#"Bearer realm="api", error="insufficient_scope", scope="keys:manage""#,
            "{method} {path}"
        );
    }
    let tenant = TenantId::parse("org_1").unwrap();
    let before = f.keyring.list(&tenant).await.unwrap().len();

    // A manager holding read (not write): more scopes than its own, the
    // management scope, another kind.
    for (path, body, scope) in [
        ("/keys", json!({"name": "k", "scopes": ["write"]}), "write"),
        (
            "/keys",
            json!({"name": "k", "scopes": ["read", "write"]}),
            "write",
        ),
        (
            "/keys",
            json!({"name": "k", "scopes": ["keys:manage"]}),
            "keys:manage",
        ),
        (
            "/admin-keys",
            json!({"name": "k", "scopes": ["write"]}),
            "write",
        ),
        ("/tokens", json!({"name": "k"}), "keys:manage"),
        (
            "/tokens",
            json!({"name": "k", "scopes": ["games:read"]}),
            "keys:manage",
        ),
    ] {
        let reply = post(&f.app, path, &f.admin, &body.to_string()).await;
        reply.error(StatusCode::FORBIDDEN, "insufficient_scope");
        assert!(
            reply.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .ends_with(&format!("scope=\"{scope}\"")),
            "{body}: {:?}",
            reply.headers["www-authenticate"]
        );
    }
    post(
        &f.app,
        "/keys",
        &f.admin,
        &json!({"name": "k", "kind": "pl"}).to_string(),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "unknown_kind");
    assert_eq!(
        f.keyring.list(&tenant).await.unwrap().len(),
        before,
        "nothing was issued"
    );

    // Within its own scopes, and through an implication (write ⇒ read).
    create(
        &f.app,
        "/keys",
        &f.admin,
        json!({"name": "k", "scopes": ["read"]}),
    )
    .await;
    create(
        &f.app,
        "/keys",
        &f.admin,
        json!({"name": "k", "scopes": []}),
    )
    .await;
    let writer = issue(&f.keyring, "pk", "org_1", &["write", "keys:manage"]).await;
    create(
        &f.app,
        "/keys",
        &writer,
        json!({"name": "k", "scopes": ["read"]}),
    )
    .await;
    // Where the policy allows granting the management scope, a holder may.
    create(
        &f.app,
        "/admin-keys",
        &f.admin,
        json!({"name": "k", "scopes": ["keys:manage"]}),
    )
    .await;
}

#[tokio::test]
async fn wildcards_count_as_what_they_cover() {
    let f = fixture().await;
    let games = issue(&f.keyring, "pl", "org_1", &["games:read", "keys:manage"]).await;
    let games_all = issue(&f.keyring, "pl", "org_1", &["games:*", "keys:manage"]).await;
    let everything = issue(&f.keyring, "pl", "org_1", &["*"]).await;
    for (caller, scopes, refused) in [
        // `*` covers the management scope: refused as management rights.
        (&games, json!(["*"]), Some("keys:manage")),
        (&games, json!(["games:*"]), Some("games:*")),
        (&games, json!(["games:write"]), Some("games:write")),
        (&games_all, json!(["*"]), Some("keys:manage")),
        (&games_all, json!(["versions:*"]), Some("versions:*")),
        (
            &games_all,
            json!(["versions:write"]),
            Some("versions:write"),
        ),
        (&games_all, json!(["keys:manage"]), Some("keys:manage")),
        (&everything, json!(["*"]), Some("keys:manage")),
        (&everything, json!(["keys:*"]), Some("keys:manage")),
        (&games, json!(["games:read"]), None),
        (&games_all, json!(["games:*"]), None),
        (&games_all, json!(["games:write", "games:read"]), None),
        (&everything, json!(["games:*", "versions:write"]), None),
    ] {
        let reply = post(
            &f.app,
            "/tokens",
            caller,
            &json!({"name": "k", "scopes": scopes}).to_string(),
        )
        .await;
        match refused {
            Some(scope) => {
                reply.error(StatusCode::FORBIDDEN, "insufficient_scope");
                assert!(
                    reply.headers["www-authenticate"]
                        .to_str()
                        .unwrap()
                        .ends_with(&format!("scope=\"{scope}\"")),
                    "{scopes}: {:?}",
                    reply.headers["www-authenticate"]
                );
            }
            None => {
                reply.ok(StatusCode::CREATED);
            }
        }
    }
}

#[tokio::test]
async fn rotation_can_not_mint_a_wider_key() {
    let f = fixture().await;
    let wide = f
        .keyring
        .issue(NewKey::new("pk", "org_1", "wide").scopes(["write"]))
        .await
        .unwrap();
    let id = wide.info.id().as_str();
    let reply = post(&f.app, &format!("/keys/{id}/rotate"), &f.admin, "{}").await;
    reply.error(StatusCode::FORBIDDEN, "insufficient_scope");
    assert!(
        f.keyring.verify(wide.token.expose_secret()).await.is_ok(),
        "left as it was"
    );
    // A manager holding write may rotate it; revoking needs no grant.
    let writer = issue(&f.keyring, "pk", "org_1", &["write", "keys:manage"]).await;
    post(&f.app, &format!("/keys/{id}/rotate"), &writer, "{}")
        .await
        .ok(StatusCode::CREATED);
}

#[tokio::test]
async fn dashboard_sessions_manage_pl_tokens_where_accepted() {
    let f = fixture().await;
    let (id, token) = create(
        &f.app,
        "/tokens",
        "session-admin",
        json!({"name": "CI", "scopes": ["games:*", "versions:write"], "expires_in": "90d"}),
    )
    .await;
    assert!(token.starts_with("pl_"));
    let shown = get(&f.app, &format!("/tokens/{id}"), "session-admin").await;
    assert_eq!(
        shown.ok(StatusCode::OK)["scopes"],
        json!(["games:*", "versions:write"])
    );
    // Default scopes of the kind.
    let (_, _) = create(
        &f.app,
        "/tokens",
        "session-admin",
        json!({"name": "Default"}),
    )
    .await;
    // Never management rights, not even through `*`.
    for scopes in [json!(["keys:manage"]), json!(["*"])] {
        post(
            &f.app,
            "/tokens",
            "session-admin",
            &json!({"name": "k", "scopes": scopes}).to_string(),
        )
        .await
        .error(StatusCode::FORBIDDEN, "insufficient_scope");
    }
    // Without the management scope, or where external principals are not
    // accepted: 403.
    get(&f.app, "/tokens", "session-billing")
        .await
        .error(StatusCode::FORBIDDEN, "insufficient_scope");
    get(&f.app, "/keys", "session-admin")
        .await
        .error(StatusCode::FORBIDDEN, "insufficient_scope");
    // The pl router does not show pk keys: not found.
    let pk = f
        .keyring
        .issue(NewKey::new("pk", "org_1", "pk"))
        .await
        .unwrap();
    get(
        &f.app,
        &format!("/tokens/{}", pk.info.id()),
        "session-admin",
    )
    .await
    .error(StatusCode::NOT_FOUND, "not_found");
    let listed = get(&f.app, "/tokens", "session-admin").await;
    assert!(listed.ok(StatusCode::OK)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["kind"] == "pl"));
    get(&f.app, "/tokens?kind=pk", "session-admin")
        .await
        .error(StatusCode::BAD_REQUEST, "unknown_kind");
}

/// Another tenant's key: 404 exactly as an unknown id, on every route, and
/// the key is left as it was.
async fn other_tenants_keys_are_not_found(f: &Fixture) {
    let theirs = f
        .keyring
        .issue(NewKey::new("pk", "org_2", "theirs"))
        .await
        .unwrap();
    let id = theirs.info.id().as_str().to_owned();
    let unknown = KeyId::generate();
    for target in [
        id.as_str(),
        unknown.as_str(),
        "not%20an%20id",
        "a.b",
        &"k".repeat(65),
        "%FF",
    ] {
        let mut replies = Vec::new();
        for (method, path, body) in [
            (Method::GET, format!("/keys/{target}"), None),
            (Method::POST, format!("/keys/{target}/revoke"), None),
            (Method::DELETE, format!("/keys/{target}"), None),
            (
                Method::POST,
                format!("/keys/{target}/rotate"),
                Some(r#"{"grace_seconds": 60}"#),
            ),
        ] {
            let reply = call(&f.app, request(method, &path, &f.admin, body)).await;
            reply.error(StatusCode::NOT_FOUND, "not_found");
            replies.push(reply.body);
        }
        assert!(replies.windows(2).all(|w| w[0] == w[1]), "{replies:?}");
        assert_eq!(
            replies[0],
            json!({"error": "not_found", "message": "no such key"})
        );
    }
    let listed = get(&f.app, "/keys?limit=100", &f.admin).await;
    assert!(!listed.ok(StatusCode::OK).to_string().contains(&id));
    // Untouched: still verifies, never rotated.
    f.keyring
        .verify(theirs.token.expose_secret())
        .await
        .unwrap();
    let tenant = TenantId::parse("org_2").unwrap();
    let keys = f.keyring.list(&tenant).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].revoked_at().is_none());
}

#[tokio::test]
async fn another_tenants_key_is_not_found() {
    other_tenants_keys_are_not_found(&fixture().await).await;
}

/// Paging newest first, filters, cursor misuse.
async fn pages_walk_newest_first(f: &Fixture) {
    let mut ids = Vec::new();
    for i in 0..7 {
        f.clock.advance(std::time::Duration::from_secs(1));
        let (id, _) = create(&f.app, "/keys", &f.admin, json!({"name": format!("k{i}")})).await;
        ids.push(id);
    }
    ids.reverse(); // newest first
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/keys?limit=3&state=active".to_owned(),
            Some(c) => format!("/keys?limit=3&state=active&cursor={c}"),
        };
        let reply = get(&f.app, &path, &f.admin).await;
        let body = reply.ok(StatusCode::OK).clone();
        let keys = body["keys"].as_array().unwrap();
        assert!(keys.len() <= 3);
        walked.extend(keys.iter().map(|k| k["id"].as_str().unwrap().to_owned()));
        pages += 1;
        if pages == 1 {
            // Issued while paging: shows on no later page.
            f.clock.advance(std::time::Duration::from_secs(1));
            create(&f.app, "/keys", &f.admin, json!({"name": "meanwhile"})).await;
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    // The admin key (oldest) comes last.
    assert_eq!(&walked[..7], &ids[..]);
    assert_eq!(walked.len(), 8, "{walked:?}");
    assert_eq!(pages, 3);

    // State and kind filters.
    post(&f.app, &format!("/keys/{}/revoke", ids[0]), &f.admin, "{}")
        .await
        .ok(StatusCode::OK);
    let revoked = get(&f.app, "/keys?state=revoked", &f.admin).await;
    let revoked = revoked.ok(StatusCode::OK);
    assert_eq!(revoked["keys"].as_array().unwrap().len(), 1);
    assert_eq!(revoked["keys"][0]["id"], ids[0].as_str());
    assert_eq!(revoked["keys"][0]["state"], "revoked");
    assert_eq!(revoked["next_cursor"], Value::Null);
    let active = get(&f.app, "/keys?state=active&limit=100&kind=pk", &f.admin).await;
    assert!(!active.ok(StatusCode::OK).to_string().contains(&ids[0]));
    let all = get(&f.app, "/keys", &f.admin).await;
    assert_eq!(all.ok(StatusCode::OK)["keys"].as_array().unwrap().len(), 9);

    // Cursor misuse: altered, or another tenant's: 400, never their keys.
    let first = get(&f.app, "/keys?limit=1", &f.admin).await;
    let cursor = first.ok(StatusCode::OK)["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let theirs_admin = issue(&f.keyring, "pk", "org_2", &["read", "keys:manage"]).await;
    for _ in 0..2 {
        f.keyring
            .issue(NewKey::new("pk", "org_2", "theirs"))
            .await
            .unwrap();
    }
    let theirs = get(&f.app, "/keys?limit=1", &theirs_admin).await;
    let their_cursor = theirs.ok(StatusCode::OK)["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut flipped = cursor.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    for bad in [
        format!("cursor={their_cursor}"),
        format!("cursor={flipped}"),
        "cursor=".to_owned(),
        "cursor=garbage".to_owned(),
        format!("cursor={}", "9".repeat(300)),
        "limit=0".to_owned(),
        "limit=101".to_owned(),
        "limit=ten".to_owned(),
        "state=deleted".to_owned(),
        "sort=name".to_owned(),
        "limit=1&limit=2".to_owned(),
    ] {
        get(&f.app, &format!("/keys?{bad}"), &f.admin)
            .await
            .error(StatusCode::BAD_REQUEST, "invalid_body");
    }
    get(&f.app, "/keys?kind=zz", &f.admin)
        .await
        .error(StatusCode::BAD_REQUEST, "unknown_kind");
    // Their own cursor works for them.
    get(
        &f.app,
        &format!("/keys?limit=1&cursor={their_cursor}"),
        &theirs_admin,
    )
    .await
    .ok(StatusCode::OK);
}

#[tokio::test]
async fn pages_walk_newest_first_and_refuse_foreign_cursors() {
    pages_walk_newest_first(&fixture().await).await;
}

#[tokio::test]
async fn revoke_is_idempotent_and_ends_the_key() {
    let f = fixture().await;
    let (id, token) = create(&f.app, "/keys", &f.admin, json!({"name": "k"})).await;
    f.clock.advance(std::time::Duration::from_secs(5));
    let first = post(&f.app, &format!("/keys/{id}/revoke"), &f.admin, "{}").await;
    let first = first.ok(StatusCode::OK).clone();
    assert_eq!(first["state"], "revoked");
    assert!(first["revoked_at"].is_string());
    f.clock.advance(std::time::Duration::from_secs(5));
    // Again, without a body, and as DELETE: the same instant.
    let again = call(
        &f.app,
        request(Method::POST, &format!("/keys/{id}/revoke"), &f.admin, None),
    )
    .await;
    assert_eq!(again.ok(StatusCode::OK)["revoked_at"], first["revoked_at"]);
    let deleted = call(
        &f.app,
        request(Method::DELETE, &format!("/keys/{id}"), &f.admin, None),
    )
    .await;
    assert_eq!(
        deleted.ok(StatusCode::OK)["revoked_at"],
        first["revoked_at"]
    );
    let used = get(&f.app, "/keys", &token).await;
    used.error(StatusCode::UNAUTHORIZED, "token_revoked");
    // A body other than `{}`.
    let (other, _) = create(&f.app, "/keys", &f.admin, json!({"name": "k"})).await;
    post(
        &f.app,
        &format!("/keys/{other}/revoke"),
        &f.admin,
        r#"{"now": true}"#,
    )
    .await
    .error(StatusCode::BAD_REQUEST, "invalid_body");
    let req = Request::post(format!("/keys/{other}/revoke"))
        .header("x-api-key", &f.admin)
        .header("content-type", "text/plain")
        .body(Body::from("please"))
        .unwrap();
    call(&f.app, req)
        .await
        .error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    assert_eq!(
        get(&f.app, &format!("/keys/{other}"), &f.admin)
            .await
            .ok(StatusCode::OK)["state"],
        "active",
        "a refused revoke changes nothing"
    );
}

#[tokio::test]
async fn rotate_issues_a_successor_within_the_grace_bounds() {
    let f = fixture().await;
    let (id, old_token) = create(
        &f.app,
        "/keys",
        &f.admin,
        json!({"name": "k", "expires_in": "30d"}),
    )
    .await;
    for body in [
        r#"{"grace_seconds": 2592001}"#,
        r#"{"grace_seconds": -1}"#,
        r#"{"grace_seconds": "60"}"#,
        r#"{"grace": 60}"#,
        r#"{"grace_seconds": 18446744073709551616}"#,
    ] {
        post(&f.app, &format!("/keys/{id}/rotate"), &f.admin, body)
            .await
            .error(StatusCode::BAD_REQUEST, "invalid_body");
    }
    f.keyring.verify(&old_token).await.unwrap();
    let reply = post(
        &f.app,
        &format!("/keys/{id}/rotate"),
        &f.admin,
        r#"{"grace_seconds": 2592000}"#,
    )
    .await;
    let body = reply.ok(StatusCode::CREATED).clone();
    let new_token = body["token"].as_str().unwrap();
    assert_eq!(body["key"]["rotated_from"], id.as_str());
    assert_eq!(body["key"]["name"], "k");
    let old = f.keyring.get(&KeyId::parse(&id).unwrap()).await.unwrap();
    assert_eq!(old.revoked_at(), Some(start() + Duration::days(30)));
    assert_eq!(
        body["key"]["expires_at"],
        json!(old
            .expires_at()
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()),
        "never extends the key's life"
    );
    // Both work during the grace; the old one no more after it.
    f.keyring.verify(&old_token).await.unwrap();
    f.keyring.verify(new_token).await.unwrap();
    f.clock.advance(std::time::Duration::from_secs(30 * 86_400));
    assert!(f.keyring.verify(&old_token).await.is_err());
    // Rotating a revoked (or expired) key: 409.
    post(&f.app, &format!("/keys/{id}/rotate"), &f.admin, "{}")
        .await
        .error(StatusCode::CONFLICT, "key_inactive");
    // No body: no grace, the old key is revoked at once.
    let (id2, token2) = create(&f.app, "/keys", &f.admin, json!({"name": "k2"})).await;
    call(
        &f.app,
        request(Method::POST, &format!("/keys/{id2}/rotate"), &f.admin, None),
    )
    .await
    .ok(StatusCode::CREATED);
    assert!(f.keyring.verify(&token2).await.is_err());
}

#[tokio::test]
async fn the_grid_shows_the_kind() {
    let f = fixture().await;
    let grid = get(&f.app, "/tokens/grid", "session-admin").await;
    let grid = grid.ok(StatusCode::OK);
    assert_eq!(grid["kind"], "pl");
    assert_eq!(grid["default_scopes"], json!(["games:read"]));
    assert_eq!(
        grid["scopes"][0],
        json!({"name": "games:read", "description": "List games", "status": "soon",
               "resource": "games", "action": "read"})
    );
    assert_eq!(grid["scopes"][1]["status"], "enforced");
    assert_eq!(grid["scopes"].as_array().unwrap().len(), 4);
    let pk = get(&f.app, "/keys/grid?kind=pk", &f.admin).await;
    assert_eq!(pk.ok(StatusCode::OK)["default_scopes"], json!(["read"]));
    get(&f.app, "/keys/grid?kind=pl", &f.admin)
        .await
        .error(StatusCode::BAD_REQUEST, "unknown_kind");
    get(&f.app, "/keys/grid?x=1", &f.admin)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_body");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let f = fixture().await;
    get(&f.app, "/keys/a/b/c", &f.admin)
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    call(&f.app, request(Method::PUT, "/keys", &f.admin, Some("{}")))
        .await
        .error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    call(
        &f.app,
        request(Method::PUT, "/keys/key_x", &f.admin, Some("{}")),
    )
    .await
    .error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn without_an_auth_layer_it_is_a_500_never_a_pass() {
    let f = fixture().await;
    let bare: Router =
        Router::new().nest("/keys", ManageRouter::new(f.keyring.clone()).into_router());
    for req in [
        request(Method::GET, "/keys", &f.admin, None),
        request(Method::POST, "/keys", &f.admin, Some(r#"{"name": "k"}"#)),
        request(Method::GET, "/keys/grid", &f.admin, None),
        request(Method::DELETE, "/keys/key_x", &f.admin, None),
    ] {
        call(&bare, req)
            .await
            .error(StatusCode::INTERNAL_SERVER_ERROR, "auth_misconfigured");
    }
}

#[tokio::test]
async fn a_failing_store_is_503_never_a_2xx() {
    let clock = ManualClock::new(start());
    let store = FaultyStore::new(MemoryStore::with_clock(clock.clone()));
    let f = fixture_on(store.clone(), clock).await;
    let (id, _) = create(&f.app, "/keys", &f.admin, json!({"name": "k"})).await;
    for (op, method, path, body) in [
        (Op::ListPage, Method::GET, "/keys".to_owned(), None),
        (
            Op::Insert,
            Method::POST,
            "/keys".to_owned(),
            Some(r#"{"name": "k"}"#),
        ),
        (Op::Get, Method::GET, format!("/keys/{id}"), None),
        (
            Op::Get,
            Method::POST,
            format!("/keys/{id}/rotate"),
            Some("{}"),
        ),
        (Op::Revoke, Method::POST, format!("/keys/{id}/revoke"), None),
        (
            Op::Insert,
            Method::POST,
            format!("/keys/{id}/rotate"),
            Some("{}"),
        ),
    ] {
        store.set_fault_on(op, Fault::Fail);
        call(&f.app, request(method, &path, &f.admin, body))
            .await
            .error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
        store.set_fault(Fault::None);
    }
    assert_eq!(
        get(&f.app, &format!("/keys/{id}"), &f.admin)
            .await
            .ok(StatusCode::OK)["state"],
        "active"
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
async fn create_revoke_and_rotate_are_audited_with_the_actor_and_no_secret() {
    // A global subscriber, not a scoped one: with tests running on other
    // threads, a scoped one can miss an event whose callsite another thread
    // registered first (tracing caches each callsite's interest). Lines are
    // told apart by this test's key ids.
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    let captured = CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in this test binary");
            captured
        })
        .clone();

    let f = fixture().await;
    let admin_id = f.keyring.verify(&f.admin).await.unwrap().id().clone();
    let (id, token) = create(&f.app, "/keys", &f.admin, json!({"name": "k"})).await;
    let rotated = post(&f.app, &format!("/keys/{id}/rotate"), &f.admin, "{}").await;
    let rotated = rotated.ok(StatusCode::CREATED).clone();
    let successor = rotated["key"]["id"].as_str().unwrap();
    post(&f.app, &format!("/keys/{successor}/revoke"), &f.admin, "{}")
        .await
        .ok(StatusCode::OK);
    create(&f.app, "/tokens", "session-admin", json!({"name": "d"})).await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = |what: &str, key: &str| {
        log.lines()
            .find(|l| l.contains("keyward::audit") && l.contains(what) && l.contains(key))
            .unwrap_or_else(|| panic!("no {what:?} event for {key}: {log}"))
            .to_owned()
    };
    for (what, key) in [
        ("key issued", id.as_str()),
        ("key rotated", id.as_str()),
        ("key revoked", successor),
    ] {
        let l = line(what, key);
        assert!(l.contains("tenant=org_1"), "{l}");
        assert!(l.contains(&format!("actor=\"key:{admin_id}\"")), "{l}");
    }
    assert!(line("key rotated", id.as_str()).contains(successor));
    let dashboard = line("key issued", "user:alice");
    assert!(dashboard.contains("kind=pl"), "{dashboard}");
    for secret in [
        token.as_str(),
        rotated["token"].as_str().unwrap(),
        f.admin.as_str(),
    ] {
        assert!(!log.contains(secret), "a token was logged");
        assert!(!log.contains(&secret[8..]), "part of a token was logged");
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use common::pg;

    async fn pg_fixture(test: &str) -> Option<Fixture> {
        let (store, _) = pg::store(test).await?;
        Some(fixture_on(store, ManualClock::new(start())).await)
    }

    #[tokio::test]
    async fn another_tenants_key_is_not_found_on_postgres() {
        let Some(f) = pg_fixture("manage_tenants").await else {
            return;
        };
        other_tenants_keys_are_not_found(&f).await;
    }

    #[tokio::test]
    async fn pages_walk_newest_first_on_postgres() {
        let Some(f) = pg_fixture("manage_pages").await else {
            return;
        };
        pages_walk_newest_first(&f).await;
    }
}

/// The kind's expiry policy: its default for a key created without one, and
/// 400 `expiry_not_allowed` for an expiry outside it (never clamped).
#[tokio::test]
async fn the_kind_expiry_policy_is_applied_and_refusals_are_400() {
    let clock = ManualClock::new(start());
    let policy = keyward::ExpiryPolicy::new()
        .max_lifetime(std::time::Duration::from_secs(100 * 86_400))
        .allow_never(false)
        .default_expiry(keyward::Expiry::Days30);
    let keyring = Keyring::builder()
        .store(MemoryStore::with_clock(clock.clone()))
        .kind(
            KeyKind::new("pk", pk_catalog())
                .unwrap()
                .default_scopes(["read"])
                .unwrap()
                .expiry_policy(policy)
                .unwrap(),
        )
        .kind(KeyKind::new("pl", pl_catalog()).unwrap())
        .clock(clock)
        .build()
        .unwrap();
    let admin = issue(&keyring, "pk", "org_1", &["read", "keys:manage"]).await;
    let app = app(&keyring);
    let reply = post(&app, "/keys", &admin, r#"{"name": "d"}"#).await;
    let expected = (start() + std::time::Duration::from_secs(30 * 86_400))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(reply.ok(StatusCode::CREATED)["key"]["expires_at"], expected);
    for body in [
        r#"{"name": "x", "expires_in": "never"}"#,
        r#"{"name": "x", "expires_in": "1y"}"#,
    ] {
        post(&app, "/keys", &admin, body)
            .await
            .error(StatusCode::BAD_REQUEST, "expiry_not_allowed");
    }
}

/// `PATCH /{id}` changes a key's allowlist and rate limit; credits and
/// budgets only through a router with billing controls; bad input changes
/// nothing; another tenant's key is 404.
#[tokio::test]
async fn usage_controls_are_managed_with_billing_apart() {
    let f = fixture().await;
    let billing = Router::new()
        .nest(
            "/billing",
            ManageRouter::new(f.keyring.clone())
                .kind("pk")
                .unwrap()
                .billing_controls(true)
                .into_router(),
        )
        .layer(AuthLayer::new(f.keyring.clone()));
    let admin = f.admin.clone();
    let patch = move |app: &Router, path: &str, body: &str| {
        let (app, req) = (
            app.clone(),
            request(Method::PATCH, path, &admin, Some(body)),
        );
        async move { call(&app, req).await }
    };
    // Created with an allowlist; credits refused without billing controls.
    let (id, _) = create(
        &f.app,
        "/keys",
        &f.admin,
        json!({"name": "office", "allowed_ips": ["203.0.113.0/24", "2001:db8::/32"]}),
    )
    .await;
    post(
        &f.app,
        "/keys",
        &f.admin,
        r#"{"name": "t", "credits": {"remaining": 5}}"#,
    )
    .await
    .error(StatusCode::FORBIDDEN, "billing_not_managed");
    post(
        &f.app,
        "/keys",
        &f.admin,
        r#"{"name": "t", "budget": "c1"}"#,
    )
    .await
    .error(StatusCode::FORBIDDEN, "billing_not_managed");
    for bad in [
        r#"{"name": "t", "allowed_ips": ["10.0.0.1/8"]}"#,
        r#"{"name": "t", "allowed_ips": []}"#,
        r#"{"name": "t", "allowed_ips": ["::ffff:10.0.0.0/104"]}"#,
        r#"{"name": "t", "allowed_ips": ["not an ip"]}"#,
        r#"{"name": "t", "allowed_ips": "10.0.0.0/8"}"#,
    ] {
        post(&f.app, "/keys", &f.admin, bad)
            .await
            .error(StatusCode::BAD_REQUEST, "invalid_body");
    }
    let path = format!("/keys/{id}");
    let view = patch(
        &f.app,
        &path,
        r#"{"allowed_ips": ["198.51.100.0/24"], "rate_limit": 7}"#,
    )
    .await;
    let view = view.ok(StatusCode::OK);
    assert_eq!(view["allowed_ips"], json!(["198.51.100.0/24"]));
    assert_eq!(view["rate_limit"], json!({"per_minute": 7}));
    patch(&f.app, &path, r#"{"add_credits": 5}"#)
        .await
        .error(StatusCode::FORBIDDEN, "billing_not_managed");
    for bad in [
        r#"{}"#,
        r#"{"allowed_ips": [], "rate_limit": 1}"#,
        r#"{"rate_limit": 0}"#,
        r#"{"colour": 1}"#,
    ] {
        patch(&f.app, &path, bad)
            .await
            .error(StatusCode::BAD_REQUEST, "invalid_body");
    }
    let shown = get(&f.app, &path, &f.admin).await;
    assert_eq!(
        shown.ok(StatusCode::OK)["allowed_ips"],
        json!(["198.51.100.0/24"]),
        "refusals changed nothing"
    );
    let removed = patch(&f.app, &path, r#"{"allowed_ips": null}"#).await;
    assert_eq!(removed.ok(StatusCode::OK)["allowed_ips"], Value::Null);

    // With billing controls: credits, top-ups, budgets.
    let bpath = format!("/billing/{id}");
    patch(&billing, &bpath, r#"{"add_credits": 5}"#)
        .await
        .error(StatusCode::CONFLICT, "key_not_metered");
    let set = patch(
        &billing,
        &bpath,
        r#"{"credits": {"remaining": 10, "refill": {"amount": 10, "period": "monthly", "day": 31}}, "budget": "customer_1"}"#,
    )
    .await;
    let set = set.ok(StatusCode::OK);
    assert_eq!(set["credits"]["remaining"], 10);
    assert_eq!(
        set["credits"]["refill"],
        json!({"amount": 10, "period": "monthly", "day": 31})
    );
    assert_eq!(set["budget"], "customer_1");
    let added = patch(&billing, &bpath, r#"{"add_credits": 15}"#).await;
    assert_eq!(added.ok(StatusCode::OK)["credits"]["remaining"], 25);
    // The key is in a budget now: its rate limit is the budget's.
    patch(&f.app, &path, r#"{"rate_limit": 1000}"#)
        .await
        .error(StatusCode::FORBIDDEN, "billing_not_managed");
    patch(&f.app, &path, r#"{"budget": "c2"}"#)
        .await
        .error(StatusCode::FORBIDDEN, "billing_not_managed");
    let raised = patch(&billing, &bpath, r#"{"rate_limit": 1000}"#).await;
    assert_eq!(
        raised.ok(StatusCode::OK)["rate_limit"],
        json!({"per_minute": 1000})
    );
    for bad in [
        r#"{"credits": {"remaining": 1}, "add_credits": 1}"#,
        r#"{"add_credits": 0}"#,
        r#"{"credits": {"remaining": 9007199254740992}}"#,
        r#"{"credits": {"remaining": 1, "refill": {"amount": 1, "period": "weekly"}}}"#,
        r#"{"credits": {"remaining": 1, "refill": {"amount": 1, "period": "monthly", "day": 32}}}"#,
        r#"{"credits": {"remaining": 1, "refill": {"amount": 1, "period": "monthly"}}}"#,
        r#"{"credits": {"remaining": 1, "refill": {"amount": 0, "period": "daily"}}}"#,
        r#"{"credits": {"remaining": -1}}"#,
    ] {
        patch(&billing, &bpath, bad)
            .await
            .error(StatusCode::BAD_REQUEST, "invalid_body");
    }
    patch(&billing, &bpath, r#"{"budget": "a\u202eb"}"#)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_label");
    let cleared = patch(&billing, &bpath, r#"{"credits": null, "budget": null}"#).await;
    let cleared = cleared.ok(StatusCode::OK);
    assert_eq!(
        (cleared["credits"].clone(), cleared["budget"].clone()),
        (Value::Null, Value::Null)
    );

    // Another tenant's key, an unknown id: 404, nothing changed.
    let stranger = issue(&f.keyring, "pk", "org_2", &["read", "keys:manage"]).await;
    call(
        &f.app,
        request(
            Method::PATCH,
            &path,
            &stranger,
            Some(r#"{"rate_limit": 1}"#),
        ),
    )
    .await
    .error(StatusCode::NOT_FOUND, "not_found");
    patch(&f.app, "/keys/key_nope", r#"{"rate_limit": 1}"#)
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    let info = f
        .keyring
        .get(&keyward::KeyId::parse(&id).unwrap())
        .await
        .unwrap();
    assert_eq!(
        info.rate_limit(),
        keyward::RateLimit::per_minute(1000).unwrap()
    );
}
